//! The bulk response parser and the whole-request classifier against recorded answers:
//! each item and each failure must map to the outcome the engine expects.

use tsunagu_opensearch::bulk::{
    classify_request_failure, parse_bulk_response, ItemOutcome, RequestFailure,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn failed(outcome: &ItemOutcome) -> (bool, &str) {
    match outcome {
        ItemOutcome::Failed { retryable, message } => (*retryable, message),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn mixed_elasticsearch_items_map_to_their_outcomes() {
    let outcomes = parse_bulk_response(&fixture("elasticsearch-bulk-mixed.json"), 6).unwrap();
    assert_eq!(outcomes[0], ItemOutcome::Applied, "201 created");
    assert_eq!(outcomes[1], ItemOutcome::Applied, "200 updated");
    assert_eq!(
        outcomes[2],
        ItemOutcome::Stale,
        "409 is the version guard: success"
    );
    let (retryable, message) = failed(&outcomes[3]);
    assert!(retryable, "429 is back-pressure");
    assert!(
        message.contains("es_rejected_execution_exception"),
        "{message}"
    );
    let (retryable, message) = failed(&outcomes[4]);
    assert!(!retryable, "400 mapping errors go to the dead-letter queue");
    assert!(
        message.starts_with("400 mapper_parsing_exception"),
        "{message}"
    );
    assert!(
        message.contains("date_time_parse_exception"),
        "causes kept: {message}"
    );
    let (retryable, message) = failed(&outcomes[5]);
    assert!(retryable, "503 unavailable shard");
    assert!(message.contains("primary shard is not active"), "{message}");
}

#[test]
fn recorded_osmem_items_map_to_their_outcomes() {
    let outcomes = parse_bulk_response(&fixture("osmem-bulk-mixed.json"), 4).unwrap();
    assert_eq!(outcomes[0], ItemOutcome::Applied);
    assert_eq!(outcomes[1], ItemOutcome::Stale);
    assert!(!failed(&outcomes[2]).0);
    let (retryable, message) = failed(&outcomes[3]);
    assert!(!retryable);
    assert!(
        message.contains("strict_dynamic_mapping_exception"),
        "{message}"
    );
    let ok = parse_bulk_response(&fixture("osmem-bulk-ok.json"), 2).unwrap();
    assert_eq!(ok, vec![ItemOutcome::Applied, ItemOutcome::Applied]);
    let ok = parse_bulk_response(&fixture("elasticsearch-bulk-ok.json"), 1).unwrap();
    assert_eq!(ok, vec![ItemOutcome::Applied]);
}

#[test]
fn a_response_that_does_not_match_the_request_is_refused() {
    let err = parse_bulk_response(&fixture("osmem-bulk-ok.json"), 3).unwrap_err();
    assert!(err.contains("2 items for 3 documents"), "{err}");
    assert!(parse_bulk_response(b"<html>bad gateway</html>", 1).is_err());
}

#[test]
fn whole_request_failures_are_classified() {
    assert_eq!(
        classify_request_failure(413, &fixture("elasticsearch-413.json")),
        RequestFailure::TooLarge
    );
    assert_eq!(classify_request_failure(413, b""), RequestFailure::TooLarge);
    let cases = [
        ("elasticsearch-401.json", 401, false, "security_exception"),
        ("opensearch-401.txt", 401, false, "Unauthorized"),
        ("elasticsearch-403.json", 403, false, "lacks privileges"),
        (
            "elasticsearch-429.json",
            429,
            true,
            "circuit_breaking_exception",
        ),
        ("opensearch-503.json", 503, true, "cluster_block_exception"),
    ];
    for (name, status, expect_retryable, expect_text) in cases {
        match classify_request_failure(status, &fixture(name)) {
            RequestFailure::Failed { retryable, message } => {
                assert_eq!(retryable, expect_retryable, "{name}: {message}");
                assert!(message.contains(expect_text), "{name}: {message}");
                assert!(
                    message.starts_with(&status.to_string()),
                    "{name}: {message}"
                );
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    match classify_request_failure(401, &fixture("opensearch-401.txt")) {
        RequestFailure::Failed { message, .. } => {
            assert!(
                message.contains("api_key_env"),
                "says what to fix: {message}"
            )
        }
        other => panic!("{other:?}"),
    }
}
