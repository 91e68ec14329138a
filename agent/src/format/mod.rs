//! The on-target snapshot format: object keys, the plain `snapshot.json` commit
//! marker and the encrypted manifest.
//!
//! ```text
//! <job>/<snapshot-id>/<source>.<ext>.zst.age   one object per source
//! <job>/<snapshot-id>/manifest.json.zst.age    encrypted: every file, per-source facts
//! <job>/<snapshot-id>/snapshot.json            plain, written last: the commit marker
//! ```
//! `snapshot.json` holds no file names and no secrets, so list, prune and stored-bytes
//! verification work on a host that has only the public recipients.
//!
//! `id` makes and checks snapshot ids, `seal` signs and opens the marker,
//! `signers` tells who signed what, and `untrusted` checks everything read back
//! from a target before it is used.

pub mod id;
pub mod seal;
pub(crate) mod signers;
pub mod untrusted;

use coffer_plugins::entry_log::EntryLog;
use object_store::path::Path as ObjPath;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use time::OffsetDateTime;

pub const MARKER: &str = "snapshot.json";
pub const MANIFEST: &str = "manifest.json.zst.age";

/// Format versions. Later versions (incremental snapshots) get new variants; readers
/// refuse what they do not know instead of misreading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub enum FormatVersion {
    V1,
    /// Directory sources in shared packs (`pack`), referenced file by file.
    V2,
}

impl From<FormatVersion> for u32 {
    fn from(v: FormatVersion) -> u32 {
        match v {
            FormatVersion::V1 => 1,
            FormatVersion::V2 => 2,
        }
    }
}

impl TryFrom<u32> for FormatVersion {
    type Error = String;
    fn try_from(v: u32) -> Result<Self, String> {
        match v {
            1 => Ok(FormatVersion::V1),
            2 => Ok(FormatVersion::V2),
            n => Err(format!(
                "snapshot format {n} is newer than this coffer understands (2); upgrade coffer"
            )),
        }
    }
}

pub fn snapshot_dir(job: &str, id: &str) -> ObjPath {
    ObjPath::from(job).join(id)
}

pub fn object_path(job: &str, id: &str, key: &str) -> ObjPath {
    snapshot_dir(job, id).join(key)
}

pub fn source_key(source: &str, ext: &str) -> String {
    format!("{source}.{ext}.zst.age")
}

/// One stored object, as the commit marker records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObjectRecord {
    pub key: String,
    /// The source it holds; `None` for the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub plaintext_size: u64,
    pub stored_size: u64,
    /// BLAKE3 of the stored (encrypted) bytes, hex.
    pub blake3: String,
    /// Server and schema version of a database source: no secrets, no file names.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::format::untrusted::bounded_map"
    )]
    pub facts: BTreeMap<String, String>,
}

/// A stream source (a database dump) a format-2 snapshot stores as chunks in its
/// packs, as the marker records it for `list`: its size and public facts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StreamRecord {
    pub source: String,
    pub plaintext_size: u64,
    /// As an object's: server and schema version, no secrets.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::format::untrusted::bounded_map"
    )]
    pub facts: BTreeMap<String, String>,
}

/// Format 2: the manifest stored as content-defined chunks in the snapshot's packs
/// (`Marker::manifest`), so that what did not change since the last snapshot is
/// not stored again. No hash per chunk: a chunk's plaintext hash in this public
/// file would let a reader of the target confirm a guess of that part of the file
/// list; the whole is checked against `blake3` before it is used.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestChunks {
    /// Bytes of the manifest's JSON.
    pub size: u64,
    /// Of the manifest's JSON, lowercase hex.
    pub blake3: String,
    #[serde(deserialize_with = "crate::format::untrusted::bounded_manifest_chunks")]
    pub chunks: Vec<ChunkPlace>,
}

/// Where one chunk is: `size` bytes at `offset` of pack `pack`'s tar stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChunkPlace {
    pub pack: String,
    pub offset: u64,
    pub size: u64,
}

/// A pack a format-2 snapshot references, as the commit marker records it: enough
/// to check its stored bytes, and to know it is in use, without the private key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PackRecord {
    pub id: String,
    pub stored_size: u64,
    /// BLAKE3 of the stored (encrypted) bytes, hex.
    pub blake3: String,
    /// Bytes of file content the pack holds, and how many of them this
    /// snapshot's files take (a copy counted again): prune estimates from these
    /// how much of a pack no kept snapshot uses.
    #[serde(default)]
    pub content_size: u64,
    #[serde(default)]
    pub used: u64,
}

