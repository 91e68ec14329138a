//! What a restore run as root must not hand to others: a target writer's bytes to a
//! program before the signed marker vouches for them (a `restore_command` running
//! `.shell`, SQL reaching pg_restore or the mysql client), and a local user's
//! symlink at (or on the way to) the destination, placed before the restore or
//! swapped in while it runs.

use crate::common::forge::encrypt;
use crate::common::servers::{Mariadb, Postgres};
use crate::common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Plaintext that runs `payload` first and carries 4 MiB of incompressible
/// comments after it, so that the stored object is large too and a restore that
/// holds back only the stream's end hands the payload over long before the
/// stored bytes are found not to match.
fn with_filler(payload: &str) -> Vec<u8> {
    let mut plain = payload.as_bytes().to_vec();
    for (i, chunk) in noise(2 << 20, 7).chunks(32).enumerate() {
        plain.extend_from_slice(format!("-- {i} {}\n", hex(chunk)).as_bytes());
    }
    plain
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn a_forged_dump_reaches_no_restore_command_before_it_matches_the_signed_marker() {
    require_root("restores as root, as the attacked setup did");
    require_tool("sqlite3");
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = tmp.path().join("settings.db");
    sh(&format!(
        "sqlite3 '{}' \"CREATE TABLE kv (k text, v text); INSERT INTO kv VALUES ('a', 'b');\"",
        db.display()
    ));
    // Format 1: the dump is one object (format 2's chunks:
    // `chunks::a_swapped_pack_never_reaches_pg_restore`).
    let world = World::new(&format!(
        "format = 1\n[[jobs.app.sources]]\nname = \"settings\"\ntype = \"command\"\n\
         command = [\"sqlite3\", \"{db}\", \".dump\"]\nrestore_command = [\"sqlite3\", \"{db}\"]\n\
         extension = \"sql\"\n",
        db = db.display()
    ));
    let genuine = world.backup();
    let id = world.backup();
    // A target writer replaces the object (the marker still lists the genuine one):
    // sqlite3 runs `.shell` as the user the restore runs as.
    let proof = tmp.path().join("ran-as");
    let forged = with_filler(&format!(
        ".shell id > {}\nCREATE TABLE pwned (x);\nDELETE FROM kv;\n",
        proof.display()
    ));
    std::fs::write(
        world.snapshot_dir(&id).join("settings.sql.zst.age"),
        encrypt(&world, &forged),
    )
    .expect("forge");
    let out = world.run(&["restore", "--job", "app", "--snapshot", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("settings.sql.zst.age") && stderr(&out).contains("do not match"),
        "{}",
        stderr(&out)
    );
    assert!(
        !proof.exists(),
        "the forged dump ran a shell command: {:?}",
        std::fs::read_to_string(&proof)
    );
    let rows = sh(&format!(
        "sqlite3 '{}' \"SELECT count(*) FROM kv; SELECT count(*) FROM sqlite_master WHERE name = 'pwned';\"",
        db.display()
    ));
    assert_eq!(String::from_utf8_lossy(&rows.stdout), "1\n0\n");
    // The genuine snapshot still restores, through the same staging.
    std::fs::remove_file(&db).expect("rm");
    world.ok(&["restore", "--job", "app", "--snapshot", &genuine]);
    let rows = sh(&format!(
        "sqlite3 '{}' 'SELECT k, v FROM kv;'",
        db.display()
    ));
    assert_eq!(String::from_utf8_lossy(&rows.stdout), "a|b\n");
}

#[test]
fn a_swapped_dump_never_reaches_pg_restore_nor_the_mysql_client() {
    require_tool("pg_restore");
    let pg = Postgres::start();
    pg.psql("postgres", "CREATE DATABASE app");
    // More than the 1 MiB an earlier coffer held back, so a streamed dump would
    // have reached pg_restore.
    pg.psql(
        "app",
        "CREATE TABLE t (v text); INSERT INTO t SELECT md5(i::text) || md5((i * 7)::text) FROM generate_series(1, 200000) i;",
    );
    let my = Mariadb::start();
    my.root_sql(
        "CREATE DATABASE shop; CREATE TABLE shop.t (v text); INSERT INTO shop.t VALUES ('kept');",
    )
    .expect("mysql setup");
    let world = World::new("");
    let pwfile = world.path("pg-password");
    std::fs::write(&pwfile, &pg.password).expect("password file");
    std::fs::write(world.path("my-password"), &my.password).expect("password file");
    // Format 1, as above.
    world.write_config(&format!(
        "format = 1\n[[jobs.app.sources]]\nname = \"db\"\ntype = \"postgres\"\nurl = \"{}\"\npassword_file = \"{}\"\n\n\
         [[jobs.app.sources]]\nname = \"shop\"\ntype = \"mysql\"\nurl = \"{}\"\npassword_file = \"{}\"\n",
        pg.url("app"),
        pwfile.display(),
        my.url("shop"),
        world.path("my-password").display(),
    ));
    let old = world.backup();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let new = world.backup();
    std::fs::copy(
        world.snapshot_dir(&old).join("db.dump.zst.age"),
        world.snapshot_dir(&new).join("db.dump.zst.age"),
    )
    .expect("swap");
    pg.psql("postgres", "CREATE DATABASE fresh");
    let rollbacks = || {
        pg.psql(
            "postgres",
            "SELECT xact_rollback FROM pg_stat_database WHERE datname = 'fresh'",
        )
        .trim()
        .to_string()
    };
    let before = rollbacks();
    let url = pg.url("fresh");
    let out = world.run(&[
        "restore",
        "--job",
        "app",
        "--snapshot",
        &new,
        "--source",
        "db",
        "--db-url",
        &url,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("db.dump.zst.age"), "{}", stderr(&out));
    // pg_restore never ran: no transaction of it was rolled back in `fresh`.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(
        rollbacks(),
        before,
        "pg_restore ran statements of the swapped dump"
    );
    let tables = pg.psql(
        "fresh",
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    );
    assert_eq!(tables.trim(), "0");

    // The mysql client: a forged SQL text that would drop and delete.
    let forged = with_filler("CREATE TABLE shop.pwned (x int);\nDELETE FROM shop.t;\n");
    std::fs::write(
        world.snapshot_dir(&new).join("shop.sql.zst.age"),
        encrypt(&world, &forged),
    )
    .expect("forge");
    let out = world.run(&[
        "restore",
        "--job",
        "app",
        "--snapshot",
        &new,
        "--source",
        "shop",
        "--force",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let rows = my
        .root_sql("SELECT count(*) FROM shop.t; SELECT count(*) FROM information_schema.tables WHERE table_name = 'pwned';")
        .expect("query");
    let rows: Vec<&str> = rows.split_whitespace().collect();
    assert!(
        rows.ends_with(&["1", "0"]) || rows == ["1", "0"],
        "{rows:?}"
    );
}

/// A directory source of `files` files and the world that backs it up; returns
/// the world, its temp dir, the source folder and the snapshot id.
fn tree_world(files: usize) -> (World, tempfile::TempDir, std::path::PathBuf, String) {
    require_root("restores as root into folders another user owns");
    let tmp = tempfile::tempdir().expect("tempdir");
    let appdata = tmp.path().join("appdata");
    let storage = appdata.join("storage");
    std::fs::create_dir_all(&storage).expect("mkdir");
    for i in 0..files {
        let sub = storage.join(format!("d{}", i % 20));
        std::fs::create_dir_all(&sub).expect("mkdir");
        std::fs::write(sub.join(format!("f{i}")), noise(2048, i as u64)).expect("write");
    }
    let world = World::new(&dir_source("storage", &storage, ""));
    let id = world.backup();
    // The application's user owns its folders, as the manuals set them up.
    sh(&format!("chown -R 4242:4242 '{}'", appdata.display()));
    (world, tmp, storage, id)
}

/// A folder root must not touch: a few files, mode 0700, owned by root.
fn victim(tmp: &Path) -> std::path::PathBuf {
    let v = tmp.join("victim");
    std::fs::create_dir_all(&v).expect("mkdir");
    std::fs::write(v.join("keep.txt"), b"precious").expect("write");
    std::fs::set_permissions(&v, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    v
}

fn assert_untouched(v: &Path) {
    let md = std::fs::metadata(v).expect("victim");
    assert_eq!(md.mode() & 0o7777, 0o700, "the victim's mode changed");
    assert_eq!((md.uid(), md.gid()), (0, 0), "the victim's owner changed");
    let names: Vec<String> = std::fs::read_dir(v)
        .expect("read")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["keep.txt"], "the victim's contents changed");
    assert_eq!(
        std::fs::read(v.join("keep.txt")).expect("read"),
        b"precious"
    );
}

#[test]
fn a_symlink_at_the_destination_is_refused_with_or_without_force() {
    let (world, tmp, storage, id) = tree_world(10);
    let v = victim(tmp.path());
    // The application's user replaces its folder with a link to root's.
    std::fs::rename(&storage, tmp.path().join("appdata/storage.old")).expect("rename");
    symlink(&v, &storage).expect("symlink");
    for force in [true, false] {
        let mut args = vec!["restore", "--job", "app", "--snapshot", &id];
        if force {
            args.push("--force");
        }
        let out = world.run(&args);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("is a symbolic link") && stderr(&out).contains("storage"),
            "{}",
            stderr(&out)
        );
        assert_untouched(&v);
    }
    assert!(
        std::fs::symlink_metadata(&storage)
            .expect("link")
            .is_symlink()
    );

    // `--to DEST` with DEST/<source> a link.
    let dest = tmp.path().join("dest");
    std::fs::create_dir(&dest).expect("mkdir");
    symlink(&v, dest.join("storage")).expect("symlink");
    let dest_s = dest.display().to_string();
    let out = world.run(&[
        "restore",
        "--job",
        "app",
        "--snapshot",
        &id,
        "--to",
        &dest_s,
        "--force",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is a symbolic link"),
        "{}",
        stderr(&out)
    );
    assert_untouched(&v);

    // A link on the way, in a folder the application's user owns: not followed.
    let real = tmp.path().join("real");
    std::fs::create_dir_all(real.join("storage")).expect("mkdir");
    let appdata = tmp.path().join("appdata");
    symlink(&real, appdata.join("via")).expect("symlink");
    sh(&format!(
        "chown -h 4242:4242 '{}'",
        appdata.join("via").display()
    ));
    let through = appdata.join("via");
    let to = through.display().to_string();
    let out = world.run(&["restore", "--job", "app", "--snapshot", &id, "--to", &to]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("which its owner (uid 4242) can change"),
        "{}",
        stderr(&out)
    );
    assert!(
        std::fs::read_dir(real.join("storage"))
            .expect("read")
            .next()
            .is_none(),
        "written through an untrusted link"
    );
    // The same link in a folder only root can change is followed.
    let trusted = tmp.path().join("trusted");
    std::fs::create_dir(&trusted).expect("mkdir");
    std::fs::set_permissions(&trusted, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    symlink(&real, trusted.join("via")).expect("symlink");
    let to = trusted.join("via").display().to_string();
    world.expect(
        &["restore", "--job", "app", "--snapshot", &id, "--to", &to],
        0,
    );
    assert!(real.join("storage/d0/f0").is_file());
}

#[test]
fn a_destination_swapped_for_a_symlink_during_the_restore_is_never_written_through() {
    let (world, tmp, storage, id) = tree_world(4000);
    let v = victim(tmp.path());
    let moved = tmp.path().join("appdata/storage.moved");
    // The application's user waits for the restore to start unpacking, then moves
    // the folder away and puts a link to root's folder in its place.
    let watcher = {
        let (storage, moved, v) = (storage.clone(), moved.clone(), v.clone());
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while std::time::Instant::now() < deadline {
                let started = std::fs::read_dir(&storage).ok().is_some_and(|d| {
                    d.flatten().any(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .starts_with(".coffer-restore-")
                    })
                });
                if started {
                    std::fs::rename(&storage, &moved).expect("rename");
                    symlink(&v, &storage).expect("symlink");
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            false
        })
    };
    let out = world.run(&["restore", "--job", "app", "--snapshot", &id, "--force"]);
    assert!(
        watcher.join().expect("watcher"),
        "the restore never started unpacking"
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("was replaced by a symbolic link while coffer restored into it"),
        "{}",
        stderr(&out)
    );
    assert_untouched(&v);
    // The restore went on in the folder it had opened, wherever that went.
    assert!(moved.join("d0/f0").is_file());
    assert!(
        !stderr(&out).contains("/proc/self/fd"),
        "messages name the destination as given: {}",
        stderr(&out)
    );
}
