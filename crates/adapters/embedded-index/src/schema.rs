//! The index schema ([`Fields`]) and the mapping between domain values and index
//! documents: document keys, activity documents and tombstones.
//!
//! One document per item key: a live activity (`kind = "activity"`), company, deal or
//! sales list (`kind = "company" | "deal" | "sales_list"`), or a tombstone
//! (`kind = "tombstone"`) that remembers the version of a deletion so that a stale
//! replayed INSERT cannot bring the item back.

use crate::morphology::Dictionary;
use crate::tokenizer::JA_TOKENIZER_NAME;
use tantivy::schema::{
    DateOptions, DateTimePrecision, Field, IndexRecordOption, NumericOptions, Schema,
    TextFieldIndexing, TextOptions, FAST, INDEXED, STORED, STRING,
};
use tantivy::{DateTime, TantivyDocument};
use tsunagu_domain::{ActivityLog, Entity, ItemKey, Version};

pub(crate) const KIND_ACTIVITY: &str = "activity";
pub(crate) const KIND_TOMBSTONE: &str = "tombstone";
pub(crate) const KIND_COMPANY: &str = "company";
pub(crate) const KIND_DEAL: &str = "deal";
pub(crate) const KIND_SALES_LIST: &str = "sales_list";

/// Separates partition and sort key in a document key. Ids may not contain control
/// characters (see `ActivityLog::validate`), so the first 0x1F is the separator.
const KEY_SEPARATOR: char = '\u{1F}';

/// Field names, shared by the schema builder, the fast-field readers and the collectors.
pub(crate) mod names {
    pub const KEY: &str = "key";
    pub const KIND: &str = "kind";
    pub const VERSION: &str = "version";
    pub const TENANT_ID: &str = "tenant_id";
    pub const DEAL_ID: &str = "deal_id";
    pub const COMPANY_ID: &str = "company_id";
    pub const USER_ID: &str = "user_id";
    pub const ACTION: &str = "action";
    pub const RESULT: &str = "result";
    pub const TAGS: &str = "tags";
    pub const OCCURRED_AT: &str = "occurred_at";
    pub const MEMO: &str = "memo";
    /// The memo's word keys (with a dictionary only; see `crate::morphology`).
    pub const MEMO_WORDS: &str = "memo_words";
    /// The memo's bigrams inside each word (with a dictionary only).
    pub const MEMO_WORD_BIGRAMS: &str = "memo_word_bigrams";
    pub const SORT_HASH: &str = "sort_hash";
    pub const SOURCE: &str = "source";
    pub const COMMITTED_AT_US: &str = "committed_at_us";
    pub const INDEXED_AT_US: &str = "indexed_at_us";
    /// Company name, deal title, sales-list name (Japanese full text).
    pub const TITLE: &str = "title";
    pub const PREFECTURE: &str = "prefecture";
    pub const INDUSTRY: &str = "industry";
    pub const STAGE: &str = "stage";
    pub const AMOUNT: &str = "amount";
    pub const CLOSE_DATE: &str = "close_date";
}

/// Handles of every field of the schema.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields {
    pub key: Field,
    pub kind: Field,
    pub version: Field,
    pub tenant_id: Field,
    pub deal_id: Field,
    pub company_id: Field,
    pub user_id: Field,
    pub action: Field,
    pub result: Field,
    pub tags: Field,
    pub occurred_at: Field,
    pub memo: Field,
    /// With a dictionary: the words fields of the memo (`None` without one).
    pub memo_words: Option<WordFields>,
    pub sort_hash: Field,
    pub source: Field,
    pub committed_at_us: Field,
    pub indexed_at_us: Field,
    pub title: Field,
    pub prefecture: Field,
    pub industry: Field,
    pub stage: Field,
    pub amount: Field,
    pub close_date: Field,
}

/// The fields a dictionary adds to the memo (see `crate::morphology`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WordFields {
    /// One key per word.
    pub words: Field,
    /// Bigrams inside each word.
    pub bigrams: Field,
}

/// The tokenizer names of the words fields, when the index has a dictionary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WordTokenizers {
    pub words: String,
    pub bigrams: String,
}

