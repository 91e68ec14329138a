//! A real SFTP server for the tests: Debian's OpenSSH `sshd` (installed by
//! tests/run), started on a free loopback port with its own sshd_config, host key
//! and authorized_keys, and killed when dropped. It serves like a storage box:
//! the login is chrooted (`ChrootDirectory`) and may only speak SFTP
//! (`ForceCommand internal-sftp`); what it stores is plain files under
//! `chroot/`, so a test can look at what the server really holds.
//!
//! sshd refuses a chroot any of whose folders another user may write, which rules
//! out /tmp: the server's folder is made below /var/lib/coffer-e2e-sshd.
//! The login is root's (a key in our own authorized_keys file), so no system
//! user is created; chrooted and SFTP-only, it is the same to coffer.

use super::{free_port, require_root, require_tool};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const SSHD: &str = "/usr/sbin/sshd";

pub struct SshServer {
    /// sshd_config, keys and logs; the chroot below it.
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The client's private key (no passphrase), for `key_file`.
    pub key_file: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl SshServer {
    /// Starts a server whose chroot holds a writable folder `/data`.
    pub fn start() -> SshServer {
        require_root("runs sshd, which needs root for ChrootDirectory");
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is not installed (openssh-server): run tests/run, which installs what the tests need"
        );
        require_tool("ssh-keygen");
        require_tool("ssh-keyscan");
        let base = Path::new("/var/lib/coffer-e2e-sshd");
        std::fs::create_dir_all(base).expect("mkdir the servers' folder");
        std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let dir = tempfile::Builder::new()
            .prefix("sshd-")
            .tempdir_in(base)
            .expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        // sshd's privilege separation folder, which its package makes at boot.
        std::fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd");
        let chroot = dir.path().join("chroot");
        std::fs::create_dir(&chroot).expect("mkdir chroot");
        std::fs::set_permissions(&chroot, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::create_dir(chroot.join("data")).expect("mkdir data");
        keygen(&dir.path().join("host_ed25519"));
        let key_file = dir.path().join("client_ed25519");
        keygen(&key_file);
        std::fs::copy(
            dir.path().join("client_ed25519.pub"),
            dir.path().join("authorized_keys"),
        )
        .expect("authorized_keys");
        let mut s = SshServer {
            dir,
            port: 0,
            key_file,
            child: None,
            starts: 0,
        };
        // A free port can be taken between asking for it and binding it: try again.
        for _ in 0..5 {
            s.port = free_port();
            if s.spawn() {
                return s;
            }
        }
        panic!("sshd did not start; see {}", s.log().display());
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join(format!("sshd-{}.log", self.starts))
    }

    /// The folder the login sees as `/`.
    pub fn chroot(&self) -> PathBuf {
        self.dir.path().join("chroot")
    }

    fn write_config(&self) -> PathBuf {
        let d = self.dir.path().display();
        let cfg = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_ed25519\nPidFile none\n\
             UsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\nAuthorizedKeysFile {d}/authorized_keys\n\
             PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n\
             ForceCommand internal-sftp\nChrootDirectory {d}/chroot\nLogLevel VERBOSE\n",
            port = self.port
        );
        let path = self.dir.path().join("sshd_config");
        std::fs::write(&path, cfg).expect("write sshd_config");
        path
    }

    /// Starts sshd on `self.port`; false if it exited before accepting connections.
    fn spawn(&mut self) -> bool {
        self.starts += 1;
        let cfg = self.write_config();
        let log = std::fs::File::create(self.log()).expect("log file");
        let err = log.try_clone().expect("log file");
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&cfg)
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn sshd (tests/run installs openssh-server)");
        self.child = crate::common::listening(child, self.port, "sshd", 20);
        self.child.is_some()
    }

    /// What sshd logged so far (for a failing test's message).
    pub fn logged(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    /// `ssh-keyscan` of this server into a known_hosts file at `path`.
    pub fn known_hosts(&self, path: &Path) {
        let out = Command::new("ssh-keyscan")
            .args(["-p", &self.port.to_string(), "127.0.0.1"])
            .output()
            .expect("run ssh-keyscan");
        assert!(
            out.status.success() && !out.stdout.is_empty(),
            "ssh-keyscan failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(path, &out.stdout).expect("write known_hosts");
    }

    /// The SHA256 fingerprint of the host key, as `ssh-keygen -lf` prints it.
    pub fn fingerprint(&self) -> String {
        let out = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.dir.path().join("host_ed25519.pub"))
            .output()
            .expect("run ssh-keygen -lf");
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .find(|w| w.starts_with("SHA256:"))
            .unwrap_or_else(|| panic!("no fingerprint in {text}"))
            .to_string()
    }

    /// A `[targets.NAME]` table for this server, storing in the chroot's `/data/<folder>`,
    /// the host key pinned by `pin` (`known_hosts = ...` or `host_key_fingerprint = ...`).
    pub fn target_toml(&self, name: &str, folder: &str, pin: &str) -> String {
        format!(
            "[targets.{name}]\ntype = \"sftp\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"root\"\n\
             path = \"/data/{folder}\"\nkey_file = \"{}\"\n{pin}\n",
            self.port,
            self.key_file.display()
        )
    }

    /// The processes serving the open connections (sshd's children), by pid.
    pub fn sessions(&self) -> Vec<u32> {
        let Some(c) = &self.child else {
            return Vec::new();
        };
        let pid = c.id();
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// Kills every open connection's server side (SIGKILL), the listening sshd
    /// staying up: what a restarted session, a NAT that forgot the connection or
    /// an idle timeout does to a client. Waits until they are gone.
    pub fn drop_sessions(&self) {
        for _ in 0..100 {
            let open = self.sessions();
            if open.is_empty() {
                return;
            }
            for pid in open {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("sshd's sessions did not go");
    }

    /// Kills the server without warning (SIGKILL), as a crash or a cut cable would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "coffer-e2e", "-f"])
        .arg(path)
        .output()
        .expect("run ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
