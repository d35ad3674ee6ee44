//! Which folders an account syncs and what each is called on either side: the folder map.
//!
//! [`map_folders`] is pure: the server's folder list, the Maildir's, the names the state knows
//! and the account's rules in; each folder pair (server name, local name, where it exists,
//! whether it is selected) out, with every problem that makes the mapping unsafe. The mapping
//! must be one to one on the real folders of both sides: two server folders becoming one local
//! folder, or a name that does not map back to itself, would mix or duplicate mail, so the
//! engine syncs nothing of the account while any problem stands.
//!
//! The state database knows folders by their server name, so renaming rules can change without
//! the state losing track (`filter`, `rename`).

pub mod filter;
pub mod rename;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::model::FolderName;
pub use filter::{Filter, Pattern, Selection};
pub use rename::{Rename, Rule, RuleError};

/// An account's folder rules: selection and renaming.
#[derive(Debug, Clone, Default)]
pub struct FolderRules {
    filter: Filter,
    rename: Rename,
    /// Server folders left out unless an include names them, with the reason (see
    /// [`Selection::LeftOut`]).
    left_out: std::collections::BTreeMap<FolderName, String>,
}

impl FolderRules {
    pub fn new(filter: Filter, rename: Rename) -> Self {
        Self {
            filter,
            rename,
            left_out: Default::default(),
        }
    }

    /// These rules, with the server's folders that are left out unless named.
    pub fn with_left_out(
        mut self,
        left_out: impl IntoIterator<Item = (FolderName, String)>,
    ) -> Self {
        self.left_out = left_out.into_iter().collect();
        self
    }

    /// Whether the server folder `remote` is synced.
    pub fn selection(&self, remote: &FolderName) -> Selection {
        self.filter
            .select_unless(remote, self.left_out.get(remote).map(String::as_str))
    }

    /// The local name of the server folder `remote`.
    pub fn local_name(&self, remote: &FolderName) -> Result<FolderName, String> {
        self.rename.to_local(remote)
    }

    /// The server name of the local folder `local`; `google`: see [`rename::google_spelling`].
    pub fn remote_name(&self, local: &FolderName, google: bool) -> Result<FolderName, String> {
        self.rename.to_remote(local, google)
    }
}

/// One folder pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedFolder {
    pub remote: FolderName,
    pub local: FolderName,
    pub on_remote: bool,
    pub on_local: bool,
    /// The state database knows the folder (by its server name).
    pub known: bool,
    pub selection: Selection,
}

/// Why the mapping cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Several server folders would be one local folder.
    Collision {
        local: FolderName,
        remotes: Vec<FolderName>,
    },
    /// A server folder's local name maps back to another server name (or to none).
    RemoteRoundTrip {
        remote: FolderName,
        local: FolderName,
        back: Result<FolderName, String>,
    },
    /// A local folder's server name maps to another local name (or to none).
    LocalRoundTrip {
        local: FolderName,
        remote: FolderName,
        back: Result<FolderName, String>,
    },
    /// The rules turn a name into something that is not a folder name.
    BadName {
        side: &'static str,
        name: FolderName,
        why: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |back: &Result<FolderName, String>| match back {
            Ok(n) => format!("\"{n}\""),
            Err(why) => format!("nothing ({why})"),
        };
        match self {
            Problem::Collision { local, remotes } => {
                let names: Vec<String> = remotes.iter().map(|r| format!("\"{r}\"")).collect();
                write!(
                    f,
                    "server folders {} would all be the local folder \"{local}\"",
                    names.join(" and ")
                )
            }
            Problem::RemoteRoundTrip {
                remote,
                local,
                back,
            } => write!(
                f,
                "server folder \"{remote}\" would be the local folder \"{local}\", but \"{local}\" maps back to {}",
                shown(back)
            ),
            Problem::LocalRoundTrip {
                local,
                remote,
                back,
            } => write!(
                f,
                "local folder \"{local}\" maps to the server folder \"{remote}\", but \"{remote}\" would be the local folder {}",
                shown(back)
            ),
            Problem::BadName { side, name, why } => write!(f, "{side} folder \"{name}\": {why}"),
        }
    }
}

/// The mapping is not one to one on the real folders; nothing of the account is synced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FolderMapError(pub Vec<Problem>);

impl fmt::Display for FolderMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the folder names do not map one to one between the server and the Maildir, so nothing was synced:"
        )?;
        for p in &self.0 {
            write!(f, "\n  - {p}")?;
        }
        write!(
            f,
            "\n  Change folders.rename, or leave one of the folders out with folders.exclude (see idlewild.toml(5)); `idlewild folders ACCOUNT` shows the mapping."
        )
    }
}

