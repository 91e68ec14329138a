//! `coffer man`: the man pages, generated from the clap definitions so that they
//! never drift from `--help`. The main page lists every subcommand as
//! `coffer-NAME(1)`; `--dir` writes those pages too (nested ones as
//! `coffer-config-check.1`), which is what a package installs.

use crate::cli::{Cli, ManArgs};
use anyhow::{Context, Result};

pub fn run(args: &ManArgs) -> Result<u8> {
    // `help` is clap's own subcommand: it gets no page, so the main page must not
    // refer to one (clap_mangen's generate_to leaves it out the same way).
    let cmd = <Cli as clap::CommandFactory>::command().disable_help_subcommand(true);
    match &args.dir {
        None => clap_mangen::Man::new(cmd)
            .render(&mut std::io::stdout())
            .context("cannot write the man page to stdout")?,
        Some(dir) => {
            if !dir.is_dir() {
                return Err(crate::exit::usage(format!(
                    "man --dir {}: not a directory; create it first",
                    dir.display()
                )));
            }
            let mut cmd = cmd;
            // Building names the subcommands `coffer-backup`, `coffer-config-check`.
            cmd.build();
            let mut written = Vec::new();
            write_pages(&cmd, dir, &mut written)
                .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
            for p in written {
                crate::say!("{}", p.display());
            }
        }
    }
    Ok(crate::exit::OK)
}

/// The page of `cmd` and of every subcommand its page lists (hidden ones are not listed).
fn write_pages(
    cmd: &clap::Command,
    dir: &std::path::Path,
    written: &mut Vec<std::path::PathBuf>,
) -> std::io::Result<()> {
    written.push(clap_mangen::Man::new(cmd.clone()).generate_to(dir)?);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, written)?;
    }
    Ok(())
}
