//! `idlewild daemon`: keeps every account in step in real time until stopped.
//!
//! The main task owns the accounts' supervisor tasks (`supervisor.rs`), the service manager's
//! readiness protocol and the signals: SIGHUP reloads the configuration (accounts added,
//! removed or changed are started, stopped or restarted; the others are not touched), SIGTERM
//! and SIGINT stop gracefully within a bound.

mod backoff;
mod local;
pub mod notify;
mod schedule;
mod sleep;
mod supervisor;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{self, Config};
use crate::control::{
    self, AccountStatus, ControlError, Event, JobId, JobStatus, Request, StateKind,
};
use crate::engine::FolderReport;
use crate::engine::account::AccountReport;
use crate::model::FolderName;
use crate::pause::{self, Pause};
use crate::state::FolderCount;
use notify::Notifier;

/// A reason for an account to look at its folders again. Wake-ups are hints: what changed is
/// always read from the stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// A message file in this Maildir folder changed.
    LocalChanged(FolderName),
    /// Something in the Maildir tree changed that may be a folder: look at everything.
    LocalRescan,
    /// The server reported a change in this folder.
    ServerChanged(FolderName),
    /// A watch connection was re-made: changes may have been missed meanwhile.
    Reconnected,
}

/// A request the main task passes on to one account.
#[derive(Debug, Clone)]
pub enum Control {
    Sync {
        job: JobId,
        folders: Vec<FolderName>,
        allow_mass_delete: bool,
    },
    Pause,
    /// Ends a pause; on an account that is not paused, retries at once.
    Resume,
}

/// What an account reports to the main task.
#[derive(Debug, Clone)]
pub struct Report {
    pub account: String,
    /// Which start of the account sent it.
    pub generation: u64,
    pub event: AccountEvent,
}

/// Messages per folder after a sync.
#[derive(Debug, Clone)]
pub enum Counts {
    /// Every folder's: they take the place of the last.
    All(BTreeMap<String, FolderCount>),
    /// Only the folders a sync of a few folders synced (none created or removed): counting
    /// every message of a 200,000-message account after each push would cost more than the
    /// push.
    Only(BTreeMap<String, FolderCount>),
}

#[derive(Debug, Clone)]
pub enum AccountEvent {
    /// The account's lock and state are open; the counts are those of the last sync.
    Opened {
        counts: BTreeMap<String, FolderCount>,
    },
    Syncing {
        jobs: Vec<JobId>,
    },
    /// A sync ended; folders may have failed on their own (see their reports).
    Synced {
        jobs: Vec<JobId>,
        folders: Vec<FolderReport>,
        counts: Option<Counts>,
    },
    /// A sync (or opening the account) failed as a whole.
    Failed {
        jobs: Vec<JobId>,
        error: String,
        offline: bool,
    },
    /// Requests the account will not run: it was paused or stopped before their sync began.
    Dropped {
        jobs: Vec<JobId>,
        error: String,
    },
    Paused,
    Stopped,
}

/// How long a stop may take before the syncs still running are abandoned. Abandoning is safe
/// (every step is recorded before it is made, as for a crash) but wastes the work in flight.
const STOP_GRACE: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot install a signal handler: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Bus(#[from] crate::dbus::StartError),
}

struct Running {
    account: config::Account,
    cancel: CancellationToken,
    control: mpsc::UnboundedSender<Control>,
    /// Which start of the account this is: reports of a stopped copy still finish their jobs
    /// but no longer change the account's status.
    generation: u64,
}

/// A sync request in progress: the accounts it still waits for, and what the others reported.
struct Job {
    waiting: BTreeSet<String>,
    reports: Vec<AccountReport>,
}

/// Rewrites the mailbox list if its content changed, off the main task (it reads every
/// account's state database).
fn update_mbnames(config: Arc<Config>) {
    if config.mbnames.is_none() {
        return;
    }
    tokio::task::spawn_blocking(move || {
        if let Err(e) = crate::mbnames::update(&config) {
            tracing::warn!("{e}");
        }
    });
}

