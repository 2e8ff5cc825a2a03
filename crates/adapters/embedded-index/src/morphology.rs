//! The two tantivy tokenizers built on the Japanese word analysis of
//! [`tsunagu_dictionary`]: [`JaWordsTokenizer`] (one normalized key per word) and
//! [`JaWordBigramTokenizer`] (character bigrams that never cross a word boundary). What
//! the words are, how they are keyed and which search words match them is told there.

pub use tsunagu_dictionary::{
    test_dictionary, word_bigrams, Dictionary, DictionaryError, Word, TEST_DICTIONARY_ENV,
};

use crate::tokenizer::JaBigramTokenStream;
use std::sync::Arc;
use tantivy::tokenizer::{Token, Tokenizer};

/// The words tokenizer: one key per word, at consecutive positions (see the module docs).
#[derive(Clone)]
pub struct JaWordsTokenizer(pub Arc<Dictionary>);

impl Tokenizer for JaWordsTokenizer {
    type TokenStream<'a> = JaBigramTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> JaBigramTokenStream {
        JaBigramTokenStream::from_tokens(
            self.0
                .words(text)
                .into_iter()
                .enumerate()
                .map(|(position, w)| Token {
                    offset_from: w.start,
                    offset_to: w.end,
                    position,
                    text: w.key,
                    position_length: 1,
                })
                .collect(),
        )
    }
}

/// The word-bounded bigram tokenizer: the bigrams of each word of two characters or more,
/// with a gap of one position between words so that a phrase of bigrams matches inside
/// one word only.
#[derive(Clone)]
pub struct JaWordBigramTokenizer(pub Arc<Dictionary>);

impl Tokenizer for JaWordBigramTokenizer {
    type TokenStream<'a> = JaBigramTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> JaBigramTokenStream {
        let mut tokens = Vec::new();
        let mut position = 0;
        for word in self.0.words(text) {
            let bigrams = word_bigrams(&word.folded);
            if bigrams.is_empty() {
                continue;
            }
            for bigram in bigrams {
                tokens.push(Token {
                    offset_from: word.start,
                    offset_to: word.end,
                    position,
                    text: bigram,
                    position_length: 1,
                });
                position += 1;
            }
            position += 1;
        }
        JaBigramTokenStream::from_tokens(tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::tokenizer::TokenStream;

    #[test]
    fn word_bigrams_stay_inside_a_word() {
        let Some(dict) = test_dictionary("word_bigrams_stay_inside_a_word") else {
            return;
        };
        let mut tokenizer = JaWordBigramTokenizer(dict);
        let mut stream = tokenizer.token_stream("東京都港区の京都大学");
        let mut texts = Vec::new();
        while stream.advance() {
            texts.push((stream.token().text.clone(), stream.token().position));
        }
        let kyoto: Vec<usize> = texts
            .iter()
            .filter(|(t, _)| t == "京都")
            .map(|(_, p)| *p)
            .collect();
        // Only inside 京都大学, not across 東京 / 都.
        assert_eq!(kyoto.len(), 1, "{texts:?}");
    }
}
