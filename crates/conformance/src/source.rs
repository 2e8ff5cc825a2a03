//! Conformance checks: source port (to be written).
