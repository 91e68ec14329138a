//! Snapshot signers: the ed25519 public keys whose signature on a snapshot's commit
//! marker makes restore, check and deep verify accept that snapshot. The age
//! recipients are public, so anyone who can write to a target can make objects that
//! decrypt; only a signature says that this host (or another trusted one) wrote them.
//! Parsed here once, so a typo is a config error with its line, not a refusal later.

use std::fmt;
use std::str::FromStr;

/// How a public signing key is written: `ed25519:` and 64 hex digits.
pub const SIGNER_PREFIX: &str = "ed25519:";

#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signer(pub ed25519_dalek::VerifyingKey);

impl FromStr for Signer {
    type Err = String;
    fn from_str(text: &str) -> Result<Signer, String> {
        let hex_part = text.trim().strip_prefix(SIGNER_PREFIX).ok_or_else(|| {
            format!(
                "a signer is written \"{SIGNER_PREFIX}\" and 64 hex digits (printed by `coffer keygen --signing` and by the first backup)"
            )
        })?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut bytes)
            .map_err(|e| format!("not 64 hex digits after \"{SIGNER_PREFIX}\": {e}"))?;
        ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map(Signer)
            .map_err(|_| "not a valid ed25519 public key".to_string())
    }
}

impl fmt::Display for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SIGNER_PREFIX}{}", hex::encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signers_round_trip_and_bad_ones_say_why() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let text = Signer(key.verifying_key()).to_string();
        assert!(
            text.starts_with("ed25519:") && text.len() == 8 + 64,
            "{text}"
        );
        assert_eq!(text.parse::<Signer>().expect("parses").to_string(), text);
        assert!(
            "age1xyz"
                .parse::<Signer>()
                .expect_err("prefix")
                .contains("64 hex")
        );
        assert!(
            "ed25519:zz"
                .parse::<Signer>()
                .expect_err("hex")
                .contains("hex")
        );
    }
}
