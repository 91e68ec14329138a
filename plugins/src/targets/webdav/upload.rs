//! Uploads to a WebDAV target: WebDAV has no multipart upload (object_store's HTTP
//! store refuses `put_multipart`), and holding a whole pack in memory would cost
//! its size. So the parts are written, in the order they are handed over, to an
//! unnamed temporary file, and `complete` sends that file in one streamed PUT,
//! retried from its start on a transient failure. `abort` (or a kill before
//! `complete`) drops the file: nothing reached the server.
//!
//! Every write (these uploads, and the small objects `staged` puts) goes to a
//! staging name `<object>#1` and is then moved over the object (MOVE, as the
//! local and SFTP targets rename): servers such as rclone write a PUT in place,
//! so a run killed mid-PUT would otherwise leave a cut object under the object's
//! own name. Listings hide staging names; prune removes old ones (`leftovers`).

use coffer_config::WebdavTarget;
use object_store::client::{HttpError, HttpErrorKind};
use object_store::path::Path;
use object_store::{MultipartUpload, PutPayload, PutResult, UploadPart};
use reqwest::header::{CONTENT_LENGTH, HeaderValue};
use reqwest::{Method, StatusCode};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Slowest a PUT may go before it is taken for stalled: 256 KiB/s, and never
/// less than the remote targets' request timeout.
const SLOWEST: u64 = 256 << 10;

/// What a staging name adds to its object's: `leftovers::staging_object` takes
/// it for one, as it does the local and SFTP targets'.
const STAGING: &str = "#1";

/// `Authorization: Basic ...` for the target's user and password, marked sensitive.
pub(super) fn basic_auth(w: &WebdavTarget) -> Result<Option<HeaderValue>, String> {
    use base64::Engine;
    let Some(user) = &w.user else {
        return Ok(None);
    };
    let password = w.password.as_ref().map(|(p, _)| p.expose()).unwrap_or("");
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut value = HeaderValue::from_str(&format!("Basic {token}"))
        .map_err(|_| "the user name cannot be sent in an HTTP header".to_string())?;
    value.set_sensitive(true);
    Ok(Some(value))
}

/// The server's root URL and the folder below it, as object_store's `Path`.
pub(super) fn root_and_folder(url: &str) -> Result<(url::Url, Path), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("the url does not parse: {e}"))?;
    let folder = Path::from_url_path(parsed.path())
        .map_err(|e| format!("the url's path is not usable as a folder: {e}"))?;
    let mut root = parsed;
    root.set_path("/");
    Ok((root, folder))
}

/// What every upload to one WebDAV target shares.
#[derive(Debug)]
pub struct WholeUploads {
    client: reqwest::Client,
    root: url::Url,
    folder: Path,
    auth: Option<HeaderValue>,
}

