//! Where an account's secret comes from, and the in-memory cache that holds it while the
//! program runs.
//!
//! An IMAP account logs in with one of:
//! - a password from the system keyring (the default), a password command, or the plain
//!   `password` string of the configuration file — sent with LOGIN or AUTHENTICATE PLAIN;
//! - an OAuth2 access token from a token command or from the built-in refresh flow (a refresh
//!   token kept in the keyring) — sent with XOAUTH2 or OAUTHBEARER.
//!
//! The secret is fetched when a connection needs it (never at start-up, so a keyring that is
//! unlocked later is picked up by the next attempt) and kept only in memory, in a
//! [`Secret`] whose `Debug` is redacted and whose memory is wiped when dropped. Every clone of an
//! account's [`Credentials`] shares one cache, so the sync connection and the watchers of the
//! daemon ask the keyring once.

pub mod command;
pub mod keyring;
pub mod oauth2;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

pub use crate::model::Secret;

use self::oauth2::{Mechanism, OAuth2Config, TokenSource};

/// The keyring service name of IMAP passwords: `secret-tool lookup service idlewild username
/// ACCOUNT` finds the password of account ACCOUNT.
pub const PASSWORD_SERVICE: &str = "idlewild";
/// The keyring service name of OAuth2 refresh tokens (username: the account name).
pub const REFRESH_TOKEN_SERVICE: &str = "idlewild-oauth2";

/// How long a password command may run by default: long enough for a person to answer a
/// pinentry prompt.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// An access token is used only while it stays valid at least this long, so a connection is
/// never opened with a token that expires during the login.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// An argv run without a shell to obtain a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretCommand {
    // INVARIANT: argv is not empty and argv[0] is not empty; timeout is not zero.
    argv: Vec<String>,
    timeout: Duration,
}

impl SecretCommand {
    pub fn new(argv: Vec<String>, timeout: Duration) -> Option<SecretCommand> {
        let usable = argv.first().is_some_and(|p| !p.is_empty()) && !timeout.is_zero();
        usable.then_some(SecretCommand { argv, timeout })
    }

    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn program(&self) -> &str {
        self.argv.first().map_or("", String::as_str)
    }
}

/// Where a password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// The system keyring: service [`PASSWORD_SERVICE`], username the account name.
    Keyring,
    /// The first line of a command's standard output.
    Command(SecretCommand),
    /// Written in the configuration file.
    Plain(Secret),
}

/// How an account authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    Password(PasswordSource),
    OAuth2(OAuth2Config),
}

impl Auth {
    /// A short description for messages and `check-config` (never the secret).
    pub fn describe(&self) -> String {
        match self {
            Auth::Password(PasswordSource::Keyring) => "password from the keyring".to_owned(),
            Auth::Password(PasswordSource::Command(c)) => {
                format!("password from the command {}", c.program())
            }
            Auth::Password(PasswordSource::Plain(_)) => {
                "password from the configuration file".to_owned()
            }
            Auth::OAuth2(o) => match &o.token {
                TokenSource::Command(c) => {
                    format!("OAuth2, token from the command {}", c.program())
                }
                TokenSource::Refresh(_) => {
                    "OAuth2, access token refreshed with a refresh token from the keyring"
                        .to_owned()
                }
            },
        }
    }
}

