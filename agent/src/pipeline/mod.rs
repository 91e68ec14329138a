//! The pipeline between a source and the targets: `write` compresses, encrypts
//! and fans one object out to every target through `upload`; `read` fetches one
//! object back from a target, checks its stored bytes and decrypts it.

pub(crate) mod buffers;
pub(crate) mod read;
pub(crate) mod upload;
pub(crate) mod write;

pub(crate) use write::{Finished, ObjectWriter, Uploaded};

#[cfg(test)]
mod tests;
