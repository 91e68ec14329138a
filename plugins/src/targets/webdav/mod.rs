//! WebDAV targets (Nextcloud, ownCloud, Apache mod_dav, rclone, many NAS), built
//! with object_store's `HttpBuilder`, which speaks WebDAV: PUT (making missing
//! folders with MKCOL), GET with ranges, PROPFIND to list, DELETE, COPY/MOVE.
//!
//! WebDAV has no multipart upload, and object_store's HTTP store refuses one, so
//! an upload is spooled to an unnamed temporary file and sent in one streamed PUT
//! when it completes (`upload`): memory stays at one part, the disk holds one
//! object (a pack) per upload. Every PUT goes to a staging name `<object>#1` and
//! is moved over the object (`staged`), so a run killed mid-PUT leaves a staging
//! object, which listings hide and prune removes, never a cut object under its
//! own name (rclone, for one, writes a PUT in place); killed before, it leaves
//! nothing on the server nor on the disk (the file had no name).
//!
//! Basic authentication goes in a default header marked sensitive, so it is never
//! logged; the URL carries no credentials (config refuses them there).

pub mod staged;
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
    let build = || -> Result<Arc<dyn ObjectStore>, TargetError> {
        let store = HttpBuilder::new()
            .with_url(root.as_str())
            .with_client_options(options.clone())
            .with_retry(remote::retry())
            .build()
            .map_err(|e| fail(format!("cannot set up the WebDAV client: {e}")))?;
        Ok(match folder.parts().next() {
            Some(_) => Arc::new(PrefixStore::new(store, folder.clone())),
            None => Arc::new(store),
        })
    };
    let (store, leftover_store) = (build()?, build()?);
    let whole =
        Arc::new(upload::WholeUploads::new(root.clone(), folder.clone(), auth).map_err(fail)?);
    let staged = Arc::new(staged::Staged::new(store, whole.clone(), leftover_store));
    let mut target = Target::from_store(&t.name, staged.clone(), &description, PARTS);
    target.explainer = Some(Arc::new(Remote {
        place: format!("WebDAV folder {}", w.url),
        credentials: credentials(w),
        holder: "folder",
    }));
    target.whole_uploads = Some(whole);
    target.staging = Some(staged);
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
                "uploads spooled to a temporary file in parts of {}, then sent in one PUT to \
                 a staging name and moved into place; {} retries within {}s",
                bytes(PARTS.part_size),
                remote::MAX_RETRIES,
                remote::RETRY_TIMEOUT.as_secs(),
            ),
            format!("credentials: {}", credentials(w)),
        ],
        open_to_check: false,
    }
}
