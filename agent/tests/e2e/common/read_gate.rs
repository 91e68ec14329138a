//! Holds every read of one file until the test has done what it wants at that
//! moment: the deterministic way to change a file while a backup is in the middle
//! of reading it, with no sleeps and no races to lose.
//!
//! fanotify permission events (`FAN_ACCESS_PERM`): each `read`/`pread` of the
//! marked file by any process waits until this listener answers. The callback runs
//! before the answer, so whatever it does (truncate, append, replace a directory)
//! has happened when that read proceeds. Closing the group (on drop, also when a
//! test fails) lets every pending read through. Needs root, as the e2e tests do.

use nix::sys::fanotify::{
    EventFFlags, Fanotify, FanotifyResponse, InitFlags, MarkFlags, MaskFlags, Response,
};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

pub struct ReadGate {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl ReadGate {
    /// Calls `on_read(n)` before the n-th read (from 1) of `path` is let through.
    pub fn new(path: &Path, mut on_read: impl FnMut(u64) + Send + 'static) -> ReadGate {
        super::require_root("holds a file's reads with fanotify");
        let fan = Fanotify::init(
            InitFlags::FAN_CLASS_CONTENT | InitFlags::FAN_CLOEXEC | InitFlags::FAN_NONBLOCK,
            EventFFlags::O_RDONLY | EventFFlags::O_LARGEFILE,
        )
        .expect("fanotify_init (the kernel needs CONFIG_FANOTIFY_ACCESS_PERMISSIONS)");
        fan.mark(
            MarkFlags::FAN_MARK_ADD,
            MaskFlags::FAN_ACCESS_PERM,
            nix::fcntl::AT_FDCWD,
            Some(path),
        )
        .expect("fanotify_mark");
        let stop = Arc::new(AtomicBool::new(false));
        let quit = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut reads = 0u64;
            loop {
                let mut fds = [nix::poll::PollFd::new(
                    fan.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                )];
                // The timeout only bounds how late a stop is noticed.
                let _ = nix::poll::poll(&mut fds, 50u16);
                let events = match fan.read_events() {
                    Ok(ev) => ev,
                    Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => Vec::new(),
                    Err(e) => panic!("reading fanotify events: {e}"),
                };
                if events.is_empty() && quit.load(Ordering::Relaxed) {
                    return reads;
                }
                for ev in events {
                    let Some(fd) = ev.fd() else { continue };
                    if ev.mask().contains(MaskFlags::FAN_ACCESS_PERM) {
                        reads += 1;
                        on_read(reads);
                    }
                    fan.write_response(FanotifyResponse::new(fd, Response::FAN_ALLOW))
                        .expect("answer a fanotify event");
                }
            }
        });
        ReadGate {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops holding reads; returns how many reads of the file were seen.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().expect("the read gate's thread panicked"))
            .unwrap_or(0)
    }
}

impl Drop for ReadGate {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
