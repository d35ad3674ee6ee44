//! IMAP <-> IMAP (`local.type = "imap"`): the same engine syncing two servers. Against a real
//! Dovecot with two users (one per side), read through `imapctl.py`; and, for interruptions at
//! an exact effect, between two in-memory IMAP-like stores.

mod common;
mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Seen, Side, set_mode, stdout};
use idlewild::engine::SyncOptions;
use idlewild::model::Flags;
use idlewild::store::memory::{MemoryServer, MemoryStore};
use support::corpus;
use support::dovecot::{Dovecot, DovecotOptions};
use support::faulty::{Outcome, When, ended_clean, fault_reached, sync_with_fault};
use support::imapctl::ImapCtl;

const SECOND: &str = "second";
const SECOND_PASSWORD: &str = "second-password";

struct TwoServers {
    dovecot: Dovecot,
    a: ImapCtl,
    b: ImapCtl,
    dir: tempfile::TempDir,
}

impl TwoServers {
    fn new() -> TwoServers {
        let dovecot = Dovecot::start_with(DovecotOptions {
            extra_users: vec![(SECOND.into(), SECOND_PASSWORD.into())],
            ..DovecotOptions::default()
        })
        .expect("start a private Dovecot");
        let a = ImapCtl::new(&dovecot);
        let b = ImapCtl::for_user(&dovecot, SECOND, SECOND_PASSWORD);
        let dir = tempfile::tempdir().expect("tempdir");
        let env = TwoServers { dovecot, a, b, dir };
        env.configure("");
        env
    }

    fn config_path(&self) -> std::path::PathBuf {
        self.dir.path().join("config.toml")
    }

    /// The account `move`: user `test` (`a`) is the remote side, `second` (`b`) the local one.
    fn configure(&self, account: &str) {
        self.configure_sides(
            account,
            (self.dovecot.user(), self.dovecot.password()),
            (SECOND, SECOND_PASSWORD),
        );
    }

    fn configure_sides(&self, account: &str, remote: (&str, &str), local: (&str, &str)) {
        let text = format!(
            "[general]\nstate_dir = \"{state}\"\n\n[accounts.move]\n{account}\n\n[accounts.move.remote]\ntype = \"imap\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nuser = \"{}\"\npassword = \"{}\"\ntimeout = 20\n\n[accounts.move.local]\ntype = \"imap\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nuser = \"{}\"\npassword = \"{}\"\ntimeout = 20\n",
            remote.0,
            remote.1,
            local.0,
            local.1,
            state = self.dir.path().join("state").display(),
            port = self.dovecot.port(),
        );
        std::fs::write(self.config_path(), text).expect("write config");
        set_mode(&self.config_path(), 0o600);
    }

    fn sync_ok(&self) -> String {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_idlewild"))
            .arg("--config")
            .arg(self.config_path())
            .arg("sync")
            .env("IDLEWILD_LOG", "idlewild=debug")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env("XDG_RUNTIME_DIR", self.dir.path().join("no-runtime-dir"))
            .output()
            .expect("run idlewild");
        assert!(
            out.status.success(),
            "idlewild sync failed ({:?})\n--- stdout\n{}\n--- stderr\n{}",
            out.status.code(),
            stdout(&out),
            common::tail(&String::from_utf8_lossy(&out.stderr), 60)
        );
        stdout(&out)
    }

    /// Both servers hold the same folders with the same messages and flags, no Message-ID
    /// twice in a folder.
    fn assert_in_step(&self) -> Side {
        let (a, b) = (side_of(&self.a), side_of(&self.b));
        for (folder, messages) in &a {
            let mut ids: Vec<_> = messages
                .iter()
                .filter_map(|m| m.message_id.clone())
                .collect();
            let n = ids.len();
            ids.sort();
            ids.dedup();
            assert_eq!(n, ids.len(), "duplicate Message-ID in {folder}");
        }
        assert_eq!(a, b, "the two servers differ");
        a
    }
}

fn side_of(ctl: &ImapCtl) -> Side {
    ctl.dump_all()
        .into_iter()
        .map(|(folder, messages)| {
            let mut seen: Vec<Seen> = messages
                .into_iter()
                .map(|m| Seen {
                    sha256: m.sha256,
                    flags: Flags::from_imap(m.flags.iter().map(String::as_str)).bits(),
                    message_id: m.message_id,
                })
                .collect();
            seen.sort();
            (folder, seen)
        })
        .collect()
}

