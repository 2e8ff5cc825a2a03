//! Tests against a real tantivy index in a temporary directory (no mocks): the sink's
//! version guard and group commit (`sink`), queries and aggregations (`queries`), records
//! and per-deal activity facts (`records`), memo search with a Japanese dictionary
//! (`words`, skipped without `TSUNAGU_TEST_IPADIC_DIR`), and a
//! property test of the version guard against a model (`model`).

mod model;
mod queries;
mod records;
mod sink;
mod words;

use crate::{ActivityIndex, IndexOptions};
use chrono::{DateTime, Duration, TimeZone, Utc};
use std::path::Path;
use tsunagu_domain::{
    ActionType, ActivityLog, ChangeKind, ChangeRecord, Entity, Image, ItemKey, Position, ShardId,
    Version,
};

/// The smallest writer budget, so that parallel tests do not reserve much memory.
pub(crate) fn options() -> IndexOptions {
    IndexOptions {
        writer_memory_bytes: 20 << 20,
        ..IndexOptions::default()
    }
}

pub(crate) fn open(dir: &Path) -> ActivityIndex {
    ActivityIndex::open(dir, options()).expect("open index")
}

pub(crate) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0)
        .single()
        .expect("valid date")
}

pub(crate) fn activity(id: &str, deal: &str) -> ActivityLog {
    ActivityLog {
        id: id.into(),
        tenant_id: "t1".into(),
        deal_id: deal.into(),
        company_id: "c1".into(),
        user_id: "u1".into(),
        action: ActionType::Call,
        result: None,
        occurred_at: t0(),
        memo: String::new(),
        tags: Vec::new(),
        created_at: t0(),
        updated_at: t0(),
    }
}

pub(crate) fn record(
    key: ItemKey,
    kind: ChangeKind,
    version: u64,
    body: Option<serde_json::Value>,
) -> ChangeRecord {
    ChangeRecord {
        shard: ShardId("0".into()),
        position: Position(version.to_string()),
        key,
        kind,
        version: Version(version),
        old_image: None,
        new_image: body.map(|body| Image {
            version: Version(version),
            body,
        }),
        committed_at_us: (t0() + Duration::seconds(version as i64)).timestamp_micros(),
    }
}

pub(crate) fn upsert(a: &ActivityLog, version: u64) -> ChangeRecord {
    record(
        a.key(),
        ChangeKind::Modify,
        version,
        Some(Entity::ActivityLog(a.clone()).to_json()),
    )
}

pub(crate) fn remove(key: &ItemKey, version: u64) -> ChangeRecord {
    record(key.clone(), ChangeKind::Remove, version, None)
}
