//! A tenant's synonyms: groups of terms a memo search treats as one (`MTG = ミーティング =
//! 打ち合わせ`), applied when a query is run, so a change needs no reindexing.
//!
//! [`Synonyms::new`] is the only way to build a list, so every list in hand is valid:
//! - at most [`MAX_GROUPS`] groups of 2 to [`MAX_GROUP_TERMS`] terms each;
//! - a term is one search word as the query parser reads it: not blank, at most
//!   [`MAX_TERM_CHARS`] characters, no space, no quote, no leading `-`, not `OR`, and with
//!   a letter, digit, kana or kanji in it;
//! - a term is in one group only, and once: terms are compared as the analysis compares
//!   text ([`crate::text::normalize`]: width, case and kana folding), so `ｍｔｇ` is `MTG`
//!   and `みーてぃんぐ` is `ミーティング`.
//!
//! Terms keep the spelling they were given (trimmed); the normalized form only matches.
//! [`crate::text_query::TextQuery::with_synonyms`] applies a list to a parsed query.

use crate::text::normalize;
use crate::text_query::{Clause, TextQuery};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// At most this many groups in a tenant's list.
pub const MAX_GROUPS: usize = 200;
/// At most this many terms in one group.
pub const MAX_GROUP_TERMS: usize = 10;
/// The longest term, in characters.
pub const MAX_TERM_CHARS: usize = 40;

/// A valid synonym list (see the module docs). Serialized as `{"groups": [[...], ...]}`;
/// deserializing validates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SynonymGroups", into = "SynonymGroups")]
pub struct Synonyms {
    groups: Vec<Vec<String>>,
    /// The normalized form of every term → its group.
    index: BTreeMap<String, usize>,
}

/// The plain shape of a list: groups of terms.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SynonymGroups {
    pub groups: Vec<Vec<String>>,
}

/// Why a list is refused. Groups and terms count from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SynonymError {
    #[error("too many groups ({count}): at most {MAX_GROUPS}")]
    TooManyGroups { count: usize },
    #[error("group {group} has {count} term(s): a group needs at least 2 equivalent terms")]
    TooFewTerms { group: usize, count: usize },
    #[error("group {group} has {count} terms: at most {MAX_GROUP_TERMS}")]
    TooManyTerms { group: usize, count: usize },
    #[error("group {group}, term {term} is empty: write a word or remove it")]
    EmptyTerm { group: usize, term: usize },
    #[error("group {group}: {text:?} is longer than {MAX_TERM_CHARS} characters")]
    TermTooLong { group: usize, text: String },
    #[error("group {group}: {text:?} would be read as search syntax: {reason}")]
    Syntax {
        group: usize,
        text: String,
        reason: &'static str,
    },
    #[error("group {group}: {text:?} has no letter, digit, kana or kanji to search for")]
    NothingToSearch { group: usize, text: String },
    #[error("{text:?} (group {group}) is the same term as {first:?} (group {first_group}) once width, case and kana are folded: keep one, or merge the groups")]
    Duplicate {
        group: usize,
        text: String,
        first_group: usize,
        first: String,
    },
}

impl SynonymError {
    /// The group (from 1) the problem is in, when it is in one.
    pub fn group(&self) -> Option<usize> {
        match self {
            Self::TooManyGroups { .. } => None,
            Self::TooFewTerms { group, .. }
            | Self::TooManyTerms { group, .. }
            | Self::EmptyTerm { group, .. }
            | Self::TermTooLong { group, .. }
            | Self::Syntax { group, .. }
            | Self::NothingToSearch { group, .. }
            | Self::Duplicate { group, .. } => Some(*group),
        }
    }
}

