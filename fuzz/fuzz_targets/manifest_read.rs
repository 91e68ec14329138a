//! Fuzz target: the manifest reader, the path of `coffer::repo::read_manifest`
//! after decryption, on arbitrary bytes.
//!
//! Why it exists (issue 10): the age recipients are public, so anyone who can
//! write to a target can store a manifest that decrypts fine. Its plaintext goes
//! through `untrusted::JsonGuard` (no string or number longer than 256 KiB), then
//! serde_json into `format::Manifest`, whose file lists are spilled to unnamed
//! files (`entry_log::spill_into`) and checked path by path, then through
//! `untrusted::check_manifest`. None of it may panic or allocate without bound.
//!
//! The decryption and the object store are left out (they are not coffer's code and
//! would make every input fail): the input is the manifest's plaintext. The check
//! needs the marker the manifest belongs to; the target uses two plausible ones
//! built here, unsigned and signed, for the job, snapshot and objects of the seed
//! manifests (fuzz/seeds/manifest_read). Whatever parses is then used as restore and
//! check use it: every spilled entry is read back.

#![no_main]

use coffer::format::{FormatVersion, MANIFEST, Manifest, Marker, ObjectRecord, WarningCounts};
use coffer::format::seal::Seal;
use coffer::format::untrusted::{JsonGuard, check_manifest};
use libfuzzer_sys::fuzz_target;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The state directory's scratch folder, where file lists are spilled: one per
/// process. The spill files have no name, so it stays empty.
fn spill_dir() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory for spilled entries");
        let path = dir.path().to_path_buf();
        (dir, path)
    })
    .1
}

fn record(key: &str, source: Option<&str>, plain: u64, stored: u64, hash: char) -> ObjectRecord {
    ObjectRecord {
        key: key.to_string(),
        source: source.map(str::to_string),
        plaintext_size: plain,
        stored_size: stored,
        blake3: hash.to_string().repeat(64),
        facts: Default::default(),
    }
}

/// The marker of the seed manifests: job `kadi`, a directory source `files` and a
/// postgres source `db`; signed (any key: `check_manifest` only asks whether it is)
/// or not.
fn marker(signed: bool) -> Marker {
    let t = time::OffsetDateTime::UNIX_EPOCH;
    Marker {
        format: FormatVersion::V1,
        id: "20260101T020000Z-0a1b".into(),
        job: "kadi".into(),
        host: "app1".into(),
        coffer_version: "0.2.0".into(),
        started_at: t,
        finished_at: t,
        skew_seconds: 0.0,
        window_seconds: None,
        objects: vec![
            record("files.tar.zst.age", Some("files"), 10240, 900, 'a'),
            record("db.dump.zst.age", Some("db"), 4096, 700, 'b'),
            record(MANIFEST, None, 600, 400, 'c'),
        ],
        // Format 1: no packs.
        packs: Vec::new(),
        packed_size: 0,
        packed_sources: Vec::new(),
        streams: Vec::new(),
        manifest: None,
        warnings: WarningCounts::default(),
        check: None,
        seal: if signed {
            // The public key of the all-zero seed; any valid key would do.
            Seal::Signed(
                "ed25519:3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"
                    .parse()
                    .expect("a valid signer"),
            )
        } else {
            Seal::Unsigned
        },
    }
}

fn markers() -> &'static [Marker; 2] {
    static MARKERS: OnceLock<[Marker; 2]> = OnceLock::new();
    MARKERS.get_or_init(|| [marker(false), marker(true)])
}

fuzz_target!(|data: &[u8]| {
    // As in read_manifest: the guard, then a buffer (serde_json reads byte by byte).
    let mut plain = BufReader::with_capacity(256 << 10, JsonGuard::new(data));
    let manifest: Result<Manifest, _> =
        coffer_plugins::entry_log::spill_into(spill_dir(), || serde_json::from_reader(&mut plain));
    let Ok(manifest) = manifest else { return };
    // read_manifest reads to the end (the stored bytes are hashed as they pass).
    let _ = std::io::copy(&mut plain, &mut std::io::sink());
    for marker in markers() {
        if let Err(why) = check_manifest(&manifest, marker) {
            let _ = coffer_plugins::escape_controls(&why);
        }
    }
    // Restore and check read each source's entries back in order.
    for source in &manifest.sources {
        let _ = (source.entries.len(), source.entries.files());
        let Ok(entries) = source.entries.iter() else {
            continue;
        };
        for entry in entries {
            let Ok(entry) = entry else { break };
            // Every path that made it into the log must be one a walk produces.
            assert!(
                coffer_plugins::is_safe_relative(entry.path.as_bytes()),
                "an unsafe path was accepted: {:?}",
                entry.path
            );
            let _ = entry.path.to_string();
        }
    }
    let _ = manifest.source("files");
});
