//! The command line as a client of the daemon's D-Bus API: status, sync through the daemon,
//! pause, resume and watch. Everything here talks to the daemon only through `dbus::proxy`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use serde_json::json;

use crate::control::AccountReportJson;
use crate::dbus::proxy::ManagerProxy;
use crate::dbus::{AccountInfo, NAME};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The daemon answered with one of the API's errors.
    #[error("{message}")]
    Refused { name: String, message: String },
    #[error("the daemon stopped before the sync finished; run `idlewild sync` again")]
    DaemonGone,
    #[error("the daemon sent a job report that cannot be read: {0}")]
    BadReport(serde_json::Error),
    #[error("D-Bus: {0}")]
    Bus(zbus::Error),
}

impl From<zbus::Error> for ClientError {
    fn from(e: zbus::Error) -> ClientError {
        match e {
            zbus::Error::MethodError(name, message, _) => ClientError::Refused {
                message: message.unwrap_or_else(|| name.to_string()),
                name: name.to_string(),
            },
            other => ClientError::Bus(other),
        }
    }
}

impl ClientError {
    /// Whether the request itself was wrong (exit status 2) rather than something failing.
    pub fn is_usage(&self) -> bool {
        matches!(self, ClientError::Refused { name, .. }
            if name.ends_with(".UnknownAccount")
                || name.ends_with(".InvalidFolder")
                || name.ends_with(".InvalidArgs"))
    }
}

/// A connection to the running daemon.
pub struct Daemon {
    connection: zbus::Connection,
    pub manager: ManagerProxy<'static>,
}

/// Finds the daemon on the session bus. It is never started by this (D-Bus activation would
/// start it for any call): without a daemon the command line works on its own.
pub async fn connect() -> Result<Daemon, String> {
    connect_for(None).await
}

/// Like [`connect`], for requests about the accounts of `config`: a daemon that runs another
/// configuration file (say, a test setup beside the real one) is not the one to ask.
pub async fn connect_for(config: Option<&std::path::Path>) -> Result<Daemon, String> {
    let connection = zbus::Connection::session()
        .await
        .map_err(|e| format!("the idlewild daemon is not reachable (no session bus: {e})"))?;
    let running = async {
        let dbus = zbus::fdo::DBusProxy::new(&connection).await?;
        dbus.name_has_owner(zbus::names::BusName::try_from(NAME)?)
            .await
    }
    .await
    .map_err(|e| format!("the idlewild daemon is not reachable: {e}"))?;
    if !running {
        return Err("the idlewild daemon is not running".to_owned());
    }
    let manager = ManagerProxy::builder(&connection)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .map_err(|e| format!("the idlewild daemon is not reachable: {e}"))?;
    if let Some(config) = config {
        let ours = std::fs::canonicalize(config).unwrap_or_else(|_| config.to_owned());
        let theirs = manager
            .config_file()
            .await
            .map_err(|e| format!("the idlewild daemon is not reachable: {e}"))?;
        if std::path::Path::new(&theirs) != ours {
            return Err(format!(
                "the idlewild daemon that runs uses another configuration ({theirs})"
            ));
        }
    }
    Ok(Daemon {
        connection,
        manager,
    })
}

/// How a job the daemon ran ended.
pub struct JobResult {
    pub status: String,
    pub error: String,
    pub reports: Vec<AccountReportJson>,
}

impl Daemon {
    /// Asks for a sync and waits for its end. The signal is subscribed to before the request,
    /// so an answer that comes at once is not missed; a daemon that goes away ends the wait.
    pub async fn sync(
        &self,
        account: Option<&str>,
        folders: &[String],
        allow_mass_delete: bool,
        on_job: impl FnOnce(u64),
    ) -> Result<JobResult, ClientError> {
        let mut finished = self.manager.receive_job_finished().await?;
        let dbus = zbus::fdo::DBusProxy::new(&self.connection).await?;
        let mut owner = dbus
            .receive_name_owner_changed_with_args(&[(0, NAME)])
            .await?;
        let folders: Vec<&str> = folders.iter().map(String::as_str).collect();
        let mut options = HashMap::new();
        if allow_mass_delete {
            options.insert("AllowMassDelete", zbus::Variant::from(true));
        }
        let job = self
            .manager
            .sync_with_options(account.unwrap_or(""), &folders, options)
            .await?;
        on_job(job);
        loop {
            tokio::select! {
                signal = finished.next() => {
                    let Some(signal) = signal else { return Err(ClientError::DaemonGone) };
                    let args = signal.args()?;
                    if args.job == job {
                        let reports = serde_json::from_str(args.report)
                            .map_err(ClientError::BadReport)?;
                        return Ok(JobResult {
                            status: args.status.to_owned(),
                            error: args.error.to_owned(),
                            reports,
                        });
                    }
                }
                _ = owner.next() => return Err(ClientError::DaemonGone),
            }
        }
    }
}