/// Why no secret could be had. Messages say what to do and never hold a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error(
        "no password in the keyring for account {account}: run `idlewild password set {account}`"
    )]
    NoPassword { account: String },
    #[error(
        "no password in the keyring for account {account}: the keyring is locked ({detail}); unlock it, or run `idlewild password set {account}`"
    )]
    Locked { account: String, detail: String },
    #[error(
        "no password in the keyring for account {account}: the keyring (Secret Service) cannot be reached ({detail}); start one such as gnome-keyring in the session, or set password.command in the configuration"
    )]
    KeyringUnavailable { account: String, detail: String },
    #[error("the keyring failed for account {account}: {detail}")]
    Keyring { account: String, detail: String },
    #[error(
        "no OAuth2 refresh token in the keyring for account {account}: run `idlewild oauth2 authorize {account}`"
    )]
    NoRefreshToken { account: String },
    #[error("the {what} command of account {account} ({program}) {problem}")]
    Command {
        account: String,
        /// "password" or "token".
        what: &'static str,
        program: String,
        problem: String,
    },
    #[error(
        "the OAuth2 token endpoint {url} refused the refresh token of account {account} ({detail}): run `idlewild oauth2 authorize {account}`"
    )]
    RefreshRejected {
        account: String,
        url: String,
        detail: String,
    },
    #[error("the OAuth2 token endpoint {url} failed for account {account}: {detail}")]
    TokenEndpoint {
        account: String,
        url: String,
        detail: String,
    },
}

impl CredentialError {
    /// Whether trying again later may help without the user changing the configuration: a
    /// secret that appears in the keyring, a keyring that is unlocked, a network that returns.
    pub fn is_temporary(&self) -> bool {
        match self {
            CredentialError::NoPassword { .. }
            | CredentialError::Locked { .. }
            | CredentialError::KeyringUnavailable { .. }
            | CredentialError::Keyring { .. }
            | CredentialError::NoRefreshToken { .. }
            | CredentialError::Command { .. }
            | CredentialError::TokenEndpoint { .. } => true,
            CredentialError::RefreshRejected { .. } => false,
        }
    }
}

/// What to log in with.
#[derive(Debug, Clone)]
pub enum Login {
    /// LOGIN or AUTHENTICATE PLAIN.
    Password(Secret),
    /// XOAUTH2 or OAUTHBEARER with this access token; `None`: whichever the server offers.
    Bearer {
        token: Secret,
        mechanism: Option<Mechanism>,
    },
}

/// What the cache holds.
#[derive(Default)]
struct Cache {
    password: Option<Secret>,
    access_token: Option<(Secret, Option<Instant>)>,
    refresh_token: Option<Secret>,
}

/// An account's credentials: where the secret comes from, and the secret once fetched.
/// Clones share the cache.
#[derive(Clone)]
pub struct Credentials {
    account: String,
    auth: Arc<Auth>,
    cache: Arc<Mutex<Cache>>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("account", &self.account)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    pub fn new(account: &str, auth: Auth) -> Self {
        Self {
            account: account.to_owned(),
            auth: Arc::new(auth),
            cache: Arc::new(Mutex::new(Cache::default())),
        }
    }

