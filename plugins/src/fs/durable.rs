//! Replacing a small state file so that a crash leaves the old one or the new one,
//! never a torn one: written beside it, flushed, renamed over it, and the folder
//! flushed so the rename itself survives. State files of the agent (a job's status,
//! its Object Lock record) and of sources (filesystem snapshot records) use it.

use std::io::{self, Write};
use std::path::Path;

/// Writes `bytes` as `file`, creating its folder if needed.
pub fn replace_file(file: &Path, bytes: &[u8]) -> io::Result<()> {
    let parent = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let mut tmp = tempfile::NamedTempFile::new_in(parent)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(file).map_err(|e| e.error)?;
    std::fs::File::open(parent)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_created_with_its_folder_and_replaced_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("a/b/state.json");
        replace_file(&file, b"first, longer").expect("write");
        replace_file(&file, b"second").expect("replace");
        assert_eq!(std::fs::read(&file).expect("read"), b"second");
        let left: Vec<_> = std::fs::read_dir(dir.path().join("a/b"))
            .expect("list")
            .collect();
        assert_eq!(left.len(), 1, "a temporary file was left");
    }
}
