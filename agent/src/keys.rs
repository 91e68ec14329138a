//! age keys: the configured recipients (parsed by the config) as age takes them,
//! loading the private identity for restore and deep verify, and creating
//! identities (keygen and the quick start).
//! Key material never reaches a message: errors name files, not contents.

use age::secrecy::ExposeSecret;
use anyhow::{Context, Result, anyhow, bail};
use coffer_config::Encryption;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::str::FromStr;

pub type Recipients = Vec<Box<dyn age::Recipient + Send + Sync>>;
pub type Identities = Vec<Box<dyn age::Identity + Send + Sync>>;

/// The recipients every object is encrypted to. With `create_identity_if_missing`
/// (quick start), the identity file is created on first use and its public key
/// added, with a warning to `report`.
pub fn recipients(enc: &Encryption, report: &dyn crate::report::Report) -> Result<Recipients> {
    // Parsed when the config was loaded.
    let mut out: Recipients = enc.recipients.iter().map(|r| r.key.to_age()).collect();
    if enc.create_identity_if_missing
        && let Some(file) = &enc.identity_file
    {
        if !file.exists() {
            write_new_identity(file)?;
            report.notice(&format!(
                "warning: created a new age identity at {} for this quick start. A key kept \
                 next to its backups protects nothing: for real use, run `coffer keygen \
                 --output /secure/place/identity.txt` and put only its public key in \
                 [encryption] recipients.",
                file.display()
            ));
        }
        for id in load_x25519(file)? {
            out.push(Box::new(id.to_public()));
        }
    }
    if out.is_empty() {
        bail!("no recipients configured in [encryption]");
    }
    Ok(out)
}

fn load_x25519(file: &Path) -> Result<Vec<age::x25519::Identity>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read identity file {}", file.display()))?;
    let ids: Vec<_> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("AGE-SECRET-KEY-"))
        .filter_map(|l| age::x25519::Identity::from_str(l).ok())
        .collect();
    if ids.is_empty() {
        bail!(
            "{} holds no age X25519 identity (AGE-SECRET-KEY-...)",
            file.display()
        );
    }
    Ok(ids)
}

/// Loads the private identities used to decrypt.
pub fn identities(file: &Path) -> Result<Identities> {
    if !file.exists() {
        bail!(
            "identity file {} does not exist; pass --identity FILE or set [encryption] identity_file",
            file.display()
        );
    }
    let parsed = age::IdentityFile::from_file(file.to_string_lossy().into_owned())
        .with_context(|| format!("cannot read identity file {}", file.display()))?;
    let ids = parsed
        .into_identities()
        .map_err(|e| anyhow!("identity file {}: {e}", file.display()))?;
    if ids.is_empty() {
        bail!("identity file {} holds no identities", file.display());
    }
    Ok(ids)
}

/// The identity file to decrypt with: `--identity` wins over the config.
pub fn identity_path<'a>(cli: Option<&'a Path>, enc: &'a Encryption) -> Option<&'a Path> {
    cli.or(enc.identity_file.as_deref())
}

/// Creates `file` for a private key: its directory if missing, mode 0600, never
/// over an existing file; `what` names it in errors ("identity file").
pub fn create_key_file(file: &Path, what: &str) -> Result<std::fs::File> {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .with_context(|| {
            format!(
                "cannot create {what} {} (it must not exist yet)",
                file.display()
            )
        })
}

/// Creates a new X25519 identity file with mode 0600 (refusing to overwrite) and
/// returns its recipient.
pub fn write_new_identity(file: &Path) -> Result<String> {
    let id = age::x25519::Identity::generate();
    let public = id.to_public().to_string();
    let mut f = create_key_file(file, "identity file")?;
    write_identity(&mut f, &id, &public)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write identity file {}", file.display()))?;
    Ok(public)
}

pub fn write_identity(
    out: &mut dyn Write,
    id: &age::x25519::Identity,
    public: &str,
) -> std::io::Result<()> {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    writeln!(out, "# created: {now} by coffer keygen")?;
    writeln!(out, "# public key: {public}")?;
    writeln!(out, "{}", id.to_string().expose_secret())
}
