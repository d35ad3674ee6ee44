//! One account's life in the daemon: watch both sides, sync what changed, reconnect after
//! failures. One closed event type drives the loop; this task owns the account's lock, state and
//! sync connection, and starts one NOTIFY watcher task for all folders where the server offers
//! NOTIFY (RFC 5465), else one IDLE watcher task per IDLE folder. When to sync is decided by
//! [`Schedule`] (pure); this module only acts on it.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::backoff::{Backoff, retry};
use super::local::LocalWatcher;
use super::schedule::{CLOCK_CHECK, DEBOUNCE, Due, SERVER_DEBOUNCE, Schedule};
use super::{AccountEvent, Control, Counts, Report, Wake};
use crate::config::{Account, Config};
use crate::control::JobId;
use crate::credentials::CredentialError;
use crate::engine::account::{AccountError, AccountSession, RunOptions};
use crate::engine::{FolderReport, NoObserver};
use crate::model::FolderName;
use crate::store::StoreError;
use crate::store::imap::NotifyWatcher;
use crate::store::imap::watch::{Wake as ServerWake, Watcher};

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
/// IDLE is re-issued well inside RFC 2177's 29 minutes.
const IDLE_MAX: Duration = Duration::from_secs(25 * 60);

/// A full disk the account waits on: where, and how much room there was after the failure.
struct WaitingForRoom {
    dir: PathBuf,
    available: Option<u64>,
}

impl WaitingForRoom {
    fn new(dir: PathBuf) -> Self {
        let available = crate::disk::available(&dir);
        tracing::warn!(dir = %dir.display(), available, "waiting for room on a full disk; syncing again as soon as there is");
        Self { dir, available }
    }

    fn room_made(&self) -> bool {
        room_made(self.available, crate::disk::available(&self.dir))
    }
}

/// Whether enough room was made between two looks at a filesystem's free space; a look that
/// failed shows none.
fn room_made(then: Option<u64>, now: Option<u64>) -> bool {
    match (then, now) {
        (Some(then), Some(now)) => now >= then.saturating_add(ROOM_MARGIN),
        _ => false,
    }
}

pub struct Channels {
    pub reports: mpsc::UnboundedSender<Report>,
    pub control: mpsc::UnboundedReceiver<Control>,
    /// Bumped after each resume from suspend.
    pub resumed: tokio::sync::watch::Receiver<u64>,
    pub generation: u64,
}

/// Sends the account's reports to the main task. Unbounded: the main task drains it at once,
/// and a lost job result would leave a client waiting forever.
struct Reporter {
    reports: mpsc::UnboundedSender<Report>,
    account: String,
    generation: u64,
}

impl Reporter {
    fn send(&self, event: AccountEvent) {
        let _ = self.reports.send(Report {
            account: self.account.clone(),
            generation: self.generation,
            event,
        });
    }
}

/// Sync requests answered by the next sync.
#[derive(Default)]
struct Jobs {
    ids: Vec<JobId>,
    /// Whether one of them lets mass deletions through.
    allow_mass_delete: bool,
    /// Folders they named: a missing one is an error in their answer.
    required: BTreeSet<FolderName>,
}

/// What the account's loop waits for: each turn handles one.
enum Event {
    /// The daemon stops this account, or the main task is gone.
    Stop,
    Request(Control),
    Wake(Wake),
    /// A deadline of the schedule came (or a paused account's idle turn).
    Deadline,
    /// The machine resumed from suspend (logind said so).
    Resumed,
    /// Time to look at the full disk's free room again.
    RoomCheck,
    /// Time to compare the wall clock with the monotonic one.
    ClockCheck,
}