impl Synonyms {
    /// Validates and trims `groups` (see the module docs); the first problem found is the
    /// error.
    pub fn new(groups: Vec<Vec<String>>) -> Result<Self, SynonymError> {
        if groups.len() > MAX_GROUPS {
            return Err(SynonymError::TooManyGroups {
                count: groups.len(),
            });
        }
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        let mut checked = Vec::with_capacity(groups.len());
        for (g, terms) in groups.into_iter().enumerate() {
            let group = g + 1;
            if terms.len() < 2 {
                return Err(SynonymError::TooFewTerms {
                    group,
                    count: terms.len(),
                });
            }
            if terms.len() > MAX_GROUP_TERMS {
                return Err(SynonymError::TooManyTerms {
                    group,
                    count: terms.len(),
                });
            }
            let mut kept = Vec::with_capacity(terms.len());
            for (t, text) in terms.iter().enumerate() {
                let text = check_term(group, t + 1, text)?;
                let key = normalize(&text);
                if let Some(&first_group) = index.get(&key) {
                    let first = checked
                        .get(first_group)
                        .unwrap_or(&kept)
                        .iter()
                        .find(|other: &&String| normalize(other) == key)
                        .cloned()
                        .unwrap_or_default();
                    return Err(SynonymError::Duplicate {
                        group,
                        text,
                        first_group: first_group + 1,
                        first,
                    });
                }
                index.insert(key, g);
                kept.push(text);
            }
            checked.push(kept);
        }
        Ok(Self {
            groups: checked,
            index,
        })
    }

    /// The groups, as given (trimmed).
    pub fn groups(&self) -> &[Vec<String>] {
        &self.groups
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The group `text` belongs to, compared normalized.
    pub fn group_of(&self, text: &str) -> Option<&[String]> {
        self.index
            .get(&normalize(text.trim()))
            .and_then(|&g| self.groups.get(g))
            .map(Vec::as_slice)
    }
}

impl TryFrom<SynonymGroups> for Synonyms {
    type Error = SynonymError;

    fn try_from(value: SynonymGroups) -> Result<Self, SynonymError> {
        Self::new(value.groups)
    }
}

impl From<Synonyms> for SynonymGroups {
    fn from(value: Synonyms) -> Self {
        Self {
            groups: value.groups,
        }
    }
}

/// A term trimmed, or why it cannot be one search word.
fn check_term(group: usize, term: usize, text: &str) -> Result<String, SynonymError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(SynonymError::EmptyTerm { group, term });
    }
    if text.chars().count() > MAX_TERM_CHARS {
        return Err(SynonymError::TermTooLong {
            group,
            text: text.to_string(),
        });
    }
    let syntax = |reason| {
        Err(SynonymError::Syntax {
            group,
            text: text.to_string(),
            reason,
        })
    };
    if text.chars().any(char::is_whitespace) {
        return syntax("a space separates two words; write the term without it (web会議 also finds \"web 会議\")");
    }
    if text.chars().any(char::is_control) {
        return syntax("it contains a control character");
    }
    if text.chars().any(crate::text_query::is_quote) {
        return syntax("a quote starts or ends a phrase; remove it");
    }
    if text.starts_with(crate::text_query::is_minus) {
        return syntax("a leading `-` excludes the word; remove it");
    }
    if crate::text_query::is_or(text) {
        return syntax("`OR` joins two words; write `or` in lower case to mean the word");
    }
    // The parser is the judge: the term must read back as exactly this one word.
    match TextQuery::parse(text) {
        Ok(Some(query)) if is_the_word(&query, text) => Ok(text.to_string()),
        Err(crate::text_query::TextQueryError::NothingToSearch { .. }) => {
            Err(SynonymError::NothingToSearch {
                group,
                text: text.to_string(),
            })
        }
        _ => syntax("the search box does not read it as one word"),
    }
}

