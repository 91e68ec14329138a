//! The pack reader's tests (a sibling file: they are longer than the reader):
//! round trips at any offset on a local and an in-memory store, how much each
//! kind of read fetches (counted in the process, no server), and crafted or
//! damaged packs refused with the pack and target named. The check that the
//! zstd CLI decodes a pack is an end-to-end test (`tests/e2e/pack_cli.rs`).

use super::super::seek_table::{FRAME_SIZE, MAX_FRAMES};
use super::decode::ZSTD_BLOCK;
use super::open::TAIL_PRELOAD;
use super::*;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::{ObjectStoreExt, PutPayload};
use std::sync::atomic::Ordering;
use tokio::runtime::Runtime;

const JOB: &str = "web";
const TARGET: &str = "offsite";

fn pack_id(n: u32) -> String {
    format!("{n:032x}")
}

/// Deterministic incompressible bytes.
fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

/// Bytes that compress some but not entirely, like a tar of mixed files.
fn mixed(len: usize) -> Vec<u8> {
    let noise = random(len, 7);
    (0..len)
        .map(|i| {
            if (i / 4096) % 3 == 0 {
                noise[i]
            } else {
                b"coffer keeps backups "[i % 21] ^ (i / 65536) as u8
            }
        })
        .collect()
}

/// A seekable zstd stream of `payload` as coffer's writer lays it out.
fn seekable(payload: &[u8]) -> Vec<u8> {
    let mut z = zstd::bulk::Compressor::new(3).expect("compressor");
    z.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
        .expect("checksums");
    let mut table = SeekTable::new();
    let mut out = Vec::new();
    for frame in payload.chunks(FRAME_SIZE) {
        let c = z.compress(frame).expect("compress");
        table
            .push(c.len() as u64, frame.len() as u64)
            .expect("frame");
        out.extend_from_slice(&c);
    }
    out.extend(table.to_skippable_frame());
    out
}

fn encrypt(plain: &[u8], to: &age::x25519::Identity) -> Vec<u8> {
    let recipient = to.to_public();
    let enc = age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
        .expect("recipients");
    let mut out = Vec::new();
    let mut w = enc.wrap_output(&mut out).expect("wrap");
    w.write_all(plain).expect("encrypt");
    w.finish().expect("finish");
    out
}

struct Env {
    rt: Runtime,
    store: Arc<dyn ObjectStore>,
    identity: age::x25519::Identity,
    fetched: Arc<AtomicU64>,
    _dir: Option<tempfile::TempDir>,
}

fn env(local: bool) -> Env {
    let (store, dir): (Arc<dyn ObjectStore>, _) = if local {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = LocalFileSystem::new_with_prefix(dir.path()).expect("local store");
        (Arc::new(fs), Some(dir))
    } else {
        (Arc::new(InMemory::new()), None)
    };
    Env {
        rt: Runtime::new().expect("runtime"),
        store,
        identity: age::x25519::Identity::generate(),
        fetched: Arc::default(),
        _dir: dir,
    }
}

impl Env {
    /// Stores `payload` as pack `id`; returns the stored size.
    fn put_pack(&self, id: &str, payload: &[u8]) -> u64 {
        self.put_stored(id, encrypt(&seekable(payload), &self.identity))
    }

    fn put_stored(&self, id: &str, stored: Vec<u8>) -> u64 {
        let len = stored.len() as u64;
        self.rt
            .block_on(
                self.store
                    .put(&pack_path(JOB, id), PutPayload::from(stored)),
            )
            .expect("put");
        len
    }

    fn reader_for(&self, identity: &age::x25519::Identity) -> PackReader<'static> {
        // Leaked: a test's few readers borrow their identities for good.
        let ids: Identities = vec![Box::new(identity.clone())];
        let ids: &'static Identities = Box::leak(Box::new(ids));
        PackReader::new(
            self.rt.handle().clone(),
            self.store.clone(),
            TARGET,
            JOB,
            ids,
            self.fetched.clone(),
        )
    }

    fn reader(&self) -> PackReader<'static> {
        self.reader_for(&self.identity)
    }

    fn fetched(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }
}

