//! `coffer`: parses the command line, runs one subcommand, maps its outcome to the
//! documented exit codes. Errors are printed once, with their context chain.
//! It also decides what a closed stdout means (`coffer list | head`): see
//! `quiet_on_closed_stdout`.

use clap::Parser;
use coffer::cli::{Cli, Command};
use coffer::exit;
use std::process::ExitCode;

fn main() -> ExitCode {
    coffer::malloc::hold_mmap_threshold();
    let cli = Cli::parse();
    quiet_on_closed_stdout(&cli.command);
    // The agent reports what it does; the CLI speaks only when something is wrong.
    let default = if matches!(cli.command, coffer::cli::Command::Agent) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("COFFER_LOG")
        .unwrap_or_else(|_| default.into());
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    // Colour only for a person at a terminal: the journal and files show escape
    // codes as blobs.
    let colour = !journal
        && std::env::var_os("NO_COLOR").is_none()
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    if cli.log_format == coffer::cli::LogFormat::Json {
        log.json().init();
        coffer::cli::log_as_json(true);
    } else if journal {
        // Under systemd the journal stamps every line already.
        log.without_time().init();
    } else {
        log.init();
    }
    coffer::cli::set_progress_mode(cli.progress);
    raise_open_file_limit();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    match coffer::cli::run(cli, rt.handle()) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::code_for(&e))
        }
    }
}

/// Rust ignores SIGPIPE, so `println!` into a pipe whose reader has gone (`coffer
/// list | head`) panics (exit 101) after the work is done. For the commands whose
/// only pipe is their stdout, the Unix default is right: the process ends quietly
/// when the reader goes, as `ls | head` does (the shell sees 141, 128 + SIGPIPE).
/// Not for `agent` (a service; its sockets and hooks must never kill it), `restore`
/// (it feeds pg_restore, mysql and restore commands through pipes: one that dies
/// must be reported, not kill coffer half-way) and `backup` (a closed report must
/// not stop the remaining jobs; it prints through a writer that stops quietly).
fn quiet_on_closed_stdout(command: &Command) {
    use nix::sys::signal::{SigHandler, Signal, signal};
    if matches!(
        command,
        Command::Agent | Command::Backup(_) | Command::Restore(_)
    ) {
        return;
    }
    // SAFETY: called first thing in main, before any other thread exists, and
    // SIG_DFL installs no handler code that could run at an unsafe moment.
    #[allow(unsafe_code)]
    let reset = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    if let Err(e) = reset {
        eprintln!("warning: cannot restore the default SIGPIPE action: {e}");
    }
}

/// The directory walk holds a few hundred files open ahead of the reader, and several
/// sources may run at once; the usual soft limit of 1024 is lower than the hard limit
/// a service is allowed, so take the hard one (as Go programs do).
fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::debug!("cannot raise the open-file limit from {soft} to {hard}: {e}");
    }
}
