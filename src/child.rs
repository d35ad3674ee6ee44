//! Running a user's command (a hook, a password or token command): both pipes read together
//! and bounded, a timeout, and the command's whole process group killed on timeout or when the
//! caller gives up on it (its future is dropped).
//!
//! The command runs in its own process group: with `["sh", "-c", "a; b"]` the process doing
//! the work is a grandchild, and killing only the shell would leave it running.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

/// How long to keep reading output after the command exited. A process it left in the
/// background may hold the pipes open for ever; the command itself is done.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// How long to wait for a killed command to be reaped. SIGKILL cannot be caught, but a process
/// stuck in the kernel (a hung NFS mount) dies only when the kernel lets it.
const REAP_GRACE: Duration = Duration::from_secs(5);

/// Which part of an output stream is kept, and how much of it.
#[derive(Debug, Clone, Copy)]
pub enum Keep {
    /// The first bytes (a secret on the first line).
    Head(usize),
    /// The last bytes (an error message at the end).
    Tail(usize),
}

/// One output stream as kept.
#[derive(Debug, Default)]
pub struct Captured {
    pub bytes: Vec<u8>,
    /// Some of it was left out.
    pub truncated: bool,
}

impl Captured {
    fn push(&mut self, keep: Keep, data: &[u8]) {
        match keep {
            Keep::Head(max) => {
                let room = max.saturating_sub(self.bytes.len());
                self.bytes.extend_from_slice(&data[..room.min(data.len())]);
                self.truncated |= data.len() > room;
            }
            Keep::Tail(max) => {
                self.bytes.extend_from_slice(data);
                if self.bytes.len() > max {
                    let excess = self.bytes.len() - max;
                    self.bytes.drain(..excess);
                    self.truncated = true;
                }
            }
        }
    }

    /// The kept bytes as trimmed text (a cut may split a character: U+FFFD), with `…` where
    /// the beginning was cut off.
    pub fn tail_text(&self) -> String {
        let text = String::from_utf8_lossy(&self.bytes);
        let text = text.trim();
        if self.truncated {
            format!("…{text}")
        } else {
            text.to_owned()
        }
    }

    /// Wipes the bytes (they may hold a secret).
    pub fn wipe(&mut self) {
        self.bytes.fill(0);
    }
}

/// How a command ended.
#[derive(Debug)]
pub enum Ended {
    Exited {
        status: ExitStatus,
        stdout: Captured,
        stderr: Captured,
    },
    /// It ran past its timeout; its process group was killed.
    TimedOut {
        stdout: Captured,
        stderr: Captured,
        /// Whether it was reaped within [`REAP_GRACE`] after the kill.
        reaped: bool,
    },
}

/// Why a command did not run to an end.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start: {0}")]
    Start(#[source] std::io::Error),
    #[error("cannot be waited for: {0}")]
    Wait(#[source] std::io::Error),
}

/// Runs `command` (program, arguments, standard input and environment set by the caller) with
/// its standard output and error piped and kept as `keep` says, for at most `timeout`.
pub async fn run(
    mut command: tokio::process::Command,
    timeout: Duration,
    keep_stdout: Keep,
    keep_stderr: Keep,
) -> Result<Ended, RunError> {
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(RunError::Start)?;
    // Kills the group if this future is dropped before the command was reaped.
    let mut group = GroupKiller::new(child.id());
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let (mut out, mut err) = (Captured::default(), Captured::default());
    let (mut out_buf, mut err_buf) = ([0u8; 4096], [0u8; 4096]);
    let deadline = Instant::now() + timeout;
    let mut drain_until = None;
    let mut status: Option<std::io::Result<ExitStatus>> = None;

    // One loop reads both pipes and waits for the exit together: reading them one after the
    // other would deadlock on a command that fills the pipe not being read.
    loop {
        if status.is_some() && stdout.is_none() && stderr.is_none() {
            break;
        }
        tokio::select! {
            read = read_some(&mut stdout, &mut out_buf), if stdout.is_some() => match read {
                Ok(0) | Err(_) => stdout = None,
                Ok(n) => out.push(keep_stdout, &out_buf[..n]),
            },
            read = read_some(&mut stderr, &mut err_buf), if stderr.is_some() => match read {
                Ok(0) | Err(_) => stderr = None,
                Ok(n) => err.push(keep_stderr, &err_buf[..n]),
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
                let reaped = tokio::time::timeout(REAP_GRACE, child.wait()).await.is_ok();
                if reaped {
                    group.disarm();
                }
                return Ok(Ended::TimedOut { stdout: out, stderr: err, reaped });
            },
        }
    }
    match status {
        Some(Ok(status)) => Ok(Ended::Exited {
            status,
            stdout: out,
            stderr: err,
        }),
        Some(Err(e)) => Err(RunError::Wait(e)),
        // The loop only ends once the status is known.
        None => Err(RunError::Wait(std::io::Error::other("exit status unknown"))),
    }
}

/// Reads from a pipe that may already be closed; a closed one never becomes ready.
async fn read_some<R: AsyncRead + Unpin>(
    pipe: &mut Option<R>,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    match pipe {
        Some(pipe) => pipe.read(buf).await,
        None => std::future::pending().await,
    }
}

/// Sends SIGKILL to a command's process group, on request or when dropped while armed.
///
/// It is disarmed once the command has been reaped: from then on its process ID, and so the
/// group ID, may belong to an unrelated process. Until then the (possibly zombie) child holds
/// the ID.
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
            // addresses the group the command leads (process_group(0) made its PID the group ID).
            let rc = unsafe { libc::kill(-pgid, libc::SIGKILL) };
            if rc != 0 {
                tracing::debug!(
                    pgid,
                    error = %std::io::Error::last_os_error(),
                    "cannot kill a command's process group"
                );
            }
        }
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        // Dropped while armed: the command is still running and our caller gave up on it.
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_keep_the_end_and_heads_the_beginning() {
        let mut tail = Captured::default();
        tail.push(Keep::Tail(8), b"0123456789");
        tail.push(Keep::Tail(8), b"ab");
        assert_eq!(tail.bytes, b"456789ab");
        assert!(tail.truncated);
        assert_eq!(tail.tail_text(), "…456789ab");
        let mut head = Captured::default();
        head.push(Keep::Head(4), b"ab");
        head.push(Keep::Head(4), b"cdef");
        assert_eq!(head.bytes, b"abcd");
        assert!(head.truncated);
    }

    #[tokio::test]
    async fn a_command_given_up_on_takes_its_grandchildren_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        let mut command = tokio::process::Command::new("sh");
        command.args([
            "-c",
            &format!("(sleep 1; touch '{}') & wait", marker.display()),
        ]);
        let run = run(
            command,
            Duration::from_secs(30),
            Keep::Tail(64),
            Keep::Tail(64),
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(300), run)
                .await
                .is_err()
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            !marker.exists(),
            "a grandchild outlived the cancelled command"
        );
    }
}
