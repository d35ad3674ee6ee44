//! Carrying out one folder's plan. Every effect follows the order its crash recovery relies on
//! (the module documentation of `engine` and ARCHITECTURE.md's "The order of writes"): deletions
//! and flags make the effect, then record it; copies record an intent, make the copy, then
//! confirm it.

use std::collections::HashMap;
use std::path::Path;

use super::{FolderSync, SyncError};
use crate::model::{Fingerprint, Flags, FolderName, FolderSnapshot, MsgId};
use crate::plan::{Action, RecordId, Side};
use crate::store::{FlagUpdate, Staged, Store, StoreError};

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

/// A folder's actions, sorted by the order they are carried out in.
#[derive(Default)]
struct Sorted {
    forget: Vec<RecordId>,
    detach: Vec<(RecordId, Side)>,
    flags: Vec<Action>,
    delete_remote: Vec<(RecordId, MsgId)>,
    delete_local: Vec<(RecordId, MsgId)>,
    /// Server -> a local side that reserves ids (Maildir).
    downloads: Vec<(MsgId, Flags)>,
    /// Local -> server.
    uploads: Vec<(MsgId, Flags)>,
    /// Server -> a local side that assigns its own ids (IMAP), which is copied into the way the
    /// server is: see [`upload`].
    to_local: Vec<(MsgId, Flags)>,
}

impl Sorted {
    fn new(actions: Vec<Action>, local_reserves_ids: bool) -> Self {
        let mut sorted = Sorted::default();
        for action in actions {
            match action {
                Action::Forget { record } => sorted.forget.push(record),
                Action::Detach { record, gone } => sorted.detach.push((record, gone)),
                Action::Flags { .. } => sorted.flags.push(action),
                Action::Delete {
                    record,
                    on: Side::Remote,
                    id,
                } => sorted.delete_remote.push((record, id)),
                Action::Delete {
                    record,
                    on: Side::Local,
                    id,
                } => sorted.delete_local.push((record, id)),
                Action::Copy {
                    from: Side::Remote,
                    id,
                    flags,
                } if local_reserves_ids => sorted.downloads.push((id, flags)),
                Action::Copy {
                    from: Side::Remote,
                    id,
                    flags,
                } => sorted.to_local.push((id, flags)),
                Action::Copy {
                    from: Side::Local,
                    id,
                    flags,
                } => sorted.uploads.push((id, flags)),
            }
        }
        sorted
    }
}

/// Carries out a folder's actions: what only touches the state, flags, deletions, then copies.
/// The snapshots give each copy's target its UIDNEXT (see [`upload`]).
pub(super) async fn apply(
    cx: &mut FolderSync<'_>,
    folder: i64,
    local_name: &FolderName,
    remote_snap: &FolderSnapshot,
    local_snap: &FolderSnapshot,
    actions: Vec<Action>,
) -> Result<(), SyncError> {
    let sorted = Sorted::new(actions, cx.local.reserves_ids());
    if !sorted.forget.is_empty() {
        cx.state.remove(&sorted.forget)?;
        cx.observer.advanced(sorted.forget.len());
    }
    if !sorted.detach.is_empty() {
        cx.state.detach(&sorted.detach)?;
        cx.observer.advanced(sorted.detach.len());
    }
    set_flags(cx, folder, &sorted.flags).await?;
    delete(cx, Side::Remote, &sorted.delete_remote).await?;
    delete(cx, Side::Local, &sorted.delete_local).await?;
    download(cx, folder, local_name, &sorted.downloads).await?;
    upload(cx, folder, Side::Remote, remote_snap, &sorted.uploads).await?;
    upload(cx, folder, Side::Local, local_snap, &sorted.to_local).await
}

/// Flags: both sides first, then the new base. Replaying after a crash is harmless.
async fn set_flags(
    cx: &mut FolderSync<'_>,
    folder: i64,
    actions: &[Action],
) -> Result<(), SyncError> {
    if actions.is_empty() {
        return Ok(());
    }
    let mut remote_updates = Vec::new();
    let mut local_updates = Vec::new();
    let mut bases = Vec::new();
    for a in actions {
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
                    add: c.add.clone(),
                    remove: c.remove.clone(),
                });
            }
            if let Some(c) = local_change {
                local_updates.push(FlagUpdate {
                    id: l.clone(),
                    add: c.add.clone(),
                    remove: c.remove.clone(),
                });
            }
            bases.push((*record, merged.clone()));
        }
    }
    if !remote_updates.is_empty() {
        cx.remote
            .set_flags(&remote_updates)
            .await
            .map_err(SyncError::remote)?;
    }
    if !local_updates.is_empty() {
        cx.local
            .set_flags(&local_updates)
            .await
            .map_err(SyncError::local)?;
    }
    remember_refusals(cx, folder)?;
    cx.state.set_flags(&bases)?;
    cx.report.flags_remote += remote_updates.len();
    cx.report.flags_local += local_updates.len();
    cx.observer.advanced(actions.len());
    Ok(())
}

