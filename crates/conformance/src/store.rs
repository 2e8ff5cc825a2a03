//! Conformance checks: store port (to be written).
