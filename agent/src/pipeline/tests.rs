//! Tests of the pipeline against object_store's `InMemory`: no root, no server.

mod store;
mod upload;
mod write_read;
