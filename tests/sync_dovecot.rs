//! The one-shot sync against a real, private Dovecot: the server is changed and read through an
//! independent client (`imapctl.py`), the Maildir through the files.

mod common;
mod support;

use common::{Env, set_local_flags, stderr, stdout};
use idlewild::model::Flags;
use support::corpus;

const FOLDERS: [&str; 4] = ["INBOX", "Archive/2019", "Entwürfe", "Lists/rust"];

/// Fills the server with `n` varied messages spread over FOLDERS, flags varied.
fn fill(env: &Env, seed: u64, n: usize) {
    for f in &FOLDERS[1..] {
        env.ctl.create(f);
    }
    let mut ops = Vec::new();
    for i in 0..n {
        let flags: Vec<&str> = match i % 5 {
            0 => vec![],
            1 => vec!["\\Seen"],
            2 => vec!["\\Seen", "\\Flagged"],
            3 => vec!["\\Answered", "\\Seen"],
            _ => vec!["\\Draft"],
        };
        ops.push(serde_json::json!({
            "op": "append",
            "folder": FOLDERS[i % FOLDERS.len()],
            "message": String::from_utf8_lossy(&corpus::message(seed, i)),
            "flags": flags,
        }));
    }
    env.ctl.run(serde_json::Value::Array(ops));
}

#[test]
fn initial_sync_copies_everything_then_a_resync_has_nothing_to_do() {
    let env = Env::new();
    fill(&env, 1, 300);
    let big = corpus::big_message(2, 5 * 1024 * 1024);
    env.ctl.append("Archive/2019", &big, &["\\Seen"]);

    env.sync_ok(&[]);
    let (remote, local) = env.assert_in_step();
    assert_eq!(env.count(&remote), 301);
    assert_eq!(env.count(&local), 301);
    assert!(
        local.contains_key("Entwürfe"),
        "non-ASCII folder name kept as UTF-8: {:?}",
        local.keys()
    );
    // The 5 MB message arrived byte for byte (in LF form).
    let big_lf = String::from_utf8_lossy(&big).replace("\r\n", "\n");
    let found = env.local_files("Archive/2019").into_iter().any(|p| {
        std::fs::read(&p)
            .map(|c| c == big_lf.as_bytes())
            .unwrap_or(false)
    });
    assert!(found, "the 5 MB message is not in the Maildir intact");

    let out = env.sync_ok(&[]);
    assert!(
        stdout(&out).contains("0 new here, 0 new on the server, 0 flag changes, 0 deleted here, 0 deleted on the server"),
        "{}",
        stdout(&out)
    );
    env.assert_in_step();
}

