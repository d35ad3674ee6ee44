//! The systemd user unit: checked by `systemd-analyze --user verify` when systemd is installed,
//! and for the settings the daemon relies on always.

use std::path::{Path, PathBuf};
use std::process::Command;

const UNIT: &str = include_str!("../systemd/idlewild.service");
const EXEC_START: &str = "ExecStart=%h/.cargo/bin/idlewild daemon";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// A man(1) search path holding our pages in the man1/, man5/ layout man expects; the repository
/// keeps them flat.
fn man_tree(dir: &Path) -> PathBuf {
    let root = dir.join("man");
    for (page, section) in [("idlewild.1", "man1"), ("idlewild.toml.5", "man5")] {
        let target = root.join(section);
        std::fs::create_dir_all(&target).unwrap();
        std::fs::copy(repo().join("man").join(page), target.join(page)).unwrap();
    }
    root
}

#[test]
fn systemd_analyze_verify() {
    if !on_path("systemd-analyze") {
        println!("SKIPPED: systemd-analyze is not installed; the unit file was not verified");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // verify fails if ExecStart= names a missing binary: point it at the one just built.
    assert_eq!(UNIT.lines().filter(|l| *l == EXEC_START).count(), 1);
    let unit = UNIT.replace(
        EXEC_START,
        &format!("ExecStart={} daemon", env!("CARGO_BIN_EXE_idlewild")),
    );
    let unit_path = dir.path().join("idlewild.service");
    std::fs::write(&unit_path, unit).unwrap();
    // The user-mode verifier looks up the runtime directory and fails without one.
    let runtime = dir.path().join("runtime");
    std::fs::create_dir(&runtime).unwrap();

    let mut command = Command::new("systemd-analyze");
    command
        .args(["--user", "verify"])
        .env("XDG_RUNTIME_DIR", &runtime)
        .current_dir(dir.path());
    // For each Documentation=man: link verify runs man(1), which must find our pages.
    if on_path("man") {
        command.env("MANPATH", man_tree(dir.path()));
    } else {
        println!("man(1) is not installed: Documentation= links not checked");
        command.arg("--man=no");
    }
    let output = command.arg(&unit_path).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    // Unknown or misspelt keys are only warnings with exit status 0: any output is a failure.
    assert!(
        output.status.success() && stderr.trim().is_empty() && stdout.trim().is_empty(),
        "systemd-analyze --user verify: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    println!("systemd-analyze --user verify passed");
}

/// The settings the daemon's behaviour depends on, as `key=value` lines of the [Service] section.
#[test]
fn service_settings_match_the_daemon() {
    let mut section = "";
    let mut service = Vec::new();
    for line in UNIT.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section == "[Service]" && !line.is_empty() && !line.starts_with('#') {
            service.push(line);
        }
    }
    for expected in [
        // The daemon sends READY=1 and watchdog pings from its main process.
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=60",
        // SIGHUP reloads the configuration.
        "ExecReload=/bin/kill -HUP $MAINPID",
        EXEC_START,
        // Longer than the 20 seconds the daemon gives syncs in flight when stopping.
        "TimeoutStopSec=30",
        "ProtectSystem=strict",
    ] {
        assert!(
            service.contains(&expected),
            "missing {expected:?} in {service:#?}"
        );
    }
    // Every writable path is optional ("-"), so a missing one does not stop the service.
    let writable = service
        .iter()
        .find_map(|l| l.strip_prefix("ReadWritePaths="))
        .unwrap();
    for path in writable.split_whitespace() {
        assert!(path.starts_with('-'), "{path} is required to exist");
    }
    // A user manager has no network-online.target; ordering after it would silently do nothing.
    assert!(
        !UNIT
            .lines()
            .any(|l| !l.trim_start().starts_with('#') && l.contains("network-online.target"))
    );
}
