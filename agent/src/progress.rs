//! Progress display for backup, restore and verify: drawn only when stderr is a
//! terminal (never in logs, the journal or `--json` output), fed by counters the
//! work updates anyway, redrawn by the bar's own ticker.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Stored bytes read by every object reader of this process (restore, verify).
pub static STORED_READ: AtomicU64 = AtomicU64::new(0);

pub fn wanted(json: bool) -> bool {
    !json && std::io::stderr().is_terminal()
}

/// A bar that follows `count` until dropped; `total` when known.
pub struct Follow {
    bar: ProgressBar,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Follow {
    /// `read` returns (bytes, files) so far.
    pub fn start(
        label: &str,
        total: Option<u64>,
        read: impl Fn() -> (u64, u64) + Send + 'static,
    ) -> Follow {
        let bar = match total {
            Some(t) => ProgressBar::new(t).with_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {msg} {binary_bytes} {binary_bytes_per_sec} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        bar.set_message(label.to_string());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (b, s, label) = (bar.clone(), stop.clone(), label.to_string());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let (bytes, files) = read();
                b.set_position(bytes);
                if files > 0 {
                    b.set_message(format!("{label} {files} files"));
                }
                b.tick();
                std::thread::sleep(std::time::Duration::from_millis(150));
            }
        });
        Follow {
            bar,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.bar.finish_and_clear();
    }
}
