//! `coffer agent` as a service: schedules with seconds, overlap skipped and
//! counted, /metrics parsed by a Prometheus text parser after a success and a
//! failure, SIGHUP with a broken config keeps the old schedule, SIGTERM mid-run
//! leaves no snapshot and runs `after`, and the unit passes systemd-analyze.
//! Listening beyond loopback warns and puts `/api/v1/*` behind the token.

use crate::common::service::{Agent, http, metric};
use crate::common::*;
use std::process::Command;
use std::time::Duration;

/// Committed snapshots of job app, read from the target (the config may be broken).
fn committed(world: &World) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(world.target().join("app"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().join("snapshot.json").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// Makes the world's agent listen on `port` with the API token in `token`.
fn listen_with_token(world: &World, port: u16, token: &std::path::Path) {
    let cfg = std::fs::read_to_string(&world.config).expect("config");
    let agent = format!(
        "[agent]\nlisten = \"127.0.0.1:{port}\"\napi_token_file = \"{}\"\n",
        token.display()
    );
    std::fs::write(&world.config, cfg.replacen("[agent]\n", &agent, 1)).expect("config");
}

#[test]
fn the_agent_runs_schedules_serves_metrics_and_never_overlaps_a_job() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("f"), noise(100_000, 1)).expect("write");
    let log = tmp.path().join("slow.log");
    let port = free_port();
    let world = World::new("");
    let token = world.path("token");
    std::fs::write(&token, "t0ken-Secret\n").expect("token");
    world.write_config(&format!(
        "schedule = \"*/2 * * * * *\"\nverify_schedule = \"*/3 * * * * *\"\n{}\n\
         [jobs.slow]\ntargets = [\"local\"]\nschedule = \"* * * * * *\"\n\
         before = [\"sh -c 'echo start >> {log}; sleep 2.5'\"]\nafter = [\"sh -c 'echo end >> {log}'\"]\n\
         [[jobs.slow.sources]]\nname = \"data\"\ntype = \"directory\"\npath = \"{data}\"\n\
         [jobs.broken]\ntargets = [\"local\"]\nschedule = \"*/2 * * * * *\"\n\
         [[jobs.broken.sources]]\nname = \"gone\"\ntype = \"directory\"\npath = \"{gone}\"\n",
        dir_source("data", &data, ""),
        log = log.display(),
        data = data.display(),
        gone = tmp.path().join("gone").display()
    ));
    // The agent's listener and API token.
    let cfg = std::fs::read_to_string(&world.config).expect("config");
    std::fs::write(
        &world.config,
        cfg.replacen("[agent]\n", &format!("[agent]\nlisten = \"127.0.0.1:{port}\"\ntimezone = \"UTC\"\napi_token_file = \"{}\"\n", token.display()), 1),
    )
    .expect("config");
    let agent = Agent::start(&world, port);
    wait_until("two scheduled snapshots of app", 30, || {
        world.snapshots().len() >= 2
    });
    wait_until("skipped slow runs", 30, || {
        let (_, m) = http(port, "GET", "/metrics", "");
        metric(&m, "coffer_backup_skipped_total", &[("coffer_job", "slow")]).is_some_and(|v| v >= 1.0)
            && metric(
                &m,
                "coffer_backup_runs_total",
                &[("coffer_job", "broken"), ("status", "failed")],
            )
            .is_some_and(|v| v >= 1.0)
            && metric(
                &m,
                "coffer_backup_runs_total",
                &[("coffer_job", "slow"), ("status", "success")],
            )
            .is_some_and(|v| v >= 1.0)
            // A snapshot is listed once its marker is written; the run is counted
            // only when it has finished (retention, status, hooks), a moment later.
            && metric(
                &m,
                "coffer_backup_runs_total",
                &[("coffer_job", "app"), ("status", "success")],
            )
            .is_some_and(|v| v >= 2.0)
    });
    let (code, m) = http(port, "GET", "/metrics", "");
    assert_eq!(code, 200);
    let last = metric(
        &m,
        "coffer_backup_last_success_timestamp_seconds",
        &[("coffer_job", "app")],
    )
    .expect("last success");
    assert!((time::OffsetDateTime::now_utc().unix_timestamp() as f64 - last).abs() < 60.0);
    assert_eq!(
        metric(
            &m,
            "coffer_backup_last_run_success",
            &[("coffer_job", "broken")]
        ),
        Some(0.0),
        "{m}"
    );
    assert!(
        metric(
            &m,
            "coffer_backup_last_success_timestamp_seconds",
            &[("coffer_job", "broken")]
        )
        .is_none()
    );
    assert!(
        metric(
            &m,
            "coffer_backup_bytes_read_total",
            &[("coffer_job", "app"), ("source", "data")]
        )
        .is_some_and(|v| v >= 100_000.0)
    );
    assert!(
        metric(
            &m,
            "coffer_backup_bytes_stored_total",
            &[("coffer_job", "app"), ("target", "local")]
        )
        .is_some_and(|v| v > 0.0)
    );
    assert_eq!(
        metric(
            &m,
            "coffer_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert!(
        !m.contains("snapshot=") && !m.contains(data.to_str().expect("utf8")),
        "a snapshot id or path in a label"
    );

    let (code, body) = http(port, "GET", "/healthz", "");
    assert_eq!((code, body.trim()), (200, "ok"));
    let (code, body) = http(port, "GET", "/api/v1/jobs", "");
    assert_eq!(code, 200);
    let jobs: serde_json::Value = serde_json::from_str(&body).expect("json");
    let app = jobs
        .as_array()
        .expect("array")
        .iter()
        .find(|j| j["job"] == "app")
        .expect("app");
    assert!(app["next_run"].as_str().is_some(), "{app}");
    assert_eq!(app["last_outcome"], "success");
    let (code, _) = http(port, "POST", "/api/v1/jobs/app/run", "");
    assert_eq!(code, 401, "a run without the token");
    let (code, _) = http(
        port,
        "POST",
        "/api/v1/jobs/nope/run",
        "Authorization: Bearer t0ken-Secret\r\n",
    );
    assert_eq!(code, 404);

    assert!(
        agent.stop().success(),
        "SIGTERM must end the agent with status 0"
    );
    // slow never overlapped itself: starts and ends alternate.
    let lines = std::fs::read_to_string(&log).expect("slow log");
    let lines: Vec<&str> = lines.lines().collect();
    for pair in lines.chunks(2) {
        assert_eq!(pair[0], "start", "{lines:?}");
        if pair.len() == 2 {
            assert_eq!(pair[1], "end", "{lines:?}");
        }
    }
}

/// The names in a folder, sorted; none when it does not exist.
fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn sighup_with_a_broken_config_keeps_the_old_schedule_and_sigterm_cancels_a_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("f"), b"x").expect("write");
    let port = free_port();
    let world = World::new("");
    let after = tmp.path().join("after.log");
    let config = |schedule: &str, source: &std::path::Path| {
        format!(
            "schedule = \"{schedule}\"\nafter = [\"sh -c 'echo after $COFFER_OUTCOME >> {}'\"]\n{}",
            after.display(),
            dir_source("data", source, "")
        )
    };
    world.write_config(&config("* * * * * *", &data));
    let cfg = std::fs::read_to_string(&world.config).expect("config");
    let with_port = |c: String| {
        c.replacen(
            "[agent]\n",
            &format!("[agent]\nlisten = \"127.0.0.1:{port}\"\n"),
            1,
        )
    };
    std::fs::write(&world.config, with_port(cfg)).expect("config");
    let agent = Agent::start(&world, port);
    wait_until("a first snapshot", 30, || !committed(&world).is_empty());

    std::fs::write(&world.config, "[jobs.app]\ntargets = [\"nowhere\"]\n")
        .expect("break the config");
    agent.signal(nix::sys::signal::Signal::SIGHUP);
    let n = committed(&world).len();
    wait_until("snapshots after the broken reload", 30, || {
        committed(&world).len() >= n + 2
    });
    let log = std::fs::read_to_string(world.path("agent.log")).expect("log");
    assert!(log.contains("kept the previous config"), "{log}");

    // A valid reload to a job that takes long: SIGTERM while it runs.
    let big = tmp.path().join("big");
    std::fs::create_dir_all(&big).expect("mkdir");
    std::fs::File::create(big.join("sparse"))
        .expect("create")
        .set_len(60 << 30)
        .expect("sparse");
    world.write_config(&config("* * * * * *", &big));
    let cfg = std::fs::read_to_string(&world.config).expect("config");
    std::fs::write(&world.config, with_port(cfg)).expect("config");
    let before = committed(&world);
    // Format 2: the earlier runs' packs; the long run writes into this folder first.
    let packs_before = names_in(&world.target().join("app/packs"));
    std::fs::write(&after, "").expect("reset");
    agent.signal(nix::sys::signal::Signal::SIGHUP);
    wait_until("the long run to start writing", 30, || {
        names_in(&world.target().join("app"))
            .iter()
            .any(|n| n != "packs" && !before.contains(n))
            || names_in(&world.target().join("app/packs")) != packs_before
    });
    std::thread::sleep(Duration::from_millis(300));
    let status = agent.stop();
    assert!(status.success(), "{status:?}");
    assert_eq!(
        committed(&world),
        before,
        "a cancelled run committed a snapshot"
    );
    let leftovers: Vec<_> = std::fs::read_dir(world.target().join("app"))
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "packs" && !before.contains(n))
        .collect();
    assert_eq!(
        names_in(&world.target().join("app/packs")),
        packs_before,
        "the cancelled run left packs (or the staging files of their uploads)"
    );
    let inside: Vec<_> = leftovers
        .iter()
        .flat_map(|l| {
            std::fs::read_dir(world.target().join("app").join(l))
                .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
                .unwrap_or_default()
        })
        .collect();
    assert!(
        leftovers.is_empty(),
        "the cancelled run left {leftovers:?} holding {inside:?}"
    );
    assert!(
        std::fs::read_to_string(&after)
            .expect("after")
            .contains("after cancelled"),
        "after hook not run"
    );
}

