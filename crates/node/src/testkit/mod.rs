//! Conformance kits (placeholder).
pub mod persistence;
pub mod transport;
