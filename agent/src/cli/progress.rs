//! Progress display for backup, restore and verify: a bar drawn only when stderr
//! is a terminal (never in logs, the journal or `--json` output), or with
//! `--progress json` one JSON object per line on stderr for a machine to follow;
//! fed by the `report::Work` the domain updates anyway (bytes, files, its phase,
//! a total learnt late), redrawn by the display's own ticker. The CLI's side of
//! `report::Report` (`cli::report`); the domain never sees a bar.

use crate::report::Work;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How progress is shown (`--progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// A bar on a terminal; nothing otherwise, nor with `--json`.
    Auto,
    /// One JSON object per line on stderr, every second and at the end.
    Json,
    /// Nothing.
    None,
}

static MODE: OnceLock<Mode> = OnceLock::new();

/// Set once, by main, from `--progress`; `Auto` until then.
pub fn set_mode(mode: Mode) {
    let _ = MODE.set(mode);
}

fn mode() -> Mode {
    MODE.get().copied().unwrap_or(Mode::Auto)
}

/// `: phase` or `: phase 12` after the label; nothing without a phase.
fn phase_text(work: &Work) -> String {
    match work.phase() {
        ("", _) => String::new(),
        (phase, 0) => format!(": {phase}"),
        (phase, n) => format!(": {phase} {n}"),
    }
}

/// Whether to follow the work: `json` is the command's `--json` (its report on
/// stdout), which a bar would garble on a shared terminal; JSON progress goes to
/// stderr and is asked for explicitly.
pub fn wanted(json: bool) -> bool {
    match mode() {
        Mode::Auto => !json && std::io::stderr().is_terminal(),
        Mode::Json => true,
        Mode::None => false,
    }
}

/// A display that follows the work until dropped; `total` when known.
pub struct Follow {
    bar: Option<ProgressBar>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// One moment of the work, as a JSON progress line says it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    bytes: u64,
    files: u64,
    elapsed: Duration,
}

impl Follow {
    /// Follows `work` (its op, name, counters, phase and totals) until dropped.
    pub fn start(work: Arc<Work>) -> Follow {
        let total = work.total;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if mode() == Mode::Json {
            let s = stop.clone();
            let thread = std::thread::spawn(move || {
                let started = Instant::now();
                let sample = || {
                    let (bytes, files) = work.done();
                    Sample {
                        bytes,
                        files,
                        elapsed: started.elapsed(),
                    }
                };
                let mut next = Instant::now();
                while !s.load(Ordering::Relaxed) {
                    if Instant::now() >= next {
                        emit(&json_line(&work, sample(), false));
                        next += Duration::from_secs(1);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                emit(&json_line(&work, sample(), true));
            });
            return Follow {
                bar: None,
                stop,
                thread: Some(thread),
            };
        }
        let bar = match total {
            Some(t) => ProgressBar::new(t.bytes).with_style(bar_style(t.estimated)),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template(
                    "{spinner} {msg} {binary_bytes} {binary_bytes_per_sec} {elapsed}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        let label = format!("{} {}", work.op, work.name);
        bar.set_message(label.clone());
        let (b, s) = (bar.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut has_total = total.is_some();
            while !s.load(Ordering::Relaxed) {
                let (bytes, files) = work.done();
                if let Some(late) = work.late_total().filter(|_| total.is_none()) {
                    // The spinner becomes a bar once the work knows its total (a
                    // second target's adds to it).
                    if !has_total || late.bytes > b.length().unwrap_or(0) {
                        b.set_style(bar_style(late.estimated));
                        b.set_length(late.bytes);
                    }
                    has_total = true;
                }
                // An estimate may be short: the bar grows rather than sit at 100%.
                if has_total && bytes > b.length().unwrap_or(0) {
                    b.set_length(bytes);
                }
                b.set_position(bytes);
                b.set_message(format!(
                    "{label}{}{}",
                    files_text(files, total.and_then(|t| t.files)),
                    phase_text(&work)
                ));
                b.tick();
                std::thread::sleep(Duration::from_millis(150));
            }
        });
        Follow {
            bar: Some(bar),
            stop,
            thread: Some(thread),
        }
    }
}

fn bar_style(estimated: bool) -> ProgressStyle {
    ProgressStyle::with_template(if estimated {
        "{msg} [{bar:30}] {binary_bytes}/~{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}"
    } else {
        "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}"
    })
    .unwrap_or_else(|_| ProgressStyle::default_bar())
}

fn emit(line: &str) {
    // Progress is best effort: a closed stderr must not fail the work.
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// One JSON progress line. The total is the one given at the start, else the one
/// the work said since (`Work::set_total`); the ETA is the rest at the average rate so
/// far, absent without a total or before any byte.
fn json_line(work: &Work, s: Sample, done: bool) -> String {
    let total = work.total.or_else(|| work.late_total());
    let secs = s.elapsed.as_secs_f64();
    let eta = total
        .filter(|_| s.bytes > 0 && secs > 0.0 && !done)
        .map(|t| t.bytes.saturating_sub(s.bytes) as f64 / (s.bytes as f64 / secs));
    let (phase, _) = work.phase();
    serde_json::json!({
        "progress": work.op,
        "name": work.name,
        "bytes": s.bytes,
        "total_bytes": total.map(|t| t.bytes),
        "total_estimated": total.map(|t| t.estimated),
        "files": s.files,
        "total_files": total.and_then(|t| t.files),
        "phase": (!phase.is_empty() && !done).then_some(phase),
        "elapsed_seconds": (secs * 1000.0).round() / 1000.0,
        "eta_seconds": eta.map(|e| e.round()),
        "done": done,
    })
    .to_string()
}

/// ` 1 file`, ` 1,204 of ~20,048 files`, or nothing before the first file.
fn files_text(done: u64, total: Option<u64>) -> String {
    match (done, total) {
        (0, _) => String::new(),
        (n, Some(t)) if t >= n => format!(" {n} of ~{t} file{}", if t == 1 { "" } else { "s" }),
        (n, _) => format!(" {}", crate::units::count(n, "file")),
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Total;

    #[test]
    fn a_json_line_gives_the_rest_at_the_rate_so_far_and_no_eta_when_done() {
        let work = Work::new(
            "restore",
            "s1",
            Some(Total {
                bytes: 1000,
                files: Some(4),
                estimated: false,
            }),
        );
        let at = |bytes, secs| Sample {
            bytes,
            files: 1,
            elapsed: Duration::from_secs(secs),
        };
        let line: serde_json::Value =
            serde_json::from_str(&json_line(&work, at(250, 2), false)).expect("json");
        assert_eq!(line["eta_seconds"], 6.0, "{line}");
        assert_eq!(line["total_bytes"], 1000, "{line}");
        assert_eq!(line["total_files"], 4, "{line}");
        assert_eq!(line["done"], false, "{line}");
        let done: serde_json::Value =
            serde_json::from_str(&json_line(&work, at(1000, 8), true)).expect("json");
        assert_eq!(done["eta_seconds"], serde_json::Value::Null, "{done}");
        assert_eq!(done["done"], true, "{done}");
        // Nothing read yet: no rate, no ETA.
        let start: serde_json::Value =
            serde_json::from_str(&json_line(&work, at(0, 0), false)).expect("json");
        assert_eq!(start["eta_seconds"], serde_json::Value::Null, "{start}");
    }

    #[test]
    fn files_are_counted_in_words_and_against_the_estimate() {
        assert_eq!(files_text(0, Some(9)), "");
        assert_eq!(files_text(1, None), " 1 file");
        assert_eq!(files_text(2, None), " 2 files");
        assert_eq!(files_text(3, Some(10)), " 3 of ~10 files");
        assert_eq!(files_text(1, Some(1)), " 1 of ~1 file");
        // More files than the last run had: the estimate is dropped, not shown wrong.
        assert_eq!(files_text(11, Some(10)), " 11 files");
    }
}
