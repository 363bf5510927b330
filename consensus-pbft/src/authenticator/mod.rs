//! The MessageAuthenticator: keys, MACs and signatures ([`core`]), the
//! inbound checks ([`verify`]), and the actor that sits at the node's
//! inbox and lets only authentic messages through ([`actor`]).

pub mod actor;
pub mod core;
pub mod verify;
