//! A stored object as a blocking `Read + Seek + BufRead`, fetched in byte ranges, so
//! that age can seek inside an encrypted pack and a restore of one file downloads
//! the few chunks that hold it instead of the whole pack.
//!
//! Window policy: the first fetch after a jump is small (an age header, a seek
//! table, one file are small), each fetch that continues the previous one doubles,
//! up to [`MAX_WINDOW`] (or the share of a budget a [`WindowCap`] gives it), so
//! reading a whole pack costs few requests. Every byte fetched is added to a
//! counter the caller owns: restore reports it.

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use std::io::{self, BufRead, Read, Seek, SeekFrom};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use thiserror::Error;
use tokio::runtime::Handle;

/// Size of the first fetch after a seek.
pub const FIRST_WINDOW: u64 = 16 << 10;
/// Largest single fetch, reached after a run of sequential fetches.
pub const MAX_WINDOW: u64 = 8 << 20;

/// What a failed or short fetch turns into inside an `io::Error`, so that readers
/// further up (age, zstd) can be told apart from the store: see [`is_fetch_error`].
#[derive(Debug, Error)]
#[error("cannot read bytes {start}..{end} of {path}: {what}")]
pub struct FetchError {
    pub path: String,
    pub start: u64,
    pub end: u64,
    pub what: String,
}

/// Whether `e` came from fetching (store unreachable, object missing or shorter than
/// expected) rather than from the bytes' content.
pub fn is_fetch_error(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<FetchError>())
}

/// A hint from the reader about where its current need ends: fetches stop there, so
/// a lone small read does not pull a doubled window it will not use. Reading past it
/// drops the hint and starts again with a small window. Shared, because the object
/// is buried inside the decryptor when the need becomes known.
#[derive(Debug, Clone, Default)]
pub struct FetchLimit(Arc<AtomicU64>);

impl FetchLimit {
    /// Fetches should stop at object offset `end` (exclusive). 0 clears.
    pub fn set(&self, end: u64) {
        self.0.store(end, Ordering::Relaxed);
    }

    pub fn clear(&self) {
        self.set(0);
    }

    fn get(&self) -> Option<u64> {
        Some(self.0.load(Ordering::Relaxed)).filter(|end| *end != 0)
    }
}

/// The largest window the objects of one reader may fetch now, shared by them: a
/// reader with many packs open gives each a smaller share, so the windows they hold
/// together stay within a budget however many packs a restore moves between.
/// 0 means [`MAX_WINDOW`].
#[derive(Debug, Clone, Default)]
pub struct WindowCap(Arc<AtomicU64>);

impl WindowCap {
    pub fn set(&self, max: u64) {
        self.0.store(max, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        match self.0.load(Ordering::Relaxed) {
            0 => MAX_WINDOW,
            max => max.clamp(FIRST_WINDOW, MAX_WINDOW),
        }
    }
}

pub struct RangedObject {
    rt: Handle,
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
    fetched: Arc<AtomicU64>,
    limit: FetchLimit,
    cap: WindowCap,
    pos: u64,
    /// The last window fetched and where it starts.
    buf: Bytes,
    buf_start: u64,
    /// The object's last bytes, when preloaded; `tail_start == size` when not.
    tail: Bytes,
    tail_start: u64,
    /// Size of the last window fetched, and where it ended: a fetch starting there
    /// continues it and may double.
    window: u64,
    last_end: Option<u64>,
}

impl RangedObject {
    /// `size` is the object's size as recorded by the writer: nothing past it is read,
    /// and an object that turns out shorter is an error, never a silent short read.
    /// Use from plain threads only: fetches `block_on` the runtime behind `rt`.
    pub fn new(
        rt: Handle,
        store: Arc<dyn ObjectStore>,
        path: Path,
        size: u64,
        fetched: Arc<AtomicU64>,
    ) -> RangedObject {
        RangedObject {
            rt,
            store,
            path,
            size,
            fetched,
            limit: FetchLimit::default(),
            cap: WindowCap::default(),
            pos: 0,
            buf: Bytes::new(),
            buf_start: 0,
            tail: Bytes::new(),
            tail_start: size,
            window: 0,
            last_end: None,
        }
    }

    /// The handle through which the reader hints how far its current need goes.
    pub fn fetch_limit(&self) -> FetchLimit {
        self.limit.clone()
    }

    /// Windows stop growing at what `cap` says (shared with the reader's other objects).
    pub fn set_window_cap(&mut self, cap: WindowCap) {
        self.cap = cap;
    }

    /// Fetches the object's last `len` bytes once and keeps them: age reads the last
    /// chunk to authenticate the length, and the seek table lives there, both by
    /// seeking back and forth that would otherwise fetch the same bytes again.
    pub fn preload_tail(&mut self, len: u64) -> io::Result<()> {
        let start = self.size.saturating_sub(len);
        if start >= self.tail_start {
            return Ok(());
        }
        self.tail = self.get(start, self.size)?;
        self.tail_start = start;
        Ok(())
    }

