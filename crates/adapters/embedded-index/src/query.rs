//! Searching and aggregating activities: [`ActivityQuery`] (filters on several axes plus
//! memo full text), [`SearchPage`] with stable cursor pagination, and [`GroupBy`]
//! aggregations. Both run on fast fields through custom collectors, so results are exact
//! for any number of matches.

use crate::error::IndexError;
use crate::index::IndexView;
use crate::schema::{names, to_tantivy_date, KIND_ACTIVITY};
use crate::tokenizer::{analyze, is_cjk};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::ops::Bound;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::query::{
    BooleanQuery, PhraseQuery, Query, RangeQuery, RegexQuery, TermQuery, TermSetQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal, SegmentReader, Term};
use tsunagu_domain::{ActionType, ActivityLog, ItemKey, Version};

/// The page size when none is given.
pub const DEFAULT_LIMIT: usize = 20;
/// The largest page a query may ask for.
pub const MAX_LIMIT: usize = 1000;

/// Which live activities to return. Several values on one axis match any of them (OR);
/// axes combine with AND; an empty axis does not filter. Tombstones never match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ActivityQuery {
    /// The owning tenant. A multi-tenant caller must always set it.
    pub tenant_id: Option<String>,
    pub deal_ids: Vec<String>,
    pub company_ids: Vec<String>,
    pub user_ids: Vec<String>,
    pub actions: Vec<ActionType>,
    pub results: Vec<String>,
    /// Every one of these tags must be present.
    pub tags_all: Vec<String>,
    /// Inclusive lower bound of `occurred_at`.
    pub occurred_from: Option<DateTime<Utc>>,
    /// Exclusive upper bound of `occurred_at`.
    pub occurred_to: Option<DateTime<Utc>>,
    /// Memo full text: every whitespace-separated word must occur in the memo (each word
    /// as a phrase of its tokens, so "来週訪問" matches only those four characters in a
    /// row). Blank text is ignored.
    pub text: Option<String>,
    /// Page size: 0 counts only; at most [`MAX_LIMIT`]. Ignored by aggregations.
    pub limit: usize,
    /// Resume after the last hit of a previous page. Ignored by aggregations.
    pub cursor: Option<Cursor>,
}

impl Default for ActivityQuery {
    fn default() -> Self {
        Self {
            tenant_id: None,
            deal_ids: Vec::new(),
            company_ids: Vec::new(),
            user_ids: Vec::new(),
            actions: Vec::new(),
            results: Vec::new(),
            tags_all: Vec::new(),
            occurred_from: None,
            occurred_to: None,
            text: None,
            limit: DEFAULT_LIMIT,
            cursor: None,
        }
    }
}

/// A position in the result order (`occurred_at` descending, then the key's stable hash
/// ascending). Opaque to callers: pass back a page's `next_cursor` unchanged. As text, 32
/// hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cursor {
    occurred_at_us: i64,
    sort_hash: u64,
}

impl Cursor {
    /// Parses the text form; [`IndexError::BadCursor`] says what is wrong.
    pub fn parse(text: &str) -> Result<Self, IndexError> {
        let bad = |reason: &str| IndexError::BadCursor {
            cursor: text.to_string(),
            reason: reason.to_string(),
        };
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("expected 32 hexadecimal digits"));
        }
        let (ts, hash) = text.split_at(16);
        let ts = u64::from_str_radix(ts, 16).map_err(|_| bad("unreadable timestamp"))?;
        let sort_hash = u64::from_str_radix(hash, 16).map_err(|_| bad("unreadable tie-breaker"))?;
        Ok(Self {
            // The timestamp is stored as the bits of an i64 (dates before 1970 stay valid).
            occurred_at_us: ts as i64,
            sort_hash,
        })
    }

    fn sort_key(self) -> SortKey {
        (Reverse(self.occurred_at_us), self.sort_hash)
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:016x}{:016x}",
            self.occurred_at_us as u64, self.sort_hash
        )
    }
}

impl std::str::FromStr for Cursor {
    type Err = IndexError;
    fn from_str(s: &str) -> Result<Self, IndexError> {
        Cursor::parse(s)
    }
}

impl TryFrom<String> for Cursor {
    type Error = IndexError;
    fn try_from(s: String) -> Result<Self, IndexError> {
        Cursor::parse(&s)
    }
}

impl From<Cursor> for String {
    fn from(c: Cursor) -> String {
        c.to_string()
    }
}

