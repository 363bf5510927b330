//! The PBFTEngine: the engine core ([`core`]), its actor ([`actor`]), and
//! the whole replica in one core ([`replica`]).

pub mod actor;
pub mod core;
pub mod replica;
#[cfg(test)]
pub(crate) mod tests;
