//! Real WebDAV servers for the tests, each over a temporary directory on a free
//! loopback port with Basic authentication, stopped when dropped: `rclone serve
//! webdav` (Debian's rclone) and Apache's mod_dav (Debian's apache2, with its
//! defaults, which refuse `Depth: infinity` listings), both installed by
//! tests/run. Their storage is plain files, so a test can look at what the server
//! really holds without going through coffer.

use super::servers::chown_to;
use super::{free_port, require_root, require_tool};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct WebdavServer {
    pub root: tempfile::TempDir,
    pub port: u16,
    pub user: String,
    pub password: String,
    child: Option<Child>,
    kind: Kind,
}

enum Kind {
    /// rclone, with its `--bwlimit`, if any: how slowly the server takes a PUT.
    Rclone { limit: Option<String> },
    /// Apache's mod_dav; its workers run as www-data, which owns what it serves.
    Apache,
}

impl WebdavServer {
    pub fn start() -> WebdavServer {
        WebdavServer::start_with(Kind::Rclone { limit: None })
    }

    /// Apache's mod_dav with `DavDepthInfinity` left at its default (off).
    pub fn apache() -> WebdavServer {
        WebdavServer::start_with(Kind::Apache)
    }

    /// A server that takes uploads at no more than `rate` (`--bwlimit`, e.g.
    /// `1M`), so that a test can act while a PUT is under way.
    pub fn start_limited(rate: &str) -> WebdavServer {
        WebdavServer::start_with(Kind::Rclone {
            limit: Some(rate.to_string()),
        })
    }

    fn start_with(kind: Kind) -> WebdavServer {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("dav")).expect("served dir");
        let mut s = WebdavServer {
            root,
            port: 0,
            user: "coffer".to_string(),
            password: format!("dav-{}", std::process::id()),
            child: None,
            kind,
        };
        if matches!(s.kind, Kind::Apache) {
            s.prepare_apache();
        } else {
            require_tool("rclone");
        }
        for _ in 0..5 {
            s.port = free_port();
            let spawned = match &s.kind {
                Kind::Rclone { limit } => s.rclone(limit.clone()),
                Kind::Apache => s.spawn_apache(),
            };
            if spawned {
                return s;
            }
        }
        panic!("the WebDAV server did not start; see {}", s.log().display());
    }

    fn log(&self) -> PathBuf {
        self.root.path().join("server.log")
    }

    /// The password file and the folders Apache's workers (www-data) write to.
    fn prepare_apache(&self) {
        require_root("Apache's workers serve as www-data the files it owns");
        if !Path::new(APACHE).exists() {
            panic!("{APACHE} is missing: run tests/run, which installs apache2");
        }
        require_tool("htpasswd");
        let mut htpasswd = Command::new("htpasswd")
            .args(["-ciB"])
            .arg(self.root.path().join("htpasswd"))
            .arg(&self.user)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn htpasswd (tests/run installs apache2-utils)");
        use std::io::Write;
        htpasswd
            .stdin
            .take()
            .expect("stdin")
            .write_all(self.password.as_bytes())
            .expect("write the password to htpasswd");
        assert!(htpasswd.wait().expect("htpasswd").success());
        std::fs::create_dir_all(self.root.path().join("locks")).expect("lock dir");
        // The temporary directory is root's (0700): the workers need to pass.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(self.root.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod the server's directory");
        for served in ["dav", "locks"] {
            chown_to(&self.root.path().join(served), "www-data");
        }
    }

    fn spawn_apache(&mut self) -> bool {
        let root = self.root.path();
        let modules = "/usr/lib/apache2/modules";
        let load: String = [
            "mpm_event",
            "authn_core",
            "authn_file",
            "authz_core",
            "authz_user",
            "auth_basic",
            "dav",
            "dav_fs",
        ]
        .iter()
        .map(|m| format!("LoadModule {m}_module {modules}/mod_{m}.so\n"))
        .collect();
        let conf = format!(
            "ServerRoot {root}\nServerName 127.0.0.1\nListen 127.0.0.1:{port}\n\
             PidFile {root}/httpd.pid\nErrorLog {log}\nLogLevel warn\n{load}\
             User www-data\nGroup www-data\nDavLockDB {root}/locks/DavLock\n\
             DocumentRoot {root}/dav\n<Directory {root}/dav>\n  Dav On\n  AuthType Basic\n\
               AuthName coffer\n  AuthUserFile {root}/htpasswd\n  Require valid-user\n</Directory>\n",
            root = root.display(),
            port = self.port,
            log = self.log().display(),
        );
        let conf_file = root.join("httpd.conf");
        std::fs::write(&conf_file, conf).expect("write httpd.conf");
        let child = Command::new(APACHE)
            .arg("-f")
            .arg(&conf_file)
            .arg("-DFOREGROUND")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn apache2 (tests/run installs it)");
        self.child = crate::common::listening(child, self.port, "apache2", 20);
        self.child.is_some()
    }

    fn rclone(&mut self, limit: Option<String>) -> bool {
        let log = std::fs::File::create(self.log()).expect("log file");
        let err = log.try_clone().expect("log file");
        let mut cmd = Command::new("rclone");
        if let Some(rate) = &limit {
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
        let dir = self.dir().join(folder);
        std::fs::create_dir_all(&dir).expect("folder");
        if matches!(self.kind, Kind::Apache) {
            chown_to(&dir, "www-data");
        }
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

const APACHE: &str = "/usr/sbin/apache2";

impl Drop for WebdavServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // Apache's parent stops its workers on SIGTERM; killed, it would
            // leave them serving.
            crate::common::servers::stop(&mut c, nix::sys::signal::Signal::SIGTERM);
        }
    }
}