fn read(r: &mut PackReader, id: &str, stored: u64, offset: u64, size: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let hash = r
        .read(id, stored, offset, size, &mut out)
        .unwrap_or_else(|e| panic!("read {offset}+{size}: {e}"));
    assert_eq!(out.len() as u64, size);
    assert_eq!(hash, blake3::hash(&out), "hash of what was written");
    out
}

fn read_err(r: &mut PackReader, id: &str, stored: u64, offset: u64, size: u64) -> io::Error {
    let mut out = Vec::new();
    match r.read(id, stored, offset, size, &mut out) {
        Ok(_) => panic!("read {offset}+{size} of {id} succeeded"),
        Err(e) => e,
    }
}

fn pack_error(e: &io::Error) -> &PackError {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<PackError>())
        .unwrap_or_else(|| panic!("not a PackError: {e:?}"))
}

#[test]
fn contents_round_trip_at_any_offset_on_both_stores() {
    const F: u64 = FRAME_SIZE as u64;
    let payload = mixed(3 * FRAME_SIZE + 12_345);
    let len = payload.len() as u64;
    let cases = [
        (0, 1),
        (0, 100),
        (5, 1000),
        (F - 10, 20),
        (F, 1),
        (F - 1, F + 2),
        (len - 1, 1),
        (len - 1000, 1000),
        (123, 0),
        (F + 77, 5000),
        (2 * F + 3, 40_000),
        (10, 10),
        (0, len),
        (len - 12_345, 12_345),
        (5 * F / 2, 1),
    ];
    for local in [false, true] {
        let env = env(local);
        let id = pack_id(1);
        let stored = env.put_pack(&id, &payload);
        let mut r = env.reader();
        for &(offset, size) in &cases {
            let got = read(&mut r, &id, stored, offset, size);
            let want = &payload[offset as usize..(offset + size) as usize];
            assert!(got == want, "{offset}+{size} on local={local}");
        }
        // Each case again on a reader with nothing cached or open.
        for &(offset, size) in &cases {
            let got = read(&mut env.reader(), &id, stored, offset, size);
            assert!(got == payload[offset as usize..(offset + size) as usize]);
        }
    }
}

#[test]
fn an_empty_content_needs_no_pack() {
    let env = env(false);
    let mut r = env.reader();
    let got = read(&mut r, &pack_id(9), 12_345, 77, 0);
    assert!(got.is_empty());
    assert_eq!(env.fetched(), 0);
}

#[test]
fn reading_in_order_fetches_the_pack_about_once() {
    let payload = mixed(10 * FRAME_SIZE + 4321);
    let env = env(false);
    let id = pack_id(2);
    let stored = env.put_pack(&id, &payload);
    // Contents of uneven sizes one after the other, as a tar of many files.
    let mut contents = Vec::new();
    let (mut at, mut step) = (0u64, 1u64);
    while at < payload.len() as u64 {
        let size = (step * 7919 % 300_000).min(payload.len() as u64 - at);
        contents.push((at, size));
        at += size + 512;
        step += 1;
    }
    contents.retain(|&(o, s)| o + s <= payload.len() as u64);
    let mut r = env.reader();
    for &(offset, size) in &contents {
        let got = read(&mut r, &id, stored, offset, size);
        assert!(got == payload[offset as usize..(offset + size) as usize]);
    }
    let in_order = env.fetched();
    eprintln!(
        "in-order read of {} contents: fetched {in_order} bytes of a {stored}-byte pack",
        contents.len()
    );
    assert!(
        in_order <= stored + 16 * 1024,
        "fetched {in_order} for a pack of {stored}"
    );
    assert!(
        in_order >= stored * 9 / 10,
        "fetched {in_order}: too little?"
    );

    // The same without a kept decoder, for contrast.
    env.fetched.store(0, Ordering::Relaxed);
    for &(offset, size) in &contents {
        read(&mut env.reader(), &id, stored, offset, size);
    }
    eprintln!("the same with a new reader per content: {}", env.fetched());
    assert!(env.fetched() > 2 * in_order);
}

