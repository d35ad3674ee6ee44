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
pub mod account;
mod apply;
mod changes;
mod folder;
pub mod lanes;
mod limits;
mod recovery;

use crate::model::{FolderName, MsgId};
use crate::plan::{
    self, FolderAction, FolderFacts, FolderPolicy, Kept, Limits, Policy, RecordId, Side, Survivor,
};
use crate::state::{FolderState, StateDb, StateError};
use crate::store::readonly::ReadOnly;
use crate::store::{Absence, FailureKind, Store, StoreError};
pub(crate) use folder::{FolderSync, sync_folder};
use lanes::Lanes;

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
    /// A fingerprint of the settings that shape a folder's plan besides these (keyword rules,
    /// Gmail mode) and including them: recorded with a folder's change tokens, which count
    /// only under the same settings.
    pub settings: String,
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
            // A server that rations the account is left alone, on either side.
            SyncError::Store {
                source: StoreError::Rationed { .. },
                ..
            } => true,
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
    /// Of `downloaded`, how many were links to a local copy in another folder (a message the
    /// server has in several folders, such as Gmail's labels), not downloads.
    pub linked: usize,
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
    if let Some(overview) = plan_known_folders(remote, local, state, options).await? {
        return Ok(overview);
    }
    let remote_folders = remote.list_folders().await.map_err(SyncError::remote)?;
    let local_folders = local.list_folders().await.map_err(SyncError::local)?;
    // Keyed by the server name: renaming rules may change without the state losing track.
    let known: HashMap<FolderName, FolderState> = state
        .folders()?
        .into_iter()
        .map(|f| (f.name.clone(), f))
        .collect();
    let known_names: Vec<FolderName> = known.keys().cloned().collect();
    // Folders the server marks as unwanted by default (Gmail's spam and trash).
    let rules = options
        .rules
        .clone()
        .with_left_out(remote.left_out_by_default());
    let map = folders::map_folders(&remote_folders, &local_folders, &known_names, &rules);
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

/// How many named folders are looked up one by one (`plan_known_folders`) rather than listed
/// with all the others: a push names one or two; a watch that starts names them all.
const LOOKUPS_AT_MOST: usize = 4;

/// A sync of named folders that the last syncs paired — the daemon's wake-ups — without
/// listing every folder of both sides: each is looked up alone (`Store::look_up_folder`). Only
/// when every named folder is one the state knows under the local name asked for, the rules
/// still select it and give it that name, and both sides show it, is it planned here — as the
/// full listing would: a known folder on both sides is synced. Anything else (a folder new,
/// gone, renamed or unknown to a side) returns `None` and the full listing decides. A folder
/// another side's listing would have clashed with is not looked for: the pair was synced
/// before, and the next full sync reports the clash.
async fn plan_known_folders(
    remote: &mut dyn Store,
    local: &mut dyn Store,
    state: &mut StateDb,
    options: &SyncOptions,
) -> Result<Option<FolderOverview>, SyncError> {
    // Each lookup is a round trip to the server; one listing answers for every folder.
    if options.folders.is_empty() || options.folders.len() > LOOKUPS_AT_MOST {
        return Ok(None);
    }
    let names = state.folder_local_names()?;
    let rules = options
        .rules
        .clone()
        .with_left_out(remote.left_out_by_default());
    let mut pairs = Vec::new();
    for asked in &options.folders {
        let mut matching = names.iter().filter(|(_, l)| *l == asked);
        let (Some((remote_name, local_name)), None) = (matching.next(), matching.next()) else {
            return Ok(None);
        };
        if !rules.selection(remote_name).is_included()
            || rules.local_name(remote_name).as_ref() != Ok(local_name)
            || pairs.iter().any(|(r, _)| r == remote_name)
        {
            return Ok(None);
        }
        pairs.push((remote_name.clone(), local_name.clone()));
    }
    for (remote_name, local_name) in &pairs {
        let on_remote = remote
            .look_up_folder(remote_name)
            .await
            .map_err(SyncError::remote)?;
        if on_remote != Some(true) {
            return Ok(None);
        }
        let on_local = local
            .look_up_folder(local_name)
            .await
            .map_err(SyncError::local)?;
        if on_local != Some(true) {
            return Ok(None);
        }
    }
    let mut folders = Vec::new();
    for (remote_name, local_name) in pairs {
        let Some(known) = state.folder(&remote_name)? else {
            return Ok(None);
        };
        let count = state.count(known.id)?;
        let facts = FolderFacts {
            known: Some(count),
            on_remote: true,
            on_local: true,
            inbox: remote_name == FolderName::inbox() || local_name == FolderName::inbox(),
            survivor: None,
        };
        let action = plan::restrict_folder(
            plan::decide_folder(facts, options.folder_policy, options.allow_mass_delete),
            options.policy,
        );
        folders.push(PlannedFolder {
            remote: remote_name,
            local: local_name,
            on_remote: true,
            on_local: true,
            known: Some(count),
            relocated_from: None,
            step: Step::Act(action),
        });
    }
    tracing::debug!(
        folders = folders.len(),
        "planned the named folders without listing every folder"
    );
    Ok(Some(FolderOverview {
        folders,
        problems: Vec::new(),
    }))
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
                            local_changed: false,
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
                        return Ok(folder::Tokens::Changed {
                            local_changed: false,
                        });
                    }
                    state.set_folder_local_name(remote_name, name)?;
                    match state.folder(remote_name)? {
                        Some(folder) => {
                            folder::unchanged(
                                remote,
                                local,
                                state,
                                &folder,
                                name,
                                &options.settings,
                            )
                            .await
                        }
                        None => Ok(folder::Tokens::Changed {
                            local_changed: false,
                        }),
                    }
                }
                .instrument(span.clone())
                .await;
                match unchanged {
                    Ok(folder::Tokens::Changed { local_changed }) => {
                        jobs.push(FolderJob {
                            order,
                            remote: remote_name.clone(),
                            local: name.clone(),
                            missing: None,
                            local_changed,
                            first_sync: planned.known.is_none(),
                            report,
                        });
                        continue;
                    }
                    Ok(folder::Tokens::InStep) => {
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
        // The folder that holds every message once (Gmail's All Mail) goes first and alone, so
        // the other folders link to its copies instead of downloading them again.
        if let Some(archive) = remote.global_archive()
            && jobs.len() > 1
            && let Some(at) = jobs.iter().position(|job| job.remote == archive)
        {
            let first = vec![jobs.remove(at)];
            reports.extend(
                lanes::sync_jobs(remote, local, state, first, options, observer, lanes).await?,
            );
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
    /// The local side said it changed since the last sync (see `folder::Tokens`).
    pub local_changed: bool,
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
