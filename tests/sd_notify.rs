//! The notification messages, received on a socket the test binds, byte for byte as systemd
//! expects them (sd_notify(3)).

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use idlewild::daemon::notify::{Notifier, watchdog_interval_from};

fn listen(dir: &tempfile::TempDir) -> (UnixDatagram, std::path::PathBuf) {
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    (socket, path)
}

fn recv(socket: &UnixDatagram) -> String {
    let mut buf = vec![0u8; 4096];
    let n = socket.recv(&mut buf).unwrap();
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

fn assert_nothing_pending(socket: &UnixDatagram) {
    socket.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    let pending = socket.recv(&mut buf);
    assert!(
        pending.is_err(),
        "unexpected datagram {:?}",
        pending.map(|n| &buf[..n])
    );
    socket.set_nonblocking(false).unwrap();
}

#[test]
fn each_message_is_one_datagram_in_systemd_format() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, path) = listen(&dir);
    let notifier = Notifier::with_socket(&path);
    assert!(notifier.is_enabled());

    notifier.ready("2 accounts, idling");
    assert_eq!(recv(&socket), "READY=1\nSTATUS=2 accounts, idling\n");

    notifier.status("syncing work/INBOX");
    assert_eq!(recv(&socket), "STATUS=syncing work/INBOX\n");

    notifier.watchdog();
    assert_eq!(recv(&socket), "WATCHDOG=1\n");

    notifier.reloading();
    let reloading = recv(&socket);
    let usec = reloading
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .and_then(|rest| rest.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("unexpected {reloading:?}"));
    // CLOCK_MONOTONIC in microseconds: a plain decimal number.
    assert!(usec.parse::<u64>().unwrap() > 0, "{reloading:?}");

    notifier.stopping();
    assert_eq!(recv(&socket), "STOPPING=1\n");
    assert_nothing_pending(&socket);
}

#[test]
fn status_text_cannot_inject_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, path) = listen(&dir);
    let notifier = Notifier::with_socket(&path);
    notifier.status("folder \"x\nREADY=1\"");
    assert_eq!(recv(&socket), "STATUS=folder \"x READY=1\"\n");
}

#[test]
fn reloading_timestamps_increase() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, path) = listen(&dir);
    let notifier = Notifier::with_socket(&path);
    let usec = |message: String| -> u64 {
        message
            .trim_end()
            .rsplit('=')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    notifier.reloading();
    let first = usec(recv(&socket));
    std::thread::sleep(Duration::from_millis(5));
    notifier.reloading();
    let second = usec(recv(&socket));
    assert!(second >= first + 5_000, "{first} then {second}");
}

#[test]
fn abstract_socket() {
    // The name is unique per test run; the abstract namespace has no files to clean up.
    let name = format!("idlewild-test-notify-{}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = UnixDatagram::bind_addr(&addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let notifier = Notifier::with_socket(format!("@{name}"));
    notifier.ready("up");
    assert_eq!(recv(&socket), "READY=1\nSTATUS=up\n");
}

#[test]
fn unreachable_socket_is_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let notifier = Notifier::with_socket(dir.path().join("nobody-listens.sock"));
    // Each call fails to send; none may panic, and later calls still try.
    notifier.ready("up");
    notifier.watchdog();
    notifier.watchdog();
    notifier.stopping();
}

#[test]
fn disabled_notifier_does_nothing() {
    let notifier = Notifier::disabled();
    assert!(!notifier.is_enabled());
    assert_eq!(notifier.watchdog_interval(), None);
    notifier.ready("up");
    notifier.status("x");
    notifier.watchdog();
    notifier.reloading();
    notifier.stopping();
}

#[test]
fn watchdog_interval_is_half_the_timeout() {
    let me = std::process::id();
    let mine = me.to_string();
    let other = (me + 1).to_string();
    let cases: &[(Option<&str>, Option<&str>, Option<Duration>)] = &[
        (None, None, None),
        (Some("60000000"), None, Some(Duration::from_secs(30))),
        (
            Some("200000"),
            Some(&mine),
            Some(Duration::from_millis(100)),
        ),
        // Inherited from a parent the watchdog is meant for.
        (Some("60000000"), Some(&other), None),
        (Some("60000000"), Some("not a pid"), None),
        (Some("0"), None, None),
        (Some("18446744073709551615"), None, None),
        (Some("-5"), None, None),
        (Some("sixty"), None, None),
    ];
    for &(usec, pid, expected) in cases {
        assert_eq!(
            watchdog_interval_from(usec, pid, me),
            expected,
            "WATCHDOG_USEC={usec:?} WATCHDOG_PID={pid:?}"
        );
    }
}

#[test]
fn watchdog_interval_is_reported() {
    let notifier = Notifier::disabled().with_watchdog_interval(Some(Duration::from_secs(30)));
    assert_eq!(notifier.watchdog_interval(), Some(Duration::from_secs(30)));
}