impl WholeUploads {
    pub(super) fn new(
        root: url::Url,
        folder: Path,
        auth: Option<HeaderValue>,
    ) -> Result<WholeUploads, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        Ok(WholeUploads {
            client,
            root,
            folder,
            auth,
        })
    }

    /// Starts spooling an upload of `path`.
    pub(crate) fn start(
        self: &Arc<Self>,
        path: &Path,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let file = tempfile::tempfile().map_err(|e| {
            generic(format!(
                "cannot make a temporary file to spool the upload of {path} in ({e}); check TMPDIR's space"
            ))
        })?;
        Ok(Box::new(Spooled {
            shared: self.clone(),
            path: path.clone(),
            file: Arc::new(file),
            len: 0,
        }))
    }

    /// The parts of `path`'s URL path: the folder's, then its own, as the
    /// prefixed HTTP store joins them.
    fn parts_of(&self, path: &Path) -> Vec<String> {
        self.folder
            .parts()
            .chain(path.parts())
            .map(|p| p.as_ref().to_string())
            .collect()
    }

    /// The parts of the staging name `path` is written to before it is moved
    /// over `path`.
    fn staging_parts_of(&self, path: &Path) -> Vec<String> {
        let mut parts = self.parts_of(path);
        if let Some(last) = parts.last_mut() {
            last.push_str(STAGING);
        }
        parts
    }

    /// Writes `len` bytes that `body` makes (again for each attempt) to `path`:
    /// PUT to its staging name, then MOVE over it; the pair retried from the PUT
    /// on a transient failure, the folders made once if missing.
    pub(super) async fn send(
        &self,
        path: &Path,
        len: u64,
        body: impl Fn() -> object_store::Result<reqwest::Body>,
    ) -> object_store::Result<PutResult> {
        let staging = self.url_of(&self.staging_parts_of(path));
        let url = self.url_of(&self.parts_of(path));
        let timeout = Duration::from_secs(len / SLOWEST).max(super::remote::REQUEST_TIMEOUT);
        let started = Instant::now();
        let mut backoff = Duration::from_millis(100);
        let mut retries = 0;
        let mut made_folders = false;
        loop {
            let sent = self
                .request(Method::PUT, staging.clone())
                .header(CONTENT_LENGTH, len)
                .timeout(timeout)
                .body(body()?)
                .send()
                .await;
            let failure = match sent {
                Ok(resp) if resp.status().is_success() => {
                    match self.move_over(&staging, &url).await {
                        Ok(()) => {
                            return Ok(PutResult {
                                e_tag: None,
                                version: None,
                                extensions: Default::default(),
                            });
                        }
                        Err((err, transient)) if transient => err,
                        Err((err, _)) => return Err(err),
                    }
                }
                // A missing folder: 409 by RFC 4918, 404 on some servers.
                Ok(resp)
                    if !made_folders
                        && matches!(
                            resp.status(),
                            StatusCode::CONFLICT | StatusCode::NOT_FOUND
                        ) =>
                {
                    self.make_folders(path).await?;
                    made_folders = true;
                    continue;
                }
                Ok(resp) => {
                    let code = resp.status();
                    let err = status_error("PUT", &staging, code);
                    if !transient_status(code) {
                        return Err(err);
                    }
                    err
                }
                Err(e) => transport(e),
            };
            if retries >= super::remote::MAX_RETRIES
                || started.elapsed() + backoff > super::remote::RETRY_TIMEOUT
            {
                return Err(failure);
            }
            retries += 1;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(15));
        }
    }

    /// Moves the staging object at `from` over the object at `to` (MOVE with
    /// `Overwrite: T`). The error, and whether another attempt could help.
    async fn move_over(
        &self,
        from: &url::Url,
        to: &url::Url,
    ) -> Result<(), (object_store::Error, bool)> {
        let method = Method::from_bytes(b"MOVE").map_err(|e| (generic(e.to_string()), false))?;
        let resp = self
            .request(method, from.clone())
            .header("Destination", to.as_str())
            .header("Overwrite", "T")
            .timeout(super::remote::REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| (transport(e), true))?;
        let code = resp.status();
        if code.is_success() {
            Ok(())
        } else {
            Err((status_error("MOVE", to, code), transient_status(code)))
        }
    }

    /// The URL of the path made of `parts`, encoded as object_store's HTTP store
    /// encodes it.
    fn url_of(&self, parts: &[String]) -> url::Url {
        let mut url = self.root.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.extend(parts);
        }
        url
    }

    fn request(&self, method: Method, url: url::Url) -> reqwest::RequestBuilder {
        let b = self.client.request(method, url);
        match &self.auth {
            Some(a) => b.header(reqwest::header::AUTHORIZATION, a.clone()),
            None => b,
        }
    }

    /// Makes the folders above `path` (MKCOL, top down; one that exists answers 405).
    async fn make_folders(&self, path: &Path) -> object_store::Result<()> {
        let parts = self.parts_of(path);
        let mkcol = Method::from_bytes(b"MKCOL").map_err(|e| generic(e.to_string()))?;
        for depth in 1..parts.len() {
            let mut url = self.url_of(&parts[..depth]);
            // A collection's URL ends with '/'.
            if let Ok(mut s) = url.path_segments_mut() {
                s.push("");
            }
            let resp = self
                .request(mkcol.clone(), url.clone())
                .send()
                .await
                .map_err(transport)?;
            let code = resp.status();
            if !(code.is_success() || code == StatusCode::METHOD_NOT_ALLOWED) {
                return Err(status_error("MKCOL", &url, code));
            }
        }
        Ok(())
    }
}

