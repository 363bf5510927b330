//! # model-agreement
//!
//! Will let distributed training nodes agree on model state through the
//! consensus protocols: `GradientConsensus`, `ParameterSync` and
//! `VersionVector`. Not built yet: this crate compiles and exports nothing.
#![deny(missing_docs)]
