//! A mail client at work on the Maildir while idlewild syncs it: a thread that, as mutt and
//! notmuch do, renames files to change their flags (setting and clearing), moves them from
//! new/ to cur/, deletes them and delivers new ones, with no pause for the sync — during
//! one-shot syncs run back to back, and while the daemon runs. The server gets new mail and
//! flag changes of its own meanwhile, on the same messages: the client sets and clears \Seen,
//! \Answered and \Draft (keeping the rest of a name's flags, as mutt does), the server sets
//! and clears \Flagged, so a sync that merged the two changes by whole flag sets rather than
//! flag by flag would lose one. At the end: every message exactly once on both sides, and
//! every message's flags on both sides as the two last left them.
//!
//! Figures are printed at the end (run with `--nocapture` to see them).

mod common;
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::daemon::{Daemon, poll};
use common::{Env, Expected, expect_message, holds, try_set_local_flags, unexpect_message};
use idlewild::model::Flags;
use support::corpus::{self, Rng};

/// The flags (bits of [`Flags`]) each message must carry at the end, by Message-ID.
type FlagsOf = BTreeMap<String, u8>;

/// The folder the client works in; the server changes flags there and in [`SERVER_FOLDER`].
const CLIENT_FOLDER: &str = "INBOX";
const SERVER_FOLDER: &str = "Archive";
/// The flags the client changes (Maildir letters); the server changes only \Flagged.
const CLIENT_LETTERS: [char; 3] = ['S', 'R', 'D'];
const SEED: u64 = 93;

#[derive(Default)]
struct Truth {
    expected: Expected,
    flags: FlagsOf,
    /// Messages the client delivered: the only ones it deletes, and ones the server leaves
    /// alone (a deletion on one side and a flag change on the other is a conflict, whose
    /// outcome is a policy, not what this test is about).
    clients: std::collections::BTreeSet<String>,
}

impl Truth {
    fn add(&mut self, folder: &str, id: String, flags: u8) {
        self.flags.insert(id.clone(), flags);
        expect_message(&mut self.expected, folder, id);
    }

    fn remove(&mut self, folder: &str, id: &str) {
        unexpect_message(&mut self.expected, folder, id);
        self.flags.remove(id);
    }
}

#[derive(Default, Debug)]
struct Counts {
    flag_changes: usize,
    moved_to_cur: usize,
    deleted: usize,
    delivered: usize,
    lost_races: usize,
}

/// The mail client: works on [`CLIENT_FOLDER`] until told to stop, recording what it did.
fn mail_client(
    folder: PathBuf,
    truth: Arc<Mutex<Truth>>,
    stop: Arc<AtomicBool>,
    seed: u64,
    pause: Duration,
) -> Counts {
    let mut rng = Rng::new(seed);
    let mut counts = Counts::default();
    let mut next_id = 50_000 + (seed % 1000) as usize * 1000;
    while !stop.load(Ordering::Relaxed) {
        let files = message_files(&folder);
        match rng.below(10) {
            // Deliver a new message, as an MDA (new/) or as a client saving a copy (cur/).
            0 | 1 => {
                let content = corpus::message(SEED, next_id);
                let id = corpus::message_id(SEED, next_id);
                let info = if rng.chance(50) { None } else { Some("S") };
                let name = format!("client-{next_id}.host");
                let tmp = folder.join("tmp").join(&name);
                std::fs::write(&tmp, &content).expect("write a new message");
                let target = match info {
                    Some(i) => folder.join("cur").join(format!("{name}:2,{i}")),
                    None => folder.join("new").join(&name),
                };
                std::fs::rename(&tmp, target).expect("deliver");
                let bits = Flags::from_maildir_info(info.unwrap_or("")).bits();
                let mut truth = truth_of(&truth);
                truth.clients.insert(id.clone());
                truth.add(CLIENT_FOLDER, id, bits);
                next_id += 1;
                counts.delivered += 1;
            }
            // Delete one of its own.
            2 => {
                if let Some(file) = pick(&mut rng, &files)
                    && let Some(id) = message_id_of(&file)
                {
                    // Recorded with the unlink, under the lock: a check never sees a message
                    // gone that the truth still holds.
                    let mut truth = truth_of(&truth);
                    if !truth.clients.contains(&id) {
                        // Not one of its own: it leaves it.
                    } else if std::fs::remove_file(&file).is_ok() {
                        truth.remove(CLIENT_FOLDER, &id);
                        counts.deleted += 1;
                    } else {
                        counts.lost_races += 1;
                    }
                }
            }
            // Set or clear one of its flags, keeping the others the name has; or just take a
            // message from new/ to cur/, as a client that showed it.
            _ => {
                if let Some(file) = pick(&mut rng, &files)
                    && let Some(id) = message_id_of(&file)
                {
                    let in_new = file.parent().is_some_and(|p| p.ends_with("new"));
                    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    let mut info: String = name
                        .split_once(":2,")
                        .map(|(_, i)| i.to_owned())
                        .unwrap_or_default();
                    let just_seen = in_new && rng.chance(50);
                    if !just_seen {
                        let letter = CLIENT_LETTERS[rng.below(CLIENT_LETTERS.len())];
                        if info.contains(letter) {
                            info.retain(|c| c != letter);
                        } else {
                            info.push(letter);
                        }
                        let mut letters: Vec<char> = info.chars().collect();
                        letters.sort_unstable();
                        info = letters.into_iter().collect();
                    }
                    let mut truth = truth_of(&truth);
                    if try_set_local_flags(&file, &info).is_some() {
                        // The client's flags as the name has them; \Flagged is the server's.
                        let named = Flags::from_maildir_info(&info).bits() & !flagged();
                        let bits = truth.flags.entry(id).or_default();
                        *bits = (*bits & flagged()) | named;
                        if just_seen {
                            counts.moved_to_cur += 1;
                        } else {
                            counts.flag_changes += 1;
                        }
                    } else {
                        counts.lost_races += 1;
                    }
                }
            }
        }
        std::thread::sleep(pause);
    }
    counts
}

