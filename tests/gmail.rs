//! Gmail mode. No Gmail is reachable from here, so these tests talk to a stand-in: the private
//! Dovecot laid out like Gmail (`[Gmail]/All Mail` with `\All`, ...), behind
//! `support/gmail_proxy.py`, which offers X-GM-EXT-1, answers X-GM-MSGID from Dovecot's X-GUID
//! (the same in every folder a message was copied to, as Gmail's id is in every label), hides
//! QRESYNC and NOTIFY as Gmail does, and logs every body it relays.

mod common;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::{Env, stdout};
use support::corpus;
use support::gmail_proxy::{GmailProxy, gmail_dovecot_options};

const ALL_MAIL: &str = "[Gmail]/All Mail";
const SEED: u64 = 14;

/// A private Gmail stand-in and an account that syncs it through the proxy.
fn gmail() -> (Env, GmailProxy) {
    let env = Env::with(gmail_dovecot_options());
    let proxy = GmailProxy::start(&env.dovecot);
    env.write_config(&format!("port = {}", proxy.port()));
    (env, proxy)
}

/// Appends `message` to the first folder and copies it to the others, as Gmail shows one
/// message with several labels: one id, a UID in each folder.
fn labelled(env: &Env, message: &[u8], folders: &[&str]) {
    let uid = env.ctl.append(folders[0], message, &[]).expect("APPENDUID");
    for folder in &folders[1..] {
        env.ctl.copy_messages(folders[0], &[uid], folder);
    }
}

/// The local files of the corpus message `i`, in every folder of `folders`.
fn copies_of(env: &Env, folders: &[&str], i: usize) -> Vec<PathBuf> {
    let message_id = corpus::message_id(SEED, i);
    folders
        .iter()
        .flat_map(|f| env.local_files(f))
        .filter(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .contains(&message_id)
        })
        .collect()
}

fn inodes(paths: &[PathBuf]) -> BTreeSet<(u64, u64)> {
    paths
        .iter()
        .map(|p| {
            let m = std::fs::metadata(p).expect("metadata");
            (m.dev(), m.ino())
        })
        .collect()
}

fn sync_json(env: &Env) -> serde_json::Value {
    let out = env.sync_ok(&["--json"]);

    serde_json::from_str(&stdout(&out)).expect("JSON report")
}

