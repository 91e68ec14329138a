//! A real S3-compatible server for the tests: `s3s-fs` (installed by tests/run),
//! started on a free loopback port over a temporary directory, with its own
//! credentials, and killed when dropped. Its storage is plain files (objects at
//! `<root>/<bucket>/<key>`, unfinished multipart uploads as `<root>/.upload*`), so a
//! test can look at what the server really holds without going through coffer.

use super::{free_port, require_tool};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct S3Server {
    pub root: tempfile::TempDir,
    pub port: u16,
    pub access_key: String,
    pub secret_key: String,
    child: Option<Child>,
    starts: u32,
}

impl S3Server {
    /// Starts a server holding the given (empty) buckets.
    pub fn start(buckets: &[&str]) -> S3Server {
        require_tool("s3s-fs");
        let root = tempfile::tempdir().expect("tempdir");
        for b in buckets {
            std::fs::create_dir_all(root.path().join(b)).expect("bucket dir");
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mut s = S3Server {
            root,
            port: 0,
            access_key: format!("coffer-test-{}", std::process::id()),
            secret_key: format!("s3cret-{}-{nanos:08x}", std::process::id()),
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
        panic!("s3s-fs did not start; see {}", s.log().display());
    }

    fn log(&self) -> PathBuf {
        self.root
            .path()
            .join(format!(".s3s-fs-{}.log", self.starts))
    }

    /// Starts s3s-fs on `self.port`; false if it exited before accepting connections.
    fn spawn(&mut self) -> bool {
        self.starts += 1;
        let log = std::fs::File::create(self.log()).expect("log file");
        let err = log.try_clone().expect("log file");
        let child = Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--access-key",
                &self.access_key,
                "--secret-key",
                &self.secret_key,
            ])
            .arg(self.root.path())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn s3s-fs (tests/run installs it)");
        self.child = crate::common::listening(child, self.port, "s3s-fs", 20);
        self.child.is_some()
    }

    /// Kills the server without warning (SIGKILL), as a crash or a cut cable would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and storage.
    pub fn restart(&mut self) {
        self.kill();
        for _ in 0..50 {
            if self.spawn() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("s3s-fs did not restart on port {}", self.port);
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Where the server keeps the objects of `bucket`.
    pub fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.root.path().join(bucket)
    }

    /// Files of unfinished (not completed, not aborted) multipart uploads.
    pub fn pending_uploads(&self) -> Vec<String> {
        std::fs::read_dir(self.root.path())
            .expect("read s3s-fs root")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".upload"))
            .collect()
    }

    /// Writes the secret key to a file, for `secret_access_key_file`.
    pub fn secret_file(&self, dir: &Path) -> PathBuf {
        let f = dir.join("s3-secret");
        std::fs::write(&f, format!("{}\n", self.secret_key)).expect("write secret");
        f
    }

    /// A `[targets.NAME]` table for this server with credentials from `secret_file`.
    pub fn target_toml(&self, name: &str, bucket: &str, secret_file: &Path, extra: &str) -> String {
        format!(
            "[targets.{name}]\ntype = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{}\"\nallow_http = true\n\
             access_key_id = \"{}\"\nsecret_access_key_file = \"{}\"\n{extra}\n",
            self.endpoint(),
            self.access_key,
            secret_file.display()
        )
    }

    /// A world whose job `app` backs up folder `data` of the world, as source
    /// `files`, to this server only (target `s3`, bucket `bucket`, prefix `f2`).
    pub fn files_world(&self) -> super::World {
        let world = super::World::new("");
        let secret = self.secret_file(world.dir.path());
        let target = self.target_toml("s3", "bucket", &secret, "prefix = \"f2\"\n");
        world.write_config_with(
            &target,
            &["s3"],
            &super::dir_source("files", &world.path("data"), ""),
        );
        world
    }

    /// The ETag the server gives `key` (for a multipart object: `"<md5>-<parts>"`),
    /// asked over S3 itself rather than through coffer.
    pub fn etag(&self, bucket: &str, key: &str) -> String {
        use object_store::ObjectStoreExt;
        let store = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_access_key_id(&self.access_key)
            .with_secret_access_key(&self.secret_key)
            .build()
            .expect("S3 client");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let meta = rt
            .block_on(store.head(&object_store::path::Path::from(key)))
            .expect("HEAD object");
        meta.e_tag.expect("an ETag")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Asserts two trees hold the same files with the same bytes.
pub fn same_files(a: &Path, b: &Path) {
    let fa = files_under(a);
    assert_eq!(fa, files_under(b), "different file lists");
    for f in fa {
        let (x, y) = (
            std::fs::read(a.join(&f)).expect("read"),
            std::fs::read(b.join(&f)).expect("read"),
        );
        assert!(x == y, "{f} differs");
    }
}

/// Every file under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            e.path()
                .strip_prefix(dir)
                .expect("under dir")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    out.sort();
    out
}
