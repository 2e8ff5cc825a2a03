//! Key sets on disk, for duplicate and foreign key checks in bounded memory.
//!
//! A [`Key`] is the exact value of a key (its columns, length-prefixed) with a 64-bit
//! fingerprint in front; keys order by (fingerprint, bytes), so two keys with the same
//! fingerprint are still told apart by their bytes (an exact fallback: a fingerprint
//! collision can neither reject a valid row nor let an invalid one through).
//!
//! Keys live in sorted *run files* (`[fingerprint u64 LE][length u32 LE][bytes]`, sorted,
//! no repeats). A table being exported checks its rows block by block: the keys of a
//! whole block are sorted once into [`Probes`] (one buffer, key order) and merged
//! against each run in one sequential pass ([`Runs::contains`], [`KeyFile::contains`]);
//! rows inside the block are checked in source order against the keys the block
//! accepted before them (numbered by [`Probes::groups`]), and the block's accepted keys,
//! already in key order, become a new run ([`Runs::add_sorted`]). Runs are merged into
//! one when there are [`MAX_RUNS`] of them, and into the final [`KeyFile`] a child table
//! probes once the table is exported. Memory is therefore one block of keys, whatever
//! the table's size; the cost is one sequential read of the runs per block (from the
//! page cache, which does not count against the process).

use crate::error::{Error, Result};
use std::cmp::Ordering;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Runs kept before they are merged into one.
pub const MAX_RUNS: usize = 8;

/// One key: a fingerprint and the exact bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub hash: u64,
    pub bytes: Box<[u8]>,
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        self.hash
            .cmp(&other.hash)
            .then_with(|| self.bytes.cmp(&other.bytes))
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Key {
    /// The key of `cols` in a row, `None` when one of them is null (a null key is never a
    /// duplicate and a null foreign key points nowhere, as in SQL).
    pub fn of(values: &[Option<String>], cols: &[usize]) -> Option<Key> {
        let mut bytes = Vec::with_capacity(16);
        encode(values, cols, &mut bytes)?;
        Some(Key::from_bytes(bytes.into_boxed_slice()))
    }

    pub fn from_bytes(bytes: Box<[u8]>) -> Key {
        Key {
            hash: fingerprint(&bytes),
            bytes,
        }
    }

    /// The column values the key was made of (for reject details).
    pub fn values(&self) -> Vec<String> {
        values(&self.bytes)
    }
}

/// Appends the key of `cols` in a row to `out` (each value length-prefixed); `None`, with
/// `out` as it was, when one of them is null (a null key is never a duplicate and a null
/// foreign key points nowhere, as in SQL).
pub fn encode(values: &[Option<String>], cols: &[usize], out: &mut Vec<u8>) -> Option<()> {
    let start = out.len();
    for &c in cols {
        let Some(Some(v)) = values.get(c) else {
            out.truncate(start);
            return None;
        };
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    Some(())
}

/// The fingerprint of a key's bytes.
pub fn fingerprint(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// The column values a key's bytes were made of (for reject details).
pub fn values(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 4 {
        let n = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let end = (4 + n).min(rest.len());
        out.push(String::from_utf8_lossy(&rest[4..end]).into_owned());
        rest = &rest[end..];
    }
    out
}

/// Reads a run file in order. Records are decoded in place in a large buffer (a probe
/// pass mostly compares fingerprints and skips, so it copies no key and allocates
/// nothing per record).
struct RunReader {
    path: PathBuf,
    file: std::fs::File,
    buf: Vec<u8>,
    /// Valid bytes in `buf`.
    end: usize,
    /// Where the next record starts.
    pos: usize,
    /// The current record: fingerprint, and where its bytes are in `buf`.
    hash: u64,
    start: usize,
    len: usize,
}

/// The read buffer of a [`RunReader`].
const READ_BUFFER: usize = 1 << 18;

impl RunReader {
    fn open(path: &Path) -> Result<RunReader> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(RunReader {
            path: path.to_path_buf(),
            file,
            buf: vec![0; READ_BUFFER],
            end: 0,
            pos: 0,
            hash: 0,
            start: 0,
            len: 0,
        })
    }

    /// Makes at least `need` bytes from `pos` available; false at the end of the file
    /// when none are left, an error when the file ends inside a record. Only called when
    /// the buffer runs short (the common case stays in [`RunReader::advance`]).
    #[cold]
    #[inline(never)]
    fn fill(&mut self, need: usize) -> Result<bool> {
        if self.end - self.pos >= need {
            return Ok(true);
        }
        self.buf.copy_within(self.pos..self.end, 0);
        self.end -= self.pos;
        self.pos = 0;
        if self.buf.len() < need {
            self.buf.resize(need.max(READ_BUFFER), 0);
        }
        while self.end < need {
            let n = self
                .file
                .read(&mut self.buf[self.end..])
                .map_err(|e| Error::io(&self.path, e))?;
            if n == 0 {
                if self.end == 0 {
                    return Ok(false);
                }
                return Err(Error::io(
                    &self.path,
                    std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the key file ends inside a record",
                    ),
                ));
            }
            self.end += n;
        }
        Ok(true)
    }

    /// Reads the next record; false at the end of the file.
    #[inline]
    fn advance(&mut self) -> Result<bool> {
        if self.end - self.pos < 12 && !self.fill(12)? {
            return Ok(false);
        }
        let head = &self.buf[self.pos..self.pos + 12];
        let mut hash = [0u8; 8];
        hash.copy_from_slice(&head[..8]);
        let mut len = [0u8; 4];
        len.copy_from_slice(&head[8..]);
        self.hash = u64::from_le_bytes(hash);
        self.len = u32::from_le_bytes(len) as usize;
        if self.end - self.pos < 12 + self.len {
            self.fill(12 + self.len)?;
        }
        self.start = self.pos + 12;
        self.pos = self.start + self.len;
        Ok(true)
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }

    fn key(&self) -> Key {
        Key {
            hash: self.hash,
            bytes: self.bytes().into(),
        }
    }
}