impl WordTokenizers {
    pub(crate) fn of(dictionary: &Dictionary) -> Self {
        Self {
            words: dictionary.words_tokenizer_name(),
            bigrams: dictionary.word_bigrams_tokenizer_name(),
        }
    }
}

/// A Japanese full-text field analyzed by `tokenizer`, with positions for phrases.
fn text_field(tokenizer: &str) -> TextOptions {
    TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(tokenizer)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    )
}

/// The schema of a new index; with `words`, the memo's words fields too.
pub(crate) fn build_schema(words: Option<&WordTokenizers>) -> Schema {
    use names::*;
    let mut b = Schema::builder();
    b.add_text_field(KEY, STRING | STORED | FAST);
    b.add_text_field(KIND, STRING | STORED | FAST);
    b.add_u64_field(VERSION, FAST | STORED | INDEXED);
    // Raw (untokenized) keywords, fast so that they can be aggregated.
    // On deals, `user_id` is the owner and `tags` the deal's tags; on a sales list,
    // `deal_id` holds every member.
    for name in [
        TENANT_ID, DEAL_ID, COMPANY_ID, USER_ID, ACTION, RESULT, TAGS, PREFECTURE, INDUSTRY, STAGE,
    ] {
        b.add_text_field(name, STRING | FAST);
    }
    b.add_date_field(
        OCCURRED_AT,
        DateOptions::default()
            .set_indexed()
            .set_stored()
            .set_fast()
            .set_precision(DateTimePrecision::Microseconds),
    );
    b.add_text_field(MEMO, text_field(JA_TOKENIZER_NAME));
    b.add_text_field(TITLE, text_field(JA_TOKENIZER_NAME));
    b.add_i64_field(AMOUNT, NumericOptions::default().set_fast().set_indexed());
    b.add_date_field(
        CLOSE_DATE,
        DateOptions::default()
            .set_indexed()
            .set_fast()
            .set_precision(DateTimePrecision::Seconds),
    );
    b.add_u64_field(SORT_HASH, FAST | INDEXED | STORED);
    b.add_text_field(SOURCE, STORED);
    let fast_stored_i64 = NumericOptions::default().set_fast().set_stored();
    b.add_i64_field(COMMITTED_AT_US, fast_stored_i64.clone());
    b.add_i64_field(INDEXED_AT_US, fast_stored_i64);
    // Last, so that the fields before keep their ids with or without a dictionary.
    if let Some(words) = words {
        b.add_text_field(MEMO_WORDS, text_field(&words.words));
        b.add_text_field(MEMO_WORD_BIGRAMS, text_field(&words.bigrams));
    }
    b.build()
}

impl Fields {
    /// Looks every field up by name. An error names what differs, for
    /// [`crate::IndexError::SchemaMismatch`]: an index built with a dictionary opens only
    /// with the same one (`words`), one built without only without.
    pub(crate) fn from_schema(
        schema: &Schema,
        words: Option<&WordTokenizers>,
    ) -> Result<Fields, String> {
        let has_words = schema.get_field(names::MEMO_WORDS).is_ok();
        match (has_words, words) {
            (true, None) => {
                return Err("it was built with a Japanese dictionary, and the index is \
                     configured without one: set its `dictionary` again, or rebuild the \
                     index without"
                    .into())
            }
            (false, Some(_)) => {
                return Err(
                    "it was built without a Japanese dictionary, and the index is \
                     configured with one: rebuild it to use the dictionary"
                        .into(),
                )
            }
            _ => {}
        }
        let expected = build_schema(words);
        // Compare field by field: an index created by another program or an older
        // version must not be written to with assumptions that do not hold.
        for (_, entry) in expected.fields() {
            match schema.get_field(entry.name()) {
                Ok(field) if schema.get_field_entry(field) == entry => {}
                Ok(_) if matches!(entry.name(), names::MEMO_WORDS | names::MEMO_WORD_BIGRAMS) => {
                    return Err(
                        "it was analyzed with other dictionary sources or an older version \
                         of the word analysis"
                            .into(),
                    )
                }
                Ok(_) => return Err(format!("field `{}` has other options", entry.name())),
                Err(_) => return Err(format!("field `{}` is missing", entry.name())),
            }
        }
        let f = |name: &str| {
            schema
                .get_field(name)
                .map_err(|_| format!("field `{name}` is missing"))
        };
        use names::*;
        Ok(Fields {
            key: f(KEY)?,
            kind: f(KIND)?,
            version: f(VERSION)?,
            tenant_id: f(TENANT_ID)?,
            deal_id: f(DEAL_ID)?,
            company_id: f(COMPANY_ID)?,
            user_id: f(USER_ID)?,
            action: f(ACTION)?,
            result: f(RESULT)?,
            tags: f(TAGS)?,
            occurred_at: f(OCCURRED_AT)?,
            memo: f(MEMO)?,
            memo_words: match words {
                Some(_) => Some(WordFields {
                    words: f(MEMO_WORDS)?,
                    bigrams: f(MEMO_WORD_BIGRAMS)?,
                }),
                None => None,
            },
            sort_hash: f(SORT_HASH)?,
            source: f(SOURCE)?,
            committed_at_us: f(COMMITTED_AT_US)?,
            indexed_at_us: f(INDEXED_AT_US)?,
            title: f(TITLE)?,
            prefecture: f(PREFECTURE)?,
            industry: f(INDUSTRY)?,
            stage: f(STAGE)?,
            amount: f(AMOUNT)?,
            close_date: f(CLOSE_DATE)?,
        })
    }
}

