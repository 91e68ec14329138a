//! `coffer agent`: the service. Schedules each job (cron with optional seconds, in
//! the configured time zone, with jitter and catch-up), never overlaps a job with
//! itself (a run that comes due while the last one runs is skipped and counted;
//! the job lock also keeps out a `coffer backup` started by hand), and serves
//! `/metrics`, `/healthz` and `/api/v1/jobs` on a loopback address by default.
//! Tells systemd READY, STATUS and WATCHDOG; SIGTERM cancels a running job cleanly
//! (uploads aborted, `after` hooks run) and exits 0; SIGHUP reloads a config that
//! validates and keeps the old one, saying why, otherwise.
//!
//! Beyond loopback (`listen = "0.0.0.0:9187"`, for a Prometheus on another host)
//! the agent warns at start, and every `/api/v1/*` request needs the bearer token
//! from `api_token_file`: `last_error` can describe the infrastructure. Without a
//! token file the API answers 403 there, and the agent still starts: refusing to
//! start would stop the backups over a monitoring setting, and /metrics and
//! /healthz (which stay open) are what a remote scraper needs. The token is
//! compared in constant time (equal BLAKE3 hashes, whose comparison is constant
//! time and which also hide the token's length).

pub(crate) mod metrics;

use crate::run::run_job;
use crate::status;
use anyhow::{Context, Result};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use coffer_config::{Config, Secret};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

struct Shared {
    config_path: PathBuf,
    config: RwLock<Arc<Config>>,
    running: Mutex<BTreeSet<String>>,
    next_runs: Mutex<BTreeMap<String, DateTime<Utc>>>,
    heartbeat: AtomicI64,
    rt: Handle,
    /// The listener is reachable from other hosts. Taken from the address bound,
    /// not from the config: a reload cannot move the listener.
    exposed: bool,
}

