//! Where an object lives on the SFTP server, and which names read back from the
//! server are objects at all. Names on a target are hostile: a location is only
//! ever joined below the configured folder segment by segment, and a segment that
//! could climb out of it (`..`, `.`, empty, `/`, NUL) is refused, whatever
//! object_store's `Path` already promised.

use object_store::path::Path as ObjPath;

/// The remote path of `location` below `root` (the target's folder as configured:
/// absolute, relative to the login folder, or `.`), or `None` when a segment of
/// `location` is not a plain name.
pub(super) fn remote(root: &str, location: &ObjPath) -> Option<String> {
    let mut out = match root {
        "." => String::new(),
        "/" => "/".to_string(),
        r => format!("{r}/"),
    };
    let mut any = false;
    for part in location.parts() {
        let seg = part.as_ref();
        if !plain(seg) {
            return None;
        }
        if any {
            out.push('/');
        }
        out.push_str(seg);
        any = true;
    }
    if !any {
        // The root itself.
        return Some(match root {
            "." => ".".to_string(),
            r => r.to_string(),
        });
    }
    Some(out)
}

/// The folders from `root` down to the one holding `location`, each as a remote
/// path (the root itself not included), for creating them one at a time.
pub(super) fn parents(root: &str, location: &ObjPath) -> Vec<String> {
    let parts: Vec<_> = location.parts().collect();
    (1..parts.len())
        .filter_map(|n| {
            let dir: ObjPath = parts[..n].iter().cloned().collect();
            remote(root, &dir)
        })
        .collect()
}

/// The folders of `root` itself, outermost first (`a/b`: `a`, `a/b`; `/srv/b`:
/// `/srv`, `/srv/b`), for making a root that is not there yet.
pub(super) fn root_folders(root: &str) -> Vec<String> {
    let absolute = root.starts_with('/');
    let mut out = Vec::new();
    let mut at = String::new();
    for seg in root.split('/').filter(|s| !s.is_empty() && *s != ".") {
        if absolute || !at.is_empty() {
            at.push('/');
        }
        at.push_str(seg);
        out.push(at.clone());
    }
    out
}

/// A name the server listed that may stand for an object or folder: a plain name
/// that object_store would spell the same way (so that the location it becomes
/// reads back as this very file).
pub(super) fn listed_name(name: &str) -> bool {
    plain(name) && object_store::path::PathPart::from(name).as_ref() == name
}

/// A single name in a folder: not empty, `.` or `..`, no `/`, NUL or control
/// character.
pub(super) fn plain(seg: &str) -> bool {
    !seg.is_empty()
        && seg != "."
        && seg != ".."
        && !seg.contains(['/', '\0'])
        && !seg.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_stay_below_the_root() {
        let loc = ObjPath::from("app/abc/snapshot.json");
        assert_eq!(
            remote("backups", &loc).as_deref(),
            Some("backups/app/abc/snapshot.json")
        );
        assert_eq!(
            remote("/srv/b", &loc).as_deref(),
            Some("/srv/b/app/abc/snapshot.json")
        );
        assert_eq!(remote(".", &loc).as_deref(), Some("app/abc/snapshot.json"));
        assert_eq!(remote("/", &loc).as_deref(), Some("/app/abc/snapshot.json"));
        assert_eq!(remote("b", &ObjPath::default()).as_deref(), Some("b"));
        assert_eq!(root_folders("/srv/b"), ["/srv", "/srv/b"]);
        assert_eq!(root_folders("a/b"), ["a", "a/b"]);
        assert!(root_folders(".").is_empty() && root_folders("/").is_empty());
        assert_eq!(
            parents("b", &loc),
            vec!["b/app".to_string(), "b/app/abc".to_string()]
        );
        // object_store escapes what would climb; a raw segment is still refused.
        let climbing = ObjPath::from_iter(["a", "..", "b"]);
        assert!(
            remote("b", &climbing).is_none_or(|r| !r.contains("/../")),
            "{climbing}"
        );
    }

    #[test]
    fn only_plain_names_are_listed() {
        for (name, ok) in [
            ("snapshot.json", true),
            ("p.tar.zst.age", true),
            ("..", false),
            (".", false),
            ("", false),
            ("a\nb", false),
            ("a\\b", false),
        ] {
            assert_eq!(listed_name(name), ok, "{name:?}");
        }
    }
}
