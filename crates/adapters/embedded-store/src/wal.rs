//! WAL checkpoints off the writer thread, so the store's one writer does not wait on the
//! disk while it has writes to commit.
//!
//! A checkpoint copies the WAL's pages into the database file and syncs both files: with
//! `synchronous=NORMAL` it is the only place a write transaction waits for the disk.
//! SQLite's automatic checkpoint runs it inside the commit that crosses its threshold,
//! on the writer thread, and every write queued behind that commit waits for the fsyncs
//! too: writing flat out, the writer spent about half of its time there.
//!
//! Here the writer's connection reports the WAL's length after each commit (a WAL hook,
//! which replaces SQLite's automatic checkpoint). Past the store's `checkpoint_pages` the writer
//! asks the [`Checkpointer`] thread, which copies the WAL with a `PASSIVE` checkpoint
//! from its own connection: it never blocks the writer or a reader. The writer meanwhile
//! keeps committing, so when the thread is done the WAL holds a tail it did not copy;
//! the writer copies that tail itself after its next commit (a few pages, and syncs of
//! files already mostly synced), and SQLite then starts the WAL over at the writer's
//! next transaction, as it does after an automatic checkpoint. Should the WAL still reach
//! [`BACKSTOP_FACTOR`] times that (a disk slower than the writes), the writer waits for
//! the thread, so the WAL stays bounded.
//!
//! Durability is unchanged: a commit is in the WAL before it is acknowledged, the WAL is
//! synced before any of its pages reach the database file, and the last connection to
//! close checkpoints everything.

use crate::sqlite::open_connection;
use crate::StoreError;
use rusqlite::{ffi, Connection};
use std::ffi::{c_char, c_int, c_void};
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

/// How much larger than the checkpoint threshold the WAL may grow before the writer
/// waits for the checkpointer thread, then copies the tail itself.
const BACKSTOP_FACTOR: u64 = 5;

/// The share of the checkpoint threshold the checkpointer leaves to the writer: it stops
/// its passes once one finds fewer new pages than this.
const TAIL_DIVISOR: u64 = 20;

/// The most passes of one checkpoint, should the writer outpace them.
const MAX_PASSES: usize = 8;

/// The writer's connection, with a WAL hook that keeps the WAL's length in pages after
/// each commit.
pub(crate) struct WriterConnection {
    conn: Connection,
    /// Where the hook writes. The hook holds a raw pointer to it, so it lives as long as
    /// the connection, and [`Drop`] removes the hook before either goes.
    wal_pages: Arc<AtomicU64>,
}

impl WriterConnection {
    pub(crate) fn new(conn: Connection) -> Self {
        let wal_pages = Arc::new(AtomicU64::new(0));
        // SAFETY: the hook's argument points into `wal_pages`, which this value owns and
        // keeps until `drop` has removed the hook; the hook only stores an integer there.
        unsafe {
            ffi::sqlite3_wal_hook(
                conn.handle(),
                Some(record_wal_pages),
                Arc::as_ptr(&wal_pages).cast_mut().cast::<c_void>(),
            );
        }
        Self { conn, wal_pages }
    }

    /// The WAL's length in pages after the last commit.
    pub(crate) fn wal_pages(&self) -> u64 {
        self.wal_pages.load(Relaxed)
    }
}

