//! Secrets stay where they belong, against a real PostgreSQL: a password written in
//! a URL's query reaches pg_dump only through PGPASSWORD, and never its command
//! line, `config check`, `list --json`, the status file, the manifest, error
//! messages or `GET /api/v1/jobs`; hooks, command sources and pg_dump do not
//! inherit `password_env` variables or AWS credentials.
//!
//! pg_dump's command line and environment are recorded by a wrapper script put
//! first on coffer's PATH, which then runs the real pg_dump: that is exactly what
//! `ps` (/proc/PID/cmdline) would show for the child.

use crate::common::forge;
use crate::common::servers::Postgres;
use crate::common::service::{Agent, http_raw};
use crate::common::*;
use std::path::{Path, PathBuf};

/// A `pg_dump` wrapper in `dir/bin` that appends its argv and environment to
/// `dir/argv` and `dir/env`; returns the PATH that puts it first.
fn pg_dump_recorder(dir: &Path) -> String {
    require_tool("pg_dump");
    let real = String::from_utf8(sh("command -v pg_dump").stdout)
        .expect("utf8")
        .trim()
        .to_string();
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n' -- \"$@\" >> '{argv}'\nenv >> '{env}'\nexec '{real}' \"$@\"\n",
        argv = dir.join("argv").display(),
        env = dir.join("env").display(),
    );
    let wrapper = bin.join("pg_dump");
    std::fs::write(&wrapper, script).expect("write wrapper");
    sh(&format!("chmod 0755 '{}'", wrapper.display()));
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Stream source `file` (`<source>.<extension>`) of snapshot `id`, restored as a
/// file: format 2 keeps dumps as chunks in packs, not as objects of their own.
fn restored_file(world: &World, id: &str, file: &str) -> std::path::PathBuf {
    let to = world.path(&format!("restored-{id}"));
    if !to.exists() {
        world.restore_snapshot(id);
    }
    to.join(file)
}

fn assert_hidden(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "{what} shows the secret {s:?}:\n{text}");
    }
}

/// The `/api/v1/jobs` answer of a briefly started agent on this world's config.
fn api_jobs(world: &World) -> String {
    let port = free_port();
    let cfg = read(&world.config);
    world.listen_on(port);
    let agent = Agent::start(world, port);
    let answer = http_raw(port, "GET", "/api/v1/jobs", "");
    drop(agent);
    std::fs::write(&world.config, cfg).expect("config");
    answer
}

#[test]
fn a_password_in_the_url_query_reaches_only_pg_dumps_environment() {
    require_tool("pg_restore");
    let pg = Postgres::start();
    // A password with a character that must be percent-encoded in the URL.
    let secret = "Qz9-url-secret&x";
    let encoded = "Qz9-url-secret%26x";
    let core = "Qz9-url-secret";
    pg.psql(
        "postgres",
        &format!("CREATE ROLE app LOGIN PASSWORD '{secret}'"),
    );
    pg.psql("postgres", "CREATE DATABASE app OWNER app");
    pg.psql(
        "app",
        "CREATE TABLE t (x int); INSERT INTO t VALUES (42); ALTER TABLE t OWNER TO app",
    );
    let rec = tempfile::tempdir().expect("tempdir");
    let mut world = World::new("");
    world
        .env
        .push(("PATH".into(), pg_dump_recorder(rec.path())));
    let source = |db: &str| {
        format!(
            "[[jobs.app.sources]]\nname = \"db\"\ntype = \"postgres\"\n\
             url = \"postgres://app@127.0.0.1:{}/{db}?password={encoded}&application_name=coffer-test\"\n",
            pg.port
        )
    };
    world.write_config(&source("app"));
    let shown = format!(
        "postgres://app@127.0.0.1:{}/app?application_name=coffer-test",
        pg.port
    );

    let out = world.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(0));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&format!("{shown} (password set)")), "{text}");
    assert_hidden("config check", &text, &[core]);

    let out = world
        .command(&["backup", "app"])
        .env("COFFER_LOG", "debug")
        .output()
        .expect("run coffer");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_hidden("the backup's output and log", &stderr, &[core]);
    assert_hidden(
        "the backup's stdout",
        &String::from_utf8_lossy(&out.stdout),
        &[core],
    );

    // pg_dump's command line, as ps shows it: the URL without the password; the
    // password only in its environment.
    let argv = read(&rec.path().join("argv"));
    assert!(argv.contains(&format!("--dbname={shown}\n")), "{argv}");
    assert_hidden("pg_dump's command line", &argv, &[core]);
    assert!(
        read(&rec.path().join("env")).contains(&format!("PGPASSWORD={secret}\n")),
        "pg_dump did not get the password in PGPASSWORD"
    );

    let list = world.ok(&["list", "--job", "app", "--json"]);
    assert_hidden("list --json", &list, &[core]);
    let status = read(&world.path("state/status/app.json"));
    assert_hidden("the status file", &status, &[core]);

    let id = world.snapshots().pop().expect("a snapshot");
    let manifest =
        String::from_utf8_lossy(&forge::manifest_plain(&world, &world.target(), &id)).into_owned();
    assert!(manifest.contains(&shown), "no origin in:\n{manifest}");
    assert_hidden("the manifest", &manifest, &[core]);
    // And the dump really came through with that password.
    let dump = std::process::Command::new("pg_restore")
        .args(["-f", "-", "-a"])
        .arg(restored_file(&world, &id, "db.dump"))
        .output()
        .expect("pg_restore");
    assert!(
        String::from_utf8_lossy(&dump.stdout).contains("42"),
        "the dump lacks the row"
    );

    // A failing run: the database does not exist.
    world.write_config(&source("nodb"));
    let out = world.run(&["backup", "app"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("nodb"),
        "the error does not say what failed: {stderr}"
    );
    assert_hidden("the error of a failing run", &stderr, &[core]);
    let status = read(&world.path("state/status/app.json"));
    assert!(status.contains("nodb"), "{status}");
    assert_hidden("the status file after a failure", &status, &[core]);
    let api = api_jobs(&world);
    assert!(api.starts_with("HTTP/1.1 200"), "{api}");
    assert!(api.contains("nodb"), "no last_error in {api}");
    assert_hidden("GET /api/v1/jobs", &api, &[core]);
}

