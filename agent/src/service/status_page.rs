//! The status page at the agent's `/`: every job with its last run (outcome,
//! duration, stored size, window), its next scheduled run, its last verify, and
//! charts and a table of the last runs from the persisted history. One
//! server-rendered HTML document with inline SVG and an inline stylesheet: no
//! script, no external resource (the host may have no way out, and a page that
//! runs nothing has nothing to exploit), and a Content-Security-Policy that
//! would keep a script from running even if one slipped in. Everything from the
//! config or a status file is escaped (`html::escape`). Built from memory
//! (`Shared`) like the API, and under the same access rule (`http.rs`).

use super::chart::{self, Bar};
use super::html::escape;
use crate::run::RunStatus;
use crate::status::{JobStatus, Outcome, RunRecord};
use crate::when::{instant, plain_duration, plain_time, relative, time_utc};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use coffer_config::Config;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// What the page shows of one job.
#[derive(Debug)]
pub(super) struct JobView<'a> {
    pub name: &'a str,
    pub schedule: Option<&'a str>,
    pub verify_schedule: Option<&'a str>,
    pub running: bool,
    pub next_run: Option<DateTime<Utc>>,
    pub next_verify: Option<DateTime<Utc>>,
    pub status: &'a JobStatus,
}

/// The page for the current config and statuses, with its headers.
pub(super) fn respond(
    cfg: &Config,
    statuses: &[(String, JobStatus)],
    running: &BTreeSet<String>,
    next: &BTreeMap<String, DateTime<Utc>>,
) -> Response {
    let none = JobStatus::default();
    let jobs: Vec<JobView> = cfg
        .jobs
        .values()
        .map(|j| JobView {
            name: &j.name,
            schedule: j.schedule.as_ref().map(|s| s.as_str()),
            verify_schedule: j.verify_schedule.as_ref().map(|s| s.as_str()),
            running: running.contains(&j.name),
            next_run: next.get(&j.name).copied(),
            next_verify: next.get(&format!("{}/verify", j.name)).copied(),
            status: statuses
                .iter()
                .find(|(name, _)| *name == j.name)
                .map_or(&none, |(_, st)| st),
        })
        .collect();
    let host = crate::host::name().unwrap_or_default();
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        render(&host, &jobs, Utc::now()),
    )
        .into_response()
}

/// The whole document. `now` is when the page is made (relative times).
pub(super) fn render(host: &str, jobs: &[JobView], now: DateTime<Utc>) -> String {
    let host = escape(host);
    let mut out = String::with_capacity(8192 + jobs.len() * 8192);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"60\">\
         <title>coffer on {host}</title><style>{STYLE}</style></head><body>\
         <header><h1>coffer <span class=\"host\">on {host}</span></h1>\
         <p class=\"meta\">version {} &middot; as of {} &middot; reloads every minute</p>{}</header><main>",
        env!("CARGO_PKG_VERSION"),
        time_utc(now),
        summary(jobs),
    );
    if jobs.is_empty() {
        out.push_str("<p class=\"empty\">No jobs are configured.</p>");
    }
    for job in jobs {
        job_section(&mut out, job, now);
    }
    out.push_str("</main></body></html>\n");
    out
}

/// How many jobs ended their last run how, at a glance.
fn summary(jobs: &[JobView]) -> String {
    // By the words shown, in their order.
    let mut by: BTreeMap<&str, (&str, usize)> = BTreeMap::new();
    for j in jobs {
        let outcome = j.status.last_outcome.as_ref();
        by.entry(outcome_text(outcome))
            .or_insert((outcome_class(outcome), 0))
            .1 += 1;
    }
    let parts: Vec<String> = by
        .iter()
        .map(|(outcome, (class, n))| {
            format!(
                "<span class=\"badge {class}\">{n} {}</span>",
                escape(outcome)
            )
        })
        .collect();
    format!(
        "<p class=\"summary\">{} job(s), last runs: {}</p>",
        jobs.len(),
        parts.join(" ")
    )
}

