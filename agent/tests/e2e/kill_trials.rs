//! Kill trials (issue 21): format-2 backups with the smallest `pack_size`, SIGKILLed
//! at random points, with runs that complete in between; then everything on the
//! target is aged past `incomplete_after`, `coffer prune` is itself killed a few
//! times, and one prune that finishes must leave exactly what the remaining
//! markers reference: their packs, their folders and the objects they list, and
//! nothing else anywhere under the target (no staging `#n` file, no folder
//! without a marker, no temp file). The survivors verify, and a backup after the
//! garbage collection completes and deep-verifies (the index never points into a
//! pack the collection removed). Once for a local target, once for S3 (s3s-fs).
//!
//! The kill points come from a seeded generator: the seed is printed, and
//! `COFFER_KILL_SEED=<n>` replays a failing trial.

use crate::common::s3::{S3Server, files_under};
use crate::common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Backups killed per trial (kills that hit a running process).
const KILLS: usize = 20;
/// Every this many rounds, a run that is left to complete.
const COMPLETE_EVERY: u64 = 4;
/// Prunes killed before the one that must finish the job.
const PRUNE_KILLS: usize = 6;
const BUCKET: &str = "kills";
const PREFIX: &str = "fleet/h1";

/// splitmix64: small, seedable, the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn seed() -> u64 {
    std::env::var("COFFER_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

/// The source: a few hundred small files in folders, and some bigger ones.
fn make_tree(src: &Path, rng: &mut Rng) {
    for i in 0..240u64 {
        let dir = src.join(format!("d{:02}", i % 12));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let len = rng.range(2 << 10, 24 << 10) as usize;
        std::fs::write(dir.join(format!("f{i:03}.bin")), noise(len, rng.next())).expect("write");
    }
    for i in 0..5u64 {
        // Up to 2.5 MiB: the ones over 1 MiB are cut into chunks.
        let len = rng.range(256 << 10, 5 << 19) as usize;
        std::fs::write(src.join(format!("big{i}.bin")), noise(len, rng.next())).expect("write");
    }
}

/// What changes between two runs: new files and rewritten ones, so that every run
/// has packs to write.
fn mutate(src: &Path, round: u64, rng: &mut Rng) {
    let new = src.join("new");
    std::fs::create_dir_all(&new).expect("mkdir");
    for k in 0..4 {
        let len = rng.range(64 << 10, 320 << 10) as usize;
        std::fs::write(
            new.join(format!("r{round:03}-{k}.bin")),
            noise(len, rng.next()),
        )
        .expect("write");
    }
    for _ in 0..4 {
        let i = rng.range(0, 239);
        let f = src.join(format!("d{:02}/f{i:03}.bin", i % 12));
        let len = rng.range(2 << 10, 24 << 10) as usize;
        std::fs::write(f, noise(len, rng.next())).expect("write");
    }
}

/// What is on the target's disk for job `app`, read without coffer.
#[derive(Debug, Default)]
struct Census {
    /// Folders with a `snapshot.json`: the keys their marker lists.
    committed: BTreeMap<String, BTreeSet<String>>,
    /// Every pack any marker references.
    referenced: BTreeSet<String>,
    stored_packs: BTreeSet<String>,
    /// Snapshot folders without a marker.
    incomplete: BTreeSet<String>,
    /// Files that are neither a referenced pack nor an object a marker lists,
    /// relative to the target's root.
    strays: Vec<String>,
    /// Of those, staging files `<object>#<n>`.
    staging: usize,
    /// Empty folders (local target only: an object store has none).
    empty_dirs: Vec<String>,
}

impl Census {
    fn take(root: &Path, local: bool) -> Census {
        let job = root.join("app");
        let mut c = Census::default();
        for e in std::fs::read_dir(&job).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "packs" || !e.path().is_dir() {
                continue;
            }
            // The S3 server keeps the folders of deleted objects: no object, no folder.
            if !local && files_under(&e.path()).is_empty() {
                continue;
            }
            let marker = e.path().join("snapshot.json");
            let Ok(text) = std::fs::read_to_string(&marker) else {
                c.incomplete.insert(name);
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(&text).expect("marker json");
            let keys = v["marker"]["objects"]
                .as_array()
                .expect("objects")
                .iter()
                .map(|o| o["key"].as_str().expect("key").to_string())
                .collect();
            for p in v["marker"]["packs"].as_array().expect("packs") {
                c.referenced
                    .insert(p["id"].as_str().expect("id").to_string());
            }
            c.committed.insert(name, keys);
        }
        for rel in files_under(root) {
            if rel.contains('#') {
                c.staging += 1;
            }
            let parts: Vec<&str> = rel.split('/').collect();
            let ok = match parts[..] {
                ["app", "packs", file] => match file.strip_suffix(".tar.zst.age") {
                    Some(id) => {
                        c.stored_packs.insert(id.to_string());
                        c.referenced.contains(id)
                    }
                    None => false,
                },
                ["app", folder, key] => c
                    .committed
                    .get(folder)
                    .is_some_and(|keys| key == "snapshot.json" || keys.contains(key)),
                _ => false,
            };
            if !ok {
                c.strays.push(rel);
            }
        }
        if local {
            for e in walkdir::WalkDir::new(root)
                .min_depth(1)
                .into_iter()
                .flatten()
            {
                let empty = e.file_type().is_dir()
                    && std::fs::read_dir(e.path()).is_ok_and(|mut d| d.next().is_none());
                if empty {
                    let rel = e.path().strip_prefix(root).expect("under root");
                    c.empty_dirs.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        c
    }

    fn summary(&self) -> String {
        let unreferenced = self.stored_packs.difference(&self.referenced).count();
        format!(
            "{} committed, {} incomplete folder(s), {} pack(s) of which {unreferenced} \
             unreferenced, {} staging file(s), {} stray file(s), {} empty folder(s)",
            self.committed.len(),
            self.incomplete.len(),
            self.stored_packs.len(),
            self.staging,
            self.strays.len(),
            self.empty_dirs.len()
        )
    }
}

/// `YYYYMMDDTHHMMSSZ-xxxx` three days earlier: the id carries the run's start,
/// which is what prune ages a folder without a marker by.
fn three_days_earlier(id: &str) -> String {
    let t = chrono::NaiveDateTime::parse_from_str(&id[..16], "%Y%m%dT%H%M%SZ").expect("an id");
    let t = t - chrono::Duration::days(3);
    format!("{}{}", t.format("%Y%m%dT%H%M%SZ"), &id[16..])
}

struct Trial<'a> {
    world: &'a World,
    /// Where the target's objects are on disk (the local directory, or the
    /// bucket's folder under the prefix on the S3 server).
    root: PathBuf,
    local: bool,
    s3: Option<&'a S3Server>,
    src: PathBuf,
    rng: Rng,
}

/// What one trial saw, for its report.
#[derive(Debug, Default)]
struct Figures {
    kills: usize,
    killed_committed: usize,
    completed: usize,
    prune_kills: usize,
    /// Unfinished multipart uploads the kills left on the S3 server, counted
    /// right after each kill (before a later run could abort them).
    uploads_left_by_kills: usize,
    pending_uploads_before: usize,
    pending_uploads_after: usize,
}

impl Trial<'_> {
    /// The ids of the multipart uploads the S3 server holds unfinished.
    fn pending_uploads(&self) -> BTreeSet<String> {
        self.s3.map_or_else(BTreeSet::new, |s| {
            s.pending_uploads()
                .iter()
                .filter_map(|n| n.strip_prefix(".upload-")?.strip_suffix(".json"))
                .map(str::to_string)
                .collect()
        })
    }

    /// The upload ids coffer has written down for job `app` (`upload_journal`).
    fn recorded_uploads(&self) -> BTreeSet<String> {
        std::fs::read_dir(self.world.path("state/uploads/s3/app"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let v: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
                Some(v["upload_id"].as_str()?.to_string())
            })
            .collect()
    }

    /// Spawns `coffer <args>`, SIGKILLs it after `delay` if it still runs; true
    /// when the kill hit a running process.
    fn kill_after(&self, args: &[&str], delay: Duration) -> bool {
        let mut child = self
            .world
            .command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(self.world.path("killed.err")).expect("stderr file"),
            ))
            .spawn()
            .expect("spawn coffer");
        std::thread::sleep(delay);
        let running = child.try_wait().expect("poll").is_none();
        if running {
            child.kill().expect("kill -9");
        }
        let status = child.wait().expect("reap");
        assert!(
            running || status.success(),
            "coffer {args:?} failed on its own ({status}) before the kill: {}",
            std::fs::read_to_string(self.world.path("killed.err")).unwrap_or_default()
        );
        running
    }

    fn run(mut self) {
        let t0 = Instant::now();
        let mut fig = Figures::default();
        make_tree(&self.src, &mut self.rng);
        self.world.ok(&["backup", "app"]);
        // A run of the size the trial kills: new and changed files only.
        mutate(&self.src, 0, &mut self.rng);
        let start = Instant::now();
        self.world.ok(&["backup", "app"]);
        let full = start.elapsed();
        eprintln!(
            "[{:.1}s] kill trial: an unkilled run takes {full:?}",
            t0.elapsed().as_secs_f64()
        );
        let max_ms = (full.as_millis() as u64).max(50);

        let mut round = 1;
        while fig.kills < KILLS {
            mutate(&self.src, round, &mut self.rng);
            if round % COMPLETE_EVERY == 0 {
                self.world.ok(&["backup", "app"]);
                fig.completed += 1;
            } else {
                let before = self.world.snapshots().len();
                let delay = Duration::from_millis(self.rng.range(5, max_ms));
                let pending = self.pending_uploads();
                if self.kill_after(&["backup", "app"], delay) {
                    fig.kills += 1;
                    fig.uploads_left_by_kills +=
                        self.pending_uploads().difference(&pending).count();
                    if self.world.snapshots().len() > before {
                        fig.killed_committed += 1;
                    }
                } else {
                    fig.completed += 1;
                }
            }
            round += 1;
        }
        let seen = Census::take(&self.root, self.local);
        fig.pending_uploads_before = self.pending_uploads().len();
        eprintln!(
            "[{:.1}s] kill trial: {} kills ({} after the marker), {} runs completed; on the target: {}; \
             {} unfinished multipart upload(s)",
            t0.elapsed().as_secs_f64(),
            fig.kills,
            fig.killed_committed,
            fig.completed,
            seen.summary(),
            fig.pending_uploads_before
        );
        assert!(
            !seen.incomplete.is_empty() || !seen.strays.is_empty() || fig.uploads_left_by_kills > 0,
            "the kills left nothing to clean up: the trial proves nothing ({})",
            seen.summary()
        );

        // The grace period passes: folders by their id, everything else by its time.
        let job = self.root.join("app");
        for id in &seen.incomplete {
            std::fs::rename(job.join(id), job.join(three_days_earlier(id))).expect("age a folder");
        }
        sh(&format!(
            "find {} -exec touch -h -d '3 days ago' {{}} +",
            self.root.display()
        ));

        // Prune killed mid-run a few times; the next one finishes the job.
        let start = Instant::now();
        self.world
            .ok(&["prune", "--job", "app", "--dry-run", "--json"]);
        let dry = start.elapsed().as_millis() as u64;
        // Killed later each time, by a random step, from a third of a dry run's
        // length on, until kills have cut a prune mid-work (some garbage gone,
        // some left) or one finishes.
        let garbage = |c: &Census| c.strays.len() + c.incomplete.len() + c.empty_dirs.len();
        let mut left = vec![garbage(&seen)];
        let mut cut = 0;
        let mut delay = dry / 3;
        while cut < PRUNE_KILLS && *left.last().unwrap_or(&0) > 0 && delay < 60_000 {
            delay += self.rng.range(1, dry / 10 + 1);
            let hit = self.kill_after(&["prune", "--job", "app"], Duration::from_millis(delay));
            let before = *left.last().unwrap_or(&0);
            let now = garbage(&Census::take(&self.root, self.local));
            left.push(now);
            if hit {
                fig.prune_kills += 1;
                if now < before && now > 0 {
                    cut += 1;
                }
            }
        }
        eprintln!(
            "[{:.1}s] kill trial: {} prunes killed while running, {cut} of them mid-work (a dry run \
             takes {dry} ms); garbage files and folders left after each: {left:?}",
            t0.elapsed().as_secs_f64(),
            fig.prune_kills,
        );
        let out = self.world.ok(&["prune", "--job", "app", "--json"]);
        let after = Census::take(&self.root, self.local);
        let pending = self.pending_uploads();
        fig.pending_uploads_after = pending.len();
        eprintln!(
            "[{:.1}s] kill trial: after prune: {}; {} unfinished multipart upload(s)",
            t0.elapsed().as_secs_f64(),
            after.summary(),
            fig.pending_uploads_after
        );
        assert_eq!(
            after.committed.len(),
            seen.committed.len(),
            "prune removed a snapshot: {out}"
        );
        assert!(
            after.incomplete.is_empty(),
            "folders without a marker survive prune: {:?}\n{out}",
            after.incomplete
        );
        assert_eq!(
            after.strays,
            Vec::<String>::new(),
            "files no marker references survive prune: {out}"
        );
        assert_eq!(
            after.empty_dirs,
            Vec::<String>::new(),
            "empty folders survive prune: {out}"
        );
        assert_eq!(
            after.stored_packs, after.referenced,
            "the packs on the target are not exactly those the markers reference: {out}"
        );
        if self.s3.is_some() {
            // Every upload coffer wrote down is aborted. What may be left is an
            // upload whose id never reached the journal: a kill between the
            // server creating it and coffer writing it down (one round trip).
            let recorded = self.recorded_uploads();
            let kept: Vec<&String> = pending.intersection(&recorded).collect();
            assert!(
                kept.is_empty(),
                "uploads coffer wrote down survive prune: {kept:?}\n{out}"
            );
            eprintln!(
                "[{:.1}s] kill trial: the kills left {} unfinished upload(s); {} survive prune, none \
                 of them written down",
                t0.elapsed().as_secs_f64(),
                fig.uploads_left_by_kills,
                fig.pending_uploads_after
            );
        }
        let listed: BTreeSet<String> = self.world.snapshots().into_iter().collect();
        let committed: BTreeSet<String> = after.committed.keys().cloned().collect();
        assert_eq!(listed, committed, "list and the target disagree");
        // A second prune finds nothing left to do.
        let again = self.world.ok(&["prune", "--job", "app", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&again).expect("json");
        for key in ["incomplete_removed", "forgotten"] {
            assert_eq!(v[0][key], serde_json::json!([]), "{key}: {again}");
        }
        for key in ["packs_removed", "staging_removed", "kept_for_grace"] {
            assert!(v[0][key].is_null(), "{key}: {again}");
        }

        self.world.ok(&[
            "verify",
            "--job",
            "app",
            "--stored-only",
            "--snapshot",
            "all",
        ]);
        eprintln!(
            "[{:.1}s] kill trial: stored-only verify done",
            t0.elapsed().as_secs_f64()
        );
        // A deep verify reads every pack through ranged reads; against s3s-fs that
        // takes 20-30 s here, so on S3 only the one after the final backup (whose
        // snapshot uses the surviving packs) runs, to stay within the time budget.
        if self.local {
            self.world.ok(&["verify", "--job", "app"]);
        }
        eprintln!(
            "[{:.1}s] kill trial: deep verify done",
            t0.elapsed().as_secs_f64()
        );
        // The index must not point into a pack the collection removed.
        mutate(&self.src, round, &mut self.rng);
        self.world.ok(&["backup", "app"]);
        eprintln!(
            "[{:.1}s] kill trial: final backup done",
            t0.elapsed().as_secs_f64()
        );
        self.world.ok(&["verify", "--job", "app"]);
        let last = Census::take(&self.root, self.local);
        assert_eq!(last.committed.len(), after.committed.len() + 1);
        assert_eq!(last.strays, Vec::<String>::new());
        assert_eq!(last.stored_packs, last.referenced);
        eprintln!(
            "[{:.1}s] kill trial: {fig:?}, {:.1} s in all",
            t0.elapsed().as_secs_f64(),
            t0.elapsed().as_secs_f64()
        );
    }
}

fn job_keys() -> &'static str {
    "pack_size = \"1MiB\"\nretention = { keep_last = 1000 }\n"
}

