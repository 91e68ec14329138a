//! Sends a job's notification (a dead man's switch: healthchecks.io, Uptime Kuma
//! push, ntfy, anything that takes a plain HTTP request): one POST with a short
//! text body, retried, and bounded in time as a whole. Monitoring must never cost
//! the backup: a notification that cannot be delivered is a warning in the log and
//! nothing else, and no notification holds the run up for longer than `BOUND`.
//!
//! The URL is the credential (a check's UUID, a push token, a private topic), so
//! what is logged names the job, the kind and the URL's scheme and host only, and
//! errors from the HTTP client are stripped of the URL they carry.
//!
//! reqwest is the client object_store already builds (rustls, the same features),
//! so this adds no HTTP or TLS stack of its own.

use coffer_config::NotifyUrl;
use std::time::Duration;
use tokio::time::Instant;

/// All attempts of one notification together, waits included.
pub(crate) const BOUND: Duration = Duration::from_secs(30);
/// One attempt: connect, send, and the response's status.
const ATTEMPT: Duration = Duration::from_secs(10);
const ATTEMPTS: u32 = 3;
/// Wait before the second attempt; doubled before each later one.
const FIRST_WAIT: Duration = Duration::from_secs(1);
/// Bodies are for a person reading the monitor's log (healthchecks keeps 100 kB).
const MAX_BODY: usize = 10 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Start,
    Success,
    Failure,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Start => "start",
            Kind::Success => "success",
            Kind::Failure => "failure",
        }
    }
}

/// Sends `body` to `url`; on failure logs one warning and returns it. Stops
/// retrying when coffer is asked to stop.
pub(crate) async fn send(
    job: &str,
    kind: Kind,
    url: &NotifyUrl,
    body: String,
) -> Result<(), String> {
    let deadline = Instant::now() + BOUND;
    let body = cut(body);
    let client = match reqwest::Client::builder()
        .user_agent(concat!("coffer/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(ATTEMPT)
        .build()
    {
        Ok(c) => c,
        Err(e) => return Err(warn(job, kind, url, 0, &clean(&e, url))),
    };
    let mut wait = FIRST_WAIT;
    let mut last = String::new();
    let mut tried = 0;
    while tried < ATTEMPTS {
        tried += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let request = client
            .post(url.secret_url().clone())
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .timeout(left.min(ATTEMPT))
            .body(body.clone())
            .send();
        match request.await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("the server answered {}", r.status()),
            Err(e) => last = clean(&e, url),
        }
        tracing::debug!(job, notify = kind.as_str(), host = %url, attempt = tried, "{last}");
        if tried == ATTEMPTS || crate::cancel::requested() {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left <= wait {
            break;
        }
        tokio::time::sleep(wait).await;
        wait *= 2;
    }
    Err(warn(job, kind, url, tried, &last))
}

fn warn(job: &str, kind: Kind, url: &NotifyUrl, tried: u32, why: &str) -> String {
    let msg = format!(
        "job {job}: the {} notification to {url} was not delivered ({tried} attempt(s)): {why}; the backup's outcome is unaffected",
        kind.as_str()
    );
    tracing::warn!("{msg}");
    msg
}

/// What went wrong, without the URL: reqwest puts it in its messages, and the
/// inner errors (I/O, TLS) are what says why.
fn clean(e: &reqwest::Error, url: &NotifyUrl) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_redirect() {
        "too many redirects"
    } else {
        "request failed"
    };
    let mut causes = Vec::new();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        causes.push(c.to_string());
        cause = c.source();
    }
    let text = match causes.last() {
        Some(inner) => format!("{what}: {inner}"),
        None => what.to_string(),
    };
    // Belt and braces: no part of the secret survives, whatever a library says.
    let secret = url.secret_url();
    let mut text = text.replace(secret.as_str(), &url.shown());
    for part in [secret.path(), secret.query().unwrap_or("")] {
        if part.len() > 1 {
            text = text.replace(part, "/...");
        }
    }
    text
}

fn cut(mut body: String) -> String {
    if body.len() > MAX_BODY {
        let mut end = MAX_BODY;
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        body.truncate(end);
        body.push_str("\n[cut]");
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_bodies_are_cut_on_a_character_boundary() {
        let body = "é".repeat(MAX_BODY);
        let cut = cut(body);
        assert!(cut.len() <= MAX_BODY + 6);
        assert!(cut.ends_with("[cut]"));
    }
}
