//! POSIX ACLs in the form the kernel stores them (`system.posix_acl_access` and
//! `system.posix_acl_default`: a version word, then 8-byte entries of tag,
//! permissions and id), and the text GNU tar writes for them (`SCHILY.acl.*`).
//!
//! coffer keeps an ACL as the raw attribute, but cannot always set it back as it
//! was read: an access ACL's owner, mask (or group) and other entries are the
//! mode's permission bits, so a restore with another mode (a `file_mode` policy)
//! changes them; and the users and groups it names are restored by name on a
//! host whose ids differ. Restore and `check` both compute the ACL expected on
//! disk here, so what one sets is exactly what the other compares.

/// `POSIX_ACL_XATTR_VERSION`.
const VERSION: u32 = 2;
pub const USER_OBJ: u16 = 0x01;
pub const USER: u16 = 0x02;
pub const GROUP_OBJ: u16 = 0x04;
pub const GROUP: u16 = 0x08;
pub const MASK: u16 = 0x10;
pub const OTHER: u16 = 0x20;
/// The id of entries that name no one (owner, owning group, mask, other).
const UNDEFINED_ID: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct AclEntry {
    pub tag: u16,
    pub perm: u16,
    pub id: u32,
}

/// The entries of a raw ACL, or `None` when it is not one (wrong version, a
/// length that is not whole entries, an unknown tag).
pub fn parse(raw: &[u8]) -> Option<Vec<AclEntry>> {
    let (version, rest) = raw.split_first_chunk::<4>()?;
    if u32::from_le_bytes(*version) != VERSION || !rest.len().is_multiple_of(8) {
        return None;
    }
    rest.chunks_exact(8)
        .map(|c| {
            let tag = u16::from_le_bytes([c[0], c[1]]);
            let perm = u16::from_le_bytes([c[2], c[3]]);
            let id = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
            matches!(tag, USER_OBJ | USER | GROUP_OBJ | GROUP | MASK | OTHER).then_some(AclEntry {
                tag,
                perm,
                id,
            })
        })
        .collect()
}

pub fn encode(entries: &[AclEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 8 * entries.len());
    out.extend_from_slice(&VERSION.to_le_bytes());
    for e in entries {
        out.extend_from_slice(&e.tag.to_le_bytes());
        out.extend_from_slice(&e.perm.to_le_bytes());
        out.extend_from_slice(&e.id.to_le_bytes());
    }
    out
}

/// Whether an access ACL says no more than the mode does (owner, group, other):
/// the kernel does not store such an ACL, it only sets the mode.
pub fn is_minimal(entries: &[AclEntry]) -> bool {
    entries
        .iter()
        .all(|e| matches!(e.tag, USER_OBJ | GROUP_OBJ | OTHER))
}

/// An access ACL with the permission bits of `mode` in its owner, mask (or owning
/// group, when there is no mask) and other entries, as `chmod` leaves it.
pub fn with_mode(entries: &mut [AclEntry], mode: u32) {
    let has_mask = entries.iter().any(|e| e.tag == MASK);
    for e in entries.iter_mut() {
        let bits = match e.tag {
            USER_OBJ => mode >> 6,
            MASK => mode >> 3,
            GROUP_OBJ if !has_mask => mode >> 3,
            OTHER => mode,
            _ => continue,
        };
        e.perm = (bits & 0o7) as u16;
    }
}

/// Gives each named user and group entry the id `map` returns for it, then sorts
/// the entries the way `setfacl` does (by tag, then id), which the kernel keeps.
pub fn remap(entries: &mut [AclEntry], mut map: impl FnMut(u16, u32) -> u32) {
    for e in entries.iter_mut() {
        if matches!(e.tag, USER | GROUP) {
            e.id = map(e.tag, e.id);
        }
    }
    entries.sort_by_key(|e| (e.tag, e.id));
}

/// The key under which a named entry's user or group name is recorded.
pub fn name_key(tag: u16, id: u32) -> Option<String> {
    match tag {
        USER => Some(format!("user:{id}")),
        GROUP => Some(format!("group:{id}")),
        _ => None,
    }
}

fn perm_text(perm: u16) -> [u8; 3] {
    [
        if perm & 4 != 0 { b'r' } else { b'-' },
        if perm & 2 != 0 { b'w' } else { b'-' },
        if perm & 1 != 0 { b'x' } else { b'-' },
    ]
}