#[test]
fn the_systemd_unit_verifies() {
    require_tool("systemd-analyze");
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../systemd/coffer.service"
    ))
    .expect("unit");
    // systemd refuses to start a unit whose ReadWritePaths= names a missing path
    // (226/NAMESPACE) unless it is prefixed with `-`; `systemd-analyze verify` does
    // not check that, so the prefix is asserted here: an S3-only host has no
    // /mnt/backups.
    let rw: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ReadWritePaths="))
        .flat_map(str::split_whitespace)
        .collect();
    assert!(!rw.is_empty(), "the unit has no ReadWritePaths=");
    for path in &rw {
        assert!(
            path.starts_with('-'),
            "ReadWritePaths={path} lacks the `-` prefix: the unit fails on a host without it"
        );
    }
    let unit = unit.replace("/usr/local/bin/coffer", coffer_bin());
    let path = dir.path().join("coffer.service");
    std::fs::write(&path, unit).expect("write");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn catch_up_runs_a_missed_schedule_and_the_api_starts_runs_with_the_token() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("f"), b"x").expect("write");
    let port = free_port();
    let world = World::new("");
    let token = world.path("token");
    std::fs::write(&token, "s3cr3t-token\n").expect("token");
    // Once a year: the last due time has passed and no run ever succeeded.
    world.write_config(&format!(
        "schedule = \"0 0 1 1 *\"\ncatch_up = true\n{}",
        dir_source("data", &data, "")
    ));
    listen_with_token(&world, port, &token);
    let agent = Agent::start(&world, port);
    wait_until("the catch-up run", 30, || committed(&world).len() == 1);
    let (code, _) = http(
        port,
        "POST",
        "/api/v1/jobs/app/run",
        "Authorization: Bearer wrong\r\n",
    );
    assert_eq!(code, 401);
    assert_eq!(committed(&world).len(), 1);
    std::thread::sleep(Duration::from_millis(1100)); // ids have one-second resolution
    let (code, _) = http(
        port,
        "POST",
        "/api/v1/jobs/app/run",
        "Authorization: Bearer s3cr3t-token\r\n",
    );
    assert_eq!(code, 202);
    wait_until("the requested run", 30, || committed(&world).len() == 2);
    assert!(agent.stop().success());
}

