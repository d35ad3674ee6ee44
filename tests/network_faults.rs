//! Syncs through a network that breaks: every connection of a run may be cut, reset, stalled or
//! fed garbage, or lose the server's answer, after a random number of bytes either way (from before the greeting to deep
//! inside a 2.5 MB body), with changes on both sides between runs. Then one clean run straight
//! to the server: every message is exactly once on both sides, every flag change made on either
//! side is on both, and no faulted run outlived what its timeouts allow.
//!
//! Figures are printed at the end (run with `--nocapture` to see them; `FAULT_DEBUG=1` prints
//! each run's faults and errors).

mod common;
mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::{
    Env, Expected, expect_message as add, holds, set_local_flags, try_set_local_flags,
    unexpect_message as remove,
};
use idlewild::model::Flags;
use support::corpus::{self, Rng};
use support::fault_proxy::{Fault, FaultProxy, KINDS, Kind, Stats, Way};

/// The account's `timeout` in these tests, in seconds: what a stalled read may cost.
const TIMEOUT: u64 = 2;
/// Messages over the IMAP store's 1 MiB fetch chunk, so faults land mid-literal and between
/// the chunks of one message.
const BIG: usize = 2_500_000;

/// Flags (bits of [`Flags`]) a message must carry at the end, by Message-ID.
type MustHave = BTreeMap<String, u8>;

/// Checks both sides against `expected` and `must_have`; returns the message copies checked.
fn check(env: &Env, expected: &Expected, must_have: &MustHave) -> usize {
    let (remote, local) = env.assert_in_step();
    let mut checked = 0;
    for (side, name) in [(&remote, "server"), (&local, "Maildir")] {
        checked += holds(side, name, expected).unwrap_or_else(|e| panic!("{e}"));
        for (id, bits) in must_have {
            let seen = side
                .values()
                .flatten()
                .find(|m| m.message_id.as_deref() == Some(id.as_str()))
                .unwrap_or_else(|| panic!("{name}: {id} is gone"));
            assert_eq!(
                seen.flags & bits,
                *bits,
                "{name}: {id} lost a flag change (has {:#x}, must have {bits:#x})",
                seen.flags
            );
        }
    }
    checked
}

/// A fault of `kind` for a connection, or none (one in seven passes untouched), mostly on the
/// server's side (where the bodies flow), after a number of bytes spread evenly over the
/// orders of magnitude from 0 to 4 MiB.
fn choose(rng: &mut Rng, kind: Kind) -> Option<Fault> {
    if rng.chance(15) {
        return None;
    }
    let way = if kind != Kind::LoseReply && rng.chance(70) {
        Way::Down
    } else {
        Way::Up
    };
    // A lost reply matters most after an APPEND, which comes after the first half kilobyte or so.
    let bits = if kind == Kind::LoseReply {
        rng.range(9, 21)
    } else {
        rng.below(23)
    };
    let after = if bits == 0 {
        0
    } else {
        (1u64 << (bits - 1)) + rng.next_u64() % (1u64 << (bits - 1))
    };
    Some(Fault { kind, way, after })
}

#[derive(Default)]
struct Tally {
    runs: usize,
    failed: usize,
    slowest: Duration,
    stats: Stats,
}

impl Tally {
    fn add(&mut self, stats: &Stats) {
        self.stats.connections += stats.connections;
        for (total, n) in self.stats.struck.iter_mut().zip(stats.struck) {
            *total += n;
        }
        self.stats.bytes_up += stats.bytes_up;
        self.stats.bytes_down += stats.bytes_down;
    }
}

