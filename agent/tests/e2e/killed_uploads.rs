//! Runs killed with -9 while a pack is on its way to a remote target.
//!
//! WebDAV: rclone, like many servers, writes a PUT in place, so what the PUT had
//! sent stays on the server. coffer's writes go to a staging name `<object>#1`
//! and are moved into place, so the server holds a cut staging object, never a
//! cut pack under a pack's name. Listings, verify and the next run pass it by;
//! prune keeps it while it is young (a run elsewhere may be writing it) and
//! removes it after.
//!
//! Azure: a pack goes up as blocks that become a blob only when the block list
//! is committed, so the blocks a killed run sent are no blob at all (Azure drops
//! uncommitted blocks after a week); the next run and verify go on as before.

use crate::common::azurite::Azurite;
use crate::common::webdav::WebdavServer;
use crate::common::*;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// Every file under `dir` on the server's disk, relative, with its size.
fn on_server(dir: &Path) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e
                .path()
                .strip_prefix(dir)
                .expect("below")
                .display()
                .to_string();
            (rel, e.metadata().map(|m| m.len()).unwrap_or(0))
        })
        .collect();
    out.sort();
    out
}

fn names(files: &[(String, u64)]) -> Vec<String> {
    files.iter().map(|(n, _)| n.clone()).collect()
}

/// The staging objects once the server has stopped writing them: it goes on
/// with what its socket still held after the client died.
fn settled(dir: &Path) -> Vec<(String, u64)> {
    let mut last = staging(dir);
    for _ in 0..300 {
        std::thread::sleep(Duration::from_millis(1000));
        let now = staging(dir);
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("the server never stopped writing {last:?}");
}

fn staging(dir: &Path) -> Vec<(String, u64)> {
    on_server(dir)
        .into_iter()
        .filter(|(n, _)| n.ends_with("#1"))
        .collect()
}

/// A world whose job backs up `data/` to the target `table` defines (named
/// `target`), after a first backup of one small file.
fn backed_up_once(world: &World, target: &str, table: &str) -> std::path::PathBuf {
    let data = world.path("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("first.bin"), noise(200_000, 1)).expect("write");
    world.write_config_with(table, &[target], &dir_source("files", &data, ""));
    world.backup();
    data
}

/// After the killed run: it committed nothing, verify passes, and the next run
/// stores `second.bin` (`size` bytes of noise 2), which restores as it was.
fn the_next_run_goes_on(world: &World, size: usize) {
    assert_eq!(world.snapshots().len(), 1, "the killed run committed");
    world.ok(&["verify", "--job", "app"]);
    world.backup();
    assert_eq!(world.snapshots().len(), 2);
    world.ok(&["verify", "--job", "app"]);
    let to = world.restore_latest();
    assert_eq!(
        std::fs::read(to.join("files/second.bin")).expect("restored"),
        noise(size, 2)
    );
}

#[test]
fn a_run_killed_mid_put_leaves_a_staging_object_that_prune_removes_once_old() {
    let dav = WebdavServer::start_limited("1M");
    let world = World::new("");
    let table = dav.target_toml("dav", "backups", &dav.password_file(&world.path("")));
    let data = backed_up_once(&world, "dav", &table);
    let folder = dav.dir().join("backups");
    assert!(staging(&folder).is_empty(), "{:?}", on_server(&folder));

    // A pack of about 3 MiB: at 1 MiB/s the PUT takes seconds, and the kill lands
    // once the server has started writing it.
    std::fs::write(data.join("second.bin"), noise(3 << 20, 2)).expect("write");
    let mut child = world.spawn_silent(&["backup", "app"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while staging(&folder).iter().all(|(_, size)| *size == 0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    let cut = settled(&folder);
    assert!(
        cut.iter().any(|(_, size)| *size > 0),
        "the killed run left no cut staging object: the rest proves nothing: {:?}",
        on_server(&folder)
    );
    let cut: Vec<String> = cut.into_iter().map(|(name, _)| name).collect();
    for name in &cut {
        let object = name.trim_end_matches("#1");
        assert!(
            !folder.join(object).exists(),
            "a cut object under its own name: {object}"
        );
    }

    // Passed by.
    the_next_run_goes_on(&world, 3 << 20);

    // Young, it may be another host's upload: kept, and said so.
    let out = world.ok(&["prune", "--job", "app", "--json"]);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(names(&staging(&folder)), cut, "{out}");
    assert_eq!(
        v[0]["kept_for_grace"]["staging_files"],
        cut.len() as u64,
        "{out}"
    );

    // Three days old (rclone reports a file's time on its disk): removed.
    sh(&format!(
        "find {} -exec touch -h -d '3 days ago' {{}} +",
        folder.display()
    ));
    let out = world.ok(&["prune", "--job", "app", "--json"]);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert!(staging(&folder).is_empty(), "{out}");
    assert_eq!(
        v[0]["staging_removed"].as_array().map(Vec::len),
        Some(cut.len()),
        "{out}"
    );
    world.ok(&["verify", "--job", "app"]);
}

#[test]
fn a_run_killed_while_sending_blocks_to_azure_leaves_no_blob() {
    let azurite = Azurite::start(&["killed"]);
    let world = World::new("");
    let key = azurite.key_file(&world.path(""));
    // Paced, so that the kill lands between the pack's first block and its commit.
    let table = azurite.target_toml("azure", "killed", &key, "limit_upload = \"8MiB/s\"\n");
    let data = backed_up_once(&world, "azure", &table);
    let blobs = azurite.blobs("killed");

    // 40 MiB of noise: one pack of three 16 MiB blocks, five seconds at the pace.
    std::fs::write(data.join("second.bin"), noise(40 << 20, 2)).expect("write");
    let before = azurite.stored_bytes();
    let mut child = world.spawn_silent(&["backup", "app"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while azurite.stored_bytes() < before + (16 << 20) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    let sent = azurite.stored_bytes() - before;
    assert!(
        sent >= 16 << 20,
        "the killed run sent no whole block ({sent} bytes): the rest proves nothing"
    );
    assert_eq!(azurite.blobs("killed"), blobs, "a blob of the killed run");
    the_next_run_goes_on(&world, 40 << 20);
}
