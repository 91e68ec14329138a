//! Checks that recipient strings are keys age can encrypt to, and reads recipients files
//! (one per line, `#` comments and blank lines ignored, as the `age -R` format).

use std::str::FromStr;

/// Why a recipient string is not usable, in words for the operator.
pub fn check(text: &str) -> Result<(), String> {
    if text.starts_with("age1") {
        age::x25519::Recipient::from_str(text)
            .map(|_| ())
            .map_err(|e| format!("not a valid age X25519 recipient: {e}"))
    } else if text.starts_with("ssh-") {
        age::ssh::Recipient::from_str(text)
            .map(|_| ())
            .map_err(|e| format!("not a usable ssh recipient: {e:?}"))
    } else if text.starts_with("AGE-SECRET-KEY-") {
        // Never echo the text: it is a private key.
        Err(
            "this is a private age identity, not a recipient; put its public key \
             (`age-keygen -y FILE` or `coffer keygen`) here and keep the identity in identity_file"
                .to_string(),
        )
    } else {
        Err(
            "expected an age recipient (age1...) or an ssh public key (ssh-ed25519 ...)"
                .to_string(),
        )
    }
}

/// The non-comment lines of a recipients file with their 1-based line numbers.
pub fn lines(content: &str) -> impl Iterator<Item = (usize, &str)> {
    content
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}
