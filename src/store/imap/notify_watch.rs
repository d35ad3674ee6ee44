//! Watching all of an account's folders on one connection with IMAP NOTIFY (RFC 5465), for the
//! push daemon: where the server offers it, one connection replaces one IDLE connection per
//! folder (`watch`).
//!
//! `NOTIFY SET (personal ...)` asks for `MessageNew`, `MessageExpunge` and `FlagChange` in
//! every personal folder; events in folders not watched are skipped here. No folder is
//! selected, so every event comes as `* STATUS "<mailbox>" (...)` (RFC 5465),
//! which says which folder changed. Like [`super::watch::Watcher`], the watcher only
//! says *which* folders may have changed, never what; the daemon syncs them on its own
//! connection.
//!
//! Events are read during IDLE (RFC 5465 lets the server send them at any time, so during IDLE
//! too), on the guarded session through the IDLE exchange the single-folder watcher uses too
//! (`idle`; this module keeps only what a response means for the folders): IDLE needs
//! no polling to learn of changes, its renewal every 25 minutes is a round trip that proves the
//! connection alive, and Dovecot sends its `* OK Still here` keepalives only during IDLE. A
//! NOOP before each IDLE collects what the server queued since the last wait.
//!
//! `* OK [NOTIFICATIONOVERFLOW]` (RFC 5465) means the server dropped events and turned
//! notifications off: the watcher fails, so the daemon reconnects and resyncs everything.
//!
//! # Cancellation
//!
//! As for the single-folder watcher: [`NotifyWatcher::wait`] may be dropped at any await point
//! and the next call carries on from the recorded phase; changes read but not yet returned are
//! kept. A future dropped while a command line was only partly written kills the watcher.
//! After any error the watcher is dead for good; connect a new one.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_imap::imap_proto::{self, MailboxDatum, Response};

use crate::config::ImapConfig;
use crate::model::FolderName;
use crate::store::StoreError;

use super::capabilities::Capabilities;
use super::idle::{self, Note, Phase};
use super::session::{Command, ResponseData, Session};
use super::{LOGOUT_LIMIT, connect, names};

/// The events asked for. RFC 5465: FlagChange requires MessageNew and MessageExpunge.
const EVENTS: &str = "(MessageNew MessageExpunge FlagChange)";

/// One connection that watches several folders with NOTIFY (see the module documentation).
#[derive(Debug)]
pub struct NotifyWatcher {
    session: Session,
    capabilities: Capabilities,
    phase: Phase,
    changes: Changes,
}

/// The watched folders and what the server said of them: the watcher's side of the IDLE
/// exchange.
#[derive(Debug)]
struct Changes {
    delimiter: Option<char>,
    /// The watched folders by the server's spelling of their names.
    folders: BTreeMap<String, FolderName>,
    /// Folders the server reported as changed that no `wait` has returned yet.
    pending: BTreeSet<FolderName>,
}

impl NotifyWatcher {
    /// Connects and logs in as `config` says (a connection of its own), and asks for
    /// notifications about `folders`. [`StoreError::Unsupported`] if the server lacks NOTIFY or
    /// IDLE: the caller then watches folder by folder.
    pub async fn connect(
        config: &ImapConfig,
        folders: &[FolderName],
    ) -> Result<NotifyWatcher, StoreError> {
        let connected = connect::connect(config).await?;
        let mut watcher = NotifyWatcher {
            session: connected.session,
            capabilities: connected.capabilities,
            phase: Phase::Ready,
            changes: Changes {
                delimiter: connected.delimiter,
                folders: BTreeMap::new(),
                pending: BTreeSet::new(),
            },
        };
        if let Err(e) = watcher.set_up(folders).await {
            watcher.session.logout(LOGOUT_LIMIT).await;
            return Err(e);
        }
        tracing::debug!(
            host = %watcher.session.host(),
            folders = watcher.changes.folders.len(),
            "watching the folders with NOTIFY"
        );
        Ok(watcher)
    }

    /// What the server announced after login.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// The folders being watched.
    pub fn folders(&self) -> impl Iterator<Item = &FolderName> {
        self.changes.folders.values()
    }

