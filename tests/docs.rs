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

#[test]
fn the_example_configuration_is_valid_and_uses_every_key() {
    let page = read("man/idlewild.toml.5");
    let start = page.find("\n.nf\n").expect("example start") + 5;
    let end = page[start..].find("\n.fi").expect("example end") + start;
    let example = page[start..end].replace("\\e", "\\").replace("# ", "");
    let config = idlewild::config::parse(Path::new("example.toml"), &example)
        .unwrap_or_else(|e| panic!("the example in idlewild.toml(5) is invalid: {e}"));
    assert_eq!(config.accounts.len(), 1);
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
