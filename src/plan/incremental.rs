//! A folder's listing rebuilt from the last sync's records and what the server reported as
//! changed since (CONDSTORE/QRESYNC, RFC 7162), so a re-sync costs what changed, not what the
//! folder holds. Pure: no I/O.
//!
//! A message the server did not report since the last sync's HIGHESTMODSEQ has the flags the
//! state recorded for it: after a complete sync both sides carry the recorded flags, and any
//! later change (ours included) raises the message's MODSEQ past that point.

use std::collections::BTreeMap;

use foldhash::{HashMap, HashSet};

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

/// What a folder's plan needs when both sides are known by their changes: the server's since
/// the last sync, and the local side by a full listing compared with the records as they
/// stream by. Only the records either side touched are kept, with both sides' entries for
/// them and the messages no record knows; every other record is a pair in step on both sides,
/// for which the planner would decide nothing.
///
/// A record the server did not report keeps the flags the state recorded on the server side
/// (as in [`rebuild`]); a record that is not a settled pair is always kept, so the planner sees
/// everything it would see with the whole folder.
pub struct Narrowing<'a> {
    changes: &'a FolderChanges,
    local: &'a [MessageMeta],
    local_at: HashMap<&'a MsgId, usize>,
    local_seen: Vec<bool>,
    changed_at: HashMap<&'a MsgId, usize>,
    changed_seen: Vec<bool>,
    vanished: HashSet<&'a MsgId>,
    kept: Narrowed,
    /// Records with a server copy, and how many of those the server expunged.
    on_server: usize,
    gone: usize,
    seen_any: bool,
}

/// The records and both sides' messages a plan over the changes alone works with.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Narrowed {
    pub records: Vec<Record>,
    pub remote: Vec<MessageMeta>,
    pub local: Vec<MessageMeta>,
    /// How many settled pairs the folder holds (the mass-deletion valve's base).
    pub pairs: usize,
}

impl<'a> Narrowing<'a> {
    /// `changes`: the server's since the last sync; `local`: every message the local side
    /// lists now.
    pub fn new(changes: &'a FolderChanges, local: &'a [MessageMeta]) -> Self {
        Self {
            changes,
            local,
            local_at: local.iter().enumerate().map(|(i, m)| (&m.id, i)).collect(),
            local_seen: vec![false; local.len()],
            changed_at: changes
                .changed
                .iter()
                .enumerate()
                .map(|(i, m)| (&m.id, i))
                .collect(),
            changed_seen: vec![false; changes.changed.len()],
            vanished: changes.vanished.iter().flatten().collect(),
            kept: Narrowed::default(),
            on_server: 0,
            gone: 0,
            seen_any: false,
        }
    }

    /// Takes in one of the folder's records; each record once.
    pub fn add(&mut self, record: Record) {
        self.seen_any = true;
        // Counted as the planner counts them without a base given.
        if record.remote.is_some() && record.local.is_some() {
            self.kept.pairs += 1;
        }
        let pair = record.remote.is_some() && record.local.is_some() && record.deleted_on.is_none();
        // The server side: reported changed, expunged, or as the state recorded it.
        let mut remote_touched = false;
        let mut remote = None;
        if let Some(id) = &record.remote {
            self.on_server += 1;
            if self.vanished.contains(id) {
                self.gone += 1;
                remote_touched = true;
            } else if let Some(&at) = self.changed_at.get(id) {
                self.changed_seen[at] = true;
                remote_touched = true;
                remote = Some(self.changes.changed[at].clone());
            } else {
                remote = Some(MessageMeta {
                    id: id.clone(),
                    flags: record.flags.clone(),
                });
            }
        }
        // The local side: listed with other flags than recorded, or not listed at all.
        let mut local_touched = record.local.is_some();
        let mut local = None;
        if let Some(&at) = record.local.as_ref().and_then(|id| self.local_at.get(id)) {
            self.local_seen[at] = true;
            local_touched = self.local[at].flags != record.flags;
            local = Some(at);
        }
        if pair && !remote_touched && !local_touched {
            return;
        }
        self.kept.remote.extend(remote);
        self.kept
            .local
            .extend(local.map(|at| self.local[at].clone()));
        self.kept.records.push(record);
    }

