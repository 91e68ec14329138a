//! A PostgreSQL login refused for a role that does not exist. The server answers
//! it exactly as a wrong password ("password authentication failed"), so coffer's
//! error must say both possibilities, name the source and the user, and say how
//! to tell them apart; never the password. Its own file: databases.rs is long.

use crate::common::servers::Postgres;
use crate::common::*;

#[test]
fn a_missing_role_is_named_as_a_possibility_with_how_to_check() {
    let pg = Postgres::start();
    pg.psql("postgres", "CREATE DATABASE kinto");
    let tmp = tempfile::tempdir().expect("tempdir");
    let files = tmp.path().join("files");
    std::fs::create_dir_all(&files).expect("mkdir");
    std::fs::write(files.join("a.png"), b"a").expect("write");
    let world = World::new("");
    // The right password of another role: only the role is wrong.
    std::fs::write(world.path("pg-password"), &pg.password).expect("write");
    let url = format!("postgres://ghost@127.0.0.1:{}/kinto", pg.port);
    world.write_config(&format!(
        "[[jobs.app.sources]]\nname = \"db\"\ntype = \"postgres\"\nurl = \"{url}\"\npassword_file = \"{}\"\n{}\n\
         [jobs.app.check]\nsource = \"db\"\nfiles = \"files\"\nquery = \"SELECT 'a.png', 1\"\n",
        world.path("pg-password").display(),
        dir_source("files", &files, "")
    ));
    let said = |out: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let expect_hint = |all: &str| {
        assert!(all.contains("source db") || all.contains("on db"), "{all}");
        assert!(
            all.contains("password authentication failed for user \"ghost\""),
            "{all}"
        );
        assert!(
            all.contains("both when the password is wrong and when role ghost does not exist"),
            "{all}"
        );
        assert!(
            all.contains("`sudo -u postgres psql -c '\\du ghost'`"),
            "{all}"
        );
        assert!(
            !all.contains(&pg.password),
            "the password was printed: {all}"
        );
    };

    // At backup time, where the source connects to freeze the database.
    let out = world.run(&["backup", "app"]);
    let all = said(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    expect_hint(&all);
    assert!(all.contains("source db"), "{all}");

    // `coffer check --db-only`, which runs the check query on the live database.
    let out = world.run(&["check", "--job", "app", "--db-only"]);
    let all = said(&out);
    assert_ne!(out.status.code(), Some(0), "{all}");
    expect_hint(&all);
    assert!(all.contains("check query on db"), "{all}");
}
