//! The daemon's control surface in the engine's terms: the requests a front end (the D-Bus
//! service) forwards to the daemon, and the events and account status the daemon publishes.
//! Nothing here knows D-Bus; `src/dbus/` converts.
//!
//! The JSON of sync reports ([`AccountReportJson`]) lives here too. It is the `report` of the
//! `JobFinished` signal, which the D-Bus front writes and the command line's client reads, and
//! the output of `idlewild sync --json`, also when no daemon runs: so it is no D-Bus type, and
//! it is made from the engine's reports, which `dbus/` may not reach (`tests/layers.rs`).
//! `dbus/`, `cli/` and `main.rs` all sit above this module and use it without an upward
//! import. The engine's own report types carry no serde: a field renamed or added there
//! changes no client's input until it is written here.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use tokio::sync::oneshot;

use crate::engine::account::AccountReport;
use crate::engine::{FolderReport, SkippedMessage};
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

/// One account's part of a sync report as clients read it: an element of the `report` array
/// of `JobFinished`, and of `idlewild sync --json`. Field names and order are the format;
/// keys added later are `#[serde(default)]`, so a report from an older daemon still reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccountReportJson {
    pub account: String,
    pub folders: Vec<FolderReportJson>,
    /// Why the account as a whole failed, if it did.
    pub error: Option<String>,
}

/// One folder's part of a report; see [`FolderReport`] for what the fields mean.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FolderReportJson {
    pub folder: String,
    #[serde(default)]
    pub remote_folder: String,
    pub downloaded: usize,
    /// Of `downloaded`, the links to a copy in another folder; left out when 0 (it came later).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub linked: usize,
    pub uploaded: usize,
    pub flags_remote: usize,
    pub flags_local: usize,
    pub deleted_remote: usize,
    pub deleted_local: usize,
    /// The side it was created on: "server" or "local".
    pub created: Option<String>,
    /// The side it was removed from: "server" or "local".
    #[serde(default)]
    pub removed: Option<String>,
    pub refused: Option<String>,
    pub error: Option<String>,
    pub planned: Vec<String>,
    pub recovered: usize,
    #[serde(default)]
    pub skipped_too_big: Vec<SkippedMessageJson>,
    #[serde(default)]
    pub skipped_too_old: usize,
    /// Left out when `None`: the key came later than the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_disk: Option<PathBuf>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A message `max_size` kept from being copied; see [`SkippedMessage`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SkippedMessageJson {
    pub side: String,
    pub id: String,
    pub size: u64,
}

impl From<&AccountReport> for AccountReportJson {
    fn from(r: &AccountReport) -> AccountReportJson {
        let AccountReport {
            account,
            folders,
            error,
        } = r;
        AccountReportJson {
            account: account.clone(),
            folders: folders.iter().map(FolderReportJson::from).collect(),
            error: error.clone(),
        }
    }
}

impl From<&FolderReport> for FolderReportJson {
    fn from(f: &FolderReport) -> FolderReportJson {
        // Destructured (as are the other two), so a field added to the engine's report is a
        // compile error here until someone decides whether clients see it.
        let FolderReport {
            folder,
            remote_folder,
            downloaded,
            linked,
            uploaded,
            flags_remote,
            flags_local,
            deleted_remote,
            deleted_local,
            created,
            removed,
            refused,
            error,
            planned,
            recovered,
            skipped_too_big,
            skipped_too_old,
            full_disk,
        } = f;
        FolderReportJson {
            folder: folder.clone(),
            remote_folder: remote_folder.clone(),
            downloaded: *downloaded,
            linked: *linked,
            uploaded: *uploaded,
            flags_remote: *flags_remote,
            flags_local: *flags_local,
            deleted_remote: *deleted_remote,
            deleted_local: *deleted_local,
            created: created.clone(),
            removed: removed.clone(),
            refused: refused.clone(),
            error: error.clone(),
            planned: planned.clone(),
            recovered: *recovered,
            skipped_too_big: skipped_too_big
                .iter()
                .map(SkippedMessageJson::from)
                .collect(),
            skipped_too_old: *skipped_too_old,
            full_disk: full_disk.clone(),
        }
    }
}

impl From<&SkippedMessage> for SkippedMessageJson {
    fn from(m: &SkippedMessage) -> SkippedMessageJson {
        let SkippedMessage { side, id, size } = m;
        SkippedMessageJson {
            side: side.clone(),
            id: id.clone(),
            size: *size,
        }
    }
}

