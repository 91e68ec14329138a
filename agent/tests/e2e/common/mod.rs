//! Shared helpers for the end-to-end tests: they drive the real `coffer` binary
//! against real files, with the real `age`, `zstd` and `tar` where interoperability
//! is the point. A missing tool, server or privilege is a failure that names
//! `tests/run`, never a skip.

pub mod azurite;
pub mod btrfs;
pub mod forge;
pub mod kernel_reads;
pub mod login_hint;
pub mod moto;
pub mod pack_parts;
pub mod packed_job;
pub mod read_gate;
pub mod rss;
pub mod s3;
pub mod servers;
pub mod service;
pub mod sshd;
pub mod uploads;
pub mod webdav;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub fn coffer_bin() -> &'static str {
    env!("CARGO_BIN_EXE_coffer")
}

/// Panics (fails the test) when a tool the test needs is missing.
pub fn require_tool(name: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{name}` is not installed: run tests/run, which installs what the tests need"
    );
}

/// Panics (fails the test) unless running as root; `why` says what needs it.
pub fn require_root(why: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test {why}: run it as root, as tests/run does"
    );
}

/// Panics (fails the test) when a system user the test needs does not exist.
pub fn require_user(name: &str, package: &str) {
    assert!(
        nix::unistd::User::from_name(name).ok().flatten().is_some(),
        "user `{name}` does not exist (the {package} package creates it): run tests/run, which installs what the tests need"
    );
}

/// A loopback port free at the time of asking (another process may take it before
/// it is used: callers that can, try again).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Waits up to `secs` for `child`, a server just spawned, to accept connections on
/// loopback `port`: gives it back then, or `None` (killed) when it exited first or
/// never listened (the caller retries on another port or fails naming its log).
pub fn listening(
    mut child: std::process::Child,
    port: u16,
    what: &str,
    secs: u64,
) -> Option<std::process::Child> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(secs) {
        if child
            .try_wait()
            .unwrap_or_else(|e| panic!("poll {what}: {e}"))
            .is_some()
        {
            return None;
        }
        if std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200))
            .is_ok()
        {
            return Some(child);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Polls `ready` every 100 ms; fails the test after `secs` seconds.
pub fn wait_until(what: &str, secs: u64, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A scratch world: a config, a key pair, a local target and a state dir.
pub struct World {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub identity: PathBuf,
    pub recipient: String,
    /// Environment for every coffer run (on top of the test's, minus AWS credentials).
    pub env: Vec<(String, String)>,
}

impl World {
    /// `sources` is the TOML of the job's sources, e.g. from `dir_source`.
    pub fn new(sources: &str) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let identity = dir.path().join("identity.txt");
        let out = Command::new(coffer_bin())
            .args(["keygen", "--output"])
            .arg(&identity)
            .output()
            .expect("run coffer keygen");
        assert!(
            out.status.success(),
            "keygen failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let recipient = String::from_utf8(out.stdout)
            .expect("utf8")
            .trim()
            .to_string();
        let config = dir.path().join("coffer.toml");
        let w = World {
            config,
            identity,
            recipient,
            dir,
            env: Vec::new(),
        };
        // The tests model a real setup, where the backup disk is there: coffer
        // creates a target's directory only with `create = true` (targets.rs).
        std::fs::create_dir_all(w.target()).expect("create the local target's directory");
        w.write_config(sources);
        w
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn target(&self) -> PathBuf {
        self.path("backups")
    }

    /// Makes the written config's agent listen on `port` of loopback.
    pub fn listen_on(&self, port: u16) {
        let cfg = std::fs::read_to_string(&self.config).expect("config");
        std::fs::write(
            &self.config,
            cfg.replacen(
                "[agent]\n",
                &format!("[agent]\nlisten = \"127.0.0.1:{port}\"\n"),
                1,
            ),
        )
        .expect("config");
    }

    pub fn write_config(&self, sources: &str) {
        self.write_config_with("", &["local"], sources);
    }

    /// A config with the local target plus the `targets` tables given, and job `app`
    /// shipping to `job_targets`.
    pub fn write_config_with(&self, targets: &str, job_targets: &[&str], sources: &str) {
        let names: Vec<String> = job_targets.iter().map(|t| format!("\"{t}\"")).collect();
        let text = format!(
            "[agent]\nstate_dir = \"{state}\"\n\n[encryption]\nrecipients = [\"{r}\"]\nidentity_file = \"{id}\"\n\n\
             [targets.local]\ntype = \"local\"\npath = \"{target}\"\n\n{targets}\n[jobs.app]\ntargets = [{names}]\n\
             compression = {{ level = 3, threads = 2 }}\n\n{sources}\n",
            state = self.path("state").display(),
            r = self.recipient,
            id = self.identity.display(),
            target = self.target().display(),
            names = names.join(", "),
        );
        std::fs::write(&self.config, text).expect("write config");
    }

    /// Restores job `app`'s latest snapshot into a new folder `restored` of the
    /// world (asserting success); that folder.
    pub fn restore_latest(&self) -> PathBuf {
        let to = self.path("restored");
        self.ok(&[
            "restore",
            "--job",
            "app",
            "--to",
            to.to_str().expect("utf-8"),
        ]);
        to
    }

    /// Restores snapshot `id` of job `app` into a new folder `restored-<id>` of
    /// the world (asserting success); that folder.
    pub fn restore_snapshot(&self, id: &str) -> PathBuf {
        let to = self.path(&format!("restored-{id}"));
        self.ok(&[
            "restore",
            "--job",
            "app",
            "--snapshot",
            id,
            "--to",
            to.to_str().expect("utf-8"),
        ]);
        to
    }

    /// Starts coffer with `args` in the background, its output thrown away: a run
    /// for a test to kill.
    pub fn spawn_silent(&self, args: &[&str]) -> std::process::Child {
        self.command(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn coffer")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(coffer_bin());
        c.arg("--config").arg(&self.config).args(args);
        // Only what the test sets: never the credentials of the machine running it.
        for v in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
        ] {
            c.env_remove(v);
        }
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run coffer")
    }

    /// Runs coffer and asserts the exit code; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.expect(args, 0)
    }

    pub fn expect(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "coffer {args:?} exited {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The committed snapshot ids of job `app` (from `list --json`).
    pub fn snapshots(&self) -> Vec<String> {
        self.snapshots_of("app")
    }

    /// The committed snapshot ids of `job` (from `list --json`).
    pub fn snapshots_of(&self, job: &str) -> Vec<String> {
        let out = self.ok(&["list", "--job", job, "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("list json");
        v.as_array()
            .expect("array")
            .iter()
            .map(|s| s["id"].as_str().expect("id").to_string())
            .collect()
    }

    /// Folder of one snapshot on the local target.
    pub fn snapshot_dir(&self, id: &str) -> PathBuf {
        self.target().join("app").join(id)
    }

    pub fn backup(&self) -> String {
        self.ok(&["backup", "app"]);
        self.snapshots().pop().expect("a snapshot after backup")
    }
}

/// Job keys that make the job write format 1 (one archive per source per
/// snapshot), for tests of that format's archives; put before its sources.
pub const FORMAT_1: &str = "format = 1\n";

pub fn dir_source(name: &str, path: &Path, extra: &str) -> String {
    format!(
        "[[jobs.app.sources]]\nname = \"{name}\"\ntype = \"directory\"\npath = \"{}\"\n{extra}\n",
        path.display()
    )
}

/// Deterministic pseudo-random bytes (xorshift), incompressible enough for tests.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn sh(cmd: &str) -> Output {
    let out = Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "`{cmd}` failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
