//! The seek table of a pack's zstd stream (the zstd "seekable format"): which
//! compressed bytes hold which uncompressed bytes, so that one file can be read from
//! the middle of a pack without decompressing everything before it.
//!
//! The table sits at the end of the stream in a skippable frame, which plain
//! `zstd -d` skips: operators can still unpack a pack with `age -d | zstd -d | tar -x`.
//! Both sides live here: the pack writer builds the frame with
//! [`SeekTable::to_skippable_frame`], the reader gets it back with [`SeekTable::parse`].
//! What is parsed comes from a target and is treated as hostile.

use thiserror::Error;

/// Magic number of a zstd skippable frame, the variant the seekable format uses.
pub const SKIPPABLE_MAGIC: u32 = 0x184D_2A5E;
/// Last four bytes of a seekable stream.
pub const SEEKABLE_MAGIC: u32 = 0x8F92_EAB1;
/// Bytes of the footer at the very end of the stream: frame count, descriptor, magic.
pub const FOOTER: usize = 9;
/// Uncompressed bytes per frame written by coffer (the last frame of a pack may be
/// shorter). The reader accepts other sizes up to [`MAX_FRAME_DECOMPRESSED`].
pub const FRAME_SIZE: usize = 1 << 20;
/// Most frames a table may list: 16 TiB of 1 MiB frames, and a table of 128 MiB.
pub const MAX_FRAMES: u32 = 1 << 24;
/// Largest uncompressed frame accepted. Reaching an offset costs decoding up to this
/// much of its frame, so a planted table must not make that unbounded.
pub const MAX_FRAME_DECOMPRESSED: u32 = 16 << 20;

/// Skippable magic plus `Frame_Size`.
const FRAME_HEADER: usize = 8;
const ENTRY: usize = 8;
const ENTRY_WITH_CHECKSUM: usize = 12;
const CHECKSUM_FLAG: u8 = 0x80;
/// The spec says decoders must refuse these bits: they announce a format change.
const RESERVED_BITS: u8 = 0x7C;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SeekTableError {
    #[error("the stream does not end with a seek table (no seekable magic number)")]
    NoMagic,
    #[error(
        "the seek table descriptor {0:#04x} sets reserved bits (a format this reader does not know)"
    )]
    ReservedBits(u8),
    #[error("the seek table lists {0} frames, more than the {MAX_FRAMES} allowed")]
    TooManyFrames(u64),
    #[error("the seek table needs {need} bytes but only {have} are there")]
    Short { need: u64, have: u64 },
    #[error("the seek table's skippable frame is malformed: {0}")]
    BadFrame(String),
    #[error("frame {index} of the seek table: {what}")]
    BadEntry { index: usize, what: String },
    #[error(
        "the seek table's frames add up to {frames} compressed bytes, but the stream holds {stream} bytes before the table"
    )]
    SizesDoNotAddUp { frames: u64, stream: u64 },
}

/// Where one frame sits, in the compressed stream and in the uncompressed data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub index: usize,
    pub compressed_start: u64,
    pub compressed_size: u32,
    pub decompressed_start: u64,
    pub decompressed_size: u32,
}

impl Frame {
    pub fn compressed_end(&self) -> u64 {
        self.compressed_start + u64::from(self.compressed_size)
    }
}

/// The frames of one stream, kept as running totals so that [`SeekTable::locate`] is
/// a binary search and no sum is recomputed per lookup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeekTable {
    /// `compressed_ends[i]`: offset in the stream just past frame `i`.
    compressed_ends: Vec<u64>,
    /// `decompressed_ends[i]`: uncompressed offset just past frame `i`.
    decompressed_ends: Vec<u64>,
}

impl SeekTable {
    #[cfg(test)]
    pub fn new() -> SeekTable {
        SeekTable::default()
    }

