//! `max_age` and `max_size`: which copies the limits leave out, remembered in the state.

use std::collections::{HashMap, HashSet};

use super::{FolderSync, SkippedMessage, SyncError};
use crate::model::MsgId;
use crate::plan::{Action, OutOfLimits, Side};
use crate::state::Skipped;

/// Drops the copies `max_age` and `max_size` leave out, remembering them with the limits that
/// did, so that a large archive outside the window is not examined again at every run.
pub(super) async fn apply_limits(
    cx: &mut FolderSync<'_>,
    folder: i64,
    actions: Vec<Action>,
) -> Result<Vec<Action>, SyncError> {
    let FolderSync {
        remote,
        local,
        state,
        options,
        report,
        ..
    } = cx;
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
