//! tsunagu's embedded store (`<data_dir>/primary.db`, SQLite) as a migration source,
//! through the store's own read-only reader ([`tsunagu_embedded_store::ReadOnlyStore`]):
//! nothing is created, migrated or written; a running store may keep running while it
//! is read, a closed one must stay closed until the run's first step (reading the
//! sources) is over. The items of one entity type are those whose body's `type` is that
//! type (`company`, `deal`, `activity_log`, `sales_list`, as the domain's `Entity` tags
//! them), read in key order within one read transaction. The record id is the item key
//! (`partition|sort`, `%` and `|` escaped as `%25` and `%7C`: the document id the
//! replication index uses), the properties are the body, plus `_partition`, `_sort` and
//! `_version`.

use super::node_line;
use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use tsunagu_domain::ItemKey;
use tsunagu_embedded_store::ReadOnlyStore;

/// The store file of a data directory.
pub fn primary_path(data_dir: &Path) -> PathBuf {
    data_dir.join("primary.db")
}

/// Reads every item whose body has `type` = `item_type` into `out`; returns the items
/// written. Blocking (SQLite).
pub fn fetch(
    data_dir: &Path,
    item_type: &str,
    out: &Path,
    progress: &indicatif::ProgressBar,
) -> Result<u64> {
    let path = primary_path(data_dir);
    let store = ReadOnlyStore::open(&path)?;
    let f = std::fs::File::create(out).map_err(|e| Error::io(out, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let mut unreported = 0u64;
    let written = store.for_each_item_of_type(item_type, |key, version, body| {
        let mut properties = match serde_json::from_str::<Value>(body) {
            Ok(Value::Object(m)) => m,
            _ => {
                return Err(Error::Other(format!(
                    "embedded store {}: item {key} has a body that is not a JSON object",
                    path.display()
                )))
            }
        };
        add_key_fields(&mut properties, &key, version.0 as i64);
        let line = node_line(
            &tsunagu_opensearch::document::doc_id(&key),
            item_type,
            properties,
        );
        writeln!(w, "{line}").map_err(|e| Error::io(out, e))?;
        unreported += 1;
        if unreported == 1024 {
            progress.inc(unreported);
            unreported = 0;
        }
        Ok(())
    })?;
    progress.inc(unreported);
    w.flush().map_err(|e| Error::io(out, e))?;
    w.get_ref().sync_all().map_err(|e| Error::io(out, e))?;
    Ok(written)
}

fn add_key_fields(properties: &mut Map<String, Value>, key: &ItemKey, version: i64) {
    properties.insert("_partition".into(), Value::String(key.partition.clone()));
    properties.insert("_sort".into(), Value::String(key.sort.clone()));
    properties.insert("_version".into(), Value::from(version));
}