impl PackRecord {
    /// The pack as an object whose stored bytes are checked like any other's
    /// (size and BLAKE3 against the marker), by the same reader.
    pub(crate) fn as_object(&self) -> ObjectRecord {
        ObjectRecord {
            key: self.id.clone(),
            source: None,
            plaintext_size: 0,
            stored_size: self.stored_size,
            blake3: self.blake3.clone(),
            facts: Default::default(),
        }
    }
}

/// What the manifest says of each source object, so that the (signed) marker and
/// the (encrypted) manifest vouch for the same bytes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObjectBinding {
    pub key: String,
    pub plaintext_size: u64,
    pub stored_size: u64,
    /// BLAKE3 of the stored bytes, hex.
    pub blake3: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WarningCounts {
    pub changed: u64,
    pub vanished: u64,
    pub skipped: u64,
}

/// The job's `[check]` as run at backup time, in numbers: what the database
/// referenced, what the files source captured, and how they disagreed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckCounts {
    pub referenced: u64,
    pub captured: u64,
    /// Rows whose file the snapshot does not hold.
    pub missing: u64,
    /// Rows whose file the snapshot holds with another size.
    pub wrong_size: u64,
    /// Captured files no row references.
    pub orphans: u64,
    /// Referenced files the filesystem snapshot lacked, taken from the earlier
    /// snapshot or the live tree (absent from snapshots made before coffer did).
    #[serde(default)]
    pub completed: u64,
}

impl CheckCounts {
    pub fn of(r: &crate::restore::db_check::DbCheckReport) -> CheckCounts {
        CheckCounts {
            referenced: r.referenced as u64,
            captured: r.on_disk as u64,
            missing: r.missing.len() as u64,
            wrong_size: r.size.len() as u64,
            orphans: r.orphans.len() as u64,
            completed: r.completed.len() as u64,
        }
    }
}

/// The backup-time `[check]` as the marker records it: its counts, and whether
/// the snapshot passed it (no row without its file or with another size, no
/// orphan when orphans fail: the run's exit 3 otherwise). In the signed marker,
/// not only in the encrypted manifest, so that retention, which needs no private
/// key, can prefer a consistent snapshot (`retention::policy`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MarkerCheck {
    pub consistent: bool,
    #[serde(flatten)]
    pub counts: CheckCounts,
}

/// `snapshot.json`: the commit marker. A snapshot exists once this is written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Marker {
    pub format: FormatVersion,
    pub id: String,
    pub job: String,
    pub host: String,
    pub coffer_version: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    /// Latest minus earliest consistency instant of the sources.
    pub skew_seconds: f64,
    /// From the earliest instant to the latest moment a source's state could still
    /// change (see `SourceManifest::window_seconds`); absent in markers written
    /// before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<f64>,
    #[serde(deserialize_with = "crate::format::untrusted::bounded_vec")]
    pub objects: Vec<ObjectRecord>,
    /// Format 2: every pack a file of the snapshot is stored in.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::format::untrusted::bounded_packs"
    )]
    pub packs: Vec<PackRecord>,
    /// Format 2: bytes of content the packed sources' files hold (what a restore
    /// writes); their share of the packs is not an object's plaintext.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub packed_size: u64,
    /// Format 2: the names of the sources stored in packs (directories), which
    /// have no object of their own, so that `list` can name them without the
    /// private key. Absent in markers written before it was recorded; older
    /// readers ignore it (no marker struct refuses unknown fields, and the
    /// signature covers the bytes as stored).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::format::untrusted::bounded_vec"
    )]
    pub packed_sources: Vec<String>,
    /// Format 2: the stream sources stored as chunks (dumps); absent before.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::format::untrusted::bounded_vec"
    )]
    pub streams: Vec<StreamRecord>,
    /// Format 2: the manifest as chunks in the packs, instead of an object;
    /// absent in snapshots made before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<ManifestChunks>,
    #[serde(default)]
    pub warnings: WarningCounts,
    /// The backup-time `[check]`, when the job has one and it ran. Absent in
    /// markers written before it was recorded (older readers ignore it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<MarkerCheck>,
    /// Who signed it, found when it was read (not part of the marker itself).
    #[serde(skip)]
    pub seal: crate::format::seal::Seal,
}

