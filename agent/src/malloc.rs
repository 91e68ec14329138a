//! What coffer asks of glibc's allocator, so that memory stays flat without paying
//! for it in page faults. A run allocates and frees many 1-8 MiB buffers (frames,
//! compressed frames, age's chunks, upload parts, a chunk's bytes) on several
//! threads. By default glibc serves a request of 128 KiB or more with a mapping of
//! its own, but once such a mapping is freed it raises that threshold to the freed
//! size, and later buffers come from its heaps, where freed space stays resident:
//! a first backup of 1,000,000 small files peaked at 81 MiB of RSS while its heap
//! never held more than 56 MiB. Held at 128 KiB, every buffer is mapped and
//! unmapped again (57 MiB, but 0.5 s more CPU per GB in page faults). So the
//! threshold is held above the pipeline's buffers, which glibc then reuses, and
//! what lies freed in its heaps is handed back each time a pack is closed
//! (docs/performance.md).

/// Just above the pipeline's 1-2 MiB buffers (frames, age's chunks, a local
/// target's parts), which are then reused from the heap; bigger ones (a chunk's
/// bytes, the chunker's 8 MiB) get mappings of their own.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = (2 << 20) + 4096;

/// Holds glibc's mmap threshold (`MMAP_THRESHOLD`). Call first thing in main,
/// before any other thread starts. An operator's own `MALLOC_MMAP_THRESHOLD_`
/// (glibc's tunable) is left as set. Nothing to do with other allocators.
pub fn hold_mmap_threshold() {
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before threads start.
    #[allow(unsafe_code)]
    unsafe {
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Hands the free space in glibc's heaps back to the kernel (`malloc_trim`). Cheap
/// enough at a pack's end (once per 64 MiB packed, or per source): it walks the
/// free lists and releases whole free pages.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages; any thread may call it.
    #[allow(unsafe_code)]
    unsafe {
        nix::libc::malloc_trim(0);
    }
}
