//! One object through the whole pipeline: `ObjectWriter` to two in-memory targets,
//! then back through `ObjectReader`, `decrypt` and `HoldBack`, with an age identity
//! made for the test. Over 400 lines because it is a list of cases around one
//! set of helpers (write, tamper, read back); each case is short.

use super::store::{Fail, Recording};
use crate::format::ObjectRecord;
use crate::keys::{Identities, Recipients};
use crate::pipeline::read::{HoldBack, ObjectReader, Pumped, decrypt};
use crate::pipeline::{Finished, ObjectWriter};
use coffer_config::Compression;
use coffer_plugins::{PartPlan, Target};
use object_store::path::Path as ObjPath;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

const MIB: usize = 1 << 20;
/// What `HoldBack` keeps until the object is verified (read.rs's `HOLD`).
const HOLD: usize = MIB;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

struct Keys {
    recipients: Arc<Recipients>,
    identities: Identities,
}

fn keys() -> Keys {
    let id = age::x25519::Identity::generate();
    Keys {
        recipients: Arc::new(vec![Box::new(id.to_public())]),
        identities: vec![Box::new(id)],
    }
}

/// Incompressible bytes (xorshift), so that the stored object is as large as the
/// plaintext and spans several chunks and parts.
fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn plan(part_size: u64) -> PartPlan {
    PartPlan {
        part_size,
        max_parts: 10_000,
        parts_in_flight: 2,
    }
}

fn path() -> ObjPath {
    ObjPath::from("job/20240101T000000Z-0a1b/files.tar.zst.age")
}

fn start(rt: &Runtime, targets: &[Target], keys: &Keys) -> ObjectWriter {
    ObjectWriter::start(
        rt.handle(),
        targets,
        &path(),
        keys.recipients.clone(),
        Compression {
            level: 3,
            threads: 1,
        },
        Arc::new(AtomicBool::new(false)),
    )
    .expect("writer started")
}

fn write_all(w: &mut ObjectWriter, plain: &[u8]) -> io::Result<()> {
    // In pieces, as a source writes.
    for piece in plain.chunks(100_000) {
        w.write_all(piece)?;
    }
    Ok(())
}

fn write(rt: &Runtime, targets: &[Target], keys: &Keys, plain: &[u8]) -> Finished {
    let mut w = start(rt, targets, keys);
    write_all(&mut w, plain).expect("written");
    w.finish().expect("finished")
}

fn record(f: &Finished) -> ObjectRecord {
    ObjectRecord {
        key: "files.tar.zst.age".into(),
        source: Some("files".into()),
        plaintext_size: f.plaintext_size,
        stored_size: f.stored_size,
        blake3: f.blake3.clone(),
        facts: Default::default(),
    }
}

/// The plaintext as `decrypt` gives it, or the error that stopped it.
fn read_back(
    rt: &Runtime,
    target: &Target,
    rec: &ObjectRecord,
    keys: &Keys,
) -> io::Result<Vec<u8>> {
    let reader = ObjectReader::open(rt.handle(), target, &path(), Some(rec))?;
    let mut plain = decrypt(reader, &keys.identities)?;
    let mut out = Vec::new();
    plain.read_to_end(&mut out)?;
    Ok(out)
}

/// The way a database restore reads: what `HoldBack` released, and how it ended.
/// `pumped` puts the decryption on its own thread as restore does; without it
/// nothing but `HoldBack` stands between a damaged object's end and the reader
/// (`Pumped` drops a partly filled chunk on an error).
fn read_held_back(
    rt: &Runtime,
    target: &Target,
    rec: &ObjectRecord,
    keys: &Keys,
    pumped: bool,
) -> (Vec<u8>, io::Result<()>) {
    let reader = ObjectReader::open(rt.handle(), target, &path(), Some(rec)).expect("opened");
    let (verified, label) = (reader.verified_flag(), reader.label().to_string());
    let plain = decrypt(reader, &keys.identities).expect("an age file");
    let inner: Box<dyn Read> = if pumped {
        Box::new(Pumped::spawn(plain).expect("decrypt thread"))
    } else {
        Box::new(plain)
    };
    let mut held = HoldBack::from_parts(inner, verified, label);
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match held.read(&mut buf) {
            Ok(0) => return (out, Ok(())),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return (out, Err(e)),
        }
    }
}

