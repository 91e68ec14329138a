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
use crate::status::{JobStatus, RunRecord};
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
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for j in jobs {
        *by.entry(j.status.last_outcome.as_deref().unwrap_or("never run"))
            .or_default() += 1;
    }
    let parts: Vec<String> = by
        .iter()
        .map(|(outcome, n)| {
            format!(
                "<span class=\"badge {}\">{n} {}</span>",
                outcome_class(outcome),
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
    let outcome = st.last_outcome.as_deref().unwrap_or("never run");
    let _ = write!(
        out,
        "<section class=\"job\" id=\"job-{name}\"><h2><span class=\"name\">{name}</span> \
         <span class=\"badge outcome {}\">{}</span>{}</h2><div class=\"columns\"><dl>",
        outcome_class(outcome),
        escape(outcome),
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
        (Some(t), Some(mode)) => format!("{} ({})", when(t, now), escape(mode)),
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
            class: outcome_class(&r.outcome),
        })
        .collect();
    let stored: Vec<Bar> = history
        .iter()
        .map(|r| Bar {
            value: r.bytes_stored as f64,
            end: r.end,
            tip: tip(r, crate::units::bytes(r.bytes_stored)),
            class: outcome_class(&r.outcome),
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
            outcome_class(&r.outcome),
            escape(&r.outcome),
            duration(r.duration_seconds),
            escape(&crate::units::bytes(r.bytes_stored)),
            duration(r.window_seconds),
            r.error.as_deref().map(escape).unwrap_or_default(),
        );
    }
    out.push_str("</tbody></table></details>");
}

/// The stylesheet class for an outcome; anything unknown shares one.
fn outcome_class(outcome: &str) -> &'static str {
    match outcome {
        "success" => "success",
        "partial" => "partial",
        "failed" => "failed",
        "cancelled" => "cancelled",
        "never run" => "never",
        _ => "other",
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
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0)
            .single()
            .expect("an instant")
    }

    fn run(i: usize, outcome: &str) -> RunRecord {
        RunRecord {
            end: now().timestamp() as f64 - 3600.0 * (50 - i) as f64,
            outcome: outcome.to_string(),
            duration_seconds: 1.0 + i as f64,
            bytes_stored: 1000 * i as u64,
            window_seconds: 0.5,
            error: None,
        }
    }

    fn view<'a>(name: &'a str, status: &'a JobStatus) -> JobView<'a> {
        JobView {
            name,
            schedule: Some("0 3 * * *"),
            verify_schedule: None,
            running: false,
            next_run: Some(now() + chrono::Duration::hours(15)),
            next_verify: None,
            status,
        }
    }

    /// The markup of the chart `kind` in `html` (the first one).
    fn chart<'a>(html: &'a str, kind: &str) -> &'a str {
        let start = html
            .find(&format!("data-chart=\"{kind}\""))
            .expect("the chart");
        let len = html[start..].find("</svg>").expect("its end");
        &html[start..start + len]
    }

    #[test]
    fn hostile_text_from_config_or_status_is_escaped() {
        let mut st = JobStatus {
            last_run: Some(run(1, "x").end),
            last_outcome: Some("\"><img src=x onerror=alert(1)>".into()),
            last_error: Some("cannot read /srv/<script>alert(1)</script>: gone".into()),
            ..JobStatus::default()
        };
        st.record_run(run(1, "<svg onload=alert(2)>"));
        st.snapshots.insert("<i>t</i>".into(), 3);
        let mut v = view("<b>job</b>'\"", &st);
        v.schedule = Some("<u>cron</u>");
        v.verify_schedule = Some("<s>");
        let html = render("<host>", &[v], now());
        for raw in [
            "<script",
            "<img",
            "<b>",
            "<i>",
            "<u>",
            "<s>",
            "<host>",
            "<svg onload",
        ] {
            assert!(!html.contains(raw), "{raw} unescaped in:\n{html}");
        }
        assert!(html.contains("/srv/&lt;script&gt;alert(1)&lt;/script&gt;: gone"));
        assert!(html.contains("id=\"job-&lt;b&gt;job&lt;/b&gt;&#39;&quot;\""));
        assert!(
            html.contains("&lt;svg onload=alert(2)&gt;"),
            "the history's outcome"
        );
    }

    /// Nothing for a browser to fetch or run: no script, no link, no image, no
    /// font, no event handler.
    #[test]
    fn the_page_refers_to_nothing_outside_itself() {
        let mut st = JobStatus {
            last_run: Some(run(2, "success").end),
            last_outcome: Some("success".into()),
            last_error: Some("a plain error".into()),
            ..JobStatus::default()
        };
        st.record_run(run(1, "failed"));
        st.record_run(run(2, "success"));
        let html = render("host", &[view("app", &st)], now());
        for external in [
            "src=",
            "href=",
            "<link",
            "url(",
            "@import",
            "@font-face",
            "<script",
            "<iframe",
            "<object",
            "<embed",
            "<img",
            "<form",
        ] {
            assert!(!html.contains(external), "{external} in:\n{html}");
        }
        let handler = html.split(" on").skip(1).find(|rest| {
            let name: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        });
        assert!(handler.is_none(), "an event handler: on{handler:?}");
        // The one URL is the SVG namespace, which nothing fetches.
        let namespace = "xmlns=\"http://www.w3.org/2000/svg\"";
        assert_eq!(html.matches(namespace).count(), 2);
        assert_eq!(html.matches("://").count(), 2, "{html}");
    }

    #[test]
    fn a_job_that_never_ran_has_empty_charts_and_says_so() {
        let st = JobStatus::default();
        let mut v = view("app", &st);
        v.schedule = None;
        v.next_run = None;
        let html = render("host", &[v], now());
        assert!(html.contains("never run"));
        assert!(html.contains("No runs recorded yet."));
        assert!(html.contains("not scheduled"));
        for kind in ["duration", "stored"] {
            let c = chart(&html, kind);
            assert!(!c.contains("<rect"), "{c}");
            assert!(c.contains("no runs yet"), "{c}");
        }
        assert!(render("host", &[], now()).contains("No jobs are configured."));
    }

    /// However long the history handed in (a status read elsewhere could be
    /// longer), the page shows the last 30 runs, newest first in the table.
    #[test]
    fn the_page_shows_the_last_thirty_runs() {
        let st = JobStatus {
            history: (0..45).map(|i| run(i, "success")).collect(),
            last_run: Some(run(44, "success").end),
            last_outcome: Some("success".into()),
            ..JobStatus::default()
        };
        let html = render("host", &[view("app", &st)], now());
        for kind in ["duration", "stored"] {
            assert_eq!(chart(&html, kind).matches("<rect").count(), 30, "{kind}");
        }
        assert_eq!(
            html.matches("<tr><td>").count(),
            45,
            "the table shows what it is given"
        );
        let mut capped = JobStatus::default();
        for i in 0..45 {
            capped.record_run(run(i, "failed"));
        }
        let html = render("host", &[view("app", &capped)], now());
        assert_eq!(html.matches("<tr><td>").count(), 30);
        assert_eq!(
            chart(&html, "duration")
                .matches("class=\"bar failed\"")
                .count(),
            30
        );
        let newest = html.find("44.00 s").or_else(|| html.find("45.0 s"));
        let oldest_shown = html.find("16.0 s");
        assert!(newest.is_some() && oldest_shown.is_some(), "{html}");
        assert!(!html.contains("15.0 s"), "run 14 is beyond the last 30");
    }

    /// Issue 26 item 11: a run that failed after 0.01 s among runs of minutes
    /// shows as a bar with a marker over a labelled time axis, and its row in
    /// the table gives its error, escaped.
    #[test]
    fn a_failed_instant_run_shows_its_bar_marker_axis_and_error() {
        let mut st = JobStatus::default();
        for i in 20..45 {
            st.record_run(RunRecord {
                duration_seconds: 300.0,
                ..run(i, "success")
            });
        }
        st.record_run(RunRecord {
            duration_seconds: 0.01,
            bytes_stored: 0,
            error: Some("cannot open /srv/<app> & \"co\": permission denied".into()),
            ..run(45, "failed")
        });
        st.last_outcome = Some("failed".into());
        let html = render("host", &[view("app", &st)], now());
        let duration = chart(&html, "duration");
        let failed = duration
            .split("<rect class=\"bar failed\"")
            .nth(1)
            .expect("the failed run's bar");
        let h = failed.split("height=\"").nth(1).expect("a height");
        let h: f64 = h[..h.find('"').expect("quoted")].parse().expect("a number");
        assert!(h >= 3.0, "a sliver of {h} px: {duration}");
        assert!(duration.contains("class=\"mark failed\""), "{duration}");
        assert!(chart(&html, "stored").contains("class=\"mark failed\""));
        // The axis: the newest run's end with its date, the oldest's.
        assert!(
            duration.contains(">05-01 07:00 UTC</text>"),
            "the newest run's end: {duration}"
        );
        assert!(duration.contains(">04-30 06:00</text>"), "{duration}");
        assert!(html.contains("by end time (UTC)</figcaption>"));
        // The row of the failed run, with its error as text.
        let row = html
            .split("<tr><td>")
            .skip(1)
            .find(|r| r.contains("badge failed"))
            .expect("the failed run's row");
        assert!(
            row.contains(
                "<td class=\"error-text\">cannot open /srv/&lt;app&gt; &amp; &quot;co&quot;: permission denied</td>"
            ),
            "{row}"
        );
        assert!(!html.contains("<app>"));
        let ok_row = html
            .split("<tr><td>")
            .skip(1)
            .find(|r| r.contains("badge success"))
            .expect("a successful run's row");
        assert!(
            ok_row.contains("<td class=\"error-text\"></td>"),
            "{ok_row}"
        );
    }

    #[test]
    fn the_last_run_shows_outcome_duration_size_window_and_next_run() {
        let mut st = JobStatus {
            last_run: Some(run(7, "partial").end),
            last_outcome: Some("partial".into()),
            last_duration_seconds: 8.0,
            last_window_seconds: 0.25,
            last_verify: Some(run(6, "x").end),
            last_verify_mode: Some("stored".into()),
            ..JobStatus::default()
        };
        st.record_run(RunRecord {
            bytes_stored: 3 << 20,
            ..run(7, "partial")
        });
        let mut v = view("app", &st);
        v.running = true;
        let html = render("host", &[v], now());
        for expected in [
            "<span class=\"badge outcome partial\">partial</span>",
            "<span class=\"badge running\">running</span>",
            "<dt>Duration</dt><dd>8.00 s</dd>",
            "<dt>Stored</dt><dd>3.0 MiB</dd>",
            "<dt>Window</dt><dd>0.25 s</dd>",
            "<dt>Next run</dt><dd>running now</dd>",
            "2026-04-29 16:00:00 UTC</time> <span class=\"rel\">(1 d 20 h ago)</span> (stored)",
        ] {
            assert!(html.contains(expected), "{expected} not in:\n{html}");
        }
        let idle = render("host", &[view("app", &st)], now());
        assert!(
            idle.contains("2026-05-02 03:00:00 UTC</time> <span class=\"rel\">(in 15 h 0 min)</span> <code>0 3 * * *</code>"),
            "{idle}"
        );
    }
}
