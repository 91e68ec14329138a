//! Printing reports on stdout when the reader may go away (`coffer restore | head`).
//! Commands that feed child processes through pipes keep SIGPIPE ignored (a dying
//! pg_restore must be an error, not coffer's death), so `println!` would panic once
//! stdout closes. `say` stops printing instead; the work and its exit code go on.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static GONE: AtomicBool = AtomicBool::new(false);

/// Prints one line of a report; after the reader went away, prints nothing more.
pub fn say(line: std::fmt::Arguments) {
    if GONE.load(Ordering::Relaxed) {
        return;
    }
    if let Err(e) = writeln!(std::io::stdout().lock(), "{line}") {
        GONE.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            tracing::warn!("cannot print the report: {e}");
        }
    }
}

/// `println!` for reports: see `say`.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::output::say(format_args!($($arg)*))
    };
}
