//! Storage traits and the crash-aware in-memory store (being built).
