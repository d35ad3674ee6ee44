//! When an account syncs, and what: the debounce of wake-ups, the periodic full sync, and the
//! full syncs that start, reconnects, failures and requests ask for. Pure: every method takes
//! `now`, and the supervisor sleeps until [`Schedule::deadline`], so the timing is tested on
//! tokio's paused clock without a server.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use crate::model::FolderName;

/// Local wake-ups closer together than this are one sync: a mail client changing flags renames
/// files in bursts.
pub(super) const DEBOUNCE: Duration = Duration::from_millis(100);
/// Server notifications come batched already (Dovecot waits about half a second), so they are
/// only given a moment for the rest of their batch.
pub(super) const SERVER_DEBOUNCE: Duration = Duration::from_millis(5);
/// A burst that keeps going is still synced at least this often.
pub(super) const DEBOUNCE_MAX: Duration = Duration::from_secs(1);
/// How often the wall clock is compared with the monotonic clock to notice a suspend; also how
/// long a paused account sleeps between looks at nothing.
pub(super) const CLOCK_CHECK: Duration = Duration::from_secs(15);

/// What a sync that is due covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Due {
    /// Every folder: at start, every interval, after a reconnect, a suspend or a failure.
    Full,
    /// Only the folders woken since the last sync.
    Folders,
}

#[derive(Debug)]
pub(super) struct Schedule {
    interval: Duration,
    /// Folders woken since the last sync, by local name.
    pending: BTreeSet<FolderName>,
    /// A full sync is due from this time on.
    full_sync_due: Option<Instant>,
    /// The pending folders are due from this time on.
    debounce_deadline: Option<Instant>,
    /// When the burst of wake-ups the next sync ends began.
    burst_started: Option<Instant>,
    /// When the interval's full sync is due; moved on by every full sync that succeeds.
    next_interval: Instant,
    /// The server asked to be left alone until then (a bandwidth or connection limit): no
    /// wake-up syncs before, only a person's request.
    held_until: Option<Instant>,
}

impl Schedule {
    /// A new account syncs everything at once, unless it starts paused.
    pub(super) fn new(interval: Duration, paused: bool, now: Instant) -> Self {
        Self {
            interval,
            pending: BTreeSet::new(),
            full_sync_due: (!paused).then_some(now),
            debounce_deadline: None,
            burst_started: None,
            next_interval: now + interval,
            held_until: None,
        }
    }

    /// The sync due at `now`, if any; a full one covers the woken folders too.
    pub(super) fn due(&self, now: Instant) -> Option<Due> {
        if self.held_until.is_some_and(|t| now < t) {
            return None;
        }
        if self.full_sync_due.is_some_and(|t| t <= now) {
            Some(Due::Full)
        } else if self.debounce_deadline.is_some_and(|t| t <= now) && !self.pending.is_empty() {
            Some(Due::Folders)
        } else {
            None
        }
    }

    /// Starts a sync that is due: the folders it syncs (none for all of them). Every wake-up so
    /// far is covered by it, so the burst ends here. A full sync stays due until it succeeds
    /// ([`Self::full_sync_done`]) or a failure sets its retry ([`Self::retry_at`]).
    pub(super) fn start(&mut self, due: Due) -> Vec<FolderName> {
        let folders = match due {
            Due::Full => {
                self.pending.clear();
                Vec::new()
            }
            Due::Folders => std::mem::take(&mut self.pending).into_iter().collect(),
        };
        self.debounce_deadline = None;
        self.burst_started = None;
        folders
    }