#[test]
fn beyond_loopback_the_agent_warns_and_its_api_needs_the_token() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("f"), b"x").expect("write");
    let world = World::new("");
    world.write_config(&dir_source("data", &data, ""));
    let plain = std::fs::read_to_string(&world.config).expect("config");
    let listen_on = |port: u16, token: Option<&std::path::Path>| {
        let token = token
            .map(|t| format!("api_token_file = \"{}\"\n", t.display()))
            .unwrap_or_default();
        std::fs::write(
            &world.config,
            plain.replacen(
                "[agent]\n",
                &format!("[agent]\nlisten = \"0.0.0.0:{port}\"\n{token}"),
                1,
            ),
        )
        .expect("config");
    };

    // No token: config check warns, the agent starts and warns, the API refuses.
    let port = free_port();
    listen_on(port, None);
    let out = world.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not a loopback address") && err.contains("refuses every request"),
        "{err}"
    );
    let agent = Agent::start(&world, port);
    assert_eq!(http(port, "GET", "/api/v1/jobs", "").0, 403);
    assert_eq!(
        http(
            port,
            "GET",
            "/api/v1/jobs",
            "Authorization: Bearer anything\r\n"
        )
        .0,
        403
    );
    assert_eq!(http(port, "POST", "/api/v1/jobs/app/run", "").0, 403);
    assert_eq!(http(port, "GET", "/metrics", "").0, 200);
    assert_eq!(http(port, "GET", "/healthz", "").0, 200);
    wait_until("the start warning", 10, || {
        std::fs::read_to_string(world.path("agent.log"))
            .is_ok_and(|l| l.contains("is not a loopback address"))
    });
    assert!(agent.stop().success());

    // With a token: the API answers only with it.
    let token = world.path("token");
    std::fs::write(&token, "beyond-Loopback-t0ken\n").expect("token");
    let port = free_port();
    listen_on(port, Some(&token));
    let out = world.run(&["config", "check"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("requires the bearer token"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let agent = Agent::start(&world, port);
    assert_eq!(http(port, "GET", "/api/v1/jobs", "").0, 401);
    for wrong in ["beyond-Loopback-t0ke", "beyond-Loopback-t0kenX", ""] {
        let (code, _) = http(
            port,
            "GET",
            "/api/v1/jobs",
            &format!("Authorization: Bearer {wrong}\r\n"),
        );
        assert_eq!(code, 401, "token {wrong:?}");
    }
    let (code, body) = http(
        port,
        "GET",
        "/api/v1/jobs",
        "Authorization: Bearer beyond-Loopback-t0ken\r\n",
    );
    assert_eq!(code, 200, "{body}");
    let jobs: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(jobs[0]["job"], "app");
    assert_eq!(http(port, "GET", "/metrics", "").0, 200);
    assert!(agent.stop().success());
}

/// A run that failed because its database was down is run again after
/// `retry_wait`, at most `retries` times; one that failed on something a retry
/// cannot fix (a source path that does not exist) is not.
#[test]
fn the_agent_retries_a_failure_that_may_pass_and_only_that() {
    let port = free_port();
    // Port 1 on loopback: nothing listens there, so the connection is refused
    // (a free port from free_port() could be taken by a parallel test's server).
    let closed = 1;
    let world = World::new("");
    let token = world.path("token");
    std::fs::write(&token, "s3cr3t-token\n").expect("token");
    let gone = world.path("gone");
    world.write_config(&format!(
        "retries = 1\nretry_wait = \"1s\"\n\
         [[jobs.app.sources]]\nname = \"db\"\ntype = \"postgres\"\nurl = \"postgres://coffer@127.0.0.1:{closed}/app\"\n\n\
         [jobs.gone]\ntargets = [\"local\"]\nretries = 1\nretry_wait = \"1s\"\n\
         [[jobs.gone.sources]]\nname = \"data\"\ntype = \"directory\"\npath = \"{}\"\n",
        gone.display()
    ));
    listen_with_token(&world, port, &token);
    let agent = Agent::start(&world, port);
    let auth = "Authorization: Bearer s3cr3t-token\r\n";
    assert_eq!(http(port, "POST", "/api/v1/jobs/app/run", auth).0, 202);
    assert_eq!(http(port, "POST", "/api/v1/jobs/gone/run", auth).0, 202);
    let failed = |job: &str| {
        metric(
            &http(port, "GET", "/metrics", "").1,
            "coffer_backup_runs_total",
            &[("coffer_job", job), ("status", "failed")],
        )
        .unwrap_or(0.0)
    };
    let start = std::time::Instant::now();
    while failed("app") < 2.0 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no retry of job app; the agent said:\n{}",
            std::fs::read_to_string(world.path("agent.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_until("the run of job gone", 30, || failed("gone") >= 1.0);
    // Three more retry_waits: a second retry, or a retry of gone, would be counted.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(failed("app"), 2.0, "retries = 1 means one retry");
    assert_eq!(failed("gone"), 1.0, "a missing path is not worth a retry");
    assert!(agent.stop().success());
    let log = std::fs::read_to_string(world.path("agent.log")).expect("log");
    assert!(
        log.contains("running the job again in 1s (retry 1 of 1)"),
        "{log}"
    );
}

/// A run whose local target directory is missing (a disk not mounted yet) fails
/// with the advice and creates nothing; it is retried, and the retry succeeds
/// once the disk is there.
#[test]
fn the_agent_retries_a_run_whose_backup_disk_was_not_mounted() {
    let port = free_port();
    let data = tempfile::tempdir().expect("tempdir");
    std::fs::write(data.path().join("f"), b"x").expect("write");
    let world = World::new("");
    world.write_config(&format!(
        "retries = 1\nretry_wait = \"3s\"\n{}",
        dir_source("data", data.path(), "")
    ));
    std::fs::remove_dir(world.target()).expect("unmount the disk");
    let token = world.path("token");
    std::fs::write(&token, "s3cr3t-token\n").expect("token");
    listen_with_token(&world, port, &token);
    let agent = Agent::start(&world, port);
    let auth = "Authorization: Bearer s3cr3t-token\r\n";
    assert_eq!(http(port, "POST", "/api/v1/jobs/app/run", auth).0, 202);
    let runs = |status: &str| {
        metric(
            &http(port, "GET", "/metrics", "").1,
            "coffer_backup_runs_total",
            &[("coffer_job", "app"), ("status", status)],
        )
        .unwrap_or(0.0)
    };
    wait_until("the first run to fail", 30, || runs("failed") >= 1.0);
    assert!(
        !world.target().exists(),
        "the failed run created the target"
    );
    std::fs::create_dir(world.target()).expect("mount the disk");
    wait_until("the retry to succeed", 30, || runs("success") >= 1.0);
    assert_eq!(runs("failed"), 1.0);
    assert_eq!(committed(&world).len(), 1);
    assert!(agent.stop().success());
    let log = std::fs::read_to_string(world.path("agent.log")).expect("log");
    assert!(
        log.contains("does not exist; is the backup disk mounted?")
            && log.contains("running the job again in 3s (retry 1 of 1)"),
        "{log}"
    );
}

/// The log takes the form the operator chose all the way to the stop (every line
/// JSON with `--log-format json`, the stop notice included), and carries no
/// colour codes under systemd, whose journal shows them as blobs.
#[test]
fn the_log_keeps_its_format_through_a_stop_and_has_no_colour_in_the_journal() {
    let port = free_port();
    let data = tempfile::tempdir().expect("tempdir");
    std::fs::write(data.path().join("f"), b"x").expect("write");
    let world = World::new("");
    world.write_config(&dir_source("data", data.path(), ""));
    world.listen_on(port);
    let agent = Agent::start_with(&world, port, &["--log-format", "json", "agent"]);
    assert!(agent.stop().success());
    let log = std::fs::read_to_string(world.path("agent.log")).expect("log");
    assert!(log.contains("stopping"), "{log}");
    assert!(
        log.contains("no schedule"),
        "the unscheduled job is named: {log}"
    );
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not a JSON line: {line}"
        );
    }
    // The first backup warns (it creates the signing key): through the journal.
    let out = world
        .command(&["backup", "app"])
        .env("JOURNAL_STREAM", "8:123456")
        .output()
        .expect("backup");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("WARN"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "colour codes in the journal: {err:?}"
    );
}
