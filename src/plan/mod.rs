//! The sync planner: the previous state of a folder pair and the current listings of both sides
//! in, the list of actions that brings them in step out. No I/O, no clock: everything it decides
//! can be tested from data.
//!
//! The decision table is [`decide`]; the safety valve against mass deletion is [`plan_folder`].

pub mod incremental;
pub mod recover;

use foldhash::{HashMap, HashSet, HashSetExt};
use std::fmt;

use crate::model::{Flags, FolderName, KeywordRoom, Keywords, MessageMeta, MsgId};

/// The database key of one synced message pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId(pub i64);

/// When a sync would delete this much of a folder on one side because it vanished on the other,
/// it is refused (see the safety valve in the planner).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MassDeleteGuard {
    /// Refuse when more than this share (in percent) of a folder's known messages would go.
    pub max_percent: u8,
    /// ... but only for folders that held at least this many messages.
    pub min_messages: u32,
}

impl Default for MassDeleteGuard {
    fn default() -> Self {
        Self {
            max_percent: 50,
            min_messages: 10,
        }
    }
}

/// What the state database remembers of one message pair after the last sync that touched it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub id: RecordId,
    pub remote: Option<MsgId>,
    pub local: Option<MsgId>,
    /// The flags both sides had when they were last in step: the base of the three-way merge.
    /// With one side read-only, the flags that side has (see [`Policy`]).
    pub flags: Flags,
    /// The copy on this side was deleted and the deletion deliberately not carried to the other
    /// side (that side is read-only, or `sync_deletes = false`). The survivor is kept alone:
    /// never deleted, never copied back. The deleted side's id is `None`.
    pub deleted_on: Option<Side>,
}

/// What the account allows the planner to do, from its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// `remote.readonly`: nothing is ever written to the server.
    pub readonly_remote: bool,
    /// `local.readonly`: nothing is ever written to the local side.
    pub readonly_local: bool,
    /// `sync_deletes`: a message deleted on one side is deleted on the other.
    pub sync_deletes: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            readonly_remote: false,
            readonly_local: false,
            sync_deletes: true,
        }
    }
}

impl Policy {
    /// Whether anything may be written to `side`.
    pub fn writable(&self, side: Side) -> bool {
        match side {
            Side::Remote => !self.readonly_remote,
            Side::Local => !self.readonly_local,
        }
    }

    /// Whether a message that vanished from the other side may be deleted on `on`.
    pub fn deletes_on(&self, on: Side) -> bool {
        self.sync_deletes && self.writable(on)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// The message vanished from `gone`, and its deletion is not carried over (the other side is
    /// read-only, or `sync_deletes = false`): remember that the survivor stays alone, so it is
    /// neither deleted nor copied back.
    Detach { record: RecordId, gone: Side },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagChange {
    pub add: Flags,
    pub remove: Flags,
}

impl FlagChange {
    fn between(from: &Flags, to: &Flags) -> Option<FlagChange> {
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
            Action::Detach { record, gone } => write!(
                f,
                "keep the {} copy of message pair {} (deleted on the {gone} side, deletion not carried over)",
                gone.other(),
                record.0
            ),
        }
    }
}

/// The three-way merge of one message's flags, decided per flag: a flag changed on one side
/// since the last sync takes that side's value. A flag is a yes/no value, so if both sides
/// changed it they changed it the same way: the merge never meets a conflict. Keywords are
/// flags like the others here, each merged on its own.
pub fn merge_flags(base: &Flags, remote: &Flags, local: &Flags) -> Flags {
    let changed_locally = base.minus(local).union(&local.minus(base));
    remote
        .minus(&changed_locally)
        .union(&local.intersect(&changed_locally))
}

/// Keywords a side cannot hold (see [`KeywordRoom`]) live on in the state: each listed message
/// of `side` whose record's flags carry such keywords is listed with them. Their absence there
/// then never reads as a removal — which would remove them from the other side, where they
/// are — and the merge leaves them as they are, so they are not tried again at every sync.
pub fn keep_unheld_keywords(
    records: &[Record],
    side: Side,
    listing: &mut [MessageMeta],
    room: &KeywordRoom,
) {
    if *room == KeywordRoom::Any {
        return;
    }
    let unheld: HashMap<&MsgId, Keywords> = records
        .iter()
        .filter_map(|r| {
            let id = match side {
                Side::Remote => r.remote.as_ref(),
                Side::Local => r.local.as_ref(),
            }?;
            let kept = r.flags.keywords().filter(|k| !room.holds(k));
            (!kept.is_empty()).then_some((id, kept))
        })
        .collect();
    if unheld.is_empty() {
        return;
    }
    for m in listing.iter_mut() {
        if let Some(kept) = unheld.get(&m.id) {
            let keywords = m.flags.keywords().union(kept);
            m.flags = std::mem::take(&mut m.flags).with_keywords(keywords);
        }
    }
}

/// The decision table: what to do with one message, given what the state remembers of it,
/// whether each side has it now, and what the account allows. Every combination has its own
/// arm; the arms for known messages are in [`decide_paired`] and [`decide_detached`].
pub fn decide(
    record: Option<&Record>,
    remote: Option<&MessageMeta>,
    local: Option<&MessageMeta>,
    policy: Policy,
) -> Option<Action> {
    // A copy only goes to a side that may be written to.
    let copy = |from: Side, m: &MessageMeta| {
        policy.writable(from.other()).then(|| Action::Copy {
            from,
            id: m.id.clone(),
            flags: m.flags.clone(),
        })
    };
    match (record, remote, local) {
        // Nothing anywhere: the caller never asks, but the table is complete.
        (None, None, None) => None,
        // New on the server. One already marked \Deleted is on its way out, so it is not copied
        // (mbsync does the same); it stays on the server untouched.
        (None, Some(r), None) => match r.flags.contains(&Flags::DELETED) {
            true => None,
            false => copy(Side::Remote, r),
        },
        // New in the Maildir (and likewise, a trashed one is not uploaded).
        (None, None, Some(l)) => match l.flags.contains(&Flags::DELETED) {
            true => None,
            false => copy(Side::Local, l),
        },
        // The caller pairs unknown messages by record only, so two unknown messages are never
        // handed in together; were they, copying both ways keeps both and loses nothing.
        (None, Some(r), Some(l)) => copy(Side::Remote, r).or_else(|| copy(Side::Local, l)),
        (Some(rec), r, l) => match rec.deleted_on {
            None => decide_paired(rec, r, l, policy),
            Some(gone) => decide_detached(rec, gone, r, l),
        },
    }
}

/// The arms for a message the state knows as a pair (or as a copy in flight).
fn decide_paired(
    rec: &Record,
    remote: Option<&MessageMeta>,
    local: Option<&MessageMeta>,
    policy: Policy,
) -> Option<Action> {
    match (remote, local) {
        // Known and present on both sides: only flags can differ.
        (Some(r), Some(l)) => {
            let merged = merge_flags(&rec.flags, &r.flags, &l.flags);
            // A read-only side keeps its flags; the base becomes what it has, so its
            // difference from the merge never reads as a change on either side next time
            // (which would revert the writable side's change).
            let (remote_change, local_change, base) =
                match (policy.writable(Side::Remote), policy.writable(Side::Local)) {
                    (true, true) => (
                        FlagChange::between(&r.flags, &merged),
                        FlagChange::between(&l.flags, &merged),
                        merged,
                    ),
                    (true, false) => (
                        FlagChange::between(&r.flags, &merged),
                        None,
                        l.flags.clone(),
                    ),
                    (false, true) => (
                        None,
                        FlagChange::between(&l.flags, &merged),
                        r.flags.clone(),
                    ),
                    (false, false) => (None, None, rec.flags.clone()),
                };
            (remote_change.is_some() || local_change.is_some() || base != rec.flags).then(|| {
                Action::Flags {
                    record: rec.id,
                    remote: r.id.clone(),
                    local: l.id.clone(),
                    remote_change,
                    local_change,
                    merged: base,
                }
            })
        }
        // Known, still in the Maildir, gone from the server.
        (None, Some(l)) => match (&rec.remote, policy.deletes_on(Side::Local)) {
            // It was on the server at the last sync, so it was expunged there: delete locally.
            (Some(_), true) => Some(Action::Delete {
                record: rec.id,
                on: Side::Local,
                id: l.id.clone(),
            }),
            // ... unless deletions do not travel there: the local copy stays, and the state
            // says so, so that it is not taken for a message never uploaded.
            (Some(_), false) => Some(Action::Detach {
                record: rec.id,
                gone: Side::Remote,
            }),
            // It never reached the server (an upload that was never confirmed and whose copy
            // recovery did not find): upload it again rather than lose it.
            (None, _) => policy.writable(Side::Remote).then(|| Action::Copy {
                from: Side::Local,
                id: l.id.clone(),
                flags: l.flags.clone(),
            }),
        },
        // Known, still on the server, gone from the Maildir.
        (Some(r), None) => match (&rec.local, policy.deletes_on(Side::Remote)) {
            // The mail client deleted it: expunge it on the server.
            (Some(_), true) => Some(Action::Delete {
                record: rec.id,
                on: Side::Remote,
                id: r.id.clone(),
            }),
            // Deletions do not travel to the server: it stays there, never downloaded again.
            (Some(_), false) => Some(Action::Detach {
                record: rec.id,
                gone: Side::Local,
            }),
            // A download that never completed: fetch it again.
            (None, _) => policy.writable(Side::Local).then(|| Action::Copy {
                from: Side::Remote,
                id: r.id.clone(),
                flags: r.flags.clone(),
            }),
        },
        // Gone from both sides: nothing left to keep in step.
        (None, None) => Some(Action::Forget { record: rec.id }),
    }
}

/// The arms for a survivor whose copy on `gone` was deleted without the deletion being carried
/// over. Its id on `gone` is `None`, so only the survivor's side can still list it.
fn decide_detached(
    rec: &Record,
    gone: Side,
    remote: Option<&MessageMeta>,
    local: Option<&MessageMeta>,
) -> Option<Action> {
    match (gone, remote, local) {
        // The survivor is still there: it stays alone, flags and all.
        (Side::Remote, None, Some(_)) | (Side::Local, Some(_), None) => None,
        // The survivor was deleted too: nothing left to remember.
        (Side::Remote, None, None) | (Side::Local, None, None) => {
            Some(Action::Forget { record: rec.id })
        }
        // A copy on the side the deletion happened cannot be listed under this record (its id
        // there is gone); were it, leaving everything alone changes nothing.
        (Side::Remote, Some(_), _) | (Side::Local, _, Some(_)) => None,
    }
}

/// `max_age` and `max_size`: which messages are copied at all. Copies only: a pair outside the
/// limits keeps syncing flags and deletions, and nothing is deleted for being outside them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Only messages newer than this many days are copied.
    pub max_age_days: Option<u32>,
    /// Only messages of at most this many octets are copied.
    pub max_size: Option<u64>,
}

