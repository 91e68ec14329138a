//! Finds the line and column of a key in the TOML text, so that errors found after
//! deserialising (an undefined target, a bad mode) still point into the file.

use toml::de::{DeTable, DeValue};

/// One step of a path into the document: a table key or an array index.
#[derive(Debug, Clone)]
pub enum Seg {
    Key(String),
    Index(usize),
}

impl Seg {
    pub fn key(k: &str) -> Seg {
        Seg::Key(k.to_string())
    }
}

/// The path of `key` inside the table at `at`: `child(at, "url")` is `…sources[0].url`.
pub fn child(at: &[Seg], key: &str) -> Vec<Seg> {
    let mut path = at.to_vec();
    path.push(Seg::key(key));
    path
}

/// The path of the `i`th element of the array at `at`: `…targets[1]`.
pub fn item(at: &[Seg], i: usize) -> Vec<Seg> {
    let mut path = at.to_vec();
    path.push(Seg::Index(i));
    path
}

/// A path of table keys: `keys(&["jobs", name, "jitter"])`.
pub fn keys(parts: &[&str]) -> Vec<Seg> {
    parts.iter().map(|k| Seg::key(k)).collect()
}

/// Renders a path the way a user would write it: `jobs.kadi.sources[0].path`.
pub fn dotted(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Byte offset of the deepest part of `path` that exists in `text`.
pub fn offset_of(text: &str, path: &[Seg]) -> Option<usize> {
    let doc = DeTable::parse(text).ok()?;
    let mut best = None;
    let mut table: Option<&DeTable> = Some(doc.get_ref());
    let mut value: Option<&DeValue> = None;
    for seg in path {
        match seg {
            Seg::Key(k) => {
                let t = match (table, value) {
                    (Some(t), _) => t,
                    (None, Some(DeValue::Table(t))) => t,
                    _ => break,
                };
                let Some((key, val)) = t.iter().find(|(key, _)| key.get_ref().as_ref() == k) else {
                    break;
                };
                best = Some(key.span().start);
                table = None;
                value = Some(val.get_ref());
            }
            Seg::Index(i) => {
                let Some(DeValue::Array(items)) = value else {
                    break;
                };
                let Some(item) = items.get(*i) else { break };
                best = Some(item.span().start);
                table = None;
                value = Some(item.get_ref());
            }
        }
    }
    best
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, col)
}
