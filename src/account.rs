//! One account's one-shot sync: the lock, the state database, the two stores, and the engine.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::config::{Account, Config};
use crate::engine::{self, FolderReport, Observer, SyncError, SyncOptions};
use crate::model::FolderName;
use crate::state::StateDb;
use crate::store::Store;
use crate::store::imap::ImapStore;
use crate::store::maildir::MaildirStore;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AccountReport {
    pub account: String,
    pub folders: Vec<FolderReport>,
    /// Why the account as a whole failed, if it did.
    pub error: Option<String>,
}

impl AccountReport {
    pub fn refused(&self) -> bool {
        self.folders.iter().any(|f| f.refused.is_some())
    }
    pub fn failed(&self) -> bool {
        self.error.is_some() || self.folders.iter().any(|f| f.error.is_some())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(
        "another idlewild is syncing account {account} (lock {path} is held); wait for it to finish"
    )]
    Locked { account: String, path: PathBuf },
    #[error("cannot create the lock {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the Maildir {path} does not exist, but the state says this account was synced before; nothing was changed. If the disk is not mounted, mount it; if you moved the mail, fix local.path; to start over, remove {state}"
    )]
    MaildirMissing { path: PathBuf, state: PathBuf },
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// Holds an account's lock until dropped. The kernel releases it if the process dies, so a
/// crash never leaves a stale lock behind.
pub struct AccountLock {
    _file: File,
}

pub fn lock_account(state_dir: &Path, account: &str) -> Result<AccountLock, AccountError> {
    let path = state_dir.join(format!("{account}.lock"));
    let lock_err = |source| AccountError::Lock {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(state_dir).map_err(lock_err)?;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(lock_err)?;
    match file.try_lock() {
        Ok(()) => Ok(AccountLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(AccountError::Locked {
            account: account.to_owned(),
            path,
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(lock_err(e)),
    }
}

pub fn state_path(config: &Config, account: &Account) -> PathBuf {
    config.state_dir.join(format!("{}.sqlite", account.name))
}

/// Options for [`sync_account`] that come from the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub folders: Vec<FolderName>,
    pub dry_run: bool,
    pub allow_mass_delete: bool,
}

pub async fn sync_account(
    config: &Config,
    account: &Account,
    run: &RunOptions,
    observer: &mut dyn Observer,
) -> AccountReport {
    let mut report = AccountReport {
        account: account.name.clone(),
        ..AccountReport::default()
    };
    match try_sync_account(config, account, run, observer, &mut report).await {
        Ok(()) => {}
        Err(e) => report.error = Some(e.to_string()),
    }
    report
}

async fn try_sync_account(
    config: &Config,
    account: &Account,
    run: &RunOptions,
    observer: &mut dyn Observer,
    report: &mut AccountReport,
) -> Result<(), AccountError> {
    let _lock = lock_account(&config.state_dir, &account.name)?;
    let state_file = state_path(config, account);
    // A dry run writes nothing, not even a new state file.
    let mut state = if run.dry_run && !state_file.exists() {
        StateDb::open_in_memory()?
    } else {
        StateDb::open(&state_file)?
    };
    let mut local = MaildirStore::new(&account.local);
    if !local.root_exists() && !state.folders()?.is_empty() {
        return Err(AccountError::MaildirMissing {
            path: account.local.path.clone(),
            state: state_file,
        });
    }
    let mut remote = ImapStore::connect(&account.remote)
        .await
        .map_err(|e| SyncError::Store {
            side: crate::plan::Side::Remote,
            source: e,
        })?;
    // Only now that the server let us in: a wrong password leaves no trace locally.
    if !local.root_exists() && !run.dry_run {
        local.create_root().map_err(|e| SyncError::Store {
            side: crate::plan::Side::Local,
            source: e,
        })?;
    }
    let scratch_dir = config.state_dir.join("tmp");
    let options = SyncOptions {
        folders: run.folders.clone(),
        dry_run: run.dry_run,
        allow_mass_delete: run.allow_mass_delete,
        guard: account.mass_delete,
        scratch_dir,
    };
    let result =
        engine::sync_folders(&mut remote, &mut local, &mut state, &options, observer).await;
    remote.close().await;
    match result {
        Ok(folders) => {
            report.folders = folders;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
