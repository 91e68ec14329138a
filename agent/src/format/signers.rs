//! Who signed a job's snapshots on a target, told to an operator who must decide
//! whether to trust a key: a new host restoring what one that is gone wrote. A key
//! is shown with what it signed (how many snapshots, from when to when, on which
//! hosts), so trusting it is a decision about known snapshots, never a key pasted
//! from an error message on first use; and a key given with `--trust-signer` that
//! signed none of the job's snapshots is refused, since it can only be a mistake.
//!
//! Dates and hosts come from the markers: each is the word of the key that signed
//! it, shown as that key's claim, escaped, never used for anything else.

use crate::format::Marker;
use crate::format::seal::{Seal, Trust};
use std::collections::BTreeSet;
use time::OffsetDateTime;

/// The snapshots one key (or no key: unsigned) signed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Signed {
    pub seal: Seal,
    pub snapshots: usize,
    pub first: OffsetDateTime,
    pub last: OffsetDateTime,
    pub hosts: BTreeSet<String>,
}

impl Signed {
    /// One line: the key, trusted or not, and what it signed.
    pub(crate) fn describe(&self, trust: &Trust) -> String {
        let who = match &self.seal {
            Seal::Signed(s) if trust.is_trusted(s) => format!("{s} (trusted)"),
            Seal::Signed(s) => format!("{s} (NOT trusted)"),
            Seal::Unsigned => {
                "unsigned (by a coffer older than 0.2, or by anyone who can write to the target)"
                    .to_string()
            }
        };
        format!(
            "{who}: {}, {}",
            crate::units::count(self.snapshots as u64, "snapshot"),
            self.when_and_where()
        )
    }

    /// "finished A to B, on host H": the signer's own word, escaped.
    fn when_and_where(&self) -> String {
        let hosts: Vec<String> = self
            .hosts
            .iter()
            .map(|h| coffer_plugins::escape_controls(h).into_owned())
            .collect();
        format!(
            "finished {} to {}, on host {}",
            day_time(self.first),
            day_time(self.last),
            hosts.join(", ")
        )
    }
}

fn day_time(t: OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    t.to_offset(time::UtcOffset::UTC)
        .format(&f)
        .unwrap_or_else(|_| t.to_string())
}

/// Every key that signed one of `markers`, unsigned ones last, each with what it
/// signed; the key that signed most first.
pub(crate) fn who_signed<'a>(markers: impl IntoIterator<Item = &'a Marker>) -> Vec<Signed> {
    let mut out: Vec<Signed> = Vec::new();
    for m in markers {
        match out.iter_mut().find(|s| s.seal == m.seal) {
            Some(s) => {
                s.snapshots += 1;
                s.first = s.first.min(m.finished_at);
                s.last = s.last.max(m.finished_at);
                s.hosts.insert(m.host.clone());
            }
            None => out.push(Signed {
                seal: m.seal.clone(),
                snapshots: 1,
                first: m.finished_at,
                last: m.finished_at,
                hosts: BTreeSet::from([m.host.clone()]),
            }),
        }
    }
    out.sort_by_key(|s| (s.seal == Seal::Unsigned, std::cmp::Reverse(s.snapshots)));
    out
}

/// The lines `who_signed` gives, indented, for an error or a notice.
pub(crate) fn listing<'a>(markers: impl IntoIterator<Item = &'a Marker>, trust: &Trust) -> String {
    lines(&who_signed(markers), trust)
}

fn lines(who: &[Signed], trust: &Trust) -> String {
    who.iter()
        .map(|s| format!("\n  {}", s.describe(trust)))
        .collect()
}