impl Shared {
    fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }
    fn running(&self) -> BTreeSet<String> {
        self.running.lock().map(|r| r.clone()).unwrap_or_default()
    }
    fn notify_status(&self) {
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

/// When `cron` fires next after `now` (or last before it, `forward` false), in the
/// configured zone (the host's by default).
fn occurrence(
    cron: &croner::Cron,
    tz: Option<chrono_tz::Tz>,
    now: DateTime<Utc>,
    forward: bool,
) -> Option<DateTime<Utc>> {
    fn at<Z: chrono::TimeZone>(
        cron: &croner::Cron,
        t: DateTime<Z>,
        forward: bool,
    ) -> Option<DateTime<Utc>> {
        let found = if forward {
            cron.find_next_occurrence(&t, false)
        } else {
            cron.find_previous_occurrence(&t, false)
        };
        found.ok().map(|t| t.with_timezone(&Utc))
    }
    match tz {
        Some(tz) => at(cron, now.with_timezone(&tz), forward),
        None => at(cron, now.with_timezone(&chrono::Local), forward),
    }
}

/// Starts a run unless the job is already running; returns whether it started.
fn trigger(shared: &Arc<Shared>, job: &str, why: &str) -> bool {
    let cfg = shared.config();
    if crate::cancel::requested() {
        return false;
    }
    {
        let Ok(mut running) = shared.running.lock() else {
            return false;
        };
        if !running.insert(job.to_string()) {
            warn!(
                job,
                "skipped a {why} run: the previous one is still running"
            );
            let _ = status::update(&cfg.agent.state_dir, job, |s| s.skipped += 1);
            return false;
        }
    }
    shared.notify_status();
    info!(job, "starting a {why} run");
    let (s, name) = (shared.clone(), job.to_string());
    let blocking = shared.rt.spawn_blocking(move || {
        let cfg = s.config();
        match cfg.jobs.get(&name) {
            Some(j) => run_job(&s.rt, &cfg, j),
            None => Err(anyhow::anyhow!("job {name} is no longer configured")),
        }
    });
    let (s, name) = (shared.clone(), job.to_string());
    shared.rt.spawn(async move {
        match blocking.await {
            Ok(Ok(run))
                if run.status == crate::run::status::RunStatus::Success
                    && run.hook_errors.is_empty() =>
            {
                info!(
                    job = name,
                    snapshot = run.snapshot,
                    duration = run.duration_seconds,
                    "run succeeded"
                );
            }
            Ok(Ok(run)) => error!(
                job = name,
                status = run.status.as_str(),
                error = run.error.as_deref().unwrap_or(""),
                hooks = run.hook_errors.join("; "),
                "run did not succeed"
            ),
            // The lock was held (a `coffer backup` by hand) or the run could not start.
            Ok(Err(e)) => {
                warn!(job = name, "run not started: {e:#}");
                let cfg = s.config();
                let _ = status::update(&cfg.agent.state_dir, &name, |st| st.skipped += 1);
            }
            Err(e) => error!(job = name, "run panicked: {e}"),
        }
        if let Ok(mut r) = s.running.lock() {
            r.remove(&name);
        }
        s.notify_status();
    });
    true
}

/// Sleeps until the next time `cron` fires (plus jitter); false if it never will.
async fn sleep_until_next(
    shared: &Shared,
    key: &str,
    cron: &croner::Cron,
    tz: Option<chrono_tz::Tz>,
    jitter: Duration,
) -> bool {
    let Some(mut next) = occurrence(cron, tz, Utc::now(), true) else {
        warn!(key, "the schedule never fires again");
        return false;
    };
    if !jitter.is_zero() {
        let extra = rand::random::<u64>() % (jitter.as_millis() as u64).max(1);
        next += chrono::Duration::milliseconds(extra as i64);
    }
    if let Ok(mut n) = shared.next_runs.lock() {
        n.insert(key.to_string(), next);
    }
    tokio::time::sleep((next - Utc::now()).to_std().unwrap_or_default()).await;
    true
}

/// Periodic verify of the newest snapshot on every target: stored bytes only, or
/// deep when the configured identity file exists on this host.
async fn verify_loop(shared: Arc<Shared>, job: String) {
    let cfg = shared.config();
    let Some(j) = cfg.jobs.get(&job) else { return };
    let Some(schedule) = &j.verify_schedule else {
        return;
    };
    let key = format!("{job}/verify");
    while sleep_until_next(&shared, &key, schedule.cron(), cfg.agent.timezone, j.jitter).await {
        let (s, name) = (shared.clone(), job.clone());
        let outcome = shared
            .rt
            .spawn_blocking(move || {
                let cfg = s.config();
                let j = cfg
                    .jobs
                    .get(&name)
                    .ok_or_else(|| anyhow::anyhow!("job {name} is no longer configured"))?;
                let ids = crate::verify::identities_for(&cfg, None, false)?;
                crate::verify::verify_job(&s.rt, &cfg, j, None, "latest", ids.as_ref())
            })
            .await;
        match outcome {
            Ok(Ok(v)) if v.iter().all(|v| v.ok) => info!(job, "verify ok ({} target(s))", v.len()),
            Ok(Ok(v)) => error!(
                job,
                "verify found damage: {}",
                v.iter()
                    .flat_map(|v| v.problems.iter().cloned())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Ok(Err(e)) => error!(job, "verify could not run: {e:#}"),
            Err(e) => error!(job, "verify panicked: {e}"),
        }
    }
}

async fn job_loop(shared: Arc<Shared>, job: String) {
    let cfg = shared.config();
    let Some(j) = cfg.jobs.get(&job) else { return };
    let Some(schedule) = &j.schedule else {
        return;
    };
    let (cron, tz) = (schedule.cron(), cfg.agent.timezone);
    if j.catch_up {
        let last = status::load(&cfg.agent.state_dir, &job)
            .last_success
            .unwrap_or(0.0);
        if let Some(prev) = occurrence(cron, tz, Utc::now(), false)
            && (prev.timestamp() as f64) > last
        {
            info!(job, "catching up: the run due at {prev} was missed");
            trigger(&shared, &job, "catch-up");
        }
    }
    while sleep_until_next(&shared, &job, cron, tz, j.jitter).await {
        trigger(&shared, &job, "scheduled");
    }
}

fn spawn_schedules(shared: &Arc<Shared>) -> Vec<JoinHandle<()>> {
    let cfg = shared.config();
    let backups = cfg.jobs.values().filter(|j| j.schedule.is_some());
    let verifies = cfg.jobs.values().filter(|j| j.verify_schedule.is_some());
    backups
        .map(|j| shared.rt.spawn(job_loop(shared.clone(), j.name.clone())))
        .chain(verifies.map(|j| shared.rt.spawn(verify_loop(shared.clone(), j.name.clone()))))
        .collect()
}

async fn metrics(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let cfg = s.config();
    let jobs: Vec<(String, status::JobStatus)> = cfg
        .jobs
        .keys()
        .map(|j| (j.clone(), status::load(&cfg.agent.state_dir, j)))
        .collect();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::service::metrics::render(&jobs, &s.running()),
    )
}

async fn healthz(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let age = Utc::now().timestamp() - s.heartbeat.load(Ordering::Relaxed);
    if age <= 10 {
        (StatusCode::OK, "ok\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("scheduler silent for {age}s\n"),
        )
    }
}

/// The warning for a listener that other hosts can reach, if it is one (also
/// printed by `coffer config check`).
pub fn exposure_warning(listen: SocketAddr, has_token: bool) -> Option<String> {
    if listen.ip().to_canonical().is_loopback() {
        return None;
    }
    let api = if has_token {
        "/api/v1/* requires the bearer token from api_token_file"
    } else {
        "/api/v1/* refuses every request (403) until [agent] api_token_file is set"
    };
    Some(format!(
        "[agent] listen = \"{listen}\" is not a loopback address: /metrics and /healthz are open to the network; {api}"
    ))
}

/// Whether the request carries `Authorization: Bearer <token>`, compared in
/// constant time: BLAKE3 hashes compare in constant time and have a fixed length.
fn bearer_ok(token: &Secret, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| {
            blake3::hash(given.as_bytes()) == blake3::hash(token.expose().as_bytes())
        })
}

