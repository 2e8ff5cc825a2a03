//! The index layout: document ids derived from item keys ([`doc_id`], [`parse_doc_id`]),
//! the documents written for live entities and for deletions ([`entity_doc`],
//! [`tombstone_doc`]), and the settings and mapping of a new index ([`index_body`]).
//!
//! The fields and their meaning are the embedded index's (`tsunagu-embedded-index`
//! `schema.rs`), so a query means the same on both: one document per item key, `kind`
//! telling an activity, company, deal, sales list or a tombstone apart; on deals
//! `user_id` is the owner, on sales lists `deal_id` holds every member; `occurred_at` is
//! an activity's time and the creation time of the other kinds; `memo` and `title` are
//! Japanese full text, sent normalized as the embedded index normalizes it
//! ([`crate::analysis::normalize`]: NFKC, lower case, spelling variants folded), as query
//! text is, so the cluster's analyzer only splits it and every cluster (osmem-server
//! too, which keeps phrase positions of the text before char filters) finds the same
//! phrases; the entity itself is in `source`. Searches must filter `kind: tombstone` out.
//!
//! With a Japanese dictionary (`dictionary` in the config, [`TextFields::words`]), an
//! activity also carries its memo's words, analyzed here by [`tsunagu_dictionary`] as
//! the embedded index analyzes them, so no analysis plugin is needed and both backends
//! split the same memo the same way: `memo_words` (the word keys in order, one token
//! each) and `memo_word_bigrams` (one array value per word holding its bigrams; the
//! array's position gap keeps a phrase inside one word). Both fields are split on spaces
//! only (the built-in `whitespace` analyzer). The analysis that wrote them is recorded in
//! the mapping's `_meta` ([`WORDS_META`]), so an index is never read or written with
//! another.

use crate::analysis::normalize;
use crate::config::{Analyzer, OpenSearchConfig};
use serde_json::{json, Value};
use tsunagu_dictionary::Dictionary;
use tsunagu_domain::{Entity, ItemKey, Version};

pub const KIND_ACTIVITY: &str = "activity";
pub const KIND_TOMBSTONE: &str = "tombstone";
pub const KIND_COMPANY: &str = "company";
pub const KIND_DEAL: &str = "deal";
pub const KIND_SALES_LIST: &str = "sales_list";

/// The name of the Japanese analyzer in the index settings (its type comes from
/// [`Analyzer`]), so the mapping is the same whichever analysis backs it.
pub const JA_ANALYZER: &str = "tsunagu_ja";

/// The memo's word keys (see the module docs).
pub const MEMO_WORDS: &str = "memo_words";
/// The memo's bigrams, word by word (see the module docs).
pub const MEMO_WORD_BIGRAMS: &str = "memo_word_bigrams";
/// The key of the mapping's `_meta` naming the word analysis of the index
/// ([`Dictionary::analysis_id`]); absent without one.
pub const WORDS_META: &str = "tsunagu_words";

/// How the text fields of a document are written: normalized when `fold`
/// ([`crate::config::Analyzer::folds`]), and with the memo's word fields when there is a
/// dictionary.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextFields<'a> {
    pub fold: bool,
    pub words: Option<&'a Dictionary>,
}

/// OpenSearch's and Elasticsearch's limit on `_id`, in bytes.
pub const MAX_ID_BYTES: usize = 512;

/// Separates the partition and sort key in a document id. Partition and sort keys may
/// hold any character, so `%` and `|` inside them are escaped (`%25`, `%7C`): the only
/// bare `|` of an id is the separator, and decoding is exact.
const SEPARATOR: char = '|';

/// The document id of an item: escaped partition, `|`, escaped sort key. Readable for
/// the usual keys (`deal-1|activity#a1`) and at most ~3× longer for odd ones.
pub fn doc_id(key: &ItemKey) -> String {
    format!("{}{SEPARATOR}{}", escape(&key.partition), escape(&key.sort))
}

/// The inverse of [`doc_id`]; `None` for an id this crate did not write.
pub fn parse_doc_id(id: &str) -> Option<ItemKey> {
    let (partition, sort) = id.split_once(SEPARATOR)?;
    Some(ItemKey::new(unescape(partition)?, unescape(sort)?))
}

fn escape(part: &str) -> String {
    part.replace('%', "%25").replace(SEPARATOR, "%7C")
}

