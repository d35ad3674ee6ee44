//! A private, throw-away Dovecot IMAP server for integration tests.
//!
//! Every [`Dovecot`] lives entirely in its own temporary directory (config,
//! sockets, state, log, certificate, mail) and listens on two free loopback
//! ports, so tests can run in parallel and never touch a system instance.
//! Dropping the value stops the server and deletes the directory, also when
//! the test panics.
//!
//! Set `IDLEWILD_KEEP_DOVECOT=1` to keep the directory after the test for
//! post-mortem inspection; its path is printed on stderr.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

pub const HOST: &str = "127.0.0.1";
pub const TEST_USER: &str = "test";
pub const TEST_PASSWORD: &str = "test-password";

/// Dovecot refuses to run mail processes as UID 0, so under root the mail
/// belongs to this unprivileged system account (created on first use).
pub const MAIL_OS_USER: &str = "idlewild-test";

const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Free ports are picked by binding port 0 and releasing it, so a parallel
/// test may grab the same port before Dovecot binds it; then we simply retry.
const START_ATTEMPTS: usize = 8;

static INSTANCE_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Knobs for [`Dovecot::start_with`].
#[derive(Debug, Clone, Default)]
pub struct DovecotOptions {
    /// Appended verbatim to the generated `dovecot.conf`. Later settings win,
    /// and filter sections such as `protocol imap { ... }` may be repeated.
    pub extra_config: Vec<String>,
    /// Users created in addition to `test` / `test-password`.
    pub extra_users: Vec<(String, String)>,
}

/// The OS account that owns the mail and runs the mail processes.
#[derive(Debug, Clone)]
struct MailOwner {
    uid: u32,
    gid: u32,
    user: String,
    group: String,
    /// Whether we are root, i.e. Dovecot may chroot and switch users.
    privileged: bool,
}

pub struct Dovecot {
    /// `None` only while dropping.
    tmp: Option<tempfile::TempDir>,
    dir: PathBuf,
    port: u16,
    tls_port: u16,
    instance: String,
    owner: MailOwner,
    users: Vec<(String, String)>,
    extra_config: Vec<String>,
    cert_sha256: String,
    master: Option<Child>,
}

impl Dovecot {
    /// Starts a fresh server with the single user `test` / `test-password`.
    pub fn start() -> io::Result<Dovecot> {
        Self::start_with(DovecotOptions::default())
    }

    pub fn start_with(opts: DovecotOptions) -> io::Result<Dovecot> {
        let owner = mail_owner()?;
        let tmp = make_tempdir()?;
        let dir = tmp.path().to_path_buf();
        // Mail processes run as the mail owner and must reach their home
        // below this directory.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
        for sub in ["run", "state", "log", "ssl", "home"] {
            fs::create_dir(dir.join(sub))?;
        }
        let serial = INSTANCE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let instance = format!("idlewild-test-{}-{serial}", std::process::id());
        let cert_sha256 = make_certificate(&dir.join("ssl"))?;

        let mut users = vec![(TEST_USER.to_owned(), TEST_PASSWORD.to_owned())];
        users.extend(opts.extra_users);
        let mut dovecot = Dovecot {
            tmp: Some(tmp),
            dir,
            port: 0,
            tls_port: 0,
            instance,
            owner,
            users: Vec::new(),
            extra_config: opts.extra_config,
            cert_sha256,
            master: None,
        };
        for (user, password) in users {
            dovecot.add_user(&user, &password)?;
        }

        let mut last_err = None;
        for _ in 0..START_ATTEMPTS {
            let (port, tls_port) = free_port_pair()?;
            dovecot.port = port;
            dovecot.tls_port = tls_port;
            dovecot.write_config()?;
            match dovecot.launch() {
                Ok(()) => return Ok(dovecot),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("dovecot: no start attempt made")))
    }

    pub fn host(&self) -> &str {
        HOST
    }

