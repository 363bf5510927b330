//! The PBFTEngine: the replica core ([`core`]) and its actor ([`actor`]).

pub mod actor;
pub mod core;
#[cfg(test)]
pub(crate) mod tests;
