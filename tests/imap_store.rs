//! `ImapStore` against a real, private Dovecot: connection security, login errors, folder
//! names, and every `Store` operation, checked through an independent client (`imapctl.py`).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use idlewild::config::{ImapConfig, Secret, TlsMode};
use idlewild::credentials::Credentials;
use idlewild::message::fingerprint;
use idlewild::model::{Flags, FolderName, MsgId};
use idlewild::store::imap::ImapStore;
use idlewild::store::{FlagUpdate, Staged, Store, StoreError};
use support::corpus;
use support::dovecot::Dovecot;
use support::imapctl::ImapCtl;

fn config(d: &Dovecot, tls: TlsMode) -> ImapConfig {
    ImapConfig {
        keywords: Default::default(),
        gmail: None,
        host: d.host().to_owned(),
        port: match tls {
            TlsMode::Implicit => d.tls_port(),
            TlsMode::Starttls | TlsMode::None => d.port(),
        },
        tls,
        user: d.user().to_owned(),
        credentials: Credentials::plain("test", Secret::new(d.password().to_owned())),
        ca_file: Some(d.ca_file()),
        cert_fingerprint: None,
        timeout: Duration::from_secs(20),
        compress: None,
    }
}

fn pin_of(hex: &str) -> [u8; 32] {
    hex::decode(hex).unwrap().try_into().unwrap()
}

/// `sha256:ab:cd:...`, as the error messages and the config spell fingerprints.
fn with_colons(hex: &str) -> String {
    let pairs: Vec<String> = hex
        .as_bytes()
        .chunks(2)
        .map(|p| String::from_utf8(p.to_vec()).unwrap())
        .collect();
    format!("sha256:{}", pairs.join(":"))
}

fn folder(name: &str) -> FolderName {
    FolderName::new(name).unwrap()
}