fn flagged() -> u8 {
    Flags::from_imap(["\\Flagged"]).bits()
}

/// The mail client's thread, working until stopped.
struct Client {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Counts>,
}

impl Client {
    fn start(env: &Env, truth: &Arc<Mutex<Truth>>, seed: u64, pause: Duration) -> Client {
        let stop = Arc::new(AtomicBool::new(false));
        let (folder, truth, flag) = (
            env.maildir().join(CLIENT_FOLDER),
            truth.clone(),
            stop.clone(),
        );
        let thread = std::thread::spawn(move || mail_client(folder, truth, flag, seed, pause));
        Client { stop, thread }
    }

    fn stop(self) -> Counts {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the mail client")
    }
}

fn truth_of(truth: &Mutex<Truth>) -> std::sync::MutexGuard<'_, Truth> {
    truth.lock().unwrap_or_else(|p| p.into_inner())
}

fn pick(rng: &mut Rng, files: &[PathBuf]) -> Option<PathBuf> {
    if files.is_empty() {
        None
    } else {
        Some(files[rng.below(files.len())].clone())
    }
}

fn message_files(folder: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["cur", "new"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(folder.join(sub)).into_iter().flatten())
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

/// The Message-ID of a file, or none when it went away meanwhile.
fn message_id_of(file: &Path) -> Option<String> {
    let content = std::fs::read(file).ok()?;
    idlewild::message::message_id(&content)
}

/// The server's share: new mail in both folders, \Flagged set or cleared on a few messages of
/// each (the client's own deliveries aside).
fn server_changes(env: &Env, truth: &Mutex<Truth>, rng: &mut Rng, next_id: &mut usize) {
    for folder in [CLIENT_FOLDER, SERVER_FOLDER] {
        let id = *next_id;
        *next_id += 1;
        env.ctl.append(folder, &corpus::message(SEED, id), &[]);
        truth_of(truth).add(folder, corpus::message_id(SEED, id), 0);
        let messages = env.ctl.dump(folder);
        for _ in 0..3 {
            if messages.is_empty() {
                break;
            }
            let m = &messages[rng.below(messages.len())];
            let Some(id) = &m.message_id else { continue };
            // Recorded under the lock with the change itself.
            let mut truth = truth_of(truth);
            if truth.clients.contains(id) {
                continue;
            }
            // What the truth says, not the listing: a STORE of the same message earlier in
            // this loop is not in it.
            let bits = truth.flags.entry(id.clone()).or_default();
            let mode = if *bits & flagged() != 0 { "-" } else { "+" };
            env.ctl.store(folder, m.uid, &["\\Flagged"], mode);
            *bits ^= flagged();
        }
    }
}

/// Both sides hold exactly the expected messages, once each, and each message's flags on both
/// sides are the truth's; returns the message copies checked.
fn check(env: &Env, truth: &Truth) -> Result<usize, String> {
    let (remote, local) = (env.remote(), env.local());
    let mut checked = 0;
    for (side, name) in [(&remote, "server"), (&local, "Maildir")] {
        checked += holds(side, name, &truth.expected)?;
        for m in side.values().flatten() {
            let Some(id) = &m.message_id else { continue };
            let want = truth.flags.get(id).copied().unwrap_or_default();
            if m.flags != want {
                return Err(format!(
                    "{name}: {id} has flags {:#x}, the last change left {want:#x}",
                    m.flags
                ));
            }
        }
    }
    Ok(checked)
}

/// Starts with mail on both sides, synced once.
fn setup(env: &Env, truth: &Mutex<Truth>) {
    env.ctl.create(SERVER_FOLDER);
    for i in 0..60 {
        let folder = if i % 2 == 0 {
            CLIENT_FOLDER
        } else {
            SERVER_FOLDER
        };
        let seen = i % 3 == 0;
        let flags: &[&str] = if seen { &["\\Seen"] } else { &[] };
        env.ctl.append(folder, &corpus::message(SEED, i), flags);
        let bits = Flags::from_imap(flags.iter().copied()).bits();
        truth_of(truth).add(folder, corpus::message_id(SEED, i), bits);
    }
    for i in 100..120 {
        env.deliver_locally(
            CLIENT_FOLDER,
            &format!("local-{i}.host"),
            &corpus::message(SEED, i),
            None,
        );
        truth_of(truth).add(CLIENT_FOLDER, corpus::message_id(SEED, i), 0);
    }
}

fn report(what: &str, counts: &Counts, syncs: usize, checked: usize, truth: &Truth) {
    eprintln!(
        "mail client during {what}: {syncs} syncs; the client changed flags {} times, moved {} \
         from new/ to cur/, deleted {}, delivered {} ({} races lost to the sync's own renames); \
         {checked} message copies and {} messages' flags checked, 0 lost, 0 duplicated, 0 flag \
         changes lost",
        counts.flag_changes,
        counts.moved_to_cur,
        counts.deleted,
        counts.delivered,
        counts.lost_races,
        truth.flags.len(),
    );
}

#[test]
fn a_mail_client_editing_during_one_shot_syncs_loses_nothing() {
    let env = Env::new();
    let truth = Arc::new(Mutex::new(Truth::default()));
    setup(&env, &truth);
    env.sync_ok(&[]);
    check(&env, &truth_of(&truth)).expect("in step after the first sync");

    let client = Client::start(&env, &truth, 1, Duration::from_millis(3));
    let mut rng = Rng::new(0xc11e);
    let mut next_id = 1000;
    let mut syncs = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        server_changes(&env, &truth, &mut rng, &mut next_id);
        // Each sync must succeed: a client at work is the normal case, not an error.
        env.sync_ok(&["-q"]);
        syncs += 1;
    }
    let counts = client.stop();
    // Two clean syncs: the first may find the client's last moves made after it listed.
    env.sync_ok(&[]);
    env.sync_ok(&[]);
    let truth = truth_of(&truth);
    let checked = check(&env, &truth).unwrap_or_else(|e| panic!("{e}"));
    report("one-shot syncs", &counts, syncs, checked, &truth);
    assert!(
        counts.flag_changes >= 100 && counts.deleted >= 20 && counts.delivered >= 40,
        "the client did too little: {counts:?}"
    );
}

