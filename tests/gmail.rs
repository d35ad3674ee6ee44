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
use std::time::Duration;

use common::{Env, stdout};
use support::corpus;
use support::gmail_proxy::{GmailProxy, gmail_dovecot_options};

const ALL_MAIL: &str = "[Gmail]/All Mail";
const SEED: u64 = 14;

/// Gmail's spam and trash, which Gmail mode leaves out unless `folders.include` names them.
const LEFT_OUT: [&str; 2] = ["[Gmail]/Spam", "[Gmail]/Trash"];

/// Both sides hold the same messages with the same flags, folder by folder, but for the
/// folders Gmail mode leaves out, which are not in the Maildir at all.
fn in_step(env: &Env) -> (common::Side, common::Side) {
    let (mut remote, local) = (env.remote(), env.local());
    for folder in LEFT_OUT {
        assert!(!local.contains_key(folder), "{folder} was synced");
        remote.remove(folder);
    }
    assert_eq!(
        remote.keys().collect::<Vec<_>>(),
        local.keys().collect::<Vec<_>>(),
        "folder lists differ"
    );
    for (folder, messages) in &remote {
        assert_eq!(messages, &local[folder], "folder {folder} differs");
    }
    (remote, local)
}

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
    in_step(&env);
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
    in_step(&env);
    let files = copies_of(&env, &folders, 1);
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(env.local_files("Work").is_empty());

    // Archived locally (deleted from INBOX): on the server only INBOX loses it.
    let inbox = copies_of(&env, &["INBOX"], 1);
    std::fs::remove_file(&inbox[0]).expect("delete");
    env.sync_ok(&[]);
    in_step(&env);
    assert!(env.ctl.dump("INBOX").is_empty());
    assert_eq!(env.ctl.dump(ALL_MAIL).len(), 1);
    assert_eq!(copies_of(&env, &folders, 1).len(), 1);

    // A label added later on the server: linked, not downloaded.
    let all = env.ctl.dump(ALL_MAIL);
    env.ctl.copy_messages(ALL_MAIL, &[all[0].uid], "Work");
    let before = proxy.bodies().len();
    let report = sync_json(&env);
    in_step(&env);
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
    // Spam and trash too: without Gmail mode a folder is a folder.
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
    let (remote, local) = in_step(env);
    let mut checked = 0;
    for (side, name) in [(&remote, "server"), (&local, "Maildir")] {
        for (folder, want) in expected {
            let have = common::message_ids(side, folder);
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
        if common::sync_and_kill(&env, delay) {
            kills += 1;
        }
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
    in_step(&env);
    assert_eq!(total(&report, "linked"), 1, "{report:#}");
    assert!(proxy.bodies().is_empty(), "{:?}", proxy.bodies());
    assert_eq!(inodes(&copies_of(&env, &["INBOX", ALL_MAIL], 5)).len(), 1);
}

#[test]
fn gmail_s_daily_limit_stops_the_sync_and_the_next_run_downloads_only_the_rest() {
    let (env, proxy) = gmail();
    let expected = labelled_corpus(&env, 80, 30);
    // The download allowance runs out after 20 bodies, in the middle of All Mail.
    proxy.control(serde_json::json!({ "overquota_after_bodies": 20 }));
    let out = env.run(&["sync"]);
    let log = common::stderr(&out);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("[OVERQUOTA]"), "{log}");
    assert!(
        log.contains("leave it alone for 1 h") && log.contains("nothing was lost"),
        "{log}"
    );
    let fetched = proxy.bodies().len();
    assert!(
        (20..80).contains(&fetched),
        "{fetched} bodies before the limit"
    );
    // Nothing half done: what is on disk is in step with the state, nothing twice.
    let files: usize = ["INBOX", "Work", ALL_MAIL]
        .iter()
        .map(|f| env.local_files(f).len())
        .sum();
    assert!(files >= fetched, "{files} files for {fetched} bodies");

    // The next day: the rest, and nothing fetched a second time.
    proxy.control(serde_json::json!({}));
    env.sync_ok(&[]);
    check(&env, &expected);
    assert_eq!(
        proxy.bodies().len(),
        80,
        "every message fetched once in all"
    );
}

