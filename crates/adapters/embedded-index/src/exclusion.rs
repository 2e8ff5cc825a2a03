//! [`Excluded`]: the query of an excluded word (`-見積`), wrapped so that tantivy's
//! exclusion reads it with plain seeks.
//!
//! Tantivy 0.27's exclusion probes the excluded docset with `seek_danger`, and the phrase
//! scorer's `seek_danger` asserts a target at or after its current document, which its
//! own earlier "danger" seeks may have moved past (a debug assertion that fires on
//! `商談 -"2回目"`). The default `seek_danger`, used here, seeks only forward and compares,
//! which is always valid; excluded terms are rare in a query, so the lost skipping does
//! not matter.

use tantivy::query::{EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::{DocId, DocSet, Score, SegmentReader, Term};

/// A query matching what `inner` matches, safe to exclude (see the module docs).
#[derive(Debug)]
pub(crate) struct Excluded(pub Box<dyn Query>);

impl Clone for Excluded {
    fn clone(&self) -> Self {
        Excluded(self.0.box_clone())
    }
}

impl Query for Excluded {
    fn weight(&self, enable_scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(ExcludedWeight(self.0.weight(enable_scoring)?)))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a Term, bool)) {
        self.0.query_terms(visitor)
    }
}

struct ExcludedWeight(Box<dyn Weight>);

impl Weight for ExcludedWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        Ok(Box::new(PlainSeeks(self.0.scorer(reader, boost)?)))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        self.0.explain(reader, doc)
    }
}

/// Delegates everything but `seek_danger`, which keeps the trait's default.
struct PlainSeeks(Box<dyn Scorer>);

impl DocSet for PlainSeeks {
    fn advance(&mut self) -> DocId {
        self.0.advance()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        self.0.seek(target)
    }

    fn doc(&self) -> DocId {
        self.0.doc()
    }

    fn size_hint(&self) -> u32 {
        self.0.size_hint()
    }
}

impl Scorer for PlainSeeks {
    fn score(&mut self) -> Score {
        self.0.score()
    }
}
