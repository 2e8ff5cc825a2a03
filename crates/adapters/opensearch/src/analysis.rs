//! Japanese text analysis on the cluster, equivalent to the embedded index's
//! `JaBigramTokenizer` (`tsunagu-embedded-index` `tokenizer.rs`), and the client-side
//! half of it that query building needs.
//!
//! The embedded tokenizer NFKC-normalizes and lowercases the text, then splits it into
//! runs: CJK runs (Han, kana with ー, Hangul) become overlapping bigrams (a lone character
//! stays a unigram), runs of other letters and digits become one word each, anything else
//! separates. The cluster's analyzer ([`analyzer_settings`]) does the same with built-in
//! parts only:
//!
//! 1. char filter `tsunagu_nfkc`: a `mapping` of every character of the blocks a Japanese
//!    text uses (Latin-1, punctuation, letterlike, enclosed, CJK symbols and compatibility,
//!    compatibility ideographs, half- and full-width forms, ...) to its NFKC form
//!    ([`nfkc_mappings`]; half-width katakana with a voiced mark compose, ｶﾞ → ガ). With
//!    `analyzer = "cjk_icu"` the ICU plugin's `icu_normalizer` (nfkc) does it instead.
//! 2. char filter `tsunagu_separators`: every character that is neither a letter nor a
//!    digit becomes a space, so that `3.5`, `don't`, `foo_bar` and emoji split as in the
//!    embedded tokenizer (the standard tokenizer would keep them together or emit them).
//! 3. the `standard` tokenizer, then `cjk_width`, `lowercase` and `cjk_bigram` (bigrams
//!    of adjacent CJK characters, a unigram for a lone one).
//!
//! Queries: each word is a `match_phrase` analyzed by the same analyzer, except a word
//! that is one CJK character, which the embedded index matches alone, at the start of a
//! bigram or at its end; [`single_cjk_char`] tells those apart with the embedded rules.

use serde_json::{json, Value};
use tsunagu_domain::text::is_cjk;
use unicode_normalization::UnicodeNormalization;

/// The `mapping` char filter's name in the index settings.
pub const NFKC_CHAR_FILTER: &str = "tsunagu_nfkc";
/// The `pattern_replace` char filter's name in the index settings.
pub const SEPARATORS_CHAR_FILTER: &str = "tsunagu_separators";
/// Char filters of the spelling-variant folding (`tsunagu_domain::text::normalized_chars`):
/// dashes after kana to ー (before NFKC, which would make them spaces), hiragana to
/// katakana, iteration marks, runs of ー.
pub const LONG_VOWEL_CHAR_FILTER: &str = "tsunagu_long_vowel";
pub const KANA_CHAR_FILTER: &str = "tsunagu_kana";
pub const ITERATION_CHAR_FILTER: &str = "tsunagu_iteration";
pub const KANA_ITERATION_CHAR_FILTER: &str = "tsunagu_kana_iteration";
pub const CHOONPU_RUN_CHAR_FILTER: &str = "tsunagu_choonpu_run";

/// The rules of the `tsunagu_kana` mapping: hiragana (and ゝゞ) to katakana.
pub fn kana_mappings() -> Vec<String> {
    (0x3041u32..=0x3096)
        .chain([0x309D, 0x309E])
        .filter_map(|code| {
            let from = char::from_u32(code)?;
            let to = char::from_u32(code + 0x60)?;
            Some(format!(
                "{} => {}",
                rule_text(&from.to_string()),
                rule_text(&to.to_string())
            ))
        })
        .collect()
}