/// Every folder pair of an account, and what is wrong with the mapping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderMap {
    /// Sorted by local name, then server name.
    pub folders: Vec<MappedFolder>,
    pub problems: Vec<Problem>,
}

impl FolderMap {
    pub fn check(self) -> Result<Vec<MappedFolder>, FolderMapError> {
        if self.problems.is_empty() {
            Ok(self.folders)
        } else {
            Err(FolderMapError(self.problems))
        }
    }
}

/// Pairs the folders of both sides.
///
/// Server names (listed, or known to the state) take their local name from the rules; a local
/// folder that is no server folder's local name is mapped back to its server name. Selection is
/// decided on the server name, for local-only folders the mapped-back one. Only selected
/// folders are checked: an excluded one is never touched, whatever its name would be.
pub fn map_folders(
    remote: &[FolderName],
    local: &[FolderName],
    known: &[FolderName],
    rules: &FolderRules,
) -> FolderMap {
    let remote_set: BTreeSet<&FolderName> = remote.iter().collect();
    let local_set: BTreeSet<&FolderName> = local.iter().collect();
    let known_set: BTreeSet<&FolderName> = known.iter().collect();
    let google = rename::google_spelling(remote.iter().chain(known));
    let mut problems = Vec::new();
    let mut by_remote: BTreeMap<FolderName, MappedFolder> = BTreeMap::new();

    for &r in remote_set.union(&known_set) {
        let selection = rules.selection(r);
        match rules.local_name(r) {
            Ok(l) => {
                by_remote.insert(
                    r.clone(),
                    MappedFolder {
                        remote: r.clone(),
                        on_remote: remote_set.contains(r),
                        on_local: local_set.contains(&l),
                        local: l,
                        known: known_set.contains(r),
                        selection,
                    },
                );
            }
            Err(why) if selection.is_included() => problems.push(Problem::BadName {
                side: "server",
                name: r.clone(),
                why,
            }),
            Err(_) => {}
        }
    }

    let claimed: BTreeSet<FolderName> = by_remote.values().map(|m| m.local.clone()).collect();
    for &l in local_set.iter().filter(|l| !claimed.contains(**l)) {
        let r = match rules.remote_name(l, google) {
            Ok(r) => r,
            Err(why) => {
                problems.push(Problem::BadName {
                    side: "local",
                    name: l.clone(),
                    why,
                });
                continue;
            }
        };
        let selection = rules.selection(&r);
        if let Some(existing) = by_remote.get(&r) {
            // `r` is a server folder whose local name is another one.
            if selection.is_included() {
                problems.push(Problem::LocalRoundTrip {
                    local: l.clone(),
                    remote: r,
                    back: Ok(existing.local.clone()),
                });
            }
            continue;
        }
        let back = rules.local_name(&r);
        if back.as_ref() != Ok(l) && selection.is_included() {
            problems.push(Problem::LocalRoundTrip {
                local: l.clone(),
                remote: r,
                back,
            });
            continue;
        }
        by_remote.insert(
            r.clone(),
            MappedFolder {
                remote: r,
                local: l.clone(),
                on_remote: false,
                on_local: true,
                known: false,
                selection,
            },
        );
    }

    let mut by_local: BTreeMap<&FolderName, Vec<&MappedFolder>> = BTreeMap::new();
    for m in by_remote.values().filter(|m| m.selection.is_included()) {
        by_local.entry(&m.local).or_default().push(m);
        if m.on_remote || m.known {
            let back = rules.remote_name(&m.local, google);
            if back.as_ref() != Ok(&m.remote) {
                problems.push(Problem::RemoteRoundTrip {
                    remote: m.remote.clone(),
                    local: m.local.clone(),
                    back,
                });
            }
        }
    }
    for (local, pairs) in by_local.into_iter().filter(|(_, p)| p.len() > 1) {
        problems.push(Problem::Collision {
            local: local.clone(),
            remotes: pairs.iter().map(|m| m.remote.clone()).collect(),
        });
    }

    let mut folders: Vec<MappedFolder> = by_remote.into_values().collect();
    folders.sort_by(|a, b| (&a.local, &a.remote).cmp(&(&b.local, &b.remote)));
    FolderMap { folders, problems }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<FolderName> {
        list.iter().map(|s| FolderName::new(s).unwrap()).collect()
    }

    fn name(s: &str) -> FolderName {
        FolderName::new(s).unwrap()
    }

    fn rules(
        include: Option<&[&str]>,
        exclude: &[&str],
        rename: Vec<Rule>,
        gmail: bool,
    ) -> FolderRules {
        let p = |s: &&str| Pattern::new(s).unwrap();
        FolderRules::new(
            Filter::new(
                include.map(|i| i.iter().map(p).collect()),
                exclude.iter().map(p).collect(),
            ),
            Rename::new(rename, gmail).unwrap(),
        )
    }

    fn pairs(map: &FolderMap) -> Vec<(String, String, bool)> {
        map.folders
            .iter()
            .map(|m| {
                (
                    m.remote.to_string(),
                    m.local.to_string(),
                    m.selection.is_included(),
                )
            })
            .collect()
    }

    #[test]
    fn without_rules_every_folder_is_itself() {
        let map = map_folders(
            &names(&["INBOX", "Archive/2019", "Entwürfe"]),
            &names(&["INBOX", "Lists/rust"]),
            &names(&["Old"]),
            &FolderRules::default(),
        );
        assert!(map.problems.is_empty(), "{:?}", map.problems);
        let got: Vec<(String, String, bool, bool, bool)> = map
            .folders
            .iter()
            .map(|m| {
                (
                    m.remote.to_string(),
                    m.local.to_string(),
                    m.on_remote,
                    m.on_local,
                    m.known,
                )
            })
            .collect();
        let s = |x: &str| x.to_owned();
        assert_eq!(
            got,
            vec![
                (s("Archive/2019"), s("Archive/2019"), true, false, false),
                (s("Entwürfe"), s("Entwürfe"), true, false, false),
                (s("INBOX"), s("INBOX"), true, true, false),
                (s("Lists/rust"), s("Lists/rust"), false, true, false),
                (s("Old"), s("Old"), false, false, true),
            ]
        );
    }

    #[test]
    fn local_only_folders_are_selected_by_their_server_name() {
        let r = rules(
            None,
            &["Trash"],
            vec![Rule::new("^Deleted$", "Trash", None).unwrap()],
            false,
        );
        // The local "Trash" is the server's "Deleted", which is not excluded.
        let map = map_folders(&names(&["INBOX"]), &names(&["Trash", "Junk"]), &[], &r);
        assert!(map.problems.is_empty(), "{:?}", map.problems);
        assert_eq!(
            pairs(&map),
            vec![
                ("INBOX".into(), "INBOX".into(), true),
                ("Junk".into(), "Junk".into(), true),
                ("Deleted".into(), "Trash".into(), true),
            ]
        );
    }

    #[test]
    fn two_server_folders_on_one_local_name_are_refused_naming_both() {
        let r = rules(
            None,
            &[],
            vec![Rule::new("^Sent Items$", "Sent", None).unwrap()],
            false,
        );
        let map = map_folders(&names(&["Sent", "Sent Items"]), &[], &[], &r);
        let e = map.clone().check().unwrap_err().to_string();
        assert!(e.contains("\"Sent\" and \"Sent Items\""), "{e}");
        assert!(e.contains("the local folder \"Sent\""), "{e}");
        // Leaving one out settles it.
        let r = rules(
            None,
            &["Sent"],
            vec![Rule::new("^Sent Items$", "Sent", None).unwrap()],
            false,
        );
        let map = map_folders(&names(&["Sent", "Sent Items"]), &names(&["Sent"]), &[], &r);
        assert!(map.problems.is_empty(), "{:?}", map.problems);
        assert!(
            map.folders
                .iter()
                .any(|m| m.remote == name("Sent Items") && m.on_local && m.selection.is_included())
        );
    }

    #[test]
    fn a_name_that_does_not_map_back_is_refused() {
        // A wrong explicit reverse: "Old/x" maps back to "Archive/x", not "Lists/x".
        let rule = Rule::new("^Lists/(.+)$", "Old/$1", Some(("^Old/(.+)$", "Archive/$1"))).unwrap();
        let r = rules(None, &[], vec![rule], false);
        let map = map_folders(&names(&["Lists/rust"]), &[], &[], &r);
        assert_eq!(
            map.problems,
            vec![Problem::RemoteRoundTrip {
                remote: name("Lists/rust"),
                local: name("Old/rust"),
                back: Ok(name("Archive/rust")),
            }]
        );
        // remote_prefix_strip on a server with folders beside INBOX: "Other" is "Other" here,
        // but the local "Other" would be the server's "INBOX/Other".
        let r = rules(
            None,
            &[],
            rename::prefix_strip_rules("INBOX.").unwrap(),
            false,
        );
        let map = map_folders(&names(&["INBOX", "INBOX/a", "Other"]), &[], &[], &r);
        let e = map.check().unwrap_err().to_string();
        assert!(
            e.contains("server folder \"Other\" would be the local folder \"Other\", but \"Other\" maps back to \"INBOX/Other\""),
            "{e}"
        );
    }

    #[test]
    fn a_local_folder_that_would_land_on_another_name_is_refused() {
        let r = rules(
            None,
            &[],
            rename::prefix_strip_rules("INBOX/").unwrap(),
            false,
        );
        // A local folder "z" is the server's "INBOX/z": one pair.
        let map = map_folders(&names(&["INBOX", "INBOX/z"]), &names(&["z"]), &[], &r);
        assert!(map.problems.is_empty(), "{:?}", map.problems);
        assert_eq!(pairs(&map).len(), 2);
        // After adding the Gmail preset to an account synced without it, the old local
        // "[Gmail]/Sent Mail" would be created on the server as itself, which the preset makes
        // "Sent": refused.
        let r = rules(None, &[], Vec::new(), true);
        let map = map_folders(
            &names(&["INBOX", "[Gmail]/Sent Mail"]),
            &names(&["INBOX", "[Gmail]/Sent Mail"]),
            &names(&["INBOX", "[Gmail]/Sent Mail"]),
            &r,
        );
        assert_eq!(
            map.problems,
            vec![Problem::LocalRoundTrip {
                local: name("[Gmail]/Sent Mail"),
                remote: name("[Gmail]/Sent Mail"),
                back: Ok(name("Sent")),
            }]
        );
    }

    #[test]
    fn excluded_folders_are_listed_but_never_checked() {
        let r = rules(
            None,
            &["Sent"],
            vec![Rule::new("^Sent Items$", "Sent", None).unwrap()],
            false,
        );
        let map = map_folders(&names(&["Sent", "Sent Items", "INBOX"]), &[], &[], &r);
        assert!(map.problems.is_empty());
        assert_eq!(
            pairs(&map),
            vec![
                ("INBOX".into(), "INBOX".into(), true),
                ("Sent".into(), "Sent".into(), false),
                ("Sent Items".into(), "Sent".into(), true),
            ]
        );
        // Known to the state, excluded now: listed with its known flag, never a problem.
        let r = rules(Some(&["INBOX", "Lists/%"]), &[], Vec::new(), false);
        let map = map_folders(
            &names(&["INBOX", "Lists/rust", "Lists/rust/x", "Archive"]),
            &names(&["Archive"]),
            &names(&["Archive"]),
            &r,
        );
        assert!(map.problems.is_empty());
        let selected: Vec<String> = map
            .folders
            .iter()
            .filter(|m| m.selection.is_included())
            .map(|m| m.remote.to_string())
            .collect();
        assert_eq!(selected, vec!["INBOX", "Lists/rust"]);
        assert!(
            map.folders
                .iter()
                .any(|m| m.remote == name("Archive") && m.known)
        );
    }

    #[test]
    fn gmail_pairs_follow_the_servers_spelling() {
        let r = rules(None, &["[Gmail]/Important"], Vec::new(), true);
        let map = map_folders(
            &names(&[
                "INBOX",
                "[Gmail]/Sent Mail",
                "[Gmail]/All Mail",
                "[Gmail]/Important",
            ]),
            &names(&["INBOX", "Drafts"]),
            &[],
            &r,
        );
        assert!(map.problems.is_empty(), "{:?}", map.problems);
        assert_eq!(
            pairs(&map),
            vec![
                ("[Gmail]/All Mail".into(), "Archive".into(), true),
                ("[Gmail]/Drafts".into(), "Drafts".into(), true),
                ("INBOX".into(), "INBOX".into(), true),
                ("[Gmail]/Important".into(), "Important".into(), false),
                ("[Gmail]/Sent Mail".into(), "Sent".into(), true),
            ]
        );
        let map = map_folders(
            &names(&["INBOX", "[Google Mail]/Sent Mail"]),
            &names(&["Drafts"]),
            &[],
            &r,
        );
        assert!(map.problems.is_empty(), "{:?}", map.problems);
        assert!(
            map.folders
                .iter()
                .any(|m| m.remote == name("[Google Mail]/Drafts"))
        );
        // A label of the user's own called "Sent" collides with the sent mail.
        let map = map_folders(&names(&["Sent", "[Gmail]/Sent Mail"]), &[], &[], &r);
        assert!(
            map.problems
                .iter()
                .any(|p| matches!(p, Problem::Collision { .. })),
            "{:?}",
            map.problems
        );
    }

    #[test]
    fn a_rule_that_makes_an_invalid_name_is_a_problem_only_when_selected() {
        let rule = Rule::new("^Lists/(.+)$", "$1/", Some(("^(.+)/$", "Lists/$1"))).unwrap();
        let r = rules(None, &[], vec![rule.clone()], false);
        let map = map_folders(&names(&["Lists/x"]), &[], &[], &r);
        assert!(matches!(
            map.problems.as_slice(),
            [Problem::BadName { side: "server", .. }]
        ));
        let r = rules(None, &["Lists/*"], vec![rule], false);
        assert!(
            map_folders(&names(&["Lists/x"]), &[], &[], &r)
                .problems
                .is_empty()
        );
    }
}
