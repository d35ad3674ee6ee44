//! An INI reader with the semantics of Python's `configparser.ConfigParser`, which OfflineIMAP
//! uses: `[section]` headers, `key = value` or `key: value`, keys case-insensitive, values
//! continued on more-indented lines, full-line `#`/`;` comments only, a `[DEFAULT]` section
//! whose keys every section inherits, duplicates refused, and `%(key)s` / `%%` interpolation
//! when a value is read.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key as written, for messages; lookups use the lowercase form.
    pub key: String,
    /// The value with continuation lines joined by `\n`, before interpolation.
    pub raw: String,
    /// Line of the key (1-based).
    pub line: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Section {
    pub name: String,
    pub line: usize,
    entries: BTreeMap<String, Entry>,
}

impl Section {
    /// Keys in file order.
    pub fn keys(&self) -> Vec<&Entry> {
        let mut all: Vec<&Entry> = self.entries.values().collect();
        all.sort_by_key(|e| e.line);
        all
    }
}

#[derive(Debug, Clone, Default)]
pub struct Ini {
    sections: Vec<Section>,
    defaults: Section,
}

/// A mistake at a line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IniError {
    pub line: usize,
    pub message: String,
}

fn err(line: usize, message: impl Into<String>) -> IniError {
    IniError {
        line,
        message: message.into(),
    }
}

pub fn parse(text: &str) -> Result<Ini, IniError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut ini = Ini::default();
    // (section index or None for DEFAULT, key, indentation of the key line)
    let mut current: Option<Option<usize>> = None;
    let mut open_key: Option<(String, usize)> = None;
    let mut blank_lines = 0usize;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim();
        let indent = line.len() - line.trim_start().len();
        if trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if trimmed.is_empty() {
            if open_key.is_some() {
                blank_lines += 1;
            }
            continue;
        }
        if let (Some((key, key_indent)), Some(section)) = (&open_key, current)
            && indent > *key_indent
        {
            let entry = ini
                .section_mut(section)
                .entries
                .get_mut(key)
                .ok_or_else(|| err(number, "a continuation line without a key"))?;
            for _ in 0..blank_lines {
                entry.raw.push('\n');
            }
            entry.raw.push('\n');
            entry.raw.push_str(trimmed);
            blank_lines = 0;
            continue;
        }
        blank_lines = 0;
        open_key = None;
        if trimmed.starts_with('[') {
            let Some(end) = trimmed.rfind(']').filter(|end| *end > 1) else {
                return Err(err(
                    number,
                    format!("\"{trimmed}\" is not a section header"),
                ));
            };
            let name = &trimmed[1..end];
            if name == "DEFAULT" {
                current = Some(None);
                continue;
            }
            if ini.sections.iter().any(|s| s.name == name) {
                return Err(err(
                    number,
                    format!("the section [{name}] appears a second time"),
                ));
            }
            ini.sections.push(Section {
                name: name.to_owned(),
                line: number,
                entries: BTreeMap::new(),
            });
            current = Some(Some(ini.sections.len() - 1));
            continue;
        }
        let Some(section) = current else {
            return Err(err(
                number,
                "a key before the first [section] header".to_string(),
            ));
        };
        let Some(split) = trimmed.find(['=', ':']) else {
            return Err(err(
                number,
                format!("\"{trimmed}\" is neither a [section] nor a key = value line"),
            ));
        };
        let key = trimmed[..split].trim();
        if key.is_empty() {
            return Err(err(number, "a value without a key"));
        }
        let lower = key.to_lowercase();
        let value = trimmed[split + 1..].trim();
        let target = ini.section_mut(section);
        if target.entries.contains_key(&lower) {
            return Err(err(
                number,
                format!(
                    "the key \"{key}\" appears a second time in [{}]",
                    if target.name.is_empty() {
                        "DEFAULT"
                    } else {
                        &target.name
                    }
                ),
            ));
        }
        target.entries.insert(
            lower.clone(),
            Entry {
                key: key.to_owned(),
                raw: value.to_owned(),
                line: number,
            },
        );
        open_key = Some((lower, indent));
    }
    Ok(ini)
}

