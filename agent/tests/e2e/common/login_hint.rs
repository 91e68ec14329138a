//! What the login-hint tests share (`pg_roles::`, `my_users::`): a job whose
//! database source logs in as `ghost`, a user that does not exist, with another
//! user's right password (so only the user is wrong), and a check on one file;
//! and the two places a refused login must be explained, backup and
//! `check --db-only`.

use super::{World, dir_source};
use std::process::Output;

pub struct GhostLogin {
    pub world: World,
    _files: tempfile::TempDir,
}

/// A run's whole output, stdout then stderr.
pub fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl GhostLogin {
    /// `kind` is the source type, `url` names user ghost, `password` is another
    /// user's, written to the file the source reads it from.
    pub fn new(kind: &str, url: &str, password: &str) -> GhostLogin {
        let files = tempfile::tempdir().expect("tempdir");
        std::fs::write(files.path().join("a.png"), b"a").expect("write");
        let world = World::new("");
        let pwfile = world.path("db-password");
        std::fs::write(&pwfile, password).expect("write");
        world.write_config(&format!(
            "[[jobs.app.sources]]\nname = \"db\"\ntype = \"{kind}\"\nurl = \"{url}\"\npassword_file = \"{}\"\n{}\n\
             [jobs.app.check]\nsource = \"db\"\nfiles = \"files\"\nquery = \"SELECT 'a.png', 1\"\n",
            pwfile.display(),
            dir_source("files", files.path(), "")
        ));
        GhostLogin {
            world,
            _files: files,
        }
    }

    /// A backup (where the source connects) and `check --db-only` (which runs the
    /// check query on the live database) both fail with what `hint` checks.
    pub fn both_explain(&self, hint: impl Fn(&str)) {
        let out = self.world.run(&["backup", "app"]);
        let all = said(&out);
        assert_eq!(out.status.code(), Some(1), "{all}");
        hint(&all);
        assert!(all.contains("source db"), "{all}");

        let out = self.world.run(&["check", "--job", "app", "--db-only"]);
        let all = said(&out);
        assert_ne!(out.status.code(), Some(0), "{all}");
        hint(&all);
        assert!(all.contains("check query on db"), "{all}");
    }
}
