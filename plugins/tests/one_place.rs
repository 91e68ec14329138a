//! Checks the promise of docs/development.md: a source type lives in its module
//! (`plugins/src/sources/<type>`), the registry and config's key table, and a
//! target type in its module (`plugins/src/targets/<type>`), the targets'
//! registry and config's target table. It reads the workspace's production code
//! (lines before `#[cfg(test)]`; test files and `tests/` folders are left out:
//! a test may build any source it likes) and lists, for every variant of
//! `SourceType`/`SourceKind` and `TargetKind`, the files that name it. A file
//! outside the allowed places that names one fails the test, with the list.
//!
//! A text check rather than the compiler's: the compiler already makes the
//! registry's matches exhaustive and every `Kind` method required, but it cannot
//! see a `_` arm or an `if kind == SourceType::X` in the agent that a new type
//! would silently fall through; naming the variant is what this test catches.
//! Aliases (`SourceKind as K`) and glob imports of the variants are refused so
//! that a mention cannot hide.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("plugins/ is inside the workspace")
        .to_path_buf()
}

/// Every production `.rs` file of the crates, as (path relative to the
/// workspace, production text).
fn production_files() -> Vec<(String, String)> {
    let root = workspace();
    let mut out = Vec::new();
    for dir in ["agent/src", "plugins/src", "config/src"] {
        let mut stack = vec![root.join(dir)];
        while let Some(d) = stack.pop() {
            let entries = std::fs::read_dir(&d)
                .unwrap_or_else(|e| panic!("cannot list {}: {e}", d.display()));
            for e in entries {
                let path = e.expect("a directory entry").path();
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if path.is_dir() {
                    if name != "tests" {
                        stack.push(path);
                    }
                } else if name.ends_with(".rs") && !name.ends_with("_tests.rs") {
                    let text = std::fs::read_to_string(&path)
                        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
                    let production = match text.find("\n#[cfg(test)]") {
                        Some(at) => text[..at].to_string(),
                        None => text,
                    };
                    let rel = path
                        .strip_prefix(&root)
                        .expect("under the workspace")
                        .to_string_lossy()
                        .into_owned();
                    out.push((rel, production));
                }
            }
        }
    }
    out.sort();
    out
}

/// The variants of `enum <name>` in `file`, as written.
fn variants(file: &str, name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(workspace().join(file)).expect("the enum's file");
    let start = text
        .find(&format!("pub enum {name} {{"))
        .unwrap_or_else(|| panic!("no `pub enum {name}` in {file}"));
    let body = &text[start..];
    let body = &body[body.find('{').expect("a body") + 1..body.find("\n}").expect("an end")];
    let mut out = Vec::new();
    let mut depth = 0;
    for line in body.lines() {
        let line = line.trim();
        if depth == 0 && !line.starts_with("//") && !line.starts_with('#') {
            let ident: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !ident.is_empty() {
                out.push(ident);
            }
        }
        depth += line.matches('{').count() as i32 - line.matches('}').count() as i32;
    }
    out
}

/// Where each `<enum>::<variant>` is named: variant -> files, and the lines
/// that name it without being allowed by `allowed(file, variant, line)`.
fn mentions(
    files: &[(String, String)],
    enums: &[&str],
    names: &[String],
    allowed: impl Fn(&str, &str, &str) -> bool,
) -> (BTreeMap<String, Vec<String>>, Vec<String>) {
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut outside = Vec::new();
    for (file, text) in files {
        for (n, line) in text.lines().enumerate() {
            for e in enums {
                let mut rest = line;
                while let Some(at) = rest.find(&format!("{e}::")) {
                    let before = &rest[..at];
                    let after = &rest[at + e.len() + 2..];
                    rest = after;
                    if before.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                        continue; // `RawSourceKind::`, not this enum
                    }
                    let v: String = after
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !names.contains(&v) {
                        continue; // a method or constant, not a variant
                    }
                    let files = seen.entry(v.clone()).or_default();
                    if files.last() != Some(file) {
                        files.push(file.clone());
                    }
                    if !allowed(file, &v, line) {
                        outside.push(format!("{file}:{}: {}", n + 1, line.trim()));
                    }
                }
                for hidden in [format!("{e} as "), format!("{e}::*")] {
                    // `<SourceType as Deserialize>` names a trait, not an alias.
                    let qualified = format!("<{e} as ");
                    if line.contains(&hidden) && !line.contains(&qualified) {
                        outside.push(format!(
                            "{file}:{}: `{hidden}` hides which type is named: {}",
                            n + 1,
                            line.trim()
                        ));
                    }
                }
            }
        }
    }
    (seen, outside)
}

