//! The directory source: walks a tree in a stable order and writes it as a tar stream,
//! hashing every file with BLAKE3 in the same read.
//!
//! A file that changes while it is read is read again before anything of it enters
//! the stream (`stable_read`), and one that keeps changing is stored as last read
//! and marked `changed`; one that vanishes is noted. Neither is fatal: an
//! application keeps writing during a backup. A file that cannot be read fails the
//! run (naming it) unless the source says `skip_unreadable`.
//!
//! Over 400 lines on purpose: the walk, the tar writing and the change detection
//! meet here for each file (one open, its `fstat`s, its header and its bytes), and
//! splitting them would pass the same open file and its stats between modules.

use crate::fs::ids::NameCache;
use crate::fs::stat::Stat;
use crate::fs::xattr::On;
use crate::sources::directory::fs_snapshot::TreeSnapshot;
use crate::sources::kind::{DryRun, Kind};
use crate::sources::source::{
    Completed, CompletedFrom, Progress, Source, SourceContext, SourceError, SourceOutcome,
};
use crate::tree::content::ContentSink;
use crate::tree::entry::{EntryKind, FileEntry, RawPath};
use crate::tree::entry_attrs::EntryAttrs;
use crate::tree::entry_log::EntryLog;
use crate::tree::exclude::Excludes;
use crate::tree::stable_read::{Capture, Fault, StableReader, differs};
use crate::tree::tar_writer::{HeaderSpec, TarWriter};
use crate::tree::walk_ahead::{self, Entry, WalkError, WalkOptions};
use coffer_config::DirectorySource as Config;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use tar::EntryType;
use time::OffsetDateTime;

mod complete;
pub mod fs_snapshot;
mod packed;

/// Large reads: fewer syscalls, and zstd and BLAKE3 work best on big slices.
const READ_BUF: usize = 1 << 20;
/// Format 2's read buffer: files up to this size are read once.
const PACKED_READ_BUF: usize = 8 << 20;

#[derive(Debug)]
pub struct DirectorySource {
    name: String,
    cfg: Config,
    excludes: Excludes,
    /// Where the list of entries is kept while the walk runs.
    tmp_dir: PathBuf,
    /// The filesystem snapshot walked instead of the live tree, when configured.
    fs: TreeSnapshot,
    /// When it was taken.
    frozen_at: Option<OffsetDateTime>,
    /// The files the job's check says the database's snapshot references: what the
    /// filesystem snapshot lacks of them is completed (`complete`).
    referenced: Option<Vec<crate::sources::dbquery::Referenced>>,
}

impl DirectorySource {
    pub fn new(name: &str, cfg: &Config, ctx: &SourceContext) -> Result<Self, SourceError> {
        let excludes = Excludes::for_source(cfg).map_err(|e| SourceError::Invalid {
            name: name.to_string(),
            message: format!("bad exclude pattern: {e}"),
        })?;
        Ok(DirectorySource {
            name: name.to_string(),
            cfg: cfg.clone(),
            excludes,
            tmp_dir: ctx.tmp_dir.clone(),
            fs: TreeSnapshot::new(name, cfg, ctx),
            frozen_at: None,
            referenced: None,
        })
    }
}

fn mtime_of(md: &Stat) -> (i64, u32) {
    (md.mtime(), md.mtime_nsec().clamp(0, 999_999_999) as u32)
}

fn major_minor(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0x0000_0fff);
    let minor = ((rdev >> 12) & 0xffff_ff00) | (rdev & 0x0000_00ff);
    (major as u32, minor as u32)
}

/// State of one stream: the walk's bookkeeping.
struct Walk<'a, 's> {
    src: &'a DirectorySource,
    names: NameCache,
    /// Extended attributes and inode flags, with counts of what is not kept.
    attrs: EntryAttrs,
    first_names: HashMap<(u64, u64), RawPath>,
    /// Reads each regular file until one read is stable (see `stable_read`).
    reader: StableReader,
    /// Read from a read-only filesystem snapshot: nothing can change while it is
    /// read, so files are streamed directly, without staging a stable copy.
    frozen: bool,
    /// In a filesystem snapshot, the live tree's device number. A btrfs snapshot
    /// gets a device number of its own, which shifts as other snapshots come and
    /// go, while it keeps the files' inode numbers and times: matched under the
    /// live tree's device, an unchanged file stays unchanged from run to run
    /// (and from a live run to a snapshot run).
    stable_dev: Option<u64>,
    outcome: SourceOutcome,
    progress: &'a Progress,
    /// Format 2: regular files' contents go here, and only when new; the tar
    /// stream then gets no file data (it is discarded).
    sink: Option<&'s mut dyn ContentSink>,
}