/// Reading the API: open on loopback; beyond it, only with the token.
fn may_read_api(
    s: &Shared,
    cfg: &Config,
    headers: &HeaderMap,
) -> Result<(), (StatusCode, &'static str)> {
    if !s.exposed {
        return Ok(());
    }
    match &cfg.agent.api_token {
        None => Err((
            StatusCode::FORBIDDEN,
            "refused: the agent listens beyond loopback; set [agent] api_token_file and send Authorization: Bearer <token>\n",
        )),
        Some(t) if bearer_ok(t, headers) => Ok(()),
        Some(_) => Err((StatusCode::UNAUTHORIZED, "missing or wrong bearer token\n")),
    }
}

async fn jobs(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let cfg = s.config();
    if let Err(refused) = may_read_api(&s, &cfg, &headers) {
        return refused.into_response();
    }
    let running = s.running();
    let next = s.next_runs.lock().map(|n| n.clone()).unwrap_or_default();
    let list: Vec<serde_json::Value> = cfg
        .jobs
        .values()
        .map(|j| {
            let st = status::load(&cfg.agent.state_dir, &j.name);
            serde_json::json!({
                "job": j.name,
                "schedule": j.schedule,
                "running": running.contains(&j.name),
                "next_run": next.get(&j.name).map(DateTime::to_rfc3339),
                "next_verify": next.get(&format!("{}/verify", j.name)).map(DateTime::to_rfc3339),
                "last_verify_success": st.last_verify_success,
                "last_run": st.last_run,
                "last_success": st.last_success,
                "last_outcome": st.last_outcome,
                "last_error": st.last_error,
                "last_snapshot": st.last_snapshot,
                "skipped": st.skipped,
            })
        })
        .collect();
    axum::Json(list).into_response()
}

