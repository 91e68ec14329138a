//! One SSH connection per SFTP target, opened when the target is opened and
//! shared by every request (russh-sftp keeps several requests in flight on one
//! session). When the connection drops, the request that noticed opens a new one
//! and tries once more; a second failure is the request's.
//!
//! The connection is OpenSSH's client, `ssh -s sftp`, run with no config file,
//! no agent and no password prompts: only `key_file` logs in, and only the
//! pinned host key is accepted (`host_key`). Its stderr is kept to explain a
//! failure (it names no secret; the key is only ever a path).
//!
//! Also what `Target` asks of an SFTP target outside object_store: the staging
//! files of killed uploads, empty folders, folders that are symlinks.

use super::{Failure, host_key, io, paths};
use crate::targets::leftovers::{Leftover, staging_object};
use coffer_config::SftpTarget;
use object_store::path::Path as ObjPath;
use russh_sftp::client::RawSftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{File, StatusCode};
use std::future::Future;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A server that does not answer within this long is not there (retryable).
const CONNECT_TIMEOUT_SECS: u64 = 10;
/// Key exchange, host key check, login and SFTP's start together.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(40);
/// What is kept of ssh's stderr for messages.
const STDERR_KEPT: usize = 16 << 10;
/// One SFTP request (one read or write of at most `CHUNK` bytes, a rename).
const REQUEST_TIMEOUT_SECS: u64 = 120;
/// A connection that stops answering keepalives is closed after about a minute,
/// so that the next request reconnects instead of waiting for TCP.
const KEEPALIVE_SECS: u64 = 15;
/// More names than this in one folder is no folder coffer wrote.
const MAX_NAMES: usize = 1_000_000;

/// An SFTP target's server: its settings and its one connection.
pub(crate) struct Remote {
    cfg: Arc<SftpTarget>,
    /// `sftp user@host path p`, for messages.
    description: String,
    live: Arc<tokio::sync::Mutex<Option<Arc<Live>>>>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

/// A logged-in connection and its SFTP session.
pub(super) struct Live {
    /// `ssh -s sftp`, killed when the connection is dropped.
    ssh: std::sync::Mutex<tokio::process::Child>,
    pub sftp: RawSftpSession,
    /// The known_hosts file written for a fingerprint pin lives as long as ssh.
    _known_hosts: host_key::KnownHosts,
    /// The server renames over an existing file (`posix-rename@openssh.com`);
    /// SFTP's own rename refuses to.
    pub posix_rename: bool,
    /// The server flushes a file to disk on request (`fsync@openssh.com`).
    pub fsync: bool,
}

/// What went wrong in a request: the connection (or reconnecting), or the
/// request itself (the server's answer).
#[derive(Debug)]
pub(super) enum OpError {
    Down(Failure),
    Sftp(SftpError),
}

impl From<SftpError> for OpError {
    fn from(e: SftpError) -> OpError {
        OpError::Sftp(e)
    }
}

impl From<Failure> for OpError {
    fn from(f: Failure) -> OpError {
        OpError::Down(f)
    }
}

impl Remote {
    pub(super) fn new(cfg: SftpTarget, description: String) -> Remote {
        Remote {
            cfg: Arc::new(cfg),
            description,
            live: Arc::new(tokio::sync::Mutex::new(None)),
        }
    }

    pub(super) fn description(&self) -> &str {
        &self.description
    }

    /// The target's folder on the server, as configured.
    pub(super) fn root(&self) -> &str {
        &self.cfg.path
    }

    /// Connects, checks the host key and logs in, blocking this thread.
    pub(super) fn connect_now(&self) -> Result<(), Failure> {
        let (cfg, slot) = (self.cfg.clone(), self.live.clone());
        io::block(async move { live(&cfg, &slot).await.map(|_| ()) })?
    }

