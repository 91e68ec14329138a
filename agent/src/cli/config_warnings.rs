//! What `coffer config check` warns about: settings that validate but are likely
//! mistakes an operator finds only when a backup fails or a restore is needed
//! (a source path that does not exist, an identity file missing on the host that
//! will restore, a relative path that means another folder under systemd, a
//! `$COFFER_JOB` in a hook that no shell expands).
//! Warnings, not errors: a disk may be mounted later, an identity may be kept
//! off this host on purpose.

use crate::key_match::IdentityCheck;
use coffer_config::Config;
use std::path::Path;

/// One line per warning, without the `warning: ` prefix.
pub(super) fn warnings(cfg: &Config, identity: &IdentityCheck) -> Vec<String> {
    let mut out = Vec::new();
    for job in cfg.jobs.values() {
        for s in &job.sources {
            for (what, path) in coffer_plugins::registry::kind(&s.kind).needed_paths() {
                if !exists(path) {
                    out.push(format!(
                        "job {}, source {}: {what} {} does not exist; a backup fails until it does (is it mounted? is the path right?)",
                        job.name,
                        s.name,
                        path.display()
                    ));
                }
            }
        }
        for (key, line) in job_hooks(job) {
            if let Some(var) = unexpanded_variable(line) {
                out.push(format!(
                    "job {}: {key} hook `{line}` runs without a shell, so `{var}` is passed as \
                     written, not its value; the variable is in the hook's environment: write \
                     sh -c '... \"{var}\"' to expand it",
                    job.name
                ));
            }
        }
    }
    if let IdentityCheck::Absent(file) = identity {
        out.push(format!(
            "identity_file {} does not exist on this host: restore and deep verify need it where they run{}",
            file.display(),
            if cfg.jobs.values().any(|j| j.verify_schedule.is_some()) {
                ", and verify_schedule verifies only the stored bytes without it"
            } else {
                ""
            }
        ));
    }
    if !cfg.relative_paths.is_empty() {
        let cwd = std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|_| "the current directory".to_string());
        let written: Vec<String> = cfg
            .relative_paths
            .iter()
            .map(|p| format!("{:?}", p.display().to_string()))
            .collect();
        out.push(format!(
            "relative path(s) {} resolved against {cwd}, where coffer was started; `coffer agent` under systemd starts in /, where they mean other folders: write absolute paths",
            written.join(", ")
        ));
    }
    out
}

/// A path that cannot be checked (no permission) counts as there: the warning is
/// for paths that are missing, not for a check run as another user.
fn exists(path: &Path) -> bool {
    !matches!(std::fs::symlink_metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

/// Every hook line of a job, with its key.
fn job_hooks(job: &coffer_config::Job) -> Vec<(&'static str, &coffer_config::HookCommand)> {
    let h = &job.hooks;
    [
        ("before", &h.before),
        ("after", &h.after),
        ("on_success", &h.on_success),
        ("on_failure", &h.on_failure),
        ("after_restore", &job.after_restore),
    ]
    .into_iter()
    .flat_map(|(key, lines)| lines.iter().map(move |l| (key, l)))
    .collect()
}

/// The first `$NAME` or `${NAME}` in a hook's words, when no shell runs it (coffer
/// runs the words as they are): a program named like a shell given `-c` expands
/// them itself.
fn unexpanded_variable(line: &coffer_config::HookCommand) -> Option<String> {
    let words = line.words();
    let program = words.first()?;
    let shell = ["sh", "bash", "dash", "zsh", "ksh", "fish", "busybox"]
        .contains(&program.rsplit('/').next().unwrap_or(program));
    if shell && words.iter().any(|w| w == "-c" || w == "sh") {
        return None;
    }
    words.iter().find_map(|w| {
        let at = w.find('$')?;
        let rest = w[at + 1..].trim_start_matches('{');
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        (!name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()))
            .then(|| format!("${name}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(line: &str) -> Option<String> {
        unexpanded_variable(&line.parse().expect("a command line"))
    }

    #[test]
    fn a_variable_no_shell_expands_is_found() {
        assert_eq!(
            var("logger backup of $COFFER_JOB"),
            Some("$COFFER_JOB".into())
        );
        assert_eq!(
            var("curl https://x/${COFFER_OUTCOME}"),
            Some("$COFFER_OUTCOME".into())
        );
        assert_eq!(var("sh -c 'logger $COFFER_JOB'"), None);
        assert_eq!(var("/bin/bash -c 'echo $COFFER_JOB'"), None);
        assert_eq!(var("systemctl stop app"), None);
        assert_eq!(var("echo 'costs $5'"), None);
    }
}
