//! The system keyring (the freedesktop Secret Service on Linux: gnome-keyring, KeePassXC, ...)
//! through `keyring-core` and its Secret Service store.
//!
//! Every call here blocks on D-Bus: call it from a blocking thread, never on an async worker.
//!
//! The `keyring` crate's default store is made once per process and, when the Secret Service
//! could not be reached at that moment, never again. A daemon started before the desktop
//! session unlocks the keyring would then fail until restarted. So each call here makes its own
//! store (a D-Bus connection and an encrypted session, about 0.1 s), which is cheap next to an
//! IMAP login and only happens when the in-memory cache is empty.
//!
//! Items carry the attributes `service` and `username` (what `secret-tool` and the `keyring`
//! crate use), so `secret-tool lookup service idlewild username ACCOUNT` finds a password and
//! `secret-tool store --label=... service idlewild username ACCOUNT` stores one.

use std::collections::HashMap;
use std::sync::Arc;

use keyring_core::{CredentialStore, Entry, Error};

use super::{CredentialError, Secret};

/// What went wrong with the keyring, before the account is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyringError {
    /// No Secret Service on the bus, or no bus.
    Unavailable(String),
    /// The collection is locked and could not be unlocked (no prompt possible, or dismissed).
    Locked(String),
    /// Anything else, e.g. a stored value that is not UTF-8.
    Other(String),
}

impl KeyringError {
    pub fn for_account(self, account: &str) -> CredentialError {
        let account = account.to_owned();
        match self {
            KeyringError::Unavailable(detail) => {
                CredentialError::KeyringUnavailable { account, detail }
            }
            KeyringError::Locked(detail) => CredentialError::Locked { account, detail },
            KeyringError::Other(detail) => CredentialError::Keyring { account, detail },
        }
    }
}

impl std::fmt::Display for KeyringError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyringError::Unavailable(d) => {
                write!(f, "the keyring (Secret Service) cannot be reached: {d}")
            }
            KeyringError::Locked(d) => write!(f, "the keyring is locked: {d}"),
            KeyringError::Other(d) => write!(f, "the keyring failed: {d}"),
        }
    }
}

/// The item label shown by keyring managers (Seahorse, KeePassXC).
pub fn password_label(account: &str) -> String {
    format!("idlewild password for account {account}")
}

pub fn refresh_token_label(account: &str) -> String {
    format!("idlewild OAuth2 refresh token for account {account}")
}

fn store() -> Result<Arc<CredentialStore>, KeyringError> {
    let store = zbus_secret_service_keyring_store::Store::new().map_err(|e| classify(&e))?;
    Ok(store)
}

fn entry(
    store: &Arc<CredentialStore>,
    service: &str,
    account: &str,
    label: Option<&str>,
) -> Result<Entry, KeyringError> {
    let mut modifiers = HashMap::new();
    if let Some(label) = label {
        modifiers.insert("label", label);
    }
    store
        .build(service, account, Some(&modifiers))
        .map_err(|e| classify(&e))
}

/// Whether a Secret Service answers, so a person is not asked for a password that cannot be
/// stored.
pub fn reachable() -> Result<(), KeyringError> {
    store().map(drop)
}

/// The secret stored for `account` under `service`; `None` when there is none.
pub fn get(service: &str, account: &str) -> Result<Option<Secret>, KeyringError> {
    let store = store()?;
    match entry(&store, service, account, None)?.get_secret() {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Ok(Some(Secret::new(text))),
            // The bytes are dropped unseen: they may be the secret.
            Err(_) => Err(KeyringError::Other(format!(
                "the item of service {service} username {account} is not UTF-8 text; store it again"
            ))),
        },
        Err(Error::NoEntry) => Ok(None),
        Err(Error::Ambiguous(items)) => Err(KeyringError::Other(format!(
            "{} items match service {service} username {account}; delete all but one (secret-tool clear service {service} username {account} removes them all)",
            items.len()
        ))),
        Err(e) => Err(classify(&e)),
    }
}

/// Stores (or replaces) the secret of `account` under `service`.
pub fn set(service: &str, account: &str, label: &str, secret: &Secret) -> Result<(), KeyringError> {
    let store = store()?;
    entry(&store, service, account, Some(label))?
        .set_password(secret.expose())
        .map_err(|e| classify(&e))
}

/// Deletes the secret; `false` when there was none.
pub fn delete(service: &str, account: &str) -> Result<bool, KeyringError> {
    let store = store()?;
    match entry(&store, service, account, None)?.delete_credential() {
        Ok(()) => Ok(true),
        Err(Error::NoEntry) => Ok(false),
        Err(e) => Err(classify(&e)),
    }
}

/// Sorts keyring-core's errors by what the user can do about them. Only variants that cannot
/// hold secret bytes are shown (`BadEncoding` and `BadDataFormat` carry the stored value).
fn classify(e: &Error) -> KeyringError {
    match e {
        Error::NoStorageAccess(inner) => KeyringError::Locked(inner.to_string()),
        Error::PlatformFailure(inner) => {
            let text = inner.to_string();
            // zbus's words for "nobody there": no bus socket, or no Secret Service name on it.
            let unreachable = [
                "ServiceUnknown",
                "NotFound",
                "No such file",
                "Connection refused",
                "NameHasNoOwner",
                "not provided by any .service",
            ]
            .iter()
            .any(|needle| text.contains(needle));
            if unreachable {
                KeyringError::Unavailable(text)
            } else {
                KeyringError::Other(text)
            }
        }
        Error::NoDefaultStore => KeyringError::Unavailable("no credential store".to_owned()),
        Error::BadEncoding(_) | Error::BadDataFormat(..) => {
            KeyringError::Other("the stored value cannot be read".to_owned())
        }
        Error::NoEntry => KeyringError::Other("no such item".to_owned()),
        other => KeyringError::Other(other.to_string()),
    }
}
