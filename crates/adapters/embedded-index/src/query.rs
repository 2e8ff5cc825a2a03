//! Searching and aggregating activities: [`ActivityQuery`] (filters on several axes plus
//! memo full text), [`SearchPage`] with stable cursor pagination, and [`GroupBy`]
//! aggregations. Both run on fast fields through custom collectors, so results are exact
//! for any number of matches.

use crate::error::IndexError;
use crate::exclusion::Excluded;
use crate::index::IndexView;
use crate::morphology::{word_bigrams, Word};
use crate::schema::{names, to_tantivy_date, WordFields, KIND_ACTIVITY};
use crate::tokenizer::{analyze, is_cjk};
use chrono::{DateTime, Datelike, Utc};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::ops::Bound;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::query::{
    BooleanQuery, BoostQuery, ConstScoreQuery, Occur, PhrasePrefixQuery, PhraseQuery, Query,
    RangeQuery, RegexQuery, TermQuery, TermSetQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal, SegmentReader, Term};

use tsunagu_domain::text_query::{Clause as TextClause, Term as SearchTerm, TextQuery};

/// A clause of a boolean query.
pub(crate) type Clause = (Occur, Box<dyn Query>);

pub use tsunagu_domain::search::{
    ActivityQuery, Bucket, Cursor, GroupBy, Hit, SearchPage, SortOrder, TimeZone, DEFAULT_LIMIT,
    MAX_LIMIT,
};

/// The keyword fast field a grouping counts, `None` for the calendar groupings.
fn field_name(by: GroupBy) -> Option<&'static str> {
    match by {
        GroupBy::Action => Some(names::ACTION),
        GroupBy::User => Some(names::USER_ID),
        GroupBy::Deal => Some(names::DEAL_ID),
        GroupBy::Company => Some(names::COMPANY_ID),
        GroupBy::Result => Some(names::RESULT),
        GroupBy::Tag => Some(names::TAGS),
        GroupBy::Day | GroupBy::Week | GroupBy::Month => None,
    }
}

fn sort_key(cursor: Cursor) -> SortKey {
    (
        // The score came from an f32 of this index: the conversion is exact.
        Reverse(cursor.score().map_or(0, |s| score_bits(s as Score))),
        Reverse(cursor.occurred_at_us()),
        cursor.sort_hash(),
    )
}

/// An order-preserving integer of a score (BM25 scores are finite and never negative,
/// and such floats order as their bits).
fn score_bits(score: Score) -> u32 {
    score.max(0.0).to_bits()
}

/// The memo text of `q`, parsed with its synonyms applied; text the parser refuses is
/// [`IndexError::InvalidQuery`] (the service refuses it before, naming the problem).
fn memo_query(q: &ActivityQuery) -> Result<Option<TextQuery>, IndexError> {
    q.memo_query()
        .map_err(|e| IndexError::InvalidQuery(e.to_string()))
}

/// Result order: the score descending (relevance order; 0 for all in the newest-first
/// order), `occurred_at` descending, then the key's stable hash ascending, so that
/// activities at the same instant still have one fixed order for the cursor.
type SortKey = (Reverse<u32>, Reverse<i64>, u64);

impl IndexView {
    pub(crate) fn search(&self, q: &ActivityQuery) -> Result<SearchPage, IndexError> {
        if q.limit > MAX_LIMIT {
            return Err(IndexError::InvalidQuery(format!(
                "limit {} is above the maximum of {MAX_LIMIT}; page with the cursor instead",
                q.limit
            )));
        }
        q.check_cursor().map_err(IndexError::BadCursor)?;
        let memo = memo_query(q)?;
        let query = self.build_query(q)?;
        let searcher = self.searcher()?;
        let scored = q.sort == SortOrder::Relevance;
        let page = collect_page(&searcher, &query, q.limit, q.cursor, scored)?;
        let mut hits = Vec::with_capacity(page.addresses.len());
        for address in &page.addresses {
            // A hit is always an activity (the query requires kind = activity).
            if let Some((key, version, activity)) = self.load(&searcher, *address)? {
                let words = match &self.dictionary {
                    Some(dictionary) => dictionary.query_word_spans(&activity.memo, memo.as_ref()),
                    None => Vec::new(),
                };
                hits.push(Hit::with_word_spans(
                    key,
                    version,
                    activity,
                    memo.as_ref(),
                    words,
                ));
            }
        }
        Ok(SearchPage {
            hits,
            total: page.total,
            next_cursor: page.next_cursor,
        })
    }

