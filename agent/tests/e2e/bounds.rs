//! Bounds on what a snapshot may ask of a restore, signed or not: how many entries
//! its manifest may hold for its size, how many holes its sparse files may
//! declare, how large its marker may be, and never more entries than the
//! destination's filesystem has room for. An attack campaign found a 3.4 MB
//! manifest of 4,000,000 entries that took a restore 1.95 GB of memory, 753 s and
//! 16 GB of disk, and an 8 TiB sparse file that kept a restore hashing zeros.
//! (`hostile.rs` holds the other bombs.)

use crate::common::forge::Forgery;
use crate::common::rss::{BOMB_RSS_KIB, peak_rss, peak_rss_within};
use crate::common::*;
use std::path::Path;

/// A format-2 snapshot of one directory source `files` holding `a.txt` ("hello").
fn files_world() -> (World, tempfile::TempDir, String) {
    require_tool("age");
    require_tool("zstd");
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("files");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("a.txt"), b"hello").expect("write");
    let world = World::new(&dir_source("files", &src, ""));
    let id = world.backup();
    (world, tmp, id)
}

/// A folder entry as a format-2 manifest holds it.
fn folder(path: &str) -> String {
    format!(
        r#"{{"path":"{path}","type":"dir","mode":493,"uid":0,"gid":0,"user":"root","group":"root","mtime":1700000000,"mtime_nsec":0}}"#
    )
}

fn is_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p).map_or(true, |mut d| d.next().is_none())
}

/// Unmounts (and so empties) a test filesystem however the test ends.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_manifest_of_repeated_entries_is_refused_while_it_is_read() {
    let (world, tmp, id) = files_world();
    // 4,000,000 entries of one folder: zstd keeps them in a few dozen KiB.
    let n = 4_000_000;
    let stored = Forgery::of(&world, &id).save_unsigned_with_entries("files", 3, |w| {
        w.write_all(folder(".").as_bytes())?;
        let one = format!(",{}", folder("d"));
        for _ in 0..n {
            w.write_all(one.as_bytes())?;
        }
        Ok(())
    });
    assert!(stored < 200 << 10, "the bomb is small: {stored} bytes");
    let dest = tmp.path().join("dest");
    let dest_s = dest.to_str().expect("utf8");
    for args in [
        vec![
            "restore",
            "--job",
            "app",
            "--allow-unsigned",
            "--to",
            dest_s,
        ],
        vec!["ls", "--job", "app", "--allow-unsigned"],
    ] {
        let (kib, code, out) = peak_rss_within(&world, &args, Some(300));
        assert_eq!(code, Some(1), "{args:?}: {out}");
        assert!(
            out.contains(&format!("snapshot {id}"))
                && out.contains("file entries")
                && out.contains("per stored byte"),
            "{args:?}: the refusal names the snapshot and the bound: {out}"
        );
        assert!(kib < BOMB_RSS_KIB, "{args:?} peaked at {kib} KiB");
    }
    assert!(is_empty_dir(&dest), "nothing was written");
    // Nothing is left in the scratch folder either.
    assert!(is_empty_dir(&world.path("state/tmp")));
}

#[test]
fn an_entry_bomb_larger_than_its_filesystem_is_refused_before_anything_is_written() {
    require_root("mounts a small tmpfs as the destination");
    let (world, tmp, id) = files_world();
    // 1,000,000 folders with names counting up (ten times the filesystem's inodes),
    // as dense as a genuine manifest of an unpacked archive: about a byte each
    // once compressed. (The campaign's 4,000,000 cost the same per entry; a
    // million keeps the test's read of them short on a loaded CI machine.)
    let n = 1_000_000u64;
    let stored = Forgery::of(&world, &id).save_unsigned_with_entries("files", 3, |w| {
        w.write_all(folder(".").as_bytes())?;
        w.write_all(format!(",{}", folder("d")).as_bytes())?;
        for i in 0..n {
            w.write_all(format!(",{}", folder(&format!("d/{i:07}"))).as_bytes())?;
        }
        Ok(())
    });
    assert!(
        stored as u64 > n / 8,
        "denser than the entries-per-byte bound: {stored} bytes"
    );
    let dest = tmp.path().join("dest");
    std::fs::create_dir_all(&dest).expect("mkdir");
    sh(&format!(
        // Room for the folders' blocks (a tmpfs takes only what is written), not
        // for their inodes.
        "mount -t tmpfs -o size=32g,nr_inodes=100000 coffer-small {}",
        dest.display()
    ));
    let _mounted = Mounted(dest.clone());
    let (kib, code, out) = peak_rss_within(
        &world,
        &[
            "restore",
            "--job",
            "app",
            "--allow-unsigned",
            "--to",
            dest.to_str().expect("utf8"),
        ],
        Some(300),
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!("snapshot {id}"))
            && out.contains(&format!("source files need {} inodes", n + 2))
            && out.contains("nothing was written"),
        "the refusal names the snapshot, the source and the bound: {out}"
    );
    assert!(kib < BOMB_RSS_KIB, "restore peaked at {kib} KiB");
    assert!(
        is_empty_dir(&dest),
        "nothing was written: {:?}",
        std::fs::read_dir(&dest).map(|d| d.count())
    );
}

