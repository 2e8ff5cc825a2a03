//! Export: a table's source records → transformed, validated rows → chunked CSV files
//! plus a reject file.
//!
//! One reader thread streams the table's partition in batches through a bounded channel
//! to `workers` threads that parse, transform, cast and CSV-encode each record, and
//! write each row's keys into the batch's key columns ([`KeyColumn`]); the calling
//! thread puts the batches back in source order and checks keys (duplicate
//! primary/unique keys, dangling foreign keys) in that order, so the first of two rows
//! with the same key wins, whatever the number of workers. The checks run block by
//! block (whole batches, at least [`BLOCK_ROWS`] rows): the block's foreign keys are
//! probed against the parents' key files and its keys against the table's earlier keys,
//! both on disk ([`keys`]), then the rows are decided in order with the block's own keys
//! in memory. Used batch buffers go back to the threads that fill them. Memory is
//! bounded by the channel capacities, one block and one chunk buffer, whatever the size
//! of the table or of its parents.
//!
//! A table with relationship-sourced columns (`from_relationship`) is first joined with
//! its relationship partitions on disk ([`related`]); the reader thread hands each line
//! to the workers with what the join found for it, and the workers make it the column's
//! value or a reject, so the key checks (a foreign key on such a column included) see
//! it like any other value.

pub mod csv;
pub mod keys;
pub mod related;

use crate::error::{Error, Result};
use crate::source::apoc::parse_record;
use crate::spec::{ForeignKey, Model, SourceKind, Table};
use crate::transform::{column_value, RejectKind};
use keys::{Key, KeyFile};
use related::Related;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const BATCH_LINES: usize = 2_048;

/// Rows whose keys are checked together (one pass over the key files per block).
pub const BLOCK_ROWS: usize = 50_000;

/// The finished key files of an exported table, for the column lists (its primary key
/// or unique keys) that a child's foreign key references.
#[derive(Debug, Default)]
pub struct TableKeys {
    pub files: Vec<(Vec<usize>, KeyFile)>,
}

impl TableKeys {
    /// The key file for a referenced column list.
    pub fn for_columns(&self, cols: &[usize]) -> Option<&KeyFile> {
        self.files.iter().find(|(c, _)| c == cols).map(|(_, f)| f)
    }
}

/// The column lists of table `ti` that a (non-deferred) foreign key of another table
/// references: only their key files outlive the table's export.
pub fn referenced_keys(model: &Model, ti: usize) -> Vec<Vec<usize>> {
    let table = &model.tables[ti];
    std::iter::once(&table.primary_key)
        .chain(table.unique.iter())
        .filter(|cols| {
            model
                .tables
                .iter()
                .enumerate()
                .flat_map(|(ci, t)| t.foreign_keys.iter().map(move |fk| (ci, fk)))
                .any(|(ci, fk)| {
                    !fk.deferred && fk.parent == ti && ci != ti && &fk.parent_columns == *cols
                })
        })
        .cloned()
        .collect()
}

/// The foreign keys checked while exporting (deferred and self references are left to
/// the database, which checks them when they are added or loaded).
fn checked_fks(table: &Table, ti: usize) -> Vec<&ForeignKey> {
    table
        .foreign_keys
        .iter()
        .filter(|fk| !fk.deferred && fk.parent != ti)
        .collect()
}

/// Columns per null-map field of [`row_hash`].
pub const NULL_MAP_COLUMNS: usize = 64;

/// The order-independent per-row hash summed into a table's checksum, in the form
/// pt-table-checksum made usual for MySQL: the CRC-32 of the row's null map (one decimal
/// number per [`NULL_MAP_COLUMNS`] columns, bit `i` set when column `i` is null) followed
/// by the non-null values, all separated by U+001F. [`crate::verify::checksum_sql`]
/// computes the same in SQL (`CRC32(CONCAT_WS(CHAR(31), map, col, ...))`, as
/// `CONCAT_WS` skips nulls), which costs the server about a third of an MD5 of the row.
pub fn row_hash(values: &[Option<String>]) -> u64 {
    let mut h = crc32fast::Hasher::new();
    let mut digits = [0u8; 20];
    for (g, group) in values.chunks(NULL_MAP_COLUMNS).enumerate() {
        let map = group
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_none())
            .fold(0u64, |map, (i, _)| map | 1 << i);
        if g > 0 {
            h.update(&[0x1f]);
        }
        h.update(decimal(map, &mut digits));
    }
    for v in values.iter().flatten() {
        h.update(&[0x1f]);
        h.update(v.as_bytes());
    }
    u64::from(h.finalize())
}

/// `n` in decimal, written at the end of `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// A finished chunk file.
#[derive(Debug, Clone)]
pub struct ChunkReady {
    pub index: u32,
    pub path: PathBuf,
    pub rows: u64,
}

/// What exporting a table did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ExportStats {
    pub read: u64,
    pub written: u64,
    pub rejected: u64,
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Wrapping sum of [`row_hash`] over the written rows.
    pub checksum: u64,
    pub seconds: f64,
    /// (chunk index, rows) of every chunk written.
    pub chunks: Vec<(u32, u64)>,
}

/// What became of one source line.
enum Outcome<R = Box<Row>> {
    /// Not a record of this table (a relationship between other labels).
    Skip,
    Reject(Rejected),
    Row(R),
}

/// Where a source line is: the index of its partition piece and its line number in the
/// piece's export file (0 when the piece is not read from an export file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    piece: u32,
    line: u64,
}

/// A line rejected by the column rules (or unreadable), for the reject file.
struct Rejected {
    id: String,
    line: Pos,
    kind: RejectKind,
    column: Option<String>,
    detail: String,
}

impl<R> Outcome<R> {
    fn map_row<S>(self, f: impl FnOnce(R) -> S) -> Outcome<S> {
        match self {
            Outcome::Skip => Outcome::Skip,
            Outcome::Reject(r) => Outcome::Reject(r),
            Outcome::Row(r) => Outcome::Row(f(r)),
        }
    }
}