    /// Appends the next frame (writer side, in stream order). Refuses what the format
    /// cannot hold or the reader would refuse, so a writer cannot produce a pack that
    /// cannot be read back.
    pub fn push(&mut self, compressed: u64, decompressed: u64) -> Result<(), SeekTableError> {
        let index = self.len();
        if index >= MAX_FRAMES as usize {
            return Err(SeekTableError::TooManyFrames(index as u64 + 1));
        }
        let bad = |what: String| SeekTableError::BadEntry { index, what };
        let compressed = u32::try_from(compressed)
            .map_err(|_| bad(format!("compressed size {compressed} does not fit 32 bits")))?;
        let decompressed = u32::try_from(decompressed).map_err(|_| {
            bad(format!(
                "decompressed size {decompressed} does not fit 32 bits"
            ))
        })?;
        self.push_entry(index, compressed, decompressed, u64::MAX)
    }

    /// Checks one entry against the limits and `stream_room` (the compressed bytes
    /// the frames may take in all), then appends it.
    fn push_entry(
        &mut self,
        index: usize,
        compressed: u32,
        decompressed: u32,
        stream_room: u64,
    ) -> Result<(), SeekTableError> {
        let bad = |what: String| SeekTableError::BadEntry { index, what };
        // Every zstd frame has at least a magic number: a zero-sized entry would make
        // the next frame be decoded as this one.
        if compressed == 0 {
            return Err(bad("compressed size 0".into()));
        }
        if decompressed > MAX_FRAME_DECOMPRESSED {
            return Err(bad(format!(
                "decompressed size {decompressed} exceeds the {MAX_FRAME_DECOMPRESSED} allowed"
            )));
        }
        let c_end = self
            .compressed_len()
            .checked_add(u64::from(compressed))
            .filter(|end| *end <= stream_room)
            .ok_or_else(|| SeekTableError::SizesDoNotAddUp {
                frames: self.compressed_len().saturating_add(u64::from(compressed)),
                stream: stream_room,
            })?;
        let d_end = self
            .decompressed_len()
            .checked_add(u64::from(decompressed))
            .ok_or_else(|| bad("uncompressed offsets overflow".into()))?;
        self.compressed_ends.push(c_end);
        self.decompressed_ends.push(d_end);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.compressed_ends.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.compressed_ends.is_empty()
    }

    /// Compressed bytes of all frames: where the table's own frame starts.
    pub fn compressed_len(&self) -> u64 {
        self.compressed_ends.last().copied().unwrap_or(0)
    }

    /// Uncompressed bytes of all frames: the length of the tar stream.
    pub fn decompressed_len(&self) -> u64 {
        self.decompressed_ends.last().copied().unwrap_or(0)
    }

    /// Bytes of the table's skippable frame, header and footer included.
    pub fn encoded_len(&self) -> u64 {
        (FRAME_HEADER + FOOTER + ENTRY * self.len()) as u64
    }

    pub fn frame(&self, index: usize) -> Option<Frame> {
        let c_end = *self.compressed_ends.get(index)?;
        let d_end = *self.decompressed_ends.get(index)?;
        let (c_start, d_start) = match index.checked_sub(1) {
            Some(prev) => (self.compressed_ends[prev], self.decompressed_ends[prev]),
            None => (0, 0),
        };
        // push_entry bounded both sizes to 32 bits.
        Some(Frame {
            index,
            compressed_start: c_start,
            compressed_size: u32::try_from(c_end - c_start).ok()?,
            decompressed_start: d_start,
            decompressed_size: u32::try_from(d_end - d_start).ok()?,
        })
    }

    /// The frame holding uncompressed byte `offset`, or `None` past the end.
    pub fn locate(&self, offset: u64) -> Option<Frame> {
        // The first frame ending after `offset`; empty frames (allowed by the format)
        // end where they start and so are never picked.
        let index = self.decompressed_ends.partition_point(|end| *end <= offset);
        self.frame(index)
    }