#[test]
fn a_small_read_from_a_big_pack_fetches_little() {
    let payload = random(64 << 20, 1);
    let env = env(false);
    let id = pack_id(3);
    let stored = env.put_pack(&id, &payload);
    const MIB: u64 = 1 << 20;
    for offset in [
        32 * MIB,
        32 * MIB + 500_000,
        33 * MIB - 2048,
        33 * MIB - 4096,
    ] {
        env.fetched.store(0, Ordering::Relaxed);
        let got = read(&mut env.reader(), &id, stored, offset, 4096);
        assert!(got == payload[offset as usize..offset as usize + 4096]);
        let fetched = env.fetched();
        eprintln!("4 KiB at {offset} of a {stored}-byte pack: fetched {fetched} bytes");
        assert!(fetched <= 4096 + 2 * MIB, "fetched {fetched}");
    }
}

#[test]
fn a_wrong_identity_is_named_as_such() {
    let env = env(false);
    let id = pack_id(4);
    let stored = env.put_pack(&id, &mixed(100_000));
    let other = age::x25519::Identity::generate();
    let e = read_err(&mut env.reader_for(&other), &id, stored, 0, 10);
    assert!(
        matches!(pack_error(&e), PackError::NotForIdentity { .. }),
        "{e}"
    );
    assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
    let msg = e.to_string();
    assert!(msg.contains("not encrypted to this identity"), "{msg}");
    assert!(
        msg.contains("1 recipient (1 X25519), none of them this identity"),
        "{msg}"
    );
    assert!(msg.contains(&id) && msg.contains(TARGET), "{msg}");
}

#[test]
fn a_flipped_byte_is_an_error_never_wrong_bytes() {
    let payload = mixed(2 * FRAME_SIZE + 5000);
    let env = env(false);
    let good = encrypt(&seekable(&payload), &env.identity);
    let n = good.len();
    let header_end = good
        .windows(5)
        .position(|w| w == b"\n--- ")
        .expect("mac line");
    for (i, at) in [10, header_end + 10, header_end + 200, n / 2, n - 100, n - 1]
        .into_iter()
        .enumerate()
    {
        let mut bad = good.clone();
        bad[at] ^= 0x20;
        let id = pack_id(100 + i as u32);
        let stored = env.put_stored(&id, bad);
        let e = read_err(&mut env.reader(), &id, stored, 0, payload.len() as u64);
        eprintln!("byte {at} flipped: {e}");
        assert!(e.to_string().contains(&id), "{e}");
        if at > header_end + 100 {
            assert!(matches!(pack_error(&e), PackError::Damaged { .. }), "{e}");
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        }
    }
}

/// Encrypts a hand-made stream: frames of `payload`, then `table` as given.
fn crafted(env: &Env, id: &str, payload: &[u8], patch: impl FnOnce(&mut Vec<u8>)) -> u64 {
    let mut plain = seekable(payload);
    patch(&mut plain);
    env.put_stored(id, encrypt(&plain, &env.identity))
}

