//! IMAP keywords in a Maildir, Dovecot's way: a message file carries a keyword as a lowercase
//! info letter (`:2,Sa`), and the folder's `dovecot-keywords` file says which keyword each
//! letter stands for, one `INDEX NAME` line per letter (`0 $Junk` makes `a` mean `$Junk`, up to
//! `25` for `z`). Dovecot, mutt's and neomutt's Maildir readers and OfflineIMAP's `customflag_*`
//! all read the letters this way, so a Maildir shared with them keeps its keywords.
//!
//! The file is read as Dovecot reads it (`maildir-keywords.c`): a line without a space, an
//! index out of range or an empty name is skipped, names compare without regard to ASCII case,
//! and a missing file is an empty table. It is written as Dovecot writes it: the new content
//! goes into `dovecot-keywords.lock`, created exclusively (a lock that other writers respect;
//! one older than two minutes is stale and taken over), made durable, then renamed over the
//! file; its modification time always grows, because Dovecot rereads the file only when that
//! time changes. While it holds the lock, idlewild notes the lock's inode in the folder's
//! `tmp/`: only one run works on an account's folders at a time (the account lock), so a lock
//! that note names was left by a run of ours killed while holding it, and is taken over at once
//! instead of failing the folder for two minutes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The file's name in the folder's directory.
pub const FILE: &str = "dovecot-keywords";

/// How many keywords a folder can hold: the letters `a` to `z`.
pub const LETTERS: usize = 26;

/// After how long another writer's lock is taken to be left behind by a crash (Dovecot's
/// `KEYWORDS_LOCK_STALE_TIMEOUT`).
const STALE_LOCK: Duration = Duration::from_secs(120);

/// The note of the lock a run of ours holds, in the folder's `tmp/` (see the module
/// documentation); it starts with the prefix of our files there, removed as leftovers.
const LOCK_NOTE: &str = ".idlewild-keywords-lock";

/// How long a write waits for a lock that is not stale before it gives up; the folder then
/// fails this time and is synced again later.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// One folder's letters and the keywords they stand for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    names: Box<[Option<String>; LETTERS]>,
}

impl Table {
    /// Reads the table in `text` the way Dovecot does (see the module documentation).
    pub fn parse(text: &str) -> Table {
        let mut table = Table::default();
        for line in text.lines() {
            let Some((index, name)) = line.split_once(' ') else {
                continue;
            };
            let Ok(index) = index.trim().parse::<usize>() else {
                continue;
            };
            if index < LETTERS && !name.is_empty() {
                table.names[index] = Some(name.to_owned());
            }
        }
        table
    }

    /// The file's content: one `INDEX NAME` line per letter in use, in letter order.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (index, name) in self.names.iter().enumerate() {
            if let Some(name) = name {
                out.push_str(&format!("{index} {name}\n"));
            }
        }
        out
    }

    /// The letter that stands for `keyword`, compared without regard to ASCII case.
    pub fn letter_of(&self, keyword: &str) -> Option<char> {
        self.names
            .iter()
            .position(|n| {
                n.as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(keyword))
            })
            .map(letter)
    }

    /// The keyword `letter` stands for, if the table names one.
    pub fn keyword_of(&self, letter: char) -> Option<&str> {
        let index = (letter as u32).checked_sub('a' as u32)? as usize;
        self.names.get(index)?.as_deref()
    }

    /// Whether a letter is free for a new keyword.
    pub fn has_room(&self) -> bool {
        self.names.iter().any(Option::is_none)
    }

    /// The keyword names the table holds, in letter order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().flatten().map(String::as_str)
    }

    /// The letter for `keyword`: its own, or the first free one, which the table then gives
    /// it. `None` when all 26 are taken by other keywords, or when the keyword could not be
    /// written on one line of the file (a space or line break would change its meaning there).
    pub fn assign(&mut self, keyword: &str) -> Option<char> {
        if let Some(found) = self.letter_of(keyword) {
            return Some(found);
        }
        if keyword.is_empty() || keyword.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return None;
        }
        let free = self.names.iter().position(Option::is_none)?;
        self.names[free] = Some(keyword.to_owned());
        Some(letter(free))
    }
}

fn letter(index: usize) -> char {
    char::from(b'a' + index as u8)
}

/// Reads `dir`'s table; no file is an empty table.
pub fn read(dir: &Path) -> io::Result<Table> {
    match fs::read(dir.join(FILE)) {
        // Dovecot writes what it was given; a name that is not UTF-8 cannot be an IMAP keyword
        // we would send, so it reads as a letter with a name we do not know.
        Ok(bytes) => Ok(Table::parse(&String::from_utf8_lossy(&bytes))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Table::default()),
        Err(e) => Err(e),
    }
}

