use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use idlewild::account::{self, AccountReport, RunOptions};
use idlewild::cli::{self, Cli, Command, SyncArgs, exit};
use idlewild::config::{self, Config};
use idlewild::engine::{NoObserver, Observer};
use idlewild::logging::{self, LogTargetChoice};
use idlewild::model::FolderName;
use idlewild::progress::BarObserver;
use tracing::Instrument;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let interactive = std::io::stderr().is_terminal();
    init_logging(&cli, interactive);
    let code = match &cli.command {
        Command::Completions { shell } => completions(*shell),
        Command::CheckConfig(args) => match load_config(&cli) {
            Ok(config) => check_config(&config, args.json),
            Err(code) => code,
        },
        Command::Daemon(_) => match load_config(&cli) {
            Ok(config) => daemon(&cli, config),
            Err(code) => code,
        },
        Command::Password(args) => match load_config(&cli) {
            Ok(config) => idlewild::credentials::commands::password(&config, args),
            Err(code) => code,
        },
        Command::OAuth2(args) => match load_config(&cli) {
            Ok(config) => idlewild::credentials::commands::oauth2(&config, args),
            Err(code) => code,
        },
        Command::Sync(args) => match load_config(&cli) {
            Ok(config) => sync(&config, args, interactive && !cli.quiet && cli.verbose == 0),
            Err(code) => code,
        },
    };
    ExitCode::from(code as u8)
}

fn init_logging(cli: &Cli, interactive: bool) {
    let default = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        // A terminal has the progress bar and the summary; logs only say what went wrong.
        (false, 0) if interactive && !matches!(cli.command, Command::Daemon(_)) => "warn",
        (false, 0) | (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let target = match &cli.command {
        Command::Daemon(args) => match args.log {
            cli::LogChoice::Auto => LogTargetChoice::Auto,
            cli::LogChoice::Stderr => LogTargetChoice::Stderr,
            cli::LogChoice::Journald => LogTargetChoice::Journald,
        },
        // One-shot commands talk to the person who started them.
        _ => LogTargetChoice::Stderr,
    };
    logging::init(default, target, interactive);
}

fn load_config(cli: &Cli) -> Result<Config, i32> {
    let path = cli.config.clone().unwrap_or_else(config::default_path);
    match config::load(&path) {
        Ok(config) => {
            for warning in &config.warnings {
                eprintln!("idlewild: warning: {warning}");
            }
            Ok(config)
        }
        Err(e) => {
            eprintln!("idlewild: {e}");
            Err(exit::USAGE)
        }
    }
}

/// Two workers: the work is I/O-bound, and the machines this runs on are laptops.
fn runtime() -> Result<tokio::runtime::Runtime, i32> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("idlewild: cannot start: {e}");
            exit::FAILED
        })
}

fn daemon(cli: &Cli, config: Config) -> i32 {
    let path = cli.config.clone().unwrap_or_else(config::default_path);
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(idlewild::daemon::run(path, config)) {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("idlewild: {e}");
            exit::FAILED
        }
    }
}

fn completions(shell: cli::Shell) -> i32 {
    let mut command = cli::command();
    let mut out = std::io::stdout();
    match shell {
        cli::Shell::Bash => clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut command,
            "idlewild",
            &mut out,
        ),
        cli::Shell::Zsh => clap_complete::generate(
            clap_complete::Shell::Zsh,
            &mut command,
            "idlewild",
            &mut out,
        ),
        cli::Shell::Fish => clap_complete::generate(
            clap_complete::Shell::Fish,
            &mut command,
            "idlewild",
            &mut out,
        ),
    }
    exit::OK
}

