//! The least a restore of a format-2 snapshot must read from its target: the stored
//! bytes of the parts of packs that hold its files, worked out independently of
//! coffer from the real objects, with the `age` CLI and the zstd seekable format's
//! published layout. What a restore really reads (`kernel_reads`) is compared
//! with this.
//!
//! A file's content can only be decoded from the start of the zstd frame holding
//! it, and decrypted only in whole age STREAM chunks (64 KiB plus a 16-byte tag):
//! so what is needed is, per frame touched, the chunks from the frame's start to
//! the last needed byte in it, plus each pack's age header and the chunks holding
//! its seek table. Where the last needed byte sits inside a frame's compressed
//! bytes is taken in proportion, exact for the incompressible `noise()` the tests
//! store (zstd keeps it as raw blocks).

use super::World;
use super::forge::pipe;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const CHUNK: u64 = 64 << 10;
const TAG: u64 = 16;
const SEEKABLE_MAGIC: u32 = 0x8F92_EAB1;

/// One regular file of a snapshot's manifest with content in a pack.
#[derive(Debug, Clone)]
pub struct Content {
    pub pack: String,
    pub offset: u64,
    pub size: u64,
}

#[derive(Debug, Default)]
pub struct Needed {
    /// Stored bytes of the pack parts the restore needs (headers and seek tables
    /// included).
    pub stored: u64,
    /// Bytes of file content restored (the sum of the files' sizes).
    pub restored: u64,
    /// Regular files with content.
    pub files: usize,
    /// Packs holding at least one needed byte.
    pub packs: usize,
    /// Stored size of those packs, whole.
    pub packs_stored: u64,
    /// Stored bytes of the snapshot's manifest.
    pub manifest: u64,
    /// Bytes of every snapshot's `snapshot.json` (a restore reads them all to find
    /// the snapshot and check its signature).
    pub markers: u64,
    /// Per pack id: (stored bytes needed, stored size, files).
    pub per_pack: BTreeMap<String, (u64, u64, usize)>,
}

