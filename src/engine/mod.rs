//! The executor: gathers both sides' listings, asks the planner what to do, and carries the plan
//! out in an order that a crash at any point can recover from.
//!
//! The rule for every effect: record the intent durably, make the effect, then confirm it.
//! - Copy to the Maildir: commit a `download` intent with the Maildir id reserved for the file,
//!   write and fsync the file, rename it in, fsync the directory, confirm. After a crash the
//!   reserved id tells whether the file made it.
//! - Copy to the server: commit an `upload` intent with the server's UIDNEXT and the content's
//!   size and SHA-256, APPEND, confirm with the APPENDUID. After a crash (or without APPENDUID)
//!   the copy is found among the new server messages by content instead of being sent twice.
//! - Flags and deletions: make the effect first, then update the state. Replaying them is
//!   harmless, and forgetting a pair before its deletion is done would make the survivor look new
//!   and copy it back.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use tracing::Instrument;

use crate::config::MassDeleteGuard;
use crate::folders::{self, FolderMapError, FolderRules, Problem, Selection};
use crate::plan::incremental;
pub mod account;
pub mod lanes;

use crate::model::{Flags, FolderName, FolderSnapshot, MessageMeta, MsgId, Uid, UidValidity};
use crate::plan::recover::{self, Known};
use crate::plan::{
    self, Action, FolderAction, FolderFacts, FolderPolicy, Kept, Limits, OutOfLimits, Plan, Policy,
    Record, RecordId, Side, Survivor,
};
use crate::state::{FolderState, FolderStatus, Pending, Skipped, StateDb, StateError};
use crate::store::readonly::ReadOnly;
use crate::store::{Absence, FailureKind, FlagUpdate, Listing, Since, Staged, Store, StoreError};
use lanes::Lanes;

/// How many messages are uploaded between two state commits.
const BATCH: usize = 64;

/// Downloads go in batches that start small, so the first messages show up soon, and grow to
/// this many: each batch costs two state commits and one flush of the Maildir.
const MAX_DOWNLOAD_BATCH: usize = 512;

fn download_batches<T>(downloads: &[T]) -> Vec<&[T]> {
    let mut batches = Vec::new();
    let mut rest = downloads;
    let mut size = BATCH;
    while !rest.is_empty() {
        let (batch, tail) = rest.split_at(size.min(rest.len()));
        batches.push(batch);
        rest = tail;
        size = (size * 2).min(MAX_DOWNLOAD_BATCH);
    }
    batches
}

#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// Only these folders (all when empty), by their local name; a name no local folder has
    /// is taken as a server name (wake-ups and people may name either).
    pub folders: Vec<FolderName>,
    /// Plan and report, change nothing on either side nor in the state.
    pub dry_run: bool,
    /// Let the deletions the safety valve would stop go through.
    pub allow_mass_delete: bool,
    pub guard: MassDeleteGuard,
    /// Where stores that do not care stage messages.
    pub scratch_dir: PathBuf,
    /// Which folders are synced, and their local names.
    pub rules: FolderRules,
    /// Where folders are created and removed.
    pub folder_policy: FolderPolicy,
    /// Read-only sides and whether deletions travel.
    pub policy: Policy,
    /// `max_age` and `max_size`.
    pub limits: Limits,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{side}: {source}")]
    Store {
        side: Side,
        #[source]
        source: StoreError,
    },
    /// A file on this machine could not be written or read, whichever store was at work (the
    /// server's messages are staged in local files): a full disk is not the server's fault.
    #[error("{}", crate::disk::describe(path, source))]
    Disk {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Folders(#[from] FolderMapError),
}

impl SyncError {
    pub(crate) fn remote(source: StoreError) -> Self {
        Self::from_store(Side::Remote, source)
    }
    pub(crate) fn local(source: StoreError) -> Self {
        Self::from_store(Side::Local, source)
    }
    fn from_store(side: Side, source: StoreError) -> Self {
        match source {
            StoreError::Io { path, source } => SyncError::Disk { path, source },
            source => SyncError::Store { side, source },
        }
    }
    /// For a full disk (or quota), a directory on the filesystem that is full: syncs fail
    /// until room is made there, which the daemon watches for rather than backing off.
    pub fn full_disk(&self) -> Option<PathBuf> {
        match self {
            SyncError::Disk { path, source } if crate::disk::is_full(source) => {
                Some(crate::disk::place_of(path))
            }
            SyncError::State(e) => e.full_disk(),
            SyncError::Disk { .. } | SyncError::Store { .. } | SyncError::Folders(_) => None,
        }
    }
    /// Whether the rest of the account can still be synced after this error.
    pub fn ends_account(&self) -> bool {
        match self {
            SyncError::Store {
                side: Side::Remote,
                source,
            } => !matches!(
                source,
                StoreError::Refused { .. }
                    | StoreError::NoSuchFolder(_)
                    | StoreError::FolderName { .. }
                    | StoreError::Invalid(_)
                    | StoreError::NotEmpty(_)
            ),
            // A folder name the Maildir cannot hold concerns that folder alone.
            SyncError::Store {
                side: Side::Local,
                source: StoreError::FolderName { .. },
            } => false,
            SyncError::Store {
                side: Side::Local,
                source,
            } => source.kind() == FailureKind::Permanent,
            // Other folders may still need no room: flag changes and deletions go on.
            SyncError::Disk { .. } => false,
            SyncError::State(_) | SyncError::Folders(_) => true,
        }
    }
}

/// What happened to one folder. Clients read it as `control::FolderReportJson`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderReport {
    /// The local name (what a mail client shows).
    pub folder: String,
    /// The server's name for it (the same unless `folders.rename` or a preset renames it).
    pub remote_folder: String,
    pub downloaded: usize,
    pub uploaded: usize,
    pub flags_remote: usize,
    pub flags_local: usize,
    pub deleted_remote: usize,
    pub deleted_local: usize,
    /// Created on this side before syncing.
    pub created: Option<String>,
    /// Removed on this side, because it was deleted on the other.
    pub removed: Option<String>,
    /// Left alone by the safety valve, with the reason.
    pub refused: Option<String>,
    pub error: Option<String>,
    /// In a dry run: what would have been done.
    pub planned: Vec<String>,
    /// Copies recovered from an interrupted run.
    pub recovered: usize,
    /// Messages not copied because they are bigger than `max_size`.
    pub skipped_too_big: Vec<SkippedMessage>,
    /// How many messages were not copied because they are older than `max_age`.
    pub skipped_too_old: usize,
    /// The folder failed for want of room on this directory's filesystem: the daemon syncs
    /// again as soon as room shows there.
    pub full_disk: Option<PathBuf>,
}

/// A message `max_size` kept from being copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedMessage {
    /// The side it is on: "server" or "local".
    pub side: String,
    /// Its id there (a UID, or a Maildir file's unique name).
    pub id: String,
    pub size: u64,
}

impl FolderReport {
    fn new(local: &FolderName, remote: &FolderName) -> Self {
        Self {
            folder: local.to_string(),
            remote_folder: remote.to_string(),
            ..Self::default()
        }
    }
}

/// Receives progress as the executor works, for progress bars and logs.
pub trait Observer: Send {
    fn folder_planned(&mut self, _folder: &FolderName, _actions: usize) {}
    fn advanced(&mut self, _count: usize) {}
    fn folder_done(&mut self, _report: &FolderReport) {}
}

pub struct NoObserver;
impl Observer for NoObserver {}