fn unescape(part: &str) -> Option<String> {
    if part.contains(SEPARATOR) {
        return None;
    }
    let mut out = String::with_capacity(part.len());
    let mut rest = part;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let code = rest.get(at..at + 3)?;
        out.push(match code {
            "%25" => '%',
            "%7C" => SEPARATOR,
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// The `sort_key` of an item: its stable hash as 16 lowercase hex digits, so that the
/// keyword order is the hash's order as a u64 (the embedded index's tie-breaker). A long
/// cannot carry it: `sort_hash` holds the u64's bits, which order hashes ≥ 2^63 first, and
/// some OpenSearch-API servers compare longs as doubles (53 bits).
pub fn sort_key(hash: u64) -> String {
    format!("{hash:016x}")
}

/// The inverse of [`sort_key`].
pub fn parse_sort_key(text: &str) -> Option<u64> {
    (text.len() == 16)
        .then(|| u64::from_str_radix(text, 16).ok())
        .flatten()
}

/// Fields every document has.
fn common(key: &ItemKey, version: Version, kind: &str, committed_at_us: i64, now_us: i64) -> Value {
    let hash = key.stable_hash();
    json!({
        "key": doc_id(key),
        "kind": kind,
        "version": version.0,
        // The embedded index's stable tie-breaker; a u64 stored bit for bit in a long.
        "sort_hash": hash as i64,
        "sort_key": sort_key(hash),
        "committed_at_us": committed_at_us,
        "indexed_at_us": now_us,
    })
}

/// The document of a live entity, its text fields written as `text` says.
pub fn entity_doc(
    key: &ItemKey,
    version: Version,
    entity: &Entity,
    committed_at_us: i64,
    now_us: i64,
    text: TextFields<'_>,
) -> Value {
    let normalize = |t: &str| {
        if text.fold {
            normalize(t)
        } else {
            t.to_string()
        }
    };
    let kind = match entity {
        Entity::ActivityLog(_) => KIND_ACTIVITY,
        Entity::Company(_) => KIND_COMPANY,
        Entity::Deal(_) => KIND_DEAL,
        Entity::SalesList(_) => KIND_SALES_LIST,
    };
    let mut doc = common(key, version, kind, committed_at_us, now_us);
    let mut fields = match entity {
        Entity::ActivityLog(a) => json!({
            "tenant_id": a.tenant_id,
            "deal_id": a.deal_id,
            "company_id": a.company_id,
            "user_id": a.user_id,
            "action": a.action.as_str(),
            "result": a.result,
            "tags": a.tags,
            "occurred_at": a.occurred_at,
            "occurred_at_us": a.occurred_at.timestamp_micros(),
            "memo": normalize(&a.memo),
        }),
        Entity::Company(c) => json!({
            "tenant_id": c.tenant_id,
            "company_id": c.id,
            "title": normalize(&c.name),
            "prefecture": c.prefecture,
            "industry": c.industry,
            "occurred_at": c.created_at,
            "occurred_at_us": c.created_at.timestamp_micros(),
        }),
        Entity::Deal(d) => json!({
            "tenant_id": d.tenant_id,
            "deal_id": d.id,
            "company_id": d.company_id,
            "user_id": d.owner_id,
            "title": normalize(&d.title),
            "stage": d.stage.as_str(),
            "amount": d.amount,
            "close_date": d.expected_close_date,
            "tags": d.tags,
            "occurred_at": d.created_at,
            "occurred_at_us": d.created_at.timestamp_micros(),
        }),
        Entity::SalesList(l) => json!({
            "tenant_id": l.tenant_id,
            "title": normalize(&l.name),
            "deal_id": l.deal_ids,
            "occurred_at": l.created_at,
            "occurred_at_us": l.created_at.timestamp_micros(),
        }),
    };
    if let (Entity::ActivityLog(a), Some(dictionary)) = (entity, text.words) {
        let keys: Vec<String> = dictionary
            .words(&a.memo)
            .into_iter()
            .map(|w| w.key)
            .collect();
        let bigrams: Vec<String> = dictionary
            .bigrams_by_word(&a.memo)
            .into_iter()
            .map(|word| word.join(" "))
            .collect();
        fields[MEMO_WORDS] = json!(keys.join(" "));
        fields[MEMO_WORD_BIGRAMS] = json!(bigrams);
    }
    if let (Value::Object(doc), Value::Object(fields)) = (&mut doc, fields) {
        // Absent optional values stay absent (as in the embedded index), not null.
        doc.extend(fields.into_iter().filter(|(_, v)| !v.is_null()));
        // The entity itself, stored but not indexed (the embedded index's `source`).
        let mut source = entity.to_json();
        if let Value::Object(s) = &mut source {
            s.remove("type");
        }
        doc.insert("source".into(), source);
    }
    doc
}

/// The document that replaces a deleted item: it keeps the deletion's version, so that a
/// stale replayed write (a lower external version) is refused instead of resurrecting it.
pub fn tombstone_doc(key: &ItemKey, version: Version, committed_at_us: i64, now_us: i64) -> Value {
    common(key, version, KIND_TOMBSTONE, committed_at_us, now_us)
}

/// The body of `PUT /<index>`: settings (shards, replicas, the Japanese analyzer, a
/// translog fsync per request so that an acknowledged bulk is durable) and the strict
/// mapping, with the memo's word fields when there is a dictionary (`words`).
pub fn index_body(config: &OpenSearchConfig, words: Option<&Dictionary>) -> Value {
    let keyword = json!({"type": "keyword"});
    let long = json!({"type": "long"});
    let text = json!({"type": "text", "analyzer": JA_ANALYZER});
    let mut properties = serde_json::Map::new();
    for name in [
        "key",
        "kind",
        "sort_key",
        "tenant_id",
        "deal_id",
        "company_id",
        "user_id",
        "action",
        "result",
        "tags",
        "prefecture",
        "industry",
        "stage",
    ] {
        properties.insert(name.into(), keyword.clone());
    }
    for name in [
        "version",
        "amount",
        "sort_hash",
        "occurred_at_us",
        "committed_at_us",
        "indexed_at_us",
    ] {
        properties.insert(name.into(), long.clone());
    }
    properties.insert("memo".into(), text.clone());
    properties.insert("title".into(), text);
    let mut mappings = json!({
        // A field the sink does not know is a bug, not a new column.
        "dynamic": "strict",
    });
    if let Some(dictionary) = words {
        let split = json!({"type": "text", "analyzer": "whitespace"});
        properties.insert(MEMO_WORDS.into(), split.clone());
        properties.insert(MEMO_WORD_BIGRAMS.into(), split);
        mappings["_meta"] = json!({ WORDS_META: dictionary.analysis_id() });
    }
    properties.insert("occurred_at".into(), json!({"type": "date"}));
    properties.insert("close_date".into(), json!({"type": "date"}));
    properties.insert("source".into(), json!({"type": "object", "enabled": false}));
    mappings["properties"] = Value::Object(properties);
    let analysis = match config.analyzer {
        Analyzer::Cjk => crate::analysis::analyzer_settings(JA_ANALYZER, false),
        Analyzer::CjkIcu => crate::analysis::analyzer_settings(JA_ANALYZER, true),
        Analyzer::Kuromoji => json!({"analyzer": {JA_ANALYZER: {"type": "kuromoji"}}}),
    };
    json!({
        "settings": {
            "number_of_shards": config.number_of_shards,
            "number_of_replicas": config.number_of_replicas,
            "index.translog.durability": "request",
            // The sink never deletes documents (deletions are tombstone documents with
            // their version), so the versions of documents deleted outside it need not be
            // kept: drift repair deletes a document written outside the sink and writes
            // the primary's version, which the cluster would otherwise refuse for 60 s.
            "index.gc_deletes": "0s",
            "analysis": analysis,
        },
        "mappings": mappings,
    })
}

/// Fields searches sort and page on, added after the first release: the sink adds them to
/// an existing index that lacks them ([`crate::OpenSearchSink::ensure_index`]), and
/// documents written before need a backfill to carry them (see `docs/opensearch.md`).
pub const SEARCH_FIELDS: [(&str, &str); 2] = [("occurred_at_us", "long"), ("sort_key", "keyword")];

/// Fields whose mapping an existing index must have for the sink to work (checked on
/// start, so that writing to a foreign index fails loudly instead of subtly).
pub const REQUIRED_FIELDS: [(&str, &str); 4] = [
    ("key", "keyword"),
    ("kind", "keyword"),
    ("version", "long"),
    ("memo", "text"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn usual_ids_read_well() {
        let key = ItemKey::new("deal-1", "activity#a1");
        assert_eq!(doc_id(&key), "deal-1|activity#a1");
        assert_eq!(parse_doc_id("deal-1|activity#a1"), Some(key));
        assert_eq!(doc_id(&ItemKey::new("a|b", "%7C")), "a%7Cb|%257C");
        assert_eq!(parse_doc_id("no separator"), None);
        assert_eq!(parse_doc_id("bad%zz|x"), None);
    }

    proptest! {
        #[test]
        fn ids_round_trip(partition in ".*", sort in ".*") {
            let key = ItemKey::new(partition, sort);
            prop_assert_eq!(parse_doc_id(&doc_id(&key)), Some(key));
        }

        #[test]
        fn distinct_keys_get_distinct_ids(a in "[a|%7C]{0,6}", b in "[a|%7C]{0,6}", c in "[a|%7C]{0,6}", d in "[a|%7C]{0,6}") {
            let (k1, k2) = (ItemKey::new(a, b), ItemKey::new(c, d));
            prop_assert_eq!(k1 == k2, doc_id(&k1) == doc_id(&k2));
        }
    }

    #[test]
    fn documents_use_only_mapped_fields() {
        let body = index_body(&OpenSearchConfig::new("http://x:9200"), None);
        let mapped = body["mappings"]["properties"].as_object().unwrap();
        let activity = Entity::from_json(&json!({
            "type": "activity_log", "id": "a", "tenant_id": "t", "deal_id": "d",
            "company_id": "c", "user_id": "u", "action": "call", "result": "ok",
            "memo": "東京で商談", "tags": ["x"],
            "occurred_at": "2026-01-01T00:00:00Z", "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap();
        let doc = entity_doc(
            &activity.key(),
            Version(3),
            &activity,
            1,
            2,
            TextFields {
                fold: true,
                words: None,
            },
        );
        for field in doc.as_object().unwrap().keys() {
            assert!(mapped.contains_key(field), "`{field}` is not mapped");
        }
        assert_eq!(doc["kind"], "activity");
        assert_eq!(doc["version"], 3);
        assert_eq!(doc["source"]["memo"], "東京で商談");
        // Indexed normalized (hiragana folded), kept as written in the source.
        assert_eq!(doc["memo"], "東京デ商談");
        assert!(doc["source"].get("type").is_none());
        let tomb = tombstone_doc(&activity.key(), Version(4), 1, 2);
        assert_eq!(tomb["kind"], "tombstone");
        assert_eq!(
            body["settings"]["analysis"]["analyzer"][JA_ANALYZER]["type"],
            "custom"
        );
        assert_eq!(doc["sort_key"], sort_key(activity.key().stable_hash()));
        assert_eq!(doc["occurred_at_us"], 1_767_225_600_000_000i64);
        for (field, kind) in SEARCH_FIELDS {
            assert_eq!(mapped[field]["type"], kind);
        }
    }

    #[test]
    fn a_dictionary_adds_the_memo_words() {
        let Some(dictionary) =
            tsunagu_dictionary::test_dictionary("a_dictionary_adds_the_memo_words")
        else {
            return;
        };
        let body = index_body(&OpenSearchConfig::new("http://x:9200"), Some(&dictionary));
        let mapped = body["mappings"]["properties"].as_object().unwrap();
        assert_eq!(
            body["mappings"]["_meta"][WORDS_META],
            dictionary.analysis_id()
        );
        let activity = Entity::from_json(&json!({
            "type": "activity_log", "id": "a", "tenant_id": "t", "deal_id": "d",
            "company_id": "c", "user_id": "u", "action": "call", "result": "ok",
            "memo": "東京都港区でお見積り", "tags": [],
            "occurred_at": "2026-01-01T00:00:00Z", "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap();
        let text = TextFields {
            fold: true,
            words: Some(&dictionary),
        };
        let doc = entity_doc(&activity.key(), Version(3), &activity, 1, 2, text);
        for field in doc.as_object().unwrap().keys() {
            assert!(mapped.contains_key(field), "`{field}` is not mapped");
        }
        // The honorific お goes, 見積り is keyed by its kanji; one array value per word
        // with bigrams (都, 港, 区 and で have none).
        assert_eq!(doc[MEMO_WORDS], "東京 都 港 区 デ 見積");
        assert_eq!(doc[MEMO_WORD_BIGRAMS], json!(["東京", "見積 積リ"]));
        let without = index_body(&OpenSearchConfig::new("http://x:9200"), None);
        assert!(without["mappings"].get("_meta").is_none());
        assert!(without["mappings"]["properties"].get(MEMO_WORDS).is_none());
    }

    #[test]
    fn sort_keys_order_as_u64() {
        let hashes = [0u64, 1, (1 << 63) - 1, 1 << 63, u64::MAX];
        for pair in hashes.windows(2) {
            assert!(sort_key(pair[0]) < sort_key(pair[1]));
        }
        for h in hashes {
            assert_eq!(parse_sort_key(&sort_key(h)), Some(h));
        }
        assert_eq!(parse_sort_key("xyz"), None);
    }
}
