//! Validation of `[[jobs.NAME.sources]]`: one flat raw struct for every source
//! type (see `raw`), so the keys that belong to another type are refused here with
//! a message naming the key. Its own module because sources carry the secrets
//! (URLs whose credentials are taken out, `password_file`, `password_env`) and
//! are the largest part of the schema.
//!
//! Just over 400 lines: every type's keys are checked against the one flat table
//! here, so that a key of another type is refused with the same message.

use super::Validator;
use crate::locate::{Seg, child, item};
use crate::raw::{RawSource, SourceType};
use crate::source_types::*;
use crate::types::*;
use std::path::Path;

/// The keys only some source types take, and those types (`name` and `type`
/// every source takes). One table for the check below and for the list an
/// unknown key's message offers (`keys_of`).
const TYPED_KEYS: [(&str, &[SourceType]); 18] = [
    ("path", &[SourceType::Directory, SourceType::Sqlite]),
    ("exclude", &[SourceType::Directory]),
    ("exclude_if_present", &[SourceType::Directory]),
    ("exclude_caches", &[SourceType::Directory]),
    ("skip_unreadable", &[SourceType::Directory]),
    ("one_file_system", &[SourceType::Directory]),
    ("snapshot", &[SourceType::Directory]),
    ("snapshot_command", &[SourceType::Directory]),
    ("release_command", &[SourceType::Directory]),
    (
        "restore",
        &[SourceType::Directory, SourceType::Sqlite, SourceType::Redis],
    ),
    (
        "url",
        &[SourceType::Postgres, SourceType::Mysql, SourceType::Redis],
    ),
    (
        "password_file",
        &[SourceType::Postgres, SourceType::Mysql, SourceType::Redis],
    ),
    (
        "password_env",
        &[SourceType::Postgres, SourceType::Mysql, SourceType::Redis],
    ),
    (
        "version_query",
        &[SourceType::Postgres, SourceType::Mysql, SourceType::Sqlite],
    ),
    ("rdb_path", &[SourceType::Redis]),
    ("command", &[SourceType::Command]),
    ("restore_command", &[SourceType::Command]),
    ("extension", &[SourceType::Command]),
];

/// The keys a source of type `kind` takes.
pub(crate) fn keys_of(kind: SourceType) -> Vec<&'static str> {
    ["name", "type"]
        .into_iter()
        .chain(
            TYPED_KEYS
                .iter()
                .filter(|(_, types)| types.contains(&kind))
                .map(|(k, _)| *k),
        )
        .collect()
}