/// A row that passed the column rules, waiting for its key checks (its keys are in its
/// batch's [`KeyColumn`]s).
struct Row {
    id: String,
    line: Pos,
    csv: String,
    hash: u64,
}

/// A span's length when the row has no key (a null in it, or no row at all).
const NO_KEY: u32 = u32::MAX;

/// One key list's keys for a batch of outcomes: the bytes in one buffer and, per outcome,
/// `(fingerprint, start, length)` ([`NO_KEY`] when there is none). Kept apart from the
/// rows so that the key checks read a block's keys in sequence.
#[derive(Default)]
struct KeyColumn {
    bytes: Vec<u8>,
    spans: Vec<(u64, u32, u32)>,
}

impl KeyColumn {
    fn push(&mut self, values: &[Option<String>], cols: &[usize]) {
        let start = self.bytes.len();
        match keys::encode(values, cols, &mut self.bytes) {
            Some(()) => {
                let hash = keys::fingerprint(&self.bytes[start..]);
                self.spans
                    .push((hash, start as u32, (self.bytes.len() - start) as u32));
            }
            None => self.push_none(),
        }
    }

    fn push_none(&mut self) {
        self.spans.push((0, 0, NO_KEY));
    }

    /// The key of outcome `i`, if it has one.
    fn get(&self, i: usize) -> Option<&[u8]> {
        let (_, start, len) = *self.spans.get(i)?;
        (len != NO_KEY).then(|| &self.bytes[start as usize..(start + len) as usize])
    }
}

/// A batch of outcomes from a transform worker, in source order, with their keys: one
/// [`KeyColumn`] per key list (the primary key, the unique keys, the checked foreign
/// keys, in that order).
struct Processed {
    outcomes: Vec<Outcome>,
    keys: Vec<KeyColumn>,
}

impl Processed {
    fn new(lists: usize, capacity: usize) -> Processed {
        Processed {
            outcomes: Vec::with_capacity(capacity),
            keys: (0..lists).map(|_| KeyColumn::default()).collect(),
        }
    }

    /// Transforms one source line into the batch: its outcome and its keys (none but
    /// for a row).
    fn process(
        &mut self,
        table: &Table,
        lists: &[&[usize]],
        line_no: Pos,
        line: &[u8],
        related: &[Related],
    ) {
        let keys = &mut self.keys;
        let outcome = transform_line(table, line_no, line, related).map_row(|(row, values)| {
            for (col, cols) in keys.iter_mut().zip(lists) {
                col.push(&values, cols);
            }
            Box::new(row)
        });
        if !matches!(outcome, Outcome::Row(_)) {
            keys.iter_mut().for_each(KeyColumn::push_none);
        }
        self.outcomes.push(outcome);
    }
}

/// The column lists of a table's keys, in the order of a batch's [`KeyColumn`]s: the
/// primary key, the unique keys, then the checked foreign keys.
fn key_lists<'a>(table: &'a Table, fks: &[&'a ForeignKey]) -> Vec<&'a [usize]> {
    std::iter::once(&table.primary_key)
        .chain(&table.unique)
        .map(Vec::as_slice)
        .chain(fks.iter().map(|fk| fk.columns.as_slice()))
        .collect()
}

/// Parses, transforms and casts one source line: a row (with its column values, for its
/// keys), a rejected line, or one the table does not take. `related` holds what the
/// join found for the line's relationship columns, in column order.
fn transform_line(
    table: &Table,
    line_no: Pos,
    line: &[u8],
    related: &[Related],
) -> Outcome<(Row, Vec<Option<String>>)> {
    let record = match std::str::from_utf8(line)
        .map_err(|e| format!("not UTF-8: {e}"))
        .and_then(parse_record)
    {
        Ok(r) => r,
        Err(detail) => {
            return Outcome::Reject(Rejected {
                id: String::new(),
                line: line_no,
                kind: RejectKind::Malformed,
                column: None,
                detail,
            })
        }
    };
    if let SourceKind::Relationship {
        start_label,
        end_label,
        ..
    } = &table.source
    {
        let has = |e: &Option<crate::source::Endpoint>, l: &Option<String>| match l {
            None => true,
            Some(l) => e.as_ref().is_some_and(|e| e.labels.iter().any(|x| x == l)),
        };
        if !has(&record.start, start_label) || !has(&record.end, end_label) {
            return Outcome::Skip;
        }
    }
    let mut values = Vec::with_capacity(table.columns.len());
    let mut related = related.iter();
    for c in &table.columns {
        let raw = match &c.from {
            crate::spec::FieldRef::Relationship(r) => {
                match relationship_value(c, r, related.next()) {
                    Ok(v) => v,
                    Err((kind, detail)) => {
                        return Outcome::Reject(Rejected {
                            id: record.id,
                            line: line_no,
                            kind,
                            column: Some(c.name.clone()),
                            detail,
                        })
                    }
                }
            }
            from => record.field(from),
        };
        match column_value(c, raw) {
            Ok(v) => values.push(v),
            Err(r) => {
                return Outcome::Reject(Rejected {
                    id: record.id,
                    line: line_no,
                    kind: r.kind,
                    column: Some(c.name.clone()),
                    detail: r.detail,
                })
            }
        }
    }
    let mut csv = String::with_capacity(128);
    csv::encode_row(&mut csv, &values);
    let hash = row_hash(&values);
    Outcome::Row((
        Row {
            id: record.id,
            line: line_no,
            csv,
            hash,
        },
        values,
    ))
}

/// The raw value of a relationship column from what the join found: the other end's id,
/// null when there is none and the column is not required, or the reject.
fn relationship_value(
    c: &crate::spec::Column,
    r: &crate::spec::RelationshipRef,
    found: Option<&Related>,
) -> std::result::Result<Option<String>, (RejectKind, String)> {
    let label = r
        .label
        .as_deref()
        .map(|l| format!(" to a :{l} node"))
        .unwrap_or_default();
    let towards = match r.direction {
        crate::spec::Direction::Out => "to",
        crate::spec::Direction::In => "from",
    };
    match found {
        Some(Related::One(id)) => Ok(Some(id.clone())),
        Some(Related::Many { count, ids }) => Err((
            RejectKind::MultipleRelationships,
            format!(
                "{count} {} {} relationships{label} ({towards} {}{}); `{}` takes one",
                r.direction_word(),
                r.rel_type,
                ids.join(", "),
                if *count > ids.len() as u64 {
                    ", ..."
                } else {
                    ""
                },
                c.name
            ),
        )),
        Some(Related::None) | None if c.required => Err((
            RejectKind::MissingRelationship,
            format!(
                "no {} {} relationship{label}",
                r.direction_word(),
                r.rel_type
            ),
        )),
        Some(Related::None) | None => Ok(None),
    }
}

/// Source lines on their way to the transform workers: their bytes in one buffer (one
/// allocation per batch, not per line) and, per line, its number and where it ends.
#[derive(Default)]
struct LineBatch {
    bytes: Vec<u8>,
    lines: Vec<(Pos, usize)>,
    /// What the join found for each line's relationship columns, `width` per line.
    related: Vec<Related>,
    width: usize,
}

impl LineBatch {
    /// An empty batch with room for one like `other`.
    fn sized_like(other: &LineBatch) -> LineBatch {
        LineBatch {
            bytes: Vec::with_capacity(other.bytes.len()),
            lines: Vec::with_capacity(other.lines.len()),
            related: Vec::with_capacity(other.related.len()),
            width: other.width,
        }
    }

    fn push(&mut self, n: Pos, line: &[u8]) {
        self.bytes.extend_from_slice(line);
        self.lines.push((n, self.bytes.len()));
    }

    /// (position, bytes, relationship columns) of each line in order.
    fn iter(&self) -> impl Iterator<Item = (Pos, &[u8], &[Related])> {
        let mut start = 0;
        self.lines.iter().enumerate().map(move |(i, &(n, end))| {
            let line = &self.bytes[start..end];
            start = end;
            let related = self
                .related
                .get(i * self.width..(i + 1) * self.width)
                .unwrap_or_default();
            (n, line, related)
        })
    }
}

/// Where a table's export writes.
pub struct ExportPaths<'a> {
    /// The table's partition: its files, read in this order.
    pub input: &'a [PathBuf],
    pub chunk_dir: &'a Path,
    pub rejects: &'a Path,
    /// Where the table's key runs and finished key files go.
    pub keys_dir: &'a Path,
    /// Every partition's files by key name (`rel:TYPE`): where the relationship columns'
    /// relationships are read from.
    pub relationships: &'a BTreeMap<String, Vec<PathBuf>>,
}

