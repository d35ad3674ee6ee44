//! The manuals document every command-line flag and every configuration key, and the example
//! configuration in idlewild.toml(5) is a valid configuration.

use std::path::Path;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// roff escapes hyphens in option names as `\-`.
fn unroff(text: &str) -> String {
    text.replace("\\-", "-")
}

#[test]
fn every_flag_and_command_is_in_idlewild_1() {
    let page = unroff(&read("man/idlewild.1"));
    let command = idlewild::cli::command();
    let mut missing = Vec::new();
    let check_args = |cmd: &clap::Command, missing: &mut Vec<String>| {
        for arg in cmd.get_arguments() {
            if let Some(long) = arg.get_long()
                && !page.contains(&format!("--{long}"))
            {
                missing.push(format!("{} --{long}", cmd.get_name()));
            }
            if let Some(short) = arg.get_short()
                && !page.contains(&format!("-{short}"))
            {
                missing.push(format!("{} -{short}", cmd.get_name()));
            }
        }
    };
    check_args(&command, &mut missing);
    for sub in command.get_subcommands() {
        if !page.contains(sub.get_name()) {
            missing.push(format!("command {}", sub.get_name()));
        }
        check_args(sub, &mut missing);
    }
    assert!(page.contains("--help") && page.contains("--version"));
    assert!(
        missing.is_empty(),
        "not documented in man/idlewild.1: {missing:?}"
    );
}

#[test]
fn every_config_key_is_in_idlewild_toml_5() {
    let page = read("man/idlewild.toml.5");
    let mut missing = Vec::new();
    for key in idlewild::config::KEYS {
        let (section, leaf) = key.rsplit_once('.').expect("keys have a section");
        let header = format!(".SH [{}]", section.replace('*', "NAME"));
        let Some(start) = page.find(&header) else {
            missing.push(format!("{key} (no section {header})"));
            continue;
        };
        let body = &page[start + header.len()..];
        let body = &body[..body.find("\n.SH ").unwrap_or(body.len())];
        if !body.contains(&format!(".B {leaf}\n")) {
            missing.push(key.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "not documented in man/idlewild.toml.5: {missing:?}"
    );
}

/// The configuration examples of a page: its `.nf` ... `.fi` blocks that hold an account.
fn examples(page: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find("\n.nf\n") {
        let body = &rest[start + 5..];
        let Some(end) = body.find("\n.fi") else {
            break;
        };
        let example = body[..end].replace("\\e", "\\").replace("# ", "");
        if example.contains("[accounts.") {
            out.push(example);
        }
        rest = &body[end..];
    }
    out
}

#[test]
fn the_example_configurations_are_valid_and_use_every_key() {
    let page = read("man/idlewild.toml.5");
    let examples = examples(&page);
    assert!(!examples.is_empty(), "no example in idlewild.toml(5)");
    for (i, example) in examples.iter().enumerate() {
        let config = idlewild::config::parse(Path::new("example.toml"), example)
            .unwrap_or_else(|e| panic!("example {} in idlewild.toml(5) is invalid: {e}", i + 1));
        assert_eq!(config.accounts.len(), 1, "example {}", i + 1);
    }
    let example = examples.concat();
    for key in idlewild::config::KEYS {
        let leaf = key.rsplit('.').next().unwrap_or(key);
        assert!(
            example.contains(&format!("{leaf} = ")),
            "the example does not show {key}"
        );
    }
}

#[test]
fn the_readme_names_the_two_setup_commands() {
    let readme = read("README.md");
    assert!(readme.contains("scripts/try-it.sh"));
    assert!(readme.contains("scripts/test.sh"));
    let ci = read(".ci/run");
    assert!(
        ci.contains("scripts/test.sh"),
        ".ci/run must run the README's test command"
    );
}
