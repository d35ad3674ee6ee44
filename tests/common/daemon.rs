//! The daemon as a child process of a test: started with a notification socket the test binds
//! in place of systemd's, logging to a file; killed by PID if the test ends without stopping it.

use std::collections::VecDeque;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Env;

/// The daemon child; killed (SIGKILL, by PID) if the test ends without stopping it.
pub struct Daemon {
    pub child: Child,
    pub notify: Notifications,
    pub log: PathBuf,
}

/// The notification socket, read all the time as systemd does: a datagram socket queues only
/// a few messages (`net.unix.max_dgram_qlen`, 10 here), and a daemon whose messages are not
/// read gets EAGAIN and drops them — STOPPING=1 among them.
pub struct Notifications {
    received: Arc<Mutex<VecDeque<String>>>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl Notifications {
    fn start(socket: UnixDatagram) -> Notifications {
        let received = Arc::new(Mutex::new(VecDeque::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (received, stop) = (received.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = socket.recv(&mut buf) {
                        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                        if let Ok(mut queue) = received.lock() {
                            queue.push_back(msg);
                        }
                    }
                }
            })
        };
        Notifications {
            received,
            stop,
            reader: Some(reader),
        }
    }

    /// The next message, waiting up to 200 ms.
    pub fn next(&self) -> Option<String> {
        let deadline = Instant::now() + Duration::from_millis(200);
        loop {
            if let Some(msg) = self.received.lock().ok().and_then(|mut q| q.pop_front()) {
                return Some(msg);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Notifications {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Daemon {
    pub fn start(env: &Env, watchdog_usec: Option<u64>) -> Daemon {
        Self::start_with(env, watchdog_usec, &[])
    }

    pub fn start_with(env: &Env, watchdog_usec: Option<u64>, vars: &[(&str, &str)]) -> Daemon {
        let socket_path = env.dir.path().join("notify.sock");
        let _ = std::fs::remove_file(&socket_path);
        let notify = UnixDatagram::bind(&socket_path).expect("bind notify socket");
        notify
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let log = env.dir.path().join("daemon.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut cmd = env.command(&["daemon", "--log", "stderr"]);
        cmd.env("NOTIFY_SOCKET", &socket_path)
            .env("IDLEWILD_LOG", "idlewild=debug")
            .env_remove("WATCHDOG_PID")
            .stdout(Stdio::null())
            .stderr(log_file);
        match watchdog_usec {
            Some(usec) => cmd.env("WATCHDOG_USEC", usec.to_string()),
            None => cmd.env_remove("WATCHDOG_USEC"),
        };
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn the daemon");
        Daemon {
            child,
            notify: Notifications::start(notify),
            log,
        }
    }

    /// Waits for a notification line starting with `prefix`; returns every message seen.
    pub fn expect_notify(&self, prefix: &str, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if let Some(msg) = self.notify.next() {
                let hit = msg.lines().any(|l| l.starts_with(prefix));
                seen.push(msg);
                if hit {
                    return seen;
                }
            }
        }
        panic!(
            "no {prefix} within {within:?}; got {seen:?}\n--- log\n{}",
            self.log_tail()
        );
    }

    pub fn signal(&self, sig: &str) {
        let status = std::process::Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// [`eventually`], with the daemon's log when `check` does not hold in time.
    pub fn eventually(&self, within: Duration, what: &str, check: impl FnMut() -> bool) {
        if !poll(within, check) {
            panic!(
                "not within {within:?}: {what}\n--- daemon log\n{}",
                self.log_tail()
            );
        }
    }

    pub fn log_tail(&self) -> String {
        super::tail(&std::fs::read_to_string(&self.log).unwrap_or_default(), 40)
    }

    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not exit\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `check` until it holds or `within` passes.
pub fn eventually(within: Duration, what: &str, check: impl FnMut() -> bool) {
    if !poll(within, check) {
        panic!("not within {within:?}: {what}");
    }
}

/// Whether `check` held before `within` passed.
pub fn poll(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

pub fn local_count(env: &Env) -> usize {
    env.count(&env.local())
}