/// Exports one table. `parents` holds the key files of the tables its non-deferred
/// foreign keys reference; `on_chunk` is called for each finished chunk (in order) and
/// stops the export by returning an error. Returns the statistics and the key files of
/// the column lists children reference ([`referenced_keys`]).
pub fn export_table(
    model: &Model,
    ti: usize,
    paths: ExportPaths<'_>,
    parents: &HashMap<usize, Arc<TableKeys>>,
    on_chunk: impl FnMut(ChunkReady) -> Result<()>,
    progress: &indicatif::ProgressBar,
) -> Result<(ExportStats, TableKeys)> {
    let sizes = (BATCH_LINES, BLOCK_ROWS);
    export_blocks(model, ti, paths, parents, sizes, on_chunk, progress)
}

/// [`export_table`] with chosen batch and block sizes (tests use tiny ones). A block is
/// made of whole batches, cut once it holds `block_rows` outcomes.
fn export_blocks(
    model: &Model,
    ti: usize,
    paths: ExportPaths<'_>,
    parents: &HashMap<usize, Arc<TableKeys>>,
    (batch_lines, block_rows): (usize, usize),
    mut on_chunk: impl FnMut(ChunkReady) -> Result<()>,
    progress: &indicatif::ProgressBar,
) -> Result<(ExportStats, TableKeys)> {
    let (batch_lines, block_rows) = (batch_lines.max(1), block_rows.max(1));
    let started = std::time::Instant::now();
    let table = &model.tables[ti];
    let workers = model.settings.workers.max(1) as usize;
    std::fs::create_dir_all(paths.chunk_dir).map_err(|e| Error::io(paths.chunk_dir, e))?;
    if let Some(dir) = paths.rejects.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    if paths.keys_dir.exists() {
        std::fs::remove_dir_all(paths.keys_dir).map_err(|e| Error::io(paths.keys_dir, e))?;
    }
    let mut rejects = BufWriter::new(
        std::fs::File::create(paths.rejects).map_err(|e| Error::io(paths.rejects, e))?,
    );
    let related_dir = paths.keys_dir.join("related");
    let mut related = related::join(table, paths.input, paths.relationships, &related_dir)?;
    let fks = checked_fks(table, ti);
    let fk_files: Vec<(&ForeignKey, &KeyFile)> = fks
        .iter()
        .map(|&fk| {
            let parent = &model.tables[fk.parent];
            parents
                .get(&fk.parent)
                .and_then(|k| k.for_columns(&fk.parent_columns))
                .map(|file| (fk, file))
                .ok_or_else(|| {
                    Error::Other(format!(
                        "internal: keys of `{}` are not available for `{}`",
                        parent.name, table.name
                    ))
                })
        })
        .collect::<Result<_>>()?;
    let mut checker = Checker {
        table,
        fk_files,
        primary: keys::Runs::new(paths.keys_dir, "pk")?,
        unique: (0..table.unique.len())
            .map(|u| keys::Runs::new(paths.keys_dir, &format!("u{u}")))
            .collect::<Result<_>>()?,
        stats: ExportStats::default(),
        rejects: &mut rejects,
        rejects_path: paths.rejects,
        chunk: ChunkWriter::new(paths.chunk_dir, model.settings.chunk_rows),
        origins: paths
            .input
            .iter()
            .map(|p| {
                crate::source::apoc::piece_source(p).map(|f| f.map(|f| f.display().to_string()))
            })
            .collect::<Result<_>>()?,
        origin: origin(&table.source),
    };

    let (line_tx, line_rx) = crossbeam_channel::bounded::<(u64, LineBatch)>(workers * 2);
    let (out_tx, out_rx) = crossbeam_channel::bounded::<(u64, Processed)>(workers * 2);
    // Used buffers go back to the thread that fills them: the same memory serves batch
    // after batch instead of fresh pages the kernel must clear.
    let (line_pool_tx, line_pool_rx) = crossbeam_channel::bounded::<LineBatch>(workers * 4);
    let (out_pool_tx, out_pool_rx) =
        crossbeam_channel::bounded::<Processed>(block_rows.div_ceil(batch_lines) + workers * 4);
    let input = paths.input;
    let lists = key_lists(table, &fks);
    let lists = &lists;
    std::thread::scope(|scope| -> Result<()> {
        let reader = std::thread::Builder::new()
            .name(format!("read {}", table.name))
            .spawn_scoped(scope, move || -> Result<()> {
                let mut batch = LineBatch {
                    width: related.width(),
                    ..LineBatch::default()
                };
                let mut seq = 0u64;
                let mut stopped = false;
                let mut failed = None;
                for (p, piece) in input.iter().enumerate() {
                    let p = u32::try_from(p).unwrap_or(u32::MAX);
                    crate::source::apoc::read_piece(piece, |n, line| {
                        batch.push(
                            Pos {
                                piece: p,
                                line: n.unwrap_or(0),
                            },
                            line,
                        );
                        if let Err(e) = related.next_line(&mut batch.related) {
                            failed = Some(e);
                            return false;
                        }
                        if batch.lines.len() == batch_lines {
                            let next = line_pool_rx
                                .try_recv()
                                .unwrap_or_else(|_| LineBatch::sized_like(&batch));
                            if line_tx
                                .send((seq, std::mem::replace(&mut batch, next)))
                                .is_err()
                            {
                                stopped = true;
                                return false;
                            }
                            seq += 1;
                        }
                        true
                    })?;
                    if let Some(e) = failed {
                        return Err(e);
                    }
                    if stopped {
                        return Ok(());
                    }
                }
                if !batch.lines.is_empty() {
                    let _ = line_tx.send((seq, batch));
                }
                Ok(())
            })
            .map_err(|e| Error::Other(format!("cannot start a reader thread: {e}")))?;
        for w in 0..workers {
            let rx = line_rx.clone();
            let tx = out_tx.clone();
            let (line_pool, out_pool) = (line_pool_tx.clone(), out_pool_rx.clone());
            std::thread::Builder::new()
                .name(format!("transform {} {w}", table.name))
                .spawn_scoped(scope, move || {
                    for (seq, mut batch) in rx {
                        let mut out = out_pool
                            .try_recv()
                            .unwrap_or_else(|_| Processed::new(lists.len(), batch.lines.len()));
                        for (n, line, related) in batch.iter() {
                            out.process(table, lists, n, line, related);
                        }
                        batch.bytes.clear();
                        batch.lines.clear();
                        batch.related.clear();
                        let _ = line_pool.try_send(batch);
                        if tx.send((seq, out)).is_err() {
                            return;
                        }
                    }
                })
                .map_err(|e| Error::Other(format!("cannot start a transform thread: {e}")))?;
        }
        drop(line_rx);
        drop(out_tx);
        drop(line_pool_tx);
        drop(out_pool_rx);
        let recycle = |block: &mut Vec<Processed>| {
            for mut p in block.drain(..) {
                p.outcomes.clear();
                for col in &mut p.keys {
                    col.bytes.clear();
                    col.spans.clear();
                }
                let _ = out_pool_tx.try_send(p);
            }
        };

        let mut pending: BTreeMap<u64, Processed> = BTreeMap::new();
        let mut next = 0u64;
        let mut block: Vec<Processed> = Vec::new();
        let mut in_block = 0;
        let result = (|| -> Result<()> {
            for (seq, processed) in &out_rx {
                pending.insert(seq, processed);
                while let Some(batch) = pending.remove(&next) {
                    next += 1;
                    progress.inc(batch.outcomes.len() as u64);
                    in_block += batch.outcomes.len();
                    block.push(batch);
                    if in_block >= block_rows {
                        checker.block(&block, &mut on_chunk)?;
                        recycle(&mut block);
                        in_block = 0;
                    }
                }
            }
            checker.block(&block, &mut on_chunk)?;
            if let Some(ready) = checker.chunk.finish()? {
                checker.stats.chunks.push((ready.index, ready.rows));
                on_chunk(ready)?;
            }
            Ok(())
        })();
        // Unblock the reader and workers if we stopped early.
        drop(out_rx);
        let read = reader
            .join()
            .map_err(|_| Error::Other("reader thread panicked".into()))?;
        result.and(read)
    })?;
    let Checker {
        mut stats,
        primary,
        unique,
        ..
    } = checker;
    rejects.flush().map_err(|e| Error::io(paths.rejects, e))?;
    if related_dir.exists() {
        std::fs::remove_dir_all(&related_dir).map_err(|e| Error::io(&related_dir, e))?;
    }
    let keep = referenced_keys(model, ti);
    let mut kept = TableKeys::default();
    let lists = std::iter::once((&table.primary_key, primary, "pk".to_string())).chain(
        table
            .unique
            .iter()
            .zip(unique)
            .enumerate()
            .map(|(u, (cols, runs))| (cols, runs, format!("u{u}"))),
    );
    for (cols, runs, name) in lists {
        if keep.contains(cols) {
            let file = runs.finish(&paths.keys_dir.join(format!("{name}.keys")))?;
            kept.files.push((cols.clone(), file));
        } else {
            runs.discard()?;
        }
    }
    stats.seconds = started.elapsed().as_secs_f64();
    Ok((stats, kept))
}

