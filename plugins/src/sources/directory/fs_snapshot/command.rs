//! The generic form, `snapshot_command` + `release_command`, for LVM, ZFS and
//! anything else: coffer runs the first at the barrier, reads the directory it
//! prints on stdout in place of `path`, and runs the second afterwards. Both run
//! without a shell, with coffer's environment minus its secrets plus
//! COFFER_JOB, COFFER_SOURCE and COFFER_PATH (the configured `path`); the release
//! also gets COFFER_SNAPSHOT_PATH, the line the snapshot command printed.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

/// What the commands are told about the source.
pub(crate) struct Env<'a> {
    pub job: &'a str,
    pub source: &'a str,
    pub path: &'a Path,
}

fn run(argv: &[String], env: &Env<'_>, snapshot: Option<&Path>) -> Result<Output, String> {
    let (program, args) = argv.split_first().ok_or("the command is empty")?;
    let mut cmd = crate::process::child::command(program);
    cmd.args(args)
        .env("COFFER_JOB", env.job)
        .env("COFFER_SOURCE", env.source)
        .env("COFFER_PATH", env.path)
        .stdin(Stdio::null());
    if let Some(s) = snapshot {
        cmd.env("COFFER_SNAPSHOT_PATH", s);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot start {program}: {e} (is it installed and on PATH?)"))?;
    if out.status.success() {
        return Ok(out);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: String = stderr
        .trim()
        .chars()
        .rev()
        .take(2000)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Err(format!(
        "`{}` failed ({}): {tail}",
        argv.join(" "),
        out.status
    ))
}

/// Runs the snapshot command; returns what it printed (trimmed), which the caller
/// checks, so that a snapshot made but printed wrongly is still released.
pub(crate) fn create(argv: &[String], env: &Env<'_>) -> Result<PathBuf, String> {
    let out = run(argv, env, None)?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(PathBuf::from(text.trim_end_matches(['\n', '\r'])))
}

/// Why a printed path cannot be read in place of `path`, if it cannot.
pub(crate) fn unusable(printed: &Path) -> Option<String> {
    let text = printed.to_string_lossy();
    if text.contains('\n') || !printed.is_absolute() {
        return Some(format!(
            "it printed {text:?}; it must print one line, the absolute path of the directory to read"
        ));
    }
    match std::fs::metadata(printed) {
        Ok(md) if md.is_dir() => None,
        Ok(_) => Some(format!("it printed {text:?}, which is not a directory")),
        Err(e) => Some(format!("it printed {text:?}, which cannot be read: {e}")),
    }
}

pub(crate) fn release(argv: &[String], env: &Env<'_>, snapshot: &Path) -> Result<(), String> {
    run(argv, env, Some(snapshot)).map(drop)
}