impl Ini {
    fn section_mut(&mut self, index: Option<usize>) -> &mut Section {
        match index {
            Some(i) => &mut self.sections[i],
            None => &mut self.defaults,
        }
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// The entry for `key` in `section`, or inherited from `[DEFAULT]`.
    pub fn entry(&self, section: &str, key: &str) -> Option<&Entry> {
        let key = key.to_lowercase();
        self.section(section)
            .and_then(|s| s.entries.get(&key))
            .or_else(|| self.defaults.entries.get(&key))
    }

    /// The value as configparser's `get` returns it: interpolated.
    pub fn get(&self, section: &str, key: &str) -> Result<Option<(String, usize)>, IniError> {
        match self.entry(section, key) {
            None => Ok(None),
            Some(e) => self
                .interpolate(section, &e.raw, e.line, 0)
                .map(|v| Some((v, e.line))),
        }
    }

    /// The value as written, without interpolation (configparser's `raw=True`).
    pub fn get_raw(&self, section: &str, key: &str) -> Option<(String, usize)> {
        self.entry(section, key).map(|e| (e.raw.clone(), e.line))
    }

    fn interpolate(
        &self,
        section: &str,
        value: &str,
        line: usize,
        depth: usize,
    ) -> Result<String, IniError> {
        // configparser's MAX_INTERPOLATION_DEPTH.
        if depth > 10 {
            return Err(err(
                line,
                "the %(...)s references go more than 10 levels deep (a loop?)",
            ));
        }
        let mut out = String::new();
        let mut rest = value;
        while let Some(i) = rest.find('%') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(r) = after.strip_prefix('%') {
                out.push('%');
                rest = r;
            } else if let Some(r) = after.strip_prefix('(') {
                let Some((name, r)) = r.split_once(")s") else {
                    return Err(err(
                        line,
                        "a '%(' without ')s'; write a lone percent sign as %%",
                    ));
                };
                let Some(referenced) = self.entry(section, name) else {
                    return Err(err(
                        line,
                        format!("%({name})s names no key of this section or of [DEFAULT]"),
                    ));
                };
                out.push_str(&self.interpolate(section, &referenced.raw, line, depth + 1)?);
                rest = r;
            } else {
                return Err(err(
                    line,
                    "'%' must be followed by '%' or '(' (configparser interpolation); write a percent sign as %%",
                ));
            }
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// configparser's `getboolean`.
pub fn boolean(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# a comment
[DEFAULT]
gmailtrash = [Gmail]/Papierkorb

[general]
accounts = A, B
; another comment
pythonfile: ~/.offlineimap.py

[Repository R]
Folderfilter = lambda f: f in [
    'INBOX',

    'Sent']
trash = %(gmailtrash)s
pct = 100%%
raw = %(accountname)s
   # an indented comment
next = x
";

    #[test]
    fn sections_keys_continuations_and_defaults() {
        let ini = parse(TEXT).unwrap();
        assert_eq!(
            ini.get("general", "ACCOUNTS").unwrap(),
            Some(("A, B".into(), 6))
        );
        assert_eq!(
            ini.get("general", "pythonfile").unwrap().unwrap().0,
            "~/.offlineimap.py"
        );
        let (filter, line) = ini.get("Repository R", "folderfilter").unwrap().unwrap();
        assert_eq!(filter, "lambda f: f in [\n'INBOX',\n\n'Sent']");
        assert_eq!(line, 11);
        assert_eq!(
            ini.get("Repository R", "trash").unwrap().unwrap().0,
            "[Gmail]/Papierkorb"
        );
        assert_eq!(ini.get("Repository R", "pct").unwrap().unwrap().0, "100%");
        assert_eq!(ini.get("Repository R", "next").unwrap().unwrap().0, "x");
        assert_eq!(
            ini.get("general", "gmailtrash").unwrap().unwrap().0,
            "[Gmail]/Papierkorb"
        );
        assert_eq!(
            ini.section("Repository R").unwrap().keys()[0].key,
            "Folderfilter"
        );
    }

    #[test]
    fn interpolation_errors_name_the_line_of_the_key() {
        let ini = parse(TEXT).unwrap();
        let e = ini.get("Repository R", "raw").unwrap_err();
        assert_eq!(e.line, 17);
        assert!(e.message.contains("%(accountname)s names no key"), "{e:?}");
        assert_eq!(
            ini.get_raw("Repository R", "raw").unwrap().0,
            "%(accountname)s"
        );
        let ini = parse("[a]\nx = 5%\n").unwrap();
        assert!(ini.get("a", "x").unwrap_err().message.contains("%%"));
        let ini = parse("[a]\nx = %(y)s\ny = %(x)s\n").unwrap();
        assert!(ini.get("a", "x").unwrap_err().message.contains("loop"));
    }

    #[test]
    fn malformed_files_are_refused_with_a_line() {
        for (text, line, message) in [
            ("x = 1\n", 1, "before the first [section]"),
            ("[a]\njust words\n", 2, "neither a [section]"),
            ("[a]\n[a]\n", 2, "second time"),
            ("[a]\nk = 1\nK = 2\n", 3, "second time"),
            ("[a]\n= 1\n", 2, "without a key"),
            ("[]\n", 1, "not a section header"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text}");
            assert!(e.message.contains(message), "{text}: {e:?}");
        }
    }

    #[test]
    fn booleans_as_configparser_reads_them() {
        assert_eq!(boolean("Yes"), Some(true));
        assert_eq!(boolean("off"), Some(false));
        assert_eq!(boolean("maybe"), None);
    }
}
