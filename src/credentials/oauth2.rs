//! OAuth2 for IMAP: the SASL mechanisms XOAUTH2 (Google's, also Microsoft's) and OAUTHBEARER
//! (RFC 7628), the refresh-token grant (RFC 6749 §6), and the pieces of the authorization-code
//! grant with PKCE (RFC 7636) that `idlewild oauth2 authorize` puts together.
//!
//! HTTP calls block (ureq): call them from a blocking thread.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Deserialize;
use sha2::Digest;

use super::{CredentialError, Secret, SecretCommand};

/// The SASL mechanism carrying the access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    XOAuth2,
    OAuthBearer,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::XOAuth2 => "XOAUTH2",
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }
}

/// Where access tokens come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A helper program prints the access token (oama, mutt_oauth2.py, ...).
    Command(SecretCommand),
    /// idlewild refreshes it with the refresh token in the keyring.
    Refresh(RefreshFlow),
}

/// The endpoints and client of the built-in flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshFlow {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    /// Only needed by `idlewild oauth2 authorize`.
    pub authorize_url: Option<String>,
    pub scope: Option<String>,
    /// Extra parameters of the authorization request (Google needs `access_type=offline` and
    /// `prompt=consent` to hand out a refresh token).
    pub authorize_params: Vec<(String, String)>,
    /// For each HTTP request.
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2Config {
    /// `None`: OAUTHBEARER when the server offers it, else XOAUTH2.
    pub mechanism: Option<Mechanism>,
    pub token: TokenSource,
}

/// A provider's endpoints, so a configuration only needs `provider` and `client_id`.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub name: &'static str,
    pub authorize_url: &'static str,
    pub token_url: &'static str,
    pub scope: &'static str,
    pub authorize_params: &'static [(&'static str, &'static str)],
}

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "gmail",
        authorize_url: "https://accounts.google.com/o/oauth2/auth",
        token_url: "https://oauth2.googleapis.com/token",
        scope: "https://mail.google.com/",
        authorize_params: &[("access_type", "offline"), ("prompt", "consent")],
    },
    Preset {
        name: "outlook",
        authorize_url: "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
        token_url: "https://login.microsoftonline.com/common/oauth2/v2.0/token",
        scope: "https://outlook.office.com/IMAP.AccessAsUser.All offline_access",
        authorize_params: &[],
    },
];

pub fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// The base64 initial client response of `mechanism` (SASL-IR or after the first `+`).
pub fn initial_response(
    mechanism: Mechanism,
    user: &str,
    host: &str,
    port: u16,
    token: &Secret,
) -> Secret {
    let raw = match mechanism {
        // https://developers.google.com/gmail/imap/xoauth2-protocol
        Mechanism::XOAuth2 => format!("user={user}\x01auth=Bearer {}\x01\x01", token.expose()),
        // RFC 7628 §3.1: a GS2 header with the authorization identity, then key/value pairs.
        Mechanism::OAuthBearer => format!(
            "n,a={},\x01host={host}\x01port={port}\x01auth=Bearer {}\x01\x01",
            gs2_escape(user),
            token.expose()
        ),
    };
    let encoded = Secret::new(STANDARD.encode(raw.as_bytes()));
    drop(Secret::new(raw));
    encoded
}

/// What the client answers to the server's error challenge: RFC 7628 §3.2.3 wants a single
/// %x01 for OAUTHBEARER; Google documents an empty response for XOAUTH2.
pub fn error_acknowledgement(mechanism: Mechanism) -> &'static str {
    match mechanism {
        Mechanism::XOAuth2 => "",
        Mechanism::OAuthBearer => "AQ==",
    }
}