fn count(side: &Side) -> usize {
    side.values().map(Vec::len).sum()
}

#[test]
fn two_servers_sync_both_ways_then_a_run_without_changes_does_nothing() {
    let env = TwoServers::new();
    env.a.create("Work");
    env.b.create("Other");
    for i in 0..5 {
        env.a.append(
            "INBOX",
            &corpus::message(21, i),
            if i % 2 == 0 { &["\\Seen"] } else { &[] },
        );
    }
    env.a
        .append("Work", &corpus::message(21, 10), &["\\Flagged"]);
    env.a
        .append("Work", &corpus::big_message(21, 2 * 1024 * 1024), &[]);
    for i in 0..3 {
        env.b.append("INBOX", &corpus::message(22, i), &[]);
    }
    env.b.append("Other", &corpus::message(22, 10), &["\\Seen"]);

    env.sync_ok();
    let both = env.assert_in_step();
    assert_eq!(count(&both), 5 + 2 + 3 + 1);

    // Changes on both servers: new mail, a flag change and an expunge on each.
    let a_inbox = env.a.dump("INBOX");
    env.a.append("INBOX", &corpus::message(21, 100), &[]);
    env.a.store("INBOX", a_inbox[1].uid, &["\\Answered"], "+");
    env.a.expunge("INBOX", &[a_inbox[2].uid]);
    // (Each server's own messages have its lowest UIDs: no change meets another.)
    let b_inbox = env.b.dump("INBOX");
    env.b.append("Other", &corpus::message(22, 100), &[]);
    env.b.store("INBOX", b_inbox[0].uid, &["\\Flagged"], "+");
    env.b.expunge("INBOX", &[b_inbox[1].uid]);

    let out = env.sync_ok();
    assert!(
        out.contains("1 new here, 1 new on the server, 2 flag changes, 1 deleted here, 1 deleted on the server"),
        "{out}"
    );
    let both = env.assert_in_step();
    assert_eq!(count(&both), 11 + 2 - 2);
    let gone = [a_inbox[2].message_id.clone(), b_inbox[1].message_id.clone()];
    assert!(!both["INBOX"].iter().any(|m| gone.contains(&m.message_id)));

    // Nothing changed: nothing is done, and neither server sees a write.
    let status = |ctl: &ImapCtl| {
        ["INBOX", "Work", "Other"]
            .iter()
            .map(|f| {
                let s = ctl.status(f);
                (s.uidvalidity, s.uidnext, s.messages)
            })
            .collect::<Vec<_>>()
    };
    let (before_a, before_b) = (status(&env.a), status(&env.b));
    let out = env.sync_ok();
    assert!(
        out.contains("0 new here, 0 new on the server, 0 flag changes, 0 deleted here, 0 deleted on the server"),
        "{out}"
    );
    assert_eq!((status(&env.a), status(&env.b)), (before_a, before_b));
    assert_eq!(env.assert_in_step(), both);
}

#[test]
fn a_renumbered_folder_on_the_local_server_is_matched_again_without_duplicates() {
    let mut env = TwoServers::new();
    // Sides swapped: the test user, whose UIDs the test server can make it forget, is local.
    env.configure_sides(
        "",
        (SECOND, SECOND_PASSWORD),
        (env.dovecot.user(), env.dovecot.password()),
    );
    for i in 0..6 {
        env.b.append("INBOX", &corpus::message(23, i), &[]);
    }
    env.sync_ok();
    // A deletion on the local server leaves a gap in its UIDs, so that after the renumbering
    // every old UID names another message (or none).
    let local_inbox = env.a.dump("INBOX");
    env.a.expunge("INBOX", &[local_inbox[0].uid]);
    env.a
        .store("INBOX", local_inbox[1].uid, &["\\Flagged"], "+");
    env.sync_ok();
    env.assert_in_step();
    let validity = env.a.status("INBOX").uidvalidity;
    env.dovecot.renumber_uids("INBOX").expect("renumber");
    assert_ne!(env.a.status("INBOX").uidvalidity, validity);

    let out = env.sync_ok();
    assert!(
        out.contains("0 new here, 0 new on the server, 0 flag changes, 0 deleted here, 0 deleted on the server"),
        "{out}"
    );
    let both = env.assert_in_step();
    assert_eq!(count(&both), 5);
    assert_eq!(
        both["INBOX"]
            .iter()
            .filter(|m| m.flags & Flags::FLAGGED.bits() != 0)
            .count(),
        1
    );
    // Changes after the renumbering travel as before.
    let local_inbox = env.a.dump("INBOX");
    env.a.expunge("INBOX", &[local_inbox[4].uid]);
    let out = env.sync_ok();
    assert!(
        out.contains("0 deleted here, 1 deleted on the server"),
        "{out}"
    );
    assert_eq!(count(&env.assert_in_step()), 4);
}