impl Deref for WriterConnection {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl DerefMut for WriterConnection {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

impl Drop for WriterConnection {
    fn drop(&mut self) {
        // SAFETY: removes the hook registered in `new` on the same connection, before
        // the connection and `wal_pages` are dropped.
        unsafe {
            ffi::sqlite3_wal_hook(self.conn.handle(), None, std::ptr::null_mut());
        }
    }
}

/// SQLite calls this after each commit with the WAL's length in pages.
unsafe extern "C" fn record_wal_pages(
    wal_pages: *mut c_void,
    _db: *mut ffi::sqlite3,
    _schema: *const c_char,
    pages: c_int,
) -> c_int {
    // SAFETY: `wal_pages` is the `AtomicU64` registered in `WriterConnection::new`,
    // alive while the hook is registered.
    let wal_pages = unsafe { &*wal_pages.cast_const().cast::<AtomicU64>() };
    wal_pages.store(u64::try_from(pages).unwrap_or(0), Relaxed);
    ffi::SQLITE_OK
}

/// Where the checkpoint of the current WAL stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing asked of the thread.
    Idle,
    /// The thread is copying the WAL.
    Copying,
    /// The thread copied what it could; the tail is the writer's.
    Copied,
}

/// The phase, shared by the writer and the thread, and a signal of its changes.
struct SharedPhase {
    phase: Mutex<Phase>,
    changed: Condvar,
}

impl SharedPhase {
    fn lock(&self) -> MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The checkpointer thread of the writer's database file. Dropping it stops the thread
/// after the checkpoint in progress, if any, and waits for it.
pub(crate) struct Checkpointer {
    /// WAL pages from which the thread copies the WAL, and from which the writer waits
    /// for it.
    threshold: u64,
    backstop: u64,
    shared: Arc<SharedPhase>,
    nudge: Option<mpsc::SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread with its own connection to the database file at `path`, to
    /// copy the WAL once it holds `threshold` pages.
    pub(crate) fn start(path: &Path, threshold: u64) -> Result<Self, StoreError> {
        let threshold = threshold.max(1);
        let tail = i64::try_from(threshold / TAIL_DIVISOR).unwrap_or(i64::MAX);
        let conn = open_connection(path)?;
        let shared = Arc::new(SharedPhase {
            phase: Mutex::new(Phase::Idle),
            changed: Condvar::new(),
        });
        let (nudge, nudged) = mpsc::sync_channel(1);
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("tsunagu-store-checkpointer".into())
            .spawn(move || {
                while nudged.recv().is_ok() {
                    if let Err(error) = copy_most(&conn, tail) {
                        tracing::warn!(%error, "WAL checkpoint failed; the writer copies the WAL itself");
                    }
                    *thread_shared.lock() = Phase::Copied;
                    thread_shared.changed.notify_all();
                }
            })
            .map_err(|e| StoreError::Failed(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Self {
            threshold,
            backstop: threshold.saturating_mul(BACKSTOP_FACTOR),
            shared,
            nudge: Some(nudge),
            thread: Some(thread),
        })
    }

    /// Called by the writer after each commit: asks the thread to copy the WAL once it
    /// passes the threshold, and copies the tail itself once the thread is done; at the
    /// backstop it waits for the thread first.
    pub(crate) fn after_commit(&self, writer: &WriterConnection) {
        let pages = writer.wal_pages();
        let mut phase = self.shared.lock();
        if *phase == Phase::Idle && pages >= self.threshold {
            *phase = Phase::Copying;
            if let Some(nudge) = &self.nudge {
                let _ = nudge.try_send(());
            }
            return;
        }
        if *phase == Phase::Copying && pages >= self.backstop {
            while *phase == Phase::Copying {
                phase = self
                    .shared
                    .changed
                    .wait(phase)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
        if *phase == Phase::Copied {
            drop(phase);
            if let Err(error) = checkpoint(writer, "PASSIVE") {
                tracing::warn!(%error, "WAL checkpoint failed; retried at the next commit");
            }
            *self.shared.lock() = Phase::Idle;
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.nudge.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Copies the WAL in passes, each taking the frames committed during the one before,
/// until a pass finds at most `tail` new ones (or after [`MAX_PASSES`]): what is left
/// for the writer to copy is then what was committed during that short last pass.
fn copy_most(conn: &Connection, tail: i64) -> rusqlite::Result<()> {
    let mut copied_through = 0;
    for _ in 0..MAX_PASSES {
        let (frames, _) = checkpoint(conn, "PASSIVE")?;
        let new = frames - copied_through;
        copied_through = frames;
        if new <= tail {
            break;
        }
    }
    Ok(())
}

/// Runs a checkpoint of `mode`; returns the WAL's frames and how many of them are now
/// in the database file.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(i64, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        Ok((row.get(1)?, row.get(2)?))
    })
}
