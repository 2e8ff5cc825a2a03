//! [`OpenSearchSearch`]: the service's [`SearchIndex`] port over an OpenSearch or
//! Elasticsearch index written by [`crate::OpenSearchSink`], with the embedded index's
//! answers for the same data (`tsunagu-embedded-index` `query.rs` and `records.rs`):
//!
//! - filters are `bool` filter clauses: several values on one axis OR (`terms`), axes AND,
//!   the tenant whenever set, `kind` always (so tombstones never match);
//! - text: each whitespace-separated word is a `match_phrase` on the Japanese field
//!   (`memo`, `title`) analyzed like the embedded tokenizer ([`crate::analysis`]); a word
//!   of one CJK character matches it alone or inside a bigram (`regexp`), as embedded;
//!   with a dictionary, a memo search word made of whole words matches the memo's word
//!   fields instead ([`whole_words_clause`]), with the embedded index's rules
//!   (`tsunagu-dictionary`), so 京都 does not find 東京都;
//! - order: `occurred_at_us` descending, then `sort_key` (the key's stable hash as 16 hex
//!   digits, so in u64 order) ascending; a [`Cursor`] is those two values and the next
//!   page is a `search_after` them, so pages reproduce the whole order exactly;
//! - `total` is exact (`track_total_hits: true`) and ignores cursor and limit;
//! - aggregations, deal facts, tag counts and record ids read every bucket or hit through
//!   composite-aggregation or `search_after` pages: nothing is cut at a window or top N;
//! - `visible_version` is a search (what searches see, refreshed), tombstones included.
//!
//! Errors: a query the embedded index refuses (a limit above [`MAX_LIMIT`]) is
//! [`ServiceError::Invalid`]; anything the cluster does (unreachable, a failure status,
//! an answer of an unexpected shape) is [`ServiceError::Unavailable`] naming the URL and
//! the status.

use crate::analysis::{single_cjk_char, tokens};
use crate::config::OpenSearchConfig;
use crate::document::{
    doc_id, parse_doc_id, parse_sort_key, sort_key, TextFields, KIND_ACTIVITY, KIND_COMPANY,
    KIND_DEAL, KIND_SALES_LIST, MEMO_WORDS, MEMO_WORD_BIGRAMS, REQUIRED_FIELDS, SEARCH_FIELDS,
};
use crate::{Method, OpenSearchError, OpenSearchSink};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use tsunagu_dictionary::{word_bigrams, Word};
use tsunagu_domain::search::{
    ActivityQuery, Bucket, Cursor, GroupBy, Hit, LatestActivity, RecordHit, RecordKind, RecordPage,
    RecordQuery, SearchPage, SortOrder, TimeZone, MAX_LIMIT,
};
use tsunagu_domain::text_query::{Clause, Term as SearchTerm, TextQuery};
use tsunagu_domain::{Entity, ItemKey, Version};
use tsunagu_service::ports::SearchIndex;
use tsunagu_service::ServiceError;

/// Buckets per composite-aggregation request.
pub const AGGREGATION_PAGE: usize = 1_000;
/// Hits per request when listing every matching record id.
pub const IDS_PAGE: usize = 1_000;

/// How deep [`OpenSearchSearch::scan_after`] reads a relevance order (the default
/// `index.max_result_window`).
pub const MAX_SCAN: usize = 10_000;

/// Whether the hit at `hit` comes after `cursor` in the relevance order (score
/// descending, then newest first, then the key's hash ascending).
fn follows(hit: Cursor, cursor: Cursor) -> bool {
    let score = |c: Cursor| c.score().unwrap_or(0.0);
    score(hit)
        .total_cmp(&score(cursor))
        .reverse()
        .then(hit.occurred_at_us().cmp(&cursor.occurred_at_us()).reverse())
        .then(hit.sort_hash().cmp(&cursor.sort_hash()))
        .is_gt()
}

/// The result order: newest first, then the key's stable hash as a u64, ascending.
fn result_order() -> Value {
    json!([{"occurred_at_us": {"order": "desc"}}, {"sort_key": {"order": "asc"}}])
}

/// The relevance order: the score (BM25) descending, then [`result_order`].
fn relevance_order() -> Value {
    json!([
        {"_score": {"order": "desc"}},
        {"occurred_at_us": {"order": "desc"}},
        {"sort_key": {"order": "asc"}},
    ])
}

/// An OpenSearch / Elasticsearch index as the service's [`SearchIndex`]. Reads only: it
/// needs the sink's URL, index and credentials, nothing else of its config.
#[derive(Debug, Clone)]
pub struct OpenSearchSearch {
    client: OpenSearchSink,
}

impl OpenSearchSearch {
    /// The reader of the index `config` names; no request is sent.
    pub fn new(config: &OpenSearchConfig) -> Result<Self, OpenSearchError> {
        Ok(Self::from_client(OpenSearchSink::new(config)?))
    }

