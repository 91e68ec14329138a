//! Disaster recovery as the README tells it ("When the server is gone"): a host
//! backs up PostgreSQL and a folder of uploads, then is lost; a new host with
//! nothing but the target, the age identity and the old signing key's public line
//! runs the README's block as written (only its paths swapped for this test's)
//! and gets the database and the files back where they were. The README's words
//! are what runs, so a change to either that breaks the other fails here.

use crate::common::s3::S3Server;
use crate::common::servers::Postgres;
use crate::common::*;
use std::path::Path;

/// The README's block: the ```sh fence after the disaster-recovery comment.
fn readme_block() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let after = readme
        .split_once("<!-- disaster-recovery:")
        .expect("README has the disaster-recovery block")
        .1;
    let body = after
        .split_once("```sh\n")
        .expect("a sh block after the marker")
        .1;
    body.split_once("\n```")
        .expect("the block ends")
        .0
        .to_string()
}

/// The public line of a signing key file, as an operator keeps it.
fn public_line(key_file: &Path) -> String {
    std::fs::read_to_string(key_file)
        .expect("signing key")
        .lines()
        .find_map(|l| l.strip_prefix("# public: "))
        .expect("public line")
        .to_string()
}

fn tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .map(|e| e.expect("walk"))
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                e.path()
                    .strip_prefix(root)
                    .expect("inside")
                    .display()
                    .to_string(),
                std::fs::read(e.path()).expect("read"),
            )
        })
        .collect();
    out.sort();
    out
}

/// The README block's target table, which an S3 walkthrough swaps for its own.
const LOCAL_TABLE: &str = "[targets.offsite]\ntype = \"local\"                 # an S3 bucket: see below\npath = \"/mnt/backups/coffer\"\n";

#[test]
fn the_readme_walkthrough_brings_back_postgres_and_files_from_a_local_target() {
    walkthrough(None);
}

#[test]
fn the_readme_walkthrough_brings_back_postgres_and_files_from_an_s3_target() {
    let s3 = S3Server::start(&["offsite"]);
    walkthrough(Some(&s3));
}

