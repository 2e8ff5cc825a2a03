//! Export: a table's source records → transformed, validated rows → chunked CSV files
//! plus a reject file.
//!
//! One reader thread streams the table's partition in batches through a bounded channel
//! to `workers` threads that parse, transform, cast and CSV-encode each record; the
//! calling thread puts the batches back in source order and checks keys (duplicate
//! primary/unique keys, dangling foreign keys) in that order, so the first of two rows
//! with the same key wins, whatever the number of workers. Memory is bounded by the
//! channel capacities and one chunk buffer, plus 8 bytes per key for the key sets
//! (hashes of the key values) kept for duplicate and foreign key checks.

pub mod csv;

use crate::error::{Error, Result};
use crate::source::apoc::parse_record;
use crate::spec::{Model, SourceKind, Table};
use crate::transform::{column_value, RejectKind};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const BATCH_LINES: usize = 2_048;

/// Hashes of the keys of the rows accepted so far.
#[derive(Debug, Default)]
pub struct KeySet {
    pub primary: HashSet<u64>,
    pub unique: Vec<HashSet<u64>>,
}

impl KeySet {
    fn new(table: &Table) -> Self {
        KeySet {
            primary: HashSet::new(),
            unique: vec![HashSet::new(); table.unique.len()],
        }
    }

    /// The set for a referenced column list (the primary key or a unique key).
    pub fn for_columns(&self, table: &Table, cols: &[usize]) -> Option<&HashSet<u64>> {
        if table.primary_key == cols {
            return Some(&self.primary);
        }
        table
            .unique
            .iter()
            .position(|u| u == cols)
            .and_then(|i| self.unique.get(i))
    }

    /// Adds an accepted row's keys (used when rebuilding from chunk files on resume).
    pub fn insert_row(&mut self, table: &Table, values: &[Option<String>]) {
        if let Some(h) = key_hash(values, &table.primary_key) {
            self.primary.insert(h);
        }
        for (u, set) in table.unique.iter().zip(self.unique.iter_mut()) {
            if let Some(h) = key_hash(values, u) {
                set.insert(h);
            }
        }
    }
}

/// Hash of a key's values, `None` when one of them is null (a null key is never a
/// duplicate and a null foreign key points nowhere, as in SQL).
pub fn key_hash(values: &[Option<String>], cols: &[usize]) -> Option<u64> {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for &c in cols {
        let v = values.get(c)?.as_ref()?;
        h.update(v.as_bytes());
        h.update(&[0x1f]);
    }
    Some(h.digest())
}

/// The order-independent per-row hash summed into a table's checksum. The same value is
/// computed in SQL by [`crate::verify`]: the first 8 bytes (big-endian) of
/// MD5(CONCAT_WS(CHAR(31), for each column: 'N' if null else 'V' || value)).
pub fn row_hash(values: &[Option<String>]) -> u64 {
    let mut h = Md5::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            h.update([0x1f]);
        }
        match v {
            None => h.update(b"N"),
            Some(v) => {
                h.update(b"V");
                h.update(v.as_bytes());
            }
        }
    }
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_be_bytes(first)
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

enum Outcome {
    Skip,
    Reject {
        id: String,
        line: u64,
        kind: RejectKind,
        column: Option<String>,
        detail: String,
    },
    Row {
        id: String,
        line: u64,
        values: Vec<Option<String>>,
        csv: String,
        hash: u64,
    },
}

