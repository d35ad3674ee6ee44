//! One account's life in the daemon: watch both sides, sync what changed, reconnect after
//! failures. One closed event type drives the loop; this task owns the account's lock, state and
//! sync connection, and starts one NOTIFY watcher task for all folders where the server offers
//! NOTIFY (RFC 5465), else one IDLE watcher task per IDLE folder.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::backoff::{Backoff, retry};
use super::local::LocalWatcher;
use super::{AccountEvent, Control, Report, Wake};
use crate::config::{Account, Config};
use crate::control::JobId;
use crate::credentials::CredentialError;
use crate::engine::NoObserver;
use crate::engine::account::{AccountSession, RunOptions};
use crate::model::FolderName;
use crate::store::StoreError;
use crate::store::imap::NotifyWatcher;
use crate::store::imap::watch::{Wake as ServerWake, Watcher};

/// Local wake-ups closer together than this are one sync: a mail client changing flags renames
/// files in bursts.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// Server notifications come batched already (Dovecot waits about half a second), so they are
/// only given a moment for the rest of their batch.
const SERVER_DEBOUNCE: Duration = Duration::from_millis(5);
/// A burst that keeps going is still synced at least this often.
const DEBOUNCE_MAX: Duration = Duration::from_secs(1);
/// How often the wall clock is compared with the monotonic clock to notice a suspend.
const CLOCK_CHECK: Duration = Duration::from_secs(15);
/// The longest wait before looking for a missing secret again.
const CREDENTIALS_RETRY_MAX: Duration = Duration::from_secs(30);
/// After a sync failed for want of disk space, how often the full filesystem is looked at: a
/// sync follows as soon as room shows there.
const ROOM_CHECK: Duration = Duration::from_secs(2);
/// ... and how often a sync is tried anyway (a quota the filesystem's numbers do not show).
const ROOM_RETRY: Duration = Duration::from_secs(60);
/// How much room must have been made before a sync is tried again: what our own failed
/// writes left behind and gave back is below it.
const ROOM_MARGIN: u64 = 256 * 1024;

/// A full disk the account waits on: where, and how much room there was after the failure.
struct WaitingForRoom {
    dir: std::path::PathBuf,
    available: Option<u64>,
}

impl WaitingForRoom {
    fn new(dir: std::path::PathBuf) -> Self {
        let available = crate::disk::available(&dir);
        tracing::warn!(dir = %dir.display(), available, "waiting for room on a full disk; syncing again as soon as there is");
        Self { dir, available }
    }

    fn room_made(&self) -> bool {
        match (self.available, crate::disk::available(&self.dir)) {
            (Some(then), Some(now)) => now >= then.saturating_add(ROOM_MARGIN),
            _ => false,
        }
    }
}
/// IDLE is re-issued well inside RFC 2177's 29 minutes.
const IDLE_MAX: Duration = Duration::from_secs(25 * 60);

pub struct Channels {
    pub reports: mpsc::UnboundedSender<Report>,
    pub control: mpsc::UnboundedReceiver<Control>,
    /// Bumped after each resume from suspend.
    pub resumed: tokio::sync::watch::Receiver<u64>,
    pub generation: u64,
}

