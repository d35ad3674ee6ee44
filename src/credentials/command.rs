//! Password and token commands: an argv run without a shell (as `pass show mail/work`), whose
//! first line of standard output is the secret.
//!
//! Standard output is never logged or put into an error, even when the command fails: a command
//! that prints its secret and then exits non-zero must not leak it. Standard error is kept (its
//! end, bounded) for the error message, since that is where such programs say what went wrong.
//! Standard input is inherited, so a command may ask on the terminal (pinentry-tty) when idlewild
//! is run by hand; the daemon's standard input is /dev/null.

use std::process::Stdio;

use super::{CredentialError, Secret, SecretCommand};
use crate::child::{Ended, Keep, RunError};

/// More than any password or access token (JWTs from big providers are a few KiB).
const MAX_STDOUT: usize = 64 * 1024;
/// The end of standard error kept for the error message.
const STDERR_TAIL: usize = 2048;

/// Runs `command` and returns the first line of its standard output. `what` ("password" or
/// "token") names the command in errors.
pub async fn run(
    account: &str,
    what: &'static str,
    command: &SecretCommand,
) -> Result<Secret, CredentialError> {
    let program = command.program().to_owned();
    let fail = |problem: String| CredentialError::Command {
        account: account.to_owned(),
        what,
        program: program.clone(),
        problem,
    };
    let mut child = tokio::process::Command::new(&program);
    child.args(&command.argv()[1..]).stdin(Stdio::inherit());
    tracing::debug!(account, what, program, "running the {what} command");
    let ended = crate::child::run(
        child,
        command.timeout(),
        Keep::Head(MAX_STDOUT),
        Keep::Tail(STDERR_TAIL),
    )
    .await;
    let (status, mut out, err) = match ended {
        Err(RunError::Start(e)) => return Err(fail(format!("cannot be started: {e}"))),
        Err(RunError::Wait(e)) => return Err(fail(format!("cannot be waited for: {e}"))),
        Ok(Ended::TimedOut {
            mut stdout, stderr, ..
        }) => {
            stdout.wipe();
            return Err(fail(with_stderr(
                format!(
                    "did not finish within {} s and was killed",
                    command.timeout().as_secs()
                ),
                &stderr.bytes,
            )));
        }
        Ok(Ended::Exited {
            status,
            stdout,
            stderr,
        }) => (status, stdout, stderr),
    };
    if !status.success() {
        out.wipe();
        return Err(fail(with_stderr(
            format!("ended with {status}"),
            &err.bytes,
        )));
    }
    let first = out.bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let first = first.strip_suffix(b"\r").unwrap_or(first).to_vec();
    // The rest of the output may hold secrets too (pass prints more lines).
    out.wipe();
    match String::from_utf8(first) {
        Ok(line) if line.is_empty() => Err(fail(with_stderr(
            "printed nothing on the first line of its standard output".to_owned(),
            &err.bytes,
        ))),
        Ok(line) => Ok(Secret::new(line)),
        Err(e) => {
            let mut bytes = e.into_bytes();
            bytes.fill(0);
            Err(fail(
                "printed a first line that is not UTF-8 text".to_owned(),
            ))
        }
    }
}

fn with_stderr(message: String, stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        message
    } else {
        format!("{message}; its error output: {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sh(script: &str, timeout: u64) -> SecretCommand {
        SecretCommand::new(
            vec!["sh".into(), "-c".into(), script.into()],
            Duration::from_secs(timeout),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn the_first_line_is_the_secret() {
        let s = run(
            "a",
            "password",
            &sh("printf 'pw one\\r\\nsecond line\\n'", 5),
        )
        .await
        .unwrap();
        assert_eq!(s.expose(), "pw one");
        let s = run("a", "password", &sh("printf nonewline", 5))
            .await
            .unwrap();
        assert_eq!(s.expose(), "nonewline");
    }

    #[tokio::test]
    async fn a_failure_names_the_exit_status_and_stderr_but_not_stdout() {
        let e = run(
            "acct",
            "password",
            &sh(
                "echo leaked-secret; echo 'gpg: decryption failed' >&2; exit 3",
                5,
            ),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("the password command of account acct (sh)"),
            "{e}"
        );
        assert!(e.contains("exit status: 3"), "{e}");
        assert!(e.contains("gpg: decryption failed"), "{e}");
        assert!(!e.contains("leaked-secret"), "{e}");
    }

    #[tokio::test]
    async fn a_command_past_its_timeout_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        let script = format!("sleep 3; touch {}", marker.display());
        let started = std::time::Instant::now();
        let e = run("a", "token", &sh(&script, 1))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("did not finish within 1 s"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(3));
        std::thread::sleep(Duration::from_millis(2500));
        assert!(
            !marker.exists(),
            "the command's children outlived the timeout"
        );
    }

    #[tokio::test]
    async fn a_cancelled_command_takes_its_grandchildren_with_it() {
        // The daemon gives up on a password command when the account stops: what the command
        // started must stop too, as a hook's does.
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        let script = format!("(sleep 1; touch '{}') & wait", marker.display());
        let command = sh(&script, 30);
        let lookup = run("a", "password", &command);
        assert!(
            tokio::time::timeout(Duration::from_millis(300), lookup)
                .await
                .is_err()
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            !marker.exists(),
            "a grandchild outlived the cancelled password command"
        );
    }

    #[tokio::test]
    async fn empty_output_is_an_error() {
        for script in ["true", "echo", "echo 'nothing here' >&2"] {
            let e = run("a", "password", &sh(script, 5))
                .await
                .unwrap_err()
                .to_string();
            assert!(e.contains("printed nothing"), "{script}: {e}");
        }
    }

    #[tokio::test]
    async fn a_missing_program_is_named() {
        let c = SecretCommand::new(vec!["/nonexistent/pw".into()], Duration::from_secs(5)).unwrap();
        let e = run("a", "password", &c).await.unwrap_err().to_string();
        assert!(e.contains("(/nonexistent/pw) cannot be started"), "{e}");
    }
}
