//! Readiness and watchdog notifications to the service manager (sd_notify(3)).
//!
//! The protocol is one datagram of `KEY=VALUE\n` lines sent to the socket named by
//! `NOTIFY_SOCKET`. We speak it ourselves instead of going through the `sd-notify` crate because
//! that crate only reads the socket from the environment (so tests would have to change the test
//! process's environment) and cannot reach abstract-namespace sockets (`@name`), which
//! sd_notify(3) allows and some service managers hand out.
//!
//! Notifications are advisory: a failure to send one is logged once and never stops the daemon.
//! If the manager really depends on them (`Type=notify`, `WatchdogSec=`), it will say so itself
//! by timing the service out.

use std::ffi::OsStr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Sends state changes to the service manager; every call is a no-op when there is none.
#[derive(Debug)]
pub struct Notifier {
    socket: Option<NotifySocket>,
    watchdog: Option<Duration>,
    // Only the first failure is a warning: the watchdog fires every few seconds, and one broken
    // socket must not fill the log.
    warned: AtomicBool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum NotifySocket {
    Path(PathBuf),
    /// The name without the leading `@`.
    Abstract(Vec<u8>),
}

impl NotifySocket {
    /// Parses a `NOTIFY_SOCKET` value: an absolute path, or `@name` for the abstract namespace.
    fn parse(raw: &OsStr) -> Option<NotifySocket> {
        let bytes = raw.as_bytes();
        match bytes.first() {
            Some(b'/') => Some(NotifySocket::Path(PathBuf::from(raw))),
            Some(b'@') if bytes.len() > 1 => Some(NotifySocket::Abstract(bytes[1..].to_vec())),
            _ => None,
        }
    }

    fn send(&self, message: &[u8]) -> std::io::Result<()> {
        let socket = UnixDatagram::unbound()?;
        // Never block the daemon: a manager that does not read (a full receive queue) loses a
        // status line rather than stalling every account.
        socket.set_nonblocking(true)?;
        let sent = match self {
            NotifySocket::Path(path) => socket.send_to(message, path)?,
            NotifySocket::Abstract(name) => {
                socket.send_to_addr(message, &SocketAddr::from_abstract_name(name)?)?
            }
        };
        // A datagram is sent whole or not at all; a short count would mean a truncated message
        // that the manager would misread.
        if sent != message.len() {
            return Err(std::io::Error::other(format!(
                "short write: {sent} of {} bytes",
                message.len()
            )));
        }
        Ok(())
    }
}

impl std::fmt::Display for NotifySocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotifySocket::Path(path) => write!(f, "{}", path.display()),
            NotifySocket::Abstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
        }
    }
}

impl Notifier {
    /// The notifier the service manager asked for through `NOTIFY_SOCKET`, `WATCHDOG_USEC` and
    /// `WATCHDOG_PID`; a disabled one when not started by a manager.
    ///
    /// The variables are left in the environment (removing them is unsafe once threads run);
    /// child processes that must not see them get them removed one by one, as hooks do.
    pub fn from_env() -> Notifier {
        let socket = match std::env::var_os("NOTIFY_SOCKET") {
            None => None,
            Some(raw) if raw.is_empty() => None,
            Some(raw) => {
                let parsed = NotifySocket::parse(&raw);
                if parsed.is_none() {
                    tracing::warn!(
                        socket = %raw.to_string_lossy(),
                        "NOTIFY_SOCKET is neither an absolute path nor an abstract socket name; \
                         not notifying the service manager"
                    );
                }
                parsed
            }
        };
        let watchdog = watchdog_interval_from(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        Notifier {
            socket,
            watchdog,
            warned: AtomicBool::new(false),
        }
    }

    /// A notifier that sends to `path` (a socket path, or `@name` for an abstract socket) and has
    /// no watchdog; for tests and for callers that know the socket some other way.
    pub fn with_socket(path: impl Into<PathBuf>) -> Notifier {
        let path = path.into();
        let socket = NotifySocket::parse(path.as_os_str())
            // A relative path is still a path to the caller: send to it as given.
            .unwrap_or(NotifySocket::Path(path));
        Notifier {
            socket: Some(socket),
            watchdog: None,
            warned: AtomicBool::new(false),
        }
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier {
            socket: None,
            watchdog: None,
            warned: AtomicBool::new(false),
        }
    }

    /// Sets the keep-alive interval [`Notifier::watchdog_interval`] reports.
    pub fn with_watchdog_interval(mut self, interval: Option<Duration>) -> Notifier {
        self.watchdog = interval;
        self
    }

    /// Whether a service manager is listening at all.
    pub fn is_enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// Start-up (or a reload) is complete: `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}\n", one_line(status)));
    }