impl Walk<'_, '_> {
    fn name(&self) -> String {
        self.src.name.clone()
    }

    fn record(&mut self, e: &FileEntry) -> Result<(), SourceError> {
        self.outcome
            .entries
            .push(e)
            .map_err(|err| self.spill_err(err))
    }

    fn spill_err(&self, err: io::Error) -> SourceError {
        SourceError::Io {
            name: self.name(),
            path: self.src.tmp_dir.clone(),
            err,
        }
    }

    fn out_err(&self, err: io::Error) -> SourceError {
        SourceError::Output {
            name: self.name(),
            err,
        }
    }

    /// A file could not be read: vanished files are noted, unreadable ones fail the
    /// run unless the source skips them.
    fn read_problem(&mut self, path: &Path, err: io::Error) -> Result<(), SourceError> {
        if err.kind() == io::ErrorKind::NotFound {
            self.outcome.vanished += 1;
            self.outcome
                .warnings
                .push(format!("{}: vanished while the backup ran", path.display()));
            return Ok(());
        }
        // Its path now goes through a file: a directory on the way was replaced
        // since the walk passed it. The entry is gone from where it was.
        if err.raw_os_error() == Some(nix::libc::ENOTDIR) {
            self.outcome.vanished += 1;
            self.outcome.warnings.push(format!(
                "{}: vanished while the backup ran (a directory on its path was replaced)",
                path.display()
            ));
            return Ok(());
        }
        if err.kind() == io::ErrorKind::PermissionDenied && self.src.cfg.skip_unreadable {
            self.outcome.skipped += 1;
            self.outcome
                .warnings
                .push(format!("{}: skipped, cannot read: {err}", path.display()));
            return Ok(());
        }
        if err.kind() == io::ErrorKind::PermissionDenied {
            return Err(SourceError::Unreadable {
                name: self.name(),
                path: path.to_path_buf(),
                err,
            });
        }
        Err(SourceError::Io {
            name: self.name(),
            path: path.to_path_buf(),
            err,
        })
    }