#[test]
fn changes_on_both_sides_travel_both_ways() {
    let env = Env::new();
    fill(&env, 3, 40);
    env.sync_ok(&[]);

    // Server side: new mail, a flag change, an expunge, a new folder.
    env.ctl.append("INBOX", &corpus::message(3, 1000), &[]);
    let inbox = env.ctl.dump("INBOX");
    env.ctl.store("INBOX", inbox[0].uid, &["\\Flagged"], "+");
    env.ctl.expunge("INBOX", &[inbox[1].uid]);
    env.ctl.create("Server-made");
    env.ctl
        .append("Server-made", &corpus::message(3, 1001), &["\\Seen"]);

    // Local side: new mail, a flag change by rename, a deletion, a new folder.
    env.deliver_locally("INBOX", "local-1.host", &corpus::message(3, 2000), None);
    let files = env.local_files("Lists/rust");
    set_local_flags(&files[0], "RS");
    std::fs::remove_file(&files[1]).expect("delete a local message");
    env.deliver_locally(
        "Local-made",
        "local-2.host",
        &corpus::message(3, 2001),
        Some("S"),
    );

    let before_remote = env.count(&env.remote());
    env.sync_ok(&[]);
    let (remote, _) = env.assert_in_step();
    // +1 server new already counted, +1 local new, +1 local-made, -1 local deletion.
    assert_eq!(env.count(&remote), before_remote + 1 + 1 - 1);
    assert!(remote.contains_key("Local-made"));
    assert!(env.local().contains_key("Server-made"));
    let expunged = inbox[1].message_id.clone();
    assert!(
        !env.local()["INBOX"]
            .iter()
            .any(|m| m.message_id == expunged)
    );
    assert!(
        env.remote()["INBOX"]
            .iter()
            .any(|m| m.flags & Flags::FLAGGED.bits() != 0)
    );

    // A third run has nothing to do.
    let out = env.sync_ok(&[]);
    assert!(
        stdout(&out).contains(" 0 new here, 0 new on the server, 0 flag changes"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_mail_client_renaming_files_between_runs_changes_flags_not_messages() {
    let env = Env::new();
    fill(&env, 4, 20);
    env.sync_ok(&[]);
    // The client reads every INBOX message (new/ -> cur/ with S) and flags one.
    for (i, f) in env.local_files("INBOX").into_iter().enumerate() {
        let info = if i == 0 { "FS" } else { "S" };
        set_local_flags(&f, info);
    }
    env.sync_ok(&[]);
    let (remote, _) = env.assert_in_step();
    let inbox = &remote["INBOX"];
    assert_eq!(inbox.len(), 5);
    assert!(inbox.iter().all(|m| m.flags & Flags::SEEN.bits() != 0));
}

#[test]
fn a_uidvalidity_reset_neither_loses_nor_duplicates() {
    let env = Env::new();
    fill(&env, 5, 60);
    env.sync_ok(&[]);
    let before = env.assert_in_step();
    env.dovecot
        .reset_uid_validity("INBOX")
        .expect("reset UIDVALIDITY");
    // Meanwhile, one new message on each side.
    env.ctl.append("INBOX", &corpus::message(5, 500), &[]);
    env.deliver_locally("INBOX", "after-reset.host", &corpus::message(5, 501), None);
    let out = env.sync_ok(&[]);
    assert!(
        stderr(&out).contains("UIDVALIDITY"),
        "the renumbering is reported:\n{}",
        stderr(&out)
    );
    let after = env.assert_in_step();
    assert_eq!(env.count(&after.0), env.count(&before.0) + 2);
}

#[test]
fn a_server_that_lost_its_index_and_renumbered_everything_neither_loses_nor_duplicates() {
    let mut env = Env::new();
    fill(&env, 12, 60);
    env.sync_ok(&[]);
    let before = env.assert_in_step();
    // Dovecot rebuilds the folder: new UIDVALIDITY, UIDs 1..n in a new order.
    env.dovecot.renumber_uids("INBOX").expect("renumber");
    env.sync_ok(&[]);
    let after = env.assert_in_step();
    assert_eq!(after, before);
}

#[test]
fn an_emptied_maildir_folder_does_not_empty_the_server() {
    let env = Env::new();
    fill(&env, 6, 80);
    env.sync_ok(&[]);
    let before = env.remote();
    for f in env.local_files("INBOX") {
        std::fs::remove_file(f).expect("empty the local INBOX");
    }
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("refused"), "{}", stderr(&out));
    assert_eq!(env.remote(), before, "the server changed");
    assert!(
        env.local_files("INBOX").is_empty(),
        "the refused folder was touched locally"
    );

    // The explicit override lets the real deletion through, for that folder.
    env.sync_ok(&["--allow-mass-delete", "--folder", "INBOX"]);
    assert!(env.remote()["INBOX"].is_empty());
}

#[test]
fn a_missing_maildir_or_folder_directory_deletes_nothing() {
    let env = Env::new();
    fill(&env, 7, 30);
    env.sync_ok(&[]);
    let before = env.remote();

    // A whole Maildir folder gone (a wrong path, a half-restored backup).
    std::fs::remove_dir_all(env.maildir().join("Lists/rust")).expect("remove folder");
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(env.remote(), before);

    // The whole Maildir gone (an unmounted disk).
    let moved = env.dir.path().join("unmounted");
    std::fs::rename(env.maildir(), &moved).expect("move Maildir away");
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    assert_eq!(env.remote(), before);
    assert!(!env.maildir().exists(), "the Maildir root was re-created");
}

#[test]
fn dry_run_changes_nothing() {
    let env = Env::new();
    fill(&env, 8, 12);
    let out = env.sync_ok(&["--dry-run"]);
    assert!(stdout(&out).contains("would copy"), "{}", stdout(&out));
    assert!(!env.maildir().exists());
    assert!(!env.state_dir().join("test.sqlite").exists() || env.local().is_empty());
}

#[test]
fn json_output_has_per_folder_counts() {
    let env = Env::new();
    fill(&env, 9, 8);
    let out = env.sync_ok(&["--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let folders = doc[0]["folders"].as_array().expect("folders");
    let total: u64 = folders
        .iter()
        .map(|f| f["downloaded"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(total, 8);
}

#[test]
fn a_second_run_on_a_locked_account_is_refused() {
    let env = Env::new();
    fill(&env, 10, 3);
    std::fs::create_dir_all(env.state_dir()).expect("state dir");
    let lock = std::fs::File::create(env.state_dir().join("test.lock")).expect("lock file");
    lock.try_lock().expect("take the lock");
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("another idlewild"),
        "{}",
        stderr(&out)
    );
    drop(lock);
    env.sync_ok(&[]);
}

#[test]
fn a_mail_client_busy_during_the_sync_loses_nothing() {
    let env = Env::new();
    fill(&env, 11, 200);
    env.sync_ok(&[]);
    // Add work for the next sync on both sides.
    for i in 0..40 {
        env.ctl
            .append("INBOX", &corpus::message(11, 900 + i), &["\\Seen"]);
        env.deliver_locally(
            "Lists/rust",
            &format!("busy-{i}.host"),
            &corpus::message(11, 1900 + i),
            None,
        );
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let maildir = env.maildir();
    let stopper = stop.clone();
    // The "mail client": keeps toggling \Seen and \Flagged on local files while idlewild works.
    let client = std::thread::spawn(move || {
        let mut renames = 0;
        let mut round = 0usize;
        while !stopper.load(std::sync::atomic::Ordering::SeqCst) {
            for folder in ["INBOX", "Archive/2019", "Lists/rust"] {
                for sub in ["cur", "new"] {
                    let Ok(entries) = std::fs::read_dir(maildir.join(folder).join(sub)) else {
                        continue;
                    };
                    for e in entries.flatten().step_by(3) {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let unique = name.split(':').next().unwrap_or("").to_owned();
                        let info = if round.is_multiple_of(2) { "FS" } else { "S" };
                        let target = maildir
                            .join(folder)
                            .join("cur")
                            .join(format!("{unique}:2,{info}"));
                        if std::fs::rename(e.path(), target).is_ok() {
                            renames += 1;
                        }
                    }
                }
            }
            round += 1;
        }
        renames
    });
    let out = env.run(&["sync"]);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let renames = client.join().expect("client thread");
    assert!(renames > 0);
    assert!(out.status.code() == Some(0), "{}", stderr(&out));
    // Once the client stops, a clean run brings everything in step.
    env.sync_ok(&[]);
    let (remote, local) = env.assert_in_step();
    assert_eq!(env.count(&remote), 280);
    assert_eq!(env.count(&local), 280);
}

#[test]
fn the_maildir_plus_plus_layout_round_trips() {
    let env = Env::new();
    fill(&env, 13, 16);
    let text = std::fs::read_to_string(env.config_path()).expect("config");
    std::fs::write(env.config_path(), format!("{text}layout = \"maildir++\"\n")).expect("config");
    env.sync_ok(&[]);
    let root = env.maildir();
    assert!(root.join("cur").is_dir(), "INBOX is the root in Maildir++");
    assert!(root.join(".Archive.2019/cur").is_dir());
    assert!(root.join(".Lists.rust/cur").is_dir());
    assert!(root.join(".Entwürfe/cur").is_dir());
    // A folder made locally in Maildir++ style reaches the server with its hierarchy.
    let dir = root.join(".Notes.2026");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
    }
    std::fs::write(dir.join("new/note-1.host"), corpus::message(13, 99)).expect("write");
    env.sync_ok(&[]);
    assert_eq!(env.ctl.dump("Notes/2026").len(), 1);
    assert_eq!(env.count(&env.remote()), 17);
    // And a second run has nothing to do.
    let out = env.sync_ok(&[]);
    assert!(
        stdout(&out).contains(" 0 new here, 0 new on the server, 0 flag changes"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn hooks_run_around_a_sync_with_the_documented_environment() {
    let env = Env::new();
    fill(&env, 14, 8);
    let out_dir = env.dir.path().join("hooks");
    std::fs::create_dir_all(&out_dir).expect("dir");
    let text = std::fs::read_to_string(env.config_path()).expect("config");
    let hook = |name: &str| {
        format!(
            "[\"sh\", \"-c\", \"echo $IDLEWILD_EVENT $IDLEWILD_ACCOUNT $IDLEWILD_FOLDER $IDLEWILD_NEW_MESSAGES >> {}/{name}\"]",
            out_dir.display()
        )
    };
    std::fs::write(
        env.config_path(),
        format!(
            "{text}\n[accounts.test.hooks]\npresync = {}\npostsync = {}\nnew_mail = {}\n",
            hook("pre"),
            hook("post"),
            hook("new")
        ),
    )
    .expect("config");
    env.sync_ok(&[]);
    let read = |name: &str| std::fs::read_to_string(out_dir.join(name)).unwrap_or_default();
    assert_eq!(read("pre"), "presync test 0\n");
    assert_eq!(read("post"), "postsync test 8\n");
    let mut new: Vec<String> = read("new").lines().map(str::to_owned).collect();
    new.sort();
    assert_eq!(
        new,
        vec![
            "new_mail test Archive/2019 2",
            "new_mail test Entwürfe 2",
            "new_mail test INBOX 2",
            "new_mail test Lists/rust 2"
        ]
    );
    // A failing hook is logged, never fatal.
    let text = std::fs::read_to_string(env.config_path()).expect("config");
    std::fs::write(
        env.config_path(),
        text.replace("presync = [\"sh\"", "presync = [\"false\", \"sh\""),
    )
    .expect("config");
    env.sync_ok(&[]);
}
