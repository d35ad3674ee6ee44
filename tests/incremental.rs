//! Re-syncs that cost what changed, not what the folders hold: unchanged folders skipped on the
//! strength of the change tokens (LIST-STATUS/STATUS with HIGHESTMODSEQ; Maildir directory
//! times), changed ones listed incrementally (QRESYNC, or CONDSTORE with the message count as
//! the check for expunges), and servers without either listed in full — all against a real
//! Dovecot whose capabilities are narrowed per test, with the bytes the server sent taken from
//! its own per-session log line.

mod common;
mod support;

use std::time::{Duration, Instant};

use common::{Env, set_local_flags, stderr};
use support::corpus;
use support::dovecot::DovecotOptions;

const FOLDERS: [&str; 4] = ["INBOX", "Archive/2019", "Entwürfe", "Lists/rust"];

/// Capabilities a server without QRESYNC, or without CONDSTORE too, would announce.
const CONDSTORE_ONLY: &str = "IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE UIDPLUS MOVE CONDSTORE";
const NEITHER: &str = "IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE UIDPLUS MOVE";

fn env_with_capabilities(capabilities: Option<&str>) -> Env {
    let mut options = DovecotOptions::default();
    if let Some(caps) = capabilities {
        options.extra_config.push(format!(
            "protocol imap {{\n  imap_capability = {caps}\n}}\n"
        ));
    }
    Env::with(options)
}

fn fill(env: &Env, seed: u64, n: usize) {
    for f in &FOLDERS[1..] {
        env.ctl.create(f);
    }
    let mut ops = Vec::new();
    for i in 0..n {
        let flags: Vec<&str> = if i % 3 == 0 { vec!["\\Seen"] } else { vec![] };
        ops.push(serde_json::json!({
            "op": "append",
            "folder": FOLDERS[i % FOLDERS.len()],
            "message": String::from_utf8_lossy(&corpus::message(seed, i)),
            "flags": flags,
        }));
    }
    env.ctl.run(serde_json::Value::Array(ops));
}