/// RFC 5801 §4: `,` and `=` in a saslname.
fn gs2_escape(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// A token endpoint's successful answer.
pub struct TokenAnswer {
    pub access_token: Secret,
    pub expires_in: Option<Duration>,
    pub refresh_token: Option<Secret>,
}

#[derive(Deserialize)]
struct TokenJson {
    access_token: Option<String>,
    expires_in: Option<serde_json::Value>,
    refresh_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Exchanges the refresh token for an access token (RFC 6749 §6).
pub fn refresh(
    account: &str,
    flow: &RefreshFlow,
    refresh_token: &Secret,
) -> Result<TokenAnswer, CredentialError> {
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.expose()),
        ("client_id", flow.client_id.as_str()),
    ];
    if let Some(secret) = &flow.client_secret {
        form.push(("client_secret", secret.expose()));
    }
    tracing::debug!(account, url = %flow.token_url, "refreshing the OAuth2 access token");
    post_token(account, flow, &form, true)
}

/// Exchanges an authorization code for tokens (RFC 6749 §4.1.3, RFC 7636 §4.5).
pub fn exchange_code(
    account: &str,
    flow: &RefreshFlow,
    code: &Secret,
    verifier: &Secret,
    redirect_uri: &str,
) -> Result<TokenAnswer, CredentialError> {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code.expose()),
        ("code_verifier", verifier.expose()),
        ("redirect_uri", redirect_uri),
        ("client_id", flow.client_id.as_str()),
    ];
    if let Some(secret) = &flow.client_secret {
        form.push(("client_secret", secret.expose()));
    }
    post_token(account, flow, &form, false)
}

