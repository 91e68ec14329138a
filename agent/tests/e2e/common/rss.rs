//! How much memory a coffer run took at its peak, measured by GNU time: what the
//! tests of hostile snapshots hold a bomb to.

use super::{World, require_tool};

/// What a run given a bomb may take at most.
pub const BOMB_RSS_KIB: u64 = 64 << 10;

/// Peak RSS in KiB of `coffer args` (GNU time), with its exit code and output.
pub fn peak_rss(world: &World, args: &[&str]) -> (u64, Option<i32>, String) {
    peak_rss_within(world, args, None)
}

/// `peak_rss`, killed (SIGKILL, exit code 137) after `secs` seconds when given:
/// a guard, so that a bomb the code does not stop fails its test instead of
/// keeping it running for hours.
pub fn peak_rss_within(
    world: &World,
    args: &[&str],
    secs: Option<u32>,
) -> (u64, Option<i32>, String) {
    require_tool("/usr/bin/time");
    require_tool("timeout");
    let report = world.path("rss.txt");
    let cmd = world.command(args);
    let program = cmd.get_program().to_owned();
    let argv: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let mut time = std::process::Command::new("/usr/bin/time");
    time.arg("-f").arg("%M").arg("-o").arg(&report);
    if let Some(secs) = secs {
        time.args(["timeout", "-s", "KILL", &secs.to_string()]);
    }
    let out = time
        .arg(program)
        .args(argv)
        .envs(
            cmd.get_envs()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
        )
        .output()
        .expect("run /usr/bin/time");
    let kib = std::fs::read_to_string(&report)
        .expect("time report")
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("a number");
    // In the test's output when it fails: how close the other runs came.
    eprintln!("peak RSS of coffer {}: {kib} KiB", args.join(" "));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (kib, out.status.code(), text)
}
