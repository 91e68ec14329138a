//! Signed commit markers. The age recipients are public, so anyone who can write to
//! a target can produce objects that decrypt fine: encryption says nothing about who
//! wrote a snapshot. The backup host therefore signs each `snapshot.json` with its
//! own ed25519 key, and restore, check and deep verify accept only snapshots signed
//! by a trusted key (the host's own, `[encryption] trusted_signers`, `--trust-signer`).
//!
//! `snapshot.json` is an envelope `{"marker": {...}, "signer": "ed25519:...",
//! "signature": "..."}`; the signature covers the marker's exact bytes as stored
//! (read back with serde_json's `RawValue`), so no canonical JSON is needed. The
//! marker binds every object's stored size and BLAKE3, the manifest included, and the
//! manifest binds the job, the snapshot id and each object again: one signature
//! authenticates every byte of the snapshot. Markers written before signing existed
//! have no envelope and read as `Seal::Unsigned`.

use crate::format::Marker;
use anyhow::{Context, Result, bail};
use coffer_config::{Encryption, Signer};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Signatures cover this prefix and the marker, so a coffer signature can never be
/// mistaken for a signature over anything else.
const DOMAIN: &[u8] = b"coffer snapshot marker v1\n";

/// Who vouches for a marker read from a target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Seal {
    /// No envelope: written before coffer signed markers, or by anyone at all.
    #[default]
    Unsigned,
    /// The signature verifies under this key (trusted or not is the reader's call).
    Signed(Signer),
}

/// This host's signing key.
pub(crate) struct HostKey {
    key: SigningKey,
    pub public: Signer,
}

fn key_text(key: &SigningKey, public: &Signer) -> String {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    format!(
        "# coffer snapshot signing key (ed25519), created {now}\n# public: {public}\n{}\n",
        hex::encode(key.to_bytes())
    )
}

/// Writes a new signing key (mode 0600, never over an existing file); returns it.
pub(crate) fn write_new_key(file: &Path) -> Result<HostKey> {
    let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let public = Signer(key.verifying_key());
    let mut f = crate::keys::create_key_file(file, "signing key")?;
    f.write_all(key_text(&key, &public).as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write signing key {}", file.display()))?;
    Ok(HostKey { key, public })
}

/// Makes the host's key at `file` as one complete file or not at all: written
/// under a private name beside it, then linked to `file`, which fails when it
/// exists. `None` when another process or thread linked its key first; a reader
/// never sees a half-written key.
fn publish_new_key(file: &Path) -> Result<Option<HostKey>> {
    let mut name = file.as_os_str().to_owned();
    name.push(format!(
        ".new-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let staged = std::path::PathBuf::from(name);
    let key = write_new_key(&staged)?;
    let linked = std::fs::hard_link(&staged, file);
    let _ = std::fs::remove_file(&staged);
    match linked {
        Ok(()) => Ok(Some(key)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot create signing key {}", file.display())),
    }
}

/// Reads the signing key at `file`.
pub(crate) fn load_key(file: &Path) -> Result<HostKey> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read signing key {}", file.display()))?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or_default();
    let mut seed = [0u8; 32];
    if hex::decode_to_slice(line, &mut seed).is_err() {
        // Never echo the line: it is (or was meant to be) a private key.
        bail!(
            "{} is not a coffer signing key (64 hex digits); make one with `coffer keygen --signing --output FILE`",
            file.display()
        );
    }
    let key = SigningKey::from_bytes(&seed);
    let public = Signer(key.verifying_key());
    Ok(HostKey { key, public })
}

/// The backup's key: the configured one, created on first use. A new key is
/// announced loudly, because a restore on another host must be told to trust it.
pub(crate) fn host_key(enc: &Encryption) -> Result<HostKey> {
    let file = &enc.signing_key;
    if file.exists() {
        let md = std::fs::metadata(file)?;
        if md.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                "signing key {} is readable by other users (mode {:o}); chmod 600 it",
                file.display(),
                md.permissions().mode() & 0o777
            );
        }
        return load_key(file);
    }
    let Some(key) = publish_new_key(file)? else {
        // Another run of this host (the agent starts jobs side by side) made it
        // first: that one is the host's key.
        return load_key(file);
    };
    // Through the log, so that `--log-format json` stays JSON; at warn, so that the
    // CLI (which logs only warnings) shows it.
    tracing::warn!(
        "created the snapshot signing key {} (mode 0600); its public key is {}. Keep it with \
         your age identity: a restore on another host accepts these snapshots once it is in \
         [encryption] trusted_signers (or given with --trust-signer)",
        file.display(),
        key.public
    );
    Ok(key)
}

#[derive(Serialize)]
struct EnvelopeOut<'a> {
    marker: &'a RawValue,
    signer: String,
    signature: String,
}

#[derive(Deserialize)]
struct EnvelopeIn<'a> {
    #[serde(borrow, default)]
    marker: Option<&'a RawValue>,
    #[serde(default)]
    signer: Option<String>,
    #[serde(default)]
    signature: Option<String>,
}

fn message(body: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + body.len());
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(body.as_bytes());
    m
}

