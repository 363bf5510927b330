//! The per-node supervision tree (being built).
