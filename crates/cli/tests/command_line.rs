//! The command line as a user meets it, through the real binary: a closed output, a
//! mistyped or read-only data directory, a busy port, interrupted backfills, error
//! messages and flags (issue 18, "First week in production").

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_tsunagu");

/// `tsunagu ARGS` with logs quiet by default.
fn tsunagu(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("TSUNAGU_CONFIG")
        .env_remove("TSUNAGU_DATA_DIR")
        .env_remove("TSUNAGU_LISTEN")
        .env_remove("TSUNAGU_LOG_FORMAT")
        .env_remove("RUST_LOG");
    command
}

fn run(args: &[&str]) -> Output {
    tsunagu(args).output().expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A data directory with a small replicated sample (the demo's), one tenant and its
/// consumer `search` (sink `activities`).
fn populated_dir() -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let dir_arg = dir.to_str().unwrap();
    let demo = run(&[
        "demo",
        "--data-dir",
        dir_arg,
        "--deals",
        "5",
        "--activities",
        "60",
        "--paced-writes",
        "5",
    ]);
    assert!(demo.status.success(), "demo failed: {}", text(&demo.stderr));
    let tenant = run(&["tenant", "create", "acme", "--data-dir", dir_arg]);
    assert!(
        tenant.status.success(),
        "tenant create failed: {}",
        text(&tenant.stderr)
    );
    (root, dir)
}

/// Runs `args` with its standard output already closed by the reader.
fn with_closed_stdout(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    tsunagu(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("the binary runs")
}

#[test]
fn every_command_ends_quietly_when_its_output_is_closed() {
    let (_root, dir) = populated_dir();
    let d = dir.to_str().unwrap();
    let commands: &[&[&str]] = &[
        &["status", "--data-dir", d],
        &["status", "--json", "--data-dir", d],
        &["search", "--data-dir", d],
        &["search", "--json", "--data-dir", d],
        &["search", "--group-by", "action", "--data-dir", d],
        &["dlq", "list", "--data-dir", d],
        &["tenant", "list", "--data-dir", d],
        &["reconcile", "--consumer", "search", "--data-dir", d],
        &["check", "--data-dir", d],
    ];
    for args in commands {
        let output = with_closed_stdout(args);
        let stderr = text(&output.stderr);
        assert!(
            !stderr.contains("panicked"),
            "{args:?} panicked on a closed output: {stderr}"
        );
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?} did not end quietly: {stderr}"
        );
        assert!(stderr.is_empty(), "{args:?} printed {stderr:?}");
    }
}

/// The load tests print through the same output: `tsunagu bench lag ... | head` ends
/// quietly too (it printed with `println!`, which panics on a closed pipe).
#[test]
fn a_load_test_ends_quietly_when_its_output_is_closed() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path().to_str().unwrap();
    let args = [
        "bench",
        "lag",
        "--rate",
        "20",
        "--duration",
        "1s",
        "--warmup",
        "0s",
        "--data-dir",
        d,
    ];
    let output = with_closed_stdout(&args);
    let stderr = text(&output.stderr);
    assert!(!stderr.contains("panicked"), "bench lag panicked: {stderr}");
    assert_eq!(output.status.code(), Some(0), "bench lag: {stderr}");
}

/// Regression: `serve`, `tenant list` and `status` on a mistyped `--data-dir` created a
/// new empty store (old tokens then failed with "unknown or revoked token").
#[test]
fn a_missing_data_directory_is_refused_naming_the_flag_and_created_by_nothing_that_reads() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("tsunagu-dta");
    let m = missing.to_str().unwrap();
    let refusing: &[&[&str]] = &[
        &["status", "--data-dir", m],
        &["search", "--data-dir", m],
        &["dlq", "list", "--data-dir", m],
        &["dlq", "show", "1", "--data-dir", m],
        &["dlq", "redrive", "--data-dir", m],
        &["tenant", "list", "--data-dir", m],
        &["tenant", "token", "acme", "--data-dir", m],
        &["tenant", "revoke", "acme", "--data-dir", m],
        &["reconcile", "--consumer", "search", "--data-dir", m],
        &[
            "backfill",
            "--consumer",
            "search",
            "--quiet",
            "--data-dir",
            m,
        ],
    ];
    for args in refusing {
        let output = run(args);
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded on {m}");
        assert!(
            stderr.contains("--data-dir") && stderr.contains(m),
            "{args:?}: the error names neither the flag nor the path: {stderr}"
        );
        assert!(!missing.exists(), "{args:?} created {m}");
    }
    // Through the environment and a config file, the error names where the path came from.
    let output = tsunagu(&["status"])
        .env("TSUNAGU_DATA_DIR", &missing)
        .output()
        .unwrap();
    assert!(text(&output.stderr).contains("TSUNAGU_DATA_DIR"));
    let config = root.path().join("tsunagu.toml");
    std::fs::write(&config, format!("version = 1\ndata_dir = {m:?}\n")).unwrap();
    let output = run(&["status", "--config", config.to_str().unwrap()]);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("data_dir in") && stderr.contains("tsunagu.toml"),
        "{stderr}"
    );
    assert!(!missing.exists());

    // A command meant to set one up creates it, and says so.
    let output = run(&["tenant", "create", "acme", "--data-dir", m]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains(&format!("created data directory {m}")),
        "{}",
        text(&output.stdout)
    );
    assert!(missing.is_dir());
    // Once it exists, it is not reported as created again.
    let output = run(&["tenant", "create", "other", "--data-dir", m]);
    assert!(!text(&output.stdout).contains("created data directory"));
    let output = run(&["tenant", "list", "--data-dir", m]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("acme"));
}

