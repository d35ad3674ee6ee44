//! Settling what an interrupted run left behind, and pairing messages by content when the ids
//! of either side no longer mean what the state recorded. The decisions are
//! `plan::recover`'s; this reads the stores and writes the state.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::SyncError;
use crate::model::{Flags, FolderName, FolderSnapshot, MessageMeta, MsgId, Uid};
use crate::plan::recover::{self, Known};
use crate::plan::{Record, RecordId};
use crate::state::{Pending, StateDb};
use crate::store::Store;

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

/// The flags to record for a recovered upload: the intent's, with only the keywords the
/// server copy shows. A store may give a copy some keywords only after its APPEND (Gmail's
/// labels are stored that way), and an interrupted upload may not have had them yet: recorded
/// as they are on the server, those are seen as set here and stored again, not taken for
/// keywords removed there.
fn keywords_as_on_server(intent: &Flags, on_server: Option<&Flags>) -> Flags {
    match on_server {
        Some(server) => {
            let missing = intent.keywords().minus(server.keywords());
            let kept = intent.keywords().minus(&missing);
            intent.without_keywords().with_keywords(kept)
        }
        None => intent.clone(),
    }
}

/// How long the server folder must hold still before an interrupted upload not found in it is
/// taken for lost, and how many times it is looked at again while it does not. A run killed
/// during an APPEND leaves the command to its server session, which may still commit it a
/// moment after the next run listed the folder: taken for lost then, the message would be
/// uploaded again and the late copy downloaded as new mail — twice on both sides.
const LATE_COMMIT_WAIT: Duration = Duration::from_secs(1);
const LATE_COMMIT_LOOKS: usize = 3;

/// Waits `LATE_COMMIT_WAIT`, lists `folder` again into `snap`, and tells whether it changed
/// meanwhile (a late commit may have landed).
async fn changed_after_a_while(
    store: &mut dyn Store,
    folder: &FolderName,
    snap: &mut FolderSnapshot,
) -> Result<bool, crate::store::StoreError> {
    tokio::time::sleep(LATE_COMMIT_WAIT).await;
    let again = store.scan(folder).await?;
    let still = again.uid_next == snap.uid_next && again.messages.len() == snap.messages.len();
    *snap = again;
    Ok(!still)
}

/// Settles the copies an earlier run started but did not confirm. `remote_snap` is listed
/// again (and replaced) when an upload is not found at first and the folder then changes.
pub(super) async fn recover_pending(
    remote: &mut dyn Store,
    state: &mut StateDb,
    (folder, name): (i64, &FolderName),
    remote_snap: &mut FolderSnapshot,
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

    let mut looks = 0;
    while !uploads.is_empty() {
        let (confirmed, lost) = find_uploads(
            remote,
            state,
            folder,
            &pending,
            &uploads,
            remote_snap,
            validity_changed,
        )
        .await?;
        recovered += confirmed.len();
        state.confirm(&confirmed)?;
        uploads.retain(|u| lost.contains(&u.0));
        if uploads.is_empty() || looks == LATE_COMMIT_LOOKS {
            break;
        }
        looks += 1;
        let changed = changed_after_a_while(remote, name, remote_snap)
            .await
            .map_err(SyncError::remote)?;
        if !changed {
            break;
        }
        tracing::info!(folder = %name, "the folder changed while an interrupted upload was looked for; looking again");
    }
    abandoned.extend(uploads.iter().map(|u| u.0));
    // Abandoned intents are dropped; the planner then sees the source message as new and copies
    // it again. Leftover staging files are cleaned by the stores.
    state.remove(&abandoned)?;
    Ok(recovered)
}

/// An interrupted upload: its record, the UIDNEXT before it, and its content's size and hash.
type Upload = (RecordId, u32, u64, [u8; 32]);

