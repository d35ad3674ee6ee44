//! One folder pair's sync: open its state, list both sides, settle what an interrupted run left
//! behind, plan, carry the plan out, and record the change tokens last.

use super::changes::{self, ChangesOnly};
use super::{FolderReport, Observer, SyncError, SyncOptions, apply, limits, recovery};
use crate::model::{FolderName, FolderSnapshot, MessageMeta, UidValidity};
use crate::plan::{self, Action, Plan, Record, RecordId, Side, incremental, recover};
use crate::state::{FolderState, FolderStatus, StateDb};
use crate::store::{Listing, Since, Store, StoreError};

/// What one folder's sync works with: both stores, the state, the run's options, and where its
/// progress and outcome go.
pub(crate) struct FolderSync<'a> {
    pub remote: &'a mut dyn Store,
    pub local: &'a mut dyn Store,
    // `&mut` only because a shared reference to the database is not `Send`.
    pub state: &'a mut StateDb,
    pub options: &'a SyncOptions,
    pub observer: &'a mut dyn Observer,
    pub report: &'a mut FolderReport,
}

impl FolderSync<'_> {
    pub(super) fn store(&mut self, side: Side) -> &mut dyn Store {
        match side {
            Side::Remote => &mut *self.remote,
            Side::Local => &mut *self.local,
        }
    }
}

/// Both sides' listings of a folder.
pub(super) struct Listings {
    pub remote: FolderSnapshot,
    pub local: FolderSnapshot,
    /// The folder's records, when listing needed them already (they are read once).
    pub records: Option<Vec<Record>>,
    /// How many pairs the folder holds, when the listings and records are only the messages
    /// the server's changes touch (see [`changes::changes_only`]).
    pub known_pairs: Option<usize>,
}

/// Whether either side renumbered the folder since the last sync.
struct Renumbered {
    /// The server's UIDVALIDITY changed.
    remote: bool,
    /// The local side's UIDVALIDITY changed, or the side changed kind.
    local: bool,
    /// The local UIDVALIDITY the state held.
    stored_local: Option<UidValidity>,
}

/// Syncs one folder pair: `name` on the server (also its key in the state), `local_name` in the
/// local store. `missing` names a side where the folder does not exist yet (only in a dry run,
/// which does not create it): that side is planned as empty. Whether the folder changed at all
/// was asked before; `local_changed` when the local side said it did (see [`Tokens`]).
pub(crate) async fn sync_folder(
    cx: &mut FolderSync<'_>,
    name: &FolderName,
    local_name: &FolderName,
    missing: Option<Side>,
    local_changed: bool,
) -> Result<(), SyncError> {
    let folder = open(cx, name)?;
    let mut listings = list(cx, &folder, local_name, missing, local_changed).await?;
    let renumbered = renumbered(cx.state, &folder, &listings)?;
    if !cx.options.dry_run {
        cx.report.recovered += recovery::recover_pending(
            cx.remote,
            cx.state,
            (folder.id, name),
            &mut listings.remote,
            &listings.local,
            renumbered.remote,
        )
        .await?;
        cx.report.recovered += recovery::recover_copies_to_local(
            cx.local,
            cx.state,
            (folder.id, local_name),
            &mut listings.local,
            renumbered.local,
        )
        .await?;
    }
    let known = listings.records.take();
    let records = records(cx, &folder, known, &listings, &renumbered).await?;
    // Keywords a side cannot hold stay as the state has them.
    let rooms = (
        cx.remote
            .keyword_room()
            .without(&cx.state.refused_keywords(folder.id, Side::Remote)?),
        cx.local
            .keyword_room()
            .without(&cx.state.refused_keywords(folder.id, Side::Local)?),
    );
    plan::keep_unheld_keywords(
        &records,
        Side::Remote,
        &mut listings.remote.messages,
        &rooms.0,
    );
    plan::keep_unheld_keywords(
        &records,
        Side::Local,
        &mut listings.local.messages,
        &rooms.1,
    );
    let Some(actions) = decide(cx, &folder, local_name, &records, &listings).await? else {
        return Ok(());
    };
    if !actions.is_empty() {
        tracing::info!(folder = %name, actions = actions.len(), "applying plan");
    }
    let (remote_snap, local_snap) = (&listings.remote, &listings.local);
    apply::apply(cx, folder.id, local_name, remote_snap, local_snap, actions).await?;
    // The tokens were taken before the listings: a change made since, ours included, shows
    // as a different token next time, unless the store can tell the state this sync left
    // from any later change (`Store::settled_token`).
    let local_token = cx
        .local
        .settled_token(local_name, local_snap.token.as_deref())
        .await
        .map_err(SyncError::local)?;
    cx.state.set_folder_status(
        folder.id,
        &FolderStatus {
            uid_validity: remote_snap.uid_validity,
            uid_next: remote_snap.uid_next,
            highest_modseq: remote_snap.highest_modseq,
            remote_token: remote_snap.token.clone(),
            local_token,
            settings: Some(cx.options.settings.clone()),
        },
    )?;
    Ok(())
}