/// Bytes the server received and sent in the IMAP sessions that ended while `run` ran, from
/// Dovecot's `Logged out in=N out=M` lines (the session after login).
fn wire_bytes(env: &Env, run: impl FnOnce()) -> (u64, u64) {
    let before = env.dovecot.log().len();
    run();
    // The log line is written by Dovecot's log process, a moment after the session ends.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = env.dovecot.log();
        let new = log.get(before..).unwrap_or("");
        let sessions: Vec<(u64, u64)> = new
            .lines()
            .filter(|l| l.contains("Logged out") || l.contains("Disconnected"))
            .filter_map(|l| Some((counter(l, "in=")?, counter(l, "out=")?)))
            .collect();
        if !sessions.is_empty() || Instant::now() > deadline {
            assert!(!sessions.is_empty(), "no session ended in the log:\n{new}");
            return sessions
                .iter()
                .fold((0, 0), |(i, o), (a, b)| (i + a, o + b));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn counter(line: &str, key: &str) -> Option<u64> {
    let at = line.find(&format!(" {key}"))? + 1 + key.len();
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Maildir directory times are trusted once they are two seconds old (see `dir_token`).
fn let_directory_times_settle() {
    std::thread::sleep(Duration::from_millis(2100));
}

#[test]
fn a_resync_without_changes_skips_every_folder_for_a_few_hundred_bytes() {
    let env = env_with_capabilities(None);
    fill(&env, 11, 400);
    env.sync_ok(&[]);
    // Right after the initial sync, whose deliveries changed every Maildir's directory times
    // a moment ago: the file names are still the ones it left, so nothing is listed.
    let skipped_right_after = |what: &str| {
        let out = env.sync_ok(&[]);
        let skipped = stderr(&out).matches("unchanged on both sides").count();
        assert_eq!(
            skipped,
            FOLDERS.len(),
            "every folder is skipped {what}:\n{}",
            stderr(&out)
        );
    };
    let (sent, received) = wire_bytes(&env, || skipped_right_after("right after the initial sync"));
    eprintln!(
        "no-change re-sync right after the initial sync: {sent} bytes sent, {received} received"
    );
    assert!(
        received < 2048 && sent < 1024,
        "a no-change re-sync of 400 messages cost {sent} bytes up and {received} down"
    );
    // And once the directory times are old enough to stand for the folders again.
    let_directory_times_settle();
    skipped_right_after("once the directory times settled");
    let (sent, received) = wire_bytes(&env, || skipped_right_after("on the strength of the times"));
    eprintln!("no-change re-sync: {sent} bytes sent, {received} received");
    // 400 messages listed with their flags would be well over 10 KB.
    assert!(
        received < 2048 && sent < 1024,
        "a no-change re-sync of 400 messages cost {sent} bytes up and {received} down"
    );
    env.assert_in_step();
}

#[test]
fn a_mail_client_s_change_right_after_a_sync_is_seen() {
    // The sync's own deliveries and the client's changes fall within the same tick of the
    // directories' clock: only the file names tell them apart.
    let env = env_with_capabilities(None);
    fill(&env, 16, 24);
    env.sync_ok(&[]);
    let files = env.local_files("Lists/rust");
    set_local_flags(&files[0], "FS");
    std::fs::remove_file(&files[1]).expect("delete a local message");
    let inbox = env.local_files("INBOX");
    let moved = inbox
        .iter()
        .find(|p| p.parent().is_some_and(|d| d.ends_with("new")))
        .expect("a message in new/");
    let name = moved.file_name().and_then(|n| n.to_str()).expect("name");
    let cur = moved
        .parent()
        .and_then(|d| d.parent())
        .expect("folder")
        .join("cur")
        .join(format!("{name}:2,S"));
    std::fs::rename(moved, &cur).expect("read by the client: moved to cur/ and seen");
    env.deliver_locally(
        "Entwürfe",
        "1700000000.local9.host",
        &corpus::message(78, 1),
        None,
    );

    let out = env.sync_ok(&[]);
    let skipped = stderr(&out).matches("unchanged on both sides").count();
    assert_eq!(
        skipped,
        1,
        "only Archive/2019 was left alone by the client:\n{}",
        stderr(&out)
    );
    let (remote, _) = env.assert_in_step();
    assert_eq!(env.count(&remote), 24);
    let has_flag = |folder: &str, file: &std::path::Path, flag: &str| {
        let content = std::fs::read(file).expect("read");
        let id = idlewild::message::message_id(&content).expect("Message-ID");
        env.ctl.dump(folder).iter().any(|m| {
            m.message_id.as_deref() == Some(id.as_str()) && m.flags.iter().any(|f| f == flag)
        })
    };
    let flagged = env
        .local_files("Lists/rust")
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(":2,FS"))
        .expect("the client's file");
    assert!(
        has_flag("Lists/rust", &flagged, "\\Flagged"),
        "the client's flag reached the server"
    );
    assert!(
        has_flag("INBOX", &cur, "\\Seen"),
        "the client's read message is seen on the server"
    );
}

fn changes_travel(capabilities: Option<&str>, expect_in_log: &str, not_in_log: Option<&str>) {
    let env = env_with_capabilities(capabilities);
    fill(&env, 12, 60);
    env.sync_ok(&[]);
    let_directory_times_settle();
    env.sync_ok(&[]);

    // Another client: a flag set, a flag removed, an expunge and a new message in INBOX;
    // a flag set in Lists/rust.
    let inbox = env.ctl.dump("INBOX");
    assert!(inbox.len() >= 10);
    env.ctl.store("INBOX", inbox[1].uid, &["\\Flagged"], "+");
    env.ctl.store("INBOX", inbox[0].uid, &["\\Seen"], "-");
    env.ctl.expunge("INBOX", &[inbox[2].uid]);
    env.ctl
        .append("INBOX", &corpus::message(99, 1), &["\\Answered"]);
    let rust = env.ctl.dump("Lists/rust");
    env.ctl.store("Lists/rust", rust[3].uid, &["\\Seen"], "+");
    // And the mail client: a flag on a local file.
    let file = env
        .local_files("Archive/2019")
        .into_iter()
        .next()
        .expect("a local message");
    set_local_flags(&file, "FS");

    let out = env.sync_ok(&[]);
    let log = stderr(&out);
    assert!(
        log.contains(expect_in_log),
        "expected {expect_in_log:?} in the log:\n{log}"
    );
    if let Some(unexpected) = not_in_log {
        assert!(
            !log.contains(unexpected),
            "did not expect {unexpected:?} in the log:\n{log}"
        );
    }
    let (remote, local) = env.assert_in_step();
    assert_eq!(env.count(&remote), 60);
    assert_eq!(env.count(&local), 60);
    // The next run has nothing to do, and says so.
    let out = env.sync_ok(&["--json"]);
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the --json report is JSON");
    let text = report.to_string();
    for key in ["downloaded", "uploaded", "flags_remote", "flags_local"] {
        assert!(
            !text.contains(&format!("\"{key}\":1")),
            "a re-sync after convergence did something ({key}): {text}"
        );
    }
}

#[test]
fn changes_on_a_qresync_server_arrive_through_the_incremental_listing() {
    // VANISHED reports the expunge: the rebuilt listing needs no full one to back it.
    changes_travel(
        None,
        "incremental listing since MODSEQ",
        Some("do not add up"),
    );
}

#[test]
fn expunges_on_a_condstore_only_server_are_found_by_the_folder_s_uids() {
    // Without QRESYNC the expunge is not reported: the message count says one went, and the
    // folder's UIDs (one UID SEARCH) say which; no message's flags are listed again.
    changes_travel(
        Some(CONDSTORE_ONLY),
        "expunges found by the folder's ids",
        Some("do not add up"),
    );
}

#[test]
fn a_server_without_condstore_is_listed_in_full_and_still_converges() {
    let env = env_with_capabilities(Some(NEITHER));
    fill(&env, 13, 40);
    env.sync_ok(&[]);
    let inbox = env.ctl.dump("INBOX");
    env.ctl.store("INBOX", inbox[0].uid, &["\\Flagged"], "+");
    env.ctl.expunge("INBOX", &[inbox[1].uid]);
    let out = env.sync_ok(&[]);
    assert!(
        !stderr(&out).contains("incremental listing"),
        "no incremental listing without CONDSTORE"
    );
    let (remote, _) = env.assert_in_step();
    assert_eq!(env.count(&remote), 39);
}

#[test]
fn a_local_change_after_skipped_runs_is_seen() {
    let env = env_with_capabilities(None);
    fill(&env, 14, 20);
    env.sync_ok(&[]);
    let_directory_times_settle();
    env.sync_ok(&[]);
    let out = env.sync_ok(&[]);
    assert_eq!(
        stderr(&out).matches("unchanged on both sides").count(),
        FOLDERS.len()
    );
    // A flag change (a rename in cur/) and a deletion, right after a skipped run.
    let files = env.local_files("Entwürfe");
    set_local_flags(&files[0], "T");
    std::fs::remove_file(&files[1]).expect("delete a local message");
    env.deliver_locally(
        "Entwürfe",
        "1700000000.local1.host",
        &corpus::message(77, 3),
        None,
    );
    env.sync_ok(&[]);
    let (remote, _) = env.assert_in_step();
    assert_eq!(env.count(&remote), 20);
}

#[test]
fn when_only_the_server_changed_only_its_changes_are_planned() {
    let env = env_with_capabilities(None);
    fill(&env, 14, 60);
    env.sync_ok(&[]);
    let_directory_times_settle();
    // The mail client marks a message seen and gives it a keyword letter of its own: its file
    // name is not the one idlewild would give it, so a listing taken from the state guesses
    // its name wrong and must find it.
    let file = env
        .local_files("INBOX")
        .into_iter()
        .next()
        .expect("a local message");
    let content = std::fs::read(&file).expect("read");
    let message_id = idlewild::message::message_id(&content).expect("Message-ID");
    let file = set_local_flags(&file, "Sa");
    let_directory_times_settle();
    env.sync_ok(&[]);
    let_directory_times_settle();

    // Only the server changes: flags (on that message too), an expunge, a new message.
    let inbox = env.ctl.dump("INBOX");
    let marked = inbox
        .iter()
        .find(|m| m.message_id.as_deref() == Some(message_id.as_str()))
        .expect("the message is on the server");
    env.ctl.store("INBOX", marked.uid, &["\\Flagged"], "+");
    let others: Vec<_> = inbox.iter().filter(|m| m.uid != marked.uid).collect();
    env.ctl.store("INBOX", others[0].uid, &["\\Answered"], "+");
    env.ctl.expunge("INBOX", &[others[1].uid]);
    env.ctl.append("INBOX", &corpus::message(99, 7), &[]);

    let out = env.sync_ok(&[]);
    let log = stderr(&out);
    // Neither the Maildir nor the folder's records are read: the four messages the server
    // named (three of them known) are looked up, and only they are planned.
    assert!(
        log.lines()
            .any(|l| l.contains("planned from the server's changes only")
                && l.contains("folder=INBOX")
                && l.contains("touched=3")
                && l.contains("arrived=1")
                && l.contains("pairs=15")),
        "only the changes are planned:\n{log}"
    );
    let (remote, local) = env.assert_in_step();
    assert_eq!(env.count(&remote), 60);
    assert_eq!(env.count(&local), 60);
    let unique = file
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split(':').next())
        .expect("unique part")
        .to_owned();
    let renamed: Vec<String> = env
        .local_files("INBOX")
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
        .filter(|n| n.starts_with(&unique))
        .collect();
    assert_eq!(
        renamed,
        vec![format!("{unique}:2,FSa")],
        "the server's flag reached the file, and the client's letter stayed"
    );
}

#[test]
fn a_maildir_changed_by_the_mail_client_is_read_again() {
    let env = env_with_capabilities(None);
    fill(&env, 15, 40);
    env.sync_ok(&[]);
    let_directory_times_settle();
    env.sync_ok(&[]);
    let_directory_times_settle();
    // Both sides change: the server a flag, the client a flag of another message.
    let inbox = env.ctl.dump("INBOX");
    env.ctl.store("INBOX", inbox[0].uid, &["\\Flagged"], "+");
    let file = env
        .local_files("INBOX")
        .into_iter()
        .find(|p| {
            let content = std::fs::read(p).expect("read");
            idlewild::message::message_id(&content) != inbox[0].message_id
        })
        .expect("another local message");
    set_local_flags(&file, "D");
    let_directory_times_settle();
    let out = env.sync_ok(&[]);
    let log = stderr(&out);
    assert!(
        !log.lines()
            .any(|l| l.contains("folder{folder=INBOX ") && l.contains("listed from the state")),
        "a changed Maildir is read:\n{log}"
    );

    env.assert_in_step();
    let after = env.ctl.dump("INBOX");
    assert!(
        after.iter().any(|m| m.flags.iter().any(|f| f == "\\Draft")),
        "the client's flag reached the server"
    );
}

#[test]
fn a_folder_emptied_on_the_server_is_refused_when_only_its_changes_are_planned() {
    // The valve judges the expunges the server reported against the whole folder, though
    // only they are planned.
    let env = env_with_capabilities(None);
    fill(&env, 17, 80);
    env.sync_ok(&[]);
    let local_before = env.local_files("INBOX").len();
    let inbox = env.ctl.dump("INBOX");
    let uids: Vec<_> = inbox.iter().map(|m| m.uid).collect();
    env.ctl.expunge("INBOX", &uids);

    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(
        log.lines()
            .any(|l| l.contains("planned from the server's changes only")
                && l.contains("folder=INBOX")
                && l.contains(&format!("touched={local_before}"))),
        "{log}"
    );
    assert!(log.contains("refused"), "{log}");
    assert_eq!(
        env.local_files("INBOX").len(),
        local_before,
        "nothing deleted here"
    );

    env.sync_ok(&["--allow-mass-delete", "--folder", "INBOX"]);
    assert!(env.local_files("INBOX").is_empty());
    env.assert_in_step();
}

#[test]
fn a_few_expunges_planned_alone_are_not_taken_for_a_mass_deletion() {
    // Twelve of fifty: a quarter of the folder, though all of what is planned.
    let env = env_with_capabilities(None);
    fill(&env, 18, 200);
    env.sync_ok(&[]);
    let inbox = env.ctl.dump("INBOX");
    assert_eq!(inbox.len(), 50);
    let uids: Vec<_> = inbox.iter().take(12).map(|m| m.uid).collect();
    env.ctl.expunge("INBOX", &uids);

    let out = env.sync_ok(&[]);
    assert!(
        stderr(&out)
            .lines()
            .any(|l| l.contains("planned from the server's changes only")
                && l.contains("folder=INBOX")
                && l.contains("touched=12")),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.local_files("INBOX").len(), 38);
    env.assert_in_step();
}

#[test]
fn server_changes_run_after_run_are_planned_alone_each_time() {
    // What a sync of the server's changes writes here keeps the Maildir's digest true, so the
    // next one needs neither the folder's records nor the Maildir either.
    let env = env_with_capabilities(None);
    fill(&env, 19, 80);
    env.sync_ok(&[]);
    let mut unseen_before = None;
    for round in 0..3 {
        let inbox = env.ctl.dump("INBOX");
        env.ctl
            .store("INBOX", inbox[round].uid, &["\\Flagged"], "+");
        // A message that loses its only flag: its file stays in cur/ with an empty flag part,
        // not where a message without flags is first delivered (new/); the next round flags it
        // again, which must find it there without reading the folder.
        if let Some(uid) = unseen_before {
            env.ctl.store("INBOX", uid, &["\\Answered"], "+");
        }
        let seen = inbox
            .iter()
            .skip(3)
            .find(|m| m.flags == ["\\Seen"])
            .expect("a message only seen");
        env.ctl.store("INBOX", seen.uid, &["\\Seen"], "-");
        unseen_before = Some(seen.uid);
        env.ctl.expunge("INBOX", &[inbox[10 + round].uid]);
        env.ctl
            .append("INBOX", &corpus::message(19, 100 + round), &[]);
        let out = env.sync_ok(&[]);
        assert!(
            stderr(&out)
                .lines()
                .any(|l| l.contains("planned from the server's changes only")
                    && l.contains("folder=INBOX")),
            "round {round}:\n{}",
            stderr(&out)
        );
        env.assert_in_step();
    }
}

#[test]
fn when_both_sides_changed_only_the_messages_either_touched_are_planned() {
    let env = env_with_capabilities(None);
    fill(&env, 19, 80);
    env.sync_ok(&[]);
    let_directory_times_settle();
    env.sync_ok(&[]);
    let inbox = env.ctl.dump("INBOX");
    assert_eq!(inbox.len(), 20);

    // The mail client: one message flagged, one deleted, one delivered.
    let files = env.local_files("INBOX");
    let message_id_of = |p: &std::path::Path| {
        idlewild::message::message_id(&std::fs::read(p).expect("read")).expect("Message-ID")
    };
    let flagged_here = message_id_of(&files[0]);
    set_local_flags(&files[0], "F");
    let deleted_here = message_id_of(&files[1]);
    std::fs::remove_file(&files[1]).expect("delete");
    env.deliver_locally(
        "INBOX",
        "1700000000.M1P1.client",
        &corpus::message(91, 1),
        None,
    );
    // The server: another message answered, another expunged, one new.
    let others: Vec<_> = inbox
        .iter()
        .filter(|m| {
            let id = m.message_id.as_deref();
            id != Some(flagged_here.as_str()) && id != Some(deleted_here.as_str())
        })
        .collect();
    env.ctl.store("INBOX", others[0].uid, &["\\Answered"], "+");
    env.ctl.expunge("INBOX", &[others[1].uid]);
    env.ctl.append("INBOX", &corpus::message(92, 1), &[]);
    let_directory_times_settle();

    let out = env.sync_ok(&["--folder", "INBOX"]);
    let log = stderr(&out);
    // The four records either side touched (three of them still on each side) and one new
    // message on each side, out of 20 pairs.
    assert!(
        log.lines()
            .any(|l| l.contains("planned from both sides' changes only")
                && l.contains("folder=INBOX")
                && l.contains("planned=4")
                && l.contains("remote=4")
                && l.contains("local=4")
                && l.contains("pairs=20")),
        "only the changes are planned:\n{log}"
    );
    let (remote, local) = env.assert_in_step();
    assert_eq!(env.count(&remote), env.count(&local));
    let after = env.ctl.dump("INBOX");
    assert_eq!(after.len(), 20, "20 - 1 deleted here - 1 expunged + 2 new");
    let flagged = after
        .iter()
        .find(|m| m.message_id.as_deref() == Some(flagged_here.as_str()))
        .expect("the flagged message");
    assert!(flagged.flags.iter().any(|f| f == "\\Flagged"));
    assert!(
        !after
            .iter()
            .any(|m| m.message_id.as_deref() == Some(deleted_here.as_str())),
        "the deletion reached the server"
    );
}

#[test]
fn a_maildir_emptied_by_the_client_is_refused_when_only_the_changes_are_planned() {
    // The valve judges the deletions against the folder's pairs, though only they are planned.
    let env = env_with_capabilities(None);
    fill(&env, 20, 80);
    env.sync_ok(&[]);
    let_directory_times_settle();
    env.sync_ok(&[]);
    env.ctl
        .store("INBOX", env.ctl.dump("INBOX")[0].uid, &["\\Flagged"], "+");
    let files = env.local_files("INBOX");
    for file in &files[..15] {
        std::fs::remove_file(file).expect("delete");
    }
    let_directory_times_settle();

    let out = env.run(&["sync", "--folder", "INBOX"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(
        log.lines()
            .any(|l| l.contains("planned from both sides' changes only")
                && l.contains("folder=INBOX")
                && l.contains("pairs=20")),
        "{log}"
    );
    assert!(log.contains("refused"), "{log}");
    assert_eq!(
        env.ctl.dump("INBOX").len(),
        20,
        "nothing deleted on the server"
    );

    env.sync_ok(&["--allow-mass-delete", "--folder", "INBOX"]);
    assert_eq!(env.ctl.dump("INBOX").len(), 5);
    env.assert_in_step();
}
