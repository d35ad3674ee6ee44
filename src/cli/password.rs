//! The bodies of `idlewild password set|delete|check ACCOUNT` and `idlewild oauth2 authorize
//! ACCOUNT`. Each returns the process exit code (see [`crate::cli::exit`]).

use std::io::{BufRead, IsTerminal, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::cli::exit;
use crate::config::{Config, ImapConfig, LocalConfig};
use crate::credentials::keyring::{self, KeyringError};
use crate::credentials::oauth2::{self, Pkce, RefreshFlow, TokenSource};
use crate::credentials::{Auth, PASSWORD_SERVICE, PasswordSource, REFRESH_TOKEN_SERVICE, Secret};

/// `idlewild password ...`.
pub fn password(config: &Config, command: &crate::cli::PasswordCommand) -> i32 {
    use crate::cli::PasswordCommand;
    match command {
        PasswordCommand::Set { account } => password_set(config, account),
        PasswordCommand::Delete { account } => password_delete(config, account),
        PasswordCommand::Check { account } => password_check(config, account),
    }
}

/// `idlewild oauth2 ...`.
pub fn oauth2(config: &Config, command: &crate::cli::OAuth2Command) -> i32 {
    match command {
        crate::cli::OAuth2Command::Authorize {
            account,
            port,
            timeout,
        } => oauth2_authorize(
            config,
            account,
            *port,
            Duration::from_secs((*timeout).max(1)),
        ),
    }
}

/// One IMAP side of an account: `ACCOUNT` is the remote side, `ACCOUNT/local` an IMAP local
/// side (`local.type = "imap"`).
struct Target<'a> {
    imap: &'a ImapConfig,
    /// The keyring username of the side: the account name, or `ACCOUNT/local`.
    key: &'a str,
}

/// The account side named on the command line, or a usage error that lists the known ones.
fn find<'a>(config: &'a Config, name: &str) -> Result<Target<'a>, i32> {
    let (account_name, local) = match name.strip_suffix("/local") {
        Some(base) => (base, true),
        None => (name, false),
    };
    let Some(account) = config.account(account_name) else {
        let known: Vec<&str> = config.accounts.iter().map(|a| a.name.as_str()).collect();
        eprintln!(
            "idlewild: no account named \"{account_name}\" in {} (accounts: {})",
            config.path.display(),
            known.join(", ")
        );
        return Err(exit::USAGE);
    };
    let imap = match (&account.local, local) {
        (_, false) => &account.remote,
        (LocalConfig::Imap(imap), true) => imap,
        (LocalConfig::Maildir(_), true) => {
            eprintln!(
                "idlewild: the local side of account {account_name} is a Maildir, which logs in nowhere; {name} names the local side of an account with local.type = \"imap\""
            );
            return Err(exit::USAGE);
        }
    };
    Ok(Target {
        imap,
        key: imap.credentials.account(),
    })
}

fn keyring_failed(account: &str, e: KeyringError) -> i32 {
    eprintln!("idlewild: account {account}: {e}");
    exit::FAILED
}

/// `password set`: reads the password without echo on a terminal, else the first line of
/// standard input, and stores it in the keyring.
pub fn password_set(config: &Config, name: &str) -> i32 {
    let target = match find(config, name) {
        Ok(t) => t,
        Err(code) => return code,
    };
    if let Err(e) = keyring::reachable() {
        return keyring_failed(name, e);
    }
    let password = match read_password(target.imap, name) {
        Ok(p) => p,
        Err(message) => {
            eprintln!("idlewild: {message}");
            return exit::FAILED;
        }
    };
    let key = target.key;
    match keyring::set(
        PASSWORD_SERVICE,
        key,
        &keyring::password_label(key),
        &password,
    ) {
        Ok(()) => {
            println!(
                "stored the password of account {name} in the keyring (service {PASSWORD_SERVICE}, username {key})"
            );
            if !matches!(
                target.imap.credentials.auth(),
                Auth::Password(PasswordSource::Keyring)
            ) {
                eprintln!(
                    "idlewild: warning: account {name} does not use the keyring ({}); remove its password or oauth2 settings to use it",
                    target.imap.credentials.auth().describe()
                );
            }
            exit::OK
        }
        Err(e) => keyring_failed(name, e),
    }
}

