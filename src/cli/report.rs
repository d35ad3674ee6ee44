//! Human-readable summaries of sync results, and the folder table of `idlewild folders`.

use crate::control::{AccountReportJson, FolderReportJson};
use crate::engine::{FolderOverview, Step};
use crate::folders::Selection;
use crate::plan::FolderAction;

/// One line per account with totals, and one per folder that did something. It reads the
/// report as clients do, so a sync in this process and one through the daemon print alike.
pub fn summary(report: &AccountReportJson, dry_run: bool) -> Vec<String> {
    let mut lines = Vec::new();
    let sum = |f: fn(&FolderReportJson) -> usize| report.folders.iter().map(f).sum::<usize>();
    let (down, up) = (sum(|f| f.downloaded), sum(|f| f.uploaded));
    let flags = sum(|f| f.flags_local + f.flags_remote);
    let (del_local, del_remote) = (sum(|f| f.deleted_local), sum(|f| f.deleted_remote));
    if dry_run {
        lines.push(format!("{}: dry run, nothing changed", report.account));
        for f in &report.folders {
            for p in &f.planned {
                lines.push(format!("  {}: would {p}", f.folder));
            }
        }
        return lines;
    }
    let status = if report.error.is_some() {
        "failed"
    } else if report.folders.iter().any(|f| f.error.is_some()) {
        "partly synced"
    } else if report.folders.iter().any(|f| f.refused.is_some()) {
        "synced, some folders left alone"
    } else {
        "synced"
    };
    lines.push(format!(
        "{}: {status}: {} folders; {down} new here, {up} new on the server, {flags} flag changes, {del_local} deleted here, {del_remote} deleted on the server",
        report.account,
        report.folders.len()
    ));
    for f in &report.folders {
        let busy = f.downloaded
            + f.uploaded
            + f.flags_local
            + f.flags_remote
            + f.deleted_local
            + f.deleted_remote;
        if busy > 0 || f.created.is_some() || f.removed.is_some() {
            let created = f
                .created
                .as_ref()
                .map(|side| format!(" (created on the {side} side)"))
                .or_else(|| {
                    f.removed
                        .as_ref()
                        .map(|side| format!(" (removed on the {side} side)"))
                })
                .unwrap_or_default();
            lines.push(format!(
                "  {}{created}: +{} here, +{} on the server, {} flags, -{} here, -{} on the server",
                f.folder,
                f.downloaded,
                f.uploaded,
                f.flags_local + f.flags_remote,
                f.deleted_local,
                f.deleted_remote
            ));
        }
        if f.skipped_too_old > 0 {
            lines.push(format!(
                "  {}: {} messages older than max_age not copied",
                f.folder, f.skipped_too_old
            ));
        }
        for m in &f.skipped_too_big {
            lines.push(format!(
                "  {}: {} message {} not copied: {} bytes is more than max_size",
                f.folder, m.side, m.id, m.size
            ));
        }
    }
    lines
}

/// One line of `idlewild folders`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FolderRow {
    /// The server's name (as idlewild spells it: `/` between levels).
    pub remote: String,
    pub local: String,
    pub on_remote: bool,
    pub on_local: bool,
    /// Whether the state knows the folder from an earlier sync.
    pub known: bool,
    /// `sync`, `create`, `remove`, `keep`, `forget`, `skip`, `error` or `none`.
    pub action: &'static str,
    /// The side `create` and `remove` act on, `server` or `local`.
    pub side: Option<String>,
    /// Why, for `skip`, `keep`, `remove`, `forget` and `error`.
    pub reason: Option<String>,
}

