//! SFTP targets: a folder on an SSH server (a Hetzner Storage Box, rsync.net, any
//! OpenSSH server), seen as an `object_store` store so that the rest of coffer
//! treats it like a local directory or a bucket.
//!
//! The SFTP protocol is russh-sftp's (Rust on tokio), spoken over OpenSSH's own
//! client, `ssh -s sftp`: the SSH implementation every storage box is tested
//! against, with its key exchange and host key checks. (russh, the Rust SSH
//! library, cannot be built beside age's post-quantum dependencies today.) The
//! host key is pinned in the config (a known_hosts file or a SHA256 fingerprint)
//! and checked before coffer logs in: a key that is unknown or has changed ends
//! the connection, and coffer never trusts one on first use (`host_key`). Only
//! the key file's path reaches ssh's arguments, never a secret.
//!
//! One SSH connection per target carries every request (`connection`); a dropped
//! connection is opened again once. Its I/O runs on a small runtime of its own
//! (`io`), so the store works whichever runtime (or none) calls it, and opening the
//! target can check the host key and the login at once: a wrong key is a setup
//! problem (exit 2) reported before anything is read or uploaded.
//!
//! Objects are written like object_store's local store does: to a staging file
//! `<object>#<n>` in the same folder, renamed over the object once complete, so a
//! killed run leaves only staging names, which listings hide and prune removes
//! (`Remote::leftovers`).

mod connection;
mod host_key;
mod io;
mod paths;
mod store;
mod upload;

use crate::targets::parts::PartPlan;
use crate::targets::registry::Shown;
use crate::targets::{Access, Target, TargetError};
use coffer_config::{HostKeyPin, SftpTarget};
pub(crate) use connection::Remote;
use std::sync::Arc;

/// Parts only set how much is held in memory: they are written one after the
/// other into one staging file, so there is no limit on their number.
const PARTS: PartPlan = PartPlan {
    part_size: 8 << 20,
    max_parts: u32::MAX,
    parts_in_flight: 2,
};

/// A failed SFTP request or connection in words for the operator, and whether
/// another run could get past it. Carried inside object_store's `Generic` error
/// so that `Target::explain` can tell (`retryable`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub(crate) struct Failure {
    pub message: String,
    pub retryable: bool,
    /// The setup is wrong (host key, login, key file): a retry cannot help and
    /// opening the target fails like a bad config (exit 2).
    pub setup: bool,
}

impl Failure {
    fn transient(message: String) -> Failure {
        Failure {
            message,
            retryable: true,
            setup: false,
        }
    }

    fn setup(message: String) -> Failure {
        Failure {
            message,
            retryable: false,
            setup: true,
        }
    }
}

/// Whether a store error of an SFTP target could go away on another run, when it
/// is one (`None` for any other store's errors).
pub(crate) fn retryable(err: &object_store::Error) -> Option<bool> {
    match err {
        object_store::Error::Generic { source, .. } => {
            source.downcast_ref::<Failure>().map(|f| f.retryable)
        }
        _ => None,
    }
}

/// Opens the SFTP target `t`: connects, checks the host key and logs in now, so
/// that a wrong key or login fails here, before a run reads anything.
pub(super) fn open_target(
    t: &coffer_config::Target,
    sftp: &SftpTarget,
    _access: Access,
) -> Result<Target, TargetError> {
    let description = t.kind.to_string();
    let remote = Arc::new(Remote::new(sftp.clone(), description.clone()));
    if let Err(f) = remote.connect_now() {
        return Err(if f.setup {
            TargetError::Setup {
                name: t.name.clone(),
                description,
                message: f.message,
            }
        } else {
            TargetError::Open {
                name: t.name.clone(),
                description,
                message: f.message,
                retryable: f.retryable,
            }
        });
    }
    let mut target = Target::from_store(
        &t.name,
        Arc::new(store::SftpStore::new(remote.clone())),
        &description,
        PARTS,
    );
    target.staging = Some(remote);
    Ok(target)
}

/// What `config check` shows of an SFTP target: how the host key is pinned and
/// which key file logs in, never the key. Checking does not connect.
pub(super) fn shown(sftp: &SftpTarget) -> Shown {
    let pin = match &sftp.host_key {
        HostKeyPin::KnownHosts(file) => format!("host key pinned by {}", file.display()),
        HostKeyPin::Fingerprint(f) => format!("host key pinned to {f}"),
    };
    Shown {
        lines: vec![
            pin,
            format!("logs in with the key in {}", sftp.key_file.display()),
        ],
        open_to_check: false,
    }
}
