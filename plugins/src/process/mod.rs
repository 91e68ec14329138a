//! Child processes of sources (dump programs, snapshot commands, a `command`
//! source): how they are started with a scrubbed environment and reaped, and how
//! a cancelled run stops them.

pub mod child;
pub mod dump_stop;
