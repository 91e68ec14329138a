//! Fuzz target: the tar extractor, `coffer::restore::extract::extract`, and the
//! stream guard in front of it, `coffer::restore::tar_guard::TarGuard`, on
//! arbitrary bytes.
//!
//! Why it exists (issue 10): a directory source is restored by unpacking an
//! archive read from the target, which anyone who can write there can replace
//! (the recipients are public). Whatever the archive holds, the extractor must
//! return `Ok` or `Err`, never panic, never allocate without bound, and never
//! create, change or link anything outside the destination directory.
//!
//! Input layout (so the fuzzer can reach every mode from one corpus):
//!
//! ```text
//! byte 0   bits 0-1: the manifest's entries: 0 none, 1 a fixed list (the seeds'),
//!                    2-3 what the `tar` crate reads from the archive itself (an
//!                    attacker who forged both: entries match, content is written);
//!          bit 2:    allow_devices (`restore --devices`)
//! byte 1   read size for the TarGuard-only pass (1..=256 bytes per read)
//! rest     the archive (plain tar: the zstd and age layers are not coffer's)
//! ```
//!
//! Before unpacking, the archive is read by the `tar` crate behind the guard, and
//! every header the crate reads must be one the guard also took for a header (see
//! `guard_reads_header_at`): otherwise the guard's bounds do not hold.
//!
//! Each input is unpacked into `<fresh tmp>/dest`, next to `<fresh tmp>/canary`,
//! which holds one file. Afterwards the temporary folder must hold exactly `dest`
//! and `canary`, and `canary` exactly its file, unchanged and with no new hard link.

#![no_main]

use coffer::restore::extract::{extract, safe_relative};
use coffer::restore::tar_guard::TarGuard;
use coffer_plugins::{EntryKind, FileEntry, RawPath};
use libfuzzer_sys::fuzz_target;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const SECRET: &[u8] = b"outside the destination: never to be touched\n";

fn entry(
    path: &[u8],
    kind: EntryKind,
    size: u64,
    blake3: Option<String>,
    link: Option<&[u8]>,
) -> FileEntry {
    FileEntry {
        path: RawPath::from_bytes(path),
        kind,
        size,
        mode: 0o640,
        uid: 0,
        gid: 0,
        user: None,
        group: None,
        mtime: 0,
        mtime_nsec: 0,
        blake3,
        link: link.map(RawPath::from_bytes),
        rdev: None,
        changed: false,
        padding: 0,
        // Attributes are set from the manifest by restore's `attrs`, after `extract`:
        // the archive's SCHILY records are never read, so none are needed here.
        xattrs: Default::default(),
        acl_names: Default::default(),
        flags: Vec::new(),
        content: None,
        sparse: None,
        chunks: None,
    }
}

fn file(path: &str, content: &[u8]) -> FileEntry {
    let hash = blake3::hash(content).to_hex().to_string();
    entry(
        path.as_bytes(),
        EntryKind::File,
        content.len() as u64,
        Some(hash),
        None,
    )
}

/// The manifest of the seed archive `seeds/tar_extract/fixed.bin`.
fn fixed() -> Vec<FileEntry> {
    vec![
        entry(b".", EntryKind::Dir, 0, None, None),
        file("a", b"alpha\n"),
        entry(b"d", EntryKind::Dir, 0, None, None),
        file("d/b", b"beta\n"),
        entry(b"l", EntryKind::Symlink, 0, None, Some(b"a")),
        entry(b"h", EntryKind::Hardlink, 0, None, Some(b"a")),
    ]
}

fn kind_of(t: tar::EntryType) -> Option<EntryKind> {
    use tar::EntryType as T;
    Some(match t {
        T::Directory => EntryKind::Dir,
        T::Regular | T::Continuous => EntryKind::File,
        T::Symlink => EntryKind::Symlink,
        T::Link => EntryKind::Hardlink,
        T::Fifo => EntryKind::Fifo,
        T::Char => EntryKind::Char,
        T::Block => EntryKind::Block,
        _ => return None,
    })
}

/// Whether the guard, having passed `archive[..pos]`, takes the block at `pos` for
/// a header: it is shown a block of a type it refuses there instead. The guard
/// only bounds what the `tar` crate holds in memory if both agree on where every
/// header is; a header the guard skips as file data (a GNU long name of 8 GiB) is
/// read by the crate unchecked.
fn guard_reads_header_at(archive: &[u8], pos: usize) -> bool {
    let mut probe = archive[..pos].to_vec();
    let mut block = [0u8; 512];
    block[0] = b'p';
    block[156] = b'Z';
    probe.extend_from_slice(&block);
    match TarGuard::new(&probe[..]).read_to_end(&mut Vec::new()) {
        Err(e) => e.to_string().contains("coffer never writes"),
        Ok(_) => false,
    }
}

