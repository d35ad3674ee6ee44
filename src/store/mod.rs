//! The interface the sync engine uses to reach a mail store, and its implementations.
//!
//! The engine never sees protocol or filesystem types: an IMAP server and a Maildir tree are both
//! a [`Store`] of folders holding messages identified by a [`MsgId`].

pub mod imap;
pub mod maildir;
pub mod memory;
pub mod readonly;

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::model::{
    Fingerprint, Flags, FolderName, FolderSnapshot, KeywordRoom, Keywords, MessageMeta, MsgId,
    UidValidity,
};

/// What to do after a store failed, so callers branch on the kind rather than the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The connection or the disk failed for now; a later attempt may succeed.
    Temporary,
    /// The configuration or the credentials are wrong: retrying will not help until they change.
    Permanent,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS with {host} failed: {detail}")]
    Tls { host: String, detail: String },
    #[error("login to {host} as {user} was refused: {detail}")]
    Auth {
        host: String,
        user: String,
        detail: String,
    },
    #[error("{host} does not offer {what}")]
    Unsupported { host: String, what: String },
    #[error("the connection to {host} was lost: {detail}")]
    ConnectionLost { host: String, detail: String },
    #[error("{host} did not answer within {seconds} s")]
    Timeout { host: String, seconds: u64 },
    #[error("{host} answered in an unexpected way to {command}: {detail}")]
    Protocol {
        host: String,
        command: String,
        detail: String,
    },
    #[error("{host} refused {command}: {detail}")]
    Refused {
        host: String,
        command: String,
        detail: String,
    },
    /// The server rations the account (a bandwidth or connection limit, throttling): not an
    /// error of ours, and asking again soon only makes it worse.
    #[error(
        "{host} refused {command} for now: {detail} (the server limits what one account may do; \
         leave it alone for {} before the next sync, as the daemon does; nothing was lost)",
        human(*wait)
    )]
    Rationed {
        host: String,
        command: String,
        detail: String,
        wait: std::time::Duration,
    },
    #[error("folder {0} does not exist")]
    NoSuchFolder(FolderName),
    /// This store cannot hold a folder of that name; the other folders are not concerned.
    #[error("folder {folder} cannot be stored here: {reason}")]
    FolderName { folder: FolderName, reason: String },
    /// A folder to remove still holds messages (or other files).
    #[error("folder {0} is not empty")]
    NotEmpty(FolderName),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    /// No secret to log in with (keyring, password command, OAuth2 token endpoint).
    #[error(transparent)]
    Credentials(#[from] crate::credentials::CredentialError),
}

/// A wait as a person says it: "1 h", "5 min", "30 s".
fn human(wait: std::time::Duration) -> String {
    let secs = wait.as_secs().max(1);
    if secs.is_multiple_of(3600) {
        format!("{} h", secs / 3600)
    } else if secs >= 60 && secs.is_multiple_of(60) {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    }
}

impl StoreError {
    /// How long the server asked to be left alone, when it refused for rationing.
    pub fn rationed(&self) -> Option<std::time::Duration> {
        match self {
            StoreError::Rationed { wait, .. } => Some(*wait),
            _ => None,
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }

    pub fn kind(&self) -> FailureKind {
        match self {
            StoreError::Connect { .. }
            | StoreError::ConnectionLost { .. }
            | StoreError::Timeout { .. }
            | StoreError::Protocol { .. }
            | StoreError::Refused { .. }
            | StoreError::Rationed { .. }
            | StoreError::NoSuchFolder(_)
            | StoreError::NotEmpty(_)
            | StoreError::Io { .. } => FailureKind::Temporary,
            StoreError::Tls { .. }
            | StoreError::Auth { .. }
            | StoreError::Unsupported { .. }
            | StoreError::FolderName { .. }
            | StoreError::Invalid(_) => FailureKind::Permanent,
            StoreError::Credentials(e) if e.is_temporary() => FailureKind::Temporary,
            StoreError::Credentials(_) => FailureKind::Permanent,
        }
    }
}

/// A message copied out of a store into a file, in Unix (LF) line endings, ready to be delivered
/// to the other store.
#[derive(Debug, Clone)]
pub struct Staged {
    pub source_id: MsgId,
    pub path: PathBuf,
    /// The file is a copy the receiving store may move away or delete; otherwise it is the
    /// source store's own file and must be left where it is.
    pub temporary: bool,
    /// INTERNALDATE (IMAP) or file modification time (Maildir), in seconds since the epoch.
    pub internal_date: Option<i64>,
}

/// Where an incremental listing starts: the numbering and HIGHESTMODSEQ (RFC 7162) of the last
/// complete sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Since {
    pub uid_validity: UidValidity,
    pub highest_modseq: u64,
}