/// One folder pair and what a run does with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFolder {
    pub remote: FolderName,
    pub local: FolderName,
    pub on_remote: bool,
    pub on_local: bool,
    /// Message pairs the state holds for it; `None` when the state does not know the folder.
    pub known: Option<usize>,
    /// The local name the folder was last synced under, when the rules now give another: the
    /// state's pairs name messages of that other local folder, so they are dropped and the
    /// messages paired again by content, as on a first sync.
    pub relocated_from: Option<FolderName>,
    pub step: Step,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Left out by `folders.include`/`folders.exclude`: never created, touched or deleted on
    /// either side, and its state is kept for when it is selected again.
    Skipped(Selection),
    Act(FolderAction),
    /// Its contents could not be looked at; the folder is reported failed, the rest go on.
    Failed(String),
}

/// Every folder pair of an account with what a run would do, and what is wrong with the
/// mapping (when anything is, a sync does nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderOverview {
    pub folders: Vec<PlannedFolder>,
    pub problems: Vec<Problem>,
}

/// Lists both sides, maps the folders (`folders::map_folders`) and decides what to do with each
/// selected pair (`plan::decide_folder`). Changes nothing, but opens the surviving side of a
/// folder deleted on the other, to see what it holds.
pub async fn plan_folders(
    remote: &mut dyn Store,
    local: &mut dyn Store,
    // `&mut` only because a shared reference to the database is not `Send`.
    state: &mut StateDb,
    options: &SyncOptions,
) -> Result<FolderOverview, SyncError> {
    let remote_folders = remote.list_folders().await.map_err(SyncError::remote)?;
    let local_folders = local.list_folders().await.map_err(SyncError::local)?;
    // Keyed by the server name: renaming rules may change without the state losing track.
    let known: HashMap<FolderName, FolderState> = state
        .folders()?
        .into_iter()
        .map(|f| (f.name.clone(), f))
        .collect();
    let known_names: Vec<FolderName> = known.keys().cloned().collect();
    let map = folders::map_folders(
        &remote_folders,
        &local_folders,
        &known_names,
        &options.rules,
    );
    if !map.problems.is_empty() {
        // Nothing is decided: the folders are only listed, for `idlewild folders`.
        let mut folders = Vec::new();
        for m in &map.folders {
            folders.push(PlannedFolder {
                remote: m.remote.clone(),
                local: m.local.clone(),
                on_remote: m.on_remote,
                on_local: m.on_local,
                known: match known.get(&m.remote) {
                    Some(f) => Some(state.count(f.id)?),
                    None => None,
                },
                relocated_from: None,
                step: if m.selection.is_included() {
                    Step::Failed("not synced: the folder names do not map one to one".into())
                } else {
                    Step::Skipped(m.selection.clone())
                },
            });
        }
        return Ok(FolderOverview {
            folders,
            problems: map.problems,
        });
    }
    let asked = |m: &folders::MappedFolder| {
        options.folders.is_empty()
            || options.folders.iter().any(|n| {
                m.local == *n || (m.remote == *n && !map.folders.iter().any(|o| o.local == *n))
            })
    };
    let local_names = state.folder_local_names()?;
    let mut planned = Vec::new();
    // The facts and decisions of the folders acted on, in `planned`'s order.
    let mut facts = Vec::new();
    for m in map.folders.iter().filter(|m| asked(m)) {
        let relocated_from = local_names
            .get(&m.remote)
            .filter(|old| **old != m.local && m.selection.is_included())
            .cloned();
        // A relocated folder is planned as one the state does not know.
        let state_folder = known.get(&m.remote).filter(|_| relocated_from.is_none());
        let count = match state_folder {
            Some(f) => Some(state.count(f.id)?),
            None => None,
        };
        let mut folder = PlannedFolder {
            remote: m.remote.clone(),
            local: m.local.clone(),
            on_remote: m.on_remote,
            on_local: m.on_local,
            known: count,
            relocated_from,
            step: Step::Skipped(m.selection.clone()),
        };
        if !m.selection.is_included() {
            planned.push(folder);
            continue;
        }
        // A known folder missing on one side is deleted there only if that side says it is
        // gone: one it cannot see (a dangling link, an unmounted disk) is left alone on both.
        if state_folder.is_some() && m.on_remote != m.on_local {
            let (store, name, side): (&mut dyn Store, _, _) = if m.on_remote {
                (&mut *local, &m.local, Side::Local)
            } else {
                (&mut *remote, &m.remote, Side::Remote)
            };
            if let Absence::Unavailable(why) = store.absence(name).await {
                folder.step = Step::Failed(format!(
                    "the folder is unavailable on the {side} side ({why}); nothing was changed on either side"
                ));
                planned.push(folder);
                continue;
            }
        }
        let survivor = match (state_folder, m.on_remote, m.on_local) {
            (Some(f), true, false) => survivor(remote, state, f.id, &m.remote, Side::Remote).await,
            (Some(f), false, true) => survivor(local, state, f.id, &m.local, Side::Local).await,
            _ => Ok(None),
        };
        let survivor = match survivor {
            Ok(s) => s,
            Err(e) if e.ends_account() => return Err(e),
            Err(e) => {
                folder.step = Step::Failed(e.to_string());
                planned.push(folder);
                continue;
            }
        };
        let these = FolderFacts {
            known: count,
            on_remote: m.on_remote,
            on_local: m.on_local,
            inbox: m.remote == FolderName::inbox() || m.local == FolderName::inbox(),
            survivor,
        };
        let action = plan::restrict_folder(
            plan::decide_folder(these, options.folder_policy, options.allow_mass_delete),
            options.policy,
        );
        facts.push((these, action));
        folder.step = Step::Act(action);
        planned.push(folder);
    }

    // The folder-level safety valves see every decision at once.
    let valve = plan::hold_mass_folder_removal(&facts, options.guard, options.allow_mass_delete);
    replace_actions(&mut planned, valve);
    let decided: Vec<(FolderName, FolderAction)> = planned
        .iter()
        .filter_map(|p| match p.step {
            Step::Act(a) => Some((p.remote.clone(), a)),
            Step::Skipped(_) | Step::Failed(_) => None,
        })
        .collect();
    replace_actions(
        &mut planned,
        plan::hold_server_parents(&decided, &remote_folders),
    );
    Ok(FolderOverview {
        folders: planned,
        problems: Vec::new(),
    })
}

/// Puts `actions` (one per folder acted on, in order) in place of the folders' decisions.
fn replace_actions(planned: &mut [PlannedFolder], actions: Vec<FolderAction>) {
    let mut actions = actions.into_iter();
    for p in planned {
        if let Step::Act(a) = &mut p.step
            && let Some(new) = actions.next()
        {
            *a = new;
        }
    }
}

/// What the side that still has a folder holds: its messages, and how many of them the state
/// has no pair for.
async fn survivor(
    store: &mut dyn Store,
    state: &mut StateDb,
    folder: i64,
    name: &FolderName,
    side: Side,
) -> Result<Option<Survivor>, SyncError> {
    let wrap = |e| SyncError::Store { side, source: e };
    let snapshot = store.scan(name).await.map_err(wrap)?;
    let paired: HashSet<MsgId> = state
        .records(folder)?
        .into_iter()
        .filter_map(|r| match side {
            Side::Remote => r.remote,
            Side::Local => r.local,
        })
        .collect();
    let unsynced = snapshot
        .messages
        .iter()
        .filter(|m| !paired.contains(&m.id))
        .count();
    Ok(Some(Survivor {
        messages: snapshot.messages.len(),
        unsynced,
    }))
}

