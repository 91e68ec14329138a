//! Validation of `[encryption]`: the recipients every object is encrypted to (from
//! the config and from `recipients_file`), the identity, the signing key and the
//! trusted signers. Its own module because it is the security-relevant section:
//! a recipient that does not parse or a private key pasted as a recipient must be
//! refused here, with its line, before any backup runs; so is the example key
//! from `config/examples/`, whose private half is not the operator's.

use super::Validator;
use crate::locate::{dotted, item, keys};
use crate::raw::RawEncryption;
use crate::recipients;
use crate::types::{Encryption, Recipient};
use std::path::Path;

impl Validator<'_> {
    pub(super) fn encryption(
        &mut self,
        raw: Option<RawEncryption>,
        state_dir: &Path,
        restore_only: bool,
    ) -> Encryption {
        let Some(raw) = raw else {
            self.problem(
                &[],
                "missing [encryption] section: add `recipients = [\"age1...\"]` (create a key with `coffer keygen`)",
            );
            return Encryption {
                recipients: Vec::new(),
                identity_file: None,
                create_identity_if_missing: false,
                signing_key: state_dir.join("signing.key"),
                trusted_signers: Vec::new(),
            };
        };
        let mut recipients = Vec::new();
        for (i, r) in raw.recipients.iter().enumerate() {
            let at = item(&keys(&["encryption", "recipients"]), i);
            match recipients::parse(r.trim()) {
                Ok(key) => match recipients::example_key_refusal(&key) {
                    Some(why) => self.problem(&at, why),
                    None => recipients.push(Recipient {
                        key,
                        text: r.trim().to_string(),
                        origin: format!("{} ({})", self.file.display(), dotted(&at)),
                    }),
                },
                Err(msg) => self.problem(&at, msg),
            }
        }
        if let Some(rf) = &raw.recipients_file {
            let at = keys(&["encryption", "recipients_file"]);
            if let Some((path, content)) = self.read_file(&at, rf) {
                let before = recipients.len();
                for (line, text) in recipients::lines(&content) {
                    match recipients::parse(text) {
                        Ok(key) => match recipients::example_key_refusal(&key) {
                            Some(why) => {
                                self.problem(&at, format!("{}:{line}: {why}", path.display()))
                            }
                            None => recipients.push(Recipient {
                                key,
                                text: text.to_string(),
                                origin: format!("{}:{line}", path.display()),
                            }),
                        },
                        Err(msg) => self.problem(&at, format!("{}:{line}: {msg}", path.display())),
                    }
                }
                if recipients.len() == before {
                    self.problem(&at, format!("{} holds no recipients", path.display()));
                }
            }
        }
        let identity_file = raw.identity_file.as_deref().map(|f| self.abs(f));
        if raw.create_identity_if_missing && identity_file.is_none() {
            self.problem(
                &keys(&["encryption", "create_identity_if_missing"]),
                "needs identity_file: the path where the new identity is written",
            );
        }
        // Only a backup encrypts: a config whose jobs all lack sources (a new host
        // restoring what an old one wrote) needs the identity, not the recipients.
        if recipients.is_empty()
            && !raw.create_identity_if_missing
            && !restore_only
            && self.problems.is_empty()
        {
            self.problem(
                &keys(&["encryption"]),
                "no recipients: set `recipients = [\"age1...\"]` or `recipients_file`; `coffer keygen` makes a key pair",
            );
        }
        let mut trusted_signers = Vec::new();
        for (i, text) in raw.trusted_signers.iter().enumerate() {
            match text.parse::<crate::Signer>() {
                Ok(s) => trusted_signers.push(s),
                Err(msg) => self.problem(&item(&keys(&["encryption", "trusted_signers"]), i), msg),
            }
        }
        Encryption {
            recipients,
            identity_file,
            create_identity_if_missing: raw.create_identity_if_missing,
            signing_key: raw
                .signing_key
                .as_deref()
                .map_or_else(|| state_dir.join("signing.key"), |f| self.abs(f)),
            trusted_signers,
        }
    }
}