/// One matching activity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub key: ItemKey,
    pub version: Version,
    pub activity: ActivityLog,
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchPage {
    pub hits: Vec<Hit>,
    /// Every match of the query, ignoring the cursor and the limit.
    pub total: u64,
    /// Where the next page starts; `None` on the last page (and for `limit` 0).
    pub next_cursor: Option<Cursor>,
}

/// What to count activities by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Action,
    User,
    Deal,
    Company,
    /// Activities without a result are not counted.
    Result,
    /// An activity counts once for each of its tags.
    Tag,
    /// UTC calendar day of `occurred_at`, `YYYY-MM-DD`; buckets in day order.
    Day,
}

impl GroupBy {
    pub const ALL: [GroupBy; 7] = [
        GroupBy::Action,
        GroupBy::User,
        GroupBy::Deal,
        GroupBy::Company,
        GroupBy::Result,
        GroupBy::Tag,
        GroupBy::Day,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Action => "action",
            GroupBy::User => "user",
            GroupBy::Deal => "deal",
            GroupBy::Company => "company",
            GroupBy::Result => "result",
            GroupBy::Tag => "tag",
            GroupBy::Day => "day",
        }
    }

    /// Parses the name; the error lists the accepted names.
    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown grouping {s:?}; expected one of {}",
                    Self::ALL.map(GroupBy::as_str).join(", ")
                )
            })
    }

    /// The keyword fast field grouped on, `None` for [`GroupBy::Day`].
    fn field_name(self) -> Option<&'static str> {
        match self {
            GroupBy::Action => Some(names::ACTION),
            GroupBy::User => Some(names::USER_ID),
            GroupBy::Deal => Some(names::DEAL_ID),
            GroupBy::Company => Some(names::COMPANY_ID),
            GroupBy::Result => Some(names::RESULT),
            GroupBy::Tag => Some(names::TAGS),
            GroupBy::Day => None,
        }
    }
}

/// A group and how many activities fall in it. Every group is returned: none is cut off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub key: String,
    pub count: u64,
}

/// Result order: `occurred_at` descending, then the key's stable hash ascending, so that
/// activities at the same instant still have one fixed order for the cursor.
type SortKey = (Reverse<i64>, u64);

impl IndexView {
    pub(crate) fn search(&self, q: &ActivityQuery) -> Result<SearchPage, IndexError> {
        if q.limit > MAX_LIMIT {
            return Err(IndexError::InvalidQuery(format!(
                "limit {} is above the maximum of {MAX_LIMIT}; page with the cursor instead",
                q.limit
            )));
        }
        let query = self.build_query(q)?;
        let searcher = self.searcher()?;
        let collector = PageCollector {
            limit: q.limit,
            after: q.cursor.map(Cursor::sort_key),
        };
        let page = searcher
            .search(&query, &collector)
            .map_err(IndexError::tantivy("searching the index"))?;
        let mut hits = Vec::with_capacity(page.top.len());
        for (_, address) in &page.top {
            // A hit is always an activity (the query requires kind = activity).
            if let Some((key, version, activity)) = self.load(&searcher, *address)? {
                hits.push(Hit {
                    key,
                    version,
                    activity,
                });
            }
        }
        let next_cursor = match page.top.last() {
            Some(&((Reverse(occurred_at_us), sort_hash), _))
                if page.after_cursor > q.limit as u64 =>
            {
                Some(Cursor {
                    occurred_at_us,
                    sort_hash,
                })
            }
            _ => None,
        };
        Ok(SearchPage {
            hits,
            total: page.total,
            next_cursor,
        })
    }

