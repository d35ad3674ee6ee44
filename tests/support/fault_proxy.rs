//! A TCP proxy on loopback that breaks connections the way networks and servers do: each new
//! connection is given a fault (or none) by a chooser the test sets, and the fault strikes after
//! a number of bytes in one direction — from before the greeting to deep inside a message body.
//!
//! - `Cut`: both sides see an orderly close (FIN), as when a NAT or server drops the session;
//! - `Reset`: the client sees a connection reset (RST);
//! - `Stall`: nothing more is forwarded either way and the connection stays open: a black hole
//!   only the client's own timeout can end;
//! - `LoseReply` (meant for `Way::Up`): everything the client sends still reaches the server,
//!   but the connection is cut the moment the server answers: the server did the command (an
//!   APPEND, a STORE, an EXPUNGE) and the client never hears so;
//! - `Garbage`: random bytes are sent in place of the rest, then the connection is cut. Towards
//!   the server they hold no line end, so they can never complete a command (an APPEND's literal
//!   filled up with noise and ended would be a corrupted message no client could detect: TCP's
//!   own checksums make that case not one a client has to handle).
//!
//! Two threads per connection, one per direction, with short read and write timeouts so that a
//! fault in one direction ends the other promptly; every thread is joined when the proxy drops.

#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Cut,
    Reset,
    Stall,
    Garbage,
    LoseReply,
}

pub const KINDS: [Kind; 5] = [
    Kind::Cut,
    Kind::Reset,
    Kind::Stall,
    Kind::Garbage,
    Kind::LoseReply,
];

/// Which way the bytes that trigger the fault flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub kind: Kind,
    pub way: Way,
    /// Bytes forwarded in `way` before the fault strikes (0: before the first).
    pub after: u64,
}

/// Gives the n-th connection (from 0) its fault, or none.
pub type Chooser = Box<dyn FnMut(usize) -> Option<Fault> + Send>;

/// What the proxy saw since it started or since [`FaultProxy::take_stats`].
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub connections: usize,
    /// Faults that struck, by kind (in [`KINDS`] order).
    pub struck: [usize; 5],
    pub bytes_up: u64,
    pub bytes_down: u64,
}

impl Stats {
    pub fn struck_total(&self) -> usize {
        self.struck.iter().sum()
    }

    pub fn stalls(&self) -> usize {
        self.struck[2]
    }
}

pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    upstream: SocketAddr,
    stop: AtomicBool,
    chooser: Mutex<Chooser>,
    stats: Mutex<Stats>,
    seed: AtomicU64,
    conns: Mutex<Vec<Weak<Conn>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

struct Conn {
    client: TcpStream,
    server: TcpStream,
    done: AtomicBool,
    stalled: AtomicBool,
    reset: AtomicBool,
    /// The server's next answer is to be lost with the connection.
    deaf: AtomicBool,
}

const POLL: Duration = Duration::from_millis(50);

