//! One object's multipart upload to one target, driven part by part.
//!
//! object_store's `WriteMultipart` cuts a stream into fixed-size parts; an object of
//! unknown length then either needs huge parts or may run past the target's part
//! limit. So this module buffers the ciphertext itself and cuts it by the target's
//! `PartPlan` (sizes grow at fixed steps, see `coffer_plugins::targets::parts`): every part
//! but the last has exactly its planned size, which S3's 5 MiB minimum needs.
//!
//! At most `parts_in_flight` parts are uploading at once; the next part is only
//! filled after one finishes, and the channel from the fan-out is bounded, so
//! memory stays at (parts in flight + 1) parts per upload and a slow target slows
//! the run instead of growing it. Each part is one request, retried on transient
//! errors by object_store's client (see `coffer_plugins::targets::s3`), so there is no retry
//! loop here. Anything that stops an upload early (a failed part, the run failing,
//! SIGTERM) aborts it, so no parts are left behind for the provider to keep (and bill).

use bytes::Bytes;
use coffer_plugins::{Op, Target};
use object_store::path::Path as ObjPath;
use object_store::{MultipartUpload, PutPayload};
use serde::Serialize;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Aborting is best effort (the server may be the thing that failed): never wait long.
const ABORT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the parts in flight may finish before an upload is aborted. A part
/// whose request is cut after its body was sent may still be stored once the
/// abort is done, and then no upload is left to abort it with: AWS's docs say to
/// abort again, s3s-fs keeps the part for good (seen in
/// `s3::sigterm_aborts_the_multipart_upload_and_leaves_no_snapshot` under load).
/// Letting them end first closes that race; a part still going after this is cut.
const PARTS_SETTLE: Duration = Duration::from_secs(10);

/// What the fan-out sends to an upload.
pub enum Part {
    Data(Bytes),
    /// The object ended: upload the rest and complete.
    Done,
}

/// Why one target did not get an object.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct UploadError {
    pub target: String,
    /// Names the target, the object and what to check.
    pub message: String,
    /// Whether a later run could succeed without a change to the config.
    pub retryable: bool,
    /// The upload stopped because the run did, not on its own.
    pub abandoned: bool,
}

/// How an object was uploaded, for `backup --json`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Uploaded {
    pub parts: u32,
    pub largest_part: u64,
    pub bytes: u64,
}

struct Uploader<'a> {
    target: &'a Target,
    path: &'a ObjPath,
    up: Box<dyn MultipartUpload>,
    in_flight: JoinSet<object_store::Result<()>>,
    /// The part being filled, as the chunks that make it up (not copied).
    buf: Vec<Bytes>,
    buffered: u64,
    /// Number of the part being filled (1-based) and its planned size; `None` once
    /// past the target's part limit.
    number: u32,
    want: Option<u64>,
    stats: Uploaded,
}

/// Uploads what arrives on `rx` as `path` on `target`; aborts on any failure and
/// when the sender goes away without `Part::Done`.
pub async fn upload(
    target: Target,
    path: ObjPath,
    mut rx: mpsc::Receiver<Part>,
) -> Result<Uploaded, UploadError> {
    let up = match target.start_upload(&path).await {
        Ok(up) => up,
        Err(e) => {
            return Err(request_failed(
                &target,
                &path,
                "cannot start the upload of",
                &e,
            ));
        }
    };
    let mut u = Uploader {
        target: &target,
        path: &path,
        up,
        in_flight: JoinSet::new(),
        buf: Vec::new(),
        buffered: 0,
        number: 1,
        want: target.parts.size_of(1),
        stats: Uploaded::default(),
    };
    match u.run(&mut rx).await {
        Ok(()) => Ok(u.stats),
        Err(mut e) => {
            // Stop the stream first: the fan-out sees this target gone at once.
            drop(rx);
            if let Some(why) = u.abort().await {
                e.message.push_str(&format!(
                    "; the unfinished upload could not be aborted ({why}): a lifecycle rule \
                     for incomplete multipart uploads removes it"
                ));
            }
            Err(e)
        }
    }
}

fn request_failed(
    target: &Target,
    path: &ObjPath,
    what: &str,
    e: &object_store::Error,
) -> UploadError {
    let x = target.explain(Op::Write, e);
    UploadError {
        target: target.name.clone(),
        message: format!("{}: {what} {path}: {}", target.label(), x.detail),
        retryable: x.retryable,
        abandoned: false,
    }
}

