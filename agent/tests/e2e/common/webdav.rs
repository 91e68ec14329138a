//! A real WebDAV server for the tests: `rclone serve webdav` (Debian's rclone,
//! installed by tests/run) over a temporary directory on a free loopback port,
//! with Basic authentication, killed when dropped. Its storage is plain files, so
//! a test can look at what the server really holds without going through coffer.

use super::{free_port, require_tool};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct WebdavServer {
    pub root: tempfile::TempDir,
    pub port: u16,
    pub user: String,
    pub password: String,
    child: Option<Child>,
    /// rclone's `--bwlimit`, if any: how slowly the server takes a PUT.
    limit: Option<String>,
}

impl WebdavServer {
    pub fn start() -> WebdavServer {
        WebdavServer::start_with(None)
    }

    /// A server that takes uploads at no more than `rate` (`--bwlimit`, e.g.
    /// `1M`), so that a test can act while a PUT is under way.
    pub fn start_limited(rate: &str) -> WebdavServer {
        WebdavServer::start_with(Some(rate.to_string()))
    }

    fn start_with(limit: Option<String>) -> WebdavServer {
        require_tool("rclone");
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("dav")).expect("served dir");
        let mut s = WebdavServer {
            root,
            port: 0,
            user: "coffer".to_string(),
            password: format!("dav-{}", std::process::id()),
            child: None,
            limit,
        };
        for _ in 0..5 {
            s.port = free_port();
            if s.spawn() {
                return s;
            }
        }
        panic!(
            "rclone serve webdav did not start; see {}",
            s.log().display()
        );
    }

    fn log(&self) -> PathBuf {
        self.root.path().join("rclone.log")
    }

    fn spawn(&mut self) -> bool {
        let log = std::fs::File::create(self.log()).expect("log file");
        let err = log.try_clone().expect("log file");
        let mut cmd = Command::new("rclone");
        if let Some(rate) = &self.limit {
            cmd.args(["--bwlimit", rate]);
        }
        let child = cmd
            .args(["serve", "webdav"])
            // What a test changes on the server's disk is served at once.
            .args(["--dir-cache-time", "0s"])
            .arg(self.root.path().join("dav"))
            .args(["--addr", &format!("127.0.0.1:{}", self.port)])
            .args(["--user", &self.user, "--pass", &self.password])
            // Never the machine's own rclone remotes.
            .env("RCLONE_CONFIG", self.root.path().join("rclone.conf"))
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn rclone (tests/run installs it)");
        self.child = crate::common::listening(child, self.port, "rclone", 20);
        self.child.is_some()
    }

    /// The URL of `folder` on the server (made on the server's disk first).
    pub fn url(&self, folder: &str) -> String {
        std::fs::create_dir_all(self.dir().join(folder)).expect("folder");
        format!("http://127.0.0.1:{}/{folder}", self.port)
    }

    /// Where the server keeps what it serves.
    pub fn dir(&self) -> PathBuf {
        self.root.path().join("dav")
    }

    pub fn password_file(&self, dir: &Path) -> PathBuf {
        let f = dir.join("webdav-password");
        std::fs::write(&f, format!("{}\n", self.password)).expect("write password");
        f
    }

    /// A `[targets.NAME]` table for `folder` on this server.
    pub fn target_toml(&self, name: &str, folder: &str, password_file: &Path) -> String {
        format!(
            "[targets.{name}]\ntype = \"webdav\"\nurl = \"{}\"\nallow_http = true\nuser = \"{}\"\n\
             password_file = \"{}\"\n",
            self.url(folder),
            self.user,
            password_file.display()
        )
    }
}

impl Drop for WebdavServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