    /// A reader sharing a sink's HTTP client.
    pub fn from_client(client: OpenSearchSink) -> Self {
        Self { client }
    }

    /// [`OpenSearchSearch::new`], then [`OpenSearchSearch::check`].
    pub async fn connect(config: &OpenSearchConfig) -> Result<Self, OpenSearchError> {
        let search = Self::new(config)?;
        search.check().await?;
        Ok(search)
    }

    /// Checks that the index exists with the fields searches use (the sink's and the sort
    /// fields, which indexes created by older versions lack until the sink adds them).
    pub async fn check(&self) -> Result<(), OpenSearchError> {
        self.client.check_words_loaded()?;
        let index = self.index();
        let what = format!("GET /{index}/_mapping");
        let body = self
            .client
            .request_json(Method::GET, &[&index, "_mapping"], &[], None, &what)
            .await?;
        self.client.check_index_words(&body, &what)?;
        let properties = body
            .as_object()
            .and_then(|m| m.values().next())
            .map(|i| &i["mappings"]["properties"]);
        for (field, kind) in REQUIRED_FIELDS.iter().chain(SEARCH_FIELDS.iter()) {
            let found = properties.and_then(|p| p[*field]["type"].as_str());
            if found != Some(*kind) {
                return Err(self.client.unreadable(
                    &what,
                    format!(
                        "index {index:?} has no {kind} field `{field}` that searches need; start the sink once on it (it adds the search fields) and see docs/opensearch.md"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn index(&self) -> String {
        self.client.config().index.clone()
    }

    /// Whether text goes to the cluster normalized (see [`crate::document`]): not with
    /// kuromoji, whose morphological analysis needs the text as written.
    fn folds(&self) -> bool {
        self.client.config().analyzer.folds()
    }

    /// How the memo was written, so that queries are analyzed alike.
    fn memo_text(&self) -> TextFields<'_> {
        self.client.text_fields()
    }

    async fn search(&self, body: &Value) -> Result<Value, OpenSearchError> {
        let index = self.index();
        let what = format!("POST /{index}/_search");
        self.client
            .request_json(Method::POST, &[&index, "_search"], &[], Some(body), &what)
            .await
    }

    fn unreadable(&self, message: String) -> OpenSearchError {
        self.client
            .unreadable(&format!("POST /{}/_search", self.index()), message)
    }

    /// One page in the result order: the hits (at most `limit`), the exact total and the
    /// cursor after the last hit when more follow.
    async fn page(
        &self,
        query: Value,
        limit: usize,
        cursor: Option<Cursor>,
        scored: bool,
    ) -> Result<(Vec<Value>, u64, Option<Cursor>), OpenSearchError> {
        let mut body = json!({
            "query": query,
            // One more than asked tells whether a next page exists.
            "size": if limit == 0 { 0 } else { limit + 1 },
            "track_total_hits": true,
            "sort": if scored { relevance_order() } else { result_order() },
            "_source": ["version", "kind", "source", "occurred_at_us", "sort_key"],
        });
        if let Some(cursor) = cursor {
            let after = [
                json!(cursor.occurred_at_us()),
                json!(sort_key(cursor.sort_hash())),
            ];
            body["search_after"] = match cursor.score() {
                Some(score) if scored => json!([score, after[0], after[1]]),
                _ => json!(after),
            };
        }
        let answer = self.search(&body).await?;
        let total = &answer["hits"]["total"];
        let total = match (total["value"].as_u64(), total["relation"].as_str()) {
            (Some(n), Some("eq") | None) => n,
            _ => {
                return Err(self.unreadable(format!("the answer has no exact hits.total: {total}")))
            }
        };
        let mut hits = answer["hits"]["hits"]
            .as_array()
            .cloned()
            .ok_or_else(|| self.unreadable("the answer has no hits array".into()))?;
        if let (true, Some(cursor)) = (scored, cursor) {
            // A cluster that ignores `search_after` on a `_score` sort (osmem-server does)
            // answers from the top: then walk the order from the top and keep what
            // follows the cursor.
            let mut ignored = false;
            for hit in &hits {
                ignored |= !follows(self.cursor_of(hit, true)?, cursor);
            }
            if ignored {
                hits = self.scan_after(&body, cursor, limit + 1).await?;
            }
        }
        let next_cursor = if limit > 0 && hits.len() > limit {
            hits.truncate(limit);
            match hits.last() {
                Some(last) => Some(self.cursor_of(last, scored)?),
                None => None,
            }
        } else {
            hits.truncate(limit);
            None
        };
        Ok((hits, total, next_cursor))
    }

    /// The first `wanted` hits of `body`'s relevance order that follow `cursor`, reading
    /// the order from the top with `from`/`size` (for clusters that ignore `search_after`
    /// on a score sort), at most [`MAX_SCAN`] hits deep.
    async fn scan_after(
        &self,
        body: &Value,
        cursor: Cursor,
        wanted: usize,
    ) -> Result<Vec<Value>, OpenSearchError> {
        let mut body = body.clone();
        if let Value::Object(fields) = &mut body {
            fields.remove("search_after");
        }
        body["size"] = json!(IDS_PAGE);
        body["track_total_hits"] = json!(false);
        let mut kept = Vec::new();
        let mut from = 0;
        while from < MAX_SCAN {
            body["from"] = json!(from);
            let answer = self.search(&body).await?;
            let hits = answer["hits"]["hits"]
                .as_array()
                .ok_or_else(|| self.unreadable("the answer has no hits array".into()))?;
            for hit in hits {
                if follows(self.cursor_of(hit, true)?, cursor) {
                    kept.push(hit.clone());
                    if kept.len() >= wanted {
                        return Ok(kept);
                    }
                }
            }
            if hits.len() < IDS_PAGE {
                return Ok(kept);
            }
            from += IDS_PAGE;
        }
        Err(self.unreadable(format!(
            "this cluster ignores search_after on a relevance order, and the page starts more than {MAX_SCAN} hits deep; narrow the search"
        )))
    }

    /// The position of a hit in the result order, from its own fields (and its score, the
    /// first sort value, in the relevance order).
    fn cursor_of(&self, hit: &Value, scored: bool) -> Result<Cursor, OpenSearchError> {
        let source = &hit["_source"];
        let at = source["occurred_at_us"].as_i64();
        let hash = source["sort_key"].as_str().and_then(parse_sort_key);
        match (at, hash) {
            (Some(at), Some(hash)) if scored => {
                let score = hit["sort"][0].as_f64().or_else(|| hit["_score"].as_f64());
                match score {
                    Some(score) => Ok(Cursor::scored(score, at, hash)),
                    None => Err(self.unreadable(format!("hit {} has no score", hit["_id"]))),
                }
            }
            (Some(at), Some(hash)) => Ok(Cursor::new(at, hash)),
            _ => Err(self.unreadable(format!(
                "document {} has no occurred_at_us / sort_key (written before they existed; see docs/opensearch.md)",
                hit["_id"]
            ))),
        }
    }

    /// The key, version and entity of a hit.
    fn entity_of(&self, hit: &Value) -> Result<(ItemKey, Version, Entity), OpenSearchError> {
        let id = hit["_id"].as_str().unwrap_or_default();
        let key = parse_doc_id(id).ok_or_else(|| {
            self.unreadable(format!("document id {id:?} was not written by tsunagu"))
        })?;
        let source = &hit["_source"];
        let version = source["version"]
            .as_u64()
            .ok_or_else(|| self.unreadable(format!("document {id:?} has no `version`")))?;
        let type_name = match source["kind"].as_str() {
            Some(KIND_ACTIVITY) => "activity_log",
            Some(KIND_COMPANY) => "company",
            Some(KIND_DEAL) => "deal",
            Some(KIND_SALES_LIST) => "sales_list",
            other => {
                return Err(self.unreadable(format!(
                    "document {id:?} is of kind {other:?}, not a searchable entity"
                )))
            }
        };
        let mut body = source["source"].clone();
        let Value::Object(fields) = &mut body else {
            return Err(self.unreadable(format!("document {id:?} has no stored `source`")));
        };
        fields.insert("type".into(), json!(type_name));
        let entity = Entity::from_json(&body).map_err(|e| {
            self.unreadable(format!(
                "document {id:?}: source.{}: {}",
                e.path.trim_start_matches('.'),
                e.message
            ))
        })?;
        Ok((key, Version(version), entity))
    }

    /// Calls `each` with every bucket of a composite aggregation of `source` over the
    /// documents of `query`, page after page; `sub` are sub-aggregations per bucket.
    async fn for_each_bucket(
        &self,
        query: &Value,
        source: Value,
        sub: Option<Value>,
        mut each: impl FnMut(&Value) -> Result<(), OpenSearchError> + Send,
    ) -> Result<(), OpenSearchError> {
        let mut after: Option<Value> = None;
        loop {
            let mut composite = json!({
                "size": AGGREGATION_PAGE,
                "sources": [{"k": source}],
            });
            if let Some(after) = after.take() {
                composite["after"] = after;
            }
            let mut group = json!({ "composite": composite });
            if let Some(sub) = &sub {
                group["aggs"] = sub.clone();
            }
            let body = json!({
                "size": 0,
                "track_total_hits": false,
                "query": query,
                "aggs": {"g": group},
            });
            let answer = self.search(&body).await?;
            let group = &answer["aggregations"]["g"];
            let buckets = group["buckets"].as_array().ok_or_else(|| {
                self.unreadable("the answer has no composite aggregation buckets".into())
            })?;
            for bucket in buckets {
                each(bucket)?;
            }
            match &group["after_key"] {
                next @ Value::Object(_) if buckets.len() >= AGGREGATION_PAGE => {
                    after = Some(next.clone())
                }
                _ => return Ok(()),
            }
        }
    }

    /// Counts per value of a keyword field (each value of a multi-valued field once).
    async fn keyword_counts(
        &self,
        query: &Value,
        field: &str,
    ) -> Result<Vec<Bucket>, OpenSearchError> {
        let mut buckets = Vec::new();
        self.for_each_bucket(query, json!({"terms": {"field": field}}), None, |b| {
            let key = b["key"]["k"]
                .as_str()
                .ok_or_else(|| self.unreadable(format!("a bucket without a text key: {b}")))?;
            buckets.push(Bucket {
                key: key.to_string(),
                count: b["doc_count"].as_u64().unwrap_or(0),
            });
            Ok(())
        })
        .await?;
        Ok(buckets)
    }

    /// Counts per UTC day of `occurred_at`, labelled `YYYY-MM-DD`.
    /// Counts per day, ISO week or month of `occurred_at` in `zone`: a date histogram in
    /// that zone (its buckets start at local midnight, weeks on Monday), each bucket's
    /// start labelled by [`GroupBy::calendar_key`] like the embedded index's.
    async fn calendar_counts(
        &self,
        query: &Value,
        by: GroupBy,
        zone: TimeZone,
    ) -> Result<Vec<Bucket>, OpenSearchError> {
        let interval = match by {
            GroupBy::Week => "1w",
            GroupBy::Month => "1M",
            _ => "1d",
        };
        let mut buckets: Vec<Bucket> = Vec::new();
        let source = json!({"date_histogram": {
            "field": "occurred_at", "calendar_interval": interval, "time_zone": zone.name(),
        }});
        self.for_each_bucket(query, source, None, |b| {
            let key = &b["key"]["k"];
            let ms = key.as_i64().or_else(|| key.as_f64().map(|f| f as i64));
            let start = ms
                .and_then(DateTime::<Utc>::from_timestamp_millis)
                .and_then(|t| by.calendar_key(t, zone))
                .ok_or_else(|| self.unreadable(format!("a date bucket without a time: {b}")))?;
            let count = b["doc_count"].as_u64().unwrap_or(0);
            if count > 0 {
                // A histogram that ignored the zone would split one local period in two:
                // merge by label so that the counts stay exact either way.
                match buckets.last_mut() {
                    Some(last) if last.key == start => last.count += count,
                    _ => buckets.push(Bucket { key: start, count }),
                }
            }
            Ok(())
        })
        .await?;
        Ok(buckets)
    }
}

fn unavailable(e: OpenSearchError) -> ServiceError {
    ServiceError::Unavailable(format!("the search index failed: {e}"))
}

fn check_limit(limit: usize) -> Result<(), ServiceError> {
    if limit > MAX_LIMIT {
        return Err(ServiceError::invalid(
            "query",
            format!(
                "limit {limit} is above the maximum of {MAX_LIMIT}; page with the cursor instead"
            ),
        ));
    }
    Ok(())
}

fn term(field: &str, value: &str) -> Value {
    json!({"term": {field: value}})
}

/// A clause matching any of `values`; none when there are none (the axis is open).
fn any_of<'a>(filters: &mut Vec<Value>, field: &str, values: impl IntoIterator<Item = &'a str>) {
    let values: Vec<&str> = values.into_iter().collect();
    if !values.is_empty() {
        filters.push(json!({"terms": {field: values}}));
    }
}

/// The clause of one word or phrase on a Japanese text field (see the module docs); none
/// for a term of punctuation only, which the parser refuses before it gets here.
/// `prefix`: the last token matches words starting with it
/// ([`tsunagu_domain::text_query::Term::prefix_last`]).
pub fn word_clause(field: &str, word: &str, prefix: bool, fold: bool) -> Option<Value> {
    if tokens(word).is_empty() {
        return None;
    }
    if let Some(c) = single_cjk_char(word) {
        // The field indexes bigrams: the character alone (a one-character run), at the
        // start of a bigram or at its end. CJK characters are no regexp operators.
        return Some(json!({"regexp": {field: {"value": format!("{c}|{c}.|.{c}")}}}));
    }
    // The text goes normalized as the embedded index normalizes it (the cluster's
    // analyzer leaves such text as it is): the same tokens whether or not a cluster
    // applies char filters to queries (osmem-server does not). `none`: should the cluster
    // find no token in a term the embedded tokenizer does, it matches nothing rather than
    // everything.
    let query = if fold {
        crate::analysis::normalize(word)
    } else {
        word.to_string()
    };
    if prefix {
        return Some(match tokens(word).as_slice() {
            [only] => json!({"prefix": {field: {"value": only}}}),
            _ => json!({"match_phrase_prefix": {field: {"query": query, "max_expansions": 50}}}),
        });
    }
    Some(json!({"match_phrase": {field: {"query": query, "zero_terms_query": "none"}}}))
}

/// How much more a match of whole words counts than a match inside a longer word (as
/// on the embedded index).
const WHOLE_WORDS_BOOST: f32 = 2.0;

/// The clause of one search term on a field written as `text` says: with a dictionary,
/// a term made of whole words (two characters or more) matches the word fields
/// ([`whole_words_clause`]); anything else, or without one, the bigram field
/// ([`word_clause`]).
fn term_clause(field: &str, term: &SearchTerm, text: TextFields<'_>) -> Option<Value> {
    let on_bigrams = word_clause(field, &term.text, term.prefix_last(), text.fold)?;
    let whole = text
        .words
        .and_then(|dictionary| dictionary.whole_words(&term.text))
        .filter(|whole| {
            whole
                .iter()
                .map(|w| w.folded.chars().count())
                .sum::<usize>()
                >= 2
        });
    Some(match whole {
        Some(whole) => whole_words_clause(&whole, on_bigrams),
        None => on_bigrams,
    })
}

/// The clause of a search word made of whole dictionary words (`tsunagu-dictionary`):
/// its word keys in a row on [`MEMO_WORDS`] (scoring [`WHOLE_WORDS_BOOST`] times more),
/// or its bigrams in a row inside one word on [`MEMO_WORD_BIGRAMS`]; with a verb,
/// adjective or suffix, also `on_bigrams` (such a word often starts a longer word of the
/// memo, 取り in 取り直し, which the dictionary splits otherwise).
pub fn whole_words_clause(words: &[Word], on_bigrams: Value) -> Value {
    let keys: Vec<&str> = words.iter().map(|w| w.key.as_str()).collect();
    let folded: String = words.iter().map(|w| w.folded.as_str()).collect();
    let mut any = vec![json!({"match_phrase": {MEMO_WORDS: {
        "query": keys.join(" "),
        "boost": WHOLE_WORDS_BOOST,
    }}})];
    let inside = word_bigrams(&folded);
    if !inside.is_empty() {
        any.push(json!({"match_phrase": {MEMO_WORD_BIGRAMS: {"query": inside.join(" ")}}}));
    }
    if words.iter().any(|w| w.open_ended) {
        any.push(on_bigrams);
    }
    json!({"bool": {"should": any, "minimum_should_match": 1}})
}

/// The text part of a query, translated from the parsed search syntax ([`TextQuery`]):
/// conditions that must hold (`A OR B` a `bool.should` of at least one) and exclusions.
#[derive(Debug, Default, PartialEq)]
pub struct TextClauses {
    pub must: Vec<Value>,
    pub must_not: Vec<Value>,
}

/// Parses `text` and translates it for `field`; text the parser refuses is
/// [`ServiceError::Invalid`] (the service refuses it before it gets here).
pub fn text_clauses(
    field: &str,
    text: Option<&str>,
    fold: bool,
) -> Result<TextClauses, ServiceError> {
    let fields = TextFields { fold, words: None };
    match text.map(TextQuery::parse).transpose()?.flatten() {
        Some(parsed) => parsed_text_clauses(field, &parsed, fields),
        None => Ok(TextClauses::default()),
    }
}

/// [`text_clauses`] of a query already parsed (the memo query with the tenant's synonyms
/// applied, [`ActivityQuery::memo_query`]), on a field written as `text` says.
pub fn parsed_text_clauses(
    field: &str,
    parsed: &TextQuery,
    text: TextFields<'_>,
) -> Result<TextClauses, ServiceError> {
    let mut out = TextClauses::default();
    let clause = |term: &SearchTerm| {
        term_clause(field, term, text).ok_or_else(|| {
            ServiceError::invalid("q", format!("{:?} has nothing to search for", term.text))
        })
    };
    for c in parsed.clauses() {
        match c {
            Clause::AnyOf(terms) => {
                let mut any = terms.iter().map(clause).collect::<Result<Vec<_>, _>>()?;
                out.must.push(match any.len() {
                    1 => any.remove(0),
                    _ => json!({"bool": {"should": any, "minimum_should_match": 1}}),
                });
            }
            Clause::Not(term) => out.must_not.push(clause(term)?),
        }
    }
    Ok(out)
}

/// A `bool` query of filters and text clauses; the text clauses score when `scored`
/// (`must`), else they only filter.
fn bool_query(
    filters: Vec<Value>,
    text: TextClauses,
    mut must_not: Vec<Value>,
    scored: bool,
) -> Value {
    let mut filters = filters;
    must_not.extend(text.must_not);
    let mut query = json!({"bool": {}});
    if scored && !text.must.is_empty() {
        query["bool"]["must"] = json!(text.must);
    } else {
        filters.extend(text.must);
    }
    query["bool"]["filter"] = json!(filters);
    if !must_not.is_empty() {
        query["bool"]["must_not"] = json!(must_not);
    }
    query
}

/// The query of an [`ActivityQuery`]: one filter clause per axis; the memo text as the
/// memo was written (`memo`).
pub fn activity_query(q: &ActivityQuery, memo: TextFields<'_>) -> Result<Value, ServiceError> {
    let mut filters = vec![term("kind", KIND_ACTIVITY)];
    if let Some(tenant) = &q.tenant_id {
        filters.push(term("tenant_id", tenant));
    }
    any_of(
        &mut filters,
        "deal_id",
        q.deal_ids.iter().map(String::as_str),
    );
    any_of(
        &mut filters,
        "company_id",
        q.company_ids.iter().map(String::as_str),
    );
    any_of(
        &mut filters,
        "user_id",
        q.user_ids.iter().map(String::as_str),
    );
    any_of(&mut filters, "action", q.actions.iter().map(|a| a.as_str()));
    any_of(&mut filters, "result", q.results.iter().map(String::as_str));
    for tag in &q.tags_all {
        filters.push(term("tags", tag));
    }
    if q.occurred_from.is_some() || q.occurred_to.is_some() {
        let mut range = serde_json::Map::new();
        if let Some(from) = q.occurred_from {
            range.insert("gte".into(), json!(from.timestamp_micros()));
        }
        if let Some(to) = q.occurred_to {
            range.insert("lt".into(), json!(to.timestamp_micros()));
        }
        filters.push(json!({"range": {"occurred_at_us": range}}));
    }
    let text = match q.memo_query()? {
        Some(parsed) => parsed_text_clauses("memo", &parsed, memo)?,
        None => TextClauses::default(),
    };
    Ok(bool_query(
        filters,
        text,
        Vec::new(),
        q.sort == SortOrder::Relevance,
    ))
}

fn doc_kind(kind: RecordKind) -> &'static str {
    match kind {
        RecordKind::Company => KIND_COMPANY,
        RecordKind::Deal => KIND_DEAL,
        RecordKind::SalesList => KIND_SALES_LIST,
    }
}

/// The query of a [`RecordQuery`] (records.rs's `record_query`).
pub fn record_query(q: &RecordQuery, fold: bool) -> Result<Value, ServiceError> {
    let mut filters = vec![term("kind", doc_kind(q.kind))];
    if let Some(tenant) = &q.tenant_id {
        filters.push(term("tenant_id", tenant));
    }
    let ids = |ids: &[String]| -> Vec<String> {
        ids.iter().map(|id| doc_id(&q.kind.key_for(id))).collect()
    };
    if let Some(only) = &q.only_ids {
        if only.is_empty() {
            filters.push(json!({"match_none": {}}));
        } else {
            filters.push(json!({"terms": {"key": ids(only)}}));
        }
    }
    any_of(
        &mut filters,
        "company_id",
        q.company_ids.iter().map(String::as_str),
    );
    any_of(
        &mut filters,
        "user_id",
        q.owner_ids.iter().map(String::as_str),
    );
    any_of(&mut filters, "stage", q.stages.iter().map(|s| s.as_str()));
    any_of(
        &mut filters,
        "prefecture",
        q.prefectures.iter().map(String::as_str),
    );
    any_of(
        &mut filters,
        "industry",
        q.industries.iter().map(String::as_str),
    );
    for tag in &q.tags_all {
        filters.push(term("tags", tag));
    }
    if q.amount_min.is_some() || q.amount_max.is_some() {
        let mut range = serde_json::Map::new();
        if let Some(min) = q.amount_min {
            range.insert("gte".into(), json!(min));
        }
        if let Some(max) = q.amount_max {
            range.insert("lte".into(), json!(max));
        }
        filters.push(json!({"range": {"amount": range}}));
    }
    if q.close_from.is_some() || q.close_to.is_some() {
        // Close dates are stored as days (midnight UTC): inclusive bounds of whole days.
        let mut range = serde_json::Map::new();
        if let Some(from) = q.close_from {
            range.insert("gte".into(), json!(from.format("%Y-%m-%d").to_string()));
        }
        if let Some(to) = q.close_to {
            range.insert("lte".into(), json!(to.format("%Y-%m-%d").to_string()));
        }
        filters.push(json!({"range": {"close_date": range}}));
    }
    let text = text_clauses("title", q.text.as_deref(), fold)?;
    let mut must_not = Vec::new();
    if !q.exclude_ids.is_empty() {
        must_not.push(json!({"terms": {"key": ids(&q.exclude_ids)}}));
    }
    Ok(bool_query(filters, text, must_not, false))
}

/// Buckets in the embedded index's order: days in day order, anything else most counted
/// first, then by key.
fn sort_buckets(buckets: &mut [Bucket], by: GroupBy) {
    match by {
        GroupBy::Day | GroupBy::Week | GroupBy::Month => buckets.sort_by(|a, b| a.key.cmp(&b.key)),
        _ => buckets.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key))),
    }
}

