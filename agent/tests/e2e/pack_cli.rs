//! A pack read with the standard tools alone: a pack of several zstd frames, with
//! the seek table's skippable frame at its end, decrypts with `age` and
//! decompresses with the `zstd` CLI to the tar coffer wrote, byte for byte
//! (operators rely on it when coffer is gone). Moved here from the unit tests of
//! `pack/read.rs`: it needs the `age` and `zstd` CLIs, which only this tier has.

use crate::common::forge::{decrypt, pipe};
use crate::common::packed_job::{backup_run, marker_packs};
use crate::common::*;

/// The seekable format's footer: frame count, descriptor, magic.
const SEEKABLE_MAGIC: u32 = 0x8F92_EAB1;

/// Bytes that compress some but not entirely, like a tar of mixed files.
fn mixed(len: usize) -> Vec<u8> {
    let noise = noise(len, 7);
    (0..len)
        .map(|i| {
            if (i / 4096) % 3 == 0 {
                noise[i]
            } else {
                b"coffer keeps backups "[i % 21] ^ (i / 65536) as u8
            }
        })
        .collect()
}

#[test]
fn a_pack_of_several_frames_is_a_plain_zstd_stream_for_the_cli() {
    let world = World::new("");
    let data = world.path("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    // More than two frames of 1 MiB.
    let big = mixed((2 << 20) + 999);
    std::fs::write(data.join("big"), &big).expect("write");
    world.write_config(&dir_source("files", &data, ""));
    backup_run(&world);
    let id = world.snapshots().pop().expect("a snapshot");
    let packs = marker_packs(&world, &id);
    assert_eq!(packs.len(), 1, "{packs:?}");
    let stored = std::fs::read(
        world
            .target()
            .join(format!("app/packs/{}.tar.zst.age", packs[0])),
    )
    .expect("the pack");
    // The zstd stream: several frames, then the seek table.
    let stream = pipe(
        &format!("age -d -i '{}'", world.identity.display()),
        &stored,
    );
    let u32_at = |at: usize| u32::from_le_bytes(stream[at..at + 4].try_into().expect("4 bytes"));
    let n = stream.len();
    assert_eq!(u32_at(n - 4), SEEKABLE_MAGIC, "ends with a seek table");
    assert!(u32_at(n - 9) >= 3, "{} frames", u32_at(n - 9));
    // Fails, never skips, when a CLI is missing (`pipe` requires age and zstd).
    let tar = decrypt(&world, &stored);
    let mut archive = tar::Archive::new(&tar[..]);
    let mut found = None;
    for entry in archive.entries().expect("a tar") {
        let mut entry = entry.expect("an entry");
        if entry.path().expect("a path").ends_with("big") {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).expect("read");
            found = Some(bytes);
        }
    }
    let found = found.expect("the file in the tar");
    assert!(found == big, "zstd -d gave other bytes");
}