fn job_section(out: &mut String, job: &JobView, now: DateTime<Utc>) {
    let st = job.status;
    let name = escape(job.name);
    let outcome = st.last_outcome.as_ref();
    let _ = write!(
        out,
        "<section class=\"job\" id=\"job-{name}\"><h2><span class=\"name\">{name}</span> \
         <span class=\"badge outcome {}\">{}</span>{}</h2><div class=\"columns\"><dl>",
        outcome_class(outcome),
        escape(outcome_text(outcome)),
        if job.running {
            " <span class=\"badge running\">running</span>"
        } else {
            ""
        }
    );
    let last: Option<&RunRecord> = st.last_record();
    fact(
        out,
        "Last run",
        &st.last_run.map_or("never".into(), |t| when(t, now)),
    );
    fact(
        out,
        "Duration",
        &st.last_run
            .map_or("&mdash;".into(), |_| duration(st.last_duration_seconds)),
    );
    fact(
        out,
        "Stored",
        &last.map_or("&mdash;".into(), |r| {
            escape(&crate::units::bytes(r.bytes_stored))
        }),
    );
    fact(
        out,
        "Window",
        &st.last_run
            .map_or("&mdash;".into(), |_| duration(st.last_window_seconds)),
    );
    fact(
        out,
        "Last success",
        &st.last_success.map_or("never".into(), |t| when(t, now)),
    );
    let next = match (job.running, job.schedule, job.next_run) {
        (true, _, _) => "running now".to_string(),
        (false, Some(s), Some(at)) => {
            format!("{} <code>{}</code>", when_instant(at, now), escape(s))
        }
        (false, Some(s), None) => format!("<code>{}</code>", escape(s)),
        (false, None, _) => "not scheduled: runs by hand or through the API".to_string(),
    };
    fact(out, "Next run", &next);
    fact(out, "Last verify", &verify(job, now));
    if !st.snapshots.is_empty() {
        let per: Vec<String> = st
            .snapshots
            .iter()
            .map(|(t, n)| format!("{} {n}", escape(t)))
            .collect();
        fact(out, "Snapshots", &per.join(", "));
    }
    out.push_str("</dl><div class=\"charts\">");
    charts(out, &st.history);
    out.push_str("</div></div>");
    if let Some(e) = &st.last_error {
        let _ = write!(
            out,
            "<p class=\"error\"><strong>Last error:</strong> <span class=\"text\">{}</span></p>",
            escape(e)
        );
    }
    runs_table(out, &st.history, now);
    out.push_str("</section>");
}

fn fact(out: &mut String, term: &str, value_html: &str) {
    let _ = write!(out, "<dt>{term}</dt><dd>{value_html}</dd>");
}

fn verify(job: &JobView, now: DateTime<Utc>) -> String {
    let st = job.status;
    let mut text = match (st.last_verify, &st.last_verify_mode) {
        (Some(t), Some(mode)) => format!("{} ({})", when(t, now), escape(mode.as_str())),
        (Some(t), None) => when(t, now),
        (None, _) => "never".to_string(),
    };
    if let Some(t) = st.last_deep_verify_success {
        let _ = write!(text, "; last deep success {}", when(t, now));
    }
    match (job.verify_schedule, job.next_verify) {
        (Some(_), Some(at)) => {
            let _ = write!(text, "; next {}", when_instant(at, now));
        }
        (Some(s), None) => {
            let _ = write!(text, "; scheduled <code>{}</code>", escape(s));
        }
        (None, _) => text.push_str("; no verify_schedule"),
    }
    text
}

/// Duration and stored size of the last runs, one bar each, over a time axis.
fn charts(out: &mut String, history: &[RunRecord]) {
    let failed = |r: &RunRecord| r.outcome.known() == Some(RunStatus::Failed);
    let tip = |r: &RunRecord, what: String| {
        let mut tip = format!("{}: {}, {what}", plain_time(r.end), r.outcome);
        if let Some(e) = &r.error {
            // The first line, cut short: the table below has it whole.
            let line = e.lines().next().unwrap_or_default();
            let cut: String = line.chars().take(TIP_ERROR).collect();
            let more = if cut.len() < e.len() { " ..." } else { "" };
            let _ = write!(tip, ": {cut}{more}");
        }
        tip
    };
    let durations: Vec<Bar> = history
        .iter()
        .map(|r| Bar {
            value: r.duration_seconds,
            end: r.end,
            tip: tip(r, plain_duration(r.duration_seconds)),
            class: outcome_class(Some(&r.outcome)),
            marked: failed(r),
        })
        .collect();
    let stored: Vec<Bar> = history
        .iter()
        .map(|r| Bar {
            value: r.bytes_stored as f64,
            end: r.end,
            tip: tip(r, crate::units::bytes(r.bytes_stored)),
            class: outcome_class(Some(&r.outcome)),
            marked: failed(r),
        })
        .collect();
    let longest = history
        .iter()
        .map(|r| r.duration_seconds)
        .filter(|d| d.is_finite())
        .fold(0.0, f64::max);
    let largest = history.iter().map(|r| r.bytes_stored).max().unwrap_or(0);
    let n = history.len();
    let _ = write!(
        out,
        "<figure><figcaption>Duration, last {n} run(s), by end time (UTC)</figcaption>{}</figure>\
         <figure><figcaption>Stored, last {n} run(s), by end time (UTC)</figcaption>{}</figure>",
        chart::bars(
            "duration",
            "Duration of the last runs",
            &durations,
            &format!("max {}", plain_duration(longest))
        ),
        chart::bars(
            "stored",
            "Bytes stored by the last runs",
            &stored,
            &format!("max {}", crate::units::bytes(largest))
        ),
    );
}

/// How much of a run's error a bar's tooltip shows.
const TIP_ERROR: usize = 160;