/// Gives each keyword of `wanted` a letter in `dir`'s table (its own, or a free one) and
/// returns the table as it then is. The table is read and, if it changed, written under the
/// lock (see the module documentation), so a keyword another program added meanwhile keeps
/// its letter. `now` is the time the file's modification time must at least reach.
pub fn assign<'a>(
    dir: &Path,
    wanted: impl IntoIterator<Item = &'a str>,
    now: SystemTime,
) -> io::Result<Table> {
    update(dir, now, LOCK_WAIT, |table| {
        for keyword in wanted {
            table.assign(keyword);
        }
    })
}

fn update(
    dir: &Path,
    now: SystemTime,
    wait: Duration,
    change: impl FnOnce(&mut Table),
) -> io::Result<Table> {
    let path = dir.join(FILE);
    let lock = dir.join(format!("{FILE}.lock"));
    let mut file = take_lock(dir, &lock, now, wait)?;
    // Best effort: without the note, a lock left by a crash is stale after two minutes.
    let _ = file
        .metadata()
        .and_then(|m| fs::write(note_path(dir), identity(&m)));
    let written = (|| {
        let before = read(dir)?;
        let mut table = before.clone();
        change(&mut table);
        if table == before {
            fs::remove_file(&lock)?;
            return Ok(table);
        }
        let previous = fs::metadata(&path).and_then(|m| m.modified()).ok();
        file.write_all(table.render().as_bytes())?;
        // Dovecot notices a new table by its modification time, in whole seconds: a table
        // written within the second of the previous one must still look newer.
        let at_least = previous.map_or(now, |p| p + Duration::from_secs(1));
        file.set_modified(now.max(at_least))?;
        file.sync_all()?;
        fs::rename(&lock, &path)?;
        File::open(dir)?.sync_all()?;
        Ok(table)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&lock);
    }
    let _ = fs::remove_file(note_path(dir));
    written
}

fn note_path(dir: &Path) -> PathBuf {
    dir.join("tmp").join(LOCK_NOTE)
}

fn identity(meta: &fs::Metadata) -> String {
    format!("{}:{}", meta.dev(), meta.ino())
}

/// Whether `lock` is the one a run of ours noted and, having died, never removed.
fn left_by_us(dir: &Path, lock: &Path) -> bool {
    let (Ok(note), Ok(meta)) = (fs::read_to_string(note_path(dir)), fs::metadata(lock)) else {
        return false;
    };
    note == identity(&meta)
}

/// Removes a keywords lock a run of ours left behind in the folder `dir`, and the note of it;
/// called before our leftovers in `tmp/` are cleared, which would take the note with them.
pub fn clear_left_lock(dir: &Path) {
    let lock = dir.join(format!("{FILE}.lock"));
    if left_by_us(dir, &lock) {
        let _ = fs::remove_file(&lock);
    }
    let _ = fs::remove_file(note_path(dir));
}

