//! What the service's tasks share: the config (replaced on reload), which jobs are
//! running, when each schedule fires next, the scheduler's heartbeat, and every
//! job's status as last read from `state_dir/status`. The status files are read
//! and written only on blocking threads; HTTP handlers read memory. No lock here
//! is held across an await or around file I/O.

use crate::status::{self, JobStatus};
use chrono::{DateTime, Utc};
use coffer_config::Config;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use tokio::runtime::Handle;

pub(super) struct Shared {
    pub(super) config_path: PathBuf,
    config: RwLock<Arc<Config>>,
    running: Mutex<BTreeSet<String>>,
    next_runs: Mutex<BTreeMap<String, DateTime<Utc>>>,
    statuses: RwLock<Arc<Vec<(String, JobStatus)>>>,
    /// Unix seconds of the scheduler's last tick (`/healthz`).
    pub(super) heartbeat: AtomicI64,
    pub(super) rt: Handle,
    /// The listener is reachable from other hosts. Taken from the address bound,
    /// not from the config: a reload cannot move the listener.
    pub(super) exposed: bool,
}

impl Shared {
    pub(super) fn new(config_path: PathBuf, cfg: Config, rt: Handle, exposed: bool) -> Shared {
        Shared {
            config_path,
            config: RwLock::new(Arc::new(cfg)),
            running: Mutex::new(BTreeSet::new()),
            next_runs: Mutex::new(BTreeMap::new()),
            statuses: RwLock::new(Arc::new(Vec::new())),
            heartbeat: AtomicI64::new(Utc::now().timestamp()),
            rt,
            exposed,
        }
    }

    pub(super) fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn replace_config(&self, cfg: Config) {
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(cfg);
    }

    pub(super) fn running(&self) -> BTreeSet<String> {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Marks the job as running; false when it already was.
    pub(super) fn start_running(&self, job: &str) -> bool {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(job.to_string())
    }

    pub(super) fn stop_running(&self, job: &str) {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(job);
    }

    /// Records when the schedule `key` (a job, or `<job>/verify`) fires next.
    pub(super) fn set_next(&self, key: &str, at: DateTime<Utc>) {
        self.next_runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.to_string(), at);
    }

    pub(super) fn next_runs(&self) -> BTreeMap<String, DateTime<Utc>> {
        self.next_runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every configured job's status as last read.
    pub(super) fn statuses(&self) -> Arc<Vec<(String, JobStatus)>> {
        self.statuses
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads every configured job's status file again, on a blocking thread. Runs
    /// of the service refresh it when they end; a `coffer backup` or `prune` by
    /// hand shows up at the next periodic refresh.
    pub(super) async fn refresh_statuses(self: &Arc<Self>) {
        let s = self.clone();
        let read = self.rt.spawn_blocking(move || {
            let cfg = s.config();
            let all: Vec<(String, JobStatus)> = cfg
                .jobs
                .keys()
                .map(|j| (j.clone(), status::load(&cfg.agent.state_dir, j)))
                .collect();
            *s.statuses.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(all);
        });
        if let Err(e) = read.await {
            tracing::error!("cannot read the jobs' status: {e}");
        }
    }

    /// Changes one job's persisted status on a blocking thread, then refreshes.
    pub(super) async fn update_status(
        self: &Arc<Self>,
        job: &str,
        change: impl FnOnce(&mut JobStatus) + Send + 'static,
    ) {
        let (state_dir, name) = (self.config().agent.state_dir.clone(), job.to_string());
        let written = self
            .rt
            .spawn_blocking(move || status::update(&state_dir, &name, change))
            .await;
        match written {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(job, "cannot record the job's status: {e:#}"),
            Err(e) => tracing::error!(job, "recording the job's status panicked: {e}"),
        }
        self.refresh_statuses().await;
    }

    /// Tells systemd what the service is doing (`systemctl status`).
    pub(super) fn notify_status(&self) {
        let r = self.running();
        let text = if r.is_empty() {
            "idle".to_string()
        } else {
            format!(
                "backing up {}",
                r.into_iter().collect::<Vec<_>>().join(", ")
            )
        };
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&text)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(rt: &tokio::runtime::Runtime, state: &std::path::Path) -> Arc<Shared> {
        let text = format!(
            "[agent]\nstate_dir = \"{}\"\n[encryption]\nidentity_file = \"id.txt\"\ncreate_identity_if_missing = true\n\
             [targets.local]\ntype = \"local\"\npath = \"backups\"\n\
             [jobs.app]\ntargets = [\"local\"]\n[[jobs.app.sources]]\nname = \"files\"\ntype = \"directory\"\npath = \".\"\n",
            state.display()
        );
        let cfg = coffer_config::load_str(&text, std::path::Path::new("test.toml"), state)
            .expect("a valid config");
        Arc::new(Shared::new(
            "test.toml".into(),
            cfg,
            rt.handle().clone(),
            false,
        ))
    }

    #[test]
    fn a_job_runs_once_at_a_time() {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let s = shared(&rt, dir.path());
        assert!(s.start_running("app"));
        assert!(!s.start_running("app"), "a second run of the same job");
        s.stop_running("app");
        assert!(s.start_running("app"), "free again once stopped");
    }

    /// Handlers read memory: a change is visible after the update (which writes the
    /// file on a blocking thread and refreshes), and a run by hand (the file
    /// changed behind the service's back) once the statuses are read again.
    #[test]
    fn statuses_follow_updates_and_runs_by_hand() {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let s = shared(&rt, dir.path());
        let skipped = |s: &Shared| {
            s.statuses()
                .iter()
                .find(|(j, _)| j == "app")
                .map(|(_, st)| st.skipped)
        };
        rt.block_on(s.refresh_statuses());
        assert_eq!(skipped(&s), Some(0), "every configured job is listed");
        rt.block_on(s.update_status("app", |st| st.skipped += 2));
        assert_eq!(skipped(&s), Some(2));
        assert_eq!(status::load(dir.path(), "app").skipped, 2, "persisted");
        status::update(dir.path(), "app", |st| st.skipped += 1).expect("update by hand");
        assert_eq!(skipped(&s), Some(2), "memory until the next refresh");
        rt.block_on(s.refresh_statuses());
        assert_eq!(skipped(&s), Some(3));
    }
}
