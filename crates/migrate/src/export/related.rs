//! Relationship-sourced columns (`from_relationship`): a column of a node table whose
//! value is the id of the node at the other end of the row's one relationship of a type
//! (outgoing or incoming, optionally only to nodes of a label).
//!
//! The relationships are not in the node's record, so before a table with such columns
//! is exported its partition is joined with the relationship partition (`rel:TYPE`) by a
//! sort-merge join on disk, in the sorted run files of [`super::keys`] (memory is one
//! sort block of [`SORT_BLOCK`] small records, whatever the size of the graph):
//!
//! 1. the table's lines: `(node id, line number)` for every line of its partition, sorted
//!    by node id ([`node_runs`]);
//! 2. per column, the **relationship map**: `(node id, other end's id, relationship id)`
//!    for every relationship of the type (the node is the start for `out`, the end for
//!    `in`; with a `label`, only those whose other end carries it), sorted by node id;
//! 3. one merge pass over both gives, for each line whose node has at least one such
//!    relationship, their count and the first [`MAX_IDS`] other ends, sorted back by
//!    line number;
//! 4. the export's reader thread reads that file alongside the partition
//!    ([`RelatedColumns::next_line`]): one [`Related`] per line and column, handed to the
//!    transform workers with the line, which turn it into the column's value or a reject
//!    (`missing_relationship`, `multiple_relationships`).
//!
//! Whether the other end's row was accepted is the foreign key's business: a foreign key
//! on the column is checked like any other (`dangling_foreign_key`), after the join.
//! Everything is sorted by (fingerprint, bytes) and line number, so the result does not
//! depend on the order of the relationships in the export or on thread timing.

use super::keys::{self, Key, Runs};
use crate::error::{Error, Result};
use crate::source::apoc::{read_piece, record_id, relationship_ends};
use crate::source::PartitionKey;
use crate::spec::{Direction, RelationshipRef, Table};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Records sorted in memory at once before they become a run on disk.
pub const SORT_BLOCK: usize = 200_000;

/// Other ends kept per node for a reject's detail (the count is always exact).
pub const MAX_IDS: usize = 5;

/// What a node has at the other end of a relationship column's relationship.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Related {
    /// No such relationship.
    None,
    /// Exactly one: the other end's id.
    One(String),
    /// Two or more: how many, and the first [`MAX_IDS`] other ends' ids (in key order).
    Many { count: u64, ids: Vec<String> },
}

/// Appends a length-prefixed field (the encoding of [`keys::encode`]).
fn push_field(out: &mut Vec<u8>, value: &str) {
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value.as_bytes());
}

/// The first length-prefixed field of `bytes` (with its prefix).
fn head(bytes: &[u8]) -> &[u8] {
    let Some(len) = bytes.get(..4) else {
        return bytes;
    };
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    &bytes[..(4 + len).min(bytes.len())]
}

/// A key ordered by the node id `node`, then `rest`: the records of one node are
/// contiguous in a sorted run, in the order of `rest`.
fn node_key(node: &str, rest: impl FnOnce(&mut Vec<u8>)) -> Key {
    let mut bytes = Vec::with_capacity(4 + node.len() + 16);
    push_field(&mut bytes, node);
    let hash = keys::fingerprint(&bytes);
    rest(&mut bytes);
    Key {
        hash,
        bytes: bytes.into_boxed_slice(),
    }
}

/// Collects keys into runs, a sort block at a time, then into one sorted file.
struct Sorter {
    runs: Runs,
    block: Vec<Key>,
    limit: usize,
    path: PathBuf,
}

