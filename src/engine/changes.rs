//! A folder synced from the server's changes alone: when the local side is as the last sync
//! left it, only the messages the server reported new, reflagged or expunged since are looked
//! up in the state and planned — the cost of a re-sync is the change's, not the folder's.

use super::SyncError;
use super::folder::{FolderSync, Listings};
use crate::model::{FolderChanges, FolderName, FolderSnapshot, MessageMeta, MsgId};
use crate::plan::incremental::Narrowing;
use crate::state::FolderState;
use crate::store::{Listing, Since};

/// What came of trying to sync only the server's changes.
pub(super) enum ChangesOnly {
    /// Both sides listed for the messages the changes touch.
    Listed(Listings),
    /// Not possible after all: the server's answer, already asked for, is used as usual, and
    /// so is the local listing when it was read.
    Fetched(Listing, Option<FolderSnapshot>),
    /// Not possible: the folder is listed as usual.
    NotTried,
}

/// The listings of a sync that plans only the messages the server reported changed (new,
/// reflagged, expunged) since the last sync. Possible when the local side is as that sync
/// left it, the folder's records are settled pairs only, the settings are the same, and the
/// changes add up to the server's message count: every other message is then in step on both
/// sides and needs nothing, so neither the folder's records nor the Maildir are read — the
/// records the changes name are looked up by their server ids.
///
/// When the local side changed, it is listed in full and compared with the records as they
/// are read one by one ([`Narrowing`]): only the records either side touched are
/// kept and planned, so the plan and what is held in memory are the change's size.
///
/// `local`: what the caller asked of the local side, under [`super::folder::local_from_state`]:
/// `Some(Some(token))` when the store said the folder is as the last sync left it (its token
/// for that), `Some(None)` when it changed, `None` when it was not asked.
pub(super) async fn changes_only(
    cx: &mut FolderSync<'_>,
    folder: &FolderState,
    local_name: &FolderName,
    since: Option<Since>,
    local: Option<Option<&str>>,
) -> Result<ChangesOnly, SyncError> {
    let (Some(since), Some(local_now)) = (since, local) else {
        return Ok(ChangesOnly::NotTried);
    };
    if cx.options.dry_run || folder.id < 0 || !cx.state.only_pairs(folder.id)? {
        return Ok(ChangesOnly::NotTried);
    }
    let changes = match cx
        .remote
        .scan_since(&folder.name, Some(since))
        .await
        .map_err(SyncError::remote)?
    {
        Listing::Changes(changes) => changes,
        full @ Listing::Full(_) => return Ok(ChangesOnly::Fetched(full, None)),
    };
    let Some(local_now) = local_now else {
        return narrowed(cx, folder, local_name, changes).await;
    };
    let touched: Vec<MsgId> = changes
        .changed
        .iter()
        .map(|m| m.id.clone())
        .chain(changes.vanished.iter().flatten().cloned())
        .collect();
    let records = cx.state.records_with_remote(folder.id, &touched)?;
    let pairs = cx.state.remote_count(folder.id)?;
    let known: foldhash::HashSet<&MsgId> =
        records.iter().filter_map(|r| r.remote.as_ref()).collect();
    let gone = changes
        .vanished
        .iter()
        .flatten()
        .filter(|id| known.contains(id))
        .count();
    let arrived = changes
        .changed
        .iter()
        .filter(|m| !known.contains(&m.id))
        .count();
    // A server without QRESYNC does not report expunges: only the count tells there were none.
    if (pairs + arrived).checked_sub(gone) != Some(changes.exists as usize) {
        return Ok(ChangesOnly::Fetched(Listing::Changes(changes), None));
    }
    let local_messages = records
        .iter()
        .filter_map(|r| {
            Some(MessageMeta {
                id: r.local.clone()?,
                flags: r.flags.clone(),
            })
        })
        .collect();
    let Some(local) = cx
        .local
        .adopt_changes(local_name, local_messages, Some(local_now.to_owned()))
        .await
        .map_err(SyncError::local)?
    else {
        return Ok(ChangesOnly::Fetched(Listing::Changes(changes), None));
    };
    tracing::debug!(
        folder = %folder.name,
        touched = records.len(),
        arrived,
        pairs,
        "planned from the server's changes only"
    );
    let remote = FolderSnapshot {
        uid_validity: Some(changes.uid_validity),
        uid_next: changes.uid_next,
        highest_modseq: Some(changes.highest_modseq),
        token: changes.token,
        messages: changes.changed,
    };
    Ok(ChangesOnly::Listed(Listings {
        remote,
        local,
        records: Some(records),
        known_pairs: Some(pairs),
    }))
}

/// The listings of a sync whose local side changed since the last one: the local side is
/// listed in full, the records are compared with it as they stream from the state, and only
/// the messages either side touched are planned.
async fn narrowed(
    cx: &mut FolderSync<'_>,
    folder: &FolderState,
    local_name: &FolderName,
    changes: FolderChanges,
) -> Result<ChangesOnly, SyncError> {
    let local = cx.local.scan(local_name).await.map_err(SyncError::local)?;
    // A local side that renumbered (an IMAP one) is paired again by content, from everything.
    if local.uid_validity != cx.state.local_uid_validity(folder.id)? {
        return Ok(ChangesOnly::Fetched(Listing::Changes(changes), Some(local)));
    }
    let mut narrowing = Narrowing::new(&changes, &local.messages);
    cx.state
        .for_each_record(folder.id, |record| narrowing.add(record))?;
    let Some(kept) = narrowing.finish() else {
        return Ok(ChangesOnly::Fetched(Listing::Changes(changes), Some(local)));
    };
    tracing::debug!(
        folder = %folder.name,
        planned = kept.records.len(),
        remote = kept.remote.len(),
        local = kept.local.len(),
        pairs = kept.pairs,
        "planned from both sides' changes only"
    );
    let remote = FolderSnapshot {
        uid_validity: Some(changes.uid_validity),
        uid_next: changes.uid_next,
        highest_modseq: Some(changes.highest_modseq),
        token: changes.token,
        messages: kept.remote,
    };
    Ok(ChangesOnly::Listed(Listings {
        remote,
        local: FolderSnapshot {
            messages: kept.local,
            ..local
        },
        records: Some(kept.records),
        known_pairs: Some(kept.pairs),
    }))
}
