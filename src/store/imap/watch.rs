//! Watching one folder for changes made elsewhere, for the push daemon: IMAP IDLE (RFC 2177) on
//! a connection of its own, or NOOP polling where the server lacks IDLE.
//!
//! The watcher only says *that* something changed, never what: the daemon answers a wake-up
//! with a sync on its own connection, which finds out the rest. So every untagged response that
//! may mean a change counts as one, and a needless sync is the price of a doubtful case.
//!
//! IDLE is written by hand on the guarded session, like every other command: async-imap's IDLE
//! helper bounds the wait with an inactivity timer that each `* OK Still here` keepalive resets
//! (Dovecot sends one every 2 minutes), so with a chatty server it never fires. Our own timer
//! ends each IDLE after 25 minutes instead, before the 29 minutes after which RFC 2177 §3 allows
//! a server to drop the client. That exchange is shared with the NOTIFY watcher (`idle`); what
//! a response means for this folder is decided here (`is_change`), and NOOP polling too.
//!
//! # Cancellation
//!
//! [`Watcher::wait`] may be dropped at any await point (the daemon waits inside
//! `tokio::select!`); the watcher stays usable. It records where the conversation with the
//! server stands before each await, and the next `wait` carries on from there: an IDLE that was
//! running keeps running (and whatever the server sent meanwhile is read first, so no change is
//! lost), a NOOP or `DONE` whose answer was outstanding is finished first, and a change that was
//! read but not yet reported is reported at once. The one exception is a future dropped while a
//! command line was only partly written (possible only when the socket's send buffer is full):
//! the server then holds half a line, so the watcher is dead and the next call returns
//! [`StoreError::ConnectionLost`].
//!
//! After any error the watcher is dead for good and every later `wait` fails; connect a new one.

use std::time::Duration;

use async_imap::imap_proto::{self, MailboxDatum, Response, ResponseCode};
use tokio::time::Instant;

use crate::config::ImapConfig;
use crate::model::FolderName;
use crate::store::StoreError;

use super::capabilities::Capabilities;
use super::idle::{self, Note, Phase};
use super::session::{Command, ResponseData, Session, Status};
use super::{LOGOUT_LIMIT, connect, names};

/// How long one IDLE command may last. RFC 2177 §3: a server may consider a client inactive
/// after 30 minutes, so clients should re-issue IDLE at least every 29 minutes; 25 leaves room
/// for slow networks and sloppy server timers.
pub const IDLE_RENEW: Duration = Duration::from_secs(25 * 60);

/// How often a server without IDLE is asked with NOOP (RFC 3501 §6.1.2: NOOP is the way to poll
/// for new messages and flag changes).
pub const POLL_INTERVAL: Duration = Duration::from_secs(60);

/// Why [`Watcher::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The server reported something that may be a change in the folder.
    Changed,
    /// Nothing was reported before the time given to [`Watcher::wait`] ran out.
    Timeout,
}

/// A connection of its own that watches one folder for changes (see the module documentation
/// for IDLE, polling and cancellation).
#[derive(Debug)]
pub struct Watcher {
    session: Session,
    capabilities: Capabilities,
    phase: Phase,
    changes: Changes,
}

/// The folder and what the server said of it: the watcher's side of the IDLE exchange.
#[derive(Debug)]
struct Changes {
    folder: FolderName,
    /// The server reported a change that no `wait` has returned yet (its future was dropped, or
    /// the IDLE had to be ended first).
    pending: bool,
}

impl Watcher {
    /// Connects and logs in as `config` says (a new connection, not the sync connection), and
    /// opens `folder` read-only with EXAMINE (RFC 3501 §6.3.2): the watcher never changes
    /// anything, and unlike SELECT it leaves `\Recent` to the other sessions. Changes made by
    /// others are reported to a read-only session all the same.
    pub async fn connect(config: &ImapConfig, folder: &FolderName) -> Result<Watcher, StoreError> {
        let connected = connect::connect(config).await?;
        let mut watcher = Watcher {
            session: connected.session,
            capabilities: connected.capabilities,
            phase: Phase::Ready,
            changes: Changes {
                folder: folder.clone(),
                pending: false,
            },
        };
        let opened = match names::to_server_name(folder, connected.delimiter) {
            Ok(server) => watcher.examine(&server).await,
            Err(why) => Err(StoreError::Invalid(why)),
        };
        if let Err(e) = opened {
            watcher.session.logout(LOGOUT_LIMIT).await;
            return Err(e);
        }
        tracing::debug!(
            host = %watcher.session.host(),
            folder = %watcher.changes.folder,
            "watching the folder {}",
            if watcher.supports_idle() {
                "with IDLE".to_owned()
            } else {
                format!("by polling every {} s", POLL_INTERVAL.as_secs())
            }
        );
        Ok(watcher)
    }

