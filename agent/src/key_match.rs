//! Which keys open what. Two questions an operator cannot answer by reading files:
//!
//! - Does the configured identity belong to one of the configured recipients?
//!   `config check` answers it, and every backup asks it before reading anything:
//!   a backup encrypted only to keys nobody here holds is worse than none, because
//!   it looks like a backup until the day it is needed.
//! - When an object does not decrypt with the identity given, what was it
//!   encrypted to? Its age header lists one stanza per recipient; an X25519 stanza
//!   does not name its key, so the answer is what the header shows, never a guess.
//!
//! Only public keys reach a message: identities are read, compared and dropped.

use coffer_config::{Encryption, RecipientKey};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// What is known about the configured identity and the recipients.
#[derive(Debug)]
pub enum IdentityCheck {
    /// No `identity_file` configured.
    NotConfigured,
    /// Configured, but not on this host (the recommended setup).
    Absent(PathBuf),
    /// The quick start encrypts to the identity it creates, whatever else is set.
    QuickStart(PathBuf),
    /// The identity's public key is recipient `number` (1-based), written at `origin`.
    Matches {
        file: PathBuf,
        number: usize,
        origin: String,
    },
    /// None of the recipients is this identity's: what `message` says.
    Mismatch { message: String },
    /// Present, but coffer cannot tell (unreadable, passphrase-protected ssh key, ...).
    CannotCheck { file: PathBuf, why: String },
    /// No recipients: a config whose jobs only restore (disaster recovery), where
    /// the identity is there to read, not to match anything written.
    ReadOnly(PathBuf),
}

impl IdentityCheck {
    /// The line `config check` prints (and a backup refuses with, for a mismatch).
    pub fn message(&self) -> String {
        match self {
            IdentityCheck::NotConfigured => {
                "identity: no identity_file configured, nothing to check against the recipients"
                    .to_string()
            }
            IdentityCheck::Absent(f) => format!(
                "identity {} is not on this host, so it cannot be checked against the recipients \
                 (fine when you keep it elsewhere: backups need only the recipients)",
                f.display()
            ),
            IdentityCheck::QuickStart(f) => format!(
                "identity {}: the quick-start identity, encrypted to as a recipient of its own",
                f.display()
            ),
            IdentityCheck::Matches {
                file,
                number,
                origin,
            } => format!(
                "identity {} matches recipient {number} ({origin})",
                file.display()
            ),
            IdentityCheck::Mismatch { message, .. } => message.clone(),
            IdentityCheck::CannotCheck { file, why } => format!(
                "identity {}: cannot check it against the recipients: {why}",
                file.display()
            ),
            IdentityCheck::ReadOnly(f) => format!(
                "identity {}: no recipients configured (no job has sources), so it only reads \
                 what the targets hold",
                f.display()
            ),
        }
    }
}

/// Compares the configured identity file (when it is on this host) with the
/// configured recipients.
pub fn check_identity(enc: &Encryption) -> IdentityCheck {
    let Some(file) = enc.identity_file.clone() else {
        return IdentityCheck::NotConfigured;
    };
    if enc.create_identity_if_missing {
        return IdentityCheck::QuickStart(file);
    }
    if enc.recipients.is_empty() {
        return IdentityCheck::ReadOnly(file);
    }
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return IdentityCheck::Absent(file),
        Err(e) => {
            return IdentityCheck::CannotCheck {
                why: format!("cannot read it: {e}"),
                file,
            };
        }
    };
    let x25519: Vec<age::x25519::Identity> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("AGE-SECRET-KEY-"))
        .filter_map(|l| age::x25519::Identity::from_str(l).ok())
        .collect();
    if !x25519.is_empty() {
        let publics: Vec<String> = x25519.iter().map(|i| i.to_public().to_string()).collect();
        let found = enc.recipients.iter().position(|r| match &r.key {
            RecipientKey::X25519(k) => publics.contains(&k.to_string()),
            RecipientKey::Ssh(_) => false,
        });
        return match found {
            Some(i) => IdentityCheck::Matches {
                number: i + 1,
                origin: enc.recipients[i].origin.clone(),
                file,
            },
            None => mismatch(file, &format!("public key {}", publics.join(", ")), enc),
        };
    }
    if text.contains("PRIVATE KEY-----") {
        return check_ssh(file, &text, enc);
    }
    IdentityCheck::CannotCheck {
        file,
        why: "it holds no age identity (AGE-SECRET-KEY-...) nor an ssh private key".to_string(),
    }
}