    /// Plain IMAP port; STARTTLS is offered.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Implicit-TLS (IMAPS) port.
    pub fn tls_port(&self) -> u16 {
        self.tls_port
    }

    /// The self-signed server certificate (PEM), usable as the only trust
    /// anchor. SANs: `DNS:localhost`, `IP:127.0.0.1`; `CA:FALSE`, so that it
    /// passes webpki's ordinary checks (`tests/tls.rs` covers the `CA:TRUE`
    /// kind `openssl req -x509` makes by default).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ssl/cert.pem")
    }

    /// Lowercase hex SHA-256 of the certificate's DER encoding, no colons.
    pub fn cert_sha256(&self) -> String {
        self.cert_sha256.clone()
    }

    pub fn user(&self) -> &str {
        TEST_USER
    }

    pub fn password(&self) -> &str {
        TEST_PASSWORD
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("dovecot.conf")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("log/dovecot.log")
    }

    /// The server log so far (empty if unreadable); handy in assertion messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn home(&self, user: &str) -> PathBuf {
        self.dir.join("home").join(user)
    }

    /// Gives `path` and everything below it to the account the mail processes run as, so this
    /// server can read and change files another process (the test, as root) wrote.
    pub fn give_to_mail_owner(&self, path: &Path) -> io::Result<()> {
        chown_recursive(path, self.owner.uid, self.owner.gid)
    }

    /// The server-side Maildir++ root of `user` (folders are `.Name` below it,
    /// names in modified UTF-7, hierarchy separator `.` on disk).
    pub fn maildir(&self, user: &str) -> PathBuf {
        self.home(user).join("Maildir")
    }

    pub fn is_running(&mut self) -> bool {
        match self.master.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Master pid as written by Dovecot itself.
    pub fn master_pid(&self) -> Option<u32> {
        fs::read_to_string(self.pid_file())
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Adds a login. Works before and after start: passwd-file is re-read by
    /// Dovecot when it changes. Passwords must not contain ':' or newlines.
    pub fn add_user(&mut self, user: &str, password: &str) -> io::Result<()> {
        let bad = |s: &str| s.is_empty() || s.contains([':', '\n', '\r', '/']);
        if bad(user) || password.contains([':', '\n', '\r']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("dovecot: unusable user name or password for {user:?}"),
            ));
        }
        let home = self.home(user);
        fs::create_dir_all(home.join("Maildir"))?;
        chown_recursive(&home, self.owner.uid, self.owner.gid)?;
        self.users.retain(|(u, _)| u != user);
        self.users.push((user.to_owned(), password.to_owned()));
        self.write_users()?;
        if !self.is_running() {
            return Ok(());
        }
        // Dovecot looks at passwd-file at most once per second, so a login
        // right after the change could still be refused; wait until the
        // auth service knows the user.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if self.doveadm(&["user", user]).status.success() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "dovecot: auth service does not know the new user {user}"
                )));
            }
            sleep(Duration::from_millis(100));
        }
    }

    /// Runs `doveadm -c <our config> ARGS...`. Spawn failures are reported as
    /// exit status 127 with the error text on stderr, like a shell would.
    pub fn doveadm(&self, args: &[&str]) -> Output {
        let result = Command::new(find_program("doveadm", &["/usr/bin/doveadm"]))
            .arg("-c")
            .arg(self.config_path())
            .args(args)
            .stdin(Stdio::null())
            .output();
        result.unwrap_or_else(|e| Output {
            status: std::process::ExitStatus::from_raw(127 << 8),
            stdout: Vec::new(),
            stderr: format!("cannot run doveadm: {e}").into_bytes(),
        })
    }

    /// Like [`Dovecot::doveadm`], but non-zero exit becomes an error; returns stdout.
    pub fn doveadm_ok(&self, args: &[&str]) -> io::Result<String> {
        let out = self.doveadm(args);
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "doveadm {args:?} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout),
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Current UIDVALIDITY of `folder` (UTF-8 name, `/` separator) for `user`.
    pub fn uid_validity_of(&self, user: &str, folder: &str) -> io::Result<u32> {
        let out = self.doveadm_ok(&[
            "-f",
            "flow",
            "mailbox",
            "status",
            "-u",
            user,
            "uidvalidity",
            folder,
        ])?;
        // "flow" prints "<mailbox> uidvalidity=N"; the name may contain spaces.
        out.trim()
            .rsplit_once("uidvalidity=")
            .and_then(|(_, v)| v.parse().ok())
            .ok_or_else(|| io::Error::other(format!("doveadm: unexpected status output {out:?}")))
    }

    /// Gives `folder` of user `test` a new UIDVALIDITY (message UIDs are kept)
    /// and returns it. The server must be running.
    pub fn reset_uid_validity(&self, folder: &str) -> io::Result<u32> {
        self.reset_uid_validity_for(TEST_USER, folder)
    }

    pub fn reset_uid_validity_for(&self, user: &str, folder: &str) -> io::Result<u32> {
        let old = self.uid_validity_of(user, folder)?;
        // UIDVALIDITY 0 is invalid in IMAP.
        let new = old.checked_add(1).unwrap_or(1);
        let new_text = new.to_string();
        self.doveadm_ok(&[
            "mailbox",
            "update",
            "--uid-validity",
            &new_text,
            "-u",
            user,
            folder,
        ])?;
        let now = self.uid_validity_of(user, folder)?;
        if now != new {
            return Err(io::Error::other(format!(
                "dovecot: UIDVALIDITY of {folder:?} is {now} after update to {new}"
            )));
        }
        Ok(new)
    }

    /// Makes `folder` of user `test` forget its UIDs, like a server that
    /// lost its index: with Dovecot stopped, the folder's `dovecot-uidlist`
    /// and index files go, together with the mailbox list index (it caches
    /// UIDVALIDITY); then Dovecot starts again. The messages come back with
    /// UIDs 1..n under a new, larger UIDVALIDITY.
    pub fn renumber_uids(&mut self, folder: &str) -> io::Result<()> {
        let root = self.maildir(TEST_USER);
        let folder_dir = if folder.eq_ignore_ascii_case("INBOX") {
            root.clone()
        } else {
            // Maildir++ on disk: ".Parent.Child", names in modified UTF-7.
            root.join(format!(".{}", mutf7_encode(folder).replace('/', ".")))
        };
        if !folder_dir.join("cur").is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("dovecot: no Maildir folder at {}", folder_dir.display()),
            ));
        }
        self.stop()?;
        let doomed = |dir: &Path, keep: &dyn Fn(&str) -> bool| -> io::Result<()> {
            for entry in fs::read_dir(dir)? {
                let entry = entry?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if !keep(&name) && entry.file_type()?.is_file() {
                    fs::remove_file(entry.path())?;
                }
            }
            Ok(())
        };
        doomed(&folder_dir, &|n| {
            n != "dovecot-uidlist" && !n.starts_with("dovecot.index")
        })?;
        doomed(&root, &|n| !n.starts_with("dovecot.list.index"))?;
        self.restart()
    }

    /// Stops gracefully; data and ports are kept for [`Dovecot::restart`].
    /// Calling it on a stopped server is a no-op.
    pub fn stop(&mut self) -> io::Result<()> {
        let Some(mut child) = self.master.take() else {
            return Ok(());
        };
        let result = self.terminate(&mut child);
        let _ = fs::remove_file(self.pid_file());
        result
    }

    /// Simulates a crash: SIGKILLs the master and all its descendants, so
    /// open client connections break without a BYE. Data is kept.
    pub fn kill(&mut self) -> io::Result<()> {
        let Some(mut child) = self.master.take() else {
            return Ok(());
        };
        let pid = child.id();
        // A stopped master cannot fork, so the descendant list stays complete
        // until everything is dead.
        signal(pid, libc::SIGSTOP);
        let descendants = descendants_of(pid);
        signal(pid, libc::SIGKILL);
        for d in &descendants {
            signal(*d, libc::SIGKILL);
        }
        let result = child.wait().map(drop);
        // Login processes hold the listening sockets too; the port only goes
        // dark once they are really gone. They are no longer our children,
        // so they cannot be waited for, only watched.
        let deadline = Instant::now() + STOP_TIMEOUT;
        while descendants.iter().any(|&d| alive(d)) && Instant::now() < deadline {
            sleep(Duration::from_millis(5));
        }
        let _ = fs::remove_file(self.pid_file());
        result
    }

    /// Stops (if running) and starts again with the same ports, config and mail.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop()?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.launch() {
                // A client may hold the port briefly; nobody else should, as
                // it was ours a moment ago.
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                    sleep(Duration::from_millis(200));
                }
                other => return other,
            }
        }
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("run/master.pid")
    }

    fn terminate(&self, child: &mut Child) -> io::Result<()> {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        // The master runs in the foreground as our child, so the pid Dovecot
        // wrote must be the child's; anything else would be a stale file and
        // must not be signalled.
        let pid = child.id();
        if let Some(file_pid) = self.master_pid()
            && file_pid != pid
        {
            eprintln!("dovecot: pid file says {file_pid}, master is {pid}; signalling {pid}");
        }
        signal(pid, libc::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            sleep(Duration::from_millis(10));
        }
        eprintln!("dovecot: master {pid} ignored SIGTERM for {STOP_TIMEOUT:?}; sending SIGKILL");
        let descendants = descendants_of(pid);
        signal(pid, libc::SIGKILL);
        for d in descendants {
            signal(d, libc::SIGKILL);
        }
        child.wait().map(drop)
    }

    /// Spawns the master in the foreground and waits until it greets on the
    /// plain port. A port clash is reported as `ErrorKind::AddrInUse`.
    fn launch(&mut self) -> io::Result<()> {
        let _ = fs::remove_file(self.pid_file());
        let stderr_path = self.dir.join("log/master-stderr.log");
        let stderr = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_path)?;
        let log_len_before = fs::metadata(self.log_path()).map(|m| m.len()).unwrap_or(0);
        let stderr_len_before = fs::metadata(&stderr_path).map(|m| m.len()).unwrap_or(0);
        // Foreground mode keeps the master our child: we can reap it and it
        // shares our process group, so Ctrl-C on the test run stops it too.
        let child = Command::new(find_program("dovecot", &["/usr/sbin/dovecot"]))
            .arg("-F")
            .arg("-c")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(stderr.try_clone()?)
            .stderr(stderr)
            .spawn()?;
        let pid = child.id();
        self.master = Some(child);

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let exited = match self.master.as_mut() {
                Some(child) => child.try_wait()?,
                None => None,
            };
            if let Some(status) = exited {
                self.master = None;
                let log = tail_since(&self.log_path(), log_len_before)
                    + &tail_since(&stderr_path, stderr_len_before);
                let kind = if log.contains("Address already in use") {
                    io::ErrorKind::AddrInUse
                } else {
                    io::ErrorKind::Other
                };
                return Err(io::Error::new(
                    kind,
                    format!("dovecot exited during start ({status}):\n{log}"),
                ));
            }
            // Dovecot writes its pid file only after binding all listeners
            // (the TLS one included), so once it is ours, a greeting on the
            // port comes from us too; the unique greeting text double-checks.
            // Probing the TLS port with a bare connect would leave a login
            // process half set up, which stalls a quick stop() for 5 s.
            if self.master_pid() == Some(pid)
                && greeting(self.port).is_some_and(|g| g.contains(&self.instance))
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let log = tail_since(&self.log_path(), log_len_before);
                if let Some(mut child) = self.master.take() {
                    let _ = self.terminate(&mut child);
                }
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "dovecot did not greet on port {} in time:\n{log}",
                        self.port
                    ),
                ));
            }
            sleep(Duration::from_millis(10));
        }
    }

    fn write_users(&self) -> io::Result<()> {
        let mut text = String::new();
        for (user, password) in &self.users {
            let home = self.home(user);
            let _ = writeln!(
                text,
                "{user}:{{PLAIN}}{password}:{}:{}::{}::",
                self.owner.uid,
                self.owner.gid,
                home.display()
            );
        }
        // Replace atomically so a running auth process never reads half a file.
        let tmp = self.dir.join("users.tmp");
        fs::write(&tmp, text)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644))?;
        fs::rename(&tmp, self.dir.join("users"))
    }

    fn write_config(&self) -> io::Result<()> {
        let dir = self.dir.display();
        let owner = &self.owner;
        let dh = dh_params(&self.dir.join("ssl"))?;
        // Root: Dovecot's own accounts. Otherwise everything runs as us.
        let (internal_user, internal_group, login_user) = if owner.privileged {
            ("dovecot", "dovecot", "dovenull")
        } else {
            (
                owner.user.as_str(),
                owner.group.as_str(),
                owner.user.as_str(),
            )
        };
        let notify = if plugin_available("lib15_notify_plugin.so") {
            " notify"
        } else {
            ""
        };
        let mut conf = format!(
            r#"# Generated for one integration test; deleted with it.
instance_name = {instance}
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/log/dovecot.log
info_log_path = {dir}/log/dovecot.log
protocols = imap
listen = {HOST}
shutdown_clients = yes
# Statistics are of no use here; without them there are fewer processes to
# start and stop, and no socket the mail owner would lack access to.
stats_writer_socket_path =
login_greeting = Dovecot ready ({instance})

ssl = yes
ssl_cert = <{dir}/ssl/cert.pem
ssl_key = <{dir}/ssl/key.pem
ssl_dh = <{dh}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
# Failed logins are delayed 2 s by default; tests of wrong passwords would crawl.
auth_failure_delay = 0

default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = 1
first_valid_gid = 1

passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {dir}/users
}}