/// A folder's listing: every message, or what changed since a [`Since`].
#[derive(Debug, Clone)]
pub enum Listing {
    Full(FolderSnapshot),
    Changes(FolderChanges),
}

pub use crate::model::FolderChanges;

/// What [`Store::sizes_and_dates`] tells of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeAndDate {
    pub id: MsgId,
    pub size: u64,
    /// Seconds since the epoch; `None` when the store does not know it.
    pub date: Option<i64>,
}

/// Flags to add to and remove from one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagUpdate {
    pub id: MsgId,
    pub add: Flags,
    pub remove: Flags,
}

/// Why a folder the state knows is missing from a store's [`Store::list_folders`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Absence {
    /// It is really gone: deleted on that side.
    Gone,
    /// It cannot be looked at (a symbolic link that leads nowhere, a disk that is not mounted,
    /// a directory that cannot be read): it may be whole where it cannot be seen, so it is
    /// neither taken for deleted nor synced. The text says what was found.
    Unavailable(String),
}

/// One side of a sync: a set of folders holding messages.
///
/// Calls that name no folder act on the folder of the last [`Store::scan`].
#[async_trait]
pub trait Store: Send {
    /// Where this store is, for logs and errors (never with a password).
    fn describe(&self) -> String;

    /// Every folder that can hold messages.
    async fn list_folders(&mut self) -> Result<Vec<FolderName>, StoreError>;

    async fn create_folder(&mut self, folder: &FolderName) -> Result<(), StoreError>;

    /// Whether `folder` is there, asked about it alone: a sync of a few folders the last sync
    /// paired need not list every folder (the daemon's wake-ups, on accounts with hundreds of
    /// folders). What a listing would learn of the folder (its change token, its message
    /// count) is kept as a listing keeps it. `None` when the store cannot tell without a
    /// listing; `Some(false)` only says the folder was not found this way, never that it is
    /// gone: the caller then lists.
    async fn look_up_folder(&mut self, _folder: &FolderName) -> Result<Option<bool>, StoreError> {
        Ok(None)
    }

    /// Why `folder`, which [`Store::list_folders`] left out, is missing. A server's listing is
    /// its word (the default); a local tree must tell a deleted folder from one it cannot see.
    async fn absence(&mut self, _folder: &FolderName) -> Absence {
        Absence::Gone
    }

    /// Removes an empty folder; one that holds anything fails with [`StoreError::NotEmpty`]
    /// and stays as it was, and one already gone is fine. Messages are deleted first with
    /// [`Store::delete`], so this never takes mail with it. INBOX is never removed.
    async fn delete_folder(&mut self, folder: &FolderName) -> Result<(), StoreError>;

    /// Opens `folder` and lists every message in it with its flags.
    async fn scan(&mut self, folder: &FolderName) -> Result<FolderSnapshot, StoreError>;

    /// A token that stays the same as long as nothing in `folder` changed, and differs once
    /// anything may have (a message added, removed or reflagged); `None` when the store cannot
    /// tell. Tokens are compared with the one a listing reported (`FolderSnapshot::token`),
    /// which is taken before the listing, so a change during a sync is seen by the next one.
    async fn change_token(&mut self, _folder: &FolderName) -> Result<Option<String>, StoreError> {
        Ok(None)
    }