impl Validator<'_> {
    pub(super) fn source(&mut self, at: &[Seg], s: RawSource) -> Option<Source> {
        self.name_ok(&child(at, "name"), &s.name);
        let type_name = format!("{:?}", s.kind).to_lowercase();
        // Keys given; the types they mean something for are in TYPED_KEYS.
        let given: [(&str, bool); 18] = [
            ("path", s.path.is_some()),
            ("exclude", !s.exclude.is_empty()),
            ("exclude_if_present", !s.exclude_if_present.is_empty()),
            ("exclude_caches", s.exclude_caches),
            ("skip_unreadable", s.skip_unreadable),
            ("one_file_system", s.one_file_system),
            ("snapshot", s.snapshot.is_some()),
            ("snapshot_command", s.snapshot_command.is_some()),
            ("release_command", s.release_command.is_some()),
            ("restore", s.restore.is_some()),
            ("url", s.url.is_some()),
            ("password_file", s.password_file.is_some()),
            ("password_env", s.password_env.is_some()),
            ("version_query", s.version_query.is_some()),
            ("rdb_path", s.rdb_path.is_some()),
            ("command", s.command.is_some()),
            ("restore_command", s.restore_command.is_some()),
            ("extension", s.extension.is_some()),
        ];
        for (key, is_given) in given {
            let types = TYPED_KEYS
                .iter()
                .find(|(k, _)| *k == key)
                .map_or(&[][..], |(_, t)| *t);
            if is_given && !types.contains(&s.kind) {
                self.problem(
                    &child(at, key),
                    format!("`{key}` does not apply to a {type_name} source; remove it"),
                );
            }
        }
        let restore = match s.restore {
            Some(r) => self.restore_policy(&child(at, "restore"), r),
            None => RestorePolicy::default(),
        };
        let kind = match s.kind {
            SourceType::Directory => {
                let Some(path) = s.path else {
                    self.problem(at, "a directory source needs `path = \"/dir/to/back/up\"`");
                    return None;
                };
                for (i, pat) in s.exclude.iter().enumerate() {
                    if pat.trim().is_empty() {
                        self.problem(&item(&child(at, "exclude"), i), "empty exclude pattern");
                    }
                }
                for (i, name) in s.exclude_if_present.iter().enumerate() {
                    if let Err(why) = tag_name_ok(name) {
                        self.problem(&item(&child(at, "exclude_if_present"), i), why);
                    }
                }
                let snapshot =
                    self.fs_snapshot(at, s.snapshot, s.snapshot_command, s.release_command);
                SourceKind::Directory(DirectorySource {
                    path: self.abs(&path),
                    exclude: s.exclude,
                    exclude_if_present: s.exclude_if_present,
                    exclude_caches: s.exclude_caches,
                    skip_unreadable: s.skip_unreadable,
                    one_file_system: s.one_file_system,
                    snapshot,
                    restore,
                })
            }
            SourceType::Postgres | SourceType::Mysql => {
                let schemes: &[&str] = if s.kind == SourceType::Postgres {
                    &["postgres", "postgresql"]
                } else {
                    &["mysql", "mariadb"]
                };
                let (url, in_url) =
                    self.url(&child(at, "url"), s.url.as_deref(), schemes, &type_name)?;
                let password = self.password(
                    at,
                    in_url,
                    s.password_file.as_deref(),
                    s.password_env.as_deref(),
                );
                let db = DatabaseSource {
                    url,
                    password,
                    version_query: s.version_query,
                };
                if s.kind == SourceType::Postgres {
                    SourceKind::Postgres(db)
                } else {
                    SourceKind::Mysql(db)
                }
            }
            SourceType::Sqlite => {
                let Some(path) = s.path else {
                    self.problem(
                        at,
                        "a sqlite source needs `path = \"/var/lib/app/db.sqlite\"`",
                    );
                    return None;
                };
                SourceKind::Sqlite(SqliteSource {
                    path: self.abs(&path),
                    version_query: s.version_query,
                    restore,
                })
            }
            SourceType::Redis => {
                let (url, in_url) =
                    self.url(&child(at, "url"), s.url.as_deref(), &["redis"], &type_name)?;
                let password = self.password(
                    at,
                    in_url,
                    s.password_file.as_deref(),
                    s.password_env.as_deref(),
                );
                SourceKind::Redis(RedisSource {
                    url,
                    password,
                    rdb_path: s.rdb_path.as_deref().map(|p| self.abs(p)),
                    restore,
                })
            }
            SourceType::Command => {
                let Some(command) = s.command.filter(|c| !c.is_empty()) else {
                    self.problem(
                        at,
                        "a command source needs `command = [\"program\", \"arg\", ...]` writing the backup to stdout",
                    );
                    return None;
                };
                self.argv_words(&child(at, "command"), &command);
                if let Some(restore) = &s.restore_command {
                    self.argv_words(&child(at, "restore_command"), restore);
                }
                let extension = s.extension.unwrap_or_else(|| "bin".to_string());
                if !crate::names::is_extension(&extension) {
                    self.problem(
                        &child(at, "extension"),
                        "use 1-16 letters and digits, e.g. \"dump\"",
                    );
                }
                SourceKind::Command(CommandSource {
                    command,
                    restore_command: s.restore_command.filter(|c| !c.is_empty()),
                    extension,
                })
            }
        };
        Some(Source { name: s.name, kind })
    }

    /// A directory's filesystem snapshot: `snapshot = "btrfs"`, or the generic pair
    /// `snapshot_command` + `release_command`; never both forms, never a snapshot
    /// command without the command that releases it.
    fn fs_snapshot(
        &mut self,
        at: &[Seg],
        kind: Option<String>,
        create: Option<Vec<String>>,
        release: Option<Vec<String>>,
    ) -> Option<FsSnapshot> {
        for (key, argv) in [("snapshot_command", &create), ("release_command", &release)] {
            if argv
                .as_ref()
                .is_some_and(|a| a.first().is_none_or(|p| p.trim().is_empty()))
            {
                self.problem(
                    &child(at, key),
                    format!("`{key}` is empty; give the program and its arguments, e.g. [\"/usr/local/sbin/snap\", \"create\"]"),
                );
                return None;
            }
            if let Some(argv) = argv {
                self.argv_words(&child(at, key), argv);
            }
        }
        match (kind, create, release) {
            (None, None, None) => None,
            (Some(_), Some(_), _) | (Some(_), None, Some(_)) => {
                self.problem(
                    &child(at, "snapshot"),
                    "`snapshot` and `snapshot_command`/`release_command` are two ways to take the same snapshot; keep one",
                );
                None
            }
            (Some(k), None, None) if k == "btrfs" => Some(FsSnapshot::Btrfs),
            (Some(k), None, None) => {
                self.problem(
                    &child(at, "snapshot"),
                    format!("unknown snapshot kind {k:?}: use \"btrfs\", or snapshot_command and release_command for LVM, ZFS and others"),
                );
                None
            }
            (None, Some(create), Some(release)) => Some(FsSnapshot::Command { create, release }),
            (None, Some(_), None) => {
                self.problem(
                    &child(at, "snapshot_command"),
                    "a snapshot_command needs a release_command that removes the snapshot (it gets COFFER_SNAPSHOT_PATH); add it",
                );
                None
            }
            (None, None, Some(_)) => {
                self.problem(
                    &child(at, "release_command"),
                    "a release_command without snapshot_command releases nothing; add snapshot_command or remove it",
                );
                None
            }
        }
    }

    /// An argv array whose program holds a space is a whole command line written
    /// where one word per element goes: run as is, it would fail only at backup time
    /// ("no such file"), so it is refused here with the array it should be.
    fn argv_words(&mut self, at: &[Seg], argv: &[String]) {
        let Some(program) = argv.first() else { return };
        if program.trim().contains(char::is_whitespace) && !Path::new(program).exists() {
            let words: Vec<String> = program
                .split_whitespace()
                .chain(argv[1..].iter().map(String::as_str))
                .map(|w| format!("{w:?}"))
                .collect();
            self.problem(
                at,
                format!(
                    "program {program:?} holds spaces: this key is one program and its arguments, one word per element, run without a shell; write [{}]",
                    words.join(", ")
                ),
            );
        }
    }

    /// Checks a connection URL and takes every credential out of it (see `urls`),
    /// so that the URL itself can be shown and passed to a child process. Returns
    /// the password found and where it was, for the conflict check in `password`.
    fn url(
        &mut self,
        at: &[Seg],
        raw: Option<&str>,
        schemes: &[&str],
        type_name: &str,
    ) -> Option<(String, Option<(Secret, String)>)> {
        let Some(raw) = raw else {
            self.problem(
                &at[..at.len() - 1],
                format!(
                    "a {type_name} source needs `url = \"{}://user@host:port/...\"`",
                    schemes[0]
                ),
            );
            return None;
        };
        let mut parsed = match url::Url::parse(raw) {
            Ok(u) => u,
            // The message of the url crate does not repeat the input: safe to show.
            Err(e) => {
                self.problem(at, format!("not a valid URL: {e}"));
                return None;
            }
        };
        if !schemes.contains(&parsed.scheme()) {
            self.problem(
                at,
                format!(
                    "scheme `{}` is not one of: {}",
                    parsed.scheme(),
                    schemes.join(", ")
                ),
            );
            return None;
        }
        match crate::urls::take_password(&mut parsed) {
            Ok(password) => Some((parsed.to_string(), password)),
            Err(msg) => {
                self.problem(at, msg);
                None
            }
        }
    }

    fn password(
        &mut self,
        at: &[Seg],
        in_url: Option<(Secret, String)>,
        file: Option<&Path>,
        env: Option<&str>,
    ) -> Option<Secret> {
        if let Some(var) = env {
            // Known even when unset: the variable must never reach a child.
            crate::types::note_secret_env(var);
        }
        if let Some((_, place)) = &in_url
            && let Some(key) = [
                ("password_file", file.is_some()),
                ("password_env", env.is_some()),
            ]
            .iter()
            .find_map(|(k, given)| given.then_some(*k))
        {
            // Two passwords: which one is meant cannot be guessed.
            self.problem(
                &child(at, "url"),
                format!("the URL carries a password ({place}) and {key} is set too; remove the password from the URL"),
            );
            return None;
        }
        if let Some(file) = file {
            return self
                .read_file(&child(at, "password_file"), file)
                .map(|(_, s)| Secret::new(s.trim_end_matches(['\n', '\r']).to_string()));
        }
        if let Some(var) = env {
            return match std::env::var(var) {
                Ok(v) => Some(Secret::new(v)),
                Err(_) => {
                    self.problem(
                        &child(at, "password_env"),
                        format!("environment variable {var} is not set"),
                    );
                    None
                }
            };
        }
        in_url.map(|(secret, _)| secret)
    }
}

/// A tag file is looked up by name in each directory: a name, not a path or a
/// pattern.
fn tag_name_ok(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(format!(
            "{name:?} is not a file name; give the name of the tag file, like \".nobackup\""
        ));
    }
    if name.contains(['/', '\0']) {
        return Err(format!(
            "{name:?} is a path; give only the file's name (it is looked for in every directory), like \".nobackup\""
        ));
    }
    Ok(())
}
