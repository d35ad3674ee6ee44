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
mod gmail;
mod idle;
mod labels;
mod mutf7;
mod names;
pub mod notify_watch;
mod session;
mod tls;
mod transport;
mod uidset;
pub mod watch;
mod x509;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_imap::imap_proto::rfc4315::UidSetMember;
use async_imap::imap_proto::{
    AttributeValue, MailboxDatum, NameAttribute, Response, ResponseCode, StatusAttribute,
};
use async_trait::async_trait;

use crate::config::ImapConfig;
use crate::model::{
    Fingerprint, Flags, FolderName, FolderSnapshot, Keyword, KeywordRoom, KeywordRule, Keywords,
    MessageMeta, MsgId, Uid, UidValidity,
};
use crate::store::{
    FlagUpdate, FolderChanges, Listing, Since, SizeAndDate, Staged, Store, StoreError,
};

pub use capabilities::{Capabilities, LiteralMode};
pub use notify_watch::NotifyWatcher;
pub use tls::format_fingerprint;
pub use watch::{Wake, Watcher};

use session::{Code, Command, Done, Reply, Session, Status};

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
    /// QRESYNC (RFC 7162) is enabled on this session: SELECT reports expunges as VANISHED.
    qresync: bool,
    /// Change tokens from the last listing's LIST-STATUS (RFC 5819), each used once, so the
    /// folders of one sync pass cost no STATUS round trip of their own.
    listed_tokens: HashMap<FolderName, String>,
    /// Message counts from the same LIST-STATUS, to start the biggest folders first.
    listed_sizes: HashMap<FolderName, u32>,
    /// Body fetches sent ahead by [`Store::prefetch`], not yet read.
    prefetched: Option<fetch::InFlight>,
    /// `readonly = true`: folders are opened with EXAMINE, so not even \Recent changes.
    read_only: bool,
    /// Which keywords are synced and, on a local side, their names here.
    keywords: KeywordRule,
    /// Keywords already reported as refused, per folder: said once, not at every sync.
    refused_keywords: HashSet<(FolderName, Keyword)>,
    /// Gmail's extensions (X-GM-EXT-1) are used: listings also fetch X-GM-MSGID.
    gmail: bool,
    /// X-GM-MSGID of the selected folder's messages, as its listings gave them.
    global_ids: HashMap<Uid, u64>,
    /// The folder LIST marked `\All` (Gmail's All Mail), in Gmail mode.
    all_mail: Option<FolderName>,
    /// Gmail's spam and trash (LIST `\Junk`, `\Trash`), in Gmail mode.
    left_out: Vec<(FolderName, String)>,
}

/// The folder of the last successful [`Store::scan`].
#[derive(Debug, Clone)]
struct Selected {
    folder: FolderName,
    /// Already quoted for commands.
    quoted: String,
    uid_validity: UidValidity,
    /// What PERMANENTFLAGS (RFC 3501 §7.1) allows.
    room: KeywordRoom,
    /// Keywords the server refused to store here since the folder was opened, in its names.
    refused: Keywords,
}

