//! The server's host key, pinned in the config and checked before coffer logs
//! in. Never trust on first use: OpenSSH's client runs with
//! `StrictHostKeyChecking=yes` against a known_hosts file that holds only the
//! pinned key(s), so a server whose key is unknown or changed is refused, and
//! the message says how to pin the right one.
//!
//! With `known_hosts = FILE` that file is used as it is. With
//! `host_key_fingerprint`, the server's keys are fetched with `ssh-keyscan`, and
//! only a key whose SHA256 fingerprint is the pinned one is written to a private
//! known_hosts file for this connection: the login then checks the server
//! against that key (a server that answered keyscan with another key cannot
//! pass).

use super::Failure;
use base64::Engine;
use coffer_config::{HostKeyPin, SftpTarget};
use sha2::Digest;
use std::path::PathBuf;
use std::time::Duration;

/// keyscan's wait for the server, in seconds.
const KEYSCAN_TIMEOUT_SECS: u64 = 10;

/// The known_hosts file ssh checks the server against.
pub(super) struct KnownHosts {
    pub path: PathBuf,
    /// `HostKeyAlgorithms` for ssh: the pinned key's type (fingerprint pins).
    pub algorithms: Option<String>,
    /// The private file written for a fingerprint pin, removed when dropped.
    _written: Option<tempfile::NamedTempFile>,
}

/// `SHA256:...` of a public key given as known_hosts writes it (base64), as
/// `ssh-keygen -lf` prints it; `None` when it is not base64.
pub(super) fn fingerprint(key_base64: &str) -> Option<String> {
    let blob = base64::engine::general_purpose::STANDARD
        .decode(key_base64)
        .ok()?;
    let digest = sha2::Sha256::digest(&blob);
    Some(format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    ))
}

/// The known_hosts file for connecting to the target `sftp`.
pub(super) async fn known_hosts(sftp: &SftpTarget) -> Result<KnownHosts, Failure> {
    match &sftp.host_key {
        HostKeyPin::KnownHosts(file) => match std::fs::File::open(file) {
            Ok(_) => Ok(KnownHosts {
                path: file.clone(),
                algorithms: None,
                _written: None,
            }),
            Err(e) => Err(Failure::setup(format!(
                "cannot read known_hosts {}: {e}; {}",
                file.display(),
                how_to_pin(sftp)
            ))),
        },
        HostKeyPin::Fingerprint(pinned) => {
            let scanned = keyscan(sftp).await?;
            let (line, kind) = pinned_line(sftp, pinned, &scanned).map_err(Failure::setup)?;
            let mut file = tempfile::NamedTempFile::new()
                .map_err(|e| Failure::transient(format!("cannot write a known_hosts file: {e}")))?;
            std::io::Write::write_all(&mut file, format!("{line}\n").as_bytes())
                .map_err(|e| Failure::transient(format!("cannot write a known_hosts file: {e}")))?;
            Ok(KnownHosts {
                path: file.path().to_path_buf(),
                algorithms: Some(algorithms_for(&kind)),
                _written: Some(file),
            })
        }
    }
}

/// What `ssh-keyscan` says the server's keys are (known_hosts lines).
async fn keyscan(sftp: &SftpTarget) -> Result<String, Failure> {
    let at = host_port(sftp);
    let out = tokio::time::timeout(
        Duration::from_secs(KEYSCAN_TIMEOUT_SECS + 5),
        tokio::process::Command::new("ssh-keyscan")
            .args([
                "-T",
                &KEYSCAN_TIMEOUT_SECS.to_string(),
                "-p",
                &sftp.port.to_string(),
            ])
            .arg("--")
            .arg(&sftp.host)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await;
    let out = match out {
        Ok(Ok(out)) => out,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Failure::setup(
                "ssh-keyscan is not installed (Debian: openssh-client); it fetches the host \
                 keys checked against host_key_fingerprint"
                    .to_string(),
            ));
        }
        Ok(Err(e)) => return Err(Failure::transient(format!("cannot run ssh-keyscan: {e}"))),
        Err(_) => {
            return Err(Failure::transient(format!(
                "no answer from {at} within {KEYSCAN_TIMEOUT_SECS}s; check host, port and the network"
            )));
        }
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.starts_with('#'))
    {
        let why = String::from_utf8_lossy(&out.stderr);
        let why = why
            .lines()
            .rfind(|l| !l.starts_with('#') && !l.trim().is_empty())
            .unwrap_or("no host key");
        return Err(Failure::transient(format!(
            "no SSH server answered at {at} ({why}); check that it is up and host and port are right"
        )));
    }
    Ok(text)
}

