//! APOC JSON-lines export files.
//!
//! A source directory holds one or more `*.json` / `*.jsonl` files (read in name order).
//! Reading every file once per target table would cost one pass per table, so the
//! first step of a run ([`partition`]) reads the files once and notes where each line
//! goes: one partition per node label and relationship type the spec uses, each table
//! then streaming only its own. A partition piece lists the byte ranges of its lines in
//! the export file ([`RangeWriter`], read back by [`read_piece`]) rather than a copy of
//! them. A large file is cut into byte ranges at line starts and split on several
//! threads, each range writing its own piece of every partition; a table reads its
//! pieces in order, so the export's order is kept. Lines that are not APOC records are
//! counted and written to `_source.rejects.jsonl` with their file and line number.

pub use super::PartitionKey;
use super::{Endpoint, Properties, Record, Text};
use crate::error::{Error, Result};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    labels: Vec<Text<'a>>,
    /// [`Text`] too: serde borrows a `Cow<str>` field, not one inside an `Option`.
    #[serde(default, borrow)]
    label: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    id: &'a RawValue,
    #[serde(default, borrow)]
    labels: Vec<Text<'a>>,
    #[serde(default, borrow)]
    properties: Properties<'a>,
    #[serde(default, borrow)]
    start: Option<LineEndpoint<'a>>,
    #[serde(default, borrow)]
    end: Option<LineEndpoint<'a>>,
}

#[derive(Deserialize)]
struct LineEndpoint<'a> {
    #[serde(borrow)]
    id: &'a RawValue,
    #[serde(default, borrow)]
    labels: Vec<Text<'a>>,
}

/// A record id: a string, or a number in JSON spelling.
fn id_text(v: &RawValue) -> Option<String> {
    match v.get().as_bytes().first() {
        Some(b'"' | b'-' | b'0'..=b'9') => super::raw_text(v),
        _ => None,
    }
}

/// The id of the record on an APOC line, without reading the rest of it (`None` for a
/// line that is not a record with an id).
pub fn record_id(line: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct IdOnly<'a> {
        #[serde(borrow)]
        id: &'a RawValue,
    }
    let l: IdOnly = serde_json::from_slice(line).ok()?;
    id_text(l.id)
}

/// The id and both ends of the relationship on an APOC line, its properties checked as
/// JSON but not collected (`None` for a line that is not UTF-8 or not a relationship
/// with ids at both ends, as [`parse_record`] would refuse): what a relationship-sourced
/// column needs.
pub fn relationship_ends<'a>(line: &'a [u8]) -> Option<(String, Endpoint<'a>, Endpoint<'a>)> {
    #[derive(Deserialize)]
    struct Ends<'b> {
        #[serde(rename = "type", borrow)]
        kind: Cow<'b, str>,
        #[serde(borrow)]
        id: &'b RawValue,
        #[serde(borrow)]
        start: LineEndpoint<'b>,
        #[serde(borrow)]
        end: LineEndpoint<'b>,
    }
    let l: Ends = serde_json::from_str(std::str::from_utf8(line).ok()?).ok()?;
    if l.kind != "relationship" {
        return None;
    }
    let endpoint = |e: LineEndpoint<'a>| -> Option<Endpoint<'a>> {
        Some(Endpoint {
            id: id_text(e.id)?,
            labels: Text::into_cows(e.labels),
        })
    };
    Some((id_text(l.id)?, endpoint(l.start)?, endpoint(l.end)?))
}

/// Parses one APOC line into a record.
pub fn parse_record(line: &str) -> std::result::Result<Record<'_>, String> {
    let l: Line =
        serde_json::from_str(line).map_err(|e| format!("not an APOC JSON record: {e}"))?;
    let id = id_text(l.id).ok_or("`id` must be a string or a number")?;
    fn endpoint<'a>(
        e: Option<LineEndpoint<'a>>,
        which: &str,
    ) -> std::result::Result<Option<Endpoint<'a>>, String> {
        match e {
            None => Ok(None),
            Some(e) => Ok(Some(Endpoint {
                id: id_text(e.id).ok_or(format!("`{which}.id` must be a string or a number"))?,
                labels: Text::into_cows(e.labels),
            })),
        }
    }
    match &*l.kind {
        "node" => Ok(Record {
            id,
            labels: Text::into_cows(l.labels),
            start: None,
            end: None,
            properties: l.properties,
        }),
        "relationship" => {
            let start = endpoint(l.start, "start")?;
            let end = endpoint(l.end, "end")?;
            if start.is_none() || end.is_none() {
                return Err("a relationship needs `start` and `end`".into());
            }
            Ok(Record {
                id,
                labels: Vec::new(),
                start,
                end,
                properties: l.properties,
            })
        }
        other => Err(format!("unknown record type `{other}`")),
    }
}

