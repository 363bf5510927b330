//! Cross-crate integration tests live in `tests/tests/`; this library holds
//! helpers they share.
#![forbid(unsafe_code)]