fn read_password(imap: &ImapConfig, name: &str) -> Result<Secret, String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let prompt = format!(
            "Password for {} on {} (account {name}): ",
            imap.user, imap.host
        );
        let first = rpassword::prompt_password(prompt)
            .map(Secret::new)
            .map_err(|e| format!("cannot read the password from the terminal: {e}"))?;
        let again = rpassword::prompt_password("The same password again: ")
            .map(Secret::new)
            .map_err(|e| format!("cannot read the password from the terminal: {e}"))?;
        if first != again {
            return Err("the two passwords differ; nothing was stored".to_owned());
        }
        if first.expose().is_empty() {
            return Err("the password is empty; nothing was stored".to_owned());
        }
        return Ok(first);
    }
    // Not a terminal: a script or a pipe (`pass show x | idlewild password set acct`).
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
    let line = Secret::new(line);
    let password = line.expose().trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(
            "standard input holds no password on its first line; nothing was stored".to_owned(),
        );
    }
    Ok(Secret::new(password.to_owned()))
}

/// `password delete`: removes the account's password and refresh token from the keyring.
pub fn password_delete(config: &Config, name: &str) -> i32 {
    let key = match find(config, name) {
        Ok(t) => t.key,
        Err(code) => return code,
    };
    let mut deleted = false;
    for (service, what) in [
        (PASSWORD_SERVICE, "password"),
        (REFRESH_TOKEN_SERVICE, "OAuth2 refresh token"),
    ] {
        match keyring::delete(service, key) {
            Ok(true) => {
                deleted = true;
                println!("deleted the {what} of account {name} from the keyring");
            }
            Ok(false) => {}
            Err(e) => return keyring_failed(name, e),
        }
    }
    if !deleted {
        println!("the keyring holds no password of account {name}; nothing to delete");
    }
    exit::OK
}

/// `password check`: logs in once and says whether it worked.
pub fn password_check(config: &Config, name: &str) -> i32 {
    let remote = match find(config, name) {
        Ok(t) => t.imap,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("idlewild: cannot start: {e}");
            return exit::FAILED;
        }
    };
    let result = runtime.block_on(async {
        let mut store = crate::store::imap::ImapStore::connect(remote).await?;
        crate::store::Store::close(&mut store).await;
        Ok::<_, crate::store::StoreError>(())
    });
    match result {
        Ok(()) => {
            println!(
                "account {name}: OK, logged in to {} as {} ({})",
                remote.host,
                remote.user,
                remote.credentials.auth().describe()
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("idlewild: account {name}: {e}");
            exit::FAILED
        }
    }
}

/// `oauth2 authorize`: the authorization-code flow with PKCE through a browser, and the refresh
/// token into the keyring.
pub fn oauth2_authorize(config: &Config, name: &str, port: u16, timeout: Duration) -> i32 {
    let target = match find(config, name) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let flow = match target.imap.credentials.auth() {
        Auth::OAuth2(o) => match &o.token {
            TokenSource::Refresh(flow) => flow.clone(),
            TokenSource::Command(_) => {
                eprintln!(
                    "idlewild: account {name} takes its access token from oauth2.token_command; authorize with that program instead"
                );
                return exit::USAGE;
            }
        },
        Auth::Password(_) => {
            eprintln!(
                "idlewild: account {name} logs in with a password; set oauth2.provider (or oauth2.token_url and oauth2.authorize_url) and oauth2.client_id first (see idlewild.toml(5))"
            );
            return exit::USAGE;
        }
    };
    let Some(authorize_url) = flow.authorize_url.clone() else {
        eprintln!(
            "idlewild: account {name} has no oauth2.authorize_url (and no oauth2.provider that implies one)"
        );
        return exit::USAGE;
    };
    match authorize(&target, &flow, &authorize_url, port, timeout) {
        Ok(()) => exit::OK,
        Err(message) => {
            eprintln!("idlewild: account {name}: {message}");
            exit::FAILED
        }
    }
}