/// The export files of a source directory, in name order.
pub fn source_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if path.is_file() && (ext == "json" || ext == "jsonl") {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(Error::Other(format!(
            "{}: no *.json or *.jsonl APOC export file found; export with apoc.export.json.all(file, {{jsonFormat: 'JSON_LINES'}})",
            dir.display()
        )));
    }
    Ok(files)
}

/// Result of [`partition`].
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Partitions {
    /// Partition key (as `label:X` / `rel:X`) → its files, read one after the other in
    /// this order (the source's order).
    pub files: BTreeMap<String, Vec<PathBuf>>,
    /// Records per partition key.
    pub records: BTreeMap<String, u64>,
    /// Lines that are not APOC records.
    pub malformed: u64,
}

impl Partitions {
    /// Adds the partitions of another source step.
    pub fn merge(&mut self, other: Partitions) {
        self.files.extend(other.files);
        self.records.extend(other.records);
        self.malformed += other.malformed;
    }
}

/// A file smaller than this is read by one thread.
const MIN_SPLIT_BYTES: u64 = 4 << 20;

/// A byte range of a source file: the lines that start in `start..end`.
struct Segment {
    file: PathBuf,
    start: u64,
    end: u64,
}

/// What partitioning one segment wrote.
struct SegmentOutput {
    /// Per key index: the segment's file for it and its records (only keys it saw).
    files: BTreeMap<usize, (PathBuf, u64)>,
    /// Lines in the segment (for the line numbers of the next segment of the file).
    lines: u64,
    malformed: u64,
    /// Malformed lines, with line numbers counted from the segment's start.
    malformed_file: PathBuf,
}

/// Splits the export files into files per needed label / relationship type under `out`
/// (keys of other kinds are left to their readers). A node with several needed labels
/// goes into each of their partitions. Each file is cut into `threads` byte ranges at
/// line starts, read by `threads` threads at once; every range writes its own file per
/// key, listed in source order, so a table still reads its records in the source's
/// order.
pub fn partition(
    source_dir: &Path,
    keys: &[PartitionKey],
    out: &Path,
    threads: usize,
    progress: &indicatif::ProgressBar,
) -> Result<Partitions> {
    partition_split(source_dir, keys, out, threads, MIN_SPLIT_BYTES, progress)
}