    /// The folder being watched.
    pub fn folder(&self) -> &FolderName {
        &self.changes.folder
    }

    /// What the server announced after login.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// Whether changes are pushed by the server (IDLE) rather than polled for every
    /// [`POLL_INTERVAL`], i.e. whether a change is noticed within about a second.
    pub fn supports_idle(&self) -> bool {
        self.capabilities.idle()
    }

    /// Whether the watcher can still be used; once `false`, [`Watcher::wait`] fails and a new
    /// watcher is needed.
    pub fn is_alive(&self) -> bool {
        !matches!(self.phase, Phase::Dead | Phase::Writing) && self.session.is_alive()
    }

    /// Waits until the server reports that the folder may have changed, or `max` has passed.
    ///
    /// A change made before the call (since the last `wait`, or since [`Watcher::connect`]) is
    /// returned at once without starting IDLE: a NOOP first collects what the server has
    /// queued, as servers report changes to a session only while it runs a command.
    ///
    /// `max` may be longer than [`IDLE_RENEW`]; the IDLE is then renewed on the way. EOF, BYE,
    /// a response that cannot be parsed, a server that does not answer within the configured
    /// timeout, or a refused command end the watcher with an error; the caller reconnects.
    /// Cancel-safe: see the module documentation.
    pub async fn wait(&mut self, max: Duration) -> Result<Wake, StoreError> {
        let deadline = idle::deadline(max);
        let result = if self.supports_idle() {
            idle::idle_until(
                &mut self.session,
                &mut self.phase,
                &mut self.changes,
                deadline,
            )
            .await
            .map(|changed| self.took(changed))
        } else {
            self.poll(deadline).await
        };
        if let Err(e) = &result {
            idle::failed(&mut self.session, &mut self.phase, e);
        }
        result
    }

    /// Ends IDLE if it is running and logs out, all within a few seconds; errors are ignored.
    pub async fn close(mut self) {
        idle::close(&mut self.session, &self.phase).await;
    }

    /// What a wait returns once the exchange has stopped: the pending change, taken, or the
    /// time ran out.
    fn took(&mut self, changed: bool) -> Wake {
        if changed {
            self.changes.pending = false;
            Wake::Changed
        } else {
            Wake::Timeout
        }
    }

    /// EXAMINE the folder; its answer describes the folder as it is, not changes.
    async fn examine(&mut self, server_name: &str) -> Result<(), StoreError> {
        let folder = &self.changes.folder;
        let quoted = names::quoted(server_name)
            .ok_or_else(|| StoreError::Invalid(format!("folder {folder} has no IMAP spelling")))?;
        let done = self
            .session
            .run_unchecked(&Command::new("EXAMINE").text(format!(" {quoted}")))
            .await?;
        if done.status != Status::Ok {
            // RFC 5530 [NONEXISTENT]; older servers only say so in words.
            let text = done.detail().to_ascii_lowercase();
            if text.contains("nonexistent")
                || text.contains("doesn't exist")
                || text.contains("does not exist")
            {
                return Err(StoreError::NoSuchFolder(self.changes.folder.clone()));
            }
            self.session.check(done, "EXAMINE")?;
        }
        Ok(())
    }

    /// Polling for servers without IDLE: NOOP at once, then every [`POLL_INTERVAL`] and at the
    /// deadline, until a NOOP brings a change.
    async fn poll(&mut self, deadline: Instant) -> Result<Wake, StoreError> {
        let mut polled_at: Option<Instant> = None;
        loop {
            match &self.phase {
                Phase::Dead => return Err(self.session.poison("the watcher stopped earlier")),
                Phase::Writing => {
                    return Err(idle::interrupted(&mut self.session, &mut self.phase));
                }
                Phase::Polling { tag } => {
                    let tag = tag.clone();
                    self.finish(&tag, "NOOP").await?;
                }
                Phase::Starting { .. } | Phase::Idling { .. } | Phase::Ending { .. } => {
                    return Err(StoreError::Protocol {
                        host: self.session.host().to_owned(),
                        command: "IDLE".to_owned(),
                        detail: "IDLE is running on a server that does not offer it".to_owned(),
                    });
                }
                Phase::Ready => {
                    if self.changes.pending {
                        return Ok(self.took(true));
                    }
                    if polled_at.is_some_and(|at| at >= deadline) {
                        return Ok(Wake::Timeout);
                    }
                    let due = match polled_at {
                        None => Instant::now(),
                        Some(at) => (at + POLL_INTERVAL).min(deadline),
                    };
                    tokio::time::sleep_until(due).await;
                    polled_at = Some(Instant::now());
                    idle::start_noop(&mut self.session, &mut self.phase).await?;
                }
            }
        }
    }