fn stored(rt: &Runtime, store: &Recording) -> Option<Vec<u8>> {
    rt.block_on(store.bytes(&path()))
}

#[test]
fn objects_reach_both_targets_identical_and_read_back() {
    let rt = runtime();
    let keys = keys();
    let part = MIB;
    // Empty, smaller than a chunk, and several chunks and parts.
    for len in [0, 1000, 5 * MIB + 12_345] {
        let plain = random(len, len as u64 + 1);
        let (a, b) = (Recording::new(Fail::Never), Recording::new(Fail::Never));
        // Different part plans, same bytes.
        let targets = [
            a.target("a", plan(part as u64)),
            b.target("b", plan(3 * part as u64)),
        ];
        let f = write(&rt, &targets, &keys, &plain);
        assert_eq!(f.plaintext_size, len as u64);
        let bytes_a = stored(&rt, &a).expect("a holds the object");
        let bytes_b = stored(&rt, &b).expect("b holds the object");
        assert!(bytes_a == bytes_b, "the targets differ for {len} bytes");
        assert!(
            bytes_a.starts_with(b"age-encryption.org/v1\n"),
            "not an age file"
        );
        assert_eq!(bytes_a.len() as u64, f.stored_size, "{len} bytes");
        assert_eq!(blake3::hash(&bytes_a).to_hex().to_string(), f.blake3);
        for ((result, store), part_size) in f.targets.iter().zip([&a, &b]).zip([part, 3 * part]) {
            let up = result.as_ref().expect("uploaded");
            let sizes = store.log.part_sizes();
            assert_eq!(up.bytes, f.stored_size);
            assert_eq!(up.parts as usize, sizes.len());
            assert_eq!(up.parts as usize, bytes_a.len().div_ceil(part_size).max(1));
            assert_eq!(Some(up.largest_part as usize), sizes.iter().copied().max());
            assert_eq!((store.log.completed(), store.log.aborted()), (1, 0));
        }
        let rec = record(&f);
        for t in &targets {
            let back = read_back(&rt, t, &rec, &keys).expect("read back");
            assert!(back == plain, "{len} bytes from {} differ", t.name);
            let (held, end) = read_held_back(&rt, t, &rec, &keys, true);
            end.expect("a verified object reads to its end");
            assert!(
                held == plain,
                "{len} bytes through HoldBack from {} differ",
                t.name
            );
        }
    }
}

#[test]
fn another_identity_cannot_read_an_object() {
    let rt = runtime();
    let (ours, theirs) = (keys(), keys());
    let a = Recording::new(Fail::Never);
    let target = a.target("a", plan(MIB as u64));
    let f = write(&rt, std::slice::from_ref(&target), &ours, b"secret");
    let e = read_back(&rt, &target, &record(&f), &theirs).expect_err("wrong key");
    // Not damage: an object for other keys, with what its header shows.
    assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
    let not_for = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<crate::key_match::NotForIdentity>())
        .unwrap_or_else(|| panic!("not a NotForIdentity: {e}"));
    assert!(
        not_for
            .recipients
            .starts_with("1 recipient (1 X25519), none of them this identity"),
        "{not_for}"
    );
    assert!(
        e.to_string().contains("not encrypted to this identity"),
        "{e}"
    );
    let wrapped = anyhow::Error::from(e).context("restore");
    assert!(crate::key_match::not_for_identity(&wrapped).is_some());
}

#[test]
fn one_failing_target_leaves_the_other_complete() {
    let rt = runtime();
    let keys = keys();
    let plain = random(5 * MIB, 7);
    for fail in [Fail::Start, Fail::Part(2)] {
        let (bad, good) = (Recording::new(fail), Recording::new(Fail::Never));
        // The failing one first: results come back in the order given.
        let targets = [
            bad.target("bad", plan(MIB as u64)),
            good.target("good", plan(MIB as u64)),
        ];
        let f = write(&rt, &targets, &keys, &plain);
        let e = f.targets[0].as_ref().expect_err("bad failed");
        assert_eq!(e.target, "bad");
        assert!(
            !e.abandoned && e.message.contains("injected failure"),
            "{e:?}"
        );
        let up = f.targets[1].as_ref().expect("good uploaded");
        assert_eq!(up.bytes, f.stored_size);
        let bytes = stored(&rt, &good).expect("good holds the object");
        assert_eq!(bytes.len() as u64, f.stored_size);
        assert_eq!(blake3::hash(&bytes).to_hex().to_string(), f.blake3);
        assert!(read_back(&rt, &targets[1], &record(&f), &keys).expect("read") == plain);
        assert_eq!(
            stored(&rt, &bad),
            None,
            "{fail:?}: a failed target has no object"
        );
        assert_eq!(bad.log.completed(), 0);
        if fail == Fail::Part(2) {
            assert_eq!(bad.log.aborted(), 1, "the failed upload was not aborted");
        }
    }
}

