//! OAuth2 logins (XOAUTH2, OAUTHBEARER) against a private Dovecot that validates JSON Web Tokens
//! itself (its oauth2 passdb with a local HS256 key), with access tokens from a token command or
//! from idlewild's refresh flow. The token endpoint is a small HTTP server this test runs on the
//! loopback interface: no real provider (Google, Microsoft) can be reached from the test machine,
//! and none is needed to test the protocol.

mod common;
mod support;

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::{Env, stderr, stdout};
use sha2::Digest as _;
use support::dovecot::{Dovecot, DovecotOptions};
use support::imapctl::ImapCtl;
use support::keyring::SecretService;

const HMAC_KEY: &[u8] = b"idlewild-test-hmac-key-0123456789";
const CLIENT_SECRET: &str = "client-secret-3c9e";

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = sha2::Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    sha2::Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// A JWT for user `test` that Dovecot accepts until `valid_for` from now (negative: expired).
fn jwt(valid_for: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(
        format!(
            r#"{{"sub":"test","iat":{},"nbf":{},"exp":{}}}"#,
            now - 600,
            now - 600,
            now + valid_for
        )
        .as_bytes(),
    );
    let signing_input = format!("{header}.{payload}");
    let signature = URL_SAFE_NO_PAD.encode(hmac_sha256(HMAC_KEY, signing_input.as_bytes()));
    format!("{signing_input}.{signature}")
}

/// A Dovecot with XOAUTH2 and OAUTHBEARER (the stack notes' verified configuration), and an
/// Env around it.
fn oauth_env() -> (Env, tempfile::TempDir) {
    let keys = tempfile::tempdir().unwrap();
    let open = |p: &std::path::Path| {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap()
    };
    open(keys.path());
    // Dovecot looks the key up as shared/<azp>/<alg>/<kid>; the fs dict drops "shared/".
    let key_dir = keys.path().join("keys/default/HS256");
    std::fs::create_dir_all(&key_dir).unwrap();
    for dir in [
        keys.path().join("keys"),
        keys.path().join("keys/default"),
        key_dir.clone(),
    ] {
        open(&dir);
    }
    std::fs::write(key_dir.join("default"), STANDARD.encode(HMAC_KEY)).unwrap();
    let conf = keys.path().join("oauth2.conf.ext");
    std::fs::write(
        &conf,
        format!(
            "introspection_mode = local\nlocal_validation_key_dict = fs:posix:prefix={}/keys/\nusername_attribute = sub\nusername_format = %u\n",
            keys.path().display()
        ),
    )
    .unwrap();
    let dovecot = Dovecot::start_with(DovecotOptions {
        extra_config: vec![
            "auth_mechanisms = plain login xoauth2 oauthbearer".to_owned(),
            format!(
                "passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {}\n}}",
                conf.display()
            ),
        ],
        ..DovecotOptions::default()
    })
    .expect("dovecot");
    let ctl = ImapCtl::new(&dovecot);
    let dir = tempfile::tempdir().unwrap();
    let env = Env { dovecot, ctl, dir };
    (env, keys)
}

/// Writes the account with an `[accounts.test.remote.oauth2]` table holding `oauth2`.
fn write_oauth_config(env: &Env, oauth2: &str) {
    env.write_config("");
    let text = std::fs::read_to_string(env.config_path()).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("password = "))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(
        env.config_path(),
        format!("{text}\n[accounts.test.remote.oauth2]\n{oauth2}\n"),
    )
    .unwrap();
}

fn run(env: &Env, keyring: Option<&SecretService>, args: &[&str]) -> Output {
    let mut cmd = env.command(args);
    cmd.env("IDLEWILD_LOG", "trace");
    cmd.env_remove("DBUS_SESSION_BUS_ADDRESS");
    if let Some(k) = keyring {
        for (key, value) in k.env() {
            cmd.env(key, value);
        }
    }
    cmd.stdin(Stdio::null()).output().expect("run idlewild")
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        stdout(out),
        common::tail(&stderr(out), 40)
    )
}

fn assert_no_secret(outputs: &[&Output], secrets: &[&str]) {
    for out in outputs {
        let text = format!("{}{}", stdout(out), stderr(out));
        for secret in secrets {
            assert!(!text.contains(secret), "a secret is in the output:\n{text}");
        }
    }
}

type Form = HashMap<String, String>;
type Answer = Box<dyn Fn(&Form, usize) -> (u16, String) + Send + Sync>;