#[test]
fn a_read_only_local_server_is_never_written() {
    let env = TwoServers::new();
    for i in 0..4 {
        env.a.append("INBOX", &corpus::message(24, i), &[]);
    }
    env.b.append("INBOX", &corpus::message(25, 0), &["\\Seen"]);
    env.b.create("Archive");
    env.b.append("Archive", &corpus::message(25, 1), &[]);
    env.configure("");
    let text = std::fs::read_to_string(env.config_path()).expect("config");
    std::fs::write(
        env.config_path(),
        text.replace(
            "[accounts.move.local]\n",
            "[accounts.move.local]\nreadonly = true\n",
        ),
    )
    .expect("config");
    let before = side_of(&env.b);
    let status = env.b.status("INBOX");
    env.sync_ok();
    env.sync_ok();
    assert_eq!(side_of(&env.b), before);
    let after = env.b.status("INBOX");
    assert_eq!(
        (after.uidvalidity, after.uidnext, after.messages),
        (status.uidvalidity, status.uidnext, status.messages)
    );
    // What the read-only side has was copied to the writable one, once.
    let a = side_of(&env.a);
    assert_eq!(a["INBOX"].len(), 5);
    assert_eq!(a["Archive"].len(), 1);
}

// ---- interrupted at every effect, between two in-memory IMAP-like stores --------------------

fn message(n: usize) -> Vec<u8> {
    format!(
        "From: a{n}@example.org\nTo: b@example.org\nMessage-ID: <m{n}@example.org>\nSubject: message {n}\n\nbody {n}\n{}\n",
        "x".repeat(n * 7)
    )
    .into_bytes()
}

type Contents = BTreeMap<String, Vec<(Vec<u8>, u8)>>;

struct World {
    dir: tempfile::TempDir,
    remote: Arc<Mutex<MemoryServer>>,
    local: Arc<Mutex<MemoryServer>>,
}

fn clone_server(server: &Arc<Mutex<MemoryServer>>) -> Arc<Mutex<MemoryServer>> {
    let src = server.lock().unwrap();
    Arc::new(Mutex::new(MemoryServer {
        folders: src.folders.clone(),
        no_appenduid: src.no_appenduid,
        ..MemoryServer::default()
    }))
}

fn contents(server: &Arc<Mutex<MemoryServer>>) -> Contents {
    let mut out = Contents::new();
    for (name, f) in &server.lock().unwrap().folders {
        let entry = out.entry(name.to_string()).or_default();
        for m in f.messages.values() {
            entry.push((m.content.clone(), m.flags.bits()));
        }
        entry.sort();
    }
    out
}

impl World {
    fn new() -> Self {
        let remote = Arc::new(Mutex::new(MemoryServer::default()));
        let local = Arc::new(Mutex::new(MemoryServer::default()));
        {
            let mut s = remote.lock().unwrap();
            let inbox = s.folder("INBOX");
            for n in 0..5 {
                inbox.append(
                    message(n),
                    if n % 2 == 0 {
                        Flags::SEEN
                    } else {
                        Flags::empty()
                    },
                );
            }
            s.folder("Archive").append(message(5), Flags::FLAGGED);
        }
        {
            let mut s = local.lock().unwrap();
            let inbox = s.folder("INBOX");
            for n in 10..13 {
                inbox.append(message(n), Flags::empty());
            }
            s.folder("Local-only").append(message(13), Flags::SEEN);
        }
        World {
            dir: tempfile::tempdir().expect("tempdir"),
            remote,
            local,
        }
    }