pub async fn run(
    config: Arc<Config>,
    account: Account,
    channels: Channels,
    paused: bool,
    cancel: CancellationToken,
) {
    let Channels {
        reports,
        control,
        resumed,
        generation,
    } = channels;
    let reporter = Reporter {
        reports,
        account: account.name.clone(),
        generation,
    };
    let (wake_tx, wake_rx) = mpsc::channel::<Wake>(1024);

    // Start watching before the first full sync, so nothing that changes in between is missed.
    // A Maildir that does not exist yet (the very first sync creates it) holds nothing to miss;
    // it is watched as soon as it exists. An IMAP local side is not watched: its changes are
    // picked up by the interval syncs (and by syncs the server side's IDLE starts).
    let local_watch = local_maildir_exists(&account)
        .then(|| start_local_watch(&account, &wake_tx))
        .flatten();

    let mut backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(300));
    let opened = retry(
        &mut backoff,
        &cancel,
        || async { AccountSession::open(&config, &account, false) },
        |e, _| {
            reporter.send(AccountEvent::Failed {
                jobs: Vec::new(),
                error: e.to_string(),
                offline: false,
            });
            tracing::error!(error = %e, "cannot open the account");
        },
    )
    .await;
    let Some(session) = opened else {
        reporter.send(AccountEvent::Stopped);
        return;
    };
    backoff.reset();
    reporter.send(AccountEvent::Opened {
        counts: session.counts().unwrap_or_default(),
    });
    if paused {
        reporter.send(AccountEvent::Paused);
    }

    let mut supervisor = Supervisor::new(
        account,
        reporter,
        Inputs {
            control,
            resumed,
            wake_tx,
            wake_rx,
            cancel,
        },
        session,
        backoff,
        local_watch,
        paused,
    );
    supervisor.run().await;
    supervisor.stop().await;
}

/// The channels the loop listens on, and its own stop.
struct Inputs {
    control: mpsc::UnboundedReceiver<Control>,
    resumed: tokio::sync::watch::Receiver<u64>,
    /// Kept for the watchers started later; it also keeps `wake_rx` from ever ending.
    wake_tx: mpsc::Sender<Wake>,
    wake_rx: mpsc::Receiver<Wake>,
    cancel: CancellationToken,
}

/// An open account's running state: one method per event of its loop.
struct Supervisor {
    account: Account,
    reporter: Reporter,
    control: mpsc::UnboundedReceiver<Control>,
    resumed: tokio::sync::watch::Receiver<u64>,
    wake_tx: mpsc::Sender<Wake>,
    wake_rx: mpsc::Receiver<Wake>,
    cancel: CancellationToken,
    paused: bool,
    session: AccountSession,
    /// Lengthened by each failed sync, reset by a good one.
    backoff: Backoff,
    jobs: Jobs,
    schedule: Schedule,
    local_watch: Option<LocalWatcher>,
    watchers: TaskTracker,
    /// Stops every server watcher at once; replaced by a fresh one after each stop.
    watchers_cancel: CancellationToken,
    /// Folders with an IDLE watcher.
    watched: BTreeSet<FolderName>,
    /// NOTIFY (RFC 5465): one connection watches every folder, where the server offers it.
    notify_offered: bool,
    /// The NOTIFY task's folders and its stop.
    notify_task: Option<(BTreeSet<FolderName>, CancellationToken)>,
    clock: ClockWatch,
    /// An interval, not a sleep re-made every turn: a steady stream of wake-ups must not keep
    /// postponing the check.
    clock_tick: tokio::time::Interval,
    /// A full disk: its failures do not lengthen the backoff, and freed room is noticed.
    room: Option<WaitingForRoom>,
    room_tick: tokio::time::Interval,
}

