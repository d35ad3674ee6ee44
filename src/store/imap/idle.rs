//! The IDLE exchange (RFC 2177) both server watchers share: where the conversation stands
//! ([`Phase`]), the loop that runs it ([`idle_until`]: NOOP, IDLE, renewal, DONE), the reads
//! that move it on — a command's completion, IDLE's `+`, the responses during IDLE — and the
//! polite close. What an untagged response means is the watcher's business, so each of these
//! functions hands every one to a [`Note`]: the single-folder watcher (`watch`) turns it into a
//! flag, the NOTIFY watcher (`notify_watch`) into folder names or an overflow error.
//!
//! Both watchers may be dropped at any await point (see `watch`'s module documentation), so
//! the phase is updated before each await, here as there.

use std::time::Duration;

use tokio::time::Instant;

use crate::store::StoreError;

use super::LOGOUT_LIMIT;
use super::session::{Command, Done, Incoming, Reply, ResponseData, Session};
use super::watch::IDLE_RENEW;

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

/// The moment `max` from now; durations too long to add (`Duration::MAX`) mean forever.
pub(super) fn deadline(max: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(max)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// The IDLE loop both watchers run: a NOOP to collect what the server queued, then IDLE until
/// a change is pending or `deadline`, renewed every [`IDLE_RENEW`]. Starts from whatever phase
/// an earlier, dropped call left behind. `Ok(true)`: a change is pending in `notes`, for the
/// watcher to take; `Ok(false)`: the time ran out.
pub(super) async fn idle_until(
    session: &mut Session,
    phase: &mut Phase,
    notes: &mut impl Note,
    deadline: Instant,
) -> Result<bool, StoreError> {
    // Whether everything the server had queued for us has been read in this call: true after
    // a command completion, as servers send pending updates before it (RFC 3501 §7).
    let mut synced = false;
    loop {
        match phase {
            Phase::Dead => return Err(session.poison("the watcher stopped earlier")),
            Phase::Writing => return Err(interrupted(session, phase)),
            Phase::Polling { tag } => {
                let tag = tag.clone();
                finish(session, phase, notes, &tag, "NOOP").await?;
                synced = true;
            }
            Phase::Ending { tag } => {
                let tag = tag.clone();
                finish(session, phase, notes, &tag, "IDLE").await?;
                synced = true;
            }
            Phase::Ready => {
                if notes.pending() {
                    return Ok(true);
                }
                if !synced {
                    // A change made since the last wait may be queued at the server (it only
                    // reports during commands): ask, so it is reported now rather than only
                    // once IDLE starts, or never by servers that don't flush pending updates at
                    // IDLE.
                    start_noop(session, phase).await?;
                    continue;
                }
                if Instant::now() >= deadline {
                    return Ok(false);
                }
                *phase = Phase::Writing;
                let tag = session.send(&Command::new("IDLE")).await?;
                *phase = Phase::Starting {
                    tag,
                    since: Instant::now(),
                };
            }
            Phase::Starting { tag, since } => {
                let (tag, since) = (tag.clone(), *since);
                let started = tokio::time::timeout(
                    session.timeout(),
                    await_continuation(session, phase, notes, &tag),
                )
                .await;
                session.in_time(started, "IDLE")?;
                *phase = Phase::Idling { tag, since };
            }
            Phase::Idling { tag, since } => {
                let tag = tag.clone();
                let renew = *since + IDLE_RENEW;
                if !notes.pending() {
                    listen(session, phase, notes, &tag, deadline.min(renew)).await?;
                }
                // A change, the caller's deadline or the renewal: end this IDLE.
                *phase = Phase::Writing;
                tracing::debug!(host = %session.host(), "imap > DONE");
                session.write(b"DONE\r\n").await?;
                session.flush().await?;
                *phase = Phase::Ending { tag };
            }
        }
    }
}

/// Sends a NOOP, whose completion [`finish`] reads.
pub(super) async fn start_noop(session: &mut Session, phase: &mut Phase) -> Result<(), StoreError> {
    *phase = Phase::Writing;
    let tag = session.send(&Command::new("NOOP")).await?;
    *phase = Phase::Polling { tag };
    Ok(())
}

/// A watcher whose wait failed is dead for good, and so is its session: a refused or
/// misunderstood command may have left the session alive, but it is not trusted again.
pub(super) fn failed(session: &mut Session, phase: &mut Phase, error: &StoreError) {
    *phase = Phase::Dead;
    if session.is_alive() {
        session.poison(format!("the watcher stopped: {error}"));
    }
}

/// Ends IDLE if it is running and logs out, all within a few seconds; errors are ignored.
pub(super) async fn close(session: &mut Session, phase: &Phase) {
    let polite = async {
        match phase {
            // Half a command line, or nothing left to close: just drop the connection.
            Phase::Writing | Phase::Dead => return,
            // LOGOUT is not allowed during IDLE; DONE ends it (RFC 2177 §3). Servers read it
            // even before they have sent their `+`.
            Phase::Starting { .. } | Phase::Idling { .. } => {
                tracing::debug!(host = %session.host(), "imap > DONE");
                if session.write(b"DONE\r\n").await.is_err() || session.flush().await.is_err() {
                    return;
                }
            }
            // A pending completion is skipped by LOGOUT's own wait for its tag.
            Phase::Ready | Phase::Polling { .. } | Phase::Ending { .. } => {}
        }
        session.logout(LOGOUT_LIMIT).await;
    };
    let _ = tokio::time::timeout(LOGOUT_LIMIT, polite).await;
}
