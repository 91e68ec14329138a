//! The threads that compress a packing source's frames: each frame is one
//! independent zstd frame (with its checksum), so they compress in parallel and
//! read back one by one. The pack writer submits frames and collects the results
//! in order.

use std::io;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

/// A frame to compress, and where its result goes.
type Job = (Vec<u8>, SyncSender<io::Result<Vec<u8>>>);

/// Threads compressing frames, shared by the packs of one source's run.
pub(super) struct Workers {
    tx: Option<SyncSender<Job>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    pub(super) fn start(n: u32, level: i32) -> io::Result<Workers> {
        let (tx, rx) = sync_channel::<Job>(n as usize);
        let rx = Arc::new(Mutex::new(rx));
        let mut threads = Vec::new();
        for _ in 0..n.max(1) {
            let rx = rx.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("coffer-zstd".into())
                    .spawn(move || compress_loop(&rx, level))?,
            );
        }
        Ok(Workers {
            tx: Some(tx),
            threads,
        })
    }

    pub(super) fn submit(&self, frame: Vec<u8>) -> io::Result<Receiver<io::Result<Vec<u8>>>> {
        let (tx, rx) = sync_channel(1);
        self.tx
            .as_ref()
            .ok_or_else(|| io::Error::other("the compression workers stopped"))?
            .send((frame, tx))
            .map_err(|_| io::Error::other("the compression workers stopped"))?;
        Ok(rx)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        drop(self.tx.take());
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn compress_loop(rx: &Mutex<Receiver<Job>>, level: i32) {
    let mut zstd = match zstd::bulk::Compressor::new(level) {
        Ok(mut c) => {
            let _ = c.include_checksum(true);
            Some(c)
        }
        Err(_) => None,
    };
    loop {
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((frame, reply)) = job else { return };
        // Buffers of the write path, used again (`pipeline::buffers`).
        let mut out = crate::pipeline::buffers::take(zstd::zstd_safe::compress_bound(frame.len()));
        let out = match zstd.as_mut() {
            Some(z) => z.compress_to_buffer(&frame, &mut out).map(|_| out),
            None => Err(io::Error::other("cannot start zstd")),
        };
        crate::pipeline::buffers::give(frame);
        let _ = reply.send(out);
    }
}
