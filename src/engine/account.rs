//! One account's one-shot sync: the lock, the state database, the two stores, and the engine.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{Account, Config, LocalConfig};
use crate::engine::lanes::{Lane, Lanes, OpenLane};
use crate::engine::{self, FolderOverview, FolderReport, Observer, SyncError, SyncOptions};
use crate::hooks::HookEvent;
use crate::model::FolderName;
use crate::plan::Side;
use crate::state::{FolderCount, StateDb};
use crate::store::Store;
use crate::store::imap::ImapStore;
use crate::store::maildir::MaildirStore;

/// What happened to one account. Clients read it as `control::AccountReportJson`.
#[derive(Debug, Clone, Default)]
pub struct AccountReport {
    pub account: String,
    pub folders: Vec<FolderReport>,
    /// Why the account as a whole failed, if it did.
    pub error: Option<String>,
}

impl AccountError {
    /// See [`SyncError::full_disk`].
    pub fn full_disk(&self) -> Option<PathBuf> {
        match self {
            AccountError::Sync(e) => e.full_disk(),
            AccountError::State(e) => e.full_disk(),
            _ => None,
        }
    }
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
    crate::private::create_state_dir(state_dir).map_err(lock_err)?;
    let file = crate::private::open_file(&path, false).map_err(lock_err)?;
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
    /// Only these folders (all when empty): local names, as a mail client shows them; a name
    /// that is no local folder's is taken as the server's name for one.
    pub folders: Vec<FolderName>,
    /// Folders a person asked for: one that exists on neither side is an error in the report,
    /// not silently nothing (as for a wake-up about a folder deleted meanwhile).
    pub required_folders: Vec<FolderName>,
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
    let mut observer = Collecting {
        inner: observer,
        done: Vec::new(),
    };
    let result = async {
        let mut session = AccountSession::open(config, account, run.dry_run)?;
        session.set_parallel(account.watch.max_connections.saturating_sub(1) as usize);
        let folders = session.sync(run, &mut observer).await;
        session.close().await;
        folders
    }
    .await;
    match result {
        Ok(folders) => report.folders = folders,
        Err(e) => {
            // What was done before the account stopped was done: say so.
            report.folders = observer.done;
            report.error = Some(e.to_string());
        }
    }
    report
}

/// Passes progress on and keeps every folder's report, so an account that stops half way
/// still reports the folders it synced (and the one it stopped in).
pub struct Collecting<'a> {
    pub inner: &'a mut dyn Observer,
    pub done: Vec<FolderReport>,
}

impl Observer for Collecting<'_> {
    fn folder_planned(&mut self, folder: &crate::model::FolderName, actions: usize) {
        self.inner.folder_planned(folder, actions);
    }
    fn advanced(&mut self, count: usize) {
        self.inner.advanced(count);
    }
    fn folder_done(&mut self, report: &FolderReport) {
        self.done.push(report.clone());
        self.inner.folder_done(report);
    }
}

/// An account opened for syncing: its lock, state database and stores. The one-shot command
/// syncs once and closes it; the daemon keeps it for its lifetime and syncs again and again over
/// the same server connection, reconnecting when it was lost.
pub struct AccountSession {
    _lock: Option<AccountLock>,
    account: Account,
    state: StateDb,
    state_file: PathBuf,
    local: LocalStore,
    remote: Option<ImapStore>,
    scratch_dir: PathBuf,
    /// How many more connections a sync may open to sync folders side by side.
    parallel: usize,
}

/// The local side: a Maildir, or a second IMAP server (connected by the first sync, and again
/// after its connection was lost).
enum LocalStore {
    Maildir(Box<MaildirStore>),
    Imap(Option<Box<ImapStore>>),
}

