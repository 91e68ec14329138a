//! A MySQL/MariaDB login refused for a user that does not exist. Like
//! PostgreSQL's (pg_roles.rs), the server answers it exactly as a wrong password
//! ("Access denied for user ..."), so coffer's error must say both
//! possibilities, name the source and the user, and say how to tell them apart;
//! never the password.

use crate::common::servers::Mariadb;
use crate::common::*;

#[test]
fn a_missing_mariadb_user_is_named_as_a_possibility_with_how_to_check() {
    let m = Mariadb::start();
    m.root_sql("CREATE DATABASE app").expect("create database");
    let tmp = tempfile::tempdir().expect("tempdir");
    let files = tmp.path().join("files");
    std::fs::create_dir_all(&files).expect("mkdir");
    std::fs::write(files.join("a.png"), b"a").expect("write");
    let world = World::new("");
    // The right password of another user: only the user is wrong.
    std::fs::write(world.path("my-password"), &m.password).expect("write");
    let url = format!("mysql://ghost@127.0.0.1:{}/app", m.port);
    world.write_config(&format!(
        "[[jobs.app.sources]]\nname = \"db\"\ntype = \"mysql\"\nurl = \"{url}\"\npassword_file = \"{}\"\n{}\n\
         [jobs.app.check]\nsource = \"db\"\nfiles = \"files\"\nquery = \"SELECT 'a.png', 1\"\n",
        world.path("my-password").display(),
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
        assert!(all.contains("Access denied for user 'ghost'@"), "{all}");
        assert!(
            all.contains("both when the password is wrong and when user ghost does not exist"),
            "{all}"
        );
        assert!(
            all.contains(
                "`sudo mysql -e \"SELECT user, host FROM mysql.user WHERE user='ghost'\"`"
            ),
            "{all}"
        );
        assert!(
            !all.contains(&m.password),
            "the password was printed: {all}"
        );
    };

    // At backup time, where the source connects before the dump.
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

    // A user that exists, with a wrong password: the same hint, naming it.
    let wrong = "not-the-Password-4x";
    std::fs::write(world.path("my-password"), wrong).expect("write");
    let cfg = std::fs::read_to_string(&world.config).expect("config");
    std::fs::write(
        &world.config,
        cfg.replace("mysql://ghost@", "mysql://coffer@"),
    )
    .expect("config");
    let out = world.run(&["backup", "app"]);
    let all = said(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("Access denied for user 'coffer'@"), "{all}");
    assert!(
        all.contains("both when the password is wrong and when user coffer does not exist"),
        "{all}"
    );
    assert!(!all.contains(wrong) && !all.contains(&m.password), "{all}");
}
