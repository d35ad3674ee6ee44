//! User hook commands run around syncs and on new mail (as OfflineIMAP's `presynchook`,
//! `postsynchook` and `newmail_hook`).
//!
//! A hook is an argv run directly, without a shell: what the user wrote is what runs, and no
//! folder or account name can inject shell syntax. Someone who wants a shell writes
//! `["sh", "-c", "..."]`. A hook never stops a sync: failures are logged and reported to the
//! caller, which carries on.

use std::fmt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

/// How much of a hook's stdout and stderr is kept, from the end: enough for an error message, and
/// a chatty hook cannot use up memory.
const TAIL_BYTES: usize = 4096;

/// How long to keep reading output after the hook exited. A process the hook left in the
/// background may hold the pipes open for ever; the hook itself is done.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// How long to wait for a killed hook to be reaped. SIGKILL cannot be caught, but a process
/// stuck in the kernel (a hung NFS mount) dies only when the kernel lets it.
const REAP_GRACE: Duration = Duration::from_secs(5);

/// Environment variables of the service manager that hooks must not inherit: a hook that speaks
/// sd_notify(3) itself would otherwise report readiness or watchdog pings on our behalf.
const MANAGER_VARIABLES: &[&str] = &["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// One hook command.
///
/// In the configuration file it is either an argv, `["notmuch", "new"]`, or a table,
/// `{ command = ["notmuch", "new"], timeout = 120 }` with the timeout in seconds (default 60).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    // INVARIANT: argv is not empty (argv[0] is the program) and timeout is not zero.
    argv: Vec<String>,
    timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    #[error(
        "a hook command must not be empty: give the program and its arguments, \
         e.g. [\"notmuch\", \"new\"]"
    )]
    EmptyCommand,
    #[error("a hook command's program must not be an empty string")]
    EmptyProgram,
    #[error("a hook timeout must be at least 1 (seconds)")]
    ZeroTimeout,
}

impl Hook {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

    pub fn new(argv: Vec<String>, timeout: Duration) -> Result<Hook, HookError> {
        match argv.first() {
            None => return Err(HookError::EmptyCommand),
            Some(program) if program.is_empty() => return Err(HookError::EmptyProgram),
            Some(_) => {}
        }
        if timeout.is_zero() {
            return Err(HookError::ZeroTimeout);
        }
        Ok(Hook { argv, timeout })
    }

    /// The program and its arguments; never empty.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn program(&self) -> &str {
        // The invariant guarantees argv[0]; the fallback only keeps this total.
        self.argv.first().map_or("", String::as_str)
    }
}

/// When hooks run; the value of `IDLEWILD_EVENT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookEvent {
    /// Before an account's sync starts.
    Presync,
    /// After an account's sync finished, successfully or not.
    Postsync,
    /// A sync brought new messages into a folder.
    NewMail,
}

impl HookEvent {
    /// The name used as configuration key and as `IDLEWILD_EVENT`.
    pub fn as_str(self) -> &'static str {
        match self {
            HookEvent::Presync => "presync",
            HookEvent::Postsync => "postsync",
            HookEvent::NewMail => "new_mail",
        }
    }
}

impl fmt::Display for HookEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `hooks` table of the configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksConfig {
    pub presync: Option<Hook>,
    pub postsync: Option<Hook>,
    pub new_mail: Option<Hook>,
}

impl HooksConfig {
    /// The keys the table may hold, for documentation checks.
    pub const KEYS: &[&str] = &["presync", "postsync", "new_mail"];

    pub fn get(&self, event: HookEvent) -> Option<&Hook> {
        match event {
            HookEvent::Presync => self.presync.as_ref(),
            HookEvent::Postsync => self.postsync.as_ref(),
            HookEvent::NewMail => self.new_mail.as_ref(),
        }
    }
}

/// The table form of a hook; the array form is handled by the visitor directly.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HookTable {
    command: Vec<String>,
    timeout: Option<u64>,
}

// Hand-written rather than `#[serde(untagged)]`: an untagged enum reports any mistake as "data
// did not match any variant", where this says what is wrong.
impl<'de> Deserialize<'de> for Hook {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Hook, D::Error> {
        struct HookVisitor;