/// Looks for the server copies of interrupted uploads among the messages of `remote_snap` no
/// pair claims: the pairs to confirm, and the uploads not found.
async fn find_uploads(
    remote: &mut dyn Store,
    state: &mut StateDb,
    folder: i64,
    pending: &[Pending],
    uploads: &[Upload],
    remote_snap: &FolderSnapshot,
    validity_changed: bool,
) -> Result<(Vec<(RecordId, MsgId, MsgId, Flags)>, Vec<RecordId>), SyncError> {
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
    let wanted: Vec<(RecordId, u64, [u8; 32])> = uploads.iter().map(|u| (u.0, u.2, u.3)).collect();
    let server_flags: HashMap<&MsgId, &Flags> = remote_snap
        .messages
        .iter()
        .map(|m| (&m.id, &m.flags))
        .collect();
    let mut confirmed = Vec::new();
    let mut lost = Vec::new();
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
                let on_server = server_flags.get(&remote_id).copied();
                let recorded = keywords_as_on_server(flags, on_server);
                confirmed.push((record, remote_id, l.clone(), recorded));
            }
            None => lost.push(record),
        }
    }
    Ok((confirmed, lost))
}

/// Pairs both sides' messages by content (`recover::rematch`), with the records as history.
pub(super) async fn rematch(
    remote: &mut dyn Store,
    local: &mut dyn Store,
    records: &[Record],
    remote_snap: &FolderSnapshot,
    local_snap: &FolderSnapshot,
) -> Result<Vec<recover::Pair>, SyncError> {
    let with_fingerprints =
        |metas: &[MessageMeta], fps: Vec<(MsgId, crate::model::Fingerprint)>| {
            let flags: HashMap<&MsgId, Flags> =
                metas.iter().map(|m| (&m.id, m.flags.clone())).collect();
            fps.into_iter()
                .filter_map(|(id, fingerprint)| {
                    flags.get(&id).map(|f| Known {
                        flags: f.clone(),
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

/// Settles copies into a local side that assigns its own ids (IMAP) that an earlier run
/// started but did not confirm: the copy is looked for by content among the local messages no
/// pair claims, at or above the UIDNEXT recorded with the intent. A copy not found is looked
/// for again while the folder changes, as uploads are (`LATE_COMMIT_WAIT`): the killed run's
/// session on that server may commit its APPEND a moment later. `local_snap` is replaced by
/// the last listing.
pub(super) async fn recover_copies_to_local(
    local: &mut dyn Store,
    state: &mut StateDb,
    (folder, name): (i64, &FolderName),
    local_snap: &mut FolderSnapshot,
    validity_changed: bool,
) -> Result<usize, SyncError> {
    let mut copies: Vec<(RecordId, MsgId, Flags, u32, u64, [u8; 32])> = state
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
    let mut claimed: HashSet<MsgId> = state
        .records(folder)?
        .into_iter()
        .filter_map(|r| r.local)
        .collect();
    let mut recovered = 0;
    let mut looks = 0;
    loop {
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
        let wanted: Vec<(RecordId, u64, [u8; 32])> =
            copies.iter().map(|c| (c.0, c.4, c.5)).collect();
        let mut confirmed = Vec::new();
        let mut lost = Vec::new();
        for (record, found) in recover::match_uploads(&wanted, &fingerprints) {
            let Some((_, remote, flags, ..)) = copies.iter().find(|c| c.0 == record) else {
                continue;
            };
            match found {
                Some(local_id) => {
                    tracing::info!(remote = %remote, local = %local_id, "found the local copy of an interrupted copy");
                    claimed.insert(local_id.clone());
                    confirmed.push((record, remote.clone(), local_id, flags.clone()));
                }
                None => lost.push(record),
            }
        }
        recovered += confirmed.len();
        state.confirm(&confirmed)?;
        copies.retain(|c| lost.contains(&c.0));
        if copies.is_empty() || looks == LATE_COMMIT_LOOKS {
            break;
        }
        looks += 1;
        let changed = changed_after_a_while(local, name, local_snap)
            .await
            .map_err(SyncError::local)?;
        if !changed {
            break;
        }
        tracing::info!(folder = %name, "the folder changed while an interrupted copy was looked for; looking again");
    }
    // The planner sees the server message as new again and copies it once more.
    let abandoned: Vec<RecordId> = copies.iter().map(|c| c.0).collect();
    state.remove(&abandoned)?;
    Ok(recovered)
}