/// Writes a run file from keys in order (through a temporary name, so the file is
/// complete when it exists), dropping repeats.
struct RunWriter {
    path: PathBuf,
    tmp: PathBuf,
    w: BufWriter<std::fs::File>,
    last: Option<(u64, Vec<u8>)>,
    keys: u64,
}

impl RunWriter {
    fn create(path: &Path) -> Result<RunWriter> {
        let tmp = path.with_extension("tmp");
        let f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Ok(RunWriter {
            path: path.to_path_buf(),
            tmp,
            w: BufWriter::with_capacity(1 << 18, f),
            last: None,
            keys: 0,
        })
    }

    fn push(&mut self, hash: u64, bytes: &[u8]) -> Result<()> {
        if let Some((h, b)) = &mut self.last {
            if *h == hash && b[..] == *bytes {
                return Ok(());
            }
            *h = hash;
            b.clear();
            b.extend_from_slice(bytes);
        } else {
            self.last = Some((hash, bytes.to_vec()));
        }
        let mut head = [0u8; 12];
        head[..8].copy_from_slice(&hash.to_le_bytes());
        head[8..].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
        self.w
            .write_all(&head)
            .and_then(|()| self.w.write_all(bytes))
            .map_err(|e| Error::io(&self.tmp, e))?;
        self.keys += 1;
        Ok(())
    }

    /// Completes the file; returns the number of keys written.
    fn finish(mut self) -> Result<u64> {
        self.w.flush().map_err(|e| Error::io(&self.tmp, e))?;
        drop(self.w);
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))?;
        Ok(self.keys)
    }
}

/// Writes sorted keys to `path`, dropping repeats. Returns the number of keys written.
fn write_run(path: &Path, keys: impl Iterator<Item = Result<Key>>) -> Result<u64> {
    let mut w = RunWriter::create(path)?;
    for k in keys {
        let k = k?;
        w.push(k.hash, &k.bytes)?;
    }
    w.finish()
}

/// Merges sorted run files into one sorted stream.
fn merge(paths: &[PathBuf]) -> Result<impl Iterator<Item = Result<Key>>> {
    let mut readers = Vec::with_capacity(paths.len());
    for p in paths {
        let mut r = RunReader::open(p)?;
        if r.advance()? {
            readers.push(r);
        }
    }
    let mut failed = false;
    Ok(std::iter::from_fn(move || {
        if failed || readers.is_empty() {
            return None;
        }
        // Few runs (at most MAX_RUNS): a linear minimum is as fast as a heap.
        let mut min = 0;
        for i in 1..readers.len() {
            let (a, b) = (&readers[i], &readers[min]);
            if a.hash.cmp(&b.hash).then_with(|| a.bytes().cmp(b.bytes())) == Ordering::Less {
                min = i;
            }
        }
        let key = readers[min].key();
        match readers[min].advance() {
            Ok(true) => {}
            Ok(false) => {
                readers.swap_remove(min);
            }
            Err(e) => {
                failed = true;
                return Some(Err(e));
            }
        }
        Some(Ok(key))
    }))
}

