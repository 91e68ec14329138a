//! Reading one regular file for the archive so that what is stored is one read of
//! it, taken while it did not change.
//!
//! A tar header states the size before the data, so a file read straight into the
//! stream is committed to the size it had when the read began: a file truncated
//! while it was read left a hole that had to be filled (with zeros, which the
//! manifest then hashed and a restore faithfully brought back), and a file
//! rewritten while it was read was stored torn. So the file is first read into
//! something the stream does not see yet: the walk's 1 MiB read buffer for small
//! files (no extra memory), an unnamed file in the source's scratch directory for
//! larger ones. Its `fstat` before and after the read says whether it changed; if
//! it did, it is read again, up to `MAX_TRIES` times. Only then is its header
//! written, with the size of the bytes held, so a file that kept changing is stored
//! as last read, consistently sized, and marked `changed`.
//!
//! A staged file costs a copy through the page cache and back, which stays cheap
//! only while the kernel need not write it to disk: files over `stage_limit` (1 GiB,
//! or 1/16 of the host's memory if that is less, below the usual 10% at which
//! background writeback starts), or when the scratch directory lacks the room, are
//! read straight into the stream as before (`read_direct`); staging a 50 GiB disk
//! image would need 50 GiB of scratch space and write it all twice. Such a file is
//! not re-read; if it shrank, the rest of its entry is zeros that the manifest
//! records as `padding`, outside its size and hash, so a restore writes only what
//! was read.
//!
//! Just over 400 lines: the staged read, the direct read and their retries share
//! one reader's buffer, scratch file and faults; split, each would need all three.

use crate::fs::stat::Stat;
use crate::sources::source::Progress;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// Reads of a changing file before it is stored as last read.
pub const MAX_TRIES: u32 = 3;

/// Files up to this size (or `stage_limit`) are staged in the scratch directory to
/// be re-read; larger ones are streamed directly.
pub const STAGE_MAX: u64 = 1 << 30;

/// The largest file to stage on this host: `STAGE_MAX`, or 1/16 of its memory when
/// that is less (`STAGE_MAX` when `/proc/meminfo` cannot say).
fn stage_limit() -> u64 {
    crate::fs::meminfo::bytes("MemTotal").map_or(STAGE_MAX, |total| STAGE_MAX.min(total / 16))
}

/// Room to leave in the scratch directory's filesystem after staging a file: the
/// entry log and other sources write there too.
const STAGE_RESERVE: u64 = 256 << 20;

/// Whether a file was modified between two stats of it.
pub fn differs(a: &Stat, b: &Stat) -> bool {
    a.len() != b.len()
        || a.mtime() != b.mtime()
        || a.mtime_nsec() != b.mtime_nsec()
        || a.ctime() != b.ctime()
        || a.ctime_nsec() != b.ctime_nsec()
}

/// What went wrong, by whose fault: the file read, the scratch file, the stream.
#[derive(Debug)]
pub enum Fault {
    Source(io::Error),
    Stage(io::Error),
    Output(io::Error),
}

/// Where the bytes of a held read are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    Buffer,
    Staged,
}

/// One read of a file, held until its header is written.
#[derive(Debug)]
pub struct Read {
    /// The file's stat taken just before this read (mode, owner, times to record).
    pub md: Stat,
    pub len: u64,
    pub hash: blake3::Hash,
    /// Reads it took (1 when the first read was stable).
    pub tries: u32,
    /// False when the file still changed during the last read.
    pub stable: bool,
    pub held: Held,
}

/// The outcome of `capture`.
#[derive(Debug)]
pub enum Capture {
    Held(Read),
    /// Too large to hold (or no room to): stream it with `read_direct`; why, for
    /// the warning if it changes, and its latest stat.
    Direct {
        md: Stat,
        why: String,
    },
}

/// The buffer and scratch file of one stream's reads.
#[derive(Debug)]
pub struct StableReader {
    pub buf: Vec<u8>,
    tmp_dir: PathBuf,
    /// Created on the first file too large for the buffer; truncated after each use.
    stage: Option<File>,
    /// The largest file staged (`stage_limit`).
    stage_max: u64,
}

impl StableReader {
    pub fn new(buf_size: usize, tmp_dir: PathBuf) -> Self {
        StableReader {
            buf: vec![0u8; buf_size],
            tmp_dir,
            stage: None,
            stage_max: stage_limit(),
        }
    }