/// [`partition`], splitting files of at least `min_split` bytes (tests split tiny ones).
fn partition_split(
    source_dir: &Path,
    keys: &[PartitionKey],
    out: &Path,
    threads: usize,
    min_split: u64,
    progress: &indicatif::ProgressBar,
) -> Result<Partitions> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    // The keys read here, by their index in `keys` (the first of equal keys).
    let mut wanted: BTreeMap<PartitionKey, usize> = BTreeMap::new();
    for (i, k) in keys.iter().enumerate() {
        // Other sources have their own readers; a Cypher query is refused before the run
        // starts (an export cannot run queries).
        if matches!(k, PartitionKey::Label(_) | PartitionKey::RelType(_)) {
            wanted.entry(k.clone()).or_insert(i);
        }
    }
    let threads = threads.max(1);
    let mut segments = Vec::new();
    for file in source_files(source_dir)? {
        let len = std::fs::metadata(&file)
            .map_err(|e| Error::io(&file, e))?
            .len();
        let parts = if len < min_split { 1 } else { threads as u64 };
        for p in 0..parts {
            segments.push(Segment {
                file: file.clone(),
                start: len * p / parts,
                end: len * (p + 1) / parts,
            });
        }
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let outputs: Vec<Result<Vec<(usize, SegmentOutput)>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads.min(segments.len()))
            .map(|_| {
                scope.spawn(|| -> Result<Vec<(usize, SegmentOutput)>> {
                    let mut done = Vec::new();
                    loop {
                        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(segment) = segments.get(n) else {
                            return Ok(done);
                        };
                        done.push((n, partition_segment(segment, n, &wanted, out, progress)?));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| Error::Other("partition thread panicked".into()))?
            })
            .collect()
    });
    let mut outputs: Vec<(usize, SegmentOutput)> = outputs
        .into_iter()
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    outputs.sort_by_key(|(n, _)| *n);

    let mut result = Partitions::default();
    for (key, &i) in &wanted {
        let (files, records): (Vec<PathBuf>, Vec<u64>) = outputs
            .iter()
            .filter_map(|(_, o)| o.files.get(&i).cloned())
            .unzip();
        result.files.insert(key.name(), files);
        result.records.insert(key.name(), records.iter().sum());
    }
    // The malformed lines of every segment, numbered from the start of their file.
    let malformed_path = out.join("_source.rejects.jsonl");
    let mut malformed = BufWriter::new(
        std::fs::File::create(&malformed_path).map_err(|e| Error::io(&malformed_path, e))?,
    );
    let mut lines_before = 0u64;
    for (n, o) in &outputs {
        if *n > 0 && segments[*n].file != segments[n - 1].file {
            lines_before = 0;
        }
        if lines_before > 0 {
            for (path, _) in o.files.values() {
                set_lines_before(path, lines_before)?;
            }
        }
        result.malformed += o.malformed;
        if o.malformed > 0 {
            let f = std::fs::File::open(&o.malformed_file)
                .map_err(|e| Error::io(&o.malformed_file, e))?;
            for line in BufReader::new(f).lines() {
                let line = line.map_err(|e| Error::io(&o.malformed_file, e))?;
                let mut entry: serde_json::Value = serde_json::from_str(&line)
                    .map_err(|e| Error::Other(format!("internal: malformed-line entry: {e}")))?;
                if let Some(l) = entry.get_mut("line") {
                    *l = serde_json::Value::from(l.as_u64().unwrap_or(0) + lines_before);
                }
                writeln!(malformed, "{entry}").map_err(|e| Error::io(&malformed_path, e))?;
            }
        }
        std::fs::remove_file(&o.malformed_file).map_err(|e| Error::io(&o.malformed_file, e))?;
        lines_before += o.lines;
    }
    malformed
        .flush()
        .map_err(|e| Error::io(&malformed_path, e))?;
    Ok(result)
}

/// The extension of a partition piece that lists byte ranges of a source file (see
/// [`RangeWriter`]); any other piece holds its lines.
pub const RANGES_EXT: &str = "ranges";

/// A source file as it was when it was partitioned: reading ranges of a file that has
/// changed since would read other lines, so the reader checks the stamp first.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct SourceStamp {
    path: PathBuf,
    len: u64,
    modified_ns: u128,
}

impl SourceStamp {
    fn of(path: &Path) -> Result<SourceStamp> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let modified_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let path = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
        Ok(SourceStamp {
            path,
            len: meta.len(),
            modified_ns,
        })
    }
}

/// Writes a partition piece as the byte ranges of its lines in the source file (one
/// `start end first_line` line per run of consecutive lines, after a header line with the
/// source's stamp and a [`LINES_BEFORE`] line) instead of copying the lines: an export
/// whose labels come in runs, as APOC writes them, is split without writing its records a
/// second time. `first_line` counts from the segment's start; the segment's offset in its
/// file is known only once every segment before it is read, so [`partition`] writes it
/// into the fixed-width [`LINES_BEFORE`] field afterwards.
struct RangeWriter {
    path: PathBuf,
    w: BufWriter<std::fs::File>,
    records: u64,
    open: Option<(u64, u64, u64)>,
}

/// The second line of a ranges file: the lines of the source file before the segment it
/// lists, as 20 digits (rewritten in place by [`partition`]).
const LINES_BEFORE: &str = "lines_before ";