impl AccountSession {
    /// Takes the account's lock and opens its state; does not connect yet.
    pub fn open(config: &Config, account: &Account, dry_run: bool) -> Result<Self, AccountError> {
        // A dry run writes nothing, so it may look while another process (the daemon) holds
        // the account; it reads the state as of that process's last commit.
        let lock = match lock_account(&config.state_dir, &account.name) {
            Ok(lock) => Some(lock),
            Err(AccountError::Locked { .. }) if dry_run => None,
            Err(e) => return Err(e),
        };
        let state_file = state_path(config, account);
        // A dry run writes nothing, not even a new state file.
        let state = if dry_run && !state_file.exists() {
            StateDb::open_in_memory()?
        } else {
            StateDb::open(&state_file)?
        };
        Ok(Self {
            _lock: lock,
            account: account.clone(),
            state,
            state_file,
            local: match &account.local {
                LocalConfig::Maildir(m) => {
                    let mut maildir = MaildirStore::new(m);
                    maildir.set_read_only(account.policy.readonly_local);
                    LocalStore::Maildir(Box::new(maildir))
                }
                LocalConfig::Imap(_) => LocalStore::Imap(None),
            },
            remote: None,
            scratch_dir: config.state_dir.join("tmp"),
            parallel: 0,
        })
    }

    /// Lets syncs open up to `extra` more connections (each with its own local store and state
    /// connection) when several folders changed. The daemon keeps its connections for
    /// watching and syncs on one; the one-shot sync uses `max_connections`.
    pub fn set_parallel(&mut self, extra: usize) {
        self.parallel = extra;
    }

    /// Whether the server connection is up (it is opened by the next sync when not).
    pub fn connected(&self) -> bool {
        let local = match &self.local {
            LocalStore::Maildir(_) => true,
            LocalStore::Imap(store) => store.as_ref().is_some_and(|s| s.is_alive()),
        };
        local && self.remote.as_ref().is_some_and(ImapStore::is_alive)
    }

    /// Syncs the folders `run` names (all when none), connecting first if needed.
    pub async fn sync(
        &mut self,
        run: &RunOptions,
        observer: &mut dyn Observer,
    ) -> Result<Vec<FolderReport>, AccountError> {
        if let (LocalStore::Maildir(maildir), LocalConfig::Maildir(config)) =
            (&self.local, &self.account.local)
            && !maildir.root_exists()
            && !self.state.folders()?.is_empty()
        {
            return Err(AccountError::MaildirMissing {
                path: config.path.clone(),
                state: self.state_file.clone(),
            });
        }
        if !run.dry_run {
            run_hook(&self.account, HookEvent::Presync, None, 0).await;
        }
        let policy = self.account.policy;
        let options = self.options(run);
        let remote = match self.remote.take().filter(ImapStore::is_alive) {
            Some(remote) => remote,
            None => {
                let mut remote = ImapStore::connect(&self.account.remote)
                    .await
                    .map_err(|e| SyncError::Store {
                        side: Side::Remote,
                        source: e,
                    })?;
                remote.set_read_only(policy.readonly_remote);
                remote
            }
        };
        let remote = self.remote.insert(remote);
        let local = local_store(&mut self.local, &self.account.local, policy, run.dry_run).await?;
        let lanes = Lanes {
            extra: self.parallel,
            opener: Arc::new(AccountLanes {
                account: self.account.clone(),
                state_file: self.state_file.clone(),
            }),
        };
        let mut result = engine::sync_folders(
            remote,
            local,
            &mut self.state,
            &options,
            observer,
            Some(&lanes),
        )
        .await;
        if let Ok(reports) = &mut result {
            for folder in &run.required_folders {
                let named = |r: &&FolderReport| {
                    r.folder == folder.as_str() || r.remote_folder == folder.as_str()
                };
                if !reports.iter().any(|r| named(&r)) {
                    let rules = self
                        .account
                        .folders
                        .clone()
                        .with_left_out(remote.left_out_by_default());
                    let why = match rules.selection(folder) {
                        crate::folders::Selection::Included => {
                            format!("no folder named \"{folder}\" on the server or in the Maildir")
                        }
                        left @ crate::folders::Selection::LeftOut { .. } => {
                            format!("folder \"{folder}\" is {left}")
                        }
                        left_out => format!(
                            "folder \"{folder}\" is left out by the configuration ({left_out} in folders.include/folders.exclude)"
                        ),
                    };
                    reports.push(FolderReport {
                        folder: folder.to_string(),
                        error: Some(why),
                        ..FolderReport::default()
                    });
                }
            }
        }
        if result.is_err() && !remote.is_alive() {
            self.remote = None;
        }
        if !run.dry_run
            && let Ok(reports) = &result
        {
            for r in reports.iter().filter(|r| r.downloaded > 0) {
                run_hook(
                    &self.account,
                    HookEvent::NewMail,
                    Some(&r.folder),
                    r.downloaded,
                )
                .await;
            }
            let total = reports.iter().map(|r| r.downloaded).sum();
            run_hook(&self.account, HookEvent::Postsync, None, total).await;
        }
        Ok(result?)
    }