impl Marker {
    /// Whether retention may count this snapshot as consistent: its check passed,
    /// or it had none (no `[check]`, or a marker from before it was recorded).
    pub fn check_passed(&self) -> bool {
        self.check.as_ref().is_none_or(|c| c.consistent)
    }

    /// The order snapshots finished in: `finished_at` (to the nanosecond; the signed
    /// marker's word, so only markers a reader trusts may decide what a restore
    /// takes), then the id for equal times. `latest` is the last in this order: the
    /// id alone cannot say it, as old ids of one second differ only by random digits.
    pub fn cmp_finished(&self, other: &Marker) -> std::cmp::Ordering {
        self.finished_at
            .cmp(&other.finished_at)
            .then_with(|| self.id.cmp(&other.id))
    }

    // The sizes are the target's word: sums saturate instead of overflowing (a
    // panic with overflow checks, a wrong total without).
    /// What the snapshot takes on its target: its objects and every pack it
    /// references (shared with other snapshots).
    pub fn stored_size(&self) -> u64 {
        self.objects
            .iter()
            .map(|o| o.stored_size)
            .chain(self.packs.iter().map(|p| p.stored_size))
            .fold(0, u64::saturating_add)
    }
    pub fn pack(&self, id: &str) -> Option<&PackRecord> {
        self.packs.iter().find(|p| p.id == id)
    }
    pub fn plaintext_size(&self) -> u64 {
        self.objects
            .iter()
            .filter(|o| o.source.is_some())
            .map(|o| o.plaintext_size)
            .chain(self.streams.iter().map(|s| s.plaintext_size))
            .fold(self.packed_size, u64::saturating_add)
    }
    pub fn object(&self, key: &str) -> Option<&ObjectRecord> {
        self.objects.iter().find(|o| o.key == key)
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Per-source part of the manifest.
#[derive(Debug, Serialize, Deserialize)]
pub struct SourceManifest {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: coffer_config::SourceType,
    /// The source's object; empty for a packed source.
    pub object: String,
    /// Format 2: the files' contents are in the snapshot's packs (each entry
    /// says where), not in an object of the source's own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub packed: bool,
    /// Where the data came from on the backed-up host.
    pub origin: String,
    #[serde(with = "time::serde::rfc3339")]
    pub consistency_instant: OffsetDateTime,
    /// 0 when the state was fixed at the instant (an exported database snapshot,
    /// an RDB, a filesystem snapshot), else how long it was read (a walk of a live
    /// tree); absent in manifests written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<f64>,
    #[serde(default, deserialize_with = "crate::format::untrusted::bounded_map")]
    pub facts: BTreeMap<String, String>,
    pub bytes_read: u64,
    #[serde(default)]
    pub warnings: WarningCounts,
    /// Kept in a temporary file, written and read in order, never all in memory.
    #[serde(default)]
    pub entries: EntryLog,
    /// Format 2, a stream source (a database dump, an SQLite copy, a Redis RDB, a
    /// command's output): stored as chunks in the snapshot's packs; `object` then
    /// names no object, only the extension a file restore gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunked: Option<ChunkedStream>,
}

/// A stream source stored as content-defined chunks (`SourceManifest::chunked`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChunkedStream {
    pub size: u64,
    /// Of the whole stream, lowercase hex.
    pub blake3: String,
    pub chunks: Vec<coffer_plugins::Chunk>,
}

/// The encrypted manifest: everything needed to restore and check, file by file.
#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: FormatVersion,
    pub snapshot: String,
    pub job: String,
    pub host: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    pub skew_seconds: f64,
    /// As in the marker; absent in manifests written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<f64>,
    #[serde(deserialize_with = "crate::format::untrusted::bounded_vec")]
    pub sources: Vec<SourceManifest>,
    /// Every source object with its sizes and hash, as in the marker.
    #[serde(default, deserialize_with = "crate::format::untrusted::bounded_vec")]
    pub objects: Vec<ObjectBinding>,
    /// The job's `[check]` at backup time, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckCounts>,
}

impl Manifest {
    pub fn source(&self, name: &str) -> Option<&SourceManifest> {
        self.sources.iter().find(|s| s.name == name)
    }
}
