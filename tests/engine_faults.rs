//! The engine interrupted at every effect: for each N, a run whose N-th effect fails (before or
//! after it takes place, as a crash would leave it), then a clean run, must end in exactly the
//! state an uninterrupted run reaches — no message lost, none duplicated.
//!
//! The server side is the in-memory IMAP-like store, because no real server can be made to fail
//! at an exact effect; the Maildir side is real files. The real-server version of this test is
//! `kill9.rs`, which kills the real binary syncing against a real Dovecot.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use idlewild::config::{MaildirConfig, MaildirLayout, MassDeleteGuard};
use idlewild::engine::SyncOptions;
use idlewild::model::{Flags, FolderName};
use idlewild::plan::{FolderPolicy, Sides};
use idlewild::store::maildir::MaildirStore;
use idlewild::store::memory::{MemoryServer, MemoryStore};
use support::faulty::{Outcome, When, ended_clean, fault_reached, sync_with_fault};

fn message(n: usize) -> Vec<u8> {
    format!(
        "From: a{n}@example.org\nTo: b@example.org\nMessage-ID: <m{n}@example.org>\nSubject: message {n}\n\nbody {n}\n{}\n",
        "x".repeat(n * 7)
    )
    .into_bytes()
}

struct World {
    dir: tempfile::TempDir,
    server: Arc<Mutex<MemoryServer>>,
    policy: FolderPolicy,
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("mail")).expect("mail dir");
        let server = Arc::new(Mutex::new(MemoryServer::default()));
        {
            let mut s = server.lock().unwrap();
            let inbox = s.folder("INBOX");
            for n in 0..6 {
                let flags = if n % 2 == 0 {
                    Flags::SEEN
                } else {
                    Flags::empty()
                };
                inbox.append(message(n), flags);
            }
            let archive = s.folder("Archive/2019");
            for n in 6..9 {
                archive.append(message(n), Flags::SEEN.union(&Flags::FLAGGED));
            }
        }
        World {
            dir,
            server,
            policy: FolderPolicy::default(),
        }
    }

    fn maildir(&self) -> MaildirConfig {
        MaildirConfig {
            keywords: Default::default(),
            path: self.dir.path().join("mail"),
            layout: MaildirLayout::Nested,
        }
    }

    fn copy(&self) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_tree(self.dir.path(), dir.path());
        let src = self.server.lock().unwrap();
        let server = MemoryServer {
            folders: src.folders.clone(),
            no_appenduid: src.no_appenduid,
            ..MemoryServer::default()
        };
        World {
            dir,
            server: Arc::new(Mutex::new(server)),
            policy: self.policy,
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
            guard: MassDeleteGuard::default(),
            scratch_dir: self.dir.path().join("scratch"),
            folder_policy: self.policy,
            ..SyncOptions::default()
        };
        sync_with_fault(
            MemoryStore::new(self.server.clone()),
            MaildirStore::new(&self.maildir()),
            &self.dir.path().join("state.sqlite"),
            &options,
            fail_at,
            when,
        )
    }

    /// Changes on both sides after a first sync.
    fn change_both_sides(&self) {
        {
            let mut s = self.server.lock().unwrap();
            let inbox = s.folder("INBOX");
            inbox.append(message(20), Flags::empty());
            inbox.append(message(21), Flags::FLAGGED);
            if let Some(m) = inbox.messages.get_mut(&2) {
                m.flags = Flags::SEEN.union(&Flags::ANSWERED);
            }
            inbox.messages.remove(&3);
            s.folder("Server-new").append(message(22), Flags::SEEN);
        }
        let inbox = self.dir.path().join("mail/INBOX");
        write_local(&inbox.join("new/local-30"), &message(30));
        write_local(&inbox.join("cur/local-31:2,S"), &message(31));
        // The mail client flags one message and deletes another.
        let mut files: Vec<_> = std::fs::read_dir(inbox.join("cur"))
            .unwrap()
            .chain(std::fs::read_dir(inbox.join("new")).unwrap())
            .map(|e| e.unwrap().path())
            .filter(|p| {
                !p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("local-")
            })
            .collect();
        files.sort();
        let first = files[0].clone();
        let name = first.file_name().unwrap().to_string_lossy().into_owned();
        let unique = name.split(':').next().unwrap();
        std::fs::rename(&first, inbox.join("cur").join(format!("{unique}:2,FS"))).unwrap();
        std::fs::remove_file(&files[1]).unwrap();
        let local_new = self.dir.path().join("mail/Local-new");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(local_new.join(sub)).unwrap();
        }
        write_local(&local_new.join("new/local-32"), &message(32));
    }

    /// The server renumbers INBOX (a new UIDVALIDITY, new UIDs), as after a restore; one message
    /// is lost on the server in the process and one arrives.
    fn renumber_inbox(&self) {
        let mut s = self.server.lock().unwrap();
        let inbox = s.folder("INBOX");
        let old: Vec<_> = std::mem::take(&mut inbox.messages).into_values().collect();
        inbox.uid_validity += 1000;
        inbox.uid_next = 50;
        for m in old.into_iter().skip(1) {
            inbox.append(m.content, m.flags);
        }
        inbox.append(message(40), Flags::SEEN);
    }

    /// Both sides as content -> flags multisets, per folder.
    fn contents(&self) -> (Contents, Contents) {
        let mut remote = Contents::new();
        for (name, f) in &self.server.lock().unwrap().folders {
            let entry = remote.entry(name.to_string()).or_default();
            for m in f.messages.values() {
                entry.push((m.content.clone(), m.flags.bits()));
            }
            entry.sort();
        }
        let mut local = Contents::new();
        let root = self.dir.path().join("mail");
        collect_maildirs(&root, &root, &mut local);
        (remote, local)
    }
}