    /// When the loop must look again if nothing else wakes it. A paused account has no
    /// deadlines: only a request or a stop wakes it. While a full sync is due (a retry after a
    /// failure, say) the interval has nothing to add: its time may be long past, and counting
    /// it would keep the loop from ever sleeping until that sync is done.
    pub(super) fn deadline(&self, paused: bool, now: Instant) -> Instant {
        if paused {
            return now + CLOCK_CHECK;
        }
        if let Some(held) = self.held_until.filter(|t| now < *t) {
            // Wake-ups meanwhile wait for the end of the hold; the clock is still looked at.
            return held.min(now + CLOCK_CHECK);
        }
        let interval = self.full_sync_due.is_none().then_some(self.next_interval);
        [self.full_sync_due, self.debounce_deadline, interval]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + CLOCK_CHECK)
    }

    /// The loop woke at a deadline: the interval's full sync is due once the interval passed.
    /// A full sync already due keeps its time.
    pub(super) fn deadline_passed(&mut self, now: Instant) {
        if now >= self.next_interval {
            self.full_sync_due.get_or_insert(now);
        }
    }

    /// A folder changed (by local name); it is synced once `quiet` passed without another
    /// wake-up.
    pub(super) fn folder_changed(&mut self, folder: FolderName, quiet: Duration, now: Instant) {
        self.pending.insert(folder);
        self.debounce(quiet, now);
    }

    /// Anything may have changed (a new folder, a watch connection re-made): a full sync after
    /// the debounce; one already due keeps its time.
    pub(super) fn everything_changed(&mut self, now: Instant) {
        self.full_sync_due.get_or_insert(now + DEBOUNCE);
        self.debounce(DEBOUNCE, now);
    }

    /// Each wake-up of a burst moves its sync to `quiet` after it, never earlier than a
    /// deadline already set (a server wake-up's short quiet does not cut a local burst short)
    /// and never later than `DEBOUNCE_MAX` after the burst began.
    fn debounce(&mut self, quiet: Duration, now: Instant) {
        let started = *self.burst_started.get_or_insert(now);
        let latest = started + DEBOUNCE_MAX;
        let proposed = (now + quiet).min(latest);
        self.debounce_deadline = Some(
            self.debounce_deadline
                .map_or(proposed, |d| d.max(proposed).min(latest)),
        );
    }

    /// A watch connection was made again after it broke: changes may have been missed, and the
    /// server answers again, so a retry set further off by a failed sync's backoff is brought
    /// forward to the debounce (a hold asked for by a rationing server is not: [`Self::due`]
    /// still waits for its end). Without this, a network that came back after a bad spell
    /// stayed unsynced for minutes, until the backoff's retry.
    pub(super) fn reconnected(&mut self, now: Instant) {
        self.full_sync_by(now + DEBOUNCE);
        self.debounce(DEBOUNCE, now);
    }

    /// A person asked for a sync of `folders` (all when empty): now, without a debounce. While
    /// a full sync is due, the request is folded into it now.
    pub(super) fn requested(&mut self, folders: Vec<FolderName>, now: Instant) {
        // A person who asks may ask the server again: the hold is theirs to break.
        self.held_until = None;
        if folders.is_empty() || self.full_sync_due.is_some() {
            self.full_sync_due = Some(now);
        } else {
            self.pending.extend(folders);
            self.debounce_deadline = Some(now);
        }
    }

    /// A full sync now (a resume from suspend, a retry asked for, room made on a full disk).
    pub(super) fn full_sync_now(&mut self, now: Instant) {
        self.full_sync_due = Some(now);
    }

    /// A full sync no later than `at`.
    pub(super) fn full_sync_by(&mut self, at: Instant) {
        self.full_sync_due = Some(self.full_sync_due.map_or(at, |t| t.min(at)));
    }

    /// A sync failed: whatever it was is retried as a full sync at `at`, later or sooner than
    /// anything due before.
    pub(super) fn retry_at(&mut self, at: Instant) {
        self.full_sync_due = Some(at);
    }

    /// A sync failed because the server rations the account: a full sync at `at`, and no
    /// wake-up syncs before (new mail would otherwise ask the server again at once).
    pub(super) fn hold_until(&mut self, at: Instant) {
        self.held_until = Some(at);
        self.full_sync_due = Some(at);
    }

    /// A full sync succeeded: the next interval counts from now.
    pub(super) fn full_sync_done(&mut self, now: Instant) {
        self.held_until = None;
        self.full_sync_due = None;
        self.next_interval = now + self.interval;
    }

    /// Paused: nothing is due, and wake-ups so far are forgotten (the resume syncs everything).
    pub(super) fn pause(&mut self) {
        self.pending.clear();
        self.full_sync_due = None;
        self.debounce_deadline = None;
        self.burst_started = None;
    }

    /// Resumed: anything may have changed meanwhile, so everything now; the interval restarts.
    pub(super) fn resume(&mut self, now: Instant) {
        self.full_sync_due = Some(now);
        self.next_interval = now + self.interval;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(60);

    fn folder(name: &str) -> FolderName {
        FolderName::new(name).expect("a valid folder name")
    }

    /// What happens to the account at a time, as the supervisor hands it to the schedule.
    #[derive(Clone, Copy)]
    enum Input {
        Local(&'static str),
        Server(&'static str),
        Rescan,
        Request(&'static [&'static str]),
    }

    /// One sync: when (ms after the start), and which folders (none: a full sync).
    type Sync = (u64, Due, Vec<FolderName>);

    /// Plays the supervisor's loop on the paused clock from now until `until_ms`: syncs what is
    /// due (every sync succeeds and takes no time), else sleeps until the schedule's deadline or
    /// the next input, whichever comes first. Inputs are at ms after the start, in order.
    async fn play(schedule: &mut Schedule, inputs: &[(u64, Input)], until_ms: u64) -> Vec<Sync> {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut inputs = inputs.iter().peekable();
        let mut syncs = Vec::new();
        loop {
            let now = Instant::now();
            if let Some(due) = schedule.due(now) {
                let folders = schedule.start(due);
                if due == Due::Full {
                    schedule.full_sync_done(now);
                }
                syncs.push(((now - start).as_millis() as u64, due, folders));
                // A schedule that keeps a sync due would loop here forever.
                assert!(syncs.len() < 100, "a sync stays due: {syncs:?}");
                continue;
            }
            let deadline = schedule.deadline(false, now);
            let next_input = inputs.peek().map(|(ms, _)| at(*ms));
            if next_input.is_none_or(|t| deadline < t) {
                if deadline > at(until_ms) {
                    return syncs;
                }
                tokio::time::sleep_until(deadline).await;
                schedule.deadline_passed(Instant::now());
                continue;
            }
            let Some((ms, input)) = inputs.next() else {
                return syncs;
            };
            tokio::time::sleep_until(at(*ms)).await;
            let now = Instant::now();
            match *input {
                Input::Local(f) => schedule.folder_changed(folder(f), DEBOUNCE, now),
                Input::Server(f) => schedule.folder_changed(folder(f), SERVER_DEBOUNCE, now),
                Input::Rescan => schedule.everything_changed(now),
                Input::Request(names) => {
                    schedule.requested(names.iter().map(|n| folder(n)).collect(), now)
                }
            }
        }
    }

    fn full(ms: u64) -> Sync {
        (ms, Due::Full, Vec::new())
    }

    #[tokio::test(start_paused = true)]
    async fn a_rationing_server_is_not_woken_by_new_mail_but_a_person_may_ask() {
        let mut s = Schedule::new(INTERVAL, false, Instant::now());
        s.start(Due::Full);
        s.hold_until(Instant::now() + Duration::from_secs(30));
        // New mail meanwhile: nothing until the hold ends, then one full sync.
        let syncs = play(
            &mut s,
            &[
                (1_000, Input::Server("INBOX")),
                (2_000, Input::Local("INBOX")),
            ],
            31_000,
        )
        .await;
        assert_eq!(syncs, vec![full(30_000)]);

        let mut s = Schedule::new(INTERVAL, false, Instant::now());
        s.start(Due::Full);
        s.hold_until(Instant::now() + Duration::from_secs(30));
        let syncs = play(&mut s, &[(5_000, Input::Request(&[]))], 31_000).await;
        assert_eq!(syncs, vec![full(5_000)]);
    }

    fn folders(ms: u64, names: &[&str]) -> Sync {
        (ms, Due::Folders, names.iter().map(|n| folder(n)).collect())
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_local_wakes_within_the_debounce_is_one_sync_and_a_later_wake_another() {
        let mut s = Schedule::new(INTERVAL, false, Instant::now());
        let inputs = [
            (1000, Input::Local("INBOX")),
            (1050, Input::Local("INBOX")),
            (1090, Input::Local("Sent")),
            // After the first burst's sync: a burst of its own.
            (1400, Input::Local("INBOX")),
        ];
        assert_eq!(
            play(&mut s, &inputs, 2000).await,
            vec![
                full(0),
                folders(1190, &["INBOX", "Sent"]),
                folders(1500, &["INBOX"])
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_that_keeps_going_is_synced_every_debounce_max() {
        let mut s = Schedule::new(INTERVAL, false, Instant::now());
        let inputs: Vec<(u64, Input)> = (0..=83)
            .map(|k| (1000 + 30 * k, Input::Local("INBOX")))
            .collect();
        // Bursts begin at 1000, 2020 and 3040; the last wake-up is at 3490.
        assert_eq!(
            play(&mut s, &inputs, 5000).await,
            vec![
                full(0),
                folders(2000, &["INBOX"]),
                folders(3020, &["INBOX"]),
                folders(3590, &["INBOX"])
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_wake_waits_a_moment_but_does_not_cut_a_local_burst_short() {
        let mut s = Schedule::new(INTERVAL, false, Instant::now());
        let inputs = [
            (1000, Input::Server("INBOX")),
            (2000, Input::Local("Sent")),
            (2010, Input::Server("INBOX")),
        ];
        assert_eq!(
            play(&mut s, &inputs, 3000).await,
            vec![
                full(0),
                folders(1005, &["INBOX"]),
                folders(2100, &["INBOX", "Sent"])
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_wake_first_is_put_off_by_a_local_one_in_its_moment() {
        // What the code does today: the later wake-up's longer quiet moves the deadline on.
        let mut s = Schedule::new(INTERVAL, false, Instant::now());
        let inputs = [(1000, Input::Server("INBOX")), (1002, Input::Local("Sent"))];
        assert_eq!(
            play(&mut s, &inputs, 2000).await,
            vec![full(0), folders(1102, &["INBOX", "Sent"])]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn rescans_are_one_full_sync_at_the_first_ones_debounce() {
        let mut s = Schedule::new(INTERVAL, false, Instant::now());
        let inputs = [
            (1000, Input::Local("INBOX")),
            (1020, Input::Rescan),
            (1070, Input::Rescan),
        ];
        // The full sync covers the folder woken before, and nothing is left for 1170.
        assert_eq!(play(&mut s, &inputs, 3000).await, vec![full(0), full(1120)]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_interval_sync_is_due_after_the_interval_not_before() {
        let start = Instant::now();
        let mut s = Schedule::new(INTERVAL, false, start);
        assert_eq!(s.due(start), Some(Due::Full));
        s.start(Due::Full);
        s.full_sync_done(start);
        assert_eq!(s.deadline(false, start), start + INTERVAL);
        tokio::time::advance(INTERVAL - Duration::from_millis(1)).await;
        s.deadline_passed(Instant::now());
        assert_eq!(s.due(Instant::now()), None);
        tokio::time::advance(Duration::from_millis(1)).await;
        s.deadline_passed(Instant::now());
        assert_eq!(s.due(Instant::now()), Some(Due::Full));
    }

    #[tokio::test(start_paused = true)]
    async fn interval_syncs_come_one_interval_apart() {
        let mut s = Schedule::new(INTERVAL, false, Instant::now());
        assert_eq!(
            play(&mut s, &[], 150_000).await,
            vec![full(0), full(60_000), full(120_000)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_folder_sync_between_does_not_move_the_interval() {
        let mut s = Schedule::new(INTERVAL, false, Instant::now());
        let inputs = [(30_000, Input::Local("INBOX"))];
        assert_eq!(
            play(&mut s, &inputs, 100_000).await,
            vec![full(0), folders(30_100, &["INBOX"]), full(60_000)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_sync_between_restarts_the_interval() {
        let mut s = Schedule::new(INTERVAL, false, Instant::now());
        let inputs = [(30_000, Input::Request(&[]))];
        assert_eq!(
            play(&mut s, &inputs, 100_000).await,
            vec![full(0), full(30_000), full(90_000)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn requests_are_synced_at_once_and_folded_into_a_full_sync_due() {
        let mut s = Schedule::new(INTERVAL, false, Instant::now());
        let inputs = [
            (1000, Input::Request(&["INBOX"])),
            (2000, Input::Request(&[])),
            (3000, Input::Rescan),
            (3050, Input::Request(&["INBOX"])),
        ];
        assert_eq!(
            play(&mut s, &inputs, 4000).await,
            vec![full(0), folders(1000, &["INBOX"]), full(2000), full(3050)]
        );
    }

    /// Regression: a retry later than the interval kept the interval's past time as the
    /// deadline, so a daemon offline for longer than one interval spun a core until the retry.
    #[tokio::test(start_paused = true)]
    async fn a_failed_sync_is_retried_at_its_time_and_the_loop_sleeps_until_then() {
        let start = Instant::now();
        let mut s = Schedule::new(INTERVAL, false, start);
        s.start(Due::Full);
        let retry = start + INTERVAL + Duration::from_secs(10);
        s.retry_at(retry);
        assert_eq!(
            s.deadline(false, start),
            retry,
            "the retry covers the interval"
        );
        tokio::time::advance(INTERVAL).await;
        // The interval passes, but the retry already due keeps its later time.
        s.deadline_passed(Instant::now());
        assert_eq!(s.due(Instant::now()), None);
        assert_eq!(
            s.deadline(false, Instant::now()),
            retry,
            "no deadline in the past"
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(s.due(Instant::now()), Some(Due::Full));
        // Once it succeeds, the interval counts again, from then.
        s.start(Due::Full);
        s.full_sync_done(Instant::now());
        assert_eq!(s.deadline(false, Instant::now()), Instant::now() + INTERVAL);
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_connection_made_again_brings_a_far_retry_forward_but_not_a_hold() {
        let start = Instant::now();
        let mut s = Schedule::new(INTERVAL, false, start);
        s.start(Due::Full);
        s.retry_at(start + Duration::from_secs(200));
        tokio::time::advance(Duration::from_secs(5)).await;
        s.reconnected(Instant::now());
        assert_eq!(s.deadline(false, Instant::now()), Instant::now() + DEBOUNCE);
        tokio::time::advance(DEBOUNCE).await;
        assert_eq!(s.due(Instant::now()), Some(Due::Full));

        // A retry due sooner keeps its time.
        let mut s = Schedule::new(INTERVAL, false, start);
        s.start(Due::Full);
        s.retry_at(Instant::now());
        s.reconnected(Instant::now());
        assert_eq!(s.due(Instant::now()), Some(Due::Full));

        // A rationing server's hold stands.
        let mut s = Schedule::new(INTERVAL, false, start);
        s.start(Due::Full);
        s.hold_until(Instant::now() + Duration::from_secs(60));
        s.reconnected(Instant::now());
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(s.due(Instant::now()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_room_retry_never_puts_off_a_full_sync_due_sooner() {
        let start = Instant::now();
        let mut s = Schedule::new(INTERVAL, false, start);
        s.full_sync_by(start + Duration::from_secs(60));
        assert_eq!(s.due(start), Some(Due::Full));
        s.start(Due::Full);
        s.full_sync_done(start);
        s.full_sync_by(start + Duration::from_secs(20));
        s.full_sync_by(start + Duration::from_secs(60));
        assert_eq!(s.deadline(false, start), start + Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_account_has_nothing_due_and_a_resume_syncs_everything_at_once() {
        let start = Instant::now();
        let mut s = Schedule::new(INTERVAL, true, start);
        assert_eq!(s.due(start), None);
        assert_eq!(s.deadline(true, start), start + CLOCK_CHECK);
        // Wake-ups before a pause are forgotten by it.
        s.folder_changed(folder("INBOX"), DEBOUNCE, start);
        s.everything_changed(start);
        s.pause();
        tokio::time::advance(Duration::from_secs(600)).await;
        let now = Instant::now();
        assert_eq!(s.due(now), None);
        s.resume(now);
        assert_eq!(s.due(now), Some(Due::Full));
        s.start(Due::Full);
        s.full_sync_done(now);
        assert_eq!(s.deadline(false, now), now + INTERVAL);
    }
}