    /// Reads up to `tag`'s completion (a NOOP's, or IDLE's after DONE), noting changes.
    async fn finish(&mut self, tag: &str, command: &str) -> Result<(), StoreError> {
        idle::finish(
            &mut self.session,
            &mut self.phase,
            &mut self.changes,
            tag,
            command,
        )
        .await
    }
}

impl Note for Changes {
    /// Notes an untagged response: a change is remembered until a `wait` returns it. Never an
    /// error: whatever the folder's server says is at worst a needless sync.
    fn note(&mut self, host: &str, response: &ResponseData) -> Result<(), StoreError> {
        let parsed = response.parsed();
        let change = is_change(parsed);
        let what = if change { "a change" } else { "not a change" };
        tracing::debug!(
            host = %host,
            folder = %self.folder,
            "imap < {parsed:?} ({what})"
        );
        self.pending |= change;
        Ok(())
    }

    fn pending(&self) -> bool {
        self.pending
    }
}

/// Whether an untagged response may mean that the folder's messages changed.
fn is_change(response: &Response<'_>) -> bool {
    match response {
        // RFC 3501 §7.3.1: the message count changed.
        Response::MailboxData(MailboxDatum::Exists(_)) => true,
        // RFC 3501 §7.4.1: a message was expunged.
        Response::Expunge(_) => true,
        // RFC 7162 §3.2.10: the QRESYNC spelling of EXPUNGE.
        Response::Vanished { .. } => true,
        // RFC 3501 §7.4.2: unsolicited FETCH reports changed flags (or MODSEQ).
        Response::Fetch(..) => true,
        // A new UIDVALIDITY or UIDNEXT, or a new HIGHESTMODSEQ (RFC 7162 §3.1.2.1), speak of
        // the folder's contents.
        Response::Data {
            status: imap_proto::Status::Ok,
            outcome,
        } => matches!(
            outcome.code,
            Some(
                ResponseCode::UidValidity(_)
                    | ResponseCode::UidNext(_)
                    | ResponseCode::HighestModSeq(_)
            )
        ),
        // `* OK Still here` (Dovecot's IDLE keepalive), `* NO` warnings and the like. BYE never
        // gets here: the session dies on it.
        Response::Data { .. } => false,
        // RECENT (RFC 3501 §7.3.2) only grows along with EXISTS, and counting it alone would
        // risk waking up for another session's SELECT, which claims \Recent. FLAGS only lists
        // the flags the folder knows (a new keyword's FETCH comes separately). LIST, STATUS,
        // SEARCH and the rest answer commands.
        Response::MailboxData(_) => false,
        Response::Capabilities(_)
        | Response::Id(_)
        | Response::Quota(_)
        | Response::QuotaRoot(_)
        | Response::Acl(_)
        | Response::ListRights(_)
        | Response::MyRights(_)
        | Response::Continue(_)
        | Response::Done { .. } => false,
        // Kinds a newer parser may add: a needless sync costs less than a missed change.
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(line: &str) -> bool {
        let (rest, response) = Response::parse(line.as_bytes()).expect("parses");
        assert!(rest.is_empty(), "{line:?} left {rest:?}");
        is_change(&response)
    }

    #[test]
    fn changes_to_messages_count() {
        for line in [
            "* 3 EXISTS\r\n",
            "* 2 EXPUNGE\r\n",
            "* 1 FETCH (FLAGS (\\Seen))\r\n",
            "* 1 FETCH (UID 7 FLAGS (\\Flagged) MODSEQ (12))\r\n",
            "* VANISHED 3:5\r\n",
            "* OK [UIDVALIDITY 17] new generation\r\n",
            "* OK [HIGHESTMODSEQ 99] x\r\n",
        ] {
            assert!(change(line), "{line:?} is a change");
        }
    }

    #[test]
    fn keepalives_and_warnings_are_not_changes() {
        for line in [
            "* OK Still here\r\n",
            "* OK [ALERT] maintenance tonight\r\n",
            "* NO disk almost full\r\n",
            "* BAD noise\r\n",
            "* 1 RECENT\r\n",
            "* FLAGS (\\Answered \\Seen $Forwarded)\r\n",
            "* CAPABILITY IMAP4rev1 IDLE\r\n",
        ] {
            assert!(!change(line), "{line:?} is no change");
        }
    }
}
