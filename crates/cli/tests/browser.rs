//! The web page of `tsunagu serve`, driven by headless Chromium: a tenant, a server on a
//! free port, a company, a deal and five activities written through the API, then
//! `web/e2e/search.mjs` searches on the page and checks the rows, the total, paging, the
//! counts by action, the live pipeline status and the error display. Finally SIGTERM must
//! stop the server cleanly.
//!
//! Needs Chromium (`/usr/bin/chromium` or `$CHROMIUM`), node and `web/e2e/node_modules`
//! (`scripts/ci/browser-deps.sh` installs all three); without them the test says
//! `skipped: ...` on stderr and passes. Anything else that goes wrong fails it.

use chrono::{Duration as Days, NaiveDate, Utc};
use serde_json::{json, Value};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tsunagu");
/// How long the server may take to say where it listens, and to stop after SIGTERM.
const SERVER_TIMEOUT: Duration = Duration::from_secs(60);
/// The whole browser run (launch, four searches, status polling, errors).
const BROWSER_TIMEOUT: Duration = Duration::from_secs(180);

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web/e2e")
}

/// Why the browser test cannot run on this machine, if it cannot.
fn missing_prerequisite() -> Option<String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).is_file() {
        return Some(format!("no Chromium at {chromium}"));
    }
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        _ => return Some("no `node` on PATH".into()),
    }
    let playwright = e2e_dir().join("node_modules/playwright-core");
    if !playwright.is_dir() {
        return Some(format!("{} is missing", playwright.display()));
    }
    None
}

/// A running `tsunagu serve`; killed (SIGKILL) on drop unless stopped.
struct Server {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Server {
    fn start(data_dir: &Path, log: PathBuf) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--data-dir"])
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("spawn tsunagu serve");
        // Read stdout on a thread for the server's whole life, so that it never blocks on
        // a full pipe; the first `listening on` line names the address.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.trim().strip_prefix("listening on ") {
                    let _ = tx.send(url.trim().trim_end_matches('/').to_string());
                }
            }
        });
        let mut server = Server {
            child,
            url: String::new(),
            log,
        };
        match rx.recv_timeout(SERVER_TIMEOUT) {
            Ok(url) => server.url = url,
            Err(e) => {
                let status = server.child.try_wait().unwrap();
                panic!(
                    "`tsunagu serve` printed no `listening on` line ({e}; exit status {status:?}); its stderr:\n{}",
                    server.stderr()
                );
            }
        }
        server
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits for the exit.
    fn stop(mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + SERVER_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "`tsunagu serve` still runs {SERVER_TIMEOUT:?} after SIGTERM; its stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// POSTs `body` with the bearer token; the answer must be 201. Returns its JSON.
async fn create(
    client: &reqwest::Client,
    server: &Server,
    token: &str,
    path: &str,
    body: Value,
) -> Value {
    let response = client
        .post(format!("{}{path}", server.url))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status.as_u16(), 201, "POST {path} {body}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST {path}: {e}: {text}"))
}

/// GETs an activity search with these query parameters; the answer must be 200.
async fn search(
    client: &reqwest::Client,
    server: &Server,
    token: &str,
    query: &[(&str, &str)],
) -> Value {
    let response = client
        .get(format!("{}/api/v1/activities", server.url))
        .bearer_auth(token)
        .query(query)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET /api/v1/activities {query:?}: {e}"));
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(
        status.as_u16(),
        200,
        "GET /api/v1/activities {query:?}: {text}"
    );
    serde_json::from_str(&text).unwrap()
}

/// Runs `node search.mjs URL TOKEN` with the expectations; kills it after [`BROWSER_TIMEOUT`].
fn run_browser(url: &str, token: &str, expect: &Value, screenshot: &Path) -> Output {
    let child = Command::new("node")
        .arg(e2e_dir().join("search.mjs"))
        .args([url, token])
        .env("EXPECT", expect.to_string())
        .env("SCREENSHOT", screenshot)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(BROWSER_TIMEOUT) {
        Ok(output) => output.expect("wait for node"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("web/e2e/search.mjs did not finish within {BROWSER_TIMEOUT:?}");
        }
    }
}

fn at(day: NaiveDate, hour: u32) -> String {
    day.and_hms_opt(hour, 0, 0)
        .unwrap()
        .and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test]
