//! The read path: stream an object from a target, check its stored bytes against
//! `snapshot.json`, decrypt with age and decompress with zstd, as a plain `Read`.
//!
//! Errors carry the object's name so that "flip one byte" ends in a message that
//! says which object is damaged.

use crate::format::ObjectRecord;
use crate::keys::Identities;
use bytes::Bytes;
use coffer_plugins::Target;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjPath;
use std::io::{self, BufReader, Read};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

/// Raw stored bytes of one object, checked at EOF against the marker's size and BLAKE3.
pub struct ObjectReader {
    rx: mpsc::Receiver<Result<Bytes, object_store::Error>>,
    cur: Bytes,
    hasher: blake3::Hasher,
    size: u64,
    expect: Option<(u64, String)>,
    label: String,
    finished: bool,
}

impl ObjectReader {
    pub fn open(
        rt: &Handle,
        target: &Target,
        path: &ObjPath,
        expect: Option<&ObjectRecord>,
    ) -> ObjectReader {
        let (tx, rx) = mpsc::channel(8);
        let store = target.store.clone();
        let p = path.clone();
        rt.spawn(async move {
            match store.get(&p).await {
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                }
                Ok(got) => {
                    let mut s = got.into_stream();
                    while let Some(item) = s.next().await {
                        if tx.send(item).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
        ObjectReader {
            rx,
            cur: Bytes::new(),
            hasher: blake3::Hasher::new(),
            size: 0,
            expect: expect.map(|o| (o.stored_size, o.blake3.clone())),
            label: format!("object {path} on target {}", target.name),
            finished: false,
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Size and BLAKE3 of what was read so far.
    pub fn stored(&self) -> (u64, String) {
        (self.size, self.hasher.finalize().to_hex().to_string())
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            if self.finished {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Ok(b)) => {
                    self.hasher.update(&b);
                    self.size += b.len() as u64;
                    self.cur = b;
                }
                Some(Err(e)) => return Err(io::Error::other(format!("{}: {e}", self.label))),
                None => {
                    self.finished = true;
                    if let Some((size, hash)) = &self.expect {
                        let got = self.hasher.finalize().to_hex().to_string();
                        if *size != self.size || *hash != got {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!(
                                    "{}: stored bytes do not match snapshot.json (size {} vs {}, blake3 {} vs {}): the object is damaged",
                                    self.label, self.size, size, got, hash
                                ),
                            ));
                        }
                    }
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

/// Prefixes every error of the inner reader with the object's name.
pub struct Labeled<R> {
    inner: R,
    label: String,
}

impl<R: Read> Read for Labeled<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            let kind = e.kind();
            let msg = e.to_string();
            if msg.contains(&self.label) {
                e
            } else {
                io::Error::new(
                    kind,
                    format!(
                        "{}: {msg} (the object is damaged or was tampered with)",
                        self.label
                    ),
                )
            }
        })
    }
}

/// The plaintext of a stored object.
pub fn decrypt(
    reader: ObjectReader,
    identities: &Identities,
) -> io::Result<Labeled<Box<dyn Read + Send>>> {
    let label = reader.label().to_string();
    let dec =
        age::Decryptor::new_buffered(BufReader::with_capacity(1 << 20, reader)).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{label}: not a readable age file: {e}"),
            )
        })?;
    let plain = dec
        .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{label}: cannot decrypt: {e} (is this the identity matching the configured recipients?)"),
            )
        })?;
    let unzstd = zstd::stream::read::Decoder::new(Labeled {
        inner: plain,
        label: label.clone(),
    })?;
    Ok(Labeled {
        inner: Box::new(unzstd),
        label,
    })
}