/// A token endpoint on 127.0.0.1: each POST's form is recorded and answered by `answer` (the
/// form and the request's number, from 0). Stopped and joined when dropped.
struct TokenServer {
    port: u16,
    requests: Arc<Mutex<Vec<Form>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TokenServer {
    fn start(answer: Answer) -> TokenServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopped) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let form = read_form(&stream);
                        let n = {
                            let mut all = seen.lock().unwrap();
                            all.push(form.clone());
                            all.len() - 1
                        };
                        let (status, body) = answer(&form, n);
                        let mut stream = stream;
                        let _ = write!(
                            stream,
                            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        TokenServer {
            port,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    fn requests(&self) -> Vec<Form> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_form(stream: &TcpStream) -> Form {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    idlewild::credentials::oauth2::query_params(&format!("?{}", String::from_utf8_lossy(&body)))
        .into_iter()
        .collect()
}

fn token_json(access: &str, refresh: Option<&str>) -> String {
    match refresh {
        Some(r) => format!(
            r#"{{"access_token":"{access}","token_type":"Bearer","expires_in":3600,"refresh_token":"{r}"}}"#
        ),
        None => format!(r#"{{"access_token":"{access}","token_type":"Bearer","expires_in":3600}}"#),
    }
}

#[test]
fn xoauth2_and_oauthbearer_with_a_token_command() {
    let (env, _keys) = oauth_env();
    env.ctl
        .append("INBOX", &support::corpus::message(1, 1), &[]);
    let token = jwt(3600);
    let token_file = env.dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let mut outputs = Vec::new();
    for mechanism in ["xoauth2", "oauthbearer"] {
        write_oauth_config(
            &env,
            &format!(
                "token_command = [\"cat\", \"{}\"]\nmechanism = \"{mechanism}\"",
                token_file.display()
            ),
        );
        let out = run(&env, None, &["password", "check", "test"]);
        assert!(out.status.success(), "{mechanism}: {}", show(&out));
        assert!(
            stdout(&out).contains("OAuth2, token from the command cat"),
            "{}",
            show(&out)
        );
        outputs.push(out);
    }
    // Without a mechanism: OAUTHBEARER, which Dovecot offers; a sync works.
    write_oauth_config(
        &env,
        &format!("token_command = [\"cat\", \"{}\"]", token_file.display()),
    );
    let out = run(&env, None, &["sync"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stderr(&out).contains("AUTHENTICATE OAUTHBEARER <credentials>"),
        "{}",
        show(&out)
    );
    assert_eq!(env.local_files("INBOX").len(), 1);
    outputs.push(out);

    // A token the server does not accept: refused, and the token is not shown.
    let bad = jwt(-3600);
    std::fs::write(&token_file, format!("{bad}\n")).unwrap();
    for mechanism in ["xoauth2", "oauthbearer"] {
        write_oauth_config(
            &env,
            &format!(
                "token_command = [\"cat\", \"{}\"]\nmechanism = \"{mechanism}\"",
                token_file.display()
            ),
        );
        let out = run(&env, None, &["password", "check", "test"]);
        assert_eq!(out.status.code(), Some(1), "{}", show(&out));
        assert!(
            stderr(&out).contains("login to 127.0.0.1 as test was refused"),
            "{}",
            show(&out)
        );
        outputs.push(out);
    }
    let all: Vec<&Output> = outputs.iter().collect();
    assert_no_secret(&all, &[&token, &bad, &token[token.len() - 20..]]);
}

#[test]
fn the_refresh_flow_refreshes_a_refused_token_once_and_keeps_a_rotated_refresh_token() {
    let (env, _keys) = oauth_env();
    let keyring = SecretService::start();
    keyring.store("idlewild-oauth2", "test", "refresh-token-one-7a1");
    let (expired, good) = (jwt(-600), jwt(3600));
    let (e, g) = (expired.clone(), good.clone());
    // The first answer is a token the server refuses although it claims an hour of validity
    // (revoked early): idlewild must refresh once and log in with the second.
    let server = TokenServer::start(Box::new(move |_, n| match n {
        0 => (200, token_json(&e, None)),
        _ => (200, token_json(&g, Some("refresh-token-two-9b2"))),
    }));
    write_oauth_config(
        &env,
        &format!(
            "token_url = \"{}\"\nclient_id = \"idlewild-test\"\nclient_secret = \"{CLIENT_SECRET}\"",
            server.url()
        ),
    );
    let out = run(&env, Some(&keyring), &["password", "check", "test"]);
    assert!(out.status.success(), "{}", show(&out));
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    for r in &requests {
        assert_eq!(
            r.get("grant_type").map(String::as_str),
            Some("refresh_token")
        );
        assert_eq!(
            r.get("refresh_token").map(String::as_str),
            Some("refresh-token-one-7a1")
        );
        assert_eq!(
            r.get("client_id").map(String::as_str),
            Some("idlewild-test")
        );
        assert_eq!(
            r.get("client_secret").map(String::as_str),
            Some(CLIENT_SECRET)
        );
    }
    // The provider rotated the refresh token: the new one is in the keyring.
    assert_eq!(
        keyring.lookup("idlewild-oauth2", "test").as_deref(),
        Some("refresh-token-two-9b2")
    );
    assert_no_secret(
        &[&out],
        &[
            &expired,
            &good,
            "refresh-token-one-7a1",
            "refresh-token-two-9b2",
            CLIENT_SECRET,
        ],
    );
}

#[test]
fn a_rejected_refresh_and_a_missing_refresh_token_are_reported() {
    let (env, _keys) = oauth_env();
    let keyring = SecretService::start();
    let server = TokenServer::start(Box::new(|_, _| {
        (
            400,
            r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#
                .to_owned(),
        )
    }));
    write_oauth_config(
        &env,
        &format!(
            "token_url = \"{}\"\nclient_id = \"idlewild-test\"",
            server.url()
        ),
    );
    let missing = run(&env, Some(&keyring), &["sync"]);
    assert_eq!(missing.status.code(), Some(1), "{}", show(&missing));
    assert!(
        stderr(&missing).contains(
            "no OAuth2 refresh token in the keyring for account test: run `idlewild oauth2 authorize test`"
        ),
        "{}",
        show(&missing)
    );
    assert!(server.requests().is_empty());

    keyring.store("idlewild-oauth2", "test", "refresh-token-revoked-4d4");
    let out = run(&env, Some(&keyring), &["sync"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let want = format!(
        "the OAuth2 token endpoint {} refused the refresh token of account test (HTTP 400, invalid_grant: Token has been expired or revoked.): run `idlewild oauth2 authorize test`",
        server.url()
    );
    assert!(stderr(&out).contains(&want), "{}", show(&out));
    assert_eq!(
        server.requests().len(),
        1,
        "a rejected refresh is not retried at once"
    );
    assert!(!env.maildir().exists());
    assert_no_secret(&[&missing, &out], &["refresh-token-revoked-4d4"]);
}

#[test]
fn oauth2_authorize_runs_the_code_flow_with_pkce_and_stores_the_refresh_token() {
    let (env, _keys) = oauth_env();
    let keyring = SecretService::start();
    let good = jwt(3600);
    let challenge: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let expected = challenge.clone();
    let g = good.clone();
    let server = TokenServer::start(Box::new(move |form, _| {
        match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") => {
                // RFC 7636 §4.6: the verifier must hash to the challenge of the authorization URL.
                let verifier = form.get("code_verifier").cloned().unwrap_or_default();
                let hashed = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
                let ok = form.get("code").map(String::as_str) == Some("code-from-provider-1f")
                    && expected.lock().unwrap().as_deref() == Some(hashed.as_str());
                if ok {
                    (200, token_json(&g, Some("refresh-from-authorize-8c8")))
                } else {
                    (400, r#"{"error":"invalid_grant"}"#.to_owned())
                }
            }
            _ => (200, token_json(&g, None)),
        }
    }));
    write_oauth_config(
        &env,
        &format!(
            "token_url = \"{}\"\nauthorize_url = \"http://127.0.0.1:{}/authorize\"\nclient_id = \"idlewild-test\"\nscope = \"imap offline_access\"",
            server.url(),
            server.port
        ),
    );
    let mut cmd = env.command(&["oauth2", "authorize", "test", "--timeout", "30"]);
    cmd.env("IDLEWILD_LOG", "trace")
        .env_remove("DBUS_SESSION_BUS_ADDRESS");
    for (k, v) in keyring.env() {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Play the browser: read the URL, check it, and come back to the redirect address as the
    // provider would after the user allowed access.
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let params: HashMap<String, String> = idlewild::credentials::oauth2::query_params(line.trim())
        .into_iter()
        .collect();
    assert!(
        line.starts_with(&format!("http://127.0.0.1:{}/authorize?", server.port)),
        "{line}"
    );
    assert_eq!(params["response_type"], "code");
    assert_eq!(params["client_id"], "idlewild-test");
    assert_eq!(params["scope"], "imap offline_access");
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["login_hint"], "test");
    *challenge.lock().unwrap() = Some(params["code_challenge"].clone());
    let redirect = &params["redirect_uri"];
    let port: u16 = redirect
        .trim_start_matches("http://localhost:")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    // A stray request with a wrong state is refused and the wait goes on.
    let stray = http_get(port, "/?code=forged&state=wrong");
    assert!(stray.starts_with("HTTP/1.1 400"), "{stray}");
    let answer = http_get(
        port,
        &format!("/?code=code-from-provider-1f&state={}", params["state"]),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        keyring.lookup("idlewild-oauth2", "test").as_deref(),
        Some("refresh-from-authorize-8c8")
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["redirect_uri"], *redirect);

    // And the stored refresh token logs in.
    let check = run(&env, Some(&keyring), &["password", "check", "test"]);
    assert!(check.status.success(), "{}", show(&check));
    assert_no_secret(
        &[&out, &check],
        &[&good, "refresh-from-authorize-8c8", "code-from-provider-1f"],
    );
}

fn http_get(port: u16, target: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text
}