/// The blocks whose NFKC forms the `mapping` char filter carries: what Japanese business
/// text meets. Math alphanumerics, Arabic presentation forms and the like are left out to
/// keep the settings small (~2,600 rules, ~55 KB).
const NFKC_BLOCKS: [(u32, u32); 13] = [
    (0x00A0, 0x00FF),   // Latin-1: no-break space, ª ² ½ ...
    (0x2000, 0x209F),   // general punctuation, super- and subscripts
    (0x2100, 0x218F),   // letterlike symbols, number forms (Ⅲ ½)
    (0x2460, 0x24FF),   // enclosed alphanumerics (① ⑴ ⒜)
    (0x2E80, 0x2FDF),   // CJK radicals, Kangxi radicals
    (0x3000, 0x30FF),   // CJK symbols, kana (゛ ゜ ゟ ヿ)
    (0x3130, 0x33FF),   // Hangul compatibility jamo, kanbun, enclosed CJK (㈱), ㍿ ㌔
    (0xF900, 0xFAFF),   // CJK compatibility ideographs
    (0xFB00, 0xFB4F),   // Latin ligatures (ﬁ)
    (0xFE10, 0xFE6F),   // vertical, compatibility and small forms
    (0xFF00, 0xFFEF),   // half- and full-width forms
    (0x1F100, 0x1F2FF), // enclosed alphanumeric and ideographic supplements
    (0x2F800, 0x2FA1F), // CJK compatibility ideographs supplement
];

/// Half-width katakana (U+FF61..U+FF9F) and its voiced marks.
const HALF_WIDTH_KANA: (u32, u32) = (0xFF61, 0xFF9F);
const HALF_WIDTH_VOICED_MARKS: [char; 2] = ['\u{FF9E}', '\u{FF9F}'];

/// Whether the embedded tokenizer keeps `c` in a token (anything else separates).
fn is_token_char(c: char) -> bool {
    is_cjk(c) || c.is_alphanumeric()
}

/// NFKC, lowercase and variant folding, as the embedded tokenizer normalizes.
pub fn normalize(text: &str) -> String {
    tsunagu_domain::text::normalize(text)
}

/// The tokens the embedded tokenizer makes of `text` (texts only, in position order).
pub fn tokens(text: &str) -> Vec<String> {
    tsunagu_domain::text::analyze(text)
        .into_iter()
        .map(|t| t.text)
        .collect()
}