mail_location = maildir:~/Maildir
mailbox_list_index = yes
mail_max_userip_connections = 1000
mail_plugins = $mail_plugins{notify}

namespace inbox {{
  inbox = yes
  separator = /
  prefix =
  mailbox Drafts {{
    special_use = \Drafts
  }}
  mailbox Sent {{
    special_use = \Sent
  }}
  mailbox Trash {{
    special_use = \Trash
  }}
  mailbox Junk {{
    special_use = \Junk
  }}
  mailbox Archive {{
    special_use = \Archive
  }}
}}

service imap-login {{
  inet_listener imap {{
    address = {HOST}
    port = {port}
  }}
  inet_listener imaps {{
    address = {HOST}
    port = {tls_port}
    ssl = yes
  }}
}}
service imap {{
  process_limit = 1000
}}
# Otherwise one failed login makes later logins from 127.0.0.1 wait 2-15 s.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service submission-login {{
  inet_listener submission {{
    port = 0
  }}
}}
"#,
            instance = self.instance,
            dh = dh.display(),
            port = self.port,
            tls_port = self.tls_port,
        );
        if !owner.privileged {
            // Without root there is no chroot and no user switching.
            for service in [
                "anvil",
                "imap-login",
                "ipc",
                "old-stats",
                "aggregator",
                "director",
                "imap-urlauth-login",
                "pop3-login",
                "submission-login",
            ] {
                let _ = writeln!(conf, "service {service} {{\n  chroot =\n}}");
            }
        }
        for line in &self.extra_config {
            conf.push_str(line);
            conf.push('\n');
        }
        fs::write(self.config_path(), conf)
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("dovecot: stop failed: {e}");
        }
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("--- dovecot log (last {} lines) ---", tail.len());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
        let Some(tmp) = self.tmp.take() else { return };
        if std::env::var_os("IDLEWILD_KEEP_DOVECOT").is_some() {
            eprintln!("dovecot: keeping {}", tmp.keep().display());
        } else if let Err(e) = tmp.close() {
            eprintln!("dovecot: cannot remove {}: {e}", self.dir.display());
        }
    }
}

