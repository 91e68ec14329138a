//! The entries whose attributes a restore sets after unpacking (directories,
//! symlinks, fifos, devices: every entry but regular files), kept on disk and read
//! back last first, children before their directories.
//!
//! They were a list in memory, "usually few": a manifest of 4,000,000 folders (a
//! 3.4 MB object) made a restore hold 1.95 GB. Here they go to an unnamed scratch
//! file in frames of at most `FRAME_BYTES` of JSON lines, each compressed on its
//! own, so that reading backwards holds one frame: memory does not grow with the
//! number of entries. The file has no name; it vanishes with the process.

use anyhow::{Context, Result};
use coffer_plugins::FileEntry;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// JSON held before a frame is compressed and written; one entry may overshoot
/// it (its extended attributes are bounded at 256 KiB).
const FRAME_BYTES: usize = 256 << 10;

pub struct Others {
    /// The source root's own entry (`.`), applied to the destination itself.
    pub root: Option<FileEntry>,
    dir: std::path::PathBuf,
    file: Option<File>,
    /// (offset, length) of each compressed frame in `file`.
    frames: Vec<(u64, u32)>,
    end: u64,
    pending: Vec<u8>,
    count: u64,
}

impl std::fmt::Debug for Others {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Others({} entries)", self.count)
    }
}

impl Others {
    /// An empty list whose entries will go to an unnamed file in `dir`.
    pub fn new(dir: &Path) -> Others {
        Others {
            root: None,
            dir: dir.to_path_buf(),
            file: None,
            frames: Vec::new(),
            end: 0,
            pending: Vec::new(),
            count: 0,
        }
    }

    pub fn push(&mut self, e: FileEntry) -> Result<()> {
        if e.path.is_root() {
            self.root = Some(e);
            return Ok(());
        }
        serde_json::to_writer(&mut self.pending, &e)?;
        self.pending.push(b'\n');
        self.count += 1;
        if self.pending.len() >= FRAME_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Entries other than the root.
    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let frame = zstd::bulk::compress(&self.pending, 1)?;
        let file = match &mut self.file {
            Some(f) => f,
            None => std::fs::create_dir_all(&self.dir)
                .and_then(|()| tempfile::tempfile_in(&self.dir))
                .map(|f| self.file.insert(f))
                .with_context(|| {
                    format!(
                        "cannot keep the restored folders' list in {}",
                        self.dir.display()
                    )
                })?,
        };
        file.write_all(&frame)
            .with_context(|| format!("cannot write a scratch file in {}", self.dir.display()))?;
        let len = u32::try_from(frame.len()).context("a frame of the folders' list")?;
        self.frames.push((self.end, len));
        self.end += u64::from(len);
        self.pending.clear();
        Ok(())
    }

    /// Every entry but the root, last pushed first.
    pub fn rev(&mut self) -> Result<RevEntries<'_>> {
        self.flush()?;
        Ok(RevEntries {
            file: self.file.as_ref(),
            frames: &self.frames,
            next_frame: self.frames.len(),
            batch: Vec::new(),
        })
    }
}

/// Reads frames from the last to the first, each's entries from its last.
pub struct RevEntries<'a> {
    file: Option<&'a File>,
    frames: &'a [(u64, u32)],
    next_frame: usize,
    batch: Vec<FileEntry>,
}

impl RevEntries<'_> {
    fn load(&mut self, at: u64, len: u32) -> Result<()> {
        let file = self.file.context("the folders' list has no file")?;
        let mut raw = vec![0u8; len as usize];
        file.read_exact_at(&mut raw, at)
            .context("cannot read the folders' list back")?;
        let plain = zstd::stream::decode_all(&raw[..]).context("the folders' list")?;
        self.batch = serde_json::Deserializer::from_slice(&plain)
            .into_iter::<FileEntry>()
            .collect::<Result<_, _>>()
            .context("the folders' list")?;
        Ok(())
    }
}

impl Iterator for RevEntries<'_> {
    type Item = Result<FileEntry>;
    fn next(&mut self) -> Option<Result<FileEntry>> {
        loop {
            if let Some(e) = self.batch.pop() {
                return Some(Ok(e));
            }
            self.next_frame = self.next_frame.checked_sub(1)?;
            let (at, len) = self.frames[self.next_frame];
            if let Err(e) = self.load(at, len) {
                self.next_frame = 0;
                return Some(Err(e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_plugins::EntryKind;

    #[test]
    fn entries_come_back_last_first_across_frames_and_the_root_apart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut others = Others::new(dir.path());
        others
            .push(FileEntry::bare(".", EntryKind::Dir))
            .expect("root");
        let n = 20_000;
        for i in 0..n {
            let mut e = FileEntry::bare(&format!("dir/{i:06}"), EntryKind::Dir);
            e.user = Some("x".repeat(40));
            others.push(e).expect("push");
        }
        assert_eq!(others.len(), n);
        assert!(others.frames.len() > 1, "{} frames", others.frames.len());
        assert_eq!(others.root.as_ref().map(|r| r.path.is_root()), Some(true));
        let back: Vec<String> = others
            .rev()
            .expect("rev")
            .map(|e| e.expect("entry").path.to_string())
            .collect();
        let want: Vec<String> = (0..n).rev().map(|i| format!("dir/{i:06}")).collect();
        assert_eq!(back, want);
        // Read twice, and nothing named was left in the directory.
        assert_eq!(others.rev().expect("rev").count() as u64, n);
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 0);
    }

    #[test]
    fn an_empty_list_needs_no_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gone = dir.path().join("never-made");
        let mut others = Others::new(&gone);
        assert_eq!(others.rev().expect("rev").count(), 0);
        assert!(!gone.exists());
    }
}
