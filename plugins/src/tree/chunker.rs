//! Content-defined chunks of a byte stream (FastCDC 2020, from the `fastcdc`
//! crate): cut points depend on the bytes around them, not on their offset, so a
//! file or dump that changes a little keeps most of its chunks, and only the
//! chunks around a change are new. What a chunk is stored as is the caller's
//! business (`directory::chunked`); this only says where the cuts are.
//!
//! The stream arrives in pieces of any size (the reader's buffer); a chunk is
//! handed out only once the bytes after it are known or the stream ended, so the
//! cuts are the same however the stream was split (tested below). Memory: at most
//! `MAX` bytes plus the chunker's room held, whatever the size of the pieces
//! (tested below).

use fastcdc::v2020::{Normalization, cut, select_masks};

/// Chunk sizes: a chunk is at least `MIN` bytes (but the last), at most `MAX`,
/// about `AVG` on average. restic uses 512 KiB / 1 MiB / 8 MiB; a smaller maximum
/// bounds the memory each chunk costs while it is hashed and stored.
pub const MIN: usize = 256 << 10;
pub const AVG: usize = 1 << 20;
pub const MAX: usize = 4 << 20;

/// Cuts a stream pushed piece by piece into chunks.
pub struct Chunker {
    held: Vec<u8>,
    /// Where the bytes not yet handed out start in `held`.
    start: usize,
    /// What `held` takes in at a time beyond the (fewer than) `MAX` bytes pending.
    room: usize,
    masks: (u64, u64),
}

/// Room for a file read in 8 MiB pieces or a dump: the pending bytes move to the
/// front once per `MAX` bytes taken in, so each byte is moved less than once.
impl Default for Chunker {
    fn default() -> Self {
        Chunker::with_room(MAX)
    }
}

impl Chunker {
    /// Holds at most `MAX + room` bytes. Less room costs moves: the pending bytes
    /// (up to `MAX`) go to the front once per `room` bytes taken in. The
    /// manifest, written last while the run's other buffers are all alive, takes
    /// 1 MiB of room: 3 MiB less at the run's peak, for about three moves of
    /// each of its bytes (a few tens of ms for a million files).
    pub fn with_room(room: usize) -> Chunker {
        let room = room.clamp(1, MAX);
        Chunker {
            held: Vec::with_capacity(MAX + room),
            start: 0,
            room,
            masks: select_masks(AVG, Normalization::Level1),
        }
    }

    /// The length of the next chunk of `data` (all of it when shorter than `MIN`).
    fn next_cut(&self, data: &[u8]) -> usize {
        let (s, l) = self.masks;
        let (_, n) = cut(data, MIN, AVG, MAX, s, l, s << 1, l << 1);
        n.clamp(1.min(data.len()), data.len())
    }

    /// Adds `piece` and hands `emit` every chunk that is now complete, in order.
    pub fn push<E>(
        &mut self,
        piece: &[u8],
        emit: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        // In steps of at most `room` bytes, so that `held` never outgrows its
        // first MAX + room: after the cuts fewer than MAX bytes are pending, and
        // they are moved to the front whenever the next step would not fit
        // behind them.
        for step in piece.chunks(self.room) {
            if self.held.len() + step.len() > self.held.capacity() {
                self.held.drain(..self.start);
                self.start = 0;
            }
            self.held.extend_from_slice(step);
            // A cut needs MAX bytes ahead to be final: with fewer, more bytes could
            // move it (the stream may go on).
            while self.held.len() - self.start >= MAX {
                let n = self.next_cut(&self.held[self.start..]);
                emit(&self.held[self.start..self.start + n])?;
                self.start += n;
            }
        }
        Ok(())
    }

    /// The stream ended: hands out what is left, in chunks, and is ready for the
    /// next stream.
    pub fn finish<E>(&mut self, emit: &mut impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
        while self.start < self.held.len() {
            let n = self.next_cut(&self.held[self.start..]);
            emit(&self.held[self.start..self.start + n])?;
            self.start += n;
        }
        self.reset();
        Ok(())
    }

    /// Forgets the stream begun (a file read again from its start).
    pub fn reset(&mut self) {
        self.held.clear();
        self.start = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn chunks(data: &[u8], piece: usize) -> Vec<Vec<u8>> {
        chunks_with(Chunker::default(), data, piece)
    }

    fn chunks_with(mut c: Chunker, data: &[u8], piece: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut emit = |b: &[u8]| -> Result<(), ()> {
            out.push(b.to_vec());
            Ok(())
        };
        for p in data.chunks(piece) {
            c.push(p, &mut emit).expect("test");
        }
        c.finish(&mut emit).expect("test");
        out
    }

    #[test]
    fn cuts_do_not_depend_on_how_the_stream_was_split() {
        let data = noise(20 << 20, 7);
        let whole = chunks(&data, data.len());
        assert!(whole.len() > 8, "{} chunks", whole.len());
        assert_eq!(whole.concat(), data);
        for piece in [4096, 65536, 1 << 20, 3 << 20, 9 << 20] {
            assert_eq!(chunks(&data, piece), whole, "pieces of {piece}");
            for room in [1 << 20, (1 << 20) + 1] {
                let c = Chunker::with_room(room);
                assert_eq!(chunks_with(c, &data, piece), whole, "{piece}, {room}");
            }
        }
        // The same cuts as FastCDC's over the whole stream at once.
        let (s, l) = select_masks(AVG, Normalization::Level1);
        let mut at = 0;
        for c in &whole {
            let (_, n) = cut(&data[at..], MIN, AVG, MAX, s, l, s << 1, l << 1);
            assert_eq!(n, c.len(), "the chunk at {at}");
            at += n;
        }
        for c in &whole[..whole.len() - 1] {
            assert!((MIN..=MAX).contains(&c.len()), "{}", c.len());
        }
    }

    #[test]
    fn a_change_in_the_middle_leaves_the_other_chunks_alone() {
        let data = noise(24 << 20, 3);
        let mut changed = data.clone();
        changed[12 << 20..(12 << 20) + 65536].fill(0xAB);
        let before = chunks(&data, 1 << 20);
        let after = chunks(&changed, 1 << 20);
        let new = after.iter().filter(|c| !before.contains(c)).count();
        assert!(new <= 3, "{new} of {} chunks are new", after.len());
        assert!(after.len() > 10);
    }

    #[test]
    fn what_is_held_never_outgrows_a_maximum_chunk_and_the_room() {
        let data = noise(40 << 20, 11);
        for room in [MAX, 1 << 20] {
            for piece in [4096, 1 << 20, (1 << 20) + 17, 9 << 20] {
                let mut c = Chunker::with_room(room);
                let mut most = 0;
                for p in data.chunks(piece) {
                    c.push(p, &mut |_: &[u8]| -> Result<(), ()> { Ok(()) })
                        .expect("test");
                    most = most.max(c.held.capacity());
                }
                assert!(most <= MAX + room, "{piece}, {room}: {most} bytes held");
            }
        }
    }

    #[test]
    fn short_and_empty_streams() {
        assert!(chunks(&[], 10).is_empty());
        assert_eq!(chunks(&[1, 2, 3], 2), vec![vec![1, 2, 3]]);
    }
}