/// Why a message is not copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutOfLimits {
    TooBig,
    TooOld,
}

impl Limits {
    pub fn is_none(&self) -> bool {
        self.max_age_days.is_none() && self.max_size.is_none()
    }

    /// Whether a message of `size` octets dated `date` (seconds since the epoch) is left out,
    /// seen at `now`. A message without a date is copied: the age limit cannot say it is old.
    pub fn check(&self, size: u64, date: Option<i64>, now: i64) -> Option<OutOfLimits> {
        let too_big = self.max_size.is_some_and(|max| size > max);
        let too_old = match (self.max_age_days, date) {
            (Some(days), Some(date)) => date < now.saturating_sub(i64::from(days) * 86_400),
            (Some(_), None) | (None, _) => false,
        };
        match (too_big, too_old) {
            (true, _) => Some(OutOfLimits::TooBig),
            (false, true) => Some(OutOfLimits::TooOld),
            (false, false) => None,
        }
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
    policy: Policy,
) -> Plan {
    plan_folder_linked(
        records,
        remote,
        local,
        guard,
        allow_mass_delete,
        policy,
        &HashSet::new(),
    )
}

/// [`plan_folder`] for a folder some of whose local copies are links to a copy the account
/// keeps in its archive folder (`linked`: Gmail's labels, see `Store::global_archive`). The
/// server taking such a message out of this folder is a label removed, not mail lost — Gmail
/// users archive a whole INBOX at once — so those local deletions do not count for the valve.
/// Deletions on the server always count: an emptied Maildir must not strip every label.
pub fn plan_folder_linked(
    records: &[Record],
    remote: &[MessageMeta],
    local: &[MessageMeta],
    guard: MassDeleteGuard,
    allow_mass_delete: bool,
    policy: Policy,
    linked: &HashSet<RecordId>,
) -> Plan {
    let valve = Valve {
        guard,
        allow_mass_delete,
        known_pairs: None,
    };
    plan_folder_with(records, remote, local, policy, linked, valve)
}

/// How the safety valve judges a plan.
#[derive(Debug, Clone, Copy)]
pub struct Valve {
    pub guard: MassDeleteGuard,
    /// Let the deletions the valve would stop go through.
    pub allow_mass_delete: bool,
    /// The folder's pairs, when `records` are only some of them (a plan of the messages the
    /// server's changes touch): the share of deletions is taken of the whole folder.
    pub known_pairs: Option<usize>,
}

/// [`plan_folder_linked`] with the valve spelled out: `records` and both listings may be only
/// the messages some changes touch, as long as every other message is in step on both sides
/// (then it needs no action), and `valve.known_pairs` says how many pairs the folder holds.
pub fn plan_folder_with(
    records: &[Record],
    remote: &[MessageMeta],
    local: &[MessageMeta],
    policy: Policy,
    linked: &HashSet<RecordId>,
    valve: Valve,
) -> Plan {
    let Valve {
        guard,
        allow_mass_delete,
        known_pairs,
    } = valve;
    let remote_by_id: HashMap<&MsgId, &MessageMeta> = remote.iter().map(|m| (&m.id, m)).collect();
    let local_by_id: HashMap<&MsgId, &MessageMeta> = local.iter().map(|m| (&m.id, m)).collect();
    let mut claimed_remote = HashSet::with_capacity(records.len());
    let mut claimed_local = HashSet::with_capacity(records.len());
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
        actions.extend(decide(Some(rec), r, l, policy));
    }
    for m in remote.iter().filter(|m| !claimed_remote.contains(&m.id)) {
        actions.extend(decide(None, Some(m), None, policy));
    }
    for m in local.iter().filter(|m| !claimed_local.contains(&m.id)) {
        actions.extend(decide(None, None, Some(m), policy));
    }

    if !allow_mass_delete {
        let known = known_pairs.unwrap_or_else(|| {
            records
                .iter()
                .filter(|r| r.remote.is_some() && r.local.is_some())
                .count()
        });
        for on in [Side::Local, Side::Remote] {
            // A detached survivor counts like a deletion: an unmounted Maildir must not turn
            // every pair into a survivor that is never synced again.
            let count = actions
                .iter()
                .filter(|a| match a {
                    Action::Delete {
                        on: Side::Local,
                        record,
                        ..
                    } if linked.contains(record) => false,
                    Action::Delete { on: s, .. } => *s == on,
                    Action::Detach { gone, .. } => gone.other() == on,
                    Action::Copy { .. } | Action::Flags { .. } | Action::Forget { .. } => false,
                })
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

/// Sides a folder policy applies to: `create` and `remove` of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sides {
    Both,
    Remote,
    Local,
    None,
}

impl Sides {
    pub fn includes(self, side: Side) -> bool {
        match (self, side) {
            (Sides::Both, _) | (Sides::Remote, Side::Remote) | (Sides::Local, Side::Local) => true,
            (Sides::Remote, Side::Local) | (Sides::Local, Side::Remote) | (Sides::None, _) => false,
        }
    }
}

impl fmt::Display for Sides {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Sides::Both => "both",
            Sides::Remote => "remote",
            Sides::Local => "local",
            Sides::None => "none",
        })
    }
}

