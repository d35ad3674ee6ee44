//! idlewild: two-way IMAP <-> Maildir synchronization.
//!
//! See ARCHITECTURE.md for the map of the crate.

pub mod account;
pub mod child;
pub mod cli;
pub mod client;
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
pub mod incremental;
pub mod logging;
pub mod mbnames;
pub mod message;
pub mod model;
pub mod notify;
pub mod pause;
pub mod plan;
pub mod private;
pub mod progress;
pub mod recover;
pub mod report;
pub mod state;
pub mod store;
