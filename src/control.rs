//! The daemon's control surface in the engine's terms: the requests a front end (the D-Bus
//! service) forwards to the daemon, and the events and account status the daemon publishes.
//! Nothing here knows D-Bus; `src/dbus/` converts.

use std::collections::BTreeMap;
use std::time::SystemTime;

use tokio::sync::oneshot;

use crate::engine::account::AccountReport;
use crate::model::FolderName;
use crate::pause::Pause;
use crate::state::FolderCount;

/// A sync request's number, unique for the daemon's lifetime. Never 0.
pub type JobId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StateKind {
    Idle,
    Syncing,
    Paused,
    Offline,
    Error,
}

impl StateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StateKind::Idle => "idle",
            StateKind::Syncing => "syncing",
            StateKind::Paused => "paused",
            StateKind::Offline => "offline",
            StateKind::Error => "error",
        }
    }
}

/// What a status bar wants to know about an account.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountStatus {
    pub name: String,
    pub state: StateKind,
    /// The end of the last sync that succeeded.
    pub last_sync: Option<SystemTime>,
    /// Why the last sync (or connection) failed; cleared by a success.
    pub last_error: Option<String>,
    /// Messages in step, and those without \Seen, by folder (deleted ones not counted).
    pub folders: BTreeMap<String, FolderCount>,
    pub paused: Option<Pause>,
}

impl AccountStatus {
    pub fn new(name: &str) -> AccountStatus {
        AccountStatus {
            name: name.to_owned(),
            state: StateKind::Syncing,
            last_sync: None,
            last_error: None,
            folders: BTreeMap::new(),
            paused: None,
        }
    }

    pub fn total(&self) -> u32 {
        self.folders.values().map(|c| c.total).sum()
    }

    pub fn unseen(&self) -> u32 {
        self.folders.values().map(|c| c.unseen).sum()
    }
}

pub type Reply<T> = oneshot::Sender<Result<T, ControlError>>;

/// A request from a front end; each carries the channel its answer goes back on.
#[derive(Debug)]
pub enum Request {
    /// Sync one account (`Some`) or every account that is not paused (`None`); no folders
    /// means all of them. Answered at once with the job's number; the job's end is an event.
    Sync {
        account: Option<String>,
        folders: Vec<String>,
        allow_mass_delete: bool,
        reply: Reply<JobId>,
    },
    /// Pause for `seconds` (0: until resumed).
    Pause {
        account: String,
        seconds: u64,
        reply: Reply<()>,
    },
    Resume {
        account: String,
        reply: Reply<()>,
    },
    /// Read the configuration file again (as SIGHUP does), answering whether it was taken.
    Reload {
        reply: Reply<()>,
    },
}

/// A folder name a front end sent, checked: not empty, no control character (no folder a
/// person asks for has one, and it would garble logs and reports), a valid `FolderName`.
pub fn requested_folder(name: &str) -> Result<FolderName, ControlError> {
    if name.chars().any(char::is_control) {
        return Err(ControlError::InvalidFolder(name.to_owned()));
    }
    FolderName::new(name).ok_or_else(|| ControlError::InvalidFolder(name.to_owned()))
}

/// A pause length a front end sent, checked against [`crate::pause::MAX_SECONDS`].
pub fn requested_pause(seconds: u64) -> Result<u64, ControlError> {
    if seconds > crate::pause::MAX_SECONDS {
        return Err(ControlError::InvalidArgs(format!(
            "a pause lasts at most 366 days ({} seconds), not {seconds} seconds; 0 pauses until resumed",
            crate::pause::MAX_SECONDS
        )));
    }
    Ok(seconds)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("no account named \"{name}\" (accounts: {known})")]
    UnknownAccount { name: String, known: String },
    /// Shown with Rust's escapes, so a control character in it is visible and harmless.
    #[error("{0:?} is not a folder name")]
    InvalidFolder(String),
    #[error("{0}")]
    InvalidArgs(String),
    #[error("account {account} is paused {until}; run `idlewild resume {account}` to sync it")]
    Paused { account: String, until: String },
    #[error("the configuration was not reloaded: {0}")]
    Config(String),
    #[error("{0}")]
    Failed(String),
    #[error("the daemon is stopping")]
    Stopping,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Everything asked for was synced.
    Ok,
    /// An account or folder failed.
    Failed,
    /// The safety valve left a folder alone.
    Refused,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Ok => "ok",
            JobStatus::Failed => "failed",
            JobStatus::Refused => "refused",
        }
    }

    pub fn of(reports: &[AccountReport]) -> JobStatus {
        if reports.iter().any(AccountReport::failed) {
            JobStatus::Failed
        } else if reports.iter().any(AccountReport::refused) {
            JobStatus::Refused
        } else {
            JobStatus::Ok
        }
    }
}

/// What the daemon publishes, in order.
#[derive(Debug, Clone)]
pub enum Event {
    /// An account was started (at start-up or by a reload).
    AccountAdded(AccountStatus),
    /// An account's status changed (any field).
    Status(AccountStatus),
    AccountRemoved(String),
    SyncStarted {
        account: String,
        jobs: Vec<JobId>,
    },
    SyncFinished {
        account: String,
        jobs: Vec<JobId>,
        /// Messages copied to the Maildir and to the server.
        received: u32,
        sent: u32,
        error: Option<String>,
    },
    NewMail {
        account: String,
        folder: String,
        count: u32,
    },
    JobFinished {
        job: JobId,
        status: JobStatus,
        error: Option<String>,
        reports: Vec<AccountReport>,
    },
}
