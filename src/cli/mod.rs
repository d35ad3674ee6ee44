//! The command line, defined once for the program, the completions and the documentation test.

pub mod client;
pub mod logging;
pub mod password;
pub mod progress;
pub mod report;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Exit codes, as documented in idlewild(1).
pub mod exit {
    /// Everything asked for was synced.
    pub const OK: i32 = 0;
    /// At least one account or folder failed (network, server, disk); the others were synced.
    pub const FAILED: i32 = 1;
    /// The command line or the configuration file is wrong; nothing was done.
    pub const USAGE: i32 = 2;
    /// The safety valve left at least one folder alone (a mass deletion); nothing was lost.
    pub const REFUSED: i32 = 3;
}

#[derive(Debug, Parser)]
#[command(
    name = "idlewild",
    version,
    about = "Two-way IMAP <-> Maildir mail synchronizer",
    long_about = "Two-way IMAP <-> Maildir mail synchronizer.\n\nidlewild keeps a local Maildir and an IMAP server in step in both directions: new messages, flags and deletions, folder by folder, without ever losing or duplicating a message.",
    after_help = "Exit status: 0 all synced, 1 an account or folder failed, 2 bad command line or configuration, 3 the safety valve refused a mass deletion.\nSee idlewild(1) and idlewild.toml(5)."
)]
pub struct Cli {
    /// Configuration file [default: $XDG_CONFIG_HOME/idlewild/config.toml]
    #[arg(
        short,
        long,
        global = true,
        value_name = "FILE",
        env = "IDLEWILD_CONFIG"
    )]
    pub config: Option<PathBuf>,

    /// More log output (-v: info, -vv: debug, -vvv: trace)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Only errors
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sync now: through the daemon when it runs (waiting for the result), else in this process
    Sync(SyncArgs),
    /// Show what the daemon is doing: each account's state, unseen mail, last sync, errors
    Status(StatusArgs),
    /// Stop syncing an account (until resumed, or for a while); survives a daemon restart
    Pause(PauseArgs),
    /// Sync a paused account again
    Resume(ResumeArgs),
    /// Print one line per daemon event (syncs, new mail, state changes), for status bars
    Watch(WatchArgs),
    /// Keep every account in step in real time, until stopped (the systemd service runs this)
    Daemon(DaemonArgs),
    /// Check the configuration file and print what it configures
    CheckConfig(CheckConfigArgs),
    /// Show each folder's server and local name and what a sync would do with it; changes nothing
    Folders(FoldersArgs),
    /// Store, delete or check an account's password in the system keyring
    #[command(subcommand)]
    Password(PasswordCommand),
    /// Authorize idlewild with an OAuth2 provider and keep the refresh token in the keyring
    #[command(subcommand, name = "oauth2")]
    OAuth2(OAuth2Command),
    /// Translate an OfflineIMAP or mbsync configuration into an idlewild one
    Import(ImportArgs),
    /// Print a shell completion script
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The account to sync [default: every account that is not paused]
    #[arg(value_name = "ACCOUNT")]
    pub account: Option<String>,

    /// Only these folders of ACCOUNT (local names, with / between levels; a server name is taken when no local folder has it)
    #[arg(value_name = "FOLDER", requires = "account")]
    pub folder_args: Vec<String>,

    /// Only this folder (in every account when no ACCOUNT is given); repeatable
    #[arg(short, long = "folder", value_name = "FOLDER")]
    pub folders: Vec<String>,

    /// Show what would be done; change nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,

    /// Let deletions through that the safety valve would stop
    #[arg(long)]
    pub allow_mass_delete: bool,

    /// Print the result as JSON on standard output
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the status as JSON on standard output
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    /// The account to pause
    #[arg(value_name = "ACCOUNT")]
    pub account: String,

    /// How long, e.g. 90s, 15m, 1h30m, 2days [default: until `idlewild resume`]
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: Option<String>,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The account to resume
    #[arg(value_name = "ACCOUNT")]
    pub account: String,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// One JSON object per line, with waybar's text/tooltip/class/alt keys
    #[arg(long, conflicts_with = "bar")]
    pub json: bool,

    /// Only the status text (unseen count and state), printed when it changes (polybar, i3blocks)
    #[arg(long)]
    pub bar: bool,
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Where log lines go: the journal when running under systemd (auto), or stderr
    #[arg(long, value_enum, default_value_t = LogChoice::Auto)]
    pub log: LogChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogChoice {
    Auto,
    Stderr,
    Journald,
}

#[derive(Debug, Args)]
pub struct FoldersArgs {
    /// The account whose folders to show
    #[arg(value_name = "ACCOUNT")]
    pub account: String,

    /// Print the table as JSON on standard output
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// Print the result as JSON on standard output
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The program whose configuration is read
    #[arg(value_enum, value_name = "PROGRAM")]
    pub from: ImportFrom,

    /// Its configuration file, `-` for standard input [default: the file the program reads]
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Write the configuration to FILE (mode 600) instead of standard output
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// With --output: replace FILE if it exists
    #[arg(long, requires = "output")]
    pub force: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportFrom {
    Offlineimap,
    Mbsync,
}

#[derive(Debug, Subcommand)]
pub enum PasswordCommand {
    /// Store the password in the keyring (read without echo, or from standard input)
    Set {
        #[arg(value_name = "ACCOUNT")]
        account: String,
    },
    /// Delete the password (and any OAuth2 refresh token) from the keyring
    Delete {
        #[arg(value_name = "ACCOUNT")]
        account: String,
    },
    /// Log in to the server once and say whether it worked
    Check {
        #[arg(value_name = "ACCOUNT")]
        account: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum OAuth2Command {
    /// Sign in through a browser (authorization code with PKCE) and store the refresh token
    Authorize {
        #[arg(value_name = "ACCOUNT")]
        account: String,
        /// Loopback port the browser is sent back to [default: any free port]
        #[arg(long, value_name = "PORT", default_value_t = 0)]
        port: u16,
        /// Seconds to wait for the browser
        #[arg(long, value_name = "SECONDS", default_value_t = 300)]
        timeout: u64,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// The clap command, for completions and documentation checks.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}
