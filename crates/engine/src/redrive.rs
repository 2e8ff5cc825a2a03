//! Re-applying dead letters to their consumer's sink, once whatever made them fail is
//! fixed. The sink's version guard makes this safe at any time: a dead letter older than
//! what the sink holds changes nothing.

use crate::ports::{DeadLetterQueue, Sink, StateError};
use serde::Serialize;

/// What a redrive did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct RedriveReport {
    /// Ids applied and removed from the queue.
    pub redriven: Vec<u64>,
    /// Ids that failed again (they stay in the queue), with the sink's error.
    pub failed: Vec<(u64, String)>,
}

/// Redrives a consumer's dead letters, oldest first: all of them, or only `ids`.
pub async fn redrive(
    dlq: &dyn DeadLetterQueue,
    sink: &dyn Sink,
    consumer: &str,
    ids: Option<&[u64]>,
) -> Result<RedriveReport, StateError> {
    let mut report = RedriveReport::default();
    let mut after = 0;
    loop {
        let letters = dlq.list(Some(consumer), after, 500).await?;
        let Some(last) = letters.last() else {
            break;
        };
        after = last.id;
        for letter in letters {
            if ids.is_some_and(|ids| !ids.contains(&letter.id)) {
                continue;
            }
            // Durable before the letter goes: a crash must not lose both.
            let applied = match sink.apply(std::slice::from_ref(&letter.record)).await {
                Ok(()) => sink.flush().await,
                Err(e) => Err(e),
            };
            match applied {
                Ok(()) => {
                    dlq.remove(letter.id).await?;
                    tracing::info!(consumer, id = letter.id, key = %letter.record.key, "dead letter redriven");
                    report.redriven.push(letter.id);
                }
                Err(error) => report.failed.push((letter.id, error_text(&error))),
            }
        }
    }
    Ok(report)
}

fn error_text(error: &crate::ports::SinkError) -> String {
    match error {
        crate::ports::SinkError::Records(failures) => failures
            .iter()
            .map(|f| f.message.as_str())
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}
