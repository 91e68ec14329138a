//! S3 and S3-compatible targets, built with object_store's `AmazonS3Builder`.
//!
//! Transient failures (connection refused or reset, timeouts, 5xx, 429 throttling)
//! are retried per request by object_store's own retry loop, configured here with
//! the target's `max_retries` and `retry_timeout` and object_store's exponential
//! backoff with jitter (100 ms doubling up to 15 s, each wait drawn at random below
//! its bound). A part upload is one request, so each part is retried on its own.
//! Permanent failures (403, 404 on the bucket, 400) are not retried: object_store
//! returns them at once and `explain` turns them into what to check.
//!
//! The configured prefix is applied by wrapping the store in a `PrefixStore`, so
//! listing, reading, writing and deleting all see the same `<job>/<id>/...` keys as
//! on a local target, and nothing outside the prefix is ever touched.

pub mod lock;
mod sigv4;
pub mod upload_journal;

use crate::targets::parts::PartPlan;
use crate::targets::registry::Shown;
use crate::targets::{Target, TargetError};
use coffer_config::S3Target;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use std::sync::Arc;
use std::time::Duration;

/// Opens the S3 target `t`, whose settings are `s3`.
pub(super) fn open_target(t: &coffer_config::Target, s3: &S3Target) -> Result<Target, TargetError> {
    let description = t.kind.to_string();
    let opened = open(s3).and_then(|o| Ok((o, lock::ObjectLock::of(s3)?)));
    let ((store, multipart), lock) = opened.map_err(|message| TargetError::Open {
        name: t.name.clone(),
        description: description.clone(),
        message,
        retryable: false,
    })?;
    Ok(Target {
        name: t.name.clone(),
        store,
        description,
        parts: PartPlan {
            part_size: s3.upload.part_size,
            max_parts: s3.upload.max_parts,
            parts_in_flight: s3.upload.parts_in_flight as usize,
        },
        s3: Some(s3.clone()),
        multipart: Some(multipart),
        journal: None,
        throttle: None,
        prunes_here: true,
        explainer: None,
        whole_uploads: None,
        staging: None,
        lock: lock.map(Arc::new),
    })
}

/// What `config check` shows of an S3 target: how uploads are cut and retried,
/// and where the credentials come from, never what they are.
pub(super) fn shown(s3: &S3Target, bytes: &dyn Fn(u64) -> String) -> Shown {
    let u = &s3.upload;
    let parts = format!(
        "parts of {} (growing, at most {}), {} in flight; {} retries within {}s, {}s per request; http {}",
        bytes(u.part_size),
        u.max_parts,
        u.parts_in_flight,
        s3.max_retries,
        s3.retry_timeout.as_secs(),
        s3.request_timeout.as_secs(),
        if s3.allow_http { "allowed" } else { "refused" }
    );
    let credentials = match &s3.credentials {
        Some(c) => format!(
            "credentials: access_key_id {} + secret from {}",
            c.access_key_id,
            c.secret_file.display()
        ),
        None => "credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from the environment (or a role)"
            .to_string(),
    };
    let mut lines = vec![parts, credentials];
    if let Some(l) = &s3.object_lock {
        lines.push(format!(
            "object lock: {} mode, each snapshot held {} day(s) after it ends (the bucket must have Object Lock enabled)",
            l.mode.as_s3().to_lowercase(),
            l.days
        ));
    }
    Shown {
        lines,
        open_to_check: false,
    }
}

/// The environment variables that may carry credentials when the config names none:
/// static keys, and the role-based providers of EKS, ECS and web identity.
/// Other `AWS_*` variables (endpoint, allow_http, region) are deliberately not read:
/// the config is the one place those are set.
const CREDENTIAL_ENV: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_ENDPOINT_URL_STS",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
];

/// Connecting should be quick; a refused or unreachable server is retried anyway.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The store, and the same store seen as a `MultipartStore`: its uploads have an
/// id coffer can write down, and abort after a kill (`upload_journal`).
pub type Opened = (
    Arc<dyn ObjectStore>,
    Arc<dyn crate::targets::s3::upload_journal::Multipart>,
);

