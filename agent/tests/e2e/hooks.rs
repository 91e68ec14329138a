//! Backup hooks: `before` first (a failure means nothing is read), then
//! `on_success` or `on_failure`, then `after` whatever happened, with the job,
//! snapshot and outcome in their environment; a timeout kills the hook's whole
//! process group; with JSON logs the hooks' output is JSON log events too.

use crate::common::*;

fn hooks(log: &std::path::Path, before: &str) -> String {
    let line = |what: &str| {
        format!(
            "\"sh -c 'echo {what} $COFFER_JOB $COFFER_OUTCOME >> {}'\"",
            log.display()
        )
    };
    format!(
        "before = [{before}]\nafter = [{}]\non_success = [{}]\non_failure = [{}]\nhook_timeout = \"30s\"\n",
        line("after"),
        line("success"),
        line("failure")
    )
}

#[test]
fn hooks_run_in_order_and_after_runs_after_a_failure() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("f"), b"x").expect("write");
    let log = tmp.path().join("hooks.log");
    let before_ok = format!("\"sh -c 'echo before >> {}'\"", log.display());
    let world = World::new("");
    world.write_config(&format!(
        "{}{}",
        hooks(&log, &before_ok),
        dir_source("data", &data, "")
    ));
    world.ok(&["backup", "app"]);
    assert_eq!(
        std::fs::read_to_string(&log).expect("log"),
        "before\nsuccess app success\nafter app success\n"
    );

    // A failing run: on_failure, then after.
    std::fs::remove_file(&log).expect("rm");
    world.write_config(&format!(
        "{}{}",
        hooks(&log, &before_ok),
        dir_source("data", &tmp.path().join("missing"), "")
    ));
    world.expect(&["backup", "app"], 1);
    assert_eq!(
        std::fs::read_to_string(&log).expect("log"),
        "before\nfailure app failed\nafter app failed\n"
    );

    // A failing before hook: nothing is read, no snapshot, after still runs.
    std::fs::remove_file(&log).expect("rm");
    let n = world.snapshots().len();
    world.write_config(&format!(
        "{}{}",
        hooks(&log, "\"false\""),
        dir_source("data", &data, "")
    ));
    let out = world.run(&["backup", "app"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("before hook `false` failed"));
    assert_eq!(
        std::fs::read_to_string(&log).expect("log"),
        "failure app failed\nafter app failed\n"
    );
    assert_eq!(
        world.snapshots().len(),
        n,
        "a snapshot was taken after a failed before hook"
    );

    // A hook that hangs is killed at its timeout.
    world.write_config(&format!(
        "before = [\"sleep 30\"]\nhook_timeout = \"1s\"\n{}",
        dir_source("data", &data, "")
    ));
    let start = std::time::Instant::now();
    let out = world.run(&["backup", "app"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        start.elapsed().as_secs() < 20,
        "the hook was not killed at its timeout"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("did not finish within"));
}

/// Whether `pid` is a live process (a zombie waiting for its reaper is not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_string())
        })
        .is_some_and(|rest| !rest.starts_with('Z'))
}

#[test]
fn a_hook_timeout_kills_every_process_the_hook_started() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("f"), b"x").expect("write");
    let pidfile = tmp.path().join("background.pid");
    let world = World::new("");
    // The background process lets go of coffer's output, so that coffer's exit
    // does not wait for it: only the kill can end it early.
    world.write_config(&format!(
        "before = [\"sh -c 'sleep 300 >/dev/null 2>&1 & echo $! > {}; wait'\"]\nhook_timeout = \"1s\"\n{}",
        pidfile.display(),
        dir_source("data", &data, "")
    ));
    let out = world.run(&["backup", "app"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did not finish within"));
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .expect("the hook wrote its background pid")
        .trim()
        .parse()
        .expect("a pid");
    let start = std::time::Instant::now();
    while alive(pid) && start.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let survived = alive(pid);
    if survived {
        // Started by this test: do not leave it behind.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(
        !survived,
        "the hook's background process {pid} outlived the hook's timeout"
    );
}

#[test]
fn with_json_logs_hook_output_is_logged_as_json_events() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("f"), b"x").expect("write");
    let world = World::new("");
    world.write_config(&format!(
        "before = [\"sh -c 'echo out-line-1; echo err-line-1 >&2'\"]\n{}",
        dir_source("data", &data, "")
    ));
    let out = world
        .command(&["--log-format", "json", "backup", "app", "--json"])
        .env("COFFER_LOG", "info")
        .output()
        .expect("run coffer");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // stdout is coffer's result alone: the hook's output did not land in it.
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str::<serde_json::Value>(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{stdout}"));
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect();
    let find = |line: &str| {
        events
            .iter()
            .find(|e| e["fields"]["line"] == line)
            .unwrap_or_else(|| panic!("no event for {line}:\n{stderr}"))
    };
    let out_event = find("out-line-1");
    assert_eq!(out_event["fields"]["hook"], "before");
    assert_eq!(out_event["fields"]["stream"], "stdout");
    assert_eq!(out_event["level"], "INFO");
    let err_event = find("err-line-1");
    assert_eq!(err_event["fields"]["stream"], "stderr");
    assert_eq!(err_event["level"], "WARN");
    assert!(
        events
            .iter()
            .any(|e| e["fields"]["message"] == "running hook"
                && e["fields"]["command"] == "sh -c 'echo out-line-1; echo err-line-1 >&2'"),
        "no announce event:\n{stderr}"
    );
}
