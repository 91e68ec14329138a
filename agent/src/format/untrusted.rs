//! What is read from a target is hostile input: anyone who can write to the bucket
//! or the NAS can plant a folder, a marker, a manifest or an archive. This module
//! holds the checks every such thing passes before coffer acts on it:
//!
//! - names and keys match the grammar the config accepts (a source called
//!   `../../etc/x` would otherwise be joined to `restore --to DIR`);
//! - a marker belongs to the folder it was found in;
//! - sizes are bounded before anything is allocated for them (a 512 MiB marker, a
//!   33 KB manifest holding a 2 GiB string, thousands of sources).

use crate::format::id::is_id;
use crate::format::{MANIFEST, Manifest, Marker, source_key};
use coffer_config::names::{is_extension, is_name};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read};
use std::marker::PhantomData;

/// A format-1 marker is a few KiB; a format-2 one lists its packs, and a pack's
/// record, as the backup writes it (pretty-printed: id, stored size, BLAKE3,
/// content size, used), takes at most 267 bytes (237 with the 10-digit sizes of
/// packs up to 4 GiB): `MAX_PACKS` of them take at most 26.7 MB, with the objects
/// of `MAX_SOURCES` sources and their facts well under 28 MiB
/// (`the_largest_marker_a_backup_writes_is_read`). A marker is read whole into
/// memory, and `list` reads every one: the bound keeps a planted one from costing
/// more than a genuine one can.
pub const MAX_MARKER_BYTES: u64 = 28 << 20;
/// Packs one snapshot may reference: 6.1 TiB of content in 64 MiB packs.
pub const MAX_PACKS: usize = 100_000;
/// Sources per snapshot (and objects per marker).
pub const MAX_SOURCES: usize = 256;
/// Facts per source.
pub const MAX_FACTS: usize = 32;
/// File entries a manifest may hold per byte of its stored (compressed,
/// encrypted) object, plus `ENTRIES_ALLOWED_ANYWAY`. The densest genuine manifests
/// are trees unpacked from an archive (one mtime, no nanoseconds, names counting
/// up, empty folders or files): measured with coffer, 200,000 empty folders with
/// hex names take 0.80 stored bytes per entry at zstd level 19 (1.2 at the default
/// level 3), 200,000 symlinks and 20,000 empty files 0.99
/// (`a_restore_of_many_entries_holds_none_of_them_in_memory`). 8 entries per byte
/// leaves them six times the room, and stops a manifest of repeated entries (zstd
/// packs 124 bytes of JSON into a few bits when they repeat) from making a read
/// spill and parse a billion of them. It cannot tell a bomb as dense as a genuine
/// manifest (4,000,000 folders in 3.4 MB): what such a one may cost a restore is
/// bounded by the destination's free space (`restore::room`).
pub const MAX_ENTRIES_PER_STORED_BYTE: u64 = 8;
pub const ENTRIES_ALLOWED_ANYWAY: u64 = 10_000;

/// The most file entries a manifest of `stored` bytes may hold.
pub fn max_entries(stored: u64) -> u64 {
    stored
        .saturating_mul(MAX_ENTRIES_PER_STORED_BYTE)
        .saturating_add(ENTRIES_ALLOWED_ANYWAY)
}

/// Bytes of holes the sparse files of one snapshot may declare together. A
/// restore (and a deep verify) hashes a sparse file whole, holes included, as the
/// backup did, at about 3 GB/s (0.34 s per GiB on one core of a 2024 Xeon): a
/// manifest says "8 TiB of zeros" for free, and a restore would hash them for 45
/// minutes; 64 GiB of holes cost it about 20 s. A backup gives
/// each directory source its share of this and stores a sparse file that does not
/// fit in what is left as an ordinary file (zstd keeps its zeros at 1/32768 of
/// their size, and a restore writes them back as holes).
pub const MAX_HOLES: u64 = 64 << 30;

