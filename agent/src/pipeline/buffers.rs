//! The write path's 1 MiB buffers, used again instead of allocated anew: a
//! pack's compressed frames (the zstd workers' output), the chunks handed to the
//! encryption thread, and the ciphertext parts the uploads send. Each lives for
//! a few milliseconds and crosses threads; freed, glibc handed its pages back to
//! the kernel at once (the trim threshold stays at 128 KiB once coffer holds the
//! mmap threshold, `malloc.rs`), and the next buffer faulted them in again:
//! 140,000 page faults and about 10% of the CPU of a first backup of 500 MB.
//! Raising the trim threshold instead kept that much free memory in every
//! thread's heap, and a backup of 1,000,000 small files went over its 64 MiB.
//!
//! At most `KEPT` buffers wait here, so what is kept is bounded by the pipeline's
//! depth, not by the data.

use std::sync::Mutex;

/// Buffers kept for use again, at most.
const KEPT: usize = 4;

/// Only buffers of the write path's sizes are kept (a frame's bound, 1 MiB and
/// a quarter for a gathered chunk): a bigger one would hold memory for nothing.
const KEEP_FROM: usize = 512 << 10;
const KEEP_UP_TO: usize = 2 << 20;

static FREE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// An empty buffer of at least `capacity` bytes: one given back when there is
/// one big enough, else a new one.
pub(crate) fn take(capacity: usize) -> Vec<u8> {
    if let Ok(mut free) = FREE.lock()
        && let Some(i) = free.iter().position(|b| b.capacity() >= capacity)
    {
        let mut buf = free.swap_remove(i);
        buf.clear();
        return buf;
    }
    Vec::with_capacity(capacity)
}

/// Gives `buf` back for `take`, unless enough are kept or it has no size of
/// the write path's; then it is freed.
pub(crate) fn give(buf: Vec<u8>) {
    if !(KEEP_FROM..=KEEP_UP_TO).contains(&buf.capacity()) {
        return;
    }
    if let Ok(mut free) = FREE.lock()
        && free.len() < KEPT
    {
        free.push(buf);
    }
}

/// A buffer shared as `Bytes` (a ciphertext part, held by every target's
/// upload) that is given back when the last of them is dropped.
pub(crate) struct GivenBack(pub(crate) Vec<u8>);

impl AsRef<[u8]> for GivenBack {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for GivenBack {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_given_back_is_taken_again_empty_and_odd_sizes_are_not_kept() {
        let mut buf = take(1 << 20);
        buf.extend_from_slice(&[7; 100]);
        let at = buf.as_ptr();
        give(buf);
        // Other tests may take it first: only when it comes back is it checked.
        let again = take(1 << 20);
        if again.as_ptr() == at {
            assert!(again.is_empty());
        }
        give(again);
        let small = Vec::with_capacity(4096);
        give(small);
        let huge: Vec<u8> = Vec::with_capacity(8 << 20);
        let huge_at = huge.as_ptr();
        give(huge);
        assert!(
            FREE.lock()
                .expect("pool")
                .iter()
                .all(|b| (KEEP_FROM..=KEEP_UP_TO).contains(&b.capacity()) && b.as_ptr() != huge_at)
        );
        assert!(FREE.lock().expect("pool").len() <= KEPT);
    }
}