fn group_field(by: GroupBy) -> Option<&'static str> {
    match by {
        GroupBy::Action => Some("action"),
        GroupBy::User => Some("user_id"),
        GroupBy::Deal => Some("deal_id"),
        GroupBy::Company => Some("company_id"),
        GroupBy::Result => Some("result"),
        GroupBy::Tag => Some("tags"),
        GroupBy::Day | GroupBy::Week | GroupBy::Month => None,
    }
}

#[async_trait]
impl SearchIndex for OpenSearchSearch {
    async fn search_activities(&self, query: &ActivityQuery) -> Result<SearchPage, ServiceError> {
        check_limit(query.limit)?;
        query
            .check_cursor()
            .map_err(|e| ServiceError::invalid("cursor", e.to_string()))?;
        let scored = query.sort == SortOrder::Relevance;
        let memo = query.memo_query()?;
        let (hits, total, next_cursor) = self
            .page(
                activity_query(query, self.memo_text())?,
                query.limit,
                query.cursor,
                scored,
            )
            .await
            .map_err(unavailable)?;
        let mut out = Vec::with_capacity(hits.len());
        for hit in &hits {
            match self.entity_of(hit).map_err(unavailable)? {
                (key, version, Entity::ActivityLog(activity)) => {
                    let words = match self.client.words() {
                        Some(dictionary) => {
                            dictionary.query_word_spans(&activity.memo, memo.as_ref())
                        }
                        None => Vec::new(),
                    };
                    out.push(Hit::with_word_spans(
                        key,
                        version,
                        activity,
                        memo.as_ref(),
                        words,
                    ))
                }
                (key, ..) => {
                    return Err(unavailable(
                        self.unreadable(format!("document {key} is not an activity")),
                    ))
                }
            }
        }
        Ok(SearchPage {
            hits: out,
            total,
            next_cursor,
        })
    }