    /// A password written out, for tests and programs that embed idlewild.
    pub fn plain(account: &str, password: Secret) -> Self {
        Self::new(account, Auth::Password(PasswordSource::Plain(password)))
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The secret to log in with: from the cache, else fetched from its source (the keyring and
    /// the token endpoint are called off the async runtime). One fetch at a time per account:
    /// connections opened together wait for the first one's answer.
    pub async fn login(&self) -> Result<Login, CredentialError> {
        let mut cache = self.cache.lock().await;
        match &*self.auth {
            Auth::Password(source) => {
                if let Some(password) = &cache.password {
                    return Ok(Login::Password(password.clone()));
                }
                let password = match source {
                    PasswordSource::Plain(p) => p.clone(),
                    PasswordSource::Keyring => self.read_keyring(PASSWORD_SERVICE).await?,
                    PasswordSource::Command(c) => {
                        command::run(&self.account, "password", c).await?
                    }
                };
                cache.password = Some(password.clone());
                Ok(Login::Password(password))
            }
            Auth::OAuth2(config) => {
                let mechanism = config.mechanism;
                let token = match &config.token {
                    // A token command keeps its own cache and knows the expiry: ask it each time.
                    TokenSource::Command(c) => command::run(&self.account, "token", c).await?,
                    TokenSource::Refresh(refresh) => {
                        let now = Instant::now();
                        match &cache.access_token {
                            Some((token, expiry))
                                if expiry.is_none_or(|e| now + EXPIRY_MARGIN < e) =>
                            {
                                token.clone()
                            }
                            _ => {
                                let refresh_token = match &cache.refresh_token {
                                    Some(t) => t.clone(),
                                    None => self.read_keyring(REFRESH_TOKEN_SERVICE).await?,
                                };
                                cache.refresh_token = Some(refresh_token.clone());
                                let answer = self.refresh(refresh, refresh_token).await;
                                let answer = match answer {
                                    Ok(a) => a,
                                    Err(e) => {
                                        if matches!(e, CredentialError::RefreshRejected { .. }) {
                                            // A new authorization may have stored another one.
                                            cache.refresh_token = None;
                                        }
                                        return Err(e);
                                    }
                                };
                                if let Some(new) = answer.refresh_token {
                                    // Providers that rotate refresh tokens (Microsoft) invalidate
                                    // the old one: the new one must outlive this process.
                                    self.store_refresh_token(&new).await;
                                    cache.refresh_token = Some(new);
                                }
                                let expiry = answer.expires_in.map(|d| Instant::now() + d);
                                cache.access_token = Some((answer.access_token.clone(), expiry));
                                answer.access_token
                            }
                        }
                    }
                };
                Ok(Login::Bearer { token, mechanism })
            }
        }
    }

    /// The server refused what [`Credentials::login`] returned: forget it, so the next attempt
    /// fetches it again (the user may have changed the password in the keyring meanwhile).
    /// Returns whether trying again at once may help: only a refreshed access token can be
    /// different a moment later.
    pub async fn rejected(&self) -> bool {
        let mut cache = self.cache.lock().await;
        cache.password = None;
        let had_token = cache.access_token.take().is_some();
        had_token
            && matches!(
                &*self.auth,
                Auth::OAuth2(OAuth2Config {
                    token: TokenSource::Refresh(_),
                    ..
                })
            )
    }

    async fn read_keyring(&self, service: &'static str) -> Result<Secret, CredentialError> {
        let account = self.account.clone();
        let found = tokio::task::spawn_blocking(move || keyring::get(service, &account))
            .await
            .map_err(|e| CredentialError::Keyring {
                account: self.account.clone(),
                detail: format!("the keyring lookup did not finish: {e}"),
            })?;
        let account = self.account.clone();
        match found {
            Ok(Some(secret)) => Ok(secret),
            Ok(None) if service == REFRESH_TOKEN_SERVICE => {
                Err(CredentialError::NoRefreshToken { account })
            }
            Ok(None) => Err(CredentialError::NoPassword { account }),
            Err(e) => Err(e.for_account(&account)),
        }
    }

    async fn refresh(
        &self,
        refresh: &oauth2::RefreshFlow,
        refresh_token: Secret,
    ) -> Result<oauth2::TokenAnswer, CredentialError> {
        let (account, flow) = (self.account.clone(), refresh.clone());
        let url = refresh.token_url.clone();
        tokio::task::spawn_blocking(move || oauth2::refresh(&account, &flow, &refresh_token))
            .await
            .unwrap_or_else(|e| {
                Err(CredentialError::TokenEndpoint {
                    account: self.account.clone(),
                    url,
                    detail: format!("the request did not finish: {e}"),
                })
            })
    }

    async fn store_refresh_token(&self, token: &Secret) {
        let (account, token) = (self.account.clone(), token.clone());
        let stored = tokio::task::spawn_blocking(move || {
            keyring::set(
                REFRESH_TOKEN_SERVICE,
                &account,
                &keyring::refresh_token_label(&account),
                &token,
            )
        })
        .await;
        match stored {
            Ok(Ok(())) => {
                tracing::info!(account = %self.account, "stored the new refresh token in the keyring")
            }
            Ok(Err(e)) => {
                tracing::warn!(account = %self.account, error = %e.for_account(&self.account), "cannot store the new refresh token; the old one may stop working")
            }
            Err(e) => {
                tracing::warn!(account = %self.account, error = %e, "cannot store the new refresh token")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_plain_password_is_cached_and_never_printed() {
        let c = Credentials::plain("acct", Secret::new("hunter2".to_owned()));
        let Login::Password(p) = c.login().await.unwrap() else {
            panic!("not a password");
        };
        assert_eq!(p.expose(), "hunter2");
        let shown = format!("{c:?} {:?} {:?}", c.login().await.unwrap(), c.auth());
        assert!(!shown.contains("hunter2"), "{shown}");
        // A refused plain password is not worth retrying at once.
        assert!(!c.rejected().await);
    }

    #[tokio::test]
    async fn a_password_command_runs_once_and_again_after_a_rejection() {
        let dir = tempfile::tempdir().unwrap();
        let counter = dir.path().join("n");
        let script = format!("echo x >> {}; echo s3cret", counter.display());
        let cmd = SecretCommand::new(
            vec!["sh".into(), "-c".into(), script],
            Duration::from_secs(10),
        )
        .unwrap();
        let c = Credentials::new("acct", Auth::Password(PasswordSource::Command(cmd)));
        for _ in 0..3 {
            let Login::Password(p) = c.login().await.unwrap() else {
                panic!()
            };
            assert_eq!(p.expose(), "s3cret");
        }
        let runs = || std::fs::read_to_string(&counter).unwrap().lines().count();
        assert_eq!(runs(), 1);
        c.rejected().await;
        c.login().await.unwrap();
        assert_eq!(runs(), 2);
    }

    /// A token endpoint on 127.0.0.1 answering request n with `answers[n]`; returns its URL and
    /// the count of requests served.
    fn token_endpoint(
        answers: Vec<String>,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = served.clone();
        std::thread::spawn(move || {
            for (answer, stream) in answers.into_iter().zip(listener.incoming()) {
                let Ok(mut stream) = stream else { return };
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                // Headers, then the short form body.
                while let Ok(n) = stream.read(&mut buf) {
                    seen.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&seen);
                    if n == 0 || text.contains("client_id=") {
                        break;
                    }
                }
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        (url, served)
    }

    #[tokio::test]
    async fn an_access_token_is_cached_until_shortly_before_it_expires() {
        let answer = |token: &str, seconds: u64| {
            format!(r#"{{"access_token":"{token}","expires_in":{seconds}}}"#)
        };
        let (url, served) = token_endpoint(vec![
            answer("token-1", 3600),
            answer("token-2", 30),
            answer("token-3", 3600),
        ]);
        let flow = oauth2::RefreshFlow {
            token_url: url,
            client_id: "id".into(),
            client_secret: None,
            authorize_url: None,
            scope: None,
            authorize_params: Vec::new(),
            timeout: Duration::from_secs(10),
        };
        let c = Credentials::new(
            "acct",
            Auth::OAuth2(OAuth2Config {
                mechanism: None,
                token: TokenSource::Refresh(flow),
            }),
        );
        // As if read from the keyring before.
        c.cache.lock().await.refresh_token = Some(Secret::new("refresh".into()));
        let token = |login: Login| match login {
            Login::Bearer { token, .. } => token.expose().to_owned(),
            Login::Password(_) => panic!("a password"),
        };
        let served = || served.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(token(c.login().await.unwrap()), "token-1");
        assert_eq!(token(c.login().await.unwrap()), "token-1");
        assert_eq!(served(), 1, "a valid token is not refreshed");
        // Refused by the server: refreshed at once.
        assert!(c.rejected().await);
        assert_eq!(token(c.login().await.unwrap()), "token-2");
        // Valid for 30 s only, less than the margin: not used again.
        assert_eq!(token(c.login().await.unwrap()), "token-3");
        assert_eq!(served(), 3);
    }
}