#[test]
fn a_restore_of_many_entries_holds_none_of_them_in_memory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("many");
    std::fs::create_dir_all(&src).expect("mkdir");
    // 200,000 symlinks and 20,000 empty files with names counting up and one mtime,
    // as an unpacked archive leaves them: the densest genuine manifest.
    sh(&format!(
        "cd '{}' && python3 -c \"
import os
for i in range(200000): os.symlink('target', 'l%06d' % i)
for i in range(20000): open('f%06d' % i, 'w').close()
\" && find . -exec touch -h -d @1700000000 {{}} +",
        src.display()
    ));
    let world = World::new(&dir_source("many", &src, ""));
    // The best compression coffer offers: the densest manifest it writes.
    let cfg = std::fs::read_to_string(&world.config).expect("config");
    std::fs::write(&world.config, cfg.replace("level = 3", "level = 19")).expect("config");
    let id = world.backup();
    // Format 2 keeps the manifest as chunks in packs of its own.
    let stored: u64 = crate::common::packed_job::manifest_packs(&world, &id)
        .iter()
        .map(|p| {
            std::fs::metadata(world.target().join(format!("app/packs/{p}.tar.zst.age")))
                .expect("manifest pack")
                .len()
        })
        .sum();
    eprintln!(
        "a genuine manifest of 220,002 entries: {stored} stored bytes, {:.2} per entry",
        stored as f64 / 220_002.0
    );
    let dest = tmp.path().join("dest");
    let (kib, code, out) = peak_rss(
        &world,
        &[
            "restore",
            "--job",
            "app",
            "--to",
            dest.to_str().expect("utf8"),
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(kib < BOMB_RSS_KIB, "restore peaked at {kib} KiB");
    let restored = std::fs::read_dir(dest.join("many")).expect("ls").count();
    assert_eq!(restored, 220_000);
    assert_eq!(
        std::fs::read_link(dest.join("many/l199999")).expect("a symlink"),
        Path::new("target")
    );
}

#[test]
fn a_sparse_bomb_is_refused_before_its_file_is_made_signed_or_not() {
    let (world, tmp, id) = files_world();
    let original = tmp.path().join("original");
    sh(&format!(
        "cp -a '{}' '{}'",
        world.snapshot_dir(&id).display(),
        original.display()
    ));
    // a.txt becomes a sparse file of 8 TiB whose only data is its 5 bytes in the
    // pack: the manifest costs nothing more, the restore would hash 8 TiB of zeros.
    let forge = || {
        sh(&format!(
            "rm -rf '{d}' && cp -a '{o}' '{d}'",
            d = world.snapshot_dir(&id).display(),
            o = original.display()
        ));
        let mut f = Forgery::of(&world, &id);
        for s in f.manifest["sources"].as_array_mut().expect("sources") {
            for e in s["entries"].as_array_mut().expect("entries") {
                if e["path"] == "a.txt" {
                    e["size"] = (8u64 << 40).into();
                    e["sparse"] = serde_json::json!([[0, 5]]);
                }
            }
        }
        f
    };
    let dest = tmp.path().join("dest");
    let dest_s = dest.to_str().expect("utf8").to_string();
    for how in ["signed", "unsigned"] {
        let trust = match how {
            "signed" => vec![
                "--trust-signer".to_string(),
                forge().save_signed_by_stranger(),
            ],
            _ => {
                forge().save_unsigned();
                vec!["--allow-unsigned".to_string()]
            }
        };
        for command in ["restore", "verify"] {
            let mut args = vec![command, "--job", "app"];
            args.extend(trust.iter().map(String::as_str));
            if command == "restore" {
                args.extend(["--to", &dest_s]);
            }
            let (kib, code, out) = peak_rss_within(&world, &args, Some(120));
            // verify says what it could not verify, with exit code 3.
            let want = if command == "verify" { 3 } else { 1 };
            assert_eq!(code, Some(want), "{how} {command}: {out}");
            assert!(
                out.contains(&format!("snapshot {id}"))
                    && out.contains("8.0 TiB of holes")
                    && out.contains("64.0 GiB"),
                "{how} {command}: the refusal names the snapshot and the bound: {out}"
            );
            assert!(kib < BOMB_RSS_KIB, "{how} {command} peaked at {kib} KiB");
            assert!(!dest.exists(), "{how} {command}: nothing was made");
        }
    }
}

#[test]
fn a_marker_of_the_most_packs_is_read_and_a_larger_one_ignored() {
    let (world, _tmp, id) = files_world();
    let mut f = Forgery::of(&world, &id);
    // 100,000 packs (the most a snapshot may list), with sizes as a backup writes
    // them: a marker of about 24 MB.
    let packs = f.marker["packs"].as_array_mut().expect("packs");
    for i in 0..100_000u64 - packs.len() as u64 {
        packs.push(serde_json::json!({
            "id": format!("{:032x}", i + 1),
            "stored_size": 4_294_967_296u64 + i,
            "blake3": format!("{:064x}", i),
            "content_size": 4_294_000_000u64 + i,
            "used": 4_294_000_000u64 + i,
        }));
    }
    let marker = world.snapshot_dir(&id).join("snapshot.json");
    f.save_unsigned();
    let size = std::fs::metadata(&marker).expect("marker").len();
    assert!(size > 16 << 20, "{size} bytes");
    let listed = world.ok(&["list", "--job", "app", "--json"]);
    assert!(listed.contains(&id), "the marker is read: {listed}");
    // Zeros after it up to one byte over the bound: ignored, and said so.
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(&marker)
        .expect("marker");
    file.set_len((28 << 20) + 1).expect("grow");
    let out = world.run(&["list", "--job", "app", "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stdout.contains(&id), "{stdout}");
    assert!(
        stderr.contains(&id) && stderr.contains("larger than any snapshot marker"),
        "{stderr}"
    );
}

/// A chunked dump spread over many packs streams into its restore command holding
/// the pack it reads, not every pack it has read: each pack left open kept a zstd
/// decoder of about 1.3 MiB, and a reader kept up to 32 (a 10 GiB dump's restore
/// peaked at 110 MiB). 64 MiB of output in packs of 1 MiB: about 50 packs.
#[test]
fn a_dump_spread_over_many_packs_restores_holding_only_the_pack_it_reads() {
    require_tool("base64");
    let world = World::new("");
    let counted = world.path("restored-bytes");
    world.write_config(&format!(
        "pack_size = \"1MiB\"\n[[jobs.app.sources]]\nname = \"dump\"\ntype = \"command\"\n\
         extension = \"txt\"\ncommand = [\"sh\", \"-c\", \"head -c 50000001 /dev/urandom | base64\"]\n\
         restore_command = [\"sh\", \"-c\", \"wc -c > {}\"]\n",
        counted.display()
    ));
    let id = world.backup();
    let packs = std::fs::read_dir(world.target().join("app/packs"))
        .expect("packs")
        .count();
    assert!(
        packs >= 32,
        "only {packs} packs in {id}: the test needs more than a reader keeps open"
    );
    let (kib, code, out) = peak_rss(&world, &["restore", "--job", "app", "--progress", "none"]);
    assert_eq!(code, Some(0), "{out}");
    eprintln!("the restore of a dump in {packs} packs peaked at {kib} KiB");
    // base64 writes 76 characters and a newline per 57 bytes (50,000,001 = 57 x 877,193).
    let got = std::fs::read_to_string(&counted).expect("wc output");
    assert_eq!(got.trim().parse::<u64>().ok(), Some(877_193 * 77), "{got}");
    assert!(kib < 48 << 10, "restore peaked at {kib} KiB");
}
