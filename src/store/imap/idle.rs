//! The IDLE exchange (RFC 2177) both server watchers share: where the conversation stands
//! ([`Phase`]) and the reads that move it on — a command's completion, IDLE's `+`, the
//! responses during IDLE. What an untagged response means is the watcher's business, so each
//! of these functions hands every one to a [`Note`]: the single-folder watcher (`watch`) turns
//! it into a flag, the NOTIFY watcher (`notify_watch`) into folder names or an overflow error.
//!
//! Both watchers may be dropped at any await point (see `watch`'s module documentation), so
//! the phase is updated before each await, here as there.

use tokio::time::Instant;

use crate::store::StoreError;

use super::session::{Done, Incoming, Reply, ResponseData, Session};

/// Where the conversation with the server stands between two awaits. It is updated *before*
/// each await, so a dropped `wait` leaves an accurate record for the next one.
#[derive(Debug)]
pub(super) enum Phase {
    /// No command is in flight.
    Ready,
    /// A command line (`NOOP`, `IDLE` or `DONE`) is being written. Only seen by a later call if
    /// the writing call was dropped; the server then waits for the rest of a line.
    Writing,
    /// NOOP sent, its completion outstanding.
    Polling { tag: String },
    /// IDLE sent, the server's `+` not yet seen.
    Starting { tag: String, since: Instant },
    /// The server accepted IDLE and may report changes at any time.
    Idling { tag: String, since: Instant },
    /// `DONE` sent, IDLE's completion outstanding.
    Ending { tag: String },
    /// An error ended the watcher.
    Dead,
}

/// What a watcher makes of the untagged responses read during the exchange.
pub(super) trait Note {
    /// Notes an untagged response from `host`; an error ends the watcher.
    fn note(&mut self, host: &str, response: &ResponseData) -> Result<(), StoreError>;

    /// Whether a change was noted that no `wait` has returned yet: IDLE then ends at once.
    fn pending(&self) -> bool;
}

/// Reads up to `tag`'s completion (a NOOP's, or IDLE's after DONE), noting changes, within
/// the configured timeout; a NO or BAD is an error.
pub(super) async fn finish(
    session: &mut Session,
    phase: &mut Phase,
    notes: &mut impl Note,
    tag: &str,
    command: &str,
) -> Result<(), StoreError> {
    let read =
        tokio::time::timeout(session.timeout(), read_to_completion(session, notes, tag)).await;
    let done = session.in_time(read, command)?;
    *phase = Phase::Ready;
    session.check(done, command)?;
    Ok(())
}

/// Reads up to `tag`'s completion, handing every untagged response to `notes`. No timeout of
/// its own: callers bound it.
pub(super) async fn read_to_completion(
    session: &mut Session,
    notes: &mut impl Note,
    tag: &str,
) -> Result<Done, StoreError> {
    loop {
        match session.recv_for(tag).await? {
            Reply::Data(response) => notes.note(session.host(), &response)?,
            Reply::Done(done) => return Ok(done),
        }
    }
}

/// Waits for the `+` that accepts IDLE (RFC 2177 §3). A completion instead is a refusal.
pub(super) async fn await_continuation(
    session: &mut Session,
    phase: &mut Phase,
    notes: &mut impl Note,
    tag: &str,
) -> Result<(), StoreError> {
    loop {
        match session.recv_one().await? {
            Incoming::Continue => return Ok(()),
            // The server may report changes before it accepts (e.g. `* 5 EXISTS`).
            Incoming::Reply(Reply::Data(response)) => notes.note(session.host(), &response)?,
            Incoming::Reply(Reply::Done(done)) if done.tag == tag => {
                *phase = Phase::Ready;
                session.check(done, "IDLE")?;
                return Err(StoreError::Protocol {
                    host: session.host().to_owned(),
                    command: "IDLE".to_owned(),
                    detail: "the server completed IDLE without accepting it".to_owned(),
                });
            }
            Incoming::Reply(Reply::Done(done)) => session.stash(done),
        }
    }
}

/// Reads what the server sends during IDLE until a change is pending (see [`Note::pending`])
/// or `until`. Silence is normal here, so reads have no timeout of their own; a dead peer shows
/// as a read error through TCP keepalive (see `connect`), or at the latest when DONE goes
/// unanswered.
pub(super) async fn listen(
    session: &mut Session,
    phase: &mut Phase,
    notes: &mut impl Note,
    tag: &str,
    until: Instant,
) -> Result<(), StoreError> {
    let timer = tokio::time::sleep_until(until);
    tokio::pin!(timer);
    loop {
        // The timer first: a server that never stops talking cannot keep IDLE from ending.
        // Anything already received is not lost either way; it is read before DONE's
        // completion.
        let incoming = tokio::select! {
            biased;
            () = &mut timer => return Ok(()),
            incoming = session.recv_untimed() => incoming?,
        };
        match incoming {
            Incoming::Reply(Reply::Data(response)) => {
                notes.note(session.host(), &response)?;
                if notes.pending() {
                    return Ok(());
                }
            }
            Incoming::Reply(Reply::Done(done)) if done.tag == tag => {
                // RFC 2177 knows no way for the server to end IDLE by itself but BYE.
                *phase = Phase::Ready;
                session.check(done, "IDLE")?;
                return Err(StoreError::Protocol {
                    host: session.host().to_owned(),
                    command: "IDLE".to_owned(),
                    detail: "the server ended IDLE before DONE".to_owned(),
                });
            }
            Incoming::Reply(Reply::Done(done)) => session.stash(done),
            Incoming::Continue => {
                return Err(session.poison("unexpected continuation request during IDLE"));
            }
        }
    }
}

/// A later call found a command line half written by a dropped one: the server waits for the
/// rest of a line we can no longer send, so the watcher is dead.
pub(super) fn interrupted(session: &mut Session, phase: &mut Phase) -> StoreError {
    *phase = Phase::Dead;
    session.poison("a command was interrupted while being sent")
}
