//! Visibility without durability, then durability on a timer: Elasticsearch's refresh and
//! flush, for Tantivy.
//!
//! A Tantivy commit writes a new segment and `meta.json`, and fsyncs each file. Searchers
//! only need the files in the page cache, so [`DeferredSyncDirectory`] lets commits skip
//! the fsyncs (they are *soft*: visible to this process at once) and a syncer thread makes
//! them durable every `durability_interval` (or when asked):
//!
//! - segment files are written without fsync and remembered; once *terminated* (complete)
//!   they are fsynced at the next durable point;
//! - `meta.json` and `.managed.json` are kept in memory (reads in this process see the
//!   latest), and written to disk — fsync, rename, directory fsync — only at a durable
//!   point, after every file they reference is durable. So the files on disk always
//!   describe a complete index: the state of the last durable point;
//! - deletions (segments merged away) are held back until a durable `meta.json` no longer
//!   references them (the one written at the next durable point).
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
    AntiCallToken, Directory, DirectoryLock, FileHandle, Lock, MmapDirectory, TerminatingWrite,
    WatchCallback, WatchHandle, WritePtr,
};

/// The visible and durable marks of an index: the writer raises `visible` after each
/// commit is searchable; the syncer sets `durable` to the visible mark its durable point
/// covers.
#[derive(Debug, Default)]
pub struct Marks {
    pub visible: AtomicU64,
    pub durable: AtomicU64,
}

#[derive(Debug, Default)]
struct Pending {
    /// Files written since the last durable point, not yet fsynced.
    unsynced: HashSet<PathBuf>,
    /// Of those, the ones whose writer has finished (safe to fsync and forget).
    terminated: HashSet<PathBuf>,
    /// Latest content of atomically written files, not yet on disk.
    atomic: HashMap<PathBuf, Vec<u8>>,
    /// Deletions held back until the durable `meta.json` stops referencing the files.
    deletes: HashSet<PathBuf>,
}

/// A [`MmapDirectory`] whose fsyncs are deferred to [`DeferredSyncDirectory::sync`].
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
            .map(|p| !p.unsynced.is_empty() || !p.atomic.is_empty() || !p.deletes.is_empty())
            .unwrap_or(true)
    }

    /// Makes everything written so far durable: completed files, then the atomic files
    /// that reference them, then the held-back deletions.
    pub fn sync(&self) -> io::Result<()> {
        let _one_at_a_time = self.syncing.lock().map_err(|_| poisoned())?;
        let (files, complete, atomic, deletes) = {
            let pending = self.pending.lock().map_err(|_| poisoned())?;
            // Every file written since the last point is fsynced, complete or not (an
            // fsync of a file still being written is harmless); only complete ones are
            // then forgotten, the others are fsynced again next time.
            let files: Vec<PathBuf> = pending.unsynced.iter().cloned().collect();
            let complete: Vec<PathBuf> = pending.terminated.iter().cloned().collect();
            let atomic: Vec<(PathBuf, Vec<u8>)> = pending
                .atomic
                .iter()
                .map(|(p, d)| (p.clone(), d.clone()))
                .collect();
            let deletes: Vec<PathBuf> = pending.deletes.iter().cloned().collect();
            (files, complete, atomic, deletes)
        };
        for file in &files {
            match File::open(self.root.join(file)) {
                Ok(f) => f.sync_data()?,
                // Deleted since (a merge input that was never durable): nothing to keep.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
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
        Ok(())
    }
}

/// Writes a file without fsync; reports when it is complete.
struct DeferredFileWriter {
    file: File,
    path: PathBuf,
    pending: Arc<Mutex<Pending>>,
}

impl Write for DeferredFileWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TerminatingWrite for DeferredFileWriter {
    fn terminate_ref(&mut self, _: AntiCallToken) -> io::Result<()> {
        self.file.flush()?;
        let mut pending = self.pending.lock().map_err(|_| poisoned())?;
        if pending.unsynced.contains(&self.path) {
            pending.terminated.insert(self.path.clone());
        }
        Ok(())
    }
}

impl Directory for DeferredSyncDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        self.inner.get_file_handle(path)
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        let mut pending = self.pending.lock().map_err(|_| DeleteError::IoError {
            io_error: Arc::new(poisoned()),
            filepath: path.to_path_buf(),
        })?;
        // Held back even for files written since the last durable point: the durable
        // meta.json written at the next point is the first that surely does not need it.
        pending.unsynced.remove(path);
        pending.terminated.remove(path);
        pending.deletes.insert(path.to_path_buf());
        Ok(())
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        if let Ok(pending) = self.pending.lock() {
            if pending.atomic.contains_key(path) {
                return Ok(true);
            }
            if pending.deletes.contains(path) {
                return Ok(false);
            }
        }
        self.inner.exists(path)
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.root.join(path))
            .map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    OpenWriteError::FileAlreadyExists(path.to_path_buf())
                } else {
                    OpenWriteError::wrap_io_error(e, path.to_path_buf())
                }
            })?;
        if let Ok(mut pending) = self.pending.lock() {
            pending.unsynced.insert(path.to_path_buf());
        }
        Ok(BufWriter::new(Box::new(DeferredFileWriter {
            file,
            path: path.to_path_buf(),
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
        directory.sync()?;
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