    /// The entry for `md`; `on` (its open file or its path) gives its extended
    /// attributes and flags, `None` for a hard link, which shares the first name's.
    fn entry_for(
        &mut self,
        rel: RawPath,
        kind: EntryKind,
        md: &Stat,
        on: Option<(On<'_>, &Path)>,
    ) -> FileEntry {
        let (mtime, mtime_nsec) = mtime_of(md);
        let mut e = FileEntry {
            path: rel,
            kind,
            size: 0,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            user: self.names.user(md.uid()),
            group: self.names.group(md.gid()),
            mtime,
            mtime_nsec,
            blake3: None,
            link: None,
            rdev: None,
            changed: false,
            padding: 0,
            xattrs: Default::default(),
            acl_names: Default::default(),
            flags: Vec::new(),
            content: None,
            sparse: None,
            chunks: None,
        };
        if let Some((on, shown)) = on {
            let warnings = &mut self.outcome.warnings;
            self.attrs.fill(
                &mut e,
                on,
                shown,
                &mut self.names,
                warnings,
                md.inode_flags(),
            );
        }
        e
    }

    fn header<W: Write>(
        &self,
        tar: &mut TarWriter<W>,
        e: &FileEntry,
        kind: EntryType,
    ) -> Result<(), SourceError> {
        let spec = HeaderSpec {
            kind,
            ..HeaderSpec::of(e)
        };
        tar.header(&spec).map_err(|err| self.out_err(err))
    }

    fn one<W: Write>(&mut self, tar: &mut TarWriter<W>, entry: Entry) -> Result<(), SourceError> {
        // Calls that take a path get one through the entry's directory
        // (`exact_path`): any depth, and the entry the walk found even if a
        // directory above it was replaced since. Few entries need one (symlinks,
        // special files). Messages show the full path.
        let sys = entry.exact_path().into_owned();
        let link = entry.md.is_symlink().then(|| entry.read_link());
        let Entry {
            abs,
            rel,
            md,
            file: opened,
            at,
        } = entry;
        let (abs, md) = (abs.as_path(), &md);
        // Through its open directory where the walk has one: the same entry as
        // `sys`, without a lookup through /proc for the calls that have an `*at`.
        let on_path = match &at {
            Some(at) => On::At {
                dir: std::os::fd::AsFd::as_fd(&*at.dir),
                name: &at.name,
                path: &sys,
            },
            None => On::Path(&sys),
        };
        let ft = md.file_type();
        if ft.is_dir() {
            // Its own handle when the walk has it: the directory it listed, even if
            // another has taken its name since.
            let dir = opened.and_then(Result::ok);
            let on = dir.as_ref().map_or(on_path, On::File);
            let e = self.entry_for(rel, EntryKind::Dir, md, Some((on, abs)));
            self.header(tar, &e, EntryType::Directory)?;
            self.record(&e)?;
        } else if let Some(link) = link {
            let target = match link {
                Ok(t) => t,
                Err(err) => return self.read_problem(abs, err),
            };
            let mut e = self.entry_for(rel, EntryKind::Symlink, md, Some((on_path, abs)));
            e.link = Some(RawPath::from_bytes(target.as_os_str().as_bytes()));
            self.header(tar, &e, EntryType::Symlink)?;
            self.record(&e)?;
        } else if ft.is_file() {
            if md.nlink() > 1 {
                if let Some(first) = self.first_names.get(&(md.dev(), md.ino())).cloned() {
                    let mut e = self.entry_for(rel, EntryKind::Hardlink, md, None);
                    e.link = Some(first);
                    self.header(tar, &e, EntryType::Link)?;
                    self.record(&e)?;
                    return Ok(());
                }
                self.first_names.insert((md.dev(), md.ino()), rel.clone());
            }
            if self.sink.is_some() {
                return self.packed_file(abs, rel, (&sys, on_path), md, opened);
            }
            let opened = opened.unwrap_or_else(|| walk_ahead::open_nofollow(&sys));
            self.file(tar, abs, rel, opened)?;
        } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
            let (kind, tkind) = if ft.is_fifo() {
                (EntryKind::Fifo, EntryType::Fifo)
            } else if ft.is_char_device() {
                (EntryKind::Char, EntryType::Char)
            } else {
                (EntryKind::Block, EntryType::Block)
            };
            let mut e = self.entry_for(rel, kind, md, Some((on_path, abs)));
            if kind != EntryKind::Fifo {
                e.rdev = Some(major_minor(md.rdev()));
            }
            self.header(tar, &e, tkind)?;
            self.record(&e)?;
        } else {
            self.outcome.skipped += 1;
            self.outcome.warnings.push(format!(
                "{}: skipped, a socket cannot be archived",
                abs.display()
            ));
        }
        Ok(())
    }

    fn file<W: Write>(
        &mut self,
        tar: &mut TarWriter<W>,
        abs: &Path,
        rel: RawPath,
        opened: io::Result<File>,
    ) -> Result<(), SourceError> {
        let Some((file, before)) = self.open_found(abs, opened)? else {
            return Ok(());
        };
        if self.frozen {
            return self.file_direct(tar, abs, rel, &file, before, "it is in a snapshot");
        }
        let captured = self
            .reader
            .capture(&file, before, &mut self.outcome.bytes_read, self.progress)
            .map_err(|f| self.fault(abs, f))?;
        let read = match captured {
            Capture::Held(read) => read,
            Capture::Direct { md, why } => return self.file_direct(tar, abs, rel, &file, md, &why),
        };
        let mut e = self.entry_for(rel, EntryKind::File, &read.md, Some((On::File(&file), abs)));
        e.size = read.len;
        self.header(tar, &e, EntryType::Regular)?;
        self.reader
            .emit(&read, &mut |b| tar.data(b))
            .map_err(|f| self.fault(abs, f))?;
        tar.pad().map_err(|err| self.out_err(err))?;
        e.blake3 = Some(read.hash.to_hex().to_string());
        self.note_reads(abs, &read, &mut e);
        self.progress.add(0, 1);
        self.record(&e)
    }