#[test]
fn a_server_at_its_connection_limit_is_waited_for_not_taken_for_a_wrong_password() {
    let env = Env::with(gmail_dovecot_options());
    let proxy = GmailProxy::start_with(&env.dovecot, 1, false);
    env.write_config(&format!("port = {}", proxy.port()));
    labelled(&env, &corpus::message(SEED, 1), &["INBOX", ALL_MAIL]);
    // Another client (a phone, say) holds the account's only connection.
    let (held, done) = RawImap::login(&env, &proxy);
    assert!(done.starts_with("a1 OK"), "{done}");

    let out = env.run(&["sync"]);
    let log = common::stderr(&out);
    assert!(!out.status.success(), "{log}");
    assert!(
        log.contains("Too many simultaneous connections") && log.contains("for 1 min"),
        "{log}"
    );
    assert!(
        !log.contains("was refused:"),
        "taken for a wrong password:\n{log}"
    );
    assert_eq!(proxy.refused(), 1);

    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    // With max_connections = 4 the sync asks for more lanes than the server allows: it
    // simply syncs with fewer.
    env.write_config_with(
        &format!("port = {}", proxy.port()),
        "[accounts.test]\nmax_connections = 4\n",
    );
    env.sync_ok(&[]);
    in_step(&env);
}

#[test]
fn a_throttled_server_is_reported_once_and_the_sync_goes_on() {
    let (env, proxy) = gmail();
    let expected = labelled_corpus(&env, 20, 30);
    proxy.control(serde_json::json!({ "throttled": true }));
    let out = env.sync_ok(&[]);
    let log = common::stderr(&out);
    check(&env, &expected);
    assert_eq!(
        log.matches("slowing this account down ([THROTTLED])")
            .count(),
        1,
        "{log}"
    );
}