/// `idlewild status`: one block per account.
pub fn print_status(accounts: &BTreeMap<String, AccountInfo>, now: SystemTime) {
    if accounts.is_empty() {
        println!("the daemon runs no accounts");
    }
    let width = accounts.keys().map(String::len).max().unwrap_or(0);
    for info in accounts.values() {
        let mut line = format!(
            "{:width$}  {:8} {} unseen of {}",
            info.name, info.state, info.unseen, info.total
        );
        if info.last_sync > 0 {
            line.push_str(&format!(
                ", last sync {}",
                ago(UNIX_EPOCH + Duration::from_secs(info.last_sync), now)
            ));
        }
        if info.paused {
            line.push_str(&match info.paused_until {
                0 => ", paused until resumed".to_owned(),
                t => format!(", paused until {}", local_time(t)),
            });
        }
        println!("{line}");
        if !info.last_error.is_empty() {
            println!("{:width$}  error: {}", "", info.last_error);
        }
    }
}

pub fn status_json(accounts: &BTreeMap<String, AccountInfo>) -> serde_json::Value {
    let accounts: Vec<serde_json::Value> = accounts
        .values()
        .map(|a| {
            json!({
                "name": a.name,
                "state": a.state,
                "last_sync": (a.last_sync > 0).then(|| rfc3339(a.last_sync)),
                "last_error": (!a.last_error.is_empty()).then_some(&a.last_error),
                "unseen": a.unseen,
                "total": a.total,
                "paused": a.paused,
                "paused_until": (a.paused_until > 0).then(|| rfc3339(a.paused_until)),
                "folders": a.folders.iter().map(|(name, (total, unseen))| {
                    (name.clone(), json!({"total": total, "unseen": unseen}))
                }).collect::<serde_json::Map<_, _>>(),
            })
        })
        .collect();
    json!({"daemon": true, "accounts": accounts})
}

fn rfc3339(epoch: u64) -> String {
    chrono::DateTime::<chrono::Local>::from(UNIX_EPOCH + Duration::from_secs(epoch)).to_rfc3339()
}

fn local_time(epoch: u64) -> String {
    chrono::DateTime::<chrono::Local>::from(UNIX_EPOCH + Duration::from_secs(epoch))
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

fn ago(then: SystemTime, now: SystemTime) -> String {
    let secs = now.duration_since(then).map_or(0, |d| d.as_secs());
    let at = chrono::DateTime::<chrono::Local>::from(then).format("%H:%M:%S");
    match secs {
        0..60 => format!("{at} ({secs} s ago)"),
        60..3600 => format!("{at} ({} min ago)", secs / 60),
        _ => format!("{at} ({} h ago)", secs / 3600),
    }
}

/// How `idlewild watch` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchFormat {
    /// One line per event, for people.
    Text,
    /// One JSON object per event, with waybar's `text`, `tooltip`, `class` and `alt` keys.
    Json,
    /// Only the status line (unseen count and state), printed when it changes.
    Bar,
}

/// A summary of all accounts for status bars: the unseen count, and the state that most needs
/// attention.
struct Summary {
    text: String,
    tooltip: String,
    class: &'static str,
    unseen: u32,
}