    pub(crate) fn aggregate(
        &self,
        q: &ActivityQuery,
        by: GroupBy,
        zone: TimeZone,
    ) -> Result<Vec<Bucket>, IndexError> {
        let query = self.build_query(q)?;
        let searcher = self.searcher()?;
        let counts = searcher
            .search(&query, &GroupCollector::by(by, zone))
            .map_err(IndexError::tantivy("aggregating the index"))?;
        let mut buckets: Vec<Bucket> = counts
            .into_iter()
            .map(|(key, count)| Bucket { key, count })
            .collect();
        match by {
            // "YYYY-MM-DD" and "YYYY-MM" sort as text in time order (years 0000-9999).
            GroupBy::Day | GroupBy::Week | GroupBy::Month => {
                buckets.sort_by(|a, b| a.key.cmp(&b.key))
            }
            _ => buckets.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key))),
        }
        Ok(buckets)
    }

    /// The tantivy query of an [`ActivityQuery`]: a conjunction of one clause per axis.
    pub(crate) fn build_query(&self, q: &ActivityQuery) -> Result<BooleanQuery, IndexError> {
        let f = &self.fields;
        let mut must: Vec<Box<dyn Query>> = vec![term_query(f.kind, KIND_ACTIVITY)];
        if let Some(tenant) = &q.tenant_id {
            must.push(term_query(f.tenant_id, tenant));
        }
        let actions: Vec<&str> = q.actions.iter().map(|a| a.as_str()).collect();
        for (field, values) in [
            (
                f.deal_id,
                q.deal_ids.iter().map(String::as_str).collect::<Vec<_>>(),
            ),
            (
                f.company_id,
                q.company_ids.iter().map(String::as_str).collect(),
            ),
            (f.user_id, q.user_ids.iter().map(String::as_str).collect()),
            (f.action, actions),
            (f.result, q.results.iter().map(String::as_str).collect()),
        ] {
            if let Some(clause) = any_of(field, &values) {
                must.push(clause);
            }
        }
        for tag in &q.tags_all {
            must.push(term_query(f.tags, tag));
        }
        if q.occurred_from.is_some() || q.occurred_to.is_some() {
            let bound = |t: Option<DateTime<Utc>>, inclusive: bool| match t {
                None => Bound::Unbounded,
                Some(t) => {
                    let term = Term::from_field_date(f.occurred_at, to_tantivy_date(t));
                    if inclusive {
                        Bound::Included(term)
                    } else {
                        Bound::Excluded(term)
                    }
                }
            };
            // On a fast field the range is evaluated on the fast column, at microsecond
            // precision (the inverted index keeps dates only to the second).
            must.push(Box::new(RangeQuery::new(
                bound(q.occurred_from, true),
                bound(q.occurred_to, false),
            )));
        }
        // Filters score nothing: in the relevance order only the text counts.
        let mut clauses: Vec<Clause> = must
            .into_iter()
            .map(|q| {
                (
                    Occur::Must,
                    Box::new(ConstScoreQuery::new(q, 0.0)) as Box<dyn Query>,
                )
            })
            .collect();
        if let Some(memo) = memo_query(q)? {
            clauses.extend(self.parsed_text_clauses(
                self.fields.memo,
                self.fields.memo_words,
                &memo,
            )?);
        }
        Ok(BooleanQuery::new(clauses))
    }

    /// The clauses of a memo or title query in the search syntax
    /// ([`TextQuery`]): each condition a `Must`, an exclusion a `MustNot`, `A OR B` a
    /// union. Text the parser refuses is [`IndexError::InvalidQuery`] (the service
    /// refuses it before, naming the problem to the user).
    pub(crate) fn text_clauses(
        &self,
        field: Field,
        text: Option<&str>,
    ) -> Result<Vec<Clause>, IndexError> {
        let Some(text) = text else {
            return Ok(Vec::new());
        };
        match TextQuery::parse(text).map_err(|e| IndexError::InvalidQuery(e.to_string()))? {
            Some(parsed) => self.parsed_text_clauses(field, None, &parsed),
            None => Ok(Vec::new()),
        }
    }

    /// [`IndexView::text_clauses`] of a query already parsed (the memo query with the
    /// tenant's synonyms applied), with the words fields of `field` when it has them.
    pub(crate) fn parsed_text_clauses(
        &self,
        field: Field,
        words: Option<WordFields>,
        parsed: &TextQuery,
    ) -> Result<Vec<Clause>, IndexError> {
        let mut clauses = Vec::new();
        for clause in parsed.clauses() {
            match clause {
                TextClause::AnyOf(terms) => {
                    let mut any = terms
                        .iter()
                        .map(|t| self.term_query_on(field, words, t))
                        .collect::<Result<Vec<_>, _>>()?;
                    let query = match any.len() {
                        1 => any.remove(0),
                        _ => Box::new(BooleanQuery::union(any)),
                    };
                    clauses.push((Occur::Must, query));
                }
                TextClause::Not(term) => {
                    let excluded = Excluded(self.term_query_on(field, words, term)?);
                    clauses.push((Occur::MustNot, Box::new(excluded)));
                }
            }
        }
        Ok(clauses)
    }

    /// The query of one word or phrase on a Japanese text field (memo, title): a phrase
    /// of its tokens, a term for one token, and for one CJK character that character
    /// alone or inside a bigram. With a dictionary, a search word made of whole words
    /// matches whole words only (see [`crate::morphology`]).
    fn term_query_on(
        &self,
        field: Field,
        words: Option<WordFields>,
        term: &SearchTerm,
    ) -> Result<Box<dyn Query>, IndexError> {
        if let (Some(words), Some(dictionary)) = (words, &self.dictionary) {
            if let Some(whole) = dictionary.whole_words(&term.text) {
                if whole
                    .iter()
                    .map(|w| w.folded.chars().count())
                    .sum::<usize>()
                    >= 2
                {
                    let on_words = whole_words_query(words, &whole);
                    if !whole.iter().any(|w| w.open_ended) {
                        return Ok(on_words);
                    }
                    // A verb, adjective or suffix in a search word is often the start of
                    // a longer word in the memo (取り in 取り直し), which the dictionary
                    // splits otherwise: the bigrams find it too.
                    let on_bigrams = self.bigram_term_query(field, term)?;
                    return Ok(Box::new(BooleanQuery::union(vec![on_words, on_bigrams])));
                }
            }
        }
        self.bigram_term_query(field, term)
    }

    /// The query of one word or phrase on the bigram field of `field`.
    fn bigram_term_query(
        &self,
        field: Field,
        term: &SearchTerm,
    ) -> Result<Box<dyn Query>, IndexError> {
        let tokens = analyze(&term.text);
        let prefix = term.prefix_last();
        let bad = |e: tantivy::TantivyError| {
            IndexError::InvalidQuery(format!("search word {:?}: {e}", term.text))
        };
        match tokens.as_slice() {
            // The parser lets no such term through; never drop a condition silently.
            [] => Err(IndexError::InvalidQuery(format!(
                "{:?} has nothing to search for",
                term.text
            ))),
            [only] => {
                let mut chars = only.text.chars();
                match (chars.next(), chars.next()) {
                    // One CJK character: memos index bigrams, so look for it alone, at the
                    // start of a bigram or at its end (the last character of a run).
                    (Some(c), None) if is_cjk(c) => {
                        let regex = RegexQuery::from_pattern(&format!("{c}|{c}.|.{c}"), field)
                            .map_err(bad)?;
                        Ok(Box::new(regex))
                    }
                    // A Latin word: the words starting with it (letters only, no regex
                    // operator among them).
                    _ if prefix => {
                        let regex = RegexQuery::from_pattern(&format!("{}.*", only.text), field)
                            .map_err(bad)?;
                        Ok(Box::new(regex))
                    }
                    _ => Ok(term_query_with(
                        field,
                        &only.text,
                        IndexRecordOption::WithFreqs,
                    )),
                }
            }
            many => {
                let first = many[0].position;
                let terms = many
                    .iter()
                    .map(|t| (t.position - first, Term::from_field_text(field, &t.text)))
                    .collect();
                if prefix {
                    let mut query = PhrasePrefixQuery::new_with_offset(terms);
                    // As OpenSearch's match_phrase_prefix.
                    query.set_max_expansions(PREFIX_MAX_EXPANSIONS);
                    Ok(Box::new(query))
                } else {
                    Ok(Box::new(PhraseQuery::new_with_offset(terms)))
                }
            }
        }
    }
}

