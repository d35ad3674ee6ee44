//! Hook commands: run without a shell, with our variables, bounded in time and output, and never
//! fatal.

use std::path::Path;
use std::time::{Duration, Instant};

use idlewild::hooks::{Hook, HookEvent, HookOutcome, HooksConfig, run_hook};

fn hook(argv: &[&str]) -> Hook {
    hook_with_timeout(argv, Duration::from_secs(20))
}

fn hook_with_timeout(argv: &[&str], timeout: Duration) -> Hook {
    Hook::new(argv.iter().map(|s| s.to_string()).collect(), timeout).unwrap()
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Whether a process is gone. A zombie counts as gone: an orphaned grandchild is reaped by
/// PID 1, which in a container may never do so.
fn process_gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command name in parentheses, which may itself contain spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

fn wait_for_file(path: &Path) -> String {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.ends_with('\n')
        {
            return text.trim().to_owned();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{} never written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn success() {
    assert_eq!(
        run_hook("postsync", &hook(&["true"]), &[]).await,
        HookOutcome::Ok
    );
}

#[tokio::test]
async fn environment_reaches_the_hook() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let script = "printf '%s|%s|%s|%s\\n' \"$IDLEWILD_ACCOUNT\" \"$IDLEWILD_FOLDER\" \
                  \"$IDLEWILD_NEW_MESSAGES\" \"$IDLEWILD_EVENT\" > \"$1\"";
    let env = [
        ("IDLEWILD_ACCOUNT", "work".to_owned()),
        ("IDLEWILD_FOLDER", "INBOX/Lists; echo pwned".to_owned()),
        ("IDLEWILD_NEW_MESSAGES", "3".to_owned()),
        ("IDLEWILD_EVENT", HookEvent::NewMail.to_string()),
    ];
    let outcome = run_hook(
        "new_mail",
        &hook(&["sh", "-c", script, "sh", path_str(&out)]),
        &env,
    )
    .await;
    assert_eq!(outcome, HookOutcome::Ok);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "work|INBOX/Lists; echo pwned|3|new_mail\n"
    );
}

#[tokio::test]
async fn our_environment_is_inherited_and_stdin_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // PATH comes from our own environment; stdin is /dev/null, so `cat` ends at once.
    let script = "cat; printf '%s\\n' \"${PATH:+set}\" > \"$1\"";
    let outcome = run_hook(
        "presync",
        &hook(&["sh", "-c", script, "sh", path_str(&out)]),
        &[],
    )
    .await;
    assert_eq!(outcome, HookOutcome::Ok);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "set\n");
}

#[tokio::test]
async fn no_shell_interprets_the_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let literal = dir.path().join("a; touch pwned");
    let dollar = dir.path().join("$HOME");
    let outcome = run_hook(
        "postsync",
        &hook(&["touch", path_str(&literal), path_str(&dollar)]),
        &[],
    )
    .await;
    assert_eq!(outcome, HookOutcome::Ok);
    assert!(literal.exists());
    assert!(dollar.exists());
    assert!(!dir.path().join("pwned").exists());
    assert!(!Path::new("pwned").exists());
}

#[tokio::test]
async fn nonzero_exit_is_reported_with_stderr() {
    let outcome = run_hook(
        "postsync",
        &hook(&[
            "sh",
            "-c",
            "echo progress; echo 'notmuch: database locked' >&2; exit 3",
        ]),
        &[],
    )
    .await;
    let HookOutcome::Failed(message) = outcome else {
        panic!("expected a failure, got {outcome:?}");
    };
    assert!(
        message.contains("sh ended with exit status: 3"),
        "{message}"
    );
    assert!(message.contains("notmuch: database locked"), "{message}");
    // stdout is only logged, not part of the failure.
    assert!(!message.contains("progress"), "{message}");
}

#[tokio::test]
async fn stderr_in_the_message_is_bounded_to_its_end() {
    let script = "head -c 200000 /dev/zero | tr '\\0' x >&2; echo >&2; echo LAST LINE >&2; exit 1";
    let outcome = run_hook("postsync", &hook(&["sh", "-c", script]), &[]).await;
    let HookOutcome::Failed(message) = outcome else {
        panic!("expected a failure, got {outcome:?}");
    };
    assert!(
        message.ends_with("LAST LINE"),
        "{}",
        &message[message.len() - 40..]
    );
    assert!(message.len() < 4096 + 200, "{} bytes", message.len());
}

