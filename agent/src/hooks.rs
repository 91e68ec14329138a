//! Runs configured hook command lines: before/after/on_success/on_failure around a
//! backup, after_restore after a restore. A line is split like a shell would
//! (quotes, escapes) but run without a shell, so nothing in it is expanded behind
//! the operator's back; write `sh -c '...'` to ask for one. Output goes to coffer's
//! own stdout/stderr (the journal under systemd). A hook that fails or outlives its
//! timeout fails.

use anyhow::{Context, Result, bail};
use std::process::Command;
use std::time::{Duration, Instant};

pub fn run_hooks(what: &str, lines: &[String], env: &[(&str, &str)]) -> Result<()> {
    run_hooks_timed(what, lines, env, None)
}

pub fn run_hooks_timed(
    what: &str,
    lines: &[String],
    env: &[(&str, &str)],
    timeout: Option<Duration>,
) -> Result<()> {
    for line in lines {
        let argv = shell_words::split(line)
            .with_context(|| format!("{what} hook `{line}`: cannot parse"))?;
        let Some((program, args)) = argv.split_first() else {
            continue;
        };
        eprintln!("{what}: running `{line}`");
        let mut child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .spawn()
            .with_context(|| format!("{what} hook `{line}`: cannot start {program}"))?;
        let started = Instant::now();
        let status = loop {
            if let Some(s) = child
                .try_wait()
                .with_context(|| format!("{what} hook `{line}`"))?
            {
                break s;
            }
            if timeout.is_some_and(|t| started.elapsed() > t) {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "{what} hook `{line}` did not finish within {:?} and was killed",
                    timeout.unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if !status.success() {
            bail!("{what} hook `{line}` failed ({status})");
        }
    }
    Ok(())
}
