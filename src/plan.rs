//! The sync planner: the previous state of a folder pair and the current listings of both sides
//! in, the list of actions that brings them in step out. No I/O, no clock: everything it decides
//! can be tested from data.
//!
//! The decision table is [`decide`]; the safety valve against mass deletion is [`plan_folder`].

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::config::MassDeleteGuard;
use crate::model::{Flags, MessageMeta, MsgId};

/// The database key of one synced message pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId(pub i64);

/// What the state database remembers of one message pair after the last sync that touched it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub id: RecordId,
    pub remote: Option<MsgId>,
    pub local: Option<MsgId>,
    /// The flags both sides had when they were last in step: the base of the three-way merge.
    pub flags: Flags,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Remote,
    Local,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Remote => Side::Local,
            Side::Local => Side::Remote,
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Remote => "server",
            Side::Local => "local",
        })
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A message new on `from` is copied to the other side with these flags.
    Copy { from: Side, id: MsgId, flags: Flags },
    /// Flags changed since the last sync: apply the merged set on the sides that lack it.
    Flags {
        record: RecordId,
        remote: MsgId,
        local: MsgId,
        remote_change: Option<FlagChange>,
        local_change: Option<FlagChange>,
        merged: Flags,
    },
    /// A message that vanished from one side is deleted on `on`, the side that still has it.
    Delete {
        record: RecordId,
        on: Side,
        id: MsgId,
    },
    /// The message is gone from both sides: drop what the state knows of it.
    Forget { record: RecordId },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagChange {
    pub add: Flags,
    pub remove: Flags,
}

impl FlagChange {
    fn between(from: Flags, to: Flags) -> Option<FlagChange> {
        (from != to).then(|| FlagChange {
            add: to.minus(from),
            remove: from.minus(to),
        })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Copy { from, id, flags } => {
                write!(f, "copy {from} message {id} to {} {flags}", from.other())
            }
            Action::Flags {
                remote,
                local,
                merged,
                ..
            } => write!(f, "set flags of {remote} / {local} to {merged}"),
            Action::Delete { on, id, .. } => {
                write!(f, "delete {on} message {id} (gone from {})", on.other())
            }
            Action::Forget { record } => write!(f, "forget message pair {}", record.0),
        }
    }
}

/// The three-way merge of one message's flags, decided per flag: a flag changed on one side
/// since the last sync takes that side's value. A flag is a yes/no value, so if both sides
/// changed it they changed it the same way: the merge never meets a conflict.
pub fn merge_flags(base: Flags, remote: Flags, local: Flags) -> Flags {
    let changed_locally = base.minus(local).union(local.minus(base));
    remote
        .minus(changed_locally)
        .union(local.intersect(changed_locally))
}

/// The decision table: what to do with one message, given what the state remembers of it and
/// whether each side has it now. Every combination has its own arm.
pub fn decide(
    record: Option<&Record>,
    remote: Option<&MessageMeta>,
    local: Option<&MessageMeta>,
) -> Option<Action> {
    match (record, remote, local) {
        // Nothing anywhere: the caller never asks, but the table is complete.
        (None, None, None) => None,
        // New on the server. One already marked \Deleted is on its way out, so it is not copied
        // (mbsync does the same); it stays on the server untouched.
        (None, Some(r), None) => (!r.flags.contains(Flags::DELETED)).then(|| Action::Copy {
            from: Side::Remote,
            id: r.id.clone(),
            flags: r.flags,
        }),
        // New in the Maildir (and likewise, a trashed one is not uploaded).
        (None, None, Some(l)) => (!l.flags.contains(Flags::DELETED)).then(|| Action::Copy {
            from: Side::Local,
            id: l.id.clone(),
            flags: l.flags,
        }),
        // The caller pairs unknown messages by record only, so two unknown messages are never
        // handed in together; were they, copying both ways keeps both and loses nothing.
        (None, Some(r), Some(_)) => Some(Action::Copy {
            from: Side::Remote,
            id: r.id.clone(),
            flags: r.flags,
        }),
        // Known and present on both sides: only flags can differ.
        (Some(rec), Some(r), Some(l)) => {
            let merged = merge_flags(rec.flags, r.flags, l.flags);
            let remote_change = FlagChange::between(r.flags, merged);
            let local_change = FlagChange::between(l.flags, merged);
            (remote_change.is_some() || local_change.is_some() || merged != rec.flags).then(|| {
                Action::Flags {
                    record: rec.id,
                    remote: r.id.clone(),
                    local: l.id.clone(),
                    remote_change,
                    local_change,
                    merged,
                }
            })
        }
        // Known, still in the Maildir, gone from the server.
        (Some(rec), None, Some(l)) => Some(match rec.remote {
            // It was on the server at the last sync, so it was expunged there: delete locally.
            Some(_) => Action::Delete {
                record: rec.id,
                on: Side::Local,
                id: l.id.clone(),
            },
            // It never reached the server (an upload that was never confirmed and whose copy
            // recovery did not find): upload it again rather than lose it.
            None => Action::Copy {
                from: Side::Local,
                id: l.id.clone(),
                flags: l.flags,
            },
        }),
        // Known, still on the server, gone from the Maildir.
        (Some(rec), Some(r), None) => Some(match rec.local {
            // The mail client deleted it: expunge it on the server.
            Some(_) => Action::Delete {
                record: rec.id,
                on: Side::Remote,
                id: r.id.clone(),
            },
            // A download that never completed: fetch it again.
            None => Action::Copy {
                from: Side::Remote,
                id: r.id.clone(),
                flags: r.flags,
            },
        }),
        // Gone from both sides: nothing left to keep in step.
        (Some(rec), None, None) => Some(Action::Forget { record: rec.id }),
    }
}