    fn options(&self, run: &RunOptions) -> SyncOptions {
        SyncOptions {
            folders: run.folders.clone(),
            dry_run: run.dry_run,
            allow_mass_delete: run.allow_mass_delete,
            guard: self.account.mass_delete,
            scratch_dir: self.scratch_dir.clone(),
            rules: self.account.folders.clone(),
            folder_policy: self.account.folder_policy,
            policy: self.account.policy,
            limits: self.account.limits,
            settings: settings_fingerprint(&self.account),
        }
    }

    /// Every folder pair with what a sync would do, connecting first if needed; changes
    /// nothing (`idlewild folders`).
    pub async fn overview(&mut self) -> Result<FolderOverview, AccountError> {
        let options = self.options(&RunOptions {
            dry_run: true,
            ..RunOptions::default()
        });
        let remote = match self.remote.take().filter(ImapStore::is_alive) {
            Some(remote) => remote,
            None => ImapStore::connect(&self.account.remote)
                .await
                .map_err(|e| SyncError::Store {
                    side: Side::Remote,
                    source: e,
                })?,
        };
        let remote = self.remote.insert(remote);
        let local = local_store(
            &mut self.local,
            &self.account.local,
            self.account.policy,
            true,
        )
        .await?;
        Ok(engine::plan_folders(remote, local, &mut self.state, &options).await?)
    }

    /// Messages in step per folder (by local name), as of the last sync. The state knows
    /// folders by their server names; folders now left out are not shown.
    pub fn counts(&self) -> Result<BTreeMap<String, FolderCount>, AccountError> {
        let rules = &self.account.folders;
        Ok(self
            .state
            .message_counts()?
            .into_iter()
            .filter_map(|(remote, count)| {
                let Some(remote) = FolderName::new(&remote) else {
                    return Some((remote, count));
                };
                if !rules.selection(&remote).is_included() {
                    return None;
                }
                let local = rules.local_name(&remote).unwrap_or(remote);
                Some((local.to_string(), count))
            })
            .collect())
    }

    /// [`AccountSession::counts`] of the folders named (by server name) only: what a sync of
    /// a few folders changed, without counting every message of the account.
    pub fn counts_of(
        &self,
        remote: &[FolderName],
    ) -> Result<BTreeMap<String, FolderCount>, AccountError> {
        let rules = &self.account.folders;
        let mut out = BTreeMap::new();
        for folder in remote.iter().filter(|f| rules.selection(f).is_included()) {
            if let Some(count) = self.state.message_count(folder)? {
                let local = rules.local_name(folder).unwrap_or_else(|_| folder.clone());
                out.insert(local.to_string(), count);
            }
        }
        Ok(out)
    }

    pub async fn close(&mut self) {
        if let Some(mut remote) = self.remote.take() {
            remote.close().await;
        }
        if let LocalStore::Imap(slot) = &mut self.local
            && let Some(mut local) = slot.take()
        {
            local.close().await;
        }
    }
}

