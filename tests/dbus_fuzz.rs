//! Fuzzing of the D-Bus API's arguments: the running daemon, on a private bus, is called by
//! proptest with any account and folder names (empty, control characters, `..`, very long, the
//! real ones), any options of any type, any pause length. Every call is answered (a job or an
//! error), the daemon keeps running without a panic, nothing is written outside the Maildir and
//! the state, and afterwards a plain sync still brings both sides in step.
//!
//! `scripts/test.sh` runs proptest's default 256 cases; `PROPTEST_CASES` sets more.

mod common;
mod support;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use common::Env;
use common::daemon::{Daemon, eventually, local_count};
use idlewild::dbus::proxy::ManagerProxy;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use support::bus::PrivateBus;
use support::corpus;

#[derive(Debug, Clone)]
enum Value {
    Bool(bool),
    U32(u32),
    I64(i64),
    Str(String),
    Strs(Vec<String>),
}

#[derive(Debug, Clone)]
enum Call {
    Sync(String, Vec<String>),
    SyncWithOptions(String, Vec<String>, Vec<(String, Value)>),
    Pause(String, u32),
    Resume(String),
    SyncAll,
}

fn name() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        3 => Just("test".to_owned()),
        1 => Just(String::new()),
        1 => Just("INBOX".to_owned()),
        1 => Just("../outside".to_owned()),
        1 => Just("/etc".to_owned()),
        1 => Just("INBOX/../../x".to_owned()),
        2 => any::<String>(),
        1 => "[a-z/.]{0,8}",
        1 => "x{200,400}",
    ]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<u32>().prop_map(Value::U32),
        any::<i64>().prop_map(Value::I64),
        any::<String>().prop_map(Value::Str),
        proptest::collection::vec(any::<String>(), 0..3).prop_map(Value::Strs),
    ]
}

fn call() -> impl Strategy<Value = Call> {
    let folders = proptest::collection::vec(name(), 0..4);
    let option_key = prop_oneof![Just("AllowMassDelete".to_owned()), any::<String>()];
    prop_oneof![
        3 => (name(), folders.clone()).prop_map(|(a, f)| Call::Sync(a, f)),
        3 => (name(), folders, proptest::collection::vec((option_key, value()), 0..3))
            .prop_map(|(a, f, o)| Call::SyncWithOptions(a, f, o)),
        1 => (name(), prop_oneof![Just(0u32), Just(1), Just(u32::MAX), any::<u32>()])
            .prop_map(|(a, s)| Call::Pause(a, s)),
        2 => name().prop_map(Call::Resume),
        1 => Just(Call::SyncAll),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Makes the call; whether it succeeded is no business of this test, only that it is answered.
async fn make(manager: &ManagerProxy<'_>, call: &Call) -> Result<(), String> {
    let answered = match call {
        Call::Sync(account, folders) => manager.sync(account, &strs(folders)).await.map(|_| ()),
        Call::SyncWithOptions(account, folders, options) => {
            let options: HashMap<&str, zbus::Variant<'_>> = options
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::Bool(b) => zbus::Variant::from(*b),
                        Value::U32(n) => zbus::Variant::from(*n),
                        Value::I64(n) => zbus::Variant::from(*n),
                        Value::Str(s) => zbus::Variant::from(s.as_str()),
                        Value::Strs(v) => zbus::Variant::from(strs(v)),
                    };
                    (k.as_str(), v)
                })
                .collect();
            manager
                .sync_with_options(account, &strs(folders), options)
                .await
                .map(|_| ())
        }
        Call::Pause(account, seconds) => manager.pause(account, *seconds).await,
        Call::Resume(account) => manager.resume(account).await,
        Call::SyncAll => manager.sync_all().await.map(|_| ()),
    };
    match answered {
        Ok(()) | Err(zbus::Error::MethodError(..)) | Err(zbus::Error::FDO(_)) => Ok(()),
        // Anything else (no reply, a broken connection) means the daemon did not answer.
        Err(e) => Err(e.to_string()),
    }
}

/// Whether the process `pid` runs (a zombie that died does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// Every path under `dir`, but what lies under the Maildir or the state directory.
fn outside(dir: &Path, inside: &[&Path]) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if inside.iter().any(|i| path.starts_with(i)) {
                continue;
            }
            found.insert(path.display().to_string());
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    found
}

#[test]
fn any_arguments_are_answered_and_leave_the_daemon_running_and_the_mail_whole() {
    let env = Env::new();
    for i in 0..5 {
        env.ctl.append("INBOX", &corpus::message(61, i), &[]);
    }
    let bus = PrivateBus::start();
    let mut daemon = Daemon::start_with(&env, None, &[("DBUS_SESSION_BUS_ADDRESS", &bus.address)]);
    daemon.expect_notify("READY=1", Duration::from_secs(20));
    eventually(Duration::from_secs(20), "the first sync", || {
        local_count(&env) == 5
    });
    let maildir = env.maildir();
    let state = env.state_dir();
    let before = outside(env.dir.path(), &[&maildir, &state]);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let manager = rt.block_on(async {
        let conn = zbus::connection::Builder::address(bus.address.as_str())
            .build()
            .await
            .expect("connect to the private bus");
        ManagerProxy::builder(&conn)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .expect("manager proxy")
    });
    let pid = daemon.child.id();
    let mut runner = TestRunner::new(Config {
        failure_persistence: None,
        // A failure may cost a timeout per try: shrink a little, not for an hour.
        max_shrink_iters: 20,
        ..Config::default()
    });
    let result = runner.run(&call(), |call| {
        // zbus waits 25 s for a reply; an answer takes milliseconds.
        let answered = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), make(&manager, &call)).await
        });
        match answered {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(TestCaseError::fail(format!(
                    "{call:?} was not answered: {e}"
                )));
            }
            Err(_) => {
                return Err(TestCaseError::fail(format!(
                    "{call:?} was not answered within 5 s"
                )));
            }
        }
        prop_assert!(
            alive(pid),
            "the daemon died after {call:?}\n{}",
            daemon.log_tail()
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}\n--- daemon log\n{}", daemon.log_tail());
    }

    // Still itself: resumed, it syncs new mail, and nothing appeared outside its places.
    rt.block_on(manager.resume("test")).expect("resume");
    env.ctl.append("INBOX", &corpus::message(61, 100), &[]);
    daemon.eventually(
        Duration::from_secs(30),
        "new mail after the fuzzing",
        || local_count(&env) == 6,
    );
    env.assert_in_step();
    let log = std::fs::read_to_string(&daemon.log).unwrap_or_default();
    assert!(!log.contains("panicked"), "{}", daemon.log_tail());
    let after = outside(env.dir.path(), &[&maildir, &state]);
    let new: Vec<&String> = after.difference(&before).collect();
    assert!(
        new.is_empty(),
        "written outside the Maildir and the state: {new:?}"
    );
    daemon.signal("-TERM");
    assert!(daemon.wait_exit(Duration::from_secs(25)).success());
}
