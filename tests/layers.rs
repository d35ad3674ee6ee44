//! The module graph points downward: each module below reaches only the modules listed for it
//! (by `crate::` paths, in its code and its unit tests alike). A new arrow upward fails here,
//! naming the file and the module it reached.

use std::path::{Path, PathBuf};

/// Files (or directories, for all of their files) and the crate modules they may use.
const RULES: &[(&str, &[&str])] = &[
    ("src/model.rs", &[]),
    ("src/child.rs", &[]),
    ("src/disk.rs", &[]),
    ("src/message.rs", &["model"]),
    ("src/plan", &["model", "plan"]),
    ("src/folders", &["model", "folders"]),
    // The secrets at run time: the configuration's keys are config/auth.rs, the commands
    // that store them cli/password.rs.
    ("src/credentials", &["model", "child", "credentials"]),
    // The port between the daemon and its D-Bus front: the API speaks it, never the daemon.
    ("src/control.rs", &["engine", "model", "pause", "state"]),
    ("src/dbus", &["control", "dbus", "pause"]),
];

fn files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_owned()];
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path).expect("read dir").flatten() {
        out.extend(files(&entry.path()));
    }
    out
}

#[test]
fn modules_reach_only_downward() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut upward = Vec::new();
    for (place, allowed) in RULES {
        let place = root.join(place);
        assert!(
            place.exists(),
            "{} is gone: update the rules",
            place.display()
        );
        for file in files(&place)
            .into_iter()
            .filter(|f| f.extension().is_some_and(|e| e == "rs"))
        {
            let text = std::fs::read_to_string(&file).expect("read source");
            let name = file
                .strip_prefix(root)
                .unwrap_or(&file)
                .display()
                .to_string();
            upward.extend(
                reaches(&text, allowed)
                    .into_iter()
                    .map(|(n, m)| format!("{name}:{n}: reaches crate::{m}")),
            );
        }
    }
    assert!(
        upward.is_empty(),
        "imports against the layers:\n{}",
        upward.join("\n")
    );
}

/// The lines (1-based) of `text` that name a crate module outside `allowed`, with the module.
fn reaches(text: &str, allowed: &[&str]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let module: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !module.is_empty() && !allowed.contains(&module.as_str()) {
                out.push((n + 1, module));
            }
            rest = after;
        }
    }
    out
}

#[test]
fn the_check_sees_an_upward_import() {
    let text = "use crate::model::Uid;\nfn f() { crate::config::parse(); crate::model::x() }\n";
    assert_eq!(reaches(text, &["model"]), vec![(2, "config".to_owned())]);
    assert!(reaches(text, &["model", "config"]).is_empty());
}
