//! The settings of the target types that object_store speaks besides S3: Azure
//! Blob Storage, Google Cloud Storage and WebDAV. Kept apart from `types.rs` so
//! that each type's settings and how they are shown sit together; validated in
//! `load/stores.rs`.

use crate::types::Secret;
use std::fmt;
use std::path::PathBuf;

/// An Azure Blob Storage container. Objects go under `<prefix>/<job>/<snapshot-id>/`.
#[derive(Debug, Clone)]
pub struct AzureTarget {
    pub account: String,
    pub container: String,
    /// Without leading or trailing `/`; `None` stores at the container's root.
    pub prefix: Option<String>,
    /// The account's blob endpoint (Azurite, sovereign clouds, private links);
    /// `None` means `https://<account>.blob.core.windows.net`.
    pub endpoint: Option<String>,
    /// Plain HTTP to `endpoint` is refused unless this is set.
    pub allow_http: bool,
    /// From the config; `None` means the environment (AZURE_STORAGE_ACCOUNT_KEY,
    /// AZURE_STORAGE_SAS_TOKEN, a service principal) or a managed identity.
    pub credentials: Option<AzureCredentials>,
}

/// What an Azure target signs its requests with, read from a file at load time.
#[derive(Debug, Clone)]
pub enum AzureCredentials {
    /// `account_key_file`: the storage account's shared key (base64).
    AccountKey { key: Secret, file: PathBuf },
    /// `sas_token_file`: a shared access signature (`sv=...&sig=...`).
    SasToken { token: Secret, file: PathBuf },
}

impl AzureCredentials {
    /// `account key from FILE` / `SAS token from FILE`, for messages.
    pub fn describe(&self) -> String {
        match self {
            AzureCredentials::AccountKey { file, .. } => {
                format!("the account key in {}", file.display())
            }
            AzureCredentials::SasToken { file, .. } => {
                format!("the SAS token in {}", file.display())
            }
        }
    }
}

impl fmt::Display for AzureTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "azure container {}", self.container)?;
        if let Some(p) = &self.prefix {
            write!(f, " prefix {p}")?;
        }
        write!(f, " in account {}", self.account)?;
        match &self.endpoint {
            Some(e) => write!(f, " at {e}"),
            None => Ok(()),
        }
    }
}

/// A Google Cloud Storage bucket. Objects go under `<prefix>/<job>/<snapshot-id>/`.
#[derive(Debug, Clone)]
pub struct GcsTarget {
    pub bucket: String,
    /// Without leading or trailing `/`; `None` stores at the bucket's root.
    pub prefix: Option<String>,
    /// `service_account_file`: a service account's JSON key, read at load time;
    /// `None` means application default credentials (GOOGLE_APPLICATION_CREDENTIALS,
    /// gcloud's login, the instance's metadata server).
    pub service_account: Option<(Secret, PathBuf)>,
}

impl fmt::Display for GcsTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gcs bucket {}", self.bucket)?;
        match &self.prefix {
            Some(p) => write!(f, " prefix {p}"),
            None => Ok(()),
        }
    }
}

/// A folder on a WebDAV server (Nextcloud, ownCloud, Apache mod_dav, rclone, a
/// NAS). Objects go under `<url>/<job>/<snapshot-id>/`.
#[derive(Debug, Clone)]
pub struct WebdavTarget {
    /// Without a trailing `/` and without credentials in it.
    pub url: String,
    /// Basic authentication; `None` sends none.
    pub user: Option<String>,
    pub password: Option<(Secret, PathBuf)>,
}

impl fmt::Display for WebdavTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "webdav {}", self.url)
    }
}
