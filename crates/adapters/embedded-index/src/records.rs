//! Searching companies, deals and sales lists ([`RecordQuery`]), and the activity facts a
//! deal search combines with them: which deals have matching activities
//! ([`IndexView::deals_with_activity`]) and each deal's latest matching activity
//! ([`IndexView::latest_activity_per_deal`]).
//!
//! Records page in creation order (newest first) with the same cursor as activities.

use crate::error::IndexError;
use crate::index::IndexView;
use crate::query::{any_of, term_query, ActivityQuery, GroupBy};
use crate::schema::{
    date_of, doc_key, names, parse_doc_key, KIND_COMPANY, KIND_DEAL, KIND_SALES_LIST,
};
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::{HashMap, HashSet};
use std::ops::Bound;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery, TermSetQuery};
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal, SegmentReader, Term};
use tsunagu_domain::{Entity, ItemKey, Version};

pub use tsunagu_domain::search::{LatestActivity, RecordHit, RecordKind, RecordPage, RecordQuery};

fn doc_kind(kind: RecordKind) -> &'static str {
    match kind {
        RecordKind::Company => KIND_COMPANY,
        RecordKind::Deal => KIND_DEAL,
        RecordKind::SalesList => KIND_SALES_LIST,
    }
}

impl IndexView {
    pub(crate) fn search_records(&self, q: &RecordQuery) -> Result<RecordPage, IndexError> {
        let query = self.record_query(q)?;
        let searcher = self.searcher()?;
        let page = crate::query::collect_page(&searcher, &query, q.limit, q.cursor, false)?;
        let mut hits = Vec::with_capacity(page.addresses.len());
        for address in &page.addresses {
            if let Some(hit) = self.load_record(&searcher, *address)? {
                hits.push(hit);
            }
        }
        Ok(RecordPage {
            hits,
            total: page.total,
            next_cursor: page.next_cursor,
        })
    }

    /// The ids of every record matching `q` (cursor and limit ignored), unordered.
    pub(crate) fn record_ids(&self, q: &RecordQuery) -> Result<Vec<String>, IndexError> {
        let query = self.record_query(q)?;
        let searcher = self.searcher()?;
        let keys = searcher
            .search(&query, &crate::query::GroupCollector::keyword(names::KEY))
            .map_err(IndexError::tantivy("listing record ids"))?;
        Ok(keys
            .into_keys()
            .filter_map(|k| parse_doc_key(&k).map(|key| key.partition))
            .collect())
    }

    /// How many records matching `q` carry each tag (cursor and limit ignored), most
    /// used first.
    pub(crate) fn tag_counts(&self, q: &RecordQuery) -> Result<Vec<(String, u64)>, IndexError> {
        let query = self.record_query(q)?;
        let searcher = self.searcher()?;
        let counts = searcher
            .search(&query, &crate::query::GroupCollector::keyword(names::TAGS))
            .map_err(IndexError::tantivy("counting tags"))?;
        let mut counts: Vec<(String, u64)> = counts.into_iter().collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(counts)
    }

    /// The deals with at least one activity matching `q`.
    pub(crate) fn deals_with_activity(
        &self,
        q: &ActivityQuery,
    ) -> Result<HashSet<String>, IndexError> {
        Ok(self
            .aggregate(q, GroupBy::Deal, crate::query::TimeZone::UTC)?
            .into_iter()
            .map(|b| b.key)
            .collect())
    }

    /// For each deal with an activity matching `q`, the latest of them (by `occurred_at`).
    pub(crate) fn latest_activity_per_deal(
        &self,
        q: &ActivityQuery,
    ) -> Result<HashMap<String, LatestActivity>, IndexError> {
        let query = self.build_query(q)?;
        let searcher = self.searcher()?;
        searcher
            .search(&query, &LatestCollector)
            .map_err(IndexError::tantivy("finding each deal's latest activity"))
    }

    /// The version the index holds for `key`, a deletion's tombstone included.
    pub(crate) fn held_version(&self, key: &ItemKey) -> Result<Option<Version>, IndexError> {
        let searcher = self.searcher()?;
        let term = Term::from_field_text(self.fields.key, &doc_key(key));
        let mut best: Option<Version> = None;
        for segment in searcher.segment_readers() {
            let inverted = segment
                .inverted_index(self.fields.key)
                .map_err(IndexError::tantivy("reading the key index"))?;
            let Some(mut postings) = inverted
                .read_postings(&term, tantivy::schema::IndexRecordOption::Basic)
                .map_err(IndexError::io("reading the key postings"))?
            else {
                continue;
            };
            let versions = segment
                .fast_fields()
                .column_opt::<u64>(names::VERSION)
                .map_err(IndexError::tantivy("reading versions"))?;
            use tantivy::DocSet;
            let mut doc = postings.doc();
            while doc != tantivy::TERMINATED {
                if !segment.is_deleted(doc) {
                    if let Some(v) = versions.as_ref().and_then(|c| c.first(doc)) {
                        best = Some(best.map_or(Version(v), |b| b.max(Version(v))));
                    }
                }
                doc = postings.advance();
            }
        }
        Ok(best)
    }

