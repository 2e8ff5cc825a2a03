//! Visibility without durability, then durability on a timer: Elasticsearch's refresh and
//! flush, for Tantivy.
//!
//! A Tantivy commit writes a new segment (eight files or so) and `meta.json`, and fsyncs
//! each file. Searchers only need the bytes, so [`DeferredSyncDirectory`] lets commits
//! skip the disk (they are *soft*: visible to this process at once) and a syncer thread
//! makes them durable every `durability_interval` (or when asked):
//!
//! - new files live in memory: a commit (one per batch at low rates) creates no file on
//!   disk, and a segment merged away before the next durable point never reaches it.
//!   Creating and deleting small files is what costs most in a commit of a few documents
//!   (the filesystem's inode work), so this is what keeps a write searchable within a few
//!   milliseconds at any batch size. A file that outgrows [`MEMORY_FILE_LIMIT`] (a big
//!   merge), or is opened while memory files already hold [`MEMORY_BUDGET`], goes to
//!   disk as it is written, without fsync;
//! - at a durable point, the finished memory files are written to disk and every new file
//!   fsynced; `meta.json` and `.managed.json`, kept in memory until then (reads in this
//!   process see the latest), are written — fsync, rename, directory fsync — only after
//!   every file they reference is durable. So the files on disk always describe a
//!   complete index: the state of the last durable point;
//! - deletions of files on disk (segments merged away) are held back until a durable
//!   `meta.json` no longer references them (the one written at the next durable point).
//!
//! A crash (of the process or the machine) reopens the index at its last durable point.
//! [`Marks`] tell the engine which commits are durable, so checkpoints never pass them and
//! a restart replays the rest (harmless, thanks to the version guard). Another process
//! opening the index read-only sees it as of the last durable point.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    AntiCallToken, Directory, DirectoryLock, FileHandle, Lock, MmapDirectory, OwnedBytes,
    TerminatingWrite, WatchCallback, WatchHandle, WritePtr,
};

/// The visible and durable marks of an index: the writer raises `visible` after each
/// commit is searchable; the syncer sets `durable` to the visible mark its durable point
/// covers.
#[derive(Debug, Default)]
pub struct Marks {
    pub visible: AtomicU64,
    pub durable: AtomicU64,
    /// Raised by each durable point that wrote memory files to disk: a segment reader
    /// opened before it still holds those files' memory copies, so the writer then opens
    /// every segment afresh instead of keeping the readers of unchanged segments.
    pub moved_to_disk: AtomicU64,
}

#[derive(Debug, Default)]
struct Pending {
    /// Files written since the last durable point that live in memory only. `None` until
    /// their writer flushes or finishes; `terminated` once it has finished.
    memory: HashMap<PathBuf, MemoryFile>,
    /// Memory files the running durable point is writing to disk: a deletion meanwhile
    /// must still remove the disk copy, at the next point.
    persisting: HashSet<PathBuf>,
    /// Files written to disk since the last durable point (too big for memory), not yet
    /// fsynced.
    unsynced: HashSet<PathBuf>,
    /// Of those, the ones whose writer has finished (safe to fsync and forget).
    terminated: HashSet<PathBuf>,
    /// Latest content of atomically written files, not yet on disk.
    atomic: HashMap<PathBuf, Vec<u8>>,
    /// Deletions held back until the durable `meta.json` stops referencing the files.
    deletes: HashSet<PathBuf>,
    /// Bytes of the finished (or flushed) memory files.
    memory_total: usize,
}

impl Pending {
    /// Drops a memory file (deleted, written to disk or spilled); whether it was there.
    fn forget(&mut self, path: &Path) -> bool {
        match self.memory.remove(path) {
            Some(file) => {
                self.memory_total -= file.bytes.as_ref().map_or(0, OwnedBytes::len);
                true
            }
            None => false,
        }
    }
}

#[derive(Debug, Default)]
struct MemoryFile {
    /// What readers see: the content as of the writer's last flush or its end.
    bytes: Option<OwnedBytes>,
    terminated: bool,
}

/// A [`MmapDirectory`] whose new files stay in memory, and whose fsyncs wait, until
/// [`DeferredSyncDirectory::sync`].
#[derive(Clone, Debug)]
pub struct DeferredSyncDirectory {
    inner: MmapDirectory,
    root: PathBuf,
    pending: Arc<Mutex<Pending>>,
    /// Serializes durable points.
    syncing: Arc<Mutex<()>>,
}

