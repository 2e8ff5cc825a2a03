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
