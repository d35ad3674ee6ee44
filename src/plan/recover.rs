//! Pure decisions for finding copies again: after a crash interrupted an upload, after a
//! UIDVALIDITY change, and when a folder is synced for the first time with mail on both sides.
//! Messages are matched by content (size and SHA-256 of the canonical form), never by position.

use std::collections::HashMap;

use crate::model::{Fingerprint, Flags, MsgId};
use crate::plan::{Record, RecordId, Side};

/// A message pair as re-matching rebuilds it: server id, local id, base flags, and the side a
/// survivor's copy was deleted on (see [`Record::deleted_on`]).
pub type Pair = (Option<MsgId>, Option<MsgId>, Flags, Option<Side>);

type ContentKey = (u64, [u8; 32]);

fn key(fp: &Fingerprint) -> ContentKey {
    (fp.size, fp.sha256)
}

/// Pairs each interrupted upload with at most one unclaimed server message of the same content.
/// Returns, per pending upload, the server copy found, if any.
pub fn match_uploads(
    pending: &[(RecordId, u64, [u8; 32])],
    candidates: &[(MsgId, Fingerprint)],
) -> Vec<(RecordId, Option<MsgId>)> {
    let mut pool: HashMap<ContentKey, Vec<&MsgId>> = HashMap::new();
    for (id, fp) in candidates.iter().rev() {
        pool.entry(key(fp)).or_default().push(id);
    }
    pending
        .iter()
        .map(|(record, size, sha)| {
            let found = pool.get_mut(&(*size, *sha)).and_then(|ids| ids.pop());
            (*record, found.cloned())
        })
        .collect()
}

/// A message as listed with its content fingerprint.
#[derive(Debug, Clone)]
pub struct Known {
    pub id: MsgId,
    pub flags: Flags,
    pub fingerprint: Fingerprint,
}

/// Rebuilds a folder's message pairs by content. Used when the server's UIDVALIDITY changed (the
/// old UIDs mean nothing now) and when a folder without state has mail on both sides (so the
/// first sync does not duplicate everything).
///
/// Nothing is ever deleted through this: a local message the state knew but whose server copy is
/// not found becomes a pair without a server id, which the planner uploads; server messages not
/// matched stay unpaired, which the planner downloads. A local survivor of a server deletion
/// that was not carried over stays one, so it is not uploaded.
pub fn rematch(records: &[Record], remote: &[Known], local: &[Known]) -> Vec<Pair> {
    let base_by_local: HashMap<&MsgId, (Flags, Option<Side>)> = records
        .iter()
        .filter_map(|r| {
            r.local
                .as_ref()
                .map(|l| (l, (r.flags.clone(), r.deleted_on)))
        })
        .collect();
    let mut pool: HashMap<ContentKey, Vec<&Known>> = HashMap::new();
    for m in remote.iter().rev() {
        pool.entry(key(&m.fingerprint)).or_default().push(m);
    }
    let mut pairs = Vec::new();
    for l in local {
        let known = base_by_local.get(&l.id).cloned();
        match pool.get_mut(&key(&l.fingerprint)).and_then(|v| v.pop()) {
            // With no history, a flag set on either side counts as set: the base is what both
            // agree on, so the merge keeps the union.
            Some(r) => pairs.push((
                Some(r.id.clone()),
                Some(l.id.clone()),
                known.map_or_else(|| r.flags.intersect(&l.flags), |(base, _)| base),
                None,
            )),
            None => {
                if let Some((base, deleted_on)) = known {
                    pairs.push((None, Some(l.id.clone()), base, deleted_on));
                }
            }
        }
    }
    pairs
}