/// Where folders may be created and removed (`create`, `remove` of the account).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolderPolicy {
    /// A folder new on one side is created on these sides.
    pub create: Sides,
    /// A folder deleted on one side is removed on these sides too, even when it holds mail.
    pub remove: Sides,
}

impl Default for FolderPolicy {
    fn default() -> Self {
        Self {
            create: Sides::Both,
            remove: Sides::None,
        }
    }
}

/// What the side that still has a folder holds, when the folder vanished from the other side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Survivor {
    pub messages: usize,
    /// Messages the state has no pair for: they arrived after the last sync and exist nowhere
    /// else.
    pub unsynced: usize,
}

/// What is known of one folder pair before deciding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolderFacts {
    /// Message pairs the state holds for it; `None` when the state does not know the folder.
    pub known: Option<usize>,
    pub on_remote: bool,
    pub on_local: bool,
    pub inbox: bool,
    /// For a known folder on one side only: what that side holds (`None`: not looked at).
    pub survivor: Option<Survivor>,
}

/// Why a folder deleted on one side was left alone on the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// `remove` does not allow removing it there, and it holds messages.
    NotAllowed { messages: usize },
    /// It holds messages that were never synced: removing it would lose them.
    Unsynced { unsynced: usize },
    /// So many folders holding mail vanished from one side at once that it looks like an
    /// unmounted disk or a wrong path, not deletions (see [`hold_mass_folder_removal`]).
    ManyFolders { vanished: usize, known: usize },
    /// Its contents could not be looked at.
    NotInspected,
    /// Something besides the synced messages was found in it while it was being removed (mail
    /// that arrived meanwhile, or files of another program).
    NotEmpty,
    /// It has sub-folders on the server that stay (see [`hold_server_parents`]).
    HasChildren,
    /// Removing it would delete `messages` messages, as many as the message safety valve
    /// stops at (`limit`, `mass_delete_min_messages`): a folder vanishing with its mail is a
    /// mass deletion like any other (see [`hold_mass_folder_removal`]).
    ManyMessages { messages: usize, limit: usize },
}

/// What to do with one folder pair. See [`decide_folder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FolderAction {
    Sync,
    /// Create the folder on `on` first, then sync.
    CreateThenSync {
        on: Side,
    },
    /// New on the other side, but `create` does not allow creating it on `on`.
    NotCreated {
        on: Side,
    },
    /// The folder is gone from both sides: drop its state.
    Forget,
    /// Deleted on the other side: remove it on `on` too (with its `messages`, all of them
    /// synced before, when `remove` or --allow-mass-delete allows it).
    Remove {
        on: Side,
        messages: usize,
    },
    /// Deleted on `from`, left alone on the other side and reported.
    Kept {
        from: Side,
        reason: Kept,
    },
    /// Not listed anywhere and unknown: nothing to do.
    Nothing,
}

impl FolderAction {
    /// Why a kept folder was kept, and what the user can do, for reports and logs.
    pub fn explain_kept(from: Side, reason: Kept) -> String {
        let on = from.other();
        let what = match reason {
            Kept::NotAllowed { messages } => format!(
                "it still holds {messages} messages there, and `remove` does not allow removing folders on the {on} side (it is only done for empty folders then). Move the messages you want elsewhere or delete the folder there yourself; to have idlewild remove it with its messages, set remove, or run once with --allow-mass-delete"
            ),
            Kept::Unsynced { unsynced } => format!(
                "it holds {unsynced} messages there that arrived after the last sync and exist nowhere else, so it is not removed. Move them elsewhere or delete the folder there yourself"
            ),
            Kept::ManyFolders { vanished, known } => format!(
                "{vanished} of {known} folders holding mail vanished from the {from} side at once, which looks like an unmounted disk or a wrong path rather than deletions. If you deleted them, run again with --allow-mass-delete"
            ),
            Kept::ManyMessages { messages, limit } => format!(
                "removing it would delete its {messages} messages on the {on} side, and a folder that vanishes with {limit} or more messages looks like a moved directory or an unmounted disk as much as a deletion. If you deleted it, run again with --allow-mass-delete"
            ),
            Kept::NotInspected => "its contents there could not be looked at".to_owned(),
            Kept::HasChildren => format!(
                "it has sub-folders on the {on} side that stay, and a server keeps listing a removed folder's name while it has sub-folders. Remove or move them first"
            ),
            Kept::NotEmpty => "something besides the synced messages is in it there (mail that arrived meanwhile, or another program's files), so it was not removed; its synced messages were deleted".to_owned(),
        };
        let nothing = match reason {
            Kept::NotEmpty => "",
            Kept::NotAllowed { .. }
            | Kept::Unsynced { .. }
            | Kept::ManyFolders { .. }
            | Kept::ManyMessages { .. }
            | Kept::HasChildren
            | Kept::NotInspected => " Nothing was changed on either side.",
        };
        format!(
            "the folder was deleted on the {from} side and kept on the {on} side: {what}.{nothing}"
        )
    }
}

/// The folder decision table.
///
/// A folder new on one side is created on the other where `create` allows. A known folder that
/// vanished from one side was deleted there: it is removed on the other side when that loses
/// nothing (it is empty) or when `remove` (or --allow-mass-delete) allows it — and then only if
/// every message it holds was synced before, since the others exist nowhere else. Otherwise it
/// is kept and reported: never a silent cascade delete. INBOX is never removed; a vanished INBOX
/// is made again.
pub fn decide_folder(
    facts: FolderFacts,
    policy: FolderPolicy,
    allow_mass_delete: bool,
) -> FolderAction {
    let create = |on: Side| {
        if policy.create.includes(on) {
            FolderAction::CreateThenSync { on }
        } else {
            FolderAction::NotCreated { on }
        }
    };
    let vanished = |from: Side, known: usize| {
        let on = from.other();
        let allowed = policy.remove.includes(on) || allow_mass_delete;
        let kept = |reason| FolderAction::Kept { from, reason };
        match (facts.inbox, facts.survivor) {
            // INBOX is where new mail arrives and cannot be deleted on an IMAP server, so it is
            // made again; with nothing in it on the other side that deletes nothing.
            (true, Some(Survivor { messages: 0, .. })) => create(from),
            // It held no pairs, or the user allowed mass deletion: its messages then go through
            // the message planner (copied if new, deleted if they vanished with the folder).
            (true, _) if known == 0 || allow_mass_delete => create(from),
            // Otherwise it stays as it is until the user says what happened.
            (true, _) => kept(Kept::NotAllowed {
                messages: facts.survivor.map_or(known, |s| s.messages),
            }),
            // Nothing to lose: the deletion is carried over.
            (false, Some(Survivor { messages: 0, .. })) => FolderAction::Remove { on, messages: 0 },
            // Mail that arrived after the last sync exists only there.
            (false, Some(Survivor { unsynced, .. })) if unsynced > 0 => {
                kept(Kept::Unsynced { unsynced })
            }
            // Every message in it was synced, and the user allowed removing folders there.
            (false, Some(Survivor { messages, .. })) if allowed => {
                FolderAction::Remove { on, messages }
            }
            // Mail in it and no permission: never a silent cascade delete.
            (false, Some(Survivor { messages, .. })) => kept(Kept::NotAllowed { messages }),
            // Unknown contents are treated as precious.
            (false, None) => kept(Kept::NotInspected),
        }
    };
    match (facts.known, facts.on_remote, facts.on_local) {
        // Both sides have a folder the state does not know yet: the first sync pairs them.
        (None, true, true) => FolderAction::Sync,
        // New on the server.
        (None, true, false) => create(Side::Local),
        // New in the Maildir.
        (None, false, true) => create(Side::Remote),
        // The caller never asks, but the table is complete.
        (None, false, false) => FolderAction::Nothing,
        // Known and on both sides: an ordinary sync.
        (Some(_), true, true) => FolderAction::Sync,
        // Deleted in the Maildir since the last sync.
        (Some(n), true, false) => vanished(Side::Local, n),
        // Deleted on the server since the last sync.
        (Some(n), false, true) => vanished(Side::Remote, n),
        // Gone from both sides: only the state is left to drop.
        (Some(_), false, false) => FolderAction::Forget,
    }
}