/// Syncs the folders of one account. Errors that end the account (a lost connection, the state
/// database failing, a folder mapping that is not one to one) stop it; a folder's own failure is
/// recorded in its report and the next folder is tried.
pub async fn sync_folders(
    remote: &mut dyn Store,
    local: &mut dyn Store,
    state: &mut StateDb,
    options: &SyncOptions,
    observer: &mut dyn Observer,
    lanes: Option<&Lanes>,
) -> Result<Vec<FolderReport>, SyncError> {
    // A read-only side is guarded below the planner too: a write reaching it is an error.
    let (mut remote_guard, mut local_guard);
    let remote: &mut dyn Store = if options.policy.readonly_remote {
        remote_guard = ReadOnly::new(remote);
        &mut remote_guard
    } else {
        remote
    };
    let local: &mut dyn Store = if options.policy.readonly_local {
        local_guard = ReadOnly::new(local);
        &mut local_guard
    } else {
        local
    };
    let overview = plan_folders(remote, local, state, options).await?;
    if !overview.problems.is_empty() {
        return Err(FolderMapError(overview.problems).into());
    }

    // Reports keep the plan's order, whichever lane finishes a folder first.
    let mut reports: Vec<(usize, FolderReport)> = Vec::new();
    let mut jobs = Vec::new();
    // Removals come last, sub-folders before their parents.
    let mut removals = Vec::new();
    for (order, planned) in overview.folders.into_iter().enumerate() {
        let (remote_name, name) = (&planned.remote, &planned.local);
        let span = tracing::info_span!("folder", folder = %name, remote = %remote_name);
        let mut report = FolderReport::new(name, remote_name);
        let action = match &planned.step {
            Step::Skipped(why) => {
                tracing::debug!(folder = %name, remote = %remote_name, "left out: {why}");
                continue;
            }
            Step::Failed(e) => {
                tracing::error!(folder = %name, error = %e, "folder sync failed");
                report.error = Some(e.clone());
                observer.folder_done(&report);
                reports.push((order, report));
                continue;
            }
            Step::Act(action) => *action,
        };
        if let Some(old) = &planned.relocated_from {
            let how = format!(
                "its local name changed from \"{old}\": its messages are paired again by content"
            );
            if options.dry_run {
                report.planned.push(how);
                observer.folder_done(&report);
                reports.push((order, report));
                continue;
            }
            tracing::info!(folder = %name, remote = %remote_name, "{how}");
            if let Some(f) = state.folder(remote_name)? {
                state.forget_folder(f.id)?;
            }
        }
        let result = match action {
            FolderAction::Nothing => continue,
            FolderAction::NotCreated { on } => {
                tracing::info!(folder = %name, remote = %remote_name, "not created on the {on} side (create = \"{}\")", options.folder_policy.create);
                continue;
            }
            FolderAction::Forget => {
                if !options.dry_run
                    && let Some(f) = state.folder(remote_name)?
                {
                    state.forget_folder(f.id)?;
                }
                continue;
            }
            FolderAction::Remove { on, .. } => {
                removals.push((order, on, planned));
                continue;
            }
            FolderAction::Kept { from, reason } => {
                report.refused = Some(FolderAction::explain_kept(from, reason));
                tracing::warn!(folder = %name, remote = %remote_name, "{}", report.refused.as_deref().unwrap_or(""));
                Ok(())
            }
            FolderAction::CreateThenSync { on } => {
                report.created = Some(on.to_string());
                // A dry run creates nothing: the missing side is planned as empty instead.
                let created = if options.dry_run {
                    report
                        .planned
                        .push(format!("create folder on the {on} side"));
                    Ok(Some(on))
                } else {
                    match on {
                        Side::Remote => remote
                            .create_folder(remote_name)
                            .await
                            .map_err(SyncError::remote),
                        Side::Local => local.create_folder(name).await.map_err(SyncError::local),
                    }
                    .map(|()| None)
                };
                let created = match created {
                    Ok(None) => state
                        .set_folder_local_name(remote_name, name)
                        .map(|()| None)
                        .map_err(SyncError::from),
                    other => other,
                };
                match created {
                    Ok(missing) => {
                        jobs.push(FolderJob {
                            order,
                            remote: remote_name.clone(),
                            local: name.clone(),
                            missing,
                            first_sync: planned.known.is_none(),
                            report,
                        });
                        continue;
                    }
                    Err(e) => Err(e),
                }
            }
            FolderAction::Sync => {
                let unchanged = async {
                    if options.dry_run {
                        return Ok(false);
                    }
                    state.set_folder_local_name(remote_name, name)?;
                    match state.folder(remote_name)? {
                        Some(folder) => unchanged(remote, local, state, &folder, name).await,
                        None => Ok(false),
                    }
                }
                .instrument(span.clone())
                .await;
                match unchanged {
                    Ok(false) => {
                        jobs.push(FolderJob {
                            order,
                            remote: remote_name.clone(),
                            local: name.clone(),
                            missing: None,
                            first_sync: planned.known.is_none(),
                            report,
                        });
                        continue;
                    }
                    Ok(true) => {
                        tracing::debug!(folder = %name, remote = %remote_name, "unchanged on both sides since the last sync");
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
        };
        finish(order, result, report, observer, &mut reports)?;
    }

    if !jobs.is_empty() {
        if lanes.is_some() {
            // Biggest first: the last folder to start should be a small one.
            jobs.sort_by_key(|job| {
                std::cmp::Reverse(remote.message_count_hint(&job.remote).unwrap_or(0))
            });
        }
        reports
            .extend(lanes::sync_jobs(remote, local, state, jobs, options, observer, lanes).await?);
    }

    removals.sort_by(|(_, a_on, a), (_, b_on, b)| {
        let key = |on: &Side, p: &PlannedFolder| match on {
            Side::Remote => p.remote.clone(),
            Side::Local => p.local.clone(),
        };
        key(b_on, b).cmp(&key(a_on, a))
    });
    for (order, on, planned) in removals {
        let mut report = FolderReport::new(&planned.local, &planned.remote);
        let span = tracing::info_span!("folder", folder = %planned.local, remote = %planned.remote);
        let result = remove_folder(remote, local, state, &planned, on, options, &mut report)
            .instrument(span)
            .await;
        finish(order, result, report, observer, &mut reports)?;
    }
    reports.sort_by_key(|(order, _)| *order);
    Ok(reports.into_iter().map(|(_, report)| report).collect())
}

/// A folder to list, plan and sync (after its creation, if it was missing), on whichever
/// connection is free.
pub(crate) struct FolderJob {
    /// Its place in the plan, which the reports keep.
    pub order: usize,
    pub remote: FolderName,
    pub local: FolderName,
    /// The side it is still missing from (a dry run creates nothing).
    pub missing: Option<Side>,
    /// The state does not know the folder yet: all of its mail is to be copied.
    pub first_sync: bool,
    pub report: FolderReport,
}

/// Records a folder's outcome; an error that ends the account is returned.
pub(crate) fn finish(
    order: usize,
    result: Result<(), SyncError>,
    mut report: FolderReport,
    observer: &mut dyn Observer,
    reports: &mut Vec<(usize, FolderReport)>,
) -> Result<(), SyncError> {
    let ends = match result {
        Ok(()) => None,
        Err(e) => {
            tracing::error!(folder = %report.folder, error = %e, "folder sync failed");
            report.error = Some(e.to_string());
            report.full_disk = e.full_disk();
            e.ends_account().then_some(e)
        }
    };
    observer.folder_done(&report);
    reports.push((order, report));
    match ends {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Removes a folder deleted on the other side from `on`. Its messages go first, through the
/// ordinary deletion (effect, then state), and only those the state pairs: anything else in it
/// arrived after the last sync, exists nowhere else, and keeps the folder. The store removes
/// only an empty folder, so mail arriving meanwhile keeps it too. Then the state forgets it; a
/// crash in between leaves a known folder missing on both sides, which the next run forgets.
async fn remove_folder(
    remote: &mut dyn Store,
    local: &mut dyn Store,
    state: &mut StateDb,
    planned: &PlannedFolder,
    on: Side,
    options: &SyncOptions,
    report: &mut FolderReport,
) -> Result<(), SyncError> {
    let from = on.other();
    if options.dry_run {
        report.planned.push(format!(
            "remove the folder on the {on} side (deleted on the {from} side)"
        ));
        report.removed = Some(on.to_string());
        return Ok(());
    }
    let (store, name): (&mut dyn Store, &FolderName) = match on {
        Side::Remote => (remote, &planned.remote),
        Side::Local => (local, &planned.local),
    };
    let wrap = |source| SyncError::Store { side: on, source };
    let known = state.folder(&planned.remote)?;
    let snapshot = store.scan(name).await.map_err(wrap)?;
    let records = match &known {
        Some(f) => state.records(f.id)?,
        None => Vec::new(),
    };
    let paired: HashMap<&MsgId, RecordId> = records
        .iter()
        .filter_map(|r| {
            match on {
                Side::Remote => r.remote.as_ref(),
                Side::Local => r.local.as_ref(),
            }
            .map(|id| (id, r.id))
        })
        .collect();
    let unsynced = snapshot
        .messages
        .iter()
        .filter(|m| !paired.contains_key(&m.id))
        .count();
    let kept = |reason| Some(FolderAction::explain_kept(from, reason));
    if unsynced > 0 {
        report.refused = kept(Kept::Unsynced { unsynced });
        tracing::warn!("{}", report.refused.as_deref().unwrap_or(""));
        return Ok(());
    }
    let doomed: Vec<(MsgId, RecordId)> = snapshot
        .messages
        .iter()
        .filter_map(|m| paired.get(&m.id).map(|r| (m.id.clone(), *r)))
        .collect();
    if !doomed.is_empty() {
        let ids: Vec<MsgId> = doomed.iter().map(|(id, _)| id.clone()).collect();
        store.delete(&ids).await.map_err(wrap)?;
        state.remove(&doomed.iter().map(|(_, r)| *r).collect::<Vec<_>>())?;
        match on {
            Side::Remote => report.deleted_remote += ids.len(),
            Side::Local => report.deleted_local += ids.len(),
        }
    }
    match store.delete_folder(name).await {
        Ok(()) => {}
        Err(StoreError::NotEmpty(_)) => {
            report.refused = kept(Kept::NotEmpty);
            tracing::warn!("{}", report.refused.as_deref().unwrap_or(""));
            return Ok(());
        }
        Err(e) => return Err(wrap(e)),
    }
    if let Some(f) = known {
        state.forget_folder(f.id)?;
    }
    tracing::info!("removed the folder on the {on} side: it was deleted on the {from} side");
    report.removed = Some(on.to_string());
    Ok(())
}

/// Syncs one folder pair: `name` on the server (also its key in the state), `local_name` in the
/// local store. `missing` names a side where the folder does not exist yet (only in a dry run,
/// which does not create it): that side is planned as empty.
#[allow(clippy::too_many_arguments)]
/// Lists, plans and syncs one folder pair. Whether it changed at all was asked before.
pub(crate) async fn sync_folder(
    remote: &mut dyn Store,
    local: &mut dyn Store,
    state: &mut StateDb,
    name: &FolderName,
    local_name: &FolderName,
    missing: Option<Side>,
    options: &SyncOptions,
    observer: &mut dyn Observer,
    report: &mut FolderReport,
) -> Result<(), SyncError> {
    let folder = if options.dry_run {
        match state.folder(name)? {
            Some(f) => f,
            None => FolderState {
                id: -1,
                name: name.clone(),
                uid_validity: None,
                uid_next: None,
                highest_modseq: None,
                remote_token: None,
                local_token: None,
            },
        }
    } else {
        state.ensure_folder(name)?
    };
    // Interrupted copies need the full listing to be found again.
    let pending = folder.id >= 0 && state.has_pending(folder.id)?;
    let since = match (folder.uid_validity, folder.highest_modseq) {
        (Some(uid_validity), Some(highest_modseq)) if !pending => Some(Since {
            uid_validity,
            highest_modseq,
        }),
        _ => None,
    };

    let empty = FolderSnapshot {
        uid_validity: None,
        uid_next: None,
        highest_modseq: None,
        messages: Vec::new(),
        token: None,
    };
    let (remote_snap, known_records) = match missing {
        Some(Side::Remote) => (empty.clone(), None),
        _ => remote_listing(remote, state, &folder, since).await?,
    };
    // Records are read once: for the incremental listing above, or here for the local one.
    let known_records = match known_records {
        None if folder.id >= 0 && !pending && missing.is_none() => Some(state.records(folder.id)?),
        known => known,
    };
    let local_snap = match missing {
        Some(Side::Local) => empty,
        _ => {
            let adopted = match &known_records {
                Some(records) if !pending => {
                    adopt_local_listing(local, state, &folder, local_name, records, options).await?
                }
                _ => None,
            };
            match adopted {
                Some(snapshot) => snapshot,
                None => local.scan(local_name).await.map_err(SyncError::local)?,
            }
        }
    };

    let validity_changed = matches!(
        (folder.uid_validity, remote_snap.uid_validity),
        (Some(old), Some(new)) if old != new
    );
    if validity_changed {
        tracing::warn!(
            folder = %name,
            old = ?folder.uid_validity.map(|v| v.get()),
            new = ?remote_snap.uid_validity.map(|v| v.get()),
            "the server renumbered this folder (UIDVALIDITY changed); re-matching messages by content"
        );
    }

    let stored_local_validity = if folder.id >= 0 {
        state.local_uid_validity(folder.id)?
    } else {
        None
    };
    let local_validity_changed = local_validity_changed(
        stored_local_validity,
        local_snap.uid_validity,
        folder.id >= 0 && state.count(folder.id)? > 0,
    );
    if local_validity_changed {
        tracing::warn!(
            folder = %name,
            old = ?stored_local_validity.map(|v| v.get()),
            new = ?local_snap.uid_validity.map(|v| v.get()),
            "the local side renumbered this folder (its UIDVALIDITY changed, or it changed kind); re-matching messages by content"
        );
    }

    if !options.dry_run {
        report.recovered += recover_pending(
            remote,
            local,
            state,
            folder.id,
            &remote_snap,
            &local_snap,
            validity_changed,
        )
        .await?;
        report.recovered +=
            recover_copies_to_local(local, state, folder.id, &local_snap, local_validity_changed)
                .await?;
    }

    let mut records = match known_records {
        // Read for the incremental listing; nothing was pending, so recovery changed nothing.
        Some(records) => records,
        None if folder.id >= 0 => state.records(folder.id)?,
        None => Vec::new(),
    };
    let first_with_mail_on_both =
        records.is_empty() && !remote_snap.messages.is_empty() && !local_snap.messages.is_empty();
    if validity_changed || local_validity_changed || first_with_mail_on_both {
        // After a local renumbering the local ids of the records mean nothing: pair without
        // history (a flag set on either side is kept; nothing is deleted).
        let history: &[Record] = if local_validity_changed {
            &[]
        } else {
            &records
        };
        let mut pairs = rematch(remote, local, history, &remote_snap, &local_snap).await?;
        if local_validity_changed {
            pairs = recover::keep_server_survivors(&records, pairs);
        }
        if options.dry_run {
            report.planned.push(format!(
                "re-match {} messages by content",
                pairs.iter().filter(|p| p.0.is_some()).count()
            ));
            records = pairs
                .into_iter()
                .enumerate()
                .map(|(i, (r, l, flags, deleted_on))| Record {
                    id: RecordId(-(i as i64) - 1),
                    remote: r,
                    local: l,
                    flags,
                    deleted_on,
                })
                .collect();
        } else {
            state.replace_folder_pairs(folder.id, remote_snap.uid_validity, &pairs)?;
            records = state.records(folder.id)?;
        }
    } else if folder.uid_validity.is_none() && !options.dry_run {
        // Bind the state to this UIDVALIDITY before the first pair is recorded, so a crash
        // cannot leave pairs whose numbering is unknown.
        state.set_folder_status(
            folder.id,
            &FolderStatus {
                uid_validity: remote_snap.uid_validity,
                uid_next: folder.uid_next,
                highest_modseq: folder.highest_modseq,
                remote_token: None,
                local_token: None,
            },
        )?;
    }
    // Bound after re-matching (a crash in between re-matches again) and before the first pair
    // of a new folder is recorded.
    if !options.dry_run && stored_local_validity != local_snap.uid_validity {
        state.set_local_uid_validity(folder.id, local_snap.uid_validity)?;
    }

    let plan = plan::plan_folder(
        &records,
        &remote_snap.messages,
        &local_snap.messages,
        options.guard,
        options.allow_mass_delete,
        options.policy,
    );
    let actions = match plan {
        Plan::Refused(refusal) => {
            tracing::warn!(folder = %name, "{refusal}");
            report.refused = Some(refusal.to_string());
            return Ok(());
        }
        Plan::Actions(actions) => actions,
    };
    let actions = apply_limits(remote, local, state, folder.id, actions, options, report).await?;
    observer.folder_planned(local_name, actions.len());
    if options.dry_run {
        report
            .planned
            .extend(actions.iter().map(ToString::to_string));
        return Ok(());
    }
    if !actions.is_empty() {
        tracing::info!(folder = %name, actions = actions.len(), "applying plan");
    }

    // A local side that assigns its own ids (IMAP) gets server messages the way the server
    // gets uploads (`copy_to_local_store`); the rest of the plan runs as usual.
    let (copies_to_local, actions): (Vec<Action>, Vec<Action>) = if local.reserves_ids() {
        (Vec::new(), actions)
    } else {
        actions.into_iter().partition(|a| {
            matches!(
                a,
                Action::Copy {
                    from: Side::Remote,
                    ..
                }
            )
        })
    };
    execute(
        remote,
        local,
        state,
        folder.id,
        local_name,
        &remote_snap,
        actions,
        options,
        observer,
        report,
    )
    .await?;
    copy_to_local_store(
        remote,
        local,
        state,
        folder.id,
        &local_snap,
        copies_to_local,
        options,
        observer,
        report,
    )
    .await?;

    // The tokens were taken before the listings: a change made since, ours included, shows
    // as a different token next time.
    state.set_folder_status(
        folder.id,
        &FolderStatus {
            uid_validity: remote_snap.uid_validity,
            uid_next: remote_snap.uid_next,
            highest_modseq: remote_snap.highest_modseq,
            remote_token: remote_snap.token.clone(),
            local_token: local_snap.token.clone(),
        },
    )?;
    Ok(())
}

/// Whether both sides still show the tokens of the last complete sync, and no copy is
/// pending: then the folder is in step and need not be listed at all.
async fn unchanged(
    remote: &mut dyn Store,
    local: &mut dyn Store,
    // `&mut`: a shared `StateDb` is not `Send` (its connection is not `Sync`).
    state: &mut StateDb,
    folder: &FolderState,
    local_name: &FolderName,
) -> Result<bool, SyncError> {
    let (Some(remote_was), Some(local_was)) = (&folder.remote_token, &folder.local_token) else {
        return Ok(false);
    };
    if same_token(remote, &folder.name, remote_was, SyncError::remote)
        .await?
        .is_none()
        || same_token(local, local_name, local_was, SyncError::local)
            .await?
            .is_none()
    {
        return Ok(false);
    }
    Ok(!state.has_pending(folder.id)?)
}

/// The store's change token for `folder`, if it is still the `recorded` one.
async fn same_token(
    store: &mut dyn Store,
    folder: &FolderName,
    recorded: &str,
    side: fn(StoreError) -> SyncError,
) -> Result<Option<String>, SyncError> {
    let now = store.change_token(folder).await.map_err(side)?;
    Ok(now.filter(|token| token == recorded))
}

/// The local listing without reading the folder, when its change token is still the one
/// recorded at the end of the last complete sync: that sync left the folder as its records say
/// (any local effect of its own would have changed the token), so the records' local ids and
/// flags are the listing. Not with a read-only side (the records then hold that side's flags,
/// not necessarily the local ones), messages kept as survivors, or messages the limits skipped.
async fn adopt_local_listing(
    local: &mut dyn Store,
    state: &mut StateDb,
    folder: &FolderState,
    local_name: &FolderName,
    records: &[Record],
    options: &SyncOptions,
) -> Result<Option<FolderSnapshot>, SyncError> {
    let Some(recorded) = &folder.local_token else {
        return Ok(None);
    };
    if options.policy.readonly_local || options.policy.readonly_remote {
        return Ok(None);
    }
    let Some(now) = same_token(local, local_name, recorded, SyncError::local).await? else {
        return Ok(None);
    };
    let mut messages = Vec::with_capacity(records.len());
    for record in records {
        match (&record.local, record.deleted_on) {
            (Some(id), None) => messages.push(MessageMeta {
                id: id.clone(),
                flags: record.flags,
            }),
            _ => return Ok(None),
        }
    }
    if !state.skipped(folder.id)?.is_empty() {
        return Ok(None);
    }
    let adopted = local
        .adopt_listing(local_name, messages, Some(now))
        .await
        .map_err(SyncError::local)?;
    if adopted.is_some() {
        tracing::debug!(folder = %local_name, "local side unchanged since the last sync: listed from the state");
    }
    Ok(adopted)
}

/// The server's listing: only what changed since the last sync where the server can tell
/// (with the records it was rebuilt from, to be used again), else every message.
async fn remote_listing(
    remote: &mut dyn Store,
    state: &mut StateDb,
    folder: &FolderState,
    since: Option<Since>,
) -> Result<(FolderSnapshot, Option<Vec<Record>>), SyncError> {
    let name = &folder.name;
    let changes = match remote
        .scan_since(name, since)
        .await
        .map_err(SyncError::remote)?
    {
        Listing::Full(snapshot) => return Ok((snapshot, None)),
        Listing::Changes(changes) => changes,
    };
    let records = if folder.id >= 0 {
        state.records(folder.id)?
    } else {
        Vec::new()
    };
    match incremental::rebuild(&records, &changes) {
        Some(snapshot) => Ok((snapshot, Some(records))),
        None => {
            tracing::debug!(
                folder = %name,
                "the changes since the last sync do not add up to the server's message count; listing every message"
            );
            let snapshot = remote.scan(name).await.map_err(SyncError::remote)?;
            Ok((snapshot, Some(records)))
        }
    }
}

/// Where an interrupted copy may have landed: messages of `snapshot` no pair claims, with a UID
/// at or above `floor` (the UIDNEXT before the earliest copy), or any of them after the folder
/// was renumbered.
fn unclaimed_since(
    snapshot: &FolderSnapshot,
    claimed: &HashSet<MsgId>,
    floor: u32,
    renumbered: bool,
) -> Vec<MsgId> {
    snapshot
        .messages
        .iter()
        .filter(|m| !claimed.contains(&m.id))
        .filter(|m| renumbered || m.id.uid().map(Uid::get).unwrap_or(0) >= floor)
        .map(|m| m.id.clone())
        .collect()
}

/// Settles the copies an earlier run started but did not confirm.
async fn recover_pending(
    remote: &mut dyn Store,
    local: &mut dyn Store,
    state: &mut StateDb,
    folder: i64,
    remote_snap: &FolderSnapshot,
    local_snap: &FolderSnapshot,
    validity_changed: bool,
) -> Result<usize, SyncError> {
    let pending = state.pending(folder)?;
    if pending.is_empty() {
        return Ok(0);
    }
    let local_ids: HashSet<&MsgId> = local_snap.messages.iter().map(|m| &m.id).collect();
    let mut recovered = 0;
    let mut confirmed_downloads = Vec::new();
    let mut abandoned = Vec::new();
    let mut uploads = Vec::new();
    for p in &pending {
        match p {
            // The reserved file name is there: the copy completed before the interruption.
            Pending::Download {
                record,
                remote: r,
                local: l,
                ..
            } => {
                if local_ids.contains(l) && !validity_changed {
                    confirmed_downloads.push(r.clone());
                } else if local_ids.contains(l) {
                    // The server renumbered meanwhile: keep the file; re-matching pairs it.
                    confirmed_downloads.push(r.clone());
                } else {
                    abandoned.push(*record);
                }
            }
            Pending::Upload {
                record,
                uid_next,
                size,
                sha256,
                ..
            } => uploads.push((*record, *uid_next, *size, *sha256)),
            // Copies into an IMAP local side: see `recover_copies_to_local`.
            Pending::CopyToLocal { .. } => {}
        }
    }
    recovered += confirmed_downloads.len();
    state.confirm_downloads(folder, &confirmed_downloads)?;

    if !uploads.is_empty() {
        // Candidates: server messages no pair claims, that arrived since the earliest upload
        // started (any of them after a renumbering).
        let claimed: HashSet<MsgId> = state
            .records(folder)?
            .into_iter()
            .filter_map(|r| r.remote)
            .collect();
        let floor = uploads.iter().map(|u| u.1).min().unwrap_or(0);
        let candidates = unclaimed_since(remote_snap, &claimed, floor, validity_changed);
        let fingerprints = if candidates.is_empty() {
            Vec::new()
        } else {
            remote
                .fingerprints(&candidates)
                .await
                .map_err(SyncError::remote)?
        };
        let wanted: Vec<(RecordId, u64, [u8; 32])> =
            uploads.iter().map(|u| (u.0, u.2, u.3)).collect();
        let mut confirmed = Vec::new();
        for (record, found) in recover::match_uploads(&wanted, &fingerprints) {
            let Some(Pending::Upload {
                local: l, flags, ..
            }) = pending
                .iter()
                .find(|p| matches!(p, Pending::Upload { record: r, .. } if *r == record))
            else {
                continue;
            };
            match found {
                Some(remote_id) => {
                    tracing::info!(local = %l, remote = %remote_id, "found the server copy of an interrupted upload");
                    confirmed.push((record, remote_id, l.clone(), *flags));
                }
                None => abandoned.push(record),
            }
        }
        recovered += confirmed.len();
        state.confirm(&confirmed)?;
    }
    // Abandoned intents are dropped; the planner then sees the source message as new and copies
    // it again. Leftover staging files are cleaned by the stores.
    state.remove(&abandoned)?;
    let _ = local;
    Ok(recovered)
}

async fn rematch(
    remote: &mut dyn Store,
    local: &mut dyn Store,
    records: &[Record],
    remote_snap: &FolderSnapshot,
    local_snap: &FolderSnapshot,
) -> Result<Vec<recover::Pair>, SyncError> {
    let with_fingerprints =
        |metas: &[MessageMeta], fps: Vec<(MsgId, crate::model::Fingerprint)>| {
            let flags: HashMap<&MsgId, Flags> = metas.iter().map(|m| (&m.id, m.flags)).collect();
            fps.into_iter()
                .filter_map(|(id, fingerprint)| {
                    flags.get(&id).map(|f| Known {
                        flags: *f,
                        id,
                        fingerprint,
                    })
                })
                .collect::<Vec<_>>()
        };
    let remote_ids: Vec<MsgId> = remote_snap.messages.iter().map(|m| m.id.clone()).collect();
    let local_ids: Vec<MsgId> = local_snap.messages.iter().map(|m| m.id.clone()).collect();
    let remote_fps = remote
        .fingerprints(&remote_ids)
        .await
        .map_err(SyncError::remote)?;
    let local_fps = local
        .fingerprints(&local_ids)
        .await
        .map_err(SyncError::local)?;
    Ok(recover::rematch(
        records,
        &with_fingerprints(&remote_snap.messages, remote_fps),
        &with_fingerprints(&local_snap.messages, local_fps),
    ))
}

/// Whether the local side's ids no longer mean what the state recorded: its UIDVALIDITY
/// changed, or the side changed kind (Maildir ids and IMAP UIDs) under a state that holds pairs.
fn local_validity_changed(
    stored: Option<UidValidity>,
    now: Option<UidValidity>,
    has_pairs: bool,
) -> bool {
    match (stored, now) {
        (Some(old), Some(new)) => old != new,
        (None, None) => false,
        (Some(_), None) | (None, Some(_)) => has_pairs,
    }
}

/// Settles copies into a local side that assigns its own ids (IMAP) that an earlier run
/// started but did not confirm: the copy is looked for by content among the local messages no
/// pair claims, at or above the UIDNEXT recorded with the intent.
async fn recover_copies_to_local(
    local: &mut dyn Store,
    state: &mut StateDb,
    folder: i64,
    local_snap: &FolderSnapshot,
    validity_changed: bool,
) -> Result<usize, SyncError> {
    let copies: Vec<(RecordId, MsgId, Flags, u32, u64, [u8; 32])> = state
        .pending(folder)?
        .into_iter()
        .filter_map(|p| match p {
            Pending::CopyToLocal {
                record,
                remote,
                flags,
                uid_next,
                size,
                sha256,
            } => Some((record, remote, flags, uid_next, size, sha256)),
            Pending::Download { .. } | Pending::Upload { .. } => None,
        })
        .collect();
    if copies.is_empty() {
        return Ok(0);
    }
    let claimed: HashSet<MsgId> = state
        .records(folder)?
        .into_iter()
        .filter_map(|r| r.local)
        .collect();
    let floor = copies.iter().map(|c| c.3).min().unwrap_or(0);
    let candidates = unclaimed_since(local_snap, &claimed, floor, validity_changed);
    let fingerprints = if candidates.is_empty() {
        Vec::new()
    } else {
        local
            .fingerprints(&candidates)
            .await
            .map_err(SyncError::local)?
    };
    let wanted: Vec<(RecordId, u64, [u8; 32])> = copies.iter().map(|c| (c.0, c.4, c.5)).collect();
    let mut confirmed = Vec::new();
    let mut abandoned = Vec::new();
    for (record, found) in recover::match_uploads(&wanted, &fingerprints) {
        let Some((_, remote, flags, ..)) = copies.iter().find(|c| c.0 == record) else {
            continue;
        };
        match found {
            Some(local_id) => {
                tracing::info!(remote = %remote, local = %local_id, "found the local copy of an interrupted copy");
                confirmed.push((record, remote.clone(), local_id, *flags));
            }
            None => abandoned.push(record),
        }
    }
    state.confirm(&confirmed)?;
    // The planner sees the server message as new again and copies it once more.
    state.remove(&abandoned)?;
    Ok(confirmed.len())
}

/// Drops the copies `max_age` and `max_size` leave out, remembering them with the limits that
/// did, so that a large archive outside the window is not examined again at every run.
async fn apply_limits(
    remote: &mut dyn Store,
    local: &mut dyn Store,
    state: &mut StateDb,
    folder: i64,
    actions: Vec<Action>,
    options: &SyncOptions,
    report: &mut FolderReport,
) -> Result<Vec<Action>, SyncError> {
    let limits = options.limits;
    let known = if folder >= 0 {
        state.skipped(folder)?
    } else {
        Vec::new()
    };
    if limits.is_none() {
        if !known.is_empty() && !options.dry_run {
            let all: Vec<(Side, MsgId)> = known.into_iter().map(|k| (k.side, k.id)).collect();
            state.update_skipped(folder, &all, &[])?;
        }
        return Ok(actions);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let memo: HashMap<(Side, &MsgId), &Skipped> = known
        .iter()
        .filter(|k| k.max_age == limits.max_age_days && k.max_size == limits.max_size)
        .map(|k| ((k.side, &k.id), k))
        .collect();

    // What to look at: copies not already known to be outside these very limits.
    let mut examine: HashMap<Side, Vec<MsgId>> = HashMap::new();
    for a in &actions {
        if let Action::Copy { from, id, .. } = a
            && !memo.contains_key(&(*from, id))
        {
            examine.entry(*from).or_default().push(id.clone());
        }
    }
    let mut found: HashMap<(Side, MsgId), (u64, Option<i64>)> = HashMap::new();
    for (side, ids) in examine {
        let listed = match side {
            Side::Remote => remote
                .sizes_and_dates(&ids)
                .await
                .map_err(SyncError::remote)?,
            Side::Local => local
                .sizes_and_dates(&ids)
                .await
                .map_err(SyncError::local)?,
        };
        for m in listed {
            found.insert((side, m.id), (m.size, m.date));
        }
    }

    let mut kept = Vec::new();
    let mut skipped = Vec::new();
    let mut new_rows = Vec::new();
    for a in actions {
        let Action::Copy { from, id, .. } = &a else {
            kept.push(a);
            continue;
        };
        let (size, date, remembered) = match memo.get(&(*from, id)) {
            Some(k) => (k.size, k.date, true),
            // Vanished since the listing: the copy itself will find out.
            None => match found.get(&(*from, id.clone())) {
                Some((size, date)) => (*size, *date, false),
                None => {
                    kept.push(a);
                    continue;
                }
            },
        };
        match limits.check(size, date, now) {
            None => kept.push(a),
            Some(why) => {
                if !remembered {
                    new_rows.push(Skipped {
                        side: *from,
                        id: id.clone(),
                        size,
                        date,
                        max_age: limits.max_age_days,
                        max_size: limits.max_size,
                    });
                    match why {
                        OutOfLimits::TooBig => tracing::warn!(
                            side = %from, id = %id, size,
                            "message bigger than max_size is not copied"
                        ),
                        OutOfLimits::TooOld => tracing::debug!(
                            side = %from, id = %id,
                            "message older than max_age is not copied"
                        ),
                    }
                }
                skipped.push((*from, id.clone(), size, why));
            }
        }
    }
    for (side, id, size, why) in &skipped {
        match why {
            OutOfLimits::TooBig => report.skipped_too_big.push(SkippedMessage {
                side: side.to_string(),
                id: id.to_string(),
                size: *size,
            }),
            OutOfLimits::TooOld => report.skipped_too_old += 1,
        }
    }
    if !options.dry_run {
        // Rows for messages no longer waiting to be copied (gone, paired, or examined under
        // other limits) go; the ones found now come.
        let current: HashSet<(Side, &MsgId)> = skipped.iter().map(|s| (s.0, &s.1)).collect();
        let stale: Vec<(Side, MsgId)> = known
            .iter()
            .filter(|k| {
                !current.contains(&(k.side, &k.id))
                    || k.max_age != limits.max_age_days
                    || k.max_size != limits.max_size
            })
            .filter(|k| !new_rows.iter().any(|n| n.side == k.side && n.id == k.id))
            .map(|k| (k.side, k.id.clone()))
            .collect();
        state.update_skipped(folder, &stale, &new_rows)?;
    }
    Ok(kept)
}

/// Server -> a local side that assigns its own ids (IMAP <-> IMAP). The upload protocol in the
/// other direction: commit an intent with the local UIDNEXT and the content's size and SHA-256,
/// APPEND, confirm with APPENDUID. After a crash, or without APPENDUID, the copy is found by
/// content ([`recover_copies_to_local`]) instead of being made twice.
#[allow(clippy::too_many_arguments)]
async fn copy_to_local_store(
    remote: &mut dyn Store,
    local: &mut dyn Store,
    state: &mut StateDb,
    folder: i64,
    local_snap: &FolderSnapshot,
    copies: Vec<Action>,
    options: &SyncOptions,
    observer: &mut dyn Observer,
    report: &mut FolderReport,
) -> Result<(), SyncError> {
    let copies: Vec<(MsgId, Flags)> = copies
        .into_iter()
        .filter_map(|a| match a {
            Action::Copy { id, flags, .. } => Some((id, flags)),
            Action::Flags { .. }
            | Action::Delete { .. }
            | Action::Forget { .. }
            | Action::Detach { .. } => None,
        })
        .collect();
    let uid_next = local_snap.uid_next.unwrap_or_else(|| {
        local_snap
            .messages
            .iter()
            .filter_map(|m| m.id.uid())
            .map(|u| u.get().saturating_add(1))
            .max()
            .unwrap_or(1)
    });
    for batch in copies.chunks(BATCH) {
        let ids: Vec<MsgId> = batch.iter().map(|(id, _)| id.clone()).collect();
        let staged = remote
            .stage(&ids, &options.scratch_dir)
            .await
            .map_err(SyncError::remote)?;
        let remove_staged = || {
            for s in &staged {
                if s.temporary {
                    let _ = std::fs::remove_file(&s.path);
                }
            }
        };
        let mut intents = Vec::new();
        for s in &staged {
            let Some((_, flags)) = batch.iter().find(|(id, _)| *id == s.source_id) else {
                continue;
            };
            let fingerprint = std::fs::File::open(&s.path)
                .and_then(|f| crate::message::fingerprint(std::io::BufReader::new(f)));
            match fingerprint {
                Ok(fp) => intents.push((s.source_id.clone(), *flags, fp)),
                Err(e) => {
                    remove_staged();
                    return Err(SyncError::local(StoreError::io(&s.path, e)));
                }
            }
        }
        if let Err(e) = state.begin_copies_to_local(folder, uid_next, &intents) {
            remove_staged();
            return Err(e.into());
        }
        let mut confirmed = Vec::new();
        let mut result = Ok(());
        for s in &staged {
            let Some((_, flags, _)) = intents.iter().find(|(id, _, _)| *id == s.source_id) else {
                continue;
            };
            match local.deliver(s, *flags, None).await {
                Ok(Some(id)) => confirmed.push((s.source_id.clone(), id, *flags)),
                // No APPENDUID: the intent stays; the next run finds the copy by content.
                Ok(None) => {}
                Err(e) => {
                    result = Err(SyncError::local(e));
                    break;
                }
            }
        }
        remove_staged();
        if result.is_ok() {
            result = local.flush().await.map_err(SyncError::local);
        }
        state.confirm_copies_to_local(folder, &confirmed)?;
        report.downloaded += confirmed.len();
        observer.advanced(batch.len());
        result?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn execute(
    remote: &mut dyn Store,
    local: &mut dyn Store,
    state: &mut StateDb,
    folder: i64,
    name: &FolderName,
    remote_snap: &FolderSnapshot,
    actions: Vec<Action>,
    options: &SyncOptions,
    observer: &mut dyn Observer,
    report: &mut FolderReport,
) -> Result<(), SyncError> {
    let mut forget = Vec::new();
    let mut detach = Vec::new();
    let mut flag_actions = Vec::new();
    let mut delete_remote = Vec::new();
    let mut delete_local = Vec::new();
    let mut downloads = Vec::new();
    let mut uploads = Vec::new();
    for action in actions {
        match action {
            Action::Forget { record } => forget.push(record),
            Action::Detach { record, gone } => detach.push((record, gone)),
            Action::Flags { .. } => flag_actions.push(action),
            Action::Delete {
                record,
                on: Side::Remote,
                id,
            } => delete_remote.push((record, id)),
            Action::Delete {
                record,
                on: Side::Local,
                id,
            } => delete_local.push((record, id)),
            Action::Copy {
                from: Side::Remote,
                id,
                flags,
            } => downloads.push((id, flags)),
            Action::Copy {
                from: Side::Local,
                id,
                flags,
            } => uploads.push((id, flags)),
        }
    }

    if !forget.is_empty() {
        state.remove(&forget)?;
        observer.advanced(forget.len());
    }
    if !detach.is_empty() {
        state.detach(&detach)?;
        observer.advanced(detach.len());
    }

    // Flags: both sides first, then the new base.
    if !flag_actions.is_empty() {
        let mut remote_updates = Vec::new();
        let mut local_updates = Vec::new();
        let mut bases = Vec::new();
        for a in &flag_actions {
            if let Action::Flags {
                record,
                remote: r,
                local: l,
                remote_change,
                local_change,
                merged,
            } = a
            {
                if let Some(c) = remote_change {
                    remote_updates.push(FlagUpdate {
                        id: r.clone(),
                        add: c.add,
                        remove: c.remove,
                    });
                }
                if let Some(c) = local_change {
                    local_updates.push(FlagUpdate {
                        id: l.clone(),
                        add: c.add,
                        remove: c.remove,
                    });
                }
                bases.push((*record, *merged));
            }
        }
        if !remote_updates.is_empty() {
            remote
                .set_flags(&remote_updates)
                .await
                .map_err(SyncError::remote)?;
        }
        if !local_updates.is_empty() {
            local
                .set_flags(&local_updates)
                .await
                .map_err(SyncError::local)?;
        }
        state.set_flags(&bases)?;
        report.flags_remote += remote_updates.len();
        report.flags_local += local_updates.len();
        observer.advanced(flag_actions.len());
    }

    // Deletions: the effect, then the state.
    if !delete_remote.is_empty() {
        let ids: Vec<MsgId> = delete_remote.iter().map(|(_, id)| id.clone()).collect();
        remote.delete(&ids).await.map_err(SyncError::remote)?;
        state.remove(&delete_remote.iter().map(|(r, _)| *r).collect::<Vec<_>>())?;
        report.deleted_remote += ids.len();
        observer.advanced(ids.len());
    }
    if !delete_local.is_empty() {
        let ids: Vec<MsgId> = delete_local.iter().map(|(_, id)| id.clone()).collect();
        local.delete(&ids).await.map_err(SyncError::local)?;
        state.remove(&delete_local.iter().map(|(r, _)| *r).collect::<Vec<_>>())?;
        report.deleted_local += ids.len();
        observer.advanced(ids.len());
    }

    // Server -> Maildir.
    let staging = local
        .staging_dir(name)
        .unwrap_or_else(|| options.scratch_dir.clone());
    let batches = download_batches(&downloads);
    for (n, batch) in batches.iter().enumerate() {
        let batch = *batch;
        let mut intents = Vec::new();
        for (id, flags) in batch {
            let reserved = local.reserve_id().ok_or_else(|| {
                SyncError::local(StoreError::Invalid(
                    "the local store cannot reserve message ids".into(),
                ))
            })?;
            intents.push((id.clone(), reserved, *flags));
        }
        state.begin_downloads(folder, &intents)?;
        let ids: Vec<MsgId> = batch.iter().map(|(id, _)| id.clone()).collect();
        let staged = remote
            .stage(&ids, &staging)
            .await
            .map_err(SyncError::remote)?;
        // The next batch travels while this one is written: no round trip between batches.
        if let Some(next) = batches.get(n + 1) {
            let next: Vec<MsgId> = next.iter().map(|(id, _)| id.clone()).collect();
            remote.prefetch(&next).await.map_err(SyncError::remote)?;
        }
        let intended: HashMap<&MsgId, (&MsgId, &Flags)> = intents
            .iter()
            .map(|(remote, reserved, flags)| (remote, (reserved, flags)))
            .collect();
        let mut delivered = Vec::new();
        let mut result = Ok(());
        for s in &staged {
            let Some((reserved, flags)) = intended.get(&s.source_id) else {
                continue;
            };
            match local.deliver(s, **flags, Some(reserved)).await {
                Ok(_) => delivered.push(s.source_id.clone()),
                Err(e) => {
                    result = Err(SyncError::local(e));
                    break;
                }
            }
        }
        if result.is_err() {
            // Staged files not delivered are removed by the local store's next scan.
            for s in &staged {
                if s.temporary && !delivered.contains(&s.source_id) {
                    let _ = std::fs::remove_file(&s.path);
                }
            }
        }
        local.flush().await.map_err(SyncError::local)?;
        state.confirm_downloads(folder, &delivered)?;
        report.downloaded += delivered.len();
        observer.advanced(delivered.len());
        result?;
        // Messages expunged on the server between listing and fetching stay as intents without
        // a file; the next run drops them (recovery) and the planner sees they are gone.
    }

    // Maildir -> server.
    let uid_next = remote_snap.uid_next.unwrap_or_else(|| {
        remote_snap
            .messages
            .iter()
            .filter_map(|m| m.id.uid())
            .map(|u| u.get().saturating_add(1))
            .max()
            .unwrap_or(1)
    });
    for batch in uploads.chunks(BATCH) {
        let ids: Vec<MsgId> = batch.iter().map(|(id, _)| id.clone()).collect();
        let fingerprints = local.fingerprints(&ids).await.map_err(SyncError::local)?;
        let intents: Vec<_> = fingerprints
            .into_iter()
            .filter_map(|(id, fp)| {
                batch
                    .iter()
                    .find(|(b, _)| *b == id)
                    .map(|(_, flags)| (id, *flags, fp))
            })
            .collect();
        state.begin_uploads(folder, uid_next, &intents)?;
        let present: Vec<MsgId> = intents.iter().map(|(id, _, _)| id.clone()).collect();
        let staged = local
            .stage(&present, &options.scratch_dir)
            .await
            .map_err(SyncError::local)?;
        let messages: Vec<(&Staged, Flags)> = staged
            .iter()
            .filter_map(|s| {
                intents
                    .iter()
                    .find(|(id, _, _)| *id == s.source_id)
                    .map(|(_, flags, _)| (s, *flags))
            })
            .collect();
        let (ids, failure) = remote.deliver_all(&messages).await;
        // Without APPENDUID an id is `None`: the intent stays, and the next run finds the copy
        // by content.
        let confirmed: Vec<(MsgId, MsgId, Flags)> = messages
            .iter()
            .zip(ids)
            .filter_map(|((s, flags), id)| id.map(|uid| (s.source_id.clone(), uid, *flags)))
            .collect();
        let result = failure.map_or(Ok(()), |e| Err(SyncError::remote(e)));
        for s in &staged {
            if s.temporary {
                let _ = std::fs::remove_file(&s.path);
            }
        }
        state.confirm_uploads(folder, &confirmed)?;
        report.uploaded += confirmed.len();
        observer.advanced(batch.len());
        result?;
    }
    Ok(())
}
