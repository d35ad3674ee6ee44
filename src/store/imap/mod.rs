//! The IMAP side of a sync: a [`Store`] on an IMAP4rev1 server.
//!
//! Everything that decides what the engine sees goes through raw commands on a guarded session
//! (`session`): a connection that failed once is never trusted again, and a listing is either
//! complete or an error. Modules: `connect` (TCP, TLS, STARTTLS, login), `tls` (trust and
//! pinning), `session` (commands and responses), `fetch` and `digest` (bodies to disk or into
//! fingerprints), `append` (bodies from disk), `names` and `mutf7` (folder names), `uidset`,
//! `date`, `capabilities`, `transport`.

mod append;
mod capabilities;
mod connect;
mod date;
mod digest;
mod fetch;
mod mutf7;
mod names;
pub mod notify_watch;
mod session;
mod tls;
mod transport;
mod uidset;
pub mod watch;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_imap::imap_proto::rfc4315::UidSetMember;
use async_imap::imap_proto::{AttributeValue, MailboxDatum, NameAttribute, Response, ResponseCode};
use async_trait::async_trait;

use crate::config::ImapConfig;
use crate::model::{
    Fingerprint, Flags, FolderName, FolderSnapshot, MessageMeta, MsgId, Uid, UidValidity,
};
use crate::store::{FlagUpdate, SizeAndDate, Staged, Store, StoreError};

pub use capabilities::{Capabilities, LiteralMode};
pub use notify_watch::NotifyWatcher;
pub use tls::format_fingerprint;
pub use watch::{Wake, Watcher};

use session::{Code, Command, Reply, Session, Status};

/// How long LOGOUT may take before the connection is simply dropped.
const LOGOUT_LIMIT: Duration = Duration::from_secs(5);

/// An IMAP account, logged in.
#[derive(Debug)]
pub struct ImapStore {
    session: Session,
    user: String,
    host: String,
    port: u16,
    capabilities: Capabilities,
    delimiter: Option<char>,
    /// Server spelling of the folders seen in the last listing; used before computing one, so
    /// a server's own spelling (say, `Inbox/Sub`) is what gets selected.
    server_names: HashMap<FolderName, String>,
    selected: Option<Selected>,
    /// `readonly = true`: folders are opened with EXAMINE, so not even \Recent changes.
    read_only: bool,
}

/// The folder of the last successful [`Store::scan`].
#[derive(Debug, Clone)]
struct Selected {
    folder: FolderName,
    /// Already quoted for commands.
    quoted: String,
    uid_validity: UidValidity,
}

impl ImapStore {
    /// Connects, secures and logs in as `config` says.
    pub async fn connect(config: &ImapConfig) -> Result<ImapStore, StoreError> {
        let connected = connect::connect(config).await?;
        tracing::info!(
            host = %config.host,
            user = %config.user,
            delimiter = %connected.delimiter.map(String::from).unwrap_or_else(|| "none".into()),
            "logged in"
        );
        Ok(ImapStore {
            session: connected.session,
            user: config.user.clone(),
            host: config.host.clone(),
            port: config.port,
            capabilities: connected.capabilities,
            delimiter: connected.delimiter,
            server_names: HashMap::new(),
            selected: None,
            read_only: false,
        })
    }

    /// Opens folders read-only from now on (EXAMINE instead of SELECT) for a side configured
    /// `readonly = true`; writes are refused above this store anyway.
    pub fn set_read_only(&mut self, read_only: bool) {
        self.read_only = read_only;
    }

    /// What the server announced after login.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// The server's hierarchy delimiter; `None` for a flat server.
    pub fn delimiter(&self) -> Option<char> {
        self.delimiter
    }

    /// Whether the connection is still usable; once `false`, every call fails with
    /// [`StoreError::ConnectionLost`] and a new [`ImapStore`] is needed.
    pub fn is_alive(&self) -> bool {
        self.session.is_alive()
    }

