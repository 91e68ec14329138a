//! The validated configuration that the rest of coffer works from.
//!
//! Paths are absolute (relative ones in the file are resolved against the working
//! directory at load time), names are unique, and references between sections resolve.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this configuration was read from (for messages).
    pub file: PathBuf,
    pub agent: Agent,
    pub encryption: Encryption,
    pub targets: BTreeMap<String, Target>,
    pub jobs: BTreeMap<String, Job>,
    /// Paths the file gave relative, as written: they were resolved against the
    /// directory coffer started in, which for a service is `/` (`config check`
    /// warns about them).
    pub relative_paths: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Agent {
    /// Locks and run status live here.
    pub state_dir: PathBuf,
    /// Where `coffer agent` serves /metrics, /healthz and /api/v1/jobs.
    pub listen: std::net::SocketAddr,
    /// IANA zone for schedules; `None`: the host's local time.
    pub timezone: Option<chrono_tz::Tz>,
    /// Bearer token that enables `POST /api/v1/jobs/{job}/run`, and that every
    /// `/api/v1/*` request needs when `listen` is not a loopback address.
    pub api_token: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct Encryption {
    /// Public recipients (age X25519 or ssh); every object is encrypted to all of them.
    pub recipients: Vec<Recipient>,
    /// Private identity; only restore and deep verify read it.
    pub identity_file: Option<PathBuf>,
    /// Quick-start convenience: create `identity_file` when missing and encrypt to it.
    pub create_identity_if_missing: bool,
    /// This host's ed25519 signing key (private, mode 0600), created by the first
    /// backup when missing; default `state_dir/signing.key`.
    pub signing_key: PathBuf,
    /// Public keys whose snapshots restore, check and deep verify accept, besides
    /// the one of `signing_key` when that file is present.
    pub trusted_signers: Vec<crate::Signer>,
}

/// One public recipient and where it was written, so a later error can point back.
#[derive(Debug, Clone)]
pub struct Recipient {
    /// The key, parsed when the config was loaded.
    pub key: crate::RecipientKey,
    /// As written (trimmed).
    pub text: String,
    /// `file (encryption.recipients[0])` or `recipients-file:line`.
    pub origin: String,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub kind: TargetKind,
    /// `limit_upload`: the most bytes per second written to this target, shared by
    /// every upload to it at once; `None`: as fast as it goes.
    pub limit_upload: Option<u64>,
    /// `prune`: whether this host deletes on the target (retention, a failed
    /// run's leftovers, garbage) or leaves that to another host.
    pub prune: Prune,
}

/// Which host deletes on a target (`prune = "here" | "elsewhere"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Prune {
    /// This host: retention after each run, `coffer prune`, a failed run's
    /// leftovers removed at once.
    #[default]
    Here,
    /// Another host, with other credentials: this one never deletes there (its
    /// credentials may not allow it), so a stolen host cannot erase the history.
    Elsewhere,
}

#[derive(Debug, Clone)]
pub enum TargetKind {
    /// `create`: whether a backup may create `path` when it is missing. Without it
    /// a missing directory is an error, since it usually means a backup disk that
    /// is not mounted, and writing there would fill the filesystem below it.
    Local {
        path: PathBuf,
        create: bool,
    },
    S3(S3Target),
    Azure(crate::AzureTarget),
    Gcs(crate::GcsTarget),
    Webdav(crate::WebdavTarget),
    Sftp(SftpTarget),
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetKind::Local { path, .. } => write!(f, "local {}", path.display()),
            TargetKind::S3(s3) => write!(f, "{s3}"),
            TargetKind::Azure(a) => write!(f, "{a}"),
            TargetKind::Gcs(g) => write!(f, "{g}"),
            TargetKind::Webdav(w) => write!(f, "{w}"),
            TargetKind::Sftp(sftp) => write!(f, "{sftp}"),
        }
    }
}

/// An S3 (or S3-compatible) bucket. Objects go under `<prefix>/<job>/<snapshot-id>/`.
#[derive(Debug, Clone)]
pub struct S3Target {
    pub bucket: String,
    /// Without leading or trailing `/`; `None` stores at the bucket's root.
    pub prefix: Option<String>,
    pub region: String,
    /// For S3-compatible servers (path-style addressing); `None` means AWS.
    pub endpoint: Option<String>,
    /// Plain HTTP to `endpoint` is refused unless this is set.
    pub allow_http: bool,
    /// From the config; `None` means the standard AWS environment variables (or an
    /// instance role) provide them.
    pub credentials: Option<S3Credentials>,
    pub upload: UploadLimits,
    /// Retries of one request (a part, a listing) on transient errors.
    pub max_retries: u32,
    /// No retry starts after this long since the request's first attempt.
    pub retry_timeout: Duration,
    /// Longest one HTTP request (e.g. one part's upload) may take.
    pub request_timeout: Duration,
    /// S3 Object Lock: every object a snapshot references is held until the
    /// snapshot's time plus `days`.
    pub object_lock: Option<ObjectLock>,
}