fn total(report: &serde_json::Value, key: &str) -> u64 {
    report
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|a| a["folders"].as_array().into_iter().flatten())
        .map(|f| f[key].as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn a_message_in_three_labels_is_downloaded_once_and_linked_into_the_others() {
    let (env, proxy) = gmail();
    env.ctl.create("Work");
    labelled(
        &env,
        &corpus::message(SEED, 1),
        &["INBOX", "Work", ALL_MAIL],
    );
    labelled(&env, &corpus::message(SEED, 2), &[ALL_MAIL]);
    labelled(&env, &corpus::message(SEED, 3), &["INBOX", ALL_MAIL]);

    let report = sync_json(&env);
    env.assert_in_step();
    // Three messages, three bodies over the wire, all from All Mail (synced first).
    let bodies = proxy.bodies();
    assert_eq!(bodies.len(), 3, "bodies fetched: {bodies:?}");
    assert!(bodies.iter().all(|(f, _)| f == ALL_MAIL), "{bodies:?}");
    assert_eq!(total(&report, "downloaded"), 6, "{report:#}");
    assert_eq!(total(&report, "linked"), 3, "{report:#}");
    let folders = ["INBOX", "Work", ALL_MAIL];
    let files = copies_of(&env, &folders, 1);
    assert_eq!(files.len(), 3, "{files:?}");
    assert_eq!(inodes(&files).len(), 1, "one file, three names: {files:?}");
    assert_eq!(inodes(&copies_of(&env, &folders, 3)).len(), 1);

    // Nothing changed: nothing fetched again.
    let report = sync_json(&env);
    assert_eq!(total(&report, "downloaded"), 0, "{report:#}");
    assert_eq!(proxy.bodies().len(), 3);
}

#[test]
fn removing_a_label_removes_one_name_and_the_message_stays_in_the_others() {
    let (env, proxy) = gmail();
    env.ctl.create("Work");
    labelled(
        &env,
        &corpus::message(SEED, 1),
        &["INBOX", "Work", ALL_MAIL],
    );
    env.sync_ok(&[]);
    let folders = ["INBOX", "Work", ALL_MAIL];

    // The label Work is removed on the server: Work's name goes, the content stays.
    let work = env.ctl.dump("Work");
    env.ctl.expunge("Work", &[work[0].uid]);
    env.sync_ok(&[]);
    env.assert_in_step();
    let files = copies_of(&env, &folders, 1);
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(env.local_files("Work").is_empty());

    // Archived locally (deleted from INBOX): on the server only INBOX loses it.
    let inbox = copies_of(&env, &["INBOX"], 1);
    std::fs::remove_file(&inbox[0]).expect("delete");
    env.sync_ok(&[]);
    env.assert_in_step();
    assert!(env.ctl.dump("INBOX").is_empty());
    assert_eq!(env.ctl.dump(ALL_MAIL).len(), 1);
    assert_eq!(copies_of(&env, &folders, 1).len(), 1);

    // A label added later on the server: linked, not downloaded.
    let all = env.ctl.dump(ALL_MAIL);
    env.ctl.copy_messages(ALL_MAIL, &[all[0].uid], "Work");
    let before = proxy.bodies().len();
    let report = sync_json(&env);
    env.assert_in_step();
    assert_eq!(total(&report, "linked"), 1, "{report:#}");
    assert_eq!(proxy.bodies().len(), before, "{:?}", proxy.bodies());
    assert_eq!(inodes(&copies_of(&env, &folders, 1)).len(), 1);
}

#[test]
fn without_gmail_mode_each_folder_has_its_own_copy() {
    let (env, proxy) = gmail();
    env.write_config_with(
        &format!("port = {}", proxy.port()),
        "[accounts.test]\ngmail = false\n",
    );
    env.ctl.create("Work");
    labelled(&env, &corpus::message(SEED, 1), &["Work", ALL_MAIL]);
    let report = sync_json(&env);
    env.assert_in_step();
    assert_eq!(total(&report, "linked"), 0, "{report:#}");
    assert_eq!(proxy.bodies().len(), 2);
    let files = copies_of(&env, &["Work", ALL_MAIL], 1);
    assert_eq!(inodes(&files).len(), 2, "{files:?}");
}

/// A labelled corpus of `n` messages, all in All Mail (as on Gmail); `multi` percent of them
/// also carry two labels (INBOX and Work), half the rest one (INBOX). Returns, per folder, the
/// Message-IDs it holds.
fn labelled_corpus(env: &Env, n: usize, multi: usize) -> BTreeMap<String, Vec<String>> {
    env.ctl.create("Work");
    let mut rng = corpus::Rng::new(SEED);
    let mut ops = Vec::new();
    let mut labels = Vec::new();
    for i in 0..n {
        ops.push(serde_json::json!({
            "op": "append",
            "folder": ALL_MAIL,
            "message": String::from_utf8_lossy(&corpus::message(SEED, i)),
            "flags": if i % 3 == 0 { vec!["\\Seen"] } else { vec![] },
        }));
        labels.push(if rng.chance(multi) {
            vec!["INBOX", "Work"]
        } else if rng.chance(50) {
            vec!["INBOX"]
        } else {
            vec![]
        });
    }
    let uids = env.ctl.run(serde_json::Value::Array(ops));
    let mut copies = Vec::new();
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, (uid, labels)) in uids
        .as_array()
        .expect("results")
        .iter()
        .zip(&labels)
        .enumerate()
    {
        let uid = uid.as_u64().expect("APPENDUID");
        expected
            .entry(ALL_MAIL.into())
            .or_default()
            .push(corpus::message_id(SEED, i));
        for label in labels {
            copies.push(
                serde_json::json!({"op": "copy", "folder": ALL_MAIL, "uids": [uid], "to": label}),
            );
            expected
                .entry((*label).into())
                .or_default()
                .push(corpus::message_id(SEED, i));
        }
    }
    env.ctl.run(serde_json::Value::Array(copies));
    for ids in expected.values_mut() {
        ids.sort();
    }
    expected
}

/// Every folder holds exactly the expected Message-IDs, once, on both sides. Returns how many
/// copies were checked.
fn check(env: &Env, expected: &BTreeMap<String, Vec<String>>) -> usize {
    let (remote, local) = env.assert_in_step();
    let mut checked = 0;
    for (side, name) in [(&remote, "server"), (&local, "Maildir")] {
        for (folder, want) in expected {
            let mut have: Vec<String> = side
                .get(folder)
                .into_iter()
                .flatten()
                .filter_map(|m| m.message_id.clone())
                .collect();
            have.sort();
            assert_eq!(&have, want, "{name} {folder}: lost or duplicated");
            checked += have.len();
        }
    }
    checked
}

/// Disk use of the local files of `folders`: (bytes of distinct files, bytes if each name were
/// a copy of its own).
fn disk_use(env: &Env, folders: &[&str]) -> (u64, u64) {
    let mut seen = BTreeSet::new();
    let (mut distinct, mut naive) = (0, 0);
    for path in folders.iter().flat_map(|f| env.local_files(f)) {
        let m = std::fs::metadata(&path).expect("metadata");
        naive += m.len();
        if seen.insert((m.dev(), m.ino())) {
            distinct += m.len();
        }
    }
    (distinct, naive)
}