/// IMAP modified UTF-7 (RFC 3501 5.1.3), as Dovecot names folders on disk.
fn mutf7_encode(name: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";
    fn flush(out: &mut String, pending: &mut Vec<u16>) {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (k, &b)| n | u32::from(b) << (16 - 8 * k));
            for k in 0..=chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * k) & 63) as usize] as char);
            }
        }
        out.push('-');
        pending.clear();
    }
    let mut out = String::new();
    let mut pending = Vec::new();
    for ch in name.chars() {
        if (' '..='~').contains(&ch) {
            flush(&mut out, &mut pending);
            if ch == '&' {
                out.push_str("&-");
            } else {
                out.push(ch);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(ch.encode_utf16(&mut buf));
        }
    }
    flush(&mut out, &mut pending);
    out
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// The first line the server sends, if it is an IMAP `* OK` greeting.
fn greeting(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&loopback(port), Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut line = Vec::new();
    let mut buf = [0u8; 512];
    while !line.ends_with(b"\r\n") && line.len() < 4096 {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        line.extend_from_slice(&buf[..n]);
    }
    let greeting = String::from_utf8_lossy(&line).into_owned();
    // Wait for the login process to finish with us; one torn down mid-way
    // would hold up the next shutdown until Dovecot's 5 s kill timeout.
    if stream.write_all(b"x LOGOUT\r\n").is_ok() {
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    }
    greeting.starts_with("* OK").then_some(greeting)
}

fn free_port_pair() -> io::Result<(u16, u16)> {
    // Both are held at once so the pair is distinct.
    let a = TcpListener::bind(loopback(0))?;
    let b = TcpListener::bind(loopback(0))?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

fn make_tempdir() -> io::Result<tempfile::TempDir> {
    // Unix socket paths are limited to 108 bytes and Dovecot nests a few
    // levels below base_dir, so an unusually long TMPDIR is not usable.
    let base = std::env::temp_dir();
    let base = if base.as_os_str().len() > 40 {
        PathBuf::from("/tmp")
    } else {
        base
    };
    tempfile::Builder::new()
        .prefix("idlewild-dovecot-")
        .tempdir_in(base)
}

/// Creates a self-signed P-256 certificate and returns its SHA-256 (DER) in hex.
fn make_certificate(ssl_dir: &Path) -> io::Result<String> {
    let cert = ssl_dir.join("cert.pem");
    let key = ssl_dir.join("key.pem");
    run_checked(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "3650"])
            .args(["-subj", "/CN=localhost", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .args(["-addext", "keyUsage=critical,digitalSignature"])
            .args(["-addext", "extendedKeyUsage=serverAuth"]),
    )?;
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600))?;
    let out = run_checked(
        Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(&cert),
    )?;
    // "sha256 Fingerprint=AB:CD:..." (the prefix's case varies between versions)
    out.split_once('=')
        .map(|(_, hex)| hex.trim().replace(':', "").to_ascii_lowercase())
        .filter(|hex| hex.len() == 64)
        .ok_or_else(|| io::Error::other(format!("openssl: unexpected fingerprint output {out:?}")))
}

