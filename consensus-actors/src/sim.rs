//! Deterministic simulation (being built).
