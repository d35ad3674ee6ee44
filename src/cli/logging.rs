//! Where log lines go: stderr (through the progress bars) or the systemd journal.
//!
//! The journal gets structured entries: `PRIORITY` follows syslog(3) levels, and tracing fields
//! become journal fields under their own names in upper case (`account` → `ACCOUNT=`,
//! `folder` → `FOLDER=`), so `journalctl --user -u idlewild ACCOUNT=work -p info` works. Field
//! names must therefore not clash with journald's own (`MESSAGE_ID`, `PRIORITY`, ...).

use std::str::FromStr;

use tracing_journald::{Priority, PriorityMappings};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::progress::BarWriter;

/// Where logging ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    Stderr,
    Journald,
}

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogTargetChoice {
    /// The journal when stderr already goes there (the daemon under systemd), else stderr.
    #[default]
    Auto,
    Stderr,
    Journald,
}

#[derive(Debug, thiserror::Error)]
#[error("unknown log target {0:?}: expected auto, stderr or journald")]
pub struct UnknownLogTarget(String);

impl FromStr for LogTargetChoice {
    type Err = UnknownLogTarget;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(LogTargetChoice::Auto),
            "stderr" => Ok(LogTargetChoice::Stderr),
            "journald" | "journal" => Ok(LogTargetChoice::Journald),
            other => Err(UnknownLogTarget(other.to_owned())),
        }
    }
}

impl std::fmt::Display for LogTargetChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LogTargetChoice::Auto => "auto",
            LogTargetChoice::Stderr => "stderr",
            LogTargetChoice::Journald => "journald",
        })
    }
}

/// Whether to try the journal, decided from plain inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Use stderr without trying the journal.
    Stderr,
    /// Try the journal; on failure use stderr. `explicit` says whether the user asked for the
    /// journal (then its absence deserves a warning) or it was only a guess.
    TryJournald { explicit: bool },
}

/// Decides where to log. `journal_stream` is the value of `JOURNAL_STREAM` and `stderr_id` the
/// (device, inode) of our stderr: systemd.exec(5) says to trust the variable only when the two
/// match, because it is inherited by every process the service starts, including shells whose
/// stderr is a terminal.
pub fn plan(
    choice: LogTargetChoice,
    journal_stream: Option<&str>,
    stderr_id: Option<(u64, u64)>,
) -> Plan {
    match choice {
        LogTargetChoice::Stderr => Plan::Stderr,
        LogTargetChoice::Journald => Plan::TryJournald { explicit: true },
        LogTargetChoice::Auto => {
            let stream = journal_stream.and_then(parse_journal_stream);
            match (stream, stderr_id) {
                (Some(stream), Some(stderr)) if stream == stderr => {
                    Plan::TryJournald { explicit: false }
                }
                _ => Plan::Stderr,
            }
        }
    }
}

/// Parses `JOURNAL_STREAM`, which is `DEVICE:INODE` in decimal.
fn parse_journal_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// The (device, inode) of file descriptor 2.
fn stderr_id() -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let metadata = std::fs::File::from(fd).metadata().ok()?;
    Some((metadata.dev(), metadata.ino()))
}

/// The filter: `IDLEWILD_LOG` if set (same syntax as `RUST_LOG`), else `warn` for dependencies
/// and `level_default` for idlewild itself.
fn filter(level_default: &str) -> EnvFilter {
    EnvFilter::try_from_env("IDLEWILD_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,idlewild={level_default}")))
}

/// Installs the global subscriber and returns where logs go. `interactive` enables colours on
/// stderr; it has no effect on the journal.
///
/// Call it once, before anything logs; a second call leaves the first subscriber in place.
pub fn init(level_default: &str, target: LogTargetChoice, interactive: bool) -> LogTarget {
    let plan = plan(
        target,
        std::env::var("JOURNAL_STREAM").ok().as_deref(),
        stderr_id(),
    );
    let mut journal_error = None;
    if let Plan::TryJournald { explicit } = plan {
        // layer() probes the journal socket and fails if nobody listens; it has no fallback of
        // its own, so the fallback is ours.
        match tracing_journald::layer() {
            Ok(layer) => {
                let layer = layer
                    .with_syslog_identifier("idlewild".to_owned())
                    .with_field_prefix(None)
                    // The default shifts every level one step down (INFO → notice), which would
                    // make `journalctl -p info` show our debug lines; map them as syslog does.
                    .with_priority_mappings(PriorityMappings {
                        info: Priority::Informational,
                        debug: Priority::Debug,
                        trace: Priority::Debug,
                        ..PriorityMappings::new()
                    });
                let installed = tracing_subscriber::registry()
                    .with(filter(level_default))
                    .with(layer)
                    .try_init();
                if let Err(error) = installed {
                    eprintln!("idlewild: logging was already set up: {error}");
                }
                return LogTarget::Journald;
            }
            Err(error) => journal_error = Some((explicit, error)),
        }
    }
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter(level_default))
        .with_writer(BarWriter)
        // Colour codes only for a person at a terminal: in a pipe or a file they are noise.
        .with_ansi(interactive)
        .with_target(false)
        .try_init();
    if let Err(error) = installed {
        eprintln!("idlewild: logging was already set up: {error}");
    }
    match journal_error {
        Some((true, error)) => {
            tracing::warn!(%error, "cannot log to the journal; logging to stderr instead");
        }
        // stderr is connected to the journal anyway, so nothing is lost but the fields.
        Some((false, error)) => {
            tracing::debug!(%error, "journal socket unavailable; logging to stderr");
        }
        None => {}
    }
    LogTarget::Stderr
}

#[cfg(test)]
mod tests {
    use super::*;
    use LogTargetChoice::*;

    #[test]
    fn choice_table() {
        let id = Some((25, 1234));
        let cases = [
            // The user's explicit choice wins whatever the environment says.
            (Stderr, Some("25:1234"), id, Plan::Stderr),
            (Journald, None, None, Plan::TryJournald { explicit: true }),
            (
                Journald,
                Some("1:2"),
                id,
                Plan::TryJournald { explicit: true },
            ),
            // Auto: the journal only when our stderr is the stream systemd connected.
            (
                Auto,
                Some("25:1234"),
                id,
                Plan::TryJournald { explicit: false },
            ),
            (Auto, None, id, Plan::Stderr),
            // Inherited by a shell started from a service: stderr is something else.
            (Auto, Some("25:9999"), id, Plan::Stderr),
            (Auto, Some("25:1234"), None, Plan::Stderr),
            (Auto, Some("garbage"), id, Plan::Stderr),
            (Auto, Some(""), id, Plan::Stderr),
        ];
        for (choice, stream, stderr, expected) in cases {
            assert_eq!(
                plan(choice, stream, stderr),
                expected,
                "{choice} with JOURNAL_STREAM={stream:?}, stderr={stderr:?}"
            );
        }
    }

    #[test]
    fn choice_names() {
        for choice in [Auto, Stderr, Journald] {
            assert_eq!(
                choice.to_string().parse::<LogTargetChoice>().unwrap(),
                choice
            );
        }
        assert_eq!("journal".parse::<LogTargetChoice>().unwrap(), Journald);
        let error = "syslog".parse::<LogTargetChoice>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown log target \"syslog\": expected auto, stderr or journald"
        );
    }

    #[test]
    fn journal_stream_format() {
        assert_eq!(parse_journal_stream("8:12345"), Some((8, 12345)));
        assert_eq!(parse_journal_stream("8"), None);
        assert_eq!(parse_journal_stream("a:b"), None);
    }
}