/// Writes `lines_before` into the [`LINES_BEFORE`] field of a ranges file.
fn set_lines_before(path: &Path, lines_before: u64) -> Result<()> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let mut header = Vec::new();
    BufReader::new(&mut f)
        .read_until(b'\n', &mut header)
        .map_err(|e| Error::io(path, e))?;
    f.seek(SeekFrom::Start((header.len() + LINES_BEFORE.len()) as u64))
        .map_err(|e| Error::io(path, e))?;
    write!(f, "{lines_before:020}").map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

impl RangeWriter {
    fn create(path: PathBuf, source: &SourceStamp) -> Result<RangeWriter> {
        let f = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
        let mut w = BufWriter::with_capacity(1 << 16, f);
        let header = serde_json::to_string(source)
            .map_err(|e| Error::Other(format!("encoding a source stamp: {e}")))?;
        writeln!(w, "{header}\n{LINES_BEFORE}{:020}", 0).map_err(|e| Error::io(&path, e))?;
        Ok(RangeWriter {
            path,
            w,
            records: 0,
            open: None,
        })
    }

    /// Adds the line at `start..end` (its terminator included), line `line_no` of the
    /// segment.
    fn push(&mut self, start: u64, end: u64, line_no: u64) -> Result<()> {
        self.records += 1;
        match &mut self.open {
            Some((_, open_end, _)) if *open_end == start => *open_end = end,
            _ => {
                self.flush_range()?;
                self.open = Some((start, end, line_no));
            }
        }
        Ok(())
    }

    fn flush_range(&mut self) -> Result<()> {
        if let Some((start, end, line)) = self.open.take() {
            writeln!(self.w, "{start} {end} {line}").map_err(|e| Error::io(&self.path, e))?;
        }
        Ok(())
    }

    /// Writes the last range and syncs; returns the path and the records.
    fn finish(mut self) -> Result<(PathBuf, u64)> {
        self.flush_range()?;
        self.w.flush().map_err(|e| Error::io(&self.path, e))?;
        self.w
            .get_ref()
            .sync_all()
            .map_err(|e| Error::io(&self.path, e))?;
        Ok((self.path, self.records))
    }
}

/// The export file a partition piece lists lines of (`None` for a piece that holds its
/// lines: one written by another source, such as Bolt).
pub fn piece_source(piece: &Path) -> Result<Option<PathBuf>> {
    if piece.extension().and_then(|e| e.to_str()) != Some(RANGES_EXT) {
        return Ok(None);
    }
    let file = std::fs::File::open(piece).map_err(|e| Error::io(piece, e))?;
    let mut header = String::new();
    BufReader::new(file)
        .read_line(&mut header)
        .map_err(|e| Error::io(piece, e))?;
    let stamp: SourceStamp = serde_json::from_str(&header).map_err(|e| {
        Error::Other(format!(
            "{}: not a partition ranges file: {e}",
            piece.display()
        ))
    })?;
    Ok(Some(stamp.path))
}

