//! Paused accounts, kept on disk so a pause survives a daemon restart and also holds for the
//! one-shot syncs a timer runs: one small file per paused account in the state directory,
//! written atomically.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest timed pause: 366 days. A longer one is more likely a mistake (or a `u32::MAX`
/// meant as "forever") than a plan; "until resumed" is 0.
pub const MAX_SECONDS: u64 = 366 * 24 * 60 * 60;

/// An account's pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pause {
    /// When the pause ends by itself; `None`: only when resumed.
    pub until: Option<SystemTime>,
}

impl Pause {
    /// A pause of `seconds` from `now`; 0 means until resumed.
    pub fn for_seconds(seconds: u64, now: SystemTime) -> Pause {
        Pause {
            until: (seconds > 0).then(|| now + Duration::from_secs(seconds)),
        }
    }

    pub fn is_over(&self, now: SystemTime) -> bool {
        self.until.is_some_and(|t| t <= now)
    }

    /// Seconds since the epoch of the end, 0 for "until resumed" (the D-Bus and JSON form).
    pub fn until_epoch(&self) -> u64 {
        self.until.map_or(0, epoch_seconds)
    }

    /// "until resumed" or "until 2026-11-28 14:05".
    pub fn describe(&self) -> String {
        match self.until {
            None => "until resumed".to_owned(),
            Some(t) => format!(
                "until {}",
                chrono::DateTime::<chrono::Local>::from(t).format("%Y-%m-%d %H:%M")
            ),
        }
    }
}

pub fn epoch_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    #[error("cannot record the pause in {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot remove the pause {path}: {source}")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn path(state_dir: &Path, account: &str) -> PathBuf {
    state_dir.join(format!("{account}.paused"))
}

/// The account's pause, if it has one that is not over. A file that cannot be read or parsed
/// counts as a pause until resumed: a pause the user asked for is never silently dropped.
pub fn load(state_dir: &Path, account: &str, now: SystemTime) -> Option<Pause> {
    let text = match std::fs::read_to_string(path(state_dir, account)) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(account, error = %e, "cannot read the pause file; treating the account as paused");
            return Some(Pause { until: None });
        }
    };
    let pause = parse(&text);
    (!pause.is_over(now)).then_some(pause)
}

fn parse(text: &str) -> Pause {
    let until = text
        .lines()
        .find_map(|l| l.strip_prefix("until="))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&secs| secs > 0)
        .map(|secs| UNIX_EPOCH + Duration::from_secs(secs));
    Pause { until }
}

/// Records the pause: written to a temporary file, synced, then renamed over the old one.
pub fn save(state_dir: &Path, account: &str, pause: &Pause) -> Result<(), PauseError> {
    let target = path(state_dir, account);
    let err = |source| PauseError::Write {
        path: target.clone(),
        source,
    };
    crate::private::create_state_dir(state_dir).map_err(err)?;
    let tmp = state_dir.join(format!(".{account}.paused.tmp"));
    let mut file = crate::private::open_file(&tmp, true).map_err(err)?;
    writeln!(
        file,
        "# idlewild: account {account} is paused; `idlewild resume {account}` ends it\nuntil={}",
        pause.until_epoch()
    )
    .map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, &target).map_err(err)?;
    std::fs::File::open(state_dir)
        .and_then(|d| d.sync_all())
        .map_err(err)
}

/// Ends the pause; no pause is fine.
pub fn clear(state_dir: &Path, account: &str) -> Result<(), PauseError> {
    let target = path(state_dir, account);
    match std::fs::remove_file(&target) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(PauseError::Remove {
            path: target,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_round_trips_and_ends_by_itself() {
        let dir = tempfile::tempdir().unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(load(dir.path(), "a", now), None);
        save(dir.path(), "a", &Pause::for_seconds(60, now)).unwrap();
        let p = load(dir.path(), "a", now).unwrap();
        assert_eq!(p.until_epoch(), 1_000_060);
        assert_eq!(load(dir.path(), "a", now + Duration::from_secs(61)), None);
        save(dir.path(), "a", &Pause::for_seconds(0, now)).unwrap();
        assert_eq!(
            load(dir.path(), "a", now + Duration::from_secs(1 << 40)),
            Some(Pause { until: None })
        );
        clear(dir.path(), "a").unwrap();
        clear(dir.path(), "a").unwrap();
        assert_eq!(load(dir.path(), "a", now), None);
    }

    #[test]
    fn a_garbled_pause_file_still_pauses() {
        assert_eq!(parse("garbage"), Pause { until: None });
    }
}