/// Makes every file and directory under `path` read-only, readable by everyone.
fn make_read_only(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(path).unwrap() {
        let entry = entry.unwrap().path();
        if entry.is_dir() {
            make_read_only(&entry);
        } else {
            std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o444)).unwrap();
        }
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o555)).unwrap();
}

/// `tsunagu ARGS` as user `nobody` (uid 65534), who may read but not write what root
/// made read-only. The binary is copied beside the data (the build directory may be
/// closed to other users).
fn as_nobody(binary: &Path, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(binary)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("TSUNAGU_DATA_DIR")
        .env_remove("TSUNAGU_CONFIG")
        .output()
        .expect("setpriv runs")
}

/// Regression: the read-only commands failed with "attempt to write a readonly
/// database" on a data directory they could not write.
#[test]
fn read_only_commands_work_on_a_data_directory_they_cannot_write() {
    use std::os::unix::fs::PermissionsExt;
    let (root, dir) = populated_dir();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let binary = root.path().join("tsunagu");
    std::fs::copy(BIN, &binary).unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    make_read_only(&dir);
    let listing = |dir: &Path| {
        let mut names: Vec<String> = walk(dir);
        names.sort();
        names
    };
    let before = listing(&dir);
    let d = dir.to_str().unwrap();
    let commands: &[(&[&str], &str)] = &[
        (&["status", "--data-dir", d], "consumer search"),
        (&["status", "--json", "--data-dir", d], "\"consumer\""),
        (&["search", "--data-dir", d], "match(es)"),
        (
            &["search", "--group-by", "action", "--data-dir", d],
            "count by action",
        ),
        (
            &["dlq", "list", "--data-dir", d],
            "dead-letter queue is empty",
        ),
        (&["tenant", "list", "--data-dir", d], "acme"),
        (
            &["reconcile", "--consumer", "search", "--data-dir", d],
            "clean",
        ),
    ];
    for (args, expected) in commands {
        let output = as_nobody(&binary, args);
        let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
        assert!(
            output.status.success(),
            "{args:?} as nobody failed: {stderr}"
        );
        assert!(stdout.contains(expected), "{args:?} printed {stdout}");
    }
    assert_eq!(listing(&dir), before, "a read-only command created files");
    // Writing commands fail with the reason, and still create nothing.
    let output = as_nobody(&binary, &["tenant", "create", "other", "--data-dir", d]);
    assert!(!output.status.success());
    assert_eq!(listing(&dir), before);
}

/// Every path under `dir`, relative to it.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        out.push(path.strip_prefix(dir).unwrap().display().to_string());
        if path.is_dir() {
            out.extend(
                walk(&path)
                    .into_iter()
                    .map(|p| format!("{}/{p}", path.file_name().unwrap().to_string_lossy())),
            );
        }
    }
    out
}

/// Waits for `serve`'s "listening on" line; returns what it printed up to it.
fn wait_listening(child: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with("listening on") {
            return seen;
        }
    }
    panic!("serve ended without listening: {seen}");
}

/// Regression: `serve` on a busy port created the data directory and started the
/// pipeline before failing; and `--listen` took no host name.
#[test]
fn serve_binds_first_and_accepts_host_names() {
    let root = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let dir = root.path().join("new-data");
    let d = dir.to_str().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let output = run(&["serve", "--listen", &listen, "--data-dir", d]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&listen) && stderr.contains("--listen"),
        "{stderr}"
    );
    assert!(!dir.exists(), "serve created {d} before failing to bind");

    let output = run(&["serve", "--listen", "localhost", "--data-dir", d]);
    assert!(text(&output.stderr).contains("HOST:PORT"));
    assert!(!dir.exists());

    let mut child = tsunagu(&["serve", "--listen", "localhost:0", "--data-dir", d])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let printed = wait_listening(&mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        printed.contains(&format!("created data directory {d}")),
        "{printed}"
    );
}

