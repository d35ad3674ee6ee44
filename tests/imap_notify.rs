//! `NotifyWatcher` against a real, private Dovecot: one NOTIFY connection reports appends, flag
//! changes and expunges in several folders (one with a non-ASCII name) by folder, timeouts leave
//! it usable, and a killed server ends the wait at once.

mod support;

use std::time::{Duration, Instant};

use idlewild::config::{ImapConfig, Secret, TlsMode};
use idlewild::credentials::Credentials;
use idlewild::model::FolderName;
use idlewild::store::StoreError;
use idlewild::store::imap::NotifyWatcher;
use support::corpus;
use support::dovecot::Dovecot;
use support::imapctl::ImapCtl;

fn config(d: &Dovecot) -> ImapConfig {
    ImapConfig {
        keywords: Default::default(),
        gmail: None,
        host: d.host().to_owned(),
        port: d.tls_port(),
        tls: TlsMode::Implicit,
        user: d.user().to_owned(),
        credentials: Credentials::plain("test", Secret::new(d.password().to_owned())),
        ca_file: Some(d.ca_file()),
        cert_fingerprint: None,
        timeout: Duration::from_secs(10),
        compress: None,
    }
}

fn folder(name: &str) -> FolderName {
    FolderName::new(name).unwrap()
}

const FOLDERS: [&str; 3] = ["INBOX", "Work", "Entwürfe"];

/// A Dovecot with the folders of [`FOLDERS`], and a watcher on all of them.
async fn start() -> (Dovecot, ImapCtl, NotifyWatcher) {
    let d = Dovecot::start().unwrap();
    let ctl = ImapCtl::new(&d);
    ctl.create("Work");
    ctl.create("Entwürfe");
    let caps = ctl.capabilities();
    assert!(
        caps.iter().any(|c| c.eq_ignore_ascii_case("NOTIFY")),
        "the test server offers NOTIFY: {caps:?}"
    );
    let folders: Vec<FolderName> = FOLDERS.iter().map(|f| folder(f)).collect();
    let watcher = NotifyWatcher::connect(&config(&d), &folders)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", d.log()));
    (d, ctl, watcher)
}

/// Runs `change` after `delay` on a blocking thread; returns when it was started.
fn later(
    delay: Duration,
    change: impl FnOnce() + Send + 'static,
) -> tokio::task::JoinHandle<Instant> {
    tokio::task::spawn_blocking(move || {
        std::thread::sleep(delay);
        let started = Instant::now();
        change();
        started
    })
}

