//! The resume state file (`<work-dir>/state.json`): which steps of a run are finished.
//! It is rewritten atomically (temporary file, sync, rename) after every step.
//!
//! What a chunk being *loaded* means is not kept here but in the target database, in
//! `_tsunagu_migrate_chunks`, committed in the same transaction as the chunk's rows
//! (see [`crate::load`]): a kill between the commit and a state write can then neither
//! lose nor duplicate a chunk.

use crate::error::{Error, Result};
use crate::export::ExportStats;
use crate::source::apoc::Partitions;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    /// Fingerprint of the spec text this state belongs to.
    pub spec_fingerprint: u64,
    /// The graph source (directory, or Bolt URL without credentials; empty if unused).
    pub source: PathBuf,
    /// Every other connection read, as [`crate::source::external::Resolved::describe`]
    /// gives it (no secrets).
    #[serde(default)]
    pub sources: BTreeMap<String, String>,
    /// Where the chunks are (`s3://...` or the local chunk directory).
    #[serde(default)]
    pub chunks: String,
    /// Set once the source files are split by label and relationship type.
    pub partitions: Option<Partitions>,
    pub tables: BTreeMap<String, TableState>,
    /// Set just before the swap; with no staging table left, the swap happened.
    pub swapping: bool,
    pub swapped: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TableState {
    /// Set when every chunk and the reject file are written and every chunk is in the
    /// chunk store (uploaded, for S3), with the table's manifest.
    pub exported: Option<ExportStats>,
    /// Set when every chunk is loaded into the staging table.
    pub loaded: bool,
    pub load_seconds: f64,
    /// Row count and checksum the target computed over the staging table once every
    /// chunk was in (the swap renames that very table).
    #[serde(default)]
    pub target: Option<(u64, u64)>,
    /// Rows without a parent, per foreign key of the table, counted on the staging
    /// tables once the table and its parents were loaded.
    #[serde(default)]
    pub fk_checks: Option<Vec<crate::verify::FkCheck>>,
}

impl State {
    pub fn path(work_dir: &Path) -> PathBuf {
        work_dir.join("state.json")
    }

    /// Reads the state of a previous run, if there is one.
    pub fn read(work_dir: &Path) -> Result<Option<State>> {
        let path = Self::path(work_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::State {
                    path,
                    message: format!("cannot read it ({e}); remove it and run without --resume"),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Writes the state atomically.
    pub fn write(&self, work_dir: &Path) -> Result<()> {
        let path = Self::path(work_dir);
        let tmp = work_dir.join("state.json.tmp");
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::State {
            path: path.clone(),
            message: e.to_string(),
        })?;
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
            f.write_all(&bytes).map_err(|e| Error::io(&tmp, e))?;
            f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        }
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(State::read(dir.path()).unwrap(), None);
        let mut s = State {
            spec_fingerprint: 7,
            ..Default::default()
        };
        s.tables.insert(
            "t".into(),
            TableState {
                loaded: true,
                ..Default::default()
            },
        );
        s.write(dir.path()).unwrap();
        assert_eq!(State::read(dir.path()).unwrap(), Some(s));
        std::fs::write(State::path(dir.path()), "{").unwrap();
        assert!(State::read(dir.path())
            .unwrap_err()
            .to_string()
            .contains("without --resume"));
    }
}