/// An ssh identity has no public key age hands out, so each ssh recipient gets a
/// few bytes encrypted to it and the identity tries to open them.
fn check_ssh(file: PathBuf, text: &str, enc: &Encryption) -> IdentityCheck {
    let name = file.display().to_string();
    let id = match age::ssh::Identity::from_buffer(text.as_bytes(), Some(name)) {
        Ok(age::ssh::Identity::Unencrypted(k)) => age::ssh::Identity::Unencrypted(k),
        Ok(age::ssh::Identity::Encrypted(_)) => {
            return IdentityCheck::CannotCheck {
                file,
                why: "it is a passphrase-protected ssh key, which coffer does not open".to_string(),
            };
        }
        Ok(age::ssh::Identity::Unsupported(_)) | Err(_) => {
            return IdentityCheck::CannotCheck {
                file,
                why: "it is an ssh key of a kind age does not support".to_string(),
            };
        }
    };
    for (i, r) in enc.recipients.iter().enumerate() {
        if let RecipientKey::Ssh(k) = &r.key
            && opens(&id, k)
        {
            return IdentityCheck::Matches {
                number: i + 1,
                origin: r.origin.clone(),
                file,
            };
        }
    }
    mismatch(file, "an ssh key", enc)
}

/// Whether `id` decrypts a message encrypted to `to` alone.
fn opens(id: &age::ssh::Identity, to: &age::ssh::Recipient) -> bool {
    let trial = || -> Option<()> {
        let enc =
            age::Encryptor::with_recipients(std::iter::once(to as &dyn age::Recipient)).ok()?;
        let mut sealed = Vec::new();
        let mut w = enc.wrap_output(&mut sealed).ok()?;
        io::Write::write_all(&mut w, b"coffer").ok()?;
        w.finish().ok()?;
        let dec = age::Decryptor::new(&sealed[..]).ok()?;
        dec.decrypt(std::iter::once(id as &dyn age::Identity))
            .ok()
            .map(drop)
    };
    trial().is_some()
}

fn mismatch(file: PathBuf, what: &str, enc: &Encryption) -> IdentityCheck {
    let listed: Vec<String> = enc
        .recipients
        .iter()
        .enumerate()
        .map(|(i, r)| format!("{} {} ({})", i + 1, r.text, r.origin))
        .collect();
    let message = format!(
        "identity {} ({what}) is none of the {} configured recipient(s): {}. Backups encrypted \
         to them cannot be restored with it. Put its public key (`age-keygen -y {}`) in \
         [encryption] recipients, or set identity_file to the identity of one of the recipients",
        file.display(),
        listed.len(),
        listed.join("; "),
        file.display()
    );
    IdentityCheck::Mismatch { message }
}

/// A stored object that the identity given is not a recipient of.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NotForIdentity {
    /// The object, as its reader names it.
    pub object: String,
    /// What its header says it was encrypted to, from [`describe_recipients`].
    pub recipients: String,
}

impl NotForIdentity {
    /// The message with the identity file it was tried with.
    pub fn with_file(&self, file: &Path) -> String {
        format!(
            "{}: not encrypted to this identity ({}); it was encrypted to {}",
            self.object,
            file.display(),
            self.recipients
        )
    }
}

impl fmt::Display for NotForIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: not encrypted to this identity; it was encrypted to {}",
            self.object, self.recipients
        )
    }
}

impl std::error::Error for NotForIdentity {}

