//! Writes a [`Converted`] configuration as TOML, notes as comments above what they concern.
//! Values are encoded by the `toml` crate; the text is parsed back before it is returned, so a
//! mistake here is an error, never a file idlewild cannot read.

use super::{Account, Auth, Converted, Imap, Layout, Local, MaxSize, Note, NoteKind, Table, Tls};

const WIDTH: usize = 99;

/// The configuration file's text.
pub fn render(c: &Converted) -> Result<String, String> {
    let mut out = Out::default();
    let tool = c.tool.map(|t| t.name()).unwrap_or("another program");
    out.comment(&format!(
        "idlewild configuration translated from {tool}'s {} by `idlewild import`. Read the warning and TODO comments, then check it with `idlewild check-config` (keys: idlewild.toml(5)).",
        c.source
    ));
    out.blank();
    for n in &c.notes {
        out.note(n);
    }
    if let Some(m) = &c.mbnames {
        out.blank();
        out.header(&["general", "mbnames"]);
        out.opt_str("path", m.path.as_deref());
        out.opt_str("header", m.header.as_deref());
        out.opt_str("item", m.item.as_deref());
        out.opt_str("separator", m.separator.as_deref());
        out.opt_str("footer", m.footer.as_deref());
        if let Some(e) = m.enabled {
            out.value("enabled", toml::Value::Boolean(e));
        }
    }
    for a in &c.accounts {
        account(&mut out, a);
    }
    let text = out.text;
    text.parse::<toml::Table>()
        .map_err(|e| format!("the translated configuration is not valid TOML: {e}"))?;
    Ok(text)
}

#[derive(Default)]
struct Out {
    text: String,
}

impl Out {
    fn line(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
    }

    fn blank(&mut self) {
        if !self.text.is_empty() && !self.text.ends_with("\n\n") {
            self.text.push('\n');
        }
    }

    /// A comment, wrapped; control characters are written as escapes, which TOML comments
    /// cannot hold.
    fn comment_with(&mut self, first: &str, rest: &str, text: &str) {
        let clean = printable(text);
        let mut line = format!("{first} ");
        let mut empty = true;
        for word in clean.split(' ') {
            if !empty && line.chars().count() + 1 + word.chars().count() > WIDTH {
                self.line(line.trim_end());
                line = format!("{rest} ");
                empty = true;
            }
            if !empty {
                line.push(' ');
            }
            line.push_str(word);
            empty = false;
        }
        self.line(line.trim_end());
    }

    fn comment(&mut self, text: &str) {
        self.comment_with("#", "#", text);
    }

    fn note(&mut self, n: &Note) {
        let at = n.line.map(|l| format!(" (line {l})")).unwrap_or_default();
        match n.kind {
            NoteKind::Info => self.comment_with("#", "#", &n.text),
            NoteKind::Warning => self.comment_with(&format!("# warning{at}:"), "#   ", &n.text),
            NoteKind::Todo => {
                self.comment_with(&format!("# TODO{at}: not translated:"), "#   ", &n.text);
                if let Some(original) = &n.original {
                    for l in original.lines() {
                        self.line(&format!("#     {}", printable(l)));
                    }
                }
            }
        }
    }

    fn header(&mut self, path: &[&str]) {
        let keys: Vec<String> = path.iter().map(|k| key(k)).collect();
        self.line(&format!("[{}]", keys.join(".")));
    }

    fn value(&mut self, k: &str, v: toml::Value) {
        self.line(&format!("{} = {}", key(k), encode(&v)));
    }

    fn str(&mut self, k: &str, v: &str) {
        self.value(k, toml::Value::String(v.to_owned()));
    }

    fn opt_str(&mut self, k: &str, v: Option<&str>) {
        if let Some(v) = v {
            self.str(k, v);
        }
    }
}

fn strings(items: &[String]) -> toml::Value {
    toml::Value::Array(items.iter().cloned().map(toml::Value::String).collect())
}

fn encode(v: &toml::Value) -> String {
    match v {
        toml::Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(encode).collect();
            format!("[{}]", parts.join(", "))
        }
        other => other.to_string(),
    }
}

fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                format!("\\u{{{:x}}}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A key, bare when TOML allows, else quoted.
fn key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_owned()
    } else {
        toml::Value::String(k.to_owned()).to_string()
    }
}

/// Notes of `table`: those about `k` (or, with `None`, those about no key or a key not written).
fn notes_for<'a>(
    a: &'a Account,
    table: Table,
    k: Option<&str>,
    written: &[&str],
) -> impl Iterator<Item = &'a Note> {
    let written: Vec<String> = written.iter().map(|s| s.to_string()).collect();
    let k = k.map(str::to_owned);
    a.notes.iter().filter(move |n| {
        n.table == table
            && match (&k, n.key) {
                (Some(k), Some(nk)) => k == nk,
                (None, None) => true,
                (None, Some(nk)) => !written.iter().any(|w| w == nk),
                (Some(_), None) => false,
            }
    })
}