/// How much more a match of whole words counts than a match inside a longer word.
const WHOLE_WORDS_BOOST: Score = 2.0;

/// The query of a search word made of whole dictionary words: its word keys in a row on
/// the words field, or its bigrams in a row inside one word (see
/// [`crate::morphology`]).
fn whole_words_query(fields: WordFields, words: &[Word]) -> Box<dyn Query> {
    let in_a_row = |field: Field, texts: Vec<String>| -> Option<Box<dyn Query>> {
        match texts.as_slice() {
            [] => None,
            [one] => Some(term_query_with(field, one, IndexRecordOption::WithFreqs)),
            _ => Some(Box::new(PhraseQuery::new(
                texts
                    .iter()
                    .map(|t| Term::from_field_text(field, t))
                    .collect(),
            ))),
        }
    };
    let keys = words.iter().map(|w| w.key.clone()).collect();
    let folded: String = words.iter().map(|w| w.folded.as_str()).collect();
    let mut any: Vec<Clause> = Vec::new();
    if let Some(whole) = in_a_row(fields.words, keys) {
        any.push((
            Occur::Should,
            Box::new(BoostQuery::new(whole, WHOLE_WORDS_BOOST)),
        ));
    }
    if let Some(inside) = in_a_row(fields.bigrams, word_bigrams(&folded)) {
        any.push((Occur::Should, inside));
    }
    Box::new(BooleanQuery::new(any))
}

