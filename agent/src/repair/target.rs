//! One target's check and repair: every item its trusted markers bind (packs two
//! markers record differently left out), each checked, and a damaged one copied
//! back from the first other target that holds a good copy.

use super::copy::{CopyError, copy_verified};
use super::report::{Problem, Repaired, TargetReport};
use super::{Item, Kind, Opened, object_name};
use crate::format::{Marker, PackRecord, object_path};
use crate::pack::damage::{Stored, check_object};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tokio::runtime::Handle;

/// Every distinct item the trusted markers name; pack ids that two markers
/// record differently are left out (and reported): no record can be trusted to
/// decide which copy is right.
fn items_of(job: &str, markers: &[&Marker], failures: &mut Vec<String>) -> Vec<Item> {
    let mut packs: BTreeMap<String, PackRecord> = BTreeMap::new();
    let mut disputed = BTreeSet::new();
    let mut objects = Vec::new();
    for m in markers {
        for p in &m.packs {
            match packs.get(&p.id) {
                Some(q) if q.stored_size != p.stored_size || q.blake3 != p.blake3 => {
                    disputed.insert(p.id.clone());
                }
                Some(_) => {}
                None => {
                    packs.insert(p.id.clone(), p.clone());
                }
            }
        }
        for o in &m.objects {
            objects.push(Item {
                kind: Kind::Object,
                name: object_name(&m.id, &o.key),
                path: object_path(job, &m.id, &o.key),
                record: o.clone(),
            });
        }
    }
    for id in &disputed {
        failures.push(format!(
            "pack {id}: trusted snapshots record it with different sizes or hashes; left alone"
        ));
    }
    let mut out: Vec<Item> = packs
        .into_values()
        .filter(|p| !disputed.contains(&p.id) && crate::pack::is_pack_id(&p.id))
        .map(|p| Item {
            kind: Kind::Pack,
            path: crate::pack::pack_path(job, &p.id),
            record: p.as_object(),
            name: p.id,
        })
        .collect();
    out.extend(objects);
    out
}

pub(super) fn repair_target(
    rt: &Handle,
    opened: &[Opened],
    t: usize,
    job: &str,
    dry_run: bool,
    tmp_dir: &std::path::Path,
    known: &mut HashMap<(usize, String), Stored>,
) -> TargetReport {
    let o = &opened[t];
    let mut r = TargetReport {
        target: o.name.clone(),
        snapshots: 0,
        untrusted_snapshots: o.untrusted,
        packs_checked: 0,
        objects_checked: 0,
        repaired: Vec::new(),
        unrepairable: Vec::new(),
        unreadable: Vec::new(),
        failures: Vec::new(),
    };
    let Some(target) = o.target.as_ref().filter(|_| o.failed.is_none()) else {
        r.failures.push(format!(
            "{}; not checked",
            o.failed.as_deref().unwrap_or("cannot open it")
        ));
        return r;
    };
    let trusted: Vec<&Marker> = o.markers.iter().collect();
    r.snapshots = trusted.len();
    for item in items_of(job, &trusted, &mut r.failures) {
        match item.kind {
            Kind::Pack => r.packs_checked += 1,
            Kind::Object => r.objects_checked += 1,
        }
        let state = check_object(rt, target, &item.path, &item.record);
        let was = match &state {
            Stored::Intact => {
                known.insert((t, item.name.clone()), Stored::Intact);
                continue;
            }
            Stored::Unreadable(why) => {
                r.unreadable.push(Problem {
                    kind: item.kind,
                    name: item.name.clone(),
                    why: why.clone(),
                });
                known.insert((t, item.name.clone()), state);
                continue;
            }
            Stored::Bad(why) => why.clone(),
        };
        known.insert((t, item.name.clone()), state);
        match good_copy(rt, opened, t, &item, dry_run, tmp_dir, known) {
            Ok(from) => {
                known.insert((t, item.name.clone()), Stored::Intact);
                r.repaired.push(Repaired {
                    kind: item.kind,
                    name: item.name.clone(),
                    from,
                    was,
                });
            }
            Err(why) => match why {
                NoCopy::Nowhere(tried) => r.unrepairable.push(Problem {
                    kind: item.kind,
                    name: item.name.clone(),
                    why: if tried.is_empty() {
                        was
                    } else {
                        format!("{was}; {}", tried.join("; "))
                    },
                }),
                NoCopy::Failed(why) => {
                    r.failures.push(format!("{}: {why}", item.name));
                    r.unrepairable.push(Problem {
                        kind: item.kind,
                        name: item.name.clone(),
                        why: format!("{was}; the copy from another target failed: {why}"),
                    });
                }
            },
        }
    }
    r
}