#[test]
fn the_daemon_leaves_a_rationing_server_alone_even_when_mail_arrives_and_says_why() {
    use common::daemon::eventually;
    let (env, proxy, bus, daemon) = gmail_daemon();
    let property = |name: &str| account_property(&bus, name);

    // The day's allowance is used up; new mail arrives and its sync is refused.
    proxy.control(serde_json::json!({ "overquota": ["FETCH"] }));
    labelled(&env, &corpus::message(SEED, 2), &["INBOX", ALL_MAIL]);
    eventually(Duration::from_secs(30), "LastError names the limit", || {
        property("LastError").contains("[OVERQUOTA]")
    });
    assert!(
        property("LastError").contains("leave it alone for 1 h"),
        "{}",
        property("LastError")
    );
    let status = env
        .command(&["status"])
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .output()
        .expect("status");
    let text = format!("{}{}", stdout(&status), common::stderr(&status));
    assert!(text.contains("OVERQUOTA"), "{text}");
    // An hour, and up to a tenth more so that throttled clients do not all come back at once.
    eventually(Duration::from_secs(5), "the retry is an hour away", || {
        daemon.log_tail().lines().any(|l| {
            l.split_once("retry_in_s=")
                .and_then(|(_, s)| s.split_whitespace().next()?.parse::<u64>().ok())
                .is_some_and(|s| (3600..=3960).contains(&s))
        })
    });

    // More mail, on the server and here: each wakes the account, but the server is not asked
    // again within the hour.
    let fetches = || fetch_count(&proxy);
    let before = fetches();
    labelled(&env, &corpus::message(SEED, 3), &["INBOX", ALL_MAIL]);
    env.deliver_locally(
        "INBOX",
        "1700000000.M2P2.gmailtest",
        &corpus::message(SEED, 4),
        None,
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(fetches(), before, "{}", daemon.log_tail());
}

/// The Gmail stand-in with message 1 in INBOX, and the daemon on a private bus once it has
/// synced it. Bound with `let`, the daemon is dropped first.
fn gmail_daemon() -> (
    Env,
    GmailProxy,
    support::bus::PrivateBus,
    common::daemon::Daemon,
) {
    let (env, proxy) = gmail();
    labelled(&env, &corpus::message(SEED, 1), &["INBOX", ALL_MAIL]);
    let bus = support::bus::PrivateBus::start();
    let daemon = common::daemon::Daemon::start_with(
        &env,
        None,
        &[("DBUS_SESSION_BUS_ADDRESS", &bus.address)],
    );
    common::daemon::eventually(Duration::from_secs(30), "the first message arrives", || {
        copies_of(&env, &["INBOX"], 1).len() == 1
    });
    (env, proxy, bus, daemon)
}

/// A property of the account `test`, as busctl prints it.
fn account_property(bus: &support::bus::PrivateBus, name: &str) -> String {
    let out = bus.busctl(&[
        "get-property",
        "org.idlewild.Idlewild1",
        "/org/idlewild/Idlewild1/accounts/test",
        "org.idlewild.Idlewild1.Account",
        name,
    ]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The FETCH commands the proxy has seen so far.
fn fetch_count(proxy: &GmailProxy) -> usize {
    proxy
        .commands()
        .iter()
        .filter(|c| c.contains(" FETCH "))
        .count()
}

/// Other servers ration in their own words; the proxy stands in for them too.
#[test]
fn every_rationing_refusal_stops_a_one_shot_sync_with_the_wait_it_asks_for() {
    let (env, proxy) = gmail();
    labelled(&env, &corpus::message(SEED, 1), &["INBOX", ALL_MAIL]);
    for (refusal, wait) in [
        (
            "NO Request is throttled. Suggested Backoff Time: 3000 milliseconds",
            "for 3 s",
        ),
        ("NO [INUSE] Mailbox in use", "for 1 min"),
        ("NO [LIMIT] Too many commands", "for 1 min"),
        ("NO [UNAVAILABLE] Backend unavailable", "for 1 min"),
    ] {
        proxy.control(serde_json::json!({ "refuse": ["FETCH"], "refusal": refusal }));
        let out = env.run(&["sync"]);
        let log = common::stderr(&out);
        assert!(!out.status.success(), "{refusal}: {log}");
        let detail = refusal.trim_start_matches("NO ");
        assert!(
            log.contains(detail)
                && log.contains(&format!("leave it alone {wait}"))
                && log.contains("nothing was lost"),
            "{refusal}: {log}"
        );
        assert!(copies_of(&env, &["INBOX"], 1).is_empty());
    }
    proxy.control(serde_json::json!({}));
    env.sync_ok(&[]);
    in_step(&env);
}

#[test]
fn the_daemon_honours_a_suggested_backoff_time_then_catches_up_and_clears_the_error() {
    use common::daemon::eventually;
    let (env, proxy, bus, daemon) = gmail_daemon();
    let property = |name: &str| account_property(&bus, name);
    let fetches = || fetch_count(&proxy);

    // Office 365 throttles: eight seconds, it says.
    proxy.control(serde_json::json!({
        "refuse": ["FETCH"],
        "refusal": "NO Request is throttled. Suggested Backoff Time: 8000 milliseconds",
    }));
    labelled(&env, &corpus::message(SEED, 2), &["INBOX", ALL_MAIL]);
    eventually(
        Duration::from_secs(30),
        "LastError names the throttling",
        || property("LastError").contains("Suggested Backoff Time"),
    );
    let refused_at = std::time::Instant::now();
    assert!(
        property("LastError").contains("leave it alone for 8 s"),
        "{}",
        property("LastError")
    );
    // New mail on both sides wakes the account, but the server is not asked again before
    // its time.
    let before = fetches();
    labelled(&env, &corpus::message(SEED, 3), &["INBOX", ALL_MAIL]);
    env.deliver_locally(
        "INBOX",
        "1700000000.M3P3.gmailtest",
        &corpus::message(SEED, 4),
        None,
    );
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(fetches(), before, "{}", daemon.log_tail());
    assert!(
        refused_at.elapsed() < Duration::from_secs(8),
        "the check above came too late to mean anything"
    );

    // The throttling ends; the retry after the wait catches up and clears the error.
    proxy.control(serde_json::json!({}));
    let uploaded = corpus::message_id(SEED, 4);
    eventually(
        Duration::from_secs(30),
        "the held-back mail arrives",
        || {
            copies_of(&env, &["INBOX"], 2).len() == 1
                && copies_of(&env, &["INBOX"], 3).len() == 1
                && env
                    .ctl
                    .dump("INBOX")
                    .iter()
                    .any(|m| m.message_id.as_ref() == Some(&uploaded))
        },
    );
    eventually(Duration::from_secs(10), "LastError is cleared", || {
        property("LastError") == "s \"\""
    });
    in_step(&env);
}

#[test]
fn the_daemon_keeps_within_its_connection_budget_with_many_folders_to_watch() {
    use common::daemon::{Daemon, eventually};
    let (env, proxy) = gmail();
    for i in 0..12 {
        env.ctl.create(&format!("Label{i}"));
    }
    labelled(
        &env,
        &corpus::message(SEED, 1),
        &["INBOX", "Label3", ALL_MAIL],
    );
    // Every folder asked to be watched: far more than the budget of max_connections = 5.
    env.write_config_with(
        &format!("port = {}", proxy.port()),
        "[accounts.test]\nidle = [\"*\"]\n",
    );
    let daemon = Daemon::start(&env, None);
    daemon.expect_notify("READY=1", Duration::from_secs(20));
    eventually(Duration::from_secs(30), "the first sync ends", || {
        copies_of(&env, &["Label3"], 1).len() == 1
    });
    // New mail in a watched folder is pushed.
    let uid = env
        .ctl
        .append("INBOX", &corpus::message(SEED, 2), &[])
        .expect("APPENDUID");
    eventually(Duration::from_secs(10), "the push", || {
        copies_of(&env, &["INBOX"], 2).len() == 1
    });
    let _ = uid;
    // The most connections the proxy saw open at once (its test client's included).
    let mut open = 0i64;
    let mut most = 0i64;
    for event in proxy.events() {
        match event["event"].as_str() {
            Some("open") => open += 1,
            Some("close") => open -= 1,
            _ => {}
        }
        most = most.max(open);
    }
    assert!(most <= 5 + 1, "{most} connections at once");
    assert_eq!(proxy.refused(), 0);
}

#[test]
fn spam_and_trash_are_left_out_unless_an_include_names_them() {
    let (env, _proxy) = gmail();
    labelled(&env, &corpus::message(SEED, 1), &["INBOX", ALL_MAIL]);
    labelled(&env, &corpus::message(SEED, 2), &["[Gmail]/Spam"]);
    labelled(&env, &corpus::message(SEED, 3), &["[Gmail]/Trash"]);
    env.sync_ok(&[]);
    in_step(&env);
    let out = env.run(&["folders", "test"]);
    assert!(
        stdout(&out).contains("left out (Gmail's spam); name it in folders.include to sync it"),
        "{}",
        stdout(&out)
    );

    // Asked for by name on the command line, it is still left out, and says why.
    let out = env.run(&["sync", "test", "[Gmail]/Spam"]);
    assert!(
        common::stderr(&out).contains("\"[Gmail]/Spam\" is left out (Gmail's spam)")
            || stdout(&out).contains("\"[Gmail]/Spam\" is left out (Gmail's spam)"),
        "{}{}",
        stdout(&out),
        common::stderr(&out)
    );

    // Named in folders.include, spam is synced; trash, which a wildcard matches, still not.
    env.write_config_with(
        &format!("port = {}", _proxy.port()),
        "[accounts.test.folders]\ninclude = [\"*\", \"[Gmail]/Spam\"]\n",
    );
    env.sync_ok(&[]);
    assert_eq!(copies_of(&env, &["[Gmail]/Spam"], 2).len(), 1);
    assert!(env.local_files("[Gmail]/Trash").is_empty());
    // The server still has both.
    assert_eq!(env.ctl.dump("[Gmail]/Trash").len(), 1);
}

#[test]
fn archiving_a_whole_inbox_on_gmail_is_no_mass_deletion_but_emptying_it_here_is() {
    const N: usize = 20;
    let (env, proxy) = gmail();
    let ops: Vec<serde_json::Value> = (0..N)
        .map(|i| {
            serde_json::json!({
                "op": "append",
                "folder": ALL_MAIL,
                "message": String::from_utf8_lossy(&corpus::message(SEED, i)),
            })
        })
        .collect();
    let uids: Vec<u64> = env
        .ctl
        .run(serde_json::Value::Array(ops))
        .as_array()
        .expect("results")
        .iter()
        .map(|u| u.as_u64().expect("APPENDUID"))
        .collect();
    let to_inbox =
        serde_json::json!([{"op": "copy", "folder": ALL_MAIL, "uids": uids, "to": "INBOX"}]);
    env.ctl.run(to_inbox.clone());
    env.sync_ok(&[]);
    assert_eq!(env.local_files("INBOX").len(), N);

    // In Gmail's web page: select every message of the inbox, archive. The labels go; the
    // valve lets that pass, as no mail goes.
    let inbox: Vec<u32> = env.ctl.dump("INBOX").iter().map(|m| m.uid).collect();
    env.ctl.expunge("INBOX", &inbox);
    let report = sync_json(&env);
    in_step(&env);
    assert!(env.local_files("INBOX").is_empty());
    assert_eq!(env.local_files(ALL_MAIL).len(), N);
    assert!(
        !report.to_string().contains("would be deleted"),
        "{report:#}"
    );

    // Back in the inbox (linked, not downloaded), then the local INBOX emptied by accident:
    // that would strip the label from every message, and is refused.
    env.ctl.run(to_inbox);
    let bodies = proxy.bodies().len();
    env.sync_ok(&[]);
    assert_eq!(proxy.bodies().len(), bodies);
    for file in env.local_files("INBOX") {
        std::fs::remove_file(file).expect("remove");
    }
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(3), "{}", common::stderr(&out));
    assert_eq!(env.ctl.dump("INBOX").len(), N);
}

/// A plain IMAP connection to the stand-in, logged in, for what idlewild does not send.
struct RawImap {
    stream: std::net::TcpStream,
    reader: std::io::BufReader<std::net::TcpStream>,
    tags: usize,
}

impl RawImap {
    /// Connects and logs in; returns the login's completion line too.
    fn login(env: &Env, proxy: &GmailProxy) -> (RawImap, String) {
        let stream = std::net::TcpStream::connect((proxy.host(), proxy.port())).expect("connect");
        let reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
        let mut imap = RawImap {
            stream,
            reader,
            tags: 0,
        };
        let mut greeting = String::new();
        std::io::BufRead::read_line(&mut imap.reader, &mut greeting).expect("greeting");
        let login = format!("LOGIN {} {}", env.dovecot.user(), env.dovecot.password());
        let done = imap.run(&login).pop().expect("completion");
        (imap, done)
    }

    /// One command: the lines answered, up to its tagged completion (the last line).
    fn run(&mut self, command: &str) -> Vec<String> {
        use std::io::{BufRead as _, Write as _};
        self.tags += 1;
        let tag = format!("a{}", self.tags);
        self.stream
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .expect("send");
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            assert!(
                self.reader.read_line(&mut line).expect("read") > 0,
                "closed: {lines:?}"
            );
            let done = line.starts_with(&format!("{tag} "));
            lines.push(line.trim_end().to_owned());
            if done {
                return lines;
            }
        }
    }
}

#[test]
fn the_gmail_stand_in_answers_and_stores_labels_as_gmail_does() {
    // The stand-in itself, for the tests of labels: a message's labels are the folders that
    // hold it, system labels quoted with an escaped backslash, the open folder's own left out.
    let (env, proxy) = gmail();
    env.ctl.create("Work");
    labelled(
        &env,
        &corpus::message(SEED, 1),
        &[ALL_MAIL, "INBOX", "Work"],
    );
    let (mut imap, _) = RawImap::login(&env, &proxy);
    imap.run("SELECT \"[Gmail]/All Mail\"");
    let lines = imap.run("UID FETCH 1:* (X-GM-LABELS)");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("X-GM-LABELS (\"\\\\Inbox\" Work)")),
        "{lines:?}"
    );
    let modseq = |imap: &mut RawImap| -> u64 {
        let lines = imap.run("UID FETCH 1 (MODSEQ)");
        lines
            .iter()
            .find_map(|l| l.split("MODSEQ (").nth(1)?.split(')').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no MODSEQ: {lines:?}"))
    };
    let before = modseq(&mut imap);
    let lines = imap.run("UID STORE 1 +X-GM-LABELS (Family)");
    assert!(
        lines.last().is_some_and(|l| l.contains(" OK ")),
        "{lines:?}"
    );
    // As on Gmail, a change of labels is a change of the message: CONDSTORE sees it.
    assert!(modseq(&mut imap) > before);
    let flags = env.ctl.dump(ALL_MAIL)[0].flags.clone();
    assert!(flags.is_empty(), "the stand-in's touch left {flags:?}");
    imap.run("SELECT INBOX");
    let lines = imap.run("UID FETCH 1:* (X-GM-LABELS)");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("X-GM-LABELS (Family Work)")),
        "{lines:?}"
    );
    let lines = imap.run("UID STORE 1 -X-GM-LABELS (Work)");
    assert!(
        lines.last().is_some_and(|l| l.contains(" OK ")),
        "{lines:?}"
    );
    assert_eq!(env.ctl.dump("Family").len(), 1);
    assert!(env.ctl.dump("Work").is_empty());
    assert_eq!(env.ctl.dump(ALL_MAIL).len(), 1);
}

