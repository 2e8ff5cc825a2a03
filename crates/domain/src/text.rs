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

/// NFKC, lowercase and the folding of spelling variants ([`normalized_chars`]): how
/// documents and queries are normalized before tokenizing.
pub fn normalize(text: &str) -> String {
    normalized_chars(text)
        .into_iter()
        .map(|(c, _, _)| c)
        .collect()
}

/// A token of [`analyze`]: its normalized text and the byte span of the original text it
/// comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextToken {
    pub text: String,
    pub start: usize,
    pub end: usize,
}

/// The normalized characters of `text`, each with the byte span of the original it comes
/// from. A character and the combining or half-width voiced marks after it normalize
/// together (ﾎﾟ → ポ), so the result matches [`normalize`] of the whole text for what
/// Japanese business text holds.
pub fn normalized_chars(text: &str) -> Vec<(char, usize, usize)> {
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    let mut cluster = String::new();
    while let Some((start, c)) = chars.next() {
        cluster.clear();
        cluster.push(c);
        let mut end = start + c.len_utf8();
        while let Some(&(at, mark)) = chars.peek() {
            let voiced = matches!(mark, '\u{FF9E}' | '\u{FF9F}' | '\u{3099}' | '\u{309A}');
            if !(voiced || unicode_normalization::char::is_combining_mark(mark)) {
                break;
            }
            cluster.push(mark);
            end = at + mark.len_utf8();
            chars.next();
        }
        for n in cluster.nfkc().flat_map(char::to_lowercase) {
            push_folded(&mut out, n, start, end);
        }
    }
    out
}

/// The prolonged sound mark ー.
const CHOONPU: char = '\u{30FC}';

/// Whether `c` is a katakana letter (after folding, every kana is).
fn is_katakana(c: char) -> bool {
    matches!(c, '\u{30A1}'..='\u{30FA}')
}

/// Whether `c` is a kanji (CJK unified or compatibility ideograph).
pub fn is_han(c: char) -> bool {
    matches!(c,
        '\u{3400}'..='\u{4DBF}' | '\u{4E00}'..='\u{9FFF}' | '\u{F900}'..='\u{FAFF}'
        | '\u{20000}'..='\u{3FFFF}')
}

/// Dashes people type for ー after a kana (ミ－ティング, メ―ル, ｻ-ﾊﾞ-).
fn is_dash(c: char) -> bool {
    matches!(
        c,
        '-' | '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{2500}' | '\u{2501}' | '\u{FE63}'
    )
}

/// Appends a normalized character with the spelling variants folded, so that documents and
/// queries written either way meet:
/// - hiragana becomes katakana (みーてぃんぐ = ミーティング; ゝゞ become ヽヾ);
/// - a dash after a kana is the prolonged sound mark, and a run of them one mark
///   (ミ－ティング = ミーーティング = ミーティング);
/// - the iteration marks repeat the character before them (色々 = 色色, こゝろ = ココロ).
fn push_folded(out: &mut Vec<(char, usize, usize)>, c: char, start: usize, end: usize) {
    let c = match c {
        '\u{3041}'..='\u{3096}' | '\u{309D}' | '\u{309E}' => {
            char::from_u32(u32::from(c) + 0x60).unwrap_or(c)
        }
        c => c,
    };
    let previous = out.last().map(|&(p, _, _)| p);
    let c = match (c, previous) {
        (c, Some(p)) if is_dash(c) && (is_katakana(p) || p == CHOONPU) => CHOONPU,
        ('\u{3005}', Some(p)) if is_han(p) => p,
        ('\u{30FD}' | '\u{30FE}', Some(p)) if is_katakana(p) => p,
        (c, _) => c,
    };
    if c == CHOONPU && previous == Some(CHOONPU) {
        // One mark for a run: its span grows to cover the run.
        if let Some(last) = out.last_mut() {
            last.2 = end;
        }
        return;
    }
    out.push((c, start, end));
}

/// The tokens the indexes make of `text`: NFKC and lowercase, then runs of CJK
/// characters become overlapping bigrams (a lone character stays alone), runs of other
/// letters and digits one token each, and anything else separates. Token `i` is at
/// position `i`.
pub fn analyze(text: &str) -> Vec<TextToken> {
    let chars = normalized_chars(text);
    let mut tokens = Vec::new();
    let mut run_start = 0;
    while run_start < chars.len() {
        let (c, _, _) = chars[run_start];
        if !is_token_char(c) {
            run_start += 1;
            continue;
        }
        let cjk = is_cjk(c);
        let mut run_end = run_start + 1;
        while run_end < chars.len() {
            let next = chars[run_end].0;
            if !is_token_char(next) || is_cjk(next) != cjk {
                break;
            }
            run_end += 1;
        }
        let run = &chars[run_start..run_end];
        let token = |part: &[(char, usize, usize)]| TextToken {
            text: part.iter().map(|(c, _, _)| *c).collect(),
            start: part[0].1,
            end: part[part.len() - 1].2,
        };
        if cjk && run.len() > 1 {
            tokens.extend(run.windows(2).map(token));
        } else {
            tokens.push(token(run));
        }
        run_start = run_end;
    }
    tokens
}