/// `object_lock = { mode, days }`: how long, and how firmly, S3 keeps what a
/// snapshot references from being deleted or overwritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLock {
    pub mode: LockMode,
    /// Counted from each snapshot's end (the marker's `finished_at`).
    pub days: u32,
}

/// S3's two retention modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Credentials with `s3:BypassGovernanceRetention` may still shorten it or
    /// delete: the bucket owner's way out of a mistake.
    Governance,
    /// No one, not even the account's root user, may shorten it or delete before
    /// it ends.
    Compliance,
}

impl LockMode {
    /// As S3 spells it in requests.
    pub fn as_s3(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }
}

impl fmt::Display for S3Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3 bucket {}", self.bucket)?;
        if let Some(p) = &self.prefix {
            write!(f, " prefix {p}")?;
        }
        match &self.endpoint {
            Some(e) => write!(f, " at {e}"),
            None => write!(f, " in {}", self.region),
        }
    }
}

/// A folder on an SFTP server (an SSH storage box, any OpenSSH server). Objects go
/// under `<path>/<job>/<snapshot-id>/`.
#[derive(Debug, Clone)]
pub struct SftpTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// The folder on the server, `/`-separated, without a trailing `/`: absolute, or
    /// relative to the login folder (`.` for the login folder itself).
    pub path: String,
    /// The private key coffer logs in with (OpenSSH format, no passphrase).
    pub key_file: PathBuf,
    pub host_key: HostKeyPin,
}

/// How the server's host key is known in advance: coffer never trusts a key on
/// first use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyPin {
    /// A known_hosts file (as `ssh-keyscan` writes it) holding the server's keys.
    KnownHosts(PathBuf),
    /// `SHA256:...`, as `ssh-keygen -lf` prints it.
    Fingerprint(String),
}

impl fmt::Display for SftpTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sftp {}@{}", self.user, self.host)?;
        if self.port != 22 {
            write!(f, ":{}", self.port)?;
        }
        write!(f, " path {}", self.path)
    }
}

/// How a multipart upload is cut into parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadLimits {
    /// Size of the first parts; grows so that `max_parts` is never exceeded.
    pub part_size: u64,
    pub max_parts: u32,
    pub parts_in_flight: u32,
}

#[derive(Debug, Clone)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    /// Where the secret was read from, for messages.
    pub secret_file: PathBuf,
}

/// A password or key read from a file or the environment: never shown by `Debug`
/// or `Display`, only by `expose`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }
    /// The secret itself, for the places that hand it to a client library or a
    /// child's environment.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Environment variables that hold credentials whatever the config says: the AWS
/// ones object_store reads, and the client tools' own password variables. No child
/// of coffer (hook, dump program, command source) inherits them.
pub const CREDENTIAL_ENV: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_CLIENT_SECRET",
    "AZURE_STORAGE_CLIENT_SECRET",
    "PGPASSWORD",
    "MYSQL_PWD",
    "REDISCLI_AUTH",
];

/// Names of the variables a loaded config read a secret from (`password_env`),
/// over every config loaded in this process: a reloaded config may drop a name,
/// but the variable is still in coffer's environment and must stay out of children.
static SECRET_ENV: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

pub(crate) fn note_secret_env(name: &str) {
    let mut names = SECRET_ENV.lock().unwrap_or_else(|p| p.into_inner());
    names.insert(name.to_string());
}

/// Every environment variable name that must not reach a child of coffer:
/// [`CREDENTIAL_ENV`] and each `password_env` of the configs loaded so far.
pub fn secret_env_names() -> Vec<String> {
    let names = SECRET_ENV.lock().unwrap_or_else(|p| p.into_inner());
    CREDENTIAL_ENV
        .iter()
        .map(|n| n.to_string())
        .chain(names.iter().cloned())
        .collect()
}

