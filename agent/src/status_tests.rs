//! The persisted job status's tests (a sibling file: with them `status.rs` would
//! pass 400 lines): a round trip, files from older and newer coffers, a missing
//! or corrupt file, an unusable state directory, and writers and readers racing.

use super::recorded::Recorded;
use super::*;
use crate::run::RunStatus;
use crate::verify::VerifyMode;

fn full() -> JobStatus {
    JobStatus {
        last_run: Some(1_700_000_000.25),
        last_success: Some(1_699_999_000.5),
        first_success: Some(1_600_000_000.0),
        last_outcome: Some(RunStatus::Partial.into()),
        last_error: Some("target offsite: timed out".into()),
        last_snapshot: Some("20231114T221320Z-0a1b".into()),
        last_duration_seconds: 12.5,
        last_skew_seconds: 0.75,
        last_window_seconds: 1.5,
        last_files: 20_048,
        last_data_bytes: 965 << 20,
        runs: [
            (RunStatus::Success.into(), 3),
            (RunStatus::Partial.into(), 1),
        ]
        .into(),
        skipped: 2,
        bytes_read: [("db".to_string(), 1 << 40)].into(),
        bytes_stored: [("offsite".to_string(), u64::MAX)].into(),
        snapshots: [("local".to_string(), 7), ("offsite".to_string(), 5)].into(),
        dead_bytes: Default::default(),
        last_check: Some(crate::format::CheckCounts {
            referenced: 40,
            captured: 41,
            missing: 1,
            wrong_size: 0,
            orphans: 2,
            completed: 0,
        }),
        last_verify: Some(1_700_000_100.0),
        last_verify_mode: Some(VerifyMode::Stored.into()),
        last_verify_ok: Some(true),
        last_deep_verify_success: None,
        last_stored_verify_success: Some(1_700_000_100.0),
        history: vec![RunRecord {
            end: 1_700_000_000.25,
            outcome: RunStatus::Partial.into(),
            duration_seconds: 12.5,
            bytes_stored: 4096,
            window_seconds: 1.5,
            error: Some("cannot read /srv/x: gone".into()),
        }],
    }
}

/// Many writers at once, each in its own open file (as separate processes would
/// be): every increment must survive.
#[test]
fn concurrent_updates_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (threads, each) = (8u64, 25u64);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let dir = dir.path();
            scope.spawn(move || {
                for _ in 0..each {
                    update(dir, "app", |s| {
                        s.skipped += 1;
                        *s.runs
                            .entry(Outcome::from_word(&format!("t{t}")))
                            .or_default() += 1;
                    })
                    .expect("update");
                }
            });
        }
    });
    let s = load(dir.path(), "app");
    assert_eq!(s.skipped, threads * each, "increments were lost");
    for t in 0..threads {
        assert_eq!(
            s.runs.get(&Outcome::from_word(&format!("t{t}"))),
            Some(&each),
            "{s:?}"
        );
    }
}

/// A status file written before `last_window_seconds` existed keeps its
/// counters (a field that fails to parse would reset them all to zero).
#[test]
fn a_status_file_from_before_the_window_still_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("status")).expect("mkdir");
    std::fs::write(
        dir.path().join("status/app.json"),
        r#"{"last_run": 5.0, "last_success": 5.0, "last_outcome": "success",
            "last_error": null, "last_snapshot": "x", "last_duration_seconds": 1.5,
            "last_skew_seconds": 0.25, "runs": {"success": 7}, "skipped": 2,
            "bytes_read": {}, "bytes_stored": {}, "snapshots": {},
            "last_verify": null, "last_verify_success": null}"#,
    )
    .expect("write");
    let s = load(dir.path(), "app");
    assert_eq!(s.runs.get(&RunStatus::Success.into()), Some(&7));
    assert_eq!(s.last_skew_seconds, 0.25);
    assert_eq!(s.last_window_seconds, 0.0);
}

#[test]
fn update_then_load_round_trips_every_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let returned = update(&state, "app", |s| *s = full()).expect("update");
    assert_eq!(returned, full());
    assert_eq!(load(&state, "app"), full());
    // One file per job, as JSON, next to its lock.
    let text = std::fs::read_to_string(state.join("status/app.json")).expect("status file");
    let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(json["runs"]["success"], 3);
    assert!(state.join("status/app.lock").exists());
    assert_eq!(load(&state, "other"), JobStatus::default());
    // A second update starts from what the first stored.
    let s = update(&state, "app", |s| {
        *s.runs.entry(RunStatus::Success.into()).or_default() += 1;
    })
    .expect("update");
    assert_eq!(s.runs[&RunStatus::Success.into()], 4);
    assert_eq!(s.bytes_stored["offsite"], u64::MAX);
    assert_eq!(load(&state, "app"), s);
}

