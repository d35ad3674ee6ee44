//! Folders synced side by side. The folders that changed go to a queue; the first connection
//! works through it, and up to `max_connections - 1` more connection pairs ("lanes") are opened
//! to help when there is more than one folder to do. Each lane has its own server connection,
//! local store and state connection; a folder is only ever synced by one of them, so every
//! folder keeps the executor's crash-safe order of effects and state commits.
//!
//! Progress and reports travel back to the caller's observer over a channel, and the reports
//! are returned in the plan's order. An error that ends the account on one lane stops the
//! others after their current folder, as it stops the sequential run.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::{self as engine, FolderJob, FolderReport, Observer, SyncError, SyncOptions};
use crate::model::FolderName;
use crate::state::StateDb;
use crate::store::Store;
use crate::store::readonly::ReadOnly;

/// How long folders must have waited in the queue before lane 1 opens (lane 2 after twice
/// that...), unless a folder is synced for the first time.
const LANE_START_STEP: Duration = Duration::from_millis(30);

/// One more connection pair, with a state connection of its own.
pub struct Lane {
    pub remote: Box<dyn Store>,
    pub local: Box<dyn Store>,
    pub state: StateDb,
}

/// Opens lanes for one account.
#[async_trait]
pub trait OpenLane: Send + Sync {
    async fn open(&self) -> Result<Lane, SyncError>;
}

/// How far folders may be spread: up to `extra` lanes besides the first connection.
#[derive(Clone)]
pub struct Lanes {
    pub extra: usize,
    pub opener: Arc<dyn OpenLane>,
}

/// Syncs `jobs`, on the given stores and, when allowed and worth it, on more lanes. Returns
/// the reports with their place in the plan, or the first error that ends the account.
pub(crate) async fn sync_jobs(
    remote: &mut dyn Store,
    local: &mut dyn Store,
    state: &mut StateDb,
    jobs: Vec<FolderJob>,
    options: &SyncOptions,
    observer: &mut dyn Observer,
    lanes: Option<&Lanes>,
) -> Result<Vec<(usize, FolderReport)>, SyncError> {
    let mut reports = Vec::new();
    let lanes = lanes.filter(|_| !options.dry_run).map(|lanes| Lanes {
        extra: lanes.extra.min(jobs.len().saturating_sub(1)),
        opener: lanes.opener.clone(),
    });
    let Some(lanes) = lanes.filter(|lanes| lanes.extra > 0) else {
        for job in jobs {
            let (order, report, result) =
                sync_job(remote, local, state, job, options, observer).await;
            engine::finish(order, result, report, observer, &mut reports)?;
        }
        return Ok(reports);
    };

    // A first sync has all of a folder's mail to copy: no need to wait and see.
    let step = if jobs.iter().any(|job| job.first_sync) {
        Duration::ZERO
    } else {
        LANE_START_STEP
    };
    let queue = Arc::new(Queue::new(jobs));
    let (events, mut received) = mpsc::unbounded_channel();
    let mut helpers = JoinSet::new();
    let shared_options = Arc::new(options.clone());
    for number in 1..=lanes.extra {
        helpers.spawn(
            helper(
                step * u32::try_from(number).unwrap_or(u32::MAX),
                lanes.opener.clone(),
                queue.clone(),
                shared_options.clone(),
                Relay(events.clone()),
            )
            .instrument(tracing::debug_span!("lane", number)),
        );
    }
    let first = {
        let mut relay = Relay(events);
        let queue = queue.clone();
        async move { work(remote, local, state, &queue, options, &mut relay).await }
    };
    // Runs until every lane has dropped its sender: all of them are done.
    let relay_to_observer = async {
        let mut ending = None;
        while let Some(event) = received.recv().await {
            match event {
                Event::Planned(folder, actions) => observer.folder_planned(&folder, actions),
                Event::Advanced(count) => observer.advanced(count),
                Event::Done(done) => {
                    let Done {
                        order,
                        report,
                        result,
                    } = *done;
                    if let Err(e) = engine::finish(order, result, report, observer, &mut reports) {
                        ending.get_or_insert(e);
                    }
                }
            }
        }
        ending
    };
    let ((), ending) = tokio::join!(first, relay_to_observer);
    while let Some(joined) = helpers.join_next().await {
        if let Err(e) = joined {
            tracing::error!("a sync connection's task failed: {e}");
        }
    }
    match ending {
        Some(e) => Err(e),
        None => Ok(reports),
    }
}

