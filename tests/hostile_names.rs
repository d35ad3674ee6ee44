//! Server folder names that a Maildir cannot take as they are — the Maildir's own directories
//! (`Archive/tmp`, `INBOX/new`), other programs' (`.notmuch`), hostile spellings — against a real
//! private Dovecot. Whatever the name, nothing is written outside the store root, no store
//! internals are touched, the other folders still sync, and no server folder or message is ever
//! deleted by a sync in which the user deleted nothing.

mod common;
mod support;

use std::collections::BTreeSet;

use common::{Env, assert_no_folder_inside_maildir_dirs, stderr, tree};
use support::corpus;
use support::dovecot::DovecotOptions;

/// Server names tried, with the directory (below the Maildir root) each is expected in. Names
/// the server refuses to create are left out of the run (and listed in its output).
const NAMES: &[(&str, &str)] = &[
    ("Archive", "Archive"),
    ("Archive/tmp", "Archive/_tmp"),
    ("Archive/_tmp", "Archive/__tmp"),
    ("Archive/cur", "Archive/_cur"),
    ("INBOX/new", "INBOX/_new"),
    ("INBOX/new/new", "INBOX/_new/_new"),
    ("tmp", "tmp"),
    (".notmuch", "_.notmuch"),
    (".hidden/sub", "_.hidden/sub"),
    ("Lists/dovecot-uidlist", "Lists/_dovecot-uidlist"),
    ("Lists/dovecot", "Lists/dovecot"),
    ("..x", "_..x"),
    ("a/.. b", "a/_.. b"),
    ("back\\slash", "back\\slash"),
    ("say \"hi\"", "say \"hi\""),
    ("semi;colon `tick` $(x)", "semi;colon `tick` $(x)"),
    ("Caf\u{e9}", "Caf\u{e9}"),
    ("Cafe\u{301}", "Cafe\u{301}"),
    ("tab\there", "tab\there"),
    (LONG, LONG),
];

/// A name part of 200 bytes: long, and still a valid directory name.
const LONG: &str = "Lllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllg";

/// A Dovecot that keeps folders as directories of its own (`LAYOUT=fs`, with the messages one
/// level down so that `tmp` is a name like any other): it accepts names with dots, which the
/// default Maildir++ layout refuses.
fn fs_layout() -> Env {
    Env::with(DovecotOptions {
        extra_config: vec!["mail_location = maildir:~/Maildir:LAYOUT=fs:DIRNAME=mails".into()],
        ..DovecotOptions::default()
    })
}

#[test]
fn folders_named_like_maildir_internals_sync_both_ways_and_are_never_deleted() {
    let env = Env::new();
    let used = create_and_sync_twice(&env);
    assert!(
        used.len() >= 9,
        "the server took too few of the names: {used:?}"
    );

    // Both ways: a message delivered into an escaped directory goes up into its server folder,
    // and a flag set on the server comes down.
    env.deliver_locally(
        "Archive/_tmp",
        "local-1.host",
        &corpus::message(20, 900),
        Some("F"),
    );
    let uid = env
        .ctl
        .append("INBOX/new", &corpus::message(20, 901), &[])
        .expect("APPENDUID");
    env.sync_ok(&[]);
    let (remote, local) = (env.remote(), env.local());
    assert_eq!(remote["Archive/tmp"].len(), 4, "the local message went up");
    assert_eq!(local.get("Archive/_tmp"), remote.get("Archive/tmp"));
    assert_eq!(local.get("INBOX/_new"), remote.get("INBOX/new"));
    env.ctl.store("INBOX/new", uid, &["\\Flagged"], "+");
    env.sync_ok(&[]);
    assert_eq!(env.local().get("INBOX/_new"), env.remote().get("INBOX/new"));
    assert_eq!(env.local().get("INBOX"), env.remote().get("INBOX"));

    // A folder deleted on the server is removed here from its escaped directory, and the
    // parent's Maildir is left whole.
    env.ctl.delete_folder("Archive/cur");
    env.sync_ok(&[]);
    assert!(!env.maildir().join("Archive/_cur").exists());
    assert!(
        env.maildir().join("Archive/cur").is_dir(),
        "Archive's own cur/"
    );
    assert_eq!(env.local().get("Archive"), env.remote().get("Archive"));
}

#[test]
fn hidden_and_dotted_server_folders_are_stored_under_an_escape() {
    let env = fs_layout();
    let used = create_and_sync_twice(&env);
    for name in [".notmuch", ".hidden/sub", "..x"] {
        assert!(
            used.iter().any(|(n, _)| *n == name),
            "the LAYOUT=fs server refused {name}: {used:?}"
        );
    }
    // notmuch's own directory at the root is not a folder, and is left alone.
    let notmuch = env.maildir().join(".notmuch/xapian");
    std::fs::create_dir_all(&notmuch).expect("notmuch dir");
    std::fs::write(notmuch.join("flintlock"), "").expect("notmuch file");
    let uid = env
        .ctl
        .append(".notmuch", &corpus::message(21, 901), &[])
        .expect("APPENDUID");
    env.sync_ok(&[]);
    env.ctl.store(".notmuch", uid, &["\\Flagged"], "+");
    env.deliver_locally(
        "_.hidden/sub",
        "local-2.host",
        &corpus::message(21, 902),
        None,
    );
    env.sync_ok(&[]);
    let (remote, local) = (env.remote(), env.local());
    assert_eq!(local.get("_.notmuch"), remote.get(".notmuch"));
    assert_eq!(remote[".hidden/sub"].len(), 4, "the local message went up");
    assert_eq!(local.get("_.hidden/sub"), remote.get(".hidden/sub"));
    assert!(notmuch.join("flintlock").is_file());
}