fn poisoned() -> io::Error {
    io::Error::other("index directory state poisoned")
}

impl DeferredSyncDirectory {
    pub fn open(root: &Path) -> io::Result<Self> {
        let inner = MmapDirectory::open(root).map_err(io::Error::other)?;
        Ok(Self {
            inner,
            root: root.to_path_buf(),
            pending: Arc::new(Mutex::new(Pending::default())),
            syncing: Arc::new(Mutex::new(())),
        })
    }

    /// Whether anything awaits a durable point.
    pub fn is_dirty(&self) -> bool {
        self.pending
            .lock()
            .map(|p| {
                !p.memory.is_empty()
                    || !p.unsynced.is_empty()
                    || !p.atomic.is_empty()
                    || !p.deletes.is_empty()
            })
            .unwrap_or(true)
    }

    /// Bytes held in memory by files not yet written to disk (what the budget counts).
    #[cfg(test)]
    fn memory_bytes(&self) -> usize {
        self.pending.lock().map(|p| p.memory_total).unwrap_or(0)
    }

    /// Makes everything written so far durable: memory files are written to disk and
    /// every new file fsynced, then the atomic files that reference them are written,
    /// then the held-back deletions done. Returns how many memory files went to disk.
    pub fn sync(&self) -> io::Result<usize> {
        let _one_at_a_time = self.syncing.lock().map_err(|_| poisoned())?;
        let (memory, files, complete, atomic, deletes) = {
            let mut pending = self.pending.lock().map_err(|_| poisoned())?;
            // Only finished memory files: the meta.json taken below references no file
            // that was still being written when it was taken.
            let memory: Vec<(PathBuf, OwnedBytes)> = pending
                .memory
                .iter()
                .filter(|(_, file)| file.terminated)
                .filter_map(|(path, file)| Some((path.clone(), file.bytes.clone()?)))
                .collect();
            pending
                .persisting
                .extend(memory.iter().map(|(path, _)| path.clone()));
            // Every disk file written since the last point is fsynced, complete or not
            // (an fsync of a file still being written is harmless); only complete ones
            // are then forgotten, the others are fsynced again next time.
            let files: Vec<PathBuf> = pending.unsynced.iter().cloned().collect();
            let complete: Vec<PathBuf> = pending.terminated.iter().cloned().collect();
            let atomic: Vec<(PathBuf, Vec<u8>)> = pending
                .atomic
                .iter()
                .map(|(p, d)| (p.clone(), d.clone()))
                .collect();
            let deletes: Vec<PathBuf> = pending.deletes.iter().cloned().collect();
            (memory, files, complete, atomic, deletes)
        };
        let persisted = self.write_out(&memory, &files);
        let mut pending = self.pending.lock().map_err(|_| poisoned())?;
        for (path, _) in &memory {
            pending.persisting.remove(path);
        }
        persisted?;
        // On disk now (or deleted meanwhile, then the deletion waits in `deletes`): reads
        // go to the file from here on; readers holding the memory copy keep it alive.
        for (path, _) in &memory {
            pending.forget(path);
        }
        drop(pending);
        self.inner.sync_directory()?;
        // `.managed.json` before `meta.json`: the list of files must cover what the meta
        // references.
        let mut atomic = atomic;
        atomic.sort_by_key(|(path, _)| path.as_os_str() == "meta.json");
        for (path, data) in &atomic {
            self.inner.atomic_write(path, data)?;
        }
        self.inner.sync_directory()?;
        for path in &deletes {
            match self.inner.delete(path) {
                Ok(()) | Err(DeleteError::FileDoesNotExist(_)) => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "deleting a merged-away index file failed")
                }
            }
        }
        let mut pending = self.pending.lock().map_err(|_| poisoned())?;
        for file in &complete {
            pending.unsynced.remove(file);
            pending.terminated.remove(file);
        }
        for (path, data) in atomic {
            // Written meanwhile again? Then the newer content waits for the next point.
            if pending.atomic.get(&path) == Some(&data) {
                pending.atomic.remove(&path);
            }
        }
        for path in deletes {
            pending.deletes.remove(&path);
        }
        Ok(memory.len())
    }

    /// Writes the memory files to disk and fsyncs them and the disk files.
    fn write_out(&self, memory: &[(PathBuf, OwnedBytes)], files: &[PathBuf]) -> io::Result<()> {
        for (path, bytes) in memory {
            // Not `create_new`: a failed earlier point may have left a partial copy.
            let mut file = File::create(self.root.join(path))?;
            file.write_all(bytes.as_slice())?;
            file.sync_data()?;
        }
        for file in files {
            match File::open(self.root.join(file)) {
                Ok(f) => f.sync_data()?,
                // Deleted since (a merge input that was never durable): nothing to keep.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// A file larger than this goes to disk while it is written (big merges), instead of
/// waiting in memory for the durable point.
const MEMORY_FILE_LIMIT: usize = 4 << 20;

/// The most bytes memory files hold together: a file opened beyond it is written to disk
/// at once. Small commits stay well under it; it bounds what a burst of merges can pile up
/// between two durable points.
const MEMORY_BUDGET: usize = 32 << 20;

/// Writes a new file into memory, or to disk (without fsync) once it outgrows
/// [`MEMORY_FILE_LIMIT`]; reports when it is complete.
struct DeferredFileWriter {
    path: PathBuf,
    root: PathBuf,
    buffer: Vec<u8>,
    /// Set once the file went to disk.
    file: Option<File>,
    pending: Arc<Mutex<Pending>>,
}

impl DeferredFileWriter {
    /// Moves the file from memory to disk.
    fn spill(&mut self) -> io::Result<&mut File> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.root.join(&self.path))?;
        file.write_all(&self.buffer)?;
        self.buffer = Vec::new();
        let mut pending = self.pending.lock().map_err(|_| poisoned())?;
        pending.forget(&self.path);
        pending.unsynced.insert(self.path.clone());
        drop(pending);
        Ok(self.file.insert(file))
    }

    /// Makes the memory content so far visible to readers.
    fn publish(&mut self, terminated: bool) -> io::Result<()> {
        let bytes = if terminated {
            OwnedBytes::new(std::mem::take(&mut self.buffer))
        } else {
            OwnedBytes::new(self.buffer.clone())
        };
        let mut pending = self.pending.lock().map_err(|_| poisoned())?;
        // Deleted while written: nothing to publish.
        if let Some(file) = pending.memory.get_mut(&self.path) {
            let before = file.bytes.as_ref().map_or(0, OwnedBytes::len);
            let after = bytes.len();
            file.bytes = Some(bytes);
            file.terminated = terminated;
            pending.memory_total = pending.memory_total - before + after;
        }
        Ok(())
    }
}

impl Write for DeferredFileWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(file) = &mut self.file {
            return file.write(buf);
        }
        if self.buffer.len() + buf.len() > MEMORY_FILE_LIMIT {
            return self.spill()?.write(buf);
        }
        self.buffer.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(file) => file.flush(),
            None => self.publish(false),
        }
    }
}

