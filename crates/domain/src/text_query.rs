//! The memo search syntax: what a salesperson types in the search box, parsed once into a
//! [`TextQuery`] that every index translates the same way.
//!
//! - words separated by spaces (ASCII or the full-width U+3000) must all occur;
//! - `"a phrase"` must occur as written (spaces and punctuation inside only separate);
//! - `-word` or `-"a phrase"` excludes activities whose memo has it;
//! - `A OR B` (upper case `OR` between two words or phrases) matches either; `OR` binds
//!   tighter than the spaces around it, so `見積 提案 OR 打ち合わせ` is
//!   `見積 AND (提案 OR 打ち合わせ)`.
//!
//! Full-width forms work as their ASCII ones (`－見積`, `＂…＂`, `ＯＲ`), and so do the
//! typographic quotes `“…”`. Anything the parser cannot read is a [`TextQueryError`]
//! naming the problem and where it is, never a silent reinterpretation: a lone `-`, an
//! unclosed quote, an empty phrase, `OR` without a word on each side, an excluded word
//! inside an `OR`, a quote in the middle of a word, and a word with nothing searchable in
//! it (`・`, `、`), which an index would otherwise drop and so match everything.

use crate::synonyms::Synonyms;
use crate::text::{is_token_char, normalize};

/// At most this many words and phrases in one query (a guard against pasted documents).
pub const MAX_TERMS: usize = 32;

/// A parsed memo query: every clause must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextQuery {
    clauses: Vec<Clause>,
}

/// One condition of a [`TextQuery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clause {
    /// At least one of these terms occurs (one term for a plain word; several for
    /// `A OR B OR ...`).
    AnyOf(Vec<Term>),
    /// The term does not occur.
    Not(Term),
}

/// A word or a quoted phrase, as the user wrote it (without the quotes). Indexes analyze
/// it like memo text and match its tokens in a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub text: String,
    /// Written in quotes.
    pub phrase: bool,
}

impl Term {
    /// Whether the last token matches words starting with it: a word (not a phrase) whose
    /// last token is a Latin word of 3 letters or more (`meet` finds meeting, meetings;
    /// `"meet"` only meet). What a salesperson typing the start of an English word
    /// expects, where a stemmer would need a dictionary of forms.
    pub fn prefix_last(&self) -> bool {
        !self.phrase
            && crate::text::analyze(&self.text)
                .last()
                .is_some_and(|t| crate::text::is_prefix_token(&t.text))
    }
}

/// Why a query cannot be read. Positions count characters from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextQueryError {
    #[error("the `-` at character {at} excludes nothing: write the word right after it (-見積), or quote it to search for it (\"-\")")]
    LoneMinus { at: usize },
    #[error("the quote at character {at} is not closed: end the phrase with another quote, or remove it")]
    UnclosedQuote { at: usize },
    #[error("the phrase at character {at} is empty: put words between the quotes, or remove them")]
    EmptyPhrase { at: usize },
    #[error("a quote in the middle of a word at character {at}: put a space before the phrase, or remove the quote")]
    QuoteInWord { at: usize },
    #[error("`OR` at character {at} needs a word or phrase on each side (見積 OR 提案); write `or` in lower case to search for the word")]
    DanglingOr { at: usize },
    #[error("the excluded word at character {at} cannot be part of an OR: write the exclusion as its own word (見積 OR 提案 -失注)")]
    ExcludedInOr { at: usize },
    #[error("{term:?} at character {at} has no letter, digit, kana or kanji to search for: remove it, or search for a word")]
    NothingToSearch { term: String, at: usize },
    #[error("too many words and phrases ({count}): at most {MAX_TERMS}")]
    TooManyTerms { count: usize },
}