async fn run_now(
    State(s): State<Arc<Shared>>,
    UrlPath(job): UrlPath<String>,
    headers: HeaderMap,
) -> impl IntoResponse {
    let cfg = s.config();
    let Some(token) = &cfg.agent.api_token else {
        return (
            StatusCode::FORBIDDEN,
            "disabled: set [agent] api_token_file to allow runs over HTTP\n",
        );
    };
    if !bearer_ok(token, &headers) {
        return (StatusCode::UNAUTHORIZED, "missing or wrong bearer token\n");
    }
    if !cfg.jobs.contains_key(&job) {
        return (StatusCode::NOT_FOUND, "no such job\n");
    }
    if trigger(&s, &job, "requested") {
        (StatusCode::ACCEPTED, "started\n")
    } else {
        (StatusCode::CONFLICT, "already running\n")
    }
}

pub fn run(rt: &Handle, config_path: &Path) -> Result<u8> {
    let cfg = coffer_config::load(config_path)?;
    crate::cancel::watch(rt).context("cannot install the SIGTERM and SIGINT handlers")?;
    rt.block_on(serve(rt.clone(), config_path.to_path_buf(), cfg))
}

async fn serve(rt: Handle, config_path: PathBuf, cfg: Config) -> Result<u8> {
    let listen = cfg.agent.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} ([agent] listen)"))?;
    let bound = listener.local_addr().unwrap_or(listen);
    let shared = Arc::new(Shared {
        config_path,
        config: RwLock::new(Arc::new(cfg)),
        running: Mutex::new(BTreeSet::new()),
        next_runs: Mutex::new(BTreeMap::new()),
        heartbeat: AtomicI64::new(Utc::now().timestamp()),
        rt: rt.clone(),
        exposed: exposure_warning(bound, false).is_some(),
    });
    let app = axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/api/v1/jobs", get(jobs))
        .route("/api/v1/jobs/{job}/run", post(run_now))
        .with_state(shared.clone());
    rt.spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(crate::cancel::wait());
        if let Err(e) = server.await {
            error!("HTTP server stopped: {e}");
        }
    });
    let mut schedules = spawn_schedules(&shared);
    {
        let s = shared.clone();
        rt.spawn(async move {
            let watchdog = sd_notify::watchdog_enabled();
            let tick = watchdog.map_or(Duration::from_secs(1), |w| {
                (w / 2).min(Duration::from_secs(1))
            });
            loop {
                s.heartbeat.store(Utc::now().timestamp(), Ordering::Relaxed);
                if watchdog.is_some() {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                }
                tokio::time::sleep(tick).await;
            }
        });
    }
    info!(
        "listening on http://{listen}; {} job(s) scheduled",
        schedules.len()
    );
    if let Some(w) = exposure_warning(bound, shared.config().agent.api_token.is_some()) {
        warn!("{w}");
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    shared.notify_status();
    let mut hup = signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = crate::cancel::wait() => break,
            _ = hup.recv() => {
                match coffer_config::load(&shared.config_path) {
                    Ok(new) => {
                        if new.agent.listen != shared.config().agent.listen {
                            warn!("[agent] listen changed: restart the service to move the listener");
                        }
                        if let Ok(mut c) = shared.config.write() {
                            *c = Arc::new(new);
                        }
                        for h in schedules.drain(..) {
                            h.abort();
                        }
                        schedules = spawn_schedules(&shared);
                        info!("reloaded {}; {} job(s) scheduled", shared.config_path.display(), schedules.len());
                        if let Some(w) = exposure_warning(bound, shared.config().agent.api_token.is_some()) {
                            warn!("{w}");
                        }
                    }
                    Err(e) => error!("kept the previous config: {} does not validate:\n{e}", shared.config_path.display()),
                }
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
            }
        }
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    info!("stopping: cancelling running jobs");
    for h in schedules {
        h.abort();
    }
    // Running jobs see the cancel flag, abort their uploads and run their `after` hooks.
    while !shared.running().is_empty() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    info!("stopped");
    Ok(crate::exit::OK)
}