/// The character, when `word` analyzes to exactly one token of one CJK character.
pub fn single_cjk_char(word: &str) -> Option<char> {
    match tokens(word).as_slice() {
        [only] => {
            let mut chars = only.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) if is_cjk(c) => Some(c),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `c` as the `mapping` char filter's rule syntax reads it: `\uXXXX` for the basic
/// plane (so spaces, `=` and `>` stay unambiguous), the character itself beyond it (the
/// escape has only four digits).
fn rule_text(text: &str) -> String {
    text.chars()
        .map(|c| match u16::try_from(u32::from(c)) {
            Ok(unit) => format!("\\u{unit:04X}"),
            Err(_) => c.to_string(),
        })
        .collect()
}

/// The NFKC form of `from` with separators as spaces (the next char filter turns them
/// into spaces anyway; a mapping to nothing would join the words around it).
fn rule(from: &str) -> Option<String> {
    let to: String = from
        .nfkc()
        .map(|c| if is_token_char(c) { c } else { ' ' })
        .collect();
    (to != from).then(|| format!("{} => {}", rule_text(from), rule_text(&to)))
}

/// The rules of the `tsunagu_nfkc` mapping char filter (see the module docs).
pub fn nfkc_mappings() -> Vec<String> {
    let mut rules = Vec::new();
    for (first, last) in NFKC_BLOCKS {
        for code in first..=last {
            let Some(c) = char::from_u32(code) else {
                continue;
            };
            if let Some(r) = rule(&c.to_string()) {
                rules.push(r);
            }
        }
    }
    // A half-width kana and its voiced mark compose into one full-width kana (ｶﾞ → ガ);
    // the mapping matches the longest key first.
    for code in HALF_WIDTH_KANA.0..=HALF_WIDTH_KANA.1 {
        let Some(kana) = char::from_u32(code) else {
            continue;
        };
        for mark in HALF_WIDTH_VOICED_MARKS {
            let pair: String = [kana, mark].iter().collect();
            if pair.nfkc().count() == 1 {
                if let Some(r) = rule(&pair) {
                    rules.push(r);
                }
            }
        }
    }
    rules
}

/// The `analysis` settings of the Japanese analyzer named `name`: the custom analyzer of
/// the module docs, with the NFKC step by `mapping` or, when `icu`, by `icu_normalizer`.
pub fn analyzer_settings(name: &str, icu: bool) -> Value {
    let nfkc = if icu {
        json!({"type": "icu_normalizer", "name": "nfkc", "mode": "compose"})
    } else {
        json!({"type": "mapping", "mappings": nfkc_mappings()})
    };
    let pattern = |pattern: &str, replacement: &str| json!({"type": "pattern_replace", "pattern": pattern, "replacement": replacement});
    json!({
        "char_filter": {
            LONG_VOWEL_CHAR_FILTER: pattern(
                "([ぁ-ゖゝゞァ-ヺーヽヾｦ-ﾟ])[\\-\u{2010}-\u{2015}\u{2212}\u{2500}\u{2501}\u{FE63}\u{FF0D}]+",
                "$1ー",
            ),
            NFKC_CHAR_FILTER: nfkc,
            KANA_CHAR_FILTER: {"type": "mapping", "mappings": kana_mappings()},
            ITERATION_CHAR_FILTER: pattern(
                "([\u{3400}-\u{4DBF}\u{4E00}-\u{9FFF}\u{F900}-\u{FAFF}])々",
                "$1$1",
            ),
            KANA_ITERATION_CHAR_FILTER: pattern("([ァ-ヺ])[ヽヾ]", "$1$1"),
            CHOONPU_RUN_CHAR_FILTER: pattern("ーー+", "ー"),
            SEPARATORS_CHAR_FILTER: pattern("[^\\p{L}\\p{N}]", " "),
        },
        "analyzer": {
            name: {
                "type": "custom",
                "char_filter": [
                    LONG_VOWEL_CHAR_FILTER,
                    NFKC_CHAR_FILTER,
                    KANA_CHAR_FILTER,
                    ITERATION_CHAR_FILTER,
                    KANA_ITERATION_CHAR_FILTER,
                    CHOONPU_RUN_CHAR_FILTER,
                    SEPARATORS_CHAR_FILTER,
                ],
                "tokenizer": "standard",
                "filter": ["cjk_width", "lowercase", "cjk_bigram"],
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_follow_the_embedded_tokenizer() {
        assert_eq!(
            tokens("来週訪問のアポ獲得"),
            ["来週", "週訪", "訪問", "問ノ", "ノア", "アポ", "ポ獲", "獲得"]
        );
        assert_eq!(tokens("ｱﾎﾟ獲得"), ["アポ", "ポ獲", "獲得"]);
        assert_eq!(tokens("ＺＯＯＭで商談"), ["zoom", "デ商", "商談"]);
        assert_eq!(tokens("Web会議 2回目"), ["web", "会議", "2", "回目"]);
        assert_eq!(tokens("株 済"), ["株", "済"]);
        assert!(tokens(" 、。!? ").is_empty());
    }

    #[test]
    fn single_cjk_characters_are_told_apart() {
        assert_eq!(single_cjk_char("株"), Some('株'));
        assert_eq!(single_cjk_char("「株」"), Some('株'));
        assert_eq!(single_cjk_char("ｱ"), Some('ア'));
        assert_eq!(single_cjk_char("株式"), None);
        assert_eq!(single_cjk_char("a"), None);
        assert_eq!(single_cjk_char("、"), None);
    }

    #[test]
    fn mappings_fold_to_nfkc_with_escapes() {
        let rules = nfkc_mappings();
        // ＡＢ → AB, ① → 1, ㈱ → " 株 ", ｶﾞ → ガ, no-break space → space.
        for expected in [
            "\\uFF21 => \\u0041",
            "\\u2460 => \\u0031",
            "\\u3231 => \\u0020\\u682A\\u0020",
            "\\uFF76\\uFF9E => \\u30AC",
            "\\u00A0 => \\u0020",
        ] {
            assert!(rules.iter().any(|r| r == expected), "{expected} missing");
        }
        let keys: std::collections::HashSet<&str> = rules
            .iter()
            .filter_map(|r| r.split(" => ").next())
            .collect();
        assert_eq!(keys.len(), rules.len(), "duplicate keys");
        assert!(rules.len() < 4_000, "{} rules", rules.len());
    }
}