/// Debian ships DH parameters; elsewhere use the standard RFC 7919 group,
/// which needs no slow generation.
fn dh_params(ssl_dir: &Path) -> io::Result<PathBuf> {
    let system = PathBuf::from("/usr/share/dovecot/dh.pem");
    if system.is_file() {
        return Ok(system);
    }
    let own = ssl_dir.join("dh.pem");
    if !own.is_file() {
        run_checked(
            Command::new("openssl")
                .args(["genpkey", "-genparam", "-algorithm", "DH"])
                .args(["-pkeyopt", "group:ffdhe2048", "-out"])
                .arg(&own),
        )?;
    }
    Ok(own)
}

fn plugin_available(file: &str) -> bool {
    [
        "/usr/lib/dovecot/modules",
        "/usr/lib64/dovecot/modules",
        "/usr/local/lib/dovecot/modules",
        "/usr/lib/dovecot",
        "/usr/lib64/dovecot",
    ]
    .iter()
    .any(|dir| Path::new(dir).join(file).is_file())
}

fn mail_owner() -> io::Result<MailOwner> {
    // Looked up once per test binary: parallel tests need not all race to
    // create the OS user.
    static OWNER: OnceLock<Result<MailOwner, String>> = OnceLock::new();
    OWNER
        .get_or_init(|| lookup_mail_owner().map_err(|e| e.to_string()))
        .clone()
        .map_err(io::Error::other)
}