/// Runs until SIGTERM or SIGINT. `config_path` is read again on SIGHUP and on a D-Bus Reload.
pub async fn run(config_path: PathBuf, config: Config) -> Result<(), DaemonError> {
    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;

    // The bus name first: a second daemon is refused before it touches any account. The
    // accounts' objects are there before the name, so the first call (perhaps the one that
    // activated the daemon) already finds them.
    let (requests_tx, mut requests) = mpsc::channel::<Request>(64);
    let now = SystemTime::now();
    let initial: Vec<AccountStatus> = config
        .accounts
        .iter()
        .map(|a| initial_status(&config, a, now))
        .collect();
    let config_file = std::fs::canonicalize(&config_path).unwrap_or_else(|_| config_path.clone());
    let api = match crate::dbus::Service::start(requests_tx.clone(), &config_file, &initial).await {
        Ok(api) => Some(api),
        Err(crate::dbus::StartError::NoBus(e)) => {
            tracing::warn!(error = %e, "no session bus: the D-Bus API is off");
            None
        }
        Err(e) => return Err(e.into()),
    };

    let (reports_tx, mut reports) = mpsc::unbounded_channel::<Report>();
    let (resumed_tx, resumed) = tokio::sync::watch::channel(0u64);
    let sleep_watch = tokio::spawn(sleep::watch(resumed_tx));
    let mut daemon = Daemon {
        config_path,
        config: Arc::new(config),
        tasks: TaskTracker::new(),
        reports: reports_tx,
        resumed,
        running: BTreeMap::new(),
        statuses: initial.into_iter().map(|s| (s.name.clone(), s)).collect(),
        reported: BTreeSet::new(),
        jobs: BTreeMap::new(),
        last_job: 0,
        generation: 0,
        api,
        notifier: Notifier::from_env(),
        ready: false,
        mbnames_due: BTreeSet::new(),
    };
    let accounts = daemon.config.accounts.clone();
    for account in &accounts {
        daemon.start(account);
    }
    tracing::info!(accounts = daemon.running.len(), "daemon started");

    let watchdog_period = daemon.notifier.watchdog_interval();
    let mut watchdog = tokio::time::interval(watchdog_period.unwrap_or(Duration::from_secs(3600)));

    loop {
        let pause_ends = daemon.next_pause_end();
        tokio::select! {
            Some(report) = reports.recv() => daemon.on_report(report),
            Some(request) = requests.recv() => daemon.on_request(request).await,
            _ = tokio::time::sleep(pause_ends.unwrap_or(Duration::MAX)), if pause_ends.is_some() => {
                daemon.end_pauses();
            }
            _ = watchdog.tick(), if watchdog_period.is_some() => daemon.notifier.watchdog(),
            _ = hup.recv() => {
                daemon.notifier.reloading();
                if let Err(e) = daemon.reload().await {
                    tracing::error!("{e}");
                }
                daemon.notifier.ready(&status_line(&daemon.statuses));
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }

    daemon.notifier.stopping();
    tracing::info!("stopping");
    sleep_watch.abort();
    for r in daemon.running.values() {
        r.cancel.cancel();
    }
    daemon.tasks.close();
    if tokio::time::timeout(STOP_GRACE, daemon.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "syncs still running after {} s were abandoned; the next start finishes them",
            STOP_GRACE.as_secs()
        );
    }
    // The last reports finish the jobs they answer; the rest end here, unanswered.
    while let Ok(report) = reports.try_recv() {
        daemon.on_report(report);
    }
    drop(requests_tx);
    daemon.fail_all_jobs("the daemon stopped before the sync ran");
    if let Some(api) = daemon.api.take() {
        api.stop().await;
    }
    Ok(())
}

/// The main task's state: the accounts' tasks and statuses, and the sync jobs in progress.
struct Daemon {
    config_path: PathBuf,
    config: Arc<Config>,
    tasks: TaskTracker,
    reports: mpsc::UnboundedSender<Report>,
    /// Bumped after each resume from suspend.
    resumed: tokio::sync::watch::Receiver<u64>,
    running: BTreeMap<String, Running>,
    statuses: BTreeMap<String, AccountStatus>,
    /// Accounts that reported since they were started: READY waits for all of them.
    reported: BTreeSet<String>,
    jobs: BTreeMap<JobId, Job>,
    last_job: JobId,
    generation: u64,
    api: Option<crate::dbus::Service>,
    notifier: Notifier,
    ready: bool,
    /// Accounts started since their last sync: their first sync may change the mailbox list.
    mbnames_due: BTreeSet<String>,
}

impl Daemon {
    fn publish(&self, event: Event) {
        if let Some(api) = &self.api {
            api.publish(event);
        }
    }

    fn start(&mut self, account: &config::Account) {
        let cancel = CancellationToken::new();
        let (control, control_rx) = mpsc::unbounded_channel();
        self.generation += 1;
        let status = initial_status(&self.config, account, SystemTime::now());
        let paused = status.paused;
        let span = tracing::info_span!("account", account = %account.name);
        self.tasks.spawn(tracing::Instrument::instrument(
            supervisor::run(
                self.config.clone(),
                account.clone(),
                supervisor::Channels {
                    reports: self.reports.clone(),
                    control: control_rx,
                    resumed: self.resumed.clone(),
                    generation: self.generation,
                },
                paused.is_some(),
                cancel.clone(),
            ),
            span,
        ));
        self.running.insert(
            account.name.clone(),
            Running {
                account: account.clone(),
                cancel,
                control,
                generation: self.generation,
            },
        );
        self.mbnames_due.insert(account.name.clone());
        let known = self.statuses.insert(account.name.clone(), status.clone());
        self.publish(match known {
            Some(_) => Event::Status(status),
            None => Event::AccountAdded(status),
        });
    }

    /// Reads the configuration again and applies it: accounts that are gone or changed are
    /// stopped (and waited for, so their lock is free), new and changed ones started, the rest
    /// left running. A wrong file changes nothing.
    async fn reload(&mut self) -> Result<(), ControlError> {
        let new = config::load(&self.config_path)
            .map_err(|e| ControlError::Config(format!("{e}; the running configuration stays")))?;
        for w in &new.warnings {
            tracing::warn!("{w}");
        }
        let new = Arc::new(new);
        let everything = new.state_dir != self.config.state_dir;
        let wanted: BTreeMap<&str, &config::Account> =
            new.accounts.iter().map(|a| (a.name.as_str(), a)).collect();
        let stale: Vec<String> = self
            .running
            .iter()
            .filter(|(name, r)| {
                wanted
                    .get(name.as_str())
                    .is_none_or(|a| everything || a.source != r.account.source)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in &stale {
            if let Some(r) = self.running.remove(name) {
                tracing::info!(account = %name, "stopping account for the new configuration");
                r.cancel.cancel();
                self.reported.remove(name);
                if !wanted.contains_key(name.as_str()) {
                    self.statuses.remove(name);
                    self.publish(Event::AccountRemoved(name.clone()));
                }
            }
        }
        if !stale.is_empty() {
            // A stopped account's task releases its lock as it ends; a restarted copy that
            // still finds the lock held retries with backoff, so this pause only saves that retry.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        self.config = new;
        let accounts = self.config.accounts.clone();
        for account in &accounts {
            if !self.running.contains_key(&account.name) {
                tracing::info!(account = %account.name, "starting account");
                self.start(account);
            }
        }
        tracing::info!(accounts = self.running.len(), "configuration reloaded");
        Ok(())
    }

    fn on_report(&mut self, report: Report) {
        let Report {
            account,
            generation,
            event,
        } = report;
        // Jobs are answered by whichever copy of the account ran them.
        match &event {
            AccountEvent::Synced { jobs, folders, .. } => {
                let result = AccountReport {
                    account: account.clone(),
                    folders: folders.clone(),
                    error: None,
                };
                for job in jobs {
                    self.job_answered(*job, &account, result.clone());
                }
            }
            AccountEvent::Failed { jobs, error, .. } | AccountEvent::Dropped { jobs, error } => {
                let result = AccountReport {
                    account: account.clone(),
                    folders: Vec::new(),
                    error: Some(error.clone()),
                };
                for job in jobs {
                    self.job_answered(*job, &account, result.clone());
                }
            }
            _ => {}
        }
        let current = self
            .running
            .get(&account)
            .is_some_and(|r| r.generation == generation);
        if !current {
            return;
        }
        self.reported.insert(account.clone());
        let Some(status) = self.statuses.get_mut(&account) else {
            return;
        };
        let before = status.clone();
        let mut events = Vec::new();
        match event {
            AccountEvent::Opened { counts } => status.folders = counts,
            AccountEvent::Syncing { jobs } => {
                status.state = StateKind::Syncing;
                events.push(Event::SyncStarted {
                    account: account.clone(),
                    jobs,
                });
            }
            AccountEvent::Synced {
                jobs,
                folders,
                counts,
            } => {
                status.last_sync = Some(SystemTime::now());
                match counts {
                    Some(Counts::All(counts)) => status.folders = counts,
                    Some(Counts::Only(counts)) => status.folders.extend(counts),
                    None => {}
                }
                let first = self.mbnames_due.remove(&account);
                if first
                    || folders
                        .iter()
                        .any(|f| f.created.is_some() || f.removed.is_some())
                {
                    update_mbnames(self.config.clone());
                }
                let problem = folders.iter().find_map(|f| {
                    f.error
                        .as_ref()
                        .or(f.refused.as_ref())
                        .map(|why| format!("{}: {why}", f.folder))
                });
                status.state = if problem.is_some() {
                    StateKind::Error
                } else {
                    StateKind::Idle
                };
                status.last_error = problem.clone();
                events.push(Event::SyncFinished {
                    account: account.clone(),
                    jobs,
                    received: count(folders.iter().map(|f| f.downloaded)),
                    sent: count(folders.iter().map(|f| f.uploaded)),
                    error: problem,
                });
                for f in folders.iter().filter(|f| f.downloaded > 0) {
                    events.push(Event::NewMail {
                        account: account.clone(),
                        folder: f.folder.clone(),
                        count: count([f.downloaded]),
                    });
                }
            }
            AccountEvent::Failed {
                jobs,
                error,
                offline,
            } => {
                let was_syncing = status.state == StateKind::Syncing;
                status.state = if offline {
                    StateKind::Offline
                } else {
                    StateKind::Error
                };
                status.last_error = Some(error.clone());
                if was_syncing || !jobs.is_empty() {
                    events.push(Event::SyncFinished {
                        account: account.clone(),
                        jobs,
                        received: 0,
                        sent: 0,
                        error: Some(error),
                    });
                }
            }
            AccountEvent::Paused => status.state = StateKind::Paused,
            AccountEvent::Dropped { .. } | AccountEvent::Stopped => {}
        }
        let changed = *status != before;
        let snapshot = status.clone();
        for event in events {
            self.publish(event);
        }
        if changed {
            self.publish(Event::Status(snapshot));
        }
        let all_reported = self.running.keys().all(|a| self.reported.contains(a));
        if !self.ready && all_reported {
            // READY=1 means: every account has started (its watchers before its first sync),
            // and the API is on the bus. Mail that arrives from now on is seen.
            self.ready = true;
            self.notifier.ready(&status_line(&self.statuses));
            tracing::info!("ready");
        } else if self.ready && changed {
            self.notifier.status(&status_line(&self.statuses));
        }
    }

    fn job_answered(&mut self, job: JobId, account: &str, result: AccountReport) {
        tracing::debug!(job, account, "job answered");
        let Some(waiting) = self.jobs.get_mut(&job) else {
            return;
        };
        if waiting.waiting.remove(account) {
            waiting.reports.push(result);
        }
        if waiting.waiting.is_empty()
            && let Some(done) = self.jobs.remove(&job)
        {
            self.finish_job(job, done.reports);
        }
    }

    fn finish_job(&self, job: JobId, reports: Vec<AccountReport>) {
        let status = JobStatus::of(&reports);
        let error = reports.iter().find_map(|r| {
            r.error
                .as_ref()
                .map(|e| format!("{}: {e}", r.account))
                .or_else(|| {
                    r.folders.iter().find_map(|f| {
                        f.error
                            .as_ref()
                            .or(f.refused.as_ref())
                            .map(|e| format!("{}: {}: {e}", r.account, f.folder))
                    })
                })
        });
        tracing::debug!(job, status = status.as_str(), "job finished");
        self.publish(Event::JobFinished {
            job,
            status,
            error,
            reports,
        });
    }

    fn fail_all_jobs(&mut self, why: &str) {
        for (job, mut waiting) in std::mem::take(&mut self.jobs) {
            for account in std::mem::take(&mut waiting.waiting) {
                waiting.reports.push(AccountReport {
                    account,
                    folders: Vec::new(),
                    error: Some(why.to_owned()),
                });
            }
            self.finish_job(job, waiting.reports);
        }
    }

    async fn on_request(&mut self, request: Request) {
        match request {
            Request::Sync {
                account,
                folders,
                allow_mass_delete,
                reply,
            } => {
                let result = self.sync(account, folders, allow_mass_delete);
                let _ = reply.send(result);
            }
            Request::Pause {
                account,
                seconds,
                reply,
            } => {
                let _ = reply.send(self.pause(&account, seconds));
            }
            Request::Resume { account, reply } => {
                let _ = reply.send(self.resume(&account));
            }
            Request::Reload { reply } => {
                self.notifier.reloading();
                let result = self.reload().await;
                self.notifier.ready(&status_line(&self.statuses));
                let _ = reply.send(result);
            }
        }
    }

    fn known(&self, account: &str) -> Result<&Running, ControlError> {
        self.running
            .get(account)
            .ok_or_else(|| ControlError::UnknownAccount {
                name: account.to_owned(),
                known: self.running.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    fn sync(
        &mut self,
        account: Option<String>,
        folders: Vec<String>,
        allow_mass_delete: bool,
    ) -> Result<JobId, ControlError> {
        let folders = folders
            .iter()
            .map(|f| control::requested_folder(f))
            .collect::<Result<Vec<_>, _>>()?;
        let targets: Vec<String> = match account {
            Some(name) => {
                self.known(&name)?;
                if let Some(p) = self.statuses.get(&name).and_then(|s| s.paused) {
                    return Err(ControlError::Paused {
                        account: name,
                        until: p.describe(),
                    });
                }
                vec![name]
            }
            None => self
                .running
                .keys()
                .filter(|a| self.statuses.get(*a).is_none_or(|s| s.paused.is_none()))
                .cloned()
                .collect(),
        };
        self.last_job += 1;
        let job = self.last_job;
        self.jobs.insert(
            job,
            Job {
                waiting: targets.iter().cloned().collect(),
                reports: Vec::new(),
            },
        );
        for name in &targets {
            let sent = self.running.get(name).is_some_and(|r| {
                r.control
                    .send(Control::Sync {
                        job,
                        folders: folders.clone(),
                        allow_mass_delete,
                    })
                    .is_ok()
            });
            if !sent {
                self.job_answered(
                    job,
                    name,
                    AccountReport {
                        account: name.clone(),
                        folders: Vec::new(),
                        error: Some("the account is not running".to_owned()),
                    },
                );
            }
        }
        if targets.is_empty()
            && let Some(done) = self.jobs.remove(&job)
        {
            self.finish_job(job, done.reports);
        }
        tracing::debug!(job, accounts = targets.len(), "sync requested");
        Ok(job)
    }

    fn pause(&mut self, account: &str, seconds: u64) -> Result<(), ControlError> {
        self.known(account)?;
        let seconds = control::requested_pause(seconds)?;
        let pause = Pause::for_seconds(seconds, SystemTime::now());
        pause::save(&self.config.state_dir, account, &pause)
            .map_err(|e| ControlError::Failed(e.to_string()))?;
        tracing::info!(account, "pause requested {}", pause.describe());
        if let Some(r) = self.running.get(account) {
            let _ = r.control.send(Control::Pause);
        }
        if let Some(status) = self.statuses.get_mut(account) {
            status.paused = Some(pause);
            let snapshot = status.clone();
            self.publish(Event::Status(snapshot));
        }
        Ok(())
    }

    fn resume(&mut self, account: &str) -> Result<(), ControlError> {
        self.known(account)?;
        pause::clear(&self.config.state_dir, account)
            .map_err(|e| ControlError::Failed(e.to_string()))?;
        if let Some(r) = self.running.get(account) {
            let _ = r.control.send(Control::Resume);
        }
        if let Some(status) = self.statuses.get_mut(account)
            && status.paused.take().is_some()
        {
            tracing::info!(account, "resume requested");
            let snapshot = status.clone();
            self.publish(Event::Status(snapshot));
        }
        Ok(())
    }

    /// How long until the next timed pause ends.
    fn next_pause_end(&self) -> Option<Duration> {
        let now = SystemTime::now();
        self.statuses
            .values()
            .filter_map(|s| s.paused.and_then(|p| p.until))
            .min()
            .map(|t| t.duration_since(now).unwrap_or(Duration::ZERO))
    }

    fn end_pauses(&mut self) {
        let now = SystemTime::now();
        let over: Vec<String> = self
            .statuses
            .iter()
            .filter(|(_, s)| s.paused.is_some_and(|p| p.is_over(now)))
            .map(|(name, _)| name.clone())
            .collect();
        for account in over {
            tracing::info!(account = %account, "the pause is over");
            if let Err(e) = self.resume(&account) {
                tracing::error!(account = %account, "cannot end the pause: {e}");
                // Not retried in a busy loop: the status keeps no end any more.
                if let Some(status) = self.statuses.get_mut(&account) {
                    status.paused = Some(Pause { until: None });
                }
            }
        }
    }
}

/// An account's status before its task reports: syncing soon, or paused.
fn initial_status(config: &Config, account: &config::Account, now: SystemTime) -> AccountStatus {
    let mut status = AccountStatus::new(&account.name);
    status.paused = pause::load(&config.state_dir, &account.name, now);
    if status.paused.is_some() {
        status.state = StateKind::Paused;
    }
    status
}

fn count(values: impl IntoIterator<Item = usize>) -> u32 {
    u32::try_from(values.into_iter().sum::<usize>()).unwrap_or(u32::MAX)
}

/// The line `systemctl --user status` shows, e.g.
/// `2 accounts: personal idle, work syncing; last sync 14:02`.
fn status_line(statuses: &BTreeMap<String, AccountStatus>) -> String {
    let parts: Vec<String> = statuses
        .iter()
        .map(|(name, s)| format!("{name} {}", s.state.as_str()))
        .collect();
    let last = statuses
        .values()
        .filter_map(|s| s.last_sync)
        .max()
        .map(|t| {
            chrono::DateTime::<chrono::Local>::from(t)
                .format("%H:%M")
                .to_string()
        });
    let mut line = format!("{} accounts: {}", statuses.len(), parts.join(", "));
    if let Some(t) = last {
        line.push_str(&format!("; last sync {t}"));
    }
    line
}
