//! The HTTP API end to end: the application started in-process on port 0, driven over
//! real HTTP, on both deployments: the embedded defaults (a fresh data directory per
//! test) and `examples/aws-local.toml` (DynamoDB + DynamoDB Streams on moto, tenants and
//! shared state in DynamoDB, OpenSearch on osmem-server; fresh tables and index per
//! test). Every test runs unchanged on both (`embedded` and `aws` in each test's module);
//! the AWS runs need `AWS_ENDPOINT_URL` and `TSUNAGU_TEST_OPENSEARCH_URL`, which the test
//! script sets, and print "skipped" without them.

mod app;

use app::{aws_env, aws_example, config, ids, Backend, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;
use tsunagu_runtime::config::Config;

on_both_deployments!(
    activities_are_recorded_edited_with_optimistic_concurrency_and_deleted,
    bad_input_gets_one_message_per_field_and_the_common_error_body,
    search_pages_with_a_cursor_filters_on_several_axes_and_aggregates_across_deals,
    deal_search_combines_company_tags_lists_and_activity_facts,
    another_tenants_ids_are_not_found_on_every_endpoint,
    a_search_with_the_consistency_token_always_sees_the_write_and_without_may_not,
    operations_endpoints_report_health_metrics_status_and_the_openapi_document,
    shutdown_finishes_accepted_writes_and_they_are_searchable_after_a_restart,
    tenant_create_prints_the_token_on_its_last_line,
    synonyms_set_through_the_api_apply_to_the_next_search_of_their_tenant_only,
    tenant_synonyms_are_set_from_a_file_and_listed,
);

fn visit(memo: &str, result: &str, at: &str) -> Value {
    json!({"user_id": "u1", "action": "visit", "occurred_at": at, "memo": memo, "result": result})
}

fn days_ago(days: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::days(days)).to_rfc3339()
}

