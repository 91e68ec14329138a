//! moto's S3 server for the Object Lock tests (installed by tests/run in its own
//! Python environment): unlike s3s-fs it implements versioning and Object Lock,
//! and refuses to delete a locked version. Started on a free loopback port with
//! a lock-enabled bucket, killed when dropped. The tests act as an attacker, or as
//! the bucket's owner, through boto3 from moto's own environment (`python`).

use super::{free_port, require_tool};
use std::process::{Child, Command, Output, Stdio};

pub struct Moto {
    pub port: u16,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

/// moto accepts any keys; these are what the backup host's config holds.
pub const ACCESS_KEY: &str = "backup-host";
pub const SECRET_KEY: &str = "backup-host-secret";

impl Moto {
    /// Starts moto and creates `bucket` with Object Lock enabled (and so versioning).
    pub fn start(bucket: &str) -> Moto {
        require_tool("moto_server");
        let dir = tempfile::tempdir().expect("tempdir");
        for _ in 0..5 {
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("moto.log")).expect("log");
            let child = Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("spawn moto_server (tests/run installs it)");
            if let Some(child) = super::listening(child, port, "moto_server", 30) {
                let m = Moto {
                    port,
                    child: Some(child),
                    _dir: dir,
                };
                m.python_ok(&format!(
                    "s3.create_bucket(Bucket='{bucket}', ObjectLockEnabledForBucket=True)"
                ));
                return m;
            }
        }
        panic!("moto_server did not start");
    }

    /// moto's request log: one line per request, `"PUT /bucket/key?retention ..."`.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("moto.log")).unwrap_or_default()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs `code` with `s3`, a boto3 client of this server holding the backup
    /// host's own credentials, and `json`, `datetime` and `sys` imported.
    pub fn python(&self, code: &str) -> Output {
        require_tool("moto_server");
        // moto_server's own Python (a venv's, or pyenv's shim beside it) has boto3.
        let moto = Command::new("sh")
            .args(["-c", "command -v moto_server"])
            .output()
            .expect("find moto_server");
        let bin = String::from_utf8_lossy(&moto.stdout).trim().to_string();
        let python = std::path::Path::new(&bin).with_file_name("python3");
        let script = format!(
            "import boto3, json, datetime, sys\n\
             s3 = boto3.client('s3', endpoint_url='{}', aws_access_key_id='{ACCESS_KEY}', \
             aws_secret_access_key='{SECRET_KEY}', region_name='us-east-1')\n{code}\n",
            self.endpoint()
        );
        Command::new(python)
            .args(["-c", &script])
            .output()
            .expect("run moto's python3")
    }

    /// `python`, asserting success; its stdout.
    pub fn python_ok(&self, code: &str) -> String {
        let out = self.python(code);
        assert!(
            out.status.success(),
            "python failed:\n{code}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