impl Uploader<'_> {
    async fn run(&mut self, rx: &mut mpsc::Receiver<Part>) -> Result<(), UploadError> {
        loop {
            // A failed part ends the upload now, not when the object is complete.
            while let Some(done) = self.in_flight.try_join_next() {
                self.check(done)?;
            }
            let next = tokio::select! {
                next = rx.recv() => next,
                () = crate::cancel::wait() => return Err(self.stopped()),
            };
            match next {
                Some(Part::Data(mut chunk)) => {
                    while !chunk.is_empty() {
                        let Some(want) = self.want else {
                            return Err(self.too_large());
                        };
                        let room = (want - self.buffered).min(chunk.len() as u64) as usize;
                        let piece = chunk.split_to(room);
                        self.buffered += piece.len() as u64;
                        self.buf.push(piece);
                        if self.buffered == want {
                            self.send_part().await?;
                        }
                    }
                }
                Some(Part::Done) => {
                    // The last part may be short; an empty object is one empty part.
                    if self.buffered > 0 || self.number == 1 {
                        self.send_part().await?;
                    }
                    while let Some(done) = self.in_flight.join_next().await {
                        self.check(done)?;
                    }
                    return match self.up.complete().await {
                        Ok(_) => Ok(()),
                        Err(e) => Err(request_failed(
                            self.target,
                            self.path,
                            "cannot complete the upload of",
                            &e,
                        )),
                    };
                }
                None => {
                    return Err(UploadError {
                        target: self.target.name.clone(),
                        message: format!(
                            "{}: upload of {} abandoned: the run stopped",
                            self.target.label(),
                            self.path
                        ),
                        retryable: true,
                        abandoned: true,
                    });
                }
            }
        }
    }

    /// Starts uploading the buffered part once fewer than `parts_in_flight` are.
    async fn send_part(&mut self) -> Result<(), UploadError> {
        while self.in_flight.len() >= self.target.parts.parts_in_flight.max(1) {
            let done = tokio::select! {
                done = self.in_flight.join_next() => done,
                () = crate::cancel::wait() => return Err(self.stopped()),
            };
            if let Some(done) = done {
                self.check(done)?;
            }
        }
        let payload: PutPayload = self.buf.drain(..).collect();
        self.stats.parts += 1;
        self.stats.bytes += self.buffered;
        self.stats.largest_part = self.stats.largest_part.max(self.buffered);
        self.buffered = 0;
        self.in_flight.spawn(self.up.put_part(payload));
        self.number = self.number.saturating_add(1);
        self.want = self.target.parts.size_of(self.number);
        Ok(())
    }

    fn check(
        &self,
        done: Result<object_store::Result<()>, tokio::task::JoinError>,
    ) -> Result<(), UploadError> {
        match done {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(request_failed(
                self.target,
                self.path,
                "cannot upload a part of",
                &e,
            )),
            Err(e) => Err(UploadError {
                target: self.target.name.clone(),
                message: format!(
                    "{}: a part upload of {} stopped: {e}",
                    self.target.label(),
                    self.path
                ),
                retryable: true,
                abandoned: false,
            }),
        }
    }

    /// A stop was asked for (SIGTERM, Ctrl-C): the upload is aborted like any other.
    fn stopped(&self) -> UploadError {
        UploadError {
            target: self.target.name.clone(),
            message: format!(
                "{}: upload of {} stopped by a signal",
                self.target.label(),
                self.path
            ),
            retryable: true,
            abandoned: true,
        }
    }

    fn too_large(&self) -> UploadError {
        let p = &self.target.parts;
        UploadError {
            target: self.target.name.clone(),
            message: format!(
                "{}: {} is larger than {} parts can hold with part_size {} ({} bytes, \
                 the part size doubling every {} parts); raise part_size or max_parts",
                self.target.label(),
                self.path,
                p.max_parts,
                p.part_size,
                p.capacity(),
                p.step()
            ),
            retryable: false,
            abandoned: false,
        }
    }

    /// Lets the parts in flight end (for at most `PARTS_SETTLE`), then aborts the
    /// upload; says why when that failed.
    async fn abort(&mut self) -> Option<String> {
        let settled = tokio::time::timeout(PARTS_SETTLE, async {
            while self.in_flight.join_next().await.is_some() {}
        })
        .await;
        if settled.is_err() {
            self.in_flight.abort_all();
            while self.in_flight.join_next().await.is_some() {}
        }
        match tokio::time::timeout(ABORT_TIMEOUT, self.up.abort()).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no answer within {ABORT_TIMEOUT:?}")),
        }
    }
}