    /// Says how a held read went: read again, or still changing at the last try.
    fn note_reads(&mut self, abs: &Path, read: &crate::tree::stable_read::Read, e: &mut FileEntry) {
        if !read.stable {
            e.changed = true;
            self.outcome.changed += 1;
            self.outcome.warnings.push(format!(
                "{}: changed while it was read, {} times: stored as last read ({} bytes) \
                 and marked as changed in the snapshot",
                abs.display(),
                read.tries,
                read.len
            ));
        } else if read.tries > 1 {
            self.outcome.warnings.push(format!(
                "{}: changed while it was read; read again, stored as read the {} time \
                 ({} bytes), unchanged during that read",
                abs.display(),
                ordinal(read.tries),
                read.len
            ));
        }
    }

    /// The regular file the walk found, open, with its stat; `None` when it is
    /// gone or skipped (`read_problem` has said so).
    fn open_found(
        &mut self,
        abs: &Path,
        opened: io::Result<File>,
    ) -> Result<Option<(File, Stat)>, SourceError> {
        let file = match opened {
            Ok(f) => f,
            // ELOOP: replaced by a symlink since the walk saw it.
            Err(err) if err.raw_os_error() == Some(nix::libc::ELOOP) => {
                self.read_problem(abs, io::Error::from(io::ErrorKind::NotFound))?;
                return Ok(None);
            }
            Err(err) => {
                self.read_problem(abs, err)?;
                return Ok(None);
            }
        };
        let before = Stat::of(&file).map_err(|err| self.fault(abs, Fault::Source(err)))?;
        if !before.is_file() {
            self.read_problem(abs, io::Error::from(io::ErrorKind::NotFound))?;
            return Ok(None);
        }
        Ok(Some((file, before)))
    }

    /// A file too large to hold before its header (see `stable_read`): read
    /// straight into the stream, once. If it shrank, the rest of its entry is zeros
    /// recorded as `padding`, outside its size and hash.
    fn file_direct<W: Write>(
        &mut self,
        tar: &mut TarWriter<W>,
        abs: &Path,
        rel: RawPath,
        file: &File,
        before: Stat,
        why: &str,
    ) -> Result<(), SourceError> {
        let mut e = self.entry_for(rel, EntryKind::File, &before, Some((On::File(file), abs)));
        e.size = before.len();
        self.header(tar, &e, EntryType::Regular)?;
        let (len, hash) = self
            .reader
            .read_direct(
                file,
                e.size,
                &mut self.outcome.bytes_read,
                self.progress,
                &mut |b| tar.data(b),
            )
            .map_err(|f| self.fault(abs, f))?;
        let padding = e.size - len;
        tar.zeros(padding).map_err(|err| self.out_err(err))?;
        tar.pad().map_err(|err| self.out_err(err))?;
        let after = Stat::of(file).map_err(|err| self.fault(abs, Fault::Source(err)))?;
        e.size = len;
        e.padding = padding;
        e.blake3 = Some(hash.to_hex().to_string());
        self.note_direct(abs, &before, &after, why, &mut e);
        self.progress.add(0, 1);
        self.record(&e)
    }

    /// Says whether a file read straight into the stream changed meanwhile.
    /// Returns true when it did.
    fn note_direct(
        &mut self,
        abs: &Path,
        before: &Stat,
        after: &Stat,
        why: &str,
        e: &mut FileEntry,
    ) -> bool {
        let (len, padding) = (e.size, e.padding);
        if padding > 0 || differs(before, after) {
            e.changed = true;
            self.outcome.changed += 1;
            let shrank = if padding > 0 {
                format!(
                    "; it shrank from {} to {len} bytes: a restore writes the {len} bytes read",
                    before.len()
                )
            } else {
                String::new()
            };
            self.outcome.warnings.push(format!(
                "{}: changed while it was read, and not read again because {why}: stored as \
                 read and marked as changed in the snapshot{shrank}",
                abs.display()
            ));
            return true;
        }
        false
    }

    /// Entries a completer merged into the walk; those from the live tree are
    /// read as live files are (they may change while read).
    fn taken<W: Write>(
        &mut self,
        tar: &mut TarWriter<W>,
        taken: Vec<complete::Taken>,
    ) -> Result<(), SourceError> {
        for t in taken {
            let frozen = self.frozen;
            self.frozen = frozen && !t.live;
            let done = self.one(tar, t.entry);
            self.frozen = frozen;
            done?;
        }
        Ok(())
    }