fn set_u32(plain: &mut [u8], from_end: usize, v: u32) {
    let at = plain.len() - from_end;
    plain[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn crafted_seek_tables_are_refused() {
    let payload = mixed(2 * FRAME_SIZE + 100);
    let env = env(false);
    let damaged = |e: &io::Error, needle: &str| {
        assert!(matches!(pack_error(e), PackError::Damaged { .. }), "{e}");
        assert!(e.to_string().contains(needle), "{e}");
    };
    // Footer: Number_Of_Frames at 9 from the end. Entries: 3 frames, so the
    // first entry starts 9 + 24 bytes from the end.
    let id = pack_id(20);
    let stored = crafted(&env, &id, &payload, |p| set_u32(p, 9, u32::MAX));
    let e = read_err(&mut env.reader(), &id, stored, 0, 10);
    damaged(&e, "4294967295 frames, more than");

    // Allowed count, but a 128 MiB table in a 1 MiB stream: refused before allocating.
    let id = pack_id(21);
    let stored = crafted(&env, &id, &payload, |p| set_u32(p, 9, MAX_FRAMES));
    let e = read_err(&mut env.reader(), &id, stored, 0, 10);
    damaged(&e, "needs 134217745 bytes but the whole zstd stream is");

    let id = pack_id(22);
    let stored = crafted(&env, &id, &payload, |p| {
        let at = p.len() - 33;
        let c = u32::from_le_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]]);
        set_u32(p, 33, c + 1);
    });
    let e = read_err(&mut env.reader(), &id, stored, 0, 10);
    damaged(&e, "add up to");

    // Sizes that add up, but a last frame claiming 100 bytes it does not hold.
    let id = pack_id(23);
    let stored = crafted(&env, &id, &payload, |p| set_u32(p, 13, 200));
    let end = payload.len() as u64 + 100;
    let e = read_err(&mut env.reader(), &id, stored, end - 50, 50);
    damaged(&e, "decode to fewer bytes");

    // No seek table at all.
    let id = pack_id(24);
    let stored = crafted(&env, &id, &payload, |p| {
        p.truncate(p.len() - (8 + 24 + 9));
    });
    let e = read_err(&mut env.reader(), &id, stored, 0, 10);
    damaged(&e, "does not end with a seek table");

    // A valid pack asked for more than it holds.
    let id = pack_id(25);
    let stored = env.put_pack(&id, &payload);
    let len = payload.len() as u64;
    for (offset, size) in [(len - 10, 11), (len, 1), (u64::MAX - 5, 5)] {
        let e = read_err(&mut env.reader(), &id, stored, offset, size);
        assert!(matches!(pack_error(&e), PackError::TooShort { .. }), "{e}");
        assert!(e.to_string().contains(&format!("holds {len} bytes")), "{e}");
    }
    let e = read_err(&mut env.reader(), &id, stored, u64::MAX, 2);
    assert!(
        matches!(pack_error(&e), PackError::BadRequest { .. }),
        "{e}"
    );
}

#[test]
fn a_frame_needing_a_big_window_is_refused() {
    let env = env(false);
    let payload = mixed(10 << 20);
    let mut z = zstd::bulk::Compressor::new(3).expect("compressor");
    z.set_parameter(zstd::zstd_safe::CParameter::WindowLog(24))
        .expect("window");
    let mut plain = z.compress(&payload).expect("compress");
    let mut table = SeekTable::new();
    table
        .push(plain.len() as u64, payload.len() as u64)
        .expect("frame");
    plain.extend(table.to_skippable_frame());
    let id = pack_id(50);
    let stored = env.put_stored(&id, encrypt(&plain, &env.identity));
    let e = read_err(&mut env.reader(), &id, stored, 0, 10);
    assert!(matches!(pack_error(&e), PackError::Damaged { .. }), "{e}");
    assert!(e.to_string().contains("too much memory"), "{e}");
}

#[test]
fn planned_reads_skip_the_frames_between_and_stop_at_the_need() {
    let payload = random(8 * FRAME_SIZE + 10, 7);
    let env = env(false);
    let id = pack_id(80);
    let stored = env.put_pack(&id, &payload);
    // Two files 3 frames apart, as a restore of a snapshot whose pack holds
    // files deleted since between them (within REUSE_DISTANCE).
    let wanted = [(100u64, 50_000u64), (3 * FRAME_SIZE as u64 + 1000, 50_000)];
    let fetch = |plan: bool| {
        env.fetched.store(0, Ordering::Relaxed);
        let mut r = env.reader();
        for &(offset, size) in wanted.iter().filter(|_| plan) {
            r.plan(&id, offset, size);
        }
        for &(offset, size) in &wanted {
            let got = read(&mut r, &id, stored, offset, size);
            assert!(got == payload[offset as usize..(offset + size) as usize]);
        }
        env.fetched()
    };
    let (unplanned, planned) = (fetch(false), fetch(true));
    eprintln!("fetched {unplanned} bytes unplanned, {planned} planned");
    // Each read: the chunks up to its end, a zstd block and a chunk of margin;
    // the header and the tail once.
    let each = 50_000 + 1000 + ZSTD_BLOCK + 2 * (AGE_CHUNK + AGE_TAG);
    assert!(planned <= 2 * each + TAIL_PRELOAD + 16 * 1024, "{planned}");
    assert!(unplanned > 3 * FRAME_SIZE as u64, "{unplanned}");
}

