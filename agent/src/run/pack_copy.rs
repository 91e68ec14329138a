//! Before a format-2 run reads anything: the packs of the index that a target of
//! the run lacks (it was down, or it joined the job) are copied to it from a
//! target that holds them, so their files need not be read and stored again.

use crate::pack::gc::Listed;
use coffer_config::Job;
use coffer_plugins::Target;
use std::collections::BTreeMap;
use tokio::runtime::Handle;

/// Packs of the index that a target of the run lacks (it was down, or it is new)
/// but another holds at their size are copied to it, as stored, checked on the
/// way against the size and BLAKE3 this host recorded when it wrote them: then
/// their files need not be read and stored again. A copy that fails leaves the
/// pack missing there (its files are read again, as before). Returns the notes.
pub(super) fn copy_missing(
    rt: &Handle,
    job: &Job,
    listed: &mut [(Target, BTreeMap<String, Listed>)],
    rows: &[crate::pack::index::PackInfo],
) -> Vec<String> {
    let at_size = |l: &BTreeMap<String, Listed>, p: &crate::pack::index::PackInfo| {
        l.get(&p.id).is_some_and(|got| got.size == p.stored_size)
    };
    // Per destination: packs copied, their bytes, and failures.
    let mut done: BTreeMap<usize, (u64, u64, Vec<String>)> = BTreeMap::new();
    for p in rows {
        let Some(from) = listed.iter().position(|(_, l)| at_size(l, p)) else {
            continue;
        };
        let record = super::packs::record_of(p, 0).as_object();
        let path = crate::pack::pack_path(&job.name, &p.id);
        for to in 0..listed.len() {
            if at_size(&listed[to].1, p) || crate::cancel::requested() {
                continue;
            }
            let entry = done.entry(to).or_default();
            match crate::copy::copy_object(rt, &listed[from].0, &listed[to].0, &path, &record) {
                Ok(()) => {
                    entry.0 += 1;
                    entry.1 += p.stored_size;
                    listed[to].1.insert(
                        p.id.clone(),
                        Listed {
                            size: p.stored_size,
                            modified: chrono::Utc::now(),
                        },
                    );
                }
                Err(e) => entry.2.push(format!("pack {}: {e}", p.id)),
            }
        }
    }
    let mut notes = Vec::new();
    for (to, (n, bytes, failed)) in done {
        let name = &listed[to].0.name;
        if n > 0 {
            notes.push(format!(
                "job {}: copied {n} pack(s) ({}) that target {name} lacked from another \
                 target instead of reading their files again",
                job.name,
                crate::units::bytes(bytes)
            ));
        }
        if let Some(first) = failed.first() {
            notes.push(format!(
                "job {}: {} pack(s) could not be copied to target {name} (their files are \
                 read and stored again), e.g. {first}",
                job.name,
                failed.len()
            ));
        }
    }
    notes
}
