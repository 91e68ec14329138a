//! `coffer config check`: validates and shows what coffer understood, with paths
//! resolved, so an operator sees the effect of relative paths and defaults.
//! URLs are shown through `display_url` (never a credential), secrets only as
//! "(password set)", and an agent listening beyond loopback is warned about here
//! as well as when it starts. An identity file on this host that belongs to none of
//! the recipients fails the check (exit 2), as it fails every backup. What is
//! valid but likely a mistake (a missing source path, a relative path) is a
//! warning on stderr (`config_warnings`), and the check still passes.

use crate::key_match::{IdentityCheck, check_identity};
use anyhow::Result;
use coffer_config::Config;

pub fn run(cfg: &Config) -> Result<u8> {
    let identity = check_identity(&cfg.encryption);
    if let IdentityCheck::Mismatch { message, .. } = &identity {
        return Err(crate::exit::usage(format!(
            "{}: {message}",
            cfg.file.display()
        )));
    }
    println!("{}: ok", cfg.file.display());
    println!("state_dir: {}", cfg.agent.state_dir.display());
    println!(
        "agent: listen {}{}",
        cfg.agent.listen,
        if cfg.agent.api_token.is_some() {
            "; API token set"
        } else {
            ""
        }
    );
    if let Some(w) =
        crate::service::exposure_warning(cfg.agent.listen, cfg.agent.api_token.is_some())
    {
        eprintln!("warning: {w}");
    }
    println!(
        "encryption: {} recipient(s){}{}",
        cfg.encryption.recipients.len(),
        if cfg.encryption.create_identity_if_missing {
            " + the quick-start identity"
        } else {
            ""
        },
        cfg.encryption
            .identity_file
            .as_ref()
            .map(|p| format!(", identity_file {}", p.display()))
            .unwrap_or_default()
    );
    println!("{}", identity.message());
    for t in cfg.targets.values() {
        match t.limit_upload {
            Some(rate) => println!(
                "target {}: {}; uploads at most {}/s",
                t.name,
                t.kind,
                crate::units::bytes(rate)
            ),
            None => println!("target {}: {}", t.name, t.kind),
        }
        let shown = coffer_plugins::targets::registry::shown(t, &crate::units::bytes);
        for line in &shown.lines {
            println!("  {line}");
        }
        // A warning, not an error: the config is fine, the disk may be mounted
        // later; opened for reading, so that checking never creates it.
        if shown.open_to_check
            && let Err(e) = coffer_plugins::open_target(t, coffer_plugins::Access::Read)
        {
            eprintln!("warning: {e}");
        }
    }
    for job in cfg.jobs.values() {
        show_job(cfg, job);
    }
    for w in super::config_warnings::warnings(cfg, &identity) {
        eprintln!("warning: {w}");
    }
    Ok(crate::exit::OK)
}

/// One job: its targets, format and sources, then what it runs when and keeps.
fn show_job(cfg: &Config, job: &coffer_config::Job) {
    let format = match job.format {
        2 => format!(
            "format 2 (packs of {}, repack at {:.0}% unused, {}; index in {})",
            crate::units::bytes(job.pack_size),
            job.repack_unused * 100.0,
            match job.recheck_packs {
                0 => "no pack re-checked by backups (recheck_packs = 0)".to_string(),
                n => format!(
                    "each backup re-checks {} per target",
                    crate::units::count(u64::from(n), "pack")
                ),
            },
            cfg.agent.state_dir.join("index").display()
        ),
        f => format!("format {f}"),
    };
    println!(
        "job {}: targets {}; zstd level {} threads {}; {format}",
        job.name,
        job.targets.join(", "),
        job.compression.level,
        if job.compression.threads == 0 {
            "all".to_string()
        } else {
            job.compression.threads.to_string()
        }
    );
    if job.restore_only() {
        println!(
            "  no sources: restores, lists, verifies and repairs what its targets hold; never backs up"
        );
    }
    for s in &job.sources {
        print!("  source {} ({}): {}", s.name, s.kind.type_name(), s.kind);
        let p = s.kind.restore_policy();
        if let Some(o) = &p.owner {
            print!("; restore owner {o}");
        }
        if let Some(m) = p.dir_mode {
            print!("; dir_mode {m:04o}");
        }
        if let Some(m) = p.file_mode {
            print!("; file_mode {m:04o}");
        }
        println!();
    }
    show_schedules(cfg, job);
    match &job.retention {
        Some(r) => println!(
            "  retention: {r}; folders of runs that never finished go after {}",
            coffer_config::duration_words(job.incomplete_after)
        ),
        None => {
            println!("  retention: none, every snapshot is kept (add `retention` to prune)")
        }
    }
    let h = &job.hooks;
    for (when, lines) in [
        ("before", &h.before),
        ("after", &h.after),
        ("on_success", &h.on_success),
        ("on_failure", &h.on_failure),
    ] {
        for line in lines {
            println!("  hook {when}: {line}");
        }
    }
    if [&h.before, &h.after, &h.on_success, &h.on_failure]
        .iter()
        .any(|l| !l.is_empty())
    {
        println!(
            "  hooks are killed after {}",
            coffer_config::duration_words(h.timeout)
        );
    }
    if let Some(c) = &job.check {
        println!("{}", check_line(&c.files, &c.query, &c.source));
    }
    for h in &job.after_restore {
        println!("  after_restore: {h}");
    }
    let n = &job.notify;
    for (kind, url) in [
        ("start", &n.start),
        ("success", &n.success),
        ("failure", &n.failure),
    ] {
        if let Some(u) = url {
            // The rest of the URL is the monitor's secret.
            println!("  notify {kind}: {u}/... (path hidden)");
        }
    }
}