/// The safety valve for folders: when two or more known folders vanished from one side at once
/// and they are `guard.max_percent` or more of the folders the state knows, the removals of
/// folders holding mail on the other side are held back — a Maildir tree emptied by a wrong
/// path, or a mount point without its disk, looks exactly like a user deleting every folder.
/// Every vanished folder counts, INBOX and kept ones included, so an account of two folders
/// that both vanished is held too. `decided` holds every selected folder of the account.
///
/// A single removal counts its messages, as the message valve does: a folder that vanished
/// with `guard.min_messages` or more (all of its messages, so always past `max_percent`) is
/// kept too — one folder moved away or on an unmounted disk is as likely as a deletion.
pub fn hold_mass_folder_removal(
    decided: &[(FolderFacts, FolderAction)],
    guard: MassDeleteGuard,
    allow_mass_delete: bool,
) -> Vec<FolderAction> {
    let mut out: Vec<FolderAction> = decided.iter().map(|(_, a)| *a).collect();
    if allow_mass_delete {
        return out;
    }
    let known = decided.iter().filter(|(f, _)| f.known.is_some()).count();
    for from in [Side::Local, Side::Remote] {
        let gone = |f: &FolderFacts| match from {
            Side::Local => f.known.is_some() && f.on_remote && !f.on_local,
            Side::Remote => f.known.is_some() && f.on_local && !f.on_remote,
        };
        let vanished = decided.iter().filter(|(f, _)| gone(f)).count();
        if vanished < 2 || vanished * 100 < usize::from(guard.max_percent) * known {
            continue;
        }
        let on = from.other();
        for a in out.iter_mut() {
            if matches!(a, FolderAction::Remove { on: s, messages } if *s == on && *messages > 0) {
                *a = FolderAction::Kept {
                    from,
                    reason: Kept::ManyFolders { vanished, known },
                };
            }
        }
    }
    let limit = guard.min_messages as usize;
    for a in out.iter_mut() {
        if let FolderAction::Remove { on, messages } = *a
            && messages >= limit
            && messages > 0
        {
            *a = FolderAction::Kept {
                from: on.other(),
                reason: Kept::ManyMessages { messages, limit },
            };
        }
    }
    out
}

/// Removals on the server of folders with sub-folders that stay there are held back: a server
/// may keep listing the removed parent's name (RFC 3501 §6.3.4 lets it; Dovecot does, without
/// \Noselect, and then refuses to open it), which would come back here as a new folder.
/// `folders` are the selected pairs as (server name, decision); `server` every server folder,
/// selected or not.
pub fn hold_server_parents(
    folders: &[(FolderName, FolderAction)],
    server: &[FolderName],
) -> Vec<FolderAction> {
    let removed: HashSet<&FolderName> = folders
        .iter()
        .filter(|(_, a)| {
            matches!(
                a,
                FolderAction::Remove {
                    on: Side::Remote,
                    ..
                }
            )
        })
        .map(|(n, _)| n)
        .collect();
    folders
        .iter()
        .map(|(name, action)| {
            let prefix = format!("{name}/");
            let stays = |s: &&FolderName| s.as_str().starts_with(&prefix) && !removed.contains(s);
            match action {
                FolderAction::Remove {
                    on: Side::Remote, ..
                } if server.iter().any(|s| stays(&s)) => FolderAction::Kept {
                    from: Side::Local,
                    reason: Kept::HasChildren,
                },
                other => *other,
            }
        })
        .collect()
}