/// Refuses a manifest whose sparse files declare more holes than a backup writes.
pub fn check_holes(m: &Manifest) -> Result<(), String> {
    let holes = m
        .sources
        .iter()
        .map(|s| s.entries.holes())
        .fold(0u64, u64::saturating_add);
    if holes > MAX_HOLES {
        return Err(format!(
            "its sparse files declare {} of holes, more than the {} a backup of coffer \
             stores as holes in one snapshot (it stores the rest as ordinary files)",
            crate::units::bytes(holes),
            crate::units::bytes(MAX_HOLES)
        ));
    }
    Ok(())
}

/// Longest run of JSON between two quotes: a path is at most 4 KiB (24 KiB escaped);
/// serde_json buffers a whole string, so an unbounded one is a memory bomb.
pub const MAX_JSON_RUN: usize = 256 << 10;

/// `<source>.<ext>.zst.age` split into source and extension, when both are valid.
pub fn split_source_key(key: &str) -> Option<(&str, &str)> {
    let (name, ext) = key.strip_suffix(".zst.age")?.split_once('.')?;
    (is_name(name) && is_extension(ext)).then_some((name, ext))
}

fn is_hex_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

fn printable(s: &str, max: usize) -> bool {
    s.len() <= max && !s.chars().any(char::is_control)
}

/// A marker found at `<job>/<id>/snapshot.json` must say it is that snapshot, and
/// every name and key in it must be one coffer could have written.
pub fn check_marker(m: &Marker, job: &str, id: &str) -> Result<(), String> {
    if m.job != job || m.id != id {
        return Err(format!(
            "it names snapshot {:?} of job {:?}, not the folder it is in",
            m.id, m.job
        ));
    }
    if !is_name(job) || !is_id(id) {
        return Err("not a valid job name or snapshot id".into());
    }
    if !printable(&m.host, 255) || !printable(&m.coffer_version, 64) {
        return Err("host or coffer_version is not a short printable text".into());
    }
    if m.window_seconds
        .is_some_and(|w| !(w.is_finite() && w >= 0.0))
    {
        return Err("window_seconds is not a duration".into());
    }
    if m.objects.len() > MAX_SOURCES + 1 {
        return Err(format!("{} objects", m.objects.len()));
    }
    // Shown by `list`: names a config allows, each once.
    let mut packed = HashSet::new();
    if m.packed_sources.len() > MAX_SOURCES
        || m.packed_sources
            .iter()
            .any(|s| !is_name(s) || !packed.insert(s.as_str()))
    {
        return Err("packed_sources is not a list of distinct source names".into());
    }
    if m.streams.len() > MAX_SOURCES
        || m.streams.iter().any(|s| {
            !is_name(&s.source)
                || !packed.insert(s.source.as_str())
                || s.facts.iter().any(|(k, v)| !is_name(k) || v.len() > 4096)
        })
    {
        return Err("streams is not a list of distinct source names with short facts".into());
    }
    let mut keys = HashSet::new();
    let mut manifest = false;
    for o in &m.objects {
        if !keys.insert(o.key.as_str()) {
            return Err(format!("object {:?} is listed twice", o.key));
        }
        match &o.source {
            None if o.key == MANIFEST => manifest = true,
            None => return Err(format!("object {:?} belongs to no source", o.key)),
            Some(s) => match split_source_key(&o.key) {
                Some((name, _)) if name == s => {}
                _ => {
                    return Err(format!(
                        "object key {:?} of source {:?} is not a name coffer writes",
                        o.key, s
                    ));
                }
            },
        }
        if !is_hex_hash(&o.blake3) {
            return Err(format!("object {:?}: blake3 is not 64 hex digits", o.key));
        }
        // Values come from the database (a schema version): any text, shown escaped.
        if o.facts.len() > MAX_FACTS || o.facts.iter().any(|(k, v)| !is_name(k) || v.len() > 4096) {
            return Err(format!(
                "object {:?}: facts are not short named values",
                o.key
            ));
        }
    }
    if m.manifest.is_none() && !manifest {
        return Err("it lists no manifest".into());
    }
    if m.manifest.is_some() && manifest {
        return Err("it lists a manifest object and manifest chunks".into());
    }
    if !m.packs.is_empty() && m.format == crate::format::FormatVersion::V1 {
        return Err("a format-1 snapshot lists packs".into());
    }
    let mut packs = HashSet::new();
    for p in &m.packs {
        if !crate::pack::is_pack_id(&p.id) {
            return Err(format!("pack id {:?} is not 32 hex digits", p.id));
        }
        if !packs.insert(p.id.as_str()) {
            return Err(format!("pack {} is listed twice", p.id));
        }
        if !is_hex_hash(&p.blake3) {
            return Err(format!("pack {}: blake3 is not 64 hex digits", p.id));
        }
    }
    if let Some(c) = &m.manifest {
        let mut sum = 0u64;
        let fits = m.format != crate::format::FormatVersion::V1
            && is_hex_hash(&c.blake3)
            && c.chunks.iter().all(|p| {
                sum = sum.saturating_add(p.size);
                p.size > 0
                    && p.size <= coffer_plugins::chunker::MAX as u64
                    && packs.contains(p.pack.as_str())
            });
        if !fits || sum != c.size {
            return Err("its manifest chunks are not what coffer writes".into());
        }
    }
    Ok(())
}