/// The folder's state; a dry run records nothing, so a folder the state does not know is
/// planned under a placeholder.
fn open(cx: &mut FolderSync<'_>, name: &FolderName) -> Result<FolderState, SyncError> {
    if !cx.options.dry_run {
        return Ok(cx.state.ensure_folder(name)?);
    }
    Ok(match cx.state.folder(name)? {
        Some(f) => f,
        None => FolderState {
            id: -1,
            name: name.clone(),
            uid_validity: None,
            uid_next: None,
            highest_modseq: None,
            remote_token: None,
            local_token: None,
            settings: None,
        },
    })
}

fn empty_snapshot() -> FolderSnapshot {
    FolderSnapshot {
        uid_validity: None,
        uid_next: None,
        highest_modseq: None,
        messages: Vec::new(),
        token: None,
    }
}

/// Lists both sides, each as cheaply as it can tell: the server's changes since the last sync,
/// the local side from the state when its token did not change.
async fn list(
    cx: &mut FolderSync<'_>,
    folder: &FolderState,
    local_name: &FolderName,
    missing: Option<Side>,
    local_changed: bool,
) -> Result<Listings, SyncError> {
    // Interrupted copies need the full listing to be found again.
    let pending = folder.id >= 0 && cx.state.has_pending(folder.id)?;
    let since = match (folder.uid_validity, folder.highest_modseq) {
        (Some(uid_validity), Some(highest_modseq)) if !pending => Some(Since {
            uid_validity,
            highest_modseq,
        }),
        _ => None,
    };
    // Whether the local side is as the last sync left it, asked once for both ways of taking
    // it from the state (reading a Maildir's names can cost as much as listing it).
    let askable = !pending && missing.is_none() && local_from_state(folder, cx.options);
    let local_now = match folder.local_token.as_deref().filter(|_| askable) {
        // Already asked (its names read), and it changed.
        Some(_) if local_changed => Some(None),
        Some(recorded) => Some(same_token(cx.local, local_name, recorded, SyncError::local).await?),
        None => None,
    };
    let mut local_listed = None;
    let (remote, records) = match missing {
        Some(Side::Remote) => (empty_snapshot(), None),
        _ => {
            let asked = local_now.as_ref().map(Option::as_deref);
            let changes_only = changes::changes_only(cx, folder, local_name, since, asked);
            let fetched = match changes_only.await? {
                ChangesOnly::Listed(listings) => {
                    record_global_ids(cx, folder, &listings.remote)?;
                    return Ok(listings);
                }
                ChangesOnly::Fetched(listing, local) => {
                    local_listed = local;
                    Some(listing)
                }
                ChangesOnly::NotTried => None,
            };
            remote_listing(cx.remote, cx.state, folder, since, fetched).await?
        }
    };
    record_global_ids(cx, folder, &remote)?;
    // Records are read once: for the incremental listing above, or here for the local one.
    let records = match records {
        None if folder.id >= 0 && !pending && missing.is_none() => {
            Some(cx.state.records(folder.id)?)
        }
        known => known,
    };
    let local = match (missing, local_listed) {
        (Some(Side::Local), _) => empty_snapshot(),
        (None | Some(Side::Remote), Some(listed)) => listed,
        (None | Some(Side::Remote), None) => {
            let adopted = match (&records, local_now.flatten()) {
                (Some(records), Some(now)) => {
                    adopt_local_listing(cx.local, cx.state, folder, local_name, records, now)
                        .await?
                }
                _ => None,
            };
            match adopted {
                Some(snapshot) => snapshot,
                None => cx.local.scan(local_name).await.map_err(SyncError::local)?,
            }
        }
    };
    Ok(Listings {
        remote,
        local,
        records,
        known_pairs: None,
    })
}