impl Supervisor {
    fn new(
        account: Account,
        reporter: Reporter,
        inputs: Inputs,
        session: AccountSession,
        backoff: Backoff,
        local_watch: Option<LocalWatcher>,
        paused: bool,
    ) -> Self {
        let schedule = Schedule::new(account.watch.interval, paused, Instant::now());
        // Both intervals' first ticks come at once: the clock is looked at on the first turn.
        let mut clock_tick = tokio::time::interval(CLOCK_CHECK);
        clock_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut room_tick = tokio::time::interval(ROOM_CHECK);
        room_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let watchers_cancel = inputs.cancel.child_token();
        Self {
            account,
            reporter,
            control: inputs.control,
            resumed: inputs.resumed,
            wake_tx: inputs.wake_tx,
            wake_rx: inputs.wake_rx,
            cancel: inputs.cancel,
            paused,
            session,
            backoff,
            jobs: Jobs::default(),
            schedule,
            local_watch,
            watchers: TaskTracker::new(),
            watchers_cancel,
            watched: BTreeSet::new(),
            notify_offered: true,
            notify_task: None,
            clock: ClockWatch::new(),
            clock_tick,
            room: None,
            room_tick,
        }
    }

    /// Syncs what is due, else waits for the next event and handles it, until the account stops.
    async fn run(&mut self) {
        loop {
            let now = Instant::now();
            // A request that came meanwhile (during the last sync, or while the account was
            // being opened) is taken first: a pause must stop the next sync, not the one after.
            let request_waiting = !self.control.is_empty();
            if !self.paused
                && !request_waiting
                && let Some(due) = self.schedule.due(now)
            {
                if self.sync(due).await.is_break() {
                    return;
                }
                continue;
            }
            let event = self.next_event(now).await;
            if self.handle(event).await.is_break() {
                return;
            }
        }
    }

    /// Waits for the next event. No `biased;`: among branches ready at once tokio picks one at
    /// random, so none can starve the others. Every future here is cancel safe (mpsc and watch
    /// receivers, intervals, a sleep): those that lose are dropped and made anew next turn
    /// without losing a message or a tick.
    async fn next_event(&mut self, now: Instant) -> Event {
        let deadline = self.schedule.deadline(self.paused, now);
        tokio::select! {
            _ = self.cancel.cancelled() => Event::Stop,
            request = self.control.recv() => request.map_or(Event::Stop, Event::Request),
            wake = self.wake_rx.recv() => wake.map_or(Event::Stop, Event::Wake),
            _ = sleep_until(deadline) => Event::Deadline,
            // A closed channel (the daemon stopping) disables the branch for this turn.
            Ok(()) = self.resumed.changed(), if !self.paused => Event::Resumed,
            _ = self.room_tick.tick(), if self.room.is_some() && !self.paused => Event::RoomCheck,
            _ = self.clock_tick.tick() => Event::ClockCheck,
        }
    }

    async fn handle(&mut self, event: Event) -> ControlFlow<()> {
        match event {
            Event::Stop => return ControlFlow::Break(()),
            Event::Request(request) => self.on_request(request).await,
            Event::Wake(wake) => self.on_wake(wake),
            Event::Deadline => {
                if !self.paused {
                    self.schedule.deadline_passed(Instant::now());
                }
            }
            Event::Resumed => self.on_resumed().await,
            Event::RoomCheck => self.on_room_check(),
            Event::ClockCheck => self.on_clock_check().await,
        }
        ControlFlow::Continue(())
    }

    /// Runs the sync that is due and answers the requests waiting for it. `Break`: the account
    /// was stopped meanwhile.
    async fn sync(&mut self, due: Due) -> ControlFlow<()> {
        let folders = self.schedule.start(due);
        let jobs = std::mem::take(&mut self.jobs);
        self.reporter.send(AccountEvent::Syncing {
            jobs: jobs.ids.clone(),
        });
        let run = RunOptions {
            folders,
            allow_mass_delete: jobs.allow_mass_delete,
            required_folders: jobs.required.into_iter().collect(),
            ..RunOptions::default()
        };
        let started = Instant::now();
        // Not raced against the stop: a sync runs to its end, so its state stays consistent.
        match self.session.sync(&run, &mut NoObserver).await {
            Ok(reports) => return self.synced(due, jobs.ids, reports, started).await,
            Err(e) if let Some(full) = e.full_disk() => self.failed_for_room(&e, full, jobs.ids),
            Err(e) => self.failed(&e, jobs.ids),
        }
        ControlFlow::Continue(())
    }