#[test]
fn the_daemon_comes_back_after_gmail_ends_its_sessions_and_misses_no_mail() {
    use common::daemon::{Daemon, eventually};
    // Gmail ends a session after about an hour with an OAuth token ("* BYE Session expired,
    // please login again."): here every connection ends after its 20th command, IDLE ones too.
    let (env, proxy) = gmail();
    labelled(&env, &corpus::message(SEED, 1), &["INBOX", ALL_MAIL]);
    proxy.control(serde_json::json!({ "bye_after_commands": 20 }));
    let daemon = Daemon::start(&env, None);
    eventually(Duration::from_secs(30), "the first message", || {
        copies_of(&env, &["INBOX"], 1).len() == 1
    });
    for i in 2..6 {
        labelled(&env, &corpus::message(SEED, i), &["INBOX", ALL_MAIL]);
        eventually(Duration::from_secs(30), "each new message", || {
            copies_of(&env, &["INBOX"], i).len() == 1
        });
    }
    // Sessions the server ended: those that reached their 20th command.
    let mut commands: BTreeMap<u64, usize> = BTreeMap::new();
    for event in proxy.events().iter().filter(|e| e.get("cmd").is_some()) {
        *commands
            .entry(event["conn"].as_u64().unwrap_or(0))
            .or_default() += 1;
    }
    let ended = commands.values().filter(|n| **n >= 20).count();
    assert!(
        ended >= 1,
        "no session was ended: {commands:?}\n{}",
        daemon.log_tail()
    );
    drop(daemon);
    proxy.control(serde_json::json!({}));
    env.sync_ok(&[]);
    in_step(&env);
}