impl TextQuery {
    /// Parses what the user typed (see the module docs). `Ok(None)` for blank text, which
    /// does not filter.
    pub fn parse(input: &str) -> Result<Option<TextQuery>, TextQueryError> {
        let items = lex(input)?;
        if items.is_empty() {
            return Ok(None);
        }
        let terms = items.iter().filter(|i| !matches!(i, Item::Or(_))).count();
        if terms > MAX_TERMS {
            return Err(TextQueryError::TooManyTerms { count: terms });
        }
        let mut clauses = Vec::new();
        let mut items = items.into_iter().peekable();
        while let Some(item) = items.next() {
            match item {
                Item::Or(at) => return Err(TextQueryError::DanglingOr { at }),
                Item::Term { term, negated, at } => {
                    if negated {
                        if let Some(Item::Or(_)) = items.peek() {
                            return Err(TextQueryError::ExcludedInOr { at });
                        }
                        clauses.push(Clause::Not(term));
                        continue;
                    }
                    let mut any = vec![term];
                    while let Some(Item::Or(or_at)) = items.peek() {
                        let or_at = *or_at;
                        items.next();
                        match items.next() {
                            Some(Item::Term {
                                term,
                                negated: false,
                                ..
                            }) => any.push(term),
                            Some(Item::Term {
                                negated: true, at, ..
                            }) => return Err(TextQueryError::ExcludedInOr { at }),
                            Some(Item::Or(_)) | None => {
                                return Err(TextQueryError::DanglingOr { at: or_at })
                            }
                        }
                    }
                    clauses.push(Clause::AnyOf(any));
                }
            }
        }
        Ok(Some(TextQuery { clauses }))
    }

    /// The conditions, all of which must hold.
    pub fn clauses(&self) -> &[Clause] {
        &self.clauses
    }

    /// The terms a matching memo contains (those not excluded): what highlights mark.
    pub fn positive_terms(&self) -> impl Iterator<Item = &Term> {
        self.clauses.iter().flat_map(|c| match c {
            Clause::AnyOf(terms) => terms.as_slice(),
            Clause::Not(_) => &[],
        })
    }

    /// Whether some clause must occur (a query of exclusions only has none).
    pub fn has_positive_terms(&self) -> bool {
        self.positive_terms().next().is_some()
    }

    /// The query with every term that belongs to a synonym group replaced by an OR of the
    /// whole group (the term as written first, then the others in the group's order, each
    /// a word or a phrase as the term was): `MTG 提案` finds what `MTG OR ミーティング OR
    /// 打ち合わせ 提案` finds, and `-MTG` excludes every synonym (one exclusion each).
    /// A phrase expands when it is a synonym term as a whole.
    ///
    /// Terms in no group stay as they are, so a query without synonym terms is unchanged,
    /// and applying the same list twice is applying it once. [`MAX_TERMS`] bounds what the
    /// user typed; expanded, a query has at most [`MAX_TERMS`] ×
    /// [`crate::synonyms::MAX_GROUP_TERMS`] terms (320, within OpenSearch's default 1024
    /// clauses).
    pub fn with_synonyms(&self, synonyms: &Synonyms) -> TextQuery {
        if synonyms.is_empty() {
            return self.clone();
        }
        let mut clauses = Vec::with_capacity(self.clauses.len());
        let mut excluded: Vec<Term> = Vec::new();
        for clause in &self.clauses {
            match clause {
                Clause::AnyOf(terms) => {
                    let mut any: Vec<Term> = Vec::with_capacity(terms.len());
                    for term in terms {
                        expand_term(term, synonyms, &mut any);
                    }
                    clauses.push(Clause::AnyOf(any));
                }
                Clause::Not(term) => {
                    let before = excluded.len();
                    expand_term(term, synonyms, &mut excluded);
                    clauses.extend(excluded[before..].iter().cloned().map(Clause::Not));
                }
            }
        }
        TextQuery { clauses }
    }
}

