//! APOC JSON-lines export files.
//!
//! A source directory holds one or more `*.json` / `*.jsonl` files (read in name order).
//! Reading every file once per target table would cost one pass per table, so the
//! first step of a run ([`partition`]) reads the files once and copies each line into
//! one partition file per node label and relationship type the spec uses; each table
//! then streams only its own partition. Lines that are not APOC records are counted and
//! written to `_source.rejects.jsonl` with their file and line number.

pub use super::PartitionKey;
use super::{Endpoint, Record};
use crate::error::{Error, Result};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    label: Option<String>,
}

#[derive(Deserialize)]
struct Line {
    #[serde(rename = "type")]
    kind: String,
    id: Value,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    properties: Map<String, Value>,
    #[serde(default)]
    start: Option<LineEndpoint>,
    #[serde(default)]
    end: Option<LineEndpoint>,
}

#[derive(Deserialize)]
struct LineEndpoint {
    id: Value,
    #[serde(default)]
    labels: Vec<String>,
}

fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parses one APOC line into a record.
pub fn parse_record(line: &str) -> std::result::Result<Record, String> {
    let l: Line =
        serde_json::from_str(line).map_err(|e| format!("not an APOC JSON record: {e}"))?;
    let id = id_text(&l.id).ok_or("`id` must be a string or a number")?;
    let endpoint = |e: Option<LineEndpoint>,
                    which: &str|
     -> std::result::Result<Option<Endpoint>, String> {
        match e {
            None => Ok(None),
            Some(e) => Ok(Some(Endpoint {
                id: id_text(&e.id).ok_or(format!("`{which}.id` must be a string or a number"))?,
                labels: e.labels,
            })),
        }
    };
    match l.kind.as_str() {
        "node" => Ok(Record {
            id,
            labels: l.labels,
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
    /// Partition key (as `label:X` / `rel:X`) → file.
    pub files: BTreeMap<String, PathBuf>,
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

/// Splits the export files into one file per needed label / relationship type under
/// `out` (keys of other kinds are left to their readers). A node with several needed labels goes into each of their partitions.
pub fn partition(
    source_dir: &Path,
    keys: &[PartitionKey],
    out: &Path,
    progress: &indicatif::ProgressBar,
) -> Result<Partitions> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    // Per key: its file, the writer, the records written.
    let mut writers: BTreeMap<PartitionKey, (PathBuf, BufWriter<std::fs::File>, u64)> =
        BTreeMap::new();
    let mut result = Partitions::default();
    for (i, k) in keys.iter().enumerate() {
        if !matches!(k, PartitionKey::Label(_) | PartitionKey::RelType(_)) {
            // Other sources have their own readers; a Cypher query is refused before
            // the run starts (an export cannot run queries).
            continue;
        }
        if writers.contains_key(k) {
            continue;
        }
        let path = out.join(format!("p{i:03}.jsonl"));
        let f = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
        result.files.insert(k.name(), path.clone());
        writers.insert(k.clone(), (path, BufWriter::with_capacity(1 << 20, f), 0));
    }
    let malformed_path = out.join("_source.rejects.jsonl");
    let mut malformed = BufWriter::new(
        std::fs::File::create(&malformed_path).map_err(|e| Error::io(&malformed_path, e))?,
    );
    for file in source_files(source_dir)? {
        let f = std::fs::File::open(&file).map_err(|e| Error::io(&file, e))?;
        let reader = BufReader::with_capacity(1 << 20, f);
        for (n, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| Error::io(&file, e))?;
            if line.trim().is_empty() {
                continue;
            }
            progress.inc(1);
            let head: Head = match serde_json::from_str(&line) {
                Ok(h) => h,
                Err(e) => {
                    result.malformed += 1;
                    let entry = serde_json::json!({"file": file.display().to_string(), "line": n + 1, "reason": "malformed", "detail": e.to_string()});
                    writeln!(malformed, "{entry}").map_err(|e| Error::io(&malformed_path, e))?;
                    continue;
                }
            };
            let mut targets: Vec<PartitionKey> = Vec::new();
            match head.kind.as_str() {
                "node" => targets.extend(head.labels.into_iter().map(PartitionKey::Label)),
                "relationship" => targets.extend(head.label.map(PartitionKey::RelType)),
                _ => {}
            }
            for t in targets {
                if let Some((path, w, records)) = writers.get_mut(&t) {
                    w.write_all(line.as_bytes())
                        .and_then(|_| w.write_all(b"\n"))
                        .map_err(|e| Error::io(path.as_path(), e))?;
                    *records += 1;
                }
            }
        }
    }
    for (key, (path, mut w, records)) in writers {
        result.records.insert(key.name(), records);
        w.flush().map_err(|e| Error::io(&path, e))?;
        w.get_ref().sync_all().map_err(|e| Error::io(&path, e))?;
    }
    malformed
        .flush()
        .map_err(|e| Error::io(&malformed_path, e))?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_apoc_nodes_and_relationships() {
        let n = parse_record(r#"{"type":"node","id":"12","labels":["Company"],"properties":{"name":"株式会社あ","employees":30}}"#).unwrap();
        assert_eq!(n.id, "12");
        assert_eq!(n.labels, vec!["Company"]);
        assert_eq!(n.properties["employees"], 30);
        let r = parse_record(r#"{"type":"relationship","id":"7","label":"TAGGED","properties":{},"start":{"id":"1","labels":["Deal"]},"end":{"id":2,"labels":["Tag"]}}"#).unwrap();
        assert_eq!(r.start.unwrap().id, "1");
        assert_eq!(r.end.unwrap().id, "2");
        assert!(parse_record(r#"{"type":"relationship","id":"7","label":"X"}"#).is_err());
        assert!(parse_record("{oops").is_err());
    }
}