#[test]
fn a_labelled_mailbox_costs_one_download_and_one_file_per_message() {
    // 30% of the messages in two labels besides All Mail, as the figures in the docs.
    const N: usize = 200;
    let folders = ["INBOX", "Work", ALL_MAIL];
    let (env, proxy) = gmail();
    let expected = labelled_corpus(&env, N, 30);
    let copies: usize = expected.values().map(Vec::len).sum();
    sync_json(&env);
    check(&env, &expected);
    let bodies = proxy.bodies();
    let (distinct, naive) = disk_use(&env, &folders);
    assert_eq!(bodies.len(), N, "one body per message");

    // The same mailbox without Gmail mode: one download and one file per folder and message.
    let (plain, plain_proxy) = gmail();
    plain.write_config_with(
        &format!("port = {}", plain_proxy.port()),
        "[accounts.test]\ngmail = false\n",
    );
    labelled_corpus(&plain, N, 30);
    plain.sync_ok(&[]);
    let plain_bodies = plain_proxy.bodies();
    let (plain_disk, _) = disk_use(&plain, &folders);
    assert_eq!(plain_bodies.len(), copies);
    assert_eq!(plain_disk, naive);
    let bytes = |b: &[(String, u64)]| b.iter().map(|(_, n)| n).sum::<u64>();
    eprintln!(
        "labelled corpus: {N} messages in {copies} folder copies; gmail mode: {} downloads, {} body bytes, {distinct} bytes on disk; without: {} downloads, {} body bytes, {plain_disk} bytes on disk",
        bodies.len(),
        bytes(&bodies),
        plain_bodies.len(),
        bytes(&plain_bodies),
    );
    assert!(distinct < plain_disk);
}

#[test]
fn after_the_state_is_lost_the_links_stay_and_nothing_is_doubled() {
    let (env, proxy) = gmail();
    let expected = labelled_corpus(&env, 40, 30);
    env.sync_ok(&[]);
    let folders = ["INBOX", "Work", ALL_MAIL];
    let before = disk_use(&env, &folders);
    std::fs::remove_dir_all(env.state_dir()).expect("remove the state");
    let report = sync_json(&env);
    check(&env, &expected);
    assert_eq!(total(&report, "downloaded"), 0, "{report:#}");
    assert_eq!(disk_use(&env, &folders), before);
    // And the next new message with a label is linked again: the ids were learnt anew.
    let uid = env
        .ctl
        .append(ALL_MAIL, &corpus::message(SEED, 999), &[])
        .expect("APPENDUID");
    env.ctl.copy_messages(ALL_MAIL, &[uid], "Work");
    let bodies = proxy.bodies().len();
    let report = sync_json(&env);
    assert_eq!(total(&report, "linked"), 1, "{report:#}");
    assert_eq!(proxy.bodies().len(), bodies + 1);
}

#[test]
fn kill_9_during_a_labelled_initial_sync_loses_and_doubles_nothing() {
    let (env, _proxy) = gmail();
    let expected = labelled_corpus(&env, 150, 30);
    let mut rng = corpus::Rng::new(SEED ^ 9);
    let mut kills = 0;
    for _ in 0..12 {
        let delay = Duration::from_millis(rng.range(20, 400) as u64);
        let mut child = env
            .command(&["-q", "sync"])
            .env("IDLEWILD_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn idlewild");
        std::thread::sleep(delay);
        if child.try_wait().expect("wait").is_none() {
            kills += 1;
        }
        // SIGKILL: no destructor, no flush.
        let _ = child.kill();
        let _ = child.wait();
    }
    env.sync_ok(&[]);
    let checked = check(&env, &expected);
    eprintln!("{kills} syncs killed with SIGKILL; {checked} copies checked, 0 lost, 0 doubled");
    assert!(kills > 0, "no sync was killed while it ran");
}

#[test]
fn a_message_written_here_is_not_downloaded_back_from_all_mail() {
    let (env, proxy) = gmail();
    env.sync_ok(&[]);
    env.deliver_locally(
        "INBOX",
        "1700000000.M1P1.gmailtest",
        &corpus::message(SEED, 5),
        Some("S"),
    );
    env.sync_ok(&[]);
    // Gmail shows every message in All Mail too, under a UID of its own there.
    let inbox = env.ctl.dump("INBOX");
    env.ctl.copy_messages("INBOX", &[inbox[0].uid], ALL_MAIL);
    let report = sync_json(&env);
    env.assert_in_step();
    assert_eq!(total(&report, "linked"), 1, "{report:#}");
    assert!(proxy.bodies().is_empty(), "{:?}", proxy.bodies());
    assert_eq!(inodes(&copies_of(&env, &["INBOX", ALL_MAIL], 5)).len(), 1);
}