/// The line of `scanned` (ssh-keyscan's output) whose key has the fingerprint
/// `pinned`, and its key type; `Err` names what the server showed instead.
fn pinned_line(sftp: &SftpTarget, pinned: &str, scanned: &str) -> Result<(String, String), String> {
    let mut shown = Vec::new();
    for line in scanned.lines().filter(|l| !l.starts_with('#')) {
        let mut words = line.split_whitespace();
        let (Some(_host), Some(kind), Some(key)) = (words.next(), words.next(), words.next())
        else {
            continue;
        };
        let Some(fp) = fingerprint(key) else {
            continue;
        };
        if fp == pinned {
            return Ok((line.trim().to_string(), kind.to_string()));
        }
        shown.push(format!("{kind} {fp}"));
    }
    Err(format!(
        "the server at {} showed the host key(s) {}, none of which is host_key_fingerprint \
         {pinned}: coffer did not log in. If the server's key really changed (ask your \
         provider), {}",
        host_port(sftp),
        if shown.is_empty() {
            "(none readable)".to_string()
        } else {
            shown.join(", ")
        },
        how_to_pin(sftp)
    ))
}

/// `HostKeyAlgorithms` for a key of type `kind`: an RSA key signs with SHA-2.
fn algorithms_for(kind: &str) -> String {
    match kind {
        "ssh-rsa" => "rsa-sha2-512,rsa-sha2-256,ssh-rsa".to_string(),
        k => k.to_string(),
    }
}

pub(super) fn host_port(sftp: &SftpTarget) -> String {
    format!("{} port {}", sftp.host, sftp.port)
}

/// The commands that pin this target's host key.
pub(super) fn how_to_pin(sftp: &SftpTarget) -> String {
    let (h, p) = (&sftp.host, sftp.port);
    format!(
        "pin the host key: `ssh-keyscan -p {p} {h} > /etc/coffer/known_hosts` and set \
         known_hosts = \"/etc/coffer/known_hosts\", or set host_key_fingerprint to the ED25519 \
         line's SHA256:... of `ssh-keyscan -p {p} {h} | ssh-keygen -lf -`; compare it with the \
         fingerprint your provider publishes"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIPzDObkxzFRbFpn6FTonjB2r/ItDBDH3/kFGm1CEpooW";
    /// `ssh-keygen -lf` of KEY.
    const FINGERPRINT: &str = "SHA256:caW0xpnxcKdukBDwO1Taz0Liz5+Q0MB9OHJ6WbD/46E";
    const OTHER: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIKGBTcVAUn2mIRVnz+c0sw/SBKSZ4VwQeM1w/CMk+HMv";

    fn target() -> SftpTarget {
        SftpTarget {
            host: "box.example".to_string(),
            port: 23,
            user: "u1".to_string(),
            path: "coffer".to_string(),
            key_file: "/etc/coffer/key".into(),
            host_key: HostKeyPin::Fingerprint(FINGERPRINT.to_string()),
        }
    }

    #[test]
    fn fingerprints_are_what_ssh_keygen_prints() {
        assert_eq!(fingerprint(KEY).as_deref(), Some(FINGERPRINT));
        assert_eq!(fingerprint("not base64!"), None);
    }

    #[test]
    fn only_the_pinned_key_is_kept_and_a_refusal_says_how_to_pin() {
        let t = target();
        let scanned =
            format!("[box.example]:23 ssh-rsa {OTHER}\n[box.example]:23 ssh-ed25519 {KEY}\n");
        let (line, kind) = pinned_line(&t, FINGERPRINT, &scanned).expect("pinned key");
        assert_eq!(line, format!("[box.example]:23 ssh-ed25519 {KEY}"));
        assert_eq!(kind, "ssh-ed25519");
        let why = pinned_line(
            &t,
            FINGERPRINT,
            &format!("[box.example]:23 ssh-ed25519 {OTHER}\n"),
        )
        .expect_err("another key");
        let other = fingerprint(OTHER).expect("fingerprint");
        for part in [
            "box.example port 23",
            FINGERPRINT,
            other.as_str(),
            "ssh-keyscan -p 23 box.example",
            "ssh-keygen -lf",
            "did not log in",
        ] {
            assert!(why.contains(part), "{part}: {why}");
        }
        assert_eq!(
            algorithms_for("ssh-rsa"),
            "rsa-sha2-512,rsa-sha2-256,ssh-rsa"
        );
    }
}