    /// The table as the skippable frame that ends a seekable stream (no checksums).
    pub fn to_skippable_frame(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len() as usize);
        out.extend_from_slice(&SKIPPABLE_MAGIC.to_le_bytes());
        // Bounded by MAX_FRAMES * 8 + 9, far below u32::MAX.
        let frame_size = (ENTRY * self.len() + FOOTER) as u32;
        out.extend_from_slice(&frame_size.to_le_bytes());
        for index in 0..self.len() {
            if let Some(f) = self.frame(index) {
                out.extend_from_slice(&f.compressed_size.to_le_bytes());
                out.extend_from_slice(&f.decompressed_size.to_le_bytes());
            }
        }
        out.extend_from_slice(&(self.len() as u32).to_le_bytes());
        out.push(0);
        out.extend_from_slice(&SEEKABLE_MAGIC.to_le_bytes());
        out
    }

    /// The length of the whole table frame, from the stream's last [`FOOTER`] bytes:
    /// how much more of the stream's end [`SeekTable::parse`] needs.
    pub fn table_len(footer: &[u8]) -> Result<u64, SeekTableError> {
        let footer = footer.last_chunk::<FOOTER>().ok_or(SeekTableError::Short {
            need: FOOTER as u64,
            have: footer.len() as u64,
        })?;
        let (count, descriptor, magic) = split_footer(footer);
        if magic != SEEKABLE_MAGIC {
            return Err(SeekTableError::NoMagic);
        }
        if descriptor & RESERVED_BITS != 0 {
            return Err(SeekTableError::ReservedBits(descriptor));
        }
        if count > MAX_FRAMES {
            return Err(SeekTableError::TooManyFrames(u64::from(count)));
        }
        Ok((FRAME_HEADER + FOOTER) as u64 + u64::from(count) * entry_len(descriptor) as u64)
    }

    /// Reads the table from `tail`, the last bytes of a zstd stream of `stream_len`
    /// bytes (at least [`SeekTable::table_len`] of them). Refuses a table whose frames
    /// do not exactly fill the stream up to the table.
    pub fn parse(tail: &[u8], stream_len: u64) -> Result<SeekTable, SeekTableError> {
        let table_len = SeekTable::table_len(tail)?;
        let have = tail.len() as u64;
        if have < table_len || stream_len < table_len {
            return Err(SeekTableError::Short {
                need: table_len,
                have: have.min(stream_len),
            });
        }
        // table_len <= tail.len(), so it fits usize.
        let frame = &tail[tail.len() - table_len as usize..];
        let (header, rest) = frame.split_at(FRAME_HEADER);
        let magic = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        if magic != SKIPPABLE_MAGIC {
            return Err(SeekTableError::BadFrame(format!(
                "magic {magic:#010x} instead of {SKIPPABLE_MAGIC:#010x}"
            )));
        }
        let frame_size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if u64::from(frame_size) != table_len - FRAME_HEADER as u64 {
            return Err(SeekTableError::BadFrame(format!(
                "Frame_Size says {frame_size} bytes, the footer implies {}",
                table_len - FRAME_HEADER as u64
            )));
        }
        let (entries, footer) = rest.split_at(rest.len() - FOOTER);
        let (_, descriptor, _) =
            split_footer(footer.last_chunk::<FOOTER>().ok_or(SeekTableError::Short {
                need: FOOTER as u64,
                have: footer.len() as u64,
            })?);
        let room = stream_len - table_len;
        let step = entry_len(descriptor);
        let count = entries.len() / step;
        // The count is bounded by bytes that are really there, so this allocation is
        // paid for by the stream, never by a number in it.
        let mut table = SeekTable {
            compressed_ends: Vec::with_capacity(count),
            decompressed_ends: Vec::with_capacity(count),
        };
        for (index, e) in entries.chunks_exact(step).enumerate() {
            let compressed = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
            let decompressed = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
            table.push_entry(index, compressed, decompressed, room)?;
        }
        if table.compressed_len() != room {
            return Err(SeekTableError::SizesDoNotAddUp {
                frames: table.compressed_len(),
                stream: room,
            });
        }
        Ok(table)
    }
}

