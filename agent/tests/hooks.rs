//! Backup hooks: `before` first (a failure means nothing is read), then
//! `on_success` or `on_failure`, then `after` whatever happened, with the job,
//! snapshot and outcome in their environment.

mod common;

use common::*;

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