async fn wait(watcher: &mut NotifyWatcher, max: Duration) -> (Vec<FolderName>, Duration) {
    let started = Instant::now();
    let changed = watcher
        .wait(max)
        .await
        .unwrap_or_else(|e| panic!("wait: {e}"));
    (changed, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_in_two_folders_are_reported_by_folder() {
    let (_d, ctl, mut watcher) = start().await;
    let mut latencies = Vec::new();
    for (i, name) in ["Work", "Entwürfe", "INBOX", "Entwürfe"]
        .into_iter()
        .enumerate()
    {
        let c = ctl.clone();
        let append = later(Duration::from_millis(300), move || {
            c.append(name, &corpus::message(4, i), &[]);
        });
        let changed = watcher.wait(Duration::from_secs(10)).await.unwrap();
        let woke = Instant::now();
        let started = append.await.unwrap();
        assert_eq!(changed, vec![folder(name)], "append {i} to {name}");
        latencies.push((woke - started).as_millis());
    }
    eprintln!("NOTIFY wake-up latency after the APPEND client started (ms): {latencies:?}");
    assert!(latencies.iter().all(|ms| *ms < 2000), "{latencies:?}");
    watcher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flag_changes_and_expunges_are_reported() {
    let (_d, ctl, mut watcher) = start().await;
    let uid = ctl.append("Entwürfe", &corpus::message(5, 0), &[]).unwrap();
    ctl.append("Entwürfe", &corpus::message(5, 1), &[]);
    let uid2 = ctl.append("Work", &corpus::message(5, 2), &[]).unwrap();
    // The appends made before the wait are reported at once.
    let (changed, took) = wait(&mut watcher, Duration::from_secs(10)).await;
    assert_eq!(changed, vec![folder("Entwürfe"), folder("Work")]);
    assert!(took < Duration::from_millis(450), "took {took:?}");
    let (changed, _) = wait(&mut watcher, Duration::from_millis(700)).await;
    assert!(changed.is_empty(), "{changed:?}");

    let c = ctl.clone();
    let store = later(Duration::from_millis(300), move || {
        c.store("Entwürfe", uid, &["\\Flagged"], "+");
    });
    let (changed, took) = wait(&mut watcher, Duration::from_secs(10)).await;
    store.await.unwrap();
    eprintln!("flag change reported after {} ms", took.as_millis());
    assert_eq!(changed, vec![folder("Entwürfe")]);
    assert!(took < Duration::from_secs(3), "took {took:?}");

    let c = ctl.clone();
    let expunge = later(Duration::from_millis(300), move || {
        c.expunge("Work", &[uid2]);
    });
    let (changed, took) = wait(&mut watcher, Duration::from_secs(10)).await;
    expunge.await.unwrap();
    eprintln!("expunge reported after {} ms", took.as_millis());
    assert_eq!(changed, vec![folder("Work")]);
    assert!(took < Duration::from_secs(3), "took {took:?}");
    watcher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_is_empty_and_unwatched_folders_are_not_reported() {
    let (_d, ctl, mut watcher) = start().await;
    ctl.create("Elsewhere");
    let c = ctl.clone();
    let other = later(Duration::from_millis(200), move || {
        c.append("Elsewhere", &corpus::message(6, 0), &[]);
    });
    let (changed, took) = wait(&mut watcher, Duration::from_secs(2)).await;
    other.await.unwrap();
    assert!(changed.is_empty(), "{changed:?}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(3),
        "took {took:?}"
    );
    assert!(watcher.is_alive());

    let c = ctl.clone();
    let append = later(Duration::from_millis(300), move || {
        c.append("Work", &corpus::message(6, 1), &[]);
    });
    let (changed, _) = wait(&mut watcher, Duration::from_secs(10)).await;
    append.await.unwrap();
    assert_eq!(changed, vec![folder("Work")]);

    // A wait dropped mid-IDLE leaves it usable, and what arrives meanwhile is kept.
    let cut = tokio::time::timeout(
        Duration::from_millis(200),
        watcher.wait(Duration::from_secs(60)),
    )
    .await;
    assert!(cut.is_err());
    let c = ctl.clone();
    later(Duration::ZERO, move || {
        c.append("Entwürfe", &corpus::message(6, 2), &[]);
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (changed, took) = wait(&mut watcher, Duration::from_secs(10)).await;
    assert_eq!(changed, vec![folder("Entwürfe")]);
    assert!(took < Duration::from_millis(450), "took {took:?}");
    watcher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_ends_the_wait_at_once() {
    let (mut d, _ctl, watcher) = start().await;
    let waiting = tokio::spawn(async move {
        let mut watcher = watcher;
        let result = watcher.wait(Duration::from_secs(600)).await;
        (watcher, result)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = Instant::now();
    d.kill().unwrap();
    let (mut watcher, result) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the wait ended")
        .unwrap();
    let noticed = killed.elapsed();
    eprintln!("killed server noticed after {} ms", noticed.as_millis());
    assert!(noticed < Duration::from_secs(2), "took {noticed:?}");
    assert!(
        matches!(result, Err(StoreError::ConnectionLost { .. })),
        "{result:?}"
    );
    assert!(!watcher.is_alive());
    let again = watcher.wait(Duration::from_secs(1)).await;
    assert!(
        matches!(again, Err(StoreError::ConnectionLost { .. })),
        "{again:?}"
    );
}

#[tokio::test]
async fn without_notify_connect_says_unsupported() {
    let caps = "IMAP4rev1 LITERAL+ SASL-IR ENABLE UIDPLUS MOVE CONDSTORE IDLE";
    let d = Dovecot::start_with(support::dovecot::DovecotOptions {
        extra_config: vec![format!("protocol imap {{\n  imap_capability = {caps}\n}}")],
        ..Default::default()
    })
    .unwrap();
    let err = NotifyWatcher::connect(&config(&d), &[FolderName::inbox()])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unsupported { .. }), "{err:?}");
}
