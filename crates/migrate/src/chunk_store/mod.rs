//! Where finished CSV chunks live between the export and the load: the local work
//! directory (`<work-dir>/chunks/<table>/NNNNN.csv`, the default) or an S3 bucket
//! (`s3://BUCKET/PREFIX`, chosen with `--chunks` or `[settings] chunks`).
//!
//! The exporter always writes a chunk to the local directory first (temporary name,
//! sync, rename). [`ChunkStore::publish`] then makes it durable in the store: a no-op
//! locally; on S3 an upload of `PREFIX/<table>/NNNNN.csv`, after which the local copy is
//! removed, so local disk holds only the few chunks waiting for their upload. Once a
//! table's chunks are all published, [`ChunkStore::finish_table`] writes its manifest
//! (S3: `PREFIX/<table>/manifest.json`). Only then does the run record the table as
//! exported in its state file, so an interrupted upload never leaves a chunk the state
//! believes finished. [`ChunkStore::open`] streams a chunk to `LOAD DATA LOCAL INFILE`
//! (no temporary file) and [`ChunkStore::open_blocking`] reads it back for rebuilding
//! key files on resume.
//!
//! Guarantees: publishing the same chunk twice is harmless (S3 skips an object whose
//! recorded MD5 is the same); a chunk is readable from the store once `publish`
//! returned; errors name the location and say what to fix, never a secret.

mod s3;

use crate::error::{Error, Result};
use crate::export::{chunk_path, ChunkReady, ExportStats};
use serde::Serialize;
use std::io::Read;
use std::path::{Path, PathBuf};

pub use s3::{client as s3_client, S3Chunks};

/// `s3://BUCKET[/PREFIX]`, checked without I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Without leading or trailing `/`; may be empty.
    pub prefix: String,
}

