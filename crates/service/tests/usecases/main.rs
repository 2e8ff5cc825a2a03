//! Unit tests of the use cases of `tsunagu-service`, per aggregate, against in-memory
//! ports and the real embedded index (see [`harness`]). They assert the business rules'
//! outcomes (values, versions, field issues, what searches return); the HTTP mapping of
//! those outcomes is tested in `crates/cli/tests/api.rs`.
//!
//! One test binary: the doubles live in `harness`, not in the library, because the
//! embedded index depends on this crate (a dev-dependency cycle is fine for an
//! integration test, not for the library's own unit tests).

mod harness;

mod activities;
mod companies;
mod consistency;
mod deals;
mod sales_lists;
mod searches;
mod tenancy;
