//! A hook's command line (`before`, `after`, `on_success`, `on_failure`,
//! `after_restore`), split into words once, when the config is loaded, the way a
//! shell would (quotes, escapes, `#` comments) but with nothing expanded. coffer
//! runs the words it holds and never splits the line again; the line as written
//! stays with them for messages and `config check`.

use std::fmt;
use std::str::FromStr;

#[derive(Clone, PartialEq, Eq)]
pub struct HookCommand {
    text: String,
    words: Vec<String>,
}

impl HookCommand {
    /// The program and its arguments. Empty for a line that is only a comment
    /// (`"# systemctl stop app"`): there is nothing to run.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// The line as written in the config.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for HookCommand {
    type Err = String;
    fn from_str(text: &str) -> Result<HookCommand, String> {
        if text.trim().is_empty() {
            return Err("empty command".to_string());
        }
        match shell_words::split(text) {
            Ok(words) => Ok(HookCommand {
                text: text.to_string(),
                words,
            }),
            Err(e) => Err(format!("cannot split into words: {e} (check the quotes)")),
        }
    }
}

impl fmt::Display for HookCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for HookCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HookCommand").field(&self.text).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_split_like_a_shell_would_without_expanding() {
        let h: HookCommand = "sh -c 'echo $COFFER_JOB >> \"/tmp/a b\"'"
            .parse()
            .expect("a command");
        assert_eq!(h.words(), ["sh", "-c", "echo $COFFER_JOB >> \"/tmp/a b\""]);
        assert_eq!(h.as_str(), "sh -c 'echo $COFFER_JOB >> \"/tmp/a b\"'");
        assert_eq!(h.to_string(), h.as_str());
        let comment: HookCommand = "# systemctl stop app".parse().expect("a comment");
        assert!(comment.words().is_empty());
    }

    #[test]
    fn empty_lines_and_open_quotes_are_refused() {
        assert_eq!(
            "  ".parse::<HookCommand>().expect_err("blank"),
            "empty command"
        );
        let e = "echo 'a".parse::<HookCommand>().expect_err("open quote");
        assert!(e.starts_with("cannot split into words: "), "{e}");
        assert!(e.ends_with("(check the quotes)"), "{e}");
    }
}