/// Calls `f` with each line of a partition piece in order (its line number in the export
/// file when the piece lists lines of one, and its bytes without the terminator; the
/// reader checks no encoding, the record parser does) until it returns false. A piece
/// is either a file of lines or a ranges file ([`RANGES_EXT`]) over a source file, which
/// must not have changed since.
pub fn read_piece(piece: &Path, mut f: impl FnMut(Option<u64>, &[u8]) -> bool) -> Result<()> {
    let file = std::fs::File::open(piece).map_err(|e| Error::io(piece, e))?;
    let mut line = Vec::with_capacity(4096);
    if piece.extension().and_then(|e| e.to_str()) != Some(RANGES_EXT) {
        let mut reader = BufReader::with_capacity(1 << 20, file);
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| Error::io(piece, e))?;
            if n == 0 || !f(None, without_terminator(&line)) {
                return Ok(());
            }
        }
    }
    let mut ranges = BufReader::new(file).lines();
    let header = ranges
        .next()
        .transpose()
        .map_err(|e| Error::io(piece, e))?
        .unwrap_or_default();
    let stamp: SourceStamp = serde_json::from_str(&header).map_err(|e| {
        Error::Other(format!(
            "{}: not a partition ranges file: {e}",
            piece.display()
        ))
    })?;
    let lines_before = ranges
        .next()
        .transpose()
        .map_err(|e| Error::io(piece, e))?
        .and_then(|l| l.strip_prefix(LINES_BEFORE)?.parse::<u64>().ok())
        .ok_or_else(|| {
            Error::Other(format!(
                "{}: a partition ranges file without `{LINES_BEFORE}` (written by an older version); run again without --resume",
                piece.display()
            ))
        })?;
    let now = SourceStamp::of(&stamp.path)?;
    if now != stamp {
        return Err(Error::Other(format!(
            "{}: the source file changed since it was partitioned (size or modification time); run again without --resume",
            stamp.path.display()
        )));
    }
    let source = std::fs::File::open(&stamp.path).map_err(|e| Error::io(&stamp.path, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, source);
    let mut pos = 0u64;
    let bad = |what: &str| Error::Other(format!("{}: {what}", piece.display()));
    for range in ranges {
        let range = range.map_err(|e| Error::io(piece, e))?;
        let mut fields = range.split(' ').map(str::parse::<u64>);
        let (start, end, mut line_no) = match (fields.next(), fields.next(), fields.next()) {
            (Some(Ok(a)), Some(Ok(b)), Some(Ok(l))) => (a, b, lines_before + l),
            _ => return Err(bad("a range is not `start end first_line`")),
        };
        if start < pos || end < start {
            return Err(bad("ranges out of order"));
        }
        // Forward within the buffer when the gap is small, a seek otherwise.
        reader
            .seek_relative((start - pos) as i64)
            .map_err(|e| Error::io(&stamp.path, e))?;
        pos = start;
        while pos < end {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| Error::io(&stamp.path, e))?;
            if n == 0 {
                return Err(bad("a range runs past the end of the source file"));
            }
            pos += n as u64;
            if !f(Some(line_no), without_terminator(&line)) {
                return Ok(());
            }
            line_no += 1;
        }
    }
    Ok(())
}

/// A line read with its terminator, without it (`\n` or `\r\n`).
fn without_terminator(line: &[u8]) -> &[u8] {
    match line {
        [rest @ .., b'\r', b'\n'] | [rest @ .., b'\n'] => rest,
        _ => line,
    }
}