    fn copy(&self) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = self.dir.path().join("state.sqlite");
        if state.exists() {
            // WAL mode: the database may live partly in its -wal file; copy all of them.
            for suffix in ["", "-wal", "-shm"] {
                let from = self.dir.path().join(format!("state.sqlite{suffix}"));
                if from.exists() {
                    std::fs::copy(&from, dir.path().join(format!("state.sqlite{suffix}")))
                        .expect("copy state");
                }
            }
        }
        World {
            dir,
            remote: clone_server(&self.remote),
            local: clone_server(&self.local),
        }
    }

    /// Runs one sync; `fail_at` 0 means no fault. Returns whether the fault was reached.
    fn sync(&self, fail_at: usize, when: When) -> bool {
        fault_reached(self.run(fail_at, when))
    }

    /// Whether one sync without an injected fault ended without an error.
    fn sync_succeeds(&self) -> bool {
        ended_clean(self.run(0, When::Before))
    }

    fn run(&self, fail_at: usize, when: When) -> Outcome {
        let options = SyncOptions {
            scratch_dir: self.dir.path().join("scratch"),
            ..SyncOptions::default()
        };
        sync_with_fault(
            MemoryStore::new(self.remote.clone()),
            MemoryStore::new(self.local.clone()),
            &self.dir.path().join("state.sqlite"),
            &options,
            fail_at,
            when,
        )
    }

    fn change_both_sides(&self) {
        let mut s = self.remote.lock().unwrap();
        let inbox = s.folder("INBOX");
        inbox.append(message(20), Flags::empty());
        if let Some(m) = inbox.messages.get_mut(&2) {
            m.flags = Flags::SEEN.union(&Flags::ANSWERED);
        }
        inbox.messages.remove(&3);
        drop(s);
        let mut s = self.local.lock().unwrap();
        let inbox = s.folder("INBOX");
        inbox.append(message(30), Flags::DRAFT);
        let first = *inbox.messages.keys().next().expect("a local message");
        if let Some(m) = inbox.messages.get_mut(&first) {
            m.flags = Flags::FLAGGED;
        }
        let last = *inbox.messages.keys().nth(4).expect("five local messages");
        inbox.messages.remove(&last);
        s.folder("Local-new").append(message(31), Flags::SEEN);
    }

    /// The local server renumbers INBOX (new UIDVALIDITY, new UIDs), as after a restore that
    /// lost one message; one new message arrives.
    fn renumber_local_inbox(&self) {
        let mut s = self.local.lock().unwrap();
        let inbox = s.folder("INBOX");
        let old: Vec<_> = std::mem::take(&mut inbox.messages).into_values().collect();
        inbox.uid_validity += 1000;
        inbox.uid_next = 500;
        for m in old.into_iter().skip(1) {
            inbox.append(m.content, m.flags);
        }
        inbox.append(message(41), Flags::SEEN);
    }
}

fn assert_interrupt_at_every_effect(start: &World) -> usize {
    let reference = start.copy();
    assert!(!reference.sync(0, When::Before));
    let (want_remote, want_local) = (contents(&reference.remote), contents(&reference.local));
    assert_eq!(
        want_remote, want_local,
        "the reference run did not converge"
    );
    let mut runs = 0;
    for when in [When::Before, When::After] {
        for n in 1.. {
            let world = start.copy();
            let reached = world.sync(n, when);
            world.sync(n / 2 + 1, when);
            assert!(!world.sync(0, when));
            runs += 1;
            assert_eq!(
                contents(&world.remote),
                want_remote,
                "server differs after a fault at effect {n} ({when:?})"
            );
            assert_eq!(
                contents(&world.local),
                want_local,
                "local server differs after a fault at effect {n} ({when:?})"
            );
            assert!(!world.sync(0, when));
            assert_eq!(contents(&world.local), want_local);
            if !reached {
                break;
            }
        }
    }
    runs
}

#[test]
fn imap_to_imap_initial_sync_interrupted_at_every_effect_converges() {
    let world = World::new();
    let runs = assert_interrupt_at_every_effect(&world);
    assert!(runs > 10, "only {runs} runs");
}

