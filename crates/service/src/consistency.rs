//! Read-your-writes: every write returns a [`ConsistencyToken`] naming the item and the
//! version it produced; a search given the token first waits (bounded) until the index
//! shows that write and everything committed before it (see
//! [`crate::ports::WriteVisibility`]). A token is opaque text to callers.

use crate::error::ServiceError;
use crate::ports::WriteVisibility;
use std::fmt;
use std::time::{Duration, Instant};
use tsunagu_domain::{ItemKey, Version};

const PREFIX: &str = "ct1.";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyToken {
    pub key: ItemKey,
    pub version: Version,
    /// When the write was committed (µs since the epoch; 0 when it changed nothing):
    /// every change committed before it must be visible too.
    pub committed_at_us: i64,
    /// The tenant whose write it is: a token works only for that tenant's requests.
    /// `None` in tokens handed out before tokens were bound to a tenant (still accepted;
    /// the item's tenant in the primary is checked instead).
    pub tenant: Option<String>,
}

impl ConsistencyToken {
    /// Parses the text form handed out by a write.
    pub fn parse(text: &str) -> Result<Self, ServiceError> {
        let bad = || {
            ServiceError::invalid(
                "consistency_token",
                "is not a token returned by a write; pass it back unchanged",
            )
        };
        let hex = text.strip_prefix(PREFIX).ok_or_else(bad)?;
        if hex.len() % 2 != 0 || hex.len() > 2048 {
            return Err(bad());
        }
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
            .collect::<Result<_, _>>()
            .map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let mut parts = text.split('\u{1f}');
        let (Some(version), Some(partition), Some(sort), committed, tenant, None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(bad());
        };
        if tenant.is_some_and(str::is_empty) {
            return Err(bad());
        }
        Ok(Self {
            key: ItemKey::new(partition, sort),
            version: Version(version.parse().map_err(|_| bad())?),
            // Tokens handed out before the commit time was added carry none.
            committed_at_us: committed.map_or(Ok(0), str::parse).map_err(|_| bad())?,
            tenant: tenant.map(str::to_string),
        })
    }

    /// Waits until the index shows this token's write and everything before it, polling
    /// with a short backoff, for at most `timeout`.
    pub async fn wait_applied(
        &self,
        visibility: &dyn WriteVisibility,
        timeout: Duration,
    ) -> Result<(), ServiceError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            if visibility.shows(self).await? {
                return Ok(());
            }
            let waited = started.elapsed();
            if waited >= timeout {
                return Err(ServiceError::NotConsistentYet {
                    waited_ms: waited.as_millis() as u64,
                });
            }
            tokio::time::sleep(pause.min(timeout - waited)).await;
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }
}

impl fmt::Display for ConsistencyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = format!(
            "{}\u{1f}{}\u{1f}{}\u{1f}{}",
            self.version.0, self.key.partition, self.key.sort, self.committed_at_us
        );
        if let Some(tenant) = &self.tenant {
            raw.push('\u{1f}');
            raw.push_str(tenant);
        }
        f.write_str(PREFIX)?;
        for b in raw.bytes() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let token = ConsistencyToken {
            key: ItemKey::new("dl_1", "activity#ac_1"),
            version: Version(42),
            committed_at_us: 1_700_000_000_000_000,
            tenant: Some("tn_1".into()),
        };
        assert_eq!(ConsistencyToken::parse(&token.to_string()).unwrap(), token);
        // Tokens handed out before tokens were bound to a tenant still parse.
        let legacy = ConsistencyToken {
            tenant: None,
            ..token.clone()
        };
        let text = legacy.to_string();
        assert_eq!(ConsistencyToken::parse(&text).unwrap(), legacy);
        assert!(token.to_string().starts_with(&text));
        for bad in ["", "ct1.zz", "ct1.4142", "x", "ct1.31"] {
            assert!(ConsistencyToken::parse(bad).is_err(), "{bad}");
        }
    }
}
