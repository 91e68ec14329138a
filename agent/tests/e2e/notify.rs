//! `notify = { start, success, failure }`: the requests reach a real HTTP server on
//! loopback (a small one in this test), in order, with the failure's reason in its
//! body; a monitor that answers 500 or is not there at all costs retries and a
//! warning, never the backup (exit 0); and the URL's secret path is never shown.

use crate::common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    body: String,
}

/// A tiny HTTP/1.1 server: answers every request with `status` and records it.
struct Monitor {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Monitor {
    fn start(status: u16) -> Monitor {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        // Ends with the test process; it holds nothing but the socket.
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                serve(conn, status, &log);
            }
        });
        Monitor { port, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

/// Reads one request, records it, then answers: recorded before the answer, so a
/// coffer that exits once answered never leaves the test reading before the push.
fn serve(conn: TcpStream, status: u16, log: &Mutex<Vec<Seen>>) -> Option<()> {
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    log.lock().expect("lock").push(Seen {
        method,
        path,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let mut conn = conn;
    let _ = write!(
        conn,
        "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nOK"
    );
    Some(())
}

fn notify_toml(start: &str, success: &str, failure: &str) -> String {
    format!(
        "notify = {{ start = \"{start}\", success = \"{success}\", failure = \"{failure}\" }}\n"
    )
}

#[test]
fn a_good_run_sends_start_then_success_and_a_failing_one_start_then_failure_with_the_reason() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("f"), b"hello").expect("write");
    let monitor = Monitor::start(200);
    let world = World::new("");
    let toml = notify_toml(
        &monitor.url("/ping/s3cr3t-uuid/start"),
        &monitor.url("/ping/s3cr3t-uuid"),
        &monitor.url("/ping/s3cr3t-uuid/fail"),
    );
    world.write_config(&format!("{toml}{}", dir_source("data", &data, "")));
    let check = world.ok(&["config", "check"]);
    assert!(check.contains("notify start: http://127.0.0.1"), "{check}");
    assert!(!check.contains("s3cr3t"), "{check}");

    let out = world.run(&["backup", "app"]);
    assert_eq!(out.status.code(), Some(0));
    let seen = monitor.seen();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/ping/s3cr3t-uuid/start", "/ping/s3cr3t-uuid"],
        "{seen:?}"
    );
    assert!(seen.iter().all(|s| s.method == "POST"), "{seen:?}");
    let id = world.snapshots().pop().expect("snapshot");
    assert!(
        seen[1].body.contains(&id) && seen[1].body.contains("; 1 file, "),
        "{seen:?}"
    );

    // A failing run: the reason (the missing directory) is in the failure's body.
    let missing = tmp.path().join("no-such-dir");
    world.write_config(&format!("{toml}{}", dir_source("data", &missing, "")));
    world.expect(&["backup", "app"], 1);
    let seen = monitor.seen();
    let paths: Vec<&str> = seen[2..].iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/ping/s3cr3t-uuid/start", "/ping/s3cr3t-uuid/fail"],
        "{seen:?}"
    );
    let body = &seen[3].body;
    assert!(
        body.contains("FAILED") && body.contains("no-such-dir"),
        "{body}"
    );

    // A dry run sends nothing.
    world.write_config(&format!("{toml}{}", dir_source("data", &data, "")));
    world.ok(&["backup", "--dry-run", "app"]);
    assert_eq!(monitor.seen().len(), 4);

    // A partial run (a second target's disk is not mounted) is a failure to the
    // monitor, with each target's result.
    world.write_config_with(
        &format!(
            "[targets.usb]\ntype = \"local\"\npath = \"{}\"\n",
            tmp.path().join("unmounted").display()
        ),
        &["local", "usb"],
        &format!("{toml}{}", dir_source("data", &data, "")),
    );
    let out = world.run(&["backup", "app"]);
    assert_ne!(out.status.code(), Some(0));
    let seen = monitor.seen();
    let paths: Vec<&str> = seen[4..].iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/ping/s3cr3t-uuid/start", "/ping/s3cr3t-uuid/fail"],
        "{seen:?}"
    );
    let body = &seen[5].body;
    assert!(
        body.contains("PARTIAL")
            && body.contains("target local: committed")
            && body.contains("target usb: FAILED")
            && body.contains("unmounted"),
        "{body}"
    );
}

