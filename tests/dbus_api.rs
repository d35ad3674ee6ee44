//! The D-Bus API and the command-line client against the real daemon, on a private
//! `dbus-daemon` per test, with a private Dovecot. Besides zbus (the code under test's own
//! library), the API is driven by independent clients: systemd's `busctl` and GLib's `gdbus`.

mod common;
mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Env;
use common::daemon::{Daemon, eventually, local_count};
use futures_util::StreamExt;
use idlewild::dbus::proxy::ManagerProxy;
use support::bus::PrivateBus;
use support::corpus;

const DEST: &str = "org.idlewild.Idlewild1";
const PATH: &str = "/org/idlewild/Idlewild1";
const ACCOUNT_PATH: &str = "/org/idlewild/Idlewild1/accounts/test";
const ACCOUNT_IFACE: &str = "org.idlewild.Idlewild1.Account";

fn start_daemon(env: &Env, bus: &PrivateBus) -> Daemon {
    let daemon = Daemon::start_with(env, None, &[("DBUS_SESSION_BUS_ADDRESS", &bus.address)]);
    daemon.expect_notify("READY=1", Duration::from_secs(20));
    daemon
}

/// The command-line client, on the test's bus.
fn cli(env: &Env, bus: &PrivateBus, args: &[&str]) -> Output {
    env.command(args)
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .output()
        .expect("run idlewild")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

fn property(bus: &PrivateBus, name: &str) -> String {
    let out = bus.busctl(&["get-property", DEST, ACCOUNT_PATH, ACCOUNT_IFACE, name]);
    assert!(out.status.success(), "busctl: {}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

/// `gdbus call` of a manager method; returns (success, stdout + stderr).
fn gdbus_call(bus: &PrivateBus, method: &str, args: &[&str]) -> (bool, String) {
    let mut all = vec!["--dest", DEST, "--object-path", PATH, "--method", method];
    all.extend_from_slice(args);
    let out = bus.gdbus("call", &all);
    (
        out.status.success(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

/// A child the test started (a monitor, a watcher); killed by PID when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn zbus_manager(
    rt: &tokio::runtime::Runtime,
    bus: &PrivateBus,
) -> (zbus::Connection, ManagerProxy<'static>) {
    rt.block_on(async {
        let conn = zbus::connection::Builder::address(bus.address.as_str())
            .build()
            .await
            .expect("connect to the private bus");
        let manager = ManagerProxy::builder(&conn)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .expect("manager proxy");
        (conn, manager)
    })
}

#[test]
fn a_sync_request_returns_a_job_whose_end_is_signalled_with_its_result() {
    let env = Env::new();
    for i in 0..3 {
        env.ctl.append("INBOX", &corpus::message(40, i), &[]);
    }
    let bus = PrivateBus::start();
    let daemon = start_daemon(&env, &bus);
    eventually(Duration::from_secs(10), "the first sync", || {
        local_count(&env) == 3
    });
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (_conn, manager) = zbus_manager(&rt, &bus);
    rt.block_on(async {
        let mut finished = manager.receive_job_finished().await.expect("subscribe");
        let job = manager.sync("test", &["INBOX"]).await.expect("Sync");
        assert!(job > 0);
        let all = manager.sync_all().await.expect("SyncAll");
        assert!(all > job, "job numbers grow");
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while seen.len() < 2 {
            let signal = tokio::time::timeout_at(deadline, finished.next())
                .await
                .expect("JobFinished within 15 s")
                .expect("signal stream");
            let args = signal.args().expect("JobFinished args");
            assert_eq!(args.status, "ok", "error: {}", args.error);
            let report: serde_json::Value = serde_json::from_str(args.report).expect("JSON");
            assert_eq!(report[0]["account"], "test");
            assert!(
                report[0]["folders"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|f| f["folder"] == "INBOX")),
                "{report}"
            );
            seen.push(args.job);
        }
        seen.sort();
        assert_eq!(seen, vec![job, all]);
    });

    // The command line goes through the daemon (which holds the account's lock, so a sync in
    // the client's own process could not run) and waits for the result.
    env.ctl.append("INBOX", &corpus::message(40, 10), &[]);
    let out = cli(&env, &bus, &["sync", "test", "INBOX"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("test"), "{}", text(&out.stdout));
    let out = cli(&env, &bus, &["sync", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json");
    assert_eq!(reports[0]["account"], "test");
    assert_eq!(local_count(&env), 4);
    let log = std::fs::read_to_string(&daemon.log).unwrap_or_default();
    assert!(log.contains("sync requested"), "{}", daemon.log_tail());

    // A folder that exists nowhere is an error in the job's result, exit status 1.
    let out = cli(&env, &bus, &["sync", "test", "NoSuchFolder"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no folder named \"NoSuchFolder\""),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn independent_clients_read_properties_and_get_named_errors() {
    let env = Env::new();
    env.ctl.append("INBOX", &corpus::message(41, 1), &[]);
    env.ctl
        .append("INBOX", &corpus::message(41, 2), &["\\Seen"]);
    let bus = PrivateBus::start();
    let mut daemon = start_daemon(&env, &bus);
    eventually(Duration::from_secs(10), "idle after the first sync", || {
        property(&bus, "State") == "s \"idle\""
    });
    assert_eq!(property(&bus, "Total"), "u 2");
    assert_eq!(property(&bus, "Unseen"), "u 1");
    assert_eq!(property(&bus, "Paused"), "b false");
    assert_eq!(property(&bus, "LastError"), "s \"\"");
    assert!(property(&bus, "LastSync") != "t 0");

    let out = bus.busctl(&[
        "call",
        DEST,
        PATH,
        "org.idlewild.Idlewild1",
        "Sync",
        "sas",
        "test",
        "0",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("t "), "{}", text(&out.stdout));

    let (ok, output) = gdbus_call(&bus, "org.idlewild.Idlewild1.Status", &[]);
    assert!(
        ok && output.contains("'test'") && output.contains("'Unseen'"),
        "{output}"
    );

    for (method, args, error) in [
        (
            "org.idlewild.Idlewild1.Sync",
            vec!["nosuch", "[]"],
            "org.idlewild.Idlewild1.Error.UnknownAccount",
        ),
        (
            "org.idlewild.Idlewild1.Sync",
            vec!["test", "['INBOX', '']"],
            "org.idlewild.Idlewild1.Error.InvalidFolder",
        ),
        (
            "org.idlewild.Idlewild1.Sync",
            vec!["test", "['a//b']"],
            "org.idlewild.Idlewild1.Error.InvalidFolder",
        ),
        (
            "org.idlewild.Idlewild1.SyncWithOptions",
            vec!["test", "[]", "{'Bogus': <true>}"],
            "org.idlewild.Idlewild1.Error.InvalidArgs",
        ),
        (
            "org.idlewild.Idlewild1.SyncWithOptions",
            vec!["test", "[]", "{'AllowMassDelete': <'yes'>}"],
            "org.idlewild.Idlewild1.Error.InvalidArgs",
        ),
        (
            "org.idlewild.Idlewild1.Pause",
            vec!["nosuch", "0"],
            "org.idlewild.Idlewild1.Error.UnknownAccount",
        ),
        (
            "org.idlewild.Idlewild1.Resume",
            vec!["nosuch"],
            "org.idlewild.Idlewild1.Error.UnknownAccount",
        ),
    ] {
        let (ok, output) = gdbus_call(&bus, method, &args);
        assert!(!ok, "{method} {args:?} succeeded: {output}");
        assert!(output.contains(error), "{method} {args:?}: {output}");
    }
    // A message of the wrong shape is refused by the bus library, with the standard error.
    let out = bus.busctl(&[
        "call",
        DEST,
        PATH,
        "org.idlewild.Idlewild1",
        "Sync",
        "s",
        "test",
    ]);
    assert!(!out.status.success());
    // The errors name what went wrong in words too.
    let (_, output) = gdbus_call(&bus, "org.idlewild.Idlewild1.Sync", &["nosuch", "[]"]);
    assert!(
        output.contains("no account named \"nosuch\" (accounts: test)"),
        "{output}"
    );

    // Unharmed by all of that.
    let out = cli(&env, &bus, &["status"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("test"), "{}", text(&out.stdout));
    assert!(daemon.child.try_wait().expect("wait").is_none());

    // The command line maps the API's errors to its exit statuses.
    let out = cli(&env, &bus, &["sync", "nosuch"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    daemon.signal("-TERM");
    assert!(daemon.wait_exit(Duration::from_secs(30)).success());
}

/// The D-Bus error name of a failed call, and its message.
fn dbus_error(result: zbus::Result<impl std::fmt::Debug>) -> (String, String) {
    match result {
        Err(zbus::Error::MethodError(name, message, _)) => {
            (name.to_string(), message.unwrap_or_default())
        }
        other => panic!("expected a D-Bus error, got {other:?}"),
    }
}

#[test]
fn folder_names_with_control_characters_and_endless_pauses_are_refused() {
    let env = Env::new();
    let bus = PrivateBus::start();
    let mut daemon = start_daemon(&env, &bus);
    eventually(Duration::from_secs(10), "idle after the first sync", || {
        property(&bus, "State") == "s \"idle\""
    });
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (_conn, manager) = zbus_manager(&rt, &bus);
    rt.block_on(async {
        let before = manager.sync("test", &[]).await.expect("Sync");
        for bad in [
            "\u{1}",
            "a\nb",
            "INBOX\r",
            "Lists/\u{7f}rust",
            "tab\there",
            "",
        ] {
            let (name, message) = dbus_error(manager.sync("test", &["INBOX", bad]).await);
            assert_eq!(
                name, "org.idlewild.Idlewild1.Error.InvalidFolder",
                "{bad:?}"
            );
            // The name is shown escaped, never with its control characters.
            assert!(!message.chars().any(char::is_control), "{message:?}");
            let (name, _) = dbus_error(
                manager
                    .sync_with_options("", &[bad], std::collections::HashMap::new())
                    .await,
            );
            assert_eq!(
                name, "org.idlewild.Idlewild1.Error.InvalidFolder",
                "{bad:?}"
            );
        }
        // No job was started for any of them: the next one has the next number.
        let after = manager.sync("test", &[]).await.expect("Sync");
        assert_eq!(after, before + 1);

        let (name, message) = dbus_error(manager.pause("test", u32::MAX).await);
        assert_eq!(
            name, "org.idlewild.Idlewild1.Error.InvalidArgs",
            "{message}"
        );
        assert!(message.contains("31622400"), "{message}");
        let (name, _) = dbus_error(manager.pause("test", 31_622_401).await);
        assert_eq!(name, "org.idlewild.Idlewild1.Error.InvalidArgs");
    });
    assert_eq!(property(&bus, "Paused"), "b false");
    assert!(!env.state_dir().join("test.paused").exists());
    // The longest pause is taken.
    rt.block_on(async {
        manager
            .pause("test", 31_622_400)
            .await
            .expect("the longest pause")
    });
    assert_eq!(property(&bus, "Paused"), "b true");
    daemon.signal("-TERM");
    assert!(daemon.wait_exit(Duration::from_secs(30)).success());
}

#[test]
fn a_paused_account_does_not_sync_until_resumed_even_across_a_restart() {
    let env = Env::new();
    env.ctl.append("INBOX", &corpus::message(42, 1), &[]);
    let bus = PrivateBus::start();
    let mut daemon = start_daemon(&env, &bus);
    eventually(Duration::from_secs(10), "the first sync", || {
        local_count(&env) == 1
    });
    let out = cli(&env, &bus, &["pause", "test"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("paused test until resumed"));
    eventually(Duration::from_secs(10), "state paused", || {
        property(&bus, "State") == "s \"paused\""
    });
    assert_eq!(property(&bus, "Paused"), "b true");
    assert_eq!(property(&bus, "PausedUntil"), "t 0");

    env.ctl.append("INBOX", &corpus::message(42, 2), &[]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(local_count(&env), 1, "a paused account synced");
    // Asking for a sync of a paused account is an error that says what to do.
    let out = cli(&env, &bus, &["sync", "test"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("idlewild resume test"),
        "{}",
        text(&out.stderr)
    );

    // A dry run looks without the lock the daemon holds, and changes nothing.
    let out = cli(&env, &bus, &["sync", "-n", "test"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("would"), "{}", text(&out.stdout));
    assert_eq!(local_count(&env), 1);

    // The pause survives a restart of the daemon.
    daemon.signal("-TERM");
    assert!(daemon.wait_exit(Duration::from_secs(30)).success());
    drop(daemon);
    let daemon = start_daemon(&env, &bus);
    eventually(
        Duration::from_secs(10),
        "state paused after a restart",
        || property(&bus, "State") == "s \"paused\"",
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        local_count(&env),
        1,
        "a paused account synced after a restart"
    );

    let out = cli(&env, &bus, &["resume", "test"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    eventually(Duration::from_secs(10), "the message after resume", || {
        local_count(&env) == 2
    });
    assert_eq!(property(&bus, "Paused"), "b false");

    // A timed pause ends by itself.
    let out = cli(&env, &bus, &["pause", "test", "--for", "2s"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(property(&bus, "PausedUntil") != "t 0");
    env.ctl.append("INBOX", &corpus::message(42, 3), &[]);
    eventually(
        Duration::from_secs(15),
        "the message after the pause ran out",
        || local_count(&env) == 3,
    );
    assert_eq!(property(&bus, "Paused"), "b false");
    let _ = daemon;
}

#[test]
fn arrivals_are_announced_with_signals_and_property_changes() {
    let env = Env::new();
    // Unseen mail in another folder: a push counts only the folder it synced, and the
    // account's totals must still hold every folder's.
    env.ctl.create("Archive");
    for i in 10..13 {
        env.ctl.append("Archive", &corpus::message(43, i), &[]);
    }
    let bus = PrivateBus::start();
    let daemon = start_daemon(&env, &bus);
    eventually(Duration::from_secs(10), "idle", || {
        property(&bus, "State") == "s \"idle\""
    });
    let monitor_log = env.dir.path().join("monitor.log");
    let monitor = Reaped(
        Command::new("gdbus")
            .args(["monitor", "--address", &bus.address, "--dest", DEST])
            .stdout(std::fs::File::create(&monitor_log).expect("monitor log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("gdbus monitor"),
    );
    let monitored = || std::fs::read_to_string(&monitor_log).unwrap_or_default();
    eventually(Duration::from_secs(10), "gdbus monitor subscribed", || {
        monitored().contains("Monitoring signals")
    });
    // Own process watching too, in the JSON form a status bar reads.
    let mut watcher = Reaped(
        env.command(&["watch", "--json"])
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("idlewild watch"),
    );
    let mut lines = BufReader::new(watcher.0.stdout.take().expect("stdout")).lines();
    let first: serde_json::Value =
        serde_json::from_str(&lines.next().expect("a first line").expect("read")).expect("JSON");
    assert_eq!(first["event"], "daemon");
    assert_eq!(first["class"], "idle");
    assert_eq!(first["text"], "3");

    env.ctl.append("INBOX", &corpus::message(43, 1), &[]);
    env.ctl.append("INBOX", &corpus::message(43, 2), &[]);
    eventually(Duration::from_secs(10), "both messages", || {
        local_count(&env) == 5
    });
    eventually(Duration::from_secs(10), "the signals", || {
        let log = monitored();
        log.contains("org.idlewild.Idlewild1.NewMail ('test', 'INBOX', uint32 ")
            && log.contains("org.idlewild.Idlewild1.SyncStarted ('test',")
            && log.contains("org.idlewild.Idlewild1.SyncFinished ('test',")
            && log.contains("org.idlewild.Idlewild1.StateChanged ('test', 'syncing')")
            && log.contains("org.idlewild.Idlewild1.StateChanged ('test', 'idle')")
            && log.contains("PropertiesChanged ('org.idlewild.Idlewild1.Account', {")
            && log.contains("'Unseen': <uint32 ")
    });
    eventually(Duration::from_secs(5), "the account's unseen count", || {
        property(&bus, "Unseen") == "u 5"
    });

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut saw_new_mail = false;
    while !saw_new_mail && Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        let event: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
        assert!(
            event["text"].is_string() && event["class"].is_string(),
            "{line}"
        );
        if event["event"] == "new-mail" {
            assert_eq!(event["account"], "test");
            assert_eq!(event["folder"], "INBOX");
            saw_new_mail = true;
        }
    }
    assert!(saw_new_mail, "no new-mail line from idlewild watch --json");
    drop(monitor);
    drop(daemon);
}

#[test]
fn a_second_daemon_on_the_same_bus_is_refused_and_the_first_unharmed() {
    let env = Env::new();
    env.ctl.append("INBOX", &corpus::message(44, 1), &[]);
    let bus = PrivateBus::start();
    let first = start_daemon(&env, &bus);
    eventually(Duration::from_secs(10), "the first sync", || {
        local_count(&env) == 1
    });
    let out = env
        .command(&["daemon", "--log", "stderr"])
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .env_remove("NOTIFY_SOCKET")
        .output()
        .expect("second daemon");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("another idlewild daemon")
            && stderr.contains(&format!("PID {}", first.child.id())),
        "{stderr}"
    );
    // It stopped before touching any account.
    assert!(!stderr.contains("cannot open the account"), "{stderr}");
    let out = cli(&env, &bus, &["sync", "test"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cli(&env, &bus, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(status["daemon"], true);
    assert_eq!(status["accounts"][0]["name"], "test");
    assert_eq!(status["accounts"][0]["total"], 1);
}

#[test]
fn without_a_daemon_the_client_says_so_and_syncs_on_its_own() {
    let env = Env::new();
    env.ctl.append("INBOX", &corpus::message(45, 1), &[]);
    let bus = PrivateBus::start();
    let out = cli(&env, &bus, &["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("the idlewild daemon is not running")
            && text(&out.stderr).contains("systemctl --user start idlewild"),
        "{}",
        text(&out.stderr)
    );
    let out = cli(&env, &bus, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(status["daemon"], false);

    let out = cli(&env, &bus, &["sync"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(local_count(&env), 1);

    // A pause without a daemon is kept for the one-shot syncs and the daemon's next start.
    let out = cli(&env, &bus, &["pause", "test", "--for", "1h"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("the daemon is not running"));
    env.ctl.append("INBOX", &corpus::message(45, 2), &[]);
    let out = cli(&env, &bus, &["sync"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("skipped test (paused until"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(local_count(&env), 1);
    let out = cli(&env, &bus, &["sync", "test"]);
    assert_eq!(out.status.code(), Some(1));
    let out = cli(&env, &bus, &["resume", "test"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cli(&env, &bus, &["sync", "test"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(local_count(&env), 2);

    for (args, code) in [
        (vec!["sync", "nosuch"], 2),
        (vec!["pause", "nosuch"], 2),
        (vec!["pause", "test", "--for", "soon"], 2),
        (vec!["sync", "test", "a//b"], 2),
    ] {
        let out = cli(&env, &bus, &args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    // No bus at all: watch says so instead of hanging.
    let out = env.run(&["watch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no session bus"),
        "{}",
        text(&out.stderr)
    );
}

/// The org.idlewild interfaces in an introspection document, by name, without comments and
/// layout.
fn interfaces(xml: &str) -> BTreeMap<String, String> {
    let mut without_comments = String::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<!--") {
        without_comments.push_str(&rest[..start]);
        rest = rest[start..]
            .find("-->")
            .map_or("", |end| &rest[start + end + 3..]);
    }
    without_comments.push_str(rest);
    let compact: String = without_comments
        .split('<')
        .map(str::trim)
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            format!(
                "<{}",
                piece.split_whitespace().collect::<Vec<_>>().join(" ")
            )
        })
        .collect();
    compact
        .split("<interface name=\"")
        .skip(1)
        .filter(|block| block.starts_with("org.idlewild."))
        .filter_map(|block| {
            let (name, body) = block.split_once('"')?;
            let end = body.find("</interface>").unwrap_or(body.len());
            Some((name.to_owned(), body[..end].to_owned()))
        })
        .collect()
}

#[test]
fn the_introspection_file_matches_what_the_daemon_exports() {
    let env = Env::new();
    let bus = PrivateBus::start();
    let _daemon = start_daemon(&env, &bus);
    let mut live = BTreeMap::new();
    for path in [PATH, ACCOUNT_PATH] {
        let out = bus.gdbus(
            "introspect",
            &["--dest", DEST, "--object-path", path, "--xml"],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        live.extend(interfaces(&text(&out.stdout)));
    }
    let file = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dbus/org.idlewild.Idlewild1.xml"
    ))
    .expect("dbus/org.idlewild.Idlewild1.xml");
    let documented = interfaces(&file);
    assert_eq!(
        live.keys().collect::<Vec<_>>(),
        ["org.idlewild.Idlewild1", "org.idlewild.Idlewild1.Account"]
    );
    for (name, exported) in &live {
        assert_eq!(
            documented.get(name),
            Some(exported),
            "dbus/org.idlewild.Idlewild1.xml differs from what the daemon exports for {name}"
        );
    }
    assert_eq!(documented.len(), live.len());
}

#[test]
fn calling_the_api_starts_the_daemon_through_activation() {
    let env = Env::new();
    env.ctl.append("INBOX", &corpus::message(46, 1), &[]);
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dbus/org.idlewild.Idlewild1.service"
    ))
    .expect("dbus/org.idlewild.Idlewild1.service");
    assert!(shipped.contains("\nName=org.idlewild.Idlewild1\n"));
    assert!(shipped.contains("\nSystemdService=idlewild.service\n"));
    // The shipped file with Exec pointing at the binary under test: this bus has no systemd
    // activation, so it uses Exec, as a bus without systemd would.
    let services = env.dir.path().join("services");
    std::fs::create_dir_all(&services).expect("service dir");
    let exec = format!(
        "Exec={} --config {} daemon --log stderr",
        env!("CARGO_BIN_EXE_idlewild"),
        env.config_path().display()
    );
    let service: String = shipped
        .lines()
        .map(|l| {
            if l.starts_with("Exec=") {
                exec.clone()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(services.join("org.idlewild.Idlewild1.service"), service).expect("write");
    let conf =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dbus-test.conf"))
            .expect("bus config")
            .replace(
                "</busconfig>",
                &format!(
                    "  <servicedir>{}</servicedir>\n</busconfig>",
                    services.display()
                ),
            );
    let conf_path = env.dir.path().join("bus.conf");
    std::fs::write(&conf_path, conf).expect("bus config");
    let bus = PrivateBus::start_with_config(&conf_path);

    // A call to the name, nobody owning it yet: the bus starts the daemon and delivers the call.
    let out = bus.busctl(&["call", DEST, PATH, "org.idlewild.Idlewild1", "Status"]);
    let started = bus.busctl(&[
        "call",
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus",
        "GetConnectionUnixProcessID",
        "s",
        DEST,
    ]);
    // Stopped by PID whatever happens next.
    let pid = text(&started.stdout)
        .trim()
        .strip_prefix("u ")
        .and_then(|p| p.parse::<u32>().ok());
    let _guard = pid.map(KillOnDrop);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("\"test\""),
        "{}",
        text(&out.stdout)
    );
    let pid = pid.expect("the activated daemon's PID");
    eventually(
        Duration::from_secs(10),
        "the activated daemon's first sync",
        || local_count(&env) == 1,
    );
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    eventually(
        Duration::from_secs(30),
        "the activated daemon stops",
        || {
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z "))
        },
    );
}

/// Kills a process the test caused to be started (by PID) when dropped.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Only while it is still ours: the PID of a process gone could be someone else's now.
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", self.0)).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains(env!("CARGO_BIN_EXE_idlewild")) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn reload_adds_accounts_and_refuses_a_wrong_file_without_harm() {
    let env = Env::new();
    let bus = PrivateBus::start();
    let daemon = start_daemon(&env, &bus);
    let config = std::fs::read_to_string(env.config_path()).expect("config");
    let second = config
        .split_once("[accounts.test.remote]")
        .map(|(_, rest)| rest)
        .expect("the test account")
        .replace("[accounts.test.local]", "[accounts.second.local]")
        .replace(
            &env.maildir().display().to_string(),
            &env.dir.path().join("Mail/second").display().to_string(),
        );
    std::fs::write(
        env.config_path(),
        format!("{config}\n[accounts.second.remote]{second}"),
    )
    .expect("write config");
    let (ok, output) = gdbus_call(&bus, "org.idlewild.Idlewild1.Reload", &[]);
    assert!(ok, "{output}");
    // The new account's object is published right after the answer.
    eventually(Duration::from_secs(5), "the new account's object", || {
        let out = bus.busctl(&[
            "get-property",
            DEST,
            "/org/idlewild/Idlewild1/accounts/second",
            ACCOUNT_IFACE,
            "Name",
        ]);
        text(&out.stdout).trim() == "s \"second\""
    });

    std::fs::write(env.config_path(), "[general\nbroken").expect("write config");
    let (ok, output) = gdbus_call(&bus, "org.idlewild.Idlewild1.Reload", &[]);
    assert!(!ok);
    assert!(
        output.contains("org.idlewild.Idlewild1.Error.Config")
            && output.contains("config.toml")
            && output.contains("the running configuration stays"),
        "{output}"
    );
    let out = cli(&env, &bus, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        status["accounts"].as_array().map(Vec::len),
        Some(2),
        "{status}"
    );
    drop(daemon);
}

#[test]
fn a_client_with_another_configuration_works_on_its_own() {
    let env = Env::new();
    let bus = PrivateBus::start();
    let _daemon = start_daemon(&env, &bus);
    // A second setup (a copy of the configuration elsewhere, with its own state and Maildir)
    // must not send its requests to the daemon of the first.
    let other = env.dir.path().join("other.toml");
    let copy = std::fs::read_to_string(env.config_path())
        .expect("config")
        .replace(
            &env.state_dir().display().to_string(),
            &env.dir.path().join("other-state").display().to_string(),
        )
        .replace(
            &env.maildir().display().to_string(),
            &env.dir.path().join("OtherMail").display().to_string(),
        );
    std::fs::write(&other, copy).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_idlewild"))
        .arg("--config")
        .arg(&other)
        .args(["-v", "sync", "test"])
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .output()
        .expect("run idlewild");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("uses another configuration"),
        "{}",
        text(&out.stderr)
    );
    assert!(env.dir.path().join("other-state/test.sqlite").exists());
}
