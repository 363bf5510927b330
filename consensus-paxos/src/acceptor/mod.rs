//! The Acceptor: the promised ballot and, per slot, the accepted (ballot,
//! value); durable, synced before it answers. Pure [`core`] and its
//! [`actor`].

pub mod actor;
pub mod core;

pub use self::actor::{Acceptor, AcceptorStorage, DirectRequest};
pub use self::core::{
    AcceptRecord, AcceptorCore, AcceptorEffect, AcceptorHardState, AcceptorInput,
};
