//! Unit tests of `tar_writer`, apart because with them the file would pass 400 lines.

use super::*;
use std::io::Read;

const NONE: &Xattrs = &Xattrs::new();
const NO_NAMES: &BTreeMap<String, String> = &BTreeMap::new();

fn spec<'a>(path: &'a [u8], size: u64) -> HeaderSpec<'a> {
    HeaderSpec {
        path,
        kind: EntryType::Regular,
        mode: 0o640,
        uid: 3_000_000,
        gid: 7,
        user: Some("a-very-long-user-name-that-does-not-fit-ustar"),
        group: Some("g"),
        mtime: 1_700_000_000,
        size,
        link: None,
        rdev: None,
        xattrs: NONE,
        acl_names: NO_NAMES,
    }
}

#[test]
fn long_names_and_ids_round_trip_through_pax() {
    let long = "d/".repeat(80) + "file.txt";
    let mut w = TarWriter::new(Vec::new());
    w.header(&spec(long.as_bytes(), 5)).expect("header");
    w.data(b"hello").expect("data");
    w.pad().expect("pad");
    let bytes = w.finish().expect("finish");
    let mut a = tar::Archive::new(&bytes[..]);
    let mut entries = a.entries().expect("entries");
    let mut e = entries.next().expect("one entry").expect("entry ok");
    assert_eq!(e.path_bytes().as_ref(), long.as_bytes());
    // The ustar field cannot hold it; readers take it from the pax record.
    assert_eq!(e.header().uid().expect("uid"), 3_000_000);
    let pax: Vec<(String, String)> = e
        .pax_extensions()
        .expect("pax")
        .expect("has pax")
        .map(|x| {
            let x = x.expect("record");
            (
                x.key().expect("k").to_string(),
                x.value().expect("v").to_string(),
            )
        })
        .collect();
    assert!(pax.contains(&("uid".into(), "3000000".into())), "{pax:?}");
    assert!(
        pax.iter()
            .any(|(k, v)| k == "uname" && v.starts_with("a-very-long"))
    );
    let mut s = String::new();
    e.read_to_string(&mut s).expect("read");
    assert_eq!(s, "hello");
    assert!(entries.next().is_none());
}

#[test]
fn xattrs_and_acls_go_into_schily_records() {
    let nobody_reads = acl::encode(&[
        acl::entry(acl::USER_OBJ, 6, None),
        acl::entry(acl::USER, 4, Some(4242)),
        acl::entry(acl::GROUP_OBJ, 4, None),
        acl::entry(acl::MASK, 4, None),
        acl::entry(acl::OTHER, 0, None),
    ]);
    let mut x = Xattrs::new();
    x.insert(
        "user.comment".into(),
        xattr::Value(b"caf\xc3\xa9 = \n\0".to_vec()),
    );
    x.insert(xattr::ACCESS_ACL.into(), xattr::Value(nobody_reads.clone()));
    let mut names = BTreeMap::new();
    names.insert("user:4242".to_string(), "kadi".to_string());
    let mut w = TarWriter::new(Vec::new());
    let mut s = spec(b"f", 0);
    s.xattrs = &x;
    s.acl_names = &names;
    w.header(&s).expect("header");
    let bytes = w.finish().expect("finish");
    let pax = pax_by_length(&bytes);
    assert_eq!(
        pax.get("SCHILY.xattr.user.comment").map(Vec::as_slice),
        Some(&b"caf\xc3\xa9 = \n\0"[..])
    );
    assert_eq!(
        pax.get("SCHILY.xattr.system.posix_acl_access"),
        Some(&nobody_reads)
    );
    assert_eq!(
        pax.get("SCHILY.acl.access").map(Vec::as_slice),
        Some(&b"user::rw-\nuser:kadi:r--\ngroup::r--\nmask::r--\nother::---\n"[..])
    );
    // The `tar` crate, which splits records at newlines, still finds the path.
    let mut a = tar::Archive::new(&bytes[..]);
    let e = a
        .entries()
        .expect("entries")
        .next()
        .expect("one")
        .expect("ok");
    assert_eq!(e.path_bytes().as_ref(), b"f");
}

/// The records of the first pax header in `tar`, read by their length as GNU
/// tar reads them.
fn pax_by_length(tar: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let size = usize::from_str_radix(
        std::str::from_utf8(&tar[124..135])
            .expect("size")
            .trim_matches('\0'),
        8,
    )
    .expect("octal");
    let mut data = &tar[512..512 + size];
    let mut out = BTreeMap::new();
    while !data.is_empty() {
        let sp = data.iter().position(|b| *b == b' ').expect("length");
        let len: usize = std::str::from_utf8(&data[..sp])
            .expect("utf8")
            .parse()
            .expect("n");
        let record = &data[sp + 1..len - 1];
        let eq = record.iter().position(|b| *b == b'=').expect("=");
        let key = String::from_utf8(record[..eq].to_vec()).expect("key");
        out.insert(key, record[eq + 1..].to_vec());
        data = &data[len..];
    }
    out
}

#[test]
fn a_forged_record_inside_a_value_does_not_move_the_path() {
    let mut x = Xattrs::new();
    x.insert(
        "user.trap".into(),
        xattr::Value(b"a\n16 path=../evil\n11 size=99\n".to_vec()),
    );
    let mut w = TarWriter::new(Vec::new());
    let mut s = spec(b"short", 5);
    s.xattrs = &x;
    w.header(&s).expect("header");
    w.data(b"hello").expect("data");
    let bytes = w.finish().expect("finish");
    assert_eq!(
        pax_by_length(&bytes)
            .get("SCHILY.xattr.user.trap")
            .map(Vec::as_slice),
        Some(&b"a\n16 path=../evil\n11 size=99\n"[..])
    );
    let mut a = tar::Archive::new(&bytes[..]);
    let mut e = a
        .entries()
        .expect("entries")
        .next()
        .expect("one")
        .expect("ok");
    assert_eq!(e.path_bytes().as_ref(), b"short");
    assert_eq!(e.size(), 5);
    let mut s = String::new();
    e.read_to_string(&mut s).expect("read");
    assert_eq!(s, "hello");
}