/// Backs up as the old host, loses it, and runs the README's block on a new one
/// whose only link to the old is the target (local, or `s3`), the identity and
/// the signer's public line.
fn walkthrough(s3: Option<&S3Server>) {
    require_tool("pg_dump");
    require_tool("pg_restore");
    require_tool("bash");
    let pg = Postgres::start();
    pg.psql("postgres", "CREATE DATABASE kadi");
    pg.psql(
        "kadi",
        "CREATE TABLE record (id int PRIMARY KEY, file text NOT NULL);
         INSERT INTO record SELECT g, 'up/' || g || '.bin' FROM generate_series(1, 40) g;",
    );
    let world = World::new("");
    let storage = world.path("srv/kadi/storage");
    for i in 1..=40u64 {
        let p = storage.join(format!("up/{i}.bin"));
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, noise(1000 + i as usize * 300, i)).expect("write");
    }
    let pwfile = world.path("pg-password");
    std::fs::write(&pwfile, &pg.password).expect("password file");
    let target_table = |name: &str| match s3 {
        Some(s3) => s3.target_toml(name, "offsite", &s3.secret_file(world.dir.path()), ""),
        None => format!(
            "[targets.{name}]\ntype = \"local\"\npath = \"{}\"\n",
            world.target().display()
        ),
    };
    // The old host: job kadi, PostgreSQL and the uploads.
    let state = world.path("state");
    std::fs::write(
        &world.config,
        format!(
            "[agent]\nstate_dir = \"{}\"\n\n[encryption]\nrecipients = [\"{}\"]\nidentity_file = \"{}\"\n\n\
             {}\n[jobs.kadi]\ntargets = [\"main\"]\n\n\
             [[jobs.kadi.sources]]\nname = \"db\"\ntype = \"postgres\"\nurl = \"{}\"\npassword_file = \"{}\"\n\n\
             [[jobs.kadi.sources]]\nname = \"storage\"\ntype = \"directory\"\npath = \"{}\"\n",
            state.display(),
            world.recipient,
            world.identity.display(),
            target_table("main"),
            pg.url("kadi"),
            pwfile.display(),
            storage.display()
        ),
    )
    .expect("config");
    world.ok(&["backup", "kadi"]);
    pg.psql("kadi", "INSERT INTO record VALUES (41, 'up/41.bin')");
    std::fs::write(storage.join("up/41.bin"), noise(5000, 41)).expect("write");
    world.ok(&["backup", "kadi"]);
    let files_before = tree(&storage);
    let rows_before = pg.psql("kadi", "SELECT count(*), sum(id) FROM record");
    assert_eq!(rows_before, "41|861");
    let signer = public_line(&state.join("signing.key"));
    let latest = world.snapshots_of("kadi").pop().expect("latest");

    // The host is gone: its config, state_dir (signing key, index) and files with it.
    // The new one has an empty database, created as the application's manual says.
    std::fs::remove_dir_all(world.path("srv")).expect("files gone");
    std::fs::remove_dir_all(&state).expect("state gone");
    pg.psql("postgres", "DROP DATABASE kadi");
    pg.psql("postgres", "CREATE DATABASE kadi");
    let kept_identity = world.path("kept/coffer-identity.txt");
    std::fs::create_dir_all(kept_identity.parent().expect("parent")).expect("mkdir");
    std::fs::copy(&world.identity, &kept_identity).expect("kept identity");
    std::fs::remove_file(&world.identity).expect("identity gone from the host");

    let new_etc = world.path("new/etc/coffer");
    let new_state = world.path("new/var/lib/coffer");
    let block = readme_block();
    for needle in [
        "/etc/coffer",
        "/var/lib/coffer",
        "/root/coffer-identity.txt",
        "signer=\"ed25519:...\"",
        LOCAL_TABLE,
    ] {
        assert!(block.contains(needle), "the README block has {needle}");
    }
    let script = block
        .replace("/etc/coffer", &new_etc.display().to_string())
        .replace("/var/lib/coffer", &new_state.display().to_string())
        .replace(
            "/root/coffer-identity.txt",
            &kept_identity.display().to_string(),
        )
        .replace(LOCAL_TABLE, &target_table("offsite"))
        .replace("signer=\"ed25519:...\"", &format!("signer=\"{signer}\""));
    let bin_dir = Path::new(coffer_bin()).parent().expect("bin dir");
    let out = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        // The one path the block does not write: coffer's default config file.
        .env("COFFER_CONFIG", new_etc.join("coffer.toml"))
        .env("PGPASSWORD", &pg.password)
        .output()
        .expect("bash");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    // What the operator saw, for whoever reads this test's output.
    eprintln!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        out.status.success(),
        "the README's block failed ({:?})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status.code()
    );
    // Before trusting, the operator saw what the key signed: in list, then again
    // from verify and restore.
    assert!(
        stdout.contains(&format!(
            "job kadi on target offsite is signed by:\n  {signer} (NOT trusted): 2 snapshots, finished"
        )),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "trusting {signer} for this command only (--trust-signer): on target offsite it signed 2 snapshots of job kadi"
        )),
        "{stderr}"
    );
    assert!(stdout.contains("deep"), "verify was deep: {stdout}");
    assert!(
        stdout.contains(&format!(
            "restoring it where snapshot {} took it from, {}",
            latest,
            storage.display()
        )),
        "{stdout}"
    );
    assert_eq!(
        tree(&storage),
        files_before,
        "the files are back where they were"
    );
    assert_eq!(
        pg.psql("kadi", "SELECT count(*), sum(id) FROM record"),
        rows_before,
        "the database is back"
    );

    // The same config: a key that signed nothing is refused, with the one that did;
    // and a job without sources backs nothing up.
    let new_config = new_etc.join("coffer.toml");
    let coffer = |args: &[&str]| {
        std::process::Command::new(coffer_bin())
            .arg("--config")
            .arg(&new_config)
            .args(args)
            .output()
            .expect("coffer")
    };
    let stranger_key = world.path("stranger.key");
    world.ok(&[
        "keygen",
        "--signing",
        "--output",
        stranger_key.to_str().expect("utf8"),
    ]);
    let stranger = public_line(&stranger_key);
    let stranger = stranger.as_str();
    let out = coffer(&["list", "--job", "kadi", "--json"]);
    assert!(out.status.success());
    let out = coffer(&[
        "restore",
        "--job",
        "kadi",
        "--trust-signer",
        stranger,
        "--to",
        world.path("elsewhere").to_str().expect("utf8"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "--trust-signer {stranger} signed none of the 2 snapshots"
        )) && err.contains(&signer),
        "{err}"
    );
    assert!(!world.path("elsewhere").exists(), "nothing was written");
    let out = coffer(&["backup", "kadi"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("job kadi has no sources"), "{err}");
}