/// One table's keys, each with its notes above it.
struct TableOut<'a> {
    path: Vec<String>,
    table: Table,
    keys: Vec<(&'static str, Vec<String>)>,
    account: &'a Account,
}

impl<'a> TableOut<'a> {
    fn new(account: &'a Account, table: Table, path: &[&str]) -> Self {
        TableOut {
            path: path.iter().map(|s| s.to_string()).collect(),
            table,
            keys: Vec::new(),
            account,
        }
    }

    fn set(&mut self, k: &'static str, line: String) {
        self.keys.push((k, vec![line]));
    }

    fn set_value(&mut self, k: &'static str, v: toml::Value) {
        self.set(k, format!("{} = {}", key(k), encode(&v)));
    }

    fn set_str(&mut self, k: &'static str, v: &str) {
        self.set_value(k, toml::Value::String(v.to_owned()));
    }

    /// Under the key `k`'s notes, written as the dotted key `line_key`.
    fn set_dotted(&mut self, k: &'static str, line_key: &str, v: toml::Value) {
        let line = format!("{line_key} = {}", encode(&v));
        match self.keys.iter_mut().find(|(key, _)| *key == k) {
            Some((_, lines)) => lines.push(line),
            None => self.keys.push((k, vec![line])),
        }
    }

    fn write(self, out: &mut Out, header_always: bool) {
        let written: Vec<&str> = self.keys.iter().map(|(k, _)| *k).collect();
        let loose: Vec<&Note> = notes_for(self.account, self.table, None, &written).collect();
        if self.keys.is_empty() && !header_always {
            if !loose.is_empty() {
                out.blank();
                for n in loose {
                    out.note(n);
                }
            }
            return;
        }
        out.blank();
        let path: Vec<&str> = self.path.iter().map(String::as_str).collect();
        out.header(&path);
        for n in loose {
            out.note(n);
        }
        for (k, lines) in &self.keys {
            for n in notes_for(self.account, self.table, Some(k), &written) {
                out.note(n);
            }
            for l in lines {
                out.line(l);
            }
        }
    }
}

fn account(out: &mut Out, a: &Account) {
    out.blank();
    out.comment(&format!("---- account {} ({}) ----", a.name, a.origin));
    let name = a.name.as_str();

    let mut top = TableOut::new(a, Table::Account, &["accounts", name]);
    if let Some(c) = a.create {
        top.set_str("create", c.name());
    }
    if let Some(r) = a.remove {
        top.set_str("remove", r.name());
    }
    if let Some(d) = a.sync_deletes {
        top.set_value("sync_deletes", toml::Value::Boolean(d));
    }
    if let Some(age) = a.max_age {
        top.set_value("max_age", toml::Value::Integer(i64::from(age)));
    }
    match &a.max_size {
        Some(MaxSize::Bytes(b)) => top.set_value(
            "max_size",
            toml::Value::Integer(i64::try_from(*b).unwrap_or(i64::MAX)),
        ),
        Some(MaxSize::Text(t)) => top.set_str("max_size", t),
        None => {}
    }
    if let Some(idle) = &a.idle {
        top.set_value("idle", strings(idle));
    }
    if let Some(i) = a.interval {
        top.set_value(
            "interval",
            toml::Value::Integer(i64::try_from(i).unwrap_or(i64::MAX)),
        );
    }
    if let Some(m) = a.mbnames {
        top.set_value("mbnames", toml::Value::Boolean(m));
    }
    top.write(out, false);

    let mut remote = TableOut::new(a, Table::Remote, &["accounts", name, "remote"]);
    imap(&mut remote, &a.remote);
    remote.write(out, true);

    let mut local = TableOut::new(a, Table::Local, &["accounts", name, "local"]);
    match &a.local {
        Local::Maildir {
            path,
            layout,
            readonly,
        } => {
            local.set_str("type", "maildir");
            local.set_str("path", path);
            local.set_str(
                "layout",
                match layout {
                    Layout::Nested => "nested",
                    Layout::MaildirPlusPlus => "maildir++",
                },
            );
            if *readonly {
                local.set_value("readonly", toml::Value::Boolean(true));
            }
        }
        Local::Imap(i) => imap(&mut local, i),
    }
    local.write(out, true);

    let f = &a.folders;
    let mut folders = TableOut::new(a, Table::Folders, &["accounts", name, "folders"]);
    if !f.include.is_empty() {
        folders.set_value("include", strings(&f.include));
    }
    if !f.exclude.is_empty() {
        folders.set_value("exclude", strings(&f.exclude));
    }
    if let Some(p) = &f.remote_prefix_strip {
        folders.set_str("remote_prefix_strip", p);
    }
    if !f.rename.is_empty() {
        let mut lines = vec!["rename = [".to_owned()];
        for r in &f.rename {
            let mut parts = vec![
                format!("remote = {}", toml::Value::String(r.remote.clone())),
                format!("local = {}", toml::Value::String(r.local.clone())),
            ];
            if let Some(m) = &r.local_match {
                parts.push(format!("local_match = {}", toml::Value::String(m.clone())));
            }
            if let Some(m) = &r.remote_replace {
                parts.push(format!(
                    "remote_replace = {}",
                    toml::Value::String(m.clone())
                ));
            }
            lines.push(format!("    {{ {} }},", parts.join(", ")));
        }
        lines.push("]".to_owned());
        folders.keys.push(("rename", lines));
    }
    if let Some(p) = &f.preset {
        folders.set_str("preset", p);
    }
    folders.write(out, false);

    let mut hooks = TableOut::new(a, Table::Hooks, &["accounts", name, "hooks"]);
    if let Some(h) = &a.presync {
        hooks.set_value("presync", strings(h));
    }
    if let Some(h) = &a.postsync {
        hooks.set_value("postsync", strings(h));
    }
    hooks.write(out, false);
}