/// A byte range of a text.
type Span = (usize, usize);

/// Characters of context on each side of a match in a highlight fragment.
pub const HIGHLIGHT_CONTEXT_CHARS: usize = 30;
/// A fragment grows to take in nearby matches up to this many characters.
pub const MAX_FRAGMENT_CHARS: usize = 100;
/// At most this many fragments per memo.
pub const MAX_HIGHLIGHTS: usize = 3;

/// Byte spans of `text` where `term` occurs as the indexes match it: its tokens in a
/// row, or for a term of one CJK character, that character anywhere.
pub fn match_spans(text: &str, term: &str) -> Vec<(usize, usize)> {
    match_spans_with(text, term, false)
}

/// The shortest Latin word that also matches as a prefix (`meet` finds meeting).
pub const MIN_PREFIX_CHARS: usize = 3;

/// Whether a token matches words that start with it when it ends a search word: a word
/// of at least [`MIN_PREFIX_CHARS`] letters of an alphabetic script (not digits, not CJK).
pub fn is_prefix_token(token: &str) -> bool {
    token.chars().count() >= MIN_PREFIX_CHARS
        && token.chars().all(|c| c.is_alphabetic() && !is_cjk(c))
}

/// [`match_spans`], the last token of `term` matching as a prefix when `prefix`.
pub fn match_spans_with(text: &str, term: &str, prefix: bool) -> Vec<(usize, usize)> {
    let wanted: Vec<String> = analyze(term).into_iter().map(|t| t.text).collect();
    let mut single = wanted.first().map(|w| w.chars());
    if let (1, Some(Some(c)), Some(None)) = (
        wanted.len(),
        single.as_mut().map(Iterator::next),
        single.as_mut().map(Iterator::next),
    ) {
        if is_cjk(c) {
            return normalized_chars(text)
                .into_iter()
                .filter(|(n, _, _)| *n == c)
                .map(|(_, start, end)| (start, end))
                .collect();
        }
    }
    if wanted.is_empty() {
        return Vec::new();
    }
    let tokens = analyze(text);
    tokens
        .windows(wanted.len())
        .filter(|w| {
            w.iter().zip(&wanted).enumerate().all(|(i, (t, want))| {
                if prefix && i + 1 == wanted.len() {
                    t.text.starts_with(want.as_str())
                } else {
                    &t.text == want
                }
            })
        })
        .map(|w| (w[0].start, w[w.len() - 1].end))
        .collect()
}

/// Memo fragments around the places where any of `terms` occurs, HTML-escaped, with
/// each match wrapped in `<mark>`…`</mark>`; a fragment that does not reach an end of
/// the memo shows `…` there. At most [`MAX_HIGHLIGHTS`] fragments, in memo order; none
/// when no term occurs.
pub fn highlight<'a>(text: &str, terms: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    highlight_terms(text, terms.into_iter().map(|t| (t, false)))
}

/// [`highlight`] of terms whose last token may match as a prefix (`(text, prefix)`).
pub fn highlight_terms<'a>(
    text: &str,
    terms: impl IntoIterator<Item = (&'a str, bool)>,
) -> Vec<String> {
    let spans: Vec<(usize, usize)> = terms
        .into_iter()
        .flat_map(|(t, prefix)| match_spans_with(text, t, prefix))
        .collect();
    highlight_spans(text, spans)
}

/// The [`highlight`] fragments of `text` marking `spans` (byte ranges on character
/// boundaries, in any order, overlapping or not), however they were found.
pub fn highlight_spans(text: &str, mut spans: Vec<(usize, usize)>) -> Vec<String> {
    spans.retain(|&(start, end)| {
        start < end && text.is_char_boundary(start) && text.is_char_boundary(end)
    });
    spans.sort_unstable();
    // Overlapping or touching matches become one mark.
    let mut marks: Vec<(usize, usize)> = Vec::new();
    for (start, end) in spans {
        match marks.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => marks.push((start, end)),
        }
    }
    // Char boundaries, to widen a mark by whole characters.
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .collect();
    let char_at = |byte: usize| bounds.partition_point(|&b| b < byte);
    // (start, end, marks inside) of each fragment, as byte offsets.
    let mut windows: Vec<(usize, usize, Vec<Span>)> = Vec::new();
    for (start, end) in marks {
        let from = bounds[char_at(start).saturating_sub(HIGHLIGHT_CONTEXT_CHARS)];
        let to = bounds[(char_at(end) + HIGHLIGHT_CONTEXT_CHARS).min(bounds.len() - 1)];
        let mut from = from;
        if let Some(last) = windows.last_mut() {
            if from <= last.1 {
                // Join the previous fragment while it stays short, else start after it.
                if char_at(to) - char_at(last.0) <= MAX_FRAGMENT_CHARS {
                    last.1 = last.1.max(to);
                    last.2.push((start, end));
                    continue;
                }
                // Neither fragment shows this match's text unmarked or twice.
                last.1 = last.1.min(start);
                from = last.1;
            }
        }
        if windows.len() == MAX_HIGHLIGHTS {
            break;
        }
        windows.push((from, to, vec![(start, end)]));
    }
    windows
        .into_iter()
        .map(|(from, to, marks)| {
            let mut out = String::new();
            if from > 0 {
                out.push('…');
            }
            let mut at = from;
            for (start, end) in marks {
                out.push_str(&escape_html(&text[at..start]));
                out.push_str("<mark>");
                out.push_str(&escape_html(&text[start..end]));
                out.push_str("</mark>");
                at = end;
            }
            out.push_str(&escape_html(&text[at..to]));
            if to < text.len() {
                out.push('…');
            }
            out
        })
        .collect()
}

