//! `coffer list`: committed snapshots per target and job, from markers alone (no
//! private key needed). A target that cannot be listed is reported (exit 1) after
//! what the others hold.

use crate::cli::ListArgs;
use crate::cli::print_json;
use crate::repo;
use crate::repo::targets_of;
use crate::units::bytes;
use anyhow::Result;
use coffer_config::Config;
use serde::Serialize;
use tokio::runtime::Handle;

#[derive(Serialize)]
struct Row<'a> {
    target: &'a str,
    /// `signed` (by a trusted key), `UNTRUSTED` (signed by another key) or `unsigned`.
    signature: &'static str,
    /// The public key that signed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    signer: Option<String>,
    #[serde(flatten)]
    marker: &'a crate::format::Marker,
}

pub fn run(rt: &Handle, cfg: &Config, args: &ListArgs) -> Result<u8> {
    let jobs = crate::cli::jobs_for(cfg, args.job.as_deref(), args.target.as_deref())?;
    let trust = crate::format::seal::Trust::new(&cfg.encryption, &[], false);
    let mut found = Vec::new();
    let mut failures = Vec::new();
    for job in jobs {
        for target in targets_of(
            cfg,
            job,
            args.target.as_deref(),
            coffer_plugins::Access::Read,
        )? {
            // One unreachable target must not hide what the others hold.
            match repo::snapshots(rt, &target, &job.name) {
                Ok(markers) => found.extend(markers.into_iter().map(|m| (target.name.clone(), m))),
                Err(e) => failures.push(format!("{e:#}")),
            }
        }
    }
    let code = if failures.is_empty() {
        crate::exit::OK
    } else {
        crate::exit::FAILED
    };
    for f in &failures {
        eprintln!("error: {f}");
    }
    if args.json {
        let rows: Vec<Row> = found
            .iter()
            .map(|(t, m)| Row {
                target: t,
                signature: trust.describe(&m.seal),
                signer: match &m.seal {
                    crate::format::seal::Seal::Signed(s) => Some(s.to_string()),
                    crate::format::seal::Seal::Unsigned => None,
                },
                marker: m,
            })
            .collect();
        print_json(&rows)?;
        return Ok(code);
    }
    if found.is_empty() {
        println!("no snapshots");
        return Ok(code);
    }
    println!(
        "{:<22} {:<12} {:<10} {:>10} {:>10} {:>8} {:>8}  {:<9}  sources",
        "snapshot", "job", "target", "data", "stored", "skew", "window", "signature"
    );
    for (t, m) in &found {
        // Format 2 stores directory sources in packs, without an object of their
        // own: the marker names them apart (not in markers older than that).
        let sources: Vec<String> = m
            .packed_sources
            .iter()
            .map(|name| coffer_plugins::escape_controls(name).into_owned())
            .chain(
                m.streams
                    .iter()
                    .map(|s| (s.source.as_str(), &s.facts))
                    .chain(
                        m.objects
                            .iter()
                            .filter_map(|o| Some((o.source.as_deref()?, &o.facts))),
                    )
                    .map(|(name, facts)| match facts.get("schema_version") {
                        Some(v) => {
                            format!("{name}(schema {})", coffer_plugins::escape_controls(v))
                        }
                        None => name.to_string(),
                    }),
            )
            .collect();
        // Snapshots from before the window was recorded have none to show.
        let window = m
            .window_seconds
            .map_or_else(|| "-".to_string(), |w| format!("{w:.3}s"));
        println!(
            "{:<22} {:<12} {:<10} {:>10} {:>10} {:>7.3}s {:>8}  {:<9}  {}",
            m.id,
            m.job,
            t,
            bytes(m.plaintext_size()),
            bytes(m.stored_size()),
            m.skew_seconds,
            window,
            trust.describe(&m.seal),
            sources.join(",")
        );
    }
    show_signers(&found, &trust);
    Ok(code)
}

/// Where some snapshots are not signed by a trusted key (a new host, or planted
/// ones), who signed what, per job and target: what an operator compares with the
/// key they kept before trusting it.
fn show_signers(found: &[(String, crate::format::Marker)], trust: &crate::format::seal::Trust) {
    let mut groups: std::collections::BTreeMap<(&str, &str), Vec<&crate::format::Marker>> =
        Default::default();
    for (t, m) in found {
        groups
            .entry((m.job.as_str(), t.as_str()))
            .or_default()
            .push(m);
    }
    for ((job, target), markers) in groups {
        if markers.iter().all(|m| trust.refusal(m).is_none()) {
            continue;
        }
        println!(
            "job {job} on target {target} is signed by:{}",
            crate::format::signers::listing(markers.iter().copied(), trust)
        );
    }
}
