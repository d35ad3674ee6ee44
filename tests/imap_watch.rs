//! `Watcher` against a real, private Dovecot: IDLE wake-ups for appends, flag changes and
//! expunges made by an independent client, timeouts, keepalives, a server that dies, changes
//! made between two waits, cancelled waits, and polling where IDLE is not offered.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use idlewild::config::{ImapConfig, Secret, TlsMode};
use idlewild::credentials::Credentials;
use idlewild::model::FolderName;
use idlewild::store::imap::{ImapStore, Wake, Watcher};
use idlewild::store::{Store, StoreError};
use support::corpus;
use support::dovecot::{Dovecot, DovecotOptions};
use support::imapctl::ImapCtl;
use tracing::Instrument;

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

async fn watch(d: &Dovecot, folder: &str) -> Watcher {
    Watcher::connect(&config(d), &FolderName::new(folder).unwrap())
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", d.log()))
}

/// Runs blocking `ImapCtl` work off the async workers and returns when it is done.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work).await.unwrap()
}

/// Appends message `i` to `folder` after `delay`, returning when the APPEND was sent (before
/// the client starts) and when it was done (after the client logged out and exited).
fn append_later(
    ctl: &ImapCtl,
    folder: &'static str,
    i: usize,
    delay: Duration,
) -> tokio::task::JoinHandle<(Instant, Instant)> {
    let ctl = ctl.clone();
    tokio::task::spawn_blocking(move || {
        std::thread::sleep(delay);
        let started = Instant::now();
        ctl.append(folder, &corpus::message(7, i), &[]);
        (started, Instant::now())
    })
}

