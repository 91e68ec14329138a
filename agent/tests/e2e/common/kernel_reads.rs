//! What a coffer process really read, counted by the kernel rather than by coffer:
//! the command runs under `strace`, and the bytes every read-type system call
//! returned are added up per file (for a local target) or per TCP peer port (for
//! an S3 server). A counter inside coffer only sees what coffer thinks it fetched;
//! this sees buffering, retries, HTTP headers and reads coffer forgot to count.
//!
//! `strace -ff` writes one file per thread, so no call is split across lines
//! ("unfinished ... resumed"), and `-yy` prints each descriptor's file path or TCP
//! endpoints next to its number.

use super::{World, require_tool};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Read-type calls: what the kernel handed the process from a file or socket.
const READS: &[&str] = &[
    "read", "pread64", "readv", "preadv", "preadv2", "recvfrom", "recvmsg",
];
/// Write-type calls, only to count HTTP requests sent.
const WRITES: &[&str] = &["write", "writev", "sendto", "sendmsg"];

#[derive(Debug, Default)]
pub struct Reads {
    /// Bytes read per file path under the directory asked about.
    pub files: BTreeMap<String, u64>,
    /// Successful opens per file path under that directory.
    pub opens: BTreeMap<String, u64>,
    /// Bytes received on TCP connections to the port asked about.
    pub tcp: u64,
    /// HTTP requests sent on those connections, by method (`GET`, `HEAD`, ...).
    pub requests: BTreeMap<String, u64>,
}

impl Reads {
    /// Bytes read from files whose path contains `part` (e.g. `/packs/`).
    pub fn file_bytes(&self, part: &str) -> u64 {
        self.files
            .iter()
            .filter(|(p, _)| p.contains(part))
            .map(|(_, n)| n)
            .sum()
    }

    /// Opens of files whose path contains `part`.
    pub fn file_opens(&self, part: &str) -> u64 {
        self.opens
            .iter()
            .filter(|(p, _)| p.contains(part))
            .map(|(_, n)| n)
            .sum()
    }
}

/// Runs `coffer args` (as `world.ok` would: exit 0 or the test fails) under
/// strace; counts reads of files under `dir` and of TCP connections to `port`.
/// Returns coffer's stdout and the counts.
pub fn traced(world: &World, args: &[&str], dir: &Path, port: Option<u16>) -> (String, Reads) {
    require_tool("strace");
    let plain = world.command(args);
    let traces = tempfile::tempdir().expect("tempdir for strace output");
    let prefix = traces.path().join("t");
    let mut calls: Vec<&str> = READS.iter().chain(WRITES).copied().collect();
    calls.push("openat");
    let mut cmd = Command::new("strace");
    cmd.args(["-ff", "-qq", "-yy", "-s", "8", "-e", "signal=none", "-e"])
        .arg(format!("trace={}", calls.join(",")))
        .arg("-o")
        .arg(&prefix)
        .arg("--")
        .arg(plain.get_program())
        .args(plain.get_args());
    for (k, v) in plain.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd.output().expect("run strace");
    assert_eq!(
        out.status.code(),
        Some(0),
        "coffer {args:?} under strace exited {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // strace prints paths with symlinks resolved.
    let dir = dir.canonicalize().expect("the directory to watch");
    let dir = format!("{}/", dir.to_str().expect("utf-8 directory"));
    let peer = port.map(|p| format!("->127.0.0.1:{p}]"));
    let mut reads = Reads::default();
    for f in std::fs::read_dir(traces.path()).expect("strace output") {
        let text = std::fs::read_to_string(f.expect("entry").path()).expect("read trace");
        for line in text.lines() {
            count(line, &dir, peer.as_deref(), &mut reads);
        }
    }
    (String::from_utf8_lossy(&out.stdout).into_owned(), reads)
}

/// Adds one strace line to `reads`.
fn count(line: &str, dir: &str, peer: Option<&str>, reads: &mut Reads) {
    let Some((call, rest)) = line.split_once('(') else {
        return;
    };
    // The result follows the last " = " (data shown is at most 8 characters and
    // the line ends with the result, so the last one is the result's).
    let Some((_, result)) = line.rsplit_once(") = ") else {
        return;
    };
    // `16384`, `-1 EAGAIN (...)`, or for openat `9</path>`.
    let digits = result
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .map_or(result, |end| &result[..end]);
    let Ok(n) = digits.parse::<i64>() else {
        return;
    };
    if n < 0 {
        return;
    }
    if call == "openat" {
        // `= 9</path/of/file>`: the path the descriptor ended up on.
        if let Some(path) = result
            .split_once('<')
            .and_then(|(_, p)| p.strip_suffix('>'))
            .filter(|p| p.starts_with(dir))
        {
            *reads.opens.entry(path.to_string()).or_default() += 1;
        }
        return;
    }
    // `9</path>, ...` or `9<TCP:[a:p->b:q]>, ...`
    let Some(fd) = rest
        .split_once('<')
        .and_then(|(_, r)| r.split_once(">, "))
        .map(|(fd, _)| fd)
    else {
        return;
    };
    let is_read = READS.contains(&call);
    if fd.starts_with(dir) {
        if is_read {
            *reads.files.entry(fd.to_string()).or_default() += n as u64;
        }
        return;
    }
    if !peer.is_some_and(|p| fd.starts_with("TCP:") && fd.ends_with(p)) {
        return;
    }
    if is_read {
        reads.tcp += n as u64;
    } else if let Some(method) = ["GET ", "HEAD ", "PUT ", "POST ", "DELETE "]
        .iter()
        .find(|m| rest.contains(&format!("\"{m}")))
    {
        *reads.requests.entry(method.trim().to_string()).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_strace_are_counted_by_file_and_peer() {
        let mut r = Reads::default();
        let peer = Some("->127.0.0.1:9000]");
        for line in [
            r#"pread64(9</t/b/app/packs/a.age>, "\x12ab"..., 16384, 0) = 16384"#,
            r#"read(9</t/b/app/packs/a.age>, "", 8192) = 0"#,
            r#"read(10</etc/hosts>, "127.0.0."..., 4096) = 200"#,
            r#"read(7<TCP:[127.0.0.1:4100->127.0.0.1:9000]>, 0x7f, 8192) = -1 EAGAIN (Resource temporarily unavailable)"#,
            r#"recvfrom(7<TCP:[127.0.0.1:4100->127.0.0.1:9000]>, "HTTP/1.1"..., 8192, 0, NULL, NULL) = 1500"#,
            r#"writev(7<TCP:[127.0.0.1:4100->127.0.0.1:9000]>, [{iov_base="GET /b/a"..., iov_len=300}], 1) = 300"#,
            r#"openat(AT_FDCWD</w>, "/t/b/app/packs/a.age", O_RDONLY|O_CLOEXEC) = 9</t/b/app/packs/a.age>"#,
            r#"openat(AT_FDCWD</w>, "/t/b/nope", O_RDONLY|O_CLOEXEC) = -1 ENOENT (No such file or directory)"#,
        ] {
            count(line, "/t/b/", peer, &mut r);
        }
        assert_eq!(r.file_bytes("/packs/"), 16384);
        assert_eq!(r.file_opens("/packs/"), 1);
        assert_eq!(r.tcp, 1500);
        assert_eq!(r.requests.get("GET"), Some(&1));
        assert_eq!(r.files.len(), 1);
    }
}
