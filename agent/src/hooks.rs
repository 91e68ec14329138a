//! Runs configured hook command lines (after_restore today; before/after a backup
//! with the agent). A line is split like a shell would (quotes, escapes) but run
//! without a shell, so nothing in it is expanded behind the operator's back; write
//! `sh -c '...'` to ask for one. Output is passed through; a failing hook fails.

use anyhow::{Context, Result, bail};
use std::process::Command;

pub fn run_hooks(what: &str, lines: &[String], env: &[(&str, &str)]) -> Result<()> {
    for line in lines {
        let argv = shell_words::split(line)
            .with_context(|| format!("{what} hook `{line}`: cannot parse"))?;
        let Some((program, args)) = argv.split_first() else {
            continue;
        };
        eprintln!("{what}: running `{line}`");
        let status = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .status()
            .with_context(|| format!("{what} hook `{line}`: cannot start {program}"))?;
        if !status.success() {
            bail!("{what} hook `{line}` failed ({status})");
        }
    }
    Ok(())
}
