//! The prefecture split of the `prefecture` and `strip_prefecture` transforms: the
//! domain's rule (see [`tsunagu_domain::prefecture`]), so a migrated company and one
//! created through the API get the same prefecture from the same address.

pub use tsunagu_domain::prefecture::{split, stem, PREFECTURES, SAME_NAME_CITIES};
