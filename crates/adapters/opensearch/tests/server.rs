//! The sink against a server: osmem-server (`scripts/test-peers/osmem.sh`, skipped when
//! TSUNAGU_TEST_OPENSEARCH_URL is unset) for index creation, mapping errors, read-back
//! and refresh; a scripted local HTTP server (always run) for what osmem cannot be made
//! to do: 413, 401, 503 mid-batch, and checking the credentials sent.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tsunagu_conformance::sink::{corrupt, insert, key, modify, remove};
use tsunagu_domain::{ItemKey, Version};
use tsunagu_engine::ports::{Sink, SinkError};
use tsunagu_opensearch::document::index_body;
use tsunagu_opensearch::{OpenSearchConfig, OpenSearchError, OpenSearchSink, Refresh, Secret};

// --- against osmem-server ----------------------------------------------------------------

#[tokio::test]
async fn index_creation_is_idempotent_and_check_reports_the_cluster() {
    let Some(url) = common::server_url("index_creation_is_idempotent") else {
        return;
    };
    let config = common::config(&url, "idempotent");
    let before = OpenSearchSink::new(&config).unwrap().check().await.unwrap();
    assert!(!before.index_exists, "{before:?}");
    assert_eq!(before.distribution, "opensearch");
    let first = common::connect(&config).await;
    first.apply(&[insert(&key("i", "x", 0), 1)]).await.unwrap();
    // Connecting again (a restart, a second worker) keeps the index and its documents.
    let second = common::connect(&config).await;
    let (a, b) = tokio::join!(
        OpenSearchSink::connect(&config),
        OpenSearchSink::connect(&config)
    );
    a.unwrap();
    b.unwrap();
    assert!(second.check().await.unwrap().index_exists);
    second.refresh().await.unwrap();
    assert_eq!(
        second.held_version(&key("i", "x", 0)).await.unwrap(),
        Some((Version(1), false))
    );
}