/// The bytes of `snapshot.json`: the marker signed by `key`.
pub(crate) fn seal(marker: &Marker, key: &HostKey) -> Result<Vec<u8>> {
    let body = serde_json::to_string_pretty(marker)?;
    let signature = key.key.sign(&message(&body));
    let raw = RawValue::from_string(body)?;
    Ok(serde_json::to_vec_pretty(&EnvelopeOut {
        marker: &raw,
        signer: key.public.to_string(),
        signature: hex::encode(signature.to_bytes()),
    })?)
}

/// Reads `snapshot.json`: the marker and who signed it. A signature that does not
/// verify is an error (the marker was changed after signing), never "unsigned".
pub fn open(bytes: &[u8]) -> Result<Marker, String> {
    let env: EnvelopeIn<'_> =
        serde_json::from_slice(bytes).map_err(|e| format!("not a snapshot marker: {e}"))?;
    let Some(raw) = env.marker else {
        let mut marker: Marker =
            serde_json::from_slice(bytes).map_err(|e| format!("not a snapshot marker: {e}"))?;
        marker.seal = Seal::Unsigned;
        return Ok(marker);
    };
    let (Some(signer), Some(signature)) = (env.signer, env.signature) else {
        return Err("a marker envelope without signer or signature".into());
    };
    let signer: Signer = signer.parse().map_err(|e| format!("signer: {e}"))?;
    let mut sig = [0u8; 64];
    hex::decode_to_slice(&signature, &mut sig)
        .map_err(|_| "signature: not 128 hex digits".to_string())?;
    signer
        .0
        .verify(&message(raw.get()), &Signature::from_bytes(&sig))
        .map_err(|_| {
            format!("the signature by {signer} does not verify: the marker was changed after it was signed")
        })?;
    let mut marker: Marker =
        serde_json::from_str(raw.get()).map_err(|e| format!("not a snapshot marker: {e}"))?;
    marker.seal = Seal::Signed(signer);
    Ok(marker)
}

/// Which snapshots a command accepts.
#[derive(Debug, Clone)]
pub(crate) struct Trust {
    signers: Vec<Signer>,
    /// Those given on the command line (`--trust-signer`), checked against what
    /// they signed before they are used (`signers::vet_given`).
    given: Vec<Signer>,
    /// How many of `signers` the config and this host's key contribute.
    configured: usize,
    allow_unsigned: bool,
}

impl Trust {
    /// The configured signers, this host's own key when its file is readable, and
    /// those given on the command line.
    pub fn new(enc: &Encryption, extra: &[Signer], allow_unsigned: bool) -> Trust {
        let mut signers = enc.trusted_signers.clone();
        if enc.signing_key.exists() {
            match load_key(&enc.signing_key) {
                Ok(k) => signers.push(k.public),
                Err(e) => tracing::warn!("{e:#}"),
            }
        }
        let configured = signers.len();
        signers.extend_from_slice(extra);
        Trust {
            signers,
            given: extra.to_vec(),
            configured,
            allow_unsigned,
        }
    }

    /// The keys the command line adds.
    pub fn given(&self) -> &[Signer] {
        &self.given
    }

    /// Trusted by the config or as this host's own key, not only by the command line.
    pub fn is_configured(&self, s: &Signer) -> bool {
        self.signers[..self.configured].contains(s)
    }

    pub fn is_trusted(&self, s: &Signer) -> bool {
        self.signers.contains(s)
    }

    /// Why `marker` is not accepted, in words that say what to do; `None` when it is.
    pub fn refusal(&self, marker: &Marker) -> Option<String> {
        match &marker.seal {
            Seal::Signed(s) if self.is_trusted(s) => None,
            Seal::Unsigned if self.allow_unsigned => None,
            Seal::Signed(s) => Some(format!(
                "snapshot {} of job {} is signed by {s}, which is not a trusted signer. \
                 `coffer list --job {}` shows what each key signed; if that is the key of the \
                 host that made the backup (compare it with the `public:` line of that host's \
                 signing key file, or with what its first backup logged), add it to \
                 [encryption] trusted_signers or pass --trust-signer KEY",
                marker.id, marker.job, marker.job
            )),
            Seal::Unsigned => Some(format!(
                "snapshot {} of job {} is not signed: it was written by a coffer older than 0.2, \
                 or by anyone who can write to the target. Pass --allow-unsigned only if you know \
                 where it came from",
                marker.id, marker.job
            )),
        }
    }

    /// How `list` shows a marker's seal.
    pub fn describe(&self, seal: &Seal) -> &'static str {
        match seal {
            Seal::Signed(s) if self.is_trusted(s) => "signed",
            Seal::Signed(_) => "UNTRUSTED",
            Seal::Unsigned => "unsigned",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_that_start_together_on_a_new_host_share_one_signing_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let enc = Encryption {
            recipients: Vec::new(),
            identity_file: None,
            create_identity_if_missing: false,
            signing_key: dir.path().join("state/signing.key"),
            trusted_signers: Vec::new(),
        };
        let keys: Vec<Signer> = std::thread::scope(|scope| {
            let runs: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| host_key(&enc).expect("a key").public))
                .collect();
            runs.into_iter().map(|r| r.join().expect("run")).collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
        assert_eq!(load_key(&enc.signing_key).expect("key").public, keys[0]);
        let left: Vec<_> = std::fs::read_dir(dir.path().join("state"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left, ["signing.key"], "no staged key is left behind");
    }
}
