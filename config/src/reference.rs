//! Reads the annotated reference config (config/examples/coffer.toml) as a
//! document: where each key is shown, in effect or commented out, and the comment
//! that explains it. One reader for the test that proves the reference shows every
//! key (config/tests/reference.rs) and for coffer.toml(5), which lists each key
//! with its explanation.
//!
//! What counts as showing a key: a line `key = value` or `# key = value` (one `#`,
//! at most one space, then the key) in the table the key belongs to, after a
//! header `[table]` or `# [table]`; keys of an inline table
//! (`retention = { keep_daily = 14 }`) count too. Prose lines (`#   command = [...]`,
//! indented further) do not.

use crate::schema::config_keys;
use std::collections::{BTreeMap, BTreeSet};

/// Where a text shows the keys of the config.
#[derive(Debug, Default)]
pub struct Reference {
    /// Each key path shown, with the lines (0-based) that show it, first first.
    pub keys: BTreeMap<String, Vec<usize>>,
    /// Per typed table (`targets.*`, `jobs.*.sources[]`) and `type`, the keys
    /// written in blocks of that type.
    pub by_type: BTreeMap<(String, String), BTreeSet<String>>,
    /// Lines naming what the config does not have (a renamed or removed key).
    pub unknown: Vec<String>,
    /// Lines in effect below a commented-out header: a reader takes them for keys
    /// of that header's table, TOML for keys of the table before it.
    pub misplaced: Vec<String>,
}

/// A line without its comment sign, and whether it had one: `# key = 1` is
/// `key = 1`, `#   prose = x` stays prose (starts with spaces).
pub fn uncommented(line: &str) -> (&str, bool) {
    match line.strip_prefix('#') {
        Some(rest) => (rest.strip_prefix(' ').unwrap_or(rest), true),
        None => (line, false),
    }
}

/// The key written at the start of `text` (`key = ...`), if it is a key line.
pub fn key_line(text: &str) -> Option<&str> {
    let (key, _) = text.split_once('=')?;
    let key = key.trim_end();
    (!key.is_empty()
        && text.starts_with(key)
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'))
    .then_some(key)
}

/// `[a.b]` or `[[a.b]]` (a comment may follow): its dotted parts and whether it
/// is an array of tables.
fn header(text: &str) -> Option<(Vec<&str>, bool)> {
    let array = text.starts_with("[[");
    let inner = text.trim_start_matches('[');
    let end = inner.find(']')?;
    Some((inner[..end].split('.').map(str::trim).collect(), array))
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}.{b}")
    }
}

/// Reads `text` against the keys of the config.
pub fn read(text: &str) -> Reference {
    let schema: BTreeSet<String> = config_keys().into_iter().map(|k| k.path).collect();
    let has = |p: &str| {
        schema
            .iter()
            .any(|s| s == p || s.starts_with(&format!("{p}.")))
    };
    let mut doc = Reference::default();
    // The table the lines below belong to, and the keys and type of its block.
    let mut table = String::new();
    let mut block: (BTreeSet<String>, Option<String>) = Default::default();
    let mut under_commented_header = false;
    let end_block =
        |doc: &mut Reference, table: &str, block: &mut (BTreeSet<String>, Option<String>)| {
            let (keys, kind) = std::mem::take(block);
            if let Some(kind) = kind {
                doc.by_type
                    .entry((table.to_string(), kind))
                    .or_default()
                    .extend(keys);
            }
        };
    for (n, line) in text.lines().enumerate() {
        let (body, commented) = uncommented(line);
        if body.starts_with('[') {
            let Some((parts, array)) = header(body) else {
                doc.unknown.push(format!("line {}: {line}", n + 1));
                continue;
            };
            end_block(&mut doc, &table, &mut block);
            // Each part is a key of the schema, or a name the operator gives (`*`).
            let mut path = String::new();
            for part in parts {
                let named = join(&path, part);
                path = if schema.contains(&named) {
                    named
                } else if has(&join(&path, "*")) {
                    join(&path, "*")
                } else {
                    doc.unknown.push(format!("line {}: {line}", n + 1));
                    named
                };
                doc.keys.entry(path.clone()).or_default().push(n);
            }
            if array {
                path.push_str("[]");
            }
            table = path;
            under_commented_header = commented;
            continue;
        }
        let Some(key) = key_line(body) else { continue };
        if !commented && under_commented_header {
            doc.misplaced.push(format!("line {}: {line}", n + 1));
        }
        // The line alone parses as TOML unless its value goes on over more lines.
        let parsed: Option<toml::Table> = toml::from_str(body).ok();
        let mut found = Vec::new();
        match &parsed {
            Some(t) => walk(&table, t, &mut found),
            None => found.push(join(&table, key)),
        }
        for p in found {
            if schema.contains(&p) {
                doc.keys.entry(p).or_default().push(n);
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
        let path = join(at, k);
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

/// A key line split into what is written (`key = value`) and its comment, with
/// the comment's continuation lines (below it, indented to the comment) and, for
/// a line without a comment of its own, the prose comment just above it.
pub fn explain(text: &str, line: usize) -> (String, String) {
    let lines: Vec<&str> = text.lines().collect();
    let Some(first) = lines.get(line) else {
        return (String::new(), String::new());
    };
    let (body, _) = uncommented(first);
    let (written, comment) = split_comment(body);
    let mut words: Vec<String> = Vec::new();
    if let Some(c) = comment {
        words.push(c.to_string());
        // Continuations: `    # more` or `#    # more`, aligned under the comment.
        for next in &lines[line + 1..] {
            let (b, _) = uncommented(next);
            match b.trim_start().strip_prefix('#') {
                Some(more) if b.starts_with("  ") => words.push(more.trim().to_string()),
                _ => break,
            }
        }
    } else {
        // Prose just above: comment lines that are neither keys nor headers.
        let mut above = Vec::new();
        for prev in lines[..line].iter().rev() {
            let (b, commented) = uncommented(prev);
            // Not a key, a header or a comment's continuation (indented) either.
            if !commented
                || b.starts_with('[')
                || b.starts_with("  ")
                || key_line(b).is_some()
                || b.trim().is_empty()
            {
                break;
            }
            above.push(b.trim().to_string());
        }
        above.reverse();
        words.extend(above);
    }
    (written.trim_end().to_string(), words.join(" "))
}

/// `key = "a # b"  # note` into `key = "a # b"` and `note`: a `#` inside a
/// string is not a comment.
fn split_comment(line: &str) -> (&str, Option<&str>) {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match quote {
            Some('"') if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' => return (&line[..i], Some(line[i + 1..].trim())),
            None => {}
        }
    }
    (line, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comment_goes_on_below_or_stands_above() {
        let text = "# the port\n\
                    port = 1\n\
                    name = \"a # b\"   # what it is\n\
                    \x20                 # and more\n\
                    other = 2\n";
        assert_eq!(explain(text, 1), ("port = 1".into(), "the port".into()));
        assert_eq!(
            explain(text, 2),
            ("name = \"a # b\"".into(), "what it is and more".into())
        );
        assert_eq!(explain(text, 4), ("other = 2".into(), String::new()));
    }
}