        impl<'de> Visitor<'de> for HookVisitor {
            type Value = Hook;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a command as an array of strings, or a table with `command` and `timeout`",
                )
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Hook, A::Error> {
                let mut argv = Vec::new();
                while let Some(arg) = seq.next_element::<String>()? {
                    argv.push(arg);
                }
                Hook::new(argv, Hook::DEFAULT_TIMEOUT).map_err(de::Error::custom)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Hook, A::Error> {
                let table = HookTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let timeout = table
                    .timeout
                    .map_or(Hook::DEFAULT_TIMEOUT, Duration::from_secs);
                Hook::new(table.command, timeout).map_err(de::Error::custom)
            }
        }

        deserializer.deserialize_any(HookVisitor)
    }
}

/// How a hook run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookOutcome {
    Ok,
    /// It could not be started or exited unsuccessfully; the text says how, with the end of its
    /// stderr.
    Failed(String),
    /// It ran past its timeout and was killed, with everything it started.
    TimedOut,
}

/// Runs `hook` with stdin from /dev/null and the variables `env` added to our environment, and
/// waits for it at most its timeout.
///
/// The hook runs in its own process group so that on timeout (or if this future is dropped) the
/// whole group gets SIGKILL: with `["sh", "-c", "a; b"]` the process doing the work is a
/// grandchild, and killing only the shell would leave it running. Output is kept from the end,
/// bounded, and logged at debug level; failures are logged as warnings. Never fails itself.
pub async fn run_hook(name: &str, hook: &Hook, env: &[(&str, String)]) -> HookOutcome {
    let program = hook.program();
    let mut command = tokio::process::Command::new(program);
    command
        .args(&hook.argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for variable in MANAGER_VARIABLES {
        command.env_remove(variable);
    }
    command.envs(env.iter().map(|(key, value)| (key, value)));

    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            tracing::warn!(hook = name, program, %error, "cannot start hook");
            return HookOutcome::Failed(format!("cannot start {program}: {error}"));
        }
    };
    let mut group = GroupKiller::new(child.id());
    tracing::debug!(hook = name, argv = ?hook.argv, pid = child.id(), "hook started");

    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let (mut out_tail, mut err_tail) = (Tail::default(), Tail::default());
    let (mut out_buf, mut err_buf) = ([0u8; 4096], [0u8; 4096]);
    let deadline = Instant::now() + hook.timeout;
    let mut drain_until = None;
    let mut status: Option<std::io::Result<ExitStatus>> = None;

    // One loop reads both pipes and waits for the exit together: reading them one after the
    // other would deadlock on a hook that fills the pipe we are not reading.
    loop {
        if status.is_some() && stdout.is_none() && stderr.is_none() {
            break;
        }
        tokio::select! {
            read = read_some(&mut stdout, &mut out_buf), if stdout.is_some() => match read {
                Ok(0) | Err(_) => stdout = None,
                Ok(n) => out_tail.push(&out_buf[..n]),
            },
            read = read_some(&mut stderr, &mut err_buf), if stderr.is_some() => match read {
                Ok(0) | Err(_) => stderr = None,
                Ok(n) => err_tail.push(&err_buf[..n]),
            },
            exited = child.wait(), if status.is_none() => {
                group.disarm();
                status = Some(exited);
                drain_until = Some(Instant::now() + DRAIN_GRACE);
            },
            () = tokio::time::sleep_until(drain_until.unwrap_or(deadline)) => {
                if status.is_some() {
                    // Exited, but something it left behind holds a pipe open: stop reading.
                    break;
                }
                group.kill();
                // The group kill reached the child unless it failed; this covers that case.
                let _ = child.start_kill();
                let reaped = tokio::time::timeout(REAP_GRACE, child.wait()).await;
                if reaped.is_ok() {
                    group.disarm();
                }
                tracing::warn!(
                    hook = name,
                    program,
                    timeout = ?hook.timeout,
                    reaped = reaped.is_ok(),
                    stderr = %err_tail.text(),
                    "hook timed out and was killed"
                );
                log_output(name, &out_tail, &err_tail);
                return HookOutcome::TimedOut;
            },
        }
    }

    log_output(name, &out_tail, &err_tail);
    let stderr_tail = err_tail.text();
    match status {
        Some(Ok(status)) if status.success() => {
            tracing::debug!(hook = name, "hook finished");
            HookOutcome::Ok
        }
        Some(Ok(status)) => {
            tracing::warn!(hook = name, program, %status, stderr = %stderr_tail, "hook failed");
            HookOutcome::Failed(with_tail(
                format!("{program} ended with {status}"),
                &stderr_tail,
            ))
        }
        Some(Err(error)) => {
            tracing::warn!(hook = name, program, %error, "cannot wait for hook");
            HookOutcome::Failed(format!("cannot wait for {program}: {error}"))
        }
        // The loop only ends once the status is known.
        None => HookOutcome::Failed(format!("{program}: exit status unknown")),
    }
}

