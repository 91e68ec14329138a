//! The grammar of the names coffer puts into object keys and file names: job,
//! target and source names, and a command source's extension. The config loader
//! enforces it on what the operator writes; the readers of a target enforce the
//! same grammar on what they find there, because a name read from a target is
//! joined to paths on the restoring host (`restore --to DIR` writes `DIR/<source>`).

/// Most names a config or a snapshot may use.
pub const MAX_NAME: usize = 64;

/// 1-64 ASCII letters, digits, `-` or `_`, not starting with `-`: no `/`, no `.`,
/// nothing a shell or a path could read as more than one word.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && !s.starts_with('-')
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

/// A file extension: 1-16 ASCII letters and digits.
pub fn is_extension(s: &str) -> bool {
    !s.is_empty() && s.len() <= 16 && s.bytes().all(|c| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_a_directory_are_not_names() {
        for ok in ["db", "storage_2", "kadi-uploads", "A9"] {
            assert!(is_name(ok), "{ok}");
        }
        for bad in [
            "",
            "..",
            ".",
            "a/b",
            "../../etc/x",
            "/etc/profile.d/evil",
            "-rf",
            "a b",
            "a\nb",
            "é",
            "a.b",
        ] {
            assert!(!is_name(bad), "{bad:?}");
        }
        assert!(!is_name(&"x".repeat(65)));
        assert!(is_extension("dump") && is_extension("sql"));
        assert!(!is_extension("tar.gz") && !is_extension("") && !is_extension("../x"));
    }
}
