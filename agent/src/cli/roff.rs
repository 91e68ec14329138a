//! Text into roff for the hand-written parts of the man pages (FILES, EXAMPLES,
//! coffer.toml(5)): clap_mangen escapes what it generates, these helpers what we
//! add, so that a `-`, a `\` or a line starting with `.` prints as written.

/// One line of running text or of a no-fill block: `\` and `-` escaped, and a
/// leading `.` or `'` (a request to roff) made literal.
pub fn line(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// Lines shown as they are (commands, a config file): no filling, no hyphenation.
pub fn verbatim(out: &mut String, text: &str) {
    out.push_str(".PP\n.RS 4\n.nf\n");
    for l in text.lines() {
        out.push_str(&line(l));
        out.push('\n');
    }
    out.push_str(".fi\n.RE\n");
}

/// A list of terms (bold) with their descriptions, as `.TP` paragraphs.
pub fn terms(out: &mut String, items: &[(&str, &str)]) {
    for (term, what) in items {
        out.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", line(term), line(what)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_backslashes_and_dashes_print_as_written() {
        assert_eq!(line(".nf a-b"), "\\&.nf a\\-b");
        assert_eq!(line("'x"), "\\&'x");
        assert_eq!(line("C:\\dir"), "C:\\edir");
        assert_eq!(line("plain"), "plain");
    }
}