fn with_tail(message: String, tail: &str) -> String {
    if tail.is_empty() {
        message
    } else {
        format!("{message}: {tail}")
    }
}

fn log_output(name: &str, stdout: &Tail, stderr: &Tail) {
    if !stdout.is_empty() {
        tracing::debug!(hook = name, stdout = %stdout.text(), "hook output");
    }
    if !stderr.is_empty() {
        tracing::debug!(hook = name, stderr = %stderr.text(), "hook error output");
    }
}

/// Reads from a pipe that may already be closed; a closed one never becomes ready.
pub(crate) async fn read_some<R: AsyncRead + Unpin>(
    pipe: &mut Option<R>,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    match pipe {
        Some(pipe) => pipe.read(buf).await,
        None => std::future::pending().await,
    }
}

/// The last [`TAIL_BYTES`] of a stream.
#[derive(Default)]
struct Tail {
    bytes: Vec<u8>,
    truncated: bool,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        if self.bytes.len() > TAIL_BYTES {
            let excess = self.bytes.len() - TAIL_BYTES;
            self.bytes.drain(..excess);
            self.truncated = true;
        }
    }

    fn is_empty(&self) -> bool {
        self.bytes.iter().all(u8::is_ascii_whitespace)
    }

    /// The tail as text; a cut may split a character, which then shows as U+FFFD.
    fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.bytes);
        let text = text.trim();
        if self.truncated {
            format!("…{text}")
        } else {
            text.to_owned()
        }
    }
}

/// Sends SIGKILL to a hook's process group, on request or when dropped while armed.
///
/// It is disarmed once the hook has been reaped: from then on its process ID, and so the group
/// ID, may belong to an unrelated process. Until then the (possibly zombie) child holds the ID.
struct GroupKiller {
    pgid: Option<libc::pid_t>,
}

impl GroupKiller {
    fn new(pid: Option<u32>) -> GroupKiller {
        GroupKiller {
            pgid: pid.and_then(|pid| libc::pid_t::try_from(pid).ok()),
        }
    }

    fn disarm(&mut self) {
        self.pgid = None;
    }

    fn kill(&self) {
        if let Some(pgid) = self.pgid {
            // SAFETY: kill(2) takes plain integers and touches no memory of ours. A negative ID
            // addresses the group the hook leads (process_group(0) made its PID the group ID).
            let rc = unsafe { libc::kill(-pgid, libc::SIGKILL) };
            if rc != 0 {
                tracing::debug!(
                    pgid,
                    error = %std::io::Error::last_os_error(),
                    "cannot kill hook process group"
                );
            }
        }
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        // Dropped while armed: the hook is still running and our caller gave up on it.
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_end() {
        let mut tail = Tail::default();
        tail.push(b"  \n");
        assert!(tail.is_empty());
        tail.push(&vec![b'a'; TAIL_BYTES]);
        tail.push(b"the end\n");
        assert!(tail.truncated);
        assert_eq!(tail.bytes.len(), TAIL_BYTES);
        assert!(tail.text().starts_with('…'));
        assert!(tail.text().ends_with("the end"));
    }

    #[test]
    fn event_names_are_config_keys() {
        for event in [HookEvent::Presync, HookEvent::Postsync, HookEvent::NewMail] {
            assert!(HooksConfig::KEYS.contains(&event.as_str()));
        }
    }
}
