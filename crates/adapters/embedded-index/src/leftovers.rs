//! Recovery at open: removing the segment files a stopped process left behind.
//!
//! Between two durable points the writer creates segment and delete files that no durable
//! `meta.json` references yet (see [`crate::durability`]). When the process dies there, a
//! restarted writer resumes from the durable point and reuses its operation stamps, so it
//! names new delete files exactly as the dead process did (`<segment>.<opstamp>.del`) and
//! creating them fails with `FileAlreadyExists`. Tantivy's own garbage collection does not
//! know these files (the `.managed.json` listing them never reached disk), so the writer
//! removes, before its first commit, every segment file the durable meta does not
//! reference: segments of its own, delete files of older or newer stamps, and temporary
//! stores.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use tantivy::index::SegmentComponent;
use tantivy::SegmentMeta;

/// Removes the segment files in `dir` that `metas` (the durable index's segments) do not
/// reference, and returns their names. Files not named after a segment are left alone.
pub(crate) fn remove_leftovers(dir: &Path, metas: &[SegmentMeta]) -> io::Result<Vec<String>> {
    // Each referenced segment's current delete file, if it has deletes.
    let referenced: HashMap<String, Option<String>> = metas
        .iter()
        .map(|meta| {
            let deletes = meta.has_deletes().then(|| {
                meta.relative_path(SegmentComponent::Delete)
                    .to_string_lossy()
                    .into_owned()
            });
            (meta.id().uuid_string(), deletes)
        })
        .collect();
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((segment, component)) = split_segment_file(&name) else {
            continue;
        };
        let keep = match referenced.get(segment) {
            None => false,
            Some(deletes) if component.ends_with(".del") => deletes.as_deref() == Some(&name),
            Some(_) => !component.ends_with("temp"),
        };
        if !keep {
            std::fs::remove_file(entry.path())?;
            removed.push(name);
        }
    }
    removed.sort();
    Ok(removed)
}

/// `<32 hex digits>.<component>` → (segment id, component).
fn split_segment_file(name: &str) -> Option<(&str, &str)> {
    let (segment, component) = name.split_at_checked(32)?;
    let component = component.strip_prefix('.')?;
    let is_id = segment
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (is_id && !component.is_empty()).then_some((segment, component))
}

#[cfg(test)]
mod tests {
    use super::split_segment_file;

    #[test]
    fn only_segment_files_are_recognised() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(split_segment_file(&format!("{id}.idx")), Some((id, "idx")));
        assert_eq!(
            split_segment_file(&format!("{id}.12.del")),
            Some((id, "12.del"))
        );
        assert_eq!(split_segment_file("meta.json"), None);
        assert_eq!(split_segment_file(".managed.json"), None);
        assert_eq!(split_segment_file(".tantivy-writer.lock"), None);
        assert_eq!(split_segment_file(&format!("{id}.")), None);
        assert_eq!(
            split_segment_file("0123456789ABCDEF0123456789abcdef.idx"),
            None
        );
    }
}
