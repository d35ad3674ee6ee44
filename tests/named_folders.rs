//! A sync of named folders — what the daemon runs when a push or inotify names one folder —
//! looks up just those folders on both sides when the last syncs paired them, instead of
//! listing every folder; anything the lookup cannot vouch for goes the full listing's way.
//!
//! The server is the in-memory store, which counts its folder listings and lookups (Dovecot
//! cannot be asked how often it was listed; `daemon.rs` checks the same on the wire); the
//! Maildir is real files.

mod support;

use std::sync::{Arc, Mutex};

use idlewild::config::{MaildirConfig, MaildirLayout};
use idlewild::engine::{FolderReport, NoObserver, SyncOptions, sync_folders};
use idlewild::model::{Flags, FolderName};
use idlewild::state::StateDb;
use idlewild::store::maildir::MaildirStore;
use idlewild::store::memory::{MemoryServer, MemoryStore};

fn message(n: usize) -> Vec<u8> {
    format!(
        "From: a{n}@example.org\nTo: b@example.org\nMessage-ID: <m{n}@example.org>\nSubject: message {n}\n\nbody {n}\n"
    )
    .into_bytes()
}

struct World {
    dir: tempfile::TempDir,
    server: Arc<Mutex<MemoryServer>>,
}

impl World {
    /// INBOX and twelve list folders, two messages each, synced once in full.
    fn synced() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("mail")).expect("mail dir");
        let server = Arc::new(Mutex::new(MemoryServer::default()));
        {
            let mut s = server.lock().unwrap();
            let mut n = 0;
            for name in
                std::iter::once("INBOX".to_owned()).chain((0..12).map(|i| format!("Lists/l{i}")))
            {
                let folder = s.folder(&name);
                for _ in 0..2 {
                    folder.append(message(n), Flags::SEEN);
                    n += 1;
                }
            }
        }
        let world = World { dir, server };
        let reports = world.sync(&[]);
        assert_eq!(reports.len(), 13, "{reports:?}");
        world
    }

    fn maildir(&self) -> MaildirConfig {
        MaildirConfig {
            keywords: Default::default(),
            path: self.dir.path().join("mail"),
            layout: MaildirLayout::Nested,
        }
    }

    fn sync(&self, folders: &[&str]) -> Vec<FolderReport> {
        let reports = self.run(folders);
        for r in &reports {
            assert!(r.error.is_none() && r.refused.is_none(), "{r:?}");
        }
        reports
    }

    /// One sync; its folders' refusals are the caller's to look at.
    fn run(&self, folders: &[&str]) -> Vec<FolderReport> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut remote = MemoryStore::new(self.server.clone());
            let mut local = MaildirStore::new(&self.maildir());
            let mut state = StateDb::open(&self.dir.path().join("state.sqlite")).expect("state");
            let options = SyncOptions {
                folders: folders
                    .iter()
                    .map(|f| FolderName::new(f).expect("name"))
                    .collect(),
                scratch_dir: self.dir.path().join("scratch"),
                ..SyncOptions::default()
            };
            sync_folders(
                &mut remote,
                &mut local,
                &mut state,
                &options,
                &mut NoObserver,
                None,
            )
            .await
            .expect("sync")
        })
    }

    /// Folder listings and one-folder lookups the server answered so far.
    fn asked(&self) -> (usize, usize) {
        let s = self.server.lock().unwrap();
        (s.folder_listings, s.looked_up)
    }

    fn local_messages(&self, folder: &str) -> usize {
        let dir = folder
            .split('/')
            .fold(self.dir.path().join("mail"), |p, part| p.join(part));
        ["new", "cur"]
            .iter()
            .map(|sub| std::fs::read_dir(dir.join(sub)).map_or(0, |d| d.count()))
            .sum()
    }

    fn server_messages(&self, folder: &str) -> usize {
        let name = FolderName::new(folder).expect("name");
        self.server
            .lock()
            .unwrap()
            .folders
            .get(&name)
            .map_or(0, |f| f.messages.len())
    }
}