/// Messages copied before their global id was known (uploads, older versions) get it, so
/// later copies of them in other folders are linked.
fn record_global_ids(
    cx: &mut FolderSync<'_>,
    folder: &FolderState,
    remote: &FolderSnapshot,
) -> Result<(), SyncError> {
    if folder.id >= 0 && !cx.options.dry_run {
        let globals: Vec<_> = remote
            .messages
            .iter()
            .filter_map(|m| cx.remote.global_id(&m.id).map(|g| (m.id.clone(), g)))
            .collect();
        cx.state.set_global_ids(folder.id, &globals)?;
    }
    Ok(())
}

/// Compares both sides' UIDVALIDITY with the state's, and says so when either changed.
fn renumbered(
    state: &mut StateDb,
    folder: &FolderState,
    listings: &Listings,
) -> Result<Renumbered, SyncError> {
    let remote = matches!(
        (folder.uid_validity, listings.remote.uid_validity),
        (Some(old), Some(new)) if old != new
    );
    if remote {
        tracing::warn!(
            folder = %folder.name,
            old = ?folder.uid_validity.map(|v| v.get()),
            new = ?listings.remote.uid_validity.map(|v| v.get()),
            "the server renumbered this folder (UIDVALIDITY changed); re-matching messages by content"
        );
    }
    let stored_local = if folder.id >= 0 {
        state.local_uid_validity(folder.id)?
    } else {
        None
    };
    let local = local_validity_changed(
        stored_local,
        listings.local.uid_validity,
        folder.id >= 0 && state.count(folder.id)? > 0,
    );
    if local {
        tracing::warn!(
            folder = %folder.name,
            old = ?stored_local.map(|v| v.get()),
            new = ?listings.local.uid_validity.map(|v| v.get()),
            "the local side renumbered this folder (its UIDVALIDITY changed, or it changed kind); re-matching messages by content"
        );
    }
    Ok(Renumbered {
        remote,
        local,
        stored_local,
    })
}

/// The records to plan with: re-matched by content after a renumbering, or on a first sync with
/// mail on both sides. The state is bound to both sides' UIDVALIDITY before the first pair is
/// recorded.
async fn records(
    cx: &mut FolderSync<'_>,
    folder: &FolderState,
    known: Option<Vec<Record>>,
    listings: &Listings,
    renumbered: &Renumbered,
) -> Result<Vec<Record>, SyncError> {
    let (remote_snap, local_snap) = (&listings.remote, &listings.local);
    let mut records = match known {
        // Read for the incremental listing; nothing was pending, so recovery changed nothing.
        Some(records) => records,
        None if folder.id >= 0 => cx.state.records(folder.id)?,
        None => Vec::new(),
    };
    // Records narrowed to the changes (`known_pairs`) are only some of the folder's.
    let first_with_mail_on_both = records.is_empty()
        && listings.known_pairs.is_none()
        && !remote_snap.messages.is_empty()
        && !local_snap.messages.is_empty();
    if renumbered.remote || renumbered.local || first_with_mail_on_both {
        records = rematched(cx, folder.id, records, listings, renumbered.local).await?;
    } else if folder.uid_validity.is_none() && !cx.options.dry_run {
        // Bind the state to this UIDVALIDITY before the first pair is recorded, so a crash
        // cannot leave pairs whose numbering is unknown.
        cx.state.set_folder_status(
            folder.id,
            &FolderStatus {
                uid_validity: remote_snap.uid_validity,
                uid_next: folder.uid_next,
                highest_modseq: folder.highest_modseq,
                remote_token: None,
                local_token: None,
                settings: None,
            },
        )?;
    }
    // Bound after re-matching (a crash in between re-matches again) and before the first pair
    // of a new folder is recorded.
    if !cx.options.dry_run && renumbered.stored_local != local_snap.uid_validity {
        cx.state
            .set_local_uid_validity(folder.id, local_snap.uid_validity)?;
    }
    Ok(records)
}