/// The long text form `acl_to_text` gives and GNU tar stores in `SCHILY.acl.access`
/// and `SCHILY.acl.default`: one entry a line, users and groups by name when
/// `name` knows one (a name that could not be parsed back is written as the id).
pub fn to_text(entries: &[AclEntry], mut name: impl FnMut(u16, u32) -> Option<String>) -> String {
    let mut out = String::new();
    for e in entries {
        let tag = match e.tag {
            USER_OBJ | USER => "user",
            GROUP_OBJ | GROUP => "group",
            MASK => "mask",
            _ => "other",
        };
        let qualifier = match e.tag {
            USER | GROUP => name(e.tag, e.id)
                .filter(|n| {
                    !n.is_empty()
                        && n.parse::<u32>().is_err()
                        && !n.contains([':', ',', '\n', ' ', '#'])
                        && !n.chars().any(char::is_control)
                })
                .unwrap_or_else(|| e.id.to_string()),
            _ => String::new(),
        };
        out.push_str(tag);
        out.push(':');
        out.push_str(&qualifier);
        out.push(':');
        out.push_str(std::str::from_utf8(&perm_text(e.perm)).unwrap_or("---"));
        out.push('\n');
    }
    out
}

/// One entry; `id` is `None` for those that name no one, which the kernel gives
/// the undefined id.
pub fn entry(tag: u16, perm: u16, id: Option<u32>) -> AclEntry {
    AclEntry {
        tag,
        perm,
        id: id.unwrap_or(UNDEFINED_ID),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `setfacl -m u:nobody:r f` on a 0640 file, as `getfattr` shows it.
    const NOBODY_READS: &str = "AgAAAAEABgD/////AgAEAP7/AAAEAAQA/////xAABAD/////IAAAAP////8=";

    fn from_b64(s: &str) -> Vec<u8> {
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut bits = 0u32;
        let mut n = 0;
        let mut out = Vec::new();
        for c in s.bytes().filter(|c| *c != b'=') {
            let v = alphabet.iter().position(|a| *a == c).expect("base64") as u32;
            bits = (bits << 6) | v;
            n += 6;
            if n >= 8 {
                n -= 8;
                out.push((bits >> n) as u8);
            }
        }
        out
    }

    #[test]
    fn a_kernel_acl_parses_encodes_and_prints_as_gnu_tar_does() {
        let raw = from_b64(NOBODY_READS);
        let entries = parse(&raw).expect("an ACL");
        assert_eq!(
            entries,
            vec![
                entry(USER_OBJ, 6, None),
                entry(USER, 4, Some(65534)),
                entry(GROUP_OBJ, 4, None),
                entry(MASK, 4, None),
                entry(OTHER, 0, None),
            ]
        );
        assert_eq!(encode(&entries), raw);
        assert!(!is_minimal(&entries));
        let text = to_text(&entries, |_, id| (id == 65534).then(|| "nobody".into()));
        assert_eq!(
            text,
            "user::rw-\nuser:nobody:r--\ngroup::r--\nmask::r--\nother::---\n"
        );
        // A name that would not read back as one is written as the id.
        let text = to_text(&entries, |_, _| Some("a:b".into()));
        assert!(text.contains("user:65534:r--"), "{text}");
    }

    #[test]
    fn the_mode_sets_owner_mask_and_other_and_ids_are_remapped_in_order() {
        let mut e = parse(&from_b64(NOBODY_READS)).expect("acl");
        with_mode(&mut e, 0o754);
        assert_eq!(
            e.iter().map(|e| e.perm).collect::<Vec<_>>(),
            [7, 4, 4, 5, 4],
            "the mask, not the owning group, takes the group bits"
        );
        let mut minimal = vec![
            entry(USER_OBJ, 6, None),
            entry(GROUP_OBJ, 4, None),
            entry(OTHER, 4, None),
        ];
        assert!(is_minimal(&minimal));
        with_mode(&mut minimal, 0o640);
        assert_eq!(minimal[1].perm, 4);
        assert_eq!(minimal[2].perm, 0);

        let mut two = vec![
            entry(USER_OBJ, 6, None),
            entry(USER, 4, Some(10)),
            entry(USER, 6, Some(20)),
            entry(GROUP_OBJ, 4, None),
            entry(MASK, 6, None),
            entry(OTHER, 0, None),
        ];
        remap(
            &mut two,
            |tag, id| if tag == USER && id == 10 { 30 } else { id },
        );
        assert_eq!(two[1], entry(USER, 6, Some(20)));
        assert_eq!(two[2], entry(USER, 4, Some(30)));
    }

    #[test]
    fn what_is_not_an_acl_is_refused() {
        assert_eq!(parse(b""), None);
        assert_eq!(parse(&[1, 0, 0, 0]), None, "version 1");
        assert_eq!(parse(&[2, 0, 0, 0, 1, 0]), None, "half an entry");
        let mut bad_tag = encode(&[entry(USER_OBJ, 6, None)]);
        bad_tag[4] = 0x40;
        assert_eq!(parse(&bad_tag), None);
        assert_eq!(parse(&[2, 0, 0, 0]), Some(Vec::new()));
    }
}