async fn the_page_searches_activities_and_shows_the_pipeline() {
    if let Some(reason) = missing_prerequisite() {
        eprintln!("skipped: browser test: {reason} (scripts/ci/browser-deps.sh installs Chromium, node and web/e2e/node_modules)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();

    let out = Command::new(BIN)
        .args(["tenant", "create", "acme", "--data-dir"])
        .arg(&data_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tenant create: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .expect("tenant create printed no token")
        .to_string();

    let server = Server::start(&data_dir, dir.path().join("serve.log"));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    let company = create(
        &client,
        &server,
        &token,
        "/api/v1/companies",
        json!({"name": "株式会社テスト", "address": "東京都千代田区丸の内1-1"}),
    )
    .await;
    let company_id = company["data"]["id"]
        .as_str()
        .expect("company id")
        .to_string();
    let deal = create(
        &client,
        &server,
        &token,
        "/api/v1/deals",
        json!({"company_id": company_id, "title": "基幹システム刷新", "owner_id": "u1"}),
    )
    .await;
    let deal_id = deal["data"]["id"].as_str().expect("deal id").to_string();

    // Days relative to today, so that no activity lies in the future.
    let day0 = (Utc::now() - Days::days(20)).date_naive();
    let day = |n: i64| day0 + Days::days(n);
    // (action, occurred_at, user, result, tags, memo); three visits mention 見積.
    let activities = [
        (
            "visit",
            at(day(10), 10),
            "u1",
            Some("appointment"),
            vec!["重点"],
            "見積書を持参して訪問、来月の導入で合意",
        ),
        (
            "call",
            at(day(9), 10),
            "u1",
            Some("no_answer"),
            vec![],
            "見積の件で電話、担当者不在",
        ),
        (
            "visit",
            at(day(8), 9),
            "u2",
            Some("follow_up"),
            vec![],
            "見積の再提出について説明",
        ),
        (
            "visit",
            at(day(5), 9),
            "u1",
            None,
            vec![],
            "挨拶のみ。次回は価格の相談",
        ),
        (
            "visit",
            at(day(0), 9),
            "u2",
            None,
            vec!["重点", "大型"],
            "見積 価格交渉 <b>値引き</b>は不可",
        ),
    ];
    let mut ids = Vec::new();
    let mut consistency = Vec::new();
    for (action, occurred_at, user, result, tags, memo) in &activities {
        let mut body = json!({
            "user_id": user, "action": action, "occurred_at": occurred_at, "memo": memo, "tags": tags,
        });
        if let Some(result) = result {
            body["result"] = json!(result);
        }
        let written = create(
            &client,
            &server,
            &token,
            &format!("/api/v1/deals/{deal_id}/activities"),
            body,
        )
        .await;
        ids.push(
            written["data"]["id"]
                .as_str()
                .expect("activity id")
                .to_string(),
        );
        consistency.push(
            written["consistency_token"]
                .as_str()
                .expect("consistency_token")
                .to_string(),
        );
    }
    // Every write searchable before the browser looks.
    for ct in &consistency {
        search(
            &client,
            &server,
            &token,
            &[("consistency_token", ct), ("limit", "1")],
        )
        .await;
    }
    let page = search(
        &client,
        &server,
        &token,
        &[("q", "見積"), ("action", "visit")],
    )
    .await;
    assert_eq!(page["total"], json!(3), "the API itself: {page}");

    let memo = |i: usize| activities[i].5;
    let expect = json!({
        // Two rows a page, so that "more" has to follow the cursor.
        "page_size": 2,
        "searches": [
            {
                "filters": {"q": "見積", "action": "visit"},
                "ids": [ids[0], ids[2], ids[4]],
                "memos": [memo(0), memo(2), memo(4)],
                "total": 3,
                "by_action": {"visit": 3},
            },
            {
                // `to` is inclusive on the page: day 8 09:00 is in, day 9 is not.
                "filters": {"q": "見積", "action": "visit", "from": day(2).to_string(), "to": day(8).to_string()},
                "ids": [ids[2]],
                "total": 1,
                "by_action": {"visit": 1},
                "submit": "enter",
            },
            {
                "filters": {"tag": "重点", "user_id": "u1, u2"},
                "ids": [ids[0], ids[4]],
                "total": 2,
                "by_action": {"visit": 2},
            },
            {
                "filters": {"deal_id": deal_id, "result": "appointment,no_answer"},
                "ids": [ids[0], ids[1]],
                "total": 2,
                "by_action": {"visit": 1, "call": 1},
            },
        ],
        "min_shards": 1,
        "api_error": {"filters": {"from": day(9).to_string(), "to": day(3).to_string()}, "field": "to"},
    });
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-search.png");
    let output = run_browser(&server.url, &token, &expect, &screenshot);
    let report = format!(
        "web/e2e/search.mjs {} <token> (screenshot {}):\n{}{}\n--- tsunagu serve stderr ---\n{}",
        server.url,
        screenshot.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        server.stderr()
    );
    assert!(output.status.success(), "{report}");
    eprintln!("{}", String::from_utf8_lossy(&output.stdout));

    let log = dir.path().join("serve.log");
    let status = server.stop();
    assert_eq!(
        status.code(),
        Some(0),
        "`tsunagu serve` after SIGTERM: {status}; its stderr:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}