/// Pairs the folder's messages again by content, and records the pairs (a dry run only
/// reports them).
async fn rematched(
    cx: &mut FolderSync<'_>,
    folder: i64,
    records: Vec<Record>,
    listings: &Listings,
    local_renumbered: bool,
) -> Result<Vec<Record>, SyncError> {
    // After a local renumbering the local ids of the records mean nothing: pair without
    // history (a flag set on either side is kept; nothing is deleted).
    let history: &[Record] = if local_renumbered { &[] } else { &records };
    let (remote_snap, local_snap) = (&listings.remote, &listings.local);
    let mut pairs =
        recovery::rematch(cx.remote, cx.local, history, remote_snap, local_snap).await?;
    if local_renumbered {
        pairs = recover::keep_server_survivors(&records, pairs);
    }
    if cx.options.dry_run {
        cx.report.planned.push(format!(
            "re-match {} messages by content",
            pairs.iter().filter(|p| p.0.is_some()).count()
        ));
        return Ok(pairs
            .into_iter()
            .enumerate()
            .map(|(i, (r, l, flags, deleted_on))| Record {
                id: RecordId(-(i as i64) - 1),
                remote: r,
                local: l,
                flags,
                deleted_on,
            })
            .collect());
    }
    cx.state
        .replace_folder_pairs(folder, remote_snap.uid_validity, &pairs)?;
    Ok(cx.state.records(folder)?)
}

/// The actions to carry out, after the message valve and the limits: `None` when the valve
/// refused the folder, or in a dry run, which reports them instead.
async fn decide(
    cx: &mut FolderSync<'_>,
    folder: &FolderState,
    local_name: &FolderName,
    records: &[Record],
    listings: &Listings,
) -> Result<Option<Vec<Action>>, SyncError> {
    let options = cx.options;
    // Local copies that are links to the archive's copy (Gmail's labels): the server taking
    // them out of this folder removes a label, which the valve lets pass.
    let linked: foldhash::HashSet<plan::RecordId> = match cx.remote.global_archive() {
        Some(archive) if archive != folder.name && folder.id >= 0 => cx
            .state
            .linked_to(folder.id, &archive)?
            .into_iter()
            .collect(),
        _ => Default::default(),
    };
    let plan = plan::plan_folder_with(
        records,
        &listings.remote.messages,
        &listings.local.messages,
        options.policy,
        &linked,
        plan::Valve {
            guard: options.guard,
            allow_mass_delete: options.allow_mass_delete,
            known_pairs: listings.known_pairs,
        },
    );
    let actions = match plan {
        Plan::Refused(refusal) => {
            tracing::warn!(folder = %folder.name, "{refusal}");
            cx.report.refused = Some(refusal.to_string());
            return Ok(None);
        }
        Plan::Actions(actions) => actions,
    };
    let actions = limits::apply_limits(cx, folder.id, actions).await?;
    cx.observer.folder_planned(local_name, actions.len());
    if options.dry_run {
        cx.report
            .planned
            .extend(actions.iter().map(ToString::to_string));
        return Ok(None);
    }
    Ok(Some(actions))
}

/// What asking both sides' change tokens told of a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tokens {
    /// Both sides as the last complete sync left them: the folder need not be listed.
    InStep,
    /// Something changed. `local_changed`: the local side was asked and said so (a Maildir
    /// read its names to tell), so it is not asked again before it is listed.
    Changed { local_changed: bool },
}

