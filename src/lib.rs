//! idlewild: two-way IMAP <-> Maildir synchronization.
//!
//! See ARCHITECTURE.md for the map of the crate.

pub mod config;
pub mod engine;
pub mod message;
pub mod model;
pub mod plan;
pub mod recover;
pub mod state;
pub mod store;