/// A manifest must belong to its marker, name only valid sources of known types, and
/// point each at the object the marker lists for it (with the same sizes and hash).
pub fn check_manifest(m: &Manifest, marker: &Marker) -> Result<(), String> {
    if m.snapshot != marker.id || m.job != marker.job {
        return Err(format!(
            "the manifest belongs to {:?}/{:?}, not {}/{}",
            m.job, m.snapshot, marker.job, marker.id
        ));
    }
    let mut names = HashSet::new();
    for s in &m.sources {
        if !is_name(&s.name) {
            return Err(format!(
                "source name {:?} is not a name coffer accepts",
                s.name
            ));
        }
        if !names.insert(s.name.as_str()) {
            return Err(format!("source {} is listed twice", s.name));
        }
        if s.entries.sparse() > 0 && !s.packed {
            // Only format 2's packs store a sparse file's data apart from its holes.
            return Err(format!(
                "source {}: sparse files outside packs, which coffer never writes",
                s.name
            ));
        }
        if s.facts.iter().any(|(k, v)| !is_name(k) || v.len() > 4096) || s.origin.len() > 4096 {
            return Err(format!("source {}: facts or origin are too long", s.name));
        }
        if s.packed {
            if s.kind != coffer_config::SourceType::Directory || !s.object.is_empty() {
                return Err(format!(
                    "source {} ({:?}) claims packs, which only a directory has",
                    s.name, s.kind
                ));
            }
            if marker.format == crate::format::FormatVersion::V1 {
                return Err(format!("source {}: packs in a format-1 snapshot", s.name));
            }
            continue;
        }
        // An unknown type never gets here: the manifest's `type` is a SourceType.
        let ext = match split_source_key(&s.object) {
            Some((name, ext))
                if name == s.name
                    && coffer_plugins::registry::fixed_extension(s.kind)
                        .is_none_or(|w| w == ext) =>
            {
                ext
            }
            _ => {
                return Err(format!(
                    "source {} ({:?}) points at object {:?}, which is not where coffer puts it",
                    s.name, s.kind, s.object
                ));
            }
        };
        debug_assert_eq!(source_key(&s.name, ext), s.object);
        if let Some(c) = &s.chunked {
            // In packs, which the marker lists: its chunks are checked as they are
            // read, against this (bound) list.
            if s.kind == coffer_config::SourceType::Directory
                || marker.format == crate::format::FormatVersion::V1
                || !coffer_plugins::is_valid_chunk_list(&c.chunks, c.size)
                || !is_hex_hash(&c.blake3)
            {
                return Err(format!(
                    "source {}: a list of chunks that coffer never writes",
                    s.name
                ));
            }
            if !marker
                .streams
                .iter()
                .any(|r| r.source == s.name && r.plaintext_size == c.size)
            {
                return Err(format!(
                    "source {}: its chunks are not in snapshot.json's streams",
                    s.name
                ));
            }
            continue;
        }
        let Some(record) = marker.object(&s.object) else {
            return Err(format!(
                "source {}: object {} is not in snapshot.json",
                s.name, s.object
            ));
        };
        if record.source.as_deref() != Some(s.name.as_str()) {
            return Err(format!(
                "source {}: snapshot.json gives object {} to another source",
                s.name, s.object
            ));
        }
    }
    // Signed snapshots bind every object in the manifest too: the manifest is
    // encrypted, so what it binds cannot be read and changed together with the marker.
    for o in &m.objects {
        match marker.object(&o.key) {
            Some(r)
                if r.plaintext_size == o.plaintext_size
                    && r.stored_size == o.stored_size
                    && r.blake3 == o.blake3 => {}
            _ => {
                return Err(format!(
                    "object {} in the manifest differs from snapshot.json",
                    o.key
                ));
            }
        }
    }
    if matches!(marker.seal, crate::format::seal::Seal::Signed(_)) {
        for r in marker.objects.iter().filter(|r| r.source.is_some()) {
            if !m.objects.iter().any(|o| o.key == r.key) {
                return Err(format!("object {} is not bound by the manifest", r.key));
            }
        }
    }
    Ok(())
}

