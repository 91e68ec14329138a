//! The status page's tests (a sibling file: with them `status_page.rs` would pass
//! 400 lines): escaping, nothing external, the charts and the table of the last
//! runs, and outcomes this coffer does not know.

use super::*;
use crate::run::RunStatus;
use chrono::TimeZone;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0)
        .single()
        .expect("an instant")
}

fn run(i: usize, outcome: &str) -> RunRecord {
    RunRecord {
        end: now().timestamp() as f64 - 3600.0 * (50 - i) as f64,
        outcome: Outcome::from_word(outcome),
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
        last_outcome: Some(Outcome::from_word("\"><img src=x onerror=alert(1)>")),
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
        last_outcome: Some(RunStatus::Success.into()),
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
        last_outcome: Some(RunStatus::Success.into()),
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
    st.last_outcome = Some(RunStatus::Failed.into());
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
        last_outcome: Some(RunStatus::Partial.into()),
        last_duration_seconds: 8.0,
        last_window_seconds: 0.25,
        last_verify: Some(run(6, "x").end),
        last_verify_mode: Some(crate::verify::VerifyMode::Stored.into()),
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

/// An outcome only a newer coffer knows shows as its word (escaped), in the
/// `other` style, in the heading, the summary, the bars and the table.
#[test]
fn an_outcome_from_a_newer_coffer_shows_as_its_word() {
    let mut st = JobStatus {
        last_run: Some(run(3, "x").end),
        last_outcome: Some(Outcome::from_word("deferred<i>")),
        ..JobStatus::default()
    };
    st.record_run(run(3, "deferred<i>"));
    let never = JobStatus::default();
    let html = render("host", &[view("app", &st), view("new", &never)], now());
    for expected in [
        "<span class=\"badge outcome other\">deferred&lt;i&gt;</span>",
        "<span class=\"badge other\">1 deferred&lt;i&gt;</span>",
        "<span class=\"badge never\">1 never run</span>",
        "<td><span class=\"badge other\">deferred&lt;i&gt;</span></td>",
        "class=\"bar other\"",
    ] {
        assert!(html.contains(expected), "{expected} not in:\n{html}");
    }
    assert!(!html.contains("<i>"));
}