/// A data directory with `activities` sample activities, replicated by the demo.
fn sample_dir(activities: &str) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let demo = run(&[
        "demo",
        "--data-dir",
        dir.to_str().unwrap(),
        "--deals",
        "20",
        "--activities",
        activities,
        "--paced-writes",
        "5",
    ]);
    assert!(demo.status.success(), "demo failed: {}", text(&demo.stderr));
    (root, dir)
}

/// Regression: Ctrl-C during a backfill exited 130 without a word.
#[test]
fn an_interrupted_backfill_says_progress_is_saved_and_how_to_resume_and_resumes_its_count() {
    let (_root, dir) = sample_dir("3000");
    let d = dir.to_str().unwrap();
    // Slowly (300 items/s), so that the interrupt lands after progress was saved (every
    // 2 s) and well before the end.
    let args = [
        "backfill",
        "--consumer",
        "second",
        "--rate",
        "300",
        "--batch-size",
        "50",
        "--data-dir",
        d,
    ];
    let child = tsunagu(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(4_500));
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let output = child.wait_with_output().unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted: progress is saved"),
        "{stderr}"
    );
    let resume = format!("resume with: {BIN} {}", args.join(" "));
    assert!(stderr.contains(&resume), "no {resume:?} in {stderr}");
    let saved: u64 = stderr
        .split("progress is saved (")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no saved count in {stderr}"));
    assert!(saved > 0 && saved < 3_000, "{saved} saved");

    let again: Vec<&str> = args
        .iter()
        .copied()
        .filter(|a| !matches!(*a, "--rate" | "300"))
        .collect();
    let output = run(&again);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        stdout.contains(&format!(
            "resuming the backfill of consumer \"second\": {saved} items already done"
        )),
        "{stdout}"
    );
}

/// `COMMAND` run on a terminal (a pseudo-terminal from `script`), with `env`; what the
/// terminal showed.
fn on_a_terminal(command: &str, env: &[(&str, &str)]) -> String {
    let mut script = Command::new("script");
    script.args(["-qec", command, "/dev/null"]);
    script.env_remove("NO_COLOR").env_remove("RUST_LOG");
    for (k, v) in env {
        script.env(k, v);
    }
    let output = script.output().expect("script runs");
    assert!(output.status.success(), "{}", text(&output.stderr));
    text(&output.stdout)
}

/// `s` after the cursor movements (`ESC [ n A`, `ESC [ n B`) it starts with.
fn skip_cursor_moves(mut s: &str) -> &str {
    while let Some(rest) = s.strip_prefix("\u{1b}[") {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        match rest[digits..].chars().next() {
            Some('A' | 'B' | 'G') => s = &rest[digits + 1..],
            _ => break,
        }
    }
    s
}

/// Regression: log lines were written through the backfill's progress bar; colours
/// ignored `NO_COLOR`; `--log-format` could not be set from the environment.
#[test]
fn logs_go_around_the_progress_bar_without_colour_under_no_color_and_json_from_the_environment() {
    let (_root, dir) = sample_dir("2000");
    let command = format!(
        "{BIN} backfill --consumer second --rate 2000 --batch-size 50 --data-dir {}",
        dir.display()
    );
    let screen = on_a_terminal(&command, &[("NO_COLOR", "1")]);
    assert!(screen.contains("backfill second ["), "no bar: {screen}");
    let mut logs = 0;
    for line in screen.split('\n') {
        // What is left on the line once the terminal cleared it last.
        let tail = line.rsplit("\u{1b}[2K").next().unwrap_or(line);
        let tail = skip_cursor_moves(tail.trim_start_matches('\r'));
        if tail.contains(" INFO ") {
            logs += 1;
            assert!(
                tail.starts_with(|c: char| c.is_ascii_digit()),
                "a log line torn by the bar: {tail:?}"
            );
        }
    }
    assert!(logs > 0, "no log line: {screen}");
    let sgr = |s: &str| {
        s.split("\u{1b}[").skip(1).any(|rest| {
            let code: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == ';')
                .collect();
            rest[code.len()..].starts_with('m')
        })
    };
    assert!(!sgr(&screen), "colours despite NO_COLOR");
    assert!(
        sgr(&on_a_terminal(&command, &[])),
        "no colours without NO_COLOR"
    );

    let output = tsunagu(&["backfill", "--consumer", "third", "--quiet"])
        .args(["--data-dir", dir.to_str().unwrap()])
        .env("TSUNAGU_LOG_FORMAT", "json")
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.is_empty());
    for line in stderr.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert!(value.get("level").is_some(), "{line}");
    }
}