/// Opens a lane after `wait` and works through the queue with it, unless the queue emptied
/// meanwhile. Lanes start one after another, each only while folders are still waiting: most
/// re-syncs list a few folders and are done before a login would be.
async fn helper(
    wait: Duration,
    opener: Arc<dyn OpenLane>,
    queue: Arc<Queue>,
    options: Arc<SyncOptions>,
    mut relay: Relay,
) {
    let mut drained = queue.drained.subscribe();
    tokio::select! {
        () = tokio::time::sleep(wait) => {}
        // The last folder was taken meanwhile: nothing to open a connection for.
        _ = drained.wait_for(|drained| *drained) => return,
    }
    if queue.is_empty() {
        return;
    }
    let mut lane = match opener.open().await {
        Ok(lane) => lane,
        Err(e) => {
            // The server may allow fewer connections than configured: the others go on.
            tracing::info!("could not open another connection, syncing with fewer: {e}");
            return;
        }
    };
    {
        // A read-only side is guarded below the planner here too, as on the first connection.
        let (mut remote_guard, mut local_guard);
        let remote: &mut dyn Store = if options.policy.readonly_remote {
            remote_guard = ReadOnly::new(lane.remote.as_mut());
            &mut remote_guard
        } else {
            lane.remote.as_mut()
        };
        let local: &mut dyn Store = if options.policy.readonly_local {
            local_guard = ReadOnly::new(lane.local.as_mut());
            &mut local_guard
        } else {
            lane.local.as_mut()
        };
        work(remote, local, &mut lane.state, &queue, &options, &mut relay).await;
    }
    lane.remote.close().await;
    lane.local.close().await;
}

/// Takes folders from the queue until it is empty or stopped.
async fn work(
    remote: &mut dyn Store,
    local: &mut dyn Store,
    state: &mut StateDb,
    queue: &Queue,
    options: &SyncOptions,
    relay: &mut Relay,
) {
    while let Some(job) = queue.next() {
        let (order, report, result) = sync_job(remote, local, state, job, options, relay).await;
        if matches!(&result, Err(e) if e.ends_account()) {
            queue.stop();
        }
        // The receiver lives until every sender is gone.
        let _ = relay.0.send(Event::Done(Box::new(Done {
            order,
            report,
            result,
        })));
    }
}

async fn sync_job(
    remote: &mut dyn Store,
    local: &mut dyn Store,
    state: &mut StateDb,
    job: FolderJob,
    options: &SyncOptions,
    observer: &mut dyn Observer,
) -> (usize, FolderReport, Result<(), SyncError>) {
    let FolderJob {
        order,
        remote: remote_name,
        local: name,
        missing,
        local_changed,
        mut report,
        ..
    } = job;
    let span = tracing::info_span!("folder", folder = %name, remote = %remote_name);
    let mut cx = engine::FolderSync {
        remote,
        local,
        state,
        options,
        observer,
        report: &mut report,
    };
    let result = engine::sync_folder(&mut cx, &remote_name, &name, missing, local_changed)
        .instrument(span)
        .await;
    (order, report, result)
}

struct Queue {
    jobs: Mutex<VecDeque<FolderJob>>,
    stopped: AtomicBool,
    /// True once the last job was taken, or the queue stopped.
    drained: watch::Sender<bool>,
}

impl Queue {
    fn new(jobs: Vec<FolderJob>) -> Self {
        Self {
            drained: watch::Sender::new(jobs.is_empty()),
            jobs: Mutex::new(jobs.into()),
            stopped: AtomicBool::new(false),
        }
    }

    fn next(&self) -> Option<FolderJob> {
        if self.stopped.load(Ordering::Acquire) {
            return None;
        }
        // Nothing panics while holding the lock; a poisoned queue is still a queue.
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        let job = jobs.pop_front();
        if jobs.is_empty() {
            self.drained.send_replace(true);
        }
        job
    }

    fn is_empty(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
            || self
                .jobs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty()
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.drained.send_replace(true);
    }
}

enum Event {
    Planned(FolderName, usize),
    Advanced(usize),
    Done(Box<Done>),
}

struct Done {
    order: usize,
    report: FolderReport,
    result: Result<(), SyncError>,
}

/// An observer that forwards progress to the caller's, across tasks.
struct Relay(mpsc::UnboundedSender<Event>);

impl Observer for Relay {
    fn folder_planned(&mut self, folder: &FolderName, actions: usize) {
        let _ = self.0.send(Event::Planned(folder.clone(), actions));
    }

    fn advanced(&mut self, count: usize) {
        let _ = self.0.send(Event::Advanced(count));
    }
}