pub fn folder_rows(overview: &FolderOverview) -> Vec<FolderRow> {
    overview
        .folders
        .iter()
        .map(|f| {
            let (action, side, reason): (&'static str, Option<String>, Option<String>) = match &f
                .step
            {
                Step::Skipped(Selection::Excluded { pattern }) => {
                    ("skip", None, Some(format!("excluded by \"{pattern}\"")))
                }
                Step::Skipped(Selection::NotIncluded) => {
                    ("skip", None, Some("not in folders.include".into()))
                }
                Step::Skipped(left_out @ Selection::LeftOut { .. }) => {
                    ("skip", None, Some(left_out.to_string()))
                }
                Step::Skipped(Selection::Included) => ("skip", None, None),
                Step::Failed(e) => ("error", None, Some(e.clone())),
                Step::Act(a) => match *a {
                    FolderAction::Sync => ("sync", None, None),
                    FolderAction::CreateThenSync { on } => ("create", Some(on.to_string()), None),
                    FolderAction::NotCreated { on } => (
                        "skip",
                        None,
                        Some(format!("not created on the {on} side (create)")),
                    ),
                    FolderAction::Forget => (
                        "forget",
                        None,
                        Some("gone from both sides; its state is dropped".into()),
                    ),
                    FolderAction::Remove { on, messages } => (
                        "remove",
                        Some(on.to_string()),
                        Some(format!(
                            "deleted on the {} side; {messages} synced messages go with it",
                            on.other()
                        )),
                    ),
                    FolderAction::Kept { from, reason } => {
                        ("keep", None, Some(FolderAction::explain_kept(from, reason)))
                    }
                    FolderAction::Nothing => ("none", None, None),
                },
            };
            let reason = match (&f.relocated_from, reason) {
                (Some(old), None) => Some(format!(
                    "its local name changed from \"{old}\": its messages are paired again by content"
                )),
                (_, reason) => reason,
            };
            FolderRow {
                remote: f.remote.to_string(),
                local: f.local.to_string(),
                on_remote: f.on_remote,
                on_local: f.on_local,
                known: f.known.is_some(),
                action,
                side,
                reason,
            }
        })
        .collect()
}

/// The rows as an aligned table: server name, local name, what happens. A name in parentheses
/// does not exist (yet) on its side.
pub fn folder_table(rows: &[FolderRow]) -> Vec<String> {
    let show = |name: &str, present: bool| {
        if present {
            name.to_owned()
        } else {
            format!("({name})")
        }
    };
    let cells: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| {
            let what = match (r.action, &r.side) {
                ("create", Some(side)) => format!("create on the {side} side, then sync"),
                ("remove", Some(side)) => format!("remove on the {side} side"),
                (action, _) => action.to_owned(),
            };
            let what = match &r.reason {
                Some(why) => format!("{what}: {why}"),
                None => what,
            };
            (
                show(&r.remote, r.on_remote),
                show(&r.local, r.on_local),
                what,
            )
        })
        .collect();
    let width = |f: fn(&(String, String, String)) -> &String, title: &str| {
        cells
            .iter()
            .map(|c| f(c).chars().count())
            .chain([title.chars().count()])
            .max()
            .unwrap_or(0)
    };
    let (w_remote, w_local) = (width(|c| &c.0, "SERVER"), width(|c| &c.1, "LOCAL"));
    let pad = |s: &str, w: usize| format!("{s}{}", " ".repeat(w.saturating_sub(s.chars().count())));
    let mut lines = vec![format!(
        "{}  {}  ACTION",
        pad("SERVER", w_remote),
        pad("LOCAL", w_local)
    )];
    for (remote, local, what) in &cells {
        lines.push(format!(
            "{}  {}  {what}",
            pad(remote, w_remote),
            pad(local, w_local)
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::SkippedMessageJson;

    #[test]
    fn messages_left_out_by_the_limits_are_listed() {
        let report = AccountReportJson {
            account: "a".into(),
            folders: vec![FolderReportJson {
                folder: "INBOX".into(),
                skipped_too_old: 3,
                skipped_too_big: vec![SkippedMessageJson {
                    side: "server".into(),
                    id: "17".into(),
                    size: 20_000_000,
                }],
                ..FolderReportJson::default()
            }],
            error: None,
        };
        let lines = summary(&report, false);
        assert!(lines.contains(&"  INBOX: 3 messages older than max_age not copied".to_owned()));
        assert!(
            lines.contains(
                &"  INBOX: server message 17 not copied: 20000000 bytes is more than max_size"
                    .to_owned()
            )
        );
    }
}