type Contents = BTreeMap<String, Vec<(Vec<u8>, u8)>>;

fn collect_maildirs(root: &Path, dir: &Path, out: &mut Contents) {
    if dir.join("cur").is_dir() {
        let name = dir
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let entry = out.entry(name).or_default();
        for sub in ["cur", "new"] {
            for e in std::fs::read_dir(dir.join(sub)).unwrap() {
                let p = e.unwrap().path();
                let file = p.file_name().unwrap().to_string_lossy().into_owned();
                let info = file.split_once(":2,").map(|(_, i)| i).unwrap_or("");
                entry.push((
                    std::fs::read(&p).unwrap(),
                    Flags::from_maildir_info(info).bits(),
                ));
            }
        }
        entry.sort();
    }
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let n = p.file_name().unwrap().to_string_lossy().into_owned();
        if p.is_dir() && !["cur", "new", "tmp"].contains(&n.as_str()) {
            collect_maildirs(root, &p, out);
        }
    }
}

fn write_local(path: &Path, content: &[u8]) {
    std::fs::write(path, content).unwrap();
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn assert_interrupt_at_every_effect(start: &World) -> usize {
    let reference = start.copy();
    assert!(!reference.sync(0, When::Before));
    let (want_remote, want_local) = reference.contents();
    assert_eq!(
        want_remote.values().map(Vec::len).sum::<usize>(),
        want_local.values().map(Vec::len).sum::<usize>()
    );
    let mut runs = 0;
    for when in [When::Before, When::After] {
        for n in 1.. {
            let world = start.copy();
            let reached = world.sync(n, when);
            // A second interrupted run on top of the first, then a clean one.
            world.sync(n / 2 + 1, when);
            assert!(!world.sync(0, when));
            runs += 1;
            let (remote, local) = world.contents();
            assert_eq!(
                remote, want_remote,
                "server differs after a fault at effect {n} ({when:?})"
            );
            assert_eq!(
                local, want_local,
                "Maildir differs after a fault at effect {n} ({when:?})"
            );
            // And a further run has nothing left to do.
            assert!(!world.sync(0, when));
            assert_eq!(world.contents(), (want_remote.clone(), want_local.clone()));
            if !reached {
                break;
            }
        }
    }
    runs
}

#[test]
fn initial_sync_interrupted_at_every_effect_converges() {
    let world = World::new();
    let runs = assert_interrupt_at_every_effect(&world);
    assert!(
        runs > 10,
        "only {runs} runs: the scenario has too few effects"
    );
}

#[test]
fn incremental_sync_interrupted_at_every_effect_converges() {
    let world = World::new();
    assert!(!world.sync(0, When::Before));
    world.change_both_sides();
    let runs = assert_interrupt_at_every_effect(&world);
    assert!(runs > 10, "only {runs} runs");
}

#[test]
fn uploads_without_appenduid_are_found_again_not_duplicated() {
    let world = World::new();
    world.server.lock().unwrap().no_appenduid = true;
    assert!(!world.sync(0, When::Before));
    world.change_both_sides();
    let runs = assert_interrupt_at_every_effect(&world);
    assert!(runs > 10);
}

#[test]
fn an_upload_the_server_commits_after_the_next_run_listed_the_folder_is_not_made_twice() {
    // No real server can be made to commit an APPEND late on demand: the in-memory one can.
    let world = World::new();
    assert!(!world.sync(0, When::Before));
    let inbox = world.dir.path().join("mail/INBOX");
    write_local(&inbox.join("new/local-50"), &message(50));
    // The run is killed during its APPEND; the killed client's server session commits it only
    // a moment after the next run listed INBOX (at the third listing the server answers).
    world.server.lock().unwrap().late_appends = true;
    assert!(!world.sync_succeeds());
    {
        let mut server = world.server.lock().unwrap();
        assert_eq!(server.uncommitted.len(), 1);
        server.late_appends = false;
        server.commit_after_listings = 3;
    }
    assert!(world.sync_succeeds());
    // Whatever is still uncommitted arrives now, as it would have by then.
    world.server.lock().unwrap().commit_late();
    assert!(!world.sync(0, When::Before));
    let (remote, local) = world.contents();
    assert_eq!(remote, local);
    let copies = |side: &Contents| {
        side.values()
            .flatten()
            .filter(|(content, _)| *content == message(50))
            .count()
    };
    assert_eq!((copies(&remote), copies(&local)), (1, 1));
}

#[test]
fn a_renumbered_server_folder_interrupted_at_every_effect_converges() {
    let world = World::new();
    assert!(!world.sync(0, When::Before));
    world.renumber_inbox();
    let runs = assert_interrupt_at_every_effect(&world);
    assert!(runs > 2, "only {runs} runs");
    // Nothing was deleted: the message the server lost is uploaded again from the Maildir.
    let done = world.copy();
    assert!(!done.sync(0, When::Before));
    let (remote, _) = done.contents();
    assert_eq!(remote["INBOX"].len(), 7);
}

#[test]
fn folder_removals_interrupted_at_every_effect_converge() {
    let mut world = World::new();
    world.policy = FolderPolicy {
        create: Sides::Both,
        remove: Sides::Both,
    };
    world
        .server
        .lock()
        .unwrap()
        .folder("Lists/old")
        .append(message(50), Flags::SEEN);
    assert!(!world.sync(0, When::Before));
    // The user deletes a folder with its mail on each side.
    std::fs::remove_dir_all(world.dir.path().join("mail/Archive/2019")).unwrap();
    world
        .server
        .lock()
        .unwrap()
        .folders
        .remove(&FolderName::new("Lists/old").unwrap());
    let runs = assert_interrupt_at_every_effect(&world);
    assert!(runs > 4, "only {runs} runs");
    let done = world.copy();
    assert!(!done.sync(0, When::Before));
    let (remote, local) = done.contents();
    assert_eq!(remote.keys().collect::<Vec<_>>(), vec!["INBOX"]);
    assert_eq!(local.keys().collect::<Vec<_>>(), vec!["INBOX"]);
}