    fn server_name(&self, folder: &FolderName) -> Result<String, StoreError> {
        if let Some(name) = self.server_names.get(folder) {
            return Ok(name.clone());
        }
        names::to_server_name(folder, self.delimiter).map_err(StoreError::Invalid)
    }

    fn quoted_name(&self, folder: &FolderName) -> Result<String, StoreError> {
        let server = self.server_name(folder)?;
        // Modified UTF-7 is printable ASCII, so a quoted string always does.
        names::quoted(&server)
            .ok_or_else(|| StoreError::Invalid(format!("folder {folder} has no IMAP spelling")))
    }

    fn selected(&self) -> Result<&Selected, StoreError> {
        self.selected
            .as_ref()
            .ok_or_else(|| StoreError::Invalid("no IMAP folder is open; scan one first".to_owned()))
    }

    fn uids(ids: &[MsgId]) -> Result<Vec<Uid>, StoreError> {
        ids.iter()
            .map(|id| {
                id.uid()
                    .ok_or_else(|| StoreError::Invalid(format!("{id} is not an IMAP UID")))
            })
            .collect()
    }

    fn protocol(&self, command: &str, detail: impl Into<String>) -> StoreError {
        StoreError::Protocol {
            host: self.host.clone(),
            command: command.to_owned(),
            detail: detail.into(),
        }
    }

    /// SELECT (with CONDSTORE where offered, RFC 7162 §3.1.8), returning UIDVALIDITY, EXISTS,
    /// UIDNEXT and HIGHESTMODSEQ. EXAMINE would not do, as the folder is written to afterwards,
    /// except on a read-only side.
    async fn select(&mut self, folder: &FolderName) -> Result<SelectInfo, StoreError> {
        self.selected = None;
        let quoted = self.quoted_name(folder)?;
        let verb = if self.read_only { "EXAMINE" } else { "SELECT" };
        let mut command = Command::new(verb).text(format!(" {quoted}"));
        if self.capabilities.condstore() {
            command = command.text(" (CONDSTORE)");
        }
        let tag = self.session.send(&command).await?;
        let mut info = SelectInfo::default();
        let done = loop {
            match self.session.recv_for(&tag).await? {
                Reply::Data(response) => match response.parsed() {
                    Response::MailboxData(MailboxDatum::Exists(n)) => info.exists = Some(*n),
                    Response::Data { outcome, .. } => match &outcome.code {
                        Some(ResponseCode::UidValidity(v)) => info.uid_validity = Some(*v),
                        Some(ResponseCode::UidNext(n)) => info.uid_next = Some(*n),
                        Some(ResponseCode::HighestModSeq(m)) => info.highest_modseq = Some(*m),
                        _ => {}
                    },
                    _ => {}
                },
                Reply::Done(done) => break done,
            }
        };
        if done.status != Status::Ok {
            // RFC 5530 [NONEXISTENT]; older servers only say so in words.
            let text = done.detail().to_ascii_lowercase();
            if text.contains("nonexistent")
                || text.contains("doesn't exist")
                || text.contains("does not exist")
            {
                return Err(StoreError::NoSuchFolder(folder.clone()));
            }
            self.session.check(done, "SELECT")?;
        }
        let uid_validity = info
            .uid_validity
            .and_then(UidValidity::new)
            .ok_or_else(|| self.protocol("SELECT", "no valid UIDVALIDITY in the answer"))?;
        let exists = info
            .exists
            .ok_or_else(|| self.protocol("SELECT", "no EXISTS in the answer"))?;
        self.selected = Some(Selected {
            folder: folder.clone(),
            quoted,
            uid_validity,
        });
        Ok(SelectInfo {
            exists: Some(exists),
            ..info
        })
    }

