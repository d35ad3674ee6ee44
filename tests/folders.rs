//! Folder selection, renaming, creation and removal, `idlewild folders` and the mailbox list,
//! against a real private Dovecot: the server is changed and read through `imapctl.py`, the
//! Maildir through the files.

mod common;
mod support;

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::daemon::{Daemon, eventually};
use common::{Env, Side, stderr, stdout};
use support::corpus;

/// The selectable server folders.
fn server_folders(env: &Env) -> BTreeSet<String> {
    env.remote().into_keys().collect()
}

fn local_folders(env: &Env) -> BTreeSet<String> {
    env.local().into_keys().collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Fills `folders` on the server with `per` messages each.
fn fill(env: &Env, seed: u64, folders: &[&str], per: usize) {
    let mut ops = Vec::new();
    for (f, folder) in folders.iter().enumerate() {
        if *folder != "INBOX" {
            env.ctl.create(folder);
        }
        for i in 0..per {
            ops.push(serde_json::json!({
                "op": "append",
                "folder": folder,
                "message": String::from_utf8_lossy(&corpus::message(seed, f * 100 + i)),
                "flags": if i % 2 == 0 { vec!["\\Seen"] } else { vec![] },
            }));
        }
    }
    if !ops.is_empty() {
        env.ctl.run(serde_json::Value::Array(ops));
    }
}

fn count(side: &Side, folder: &str) -> usize {
    side.get(folder).map_or(0, Vec::len)
}

#[test]
fn include_and_exclude_pick_folders_and_leave_the_others_untouched_on_both_sides() {
    let env = Env::new();
    fill(
        &env,
        1,
        &[
            "INBOX",
            "Archive/2019",
            "Entwürfe",
            "Lists/rust",
            "Lists/rust/announce",
            "Lists/go",
            "Trash",
        ],
        3,
    );
    // Local-only folders: one excluded, one included.
    env.deliver_locally("Spam", "spam-1.host", &corpus::message(1, 900), None);
    env.deliver_locally(
        "Notizen",
        "note-1.host",
        &corpus::message(1, 901),
        Some("S"),
    );
    env.write_config_with(
        "",
        "[accounts.test.folders]\ninclude = [\"INBOX\", \"Lists/%\", \"Entwürfe\", \"Notizen\", \"Archive/*\"]\nexclude = [\"Lists/go\", \"regex:Spam|Trash\"]\n",
    );
    let server_before = env.remote();
    env.sync_ok(&[]);

    let (remote, local) = (env.remote(), env.local());
    assert_eq!(
        local_folders(&env),
        set(&[
            "Archive/2019",
            "Entwürfe",
            "INBOX",
            "Lists/rust",
            "Notizen",
            "Spam"
        ]),
        "`%` stays within a level, excluded and not included folders are not created here"
    );
    assert_eq!(
        count(&local, "Spam"),
        1,
        "the excluded local folder is untouched"
    );
    assert_eq!(
        server_folders(&env),
        set(&[
            "Archive/2019",
            "Entwürfe",
            "INBOX",
            "Lists/go",
            "Lists/rust",
            "Lists/rust/announce",
            "Notizen",
            "Trash"
        ]),
        "the included local-only folder is created on the server, the excluded one is not"
    );
    for left_out in ["Lists/go", "Lists/rust/announce", "Trash"] {
        assert_eq!(
            remote[left_out], server_before[left_out],
            "{left_out} changed"
        );
    }
    for synced in ["INBOX", "Archive/2019", "Entwürfe", "Lists/rust", "Notizen"] {
        assert_eq!(remote[synced], local[synced], "{synced} is not in step");
    }

    // Leaving a synced folder out keeps its state: changes made meanwhile are neither carried
    // over nor mistaken for new mail when it comes back.
    env.write_config_with(
        "",
        "[accounts.test.folders]\ninclude = [\"INBOX\", \"Lists/%\", \"Entwürfe\", \"Notizen\"]\nexclude = [\"Lists/go\", \"regex:Spam|Trash\"]\n",
    );
    let archive = env.ctl.dump("Archive/2019");
    env.ctl.expunge("Archive/2019", &[archive[0].uid]);
    env.ctl
        .append("Archive/2019", &corpus::message(1, 950), &["\\Flagged"]);
    let local_archive = env.local()["Archive/2019"].clone();
    let out = env.run(&["sync", "test", "Archive/2019"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("left out by the configuration"),
        "{}",
        stderr(&out)
    );
    env.sync_ok(&[]);
    assert_eq!(
        env.local()["Archive/2019"],
        local_archive,
        "touched while excluded"
    );
    assert_eq!(env.remote()["Archive/2019"].len(), 3);

    env.write_config_with(
        "",
        "[accounts.test.folders]\ninclude = [\"INBOX\", \"Lists/%\", \"Entwürfe\", \"Notizen\", \"Archive/*\"]\nexclude = [\"Lists/go\", \"regex:Spam|Trash\"]\n",
    );
    let out = env.sync_ok(&[]);
    assert!(
        stdout(&out).contains("1 new here, 0 new on the server, 0 flag changes, 1 deleted here"),
        "the folder resumed where it was: {}",
        stdout(&out)
    );
    assert_eq!(env.remote()["Archive/2019"], env.local()["Archive/2019"]);
}

#[test]
fn renaming_that_collides_is_refused_naming_both_and_changes_nothing() {
    let env = Env::new();
    fill(&env, 2, &["INBOX", "Sent", "Sent Items"], 2);
    env.sync_ok(&[]);
    env.deliver_locally("Made-here", "made-1.host", &corpus::message(2, 500), None);
    env.ctl.create("Made-there");
    let (remote_before, local_before) = (env.remote(), env.local());

    env.write_config_with(
        "",
        "[accounts.test.folders]\nrename = [{ remote = \"^Sent Items$\", local = \"Sent\" }]\n",
    );
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(
            "server folders \"Sent\" and \"Sent Items\" would all be the local folder \"Sent\""
        ),
        "{err}"
    );
    assert!(err.contains("nothing was synced"), "{err}");
    assert_eq!(env.remote(), remote_before, "the server changed");
    assert_eq!(env.local(), local_before, "the Maildir changed");
    assert!(!env.maildir().join("Made-there").exists());

    // The folder table shows the map and the problem, and exits non-zero too.
    let out = env.run(&["folders", "test"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("\"Sent Items\""), "{}", stderr(&out));

    // Back without the rule, the run goes through and what waited is created.
    env.write_config_with("", "");
    env.sync_ok(&[]);
    assert!(env.maildir().join("Made-there").is_dir());
    assert!(server_folders(&env).contains("Made-here"));
    env.assert_in_step();
}

#[test]
fn renaming_a_synced_folder_pairs_its_messages_again_without_copies_or_deletions() {
    let env = Env::new();
    fill(&env, 11, &["INBOX", "[Gmail]/Sent Mail"], 3);
    env.sync_ok(&[]);
    let before = env.remote();

    // The preset would make the server's sent mail the local "Sent", while the local folder of
    // the same name stays: refused until the directory is moved.
    env.write_config_with("", "[accounts.test.folders]\npreset = \"gmail\"\n");
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "local folder \"[Gmail]/Sent Mail\" maps to the server folder \"[Gmail]/Sent Mail\""
        ),
        "{}",
        stderr(&out)
    );
    std::fs::rename(
        env.maildir().join("[Gmail]/Sent Mail"),
        env.maildir().join("Sent"),
    )
    .expect("move the folder");
    let out = env.run(&["folders", "test"]);
    assert!(
        stdout(&out).contains("its local name changed from \"[Gmail]/Sent Mail\""),
        "{}",
        stdout(&out)
    );
    let out = env.sync_ok(&[]);
    assert!(
        stdout(&out).contains("0 new here, 0 new on the server, 0 flag changes, 0 deleted here, 0 deleted on the server"),
        "{}",
        stdout(&out)
    );
    assert_eq!(env.remote(), before);
    assert_eq!(env.local()["Sent"], before["[Gmail]/Sent Mail"]);

    // The pairs are known again: a deletion here is one on the server.
    let files = env.local_files("Sent");
    std::fs::remove_file(&files[0]).expect("delete");
    env.sync_ok(&[]);
    assert_eq!(count(&env.remote(), "[Gmail]/Sent Mail"), 2);
}

