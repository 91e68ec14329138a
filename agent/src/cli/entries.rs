//! What `ls`, `find` and `diff` share in their output: how one manifest entry is
//! shown (a line for people, an object for programs) and a buffered stdout. The
//! engines that read the entries are in `crate::browse`.
//!
//! Names come from the backed-up file system and the target: every one that
//! reaches a text line goes through `escape_controls`, so a file named
//! `a\nerror: x` cannot forge a line. JSON escapes them by itself.

use anyhow::{Context, Result};
use coffer_plugins::{EntryKind, FileEntry, RawPath, escape_controls};
use serde::Serialize;
use std::io::{BufWriter, Stdout, Write};

/// `-rw-r-----` as `ls -l` shows it: the type letter (a hard link is a regular
/// file), then owner, group and other, with setuid, setgid and sticky folded in.
pub(crate) fn mode_string(kind: EntryKind, mode: u32) -> String {
    let kind = match kind {
        EntryKind::Dir => 'd',
        EntryKind::File | EntryKind::Hardlink => '-',
        EntryKind::Symlink => 'l',
        EntryKind::Fifo => 'p',
        EntryKind::Char => 'c',
        EntryKind::Block => 'b',
    };
    let bit = |m: u32, c: char| if mode & m != 0 { c } else { '-' };
    // Execute and a special bit share one column: lower case when both are set.
    let exec = |x: u32, special: u32, c: char| match (mode & x != 0, mode & special != 0) {
        (true, true) => c,
        (false, true) => c.to_ascii_uppercase(),
        (true, false) => 'x',
        (false, false) => '-',
    };
    [
        kind,
        bit(0o400, 'r'),
        bit(0o200, 'w'),
        exec(0o100, 0o4000, 's'),
        bit(0o040, 'r'),
        bit(0o020, 'w'),
        exec(0o010, 0o2000, 's'),
        bit(0o004, 'r'),
        bit(0o002, 'w'),
        exec(0o001, 0o1000, 't'),
    ]
    .into_iter()
    .collect()
}

/// `user:group` by name as recorded at backup time, the number where the backed-up
/// host had no name for it.
pub(crate) fn owner(e: &FileEntry) -> String {
    let user = e
        .user
        .as_deref()
        .map_or_else(|| e.uid.to_string(), |n| escape_controls(n).into_owned());
    let group = e
        .group
        .as_deref()
        .map_or_else(|| e.gid.to_string(), |n| escape_controls(n).into_owned());
    format!("{user}:{group}")
}

/// UTC, RFC 3339 to the second (`2024-05-01T10:00:00Z`); a time no calendar date
/// can hold (a hostile or broken mtime) as `@<seconds>`.
pub(crate) fn mtime(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{secs}"))
}

/// `<source>/<path>` for a line, control characters escaped; the source's root
/// is `<source>/`.
pub(crate) fn shown_path(source: &str, path: &RawPath) -> String {
    if path.is_root() {
        format!("{source}/")
    } else {
        format!("{source}/{path}")
    }
}

/// What follows the path on a line: a symlink's target, a hard link's first name.
pub(crate) fn link_suffix(e: &FileEntry) -> String {
    match (&e.link, e.kind) {
        (Some(to), EntryKind::Symlink) => format!(" -> {to}"),
        (Some(to), EntryKind::Hardlink) => format!(" link to {to}"),
        _ => String::new(),
    }
}

/// One entry as a JSON object: the fields a reader of a listing wants, not the
/// manifest's internals (content references, padding).
#[derive(Serialize)]
pub(crate) struct EntryJson<'a> {
    pub source: &'a str,
    /// A string, or an array of bytes when the name is not UTF-8 (as in the manifest).
    pub path: &'a RawPath,
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// Octal, with the special bits: `"0640"`, `"4755"`.
    pub mode: String,
    pub uid: u32,
    pub gid: u32,
    pub user: Option<&'a str>,
    pub group: Option<&'a str>,
    pub size: u64,
    pub mtime: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blake3: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<&'a RawPath>,
}

impl<'a> EntryJson<'a> {
    pub(crate) fn of(source: &'a str, e: &'a FileEntry) -> EntryJson<'a> {
        EntryJson {
            source,
            path: &e.path,
            kind: e.kind,
            mode: format!("{:04o}", e.mode),
            uid: e.uid,
            gid: e.gid,
            user: e.user.as_deref(),
            group: e.group.as_deref(),
            size: e.size,
            mtime: mtime(e.mtime),
            blake3: e.blake3.as_deref(),
            link: e.link.as_ref(),
        }
    }
}

