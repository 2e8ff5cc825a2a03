//! Morphological analysis of Japanese memo text with a MeCab IPADIC dictionary
//! ([`Dictionary`]): the words of a text with their keys, and the word-bounded bigrams,
//! that both search backends index beside the character bigrams. The embedded index
//! analyzes with them in its tokenizers (`tsunagu-embedded-index` `morphology.rs`); the
//! OpenSearch sink sends their output as pre-analyzed fields (`tsunagu-opensearch`
//! `document.rs`), so the two backends split every memo and every query the same way
//! whatever analysis plugins a cluster has.
//!
//! # Where the dictionary comes from
//!
//! No crate on crates.io ships IPADIC itself (lindera's build scripts download it, which
//! fails on a machine that reaches only package registries), so the dictionary is the
//! Debian package `mecab-ipadic`: its sources (`*.csv` in EUC-JP, `matrix.def`,
//! `char.def`, `unk.def`, under `/usr/share/mecab/dic/ipadic`) are compiled with
//! [vibrato](https://docs.rs/vibrato) the first time they are used. Compiling takes a few
//! seconds, so the compiled form is cached in a directory the caller chooses (the data
//! directory's `dictionaries/`), in a file named after a hash of the sources: a new
//! version of the package compiles again, and an unchanged one loads the cache. The same
//! hash is part of [`Dictionary::analysis_id`] (and of the embedded tokenizer names), so an
//! index built with other sources is refused as built with another analysis, to be rebuilt.
//!
//! # The word keys (okurigana variants, kana folding)
//!
//! Each word (MeCab's segmentation of the NFKC text) becomes one key
//! ([`Dictionary::words`]):
//! - symbols and punctuation become nothing, and so do the honorific prefixes お, ご, 御
//!   (お見積り is 見積り);
//! - conjugated words (verbs, adjectives, auxiliaries) are taken in their base form
//!   (打ち合わせた is 打ち合わせる);
//! - a word with two kanji or more is keyed by its kanji alone, so that okurigana
//!   variants meet: 見積もり = 見積り = 見積 → `見積`, 打ち合わせ = 打合せ = 打ち合せ(る)
//!   → `打合`; homophones written with other kanji stay apart (企画 ≠ 規格, which a
//!   reading-form key would merge);
//! - anything else is its text folded as the bigram analysis folds it
//!   ([`tsunagu_domain::text::normalize`]: width, case, hiragana to katakana, ー).
//!
//! # Precision: whole words do not match across word boundaries
//!
//! A search word that is made of whole dictionary words and holds a kanji (京都, 見積もり,
//! 東京都) is matched on the two word-bounded fields instead of the bigram field: its
//! keys as a phrase on the words field (京都 does not match 東京都港区, which is
//! 東京 / 都 / 港 / 区), or its bigrams as a phrase inside one word (京都 still matches
//! 京都大学, a single word). A words-field match scores twice a match inside a word.
//! Every other search word (kana only, Latin, one character, or a word the dictionary
//! does not know, such as a product name) keeps the bigram field, which finds any
//! substring: recall where the dictionary cannot judge. A search word with a verb,
//! adjective or suffix (打ち合せ, アポ取り, 東京都) matches on both: such words are often the
//! start of a longer word in the memo (アポ取り直し is アポ / 取り直し), which the
//! dictionary splits otherwise; the strict match stays for nouns (京都). This is the "filter" choice of
//! issue 19: scoring alone would still return 東京都 for 京都, only lower.

use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tsunagu_domain::text::{is_cjk, is_han, normalize};
use tsunagu_domain::text_query::TextQuery;
use unicode_normalization::UnicodeNormalization;
use vibrato::dictionary::LexType;

/// The version of the word keys: raise it when [`Dictionary::words`] changes, so that an
/// index built before opens as a schema mismatch.
const WORDS_VERSION: u32 = 1;

/// The files of a MeCab dictionary's sources besides the `*.csv` lexicon.
const DEFINITION_FILES: [&str; 3] = ["matrix.def", "char.def", "unk.def"];

/// The longest run of unknown characters of one kind grouped into one word (MeCab's
/// default is unbounded; this keeps a long run of symbols cheap).
const MAX_GROUPING_LEN: usize = 24;