/// A folder whose sync was refused because it would delete too much on one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MassDeletion {
    /// The side the messages would be deleted on.
    pub on: Side,
    pub count: usize,
    /// How many messages the state knew in the folder.
    pub known: usize,
}

impl fmt::Display for MassDeletion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} messages vanished from the {} side; deleting them on the {} side was refused (nothing changed; if the deletion is real, run again with --allow-mass-delete)",
            self.count,
            self.known,
            self.on.other(),
            self.on
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Actions(Vec<Action>),
    Refused(MassDeletion),
}

/// Plans one folder pair. Messages are paired through the records; anything not in a record is
/// new on its side.
///
/// The safety valve: when the deletions one side's disappearance would cause on the other side
/// reach `guard.max_percent` of the folder's known messages (and the folder held at least
/// `guard.min_messages`), the folder is left alone and a [`MassDeletion`] is returned instead —
/// an emptied or swapped Maildir looks exactly like a user who deleted everything, and that is
/// how OfflineIMAP users lost whole mailboxes.
pub fn plan_folder(
    records: &[Record],
    remote: &[MessageMeta],
    local: &[MessageMeta],
    guard: MassDeleteGuard,
    allow_mass_delete: bool,
) -> Plan {
    let remote_by_id: HashMap<&MsgId, &MessageMeta> = remote.iter().map(|m| (&m.id, m)).collect();
    let local_by_id: HashMap<&MsgId, &MessageMeta> = local.iter().map(|m| (&m.id, m)).collect();
    let mut claimed_remote = HashSet::new();
    let mut claimed_local = HashSet::new();
    let mut actions = Vec::new();

    for rec in records {
        let r = rec
            .remote
            .as_ref()
            .and_then(|id| remote_by_id.get(id).copied());
        let l = rec
            .local
            .as_ref()
            .and_then(|id| local_by_id.get(id).copied());
        if let Some(id) = &rec.remote {
            claimed_remote.insert(id);
        }
        if let Some(id) = &rec.local {
            claimed_local.insert(id);
        }
        actions.extend(decide(Some(rec), r, l));
    }
    for m in remote.iter().filter(|m| !claimed_remote.contains(&m.id)) {
        actions.extend(decide(None, Some(m), None));
    }
    for m in local.iter().filter(|m| !claimed_local.contains(&m.id)) {
        actions.extend(decide(None, None, Some(m)));
    }

    if !allow_mass_delete {
        let known = records
            .iter()
            .filter(|r| r.remote.is_some() && r.local.is_some())
            .count();
        for on in [Side::Local, Side::Remote] {
            let count = actions
                .iter()
                .filter(|a| matches!(a, Action::Delete { on: s, .. } if *s == on))
                .count();
            let trips = count > 0
                && known >= guard.min_messages as usize
                && count * 100 >= usize::from(guard.max_percent) * known;
            if trips {
                return Plan::Refused(MassDeletion { on, count, known });
            }
        }
    }
    Plan::Actions(actions)
}

