//! A real Azure Blob Storage server for the tests: Azurite's blob service
//! (`azurite-blob`, installed from npm by tests/run), started on a free loopback
//! port over a temporary directory and killed when dropped. Its account and key
//! are the emulator's well-known public development ones. Containers are made
//! with a `Create Container` request signed here with that key (SharedKey), since
//! object_store has no call for it; an account SAS is signed the same way.

use super::{free_port, require_tool};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Azurite's development account and key (public, documented by Microsoft).
pub const ACCOUNT: &str = "devstoreaccount1";
pub const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

pub struct Azurite {
    pub root: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl Azurite {
    /// Starts Azurite holding the given (empty) containers.
    pub fn start(containers: &[&str]) -> Azurite {
        require_tool("azurite-blob");
        let root = tempfile::tempdir().expect("tempdir");
        let mut a = Azurite {
            root,
            port: 0,
            child: None,
        };
        // A free port can be taken between asking for it and binding it: try again.
        for _ in 0..5 {
            a.port = free_port();
            if a.spawn() {
                for c in containers {
                    a.create_container(c);
                }
                return a;
            }
        }
        panic!("azurite-blob did not start; see {}", a.log().display());
    }

    fn log(&self) -> PathBuf {
        self.root.path().join(".azurite.log")
    }

    fn spawn(&mut self) -> bool {
        let log = std::fs::File::create(self.log()).expect("log file");
        let err = log.try_clone().expect("log file");
        let child = Command::new("azurite-blob")
            .args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &self.port.to_string(),
            ])
            .arg("--location")
            .arg(self.root.path().join("data"))
            // No telemetry from a test; object_store may speak a newer API version.
            .args(["--disableTelemetry", "--skipApiVersionCheck", "--silent"])
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn azurite-blob (tests/run installs it)");
        // Node takes longer to start than the other servers.
        self.child = crate::common::listening(child, self.port, "azurite-blob", 30);
        self.child.is_some()
    }

    /// The account's blob endpoint, path-style as Azurite serves it.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// Writes the account key to a file, for `account_key_file`.
    pub fn key_file(&self, dir: &Path) -> PathBuf {
        let f = dir.join("azure-key");
        std::fs::write(&f, format!("{KEY}\n")).expect("write key");
        f
    }

    /// Writes an account SAS (blob service; read, write, delete, list, add,
    /// create on containers and objects; until 2099) to a file, for
    /// `sas_token_file`, with the `?` the portal shows in front of it.
    pub fn sas_file(&self, dir: &Path) -> PathBuf {
        let (version, perms, expiry) = ("2021-08-06", "rwdlac", "2099-01-01T00:00:00Z");
        let to_sign =
            format!("{ACCOUNT}\n{perms}\nb\nsco\n\n{expiry}\n\nhttps,http\n{version}\n\n");
        let sig = sign(&to_sign);
        let encoded: String = sig
            .chars()
            .map(|c| match c {
                '+' => "%2B".to_string(),
                '/' => "%2F".to_string(),
                '=' => "%3D".to_string(),
                c => c.to_string(),
            })
            .collect();
        let token = format!(
            "?sv={version}&ss=b&srt=sco&sp={perms}&se={expiry}&spr=https,http&sig={encoded}"
        );
        let f = dir.join("azure-sas");
        std::fs::write(&f, format!("{token}\n")).expect("write SAS");
        f
    }

    /// A `[targets.NAME]` table for this server with the key from `key_file`.
    pub fn target_toml(&self, name: &str, container: &str, key_file: &Path, extra: &str) -> String {
        format!(
            "[targets.{name}]\ntype = \"azure\"\naccount = \"{ACCOUNT}\"\ncontainer = \"{container}\"\n\
             endpoint = \"{}\"\nallow_http = true\naccount_key_file = \"{}\"\n{extra}\n",
            self.endpoint(),
            key_file.display()
        )
    }

    /// `Create Container`, signed with the development key.
    fn create_container(&self, name: &str) {
        let date = httpdate();
        let version = "2021-08-06";
        // Blob service SharedKey: the verb, eleven empty standard headers (a
        // zero Content-Length is written empty), the x-ms- headers, the resource.
        let to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n\
             /{ACCOUNT}/{ACCOUNT}/{name}\nrestype:container"
        );
        let sig = sign(&to_sign);
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
            .args(["-H", &format!("x-ms-date: {date}")])
            .args(["-H", &format!("x-ms-version: {version}")])
            .args(["-H", "Content-Length: 0"])
            .args(["-H", &format!("Authorization: SharedKey {ACCOUNT}:{sig}")])
            .arg(format!("{}/{name}?restype=container", self.endpoint()))
            .output()
            .expect("run curl");
        let code = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(code, "201", "creating container {name} on Azurite");
    }

    /// The bytes of every file Azurite keeps, uncommitted blocks included: they
    /// grow as an upload's blocks arrive, before any blob lists.
    pub fn stored_bytes(&self) -> u64 {
        walkdir::WalkDir::new(self.root.path().join("data"))
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_file())
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    }

    /// The names of the blobs in `container`, as Azurite lists them (not through
    /// coffer), for a test to see what the server really holds.
    pub fn blobs(&self, container: &str) -> Vec<String> {
        use futures::TryStreamExt;
        let store = object_store::azure::MicrosoftAzureBuilder::new()
            .with_account(ACCOUNT)
            .with_access_key(KEY)
            .with_container_name(container)
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .build()
            .expect("Azure client");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut names: Vec<String> = rt
            .block_on(object_store::ObjectStore::list(&store, None).try_collect::<Vec<_>>())
            .expect("list blobs")
            .into_iter()
            .map(|m| m.location.to_string())
            .collect();
        names.sort();
        names
    }
}

/// HMAC-SHA256 of `text` with the development key, base64 (SharedKey and SAS).
fn sign(text: &str) -> String {
    use base64::Engine;
    use hmac::Mac;
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64.decode(KEY).expect("the development key is base64");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("hmac key");
    mac.update(text.as_bytes());
    b64.encode(mac.finalize().into_bytes())
}

/// Now as an HTTP date (`Mon, 07 Dec 2026 05:00:00 GMT`).
fn httpdate() -> String {
    let out = Command::new("date")
        .args(["-u", "+%a, %d %b %Y %H:%M:%S GMT"])
        .env("LC_ALL", "C")
        .output()
        .expect("run date");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Drop for Azurite {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