    /// The scratch directory, for error messages about the staging file.
    pub fn tmp_dir(&self) -> &std::path::Path {
        &self.tmp_dir
    }

    /// Reads `file` (whose stat is `first`) until one read is stable or `MAX_TRIES`
    /// reads were made, and holds the last one. `read` counts every byte read.
    pub fn capture(
        &mut self,
        file: &File,
        first: Stat,
        read: &mut u64,
        progress: &Progress,
    ) -> Result<Capture, Fault> {
        self.capture_with(file, first, read, progress, &mut |_| {})
    }

    /// `capture`, calling `before_read` with the try's number between its stat and
    /// its read (where the unit tests change the file).
    fn capture_with(
        &mut self,
        file: &File,
        first: Stat,
        read: &mut u64,
        progress: &Progress,
        before_read: &mut dyn FnMut(u32),
    ) -> Result<Capture, Fault> {
        let mut md = first;
        for tries in 1..=MAX_TRIES {
            if tries > 1 {
                md = Stat::of(file).map_err(Fault::Source)?;
            }
            let size = md.len();
            let held = if size <= self.buf.len() as u64 {
                Held::Buffer
            } else {
                match self.stage_for(size)? {
                    Ok(()) => Held::Staged,
                    Err(why) => return Ok(Capture::Direct { md, why }),
                }
            };
            before_read(tries);
            let got = match held {
                Held::Buffer => self.read_to_buffer(file, size as usize, read, progress),
                Held::Staged => self.read_to_stage(file, size, read, progress),
            };
            let (len, hash) = match got {
                Ok(done) => done,
                Err(Fault::Stage(err)) if no_room(&err) => {
                    self.release();
                    return Ok(Capture::Direct {
                        md,
                        why: format!("the scratch directory {} is full", self.tmp_dir.display()),
                    });
                }
                Err(other) => return Err(other),
            };
            let after = Stat::of(file).map_err(Fault::Source)?;
            let stable = len == size && !differs(&md, &after);
            if stable || tries == MAX_TRIES {
                return Ok(Capture::Held(Read {
                    md,
                    len,
                    hash,
                    tries,
                    stable,
                    held,
                }));
            }
        }
        unreachable!("the last try returns")
    }

    /// Writes a held read to `sink` in large pieces, then frees the scratch file.
    pub fn emit(
        &mut self,
        r: &Read,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<(), Fault> {
        match r.held {
            Held::Buffer => sink(&self.buf[..r.len as usize]).map_err(Fault::Output),
            Held::Staged => {
                let stage = self
                    .stage
                    .as_ref()
                    .ok_or_else(|| Fault::Stage(io::Error::other("no staging file")))?;
                let mut pos = 0u64;
                while pos < r.len {
                    let want = (r.len - pos).min(self.buf.len() as u64) as usize;
                    let n = match stage.read_at(&mut self.buf[..want], pos) {
                        Ok(0) => {
                            return Err(Fault::Stage(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "the staging file is shorter than what was written to it",
                            )));
                        }
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(Fault::Stage(e)),
                    };
                    sink(&self.buf[..n]).map_err(Fault::Output)?;
                    pos += n as u64;
                }
                self.release();
                Ok(())
            }
        }
    }

    /// Lets go of a held read that is not written (its content is stored already).
    pub fn discard(&mut self, r: &Read) {
        if r.held == Held::Staged {
            self.release();
        }
    }