/// Every target failing fails the object, and says why per target: a run's
/// report puts each target's own failure on that target, whether the failures
/// surfaced while the object was written or only as it was finished (a small
/// object ships nothing before its end, so the refused starts are found then).
#[test]
fn every_target_failing_fails_the_object_and_says_why_per_target() {
    let rt = runtime();
    let keys = keys();
    let (x, y) = (Recording::new(Fail::Start), Recording::new(Fail::Start));
    let targets = [
        x.target("x", plan(MIB as u64)),
        y.target("y", plan(MIB as u64)),
    ];
    let mut w = start(&rt, &targets, &keys);
    let failures = match write_all(&mut w, &random(1000, 3)) {
        Ok(()) => match w.finish_or_failures() {
            Ok(_) => panic!("no target holds it"),
            Err(u) => {
                let why = u.error.to_string();
                for name in ["target x", "target y"] {
                    assert!(why.contains(name), "{name} missing from: {why}");
                }
                u.failures
            }
        },
        Err(_) => w.abandon(),
    };
    let names: Vec<&str> = failures.iter().map(|e| e.target.as_str()).collect();
    assert_eq!(names, ["x", "y"], "{failures:?}");
    assert!(
        failures
            .iter()
            .all(|e| e.message.contains("injected failure"))
    );
    assert!(rt.block_on(x.paths()).is_empty() && rt.block_on(y.paths()).is_empty());
}

#[test]
fn abandon_leaves_no_object_on_any_target() {
    let rt = runtime();
    let keys = keys();
    // Nothing written yet, or several parts already uploaded.
    for len in [0, 3 * MIB] {
        let (a, b) = (Recording::new(Fail::Never), Recording::new(Fail::Never));
        let targets = [
            a.target("a", plan(MIB as u64)),
            b.target("b", plan(MIB as u64)),
        ];
        let mut w = start(&rt, &targets, &keys);
        write_all(&mut w, &random(len, 5)).expect("written");
        let errors = w.abandon();
        assert!(errors.is_empty(), "no target failed on its own: {errors:?}");
        for s in [&a, &b] {
            assert!(
                rt.block_on(s.paths()).is_empty(),
                "{len} bytes: an object was left"
            );
            assert_eq!((s.log.completed(), s.log.aborted()), (0, 1), "{len} bytes");
        }
    }
}

#[test]
fn a_writer_dropped_on_a_runtime_thread_aborts_its_uploads() {
    let rt = runtime();
    let keys = keys();
    let (a, b) = (Recording::new(Fail::Never), Recording::new(Fail::Never));
    let targets = [
        a.target("a", plan(MIB as u64)),
        b.target("b", plan(MIB as u64)),
    ];
    let mut w = start(&rt, &targets, &keys);
    write_all(&mut w, &random(2 * MIB, 9)).expect("written");
    // A source that panicked inside async code: the drop must not block_on (a panic).
    rt.block_on(async move { drop(w) });
    let deadline = Instant::now() + Duration::from_secs(20);
    while a.log.aborted() + b.log.aborted() < 2 {
        assert!(Instant::now() < deadline, "the uploads were not aborted");
        std::thread::sleep(Duration::from_millis(10));
    }
    for s in [&a, &b] {
        assert_eq!(s.log.completed(), 0);
        assert!(rt.block_on(s.paths()).is_empty());
    }
}

