//! Azure Blob Storage targets, built with object_store's `MicrosoftAzureBuilder`.
//!
//! Uploads are block blobs: each part is a block (`Put Block`), committed by
//! `Put Block List`; a block list holds at most 50,000 blocks of up to 4000 MiB,
//! and 16 MiB parts doubling every 5,000 blocks pass 4000 MiB only for objects
//! past 19 TiB (far beyond a pack). Blocks that were
//! never committed (a killed run) are no object: Azure drops them after a week,
//! and listings never show them. The prefix is applied by a `PrefixStore`, as
//! for S3; retries and explanations are the remote targets' (`remote`).

use crate::targets::parts::PartPlan;
use crate::targets::registry::Shown;
use crate::targets::remote::{self, Remote};
use crate::targets::{Target, TargetError};
use coffer_config::{AzureCredentials, AzureTarget};
use object_store::ObjectStore;
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::prefix::PrefixStore;
use std::sync::Arc;

const PARTS: PartPlan = PartPlan {
    part_size: 16 << 20,
    max_parts: 50_000,
    parts_in_flight: 2,
};

/// The environment variables that may carry credentials when the config names
/// none: an account key, a SAS token, a service principal, workload identity.
/// Other `AZURE_*` variables (endpoint, container, emulator) are deliberately not
/// read: the config is the one place those are set.
const CREDENTIAL_ENV: &[&str] = &[
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_TENANT_ID",
    "AZURE_AUTHORITY_HOST",
    "AZURE_FEDERATED_TOKEN_FILE",
];

pub(super) fn open_target(
    t: &coffer_config::Target,
    a: &AzureTarget,
) -> Result<Target, TargetError> {
    let description = t.kind.to_string();
    let store = open(a).map_err(|message| TargetError::Open {
        name: t.name.clone(),
        description: description.clone(),
        message,
        retryable: false,
    })?;
    let mut target = Target::from_store(&t.name, store, &description, PARTS);
    target.explainer = Some(Arc::new(Remote {
        place: format!("container {} of account {}", a.container, a.account),
        credentials: credentials(a),
        holder: "container",
    }));
    Ok(target)
}

fn credentials(a: &AzureTarget) -> String {
    match &a.credentials {
        Some(c) => c.describe(),
        None => "AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_TOKEN or a service principal \
                 from the environment, or the managed identity"
            .to_string(),
    }
}

pub(super) fn shown(a: &AzureTarget, bytes: &dyn Fn(u64) -> String) -> Shown {
    Shown {
        lines: vec![
            format!(
                "blocks of {} (growing, at most {}), {} in flight; {} retries within {}s, {}s per request; http {}",
                bytes(PARTS.part_size),
                PARTS.max_parts,
                PARTS.parts_in_flight,
                remote::MAX_RETRIES,
                remote::RETRY_TIMEOUT.as_secs(),
                remote::REQUEST_TIMEOUT.as_secs(),
                if a.allow_http { "allowed" } else { "refused" }
            ),
            format!("credentials: {}", credentials(a)),
        ],
        open_to_check: false,
    }
}

fn open(a: &AzureTarget) -> Result<Arc<dyn ObjectStore>, String> {
    let mut b = MicrosoftAzureBuilder::new()
        .with_account(&a.account)
        .with_container_name(&a.container);
    match &a.credentials {
        Some(AzureCredentials::AccountKey { key, .. }) => b = b.with_access_key(key.expose()),
        Some(AzureCredentials::SasToken { token, .. }) => {
            // As copied from the portal, a SAS may start with `?`.
            let sas = token.expose().trim_start_matches('?');
            b = b.with_config(AzureConfigKey::SasKey, sas);
        }
        None => {
            for name in CREDENTIAL_ENV {
                let (Ok(value), Ok(key)) = (
                    std::env::var(name),
                    name.to_ascii_lowercase().parse::<AzureConfigKey>(),
                ) else {
                    continue;
                };
                b = b.with_config(key, value);
            }
        }
    }
    b = b
        .with_client_options(remote::client_options())
        // After the client options, which would otherwise reset it.
        .with_allow_http(a.allow_http)
        .with_retry(remote::retry());
    if let Some(endpoint) = &a.endpoint {
        b = b.with_endpoint(endpoint.clone());
    }
    // Build errors are about the settings: a key or SAS that does not parse is
    // named by its file, never shown.
    let store = b.build().map_err(|e| match &a.credentials {
        Some(c) => format!(
            "cannot set up the Azure client with {}: {}; check that it holds what its key says",
            c.describe(),
            redact(&e.to_string())
        ),
        None => format!("cannot set up the Azure client: {}", redact(&e.to_string())),
    })?;
    Ok(match &a.prefix {
        Some(p) => Arc::new(PrefixStore::new(store, p.as_str())),
        None => Arc::new(store),
    })
}

/// object_store's build errors may quote what failed to parse (a SAS token's
/// pairs): only their first clause is kept.
fn redact(e: &str) -> String {
    match e.find(['=', '&']) {
        Some(_) => "the value does not parse".to_string(),
        None => e.to_string(),
    }
}
