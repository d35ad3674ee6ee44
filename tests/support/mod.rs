//! Support code shared by the integration tests: a private Dovecot server,
//! an independent IMAP client to drive it, a message corpus, a scripted
//! IMAP responder for folder names no real server here accepts, and a proxy
//! that makes the Dovecot behave like Gmail.
//!
//! Use with `mod support;` in a test crate, or include single files with
//! `#[path = "support/dovecot.rs"] mod dovecot;` (imapctl.rs also needs
//! dovecot.rs as a sibling module named `dovecot`, and so does gmail_proxy.rs;
//! keyring.rs needs bus.rs as `bus`).

pub mod bus;
pub mod corpus;
pub mod dovecot;
pub mod fault_proxy;
pub mod faulty;
pub mod gmail_proxy;
pub mod imapctl;
pub mod keyring;
pub mod scripted_imap;
