//! moto's S3 server for the Object Lock and delete-denied tests (installed by
//! tests/run in its own Python environment): unlike s3s-fs it implements
//! versioning and Object Lock, refuses to delete a locked version, and can
//! enforce IAM users' policies. Started on a free loopback port with
//! a bucket, killed when dropped. The tests act as an attacker, or as
//! the bucket's owner, through boto3 from moto's own environment (`python`).

use super::{free_port, require_tool};
use std::process::{Child, Command, Output, Stdio};

pub struct Moto {
    pub port: u16,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

/// An IAM user's access key, as moto made it.
pub struct Keys {
    pub id: String,
    pub secret: String,
}

/// Without IAM enforced, moto accepts any keys; these are what the backup host's config holds.
pub const ACCESS_KEY: &str = "backup-host";
pub const SECRET_KEY: &str = "backup-host-secret";

impl Moto {
    /// Starts moto and creates `bucket` with Object Lock enabled (and so versioning).
    pub fn start(bucket: &str) -> Moto {
        let m = Moto::spawn(None);
        m.python_ok(&format!(
            "s3.create_bucket(Bucket='{bucket}', ObjectLockEnabledForBucket=True)"
        ));
        m
    }

    /// Starts moto with IAM enforced: it creates `bucket` (no lock) and one IAM user
    /// per `(name, policy)` (the policy's JSON uses only strings and lists, so it is
    /// also a Python literal), and from then on checks every request's signature
    /// against the user's key and the action against the user's policy. Returns
    /// each user's keys.
    pub fn start_with_users(bucket: &str, users: &[(&str, &str)]) -> (Moto, Vec<Keys>) {
        // moto answers this many requests without checking them, then checks all:
        // the bucket, and per user its creation, policy and access key.
        let m = Moto::spawn(Some(1 + 3 * users.len()));
        let mut code = format!(
            "iam = boto3.client('iam', endpoint_url='{}', aws_access_key_id='x', \
             aws_secret_access_key='x', region_name='us-east-1')\n\
             s3.create_bucket(Bucket='{bucket}')\nkeys = []\n",
            m.endpoint()
        );
        for (name, policy) in users {
            code.push_str(&format!(
                "iam.create_user(UserName='{name}')\n\
                 iam.put_user_policy(UserName='{name}', PolicyName='coffer', \
                 PolicyDocument=json.dumps({policy}))\n\
                 k = iam.create_access_key(UserName='{name}')['AccessKey']\n\
                 keys.append([k['AccessKeyId'], k['SecretAccessKey']])\n"
            ));
        }
        code.push_str("print(json.dumps(keys))");
        let out = m.python_ok(&code);
        let keys: Vec<(String, String)> = serde_json::from_str(&out).expect("keys json");
        let keys = keys
            .into_iter()
            .map(|(id, secret)| Keys { id, secret })
            .collect();
        (m, keys)
    }

    /// moto_server on a free port; with `checked_after`, IAM is enforced after that
    /// many requests.
    fn spawn(checked_after: Option<usize>) -> Moto {
        require_tool("moto_server");
        let dir = tempfile::tempdir().expect("tempdir");
        for _ in 0..5 {
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("moto.log")).expect("log");
            let mut cmd = Command::new("moto_server");
            if let Some(n) = checked_after {
                cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string());
            }
            let child = cmd
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("spawn moto_server (tests/run installs it)");
            if let Some(child) = super::listening(child, port, "moto_server", 30) {
                return Moto {
                    port,
                    child: Some(child),
                    _dir: dir,
                };
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
        self.python_as(
            &Keys {
                id: ACCESS_KEY.into(),
                secret: SECRET_KEY.into(),
            },
            code,
        )
    }

    /// `python`, with `s3` holding `keys`.
    pub fn python_as(&self, keys: &Keys, code: &str) -> Output {
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
             s3 = boto3.client('s3', endpoint_url='{}', aws_access_key_id='{}', \
             aws_secret_access_key='{}', region_name='us-east-1')\n{code}\n",
            self.endpoint(),
            keys.id,
            keys.secret
        );
        Command::new(python)
            .args(["-c", &script])
            .output()
            .expect("run moto's python3")
    }

    /// `python`, asserting success; its stdout.
    pub fn python_ok(&self, code: &str) -> String {
        succeeded(self.python(code), code)
    }

    /// `python_as`, asserting success; its stdout.
    pub fn python_ok_as(&self, keys: &Keys, code: &str) -> String {
        succeeded(self.python_as(keys, code), code)
    }
}

fn succeeded(out: Output, code: &str) -> String {
    assert!(
        out.status.success(),
        "python failed:\n{code}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