fn is_the_word(query: &TextQuery, text: &str) -> bool {
    matches!(query.clauses(), [Clause::AnyOf(terms)] if terms.len() == 1 && !terms[0].phrase && terms[0].text == text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(groups: &[&[&str]]) -> Result<Synonyms, SynonymError> {
        Synonyms::new(
            groups
                .iter()
                .map(|g| g.iter().map(|t| t.to_string()).collect())
                .collect(),
        )
    }

    #[test]
    fn terms_match_normalized_and_keep_their_spelling() {
        let s = list(&[
            &[" MTG ", "ミーティング", "打ち合わせ"],
            &["見積", "見積もり"],
        ])
        .unwrap();
        assert_eq!(s.groups()[0], ["MTG", "ミーティング", "打ち合わせ"]);
        for spelling in [
            "MTG",
            "mtg",
            "ｍｔｇ",
            "ＭＴＧ",
            "みーてぃんぐ",
            "ミ－ティング",
        ] {
            assert_eq!(
                s.group_of(spelling).map(|g| g[0].as_str()),
                Some("MTG"),
                "{spelling}"
            );
        }
        assert_eq!(s.group_of("見積もり").map(|g| g.len()), Some(2));
        assert_eq!(s.group_of("会議"), None);
    }

    #[test]
    fn bad_lists_name_the_problem() {
        assert_eq!(
            list(&[&["MTG", " "]]),
            Err(SynonymError::EmptyTerm { group: 1, term: 2 })
        );
        assert_eq!(
            list(&[&["a", "b"], &["MTG"]]),
            Err(SynonymError::TooFewTerms { group: 2, count: 1 })
        );
        let eleven: Vec<String> = (0..11).map(|i| format!("w{i}")).collect();
        assert_eq!(
            Synonyms::new(vec![eleven]),
            Err(SynonymError::TooManyTerms {
                group: 1,
                count: 11
            })
        );
        let groups: Vec<Vec<String>> = (0..=MAX_GROUPS)
            .map(|i| vec![format!("a{i}"), format!("b{i}")])
            .collect();
        assert_eq!(
            Synonyms::new(groups),
            Err(SynonymError::TooManyGroups {
                count: MAX_GROUPS + 1
            })
        );
        assert!(matches!(
            list(&[&["MTG", &"あ".repeat(41)]]),
            Err(SynonymError::TermTooLong { group: 1, .. })
        ));
        for syntax in [
            "web 会議",
            "web　会議",
            "\"MTG\"",
            "-MTG",
            "－MTG",
            "OR",
            "ＯＲ",
            "a\"b",
        ] {
            assert!(
                matches!(
                    list(&[&["MTG", syntax]]),
                    Err(SynonymError::Syntax { group: 1, .. })
                ),
                "{syntax:?}: {:?}",
                list(&[&["MTG", syntax]])
            );
        }
        assert_eq!(
            list(&[&["MTG", "・"]]),
            Err(SynonymError::NothingToSearch {
                group: 1,
                text: "・".into()
            })
        );
        assert_eq!(
            list(&[&["MTG", "会議"], &["打ち合わせ", "ｍｔｇ"]]),
            Err(SynonymError::Duplicate {
                group: 2,
                text: "ｍｔｇ".into(),
                first_group: 1,
                first: "MTG".into()
            })
        );
        assert!(matches!(
            list(&[&["MTG", "mtg"]]),
            Err(SynonymError::Duplicate { group: 1, .. })
        ));
        // A minus inside a word and lower-case `or` are words.
        assert!(list(&[&["e-mail", "メール", "or"]]).is_ok());
        let message = list(&[&["MTG", "-MTG"]]).unwrap_err().to_string();
        assert!(
            message.contains("group 1") && message.contains("-MTG"),
            "{message}"
        );
    }

    #[test]
    fn serde_validates() {
        let s: Synonyms = serde_json::from_str(r#"{"groups": [["MTG", "ミーティング"]]}"#).unwrap();
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::json!({"groups": [["MTG", "ミーティング"]]})
        );
        assert!(serde_json::from_str::<Synonyms>(r#"{"groups": [["MTG"]]}"#).is_err());
    }
}
