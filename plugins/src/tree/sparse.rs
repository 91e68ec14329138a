//! Sparse files: where their data is, so a backup reads and stores only that
//! (a 10 GiB file with 8 KiB of data is 8 KiB to read, not 10 GiB of zeros).
//!
//! The kernel says where data and holes are (`SEEK_DATA` / `SEEK_HOLE`); a file
//! system that cannot tell reports the whole file as data, which is then read as
//! any other file. Only files with fewer blocks allocated than their size are
//! asked, so ordinary files cost no extra call.

use crate::fs::stat::Stat;
use crate::tree::entry::MAX_SPARSE_PIECES;
use nix::unistd::{Whence, lseek};
use std::fs::File;
use std::os::fd::AsFd;

/// Smallest file worth recording as sparse: below this, a map saves nothing.
const MIN_SPARSE: u64 = 64 << 10;

/// The (offset, length) of each piece of data of `file`, when it has holes worth
/// recording; `None` to read it as a whole (no holes, too small, too many pieces,
/// or the file system cannot say).
pub fn data_map(file: &File, md: &Stat) -> Option<Vec<(u64, u64)>> {
    let size = md.len();
    if size < MIN_SPARSE || md.blocks().saturating_mul(512) >= size {
        return None;
    }
    let size_i = i64::try_from(size).ok()?;
    let mut map = Vec::new();
    let mut pos = 0i64;
    while pos < size_i {
        let data = match lseek(file.as_fd(), pos, Whence::SeekData) {
            Ok(d) => d,
            // No data after `pos`: the rest is a hole.
            Err(nix::errno::Errno::ENXIO) => break,
            Err(_) => return None,
        };
        if data >= size_i {
            break;
        }
        let hole = lseek(file.as_fd(), data, Whence::SeekHole)
            .ok()?
            .min(size_i);
        if hole <= data {
            return None;
        }
        map.push((data as u64, (hole - data) as u64));
        if map.len() > MAX_SPARSE_PIECES {
            return None;
        }
        pos = hole;
    }
    let data: u64 = map.iter().map(|(_, len)| len).sum();
    (data < size).then_some(map)
}

/// Feeds `n` zero bytes to `hasher` (a hole, hashed as the file reads).
pub fn hash_zeros(hasher: &mut blake3::Hasher, mut n: u64) {
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        hasher.update(&ZEROS[..k]);
        n -= k as u64;
    }
}

/// Reads a sparse file's pieces of data, stored one after the other, from `input`:
/// `on_piece` gets each run of bytes with its offset in the file. Returns how many
/// bytes of data there were (short when `input` ends early) and the hash of the
/// whole file, zeros included.
pub fn read_pieces(
    map: &[(u64, u64)],
    size: u64,
    input: &mut dyn std::io::Read,
    buf: &mut [u8],
    on_piece: &mut dyn FnMut(u64, &[u8]) -> std::io::Result<()>,
) -> std::io::Result<(u64, blake3::Hash)> {
    let mut hasher = blake3::Hasher::new();
    let (mut pos, mut data) = (0u64, 0u64);
    for &(off, len) in map {
        hash_zeros(&mut hasher, off.saturating_sub(pos));
        let mut done = 0u64;
        while done < len {
            let want = (len - done).min(buf.len() as u64) as usize;
            let n = input.read(&mut buf[..want])?;
            if n == 0 {
                return Ok((data, hasher.finalize()));
            }
            hasher.update(&buf[..n]);
            on_piece(off + done, &buf[..n])?;
            done += n as u64;
            data += n as u64;
        }
        pos = off + len;
    }
    hash_zeros(&mut hasher, size.saturating_sub(pos));
    Ok((data, hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn holes_are_found_and_the_hash_is_the_whole_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sparse");
        let f = File::create(&path).expect("create");
        f.set_len(64 << 20).expect("size");
        f.write_all_at(&[7u8; 8192], 10 << 20).expect("write");
        f.write_all_at(&[9u8; 4096], (64 << 20) - 4096)
            .expect("write");
        f.sync_all().expect("sync");
        let f = File::open(&path).expect("open");
        let md = Stat::of(&f).expect("stat");
        let map = data_map(&f, &md).expect("tmpfs and ext4 report holes");
        let data: u64 = map.iter().map(|(_, l)| l).sum();
        assert!((12288..1 << 20).contains(&data), "{map:?}");
        assert!(
            crate::tree::entry::is_valid_sparse_map(&map, md.len()),
            "{map:?}"
        );
        // Hashing zeros for the holes gives the hash of the file as read.
        let mut h = blake3::Hasher::new();
        let mut pos = 0;
        for (off, len) in &map {
            hash_zeros(&mut h, off - pos);
            let mut buf = vec![0u8; *len as usize];
            f.read_exact_at(&mut buf, *off).expect("read");
            h.update(&buf);
            pos = off + len;
        }
        hash_zeros(&mut h, md.len() - pos);
        let whole = std::fs::read(&path).expect("read");
        assert_eq!(h.finalize(), blake3::hash(&whole));
    }

    #[test]
    fn a_dense_file_has_no_map() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dense");
        std::fs::write(&path, vec![1u8; 1 << 20]).expect("write");
        let f = File::open(&path).expect("open");
        assert_eq!(data_map(&f, &Stat::of(&f).expect("stat")), None);
    }
}
