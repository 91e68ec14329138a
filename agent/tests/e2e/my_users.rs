//! A MySQL/MariaDB login refused for a user that does not exist. Like
//! PostgreSQL's (pg_roles.rs), the server answers it exactly as a wrong password
//! ("Access denied for user ..."), so coffer's error must say both
//! possibilities, name the source and the user, and say how to tell them apart;
//! never the password.

use crate::common::login_hint::{GhostLogin, said};
use crate::common::servers::Mariadb;

#[test]
fn a_missing_mariadb_user_is_named_as_a_possibility_with_how_to_check() {
    let m = Mariadb::start();
    m.root_sql("CREATE DATABASE app").expect("create database");
    // The right password of another user: only the user is wrong.
    let url = format!("mysql://ghost@127.0.0.1:{}/app", m.port);
    let ghost = GhostLogin::new("mysql", &url, &m.password);
    let world = &ghost.world;
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

    ghost.both_explain(expect_hint);

    // A user that exists, with a wrong password: the same hint, naming it.
    let wrong = "not-the-Password-4x";
    std::fs::write(world.path("db-password"), wrong).expect("write");
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