/// How many words a phrase's last prefix expands to (OpenSearch's default for
/// `match_phrase_prefix`).
const PREFIX_MAX_EXPANSIONS: u32 = 50;

pub(crate) fn term_query(field: Field, value: &str) -> Box<dyn Query> {
    term_query_with(field, value, IndexRecordOption::Basic)
}

fn term_query_with(field: Field, value: &str, option: IndexRecordOption) -> Box<dyn Query> {
    Box::new(TermQuery::new(Term::from_field_text(field, value), option))
}

/// A clause matching any of `values`; `None` when there are none (the axis is open).
pub(crate) fn any_of(field: Field, values: &[&str]) -> Option<Box<dyn Query>> {
    match values {
        [] => None,
        [one] => Some(term_query(field, one)),
        many => Some(Box::new(TermSetQuery::new(
            many.iter().map(|v| Term::from_field_text(field, v)),
        ))),
    }
}

// ---------------------------------------------------------------------------------------
// Page collector: total count plus the first `limit` hits after the cursor, in SortKey order.

/// One page of any kind of document, in [`SortKey`] order.
pub(crate) struct CollectedPage {
    pub addresses: Vec<DocAddress>,
    pub total: u64,
    pub next_cursor: Option<Cursor>,
}

/// Runs `query` and keeps the first `limit` documents after `cursor`, by score first when
/// `scored`.
pub(crate) fn collect_page(
    searcher: &tantivy::Searcher,
    query: &dyn Query,
    limit: usize,
    cursor: Option<Cursor>,
    scored: bool,
) -> Result<CollectedPage, IndexError> {
    let collector = PageCollector {
        limit,
        after: cursor.map(sort_key),
        scored,
    };
    let page = searcher
        .search(query, &collector)
        .map_err(IndexError::tantivy("searching the index"))?;
    let next_cursor = match page.top.last() {
        Some(&((Reverse(bits), Reverse(occurred_at_us), sort_hash), _))
            if page.after_cursor > limit as u64 =>
        {
            Some(if scored {
                Cursor::scored(f64::from(f32::from_bits(bits)), occurred_at_us, sort_hash)
            } else {
                Cursor::new(occurred_at_us, sort_hash)
            })
        }
        _ => None,
    };
    Ok(CollectedPage {
        addresses: page.top.into_iter().map(|(_, a)| a).collect(),
        total: page.total,
        next_cursor,
    })
}

