//! The reference config (`examples/coffer.toml`, installed as /etc/coffer/coffer.toml
//! and printed in coffer.toml(5)) shows every key coffer reads: the list of keys
//! comes from the config's serde structures (`coffer_config::config_keys`), so a
//! field added there without a line in the reference fails this test. What counts
//! as showing a key is `coffer_config::reference`'s header (`key = ` or `# key = `
//! in the key's table).

use coffer_config::reference::{self, key_line, uncommented};
use coffer_config::{EXAMPLE_KEYS, config_keys, load_str, source_keys, source_types};
use std::collections::BTreeSet;
use std::path::Path;

fn reference() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/coffer.toml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The keys of the schema the text leaves out, per source and target type too.
fn missing(text: &str) -> Vec<String> {
    let doc = reference::read(text);
    let mut missing: Vec<String> = config_keys()
        .into_iter()
        .filter(|k| !doc.keys.contains_key(&k.path))
        .map(|k| k.path)
        .collect();
    for kind in source_types() {
        let shown = doc
            .by_type
            .get(&("jobs.*.sources[]".to_string(), kind.to_string()));
        for key in source_keys(kind) {
            if !shown.is_some_and(|s| s.contains(key)) {
                missing.push(format!(
                    "jobs.*.sources[].{key} in a source of type = \"{kind}\""
                ));
            }
        }
    }
    let target_types = config_keys()
        .into_iter()
        .find(|k| k.path == "targets.*.type")
        .map(|k| k.choices)
        .unwrap_or_default();
    assert!(!target_types.is_empty(), "the schema shows no target types");
    for kind in target_types {
        if !doc
            .by_type
            .contains_key(&("targets.*".to_string(), kind.to_string()))
        {
            missing.push(format!("a target of type = \"{kind}\""));
        }
    }
    missing
}

#[test]
fn the_reference_documents_every_key_of_the_config() {
    let text = reference();
    let missing = missing(&text);
    assert!(
        missing.is_empty(),
        "config/examples/coffer.toml does not document (as `key = ` or `# key = `, see \
         config/tests/reference.rs): {missing:#?}"
    );
    let doc = reference::read(&text);
    assert!(
        doc.unknown.is_empty(),
        "config/examples/coffer.toml shows keys the config does not have: {:#?}",
        doc.unknown
    );
    assert!(
        doc.misplaced.is_empty(),
        "config/examples/coffer.toml: keys in effect below a commented-out header (a reader \
         takes them for keys of that table): {:#?}",
        doc.misplaced
    );
}

/// The check above fails when a key goes: for every key of the config, the
/// reference without the lines that write it (as a key, inline too) is refused.
#[test]
fn taking_any_key_out_of_the_reference_is_noticed() {
    let text = reference();
    let writes = |line: &str, key: &str| {
        line.match_indices(key).any(|(i, _)| {
            let before = line[..i].chars().next_back();
            let after = line[i + key.len()..].trim_start();
            !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') && after.starts_with('=')
        })
    };
    let names: BTreeSet<String> = config_keys()
        .iter()
        .map(|k| k.name().trim_end_matches("[]").to_string())
        .collect();
    assert!(names.len() > 50, "{names:?}");
    for key in names {
        let without: String = text
            .lines()
            .filter(|l| !writes(l, &key))
            .map(|l| format!("{l}\n"))
            .collect();
        if without == format!("{text}\n") || without == text {
            // Only a table written as a header (`[agent]`): taken out with its header.
            continue;
        }
        let gone = missing(&without);
        assert!(
            gone.iter().any(|m| m.ends_with(&format!(".{key}"))
                || m.contains(&format!(".{key} "))
                || *m == key),
            "{key} taken out, yet not missed: {gone:?}"
        );
    }
}

/// The commented-out blocks (the other source and target types, the check) are
/// complete: uncommented with the secret files they name made, they load as a
/// valid config, and then the job has a source of every type.
#[test]
fn the_commented_out_blocks_load_when_uncommented() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret\n").expect("write");
    let mut out = String::new();
    let mut in_block = false;
    for line in reference().lines() {
        let (body, commented) = uncommented(line);
        if !commented {
            in_block = false;
        } else if body.starts_with('[') {
            in_block = true;
        }
        if in_block && (body.starts_with('[') || key_line(body).is_some()) {
            out.push_str(body);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    let own = "age12e2ma5eqx5585k755cmgeh6vmfzjfc5smtg9yh353lgcs28nu3dqe2fxrf";
    let mut text = EXAMPLE_KEYS.iter().fold(out, |t, k| t.replace(k, own));
    for file in [
        "/etc/coffer/kadi-db-password",
        "/etc/coffer/s3-secret",
        "/etc/coffer/redis-password",
        "/etc/coffer/mysql-password",
    ] {
        text = text.replace(file, &secret.display().to_string());
    }
    let cfg = load_str(&text, Path::new("coffer.toml"), Path::new("/repo"))
        .unwrap_or_else(|e| panic!("the reference with its blocks uncommented:\n{e}\n\n{text}"));
    let job = &cfg.jobs["kadi"];
    let kinds: BTreeSet<&str> = job.sources.iter().map(|s| s.kind.type_name()).collect();
    let all: BTreeSet<&str> = source_types().into_iter().map(|t| t.as_str()).collect();
    assert_eq!(kinds, all, "a source type has no block");
    assert!(job.check.is_some(), "the check is not shown");
    assert_eq!(cfg.targets.len(), 4, "{:?}", cfg.targets.keys());
}