#[test]
fn hooks_command_sources_and_pg_dump_inherit_no_secret_from_the_environment() {
    let pg = Postgres::start();
    let rec = tempfile::tempdir().expect("tempdir");
    let mut world = World::new("");
    let aws_secret = "aws-Secret-Value-0042";
    let aws_token = "aws-Session-Token-0042";
    for (k, v) in [
        ("COFFER_TEST_PG_PASSWORD", pg.password.as_str()),
        ("AWS_SECRET_ACCESS_KEY", aws_secret),
        ("AWS_SESSION_TOKEN", aws_token),
        ("HARMLESS_SETTING", "still-here"),
    ] {
        world.env.push((k.into(), v.into()));
    }
    world
        .env
        .push(("PATH".into(), pg_dump_recorder(rec.path())));
    let hook_env = |name: &str| -> PathBuf { rec.path().join(name) };
    world.write_config(&format!(
        "before = [\"sh -c 'env > {before}'\"]\nafter = [\"sh -c 'env > {after}'\"]\n\n\
         [[jobs.app.sources]]\nname = \"db\"\ntype = \"postgres\"\nurl = \"{url}\"\n\
         password_env = \"COFFER_TEST_PG_PASSWORD\"\n\n\
         [[jobs.app.sources]]\nname = \"envdump\"\ntype = \"command\"\n\
         command = [\"sh\", \"-c\", \"env\"]\nextension = \"txt\"\n",
        before = hook_env("before.env").display(),
        after = hook_env("after.env").display(),
        url = pg.url("postgres"),
    ));
    let id = world.backup();
    let secrets = [pg.password.as_str(), aws_secret, aws_token];
    for name in ["before.env", "after.env"] {
        let env = read(&hook_env(name));
        assert!(env.contains("COFFER_JOB=app\n"), "{name}: {env}");
        assert!(
            env.contains("HARMLESS_SETTING=still-here\n"),
            "{name}: {env}"
        );
        assert_hidden(name, &env, &secrets);
        assert!(!env.contains("COFFER_TEST_PG_PASSWORD="), "{name}: {env}");
    }
    let dumped = read(&restored_file(&world, &id, "envdump.txt"));
    assert!(dumped.contains("HARMLESS_SETTING=still-here\n"), "{dumped}");
    assert_hidden("the command source's environment", &dumped, &secrets);

    // pg_dump gets its password, and nothing else that is secret.
    let env = read(&rec.path().join("env"));
    assert!(
        env.contains(&format!("PGPASSWORD={}\n", pg.password)),
        "pg_dump did not get PGPASSWORD"
    );
    assert_hidden("pg_dump's environment", &env, &[aws_secret, aws_token]);
    assert!(!env.contains("COFFER_TEST_PG_PASSWORD="), "{env}");
}