#[test]
fn a_missing_status_is_the_default_and_the_first_update_creates_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("never-created");
    assert_eq!(load(&state, "app"), JobStatus::default());
    assert!(!state.exists(), "loading creates nothing");
    let s = update(&state, "app", |s| s.skipped += 1).expect("update");
    assert_eq!(s.skipped, 1);
    assert_eq!(load(&state, "app").skipped, 1);
}

#[test]
fn a_corrupt_status_file_reads_as_the_default_and_is_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("status/app.json");
    std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
    for garbage in [
        &b"{\"runs\": {\"success\": 3"[..],
        b"\xff\xfe not json",
        b"",
    ] {
        std::fs::write(&file, garbage).expect("write garbage");
        assert_eq!(load(dir.path(), "app"), JobStatus::default());
    }
    let s = update(dir.path(), "app", |s| s.skipped += 1).expect("update over garbage");
    assert_eq!(s.skipped, 1);
    let text = std::fs::read(&file).expect("status file");
    assert_eq!(
        serde_json::from_slice::<JobStatus>(&text).expect("valid again"),
        s
    );
}

#[test]
fn an_unusable_state_dir_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A file where the state directory should be: fails for root too.
    let state = dir.path().join("state");
    std::fs::write(&state, "not a directory").expect("write");
    let e = update(&state, "app", |s| s.skipped += 1).expect_err("cannot create status/");
    assert!(
        format!("{e:#}").contains(&state.join("status").display().to_string()),
        "{e:#}"
    );
    assert!(save(&state, "app", &full()).is_err());
}

/// The status file is replaced by rename, so a reader (the agent's /metrics while a
/// CLI run updates it) never sees a half-written file, which would read as the
/// default and make counters jump back to zero.
#[test]
fn readers_never_see_a_half_written_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path();
    // A large status, so that writing it takes more than one write call.
    update(state, "app", |s| {
        *s = full();
        for i in 0..2000 {
            s.bytes_read.insert(format!("source-{i:04}"), i);
        }
    })
    .expect("seed");
    let writes = 100u64;
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let (mut last, mut reads) = (0, 0u64);
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let s = load(state, "app");
                assert!(
                    s.skipped >= last && s.bytes_read.len() == 2001,
                    "read a half-written status after {reads} reads: skipped {} after {last}",
                    s.skipped
                );
                last = s.skipped;
                reads += 1;
            }
            reads
        });
        for _ in 0..writes {
            update(state, "app", |s| s.skipped += 1).expect("update");
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let reads = reader.join().expect("reader");
        assert!(reads > 0);
    });
    assert_eq!(load(state, "app").skipped, 2 + writes);
}

/// A status written by an older coffer lacks the fields added since: the ones it
/// has must survive, not reset to zero because one is missing.
#[test]
fn a_status_from_an_older_version_keeps_its_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("status").join("app.json");
    std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
    std::fs::write(&file, br#"{"skipped": 4, "runs": {"success": 9}}"#).expect("write");
    let s = load(dir.path(), "app");
    assert_eq!(s.skipped, 4);
    assert_eq!(s.runs.get(&RunStatus::Success.into()), Some(&9));
}

fn record(i: u64) -> RunRecord {
    RunRecord {
        end: i as f64,
        outcome: if i.is_multiple_of(2) {
            RunStatus::Success
        } else {
            RunStatus::Failed
        }
        .into(),
        duration_seconds: i as f64 / 10.0,
        bytes_stored: i * 100,
        window_seconds: 0.5,
        error: None,
    }
}

/// Every run adds to the history, which keeps the last HISTORY runs, in the file
/// too; a file from before the history has none and keeps its counters.
#[test]
fn the_history_keeps_the_last_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("status/app.json");
    std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
    std::fs::write(&file, br#"{"skipped": 4, "runs": {"success": 9}}"#).expect("write");
    assert!(load(dir.path(), "app").history.is_empty());
    for i in 0..(HISTORY as u64 + 5) {
        update(dir.path(), "app", |s| s.record_run(record(i))).expect("update");
    }
    let s = load(dir.path(), "app");
    assert_eq!(s.skipped, 4);
    let ends: Vec<f64> = s.history.iter().map(|r| r.end).collect();
    let expected: Vec<f64> = (5..HISTORY as u64 + 5).map(|i| i as f64).collect();
    assert_eq!(ends, expected, "the last runs, oldest first");
    assert_eq!(s.history.last(), Some(&record(HISTORY as u64 + 4)));
}