pub async fn run(
    config: Arc<Config>,
    account: Account,
    channels: Channels,
    mut paused: bool,
    cancel: CancellationToken,
) {
    let Channels {
        reports,
        mut control,
        mut resumed,
        generation,
    } = channels;
    let name = account.name.clone();
    // Unbounded: the main task drains it at once, and a lost job result would leave a client
    // waiting forever.
    let report = |event: AccountEvent| {
        let _ = reports.send(Report {
            account: name.clone(),
            generation,
            event,
        });
    };
    let (wake_tx, mut wake_rx) = mpsc::channel::<Wake>(1024);

    // Start watching before the first full sync, so nothing that changes in between is missed.
    // A Maildir that does not exist yet (the very first sync creates it) holds nothing to miss;
    // it is watched as soon as it exists. An IMAP local side is not watched: its changes are
    // picked up by the interval syncs (and by syncs the server side's IDLE starts).
    let mut local_watch = local_maildir_exists(&account)
        .then(|| start_local_watch(&account, &wake_tx))
        .flatten();
    let watchers = TaskTracker::new();
    let mut watchers_cancel = cancel.child_token();
    let mut watched: BTreeSet<FolderName> = BTreeSet::new();
    // NOTIFY (RFC 5465): one connection watches every folder, where the server offers it.
    let mut notify_offered = true;
    let mut notify_task: Option<(BTreeSet<FolderName>, CancellationToken)> = None;

    let mut backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(300));
    let opened = retry(
        &mut backoff,
        &cancel,
        || async { AccountSession::open(&config, &account, false) },
        |e, _| {
            report(AccountEvent::Failed {
                jobs: Vec::new(),
                error: e.to_string(),
                offline: false,
            });
            tracing::error!(error = %e, "cannot open the account");
        },
    )
    .await;
    let Some(mut session) = opened else {
        report(AccountEvent::Stopped);
        return;
    };
    backoff.reset();
    report(AccountEvent::Opened {
        counts: session.counts().unwrap_or_default(),
    });
    if paused {
        report(AccountEvent::Paused);
    }
    // Sync requests answered by the next sync, and whether one of them lets mass deletions
    // through.
    let mut jobs: Vec<JobId> = Vec::new();
    let mut jobs_allow_mass_delete = false;
    // Folders those requests named: a missing one is an error in their answer.
    let mut required: BTreeSet<FolderName> = BTreeSet::new();

    let mut pending: BTreeSet<FolderName> = BTreeSet::new();
    let mut full_sync_due = (!paused).then(Instant::now);
    let mut debounce_deadline: Option<Instant> = None;
    let mut burst_started: Option<Instant> = None;
    let mut next_interval = Instant::now() + account.watch.interval;
    let mut clock = ClockWatch::new();
    // An interval, not a sleep re-made every turn: a steady stream of wake-ups must not keep
    // postponing the check.
    let mut clock_tick = tokio::time::interval(CLOCK_CHECK);
    clock_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A full disk: its failures do not lengthen the backoff, and freed room is noticed.
    let mut room: Option<WaitingForRoom> = None;
    let mut room_tick = tokio::time::interval(ROOM_CHECK);
    room_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        // What is due now: a full sync (start, interval, reconnect, suspend) or the folders of
        // the debounced wake-ups.
        let now = Instant::now();
        let full_due = full_sync_due.is_some_and(|t| t <= now);
        let folders_due = debounce_deadline.is_some_and(|t| t <= now) && !pending.is_empty();
        // A request that came meanwhile (during the last sync, or while the account was being
        // opened) is taken first: a pause must stop the next sync, not the one after.
        let request_waiting = !control.is_empty();
        if !paused && !request_waiting && (full_due || folders_due) {
            let folders: Vec<FolderName> = if full_due {
                Vec::new()
            } else {
                std::mem::take(&mut pending).into_iter().collect()
            };
            if full_due {
                pending.clear();
            }
            debounce_deadline = None;
            burst_started = None;
            let answering = std::mem::take(&mut jobs);
            report(AccountEvent::Syncing {
                jobs: answering.clone(),
            });
            let run = RunOptions {
                folders: folders.clone(),
                allow_mass_delete: std::mem::take(&mut jobs_allow_mass_delete),
                required_folders: std::mem::take(&mut required).into_iter().collect(),
                ..RunOptions::default()
            };
            let started = Instant::now();
            match session.sync(&run, &mut NoObserver).await {
                Ok(reports) => {
                    backoff.reset();
                    // Folders that failed for want of room are synced again when room shows.
                    room = reports
                        .iter()
                        .find_map(|r| r.full_disk.clone())
                        .map(WaitingForRoom::new);
                    if room.is_some() {
                        let retry = Instant::now() + ROOM_RETRY;
                        full_sync_due = Some(full_sync_due.map_or(retry, |t| t.min(retry)));
                    }
                    let new_mail: usize = reports.iter().map(|r| r.downloaded).sum();
                    tracing::info!(
                        folders = reports.len(),
                        new_here = new_mail,
                        ms = started.elapsed().as_millis() as u64,
                        jobs = ?answering,
                        "synced"
                    );
                    report(AccountEvent::Synced {
                        jobs: answering,
                        folders: reports.clone(),
                        counts: session.counts().ok(),
                    });
                    if local_watch.is_none() && local_maildir_exists(&account) {
                        local_watch = start_local_watch(&account, &wake_tx);
                        // Anything written between the sync and the watch start is caught here.
                        full_sync_due = Some(Instant::now());
                        continue;
                    }
                    if full_due {
                        full_sync_due = None;
                        next_interval = Instant::now() + account.watch.interval;
                        // --- NOTIFY: one task for all folders, restarted when the list changes.
                        let all: BTreeSet<FolderName> = reports
                            .iter()
                            .filter(|r| r.removed.is_none())
                            .filter_map(|r| FolderName::new(&r.remote_folder))
                            .collect();
                        // A task stopped along with the other watchers is restarted too.
                        let stale = notify_task
                            .as_ref()
                            .is_none_or(|(f, stop)| *f != all || stop.is_cancelled());
                        if notify_offered && stale {
                            let folders: Vec<FolderName> = all.iter().cloned().collect();
                            let connected = tokio::select! {
                                _ = cancel.cancelled() => break,
                                c = NotifyWatcher::connect(&account.remote, &folders) => c,
                            };
                            let first = match connected {
                                Err(StoreError::Unsupported { what, .. }) => {
                                    tracing::info!(
                                        "the server lacks {what}: watching folders with IDLE each"
                                    );
                                    notify_offered = false;
                                    None
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "cannot watch the folders with NOTIFY yet");
                                    Some(None)
                                }
                                Ok(w) => {
                                    tracing::info!(
                                        folders = folders.len(),
                                        "watching the folders with NOTIFY"
                                    );
                                    Some(Some(w))
                                }
                            };
                            if let Some(first) = first {
                                let stop = watchers_cancel.child_token();
                                let (tx, remote, task_stop) =
                                    (wake_tx.clone(), account.remote.clone(), stop.clone());
                                watchers.spawn(async move {
                                    watch_notify(remote, folders, first, tx, task_stop).await
                                });
                                // The new one is watching before the old one stops: nothing falls in between.
                                if let Some((_, old)) = notify_task.replace((all, stop)) {
                                    old.cancel();
                                }
                            }
                        }
                        // --- end NOTIFY
                        // Watch the folders the configuration names, now that the folder list is known.
                        let wanted = if notify_offered {
                            BTreeSet::new()
                        } else {
                            idle_folders(&account, &reports)
                        };
                        for folder in wanted.difference(&watched) {
                            let tx = wake_tx.clone();
                            let remote = account.remote.clone();
                            let folder = folder.clone();
                            let stop = watchers_cancel.clone();
                            watchers
                                .spawn(async move { watch_folder(remote, folder, tx, stop).await });
                        }
                        watched.extend(wanted);
                    }
                }
                Err(e) if let Some(full) = e.full_disk() => {
                    // Not the network's fault: no backoff, which every wake-up from new mail
                    // would lengthen; a sync follows as soon as room is made.
                    tracing::warn!(error = %e, "sync failed");
                    room = Some(WaitingForRoom::new(full));
                    report(AccountEvent::Failed {
                        jobs: answering,
                        error: e.to_string(),
                        offline: false,
                    });
                    full_sync_due = Some(Instant::now() + ROOM_RETRY);
                }
                Err(e) => {
                    room = None;
                    let mut delay = backoff.next_delay(rand::random());
                    // A missing or locked secret is the user's to fix, not the network's: show it
                    // as an account error, and look again often enough that storing the password
                    // is soon noticed. Not for a locked keyring: each look may show the desktop's
                    // unlock dialog, which must not pop up every half minute.
                    let credential = credential_error(&e);
                    let credentials = credential.is_some();
                    if credential.is_some_and(|c| !matches!(c, CredentialError::Locked { .. })) {
                        delay = delay.min(CREDENTIALS_RETRY_MAX);
                    }
                    tracing::warn!(error = %e, retry_in_s = delay.as_secs(), "sync failed");
                    report(AccountEvent::Failed {
                        jobs: answering,
                        error: e.to_string(),
                        offline: !session.connected() && !credentials,
                    });
                    // Whatever was asked is retried as a full sync after the delay.
                    full_sync_due = Some(Instant::now() + delay);
                }
            }
            continue;
        }

        // A paused account has no deadlines: only a request or a stop wakes it.
        let deadline = if paused {
            now + CLOCK_CHECK
        } else {
            [full_sync_due, debounce_deadline, Some(next_interval)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(now + CLOCK_CHECK)
        };
        tokio::select! {
            _ = cancel.cancelled() => break,
            request = control.recv() => {
                let Some(request) = request else { break };
                match request {
                    Control::Sync { job, folders, allow_mass_delete } if !paused => {
                        jobs.push(job);
                        jobs_allow_mass_delete |= allow_mass_delete;
                        required.extend(folders.iter().cloned());
                        // Asked for by a person: now, and the next sync covers it.
                        if folders.is_empty() || full_sync_due.is_some() {
                            full_sync_due = Some(Instant::now());
                        } else {
                            pending.extend(folders);
                            debounce_deadline = Some(Instant::now());
                        }
                    }
                    Control::Sync { job, .. } => {
                        report(AccountEvent::Dropped {
                            jobs: vec![job],
                            error: format!("account {name} was paused before the sync started"),
                        });
                    }
                    Control::Pause if !paused => {
                        paused = true;
                        if !jobs.is_empty() {
                            report(AccountEvent::Dropped {
                                jobs: std::mem::take(&mut jobs),
                                error: format!("account {name} was paused before the sync started"),
                            });
                            required.clear();
                        }
                        jobs_allow_mass_delete = false;
                        // Hands off the server: no connection stays open while paused.
                        watchers_cancel.cancel();
                        watchers_cancel = cancel.child_token();
                        watched.clear();
                        session.close().await;
                        pending.clear();
                        full_sync_due = None;
                        debounce_deadline = None;
                        burst_started = None;
                        tracing::info!("paused");
                        report(AccountEvent::Paused);
                    }
                    Control::Resume if !paused => {
                        // A person asks to try again now (e.g. after fixing a password).
                        full_sync_due = Some(Instant::now());
                    }
                    Control::Resume => {
                        paused = false;
                        tracing::info!("resumed");
                        // Anything may have changed meanwhile, and the watchers are gone.
                        full_sync_due = Some(Instant::now());
                        next_interval = Instant::now() + account.watch.interval;
                    }
                    Control::Pause => {}
                }
            }
            wake = wake_rx.recv() => {
                let Some(wake) = wake else { break };
                if paused {
                    continue;
                }
                let quiet = match wake {
                    Wake::ServerChanged(folder) => {
                        // Watchers speak the server's names; a sync is asked for by local name.
                        let local = account.folders.local_name(&folder).unwrap_or(folder);
                        pending.insert(local);
                        SERVER_DEBOUNCE
                    }
                    Wake::LocalChanged(folder) => {
                        pending.insert(folder);
                        DEBOUNCE
                    }
                    Wake::LocalRescan | Wake::Reconnected => {
                        full_sync_due.get_or_insert(Instant::now() + DEBOUNCE);
                        DEBOUNCE
                    }
                };
                let now = Instant::now();
                let started = *burst_started.get_or_insert(now);
                let proposed = (now + quiet).min(started + DEBOUNCE_MAX);
                // A later, longer quiet period never delays a sync already due sooner.
                debounce_deadline = Some(debounce_deadline.map_or(proposed, |d| d.max(proposed).min(started + DEBOUNCE_MAX)));
            }
            _ = sleep_until(deadline) => {
                if !paused && Instant::now() >= next_interval {
                    full_sync_due.get_or_insert(Instant::now());
                }
            }
            Ok(()) = resumed.changed(), if !paused => {
                // Every connection may be dead after a suspend: make them all anew.
                watchers_cancel.cancel();
                watchers_cancel = cancel.child_token();
                watched.clear();
                session.close().await;
                full_sync_due = Some(Instant::now());
            }
            _ = room_tick.tick(), if room.is_some() && !paused => {
                if room.as_ref().is_some_and(WaitingForRoom::room_made) {
                    tracing::info!("room was made on the full disk: syncing again");
                    room = None;
                    full_sync_due = Some(Instant::now());
                }
            }
            _ = clock_tick.tick() => {
                if clock.jumped() && !paused {
                    // After a suspend every connection is suspect: start over with a full sync
                    // on a new connection; the watchers notice their own dead sockets.
                    tracing::info!("the wall clock jumped (suspend or clock change): resyncing");
                    session.close().await;
                    full_sync_due = Some(Instant::now());
                }
            }
        }
    }

    watchers_cancel.cancel();
    watchers.close();
    session.close().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), watchers.wait()).await;
    if !jobs.is_empty() {
        report(AccountEvent::Dropped {
            jobs,
            error: format!("account {name} was stopped before the sync started"),
        });
    }
    report(AccountEvent::Stopped);
}