/// Creates every name of [`NAMES`] the server accepts, with three messages each, syncs twice
/// with `remove = "both"`, and checks each sync; returns the names used with their directories.
fn create_and_sync_twice(env: &Env) -> Vec<(&'static str, &'static str)> {
    let mut used = Vec::new();
    for (i, (name, dir)) in NAMES.iter().enumerate() {
        let created = env
            .ctl
            .try_run(&serde_json::json!([{"op": "create", "folder": name}]));
        if let Err(e) = created {
            println!("the server refuses {name:?}: {e}");
            continue;
        }
        for n in 0..3 {
            env.ctl
                .append(name, &corpus::message(20, i * 10 + n), &["\\Seen"]);
        }
        used.push((*name, *dir));
    }
    env.ctl.append("INBOX", &corpus::message(20, 500), &[]);
    env.write_config_with("", "[accounts.test]\nremove = \"both\"\n");
    let server = env.remote();
    let outside = tree(env.dir.path());

    for run in 0..2 {
        let out = env.run(&["sync"]);
        assert!(
            out.status.success(),
            "sync {run} failed ({:?}):\n{}",
            out.status.code(),
            stderr(&out)
        );
        assert_eq!(env.remote(), server, "sync {run} changed the server");
        let local = env.local();
        for (name, dir) in &used {
            assert_eq!(
                local.get(*dir),
                server.get(*name),
                "sync {run}: server folder {name} is not in {dir}"
            );
        }
        assert_no_folder_inside_maildir_dirs(&env.maildir());
        let now: BTreeSet<String> = tree(env.dir.path())
            .into_iter()
            .filter(|p| !p.starts_with("Mail/") && !p.starts_with("state/"))
            .collect();
        let before: BTreeSet<String> = outside
            .iter()
            .filter(|p| !p.starts_with("Mail/") && !p.starts_with("state/"))
            .cloned()
            .chain(["Mail".into(), "state".into(), "Mail/test".into()])
            .collect();
        assert!(
            now.is_subset(&before),
            "sync {run} wrote outside the Maildir: {:?}",
            now.difference(&before).collect::<Vec<_>>()
        );
    }

    used
}

/// Names no Dovecot here accepts (control characters, a level longer than a directory name may
/// be, dot-dot tricks that a server's LIST could still send), synced from the in-memory
/// IMAP-like store into a real Maildir: a mock only because no real server creates these. The
/// Maildir side and the engine are the real ones.
#[test]
fn names_no_server_here_accepts_stay_inside_the_maildir_and_fail_alone() {
    use idlewild::config::{MaildirConfig, MaildirLayout};
    use idlewild::engine::{NoObserver, SyncOptions, sync_folders};
    use idlewild::model::Flags;
    use idlewild::state::StateDb;
    use idlewild::store::maildir::MaildirStore;
    use idlewild::store::memory::{MemoryServer, MemoryStore};
    use std::sync::{Arc, Mutex};

    let long = "x".repeat(300);
    let too_long = format!("Lists/{long}");
    // (server name, directory below the root, or "" when the Maildir cannot store it). Names
    // with `.`, `..` or empty levels never become folders: the IMAP side skips them
    // (`store::imap::names::tests::hostile_server_names_are_skipped_or_stay_one_level`).
    let names: Vec<(&str, &str)> = vec![
        ("INBOX", "INBOX"),
        ("ctl\u{1}name", "ctl\u{1}name"),
        ("new\nline", "new\nline"),
        ("X/tmp", "X/_tmp"),
        (&too_long, ""),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store/mail");
    let server = Arc::new(Mutex::new(MemoryServer::default()));
    {
        let mut s = server.lock().expect("server");
        for (i, (name, _)) in names.iter().enumerate() {
            s.folder(name).append(corpus::message(90, i), Flags::SEEN);
        }
    }
    // Every server folder's messages: UID, content, flags.
    type Contents = Vec<(String, Vec<(u32, Vec<u8>, u8)>)>;
    let contents = || -> Contents {
        server
            .lock()
            .expect("server")
            .folders
            .iter()
            .map(|(name, f)| {
                let messages = f
                    .messages
                    .iter()
                    .map(|(uid, m)| (*uid, m.content.clone(), m.flags.bits()))
                    .collect();
                (name.to_string(), messages)
            })
            .collect()
    };
    let before = contents();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    for run in 0..2 {
        let reports = rt.block_on(async {
            let mut remote = MemoryStore::new(server.clone());
            let mut local = MaildirStore::new(&MaildirConfig {
                keywords: Default::default(),
                path: root.clone(),
                layout: MaildirLayout::Nested,
            });
            let mut state = StateDb::open(&dir.path().join("state.sqlite")).expect("state");
            let options = SyncOptions {
                scratch_dir: dir.path().join("scratch"),
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
            .expect("the account is not stopped by a name")
        });
        for (name, place) in &names {
            let report = reports.iter().find(|r| r.remote_folder == *name);
            if place.is_empty() {
                let error = report.and_then(|r| r.error.as_deref()).unwrap_or("");
                assert!(
                    error.contains("cannot be stored here"),
                    "run {run}: {name:?} fails alone: {report:?}"
                );
                continue;
            }
            assert!(
                report.is_some_and(|r| r.error.is_none()),
                "run {run}: {name:?}: {report:?}"
            );
            let cur = root.join(place).join("cur");
            assert_eq!(
                std::fs::read_dir(&cur).map_or(0, |d| d.count()),
                1,
                "run {run}: {name:?} in {}",
                cur.display()
            );
        }
        assert_eq!(contents(), before, "run {run} changed the server");
        // Nothing outside the root: the store directory holds the root only.
        let beside: Vec<_> = std::fs::read_dir(dir.path().join("store"))
            .expect("store dir")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(beside, vec![std::ffi::OsString::from("mail")]);
    }
}