fn process(table: &Table, line_no: u64, line: &str) -> Outcome {
    let record = match parse_record(line) {
        Ok(r) => r,
        Err(detail) => {
            return Outcome::Reject {
                id: String::new(),
                line: line_no,
                kind: RejectKind::Malformed,
                column: None,
                detail,
            }
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
    for c in &table.columns {
        match column_value(c, record.field(&c.from)) {
            Ok(v) => values.push(v),
            Err(r) => {
                return Outcome::Reject {
                    id: record.id,
                    line: line_no,
                    kind: r.kind,
                    column: Some(c.name.clone()),
                    detail: r.detail,
                }
            }
        }
    }
    let mut csv = String::with_capacity(128);
    csv::encode_row(&mut csv, &values);
    let hash = row_hash(&values);
    Outcome::Row {
        id: record.id,
        line: line_no,
        values,
        csv,
        hash,
    }
}

/// Where a table's export writes.
pub struct ExportPaths<'a> {
    pub input: &'a Path,
    pub chunk_dir: &'a Path,
    pub rejects: &'a Path,
}

/// Exports one table. `parents` holds the key sets of the tables its non-deferred
/// foreign keys reference; `on_chunk` is called for each finished chunk (in order) and
/// stops the export by returning an error. Returns the statistics and the table's keys.
pub fn export_table(
    model: &Model,
    ti: usize,
    paths: ExportPaths<'_>,
    parents: &HashMap<usize, Arc<KeySet>>,
    mut on_chunk: impl FnMut(ChunkReady) -> Result<()>,
    progress: &indicatif::ProgressBar,
) -> Result<(ExportStats, KeySet)> {
    let started = std::time::Instant::now();
    let table = &model.tables[ti];
    let workers = model.settings.workers.max(1) as usize;
    std::fs::create_dir_all(paths.chunk_dir).map_err(|e| Error::io(paths.chunk_dir, e))?;
    if let Some(dir) = paths.rejects.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let mut rejects = BufWriter::new(
        std::fs::File::create(paths.rejects).map_err(|e| Error::io(paths.rejects, e))?,
    );
    let mut keys = KeySet::new(table);
    let mut stats = ExportStats::default();
    let fk_sets: Vec<(&crate::spec::ForeignKey, &HashSet<u64>)> = table
        .foreign_keys
        .iter()
        .filter(|fk| !fk.deferred && fk.parent != ti)
        .map(|fk| {
            let parent = &model.tables[fk.parent];
            parents
                .get(&fk.parent)
                .and_then(|k| k.for_columns(parent, &fk.parent_columns))
                .map(|set| (fk, set))
                .ok_or_else(|| {
                    Error::Other(format!(
                        "internal: keys of `{}` are not available for `{}`",
                        parent.name, table.name
                    ))
                })
        })
        .collect::<Result<_>>()?;

    let (line_tx, line_rx) = crossbeam_channel::bounded::<(u64, Vec<(u64, String)>)>(workers * 2);
    let (out_tx, out_rx) = crossbeam_channel::bounded::<(u64, Vec<Outcome>)>(workers * 2);
    let input = paths.input;
    std::thread::scope(|scope| -> Result<()> {
        let reader = scope.spawn(move || -> Result<()> {
            let f = std::fs::File::open(input).map_err(|e| Error::io(input, e))?;
            let mut batch = Vec::with_capacity(BATCH_LINES);
            let mut seq = 0u64;
            for (n, line) in BufReader::with_capacity(1 << 20, f).lines().enumerate() {
                let line = line.map_err(|e| Error::io(input, e))?;
                batch.push((n as u64 + 1, line));
                if batch.len() == BATCH_LINES {
                    if line_tx.send((seq, std::mem::take(&mut batch))).is_err() {
                        return Ok(());
                    }
                    seq += 1;
                }
            }
            if !batch.is_empty() {
                let _ = line_tx.send((seq, batch));
            }
            Ok(())
        });
        for _ in 0..workers {
            let rx = line_rx.clone();
            let tx = out_tx.clone();
            scope.spawn(move || {
                for (seq, lines) in rx {
                    let out = lines.iter().map(|(n, l)| process(table, *n, l)).collect();
                    if tx.send((seq, out)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(line_rx);
        drop(out_tx);

        let mut pending: BTreeMap<u64, Vec<Outcome>> = BTreeMap::new();
        let mut next = 0u64;
        let mut chunk = ChunkWriter::new(paths.chunk_dir, model.settings.chunk_rows);
        let result = (|| -> Result<()> {
            for (seq, outcomes) in &out_rx {
                pending.insert(seq, outcomes);
                while let Some(batch) = pending.remove(&next) {
                    next += 1;
                    progress.inc(batch.len() as u64);
                    for o in batch {
                        handle(
                            o,
                            table,
                            &fk_sets,
                            &mut keys,
                            &mut stats,
                            &mut rejects,
                            &mut chunk,
                            paths.rejects,
                            &mut on_chunk,
                        )?;
                    }
                }
            }
            if let Some(ready) = chunk.finish()? {
                stats.chunks.push((ready.index, ready.rows));
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
    rejects.flush().map_err(|e| Error::io(paths.rejects, e))?;
    stats.seconds = started.elapsed().as_secs_f64();
    Ok((stats, keys))
}

#[allow(clippy::too_many_arguments)]
fn handle(
    o: Outcome,
    table: &Table,
    fk_sets: &[(&crate::spec::ForeignKey, &HashSet<u64>)],
    keys: &mut KeySet,
    stats: &mut ExportStats,
    rejects: &mut BufWriter<std::fs::File>,
    chunk: &mut ChunkWriter,
    rejects_path: &Path,
    on_chunk: &mut impl FnMut(ChunkReady) -> Result<()>,
) -> Result<()> {
    let (id, line, kind, column, detail) = match o {
        Outcome::Skip => return Ok(()),
        Outcome::Reject {
            id,
            line,
            kind,
            column,
            detail,
        } => (id, line, kind, column, detail),
        Outcome::Row {
            id,
            line,
            values,
            csv,
            hash,
        } => {
            stats.read += 1;
            let mut problem = None;
            for (fk, set) in fk_sets {
                if let Some(h) = key_hash(&values, &fk.columns) {
                    if !set.contains(&h) {
                        let cols: Vec<String> = fk
                            .columns
                            .iter()
                            .map(|&c| {
                                format!(
                                    "{}={}",
                                    table.columns[c].name,
                                    values[c].as_deref().unwrap_or("")
                                )
                            })
                            .collect();
                        problem = Some((
                            RejectKind::DanglingForeignKey,
                            None,
                            format!(
                                "{} points to no accepted row of the referenced table",
                                cols.join(", ")
                            ),
                        ));
                        break;
                    }
                }
            }
            if problem.is_none() {
                let pk = key_hash(&values, &table.primary_key);
                if pk.is_some_and(|h| keys.primary.contains(&h)) {
                    problem = Some((
                        RejectKind::DuplicateKey,
                        None,
                        "primary key repeats an earlier row".to_string(),
                    ));
                }
                let mut uniques = Vec::with_capacity(table.unique.len());
                for (ui, u) in table.unique.iter().enumerate() {
                    let h = key_hash(&values, u);
                    if problem.is_none() && h.is_some_and(|h| keys.unique[ui].contains(&h)) {
                        let cols: Vec<&str> =
                            u.iter().map(|&c| table.columns[c].name.as_str()).collect();
                        problem = Some((
                            RejectKind::DuplicateKey,
                            None,
                            format!("unique key ({}) repeats an earlier row", cols.join(", ")),
                        ));
                    }
                    uniques.push(h);
                }
                if problem.is_none() {
                    if let Some(h) = pk {
                        keys.primary.insert(h);
                    }
                    for (ui, h) in uniques.into_iter().enumerate() {
                        if let Some(h) = h {
                            keys.unique[ui].insert(h);
                        }
                    }
                }
            }
            match problem {
                None => {
                    stats.written += 1;
                    stats.checksum = stats.checksum.wrapping_add(hash);
                    if let Some(ready) = chunk.push(&csv)? {
                        stats.chunks.push((ready.index, ready.rows));
                        on_chunk(ready)?;
                    }
                    return Ok(());
                }
                Some((kind, column, detail)) => {
                    stats.read -= 1; // counted below with every other rejected row
                    (id, line, kind, column, detail)
                }
            }
        }
    };
    stats.read += 1;
    stats.rejected += 1;
    *stats
        .rejected_by_reason
        .entry(kind.as_str().to_string())
        .or_default() += 1;
    let entry = serde_json::json!({"id": id, "line": line, "reason": kind, "column": column, "detail": detail});
    writeln!(rejects, "{entry}").map_err(|e| Error::io(rejects_path, e))
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

/// Rebuilds a table's key set from its chunk files (on resume, for tables already
/// exported whose keys a child table needs).
pub fn rebuild_keys(table: &Table, dir: &Path, chunks: &[(u32, u64)]) -> Result<KeySet> {
    let mut keys = KeySet::new(table);
    for &(index, _) in chunks {
        let path = chunk_path(dir, index);
        let f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        for line in BufReader::new(f).lines() {
            let line = line.map_err(|e| Error::io(&path, e))?;
            keys.insert_row(table, &csv::decode_row(&line));
        }
    }
    Ok(keys)
}