#[tokio::test]
async fn much_output_does_not_block_the_hook() {
    // Far more than a pipe buffer (64 KiB) on both streams: unread, the hook would hang.
    let script = "head -c 1000000 /dev/zero; head -c 1000000 /dev/zero >&2";
    let started = Instant::now();
    let outcome = run_hook(
        "postsync",
        &hook_with_timeout(&["sh", "-c", script], Duration::from_secs(20)),
        &[],
    )
    .await;
    assert_eq!(outcome, HookOutcome::Ok);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn missing_program_is_reported() {
    let outcome = run_hook(
        "new_mail",
        &hook(&["/nonexistent/idlewild-hook", "arg"]),
        &[],
    )
    .await;
    let HookOutcome::Failed(message) = outcome else {
        panic!("expected a failure, got {outcome:?}");
    };
    assert!(
        message.contains("cannot start /nonexistent/idlewild-hook"),
        "{message}"
    );
    assert!(message.contains("No such file"), "{message}");
}

#[tokio::test]
async fn timeout_kills_the_hook_and_what_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let shell_pid = dir.path().join("shell.pid");
    let child_pid = dir.path().join("child.pid");
    // The shell starts a grandchild and waits for it: killing only the shell would leave the
    // grandchild running, holding our pipes open.
    let script = "echo $$ > \"$1\"; sleep 60 & echo $! > \"$2\"; wait";
    let started = Instant::now();
    let outcome = run_hook(
        "presync",
        &hook_with_timeout(
            &[
                "sh",
                "-c",
                script,
                "sh",
                path_str(&shell_pid),
                path_str(&child_pid),
            ],
            Duration::from_millis(1500),
        ),
        &[],
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(outcome, HookOutcome::TimedOut);
    assert!(elapsed >= Duration::from_millis(1500), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");

    let shell = wait_for_file(&shell_pid);
    let child = wait_for_file(&child_pid);
    // The shell was our child and has been reaped: no /proc entry at all.
    assert!(
        !Path::new(&format!("/proc/{shell}")).exists(),
        "shell {shell} still there"
    );
    let start = Instant::now();
    while !process_gone(&child) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "grandchild {child} still running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn background_process_holding_the_pipes_does_not_stall_the_hook() {
    let dir = tempfile::tempdir().unwrap();
    let child_pid = dir.path().join("child.pid");
    // The hook exits at once but leaves a process with our stdout and stderr open.
    let script = "sleep 30 & echo $! > \"$1\"; exit 0";
    let started = Instant::now();
    let outcome = run_hook(
        "postsync",
        &hook_with_timeout(
            &["sh", "-c", script, "sh", path_str(&child_pid)],
            Duration::from_secs(20),
        ),
        &[],
    )
    .await;
    assert_eq!(outcome, HookOutcome::Ok);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Not ours to kill: a hook may start something on purpose. Clean up after the test.
    let child = wait_for_file(&child_pid);
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &child])
        .status();
}

// ---- configuration ---------------------------------------------------------------------------

#[derive(Debug, serde::Deserialize)]
struct File {
    hooks: HooksConfig,
}

fn parse(text: &str) -> Result<HooksConfig, String> {
    toml::from_str::<File>(text)
        .map(|file| file.hooks)
        .map_err(|e| e.to_string())
}

#[test]
fn config_array_and_table_forms() {
    let hooks = parse(
        r#"
        [hooks]
        presync = ["mbsync-notify", "start"]
        new_mail = { command = ["notmuch", "new"], timeout = 120 }
        postsync = { command = ["true"] }
        "#,
    )
    .unwrap();
    let presync = hooks.get(HookEvent::Presync).unwrap();
    assert_eq!(presync.argv(), ["mbsync-notify", "start"]);
    assert_eq!(presync.timeout(), Duration::from_secs(60));
    let new_mail = hooks.get(HookEvent::NewMail).unwrap();
    assert_eq!(new_mail.argv(), ["notmuch", "new"]);
    assert_eq!(new_mail.timeout(), Duration::from_secs(120));
    assert_eq!(
        hooks.get(HookEvent::Postsync).unwrap().timeout(),
        Hook::DEFAULT_TIMEOUT
    );
}

#[test]
fn config_may_omit_hooks() {
    let hooks = parse("[hooks]\n").unwrap();
    assert_eq!(hooks, HooksConfig::default());
}

#[test]
fn config_errors_say_what_is_wrong() {
    let cases = [
        ("presync = []", "a hook command must not be empty"),
        (
            "presync = { command = [] }",
            "a hook command must not be empty",
        ),
        ("presync = [\"\"]", "program must not be an empty string"),
        (
            "presync = { command = [\"x\"], timeout = 0 }",
            "at least 1 (seconds)",
        ),
        (
            "presync = { command = [\"x\"], timout = 5 }",
            "unknown field `timout`",
        ),
        ("presync = { timeout = 5 }", "missing field `command`"),
        (
            "presync = \"notmuch new\"",
            "a command as an array of strings",
        ),
        ("presync = [\"notmuch\", 1]", "expected a string"),
        ("postsync_hook = [\"x\"]", "unknown field `postsync_hook`"),
    ];
    for (line, expected) in cases {
        let error = parse(&format!("[hooks]\n{line}\n")).unwrap_err();
        assert!(error.contains(expected), "{line}: {error}");
    }
}

#[test]
fn hook_constructor_checks_its_invariant() {
    assert!(Hook::new(Vec::new(), Duration::from_secs(1)).is_err());
    assert!(Hook::new(vec!["x".into()], Duration::ZERO).is_err());
    let hook = Hook::new(vec!["x".into()], Duration::from_secs(1)).unwrap();
    assert_eq!(hook.argv(), ["x"]);
}
