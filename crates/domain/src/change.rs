//! Change records: what a change stream carries for every write that changed an item.

use crate::item::{ItemKey, Version};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A shard of a change stream. Opaque: the embedded store numbers its shards, DynamoDB
/// Streams and Kinesis name them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ShardId(pub String);

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A position in a shard (a sequence number). Opaque to the engine, which never compares
/// positions: it only stores the last one it has fully processed and hands it back to the
/// source. (Kinesis sequence numbers do not even fit in 128 bits.)
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Position(pub String);

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a change did to an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChangeKind {
    Insert,
    Modify,
    Remove,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Insert => "INSERT",
            ChangeKind::Modify => "MODIFY",
            ChangeKind::Remove => "REMOVE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "INSERT" => Some(ChangeKind::Insert),
            "MODIFY" => Some(ChangeKind::Modify),
            "REMOVE" => Some(ChangeKind::Remove),
            _ => None,
        }
    }
}

/// An item as it was before or after a change: its version and its body (an encoded
/// [`crate::Entity`], kept as JSON so that a corrupt body is a per-record error in the sink,
/// never a stalled stream).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub version: Version,
    pub body: serde_json::Value,
}

/// One committed change of one item, as read from a change stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeRecord {
    pub shard: ShardId,
    pub position: Position,
    pub key: ItemKey,
    pub kind: ChangeKind,
    /// The item's version after this change; for a REMOVE, the version of the deletion
    /// (greater than the last image's), which sinks keep as a tombstone.
    pub version: Version,
    pub old_image: Option<Image>,
    pub new_image: Option<Image>,
    /// When the primary committed the change, in microseconds since the Unix epoch.
    pub committed_at_us: i64,
}

impl ChangeRecord {
    /// Age of the record at `now_us` (microseconds since the epoch), never negative.
    pub fn age_us(&self, now_us: i64) -> i64 {
        (now_us - self.committed_at_us).max(0)
    }
}
