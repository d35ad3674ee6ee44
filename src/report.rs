//! Human-readable summaries of sync results.

use crate::account::AccountReport;

/// One line per account with totals, and one per folder that did something.
pub fn summary(report: &AccountReport, dry_run: bool) -> Vec<String> {
    let mut lines = Vec::new();
    let sum =
        |f: fn(&crate::engine::FolderReport) -> usize| report.folders.iter().map(f).sum::<usize>();
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
        if busy > 0 || f.created.is_some() {
            let created = f
                .created
                .as_ref()
                .map(|side| format!(" (created on the {side} side)"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{FolderReport, SkippedMessage};

    #[test]
    fn messages_left_out_by_the_limits_are_listed() {
        let report = AccountReport {
            account: "a".into(),
            folders: vec![FolderReport {
                folder: "INBOX".into(),
                skipped_too_old: 3,
                skipped_too_big: vec![SkippedMessage {
                    side: "server".into(),
                    id: "17".into(),
                    size: 20_000_000,
                }],
                ..FolderReport::default()
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
