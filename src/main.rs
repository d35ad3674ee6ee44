use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use idlewild::cli::client::{self, WatchFormat};
use idlewild::cli::logging::{self, LogTargetChoice};
use idlewild::cli::progress::BarObserver;
use idlewild::cli::{self, Cli, Command, SyncArgs, exit};
use idlewild::config::{self, Config};
use idlewild::control::{AccountReportJson, JobStatus, reports_json};
use idlewild::engine::account::{self, AccountReport, RunOptions};
use idlewild::engine::{NoObserver, Observer};
use idlewild::model::FolderName;
use tracing::Instrument;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let interactive = std::io::stderr().is_terminal();
    init_logging(&cli, interactive);
    let code = match &cli.command {
        Command::Completions { shell } => completions(*shell),
        Command::Import(args) => import(args),
        Command::CheckConfig(args) => match load_config(&cli) {
            Ok(config) => check_config(&config, args.json),
            Err(code) => code,
        },
        Command::Folders(args) => match load_config(&cli) {
            Ok(config) => folders(&config, args),
            Err(code) => code,
        },
        Command::Daemon(_) => match load_config(&cli) {
            Ok(config) => daemon(&cli, config),
            Err(code) => code,
        },
        Command::Password(args) => match load_config(&cli) {
            Ok(config) => idlewild::cli::password::password(&config, args),
            Err(code) => code,
        },
        Command::OAuth2(args) => match load_config(&cli) {
            Ok(config) => idlewild::cli::password::oauth2(&config, args),
            Err(code) => code,
        },
        Command::Sync(args) => match load_config(&cli) {
            Ok(config) => sync(&config, args, interactive && !cli.quiet && cli.verbose == 0),
            Err(code) => code,
        },
        Command::Status(args) => status(args.json),
        Command::Pause(args) => match load_config(&cli) {
            Ok(config) => pause(&config, &args.account, args.duration.as_deref()),
            Err(code) => code,
        },
        Command::Resume(args) => match load_config(&cli) {
            Ok(config) => resume(&config, &args.account),
            Err(code) => code,
        },
        Command::Watch(args) => watch(if args.json {
            WatchFormat::Json
        } else if args.bar {
            WatchFormat::Bar
        } else {
            WatchFormat::Text
        }),
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

fn import(args: &cli::ImportArgs) -> i32 {
    use idlewild::import::{self, Context, ImportError, Tool};
    let tool = match args.from {
        cli::ImportFrom::Offlineimap => Tool::OfflineImap,
        cli::ImportFrom::Mbsync => Tool::Mbsync,
    };
    let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("/"));
    let (source, text) = match import::read_input(tool, args.file.as_deref(), &home, &env) {
        Ok(input) => input,
        Err(e) => {
            eprintln!("idlewild: {e}");
            return exit::USAGE;
        }
    };
    let ctx = Context { source, home, env };
    let converted = match import::convert(tool, &text, &ctx) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("idlewild: {e}");
            return exit::USAGE;
        }
    };
    let rendered = match import::render(&converted) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("idlewild: {e}");
            return exit::FAILED;
        }
    };
    let messages = converted.messages();
    for m in &messages {
        eprintln!("idlewild: warning: {m}");
    }
    match &args.output {
        Some(path) => match import::write_output(path, &rendered, args.force) {
            Ok(()) => eprintln!(
                "idlewild: wrote {} ({} account(s), {} warning(s)); check it with `idlewild --config {} check-config`",
                path.display(),
                converted.accounts.len(),
                messages.len(),
                path.display()
            ),
            Err(e @ ImportError::Exists { .. }) => {
                eprintln!("idlewild: {e}");
                return exit::USAGE;
            }
            Err(e) => {
                eprintln!("idlewild: {e}");
                return exit::FAILED;
            }
        },
        None => print!("{rendered}"),
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
                    "layout": a.local.maildir().map(|m| layout_name(m.layout)),
                    "local": match &a.local {
                        idlewild::config::LocalConfig::Maildir(m) => serde_json::json!(m.path),
                        idlewild::config::LocalConfig::Imap(_) => serde_json::json!(a.local.describe()),
                    },
                    "readonly": {
                        "remote": a.policy.readonly_remote,
                        "local": a.policy.readonly_local,
                    },
                    "sync_deletes": a.policy.sync_deletes,
                    "max_age": a.limits.max_age_days,
                    "max_size": a.limits.max_size,
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
        let local = match &a.local {
            idlewild::config::LocalConfig::Maildir(m) => {
                format!("{} (layout {})", a.local.describe(), layout_name(m.layout))
            }
            idlewild::config::LocalConfig::Imap(i) => {
                format!("{} (tls {})", a.local.describe(), tls_name(i.tls))
            }
        };
        println!(
            "  {}: imap://{}@{}:{} (tls {}) <-> {local}",
            a.name,
            a.remote.user,
            a.remote.host,
            a.remote.port,
            tls_name(a.remote.tls),
        );
        println!("    login: {}", a.remote.credentials.auth().describe());
        if let idlewild::config::LocalConfig::Imap(i) = &a.local {
            println!("    local login: {}", i.credentials.auth().describe());
        }
        let mut rules = Vec::new();
        if a.policy.readonly_remote {
            rules.push("server read-only".to_owned());
        }
        if a.policy.readonly_local {
            rules.push("local side read-only".to_owned());
        }
        if !a.policy.sync_deletes {
            rules.push("deletions not synced".to_owned());
        }
        if let Some(days) = a.limits.max_age_days {
            rules.push(format!("only mail of the last {days} days"));
        }
        if let Some(bytes) = a.limits.max_size {
            rules.push(format!("only mail up to {bytes} bytes"));
        }
        if !rules.is_empty() {
            println!("    limits: {}", rules.join(", "));
        }
    }
    exit::OK
}