impl S3Location {
    /// Parses `s3://BUCKET[/PREFIX]`; the error says what a valid location looks like.
    pub fn parse(text: &str) -> std::result::Result<S3Location, String> {
        let rest = text.strip_prefix("s3://").ok_or_else(|| {
            format!("chunk location `{text}` must look like s3://BUCKET/PREFIX (or be left out for the local work directory)")
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && bucket
                .bytes()
                .next()
                .zip(bucket.bytes().last())
                .is_some_and(|(a, z)| a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric());
        if !valid_bucket {
            return Err(format!(
                "`{bucket}` is not an S3 bucket name: 3 to 63 lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit"
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
            && !prefix.is_empty()
        {
            return Err(format!(
                "chunk prefix `{prefix}` has an empty, `.` or `..` segment"
            ));
        }
        Ok(S3Location {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// The object key of `file` of `table`.
    pub fn key(&self, table: &str, file: &str) -> String {
        if self.prefix.is_empty() {
            format!("{table}/{file}")
        } else {
            format!("{}/{table}/{file}", self.prefix)
        }
    }
}

impl std::fmt::Display for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// A chunk once published: what the manifest lists.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    pub index: u32,
    pub rows: u64,
    pub bytes: u64,
    /// Hex MD5 of the file (S3 only; the local store does not read chunks again).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    /// The object key (S3 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// The chunk store of one run.
pub struct ChunkStore {
    /// `<work-dir>/chunks`: where the exporter writes (and, locally, where chunks stay).
    dir: PathBuf,
    remote: Option<S3Chunks>,
}

impl ChunkStore {
    /// The local store, or S3 when `location` is set (after checking that the bucket can
    /// be reached with the credentials of the standard AWS chain).
    pub async fn connect(work_dir: &Path, location: Option<&S3Location>) -> Result<Self> {
        let remote = match location {
            Some(l) => Some(S3Chunks::connect(l.clone()).await?),
            None => None,
        };
        Ok(ChunkStore {
            dir: work_dir.join("chunks"),
            remote,
        })
    }

    /// Where chunks go, for messages and the state file: `s3://...` or the directory.
    pub fn location(&self) -> String {
        match &self.remote {
            Some(s3) => s3.location().to_string(),
            None => self.dir.display().to_string(),
        }
    }

    /// The local directory the exporter writes `table`'s chunks into.
    pub fn dir(&self, table: &str) -> PathBuf {
        self.dir.join(table)
    }

    /// Removes every chunk of `tables` (a run starting over).
    pub async fn clear(&self, tables: &[&str]) -> Result<()> {
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        }
        if let Some(s3) = &self.remote {
            for t in tables {
                s3.delete_table(t).await?;
            }
        }
        Ok(())
    }

    /// Removes the local chunks of one table before it is exported again. Objects on S3
    /// stay: the export is deterministic, so the same chunks are skipped when published.
    pub fn reset_table(&self, table: &str) -> Result<()> {
        let dir = self.dir(table);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        Ok(())
    }

    /// Makes a finished chunk file durable in the store (see the module docs).
    pub async fn publish(&self, table: &str, chunk: &ChunkReady) -> Result<Published> {
        match &self.remote {
            Some(s3) => s3.upload(table, chunk).await,
            None => {
                let bytes = tokio::fs::metadata(&chunk.path)
                    .await
                    .map_err(|e| Error::io(&chunk.path, e))?
                    .len();
                Ok(Published {
                    index: chunk.index,
                    rows: chunk.rows,
                    bytes,
                    md5: None,
                    key: None,
                })
            }
        }
    }

    /// Records a table whose chunks are all published (S3: its manifest object).
    pub async fn finish_table(
        &self,
        table: &str,
        stats: &ExportStats,
        chunks: &[Published],
    ) -> Result<()> {
        match &self.remote {
            Some(s3) => s3.write_manifest(table, stats, chunks).await,
            None => Ok(()),
        }
    }

    /// A stream of a published chunk's bytes, for `LOAD DATA LOCAL INFILE`.
    pub async fn open(&self, table: &str, index: u32) -> Result<mysql_async::InfileData> {
        match &self.remote {
            Some(s3) => s3.stream(table, index).await,
            None => {
                let path = chunk_path(&self.dir(table), index);
                let f = tokio::fs::File::open(&path)
                    .await
                    .map_err(|e| Error::io(&path, e))?;
                Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(
                    f,
                    1 << 16,
                )))
            }
        }
    }

    /// A blocking reader of a published chunk (call from a blocking thread; `runtime` is
    /// the runtime S3 requests run on), with a name for error messages.
    pub fn open_blocking(
        &self,
        runtime: &tokio::runtime::Handle,
        table: &str,
        index: u32,
    ) -> Result<(PathBuf, Box<dyn Read + Send>)> {
        match &self.remote {
            Some(s3) => s3.reader(runtime, table, index),
            None => {
                let path = chunk_path(&self.dir(table), index);
                let f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
                Ok((path, Box::new(f)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_locations_parse_and_name_their_objects() {
        let l = S3Location::parse("s3://my-bucket/runs/2024/").unwrap();
        assert_eq!(l.bucket, "my-bucket");
        assert_eq!(l.prefix, "runs/2024");
        assert_eq!(l.key("deals", "00001.csv"), "runs/2024/deals/00001.csv");
        assert_eq!(l.to_string(), "s3://my-bucket/runs/2024");
        let bare = S3Location::parse("s3://my.bucket").unwrap();
        assert_eq!(bare.key("deals", "manifest.json"), "deals/manifest.json");
        assert_eq!(bare.to_string(), "s3://my.bucket");
    }

    #[test]
    fn bad_s3_locations_say_what_is_expected() {
        for (text, hint) in [
            ("my-bucket/x", "must look like s3://BUCKET/PREFIX"),
            ("/tmp/chunks", "must look like s3://BUCKET/PREFIX"),
            ("s3://", "is not an S3 bucket name"),
            ("s3://My_Bucket/x", "is not an S3 bucket name"),
            ("s3://-bucket", "is not an S3 bucket name"),
            ("s3://bucket/a//b", "empty, `.` or `..` segment"),
            ("s3://bucket/a/../b", "empty, `.` or `..` segment"),
        ] {
            let e = S3Location::parse(text).unwrap_err();
            assert!(e.contains(hint), "{text}: {e}");
        }
    }
}