    /// Whether the watcher can still be used; once `false`, [`NotifyWatcher::wait`] fails.
    pub fn is_alive(&self) -> bool {
        !matches!(self.phase, Phase::Dead | Phase::Writing) && self.session.is_alive()
    }

    /// Waits until the server reports changes in watched folders, or `max` has passed, and
    /// returns the folders that changed (empty: the time ran out).
    ///
    /// Changes made before the call are returned at once (a NOOP collects them first). EOF, BYE,
    /// a response that cannot be parsed, a server that does not answer within the configured
    /// timeout, a refused command or a notification overflow end the watcher with an error.
    /// Cancel-safe: see the module documentation.
    pub async fn wait(&mut self, max: Duration) -> Result<Vec<FolderName>, StoreError> {
        let deadline = idle::deadline(max);
        let result = idle::idle_until(
            &mut self.session,
            &mut self.phase,
            &mut self.changes,
            deadline,
        )
        .await;
        match result {
            Ok(_) => Ok(std::mem::take(&mut self.changes.pending)
                .into_iter()
                .collect()),
            Err(e) => {
                idle::failed(&mut self.session, &mut self.phase, &e);
                Err(e)
            }
        }
    }

    /// Ends IDLE if it is running and logs out, all within a few seconds; errors are ignored.
    pub async fn close(mut self) {
        idle::close(&mut self.session, &self.phase).await;
    }

    /// Checks what the server offers and sends `NOTIFY SET`. Folders that cannot be named on
    /// this server are skipped with a warning.
    async fn set_up(&mut self, folders: &[FolderName]) -> Result<(), StoreError> {
        for needed in ["NOTIFY", "IDLE"] {
            if !self.capabilities.has(needed) {
                return Err(StoreError::Unsupported {
                    host: self.session.host().to_owned(),
                    what: needed.to_owned(),
                });
            }
        }
        for folder in folders {
            match names::to_server_name(folder, self.changes.delimiter) {
                Ok(server) => {
                    self.changes.folders.insert(server, folder.clone());
                }
                // The sync reports such a folder itself; it has nothing to watch here.
                Err(why) => tracing::warn!(%folder, "not watching the folder: {why}"),
            }
        }
        if self.capabilities.condstore() && self.capabilities.enable() {
            // With CONDSTORE on, a flag change in a folder that is not selected is reported as
            // a STATUS with a new HIGHESTMODSEQ (RFC 5465); without it, maybe not at all.
            self.session
                .run(&Command::new("ENABLE").text(" CONDSTORE"))
                .await?;
        }
        // All personal folders, filtered here, rather than `(mailboxes ...)`: Dovecot 2.3
        // never reported events in a folder named there with a non-ASCII (modified UTF-7)
        // name. Events in the other folders cost a line each and are skipped.
        let command = Command::new("NOTIFY").text(format!(" SET (personal {EVENTS})"));
        let tag = self.session.send(&command).await?;
        let done = tokio::time::timeout(
            self.session.timeout(),
            idle::read_to_completion(&mut self.session, &mut self.changes, &tag),
        )
        .await;
        let done = self.session.in_time(done, "NOTIFY")?;
        self.session.check(done, "NOTIFY")?;
        Ok(())
    }
}

impl Note for Changes {
    /// Notes an untagged response: the folders it reports as changed are kept until a `wait`
    /// returns them. A notification overflow is an error.
    fn note(&mut self, host: &str, response: &ResponseData) -> Result<(), StoreError> {
        let parsed = response.parsed();
        let event = classify(parsed);
        tracing::debug!(host = %host, "imap < {parsed:?} ({event:?})");
        match event {
            Event::Folder(server) => {
                let server = names::unquoted(response.borrow_owner(), server);
                if let Some(folder) = self.folder_of(&server) {
                    self.pending.insert(folder);
                }
            }
            Event::All => self.pending.extend(self.folders.values().cloned()),
            Event::Overflow => {
                return Err(StoreError::Protocol {
                    host: host.to_owned(),
                    command: "NOTIFY".to_owned(),
                    detail: "the server dropped notifications (NOTIFICATIONOVERFLOW)".to_owned(),
                });
            }
            Event::Nothing => {}
        }
        Ok(())
    }