/// The reports as `JobFinished` sends them (and `sync --json` prints them, pretty).
pub fn reports_json(reports: &[AccountReport]) -> Vec<AccountReportJson> {
    reports.iter().map(AccountReportJson::from).collect()
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::{AccountReportJson, reports_json};
    use crate::engine::account::AccountReport;
    use crate::engine::{FolderReport, SkippedMessage};

    /// Two accounts with every field of the report set somewhere: one folder with all of
    /// them, one with none of the optional ones, and an account that failed as a whole.
    fn every_field() -> Vec<AccountReport> {
        vec![
            AccountReport {
                account: "work".into(),
                folders: vec![
                    FolderReport {
                        folder: "Archive/2024".into(),
                        remote_folder: "[Gmail]/All Mail".into(),
                        downloaded: 1,
                        linked: 1,
                        uploaded: 2,
                        flags_remote: 3,
                        flags_local: 4,
                        deleted_remote: 5,
                        deleted_local: 6,
                        created: Some("local".into()),
                        removed: Some("server".into()),
                        refused: Some("120 of 130 messages would be deleted".into()),
                        error: Some("disk full \"quoted\"\nsecond line".into()),
                        planned: vec!["download 7".into(), "upload Ü".into()],
                        recovered: 8,
                        skipped_too_big: vec![
                            SkippedMessage {
                                side: "server".into(),
                                id: "17".into(),
                                size: 20_000_000,
                            },
                            SkippedMessage {
                                side: "local".into(),
                                id: "1700000000.M1P2.host".into(),
                                size: u64::MAX,
                            },
                        ],
                        skipped_too_old: 9,
                        full_disk: Some(PathBuf::from("/home/user/Mail")),
                    },
                    FolderReport {
                        folder: "INBOX".into(),
                        remote_folder: "INBOX".into(),
                        ..FolderReport::default()
                    },
                ],
                error: Some("the server closed the connection".into()),
            },
            AccountReport {
                account: "home".into(),
                folders: Vec::new(),
                error: None,
            },
        ]
    }

    /// The `report` argument of `JobFinished` and the output of `sync --json` (pretty
    /// printed), as clients have been reading them.
    const EVERY_FIELD: &str = concat!(
        r##"[{"account":"work","folders":[{"folder":"Archive/2024","remote_folder":"[Gmail]/All Mail","downloaded":1,"linked":1,"uploaded":2,"flags_remote":3,"flags_local":4,"deleted_remote":5,"deleted_local":6,"created":"local","removed":"server","refused":"120 of 130 messages would be deleted","error":"disk full \"quoted\"\nsecond line","planned":["download 7","upload Ü"],"recovered":8,"skipped_too_big":[{"side":"server","id":"17","size":20000000},"##,
        r##"{"side":"local","id":"1700000000.M1P2.host","size":18446744073709551615}],"skipped_too_old":9,"full_disk":"/home/user/Mail"},"##,
        r##"{"folder":"INBOX","remote_folder":"INBOX","downloaded":0,"uploaded":0,"flags_remote":0,"flags_local":0,"deleted_remote":0,"deleted_local":0,"created":null,"removed":null,"refused":null,"error":null,"planned":[],"recovered":0,"skipped_too_big":[],"skipped_too_old":0}],"error":"the server closed the connection"},"##,
        r##"{"account":"home","folders":[],"error":null}]"##,
    );

    fn serialize(reports: &[AccountReport]) -> String {
        serde_json::to_string(&reports_json(reports)).expect("serializable")
    }

    fn parse(text: &str) -> Vec<AccountReportJson> {
        serde_json::from_str(text).expect("a report")
    }

    #[test]
    fn the_report_json_is_unchanged() {
        assert_eq!(serialize(&every_field()), EVERY_FIELD);
    }

    #[test]
    fn a_report_reads_back_as_it_was_written() {
        assert_eq!(parse(EVERY_FIELD), reports_json(&every_field()));
    }

    /// A daemon from before `remote_folder`, `removed`, the limits, `full_disk` and `linked` wrote
    /// folders without those keys; a newer client still reads its reports.
    #[test]
    fn a_report_without_the_newer_keys_reads() {
        let old = concat!(
            r#"[{"account":"a","folders":[{"folder":"INBOX","downloaded":1,"uploaded":0,"#,
            r#""flags_remote":0,"flags_local":0,"deleted_remote":0,"deleted_local":0,"#,
            r#""created":null,"refused":null,"error":null,"planned":[],"recovered":0}],"#,
            r#""error":null}]"#,
        );
        let reports = parse(old);
        assert_eq!(reports.len(), 1);
        let folder = &reports[0].folders[0];
        assert_eq!((folder.folder.as_str(), folder.downloaded), ("INBOX", 1));
        assert_eq!(folder.remote_folder, "");
        assert_eq!(folder.removed, None);
        assert!(folder.skipped_too_big.is_empty());
        assert_eq!(folder.skipped_too_old, 0);
        assert_eq!(folder.full_disk, None);
    }
}