    pub(crate) fn aggregate(
        &self,
        q: &ActivityQuery,
        by: GroupBy,
    ) -> Result<Vec<Bucket>, IndexError> {
        let query = self.build_query(q)?;
        let searcher = self.searcher()?;
        let counts = searcher
            .search(&query, &GroupCollector { by })
            .map_err(IndexError::tantivy("aggregating the index"))?;
        let mut buckets: Vec<Bucket> = counts
            .into_iter()
            .map(|(key, count)| Bucket { key, count })
            .collect();
        match by {
            // "YYYY-MM-DD" sorts as text in day order (years 0000-9999).
            GroupBy::Day => buckets.sort_by(|a, b| a.key.cmp(&b.key)),
            _ => buckets.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key))),
        }
        Ok(buckets)
    }

    /// The tantivy query of an [`ActivityQuery`]: a conjunction of one clause per axis.
    fn build_query(&self, q: &ActivityQuery) -> Result<BooleanQuery, IndexError> {
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
        if let Some(text) = &q.text {
            for word in text.split_whitespace() {
                if let Some(clause) = self.word_query(word)? {
                    must.push(clause);
                }
            }
        }
        Ok(BooleanQuery::intersection(must))
    }

    /// The memo clause of one query word: a phrase of its tokens, a term for one token,
    /// `None` for a word of punctuation only.
    fn word_query(&self, word: &str) -> Result<Option<Box<dyn Query>>, IndexError> {
        let memo = self.fields.memo;
        let tokens = analyze(word);
        match tokens.as_slice() {
            [] => Ok(None),
            [only] => {
                let mut chars = only.text.chars();
                match (chars.next(), chars.next()) {
                    // One CJK character: memos index bigrams, so look for it alone, at the
                    // start of a bigram or at its end (the last character of a run).
                    (Some(c), None) if is_cjk(c) => {
                        let regex = RegexQuery::from_pattern(&format!("{c}|{c}.|.{c}"), memo)
                            .map_err(|e| {
                                IndexError::InvalidQuery(format!("search word {word:?}: {e}"))
                            })?;
                        Ok(Some(Box::new(regex)))
                    }
                    _ => Ok(Some(term_query_with(
                        memo,
                        &only.text,
                        IndexRecordOption::WithFreqs,
                    ))),
                }
            }
            many => {
                let first = many[0].position;
                let terms = many
                    .iter()
                    .map(|t| (t.position - first, Term::from_field_text(memo, &t.text)))
                    .collect();
                Ok(Some(Box::new(PhraseQuery::new_with_offset(terms))))
            }
        }
    }
}

fn term_query(field: Field, value: &str) -> Box<dyn Query> {
    term_query_with(field, value, IndexRecordOption::Basic)
}

fn term_query_with(field: Field, value: &str, option: IndexRecordOption) -> Box<dyn Query> {
    Box::new(TermQuery::new(Term::from_field_text(field, value), option))
}

/// A clause matching any of `values`; `None` when there are none (the axis is open).
fn any_of(field: Field, values: &[&str]) -> Option<Box<dyn Query>> {
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

struct PageCollector {
    limit: usize,
    after: Option<SortKey>,
}

struct PageFruit {
    total: u64,
    /// Matches strictly after the cursor (all matches without one).
    after_cursor: u64,
    /// The first `limit` of those, sorted.
    top: Vec<(SortKey, DocAddress)>,
}

struct PageSegmentCollector {
    segment_ord: SegmentOrdinal,
    occurred_at: Option<Column<tantivy::DateTime>>,
    sort_hash: Option<Column<u64>>,
    limit: usize,
    after: Option<SortKey>,
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
            total: 0,
            after_cursor: 0,
            heap: BinaryHeap::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
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

    fn collect(&mut self, doc: DocId, _score: Score) {
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
        let key = (Reverse(occurred_at_us), sort_hash);
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
// or per UTC day.

struct GroupCollector {
    by: GroupBy,
}

enum GroupSegmentCollector {
    Keyword {
        column: Option<StrColumn>,
        /// Count per term ordinal of the segment's dictionary.
        counts: Vec<u64>,
    },
    Day {
        column: Option<Column<tantivy::DateTime>>,
        counts: HashMap<i64, u64>,
    },
}

enum GroupFruit {
    Keyword {
        column: Option<StrColumn>,
        counts: Vec<u64>,
    },
    Day(HashMap<i64, u64>),
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

impl Collector for GroupCollector {
    type Fruit = HashMap<String, u64>;
    type Child = GroupSegmentCollector;

    fn for_segment(
        &self,
        _segment_ord: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<GroupSegmentCollector> {
        let fast = segment.fast_fields();
        Ok(match self.by.field_name() {
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
                    for (day, count) in counts {
                        *merged.entry(day_label(day)).or_default() += count;
                    }
                }
            }
        }
        Ok(merged)
    }
}

fn day_label(day: i64) -> String {
    DateTime::<Utc>::from_timestamp(day.saturating_mul(86_400), 0).map_or_else(
        || format!("day {day}"),
        |t| t.format("%Y-%m-%d").to_string(),
    )
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
                counts,
            } => {
                if let Some(t) = column.first(doc) {
                    let day = t.into_timestamp_micros().div_euclid(MICROS_PER_DAY);
                    *counts.entry(day).or_default() += 1;
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