/// Reads a sorted run or key file in order (for sort-merge joins over such files).
pub fn read_sorted(path: &Path) -> Result<impl Iterator<Item = Result<Key>>> {
    merge(&[path.to_path_buf()])
}

/// A block's probes in key order, their bytes copied together in that order: a pass
/// over a key file then reads the probes sequentially, where following each probe's own
/// allocation (in row order) would miss the cache once per probe and file.
pub struct Probes {
    /// Sorted by key.
    entries: Vec<ProbeEntry>,
    arena: Vec<u8>,
    len: usize,
}

/// A probe: fingerprint, index, and start and length of its bytes in the arena.
type ProbeEntry = (u64, u32, u32, u32);

impl Probes {
    /// The probes `(fingerprint, index, bytes)`, indexes below `len` (an index may have
    /// no probe, and then is never found).
    pub fn build(mut probes: Vec<(u64, u32, &[u8])>, len: usize) -> Probes {
        // By fingerprint alone (an integer sort), then the few runs of equal fingerprints
        // by their bytes: the order of the key files.
        probes.sort_unstable_by_key(|&(hash, _, _)| hash);
        for run in probes.chunk_by_mut(|a, b| a.0 == b.0) {
            if run.len() > 1 {
                run.sort_unstable_by(|a, b| a.2.cmp(b.2));
            }
        }
        let mut arena = Vec::with_capacity(probes.iter().map(|p| p.2.len()).sum());
        let entries = probes
            .into_iter()
            .map(|(hash, i, bytes)| {
                let start = arena.len() as u32;
                arena.extend_from_slice(bytes);
                (hash, i, start, bytes.len() as u32)
            })
            .collect();
        Probes {
            entries,
            arena,
            len,
        }
    }

    /// Probes for keys, indexed by their position.
    #[cfg(test)]
    pub fn new(keys: &[&Key]) -> Probes {
        let probes = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.hash, i as u32, &k.bytes[..]))
            .collect();
        Probes::build(probes, keys.len())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The distinct keys in key order, each with the indexes that probe it (ascending
    /// within a key only when they were given so).
    fn distinct(&self) -> impl Iterator<Item = (u64, &[u8], &[ProbeEntry])> {
        self.entries
            .chunk_by(|a, b| {
                a.0 == b.0
                    && self.arena[a.2 as usize..(a.2 + a.3) as usize]
                        == self.arena[b.2 as usize..(b.2 + b.3) as usize]
            })
            .map(|run| {
                let (hash, _, start, len) = run[0];
                (
                    hash,
                    &self.arena[start as usize..(start + len) as usize],
                    run,
                )
            })
    }

    /// Per index, the number of its key among the distinct keys (`u32::MAX` for an index
    /// without a probe), and the number of distinct keys.
    pub fn groups(&self) -> (Vec<u32>, usize) {
        let mut of = vec![u32::MAX; self.len];
        let mut n = 0;
        for (g, (_, _, run)) in self.distinct().enumerate() {
            for &(_, i, _, _) in run {
                of[i as usize] = g as u32;
            }
            n = g + 1;
        }
        (of, n)
    }

    /// The distinct keys whose group (numbered as by [`Probes::groups`]) is marked, in
    /// key order.
    pub fn marked<'a>(&'a self, marked: &'a [bool]) -> impl Iterator<Item = (u64, &'a [u8])> {
        self.distinct()
            .zip(marked)
            .filter(|(_, &m)| m)
            .map(|((hash, bytes, _), _)| (hash, bytes))
    }
}

/// Sets `found[i]` for each probe present in the run file (one sequential pass over
/// both). Never clears a flag.
fn probe_file(path: &Path, probes: &Probes, found: &mut [bool]) -> Result<()> {
    let mut r = RunReader::open(path)?;
    if !r.advance()? {
        return Ok(());
    }
    for &(hash, i, start, len) in &probes.entries {
        loop {
            // Fingerprints first; the bytes are only compared when they are equal.
            let ord = r.hash.cmp(&hash).then_with(|| {
                r.bytes()
                    .cmp(&probes.arena[start as usize..start as usize + len as usize])
            });
            match ord {
                Ordering::Less => {
                    if !r.advance()? {
                        return Ok(());
                    }
                }
                Ordering::Equal => {
                    found[i as usize] = true;
                    break;
                }
                Ordering::Greater => break,
            }
        }
    }
    Ok(())
}