    /// Records what was completed and from when: a file from the earlier snapshot
    /// moves the source's instant back to that snapshot's, and its window then
    /// reaches the later one; one from the live tree extends the window to now.
    fn completed(&mut self, completed: Vec<Completed>, frozen_at: Option<OffsetDateTime>) {
        let from = |f: CompletedFrom| completed.iter().filter(|c| c.from == f).count();
        let (earlier, live) = (
            from(CompletedFrom::EarlierSnapshot),
            from(CompletedFrom::LiveTree),
        );
        if earlier > 0 {
            if let Some((_, at)) = self.src.fs.earlier_root() {
                self.outcome.instant = Some(at);
            }
            self.outcome.window_end = frozen_at;
        }
        if live > 0 {
            self.outcome.window_end = Some(OffsetDateTime::now_utc());
        }
        self.outcome.completed = completed;
    }

    /// The error for a failed read of `abs`, of the scratch file, or of the stream.
    fn fault(&self, abs: &Path, f: Fault) -> SourceError {
        match f {
            Fault::Source(err) => SourceError::Io {
                name: self.name(),
                path: abs.to_path_buf(),
                err,
            },
            Fault::Stage(err) => SourceError::Io {
                name: self.name(),
                path: self.reader.tmp_dir().to_path_buf(),
                err,
            },
            Fault::Output(err) => self.out_err(err),
        }
    }
}

fn ordinal(n: u32) -> String {
    match n {
        1 => "first".into(),
        2 => "second".into(),
        3 => "third".into(),
        n => format!("{n}th"),
    }
}

/// The extension of this type's stream (`<source>.tar.zst.age`), for
/// `Source::extension` and `registry::fixed_extension`.
pub(crate) const EXTENSION: &str = "tar";

/// A directory source as configured (see `sources::kind`).
pub(crate) struct Configured<'a>(pub &'a Config);

impl Kind for Configured<'_> {
    fn open(&self, name: &str, ctx: &SourceContext) -> Result<Box<dyn Source>, SourceError> {
        Ok(Box::new(DirectorySource::new(name, self.0, ctx)?))
    }
    fn dry_run(&self) -> DryRun {
        // The tree itself is walked by the dry run (stat only, with the job's
        // index), as a backup would walk it.
        DryRun {
            reads: "the files under",
            bytes_now: None,
            note: self.0.snapshot.as_ref().map(|s| {
                format!(
                    "the dry run walks the live tree; a backup walks a filesystem snapshot ({s})"
                )
            }),
        }
    }
    fn needed_paths(&self) -> Vec<(&'static str, &Path)> {
        vec![("path", self.0.path.as_path())]
    }
}

impl Source for DirectorySource {
    fn origin(&self) -> String {
        self.cfg.path.display().to_string()
    }
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> coffer_config::SourceType {
        coffer_config::SourceType::Directory
    }

    fn extension(&self) -> &str {
        EXTENSION
    }

    fn frozen_at_instant(&self) -> bool {
        self.fs.taken()
    }

    fn prepare(&mut self, for_check: bool) -> Result<(), SourceError> {
        match std::fs::metadata(&self.cfg.path) {
            Ok(md) if md.is_dir() && for_check => self.fs.take_earlier(),
            // `freeze` says what is wrong with it.
            _ => Ok(()),
        }
    }

    fn complete_from_check(&mut self, referenced: &[crate::sources::dbquery::Referenced]) {
        // A live walk has nothing to complete: it reads the live tree already.
        if self.fs.taken() {
            self.referenced = Some(referenced.to_vec());
        }
    }

    fn freeze(&mut self) -> Result<Option<OffsetDateTime>, SourceError> {
        match std::fs::metadata(&self.cfg.path) {
            Ok(md) if md.is_dir() => {
                let instant = self.fs.take()?;
                self.frozen_at = instant;
                if let Some(own) = self.fs.own_dir_pattern() {
                    let mut patterns = self.cfg.exclude.clone();
                    patterns.push(own);
                    self.excludes = Excludes::new(&patterns)
                        .map_err(|e| SourceError::Invalid {
                            name: self.name.clone(),
                            message: format!("bad exclude pattern: {e}"),
                        })?
                        .with_tags(&self.cfg.exclude_if_present, self.cfg.exclude_caches);
                }
                Ok(instant)
            }
            Ok(_) => Err(SourceError::Invalid {
                name: self.name.clone(),
                message: format!("{} is not a directory", self.cfg.path.display()),
            }),
            Err(err) => Err(SourceError::Io {
                name: self.name.clone(),
                path: self.cfg.path.clone(),
                err,
            }),
        }
    }