impl Sorter {
    /// A sorter whose runs go beside `path` (named after its stem), the sorted file.
    fn new(path: &Path, limit: usize) -> Result<Sorter> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("sort");
        Ok(Sorter {
            runs: Runs::new(dir, name)?,
            block: Vec::new(),
            limit: limit.max(1),
            path: path.to_path_buf(),
        })
    }

    fn push(&mut self, key: Key) -> Result<()> {
        self.block.push(key);
        if self.block.len() >= self.limit {
            self.runs.add(std::mem::take(&mut self.block))?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<PathBuf> {
        self.runs.add(std::mem::take(&mut self.block))?;
        self.runs.finish(&self.path)?;
        Ok(self.path)
    }
}

/// Step 1: `(node id, line number)` of every line of the table's partition that is a
/// record with an id, sorted by node id. Lines are numbered as the export reads them.
fn node_runs(input: &[PathBuf], dir: &Path, block: usize) -> Result<PathBuf> {
    let mut sorter = Sorter::new(&dir.join("nodes.keys"), block)?;
    let mut seq = 0u64;
    let mut failed = None;
    for piece in input {
        read_piece(piece, |_, line| {
            if let Some(id) = record_id(line) {
                let key = node_key(&id, |b| b.extend_from_slice(&seq.to_be_bytes()));
                if let Err(e) = sorter.push(key) {
                    failed = Some(e);
                    return false;
                }
            }
            seq += 1;
            true
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
    }
    sorter.finish()
}

/// Step 2: the relationship map of `rel`, sorted by node id. Lines that are not
/// relationships are left out (the partition step reports malformed lines).
fn relationship_map(
    rel: &RelationshipRef,
    pieces: &[PathBuf],
    path: &Path,
    block: usize,
) -> Result<PathBuf> {
    let mut sorter = Sorter::new(path, block)?;
    let mut failed = None;
    for piece in pieces {
        read_piece(piece, |_, line| {
            let Some((id, start, end)) = relationship_ends(line) else {
                return true;
            };
            let (node, other) = match rel.direction {
                Direction::Out => (start, end),
                Direction::In => (end, start),
            };
            if let Some(label) = &rel.label {
                if !other.labels.iter().any(|l| l == label) {
                    return true;
                }
            }
            let key = node_key(&node.id, |b| {
                push_field(b, &other.id);
                push_field(b, &id);
            });
            if let Err(e) = sorter.push(key) {
                failed = Some(e);
                return false;
            }
            true
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
    }
    sorter.finish()
}

/// The other ends found for one node: the node's key, the count, the first ids.
struct Group {
    hash: u64,
    head: Vec<u8>,
    count: u64,
    ids: Vec<String>,
}

/// Step 3: merges the sorted nodes with a sorted relationship map; writes, per line
/// whose node has at least one relationship, `(line number → count, first ids)` sorted
/// by line number.
fn merge_join(nodes: &Path, map: &Path, path: &Path, block: usize) -> Result<PathBuf> {
    let mut sorter = Sorter::new(path, block)?;
    let mut rels = keys::read_sorted(map)?;
    let mut rel = rels.next().transpose()?;
    let mut group: Option<Group> = None;
    for node in keys::read_sorted(nodes)? {
        let node = node?;
        let node_head = head(&node.bytes);
        let same = |g: &Group| g.hash == node.hash && g.head == node_head;
        if !group.as_ref().is_some_and(same) {
            // The map's records before this node's key are of nodes not in the table.
            while let Some(r) = &rel {
                if (r.hash, head(&r.bytes)) < (node.hash, node_head) {
                    rel = rels.next().transpose()?;
                } else {
                    break;
                }
            }
            let mut g = Group {
                hash: node.hash,
                head: node_head.to_vec(),
                count: 0,
                ids: Vec::new(),
            };
            while let Some(r) = &rel {
                if r.hash != node.hash || head(&r.bytes) != node_head {
                    break;
                }
                g.count += 1;
                if g.ids.len() < MAX_IDS {
                    let rest = &r.bytes[node_head.len()..];
                    g.ids
                        .push(keys::values(head(rest)).pop().unwrap_or_default());
                }
                rel = rels.next().transpose()?;
            }
            group = Some(g);
        }
        let Some(g) = &group else { continue };
        if g.count == 0 {
            continue;
        }
        let seq_bytes = &node.bytes[node_head.len()..];
        let seq = <[u8; 8]>::try_from(seq_bytes)
            .map(u64::from_be_bytes)
            .map_err(|_| {
                Error::Other(format!("internal: bad node record in {}", nodes.display()))
            })?;
        let mut bytes = g.count.to_le_bytes().to_vec();
        for id in &g.ids {
            push_field(&mut bytes, id);
        }
        sorter.push(Key {
            hash: seq,
            bytes: bytes.into_boxed_slice(),
        })?;
    }
    sorter.finish()
}

/// Reads a joined file in line order.
struct JoinedReader {
    keys: Box<dyn Iterator<Item = Result<Key>> + Send>,
    next: Option<Key>,
}

impl JoinedReader {
    fn open(path: &Path) -> Result<JoinedReader> {
        let mut keys: Box<dyn Iterator<Item = Result<Key>> + Send> =
            Box::new(keys::read_sorted(path)?);
        let next = keys.next().transpose()?;
        Ok(JoinedReader { keys, next })
    }

    /// What the line `seq` has (lines are asked for in increasing order).
    fn get(&mut self, seq: u64) -> Result<Related> {
        let Some(k) = self.next.as_ref().filter(|k| k.hash <= seq) else {
            return Ok(Related::None);
        };
        if k.hash < seq {
            return Err(Error::Other(format!(
                "internal: joined relationships of line {} read after line {seq}",
                k.hash
            )));
        }
        let (count, ids) = k.bytes.split_at(8.min(k.bytes.len()));
        let count = <[u8; 8]>::try_from(count)
            .map(u64::from_le_bytes)
            .map_err(|_| Error::Other("internal: bad joined relationship record".into()))?;
        let mut ids = keys::values(ids);
        let related = match (count, ids.len()) {
            (1, 1) => Related::One(ids.pop().unwrap_or_default()),
            _ => Related::Many { count, ids },
        };
        self.next = self.keys.next().transpose()?;
        Ok(related)
    }
}

/// The joined relationship columns of one table, read line by line with its partition.
pub struct RelatedColumns {
    readers: Vec<JoinedReader>,
    seq: u64,
}

impl RelatedColumns {
    /// How many relationship columns each line has a [`Related`] for.
    pub fn width(&self) -> usize {
        self.readers.len()
    }

    /// Appends what the next line of the partition has, one [`Related`] per relationship
    /// column (in column order).
    pub fn next_line(&mut self, out: &mut Vec<Related>) -> Result<()> {
        for r in &mut self.readers {
            out.push(r.get(self.seq)?);
        }
        self.seq += 1;
        Ok(())
    }
}

/// Joins the relationship columns of `table` (read from `input`, its partition) with
/// their relationship partitions (`relationships`, by partition key name) in `dir`,
/// which is created anew. A table without such columns gets an empty [`RelatedColumns`]
/// and no file.
pub fn join(
    table: &Table,
    input: &[PathBuf],
    relationships: &BTreeMap<String, Vec<PathBuf>>,
    dir: &Path,
) -> Result<RelatedColumns> {
    join_blocks(table, input, relationships, dir, SORT_BLOCK)
}

/// [`join`] with a chosen sort block (tests use tiny ones).
fn join_blocks(
    table: &Table,
    input: &[PathBuf],
    relationships: &BTreeMap<String, Vec<PathBuf>>,
    dir: &Path,
    block: usize,
) -> Result<RelatedColumns> {
    let columns = table.relationship_columns();
    let mut readers = Vec::with_capacity(columns.len());
    if columns.is_empty() {
        return Ok(RelatedColumns { readers, seq: 0 });
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let nodes = node_runs(input, dir, block)?;
    for (n, (c, rel)) in columns.into_iter().enumerate() {
        let key = PartitionKey::RelType(rel.rel_type.clone()).name();
        let pieces = relationships.get(&key).ok_or_else(|| {
            Error::Other(format!(
                "internal: no partition {key} for column `{}` of `{}`",
                table.columns[c].name, table.name
            ))
        })?;
        let map = relationship_map(rel, pieces, &dir.join(format!("map{n}.keys")), block)?;
        let joined = merge_join(&nodes, &map, &dir.join(format!("joined{n}.keys")), block)?;
        std::fs::remove_file(&map).map_err(|e| Error::io(&map, e))?;
        readers.push(JoinedReader::open(&joined)?);
    }
    std::fs::remove_file(&nodes).map_err(|e| Error::io(&nodes, e))?;
    Ok(RelatedColumns { readers, seq: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SPEC: &str = r#"version = 1
[[tables]]
name = "deals"
source = { type = "node", label = "Deal" }
primary_key = ["id"]
columns = [
  { name = "id", type = "bigint", from = "_id" },
  { name = "company_id", type = "bigint", from_relationship = { type = "FOR", direction = "out", label = "Company" } },
  { name = "owner_id", type = "bigint", from_relationship = { type = "OWNS", direction = "in" } },
]
"#;

    /// A relationship: (start id, end id, end is a Company, type is FOR else OWNS).
    type Rel = (u8, u8, bool, bool);

    fn write_graph(
        dir: &Path,
        nodes: &[Option<u8>],
        rels: &[Rel],
    ) -> BTreeMap<String, Vec<PathBuf>> {
        let node_lines: Vec<String> = nodes
            .iter()
            .map(|n| match n {
                Some(id) => serde_json::json!({"type": "node", "id": id.to_string(), "labels": ["Deal"], "properties": {}}).to_string(),
                None => "not json".to_string(),
            })
            .collect();
        std::fs::write(dir.join("nodes.jsonl"), node_lines.join("\n")).unwrap();
        let mut files = BTreeMap::new();
        for (t, is_for) in [("FOR", true), ("OWNS", false)] {
            let lines: Vec<String> = rels
                .iter()
                .enumerate()
                .filter(|(_, r)| r.3 == is_for)
                .map(|(i, &(s, e, company, _))| {
                    let label = if company { "Company" } else { "User" };
                    serde_json::json!({"type": "relationship", "id": format!("r{i}"), "label": t,
                        "properties": {}, "start": {"id": s.to_string(), "labels": ["Deal"]},
                        "end": {"id": e.to_string(), "labels": [label]}})
                    .to_string()
                })
                .collect();
            let path = dir.join(format!("{t}.jsonl"));
            std::fs::write(&path, lines.join("\n")).unwrap();
            files.insert(format!("rel:{t}"), vec![path]);
        }
        files
    }

    /// The join as a naive in-memory scan: per line and column, the matching
    /// relationships' other ends, in the order the join keeps them.
    fn naive(nodes: &[Option<u8>], rels: &[Rel]) -> Vec<Vec<Related>> {
        let related = |found: Vec<(String, String)>| {
            let mut found: Vec<Vec<u8>> = found
                .into_iter()
                .map(|(other, rel)| {
                    let mut b = Vec::new();
                    push_field(&mut b, &other);
                    push_field(&mut b, &rel);
                    b
                })
                .collect();
            found.sort();
            found.dedup();
            let ids: Vec<String> = found
                .iter()
                .map(|b| keys::values(head(b)).pop().unwrap())
                .collect();
            match ids.len() {
                0 => Related::None,
                1 => Related::One(ids[0].clone()),
                n => Related::Many {
                    count: n as u64,
                    ids: ids.into_iter().take(MAX_IDS).collect(),
                },
            }
        };
        nodes
            .iter()
            .map(|n| {
                let Some(id) = n else {
                    return vec![Related::None, Related::None];
                };
                let out: Vec<(String, String)> = rels
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.3 && r.0 == *id && r.2)
                    .map(|(i, r)| (r.1.to_string(), format!("r{i}")))
                    .collect();
                let inc: Vec<(String, String)> = rels
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| !r.3 && r.1 == *id)
                    .map(|(i, r)| (r.0.to_string(), format!("r{i}")))
                    .collect();
                vec![related(out), related(inc)]
            })
            .collect()
    }

    fn joined(dir: &Path, nodes: &[Option<u8>], rels: &[Rel], block: usize) -> Vec<Vec<Related>> {
        let model = crate::spec::parse(SPEC, "t.toml").unwrap();
        let files = write_graph(dir, nodes, rels);
        let input = [dir.join("nodes.jsonl")];
        let mut cols =
            join_blocks(&model.tables[0], &input, &files, &dir.join("rel"), block).unwrap();
        assert_eq!(cols.width(), 2);
        (0..nodes.len())
            .map(|_| {
                let mut out = Vec::new();
                cols.next_line(&mut out).unwrap();
                out
            })
            .collect()
    }

    #[test]
    fn missing_one_and_many() {
        let dir = tempfile::tempdir().unwrap();
        let nodes = [Some(1), Some(2), Some(3), None, Some(1)];
        // 1 → 10 (Company); 2 → 10, 11 (Companies) and → 12 (a User: not counted);
        // 3 is owned by 7 and 8.
        let rels = [
            (1, 10, true, true),
            (2, 11, true, true),
            (2, 10, true, true),
            (2, 12, false, true),
            (7, 3, false, false),
            (8, 3, false, false),
        ];
        let got = joined(dir.path(), &nodes, &rels, 2);
        let many = |ids: &[&str]| Related::Many {
            count: ids.len() as u64,
            ids: ids.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(
            got,
            vec![
                vec![Related::One("10".into()), Related::None],
                vec![many(&["10", "11"]), Related::None],
                vec![Related::None, many(&["7", "8"])],
                vec![Related::None, Related::None],
                vec![Related::One("10".into()), Related::None],
            ]
        );
        assert_eq!(got, naive(&nodes, &rels));
    }

    proptest! {
        /// The sort-merge join on disk gives, line by line, what a scan of every
        /// relationship in memory gives, whatever the sort block (runs and merges).
        #[test]
        fn the_join_equals_a_naive_in_memory_join(
            nodes in proptest::collection::vec(proptest::option::weighted(0.95, 0u8..30), 0..60),
            rels in proptest::collection::vec((0u8..30, 0u8..30, any::<bool>(), any::<bool>()), 0..120),
            block in 1usize..40,
        ) {
            let dir = tempfile::tempdir().unwrap();
            prop_assert_eq!(joined(dir.path(), &nodes, &rels, block), naive(&nodes, &rels));
        }
    }
}