/// The key checks of one table's export, and where accepted and rejected rows go.
struct Checker<'a> {
    table: &'a Table,
    fk_files: Vec<(&'a ForeignKey, &'a KeyFile)>,
    primary: keys::Runs,
    unique: Vec<keys::Runs>,
    stats: ExportStats,
    rejects: &'a mut BufWriter<std::fs::File>,
    rejects_path: &'a Path,
    chunk: ChunkWriter,
    /// Per partition piece, the export file it was read from (`None` for other sources).
    origins: Vec<Option<String>>,
    /// What a reject names besides its id: the kind of record and its label, type,
    /// table or index ([`origin`]).
    origin: (&'static str, Option<(&'static str, String)>),
}

/// The kind of record a table reads and the name a reject gives with it: a node's label,
/// a relationship's type (ids of nodes and relationships overlap), a DynamoDB table, an
/// index, an item type.
fn origin(source: &SourceKind) -> (&'static str, Option<(&'static str, String)>) {
    match source {
        SourceKind::Node { label } => ("node", Some(("label", label.clone()))),
        SourceKind::Relationship { rel_type, .. } => {
            ("relationship", Some(("type", rel_type.clone())))
        }
        SourceKind::Cypher { .. } => ("cypher_row", None),
        SourceKind::Dynamodb { table, .. } => ("dynamodb_item", Some(("table", table.clone()))),
        SourceKind::Opensearch { index, .. } => ("document", Some(("index", index.clone()))),
        SourceKind::Embedded { item_type, .. } => {
            ("embedded_item", Some(("item_type", item_type.clone())))
        }
    }
}

