//! Bad configs through the real binary: exit code 2 and a message naming the file,
//! line and key, for every command that reads the config.

use crate::common::*;

fn run_with(config_text: &str, args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("coffer.toml");
    std::fs::write(&cfg, config_text).expect("write");
    let out = std::process::Command::new(coffer_bin())
        .arg("--config")
        .arg(&cfg)
        .args(args)
        .output()
        .expect("run");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const GOOD: &str = "[encryption]
recipients = [\"age12e2ma5eqx5585k755cmgeh6vmfzjfc5smtg9yh353lgcs28nu3dqe2fxrf\"]

[targets.local]
type = \"local\"
path = \"/tmp/coffer-test-never-written\"

[jobs.kadi]
targets = [\"local\"]

[[jobs.kadi.sources]]
name = \"storage\"
type = \"directory\"
path = \"/tmp\"
";

#[test]
fn the_good_config_passes() {
    let (code, err) = run_with(GOOD, &["config", "check"]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn bad_configs_exit_2_and_name_line_and_key() {
    let cases = [
        (
            GOOD.replace("path = \"/tmp\"\n", "path = \"/tmp\"\nfollow = true\n"),
            ":15:",
            "follow",
        ),
        (
            GOOD.replace("targets = [\"local\"]", "targets = [\"offsite\"]"),
            ":9:",
            "jobs.kadi.targets[0]",
        ),
        (
            GOOD.to_string() + "restore = { dir_mode = \"75O\" }\n",
            ":15:",
            "restore.dir_mode",
        ),
        (
            GOOD.replace(
                "recipients = [\"age12e2ma5eqx5585k755cmgeh6vmfzjfc5smtg9yh353lgcs28nu3dqe2fxrf\"]",
                "recipients_file = \"/nonexistent/recipients.txt\"",
            ),
            ":2:",
            "encryption.recipients_file",
        ),
    ];
    for (text, line, key) in &cases {
        for args in [&["config", "check"][..], &["backup"][..]] {
            let (code, err) = run_with(text, args);
            assert_eq!(code, Some(2), "{args:?} {key}: {err}");
            assert!(err.contains(&format!("coffer.toml{line}")), "{key}: {err}");
            assert!(err.contains(key), "{key}: {err}");
        }
    }
}

#[test]
fn a_missing_config_file_exits_2_and_says_how_to_point_at_one() {
    let out = std::process::Command::new(coffer_bin())
        .args(["--config", "/nonexistent/coffer.toml", "list"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("COFFER_CONFIG"));
}

#[test]
fn completions_and_man_page_are_generated_from_the_cli() {
    let man = std::process::Command::new(coffer_bin())
        .arg("man")
        .output()
        .expect("run");
    assert!(man.status.success());
    let man = String::from_utf8_lossy(&man.stdout);
    assert!(
        man.contains(".TH coffer 1") && man.contains("restore"),
        "{man}"
    );
    for shell in ["bash", "zsh", "fish"] {
        let out = std::process::Command::new(coffer_bin())
            .args(["completions", shell])
            .output()
            .expect("run");
        assert!(out.status.success(), "{shell}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("prune"),
            "{shell} completion lacks subcommands"
        );
    }
}

#[test]
fn progress_is_drawn_on_a_terminal_only() {
    require_tool("script");
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("f"), noise(8 << 20, 2)).expect("write");
    let world = World::new(&dir_source("data", &data, ""));
    // The first backup creates the host's signing key and says so, once.
    let first = world.run(&["backup", "app"]);
    assert!(first.status.success());
    let said = String::from_utf8_lossy(&first.stderr);
    assert!(
        said.contains("created the snapshot signing key") && said.contains("ed25519:"),
        "{said}"
    );
    let piped = world.run(&["backup", "app"]);
    assert!(piped.status.success());
    assert!(
        piped.stderr.is_empty(),
        "progress or noise on a pipe: {}",
        String::from_utf8_lossy(&piped.stderr)
    );
    // `script` gives the command a pseudo-terminal and copies what it draws.
    let tty = std::process::Command::new("script")
        .arg("-qec")
        .arg(format!(
            "{} --config {} backup app",
            coffer_bin(),
            world.config.display()
        ))
        .arg("/dev/null")
        .output()
        .expect("run script");
    assert!(
        tty.status.success(),
        "{}",
        String::from_utf8_lossy(&tty.stdout)
    );
    let drawn = String::from_utf8_lossy(&tty.stdout);
    assert!(drawn.contains("backup app"), "no progress on a terminal");
    // The earlier runs give the size to expect, the bar a total and an ETA.
    assert!(
        drawn.contains("/~8.00 MiB") && drawn.contains("ETA"),
        "no estimated total on a terminal: {drawn}"
    );
    assert!(!drawn.contains("1 files"), "{drawn}");
}

/// `config check` shows what the agent will do (schedules with their next run,
/// retention, hooks) and warns about what validates but will fail or surprise: a
/// missing source path, a missing identity file, a relative path (which means
/// another folder under systemd). Warnings do not fail the check.
#[test]
fn config_check_shows_schedules_retention_hooks_and_warns_about_likely_mistakes() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("backups")).expect("mkdir");
    let text = GOOD
        .replace(
            "path = \"/tmp/coffer-test-never-written\"",
            "path = \"backups\"",
        )
        .replace(
            "targets = [\"local\"]\n",
            "targets = [\"local\"]\nschedule = \"15 3 * * *\"\nverify_schedule = \"30 5 * * 0\"\n\
             retention = { keep_last = 7, keep_daily = 14 }\nbefore = [\"systemctl stop kadi\"]\n\
             after = [\"logger backup of $COFFER_JOB\", \"sh -c 'logger $COFFER_JOB'\"]\n",
        )
        .replace("path = \"/tmp\"", "path = \"/nonexistent/kadi/storage\"")
        .replace(
            "[targets.local]",
            "identity_file = \"/nonexistent/identity.txt\"\n\n[targets.local]",
        )
        + "\n[jobs.other]\ntargets = [\"local\"]\nrecheck_packs = 0\n\n[[jobs.other.sources]]\nname = \"etc\"\ntype = \"directory\"\npath = \"/etc\"\n";
    let cfg = dir.path().join("coffer.toml");
    std::fs::write(&cfg, text).expect("write");
    let out = std::process::Command::new(coffer_bin())
        .arg("--config")
        .arg(&cfg)
        .args(["config", "check"])
        .current_dir(dir.path())
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let next = |what: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(what))
            .unwrap_or_else(|| panic!("no {what} line:\n{stdout}"))
            .to_string()
    };
    let schedule = next("schedule \"15 3 * * *\"");
    assert!(schedule.contains(" 03:15:00 "), "{schedule}");
    assert!(schedule.contains("next 20"), "{schedule}");
    let verify = next("verify_schedule \"30 5 * * 0\"");
    assert!(verify.contains(" 05:30:00 "), "{verify}");
    assert!(verify.contains("stored bytes only"), "{verify}");
    assert!(
        next("retention:").contains("keep last 7, daily 14"),
        "{stdout}"
    );
    assert!(
        next("hook before:").contains("systemctl stop kadi"),
        "{stdout}"
    );
    assert!(
        stdout.contains("no schedule: `coffer agent` does not run it (`coffer backup other` does)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("retention: none, every snapshot is kept"),
        "{stdout}"
    );
    // What each backup re-checks of the packs (the default, and turned off).
    assert!(
        next("job kadi:").contains("each backup re-checks 1 pack per target"),
        "{stdout}"
    );
    assert!(
        next("job other:").contains("no pack re-checked by backups (recheck_packs = 0)"),
        "{stdout}"
    );
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .collect();
    assert_eq!(warnings.len(), 4, "{stderr}");
    assert!(
        warnings[0].contains("source storage: path /nonexistent/kadi/storage does not exist"),
        "{stderr}"
    );
    // The hook run without a shell; the one through sh -c expands it.
    assert!(
        warnings[1].contains(
            "job kadi: after hook `logger backup of $COFFER_JOB` runs without a shell, so `$COFFER_JOB` is passed as written"
        ),
        "{stderr}"
    );
    assert!(
        warnings[2].contains("identity_file /nonexistent/identity.txt does not exist"),
        "{stderr}"
    );
    assert!(
        warnings[3].contains("relative path(s) \"backups\" resolved against")
            && warnings[3].contains("write absolute paths"),
        "{stderr}"
    );
}