async fn activities_are_recorded_edited_with_optimistic_concurrency_and_deleted(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let co = app
        .company(&app.a, "株式会社つなぐ", "東京都千代田区丸の内1-1")
        .await;
    let deal = app.deal(&app.a, &co, "基幹システム刷新", &[]).await;
    let (id, v1, _) = app
        .activity(
            &app.a,
            &deal,
            visit("初回訪問", "appointment", "2026-11-20T10:00:00Z"),
        )
        .await;
    let path = format!("/api/v1/deals/{deal}/activities/{id}");
    let (status, got) = app.get(&app.a, &path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["version"], v1);
    assert_eq!(
        got["data"]["company_id"],
        co.as_str(),
        "the deal's company is copied"
    );

    let (status, edited) = app
        .patch(
            &app.a,
            &path,
            json!({"version": v1, "memo": "二回目の訪問", "result": null}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    let v2 = edited["version"].as_u64().unwrap();
    assert!(v2 > v1);
    assert_eq!(edited["data"]["memo"], "二回目の訪問");
    assert!(
        edited["data"].get("result").is_none(),
        "null clears the result"
    );

    // A stale edit (someone else's edit won) is refused with the current version.
    let (status, stale) = app
        .patch(&app.a, &path, json!({"version": v1, "memo": "上書き"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{stale}");
    assert_eq!(stale["error"]["code"], "conflict");
    assert_eq!(stale["error"]["current_version"], v2);
    let (status, _) = app
        .call(
            &app.a,
            Method::DELETE,
            &format!("{path}?version={v1}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, deleted) = app
        .call(
            &app.a,
            Method::DELETE,
            &format!("{path}?version={v2}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    let (status, _) = app.get(&app.a, &path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The deletion reaches the index: a search that waits for it no longer finds it.
    let token = deleted["consistency_token"].as_str().unwrap();
    let (_, page) = app
        .get(
            &app.a,
            &format!("/api/v1/activities?deal_id={deal}&consistency_token={token}"),
        )
        .await;
    assert_eq!(page["total"], 0, "{page}");
    app.stop().await;
}

async fn bad_input_gets_one_message_per_field_and_the_common_error_body(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let co = app
        .company(&app.a, "株式会社つなぐ", "大阪府大阪市北区")
        .await;
    let deal = app.deal(&app.a, &co, "案件", &[]).await;
    let path = format!("/api/v1/deals/{deal}/activities");

    let long_memo = "あ".repeat(10_001);
    let (status, body) = app
        .post(
            &app.a,
            &path,
            json!({"user_id": "has space", "action": "call", "occurred_at": "2026-11-20T10:00:00Z", "memo": long_memo}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let fields: Vec<&str> = body["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["user_id", "memo"]);
    assert!(body["request_id"].as_str().is_some_and(|r| !r.is_empty()));

    for (body, field) in [
        (
            json!({"user_id": "u1", "action": "fax", "occurred_at": "2026-11-20T10:00:00Z"}),
            "action",
        ),
        (
            json!({"user_id": "u1", "action": "call", "occurred_at": "2026-11-20T10:00:00Z", "colour": 1}),
            "colour",
        ),
        (json!({"user_id": "u1", "action": "call"}), "body"),
        (
            json!({"user_id": "u1", "action": "call", "occurred_at": "yesterday"}),
            "occurred_at",
        ),
    ] {
        let (status, v) = app.post(&app.a, &path, body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["error"]["code"], "invalid");
        let first = v["error"]["fields"][0]["field"].as_str().unwrap();
        assert_eq!(first, field, "{v}");
    }
    // Malformed JSON, wrong content type, bad query parameters, bad cursor.
    let resp = app
        .http
        .post(format!("{}{path}", app.base))
        .bearer_auth(&app.a)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = app
        .http
        .post(format!("{}{path}", app.base))
        .bearer_auth(&app.a)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    for (query, field) in [
        ("nope=1", "nope"),
        ("limit=5000", "limit"),
        ("cursor=xyz", "cursor"),
        ("action=fax", "action"),
        ("from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", "to"),
    ] {
        let (status, v) = app
            .get(&app.a, &format!("/api/v1/activities?{query}"))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {v}");
        assert_eq!(v["error"]["fields"][0]["field"], field, "{query}: {v}");
    }
    let (status, v) = app
        .post(
            &app.a,
            "/api/v1/companies",
            json!({"name": "x", "prefecture": "ニューヨーク"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["error"]["fields"][0]["field"], "prefecture");
    // A number with a fraction where an integer is expected is refused, not truncated.
    let (status, v) = app
        .post(
            &app.a,
            "/api/v1/deals",
            json!({"company_id": co, "title": "案件", "owner_id": "u1", "amount": 2244.0}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["fields"][0]["field"], "amount", "{v}");
    let (status, v) = app.get("tsu_forged", "/api/v1/activities").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"]["code"], "unauthorized");
    app.stop().await;
}

async fn search_pages_with_a_cursor_filters_on_several_axes_and_aggregates_across_deals(
    backend: Backend,
) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let co = app.company(&app.a, "株式会社つなぐ", "東京都港区").await;
    let mut deals = Vec::new();
    for i in 0..3 {
        deals.push(app.deal(&app.a, &co, &format!("案件{i}"), &[]).await);
    }
    let mut last = String::new();
    for i in 0..25 {
        let deal = &deals[i % 3];
        let action = if i % 5 == 0 { "call" } else { "visit" };
        let memo = if i % 2 == 0 {
            "見積を提出した"
        } else {
            "雑談のみ"
        };
        let (_, _, token) = app
            .activity(
                &app.a,
                deal,
                json!({"user_id": format!("u{}", i % 2), "action": action, "memo": memo,
                       "occurred_at": format!("2026-11-{:02}T09:00:00Z", i + 1)}),
            )
            .await;
        last = token;
    }
    // Wait for the last write once; pages then follow the cursor.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("/api/v1/activities?limit=10&consistency_token={last}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = app.get(&app.a, &path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["total"], 25);
        seen.extend(ids(&page));
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let unique: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!((seen.len(), unique.len()), (25, 25), "every activity once");

    // Several axes at once: text + action + user.
    let (_, page) = app
        .get(
            &app.a,
            "/api/v1/activities?q=見積&action=visit&user_id=u0&limit=100",
        )
        .await;
    // Even i (memo 見積, user u0) and not a multiple of 5 (visit): 2,4,6,8,12,14,16,18,22,24.
    assert_eq!(page["total"], 10, "{page}");
    let (_, agg) = app
        .get(&app.a, "/api/v1/activities/aggregate?group_by=deal&q=見積")
        .await;
    let counts: Vec<u64> = agg["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts.iter().sum::<u64>(), 13, "{agg}");
    let (_, by_action) = app
        .get(&app.a, "/api/v1/activities/aggregate?group_by=action")
        .await;
    assert_eq!(
        by_action["buckets"][0],
        json!({"key": "visit", "count": 20})
    );
    assert_eq!(by_action["buckets"][1], json!({"key": "call", "count": 5}));
    app.stop().await;
}

async fn deal_search_combines_company_tags_lists_and_activity_facts(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let tokyo = app
        .company(&app.a, "東京商事", "東京都新宿区西新宿2-8-1")
        .await;
    let osaka = app.company(&app.a, "大阪物産", "大阪市北区梅田1-1").await;
    let a = app.deal(&app.a, &tokyo, "A 最近電話あり", &["重点"]).await;
    let b = app.deal(&app.a, &tokyo, "B 電話は20日前", &["重点"]).await;
    let c = app.deal(&app.a, &tokyo, "C 活動なし", &["重点"]).await;
    let d = app.deal(&app.a, &tokyo, "D タグなし", &[]).await;
    let e = app.deal(&app.a, &osaka, "E 大阪", &["重点"]).await;
    let call = |at: String| json!({"user_id": "u1", "action": "call", "occurred_at": at});
    app.activity(&app.a, &a, call(days_ago(2))).await;
    app.activity(&app.a, &b, call(days_ago(20))).await;
    // Last visit ended in an appointment: B (appointment after no_answer) and E; not A.
    app.activity(&app.a, &b, visit("", "no_answer", &days_ago(10)))
        .await;
    app.activity(&app.a, &b, visit("", "appointment", &days_ago(3)))
        .await;
    app.activity(&app.a, &a, visit("", "appointment", &days_ago(9)))
        .await;
    app.activity(&app.a, &a, visit("", "no_answer", &days_ago(1)))
        .await;
    let (_, _, token) = app
        .activity(&app.a, &e, visit("", "appointment", &days_ago(4)))
        .await;

    let search = |body: Value| {
        let mut body = body;
        body["consistency_token"] = json!(token);
        app.post(&app.a, "/api/v1/deals/search", body)
    };
    let sorted = |page: &Value| {
        let mut v = ids(page);
        v.sort();
        v
    };
    let expect = |mut want: Vec<&String>| {
        want.sort();
        want.into_iter().cloned().collect::<Vec<_>>()
    };
    // Deals in 東京都 tagged 重点 with no call in the last 14 days.
    let (status, page) = search(json!({"prefectures": ["東京"], "tags": ["重点"],
        "no_activity": {"action": "call", "within_days": 14}}))
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(sorted(&page), expect(vec![&b, &c]));
    // Deals whose last visit resulted in an appointment.
    let (_, page) =
        search(json!({"last_activity": {"action": "visit", "result": "appointment"}})).await;
    assert_eq!(sorted(&page), expect(vec![&b, &e]));
    // Combined with the prefecture.
    let (_, page) = search(json!({"prefectures": ["東京都"], "last_activity": {"action": "visit", "result": "appointment"}})).await;
    assert_eq!(sorted(&page), expect(vec![&b]));
    // Sales list membership, and tags managed one by one.
    let list = app
        .create(
            &app.a,
            "/api/v1/sales-lists",
            json!({"name": "今月の重点", "deal_ids": [a, d]}),
        )
        .await;
    let list_id = list["data"]["id"].as_str().unwrap().to_string();
    let (status, added) = app
        .post(
            &app.a,
            &format!("/api/v1/sales-lists/{list_id}/deals"),
            json!({"deal_ids": [c, a]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{added}");
    assert_eq!(added["data"]["deal_ids"], json!([a, d, c]));
    let (status, tagged) = app
        .call(
            &app.a,
            Method::PUT,
            &format!("/api/v1/deals/{d}/tags/重点"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{tagged}");
    let mut body = json!({"sales_list_id": list_id, "tags": ["重点"]});
    body["consistency_token"] = tagged["consistency_token"].clone();
    let (_, page) = app.post(&app.a, "/api/v1/deals/search", body).await;
    assert_eq!(sorted(&page), expect(vec![&a, &c, &d]));
    let (_, lists) = app
        .get(
            &app.a,
            &format!(
                "/api/v1/sales-lists?consistency_token={}",
                added["consistency_token"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(lists["total"], 1, "{lists}");
    let (_, tags) = app
        .get(
            &app.a,
            &format!(
                "/api/v1/tags?consistency_token={}",
                tagged["consistency_token"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(tags["tags"], json!([{"tag": "重点", "deals": 5}]), "{tags}");
    let (_, companies) = app.get(&app.a, "/api/v1/companies?prefecture=大阪").await;
    assert_eq!(ids(&companies), [osaka]);
    app.stop().await;
}

async fn another_tenants_ids_are_not_found_on_every_endpoint(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    // Tenant A's data.
    let co = app.company(&app.a, "A社", "東京都港区").await;
    let deal = app.deal(&app.a, &co, "A案件", &["秘密"]).await;
    let (act, version, written) = app
        .activity(
            &app.a,
            &deal,
            visit("A社の機密メモ", "appointment", "2026-11-20T10:00:00Z"),
        )
        .await;
    let list = app
        .create(
            &app.a,
            "/api/v1/sales-lists",
            json!({"name": "Aのリスト", "deal_ids": [deal]}),
        )
        .await;
    let list_id = list["data"]["id"].as_str().unwrap().to_string();
    // Tenant B's own list, to try adding A's deal to it.
    let b_list = app
        .create(&app.b, "/api/v1/sales-lists", json!({"name": "Bのリスト"}))
        .await;
    let b_list_id = b_list["data"]["id"].as_str().unwrap().to_string();
    let act_path = format!("/api/v1/deals/{deal}/activities/{act}");
    let visit_body = visit("侵入", "x", "2026-11-20T10:00:00Z");
    let attempts: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/api/v1/companies/{co}"), None),
        (
            Method::PATCH,
            format!("/api/v1/companies/{co}"),
            Some(json!({"version": 1, "name": "乗っ取り"})),
        ),
        (Method::GET, format!("/api/v1/deals/{deal}"), None),
        (
            Method::PATCH,
            format!("/api/v1/deals/{deal}"),
            Some(json!({"version": 2, "title": "乗っ取り"})),
        ),
        (Method::PUT, format!("/api/v1/deals/{deal}/tags/x"), None),
        (
            Method::DELETE,
            format!("/api/v1/deals/{deal}/tags/秘密"),
            None,
        ),
        (
            Method::POST,
            "/api/v1/deals".into(),
            Some(json!({"company_id": co, "title": "t", "owner_id": "u"})),
        ),
        (
            Method::POST,
            format!("/api/v1/deals/{deal}/activities"),
            Some(visit_body),
        ),
        (Method::GET, act_path.clone(), None),
        (
            Method::PATCH,
            act_path.clone(),
            Some(json!({"version": version, "memo": "x"})),
        ),
        (
            Method::DELETE,
            format!("{act_path}?version={version}"),
            None,
        ),
        (Method::GET, format!("/api/v1/sales-lists/{list_id}"), None),
        (
            Method::POST,
            format!("/api/v1/sales-lists/{list_id}/deals"),
            Some(json!({"deal_ids": [deal]})),
        ),
        (
            Method::POST,
            format!("/api/v1/sales-lists/{b_list_id}/deals"),
            Some(json!({"deal_ids": [deal]})),
        ),
        (
            Method::POST,
            "/api/v1/sales-lists".into(),
            Some(json!({"name": "n", "deal_ids": [deal]})),
        ),
        (
            Method::POST,
            "/api/v1/deals/search".into(),
            Some(json!({"sales_list_id": list_id})),
        ),
    ];
    for (method, path, body) in attempts {
        let (status, v) = app.call(&app.b, method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {v}");
        assert!(
            !v.to_string().contains("機密") && !v.to_string().contains("A案件"),
            "{v}"
        );
    }
    // Searches and aggregations with A's ids find nothing for B, though the index holds
    // A's activity.
    let (_, own) = app
        .get(
            &app.a,
            &format!("/api/v1/activities?deal_id={deal}&consistency_token={written}"),
        )
        .await;
    assert_eq!(own["total"], 1, "{own}");
    for path in [
        format!("/api/v1/activities?deal_id={deal}"),
        format!("/api/v1/activities?company_id={co}"),
        "/api/v1/activities?q=機密".to_string(),
        format!("/api/v1/activities/aggregate?group_by=deal&deal_id={deal}"),
        "/api/v1/companies".to_string(),
        "/api/v1/sales-lists".to_string(),
        "/api/v1/tags".to_string(),
    ] {
        let (status, v) = app.get(&app.b, &path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {v}");
        let empty = v["total"] == 0 && v["items"] == json!([])
            || v["buckets"] == json!([])
            || v["tags"] == json!([])
            || (path.ends_with("sales-lists") && ids(&v) == std::slice::from_ref(&b_list_id));
        assert!(empty, "{path}: {v}");
    }
    let (_, v) = app
        .post(
            &app.b,
            "/api/v1/deals/search",
            json!({"company_ids": [co], "tags": ["秘密"]}),
        )
        .await;
    assert_eq!(v["total"], 0);
    // A still sees all of it, unchanged.
    let (status, v) = app.get(&app.a, &act_path).await;
    assert_eq!(
        (status, v["version"].as_u64()),
        (StatusCode::OK, Some(version))
    );
    app.stop().await;
}

/// An API node that does not replicate (`[server] replicate = false`) beside a separate
/// worker that does: writes through the node are searchable with their consistency
/// token, decided from the worker's checkpoints in the lease table, never from the
/// node's own process. AWS deployment only: the embedded index has one writer, so an
/// embedded API node is refused with a message saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_node_that_does_not_replicate_reads_its_writes_through_the_workers() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = {
        let mut cfg = config(Backend::Embedded, dir.path(), "").unwrap();
        cfg.server.replicate = false;
        tsunagu_runtime::serving::start(cfg, "127.0.0.1:0".parse().unwrap()).await
    };
    let refused = embedded.err().expect("an embedded API node is refused");
    assert!(format!("{refused:#}").contains("one writer"), "{refused:#}");
    let Some(mut cfg) = config(Backend::Aws, dir.path(), "") else {
        return;
    };
    // The worker: another process as far as the node is concerned (its own runtime,
    // sinks and pipeline, a lease holder of its own).
    let worker = tsunagu_runtime::Runtime::open(cfg.clone()).await.unwrap();
    let sinks = worker.open_sinks().await.unwrap();
    let pipeline = worker
        .start_pipeline(&sinks, Vec::new(), Some("worker-1"))
        .await
        .unwrap();
    cfg.server.replicate = false;
    let registry = tsunagu_runtime::tenants::open_tenant_directory(&cfg)
        .await
        .unwrap();
    let (_, token) = registry.create("acme").await.unwrap();
    let node = tsunagu_runtime::serving::start(cfg.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let app = TestApp {
        server: Some(node),
        base: String::new(),
        http: reqwest::Client::new(),
        a: token.clone(),
        b: token,
        config: cfg,
        _dir: dir,
    };
    let app = TestApp {
        base: format!("http://{}", app.server.as_ref().unwrap().addr),
        ..app
    };
    let co = app.company(&app.a, "株式会社つなぐ", "東京都港区").await;
    let deal = app.deal(&app.a, &co, "案件", &[]).await;
    for i in 0..5 {
        let word = format!("別ノード{i}");
        let (_, _, token) = app
            .activity(&app.a, &deal, visit(&word, "ok", "2026-11-20T10:00:00Z"))
            .await;
        let (status, page) = app
            .get(
                &app.a,
                &format!("/api/v1/activities?q={word}&consistency_token={token}"),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["total"], 1, "the token's write is searchable: {page}");
    }
    // The node reports the worker's shards, from the shared state.
    let (status, report) = app.get(&app.a, "/api/v1/pipeline/status").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let states: Vec<&str> = report["consumers"][0]["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert!(
        states.iter().any(|s| s.contains("worker-1")),
        "the node sees the worker's leases: {report}"
    );
    let ready = app
        .http
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    app.stop().await;
    pipeline.shutdown().await;
    for (_, sink) in sinks {
        sink.close().await;
    }
}

async fn a_search_with_the_consistency_token_always_sees_the_write_and_without_may_not(
    backend: Backend,
) {
    // Commits at most every 300 ms: a write is searchable only after the next one.
    let Some(app) = TestApp::start_with(
        backend,
        "[sinks.activities]\ntype = \"embedded_index\"\nrefresh_interval_ms = 300\n",
    )
    .await
    else {
        return;
    };
    let co = app.company(&app.a, "株式会社つなぐ", "東京都港区").await;
    let deal = app.deal(&app.a, &co, "案件", &[]).await;
    let mut missing_without = 0;
    for i in 0..8 {
        let word = format!("確認{i}番");
        let (_, _, token) = app
            .activity(&app.a, &deal, visit(&word, "ok", "2026-11-20T10:00:00Z"))
            .await;
        let (_, without) = app
            .get(&app.a, &format!("/api/v1/activities?q={word}"))
            .await;
        if without["total"] == 0 {
            missing_without += 1;
        }
        let (status, with) = app
            .get(
                &app.a,
                &format!("/api/v1/activities?q={word}&consistency_token={token}"),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{with}");
        assert_eq!(
            with["total"], 1,
            "with the token the write is always there: {with}"
        );
    }
    assert!(
        missing_without > 0,
        "without the token, a just-written activity should sometimes be missing"
    );
    let (status, v) = app
        .get(&app.a, "/api/v1/activities?consistency_token=garbage")
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    app.stop().await;
}

async fn operations_endpoints_report_health_metrics_status_and_the_openapi_document(
    backend: Backend,
) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let co = app.company(&app.a, "株式会社つなぐ", "東京都港区").await;
    let deal = app.deal(&app.a, &co, "案件", &[]).await;
    let (_, _, token) = app
        .activity(&app.a, &deal, visit("", "ok", "2026-11-20T10:00:00Z"))
        .await;
    app.get(
        &app.a,
        &format!("/api/v1/activities?consistency_token={token}"),
    )
    .await;
    let get = |path: &'static str| app.http.get(format!("{}{path}", app.base)).send();
    assert_eq!(get("/healthz").await.unwrap().status(), StatusCode::OK);
    let mut ready = false;
    for _ in 0..50 {
        if get("/readyz").await.unwrap().status() == StatusCode::OK {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "/readyz never became ready");
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    for needle in [
        "tsunagu_writes_total{entity=\"activity\",op=\"create\"} 1",
        "tsunagu_replication_lag_seconds_count{consumer=\"search\"}",
        "tsunagu_dead_letters{consumer=\"search\"} 0",
        "tsunagu_sink_errors_total{consumer=\"search\",kind=\"batch_retryable\"} 0",
        "tsunagu_http_requests_total{method=\"POST\",route=\"/api/v1/deals/{deal_id}/activities\",status=\"201\"} 1",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
    // The embedded stream counts each shard's backlog; DynamoDB Streams cannot (the
    // gauge is absent rather than wrong).
    if matches!(backend, Backend::Embedded) {
        let needle = "tsunagu_shard_backlog_records{consumer=\"search\",shard=\"0\"}";
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
    // What operators alert on: records applied (3 writes, read back above), per shard the
    // age of the oldest unapplied record (0 once the checkpoints caught up) and the state,
    // the build, the process.
    let sample = |metrics: &str, name: &str| -> Vec<f64> {
        metrics
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect()
    };
    let mut metrics = metrics;
    for _ in 0..100 {
        let oldest = sample(&metrics, "tsunagu_shard_oldest_unapplied_age_seconds");
        if !oldest.is_empty() && oldest.iter().all(|&s| s == 0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        metrics = get("/metrics").await.unwrap().text().await.unwrap();
    }
    let oldest = sample(&metrics, "tsunagu_shard_oldest_unapplied_age_seconds");
    assert!(
        !oldest.is_empty(),
        "no oldest-unapplied gauge in\n{metrics}"
    );
    assert!(oldest.iter().all(|&s| s == 0.0), "{oldest:?} in\n{metrics}");
    let applied = sample(&metrics, "tsunagu_records_applied_total");
    assert!(
        applied.iter().sum::<f64>() >= 3.0,
        "{applied:?} in\n{metrics}"
    );
    let running = metrics
        .lines()
        .filter(|l| l.starts_with("tsunagu_shard_state{") && l.contains("state=\"running\"} 1"))
        .count();
    assert!(running >= 1, "no running shard in\n{metrics}");
    assert_eq!(
        sample(&metrics, "tsunagu_build_info"),
        vec![1.0],
        "{metrics}"
    );
    if cfg!(target_os = "linux") {
        for (name, least) in [
            ("process_cpu_seconds_total", 0.0),
            ("process_resident_memory_bytes", 1.0),
            ("process_open_fds", 3.0),
        ] {
            let value = sample(&metrics, name);
            assert!(
                value.len() == 1 && value[0] >= least,
                "{name} in\n{metrics}"
            );
        }
    }
    let (status, report) = app.get(&app.a, "/api/v1/pipeline/status").await;
    assert_eq!(status, StatusCode::OK);
    let shards = report["consumers"][0]["shards"].as_array().unwrap().len();
    match backend {
        Backend::Embedded => assert_eq!(shards, 4, "the embedded store's 4 shards: {report}"),
        // moto's stream has one shard.
        Backend::Aws => assert!(shards >= 1, "{report}"),
    }
    assert!(report["lag"]["count"].as_u64().unwrap() >= 3, "{report}");
    let doc: Value = get("/openapi.json").await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.contains_key("/api/v1/deals/search"));
    assert!(doc["components"]["schemas"]["ActivityLog"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let page = get("/").await.unwrap().text().await.unwrap();
    assert!(page.contains("<html") || page.contains("<!doctype"));
    app.stop().await;
}

async fn shutdown_finishes_accepted_writes_and_they_are_searchable_after_a_restart(
    backend: Backend,
) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let co = app.company(&app.a, "株式会社つなぐ", "東京都港区").await;
    let deal = app.deal(&app.a, &co, "案件", &[]).await;
    let mut writes = Vec::new();
    for i in 0..40 {
        let http = app.http.clone();
        let url = format!("{}/api/v1/deals/{deal}/activities", app.base);
        let token = app.a.clone();
        writes.push(tokio::spawn(async move {
            let resp = http
                .post(url)
                .bearer_auth(token)
                .json(&visit(&format!("停止中{i}"), "ok", "2026-11-20T10:00:00Z"))
                .send()
                .await
                .ok()?;
            (resp.status() == StatusCode::CREATED).then_some(())?;
            let v: Value = resp.json().await.ok()?;
            Some(v["data"]["id"].as_str()?.to_string())
        }));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let a = app.a.clone();
    let (cfg, _dir) = app.stop().await;
    let mut accepted = Vec::new();
    for w in writes {
        if let Some(id) = w.await.unwrap() {
            accepted.push(id);
        }
    }
    // Restart on the same deployment: every accepted write is there and searchable.
    let server = tsunagu_runtime::serving::start(cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let mut found = std::collections::HashSet::new();
    for _ in 0..100 {
        let page: Value = http
            .get(format!(
                "http://{}/api/v1/activities?deal_id={deal}&limit=100",
                server.addr
            ))
            .bearer_auth(&a)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        found = ids(&page).into_iter().collect();
        if accepted.iter().all(|id| found.contains(id)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in &accepted {
        assert!(found.contains(id), "accepted write {id} lost");
    }
    server.stop().await.unwrap();
}

/// `tsunagu tenant ARGS` on the deployment's registry, with the environment it runs in:
/// one set of unique names for every command given `dir`. `None` (skip) without the AWS
/// peers.
fn tenant_cli(
    backend: Backend,
    dir: &std::path::Path,
) -> Option<(Vec<(String, String)>, RunTenant)> {
    let vars = match backend {
        Backend::Embedded => Vec::new(),
        Backend::Aws => aws_env(dir)?,
    };
    let env = vars.clone();
    let dir = dir.to_path_buf();
    let run = move |args: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tsunagu"));
        command.arg("tenant").args(args).envs(env.clone());
        match backend {
            Backend::Embedded => command.arg("--data-dir").arg(&dir),
            Backend::Aws => command.arg("--config").arg(aws_example()),
        };
        command.output().unwrap()
    };
    Some((vars, Box::new(run)))
}

/// Runs `tsunagu tenant ARGS` ([`tenant_cli`]).
type RunTenant = Box<dyn Fn(&[&str]) -> std::process::Output>;

async fn tenant_create_prints_the_token_on_its_last_line(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some((vars, run)) = tenant_cli(backend, dir.path()) else {
        return;
    };
    let out = run(&["create", "acme"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let token = stdout.lines().last().unwrap();
    let cfg = match backend {
        Backend::Embedded => config(backend, dir.path(), "").unwrap(),
        Backend::Aws => {
            let text = std::fs::read_to_string(aws_example()).unwrap();
            let env = |name: &str| {
                vars.iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .or_else(|| std::env::var(name).ok())
            };
            Config::parse_with_env(&text, "aws", &env).unwrap()
        }
    };
    let registry = tsunagu_runtime::tenants::open_tenant_directory(&cfg)
        .await
        .unwrap();
    let tenant = registry
        .authenticate(token)
        .await
        .unwrap()
        .expect("the printed token works");
    assert_eq!(tenant.name, "acme");
    let again = run(&["create", "acme"]);
    assert!(!again.status.success(), "names are unique");
    let listed = run(&["list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&tenant.id));
    // A name shaped like another tenant's id is refused: `tenant token tn_...` can never
    // reach the wrong tenant.
    let shaped = run(&["create", &tenant.id]);
    assert!(!shaped.status.success(), "a name may not look like an id");
    let revoked = run(&["revoke", &tenant.id]);
    assert!(revoked.status.success());
    assert_eq!(registry.authenticate(token).await.unwrap(), None);

    // A time zone at creation, changed later; a bad one names the flag.
    let out = run(&["create", "tokyo-team", "--time-zone", "Asia/Tokyo"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("time zone Asia/Tokyo"), "{stdout}");
    let token = stdout.lines().last().unwrap();
    let zone = |token: &str| {
        let registry = &registry;
        let token = token.to_string();
        async move {
            registry
                .authenticate(&token)
                .await
                .unwrap()
                .expect("live token")
                .time_zone
        }
    };
    assert_eq!(zone(token).await.as_deref(), Some("Asia/Tokyo"));
    let listed = String::from_utf8(run(&["list"]).stdout).unwrap();
    assert!(
        listed
            .lines()
            .any(|l| l.contains("tokyo-team") && l.ends_with("Asia/Tokyo")),
        "{listed}"
    );
    let bad = run(&["create", "mars-team", "--time-zone", "Mars/Olympus"]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("--time-zone") && stderr.contains("Mars/Olympus"),
        "{stderr}"
    );
    let set = run(&["set", "tokyo-team", "--time-zone", "Europe/Paris"]);
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    assert_eq!(zone(token).await.as_deref(), Some("Europe/Paris"));
    let unknown = run(&["set", "nobody", "--time-zone", "UTC"]);
    assert!(!unknown.status.success(), "an unknown tenant is refused");
}

/// The same writes through the API of both deployments; then the same searches,
/// aggregations, deal searches and listings: identical answers, hit for hit and page by
/// page (ids are generated per deployment, so answers are compared through the order in
/// which each item was created).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_deployments_answer_the_same_searches_hit_for_hit() {
    let Some(aws) = TestApp::start(Backend::Aws).await else {
        return;
    };
    let embedded = TestApp::start(Backend::Embedded).await.unwrap();
    let apps = [&embedded, &aws];
    // Canonical names ("co0", "dl3", "ac17") for each deployment's generated ids.
    let mut canonical: [std::collections::HashMap<String, String>; 2] = Default::default();
    let mut ids: [Vec<String>; 2] = Default::default();
    let mut last_token: [String; 2] = Default::default();

    let companies = [
        ("株式会社つなぐ", "東京都港区芝公園1-1"),
        ("ﾂﾅｸﾞ商事", "〒530-0001 大阪府大阪市北区梅田1-1"),
        ("京都システム", "京都府京都市中京区"),
    ];
    let mut company_ids: [Vec<String>; 2] = Default::default();
    for (i, app) in apps.iter().enumerate() {
        for (n, (name, address)) in companies.iter().enumerate() {
            let id = app.company(&app.a, name, address).await;
            canonical[i].insert(id.clone(), format!("co{n}"));
            company_ids[i].push(id);
        }
    }
    let deals = [
        (
            0,
            "東京本社 見積案件",
            &["重点", "新規"][..],
            "proposal",
            3_000_000,
        ),
        (0, "追加ライセンス", &["既存"][..], "negotiation", 500_000),
        (1, "大阪支社 MEETING 案件", &["重点"][..], "lead", 1_200_000),
        (2, "京都 トライアル", &[][..], "won", 800_000),
    ];
    let mut deal_ids: [Vec<String>; 2] = Default::default();
    for (i, app) in apps.iter().enumerate() {
        for (n, (company, title, tags, stage, amount)) in deals.iter().enumerate() {
            let v = app
                .create(
                    &app.a,
                    "/api/v1/deals",
                    json!({"company_id": company_ids[i][*company], "title": title, "owner_id": format!("u{}", n % 2),
                           "tags": tags, "stage": stage, "amount": amount}),
                )
                .await;
            let id = v["data"]["id"].as_str().unwrap().to_string();
            canonical[i].insert(id.clone(), format!("dl{n}"));
            deal_ids[i].push(id);
        }
    }
    let memos = [
        "見積もりを提出。来週ミーティング予定",
        "ﾐｰﾃｨﾝｸﾞで予算を確認",
        "ＭＥＥＴＩＮＧ ｍｅｍｏ: 東京都港区で打ち合わせ",
        "電話がつながらず",
        "トライアル開始、見積の再提出を依頼された",
        "京都の拠点を訪問",
        "Meeting with the CTO about the 見積",
    ];
    let actions = ["call", "visit", "email", "online_meeting"];
    let results = ["appointment", "no_answer", "ok"];
    for (i, app) in apps.iter().enumerate() {
        for n in 0..28usize {
            let deal = &deal_ids[i][n % deals.len()];
            let body = json!({
                "user_id": format!("u{}", n % 3),
                "action": actions[n % actions.len()],
                "occurred_at": format!("2026-11-{:02}T{:02}:00:00Z", 1 + n % 20, n % 24),
                "memo": memos[n % memos.len()],
                "result": results[n % results.len()],
                "tags": if n % 4 == 0 { vec!["重点"] } else { vec![] },
            });
            let (id, version, token) = app.activity(&app.a, deal, body).await;
            canonical[i].insert(id.clone(), format!("ac{n}"));
            ids[i].push(format!("{deal}|{id}|{version}"));
            last_token[i] = token;
        }
        // An edit and a delete, so versions and tombstones are part of what is compared.
        for (n, edit) in [(3usize, true), (10, false)] {
            let parts: Vec<&str> = ids[i][n].split('|').collect();
            let path = format!("/api/v1/deals/{}/activities/{}", parts[0], parts[1]);
            let (status, v) = if edit {
                app.patch(
                    &app.a,
                    &path,
                    json!({"version": parts[2].parse::<u64>().unwrap(), "memo": "見積書を再送"}),
                )
                .await
            } else {
                app.call(
                    &app.a,
                    Method::DELETE,
                    &format!("{path}?version={}", parts[2]),
                    None,
                )
                .await
            };
            assert_eq!(status, StatusCode::OK, "{v}");
            last_token[i] = v["consistency_token"].as_str().unwrap().to_string();
        }
        let list = app
            .create(&app.a, "/api/v1/sales-lists", json!({"name": "重点リスト"}))
            .await;
        let list_id = list["data"]["id"].as_str().unwrap().to_string();
        canonical[i].insert(list_id.clone(), "sl0".into());
        let (status, v) = app
            .post(
                &app.a,
                &format!("/api/v1/sales-lists/{list_id}/deals"),
                json!({"deal_ids": [deal_ids[i][0], deal_ids[i][2]]}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        last_token[i] = v["consistency_token"]
            .as_str()
            .map(str::to_string)
            .unwrap_or(last_token[i].clone());
    }

    // Rewrites every id in an answer into its canonical name; drops what differs by
    // nature (versions, timestamps of creation, tokens, cursors).
    fn canonicalize(v: &Value, names: &std::collections::HashMap<String, String>) -> Value {
        match v {
            Value::String(s) => Value::String(names.get(s).cloned().unwrap_or(s.clone())),
            Value::Array(a) => Value::Array(a.iter().map(|x| canonicalize(x, names)).collect()),
            Value::Object(o) => Value::Object(
                o.iter()
                    .filter(|(k, _)| {
                        !matches!(
                            k.as_str(),
                            "version"
                                | "created_at"
                                | "updated_at"
                                | "consistency_token"
                                | "next_cursor"
                                | "tenant_id"
                        )
                    })
                    .map(|(k, x)| {
                        (
                            names.get(k).cloned().unwrap_or(k.clone()),
                            canonicalize(x, names),
                        )
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    // Every page of a listing, with a small page size, concatenated.
    async fn all_pages(app: &TestApp, path: &str, token: &str) -> (Value, usize) {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        let mut total;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let mut url = format!("{path}{sep}limit=4&consistency_token={token}");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let (status, page) = app.get(&app.a, &url).await;
            assert_eq!(status, StatusCode::OK, "{url}: {page}");
            pages += 1;
            total = page["total"].clone();
            items.extend(page["items"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
            assert!(pages < 100, "{url}: the cursor never ends");
        }
        (json!({"total": total, "items": items}), pages)
    }

    let activity_searches = [
        "/api/v1/activities",
        "/api/v1/activities?q=見積",
        "/api/v1/activities?q=ミーティング",
        "/api/v1/activities?q=ﾐｰﾃｨﾝｸﾞ",
        "/api/v1/activities?q=meeting",
        "/api/v1/activities?q=東京都",
        "/api/v1/activities?q=京都",
        "/api/v1/activities?q=見積%20再",
        "/api/v1/activities?action=visit,call&result=appointment",
        "/api/v1/activities?user_id=u1&from=2026-11-05T00:00:00Z&to=2026-11-15T00:00:00Z",
        "/api/v1/activities?tag=重点",
    ];
    let mut compared = 0;
    for path in activity_searches {
        let mut answers = Vec::new();
        for (i, app) in apps.iter().enumerate() {
            let (page, _) = all_pages(app, path, &last_token[i]).await;
            answers.push(canonicalize(&page, &canonical[i]));
        }
        assert_eq!(answers[0], answers[1], "{path}: embedded vs aws");
        compared += answers[0]["items"].as_array().unwrap().len();
    }
    assert!(
        compared > 50,
        "the searches must find something to compare ({compared})"
    );
    for by in ["action", "user", "deal", "company", "result", "tag", "day"] {
        let mut answers = Vec::new();
        for (i, app) in apps.iter().enumerate() {
            let (status, v) = app
                .get(
                    &app.a,
                    &format!(
                        "/api/v1/activities/aggregate?group_by={by}&q=見積&consistency_token={}",
                        last_token[i]
                    ),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{v}");
            let mut v = canonicalize(&v, &canonical[i]);
            let buckets = v["buckets"].as_array_mut().unwrap();
            if by != "day" {
                // Most first; groups with equal counts are ordered by their key, which
                // for deals and companies is an id generated per deployment: compare
                // those ties by canonical name.
                let counts: Vec<u64> = buckets
                    .iter()
                    .map(|b| b["count"].as_u64().unwrap())
                    .collect();
                assert!(
                    counts.windows(2).all(|w| w[0] >= w[1]),
                    "by {by}: most first: {counts:?}"
                );
                buckets.sort_by(|a, b| {
                    (std::cmp::Reverse(a["count"].as_u64()), a["key"].as_str())
                        .cmp(&(std::cmp::Reverse(b["count"].as_u64()), b["key"].as_str()))
                });
            }
            assert!(!buckets.is_empty(), "by {by}: nothing to compare");
            answers.push(v);
        }
        assert_eq!(answers[0], answers[1], "aggregate by {by}: embedded vs aws");
    }
    for body in [
        json!({}),
        json!({"prefectures": ["大阪府"]}),
        json!({"tags": ["重点"], "amount_min": 1000000}),
        json!({"text": "案件"}),
        json!({"last_activity": {"action": "visit", "result": "appointment"}}),
    ] {
        let mut answers = Vec::new();
        for (i, app) in apps.iter().enumerate() {
            let mut body = body.clone();
            body["consistency_token"] = json!(last_token[i]);
            let (status, v) = app.post(&app.a, "/api/v1/deals/search", body).await;
            assert_eq!(status, StatusCode::OK, "{v}");
            answers.push(canonicalize(&v, &canonical[i]));
        }
        assert_eq!(
            answers[0], answers[1],
            "deal search {body}: embedded vs aws"
        );
    }
    for path in [
        "/api/v1/companies",
        "/api/v1/companies?q=つなぐ",
        "/api/v1/companies?prefecture=大阪府",
        "/api/v1/tags",
        "/api/v1/sales-lists",
    ] {
        let mut answers = Vec::new();
        for (i, app) in apps.iter().enumerate() {
            let sep = if path.contains('?') { '&' } else { '?' };
            let (status, v) = app
                .get(
                    &app.a,
                    &format!("{path}{sep}consistency_token={}", last_token[i]),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{path}: {v}");
            answers.push(canonicalize(&v, &canonical[i]));
        }
        assert_eq!(answers[0], answers[1], "{path}: embedded vs aws");
    }
    embedded.stop().await;
    aws.stop().await;
}

/// Issue 19: a tenant's synonyms, set with `PUT /api/v1/synonyms`, apply to its next
/// search (no reindexing): `MTG` (in any width) finds a memo that only says 打ち合わせ and
/// marks it, `-MTG` excludes it, aggregations count it; another tenant's searches do not
/// use them; a refused list names the problem and changes nothing; an empty list clears.
async fn synonyms_set_through_the_api_apply_to_the_next_search_of_their_tenant_only(
    backend: Backend,
) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (status, empty) = app.get(&app.a, "/api/v1/synonyms").await;
    assert_eq!(status, StatusCode::OK, "{empty}");
    assert_eq!(empty, json!({"groups": []}));

    let memo_of = |token: &str| {
        let token = token.to_string();
        let app = &app;
        async move {
            let co = app
                .company(&token, "株式会社つなぐ", "東京都港区芝公園1-1")
                .await;
            let deal = app.deal(&token, &co, "基幹システム刷新", &[]).await;
            let mut written = Vec::new();
            for (memo, days) in [("来週の打ち合わせで見積を提示", 2), ("電話で日程を確認", 1)]
            {
                let body = visit(memo, "appointment", &days_ago(days));
                written.push(app.activity(&token, &deal, body).await);
            }
            let [(meeting, ..), (call, _, token)] = <[_; 2]>::try_from(written).unwrap();
            (meeting, call, token)
        }
    };
    let (meeting, call, token_a) = memo_of(&app.a).await;
    let (_, _, token_b) = memo_of(&app.b).await;
    let search = |token: &str, q: &str, consistency: &str| {
        let path = format!("/api/v1/activities?q={q}&consistency_token={consistency}");
        let token = token.to_string();
        let app = &app;
        async move {
            let (status, page) = app.get(&token, &path).await;
            assert_eq!(status, StatusCode::OK, "{path}: {page}");
            page
        }
    };
    assert!(
        ids(&search(&app.a, "MTG", &token_a).await).is_empty(),
        "no synonyms yet"
    );

    let groups = json!({"groups": [[" MTG ", "ミーティング", "打ち合わせ"], ["見積", "見積もり"]]});
    let (status, stored) = app
        .call(&app.a, Method::PUT, "/api/v1/synonyms", Some(groups))
        .await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    let expected = json!({"groups": [["MTG", "ミーティング", "打ち合わせ"], ["見積", "見積もり"]]});
    assert_eq!(stored, expected, "stored trimmed");
    assert_eq!(app.get(&app.a, "/api/v1/synonyms").await.1, expected);

    for q in ["MTG", "ｍｔｇ", "ミーティング"] {
        let page = search(&app.a, q, &token_a).await;
        assert_eq!(ids(&page), std::slice::from_ref(&meeting), "q={q}: {page}");
        let highlights = page["items"][0]["highlights"].to_string();
        assert!(
            highlights.contains("<mark>打ち合わせ</mark>"),
            "q={q}: the synonym that matched is marked: {highlights}"
        );
    }
    assert_eq!(ids(&search(&app.a, "-MTG", &token_a).await), [call]);
    assert_eq!(
        ids(&search(&app.a, "MTG%20-見積もり", &token_a).await),
        Vec::<String>::new(),
        "an excluded synonym excludes its whole group"
    );
    let (status, counts) = app
        .get(
            &app.a,
            &format!(
                "/api/v1/activities/aggregate?group_by=action&q=MTG&consistency_token={token_a}"
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{counts}");
    assert_eq!(counts["buckets"], json!([{"key": "visit", "count": 1}]));
    // Tenant B has the same memo but no synonyms.
    assert!(ids(&search(&app.b, "MTG", &token_b).await).is_empty());
    if let Backend::Embedded = backend {
        // `tsunagu search --tenant` applies them too, on the index the server has open
        // (once the server has committed the memo, which a read-only reader waits for).
        let page = search(&app.a, "MTG", &token_a).await;
        let tenant_a = page["items"][0]["data"]["tenant_id"]
            .as_str()
            .unwrap()
            .to_string();
        let cli_search = |text: &str| {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_tsunagu"))
                .args(["search", "--json", "--tenant", &tenant_a, "--text", text])
                .arg("--data-dir")
                .arg(app._dir.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice::<Value>(&out.stdout).unwrap()
        };
        let mut committed = false;
        for _ in 0..120 {
            if cli_search("打ち合わせ")["total"] == 1 {
                committed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(committed, "the server commits the memo within 30 s");
        let cli = cli_search("mtg");
        assert_eq!(cli["total"], 1, "{cli}");
        assert_eq!(cli["hits"][0]["activity"]["id"], meeting.as_str(), "{cli}");
        let highlights = cli["hits"][0]["highlights"].to_string();
        assert!(
            highlights.contains("<mark>打ち合わせ</mark>"),
            "{highlights}"
        );
    }
    assert_eq!(
        app.get(&app.b, "/api/v1/synonyms").await.1,
        json!({"groups": []})
    );

    // A refused list names the problem and changes nothing.
    for (body, needle) in [
        (json!({"groups": [["MTG"]]}), "group 1 has 1 term"),
        (
            json!({"groups": [["MTG", "会議"], ["ｍｔｇ", "打合せ"]]}),
            "same term",
        ),
        (json!({"groups": [["MTG", "-会議"]]}), "search syntax"),
        (json!({"groups": [["MTG", " "]]}), "is empty"),
    ] {
        let (status, error) = app
            .call(&app.a, Method::PUT, "/api/v1/synonyms", Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {error}");
        assert_eq!(error["error"]["fields"][0]["field"], "groups", "{error}");
        assert!(
            error["error"]["message"].to_string().contains(needle),
            "{error}"
        );
    }
    let (status, error) = app
        .call(
            &app.a,
            Method::PUT,
            "/api/v1/synonyms",
            Some(json!({"groups": [], "extra": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(app.get(&app.a, "/api/v1/synonyms").await.1, expected);

    let (status, cleared) = app
        .call(
            &app.a,
            Method::PUT,
            "/api/v1/synonyms",
            Some(json!({"groups": []})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cleared}");
    assert!(
        ids(&search(&app.a, "MTG", &token_a).await).is_empty(),
        "cleared"
    );
}

/// Issue 19: `tenant synonyms NAME --set FILE` replaces the list from a file (one group
/// a line, `=` or `,` between terms); `tenant synonyms NAME` lists it in the same format;
/// a bad file names its line and changes nothing; an empty file clears.
async fn tenant_synonyms_are_set_from_a_file_and_listed(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some((_, run)) = tenant_cli(backend, dir.path()) else {
        return;
    };
    let ok = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    ok(run(&["create", "acme"]));
    assert_eq!(
        ok(run(&["synonyms", "acme"])),
        "# synonyms of tenant acme: 0 group(s)\n"
    );
    let file = dir.path().join("synonyms.txt");
    std::fs::write(
        &file,
        "# meetings\nMTG = ミーティング = 打ち合わせ\n\n見積, 見積もり\n",
    )
    .unwrap();
    let set = ok(run(&["synonyms", "acme", "--set", file.to_str().unwrap()]));
    assert!(set.contains("2 synonym group(s)"), "{set}");
    let listed = ok(run(&["synonyms", "acme"]));
    assert_eq!(
        listed,
        "# synonyms of tenant acme: 2 group(s)\nMTG = ミーティング = 打ち合わせ\n見積 = 見積もり\n"
    );

    // The listing reads back as the same list.
    std::fs::write(&file, &listed).unwrap();
    ok(run(&["synonyms", "acme", "--set", file.to_str().unwrap()]));
    assert_eq!(ok(run(&["synonyms", "acme"])), listed);

    std::fs::write(&file, "MTG = 会議\n\"商談\" = 打ち合わせ\n").unwrap();
    let bad = run(&["synonyms", "acme", "--set", file.to_str().unwrap()]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("--set") && stderr.contains("line 2") && stderr.contains("商談"),
        "{stderr}"
    );
    assert_eq!(ok(run(&["synonyms", "acme"])), listed, "nothing changed");
    assert!(!run(&["synonyms", "nobody"]).status.success());

    std::fs::write(&file, "").unwrap();
    ok(run(&["synonyms", "acme", "--set", file.to_str().unwrap()]));
    assert_eq!(
        ok(run(&["synonyms", "acme"])),
        "# synonyms of tenant acme: 0 group(s)\n"
    );
}
