//! The reference key-value state machine (being built).