impl Checker<'_> {
    /// Decides a block of outcomes (in source order): foreign keys and earlier keys are
    /// probed for the whole block on disk, then each row is checked in order against the
    /// keys the block accepted before it, so the result is the same as one row at a time.
    fn block(
        &mut self,
        block: &[Processed],
        on_chunk: &mut impl FnMut(ChunkReady) -> Result<()>,
    ) -> Result<()> {
        let n: usize = block.iter().map(|b| b.outcomes.len()).sum();
        // The block's keys of key list `k`, indexed by outcome in the block.
        let probes = |k: usize| {
            let mut at = 0u32;
            let mut list = Vec::with_capacity(n);
            for batch in block {
                let col = &batch.keys[k];
                for &(hash, start, len) in &col.spans {
                    if len != NO_KEY {
                        let bytes = &col.bytes[start as usize..(start + len) as usize];
                        list.push((hash, at, bytes));
                    }
                    at += 1;
                }
            }
            keys::Probes::build(list, n)
        };
        // Key columns in [`key_lists`] order: primary, unique, foreign keys.
        let unique = self.unique.len();
        let fk_list = |f: usize| 1 + unique + f;
        let mut dangling: Vec<Option<usize>> = vec![None; n];
        for (f, (_, file)) in self.fk_files.iter().enumerate() {
            let found = file.contains(&probes(fk_list(f)))?;
            let spans = block.iter().flat_map(|b| &b.keys[fk_list(f)].spans);
            for ((d, found), &(_, _, len)) in dangling.iter_mut().zip(found).zip(spans) {
                if d.is_none() && len != NO_KEY && !found {
                    *d = Some(f);
                }
            }
        }
        // Per key (primary, then unique): the probes, whether each row's key is in an
        // earlier block, each row's key number in the block, and which numbers the block
        // accepted so far.
        let mut own = Vec::with_capacity(1 + unique);
        for (k, runs) in std::iter::once(&self.primary)
            .chain(&self.unique)
            .enumerate()
        {
            let p = probes(k);
            let earlier = runs.contains(&p)?;
            let (group, groups) = p.groups();
            own.push((p, earlier, group, vec![false; groups]));
        }

        let table = self.table;
        let mut i = 0;
        for batch in block {
            for (b, o) in batch.outcomes.iter().enumerate() {
                let at = i;
                i += 1;
                let (id, line, kind, column, detail) = match o {
                    Outcome::Skip => continue,
                    Outcome::Reject(r) => (
                        r.id.as_str(),
                        r.line,
                        r.kind,
                        r.column.as_deref(),
                        r.detail.clone(),
                    ),
                    Outcome::Row(row) => {
                        // Whether the row's key `k` repeats an earlier row's.
                        let repeats = |k: usize| {
                            let (_, earlier, group, taken) = &own[k];
                            group[at] != u32::MAX && (earlier[at] || taken[group[at] as usize])
                        };
                        let problem = if let Some(f) = dangling[at] {
                            let fk = self.fk_files[f].0;
                            let values = batch.keys[fk_list(f)]
                                .get(b)
                                .map(keys::values)
                                .unwrap_or_default();
                            let cols: Vec<String> = fk
                                .columns
                                .iter()
                                .zip(values)
                                .map(|(&c, v)| format!("{}={v}", table.columns[c].name))
                                .collect();
                            Some((
                                RejectKind::DanglingForeignKey,
                                format!(
                                    "{} points to no accepted row of the referenced table",
                                    cols.join(", ")
                                ),
                            ))
                        } else if repeats(0) {
                            Some((
                                RejectKind::DuplicateKey,
                                "primary key repeats an earlier row".to_string(),
                            ))
                        } else {
                            table.unique.iter().enumerate().find_map(|(u, cols)| {
                                repeats(1 + u).then(|| {
                                    let cols: Vec<&str> = cols
                                        .iter()
                                        .map(|&c| table.columns[c].name.as_str())
                                        .collect();
                                    (
                                        RejectKind::DuplicateKey,
                                        format!(
                                            "unique key ({}) repeats an earlier row",
                                            cols.join(", ")
                                        ),
                                    )
                                })
                            })
                        };
                        match problem {
                            None => {
                                for (_, _, group, taken) in own.iter_mut() {
                                    if group[at] != u32::MAX {
                                        taken[group[at] as usize] = true;
                                    }
                                }
                                self.stats.read += 1;
                                self.stats.written += 1;
                                self.stats.checksum = self.stats.checksum.wrapping_add(row.hash);
                                if let Some(ready) = self.chunk.push(&row.csv)? {
                                    self.stats.chunks.push((ready.index, ready.rows));
                                    on_chunk(ready)?;
                                }
                                continue;
                            }
                            Some((kind, detail)) => (row.id.as_str(), row.line, kind, None, detail),
                        }
                    }
                };
                self.stats.read += 1;
                self.stats.rejected += 1;
                *self
                    .stats
                    .rejected_by_reason
                    .entry(kind.as_str().to_string())
                    .or_default() += 1;
                let (file, line) = match self.origins.get(line.piece as usize) {
                    Some(Some(file)) => (Some(file.as_str()), Some(line.line)),
                    _ => (None, None),
                };
                let (record, name) = &self.origin;
                let mut entry = serde_json::json!({
                    "record": record, "id": id, "file": file, "line": line,
                    "reason": kind, "column": column, "detail": detail,
                });
                if let Some((key, value)) = name {
                    entry[*key] = serde_json::Value::from(value.as_str());
                }
                writeln!(self.rejects, "{entry}").map_err(|e| Error::io(self.rejects_path, e))?;
            }
        }
        // The keys the block accepted become a run of each key's set.
        for ((p, _, _, taken), runs) in own
            .iter()
            .zip(std::iter::once(&mut self.primary).chain(self.unique.iter_mut()))
        {
            runs.add_sorted(p.marked(taken))?;
        }
        Ok(())
    }
}