/// The [`NotForIdentity`] somewhere in `err`'s chain, also inside an `io::Error`
/// (whose `source()` skips the error it wraps).
pub fn not_for_identity(err: &anyhow::Error) -> Option<&NotForIdentity> {
    err.chain().find_map(|cause| {
        cause.downcast_ref::<NotForIdentity>().or_else(|| {
            cause
                .downcast_ref::<io::Error>()
                .and_then(|e| e.get_ref())
                .and_then(|inner| inner.downcast_ref::<NotForIdentity>())
        })
    })
}

/// What an age header's recipient stanzas show, for someone whose identity
/// matched none of them: how many, of which kinds. X25519 stanzas carry only an
/// ephemeral share, so which key they are for is not in the file.
pub fn describe_recipients(header: &[u8]) -> String {
    let text = String::from_utf8_lossy(header);
    let mut lines = text.lines();
    if lines.next() != Some("age-encryption.org/v1") {
        return "recipients its header does not show (not an age v1 header)".to_string();
    }
    let mut kinds: Vec<(String, usize)> = Vec::new();
    let mut total = 0;
    for line in lines {
        if line.starts_with("---") {
            break;
        }
        let Some(stanza) = line.strip_prefix("-> ") else {
            continue;
        };
        let kind = stanza.split(' ').next().unwrap_or_default();
        // age adds a random `*-grease` stanza to keep parsers tolerant: no recipient.
        if kind.ends_with("-grease") {
            continue;
        }
        // Stanza types are short ASCII words; anything else is shown as unknown.
        let kind = if !kind.is_empty()
            && kind.len() <= 32
            && kind
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            kind.to_string()
        } else {
            "unknown".to_string()
        };
        total += 1;
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((kind, 1)),
        }
    }
    if total == 0 {
        return "no recipient its header shows".to_string();
    }
    let parts: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let mut out = format!(
        "{total} recipient{} ({}), none of them this identity",
        if total == 1 { "" } else { "s" },
        parts.join(", ")
    );
    if kinds.iter().any(|(k, _)| k == "X25519") {
        out.push_str("; an X25519 stanza does not say which public key it is for");
    }
    if kinds.iter().any(|(k, _)| k == "scrypt") {
        out.push_str("; scrypt means a passphrase, not a key");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    fn public_of(id: &age::x25519::Identity) -> String {
        id.to_public().to_string()
    }
    use coffer_config::Recipient;

    fn enc(recipients: &[&age::x25519::Identity], identity_file: Option<PathBuf>) -> Encryption {
        Encryption {
            recipients: recipients
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    let text = public_of(id);
                    Recipient {
                        key: coffer_config::RecipientKey::X25519(id.to_public()),
                        origin: format!("t.toml (encryption.recipients[{i}])"),
                        text,
                    }
                })
                .collect(),
            identity_file,
            create_identity_if_missing: false,
            signing_key: PathBuf::from("/nonexistent/signing.key"),
            trusted_signers: Vec::new(),
        }
    }

    fn identity_file(dir: &Path, id: &age::x25519::Identity) -> PathBuf {
        let f = dir.join("identity.txt");
        std::fs::write(
            &f,
            format!("# a comment\n{}\n", id.to_string().expose_secret()),
        )
        .expect("write");
        f
    }

    #[test]
    fn an_identity_matches_the_recipient_that_is_its_public_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (other, mine) = (
            age::x25519::Identity::generate(),
            age::x25519::Identity::generate(),
        );
        let file = identity_file(dir.path(), &mine);
        let check = check_identity(&enc(&[&other, &mine], Some(file.clone())));
        match &check {
            IdentityCheck::Matches { number, origin, .. } => {
                assert_eq!(*number, 2);
                assert!(origin.contains("recipients[1]"), "{origin}");
            }
            other => panic!("{other:?}"),
        }
        assert!(check.message().contains("matches recipient 2"), "{check:?}");
    }

    #[test]
    fn a_foreign_identity_is_named_with_the_recipients_it_does_not_match_and_never_shown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (other, mine) = (
            age::x25519::Identity::generate(),
            age::x25519::Identity::generate(),
        );
        let file = identity_file(dir.path(), &mine);
        let check = check_identity(&enc(&[&other], Some(file.clone())));
        let IdentityCheck::Mismatch { message, .. } = &check else {
            panic!("{check:?}")
        };
        assert!(message.contains(&file.display().to_string()), "{message}");
        assert!(message.contains(&public_of(&other)), "{message}");
        assert!(message.contains(&public_of(&mine)), "{message}");
        assert!(message.contains("recipients"), "{message}");
        let secret = mine.to_string().expose_secret().to_string();
        assert!(!message.contains(&secret[15..]), "the identity leaked");
    }

    #[test]
    fn an_identity_elsewhere_or_none_changes_nothing() {
        let other = age::x25519::Identity::generate();
        let dir = tempfile::tempdir().expect("tempdir");
        let gone = dir.path().join("not-here.txt");
        let check = check_identity(&enc(&[&other], Some(gone)));
        assert!(matches!(check, IdentityCheck::Absent(_)), "{check:?}");
        assert!(check.message().contains("not on this host"));
        let none = check_identity(&enc(&[&other], None));
        assert!(matches!(none, IdentityCheck::NotConfigured), "{none:?}");
        std::fs::write(dir.path().join("junk.txt"), "hello\n").expect("write");
        let junk = check_identity(&enc(&[&other], Some(dir.path().join("junk.txt"))));
        assert!(
            matches!(junk, IdentityCheck::CannotCheck { .. }),
            "{junk:?}"
        );
    }

    #[test]
    fn an_ssh_identity_is_tried_against_the_ssh_recipients() {
        // age's own test key (an unencrypted ed25519 key, public in its sources).
        const SSH_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACB7Ci6nqZYaVvrjm8+XbzII89TsXzP111AflR7WeorBjQAAAJCfEwtqnxML
agAAAAtzc2gtZWQyNTUxOQAAACB7Ci6nqZYaVvrjm8+XbzII89TsXzP111AflR7WeorBjQ
AAAEADBJvjZT8X6JRJI8xVq/1aU8nMVgOtVnmdwqWwrSlXG3sKLqeplhpW+uObz5dvMgjz
1OxfM/XXUB+VHtZ6isGNAAAADHN0cjRkQGNhcmJvbgE=
-----END OPENSSH PRIVATE KEY-----
";
        const SSH_PUB: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN alice@rust";
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("id_ed25519");
        std::fs::write(&file, SSH_KEY).expect("write");
        let x = age::x25519::Identity::generate();
        let mut e = enc(&[&x], Some(file.clone()));
        let mismatched = check_identity(&e);
        assert!(
            matches!(mismatched, IdentityCheck::Mismatch { .. }),
            "{mismatched:?}"
        );
        e.recipients.push(Recipient {
            key: coffer_config::RecipientKey::Ssh(
                age::ssh::Recipient::from_str(SSH_PUB).expect("ssh recipient"),
            ),
            text: SSH_PUB.to_string(),
            origin: "t.toml (encryption.recipients[1])".to_string(),
        });
        let matched = check_identity(&e);
        assert!(
            matches!(matched, IdentityCheck::Matches { number: 2, .. }),
            "{matched:?}"
        );
    }

    #[test]
    fn a_header_is_described_by_its_stanzas_without_inventing_keys() {
        let (a, b) = (
            age::x25519::Identity::generate(),
            age::x25519::Identity::generate(),
        );
        let recipients = [a.to_public(), b.to_public()];
        let enc =
            age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
                .expect("encryptor");
        let mut sealed = Vec::new();
        let mut w = enc.wrap_output(&mut sealed).expect("wrap");
        io::Write::write_all(&mut w, b"x").expect("write");
        w.finish().expect("finish");
        let said = describe_recipients(&sealed);
        assert!(
            said.starts_with("2 recipients (2 X25519), none of them this identity"),
            "{said}"
        );
        assert!(
            !said.contains(&public_of(&a)) && !said.contains("age1"),
            "{said}"
        );
        assert!(describe_recipients(b"garbage").contains("not an age v1 header"));
    }
}
