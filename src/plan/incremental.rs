//! A folder's listing rebuilt from the last sync's records and what the server reported as
//! changed since (CONDSTORE/QRESYNC, RFC 7162), so a re-sync costs what changed, not what the
//! folder holds. Pure: no I/O.
//!
//! A message the server did not report since the last sync's HIGHESTMODSEQ has the flags the
//! state recorded for it: after a complete sync both sides carry the recorded flags, and any
//! later change (ours included) raises the message's MODSEQ past that point.

use std::collections::BTreeMap;

use crate::model::{Flags, FolderChanges, FolderSnapshot, MessageMeta, MsgId};
use crate::plan::Record;

/// The full listing, or `None` when the result does not come to the number of messages the
/// server holds (expunges a server without QRESYNC does not report, or a state that does not
/// describe the folder): then only a full listing can be trusted.
pub fn rebuild(records: &[Record], changes: &FolderChanges) -> Option<FolderSnapshot> {
    let mut messages: BTreeMap<Key, (MsgId, Flags)> = records
        .iter()
        .filter_map(|r| {
            r.remote
                .clone()
                .map(|id| (Key::of(&id), (id, r.flags.clone())))
        })
        .collect();
    for gone in changes.vanished.iter().flatten() {
        messages.remove(&Key::of(gone));
    }
    for m in &changes.changed {
        messages.insert(Key::of(&m.id), (m.id.clone(), m.flags.clone()));
    }
    if messages.len() != changes.exists as usize {
        return None;
    }
    Some(FolderSnapshot {
        uid_validity: Some(changes.uid_validity),
        uid_next: changes.uid_next,
        highest_modseq: Some(changes.highest_modseq),
        token: changes.token.clone(),
        messages: messages
            .into_values()
            .map(|(id, flags)| MessageMeta { id, flags })
            .collect(),
    })
}

/// `changes` completed with the expunges a server without QRESYNC does not report: the
/// records' server ids that are not among `present` (every id the folder holds now).
pub fn with_vanished(
    records: &[Record],
    changes: &FolderChanges,
    present: &[MsgId],
) -> FolderChanges {
    let present: std::collections::HashSet<&MsgId> = present.iter().collect();
    let vanished = records
        .iter()
        .filter_map(|r| r.remote.as_ref())
        .filter(|id| !present.contains(id))
        .cloned()
        .collect();
    FolderChanges {
        vanished: Some(vanished),
        ..changes.clone()
    }
}

/// Orders server messages by UID, as a full listing would.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Uid(u32),
    Other(String),
}

impl Key {
    fn of(id: &MsgId) -> Self {
        match id.uid() {
            Some(uid) => Key::Uid(uid.get()),
            None => Key::Other(id.as_str().to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Uid, UidValidity};
    use crate::plan::RecordId;

    fn uid(n: u32) -> MsgId {
        MsgId::from_uid(Uid::new(n).expect("non-zero"))
    }

    fn record(n: u32, flags: Flags) -> Record {
        Record {
            id: RecordId(i64::from(n)),
            remote: Some(uid(n)),
            local: MsgId::new(format!("local{n}")),
            flags,
            deleted_on: None,
        }
    }

    fn changes(
        exists: u32,
        changed: Vec<(u32, Flags)>,
        vanished: Option<Vec<u32>>,
    ) -> FolderChanges {
        FolderChanges {
            uid_validity: UidValidity::new(7).expect("non-zero"),
            uid_next: Some(100),
            highest_modseq: 50,
            exists,
            changed: changed
                .into_iter()
                .map(|(n, flags)| MessageMeta { id: uid(n), flags })
                .collect(),
            vanished: vanished.map(|v| v.into_iter().map(uid).collect()),
            token: Some("t".into()),
        }
    }

    fn listed(snapshot: &FolderSnapshot) -> Vec<(u32, Flags)> {
        snapshot
            .messages
            .iter()
            .map(|m| (m.id.uid().map_or(0, Uid::get), m.flags.clone()))
            .collect()
    }

    #[test]
    fn unreported_messages_keep_the_recorded_flags() {
        let records = [record(1, Flags::SEEN), record(2, Flags::empty())];
        let snapshot = rebuild(&records, &changes(2, vec![], Some(vec![]))).expect("counts agree");
        assert_eq!(
            listed(&snapshot),
            vec![(1, Flags::SEEN), (2, Flags::empty())]
        );
        assert_eq!(snapshot.highest_modseq, Some(50));
        assert_eq!(snapshot.token.as_deref(), Some("t"));
    }

    #[test]
    fn changes_new_messages_and_expunges_apply_in_uid_order() {
        let records = [
            record(2, Flags::empty()),
            record(10, Flags::SEEN),
            record(3, Flags::empty()),
        ];
        let snapshot = rebuild(
            &records,
            &changes(
                3,
                vec![(3, Flags::FLAGGED), (11, Flags::empty())],
                Some(vec![10, 99]),
            ),
        )
        .expect("counts agree");
        assert_eq!(
            listed(&snapshot),
            vec![
                (2, Flags::empty()),
                (3, Flags::FLAGGED),
                (11, Flags::empty())
            ]
        );
    }

    #[test]
    fn an_unreported_expunge_makes_the_count_disagree() {
        // CONDSTORE without QRESYNC: expunges are not reported, only the count tells.
        let records = [record(1, Flags::empty()), record(2, Flags::empty())];
        assert!(rebuild(&records, &changes(1, vec![], None)).is_none());
        assert!(rebuild(&records, &changes(2, vec![(3, Flags::empty())], None)).is_none());
        assert!(rebuild(&records, &changes(3, vec![(3, Flags::empty())], None)).is_some());
    }

    #[test]
    fn the_folder_s_ids_tell_the_expunges_a_condstore_server_did_not_report() {
        let records = [
            record(1, Flags::SEEN),
            record(2, Flags::empty()),
            record(4, Flags::empty()),
        ];
        // 2 was expunged, 3 flagged (reported), 5 arrived; the server lists 1 3 4 5.
        let reported = changes(4, vec![(3, Flags::FLAGGED), (5, Flags::empty())], None);
        assert!(rebuild(&records, &reported).is_none());
        let present: Vec<MsgId> = [1, 3, 4, 5].into_iter().map(uid).collect();
        let completed = with_vanished(&records, &reported, &present);
        assert_eq!(completed.vanished, Some(vec![uid(2)]));
        let snapshot = rebuild(&records, &completed).expect("counts agree");
        assert_eq!(
            listed(&snapshot),
            vec![
                (1, Flags::SEEN),
                (3, Flags::FLAGGED),
                (4, Flags::empty()),
                (5, Flags::empty())
            ]
        );
        // An expunge after the count was taken still makes it disagree: listed in full.
        let later: Vec<MsgId> = [1, 3, 5].into_iter().map(uid).collect();
        assert!(rebuild(&records, &with_vanished(&records, &reported, &later)).is_none());
    }

    #[test]
    fn records_without_a_server_copy_are_not_listed() {
        let mut local_only = record(5, Flags::empty());
        local_only.remote = None;
        let records = [record(1, Flags::empty()), local_only];
        let snapshot = rebuild(&records, &changes(1, vec![], Some(vec![]))).expect("counts agree");
        assert_eq!(listed(&snapshot), vec![(1, Flags::empty())]);
    }
}