/// What to do with one folder name, given whether the state knows it (and how many message
/// pairs it holds there) and whether each side lists it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FolderAction {
    Sync,
    /// Create the folder on `on` first, then sync.
    CreateThenSync {
        on: Side,
    },
    /// The folder is gone from both sides: drop its state.
    Forget,
    /// The folder vanished from `from` while the state says it held mail there: an unmounted
    /// disk or a wrong path looks exactly like this, so nothing is done until the user says so.
    Vanished {
        from: Side,
        known: usize,
    },
    /// Not listed anywhere and unknown: nothing to do.
    Nothing,
}

/// The folder decision table. A folder new on one side is created on the other; a known folder
/// that vanished from one side is only re-created there when it held no mail or when the user
/// allowed mass deletion (its messages' deletions then go through the message planner).
pub fn decide_folder(
    known: Option<usize>,
    on_remote: bool,
    on_local: bool,
    allow_mass_delete: bool,
) -> FolderAction {
    let missing_side = |side: Side, known: usize| {
        if known == 0 || allow_mass_delete {
            FolderAction::CreateThenSync { on: side }
        } else {
            FolderAction::Vanished { from: side, known }
        }
    };
    match (known, on_remote, on_local) {
        (None, true, true) => FolderAction::Sync,
        (None, true, false) => FolderAction::CreateThenSync { on: Side::Local },
        (None, false, true) => FolderAction::CreateThenSync { on: Side::Remote },
        (None, false, false) => FolderAction::Nothing,
        (Some(_), true, true) => FolderAction::Sync,
        (Some(n), true, false) => missing_side(Side::Local, n),
        (Some(n), false, true) => missing_side(Side::Remote, n),
        (Some(_), false, false) => FolderAction::Forget,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> MsgId {
        MsgId::new(s).unwrap()
    }
    fn meta(s: &str, flags: Flags) -> MessageMeta {
        MessageMeta { id: id(s), flags }
    }
    fn rec(n: i64, remote: Option<&str>, local: Option<&str>, flags: Flags) -> Record {
        Record {
            id: RecordId(n),
            remote: remote.map(id),
            local: local.map(id),
            flags,
        }
    }
    const S: Flags = Flags::SEEN;
    const F: Flags = Flags::FLAGGED;
    const D: Flags = Flags::DELETED;
    const NONE: Flags = Flags::empty();

    /// One row per arm of the decision table.
    #[test]
    fn decision_table() {
        let r1 = meta("1", S);
        let la = meta("a", S);
        let both = rec(7, Some("1"), Some("a"), S);
        type Row<'a> = (
            &'a str,
            Option<Record>,
            Option<&'a MessageMeta>,
            Option<&'a MessageMeta>,
            Option<Action>,
        );
        let cases: Vec<Row> = vec![
            ("nothing", None, None, None, None),
            (
                "new on server",
                None,
                Some(&r1),
                None,
                Some(Action::Copy {
                    from: Side::Remote,
                    id: id("1"),
                    flags: S,
                }),
            ),
            (
                "new locally",
                None,
                None,
                Some(&la),
                Some(Action::Copy {
                    from: Side::Local,
                    id: id("a"),
                    flags: S,
                }),
            ),
            (
                "unpaired on both",
                None,
                Some(&r1),
                Some(&la),
                Some(Action::Copy {
                    from: Side::Remote,
                    id: id("1"),
                    flags: S,
                }),
            ),
            ("in step", Some(both.clone()), Some(&r1), Some(&la), None),
            (
                "expunged on server",
                Some(both.clone()),
                None,
                Some(&la),
                Some(Action::Delete {
                    record: RecordId(7),
                    on: Side::Local,
                    id: id("a"),
                }),
            ),
            (
                "upload never confirmed",
                Some(rec(7, None, Some("a"), S)),
                None,
                Some(&la),
                Some(Action::Copy {
                    from: Side::Local,
                    id: id("a"),
                    flags: S,
                }),
            ),
            (
                "deleted locally",
                Some(both.clone()),
                Some(&r1),
                None,
                Some(Action::Delete {
                    record: RecordId(7),
                    on: Side::Remote,
                    id: id("1"),
                }),
            ),
            (
                "download never completed",
                Some(rec(7, Some("1"), None, S)),
                Some(&r1),
                None,
                Some(Action::Copy {
                    from: Side::Remote,
                    id: id("1"),
                    flags: S,
                }),
            ),
            (
                "gone from both",
                Some(both.clone()),
                None,
                None,
                Some(Action::Forget {
                    record: RecordId(7),
                }),
            ),
        ];
        for (name, record, r, l, want) in cases {
            assert_eq!(decide(record.as_ref(), r, l), want, "{name}");
        }
    }

    #[test]
    fn new_messages_already_marked_deleted_are_not_copied() {
        assert_eq!(decide(None, Some(&meta("1", D)), None), None);
        assert_eq!(decide(None, None, Some(&meta("a", D.union(S)))), None);
    }

    #[test]
    fn flags_changed_on_either_side_are_merged_per_flag() {
        let record = rec(1, Some("1"), Some("a"), S);
        // Server added \Flagged, Maildir removed \Seen: both changes survive.
        let got = decide(
            Some(&record),
            Some(&meta("1", S.union(F))),
            Some(&meta("a", NONE)),
        );
        assert_eq!(
            got,
            Some(Action::Flags {
                record: RecordId(1),
                remote: id("1"),
                local: id("a"),
                remote_change: Some(FlagChange {
                    add: NONE,
                    remove: S
                }),
                local_change: Some(FlagChange {
                    add: F,
                    remove: NONE
                }),
                merged: F,
            })
        );
    }

    #[test]
    fn same_change_on_both_sides_only_updates_the_base() {
        let record = rec(1, Some("1"), Some("a"), NONE);
        let got = decide(Some(&record), Some(&meta("1", S)), Some(&meta("a", S)));
        assert_eq!(
            got,
            Some(Action::Flags {
                record: RecordId(1),
                remote: id("1"),
                local: id("a"),
                remote_change: None,
                local_change: None,
                merged: S,
            })
        );
    }

    fn many(n: usize) -> (Vec<Record>, Vec<MessageMeta>, Vec<MessageMeta>) {
        let records = (0..n)
            .map(|i| {
                rec(
                    i as i64,
                    Some(&format!("{}", i + 1)),
                    Some(&format!("l{i}")),
                    S,
                )
            })
            .collect();
        let remote = (0..n).map(|i| meta(&format!("{}", i + 1), S)).collect();
        let local = (0..n).map(|i| meta(&format!("l{i}"), S)).collect();
        (records, remote, local)
    }

    #[test]
    fn an_emptied_maildir_does_not_empty_the_server() {
        let (records, remote, _) = many(20);
        let guard = MassDeleteGuard::default();
        assert_eq!(
            plan_folder(&records, &remote, &[], guard, false),
            Plan::Refused(MassDeletion {
                on: Side::Remote,
                count: 20,
                known: 20
            })
        );
        // The explicit override lets a real mass deletion through.
        let Plan::Actions(actions) = plan_folder(&records, &remote, &[], guard, true) else {
            panic!("override ignored");
        };
        assert_eq!(actions.len(), 20);
    }

    #[test]
    fn an_emptied_server_folder_does_not_empty_the_maildir() {
        let (records, _, local) = many(20);
        let got = plan_folder(&records, &[], &local, MassDeleteGuard::default(), false);
        assert!(matches!(
            got,
            Plan::Refused(MassDeletion {
                on: Side::Local,
                ..
            })
        ));
    }

    #[test]
    fn ordinary_deletions_and_small_folders_pass_the_valve() {
        let guard = MassDeleteGuard::default();
        let (records, remote, local) = many(20);
        let Plan::Actions(a) = plan_folder(&records, &remote, &local[3..], guard, false) else {
            panic!("3 of 20 deletions refused");
        };
        assert_eq!(a.len(), 3);
        let (records, remote, _) = many(guard.min_messages as usize - 1);
        assert!(matches!(
            plan_folder(&records, &remote, &[], guard, false),
            Plan::Actions(_)
        ));
    }

    #[test]
    fn pairing_goes_through_records_and_unknown_messages_are_new() {
        let records = vec![rec(1, Some("1"), Some("a"), S)];
        let remote = vec![meta("1", S), meta("2", NONE)];
        let local = vec![meta("a", S), meta("b", F)];
        let Plan::Actions(a) =
            plan_folder(&records, &remote, &local, MassDeleteGuard::default(), false)
        else {
            panic!()
        };
        assert_eq!(
            a,
            vec![
                Action::Copy {
                    from: Side::Remote,
                    id: id("2"),
                    flags: NONE
                },
                Action::Copy {
                    from: Side::Local,
                    id: id("b"),
                    flags: F
                },
            ]
        );
    }

    #[test]
    fn folder_decision_table() {
        use FolderAction::*;
        let rows = [
            ((None, true, true, false), Sync),
            (
                (None, true, false, false),
                CreateThenSync { on: Side::Local },
            ),
            (
                (None, false, true, false),
                CreateThenSync { on: Side::Remote },
            ),
            ((None, false, false, false), Nothing),
            ((Some(3), true, true, false), Sync),
            (
                (Some(0), true, false, false),
                CreateThenSync { on: Side::Local },
            ),
            (
                (Some(3), true, false, false),
                Vanished {
                    from: Side::Local,
                    known: 3,
                },
            ),
            (
                (Some(3), true, false, true),
                CreateThenSync { on: Side::Local },
            ),
            (
                (Some(3), false, true, false),
                Vanished {
                    from: Side::Remote,
                    known: 3,
                },
            ),
            (
                (Some(0), false, true, false),
                CreateThenSync { on: Side::Remote },
            ),
            ((Some(3), false, false, false), Forget),
        ];
        for ((known, r, l, allow), want) in rows {
            assert_eq!(
                decide_folder(known, r, l, allow),
                want,
                "{known:?} {r} {l} {allow}"
            );
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn flags() -> impl Strategy<Value = Flags> {
            (0u8..64).prop_map(|b| Flags::from_bits(b).unwrap())
        }

        proptest! {
            /// After applying a plan to the two sides and the state, planning again finds nothing
            /// to do, and both sides hold the same messages with the same flags.
            #[test]
            fn a_plan_applied_converges(
                cases in proptest::collection::vec(
                    (0u8..8, flags(), flags(), flags()), 0..40)
            ) {
                let mut records = Vec::new();
                let mut remote = Vec::new();
                let mut local = Vec::new();
                for (i, (shape, base, rf, lf)) in cases.iter().enumerate() {
                    let (in_rec, in_r, in_l) = (shape & 1 != 0, shape & 2 != 0, shape & 4 != 0);
                    let rid = format!("{}", i + 1);
                    let lid = format!("l{i}");
                    if in_rec { records.push(rec(i as i64, Some(&rid), Some(&lid), *base)); }
                    if in_r { remote.push(meta(&rid, *rf)); }
                    if in_l { local.push(meta(&lid, *lf)); }
                }
                let Plan::Actions(actions) =
                    plan_folder(&records, &remote, &local, MassDeleteGuard::default(), true)
                else { unreachable!() };
                let mut next = 10_000i64;
                for a in actions {
                    match a {
                        Action::Copy { from, id, flags } => {
                            next += 1;
                            let new_id = MsgId::new(format!("n{next}")).unwrap();
                            let (rid, lid) = match from {
                                Side::Remote => { local.push(MessageMeta { id: new_id.clone(), flags }); (id, new_id) }
                                Side::Local => { remote.push(MessageMeta { id: new_id.clone(), flags }); (new_id, id) }
                            };
                            records.push(Record { id: RecordId(next), remote: Some(rid), local: Some(lid), flags });
                        }
                        Action::Flags { record, remote: rid, local: lid, merged, .. } => {
                            remote.iter_mut().filter(|m| m.id == rid).for_each(|m| m.flags = merged);
                            local.iter_mut().filter(|m| m.id == lid).for_each(|m| m.flags = merged);
                            records.iter_mut().filter(|r| r.id == record).for_each(|r| r.flags = merged);
                        }
                        Action::Delete { record, on, id } => {
                            match on { Side::Remote => remote.retain(|m| m.id != id), Side::Local => local.retain(|m| m.id != id) }
                            records.retain(|r| r.id != record);
                        }
                        Action::Forget { record } => records.retain(|r| r.id != record),
                    }
                }
                let again = plan_folder(&records, &remote, &local, MassDeleteGuard::default(), true);
                prop_assert_eq!(again, Plan::Actions(vec![]));
                // Every pair left holds equal flags on both sides.
                for r in &records {
                    let rf = remote.iter().find(|m| Some(&m.id) == r.remote.as_ref()).map(|m| m.flags);
                    let lf = local.iter().find(|m| Some(&m.id) == r.local.as_ref()).map(|m| m.flags);
                    prop_assert_eq!(rf, lf);
                }
            }
        }
    }
}