/// The unique document key of an item: partition, 0x1F, sort key.
pub(crate) fn doc_key(key: &ItemKey) -> String {
    format!("{}{KEY_SEPARATOR}{}", key.partition, key.sort)
}

/// The inverse of [`doc_key`].
pub(crate) fn parse_doc_key(doc_key: &str) -> Option<ItemKey> {
    doc_key
        .split_once(KEY_SEPARATOR)
        .map(|(partition, sort)| ItemKey::new(partition, sort))
}

pub(crate) fn to_tantivy_date(t: chrono::DateTime<chrono::Utc>) -> DateTime {
    DateTime::from_timestamp_micros(t.timestamp_micros())
}

/// The document of a live activity. Fails only if the activity cannot be serialized for
/// the stored `source` (which plain structs never do).
pub(crate) fn activity_doc(
    fields: &Fields,
    key: &ItemKey,
    version: Version,
    activity: &ActivityLog,
    committed_at_us: i64,
    indexed_at_us: i64,
) -> Result<TantivyDocument, serde_json::Error> {
    let mut doc = common_doc(
        fields,
        key,
        version,
        KIND_ACTIVITY,
        committed_at_us,
        indexed_at_us,
    );
    doc.add_text(fields.tenant_id, &activity.tenant_id);
    doc.add_text(fields.deal_id, &activity.deal_id);
    doc.add_text(fields.company_id, &activity.company_id);
    doc.add_text(fields.user_id, &activity.user_id);
    doc.add_text(fields.action, activity.action.as_str());
    if let Some(result) = &activity.result {
        doc.add_text(fields.result, result);
    }
    for tag in &activity.tags {
        doc.add_text(fields.tags, tag);
    }
    doc.add_date(fields.occurred_at, to_tantivy_date(activity.occurred_at));
    doc.add_text(fields.memo, &activity.memo);
    if let Some(words) = fields.memo_words {
        doc.add_text(words.words, &activity.memo);
        doc.add_text(words.bigrams, &activity.memo);
    }
    doc.add_text(fields.source, serde_json::to_string(activity)?);
    Ok(doc)
}

