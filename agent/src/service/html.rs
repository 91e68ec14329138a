//! Escaping for the status page. Everything the page shows from the config or
//! the status files (job names, schedules, errors, outcomes) goes through
//! `escape`: a `last_error` can quote a path or a server's message, and anyone
//! who can write a status file could put markup in it.

use std::fmt::Write;

/// `text` made safe for HTML text and for quoted attribute values.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters other than line breaks and tabs have no business
            // on a page; shown by number rather than passed to the browser.
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_quotes_are_escaped() {
        assert_eq!(
            escape(r#"<script>alert("x" + 'y')</script> & co"#),
            "&lt;script&gt;alert(&quot;x&quot; + &#39;y&#39;)&lt;/script&gt; &amp; co"
        );
        assert_eq!(escape("plain job-name_1"), "plain job-name_1");
        assert_eq!(escape("a\u{0}b\nc"), "a\\u{0}b\nc");
        assert_eq!(
            escape("&amp;"),
            "&amp;amp;",
            "escaped once more, never trusted"
        );
    }
}
