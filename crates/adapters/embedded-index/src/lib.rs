//! The embedded search index of tsunagu: activity logs (活動履歴), and the companies,
//! deals and sales lists they belong to, in a Tantivy index in a local directory.
//! Activities are searchable on several axes at once (tenant, deal, company, user, action,
//! result, tags, time range, Japanese memo text) and aggregatable; deals combine their own
//! fields with their company's and with facts about their activities.
//!
//! - [`index`](mod@index): opening the index. [`ActivityIndex`] is the writer and implements the
//!   engine's [`tsunagu_engine::ports::Sink`]: a version guard (with tombstones for
//!   deletions) makes replays harmless, and a single writer thread group-commits
//!   concurrent batches; `apply` returns once its records are committed and searchable.
//!   [`ActivityIndexReader`] opens the same directory read-only from another process.
//! - [`query`](mod@query): [`ActivityQuery`], [`SearchPage`] with stable cursor pagination, and
//!   aggregations by [`GroupBy`].
//! - [`records`](mod@records): companies, deals and sales lists ([`RecordQuery`]), and the
//!   per-deal activity facts a deal search combines with them.
//! - [`tokenizer`](mod@tokenizer): [`JaBigramTokenizer`], dictionary-free Japanese text analysis
//!   (NFKC, lowercase, CJK bigrams, Latin words).
//! - [`morphology`](mod@morphology): the tokenizers of the words fields that the optional
//!   MeCab IPADIC [`Dictionary`] (`tsunagu-dictionary`) adds to the memo, so that whole
//!   words do not match across word boundaries and okurigana variants meet.
//! - [`service`](mod@service): [`ActivityIndex`] as the application's search port.
//! - [`error`](mod@error): [`IndexError`].
//! - [`inspect`](mod@inspect): [`IndexSnapshot`], key hashes and versions from fast fields,
//!   for reconciling the index with the primary.
//!
//! Internals: `schema` (fields and document mapping), `writer` (the writer thread and
//! group commit) and `leftovers` (removing at open the files a killed process left).

pub mod durability;
pub mod error;
mod exclusion;
pub mod index;
pub mod inspect;
mod leftovers;
pub mod morphology;
pub mod query;
pub mod records;
mod schema;
pub mod service;
pub mod tokenizer;
mod writer;

#[cfg(test)]
mod tests;

pub use error::IndexError;
pub use index::{
    ActivityIndex, ActivityIndexReader, IndexOptions, DEFAULT_DURABILITY_INTERVAL_MS,
    DEFAULT_REFRESH_INTERVAL_MS,
};
pub use inspect::IndexSnapshot;
pub use morphology::{Dictionary, DictionaryError};
pub use query::{
    ActivityQuery, Bucket, Cursor, GroupBy, Hit, SearchPage, DEFAULT_LIMIT, MAX_LIMIT,
};
pub use records::{LatestActivity, RecordHit, RecordKind, RecordPage, RecordQuery};
pub use tokenizer::{JaBigramTokenizer, JA_TOKENIZER_NAME};
