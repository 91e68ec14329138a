//! Forging snapshots as an attacker with write access to a target would: the age
//! recipients are public, so new objects, a new manifest and a new marker can all be
//! made without any private key. (The tests read the real manifest with the identity
//! only to start from something realistic.) Objects go through the real `zstd` and
//! `age` CLIs; markers are written unsigned, or signed with a key of the attacker's.

use super::{World, require_tool};
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};

/// `input` through the shell pipeline `cmd` (age and zstd at hand); its output.
pub fn pipe(cmd: &str, input: &[u8]) -> Vec<u8> {
    require_tool("age");
    require_tool("zstd");
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait");
    feeder.join().expect("feeder");
    assert!(out.status.success(), "`{cmd}` failed");
    out.stdout
}

pub fn decrypt(world: &World, stored: &[u8]) -> Vec<u8> {
    pipe(
        &format!("age -d -i '{}' | zstd -d -q -c", world.identity.display()),
        stored,
    )
}

/// The manifest's JSON of snapshot `id` of job `app` under `root` (a local target
/// or an S3 bucket's folder), however it is stored: an object (format 1), or
/// chunks in packs (format 2: `snapshot.json` says where), read with age and zstd.
pub fn manifest_plain(world: &World, root: &std::path::Path, id: &str) -> Vec<u8> {
    let dir = root.join("app").join(id);
    let object = dir.join("manifest.json.zst.age");
    if object.exists() {
        return decrypt(world, &std::fs::read(&object).expect("read manifest"));
    }
    let env: Value =
        serde_json::from_slice(&std::fs::read(dir.join("snapshot.json")).expect("read marker"))
            .expect("marker json");
    let marker = env.get("marker").cloned().unwrap_or(env);
    let mut packs: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    let mut out = Vec::new();
    for c in marker["manifest"]["chunks"]
        .as_array()
        .expect("manifest chunks")
    {
        let pack = c["pack"].as_str().expect("pack").to_string();
        let plain = packs.entry(pack.clone()).or_insert_with(|| {
            let stored = std::fs::read(root.join("app/packs").join(format!("{pack}.tar.zst.age")))
                .expect("read pack");
            decrypt(world, &stored)
        });
        let at = usize::try_from(c["offset"].as_u64().expect("offset")).expect("offset");
        let n = usize::try_from(c["size"].as_u64().expect("size")).expect("size");
        out.extend_from_slice(&plain[at..at + n]);
    }
    out
}

pub fn encrypt(world: &World, plain: &[u8]) -> Vec<u8> {
    pipe(&format!("zstd -q -c | age -r {}", world.recipient), plain)
}

/// A snapshot being rewritten: its marker (without the signature envelope) and its
/// decrypted manifest, both as JSON to change at will.
pub struct Forgery<'a> {
    pub world: &'a World,
    pub id: String,
    pub marker: Value,
    pub manifest: Value,
}

impl<'a> Forgery<'a> {
    pub fn of(world: &'a World, id: &str) -> Forgery<'a> {
        let dir = world.snapshot_dir(id);
        let env: Value =
            serde_json::from_slice(&std::fs::read(dir.join("snapshot.json")).expect("read marker"))
                .expect("marker json");
        let marker = env.get("marker").cloned().unwrap_or(env);
        let manifest = serde_json::from_slice(&manifest_plain(world, &world.target(), id))
            .expect("manifest json");
        Forgery {
            world,
            id: id.to_string(),
            marker,
            manifest,
        }
    }

    /// Stores `plain` as object `key` (a new one or a replacement), recorded in the
    /// marker and bound in the manifest as coffer would.
    pub fn put_object(&mut self, key: &str, source: Option<&str>, plain: &[u8]) {
        let stored = encrypt(self.world, plain);
        self.put_stored(key, source, &stored, plain.len() as u64);
    }

    /// Like `put_object` with the stored (encrypted) bytes made elsewhere.
    pub fn put_stored(&mut self, key: &str, source: Option<&str>, stored: &[u8], plain_len: u64) {
        let path = self.world.snapshot_dir(&self.id).join(key);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("mkdir");
        }
        std::fs::write(&path, stored).expect("write object");
        let record = serde_json::json!({
            "key": key,
            "source": source,
            "plaintext_size": plain_len,
            "stored_size": stored.len(),
            "blake3": blake3::hash(stored).to_hex().to_string(),
        });
        let objects = self.marker["objects"].as_array_mut().expect("objects");
        objects.retain(|o| o["key"] != key);
        objects.push(record.clone());
        if let Some(bound) = self
            .manifest
            .get_mut("objects")
            .and_then(Value::as_array_mut)
        {
            bound.retain(|o| o["key"] != key);
            if source.is_some() {
                bound.push(serde_json::json!({
                    "key": key,
                    "plaintext_size": record["plaintext_size"],
                    "stored_size": record["stored_size"],
                    "blake3": record["blake3"],
                }));
            }
        }
    }

    /// Writes the manifest (encrypted) and an unsigned marker.
    pub fn save_unsigned(mut self) {
        self.write_manifest();
        let bytes = serde_json::to_vec_pretty(&self.marker).expect("json");
        self.write_marker(&bytes);
    }

