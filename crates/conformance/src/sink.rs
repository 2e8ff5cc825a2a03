//! Conformance checks: sink port (to be written).
