//! Progress that tells the truth (issue 26): `--progress json` gives a machine one
//! JSON object per line on stderr for backup, restore and verify, each with a
//! total (a first backup's from the directories' sizes, a restore's from the
//! packs it needs, a verify's from the markers) and a last line marked done;
//! without it, output that is not a terminal gets no progress at all.

use crate::common::*;
use serde_json::Value;

/// The JSON progress lines of `stderr`, in order.
fn progress_lines(stderr: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("progress").is_some())
        .collect()
}

/// Checks the lines of one operation and returns the last.
fn followed(op: &str, name: &str, lines: &[Value]) -> Value {
    assert!(!lines.is_empty(), "no progress line for {op}");
    let mut bytes = 0;
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["progress"], op, "{l}");
        assert_eq!(l["name"], name, "{l}");
        let b = l["bytes"].as_u64().expect("bytes");
        assert!(b >= bytes, "bytes went back from {bytes} to {b}: {lines:?}");
        bytes = b;
        assert_eq!(
            l["done"],
            i + 1 == lines.len(),
            "only the last is done: {l}"
        );
    }
    let last = lines.last().expect("a line").clone();
    eprintln!("{op}: {} lines, last {last}", lines.len());
    last
}

#[test]
fn json_progress_has_totals_and_a_last_line_for_backup_restore_and_verify() {
    let world = World::new("");
    let data = world.path("data");
    let mut size = 0u64;
    for i in 0..40u64 {
        let body = noise(50_000 + (i as usize * 7_919) % 200_000, i);
        size += body.len() as u64;
        let path = data.join(format!("d{}/f{i:02}.bin", i % 4));
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, body).expect("write");
    }
    world.write_config(&dir_source("files", &data, ""));

    // Not a terminal, no --progress: nothing.
    let quiet = world.run(&["backup", "app"]);
    assert!(quiet.status.success());
    assert!(progress_lines(&quiet.stderr).is_empty(), "{quiet:?}");
    // A first run again (new state), followed as JSON.
    std::fs::remove_dir_all(world.path("state")).expect("rm state");
    let out = world.run(&["--progress", "json", "backup", "app"]);
    assert!(out.status.success(), "{out:?}");
    let last = followed("backup", "app", &progress_lines(&out.stderr));
    assert_eq!(last["bytes"].as_u64(), Some(size), "{last}");
    // No last run to estimate from: the directories' sizes, counted meanwhile.
    assert_eq!(last["total_bytes"].as_u64(), Some(size), "{last}");
    assert_eq!(last["total_estimated"], true, "{last}");

    let to = world.path("restored");
    let out = world.run(&[
        "--progress",
        "json",
        "restore",
        "--job",
        "app",
        "--to",
        to.to_str().expect("utf8"),
    ]);
    assert!(out.status.success(), "{out:?}");
    let id = world.snapshots().pop().expect("snapshot");
    let last = followed("restore", &id, &progress_lines(&out.stderr));
    let (read, total) = (
        last["bytes"].as_u64().expect("bytes"),
        last["total_bytes"]
            .as_u64()
            .expect("a restore knows its total"),
    );
    assert!(
        read > size / 2 && read <= total,
        "read {read} of {total}: {last}"
    );

    let out = world.run(&["--progress", "json", "verify", "--job", "app"]);
    assert!(out.status.success(), "{out:?}");
    let last = followed("verify", "app", &progress_lines(&out.stderr));
    let (read, total) = (
        last["bytes"].as_u64().expect("bytes"),
        last["total_bytes"]
            .as_u64()
            .expect("a verify knows its total"),
    );
    assert!(
        read > size && read <= total,
        "read {read} of {total}: {last}"
    );

    // --progress none: nothing, whatever stderr is.
    let out = world.run(&["--progress", "none", "verify", "--job", "app"]);
    assert!(progress_lines(&out.stderr).is_empty(), "{out:?}");
}
