//! User hook commands run around syncs and on new mail (as OfflineIMAP's `presynchook`,
//! `postsynchook` and `newmail_hook`).
//!
//! A hook is an argv run directly, without a shell: what the user wrote is what runs, and no
//! folder or account name can inject shell syntax. Someone who wants a shell writes
//! `["sh", "-c", "..."]`. A hook never stops a sync: failures are logged and reported to the
//! caller, which carries on.

use std::fmt;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::child::{Captured, Ended, Keep, RunError};

/// How much of a hook's stdout and stderr is kept, from the end: enough for an error message, and
/// a chatty hook cannot use up memory.
const TAIL_BYTES: usize = 4096;

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
    command.args(&hook.argv[1..]).stdin(Stdio::null());
    for variable in MANAGER_VARIABLES {
        command.env_remove(variable);
    }
    command.envs(env.iter().map(|(key, value)| (key, value)));
    tracing::debug!(hook = name, argv = ?hook.argv, "hook starting");
    let keep = Keep::Tail(TAIL_BYTES);
    match crate::child::run(command, hook.timeout, keep, keep).await {
        Err(RunError::Start(error)) => {
            tracing::warn!(hook = name, program, %error, "cannot start hook");
            HookOutcome::Failed(format!("cannot start {program}: {error}"))
        }
        Err(RunError::Wait(error)) => {
            tracing::warn!(hook = name, program, %error, "cannot wait for hook");
            HookOutcome::Failed(format!("cannot wait for {program}: {error}"))
        }
        Ok(Ended::TimedOut {
            stdout,
            stderr,
            reaped,
        }) => {
            tracing::warn!(
                hook = name,
                program,
                timeout = ?hook.timeout,
                reaped,
                stderr = %stderr.tail_text(),
                "hook timed out and was killed"
            );
            log_output(name, &stdout, &stderr);
            HookOutcome::TimedOut
        }
        Ok(Ended::Exited {
            status,
            stdout,
            stderr,
        }) => {
            log_output(name, &stdout, &stderr);
            if status.success() {
                tracing::debug!(hook = name, "hook finished");
                return HookOutcome::Ok;
            }
            let stderr_tail = stderr.tail_text();
            tracing::warn!(hook = name, program, %status, stderr = %stderr_tail, "hook failed");
            HookOutcome::Failed(with_tail(
                format!("{program} ended with {status}"),
                &stderr_tail,
            ))
        }
    }
}

fn with_tail(message: String, tail: &str) -> String {
    if tail.is_empty() {
        message
    } else {
        format!("{message}: {tail}")
    }
}

fn log_output(name: &str, stdout: &Captured, stderr: &Captured) {
    let blank = |c: &Captured| c.bytes.iter().all(u8::is_ascii_whitespace);
    if !blank(stdout) {
        tracing::debug!(hook = name, stdout = %stdout.tail_text(), "hook output");
    }
    if !blank(stderr) {
        tracing::debug!(hook = name, stderr = %stderr.tail_text(), "hook error output");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_are_config_keys() {
        for event in [HookEvent::Presync, HookEvent::Postsync, HookEvent::NewMail] {
            assert!(HooksConfig::KEYS.contains(&event.as_str()));
        }
    }
}
