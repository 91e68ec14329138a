//! A retention section must keep something: prune applies it after every backup,
//! and a policy that keeps nothing deletes every snapshot, the new one included.

use coffer_config::{ConfigError, Retention, load_str};
use std::path::Path;

const RECIPIENT: &str = "age12e2ma5eqx5585k755cmgeh6vmfzjfc5smtg9yh353lgcs28nu3dqe2fxrf";

fn load(retention: &str) -> Result<Option<Retention>, String> {
    let text = format!(
        "[encryption]\nrecipients = [\"{RECIPIENT}\"]\n\n[targets.local]\ntype = \"local\"\npath = \"/b\"\n\n[jobs.kadi]\ntargets = [\"local\"]\n\n[[jobs.kadi.sources]]\nname = \"storage\"\ntype = \"directory\"\npath = \"/s\"\n\n[jobs.kadi.retention]\n{retention}"
    );
    match load_str(&text, Path::new("test.toml"), Path::new("/base")) {
        Ok(c) => Ok(c.jobs["kadi"].retention.clone()),
        Err(e @ ConfigError::Invalid(_)) => Err(e.to_string()),
        Err(e) => panic!("unexpected error kind: {e}"),
    }
}

#[test]
fn a_retention_without_rules_is_refused() {
    let e = load("").expect_err("keeps nothing");
    assert!(e.contains("keeps nothing"), "{e}");
}

#[test]
fn a_zero_keep_within_is_refused_alone_or_with_other_rules() {
    for text in [
        "keep_within = \"0s\"\n",
        "keep_within = \"0d\"\n",
        "keep_last = 3\nkeep_within = \"0s\"\n",
    ] {
        let e = load(text).expect_err(text);
        assert!(e.contains("jobs.kadi.retention.keep_within"), "{e}");
        assert!(e.contains("keeps no snapshot"), "{e}");
    }
}

#[test]
fn a_keep_within_alone_is_a_policy() {
    let r = load("keep_within = \"7d\"\n")
        .expect("valid")
        .expect("a policy");
    assert_eq!(
        r.keep_within,
        Some(std::time::Duration::from_secs(7 * 86_400))
    );
}

#[test]
fn keep_within_reads_as_words() {
    let r = load("keep_last = 7\nkeep_within = \"2d\"\n")
        .expect("valid")
        .expect("a policy");
    assert_eq!(r.to_string(), "keep last 7, within 2 days");
    let r = load("keep_within = \"36h\"\n")
        .expect("valid")
        .expect("a policy");
    assert_eq!(r.to_string(), "keep within 1 day 12 hours");
}