    fn record_query(&self, q: &RecordQuery) -> Result<BooleanQuery, IndexError> {
        if q.limit > crate::query::MAX_LIMIT {
            return Err(IndexError::InvalidQuery(format!(
                "limit {} is above the maximum of {}; page with the cursor instead",
                q.limit,
                crate::query::MAX_LIMIT
            )));
        }
        let f = &self.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> =
            vec![(Occur::Must, term_query(f.kind, doc_kind(q.kind)))];
        let mut must = |query: Box<dyn Query>| clauses.push((Occur::Must, query));
        if let Some(tenant) = &q.tenant_id {
            must(term_query(f.tenant_id, tenant));
        }
        let keys = |ids: &[String]| -> Vec<String> {
            ids.iter().map(|id| doc_key(&q.kind.key_for(id))).collect()
        };
        if let Some(only) = &q.only_ids {
            must(Box::new(TermSetQuery::new(
                keys(only).iter().map(|k| Term::from_field_text(f.key, k)),
            )));
        }
        let stages: Vec<&str> = q.stages.iter().map(|s| s.as_str()).collect();
        for (field, values) in [
            (f.company_id, strs(&q.company_ids)),
            (f.user_id, strs(&q.owner_ids)),
            (f.stage, stages),
            (f.prefecture, strs(&q.prefectures)),
            (f.industry, strs(&q.industries)),
        ] {
            if let Some(clause) = any_of(field, &values) {
                must(clause);
            }
        }
        for tag in &q.tags_all {
            must(term_query(f.tags, tag));
        }
        if q.amount_min.is_some() || q.amount_max.is_some() {
            let bound = |v: Option<i64>| match v {
                None => Bound::Unbounded,
                Some(v) => Bound::Included(Term::from_field_i64(f.amount, v)),
            };
            must(Box::new(RangeQuery::new(
                bound(q.amount_min),
                bound(q.amount_max),
            )));
        }
        if q.close_from.is_some() || q.close_to.is_some() {
            let bound = |v: Option<NaiveDate>| match v {
                None => Bound::Unbounded,
                Some(d) => Bound::Included(Term::from_field_date(f.close_date, date_of(d))),
            };
            must(Box::new(RangeQuery::new(
                bound(q.close_from),
                bound(q.close_to),
            )));
        }
        clauses.extend(self.text_clauses(f.title, q.text.as_deref())?);
        if !q.exclude_ids.is_empty() {
            let excluded = keys(&q.exclude_ids);
            clauses.push((
                Occur::MustNot,
                Box::new(TermSetQuery::new(
                    excluded.iter().map(|k| Term::from_field_text(f.key, k)),
                )),
            ));
        }
        Ok(BooleanQuery::new(clauses))
    }

    /// Reads a stored company, deal or sales list back (`None` for anything else).
    fn load_record(
        &self,
        searcher: &tantivy::Searcher,
        address: DocAddress,
    ) -> Result<Option<RecordHit>, IndexError> {
        Ok(match self.load_entity(searcher, address)? {
            Some((_, _, Entity::ActivityLog(_))) | None => None,
            Some((key, version, entity)) => Some(RecordHit {
                key,
                version,
                entity,
            }),
        })
    }
}

// ---------------------------------------------------------------------------------------
// Latest activity per deal: per segment by deal ordinal, merged by deal id.

struct LatestCollector;

struct LatestSegment {
    deals: Option<StrColumn>,
    results: Option<StrColumn>,
    occurred_at: Option<Column<tantivy::DateTime>>,
    /// Per deal ordinal: (occurred_at µs, result ordinal).
    latest: HashMap<u64, (i64, Option<u64>)>,
}

type LatestFruit = HashMap<String, LatestActivity>;

impl Collector for LatestCollector {
    type Fruit = LatestFruit;
    type Child = LatestSegment;

    fn for_segment(
        &self,
        _segment_ord: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<LatestSegment> {
        let fast = segment.fast_fields();
        Ok(LatestSegment {
            deals: fast.str(names::DEAL_ID)?,
            results: fast.str(names::RESULT)?,
            occurred_at: fast.column_opt(names::OCCURRED_AT)?,
            latest: HashMap::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<LatestFruit>) -> tantivy::Result<LatestFruit> {
        let mut merged = LatestFruit::new();
        for fruit in fruits {
            for (deal, latest) in fruit {
                match merged.get(&deal) {
                    Some(kept) if kept.occurred_at >= latest.occurred_at => {}
                    _ => {
                        merged.insert(deal, latest);
                    }
                }
            }
        }
        Ok(merged)
    }
}

impl SegmentCollector for LatestSegment {
    type Fruit = LatestFruit;

    fn collect(&mut self, doc: DocId, _score: Score) {
        let Some(deal) = self.deals.as_ref().and_then(|c| c.term_ords(doc).next()) else {
            return;
        };
        let at = self
            .occurred_at
            .as_ref()
            .and_then(|c| c.first(doc))
            .map_or(i64::MIN, |t| t.into_timestamp_micros());
        let result = self.results.as_ref().and_then(|c| c.term_ords(doc).next());
        match self.latest.get(&deal) {
            Some((kept, _)) if *kept >= at => {}
            _ => {
                self.latest.insert(deal, (at, result));
            }
        }
    }

    fn harvest(self) -> LatestFruit {
        let mut out = LatestFruit::new();
        let Some(deals) = self.deals else {
            return out;
        };
        let mut deal = String::new();
        let mut result = String::new();
        for (deal_ord, (at, result_ord)) in self.latest {
            if !deals.ord_to_str(deal_ord, &mut deal).unwrap_or(false) {
                continue;
            }
            let result = match (result_ord, &self.results) {
                (Some(ord), Some(column))
                    if column.ord_to_str(ord, &mut result).unwrap_or(false) =>
                {
                    Some(result.clone())
                }
                _ => None,
            };
            let Some(occurred_at) = DateTime::<Utc>::from_timestamp_micros(at) else {
                continue;
            };
            out.insert(
                deal.clone(),
                LatestActivity {
                    occurred_at,
                    result,
                },
            );
        }
        out
    }
}

fn strs(values: &[String]) -> Vec<&str> {
    values.iter().map(String::as_str).collect()
}
