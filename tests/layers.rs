//! The module graph points downward. Every module of the library sits in one layer; its code
//! (unit tests included) may name, by `crate::` paths, only modules of the layers below it, so no
//! two modules can import each other, directly or round a circle. A few modules are held to less
//! than their layer allows (the planner does no I/O, the D-Bus front speaks only the control
//! port). A new arrow upward, a new circle or a new module nobody placed fails here, naming the
//! file, the line and the module it reached. ARCHITECTURE.md draws the same layers.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The layers, bottom first. `main.rs` (the binary) sits above them all.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "values and plumbing",
        &["model", "child", "disk", "private"],
    ),
    (
        "pure decisions, small parts",
        &[
            "message",
            "plan",
            "folders",
            "hooks",
            "pause",
            "credentials",
        ],
    ),
    ("configuration", &["config"]),
    ("drivers", &["state", "store"]),
    ("engine", &["engine"]),
    ("after a sync, the daemon's port", &["mbnames", "control"]),
    ("D-Bus front", &["dbus"]),
    ("daemon", &["daemon"]),
    ("commands", &["import", "cli"]),
];

/// Modules held to less than their layer allows, with all they may name.
const NARROWER: &[(&str, &[&str])] = &[
    // Values only: no clock, no disk, no child process.
    ("plan", &["model"]),
    ("folders", &["model"]),
    ("message", &["model"]),
    // The secrets at run time: the configuration's keys are config/auth.rs, the commands that
    // store them cli/password.rs.
    ("credentials", &["model", "child"]),
    // The daemon's D-Bus front speaks the control port, never the daemon or the engine.
    ("dbus", &["control", "pause"]),
    // The configuration importers write a configuration and touch nothing else.
    ("import", &["config"]),
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The library's top-level modules as the source tree has them.
fn modules_on_disk() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(root().join("src"))
        .expect("read src")
        .flatten()
    {
        let path = entry.path();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        if path.is_dir() || (path.extension().is_some_and(|e| e == "rs") && name != "lib") {
            out.insert(name);
        }
    }
    out.remove("main");
    out
}

fn rust_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_owned()];
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
        out.extend(rust_files(&entry.path()));
    }
    out.retain(|f| f.extension().is_some_and(|e| e == "rs"));
    out
}

/// What `module` may name: every module of the layers below it, or its narrower list.
fn allowed(module: &str) -> Option<Vec<&'static str>> {
    if let Some((_, only)) = NARROWER.iter().find(|(m, _)| *m == module) {
        return Some(only.to_vec());
    }
    let layer = LAYERS.iter().position(|(_, ms)| ms.contains(&module))?;
    Some(
        LAYERS[..layer]
            .iter()
            .flat_map(|(_, ms)| ms.iter().copied())
            .collect(),
    )
}

#[test]
fn every_module_sits_in_exactly_one_layer() {
    let placed: Vec<&str> = LAYERS
        .iter()
        .flat_map(|(_, ms)| ms.iter().copied())
        .collect();
    let unique: BTreeSet<String> = placed.iter().map(|m| (*m).to_owned()).collect();
    assert_eq!(placed.len(), unique.len(), "a module is in two layers");
    assert_eq!(
        unique,
        modules_on_disk(),
        "the layers and src/ disagree: place a new module in LAYERS, drop a removed one"
    );
    for (module, _) in NARROWER {
        assert!(unique.contains(*module), "{module} is in NARROWER only");
    }
}

#[test]
fn modules_reach_only_downward() {
    let mut upward = Vec::new();
    for module in modules_on_disk() {
        let Some(allowed) = allowed(&module) else {
            continue; // every_module_sits_in_exactly_one_layer names it
        };
        let dir = root().join("src").join(&module);
        let place = if dir.is_dir() {
            dir
        } else {
            root().join("src").join(format!("{module}.rs"))
        };
        for file in rust_files(&place) {
            let text = std::fs::read_to_string(&file).expect("read source");
            let name = file.strip_prefix(root()).unwrap_or(&file).display();
            for (line, reached) in reaches(&text) {
                if reached != module && !allowed.contains(&reached.as_str()) {
                    upward.push(format!("{name}:{line}: {module} reaches crate::{reached}"));
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports against the layers:\n{}",
        upward.join("\n")
    );
}

/// Every `crate::` path in `text` as (1-based line, the top-level module it names), including
/// each module of a grouped `use crate::{a::X, b};`.
fn reaches(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut group: Option<(usize, String)> = None;
    for (n, line) in text.lines().enumerate() {
        if let Some((start, body)) = group.as_mut() {
            body.push_str(line);
            if let Some(end) = closing_brace(body) {
                let body = body[..end].to_owned();
                out.extend(group_modules(&body).into_iter().map(|m| (*start, m)));
                group = None;
            }
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            if let Some(inner) = after.strip_prefix('{') {
                match closing_brace(inner) {
                    Some(end) => {
                        out.extend(group_modules(&inner[..end]).into_iter().map(|m| (n + 1, m)))
                    }
                    None => group = Some((n + 1, inner.to_owned())),
                }
            } else {
                let module = ident(after);
                if !module.is_empty() {
                    out.push((n + 1, module));
                }
            }
            rest = after;
        }
    }
    out
}

/// Where the group that `body` is inside of closes (the brace's index), if it does.
fn closing_brace(body: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in body.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The top-level names of a `use` group body: `a::X, b, c::{D, E}` gives a, b, c.
fn group_modules(body: &str) -> Vec<String> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0usize, 0);
    for (i, c) in body.char_indices().chain([(body.len(), ',')]) {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                let name = ident(body[start..i.min(body.len())].trim_start());
                if !name.is_empty() && name != "self" {
                    out.push(name);
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    out
}

fn ident(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

#[test]
fn the_check_sees_every_form_of_path() {
    let text = "use crate::model::Uid;\n\
                fn f() { crate::config::parse(); crate::model::x() }\n\
                use crate::{state::Db, store::{Store, x}};\n\
                use crate::{\n    engine::Report,\n    self as c,\n};\n";
    let found: Vec<(usize, String)> = reaches(text);
    let expect = [
        (1, "model"),
        (2, "config"),
        (2, "model"),
        (3, "state"),
        (3, "store"),
        (4, "engine"),
    ];
    assert_eq!(
        found,
        expect
            .iter()
            .map(|(n, m)| (*n, (*m).to_owned()))
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_layer_reaches_below_and_never_up_or_sideways() {
    let engine = allowed("engine").expect("placed");
    assert!(engine.contains(&"store") && engine.contains(&"model"));
    assert!(!engine.contains(&"daemon") && !engine.contains(&"control"));
    let state = allowed("state").expect("placed");
    assert!(!state.contains(&"store"), "one layer's modules never meet");
    assert_eq!(allowed("plan"), Some(vec!["model"]));
    assert_eq!(allowed("nowhere"), None);
}
