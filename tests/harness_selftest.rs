//! Checks the test support itself: the private Dovecot, the independent
//! IMAP client and the message corpus. If these fail, every other
//! integration test is suspect.

mod support;

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use support::corpus;
use support::dovecot::{Dovecot, DovecotOptions};
use support::imapctl::ImapCtl;

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn process_alive(pid: u32) -> bool {
    // A zombie still has a /proc entry but is dead for our purposes.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// SHA-256 of the certificate the server really presents, fetched with
/// Python's ssl module (no verification; we compare fingerprints instead).
fn presented_cert_sha256(port: u16) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import hashlib, ssl, sys\n\
             pem = ssl.get_server_certificate(('127.0.0.1', int(sys.argv[1])))\n\
             print(hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest())",
            &port.to_string(),
        ])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn der_sha256(pem: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(pem)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sha256_hex(&out.stdout)
}

#[test]
fn dovecot_lifecycle_and_imapctl() {
    let t = Instant::now();
    let mut dovecot = Dovecot::start().expect("start Dovecot");
    eprintln!("Dovecot started in {:?}", t.elapsed());
    let dir = dovecot.dir().to_path_buf();
    let (port, tls_port) = (dovecot.port(), dovecot.tls_port());
    assert_eq!(dovecot.host(), "127.0.0.1");
    assert_ne!(port, tls_port);
    assert_eq!(
        (dovecot.user(), dovecot.password()),
        ("test", "test-password")
    );

    let ctl = ImapCtl::new(&dovecot);
    let caps = ctl.capabilities();
    for cap in [
        "IDLE",
        "CONDSTORE",
        "QRESYNC",
        "UIDPLUS",
        "MOVE",
        "LITERAL+",
        "ENABLE",
    ] {
        assert!(caps.iter().any(|c| c == cap), "{cap} missing from {caps:?}");
    }
    assert!(
        !caps.iter().any(|c| c.starts_with("COMPRESS")),
        "COMPRESS must not be offered: {caps:?}"
    );

    // Folders, including a non-ASCII and a nested one.
    ctl.create("Entwürfe");
    ctl.create("Archive/2019");
    let folders = ctl.list();
    for f in ["INBOX", "Entwürfe", "Archive/2019"] {
        assert!(
            folders.iter().any(|x| x == f),
            "{f} missing from {folders:?}"
        );
    }
    // Proves the script really speaks modified UTF-7 and "/" nests.
    let maildir = dovecot.maildir("test");
    assert!(maildir.join(".Entw&APw-rfe/cur").is_dir());
    assert!(maildir.join(".Archive.2019/cur").is_dir());

    // Appends: UIDs from APPENDUID, flags, exact bytes.
    let inbox: Vec<Vec<u8>> = (0..5).map(|i| corpus::message(7, i)).collect();
    for (i, msg) in inbox.iter().enumerate() {
        let flags: &[&str] = if i % 2 == 0 { &["\\Seen"] } else { &[] };
        assert_eq!(ctl.append("INBOX", msg, flags), Some(i as u32 + 1));
    }
    let draft = corpus::message(7, 100);
    assert_eq!(
        ctl.append_at("Entwürfe", &draft, &["\\Draft", "$Label1"], 1_500_000_000),
        Some(1)
    );
    let big = corpus::big_message(7, 1_000_000);
    assert_eq!(ctl.append("Archive/2019", &big, &[]), Some(1));

    let dump = ctl.dump("INBOX");
    assert_eq!(dump.len(), 5);
    for (i, (m, msg)) in dump.iter().zip(&inbox).enumerate() {
        assert_eq!(m.uid, i as u32 + 1);
        assert_eq!(m.sha256, sha256_hex(msg), "message {i} changed on the way");
        assert_eq!(m.size, msg.len() as u64);
        assert_eq!(
            m.message_id.as_deref(),
            Some(corpus::message_id(7, i).as_str())
        );
        let want: Vec<String> = if i % 2 == 0 {
            vec!["\\Seen".into()]
        } else {
            vec![]
        };
        assert_eq!(m.flags, want);
    }
    let drafts = ctl.dump("Entwürfe");
    assert_eq!(drafts.len(), 1);
    assert_eq!(drafts[0].flags, vec!["$Label1", "\\Draft"]);
    assert_eq!(drafts[0].sha256, sha256_hex(&draft));
    let archive = ctl.dump("Archive/2019");
    assert_eq!(archive[0].sha256, sha256_hex(&big));

    // Flag changes and expunges.
    ctl.store("INBOX", 2, &["\\Flagged", "\\Answered"], "+");
    ctl.store("INBOX", 1, &["\\Seen"], "-");
    ctl.store("INBOX", 3, &["$Forwarded"], "=");
    ctl.expunge("INBOX", &[4, 5]);
    let dump = ctl.dump("INBOX");
    let flags: Vec<(u32, Vec<String>)> = dump.iter().map(|m| (m.uid, m.flags.clone())).collect();
    assert_eq!(
        flags,
        vec![
            (1, vec![]),
            (2, vec!["\\Answered".into(), "\\Flagged".into()]),
            (3, vec!["$Forwarded".into()]),
        ]
    );
    let status = ctl.status("INBOX");
    assert_eq!((status.messages, status.uidnext), (3, 6));

    // Moves report the new UIDs.
    let moved = ctl
        .move_messages("INBOX", &[3], "Archive/2019")
        .expect("COPYUID");
    assert_eq!(moved.uids, vec![2]);
    assert_eq!(moved.uidvalidity, ctl.status("Archive/2019").uidvalidity);

    let all = ctl.dump_all();
    let names: Vec<&str> = all.keys().map(String::as_str).collect();
    // "Archive" only exists implicitly as a parent and is not selectable.
    assert_eq!(names, vec!["Archive/2019", "Entwürfe", "INBOX"]);

    // TLS: implicit TLS and STARTTLS verify against ca_file, and the server
    // presents exactly the certificate whose fingerprint we expose.
    assert_eq!(dovecot.cert_sha256(), der_sha256(&dovecot.ca_file()));
    assert_eq!(presented_cert_sha256(tls_port), dovecot.cert_sha256());
    assert!(
        dovecot
            .cert_sha256()
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    ImapCtl::new(&dovecot)
        .tls(tls_port, dovecot.ca_file())
        .check_login()
        .expect("login over implicit TLS");
    ImapCtl::new(&dovecot)
        .starttls(dovecot.ca_file())
        .check_login()
        .expect("login after STARTTLS");
    ImapCtl::with_login("localhost", tls_port, "test", "test-password")
        .tls(tls_port, dovecot.ca_file())
        .check_login()
        .expect("certificate valid for the name localhost");
    assert!(
        ImapCtl::with_login("127.0.0.1", port, "test", "wrong")
            .check_login()
            .is_err(),
        "wrong password accepted"
    );

    // More users, also while running.
    dovecot.add_user("second", "pw-2").expect("add user");
    let second = ImapCtl::for_user(&dovecot, "second", "pw-2");
    second.append("INBOX", &corpus::message(8, 0), &[]);
    assert_eq!(second.dump("INBOX").len(), 1);
    assert_eq!(ctl.dump("INBOX").len(), 2, "users must not share mail");

    // doveadm speaks to this instance.
    let out = dovecot.doveadm(&["mailbox", "list", "-u", "test"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Entwürfe"));

    // UIDVALIDITY reset keeps the UIDs.
    let before = ctl.status("Entwürfe");
    let new_uv = dovecot
        .reset_uid_validity("Entwürfe")
        .expect("reset UIDVALIDITY");
    let after = ctl.status("Entwürfe");
    assert_ne!(after.uidvalidity, before.uidvalidity);
    assert_eq!(after.uidvalidity, new_uv);
    assert_eq!(after.messages, before.messages);
    assert_eq!(ctl.dump("Entwürfe")[0].uid, 1);

    // Restart keeps ports and mail.
    let snapshot = ctl.dump_all();
    let t = Instant::now();
    dovecot.restart().expect("restart");
    eprintln!("Dovecot restarted in {:?}", t.elapsed());
    assert_eq!((dovecot.port(), dovecot.tls_port()), (port, tls_port));
    assert_eq!(ctl.dump_all(), snapshot);

    // A crash: the port goes dark, connections break; restart recovers.
    let mut idle = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    dovecot.kill().expect("kill");
    assert!(!dovecot.is_running());
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port still open after kill"
    );
    idle.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = Vec::new();
    if let Err(e) = std::io::Read::read_to_end(&mut idle, &mut buf) {
        // EOF or a reset are both fine; still hanging is not.
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    }
    dovecot.restart().expect("restart after kill");
    assert_eq!(ctl.dump_all(), snapshot);

    // Renumbering: new UIDVALIDITY, UIDs 1..n, same messages.
    let before = ctl.status("Archive/2019");
    let old = ctl.dump("Archive/2019");
    ctl.expunge("Archive/2019", &[1]);
    dovecot.renumber_uids("Archive/2019").expect("renumber");
    let after = ctl.status("Archive/2019");
    assert_ne!(after.uidvalidity, before.uidvalidity);
    let renumbered = ctl.dump("Archive/2019");
    assert_eq!(renumbered.len(), 1);
    assert_eq!(renumbered[0].uid, 1);
    assert_eq!(renumbered[0].sha256, old[1].sha256);

    // Drop stops the server and removes everything.
    let pid = dovecot.master_pid().expect("master pid");
    let t = Instant::now();
    drop(dovecot);
    eprintln!("Dovecot stopped and removed in {:?}", t.elapsed());
    assert!(!process_alive(pid), "master {pid} survived drop");
    assert!(!dir.exists(), "{} survived drop", dir.display());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn panicking_test_still_stops_dovecot() {
    let mut seen = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let dovecot = Dovecot::start().expect("start Dovecot");
        seen = Some((
            dovecot.master_pid().expect("master pid"),
            dovecot.dir().to_path_buf(),
            dovecot.port(),
        ));
        panic!("deliberate panic while Dovecot runs");
    }));
    assert!(result.is_err());
    let (pid, dir, port) = seen.expect("Dovecot had started");
    assert!(!process_alive(pid), "master {pid} survived the panic");
    assert!(!dir.exists(), "{} survived the panic", dir.display());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn parallel_instances_are_independent() {
    let handles: Vec<_> = (0..3)
        .map(|n| {
            std::thread::spawn(move || {
                let dovecot = Dovecot::start_with(DovecotOptions {
                    extra_config: vec![
                        "protocol imap {\n  imap_idle_notify_interval = 5 secs\n}".into(),
                    ],
                    extra_users: vec![("other".into(), "other-pw".into())],
                })
                .expect("start Dovecot");
                let ctl = ImapCtl::new(&dovecot);
                for i in 0..=n {
                    ctl.append("INBOX", &corpus::message(n as u64, i), &[]);
                }
                ImapCtl::for_user(&dovecot, "other", "other-pw")
                    .check_login()
                    .expect("extra user logs in");
                let setting = dovecot
                    .doveadm_ok(&[
                        "config",
                        "-f",
                        "protocol=imap",
                        "-h",
                        "imap_idle_notify_interval",
                    ])
                    .expect("doveconf");
                assert_eq!(setting.trim(), "5 secs");
                (dovecot.port(), ctl.dump("INBOX").len(), dovecot)
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("instance thread"))
        .collect();
    let mut ports: Vec<u16> = results.iter().map(|r| r.0).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 3, "instances share a port");
    for (n, (_, count, _)) in results.iter().enumerate() {
        assert_eq!(*count, n + 1, "instance {n} sees foreign mail");
    }
}

#[test]
fn corpus_is_deterministic_and_well_formed() {
    let mut ids = std::collections::HashSet::new();
    let (mut min, mut max) = (usize::MAX, 0);
    let mut multipart = 0;
    let mut encoded_words = 0;
    for i in 0..300 {
        let m = corpus::message(99, i);
        assert_eq!(
            m,
            corpus::message(99, i),
            "message {i} is not deterministic"
        );
        assert_ne!(m, corpus::message(100, i), "seed is ignored");
        min = min.min(m.len());
        max = max.max(m.len());
        for (n, &b) in m.iter().enumerate() {
            if b == b'\n' {
                assert!(n > 0 && m[n - 1] == b'\r', "bare LF in message {i} at {n}");
            }
            if b == b'\r' {
                assert_eq!(m.get(n + 1), Some(&b'\n'), "bare CR in message {i} at {n}");
            }
        }
        let text = String::from_utf8(m).expect("corpus messages are UTF-8");
        let (head, _) = text.split_once("\r\n\r\n").expect("header/body separator");
        assert!(head.is_ascii(), "raw 8-bit header in message {i}");
        assert!(
            text.lines().all(|l| l.len() <= 998),
            "overlong line in message {i}"
        );
        assert!(ids.insert(corpus::message_id(99, i)));
        assert!(head.contains(&format!("Message-ID: {}", corpus::message_id(99, i))));
        multipart += usize::from(head.contains("multipart/"));
        encoded_words += usize::from(head.contains("=?UTF-8?"));
    }
    assert!(min >= 300, "smallest message {min} B");
    assert!((20_000..=60_000).contains(&max), "largest message {max} B");
    assert!(multipart > 50 && encoded_words > 50, "too little variety");

    let big = corpus::big_message(1, 5_000_000);
    assert!(
        (5_000_000..5_000_200).contains(&big.len()),
        "{} B",
        big.len()
    );
    assert_eq!(big, corpus::big_message(1, 5_000_000));
    assert!(!big.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
}