/// Leaves alone a folder that [`decide_folder`] would create on a side that is never written
/// to: it is synced where it exists on both sides only.
pub fn restrict_folder(action: FolderAction, policy: Policy) -> FolderAction {
    match action {
        FolderAction::CreateThenSync { on } if !policy.writable(on) => {
            FolderAction::NotCreated { on }
        }
        FolderAction::CreateThenSync { on } => FolderAction::CreateThenSync { on },
        // Removing a folder is a write like any other: on a read-only side it stays.
        FolderAction::Remove { on, messages } if !policy.writable(on) => FolderAction::Kept {
            from: on.other(),
            reason: Kept::NotAllowed { messages },
        },
        FolderAction::Remove { on, messages } => FolderAction::Remove { on, messages },
        FolderAction::NotCreated { on } => FolderAction::NotCreated { on },
        FolderAction::Kept { from, reason } => FolderAction::Kept { from, reason },
        FolderAction::Sync => FolderAction::Sync,
        FolderAction::Forget => FolderAction::Forget,
        FolderAction::Nothing => FolderAction::Nothing,
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
            deleted_on: None,
        }
    }
    const S: Flags = Flags::SEEN;
    const F: Flags = Flags::FLAGGED;
    const D: Flags = Flags::DELETED;
    const NONE: Flags = Flags::empty();
    const P: Policy = Policy {
        readonly_remote: false,
        readonly_local: false,
        sync_deletes: true,
    };

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
            assert_eq!(
                decide(record.as_ref(), r, l, Policy::default()),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn new_messages_already_marked_deleted_are_not_copied() {
        assert_eq!(decide(None, Some(&meta("1", D)), None, P), None);
        assert_eq!(decide(None, None, Some(&meta("a", D.union(&S))), P), None);
    }

    #[test]
    fn keywords_merge_one_by_one_like_flags() {
        let f = |list: &[&str]| Flags::from_imap(list.iter().copied());
        let base = f(&["\\Seen", "$Junk", "a"]);
        // Server: NonJunk added, a removed; here: $Junk removed, b added, Seen removed.
        let remote = f(&["\\Seen", "$Junk", "NonJunk"]);
        let local = f(&["a", "b"]);
        assert_eq!(merge_flags(&base, &remote, &local), f(&["NonJunk", "b"]));
    }

    #[test]
    fn keywords_a_side_cannot_hold_live_on_in_the_state() {
        let f = |list: &[&str]| Flags::from_imap(list.iter().copied());
        let k = |s: &str| crate::model::Keyword::new(s).unwrap();
        let mut record = rec(1, Some("1"), Some("a"), f(&["\\Seen", "k25", "k26"]));
        let remote = meta("1", f(&["\\Seen", "k25", "k26"]));
        // The Maildir folder has letters for k25 but none left for k26.
        let mut local = vec![meta("a", f(&["\\Seen", "k25"]))];
        let room = KeywordRoom::Only([k("k25")].into_iter().collect());
        // Without the state's word, k26 reads as removed here, and would go on the server too.
        let naive = decide(
            Some(&record),
            Some(&remote),
            Some(&local[0]),
            Policy::default(),
        );
        assert!(matches!(naive, Some(Action::Flags { .. })), "{naive:?}");
        keep_unheld_keywords(
            std::slice::from_ref(&record),
            Side::Local,
            &mut local,
            &room,
        );
        assert_eq!(local[0].flags, remote.flags);
        assert_eq!(
            decide(
                Some(&record),
                Some(&remote),
                Some(&local[0]),
                Policy::default()
            ),
            None
        );
        // A keyword it can hold is its own word: removed here, it goes on the server too.
        let mut local = vec![meta("a", f(&["\\Seen"]))];
        keep_unheld_keywords(
            std::slice::from_ref(&record),
            Side::Local,
            &mut local,
            &room,
        );
        assert_eq!(local[0].flags, f(&["\\Seen", "k26"]));
        let Some(Action::Flags { remote_change, .. }) = decide(
            Some(&record),
            Some(&remote),
            Some(&local[0]),
            Policy::default(),
        ) else {
            panic!("k25 removed here is a change");
        };
        assert_eq!(remote_change.map(|c| c.remove), Some(f(&["k25"])));
        // Any room: nothing is added.
        record.flags = f(&["k26"]);
        let mut local = vec![meta("a", Flags::empty())];
        keep_unheld_keywords(&[record], Side::Local, &mut local, &KeywordRoom::Any);
        assert_eq!(local[0].flags, Flags::empty());
    }

    #[test]
    fn flags_changed_on_either_side_are_merged_per_flag() {
        let record = rec(1, Some("1"), Some("a"), S);
        // Server added \Flagged, Maildir removed \Seen: both changes survive.
        let got = decide(
            Some(&record),
            Some(&meta("1", S.union(&F))),
            Some(&meta("a", NONE)),
            P,
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
        let got = decide(Some(&record), Some(&meta("1", S)), Some(&meta("a", S)), P);
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
            plan_folder(&records, &remote, &[], guard, false, P),
            Plan::Refused(MassDeletion {
                on: Side::Remote,
                count: 20,
                known: 20
            })
        );
        // The explicit override lets a real mass deletion through.
        let Plan::Actions(actions) = plan_folder(&records, &remote, &[], guard, true, P) else {
            panic!("override ignored");
        };
        assert_eq!(actions.len(), 20);
    }

    #[test]
    fn an_emptied_server_folder_does_not_empty_the_maildir() {
        let (records, _, local) = many(20);
        let got = plan_folder(&records, &[], &local, MassDeleteGuard::default(), false, P);
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
        let Plan::Actions(a) = plan_folder(&records, &remote, &local[3..], guard, false, P) else {
            panic!("3 of 20 deletions refused");
        };
        assert_eq!(a.len(), 3);
        let (records, remote, _) = many(guard.min_messages as usize - 1);
        assert!(matches!(
            plan_folder(&records, &remote, &[], guard, false, P),
            Plan::Actions(_)
        ));
    }

    #[test]
    fn pairing_goes_through_records_and_unknown_messages_are_new() {
        let records = vec![rec(1, Some("1"), Some("a"), S)];
        let remote = vec![meta("1", S), meta("2", NONE)];
        let local = vec![meta("a", S), meta("b", F)];
        let Plan::Actions(a) = plan_folder(
            &records,
            &remote,
            &local,
            MassDeleteGuard::default(),
            false,
            P,
        ) else {
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

    fn facts(
        known: Option<usize>,
        on_remote: bool,
        on_local: bool,
        survivor: Option<(usize, usize)>,
    ) -> FolderFacts {
        FolderFacts {
            known,
            on_remote,
            on_local,
            inbox: false,
            survivor: survivor.map(|(messages, unsynced)| Survivor { messages, unsynced }),
        }
    }

    const DEFAULTS: FolderPolicy = FolderPolicy {
        create: Sides::Both,
        remove: Sides::None,
    };

    #[test]
    fn folder_decision_table() {
        use FolderAction::*;
        let (r, l) = (Side::Remote, Side::Local);
        let kept_not_allowed = |from, messages| Kept {
            from,
            reason: super::Kept::NotAllowed { messages },
        };
        let remove_both = FolderPolicy {
            remove: Sides::Both,
            ..DEFAULTS
        };
        let rows = [
            // New or unknown folders, created where `create` allows.
            (facts(None, true, true, None), DEFAULTS, false, Sync),
            (
                facts(None, true, false, None),
                DEFAULTS,
                false,
                CreateThenSync { on: l },
            ),
            (
                facts(None, false, true, None),
                DEFAULTS,
                false,
                CreateThenSync { on: r },
            ),
            (facts(None, false, false, None), DEFAULTS, false, Nothing),
            (facts(Some(3), true, true, None), DEFAULTS, false, Sync),
            (facts(Some(3), false, false, None), DEFAULTS, false, Forget),
            // Deleted locally: an empty server folder goes, whatever `remove` says.
            (
                facts(Some(3), true, false, Some((0, 0))),
                DEFAULTS,
                false,
                Remove { on: r, messages: 0 },
            ),
            (
                facts(Some(0), true, false, Some((0, 0))),
                DEFAULTS,
                false,
                Remove { on: r, messages: 0 },
            ),
            // ... one with mail stays unless `remove` or --allow-mass-delete says so.
            (
                facts(Some(3), true, false, Some((3, 0))),
                DEFAULTS,
                false,
                kept_not_allowed(l, 3),
            ),
            (
                facts(Some(3), true, false, Some((3, 0))),
                remove_both,
                false,
                Remove { on: r, messages: 3 },
            ),
            (
                facts(Some(3), true, false, Some((3, 0))),
                DEFAULTS,
                true,
                Remove { on: r, messages: 3 },
            ),
            // ... and mail never synced keeps it whatever is allowed.
            (
                facts(Some(3), true, false, Some((4, 1))),
                remove_both,
                true,
                Kept {
                    from: l,
                    reason: super::Kept::Unsynced { unsynced: 1 },
                },
            ),
            (
                facts(Some(0), true, false, Some((2, 2))),
                DEFAULTS,
                false,
                Kept {
                    from: l,
                    reason: super::Kept::Unsynced { unsynced: 2 },
                },
            ),
            // The same, deleted on the server.
            (
                facts(Some(3), false, true, Some((0, 0))),
                DEFAULTS,
                false,
                Remove { on: l, messages: 0 },
            ),
            (
                facts(Some(3), false, true, Some((3, 0))),
                DEFAULTS,
                false,
                kept_not_allowed(r, 3),
            ),
            (
                facts(Some(3), false, true, Some((3, 0))),
                FolderPolicy {
                    remove: Sides::Local,
                    ..DEFAULTS
                },
                false,
                Remove { on: l, messages: 3 },
            ),
            (
                facts(Some(3), false, true, Some((3, 0))),
                FolderPolicy {
                    remove: Sides::Remote,
                    ..DEFAULTS
                },
                false,
                kept_not_allowed(r, 3),
            ),
            // Contents not looked at: nothing is removed.
            (
                facts(Some(3), false, true, None),
                remove_both,
                true,
                Kept {
                    from: r,
                    reason: super::Kept::NotInspected,
                },
            ),
        ];
        for (i, (facts, policy, allow, want)) in rows.into_iter().enumerate() {
            assert_eq!(
                decide_folder(facts, policy, allow),
                want,
                "row {i}: {facts:?}"
            );
        }
    }

    #[test]
    fn create_policy_decides_where_new_folders_appear() {
        use FolderAction::*;
        let (r, l) = (Side::Remote, Side::Local);
        let with = |create| FolderPolicy { create, ..DEFAULTS };
        let new_on_server = facts(None, true, false, None);
        let new_here = facts(None, false, true, None);
        for (policy, server_made, local_made) in [
            (
                with(Sides::Both),
                CreateThenSync { on: l },
                CreateThenSync { on: r },
            ),
            (
                with(Sides::Local),
                CreateThenSync { on: l },
                NotCreated { on: r },
            ),
            (
                with(Sides::Remote),
                NotCreated { on: l },
                CreateThenSync { on: r },
            ),
            (
                with(Sides::None),
                NotCreated { on: l },
                NotCreated { on: r },
            ),
        ] {
            assert_eq!(decide_folder(new_on_server, policy, false), server_made);
            assert_eq!(decide_folder(new_here, policy, false), local_made);
        }
    }

    const RO_LOCAL: Policy = Policy {
        readonly_remote: false,
        readonly_local: true,
        sync_deletes: true,
    };
    const RO_REMOTE: Policy = Policy {
        readonly_remote: true,
        readonly_local: false,
        sync_deletes: true,
    };
    const KEEP_DELETED: Policy = Policy {
        readonly_remote: false,
        readonly_local: false,
        sync_deletes: false,
    };

    fn detached(n: i64, remote: Option<&str>, local: Option<&str>, gone: Side) -> Record {
        Record {
            deleted_on: Some(gone),
            ..rec(n, remote, local, S)
        }
    }

    /// One row per arm that a policy changes, and per arm of a detached survivor.
    #[test]
    fn decision_table_under_policies() {
        let r1 = meta("1", S);
        let la = meta("a", S);
        let both = rec(7, Some("1"), Some("a"), S);
        let copy_down = Some(Action::Copy {
            from: Side::Remote,
            id: id("1"),
            flags: S,
        });
        let copy_up = Some(Action::Copy {
            from: Side::Local,
            id: id("a"),
            flags: S,
        });
        let detach = |gone| {
            Some(Action::Detach {
                record: RecordId(7),
                gone,
            })
        };
        type Row<'a> = (
            &'a str,
            Policy,
            Option<Record>,
            Option<&'a MessageMeta>,
            Option<&'a MessageMeta>,
            Option<Action>,
        );
        let cases: Vec<Row> = vec![
            (
                "new on server, local read-only",
                RO_LOCAL,
                None,
                Some(&r1),
                None,
                None,
            ),
            (
                "new on server, server read-only",
                RO_REMOTE,
                None,
                Some(&r1),
                None,
                copy_down.clone(),
            ),
            (
                "new locally, server read-only",
                RO_REMOTE,
                None,
                None,
                Some(&la),
                None,
            ),
            (
                "new locally, local read-only",
                RO_LOCAL,
                None,
                None,
                Some(&la),
                copy_up.clone(),
            ),
            (
                "unpaired on both, local read-only",
                RO_LOCAL,
                None,
                Some(&r1),
                Some(&la),
                copy_up.clone(),
            ),
            (
                "expunged on server, local read-only",
                RO_LOCAL,
                Some(both.clone()),
                None,
                Some(&la),
                detach(Side::Remote),
            ),
            (
                "expunged on server, deletes kept",
                KEEP_DELETED,
                Some(both.clone()),
                None,
                Some(&la),
                detach(Side::Remote),
            ),
            (
                "expunged on server, server read-only",
                RO_REMOTE,
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
                "deleted locally, server read-only",
                RO_REMOTE,
                Some(both.clone()),
                Some(&r1),
                None,
                detach(Side::Local),
            ),
            (
                "deleted locally, deletes kept",
                KEEP_DELETED,
                Some(both.clone()),
                Some(&r1),
                None,
                detach(Side::Local),
            ),
            (
                "upload never confirmed, server read-only",
                RO_REMOTE,
                Some(rec(7, None, Some("a"), S)),
                None,
                Some(&la),
                None,
            ),
            (
                "download never completed, local read-only",
                RO_LOCAL,
                Some(rec(7, Some("1"), None, S)),
                Some(&r1),
                None,
                None,
            ),
            // A survivor stays alone whatever the policy; it is never copied back.
            (
                "survivor of a server deletion",
                P,
                Some(detached(7, None, Some("a"), Side::Remote)),
                None,
                Some(&la),
                None,
            ),
            (
                "survivor of a local deletion",
                P,
                Some(detached(7, Some("1"), None, Side::Local)),
                Some(&r1),
                None,
                None,
            ),
            (
                "survivor deleted too (local)",
                KEEP_DELETED,
                Some(detached(7, None, Some("a"), Side::Remote)),
                None,
                None,
                Some(Action::Forget {
                    record: RecordId(7),
                }),
            ),
            (
                "survivor deleted too (server)",
                RO_REMOTE,
                Some(detached(7, Some("1"), None, Side::Local)),
                None,
                None,
                Some(Action::Forget {
                    record: RecordId(7),
                }),
            ),
            (
                "detached from the server, listed there",
                P,
                Some(detached(7, None, Some("a"), Side::Remote)),
                Some(&r1),
                Some(&la),
                None,
            ),
            (
                "detached locally, listed there",
                P,
                Some(detached(7, Some("1"), None, Side::Local)),
                Some(&r1),
                Some(&la),
                None,
            ),
        ];
        for (name, policy, record, r, l, want) in cases {
            assert_eq!(decide(record.as_ref(), r, l, policy), want, "{name}");
        }
    }

    /// Applies a flags action's result to the sides that may be written, as the executor does.
    fn apply_flags(a: &Action, record: &mut Record, r: &mut MessageMeta, l: &mut MessageMeta) {
        let Action::Flags {
            remote_change,
            local_change,
            merged,
            ..
        } = a
        else {
            panic!("not a flags action: {a}");
        };
        if let Some(c) = remote_change {
            r.flags = r.flags.union(&c.add).minus(&c.remove);
        }
        if let Some(c) = local_change {
            l.flags = l.flags.union(&c.add).minus(&c.remove);
        }
        record.flags = merged.clone();
    }

    #[test]
    fn a_flag_change_on_the_writable_side_is_never_reverted() {
        for (policy, writable) in [(RO_LOCAL, Side::Remote), (RO_REMOTE, Side::Local)] {
            let mut record = rec(1, Some("1"), Some("a"), NONE);
            let (mut r, mut l) = (meta("1", NONE), meta("a", NONE));
            // The writable side gains \Flagged; the read-only side cannot follow.
            match writable {
                Side::Remote => r.flags = F,
                Side::Local => l.flags = F,
            }
            if let Some(a) = decide(Some(&record), Some(&r), Some(&l), policy) {
                let Action::Flags {
                    remote_change,
                    local_change,
                    ..
                } = &a
                else {
                    panic!()
                };
                assert!(
                    remote_change.is_none() && local_change.is_none(),
                    "{policy:?}: {a}"
                );
                apply_flags(&a, &mut record, &mut r, &mut l);
            }
            // Later runs leave the change where it is.
            for _ in 0..2 {
                if let Some(a) = decide(Some(&record), Some(&r), Some(&l), policy) {
                    apply_flags(&a, &mut record, &mut r, &mut l);
                }
            }
            let kept = match writable {
                Side::Remote => r.flags.clone(),
                Side::Local => l.flags.clone(),
            };
            assert_eq!(kept, F, "{policy:?}");
            assert_eq!(decide(Some(&record), Some(&r), Some(&l), policy), None);
            // A change on the read-only side still travels to the writable one.
            match writable {
                Side::Remote => l.flags = S,
                Side::Local => r.flags = S,
            }
            let a = decide(Some(&record), Some(&r), Some(&l), policy).expect("read-only change");
            apply_flags(&a, &mut record, &mut r, &mut l);
            let now = match writable {
                Side::Remote => r.flags.clone(),
                Side::Local => l.flags.clone(),
            };
            assert_eq!(now, F.union(&S), "{policy:?}");
            assert_eq!(decide(Some(&record), Some(&r), Some(&l), policy), None);
        }
    }

    #[test]
    fn a_vanished_inbox_is_made_again_never_removed() {
        use FolderAction::*;
        let inbox = |known, survivor| FolderFacts {
            inbox: true,
            ..facts(known, true, false, survivor)
        };
        let remove_both = FolderPolicy {
            remove: Sides::Both,
            ..DEFAULTS
        };
        let l = Side::Local;
        assert_eq!(
            decide_folder(inbox(Some(3), Some((0, 0))), remove_both, false),
            CreateThenSync { on: l }
        );
        assert_eq!(
            decide_folder(inbox(Some(0), Some((5, 5))), DEFAULTS, false),
            CreateThenSync { on: l }
        );
        assert_eq!(
            decide_folder(inbox(Some(3), Some((3, 0))), DEFAULTS, true),
            CreateThenSync { on: l }
        );
        assert_eq!(
            decide_folder(inbox(Some(3), Some((3, 0))), remove_both, false),
            Kept {
                from: l,
                reason: super::Kept::NotAllowed { messages: 3 }
            }
        );
        assert_eq!(
            decide_folder(inbox(Some(3), None), DEFAULTS, false),
            Kept {
                from: l,
                reason: super::Kept::NotAllowed { messages: 3 }
            }
        );
        let none = FolderPolicy {
            create: Sides::None,
            ..DEFAULTS
        };
        assert_eq!(
            decide_folder(inbox(Some(0), Some((0, 0))), none, false),
            NotCreated { on: l }
        );
    }

    #[test]
    fn a_folder_vanishing_with_many_messages_is_a_mass_deletion() {
        use FolderAction::*;
        let (r, l) = (Side::Remote, Side::Local);
        let guard = MassDeleteGuard::default();
        let limit = guard.min_messages as usize;
        let gone = |messages| {
            (
                facts(Some(messages), true, false, Some((messages, 0))),
                Remove { on: r, messages },
            )
        };
        let here = (facts(Some(3), true, true, None), Sync);
        // One folder of 30 messages gone from the Maildir: 30 deletions on the server, held.
        let d = [gone(30), here, here, here];
        assert_eq!(
            hold_mass_folder_removal(&d, guard, false),
            vec![
                Kept {
                    from: l,
                    reason: super::Kept::ManyMessages {
                        messages: 30,
                        limit
                    }
                },
                Sync,
                Sync,
                Sync
            ]
        );
        // Below the valve's size, or allowed: removed.
        let d = [gone(limit - 1), here, here, here];
        assert_eq!(hold_mass_folder_removal(&d, guard, false)[0], d[0].1);
        let d = [gone(30), here, here, here];
        assert_eq!(hold_mass_folder_removal(&d, guard, true)[0], d[0].1);
    }

    #[test]
    fn many_folders_vanishing_at_once_are_held_back() {
        use FolderAction::*;
        let (r, l) = (Side::Remote, Side::Local);
        let guard = MassDeleteGuard::default();
        // Known folders gone from the Maildir, one empty on the server, and one still here.
        let gone = (
            facts(Some(5), true, false, Some((5, 0))),
            Remove { on: r, messages: 5 },
        );
        let empty = (
            facts(Some(0), true, false, Some((0, 0))),
            Remove { on: r, messages: 0 },
        );
        let here = (facts(Some(3), true, true, None), Sync);
        let held = |vanished, known| Kept {
            from: l,
            reason: super::Kept::ManyFolders { vanished, known },
        };
        let actions =
            |d: &[(FolderFacts, FolderAction)]| d.iter().map(|(_, a)| *a).collect::<Vec<_>>();
        // Three of four gone: those holding mail stay; the empty one still goes.
        let d = [gone, gone, empty, here];
        assert_eq!(
            hold_mass_folder_removal(&d, guard, false),
            vec![held(3, 4), held(3, 4), empty.1, Sync]
        );
        assert_eq!(hold_mass_folder_removal(&d, guard, true), actions(&d));
        // Two of five, or a single one: ordinary deletions.
        let d = [gone, gone, here, here, here];
        assert_eq!(hold_mass_folder_removal(&d, guard, false), actions(&d));
        let d = [gone, here];
        assert_eq!(hold_mass_folder_removal(&d, guard, false), actions(&d));
        // A vanished INBOX counts: an account of two folders that both vanished is held.
        let inbox = (
            FolderFacts {
                inbox: true,
                ..facts(Some(9), true, false, Some((9, 0)))
            },
            Kept {
                from: l,
                reason: super::Kept::NotAllowed { messages: 9 },
            },
        );
        let d = [inbox, gone];
        assert_eq!(
            hold_mass_folder_removal(&d, guard, false),
            vec![inbox.1, held(2, 2)]
        );
        // Each side counts on its own.
        let other_side = (
            facts(Some(1), false, true, Some((1, 0))),
            Remove { on: l, messages: 1 },
        );
        let d = [gone, other_side, here, here];
        assert_eq!(hold_mass_folder_removal(&d, guard, false), actions(&d));
    }

    #[test]
    fn a_server_parent_is_only_removed_with_all_its_sub_folders() {
        use FolderAction::*;
        let n = |s: &str| FolderName::new(s).unwrap();
        let gone = Remove {
            on: Side::Remote,
            messages: 1,
        };
        let held = Kept {
            from: Side::Local,
            reason: super::Kept::HasChildren,
        };
        let server = [n("Lists"), n("Lists/rust"), n("Lists/go"), n("Listserv")];
        // The whole tree goes: nothing held.
        let all = [
            (n("Lists"), gone),
            (n("Lists/rust"), gone),
            (n("Lists/go"), gone),
        ];
        assert_eq!(hold_server_parents(&all, &server), vec![gone, gone, gone]);
        // A sub-folder stays (synced, or not selected at all): the parent is held.
        let some = [
            (n("Lists"), gone),
            (n("Lists/rust"), gone),
            (n("Lists/go"), Sync),
        ];
        assert_eq!(hold_server_parents(&some, &server), vec![held, gone, Sync]);
        let unselected = [(n("Lists"), gone), (n("Lists/rust"), gone)];
        assert_eq!(hold_server_parents(&unselected, &server), vec![held, gone]);
        // A name that only starts alike is no sub-folder; local removals are not concerned.
        let local = Remove {
            on: Side::Local,
            messages: 1,
        };
        let other = [(n("Lists"), local), (n("List"), gone)];
        assert_eq!(hold_server_parents(&other, &server), vec![local, gone]);
    }

    #[test]
    fn kept_folders_are_explained() {
        let text = FolderAction::explain_kept(Side::Local, Kept::NotAllowed { messages: 7 });
        assert!(text.starts_with("the folder was deleted on the local side and kept on the server side: it still holds 7 messages"), "{text}");
        assert!(text.contains("--allow-mass-delete"), "{text}");
        assert!(
            text.ends_with("Nothing was changed on either side."),
            "{text}"
        );
    }

    #[test]
    fn a_plan_of_some_messages_judges_deletions_against_the_whole_folder() {
        let guard = MassDeleteGuard::default();
        let (records, _, local) = many(20);
        // The server reported 20 of the folder's messages expunged.
        let valve = |known_pairs| Valve {
            guard,
            allow_mass_delete: false,
            known_pairs,
        };
        let none = HashSet::new();
        assert!(matches!(
            plan_folder_with(&records, &[], &local, P, &none, valve(Some(20))),
            Plan::Refused(MassDeletion { known: 20, .. })
        ));
        assert!(matches!(
            plan_folder_with(&records, &[], &local, P, &none, valve(Some(20_000))),
            Plan::Actions(a) if a.len() == 20
        ));
    }

    #[test]
    fn labels_removed_on_the_server_pass_the_valve_and_an_emptied_label_folder_here_does_not() {
        let guard = MassDeleteGuard::default();
        let (records, remote, local) = many(20);
        let linked: HashSet<RecordId> = records.iter().map(|r| r.id).collect();
        // The server took every message out of the folder (Gmail: INBOX archived at once);
        // each local copy is a link to the archive's copy, so nothing is lost here.
        let Plan::Actions(a) = plan_folder_linked(&records, &[], &local, guard, false, P, &linked)
        else {
            panic!("archiving refused");
        };
        assert_eq!(a.len(), 20);
        assert!(matches!(
            plan_folder(&records, &[], &local, guard, false, P),
            Plan::Refused(_)
        ));
        // The folder emptied here would strip the label from every message: refused.
        assert_eq!(
            plan_folder_linked(&records, &remote, &[], guard, false, P, &linked),
            Plan::Refused(MassDeletion {
                on: Side::Remote,
                count: 20,
                known: 20
            })
        );
    }

    #[test]
    fn the_safety_valve_counts_survivors_left_alone() {
        let (records, remote, _) = many(20);
        let guard = MassDeleteGuard::default();
        // The Maildir vanished while the server is read-only: no deletion is possible, but
        // detaching every pair would make the messages never sync again.
        assert_eq!(
            plan_folder(&records, &remote, &[], guard, false, RO_REMOTE),
            Plan::Refused(MassDeletion {
                on: Side::Remote,
                count: 20,
                known: 20
            })
        );
        let (records, _, local) = many(20);
        assert!(matches!(
            plan_folder(&records, &[], &local, guard, false, KEEP_DELETED),
            Plan::Refused(MassDeletion {
                on: Side::Local,
                ..
            })
        ));
        let Plan::Actions(a) = plan_folder(&records, &[], &local, guard, true, KEEP_DELETED) else {
            panic!("override ignored");
        };
        assert!(a.iter().all(|a| matches!(
            a,
            Action::Detach {
                gone: Side::Remote,
                ..
            }
        )));
    }

    #[test]
    fn limits_leave_out_big_and_old_messages_only() {
        let now = 1_000 * 86_400;
        let limits = Limits {
            max_age_days: Some(30),
            max_size: Some(1000),
        };
        let day = 86_400;
        assert_eq!(limits.check(1000, Some(now - day), now), None);
        assert_eq!(
            limits.check(1001, Some(now - day), now),
            Some(OutOfLimits::TooBig)
        );
        assert_eq!(
            limits.check(10, Some(now - 31 * day), now),
            Some(OutOfLimits::TooOld)
        );
        assert_eq!(limits.check(10, Some(now - 30 * day), now), None);
        // Unknown date: copied; too big wins over too old.
        assert_eq!(limits.check(10, None, now), None);
        assert_eq!(limits.check(2000, Some(0), now), Some(OutOfLimits::TooBig));
        assert_eq!(Limits::default().check(u64::MAX, Some(0), now), None);
        assert!(Limits::default().is_none());
    }

    #[test]
    fn folders_are_not_created_on_a_read_only_side() {
        let create_local = FolderAction::CreateThenSync { on: Side::Local };
        let create_remote = FolderAction::CreateThenSync { on: Side::Remote };
        assert_eq!(
            restrict_folder(create_local, RO_LOCAL),
            FolderAction::NotCreated { on: Side::Local }
        );
        assert_eq!(restrict_folder(create_remote, RO_LOCAL), create_remote);
        assert_eq!(
            restrict_folder(create_remote, RO_REMOTE),
            FolderAction::NotCreated { on: Side::Remote }
        );
        assert_eq!(restrict_folder(create_local, P), create_local);
        assert_eq!(
            restrict_folder(FolderAction::Sync, RO_LOCAL),
            FolderAction::Sync
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn flags() -> impl Strategy<Value = Flags> {
            (0u8..64).prop_map(|b| Flags::from_bits(b).unwrap())
        }

        fn policy() -> impl Strategy<Value = Policy> {
            (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(rr, rl, sd)| Policy {
                readonly_remote: rr,
                readonly_local: rl && !rr,
                sync_deletes: sd,
            })
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
                    if in_rec { records.push(rec(i as i64, Some(&rid), Some(&lid), base.clone())); }
                    if in_r { remote.push(meta(&rid, rf.clone())); }
                    if in_l { local.push(meta(&lid, lf.clone())); }
                }
                let Plan::Actions(actions) =
                    plan_folder(&records, &remote, &local, MassDeleteGuard::default(), true, P)
                else { unreachable!() };
                let mut next = 10_000i64;
                for a in actions {
                    match a {
                        Action::Copy { from, id, flags } => {
                            next += 1;
                            let new_id = MsgId::new(format!("n{next}")).unwrap();
                            let (rid, lid) = match from {
                                Side::Remote => { local.push(MessageMeta { id: new_id.clone(), flags: flags.clone() }); (id, new_id) }
                                Side::Local => { remote.push(MessageMeta { id: new_id.clone(), flags: flags.clone() }); (new_id, id) }
                            };
                            records.push(Record { id: RecordId(next), remote: Some(rid), local: Some(lid), flags, deleted_on: None });
                        }
                        Action::Flags { record, remote: rid, local: lid, merged, .. } => {
                            remote.iter_mut().filter(|m| m.id == rid).for_each(|m| m.flags = merged.clone());
                            local.iter_mut().filter(|m| m.id == lid).for_each(|m| m.flags = merged.clone());
                            records.iter_mut().filter(|r| r.id == record).for_each(|r| r.flags = merged.clone());
                        }
                        Action::Delete { record, on, id } => {
                            match on { Side::Remote => remote.retain(|m| m.id != id), Side::Local => local.retain(|m| m.id != id) }
                            records.retain(|r| r.id != record);
                        }
                        Action::Forget { record } => records.retain(|r| r.id != record),
                        Action::Detach { .. } => unreachable!("the default policy carries deletions over"),
                    }
                }
                let again = plan_folder(&records, &remote, &local, MassDeleteGuard::default(), true, P);
                prop_assert_eq!(again, Plan::Actions(vec![]));
                // Every pair left holds equal flags on both sides.
                for r in &records {
                    let rf = remote.iter().find(|m| Some(&m.id) == r.remote.as_ref()).map(|m| m.flags.clone());
                    let lf = local.iter().find(|m| Some(&m.id) == r.local.as_ref()).map(|m| m.flags.clone());
                    prop_assert_eq!(rf, lf);
                }
            }

            /// Under any policy, a plan applied (read-only sides untouched) and planned again
            /// finds nothing to do: no copy is ever repeated and no change bounces back.
            #[test]
            fn a_plan_under_a_policy_converges(
                policy in policy(),
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
                    if in_rec { records.push(rec(i as i64, Some(&rid), Some(&lid), base.clone())); }
                    if in_r { remote.push(meta(&rid, rf.clone())); }
                    if in_l { local.push(meta(&lid, lf.clone())); }
                }
                let (remote_before, local_before) = (remote.clone(), local.clone());
                let Plan::Actions(actions) =
                    plan_folder(&records, &remote, &local, MassDeleteGuard::default(), true, policy)
                else { unreachable!() };
                let mut next = 10_000i64;
                for a in actions {
                    match a {
                        Action::Copy { from, id, flags } => {
                            prop_assert!(policy.writable(from.other()), "copy into a read-only side");
                            next += 1;
                            let new_id = MsgId::new(format!("n{next}")).unwrap();
                            let (rid, lid) = match from {
                                Side::Remote => { local.push(MessageMeta { id: new_id.clone(), flags: flags.clone() }); (id, new_id) }
                                Side::Local => { remote.push(MessageMeta { id: new_id.clone(), flags: flags.clone() }); (new_id, id) }
                            };
                            records.push(Record { id: RecordId(next), remote: Some(rid), local: Some(lid), flags, deleted_on: None });
                        }
                        Action::Flags { record, remote: rid, local: lid, remote_change, local_change, merged } => {
                            prop_assert!(remote_change.is_none() || policy.writable(Side::Remote));
                            prop_assert!(local_change.is_none() || policy.writable(Side::Local));
                            if let Some(c) = remote_change {
                                remote.iter_mut().filter(|m| m.id == rid).for_each(|m| m.flags = m.flags.union(&c.add).minus(&c.remove));
                            }
                            if let Some(c) = local_change {
                                local.iter_mut().filter(|m| m.id == lid).for_each(|m| m.flags = m.flags.union(&c.add).minus(&c.remove));
                            }
                            records.iter_mut().filter(|r| r.id == record).for_each(|r| r.flags = merged.clone());
                        }
                        Action::Delete { record, on, id } => {
                            prop_assert!(policy.deletes_on(on), "deletion not allowed");
                            match on { Side::Remote => remote.retain(|m| m.id != id), Side::Local => local.retain(|m| m.id != id) }
                            records.retain(|r| r.id != record);
                        }
                        Action::Forget { record } => records.retain(|r| r.id != record),
                        Action::Detach { record, gone } => {
                            for r in records.iter_mut().filter(|r| r.id == record) {
                                r.deleted_on = Some(gone);
                                match gone { Side::Remote => r.remote = None, Side::Local => r.local = None }
                            }
                        }
                    }
                }
                if !policy.writable(Side::Remote) { prop_assert_eq!(&remote, &remote_before); }
                if !policy.writable(Side::Local) { prop_assert_eq!(&local, &local_before); }
                let again = plan_folder(&records, &remote, &local, MassDeleteGuard::default(), true, policy);
                prop_assert_eq!(again, Plan::Actions(vec![]));
            }
        }
    }
}
