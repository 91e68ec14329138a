//! Unit tests of `stable_read`, apart because with them the file would pass 400 lines.

use super::*;

fn reader(buf: usize) -> (tempfile::TempDir, StableReader) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = StableReader::new(buf, tmp.path().join("scratch"));
    (tmp, r)
}

fn emitted(r: &mut StableReader, read: &Read) -> Vec<u8> {
    let mut out = Vec::new();
    r.emit(read, &mut |b| {
        out.extend_from_slice(b);
        Ok(())
    })
    .expect("emit");
    out
}

fn bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Captures the file at `path`, calling `change(try, path)` before each read.
fn capture(
    r: &mut StableReader,
    path: &std::path::Path,
    mut change: impl FnMut(u32, &std::path::Path),
) -> (Capture, u64) {
    let f = File::open(path).expect("open");
    let md = crate::fs::stat::Stat::of(&f).expect("stat");
    let mut n = 0;
    let c = r
        .capture_with(&f, md, &mut n, &Progress::default(), &mut |t| {
            change(t, path)
        })
        .expect("capture");
    (c, n)
}

fn held(c: Capture) -> Read {
    match c {
        Capture::Held(r) => r,
        Capture::Direct { why, .. } => panic!("streamed directly: {why}"),
    }
}

fn truncate(path: &std::path::Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(len))
        .expect("truncate");
}

#[test]
fn a_quiet_file_is_read_once_into_the_buffer_or_the_stage() {
    for (len, held_in) in [
        (0, Held::Buffer),
        (4096, Held::Buffer),
        (5000, Held::Staged),
    ] {
        let (tmp, mut r) = reader(4096);
        let path = tmp.path().join("f");
        std::fs::write(&path, bytes(len)).expect("write");
        let (c, n) = capture(&mut r, &path, |_, _| {});
        let got = held(c);
        assert_eq!(
            (got.len, got.tries, got.stable, got.held),
            (len as u64, 1, true, held_in)
        );
        assert_eq!(got.hash, blake3::hash(&bytes(len)));
        assert_eq!(n, len as u64);
        assert_eq!(emitted(&mut r, &got), bytes(len));
    }
}

/// The case: truncated while read. The first read comes up short, the
/// second is of the file as it is now; nothing is padded.
#[test]
fn a_file_truncated_during_its_read_is_read_again_at_its_new_size() {
    for len in [4000usize, 20_000] {
        let (tmp, mut r) = reader(4096);
        let path = tmp.path().join("f");
        std::fs::write(&path, bytes(len)).expect("write");
        let (c, n) = capture(&mut r, &path, |t, p| {
            if t == 1 {
                truncate(p, 1000);
            }
        });
        let got = held(c);
        assert_eq!((got.len, got.tries, got.stable), (1000, 2, true), "{len}");
        assert_eq!(emitted(&mut r, &got), bytes(1000));
        assert_eq!(got.hash, blake3::hash(&bytes(1000)));
        assert_eq!(n, 2000, "both reads are counted");
    }
}

/// Changed during every read: held as last read, at the size it was read with,
/// and not stable.
#[test]
fn a_file_that_keeps_changing_is_held_as_last_read_and_unstable() {
    for len in [3000usize, 9000] {
        let (tmp, mut r) = reader(4096);
        let path = tmp.path().join("f");
        std::fs::write(&path, bytes(len)).expect("write");
        let mut size = len as u64;
        let (c, _) = capture(&mut r, &path, |_, p| {
            size -= 100;
            truncate(p, size);
        });
        let got = held(c);
        assert_eq!((got.tries, got.stable), (MAX_TRIES, false), "{len}");
        // The last try's stat said size + 100; it read `size` bytes, no zeros.
        assert_eq!(got.len, size);
        assert_eq!(emitted(&mut r, &got), bytes(size as usize));
    }
}

#[test]
fn a_file_growing_during_its_read_is_read_again() {
    let (tmp, mut r) = reader(4096);
    let path = tmp.path().join("f");
    std::fs::write(&path, bytes(3000)).expect("write");
    let (c, _) = capture(&mut r, &path, |t, p| {
        if t == 1 {
            std::fs::write(p, bytes(3500)).expect("rewrite");
        }
    });
    let got = held(c);
    assert_eq!((got.len, got.tries, got.stable), (3500, 2, true));
    assert_eq!(emitted(&mut r, &got), bytes(3500));
}

#[test]
fn a_file_over_the_stage_limit_is_streamed_directly_and_read_as_it_is() {
    let (tmp, mut r) = reader(4096);
    let path = tmp.path().join("sparse");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .expect("create");
    f.write_all_at(&bytes(5000), 0).expect("write");
    f.set_len(STAGE_MAX + 1).expect("sparse");
    let (c, n) = capture(&mut r, &path, |_, _| {});
    let Capture::Direct { md, why } = c else {
        panic!("a file over STAGE_MAX was held");
    };
    assert!(why.contains("too large"), "{why}");
    assert!(r.stage_max <= STAGE_MAX && r.stage_max > 0);
    assert_eq!((md.len(), n), (STAGE_MAX + 1, 0));
    // Shrunk after its header: read_direct returns what is there.
    f.set_len(5000).expect("truncate");
    let mut out = Vec::new();
    let (len, hash) = r
        .read_direct(&f, md.len(), &mut 0, &Progress::default(), &mut |b| {
            out.extend_from_slice(b);
            Ok(())
        })
        .expect("read");
    assert_eq!((len, &out), (5000, &bytes(5000)));
    assert_eq!(hash, blake3::hash(&out));
}
