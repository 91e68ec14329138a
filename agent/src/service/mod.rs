//! `coffer agent`: the service. Starts the HTTP side (`http`), one task per
//! schedule (`schedule`, which starts runs through `runs`), and tells systemd
//! READY, STATUS and WATCHDOG. SIGTERM cancels a running job cleanly (uploads
//! aborted, `after` hooks run) and exits 0; SIGHUP reloads a config that
//! validates and keeps the old one, saying why, otherwise. The backup run and
//! the verify are the domain's (`crate::run`, `crate::verify`), the same as the
//! CLI's.

mod chart;
mod html;
mod http;
pub(crate) mod metrics;
mod runs;
mod schedule;
mod state;
mod status_page;

pub(crate) use http::exposure_warning;
pub(crate) use schedule::occurrence;

use anyhow::{Context, Result};
use chrono::Utc;
use coffer_config::Config;
use schedule::spawn_schedules;
use state::Shared;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

/// How often the jobs' status files are read again, for runs the service did not
/// start (`coffer backup` or `prune` by hand).
const STATUS_REFRESH: Duration = Duration::from_secs(5);

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
    let exposed = exposure_warning(bound, false).is_some();
    let shared = Arc::new(Shared::new(config_path, cfg, rt.clone(), exposed));
    shared.refresh_statuses().await;
    let app = http::router(shared.clone());
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
            let mut last_refresh = std::time::Instant::now();
            loop {
                s.heartbeat.store(Utc::now().timestamp(), Ordering::Relaxed);
                if watchdog.is_some() {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                }
                if last_refresh.elapsed() >= STATUS_REFRESH {
                    s.refresh_statuses().await;
                    last_refresh = std::time::Instant::now();
                }
                tokio::time::sleep(tick).await;
            }
        });
    }
    info!(
        "listening on http://{listen}; {}",
        schedule::summary(&shared.config())
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
                        shared.replace_config(new);
                        for h in schedules.drain(..) {
                            h.abort();
                        }
                        shared.refresh_statuses().await;
                        schedules = spawn_schedules(&shared);
                        info!("reloaded {}; {}", shared.config_path.display(), schedule::summary(&shared.config()));
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