#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    /// Target names, each defined in `targets`.
    pub targets: Vec<String>,
    pub compression: Compression,
    pub sources: Vec<crate::source_types::Source>,
    /// Command lines run in order after a successful restore and check.
    pub after_restore: Vec<crate::HookCommand>,
    pub hooks: Hooks,
    /// URLs told when a run starts, succeeds or fails (a dead man's switch).
    pub notify: crate::Notify,
    /// When `coffer agent` runs the job (cron, seconds field optional).
    pub schedule: Option<crate::Schedule>,
    /// When `coffer agent` verifies the newest snapshot (deep when an identity is configured).
    pub verify_schedule: Option<crate::Schedule>,
    /// A random delay up to this long before each scheduled run.
    pub jitter: std::time::Duration,
    /// Run once at agent start when a scheduled run was missed.
    pub catch_up: bool,
    /// How often `coffer agent` runs a failed job again when a retry could help
    /// (a server or the network was down), `retry_wait` apart.
    pub retries: u32,
    pub retry_wait: std::time::Duration,
    /// Files the database references, compared with a directory source.
    pub check: Option<FileCheck>,
    /// Which snapshots to keep; `None` keeps them all.
    pub retention: Option<Retention>,
    /// Folders of runs that never committed are removed once this old.
    pub incomplete_after: std::time::Duration,
    /// The snapshot format new snapshots are written in: 2 (directories in shared,
    /// deduplicated packs, unchanged files not read again) or 1 (one archive per
    /// source per snapshot).
    pub format: u32,
    /// Format 2: new file contents are gathered into packs of about this size.
    pub pack_size: u64,
    /// Format 2: a pack of which the kept snapshots leave at least this share
    /// unused has its live files stored again by the next backup, so that it can
    /// be deleted once older snapshots are forgotten; 1 never does.
    pub repack_unused: f64,
    /// Format 2: packs each backup reads whole on every target and checks against
    /// what this host wrote, in turn, so damage is found without a verify; 0 never.
    pub recheck_packs: u32,
}

impl Job {
    /// A job without sources: it exists to restore, list, verify and repair what
    /// its targets hold (a new host after the old one is gone), never to back up.
    pub fn restore_only(&self) -> bool {
        self.sources.is_empty()
    }
}

/// One pack (at most `pack_size`) read back per target per backup: damage is found
/// within as many runs as the job has packs, for little traffic.
pub const DEFAULT_RECHECK_PACKS: u32 = 1;

/// The format new snapshots are written in unless a job says `format = 1`.
pub const DEFAULT_FORMAT: u32 = 2;
/// 64 MiB: small enough that a pack holding a few deleted files is cheap to
/// rewrite, large enough that an S3 bucket holds few objects per GiB.
pub const DEFAULT_PACK_SIZE: u64 = 64 << 20;
/// Half a pack unused: rewriting costs at most as much as it frees.
pub const DEFAULT_REPACK_UNUSED: f64 = 0.5;

/// restic's `forget --keep-*` rules: a snapshot kept by any rule stays.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    pub keep_last: u32,
    pub keep_hourly: u32,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
    pub keep_yearly: u32,
    /// Keep everything newer than this, counted back from the latest snapshot.
    pub keep_within: Option<std::time::Duration>,
}

/// `keep last 7, daily 14, within 2 days`: the rules set, as `config check` shows them.
impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rules = [
            ("last", self.keep_last),
            ("hourly", self.keep_hourly),
            ("daily", self.keep_daily),
            ("weekly", self.keep_weekly),
            ("monthly", self.keep_monthly),
            ("yearly", self.keep_yearly),
        ];
        let mut parts: Vec<String> = rules
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(what, n)| format!("{what} {n}"))
            .collect();
        if let Some(w) = self.keep_within {
            parts.push(format!("within {}", crate::units::duration_words(w)));
        }
        write!(f, "keep {}", parts.join(", "))
    }
}

/// Command lines around a backup run. `after` runs whatever happened (a failed
/// `before` included), so `systemctl stop app` / `systemctl start app` pairs are safe.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    pub before: Vec<crate::HookCommand>,
    pub after: Vec<crate::HookCommand>,
    pub on_success: Vec<crate::HookCommand>,
    pub on_failure: Vec<crate::HookCommand>,
    /// Each command is killed after this long.
    pub timeout: std::time::Duration,
}

/// "Every file the database references exists, and every file on disk is referenced."
#[derive(Debug, Clone)]
pub struct FileCheck {
    /// A postgres, mysql or sqlite source of the job: the database to ask.
    pub source: String,
    /// A directory source of the job: what the returned paths are relative to.
    pub files: String,
    /// Returns a path and optionally a size per referenced file.
    pub query: String,
    /// What files nothing references mean.
    pub orphans: Orphans,
}

/// Files on disk that the database does not reference. Many applications write
/// the file before their database commits it (kinto-attachment does), so a failed
/// or in-flight upload leaves one behind: by default a warning, not a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Orphans {
    #[default]
    Warn,
    Fail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    /// zstd level, 1..=19.
    pub level: i32,
    /// zstd worker threads; 0 means one per core.
    pub threads: u32,
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            level: 3,
            threads: 0,
        }
    }
}