fn summarize(accounts: Option<&BTreeMap<String, AccountInfo>>) -> Summary {
    let Some(accounts) = accounts else {
        return Summary {
            text: "-".to_owned(),
            tooltip: "the idlewild daemon is not running".to_owned(),
            class: "stopped",
            unseen: 0,
        };
    };
    let unseen: u32 = accounts.values().map(|a| a.unseen).sum();
    let rank = |s: &str| match s {
        "error" => 5,
        "offline" => 4,
        "paused" => 3,
        "syncing" => 2,
        _ => 1,
    };
    let class = accounts
        .values()
        .map(|a| a.state.as_str())
        .max_by_key(|s| rank(s))
        .map_or("idle", |s| match s {
            "error" => "error",
            "offline" => "offline",
            "paused" => "paused",
            "syncing" => "syncing",
            _ => "idle",
        });
    let tooltip = accounts
        .values()
        .map(|a| {
            let mut line = format!("{}: {}, {} unseen", a.name, a.state, a.unseen);
            if !a.last_error.is_empty() {
                line.push_str(&format!(" ({})", a.last_error));
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n");
    let text = match class {
        "idle" => unseen.to_string(),
        other => format!("{unseen} {other}"),
    };
    Summary {
        text,
        tooltip,
        class,
        unseen,
    }
}

/// One event as `idlewild watch` prints it.
struct WatchEvent {
    kind: &'static str,
    fields: serde_json::Map<String, serde_json::Value>,
    text: String,
}

/// Prints the event; false when stdout is gone (the status bar quit), which ends `watch`.
fn emit(
    format: WatchFormat,
    event: &WatchEvent,
    accounts: Option<&BTreeMap<String, AccountInfo>>,
    last_bar: &mut Option<String>,
) -> bool {
    use std::io::Write;
    let summary = summarize(accounts);
    let line = match format {
        WatchFormat::Text => format!("{} {}", chrono::Local::now().format("%H:%M:%S"), event.text),
        WatchFormat::Json => {
            let mut object = event.fields.clone();
            object.insert("event".into(), json!(event.kind));
            object.insert("time".into(), json!(chrono::Local::now().to_rfc3339()));
            object.insert("text".into(), json!(summary.text));
            object.insert("alt".into(), json!(summary.class));
            object.insert("class".into(), json!(summary.class));
            object.insert("tooltip".into(), json!(summary.tooltip));
            object.insert("unseen".into(), json!(summary.unseen));
            serde_json::Value::Object(object).to_string()
        }
        WatchFormat::Bar => {
            if last_bar.as_deref() == Some(summary.text.as_str()) {
                return true;
            }
            *last_bar = Some(summary.text.clone());
            summary.text
        }
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
}

fn fields(pairs: &[(&str, serde_json::Value)]) -> serde_json::Map<String, serde_json::Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// `idlewild watch`: prints one line per event until interrupted or stdout closes; follows
/// the daemon across restarts.
pub async fn watch(format: WatchFormat) -> Result<(), String> {
    let connection = zbus::Connection::session()
        .await
        .map_err(|e| format!("no session bus: {e}"))?;
    let dbus = zbus::fdo::DBusProxy::new(&connection)
        .await
        .map_err(|e| e.to_string())?;
    let mut owners = dbus
        .receive_name_owner_changed_with_args(&[(0, NAME)])
        .await
        .map_err(|e| e.to_string())?;
    let mut last_bar = None;
    loop {
        let running = match zbus::names::BusName::try_from(NAME) {
            Ok(name) => dbus.name_has_owner(name).await.unwrap_or(false),
            Err(_) => false,
        };
        if !running {
            let event = WatchEvent {
                kind: "daemon",
                fields: fields(&[("running", json!(false))]),
                text: "the idlewild daemon is not running; waiting for it".to_owned(),
            };
            if !emit(format, &event, None, &mut last_bar) {
                return Ok(());
            }
            // Wait until someone takes the name.
            loop {
                let Some(change) = owners.next().await else {
                    return Err("the session bus went away".to_owned());
                };
                if change.args().is_ok_and(|a| a.new_owner.is_some()) {
                    break;
                }
            }
            continue;
        }
        match follow(&connection, format, &mut owners, &mut last_bar).await {
            Ok(Followed::DaemonChanged) => {}
            Ok(Followed::OutputClosed) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

enum Followed {
    DaemonChanged,
    OutputClosed,
}

/// Follows one daemon's signals until its name changes hands or nobody reads any more.
async fn follow(
    connection: &zbus::Connection,
    format: WatchFormat,
    owners: &mut zbus::fdo::NameOwnerChangedStream,
    last_bar: &mut Option<String>,
) -> zbus::Result<Followed> {
    let manager = ManagerProxy::builder(connection)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?;
    let mut started = manager.receive_sync_started().await?;
    let mut finished = manager.receive_sync_finished().await?;
    let mut new_mail = manager.receive_new_mail().await?;
    let mut states = manager.receive_state_changed().await?;
    let mut accounts = manager.status().await.ok();
    let event = WatchEvent {
        kind: "daemon",
        fields: fields(&[("running", json!(true))]),
        text: match &accounts {
            Some(a) => format!("the idlewild daemon runs {} account(s)", a.len()),
            None => "the idlewild daemon runs".to_owned(),
        },
    };
    if !emit(format, &event, accounts.as_ref(), last_bar) {
        return Ok(Followed::OutputClosed);
    }
    loop {
        let event = tokio::select! {
            Some(s) = started.next() => {
                let a = s.args()?;
                WatchEvent {
                    kind: "sync-started",
                    fields: fields(&[("account", json!(a.account)), ("jobs", json!(a.jobs))]),
                    text: format!("{}: syncing", a.account),
                }
            }
            Some(s) = finished.next() => {
                let a = s.args()?;
                let mut text = format!("{}: synced (received {}, sent {})", a.account, a.received, a.sent);
                if !a.error.is_empty() {
                    text = format!("{}: sync failed: {}", a.account, a.error);
                }
                WatchEvent {
                    kind: "sync-finished",
                    fields: fields(&[
                        ("account", json!(a.account)),
                        ("jobs", json!(a.jobs)),
                        ("received", json!(a.received)),
                        ("sent", json!(a.sent)),
                        ("error", if a.error.is_empty() { json!(null) } else { json!(a.error) }),
                    ]),
                    text,
                }
            }
            Some(s) = new_mail.next() => {
                let a = s.args()?;
                WatchEvent {
                    kind: "new-mail",
                    fields: fields(&[("account", json!(a.account)), ("folder", json!(a.folder)), ("count", json!(a.count))]),
                    text: format!("{}: {} new in {}", a.account, a.count, a.folder),
                }
            }
            Some(s) = states.next() => {
                let a = s.args()?;
                WatchEvent {
                    kind: "state",
                    fields: fields(&[("account", json!(a.account)), ("state", json!(a.state))]),
                    text: format!("{}: {}", a.account, a.state),
                }
            }
            change = owners.next() => {
                // The daemon stopped or was replaced: start over with whoever owns the name.
                let _ = change;
                return Ok(Followed::DaemonChanged);
            }
        };
        // The status after the event, for the bar text; a daemon going away meanwhile shows
        // the last one known.
        if let Ok(now) = manager.status().await {
            accounts = Some(now);
        }
        if !emit(format, &event, accounts.as_ref(), last_bar) {
            return Ok(Followed::OutputClosed);
        }
    }
}

/// Parses `--for`: "90s", "15m", "1h", "1h30m", "2days"; "0" means until resumed.
pub fn parse_pause(text: &str) -> Result<u32, String> {
    if text.trim() == "0" {
        return Ok(0);
    }
    let duration = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("\"{text}\" is not a duration ({e}); write it like 90s, 15m, 1h30m or 2days")
    })?;
    let secs = duration.as_secs();
    if secs == 0 {
        return Err(format!("\"{text}\" is shorter than a second"));
    }
    if secs > crate::pause::MAX_SECONDS {
        return Err(format!(
            "\"{text}\" is too long: a pause lasts at most 366 days (0 pauses until resumed)"
        ));
    }
    u32::try_from(secs).map_err(|_| format!("\"{text}\" is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_durations() {
        assert_eq!(parse_pause("90s"), Ok(90));
        assert_eq!(parse_pause("1h30m"), Ok(5400));
        assert_eq!(parse_pause("2days"), Ok(172_800));
        assert_eq!(parse_pause("0"), Ok(0));
        assert!(parse_pause("soon").is_err());
        assert!(parse_pause("1000years").is_err());
        assert_eq!(parse_pause("366days"), Ok(31_622_400));
        assert!(parse_pause("367days").is_err());
    }

    #[test]
    fn the_bar_shows_the_state_that_needs_attention() {
        let mut accounts = BTreeMap::new();
        for (name, state, unseen) in [("a", "idle", 2), ("b", "error", 3), ("c", "syncing", 0)] {
            accounts.insert(
                name.to_owned(),
                AccountInfo {
                    name: name.to_owned(),
                    state: state.to_owned(),
                    unseen,
                    ..AccountInfo::default()
                },
            );
        }
        let s = summarize(Some(&accounts));
        assert_eq!(
            (s.text.as_str(), s.class, s.unseen),
            ("5 error", "error", 5)
        );
        accounts.remove("b");
        assert_eq!(summarize(Some(&accounts)).text, "2 syncing");
        assert_eq!(summarize(None).class, "stopped");
    }
}
