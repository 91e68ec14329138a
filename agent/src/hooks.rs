//! Runs configured hook command lines: before/after/on_success/on_failure around a
//! backup, after_restore after a restore. A line is split like a shell would
//! (quotes, escapes) but run without a shell, so nothing in it is expanded behind
//! the operator's back; write `sh -c '...'` to ask for one. A hook that fails or
//! outlives its timeout fails.
//!
//! - Environment: coffer's, minus every secret it knows of (`password_env`
//!   variables, AWS and client password variables; see `coffer_plugins::child`),
//!   plus `COFFER_JOB` and friends. A hook is the operator's program, so the rest
//!   of the service's environment stays.
//! - Output: with text logs the hook writes to coffer's stderr (stdout is kept for
//!   coffer's own results, e.g. `backup --json`; the journal gets both under
//!   systemd). With `--log-format json` every line the hook prints is captured and
//!   logged as a JSON event with the hook and the line, so that a log shipper sees
//!   only JSON: stdout lines at info, stderr lines at warn (where programs say
//!   what went wrong, and what the CLI shows at its default level).
//! - Process group: a hook runs in its own group, and a timeout kills the whole
//!   group: `sh -c 'slow & slower'` leaves nothing behind. A side effect is that
//!   Ctrl-C at a terminal reaches coffer but not the hook, so when a stop is asked
//!   for while a hook runs, coffer passes it on (SIGTERM to the group, SIGKILL 5 s
//!   later). Hooks that start after the stop (`after` on a cancelled run) run.
//!   A hook that exits normally keeps whatever it started in the background.

use crate::report::Report;
use anyhow::{Context, Result, bail};
use coffer_config::HookCommand;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

static JSON_LOGS: AtomicBool = AtomicBool::new(false);

/// Called once at start when logs are JSON: hook output is then captured and logged.
pub fn log_as_json(on: bool) {
    JSON_LOGS.store(on, Ordering::Relaxed);
}

/// How long a hook has to exit after SIGTERM when coffer is asked to stop.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long to wait for the last output of a hook that has exited (a background
/// process it left may hold its output open for ever).
const OUTPUT_GRACE: Duration = Duration::from_secs(2);
/// Longest output line logged as one event; longer ones are cut into pieces.
const MAX_LINE: u64 = 64 * 1024;

/// Runs `lines` in order; `report` hears which one starts (with text logs).
pub fn run_hooks(
    what: &str,
    lines: &[HookCommand],
    env: &[(&str, &str)],
    report: &dyn Report,
) -> Result<()> {
    run_hooks_timed(what, lines, env, None, report)
}

pub fn run_hooks_timed(
    what: &str,
    lines: &[HookCommand],
    env: &[(&str, &str)],
    timeout: Option<Duration>,
    report: &dyn Report,
) -> Result<()> {
    for hook in lines {
        // Split when the config was loaded; a comment-only line has no words.
        let line = hook.as_str();
        let Some((program, args)) = hook.words().split_first() else {
            continue;
        };
        let json = JSON_LOGS.load(Ordering::Relaxed);
        if json {
            tracing::info!(hook = what, command = line, "running hook");
        } else {
            report.notice(&format!("{what}: running `{line}`"));
        }
        let mut cmd = Command::new(program);
        cmd.args(args);
        coffer_plugins::child::scrub_env(&mut cmd);
        cmd.envs(env.iter().copied())
            .stdin(Stdio::null())
            .process_group(0);
        if json {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        } else {
            cmd.stdout(Stdio::from(std::io::stderr()));
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("{what} hook `{line}`: cannot start {program}"))?;
        let output = json.then(|| Forward::start(&mut child, what, line));
        let end = wait(&mut child, timeout).with_context(|| format!("{what} hook `{line}`"));
        if let Some(o) = output {
            o.finish();
        }
        match end? {
            End::Exited(status) if status.success() => {}
            End::Exited(status) => bail!("{what} hook `{line}` failed ({status})"),
            End::TimedOut(t) => bail!(
                "{what} hook `{line}` did not finish within {t:?} and was killed with every process it started"
            ),
            End::Stopped => bail!("{what} hook `{line}` was stopped: coffer is stopping"),
        }
    }
    Ok(())
}

enum End {
    Exited(ExitStatus),
    TimedOut(Duration),
    Stopped,
}

/// Waits for the hook; on its timeout kills its process group, on a stop asked for
/// while it runs passes the stop on to its group.
fn wait(child: &mut Child, timeout: Option<Duration>) -> Result<End> {
    // The hook leads its own group, so its pid is the group's id. The child is not
    // reaped before the group is signalled, so the id cannot have been reused.
    let group = Pid::from_raw(i32::try_from(child.id()).context("pid out of range")?);
    let stop_was_requested = crate::cancel::requested();
    let started = Instant::now();
    let mut stopping: Option<Instant> = None;
    loop {
        if let Some(status) = child.try_wait().context("cannot wait for it")? {
            return Ok(match stopping {
                Some(_) => End::Stopped,
                None => End::Exited(status),
            });
        }
        if let Some(t) = timeout
            && started.elapsed() > t
        {
            let _ = killpg(group, Signal::SIGKILL);
            child
                .wait()
                .context("cannot wait for it after killing it")?;
            return Ok(End::TimedOut(t));
        }
        if !stop_was_requested && crate::cancel::requested() {
            match stopping {
                None => {
                    let _ = killpg(group, Signal::SIGTERM);
                    stopping = Some(Instant::now());
                }
                Some(since) if since.elapsed() > STOP_GRACE => {
                    let _ = killpg(group, Signal::SIGKILL);
                }
                Some(_) => {}
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Logs a hook's captured stdout and stderr line by line (JSON log mode).
struct Forward {
    done: mpsc::Receiver<()>,
    readers: usize,
}

impl Forward {
    fn start(child: &mut Child, hook: &str, command: &str) -> Forward {
        let (tx, done) = mpsc::channel();
        let mut readers = 0;
        if let Some(out) = child.stdout.take() {
            spawn_reader(out, hook, command, false, tx.clone());
            readers += 1;
        }
        if let Some(err) = child.stderr.take() {
            spawn_reader(err, hook, command, true, tx);
            readers += 1;
        }
        Forward { done, readers }
    }

    /// Waits a little for the last lines; a reader still blocked after that (a
    /// background process holds the pipe) is left to log whatever comes later.
    fn finish(self) {
        let deadline = Instant::now() + OUTPUT_GRACE;
        for _ in 0..self.readers {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.done.recv_timeout(left).is_err() {
                break;
            }
        }
    }
}

fn spawn_reader(
    pipe: impl Read + Send + 'static,
    hook: &str,
    command: &str,
    stderr: bool,
    done: mpsc::Sender<()>,
) {
    let (hook, command) = (hook.to_string(), command.to_string());
    std::thread::spawn(move || {
        let mut pipe = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match (&mut pipe).take(MAX_LINE).read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&buf);
            let text = text.trim_end_matches(['\n', '\r']);
            if stderr {
                tracing::warn!(
                    hook = hook.as_str(),
                    command = command.as_str(),
                    stream = "stderr",
                    line = text,
                    "hook output"
                );
            } else {
                tracing::info!(
                    hook = hook.as_str(),
                    command = command.as_str(),
                    stream = "stdout",
                    line = text,
                    "hook output"
                );
            }
        }
        let _ = done.send(());
    });
}