    async fn aggregate_activities_in(
        &self,
        query: &ActivityQuery,
        by: GroupBy,
        zone: TimeZone,
    ) -> Result<Vec<Bucket>, ServiceError> {
        let q = activity_query(query, self.memo_text())?;
        let mut buckets = match group_field(by) {
            Some(field) => self.keyword_counts(&q, field).await,
            None => self.calendar_counts(&q, by, zone).await,
        }
        .map_err(unavailable)?;
        sort_buckets(&mut buckets, by);
        Ok(buckets)
    }

    async fn search_records(&self, query: &RecordQuery) -> Result<RecordPage, ServiceError> {
        check_limit(query.limit)?;
        let (hits, total, next_cursor) = self
            .page(
                record_query(query, self.folds())?,
                query.limit,
                query.cursor,
                false,
            )
            .await
            .map_err(unavailable)?;
        let mut out = Vec::with_capacity(hits.len());
        for hit in &hits {
            let (key, version, entity) = self.entity_of(hit).map_err(unavailable)?;
            out.push(RecordHit {
                key,
                version,
                entity,
            });
        }
        Ok(RecordPage {
            hits: out,
            total,
            next_cursor,
        })
    }

    async fn record_ids(&self, query: &RecordQuery) -> Result<Vec<String>, ServiceError> {
        check_limit(query.limit)?;
        let mut ids = Vec::new();
        let what = format!("POST /{}/_search", self.index());
        self.client
            .for_each_hit(
                record_query(query, self.folds())?,
                json!([{"key": "asc"}]),
                json!(false),
                IDS_PAGE,
                |hit| {
                    let id = hit["_id"].as_str().unwrap_or_default();
                    let key = parse_doc_id(id).ok_or_else(|| {
                        self.client.unreadable(
                            &what,
                            format!("document id {id:?} was not written by tsunagu"),
                        )
                    })?;
                    ids.push(key.partition);
                    Ok(())
                },
            )
            .await
            .map_err(unavailable)?;
        Ok(ids)
    }