/// The document of a live company, deal or sales list. `occurred_at` holds its creation
/// time, the order its listings are paged in.
pub(crate) fn record_doc(
    fields: &Fields,
    key: &ItemKey,
    version: Version,
    entity: &Entity,
    committed_at_us: i64,
    indexed_at_us: i64,
) -> Result<TantivyDocument, serde_json::Error> {
    let (kind, source) = match entity {
        Entity::ActivityLog(a) => {
            return activity_doc(fields, key, version, a, committed_at_us, indexed_at_us)
        }
        Entity::Company(c) => (KIND_COMPANY, serde_json::to_string(c)?),
        Entity::Deal(d) => (KIND_DEAL, serde_json::to_string(d)?),
        Entity::SalesList(l) => (KIND_SALES_LIST, serde_json::to_string(l)?),
    };
    let mut doc = common_doc(fields, key, version, kind, committed_at_us, indexed_at_us);
    doc.add_text(fields.tenant_id, entity.tenant_id());
    match entity {
        Entity::ActivityLog(_) => {}
        Entity::Company(c) => {
            doc.add_text(fields.company_id, &c.id);
            doc.add_text(fields.title, &c.name);
            if let Some(p) = &c.prefecture {
                doc.add_text(fields.prefecture, p);
            }
            if let Some(i) = &c.industry {
                doc.add_text(fields.industry, i);
            }
            doc.add_date(fields.occurred_at, to_tantivy_date(c.created_at));
        }
        Entity::Deal(d) => {
            doc.add_text(fields.deal_id, &d.id);
            doc.add_text(fields.company_id, &d.company_id);
            doc.add_text(fields.user_id, &d.owner_id);
            doc.add_text(fields.title, &d.title);
            doc.add_text(fields.stage, d.stage.as_str());
            doc.add_i64(fields.amount, d.amount);
            if let Some(date) = d.expected_close_date {
                doc.add_date(fields.close_date, date_of(date));
            }
            for tag in &d.tags {
                doc.add_text(fields.tags, tag);
            }
            doc.add_date(fields.occurred_at, to_tantivy_date(d.created_at));
        }
        Entity::SalesList(l) => {
            doc.add_text(fields.title, &l.name);
            for deal in &l.deal_ids {
                doc.add_text(fields.deal_id, deal);
            }
            doc.add_date(fields.occurred_at, to_tantivy_date(l.created_at));
        }
    }
    doc.add_text(fields.source, source);
    Ok(doc)
}

/// Midnight UTC of a calendar date.
pub(crate) fn date_of(date: chrono::NaiveDate) -> DateTime {
    DateTime::from_timestamp_secs(date.and_time(chrono::NaiveTime::MIN).and_utc().timestamp())
}

/// The document that replaces a deleted item: its key, the deletion's version and when
/// it was written (for retention).
pub(crate) fn tombstone_doc(
    fields: &Fields,
    key: &ItemKey,
    version: Version,
    committed_at_us: i64,
    indexed_at_us: i64,
) -> TantivyDocument {
    common_doc(
        fields,
        key,
        version,
        KIND_TOMBSTONE,
        committed_at_us,
        indexed_at_us,
    )
}

fn common_doc(
    fields: &Fields,
    key: &ItemKey,
    version: Version,
    kind: &str,
    committed_at_us: i64,
    indexed_at_us: i64,
) -> TantivyDocument {
    let mut doc = TantivyDocument::new();
    doc.add_text(fields.key, doc_key(key));
    doc.add_text(fields.kind, kind);
    doc.add_u64(fields.version, version.0);
    doc.add_u64(fields.sort_hash, key.stable_hash());
    doc.add_i64(fields.committed_at_us, committed_at_us);
    doc.add_i64(fields.indexed_at_us, indexed_at_us);
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_keys_round_trip() {
        let key = ItemKey::new("deal-1", "activity#a1");
        assert_eq!(parse_doc_key(&doc_key(&key)), Some(key));
        assert_eq!(parse_doc_key("no separator"), None);
    }

    #[test]
    fn a_fresh_schema_matches_itself() {
        assert!(Fields::from_schema(&build_schema(None), None).is_ok());
        let words = WordTokenizers {
            words: "w".into(),
            bigrams: "b".into(),
        };
        let with = build_schema(Some(&words));
        assert!(Fields::from_schema(&with, Some(&words)).is_ok());
        // A dictionary added or removed is a schema change, named as such.
        let added = Fields::from_schema(&build_schema(None), Some(&words)).unwrap_err();
        assert!(added.contains("without a Japanese dictionary"), "{added}");
        let removed = Fields::from_schema(&with, None).unwrap_err();
        assert!(removed.contains("with a Japanese dictionary"), "{removed}");
        let other = WordTokenizers {
            words: "w2".into(),
            bigrams: "b2".into(),
        };
        let changed = Fields::from_schema(&with, Some(&other)).unwrap_err();
        assert!(changed.contains("other dictionary sources"), "{changed}");
    }
}