#[test]
fn imap_to_imap_incremental_sync_interrupted_at_every_effect_converges() {
    let world = World::new();
    assert!(!world.sync(0, When::Before));
    world.change_both_sides();
    let runs = assert_interrupt_at_every_effect(&world);
    assert!(runs > 10, "only {runs} runs");
}

#[test]
fn a_copy_the_local_server_commits_after_the_next_run_listed_the_folder_is_not_made_twice() {
    // No real server can be made to commit an APPEND late on demand: the in-memory one can.
    let world = World::new();
    assert!(!world.sync(0, When::Before));
    world
        .remote
        .lock()
        .unwrap()
        .folder("INBOX")
        .append(message(50), Flags::SEEN);
    // The run is killed during its APPEND to the local server; the killed client's session
    // there commits it only a moment after the next run listed INBOX (at the third listing the
    // local server answers: Archive's, INBOX's, then one more).
    world.local.lock().unwrap().late_appends = true;
    assert!(!world.sync_succeeds());
    {
        let mut local = world.local.lock().unwrap();
        assert_eq!(local.uncommitted.len(), 1);
        local.late_appends = false;
        local.commit_after_listings = 3;
    }
    assert!(world.sync_succeeds());
    // Whatever is still uncommitted arrives now, as it would have by then.
    world.local.lock().unwrap().commit_late();
    assert!(!world.sync(0, When::Before));
    let (remote, local) = (contents(&world.remote), contents(&world.local));
    let copies = |side: &Contents| {
        side.values()
            .flatten()
            .filter(|(content, _)| *content == message(50))
            .count()
    };
    assert_eq!((copies(&remote), copies(&local)), (1, 1));
}

#[test]
fn copies_into_a_local_server_without_appenduid_are_found_again_not_duplicated() {
    let world = World::new();
    world.local.lock().unwrap().no_appenduid = true;
    assert!(!world.sync(0, When::Before));
    world.change_both_sides();
    let runs = assert_interrupt_at_every_effect(&world);
    assert!(runs > 10, "only {runs} runs");
}

#[test]
fn a_renumbered_local_folder_interrupted_at_every_effect_converges() {
    let world = World::new();
    assert!(!world.sync(0, When::Before));
    world.change_both_sides();
    assert!(!world.sync(0, When::Before));
    world.renumber_local_inbox();
    let runs = assert_interrupt_at_every_effect(&world);
    assert!(runs > 2, "only {runs} runs");
    // Nothing was duplicated by re-matching: the server gains the new message, the local
    // server gets back the one it lost, and nothing else is copied.
    let before = contents(&world.remote)["INBOX"].len();
    assert_eq!(contents(&world.local)["INBOX"].len(), before);
    let reference = world.copy();
    assert!(!reference.sync(0, When::Before));
    assert_eq!(contents(&reference.remote)["INBOX"].len(), before + 1);
    assert_eq!(contents(&reference.local)["INBOX"].len(), before + 1);
}

// ---- the two sides' passwords in the keyring ------------------------------------------------