/// `text` safe inside HTML: `& < > " '` escaped.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(text: &str) -> Vec<String> {
        analyze(text).into_iter().map(|t| t.text).collect()
    }

    #[test]
    fn analysis_bigrams_cjk_words_latin_and_keeps_original_spans() {
        assert_eq!(
            texts("来週訪問のアポ獲得"),
            ["来週", "週訪", "訪問", "問ノ", "ノア", "アポ", "ポ獲", "獲得"]
        );
        assert_eq!(texts("ｱﾎﾟ獲得"), ["アポ", "ポ獲", "獲得"]);
        assert_eq!(texts("ＺＯＯＭで商談"), ["zoom", "デ商", "商談"]);
        assert_eq!(texts("Web会議 2回目"), ["web", "会議", "2", "回目"]);
        assert_eq!(texts("株 済、部長・課長"), ["株", "済", "部長", "課長"]);
        assert!(texts(" 、。!? ").is_empty());
        // Spans point into the original text: ﾎﾟ (6 bytes) is one ポ.
        let text = "ｱﾎﾟ獲得";
        let tokens = analyze(text);
        assert_eq!(&text[tokens[0].start..tokens[0].end], "ｱﾎﾟ");
        assert_eq!(&text[tokens[1].start..tokens[1].end], "ﾎﾟ獲");
    }

    /// Issue 19: hiragana and katakana, long vowels typed with dashes, and iteration marks
    /// meet.
    #[test]
    fn spelling_variants_fold_together() {
        assert_eq!(normalize("みーてぃんぐ"), "ミーティング");
        assert_eq!(normalize("ミ－ティング"), "ミーティング");
        assert_eq!(normalize("ﾐｰﾃｨﾝｸﾞ"), "ミーティング");
        assert_eq!(normalize("ミーーティング"), "ミーティング");
        assert_eq!(normalize("サ-バ―"), "サーバー");
        assert_eq!(normalize("色々 時々"), "色色 時時");
        assert_eq!(normalize("あぽ確定"), "アポ確定");
        // A dash elsewhere stays a separator; 々 alone stays.
        assert_eq!(normalize("e-mail 2-3 々"), "e-mail 2-3 々");
        assert_eq!(texts("打ち合わせ"), texts("打チ合ワセ"));
        // The highlight still marks the text as written.
        assert_eq!(
            highlight("次回みーてぃんぐ予定", ["ミーティング"]),
            ["次回<mark>みーてぃんぐ</mark>予定"]
        );
    }

    #[test]
    fn highlights_mark_matches_in_the_original_text_escaped() {
        assert_eq!(
            highlight("ｱﾎﾟ確定、<b>部長</b>同席", ["アポ", "部長"]),
            ["<mark>ｱﾎﾟ</mark>確定、&lt;b&gt;<mark>部長</mark>&lt;/b&gt;同席"]
        );
        // A phrase of tokens across a separator; one CJK character anywhere.
        assert_eq!(
            highlight("Zoom 商談 2回目", ["zoom商談", "回"]),
            ["<mark>Zoom 商談</mark> 2<mark>回</mark>目"]
        );
        assert!(highlight("来週訪問", ["訪問来週"]).is_empty());
        // Far-apart matches become separate fragments with ellipses.
        let memo = format!("見積{}提案{}", "あ".repeat(80), "い".repeat(80));
        let fragments = highlight(&memo, ["見積", "提案"]);
        assert_eq!(fragments.len(), 2);
        assert!(fragments[0].starts_with("<mark>見積</mark>"));
        assert!(fragments[0].ends_with('…'));
        assert!(fragments[1].starts_with('…'));
        assert!(fragments[1].contains("<mark>提案</mark>"));
        // The last Latin word of a word (not a phrase) matches as a prefix.
        assert_eq!(
            highlight_terms("Meetings and a meet", [("meet", true)]),
            ["<mark>Meetings</mark> and a <mark>meet</mark>"]
        );
        assert!(highlight_terms("Meetings", [("meet", false)]).is_empty());
        assert!(is_prefix_token("meet") && !is_prefix_token("it") && !is_prefix_token("2026"));
        let many = "見積 ".repeat(200);
        assert_eq!(highlight(&many, ["見積"]).len(), MAX_HIGHLIGHTS);
    }

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
