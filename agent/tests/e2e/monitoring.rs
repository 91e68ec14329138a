//! Monitoring as an operator sets it up on a standard Prometheus: the shipped
//! alert rules pass `promtool check rules` and `promtool test rules` (series as a
//! scrape with `job_name: coffer` labels them, fixtures/alerts-test.yml), a
//! running agent's real /metrics passes `promtool check metrics`, carries the
//! coffer job as `coffer_job` (never `job`, which Prometheus owns), exports the
//! verify metrics of a job that was never verified, and holds every metric the
//! alerts and the Grafana dashboard query.

use crate::common::service::{Agent, http, metric};
use crate::common::*;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn repo_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
}

/// Runs promtool with `args` (and `stdin`); fails the test with its output
/// unless it exits 0.
fn promtool(args: &[&str], stdin: Option<&str>) -> String {
    require_tool("promtool");
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write to promtool");
    }
    let out = child.wait_with_output().expect("promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// The `coffer_*` metric names a PromQL expression reads.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("coffer_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        // `coffer_job` is the label, not a metric.
        if &tail[..end] != "coffer_job" {
            names.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

#[test]
fn the_shipped_alerts_fire_when_they_should() {
    let rules = repo_file("systemd/prometheus-alerts.yml");
    let rules = rules.to_str().expect("utf8 path");
    let out = promtool(&["check", "rules", rules], None);
    assert!(out.contains("SUCCESS"), "{out}");
    let text = std::fs::read_to_string(rules).expect("alert rules");
    assert!(
        !text.contains("$labels.job "),
        "an alert names Prometheus's scrape job instead of the coffer job"
    );
    // Every alert and the expectations of each are in the fixture: which fire,
    // with which labels and text, at which time, and which stay quiet.
    let tests = repo_file("agent/tests/e2e/fixtures/alerts-test.yml");
    let out = promtool(&["test", "rules", tests.to_str().expect("utf8")], None);
    assert!(out.contains("SUCCESS"), "{out}");
    let fixture = std::fs::read_to_string(&tests).expect("fixture");
    for alert in text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            fixture.contains(&format!("alertname: {alert}\n")),
            "alert {alert} has no test in {}",
            tests.display()
        );
    }
}