#[test]
fn gmail_names_map_both_ways() {
    let env = Env::new();
    fill(
        &env,
        3,
        &[
            "INBOX",
            "[Gmail]/Sent Mail",
            "[Gmail]/All Mail",
            "[Gmail]/Drafts",
            "Work",
        ],
        2,
    );
    env.write_config_with("", "[accounts.test.folders]\npreset = \"gmail\"\n");
    env.sync_ok(&[]);
    assert_eq!(
        local_folders(&env),
        set(&["Archive", "Drafts", "INBOX", "Sent", "Work"])
    );
    assert_eq!(env.local()["Sent"], env.remote()["[Gmail]/Sent Mail"]);

    // Sent from the mail client: it lands in the server's sent mail.
    env.deliver_locally("Sent", "sent-1.host", &corpus::message(3, 700), Some("S"));
    // A new local Trash is Gmail's trash.
    env.deliver_locally("Trash", "trash-1.host", &corpus::message(3, 701), Some("S"));
    env.sync_ok(&[]);
    let remote = env.remote();
    assert_eq!(count(&remote, "[Gmail]/Sent Mail"), 3);
    assert_eq!(count(&remote, "[Gmail]/Trash"), 1);
    assert!(!remote.contains_key("Sent") && !remote.contains_key("Trash"));
    assert_eq!(env.local()["Sent"], remote["[Gmail]/Sent Mail"]);

    // Messages keep to their folders on a later run, and the server names show in --json.
    let out = env.sync_ok(&["--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let sent = doc[0]["folders"]
        .as_array()
        .expect("folders")
        .iter()
        .find(|f| f["folder"] == "Sent")
        .expect("Sent reported")
        .clone();
    assert_eq!(sent["remote_folder"], "[Gmail]/Sent Mail");
    assert_eq!(sent["uploaded"], 0);
}

#[test]
fn a_prefix_is_stripped_for_servers_that_keep_everything_under_inbox() {
    let env = Env::new();
    fill(
        &env,
        4,
        &["INBOX", "INBOX/Lists", "INBOX/Lists/rust", "INBOX/Entwürfe"],
        2,
    );
    env.write_config_with(
        "",
        "[accounts.test.folders]\nremote_prefix_strip = \"INBOX.\"\n",
    );
    env.sync_ok(&[]);
    assert_eq!(
        local_folders(&env),
        set(&["Entwürfe", "INBOX", "Lists", "Lists/rust"])
    );
    env.deliver_locally("Notes", "n-1.host", &corpus::message(4, 300), None);
    env.sync_ok(&[]);
    assert_eq!(count(&env.remote(), "INBOX/Notes"), 1);
    assert!(!server_folders(&env).contains("Notes"));
}

#[test]
fn new_folders_are_created_on_the_sides_create_allows() {
    let env = Env::new();
    fill(&env, 5, &["INBOX", "Server-1"], 1);
    env.deliver_locally("Local-1", "l1.host", &corpus::message(5, 100), None);
    env.sync_ok(&[]);
    assert!(local_folders(&env).contains("Server-1"));
    assert!(server_folders(&env).contains("Local-1"));

    env.write_config_with("", "[accounts.test]\ncreate = \"none\"\n");
    fill(&env, 6, &["Server-2"], 1);
    env.deliver_locally("Local-2", "l2.host", &corpus::message(5, 101), None);
    env.sync_ok(&[]);
    assert!(!local_folders(&env).contains("Server-2"));
    assert!(!server_folders(&env).contains("Local-2"));
    let out = env.run(&["folders", "test"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("skip: not created on the local side (create)"),
        "{}",
        stdout(&out)
    );

    env.write_config_with("", "[accounts.test]\ncreate = \"remote\"\n");
    env.sync_ok(&[]);
    assert!(!local_folders(&env).contains("Server-2"));
    assert!(server_folders(&env).contains("Local-2"));
    assert_eq!(count(&env.remote(), "Local-2"), 1);

    env.write_config_with("", "[accounts.test]\ncreate = \"local\"\n");
    env.sync_ok(&[]);
    assert!(local_folders(&env).contains("Server-2"));
    env.assert_in_step();
}

#[test]
fn a_deleted_folder_is_kept_while_it_holds_mail_and_removed_when_empty_or_allowed() {
    let env = Env::new();
    fill(&env, 7, &["INBOX", "Full", "Also-full", "Server-gone"], 2);
    env.ctl.create("Empty");
    env.ctl.create("Parent/Child");
    fill(&env, 7, &["Parent"], 1);
    env.sync_ok(&[]);

    // Deleted here: the empty one goes on the server too, the ones with mail stay.
    for f in ["Full", "Empty"] {
        std::fs::remove_dir_all(env.maildir().join(f)).expect("delete folder");
    }
    let full_before = env.remote()["Full"].clone();
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Full: the folder was deleted on the local side and kept on the server side: it still holds 2 messages"),
        "{}",
        stderr(&out)
    );
    let servers = server_folders(&env);
    assert!(!servers.contains("Empty"), "{servers:?}");
    assert_eq!(env.remote()["Full"], full_before);

    // remove = "remote" lets the deletion through, messages and all; mail that arrived after
    // the last sync keeps a folder whatever `remove` says.
    std::fs::remove_dir_all(env.maildir().join("Also-full")).expect("delete folder");
    env.ctl.append("Also-full", &corpus::message(7, 800), &[]);
    env.write_config_with("", "[accounts.test]\nremove = \"remote\"\n");
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("holds 1 messages there that arrived after the last sync"),
        "{}",
        stderr(&out)
    );
    let servers = server_folders(&env);
    assert!(!servers.contains("Full"), "{servers:?}");
    assert_eq!(count(&env.remote(), "Also-full"), 3);

    // Deleted on the server: with remove = "remote" the local copy stays and is reported; with
    // "both" it goes here too.
    env.ctl.delete_folder("Server-gone");
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(count(&env.local(), "Server-gone"), 2);
    env.write_config_with("", "[accounts.test]\nremove = \"both\"\n");
    // A parent whose sub-folder stays is not removed on the server: Dovecot would keep
    // listing its name as a folder that cannot be opened.
    for sub in ["cur", "new", "tmp"] {
        std::fs::remove_dir_all(env.maildir().join("Parent").join(sub)).expect("delete folder");
    }
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Parent: the folder was deleted on the local side and kept on the server side: it has sub-folders"),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("Server-gone (removed on the local side)"),
        "{}",
        stdout(&out)
    );
    let locals = local_folders(&env);
    assert!(!locals.contains("Server-gone"), "{locals:?}");
    assert!(locals.contains("Parent/Child"), "{locals:?}");
    assert_eq!(count(&env.remote(), "Parent"), 1);
}