/// After the local side renumbered a folder, the pairs are rebuilt without history, but the
/// server ids are still good: a server survivor of a local deletion that was not carried over
/// stays one (instead of being downloaded again), unless re-matching paired its server copy.
pub fn keep_server_survivors(records: &[Record], mut pairs: Vec<Pair>) -> Vec<Pair> {
    let paired: std::collections::HashSet<MsgId> =
        pairs.iter().filter_map(|p| p.0.clone()).collect();
    for r in records {
        if r.deleted_on == Some(Side::Local)
            && let Some(remote) = &r.remote
            && !paired.contains(remote)
        {
            pairs.push((
                Some(remote.clone()),
                None,
                r.flags.clone(),
                Some(Side::Local),
            ));
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(n: u8) -> Fingerprint {
        Fingerprint {
            size: n as u64,
            sha256: [n; 32],
            message_id: None,
        }
    }
    fn id(s: &str) -> MsgId {
        MsgId::new(s).unwrap()
    }
    fn known(s: &str, flags: Flags, n: u8) -> Known {
        Known {
            id: id(s),
            flags,
            fingerprint: fp(n),
        }
    }

    #[test]
    fn each_server_copy_confirms_one_upload_only() {
        let pending = [
            (RecordId(1), 1, [1; 32]),
            (RecordId(2), 1, [1; 32]),
            (RecordId(3), 2, [2; 32]),
        ];
        let candidates = [(id("10"), fp(1))];
        assert_eq!(
            match_uploads(&pending, &candidates),
            vec![
                (RecordId(1), Some(id("10"))),
                (RecordId(2), None),
                (RecordId(3), None)
            ]
        );
    }

    #[test]
    fn rematch_pairs_by_content_and_deletes_nothing() {
        let records = vec![
            Record {
                id: RecordId(1),
                remote: Some(id("1")),
                local: Some(id("a")),
                flags: Flags::SEEN,
                deleted_on: None,
            },
            Record {
                id: RecordId(2),
                remote: Some(id("2")),
                local: Some(id("b")),
                flags: Flags::SEEN,
                deleted_on: None,
            },
        ];
        // The server renumbered: "a" is now UID 7; "b" is gone from the server; "c" is new locally.
        let remote = vec![known("7", Flags::SEEN, 1), known("8", Flags::empty(), 9)];
        let local = vec![
            known("a", Flags::SEEN, 1),
            known("b", Flags::SEEN, 2),
            known("c", Flags::FLAGGED, 3),
        ];
        assert_eq!(
            rematch(&records, &remote, &local),
            vec![
                (Some(id("7")), Some(id("a")), Flags::SEEN, None),
                (None, Some(id("b")), Flags::SEEN, None),
            ]
        );
    }

    #[test]
    fn duplicates_pair_one_to_one() {
        let remote = vec![known("1", Flags::SEEN, 1), known("2", Flags::empty(), 1)];
        let local = vec![known("a", Flags::FLAGGED, 1)];
        let pairs = rematch(&[], &remote, &local);
        assert_eq!(
            pairs,
            vec![(Some(id("1")), Some(id("a")), Flags::empty(), None)]
        );
    }

    #[test]
    fn server_survivors_outlive_a_local_renumbering() {
        let records = vec![
            Record {
                id: RecordId(1),
                remote: Some(id("5")),
                local: None,
                flags: Flags::FLAGGED,
                deleted_on: Some(Side::Local),
            },
            Record {
                id: RecordId(2),
                remote: Some(id("6")),
                local: Some(id("2")),
                flags: Flags::SEEN,
                deleted_on: None,
            },
        ];
        let pairs = vec![(Some(id("6")), Some(id("9")), Flags::SEEN, None)];
        assert_eq!(
            keep_server_survivors(&records, pairs.clone()),
            vec![
                pairs[0].clone(),
                (Some(id("5")), None, Flags::FLAGGED, Some(Side::Local))
            ]
        );
    }

    #[test]
    fn a_survivor_of_a_server_deletion_stays_one_after_rematching() {
        let records = vec![Record {
            id: RecordId(1),
            remote: None,
            local: Some(id("a")),
            flags: Flags::SEEN,
            deleted_on: Some(Side::Remote),
        }];
        let local = vec![known("a", Flags::SEEN, 1)];
        assert_eq!(
            rematch(&records, &[known("9", Flags::empty(), 2)], &local),
            vec![(None, Some(id("a")), Flags::SEEN, Some(Side::Remote))]
        );
    }
}