/// Runs the account's hook for `event`, if it has one; its failure is logged, never fatal.
async fn run_hook(account: &Account, event: HookEvent, folder: Option<&str>, new_messages: usize) {
    let Some(hook) = account.hooks.get(event) else {
        return;
    };
    let env = [
        ("IDLEWILD_ACCOUNT", account.name.clone()),
        ("IDLEWILD_FOLDER", folder.unwrap_or("").to_owned()),
        ("IDLEWILD_NEW_MESSAGES", new_messages.to_string()),
        ("IDLEWILD_EVENT", event.as_str().to_owned()),
    ];
    crate::hooks::run_hook(event.as_str(), hook, &env).await;
}

/// The local store, connected first when it is a second IMAP server. A Maildir root is made
/// only now that the server let us in (a wrong password leaves no trace locally), never for a
/// dry run or a read-only Maildir.
async fn local_store<'a>(
    local: &'a mut LocalStore,
    config: &LocalConfig,
    policy: crate::plan::Policy,
    dry_run: bool,
) -> Result<&'a mut dyn Store, SyncError> {
    let local: &'a mut dyn Store = match (local, config) {
        (LocalStore::Maildir(maildir), _) => {
            // Only now that the server let us in: a wrong password leaves no trace locally.
            // A read-only Maildir is never created.
            if !maildir.root_exists() && !dry_run && !policy.readonly_local {
                maildir.create_root().map_err(|e| SyncError::Store {
                    side: Side::Local,
                    source: e,
                })?;
            }
            maildir.as_mut()
        }
        (LocalStore::Imap(slot), LocalConfig::Imap(config)) => {
            let store = match slot.take().filter(|s| s.is_alive()) {
                Some(store) => store,
                None => {
                    let mut store =
                        ImapStore::connect(config)
                            .await
                            .map_err(|e| SyncError::Store {
                                side: Side::Local,
                                source: e,
                            })?;
                    store.set_read_only(policy.readonly_local);
                    Box::new(store)
                }
            };
            slot.insert(store).as_mut()
        }
        (LocalStore::Imap(_), LocalConfig::Maildir(_)) => {
            return Err(SyncError::Store {
                side: Side::Local,
                source: crate::store::StoreError::Invalid(
                    "the local store does not match the configuration".into(),
                ),
            });
        }
    };
    Ok(local)
}

/// Opens more connections to an account's two sides for syncing folders side by side.
struct AccountLanes {
    account: Account,
    state_file: PathBuf,
}

#[async_trait::async_trait]
impl OpenLane for AccountLanes {
    async fn open(&self) -> Result<Lane, SyncError> {
        let policy = self.account.policy;
        let mut remote = ImapStore::connect(&self.account.remote)
            .await
            .map_err(SyncError::remote)?;
        remote.set_read_only(policy.readonly_remote);
        let local: Box<dyn Store> = match &self.account.local {
            LocalConfig::Maildir(config) => {
                let mut maildir = MaildirStore::new(config);
                maildir.set_read_only(policy.readonly_local);
                Box::new(maildir)
            }
            LocalConfig::Imap(config) => {
                let mut store = ImapStore::connect(config).await.map_err(SyncError::local)?;
                store.set_read_only(policy.readonly_local);
                Box::new(store)
            }
        };
        Ok(Lane {
            remote: Box::new(remote),
            local,
            state: StateDb::open(&self.state_file)?,
        })
    }
}

/// What shapes a folder's plan besides its messages, as a short fingerprint: after a change of
/// any of it (a side made read-only, `sync_deletes`, the limits, the keyword rules, Gmail mode)
/// no folder is skipped as unchanged, nor its local side taken from the state, until it has
/// been synced under the new settings.
fn settings_fingerprint(account: &Account) -> String {
    use sha2::{Digest, Sha256};
    let local_keywords = match &account.local {
        LocalConfig::Maildir(maildir) => &maildir.keywords,
        LocalConfig::Imap(imap) => &imap.keywords,
    };
    let text = format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}",
        account.policy,
        account.limits,
        account.remote.keywords,
        local_keywords,
        account.remote.gmail
    );
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}
