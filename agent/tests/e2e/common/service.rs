//! `coffer agent` as a running service for the tests, and plain HTTP/1.1 to it over
//! loopback (no client library: the requests are exactly what the test writes).

use super::World;
use std::io::{Read, Write};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A `coffer agent` on the world's config (its `[agent] listen` must be
/// `127.0.0.1:port`), with the world's environment; stderr goes to `agent.log` in
/// the world. Killed when dropped.
pub struct Agent(Child);

impl Agent {
    /// Starts the agent and waits until it accepts connections on `port`.
    pub fn start(world: &World, port: u16) -> Agent {
        Agent::start_with(world, port, &["agent"])
    }

    /// Starts `coffer <args>` (which must run the agent), logging to agent.log.
    pub fn start_with(world: &World, port: u16, args: &[&str]) -> Agent {
        let child = world
            .command(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(world.path("agent.log")).expect("log"))
            .spawn()
            .expect("start agent");
        let agent = Agent(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the agent did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        agent
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0.id() as i32), sig)
            .expect("signal");
    }

    /// SIGTERM, as systemd stops it; the exit status.
    pub fn stop(mut self) -> ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        loop {
            if let Some(s) = self.0.try_wait().expect("wait") {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the agent did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One request to `127.0.0.1:port` (`extra`: further header lines, each ending in
/// CRLF); the whole answer, status line and headers included.
pub fn http_raw(port: u16, method: &str, path: &str, extra: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}Content-Length: 0\r\n\r\n").expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

/// Like `http_raw`; the status code and the body.
pub fn http(port: u16, method: &str, path: &str, extra: &str) -> (u16, String) {
    let out = http_raw(port, method, path, extra);
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// The value of the first sample of `name` in the exposition `text` that carries
/// every label given.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("valid exposition");
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}