/// Appends `term` to `out`, with its synonyms when it has some. A synonym (or the term
/// itself, when it belongs to a group) already in `out` (compared normalized, as a word or
/// as a phrase) is not added again; a term in no group is always added.
fn expand_term(term: &Term, synonyms: &Synonyms, out: &mut Vec<Term>) {
    let Some(group) = synonyms.group_of(&term.text) else {
        out.push(term.clone());
        return;
    };
    let candidates = std::iter::once(term.text.as_str()).chain(group.iter().map(String::as_str));
    for text in candidates {
        let key = normalize(text);
        let present = out
            .iter()
            .any(|t| t.phrase == term.phrase && normalize(&t.text) == key);
        if !present {
            out.push(Term {
                text: text.to_string(),
                phrase: term.phrase,
            });
        }
    }
}

/// A lexical item: a term (possibly negated) or the `OR` operator, with its character
/// position (from 1).
enum Item {
    Term {
        term: Term,
        negated: bool,
        at: usize,
    },
    Or(usize),
}

pub(crate) fn is_quote(c: char) -> bool {
    matches!(c, '"' | '\u{FF02}' | '\u{201C}' | '\u{201D}')
}

pub(crate) fn is_minus(c: char) -> bool {
    matches!(c, '-' | '\u{FF0D}')
}

pub(crate) fn is_or(word: &str) -> bool {
    matches!(word, "OR" | "ＯＲ")
}

/// Checks that a term has something to search for.
fn searchable(text: String, phrase: bool, at: usize) -> Result<Term, TextQueryError> {
    if normalize(&text).chars().any(is_token_char) {
        Ok(Term { text, phrase })
    } else if phrase && text.trim().is_empty() {
        Err(TextQueryError::EmptyPhrase { at })
    } else {
        Err(TextQueryError::NothingToSearch { term: text, at })
    }
}

