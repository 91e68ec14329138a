//! `coffer diff`: flags -> `crate::browse::diff`, each change shown as a line
//! (`+`, `-`, `M` with what changed, `T` for mtime only) or a JSON object, then
//! the totals.

use crate::browse::Snapshots;
use crate::browse::diff::{Aspect, Change, Request, Step, Summary, Totals, diff};
use crate::cli::entries::{EntryJson, Out, mode_string, owner, shown_path};
use crate::cli::{DiffArgs, Reader, job as find_job, open_reader, trust_of};
use crate::exit;
use crate::units::bytes;
use anyhow::Result;
use coffer_config::Config;
use coffer_plugins::{EntryKind, FileEntry, RawPath};
use serde::Serialize;
use tokio::runtime::Handle;

#[derive(Serialize)]
struct ChangeJson<'a> {
    record: &'static str,
    change: &'static str,
    source: &'a str,
    path: &'a RawPath,
    what: Vec<&'static str>,
    before: Option<EntryJson<'a>>,
    after: Option<EntryJson<'a>>,
}

#[derive(Serialize)]
struct SummaryJson<'a> {
    record: &'static str,
    from: &'a str,
    to: &'a str,
    #[serde(flatten)]
    totals: &'a Totals,
}

pub fn run(rt: &Handle, cfg: &Config, args: &DiffArgs) -> Result<u8> {
    let job = find_job(cfg, &args.from.job)?;
    let Reader { target, ids } = open_reader(
        cfg,
        job,
        "diff",
        args.from.target.as_deref(),
        args.from.identity.as_deref(),
    )?;
    let trust = trust_of(cfg, &args.from.trust);
    let tmp_dir = cfg.agent.state_dir.join("tmp");
    let snaps = Snapshots {
        rt,
        target: &target,
        job: &job.name,
        ids: &ids,
        trust: &trust,
        tmp_dir: &tmp_dir,
    };
    let req = Request {
        from: &args.a,
        to: &args.b,
        source: args.source.as_deref(),
    };
    let mut out = Out::new();
    let Summary { from, to, totals } = diff(&snaps, &req, |source, step| {
        show(&step, source, args.json, &mut out)
    })?;
    if args.json {
        out.json(&SummaryJson {
            record: "summary",
            from: &from,
            to: &to,
            totals: &totals,
        })?;
    } else {
        out.line(format_args!(
            "{} added, {} removed, {} changed, {} touched (mtime only); {} added, {} removed",
            totals.added,
            totals.removed,
            totals.changed,
            totals.touched,
            bytes(totals.bytes_added),
            bytes(totals.bytes_removed)
        ))?;
    }
    out.flush()?;
    Ok(exit::OK)
}

/// Prints one change.
fn show<W: std::io::Write>(
    step: &Step<'_>,
    source: &str,
    json: bool,
    out: &mut Out<W>,
) -> Result<()> {
    let Step {
        change,
        before,
        after,
    } = step;
    let (sign, what): (&str, &[Aspect]) = match change {
        Change::Added => ("+", &[]),
        Change::Removed => ("-", &[]),
        Change::Touched => ("T", &[]),
        Change::Changed(what) => ("M", what),
    };
    let Some(e) = after.or(*before) else {
        return Ok(());
    };
    if json {
        return out.json(&ChangeJson {
            record: "change",
            change: sign,
            source,
            path: &e.path,
            what: what.iter().map(|k| k.name()).collect(),
            before: before.map(|a| EntryJson::of(source, a)),
            after: after.map(|b| EntryJson::of(source, b)),
        });
    }
    match (before, after) {
        (Some(a), Some(b)) if !what.is_empty() => {
            let shown: Vec<String> = what.iter().map(|k| describe(*k, a, b)).collect();
            out.line(format_args!(
                "{sign}  {}  ({})",
                shown_path(source, &e.path),
                shown.join(", ")
            ))
        }
        _ => out.line(format_args!("{sign}  {}", shown_path(source, &e.path))),
    }
}

/// What changed in one aspect, for people: `mode -rw-r--r-- -> -rw-------`.
fn describe(aspect: Aspect, a: &FileEntry, b: &FileEntry) -> String {
    match aspect {
        Aspect::Type => format!("type {} -> {}", kind_name(a.kind), kind_name(b.kind)),
        Aspect::Content if a.size == b.size => "content".to_string(),
        Aspect::Content => format!("content {} -> {}", bytes(a.size), bytes(b.size)),
        Aspect::Link => {
            let shown =
                |l: &Option<RawPath>| l.as_ref().map_or_else(String::new, |l| l.to_string());
            format!("link {} -> {}", shown(&a.link), shown(&b.link))
        }
        Aspect::Device => "device numbers".to_string(),
        Aspect::Mode => format!(
            "mode {} -> {}",
            mode_string(a.kind, a.mode),
            mode_string(b.kind, b.mode)
        ),
        Aspect::Owner => format!("owner {} -> {}", owner(a), owner(b)),
        Aspect::Xattrs => "extended attributes".to_string(),
    }
}

