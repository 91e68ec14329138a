//! Format 2's shared packs: where directory contents live once, for every
//! snapshot that holds them.
//!
//! ```text
//! <job>/packs/<id>.tar.zst.age   age( zstd seekable format( tar of new contents ) )
//! ```
//! A pack is still a plain age file holding a zstd stream of a POSIX tar, so
//! `age -d | zstd -d | tar -x` works on it; the zstd stream is cut into
//! independent 1 MiB frames with a seek table at its end (the zstd "seekable
//! format"; `zstd -d` skips the table), so one file can be read with a few
//! ranged reads, age's STREAM chunks being 64 KiB.
//!
//! `write` fills packs during a run, `index` remembers what is stored (on disk,
//! in `state_dir`), `read` gets one file's bytes back (`plan` tells it ahead what
//! the reads to come need), `tar_view` turns a snapshot's entries into the tar
//! stream restore and verify already know, and `gc` deletes packs no snapshot
//! references, `damage` makes the index forget packs proven damaged.

pub(crate) mod chunk_stream;
pub(crate) mod damage;
pub(crate) mod gc;
pub(crate) mod index;
pub(crate) mod plan;
pub(crate) mod ranged;
pub(crate) mod read;
pub(crate) mod seek_table;
pub(crate) mod tar_view;
mod workers;
pub(crate) mod write;

use object_store::path::Path as ObjPath;

/// The folder of a job's packs on a target.
pub(crate) const PACKS: &str = "packs";
/// Uncompressed bytes per zstd frame: a file is read from the frame holding its
/// first byte, so at most this much is decompressed in vain.
pub(crate) const FRAME: usize = seek_table::FRAME_SIZE;

pub(crate) fn packs_dir(job: &str) -> ObjPath {
    ObjPath::from(job).join(PACKS)
}

pub(crate) fn pack_path(job: &str, id: &str) -> ObjPath {
    packs_dir(job).join(format!("{id}.tar.zst.age"))
}

/// A pack id: 32 lowercase hex digits (128 random bits).
pub(crate) fn is_pack_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The id of the pack an object key names, if it is one.
pub(crate) fn pack_id_of(path: &ObjPath) -> Option<&str> {
    let name = path.filename()?;
    let id = name.strip_suffix(".tar.zst.age")?;
    is_pack_id(id).then_some(id)
}

/// A new pack id: the time in microseconds (13 hex digits), then 76 random bits.
/// Ids sort in the order packs were written, so a snapshot's pack list (sorted)
/// is the order in which to unpack them without coffer: a later version of a
/// file overwrites an earlier one.
pub(crate) fn new_pack_id() -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let random = hex::encode(rand::random::<[u8; 10]>());
    format!("{:013x}{}", micros & ((1 << 52) - 1), &random[..19])
}

#[cfg(test)]
mod tests {
    #[test]
    fn pack_ids_are_valid_and_sort_in_time() {
        let a = super::new_pack_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = super::new_pack_id();
        assert!(super::is_pack_id(&a) && super::is_pack_id(&b), "{a} {b}");
        assert!(a < b, "{a} then {b}");
    }
}