fn sync(config: &Config, args: &SyncArgs, show_bars: bool) -> i32 {
    let named = match &args.account {
        Some(name) => match config.account(name) {
            Some(a) => Some(a),
            None => {
                eprintln!("idlewild: {}", unknown_account(config, name));
                return exit::USAGE;
            }
        },
        None => None,
    };
    if config.accounts.is_empty() {
        eprintln!("idlewild: {} configures no accounts", config.path.display());
        return exit::USAGE;
    }
    let wanted: Vec<String> = args
        .folder_args
        .iter()
        .chain(&args.folders)
        .cloned()
        .collect();
    let mut folders = Vec::new();
    for f in &wanted {
        match FolderName::new(f) {
            Some(name) => folders.push(name),
            None => {
                eprintln!("idlewild: \"{f}\" is not a folder name");
                return exit::USAGE;
            }
        }
    }
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    // The daemon holds the accounts' locks: when it runs, it does the work. A dry run changes
    // nothing and needs no lock, so it always runs here.
    if !args.dry_run {
        match runtime.block_on(client::connect_for(Some(&config.path))) {
            Ok(daemon) => return sync_through_daemon(&runtime, &daemon, args, &wanted, show_bars),
            Err(why) => tracing::info!("{why}: syncing in this process"),
        }
    }
    let now = std::time::SystemTime::now();
    let mut selected = Vec::new();
    let mut skipped = Vec::new();
    for account in named.map_or_else(|| config.accounts.iter().collect(), |a| vec![a]) {
        match idlewild::pause::load(&config.state_dir, &account.name, now) {
            Some(p) if !args.dry_run => {
                if named.is_some() {
                    eprintln!(
                        "idlewild: account {0} is paused {1}; run `idlewild resume {0}` to sync it",
                        account.name,
                        p.describe()
                    );
                    return exit::FAILED;
                }
                skipped.push(format!("{} (paused {})", account.name, p.describe()));
            }
            _ => selected.push(account),
        }
    }
    if !skipped.is_empty() {
        eprintln!("idlewild: skipped {}", skipped.join(", "));
    }
    let run = RunOptions {
        required_folders: folders.clone(),
        folders,
        dry_run: args.dry_run,
        allow_mass_delete: args.allow_mass_delete,
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
    print_reports(&reports_json(&reports), args);
    if !args.dry_run
        && let Err(e) = idlewild::mbnames::update(config)
    {
        eprintln!("idlewild: warning: {e}");
    }
    exit_code(&reports)
}

/// `idlewild folders ACCOUNT`: the folder map and what a sync would do, from the server's and
/// the Maildir's folder lists and the state; nothing is changed.
fn folders(config: &Config, args: &cli::FoldersArgs) -> i32 {
    let Some(account) = config.account(&args.account) else {
        eprintln!("idlewild: {}", unknown_account(config, &args.account));
        return exit::USAGE;
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let mut session = account::AccountSession::open(config, account, true)?;
        let overview = session.overview().await;
        session.close().await;
        overview
    });
    let overview = match result {
        Ok(o) => o,
        Err(e) => {
            eprintln!("idlewild: {}: {e}", account.name);
            return exit::FAILED;
        }
    };
    let rows = idlewild::cli::report::folder_rows(&overview);
    let problems = (!overview.problems.is_empty())
        .then(|| idlewild::folders::FolderMapError(overview.problems.clone()));
    if args.json {
        let doc = serde_json::json!({
            "account": account.name,
            "folders": rows,
            "problems": overview.problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
        });
        println!("{doc:#}");
    } else {
        for line in idlewild::cli::report::folder_table(&rows) {
            println!("{line}");
        }
    }
    match problems {
        Some(e) => {
            eprintln!("idlewild: {}: {e}", account.name);
            exit::FAILED
        }
        None => exit::OK,
    }
}

fn exit_code(reports: &[AccountReport]) -> i32 {
    match JobStatus::of(reports) {
        JobStatus::Ok => exit::OK,
        JobStatus::Failed => exit::FAILED,
        JobStatus::Refused => exit::REFUSED,
    }
}