pub(crate) struct PageCollector {
    limit: usize,
    after: Option<SortKey>,
    /// Order by score first (and compute scores).
    scored: bool,
}

pub(crate) struct PageFruit {
    total: u64,
    /// Matches strictly after the cursor (all matches without one).
    after_cursor: u64,
    /// The first `limit` of those, sorted.
    top: Vec<(SortKey, DocAddress)>,
}

pub(crate) struct PageSegmentCollector {
    segment_ord: SegmentOrdinal,
    occurred_at: Option<Column<tantivy::DateTime>>,
    sort_hash: Option<Column<u64>>,
    limit: usize,
    after: Option<SortKey>,
    scored: bool,
    total: u64,
    after_cursor: u64,
    /// Max-heap: the worst of the kept hits is on top, ready to be replaced.
    heap: BinaryHeap<(SortKey, DocAddress)>,
}

impl Collector for PageCollector {
    type Fruit = PageFruit;
    type Child = PageSegmentCollector;

    fn for_segment(
        &self,
        segment_ord: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<PageSegmentCollector> {
        let fast = segment.fast_fields();
        Ok(PageSegmentCollector {
            segment_ord,
            occurred_at: fast.column_opt(names::OCCURRED_AT)?,
            sort_hash: fast.column_opt(names::SORT_HASH)?,
            limit: self.limit,
            after: self.after,
            scored: self.scored,
            total: 0,
            after_cursor: 0,
            heap: BinaryHeap::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        self.scored
    }

    fn merge_fruits(&self, fruits: Vec<PageFruit>) -> tantivy::Result<PageFruit> {
        let mut merged = PageFruit {
            total: 0,
            after_cursor: 0,
            top: Vec::new(),
        };
        for fruit in fruits {
            merged.total += fruit.total;
            merged.after_cursor += fruit.after_cursor;
            merged.top.extend(fruit.top);
        }
        merged.top.sort_unstable();
        merged.top.truncate(self.limit);
        Ok(merged)
    }
}

impl SegmentCollector for PageSegmentCollector {
    type Fruit = PageFruit;

    fn collect(&mut self, doc: DocId, score: Score) {
        self.total += 1;
        let occurred_at_us = self
            .occurred_at
            .as_ref()
            .and_then(|c| c.first(doc))
            .map_or(i64::MIN, |t| t.into_timestamp_micros());
        let sort_hash = self
            .sort_hash
            .as_ref()
            .and_then(|c| c.first(doc))
            .unwrap_or(0);
        let bits = if self.scored { score_bits(score) } else { 0 };
        let key = (Reverse(bits), Reverse(occurred_at_us), sort_hash);
        if self.after.is_some_and(|after| key <= after) {
            return;
        }
        self.after_cursor += 1;
        if self.limit == 0 {
            return;
        }
        let entry = (key, DocAddress::new(self.segment_ord, doc));
        if self.heap.len() < self.limit {
            self.heap.push(entry);
        } else if self.heap.peek().is_some_and(|worst| entry < *worst) {
            self.heap.pop();
            self.heap.push(entry);
        }
    }

    fn harvest(self) -> PageFruit {
        PageFruit {
            total: self.total,
            after_cursor: self.after_cursor,
            top: self.heap.into_vec(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Group collector: exact counts per keyword (by term ordinal, resolved once per segment)
// or per calendar period of `occurred_at` in a time zone.

pub(crate) struct GroupCollector {
    /// The keyword fast field counted; `None` counts the local dates of `occurred_at`.
    field: Option<&'static str>,
    /// For the calendar groupings: the period a local date falls in, and the zone.
    calendar: (GroupBy, TimeZone),
}

impl GroupCollector {
    fn by(by: GroupBy, zone: TimeZone) -> Self {
        Self {
            field: field_name(by),
            calendar: (by, zone),
        }
    }

    /// Counts per value of a keyword fast field.
    pub(crate) fn keyword(field: &'static str) -> Self {
        Self {
            field: Some(field),
            calendar: (GroupBy::Day, TimeZone::UTC),
        }
    }
}

pub(crate) enum GroupSegmentCollector {
    Keyword {
        column: Option<StrColumn>,
        /// Count per term ordinal of the segment's dictionary.
        counts: Vec<u64>,
    },
    Day {
        column: Option<Column<tantivy::DateTime>>,
        zone: TimeZone,
        /// Count per local date (days from the common era).
        counts: HashMap<i32, u64>,
    },
}

pub(crate) enum GroupFruit {
    Keyword {
        column: Option<StrColumn>,
        counts: Vec<u64>,
    },
    Day(HashMap<i32, u64>),
}

impl Collector for GroupCollector {
    type Fruit = HashMap<String, u64>;
    type Child = GroupSegmentCollector;

    fn for_segment(
        &self,
        _segment_ord: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<GroupSegmentCollector> {
        let fast = segment.fast_fields();
        Ok(match self.field {
            Some(name) => {
                let column = fast.str(name)?;
                let terms = column.as_ref().map_or(0, |c| c.num_terms());
                GroupSegmentCollector::Keyword {
                    column,
                    counts: vec![0; terms],
                }
            }
            None => GroupSegmentCollector::Day {
                column: fast.column_opt(names::OCCURRED_AT)?,
                zone: self.calendar.1,
                counts: HashMap::new(),
            },
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<GroupFruit>) -> tantivy::Result<HashMap<String, u64>> {
        let mut merged: HashMap<String, u64> = HashMap::new();
        let mut text = String::new();
        for fruit in fruits {
            match fruit {
                GroupFruit::Keyword { column, counts } => {
                    let Some(column) = column else { continue };
                    for (ord, count) in counts.into_iter().enumerate() {
                        if count == 0 {
                            continue;
                        }
                        if column.ord_to_str(ord as u64, &mut text)? {
                            *merged.entry(text.clone()).or_default() += count;
                        }
                    }
                }
                GroupFruit::Day(counts) => {
                    let by = self.calendar.0;
                    for (day, count) in counts {
                        *merged.entry(period_label(by, day)).or_default() += count;
                    }
                }
            }
        }
        Ok(merged)
    }
}

/// The key of the day, week or month of a local date (days from the common era).
fn period_label(by: GroupBy, day: i32) -> String {
    chrono::NaiveDate::from_num_days_from_ce_opt(day)
        .and_then(|date| by.calendar_key_of(date))
        .unwrap_or_else(|| format!("day {day}"))
}

impl SegmentCollector for GroupSegmentCollector {
    type Fruit = GroupFruit;

    fn collect(&mut self, doc: DocId, _score: Score) {
        match self {
            GroupSegmentCollector::Keyword {
                column: Some(column),
                counts,
            } => {
                for ord in column.term_ords(doc) {
                    if let Some(count) = counts.get_mut(ord as usize) {
                        *count += 1;
                    }
                }
            }
            GroupSegmentCollector::Day {
                column: Some(column),
                zone,
                counts,
            } => {
                let local = column
                    .first(doc)
                    .and_then(|t| DateTime::<Utc>::from_timestamp_micros(t.into_timestamp_micros()))
                    .map(|t| t.with_timezone(zone).date_naive());
                if let Some(date) = local {
                    *counts.entry(date.num_days_from_ce()).or_default() += 1;
                }
            }
            _ => {}
        }
    }

    fn harvest(self) -> GroupFruit {
        match self {
            GroupSegmentCollector::Keyword { column, counts } => {
                GroupFruit::Keyword { column, counts }
            }
            GroupSegmentCollector::Day { counts, .. } => GroupFruit::Day(counts),
        }
    }
}
