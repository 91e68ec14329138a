//! S3 Object Lock on a target with `object_lock = { mode, days }`: extending an
//! object's retention (`PUT ?retention`) and reading it (the headers of `HEAD`,
//! which S3 sends to credentials allowed `s3:GetObjectRetention`, and which
//! moto, unlike `GET ?retention`, implements), so that what a kept
//! snapshot references cannot be deleted or overwritten with the backup host's
//! own credentials until its retention ends.
//!
//! object_store writes the objects; retention is set afterwards by requests of
//! our own, signed here (`sigv4`), because object_store has neither call and
//! sends headers added to its client unsigned. The bucket must have been created
//! with Object Lock enabled (which turns versioning on).
//!
//! The server's answers are hostile input like everything read from a target:
//! bodies are read up to `MAX_BODY`, and a date that does not parse is an error,
//! never "not held".

use super::sigv4;
use coffer_config::{LockMode, S3Target};
use object_store::path::Path as ObjPath;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Retention answers are a few hundred bytes; anything longer is not one.
const MAX_BODY: usize = 64 << 10;

/// What S3 leaves unencoded in a path segment (RFC 3986's unreserved characters).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A retention request that failed, in words for the operator, and whether a
/// later run could succeed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct LockError {
    pub message: String,
    pub retryable: bool,
}

/// One S3 target's Object Lock settings and the means to apply them.
pub struct ObjectLock {
    mode: LockMode,
    days: u32,
    http: reqwest::Client,
    /// `https://s3.<region>.amazonaws.com` or the endpoint; path-style, as object_store.
    base: String,
    bucket: String,
    prefix: Option<String>,
    region: String,
    key_id: String,
    secret: coffer_config::Secret,
    token: Option<String>,
    max_retries: u32,
    retry_timeout: Duration,
}

impl std::fmt::Debug for ObjectLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectLock({:?}, {} days)", self.mode, self.days)
    }
}

impl ObjectLock {
    /// The lock of the S3 target `s3`, if it has one. Signing needs the access
    /// keys themselves: from the config, or AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY (with AWS_SESSION_TOKEN) in the environment.
    pub(super) fn of(s3: &S3Target) -> Result<Option<ObjectLock>, String> {
        let Some(settings) = s3.object_lock else {
            return Ok(None);
        };
        let (key_id, secret, token) = match &s3.credentials {
            Some(c) => (c.access_key_id.clone(), c.secret_access_key.clone(), None),
            None => match (
                std::env::var("AWS_ACCESS_KEY_ID"),
                std::env::var("AWS_SECRET_ACCESS_KEY"),
            ) {
                (Ok(id), Ok(secret)) => (
                    id,
                    coffer_config::Secret::new(secret),
                    std::env::var("AWS_SESSION_TOKEN").ok(),
                ),
                _ => {
                    return Err(
                        "object_lock needs access keys to set retention: set access_key_id and \
                         secret_access_key_file, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
                         (a role's credentials are not supported for Object Lock)"
                            .to_string(),
                    );
                }
            },
        };
        let http = reqwest::Client::builder()
            .timeout(s3.request_timeout)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("cannot set up the HTTP client for Object Lock: {e}"))?;
        let base = match &s3.endpoint {
            Some(e) => e.trim_end_matches('/').to_string(),
            None => format!("https://s3.{}.amazonaws.com", s3.region),
        };
        Ok(Some(ObjectLock {
            mode: settings.mode,
            days: settings.days,
            http,
            base,
            bucket: s3.bucket.clone(),
            prefix: s3.prefix.clone(),
            region: s3.region.clone(),
            key_id,
            secret,
            token,
            max_retries: s3.max_retries,
            retry_timeout: s3.retry_timeout,
        }))
    }

    pub fn mode(&self) -> LockMode {
        self.mode
    }

    pub fn days(&self) -> u32 {
        self.days
    }

    /// Until when a snapshot that ended at `end` keeps what it references.
    pub fn until(&self, end: OffsetDateTime) -> OffsetDateTime {
        end + time::Duration::days(i64::from(self.days))
    }

    /// Holds `path` until `until` at least. A retention already longer is left as
    /// it is (S3 refuses to shorten one without a bypass, and it is not wanted).
    pub async fn hold(&self, path: &ObjPath, until: OffsetDateTime) -> Result<(), LockError> {
        let until = until.to_offset(time::UtcOffset::UTC);
        let date = until
            .replace_nanosecond(0)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .ok_or_else(|| self.error(path, format!("cannot write the date {until}"), false))?;
        let body = format!(
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{}</Mode>\
             <RetainUntilDate>{date}</RetainUntilDate></Retention>",
            self.mode.as_s3()
        );
        let (status, _, text) = self.request(Method::PUT, path, body.into_bytes()).await?;
        if status == 200 {
            return Ok(());
        }
        if status == 403 {
            // Refused: perhaps because it is already held longer (a retention is
            // only ever extended), which is what was asked for.
            if let Ok(Some(held)) = self.held_until(path).await
                && held >= until
            {
                return Ok(());
            }
        }
        Err(self.refused(path, "set the retention of", status, &text))
    }