fn lf(crlf: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(crlf)
        .replace("\r\n", "\n")
        .into_bytes()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

async fn connect(d: &Dovecot) -> ImapStore {
    ImapStore::connect(&config(d, TlsMode::Implicit))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", d.log()))
}

#[tokio::test]
async fn implicit_tls_with_ca_file_lists_folders_in_utf8() {
    let d = Dovecot::start().unwrap();
    let ctl = ImapCtl::new(&d);
    ctl.create("Entwürfe");
    ctl.create("Archive/2019");
    let mut store = connect(&d).await;
    assert!(store.capabilities().idle() && store.capabilities().uidplus());
    assert_eq!(store.delimiter(), Some('/'));
    assert_eq!(
        store.describe(),
        format!("imap://{}@{}:{}", d.user(), d.host(), d.tls_port())
    );
    let folders = store.list_folders().await.unwrap();
    for expected in ["INBOX", "Entwürfe", "Archive/2019"] {
        assert!(
            folders.contains(&folder(expected)),
            "{expected} in {folders:?}"
        );
    }

    // Created by us, seen by the other client under the same name.
    store
        .create_folder(&folder("Gesendet/Übersicht"))
        .await
        .unwrap();
    store.create_folder(&folder("Entwürfe")).await.unwrap(); // exists already: fine
    assert!(
        ctl.list().contains(&"Gesendet/Übersicht".to_owned()),
        "{:?}",
        ctl.list()
    );
    store.close().await;
}

#[tokio::test]
async fn starttls_upgrades_before_login() {
    let d = Dovecot::start().unwrap();
    let mut store = ImapStore::connect(&config(&d, TlsMode::Starttls))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", d.log()));
    let snapshot = store.scan(&FolderName::inbox()).await.unwrap();
    assert!(snapshot.messages.is_empty());
    assert!(snapshot.uid_validity.is_some());
    store.close().await;
    assert!(
        d.log().contains("TLS"),
        "the login was not over TLS:\n{}",
        d.log()
    );
}

#[tokio::test]
async fn a_pinned_certificate_is_accepted_without_a_ca_file() {
    let d = Dovecot::start().unwrap();
    let mut cfg = config(&d, TlsMode::Implicit);
    cfg.ca_file = None;
    cfg.cert_fingerprint = Some(pin_of(&d.cert_sha256()));
    let mut store = ImapStore::connect(&cfg).await.unwrap();
    store.list_folders().await.unwrap();
    store.close().await;
}

#[tokio::test]
async fn a_wrong_pin_is_refused_and_names_the_real_certificate() {
    let d = Dovecot::start().unwrap();
    let mut cfg = config(&d, TlsMode::Implicit);
    cfg.cert_fingerprint = Some([0x42; 32]);
    let e = ImapStore::connect(&cfg).await.unwrap_err();
    assert!(matches!(e, StoreError::Tls { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains(&with_colons(&d.cert_sha256())), "{text}");
    assert!(text.contains("cert_fingerprint"), "{text}");
}

#[tokio::test]
async fn an_untrusted_certificate_error_says_how_to_trust_it() {
    let d = Dovecot::start().unwrap();
    for tls in [TlsMode::Implicit, TlsMode::Starttls] {
        let mut cfg = config(&d, tls);
        cfg.ca_file = None;
        let e = ImapStore::connect(&cfg).await.unwrap_err();
        assert!(matches!(e, StoreError::Tls { .. }), "{e:?}");
        let text = e.to_string();
        assert!(text.contains("UnknownIssuer"), "{text}");
        assert!(text.contains("ca_file"), "{text}");
        assert!(
            text.contains(&format!(
                "cert_fingerprint = \"{}\"",
                with_colons(&d.cert_sha256())
            )),
            "{text}"
        );
    }
}

#[tokio::test]
async fn login_errors_are_typed_and_keep_the_password_out() {
    let d = Dovecot::start().unwrap();
    let mut cfg = config(&d, TlsMode::Implicit);
    cfg.credentials = Credentials::plain("test", Secret::new("not-the-password".to_owned()));
    let e = ImapStore::connect(&cfg).await.unwrap_err();
    let StoreError::Auth { detail, .. } = &e else {
        panic!("{e:?}");
    };
    assert!(detail.contains("Authentication failed"), "{detail}");
    assert!(!format!("{e} {e:?}").contains("not-the-password"));

    // A password command that fails: the error says so, before any connection is made.
    let failing =
        idlewild::credentials::SecretCommand::new(vec!["false".to_owned()], Duration::from_secs(5))
            .unwrap();
    cfg.credentials = Credentials::new(
        "test",
        idlewild::credentials::Auth::Password(idlewild::credentials::PasswordSource::Command(
            failing,
        )),
    );
    let e = ImapStore::connect(&cfg).await.unwrap_err();
    assert!(
        matches!(&e, StoreError::Credentials(c) if c.to_string().contains("the password command of account test (false) ended with exit status: 1")),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_refused_connection_names_the_address() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = ImapConfig {
        keywords: Default::default(),
        gmail: None,
        host: "127.0.0.1".to_owned(),
        port,
        tls: TlsMode::Implicit,
        user: "u".to_owned(),
        credentials: Credentials::plain("test", Secret::new("p".to_owned())),
        ca_file: None,
        cert_fingerprint: None,
        timeout: Duration::from_secs(5),
        compress: None,
    };
    let e = ImapStore::connect(&cfg).await.unwrap_err();
    let StoreError::Connect { address, .. } = &e else {
        panic!("{e:?}");
    };
    assert_eq!(address, &format!("127.0.0.1:{port}"));

    // A name that cannot resolve (RFC 6761 reserves .invalid) fails the same way.
    let cfg = ImapConfig {
        keywords: Default::default(),
        gmail: None,
        host: "imap.idlewild.invalid".to_owned(),
        ..cfg
    };
    let e = ImapStore::connect(&cfg).await.unwrap_err();
    let StoreError::Connect { address, .. } = &e else {
        panic!("{e:?}");
    };
    assert_eq!(address, &format!("imap.idlewild.invalid:{port}"));
}

#[tokio::test]
async fn scan_stage_deliver_flag_delete_and_fingerprint() {
    let d = Dovecot::start().unwrap();
    let ctl = ImapCtl::new(&d);
    let small: Vec<Vec<u8>> = (0..3).map(|i| corpus::message(7, i)).collect();
    let big = corpus::big_message(8, 5 * 1024 * 1024);
    let date = 1_600_000_000;
    let uid_a = ctl
        .append_at("INBOX", &small[0], &["\\Seen"], date)
        .unwrap();
    let uid_b = ctl
        .append("INBOX", &small[1], &["\\Flagged", "$Forwarded"])
        .unwrap();
    let uid_c = ctl.append("INBOX", &small[2], &[]).unwrap();
    let uid_big = ctl.append("INBOX", &big, &["\\Seen"]).unwrap();

    let mut store = connect(&d).await;
    let snapshot = store.scan(&FolderName::inbox()).await.unwrap();
    let status = ctl.status("INBOX");
    assert_eq!(snapshot.uid_validity.unwrap().get(), status.uidvalidity);
    assert_eq!(snapshot.uid_next, Some(status.uidnext));
    assert!(snapshot.highest_modseq.is_some(), "CONDSTORE was used");
    let listed: Vec<(u32, Flags)> = snapshot
        .messages
        .iter()
        .map(|m| (m.id.uid().unwrap().get(), m.flags.clone()))
        .collect();
    assert_eq!(
        listed,
        vec![
            (uid_a, Flags::SEEN),
            (uid_b, Flags::FLAGGED.union(&Flags::FORWARDED)),
            (uid_c, Flags::empty()),
            (uid_big, Flags::SEEN),
        ]
    );

    // Stage everything (one batched fetch for the small ones, partial fetches for the big
    // one), plus a UID that does not exist: it is left out.
    let staging = tempfile::tempdir().unwrap();
    let mut ids: Vec<MsgId> = snapshot.messages.iter().map(|m| m.id.clone()).collect();
    ids.push(MsgId::new("9999").unwrap());
    let staged = store.stage(&ids, staging.path()).await.unwrap();
    assert_eq!(staged.len(), 4);
    let originals = [&small[0], &small[1], &small[2], &big];
    for (s, original) in staged.iter().zip(originals) {
        assert!(s.temporary);
        let content = std::fs::read(&s.path).unwrap();
        assert_eq!(content.len(), lf(original).len(), "{}", s.source_id);
        assert!(
            content == lf(original),
            "staged {} differs from what was appended",
            s.source_id
        );
        assert!(
            s.path
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(".idlewild-stage-")
        );
        let mode = std::fs::metadata(&s.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "staged mail is private");
    }
    assert_eq!(staged[0].internal_date, Some(date));
    assert!(staged.iter().all(|s| s.internal_date.is_some()));
    // The server's body was not marked \Seen by fetching it (BODY.PEEK).
    assert_eq!(
        store.scan(&FolderName::inbox()).await.unwrap().messages[2].flags,
        Flags::empty()
    );

    // Fingerprints from the server equal those of the staged copies, and hash the exact
    // bytes the server holds.
    let prints = store.fingerprints(&ids).await.unwrap();
    assert_eq!(prints.len(), 4);
    let dump = ctl.dump("INBOX");
    for ((id, print), s) in prints.iter().zip(&staged) {
        assert_eq!(id, &s.source_id);
        let of_file = fingerprint(std::fs::File::open(&s.path).unwrap()).unwrap();
        assert_eq!(print, &of_file, "{id}");
        let server = dump
            .iter()
            .find(|m| MsgId::from_uid(idlewild::model::Uid::new(m.uid).unwrap()) == *id)
            .unwrap();
        assert_eq!(hex::encode(print.sha256), server.sha256);
        assert_eq!(print.size, server.size);
        assert_eq!(print.message_id, server.message_id);
    }

    // Deliver a staged copy into another folder: APPENDUID names it, content and date kept.
    store.create_folder(&folder("Archive/2019")).await.unwrap();
    let archive = store.scan(&folder("Archive/2019")).await.unwrap();
    let keep = staging.path().join("keep");
    std::fs::copy(&staged[0].path, &keep).unwrap();
    let kept = Staged {
        source_id: staged[0].source_id.clone(),
        path: keep.clone(),
        temporary: false,
        internal_date: Some(date),
    };
    let new_id = store
        .deliver(&kept, &Flags::SEEN.union(&Flags::ANSWERED), None)
        .await
        .unwrap()
        .expect("Dovecot sends APPENDUID");
    assert!(keep.exists(), "a non-temporary file stays");
    let new_big = store
        .deliver(&staged[3], &Flags::empty(), None)
        .await
        .unwrap()
        .unwrap();
    assert!(
        !staged[3].path.exists(),
        "a temporary file is removed after delivery"
    );
    let archived = ctl.dump("Archive/2019");
    assert_eq!(archived.len(), 2);
    assert_eq!(
        MsgId::from_uid(idlewild::model::Uid::new(archived[0].uid).unwrap()),
        new_id
    );
    assert_eq!(
        archived[0].flags,
        vec!["\\Answered".to_owned(), "\\Seen".to_owned()]
    );
    assert_eq!(archived[0].sha256, sha256_hex(&small[0]));
    assert_eq!(
        MsgId::from_uid(idlewild::model::Uid::new(archived[1].uid).unwrap()),
        new_big
    );
    assert_eq!(archived[1].sha256, sha256_hex(&big));
    assert!(archive.messages.is_empty());
    let rescanned = store.scan(&folder("Archive/2019")).await.unwrap();
    assert_eq!(rescanned.messages.len(), 2);
    let copies = store
        .stage(std::slice::from_ref(&new_id), staging.path())
        .await
        .unwrap();
    assert_eq!(copies[0].internal_date, Some(date));

    // Flags: two messages get the same change in one command each way.
    store.scan(&FolderName::inbox()).await.unwrap();
    let id = |uid: u32| MsgId::from_uid(idlewild::model::Uid::new(uid).unwrap());
    store
        .set_flags(&[
            FlagUpdate {
                id: id(uid_a),
                add: Flags::FLAGGED,
                remove: Flags::SEEN,
            },
            FlagUpdate {
                id: id(uid_c),
                add: Flags::FLAGGED,
                remove: Flags::SEEN,
            },
            FlagUpdate {
                id: id(uid_b),
                add: Flags::DRAFT,
                remove: Flags::FORWARDED,
            },
        ])
        .await
        .unwrap();
    let flags_of = |uid: u32| {
        ctl.dump("INBOX")
            .into_iter()
            .find(|m| m.uid == uid)
            .map(|m| m.flags)
            .unwrap()
    };
    assert_eq!(flags_of(uid_a), vec!["\\Flagged".to_owned()]);
    assert_eq!(
        flags_of(uid_b),
        vec!["\\Draft".to_owned(), "\\Flagged".to_owned()]
    );

    // Delete removes exactly the named message, not another client's \Deleted one.
    ctl.store("INBOX", uid_c, &["\\Deleted"], "+");
    store.delete(&[id(uid_a)]).await.unwrap();
    let left: Vec<u32> = ctl.dump("INBOX").iter().map(|m| m.uid).collect();
    assert_eq!(left, vec![uid_b, uid_c, uid_big]);

    store.close().await;
    let e = store.scan(&FolderName::inbox()).await.unwrap_err();
    assert!(matches!(e, StoreError::ConnectionLost { .. }), "{e:?}");
}

#[tokio::test]
async fn a_dead_connection_stays_dead() {
    let mut d = Dovecot::start().unwrap();
    let mut store = connect(&d).await;
    store.scan(&FolderName::inbox()).await.unwrap();
    // A crash: connections break without a BYE.
    d.kill().unwrap();
    let first = store.scan(&FolderName::inbox()).await.unwrap_err();
    assert!(
        matches!(
            first,
            StoreError::ConnectionLost { .. } | StoreError::Timeout { .. }
        ),
        "{first:?}"
    );
    assert!(!store.is_alive());
    for _ in 0..2 {
        let e = store.list_folders().await.unwrap_err();
        assert!(matches!(e, StoreError::ConnectionLost { .. }), "{e:?}");
    }
}

#[tokio::test]
async fn a_missing_folder_is_reported_as_such() {
    let d = Dovecot::start().unwrap();
    let mut store = connect(&d).await;
    let e = store.scan(&folder("Nowhere")).await.unwrap_err();
    assert!(matches!(e, StoreError::NoSuchFolder(_)), "{e:?}");
    // The session is fine after a NO.
    store.scan(&FolderName::inbox()).await.unwrap();
    let e = store.stage(&[], Path::new("/nonexistent")).await;
    assert!(e.unwrap().is_empty());
}

/// A message of exactly `size` octets in its CRLF form, lines of `fill`.
fn exact_message(size: usize, fill: u8) -> Vec<u8> {
    let mut message = format!("Subject: exactly {size} octets\r\n\r\n").into_bytes();
    while message.len() < size {
        let room = size - message.len();
        // A line of up to 78 octets and its CRLF; the last one fills what is left.
        let line = room.min(80);
        if line >= 3 {
            message.extend(std::iter::repeat_n(fill, line - 2));
            message.extend_from_slice(b"\r\n");
        } else {
            message.extend(std::iter::repeat_n(fill, line));
        }
    }
    message
}

#[tokio::test]
async fn several_big_messages_of_one_batch_come_whole() {
    // Bodies bigger than a chunk come in partial fetches, several messages' chunks in flight
    // at once: each must get its own chunks, in order, and end where it ends, also exactly on
    // a chunk's edge (where the last partial fetch returns nothing).
    let d = Dovecot::start().unwrap();
    let ctl = ImapCtl::new(&d);
    const MIB: usize = 1024 * 1024;
    let messages: Vec<Vec<u8>> = vec![
        corpus::big_message(21, 3 * MIB + MIB / 3),
        corpus::message(22, 0),
        exact_message(2 * MIB, b'e'),
        exact_message(MIB + 1, b'o'),
        corpus::big_message(23, MIB + MIB / 2),
        exact_message(MIB, b'c'),
        corpus::big_message(24, 2 * MIB + 7),
    ];
    for m in &messages {
        ctl.append("INBOX", m, &[]).unwrap();
    }
    let mut store = connect(&d).await;
    let snapshot = store.scan(&FolderName::inbox()).await.unwrap();
    let ids: Vec<MsgId> = snapshot.messages.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids.len(), messages.len());
    let staging = tempfile::tempdir().unwrap();
    let staged = store.stage(&ids, staging.path()).await.unwrap();
    assert_eq!(staged.len(), messages.len());
    for (id, original) in ids.iter().zip(&messages) {
        let s = staged
            .iter()
            .find(|s| &s.source_id == id)
            .unwrap_or_else(|| panic!("{id} was not staged"));
        let content = std::fs::read(&s.path).unwrap();
        assert_eq!(content.len(), lf(original).len(), "message {id}");
        assert!(content == lf(original), "message {id} differs");
    }
    // The session is still in step: another fetch works.
    let again = store.stage(&ids[..1], staging.path()).await.unwrap();
    assert_eq!(std::fs::read(&again[0].path).unwrap(), lf(&messages[0]));
    store.close().await;
}

/// Resident memory while staging a message must not grow with its size: bodies stream to disk
/// in 1 MiB pieces. Run alone for meaningful numbers:
/// `cargo test --test imap_store -- --ignored --nocapture staging_memory`.
#[tokio::test]
#[ignore = "measures process memory; run alone"]
async fn staging_memory_does_not_grow_with_message_size() {
    let d = Dovecot::start().unwrap();
    let ctl = ImapCtl::new(&d);
    let staging = tempfile::tempdir().unwrap();
    let mut peaks = Vec::new();
    for (i, megabytes) in [5usize, 40].into_iter().enumerate() {
        let path: PathBuf = staging.path().join(format!("source-{i}"));
        std::fs::write(
            &path,
            corpus::big_message(i as u64, megabytes * 1024 * 1024),
        )
        .unwrap();
        let uid = ctl.append_file("INBOX", &path, &[]).unwrap();
        std::fs::remove_file(&path).unwrap();

        let mut store = connect(&d).await;
        store.scan(&FolderName::inbox()).await.unwrap();
        let id = MsgId::from_uid(idlewild::model::Uid::new(uid).unwrap());
        let before = rss_kib();
        let (stop, peak) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(before)),
        );
        let sampler = {
            let (stop, peak) = (stop.clone(), peak.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_kib(), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        let staged = store.stage(&[id], staging.path()).await.unwrap();
        stop.store(true, Ordering::Relaxed);
        sampler.join().unwrap();
        let growth = peak.load(Ordering::Relaxed).saturating_sub(before);
        println!(
            "staging a {megabytes} MB message: RSS {before} KiB before, +{growth} KiB at peak"
        );
        peaks.push(growth);
        assert_eq!(staged.len(), 1);
        std::fs::remove_file(&staged[0].path).unwrap();
        store.close().await;
    }
    // Eight times the message, not eight times the memory: a few 1 MiB chunks at most.
    for growth in peaks {
        assert!(growth < 12 * 1024, "RSS grew by {growth} KiB while staging");
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

// ---- a scripted server, for what Dovecot will not do ------------------------------------------

/// How the scripted server behaves.
#[derive(Clone, Copy)]
struct Script {
    greeting: &'static str,
    /// Sent in the answer to SELECT before anything else.
    select_extra: &'static str,
    /// EXISTS in the answer to SELECT; the listing always holds UIDs 3 and 7.
    exists: u32,
}

const PLAIN_SCRIPT: Script = Script {
    greeting: "* OK [CAPABILITY IMAP4rev1 STARTTLS] scripted server ready",
    select_extra: "",
    exists: 2,
};

/// Serves one connection on loopback; returns the port and what APPEND received.
async fn scripted_server(script: Script) -> (u16, tokio::task::JoinHandle<Vec<u8>>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let (read, mut write) = socket.into_split();
        let mut read = BufReader::new(read);
        let mut appended = Vec::new();
        write
            .write_all(format!("{}\r\n", script.greeting).as_bytes())
            .await
            .unwrap();
        let mut line = String::new();
        loop {
            line.clear();
            if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                return appended;
            }
            let (tag, command) = line.trim_end().split_once(' ').unwrap();
            let answer = if command.starts_with("LOGIN") {
                format!("{tag} OK logged in\r\n")
            } else if command == "CAPABILITY" {
                format!("* CAPABILITY IMAP4rev1 UIDPLUS\r\n{tag} OK\r\n")
            } else if command.starts_with("LIST") {
                format!("* LIST (\\Noselect) \"/\" \"\"\r\n{tag} OK\r\n")
            } else if command.starts_with("SELECT") {
                format!(
                    "{}* {} EXISTS\r\n* OK [UIDVALIDITY 5] v\r\n* OK [UIDNEXT 10] n\r\n{tag} OK [READ-WRITE] selected\r\n",
                    script.select_extra, script.exists
                )
            } else if command.starts_with("UID FETCH 1:*") {
                format!(
                    "* 1 FETCH (UID 3 FLAGS (\\Seen))\r\n* 2 FETCH (UID 7 FLAGS ())\r\n{tag} OK\r\n"
                )
            } else if command.starts_with("APPEND") {
                // A synchronizing literal: something unrelated comes before the go-ahead.
                let len: usize = command
                    .rsplit_once('{')
                    .and_then(|(_, n)| n.strip_suffix('}'))
                    .and_then(|n| n.parse().ok())
                    .unwrap();
                write
                    .write_all(b"* 3 EXISTS\r\n+ go ahead\r\n")
                    .await
                    .unwrap();
                appended = vec![0; len];
                read.read_exact(&mut appended).await.unwrap();
                let mut crlf = [0u8; 2];
                read.read_exact(&mut crlf).await.unwrap();
                assert_eq!(&crlf, b"\r\n");
                format!("{tag} OK [APPENDUID 5 9] appended\r\n")
            } else if command == "LOGOUT" {
                format!("* BYE bye\r\n{tag} OK\r\n")
            } else {
                format!("{tag} BAD unknown\r\n")
            };
            write.write_all(answer.as_bytes()).await.unwrap();
        }
    });
    (port, task)
}

fn scripted_config(port: u16, tls: TlsMode) -> ImapConfig {
    ImapConfig {
        keywords: Default::default(),
        gmail: None,
        host: "127.0.0.1".to_owned(),
        port,
        tls,
        user: "u".to_owned(),
        credentials: Credentials::plain("test", Secret::new("p".to_owned())),
        ca_file: None,
        cert_fingerprint: None,
        timeout: Duration::from_secs(5),
        compress: None,
    }
}

#[tokio::test]
async fn an_unparseable_response_kills_the_session_instead_of_answering_empty() {
    // async-imap 0.12's parser cannot read a NAMESPACE response, and a server may send one
    // unasked; after a parse error the crate's stream is gone.
    let (port, _server) = scripted_server(Script {
        select_extra: "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n",
        ..PLAIN_SCRIPT
    })
    .await;
    let mut store = ImapStore::connect(&scripted_config(port, TlsMode::None))
        .await
        .unwrap();
    let e = store.scan(&FolderName::inbox()).await.unwrap_err();
    assert!(matches!(e, StoreError::ConnectionLost { .. }), "{e:?}");
    for _ in 0..2 {
        let e = store.list_folders().await.unwrap_err();
        assert!(matches!(e, StoreError::ConnectionLost { .. }), "{e:?}");
    }
}

#[tokio::test]
async fn a_listing_that_disagrees_with_exists_is_an_error_not_a_snapshot() {
    let (port, _server) = scripted_server(Script {
        exists: 3,
        ..PLAIN_SCRIPT
    })
    .await;
    let mut store = ImapStore::connect(&scripted_config(port, TlsMode::None))
        .await
        .unwrap();
    let e = store.scan(&FolderName::inbox()).await.unwrap_err();
    assert!(matches!(e, StoreError::Protocol { .. }), "{e:?}");
}

#[tokio::test]
async fn append_waits_for_the_continuation_without_literal_plus() {
    let (port, server) = scripted_server(PLAIN_SCRIPT).await;
    let mut store = ImapStore::connect(&scripted_config(port, TlsMode::None))
        .await
        .unwrap();
    let snapshot = store.scan(&FolderName::inbox()).await.unwrap();
    assert_eq!(snapshot.messages.len(), 2);
    assert_eq!(snapshot.messages[0].flags, Flags::SEEN);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m");
    std::fs::write(&path, b"Subject: x\n\nline\n").unwrap();
    let message = Staged {
        source_id: MsgId::new("x").unwrap(),
        path,
        temporary: false,
        internal_date: None,
    };
    let id = store
        .deliver(&message, &Flags::empty(), None)
        .await
        .unwrap();
    assert_eq!(id, Some(MsgId::new("9").unwrap()));
    store.close().await;
    assert_eq!(server.await.unwrap(), b"Subject: x\r\n\r\nline\r\n");
}

#[tokio::test]
async fn starttls_is_required_when_configured() {
    let (port, _server) = scripted_server(Script {
        greeting: "* OK [CAPABILITY IMAP4rev1] no TLS here",
        ..PLAIN_SCRIPT
    })
    .await;
    let e = ImapStore::connect(&scripted_config(port, TlsMode::Starttls))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::Unsupported { what, .. } if what.starts_with("STARTTLS")),
        "{e:?}"
    );
}