impl TerminatingWrite for DeferredFileWriter {
    fn terminate_ref(&mut self, _: AntiCallToken) -> io::Result<()> {
        let Some(file) = &mut self.file else {
            return self.publish(true);
        };
        file.flush()?;
        let mut pending = self.pending.lock().map_err(|_| poisoned())?;
        if pending.unsynced.contains(&self.path) {
            pending.terminated.insert(self.path.clone());
        }
        Ok(())
    }
}

impl Directory for DeferredSyncDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        if let Ok(pending) = self.pending.lock() {
            if let Some(file) = pending.memory.get(path) {
                return match &file.bytes {
                    Some(bytes) => Ok(Arc::new(bytes.clone())),
                    None => Err(OpenReadError::FileDoesNotExist(path.to_path_buf())),
                };
            }
        }
        self.inner.get_file_handle(path)
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        let mut pending = self.pending.lock().map_err(|_| DeleteError::IoError {
            io_error: Arc::new(poisoned()),
            filepath: path.to_path_buf(),
        })?;
        // A memory file no durable meta.json references: gone at once, unless the running
        // durable point is writing it to disk (its meta may reference it).
        if pending.forget(path) && !pending.persisting.contains(path) {
            return Ok(());
        }
        // Held back even for files written since the last durable point: the durable
        // meta.json written at the next point is the first that surely does not need it.
        pending.unsynced.remove(path);
        pending.terminated.remove(path);
        pending.deletes.insert(path.to_path_buf());
        Ok(())
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        if let Ok(pending) = self.pending.lock() {
            if pending.atomic.contains_key(path) || pending.memory.contains_key(path) {
                return Ok(true);
            }
            if pending.deletes.contains(path) {
                return Ok(false);
            }
        }
        self.inner.exists(path)
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        let mut pending = self
            .pending
            .lock()
            .map_err(|_| OpenWriteError::wrap_io_error(poisoned(), path.to_path_buf()))?;
        // A name is never reused while its file exists, in memory or on disk (a deletion
        // held back still has its file).
        if pending.memory.contains_key(path)
            || pending.deletes.contains(path)
            || self.root.join(path).exists()
        {
            return Err(OpenWriteError::FileAlreadyExists(path.to_path_buf()));
        }
        // Over the budget: straight to disk, as a file that outgrew the memory.
        let file = if pending.memory_total >= MEMORY_BUDGET {
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(self.root.join(path))
                .map_err(|e| OpenWriteError::wrap_io_error(e, path.to_path_buf()))?;
            pending.unsynced.insert(path.to_path_buf());
            Some(file)
        } else {
            pending
                .memory
                .insert(path.to_path_buf(), MemoryFile::default());
            None
        };
        drop(pending);
        Ok(BufWriter::new(Box::new(DeferredFileWriter {
            path: path.to_path_buf(),
            root: self.root.clone(),
            buffer: Vec::new(),
            file,
            pending: Arc::clone(&self.pending),
        })))
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        if let Ok(pending) = self.pending.lock() {
            if let Some(data) = pending.atomic.get(path) {
                return Ok(data.clone());
            }
        }
        self.inner.atomic_read(path)
    }

    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.pending
            .lock()
            .map_err(|_| poisoned())?
            .atomic
            .insert(path.to_path_buf(), data.to_vec());
        Ok(())
    }

    fn sync_directory(&self) -> io::Result<()> {
        // Done at the durable point.
        Ok(())
    }

    fn acquire_lock(&self, lock: &Lock) -> Result<DirectoryLock, LockError> {
        self.inner.acquire_lock(lock)
    }

    fn watch(&self, watch_callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        self.inner.watch(watch_callback)
    }
}