/// The last runs, newest first, folded away: the charts give the overview. A
/// run that ended with an error shows it in its row (escaped, as every text
/// from a status file).
fn runs_table(out: &mut String, history: &[RunRecord], now: DateTime<Utc>) {
    if history.is_empty() {
        out.push_str("<p class=\"empty\">No runs recorded yet.</p>");
        return;
    }
    let _ = write!(
        out,
        "<details><summary>Last {} run(s)</summary><table class=\"runs\"><thead><tr>\
         <th>Ended</th><th>Outcome</th><th>Duration</th><th>Stored</th><th>Window</th><th>Error</th>\
         </tr></thead><tbody>",
        history.len()
    );
    for r in history.iter().rev() {
        let _ = write!(
            out,
            "<tr><td>{}</td><td><span class=\"badge {}\">{}</span></td><td>{}</td><td>{}</td><td>{}</td><td class=\"error-text\">{}</td></tr>",
            when(r.end, now),
            outcome_class(Some(&r.outcome)),
            escape(r.outcome.as_str()),
            duration(r.duration_seconds),
            escape(&crate::units::bytes(r.bytes_stored)),
            duration(r.window_seconds),
            r.error.as_deref().map(escape).unwrap_or_default(),
        );
    }
    out.push_str("</tbody></table></details>");
}

/// The last outcome in words: `never run` for a job without one.
fn outcome_text(outcome: Option<&Outcome>) -> &str {
    outcome.map_or("never run", Outcome::as_str)
}

/// The stylesheet class for an outcome; one a newer coffer wrote (which this one
/// does not know) shares `other`.
fn outcome_class(outcome: Option<&Outcome>) -> &'static str {
    match outcome.map(Outcome::known) {
        None => "never",
        Some(None) => "other",
        Some(Some(known)) => match known {
            RunStatus::Success => "success",
            RunStatus::Partial => "partial",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        },
    }
}

/// A time with how long ago (or from now) it is, as HTML.
fn when(unix: f64, now: DateTime<Utc>) -> String {
    instant(unix).map_or_else(|| "&mdash;".to_string(), |t| when_instant(t, now))
}

fn when_instant(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    format!(
        "<time datetime=\"{}\">{}</time> <span class=\"rel\">({})</span>",
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        time_utc(t),
        relative(t, now)
    )
}

fn duration(secs: f64) -> String {
    escape(&plain_duration(secs))
}

const STYLE: &str = "\
:root{color-scheme:light;--ok:#2e7d32;--partial:#ef6c00;--failed:#c62828;--cancelled:#757575;--other:#5c6bc0}\
body{margin:0;font-family:system-ui,sans-serif;background:#f4f5f7;color:#1d1f23;font-size:15px}\
header{background:#263238;color:#eceff1;padding:14px 24px}\
header h1{margin:0;font-size:22px}.host{font-weight:normal;color:#b0bec5}\
.meta,.summary{margin:4px 0 0;font-size:13px;color:#cfd8dc}\
main{padding:16px 24px;display:grid;gap:16px}\
.job{background:#fff;border:1px solid #d5d9de;border-radius:6px;padding:12px 18px}\
.job h2{margin:0 0 8px;font-size:18px}\
.columns{display:flex;flex-wrap:wrap;gap:8px 32px}\
dl{display:grid;grid-template-columns:max-content auto;gap:3px 14px;margin:0;flex:1 1 420px}\
dt{color:#5f6b76}dd{margin:0}.rel{color:#5f6b76}\
code{background:#eef0f3;padding:0 4px;border-radius:3px}\
.charts{display:flex;flex-wrap:wrap;gap:12px}\
figure{margin:0}figcaption{font-size:12px;color:#5f6b76}\
.chart{display:block;background:#fafbfc;border:1px solid #e3e6ea}\
.chart .base{stroke:#b0b8c0;stroke-width:1}.chart .label{font:10px sans-serif;fill:#5f6b76}\
.chart .tick{stroke:#8a949e;stroke-width:1}.chart .mark.failed{fill:var(--failed)}\
.bar.success{fill:var(--ok)}.bar.partial{fill:var(--partial)}.bar.failed{fill:var(--failed)}\
.bar.cancelled{fill:var(--cancelled)}.bar.other,.bar.never{fill:var(--other)}\
.badge{display:inline-block;padding:0 7px;border-radius:9px;font-size:12px;font-weight:600;vertical-align:middle;border:1px solid}\
.badge.success{background:#e8f5e9;color:#1b5e20}.badge.partial{background:#fff3e0;color:#e65100}\
.badge.failed{background:#ffebee;color:#b71c1c}.badge.cancelled,.badge.never{background:#eceff1;color:#455a64}\
.badge.other{background:#e8eaf6;color:#283593}.badge.running{background:#e3f2fd;color:#0d47a1}\
.error{margin:10px 0 0;padding:8px 10px;background:#fff5f5;border-left:3px solid var(--failed)}\
.error .text{white-space:pre-wrap;font-family:monospace;word-break:break-word}\
details{margin-top:10px}summary{cursor:pointer;color:#37474f}\
table{border-collapse:collapse;margin-top:6px;font-size:13px}\
th,td{text-align:left;padding:3px 12px 3px 0;border-bottom:1px solid #eceff1;vertical-align:top}\
td.error-text{white-space:pre-wrap;font-family:monospace;word-break:break-word;max-width:60ch;color:#b71c1c}\
.empty{color:#5f6b76;font-style:italic}";

#[cfg(test)]
#[path = "status_page_tests.rs"]
mod tests;