    fn stream(
        &mut self,
        out: &mut dyn Write,
        progress: &Progress,
    ) -> Result<SourceOutcome, SourceError> {
        let read = self.walk_tree(&self.fs.read_root(), out, progress, None);
        self.fs.finish(read)
    }

    fn packs(&self) -> bool {
        true
    }

    fn stream_packed(
        &mut self,
        sink: &mut dyn ContentSink,
        progress: &Progress,
    ) -> Result<SourceOutcome, SourceError> {
        let read = self.walk_tree(&self.fs.read_root(), &mut io::sink(), progress, Some(sink));
        self.fs.finish(read)
    }
}

impl DirectorySource {
    /// The walk of `root`: the live tree, or its counterpart in a snapshot.
    /// With a `sink` (format 2), file contents go there and `out` gets a tar
    /// stream without them, which the caller discards.
    fn walk_tree(
        &self,
        root: &Path,
        out: &mut dyn Write,
        progress: &Progress,
        sink: Option<&mut dyn ContentSink>,
    ) -> Result<SourceOutcome, SourceError> {
        // Headers and small files are many tiny writes; a buffer turns them into few
        // large ones for zstd, while 1 MiB reads pass straight through.
        let mut tar = TarWriter::new(BufWriter::with_capacity(256 << 10, out));
        let entries = EntryLog::create_in(&self.tmp_dir).map_err(|err| SourceError::Io {
            name: self.name.clone(),
            path: self.tmp_dir.clone(),
            err,
        })?;
        // Format 2 opens files ahead only when it will read them all (a first or
        // full run); a re-run stats most files and never opens them.
        let open_ahead = sink.as_ref().is_none_or(|s| s.reads_all());
        let mut walk = Walk {
            src: self,
            names: NameCache::default(),
            attrs: EntryAttrs::default(),
            first_names: HashMap::new(),
            // Format 2 reads files up to this buffer once (larger ones twice, to hash
            // and then to store): photos and documents fit, and it is one buffer.
            reader: StableReader::new(
                if sink.is_some() {
                    PACKED_READ_BUF
                } else {
                    READ_BUF
                },
                self.tmp_dir.clone(),
            ),
            frozen: self.fs.taken(),
            stable_dev: if self.fs.taken() {
                std::fs::metadata(&self.cfg.path)
                    .ok()
                    .map(|m| std::os::unix::fs::MetadataExt::dev(&m))
            } else {
                None
            },
            outcome: SourceOutcome {
                entries,
                ..SourceOutcome::default()
            },
            progress,
            sink,
        };
        let elsewhere: Vec<_> = self
            .fs
            .earlier_root()
            .map(|(root, _)| (root, CompletedFrom::EarlierSnapshot))
            .into_iter()
            .chain([(self.fs.live_root().to_path_buf(), CompletedFrom::LiveTree)])
            .collect();
        let mut completer = self
            .referenced
            .as_ref()
            .map(|r| complete::Completer::new(r, root.to_path_buf(), elsewhere, &self.excludes));
        std::thread::scope(|scope| {
            let walked = walk_ahead::spawn(
                scope,
                WalkOptions {
                    root,
                    one_file_system: self.cfg.one_file_system,
                    excludes: &self.excludes,
                    open_files: open_ahead,
                },
            );
            // Returning early drops the receiver, which stops the walk thread.
            for item in walked {
                let entry = match item {
                    Ok(entry) => entry,
                    Err(WalkError { path, err }) => {
                        walk.read_problem(&path, err)?;
                        continue;
                    }
                };
                self.fs
                    .check_entry(&entry.abs, &entry.md, self.cfg.one_file_system)?;
                match completer.as_mut() {
                    Some(c) => walk.taken(&mut tar, c.take(entry))?,
                    None => walk.one(&mut tar, entry)?,
                }
            }
            if let Some(c) = completer.as_mut() {
                walk.taken(&mut tar, c.rest())?;
            }
            Ok::<(), SourceError>(())
        })?;
        if let Some(c) = completer {
            walk.completed(c.completed, self.frozen_at);
        }
        let out = tar.finish().map_err(|err| walk.out_err(err))?;
        drop(out);
        let not_kept = walk.attrs.summary();
        walk.outcome.warnings.extend(not_kept);
        walk.outcome
            .entries
            .finish()
            .map_err(|err| walk.spill_err(err))?;
        Ok(walk.outcome)
    }
}