/// Failures to load a dictionary.
#[derive(Debug, thiserror::Error)]
pub enum DictionaryError {
    /// The configured directory does not hold the sources of a MeCab dictionary.
    #[error(
        "no MeCab IPADIC dictionary sources at {} ({missing}): install them with \
         `apt-get install mecab-ipadic` (they go to /usr/share/mecab/dic/ipadic), or fix the \
         `dictionary` setting of the index",
        .path.display()
    )]
    NotADictionary { path: PathBuf, missing: String },

    /// The sources are there but do not compile.
    #[error("the dictionary sources at {} are invalid: {message}", .path.display())]
    Invalid { path: PathBuf, message: String },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// A compiled MeCab IPADIC dictionary, ready to analyze text (see the module docs).
pub struct Dictionary {
    tokenizer: vibrato::Tokenizer,
    /// Hash of the sources (16 hex digits).
    fingerprint: String,
    source: PathBuf,
}

impl std::fmt::Debug for Dictionary {
    /// The source and the hash only (the compiled tables are tens of megabytes).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Dictionary({}, {})",
            self.source.display(),
            self.fingerprint
        )
    }
}

impl PartialEq for Dictionary {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
    }
}

impl Eq for Dictionary {}

/// One word of a text: its key (see the module docs), its folded text, the byte span of
/// the original text it covers, and whether the dictionary knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub key: String,
    pub folded: String,
    pub start: usize,
    pub end: usize,
    pub known: bool,
    /// A verb, adjective, auxiliary or suffix: a word that a memo often continues into a
    /// longer one (取り in 取り直し), see [`Dictionary::whole_words`].
    pub open_ended: bool,
}