    /// A free-form status line, shown by `systemctl status`.
    pub fn status(&self, text: &str) {
        self.send(&format!("STATUS={}\n", one_line(text)));
    }

    /// Keep-alive for `WatchdogSec=`. Call it only while the daemon is actually making progress,
    /// so that a hung daemon is restarted.
    pub fn watchdog(&self) {
        self.send("WATCHDOG=1\n");
    }

    /// The configuration is being reloaded; follow with [`Notifier::ready`] when done.
    ///
    /// `MONOTONIC_USEC` lets the manager tell this reload from an earlier one (systemd ≥ 253
    /// requires it with `Type=notify-reload`; older managers ignore it).
    pub fn reloading(&self) {
        match monotonic_usec() {
            Some(usec) => self.send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}\n")),
            None => self.send("RELOADING=1\n"),
        }
    }

    /// Shutdown has begun.
    pub fn stopping(&self) {
        self.send("STOPPING=1\n");
    }

    /// How often to call [`Notifier::watchdog`]: half the manager's timeout, as sd_watchdog_enabled(3)
    /// recommends, so one late tick is not yet fatal. `None` when no watchdog is wanted.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    fn send(&self, message: &str) {
        let Some(socket) = &self.socket else {
            return;
        };
        if let Err(error) = socket.send(message.as_bytes()) {
            let kind = message.split('=').next().unwrap_or_default();
            if self.warned.swap(true, Ordering::Relaxed) {
                tracing::debug!(%socket, %error, kind, "cannot notify the service manager");
            } else {
                tracing::warn!(
                    %socket,
                    %error,
                    kind,
                    "cannot notify the service manager (further failures are logged at debug level)"
                );
            }
        }
    }
}

/// The keep-alive interval for the given `WATCHDOG_USEC` and `WATCHDOG_PID` values, following
/// sd_watchdog_enabled(3): no watchdog unless the timeout is a positive number of microseconds
/// and `WATCHDOG_PID`, when set, names this process (a child that inherited the variables must not
/// answer for its parent). The interval is half the timeout.
pub fn watchdog_interval_from(
    watchdog_usec: Option<&str>,
    watchdog_pid: Option<&str>,
    own_pid: u32,
) -> Option<Duration> {
    let usec: u64 = watchdog_usec?.trim().parse().ok()?;
    // systemd treats 0 and "infinity" (u64::MAX) as invalid rather than as "no timeout".
    if usec == 0 || usec == u64::MAX {
        return None;
    }
    if let Some(pid) = watchdog_pid {
        let pid: u32 = pid.trim().parse().ok()?;
        if pid != own_pid {
            return None;
        }
    }
    Some(Duration::from_micros(usec) / 2)
}

/// STATUS= ends at the first newline; anything after it would be read as further keys.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares `MONOTONIC_USEC` against.
/// `std::time::Instant` reads the same clock but does not expose its value.
fn monotonic_usec() -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes to the timespec passed, which outlives the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return None;
    }
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u64::try_from(ts.tv_nsec).ok()?;
    Some(secs * 1_000_000 + nanos / 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_values() {
        assert_eq!(
            NotifySocket::parse(OsStr::new("/run/user/1000/systemd/notify")),
            Some(NotifySocket::Path("/run/user/1000/systemd/notify".into()))
        );
        assert_eq!(
            NotifySocket::parse(OsStr::new("@/org/freedesktop/systemd1/notify/1")),
            Some(NotifySocket::Abstract(
                b"/org/freedesktop/systemd1/notify/1".to_vec()
            ))
        );
        assert_eq!(NotifySocket::parse(OsStr::new("@")), None);
        assert_eq!(NotifySocket::parse(OsStr::new("relative/sock")), None);
        assert_eq!(NotifySocket::parse(OsStr::new("vsock:2:1234")), None);
    }

    #[test]
    fn status_stays_on_one_line() {
        assert_eq!(one_line("a\nREADY=1\r\nb"), "a READY=1  b");
    }

    #[test]
    fn monotonic_clock_moves_forward() {
        let a = monotonic_usec().unwrap();
        std::thread::sleep(Duration::from_millis(2));
        let b = monotonic_usec().unwrap();
        assert!(b > a, "{a} then {b}");
    }

    /// Regression: a manager that stops reading filled the socket's queue and blocked the
    /// daemon's main task on the next status line, stalling every account.
    #[test]
    fn a_full_notification_queue_never_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let _unread = UnixDatagram::bind(&path).unwrap();
        let socket = NotifySocket::Path(path);
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let failures = (0..2000)
                .filter(|_| socket.send(b"STATUS=x").is_err())
                .count();
            let _ = done.send(failures);
        });
        let failures = finished
            .recv_timeout(Duration::from_secs(10))
            .expect("sending blocked on a full queue");
        assert!(failures > 0, "the queue never filled up");
    }
}
