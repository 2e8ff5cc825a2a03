//! Issue 19 through the HTTP API, on both deployments (the AWS run needs the peers, as in
//! `api.rs`): the memo search syntax, 422 on `q` for text it cannot read, `highlights`
//! on each item when `q` is given, and `sort=relevance` with its cursors.

mod app;

use app::{ids, Backend, TestApp};
use reqwest::StatusCode;
use serde_json::json;

on_both_deployments!(memo_search_syntax_highlights_and_relevance);
on_both_deployments!(whole_words_with_a_dictionary);

/// Records one visit per `(occurred_at, memo)` on a new deal of tenant A; returns their
/// ids and the last write's consistency token.
async fn record_memos(app: &TestApp, memos: &[(&str, &str)]) -> (Vec<String>, String) {
    let co = app.company(&app.a, "株式会社つなぐ", "東京都港区").await;
    let deal = app.deal(&app.a, &co, "案件", &[]).await;
    let mut ids_by_memo = Vec::new();
    let mut last = String::new();
    for (at, memo) in memos {
        let (id, _, token) = app
            .activity(
                &app.a,
                &deal,
                json!({"user_id": "u1", "action": "visit", "occurred_at": at, "memo": memo}),
            )
            .await;
        ids_by_memo.push(id);
        last = token;
    }
    (ids_by_memo, last)
}

async fn memo_search_syntax_highlights_and_relevance(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let memos = [
        (
            "2026-11-01T09:00:00Z",
            "お見積りを送付。次回みーてぃんぐで説明",
        ),
        (
            "2026-11-02T09:00:00Z",
            "ミーティング<日程>調整、失注の可能性あり",
        ),
        ("2026-11-03T09:00:00Z", "電話不在"),
        ("2026-11-04T09:00:00Z", "見積 見積 見積"),
    ];
    let (ids_by_memo, last) = record_memos(&app, &memos).await;
    let search = |q: &str, extra: &str| {
        format!(
            "/api/v1/activities?q={}{extra}&consistency_token={last}",
            q.replace(' ', "%20")
                .replace('"', "%22")
                .replace('<', "%3C")
                .replace('>', "%3E")
        )
    };
    let (status, page) = app.get(&app.a, &search("ミーティング -失注", "")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(ids(&page), [ids_by_memo[0].clone()]);
    assert_eq!(
        page["items"][0]["highlights"],
        json!(["お見積りを送付。次回<mark>みーてぃんぐ</mark>で説明"])
    );
    let (_, page) = app.get(&app.a, &search("電話 OR 日程", "")).await;
    assert_eq!(ids(&page), [ids_by_memo[2].clone(), ids_by_memo[1].clone()]);
    // The memo's own markup is escaped around the marks.
    assert_eq!(
        page["items"][1]["highlights"],
        json!(["ミーティング&lt;<mark>日程</mark>&gt;調整、失注の可能性あり"])
    );
    let (_, page) = app.get(&app.a, &search("\"不在\"", "")).await;
    assert_eq!(ids(&page), [ids_by_memo[2].clone()]);
    // Without q, no highlights field.
    let (_, page) = app
        .get(
            &app.a,
            &format!("/api/v1/activities?consistency_token={last}"),
        )
        .await;
    assert!(page["items"][0].get("highlights").is_none(), "{page}");
    // By relevance: the memo that is all 見積 first, then older ones; pages of one.
    let (_, page) = app.get(&app.a, &search("見積", "&sort=relevance")).await;
    assert_eq!(ids(&page), [ids_by_memo[3].clone(), ids_by_memo[0].clone()]);
    let (_, first) = app
        .get(&app.a, &search("見積", "&sort=relevance&limit=1"))
        .await;
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    let (_, second) = app
        .get(
            &app.a,
            &search("見積", &format!("&sort=relevance&limit=1&cursor={cursor}")),
        )
        .await;
    assert_eq!(ids(&second), [ids_by_memo[0].clone()]);
    let (status, body) = app
        .get(
            &app.a,
            &search("見積", &format!("&limit=1&cursor={cursor}")),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["fields"][0]["field"], "cursor");
    let (status, body) = app.get(&app.a, &search("見積", "&sort=oldest")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["fields"][0]["field"], "sort");
    // Unreadable text: 422 on q naming the problem, on the search and the aggregation.
    for (q, says) in [
        ("・", "no letter, digit, kana or kanji"),
        ("見積 -", "excludes nothing"),
        ("\"見積", "not closed"),
        ("見積 OR", "on each side"),
    ] {
        for path in [
            search(q, ""),
            format!(
                "/api/v1/activities/aggregate?group_by=action&q={}",
                q.replace(' ', "%20").replace('"', "%22")
            ),
        ] {
            let (status, body) = app.get(&app.a, &path).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {body}");
            assert_eq!(body["error"]["code"], "invalid");
            assert_eq!(body["error"]["fields"][0]["field"], "q");
            let message = body["error"]["fields"][0]["message"].as_str().unwrap();
            assert!(message.contains(says), "{path}: {message}");
        }
    }
    app.stop().await;
}

/// With `dictionary` on the search sink (the embedded index, or OpenSearch with the
/// pre-analyzed word fields), a place name does not match across word boundaries and
/// okurigana variants meet, through the API as through the index.
async fn whole_words_with_a_dictionary(backend: Backend) {
    let Some(app) = TestApp::start_with_dictionary(backend).await else {
        return;
    };
    let memos = [
        ("2026-11-01T09:00:00Z", "東京都港区の本社へ訪問"),
        ("2026-11-02T09:00:00Z", "京都の支店で打ち合わせ"),
        ("2026-11-03T09:00:00Z", "お見積りを送付、打合せの日程を調整"),
    ];
    let (ids_by_memo, last) = record_memos(&app, &memos).await;
    let search = |q: &str| {
        let url = format!("/api/v1/activities?q={q}&limit=10&consistency_token={last}");
        let app = &app;
        async move {
            let (status, page) = app.get(&app.a, &url).await;
            assert_eq!(status, StatusCode::OK, "{url}: {page}");
            ids(&page)
        }
    };
    assert_eq!(
        search("京都").await,
        [ids_by_memo[1].clone()],
        "京都 is not 東京都"
    );
    assert_eq!(search("東京").await, [ids_by_memo[0].clone()]);
    for variant in ["見積もり", "見積り", "お見積り"] {
        assert_eq!(search(variant).await, [ids_by_memo[2].clone()], "{variant}");
    }
    // The highlights mark the variant as written in the memo.
    let url = format!("/api/v1/activities?q=見積もり&consistency_token={last}");
    let (_, page) = app.get(&app.a, &url).await;
    assert_eq!(
        page["items"][0]["highlights"],
        json!(["お<mark>見積り</mark>を送付、打合せの日程を調整"])
    );
    let mut meetings = search("打ち合わせ").await;
    meetings.sort();
    let mut expected = vec![ids_by_memo[1].clone(), ids_by_memo[2].clone()];
    expected.sort();
    assert_eq!(meetings, expected, "打ち合わせ = 打合せ");
}