    async fn synced(
        &mut self,
        due: Due,
        answering: Vec<JobId>,
        reports: Vec<FolderReport>,
        started: Instant,
    ) -> ControlFlow<()> {
        self.backoff.reset();
        // Folders that failed for want of room are synced again when room shows.
        self.room = reports
            .iter()
            .find_map(|r| r.full_disk.clone())
            .map(WaitingForRoom::new);
        if self.room.is_some() {
            self.schedule.full_sync_by(Instant::now() + ROOM_RETRY);
        }
        let new_mail: usize = reports.iter().map(|r| r.downloaded).sum();
        tracing::info!(
            folders = reports.len(),
            new_here = new_mail,
            ms = started.elapsed().as_millis() as u64,
            jobs = ?answering,
            "synced"
        );
        let counts = if due == Due::Folders
            && reports
                .iter()
                .all(|r| r.created.is_none() && r.removed.is_none())
        {
            let synced: Vec<FolderName> = reports
                .iter()
                .filter_map(|r| FolderName::new(&r.remote_folder))
                .collect();
            self.session.counts_of(&synced).ok().map(Counts::Only)
        } else {
            self.session.counts().ok().map(Counts::All)
        };
        self.reporter.send(AccountEvent::Synced {
            jobs: answering,
            folders: reports.clone(),
            counts,
        });
        if self.local_watch.is_none() && local_maildir_exists(&self.account) {
            self.local_watch = start_local_watch(&self.account, &self.wake_tx);
            // Anything written between the sync and the watch start is caught here; the
            // server watchers start after that sync.
            self.schedule.full_sync_now(Instant::now());
            return ControlFlow::Continue(());
        }
        if due == Due::Full {
            self.schedule.full_sync_done(Instant::now());
            self.watch_with_notify(&reports).await?;
            // Watch the folders the configuration names, now that the folder list is known.
            self.watch_with_idle(&reports);
        }
        ControlFlow::Continue(())
    }

    /// NOTIFY: one task for all folders, restarted when the list changes. `Break`: the account
    /// was stopped while connecting.
    async fn watch_with_notify(&mut self, reports: &[FolderReport]) -> ControlFlow<()> {
        let all: BTreeSet<FolderName> = reports
            .iter()
            .filter(|r| r.removed.is_none())
            .filter_map(|r| FolderName::new(&r.remote_folder))
            .collect();
        // A task stopped along with the other watchers is restarted too.
        let stale = self
            .notify_task
            .as_ref()
            .is_none_or(|(f, stop)| *f != all || stop.is_cancelled());
        if !self.notify_offered || !stale {
            return ControlFlow::Continue(());
        }
        let folders: Vec<FolderName> = all.iter().cloned().collect();
        // Dropping a half-made connection only closes its socket, and the account is stopping.
        let connected = tokio::select! {
            _ = self.cancel.cancelled() => return ControlFlow::Break(()),
            c = NotifyWatcher::connect(&self.account.remote, &folders) => c,
        };
        let first = match connected {
            Err(StoreError::Unsupported { what, .. }) => {
                tracing::info!("the server lacks {what}: watching folders with IDLE each");
                self.notify_offered = false;
                return ControlFlow::Continue(());
            }
            Err(e) => {
                // The task retries with backoff and asks for a resync once it watches.
                tracing::warn!(error = %e, "cannot watch the folders with NOTIFY yet");
                None
            }
            Ok(w) => {
                tracing::info!(folders = folders.len(), "watching the folders with NOTIFY");
                // A change made between the sync that listed the folders and this watch
                // started was reported to no one: a sync of the folders finds it.
                let now = Instant::now();
                for folder in &folders {
                    self.server_changed(folder.clone(), now);
                }
                Some(w)
            }
        };
        let stop = self.watchers_cancel.child_token();
        let (tx, remote, task_stop) = (
            self.wake_tx.clone(),
            self.account.remote.clone(),
            stop.clone(),
        );
        self.watchers
            .spawn(async move { watch_notify(remote, folders, first, tx, task_stop).await });
        // The new one is watching before the old one stops: nothing falls in between.
        if let Some((_, old)) = self.notify_task.replace((all, stop)) {
            old.cancel();
        }
        ControlFlow::Continue(())
    }

