//! Real database servers for the tests: PostgreSQL, MariaDB and Redis, each started
//! on a free loopback port in its own temporary directory and stopped on drop.
//! A missing server or client binary, a missing system user or not running as root
//! fails the test and names `tests/run`.

use super::{free_port, require_root, require_tool, require_user, wait_until};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn need(path: &Path) {
    assert!(
        path.exists(),
        "{} is not installed: run tests/run, which installs the database servers",
        path.display()
    );
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (tests/run installs what the tests need)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `chown -R user:user path`.
pub fn chown_to(path: &Path, user: &str) {
    run(Command::new("chown")
        .arg("-R")
        .arg(format!("{user}:{user}"))
        .arg(path));
}

/// Stops a server the way it shuts down cleanly (`signal`), waiting up to 20 s
/// before killing it.
pub fn stop(child: &mut Child, signal: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

pub struct Postgres {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub password: String,
    bin: PathBuf,
    child: Option<Child>,
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| {
                d.flatten()
                    .map(|e| e.path().join("bin"))
                    .filter(|p| p.join("postgres").exists())
                    .max()
            })
            .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/NONE/bin"));
        need(&bin.join("postgres"));
        require_root("starts PostgreSQL as its own system user");
        require_user("postgres", "postgresql");
        for tool in ["setpriv", "pg_isready", "psql"] {
            require_tool(tool);
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let password = "pg-secret-Xq7".to_string();
        std::fs::write(dir.path().join("pw"), &password).expect("pwfile");
        chown_to(dir.path(), "postgres");
        let data = dir.path().join("data");
        run(Command::new("setpriv")
            .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
            .arg(bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=scram-sha-256", "--no-sync"])
            .arg(format!("--pwfile={}", dir.path().join("pw").display())));
        let mut pg = Postgres {
            port: free_port(),
            password,
            bin,
            child: None,
            dir,
        };
        pg.launch();
        pg
    }

    fn launch(&mut self) {
        let child = Command::new("setpriv")
            .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
            .arg(self.bin.join("postgres"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        let port = self.port;
        wait_until("postgres to start", 60, || {
            Command::new("pg_isready")
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        });
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs SQL with psql as the superuser; returns stdout (unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
            ])
            .args(["-p", &self.port.to_string(), "-d", db, "-c", sql])
            .env("PGPASSWORD", &self.password)
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Kills the server without a clean shutdown.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c, nix::sys::signal::Signal::SIGINT);
        }
    }
}

pub struct Mariadb {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub password: String,
    child: Option<Child>,
}

impl Mariadb {
    pub fn start() -> Mariadb {
        need(Path::new("/usr/sbin/mariadbd"));
        require_root("starts MariaDB as its own system user");
        require_user("mysql", "mariadb-server");
        for tool in ["mariadb-install-db", "mariadb"] {
            require_tool(tool);
        }
        let dir = tempfile::tempdir().expect("tempdir");
        chown_to(dir.path(), "mysql");
        let data = dir.path().join("data");
        run(Command::new("mariadb-install-db")
            .args([
                "--no-defaults",
                "--user=mysql",
                "--skip-test-db",
                "--auth-root-authentication-method=socket",
            ])
            .arg(format!("--datadir={}", data.display())));
        let port = free_port();
        let sock = dir.path().join("sock");
        let child = Command::new("/usr/sbin/mariadbd")
            .args([
                "--no-defaults",
                "--user=mysql",
                "--bind-address=127.0.0.1",
                "--skip-log-bin",
            ])
            .args([
                "--innodb-buffer-pool-size=32M",
                "--innodb-flush-log-at-trx-commit=0",
            ])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", sock.display()))
            .arg(format!("--port={port}"))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mariadbd");
        let m = Mariadb {
            dir,
            port,
            password: "maria-secret-Zk9".into(),
            child: Some(child),
        };
        wait_until("mariadb to start", 60, || m.root_sql("SELECT 1").is_ok());
        m.root_sql(&format!(
            "CREATE USER 'coffer'@'127.0.0.1' IDENTIFIED BY '{}'; GRANT ALL ON *.* TO 'coffer'@'127.0.0.1';",
            m.password
        ))
        .expect("create user");
        m
    }

    /// SQL as root over the socket.
    pub fn root_sql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new("mariadb")
            .args(["--no-defaults", "-uroot", "-N", "-B"])
            .arg(format!(
                "--socket={}",
                self.dir.path().join("sock").display()
            ))
            .args(["-e", sql])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    pub fn url(&self, db: &str) -> String {
        format!("mysql://coffer@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c, nix::sys::signal::Signal::SIGINT);
        }
    }
}

pub struct Redis {
    /// The server's --dir (its RDB), removed when dropped.
    _dir: tempfile::TempDir,
    pub port: u16,
    pub password: String,
    child: Option<Child>,
}

impl Redis {
    /// A server whose RDB lives in its temp dir; `rdb` preloads one.
    pub fn start(rdb: Option<&Path>) -> Redis {
        need(Path::new("/usr/bin/redis-server"));
        require_tool("redis-cli");
        let dir = tempfile::tempdir().expect("tempdir");
        if let Some(r) = rdb {
            std::fs::copy(r, dir.path().join("dump.rdb")).expect("copy rdb");
        }
        let port = free_port();
        let password = "redis-secret-Pw3".to_string();
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args([
                "--dbfilename",
                "dump.rdb",
                "--requirepass",
                &password,
                "--daemonize",
                "no",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let r = Redis {
            _dir: dir,
            port,
            password,
            child: Some(child),
        };
        wait_until("redis to start", 60, || {
            r.cli(&["PING"]).is_ok_and(|o| o == "PONG")
        });
        r
    }

    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("redis-cli")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "--no-auth-warning",
                "-a",
                &self.password,
            ])
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c, nix::sys::signal::Signal::SIGINT);
        }
    }
}
