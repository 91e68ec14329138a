//! Progress display for backup, restore and verify: a bar drawn only when stderr
//! is a terminal (never in logs, the journal or `--json` output), or with
//! `--progress json` one JSON object per line on stderr for a machine to follow;
//! fed by counters the work updates anyway, redrawn by the display's own ticker.
//! Work that is not measured in bytes (a restore swapping trees, removing old
//! contents, checking) names its phase through a process-wide slot, and work that
//! learns its total late (verify, once it has read the markers) sets it through
//! another, so code deep in a restore or verify can say what it is doing without
//! being handed the bar.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
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

/// The total in bytes of the work under way, when it learns it after its display
/// started (0: none said), and whether it is an estimate.
static LATE_TOTAL: AtomicU64 = AtomicU64::new(0);
static LATE_ESTIMATED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Says the running work's total, in the units its display counts.
pub fn set_total(bytes: u64, estimated: bool) {
    LATE_ESTIMATED.store(estimated, Ordering::Relaxed);
    LATE_TOTAL.store(bytes, Ordering::Relaxed);
}

fn late_total() -> Option<Total> {
    let bytes = LATE_TOTAL.load(Ordering::Relaxed);
    (bytes > 0).then(|| Total {
        bytes,
        files: None,
        estimated: LATE_ESTIMATED.load(Ordering::Relaxed),
    })
}

/// Stored bytes read by every object reader and ranged pack reader of this process
/// (restore, verify).
pub static STORED_READ: AtomicU64 = AtomicU64::new(0);

/// What the running work is doing, shown after the bar's label; empty for none.
static PHASE: Mutex<&'static str> = Mutex::new("");
/// Items done in the current phase (entries moved, removed, ...), shown when non-zero.
static PHASE_DONE: AtomicU64 = AtomicU64::new(0);

/// Names the current phase and restarts its count. Cheap, so callers need not know
/// whether a bar is drawn.
pub fn set_phase(phase: &'static str) {
    // A poisoned slot only means a panicking thread held it; the label is still usable.
    *PHASE.lock().unwrap_or_else(|e| e.into_inner()) = phase;
    PHASE_DONE.store(0, Ordering::Relaxed);
}

/// Counts `n` more items done in the current phase.
pub fn phase_done(n: u64) {
    PHASE_DONE.fetch_add(n, Ordering::Relaxed);
}

fn phase_text() -> String {
    let phase = *PHASE.lock().unwrap_or_else(|e| e.into_inner());
    match PHASE_DONE.load(Ordering::Relaxed) {
        _ if phase.is_empty() => String::new(),
        0 => format!(": {phase}"),
        n => format!(": {phase} {n}"),
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

/// How much work there is: exact (a restore's stored bytes) or an estimate (a
/// backup's, from the last successful run), with the number of files when known.
#[derive(Debug, Clone, Copy)]
pub struct Total {
    pub bytes: u64,
    pub files: Option<u64>,
    pub estimated: bool,
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
    /// `op` is the operation ("backup", "restore", "verify"), `name` what it works
    /// on (a job, a snapshot); `read` returns (bytes, files) so far.
    pub fn start(
        op: &'static str,
        name: &str,
        total: Option<Total>,
        read: impl Fn() -> (u64, u64) + Send + 'static,
    ) -> Follow {
        set_phase("");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if mode() == Mode::Json {
            let (s, name) = (stop.clone(), name.to_string());
            let thread = std::thread::spawn(move || {
                let started = Instant::now();
                let sample = || {
                    let (bytes, files) = read();
                    Sample {
                        bytes,
                        files,
                        elapsed: started.elapsed(),
                    }
                };
                let mut next = Instant::now();
                while !s.load(Ordering::Relaxed) {
                    if Instant::now() >= next {
                        emit(&json_line(op, &name, total, sample(), false));
                        next += Duration::from_secs(1);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                emit(&json_line(op, &name, total, sample(), true));
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
        let label = format!("{op} {name}");
        bar.set_message(label.clone());
        let (b, s) = (bar.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut has_total = total.is_some();
            while !s.load(Ordering::Relaxed) {
                let (bytes, files) = read();
                if let Some(late) = late_total().filter(|_| total.is_none()) {
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
                    phase_text()
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
/// the work said since (`set_total`); the ETA is the rest at the average rate so
/// far, absent without a total or before any byte.
fn json_line(op: &str, name: &str, total: Option<Total>, s: Sample, done: bool) -> String {
    let total = total.or_else(late_total);
    let secs = s.elapsed.as_secs_f64();
    let eta = total
        .filter(|_| s.bytes > 0 && secs > 0.0 && !done)
        .map(|t| t.bytes.saturating_sub(s.bytes) as f64 / (s.bytes as f64 / secs));
    let phase = *PHASE.lock().unwrap_or_else(|e| e.into_inner());
    serde_json::json!({
        "progress": op,
        "name": name,
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

/// Counts, in a thread of its own, the bytes of the regular files under `trees`
/// and says the sum as the work's estimated total: a first backup has no last run
/// to estimate from. Only what the files' sizes say (no database, no excludes),
/// hence an estimate; stops when dropped.
pub struct TreeTotal {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl TreeTotal {
    pub fn start(trees: Vec<std::path::PathBuf>) -> TreeTotal {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            let mut sum = 0u64;
            let mut todo = trees;
            while let Some(dir) = todo.pop() {
                let Ok(list) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for e in list.flatten() {
                    if s.load(Ordering::Relaxed) {
                        return;
                    }
                    // Not following symlinks, as the backup does not.
                    match e.metadata() {
                        Ok(md) if md.is_dir() => todo.push(e.path()),
                        Ok(md) if md.is_file() => sum = sum.saturating_add(md.len()),
                        _ => {}
                    }
                }
            }
            if !s.load(Ordering::Relaxed) {
                set_total(sum, true);
            }
        });
        TreeTotal { stop }
    }
}

impl Drop for TreeTotal {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
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
        set_total(0, false);
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_line_gives_the_rest_at_the_rate_so_far_and_no_eta_when_done() {
        let total = Some(Total {
            bytes: 1000,
            files: Some(4),
            estimated: false,
        });
        let at = |bytes, secs| Sample {
            bytes,
            files: 1,
            elapsed: Duration::from_secs(secs),
        };
        let line: serde_json::Value =
            serde_json::from_str(&json_line("restore", "s1", total, at(250, 2), false))
                .expect("json");
        assert_eq!(line["eta_seconds"], 6.0, "{line}");
        assert_eq!(line["total_bytes"], 1000, "{line}");
        assert_eq!(line["total_files"], 4, "{line}");
        assert_eq!(line["done"], false, "{line}");
        let done: serde_json::Value =
            serde_json::from_str(&json_line("restore", "s1", total, at(1000, 8), true))
                .expect("json");
        assert_eq!(done["eta_seconds"], serde_json::Value::Null, "{done}");
        assert_eq!(done["done"], true, "{done}");
        // Nothing read yet: no rate, no ETA.
        let start: serde_json::Value =
            serde_json::from_str(&json_line("restore", "s1", total, at(0, 0), false))
                .expect("json");
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
