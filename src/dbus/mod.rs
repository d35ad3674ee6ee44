//! The D-Bus API on the session bus (`org.idlewild.Idlewild1`): the daemon's service side and the
//! client proxies the command line and the tests share. Only this module knows zbus types; it
//! converts to and from the daemon's control types (`control`).
//!
//! The interface is described for tools in `dbus/org.idlewild.Idlewild1.xml`, and a test checks
//! that file against what the daemon really exports.

mod error;
pub mod proxy;
mod service;

use std::collections::BTreeMap;

pub use error::Error;
pub use service::{Service, StartError};

/// The well-known name the daemon owns.
pub const NAME: &str = "org.idlewild.Idlewild1";
/// The manager object, and the interface it implements.
pub const PATH: &str = "/org/idlewild/Idlewild1";
pub const MANAGER_INTERFACE: &str = "org.idlewild.Idlewild1";
/// One object per account lives below this path.
pub const ACCOUNTS_PATH: &str = "/org/idlewild/Idlewild1/accounts";
pub const ACCOUNT_INTERFACE: &str = "org.idlewild.Idlewild1.Account";

/// An account's status as `Status()` returns it (a{sv}, keys as the Account properties).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, zbus::Type)]
#[zbus(signature = "a{sv}")]
#[serde(default, rename_all = "PascalCase")]
pub struct AccountInfo {
    #[serde(with = "zbus::as_variant")]
    pub name: String,
    /// idle, syncing, paused, offline or error.
    #[serde(with = "zbus::as_variant")]
    pub state: String,
    /// Seconds since the epoch of the last successful sync; 0: none since the daemon started.
    #[serde(with = "zbus::as_variant")]
    pub last_sync: u64,
    /// Why the last sync failed; empty after a success.
    #[serde(with = "zbus::as_variant")]
    pub last_error: String,
    #[serde(with = "zbus::as_variant")]
    pub unseen: u32,
    #[serde(with = "zbus::as_variant")]
    pub total: u32,
    #[serde(with = "zbus::as_variant")]
    pub paused: bool,
    /// Seconds since the epoch when the pause ends; 0: until resumed (or not paused).
    #[serde(with = "zbus::as_variant")]
    pub paused_until: u64,
    /// Folder name -> (messages, unseen).
    #[serde(with = "zbus::as_variant")]
    pub folders: BTreeMap<String, (u32, u32)>,
}

impl AccountInfo {
    pub fn from_status(status: &crate::control::AccountStatus) -> AccountInfo {
        AccountInfo {
            name: status.name.clone(),
            state: status.state.as_str().to_owned(),
            last_sync: status.last_sync.map_or(0, crate::pause::epoch_seconds),
            last_error: status.last_error.clone().unwrap_or_default(),
            unseen: status.unseen(),
            total: status.total(),
            paused: status.paused.is_some(),
            paused_until: status.paused.map_or(0, |p| p.until_epoch()),
            folders: status
                .folders
                .iter()
                .map(|(name, c)| (name.clone(), (c.total, c.unseen)))
                .collect(),
        }
    }
}

/// The object path of an account: its name escaped as systemd escapes bus path labels
/// (`sd_bus_path_encode`): every byte outside `[A-Za-z0-9]` becomes `_` and two hex digits.
pub fn account_path(account: &str) -> String {
    format!("{ACCOUNTS_PATH}/{}", escape_label(account))
}

pub fn escape_label(label: &str) -> String {
    if label.is_empty() {
        return "_".to_owned();
    }
    let mut out = String::with_capacity(label.len());
    for (i, b) in label.bytes().enumerate() {
        if b.is_ascii_alphanumeric() && !(i == 0 && b.is_ascii_digit()) {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names_become_valid_object_paths() {
        assert_eq!(
            account_path("personal"),
            "/org/idlewild/Idlewild1/accounts/personal"
        );
        assert_eq!(escape_label("my-work.mail"), "my_2dwork_2email");
        assert_eq!(escape_label("2nd"), "_32nd");
        assert_eq!(escape_label("a_b"), "a_5fb");
        for name in ["personal", "my-work.mail", "2nd", "a_b", "x"] {
            assert!(
                zbus::ObjectPath::try_from(account_path(name)).is_ok(),
                "{name}"
            );
        }
    }
}