fn split_footer(footer: &[u8; FOOTER]) -> (u32, u8, u32) {
    let count = u32::from_le_bytes([footer[0], footer[1], footer[2], footer[3]]);
    let magic = u32::from_le_bytes([footer[5], footer[6], footer[7], footer[8]]);
    (count, footer[4], magic)
}

fn entry_len(descriptor: u8) -> usize {
    if descriptor & CHECKSUM_FLAG != 0 {
        ENTRY_WITH_CHECKSUM
    } else {
        ENTRY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(frames: &[(u64, u64)]) -> SeekTable {
        let mut t = SeekTable::new();
        for &(c, d) in frames {
            t.push(c, d).expect("valid frame");
        }
        t
    }

    /// A stream whose frames are filler bytes of the listed compressed sizes.
    fn stream(t: &SeekTable) -> Vec<u8> {
        let mut s = vec![0xAB; t.compressed_len() as usize];
        s.extend(t.to_skippable_frame());
        s
    }

    fn footer(count: u32, descriptor: u8) -> Vec<u8> {
        let mut f = count.to_le_bytes().to_vec();
        f.push(descriptor);
        f.extend(SEEKABLE_MAGIC.to_le_bytes());
        f
    }

    #[test]
    fn round_trips_and_locates_every_boundary() {
        let t = table(&[(100, 1 << 20), (50, 1 << 20), (7, 10)]);
        let s = stream(&t);
        assert_eq!(s.len() as u64, 157 + t.encoded_len());
        let tl = SeekTable::table_len(&s[s.len() - FOOTER..]).expect("footer");
        assert_eq!(tl, t.encoded_len());
        let back = SeekTable::parse(&s, s.len() as u64).expect("parse");
        assert_eq!(back, t);
        // Only the table's own bytes are needed.
        let only = &s[s.len() - tl as usize..];
        assert_eq!(SeekTable::parse(only, s.len() as u64), Ok(t.clone()));

        let f = |o| {
            t.locate(o)
                .map(|f| (f.index, f.compressed_start, f.decompressed_start))
        };
        assert_eq!(f(0), Some((0, 0, 0)));
        assert_eq!(f((1 << 20) - 1), Some((0, 0, 0)));
        assert_eq!(f(1 << 20), Some((1, 100, 1 << 20)));
        assert_eq!(f((2 << 20) + 9), Some((2, 150, 2 << 20)));
        assert_eq!(f((2 << 20) + 10), None);
        assert_eq!(f(u64::MAX), None);
        assert_eq!(t.decompressed_len(), (2 << 20) + 10);
    }

    #[test]
    fn empty_frames_are_never_located() {
        let t = table(&[(10, 5), (9, 0), (10, 5)]);
        assert_eq!(t.locate(4).map(|f| f.index), Some(0));
        assert_eq!(t.locate(5).map(|f| f.index), Some(2));
        let s = stream(&t);
        assert_eq!(SeekTable::parse(&s, s.len() as u64), Ok(t));
    }

    #[test]
    fn the_frame_is_a_valid_skippable_frame() {
        let t = table(&[(3, 4)]);
        let f = t.to_skippable_frame();
        assert_eq!(&f[..4], &[0x5E, 0x2A, 0x4D, 0x18]);
        assert_eq!(
            u32::from_le_bytes([f[4], f[5], f[6], f[7]]) as usize,
            f.len() - 8
        );
        assert_eq!(&f[f.len() - 4..], &[0xB1, 0xEA, 0x92, 0x8F]);
        assert_eq!(f[f.len() - 5], 0, "no checksums");
    }

    #[test]
    fn checksummed_entries_are_read() {
        let mut s = vec![0u8; 30];
        s.extend(SKIPPABLE_MAGIC.to_le_bytes());
        s.extend((2 * 12 + 9u32).to_le_bytes());
        for (c, d) in [(10u32, 100u32), (20, 200)] {
            s.extend(c.to_le_bytes());
            s.extend(d.to_le_bytes());
            s.extend(0xDEAD_BEEFu32.to_le_bytes());
        }
        s.extend(footer(2, 0x80));
        let t = SeekTable::parse(&s, s.len() as u64).expect("parse");
        assert_eq!(t, table(&[(10, 100), (20, 200)]));
    }

    #[test]
    fn a_huge_frame_count_is_refused_from_the_footer_alone() {
        let e = SeekTable::table_len(&footer(u32::MAX, 0));
        assert_eq!(e, Err(SeekTableError::TooManyFrames(u64::from(u32::MAX))));
        // Within the limit, but far more than the bytes given: refused before any
        // allocation sized by the count.
        let e = SeekTable::parse(&footer(MAX_FRAMES, 0), 1 << 40);
        assert!(matches!(e, Err(SeekTableError::Short { .. })), "{e:?}");
        let mut s = vec![0u8; 100];
        s.extend(footer(1000, 0));
        let e = SeekTable::parse(&s, s.len() as u64);
        assert!(matches!(e, Err(SeekTableError::Short { need, .. }) if need == 8017));
    }

    #[test]
    fn sizes_that_do_not_add_up_are_refused() {
        let t = table(&[(100, 1 << 20), (50, 10)]);
        let mut s = stream(&t);
        // One stray byte between the frames and the table.
        s.insert(0, 0);
        let e = SeekTable::parse(&s, s.len() as u64).expect_err("stray byte");
        assert_eq!(
            e,
            SeekTableError::SizesDoNotAddUp {
                frames: 150,
                stream: 151
            }
        );
        assert!(e.to_string().contains("add up to 150"), "{e}");
        // Frames claiming more than the stream holds: refused at the first frame past it.
        let s = stream(&t);
        let e = SeekTable::parse(&s[100..], s.len() as u64 - 100).expect_err("short stream");
        assert!(matches!(e, SeekTableError::SizesDoNotAddUp { .. }), "{e:?}");
        // Too short to hold even the table.
        let e = SeekTable::parse(&s, 20).expect_err("stream shorter than table");
        assert!(matches!(e, SeekTableError::Short { .. }), "{e:?}");
    }

    #[test]
    fn malformed_tables_are_refused() {
        let t = table(&[(100, 1 << 20)]);
        let good = stream(&t);
        let n = good.len();
        let parse = |s: &[u8]| SeekTable::parse(s, s.len() as u64);

        let mut s = good.clone();
        s[n - 1] ^= 1;
        assert_eq!(parse(&s), Err(SeekTableError::NoMagic));

        let mut s = good.clone();
        s[n - 5] = 0x04;
        assert_eq!(parse(&s), Err(SeekTableError::ReservedBits(0x04)));

        let mut s = good.clone();
        s[100] ^= 1; // skippable magic
        assert!(matches!(parse(&s), Err(SeekTableError::BadFrame(_))));

        let mut s = good.clone();
        s[104] += 1; // Frame_Size
        assert!(matches!(parse(&s), Err(SeekTableError::BadFrame(_))));

        let mut s = good.clone();
        s[108..112].copy_from_slice(&0u32.to_le_bytes());
        assert!(matches!(
            parse(&s),
            Err(SeekTableError::BadEntry { index: 0, .. })
        ));

        let mut s = good.clone();
        s[112..116].copy_from_slice(&(MAX_FRAME_DECOMPRESSED + 1).to_le_bytes());
        assert!(matches!(
            parse(&s),
            Err(SeekTableError::BadEntry { index: 0, .. })
        ));

        assert!(matches!(
            parse(&good[n - 4..]),
            Err(SeekTableError::Short { .. })
        ));
        assert_eq!(parse(&good), Ok(t));
    }

    #[test]
    fn the_writer_cannot_push_what_the_reader_refuses() {
        let mut t = SeekTable::new();
        assert!(t.push(u64::from(u32::MAX) + 1, 1).is_err());
        assert!(t.push(0, 1).is_err());
        assert!(t.push(1, u64::from(MAX_FRAME_DECOMPRESSED) + 1).is_err());
        assert!(t.is_empty());
        t.push(1, FRAME_SIZE as u64).expect("a normal frame");
        assert_eq!(t.len(), 1);
    }
}