    /// Runs `op` on the live connection (on the SFTP runtime); when the
    /// connection was lost under it, once more on a new one.
    pub(super) async fn run<T, F, Fut>(&self, op: F) -> Result<T, OpError>
    where
        F: Fn(Arc<Live>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, OpError>> + Send + 'static,
        T: Send + 'static,
    {
        let (cfg, slot) = (self.cfg.clone(), self.live.clone());
        io::run(async move {
            let first = live(&cfg, &slot).await?;
            match op(first.clone()).await {
                Err(OpError::Sftp(e)) if lost(&first, &e) => {
                    tracing::debug!("SFTP connection to {} lost ({e}); reconnecting", cfg.host);
                    forget(&slot, &first).await;
                    let second = live(&cfg, &slot).await?;
                    op(second).await
                }
                r => r,
            }
        })
        .await?
    }

    /// The live connection, for work that must stay on one session (an upload's
    /// open file handle): no retry on another.
    pub(super) async fn session(&self) -> Result<Arc<Live>, Failure> {
        let (cfg, slot) = (self.cfg.clone(), self.live.clone());
        io::run(async move { live(&cfg, &slot).await }).await?
    }

    fn block_op<T, F, Fut>(&self, what: &str, dir: &ObjPath, op: F) -> std::io::Result<T>
    where
        F: Fn(Arc<Live>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, OpError>> + Send + 'static,
        T: Send + 'static,
    {
        let result = futures::executor::block_on(self.run(op));
        result.map_err(|e| {
            let (kind, detail) = match e {
                OpError::Down(f) => (std::io::ErrorKind::Other, f.message),
                OpError::Sftp(e) => (io_kind(&e), e.to_string()),
            };
            std::io::Error::new(
                kind,
                format!("cannot {what} {dir} on {}: {detail}", self.description),
            )
        })
    }
}

/// The live connection in `slot`, connecting when there is none or it closed.
async fn live(
    cfg: &Arc<SftpTarget>,
    slot: &tokio::sync::Mutex<Option<Arc<Live>>>,
) -> Result<Arc<Live>, Failure> {
    let mut slot = slot.lock().await;
    if let Some(l) = slot.as_ref()
        && !l.is_closed()
    {
        return Ok(l.clone());
    }
    let l = Arc::new(connect(cfg.clone()).await?);
    *slot = Some(l.clone());
    Ok(l)
}

/// Drops `dead` from `slot` unless another request already replaced it.
async fn forget(slot: &tokio::sync::Mutex<Option<Arc<Live>>>, dead: &Arc<Live>) {
    let mut slot = slot.lock().await;
    if slot.as_ref().is_some_and(|l| Arc::ptr_eq(l, dead)) {
        *slot = None;
    }
}

/// Whether `e` means the connection is gone (rather than the server's answer).
fn lost(live: &Live, e: &SftpError) -> bool {
    live.is_closed() || matches!(e, SftpError::IO(_) | SftpError::UnexpectedBehavior(_))
}

/// The status code of an SFTP error, if the server answered with one.
pub(super) fn status(e: &SftpError) -> Option<StatusCode> {
    match e {
        SftpError::Status(s) => Some(s.status_code),
        _ => None,
    }
}

fn io_kind(e: &SftpError) -> std::io::ErrorKind {
    match status(e) {
        Some(StatusCode::NoSuchFile) => std::io::ErrorKind::NotFound,
        Some(StatusCode::PermissionDenied) => std::io::ErrorKind::PermissionDenied,
        _ => std::io::ErrorKind::Other,
    }
}

/// Every name in the folder `path` (`.` and `..` included, as the server sends
/// them; callers filter).
pub(super) async fn read_dir(sftp: &RawSftpSession, path: &str) -> Result<Vec<File>, SftpError> {
    let handle = sftp.opendir(path).await?.handle;
    let mut out = Vec::new();
    let result = loop {
        match sftp.readdir(handle.as_str()).await {
            Ok(name) => {
                out.extend(name.files);
                if out.len() > MAX_NAMES {
                    break Err(SftpError::UnexpectedBehavior(format!(
                        "{path} holds more than {MAX_NAMES} names"
                    )));
                }
            }
            Err(e) if status(&e) == Some(StatusCode::Eof) => break Ok(out),
            Err(e) => break Err(e),
        }
    };
    let _ = sftp.close(handle).await;
    result
}

impl Live {
    /// Whether ssh has exited (the connection is gone).
    fn is_closed(&self) -> bool {
        self.ssh
            .lock()
            .map(|mut c| !matches!(c.try_wait(), Ok(None)))
            .unwrap_or(true)
    }
}

/// Opens a connection: `ssh -s sftp` (key exchange, host key check, login),
/// then the SFTP session over its stdin and stdout.
async fn connect(cfg: Arc<SftpTarget>) -> Result<Live, Failure> {
    let at = host_key::host_port(&cfg);
    if let Err(e) = std::fs::File::open(&cfg.key_file) {
        return Err(Failure::setup(format!(
            "cannot read key_file {}: {e}; check the path and that coffer's user may read it",
            cfg.key_file.display()
        )));
    }
    let known = host_key::known_hosts(&cfg).await?;
    let mut cmd = tokio::process::Command::new("ssh");
    cmd.args(["-F", "/dev/null", "-T", "-x", "-a", "-e", "none"]);
    for option in [
        "BatchMode=yes".to_string(),
        "StrictHostKeyChecking=yes".to_string(),
        format!("UserKnownHostsFile=\"{}\"", known.path.display()),
        "GlobalKnownHostsFile=/dev/null".to_string(),
        "UpdateHostKeys=no".to_string(),
        "IdentitiesOnly=yes".to_string(),
        "IdentityAgent=none".to_string(),
        "PasswordAuthentication=no".to_string(),
        "KbdInteractiveAuthentication=no".to_string(),
        format!("ConnectTimeout={CONNECT_TIMEOUT_SECS}"),
        format!("ServerAliveInterval={KEEPALIVE_SECS}"),
        "ServerAliveCountMax=3".to_string(),
    ]
    .into_iter()
    .chain(
        known
            .algorithms
            .iter()
            .map(|a| format!("HostKeyAlgorithms={a}")),
    ) {
        cmd.arg("-o").arg(option);
    }
    cmd.arg("-i")
        .arg(&cfg.key_file)
        .args(["-p", &cfg.port.to_string(), "-l", &cfg.user, "-s", "--"])
        .arg(&cfg.host)
        .arg("sftp")
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Failure::setup(
                "the ssh client is not installed (Debian: openssh-client); coffer speaks SFTP \
                 through it"
                    .to_string(),
            ));
        }
        Err(e) => return Err(Failure::transient(format!("cannot run ssh: {e}"))),
    };
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(Failure::transient(
            "ssh started without its pipes".to_string(),
        ));
    };
    let said = Arc::new(std::sync::Mutex::new(String::new()));
    tokio::spawn(keep_stderr(stderr, said.clone()));
    let sftp = RawSftpSession::new(tokio::io::join(stdout, stdin));
    sftp.set_timeout(HANDSHAKE_TIMEOUT.as_secs());
    let started = tokio::select! {
        v = sftp.init() => v.map_err(|e| e.to_string()),
        status = child.wait() => Err(match status {
            Ok(s) => format!("ssh exited ({s})"),
            Err(e) => format!("ssh failed: {e}"),
        }),
    };
    let version = match started {
        Ok(v) => v,
        Err(why) => {
            // Let ssh finish writing why it stopped.
            let _ = tokio::time::timeout(Duration::from_secs(3), child.wait()).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            let stderr = said.lock().map(|s| s.clone()).unwrap_or_default();
            return Err(classify(&cfg, &at, &stderr, &why));
        }
    };
    sftp.set_timeout(REQUEST_TIMEOUT_SECS);
    let has = |name: &str| version.extensions.get(name).is_some_and(|v| v == "1");
    Ok(Live {
        posix_rename: has("posix-rename@openssh.com"),
        fsync: has("fsync@openssh.com"),
        ssh: std::sync::Mutex::new(child),
        sftp,
        _known_hosts: known,
    })
}