    /// The narrowed plan's input, or `None` when it cannot be trusted: the server's count does
    /// not come to what the state and the changes say (expunges a server without QRESYNC does
    /// not report), or the folder has no records at all (a first sync pairs by content).
    pub fn finish(self) -> Option<Narrowed> {
        let Narrowing {
            changes,
            local,
            local_seen,
            changed_seen,
            mut kept,
            on_server,
            gone,
            seen_any,
            ..
        } = self;
        if !seen_any {
            return None;
        }
        let arrived: Vec<MessageMeta> = changes
            .changed
            .iter()
            .zip(&changed_seen)
            .filter(|(_, seen)| !**seen)
            .map(|(m, _)| m.clone())
            .collect();
        if (on_server + arrived.len()).checked_sub(gone) != Some(changes.exists as usize) {
            return None;
        }
        kept.remote.extend(arrived);
        kept.local.extend(
            local
                .iter()
                .zip(&local_seen)
                .filter(|(_, seen)| !**seen)
                .map(|(m, _)| m.clone()),
        );
        Some(kept)
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

    mod properties {
        use super::*;
        use crate::plan::{MassDeleteGuard, Plan, Policy, Side, Valve, plan_folder_with};
        use proptest::prelude::*;

        fn flags() -> impl Strategy<Value = Flags> {
            (0u8..16).prop_map(|b| Flags::from_bits(b).expect("valid bits"))
        }

        fn sorted(plan: Plan) -> Result<Vec<String>, String> {
            match plan {
                Plan::Actions(actions) => {
                    let mut shown: Vec<String> = actions.iter().map(|a| format!("{a:?}")).collect();
                    shown.sort();
                    Ok(shown)
                }
                Plan::Refused(refusal) => Err(refusal.to_string()),
            }
        }

        proptest! {
            /// Planning over what the narrowing keeps decides exactly what planning over the
            /// whole folder (the server's listing rebuilt from the records and its changes, the
            /// full local listing) decides, valve included; or the narrowing declines.
            #[test]
            fn a_narrowed_plan_is_the_whole_folder_s_plan(
                cases in proptest::collection::vec(
                    (0u8..4, 0u8..4, 0u8..4, flags(), flags(), flags()), 0..40),
                arrivals in proptest::collection::vec(flags(), 0..4),
                new_local in proptest::collection::vec(flags(), 0..4),
                miscount in 0u8..8,
                (readonly_remote, readonly_local, sync_deletes, allow_mass_delete)
                    in (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
            ) {
                let mut records = Vec::new();
                let mut changed = Vec::new();
                let mut vanished = Vec::new();
                let mut local = Vec::new();
                let mut exists = 0u32;
                for (i, (shape, server, here, base, rf, lf)) in cases.iter().enumerate() {
                    let n = i as u32 + 1;
                    // shape: 0 a pair, 1 server copy only, 2 local copy only, 3 a survivor of
                    // a deletion on the server.
                    let (remote, local_id, deleted_on) = match shape {
                        0 => (Some(uid(n)), MsgId::new(format!("l{n}")), None),
                        1 => (Some(uid(n)), None, None),
                        2 => (None, MsgId::new(format!("l{n}")), None),
                        _ => (None, MsgId::new(format!("l{n}")), Some(Side::Remote)),
                    };
                    if remote.is_some() {
                        // server: 0/1 as recorded, 2 reflagged, 3 expunged.
                        match server {
                            2 => { changed.push(MessageMeta { id: uid(n), flags: rf.clone() }); exists += 1; }
                            3 => vanished.push(uid(n)),
                            _ => exists += 1,
                        }
                    }
                    if let Some(id) = &local_id {
                        // here: 0/1 as recorded, 2 reflagged, 3 deleted.
                        match here {
                            2 => local.push(MessageMeta { id: id.clone(), flags: lf.clone() }),
                            3 => {}
                            _ => local.push(MessageMeta { id: id.clone(), flags: base.clone() }),
                        }
                    }
                    records.push(Record { id: RecordId(i64::from(n)), remote, local: local_id, flags: base.clone(), deleted_on });
                }
                for (i, f) in arrivals.iter().enumerate() {
                    changed.push(MessageMeta { id: uid(1000 + i as u32), flags: f.clone() });
                    exists += 1;
                }
                for (i, f) in new_local.iter().enumerate() {
                    local.push(MessageMeta { id: MsgId::new(format!("new{i}")).expect("valid"), flags: f.clone() });
                }
                // Now and then the server's count disagrees (an unreported expunge).
                if miscount == 0 {
                    exists += 1;
                }
                let changes = FolderChanges {
                    uid_validity: UidValidity::new(7).expect("non-zero"),
                    uid_next: Some(2000),
                    highest_modseq: 50,
                    exists,
                    changed,
                    vanished: Some(vanished),
                    token: None,
                };
                let policy = Policy { readonly_remote, readonly_local: readonly_local && !readonly_remote, sync_deletes };
                let valve = |known_pairs| Valve { guard: MassDeleteGuard { max_percent: 50, min_messages: 2 }, allow_mass_delete, known_pairs };
                let linked = Default::default();

                let mut narrowing = Narrowing::new(&changes, &local);
                for r in records.iter().cloned() {
                    narrowing.add(r);
                }
                let narrowed = narrowing.finish();
                let whole = rebuild(&records, &changes);
                prop_assert_eq!(narrowed.is_some(), whole.is_some() && !records.is_empty());
                let (Some(narrowed), Some(whole)) = (narrowed, whole) else { return Ok(()); };
                let full = plan_folder_with(&records, &whole.messages, &local, policy, &linked, valve(None));
                let part = plan_folder_with(&narrowed.records, &narrowed.remote, &narrowed.local, policy, &linked, valve(Some(narrowed.pairs)));
                prop_assert_eq!(sorted(part), sorted(full));
                // Only what changed is kept: every record left out is a pair in step.
                let untouched = records.len() - narrowed.records.len();
                let in_step = cases
                    .iter()
                    .filter(|(shape, server, here, base, _, lf)| {
                        *shape == 0 && *server < 2 && (*here < 2 || (*here == 2 && lf == base))
                    })
                    .count();
                prop_assert_eq!(untouched, in_step);
            }
        }
    }
}