#[test]
fn twenty_killed_backups_leave_only_what_the_markers_reference_on_a_local_target() {
    let seed = seed();
    eprintln!("kill trial (local): seed {seed} (COFFER_KILL_SEED={seed} replays it)");
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("data");
    let world = World::new(&format!("{}{}", job_keys(), dir_source("data", &src, "")));
    Trial {
        root: world.target(),
        world: &world,
        local: true,
        s3: None,
        src,
        rng: Rng(seed),
    }
    .run();
}

#[test]
fn twenty_killed_backups_leave_only_what_the_markers_reference_on_s3() {
    let seed = seed();
    eprintln!("kill trial (s3): seed {seed} (COFFER_KILL_SEED={seed} replays it)");
    let s3 = S3Server::start(&[BUCKET]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("data");
    let world = World::new("");
    let secret = s3.secret_file(tmp.path());
    let target = s3.target_toml("s3", BUCKET, &secret, &format!("prefix = \"{PREFIX}\"\n"));
    world.write_config_with(
        &target,
        &["s3"],
        &format!("{}{}", job_keys(), dir_source("data", &src, "")),
    );
    Trial {
        root: s3.bucket_dir(BUCKET).join(PREFIX),
        world: &world,
        local: false,
        s3: Some(&s3),
        src,
        rng: Rng(seed),
    }
    .run();
}