    async fn tag_counts(&self, query: &RecordQuery) -> Result<Vec<Bucket>, ServiceError> {
        check_limit(query.limit)?;
        let mut buckets = self
            .keyword_counts(&record_query(query, self.folds())?, "tags")
            .await
            .map_err(unavailable)?;
        sort_buckets(&mut buckets, GroupBy::Tag);
        Ok(buckets)
    }

    async fn deals_with_activity(
        &self,
        query: &ActivityQuery,
    ) -> Result<HashSet<String>, ServiceError> {
        Ok(self
            .keyword_counts(&activity_query(query, self.memo_text())?, "deal_id")
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|b| b.key)
            .collect())
    }

    /// Among activities at the same latest instant the one first in the result order
    /// (lowest `sort_key`) gives the result; the embedded index keeps the first it reads.
    async fn latest_activity_per_deal(
        &self,
        query: &ActivityQuery,
    ) -> Result<HashMap<String, LatestActivity>, ServiceError> {
        let mut latest = HashMap::new();
        let sub = json!({"latest": {"top_hits": {
            "size": 1,
            "sort": result_order(),
            "_source": ["occurred_at_us", "result"],
        }}});
        self.for_each_bucket(
            &activity_query(query, self.memo_text())?,
            json!({"terms": {"field": "deal_id"}}),
            Some(sub),
            |b| {
                let deal = b["key"]["k"].as_str();
                let source = &b["latest"]["hits"]["hits"][0]["_source"];
                let at = source["occurred_at_us"]
                    .as_i64()
                    .and_then(DateTime::<Utc>::from_timestamp_micros);
                let (Some(deal), Some(occurred_at)) = (deal, at) else {
                    return Err(
                        self.unreadable(format!("a deal bucket without its latest activity: {b}"))
                    );
                };
                latest.insert(
                    deal.to_string(),
                    LatestActivity {
                        occurred_at,
                        result: source["result"].as_str().map(str::to_string),
                    },
                );
                Ok(())
            },
        )
        .await
        .map_err(unavailable)?;
        Ok(latest)
    }

    async fn visible_version(&self, key: &ItemKey) -> Result<Option<Version>, ServiceError> {
        let body = json!({
            "query": {"ids": {"values": [doc_id(key)]}},
            "size": 1,
            "_source": ["version"],
        });
        let answer = self.search(&body).await.map_err(unavailable)?;
        let hits = answer["hits"]["hits"]
            .as_array()
            .ok_or_else(|| unavailable(self.unreadable("the answer has no hits array".into())))?;
        let mut best: Option<Version> = None;
        for hit in hits {
            let version = hit["_source"]["version"].as_u64().ok_or_else(|| {
                unavailable(self.unreadable(format!("document {} has no `version`", hit["_id"])))
            })?;
            best = best.max(Some(Version(version)));
        }
        Ok(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsunagu_domain::ActionType;

    #[test]
    fn words_become_phrases_and_lone_cjk_characters_regexps() {
        assert_eq!(
            word_clause("memo", "来週訪問", false, true),
            Some(
                json!({"match_phrase": {"memo": {"query": "来週訪問", "zero_terms_query": "none"}}})
            )
        );
        assert_eq!(
            word_clause("memo", "株", false, true),
            Some(json!({"regexp": {"memo": {"value": "株|株.|.株"}}}))
        );
        assert_eq!(word_clause("memo", "、。", false, true), None);
        assert_eq!(
            word_clause("memo", "Meet", true, true),
            Some(json!({"prefix": {"memo": {"value": "meet"}}}))
        );
    }

    /// The filter clauses of `q`'s query, with text folded and no dictionary.
    fn filters_of(q: &ActivityQuery) -> Value {
        let text = TextFields {
            fold: true,
            words: None,
        };
        activity_query(q, text).unwrap()["bool"]["filter"].clone()
    }

    #[test]
    fn activity_queries_filter_each_axis() {
        let mut q = ActivityQuery {
            tenant_id: Some("t1".into()),
            actions: vec![ActionType::Call, ActionType::Visit],
            tags_all: vec!["a".into(), "b".into()],
            text: Some("  ".into()),
            ..ActivityQuery::default()
        };
        let filters = filters_of(&q);
        assert_eq!(
            filters,
            json!([
                {"term": {"kind": "activity"}},
                {"term": {"tenant_id": "t1"}},
                {"terms": {"action": ["call", "visit"]}},
                {"term": {"tags": "a"}},
                {"term": {"tags": "b"}},
            ])
        );
        q.occurred_to = DateTime::<Utc>::from_timestamp_micros(5);
        let filters = filters_of(&q);
        assert_eq!(filters[5], json!({"range": {"occurred_at_us": {"lt": 5}}}));
    }

    #[test]
    fn only_ids_none_matches_nothing_and_excludes_are_must_nots() {
        let mut q = RecordQuery::new(RecordKind::Deal);
        q.only_ids = Some(vec![]);
        q.exclude_ids = vec!["d1".into()];
        let query = record_query(&q, true).unwrap();
        assert_eq!(query["bool"]["filter"][1], json!({"match_none": {}}));
        assert_eq!(
            query["bool"]["must_not"],
            json!([{"terms": {"key": [doc_id(&RecordKind::Deal.key_for("d1"))]}}])
        );
    }

    #[test]
    fn relevance_positions_follow_by_score_then_time_then_hash() {
        let c = Cursor::scored(0.5, 100, 7);
        assert!(follows(Cursor::scored(0.4, 999, 0), c));
        assert!(follows(Cursor::scored(0.5, 99, 0), c));
        assert!(follows(Cursor::scored(0.5, 100, 8), c));
        assert!(!follows(Cursor::scored(0.5, 100, 7), c));
        assert!(!follows(Cursor::scored(0.5, 100, 6), c));
        assert!(!follows(Cursor::scored(0.6, 0, 0), c));
    }

    #[test]
    fn buckets_sort_like_the_embedded_index() {
        let b = |k: &str, n| Bucket {
            key: k.into(),
            count: n,
        };
        let mut buckets = vec![b("b", 1), b("a", 1), b("c", 2)];
        sort_buckets(&mut buckets, GroupBy::User);
        assert_eq!(buckets, vec![b("c", 2), b("a", 1), b("b", 1)]);
        sort_buckets(&mut buckets, GroupBy::Day);
        assert_eq!(buckets, vec![b("a", 1), b("b", 1), b("c", 2)]);
    }
}