/// The files of directory source `source` in snapshot `id` of job `app`, whose
/// objects are under `root` (a local target, or an S3 bucket's folder).
pub fn contents(world: &World, root: &Path, id: &str, source: &str) -> (Vec<Content>, u64) {
    let m: Value = serde_json::from_slice(&super::forge::manifest_plain(world, root, id))
        .expect("manifest json");
    let entries = m["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .find(|s| s["name"] == source)
        .unwrap_or_else(|| panic!("no source {source} in the manifest"))["entries"]
        .as_array()
        .expect("entries")
        .clone();
    let files = entries
        .iter()
        .filter(|e| e["type"] == "file" && e["size"].as_u64().unwrap_or(0) > 0)
        .map(|e| Content {
            pack: e["content"]["pack"].as_str().expect("pack").to_string(),
            offset: e["content"]["offset"].as_u64().expect("offset"),
            size: e["size"].as_u64().expect("size"),
        })
        .collect();
    (files, manifest_stored(root, id))
}

/// Stored bytes of snapshot `id`'s manifest: its object, or (chunks in packs) the
/// packs that hold them, the most a read of it fetches.
fn manifest_stored(root: &Path, id: &str) -> u64 {
    let dir = root.join("app").join(id);
    if let Ok(md) = std::fs::metadata(dir.join("manifest.json.zst.age")) {
        return md.len();
    }
    let env: Value =
        serde_json::from_slice(&std::fs::read(dir.join("snapshot.json")).expect("read marker"))
            .expect("marker json");
    let mut packs = super::packed_job::manifest_chunk_packs(&env["marker"]);
    packs.sort();
    packs.dedup();
    packs
        .iter()
        .map(|p| {
            std::fs::metadata(root.join("app/packs").join(format!("{p}.tar.zst.age")))
                .expect("manifest pack")
                .len()
        })
        .sum()
}

/// What a restore of snapshot `id` (source `source`) needs from the packs under `root`.
pub fn needed(world: &World, root: &Path, id: &str, source: &str) -> Needed {
    let (files, manifest) = contents(world, root, id, source);
    let mut by_pack: BTreeMap<&str, Vec<&Content>> = BTreeMap::new();
    for f in &files {
        by_pack.entry(&f.pack).or_default().push(f);
    }
    let markers = std::fs::read_dir(root.join("app"))
        .expect("the job's folder")
        .filter_map(|e| std::fs::metadata(e.ok()?.path().join("snapshot.json")).ok())
        .map(|m| m.len())
        .sum();
    let mut need = Needed {
        restored: files.iter().map(|f| f.size).sum(),
        files: files.len(),
        packs: by_pack.len(),
        manifest,
        markers,
        ..Needed::default()
    };
    for (pack, files) in by_pack {
        let path = root.join("app/packs").join(format!("{pack}.tar.zst.age"));
        let stored = std::fs::read(&path).expect("read a pack");
        let n = pack_needs(world, &stored, &files);
        need.packs_stored += stored.len() as u64;
        need.stored += n;
        need.per_pack
            .insert(pack.to_string(), (n, stored.len() as u64, files.len()));
    }
    need
}

/// A frame of the seek table: where it starts, compressed and not, and its sizes.
struct Frame {
    c_start: u64,
    c_len: u64,
    d_start: u64,
    d_len: u64,
}

/// The stored bytes of one pack that reading `files` from it needs.
fn pack_needs(world: &World, stored: &[u8], files: &[&Content]) -> u64 {
    let header = age_header_len(stored);
    let plain = pipe(&format!("age -d -i '{}'", world.identity.display()), stored);
    let (frames, table_start) = seek_table(&plain);
    // Per frame: the end (uncompressed) of the last needed byte in it.
    let mut ends: BTreeMap<usize, u64> = BTreeMap::new();
    for f in files {
        let (start, end) = (f.offset, f.offset + f.size);
        for (i, fr) in frames.iter().enumerate() {
            let (fs, fe) = (fr.d_start, fr.d_start + fr.d_len);
            if fs < end && start < fe {
                let e = ends.entry(i).or_default();
                *e = (*e).max(end.min(fe));
            }
        }
    }
    let mut chunks = BTreeSet::new();
    for (i, end) in ends {
        let fr = &frames[i];
        let c_end = fr.c_start + ((end - fr.d_start) * fr.c_len).div_ceil(fr.d_len.max(1));
        chunks.extend(fr.c_start / CHUNK..=(c_end.max(fr.c_start + 1) - 1) / CHUNK);
    }
    let len = plain.len() as u64;
    chunks.extend(table_start / CHUNK..=len.saturating_sub(1) / CHUNK);
    let sealed: u64 = chunks
        .iter()
        .map(|c| (len - c * CHUNK).min(CHUNK) + TAG)
        .sum();
    header + sealed
}

/// Bytes of the age header: up to and including the line that starts with `---`.
fn age_header_len(stored: &[u8]) -> u64 {
    let mac = stored
        .windows(5)
        .position(|w| w == b"\n--- ")
        .expect("an age header")
        + 1;
    let nl = stored[mac..]
        .iter()
        .position(|b| *b == b'\n')
        .expect("end of the header");
    (mac + nl + 1) as u64
}

/// The frames listed by the seek table at the end of a zstd seekable stream, and
/// where the table's skippable frame starts.
fn seek_table(plain: &[u8]) -> (Vec<Frame>, u64) {
    let n = plain.len();
    let u32_at = |at: usize| u32::from_le_bytes(plain[at..at + 4].try_into().expect("4 bytes"));
    assert_eq!(u32_at(n - 4), SEEKABLE_MAGIC, "no seek table at the end");
    let frames = u32_at(n - 9) as usize;
    let checksums = plain[n - 5] & 0x80 != 0;
    let entry = if checksums { 12 } else { 8 };
    let entries = n - 9 - frames * entry;
    let mut out = Vec::with_capacity(frames);
    let (mut c, mut d) = (0u64, 0u64);
    for i in 0..frames {
        let at = entries + i * entry;
        let (c_len, d_len) = (u64::from(u32_at(at)), u64::from(u32_at(at + 4)));
        out.push(Frame {
            c_start: c,
            c_len,
            d_start: d,
            d_len,
        });
        c += c_len;
        d += d_len;
    }
    // The skippable frame's 8-byte header precedes the entries.
    (out, (entries - 8) as u64)
}