/// The folders (the stand-in's labels) that hold the corpus message `i` on the server.
fn server_folders_of(env: &Env, i: usize) -> BTreeSet<String> {
    let message_id = corpus::message_id(SEED, i);
    env.ctl
        .dump_all()
        .into_iter()
        .filter(|(_, messages)| {
            messages
                .iter()
                .any(|m| m.message_id.as_deref() == Some(message_id.as_str()))
        })
        .map(|(folder, _)| folder)
        .collect()
}

/// The keywords of the corpus message `i`'s file in the local All Mail.
fn all_mail_keywords(env: &Env, i: usize) -> Vec<String> {
    let files = copies_of(env, &[ALL_MAIL], i);
    assert_eq!(files.len(), 1, "{files:?}");
    common::local_keywords(&env.maildir().join(ALL_MAIL), &files[0])
}

#[test]
fn labels_are_keywords_of_all_mail_and_travel_both_ways() {
    let (env, proxy) = gmail();
    for folder in ["Work", "Muy Importante"] {
        env.ctl.create(folder);
    }
    labelled(
        &env,
        &corpus::message(SEED, 1),
        &[ALL_MAIL, "INBOX", "Work", "Muy Importante"],
    );
    labelled(&env, &corpus::message(SEED, 2), &[ALL_MAIL]);
    labelled(&env, &corpus::message(SEED, 3), &[ALL_MAIL, "INBOX"]);
    // A keyword of its own (Thunderbird's first tag), which Gmail keeps apart from labels.
    let uid1 = env.ctl.dump(ALL_MAIL)[0].uid;
    env.ctl.store(ALL_MAIL, uid1, &["$label1"], "+");

    env.sync_ok(&[]);
    in_step(&env);
    assert_eq!(
        all_mail_keywords(&env, 1),
        ["$Inbox", "$label1", "Muy=20Importante", "Work"]
    );
    assert!(all_mail_keywords(&env, 2).is_empty());
    // Only All Mail's copies carry labels: the other folders are the labels already.
    let inbox = env.maildir().join("INBOX");
    for file in copies_of(&env, &["INBOX"], 1) {
        assert!(common::local_keywords(&inbox, &file).is_empty());
    }

    // There: message 2 gets a label, as Gmail's web client gives it.
    let (mut imap, _) = RawImap::login(&env, &proxy);
    imap.run("SELECT \"[Gmail]/All Mail\"");
    let uid2 = env.ctl.dump(ALL_MAIL)[1].uid;
    let lines = imap.run(&format!("UID STORE {uid2} +X-GM-LABELS (Later)"));
    assert!(
        lines.last().is_some_and(|l| l.contains(" OK ")),
        "{lines:?}"
    );
    // Here: message 1 leaves the inbox and Work and is labelled Todo; $label1 stays.
    let all = env.maildir().join(ALL_MAIL);
    let file1 = copies_of(&env, &[ALL_MAIL], 1).remove(0);
    common::set_local_keywords(&all, &file1, &["$label1", "Muy=20Importante", "Todo"]);

    env.sync_ok(&[]);
    assert_eq!(all_mail_keywords(&env, 2), ["Later"]);
    assert_eq!(
        server_folders_of(&env, 1),
        [ALL_MAIL, "Muy Importante", "Todo"]
            .map(String::from)
            .into(),
        "labels on the server"
    );
    let flags = &env.ctl.dump(ALL_MAIL)[0].flags;
    assert!(flags.contains(&"$label1".to_owned()), "{flags:?}");
    assert!(
        !flags.iter().any(|f| f == "Todo" || f == "$Inbox"),
        "labels stored as keywords: {flags:?}"
    );

    // The label folders follow: Todo and Later appear here, message 1 leaves INBOX and Work.
    env.sync_ok(&[]);
    let (_, local) = in_step(&env);
    assert_eq!(
        copies_of(&env, &["INBOX", "Work"], 1),
        Vec::<PathBuf>::new()
    );
    assert_eq!(copies_of(&env, &["Todo"], 1).len(), 1);
    assert_eq!(copies_of(&env, &["Later"], 2).len(), 1);
    assert!(local.contains_key("Todo") && local.contains_key("Later"));
    assert_eq!(
        all_mail_keywords(&env, 1),
        ["$label1", "Muy=20Importante", "Todo"]
    );
    // In step: a further run changes nothing on either side.
    let report = sync_json(&env);
    for key in ["flags_remote", "flags_local", "downloaded", "uploaded"] {
        assert_eq!(total(&report, key), 0, "{key}: {report:#}");
    }
}

