//! idlewild: two-way IMAP <-> Maildir synchronization.
//!
//! See ARCHITECTURE.md for the map of the crate.

pub mod child;
pub mod cli;
pub mod config;
pub mod control;
pub mod credentials;
pub mod daemon;
pub mod dbus;
pub mod disk;
pub mod engine;
pub mod folders;
pub mod hooks;
pub mod import;
pub mod mbnames;
pub mod message;
pub mod model;
pub mod pause;
pub mod plan;
pub mod private;
pub mod state;
pub mod store;