fn unknown_account(config: &Config, name: &str) -> String {
    let known: Vec<&str> = config.accounts.iter().map(|a| a.name.as_str()).collect();
    format!(
        "no account named \"{name}\" in {} (accounts: {})",
        config.path.display(),
        known.join(", ")
    )
}

fn sync_through_daemon(
    runtime: &tokio::runtime::Runtime,
    daemon: &client::Daemon,
    args: &SyncArgs,
    folders: &[String],
    show_spinner: bool,
) -> i32 {
    let spinner = show_spinner.then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    });
    let result = runtime.block_on(daemon.sync(
        args.account.as_deref(),
        folders,
        args.allow_mass_delete,
        |job| {
            tracing::debug!(job, "the daemon runs the sync");
            if let Some(bar) = &spinner {
                bar.set_message(format!("the daemon is syncing (job {job})"));
            }
        },
    ));
    if let Some(bar) = spinner {
        bar.finish_and_clear();
    }
    match result {
        Ok(job) => {
            print_reports(&job.reports, args);
            if job.reports.is_empty() && !job.error.is_empty() {
                eprintln!("idlewild: {}", job.error);
            }
            match job.status.as_str() {
                "ok" => exit::OK,
                "refused" => exit::REFUSED,
                _ => exit::FAILED,
            }
        }
        Err(e) => {
            eprintln!("idlewild: {e}");
            if e.is_usage() {
                exit::USAGE
            } else {
                exit::FAILED
            }
        }
    }
}

fn status(json: bool) -> i32 {
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let daemon = client::connect().await?;
        daemon.manager.status().await.map_err(|e| e.to_string())
    });
    match result {
        Ok(accounts) => {
            if json {
                println!("{:#}", client::status_json(&accounts));
            } else {
                client::print_status(&accounts, std::time::SystemTime::now());
            }
            exit::OK
        }
        Err(why) => {
            if json {
                println!("{}", serde_json::json!({"daemon": false, "error": why}));
            }
            eprintln!(
                "idlewild: {why}. Start it with `systemctl --user start idlewild` (or `idlewild daemon`)"
            );
            exit::FAILED
        }
    }
}

fn pause(config: &Config, account: &str, duration: Option<&str>) -> i32 {
    if config.account(account).is_none() {
        eprintln!("idlewild: {}", unknown_account(config, account));
        return exit::USAGE;
    }
    let seconds = match duration.map(client::parse_pause).transpose() {
        Ok(s) => s.unwrap_or(0),
        Err(e) => {
            eprintln!("idlewild: --for: {e}");
            return exit::USAGE;
        }
    };
    let pause =
        idlewild::pause::Pause::for_seconds(u64::from(seconds), std::time::SystemTime::now());
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let answer = runtime.block_on(async {
        match client::connect_for(Some(&config.path)).await {
            Ok(daemon) => Some(daemon.manager.pause(account, seconds).await),
            Err(why) => {
                tracing::debug!("{why}");
                None
            }
        }
    });
    match answer {
        Some(Ok(())) => {
            println!("paused {account} {}", pause.describe());
            exit::OK
        }
        Some(Err(e)) => {
            eprintln!("idlewild: {}", client::ClientError::from(e));
            exit::FAILED
        }
        // Without a daemon the pause is recorded for the daemon's next start and for
        // `idlewild sync`.
        None => match idlewild::pause::save(&config.state_dir, account, &pause) {
            Ok(()) => {
                println!(
                    "paused {account} {} (the daemon is not running; the pause holds when it starts, and for `idlewild sync`)",
                    pause.describe()
                );
                exit::OK
            }
            Err(e) => {
                eprintln!("idlewild: {e}");
                exit::FAILED
            }
        },
    }
}

fn resume(config: &Config, account: &str) -> i32 {
    if config.account(account).is_none() {
        eprintln!("idlewild: {}", unknown_account(config, account));
        return exit::USAGE;
    }
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let answer = runtime.block_on(async {
        match client::connect_for(Some(&config.path)).await {
            Ok(daemon) => Some(daemon.manager.resume(account).await),
            Err(why) => {
                tracing::debug!("{why}");
                None
            }
        }
    });
    match answer {
        Some(Ok(())) => {
            println!("resumed {account}");
            exit::OK
        }
        Some(Err(e)) => {
            eprintln!("idlewild: {}", client::ClientError::from(e));
            exit::FAILED
        }
        None => match idlewild::pause::clear(&config.state_dir, account) {
            Ok(()) => {
                println!("resumed {account} (the daemon is not running)");
                exit::OK
            }
            Err(e) => {
                eprintln!("idlewild: {e}");
                exit::FAILED
            }
        },
    }
}

fn watch(format: WatchFormat) -> i32 {
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(client::watch(format)) {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("idlewild: watch: {e}");
            exit::FAILED
        }
    }
}

fn print_reports(reports: &[AccountReportJson], args: &SyncArgs) {
    if args.json {
        match serde_json::to_string_pretty(reports) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("idlewild: cannot write JSON: {e}"),
        }
    } else {
        for r in reports {
            for line in idlewild::cli::report::summary(r, args.dry_run) {
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