/// One upload, spooled to `file`.
#[derive(Debug)]
struct Spooled {
    shared: Arc<WholeUploads>,
    path: Path,
    file: Arc<std::fs::File>,
    /// Bytes handed over so far: where the next part goes.
    len: u64,
}

#[async_trait::async_trait]
impl MultipartUpload for Spooled {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        // Its place is fixed now, in call order, whenever the write runs.
        let at = self.len;
        self.len += data.content_length() as u64;
        let file = self.file.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut at = at;
                for chunk in data.iter() {
                    file.write_all_at(chunk, at)?;
                    at += chunk.len() as u64;
                }
                Ok::<_, std::io::Error>(())
            })
            .await
            .map_err(|e| generic(format!("the spooling task failed: {e}")))?
            .map_err(|e| {
                generic(format!(
                    "cannot spool an upload part: {e}; check TMPDIR's space"
                ))
            })
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.shared.send(&self.path, self.len, || self.body()).await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        // Nothing was sent; the unnamed file goes with the last handle.
        Ok(())
    }
}

impl Spooled {
    /// The spooled bytes from their start, as a streamed body.
    fn body(&self) -> object_store::Result<reqwest::Body> {
        let mut f = self
            .file
            .try_clone()
            .map_err(|e| generic(format!("cannot reopen the spooled upload: {e}")))?;
        f.seek(SeekFrom::Start(0))
            .map_err(|e| generic(format!("cannot rewind the spooled upload: {e}")))?;
        Ok(reqwest::Body::from(tokio::fs::File::from_std(f)))
    }
}

/// An answer worth another attempt: the server's trouble, not the request's.
fn transient_status(code: StatusCode) -> bool {
    code.is_server_error()
        || code == StatusCode::REQUEST_TIMEOUT
        || code == StatusCode::TOO_MANY_REQUESTS
}

fn generic(message: String) -> object_store::Error {
    object_store::Error::Generic {
        store: "WebDAV",
        source: message.into(),
    }
}

/// A request that got no answer: the network's fault, worth another run.
fn transport(e: reqwest::Error) -> object_store::Error {
    let kind = if e.is_timeout() {
        HttpErrorKind::Timeout
    } else if e.is_connect() {
        HttpErrorKind::Connect
    } else {
        HttpErrorKind::Request
    };
    object_store::Error::Generic {
        store: "WebDAV",
        source: Box::new(HttpError::new(kind, e.without_url())),
    }
}

/// An answer that is a failure, worded as object_store words its own
/// (`status code: NNN`), which is what `remote` reads the status from.
fn status_error(method: &str, url: &url::Url, code: StatusCode) -> object_store::Error {
    generic(format!(
        "{method} {url} failed, status code: {}",
        code.as_u16()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upload goes to the URL the prefixed HTTP store reads from: the folder's
    /// parts, then the object's, on the server's root.
    #[test]
    fn uploads_go_where_the_store_reads() {
        for (url, want) in [
            (
                "https://dav.example.com",
                "https://dav.example.com/app/p/x.age",
            ),
            (
                "https://dav.example.com/remote.php/dav/files/me@example.com/a%20b",
                "https://dav.example.com/remote.php/dav/files/me@example.com/a%20b/app/p/x.age",
            ),
        ] {
            let (root, folder) = root_and_folder(url).expect("parses");
            assert_eq!(root.as_str(), "https://dav.example.com/");
            let w = WholeUploads::new(root, folder, None).expect("client");
            let path = Path::from("app/p/x.age");
            assert_eq!(w.url_of(&w.parts_of(&path)).as_str(), want);
        }
    }
}
