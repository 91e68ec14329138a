//! Runs a dump program and streams its standard output into the backup.
//!
//! Its exit status is checked after EOF: a dump that fails halfway has already
//! written a plausible prefix, and must fail the run (restic shipped truncated
//! dumps for years because it did not look). Standard error is kept (the last few
//! KiB) for the message. Secrets reach the child only through its environment or a
//! private file, never its arguments.
//!
//! A child's environment is coffer's minus every variable known to hold a secret
//! (`scrub_env`): a deny-list, not an allow-list. Hooks and command sources are
//! the operator's programs and legitimately rely on what the service's environment
//! sets (EnvironmentFile=, proxies, an application's config variables); an
//! allow-list would break them in ways hard to trace. The secrets coffer knows of
//! are enumerable instead: the `password_env` names of the configs it loaded and a
//! fixed list of credential variables (AWS_*, PGPASSWORD, MYSQL_PWD, REDISCLI_AUTH).
//! A dump program then gets back exactly the one it needs (pg_dump: PGPASSWORD).

use crate::sources::source::{Progress, SourceError};
use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;

const STDERR_KEEP: usize = 4096;

/// Removes from `cmd`'s environment every variable that holds a secret: the
/// credential variables and each config's `password_env` (see the module header).
/// Every program coffer starts goes through this.
pub fn scrub_env(cmd: &mut Command) -> &mut Command {
    for name in coffer_config::secret_env_names() {
        cmd.env_remove(name);
    }
    cmd
}

/// Refuses a connection URL that still carries a credential before it goes on a
/// command line (the config's URLs never do; `restore --db-url` is typed by hand).
pub fn refuse_credentials(name: &str, url: &str) -> Result<(), SourceError> {
    let found = coffer_config::url_credentials(url);
    if found.is_empty() {
        return Ok(());
    }
    Err(SourceError::Invalid {
        name: name.to_string(),
        message: format!(
            "the URL {} carries a credential ({}), which would be visible to every local user \
             in the process list; remove it and use the source's password_file or password_env",
            coffer_config::display_url(url),
            found.join(", ")
        ),
    })
}

/// A new command for `program` with a scrubbed environment.
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    scrub_env(&mut cmd);
    cmd
}

fn tail_of(mut r: impl Read) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = r.read(&mut chunk) {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 2 * STDERR_KEEP {
            buf.drain(..buf.len() - STDERR_KEEP);
        }
    }
    let start = buf.len().saturating_sub(STDERR_KEEP);
    String::from_utf8_lossy(&buf[start..]).trim().to_string()
}

fn spawn(
    name: &str,
    cmd: &mut Command,
    stdin: Stdio,
) -> Result<(Child, JoinHandle<String>), SourceError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| SourceError::Invalid {
            name: name.to_string(),
            message: format!("cannot start {program}: {e} (is it installed and on PATH?)"),
        })?;
    let stderr = child.stderr.take();
    let tail = std::thread::spawn(move || stderr.map(tail_of).unwrap_or_default());
    Ok((child, tail))
}

fn failed(
    name: &str,
    program: &str,
    status: std::process::ExitStatus,
    stderr: String,
) -> SourceError {
    SourceError::Dump {
        name: name.to_string(),
        program: program.to_string(),
        detail: if stderr.is_empty() {
            status.to_string()
        } else {
            format!("{status}: {stderr}")
        },
    }
}

/// Streams the child's stdout into `out`; returns the byte count once the child
/// has exited successfully.
pub fn stream_stdout(
    name: &str,
    cmd: &mut Command,
    out: &mut dyn Write,
    progress: &Progress,
) -> Result<u64, SourceError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    if crate::process::dump_stop::stopping() {
        return Err(SourceError::Invalid {
            name: name.to_string(),
            message: format!("{program} not started: coffer is stopping"),
        });
    }
    let (mut child, tail) = spawn(name, cmd.process_group(0), Stdio::null())?;
    let _registered = crate::process::dump_stop::register(child.id());
    let mut stdout = child.stdout.take().ok_or_else(|| SourceError::Invalid {
        name: name.to_string(),
        message: "no stdout".into(),
    })?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    let copied: Result<(), SourceError> = loop {
        let n = match stdout.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                break Err(SourceError::Output {
                    name: name.to_string(),
                    err: io::Error::new(err.kind(), format!("reading {program}'s output: {err}")),
                });
            }
        };
        if let Err(err) = out.write_all(&buf[..n]) {
            break Err(SourceError::Output {
                name: name.to_string(),
                err,
            });
        }
        total += n as u64;
        progress.add(n as u64, 0);
    };
    if copied.is_err() {
        // Downstream failed: do not leave the dump running.
        let _ = child.kill();
    }
    let status = child.wait().map_err(|err| SourceError::Output {
        name: name.to_string(),
        err,
    })?;
    let stderr = tail.join().unwrap_or_default();
    copied?;
    if !status.success() {
        return Err(failed(name, &program, status, stderr));
    }
    Ok(total)
}

/// Feeds `input` to the child's stdin (a restore) and checks its exit status;
/// returns what it printed on stderr, for the log.
pub fn feed_stdin(
    name: &str,
    cmd: &mut Command,
    input: &mut dyn Read,
) -> Result<String, SourceError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let (mut child, tail) = spawn(name, cmd, Stdio::piped())?;
    let stdout = child.stdout.take();
    let out_tail = std::thread::spawn(move || stdout.map(tail_of).unwrap_or_default());
    let mut stdin = child.stdin.take().ok_or_else(|| SourceError::Invalid {
        name: name.to_string(),
        message: "no stdin".into(),
    })?;
    // A failure to *read* the input (a damaged or tampered object) must never look
    // like its end to the child: the child is killed before its stdin closes, so it
    // cannot commit what it got so far.
    let mut buf = vec![0u8; 256 << 10];
    let fed = loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                let _ = child.kill();
                let _ = child.wait();
                drop(stdin);
                let _ = tail.join();
                let _ = out_tail.join();
                return Err(SourceError::Invalid {
                    name: name.to_string(),
                    message: format!(
                        "cannot read the backup: {err}; {program} was stopped before it saw its end"
                    ),
                });
            }
        };
        if let Err(e) = stdin.write_all(&buf[..n]) {
            break Err(e);
        }
    };
    drop(stdin);
    let status = child.wait().map_err(|err| SourceError::Output {
        name: name.to_string(),
        err,
    })?;
    let stderr = tail.join().unwrap_or_default();
    let stdout = out_tail.join().unwrap_or_default();
    if !status.success() {
        return Err(failed(name, &program, status, stderr));
    }
    // A child that exits 0 without reading everything (a broken pipe) did not restore it all.
    fed.map_err(|err| SourceError::Output {
        name: name.to_string(),
        err: io::Error::new(
            err.kind(),
            format!("{program} stopped reading its input: {err}"),
        ),
    })?;
    Ok([stdout, stderr].join("\n").trim().to_string())
}