/// Requests to the syncer thread: make everything durable now and say how it went.
pub(crate) type SyncRequest = mpsc::Sender<io::Result<()>>;

/// Makes the index durable every `interval` while it changes, and on request. Ends (after
/// a last durable point) when every request sender is gone.
pub(crate) fn run_syncer(
    directory: DeferredSyncDirectory,
    marks: Arc<Marks>,
    interval: Duration,
    requests: mpsc::Receiver<SyncRequest>,
) {
    let durable_point = || -> io::Result<()> {
        // Everything visible up to this mark has reached the directory already.
        let mark = marks.visible.load(Ordering::SeqCst);
        if directory.sync()? > 0 {
            marks.moved_to_disk.fetch_add(1, Ordering::SeqCst);
        }
        marks.durable.fetch_max(mark, Ordering::SeqCst);
        Ok(())
    };
    loop {
        match requests.recv_timeout(interval) {
            Ok(reply) => {
                let _ = reply.send(durable_point());
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if directory.is_dirty()
                    || marks.durable.load(Ordering::SeqCst) < marks.visible.load(Ordering::SeqCst)
                {
                    if let Err(error) = durable_point() {
                        tracing::error!(%error, "making the index durable failed; will retry");
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                if let Err(error) = durable_point() {
                    tracing::error!(%error, "making the index durable on close failed");
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &DeferredSyncDirectory, name: &str, bytes: &[u8]) {
        let mut writer = dir.open_write(Path::new(name)).expect("open_write");
        writer.write_all(bytes).expect("write");
        writer.terminate().expect("terminate");
    }

    fn read(dir: &DeferredSyncDirectory, name: &str) -> Vec<u8> {
        let handle = dir.get_file_handle(Path::new(name)).expect("handle");
        handle
            .read_bytes(0..handle.len())
            .expect("read")
            .as_slice()
            .to_vec()
    }

    #[test]
    fn a_new_file_is_readable_at_once_and_reaches_the_disk_only_at_a_durable_point() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = DeferredSyncDirectory::open(root.path()).expect("open");
        write(&dir, "a.idx", b"hello");
        assert_eq!(read(&dir, "a.idx"), b"hello");
        assert!(dir.exists(Path::new("a.idx")).expect("exists"));
        assert!(!root.path().join("a.idx").exists(), "no file on disk yet");
        assert!(dir.is_dirty());
        assert_eq!(dir.memory_bytes(), 5);

        assert_eq!(
            dir.sync().expect("sync"),
            1,
            "one memory file moved to disk"
        );
        assert_eq!(
            std::fs::read(root.path().join("a.idx")).expect("on disk"),
            b"hello"
        );
        assert_eq!(read(&dir, "a.idx"), b"hello", "read from disk now");
        assert_eq!(dir.memory_bytes(), 0);
        assert!(!dir.is_dirty());
        assert_eq!(dir.sync().expect("sync"), 0, "nothing left to move");
    }

    #[test]
    fn a_file_deleted_before_the_durable_point_never_reaches_the_disk() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = DeferredSyncDirectory::open(root.path()).expect("open");
        write(&dir, "merged-away.idx", b"short-lived");
        dir.delete(Path::new("merged-away.idx")).expect("delete");
        assert!(!dir.exists(Path::new("merged-away.idx")).expect("exists"));
        assert_eq!(dir.sync().expect("sync"), 0, "no memory file moved to disk");
        assert!(!root.path().join("merged-away.idx").exists());
        assert!(!dir.is_dirty());
    }

    #[test]
    fn a_durable_file_deleted_stays_on_disk_until_the_next_durable_point() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = DeferredSyncDirectory::open(root.path()).expect("open");
        write(&dir, "a.idx", b"durable");
        dir.sync().expect("sync");
        dir.delete(Path::new("a.idx")).expect("delete");
        assert!(!dir.exists(Path::new("a.idx")).expect("exists"));
        assert!(
            root.path().join("a.idx").exists(),
            "the durable meta may need it"
        );
        assert!(
            matches!(
                dir.open_write(Path::new("a.idx")),
                Err(OpenWriteError::FileAlreadyExists(_))
            ),
            "a name is not reused while its file exists"
        );
        dir.sync().expect("sync");
        assert!(!root.path().join("a.idx").exists());
    }

    #[test]
    fn a_file_bigger_than_the_memory_limit_goes_to_disk_while_written() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = DeferredSyncDirectory::open(root.path()).expect("open");
        let big: Vec<u8> = (0..MEMORY_FILE_LIMIT + 10)
            .map(|i| (i % 251) as u8)
            .collect();
        write(&dir, "big.store", &big);
        assert!(root.path().join("big.store").exists(), "spilled to disk");
        assert_eq!(dir.memory_bytes(), 0);
        assert_eq!(read(&dir, "big.store"), big);
        dir.sync().expect("sync");
        assert_eq!(
            std::fs::read(root.path().join("big.store")).expect("read"),
            big
        );
    }

    #[test]
    fn files_opened_beyond_the_memory_budget_go_to_disk() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = DeferredSyncDirectory::open(root.path()).expect("open");
        let chunk = vec![7u8; MEMORY_FILE_LIMIT];
        let mut written = 0;
        let mut i = 0;
        while dir.memory_bytes() < MEMORY_BUDGET {
            write(&dir, &format!("m{i}.idx"), &chunk);
            written += chunk.len();
            i += 1;
        }
        assert_eq!(dir.memory_bytes(), written);
        assert!(!root.path().join("m0.idx").exists());
        write(&dir, "over.idx", b"small, but over the budget");
        assert!(root.path().join("over.idx").exists(), "straight to disk");
        assert_eq!(read(&dir, "over.idx"), b"small, but over the budget");
        assert_eq!(dir.memory_bytes(), written);
        dir.delete(Path::new("m0.idx")).expect("delete");
        assert_eq!(dir.memory_bytes(), written - chunk.len());
        dir.sync().expect("sync");
        assert_eq!(dir.memory_bytes(), 0);
        assert!(root.path().join("m1.idx").exists());
        assert!(!root.path().join("m0.idx").exists());
    }

    #[test]
    fn meta_json_reaches_the_disk_only_with_the_files_it_references() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = DeferredSyncDirectory::open(root.path()).expect("open");
        write(&dir, "seg.idx", b"segment");
        dir.atomic_write(Path::new("meta.json"), b"{\"segments\":[\"seg\"]}")
            .expect("atomic_write");
        assert_eq!(
            dir.atomic_read(Path::new("meta.json")).expect("read"),
            b"{\"segments\":[\"seg\"]}"
        );
        assert!(!root.path().join("meta.json").exists());
        dir.sync().expect("sync");
        assert!(root.path().join("meta.json").exists());
        assert!(root.path().join("seg.idx").exists());
    }
}
