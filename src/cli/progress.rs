//! Progress display: a bar per account on a terminal, nothing otherwise (log lines say enough).

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::{FolderReport, Observer};
use crate::model::FolderName;

/// Shared by log output, so log lines are printed above the bars instead of through them.
pub static BARS: std::sync::OnceLock<MultiProgress> = std::sync::OnceLock::new();

pub fn bars() -> &'static MultiProgress {
    BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

pub struct BarObserver {
    bar: ProgressBar,
    account: String,
}

impl BarObserver {
    pub fn new(account: &str) -> Self {
        let bar = bars().add(ProgressBar::new(0));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>12} {bar:30} {pos}/{len} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(account.to_owned());
        Self {
            bar,
            account: account.to_owned(),
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Observer for BarObserver {
    fn folder_planned(&mut self, folder: &FolderName, actions: usize) {
        self.bar.inc_length(actions as u64);
        self.bar.set_message(format!("{folder}"));
    }
    fn advanced(&mut self, count: usize) {
        self.bar.inc(count as u64);
    }
    fn folder_done(&mut self, report: &FolderReport) {
        if let Some(e) = &report.error {
            self.bar
                .println(format!("{}: {}: {e}", self.account, report.folder));
        }
    }
}

/// A writer for tracing that prints through the progress bars.
#[derive(Clone, Copy)]
pub struct BarWriter;

impl std::io::Write for BarWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        match BARS.get() {
            Some(bars) => bars.suspend(|| eprint!("{text}")),
            None => eprint!("{text}"),
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BarWriter {
    type Writer = BarWriter;
    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}