#[tokio::test]
async fn a_foreign_index_is_refused_with_a_clear_error() {
    let Some(url) = common::server_url("a_foreign_index_is_refused") else {
        return;
    };
    let config = common::config(&url, "foreign");
    let http = reqwest::Client::new();
    http.put(format!("{url}/{}", config.index))
        .json(&serde_json::json!({"mappings": {"properties": {"kind": {"type": "text"}}}}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let err = OpenSearchSink::connect(&config)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not created by tsunagu"), "{err}");
    assert!(err.contains("`key`") || err.contains("`kind`"), "{err}");
}

#[tokio::test]
async fn a_mapping_error_fails_its_record_permanently() {
    let Some(url) = common::server_url("a_mapping_error_fails_its_record_permanently") else {
        return;
    };
    let config = common::config(&url, "mapping-error");
    // An index whose `tags` are numbers: the activities' tags cannot be indexed there.
    let mut body = index_body(&config, None);
    body["mappings"]["properties"]["tags"] = serde_json::json!({"type": "long"});
    reqwest::Client::new()
        .put(format!("{url}/{}", config.index))
        .json(&body)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let sink = common::connect(&config).await;
    let (good, bad) = (key("m", "ok", 0), key("m", "bad", 0));
    let result = sink.apply(&[remove(&good, 2), insert(&bad, 1)]).await;
    match result {
        Err(SinkError::Records(failures)) => {
            assert_eq!(failures.len(), 1, "{failures:?}");
            assert_eq!(failures[0].index, 1);
            assert!(!failures[0].retryable, "{failures:?}");
            assert!(failures[0].message.starts_with("400"), "{failures:?}");
        }
        other => panic!("expected one permanent record failure, got {other:?}"),
    }
    sink.refresh().await.unwrap();
    assert_eq!(
        sink.held_version(&good).await.unwrap(),
        Some((Version(2), true))
    );
    assert_eq!(sink.held_version(&bad).await.unwrap(), None);
}

#[tokio::test]
async fn live_versions_pages_over_every_live_document() {
    let Some(url) = common::server_url("live_versions_pages_over_every_live_document") else {
        return;
    };
    let sink = common::connect(&common::config(&url, "live")).await;
    // Odd characters in keys survive the id encoding and come back as they went in.
    let mut expected: Vec<(ItemKey, Version)> = (0..23u32)
        .map(|n| {
            (
                ItemKey::new(format!("deal|{}%/?", n % 4), format!("activity#{n}")),
                Version(u64::from(n) + 1),
            )
        })
        .collect();
    let mut batch: Vec<_> = expected.iter().map(|(k, v)| modify(k, v.0)).collect();
    // Tombstones are not live.
    batch.extend((0..5).map(|n| remove(&key("live", "gone", n), 9)));
    sink.apply(&batch).await.unwrap();
    sink.refresh().await.unwrap();
    let live = sink.live_versions_paged(7).await.unwrap();
    expected.sort();
    assert_eq!(live.len(), 23);
    let mut sorted = live.clone();
    sorted.sort();
    assert_eq!(sorted, expected);
    assert_eq!(sink.live_versions().await.unwrap().len(), 23);
}

#[tokio::test]
async fn every_refresh_policy_is_accepted_by_the_server() {
    let Some(url) = common::server_url("every_refresh_policy_is_accepted") else {
        return;
    };
    let mut config = common::config(&url, "refresh");
    for (n, refresh) in [Refresh::WaitFor, Refresh::True, Refresh::False]
        .into_iter()
        .enumerate()
    {
        config.refresh = refresh;
        let sink = common::connect(&config).await;
        let k = key("refresh", "r", n as u32);
        sink.apply(&[insert(&k, 1), corrupt(&key("refresh", "c", 0), 1)])
            .await
            .unwrap_err();
        // Real clusters show `refresh=false` writes only after a refresh.
        sink.refresh().await.unwrap();
        assert_eq!(
            sink.held_version(&k).await.unwrap(),
            Some((Version(1), false))
        );
    }
}

// --- against a scripted local server ------------------------------------------------------

/// What the scripted server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authorization: Option<String>,
    body: String,
}

/// Serves `answers` in order (then 500s) on 127.0.0.1:0; returns its URL and the requests.
async fn scripted(answers: Vec<(u16, &'static str)>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    use axum::http::{HeaderMap, StatusCode, Uri};
    let answers = Arc::new(Mutex::new(VecDeque::from(answers)));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: String| {
        let answers = Arc::clone(&answers);
        let log = Arc::clone(&log);
        async move {
            log.lock().unwrap().push(Seen {
                path: uri.to_string(),
                authorization: headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(String::from),
                body,
            });
            let (status, text) = answers.lock().unwrap().pop_front().unwrap_or((500, "{}"));
            (StatusCode::from_u16(status).unwrap(), text)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

const ONE_CREATED: &str = r#"{"errors":false,"items":[{"index":{"status":201}}]}"#;

fn config_for(url: &str) -> OpenSearchConfig {
    let mut config = OpenSearchConfig::new(url);
    config.index = "scripted".into();
    config
}

#[tokio::test]
async fn credentials_are_sent_but_never_shown() {
    let (url, seen) = scripted(vec![(401, "Unauthorized"), (401, "Unauthorized")]).await;
    let mut config = config_for(&url);
    config.api_key = Some(Secret::new("c2VjcmV0LWtleQ=="));
    let sink = OpenSearchSink::new(&config).unwrap();
    let err = sink
        .apply(&[insert(&key("a", "k", 0), 1)])
        .await
        .unwrap_err();
    match &err {
        SinkError::Batch { retryable, message } => {
            assert!(!retryable, "fix the credentials first: {message}");
            assert!(message.contains("401"), "{message}");
            assert!(message.contains("api_key_env"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let shown = format!("{err} {err:?} {sink:?} {config:?}");
    assert!(!shown.contains("c2VjcmV0"), "{shown}");
    assert_eq!(
        seen.lock().unwrap()[0].authorization.as_deref(),
        Some("ApiKey c2VjcmV0LWtleQ==")
    );
    assert!(seen.lock().unwrap()[0]
        .path
        .starts_with("/scripted/_bulk?refresh=wait_for"));

    let mut config = config_for(&url);
    config.username = Some("tsunagu".into());
    config.password = Some(Secret::new("hunter2"));
    let err = OpenSearchSink::new(&config)
        .unwrap()
        .check()
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    // "tsunagu:hunter2" in base64.
    assert_eq!(
        seen.lock().unwrap()[1].authorization.as_deref(),
        Some("Basic dHN1bmFndTpodW50ZXIy")
    );
}

#[tokio::test]
async fn a_missing_password_variable_is_named() {
    let mut config = config_for("http://127.0.0.1:9");
    config.username = Some("tsunagu".into());
    config.password_env = Some("TSUNAGU_TEST_SURELY_UNSET_PASSWORD".into());
    let err = OpenSearchSink::new(&config).unwrap_err().to_string();
    assert!(err.contains("TSUNAGU_TEST_SURELY_UNSET_PASSWORD"), "{err}");
}

#[tokio::test]
async fn an_unreachable_cluster_is_a_retryable_batch_failure() {
    // Port 9 (discard) on loopback: nothing listens, the connection is refused.
    let sink = OpenSearchSink::new(&config_for("http://127.0.0.1:9")).unwrap();
    match sink.apply(&[insert(&key("u", "k", 0), 1)]).await {
        Err(SinkError::Batch { retryable, message }) => {
            assert!(retryable, "{message}");
            assert!(message.contains("127.0.0.1:9"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let err = sink.check().await.unwrap_err();
    assert!(matches!(err, OpenSearchError::Unreachable { .. }), "{err}");
    assert!(err.retryable());
}

#[tokio::test]
async fn a_request_too_large_is_split_until_it_fits() {
    // The four documents: 413 for the whole, 413 for the first half, then single
    // documents that fit.
    let (url, seen) = scripted(vec![
        (413, ""),
        (413, ""),
        (200, ONE_CREATED),
        (200, ONE_CREATED),
        (413, ""),
        (200, ONE_CREATED),
        (200, ONE_CREATED),
    ])
    .await;
    let sink = OpenSearchSink::new(&config_for(&url)).unwrap();
    let batch: Vec<_> = (0..4).map(|n| insert(&key("s", "k", n), 1)).collect();
    sink.apply(&batch).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 7);
    // Order kept: the last request carries the last document.
    assert!(
        seen[6].body.contains("s-k-deal|activity#k-3"),
        "{}",
        seen[6].body
    );
}

#[tokio::test]
async fn a_failure_after_a_partial_batch_is_reported_record_by_record() {
    let (url, _) = scripted(vec![(200, ONE_CREATED), (503, "{}")]).await;
    let mut config = config_for(&url);
    config.max_bulk_docs = 1;
    let sink = OpenSearchSink::new(&config).unwrap();
    let batch: Vec<_> = (0..3).map(|n| insert(&key("p", "k", n), 1)).collect();
    match sink.apply(&batch).await {
        Err(SinkError::Records(failures)) => {
            let indexes: Vec<usize> = failures.iter().map(|f| f.index).collect();
            assert_eq!(indexes, vec![1, 2]);
            assert!(failures.iter().all(|f| f.retryable), "{failures:?}");
        }
        other => panic!("{other:?}"),
    }
    // The first request failing means nothing was applied: one batch error.
    let (url, _) = scripted(vec![(429, "{}")]).await;
    let sink = OpenSearchSink::new(&config_for(&url)).unwrap();
    assert!(matches!(
        sink.apply(&batch).await,
        Err(SinkError::Batch {
            retryable: true,
            ..
        })
    ));
}