    /// Until when `path` is held; `None` when it has no retention.
    pub async fn held_until(&self, path: &ObjPath) -> Result<Option<OffsetDateTime>, LockError> {
        let (status, date, _) = self.request(Method::HEAD, path, Vec::new()).await?;
        if status != 200 {
            // A HEAD's answer has no body: the status says it all.
            let code = if status == 404 { "NoSuchKey" } else { "" };
            return Err(self.refused(path, "read the retention of", status, &code_xml(code)));
        }
        let Some(date) = date else {
            return Ok(None);
        };
        OffsetDateTime::parse(date.trim(), &Rfc3339)
            .map(Some)
            .map_err(|_| {
                self.error(
                    path,
                    format!("the server's retention date {date:.40} is not a date"),
                    false,
                )
            })
    }

    /// One signed request (`PUT ?retention` or `HEAD`), retried on transient
    /// failures with backoff; the status, the retain-until header and the
    /// (bounded) body of the last answer.
    async fn request(
        &self,
        method: Method,
        path: &ObjPath,
        body: Vec<u8>,
    ) -> Result<(u16, Option<String>, String), LockError> {
        let query = if method == Method::PUT {
            "retention="
        } else {
            ""
        };
        let mut segments: Vec<String> = self
            .prefix
            .iter()
            .flat_map(|p| p.split('/'))
            .map(str::to_string)
            .collect();
        segments.extend(path.parts().map(|p| p.as_ref().to_string()));
        let key: Vec<String> = segments
            .iter()
            .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
            .collect();
        let url_path = format!(
            "/{}/{}",
            utf8_percent_encode(&self.bucket, SEGMENT),
            key.join("/")
        );
        let url = match query {
            "" => format!("{}{url_path}", self.base),
            q => format!("{}{url_path}?{}", self.base, q.trim_end_matches('=')),
        };
        let url = reqwest::Url::parse(&url)
            .map_err(|e| self.error(path, format!("not a URL: {e}"), false))?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(self.error(path, "the endpoint has no host".into(), false)),
        };
        let started = Instant::now();
        let mut wait = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            let mut headers = vec![("host".to_string(), host.clone())];
            if method == Method::PUT {
                use base64::Engine;
                use md5::Digest;
                headers.push((
                    "content-md5".into(),
                    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&body)),
                ));
            }
            let keys = sigv4::Keys {
                id: &self.key_id,
                secret: self.secret.expose(),
                token: self.token.as_deref(),
            };
            let signed = sigv4::sign(
                sigv4::Request {
                    method: method.as_str(),
                    path: &url_path,
                    query,
                    headers,
                    body: &body,
                },
                &keys,
                &self.region,
                OffsetDateTime::now_utc(),
            );
            let mut req = self.http.request(method.clone(), url.clone());
            for (k, v) in signed {
                req = req.header(k, v);
            }
            let outcome = match req.body(body.clone()).send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let until = resp
                        .headers()
                        .get("x-amz-object-lock-retain-until-date")
                        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                    match bounded_text(resp).await {
                        Ok(text) if !(status >= 500 || status == 429 || status == 408) => {
                            return Ok((status, until, text));
                        }
                        Ok(text) => format!("status {status}: {}", code_of(&text).unwrap_or("")),
                        Err(e) => e,
                    }
                }
                Err(e) => e.to_string(),
            };
            attempt += 1;
            if attempt > self.max_retries || started.elapsed() + wait > self.retry_timeout {
                return Err(self.error(
                    path,
                    format!(
                        "still failing after {attempt} attempts: the server or the network may \
                         be down, a later run may succeed ({outcome})"
                    ),
                    true,
                ));
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(15));
        }
    }

    fn refused(&self, path: &ObjPath, what: &str, status: u16, text: &str) -> LockError {
        let code = code_of(text).unwrap_or("");
        let hint = match (status, code) {
            (400, "InvalidRequest") => {
                "the bucket has no Object Lock: create a bucket with Object Lock enabled \
                 (it cannot be turned on for this one by coffer)"
            }
            (403, _) => {
                "access denied: the credentials need s3:PutObjectRetention and \
                 s3:GetObjectRetention on this bucket"
            }
            (404, "NoSuchKey") | (404, "NoSuchVersion") => "the object is missing",
            (404, _) => "not found: check `bucket`, `endpoint` and `region`",
            _ => "unexpected answer",
        };
        self.error(
            path,
            format!("cannot {what} it: {hint} (status {status} {code:.60})"),
            false,
        )
    }

    fn error(&self, path: &ObjPath, why: String, retryable: bool) -> LockError {
        LockError {
            message: format!("Object Lock on {path} in bucket {}: {why}", self.bucket),
            retryable,
        }
    }
}

async fn bounded_text(mut resp: reqwest::Response) -> Result<String, String> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!("an answer longer than {MAX_BODY} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The text of the first `<name>` element (S3's answers have no nesting that
/// matters here, and no attributes on these elements).
fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&format!("</{name}>"))?;
    Some(&xml[start..start + len])
}

/// The body an error answer with this code would have had.
fn code_xml(code: &str) -> String {
    format!("<Code>{code}</Code>")
}

/// An S3 error answer's `<Code>`.
fn code_of(xml: &str) -> Option<&str> {
    element(xml, "Code")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_are_read_and_a_missing_or_unclosed_one_is_none() {
        let xml = "<Retention><Mode>GOVERNANCE</Mode><RetainUntilDate>2026-12-08T10:00:00.000Z</RetainUntilDate></Retention>";
        assert_eq!(element(xml, "Mode"), Some("GOVERNANCE"));
        assert_eq!(
            element(xml, "RetainUntilDate"),
            Some("2026-12-08T10:00:00.000Z")
        );
        assert_eq!(element(xml, "Code"), None);
        assert_eq!(element("<Code>NoSuchKey", "Code"), None);
    }
}