    /// Without NOTIFY, one IDLE task per folder the configuration names, within the budget.
    fn watch_with_idle(&mut self, reports: &[FolderReport]) {
        let wanted = if self.notify_offered {
            BTreeSet::new()
        } else {
            idle_folders(&self.account, reports)
        };
        for folder in wanted.difference(&self.watched) {
            let tx = self.wake_tx.clone();
            let remote = self.account.remote.clone();
            let folder = folder.clone();
            let stop = self.watchers_cancel.clone();
            self.watchers
                .spawn(async move { watch_folder(remote, folder, tx, stop).await });
        }
        self.watched.extend(wanted);
    }

    fn failed_for_room(&mut self, e: &AccountError, full: PathBuf, answering: Vec<JobId>) {
        // Not the network's fault: no backoff, which every wake-up from new mail would
        // lengthen; a sync follows as soon as room is made.
        tracing::warn!(error = %e, "sync failed");
        self.room = Some(WaitingForRoom::new(full));
        self.reporter.send(AccountEvent::Failed {
            jobs: answering,
            error: e.to_string(),
            offline: false,
        });
        self.schedule.retry_at(Instant::now() + ROOM_RETRY);
    }

    fn failed(&mut self, e: &AccountError, answering: Vec<JobId>) {
        self.room = None;
        let backoff = self.backoff.next_delay(rand::random());
        let credential = credential_error(e);
        // A server that rations the account (Gmail's daily bandwidth, a connection limit)
        // said how long to stay away; the backoff alone would come back sooner.
        let rationed = rationed_wait(e).map(|wait| spread(wait, rand::random()));
        let delay = retry_delay(backoff, credential).max(rationed.unwrap_or_default());
        tracing::warn!(error = %e, retry_in_s = delay.as_secs(), "sync failed");
        self.reporter.send(AccountEvent::Failed {
            jobs: answering,
            error: e.to_string(),
            // A credential failure is the account's error, not the network's.
            offline: !self.session.connected() && credential.is_none(),
        });
        // Whatever was asked is retried as a full sync after the delay; a rationing server
        // is not asked again before, whatever wakes the account.
        if rationed.is_some() {
            self.schedule.hold_until(Instant::now() + delay);
        } else {
            self.schedule.retry_at(Instant::now() + delay);
        }
    }

    async fn on_request(&mut self, request: Control) {
        match request {
            Control::Sync {
                job,
                folders,
                allow_mass_delete,
            } if !self.paused => {
                self.jobs.ids.push(job);
                self.jobs.allow_mass_delete |= allow_mass_delete;
                self.jobs.required.extend(folders.iter().cloned());
                // Asked for by a person: now, and the next sync covers it.
                self.schedule.requested(folders, Instant::now());
            }
            Control::Sync { job, .. } => {
                self.reporter.send(AccountEvent::Dropped {
                    jobs: vec![job],
                    error: self.dropped_because("paused"),
                });
            }
            Control::Pause if !self.paused => self.pause().await,
            Control::Resume if !self.paused => {
                // A person asks to try again now (e.g. after fixing a password).
                self.schedule.full_sync_now(Instant::now());
            }
            Control::Resume => {
                self.paused = false;
                tracing::info!("resumed");
                // Anything may have changed meanwhile, and the watchers are gone.
                self.schedule.resume(Instant::now());
            }
            Control::Pause => {}
        }
    }