fn lex(input: &str) -> Result<Vec<Item>, TextQueryError> {
    let chars: Vec<char> = input.chars().collect();
    let mut items = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let negated = is_minus(chars[i]);
        if negated {
            i += 1;
            if i >= chars.len() || chars[i].is_whitespace() || is_minus(chars[i]) {
                return Err(TextQueryError::LoneMinus { at: start + 1 });
            }
        }
        if is_quote(chars[i]) {
            let open = i;
            let close = (open + 1..chars.len()).find(|&j| is_quote(chars[j]));
            let Some(close) = close else {
                return Err(TextQueryError::UnclosedQuote { at: open + 1 });
            };
            let text: String = chars[open + 1..close].iter().collect();
            let term = searchable(text, true, open + 1)?;
            i = close + 1;
            if i < chars.len() && !chars[i].is_whitespace() {
                return Err(TextQueryError::QuoteInWord { at: i + 1 });
            }
            items.push(Item::Term {
                term,
                negated,
                at: start + 1,
            });
            continue;
        }
        let word_start = i;
        while i < chars.len() && !chars[i].is_whitespace() {
            if is_quote(chars[i]) {
                return Err(TextQueryError::QuoteInWord { at: i + 1 });
            }
            i += 1;
        }
        let text: String = chars[word_start..i].iter().collect();
        if !negated && is_or(&text) {
            items.push(Item::Or(start + 1));
            continue;
        }
        let term = searchable(text, false, word_start + 1)?;
        items.push(Item::Term {
            term,
            negated,
            at: start + 1,
        });
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn word(text: &str) -> Term {
        Term {
            text: text.into(),
            phrase: false,
        }
    }

    fn phrase(text: &str) -> Term {
        Term {
            text: text.into(),
            phrase: true,
        }
    }

    fn clauses(input: &str) -> Vec<Clause> {
        TextQuery::parse(input)
            .unwrap_or_else(|e| panic!("{input:?}: {e}"))
            .map(|q| q.clauses)
            .unwrap_or_default()
    }

    fn error(input: &str) -> TextQueryError {
        match TextQuery::parse(input) {
            Err(e) => e,
            Ok(q) => panic!("{input:?} parsed as {q:?}"),
        }
    }

    #[test]
    fn words_phrases_exclusions_and_or() {
        assert_eq!(
            clauses("見積　来週訪問"),
            [
                Clause::AnyOf(vec![word("見積")]),
                Clause::AnyOf(vec![word("来週訪問")])
            ]
        );
        assert_eq!(
            clauses("\"来週 訪問\" -失注"),
            [
                Clause::AnyOf(vec![phrase("来週 訪問")]),
                Clause::Not(word("失注"))
            ]
        );
        assert_eq!(
            clauses("見積 提案 OR 打ち合わせ OR \"web 会議\""),
            [
                Clause::AnyOf(vec![word("見積")]),
                Clause::AnyOf(vec![word("提案"), word("打ち合わせ"), phrase("web 会議")]),
            ]
        );
        assert_eq!(
            clauses("－見積 ＂商談＂ ＯＲ “アポ”"),
            [
                Clause::Not(word("見積")),
                Clause::AnyOf(vec![phrase("商談"), phrase("アポ")]),
            ]
        );
        assert_eq!(
            clauses("-\"no answer\""),
            [Clause::Not(phrase("no answer"))]
        );
        // Inside a word a minus is text; lower-case `or` is a word.
        assert_eq!(
            clauses("e-mail or"),
            [
                Clause::AnyOf(vec![word("e-mail")]),
                Clause::AnyOf(vec![word("or")])
            ]
        );
        assert_eq!(TextQuery::parse("  　 "), Ok(None));
    }

    #[test]
    fn unreadable_queries_name_the_problem_and_where() {
        assert_eq!(error("見積 -"), TextQueryError::LoneMinus { at: 4 });
        assert_eq!(error("- 見積"), TextQueryError::LoneMinus { at: 1 });
        assert_eq!(error("--見積"), TextQueryError::LoneMinus { at: 1 });
        assert_eq!(error("\"来週訪問"), TextQueryError::UnclosedQuote { at: 1 });
        assert_eq!(error("見積 \"\""), TextQueryError::EmptyPhrase { at: 4 });
        assert_eq!(error("\" \""), TextQueryError::EmptyPhrase { at: 1 });
        assert_eq!(error("見\"積\""), TextQueryError::QuoteInWord { at: 2 });
        assert_eq!(error("\"見積\"書"), TextQueryError::QuoteInWord { at: 5 });
        assert_eq!(error("OR 見積"), TextQueryError::DanglingOr { at: 1 });
        assert_eq!(error("見積 OR"), TextQueryError::DanglingOr { at: 4 });
        assert_eq!(
            error("見積 OR OR 提案"),
            TextQueryError::DanglingOr { at: 4 }
        );
        assert_eq!(
            error("見積 OR -提案"),
            TextQueryError::ExcludedInOr { at: 7 }
        );
        assert_eq!(
            error("-見積 OR 提案"),
            TextQueryError::ExcludedInOr { at: 1 }
        );
        assert_eq!(
            error("・"),
            TextQueryError::NothingToSearch {
                term: "・".into(),
                at: 1
            }
        );
        assert_eq!(
            error("見積 、。"),
            TextQueryError::NothingToSearch {
                term: "、。".into(),
                at: 4
            }
        );
        assert_eq!(
            error("\"・\""),
            TextQueryError::NothingToSearch {
                term: "・".into(),
                at: 1
            }
        );
        let many = vec!["a"; MAX_TERMS + 1].join(" ");
        assert_eq!(
            error(&many),
            TextQueryError::TooManyTerms {
                count: MAX_TERMS + 1
            }
        );
        assert!(error("見積 -").to_string().contains("character 4"));
    }

    #[test]
    fn positive_terms_leave_exclusions_out() {
        let q = TextQuery::parse("見積 -失注 提案 OR アポ")
            .unwrap()
            .unwrap();
        let texts: Vec<&str> = q.positive_terms().map(|t| t.text.as_str()).collect();
        assert_eq!(texts, ["見積", "提案", "アポ"]);
        let only_not = TextQuery::parse("-失注").unwrap().unwrap();
        assert!(!only_not.has_positive_terms());
    }

    fn synonyms() -> Synonyms {
        Synonyms::new(vec![
            vec!["MTG".into(), "ミーティング".into(), "打ち合わせ".into()],
            vec!["見積".into(), "見積もり".into()],
        ])
        .unwrap()
    }

    fn expanded(input: &str) -> Vec<Clause> {
        TextQuery::parse(input)
            .unwrap()
            .unwrap()
            .with_synonyms(&synonyms())
            .clauses
    }

    #[test]
    fn synonym_terms_become_an_or_of_their_group() {
        assert_eq!(
            expanded("ｍｔｇ 提案"),
            [
                Clause::AnyOf(vec![
                    word("ｍｔｇ"),
                    word("ミーティング"),
                    word("打ち合わせ")
                ]),
                Clause::AnyOf(vec![word("提案")]),
            ]
        );
        // Joined to an OR, a phrase as a phrase, the same group once.
        assert_eq!(
            expanded("提案 OR \"見積もり\" OR みーてぃんぐ OR MTG"),
            [Clause::AnyOf(vec![
                word("提案"),
                phrase("見積もり"),
                phrase("見積"),
                word("みーてぃんぐ"),
                word("MTG"),
                word("打ち合わせ"),
            ])]
        );
        // An exclusion excludes every synonym.
        assert_eq!(
            expanded("提案 -MTG"),
            [
                Clause::AnyOf(vec![word("提案")]),
                Clause::Not(word("MTG")),
                Clause::Not(word("ミーティング")),
                Clause::Not(word("打ち合わせ")),
            ]
        );
        // A phrase that is more than a synonym term stays.
        assert_eq!(
            expanded("\"週次 MTG\""),
            [Clause::AnyOf(vec![phrase("週次 MTG")])]
        );
        let q = TextQuery::parse("MTG").unwrap().unwrap();
        assert_eq!(q.with_synonyms(&Synonyms::default()), q);
    }

    proptest! {
        /// Expanding is idempotent, and a query with no synonym term is unchanged.
        #[test]
        fn expansion_is_idempotent_and_leaves_other_terms_alone(
            input in "(-?(MTG|ｍｔｇ|ミーティング|打ち合わせ|見積|見積もり|\"MTG\"|提案|a|b) ?(OR )?){1,6}"
        ) {
            let Ok(Some(q)) = TextQuery::parse(&input) else {
                return Ok(());
            };
            let s = synonyms();
            let once = q.with_synonyms(&s);
            prop_assert_eq!(once.with_synonyms(&s), once.clone());
            let has_synonym = q
                .clauses()
                .iter()
                .flat_map(|c| match c {
                    Clause::AnyOf(t) => t.clone(),
                    Clause::Not(t) => vec![t.clone()],
                })
                .any(|t| s.group_of(&t.text).is_some());
            if !has_synonym {
                prop_assert_eq!(once, q);
            } else {
                // Every synonym of every positive term is searched for.
                for t in q.positive_terms() {
                    if let Some(group) = s.group_of(&t.text) {
                        for g in group {
                            prop_assert!(once.positive_terms().any(|e| normalize(&e.text) == normalize(g)));
                        }
                    }
                }
            }
        }

        /// Any input parses or fails with an error; none panics, and every parsed term
        /// has something to search for.
        #[test]
        fn any_input_parses_or_fails_cleanly(input in "[a-c見積 \"\\-・OR]{0,16}") {
            if let Ok(Some(q)) = TextQuery::parse(&input) {
                for clause in q.clauses() {
                    let terms: Vec<&Term> = match clause {
                        Clause::AnyOf(t) => t.iter().collect(),
                        Clause::Not(t) => vec![t],
                    };
                    prop_assert!(!terms.is_empty());
                    for t in terms {
                        prop_assert!(normalize(&t.text).chars().any(is_token_char));
                    }
                }
            }
        }
    }
}