/// Deletions on `on`: the effect, then the state. Forgetting the pairs first would make the
/// survivors look new after a crash, and copy them back.
async fn delete(
    cx: &mut FolderSync<'_>,
    on: Side,
    doomed: &[(RecordId, MsgId)],
) -> Result<(), SyncError> {
    if doomed.is_empty() {
        return Ok(());
    }
    let ids: Vec<MsgId> = doomed.iter().map(|(_, id)| id.clone()).collect();
    cx.store(on)
        .delete(&ids)
        .await
        .map_err(|e| SyncError::from_store(on, e))?;
    cx.state
        .remove(&doomed.iter().map(|(r, _)| *r).collect::<Vec<_>>())?;
    match on {
        Side::Remote => cx.report.deleted_remote += ids.len(),
        Side::Local => cx.report.deleted_local += ids.len(),
    }
    cx.observer.advanced(ids.len());
    Ok(())
}

/// Server -> a local side that reserves ids (Maildir), in growing batches. A message the
/// server says is also in another folder (the same global id, Gmail's X-GM-MSGID) whose local
/// copy is settled there is linked to that copy instead of downloaded.
async fn download(
    cx: &mut FolderSync<'_>,
    folder: i64,
    local_name: &FolderName,
    downloads: &[(MsgId, Flags)],
) -> Result<(), SyncError> {
    let staging = cx
        .local
        .staging_dir(local_name)
        .unwrap_or_else(|| cx.options.scratch_dir.clone());
    let copies = local_copies(cx, downloads)?;
    let batches = download_batches(downloads);
    for (n, batch) in batches.iter().enumerate() {
        let next = batches.get(n + 1).map(|next| to_fetch(next, &copies));
        download_batch(cx, folder, &staging, batch, &copies, next).await?;
        // Messages expunged on the server between listing and fetching stay as intents without
        // a file; the next run drops them (recovery) and the planner sees they are gone.
    }
    Ok(())
}

/// Where a local copy may already be: per server id, the copies of the same global id in
/// other folders, with the global id.
type Copies = HashMap<MsgId, (u64, Vec<(FolderName, MsgId, Flags)>)>;

fn local_copies(cx: &FolderSync<'_>, downloads: &[(MsgId, Flags)]) -> Result<Copies, SyncError> {
    let mut copies = HashMap::new();
    for (id, _) in downloads {
        if let Some(global) = cx.remote.global_id(id) {
            copies.insert(id.clone(), (global, cx.state.local_copies(global)?));
        }
    }
    Ok(copies)
}

/// The messages of `batch` that have no local copy to link to.
fn to_fetch(batch: &[(MsgId, Flags)], copies: &Copies) -> Vec<MsgId> {
    batch
        .iter()
        .filter(|(id, _)| copies.get(id).is_none_or(|(_, c)| c.is_empty()))
        .map(|(id, _)| id.clone())
        .collect()
}

/// Links the messages of `ids` that have a local copy in another folder; returns the staged
/// links and the ids still to be fetched.
async fn link_copies(
    cx: &mut FolderSync<'_>,
    staging: &Path,
    ids: &[MsgId],
    copies: &Copies,
) -> Result<(Vec<Staged>, Vec<MsgId>), SyncError> {
    let mut linked = Vec::new();
    let mut fetch = Vec::new();
    for id in ids {
        let mut staged = None;
        for (other, local, flags) in copies.get(id).map_or(&[][..], |(_, c)| c) {
            staged = cx
                .local
                .stage_twin(other, local, flags, staging)
                .await
                .map_err(SyncError::local)?;
            if staged.is_some() {
                break;
            }
        }
        match staged {
            Some(s) => linked.push(Staged {
                source_id: id.clone(),
                ..s
            }),
            None => fetch.push(id.clone()),
        }
    }
    Ok((linked, fetch))
}