/// Partitions the lines starting in one segment of a file; `n` numbers its files.
fn partition_segment(
    segment: &Segment,
    n: usize,
    wanted: &BTreeMap<PartitionKey, usize>,
    out: &Path,
    progress: &indicatif::ProgressBar,
) -> Result<SegmentOutput> {
    use std::io::{Seek, SeekFrom};
    let file = &segment.file;
    let mut f = std::fs::File::open(file).map_err(|e| Error::io(file, e))?;
    let mut pos = segment.start;
    let mut reader = if pos == 0 {
        BufReader::with_capacity(1 << 20, f)
    } else {
        // Skip the line under way at `start` (it belongs to the segment before), unless
        // `start` is exactly where a line begins.
        f.seek(SeekFrom::Start(pos - 1))
            .map_err(|e| Error::io(file, e))?;
        let mut r = BufReader::with_capacity(1 << 20, f);
        let mut skipped = Vec::new();
        let n = r
            .read_until(b'\n', &mut skipped)
            .map_err(|e| Error::io(file, e))?;
        pos = pos - 1 + n as u64;
        r
    };
    let malformed_file = out.join(format!("_source.rejects.{n:04}.jsonl"));
    let mut malformed_w = BufWriter::new(
        std::fs::File::create(&malformed_file).map_err(|e| Error::io(&malformed_file, e))?,
    );
    let source = SourceStamp::of(file)?;
    let mut pieces: BTreeMap<usize, RangeWriter> = BTreeMap::new();
    // The wanted partitions by name, looked up without building a key per line.
    let mut by_label = std::collections::HashMap::new();
    let mut by_rel_type = std::collections::HashMap::new();
    for (key, &i) in wanted {
        match key {
            PartitionKey::Label(l) => by_label.insert(l.as_str(), i),
            PartitionKey::RelType(t) => by_rel_type.insert(t.as_str(), i),
            PartitionKey::Source(_) => None,
        };
    }
    let mut output = SegmentOutput {
        files: BTreeMap::new(),
        lines: 0,
        malformed: 0,
        malformed_file: malformed_file.clone(),
    };
    let mut buf = Vec::with_capacity(4096);
    let mut counted = 0u64;
    while pos < segment.end {
        buf.clear();
        let read = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::io(file, e))?;
        if read == 0 {
            break;
        }
        pos += read as u64;
        output.lines += 1;
        let line_no = output.lines;
        let bytes = without_terminator(&buf);
        // Only the head is read (and its strings checked as UTF-8); the whole line is
        // checked once, by the exporter's record parser.
        let head = if bytes.trim_ascii().is_empty() {
            Ok(None)
        } else {
            serde_json::from_slice::<Head>(bytes)
                .map(Some)
                .map_err(|e| e.to_string())
        };
        let head = match head {
            Ok(Some(h)) => h,
            Ok(None) => continue,
            Err(detail) => {
                output.malformed += 1;
                let entry = serde_json::json!({"file": file.display().to_string(), "line": line_no, "reason": "malformed", "detail": detail});
                writeln!(malformed_w, "{entry}").map_err(|e| Error::io(&malformed_file, e))?;
                continue;
            }
        };
        counted += 1;
        if counted.is_multiple_of(1024) {
            progress.inc(1024);
        }
        // Every wanted partition of the line (one per needed label of a node) gets its
        // byte range.
        let line_start = pos - read as u64;
        let mut push = |i: usize| -> Result<()> {
            let piece = match pieces.entry(i) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => e.insert(RangeWriter::create(
                    out.join(format!("p{i:03}.{n:04}.{RANGES_EXT}")),
                    &source,
                )?),
            };
            piece.push(line_start, pos, line_no)
        };
        match &*head.kind {
            "node" => {
                for label in &head.labels {
                    if let Some(&i) = by_label.get(&*label.0) {
                        push(i)?;
                    }
                }
            }
            "relationship" => {
                if let Some(&i) = head.label.and_then(|t| by_rel_type.get(&*t.0)) {
                    push(i)?;
                }
            }
            _ => {}
        }
    }
    progress.inc(counted % 1024);
    for (i, piece) in pieces {
        let (path, records) = piece.finish()?;
        output.files.insert(i, (path, records));
    }
    malformed_w
        .flush()
        .map_err(|e| Error::io(&malformed_file, e))?;
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_apoc_nodes_and_relationships() {
        let n = parse_record(r#"{"type":"node","id":"12","labels":["Company"],"properties":{"name":"株式会社あ","employees":30}}"#).unwrap();
        assert_eq!(n.id, "12");
        assert_eq!(n.labels, vec!["Company"]);
        assert_eq!(n.properties.get("employees").map(|v| v.get()), Some("30"));
        let r = parse_record(r#"{"type":"relationship","id":"7","label":"TAGGED","properties":{},"start":{"id":"1","labels":["Deal"]},"end":{"id":2,"labels":["Tag"]}}"#).unwrap();
        assert_eq!(r.start.unwrap().id, "1");
        assert_eq!(r.end.unwrap().id, "2");
        assert!(parse_record(r#"{"type":"relationship","id":"7","label":"X"}"#).is_err());
        // Names and labels with escapes are read unescaped (copied), the others borrowed.
        let e = parse_record(
            r#"{"type":"node","id":"1","labels":["A\u0042","C"],"properties":{"n\u0061me":"x","k":"\"q\""}}"#,
        )
        .unwrap();
        assert_eq!(e.labels, vec!["AB", "C"]);
        assert!(matches!(e.labels[1], Cow::Borrowed(_)));
        assert_eq!(e.properties.get("name").map(|v| v.get()), Some(r#""x""#));
        assert_eq!(
            e.properties.get("k").and_then(super::super::raw_text),
            Some(r#""q""#.to_string())
        );
        assert!(parse_record("{oops").is_err());
    }

    proptest::proptest! {
        /// The lean reader of relationship ends agrees with the full record parser on
        /// every line: the same id and ends, or both refuse.
        #[test]
        fn relationship_ends_agree_with_the_record_parser(
            kind in proptest::prop_oneof!["relationship", "node"],
            id in proptest::prop_oneof![r#""[a-z0-9]{1,4}""#, "[0-9]{1,20}", "true"],
            start in proptest::option::of(r#"\{"id":("[0-9]{1,3}"|[0-9]{1,3}|null),"labels":\["(A|B|京)"\]\}"#),
            end in proptest::option::of(r#"\{"labels":\[\],"id":("x"|7|1\.5e3)\}"#),
            properties in r#"\{("k":("v\\"\\u00e9"|\[1,\{"a":null\}\]|-0\.5),?)?\}"#,
            truncate in proptest::option::of(0usize..80),
        ) {
            let mut fields = vec![format!(r#""type":"{kind}""#), format!(r#""id":{id}"#)];
            fields.push(format!(r#""properties":{properties}"#));
            fields.extend(start.map(|s| format!(r#""start":{s}"#)));
            fields.extend(end.map(|e| format!(r#""end":{e}"#)));
            let mut line = format!("{{{}}}", fields.join(","));
            if let Some(n) = truncate {
                let mut n = n.min(line.len());
                while !line.is_char_boundary(n) {
                    n -= 1;
                }
                line.truncate(n);
            }
            let full = parse_record(&line).ok().and_then(|r| {
                let (start, end) = (r.start?, r.end?);
                Some((r.id, start.id, start.labels, end.id, end.labels))
            });
            let lean = relationship_ends(line.as_bytes())
                .map(|(id, s, e)| (id, s.id, s.labels, e.id, e.labels));
            proptest::prop_assert_eq!(lean, full, "{}", line);
        }
    }

    #[test]
    fn relationship_ends_refuse_what_is_not_utf8() {
        let line = b"{\"type\":\"relationship\",\"id\":\"1\",\"properties\":{\"k\":\"\xff\"},\"start\":{\"id\":\"1\"},\"end\":{\"id\":\"2\"}}";
        assert!(relationship_ends(line).is_none());
    }

    /// Per partition key, its records in order.
    type Records = Vec<(String, Vec<String>)>;

    /// The partitions' records, the malformed lines (`file:line`) and their count, of a
    /// partition run.
    fn partitioned(dir: &Path, threads: usize) -> (Records, Vec<String>, u64) {
        let keys = [
            PartitionKey::Label("A".into()),
            PartitionKey::RelType("R".into()),
            PartitionKey::Label("B".into()),
        ];
        let out = dir.join(format!("out{threads}"));
        let p = partition_split(
            &dir.join("src"),
            &keys,
            &out,
            threads,
            1,
            &indicatif::ProgressBar::hidden(),
        )
        .unwrap();
        let files = p
            .files
            .iter()
            .map(|(k, files)| {
                let lines = files
                    .iter()
                    .flat_map(|f| {
                        let mut lines = Vec::new();
                        // Each record with its line number in the export file.
                        read_piece(f, |n, l| {
                            let n = n.map_or("?".into(), |n| n.to_string());
                            lines.push(format!("{n}:{}", String::from_utf8_lossy(l)));
                            true
                        })
                        .unwrap();
                        lines
                    })
                    .collect();
                (k.clone(), lines)
            })
            .collect();
        let rejects = std::fs::read_to_string(out.join("_source.rejects.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                format!("{}:{}", v["file"].as_str().unwrap(), v["line"])
            })
            .collect();
        (files, rejects, p.malformed)
    }

    /// Bytes that are not UTF-8 in a record's head make the line malformed at the
    /// partition; elsewhere in the record they travel with it to the exporter, which
    /// rejects the row (see the export tests).
    #[test]
    fn bytes_that_are_not_utf8_in_the_head_are_a_malformed_line() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        let mut bytes =
            b"{\"type\":\"node\",\"id\":\"1\",\"labels\":[\"A\xff\"],\"properties\":{}}\n".to_vec();
        bytes.extend_from_slice(b"{\"type\":\"node\",\"id\":\"2\",\"labels\":[\"A\"],\"properties\":{\"x\":\"\xff\"}}\n");
        std::fs::write(src.join("a.jsonl"), bytes).unwrap();
        let (files, rejects, malformed) = partitioned(dir.path(), 1);
        assert_eq!(malformed, 1);
        assert!(rejects[0].ends_with("a.jsonl:1"), "{rejects:?}");
        assert_eq!(files[0].0, "label:A");
        assert_eq!(files[0].1.len(), 1);
    }

    /// A piece that lists ranges of a source file refuses to read the file once it has
    /// changed (its ranges would point at other lines).
    #[test]
    fn ranges_of_a_changed_source_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        let line = r#"{"type":"node","id":"1","labels":["A"],"properties":{}}"#;
        std::fs::write(src.join("a.jsonl"), format!("{line}\n")).unwrap();
        let keys = [PartitionKey::Label("A".into())];
        let out = dir.path().join("out");
        let p = partition(&src, &keys, &out, 1, &indicatif::ProgressBar::hidden()).unwrap();
        let piece = &p.files["label:A"][0];
        let mut lines = Vec::new();
        read_piece(piece, |_, l| {
            lines.push(l.to_vec());
            true
        })
        .unwrap();
        assert_eq!(lines, [line.as_bytes()]);
        std::fs::write(src.join("a.jsonl"), format!("{line}\n{line}\n")).unwrap();
        let err = read_piece(piece, |_, _| true).unwrap_err().to_string();
        assert!(err.contains("changed since it was partitioned"), "{err}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// Cut into ranges read by several threads, the partitions hold the same records
        /// in the same order, and records and malformed lines keep their line numbers in
        /// their export file.
        #[test]
        fn threads_do_not_change_the_partitions(
            files in proptest::collection::vec(
                proptest::collection::vec(0u8..5, 0..40),
                1..3,
            ),
            threads in 2usize..5,
            crlf in proptest::bool::ANY,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let src = dir.path().join("src");
            std::fs::create_dir_all(&src).unwrap();
            for (f, kinds) in files.iter().enumerate() {
                let lines: Vec<String> = kinds
                    .iter()
                    .enumerate()
                    .map(|(i, k)| match k {
                        0 => format!(r#"{{"type":"node","id":"{f}-{i}","labels":["A"],"properties":{{}}}}"#),
                        1 => format!(r#"{{"type":"node","id":"{f}-{i}","labels":["A","B"],"properties":{{"x":"ü"}}}}"#),
                        2 => format!(r#"{{"type":"relationship","id":"{f}-{i}","label":"R","start":{{"id":"1"}},"end":{{"id":"2"}}}}"#),
                        3 => String::new(),
                        _ => "{broken".to_string(),
                    })
                    .collect();
                let sep = if crlf { "\r\n" } else { "\n" };
                std::fs::write(src.join(format!("{f}.jsonl")), lines.join(sep)).unwrap();
            }
            let one = partitioned(dir.path(), 1);
            let many = partitioned(dir.path(), threads);
            proptest::prop_assert_eq!(&one, &many);
            // Read back through the ranges, each partition holds exactly its lines of
            // the source, in order.
            let mut expected: Records = ["label:A", "label:B", "rel:R"]
                .iter()
                .map(|k| (k.to_string(), Vec::new()))
                .collect();
            for (f, kinds) in files.iter().enumerate() {
                for (i, k) in kinds.iter().enumerate() {
                    let n = i + 1;
                    let line = |kind| match kind {
                        0 => format!(r#"{n}:{{"type":"node","id":"{f}-{i}","labels":["A"],"properties":{{}}}}"#),
                        1 => format!(r#"{n}:{{"type":"node","id":"{f}-{i}","labels":["A","B"],"properties":{{"x":"ü"}}}}"#),
                        _ => format!(r#"{n}:{{"type":"relationship","id":"{f}-{i}","label":"R","start":{{"id":"1"}},"end":{{"id":"2"}}}}"#),
                    };
                    match k {
                        0 => expected[0].1.push(line(0)),
                        1 => {
                            expected[0].1.push(line(1));
                            expected[1].1.push(line(1));
                        }
                        2 => expected[2].1.push(line(2)),
                        _ => {}
                    }
                }
            }
            proptest::prop_assert_eq!(one.0, expected);
        }
    }
}