#[tokio::test]
async fn the_folder_listing_tells_how_many_messages_each_folder_holds() {
    let d = Dovecot::start().unwrap();
    let ctl = ImapCtl::new(&d);
    ctl.create("Entwürfe");
    for i in 0..3 {
        ctl.append(
            "Entwürfe",
            format!("Subject: {i}\r\n\r\nbody\r\n").as_bytes(),
            &[],
        );
    }
    ctl.append("INBOX", b"Subject: x\r\n\r\nbody\r\n", &[]);
    let mut store = connect(&d).await;
    assert_eq!(
        store.message_count_hint(&folder("INBOX")),
        None,
        "not listed yet"
    );
    store.list_folders().await.unwrap();
    assert_eq!(store.message_count_hint(&folder("Entwürfe")), Some(3));
    assert_eq!(store.message_count_hint(&folder("INBOX")), Some(1));
    // The hint is not the change token: taking the token leaves it.
    store.change_token(&folder("Entwürfe")).await.unwrap();
    assert_eq!(store.message_count_hint(&folder("Entwürfe")), Some(3));
    store.close().await;
}

/// Dovecot answers STATUS (and LIST-STATUS) for the selected folder from the session's view,
/// which only a command such as NOOP brings up to date: a token read that way would still
/// show the folder as it was, and the mail delivered since would be skipped.
async fn token_after_delivery(capabilities: Option<&str>) {
    let d = match capabilities {
        None => Dovecot::start().unwrap(),
        Some(caps) => Dovecot::start_with(support::dovecot::DovecotOptions {
            extra_config: vec![format!("protocol imap {{\n  imap_capability = {caps}\n}}")],
            ..Default::default()
        })
        .unwrap(),
    };
    let ctl = ImapCtl::new(&d);
    ctl.append("INBOX", b"Subject: 1\r\n\r\nbody\r\n", &[]);
    let mut store = connect(&d).await;
    store.list_folders().await.unwrap();
    let before = store.scan(&folder("INBOX")).await.unwrap().token;
    assert!(before.is_some());
    ctl.append("INBOX", b"Subject: 2\r\n\r\nbody\r\n", &[]);
    store.list_folders().await.unwrap();
    let after = store.change_token(&folder("INBOX")).await.unwrap();
    assert_ne!(
        after, before,
        "the token still shows the folder before the delivery"
    );
    store.close().await;
}