    fn get(&self, start: u64, end: u64) -> io::Result<Bytes> {
        let failed = |kind, what: String| {
            io::Error::new(
                kind,
                FetchError {
                    path: self.path.to_string(),
                    start,
                    end,
                    what,
                },
            )
        };
        let got = self
            .rt
            .block_on(self.store.get_range(&self.path, start..end))
            .map_err(|e| {
                let kind = match e {
                    object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
                    _ => io::ErrorKind::Other,
                };
                failed(kind, e.to_string())
            })?;
        // Progress displays follow this counter too (`report::Work::count_also`).
        self.fetched.fetch_add(got.len() as u64, Ordering::Relaxed);
        if got.len() as u64 != end - start {
            return Err(failed(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "got {} bytes: the object is shorter than the {} bytes recorded for it",
                    got.len(),
                    self.size
                ),
            ));
        }
        Ok(got)
    }

    /// Fetches the window starting at `pos` (which no buffer holds, and `pos < size`).
    fn fetch(&mut self) -> io::Result<()> {
        let pos = self.pos;
        let mut window = if self.last_end == Some(pos) {
            (self.window * 2).clamp(FIRST_WINDOW, self.cap.get())
        } else {
            FIRST_WINDOW
        };
        let limit = match self.limit.get() {
            Some(end) if pos >= end => {
                self.limit.clear();
                window = FIRST_WINDOW;
                None
            }
            other => other,
        };
        // Each bound is above `pos`, so every fetch asks for at least one byte and a
        // reader can never spin on empty results.
        let mut end = pos.saturating_add(window).min(self.size);
        if let Some(limit) = limit {
            end = end.min(limit);
        }
        if pos < self.tail_start {
            end = end.min(self.tail_start);
        }
        self.buf = self.get(pos, end)?;
        self.buf_start = pos;
        self.window = window;
        self.last_end = Some(end);
        Ok(())
    }

    fn held(&self) -> Option<&[u8]> {
        let pos = self.pos;
        for (start, bytes) in [(self.buf_start, &self.buf), (self.tail_start, &self.tail)] {
            if pos >= start && pos - start < bytes.len() as u64 {
                return Some(&bytes[(pos - start) as usize..]);
            }
        }
        None
    }
}

impl BufRead for RangedObject {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos >= self.size {
            return Ok(&[]);
        }
        if self.held().is_none() {
            self.fetch()?;
        }
        Ok(self.held().unwrap_or_default())
    }

    fn consume(&mut self, amt: usize) {
        self.pos = self.pos.saturating_add(amt as u64);
    }
}