enum NoCopy {
    /// No other target holds a good copy (what each said).
    Nowhere(Vec<String>),
    /// One does, but writing it to the target failed (or the copy did not check).
    Failed(String),
}

/// Finds a good copy of `item` on another target and (unless `dry_run`) copies it
/// to target `t`, checking it there after; returns the source's name.
fn good_copy(
    rt: &Handle,
    opened: &[Opened],
    t: usize,
    item: &Item,
    dry_run: bool,
    tmp_dir: &std::path::Path,
    known: &mut HashMap<(usize, String), Stored>,
) -> Result<String, NoCopy> {
    let Some(to) = opened[t].target.as_ref() else {
        return Err(NoCopy::Failed(format!(
            "target {} is not open",
            opened[t].name
        )));
    };
    let mut tried = Vec::new();
    let mut last_failure = None;
    for (s, source) in opened.iter().enumerate() {
        let Some(from) = source.target.as_ref().filter(|_| s != t) else {
            continue;
        };
        if matches!(known.get(&(s, item.name.clone())), Some(Stored::Bad(_))) {
            tried.push(format!("target {}: damaged too", source.name));
            continue;
        }
        if dry_run {
            match check_object(rt, from, &item.path, &item.record) {
                Stored::Intact => {
                    known.insert((s, item.name.clone()), Stored::Intact);
                    return Ok(source.name.clone());
                }
                Stored::Bad(why) => {
                    tried.push(format!("target {}: {why}", source.name));
                    known.insert((s, item.name.clone()), Stored::Bad(why));
                }
                Stored::Unreadable(why) => {
                    tried.push(format!("target {}: cannot read it: {why}", source.name))
                }
            }
            continue;
        }
        match copy_verified(rt, from, to, &item.path, &item.record, tmp_dir) {
            Ok(()) => match check_object(rt, to, &item.path, &item.record) {
                Stored::Intact => {
                    known.insert((s, item.name.clone()), Stored::Intact);
                    return Ok(source.name.clone());
                }
                Stored::Bad(why) | Stored::Unreadable(why) => {
                    last_failure = Some(format!(
                        "copied from target {}, but the copy on target {} does not check: {why}",
                        source.name, opened[t].name
                    ));
                }
            },
            Err(CopyError::SourceBad(why)) => {
                tried.push(format!("target {}: {why}", source.name));
                known.insert((s, item.name.clone()), Stored::Bad(why));
            }
            Err(CopyError::SourceUnreadable(why)) => {
                tried.push(format!("target {}: cannot read it: {why}", source.name));
            }
            Err(CopyError::Write(why)) => last_failure = Some(why),
        }
    }
    match last_failure {
        Some(why) => Err(NoCopy::Failed(why)),
        None => Err(NoCopy::Nowhere(tried)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(id: &str, packs: serde_json::Value) -> Marker {
        let json = serde_json::json!({
            "format": 2, "id": id, "job": "app", "host": "h", "coffer_version": "0",
            "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:01Z",
            "skew_seconds": 0.0,
            "objects": [{"key": "manifest.json.zst.age", "plaintext_size": 1,
                         "stored_size": 2, "blake3": "ab".repeat(32)}],
            "packs": packs,
        });
        serde_json::from_value(json).expect("marker")
    }

    fn pack(id: &str, hash: &str) -> serde_json::Value {
        serde_json::json!({"id": id, "stored_size": 10, "blake3": hash.repeat(32),
                           "content_size": 5, "used": 5})
    }

    #[test]
    fn packs_two_trusted_markers_record_differently_are_left_alone() {
        let shared = "1".repeat(32);
        let disputed = "2".repeat(32);
        let a = marker(
            "20260101T000000Z-0001",
            serde_json::json!([pack(&shared, "aa"), pack(&disputed, "bb")]),
        );
        let b = marker(
            "20260101T000001Z-0002",
            serde_json::json!([pack(&shared, "aa"), pack(&disputed, "cc")]),
        );
        let mut failures = Vec::new();
        let items = items_of("app", &[&a, &b], &mut failures);
        let packs: Vec<&str> = items
            .iter()
            .filter(|i| i.kind == Kind::Pack)
            .map(|i| i.name.as_str())
            .collect();
        // The shared pack once, the disputed one not at all; each snapshot's manifest.
        assert_eq!(packs, vec![shared.as_str()]);
        assert_eq!(items.iter().filter(|i| i.kind == Kind::Object).count(), 2);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].contains(&disputed), "{failures:?}");
    }
}