#[test]
fn a_message_written_into_all_mail_here_goes_up_with_its_labels_and_a_refused_label_stays() {
    let (env, _proxy) = gmail();
    env.ctl.create("Work");
    labelled(&env, &corpus::message(SEED, 1), &[ALL_MAIL, "INBOX"]);
    env.sync_ok(&[]);
    let all = env.maildir().join(ALL_MAIL);
    env.deliver_locally(
        ALL_MAIL,
        "1700000000.M1P1.gmailtest",
        &corpus::message(SEED, 2),
        Some("S"),
    );
    let file = copies_of(&env, &[ALL_MAIL], 2).remove(0);
    common::set_local_keywords(&all, &file, &["$Inbox", "Work", "$label1"]);
    // And a label Gmail will not give (the stand-in, like Gmail, refuses `[Gmail]`, which is
    // no label but the parent of the system folders) on the message already there.
    let file1 = copies_of(&env, &[ALL_MAIL], 1).remove(0);
    common::set_local_keywords(&all, &file1, &["$Inbox", "[Gmail=5D"]);

    let out = env.sync_ok(&[]);
    assert_eq!(
        server_folders_of(&env, 2),
        [ALL_MAIL, "INBOX", "Work"].map(String::from).into(),
        "labels of the uploaded message"
    );
    let uploaded = env
        .ctl
        .dump(ALL_MAIL)
        .into_iter()
        .find(|m| m.message_id.as_deref() == Some(corpus::message_id(SEED, 2).as_str()))
        .expect("uploaded");
    assert!(
        uploaded.flags.contains(&"$label1".to_owned()),
        "{:?}",
        uploaded.flags
    );
    assert!(
        !uploaded.flags.iter().any(|f| f == "Work" || f == "$Inbox"),
        "{:?}",
        uploaded.flags
    );
    // The refused label is said once, kept here, and holds back nothing else.
    let log = common::stderr(&out);
    assert_eq!(log.matches("[Gmail=5D").count(), 1, "{log}");
    assert_eq!(
        server_folders_of(&env, 1),
        [ALL_MAIL, "INBOX"].map(String::from).into()
    );
    assert_eq!(all_mail_keywords(&env, 1), ["$Inbox", "[Gmail=5D"]);

    // Not tried again at every run, and nothing else moves.
    let out = env.sync_ok(&[]);
    assert!(
        !common::stderr(&out).contains("[Gmail=5D"),
        "{}",
        common::stderr(&out)
    );
    assert_eq!(all_mail_keywords(&env, 1), ["$Inbox", "[Gmail=5D"]);
    assert_eq!(all_mail_keywords(&env, 2), ["$Inbox", "$label1", "Work"]);
    env.sync_ok(&[]);
    in_step(&env);
}

