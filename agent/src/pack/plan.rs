//! What the reads to come will need from each pack, told to the pack reader before
//! it reads, so that fetches stop where the need stops.
//!
//! Without it a reader only knows the read in hand: fetch windows that double
//! while reading on run past the last file a snapshot still has in a pack, into
//! files deleted or changed since (a restore of a snapshot made over 20 runs read
//! about 0.8 MiB past its need in every other pack). With it, a window may grow
//! over a run of needed frames and stops at the run's last needed byte.
//!
//! Kept per zstd frame (1 MiB of content), never per file: memory follows the
//! bytes restored (about 50 bytes per MiB), not the number of files.

use super::FRAME;
use std::collections::{BTreeMap, HashMap};

/// Frames planned at most, over all packs (256 GiB of content, about 12 MiB): a
/// manifest is not trusted to bound memory. Past it reads go unplanned, as
/// before plans existed: correct, only less frugal.
const MAX_FRAMES: usize = 1 << 18;

#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Per pack: the frames (index at `FRAME` bytes each) holding needed bytes, each
    /// with the end of the last needed byte in it.
    packs: HashMap<String, BTreeMap<u64, u64>>,
    frames: usize,
}

impl Plan {
    /// The reads to come include `size` bytes at uncompressed `offset` of `pack`.
    pub(crate) fn need(&mut self, pack: &str, offset: u64, size: u64) {
        let Some(end) = offset.checked_add(size).filter(|_| size > 0) else {
            return;
        };
        let frame = FRAME as u64;
        let (first, last) = (offset / frame, (end - 1) / frame);
        if last - first >= (MAX_FRAMES - self.frames) as u64 {
            return;
        }
        let frames = self.packs.entry(pack.to_string()).or_default();
        for i in first..=last {
            let in_frame = end.min((i + 1).saturating_mul(frame));
            let e = frames.entry(i).or_insert_with(|| {
                self.frames += 1;
                0
            });
            *e = (*e).max(in_frame);
        }
    }

    /// Whether anything was planned: a reader told nothing keeps its older habits.
    pub(crate) fn any(&self) -> bool {
        !self.packs.is_empty()
    }

    /// The end of the last byte planned in `pack` (uncompressed); `None` when
    /// nothing was planned there.
    pub(crate) fn last_end(&self, pack: &str) -> Option<u64> {
        self.packs.get(pack)?.last_key_value().map(|(_, end)| *end)
    }

    /// Where the run of needed frames holding `offset` ends (uncompressed): the end
    /// of the last needed byte in its last frame. `None` when nothing was planned
    /// there (the caller did not plan, or reads what it did not announce).
    pub(crate) fn run_end(&self, pack: &str, offset: u64) -> Option<u64> {
        let frames = self.packs.get(pack)?;
        let frame = FRAME as u64;
        let mut i = offset / frame;
        let mut end = *frames.get(&i)?;
        while let Some(e) = frames.get(&(i + 1)) {
            i += 1;
            end = *e;
        }
        Some(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: u64 = FRAME as u64;

    #[test]
    fn runs_of_needed_frames_end_at_their_last_needed_byte() {
        let mut p = Plan::default();
        p.need("a", 10, 100);
        p.need("a", F - 5, 10);
        p.need("a", 2 * F + 7, 3);
        p.need("a", 4 * F, 2 * F + 1);
        p.need("b", 0, 0);
        assert_eq!(p.run_end("a", 50), Some(2 * F + 10));
        assert_eq!(p.run_end("a", F + 1), Some(2 * F + 10));
        assert_eq!(p.run_end("a", 3 * F), None);
        assert_eq!(p.run_end("a", 4 * F + 9), Some(6 * F + 1));
        assert_eq!(p.run_end("b", 0), None);
        assert_eq!(p.run_end("c", 0), None);
        assert_eq!(p.last_end("a"), Some(6 * F + 1));
        assert_eq!(p.last_end("b"), None);
        // A claim past what may be planned is left out, not allocated.
        p.need("c", 0, u64::MAX);
        p.need("c", u64::MAX - 10, 10);
        assert_eq!(p.run_end("c", 0), None);
        assert_eq!(p.run_end("c", u64::MAX - 1), Some(u64::MAX));
    }
}
