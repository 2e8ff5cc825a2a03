//! The prefecture split of the `prefecture` and `strip_prefecture` transforms: the
//! domain's [`split_address`], the function the API's company create/edit calls, so a
//! migrated company and one created through the API get the same prefecture and the same
//! remaining address from the same text (asserted in `tests/prefecture.rs`).

pub use tsunagu_domain::prefecture::{split_address, stem, SplitAddress, PREFECTURES};