impl Dictionary {
    /// Loads the dictionary whose sources are in `source_dir`, from the compiled copy in
    /// `cache_dir` when there is one for these sources, else compiling them and writing
    /// that copy (a cache that cannot be written is logged, not an error).
    pub fn load(source_dir: &Path, cache_dir: &Path) -> Result<Self, DictionaryError> {
        let started = Instant::now();
        let sources = Sources::read(source_dir)?;
        let fingerprint = sources.fingerprint();
        let cache = compiled_copy(cache_dir, &fingerprint);
        let dict = match read_cached(&cache) {
            Some(dict) => {
                tracing::info!(
                    cache = %cache.display(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "dictionary loaded from its compiled copy"
                );
                dict
            }
            None => {
                let dict = sources.compile(source_dir)?;
                tracing::info!(
                    source = %source_dir.display(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "dictionary compiled"
                );
                if let Err(e) = write_cache(&dict, cache_dir, &cache) {
                    tracing::warn!(
                        cache = %cache.display(),
                        error = %e,
                        "cannot keep the compiled dictionary; it will be compiled again next time"
                    );
                }
                dict
            }
        };
        let tokenizer = vibrato::Tokenizer::new(dict)
            .ignore_space(true)
            .map_err(|e| DictionaryError::Invalid {
                path: source_dir.to_path_buf(),
                message: e.to_string(),
            })?
            .max_grouping_len(MAX_GROUPING_LEN);
        Ok(Self {
            tokenizer,
            fingerprint,
            source: source_dir.to_path_buf(),
        })
    }

    /// For `tsunagu check`: whether `source_dir` holds readable IPADIC sources and whether
    /// `cache_dir` already has their compiled copy, without compiling anything. Returns a
    /// one-line summary.
    pub fn inspect(source_dir: &Path, cache_dir: &Path) -> Result<String, DictionaryError> {
        let sources = Sources::read(source_dir)?;
        let cache = compiled_copy(cache_dir, &sources.fingerprint());
        let lexicon_bytes: usize = sources.lexicon.iter().map(|(_, b)| b.len()).sum();
        Ok(format!(
            "IPADIC sources in {} ({} lexicon files, {} MB); {}",
            source_dir.display(),
            sources.lexicon.len(),
            lexicon_bytes / 1_000_000,
            if cache.is_file() {
                format!("compiled copy {}", cache.display())
            } else {
                format!(
                    "compiled on first start (a few seconds) into {}",
                    cache_dir.display()
                )
            }
        ))
    }

    /// Where the sources are.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The name the words tokenizer is registered under: it changes with the sources and
    /// with [`WORDS_VERSION`], so an index analyzed otherwise is a schema mismatch.
    pub fn words_tokenizer_name(&self) -> String {
        format!("ja_words_v{WORDS_VERSION}_{}", self.fingerprint)
    }

    /// The name of the word-bounded bigram tokenizer (see
    /// [`Dictionary::words_tokenizer_name`]).
    pub fn word_bigrams_tokenizer_name(&self) -> String {
        format!("ja_word_bigrams_v{WORDS_VERSION}_{}", self.fingerprint)
    }

    /// What identifies this analysis (the word keys' version and the sources' hash): an
    /// index records it and is refused when read or written with another.
    pub fn analysis_id(&self) -> String {
        format!("ipadic_v{WORDS_VERSION}_{}", self.fingerprint)
    }

    /// The byte spans of `text` where the words of the search word `term` occur in a row
    /// (by their keys, so 見積もり for 見積り), when `term` is made of whole words
    /// ([`Dictionary::whole_words`]); none otherwise. For highlights.
    pub fn word_spans(&self, text: &str, term: &str) -> Vec<(usize, usize)> {
        let Some(whole) = self.whole_words(term) else {
            return Vec::new();
        };
        let words = self.words(text);
        words
            .windows(whole.len())
            .filter(|run| run.iter().zip(&whole).all(|(w, t)| w.key == t.key))
            .map(|run| (run[0].start, run[run.len() - 1].end))
            .collect()
    }

    /// [`Dictionary::word_spans`] of every word and phrase that a search text `text` looks
    /// for (exclusions left out) in `memo`.
    pub fn query_word_spans(&self, memo: &str, text: Option<&TextQuery>) -> Vec<(usize, usize)> {
        text.map_or_else(Vec::new, |query| {
            query
                .positive_terms()
                .flat_map(|t| self.word_spans(memo, &t.text))
                .collect()
        })
    }

    /// The word-bounded bigrams of `text`: the bigrams of each word (see [`word_bigrams`]),
    /// word by word, words without any left out.
    pub fn bigrams_by_word(&self, text: &str) -> Vec<Vec<String>> {
        self.words(text)
            .iter()
            .map(|w| word_bigrams(&w.folded))
            .filter(|b| !b.is_empty())
            .collect()
    }

    /// The words of `text` with their keys (see the module docs); symbols, punctuation and
    /// honorific prefixes are left out.
    pub fn words(&self, text: &str) -> Vec<Word> {
        // MeCab reads NFKC text (half-width ｱﾎﾟ is アポ to the dictionary), not the folded
        // text: hiragana particles turned katakana would not be particles any more.
        let mut nfkc = String::with_capacity(text.len());
        // The original byte offset of each byte of `nfkc` (NFKC works per character here
        // closely enough for a span: the span only serves highlights and debugging).
        let mut origin = Vec::with_capacity(text.len() + 1);
        // A character and the (half-width) voiced marks after it normalize together (ﾎﾟ
        // is ポ), as in the bigram analysis.
        let mut chars = text.char_indices().peekable();
        let mut cluster = String::new();
        while let Some((at, c)) = chars.next() {
            cluster.clear();
            cluster.push(c);
            while let Some(&(_, mark)) = chars.peek() {
                let voiced = matches!(mark, '\u{FF9E}' | '\u{FF9F}' | '\u{3099}' | '\u{309A}');
                if !(voiced || unicode_normalization::char::is_combining_mark(mark)) {
                    break;
                }
                cluster.push(mark);
                chars.next();
            }
            let before = nfkc.len();
            nfkc.extend(cluster.nfkc());
            origin.resize(origin.len() + (nfkc.len() - before), at);
        }
        origin.push(text.len());
        if nfkc.trim().is_empty() {
            return Vec::new();
        }
        let mut worker = self.tokenizer.new_worker();
        worker.reset_sentence(&nfkc);
        worker.tokenize();
        let mut words = Vec::with_capacity(worker.num_tokens());
        for i in 0..worker.num_tokens() {
            let token = worker.token(i);
            let range = token.range_byte();
            let known = token.lex_type() != LexType::Unknown;
            let open_ended = is_open_ended(token.feature());
            if let Some(key) = word_key(token.surface(), token.feature(), known) {
                words.push(Word {
                    key,
                    folded: normalize(token.surface()),
                    start: origin.get(range.start).copied().unwrap_or(text.len()),
                    end: origin
                        .get(range.end)
                        .copied()
                        .unwrap_or(text.len())
                        .max(origin.get(range.start).copied().unwrap_or(text.len())),
                    known,
                    open_ended,
                });
            }
        }
        words
    }

    /// The words of a search word when it should match whole words only (see the module
    /// docs): it holds a kanji and every word of it is in the dictionary. `None` when the
    /// bigram field should answer it.
    ///
    /// A word with an iteration mark or the repeated kanji it stands for (各々, 先先月) is
    /// left to the bigrams: the dictionary splits it by its context (各々 alone is 各 / 々,
    /// in 各々の one word; 先先月 and 先々月 differently), so its words would not meet the
    /// memo's.
    pub fn whole_words(&self, term: &str) -> Option<Vec<Word>> {
        if !term.chars().any(is_han) {
            return None;
        }
        let folded: Vec<char> = normalize(term).chars().collect();
        if term.contains('々') || folded.windows(2).any(|p| p[0] == p[1] && is_han(p[0])) {
            return None;
        }
        let words = self.words(term);
        (!words.is_empty() && words.iter().all(|w| w.known)).then_some(words)
    }
}

/// The key of a word (see the module docs); `None` for a word the words field leaves out.
fn word_key(surface: &str, feature: &str, known: bool) -> Option<String> {
    if !surface.chars().any(tsunagu_domain::text::is_token_char) {
        return None;
    }
    let fields: Vec<&str> = feature.split(',').collect();
    let pos = fields.first().copied().unwrap_or("*");
    if pos == "記号" && !surface.chars().any(char::is_alphanumeric) {
        return None;
    }
    if pos == "接頭詞" && matches!(surface, "お" | "ご" | "御") {
        return None;
    }
    let base = fields
        .get(6)
        .copied()
        .filter(|b| known && *b != "*" && !b.is_empty());
    let conjugated = matches!(pos, "動詞" | "形容詞" | "助動詞");
    let lemma = match (conjugated, base) {
        (true, Some(base)) => base,
        _ => surface,
    };
    let kanji: String = lemma.chars().filter(|&c| is_han(c)).collect();
    if kanji.chars().count() >= 2 {
        return Some(normalize(&kanji));
    }
    Some(normalize(lemma))
}

/// Whether the word of an IPADIC `feature` conjugates (verb, adjective, auxiliary) or is a
/// suffix (名詞,接尾: 取り, 都, 区).
fn is_open_ended(feature: &str) -> bool {
    let mut fields = feature.split(',');
    matches!(
        (fields.next(), fields.next()),
        (Some("動詞" | "形容詞" | "助動詞"), _) | (Some("名詞"), Some("接尾"))
    )
}

/// The source files of a dictionary, read.
struct Sources {
    /// `(file name, bytes)` of the `*.csv` files, by name.
    lexicon: Vec<(String, Vec<u8>)>,
    /// `matrix.def`, `char.def`, `unk.def`.
    definitions: [Vec<u8>; 3],
}

impl Sources {
    fn read(dir: &Path) -> Result<Self, DictionaryError> {
        let not_a_dictionary = |missing: String| DictionaryError::NotADictionary {
            path: dir.to_path_buf(),
            missing,
        };
        if !dir.is_dir() {
            return Err(not_a_dictionary("no such directory".into()));
        }
        let io = |context: String| move |source| DictionaryError::Io { context, source };
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map_err(io(format!("listing {}", dir.display())))?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".csv"))
            .collect();
        names.sort();
        if names.is_empty() {
            return Err(not_a_dictionary("no *.csv lexicon files".into()));
        }
        let mut definitions: [Vec<u8>; 3] = Default::default();
        for (slot, name) in definitions.iter_mut().zip(DEFINITION_FILES) {
            let path = dir.join(name);
            if !path.is_file() {
                return Err(not_a_dictionary(format!("{name} is missing")));
            }
            *slot = std::fs::read(&path).map_err(io(format!("reading {}", path.display())))?;
        }
        let lexicon = names
            .into_iter()
            .map(|name| {
                let path = dir.join(&name);
                let bytes =
                    std::fs::read(&path).map_err(io(format!("reading {}", path.display())))?;
                Ok((name, bytes))
            })
            .collect::<Result<_, DictionaryError>>()?;
        Ok(Self {
            lexicon,
            definitions,
        })
    }