impl Read for RangedObject {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        let held = self.fill_buf()?;
        let n = held.len().min(out.len());
        out[..n].copy_from_slice(&held[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl Seek for RangedObject {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(at) => Some(at),
            SeekFrom::End(delta) => self.size.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.pos.checked_add_signed(delta),
        };
        // Buffers stay: a seek back into what was just fetched costs nothing.
        self.pos = target.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "seek to {to:?} is outside {} ({} bytes)",
                    self.path, self.size
                ),
            )
        })?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::PutPayload;
    use object_store::memory::InMemory;

    struct Fixture {
        rt: tokio::runtime::Runtime,
        store: Arc<dyn ObjectStore>,
        data: Vec<u8>,
        fetched: Arc<AtomicU64>,
    }

    fn fixture(len: usize) -> Fixture {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
        rt.block_on(store.put(&Path::from("o"), PutPayload::from(data.clone())))
            .expect("put");
        Fixture {
            rt,
            store,
            data,
            fetched: Arc::default(),
        }
    }

    impl Fixture {
        fn object(&self, path: &str, size: u64) -> RangedObject {
            RangedObject::new(
                self.rt.handle().clone(),
                self.store.clone(),
                Path::from(path),
                size,
                self.fetched.clone(),
            )
        }

        fn fetched(&self) -> u64 {
            self.fetched.load(Ordering::Relaxed)
        }
    }

    #[test]
    fn windows_start_small_and_double_while_sequential() {
        let f = fixture(40 << 20);
        let mut o = f.object("o", f.data.len() as u64);
        let mut one = [0u8; 1];
        o.read_exact(&mut one).expect("read");
        assert_eq!(f.fetched(), FIRST_WINDOW);
        let mut got = vec![0u8; (3 * FIRST_WINDOW) as usize];
        o.read_exact(&mut got).expect("read");
        assert_eq!(f.fetched(), FIRST_WINDOW * 7, "16 + 32 + 64 KiB");
        o.seek(SeekFrom::Start(0)).expect("seek");
        let before = f.fetched();
        let mut all = Vec::new();
        o.read_to_end(&mut all).expect("read all");
        assert_eq!(all, f.data);
        // Going back to 0 left the 64 KiB window, so all is fetched once more.
        assert_eq!(f.fetched() - before, f.data.len() as u64);
    }

    #[test]
    fn the_window_stops_growing_at_the_maximum() {
        let f = fixture(40 << 20);
        let mut o = f.object("o", f.data.len() as u64);
        let doubling: u64 = (0..10).map(|i| FIRST_WINDOW << i).sum();
        let mut sink = vec![0u8; doubling as usize + 1];
        o.read_exact(&mut sink).expect("read");
        assert_eq!(f.fetched(), doubling + MAX_WINDOW);
        assert_eq!(sink[..], f.data[..sink.len()]);
    }

    #[test]
    fn a_seek_restarts_small_and_reads_reach_exact_positions() {
        let f = fixture(1 << 20);
        let mut o = f.object("o", f.data.len() as u64);
        for at in [500_000u64, 3, 1_048_575, 70_000, 70_001] {
            o.seek(SeekFrom::Start(at)).expect("seek");
            let mut b = [0u8; 1];
            o.read_exact(&mut b).expect("read");
            assert_eq!(b[0], f.data[at as usize], "at {at}");
        }
        // 70_001 lay in the window fetched for 70_000.
        assert_eq!(f.fetched(), 3 * FIRST_WINDOW + 1);
        assert_eq!(o.seek(SeekFrom::End(-1)).expect("seek"), (1 << 20) - 1);
        assert_eq!(o.seek(SeekFrom::Current(-5)).expect("seek"), (1 << 20) - 6);
        assert!(o.seek(SeekFrom::Current(-(1 << 21))).is_err());
    }

    #[test]
    fn windows_never_pass_the_end_and_reads_there_return_nothing() {
        let f = fixture(100_000);
        let mut o = f.object("o", f.data.len() as u64);
        o.seek(SeekFrom::End(-10)).expect("seek");
        let mut all = Vec::new();
        o.read_to_end(&mut all).expect("read");
        assert_eq!(all, f.data[f.data.len() - 10..]);
        assert_eq!(f.fetched(), 10);
        o.seek(SeekFrom::Start(1 << 40))
            .expect("seek past the end is allowed");
        assert_eq!(o.read(&mut [0u8; 8]).expect("read"), 0);
        assert_eq!(f.fetched(), 10);
    }

    #[test]
    fn the_tail_is_fetched_once_and_windows_stop_before_it() {
        let f = fixture(200_000);
        let mut o = f.object("o", f.data.len() as u64);
        o.preload_tail(50_000).expect("tail");
        assert_eq!(f.fetched(), 50_000);
        for at in [199_999u64, 150_000, 160_000] {
            o.seek(SeekFrom::Start(at)).expect("seek");
            let mut b = [0u8; 1];
            o.read_exact(&mut b).expect("read");
            assert_eq!(b[0], f.data[at as usize]);
        }
        assert_eq!(f.fetched(), 50_000);
        o.seek(SeekFrom::Start(0)).expect("seek");
        let mut all = Vec::new();
        o.read_to_end(&mut all).expect("read");
        assert_eq!(all, f.data);
        assert_eq!(f.fetched(), 200_000);
    }

    #[test]
    fn a_shared_cap_bounds_the_window_and_can_change() {
        let f = fixture(8 << 20);
        let mut o = f.object("o", f.data.len() as u64);
        let cap = WindowCap::default();
        o.set_window_cap(cap.clone());
        cap.set(3 * FIRST_WINDOW);
        let mut sink = vec![0u8; (FIRST_WINDOW * 6) as usize];
        o.read_exact(&mut sink).expect("read");
        // 16 KiB, 32 KiB, then 48 KiB (not 64) and 48 KiB again...
        assert_eq!(o.window, 3 * FIRST_WINDOW);
        cap.set(0);
        let mut more = vec![0u8; 2 << 20];
        o.read_exact(&mut more).expect("read");
        assert!(o.window > 3 * FIRST_WINDOW, "{}", o.window);
        assert_eq!(sink[..], f.data[..sink.len()]);
    }

    #[test]
    fn a_limit_caps_windows_until_read_past() {
        let f = fixture(1 << 20);
        let mut o = f.object("o", f.data.len() as u64);
        let limit = o.fetch_limit();
        limit.set(20_000);
        let mut b = vec![0u8; 20_000];
        o.read_exact(&mut b).expect("read");
        assert_eq!(
            f.fetched(),
            20_000,
            "16 KiB, then only the 3616 bytes up to the limit"
        );
        // Past the limit: the hint is dropped and the window starts small again.
        o.read_exact(&mut [0u8; 1]).expect("read");
        assert_eq!(f.fetched(), 20_000 + FIRST_WINDOW);
        assert_eq!(limit.get(), None);
    }

    #[test]
    fn short_or_missing_objects_are_errors_naming_them() {
        let f = fixture(1000);
        // Recorded as longer than it is.
        let mut o = f.object("o", 5000);
        let mut all = Vec::new();
        let e = o.read_to_end(&mut all).expect_err("short object");
        assert!(is_fetch_error(&e), "{e}");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("of o:"), "{e}");
        assert!(e.to_string().contains("shorter than the 5000 bytes"), "{e}");

        let mut o = f.object("nope/missing", 10);
        let e = o.read(&mut [0u8; 4]).expect_err("missing object");
        assert!(
            is_fetch_error(&e) && e.kind() == io::ErrorKind::NotFound,
            "{e:?}"
        );
        assert!(e.to_string().contains("nope/missing"), "{e}");
    }
}