#[test]
fn reads_may_alternate_between_packs() {
    let env = env(false);
    let (a, b) = (mixed(2 * FRAME_SIZE + 10), random(FRAME_SIZE + 10, 5));
    let (ida, idb) = (pack_id(60), pack_id(61));
    let (sa, sb) = (env.put_pack(&ida, &a), env.put_pack(&idb, &b));
    let mut r = env.reader();
    let mut opens = Vec::new();
    // Forward in each, as a restore in path order reads packs of several runs.
    for round in 0..3u64 {
        for (id, stored, payload) in [(&ida, sa, &a), (&idb, sb, &b)] {
            let before = env.fetched();
            let offset = 1000 + round * 20_000;
            let got = read(&mut r, id, stored, offset, 5000);
            assert!(got == payload[offset as usize..offset as usize + 5000]);
            opens.push(env.fetched() - before);
        }
    }
    // Both stay open: going back to a pack fetches neither its header nor its
    // tail again, only what its decoder had not fetched yet.
    for later in &opens[2..] {
        assert!(*later + TAIL_PRELOAD <= opens[0].min(opens[1]), "{opens:?}");
    }
    // A reader holds at most OPEN_PACKS packs open.
    for n in 0..(OPEN_PACKS as u32 + 2) {
        let id = pack_id(70 + n);
        let stored = env.put_pack(&id, &b);
        read(&mut r, &id, stored, 0, 100);
    }
    assert_eq!(r.open.len(), OPEN_PACKS);
}

#[test]
fn missing_or_short_packs_name_the_pack_and_target() {
    let env = env(true);
    let id = pack_id(30);
    let e = read_err(&mut env.reader(), &id, 5000, 0, 10);
    assert!(matches!(pack_error(&e), PackError::Fetch { .. }), "{e}");
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    let msg = e.to_string();
    assert!(msg.contains(&id) && msg.contains(TARGET), "{msg}");

    let stored = env.put_pack(&id, &mixed(300_000));
    let e = read_err(&mut env.reader(), &id, stored + 10, 0, 10);
    assert!(matches!(pack_error(&e), PackError::Fetch { .. }), "{e}");
    assert!(e.to_string().contains("shorter than"), "{e}");

    let e = read_err(&mut env.reader(), "not-a-pack", stored, 0, 10);
    assert!(
        matches!(pack_error(&e), PackError::BadRequest { .. }),
        "{e}"
    );
}

#[test]
fn an_endless_age_header_is_refused() {
    let env = env(false);
    let id = pack_id(40);
    let mut junk = b"age-encryption.org/v1\n".to_vec();
    junk.extend(std::iter::repeat_n(b"-> X25519 abc\n".as_slice(), 10_000).flatten());
    let stored = env.put_stored(&id, junk);
    let e = read_err(&mut env.reader(), &id, stored, 0, 10);
    assert!(e.to_string().contains("does not end within"), "{e}");
    assert!(env.fetched() < 2 * TAIL_PRELOAD + HEADER_MAX as u64);
}

#[test]
fn packs_live_where_the_writer_puts_them() {
    let id = pack_id(0xabc);
    assert!(is_pack_id(&id));
    assert_eq!(
        pack_path("web", &id).to_string(),
        format!("web/packs/{id}.tar.zst.age")
    );
    assert!(!is_pack_id(&id.to_uppercase()));
    assert!(!is_pack_id(&id[1..]));
    assert!(!is_pack_id(&format!("{id}0")));
    assert!(!is_pack_id("0123456789abcdef0123456789abcdeg"));
    assert!(!is_pack_id("../0123456789abcdef0123456789abc"));
}

#[test]
fn a_reader_can_move_to_a_worker_thread() {
    fn send<T: Send>() {}
    send::<PackReader>();
}
