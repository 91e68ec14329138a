//! Parses recipient strings into the keys age encrypts to, and reads recipients files
//! (one per line, `#` comments and blank lines ignored, as the `age -R` format).
//! Parsed once, here: the config holds the parsed key, so a recipient that loaded
//! is one that encrypts, and the backup has nothing left to parse or to refuse.

use std::fmt;
use std::str::FromStr;

/// A public key every object is encrypted to.
#[derive(Clone)]
pub enum RecipientKey {
    X25519(age::x25519::Recipient),
    Ssh(age::ssh::Recipient),
}

impl RecipientKey {
    /// The key as age's encryptor takes it.
    pub fn to_age(&self) -> Box<dyn age::Recipient + Send + Sync> {
        match self {
            RecipientKey::X25519(r) => Box::new(r.clone()),
            RecipientKey::Ssh(r) => Box::new(r.clone()),
        }
    }
}

/// The public key as text: age's `Debug` of an ssh key spells out its numbers.
impl fmt::Debug for RecipientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecipientKey::X25519(r) => f.debug_tuple("X25519").field(&r.to_string()).finish(),
            RecipientKey::Ssh(r) => f.debug_tuple("Ssh").field(&r.to_string()).finish(),
        }
    }
}

/// The key a recipient string means, or why it is not usable, in words for the operator.
pub fn parse(text: &str) -> Result<RecipientKey, String> {
    if text.starts_with("age1") {
        age::x25519::Recipient::from_str(text)
            .map(RecipientKey::X25519)
            .map_err(|e| format!("not a valid age X25519 recipient: {e}"))
    } else if text.starts_with("ssh-") {
        age::ssh::Recipient::from_str(text)
            .map(RecipientKey::Ssh)
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

/// Public keys printed in coffer's example configs (`config/examples/`, which took
/// it from age's own documentation). Whoever copies an example unchanged encrypts
/// every backup to a key that is not theirs and whose private half may be
/// published: such backups are readable by others and not restorable by them.
/// The quick start is not here: it makes its own key. A test keeps this list in
/// step with the examples.
pub const EXAMPLE_KEYS: &[&str] =
    &["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"];

/// Why `key` must not be a recipient, when it is one of [`EXAMPLE_KEYS`].
pub fn example_key_refusal(key: &RecipientKey) -> Option<String> {
    let RecipientKey::X25519(r) = key else {
        return None;
    };
    let text = r.to_string();
    EXAMPLE_KEYS.contains(&text.as_str()).then(|| {
        format!(
            "{text} is the example key from coffer's example configs, not yours: its private \
             half may be published, so backups encrypted to it are readable by others and not \
             restorable by you; make your own key with `coffer keygen --output FILE` (keep FILE \
             off this host if you can) and put the public key it prints here"
        )
    })
}

/// The non-comment lines of a recipients file with their 1-based line numbers.
pub fn lines(content: &str) -> impl Iterator<Item = (usize, &str)> {
    content
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const X25519: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
    const SSH: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN alice@rust";

    #[test]
    fn recipients_parse_into_the_key_age_encrypts_to() {
        match parse(X25519).expect("x25519") {
            RecipientKey::X25519(r) => assert_eq!(r.to_string(), X25519),
            other => panic!("{other:?}"),
        }
        let ssh = parse(SSH).expect("ssh");
        assert!(matches!(ssh, RecipientKey::Ssh(_)), "{ssh:?}");
        assert!(
            format!("{ssh:?}").starts_with("Ssh(\"ssh-ed25519 AAAA"),
            "{ssh:?}"
        );
        // What the backup hands to age: one stanza per recipient.
        let keys = [parse(X25519).expect("x25519"), ssh];
        let boxed: Vec<_> = keys.iter().map(RecipientKey::to_age).collect();
        let encryptor = age::Encryptor::with_recipients(
            boxed.iter().map(|r| r.as_ref() as &dyn age::Recipient),
        )
        .expect("an encryptor");
        let mut out = Vec::new();
        let mut w = encryptor.wrap_output(&mut out).expect("wrap");
        std::io::Write::write_all(&mut w, b"x").expect("write");
        w.finish().expect("finish");
        assert!(out.starts_with(b"age-encryption.org/v1\n-> X25519 "));
    }

    #[test]
    fn the_example_key_is_refused_and_others_are_not() {
        let why = example_key_refusal(&parse(X25519).expect("x25519")).expect("refused");
        assert!(
            why.contains(X25519) && why.contains("coffer keygen"),
            "{why}"
        );
        let own = parse("age12e2ma5eqx5585k755cmgeh6vmfzjfc5smtg9yh353lgcs28nu3dqe2fxrf")
            .expect("x25519");
        assert!(example_key_refusal(&own).is_none());
        assert!(example_key_refusal(&parse(SSH).expect("ssh")).is_none());
    }

    #[test]
    fn unusable_recipients_say_why() {
        assert!(parse("age1xyz").expect_err("bad").contains("X25519"));
        assert!(parse("ssh-ed25519 AAAA").expect_err("bad").contains("ssh"));
        let secret = "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ";
        let e = parse(secret).expect_err("a private key");
        assert!(
            e.contains("private age identity") && !e.contains(secret),
            "{e}"
        );
        assert!(parse("hello").expect_err("bad").contains("expected"));
    }
}
