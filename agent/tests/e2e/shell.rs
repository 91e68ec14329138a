//! What an operator's shell gets from coffer: the man pages (every page the main
//! page refers to exists and renders with the real `man`; the main page has FILES
//! and EXAMPLES, coffer.toml(5) every key), and bash completion of job names from
//! the config in effect, driven through real bash.

use crate::common::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// The `coffer-...(1)` pages a page refers to (roff escapes `-` as `\-`).
fn references(page: &str) -> BTreeSet<String> {
    page.lines()
        .map(|l| l.trim().replace("\\-", "-"))
        .filter_map(|l| l.strip_suffix("(1)").map(str::to_string))
        .filter(|name| name.starts_with("coffer-") && !name.contains(' '))
        .collect()
}

/// Renders a page with man-db's `man -l` (troff warnings on) and returns the text.
fn render(file: &Path) -> String {
    let out = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(file)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .expect("run man");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "man -l {} failed or warned: {stderr}",
        file.display()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_man_page_the_main_page_refers_to_exists_and_renders() {
    require_tool("man");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(coffer_bin())
        .args(["man", "--dir"])
        .arg(dir.path())
        .output()
        .expect("run coffer man --dir");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `coffer man` on stdout is the same main page as the one written.
    let stdout_page = Command::new(coffer_bin())
        .arg("man")
        .output()
        .expect("run coffer man");
    let main = std::fs::read_to_string(dir.path().join("coffer.1")).expect("coffer.1 written");
    assert_eq!(String::from_utf8_lossy(&stdout_page.stdout), main);

    // Follow the references from the main page down (coffer-config -> coffer-config-check).
    let mut todo = vec!["coffer".to_string()];
    let mut seen = BTreeSet::new();
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let file = dir.path().join(format!("{name}.1"));
        let roff = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{name}(1) is referred to but {}: {e}", file.display()));
        let text = render(&file);
        assert!(
            text.contains("NAME") && text.contains(&name) && text.contains("SYNOPSIS"),
            "{name}(1) renders without its sections:\n{text}"
        );
        todo.extend(references(&roff));
    }
    for page in [
        "coffer-backup",
        "coffer-restore",
        "coffer-config",
        "coffer-config-check",
        "coffer-man",
        "coffer-status",
        "coffer-stats",
    ] {
        assert!(seen.contains(page), "{page} not reached: {seen:?}");
    }
    assert!(
        !seen
            .iter()
            .any(|p| p == "coffer-help" || p == "coffer-complete-jobs"),
        "pages for clap's help or a hidden command: {seen:?}"
    );
    // Every page written is reachable: no page lists what it does not document.
    let written: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            Path::new(l)
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("a page path")
                .to_string()
        })
        .collect();
    assert_eq!(written, seen);
}

