//! The job names of a config file, read without validating the rest of it: shell
//! completion asks for them while the operator types, perhaps while the config is
//! half edited, and must neither fail loudly nor read secrets to answer.

use std::path::Path;

/// The names of the `[jobs.NAME]` tables, sorted; `None` when the file cannot be
/// read or is not TOML.
pub fn job_names(path: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(path).ok()?;
    let table: toml::Table = text.parse().ok()?;
    let jobs = table.get("jobs")?.as_table()?;
    // Only valid names: they go into the shell's word list.
    let mut names: Vec<String> = jobs
        .iter()
        .filter(|(k, v)| v.is_table() && crate::names::is_name(k))
        .map(|(k, _)| k.clone())
        .collect();
    names.sort();
    Some(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_a_config_with_problems_elsewhere() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("coffer.toml");
        std::fs::write(
            &file,
            "[encryption]\nrecipients = [\"not a key\"]\n[jobs.web]\ntargets = [\"nowhere\"]\n\
             [jobs.app]\nexclued = []\n",
        )
        .expect("write");
        assert_eq!(
            job_names(&file),
            Some(vec!["app".to_string(), "web".to_string()])
        );
        std::fs::write(&file, "[jobs.app\n").expect("write");
        assert_eq!(job_names(&file), None);
        assert_eq!(job_names(&dir.path().join("missing.toml")), None);
    }
}
