//! Fuzz target: the commit marker reader, `coffer::format::seal::open` followed by
//! `coffer::format::untrusted::check_marker`, on arbitrary bytes.
//!
//! Why it exists (issue 10): `snapshot.json` is plain JSON on the target, written by
//! whoever can write there. `list`, `prune` and a backup's retention read every
//! marker of a job, so a marker that makes the reader panic, loop or allocate
//! without bound stops them all. The real reader gets at most `MAX_MARKER_BYTES`
//! (`repo::read_marker_bytes`); larger inputs are skipped here, as there.
//!
//! After a marker parses, the target does what `repo::snapshots` and `coffer list`
//! do with it: checks it against a fixed folder and against the folder it names (so
//! the check gets past its first test), and sums the sizes of one that passes.

#![no_main]

use coffer::format::untrusted::{MAX_MARKER_BYTES, check_marker};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The same bound `repo::snapshots` applies to what it reads from a target.
    if data.len() as u64 > MAX_MARKER_BYTES {
        return;
    }
    let marker = match coffer::format::seal::open(data) {
        Ok(m) => m,
        Err(why) => {
            // Shown to the operator escaped: the escaping must cope with any text.
            let _ = coffer_plugins::escape_controls(&why);
            return;
        }
    };
    // In the folder it claims to be in, then in some other folder.
    let _ = check_marker(&marker, "kadi", "20260101T020000Z-0a1b");
    // In the folder it claims to be in: past the first test, into the rest.
    let (job, id) = (marker.job.clone(), marker.id.clone());
    if let Err(why) = check_marker(&marker, &job, &id) {
        let _ = coffer_plugins::escape_controls(&why);
        return;
    }
    // A checked marker is listed: what `coffer list` shows of it must not panic.
    let _ = marker.stored_size();
    let _ = marker.plaintext_size();
    let _ = marker.object(coffer::format::MANIFEST);
});
