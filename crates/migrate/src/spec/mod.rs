//! The migration spec: a versioned TOML file describing the target tables, where their
//! rows come from and how each column is mapped. [`Spec::parse`] deserializes it with
//! spans and [`Spec::validate`]-style checks run without I/O; every error names the file,
//! line and column to fix. The validated form is [`Model`], which the rest of the crate
//! uses.

mod model;
mod raw;

pub use model::{
    Column, Connection, Direction, DynamoConnection, EmbeddedConnection, FieldRef, ForeignKey,
    Model, OpenSearchConnection, RelationshipRef, Settings, SourceKind, SqlType, Table,
};
pub use raw::RawSpec;

use crate::error::{Error, Result};
use std::path::Path;

/// Reads, parses and validates a spec file.
pub fn load(path: &Path) -> Result<Model> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse(&text, &path.display().to_string())
}

/// Parses and validates spec text; `origin` names it in error messages.
pub fn parse(text: &str, origin: &str) -> Result<Model> {
    let raw: RawSpec = toml::from_str(text).map_err(|e| {
        let at = e.span().map(|s| position(text, s.start)).unwrap_or((1, 1));
        Error::Spec(format!(
            "{origin}:{}:{}: {}",
            at.0,
            at.1,
            e.message().trim_end()
        ))
    })?;
    model::validate(raw, text).map_err(|(span, message)| {
        let at = position(text, span.start);
        Error::Spec(format!("{origin}:{}:{}: {message}", at.0, at.1))
    })
}

/// 1-based line and column (in characters) of a byte offset.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

#[cfg(test)]
mod tests;