    fn pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

impl Changes {
    /// The watched folder a STATUS line names, if it is one of ours.
    fn folder_of(&self, server: &str) -> Option<FolderName> {
        if let Some(folder) = self.folders.get(server) {
            return Some(folder.clone());
        }
        let folder = if server.is_ascii() {
            names::to_folder_name(server, self.delimiter).ok()?
        } else {
            // Dovecot 2.3 names mailboxes in NOTIFY's STATUS lines in UTF-8 even though
            // UTF8=ACCEPT was not enabled (RFC 6855), instead of modified UTF-7 (RFC 3501
            // §5.1.3). Modified UTF-7 is plain ASCII, so a non-ASCII name can only be that.
            let components: Vec<&str> = match self.delimiter {
                Some(d) => server.split(d).collect(),
                None => vec![server],
            };
            FolderName::new(&components.join("/"))?
        };
        self.folders
            .values()
            .any(|f| *f == folder)
            .then_some(folder)
    }
}

/// What an untagged response means for the watched folders.
#[derive(Debug, PartialEq, Eq)]
enum Event<'a> {
    /// This mailbox (the server's spelling) may have changed.
    Folder(&'a str),
    /// Any folder may have changed.
    All,
    /// RFC 5465: events were lost and notifications are off.
    Overflow,
    Nothing,
}

fn classify<'a>(response: &'a Response<'_>) -> Event<'a> {
    match response {
        // RFC 5465: events in mailboxes that are not selected.
        Response::MailboxData(MailboxDatum::Status { mailbox, .. }) => Event::Folder(mailbox),
        Response::Data {
            status: imap_proto::Status::Ok,
            outcome,
        } if outcome.code.is_none()
            && outcome
                .information
                .as_deref()
                .is_some_and(|t| t.to_ascii_uppercase().starts_with("[NOTIFICATIONOVERFLOW]")) =>
        {
            Event::Overflow
        }
        // Keepalives (`* OK Still here`), warnings, and the answers to our own commands.
        Response::Data { .. }
        | Response::Capabilities(_)
        | Response::Id(_)
        | Response::Quota(_)
        | Response::QuotaRoot(_)
        | Response::Acl(_)
        | Response::ListRights(_)
        | Response::MyRights(_)
        | Response::Continue(_)
        | Response::Done { .. } => Event::Nothing,
        // No folder is selected, so a message count can't name one.
        Response::MailboxData(MailboxDatum::Exists(_)) => Event::All,
        // LIST (MailboxName events, not asked for), FLAGS, SEARCH and the like.
        Response::MailboxData(_) => Event::Nothing,
        // EXPUNGE, FETCH or VANISHED can't name a folder either; and a newer parser's kinds
        // are unknown: a needless sync costs less than a missed change.
        _ => Event::All,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(line: &str) -> String {
        let (rest, response) = Response::parse(line.as_bytes()).expect("parses");
        assert!(rest.is_empty(), "{line:?} left {rest:?}");
        format!("{:?}", classify(&response))
    }

    #[test]
    fn status_lines_name_the_folder() {
        assert_eq!(
            event("* STATUS \"Entw&APw-rfe\" (MESSAGES 1 UIDNEXT 2 UNSEEN 1)\r\n"),
            "Folder(\"Entw&APw-rfe\")"
        );
        assert_eq!(
            event("* STATUS Work (MESSAGES 3 UIDNEXT 9 UNSEEN 0 HIGHESTMODSEQ 12)\r\n"),
            "Folder(\"Work\")"
        );
    }

    #[test]
    fn overflow_keepalives_and_others() {
        assert_eq!(
            event("* OK [NOTIFICATIONOVERFLOW] ...A bit later\r\n"),
            "Overflow"
        );
        assert_eq!(event("* OK Still here\r\n"), "Nothing");
        assert_eq!(event("* 3 EXISTS\r\n"), "All");
        assert_eq!(event("* 2 EXPUNGE\r\n"), "All");
    }
}