/// Checks the keys the command line adds (`--trust-signer`) against what the
/// target holds: one that signed none of `markers` is an error that lists who
/// did; each other one is announced (what it signed), so the operator sees what
/// this command is about to trust before anything is read with it.
pub(crate) fn vet_given(
    trust: &Trust,
    markers: &[Marker],
    job: &str,
    target: &str,
) -> Result<Vec<String>, String> {
    if trust.given().is_empty() {
        return Ok(Vec::new());
    }
    let mut notices = Vec::new();
    let who = who_signed(markers);
    for key in trust.given() {
        let Some(s) = who.iter().find(|s| s.seal == Seal::Signed(*key)) else {
            return Err(format!(
                "--trust-signer {key} signed none of the {} of job {job} on target {target}; \
                 they are signed by:{}\ncheck the key you were given against the `public:` line \
                 of the old host's signing key file (or what its first backup logged)",
                crate::units::count(markers.len() as u64, "snapshot"),
                if markers.is_empty() {
                    "\n  (no snapshots)".to_string()
                } else {
                    lines(&who, trust)
                }
            ));
        };
        if trust.is_configured(key) {
            continue;
        }
        notices.push(format!(
            "trusting {key} for this command only (--trust-signer): on target {target} it signed \
             {} of job {job}, {}; to trust it for good, add it to [encryption] trusted_signers",
            crate::units::count(s.snapshots as u64, "snapshot"),
            s.when_and_where()
        ));
    }
    Ok(notices)
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_config::Signer;
    use ed25519_dalek::SigningKey;

    fn key(n: u8) -> Signer {
        Signer(SigningKey::from_bytes(&[n; 32]).verifying_key())
    }

    fn marker(id: &str, host: &str, at: i64, seal: Seal) -> Marker {
        let text = format!(
            r#"{{"format":2,"id":"{id}","job":"app","host":"{host}","coffer_version":"0",
               "started_at":"2026-01-01T00:00:00Z","finished_at":"2026-01-01T00:00:00Z",
               "skew_seconds":0,"objects":[]}}"#
        );
        let mut m: Marker = serde_json::from_str(&text).expect("marker");
        m.finished_at += time::Duration::hours(at);
        m.seal = seal;
        m
    }

    fn trust(configured: &[Signer], given: &[Signer]) -> Trust {
        let enc = coffer_config::Encryption {
            recipients: Vec::new(),
            identity_file: None,
            create_identity_if_missing: false,
            signing_key: "/nonexistent/signing.key".into(),
            trusted_signers: configured.to_vec(),
        };
        Trust::new(&enc, given, false)
    }

    #[test]
    fn each_key_is_shown_with_the_snapshots_dates_and_hosts_it_signed() {
        let ms = vec![
            marker("a", "old", 0, Seal::Signed(key(1))),
            marker("b", "old", 48, Seal::Signed(key(1))),
            marker("c", "evil\\u001b[2J", 5, Seal::Signed(key(2))),
            marker("d", "old", 1, Seal::Unsigned),
        ];
        let who = who_signed(&ms);
        assert_eq!(who.len(), 3);
        assert_eq!(who[0].seal, Seal::Signed(key(1)));
        assert_eq!(who[0].snapshots, 2);
        assert_eq!(who[2].seal, Seal::Unsigned);
        let text = listing(&ms, &trust(&[key(1)], &[]));
        assert!(
            text.contains(&format!(
                "{} (trusted): 2 snapshots, finished 2026-01-01 00:00 UTC to 2026-01-03 00:00 UTC, on host old",
                key(1)
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("{} (NOT trusted): 1 snapshot", key(2))),
            "{text}"
        );
        assert!(!text.contains('\u{1b}'), "a host name is escaped: {text}");
    }

    #[test]
    fn a_given_key_that_signed_nothing_is_an_error_and_one_that_did_is_announced() {
        let ms = vec![
            marker("a", "old", 0, Seal::Signed(key(1))),
            marker("b", "old", 24, Seal::Signed(key(1))),
        ];
        let err = vet_given(&trust(&[], &[key(3)]), &ms, "app", "t").expect_err("refused");
        assert!(err.contains("signed none of the 2 snapshots"), "{err}");
        assert!(err.contains(&key(1).to_string()), "{err}");
        let notes = vet_given(&trust(&[], &[key(1)]), &ms, "app", "t").expect("accepted");
        assert_eq!(notes.len(), 1);
        assert!(
            notes[0].contains("it signed 2 snapshots of job app"),
            "{}",
            notes[0]
        );
        // Already configured: nothing to announce, and nothing to refuse.
        assert!(
            vet_given(&trust(&[key(1)], &[key(1)]), &ms, "app", "t")
                .expect("configured")
                .is_empty()
        );
        assert!(
            vet_given(&trust(&[], &[]), &[], "app", "t")
                .expect("none")
                .is_empty()
        );
    }
}