#[test]
fn a_mail_client_editing_while_the_daemon_runs_loses_nothing() {
    let env = Env::new();
    let truth = Arc::new(Mutex::new(Truth::default()));
    setup(&env, &truth);
    let daemon = Daemon::start(&env, None);
    daemon.expect_notify("READY=1", Duration::from_secs(20));
    daemon.eventually(Duration::from_secs(20), "the first sync", || {
        check(&env, &truth_of(&truth)).is_ok()
    });

    let client = Client::start(&env, &truth, 2, Duration::from_millis(10));
    let mut rng = Rng::new(0xdae3);
    let mut next_id = 3000;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        server_changes(&env, &truth, &mut rng, &mut next_id);
        std::thread::sleep(Duration::from_millis(300));
    }
    let counts = client.stop();
    let mut last = String::new();
    let converged = poll(Duration::from_secs(60), || {
        match check(&env, &truth_of(&truth)) {
            Ok(_) => true,
            Err(e) => {
                last = e;
                false
            }
        }
    });
    assert!(
        converged,
        "the daemon did not converge: {last}\n--- daemon log\n{}",
        daemon.log_tail()
    );
    let log = std::fs::read_to_string(&daemon.log).unwrap_or_default();
    assert!(!log.contains("panicked"), "{}", daemon.log_tail());
    let truth = truth_of(&truth);
    let checked = check(&env, &truth).unwrap_or_else(|e| panic!("{e}"));
    report("the daemon", &counts, 0, checked, &truth);
    assert!(
        // Fewer than during one-shot syncs: this client pauses longer between changes.
        counts.flag_changes >= 100 && counts.deleted >= 10 && counts.delivered >= 40,
        "the client did too little: {counts:?}"
    );
}