    /// Moves the snapshot to folder `id`, as if it had been made under that id: the
    /// marker and the manifest name it (save it signed, or it is only a forgery).
    pub fn move_to(&mut self, id: &str) {
        std::fs::rename(
            self.world.snapshot_dir(&self.id),
            self.world.snapshot_dir(id),
        )
        .expect("rename the snapshot folder");
        self.id = id.to_string();
        self.marker["id"] = id.into();
        self.manifest["snapshot"] = id.into();
    }

    /// Writes the manifest and a marker signed with a new key of the forger's own;
    /// returns that key's public form (`ed25519:...`).
    pub fn save_signed_by_stranger(self) -> String {
        self.save_signed_with(&rand_bytes())
    }

    /// Writes the manifest and a marker signed with the world's own signing key
    /// (what the backup host itself, or an earlier coffer on it, would write).
    pub fn save_signed_by_host(self) -> String {
        let text = std::fs::read_to_string(self.world.path("state/signing.key"))
            .expect("read the host's signing key");
        let line = text
            .lines()
            .find(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .expect("a key line");
        let mut seed = [0u8; 32];
        hex::decode_to_slice(line.trim(), &mut seed).expect("64 hex digits");
        self.save_signed_with(&seed)
    }

    /// Writes the manifest and a marker signed with the ed25519 key `seed`;
    /// returns its public form (`ed25519:...`).
    pub fn save_signed_with(mut self, seed: &[u8; 32]) -> String {
        self.write_manifest();
        let key = ed25519_dalek::SigningKey::from_bytes(seed);
        let public = format!("ed25519:{}", hex::encode(key.verifying_key().as_bytes()));
        let body = serde_json::to_string_pretty(&self.marker).expect("json");
        let mut msg = b"coffer snapshot marker v1\n".to_vec();
        msg.extend_from_slice(body.as_bytes());
        use ed25519_dalek::Signer;
        let sig = key.sign(&msg);
        let env = format!(
            "{{\"marker\": {body}, \"signer\": \"{public}\", \"signature\": \"{}\"}}",
            hex::encode(sig.to_bytes())
        );
        self.write_marker(env.as_bytes());
        public
    }

    /// Like `save_unsigned`, with the file entries of `source` written by `entries`
    /// straight into the manifest's stream (a JSON array's items, comma-separated),
    /// for lists too long to hold as a `Value`; the manifest is compressed at zstd
    /// `level`. Returns the stored manifest's size.
    pub fn save_unsigned_with_entries(
        mut self,
        source: &str,
        level: u32,
        entries: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> usize {
        const HOLE: &str = "@@ENTRIES@@";
        for s in self.manifest["sources"].as_array_mut().expect("sources") {
            if s["name"] == source {
                s["entries"] = HOLE.into();
            }
        }
        let text = serde_json::to_string(&self.manifest).expect("json");
        let (head, tail) = text
            .split_once(&format!("\"{HOLE}\""))
            .expect("the source is in the manifest");
        require_tool("age");
        require_tool("zstd");
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "zstd -q -{level} -c | age -r {}",
                self.world.recipient
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut out = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            let mut stored = Vec::new();
            std::io::Read::read_to_end(&mut out, &mut stored).map(|_| stored)
        });
        let mut plain = Counted {
            inner: std::io::BufWriter::new(child.stdin.take().expect("stdin")),
            n: 0,
        };
        plain.write_all(head.as_bytes()).expect("write");
        plain.write_all(b"[").expect("write");
        entries(&mut plain).expect("write the entries");
        plain.write_all(b"]").expect("write");
        plain.write_all(tail.as_bytes()).expect("write");
        plain.flush().expect("flush");
        let plain_len = plain.n;
        drop(plain);
        let stored = reader.join().expect("reader").expect("read");
        assert!(child.wait().expect("wait").success(), "zstd | age failed");
        self.manifest_as_object();
        self.put_stored("manifest.json.zst.age", None, &stored, plain_len);
        let bytes = serde_json::to_vec_pretty(&self.marker).expect("json");
        self.write_marker(&bytes);
        stored.len()
    }

    /// A forged manifest goes back as an object: the marker's chunks of the
    /// genuine one go (a marker lists one or the other).
    fn manifest_as_object(&mut self) {
        if let Some(m) = self.marker.as_object_mut() {
            m.remove("manifest");
        }
    }

    fn write_manifest(&mut self) {
        self.manifest_as_object();
        let plain = serde_json::to_vec(&self.manifest).expect("json");
        self.put_object("manifest.json.zst.age", None, &plain);
    }

    fn write_marker(&self, bytes: &[u8]) {
        std::fs::write(
            self.world.snapshot_dir(&self.id).join("snapshot.json"),
            bytes,
        )
        .expect("write marker");
    }
}

fn rand_bytes() -> [u8; 32] {
    let mut b = [0u8; 32];
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(1);
    for (i, x) in b.iter_mut().enumerate() {
        *x = (t >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(31);
    }
    b
}

/// Counts what goes through.
struct Counted<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