fn imap(t: &mut TableOut<'_>, i: &Imap) {
    t.set_str("type", "imap");
    t.set_str("host", &i.host);
    if let Some(p) = i.port {
        t.set_value("port", toml::Value::Integer(i64::from(p)));
    }
    t.set_str(
        "tls",
        match i.tls {
            Tls::Implicit => "implicit",
            Tls::Starttls => "starttls",
            Tls::None => "none",
        },
    );
    t.set_str("user", &i.user);
    match &i.auth {
        Auth::Keyring => t.set_dotted("password", "password.keyring", toml::Value::Boolean(true)),
        Auth::Plain(p) => t.set_str("password", p),
        Auth::Command(argv) => t.set_dotted("password", "password.command", strings(argv)),
        Auth::OAuth2(o) => {
            let mut any = false;
            let mut put = |k: &str, v: Option<toml::Value>| {
                if let Some(v) = v {
                    t.set_dotted("password", &format!("oauth2.{k}"), v);
                    any = true;
                }
            };
            let s = |v: &Option<String>| v.clone().map(toml::Value::String);
            put("provider", s(&o.provider));
            put("token_url", s(&o.token_url));
            put("client_id", s(&o.client_id));
            put("client_secret", s(&o.client_secret));
            put("token_command", o.token_command.as_deref().map(strings));
            put("mechanism", s(&o.mechanism));
            if !any {
                t.set_dotted(
                    "password",
                    "oauth2.provider",
                    toml::Value::String(String::new()),
                );
            }
        }
    }
    if let Some(ca) = &i.ca_file {
        t.set_str("ca_file", ca);
    }
    if let Some(fp) = &i.cert_fingerprint {
        t.set_str("cert_fingerprint", fp);
    }
    if let Some(s) = i.timeout {
        t.set_value(
            "timeout",
            toml::Value::Integer(i64::try_from(s).unwrap_or(i64::MAX)),
        );
    }
    if i.readonly {
        t.set_value("readonly", toml::Value::Boolean(true));
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Folders, Imap, Tool, folders::Rename};
    use super::*;

    fn sample() -> Converted {
        let mut a = Account::new(
            "my.acct".into(),
            "test".into(),
            Imap {
                user: "me\"quoted\\".into(),
                auth: Auth::Plain("pä\"ss".into()),
                ..Imap::new("imap.example.org".into())
            },
            Local::Maildir {
                path: "~/Mail/x-idlewild".into(),
                layout: Layout::Nested,
                readonly: false,
            },
        );
        a.folders = Folders {
            include: vec!["INBOX".into(), "[Gmail]/Sent Mail".into()],
            rename: vec![Rename::prefix("INBOX/", "")],
            ..Folders::default()
        };
        a.warn(
            Table::Remote,
            Some("password"),
            "a password\u{7} in the file",
        );
        a.todo(
            Table::Folders,
            "nametrans",
            3,
            "nametrans = lambda f: f.upper()",
        );
        a.sync_deletes = Some(false);
        Converted {
            tool: Some(Tool::OfflineImap),
            source: "~/.offlineimaprc".into(),
            accounts: vec![a],
            ..Converted::default()
        }
    }

    #[test]
    fn the_output_is_toml_with_the_values_and_notes_in_place() {
        let text = render(&sample()).unwrap();
        let doc: toml::Table = text.parse().unwrap();
        let acct = &doc["accounts"]["my.acct"];
        assert_eq!(acct["remote"]["user"].as_str(), Some("me\"quoted\\"));
        assert_eq!(acct["remote"]["password"].as_str(), Some("pä\"ss"));
        assert_eq!(acct["sync_deletes"].as_bool(), Some(false));
        assert_eq!(
            acct["folders"]["rename"][0]["remote"].as_str(),
            Some("^INBOX/(.*)$")
        );
        assert!(text.contains("[accounts.\"my.acct\".remote]"), "{text}");
        let warning = text
            .find("# warning: a password\\u{7} in the file")
            .expect(&text);
        assert!(warning < text.find("password = ").unwrap());
        assert!(
            text.contains(
                "# TODO (line 3): not translated: nametrans\n#     nametrans = lambda f: f.upper()"
            ),
            "{text}"
        );
    }
}
