//! coffer.toml(5): the config file's page, generated so that it cannot fall
//! behind. Its KEYS section lists every key from the config's own structures
//! (`coffer_config::config_keys`), with the source types each source key belongs
//! to and the line and comment that show it in the annotated reference
//! config/examples/coffer.toml (compiled in; config/tests/reference.rs proves it
//! shows each key); its EXAMPLE section is that file, whole.

use super::roff;
use coffer_config::{SourceType, config_keys, reference, source_keys, source_types};

pub fn render(version: &str) -> String {
    let mut out = format!(
        ".TH coffer.toml 5 \"\" \"coffer {}\" \"File Formats\"\n",
        roff::line(version)
    );
    out.push_str(".SH NAME\ncoffer.toml \\- configuration file of coffer\n");
    // Paths and keys read better unbroken: no hyphenation, no stretched spaces.
    out.push_str(".nh\n.ad l\n");
    out.push_str(".SH SYNOPSIS\n/etc/coffer/coffer.toml\n");
    out.push_str(".SH DESCRIPTION\n");
    for para in DESCRIPTION {
        out.push_str(&format!(".PP\n{}\n", roff::line(para)));
    }
    out.push_str(".SH KEYS\n");
    out.push_str(&format!(
        ".PP\n{}\n",
        roff::line(
            "Every key, by its place in the file: * stands for a name you choose \
             ([targets.NAME], [jobs.NAME]), [] for each element of an array of tables \
             ([[jobs.NAME.sources]]). Each with the line of the reference config that \
             shows it (EXAMPLE below) and what that says."
        )
    ));
    let types = source_types();
    let text = coffer_config::REFERENCE_CONFIG;
    let shown = reference::read(text);
    // A key of an inline table shares its line with the table: shown once.
    let mut first_on_line: std::collections::BTreeMap<usize, String> = Default::default();
    for key in config_keys() {
        let line = shown.keys.get(&key.path).and_then(|l| l.first()).copied();
        if let Some(owner) = line.and_then(|l| first_on_line.get(&l)) {
            out.push_str(&format!(
                ".TP\n\\fB{}\\fR\n{}\n",
                roff::line(&key.path),
                roff::line(&format!("See {owner}."))
            ));
            continue;
        }
        if let Some(l) = line {
            first_on_line.insert(l, key.path.clone());
        }
        let mut what = Vec::new();
        if !key.choices.is_empty() {
            what.push(format!("One of: {}.", key.choices.join(", ")));
        }
        if let Some(name) = key.path.strip_prefix("jobs.*.sources[].") {
            what.push(format!(
                "In a source of type {}.",
                types_taking(&types, name)
            ));
        }
        let (written, comment) =
            line.map_or_else(Default::default, |l| reference::explain(text, l));
        if !comment.is_empty() {
            what.push(comment);
        }
        // The line as written, then what its comment says ("the default", ...).
        out.push_str(&format!(".TP\n\\fB{}\\fR\n", roff::line(&key.path)));
        if !written.starts_with('[') && !written.is_empty() {
            out.push_str(&format!("{}\n.br\n", roff::line(&written)));
        }
        out.push_str(&format!("{}\n", roff::line(&what.join(" "))));
    }
    out.push_str(".SH EXAMPLE\n");
    out.push_str(&format!(
        ".PP\n{}\n",
        roff::line(
            "The reference config: every key, in its table, with what it does and its \
             default. A line starting with # is a comment; # key = value shows an optional \
             key that is off. The Debian package installs it as /etc/coffer/coffer.toml."
        )
    ));
    roff::verbatim(&mut out, coffer_config::REFERENCE_CONFIG);
    out.push_str(".SH FILES\n");
    roff::terms(
        &mut out,
        &[
            (
                "/etc/coffer/coffer.toml",
                "The default path; --config FILE or COFFER_CONFIG names another.",
            ),
            (
                "/usr/share/doc/coffer/README.md",
                "How to set up a first real job, restore and monitoring.",
            ),
        ],
    );
    out.push_str(".SH SEE ALSO\n\\fBcoffer\\fR(1), \\fBcoffer\\-config\\-check\\fR(1)\n");
    out
}

const DESCRIPTION: &[&str] = &[
    "coffer reads one TOML file: [agent] (where the service keeps its state and listens), \
     [encryption] (the age recipients every object is encrypted to, the identity restore \
     reads, the signing key), [targets.NAME] (where objects go: type = \"local\" or \"s3\"), \
     and [jobs.NAME] (what is backed up, to which targets, when, with which hooks and \
     retention), each job with its [[jobs.NAME.sources]] (directory, postgres, mysql, \
     sqlite, redis, command) and optionally [jobs.NAME.retention] and [jobs.NAME.check].",
    "Unknown keys, and keys of another source or target type, are refused. Every error \
     names the file, the line and the key, and what to do. Check a file with \
     `coffer --config FILE config check`: it also shows the paths as resolved (relative \
     paths are taken from the directory coffer is started from) and the warnings.",
];

/// The source types a source key belongs to, in the order the types are declared.
fn types_taking(types: &[SourceType], key: &str) -> String {
    let taking: Vec<&str> = types
        .iter()
        .filter(|t| source_keys(**t).contains(&key))
        .map(|t| t.as_str())
        .collect();
    if taking.len() == types.len() {
        "any".to_string()
    } else {
        taking.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_lists_every_key_and_holds_the_reference() {
        let page = render("0.0.0");
        for key in config_keys() {
            assert!(
                page.contains(&format!("\\fB{}\\fR", roff::line(&key.path))),
                "{} is not in coffer.toml(5)",
                key.path
            );
        }
        assert!(page.contains("In a source of type redis."), "rdb_path");
        // The target types, as the schema lists them.
        let types = config_keys()
            .into_iter()
            .find(|k| k.path == "targets.*.type")
            .map(|k| k.choices.join(", "))
            .unwrap_or_default();
        assert!(types.starts_with("local, s3, "), "{types}");
        assert!(page.contains(&format!("One of: {types}.")), "{types}");
        // The example, line by line, escaped.
        for line in coffer_config::REFERENCE_CONFIG.lines() {
            assert!(page.contains(&roff::line(line)), "{line}");
        }
        for section in [
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "KEYS",
            "EXAMPLE",
            "FILES",
        ] {
            assert!(page.contains(&format!(".SH {section}\n")), "{section}");
        }
    }
}
