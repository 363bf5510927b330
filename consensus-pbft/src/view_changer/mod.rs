//! The ViewChanger: VIEW-CHANGE validity and the NEW-VIEW computation
//! ([`core`]), driven by the replica's timers.

pub mod core;