    async fn pause(&mut self) {
        self.paused = true;
        if !self.jobs.ids.is_empty() {
            self.reporter.send(AccountEvent::Dropped {
                jobs: std::mem::take(&mut self.jobs.ids),
                error: self.dropped_because("paused"),
            });
            self.jobs.required.clear();
        }
        self.jobs.allow_mass_delete = false;
        // Hands off the server: no connection stays open while paused.
        self.stop_watchers();
        self.session.close().await;
        self.schedule.pause();
        tracing::info!("paused");
        self.reporter.send(AccountEvent::Paused);
    }

    fn on_wake(&mut self, wake: Wake) {
        if self.paused {
            return;
        }
        let now = Instant::now();
        match wake {
            Wake::ServerChanged(folder) => self.server_changed(folder, now),
            Wake::LocalChanged(folder) => self.schedule.folder_changed(folder, DEBOUNCE, now),
            Wake::LocalRescan => self.schedule.everything_changed(now),
            Wake::Reconnected => self.schedule.reconnected(now),
        }
    }

    /// The server's `folder` may have changed: a sync of it, soon.
    fn server_changed(&mut self, folder: FolderName, now: Instant) {
        // Watchers speak the server's names; a sync is asked for by local name.
        let local = self.account.folders.local_name(&folder).unwrap_or(folder);
        self.schedule.folder_changed(local, SERVER_DEBOUNCE, now);
    }

    async fn on_resumed(&mut self) {
        // Every connection may be dead after a suspend: make them all anew.
        self.stop_watchers();
        self.session.close().await;
        self.schedule.full_sync_now(Instant::now());
    }

    fn on_room_check(&mut self) {
        if self.room.as_ref().is_some_and(WaitingForRoom::room_made) {
            tracing::info!("room was made on the full disk: syncing again");
            self.room = None;
            self.schedule.full_sync_now(Instant::now());
        }
    }

    async fn on_clock_check(&mut self) {
        // Looked at while paused too: a suspend during a pause is passed over then, since the
        // resume syncs everything anyway.
        if self.clock.jumped() && !self.paused {
            // After a suspend every connection is suspect: start over with a full sync on a
            // new connection; the watchers notice their own dead sockets.
            tracing::info!("the wall clock jumped (suspend or clock change): resyncing");
            self.session.close().await;
            self.schedule.full_sync_now(Instant::now());
        }
    }

    /// Stops every server watcher; the next full sync starts the ones still wanted.
    fn stop_watchers(&mut self) {
        self.watchers_cancel.cancel();
        self.watchers_cancel = self.cancel.child_token();
        self.watched.clear();
    }

    fn dropped_because(&self, why: &str) -> String {
        format!(
            "account {} was {why} before the sync started",
            self.account.name
        )
    }

    /// Stops the watchers (waiting a bounded time), closes the connection and answers the
    /// requests no sync will answer.
    async fn stop(mut self) {
        self.watchers_cancel.cancel();
        self.watchers.close();
        self.session.close().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.watchers.wait()).await;
        if !self.jobs.ids.is_empty() {
            self.reporter.send(AccountEvent::Dropped {
                jobs: std::mem::take(&mut self.jobs.ids),
                error: self.dropped_because("stopped"),
            });
        }
        self.reporter.send(AccountEvent::Stopped);
    }
}

/// A rationing server's wait, lengthened by up to a tenth (`jitter` in 0..1): the server's own
/// figure is never cut short, and the many clients it throttled at once (after an outage, say)
/// do not all come back in the same second.
fn spread(wait: Duration, jitter: f64) -> Duration {
    wait + wait.mul_f64(jitter.clamp(0.0, 1.0) / 10.0)
}