/// Creates the lock file exclusively, taking over a stale one or one a run of ours left, waiting
/// a little for a live one.
fn take_lock(dir: &Path, lock: &Path, now: SystemTime, wait: Duration) -> io::Result<File> {
    let started = std::time::Instant::now();
    loop {
        match OpenOptions::new().write(true).create_new(true).open(lock) {
            Ok(file) => return Ok(file),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let age = fs::metadata(lock)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|m| now.duration_since(m).ok());
                if age.is_some_and(|age| age >= STALE_LOCK) || left_by_us(dir, lock) {
                    // Left by a writer that died; Dovecot overrides it the same way.
                    let _ = fs::remove_file(lock);
                    continue;
                }
                if started.elapsed() >= wait {
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        format!(
                            "{} is held by another program (Dovecot?); the folder's keywords are written on the next sync",
                            lock.display()
                        ),
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dovecots_file_and_skips_what_dovecot_skips() {
        let table = Table::parse(
            "0 $Junk\n1 NonJunk\nnospace\n26 toofar\n-1 negative\n3 \n4 $label1\nx y\n",
        );
        assert_eq!(table.keyword_of('a'), Some("$Junk"));
        assert_eq!(table.keyword_of('b'), Some("NonJunk"));
        assert_eq!(table.keyword_of('c'), None);
        assert_eq!(table.keyword_of('d'), None, "an empty name is skipped");
        assert_eq!(table.keyword_of('e'), Some("$label1"));
        assert_eq!(table.keyword_of('z'), None);
        assert_eq!(
            table.keyword_of('A'),
            None,
            "upper case letters are system flags"
        );
        assert_eq!(
            table.letter_of("$junk"),
            Some('a'),
            "names compare without case"
        );
        assert_eq!(table.letter_of("$Label1"), Some('e'));
        assert_eq!(table.render(), "0 $Junk\n1 NonJunk\n4 $label1\n");
    }

    #[test]
    fn a_new_keyword_takes_the_first_free_letter_until_all_26_are_taken() {
        let mut table = Table::parse("1 taken\n");
        assert_eq!(table.assign("first"), Some('a'));
        assert_eq!(
            table.assign("TAKEN"),
            Some('b'),
            "an existing one keeps its letter"
        );
        assert_eq!(table.assign("second"), Some('c'));
        assert_eq!(table.assign("two words"), None);
        assert_eq!(table.assign("line\nbreak"), None);
        for n in 3..LETTERS {
            assert_eq!(table.assign(&format!("k{n}")), Some(letter(n)));
        }
        assert_eq!(table.assign("k26"), None, "the 27th has no letter");
        assert_eq!(table.assign("first"), Some('a'));
        assert_eq!(Table::parse(&table.render()), table);
    }

    #[test]
    fn written_under_the_lock_with_a_growing_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = SystemTime::now();
        let table = assign(dir.path(), ["$Junk"], now).expect("write");
        assert_eq!(table.letter_of("$junk"), Some('a'));
        assert_eq!(read(dir.path()).expect("read"), table);
        assert!(!dir.path().join("dovecot-keywords.lock").exists());
        let time = || {
            fs::metadata(dir.path().join(FILE))
                .and_then(|m| m.modified())
                .expect("time")
        };
        // Another program adds one meanwhile: it keeps its letter.
        fs::write(dir.path().join(FILE), "0 $Junk\n1 Theirs\n").expect("write");
        // The time to grow past is the table replaced: the other program's, which the
        // kernel's coarse clock may set a few milliseconds before our own `now`.
        let first = time();
        let table = assign(dir.path(), ["NonJunk", "$Junk"], now).expect("write again");
        assert_eq!(table.letter_of("theirs"), Some('b'));
        assert_eq!(table.letter_of("nonjunk"), Some('c'));
        assert!(time() >= first + Duration::from_secs(1), "the time grows");
        assert_eq!(read(dir.path()).expect("read"), table);
        // Nothing new: nothing written, no lock left behind.
        let unchanged = time();
        assert_eq!(assign(dir.path(), ["NONJUNK"], now).expect("read"), table);
        assert_eq!(time(), unchanged);
        assert!(!dir.path().join("dovecot-keywords.lock").exists());
    }

    #[test]
    fn a_live_lock_is_respected_and_a_stale_one_taken_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lock = dir.path().join("dovecot-keywords.lock");
        fs::write(&lock, "").expect("lock");
        let now = SystemTime::now();
        let add = |table: &mut Table| {
            table.assign("x");
        };
        let refused = update(dir.path(), now, Duration::ZERO, add).expect_err("the lock is live");
        assert_eq!(refused.kind(), io::ErrorKind::WouldBlock);
        assert!(lock.exists(), "another writer's lock is left alone");
        assert_eq!(read(dir.path()).expect("read"), Table::default());
        let table = update(dir.path(), now + STALE_LOCK, Duration::ZERO, add)
            .expect("a stale lock is taken over");
        assert_eq!(read(dir.path()).expect("read"), table);
        assert_eq!(table.letter_of("x"), Some('a'));
    }

    #[test]
    fn a_lock_left_by_a_run_of_ours_killed_while_holding_it_is_taken_over_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("tmp")).expect("tmp");
        let lock = dir.path().join("dovecot-keywords.lock");
        let now = SystemTime::now();
        // What a run killed between taking the lock and renaming it leaves: the lock, noted.
        let held = take_lock(dir.path(), &lock, now, Duration::ZERO).expect("lock");
        fs::write(
            note_path(dir.path()),
            identity(&held.metadata().expect("meta")),
        )
        .expect("note");
        drop(held);
        let table = update(dir.path(), now, Duration::ZERO, |t| {
            t.assign("x");
        })
        .expect("our own left lock is taken over");
        assert_eq!(table.letter_of("x"), Some('a'));
        assert!(!lock.exists() && !note_path(dir.path()).exists());

        // A lock the note does not name (Dovecot's, taken after ours ended) is respected,
        // and clearing our leftovers leaves it alone.
        fs::write(note_path(dir.path()), "0:0").expect("note");
        fs::write(&lock, "").expect("their lock");
        let refused = update(dir.path(), now, Duration::ZERO, |t| {
            t.assign("y");
        });
        assert_eq!(refused.expect_err("live").kind(), io::ErrorKind::WouldBlock);
        clear_left_lock(dir.path());
        assert!(lock.exists());
        // Our own, noted, goes with the leftovers.
        fs::remove_file(&lock).expect("unlock");
        let held = take_lock(dir.path(), &lock, now, Duration::ZERO).expect("lock");
        fs::write(
            note_path(dir.path()),
            identity(&held.metadata().expect("meta")),
        )
        .expect("note");
        clear_left_lock(dir.path());
        assert!(!lock.exists() && !note_path(dir.path()).exists());
    }

    #[test]
    fn no_file_is_an_empty_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read(dir.path()).expect("read"), Table::default());
    }

    /// Fuzzing (issue 16): a `dovecot-keywords` file as any program may have left it.
    mod fuzz {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_keywords_file_is_read_and_written_back_the_same(
                text in "\\PC{0,300}|([0-9 ]{0,4}[ ]\\PC{0,12}\n){0,30}",
            ) {
                let table = Table::parse(&text);
                prop_assert_eq!(Table::parse(&table.render()), table);
            }
        }
    }
}