#[tokio::test]
async fn a_delivery_to_the_folder_last_listed_changes_its_token() {
    token_after_delivery(None).await;
}

#[tokio::test]
async fn a_delivery_to_the_folder_last_listed_changes_its_token_without_unselect() {
    token_after_delivery(Some(
        "IMAP4rev1 LITERAL+ SASL-IR ENABLE UIDPLUS MOVE CONDSTORE QRESYNC IDLE LIST-EXTENDED LIST-STATUS",
    ))
    .await;
}

/// A sync of one folder asks the server about that folder alone (its STATUS): it is found,
/// its token and count are fresh — also for the folder the session has selected, whose STATUS
/// Dovecot answers from the session's stale view — a folder deleted since the listing is not
/// found, and one the session never listed is not asked about.
#[tokio::test]
async fn a_folder_is_looked_up_alone_with_a_fresh_token_and_count() {
    let d = Dovecot::start().unwrap();
    let ctl = ImapCtl::new(&d);
    for name in ["Entwürfe", "Lists/rust", "100%"] {
        ctl.create(name);
    }
    ctl.append("Entwürfe", b"Subject: 1\r\n\r\nbody\r\n", &[]);
    ctl.append("INBOX", b"Subject: 1\r\n\r\nbody\r\n", &[]);
    let mut store = connect(&d).await;
    assert_eq!(
        store.look_up_folder(&folder("INBOX")).await.unwrap(),
        None,
        "a folder the session never listed is looked up"
    );
    store.list_folders().await.unwrap();
    let drafts = folder("Entwürfe");
    ctl.append("Entwürfe", b"Subject: 2\r\n\r\nbody\r\n", &[]);
    assert_eq!(store.look_up_folder(&drafts).await.unwrap(), Some(true));
    assert_eq!(store.message_count_hint(&drafts), Some(2));
    let looked_up = store.change_token(&drafts).await.unwrap();
    store.list_folders().await.unwrap();
    let listed = store.change_token(&drafts).await.unwrap();
    assert!(listed.is_some());
    assert_eq!(
        looked_up, listed,
        "the lookup left the token of the first listing"
    );

    // The selected folder, delivered to meanwhile.
    let inbox = folder("INBOX");
    store.scan(&inbox).await.unwrap();
    ctl.append("INBOX", b"Subject: 2\r\n\r\nbody\r\n", &[]);
    assert_eq!(store.look_up_folder(&inbox).await.unwrap(), Some(true));
    assert_eq!(store.message_count_hint(&inbox), Some(2));
    let looked_up = store.change_token(&inbox).await.unwrap();
    store.list_folders().await.unwrap();
    assert_eq!(looked_up, store.change_token(&inbox).await.unwrap());

    ctl.delete_folder("Lists/rust");
    assert_eq!(
        store.look_up_folder(&folder("Lists/rust")).await.unwrap(),
        Some(false)
    );
    // A LIST would take the name for a pattern; STATUS does not.
    assert_eq!(
        store.look_up_folder(&folder("100%")).await.unwrap(),
        Some(true)
    );
    assert_eq!(store.message_count_hint(&folder("100%")), Some(0));
    store.close().await;
}