#[test]
fn the_folders_command_shows_the_map_and_changes_nothing() {
    let env = Env::new();
    fill(
        &env,
        8,
        &["INBOX", "[Gmail]/Sent Mail", "Trash", "Lists/rust"],
        1,
    );
    env.deliver_locally("Drafts", "d1.host", &corpus::message(8, 100), None);
    env.write_config_with(
        "",
        "[accounts.test.folders]\npreset = \"gmail\"\nexclude = [\"Trash\"]\n",
    );
    let out = env.run(&["folders", "test"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("SERVER"), "{text}");
    let line = |local: &str| {
        lines
            .iter()
            .find(|l| {
                l.split("  ")
                    .map(str::trim)
                    .any(|c| c == local || c == format!("({local})"))
            })
            .unwrap_or_else(|| panic!("no line for {local}:\n{text}"))
            .to_string()
    };
    assert!(line("Sent").starts_with("[Gmail]/Sent Mail"), "{text}");
    assert!(
        line("Sent").ends_with("create on the local side, then sync"),
        "{text}"
    );
    assert!(line("Drafts").starts_with("([Gmail]/Drafts)"), "{text}");
    assert!(
        line("Drafts").ends_with("create on the server side, then sync"),
        "{text}"
    );
    assert!(
        line("Trash").ends_with("skip: excluded by \"Trash\""),
        "{text}"
    );

    let out = env.run(&["folders", "test", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let rows = doc["folders"].as_array().expect("folders");
    let sent = rows.iter().find(|r| r["local"] == "Sent").expect("Sent");
    assert_eq!(sent["remote"], "[Gmail]/Sent Mail");
    assert_eq!(sent["action"], "create");
    assert_eq!(sent["side"], "local");
    let trash = rows.iter().find(|r| r["local"] == "Trash").expect("Trash");
    assert_eq!(trash["action"], "skip");
    assert!(doc["problems"].as_array().expect("problems").is_empty());

    // Nothing was changed: no server folder made, no local one, no state.
    assert!(!server_folders(&env).contains("[Gmail]/Drafts"));
    assert_eq!(local_folders(&env), set(&["Drafts"]));
    assert!(!env.state_dir().join("test.sqlite").exists());

    // After a sync every row is a plain sync.
    env.sync_ok(&[]);
    let out = env.run(&["folders", "test", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    for row in doc["folders"].as_array().expect("folders") {
        let want = if row["local"] == "Trash" {
            "skip"
        } else {
            "sync"
        };
        assert_eq!(row["action"], want, "{row}");
    }
}

#[test]
fn the_mailbox_list_names_synced_folders_and_is_only_rewritten_when_they_change() {
    let env = Env::new();
    fill(&env, 9, &["INBOX", "Lists/rust", "Entwürfe", "Trash"], 1);
    let list = env.dir.path().join("mailboxes");
    env.write_config_with(
        "",
        &format!(
            "[accounts.test.folders]\nexclude = [\"Trash\"]\n\n[general.mbnames]\npath = \"{}\"\n",
            list.display()
        ),
    );
    env.sync_ok(&[]);
    assert_eq!(
        std::fs::read_to_string(&list).expect("the list is written"),
        "mailboxes \"+test/Entwürfe\" \"+test/INBOX\" \"+test/Lists/rust\"\n"
    );
    let inode = std::fs::metadata(&list).expect("list").ino();

    env.ctl.append("INBOX", &corpus::message(9, 500), &[]);
    env.sync_ok(&[]);
    assert_eq!(
        std::fs::metadata(&list).expect("list").ino(),
        inode,
        "rewritten though no folder changed"
    );

    env.ctl.create("Archive");
    env.sync_ok(&[]);
    assert_eq!(
        std::fs::read_to_string(&list).expect("list"),
        "mailboxes \"+test/Archive\" \"+test/Entwürfe\" \"+test/INBOX\" \"+test/Lists/rust\"\n"
    );

    // Its own format, and an account left out.
    env.write_config_with(
        "",
        &format!(
            "[accounts.test]\nmbnames = false\n\n[general.mbnames]\npath = \"{}\"\nheader = \"# folders\\n\"\nitem = \"{{path}}\"\nseparator = \"\\n\"\nfooter = \"\\n\"\n",
            list.display()
        ),
    );
    env.sync_ok(&[]);
    assert_eq!(
        std::fs::read_to_string(&list).expect("list"),
        "# folders\n\n"
    );
}

#[test]
fn the_daemon_translates_wake_ups_through_the_map_and_writes_the_list() {
    let env = Env::new();
    fill(&env, 10, &["INBOX", "[Gmail]/Sent Mail"], 1);
    let list = env.dir.path().join("mailboxes");
    env.write_config_with(
        "",
        &format!(
            "[accounts.test]\nidle = [\"Sent\"]\n\n[accounts.test.folders]\npreset = \"gmail\"\n\n[general.mbnames]\npath = \"{}\"\n",
            list.display()
        ),
    );
    let mut daemon = Daemon::start(&env, None);
    daemon.expect_notify("READY=1", Duration::from_secs(20));
    eventually(Duration::from_secs(10), "the first sync", || {
        count(&env.local(), "Sent") == 1
    });
    eventually(Duration::from_secs(5), "the mailbox list", || {
        std::fs::read_to_string(&list).ok().as_deref()
            == Some("mailboxes \"+test/INBOX\" \"+test/Sent\"\n")
    });

    // A change on the server in the renamed folder reaches its local name.
    env.ctl
        .append("[Gmail]/Sent Mail", &corpus::message(10, 200), &["\\Seen"]);
    eventually(Duration::from_secs(5), "server mail in Sent", || {
        count(&env.local(), "Sent") == 2
    });
    // And one made here reaches the server's name.
    env.deliver_locally("Sent", "s-1.host", &corpus::message(10, 201), Some("S"));
    eventually(
        Duration::from_secs(5),
        "local mail in [Gmail]/Sent Mail",
        || env.ctl.dump("[Gmail]/Sent Mail").len() == 3,
    );

    daemon.signal("-TERM");
    assert!(daemon.wait_exit(Duration::from_secs(25)).success());
    assert!(!server_folders(&env).contains("Sent"));
}

#[test]
fn an_emptied_maildir_tree_removes_no_server_folder_even_when_removing_is_allowed() {
    let env = Env::new();
    fill(&env, 12, &["INBOX", "Archive", "Lists/rust"], 2);
    env.sync_ok(&[]);
    let before = env.remote();
    // A mount point without its disk: the root is there, the folders are not.
    for entry in std::fs::read_dir(env.maildir()).expect("maildir") {
        std::fs::remove_dir_all(entry.expect("entry").path()).expect("empty the tree");
    }
    env.write_config_with("", "[accounts.test]\nremove = \"remote\"\n");
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("3 of 3 folders holding mail vanished from the local side at once"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.remote(), before, "the server changed");
}
