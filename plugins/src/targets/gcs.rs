//! Google Cloud Storage targets, built with object_store's
//! `GoogleCloudStorageBuilder`.
//!
//! Uploads use GCS's XML multipart API (S3's limits: parts of 5 MiB to 5 GiB, at
//! most 10,000), so the part plan is S3's default one. The prefix is applied by a
//! `PrefixStore`; retries and explanations are the remote targets' (`remote`).
//! A service account's JSON key may name another endpoint (`gcs_base_url`),
//! which is how an emulator or a private endpoint is reached.

use crate::targets::parts::PartPlan;
use crate::targets::registry::Shown;
use crate::targets::remote::{self, Remote};
use crate::targets::{Target, TargetError};
use coffer_config::GcsTarget;
use object_store::ObjectStore;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::prefix::PrefixStore;
use std::sync::Arc;

const PARTS: PartPlan = PartPlan {
    part_size: 16 << 20,
    max_parts: 10_000,
    parts_in_flight: 2,
};

pub(super) fn open_target(t: &coffer_config::Target, g: &GcsTarget) -> Result<Target, TargetError> {
    let description = t.kind.to_string();
    let store = open(g).map_err(|message| TargetError::Open {
        name: t.name.clone(),
        description: description.clone(),
        message,
        retryable: false,
    })?;
    let mut target = Target::from_store(&t.name, store, &description, PARTS);
    target.explainer = Some(Arc::new(Remote {
        place: format!("bucket {}", g.bucket),
        credentials: credentials(g),
        holder: "bucket",
    }));
    Ok(target)
}

fn credentials(g: &GcsTarget) -> String {
    match &g.service_account {
        Some((_, file)) => format!("the service account key in {}", file.display()),
        None => "application default credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud's \
                 login or the instance's service account)"
            .to_string(),
    }
}

pub(super) fn shown(g: &GcsTarget, bytes: &dyn Fn(u64) -> String) -> Shown {
    Shown {
        lines: vec![
            format!(
                "parts of {} (growing, at most {}), {} in flight; {} retries within {}s, {}s per request",
                bytes(PARTS.part_size),
                PARTS.max_parts,
                PARTS.parts_in_flight,
                remote::MAX_RETRIES,
                remote::RETRY_TIMEOUT.as_secs(),
                remote::REQUEST_TIMEOUT.as_secs(),
            ),
            format!("credentials: {}", credentials(g)),
        ],
        open_to_check: false,
    }
}

fn open(g: &GcsTarget) -> Result<Arc<dyn ObjectStore>, String> {
    let mut b = GoogleCloudStorageBuilder::new()
        .with_bucket_name(&g.bucket)
        .with_client_options(remote::client_options())
        .with_retry(remote::retry());
    match &g.service_account {
        Some((key, _)) => b = b.with_service_account_key(key.expose()),
        None => {
            if let Ok(path) = std::env::var("GOOGLE_APPLICATION_CREDENTIALS") {
                b = b.with_application_credentials(path);
            }
        }
    }
    // The JSON parser's messages give a line and column, never the key's text.
    let store = b.build().map_err(|e| {
        format!(
            "cannot set up the GCS client with {}: {e}; check that it is a service account's JSON key",
            credentials(g)
        )
    })?;
    Ok(match &g.prefix {
        Some(p) => Arc::new(PrefixStore::new(store, p.as_str())),
        None => Arc::new(store),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::Op;

    fn target(key: &str) -> coffer_config::Target {
        coffer_config::Target {
            name: "g".to_string(),
            kind: coffer_config::TargetKind::Gcs(GcsTarget {
                bucket: "acme-backups".to_string(),
                prefix: Some("h1".to_string()),
                service_account: Some((
                    coffer_config::Secret::new(key.to_string()),
                    "/etc/coffer/sa.json".into(),
                )),
            }),
            limit_upload: None,
            prune: coffer_config::Prune::Here,
        }
    }

    /// Opening asks nothing of the server; a key that is no JSON is named by its
    /// file, never shown. (No GCS emulator speaks what object_store's client
    /// uses: the requests themselves are untested, see docs/configuration.md.)
    #[test]
    fn opens_from_a_service_account_key_and_names_a_bad_one_by_its_file() {
        let key = r#"{"private_key": "k", "private_key_id": "i", "client_email": "e", "disable_oauth": true, "gcs_base_url": "http://127.0.0.1:9"}"#;
        let t =
            crate::targets::open_target(&target(key), crate::targets::Access::Read).expect("opens");
        assert_eq!(t.description, "gcs bucket acme-backups prefix h1");
        let denied = object_store::Error::PermissionDenied {
            path: "x".to_string(),
            source: "403".into(),
        };
        let e = t.explain(Op::List, &denied);
        assert!(
            !e.retryable
                && e.message.contains("bucket acme-backups")
                && e.message.contains("/etc/coffer/sa.json"),
            "{}",
            e.message
        );
        let err =
            crate::targets::open_target(&target("not-json-s3cret"), crate::targets::Access::Read)
                .expect_err("a bad key");
        let text = err.to_string();
        assert!(
            text.contains("/etc/coffer/sa.json") && !text.contains("s3cret"),
            "{text}"
        );
    }
}
