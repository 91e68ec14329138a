//! `coffer mount`: picks the job's trusted snapshots on one target and hands
//! them to the file system (`crate::mount`), which serves until unmounted.

use crate::cli::{MountArgs, job as find_job, open_reader, trust_of};
use crate::exit::usage;
use anyhow::Result;
use coffer_config::Config;
use tokio::runtime::Handle;

pub fn run(rt: &Handle, cfg: &Config, args: &MountArgs) -> Result<u8> {
    let job = find_job(cfg, &args.from.job)?;
    let at = &args.mountpoint;
    match std::fs::read_dir(at).map(|mut list| list.next().is_none()) {
        Ok(true) => {}
        Ok(false) => {
            return Err(usage(format!(
                "{}: not empty; mount into an empty folder",
                at.display()
            )));
        }
        Err(e) => {
            return Err(usage(format!(
                "{}: {e}; make an empty folder to mount into (mkdir -p {})",
                at.display(),
                at.display()
            )));
        }
    }
    let reader = open_reader(
        cfg,
        job,
        "mount",
        args.from.target.as_deref(),
        args.from.identity.as_deref(),
    )?;
    let trust = trust_of(cfg, &args.from.trust);
    let markers = crate::repo::snapshots(rt, &reader.target, &job.name)?;
    crate::repo::vet_signers(&trust, &markers, &job.name, &reader.target.name)?;
    let all = markers.len();
    let mut markers: Vec<_> = markers
        .into_iter()
        .filter(|m| trust.refusal(m).is_none())
        .collect();
    markers.sort_by(|a, b| a.cmp_finished(b));
    if markers.len() < all {
        eprintln!(
            "{} of {all} snapshots are not signed by a trusted key and are not shown",
            all - markers.len()
        );
    }
    let tmp_dir = cfg.agent.state_dir.join("tmp");
    std::fs::create_dir_all(&tmp_dir)?;
    eprintln!(
        "job {}: {} snapshots from target {} at {}; umount {} to end",
        job.name,
        markers.len(),
        reader.target.name,
        at.display(),
        at.display()
    );
    crate::mount::serve(
        crate::mount::Source {
            rt: rt.clone(),
            target: reader.target,
            ids: reader.ids,
            markers,
            tmp_dir,
        },
        at,
        &job.name,
    )?;
    Ok(0)
}