/// Fails a JSON stream that runs more than `MAX_JSON_RUN` bytes without a quote:
/// every key and string is quoted, so honest manifests have quotes every few bytes,
/// while a bomb is one enormous string (or number, or blank) that serde_json would
/// hold in memory.
pub struct JsonGuard<R> {
    inner: R,
    run: usize,
}

impl<R> JsonGuard<R> {
    pub fn new(inner: R) -> JsonGuard<R> {
        JsonGuard { inner, run: 0 }
    }
}

impl<R: Read> Read for JsonGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut start = 0;
        for q in memchr::memchr_iter(b'"', &buf[..n]) {
            self.run += q - start;
            if self.run > MAX_JSON_RUN {
                break;
            }
            self.run = 0;
            start = q + 1;
        }
        if self.run <= MAX_JSON_RUN {
            self.run += n - start;
        }
        if self.run > MAX_JSON_RUN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "more than {} KiB without a quote: not a manifest coffer wrote",
                    MAX_JSON_RUN >> 10
                ),
            ));
        }
        Ok(n)
    }
}

/// `deserialize_with` for a list of at most `MAX_SOURCES` items.
pub fn bounded_vec<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    d.deserialize_seq(Bounded::<T, { MAX_SOURCES + 1 }>(PhantomData))
}

/// Chunks a manifest may be cut into: 4 GiB of manifest at the smallest chunks
/// (256 KiB), 64 GiB at the largest; 10,000,000 files take about 500 MB.
pub const MAX_MANIFEST_CHUNKS: usize = 16_384;
/// Bytes of manifest JSON an entry takes at the least (`{"path":"a","type":"dir",
/// ...}` is over 60): what bounds the entries of a manifest stored as chunks, whose
/// stored size is not its own.
pub const MIN_ENTRY_JSON_BYTES: u64 = 16;

/// `deserialize_with` for a marker's manifest chunks.
pub fn bounded_manifest_chunks<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    d.deserialize_seq(Bounded::<T, MAX_MANIFEST_CHUNKS>(PhantomData))
}

/// `deserialize_with` for a marker's list of packs.
pub fn bounded_packs<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    d.deserialize_seq(Bounded::<T, MAX_PACKS>(PhantomData))
}

/// A list of at most `N` items.
struct Bounded<T, const N: usize>(PhantomData<T>);

impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for Bounded<T, N> {
    type Value = Vec<T>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a list of at most {N} items")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut out = Vec::new();
        while let Some(x) = seq.next_element()? {
            if out.len() == N {
                return Err(serde::de::Error::custom(format!("more than {N} items")));
            }
            out.push(x);
        }
        Ok(out)
    }
}

/// `deserialize_with` for a map of at most `MAX_FACTS` entries.
pub fn bounded_map<'de, D>(d: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: Deserializer<'de>,
{
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a map of at most {MAX_FACTS} entries")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((k, v)) = map.next_entry::<String, String>()? {
                if out.len() == MAX_FACTS {
                    return Err(serde::de::Error::custom(format!(
                        "more than {MAX_FACTS} facts"
                    )));
                }
                out.insert(k, v);
            }
            Ok(out)
        }
    }
    d.deserialize_map(V)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_keys_split_only_when_both_parts_are_valid() {
        assert_eq!(split_source_key("db.dump.zst.age"), Some(("db", "dump")));
        assert_eq!(split_source_key("../x.tar.zst.age"), None);
        assert_eq!(split_source_key("/etc/x.tar.zst.age"), None);
        assert_eq!(split_source_key("a.b.c.zst.age"), None);
        assert_eq!(split_source_key("db.dump"), None);
    }

    /// A marker as coffer wrote it before the window was recorded, with `extra`
    /// fields after the skew.
    fn marker_json(extra: &str) -> String {
        format!(
            r#"{{"format": 1, "id": "20260101T020000Z-0a1b", "job": "kadi", "host": "h",
                "coffer_version": "0.1.0", "started_at": "2026-01-01T02:00:00Z",
                "finished_at": "2026-01-01T02:00:01Z", "skew_seconds": 0.001{extra},
                "objects": [{{"key": "manifest.json.zst.age", "plaintext_size": 1,
                "stored_size": 1, "blake3": "{}"}}]}}"#,
            "a".repeat(64)
        )
    }

    #[test]
    fn markers_without_a_window_still_read_and_a_bad_window_is_refused() {
        let old: Marker = serde_json::from_str(&marker_json("")).expect("an old marker reads");
        assert_eq!(old.window_seconds, None);
        check_marker(&old, "kadi", "20260101T020000Z-0a1b").expect("an old marker is fine");
        let new: Marker =
            serde_json::from_str(&marker_json(r#", "window_seconds": 2.5"#)).expect("reads");
        assert_eq!(new.window_seconds, Some(2.5));
        check_marker(&new, "kadi", "20260101T020000Z-0a1b").expect("fine");
        let bad: Marker =
            serde_json::from_str(&marker_json(r#", "window_seconds": -1"#)).expect("reads");
        assert!(check_marker(&bad, "kadi", "20260101T020000Z-0a1b").is_err());
    }

    /// The largest marker a backup writes: `MAX_PACKS` packs with the largest
    /// sizes, and the objects of `MAX_SOURCES` database sources with their facts.
    #[test]
    fn the_largest_marker_a_backup_writes_is_read() {
        use crate::format::{FormatVersion, ObjectRecord, PackRecord, WarningCounts};
        let t = time::OffsetDateTime::UNIX_EPOCH;
        let record = |key: String, source: Option<String>| ObjectRecord {
            key,
            source,
            plaintext_size: u64::MAX,
            stored_size: u64::MAX,
            blake3: "b".repeat(64),
            facts: [
                (
                    "server_version",
                    "PostgreSQL 17.4 (Debian 17.4-1.pgdg120+2)",
                ),
                ("schema_version", "20260101120000_add_the_last_migration"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into(),
        };
        // The manifest as chunks (the largest it can be), so no manifest object.
        let mut objects = Vec::new();
        objects.extend(
            (0..MAX_SOURCES)
                .map(|i| format!("database-{i:03}"))
                .map(|s| record(format!("{s}.dump.zst.age"), Some(s))),
        );
        let marker = Marker {
            format: FormatVersion::V2,
            id: "20260101T020000Z-0a1b".into(),
            job: "kadi".into(),
            host: "h".repeat(255),
            coffer_version: "0.2.0".into(),
            started_at: t,
            finished_at: t,
            skew_seconds: 0.123_456_789,
            window_seconds: Some(1.234_567_89),
            objects,
            packs: (0..MAX_PACKS)
                .map(|i| PackRecord {
                    id: format!("{i:032x}"),
                    stored_size: u64::MAX,
                    blake3: "c".repeat(64),
                    content_size: u64::MAX,
                    used: u64::MAX,
                })
                .collect(),
            packed_size: u64::MAX,
            packed_sources: (0..MAX_SOURCES)
                .map(|i| format!("directory-{i:03}"))
                .collect(),
            // A genuine marker's sources are objects, packed sources or streams;
            // as objects they take the most room (a stream has no key nor hash).
            streams: Vec::new(),
            manifest: Some(crate::format::ManifestChunks {
                size: MAX_MANIFEST_CHUNKS as u64 * (4 << 20),
                blake3: "d".repeat(64),
                chunks: (0..MAX_MANIFEST_CHUNKS)
                    .map(|i| crate::format::ChunkPlace {
                        pack: format!("{i:032x}"),
                        offset: u64::MAX,
                        size: 4 << 20,
                    })
                    .collect(),
            }),
            warnings: WarningCounts::default(),
            check: Some(crate::format::MarkerCheck {
                consistent: false,
                counts: crate::format::CheckCounts {
                    referenced: u64::MAX,
                    captured: u64::MAX,
                    missing: u64::MAX,
                    wrong_size: u64::MAX,
                    orphans: u64::MAX,
                    completed: u64::MAX,
                },
            }),
            seal: crate::format::seal::Seal::Unsigned,
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let key = crate::format::seal::write_new_key(&dir.path().join("k")).expect("key");
        let bytes = crate::format::seal::seal(&marker, &key).expect("seal");
        assert!(
            bytes.len() as u64 <= MAX_MARKER_BYTES,
            "{} bytes over the bound of {MAX_MARKER_BYTES}",
            bytes.len()
        );
        // And not much more room than it needs.
        assert!(
            bytes.len() as u64 > MAX_MARKER_BYTES / 10 * 9,
            "{}",
            bytes.len()
        );
        let back = crate::format::seal::open(&bytes).expect("opens");
        check_marker(&back, "kadi", "20260101T020000Z-0a1b").expect("a valid marker");
        assert_eq!(back.packs.len(), MAX_PACKS);
        assert_eq!(back.packed_sources.len(), MAX_SOURCES);
        assert!(!back.check_passed());
        // A name no config allows (shown by `list`) is refused.
        let mut bad = back;
        bad.packed_sources[0] = "a\u{1b}[2Jb".into();
        assert!(check_marker(&bad, "kadi", "20260101T020000Z-0a1b").is_err());
    }

    #[test]
    fn the_json_guard_stops_a_long_run_and_passes_honest_json() {
        let honest = format!("[{}]", vec!["\"dir/file\""; 100_000].join(","));
        let mut out = Vec::new();
        JsonGuard::new(honest.as_bytes())
            .read_to_end(&mut out)
            .expect("honest JSON passes");
        assert_eq!(out.len(), honest.len());
        let bomb = format!("{{\"path\":\"{}\"}}", "a".repeat(MAX_JSON_RUN + 10));
        let err = JsonGuard::new(bomb.as_bytes())
            .read_to_end(&mut Vec::new())
            .expect_err("a long string is refused");
        assert!(err.to_string().contains("without a quote"), "{err}");
        let blanks = " ".repeat(MAX_JSON_RUN * 2);
        assert!(
            JsonGuard::new(blanks.as_bytes())
                .read_to_end(&mut Vec::new())
                .is_err()
        );
    }
}