fn check_config(config: &Config, json: bool) -> i32 {
    if json {
        let accounts: Vec<serde_json::Value> = config
            .accounts
            .iter()
            .map(|a| {
                serde_json::json!({
                    "name": a.name,
                    "remote": format!("imap://{}@{}:{}", a.remote.user, a.remote.host, a.remote.port),
                    "tls": tls_name(a.remote.tls),
                    "auth": a.remote.credentials.auth().describe(),
                    "layout": layout_name(a.local.layout),
                    "local": a.local.path,
                    "state": account::state_path(config, a),
                })
            })
            .collect();
        let doc = serde_json::json!({
            "config": config.path,
            "state_dir": config.state_dir,
            "accounts": accounts,
            "warnings": config.warnings,
        });
        println!("{doc:#}");
        return exit::OK;
    }
    println!(
        "{}: {} account(s), state in {}",
        config.path.display(),
        config.accounts.len(),
        config.state_dir.display()
    );
    for a in &config.accounts {
        println!(
            "  {}: imap://{}@{}:{} (tls {}) <-> maildir {} (layout {})",
            a.name,
            a.remote.user,
            a.remote.host,
            a.remote.port,
            tls_name(a.remote.tls),
            a.local.path.display(),
            layout_name(a.local.layout)
        );
        println!("    login: {}", a.remote.credentials.auth().describe());
    }
    exit::OK
}

fn sync(config: &Config, args: &SyncArgs, show_bars: bool) -> i32 {
    let mut selected = Vec::new();
    for name in &args.accounts {
        match config.account(name) {
            Some(a) => selected.push(a),
            None => {
                let known: Vec<&str> = config.accounts.iter().map(|a| a.name.as_str()).collect();
                eprintln!(
                    "idlewild: no account named \"{name}\" in {} (accounts: {})",
                    config.path.display(),
                    known.join(", ")
                );
                return exit::USAGE;
            }
        }
    }
    if selected.is_empty() {
        selected = config.accounts.iter().collect();
    }
    if selected.is_empty() {
        eprintln!("idlewild: {} configures no accounts", config.path.display());
        return exit::USAGE;
    }
    let mut folders = Vec::new();
    for f in &args.folders {
        match FolderName::new(f) {
            Some(name) => folders.push(name),
            None => {
                eprintln!("idlewild: \"{f}\" is not a folder name");
                return exit::USAGE;
            }
        }
    }
    let run = RunOptions {
        folders,
        dry_run: args.dry_run,
        allow_mass_delete: args.allow_mass_delete,
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let reports: Vec<AccountReport> = runtime.block_on(async {
        let tasks = selected.iter().map(|account| {
            let run = run.clone();
            async move {
                if show_bars {
                    let mut observer = BarObserver::new(&account.name);
                    let report = account::sync_account(config, account, &run, &mut observer).await;
                    observer.finish();
                    report
                } else {
                    let mut observer: Box<dyn Observer> = Box::new(NoObserver);
                    account::sync_account(config, account, &run, observer.as_mut()).await
                }
            }
            .instrument(tracing::info_span!("account", account = %account.name))
        });
        futures_util::future::join_all(tasks).await
    });
    print_reports(&reports, args);
    if reports.iter().any(AccountReport::failed) {
        exit::FAILED
    } else if reports.iter().any(AccountReport::refused) {
        exit::REFUSED
    } else {
        exit::OK
    }
}

fn print_reports(reports: &[AccountReport], args: &SyncArgs) {
    if args.json {
        match serde_json::to_string_pretty(reports) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("idlewild: cannot write JSON: {e}"),
        }
    } else {
        for r in reports {
            for line in idlewild::report::summary(r, args.dry_run) {
                println!("{line}");
            }
        }
    }
    for r in reports {
        if let Some(e) = &r.error {
            eprintln!("idlewild: {}: {e}", r.account);
        }
        for f in &r.folders {
            if let Some(e) = &f.error {
                eprintln!("idlewild: {}: {}: {e}", r.account, f.folder);
            }
            if let Some(why) = &f.refused {
                eprintln!("idlewild: {}: {}: {why}", r.account, f.folder);
            }
        }
    }
}

fn tls_name(tls: config::TlsMode) -> &'static str {
    match tls {
        config::TlsMode::Implicit => "implicit",
        config::TlsMode::Starttls => "starttls",
        config::TlsMode::None => "none",
    }
}

fn layout_name(layout: config::MaildirLayout) -> &'static str {
    match layout {
        config::MaildirLayout::Nested => "nested",
        config::MaildirLayout::MaildirPlusPlus => "maildir++",
    }
}
