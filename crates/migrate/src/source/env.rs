//! `${NAME}` and `${NAME:-default}` in the values of a spec's `[sources.*]` tables.
//!
//! They are checked when the spec is read ([`check`], no environment needed, so `migrate
//! plan` and validation work anywhere and error positions stay those of the spec text)
//! and resolved only when a run connects ([`resolve`]). As in a POSIX shell, `:-` takes
//! the default when the variable is unset *or* empty; `${NAME}` with the variable unset
//! is an error naming it. A `$` not followed by `{` is kept as it is.

/// Why a value cannot be resolved; the message says what to fix.
pub type EnvError = String;

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// One `${...}` reference: the variable and its default.
fn parse_reference(inner: &str) -> Result<(&str, Option<&str>), EnvError> {
    let (name, default) = match inner.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (inner, None),
    };
    if !is_name(name) {
        return Err(format!(
            "`${{{inner}}}` does not name an environment variable; write ${{NAME}} or ${{NAME:-default}} (NAME: letters, digits, `_`)"
        ));
    }
    Ok((name, default))
}

/// Replaces every `${NAME}` / `${NAME:-default}` of `text`, looking variables up with
/// `lookup` (the process environment in [`resolve_env`], a map in tests).
pub fn resolve(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, EnvError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("`{}` has a `${{` without its closing `}}`", text))?;
        let (name, default) = parse_reference(&after[..end])?;
        match (
            lookup(name).filter(|v| !v.is_empty() || default.is_none()),
            default,
        ) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                "the environment variable {name} is not set; set it or write ${{{name}:-default}}"
            ))
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// [`resolve`] against the process environment.
pub fn resolve_env(text: &str) -> Result<String, EnvError> {
    resolve(text, |name| std::env::var(name).ok())
}

/// Checks the syntax of every reference of `text` without reading the environment.
pub fn check(text: &str) -> Result<(), EnvError> {
    resolve(text, |_| Some(String::new())).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn references_defaults_and_errors() {
        let env = with(&[("HOST", "db"), ("EMPTY", "")]);
        assert_eq!(
            resolve("http://${HOST}:9200", &env).unwrap(),
            "http://db:9200"
        );
        assert_eq!(resolve("${MISSING:-x}", &env).unwrap(), "x");
        assert_eq!(resolve("${EMPTY:-x}", &env).unwrap(), "x");
        assert_eq!(resolve("${EMPTY}", &env).unwrap(), "");
        assert_eq!(resolve("${MISSING:-}", &env).unwrap(), "");
        assert_eq!(resolve("a$b$", &env).unwrap(), "a$b$");
        assert_eq!(resolve("${HOST}${HOST}", &env).unwrap(), "dbdb");
        let e = resolve("${MISSING}", &env).unwrap_err();
        assert!(e.contains("MISSING is not set"), "{e}");
        assert!(resolve("${HOST", &env).unwrap_err().contains("closing"));
        assert!(resolve("${1X}", &env)
            .unwrap_err()
            .contains("does not name"));
        assert!(check("${A:-b} ${C}").is_ok());
        assert!(check("${}").is_err());
    }

    proptest! {
        /// Text without `${` is left exactly as it is.
        #[test]
        fn plain_text_is_unchanged(text in "[^{]*") {
            prop_assert_eq!(resolve(&text, |_| None).unwrap(), text);
        }

        /// A reference is replaced by the variable's value, whatever it holds (values are
        /// not resolved again), with the surrounding text unchanged.
        #[test]
        fn a_reference_becomes_its_value(
            before in "[a-z:/ ]{0,8}",
            name in "[A-Z_][A-Z0-9_]{0,8}",
            value in ".{1,12}",
            after in "[a-z:/ ]{0,8}",
        ) {
            let env = with(&[(name.as_str(), value.as_str())]);
            let text = format!("{before}${{{name}}}{after}");
            prop_assert_eq!(resolve(&text, &env).unwrap(), format!("{before}{value}{after}"));
            let text = format!("{before}${{{name}:-fallback}}{after}");
            prop_assert_eq!(resolve(&text, &env).unwrap(), format!("{before}{value}{after}"));
            prop_assert_eq!(resolve(&text, |_| None).unwrap(), format!("{before}fallback{after}"));
        }
    }
}
