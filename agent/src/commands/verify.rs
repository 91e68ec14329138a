//! `coffer verify`: are the stored snapshots intact?
//!
//! Without an identity it re-reads every object and compares size and BLAKE3 with
//! `snapshot.json` (what a host holding only public keys can do). With one it also
//! decrypts and decompresses, and checks every file's size and BLAKE3 against the
//! manifest, writing nothing to disk.

use crate::cli::VerifyArgs;
use crate::commands::{job as find_job, print_json, targets_of};
use crate::exit::{self, usage};
use crate::format::{Manifest, Marker, SourceManifest, object_path};
use crate::keys::{self, Identities};
use crate::reader::{ObjectReader, Pumped, decrypt};
use crate::repo;
use anyhow::{Context, Result, bail};
use coffer_config::Config;
use coffer_plugins::{EntryKind, Target};
use serde::Serialize;
use std::collections::HashMap;
use std::io::Read;
use tokio::runtime::Handle;

#[derive(Serialize)]
struct Verdict {
    target: String,
    snapshot: String,
    mode: &'static str,
    ok: bool,
    objects: usize,
    files: usize,
    problems: Vec<String>,
}

pub fn run(rt: &Handle, cfg: &Config, args: &VerifyArgs) -> Result<u8> {
    let job = find_job(cfg, &args.job)?;
    let targets = targets_of(cfg, job, args.target.as_deref())?;
    let ids = if args.stored_only {
        None
    } else {
        match keys::identity_path(args.identity.as_deref(), &cfg.encryption) {
            Some(f) if f.exists() || args.identity.is_some() => {
                Some(keys::identities(f).map_err(|e| usage(format!("{e:#}")))?)
            }
            _ => None,
        }
    };
    let mut verdicts = Vec::new();
    for target in &targets {
        let all = repo::snapshots(rt, target, &job.name)?;
        let chosen: Vec<Marker> = match args.snapshot.as_str() {
            "all" => all,
            which => vec![repo::pick(all, which, &job.name, &target.name)?],
        };
        for marker in chosen {
            let mut v = Verdict {
                target: target.name.clone(),
                snapshot: marker.id.clone(),
                mode: if ids.is_some() { "deep" } else { "stored" },
                ok: true,
                objects: 0,
                files: 0,
                problems: Vec::new(),
            };
            let result = match &ids {
                None => stored(rt, target, &marker, &mut v),
                Some(ids) => deep(rt, target, &marker, ids, &mut v),
            };
            if let Err(e) = result {
                v.problems.push(format!("{e:#}"));
            }
            v.ok = v.problems.is_empty();
            if !args.json {
                if v.ok {
                    println!(
                        "{} on {}: ok ({} objects{} checked, {})",
                        v.snapshot,
                        v.target,
                        v.objects,
                        if v.mode == "deep" {
                            format!(", {} files", v.files)
                        } else {
                            String::new()
                        },
                        if v.mode == "deep" {
                            "decrypted"
                        } else {
                            "stored bytes only"
                        }
                    );
                } else {
                    println!("{} on {}: DAMAGED", v.snapshot, v.target);
                    for p in &v.problems {
                        println!("  {p}");
                    }
                }
            }
            verdicts.push(v);
        }
    }
    if args.json {
        print_json(&verdicts)?;
    }
    Ok(if verdicts.iter().all(|v| v.ok) {
        exit::OK
    } else {
        exit::INCONSISTENT
    })
}

fn stored(rt: &Handle, target: &Target, marker: &Marker, v: &mut Verdict) -> Result<()> {
    for o in &marker.objects {
        let path = object_path(&marker.job, &marker.id, &o.key);
        let copied = ObjectReader::open(rt, target, &path, Some(o))
            .and_then(|mut r| std::io::copy(&mut r, &mut std::io::sink()));
        if let Err(e) = copied {
            v.problems.push(e.to_string());
        }
        v.objects += 1;
    }
    Ok(())
}

fn deep(
    rt: &Handle,
    target: &Target,
    marker: &Marker,
    ids: &Identities,
    v: &mut Verdict,
) -> Result<()> {
    let manifest: Manifest = repo::read_manifest(rt, target, marker, ids)?;
    v.objects += 1;
    for o in marker.objects.iter().filter(|o| o.source.is_some()) {
        let src = o.source.as_deref().and_then(|s| manifest.source(s));
        let path = object_path(&marker.job, &marker.id, &o.key);
        let checked = ObjectReader::open(rt, target, &path, Some(o))
            .and_then(|reader| decrypt(reader, ids))
            .and_then(Pumped::spawn)
            .map_err(anyhow::Error::from)
            .and_then(|mut plain| match src {
                Some(s) if s.kind == "directory" => check_archive(&mut plain, s, v),
                _ => {
                    let n = std::io::copy(&mut plain, &mut std::io::sink())?;
                    if n != o.plaintext_size {
                        bail!(
                            "{path}: {n} plaintext bytes, snapshot.json says {}",
                            o.plaintext_size
                        );
                    }
                    Ok(())
                }
            });
        if let Err(e) = checked {
            v.problems.push(format!("{e:#}"));
        }
        v.objects += 1;
    }
    Ok(())
}

/// Hashes every file in the archive and compares with the manifest.
fn check_archive(plain: &mut dyn Read, src: &SourceManifest, v: &mut Verdict) -> Result<()> {
    let mut expected: HashMap<&[u8], (u64, Option<&String>)> = src
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .map(|e| (e.path.as_bytes(), (e.size, e.blake3.as_ref())))
        .collect();
    let mut archive = tar::Archive::new(plain);
    let mut buf = vec![0u8; 1 << 20];
    for entry in archive.entries().context("cannot read the archive")? {
        let mut entry = entry.context("cannot read the archive")?;
        if !matches!(
            entry.header().entry_type(),
            tar::EntryType::Regular | tar::EntryType::Continuous
        ) {
            continue;
        }
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let mut h = blake3::Hasher::new();
        let mut size = 0u64;
        loop {
            let n = entry
                .read(&mut buf)
                .with_context(|| format!("source {}: {name}", src.name))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            size += n as u64;
        }
        v.files += 1;
        match expected.remove(raw.as_slice()) {
            None => v.problems.push(format!(
                "source {}: {name}: in the archive but not in the manifest",
                src.name
            )),
            Some((want_size, want_hash)) => {
                if want_size != size || want_hash != Some(&h.finalize().to_hex().to_string()) {
                    v.problems.push(format!(
                        "source {}: {name}: content does not match the manifest",
                        src.name
                    ));
                }
            }
        }
    }
    let mut rest = archive.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink()).context("cannot read the archive")?;
    for (p, _) in expected {
        v.problems.push(format!(
            "source {}: {}: in the manifest but not in the archive",
            src.name,
            String::from_utf8_lossy(p)
        ));
    }
    Ok(())
}
