//! Keeping credentials out of logs and errors: [`Secret`] (a string whose `Debug` and
//! `Display` print `***`) and [`redact_url`] (credentials embedded in a URL replaced by
//! `***`). Every message this crate builds from a URL goes through [`redact_url`].

use std::fmt;

/// A password or API key. Printing it, by `{}` or `{:?}`, shows `***`; only
/// [`Secret::expose`] gives the value, at the one place that sends it.
///
/// (The `secrecy` crate prints `[REDACTED]` and has no `Display`; the config's contract is
/// `***` in both, so this is a small newtype rather than a dependency.)
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself. Call it only where the secret leaves the process (a header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// `url` with any user name and password replaced by `***`, for messages. Text that does
/// not parse as a URL is redacted by hand: whatever sits between `://` and the last `@`
/// before the path.
pub fn redact_url(url: &str) -> String {
    if let Ok(mut parsed) = url::Url::parse(url) {
        if parsed.username().is_empty() && parsed.password().is_none() {
            return parsed.to_string();
        }
        // Both calls fail only for URLs that cannot carry credentials at all.
        if parsed.set_username("***").is_ok() && parsed.set_password(None).is_ok() {
            return parsed.to_string();
        }
    }
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***{}", &url[..scheme_end + 3], &rest[at..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_url("https://elastic:hunter2@search.example:9200/x"),
            "https://***@search.example:9200/x"
        );
        assert_eq!(
            redact_url("https://token@search.example/"),
            "https://***@search.example/"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:9200"),
            "http://127.0.0.1:9200/"
        );
        // Not a valid URL (bad port), still redacted.
        let odd = redact_url("https://u:p@host:notaport/x");
        assert!(!odd.contains("u:p"), "{odd}");
        assert!(odd.contains("***@host"), "{odd}");
    }
}