fn local_maildir_exists(account: &Account) -> bool {
    account.local.maildir().is_some_and(|m| m.path.is_dir())
}

fn start_local_watch(account: &Account, wake: &mpsc::Sender<Wake>) -> Option<LocalWatcher> {
    let maildir = account.local.maildir()?;
    match LocalWatcher::start(maildir, wake.clone()) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the Maildir for changes; local changes are picked up every interval");
            None
        }
    }
}

/// The folders to keep an IDLE connection on, by server name: those the configuration names
/// (by local or server name) that exist, within the connection budget (one connection stays
/// for syncing).
fn idle_folders(
    account: &Account,
    reports: &[crate::engine::FolderReport],
) -> BTreeSet<FolderName> {
    let budget = account.watch.max_connections.saturating_sub(1) as usize;
    let idle = &account.watch.idle_set;
    reports
        .iter()
        .filter(|r| r.removed.is_none())
        .filter(|r| idle.is_match(&r.folder) || idle.is_match(&r.remote_folder))
        .filter_map(|r| FolderName::new(&r.remote_folder))
        .take(budget)
        .collect()
}

/// One IDLE connection on one folder, for as long as the account runs: every change it reports
/// becomes a wake-up; a lost connection is re-made with backoff and followed by a resync of the
/// folder, since changes may have been missed while it was down.
async fn watch_folder(
    remote: crate::config::ImapConfig,
    folder: FolderName,
    wake: mpsc::Sender<Wake>,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
    let mut reconnecting = false;
    loop {
        let connected = retry(
            &mut backoff,
            &cancel,
            || Watcher::connect(&remote, &folder),
            |e, delay| {
                tracing::warn!(folder = %folder, error = %e, retry_in_s = delay.as_secs(), "cannot watch folder");
                reconnecting = true;
            },
        )
        .await;
        let Some(mut watcher) = connected else { return };
        if std::mem::take(&mut reconnecting) {
            tracing::info!(folder = %folder, "watching the folder again");
            let _ = wake.send(Wake::Reconnected).await;
        }
        loop {
            let result = tokio::select! {
                _ = cancel.cancelled() => {
                    watcher.close().await;
                    return;
                }
                r = watcher.wait(IDLE_MAX) => r,
            };
            match result {
                Ok(ServerWake::Changed) => {
                    if wake
                        .send(Wake::ServerChanged(folder.clone()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(ServerWake::Timeout) => {}
                Err(e) => {
                    tracing::warn!(folder = %folder, error = %e, "lost the watch connection; reconnecting");
                    reconnecting = true;
                    break;
                }
            }
        }
    }
}

/// One NOTIFY connection on all `folders`, for as long as the account runs (or until the folder
/// list changes): like [`watch_folder`], every reported folder becomes a wake-up, and a lost
/// connection is re-made with backoff and followed by a resync.
async fn watch_notify(
    remote: crate::config::ImapConfig,
    folders: Vec<FolderName>,
    mut first: Option<NotifyWatcher>,
    wake: mpsc::Sender<Wake>,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
    // Without a first watcher the connection failed already: changes may be missed until it works.
    let mut reconnecting = first.is_none();
    loop {
        let mut watcher = match first.take() {
            Some(w) => {
                backoff.reset();
                w
            }
            None => {
                let connected = retry(
                    &mut backoff,
                    &cancel,
                    || NotifyWatcher::connect(&remote, &folders),
                    |e, delay| {
                        tracing::warn!(error = %e, retry_in_s = delay.as_secs(), "cannot watch the folders with NOTIFY");
                        reconnecting = true;
                    },
                )
                .await;
                let Some(w) = connected else { return };
                w
            }
        };
        if std::mem::take(&mut reconnecting) {
            tracing::info!("watching the folders with NOTIFY again");
            let _ = wake.send(Wake::Reconnected).await;
        }
        loop {
            let result = tokio::select! {
                _ = cancel.cancelled() => {
                    watcher.close().await;
                    return;
                }
                r = watcher.wait(IDLE_MAX) => r,
            };
            match result {
                Ok(changed) => {
                    for folder in changed {
                        if wake.send(Wake::ServerChanged(folder)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lost the NOTIFY connection; reconnecting");
                    reconnecting = true;
                    break;
                }
            }
        }
    }
}

/// Notices when the wall clock moved much more than the monotonic clock: the machine was
/// suspended (CLOCK_MONOTONIC stops during suspend) or the clock was set.
struct ClockWatch {
    wall: SystemTime,
    mono: std::time::Instant,
}

impl ClockWatch {
    fn new() -> Self {
        Self {
            wall: SystemTime::now(),
            mono: std::time::Instant::now(),
        }
    }

    fn jumped(&mut self) -> bool {
        let (wall, mono) = (SystemTime::now(), std::time::Instant::now());
        let wall_elapsed = wall.duration_since(self.wall).unwrap_or(Duration::MAX);
        let mono_elapsed = mono.duration_since(self.mono);
        self.wall = wall;
        self.mono = mono;
        wall_elapsed.abs_diff(mono_elapsed) > Duration::from_secs(30)
    }
}

/// The credential failure somewhere in `error`'s chain, if that is why it failed: the daemon
/// reports these as an account error (not "offline") and retries them sooner.
fn credential_error<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a CredentialError> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<CredentialError>() {
            return Some(found);
        }
        if let Some(crate::store::StoreError::Credentials(found)) =
            e.downcast_ref::<crate::store::StoreError>()
        {
            return Some(found);
        }
        if let Some(crate::engine::SyncError::Store {
            source: crate::store::StoreError::Credentials(found),
            ..
        }) = e.downcast_ref::<crate::engine::SyncError>()
        {
            return Some(found);
        }
        if let Some(crate::engine::account::AccountError::Sync(crate::engine::SyncError::Store {
            source: crate::store::StoreError::Credentials(found),
            ..
        })) = e.downcast_ref::<crate::engine::account::AccountError>()
        {
            return Some(found);
        }
        next = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_errors_are_found_in_the_chain() {
        let e = crate::engine::account::AccountError::Sync(crate::engine::SyncError::Store {
            side: crate::plan::Side::Remote,
            source: crate::store::StoreError::Credentials(CredentialError::NoPassword {
                account: "a".into(),
            }),
        });
        assert!(credential_error(&e).is_some());
        assert!(
            e.to_string().contains(
                "no password in the keyring for account a: run `idlewild password set a`"
            ),
            "{e}"
        );
        let other = crate::store::StoreError::Invalid("x".into());
        assert!(credential_error(&other).is_none());
    }
}