/// One `idlewild sync` through the proxy with faults of one kind (the runs take the kinds in
/// turn) drawn from `seed`. It may fail; it must
/// not panic, and must end within what its timeouts allow: the account's timeout for each
/// stall that struck, and a margin for the work itself.
fn faulty_run(env: &Env, proxy: &FaultProxy, seed: u64, tally: &mut Tally) {
    let mut rng = Rng::new(seed);
    // Lost replies twice as often as the rest: they are the one fault that leaves the server
    // having done what the client cannot know it did.
    let kind = [KINDS.as_slice(), &[Kind::LoseReply]].concat()[tally.runs % (KINDS.len() + 1)];
    proxy.set_chooser(move |_| choose(&mut rng, kind));
    let _ = proxy.take_stats();
    let mut child = env
        .command(&["-q", "sync"])
        .env("IDLEWILD_LOG", "idlewild=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn idlewild");
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let start = Instant::now();
    let hard_limit = Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > hard_limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "a sync through the faulty proxy still ran after {hard_limit:?} ({:?})",
                proxy.stats()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = start.elapsed();
    let stderr = reader.join().unwrap_or_default();
    let stats = proxy.take_stats();
    assert!(!stderr.contains("panicked"), "idlewild panicked:\n{stderr}");
    // What the user reads says what happened, not the parser's innards.
    assert!(
        !stderr.contains("input: [") && !stderr.contains("bytes remaining in stream"),
        "an error told in the parser's words:\n{stderr}"
    );
    let allowed = Duration::from_secs(TIMEOUT * (stats.stalls() as u64 + 1) + 20);
    assert!(
        took <= allowed,
        "a run took {took:?}, more than {allowed:?} for {stats:?}\n{stderr}"
    );
    if std::env::var_os("FAULT_DEBUG").is_some() {
        eprintln!(
            "run {} {kind:?} {stats:?} {:?}: {}",
            tally.runs,
            status.code(),
            stderr
                .lines()
                .filter(|l| !l.contains("imap-login"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    tally.runs += 1;
    tally.failed += usize::from(!status.success());
    tally.slowest = tally.slowest.max(took);
    tally.add(&stats);
}

#[test]
fn one_shot_syncs_through_a_breaking_network_lose_and_duplicate_nothing() {
    let env = Env::new();
    let proxy = FaultProxy::start(env.dovecot.port());
    let through_proxy = format!("port = {}\ntimeout = {TIMEOUT}", proxy.port());
    env.write_config(&through_proxy);
    let mut rng = Rng::new(0xfa17);
    let mut expected = Expected::new();
    let mut must_have = MustHave::new();
    let seed = 91;
    let folders = ["INBOX", "Archive", "Entwürfe"];
    for f in &folders[1..] {
        env.ctl.create(f);
    }

    // Server: 150 messages and three big ones; local: 40 messages and one big one.
    let mut ops = Vec::new();
    for i in 0..150 {
        let folder = folders[i % 3];
        ops.push(serde_json::json!({
            "op": "append", "folder": folder,
            "message": String::from_utf8_lossy(&corpus::message(seed, i)),
            "flags": if i % 2 == 0 { vec!["\\Seen"] } else { vec![] },
        }));
        add(&mut expected, folder, corpus::message_id(seed, i));
    }
    env.ctl.run(serde_json::Value::Array(ops));
    for (k, folder) in folders.iter().enumerate() {
        let big = corpus::big_message(seed, BIG + k);
        env.ctl.append(folder, &big, &[]);
        let id = idlewild::message::message_id(&big).expect("Message-ID");
        add(&mut expected, folder, id);
    }
    for i in 1000..1040 {
        let folder = if i % 2 == 0 { "INBOX" } else { "Local" };
        env.deliver_locally(
            folder,
            &format!("local-{i}.host"),
            &corpus::message(seed, i),
            None,
        );
        add(&mut expected, folder, corpus::message_id(seed, i));
    }
    let big = corpus::big_message(seed, BIG + 10);
    env.deliver_locally("Local", "local-big.host", &big, Some("S"));
    add(
        &mut expected,
        "Local",
        idlewild::message::message_id(&big).expect("Message-ID"),
    );

    let mut tally = Tally::default();
    // The initial sync, through faults until it has gone through once.
    for _ in 0..8 {
        faulty_run(&env, &proxy, rng.next_u64(), &mut tally);
    }

    let flagged = Flags::from_imap(["\\Flagged"]).bits();
    let flagged_seen = Flags::from_imap(["\\Flagged", "\\Seen"]).bits();
    // `FAULT_ROUNDS` makes a longer campaign of the same test (RELIABILITY.md).
    let rounds: usize = std::env::var("FAULT_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(4);
    for round in 0..rounds {
        let base = 5000 + round * 100;
        // New mail on both sides, a big message among it.
        for i in 0..20 {
            let folder = folders[i % 3];
            env.ctl
                .append(folder, &corpus::message(seed, base + i), &[]);
            add(&mut expected, folder, corpus::message_id(seed, base + i));
        }
        let big = corpus::big_message(seed, BIG + 100_000 + round);
        env.ctl.append("Archive", &big, &["\\Seen"]);
        add(
            &mut expected,
            "Archive",
            idlewild::message::message_id(&big).expect("Message-ID"),
        );
        for i in 20..40 {
            let id = base + i;
            env.deliver_locally(
                "Local",
                &format!("local-{id}.host"),
                &corpus::message(seed, id),
                Some("S"),
            );
            add(&mut expected, "Local", corpus::message_id(seed, id));
        }
        // Last round's big messages go, on the server and in the Maildir, so that a long
        // campaign's folders stay small enough to check every round.
        if round > 0 {
            for (folder, messages) in env.ctl.dump_all() {
                let big: Vec<&support::imapctl::ServerMessage> = messages
                    .iter()
                    .filter(|m| m.message_id.as_ref().is_some_and(|id| id.contains(".big.")))
                    .collect();
                if !big.is_empty() {
                    env.ctl
                        .expunge(&folder, &big.iter().map(|m| m.uid).collect::<Vec<_>>());
                }
                for id in big.iter().filter_map(|m| m.message_id.as_ref()) {
                    remove(&mut expected, &folder, id);
                    must_have.remove(id);
                }
            }
            for f in env.local_files("INBOX") {
                if std::fs::metadata(&f).is_ok_and(|m| m.len() > 1_000_000) {
                    let content = std::fs::read(&f).expect("read");
                    let id = idlewild::message::message_id(&content).expect("Message-ID");
                    std::fs::remove_file(&f).expect("delete");
                    remove(&mut expected, "INBOX", &id);
                    must_have.remove(&id);
                }
            }
        }
        // The server flags and expunges in Archive (the changes must travel down)...
        let archive = env.ctl.dump("Archive");
        for (n, m) in archive.iter().enumerate() {
            let Some(id) = &m.message_id else { continue };
            if n % 5 == round % 5 {
                env.ctl.store("Archive", m.uid, &["\\Flagged"], "+");
                must_have.insert(id.clone(), flagged);
            } else if n % 11 == round % 4 + 3 && !must_have.contains_key(id) {
                env.ctl.expunge("Archive", &[m.uid]);
                remove(&mut expected, "Archive", id);
            }
        }
        // ...and the mail client flags and deletes in INBOX (the changes must travel up).
        for (n, f) in env.local_files("INBOX").into_iter().enumerate() {
            let content = std::fs::read(&f).expect("read");
            let id = idlewild::message::message_id(&content).expect("Message-ID");
            if n % 6 == round % 6 {
                set_local_flags(&f, "FS");
                must_have.insert(id, flagged_seen);
            } else if n % 13 == round % 4 + 7 && !must_have.contains_key(&id) {
                std::fs::remove_file(&f).expect("delete");
                remove(&mut expected, "INBOX", &id);
            }
        }
        // Runs with fresh mail on both sides before each, so every run has bodies to move.
        for k in 0..8 {
            let id = base + 50 + k;
            env.ctl
                .append(folders[k % 3], &corpus::message(seed, id), &[]);
            add(&mut expected, folders[k % 3], corpus::message_id(seed, id));
            let local = if k % 4 == 0 {
                corpus::big_message(seed, BIG + 200_000 + round * 10 + k)
            } else {
                corpus::message(seed, base + 70 + k)
            };
            env.deliver_locally(
                "INBOX",
                &format!("local-{}.host", base + 70 + k),
                &local,
                None,
            );
            let id = idlewild::message::message_id(&local).expect("Message-ID");
            add(&mut expected, "INBOX", id);
            if k % 2 == 1 {
                let big = corpus::big_message(seed, BIG + 300_000 + round * 10 + k);
                env.ctl.append(folders[k % 3], &big, &[]);
                let id = idlewild::message::message_id(&big).expect("Message-ID");
                add(&mut expected, folders[k % 3], id);
            }
            faulty_run(&env, &proxy, rng.next_u64(), &mut tally);
        }
    }

    // One clean run straight to the server.
    proxy.heal();
    env.write_config("");
    env.sync_ok(&[]);
    let checked = check(&env, &expected, &must_have);
    let s = &tally.stats;
    eprintln!(
        "network faults: {} runs ({} failed), {} connections, faults struck: {} cut, {} reset, \
         {} stalled, {} garbage, {} replies lost; {:.1} MB down, {:.1} MB up; slowest run {:.1} s; \
         {checked} message copies and {} flag changes checked, 0 lost, 0 duplicated",
        tally.runs,
        tally.failed,
        s.connections,
        s.struck[0],
        s.struck[1],
        s.struck[2],
        s.struck[3],
        s.struck[4],
        s.bytes_down as f64 / 1e6,
        s.bytes_up as f64 / 1e6,
        tally.slowest.as_secs_f64(),
        must_have.len(),
    );
    for (kind, n) in KINDS.iter().zip(s.struck) {
        assert!(n >= 2, "only {n} {kind:?} faults struck: {s:?}");
    }
    assert!(tally.failed >= 5, "faults hardly made any run fail: {s:?}");
}

/// CPU time (user and system) the process `pid` has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // The fields after the command name (which may hold spaces) in parentheses.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf reads a constant of the system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

/// Whether both sides hold the same messages with the same flags, and exactly `expected`.
fn converged(env: &Env, expected: &Expected) -> bool {
    let (remote, local) = (env.remote(), env.local());
    remote == local && holds(&remote, "server", expected).is_ok()
}

#[test]
fn the_daemon_rides_out_a_breaking_network_without_spinning_and_converges() {
    let env = Env::new();
    let proxy = FaultProxy::start(env.dovecot.port());
    env.write_config(&format!("port = {}\ntimeout = {TIMEOUT}", proxy.port()));
    let mut expected = Expected::new();
    let mut must_have = MustHave::new();
    let seed = 92;
    env.ctl.create("Archive");
    for i in 0..40 {
        let folder = if i % 2 == 0 { "INBOX" } else { "Archive" };
        env.ctl.append(folder, &corpus::message(seed, i), &[]);
        add(&mut expected, folder, corpus::message_id(seed, i));
    }
    let daemon = Daemon::start(&env, None);
    daemon.expect_notify("READY=1", Duration::from_secs(20));
    daemon.eventually(Duration::from_secs(20), "the first sync", || {
        converged(&env, &expected)
    });
    let pid = daemon.child.id();

    // Twenty seconds of a network where every connection breaks, by each kind in turn, within
    // its first 16 KiB (a daemon's connection carries little); mail and flag changes keep coming on both sides, and every few
    // seconds every open connection is cut at once, as a NAT forgetting idle sessions does.
    let mut rng = Rng::new(0xdae1);
    proxy.set_chooser(move |n| {
        let bits = rng.below(15) as u32;
        Some(Fault {
            kind: KINDS[n % KINDS.len()],
            way: if rng.chance(70) { Way::Down } else { Way::Up },
            after: rng.next_u64() % (1u64 << bits),
        })
    });
    let _ = proxy.take_stats();
    let flagged = Flags::from_imap(["\\Flagged"]).bits();
    let flagged_seen = Flags::from_imap(["\\Flagged", "\\Seen"]).bits();
    let start = Instant::now();
    let mut k = 0;
    while start.elapsed() < Duration::from_secs(20) {
        let id = 1000 + k;
        let folder = if k % 2 == 0 { "INBOX" } else { "Archive" };
        env.ctl.append(folder, &corpus::message(seed, id), &[]);
        add(&mut expected, folder, corpus::message_id(seed, id));
        let id = 2000 + k;
        env.deliver_locally(
            "INBOX",
            &format!("local-{id}.host"),
            &corpus::message(seed, id),
            None,
        );
        add(&mut expected, "INBOX", corpus::message_id(seed, id));
        if k % 4 == 1 {
            // A server flag in Archive on a message the Maildir holds; a local flag in INBOX.
            let held: Vec<String> = env
                .local()
                .get("Archive")
                .into_iter()
                .flatten()
                .filter_map(|m| m.message_id.clone())
                .collect();
            if let Some(m) = env.ctl.dump("Archive").into_iter().find(|m| {
                m.message_id
                    .as_ref()
                    .is_some_and(|id| held.contains(id) && !must_have.contains_key(id))
            }) && let Some(id) = m.message_id
            {
                env.ctl.store("Archive", m.uid, &["\\Flagged"], "+");
                must_have.insert(id, flagged);
            }
            for f in env.local_files("INBOX") {
                let content = std::fs::read(&f).unwrap_or_default();
                let Some(id) = idlewild::message::message_id(&content) else {
                    continue;
                };
                if !must_have.contains_key(&id) && f.parent().is_some_and(|p| p.ends_with("cur")) {
                    // The daemon may be renaming the same file: a lost race is no change made.
                    if try_set_local_flags(&f, "FS").is_some() {
                        must_have.insert(id, flagged_seen);
                    }
                    break;
                }
            }
        }
        if k % 8 == 7 {
            proxy.break_all(if k % 16 == 7 { Kind::Cut } else { Kind::Reset });
        }
        k += 1;
        std::thread::sleep(Duration::from_millis(400));
    }
    let faulty = proxy.take_stats();

    // Fifteen seconds in which every connection is refused with a reset before the greeting:
    // the daemon must wait between attempts, not spin.
    proxy.set_chooser(|_| {
        Some(Fault {
            kind: Kind::Reset,
            way: Way::Down,
            after: 0,
        })
    });
    proxy.break_all(Kind::Reset);
    let _ = proxy.take_stats();
    let cpu_before = cpu_time(pid);
    let refused_for = Duration::from_secs(15);
    std::thread::sleep(refused_for);
    let cpu = cpu_time(pid) - cpu_before;
    let refused = proxy.take_stats();

    // Healed: the daemon catches up on its own.
    proxy.heal();
    let healed = Instant::now();
    daemon.eventually(
        Duration::from_secs(90),
        "both sides in step after the network healed",
        || converged(&env, &expected),
    );
    let caught_up = healed.elapsed();
    let checked = check(&env, &expected, &must_have);
    let log = std::fs::read_to_string(&daemon.log).unwrap_or_default();
    assert!(
        !log.contains("panicked"),
        "the daemon panicked:\n{}",
        daemon.log_tail()
    );
    eprintln!(
        "daemon through network faults: {} connections in 20 s of faults (struck: {} cut, {} reset, \
         {} stalled, {} garbage, {} replies lost); refused for 15 s: {} connection attempts, \
         {:.2} s of CPU; caught up {:.1} s after the network healed; {checked} message copies \
         and {} flag changes checked, 0 lost, 0 duplicated",
        faulty.connections,
        faulty.struck[0],
        faulty.struck[1],
        faulty.struck[2],
        faulty.struck[3],
        faulty.struck[4],
        refused.connections,
        cpu.as_secs_f64(),
        caught_up.as_secs_f64(),
        must_have.len(),
    );
    assert!(faulty.struck_total() >= 6, "few faults struck: {faulty:?}");
    // No lower bound on the attempts: after the spell of faults the backoffs may be longer
    // than the refusals last. That the daemon keeps trying shows when it catches up below.
    // A loop without a wait would make thousands of attempts and burn a core.
    assert!(
        refused.connections <= 40,
        "{} connection attempts in {refused_for:?} of refusals: no back-off",
        refused.connections
    );
    assert!(
        cpu < refused_for / 10,
        "the daemon used {cpu:?} of CPU in {refused_for:?} of refusals"
    );
}