/// One batch of downloads: commit the intents with the reserved ids, link or stage, deliver,
/// flush, confirm what was delivered. `next` (what the next batch fetches) is fetched ahead
/// while this batch is written.
async fn download_batch(
    cx: &mut FolderSync<'_>,
    folder: i64,
    staging: &Path,
    batch: &[(MsgId, Flags)],
    copies: &Copies,
    next: Option<Vec<MsgId>>,
) -> Result<(), SyncError> {
    let mut intents = Vec::new();
    for (id, flags) in batch {
        let reserved = cx.local.reserve_id().ok_or_else(|| {
            SyncError::local(StoreError::Invalid(
                "the local store cannot reserve message ids".into(),
            ))
        })?;
        intents.push((id.clone(), reserved, flags.clone()));
    }
    cx.state.begin_downloads(folder, &intents)?;
    let ids: Vec<MsgId> = batch.iter().map(|(id, _)| id.clone()).collect();
    let (mut staged, fetch) = if copies.is_empty() {
        (Vec::new(), ids)
    } else {
        link_copies(cx, staging, &ids, copies).await?
    };
    let linked: Vec<MsgId> = staged.iter().map(|s| s.source_id.clone()).collect();
    if !fetch.is_empty() {
        staged.extend(
            cx.remote
                .stage(&fetch, staging)
                .await
                .map_err(SyncError::remote)?,
        );
    }
    // The next batch travels while this one is written: no round trip between batches.
    if let Some(next) = next.filter(|next| !next.is_empty()) {
        cx.remote.prefetch(&next).await.map_err(SyncError::remote)?;
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
        match cx.local.deliver(s, flags, Some(reserved)).await {
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
    cx.local.flush().await.map_err(SyncError::local)?;
    cx.state.confirm_downloads(folder, &delivered)?;
    let globals: Vec<(MsgId, u64)> = delivered
        .iter()
        .filter_map(|id| copies.get(id).map(|(global, _)| (id.clone(), *global)))
        .collect();
    cx.state.set_global_ids(folder, &globals)?;
    cx.report.downloaded += delivered.len();
    cx.report.linked += delivered.iter().filter(|id| linked.contains(id)).count();
    cx.observer.advanced(delivered.len());
    result
}

/// Copies to a side that assigns ids itself: local messages to the server, or server messages
/// to an IMAP local side. Per batch: commit intents with the target's UIDNEXT and each
/// content's size and SHA-256, deliver, confirm the ids the target reported. A copy without a
/// reported id (no APPENDUID), or one a crash interrupted, keeps its intent: the next run finds
/// it by content among the target's new messages (`recover_pending`,
/// `recover_copies_to_local`) instead of copying it twice.
/// Keywords a store refused (see `Store::refused_keywords`) are written before the records
/// that carry them: after a crash the next run still knows that their absence on that side is
/// no removal, which would take them from the other side too.
fn remember_refusals(cx: &mut FolderSync<'_>, folder: i64) -> Result<(), SyncError> {
    for (side, refused) in [
        (Side::Remote, cx.remote.refused_keywords()),
        (Side::Local, cx.local.refused_keywords()),
    ] {
        if !refused.is_empty() {
            cx.state.add_refused_keywords(folder, side, &refused)?;
        }
    }
    Ok(())
}

async fn upload(
    cx: &mut FolderSync<'_>,
    folder: i64,
    to: Side,
    target: &FolderSnapshot,
    copies: &[(MsgId, Flags)],
) -> Result<(), SyncError> {
    let uid_next = uid_next(target);
    for batch in copies.chunks(BATCH) {
        let (intents, staged) = match to {
            Side::Remote => begin_uploads(cx, folder, uid_next, batch).await?,
            Side::Local => begin_copies_to_local(cx, folder, uid_next, batch).await?,
        };
        let messages: Vec<(&Staged, &Flags)> = staged
            .iter()
            .filter_map(|s| {
                intents
                    .iter()
                    .find(|(id, _, _)| *id == s.source_id)
                    .map(|(_, flags, _)| (s, flags))
            })
            .collect();
        let (ids, failure) = match to {
            // MULTIAPPEND where the server has it: one command and transaction per batch.
            Side::Remote => cx.remote.deliver_all(&messages).await,
            Side::Local => deliver_each(&mut *cx.local, &messages).await,
        };
        let confirmed: Vec<(MsgId, MsgId, Flags)> = messages
            .iter()
            .zip(ids)
            .filter_map(|((s, flags), id)| {
                id.map(|id| (s.source_id.clone(), id, Flags::clone(flags)))
            })
            .collect();
        let mut result = failure.map_or(Ok(()), |e| Err(SyncError::from_store(to, e)));
        remove_temporary(&staged);
        remember_refusals(cx, folder)?;
        match to {
            Side::Remote => {
                cx.state.confirm_uploads(folder, &confirmed)?;
                cx.report.uploaded += confirmed.len();
                // The server's global ids of the new copies (Gmail's X-GM-MSGID), so that the
                // same message in another folder (All Mail) is linked to the file uploaded.
                if result.is_ok() && cx.remote.global_archive().is_some() {
                    let uploaded: Vec<MsgId> = confirmed
                        .iter()
                        .map(|(_, remote, _)| remote.clone())
                        .collect();
                    let globals = cx
                        .remote
                        .fetch_global_ids(&uploaded)
                        .await
                        .map_err(SyncError::remote)?;
                    cx.state.set_global_ids(folder, &globals)?;
                }
            }
            Side::Local => {
                // A local store may defer deliveries to `flush`.
                if result.is_ok() {
                    result = cx.local.flush().await.map_err(SyncError::local);
                }
                cx.state.confirm_copies_to_local(folder, &confirmed)?;
                cx.report.downloaded += confirmed.len();
            }
        }
        cx.observer.advanced(batch.len());
        result?;
    }
    Ok(())
}

/// The UIDNEXT a copy's intent records: the target's own, or one past its highest UID when it
/// does not say.
fn uid_next(target: &FolderSnapshot) -> u32 {
    target.uid_next.unwrap_or_else(|| {
        target
            .messages
            .iter()
            .filter_map(|m| m.id.uid())
            .map(|u| u.get().saturating_add(1))
            .max()
            .unwrap_or(1)
    })
}

type Intents = Vec<(MsgId, Flags, Fingerprint)>;

/// Local -> server: the local store fingerprints its own messages, the intents are committed,
/// and only then are the messages staged for the APPEND.
async fn begin_uploads(
    cx: &mut FolderSync<'_>,
    folder: i64,
    uid_next: u32,
    batch: &[(MsgId, Flags)],
) -> Result<(Intents, Vec<Staged>), SyncError> {
    let ids: Vec<MsgId> = batch.iter().map(|(id, _)| id.clone()).collect();
    let fingerprints = cx
        .local
        .fingerprints(&ids)
        .await
        .map_err(SyncError::local)?;
    let intents: Intents = fingerprints
        .into_iter()
        .filter_map(|(id, fp)| {
            batch
                .iter()
                .find(|(b, _)| *b == id)
                .map(|(_, flags)| (id, flags.clone(), fp))
        })
        .collect();
    cx.state.begin_uploads(folder, uid_next, &intents)?;
    let present: Vec<MsgId> = intents.iter().map(|(id, _, _)| id.clone()).collect();
    let staged = cx
        .local
        .stage(&present, &cx.options.scratch_dir)
        .await
        .map_err(SyncError::local)?;
    Ok((intents, staged))
}

/// Server -> an IMAP local side: the server's messages are staged first and fingerprinted from
/// the staged files, then the intents are committed. Staged files are removed when this fails.
async fn begin_copies_to_local(
    cx: &mut FolderSync<'_>,
    folder: i64,
    uid_next: u32,
    batch: &[(MsgId, Flags)],
) -> Result<(Intents, Vec<Staged>), SyncError> {
    let ids: Vec<MsgId> = batch.iter().map(|(id, _)| id.clone()).collect();
    let staged = cx
        .remote
        .stage(&ids, &cx.options.scratch_dir)
        .await
        .map_err(SyncError::remote)?;
    let intents = match fingerprint_staged(&staged, batch) {
        Ok(intents) => intents,
        Err(e) => {
            remove_temporary(&staged);
            return Err(e);
        }
    };
    if let Err(e) = cx.state.begin_copies_to_local(folder, uid_next, &intents) {
        remove_temporary(&staged);
        return Err(e.into());
    }
    Ok((intents, staged))
}

/// The intents of the staged messages of `batch`, fingerprinted from their staged files.
fn fingerprint_staged(staged: &[Staged], batch: &[(MsgId, Flags)]) -> Result<Intents, SyncError> {
    let mut intents = Vec::new();
    for s in staged {
        let Some((_, flags)) = batch.iter().find(|(id, _)| *id == s.source_id) else {
            continue;
        };
        let fingerprint = std::fs::File::open(&s.path)
            .and_then(|f| crate::message::fingerprint(std::io::BufReader::new(f)));
        match fingerprint {
            Ok(fp) => intents.push((s.source_id.clone(), flags.clone(), fp)),
            Err(e) => return Err(SyncError::local(StoreError::io(&s.path, e))),
        }
    }
    Ok(intents)
}

/// One `deliver` per message, up to the first failure: [`Store::deliver_all`]'s default,
/// without the batch command (MULTIAPPEND) an IMAP store puts in its place. Copies into an
/// IMAP local side have always gone one message at a time.
async fn deliver_each(
    store: &mut dyn Store,
    messages: &[(&Staged, &Flags)],
) -> (Vec<Option<MsgId>>, Option<StoreError>) {
    let mut ids = Vec::with_capacity(messages.len());
    for (message, flags) in messages {
        match store.deliver(message, flags, None).await {
            Ok(id) => ids.push(id),
            Err(e) => return (ids, Some(e)),
        }
    }
    (ids, None)
}

fn remove_temporary(staged: &[Staged]) {
    for s in staged {
        if s.temporary {
            let _ = std::fs::remove_file(&s.path);
        }
    }
}
