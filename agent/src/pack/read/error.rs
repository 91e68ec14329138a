//! What went wrong with a pack, as a type the caller can tell apart (inside an
//! `io::Error`), each naming the pack and the target so that an operator knows
//! which object to look at.

use super::super::ranged::is_fetch_error;
use super::super::seek_table::SeekTable;
use super::PackReader;
use std::io;
use thiserror::Error;

/// What went wrong with a pack. [`PackReader::read`] returns these inside an
/// `io::Error` (`get_ref()` and downcast to tell them apart).
#[derive(Debug, Error)]
pub enum PackError {
    #[error(
        "pack {pack} on target {target}: not encrypted to this identity; it was encrypted to {recipients}"
    )]
    NotForIdentity {
        pack: String,
        target: String,
        /// What its age header shows (`key_match::describe_recipients`).
        recipients: String,
    },
    #[error("pack {pack} on target {target} is damaged: {what}")]
    Damaged {
        pack: String,
        target: String,
        what: String,
    },
    #[error(
        "pack {pack} on target {target} holds {holds} bytes of content, too few for bytes {offset}..{end}"
    )]
    TooShort {
        pack: String,
        target: String,
        holds: u64,
        offset: u64,
        end: u64,
    },
    #[error("pack {pack} on target {target}: {cause}")]
    Fetch {
        pack: String,
        target: String,
        cause: io::Error,
    },
    #[error("pack {pack} on target {target}: {what}")]
    BadRequest {
        pack: String,
        target: String,
        what: String,
    },
}

impl From<PackError> for io::Error {
    fn from(e: PackError) -> io::Error {
        let kind = match &e {
            PackError::NotForIdentity { .. } => io::ErrorKind::PermissionDenied,
            PackError::Damaged { .. } => io::ErrorKind::InvalidData,
            PackError::TooShort { .. } => io::ErrorKind::UnexpectedEof,
            PackError::Fetch { cause, .. } => cause.kind(),
            PackError::BadRequest { .. } => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, e)
    }
}

impl PackReader<'_> {
    pub(super) fn check_holds(
        &self,
        pack: &str,
        table: &SeekTable,
        offset: u64,
        end: u64,
    ) -> io::Result<()> {
        if end > table.decompressed_len() {
            return Err(self.too_short(pack, table, offset, end));
        }
        Ok(())
    }

    pub(super) fn too_short(
        &self,
        pack: &str,
        table: &SeekTable,
        offset: u64,
        end: u64,
    ) -> io::Error {
        PackError::TooShort {
            pack: pack.to_string(),
            target: self.target.clone(),
            holds: table.decompressed_len(),
            offset,
            end,
        }
        .into()
    }

    pub(super) fn damaged(&self, pack: &str, what: String) -> io::Error {
        PackError::Damaged {
            pack: pack.to_string(),
            target: self.target.clone(),
            what,
        }
        .into()
    }

    pub(super) fn bad_request(&self, pack: &str, what: &str) -> io::Error {
        PackError::BadRequest {
            pack: pack.to_string(),
            target: self.target.clone(),
            what: what.to_string(),
        }
        .into()
    }

    /// A read through age and zstd failed: the store, or the bytes themselves.
    pub(super) fn read_error(&self, pack: &str, e: io::Error) -> io::Error {
        if is_fetch_error(&e) {
            PackError::Fetch {
                pack: pack.to_string(),
                target: self.target.clone(),
                cause: e,
            }
            .into()
        } else {
            self.damaged(
                pack,
                format!("{e} (its stored bytes do not decrypt or decompress)"),
            )
        }
    }

    pub(super) fn age_error(&self, pack: &str, header: &[u8], e: age::DecryptError) -> io::Error {
        match e {
            age::DecryptError::NoMatchingKeys => PackError::NotForIdentity {
                pack: pack.to_string(),
                target: self.target.clone(),
                recipients: crate::key_match::describe_recipients(header),
            }
            .into(),
            age::DecryptError::Io(e) => self.read_error(pack, e),
            other => self.damaged(pack, format!("its age header is unusable: {other}")),
        }
    }
}