/// The job's check. A query written over several lines (a TOML `"""` string) is
/// shown below, every line indented alike under the job, keeping its own
/// indentation; in backquotes its continuation lines started at the margin.
fn check_line(files: &str, query: &str, source: &str) -> String {
    let lines: Vec<&str> = query
        .lines()
        .map(str::trim_end)
        .skip_while(|l| l.is_empty())
        .collect();
    let end = lines
        .iter()
        .rposition(|l| !l.is_empty())
        .map_or(0, |i| i + 1);
    match &lines[..end] {
        [] => format!("  check: files of {files} against an empty query on {source}"),
        [one] => format!(
            "  check: files of {files} against `{}` on {source}",
            one.trim()
        ),
        many => {
            let mut out = format!("  check: files of {files} against this query on {source}:");
            for l in many {
                out.push('\n');
                if !l.is_empty() {
                    out.push_str("    ");
                    out.push_str(l);
                }
            }
            out
        }
    }
}

/// The job's schedules with their next occurrence, in the zone the agent uses.
fn show_schedules(cfg: &Config, job: &coffer_config::Job) {
    let zone = cfg
        .agent
        .timezone
        .map_or_else(|| "host time".to_string(), |tz| tz.to_string());
    let next = |s: &coffer_config::Schedule| {
        crate::when::next_run(s, cfg.agent.timezone, chrono::Utc::now()).map_or_else(
            || "never (no such time)".to_string(),
            |t| crate::when::in_zone(t, cfg.agent.timezone),
        )
    };
    match &job.schedule {
        Some(s) => {
            print!("  schedule \"{s}\" ({zone}): next {}", next(s));
            if !job.jitter.is_zero() {
                print!(" plus up to {}", coffer_config::duration_words(job.jitter));
            }
            if job.catch_up {
                print!("; a missed run is made up at start");
            }
            if job.retries > 0 {
                print!(
                    "; {} retr{} {} apart",
                    job.retries,
                    if job.retries == 1 { "y" } else { "ies" },
                    coffer_config::duration_words(job.retry_wait)
                );
            }
            println!();
        }
        // A job without sources has nothing to run; it said so above.
        None if job.restore_only() => {}
        None => println!(
            "  no schedule: `coffer agent` does not run it (`coffer backup {}` does)",
            job.name
        ),
    }
    if let Some(s) = &job.verify_schedule {
        println!(
            "  verify_schedule \"{s}\" ({zone}): next {}; {}",
            next(s),
            match &cfg.encryption.identity_file {
                Some(f) if f.exists() => "deep (decrypts with the identity)",
                _ => "stored bytes only (no identity on this host)",
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::check_line;

    #[test]
    fn a_one_line_query_stays_on_the_line() {
        assert_eq!(
            check_line("storage", "SELECT path, size FROM file", "db"),
            "  check: files of storage against `SELECT path, size FROM file` on db"
        );
    }

    #[test]
    fn a_multi_line_query_is_indented_under_the_job() {
        let query = "\nSELECT path, size\nFROM file\n  WHERE state = 'active'\n\nORDER BY 1\n";
        assert_eq!(
            check_line("storage", query, "db"),
            "  check: files of storage against this query on db:\n    SELECT path, size\n    \
             FROM file\n      WHERE state = 'active'\n\n    ORDER BY 1"
        );
    }
}