#[test]
fn the_reader_checks_the_stored_bytes_against_the_record() {
    let rt = runtime();
    let keys = keys();
    let a = Recording::new(Fail::Never);
    let target = a.target("a", plan(MIB as u64));
    let f = write(
        &rt,
        std::slice::from_ref(&target),
        &keys,
        &random(200_000, 11),
    );
    let good = record(&f);
    let raw = |rec: Option<&ObjectRecord>| {
        let mut r = ObjectReader::open(rt.handle(), &target, &path(), rec).expect("opened");
        let flag = r.verified_flag();
        let mut out = Vec::new();
        let res = r.read_to_end(&mut out);
        (res, flag.load(std::sync::atomic::Ordering::SeqCst))
    };
    let (res, verified) = raw(Some(&good));
    assert_eq!(res.expect("matches") as u64, f.stored_size);
    assert!(verified);
    let (res, verified) = raw(None);
    assert!(
        res.is_ok() && !verified,
        "no record: read, but never verified"
    );
    let mut bad_hash = good.clone();
    bad_hash.blake3 = blake3::hash(b"other").to_hex().to_string();
    let mut bad_size = good.clone();
    bad_size.stored_size += 1;
    for rec in [bad_hash, bad_size] {
        let (res, verified) = raw(Some(&rec));
        let e = res.expect_err("mismatch");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("do not match snapshot.json"), "{e}");
        assert!(!verified);
    }
}

/// Stored bytes changed after the marker was written: the read path refuses them,
/// and `HoldBack` never releases the end of the plaintext.
#[test]
fn altered_objects_are_refused_and_their_end_held_back() {
    let rt = runtime();
    let keys = keys();
    let a = Recording::new(Fail::Never);
    let target = a.target("a", plan(MIB as u64));
    let plain = random(3 * MIB, 13);
    let rec = record(&write(&rt, std::slice::from_ref(&target), &keys, &plain));
    let original = stored(&rt, &a).expect("stored");

    // Valid age files for the same key that only the record can tell apart: another
    // object, and the same plaintext encrypted again (age's random header stanzas
    // make sizes differ too; a same-size, other-hash record is refused in
    // `the_reader_checks_the_stored_bytes_against_the_record`).
    let encrypt = |plain: &[u8]| {
        let other = Recording::new(Fail::Never);
        write(&rt, &[other.target("o", plan(MIB as u64))], &keys, plain);
        stored(&rt, &other).expect("stored")
    };
    let swapped = encrypt(&random(3 * MIB, 17));
    let again = encrypt(&plain);
    assert!(again != original);

    let mut flipped = original.clone();
    flipped[original.len() / 2] ^= 0x01;
    let truncated = original[..original.len() - 1].to_vec();
    let mut appended = original.clone();
    appended.push(0);

    for (what, bytes) in [
        ("a flipped byte", flipped),
        ("a truncated object", truncated),
        ("an appended byte", appended),
        ("another object", swapped),
        ("the same plaintext encrypted again", again),
    ] {
        rt.block_on(a.replace(&path(), bytes));
        let e = read_back(&rt, &target, &rec, &keys).expect_err(what);
        assert!(e.to_string().contains(path().as_ref()), "{what}: {e}");
        if what == "another object" || what == "the same plaintext encrypted again" {
            assert!(
                e.to_string().contains("do not match snapshot.json"),
                "{what}: {e}"
            );
        }
        let (released, end) = read_held_back(&rt, &target, &rec, &keys, false);
        end.expect_err(what);
        assert!(
            released.len() <= plain.len() - HOLD,
            "{what}: {} bytes released, the last {HOLD} must stay held",
            released.len()
        );
    }
    // And the object put back reads again.
    rt.block_on(a.replace(&path(), original));
    assert!(read_back(&rt, &target, &rec, &keys).expect("read") == plain);
}

#[test]
fn hold_back_releases_the_end_only_once_verified() {
    let read_all = |len: usize, verified: bool| {
        let input = random(len, 19);
        let flag = Arc::new(AtomicBool::new(verified));
        let mut held = HoldBack::from_parts(io::Cursor::new(input.clone()), flag, "obj".into());
        let mut out = Vec::new();
        let mut buf = vec![0u8; 4096];
        let end = loop {
            match held.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => break Err(e),
            }
        };
        assert!(
            input.starts_with(&out),
            "released bytes are the input's start"
        );
        (out.len(), end)
    };
    let len = 3 * MIB + 5;
    let (n, end) = read_all(len, true);
    assert_eq!(n, len);
    end.expect("verified: everything");
    let (n, end) = read_all(len, false);
    assert_eq!(n, len - HOLD, "all but the held end");
    let e = end.expect_err("never verified");
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    assert!(e.to_string().starts_with("obj: "), "{e}");
    let (n, end) = read_all(1000, false);
    assert_eq!(n, 0, "a short plaintext is held whole");
    end.expect_err("never verified");
}
