//! Graph → relational migration driven by one spec file.
//!
//! The flow of [`run::run`]: read and validate the [`spec`] (no I/O), order the tables
//! by their foreign keys ([`plan`]), read rows from a [`source`] (APOC JSON-lines export
//! files), apply the column [`transform`]s and validation rules, write accepted rows as
//! chunked CSV files and rejected ones to reject files ([`export`]; a node table's
//! columns taken from its relationships are joined on disk first, in
//! [`export::related`]), keep the chunks in the
//! work directory or an S3 bucket ([`chunk_store`]), load the chunks
//! into staging tables with `LOAD DATA LOCAL INFILE` and swap them in with one
//! `RENAME TABLE` ([`load`]), remember finished work in a [`state`] file so a killed
//! run resumes, and finally [`verify`] counts, checksums and foreign keys.
//! [`fixture`] generates a realistic sales-domain APOC export with injected invalid data;
//! [`bench`] measures a whole run against a raw `LOAD DATA` of the same chunks.

pub mod bench;
pub mod chunk_store;
pub mod error;
pub mod export;
pub mod fixture;
pub mod load;
pub mod plan;
pub mod run;
pub mod source;
pub mod spec;
pub mod state;
pub mod transform;
pub mod verify;

pub use error::{Error, Result};
