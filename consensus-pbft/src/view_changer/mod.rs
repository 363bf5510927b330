//! The ViewChanger: VIEW-CHANGE validity, the NEW-VIEW computation, and
//! the component's core [`core::ViewChanger`] (request timer, VIEW-CHANGE
//! send and collect, NEW-VIEW compute and check, growing timeouts), run by
//! its supervised actor ([`actor`]).

pub mod actor;
pub mod core;