    /// `UID FETCH 1:* (UID FLAGS)`: every message with its flags, and the message count the
    /// server reported meanwhile (EXISTS and EXPUNGE may arrive during a UID command, RFC 3501
    /// §7.4.1).
    async fn fetch_flags(
        &mut self,
        mut exists: u32,
    ) -> Result<(BTreeMap<Uid, Flags>, u32), StoreError> {
        let command = Command::new("UID FETCH").text(" 1:* (UID FLAGS)");
        let tag = self.session.send(&command).await?;
        let mut messages = BTreeMap::new();
        loop {
            match self.session.recv_for(&tag).await? {
                Reply::Data(response) => match response.parsed() {
                    Response::Fetch(_, attributes) => {
                        let mut uid = None;
                        let mut flags = None;
                        for attribute in attributes {
                            match attribute {
                                AttributeValue::Uid(u) => uid = Uid::new(*u),
                                AttributeValue::Flags(f) => {
                                    flags = Some(Flags::from_imap(f.iter().map(|f| f.as_ref())))
                                }
                                _ => {}
                            }
                        }
                        // A FETCH without both (say, an unsolicited MODSEQ change) says
                        // nothing about the listing.
                        if let (Some(uid), Some(flags)) = (uid, flags) {
                            messages.insert(uid, flags);
                        }
                    }
                    Response::MailboxData(MailboxDatum::Exists(n)) => exists = *n,
                    Response::Expunge(_) => exists = exists.saturating_sub(1),
                    _ => {}
                },
                Reply::Done(done) => {
                    self.session.check(done, "UID FETCH")?;
                    return Ok((messages, exists));
                }
            }
        }
    }