/// Writes rows into numbered chunk files; a chunk is written to `NNNNN.csv.tmp`, synced,
/// then renamed, so a `.csv` file is always complete.
struct ChunkWriter {
    dir: PathBuf,
    limit: u64,
    index: u32,
    rows: u64,
    file: Option<(PathBuf, BufWriter<std::fs::File>)>,
}

impl ChunkWriter {
    fn new(dir: &Path, limit: u64) -> Self {
        ChunkWriter {
            dir: dir.to_path_buf(),
            limit,
            index: 0,
            rows: 0,
            file: None,
        }
    }

    fn push(&mut self, line: &str) -> Result<Option<ChunkReady>> {
        if self.file.is_none() {
            self.index += 1;
            let tmp = self.dir.join(format!("{:05}.csv.tmp", self.index));
            let f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
            self.file = Some((tmp, BufWriter::with_capacity(1 << 20, f)));
        }
        if let Some((path, w)) = self.file.as_mut() {
            w.write_all(line.as_bytes())
                .map_err(|e| Error::io(path.as_path(), e))?;
        }
        self.rows += 1;
        if self.rows >= self.limit {
            return self.finish();
        }
        Ok(None)
    }

    fn finish(&mut self) -> Result<Option<ChunkReady>> {
        let Some((tmp, mut w)) = self.file.take() else {
            return Ok(None);
        };
        w.flush().map_err(|e| Error::io(&tmp, e))?;
        w.get_ref().sync_all().map_err(|e| Error::io(&tmp, e))?;
        let path = chunk_path(&self.dir, self.index);
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        let rows = std::mem::take(&mut self.rows);
        Ok(Some(ChunkReady {
            index: self.index,
            path,
            rows,
        }))
    }
}

/// The path of chunk `index` in a table's chunk directory.
pub fn chunk_path(dir: &Path, index: u32) -> PathBuf {
    dir.join(format!("{index:05}.csv"))
}

