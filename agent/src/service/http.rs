//! The service's HTTP side: `/metrics` and `/healthz` (open, what a scraper
//! needs), the status page at `/` (`status_page`), `/api/v1/jobs` and
//! `POST /api/v1/jobs/<job>/run`. Handlers read only memory (`Shared`); nothing
//! here touches a file.
//!
//! Beyond loopback (`listen = "0.0.0.0:9187"`, for a Prometheus on another host)
//! the agent warns at start, and every `/api/v1/*` request, and the status page,
//! need the bearer token from `api_token_file`: `last_error` can describe the
//! infrastructure. Without a
//! token file the API answers 403 there, and the agent still starts: refusing to
//! start would stop the backups over a monitoring setting, and /metrics and
//! /healthz (which stay open) are what a remote scraper needs. The token is
//! compared in constant time (equal BLAKE3 hashes, whose comparison is constant
//! time and which also hide the token's length).

use super::runs::trigger;
use super::state::Shared;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use coffer_config::{Config, Secret};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub(super) fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/", get(status_page))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/api/v1/jobs", get(jobs))
        .route("/api/v1/jobs/{job}/run", post(run_now))
        .with_state(shared)
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    match super::metrics::render(&s.statuses(), &s.running()) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!("cannot render /metrics: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot render the metrics: {e}\n"),
            )
                .into_response()
        }
    }
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
pub(crate) fn exposure_warning(listen: SocketAddr, has_token: bool) -> Option<String> {
    if listen.ip().to_canonical().is_loopback() {
        return None;
    }
    let api = if has_token {
        "/api/v1/* requires the bearer token from api_token_file, and so does the status page at /"
    } else {
        "/api/v1/* refuses every request (403) until [agent] api_token_file is set, and so does the status page at /"
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
    let next = s.next_runs();
    let statuses = s.statuses();
    let list: Vec<serde_json::Value> = cfg
        .jobs
        .values()
        .map(|j| {
            let st = statuses
                .iter()
                .find(|(name, _)| *name == j.name)
                .map(|(_, st)| st.clone())
                .unwrap_or_default();
            serde_json::json!({
                "job": j.name,
                "schedule": j.schedule,
                "running": running.contains(&j.name),
                "next_run": next.get(&j.name).map(DateTime::to_rfc3339),
                "next_verify": next.get(&format!("{}/verify", j.name)).map(DateTime::to_rfc3339),
                "last_verify_mode": st.last_verify_mode,
                "last_deep_verify_success": st.last_deep_verify_success,
                "last_stored_verify_success": st.last_stored_verify_success,
                "last_verify_ok": st.last_verify_ok,
                "last_run": st.last_run,
                "last_success": st.last_success,
                "last_outcome": st.last_outcome,
                "last_error": st.last_error,
                "last_snapshot": st.last_snapshot,
                "last_skew_seconds": st.last_skew_seconds,
                "last_window_seconds": st.last_window_seconds,
                "skipped": st.skipped,
            })
        })
        .collect();
    axum::Json(list).into_response()
}

/// The status page: what `/api/v1/jobs` says, for a person.
async fn status_page(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let cfg = s.config();
    if let Err(refused) = may_read_api(&s, &cfg, &headers) {
        return refused.into_response();
    }
    super::status_page::respond(&cfg, &s.statuses(), &s.running(), &s.next_runs())
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