    /// A hash of every source file's name and content (16 hex digits).
    fn fingerprint(&self) -> String {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        hasher.update(&WORDS_VERSION.to_le_bytes());
        let named = self.lexicon.iter().map(|(n, b)| (n.as_str(), b)).chain(
            DEFINITION_FILES
                .iter()
                .copied()
                .zip(self.definitions.iter()),
        );
        for (name, bytes) in named {
            hasher.update(name.as_bytes());
            hasher.update(&(bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        }
        format!("{:016x}", hasher.digest())
    }

    /// Compiles the sources (EUC-JP, IPADIC's encoding, or UTF-8) with vibrato.
    fn compile(&self, dir: &Path) -> Result<vibrato::Dictionary, DictionaryError> {
        let mut lexicon = String::new();
        for (_, bytes) in &self.lexicon {
            lexicon.push_str(&to_utf8(bytes));
            if !lexicon.ends_with('\n') {
                lexicon.push('\n');
            }
        }
        let [matrix, chars, unknown] = &self.definitions;
        vibrato::SystemDictionaryBuilder::from_readers(
            lexicon.as_bytes(),
            to_utf8(matrix).as_bytes(),
            to_utf8(chars).as_bytes(),
            to_utf8(unknown).as_bytes(),
        )
        .map_err(|e| DictionaryError::Invalid {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })
    }
}

/// `bytes` as text: UTF-8 when they are, else decoded as EUC-JP.
fn to_utf8(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => encoding_rs::EUC_JP.decode_without_bom_handling(bytes).0,
    }
}

/// Where the compiled copy of the sources with `fingerprint` is kept in `cache_dir`.
fn compiled_copy(cache_dir: &Path, fingerprint: &str) -> PathBuf {
    cache_dir.join(format!("ipadic-{fingerprint}.vibrato"))
}

/// The compiled dictionary at `path`, if there is a readable one.
fn read_cached(path: &Path) -> Option<vibrato::Dictionary> {
    let file = std::fs::File::open(path).ok()?;
    match vibrato::Dictionary::read(BufReader::new(file)) {
        Ok(dict) => Some(dict),
        Err(e) => {
            tracing::warn!(cache = %path.display(), error = %e, "unreadable compiled dictionary; compiling again");
            None
        }
    }
}

/// Writes the compiled dictionary to `path` through a temporary file, so that a reader
/// never sees half of one.
fn write_cache(dict: &vibrato::Dictionary, dir: &Path, path: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let partial = path.with_extension(format!("partial-{}", std::process::id()));
    let result = (|| {
        let mut out = BufWriter::new(std::fs::File::create(&partial)?);
        dict.write(&mut out).map_err(std::io::Error::other)?;
        out.flush()?;
        out.get_ref().sync_all()?;
        std::fs::rename(&partial, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// The CJK bigrams of a folded word (none for a word of one character or with no CJK).
pub fn word_bigrams(folded: &str) -> Vec<String> {
    let chars: Vec<char> = folded.chars().collect();
    if !chars.iter().any(|&c| is_cjk(c)) {
        return Vec::new();
    }
    chars.windows(2).map(|w| w.iter().collect()).collect()
}

/// The environment variable naming the IPADIC sources for the tests that need them
/// (`.ci/run` sets it after installing `mecab-ipadic`); unset, those tests are skipped.
pub const TEST_DICTIONARY_ENV: &str = "TSUNAGU_TEST_IPADIC_DIR";

/// The dictionary of the tests, compiled once per test process (cached under the
/// system's temporary directory); `None`, after printing "skipped", without
/// [`TEST_DICTIONARY_ENV`].
pub fn test_dictionary(test: &str) -> Option<Arc<Dictionary>> {
    static LOADED: std::sync::OnceLock<Option<Arc<Dictionary>>> = std::sync::OnceLock::new();
    let Some(dir) = std::env::var_os(TEST_DICTIONARY_ENV) else {
        eprintln!("{test}: skipped ({TEST_DICTIONARY_ENV} is not set)");
        return None;
    };
    LOADED
        .get_or_init(|| {
            let cache = std::env::temp_dir().join("tsunagu-test-dictionaries");
            match Dictionary::load(Path::new(&dir), &cache) {
                Ok(dict) => Some(Arc::new(dict)),
                Err(e) => panic!("{TEST_DICTIONARY_ENV}: {e}"),
            }
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(dict: &Dictionary, text: &str) -> Vec<String> {
        dict.words(text).into_iter().map(|w| w.key).collect()
    }

    #[test]
    fn keys_of_ipadic_words() {
        let Some(dict) = test_dictionary("keys_of_ipadic_words") else {
            return;
        };
        assert_eq!(keys(&dict, "東京都港区"), ["東京", "都", "港", "区"]);
        // Okurigana variants meet; the honorific prefix goes.
        for variant in ["見積もり", "見積り", "お見積り", "見積"] {
            assert_eq!(keys(&dict, variant), ["見積"], "{variant}");
        }
        for variant in ["打ち合わせ", "打合せ", "打ち合せ"] {
            assert_eq!(keys(&dict, variant), ["打合"], "{variant}");
        }
        // A conjugated verb by its base form: 打ち合わせ(る) + た.
        assert_eq!(keys(&dict, "打ち合わせた")[0], "打合");
        // Homophones stay apart; width and kana fold.
        assert_ne!(keys(&dict, "企画"), keys(&dict, "規格"));
        assert_eq!(keys(&dict, "ｱﾎﾟ獲得"), keys(&dict, "アポ獲得"));
        assert_eq!(keys(&dict, "Zoomで、商談!"), ["zoom", "デ", "商談"]);
        assert!(dict.words(" 、。 ").is_empty());
        assert!(dict.whole_words("京都").is_some());
        assert!(dict.whole_words("ミーティング").is_none(), "no kanji");
        assert_eq!(
            dict.words_tokenizer_name(),
            test_dictionary("again")
                .map(|d| d.words_tokenizer_name())
                .unwrap_or_default()
        );
    }

    #[test]
    fn a_directory_without_sources_names_the_package() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err = Dictionary::load(dir.path(), dir.path()).expect_err("no sources");
        let message = err.to_string();
        assert!(
            message.contains(&dir.path().display().to_string()),
            "{message}"
        );
        assert!(
            message.contains("apt-get install mecab-ipadic"),
            "{message}"
        );
        assert!(word_bigrams("ab").is_empty());
        assert_eq!(word_bigrams("見積書"), ["見積", "積書"]);
    }

    #[test]
    fn word_spans_find_the_variants_as_written() {
        let Some(dict) = test_dictionary("word_spans_find_the_variants_as_written") else {
            return;
        };
        let memo = "お見積もりを送付、東京都で打合せ";
        let at = |s: &str| memo.find(s).map(|i| (i, i + s.len())).expect(s);
        assert_eq!(dict.word_spans(memo, "見積り"), [at("見積もり")]);
        assert_eq!(dict.word_spans(memo, "打ち合わせ"), [at("打合せ")]);
        assert!(dict.word_spans(memo, "京都").is_empty());
        assert!(
            dict.word_spans(memo, "ミーティング").is_empty(),
            "not whole words"
        );
        let query = TextQuery::parse("見積り -東京").expect("parses");
        assert_eq!(
            dict.query_word_spans(memo, query.as_ref()),
            [at("見積もり")]
        );
    }

    #[test]
    fn bigrams_by_word_stay_inside_a_word() {
        let Some(dict) = test_dictionary("bigrams_by_word_stay_inside_a_word") else {
            return;
        };
        // 東京 / 都 / 港 / 区 / の / 京都大学: 京都 only inside 京都大学, no bigram across
        // two words (都港, 港区), none for a word of one character.
        let words = dict.bigrams_by_word("東京都港区の京都大学");
        assert_eq!(words[0], ["東京"]);
        let all: Vec<&String> = words.iter().flatten().collect();
        assert_eq!(
            all.iter().filter(|b| b.as_str() == "京都").count(),
            1,
            "{words:?}"
        );
        assert!(
            !all.iter().any(|b| ["都港", "港区"].contains(&b.as_str())),
            "{words:?}"
        );
    }
}
