//! The reference config (`examples/coffer.toml`, installed as /etc/coffer/coffer.toml
//! and printed in coffer.toml(5)) documents every key coffer reads: the list of
//! keys comes from the config's serde structures (`coffer_config::config_keys`),
//! so a field added there without a line here fails this test.
//!
//! What counts as documenting a key, as the example's header says: a line
//! `key = value` or `# key = value` (one `#`, at most one space, then the key) in
//! the table the key belongs to, after a header `[table]` or `# [table]`; a key of
//! an inline table (`retention = { keep_daily = 14 }`) counts as well. Prose lines
//! (`#   command = [...]`, indented further) do not count.

use coffer_config::{EXAMPLE_KEYS, config_keys, load_str, source_keys, source_types};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn reference() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/coffer.toml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A line without its comment sign, and whether it had one: `# key = 1` is
/// `key = 1`, `#   prose = x` stays prose (starts with spaces).
fn uncommented(line: &str) -> (&str, bool) {
    match line.strip_prefix('#') {
        Some(rest) => (rest.strip_prefix(' ').unwrap_or(rest), true),
        None => (line, false),
    }
}

/// `[a.b]` or `[[a.b]]` (a comment may follow): its dotted parts and whether it
/// is an array of tables.
fn header(text: &str) -> Option<(Vec<String>, bool)> {
    let array = text.starts_with("[[");
    let inner = text.trim_start_matches('[');
    let end = inner.find(']')?;
    let parts = inner[..end]
        .split('.')
        .map(|s| s.trim().to_string())
        .collect();
    Some((parts, array))
}

/// The key written at the start of `text` (`key = ...`), if it is a key line.
fn key_line(text: &str) -> Option<&str> {
    let (key, _) = text.split_once('=')?;
    let key = key.trim_end();
    (!key.is_empty()
        && text.starts_with(key)
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'))
    .then_some(key)
}

/// What the reference documents: every key path, and per table of typed blocks
/// (`targets.*`, `jobs.*.sources[]`) the keys written in blocks of each type.
#[derive(Default)]
struct Documented {
    paths: BTreeSet<String>,
    by_type: BTreeMap<(String, String), BTreeSet<String>>,
    /// Lines that name no key of the config (a renamed or removed key).
    unknown: Vec<String>,
}

fn documented(text: &str) -> Documented {
    let schema: BTreeSet<String> = config_keys().into_iter().map(|k| k.path).collect();
    let has = |p: &str| {
        schema
            .iter()
            .any(|s| s == p || s.starts_with(&format!("{p}.")))
    };
    let join = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_string()
        } else {
            format!("{a}.{b}")
        }
    };
    let mut doc = Documented::default();
    // The table the lines below belong to, the keys of the current block and its type.
    let mut table = String::new();
    let mut block: (BTreeSet<String>, Option<String>) = Default::default();
    let mut under_commented_header = false;
    let end_block =
        |doc: &mut Documented, table: &str, block: &mut (BTreeSet<String>, Option<String>)| {
            let (keys, kind) = std::mem::take(block);
            if let Some(kind) = kind {
                doc.by_type
                    .entry((table.to_string(), kind))
                    .or_default()
                    .extend(keys);
            }
        };
    for (n, line) in text.lines().enumerate() {
        let (text, commented) = uncommented(line);
        if text.starts_with('[') {
            let Some((parts, array)) = header(text) else {
                doc.unknown.push(format!("line {}: {line}", n + 1));
                continue;
            };
            end_block(&mut doc, &table, &mut block);
            // Each part is a key of the schema, or a name the operator gives (`*`).
            let mut path = String::new();
            for part in &parts {
                let named = join(&path, part);
                path = if schema.contains(&named) {
                    named
                } else if has(&join(&path, "*")) {
                    join(&path, "*")
                } else {
                    doc.unknown.push(format!("line {}: {line}", n + 1));
                    named
                };
                doc.paths.insert(path.clone());
            }
            if array {
                path.push_str("[]");
            }
            table = path;
            under_commented_header = commented;
            continue;
        }
        let Some(key) = key_line(text) else { continue };
        assert!(
            commented || !under_commented_header,
            "line {}: `{line}` is a key of the table above, but the header nearest above is \
             commented out: a reader (and this test) would take it for a key of that one",
            n + 1
        );
        // The line alone parses as TOML unless its value goes on over more lines.
        let parsed: Option<toml::Table> = toml::from_str(text).ok();
        let mut found = Vec::new();
        match &parsed {
            Some(t) => walk(&table, t, &mut found),
            None => found.push(join(&table, key)),
        }
        for p in found {
            if schema.contains(&p) {
                doc.paths.insert(p);
            } else {
                doc.unknown.push(format!("line {} ({p}): {line}", n + 1));
            }
        }
        block.0.insert(key.to_string());
        if key == "type"
            && let Some(toml::Value::String(kind)) = parsed.as_ref().and_then(|t| t.get("type"))
        {
            block.1 = Some(kind.clone());
        }
    }
    end_block(&mut doc, &table, &mut block);
    doc
}

/// Every key path of a parsed line, inline tables included.
fn walk(at: &str, table: &toml::Table, out: &mut Vec<String>) {
    for (k, v) in table {
        let path = if at.is_empty() {
            k.clone()
        } else {
            format!("{at}.{k}")
        };
        out.push(path.clone());
        match v {
            toml::Value::Table(t) => walk(&path, t, out),
            toml::Value::Array(items) => {
                for item in items {
                    if let toml::Value::Table(t) = item {
                        walk(&format!("{path}[]"), t, out);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The keys of the schema the text leaves out, per source and target type too.
fn missing(text: &str) -> Vec<String> {
    let doc = documented(text);
    let mut missing: Vec<String> = config_keys()
        .into_iter()
        .filter(|k| !doc.paths.contains(&k.path))
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
    let unknown = documented(&text).unknown;
    assert!(
        unknown.is_empty(),
        "config/examples/coffer.toml shows keys the config does not have: {unknown:#?}"
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
    assert_eq!(cfg.targets.len(), 2, "{:?}", cfg.targets.keys());
}