/// Every argument of every subcommand, as `path: --flag` for those without help text.
fn args_without_help(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
    for arg in command.get_arguments() {
        let builtin = matches!(arg.get_id().as_str(), "help" | "version");
        let help = arg
            .get_help()
            .map(|h| h.to_string())
            .or_else(|| arg.get_long_help().map(|h| h.to_string()))
            .unwrap_or_default();
        if !builtin && help.trim().is_empty() {
            missing.push(format!("{path}: {}", arg.get_id()));
        }
    }
    for sub in command.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        args_without_help(sub, &format!("{path} {}", sub.get_name()), missing);
    }
}

/// Regression: `search --tenant`, `dlq list --limit`, `status --json` and others had no
/// help text.
#[test]
fn every_flag_and_argument_of_every_subcommand_has_help() {
    use clap::CommandFactory;
    let mut missing = Vec::new();
    args_without_help(&tsunagu::cli::Cli::command(), "tsunagu", &mut missing);
    assert!(missing.is_empty(), "arguments without help: {missing:#?}");
}

/// Regression: `--every 0s` looped without pause, `--rate 0` meant "no limit" silently,
/// negative numbers were reported as unknown arguments; `search --from` after `--to`
/// matched nothing instead of saying so.
#[test]
fn zero_negative_and_inverted_values_are_refused_naming_the_flag() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("never-created");
    let d = missing.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["reconcile", "--consumer", "search", "--every", "0s"],
            "--every",
        ),
        (
            &["reconcile", "--consumer", "search", "--every", "-5m"],
            "--every",
        ),
        (
            &["reconcile", "--consumer", "search", "--every", "soon"],
            "--every",
        ),
        (&["backfill", "--consumer", "x", "--rate", "0"], "--rate"),
        (&["backfill", "--consumer", "x", "--rate", "-1"], "--rate"),
        (
            &["backfill", "--consumer", "x", "--batch-size", "-100"],
            "--batch-size",
        ),
        (
            &["backfill", "--consumer", "x", "--parallelism", "0"],
            "--parallelism",
        ),
        (&["search", "--limit", "-1"], "--limit"),
        (&["dlq", "list", "--limit", "0"], "--limit"),
        (&["dlq", "list", "--limit", "-3"], "--limit"),
        (&["demo", "--paced-writes", "-1"], "--paced-writes"),
        (&["serve", "--listen", "localhost:99999"], "--listen"),
    ];
    for (args, flag) in cases {
        let mut all = args.to_vec();
        all.extend(["--data-dir", d]);
        let output = run(&all);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(flag),
            "{args:?}: {flag} not named in {stderr}"
        );
        assert!(!missing.exists(), "{args:?} created the data directory");
    }

    let (_root, dir) = populated_dir();
    let d = dir.to_str().unwrap();
    for (from, to) in [("2026-05-01", "2026-04-01"), ("2026-04-01", "2026-04-01")] {
        let output = run(&["search", "--from", from, "--to", to, "--data-dir", d]);
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{from}..{to} accepted");
        assert!(
            stderr.contains("--from") && stderr.contains("--to"),
            "{stderr}"
        );
    }
    let output = run(&[
        "search",
        "--from",
        "2026-04-01",
        "--to",
        "2026-05-01",
        "--data-dir",
        d,
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
}

/// Regression: a lock held by `serve` was blamed on `tsunagu replicate`, and causes were
/// printed twice (`x: y: x: y`).
#[test]
fn a_locked_index_names_the_process_holding_it_and_errors_print_each_cause_once() {
    let (_root, dir) = populated_dir();
    let d = dir.to_str().unwrap();
    let mut serve = tsunagu(&["serve", "--listen", "127.0.0.1:0", "--data-dir", d])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(&mut serve);
    let pid = serve.id();
    for args in [
        &[
            "backfill",
            "--consumer",
            "search",
            "--quiet",
            "--data-dir",
            d,
        ][..],
        &["dlq", "redrive", "--data-dir", d][..],
        &[
            "reconcile",
            "--consumer",
            "search",
            "--repair",
            "--data-dir",
            d,
        ][..],
    ] {
        let output = run(args);
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{args:?} opened a locked index");
        assert!(
            stderr.contains(&format!("`tsunagu serve` (pid {pid})")),
            "{args:?}: the holder is not named: {stderr}"
        );
        assert!(!stderr.contains("replicate` running"), "{stderr}");
        assert!(stderr.contains("stop it first"), "{stderr}");
    }
    serve.kill().unwrap();
    serve.wait().unwrap();

    // An index directory that is not an index: tantivy's error carries its cause in its
    // message and as its source.
    let index = dir.join("index").join("activities");
    std::fs::write(index.join("meta.json"), b"{ not json").unwrap();
    let output = run(&["search", "--data-dir", d]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or("");
    let parts: Vec<&str> = line.split(": ").collect();
    for (i, part) in parts.iter().enumerate() {
        assert!(
            !parts[i + 1..].contains(part),
            "{part:?} is printed twice in {line}"
        );
    }
}

/// Regression (issue 18, "Configuration limits"): `parallelization_factor = 100000` was
/// accepted and the pipeline aborted on memory allocation. `check` refuses it at once,
/// naming the field, the bound and the line, and touches no data directory.
#[test]
fn a_knob_above_its_bound_is_refused_at_load_naming_the_field_and_the_line() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let config = root.path().join("tsunagu.toml");
    std::fs::write(
        &config,
        format!(
            "version = 1\ndata_dir = {:?}\n\n[[consumers]]\nname = \"search\"\nsink = \"activities\"\nparallelization_factor = 100000\n",
            data.to_str().unwrap()
        ),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let output = run(&["check", "--config", config.to_str().unwrap()]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        stderr.contains("consumers[0].parallelization_factor")
            && stderr.contains("100000 is above the maximum of 100")
            && stderr.contains("line 7"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!data.exists(), "check created the data directory");
}

/// `check` looks at an embedded index's dictionary sources without compiling them: a path
/// without them fails naming the setting and the package; real sources (when the test
/// machine has them) are reported with where their compiled copy goes.
#[test]
fn check_reports_the_dictionary_of_an_embedded_index() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let config = root.path().join("tsunagu.toml");
    let write = |dictionary: &str| {
        std::fs::write(
            &config,
            format!(
                "version = 1\ndata_dir = {:?}\n\n[sinks.activities]\ntype = \"embedded_index\"\ndictionary = {dictionary:?}\n",
                data.to_str().unwrap()
            ),
        )
        .unwrap();
    };
    write(root.path().join("no-ipadic").to_str().unwrap());
    let output = run(&["check", "--config", config.to_str().unwrap()]);
    let out = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(!output.status.success(), "{out}");
    assert!(
        out.contains("sinks.activities.dictionary") && out.contains("apt-get install mecab-ipadic"),
        "{out}"
    );
    if let Ok(ipadic) = std::env::var("TSUNAGU_TEST_IPADIC_DIR") {
        write(&ipadic);
        let output = run(&["check", "--config", config.to_str().unwrap()]);
        let out = format!("{}{}", text(&output.stdout), text(&output.stderr));
        assert!(
            out.contains("IPADIC sources in") && out.contains("compiled on first start"),
            "{out}"
        );
        assert!(
            !data.join("dictionaries").exists(),
            "check compiled the dictionary"
        );
    } else {
        println!("TSUNAGU_TEST_IPADIC_DIR is not set: only the missing dictionary was checked");
    }
}

/// Regression: `search --text -見積` was read by the argument parser as an unknown flag,
/// so the exclusion the API's `q` accepts could not be written on the command line.
#[test]
fn search_text_takes_the_api_query_syntax_including_a_leading_exclusion() {
    let (_root, dir) = populated_dir();
    let d = dir.to_str().unwrap();
    let memos = |query: &str| -> Vec<String> {
        let output = run(&[
            "search",
            "--data-dir",
            d,
            "--json",
            "--limit",
            "1000",
            "--text",
            query,
        ]);
        assert!(output.status.success(), "{query}: {}", text(&output.stderr));
        let page: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
        page["hits"]
            .as_array()
            .expect("hits")
            .iter()
            .map(|hit| hit["activity"]["memo"].as_str().expect("memo").to_string())
            .collect()
    };
    let all = memos("株式会社");
    let with = memos("株式会社 見積");
    let without = memos("-見積 株式会社");
    assert!(!all.is_empty());
    assert!(
        without.iter().all(|memo| !memo.contains("見積")),
        "{without:?}"
    );
    assert_eq!(with.len() + without.len(), all.len());
    let unreadable = run(&["search", "--data-dir", d, "--text", "\"見積"]);
    assert!(!unreadable.status.success());
    assert!(
        text(&unreadable.stderr).contains("quote"),
        "{}",
        text(&unreadable.stderr)
    );
}