/// coffer(1) tells where coffer keeps its files and how it is used, and
/// coffer.toml(5) lists every key of the config (from the config's own structures)
/// and the annotated reference config: both render with man without a warning.
#[test]
fn the_main_page_has_files_and_examples_and_the_config_page_every_key() {
    require_tool("man");
    let dir = tempfile::tempdir().expect("tempdir");
    let page = |args: &[&str], file: &str| {
        let out = Command::new(coffer_bin())
            .args(args)
            .output()
            .expect("run coffer man");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = dir.path().join(file);
        std::fs::write(&path, &out.stdout).expect("write page");
        render(&path)
    };
    let main = page(&["man"], "coffer.1");
    for (section, shows) in [
        ("FILES", coffer_config::DEFAULT_CONFIG_PATH),
        ("FILES", "/var/lib/coffer/signing.key"),
        ("FILES", "/usr/lib/systemd/system/coffer.service"),
        ("ENVIRONMENT", "COFFER_CONFIG"),
        ("EXAMPLES", "coffer config check"),
        ("EXAMPLES", "coffer restore --job kadi"),
        ("SEE ALSO", "coffer.toml(5)"),
    ] {
        let body = main
            .split(&format!("\n{section}\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("coffer(1) has no {section} section:\n{main}"));
        assert!(
            body.contains(shows),
            "{section} of coffer(1) does not show {shows}:\n{main}"
        );
    }
    let config = page(&["man", "--config-file"], "coffer.toml.5");
    assert!(
        config.contains("coffer.toml - configuration file of coffer"),
        "{config}"
    );
    let keys = config
        .split("\nKEYS\n")
        .nth(1)
        .and_then(|k| k.split("\nEXAMPLE\n").next())
        .unwrap_or_else(|| panic!("coffer.toml(5) has no KEYS before EXAMPLE:\n{config}"));
    for key in coffer_config::config_keys() {
        assert!(
            // A short term shares its line with the text (`jobs   a job's name ...`).
            keys.lines()
                .any(|l| l.split_whitespace().next() == Some(key.path.as_str())),
            "coffer.toml(5) does not list {}",
            key.path
        );
    }
    assert!(keys.contains("In a source of type redis."), "{keys}");
    // The reference config follows, whole (its lines as man shows them).
    let example = config.split("\nEXAMPLE\n").nth(1).expect("EXAMPLE");
    for line in coffer_config::REFERENCE_CONFIG
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        assert!(example.contains(line.trim()), "EXAMPLE lacks: {line}");
    }
}

/// Runs bash's completion of `words` (the last one being completed) with the
/// script `coffer completions bash` prints, the way bash calls it on TAB.
fn complete(script: &Path, words: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let bin_dir = Path::new(coffer_bin()).parent().expect("bin dir");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source '{}'\nCOMP_WORDS=({})\nCOMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))\n\
         COMP_LINE=\"${{COMP_WORDS[*]}}\"\nCOMP_POINT=${{#COMP_LINE}}\n\
         complete -p coffer >/dev/null || exit 9\n\
         fn=$(complete -p coffer | sed -n 's/.*-F \\([^ ]*\\).*/\\1/p')\n\
         \"$fn\" coffer \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        quoted.join(" ")
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .env("PATH", path)
        .env_remove("COFFER_CONFIG")
        .envs(env.iter().copied())
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "bash completion of {words:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_the_job_names_of_the_config_in_effect() {
    require_tool("bash");
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("coffer.bash");
    let out = Command::new(coffer_bin())
        .args(["completions", "bash"])
        .output()
        .expect("run coffer completions bash");
    assert!(out.status.success());
    std::fs::write(&script, &out.stdout).expect("write script");

    // Two configs with different jobs; the second has a problem elsewhere (an
    // undefined target) and still completes: the operator may be editing it.
    let a = World::new(&dir_source("storage", Path::new("/tmp"), ""));
    let text = std::fs::read_to_string(&a.config).expect("config");
    std::fs::write(
        &a.config,
        text + "\n[jobs.nightly-db]\ntargets = [\"local\"]\n[[jobs.nightly-db.sources]]\n\
                name = \"db\"\ntype = \"directory\"\npath = \"/tmp\"\n",
    )
    .expect("write config");
    let b = dir.path().join("other.toml");
    std::fs::write(
        &b,
        "[jobs.web]\ntargets = [\"nowhere\"]\n[jobs.wiki]\ntargets = []\n",
    )
    .expect("write other config");
    let a_cfg = a.config.to_str().expect("utf8 path");
    let b_cfg = b.to_str().expect("utf8 path");

    let both = vec!["app".to_string(), "nightly-db".to_string()];
    assert_eq!(
        complete(&script, &["coffer", "--config", a_cfg, "backup", ""], &[]),
        both
    );
    assert_eq!(
        complete(
            &script,
            &["coffer", "--config", a_cfg, "backup", "app", "n"],
            &[]
        ),
        vec!["nightly-db".to_string()]
    );
    // COFFER_CONFIG, and --job of the reading commands.
    assert_eq!(
        complete(
            &script,
            &["coffer", "list", "--job", ""],
            &[("COFFER_CONFIG", a_cfg)]
        ),
        both
    );
    for sub in ["status", "stats"] {
        assert_eq!(
            complete(
                &script,
                &["coffer", sub, "--job", ""],
                &[("COFFER_CONFIG", a_cfg)]
            ),
            both,
            "coffer {sub} --job"
        );
    }
    // --config on the command line wins over COFFER_CONFIG, as it does for coffer.
    assert_eq!(
        complete(
            &script,
            &["coffer", "--config", b_cfg, "verify", "--job", "w"],
            &[("COFFER_CONFIG", a_cfg)]
        ),
        vec!["web".to_string(), "wiki".to_string()]
    );
    // Everything else is still clap's: subcommands (not the hidden helper), options.
    let subs = complete(&script, &["coffer", ""], &[]);
    assert!(
        subs.contains(&"backup".to_string()) && subs.contains(&"restore".to_string()),
        "{subs:?}"
    );
    assert!(!subs.iter().any(|s| s == "complete-jobs"), "{subs:?}");
    assert_eq!(
        complete(
            &script,
            &["coffer", "--config", a_cfg, "backup", "--js"],
            &[]
        ),
        vec!["--json".to_string()]
    );
    // No config where it points: no names, and no error printed into the line.
    assert!(
        complete(
            &script,
            &[
                "coffer",
                "--config",
                "/nonexistent/coffer.toml",
                "backup",
                ""
            ],
            &[]
        )
        .is_empty()
    );
}
