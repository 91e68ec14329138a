//! File-system calls coffer needs beyond std: opening below a directory handle
//! without following links, trusting a restore destination, extended attributes,
//! ACLs, inode flags, the owner names of ids, state files replaced whole
//! (`durable`), and the host's memory (`meminfo`). Used by the directory source
//! when reading and by the agent when restoring.

pub mod acl;
pub mod durable;
pub mod ids;
pub mod inode_flags;
pub mod meminfo;
pub(crate) mod open_at;
pub mod stat;
pub mod trusted_dir;
pub mod xattr;