/// The growing key set of one key (primary or unique) of the table being exported.
#[derive(Debug)]
pub struct Runs {
    dir: PathBuf,
    name: String,
    runs: Vec<PathBuf>,
    next: u32,
}

impl Runs {
    /// An empty set whose files are `<dir>/<name>.NNNN.run`; the directory is created.
    pub fn new(dir: &Path, name: &str) -> Result<Runs> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(Runs {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            runs: Vec::new(),
            next: 0,
        })
    }

    fn new_path(&mut self) -> PathBuf {
        self.next += 1;
        self.dir.join(format!("{}.{:04}.run", self.name, self.next))
    }

    /// Which of `probes` are already in the set.
    pub fn contains(&self, probes: &Probes) -> Result<Vec<bool>> {
        let mut found = vec![false; probes.len];
        if probes.is_empty() || self.runs.is_empty() {
            return Ok(found);
        }
        for run in &self.runs {
            probe_file(run, probes, &mut found)?;
        }
        Ok(found)
    }

    /// Adds a block of keys (in any order) as a new run; merges the runs when there are
    /// [`MAX_RUNS`] of them.
    pub fn add(&mut self, mut keys: Vec<Key>) -> Result<()> {
        keys.sort_unstable();
        self.add_sorted(keys.iter().map(|k| (k.hash, &k.bytes[..])))
    }

    /// [`Runs::add`] for keys already in key order (repeats are dropped).
    pub fn add_sorted<'a>(&mut self, keys: impl Iterator<Item = (u64, &'a [u8])>) -> Result<()> {
        let mut keys = keys.peekable();
        if keys.peek().is_none() {
            return Ok(());
        }
        let path = self.new_path();
        let mut w = RunWriter::create(&path)?;
        for (hash, bytes) in keys {
            w.push(hash, bytes)?;
        }
        w.finish()?;
        self.runs.push(path);
        if self.runs.len() >= MAX_RUNS {
            self.compact()?;
        }
        Ok(())
    }

    fn compact(&mut self) -> Result<()> {
        if self.runs.len() <= 1 {
            return Ok(());
        }
        let path = self.new_path();
        write_run(&path, merge(&self.runs)?)?;
        for old in std::mem::replace(&mut self.runs, vec![path]) {
            std::fs::remove_file(&old).map_err(|e| Error::io(&old, e))?;
        }
        Ok(())
    }

    /// Merges everything into one file at `path`, the set's final form.
    pub fn finish(mut self, path: &Path) -> Result<KeyFile> {
        let keys = match self.runs.len() {
            0 => write_run(path, std::iter::empty())?,
            _ => write_run(path, merge(&self.runs)?)?,
        };
        for old in std::mem::take(&mut self.runs) {
            std::fs::remove_file(&old).map_err(|e| Error::io(&old, e))?;
        }
        Ok(KeyFile {
            path: path.to_path_buf(),
            keys,
        })
    }

    /// Removes the set's files.
    pub fn discard(mut self) -> Result<()> {
        for old in std::mem::take(&mut self.runs) {
            std::fs::remove_file(&old).map_err(|e| Error::io(&old, e))?;
        }
        Ok(())
    }
}

/// A finished, sorted key set on disk (the accepted keys of an exported table).
#[derive(Debug, Clone)]
pub struct KeyFile {
    pub path: PathBuf,
    pub keys: u64,
}