fn lookup_mail_owner() -> io::Result<MailOwner> {
    // SAFETY: geteuid cannot fail and has no preconditions.
    let privileged = unsafe { libc::geteuid() } == 0;
    let who: &[&str] = if privileged {
        ensure_os_user(MAIL_OS_USER)?;
        &[MAIL_OS_USER]
    } else {
        &[]
    };
    let id = |flag: &str| {
        run_checked(Command::new("id").arg(flag).args(who)).map(|s| s.trim().to_owned())
    };
    let number = |flag: &str| {
        id(flag)?
            .parse::<u32>()
            .map_err(|e| io::Error::other(format!("id {flag}: {e}")))
    };
    Ok(MailOwner {
        uid: number("-u")?,
        gid: number("-g")?,
        user: id("-un")?,
        group: id("-gn")?,
        privileged,
    })
}

fn ensure_os_user(name: &str) -> io::Result<()> {
    let exists = || {
        Command::new("id")
            .arg(name)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let mut last = String::new();
    for _ in 0..50 {
        if exists() {
            return Ok(());
        }
        // Parallel tests race here: useradd then fails with "already exists"
        // or cannot lock /etc/passwd, and the next round sees the user.
        let out = Command::new(find_program(
            "useradd",
            &["/usr/sbin/useradd", "/sbin/useradd"],
        ))
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ])
        .stdin(Stdio::null())
        .output()?;
        if !out.status.success() {
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            sleep(Duration::from_millis(100));
        }
    }
    Err(io::Error::other(format!(
        "cannot create OS user {name}: {last}"
    )))
}

fn chown_recursive(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if fs::symlink_metadata(path)?.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_recursive(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Pids of all living descendants of `pid`, found via /proc.
fn descendants_of(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // The command name may contain spaces and parentheses; fields
            // after the last ')' are "state ppid ...".
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parents.push((child, ppid));
            }
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// Whether `pid` still runs; a zombie counts as gone (its files are closed).
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

fn signal(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // Never 0 or negative: those would address whole process groups.
    if pid > 0 {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

fn find_program(name: &str, fallbacks: &[&str]) -> PathBuf {
    // Non-root PATHs often lack /usr/sbin, where `dovecot` lives.
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    on_path
        .or_else(|| fallbacks.iter().map(PathBuf::from).find(|p| p.is_file()))
        .unwrap_or_else(|| PathBuf::from(name))
}

fn run_checked(cmd: &mut Command) -> io::Result<String> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What was appended to `path` after byte `from` (at most the last 8 KiB).
fn tail_since(path: &Path, from: u64) -> String {
    let Ok(bytes) = fs::read(path) else {
        return String::new();
    };
    let start = usize::try_from(from).unwrap_or(0).min(bytes.len());
    let start = start.max(bytes.len().saturating_sub(8192));
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}