#[test]
fn the_two_sides_keep_their_passwords_apart_in_the_keyring() {
    let env = TwoServers::new();
    env.a.append("INBOX", &corpus::message(26, 0), &[]);
    let keyring = support::keyring::SecretService::start();
    // Both sides take their password from the keyring (no password key at all).
    let text = std::fs::read_to_string(env.config_path()).expect("config");
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("password = "))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(env.config_path(), text).expect("config");
    let run = |args: &[&str], input: &str| {
        use std::io::Write as _;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_idlewild"));
        cmd.arg("--config").arg(env.config_path()).args(args);
        cmd.env("IDLEWILD_LOG", "trace")
            .env("XDG_RUNTIME_DIR", env.dir.path().join("no-runtime-dir"));
        for (key, value) in keyring.env() {
            cmd.env(key, value);
        }
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("run idlewild");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("stdin");
        let out = child.wait_with_output().expect("wait");
        let text = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
        for secret in [env.dovecot.password(), SECOND_PASSWORD] {
            assert!(
                !text.contains(secret),
                "a password is in the output:\n{text}"
            );
        }
        (out.status.code(), text)
    };

    let (code, text) = run(&["sync"], "");
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(
            "no password in the keyring for account move: run `idlewild password set move`"
        ),
        "{text}"
    );
    let (code, text) = run(
        &["password", "set", "move"],
        &format!("{}\n", env.dovecot.password()),
    );
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = run(&["sync"], "");
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("no password in the keyring for account move/local: run `idlewild password set move/local`"),
        "{text}"
    );
    let (code, text) = run(
        &["password", "set", "move/local"],
        &format!("{SECOND_PASSWORD}\n"),
    );
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("username move/local"), "{text}");
    assert_eq!(
        keyring.lookup("idlewild", "move").as_deref(),
        Some(env.dovecot.password())
    );
    assert_eq!(
        keyring.lookup("idlewild", "move/local").as_deref(),
        Some(SECOND_PASSWORD)
    );
    let (code, text) = run(&["password", "check", "move/local"], "");
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!("logged in to 127.0.0.1 as {SECOND}")),
        "{text}"
    );
    let (code, text) = run(&["sync"], "");
    assert_eq!(code, Some(0), "{text}");
    env.assert_in_step();
    // Deleting one side's password leaves the other's.
    let (code, text) = run(&["password", "delete", "move/local"], "");
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(keyring.lookup("idlewild", "move/local"), None);
    assert_eq!(
        keyring.lookup("idlewild", "move").as_deref(),
        Some(env.dovecot.password())
    );
}

// ---- the daemon with an IMAP local side -----------------------------------------------------

