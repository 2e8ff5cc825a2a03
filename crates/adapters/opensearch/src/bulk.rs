//! The bulk API without I/O: splitting a batch into requests within both size limits
//! ([`split_chunks`]), and reading what came back: the outcome of each item
//! ([`parse_bulk_response`]) and of a request that failed as a whole
//! ([`classify_request_failure`]).

use serde::Deserialize;
use std::ops::Range;

/// What happened to one item of a bulk request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Written (201 created, 200 updated).
    Applied,
    /// 409: the index holds this version or a newer one (a document or a tombstone). The
    /// version guard at work: a no-op that counts as success.
    Stale,
    /// Not written. `retryable` for 429 (back-pressure) and 5xx (a shard unavailable, a
    /// node gone); not for 400 and other 4xx (a mapping or parsing error: this document
    /// can never be accepted as it is).
    Failed { retryable: bool, message: String },
}

/// Maps an item's HTTP status to its outcome.
pub fn item_outcome(status: u16, error: Option<&ErrorBody>) -> ItemOutcome {
    match status {
        200..=299 => ItemOutcome::Applied,
        409 => ItemOutcome::Stale,
        _ => ItemOutcome::Failed {
            retryable: status == 429 || status >= 500,
            message: match error {
                Some(e) => format!("{status} {e}"),
                None => format!("{status} (no error detail)"),
            },
        },
    }
}

/// The `error` object of OpenSearch and Elasticsearch answers.
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorBody {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub caused_by: Option<Box<ErrorBody>>,
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.kind.is_empty() {
            "error"
        } else {
            &self.kind
        })?;
        if let Some(reason) = &self.reason {
            write!(f, ": {reason}")?;
        }
        if let Some(cause) = &self.caused_by {
            write!(f, " (caused by {cause})")?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct BulkResponse {
    #[serde(default)]
    errors: bool,
    items: Vec<std::collections::HashMap<String, BulkItem>>,
}

#[derive(Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    error: Option<ErrorBody>,
}

/// The outcome of every item of a bulk response whose request had `expected` items, in
/// request order. An error means the response cannot be trusted item by item (not JSON,
/// another number of items): the caller treats the whole request as failed.
pub fn parse_bulk_response(body: &[u8], expected: usize) -> Result<Vec<ItemOutcome>, String> {
    let response: BulkResponse = serde_json::from_slice(body)
        .map_err(|e| format!("the bulk response is not what OpenSearch sends: {e}"))?;
    if response.items.len() != expected {
        return Err(format!(
            "the bulk response has {} items for {expected} documents sent",
            response.items.len()
        ));
    }
    let outcomes: Vec<ItemOutcome> = response
        .items
        .iter()
        .map(|item| match item.values().next() {
            // Each item is `{"<op>": {...}}` with one operation name.
            Some(item) => item_outcome(item.status, item.error.as_ref()),
            None => ItemOutcome::Failed {
                retryable: true,
                message: "an empty item in the bulk response".into(),
            },
        })
        .collect();
    if !response.errors
        && outcomes
            .iter()
            .any(|o| matches!(o, ItemOutcome::Failed { .. }))
    {
        tracing::warn!("bulk response says `errors: false` but has failed items");
    }
    Ok(outcomes)
}

/// How a request that failed as a whole (a non-2xx answer) is handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestFailure {
    /// 413: the body is larger than the cluster accepts (`http.max_content_length`); the
    /// caller splits it and tries the halves.
    TooLarge,
    /// Anything else, with whether a later attempt may succeed.
    Failed { retryable: bool, message: String },
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: ErrorOrText,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorOrText {
    Body(ErrorBody),
    Text(String),
}

/// Reads a non-2xx answer: 413 ⇒ split; 429, 5xx ⇒ retryable; 401/403 ⇒ not retryable
/// (credentials or privileges must be fixed first; the message says which); other 4xx ⇒
/// not retryable.
pub fn classify_request_failure(status: u16, body: &[u8]) -> RequestFailure {
    if status == 413 {
        return RequestFailure::TooLarge;
    }
    let detail = error_detail(body);
    let hint = match status {
        401 => "; check `username` and `password_env`, or `api_key_env`",
        403 => "; the user or API key lacks privileges on the index (it needs create_index, write, read and monitor)",
        429 => "; the cluster is overloaded, will retry",
        _ => "",
    };
    RequestFailure::Failed {
        retryable: status == 429 || status >= 500,
        message: format!("{status} {detail}{hint}"),
    }
}

/// A short description of an error answer: its `error` object, or the start of its text.
pub fn error_detail(body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorResponse>(body) {
        Ok(ErrorResponse {
            error: ErrorOrText::Body(e),
        }) => e.to_string(),
        Ok(ErrorResponse {
            error: ErrorOrText::Text(t),
        }) => t,
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                "(empty body)".into()
            } else {
                text.chars().take(300).collect()
            }
        }
    }
}

/// Splits items of the given encoded sizes (bytes) into consecutive chunks, in order, each
/// with at most `max_docs` items and at most `max_bytes` bytes. An item larger than
/// `max_bytes` on its own gets a chunk of its own (the cluster decides whether it fits).
pub fn split_chunks(sizes: &[usize], max_docs: usize, max_bytes: usize) -> Vec<Range<usize>> {
    let max_docs = max_docs.max(1);
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut bytes = 0usize;
    for (i, &size) in sizes.iter().enumerate() {
        let count = i - start;
        if count > 0 && (count == max_docs || bytes.saturating_add(size) > max_bytes) {
            chunks.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes = bytes.saturating_add(size);
    }
    if start < sizes.len() {
        chunks.push(start..sizes.len());
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn small_batches_make_one_chunk() {
        assert_eq!(split_chunks(&[10, 10, 10], 5, 100), vec![0..3]);
        assert_eq!(split_chunks(&[], 5, 100), Vec::<Range<usize>>::new());
        assert_eq!(split_chunks(&[10, 10, 10], 2, 100), vec![0..2, 2..3]);
        assert_eq!(split_chunks(&[60, 60, 30], 10, 100), vec![0..1, 1..3]);
        assert_eq!(split_chunks(&[500, 10], 10, 100), vec![0..1, 1..2]);
    }

    proptest! {
        #[test]
        fn chunks_cover_everything_in_order_within_limits(
            sizes in proptest::collection::vec(1usize..5_000, 0..300),
            max_docs in 1usize..50,
            max_bytes in 1usize..20_000,
        ) {
            let chunks = split_chunks(&sizes, max_docs, max_bytes);
            // Nothing lost, nothing repeated, order kept: the chunks tile 0..len.
            let mut next = 0;
            for chunk in &chunks {
                prop_assert_eq!(chunk.start, next);
                prop_assert!(chunk.end > chunk.start, "empty chunk");
                next = chunk.end;
                prop_assert!(chunk.len() <= max_docs);
                let bytes: usize = sizes[chunk.clone()].iter().sum();
                // Only a lone oversized item may exceed the byte limit.
                prop_assert!(bytes <= max_bytes || chunk.len() == 1, "{} bytes in {:?}", bytes, chunk);
            }
            prop_assert_eq!(next, sizes.len());
            // Greedy: a chunk ends only where the next item would break a limit.
            for chunk in chunks.iter().take(chunks.len().saturating_sub(1)) {
                let bytes: usize = sizes[chunk.clone()].iter().sum();
                prop_assert!(chunk.len() == max_docs || bytes + sizes[chunk.end] > max_bytes);
            }
        }
    }
}