impl ImapStore {
    /// Connects, secures and logs in as `config` says.
    pub async fn connect(config: &ImapConfig) -> Result<ImapStore, StoreError> {
        let connected = connect::connect(config).await?;
        let offered = connected.capabilities.has("X-GM-EXT-1");
        if config.gmail == Some(true) && !offered {
            tracing::warn!(
                host = %config.host,
                "gmail = true, but the server does not offer Gmail's extensions (X-GM-EXT-1); \
                 each folder's messages are copied on their own"
            );
        }
        let gmail = offered && config.gmail != Some(false);
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
            qresync: connected.qresync,
            listed_tokens: HashMap::new(),
            listed_sizes: HashMap::new(),
            prefetched: None,
            read_only: false,
            keywords: config.keywords.clone(),
            refused_keywords: HashSet::new(),
            gmail,
            global_ids: HashMap::new(),
            all_mail: None,
            left_out: Vec::new(),
        })
    }

    /// Reads (and throws away) the answers to body fetches sent ahead and never asked for, so
    /// the next command's responses are not mixed with them.
    async fn settle_prefetch(&mut self) -> Result<(), StoreError> {
        if let Some(in_flight) = self.prefetched.take() {
            fetch::discard(&mut self.session, in_flight).await?;
        }
        Ok(())
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
    /// With `qresync` (QRESYNC enabled), the server also reports what changed since then: FETCH
    /// for new and reflagged messages and VANISHED (EARLIER) for expunged ones (§3.2.5).
    async fn select(
        &mut self,
        folder: &FolderName,
        qresync: Option<Since>,
    ) -> Result<SelectInfo, StoreError> {
        self.settle_prefetch().await?;
        self.selected = None;
        self.global_ids.clear();
        let quoted = self.quoted_name(folder)?;
        let verb = if self.read_only { "EXAMINE" } else { "SELECT" };
        let mut command = Command::new(verb).text(format!(" {quoted}"));
        if let Some(since) = qresync {
            command = command.text(format!(
                " (QRESYNC ({} {}))",
                since.uid_validity.get(),
                since.highest_modseq
            ));
        } else if self.capabilities.condstore() {
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
                        Some(ResponseCode::PermanentFlags(flags)) => {
                            info.room = Some(room(flags.iter().map(|f| f.as_ref())));
                        }
                        _ => {}
                    },
                    Response::Vanished { uids, .. } => {
                        info.vanished
                            .extend(uids.iter().flat_map(|r| r.clone()).filter_map(Uid::new));
                    }
                    Response::Fetch(_, attributes) => {
                        if let Some((uid, flags)) = uid_and_flags(attributes, &self.keywords) {
                            info.changed.insert(uid, flags);
                        }
                    }
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
            // No PERMANENTFLAGS: all flags can be changed permanently (RFC 3501 §7.1).
            room: info.room.clone().unwrap_or_default(),
            refused: Keywords::empty(),
        });
        Ok(SelectInfo {
            exists: Some(exists),
            ..info
        })
    }

    /// Every message of the folder just selected, with its flags.
    async fn list_selected(
        &mut self,
        folder: &FolderName,
        info: &SelectInfo,
    ) -> Result<FolderSnapshot, StoreError> {
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
                let (listed, count) = self.fetch_flags(expected, None).await?;
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
        let uid_validity = self.selected()?.uid_validity;
        Ok(FolderSnapshot {
            uid_validity: Some(uid_validity),
            uid_next: uid_next_after(info.uid_next, messages.keys().next_back().copied()),
            highest_modseq: info.highest_modseq,
            token: info.token(uid_validity),
            messages: messages
                .into_iter()
                .map(|(uid, flags)| MessageMeta {
                    id: MsgId::from_uid(uid),
                    flags,
                })
                .collect(),
        })
    }

    /// `STATUS` of one folder as a change token; `None` without CONDSTORE (flag changes would
    /// not show) and for the selected folder (RFC 3501 §6.3.10: its STATUS may be stale).
    async fn status_token(&mut self, folder: &FolderName) -> Result<Option<String>, StoreError> {
        if !self.capabilities.condstore()
            || self.selected.as_ref().is_some_and(|s| &s.folder == folder)
        {
            return Ok(None);
        }
        // A folder that cannot be asked about is simply listed.
        Ok(self.status(folder).await?.and_then(|s| s.token))
    }

    /// `folder`'s STATUS: its change token (with CONDSTORE) and message count; `None` when
    /// the server refuses to answer (no such folder, or one that holds no mail).
    async fn status(&mut self, folder: &FolderName) -> Result<Option<FolderStatus>, StoreError> {
        self.settle_prefetch().await?;
        let items = if self.capabilities.condstore() {
            "UIDVALIDITY UIDNEXT MESSAGES HIGHESTMODSEQ"
        } else {
            "MESSAGES"
        };
        let quoted = self.quoted_name(folder)?;
        let tag = self
            .session
            .send(&Command::new("STATUS").text(format!(" {quoted} ({items})")))
            .await?;
        let mut answer = FolderStatus::default();
        loop {
            match self.session.recv_for(&tag).await? {
                Reply::Data(response) => {
                    if let Response::MailboxData(MailboxDatum::Status { status, .. }) =
                        response.parsed()
                    {
                        answer.token = status_token(status);
                        answer.messages = status.iter().find_map(|a| match a {
                            StatusAttribute::Messages(n) => Some(*n),
                            _ => None,
                        });
                    }
                }
                Reply::Done(done) if done.status != Status::Ok => return Ok(None),
                Reply::Done(_) => return Ok(Some(answer)),
            }
        }
    }

    /// `UID FETCH 1:* (UID FLAGS)`: every message with its flags (or with `changed_since`,
    /// only those whose MODSEQ is higher, RFC 7162 §3.1.4), and the message count the server
    /// reported meanwhile (EXISTS and EXPUNGE may arrive during a UID command, RFC 3501 §7.4.1).
    async fn fetch_flags(
        &mut self,
        mut exists: u32,
        changed_since: Option<u64>,
    ) -> Result<(BTreeMap<Uid, Flags>, u32), StoreError> {
        let labels = self.labels_here();
        let items = if labels {
            " 1:* (UID FLAGS X-GM-MSGID X-GM-LABELS)"
        } else if self.gmail {
            " 1:* (UID FLAGS X-GM-MSGID)"
        } else {
            " 1:* (UID FLAGS)"
        };
        let mut command = Command::new("UID FETCH").text(items);
        if let Some(modseq) = changed_since {
            command = command.text(format!(" (CHANGEDSINCE {modseq})"));
        }
        let tag = self.session.send(&command).await?;
        let mut messages = BTreeMap::new();
        loop {
            match self.session.recv_for(&tag).await? {
                Reply::Data(response) => match response.parsed() {
                    Response::Fetch(_, attributes) => {
                        // A FETCH without both (say, an unsolicited MODSEQ change) says
                        // nothing about the listing.
                        if let Some((uid, flags)) = uid_and_flags(attributes, &self.keywords) {
                            let flags = if labels {
                                self.with_labels(flags, attributes)
                            } else {
                                flags
                            };
                            messages.insert(uid, flags);
                            if let Some(id) = gmail::message_id(attributes) {
                                self.global_ids.insert(uid, id);
                            }
                        }
                    }
                    Response::MailboxData(MailboxDatum::Exists(n)) => exists = *n,
                    Response::Expunge(_) => exists = exists.saturating_sub(1),
                    Response::Vanished {
                        earlier: false,
                        uids,
                    } => {
                        let gone: usize = uids.iter().map(|r| r.clone().count()).sum();
                        exists = exists.saturating_sub(u32::try_from(gone).unwrap_or(u32::MAX));
                    }
                    _ => {}
                },
                Reply::Done(done) => {
                    self.session.check(done, "UID FETCH")?;
                    return Ok((messages, exists));
                }
            }
        }
    }

    /// `STATUS <folder> (MESSAGES)`; `None` when the folder does not exist.
    async fn message_count(
        &mut self,
        folder: &FolderName,
        quoted: &str,
    ) -> Result<Option<u32>, StoreError> {
        let tag = self
            .session
            .send(&Command::new("STATUS").text(format!(" {quoted} (MESSAGES)")))
            .await?;
        let mut messages = None;
        loop {
            match self.session.recv_for(&tag).await? {
                Reply::Data(response) => {
                    if let Response::MailboxData(MailboxDatum::Status { status, .. }) =
                        response.parsed()
                    {
                        for attribute in status {
                            if let StatusAttribute::Messages(n) = attribute {
                                messages = Some(*n);
                            }
                        }
                    }
                }
                Reply::Done(done) => {
                    if done.status != Status::Ok {
                        let text = done.detail().to_ascii_lowercase();
                        if text.contains("nonexistent") || text.contains("does not exist") {
                            return Ok(None);
                        }
                        self.session.check(done, "STATUS")?;
                    }
                    break;
                }
            }
        }
        messages
            .map(Some)
            .ok_or_else(|| self.protocol("STATUS", format!("no MESSAGES count for {folder}")))
    }

    /// `flags` as this server is to store them: keywords in its names, and only those the
    /// open folder can hold. One it cannot is reported once per folder and left out; the
    /// state keeps it (see [`Store::keyword_room`]).
    fn storable(&mut self, flags: &Flags) -> Flags {
        let flags = self.keywords.to_local(flags);
        let Some(selected) = &self.selected else {
            return flags;
        };
        let fitted = selected.room.clone().without(&selected.refused).fit(&flags);
        let left_out = flags.keywords().minus(fitted.keywords());
        warn_refused(
            &mut self.refused_keywords,
            &self.host,
            &selected.folder,
            &left_out,
            "does not let keyword {} be stored in this folder (no \\* in PERMANENTFLAGS)",
        );
        fitted
    }

    /// Stores each of `keywords` on its own on `uids`; one the server refuses is noted as
    /// refused in the open folder (see [`Store::refused_keywords`]).
    async fn store_each_keyword(
        &mut self,
        uids: &[Uid],
        keywords: &Keywords,
    ) -> Result<(), StoreError> {
        for keyword in keywords.iter() {
            let mut refused = false;
            for (set, _) in uidset::batches(uids, uidset::MAX_SET_LEN) {
                let command =
                    Command::new("UID STORE").text(format!(" {set} +FLAGS.SILENT ({keyword})"));
                let done = self.session.run_unchecked(&command).await?;
                refused |= done.status != Status::Ok;
            }
            if refused {
                self.refuse(&[keyword.clone()].into_iter().collect());
            }
        }
        Ok(())
    }

    /// Notes keywords (in this server's names) as refused in the open folder, warning once.
    fn refuse(&mut self, keywords: &Keywords) {
        let Some(selected) = self.selected.as_mut() else {
            return;
        };
        selected.refused = selected.refused.union(keywords);
        warn_refused(
            &mut self.refused_keywords,
            &self.host,
            &selected.folder,
            keywords,
            "refused to store keyword {} in this folder",
        );
    }

    /// Keywords in this server's names as the engine names them (a local side may rename).
    fn engine_names(&self, keywords: &Keywords) -> Keywords {
        self.keywords
            .to_server(Flags::empty().with_keywords(keywords.clone()))
            .keywords()
            .clone()
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

impl ImapStore {
    /// Whether `folder` is the one whose messages carry Gmail's labels as keywords: the `\All`
    /// folder, in Gmail mode (see `labels`).
    fn is_labels_folder(&self, folder: &FolderName) -> bool {
        self.gmail && self.all_mail.as_ref() == Some(folder)
    }

    /// Whether the open folder is the labels' folder.
    fn labels_here(&self) -> bool {
        self.selected
            .as_ref()
            .is_some_and(|s| self.is_labels_folder(&s.folder))
    }

    /// `flags` with the message's labels (X-GM-LABELS in `attributes`) as keywords, as far
    /// as the keywords' rule syncs them.
    fn with_labels(&self, flags: Flags, attributes: &[AttributeValue<'_>]) -> Flags {
        let Some(found) = gmail::labels(attributes) else {
            return flags;
        };
        let keywords = flags
            .keywords()
            .union(&found.iter().filter_map(|l| labels::to_keyword(l)).collect());
        self.keywords.to_server(flags.with_keywords(keywords))
    }

    /// `flags` without the keywords that stand for labels in the open folder, and those
    /// labels (sorted); in any other folder, `flags` and none.
    fn split_labels(&self, flags: &Flags) -> (Flags, Vec<String>) {
        if !self.labels_here() {
            return (flags.clone(), Vec::new());
        }
        let mut found = Vec::new();
        let mut kept = Vec::new();
        for keyword in flags.keywords().iter() {
            match labels::to_label(keyword) {
                Some(label) => found.push(label),
                None => kept.push(keyword.clone()),
            }
        }
        found.sort();
        let rest = flags
            .without_keywords()
            .with_keywords(kept.into_iter().collect());
        (rest, found)
    }

    /// `UID STORE <set> +X-GM-LABELS (...)` (or `-`) for every batch of `uids`. Labels the
    /// server refuses count as refused keywords of the folder: kept here, said once, not
    /// retried at every sync.
    async fn store_labels(
        &mut self,
        uids: &[Uid],
        sign: char,
        names: &[String],
    ) -> Result<(), StoreError> {
        if names.is_empty() || uids.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = names.iter().map(|l| labels::quoted(l)).collect();
        let mut refused = false;
        for (set, _) in uidset::batches(uids, uidset::MAX_SET_LEN) {
            let command = Command::new("UID STORE")
                .text(format!(" {set} {sign}X-GM-LABELS ({})", list.join(" ")));
            let done = self.session.run_unchecked(&command).await?;
            refused |= done.status != Status::Ok;
        }
        if refused {
            self.refuse(&label_keywords(names));
        }
        Ok(())
    }

    async fn deliver_each(
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
}

/// The keywords that stand for `names` (labels).
fn label_keywords(names: &[String]) -> Keywords {
    names.iter().filter_map(|l| labels::to_keyword(l)).collect()
}

/// The UIDs an APPEND of `count` messages got (RFC 4315 APPENDUID, in the order appended);
/// `None` each where the server did not say, or said it for another generation of the folder
/// (the folder was recreated meanwhile: the UIDs would name the wrong messages).
fn appended_uids(done: &Done, selected: &Selected, count: usize) -> Vec<Option<MsgId>> {
    let unknown = vec![None; count];
    let Some(Code::AppendUid { uid_validity, uids }) = &done.code else {
        return unknown;
    };
    if *uid_validity != selected.uid_validity.get() {
        tracing::warn!(
            folder = %selected.folder,
            "APPENDUID names UIDVALIDITY {uid_validity}, the folder was opened with {}",
            selected.uid_validity
        );
        return unknown;
    }
    let mut listed = Vec::new();
    for member in uids {
        match member {
            UidSetMember::Uid(uid) => listed.push(*uid),
            UidSetMember::UidRange(range) => {
                // More UIDs than messages is a broken answer; do not expand it without bound.
                if range.clone().count() > count {
                    return unknown;
                }
                listed.extend(range.clone());
            }
        }
    }
    if listed.len() != count {
        return unknown;
    }
    listed
        .into_iter()
        .map(|uid| Uid::new(uid).map(MsgId::from_uid))
        .collect()
}

#[derive(Debug, Default, Clone)]
struct SelectInfo {
    exists: Option<u32>,
    uid_validity: Option<u32>,
    uid_next: Option<u32>,
    highest_modseq: Option<u64>,
    /// QRESYNC only: messages changed since the given MODSEQ, and expunged ones.
    changed: BTreeMap<Uid, Flags>,
    vanished: Vec<Uid>,
    /// From PERMANENTFLAGS, when the server sent it.
    room: Option<KeywordRoom>,
}

impl SelectInfo {
    /// The same token STATUS gives (see [`token`]).
    fn token(&self, uid_validity: UidValidity) -> Option<String> {
        Some(token(
            uid_validity.get(),
            self.uid_next?,
            self.exists?,
            self.highest_modseq?,
        ))
    }
}

/// A folder's change token: equal as long as no message was added, expunged or reflagged
/// (HIGHESTMODSEQ rises with every change, RFC 7162 §3.1.1; MESSAGES and UIDNEXT guard
/// servers that do not count expunges as changes).
fn token(uid_validity: u32, uid_next: u32, messages: u32, highest_modseq: u64) -> String {
    format!("{uid_validity}.{uid_next}.{messages}.{highest_modseq}")
}

fn status_token(status: &[StatusAttribute]) -> Option<String> {
    let (mut uv, mut next, mut messages, mut modseq) = (None, None, None, None);
    for attribute in status {
        match attribute {
            StatusAttribute::UidValidity(v) => uv = Some(*v),
            StatusAttribute::UidNext(n) => next = Some(*n),
            StatusAttribute::Messages(n) => messages = Some(*n),
            StatusAttribute::HighestModSeq(m) => modseq = Some(*m),
            // Unknown to the token; the enum is not exhaustive.
            _ => {}
        }
    }
    // HIGHESTMODSEQ 0: the folder has no MODSEQs (RFC 7162 §3.1.2.1); nothing to go by.
    Some(token(uv?, next?, messages?, modseq.filter(|m| *m > 0)?))
}

/// The UID and flags of a FETCH response, with the keywords `rule` syncs in the server's names.
fn uid_and_flags(attributes: &[AttributeValue<'_>], rule: &KeywordRule) -> Option<(Uid, Flags)> {
    let mut uid = None;
    let mut flags = None;
    for attribute in attributes {
        match attribute {
            AttributeValue::Uid(u) => uid = Uid::new(*u),
            AttributeValue::Flags(f) => {
                flags = Some(rule.to_server(Flags::from_imap(f.iter().map(|f| f.as_ref()))))
            }
            _ => {}
        }
    }
    Some((uid?, flags?))
}

/// Says once per folder and keyword that the server will not store it; `what` names the
/// keyword with `{}`.
fn warn_refused(
    warned: &mut HashSet<(FolderName, Keyword)>,
    host: &str,
    folder: &FolderName,
    keywords: &Keywords,
    what: &str,
) {
    for keyword in keywords.iter() {
        if warned.insert((folder.clone(), keyword.clone())) {
            let what = what.replacen("{}", keyword.as_str(), 1);
            tracing::warn!(
                host = %host,
                folder = %folder,
                "the server {what}; it stays on the other side and in the state"
            );
        }
    }
}

/// The keywords a PERMANENTFLAGS list lets a client store: any with `\*`, else those listed.
fn room<'a>(flags: impl Iterator<Item = &'a str>) -> KeywordRoom {
    let mut listed = Vec::new();
    for flag in flags {
        if flag == "\\*" {
            return KeywordRoom::Any;
        }
        listed.extend(Keyword::new(flag));
    }
    KeywordRoom::Only(listed.into_iter().collect())
}

/// What a STATUS told of a folder.
#[derive(Default)]
struct FolderStatus {
    token: Option<String>,
    messages: Option<u32>,
}

/// UIDNEXT as reported, or past the last UID listed when a message arrived during the listing.
fn uid_next_after(reported: Option<u32>, last: Option<Uid>) -> Option<u32> {
    let past_last = last.map(|u| u.get().saturating_add(1));
    match (reported, past_last) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
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
        self.settle_prefetch().await?;
        // The STATUS of the selected folder is the session's view of it, which Dovecot does
        // not bring up to date for a LIST (RFC 3501 §6.3.10 warns of it): mail delivered since
        // the last command would leave its token as recorded, and the folder unsynced. Leave
        // it (UNSELECT, RFC 3691, expunges nothing); without UNSELECT its token is dropped.
        if self.selected.is_some() && self.capabilities.has("UNSELECT") {
            self.session.run(&Command::new("UNSELECT")).await?;
            self.selected = None;
        }
        // With LIST-STATUS (RFC 5819) and CONDSTORE, one round trip also tells which folders
        // changed since the last sync.
        let with_status = self.capabilities.has("LIST-STATUS") && self.capabilities.condstore();
        // Gmail mode needs the `\All` folder; a LIST with RETURN options tells special uses
        // only when asked (RFC 6154 §5.1; Dovecot keeps to that, Gmail tells them anyway).
        let special_use = self.gmail
            && self.capabilities.has("SPECIAL-USE")
            && self.capabilities.has("LIST-EXTENDED");
        let command = match (with_status, special_use) {
            (true, true) => Command::new("LIST").text(
                " \"\" \"*\" RETURN (SPECIAL-USE STATUS (UIDVALIDITY UIDNEXT MESSAGES HIGHESTMODSEQ))",
            ),
            (true, false) => Command::new("LIST")
                .text(" \"\" \"*\" RETURN (STATUS (UIDVALIDITY UIDNEXT MESSAGES HIGHESTMODSEQ))"),
            (false, true) => Command::new("LIST").text(" \"\" \"*\" RETURN (SPECIAL-USE)"),
            (false, false) => Command::new("LIST").text(" \"\" \"*\""),
        };
        let tag = self.session.send(&command).await?;
        let mut found: BTreeMap<FolderName, String> = BTreeMap::new();
        let mut statuses: HashMap<String, String> = HashMap::new();
        let mut sizes: HashMap<String, u32> = HashMap::new();
        let mut archive = None;
        let mut skipped = Vec::new();
        loop {
            match self.session.recv_for(&tag).await? {
                Reply::Data(response) => {
                    let raw = response.borrow_owner();
                    let list = match response.parsed() {
                        Response::MailboxData(MailboxDatum::List(list)) => list,
                        Response::MailboxData(MailboxDatum::Status { mailbox, status }) => {
                            let mailbox = names::unquoted(raw, mailbox);
                            if let Some(token) = status_token(status) {
                                statuses.insert(mailbox.to_string(), token);
                            }
                            let messages = status.iter().find_map(|a| match a {
                                StatusAttribute::Messages(n) => Some(*n),
                                _ => None,
                            });
                            if let Some(n) = messages {
                                sizes.insert(mailbox.to_string(), n);
                            }
                            continue;
                        }
                        _ => continue,
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
                    let all_mail = list
                        .name_attributes
                        .iter()
                        .any(|a| matches!(a, NameAttribute::All));
                    let left_out = list.name_attributes.iter().find_map(|a| match a {
                        NameAttribute::Junk => Some("Gmail's spam"),
                        NameAttribute::Trash => Some("Gmail's trash"),
                        _ => None,
                    });
                    // Each LIST response carries its own delimiter (RFC 3501 §7.2.2).
                    let delimiter = match &list.delimiter {
                        Some(d) => d.chars().next(),
                        None => None,
                    };
                    let name = names::unquoted(raw, &list.name);
                    match names::to_folder_name(&name, delimiter) {
                        Ok(folder) => {
                            if all_mail && self.gmail {
                                archive = Some(folder.clone());
                            }
                            if let Some(why) = left_out.filter(|_| self.gmail) {
                                skipped.push((folder.clone(), why.to_owned()));
                            }
                            found.insert(folder, name.into_owned());
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
        self.listed_sizes = found
            .iter()
            .filter_map(|(folder, server)| sizes.get(server).map(|n| (folder.clone(), *n)))
            .collect();
        let selected = self.selected.as_ref().map(|s| s.folder.clone());
        self.listed_tokens = found
            .iter()
            .filter(|(folder, _)| selected.as_ref() != Some(*folder))
            .filter_map(|(folder, server)| {
                statuses
                    .get(server)
                    .map(|token| (folder.clone(), token.clone()))
            })
            .collect();
        self.server_names = found.clone().into_iter().collect();
        self.all_mail = archive;
        self.left_out = skipped;
        Ok(found.into_keys().collect())
    }

    async fn look_up_folder(&mut self, folder: &FolderName) -> Result<Option<bool>, StoreError> {
        // Only a folder the last listing of this session named: its spelling on the server is
        // known, and the special uses (Gmail's All Mail, spam, trash) were learnt with it.
        if !self.server_names.contains_key(folder) {
            return Ok(None);
        }
        self.settle_prefetch().await?;
        // The selected folder's STATUS is the session's stale view (see `list_folders`).
        if self.selected.as_ref().is_some_and(|s| s.folder == *folder) {
            if !self.capabilities.has("UNSELECT") {
                return Ok(None);
            }
            self.session.run(&Command::new("UNSELECT")).await?;
            self.selected = None;
        }
        // STATUS rather than a LIST of the one name: Dovecot answers it without going through
        // the folder list (a few ms less per push on an account with hundreds of folders).
        let Some(answer) = self.status(folder).await? else {
            // Gone, or not a folder that can hold mail: a listing tells which.
            return Ok(Some(false));
        };
        match answer.token {
            Some(token) => self.listed_tokens.insert(folder.clone(), token),
            None => self.listed_tokens.remove(folder),
        };
        match answer.messages {
            Some(n) => self.listed_sizes.insert(folder.clone(), n),
            None => self.listed_sizes.remove(folder),
        };
        Ok(Some(true))
    }

    async fn create_folder(&mut self, folder: &FolderName) -> Result<(), StoreError> {
        self.settle_prefetch().await?;
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

    async fn delete_folder(&mut self, folder: &FolderName) -> Result<(), StoreError> {
        if *folder == FolderName::inbox() {
            return Err(StoreError::Invalid("INBOX is never removed".into()));
        }
        self.settle_prefetch().await?;
        let quoted = self.quoted_name(folder)?;
        if self.selected.as_ref().is_some_and(|s| s.folder == *folder) {
            // RFC 3501 §6.3.10 advises against STATUS on the selected folder. UNSELECT
            // (RFC 3691) leaves without expunging; CLOSE expunges only messages marked
            // \Deleted, in a folder about to go because it was deleted on the other side.
            let leave = if self.capabilities.has("UNSELECT") {
                "UNSELECT"
            } else {
                "CLOSE"
            };
            self.session.run(&Command::new(leave)).await?;
            self.selected = None;
        }
        // STATUS rather than the last listing: mail may have arrived since. DELETE removes a
        // folder with everything in it (RFC 3501 §6.3.4), so it is only sent for an empty one.
        match self.message_count(folder, &quoted).await? {
            None => return Ok(()),
            Some(0) => {}
            Some(_) => return Err(StoreError::NotEmpty(folder.clone())),
        }
        let done = self
            .session
            .run_unchecked(&Command::new("DELETE").text(format!(" {quoted}")))
            .await?;
        if done.status != Status::Ok {
            let text = done.detail().to_ascii_lowercase();
            if !(text.contains("nonexistent") || text.contains("does not exist")) {
                self.session.check(done, "DELETE")?;
            }
        }
        self.server_names.remove(folder);
        Ok(())
    }

    async fn scan(&mut self, folder: &FolderName) -> Result<FolderSnapshot, StoreError> {
        let info = self.select(folder, None).await?;
        self.list_selected(folder, &info).await
    }

    fn message_count_hint(&self, folder: &FolderName) -> Option<u32> {
        self.listed_sizes.get(folder).copied()
    }

    async fn change_token(&mut self, folder: &FolderName) -> Result<Option<String>, StoreError> {
        if let Some(token) = self.listed_tokens.remove(folder) {
            return Ok(Some(token));
        }
        self.status_token(folder).await
    }

    async fn scan_since(
        &mut self,
        folder: &FolderName,
        since: Option<Since>,
    ) -> Result<Listing, StoreError> {
        let since = since.filter(|_| self.capabilities.condstore());
        // QRESYNC's SELECT reports changed flags without labels, which would read as labels
        // taken away: the labels' folder asks with CHANGEDSINCE.
        let qresync = self.qresync && !self.is_labels_folder(folder);
        let info = self.select(folder, since.filter(|_| qresync)).await?;
        let uid_validity = self.selected()?.uid_validity;
        let (Some(since), Some(highest_modseq)) = (since, info.highest_modseq) else {
            return Ok(Listing::Full(self.list_selected(folder, &info).await?));
        };
        // Renumbered, or a server that lost its MODSEQs: only a full listing can be trusted.
        if since.uid_validity != uid_validity || highest_modseq < since.highest_modseq {
            return Ok(Listing::Full(self.list_selected(folder, &info).await?));
        }
        let mut exists = info.exists.unwrap_or(0);
        let (changed, vanished) = if qresync {
            (info.changed.clone(), Some(info.vanished.clone()))
        } else if highest_modseq == since.highest_modseq {
            (BTreeMap::new(), None)
        } else {
            let (changed, count) = self.fetch_flags(exists, Some(since.highest_modseq)).await?;
            exists = count;
            (changed, None)
        };
        tracing::debug!(
            %folder,
            changed = changed.len(),
            vanished = ?vanished.as_ref().map(Vec::len),
            "incremental listing since MODSEQ {}",
            since.highest_modseq
        );
        Ok(Listing::Changes(FolderChanges {
            uid_validity,
            uid_next: uid_next_after(info.uid_next, changed.keys().next_back().copied()),
            highest_modseq,
            exists,
            token: info.token(uid_validity),
            changed: changed
                .into_iter()
                .map(|(uid, flags)| MessageMeta {
                    id: MsgId::from_uid(uid),
                    flags,
                })
                .collect(),
            vanished: vanished.map(|v| v.into_iter().map(MsgId::from_uid).collect()),
        }))
    }

    async fn prefetch(&mut self, ids: &[MsgId]) -> Result<(), StoreError> {
        self.settle_prefetch().await?;
        self.selected()?;
        let uids = Self::uids(ids)?;
        if !uids.is_empty() {
            self.prefetched = Some(fetch::send_bodies(&mut self.session, &uids).await?);
        }
        Ok(())
    }

    async fn present_ids(&mut self) -> Result<Option<Vec<MsgId>>, StoreError> {
        self.settle_prefetch().await?;
        self.selected()?;
        // Plain SEARCH, not ESEARCH's compact ranges: the response parser does not know
        // ESEARCH (see `session`). A UID costs about seven octets, a FLAGS listing ten times that.
        let tag = self
            .session
            .send(&Command::new("UID SEARCH").text(" UID 1:*"))
            .await?;
        let mut ids = Vec::new();
        loop {
            match self.session.recv_for(&tag).await? {
                Reply::Data(response) => {
                    if let Response::MailboxData(MailboxDatum::Search(found)) = response.parsed() {
                        ids.extend(found.iter().filter_map(|n| Uid::new(*n)));
                    }
                }
                Reply::Done(done) => {
                    self.session.check(done, "UID SEARCH")?;
                    break;
                }
            }
        }
        Ok(Some(ids.into_iter().map(MsgId::from_uid).collect()))
    }

    fn staging_dir(&self, _folder: &FolderName) -> Option<PathBuf> {
        None
    }

    fn global_id(&self, id: &MsgId) -> Option<u64> {
        self.global_ids.get(&id.uid()?).copied()
    }

    fn global_archive(&self) -> Option<FolderName> {
        self.all_mail.clone()
    }

    fn left_out_by_default(&self) -> Vec<(FolderName, String)> {
        self.left_out.clone()
    }

    async fn fetch_global_ids(&mut self, ids: &[MsgId]) -> Result<Vec<(MsgId, u64)>, StoreError> {
        if !self.gmail || ids.is_empty() {
            return Ok(Vec::new());
        }
        self.settle_prefetch().await?;
        self.selected()?;
        let uids = Self::uids(ids)?;
        let mut found = Vec::new();
        for (set, _) in uidset::batches(&uids, uidset::MAX_SET_LEN) {
            let command = Command::new("UID FETCH").text(format!(" {set} (UID X-GM-MSGID)"));
            let tag = self.session.send(&command).await?;
            loop {
                match self.session.recv_for(&tag).await? {
                    Reply::Data(response) => {
                        if let Response::Fetch(_, attributes) = response.parsed() {
                            let uid = attributes.iter().find_map(|a| match a {
                                AttributeValue::Uid(u) => Uid::new(*u),
                                _ => None,
                            });
                            if let (Some(uid), Some(id)) = (uid, gmail::message_id(attributes)) {
                                self.global_ids.insert(uid, id);
                                found.push((MsgId::from_uid(uid), id));
                            }
                        }
                    }
                    Reply::Done(done) => {
                        self.session.check(done, "UID FETCH")?;
                        break;
                    }
                }
            }
        }
        Ok(found)
    }

    fn reserve_id(&mut self) -> Option<MsgId> {
        None
    }

    fn reserves_ids(&self) -> bool {
        false
    }

    async fn sizes_and_dates(&mut self, ids: &[MsgId]) -> Result<Vec<SizeAndDate>, StoreError> {
        self.settle_prefetch().await?;
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
        // Into a Maildir's tmp/ normally; the scratch directory (made here when missing) when
        // the messages go to another server.
        // 0700 when made here: the scratch directory is in the private state directory.
        crate::private::create_dir_all(staging).map_err(|e| StoreError::io(staging, e))?;
        let in_flight = match self.prefetched.take() {
            Some(in_flight) if in_flight.is_for(&uids) => in_flight,
            other => {
                if let Some(stale) = other {
                    fetch::discard(&mut self.session, stale).await?;
                }
                if uids.is_empty() {
                    return Ok(Vec::new());
                }
                fetch::send_bodies(&mut self.session, &uids).await?
            }
        };
        let mut collector = fetch::Collector::Stage {
            dir: staging,
            staged: Vec::new(),
        };
        match fetch::receive_bodies(&mut self.session, in_flight, &mut collector).await {
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
        flags: &Flags,
        _reserved: Option<&MsgId>,
    ) -> Result<Option<MsgId>, StoreError> {
        self.settle_prefetch().await?;
        let selected = self.selected()?.clone();
        // Labels are no flags to APPEND: they are stored on the new message after it.
        let (flags, labels) = self.split_labels(flags);
        let flags = self.storable(&flags);
        let done = match append::append(&mut self.session, &selected.quoted, message, &flags).await
        {
            Ok(done) => done,
            // A server may refuse a whole message for one keyword it will not store (Dovecot:
            // one longer than its mail_max_keyword_length): the message must not stay behind
            // for it, so it goes with its system flags, and each keyword is tried on its own.
            Err(StoreError::Refused { detail, .. }) if !flags.keywords().is_empty() => {
                tracing::debug!("APPEND with keywords refused ({detail}); appending without them");
                let done = append::append(
                    &mut self.session,
                    &selected.quoted,
                    message,
                    &flags.without_keywords(),
                )
                .await?;
                match appended_uids(&done, &selected, 1)
                    .pop()
                    .flatten()
                    .and_then(|id| id.uid())
                {
                    Some(uid) => self.store_each_keyword(&[uid], flags.keywords()).await?,
                    // Without APPENDUID the copy cannot be named: its keywords count as refused.
                    None => self.refuse(flags.keywords()),
                }
                done
            }
            Err(e) => return Err(e),
        };
        if message.temporary
            && let Err(e) = std::fs::remove_file(&message.path)
        {
            tracing::warn!(
                "cannot remove staged file {} after delivery: {e}",
                message.path.display()
            );
        }
        let id = appended_uids(&done, &selected, 1).pop().flatten();
        if !labels.is_empty() {
            match id.as_ref().and_then(MsgId::uid) {
                Some(uid) => self.store_labels(&[uid], '+', &labels).await?,
                // Without APPENDUID the copy cannot be named: its labels count as refused.
                None => self.refuse(&label_keywords(&labels)),
            }
        }
        Ok(id)
    }

    async fn deliver_all(
        &mut self,
        messages: &[(&Staged, &Flags)],
    ) -> (Vec<Option<MsgId>>, Option<StoreError>) {
        // Labels are stored message by message after each APPEND.
        let labelled = self.labels_here()
            && messages
                .iter()
                .any(|(_, f)| !self.split_labels(f).1.is_empty());
        if messages.len() < 2 || !self.capabilities.has("MULTIAPPEND") || labelled {
            return self.deliver_each(messages).await;
        }
        if let Err(e) = self.settle_prefetch().await {
            return (Vec::new(), Some(e));
        }
        let selected = match self.selected() {
            Ok(s) => s.clone(),
            Err(e) => return (Vec::new(), Some(e)),
        };
        let fitted: Vec<Flags> = messages.iter().map(|(_, f)| self.storable(f)).collect();
        let storable: Vec<(&Staged, &Flags)> = messages
            .iter()
            .zip(&fitted)
            .map(|((m, _), f)| (*m, f))
            .collect();
        let done = match append::multiappend(&mut self.session, &selected.quoted, &storable).await {
            Ok(done) => done,
            Err(e) => return (Vec::new(), Some(e)),
        };
        if done.status != Status::Ok {
            // MULTIAPPEND stores all or nothing: one message the server refuses (too big, say)
            // must not hold back the others.
            tracing::debug!(
                "MULTIAPPEND refused ({}); appending one by one",
                done.detail()
            );
            return self.deliver_each(messages).await;
        }
        for (message, _) in messages {
            if message.temporary {
                let _ = std::fs::remove_file(&message.path);
            }
        }
        (appended_uids(&done, &selected, messages.len()), None)
    }

    fn keyword_room(&self) -> KeywordRoom {
        let Some(selected) = &self.selected else {
            return KeywordRoom::Any;
        };
        // In the names the engine sees, which a local side may spell otherwise.
        match selected.room.clone().without(&selected.refused) {
            KeywordRoom::Any => KeywordRoom::Any,
            KeywordRoom::Only(list) => KeywordRoom::Only(self.engine_names(&list)),
            KeywordRoom::Except(list) => KeywordRoom::Except(self.engine_names(&list)),
        }
    }

    fn refused_keywords(&self) -> Keywords {
        self.selected
            .as_ref()
            .map_or_else(Keywords::empty, |s| self.engine_names(&s.refused))
    }

    async fn flush(&mut self) -> Result<(), StoreError> {
        // The server's tagged OK to APPEND means the message is stored (RFC 3501 §6.3.11).
        Ok(())
    }

    async fn set_flags(&mut self, updates: &[FlagUpdate]) -> Result<(), StoreError> {
        self.settle_prefetch().await?;
        self.selected()?;
        // One command per distinct change instead of one per message.
        type Change = (Flags, Flags, Vec<String>, Vec<String>);
        let mut groups: HashMap<Change, Vec<Uid>> = HashMap::new();
        for update in updates {
            let uid = update
                .id
                .uid()
                .ok_or_else(|| StoreError::Invalid(format!("{} is not an IMAP UID", update.id)))?;
            let (add, add_labels) = self.split_labels(&update.add);
            let (remove, remove_labels) = self.split_labels(&update.remove);
            let change = (
                self.storable(&add),
                self.keywords.to_local(&remove),
                add_labels,
                remove_labels,
            );
            groups.entry(change).or_default().push(uid);
        }
        for ((add, remove, add_labels, remove_labels), uids) in groups {
            self.store_labels(&uids, '+', &add_labels).await?;
            self.store_labels(&uids, '-', &remove_labels).await?;
            if !add.is_empty() {
                match self.store_flags(&uids, "+FLAGS.SILENT", add.clone()).await {
                    Ok(()) => {}
                    // As for APPEND: one keyword the server will not store must not hold back
                    // the flags, nor the other keywords.
                    Err(StoreError::Refused { .. }) if !add.keywords().is_empty() => {
                        let system = add.without_keywords();
                        if !system.is_empty() {
                            self.store_flags(&uids, "+FLAGS.SILENT", system).await?;
                        }
                        self.store_each_keyword(&uids, add.keywords()).await?;
                    }
                    Err(e) => return Err(e),
                }
            }
            if !remove.is_empty() {
                self.store_flags(&uids, "-FLAGS.SILENT", remove).await?;
            }
        }
        Ok(())
    }

    async fn delete(&mut self, ids: &[MsgId]) -> Result<(), StoreError> {
        self.settle_prefetch().await?;
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
        self.settle_prefetch().await?;
        self.selected()?;
        let uids = Self::uids(ids)?;
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let in_flight = fetch::send_bodies(&mut self.session, &uids).await?;
        let mut collector = fetch::Collector::Fingerprint { prints: Vec::new() };
        fetch::receive_bodies(&mut self.session, in_flight, &mut collector).await?;
        match collector {
            fetch::Collector::Fingerprint { prints } => Ok(prints),
            fetch::Collector::Stage { .. } => Ok(Vec::new()),
        }
    }

    async fn close(&mut self) {
        // Unread prefetched bodies do not matter to a session that ends.
        self.prefetched = None;
        self.session.logout(LOGOUT_LIMIT).await;
        self.selected = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanentflags_say_which_keywords_a_folder_can_hold() {
        let k = |s: &str| Keyword::new(s).expect("keyword");
        assert_eq!(room(["\\Seen", "\\*"].into_iter()), KeywordRoom::Any);
        let only = room(["\\Seen", "$Junk", "NonJunk"].into_iter());
        assert!(only.holds(&k("$junk")) && only.holds(&k("NonJunk")));
        assert!(!only.holds(&k("$label1")));
        assert_eq!(
            room(std::iter::empty()),
            KeywordRoom::Only(Default::default())
        );
    }
}