/// Collects what ssh writes to stderr (the first `STDERR_KEPT` bytes).
async fn keep_stderr(mut stderr: tokio::process::ChildStderr, into: Arc<std::sync::Mutex<String>>) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    while let Ok(n) = stderr.read(&mut buf).await {
        if n == 0 {
            break;
        }
        if let Ok(mut s) = into.lock()
            && s.len() < STDERR_KEPT
        {
            s.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
}

/// Why ssh did not give an SFTP session, from what it wrote to stderr: a host
/// key or login problem is the setup's (no retry helps); a server that cannot
/// be reached is transient.
fn classify(cfg: &SftpTarget, at: &str, stderr: &str, why: &str) -> Failure {
    let said: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("@@@"))
        .collect();
    let has = |s: &str| said.iter().any(|l| l.contains(s));
    let line = |s: &str| {
        said.iter()
            .find(|l| l.contains(s))
            .map(|l| l.to_string())
            .unwrap_or_default()
    };
    if has("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || has("Host key verification failed")
        || has("host key is known")
    {
        let shown = said
            .iter()
            .find(|l| l.starts_with("SHA256:"))
            .map(|f| format!(" (it showed {f})"))
            .unwrap_or_default();
        return Failure::setup(format!(
            "the server at {at} did not show a pinned host key{shown}: coffer did not log in. \
             If the server's key really changed (ask your provider), {}",
            host_key::how_to_pin(cfg)
        ));
    }
    if has("UNPROTECTED PRIVATE KEY FILE") || has("Load key") || has("invalid format") {
        return Failure::setup(format!(
            "ssh cannot use key_file {} ({}); it must be a private key without passphrase, \
             mode 0600: `ssh-keygen -t ed25519 -N '' -f {}`",
            cfg.key_file.display(),
            said.iter()
                .find(|l| l.contains("key") || l.contains("Load"))
                .unwrap_or(&"unusable"),
            cfg.key_file.display()
        ));
    }
    if has("Permission denied") {
        return Failure::setup(format!(
            "{at} refused user {} with the key in {}: add its public half (`ssh-keygen -y -f {}`) \
             to the account's authorized keys, and check user and key_file",
            cfg.user,
            cfg.key_file.display(),
            cfg.key_file.display()
        ));
    }
    if has("subsystem request failed") {
        return Failure::setup(format!("{at} offers no SFTP ({})", line("subsystem")));
    }
    let last = said.last().copied().unwrap_or(why);
    Failure::transient(format!(
        "cannot connect to {at}: {last}; check that the server is up and host and port are right"
    ))
}

/// Like a local directory, the server has real folders and the staging files
/// of killed uploads, which the store's listings hide.
impl crate::targets::leftovers::Staging for Remote {
    /// The staging files of killed uploads in the folder `dir` (regular files
    /// named `<object>#<n>`; none when the folder is missing).
    fn leftovers(&self, dir: &ObjPath) -> std::io::Result<Vec<Leftover>> {
        let Some(remote) = paths::remote(self.root(), dir) else {
            return Ok(Vec::new());
        };
        self.block_op("list", dir, move |live| {
            let remote = remote.clone();
            async move {
                let names = match read_dir(&live.sftp, &remote).await {
                    Err(e) if status(&e) == Some(StatusCode::NoSuchFile) => Vec::new(),
                    r => r?,
                };
                let mut out: Vec<Leftover> = names
                    .into_iter()
                    .filter(|f| f.attrs.is_regular() && paths::plain(&f.filename))
                    .filter_map(|f| {
                        let object = staging_object(&f.filename)?.to_string();
                        Some(Leftover {
                            name: f.filename.clone(),
                            object,
                            size: f.attrs.size.unwrap_or(0),
                            modified: SystemTime::UNIX_EPOCH
                                + Duration::from_secs(u64::from(f.attrs.mtime.unwrap_or(0))),
                        })
                    })
                    .collect();
                out.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(out)
            }
        })
    }

    /// Removes one staging file `leftovers` listed in `dir`, if it still is a
    /// regular file with a staging name. A file already gone is no error.
    fn remove_leftover(&self, dir: &ObjPath, name: &str) -> std::io::Result<()> {
        let remote = match paths::remote(self.root(), dir) {
            Some(r) if staging_object(name).is_some() && paths::plain(name) => {
                format!("{r}/{name}")
            }
            _ => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{name} is no staging file"),
                ));
            }
        };
        self.block_op("remove a staging file in", dir, move |live| {
            let remote = remote.clone();
            async move {
                match live.sftp.lstat(remote.as_str()).await {
                    Ok(a) if a.attrs.is_regular() => {}
                    Ok(_) => return Ok(()),
                    Err(e) if status(&e) == Some(StatusCode::NoSuchFile) => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
                match live.sftp.remove(remote.as_str()).await {
                    Ok(_) => Ok(()),
                    Err(e) if status(&e) == Some(StatusCode::NoSuchFile) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
        })
    }

    /// Removes the folder `dir` if it is empty. Best effort.
    fn remove_empty_folder(&self, dir: &ObjPath) {
        if dir.parts().count() == 0 {
            return;
        }
        let Some(remote) = paths::remote(self.root(), dir) else {
            return;
        };
        let _ = self.block_op("remove the folder", dir, move |live| {
            let remote = remote.clone();
            async move {
                let _ = live.sftp.rmdir(remote.as_str()).await;
                Ok(())
            }
        });
    }

    /// Whether nothing is left at `dir` on the server.
    fn folder_gone(&self, dir: &ObjPath) -> bool {
        let Some(remote) = paths::remote(self.root(), dir) else {
            return true;
        };
        self.block_op("look at", dir, move |live| {
            let remote = remote.clone();
            async move {
                match live.sftp.lstat(remote.as_str()).await {
                    Ok(_) => Ok(false),
                    Err(e) if status(&e) == Some(StatusCode::NoSuchFile) => Ok(true),
                    Err(e) => Err(e.into()),
                }
            }
        })
        .unwrap_or(false)
    }

    /// Fails when a folder on the way to `dir` is a symlink (or no folder): what
    /// a listing shows through it lives elsewhere on the server.
    fn refuse_links(&self, dir: &ObjPath) -> std::io::Result<()> {
        let mut folders = paths::parents(self.root(), &dir.clone().join("x"));
        folders.retain(|f| !f.is_empty());
        let shown = format!("{dir} on {}", self.description);
        let linked = self.block_op("look at", dir, move |live| {
            let folders = folders.clone();
            async move {
                for f in &folders {
                    match live.sftp.lstat(f.as_str()).await {
                        Ok(a) if a.attrs.is_dir() => {}
                        Ok(_) => return Ok(Some(f.clone())),
                        Err(e) if status(&e) == Some(StatusCode::NoSuchFile) => return Ok(None),
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(None)
            }
        })?;
        match linked {
            None => Ok(()),
            Some(f) => Err(std::io::Error::other(format!(
                "{shown}: {f} is not a folder coffer wrote (a symbolic link?): nothing in it is \
                 deleted; look at it and remove it by hand"
            ))),
        }
    }
}
