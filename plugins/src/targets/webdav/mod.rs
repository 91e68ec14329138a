//! WebDAV targets (Nextcloud, ownCloud, Apache mod_dav, rclone, many NAS), built
//! with object_store's `HttpBuilder`, which speaks WebDAV: PUT (making missing
//! folders with MKCOL), GET with ranges, PROPFIND to list, DELETE, COPY/MOVE.
//!
//! WebDAV has no multipart upload, and object_store's HTTP store refuses one, so
//! an upload is spooled to an unnamed temporary file and sent in one streamed PUT
//! when it completes (`upload`): memory stays at one part, the disk holds one
//! object (a pack) per upload, and a killed run leaves nothing on the server (the
//! PUT had not started) nor on the disk (the file had no name).
//!
//! Basic authentication goes in a default header marked sensitive, so it is never
//! logged; the URL carries no credentials (config refuses them there).

pub mod upload;

use crate::targets::parts::PartPlan;
use crate::targets::registry::Shown;
use crate::targets::remote::{self, Remote};
use crate::targets::{Target, TargetError};
use coffer_config::WebdavTarget;
use object_store::ObjectStore;
use object_store::http::HttpBuilder;
use object_store::prefix::PrefixStore;
use std::sync::Arc;

/// Parts only cut what is spooled: their number is not limited, their size sets
/// the memory one upload holds.
const PARTS: PartPlan = PartPlan {
    part_size: 8 << 20,
    max_parts: u32::MAX,
    parts_in_flight: 2,
};

pub(super) fn open_target(
    t: &coffer_config::Target,
    w: &WebdavTarget,
) -> Result<Target, TargetError> {
    let description = t.kind.to_string();
    let fail = |message: String| TargetError::Open {
        name: t.name.clone(),
        description: description.clone(),
        message,
        retryable: false,
    };
    let auth = upload::basic_auth(w).map_err(fail)?;
    let mut options = remote::client_options().with_allow_http(w.url.starts_with("http://"));
    if let Some(value) = &auth {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, value.clone());
        options = options.with_default_headers(headers);
    }
    // object_store's HTTP store names listed objects by their whole URL path, so
    // it is opened at the server's root and the folder becomes a prefix.
    let (root, folder) = upload::root_and_folder(&w.url).map_err(fail)?;
    let store = HttpBuilder::new()
        .with_url(root.as_str())
        .with_client_options(options)
        .with_retry(remote::retry())
        .build()
        .map_err(|e| fail(format!("cannot set up the WebDAV client: {e}")))?;
    let store: Arc<dyn ObjectStore> = match folder.parts().next() {
        Some(_) => Arc::new(PrefixStore::new(store, folder.clone())),
        None => Arc::new(store),
    };
    let whole = upload::WholeUploads::new(root, folder, auth).map_err(fail)?;
    let mut target = Target::from_store(&t.name, store, &description, PARTS);
    target.explainer = Some(Arc::new(Remote {
        place: format!("WebDAV folder {}", w.url),
        credentials: credentials(w),
        holder: "folder",
    }));
    target.whole_uploads = Some(Arc::new(whole));
    Ok(target)
}

fn credentials(w: &WebdavTarget) -> String {
    match (&w.user, &w.password) {
        (Some(u), Some((_, file))) => {
            format!("user \"{u}\" with the password in {}", file.display())
        }
        (Some(u), None) => format!("user \"{u}\" without a password"),
        (None, _) => "no credentials".to_string(),
    }
}

pub(super) fn shown(w: &WebdavTarget, bytes: &dyn Fn(u64) -> String) -> Shown {
    Shown {
        lines: vec![
            format!(
                "uploads spooled to a temporary file in parts of {}, then sent in one PUT; \
                 {} retries within {}s",
                bytes(PARTS.part_size),
                remote::MAX_RETRIES,
                remote::RETRY_TIMEOUT.as_secs(),
            ),
            format!("credentials: {}", credentials(w)),
        ],
        open_to_check: false,
    }
}