async fn expect_wake(watcher: &mut Watcher, max: Duration) -> (Wake, Duration) {
    let started = Instant::now();
    let wake = watcher
        .wait(max)
        .await
        .unwrap_or_else(|e| panic!("wait: {e}"));
    (wake, started.elapsed())
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_by_another_client_wake_the_watcher_within_a_second() {
    let d = Dovecot::start().unwrap();
    let ctl = ImapCtl::new(&d);
    let mut watcher = watch(&d, "INBOX").await;
    assert!(watcher.supports_idle());
    assert_eq!(watcher.folder(), &FolderName::inbox());

    let mut after_done = Vec::new();
    let mut after_start = Vec::new();
    for i in 0..10 {
        // Long enough for the watcher to be idling when the message arrives.
        let append = append_later(&ctl, "INBOX", i, Duration::from_millis(300));
        let wake = watcher.wait(Duration::from_secs(10)).await.unwrap();
        let woke = Instant::now();
        let (started, done) = append.await.unwrap();
        assert_eq!(wake, Wake::Changed, "append {i}");
        assert!(
            woke > started,
            "append {i}: woke before the append was sent"
        );
        after_done.push(woke.saturating_duration_since(done));
        after_start.push(woke - started);
    }
    let show = |v: &[Duration]| v.iter().map(|d| ms(*d).to_string()).collect::<Vec<_>>();
    eprintln!(
        "wake-up latency after the APPEND client finished (ms): {:?}",
        show(&after_done)
    );
    eprintln!(
        "wake-up latency after the APPEND client started (ms): {:?}",
        show(&after_start)
    );
    let worst = after_start.iter().max().unwrap();
    assert!(*worst < Duration::from_secs(2), "worst wake-up {worst:?}");
    watcher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flag_change_by_another_client_wakes_the_watcher() {
    let d = Dovecot::start().unwrap();
    let ctl = ImapCtl::new(&d);
    let uid = ctl.append("INBOX", &corpus::message(1, 0), &[]).unwrap();
    let mut watcher = watch(&d, "INBOX").await;

    let store = {
        let ctl = ctl.clone();
        tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_millis(300));
            ctl.store("INBOX", uid, &["\\Flagged"], "+");
        })
    };
    let (wake, took) = expect_wake(&mut watcher, Duration::from_secs(10)).await;
    store.await.unwrap();
    assert_eq!(wake, Wake::Changed);
    assert!(took < Duration::from_secs(3), "took {took:?}");
    watcher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expunge_by_another_client_wakes_the_watcher() {
    let d = Dovecot::start().unwrap();
    let ctl = ImapCtl::new(&d);
    let uid = ctl.append("INBOX", &corpus::message(1, 0), &[]).unwrap();
    ctl.append("INBOX", &corpus::message(1, 1), &[]).unwrap();
    let mut watcher = watch(&d, "INBOX").await;

    let expunge = {
        let ctl = ctl.clone();
        tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_millis(300));
            ctl.expunge("INBOX", &[uid]);
        })
    };
    let (wake, took) = expect_wake(&mut watcher, Duration::from_secs(10)).await;
    expunge.await.unwrap();
    assert_eq!(wake, Wake::Changed);
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(blocking(move || ctl.dump("INBOX").len()).await, 1);
    watcher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_in_other_folders_are_not_changes_and_a_timeout_leaves_the_watcher_usable() {
    let d = Dovecot::start().unwrap();
    let ctl = ImapCtl::new(&d);
    ctl.create("Other");
    let mut watcher = watch(&d, "INBOX").await;

    let other = append_later(&ctl, "Other", 0, Duration::from_millis(200));
    let (wake, took) = expect_wake(&mut watcher, Duration::from_secs(2)).await;
    other.await.unwrap();
    assert_eq!(wake, Wake::Timeout);
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(3),
        "took {took:?}"
    );
    assert!(watcher.is_alive());

    let append = append_later(&ctl, "INBOX", 1, Duration::from_millis(300));
    let (wake, took) = expect_wake(&mut watcher, Duration::from_secs(10)).await;
    append.await.unwrap();
    assert_eq!(wake, Wake::Changed);
    assert!(took < Duration::from_secs(3), "took {took:?}");
    watcher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_that_only_reads_does_not_wake_the_watcher() {
    let d = Dovecot::start().unwrap();
    let ctl = ImapCtl::new(&d);
    for i in 0..3 {
        ctl.append("INBOX", &corpus::message(2, i), &[]);
    }
    let mut watcher = watch(&d, "INBOX").await;
    let (wake, _) = expect_wake(&mut watcher, Duration::from_millis(300)).await;
    assert_eq!(wake, Wake::Timeout);

    // What a sync does on its own connection before it changes anything: SELECT (claiming
    // \Recent) and UID FETCH. Waking up for that would make the daemon sync forever.
    let scan = async {
        let mut store = ImapStore::connect(&config(&d)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let snapshot = store.scan(&FolderName::inbox()).await.unwrap();
        store.close().await;
        snapshot
    };
    let (snapshot, (wake, _)) =
        tokio::join!(scan, expect_wake(&mut watcher, Duration::from_secs(2)));
    assert_eq!(snapshot.messages.len(), 3);
    assert_eq!(wake, Wake::Timeout);
    watcher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dying_server_ends_the_wait_at_once_and_a_new_watcher_works_after_restart() {
    let mut d = Dovecot::start().unwrap();
    let ctl = ImapCtl::new(&d);

    // SIGKILL: the connection breaks without BYE. Then a graceful stop: BYE.
    for how in ["kill", "stop"] {
        let mut watcher = watch(&d, "INBOX").await;
        let waiting = tokio::spawn(async move {
            let started = Instant::now();
            let result = watcher.wait(Duration::from_secs(600)).await;
            (watcher, result, started)
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let stopped = Instant::now();
        match how {
            "kill" => d.kill().unwrap(),
            _ => d.stop().unwrap(),
        }
        let down = stopped.elapsed();
        let (mut watcher, result, started) = tokio::time::timeout(Duration::from_secs(40), waiting)
            .await
            .unwrap_or_else(|_| panic!("{how}: wait did not end"))
            .unwrap();
        let noticed = stopped.elapsed();
        eprintln!(
            "{how}: the server took {} ms to go down, the wait ended after {} ms: {result:?}",
            ms(down),
            ms(noticed)
        );
        assert!(started.elapsed() >= Duration::from_millis(500));
        assert!(
            matches!(
                result,
                Err(StoreError::ConnectionLost { .. } | StoreError::Timeout { .. })
            ),
            "{how}: {result:?}"
        );
        // After SIGKILL the kernel closes the connection at once. A graceful stop takes
        // Dovecot 2.3 from 9 to 15 s here: the master exits within a second, but an imap
        // process in IDLE sends its BYE ("Server shutting down.", logged by Dovecot at the same
        // second) only later; the wait ends as soon as it comes.
        let limit = match how {
            "kill" => Duration::from_secs(2),
            _ => Duration::from_secs(30),
        };
        assert!(noticed < limit, "{how}: took {noticed:?}");
        if how == "stop" {
            assert!(format!("{result:?}").contains("goodbye"), "{result:?}");
        }
        assert!(!watcher.is_alive());
        // Dead for good: the next call fails at once.
        let again =
            tokio::time::timeout(Duration::from_secs(1), watcher.wait(Duration::from_secs(5)))
                .await
                .expect("a dead watcher answers at once");
        assert!(
            matches!(again, Err(StoreError::ConnectionLost { .. })),
            "{again:?}"
        );
        watcher.close().await;

        d.restart().unwrap();
        let mut watcher = watch(&d, "INBOX").await;
        let append = append_later(&ctl, "INBOX", 0, Duration::from_millis(300));
        let (wake, _) = expect_wake(&mut watcher, Duration::from_secs(10)).await;
        append.await.unwrap();
        assert_eq!(wake, Wake::Changed, "{how}: after restart");
        watcher.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_between_two_waits_is_reported_at_once() {
    let d = Dovecot::start().unwrap();
    let ctl = ImapCtl::new(&d);
    let mut watcher = watch(&d, "INBOX").await;
    // Also right after connecting: the watcher is made before the first sync.
    let c = ctl.clone();
    blocking(move || c.append("INBOX", &corpus::message(3, 0), &[])).await;
    let (wake, took) = expect_wake(&mut watcher, Duration::from_secs(10)).await;
    assert_eq!(wake, Wake::Changed);
    // Well below Dovecot's 0.5 s IDLE notification delay: the NOOP before IDLE found it.
    assert!(took < Duration::from_millis(450), "took {took:?}");

    for (i, what) in ["append", "flag", "expunge"].into_iter().enumerate() {
        let (wake, _) = expect_wake(&mut watcher, Duration::from_millis(700)).await;
        assert_eq!(wake, Wake::Timeout, "{what}: nothing happened yet");
        let c = ctl.clone();
        blocking(move || match what {
            "append" => {
                c.append("INBOX", &corpus::message(3, i + 1), &[]);
            }
            "flag" => {
                let uid = c.dump("INBOX")[0].uid;
                c.store("INBOX", uid, &["\\Seen"], "+");
            }
            _ => {
                let uid = c.dump("INBOX")[0].uid;
                c.expunge("INBOX", &[uid]);
            }
        })
        .await;
        let (wake, took) = expect_wake(&mut watcher, Duration::from_secs(10)).await;
        assert_eq!(wake, Wake::Changed, "{what}");
        assert!(took < Duration::from_millis(450), "{what}: took {took:?}");
    }
    watcher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_wait_leaves_the_watcher_usable() {
    let d = Dovecot::start().unwrap();
    let ctl = ImapCtl::new(&d);
    let mut watcher = watch(&d, "INBOX").await;

    // Dropped at various points: during the NOOP, while IDLE is being accepted, while idling,
    // and around the DONE of a short wait.
    let points_us = [0, 100, 300, 1_000, 3_000, 10_000, 200_000];
    for (n, us) in points_us.into_iter().enumerate() {
        let max = if n % 2 == 0 {
            Duration::from_secs(60)
        } else {
            Duration::from_micros(us)
        };
        let cut = tokio::time::timeout(Duration::from_micros(us), watcher.wait(max)).await;
        assert!(
            matches!(cut, Err(_) | Ok(Ok(Wake::Timeout))),
            "dropped after {us} us: {cut:?}"
        );
        assert!(watcher.is_alive(), "dropped after {us} us");
        let (wake, _) = expect_wake(&mut watcher, Duration::from_millis(300)).await;
        assert_eq!(wake, Wake::Timeout, "no change after a drop at {us} us");
    }

    // A change arriving while nobody waits on a dropped IDLE is reported by the next wait.
    let cut = tokio::time::timeout(
        Duration::from_millis(200),
        watcher.wait(Duration::from_secs(60)),
    )
    .await;
    assert!(cut.is_err(), "the wait was dropped mid-IDLE");
    let c = ctl.clone();
    blocking(move || c.append("INBOX", &corpus::message(5, 0), &[])).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (wake, took) = expect_wake(&mut watcher, Duration::from_secs(10)).await;
    assert_eq!(wake, Wake::Changed);
    assert!(took < Duration::from_millis(450), "took {took:?}");

    // A change arriving while a dropped IDLE is resumed wakes it.
    let cut = tokio::time::timeout(
        Duration::from_millis(200),
        watcher.wait(Duration::from_secs(60)),
    )
    .await;
    assert!(cut.is_err());
    let append = append_later(&ctl, "INBOX", 1, Duration::from_millis(300));
    let (wake, took) = expect_wake(&mut watcher, Duration::from_secs(10)).await;
    append.await.unwrap();
    assert_eq!(wake, Wake::Changed);
    assert!(took < Duration::from_secs(3), "took {took:?}");

    // And closing with a dropped IDLE still running ends it properly.
    let _ = tokio::time::timeout(
        Duration::from_millis(200),
        watcher.wait(Duration::from_secs(60)),
    )
    .await;
    let closing = Instant::now();
    watcher.close().await;
    assert!(closing.elapsed() < Duration::from_secs(2));
    assert!(
        !d.log().contains("Disconnected: Connection closed"),
        "close ended IDLE and logged out:\n{}",
        d.log()
    );
}

/// Everything logged in this test binary once [`captured_log`] was first called.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// A global subscriber: a thread-local one (`set_default`) misses events whose call sites
/// other tests' threads reached first, as tracing then caches "no interest" for them.
fn captured_log() -> &'static Captured {
    static LOG: OnceLock<Captured> = OnceLock::new();
    LOG.get_or_init(|| {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(captured.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
        captured
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalives_during_idle_are_not_changes() {
    let d = Dovecot::start_with(DovecotOptions {
        extra_config: vec!["protocol imap {\n  imap_idle_notify_interval = 1 secs\n}".to_owned()],
        ..DovecotOptions::default()
    })
    .unwrap();
    let log = captured_log();

    // Only this test's lines carry the span's name.
    let span = tracing::info_span!("keepalive_probe");
    let (wake, took) = async {
        let mut watcher = watch(&d, "INBOX").await;
        let waited = expect_wake(&mut watcher, Duration::from_millis(3500)).await;
        watcher.close().await;
        waited
    }
    .instrument(span)
    .await;
    assert_eq!(wake, Wake::Timeout);
    assert!(took >= Duration::from_millis(3500), "took {took:?}");

    let all = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let ours: Vec<&str> = all
        .lines()
        .filter(|l| l.contains("keepalive_probe"))
        .collect();
    let keepalives = ours
        .iter()
        .filter(|l| l.contains("Still here") && l.contains("not a change"))
        .count();
    assert!(
        keepalives >= 2,
        "expected keepalives in the log:\n{}",
        ours.join("\n")
    );
    assert!(ours.iter().any(|l| l.contains("LOGIN")), "logging works");
    assert!(!all.contains(d.password()), "the password is in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_idle_the_watcher_polls_with_noop() {
    // A capability list after login without IDLE.
    let caps = "IMAP4rev1 LITERAL+ SASL-IR ENABLE UIDPLUS MOVE CONDSTORE";
    let d = Dovecot::start_with(DovecotOptions {
        extra_config: vec![format!("protocol imap {{\n  imap_capability = {caps}\n}}")],
        ..DovecotOptions::default()
    })
    .unwrap();
    let ctl = ImapCtl::new(&d);
    let mut watcher = watch(&d, "INBOX").await;
    assert!(!watcher.supports_idle());

    let (wake, took) = expect_wake(&mut watcher, Duration::from_secs(1)).await;
    assert_eq!(wake, Wake::Timeout);
    assert!(took >= Duration::from_secs(1), "took {took:?}");

    // Queued before the wait: the first NOOP finds it.
    let c = ctl.clone();
    blocking(move || c.append("INBOX", &corpus::message(9, 0), &[])).await;
    let (wake, took) = expect_wake(&mut watcher, Duration::from_secs(5)).await;
    assert_eq!(wake, Wake::Changed);
    assert!(took < Duration::from_millis(450), "took {took:?}");

    // Arriving during the wait: found by the NOOP at the deadline (min(max, 60 s)).
    let append = append_later(&ctl, "INBOX", 1, Duration::from_millis(300));
    let (wake, took) = expect_wake(&mut watcher, Duration::from_secs(2)).await;
    append.await.unwrap();
    assert_eq!(wake, Wake::Changed);
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(3),
        "took {took:?}"
    );

    // A dropped poll leaves it usable too.
    let cut = tokio::time::timeout(
        Duration::from_millis(100),
        watcher.wait(Duration::from_secs(60)),
    )
    .await;
    assert!(cut.is_err());
    assert!(watcher.is_alive());
    let (wake, _) = expect_wake(&mut watcher, Duration::from_millis(500)).await;
    assert_eq!(wake, Wake::Timeout);
    watcher.close().await;
}

#[tokio::test]
async fn a_missing_folder_is_named() {
    let d = Dovecot::start().unwrap();
    let err = Watcher::connect(&config(&d), &FolderName::new("Nowhere").unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::NoSuchFolder(f) if f.as_str() == "Nowhere"),
        "{err:?}"
    );
}
