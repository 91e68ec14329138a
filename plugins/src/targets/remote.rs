//! What the object-store targets besides S3 (azure, gcs, webdav) share: the HTTP
//! client's timeouts, object_store's retries, and how a failed request is put to
//! the operator. They have no tuning keys of their own: S3's defaults (10
//! retries within 3 minutes, 2 minutes per request) serve them as they serve S3.

use crate::targets::Op;
use object_store::{BackoffConfig, ClientOptions, RetryConfig};
use std::time::Duration;

pub(super) const MAX_RETRIES: usize = 10;
pub(super) const RETRY_TIMEOUT: Duration = Duration::from_secs(180);
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn client_options() -> ClientOptions {
    ClientOptions::new()
        .with_timeout(REQUEST_TIMEOUT)
        .with_connect_timeout(CONNECT_TIMEOUT)
}

pub(super) fn retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: MAX_RETRIES,
        retry_timeout: RETRY_TIMEOUT,
    }
}

/// Explains a failed request to one of these targets (`Target::explain`).
pub trait Explain: std::fmt::Debug + Send + Sync {
    /// What happened and what to check, and whether another run could help.
    fn explain(&self, during: Op, err: &object_store::Error) -> (String, bool);
}

/// The explanation of the remote targets: `place` names where the objects go
/// (`container c of account a`), `credentials` where the credentials come from
/// (never what they are), `holder` what must exist (`container`, `bucket`, `folder`).
#[derive(Debug, Clone)]
pub(super) struct Remote {
    pub place: String,
    pub credentials: String,
    pub holder: &'static str,
}

impl Explain for Remote {
    fn explain(&self, during: Op, err: &object_store::Error) -> (String, bool) {
        use object_store::Error as E;
        let status = super::s3::status_of(err);
        let denied = super::s3::denied(err, status);
        let missing = matches!(err, E::NotFound { .. }) || status == Some(404);
        let place = &self.place;
        if denied && during == Op::Delete {
            (
                format!(
                    "{place} refused to delete (access denied) to {}: {}; not retried",
                    self.credentials,
                    super::DELETE_DENIED
                ),
                false,
            )
        } else if denied {
            (
                format!(
                    "{place} refused the request (access denied): check the credentials ({}) and \
                     that they may list, read, write and delete there; not retried",
                    self.credentials
                ),
                false,
            )
        } else if missing && during != Op::Read {
            (
                format!(
                    "{place}: not found: create the {}, or check the target's settings; not retried",
                    self.holder
                ),
                false,
            )
        } else if missing {
            (format!("the object is missing from {place} ({err})"), false)
        } else if super::s3::transient(err, status) {
            (
                format!(
                    "{place} still failed after {MAX_RETRIES} retries within {RETRY_TIMEOUT:?}: \
                     the server or the network may be down or overloaded, a later run may \
                     succeed ({err})"
                ),
                true,
            )
        } else {
            (
                format!("{place}: request failed, not retried: {err}"),
                false,
            )
        }
    }
}