/// Rebuilds the key files children need from a table's chunks (on resume, for tables
/// already exported), block by block like the export. `open` gives a chunk's bytes and a
/// name for error messages (a local file, or an object of the chunk store).
pub fn rebuild_keys(
    model: &Model,
    ti: usize,
    chunks: &[(u32, u64)],
    mut open: impl FnMut(u32) -> Result<(PathBuf, Box<dyn std::io::Read + Send>)>,
    keys_dir: &Path,
) -> Result<TableKeys> {
    if keys_dir.exists() {
        std::fs::remove_dir_all(keys_dir).map_err(|e| Error::io(keys_dir, e))?;
    }
    let lists = referenced_keys(model, ti);
    let mut runs: Vec<keys::Runs> = (0..lists.len())
        .map(|n| keys::Runs::new(keys_dir, &format!("k{n}")))
        .collect::<Result<_>>()?;
    let mut block: Vec<Vec<Key>> = vec![Vec::new(); lists.len()];
    let mut rows = 0usize;
    for &(index, _) in chunks {
        let (path, f) = open(index)?;
        for line in BufReader::with_capacity(1 << 20, f).lines() {
            let line = line.map_err(|e| Error::io(&path, e))?;
            let values = csv::decode_row(&line);
            for (cols, keys) in lists.iter().zip(block.iter_mut()) {
                keys.extend(Key::of(&values, cols));
            }
            rows += 1;
            if rows.is_multiple_of(BLOCK_ROWS) {
                for (r, keys) in runs.iter_mut().zip(block.iter_mut()) {
                    r.add(std::mem::take(keys))?;
                }
            }
        }
    }
    let mut out = TableKeys::default();
    for (n, ((cols, mut r), keys)) in lists.into_iter().zip(runs).zip(block).enumerate() {
        r.add(keys)?;
        let file = r.finish(&keys_dir.join(format!("k{n}.keys")))?;
        out.files.push((cols, file));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SPEC: &str = r#"version = 1
[settings]
chunk_rows = 4
workers = 2
[[tables]]
name = "parents"
source = { type = "node", label = "P" }
primary_key = ["id"]
unique = [["code"]]
columns = [
  { name = "id", type = "bigint", from = "_id" },
  { name = "code", type = "varchar(4)", required = true },
]
[[tables]]
name = "children"
source = { type = "node", label = "C" }
primary_key = ["id"]
columns = [
  { name = "id", type = "bigint", from = "_id" },
  { name = "parent_id", type = "bigint", from = "parentId" },
]
[[tables.foreign_keys]]
columns = ["parent_id"]
references = "parents"
"#;

    fn node(label: &str, id: u32, props: serde_json::Value) -> String {
        serde_json::json!({"type": "node", "id": id.to_string(), "labels": [label], "properties": props})
            .to_string()
    }

    /// Exports table `ti` of `model` from `input` into `base`: the rows written, the
    /// reject lines, the statistics and the keys.
    fn export_one(
        model: &Model,
        ti: usize,
        input: &Path,
        base: &Path,
        parents: &HashMap<usize, Arc<TableKeys>>,
        sizes: (usize, usize),
    ) -> (Vec<String>, Vec<String>, ExportStats, TableKeys) {
        let none = BTreeMap::new();
        export_with(model, ti, input, base, parents, sizes, &none)
    }

    /// [`export_one`] with the relationship partitions of relationship columns.
    fn export_with(
        model: &Model,
        ti: usize,
        input: &Path,
        base: &Path,
        parents: &HashMap<usize, Arc<TableKeys>>,
        sizes: (usize, usize),
        relationships: &BTreeMap<String, Vec<PathBuf>>,
    ) -> (Vec<String>, Vec<String>, ExportStats, TableKeys) {
        let (chunk_dir, rejects, keys_dir) = (
            base.join("chunks"),
            base.join("rejects.jsonl"),
            base.join("keys"),
        );
        let input = [input.to_path_buf()];
        let paths = ExportPaths {
            input: &input,
            chunk_dir: &chunk_dir,
            rejects: &rejects,
            keys_dir: &keys_dir,
            relationships,
        };
        let mut written = Vec::new();
        let (stats, keys) = export_blocks(
            model,
            ti,
            paths,
            parents,
            sizes,
            |c| {
                written.extend(
                    std::fs::read_to_string(&c.path)
                        .unwrap()
                        .lines()
                        .map(String::from),
                );
                Ok(())
            },
            &indicatif::ProgressBar::hidden(),
        )
        .unwrap();
        let rejected = std::fs::read_to_string(&rejects)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        (written, rejected, stats, keys)
    }

    /// Exports both tables with one batch and block size; returns what each wrote and
    /// rejected.
    fn export_both(
        dir: &Path,
        parents: &[(u32, u8)],
        children: &[(u32, Option<u32>)],
        (batch_lines, block_rows): (usize, usize),
    ) -> Vec<(Vec<String>, Vec<String>)> {
        let model = crate::spec::parse(SPEC, "test.toml").unwrap();
        let pfile = dir.join("p.jsonl");
        let lines: Vec<String> = parents
            .iter()
            .map(|&(id, code)| node("P", id, serde_json::json!({"code": format!("c{code}")})))
            .collect();
        std::fs::write(&pfile, lines.join("\n")).unwrap();
        let cfile = dir.join("c.jsonl");
        let lines: Vec<String> = children
            .iter()
            .map(|&(id, p)| node("C", id, serde_json::json!({"parentId": p})))
            .collect();
        std::fs::write(&cfile, lines.join("\n")).unwrap();
        let mut keys = HashMap::new();
        let mut out = Vec::new();
        for (ti, input) in [(0, &pfile), (1, &cfile)] {
            let base = dir.join(format!("b{batch_lines}-{block_rows}-{ti}"));
            let sizes = (batch_lines, block_rows);
            let (written, rejected, _, k) = export_one(&model, ti, input, &base, &keys, sizes);
            keys.insert(ti, Arc::new(k));
            out.push((written, rejected));
        }
        out
    }

    #[test]
    fn duplicates_and_dangling_keys_are_rejected_across_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let out = export_both(
            dir.path(),
            &[(1, 1), (1, 2), (2, 1), (3, 3)],
            &[(10, Some(1)), (11, Some(2)), (12, None), (10, Some(3))],
            (1, 1),
        );
        assert_eq!(out[0].0, vec!["1,c1".to_string(), "3,c3".to_string()]);
        assert!(
            out[0].1[0].contains("primary key repeats"),
            "{:?}",
            out[0].1
        );
        assert!(out[0].1[1].contains("unique key (code)"), "{:?}", out[0].1);
        assert_eq!(out[1].0, vec!["10,1".to_string(), "12,\\N".to_string()]);
        assert!(
            out[1].1[0].contains("parent_id=2 points to no accepted row"),
            "{:?}",
            out[1].1
        );
        assert!(out[1].1[1].contains("\"id\":\"10\""), "{:?}", out[1].1);
    }

    /// Relationship columns through a whole export: the other end's id, null when an
    /// optional one has none, and one reject per row with the reason and the column.
    #[test]
    fn relationship_columns_take_the_other_end_or_reject_the_row() {
        let spec = r#"version = 1
[[tables]]
name = "deals"
source = { type = "node", label = "Deal" }
primary_key = ["id"]
columns = [
  { name = "id", type = "bigint", from = "_id" },
  { name = "company_id", type = "bigint", from_relationship = { type = "FOR", direction = "out", label = "Company" }, required = true },
  { name = "list_id", type = "bigint", from_relationship = { type = "CONTAINS", direction = "in" } },
]
"#;
        let model = crate::spec::parse(spec, "test.toml").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("deals.jsonl");
        let nodes: Vec<String> = (1..=4)
            .map(|id| node("Deal", id, serde_json::json!({})))
            .collect();
        std::fs::write(&input, nodes.join("\n")).unwrap();
        let rel = |id: u32, t: &str, (s, sl): (u32, &str), (e, el): (u32, &str)| {
            serde_json::json!({"type": "relationship", "id": id.to_string(), "label": t, "properties": {},
                "start": {"id": s.to_string(), "labels": [sl]}, "end": {"id": e.to_string(), "labels": [el]}})
            .to_string()
        };
        // 1 → company 10, in list 20; 2 → company 11 only; 3 → none (a User is not a
        // Company); 4 → companies 10 and 12.
        let for_file = dir.path().join("for.jsonl");
        let lines = [
            rel(100, "FOR", (1, "Deal"), (10, "Company")),
            rel(101, "FOR", (2, "Deal"), (11, "Company")),
            rel(102, "FOR", (3, "Deal"), (13, "User")),
            rel(103, "FOR", (4, "Deal"), (12, "Company")),
            rel(104, "FOR", (4, "Deal"), (10, "Company")),
        ];
        std::fs::write(&for_file, lines.join("\n")).unwrap();
        let contains_file = dir.path().join("contains.jsonl");
        std::fs::write(
            &contains_file,
            rel(105, "CONTAINS", (20, "List"), (1, "Deal")),
        )
        .unwrap();
        let relationships: BTreeMap<String, Vec<PathBuf>> = [
            ("rel:FOR".to_string(), vec![for_file]),
            ("rel:CONTAINS".to_string(), vec![contains_file]),
        ]
        .into();
        let (written, rejected, stats, _) = export_with(
            &model,
            0,
            &input,
            dir.path(),
            &HashMap::new(),
            (2, 3),
            &relationships,
        );
        assert_eq!(written, ["1,10,20", "2,11,\\N"]);
        assert_eq!(
            stats.rejected_by_reason,
            [
                ("missing_relationship".to_string(), 1),
                ("multiple_relationships".to_string(), 1)
            ]
            .into()
        );
        let rejected: Vec<serde_json::Value> = rejected
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            (
                &rejected[0]["id"],
                &rejected[0]["column"],
                &rejected[0]["detail"]
            ),
            (
                &serde_json::json!("3"),
                &serde_json::json!("company_id"),
                &serde_json::json!("no outgoing FOR relationship to a :Company node")
            )
        );
        assert_eq!(
            rejected[1]["detail"],
            "2 outgoing FOR relationships to a :Company node (to 10, 12); `company_id` takes one"
        );
        // The join's files are gone with the export.
        assert!(!dir.path().join("keys/related").exists());
    }

    /// A line that is not UTF-8 is rejected as malformed, with its line number, and the
    /// lines around it are exported.
    #[test]
    fn a_line_that_is_not_utf8_is_a_malformed_row() {
        let dir = tempfile::tempdir().unwrap();
        let model = crate::spec::parse(SPEC, "test.toml").unwrap();
        let input = dir.path().join("p.jsonl");
        let mut bytes = node("P", 1, serde_json::json!({"code": "a"})).into_bytes();
        bytes.extend_from_slice(b"\r\n{\"type\":\"node\",\"id\":\"2\",\"labels\":[\"P\"],\"properties\":{\"code\":\"\xff\"}}\n");
        bytes.extend_from_slice(node("P", 3, serde_json::json!({"code": "c"})).as_bytes());
        std::fs::write(&input, bytes).unwrap();
        let sizes = (BATCH_LINES, BLOCK_ROWS);
        let (written, rejected, stats, _) =
            export_one(&model, 0, &input, dir.path(), &HashMap::new(), sizes);
        assert_eq!(written, ["1,a", "3,c"]);
        assert_eq!((stats.read, stats.written, stats.rejected), (3, 2, 1));
        assert_eq!(rejected.len(), 1);
        let reject: serde_json::Value = serde_json::from_str(&rejected[0]).unwrap();
        assert_eq!(reject["reason"], "malformed");
        // A piece holding its lines (as another source writes it) has no export file:
        // no file and line, the record kind and label instead.
        assert_eq!(
            (
                &reject["file"],
                &reject["line"],
                &reject["record"],
                &reject["label"]
            ),
            (
                &serde_json::Value::Null,
                &serde_json::Value::Null,
                &serde_json::json!("node"),
                &serde_json::json!("P")
            )
        );
        assert!(
            reject["detail"].as_str().unwrap().contains("not UTF-8"),
            "{reject}"
        );
    }

    #[test]
    fn the_row_hash_is_the_crc_of_the_null_map_and_the_values() {
        let row = [Some("1".to_string()), None, Some("a".to_string()), None];
        assert_eq!(row_hash(&row), u64::from(crc32fast::hash(b"10\x1f1\x1fa")));
        // A null and an empty string differ; so do two placements of one value.
        assert_ne!(
            row_hash(&[None, Some("x".into())]),
            row_hash(&[Some(String::new()), Some("x".into())])
        );
        assert_ne!(
            row_hash(&[Some("x".into()), None]),
            row_hash(&[None, Some("x".into())])
        );
        // 65 columns: two null-map fields, the second one for the 65th column.
        let mut wide = vec![Some("v".to_string()); 65];
        wide[64] = None;
        let mut expected = b"0\x1f1".to_vec();
        expected.extend(std::iter::repeat_n(b"\x1fv".as_slice(), 64).flatten());
        assert_eq!(row_hash(&wide), u64::from(crc32fast::hash(&expected)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn decimal_digits_match_display(n in any::<u64>()) {
            let mut buf = [0u8; 20];
            let expected = n.to_string();
            prop_assert_eq!(decimal(n, &mut buf), expected.as_bytes());
        }

        /// Checking keys block by block on disk gives the same rows, rejects and reasons
        /// as checking them all in one block in memory, whatever the block size.
        #[test]
        fn the_block_size_does_not_change_the_outcome(
            parents in proptest::collection::vec((0u32..30, 0u8..20), 0..60),
            children in proptest::collection::vec((0u32..40, proptest::option::of(0u32..35)), 0..80),
            batch in 1usize..4,
            block in 1usize..9,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let small = export_both(dir.path(), &parents, &children, (batch, block));
            let whole = export_both(dir.path(), &parents, &children, (2048, 1_000_000));
            prop_assert_eq!(small, whole);
        }
    }
}
