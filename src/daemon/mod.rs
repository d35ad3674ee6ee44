//! `idlewild daemon`: keeps every account in step in real time until stopped.
//!
//! The main task owns the accounts' supervisor tasks (`supervisor.rs`), the service manager's
//! readiness protocol and the signals: SIGHUP reloads the configuration (accounts added,
//! removed or changed are started, stopped or restarted; the others are not touched), SIGTERM
//! and SIGINT stop gracefully within a bound.

mod backoff;
mod local;
mod sleep;
mod supervisor;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{self, Config};
use crate::model::FolderName;
use crate::notify::Notifier;

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

/// What an account reports to the main task.
#[derive(Debug, Clone)]
pub struct Report {
    pub account: String,
    pub state: AccountState,
}

#[derive(Debug, Clone)]
pub enum AccountState {
    Syncing {
        first: bool,
    },
    Idle {
        last_sync: SystemTime,
        new_mail: usize,
    },
    Offline(String),
    Error(String),
    Stopped,
}

/// How long a stop may take before the syncs still running are abandoned. Abandoning is safe
/// (every step is recorded before it is made, as for a crash) but wastes the work in flight.
const STOP_GRACE: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot install a signal handler: {0}")]
    Signals(std::io::Error),
}

struct Running {
    account: config::Account,
    cancel: CancellationToken,
}

/// Runs until SIGTERM or SIGINT. `config_path` is read again on SIGHUP.
pub async fn run(config_path: PathBuf, config: Config) -> Result<(), DaemonError> {
    let notifier = Notifier::from_env();
    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;

    let tasks = TaskTracker::new();
    let (report_tx, mut report_rx) = mpsc::channel::<Report>(256);
    let mut config = Arc::new(config);
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    let mut states: BTreeMap<String, AccountState> = BTreeMap::new();
    let (resumed_tx, resumed) = tokio::sync::watch::channel(0u64);
    let sleep_watch = tokio::spawn(sleep::watch(resumed_tx));
    let ctx = Context {
        tasks: tasks.clone(),
        reports: report_tx.clone(),
        resumed,
    };
    for account in &config.accounts {
        start(&ctx, &config, account, &mut running);
    }
    tracing::info!(accounts = running.len(), "daemon started");

    // READY=1 means: every account's first sync has started (its watchers were started before
    // it). Mail that arrives from now on is seen.
    let mut ready = false;
    let mut watchdog = tokio::time::interval(
        notifier
            .watchdog_interval()
            .unwrap_or(Duration::from_secs(3600)),
    );
    let watchdog_on = notifier.watchdog_interval().is_some();

    loop {
        tokio::select! {
            Some(report) = report_rx.recv() => {
                states.insert(report.account.clone(), report.state);
                if !ready && running.keys().all(|a| states.get(a).is_some_and(started)) {
                    ready = true;
                    notifier.ready(&status_line(&states));
                    tracing::info!("ready");
                } else if ready {
                    notifier.status(&status_line(&states));
                }
            }
            _ = watchdog.tick(), if watchdog_on => notifier.watchdog(),
            _ = hup.recv() => {
                notifier.reloading();
                match config::load(&config_path) {
                    Ok(new) => {
                        for w in &new.warnings {
                            tracing::warn!("{w}");
                        }
                        let new = Arc::new(new);
                        let everything = new.state_dir != config.state_dir;
                        reload(&ctx, &new, everything, &mut running, &mut states).await;
                        config = new;
                        tracing::info!(accounts = running.len(), "configuration reloaded");
                    }
                    Err(e) => tracing::error!("reload refused, keeping the running configuration: {e}"),
                }
                notifier.ready(&status_line(&states));
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }

    notifier.stopping();
    tracing::info!("stopping");
    sleep_watch.abort();
    for r in running.values() {
        r.cancel.cancel();
    }
    tasks.close();
    if tokio::time::timeout(STOP_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "syncs still running after {} s were abandoned; the next start finishes them",
            STOP_GRACE.as_secs()
        );
    }
    Ok(())
}

/// What every account task is handed besides its configuration.
struct Context {
    tasks: TaskTracker,
    reports: mpsc::Sender<Report>,
    /// Bumped after each resume from suspend.
    resumed: tokio::sync::watch::Receiver<u64>,
}

fn start(
    ctx: &Context,
    config: &Arc<Config>,
    account: &config::Account,
    running: &mut BTreeMap<String, Running>,
) {
    let cancel = CancellationToken::new();
    let span = tracing::info_span!("account", account = %account.name);
    ctx.tasks.spawn(tracing::Instrument::instrument(
        supervisor::run(
            config.clone(),
            account.clone(),
            ctx.reports.clone(),
            ctx.resumed.clone(),
            cancel.clone(),
        ),
        span,
    ));
    running.insert(
        account.name.clone(),
        Running {
            account: account.clone(),
            cancel,
        },
    );
}

/// Applies a new configuration: accounts that are gone or changed are stopped (and waited
/// for, so their lock is free), new and changed ones started, the rest left running.
async fn reload(
    ctx: &Context,
    config: &Arc<Config>,
    everything: bool,
    running: &mut BTreeMap<String, Running>,
    states: &mut BTreeMap<String, AccountState>,
) {
    let wanted: BTreeMap<&str, &config::Account> = config
        .accounts
        .iter()
        .map(|a| (a.name.as_str(), a))
        .collect();
    let stale: Vec<String> = running
        .iter()
        .filter(|(name, r)| {
            wanted
                .get(name.as_str())
                .is_none_or(|a| everything || a.source != r.account.source)
        })
        .map(|(name, _)| name.clone())
        .collect();
    for name in &stale {
        if let Some(r) = running.remove(name) {
            tracing::info!(account = %name, "stopping account for the new configuration");
            r.cancel.cancel();
            states.remove(name);
        }
    }
    if !stale.is_empty() {
        // A stopped account's task releases its lock as it ends; a restarted copy that still
        // finds the lock held retries with backoff, so this pause only saves that retry.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for account in &config.accounts {
        if !running.contains_key(&account.name) {
            tracing::info!(account = %account.name, "starting account");
            start(ctx, config, account, running);
        }
    }
}

fn started(state: &AccountState) -> bool {
    !matches!(state, AccountState::Stopped)
}

/// The line `systemctl --user status` shows, e.g.
/// `2 accounts: personal idle, work syncing; last sync 14:02`.
fn status_line(states: &BTreeMap<String, AccountState>) -> String {
    let parts: Vec<String> = states
        .iter()
        .map(|(name, s)| {
            let what = match s {
                AccountState::Syncing { .. } => "syncing".to_owned(),
                AccountState::Idle { .. } => "idle".to_owned(),
                AccountState::Offline(_) => "offline".to_owned(),
                AccountState::Error(_) => "error".to_owned(),
                AccountState::Stopped => "stopped".to_owned(),
            };
            format!("{name} {what}")
        })
        .collect();
    let last = states
        .values()
        .filter_map(|s| match s {
            AccountState::Idle { last_sync, .. } => Some(*last_sync),
            _ => None,
        })
        .max()
        .map(|t| {
            chrono::DateTime::<chrono::Local>::from(t)
                .format("%H:%M")
                .to_string()
        });
    let mut line = format!("{} accounts: {}", states.len(), parts.join(", "));
    if let Some(t) = last {
        line.push_str(&format!("; last sync {t}"));
    }
    line
}
