//! Per-account limits against a real, private Dovecot: read-only sides, `sync_deletes = false`,
//! `max_age` and `max_size`. The server is read through `imapctl.py`, the Maildir through the
//! files, never through the code under test.

mod common;
mod support;

use std::collections::BTreeMap;
use std::path::Path;

use common::{Env, set_local_flags, set_mode, stdout};
use idlewild::model::Flags;
use support::corpus;

const DAY: i64 = 86_400;

/// Writes the account `test` with extra lines for the account table, the remote table and the
/// local table.
fn configure(env: &Env, account: &str, remote: &str, local: &str) {
    let text = format!(
        "[general]\nstate_dir = \"{state}\"\n\n[accounts.test]\n{account}\n\n[accounts.test.remote]\ntype = \"imap\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nuser = \"{user}\"\npassword = \"{password}\"\ntimeout = 20\n{remote}\n\n[accounts.test.local]\ntype = \"maildir\"\npath = \"{maildir}\"\n{local}\n",
        state = env.state_dir().display(),
        port = env.dovecot.port(),
        user = env.dovecot.user(),
        password = env.dovecot.password(),
        maildir = env.maildir().display(),
    );
    std::fs::write(env.config_path(), text).expect("write config");
    set_mode(&env.config_path(), 0o600);
}

