//! The Maildir store.