/// A hand-edited or corrupt file: however many records it holds, reading keeps
/// the last HISTORY well-formed ones; a malformed history reads as none and
/// leaves the counters alone.
#[test]
fn a_hostile_history_is_cut_and_never_resets_the_counters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("status/app.json");
    std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
    let many = 200_000u64;
    let mut entries: Vec<String> = (0..many)
        .map(|i| serde_json::to_string(&record(i)).expect("json"))
        .collect();
    // Garbage among the last ones: skipped, not counted against the cap.
    let long = format!(
        r#"{{"end": 1, "outcome": "{}", "duration_seconds": 1, "bytes_stored": 1, "window_seconds": 1}}"#,
        "x".repeat(10_000)
    );
    for (at, junk) in [
        (many as usize - 3, "\"a string\"".to_string()),
        (many as usize - 2, r#"{"end": "soon"}"#.to_string()),
        (many as usize - 1, long),
        (many as usize, "[1, 2, 3]".to_string()),
    ] {
        entries.insert(at, junk);
    }
    std::fs::write(
        &file,
        format!(r#"{{"skipped": 4, "history": [{}]}}"#, entries.join(",")),
    )
    .expect("write");
    let s = load(dir.path(), "app");
    assert_eq!(s.skipped, 4);
    assert_eq!(s.history.len(), HISTORY);
    assert_eq!(s.history.first().map(|r| r.end), Some((many - 30) as f64));
    assert_eq!(s.history.last(), Some(&record(many - 1)));
    // Written back bounded.
    update(dir.path(), "app", |s| s.skipped += 1).expect("update");
    assert!(std::fs::metadata(&file).expect("stat").len() < 16 * 1024);
    for odd in ["null", "7", "\"runs\"", "{\"a\": [1]}", "true"] {
        std::fs::write(
            &file,
            format!(r#"{{"skipped": 4, "runs": {{"success": 9}}, "history": {odd}}}"#),
        )
        .expect("write");
        let s = load(dir.path(), "app");
        assert_eq!(
            (s.skipped, s.runs.get(&RunStatus::Success.into())),
            (4, Some(&9)),
            "{odd}"
        );
        assert!(s.history.is_empty(), "{odd}");
    }
}

/// A run's error is kept in its record, cut at MAX_ERROR bytes on a character
/// boundary (when recorded, and when read from a file that holds more).
#[test]
fn a_record_keeps_its_error_bounded() {
    use crate::status::history::MAX_ERROR;
    assert_eq!(bounded_error("short"), "short");
    let long = "é".repeat(MAX_ERROR);
    let cut = bounded_error(&long);
    assert!(
        cut.len() <= MAX_ERROR + 6 && cut.ends_with(" [...]"),
        "{}",
        cut.len()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("status/app.json");
    std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
    let entry = serde_json::json!({"history": [{
        "end": 1.0, "outcome": "failed", "duration_seconds": 0.01,
        "bytes_stored": 0, "window_seconds": 0.0, "error": "x".repeat(10 * MAX_ERROR),
    }]});
    std::fs::write(&file, entry.to_string()).expect("write");
    let s = load(dir.path(), "app");
    let error = s.history[0].error.as_deref().expect("the error");
    assert_eq!(error.len(), MAX_ERROR + " [...]".len());
}

/// A status file exactly as coffer wrote it before the outcome and the verify
/// mode were types: it loads into the same values, and the same values are
/// written back byte for byte (words, key order, layout).
const WRITTEN_BEFORE_THE_TYPES: &str = r#"{
  "last_run": 1700000000.25,
  "last_success": 1699999000.5,
  "first_success": 1600000000.0,
  "last_outcome": "partial",
  "last_error": "target offsite: timed out",
  "last_snapshot": "20231114T221320Z-0a1b",
  "last_duration_seconds": 12.5,
  "last_skew_seconds": 0.75,
  "last_window_seconds": 1.5,
  "last_files": 20048,
  "last_data_bytes": 1011875840,
  "runs": {
    "cancelled": 1,
    "failed": 2,
    "partial": 1,
    "success": 3
  },
  "skipped": 2,
  "bytes_read": {
    "db": 1099511627776
  },
  "bytes_stored": {
    "offsite": 4096
  },
  "snapshots": {
    "local": 7,
    "offsite": 5
  },
  "dead_bytes": {},
  "last_check": null,
  "last_verify": 1700000100.0,
  "last_verify_mode": "stored",
  "last_verify_ok": true,
  "last_deep_verify_success": null,
  "last_stored_verify_success": 1700000100.0,
  "history": [
    {
      "end": 1699999000.5,
      "outcome": "success",
      "duration_seconds": 10.0,
      "bytes_stored": 2048,
      "window_seconds": 1.0
    },
    {
      "end": 1700000000.25,
      "outcome": "partial",
      "duration_seconds": 12.5,
      "bytes_stored": 4096,
      "window_seconds": 1.5,
      "error": "target offsite: timed out"
    }
  ]
}"#;

#[test]
fn a_status_file_from_before_the_types_loads_and_is_written_the_same() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("status/app.json");
    std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
    std::fs::write(&file, WRITTEN_BEFORE_THE_TYPES).expect("write");
    let s = read(dir.path(), "app")
        .expect("readable")
        .expect("a status");
    assert_eq!(s.last_outcome, Some(Outcome::Known(RunStatus::Partial)));
    assert_eq!(
        s.last_verify_mode,
        Some(Recorded::Known(VerifyMode::Stored))
    );
    let runs: Vec<(Option<RunStatus>, u64)> = s.runs.iter().map(|(o, n)| (o.known(), *n)).collect();
    assert_eq!(
        runs,
        [
            (Some(RunStatus::Cancelled), 1),
            (Some(RunStatus::Failed), 2),
            (Some(RunStatus::Partial), 1),
            (Some(RunStatus::Success), 3),
        ]
    );
    let outcomes: Vec<Option<RunStatus>> = s.history.iter().map(|r| r.outcome.known()).collect();
    assert_eq!(
        outcomes,
        [Some(RunStatus::Success), Some(RunStatus::Partial)]
    );
    assert_eq!(s.skipped, 2);
    assert_eq!(
        serde_json::to_string_pretty(&s).expect("json"),
        WRITTEN_BEFORE_THE_TYPES
    );
    save(dir.path(), "app", &s).expect("save");
    assert_eq!(
        std::fs::read_to_string(&file).expect("read back"),
        WRITTEN_BEFORE_THE_TYPES
    );
}

/// A newer coffer may write an outcome or a verify mode this one does not know:
/// the file still loads with every counter, the words are kept as read (for
/// display, and in the file when this coffer writes it back), and they match
/// none of the known values.
#[test]
fn a_status_file_with_words_from_a_newer_coffer_still_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("status/app.json");
    std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
    std::fs::write(
        &file,
        r#"{"last_run": 9.0, "last_outcome": "deferred", "skipped": 4,
            "runs": {"deferred": 2, "success": 1}, "last_verify": 8.0,
            "last_verify_mode": "sampled", "last_verify_ok": true,
            "history": [{"end": 9.0, "outcome": "deferred", "duration_seconds": 1.0,
                         "bytes_stored": 0, "window_seconds": 0.0}]}"#,
    )
    .expect("write");
    let s = read(dir.path(), "app")
        .expect("readable")
        .expect("a status");
    assert_eq!((s.skipped, s.last_run), (4, Some(9.0)));
    let outcome = s.last_outcome.as_ref().expect("an outcome");
    assert_eq!(
        (outcome.known(), outcome.to_string().as_str()),
        (None, "deferred")
    );
    let mode = s.last_verify_mode.as_ref().expect("a mode");
    assert_eq!((mode.known(), mode.as_str()), (None, "sampled"));
    assert_eq!(s.runs.get(&Outcome::from_word("deferred")), Some(&2));
    assert_eq!(s.runs.get(&RunStatus::Success.into()), Some(&1));
    assert_eq!(s.history.len(), 1);
    assert_eq!(s.history[0].outcome.as_str(), "deferred");
    assert_eq!(s.last_record().map(|r| r.outcome.known()), Some(None));
    // This coffer's next update keeps the newer words in the file.
    update(dir.path(), "app", |s| s.skipped += 1).expect("update");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("JSON");
    assert_eq!(json["last_outcome"], "deferred");
    assert_eq!(json["last_verify_mode"], "sampled");
    assert_eq!(json["runs"]["deferred"], 2);
    assert_eq!(json["history"][0]["outcome"], "deferred");
}

/// A known word always reads as its value, so that equality and the order of
/// the `runs` keys are those of the words.
#[test]
fn known_words_read_as_their_values() {
    for s in RunStatus::ALL {
        assert_eq!(Outcome::from_word(s.as_str()), Outcome::Known(*s));
        let json = serde_json::to_string(&Outcome::from(*s)).expect("json");
        assert_eq!(json, format!("\"{s}\""));
        assert_eq!(
            serde_json::from_str::<Outcome>(&json).expect("back"),
            Outcome::Known(*s)
        );
    }
    for m in [VerifyMode::Stored, VerifyMode::Deep] {
        assert_eq!(
            RecordedVerifyMode::from_word(m.as_str()),
            Recorded::Known(m)
        );
    }
    assert!(Outcome::from(RunStatus::Success) > Outcome::from_word("other"));
    assert!(Outcome::from(RunStatus::Cancelled) < Outcome::from(RunStatus::Failed));
}