pub fn open(s3: &S3Target) -> Result<Opened, String> {
    let mut b = AmazonS3Builder::new();
    match &s3.credentials {
        Some(c) => {
            b = b
                .with_access_key_id(&c.access_key_id)
                .with_secret_access_key(c.secret_access_key.expose());
        }
        None => {
            for name in CREDENTIAL_ENV {
                let (Ok(value), Ok(key)) = (
                    std::env::var(name),
                    name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>(),
                ) else {
                    continue;
                };
                b = b.with_config(key, value);
            }
        }
    }
    let client = ClientOptions::new()
        .with_timeout(s3.request_timeout)
        .with_connect_timeout(CONNECT_TIMEOUT);
    b = b
        .with_client_options(client)
        // After the client options, which would otherwise reset it.
        .with_allow_http(s3.allow_http)
        .with_bucket_name(&s3.bucket)
        .with_region(&s3.region)
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: s3.max_retries as usize,
            retry_timeout: s3.retry_timeout,
        });
    if let Some(endpoint) = &s3.endpoint {
        // S3-compatible servers rarely have a DNS name per bucket: path-style.
        b = b
            .with_endpoint(endpoint)
            .with_virtual_hosted_style_request(false);
    }
    // Build errors are about the settings (never echo credentials: none are in them).
    let store = b
        .build()
        .map_err(|e| format!("cannot set up the S3 client: {e}"))?;
    Ok(match &s3.prefix {
        Some(p) => {
            let store = Arc::new(PrefixStore::new(store, p.as_str()));
            (store.clone(), store)
        }
        None => {
            let store = Arc::new(store);
            (store.clone(), store)
        }
    })
}

/// What an operator should check when a request to this bucket fails.
pub fn explain(
    s3: &S3Target,
    during: crate::targets::Op,
    err: &object_store::Error,
) -> (String, bool) {
    use crate::targets::Op;
    use object_store::Error as E;
    let where_ = match &s3.endpoint {
        Some(e) => format!("at {e}"),
        None => format!("in region {}", s3.region),
    };
    let creds = match &s3.credentials {
        Some(c) => format!(
            "access_key_id \"{}\" with the secret in {}",
            c.access_key_id,
            c.secret_file.display()
        ),
        None => "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the instance role)".to_string(),
    };
    let status = status_of(err);
    let missing = matches!(err, E::NotFound { .. }) || status == Some(404);
    if denied(err, status) && during == Op::Delete {
        (
            format!(
                "bucket {} {where_} refused to delete (access denied) to {creds}: {}; not retried",
                s3.bucket,
                crate::targets::DELETE_DENIED
            ),
            false,
        )
    } else if denied(err, status) {
        (
            format!(
                "bucket {} {where_} refused the request (access denied): check the credentials \
                 ({creds}) and that they may list, read, write and delete in this bucket; not retried",
                s3.bucket
            ),
            false,
        )
    } else if missing && during != Op::Read {
        (
            format!(
                "bucket {} not found {where_}: create it, or check `bucket`, `endpoint` and `region`; not retried",
                s3.bucket
            ),
            false,
        )
    } else if missing {
        (
            format!(
                "the object is missing from bucket {} {where_} ({err})",
                s3.bucket
            ),
            false,
        )
    } else if transient(err, status) {
        (
            format!(
                "bucket {} {where_} still failed after {} retries within {:?}: the server or \
                 the network may be down or overloaded, a later run may succeed ({err})",
                s3.bucket, s3.max_retries, s3.retry_timeout
            ),
            true,
        )
    } else {
        (
            format!(
                "bucket {} {where_}: request failed, not retried: {err}",
                s3.bucket
            ),
            false,
        )
    }
}

/// Whether the server refused the credentials or the request: by status, or by
/// the code of a batch delete's per-key error (answered with 200).
pub(super) fn denied(err: &object_store::Error, status: Option<u16>) -> bool {
    use object_store::Error as E;
    matches!(err, E::PermissionDenied { .. } | E::Unauthenticated { .. })
        || matches!(status, Some(401 | 403))
        || err.to_string().contains("(code: AccessDenied)")
}

/// The HTTP status of a failed request. object_store keeps it in a type it does not
/// export and maps only some statuses to its own variants (a failed listing is
/// "generic"), so it is read from the message, which always says
/// `status code: NNN` when the server answered.
pub(super) fn status_of(err: &object_store::Error) -> Option<u16> {
    let text = err.to_string();
    let at = text.find("status code: ")? + "status code: ".len();
    text.get(at..at + 3)?.parse().ok()
}

/// A failure worth another run: the network failed (connection refused or reset,
/// timeout), or the server answered 5xx, 408 or 429 until the retries ran out.
pub(super) fn transient(err: &object_store::Error, status: Option<u16>) -> bool {
    if let Some(code) = status {
        return code >= 500 || code == 408 || code == 429;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.downcast_ref::<object_store::client::HttpError>()
            .is_some()
        {
            return true;
        }
        source = e.source();
    }
    false
}