/// Stdout through a buffer: a listing can have millions of lines. A reader that
/// goes away (`coffer ls | head`) ends the process quietly (SIGPIPE is left at
/// its default for these commands, see main.rs). Tests write into a `Vec`.
pub(crate) struct Out<W: Write = Stdout>(BufWriter<W>);

impl Out {
    pub(crate) fn new() -> Out {
        Out(BufWriter::with_capacity(64 << 10, std::io::stdout()))
    }
}

impl<W: Write> Out<W> {
    pub(crate) fn line(&mut self, line: std::fmt::Arguments<'_>) -> Result<()> {
        writeln!(self.0, "{line}").context("cannot write to stdout")
    }

    /// One JSON object on one line.
    pub(crate) fn json(&mut self, v: &impl Serialize) -> Result<()> {
        serde_json::to_writer(&mut self.0, v).context("cannot write to stdout")?;
        self.0.write_all(b"\n").context("cannot write to stdout")
    }

    /// Before anything goes to stderr, so the two stay in order on a terminal.
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.0.flush().context("cannot write to stdout")
    }
}

#[cfg(test)]
impl Out<Vec<u8>> {
    pub(crate) fn memory() -> Out<Vec<u8>> {
        Out(BufWriter::new(Vec::new()))
    }

    pub(crate) fn text(self) -> String {
        String::from_utf8(self.0.into_inner().unwrap_or_default()).unwrap_or_default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn entry(path: &str, kind: EntryKind) -> FileEntry {
        FileEntry::bare(path, kind)
    }

    #[test]
    fn modes_read_as_ls_shows_them() {
        use EntryKind::*;
        assert_eq!(mode_string(File, 0o640), "-rw-r-----");
        assert_eq!(mode_string(Dir, 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(Symlink, 0o777), "lrwxrwxrwx");
        assert_eq!(mode_string(Hardlink, 0o600), "-rw-------");
        assert_eq!(mode_string(File, 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(File, 0o2644), "-rw-r-Sr--");
        assert_eq!(mode_string(Dir, 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(Dir, 0o1770), "drwxrwx--T");
        assert_eq!(mode_string(Fifo, 0), "p---------");
        assert_eq!(mode_string(Char, 0o620), "crw--w----");
        assert_eq!(mode_string(Block, 0o660), "brw-rw----");
    }

    #[test]
    fn owners_by_name_with_numbers_where_there_was_none() {
        let mut e = entry("a", EntryKind::File);
        e.uid = 1001;
        e.gid = 33;
        assert_eq!(owner(&e), "1001:33");
        e.user = Some("kadi".into());
        e.group = Some("www-data".into());
        assert_eq!(owner(&e), "kadi:www-data");
        e.user = Some("evil\nerror: x".into());
        assert_eq!(owner(&e), "evil\\nerror: x:www-data");
    }

    #[test]
    fn times_are_utc_to_the_second() {
        assert_eq!(mtime(0), "1970-01-01T00:00:00Z");
        assert_eq!(mtime(1_714_557_600), "2024-05-01T10:00:00Z");
        assert_eq!(mtime(-1), "1969-12-31T23:59:59Z");
        // Beyond what a date can hold: shown, not a panic.
        assert_eq!(mtime(i64::MAX), format!("@{}", i64::MAX));
    }

    #[test]
    fn paths_cannot_forge_lines() {
        let p = RawPath::from_bytes(b"a\nerror: x");
        assert_eq!(shown_path("files", &p), "files/a\\nerror: x");
        assert_eq!(shown_path("files", &RawPath::from_bytes(b".")), "files/");
        let mut link = entry("l", EntryKind::Symlink);
        link.link = Some(RawPath::from_bytes(b"t\r\x1b[2J"));
        assert_eq!(link_suffix(&link), " -> t\\r\\u{1b}[2J");
        // Not UTF-8: shown lossily, kept as bytes in JSON.
        let raw = RawPath::from_bytes(b"caf\xe9");
        assert_eq!(shown_path("files", &raw), "files/caf\u{fffd}");
        let e = FileEntry {
            path: raw,
            ..entry("x", EntryKind::File)
        };
        let v = serde_json::to_value(EntryJson::of("files", &e)).expect("json");
        assert_eq!(v["path"], serde_json::json!([99, 97, 102, 233]));
        assert_eq!(v["mode"], "0644");
        assert_eq!(v["mtime"], "1970-01-01T00:00:00Z");
    }
}
