//! `coffer list`: committed snapshots per target and job, from markers alone (no
//! private key needed).

use crate::cli::ListArgs;
use crate::commands::{print_json, targets_of};
use crate::exit::usage;
use crate::repo;
use crate::units::bytes;
use anyhow::Result;
use coffer_config::Config;
use serde::Serialize;
use tokio::runtime::Handle;

#[derive(Serialize)]
struct Row<'a> {
    target: &'a str,
    #[serde(flatten)]
    marker: &'a crate::format::Marker,
}

pub fn run(rt: &Handle, cfg: &Config, args: &ListArgs) -> Result<u8> {
    let jobs: Vec<&coffer_config::Job> = match &args.job {
        Some(j) => vec![crate::commands::job(cfg, j)?],
        None => cfg.jobs.values().collect(),
    };
    if let Some(t) = &args.target
        && !cfg.targets.contains_key(t)
    {
        return Err(usage(format!(
            "no target \"{t}\" in {}",
            cfg.file.display()
        )));
    }
    let mut found = Vec::new();
    for job in jobs {
        if args
            .target
            .as_ref()
            .is_some_and(|t| !job.targets.contains(t))
        {
            continue;
        }
        for target in targets_of(cfg, job, args.target.as_deref())? {
            for m in repo::snapshots(rt, &target, &job.name)? {
                found.push((target.name.clone(), m));
            }
        }
    }
    if args.json {
        let rows: Vec<Row> = found
            .iter()
            .map(|(t, m)| Row {
                target: t,
                marker: m,
            })
            .collect();
        print_json(&rows)?;
        return Ok(crate::exit::OK);
    }
    if found.is_empty() {
        println!("no snapshots");
        return Ok(crate::exit::OK);
    }
    println!(
        "{:<22} {:<12} {:<10} {:>10} {:>10} {:>8}  sources",
        "snapshot", "job", "target", "data", "stored", "skew"
    );
    for (t, m) in &found {
        let sources: Vec<String> = m
            .objects
            .iter()
            .filter_map(|o| {
                let name = o.source.as_deref()?;
                Some(match o.facts.get("schema_version") {
                    Some(v) => format!("{name}(schema {v})"),
                    None => name.to_string(),
                })
            })
            .collect();
        println!(
            "{:<22} {:<12} {:<10} {:>10} {:>10} {:>7.3}s  {}",
            m.id,
            m.job,
            t,
            bytes(m.plaintext_size()),
            bytes(m.stored_size()),
            m.skew_seconds,
            sources.join(",")
        );
    }
    Ok(crate::exit::OK)
}