/// Whether both sides still show the tokens of the last complete sync, which was made under
/// these `settings`, and no copy is pending: then the folder is in step and need not be listed
/// at all.
pub(super) async fn unchanged(
    remote: &mut dyn Store,
    local: &mut dyn Store,
    // `&mut`: a shared `StateDb` is not `Send` (its connection is not `Sync`).
    state: &mut StateDb,
    folder: &FolderState,
    local_name: &FolderName,
    settings: &str,
) -> Result<Tokens, SyncError> {
    const CHANGED: Tokens = Tokens::Changed {
        local_changed: false,
    };
    let (Some(remote_was), Some(local_was)) = (&folder.remote_token, &folder.local_token) else {
        return Ok(CHANGED);
    };
    if folder.settings.as_deref() != Some(settings) {
        return Ok(CHANGED);
    }
    if same_token(remote, &folder.name, remote_was, SyncError::remote)
        .await?
        .is_none()
    {
        return Ok(CHANGED);
    }
    let Some(local_now) = same_token(local, local_name, local_was, SyncError::local).await? else {
        return Ok(Tokens::Changed {
            local_changed: true,
        });
    };
    if state.has_pending(folder.id)? {
        return Ok(CHANGED);
    }
    if &local_now != local_was {
        // The same folder, now known by a token that is cheaper to check next time.
        state.set_folder_status(
            folder.id,
            &FolderStatus {
                uid_validity: folder.uid_validity,
                uid_next: folder.uid_next,
                highest_modseq: folder.highest_modseq,
                remote_token: folder.remote_token.clone(),
                local_token: Some(local_now),
                settings: folder.settings.clone(),
            },
        )?;
    }
    Ok(Tokens::InStep)
}

/// The token to record for `folder` from now on, if it is still as it was when `recorded`
/// was recorded.
async fn same_token(
    store: &mut dyn Store,
    folder: &FolderName,
    recorded: &str,
    side: fn(StoreError) -> SyncError,
) -> Result<Option<String>, SyncError> {
    store.unchanged_since(folder, recorded).await.map_err(side)
}

/// Whether the local side may be taken from the state when it is as the last sync left it:
/// not with a read-only side (the records then hold that side's flags, not necessarily the
/// local ones), nor under other settings than that sync's.
pub(super) fn local_from_state(folder: &FolderState, options: &SyncOptions) -> bool {
    !options.policy.readonly_local
        && !options.policy.readonly_remote
        && folder.settings.as_deref() == Some(options.settings.as_str())
}

/// The local listing without reading the folder, when the store said it is as the last
/// complete sync left it (`now`, its token for that): the records' local ids and flags are
/// then the listing. Not with messages kept as survivors, or messages the limits skipped.
async fn adopt_local_listing(
    local: &mut dyn Store,
    state: &mut StateDb,
    folder: &FolderState,
    local_name: &FolderName,
    records: &[Record],
    now: String,
) -> Result<Option<FolderSnapshot>, SyncError> {
    let mut messages = Vec::with_capacity(records.len());
    for record in records {
        match (&record.local, record.deleted_on) {
            (Some(id), None) => messages.push(MessageMeta {
                id: id.clone(),
                flags: record.flags.clone(),
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
    fetched: Option<Listing>,
) -> Result<(FolderSnapshot, Option<Vec<Record>>), SyncError> {
    let name = &folder.name;
    let listing = match fetched {
        Some(listing) => listing,
        None => remote
            .scan_since(name, since)
            .await
            .map_err(SyncError::remote)?,
    };
    let changes = match listing {
        Listing::Full(snapshot) => return Ok((snapshot, None)),
        Listing::Changes(changes) => changes,
    };
    let records = if folder.id >= 0 {
        state.records(folder.id)?
    } else {
        Vec::new()
    };
    if let Some(snapshot) = incremental::rebuild(&records, &changes) {
        return Ok((snapshot, Some(records)));
    }
    // Without QRESYNC, expunges go unreported: the folder's ids tell them, at a fraction of
    // what listing every message's flags costs.
    if changes.vanished.is_none()
        && let Some(present) = remote.present_ids().await.map_err(SyncError::remote)?
    {
        let changes = incremental::with_vanished(&records, &changes, &present);
        if let Some(snapshot) = incremental::rebuild(&records, &changes) {
            tracing::debug!(
                folder = %name,
                vanished = changes.vanished.as_ref().map_or(0, Vec::len),
                "expunges found by the folder's ids"
            );
            return Ok((snapshot, Some(records)));
        }
    }
    tracing::debug!(
        folder = %name,
        "the changes since the last sync do not add up to the server's message count; listing every message"
    );
    let snapshot = remote.scan(name).await.map_err(SyncError::remote)?;
    Ok((snapshot, Some(records)))
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