impl KeyFile {
    /// Which of `probes` are in the set (one sequential pass over the file).
    pub fn contains(&self, probes: &Probes) -> Result<Vec<bool>> {
        let mut found = vec![false; probes.len];
        if probes.is_empty() || self.keys == 0 {
            return Ok(found);
        }
        probe_file(&self.path, probes, &mut found)?;
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    /// A key with a chosen fingerprint, to force collisions.
    fn key(hash: u64, v: u8) -> Key {
        Key {
            hash,
            bytes: vec![v].into_boxed_slice(),
        }
    }

    /// Block-wise duplicate detection as the exporter does it: earlier blocks from the
    /// runs, the current block in memory. Returns the positions flagged as duplicates.
    fn bounded_duplicates(dir: &Path, keys: &[Key], block: usize) -> Vec<usize> {
        let mut runs = Runs::new(dir, "k").unwrap();
        let mut dups = Vec::new();
        for (b, chunk) in keys.chunks(block).enumerate() {
            let probes: Vec<&Key> = chunk.iter().collect();
            let earlier = runs.contains(&Probes::new(&probes)).unwrap();
            let mut in_block = HashSet::new();
            let mut accepted = Vec::new();
            for (i, k) in chunk.iter().enumerate() {
                if earlier[i] || in_block.contains(k) {
                    dups.push(b * block + i);
                } else {
                    in_block.insert(k.clone());
                    accepted.push(k.clone());
                }
            }
            runs.add(accepted).unwrap();
        }
        let file = runs.finish(&dir.join("final.keys")).unwrap();
        let all: HashSet<&Key> = keys.iter().collect();
        assert_eq!(file.keys as usize, all.len());
        dups
    }

    proptest! {
        /// The bounded detector flags exactly the rows a HashSet over all earlier rows
        /// flags, whatever the block size, with colliding fingerprints.
        #[test]
        fn finds_exactly_the_duplicates_a_hash_set_finds(
            raw in proptest::collection::vec((0u64..4, 0u8..40), 0..400),
            block in 1usize..50,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let keys: Vec<Key> = raw.iter().map(|&(h, v)| key(h, v)).collect();
            let mut seen = HashSet::new();
            let expected: Vec<usize> = keys
                .iter()
                .enumerate()
                .filter(|(_, k)| !seen.insert((*k).clone()))
                .map(|(i, _)| i)
                .collect();
            prop_assert_eq!(bounded_duplicates(dir.path(), &keys, block), expected);
        }

        /// A finished key file answers membership exactly.
        #[test]
        fn key_file_membership_is_exact(
            set in proptest::collection::vec((0u64..4, 0u8..60), 0..200),
            probes in proptest::collection::vec((0u64..4, 0u8..60), 0..200),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut runs = Runs::new(dir.path(), "k").unwrap();
            for part in set.chunks(17) {
                runs.add(part.iter().map(|&(h, v)| key(h, v)).collect()).unwrap();
            }
            let file = runs.finish(&dir.path().join("f.keys")).unwrap();
            let members: HashSet<Key> = set.iter().map(|&(h, v)| key(h, v)).collect();
            let probe_keys: Vec<Key> = probes.iter().map(|&(h, v)| key(h, v)).collect();
            let refs: Vec<&Key> = probe_keys.iter().collect();
            let found = file.contains(&Probes::new(&refs)).unwrap();
            for (k, f) in probe_keys.iter().zip(found) {
                prop_assert_eq!(f, members.contains(k));
            }
        }
    }

    /// Keys longer than the read buffer are read whole, between and after short ones.
    #[test]
    fn keys_longer_than_the_read_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let long = |c: u8| Key::from_bytes(vec![c; READ_BUFFER + 7].into_boxed_slice());
        let short = |c: u8| Key::from_bytes(vec![c].into_boxed_slice());
        let mut runs = Runs::new(dir.path(), "k").unwrap();
        runs.add(vec![long(1), short(2), long(3)]).unwrap();
        runs.add(vec![short(4), long(5)]).unwrap();
        let file = runs.finish(&dir.path().join("f.keys")).unwrap();
        assert_eq!(file.keys, 5);
        let probes = [long(1), long(5), short(2), long(2), short(9)];
        let refs: Vec<&Key> = probes.iter().collect();
        assert_eq!(
            file.contains(&Probes::new(&refs)).unwrap(),
            vec![true, true, true, false, false]
        );
    }

    #[test]
    fn key_values_round_trip_and_null_gives_no_key() {
        let row = vec![Some("a,b".to_string()), None, Some(String::new())];
        let k = Key::of(&row, &[0, 2]).unwrap();
        assert_eq!(k.values(), vec!["a,b".to_string(), String::new()]);
        assert!(Key::of(&row, &[0, 1]).is_none());
        // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
        let x = Key::of(&[Some("ab".into()), Some("c".into())], &[0, 1]).unwrap();
        let y = Key::of(&[Some("a".into()), Some("bc".into())], &[0, 1]).unwrap();
        assert_ne!(x, y);
    }
}