/// Files owned by other branches of this issue that still name a source type:
/// each is a violation that is being removed there, listed so that this test
/// passes meanwhile, and failing once it is gone so that the entry goes too.
const PENDING: &[(&str, &str)] = &[];

#[test]
fn a_source_type_is_named_only_in_its_module_the_registry_and_configs_key_table() {
    let files = production_files();
    let names = variants("config/src/source_types.rs", "SourceType");
    assert!(names.len() >= 6, "{names:?}");
    assert_eq!(
        names,
        variants("config/src/source_types.rs", "SourceKind"),
        "SourceType and SourceKind list the same types"
    );
    let allowed = |file: &str, v: &str, line: &str| {
        let module = v.to_lowercase();
        let own = file == format!("plugins/src/sources/{module}.rs")
            || file.starts_with(&format!("plugins/src/sources/{module}/"));
        let shared = [
            "plugins/src/sources/registry.rs",
            // config's key table: the type's name, its keys and their defaults.
            "config/src/source_types.rs",
            "config/src/load/sources.rs",
        ]
        .contains(&file);
        // A directory is the one type the format itself knows: it is stored as a
        // tree of entries that the agent restores, verifies and browses. The agent
        // may ask "is this the tree?" (a comparison), never match over types.
        let tree_question = v == "Directory"
            && (line.contains("== coffer_config::SourceType::Directory")
                || line.contains("!= coffer_config::SourceType::Directory")
                || line.contains("== SourceType::Directory")
                || line.contains("!= SourceType::Directory")
                || line.contains("matches!("));
        own || shared || tree_question || PENDING.contains(&(file, v))
    };
    let (seen, outside) = mentions(&files, &["SourceType", "SourceKind"], &names, allowed);
    for name in &names {
        eprintln!("{name}: {}", seen.get(name).map_or(0, Vec::len));
        for f in seen.get(name).into_iter().flatten() {
            eprintln!("  {f}");
        }
    }
    assert!(
        outside.is_empty(),
        "a source type is named outside its module (plugins/src/sources/<type>), \
         plugins/src/sources/registry.rs and config's key table; ask the type through \
         `registry::kind` or a method instead (docs/development.md):\n{}",
        outside.join("\n")
    );
    for (file, v) in PENDING {
        assert!(
            seen.get(*v).is_some_and(|f| f.iter().any(|f| f == file)),
            "{file} no longer names {v}: remove it from PENDING"
        );
    }
}

#[test]
fn a_target_type_is_named_only_in_its_module_the_registry_and_configs_table() {
    let files = production_files();
    let names = variants("config/src/types.rs", "TargetKind");
    assert!(names.len() >= 2, "{names:?}");
    let allowed = |file: &str, v: &str, _line: &str| {
        let module = v.to_lowercase();
        file == format!("plugins/src/targets/{module}.rs")
            || file.starts_with(&format!("plugins/src/targets/{module}/"))
            || [
                "plugins/src/targets/registry.rs",
                // config's target table: its keys, and how `config check` shows it.
                "config/src/types.rs",
                "config/src/load/targets.rs",
            ]
            .contains(&file)
    };
    let (seen, outside) = mentions(&files, &["TargetKind"], &names, allowed);
    for name in &names {
        eprintln!("{name}: {:?}", seen.get(name));
    }
    assert!(
        outside.is_empty(),
        "a target type is named outside its module (plugins/src/targets/<type>), \
         plugins/src/targets/registry.rs and config's target table:\n{}",
        outside.join("\n")
    );
}