/// How long to wait before retrying a failed sync, given the backoff's next delay. A missing or
/// rejected secret is the user's to fix, not the network's: look again often enough that storing
/// the password is soon noticed. Not for a locked keyring: each look may show the desktop's
/// unlock dialog, which must not pop up every half minute.
fn retry_delay(backoff: Duration, credential: Option<&CredentialError>) -> Duration {
    match credential {
        Some(c) if !matches!(c, CredentialError::Locked { .. }) => {
            backoff.min(CREDENTIALS_RETRY_MAX)
        }
        _ => backoff,
    }
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
    // When more folders match than connections allow, INBOX first, then by the order of the
    // patterns in `idle` and by name: which folders get a push must not depend on the order
    // the last sync's folders happened to finish in.
    let mut wanted: Vec<(bool, usize, FolderName)> = reports
        .iter()
        .filter(|r| r.removed.is_none())
        .filter_map(|r| {
            let first = idle
                .matches(&r.folder)
                .into_iter()
                .chain(idle.matches(&r.remote_folder))
                .min()?;
            let name = FolderName::new(&r.remote_folder)?;
            Some((name != FolderName::inbox(), first, name))
        })
        .collect();
    wanted.sort();
    wanted
        .into_iter()
        .map(|(_, _, name)| name)
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
        let missed = if std::mem::take(&mut reconnecting) {
            tracing::info!(folder = %folder, "watching the folder again");
            Wake::Reconnected
        } else {
            // The folder was last synced before this watcher opened it, and the server
            // reports only what changes from here on: a change made in between (a message
            // delivered while the first sync ended) would wait for the next interval.
            Wake::ServerChanged(folder.clone())
        };
        if wake.send(missed).await.is_err() {
            return;
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
        self.jumped_at(SystemTime::now(), std::time::Instant::now())
    }

    /// Whether the clocks parted by more than half a minute since the last look; a wall clock
    /// set back counts as a jump.
    fn jumped_at(&mut self, wall: SystemTime, mono: std::time::Instant) -> bool {
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
        if let Some(crate::store::StoreError::Credentials(found)) = store_error(e) {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// How long the server asked to be left alone, when the error's chain holds a rationing
/// refusal (`StoreError::Rationed`: a bandwidth or connection limit, throttling).
fn rationed_wait(error: &(dyn std::error::Error + 'static)) -> Option<Duration> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(wait) = store_error(e).and_then(crate::store::StoreError::rationed) {
            return Some(wait);
        }
        next = e.source();
    }
    None
}

/// The store error `e` is, or carries as its own (the engine's and the account's wrappers).
fn store_error<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a crate::store::StoreError> {
    use crate::engine::SyncError;
    use crate::engine::account::AccountError;
    e.downcast_ref::<crate::store::StoreError>()
        .or_else(|| match e.downcast_ref::<SyncError>() {
            Some(SyncError::Store { source, .. }) => Some(source),
            _ => None,
        })
        .or_else(|| match e.downcast_ref::<AccountError>() {
            Some(AccountError::Sync(SyncError::Store { source, .. })) => Some(source),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_more_folders_to_watch_than_connections_inbox_and_the_first_patterns_win() {
        let text = r#"
[general]
state_dir = "/tmp/iw-state"

[accounts.a]
idle = ["Lists/*", "*"]
max_connections = 4

[accounts.a.remote]
type = "imap"
host = "imap.example.org"
user = "me"
password = "x"

[accounts.a.local]
type = "maildir"
path = "/tmp/iw-mail/a"
"#;
        let config = crate::config::parse(std::path::Path::new("/c.toml"), text).expect("config");
        let report = |name: &str| crate::engine::FolderReport {
            folder: name.into(),
            remote_folder: name.into(),
            ..Default::default()
        };
        // The order the last sync's folders finished in.
        let reports: Vec<_> = ["Archive", "Zeta", "Lists/b", "INBOX", "Lists/a", "Drafts"]
            .into_iter()
            .map(report)
            .collect();
        let watched: Vec<String> = idle_folders(&config.accounts[0], &reports)
            .into_iter()
            .map(|f| f.to_string())
            .collect();
        // Three connections to watch with (one syncs).
        assert_eq!(watched, vec!["INBOX", "Lists/a", "Lists/b"]);
    }

    #[test]
    fn a_rationing_server_s_wait_is_spread_over_a_tenth_more_never_less() {
        let wait = Duration::from_millis(3000);
        assert_eq!(spread(wait, 0.0), wait);
        assert_eq!(spread(wait, 0.5), Duration::from_millis(3150));
        assert_eq!(spread(wait, 1.0), Duration::from_millis(3300));
        assert_eq!(spread(wait, 7.0), Duration::from_millis(3300));
        assert_eq!(spread(wait, -1.0), wait);
    }

    #[test]
    fn a_rationing_server_is_left_alone_at_least_as_long_as_it_asked() {
        let e = crate::engine::account::AccountError::Sync(crate::engine::SyncError::Store {
            side: crate::plan::Side::Remote,
            source: crate::store::StoreError::Rationed {
                host: "imap.gmail.com".into(),
                command: "UID FETCH".into(),
                detail: "[OVERQUOTA] Account exceeded command or bandwidth limits.".into(),
                wait: Duration::from_secs(3600),
            },
        });
        assert_eq!(rationed_wait(&e), Some(Duration::from_secs(3600)));
        assert!(e.to_string().contains("leave it alone for 1 h"), "{e}");
        let other = crate::store::StoreError::Invalid("x".into());
        assert_eq!(rationed_wait(&other), None);
    }

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

    #[test]
    fn a_credential_failure_is_retried_within_half_a_minute_unless_the_keyring_is_locked() {
        let long = Duration::from_secs(300);
        let missing = CredentialError::NoPassword {
            account: "a".into(),
        };
        let locked = CredentialError::Locked {
            account: "a".into(),
            detail: "locked".into(),
        };
        assert_eq!(retry_delay(long, Some(&missing)), CREDENTIALS_RETRY_MAX);
        assert_eq!(
            retry_delay(Duration::from_secs(4), Some(&missing)),
            Duration::from_secs(4)
        );
        assert_eq!(retry_delay(long, Some(&locked)), long);
        assert_eq!(retry_delay(long, None), long);
    }

    #[test]
    fn room_counts_as_made_only_past_the_margin() {
        let then = 10 * ROOM_MARGIN;
        assert!(!room_made(Some(then), Some(then)));
        assert!(!room_made(Some(then), Some(then + ROOM_MARGIN - 1)));
        assert!(room_made(Some(then), Some(then + ROOM_MARGIN)));
        assert!(!room_made(None, Some(u64::MAX)));
        assert!(!room_made(Some(0), None));
    }

    #[test]
    fn a_wall_clock_that_runs_away_from_the_monotonic_one_is_a_jump() {
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mono = std::time::Instant::now();
        let mut clock = ClockWatch { wall, mono };
        let check = Duration::from_secs(15);
        // Both moved on by one check: no jump.
        assert!(!clock.jumped_at(wall + check, mono + check));
        // Half a minute apart is still drift; more is a suspend.
        let (wall, mono) = (wall + check, mono + check);
        assert!(!clock.jumped_at(wall + check + Duration::from_secs(30), mono + check));
        let (wall, mono) = (wall + check + Duration::from_secs(30), mono + check);
        assert!(clock.jumped_at(wall + check + Duration::from_secs(31), mono + check));
        // Each look starts from the last one: the jump is not seen twice.
        let (wall, mono) = (wall + check + Duration::from_secs(31), mono + check);
        assert!(!clock.jumped_at(wall + check, mono + check));
        // A wall clock set back is a jump too.
        let (wall, mono) = (wall + check, mono + check);
        assert!(clock.jumped_at(wall - Duration::from_secs(1), mono + check));
    }
}