#[test]
fn the_notmuch_recipe_turns_all_mail_s_labels_into_tags_and_back_out() {
    let (env, proxy) = gmail();
    env.ctl.create("Work");
    labelled(
        &env,
        &corpus::message(SEED, 1),
        &[ALL_MAIL, "INBOX", "Work"],
    );
    labelled(&env, &corpus::message(SEED, 2), &[ALL_MAIL]);
    env.sync_ok(&[]);

    // A notmuch of its own over the Maildir, tagging new mail `new` and nothing from flags.
    let config = env.dir.path().join("notmuch-config");
    std::fs::write(
        &config,
        format!(
            "[database]\npath={}\n[new]\ntags=new\nignore=dovecot-keywords;dovecot-uidlist\n[maildir]\nsynchronize_flags=false\n[user]\nname=Test\nprimary_email=test@example.com\n",
            env.maildir().display()
        ),
    )
    .expect("notmuch config");
    let notmuch = |args: &[&str]| {
        let out = std::process::Command::new("notmuch")
            .args(args)
            .env("NOTMUCH_CONFIG", &config)
            .output()
            .expect("notmuch (scripts/install-deps.sh installs it)");
        assert!(
            out.status.success(),
            "notmuch {args:?}: {}",
            common::stderr(&out)
        );
        stdout(&out)
    };
    let recipe = || {
        let out = std::process::Command::new(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/notmuch-keywords"),
        )
        .arg(env.maildir().join(ALL_MAIL))
        .env("NOTMUCH_CONFIG", &config)
        .output()
        .expect("run the recipe");
        assert!(out.status.success(), "{}", common::stderr(&out));
    };
    let tags = |i: usize| -> BTreeSet<String> {
        notmuch(&[
            "search",
            "--output=tags",
            &format!(
                "id:{}",
                corpus::message_id(SEED, i).trim_matches(['<', '>'])
            ),
        ])
        .lines()
        .map(str::to_owned)
        .collect()
    };
    notmuch(&["new", "--quiet"]);
    recipe();
    assert_eq!(tags(1), ["inbox", "new", "work"].map(String::from).into());
    assert_eq!(tags(2), ["new"].map(String::from).into());

    // A tag of the reader's own stays; a label taken away on Gmail goes.
    notmuch(&[
        "tag",
        "+mine",
        "--",
        &format!(
            "id:{}",
            corpus::message_id(SEED, 1).trim_matches(['<', '>'])
        ),
    ]);
    let (mut imap, _) = RawImap::login(&env, &proxy);
    imap.run("SELECT \"[Gmail]/All Mail\"");
    let uid1 = env.ctl.dump(ALL_MAIL)[0].uid;
    imap.run(&format!("UID STORE {uid1} -X-GM-LABELS (Work)"));
    env.sync_ok(&[]);
    recipe();
    assert_eq!(tags(1), ["inbox", "mine", "new"].map(String::from).into());
}

