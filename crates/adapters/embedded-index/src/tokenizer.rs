//! Japanese-aware text analysis without a dictionary: [`JaBigramTokenizer`].
//!
//! Morphological analyzers (lindera, sudachi) need a dictionary download of tens of
//! megabytes; character bigrams need nothing and find every substring of two or more
//! characters, which is what a salesperson searching memos expects (recall over precision).
//!
//! The analysis is the domain's ([`tsunagu_domain::text::analyze`], shared with the
//! OpenSearch adapter's query building and the highlights). The text is NFKC-normalized
//! (half-width ｱﾎﾟ becomes アポ, full-width ＺＯＯＭ becomes ZOOM), lowercased and its
//! spelling variants folded (hiragana to katakana, dashes after kana to ー and runs of ー to
//! one, 々 to the character it repeats), then split into runs:
//! - CJK runs (Han, Hiragana, Katakana with the prolonged sound mark ー, Hangul) emit
//!   overlapping character bigrams; a run of one character emits that character;
//! - runs of other letters and digits emit one token per word;
//! - everything else (spaces, punctuation, 、。「」・) separates runs.
//!
//! Every token takes the next position, so the bigrams of a query word form a phrase that
//! matches exactly where the word occurs in a memo.

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};
pub(crate) use tsunagu_domain::text::is_cjk;

/// The name under which [`JaBigramTokenizer`] is registered with an index.
/// `_v2` since the analysis folds spelling variants (issue 19): an index built before
/// holds hiragana bigrams that folded queries would miss, so it opens as a schema
/// mismatch, to be rebuilt, rather than answering incompletely.
pub const JA_TOKENIZER_NAME: &str = "ja_bigram_v2";

/// The tokenizer of memo text (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct JaBigramTokenizer;

/// The tokens of one text, computed up front: normalization changes the text, so the
/// stream has to own the normalized copy anyway, and memos are short (≤ 10,000 chars).
///
/// Offsets refer to the original text (ﾎﾟ, two characters, is one ポ).
pub struct JaBigramTokenStream {
    tokens: Vec<Token>,
    /// Index of the current token plus one; 0 before the first `advance`.
    next: usize,
    /// Returned by `token()` before the first `advance` (tantivy never does that).
    empty: Token,
}

impl Tokenizer for JaBigramTokenizer {
    type TokenStream<'a> = JaBigramTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> JaBigramTokenStream {
        JaBigramTokenStream::from_tokens(analyze(text))
    }
}

impl JaBigramTokenStream {
    /// A stream of tokens computed up front (the morphological tokenizers use it too).
    pub(crate) fn from_tokens(tokens: Vec<Token>) -> Self {
        Self {
            tokens,
            next: 0,
            empty: Token::default(),
        }
    }
}

impl TokenStream for JaBigramTokenStream {
    fn advance(&mut self) -> bool {
        if self.next < self.tokens.len() {
            self.next += 1;
            true
        } else {
            false
        }
    }

    fn token(&self) -> &Token {
        match self.next.checked_sub(1) {
            Some(i) => &self.tokens[i],
            None => &self.empty,
        }
    }

    fn token_mut(&mut self) -> &mut Token {
        match self.next.checked_sub(1) {
            Some(i) => &mut self.tokens[i],
            None => &mut self.empty,
        }
    }
}

/// Tokenizes `text` with the analysis every index shares
/// ([`tsunagu_domain::text::analyze`]). Positions start at 0 and increase by one per
/// token; offsets are byte offsets of the original text.
pub(crate) fn analyze(text: &str) -> Vec<Token> {
    tsunagu_domain::text::analyze(text)
        .into_iter()
        .enumerate()
        .map(|(position, t)| Token {
            offset_from: t.start,
            offset_to: t.end,
            position,
            text: t.text,
            position_length: 1,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(text: &str) -> Vec<String> {
        let mut stream = JaBigramTokenizer.token_stream(text);
        let mut out = Vec::new();
        let mut expected_position = 0;
        while stream.advance() {
            let token = stream.token();
            assert_eq!(
                token.position, expected_position,
                "positions increase by one"
            );
            expected_position += 1;
            out.push(token.text.clone());
        }
        out
    }

    #[test]
    fn cjk_runs_become_overlapping_bigrams() {
        assert_eq!(
            texts("来週訪問のアポ獲得"),
            ["来週", "週訪", "訪問", "問ノ", "ノア", "アポ", "ポ獲", "獲得"]
        );
    }

    #[test]
    fn half_width_katakana_is_normalized() {
        assert_eq!(texts("ｱﾎﾟ獲得"), ["アポ", "ポ獲", "獲得"]);
        assert_eq!(texts("ｱﾎﾟ"), texts("アポ"));
    }

    #[test]
    fn latin_words_are_lowercased_and_split_from_cjk() {
        assert_eq!(texts("Zoom商談"), ["zoom", "商談"]);
        assert_eq!(texts("ＺＯＯＭで商談"), ["zoom", "デ商", "商談"]);
        assert_eq!(texts("Web会議 2回目"), ["web", "会議", "2", "回目"]);
    }

    #[test]
    fn punctuation_separates_and_single_characters_stand_alone() {
        assert_eq!(
            texts("先方、「了承」。部長・課長"),
            ["先方", "了承", "部長", "課長"]
        );
        assert_eq!(texts("株 済"), ["株", "済"]);
        assert_eq!(texts("サーバー"), ["サー", "ーバ", "バー"]);
    }

    #[test]
    fn hangul_is_bigrammed_and_empty_text_has_no_tokens() {
        assert_eq!(texts("안녕하세요"), ["안녕", "녕하", "하세", "세요"]);
        assert!(texts("").is_empty());
        assert!(texts(" 、。!? ").is_empty());
    }

    #[test]
    fn offsets_point_into_the_original_text() {
        let text = "ｱﾎﾟのZoom商談";
        let spans: Vec<&str> = analyze(text)
            .iter()
            .map(|t| &text[t.offset_from..t.offset_to])
            .collect();
        assert_eq!(spans, ["ｱﾎﾟ", "ﾎﾟの", "Zoom", "商談"]);
    }
}