fn post_token(
    account: &str,
    flow: &RefreshFlow,
    form: &[(&str, &str)],
    refreshing: bool,
) -> Result<TokenAnswer, CredentialError> {
    let url = flow.token_url.clone();
    let endpoint_error = |detail: String| CredentialError::TokenEndpoint {
        account: account.to_owned(),
        url: url.clone(),
        detail,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(flow.timeout))
        // 4xx answers carry the OAuth2 error object: read it rather than fail on the status.
        .http_status_as_error(false)
        // A token endpoint answers directly; a redirect would resend the secrets elsewhere.
        .max_redirects(0)
        .user_agent(concat!("idlewild/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut response = agent
        .post(&flow.token_url)
        .header("Accept", "application/json")
        .send_form(form.iter().copied())
        // ureq's errors name the URL and the transport problem, never the form.
        .map_err(|e| endpoint_error(e.to_string()))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(1024 * 1024)
        .read_to_string()
        .map_err(|e| endpoint_error(format!("cannot read the answer (HTTP {status}): {e}")))?;
    let body = Secret::new(body);
    let parsed: Result<TokenJson, _> = serde_json::from_str(body.expose());
    match parsed {
        Ok(TokenJson {
            access_token: Some(access_token),
            expires_in,
            refresh_token,
            ..
        }) if (200..300).contains(&status) && !access_token.is_empty() => Ok(TokenAnswer {
            access_token: Secret::new(access_token),
            expires_in: expires_in
                .as_ref()
                .and_then(seconds)
                .map(Duration::from_secs),
            refresh_token: refresh_token.filter(|t| !t.is_empty()).map(Secret::new),
        }),
        Ok(TokenJson {
            error: Some(error),
            error_description,
            ..
        }) => {
            let detail = match error_description {
                Some(d) => format!("HTTP {status}, {error}: {}", clip(&d)),
                None => format!("HTTP {status}, {error}"),
            };
            // RFC 6749 §5.2: these say the grant itself is bad; anything else may pass.
            if refreshing
                && matches!(
                    error.as_str(),
                    "invalid_grant" | "unauthorized_client" | "invalid_client"
                )
            {
                Err(CredentialError::RefreshRejected {
                    account: account.to_owned(),
                    url,
                    detail,
                })
            } else {
                Err(endpoint_error(detail))
            }
        }
        // The body is not shown: a broken endpoint might echo the form back.
        Ok(_) => Err(endpoint_error(format!(
            "HTTP {status} without an access token or an error code"
        ))),
        Err(_) => Err(endpoint_error(format!(
            "HTTP {status}, and the answer is not JSON"
        ))),
    }
}

/// `expires_in` as a number, or as a string of digits (some servers quote it).
fn seconds(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn clip(text: &str) -> String {
    let mut out: String = text.chars().filter(|c| !c.is_control()).take(300).collect();
    if text.chars().count() > 300 {
        out.push('…');
    }
    out
}

/// A PKCE pair (RFC 7636 §4.1, §4.2): the verifier stays here, the S256 challenge goes into the
/// authorization URL.
pub struct Pkce {
    pub verifier: Secret,
    pub challenge: String,
}

impl Pkce {
    pub fn new(random: &[u8; 32]) -> Self {
        // 43 characters of the unreserved set, from 256 random bits.
        let verifier = URL_SAFE_NO_PAD.encode(random);
        let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
        Self {
            verifier: Secret::new(verifier),
            challenge,
        }
    }
}

/// The URL a person opens to grant access (RFC 6749 §4.1.1 with RFC 7636's S256 challenge).
pub fn authorization_url(
    flow: &RefreshFlow,
    authorize_url: &str,
    redirect_uri: &str,
    state: &str,
    challenge: &str,
    login_hint: &str,
) -> String {
    let mut params: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", &flow.client_id),
        ("redirect_uri", redirect_uri),
        ("state", state),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ];
    if let Some(scope) = &flow.scope {
        params.push(("scope", scope));
    }
    if !login_hint.is_empty() {
        params.push(("login_hint", login_hint));
    }
    for (k, v) in &flow.authorize_params {
        params.push((k, v));
    }
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    let separator = if authorize_url.contains('?') {
        '&'
    } else {
        '?'
    };
    format!("{authorize_url}{separator}{}", query.join("&"))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` and `+` of a query string value; `None` for malformed escapes or non-UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The query parameters of a request target such as `/?code=..&state=..`.
pub fn query_params(target: &str) -> Vec<(String, String)> {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let query = query.split('#').next().unwrap_or("");
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xoauth2_matches_googles_example() {
        // The example of Google's XOAUTH2 documentation.
        let token = Secret::new("ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg".to_owned());
        let r = initial_response(Mechanism::XOAuth2, "someuser@example.com", "h", 993, &token);
        assert_eq!(
            r.expose(),
            "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
        );
        assert!(!format!("{r:?}").contains("ya29"));
    }

    #[test]
    fn oauthbearer_follows_rfc_7628() {
        // RFC 7628 §4.1, with the user of that example.
        let token = Secret::new("vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==".to_owned());
        let r = initial_response(
            Mechanism::OAuthBearer,
            "user@example.com",
            "server.example.com",
            143,
            &token,
        );
        let raw = String::from_utf8(STANDARD.decode(r.expose()).unwrap()).unwrap();
        assert_eq!(
            raw,
            "n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
        );
        assert_eq!(gs2_escape("a,b=c"), "a=2Cb=3Dc");
    }

    #[test]
    fn pkce_matches_rfc_7636_appendix_b() {
        let random: [u8; 32] = [
            116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186, 22, 212,
            37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121,
        ];
        let p = Pkce::new(&random);
        assert_eq!(
            p.verifier.expose(),
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        );
        assert_eq!(p.challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn query_strings_round_trip() {
        let flow = RefreshFlow {
            token_url: "https://t".into(),
            client_id: "id with space".into(),
            client_secret: None,
            authorize_url: None,
            scope: Some("a b/c".into()),
            authorize_params: vec![("prompt".into(), "consent".into())],
            timeout: Duration::from_secs(5),
        };
        let url = authorization_url(
            &flow,
            "https://a/auth",
            "http://127.0.0.1:5/",
            "st",
            "ch",
            "me@x",
        );
        let params = query_params(&url);
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("client_id"), Some("id with space"));
        assert_eq!(get("scope"), Some("a b/c"));
        assert_eq!(get("redirect_uri"), Some("http://127.0.0.1:5/"));
        assert_eq!(get("prompt"), Some("consent"));
        assert_eq!(get("login_hint"), Some("me@x"));
        assert_eq!(percent_decode("%zz"), None);
    }
}