impl FaultProxy {
    /// A proxy on a free loopback port forwarding to `127.0.0.1:upstream_port`, passing every
    /// connection through untouched until a chooser is set.
    pub fn start(upstream_port: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("address").port();
        let shared = Arc::new(Shared {
            upstream: SocketAddr::from(([127, 0, 0, 1], upstream_port)),
            stop: AtomicBool::new(false),
            chooser: Mutex::new(Box::new(|_| None)),
            stats: Mutex::new(Stats::default()),
            seed: AtomicU64::new(0x9e37_79b9_7f4a_7c15),
            conns: Mutex::new(Vec::new()),
            workers: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let shared = shared.clone();
            std::thread::spawn(move || accept_loop(listener, shared))
        };
        FaultProxy {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sets how connections from now on are given their faults.
    pub fn set_chooser(&self, chooser: impl FnMut(usize) -> Option<Fault> + Send + 'static) {
        *lock(&self.shared.chooser) = Box::new(chooser);
    }

    /// Connections from now on pass untouched.
    pub fn heal(&self) {
        self.set_chooser(|_| None);
    }

    /// Ends every open connection now with `kind` (`Cut` or `Reset`).
    pub fn break_all(&self, kind: Kind) {
        let conns: Vec<Arc<Conn>> = lock(&self.shared.conns)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for conn in conns {
            strike(&conn, kind, Way::Down, &self.shared);
        }
    }

    /// The statistics so far, counting afresh from now.
    pub fn take_stats(&self) -> Stats {
        std::mem::take(&mut *lock(&self.shared.stats))
    }

    pub fn stats(&self) -> Stats {
        lock(&self.shared.stats).clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let workers = std::mem::take(&mut *lock(&self.shared.workers));
        for worker in workers {
            let _ = worker.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut n = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(_) => continue,
        };
        let fault = (lock(&shared.chooser))(n);
        n += 1;
        lock(&shared.stats).connections += 1;
        let Ok(server) = TcpStream::connect(shared.upstream) else {
            continue;
        };
        let mut ok = client.set_nonblocking(false).is_ok();
        for s in [&client, &server] {
            ok &= s.set_read_timeout(Some(POLL)).is_ok()
                && s.set_write_timeout(Some(POLL)).is_ok()
                && s.set_nodelay(true).is_ok();
        }
        if !ok {
            continue;
        }
        let conn = Arc::new(Conn {
            client,
            server,
            done: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
            reset: AtomicBool::new(false),
            deaf: AtomicBool::new(false),
        });
        lock(&shared.conns).retain(|c| c.strong_count() > 0);
        lock(&shared.conns).push(Arc::downgrade(&conn));
        let mut workers = lock(&shared.workers);
        workers.retain(|w| !w.is_finished());
        for way in [Way::Up, Way::Down] {
            let (conn, shared) = (conn.clone(), shared.clone());
            let fault = fault.filter(|f| f.way == way);
            workers.push(std::thread::spawn(move || pump(&conn, way, fault, &shared)));
        }
    }
}

fn pump(conn: &Conn, way: Way, mut fault: Option<Fault>, shared: &Shared) {
    let (mut src, mut dst) = match way {
        Way::Up => (&conn.client, &conn.server),
        Way::Down => (&conn.server, &conn.client),
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut seen = 0u64;
    if let Some(f) = fault.filter(|f| f.after == 0) {
        strike(conn, f.kind, way, shared);
        fault = None;
    }
    loop {
        if conn.done.load(Ordering::Relaxed) || shared.stop.load(Ordering::Relaxed) {
            break;
        }
        if conn.stalled.load(Ordering::Relaxed) && way == Way::Down {
            // Nothing comes back; the client's timeout has to notice.
            std::thread::sleep(POLL);
            continue;
        }
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => break,
        };
        if conn.stalled.load(Ordering::Relaxed) {
            // What the client still sends into the black hole is swallowed.
            continue;
        }
        if way == Way::Down && conn.deaf.load(Ordering::Relaxed) {
            conn.done.store(true, Ordering::Relaxed);
            let _ = conn.client.shutdown(Shutdown::Both);
            let _ = conn.server.shutdown(Shutdown::Both);
            break;
        }
        let mut data = &buf[..n];
        let mut strike_now = None;
        if let Some(f) = fault
            && seen + n as u64 >= f.after
        {
            if f.kind != Kind::LoseReply {
                data = &buf[..(f.after - seen) as usize];
            }
            strike_now = Some(f);
            fault = None;
        }
        if !send(conn, &mut dst, data, shared) {
            break;
        }
        seen += data.len() as u64;
        {
            let mut stats = lock(&shared.stats);
            match way {
                Way::Up => stats.bytes_up += data.len() as u64,
                Way::Down => stats.bytes_down += data.len() as u64,
            }
        }
        if let Some(f) = strike_now {
            strike(conn, f.kind, way, shared);
        }
    }
    conn.done.store(true, Ordering::Relaxed);
    if !conn.stalled.load(Ordering::Relaxed) && !conn.reset.load(Ordering::Relaxed) {
        // The other direction ends too: an IMAP connection is no use half-closed.
        let _ = conn.client.shutdown(Shutdown::Write);
        let _ = conn.server.shutdown(Shutdown::Both);
    }
}

/// Writes all of `data`, giving up when the connection is done.
fn send(conn: &Conn, dst: &mut &TcpStream, mut data: &[u8], shared: &Shared) -> bool {
    while !data.is_empty() {
        if conn.done.load(Ordering::Relaxed) || shared.stop.load(Ordering::Relaxed) {
            return false;
        }
        match dst.write(data) {
            Ok(0) => return false,
            Ok(k) => data = &data[k..],
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return false,
        }
    }
    true
}

fn strike(conn: &Conn, kind: Kind, way: Way, shared: &Shared) {
    if conn.done.load(Ordering::Relaxed) || conn.stalled.load(Ordering::Relaxed) {
        return;
    }
    lock(&shared.stats).struck[KINDS.iter().position(|k| *k == kind).unwrap_or(0)] += 1;
    match kind {
        Kind::LoseReply => {
            conn.deaf.store(true, Ordering::Relaxed);
            return;
        }
        Kind::Stall => {
            conn.stalled.store(true, Ordering::Relaxed);
            return;
        }
        Kind::Garbage => {
            let mut rng = shared
                .seed
                .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
                | 1;
            let len = 1 + (rng % 2048) as usize;
            let mut noise = Vec::with_capacity(len);
            for _ in 0..len {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let byte = (rng >> 24) as u8;
                noise.push(match (way, byte) {
                    (Way::Up, b'\r' | b'\n') => b'x',
                    _ => byte,
                });
            }
            let mut dst = match way {
                Way::Up => &conn.server,
                Way::Down => &conn.client,
            };
            let _ = send(conn, &mut dst, &noise, shared);
        }
        Kind::Reset => {
            // With lingering off, the close that comes when both threads let go sends RST.
            conn.reset.store(true, Ordering::Relaxed);
            let _ = socket2::SockRef::from(&conn.client).set_linger(Some(Duration::ZERO));
            let _ = conn.client.shutdown(Shutdown::Read);
        }
        Kind::Cut => {
            let _ = conn.client.shutdown(Shutdown::Both);
        }
    }
    conn.done.store(true, Ordering::Relaxed);
    let _ = conn.server.shutdown(Shutdown::Both);
}