#[test]
fn the_daemon_syncs_two_servers_and_reports_their_status() {
    use common::daemon::{Daemon, eventually};
    let mut env = common::Env::new();
    env.dovecot
        .add_user(SECOND, SECOND_PASSWORD)
        .expect("second user");
    let local = ImapCtl::for_user(&env.dovecot, SECOND, SECOND_PASSWORD);
    for i in 0..3 {
        env.ctl.append("INBOX", &corpus::message(27, i), &[]);
    }
    let text = format!(
        "[general]\nstate_dir = \"{state}\"\n\n[accounts.test]\ninterval = 10\n\n[accounts.test.remote]\ntype = \"imap\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nuser = \"{user}\"\npassword = \"{password}\"\ntimeout = 20\n\n[accounts.test.local]\ntype = \"imap\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nuser = \"{SECOND}\"\npassword = \"{SECOND_PASSWORD}\"\ntimeout = 20\n",
        state = env.state_dir().display(),
        port = env.dovecot.port(),
        user = env.dovecot.user(),
        password = env.dovecot.password(),
    );
    std::fs::write(env.config_path(), text).expect("config");
    set_mode(&env.config_path(), 0o600);

    let bus = support::bus::PrivateBus::start();
    let mut daemon = Daemon::start_with(&env, None, &[("DBUS_SESSION_BUS_ADDRESS", &bus.address)]);
    daemon.expect_notify("READY=1", Duration::from_secs(20));
    let in_local = |n: usize| {
        let local = &local;
        move || local.dump("INBOX").len() == n
    };
    eventually(Duration::from_secs(15), "the first sync", in_local(3));
    // The remote server's IDLE wakes the daemon.
    env.ctl.append("INBOX", &corpus::message(27, 10), &[]);
    eventually(
        Duration::from_secs(10),
        "server mail on the local server",
        in_local(4),
    );
    // The local server is not watched; the interval sync brings its change over.
    local.append("INBOX", &corpus::message(27, 20), &["\\Seen"]);
    eventually(Duration::from_secs(30), "local mail on the server", || {
        env.ctl.dump("INBOX").len() == 5
    });
    let out = env
        .command(&["status", "--json"])
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .output()
        .expect("status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(status["accounts"][0]["name"], "test", "{status}");
    assert!(status["accounts"][0]["error"].is_null(), "{status}");

    daemon.signal("-TERM");
    daemon.expect_notify("STOPPING=1", Duration::from_secs(5));
    assert!(
        daemon.wait_exit(Duration::from_secs(25)).success(),
        "{}",
        daemon.log_tail()
    );
    assert!(
        !daemon.log_tail().contains("cannot watch"),
        "{}",
        daemon.log_tail()
    );
    assert_eq!(side_of(&env.ctl), side_of(&local));
}

// ---- kill -9 in the middle of real IMAP -> IMAP syncs ---------------------------------------

#[test]
fn kill_9_during_imap_to_imap_syncs_neither_loses_nor_duplicates() {
    let env = TwoServers::new();
    env.a.create("Archive");
    let mut ops = Vec::new();
    let mut want: Vec<String> = Vec::new();
    for i in 0..160 {
        let folder = if i % 4 == 0 { "Archive" } else { "INBOX" };
        ops.push(serde_json::json!({
            "op": "append", "folder": folder,
            "message": String::from_utf8_lossy(&corpus::message(28, i)),
            "flags": if i % 3 == 0 { vec!["\\Seen"] } else { vec![] },
        }));
        want.push(corpus::message_id(28, i));
    }
    env.a.run(serde_json::Value::Array(ops));
    let mut ops = Vec::new();
    for i in 500..540 {
        ops.push(serde_json::json!({
            "op": "append", "folder": "INBOX",
            "message": String::from_utf8_lossy(&corpus::message(28, i)),
        }));
        want.push(corpus::message_id(28, i));
    }
    env.b.run(serde_json::Value::Array(ops));
    want.sort();

    let mut killed = 0;
    for delay_ms in [40u64, 90, 150, 230, 320, 450, 600, 800, 1100, 1500] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_idlewild"))
            .arg("--config")
            .arg(env.config_path())
            .args(["-q", "sync"])
            .env("IDLEWILD_LOG", "error")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env("XDG_RUNTIME_DIR", env.dir.path().join("no-runtime-dir"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn idlewild");
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().expect("wait").is_none() {
            killed += 1;
        }
        // SIGKILL: no destructor, no flush, no lock release but the kernel's.
        let _ = child.kill();
        let _ = child.wait();
        // Between kills, new mail on both sides, so later runs are interrupted mid-copy too.
        env.a
            .append("INBOX", &corpus::message(28, 1000 + delay_ms as usize), &[]);
        want.push(corpus::message_id(28, 1000 + delay_ms as usize));
    }
    want.sort();
    assert!(killed >= 3, "only {killed} runs were interrupted");
    env.sync_ok();
    let both = env.assert_in_step();
    let mut have: Vec<String> = both
        .values()
        .flatten()
        .filter_map(|m| m.message_id.clone())
        .collect();
    have.sort();
    assert_eq!(have, want, "lost or duplicated messages");
    let out = env.sync_ok();
    assert!(out.contains("0 new here, 0 new on the server"), "{out}");
}

/// Keywords travel between two servers too, and a renamed one has its local name on the local
/// server: `$label1` there is `important` here.
#[test]
fn keywords_travel_between_two_servers_under_their_local_names() {
    let env = TwoServers::new();
    env.configure("[accounts.move.keyword_rename]\n\"$label1\" = \"important\"");
    env.a.append(
        "INBOX",
        &corpus::message(23, 0),
        &["\\Seen", "$label1", "$Junk"],
    );
    env.b
        .append("INBOX", &corpus::message(23, 1), &["important"]);
    env.sync_ok();
    let keywords = |ctl: &ImapCtl, i: usize| {
        let id = String::from_utf8_lossy(&corpus::message(23, i))
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: ").map(|v| v.trim().to_owned()))
            .expect("Message-ID");
        let mut flags: Vec<String> = ctl
            .dump("INBOX")
            .into_iter()
            .find(|m| m.message_id.as_deref() == Some(id.as_str()))
            .expect("the message is there")
            .flags
            .into_iter()
            .filter(|f| !f.starts_with('\\'))
            .collect();
        flags.sort();
        flags
    };
    assert_eq!(keywords(&env.b, 0), ["$Junk", "important"]);
    assert_eq!(keywords(&env.a, 1), ["$label1"]);
    // A change on the local server travels back under the server's name.
    let uid = env
        .b
        .dump("INBOX")
        .into_iter()
        .find(|m| m.flags.contains(&"$Junk".to_owned()))
        .expect("message 0")
        .uid;
    env.b.store("INBOX", uid, &["important"], "-");
    env.b.store("INBOX", uid, &["Work"], "+");
    env.sync_ok();
    assert_eq!(keywords(&env.a, 0), ["$Junk", "Work"]);
    let out = env.sync_ok();
    assert!(out.contains("0 flag changes"), "{out}");
}