    /// Sends `UID STORE <set> <action> (<flags>)` for every batch of `uids`.
    async fn store_flags(
        &mut self,
        uids: &[Uid],
        action: &str,
        flags: Flags,
    ) -> Result<(), StoreError> {
        for (set, _) in uidset::batches(uids, uidset::MAX_SET_LEN) {
            let command =
                Command::new("UID STORE").text(format!(" {set} {action} ({})", flags.imap_list()));
            self.session.run(&command).await?;
        }
        Ok(())
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct SelectInfo {
    exists: Option<u32>,
    uid_validity: Option<u32>,
    uid_next: Option<u32>,
    highest_modseq: Option<u64>,
}

#[async_trait]
impl Store for ImapStore {
    fn describe(&self) -> String {
        format!(
            "imap://{}@{}",
            self.user,
            connect::address(&self.host, self.port)
        )
    }

    async fn list_folders(&mut self) -> Result<Vec<FolderName>, StoreError> {
        let tag = self
            .session
            .send(&Command::new("LIST").text(" \"\" \"*\""))
            .await?;
        let mut found: BTreeMap<FolderName, String> = BTreeMap::new();
        loop {
            match self.session.recv_for(&tag).await? {
                Reply::Data(response) => {
                    let Response::MailboxData(MailboxDatum::List(list)) = response.parsed() else {
                        continue;
                    };
                    let unselectable = list.name_attributes.iter().any(|a| match a {
                        NameAttribute::NoSelect => true,
                        // RFC 5258 §3: \NonExistent implies \Noselect.
                        NameAttribute::Extension(name) => {
                            name.eq_ignore_ascii_case("\\NonExistent")
                        }
                        _ => false,
                    });
                    if unselectable {
                        continue;
                    }
                    // Each LIST response carries its own delimiter (RFC 3501 §7.2.2).
                    let delimiter = match &list.delimiter {
                        Some(d) => d.chars().next(),
                        None => None,
                    };
                    match names::to_folder_name(&list.name, delimiter) {
                        Ok(folder) => {
                            found.insert(folder, list.name.to_string());
                        }
                        Err(why) => tracing::warn!(
                            host = %self.host,
                            "skipping server folder {:?}: {why}",
                            list.name
                        ),
                    }
                }
                Reply::Done(done) => {
                    self.session.check(done, "LIST")?;
                    break;
                }
            }
        }
        self.server_names = found.clone().into_iter().collect();
        Ok(found.into_keys().collect())
    }

    async fn create_folder(&mut self, folder: &FolderName) -> Result<(), StoreError> {
        let server = self.server_name(folder)?;
        let quoted = self.quoted_name(folder)?;
        let done = self
            .session
            .run_unchecked(&Command::new("CREATE").text(format!(" {quoted}")))
            .await?;
        if done.status != Status::Ok {
            // RFC 5530 [ALREADYEXISTS]; older servers only say so in words. Someone else
            // creating it first is as good as creating it.
            let text = done.detail().to_ascii_lowercase();
            if !(text.contains("alreadyexists") || text.contains("already exists")) {
                self.session.check(done, "CREATE")?;
            }
        }
        self.server_names.insert(folder.clone(), server);
        Ok(())
    }

    async fn scan(&mut self, folder: &FolderName) -> Result<FolderSnapshot, StoreError> {
        let info = self.select(folder).await?;
        let exists = info.exists.unwrap_or(0);
        let mut messages = BTreeMap::new();
        if exists > 0 {
            // The count the listing must match. A message arriving or expunged during the
            // FETCH can make one listing disagree; a second one then sees a settled folder.
            // Never is a listing that disagrees returned: the engine would take the missing
            // messages for deleted ones.
            let mut attempt = 0;
            let mut expected = exists;
            loop {
                let (listed, count) = self.fetch_flags(expected).await?;
                if listed.len() == count as usize {
                    messages = listed;
                    break;
                }
                attempt += 1;
                if attempt >= 2 {
                    return Err(self.protocol(
                        "UID FETCH",
                        format!(
                            "{} messages listed in {folder}, but the folder holds {count}",
                            listed.len()
                        ),
                    ));
                }
                tracing::debug!(%folder, "listing had {} of {count} messages; listing again", listed.len());
                expected = count;
            }
        }
        // A message that arrived during the listing may be in it with a UID at or past the
        // UIDNEXT reported before.
        let past_last = messages
            .keys()
            .next_back()
            .map(|u| u.get().saturating_add(1));
        let uid_next = match (info.uid_next, past_last) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let uid_validity = self.selected()?.uid_validity;
        Ok(FolderSnapshot {
            uid_validity: Some(uid_validity),
            uid_next,
            highest_modseq: info.highest_modseq,
            messages: messages
                .into_iter()
                .map(|(uid, flags)| MessageMeta {
                    id: MsgId::from_uid(uid),
                    flags,
                })
                .collect(),
        })
    }

    fn staging_dir(&self, _folder: &FolderName) -> Option<PathBuf> {
        None
    }

    fn reserve_id(&mut self) -> Option<MsgId> {
        None
    }

    fn reserves_ids(&self) -> bool {
        false
    }

    async fn sizes_and_dates(&mut self, ids: &[MsgId]) -> Result<Vec<SizeAndDate>, StoreError> {
        self.selected()?;
        let uids = Self::uids(ids)?;
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let metas = fetch::fetch_meta(&mut self.session, &uids).await?;
        Ok(metas
            .into_iter()
            .map(|(uid, meta)| SizeAndDate {
                id: MsgId::from_uid(uid),
                size: u64::from(meta.size),
                date: meta.internal_date,
            })
            .collect())
    }

    async fn stage(&mut self, ids: &[MsgId], staging: &Path) -> Result<Vec<Staged>, StoreError> {
        self.selected()?;
        let uids = Self::uids(ids)?;
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        // Into a Maildir's tmp/ normally; the scratch directory (made here when missing) when
        // the messages go to another server.
        tokio::fs::create_dir_all(staging)
            .await
            .map_err(|e| StoreError::io(staging, e))?;
        let metas = fetch::fetch_meta(&mut self.session, &uids).await?;
        let mut collector = fetch::Collector::Stage {
            dir: staging,
            staged: Vec::new(),
        };
        match fetch::fetch_bodies(&mut self.session, &metas, &mut collector).await {
            Ok(()) => match collector {
                fetch::Collector::Stage { staged, .. } => Ok(staged),
                fetch::Collector::Fingerprint { .. } => Ok(Vec::new()),
            },
            Err(e) => {
                collector.discard().await;
                Err(e)
            }
        }
    }

    async fn deliver(
        &mut self,
        message: &Staged,
        flags: Flags,
        _reserved: Option<&MsgId>,
    ) -> Result<Option<MsgId>, StoreError> {
        let selected = self.selected()?.clone();
        let done = append::append(&mut self.session, &selected.quoted, message, flags).await?;
        if message.temporary
            && let Err(e) = tokio::fs::remove_file(&message.path).await
        {
            tracing::warn!(
                "cannot remove staged file {} after delivery: {e}",
                message.path.display()
            );
        }
        let id = match &done.code {
            Some(Code::AppendUid { uid_validity, uids })
                if *uid_validity == selected.uid_validity.get() =>
            {
                match uids.as_slice() {
                    [UidSetMember::Uid(uid)] => Uid::new(*uid).map(MsgId::from_uid),
                    _ => None,
                }
            }
            // Appended, but with another UIDVALIDITY (the folder was recreated meanwhile)
            // the UID would name a message in the wrong generation of the folder.
            Some(Code::AppendUid { uid_validity, .. }) => {
                tracing::warn!(
                    folder = %selected.folder,
                    "APPENDUID names UIDVALIDITY {uid_validity}, the folder was opened with {}",
                    selected.uid_validity
                );
                None
            }
            _ => None,
        };
        Ok(id)
    }

    async fn flush(&mut self) -> Result<(), StoreError> {
        // The server's tagged OK to APPEND means the message is stored (RFC 3501 §6.3.11).
        Ok(())
    }

    async fn set_flags(&mut self, updates: &[FlagUpdate]) -> Result<(), StoreError> {
        self.selected()?;
        // One command per distinct change instead of one per message.
        let mut groups: BTreeMap<(u8, u8), Vec<Uid>> = BTreeMap::new();
        for update in updates {
            let uid = update
                .id
                .uid()
                .ok_or_else(|| StoreError::Invalid(format!("{} is not an IMAP UID", update.id)))?;
            groups
                .entry((update.add.bits(), update.remove.bits()))
                .or_default()
                .push(uid);
        }
        for ((add, remove), uids) in groups {
            let add = Flags::from_bits(add).unwrap_or_default();
            let remove = Flags::from_bits(remove).unwrap_or_default();
            if !add.is_empty() {
                self.store_flags(&uids, "+FLAGS.SILENT", add).await?;
            }
            if !remove.is_empty() {
                self.store_flags(&uids, "-FLAGS.SILENT", remove).await?;
            }
        }
        Ok(())
    }

    async fn delete(&mut self, ids: &[MsgId]) -> Result<(), StoreError> {
        let folder = self.selected()?.folder.clone();
        let uids = Self::uids(ids)?;
        if uids.is_empty() {
            return Ok(());
        }
        self.store_flags(&uids, "+FLAGS.SILENT", Flags::DELETED)
            .await?;
        if self.capabilities.uidplus() {
            // RFC 4315 §2.1: removes exactly these, not other clients' \Deleted messages.
            for (set, _) in uidset::batches(&uids, uidset::MAX_SET_LEN) {
                self.session
                    .run(&Command::new("UID EXPUNGE").text(format!(" {set}")))
                    .await?;
            }
        } else {
            tracing::info!(
                host = %self.host,
                %folder,
                "the server lacks UIDPLUS: {} messages are only marked \\Deleted, not expunged",
                uids.len()
            );
        }
        Ok(())
    }

    async fn fingerprints(
        &mut self,
        ids: &[MsgId],
    ) -> Result<Vec<(MsgId, Fingerprint)>, StoreError> {
        self.selected()?;
        let uids = Self::uids(ids)?;
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let metas = fetch::fetch_meta(&mut self.session, &uids).await?;
        let mut collector = fetch::Collector::Fingerprint { prints: Vec::new() };
        fetch::fetch_bodies(&mut self.session, &metas, &mut collector).await?;
        match collector {
            fetch::Collector::Fingerprint { prints } => Ok(prints),
            fetch::Collector::Stage { .. } => Ok(Vec::new()),
        }
    }

    async fn close(&mut self) {
        self.session.logout(LOGOUT_LIMIT).await;
        self.selected = None;
    }
}
