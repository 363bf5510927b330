//! The SafetyVerifier and protocol invariants (being built).