#[test]
fn a_running_agent_serves_metrics_that_promtool_the_alerts_and_the_dashboard_accept() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("f"), noise(50_000, 7)).expect("write");
    let port = free_port();
    let world = World::new("");
    // app backs up and verifies (deep: the world's identity file exists); idle
    // has no schedule, so it never runs and is never verified.
    world.write_config(&format!(
        "schedule = \"*/2 * * * * *\"\nverify_schedule = \"*/3 * * * * *\"\n{}\n\
         [jobs.idle]\ntargets = [\"local\"]\n\
         [[jobs.idle.sources]]\nname = \"data\"\ntype = \"directory\"\npath = \"{}\"\n",
        dir_source("data", &data, ""),
        data.display()
    ));
    world.listen_on(port);
    let agent = Agent::start(&world, port);
    wait_until("a backup and a deep verify of app", 60, || {
        let (_, m) = http(port, "GET", "/metrics", "");
        metric(
            &m,
            "coffer_backup_runs_total",
            &[("coffer_job", "app"), ("status", "success")],
        )
        .is_some_and(|v| v >= 1.0)
            && metric(
                &m,
                "coffer_verify_last_run_success",
                &[("coffer_job", "app"), ("mode", "deep")],
            ) == Some(1.0)
    });
    let (code, m) = http(port, "GET", "/metrics", "");
    assert_eq!(code, 200);
    // The API says the same: app's last verify found everything, idle has none.
    let (code, api) = http(port, "GET", "/api/v1/jobs", "");
    assert_eq!(code, 200, "{api}");
    let jobs: serde_json::Value = serde_json::from_str(&api).expect("json");
    let job = |name: &str| {
        jobs.as_array()
            .and_then(|a| a.iter().find(|j| j["job"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no job {name} in {api}"))
    };
    assert_eq!(job("app")["last_verify_ok"], true, "{api}");
    assert_eq!(job("app")["last_verify_mode"], "deep", "{api}");
    assert!(job("idle")["last_verify_ok"].is_null(), "{api}");
    assert!(agent.stop().success());

    // promtool lints the real exposition: types, help, names, suffixes.
    let lint = promtool(&["check", "metrics"], Some(&m));
    assert!(lint.trim().is_empty(), "promtool check metrics:\n{lint}");

    let scrape = prometheus_parse::Scrape::parse(m.lines().map(|l| Ok(l.to_string())))
        .expect("valid exposition");
    for s in &scrape.samples {
        assert!(
            s.labels.get("job").is_none(),
            "{} has a `job` label, which Prometheus renames to exported_job",
            s.metric
        );
        if s.metric != "coffer_build_info" {
            assert!(
                s.labels.get("coffer_job").is_some(),
                "{} has no coffer_job label",
                s.metric
            );
        }
    }
    // The job that never ran has both verify series at 0 (the stale-verify alert
    // counts from its first backup), no outcome and no first success.
    for mode in ["deep", "stored"] {
        assert_eq!(
            metric(
                &m,
                "coffer_verify_last_success_timestamp_seconds",
                &[("coffer_job", "idle"), ("mode", mode)]
            ),
            Some(0.0),
            "{m}"
        );
    }
    assert_eq!(
        metric(
            &m,
            "coffer_verify_last_run_success",
            &[("coffer_job", "idle")]
        ),
        None
    );
    assert_eq!(
        metric(
            &m,
            "coffer_backup_first_success_timestamp_seconds",
            &[("coffer_job", "idle")]
        ),
        None
    );
    // app: verified deep after its first success.
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    let first = metric(
        &m,
        "coffer_backup_first_success_timestamp_seconds",
        &[("coffer_job", "app")],
    )
    .expect("app's first success");
    let last = metric(
        &m,
        "coffer_backup_last_success_timestamp_seconds",
        &[("coffer_job", "app")],
    )
    .expect("app's last success");
    let deep = metric(
        &m,
        "coffer_verify_last_success_timestamp_seconds",
        &[("coffer_job", "app"), ("mode", "deep")],
    )
    .expect("app's deep verify");
    assert!(
        first <= last && first <= deep && (now - deep).abs() < 120.0,
        "first {first}, last {last}, deep verify {deep}, now {now}"
    );

    // Every metric the alerts and the dashboard query is served.
    let served: BTreeSet<&str> = scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    let rules = std::fs::read_to_string(repo_file("systemd/prometheus-alerts.yml")).expect("rules");
    let from_rules: BTreeSet<String> = rules
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.contains("summary:"))
        .flat_map(metric_names)
        .collect();
    assert!(from_rules.len() >= 7, "{from_rules:?}");
    for name in &from_rules {
        assert!(
            served.contains(name.as_str()),
            "the alerts query {name}, which /metrics lacks"
        );
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file("systemd/grafana-dashboard.json")).expect("dashboard"),
    )
    .expect("the dashboard is valid JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let ids: BTreeSet<u64> = panels.iter().filter_map(|p| p["id"].as_u64()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are missing or repeated");
    let mut queried = BTreeSet::new();
    for p in panels {
        for t in p["targets"].as_array().expect("targets") {
            let expr = t["expr"].as_str().expect("expr");
            let legend = t["legendFormat"].as_str().expect("legendFormat");
            assert!(
                !legend.contains("{{job}}") && legend.contains("{{coffer_job}}"),
                "panel {}: legend {legend:?} does not name the coffer job",
                p["title"]
            );
            for name in metric_names(expr) {
                assert!(
                    served.contains(name.as_str()),
                    "panel {} queries {name}, which /metrics lacks",
                    p["title"]
                );
                queried.insert(name);
            }
        }
    }
    for verify in [
        "coffer_verify_last_success_timestamp_seconds",
        "coffer_verify_last_run_success",
    ] {
        assert!(
            queried.contains(verify),
            "no dashboard panel shows {verify}"
        );
    }
}
