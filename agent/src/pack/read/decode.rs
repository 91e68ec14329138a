//! Decoding what a read asks for: continuing the decoder of an open pack when
//! that costs less than seeking (in order, or within the planned need), else a
//! fresh decoder at the frame that holds the offset; fetch limits so that a small
//! read fetches little; and copying the bytes out with their BLAKE3.

use super::{
    AGE_CHUNK, AGE_TAG, Decoder, OpenPack, PackInfo, PackReader, Plain, REUSE_DISTANCE,
    WINDOW_LOG_MAX,
};
use std::io::{self, Read, Seek, SeekFrom, Write};

const COPY_BUF: u64 = 64 << 10;
/// zstd's largest block: decoding any byte of one needs all of it.
pub(super) const ZSTD_BLOCK: u64 = 128 << 10;

impl PackReader<'_> {
    /// Continues the decoder when `offset` is ahead of it in the frame it is
    /// decoding or, planned, in the same run of needed frames (a seek there would
    /// go back before the last window fetched and fetch it again); unplanned, when
    /// `offset` is a little ahead. Else seeks to the frame holding `offset`:
    /// decoding on would fetch every byte between, which a restore skipping files
    /// the snapshot no longer has (deleted, changed since) does not need.
    pub(super) fn reposition(&self, open: OpenPack, offset: u64, end: u64) -> io::Result<OpenPack> {
        let OpenPack { info, decoder, pos } = open;
        self.check_holds(&info.pack, &info.table, offset, end)?;
        let frame_start = info
            .table
            .locate(offset)
            .map_or(u64::MAX, |f| f.decompressed_start);
        let near = match self.plan.run_end(&info.pack, pos) {
            Some(run_end) => offset < run_end,
            None => !self.plan.any() && offset - pos.min(offset) <= REUSE_DISTANCE,
        };
        if offset >= pos && (frame_start <= pos || near) {
            // Reading on in order: let fetch windows grow, over the planned need.
            match self.planned_end(&info, offset) {
                Some(at) => info.limit.set(at),
                None => info.limit.clear(),
            }
            return Ok(OpenPack { info, decoder, pos });
        }
        let plain = decoder.finish().into_inner();
        let (decoder, pos) = self.start_decoder(&info, plain, offset, end)?;
        Ok(OpenPack { info, decoder, pos })
    }

    /// The stored offset past the sealed chunks that hold the planned run of needs
    /// around `offset`, and one zstd block more (a block is decoded whole). Inside
    /// a frame the compressed position is taken in proportion: a hint, which a
    /// decoder needing more simply reads past.
    fn planned_end(&self, info: &PackInfo, offset: u64) -> Option<u64> {
        let end = self
            .plan
            .run_end(&info.pack, offset)?
            .min(info.table.decompressed_len());
        let last = info.table.locate(end.checked_sub(1)?)?;
        let into = u128::from(end - last.decompressed_start) * u128::from(last.compressed_size)
            / u128::from(last.decompressed_size.max(1));
        let at = last
            .compressed_start
            .saturating_add(u64::try_from(into).unwrap_or(u64::MAX))
            .saturating_add(ZSTD_BLOCK)
            .min(last.compressed_end());
        Some(cipher_end(info.payload_start, at))
    }

    /// A fresh decoder at the frame holding `offset`, and that frame's start.
    pub(super) fn start_decoder(
        &self,
        info: &PackInfo,
        mut plain: Plain,
        offset: u64,
        end: u64,
    ) -> io::Result<(Decoder, u64)> {
        let Some(first) = info.table.locate(offset) else {
            return Err(self.too_short(&info.pack, &info.table, offset, end));
        };
        // Fetch no further than the planned need or, unplanned, the sealed chunks of
        // the first frame needed: a small read must not pull a doubled window. Past
        // it windows start small again.
        info.limit.set(
            self.planned_end(info, offset)
                .unwrap_or_else(|| cipher_end(info.payload_start, first.compressed_end())),
        );
        plain
            .seek(SeekFrom::Start(first.compressed_start))
            .map_err(|e| self.read_error(&info.pack, e))?;
        let mut decoder = zstd::stream::read::Decoder::new(plain)?;
        decoder.window_log_max(WINDOW_LOG_MAX)?;
        Ok((decoder, first.decompressed_start))
    }

    pub(super) fn copy(
        &self,
        open: &mut OpenPack,
        offset: u64,
        size: u64,
        out: &mut dyn Write,
    ) -> io::Result<blake3::Hash> {
        let pack = open.info.pack.as_str();
        let ended = || {
            self.damaged(
                pack,
                "its frames decode to fewer bytes than its seek table lists".into(),
            )
        };
        let skip = offset - open.pos;
        let skipped = io::copy(&mut (&mut open.decoder).take(skip), &mut io::sink())
            .map_err(|e| self.read_error(pack, e))?;
        if skipped < skip {
            return Err(ended());
        }
        open.pos = offset;
        let mut hasher = blake3::Hasher::new();
        // At most COPY_BUF, so it fits usize.
        let mut buf = vec![0u8; size.min(COPY_BUF) as usize];
        let mut left = size;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match open.decoder.read(&mut buf[..want]) {
                Ok(0) => return Err(ended()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.read_error(pack, e)),
            };
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot write content of pack {pack} on target {}: {e}",
                        self.target
                    ),
                )
            })?;
            left -= n as u64;
            open.pos += n as u64;
        }
        Ok(hasher.finalize())
    }
}

/// The stored offset just past the sealed chunk holding plaintext byte `plain_end - 1`.
fn cipher_end(payload_start: u64, plain_end: u64) -> u64 {
    let chunks = plain_end.div_ceil(AGE_CHUNK);
    payload_start.saturating_add(chunks.saturating_mul(AGE_CHUNK + AGE_TAG))
}