#[test]
fn a_known_folder_is_synced_both_ways_without_listing_every_folder() {
    let world = World::synced();
    let (listings, lookups) = world.asked();
    world
        .server
        .lock()
        .unwrap()
        .folder("Lists/l7")
        .append(message(100), Flags::empty());
    let new = world
        .dir
        .path()
        .join("mail/Lists/l7/new/1700000000.local.host");
    std::fs::write(&new, message(101)).expect("deliver locally");

    let reports = world.sync(&["Lists/l7"]);

    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!((reports[0].downloaded, reports[0].uploaded), (1, 1));
    assert_eq!(world.local_messages("Lists/l7"), 4);
    assert_eq!(world.server_messages("Lists/l7"), 4);
    assert_eq!(
        world.asked(),
        (listings, lookups + 1),
        "the server's folders were listed for a sync of one known folder"
    );
    // The next full sync finds every folder in step.
    let reports = world.sync(&[]);
    assert!(
        reports.iter().all(|r| r.downloaded + r.uploaded == 0),
        "{reports:?}"
    );
}

#[test]
fn a_named_folder_gone_from_the_server_is_decided_by_the_full_listing() {
    let world = World::synced();
    let (listings, _) = world.asked();
    // Deleted on the server by another client: the full sync's rules decide (here: a folder
    // that still holds mail is kept and the deletion refused); a lookup alone must not take it
    // for a folder to sync, which would upload its messages into a new server folder.
    world
        .server
        .lock()
        .unwrap()
        .folders
        .remove(&FolderName::new("Lists/l3").expect("name"));

    let reports = world.run(&["Lists/l3"]);

    assert_eq!(
        world.asked().0,
        listings + 1,
        "the full listing was not asked"
    );
    let refused = reports[0].refused.as_deref().unwrap_or_default();
    assert!(
        refused.contains("deleted on the server side"),
        "{reports:?}"
    );
    assert_eq!(world.local_messages("Lists/l3"), 2);
    assert_eq!(world.server_messages("Lists/l3"), 0);
}

#[test]
fn a_named_folder_gone_from_the_maildir_is_decided_by_the_full_listing() {
    let world = World::synced();
    let (listings, _) = world.asked();
    std::fs::remove_dir_all(world.dir.path().join("mail/Lists/l4")).expect("remove folder");

    let reports = world.run(&["Lists/l4"]);

    assert_eq!(
        world.asked().0,
        listings + 1,
        "the full listing was not asked"
    );
    let refused = reports[0].refused.as_deref().unwrap_or_default();
    assert!(refused.contains("deleted on the local side"), "{reports:?}");
    assert_eq!(world.server_messages("Lists/l4"), 2);
    assert!(!world.dir.path().join("mail/Lists/l4").exists());
}

#[test]
fn a_folder_new_to_the_state_is_decided_by_the_full_listing() {
    let world = World::synced();
    let (listings, _) = world.asked();
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(world.dir.path().join("mail/Projects").join(sub)).expect("mkdir");
    }
    std::fs::write(
        world
            .dir
            .path()
            .join("mail/Projects/new/1700000001.local.host"),
        message(200),
    )
    .expect("deliver");

    let reports = world.sync(&["Projects"]);

    assert_eq!(
        world.asked().0,
        listings + 1,
        "the full listing was not asked"
    );
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(world.server_messages("Projects"), 1);
    // Known now: the next named sync looks it up alone.
    let (listings, lookups) = world.asked();
    world.sync(&["Projects"]);
    assert_eq!(world.asked(), (listings, lookups + 1));
}

#[test]
fn several_named_folders_are_looked_up_and_a_name_the_state_lacks_lists_them_all() {
    let world = World::synced();
    let (listings, lookups) = world.asked();
    world.sync(&["INBOX", "Lists/l1", "Lists/l2"]);
    assert_eq!(world.asked(), (listings, lookups + 3));

    // One name nothing answers to: the whole request goes the full listing's way.
    world.sync(&["Lists/l1", "Nowhere"]);
    assert_eq!(world.asked().0, listings + 1);

    // Many named folders (a watch that starts names them all): one listing answers for all
    // of them, where a lookup each would be a round trip each.
    let (listings, lookups) = world.asked();
    let all: Vec<String> = (0..12).map(|i| format!("Lists/l{i}")).collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    world.sync(&all);
    assert_eq!(world.asked(), (listings + 1, lookups));
}