    /// Reads up to `size` bytes of `file` straight into `sink` (its header already
    /// written); returns how many there were and their hash.
    pub fn read_direct(
        &mut self,
        file: &File,
        size: u64,
        read: &mut u64,
        progress: &Progress,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<(u64, blake3::Hash), Fault> {
        self.read_direct_at(file, 0, size, read, progress, sink)
    }

    /// `read_direct` of the `size` bytes from `start` on (a sparse file's piece).
    pub fn read_direct_at(
        &mut self,
        file: &File,
        start: u64,
        size: u64,
        read: &mut u64,
        progress: &Progress,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<(u64, blake3::Hash), Fault> {
        let mut hasher = blake3::Hasher::new();
        let len = self.copy_at(file, start, size, read, progress, &mut |b| {
            hasher.update(b);
            sink(b)
        })?;
        Ok((len, hasher.finalize()))
    }

    /// Reads up to `size` bytes of `file` from `start` into `sink`, without
    /// hashing them (format 2 hashed the file in an earlier read); returns how many
    /// there were.
    pub fn copy_at(
        &mut self,
        file: &File,
        start: u64,
        size: u64,
        read: &mut u64,
        progress: &Progress,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<u64, Fault> {
        let mut pos = 0u64;
        while pos < size {
            let want = (size - pos).min(self.buf.len() as u64) as usize;
            let n = match read_at(file, &mut self.buf[..want], start + pos)? {
                0 => break,
                n => n,
            };
            sink(&self.buf[..n]).map_err(Fault::Output)?;
            pos += n as u64;
            *read += n as u64;
            progress.add(n as u64, 0);
        }
        Ok(pos)
    }

    /// Up to `size` bytes into the buffer.
    fn read_to_buffer(
        &mut self,
        file: &File,
        size: usize,
        read: &mut u64,
        progress: &Progress,
    ) -> Result<(u64, blake3::Hash), Fault> {
        let mut pos = 0usize;
        while pos < size {
            match read_at(file, &mut self.buf[pos..size], pos as u64)? {
                0 => break,
                n => pos += n,
            }
        }
        *read += pos as u64;
        progress.add(pos as u64, 0);
        Ok((pos as u64, blake3::hash(&self.buf[..pos])))
    }

    /// Up to `size` bytes into the (emptied) staging file.
    fn read_to_stage(
        &mut self,
        file: &File,
        size: u64,
        read: &mut u64,
        progress: &Progress,
    ) -> Result<(u64, blake3::Hash), Fault> {
        let stage = self
            .stage
            .as_ref()
            .ok_or_else(|| Fault::Stage(io::Error::other("no staging file")))?;
        stage.set_len(0).map_err(Fault::Stage)?;
        let mut hasher = blake3::Hasher::new();
        let mut pos = 0u64;
        while pos < size {
            let want = (size - pos).min(self.buf.len() as u64) as usize;
            let n = match read_at(file, &mut self.buf[..want], pos)? {
                0 => break,
                n => n,
            };
            hasher.update(&self.buf[..n]);
            stage
                .write_all_at(&self.buf[..n], pos)
                .map_err(Fault::Stage)?;
            pos += n as u64;
            *read += n as u64;
            progress.add(n as u64, 0);
        }
        Ok((pos, hasher.finalize()))
    }

    /// Makes the staging file ready for `size` bytes; `Err(why)` (inside `Ok`) when
    /// this file is to be streamed directly instead.
    fn stage_for(&mut self, size: u64) -> Result<Result<(), String>, Fault> {
        if size > self.stage_max {
            return Ok(Err(format!(
                "it is over {} MiB, too large to re-read",
                self.stage_max >> 20
            )));
        }
        if self.stage.is_none() {
            std::fs::create_dir_all(&self.tmp_dir).map_err(Fault::Stage)?;
            self.stage = Some(tempfile::tempfile_in(&self.tmp_dir).map_err(Fault::Stage)?);
        }
        let Some(stage) = &self.stage else {
            return Err(Fault::Stage(io::Error::other("no staging file")));
        };
        let fs = rustix::fs::fstatvfs(stage).map_err(|e| Fault::Stage(e.into()))?;
        let free = fs.f_bavail.saturating_mul(fs.f_frsize);
        if free < size.saturating_add(STAGE_RESERVE) {
            return Ok(Err(format!(
                "the scratch directory {} has {} MiB free, too little to re-read it",
                self.tmp_dir.display(),
                free >> 20
            )));
        }
        Ok(Ok(()))
    }

    /// Empties the staging file, so its blocks (usually still only in the page
    /// cache) are freed before the next file.
    fn release(&mut self) {
        if let Some(stage) = &self.stage {
            let _ = stage.set_len(0);
        }
    }
}

fn no_room(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(nix::libc::ENOSPC | nix::libc::EDQUOT)
    )
}

fn read_at(file: &File, buf: &mut [u8], pos: u64) -> Result<usize, Fault> {
    loop {
        match file.read_at(buf, pos) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other.map_err(Fault::Source),
        }
    }
}

#[cfg(test)]
#[path = "stable_read_tests.rs"]
mod tests;
