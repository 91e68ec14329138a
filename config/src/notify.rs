//! `notify = { start = URL, success = URL, failure = URL }`: the dead man's switch
//! URLs of a job (healthchecks.io, Uptime Kuma push, ntfy, ...). Parsed and checked
//! once, when the config is loaded, and kept in a type that never shows more than
//! scheme and host: such a URL is its own credential (a check's UUID, a push
//! token, a private ntfy topic), so the rest of the path and the query must stay
//! out of logs, errors, `config check` and the API.

use std::fmt;
use std::str::FromStr;

/// One notification URL (http or https). `Display` and `Debug` show only
/// `scheme://host[:port]`.
#[derive(Clone, PartialEq, Eq)]
pub struct NotifyUrl(url::Url);

impl NotifyUrl {
    /// The whole URL, to send the request to; never for messages.
    pub fn secret_url(&self) -> &url::Url {
        &self.0
    }

    /// What may be shown of it: scheme, host and port.
    pub fn shown(&self) -> String {
        let host = self.0.host_str().unwrap_or("");
        match self.0.port() {
            Some(p) => format!("{}://{host}:{p}", self.0.scheme()),
            None => format!("{}://{host}", self.0.scheme()),
        }
    }
}

impl FromStr for NotifyUrl {
    type Err = String;
    /// The message never repeats the text: a URL that fails to parse may still be
    /// the secret with a typo in it.
    fn from_str(text: &str) -> Result<NotifyUrl, String> {
        let url = url::Url::parse(text.trim()).map_err(|e| {
            format!(
                "not a URL ({e}); write the whole URL, like \"https://hc-ping.com/<uuid>\" (the value is not shown: it may be a secret)"
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "the scheme \"{}\" is not supported; use an http:// or https:// URL",
                url.scheme()
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(
                "the URL has no host; write the whole URL, like \"https://hc-ping.com/<uuid>\""
                    .into(),
            );
        }
        Ok(NotifyUrl(url))
    }
}

impl fmt::Display for NotifyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown())
    }
}

impl fmt::Debug for NotifyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("NotifyUrl").field(&self.shown()).finish()
    }
}

/// A job's notification URLs; each is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notify {
    /// Sent when a run starts (after the job lock is taken, before `before` hooks).
    pub start: Option<NotifyUrl>,
    /// Sent when every target committed the snapshot and every hook succeeded.
    pub success: Option<NotifyUrl>,
    /// Sent when the run failed or was partial, with the reason in the body.
    pub failure: Option<NotifyUrl>,
}

impl Notify {
    pub fn is_empty(&self) -> bool {
        self.start.is_none() && self.success.is_none() && self.failure.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_scheme_and_host_are_ever_shown() {
        let u: NotifyUrl = "https://user:pw@hc-ping.com:8443/5f0c-secret?x=token"
            .parse()
            .expect("url");
        assert_eq!(u.to_string(), "https://hc-ping.com:8443");
        let debug = format!("{u:?}");
        assert!(
            !debug.contains("secret") && !debug.contains("pw"),
            "{debug}"
        );
        assert_eq!(u.secret_url().path(), "/5f0c-secret");
    }

    #[test]
    fn other_schemes_and_non_urls_are_refused_without_echoing_them() {
        let e = "ftp://host/secret-token"
            .parse::<NotifyUrl>()
            .expect_err("ftp");
        assert!(e.contains("\"ftp\"") && !e.contains("secret-token"), "{e}");
        let e = "hc-ping.com/secret-token"
            .parse::<NotifyUrl>()
            .expect_err("no scheme");
        assert!(!e.contains("secret-token"), "{e}");
    }
}
