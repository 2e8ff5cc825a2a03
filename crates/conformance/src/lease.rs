//! Conformance checks: lease port (to be written).
