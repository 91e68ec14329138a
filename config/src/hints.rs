//! Turns serde's messages about a key or value that did not fit into ones that say
//! what to write: the known key nearest a typo ("did you mean `exclude`?"), and for
//! the two kinds of command lists (an argv array for `command`, whole command lines
//! for hooks) an example of the form the key wants. Apart from `load` because it
//! works on message text only, and grows with every confusion operators report.

/// The keys whose value is one program and its arguments, run without a shell.
const ARGV_KEYS: &[&str] = &[
    "command",
    "restore_command",
    "snapshot_command",
    "release_command",
];

/// The keys whose value is a list of command lines, each split like a shell would.
const HOOK_KEYS: &[&str] = &[
    "before",
    "after",
    "on_success",
    "on_failure",
    "after_restore",
];

/// serde's `message` about the value at `key` (dotted, e.g. `jobs.app.sources[0].exclued`),
/// rewritten where it can say more.
pub(crate) fn explain(message: &str, key: &str) -> String {
    if let Some(better) = unknown_name(message) {
        return better;
    }
    let last = key
        .rsplit('.')
        .next()
        .unwrap_or(key)
        .split('[')
        .next()
        .unwrap_or_default();
    if let Some(better) = integer(message) {
        return better;
    }
    if message.starts_with("invalid type: string") && message.contains("expected a sequence") {
        if ARGV_KEYS.contains(&last) {
            return format!(
                "{message}: `{last}` is one program and its arguments, one word per element, \
                 run without a shell, e.g. {last} = [\"pg_dump\", \"--format=custom\", \"app\"]"
            );
        }
        if HOOK_KEYS.contains(&last) {
            return format!(
                "{message}: `{last}` is a list of command lines, each run on its own, \
                 e.g. {last} = [\"systemctl stop app\"]"
            );
        }
    }
    message.to_string()
}

/// serde's Rust type names (`expected u32`) in words: what number the key takes,
/// and that a number is written without quotes.
fn integer(message: &str) -> Option<String> {
    const WORDS: &[(&str, &str)] = &[
        ("u8", "a whole number from 0 to 255"),
        ("u16", "a whole number from 0 to 65535"),
        ("u32", "a whole number from 0 to 4294967295"),
        ("u64", "a whole number, 0 or more"),
        ("usize", "a whole number, 0 or more"),
        ("i32", "a whole number"),
        ("i64", "a whole number"),
    ];
    let (head, ty) = message.rsplit_once(", expected ")?;
    let words = WORDS.iter().find(|(t, _)| *t == ty)?.1;
    let quoted = if head.starts_with("invalid type: string") {
        " (a number, without quotes)"
    } else {
        ""
    };
    Some(format!("{head}, expected {words}{quoted}"))
}

/// `unknown field `x`, expected one of `a`, `b`` (or `unknown variant`): names the
/// nearest known name, or lists them when none is near.
fn unknown_name(message: &str) -> Option<String> {
    let (what, rest) = ["unknown field `", "unknown variant `"]
        .iter()
        .find_map(|p| message.strip_prefix(p).map(|r| (p, r)))?;
    let (name, rest) = rest.split_once('`')?;
    let known: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    let noun = if what.contains("field") {
        "key"
    } else {
        "value"
    };
    let nearest = known
        .iter()
        .map(|k| (strsim::jaro_winkler(name, k), *k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    Some(match (nearest, known.is_empty()) {
        (Some((_, k)), _) => format!("unknown {noun} `{name}`: did you mean `{k}`?"),
        (None, true) => format!("unknown {noun} `{name}`: nothing is allowed here"),
        (None, false) => format!(
            "unknown {noun} `{name}`; allowed here: {}",
            known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_gets_the_nearest_key() {
        let m = "unknown field `exclued`, expected one of `name`, `type`, `path`, `exclude`, `skip_unreadable`, `one_file_system`";
        assert_eq!(
            explain(m, "jobs.app.sources[0].exclued"),
            "unknown key `exclued`: did you mean `exclude`?"
        );
    }

    #[test]
    fn a_name_far_from_every_key_lists_them() {
        let m = "unknown field `colour`, expected `path` or `exclude`";
        assert_eq!(
            explain(m, "x.colour"),
            "unknown key `colour`; allowed here: `path`, `exclude`"
        );
        assert_eq!(
            explain("unknown field `x`, there are no fields", "a.x"),
            "unknown key `x`: nothing is allowed here"
        );
    }

    #[test]
    fn a_typo_in_a_value_gets_the_nearest_value() {
        let m = "unknown variant `postgress`, expected one of `directory`, `postgres`, `mysql`";
        assert_eq!(
            explain(m, "jobs.a.sources[0].type"),
            "unknown value `postgress`: did you mean `postgres`?"
        );
    }

    #[test]
    fn rust_integer_types_are_said_in_words() {
        assert_eq!(
            explain(
                "invalid type: string \"3\", expected u32",
                "jobs.a.retention.keep_last"
            ),
            "invalid type: string \"3\", expected a whole number from 0 to 4294967295 \
             (a number, without quotes)"
        );
        assert_eq!(
            explain("invalid value: integer `-1`, expected u64", "a.b"),
            "invalid value: integer `-1`, expected a whole number, 0 or more"
        );
        assert_eq!(explain("expected a boolean", "a.b"), "expected a boolean");
    }

    #[test]
    fn a_command_line_where_an_argv_array_goes_shows_the_array() {
        let m = "invalid type: string \"pg_dump app\", expected a sequence";
        let e = explain(m, "jobs.a.sources[1].command");
        assert!(e.starts_with(m), "{e}");
        assert!(e.contains("command = [\"pg_dump\""), "{e}");
        let e = explain(m, "jobs.a.before");
        assert!(e.contains("before = [\"systemctl stop app\"]"), "{e}");
        assert_eq!(explain(m, "jobs.a.targets"), m);
    }
}