#[test]
fn a_monitor_that_fails_or_is_not_there_costs_retries_and_a_warning_never_the_backup() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("f"), b"hello").expect("write");
    let world = World::new("");

    let broken = Monitor::start(500);
    let toml = notify_toml(
        &broken.url("/s3cr3t/start"),
        &broken.url("/s3cr3t"),
        &broken.url("/s3cr3t/fail"),
    );
    world.write_config(&format!("{toml}{}", dir_source("data", &data, "")));
    let out = world.run(&["backup", "app"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let seen = broken.seen();
    let count = |p: &str| seen.iter().filter(|s| s.path == p).count();
    assert!(
        count("/s3cr3t/start") >= 2 && count("/s3cr3t") >= 2,
        "no retries: {seen:?}"
    );
    assert_eq!(count("/s3cr3t/fail"), 0, "{seen:?}");
    assert!(
        err.contains("the success notification to http://127.0.0.1"),
        "{err}"
    );
    assert!(err.contains("500"), "{err}");
    assert!(!err.contains("s3cr3t"), "the secret path was shown: {err}");

    // Nobody listens on the port: refused connections, retried, a warning, exit 0.
    let port = free_port();
    let closed = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let toml = notify_toml(
        &closed("/s3cr3t/start"),
        &closed("/s3cr3t"),
        &closed("/s3cr3t/fail"),
    );
    world.write_config(&format!("{toml}{}", dir_source("data", &data, "")));
    let out = world.run(&["backup", "app"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("the start notification") && err.contains("3 attempt(s)"),
        "{err}"
    );
    assert!(err.contains("cannot connect"), "{err}");
    assert!(!err.contains("s3cr3t"), "the secret path was shown: {err}");
    assert_eq!(world.snapshots().len(), 2);
}

#[test]
fn a_notify_url_that_is_not_http_is_a_config_error_naming_the_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let world = World::new("");
    world.write_config(&format!(
        "notify = {{ failure = \"ftp://host/s3cr3t\" }}\n{}",
        dir_source("data", tmp.path(), "")
    ));
    let out = world.run(&["backup", "app"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("jobs.app.notify.failure"), "{err}");
    assert!(!err.contains("s3cr3t"), "{err}");
}

#[test]
fn the_agents_scheduled_runs_notify_too() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("f"), b"hello").expect("write");
    let monitor = Monitor::start(200);
    let port = free_port();
    let world = World::new("");
    let toml = notify_toml(
        &monitor.url("/k/start"),
        &monitor.url("/k"),
        &monitor.url("/k/fail"),
    );
    world.write_config(&format!(
        "schedule = \"*/2 * * * * *\"\n{toml}{}",
        dir_source("data", &data, "")
    ));
    world.listen_on(port);
    let agent = service::Agent::start(&world, port);
    wait_until("a scheduled run's start and success", 30, || {
        let paths: Vec<String> = monitor.seen().into_iter().map(|s| s.path).collect();
        paths.windows(2).any(|w| w[0] == "/k/start" && w[1] == "/k")
    });
    agent.stop();
    assert!(
        monitor.seen().iter().all(|s| s.path != "/k/fail"),
        "{:?}",
        monitor.seen()
    );
}

/// A run stopped by SIGTERM (an ordinary service restart) is neither a success nor
/// a failure: the monitor heard the start and hears nothing more; its own deadline
/// covers a service that stays down. The source's dump program, which writes
/// nothing, gets the SIGTERM passed on.
#[test]
fn a_cancelled_run_sends_its_start_and_no_end() {
    let monitor = Monitor::start(200);
    let world = World::new("");
    let toml = notify_toml(
        &monitor.url("/c/start"),
        &monitor.url("/c"),
        &monitor.url("/c/fail"),
    );
    world.write_config(&format!(
        "{toml}[[jobs.app.sources]]\nname = \"slow\"\ntype = \"command\"\ncommand = [\"sleep\", \"60\"]\n"
    ));
    let mut backup = world
        .command(&["backup", "app"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_until("the start notification", 30, || {
        monitor.seen().iter().any(|s| s.path == "/c/start")
    });
    let killed = sh(&format!("kill -TERM {}", backup.id()));
    assert!(killed.status.success());
    let status = backup.wait().expect("wait");
    let mut err = String::new();
    if let Some(mut e) = backup.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(!status.success(), "a cancelled run exited 0: {err}");
    // The dump was stopped, not waited for: it writes nothing, so only the signal
    // coffer passes on ends it before its minute is up.
    assert!(
        err.contains("source slow: sleep failed") && err.contains("SIGTERM"),
        "{err}"
    );
    assert!(world.snapshots().is_empty(), "{err}");
    // Anything still on its way would have arrived: the notifications are sent
    // before the process exits.
    let paths: Vec<String> = monitor.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/c/start"], "{err}");
}