/// Every file and directory below `root` with its content (directories: empty), so that a
/// rename, a new file in tmp/ or a changed byte all show.
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).expect("read dir").flatten() {
            let path = e.path();
            let rel = path
                .strip_prefix(root)
                .expect("below root")
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                walk(root, &path, out);
            } else {
                out.insert(rel, std::fs::read(&path).expect("read file"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The server as UID -> (flags, sha256) per folder, and each folder's UIDVALIDITY/UIDNEXT.
type ServerState = BTreeMap<String, (u32, u32, Vec<(u32, Vec<String>, String)>)>;

fn server_state(env: &Env) -> ServerState {
    env.ctl
        .dump_all()
        .into_iter()
        .map(|(folder, messages)| {
            let status = env.ctl.status(&folder);
            let list = messages
                .into_iter()
                .map(|m| (m.uid, m.flags, m.sha256))
                .collect();
            (folder, (status.uidvalidity, status.uidnext, list))
        })
        .collect()
}

fn message_ids(messages: &[common::Seen]) -> Vec<String> {
    let mut ids: Vec<String> = messages
        .iter()
        .filter_map(|m| m.message_id.clone())
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_read_only_local_side_is_never_written_and_nothing_comes_back() {
    let env = Env::new();
    for i in 0..6 {
        env.ctl.append("INBOX", &corpus::message(11, i), &[]);
    }
    env.sync_ok(&[]);
    env.deliver_locally(
        "INBOX",
        "local-new.host",
        &corpus::message(11, 100),
        Some("S"),
    );

    configure(&env, "", "", "readonly = true");
    let before = tree(&env.maildir());
    // The server deletes one message, flags another, and gets a new one and a new folder.
    let inbox = env.ctl.dump("INBOX");
    env.ctl.expunge("INBOX", &[inbox[0].uid]);
    env.ctl.store("INBOX", inbox[1].uid, &["\\Flagged"], "+");
    env.ctl.append("INBOX", &corpus::message(11, 200), &[]);
    env.ctl.create("Server-only");
    env.ctl
        .append("Server-only", &corpus::message(11, 201), &[]);

    for _ in 0..3 {
        env.sync_ok(&[]);
        assert_eq!(
            tree(&env.maildir()),
            before,
            "the read-only Maildir changed"
        );
    }
    let remote = env.remote();
    let ids = message_ids(&remote["INBOX"]);
    // The local message went up once; the expunged one never came back.
    assert!(ids.contains(&corpus::message_id(11, 100)), "{ids:?}");
    assert!(
        !ids.contains(&corpus::message_id(11, 0)),
        "re-uploaded: {ids:?}"
    );
    assert_eq!(ids.len(), 6 - 1 + 1 + 1, "{ids:?}");
    // The server's flag change was not reverted.
    let flagged = env
        .ctl
        .dump("INBOX")
        .into_iter()
        .find(|m| m.uid == inbox[1].uid)
        .expect("flagged message still there");
    assert!(
        flagged.flags.iter().any(|f| f == "\\Flagged"),
        "{flagged:?}"
    );

    // Made writable again, the local copy of the server's deletion survives on its own (it
    // is not uploaded, nor deleted); the rest catches up.
    configure(&env, "", "", "");
    env.sync_ok(&[]);
    let ids = message_ids(&env.remote()["INBOX"]);
    assert!(
        !ids.contains(&corpus::message_id(11, 0)),
        "re-uploaded: {ids:?}"
    );
    let local = env.local();
    assert!(message_ids(&local["INBOX"]).contains(&corpus::message_id(11, 0)));
    assert!(local.contains_key("Server-only"));
}

#[test]
fn a_read_only_server_is_never_written_while_local_changes_go_nowhere() {
    let env = Env::new();
    env.ctl.create("Archive");
    for i in 0..8 {
        let flags: &[&str] = if i % 2 == 0 { &["\\Seen"] } else { &[] };
        env.ctl.append("INBOX", &corpus::message(12, i), flags);
    }
    env.ctl.append("Archive", &corpus::message(12, 50), &[]);
    env.sync_ok(&[]);

    configure(&env, "", "readonly = true", "");
    let before = server_state(&env);
    // Local: a new message, a new folder, a flag change and a deletion.
    env.deliver_locally("INBOX", "local-1.host", &corpus::message(12, 100), None);
    env.deliver_locally(
        "Local-only",
        "local-2.host",
        &corpus::message(12, 101),
        Some("S"),
    );
    let files = env.local_files("INBOX");
    set_local_flags(&files[0], "F");
    std::fs::remove_file(&files[1]).expect("delete locally");
    // The server still brings news: a new message arrives and is downloaded.
    env.sync_ok(&[]);
    let mut after = server_state(&env);
    assert_eq!(after, before, "the read-only server changed");

    env.ctl
        .append("INBOX", &corpus::message(12, 300), &["\\Seen"]);
    let expected_new = server_state(&env);
    env.sync_ok(&[]);
    env.sync_ok(&[]);
    after = server_state(&env);
    assert_eq!(after, expected_new, "the read-only server changed");
    let local = env.local();
    let ids = message_ids(&local["INBOX"]);
    assert!(ids.contains(&corpus::message_id(12, 300)), "{ids:?}");
    // The local deletion is not undone by downloading the message again.
    assert_eq!(ids.len(), 8 + 1 + 1 - 1, "{ids:?}");
    // The local flag change stays.
    assert!(
        local["INBOX"]
            .iter()
            .any(|m| m.flags & Flags::FLAGGED.bits() != 0)
    );
}

#[test]
fn without_sync_deletes_a_deletion_stays_on_its_side_both_ways() {
    let env = Env::new();
    for i in 0..6 {
        env.ctl.append("INBOX", &corpus::message(13, i), &[]);
    }
    env.sync_ok(&[]);
    configure(&env, "sync_deletes = false", "", "");
    let out = env.run(&["check-config"]);
    assert!(
        stdout(&out).contains("    limits: deletions not synced\n"),
        "{}",
        stdout(&out)
    );

    let inbox = env.ctl.dump("INBOX");
    env.ctl.expunge("INBOX", &[inbox[0].uid]);
    let files = env.local_files("INBOX");
    let local_victim = std::fs::read(&files[5]).expect("read");
    std::fs::remove_file(&files[5]).expect("delete locally");
    let victim_id = idlewild::message::fingerprint(&local_victim[..])
        .expect("fingerprint")
        .message_id
        .expect("message id");

    for _ in 0..2 {
        env.sync_ok(&[]);
        let remote = message_ids(&env.remote()["INBOX"]);
        let local = message_ids(&env.local()["INBOX"]);
        // Server deletion: kept locally, not uploaded again.
        assert!(local.contains(&corpus::message_id(13, 0)), "{local:?}");
        assert!(!remote.contains(&corpus::message_id(13, 0)), "{remote:?}");
        // Local deletion: kept on the server, not downloaded again.
        assert!(remote.contains(&victim_id), "{remote:?}");
        assert!(!local.contains(&victim_id), "{local:?}");
        assert_eq!((remote.len(), local.len()), (5, 5));
    }
    // Flags still travel for the pairs that remain.
    let inbox = env.ctl.dump("INBOX");
    env.ctl.store("INBOX", inbox[1].uid, &["\\Flagged"], "+");
    env.sync_ok(&[]);
    assert!(
        env.local()["INBOX"]
            .iter()
            .any(|m| m.flags & Flags::FLAGGED.bits() != 0)
    );
}

#[test]
fn max_age_copies_only_recent_mail_and_deletes_nothing_old() {
    let env = Env::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    // Server: two recent messages, two old ones.
    env.ctl
        .append_at("INBOX", &corpus::message(14, 0), &[], now - DAY);
    env.ctl
        .append_at("INBOX", &corpus::message(14, 1), &[], now - 5 * DAY);
    env.ctl
        .append_at("INBOX", &corpus::message(14, 2), &[], now - 40 * DAY);
    env.ctl.append_at(
        "INBOX",
        &corpus::message(14, 3),
        &["\\Seen"],
        now - 400 * DAY,
    );
    // A first sync without the window pairs one old message, which must keep syncing.
    env.sync_ok(&[]);
    let paired_old = env
        .local_files("INBOX")
        .into_iter()
        .find(|p| {
            std::fs::read(p)
                .map(|c| {
                    idlewild::message::fingerprint(&c[..])
                        .ok()
                        .and_then(|f| f.message_id)
                        == Some(corpus::message_id(14, 3))
                })
                .unwrap_or(false)
        })
        .expect("old message downloaded by the first sync");
    for p in env.local_files("INBOX") {
        if p != paired_old {
            std::fs::remove_file(&p).expect("start over locally");
        }
    }
    // The local removals would be deletions: start the window on a fresh state instead.
    std::fs::remove_dir_all(env.state_dir()).expect("drop state");
    configure(&env, "max_age = 30", "", "");

    // Local: one recent and one old message (by file time).
    env.deliver_locally("INBOX", "local-recent.host", &corpus::message(14, 10), None);
    env.deliver_locally("INBOX", "local-old.host", &corpus::message(14, 11), None);
    let old_file = env.maildir().join("INBOX/new/local-old.host");
    let old_time = std::time::UNIX_EPOCH + std::time::Duration::from_secs((now - 90 * DAY) as u64);
    std::fs::File::options()
        .write(true)
        .open(&old_file)
        .and_then(|f| f.set_modified(old_time))
        .expect("set mtime");

    let out = env.sync_ok(&["--json"]);
    assert!(
        common::stderr(&out).contains("older than max_age is not copied"),
        "{}",
        common::stderr(&out)
    );
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let inbox = json[0]["folders"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["folder"] == "INBOX"))
        .expect("INBOX report")
        .clone();
    // One old server message (the other old one is paired again by content), one old local.
    assert_eq!(inbox["skipped_too_old"], 2, "{inbox}");

    let remote = message_ids(&env.remote()["INBOX"]);
    let local = message_ids(&env.local()["INBOX"]);
    assert!(local.contains(&corpus::message_id(14, 0)));
    assert!(local.contains(&corpus::message_id(14, 1)));
    assert!(!local.contains(&corpus::message_id(14, 2)), "{local:?}");
    assert!(remote.contains(&corpus::message_id(14, 10)));
    assert!(!remote.contains(&corpus::message_id(14, 11)), "{remote:?}");
    // Nothing old is deleted for being outside the window.
    assert!(remote.contains(&corpus::message_id(14, 2)));
    assert!(local.contains(&corpus::message_id(14, 11)));
    assert!(local.contains(&corpus::message_id(14, 3)));

    // The old pair keeps syncing flags both ways.
    let old_uid = env
        .ctl
        .dump("INBOX")
        .into_iter()
        .find(|m| m.message_id.as_deref() == Some(corpus::message_id(14, 3).as_str()))
        .expect("old server message")
        .uid;
    env.ctl.store("INBOX", old_uid, &["\\Flagged"], "+");
    env.sync_ok(&[]);
    let old_local = env
        .local_files("INBOX")
        .into_iter()
        .find(|p| {
            p.to_string_lossy().contains(
                paired_old
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.split(':').next())
                    .expect("unique name"),
            )
        })
        .expect("old local copy");
    assert!(
        old_local.to_string_lossy().ends_with(":2,FS"),
        "{old_local:?}"
    );
    set_local_flags(&old_local, "FRS");
    env.sync_ok(&[]);
    let server_flags = env
        .ctl
        .dump("INBOX")
        .into_iter()
        .find(|m| m.uid == old_uid)
        .expect("old server message")
        .flags;
    assert!(
        server_flags.iter().any(|f| f == "\\Answered"),
        "{server_flags:?}"
    );

    // The remembered messages are not examined again, and stay out.
    let out = env.sync_ok(&["--json"]);
    assert!(
        stdout(&out).contains("\"skipped_too_old\": 2"),
        "{}",
        stdout(&out)
    );
    assert!(
        !common::stderr(&out).contains("older than max_age is not copied"),
        "examined again: {}",
        common::stderr(&out)
    );
    assert!(!message_ids(&env.local()["INBOX"]).contains(&corpus::message_id(14, 2)));

    // A wider window examines them again and copies what now fits.
    configure(&env, "max_age = 60", "", "");
    env.sync_ok(&[]);
    assert!(message_ids(&env.local()["INBOX"]).contains(&corpus::message_id(14, 2)));
    assert!(!message_ids(&env.remote()["INBOX"]).contains(&corpus::message_id(14, 11)));
}

#[test]
fn max_size_skips_big_messages_and_lists_them() {
    let env = Env::new();
    let big = corpus::big_message(15, 300 * 1024);
    env.ctl.append("INBOX", &corpus::message(15, 0), &[]);
    let big_uid = env.ctl.append("INBOX", &big, &[]).expect("APPENDUID");
    env.deliver_locally(
        "INBOX",
        "big-local.host",
        &corpus::big_message(16, 400 * 1024),
        None,
    );
    env.deliver_locally("INBOX", "small-local.host", &corpus::message(15, 1), None);
    configure(&env, "max_size = \"200K\"", "", "readonly = false");
    let out = env.run(&["check-config"]);
    assert!(
        stdout(&out).contains("    limits: only mail up to 204800 bytes\n"),
        "{}",
        stdout(&out)
    );

    let out = env.sync_ok(&["--json"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let inbox = json[0]["folders"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["folder"] == "INBOX"))
        .expect("INBOX report")
        .clone();
    let skipped = inbox["skipped_too_big"].as_array().expect("list").clone();
    assert_eq!(skipped.len(), 2, "{inbox}");
    assert!(
        skipped
            .iter()
            .any(|s| s["side"] == "server" && s["id"].as_str() == Some(&*big_uid.to_string())),
        "{inbox}"
    );
    assert!(
        skipped
            .iter()
            .any(|s| s["side"] == "local" && s["id"] == "big-local.host"),
        "{inbox}"
    );
    assert_eq!(inbox["downloaded"], 1);
    assert_eq!(inbox["uploaded"], 1);
    assert_eq!(env.local_files("INBOX").len(), 3);
    assert_eq!(env.ctl.dump("INBOX").len(), 3);

    // The human summary names them too, run after run.
    let out = env.sync_ok(&[]);
    assert!(
        stdout(&out).contains(&format!("INBOX: server message {big_uid} not copied")),
        "{}",
        stdout(&out)
    );
    // Raising the limit copies them.
    configure(&env, "max_size = \"1M\"", "", "");
    env.sync_ok(&[]);
    env.assert_in_step();
}
