//! A PostgreSQL login refused for a role that does not exist. The server answers
//! it exactly as a wrong password ("password authentication failed"), so coffer's
//! error must say both possibilities, name the source and the user, and say how
//! to tell them apart; never the password. Its own file: databases.rs is long.

use crate::common::login_hint::GhostLogin;
use crate::common::servers::Postgres;

#[test]
fn a_missing_role_is_named_as_a_possibility_with_how_to_check() {
    let pg = Postgres::start();
    pg.psql("postgres", "CREATE DATABASE kinto");
    // The right password of another role: only the role is wrong.
    let url = format!("postgres://ghost@127.0.0.1:{}/kinto", pg.port);
    let ghost = GhostLogin::new("postgres", &url, &pg.password);
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

    ghost.both_explain(expect_hint);
}
