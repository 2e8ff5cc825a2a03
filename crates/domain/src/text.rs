//! Text rules every index applies the same way, so that a Japanese query finds the same
//! memos in the embedded index and in OpenSearch / Elasticsearch.

use unicode_normalization::UnicodeNormalization;

/// Whether `c` belongs to a script written without spaces (kana, kanji, hangul), which the
/// indexes analyze as overlapping bigrams instead of words.
pub fn is_cjk(c: char) -> bool {
    matches!(c,
        // Hiragana, and Katakana with ー (U+30FC) but not the middle dot ・ (U+30FB),
        // which separates words like a space does.
        '\u{3041}'..='\u{309F}'
        | '\u{30A0}'..='\u{30FA}'
        | '\u{30FC}'..='\u{30FF}'
        | '\u{31F0}'..='\u{31FF}'
        // 々 〆 〇: iteration mark, shime, ideographic zero.
        | '\u{3005}'..='\u{3007}'
        // CJK unified ideographs, extension A, compatibility ideographs, extensions B+.
        | '\u{3400}'..='\u{4DBF}'
        | '\u{4E00}'..='\u{9FFF}'
        | '\u{F900}'..='\u{FAFF}'
        | '\u{20000}'..='\u{3FFFF}'
        // Hangul jamo, compatibility jamo and syllables.
        | '\u{1100}'..='\u{11FF}'
        | '\u{3130}'..='\u{318F}'
        | '\u{AC00}'..='\u{D7AF}')
}

/// Whether the analyzers keep `c` (after [`normalize`]) in a token: CJK, letters and
/// digits. Anything else (spaces, punctuation, 、。「」・) separates tokens.
pub fn is_token_char(c: char) -> bool {
    is_cjk(c) || c.is_alphanumeric()
}

/// NFKC then lowercase: how documents and queries are normalized before tokenizing.
pub fn normalize(text: &str) -> String {
    text.nfkc().collect::<String>().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::is_cjk;

    #[test]
    fn kana_kanji_and_hangul_are_cjk_the_middle_dot_and_latin_are_not() {
        for c in ['あ', 'ア', 'ー', '々', '見', '한'] {
            assert!(is_cjk(c), "{c}");
        }
        for c in ['・', 'a', '1', ' ', '。'] {
            assert!(!is_cjk(c), "{c}");
        }
    }
}