/// What the `tar` crate reads from `archive` behind the guard, as in `extract`,
/// as far as it can be read: the entries a forged manifest would list for it, each
/// path normalised as the extractor does. Only paths a manifest can hold
/// (`is_safe_relative`, checked when a manifest is read) are listed. On the way,
/// each entry's header must be one the guard saw as a header.
fn tar_view(archive: &[u8]) -> Vec<FileEntry> {
    let mut out = Vec::new();
    let mut ar = tar::Archive::new(TarGuard::new(archive));
    let Ok(entries) = ar.entries() else {
        return out;
    };
    for e in entries {
        let Ok(mut e) = e else { break };
        let pos = usize::try_from(e.raw_header_position()).expect("a position in the input");
        assert!(
            guard_reads_header_at(archive, pos),
            "the tar crate read a header at byte {pos} that the guard passed as file data"
        );
        let Some(kind) = kind_of(e.header().entry_type()) else {
            continue;
        };
        let raw = e.path_bytes().into_owned();
        let path = match safe_relative(&raw) {
            Ok(Some(p)) => p.as_os_str().as_bytes().to_vec(),
            Ok(None) => b".".to_vec(),
            Err(_) => continue,
        };
        if !coffer_plugins::is_safe_relative(&path) {
            continue;
        }
        let size = e.size();
        let link = e.link_name_bytes().map(|l| l.into_owned());
        let hash = if kind == EntryKind::File {
            let mut content = Vec::new();
            if e.read_to_end(&mut content).is_err() {
                break;
            }
            Some(blake3::hash(&content).to_hex().to_string())
        } else {
            None
        };
        let link = link.filter(|_| matches!(kind, EntryKind::Symlink | EntryKind::Hardlink));
        out.push(entry(&path, kind, size, hash, link.as_deref()));
    }
    out
}

/// Reads `archive` to its end through the guard alone, `chunk` bytes at a time, so
/// headers straddle reads.
fn guard_pass(archive: &[u8], chunk: usize) {
    let mut g = TarGuard::new(archive);
    let mut buf = vec![0u8; chunk];
    loop {
        match g.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}

fuzz_target!(|data: &[u8]| {
    let [flags, chunk, archive @ ..] = data else {
        return;
    };
    guard_pass(archive, usize::from(*chunk) + 1);
    let view = tar_view(archive);

    let entries = match flags & 3 {
        0 => Vec::new(),
        1 => fixed(),
        _ => view,
    };
    let allow_devices = flags & 4 != 0;

    let root = tempfile::tempdir().expect("tempdir");
    // Where the folders' list is spilled: apart, so `root` holds only what is checked.
    let spill = tempfile::tempdir().expect("tempdir");
    let dest = root.path().join("dest");
    let canary = root.path().join("canary");
    std::fs::create_dir(&dest).expect("dest");
    std::fs::create_dir(&canary).expect("canary");
    std::fs::write(canary.join("secret"), SECRET).expect("canary file");

    let result = extract(
        archive,
        &dest,
        allow_devices,
        entries.into_iter().map(Ok::<_, io::Error>),
        &mut |f, want, path| {
            // Only called for a regular file that matched, inside the destination.
            assert!(
                path.starts_with(&dest),
                "on_file outside dest: {}",
                path.display()
            );
            assert!(
                f.metadata()?.is_file(),
                "on_file with a non-file: {}",
                path.display()
            );
            assert_eq!(want.kind, EntryKind::File);
            Ok(())
        },
        spill.path(),
    );
    if let Err(e) = &result {
        let _ = format!("{e:#}");
    }

    // Nothing was made, changed or linked outside `dest`.
    assert_eq!(names(root.path()), ["canary", "dest"], "{result:?}");
    assert_eq!(names(&canary), ["secret"], "{result:?}");
    let md = std::fs::symlink_metadata(canary.join("secret")).expect("canary file");
    assert!(
        md.is_file() && md.nlink() == 1,
        "canary file linked or replaced: {result:?}"
    );
    assert_eq!(
        std::fs::read(canary.join("secret")).expect("canary"),
        SECRET
    );
});