    /// Whether `folder` is still as it was when `recorded` (a token this store gave, by
    /// [`Store::change_token`] or [`Store::settled_token`]) was recorded: the token to record
    /// from now on, or `None` when it may have changed.
    async fn unchanged_since(
        &mut self,
        folder: &FolderName,
        recorded: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .change_token(folder)
            .await?
            .filter(|token| token == recorded))
    }

    /// The token to record for `folder` at the end of a complete sync that listed it with
    /// token `listed`: by default `listed`, so that the sync's own writes count as a change
    /// next time. A store that can tell the state the sync left from any later change (the
    /// Maildir, by its file names) returns a token for that state, so the next sync need not
    /// read the folder again only because this one wrote to it.
    async fn settled_token(
        &mut self,
        _folder: &FolderName,
        listed: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        Ok(listed.map(str::to_owned))
    }

    /// How many messages `folder` held when the folders were last listed, where the store
    /// learned it for free (LIST-STATUS). Only for scheduling: the biggest folders start first.
    fn message_count_hint(&self, _folder: &FolderName) -> Option<u32> {
        None
    }

    /// Opens `folder` taking `messages` as its listing, without reading it: the caller knows
    /// that nothing changed since that listing was true (the change token is the one recorded
    /// with it). `token` goes into the snapshot. `None` when this store cannot, or the folder
    /// is gone: then it is scanned. A store that adopts a listing must still find each
    /// message's data when asked, and look for it anew when the listing was wrong about it.
    async fn adopt_listing(
        &mut self,
        _folder: &FolderName,
        _messages: Vec<MessageMeta>,
        _token: Option<String>,
    ) -> Result<Option<FolderSnapshot>, StoreError> {
        Ok(None)
    }

    /// Like [`Store::adopt_listing`], but `messages` are only the folder's messages a sync
    /// of the server's changes looks at; every other message is as it was when `token` was
    /// recorded, and stays so unless the sync asks for a change. `None` when this store
    /// cannot (the default): then the folder is listed as usual.
    async fn adopt_changes(
        &mut self,
        _folder: &FolderName,
        _messages: Vec<MessageMeta>,
        _token: Option<String>,
    ) -> Result<Option<FolderSnapshot>, StoreError> {
        Ok(None)
    }

    /// Like [`Store::scan`], but a store that can may answer with only what changed since
    /// `since` (same UIDVALIDITY). Opens the folder like `scan`.
    async fn scan_since(
        &mut self,
        folder: &FolderName,
        _since: Option<Since>,
    ) -> Result<Listing, StoreError> {
        Ok(Listing::Full(self.scan(folder).await?))
    }

    /// Tells the store which messages the next [`Store::stage`] call will ask for, so it can
    /// start fetching them while the caller works on the previous batch. Only a hint: any other
    /// call first settles it.
    async fn prefetch(&mut self, _ids: &[MsgId]) -> Result<(), StoreError> {
        Ok(())
    }

    /// The ids of every message of the open folder, where the store can tell them more cheaply
    /// than by listing their flags (IMAP `UID SEARCH`): what finds expunges a server without
    /// QRESYNC does not report. `None` when it cannot.
    async fn present_ids(&mut self) -> Result<Option<Vec<MsgId>>, StoreError> {
        Ok(None)
    }

    /// The directory a message bound for `folder` of this store should be staged in, so that
    /// delivering it is a rename rather than a copy; `None` when any directory will do.
    fn staging_dir(&self, folder: &FolderName) -> Option<PathBuf>;

    /// The message's id across every folder of the account (Gmail's X-GM-MSGID), as the open
    /// folder's last listing gave it; `None` for stores without one.
    fn global_id(&self, _id: &MsgId) -> Option<u64> {
        None
    }

    /// Asks the server for the global ids of messages of the open folder (new copies, whose
    /// ids no listing gave yet); empty for stores without them.
    async fn fetch_global_ids(&mut self, _ids: &[MsgId]) -> Result<Vec<(MsgId, u64)>, StoreError> {
        Ok(Vec::new())
    }

    /// Folders of the last [`Store::list_folders`] a user does not usually want copied, with
    /// the reason (Gmail's spam and trash, by their special use): left out unless the
    /// account's `folders.include` names them.
    fn left_out_by_default(&self) -> Vec<(FolderName, String)> {
        Vec::new()
    }

    /// The folder that holds every message of the account once (Gmail's All Mail, LIST
    /// `\All`), for stores with [`Store::global_id`]s: synced before the other folders, so
    /// theirs are links to its copies.
    fn global_archive(&self) -> Option<FolderName> {
        None
    }

    /// Stages the copy `id` of another folder of this store, `folder`, last known with `flags`,
    /// for delivery into the open folder without copying its content (a hard link in
    /// `staging`); `None` when the store cannot, or the file is gone. Used for a message the
    /// server has in several folders.
    async fn stage_twin(
        &mut self,
        _folder: &FolderName,
        _id: &MsgId,
        _flags: &Flags,
        _staging: &Path,
    ) -> Result<Option<Staged>, StoreError> {
        Ok(None)
    }

    /// Picks the id the next delivery will get, for stores that choose ids themselves (Maildir),
    /// so the engine can record it durably before the message exists.
    fn reserve_id(&mut self) -> Option<MsgId>;

    /// Whether [`Store::reserve_id`] gives ids. A store that assigns ids itself on delivery
    /// (IMAP) is copied into the way the server is: intent with content, deliver, confirm.
    fn reserves_ids(&self) -> bool;

    /// Size (octets; IMAP RFC822.SIZE, Maildir file size) and date (IMAP INTERNALDATE, Maildir
    /// file modification time; seconds since the epoch) of messages of the open folder, for
    /// `max_size` and `max_age`. Messages that vanished meanwhile are left out.
    async fn sizes_and_dates(&mut self, ids: &[MsgId]) -> Result<Vec<SizeAndDate>, StoreError>;

    /// Copies messages of the open folder to files in `staging`; memory use does not grow with
    /// message size. Messages that vanished meanwhile are left out of the result.
    async fn stage(&mut self, ids: &[MsgId], staging: &Path) -> Result<Vec<Staged>, StoreError>;

    /// Stores a message in the open folder. Returns its id where the store reports it
    /// (a reserved id, or APPENDUID); `None` means the copy exists but its id is unknown.
    /// A store may defer the work to [`Store::flush`]: the copy is only certain to exist once
    /// `flush` returned `Ok`.
    async fn deliver(
        &mut self,
        message: &Staged,
        flags: &Flags,
        reserved: Option<&MsgId>,
    ) -> Result<Option<MsgId>, StoreError>;

    /// Stores several messages in the open folder, as [`Store::deliver`] without reserved ids.
    /// Returns one entry per message delivered, in order, up to the first failure, which is
    /// returned with them.
    async fn deliver_all(
        &mut self,
        messages: &[(&Staged, &Flags)],
    ) -> (Vec<Option<MsgId>>, Option<StoreError>) {
        let mut ids = Vec::with_capacity(messages.len());
        for (message, flags) in messages {
            match self.deliver(message, flags, None).await {
                Ok(id) => ids.push(id),
                Err(e) => return (ids, Some(e)),
            }
        }
        (ids, None)
    }

    /// Which keywords the open folder can hold; a keyword it cannot is left out of what is
    /// delivered and stored there, and [`crate::plan::keep_unheld_keywords`] keeps it in the
    /// state.
    fn keyword_room(&self) -> KeywordRoom {
        KeywordRoom::Any
    }

    /// Keywords the open folder refused to store since it was opened (by the names the
    /// engine sees); the engine keeps them in the state, so the next runs know.
    fn refused_keywords(&self) -> Keywords {
        Keywords::empty()
    }

    /// Completes and makes durable every delivery since the last call.
    async fn flush(&mut self) -> Result<(), StoreError>;

    async fn set_flags(&mut self, updates: &[FlagUpdate]) -> Result<(), StoreError>;

    /// Removes messages from the open folder for good (IMAP: \Deleted + UID EXPUNGE of exactly
    /// these UIDs; never a plain EXPUNGE that would remove other clients' deleted messages).
    async fn delete(&mut self, ids: &[MsgId]) -> Result<(), StoreError>;

    /// Content fingerprints of messages in the open folder (see [`crate::message::fingerprint`]).
    async fn fingerprints(
        &mut self,
        ids: &[MsgId],
    ) -> Result<Vec<(MsgId, Fingerprint)>, StoreError>;

    /// Ends the session politely; errors are of no interest any more.
    async fn close(&mut self);
}