fn kind_name(k: EntryKind) -> &'static str {
    match k {
        EntryKind::Dir => "dir",
        EntryKind::File => "file",
        EntryKind::Symlink => "symlink",
        EntryKind::Hardlink => "hardlink",
        EntryKind::Fifo => "fifo",
        EntryKind::Char => "char",
        EntryKind::Block => "block",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::browse::diff::Pair;
    use crate::cli::entries::tests::entry;

    /// Counts `pair` and shows the change it is, as `run` does.
    fn report<W: std::io::Write>(
        pair: &Pair,
        source: &str,
        json: bool,
        t: &mut Totals,
        out: &mut Out<W>,
    ) -> Result<()> {
        match t.count(pair) {
            Some(step) => show(&step, source, json, out),
            None => Ok(()),
        }
    }

    #[test]
    fn changes_are_described_for_people() {
        let a = FileEntry {
            size: 5,
            blake3: Some("aa".into()),
            ..entry("f", EntryKind::File)
        };
        let grown = FileEntry {
            size: 6,
            ..a.clone()
        };
        assert_eq!(describe(Aspect::Content, &a, &grown), "content 5 B -> 6 B");
        let chmodded = FileEntry {
            mode: 0o600,
            user: Some("kadi".into()),
            ..a.clone()
        };
        assert_eq!(
            describe(Aspect::Mode, &a, &chmodded),
            "mode -rw-r--r-- -> -rw-------"
        );
        assert_eq!(
            describe(Aspect::Owner, &a, &chmodded),
            "owner 0:0 -> kadi:0"
        );
        let dir = entry("f", EntryKind::Dir);
        assert_eq!(describe(Aspect::Type, &a, &dir), "type file -> dir");
        let link = |to: &str| FileEntry {
            link: Some(RawPath::from_bytes(to.as_bytes())),
            ..entry("l", EntryKind::Symlink)
        };
        assert_eq!(
            describe(Aspect::Link, &link("x"), &link("y\n")),
            "link x -> y\\n"
        );
    }

    #[test]
    fn changes_are_counted_and_shown_one_per_line() {
        let mut t = Totals::default();
        let mut out = Out::memory();
        let file = |p: &str, size: u64, hash: &str| FileEntry {
            size,
            blake3: Some(hash.into()),
            ..entry(p, EntryKind::File)
        };
        let mut chmod = file("m", 100, "m");
        chmod.mode = 0o600;
        let mut touch = file("t", 1, "t");
        touch.mtime = 5;
        for pair in [
            Pair::New(file("n", 10, "n")),
            Pair::Old(file("o\nerror: x", 3, "o")),
            Pair::Both(file("c", 4, "x"), file("c", 7, "y")),
            Pair::Both(file("m", 100, "m"), chmod),
            Pair::Both(file("t", 1, "t"), touch),
            Pair::Both(file("s", 1, "s"), file("s", 1, "s")),
        ] {
            report(&pair, "src", false, &mut t, &mut out).expect("report");
        }
        assert_eq!((t.added, t.removed, t.changed, t.touched), (1, 1, 2, 1));
        assert_eq!(
            out.text(),
            "+  src/n\n\
             -  src/o\\nerror: x\n\
             M  src/c  (content 4 B -> 7 B)\n\
             M  src/m  (mode -rw-r--r-- -> -rw-------)\n\
             T  src/t\n"
        );
    }

    #[test]
    fn json_changes_carry_both_sides() {
        let mut t = Totals::default();
        let mut out = Out::memory();
        let mut b = entry("d/f", EntryKind::File);
        b.mode = 0o600;
        report(
            &Pair::Both(entry("d/f", EntryKind::File), b),
            "src",
            true,
            &mut t,
            &mut out,
        )
        .expect("report");
        report(
            &Pair::New(entry("g", EntryKind::Dir)),
            "src",
            true,
            &mut t,
            &mut out,
        )
        .expect("report");
        let lines: Vec<serde_json::Value> = out
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).expect("one object per line"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["change"], "M");
        assert_eq!(lines[0]["what"], serde_json::json!(["mode"]));
        assert_eq!(lines[0]["before"]["mode"], "0644");
        assert_eq!(lines[0]["after"]["mode"], "0600");
        assert_eq!(lines[1]["change"], "+");
        assert_eq!(lines[1]["path"], "g");
        assert_eq!(lines[1]["before"], serde_json::Value::Null);
        assert_eq!(lines[1]["after"]["type"], "dir");
    }
}