#[test]
fn an_upload_cut_off_before_its_labels_keeps_them_and_stores_them_next_time() {
    // An APPEND into All Mail succeeds, and the connection dies before the labels that follow
    // it are stored (as a kill would leave it). The next run finds the copy, and the labels
    // written here must reach Gmail then, not be taken for labels Gmail removed.
    let (env, proxy) = gmail();
    env.ctl.create("Work");
    env.sync_ok(&[]);
    let all = env.maildir().join(ALL_MAIL);
    env.deliver_locally(
        ALL_MAIL,
        "1700000000.M1P1.gmailtest",
        &corpus::message(SEED, 1),
        Some("S"),
    );
    let file = copies_of(&env, &[ALL_MAIL], 1).remove(0);
    common::set_local_keywords(&all, &file, &["$Inbox", "Work"]);
    proxy.control(serde_json::json!({ "bye_on_label_store": true }));
    let out = env.run(&["sync"]);
    assert!(!out.status.success(), "{}", common::stderr(&out));
    assert_eq!(
        server_folders_of(&env, 1),
        [ALL_MAIL].map(String::from).into()
    );

    proxy.control(serde_json::json!({}));
    env.sync_ok(&[]);
    assert_eq!(all_mail_keywords(&env, 1), ["$Inbox", "Work"]);
    assert_eq!(
        server_folders_of(&env, 1),
        [ALL_MAIL, "INBOX", "Work"].map(String::from).into()
    );
    // Uploaded once.
    assert_eq!(env.ctl.dump(ALL_MAIL).len(), 1);
    env.sync_ok(&[]);
    in_step(&env);
}
