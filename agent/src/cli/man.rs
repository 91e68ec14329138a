//! `coffer man`: the man pages, generated from the clap definitions so that they
//! never drift from `--help`. The main page lists every subcommand as
//! `coffer-NAME(1)`; `--dir` writes those pages too (nested ones as
//! `coffer-config-check.1`), which is what a package installs. The main page
//! gets the sections clap cannot write (FILES, ENVIRONMENT, EXAMPLES, SEE ALSO,
//! from `man_sections`); `--config-file` prints coffer.toml(5) (`man_config`).

use crate::cli::{Cli, ManArgs};
use anyhow::{Context, Result};
use std::io::Write;

pub fn run(args: &ManArgs) -> Result<u8> {
    // `help` is clap's own subcommand: it gets no page, so the main page must not
    // refer to one (clap_mangen's generate_to leaves it out the same way).
    let cmd = <Cli as clap::CommandFactory>::command().disable_help_subcommand(true);
    if args.config_file {
        let page = super::man_config::render(env!("CARGO_PKG_VERSION"));
        std::io::stdout()
            .write_all(page.as_bytes())
            .context("cannot write the man page to stdout")?;
        return Ok(crate::exit::OK);
    }
    match &args.dir {
        None => std::io::stdout()
            .write_all(&main_page(&cmd)?)
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
            write_all(&cmd, dir, &mut written)
                .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
            for p in written {
                crate::say!("{}", p.display());
            }
        }
    }
    Ok(crate::exit::OK)
}

/// coffer(1): clap's page with FILES, ENVIRONMENT, EXAMPLES and SEE ALSO before
/// its VERSION section (at the end when there is none).
fn main_page(cmd: &clap::Command) -> std::io::Result<Vec<u8>> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    let page = String::from_utf8_lossy(&page).into_owned();
    let extra = super::man_sections::render();
    let page = match page.find("\n.SH VERSION\n") {
        Some(at) => format!("{}\n{extra}{}", &page[..at], &page[at + 1..]),
        None => format!("{page}{extra}"),
    };
    Ok(page.into_bytes())
}

/// coffer.1 (with `main_page`'s sections) and every page it refers to.
fn write_all(
    cmd: &clap::Command,
    dir: &std::path::Path,
    written: &mut Vec<std::path::PathBuf>,
) -> std::io::Result<()> {
    let file = dir.join(clap_mangen::Man::new(cmd.clone()).get_filename());
    std::fs::write(&file, main_page(cmd)?)?;
    written.push(file);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, written)?;
    }
    Ok(())
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
