//! Fuzz target: the config loader, `coffer_config::load_str`, on arbitrary UTF-8.
//!
//! Why it exists (issue 10): the loader turns TOML into a validated `Config` and
//! reports every problem located as `file:line:col`. Whatever the text, it must
//! return `Ok` or `Err`, never panic (a slicing or line/column bug in the location
//! code, an unchecked unit conversion, a cron or time zone parser tripping).
//!
//! Relative paths in the config resolve against an empty directory made once per
//! process, so the files the loader reads (identity, recipients, password and token
//! files) are simply missing, and a run does not depend on the machine's files.
//! Absolute paths still reach the real file system: read-only, but a config that
//! names `/dev/zero` or a FIFO would be a finding (unbounded read, hang).

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// An empty directory that relative paths resolve against; kept for the process.
fn base() -> &'static Path {
    static BASE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &BASE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("a temporary directory for the config base");
            let path = dir.path().to_path_buf();
            (dir, path)
        })
        .1
}

fuzz_target!(|text: &str| {
    match coffer_config::load_str(text, Path::new("fuzz.toml"), base()) {
        // Rendering the problems runs the location code once more (line, column,
        // dotted keys): it must not panic either.
        Err(e) => {
            let _ = e.to_string();
        }
        Ok(config) => {
            let _ = format!("{config:?}");
        }
    }
});