fn authorize(
    target: &Target<'_>,
    flow: &RefreshFlow,
    authorize_url: &str,
    port: u16,
    timeout: Duration,
) -> Result<(), String> {
    let name = target.key;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .map_err(|e| format!("cannot listen on 127.0.0.1 port {port} for the browser: {e}"))?;
    let port = listener
        .local_addr()
        .map_err(|e| format!("cannot listen for the browser: {e}"))?
        .port();
    let redirect_uri = format!("http://localhost:{port}/");
    let pkce = Pkce::new(&rand::random::<[u8; 32]>());
    let state = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>());
    let url = oauth2::authorization_url(
        flow,
        authorize_url,
        &redirect_uri,
        &state,
        &pkce.challenge,
        &target.imap.user,
    );
    eprintln!(
        "Open this address in a browser, sign in as {} and allow access:\n",
        target.imap.user
    );
    println!("{url}");
    let _ = std::io::stdout().flush();
    eprintln!(
        "\nWaiting up to {} s for the browser to come back to {redirect_uri} ...",
        timeout.as_secs()
    );

    let code = wait_for_code(&listener, &state, Instant::now() + timeout)?;
    let answer = oauth2::exchange_code(name, flow, &code, &pkce.verifier, &redirect_uri)
        .map_err(|e| e.to_string())?;
    let Some(refresh_token) = answer.refresh_token else {
        return Err(format!(
            "{} answered without a refresh token, so idlewild could not log in later on its own; check the application's settings (offline access) and try again",
            flow.token_url
        ));
    };
    keyring::set(
        REFRESH_TOKEN_SERVICE,
        name,
        &keyring::refresh_token_label(name),
        &refresh_token,
    )
    .map_err(|e| e.to_string())?;
    println!(
        "stored the refresh token of account {name} in the keyring (service {REFRESH_TOKEN_SERVICE}, username {name}); check the login with: idlewild password check {name}"
    );
    Ok(())
}

/// Serves the loopback redirect until the browser brings the code (RFC 8252 §7.3). Requests
/// without the right `state` (another tab, a favicon) get an error page and are otherwise
/// ignored.
fn wait_for_code(listener: &TcpListener, state: &str, deadline: Instant) -> Result<Secret, String> {
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot listen for the browser: {e}"))?;
    loop {
        if Instant::now() >= deadline {
            return Err("the browser did not come back in time; run the command again".to_owned());
        }
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Err(e) => return Err(format!("cannot accept the browser's connection: {e}")),
        };
        match handle_redirect(stream, state) {
            Redirect::Code(code) => return Ok(code),
            Redirect::Refused(message) => return Err(message),
            Redirect::Ignored => {}
        }
    }
}

enum Redirect {
    Code(Secret),
    Refused(String),
    Ignored,
}

fn handle_redirect(mut stream: TcpStream, state: &str) -> Redirect {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = Secret::new(String::from_utf8_lossy(&head).into_owned());
    let target = head
        .expose()
        .lines()
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .unwrap_or("/")
        .to_owned();
    let params = oauth2::query_params(&target);
    let get = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let reply = |stream: &mut TcpStream, status: &str, text: &str| {
        let body =
            format!("<!doctype html><meta charset=utf-8><title>idlewild</title><p>{text}</p>\n");
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.flush();
    };
    if get("state") != Some(state) {
        reply(
            &mut stream,
            "400 Bad Request",
            "This is not the answer idlewild is waiting for.",
        );
        return Redirect::Ignored;
    }
    if let Some(error) = get("error") {
        let detail = get("error_description").unwrap_or("");
        reply(
            &mut stream,
            "200 OK",
            "idlewild was not given access. You can close this tab.",
        );
        return Redirect::Refused(format!(
            "the provider refused the authorization: {error} {detail}"
        ));
    }
    match get("code") {
        Some(code) if !code.is_empty() => {
            reply(
                &mut stream,
                "200 OK",
                "idlewild received the authorization. You can close this tab.",
            );
            Redirect::Code(Secret::new(code.to_owned()))
        }
        _ => {
            reply(
                &mut stream,
                "400 Bad Request",
                "The answer holds no authorization code.",
            );
            Redirect::Ignored
        }
    }
}
