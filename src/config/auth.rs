//! The `password` and `oauth2` keys of an IMAP repository in the configuration file, and the
//! checks that turn them into an [`Auth`].

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use toml::Spanned;

use crate::credentials::oauth2::{self, Mechanism, OAuth2Config, RefreshFlow, TokenSource};
use crate::credentials::{Auth, DEFAULT_COMMAND_TIMEOUT, PasswordSource, Secret, SecretCommand};

/// `password = "..."` or a `password` table.
#[derive(Debug)]
pub enum FilePassword {
    Plain(String),
    Table(PasswordTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordTable {
    keyring: Option<bool>,
    command: Option<Vec<String>>,
    timeout: Option<u64>,
}

// Hand-written rather than `#[serde(untagged)]`, whose "data did not match any variant" says
// nothing about what is wrong.
impl<'de> Deserialize<'de> for FilePassword {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PasswordVisitor;

        impl<'de> Visitor<'de> for PasswordVisitor {
            type Value = FilePassword;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, or a table with `keyring`, `command` and `timeout`")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<FilePassword, E> {
                Ok(FilePassword::Plain(v.to_owned()))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FilePassword, A::Error> {
                PasswordTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(FilePassword::Table)
            }
        }

        deserializer.deserialize_any(PasswordVisitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOAuth2 {
    provider: Option<Spanned<String>>,
    mechanism: Option<Spanned<String>>,
    token_command: Option<Spanned<Vec<String>>>,
    token_url: Option<Spanned<String>>,
    authorize_url: Option<Spanned<String>>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
    timeout: Option<Spanned<u64>>,
}

/// A mistake in the `password` or `oauth2` keys: where, which key (below `remote.`), what.
#[derive(Debug)]
pub struct SchemaError {
    pub span: Range<usize>,
    pub key: &'static str,
    pub message: String,
}

fn error(span: Range<usize>, key: &'static str, message: impl Into<String>) -> SchemaError {
    SchemaError {
        span,
        key,
        message: message.into(),
    }
}

const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Checks the two keys and says how the account logs in. Nothing given: the keyring.
pub fn resolve(
    password: Option<&Spanned<FilePassword>>,
    oauth2: Option<&Spanned<FileOAuth2>>,
) -> Result<Auth, SchemaError> {
    match (password, oauth2) {
        (Some(_), Some(o)) => Err(error(
            o.span(),
            "oauth2",
            "cannot be combined with password: an account logs in either with a password or with OAuth2",
        )),
        (None, None) => Ok(Auth::Password(PasswordSource::Keyring)),
        (Some(p), None) => password_source(p).map(Auth::Password),
        (None, Some(o)) => oauth2_config(o).map(Auth::OAuth2),
    }
}

fn password_source(p: &Spanned<FilePassword>) -> Result<PasswordSource, SchemaError> {
    let span = p.span();
    match p.get_ref() {
        FilePassword::Plain(text) if text.is_empty() => Err(error(
            span,
            "password",
            "is empty; leave it out to keep the password in the keyring (idlewild password set ACCOUNT)",
        )),
        FilePassword::Plain(text) => Ok(PasswordSource::Plain(Secret::new(text.clone()))),
        FilePassword::Table(t) => match (t.keyring, &t.command) {
            (Some(true), Some(_)) => Err(error(
                span,
                "password",
                "give password.keyring = true or password.command, not both",
            )),
            (_, Some(argv)) => {
                let timeout = match t.timeout {
                    Some(0) => {
                        return Err(error(
                            span,
                            "password.timeout",
                            "must be at least 1 (seconds)",
                        ));
                    }
                    Some(s) => Duration::from_secs(s),
                    None => DEFAULT_COMMAND_TIMEOUT,
                };
                SecretCommand::new(argv.clone(), timeout)
                    .map(PasswordSource::Command)
                    .ok_or_else(|| {
                        error(
                            span,
                            "password.command",
                            "needs the program and its arguments, e.g. [\"pass\", \"show\", \"mail/work\"]",
                        )
                    })
            }
            (Some(false), None) => Err(error(
                span,
                "password.keyring",
                "false leaves no password: set password.command, or password.keyring = true",
            )),
            (_, None) if t.timeout.is_some() => Err(error(
                span,
                "password.timeout",
                "only applies to password.command",
            )),
            (Some(true) | None, None) => Ok(PasswordSource::Keyring),
        },
    }
}

fn oauth2_config(o: &Spanned<FileOAuth2>) -> Result<OAuth2Config, SchemaError> {
    let span = o.span();
    let o = o.get_ref();
    let mechanism = match &o.mechanism {
        None => None,
        Some(m) => Some(match m.get_ref().to_ascii_lowercase().as_str() {
            "xoauth2" => Mechanism::XOAuth2,
            "oauthbearer" => Mechanism::OAuthBearer,
            _ => {
                return Err(error(
                    m.span(),
                    "oauth2.mechanism",
                    format!(
                        "\"{}\" is not known; expected \"xoauth2\" or \"oauthbearer\" (or leave it out: OAUTHBEARER when the server offers it, else XOAUTH2)",
                        m.get_ref()
                    ),
                ));
            }
        }),
    };
    let timeout = match &o.timeout {
        Some(t) if *t.get_ref() == 0 => {
            return Err(error(
                t.span(),
                "oauth2.timeout",
                "must be at least 1 (seconds)",
            ));
        }
        Some(t) => Duration::from_secs(*t.get_ref()),
        None => DEFAULT_HTTP_TIMEOUT,
    };
    if let Some(command) = &o.token_command {
        let flow_keys = o.provider.is_some()
            || o.token_url.is_some()
            || o.authorize_url.is_some()
            || o.client_id.is_some()
            || o.client_secret.is_some()
            || o.scope.is_some();
        if flow_keys {
            return Err(error(
                command.span(),
                "oauth2.token_command",
                "excludes the built-in refresh flow (provider, token_url, authorize_url, client_id, client_secret, scope): the command alone provides the access token",
            ));
        }
        let command = SecretCommand::new(command.get_ref().clone(), timeout).ok_or_else(|| {
            error(
                command.span(),
                "oauth2.token_command",
                "needs the program and its arguments, e.g. [\"oama\", \"access\", \"me@gmail.com\"]",
            )
        })?;
        return Ok(OAuth2Config {
            mechanism,
            token: TokenSource::Command(command),
        });
    }
    let preset = match &o.provider {
        None => None,
        Some(p) => Some(oauth2::preset(p.get_ref()).ok_or_else(|| {
            let known: Vec<&str> = oauth2::PRESETS.iter().map(|p| p.name).collect();
            error(
                p.span(),
                "oauth2.provider",
                format!(
                    "\"{}\" is not known; known providers: {} (or give token_url and authorize_url)",
                    p.get_ref(),
                    known.join(", ")
                ),
            )
        })?),
    };
    let url = |given: &Option<Spanned<String>>,
               key: &'static str,
               default: Option<&str>|
     -> Result<Option<String>, SchemaError> {
        match given {
            Some(u) => {
                check_url(u.get_ref()).map_err(|m| error(u.span(), key, m))?;
                Ok(Some(u.get_ref().clone()))
            }
            None => Ok(default.map(str::to_owned)),
        }
    };
    let token_url = url(
        &o.token_url,
        "oauth2.token_url",
        preset.map(|p| p.token_url),
    )?
    .ok_or_else(|| {
        error(
            span.clone(),
            "oauth2",
            "needs token_command, or provider (gmail, outlook) or token_url, with client_id",
        )
    })?;
    let authorize_url = url(
        &o.authorize_url,
        "oauth2.authorize_url",
        preset.map(|p| p.authorize_url),
    )?;
    let client_id = match &o.client_id {
        Some(id) if !id.is_empty() => id.clone(),
        _ => {
            return Err(error(
                span,
                "oauth2.client_id",
                "is required for the refresh flow: the client ID of the OAuth2 application registered with the provider",
            ));
        }
    };
    Ok(OAuth2Config {
        mechanism,
        token: TokenSource::Refresh(RefreshFlow {
            token_url,
            client_id,
            client_secret: o
                .client_secret
                .clone()
                .filter(|s| !s.is_empty())
                .map(Secret::new),
            authorize_url,
            scope: o
                .scope
                .clone()
                .or_else(|| preset.map(|p| p.scope.to_owned())),
            authorize_params: preset
                .map(|p| {
                    p.authorize_params
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect()
                })
                .unwrap_or_default(),
            timeout,
        }),
    })
}

/// An endpoint must be HTTPS, except on this machine (tests, local proxies): the refresh token
/// and client secret travel in the request.
fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("https://") && url.len() > "https://".len() {
        return Ok(());
    }
    if let Some(rest) = url.strip_prefix("http://") {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = match authority.rsplit_once(':') {
            Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
            _ => authority,
        };
        if super::is_loopback(host) {
            return Ok(());
        }
        return Err(format!(
            "\"{url}\" is plain HTTP; the tokens would travel in clear text. Use https:// (plain http:// is only allowed to loopback addresses)"
        ));
    }
    Err(format!("\"{url}\" is not an https:// URL"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BASE: &str =
        "[accounts.a.remote]\ntype = \"imap\"\nhost = \"imap.example.org\"\nuser = \"me\"\n";
    const LOCAL: &str = "\n[accounts.a.local]\ntype = \"maildir\"\npath = \"/tmp/iw-schema/a\"\n";

    fn parse(remote_extra: &str) -> Result<Auth, String> {
        let text = format!("{BASE}{remote_extra}{LOCAL}");
        crate::config::parse(Path::new("/c.toml"), &text)
            .map(|c| c.accounts[0].remote.credentials.auth().clone())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_keyring_is_the_default() {
        assert_eq!(parse(""), Ok(Auth::Password(PasswordSource::Keyring)));
        assert_eq!(
            parse("password = { keyring = true }\n"),
            Ok(Auth::Password(PasswordSource::Keyring))
        );
        assert_eq!(
            parse("password.keyring = true\n"),
            Ok(Auth::Password(PasswordSource::Keyring))
        );
    }

    #[test]
    fn commands_plain_passwords_and_mistakes() {
        let Ok(Auth::Password(PasswordSource::Command(c))) =
            parse("password.command = [\"pass\", \"show\", \"x\"]\npassword.timeout = 5\n")
        else {
            panic!("not a command");
        };
        assert_eq!(c.argv(), ["pass", "show", "x"]);
        assert_eq!(c.timeout(), Duration::from_secs(5));
        assert!(matches!(
            parse("password = \"hunter2\"\n"),
            Ok(Auth::Password(PasswordSource::Plain(_)))
        ));
        for (extra, message) in [
            (
                "password.command = []\n",
                "accounts.a.remote.password.command: needs the program",
            ),
            (
                "password.keyring = false\n",
                "accounts.a.remote.password.keyring: false leaves no password",
            ),
            (
                "password.timeout = 5\n",
                "accounts.a.remote.password.timeout: only applies",
            ),
            (
                "password.command = [\"x\"]\npassword.timeout = 0\n",
                "must be at least 1",
            ),
            ("password = \"\"\n", "accounts.a.remote.password: is empty"),
            (
                "password.comand = [\"x\"]\n",
                "accounts.a.remote.password.comand: unknown key `comand`",
            ),
            ("password = 3\n", "a string, or a table"),
        ] {
            let e = parse(extra).unwrap_err();
            assert!(e.contains(message), "{extra}: {e}");
            assert!(e.starts_with("/c.toml:5:"), "{extra}: {e}");
        }
    }

    #[test]
    fn oauth2_presets_custom_endpoints_and_commands() {
        let Ok(Auth::OAuth2(o)) =
            parse("[accounts.a.remote.oauth2]\nprovider = \"gmail\"\nclient_id = \"id\"\n")
        else {
            panic!("not oauth2");
        };
        let TokenSource::Refresh(flow) = &o.token else {
            panic!("no flow")
        };
        assert_eq!(flow.token_url, "https://oauth2.googleapis.com/token");
        assert_eq!(flow.scope.as_deref(), Some("https://mail.google.com/"));
        assert_eq!(o.mechanism, None);
        let Ok(Auth::OAuth2(o)) = parse(
            "oauth2.token_command = [\"oama\", \"access\", \"me\"]\noauth2.mechanism = \"XOAUTH2\"\n",
        ) else {
            panic!("not oauth2");
        };
        assert_eq!(o.mechanism, Some(Mechanism::XOAuth2));
        assert!(matches!(o.token, TokenSource::Command(_)));
        for (extra, message) in [
            (
                "password = \"x\"\noauth2.provider = \"gmail\"\n",
                "cannot be combined with password",
            ),
            (
                "oauth2.provider = \"yahoo\"\noauth2.client_id = \"i\"\n",
                "known providers: gmail, outlook",
            ),
            (
                "oauth2.provider = \"gmail\"\n",
                "oauth2.client_id: is required",
            ),
            (
                "oauth2.client_id = \"i\"\n",
                "needs token_command, or provider",
            ),
            (
                "oauth2.token_url = \"http://example.org/t\"\noauth2.client_id = \"i\"\n",
                "plain HTTP",
            ),
            (
                "oauth2.token_command = [\"x\"]\noauth2.client_id = \"i\"\n",
                "excludes the built-in refresh flow",
            ),
            (
                "oauth2.mechanism = \"plain\"\noauth2.token_command = [\"x\"]\n",
                "expected \"xoauth2\" or \"oauthbearer\"",
            ),
        ] {
            let e = parse(extra).unwrap_err();
            assert!(e.contains(message), "{extra}: {e}");
        }
    }

    #[test]
    fn no_secret_of_the_configuration_shows_in_debug_output() {
        let text = format!(
            "{BASE}password = \"pw-one-1a\"{LOCAL}\n[accounts.b.remote]\ntype = \"imap\"\nhost = \"h\"\nuser = \"u\"\n[accounts.b.remote.oauth2]\nprovider = \"outlook\"\nclient_id = \"id\"\nclient_secret = \"cs-two-2b\"\n[accounts.b.local]\ntype = \"maildir\"\npath = \"/tmp/iw-schema/b\"\n"
        );
        let config = crate::config::parse(Path::new("/c.toml"), &text).unwrap();
        let shown = format!("{config:?} {:#?}", config.accounts);
        for secret in ["pw-one-1a", "cs-two-2b"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("Secret(<redacted>)"));
    }

    #[test]
    fn urls_must_be_https_unless_loopback() {
        assert!(check_url("https://oauth2.googleapis.com/token").is_ok());
        assert!(check_url("http://127.0.0.1:8080/token").is_ok());
        assert!(check_url("http://[::1]:8080/token").is_ok());
        assert!(check_url("http://localhost/token").is_ok());
        assert!(check_url("http://example.org/token").is_err());
        assert!(check_url("ftp://x").is_err());
    }
}
