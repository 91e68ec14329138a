//! The status page at the agent's `/`, in a real browser: Debian's headless
//! Chromium loads it from a running agent with two jobs, one that succeeded (by
//! hand and through the agent, so both paths feed the history) and one that
//! failed with markup in its error. The DOM Chromium built must show both jobs
//! with their outcomes, one chart bar per recorded run and the markup as text;
//! the screenshot must be a real rendering (the asked size, many colours, the
//! bars' colours among them). Beyond loopback the page needs the API's token.

use crate::common::service::{Agent, http, http_raw};
use crate::common::*;
use std::path::Path;
use std::process::{Command, Output};

const TOKEN: &str = "status-Page-t0ken";
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 1100;
/// The stylesheet's fills for the bars of successful and failed runs.
const SUCCESS_FILL: [u8; 3] = [0x2e, 0x7d, 0x32];
const FAILED_FILL: [u8; 3] = [0xc6, 0x28, 0x28];

/// Headless Chromium on `url` with `args` (`--dump-dom`, `--screenshot=...`),
/// in its own profile; as root it runs only without its sandbox. Bounded in
/// time, so that a browser that hangs fails the test instead of stalling it.
fn chromium(profile: &Path, args: &[&str], url: &str) -> Output {
    require_tool("chromium");
    let out = Command::new("timeout")
        .args([
            "120",
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium {args:?} failed ({:?}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The records in a job's persisted history.
fn history_len(world: &World, job: &str) -> usize {
    std::fs::read(world.path(&format!("state/status/{job}.json")))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["history"].as_array().map(Vec::len))
        .unwrap_or(0)
}

/// The part of `dom` from the section of `job` to the end of that section.
fn section<'a>(dom: &'a str, job: &str) -> &'a str {
    let start = dom
        .find(&format!("<section class=\"job\" id=\"job-{job}\""))
        .unwrap_or_else(|| panic!("no section for job {job} in:\n{dom}"));
    let len = dom[start..].find("</section>").expect("the section's end");
    &dom[start..start + len]
}

/// The bars of the chart `kind` in a job's section.
fn bars(section: &str, kind: &str) -> usize {
    let start = section
        .find(&format!("data-chart=\"{kind}\""))
        .unwrap_or_else(|| panic!("no {kind} chart in:\n{section}"));
    let len = section[start..].find("</svg>").expect("the chart's end");
    section[start..start + len].matches("<rect ").count()
}

/// A world with job `app` (a directory, scheduled once a year) and job `broken`
/// (no schedule; its source path holds markup and does not exist), the agent
/// listening on `listen` with the API token.
fn two_jobs(listen: &str) -> (World, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("f"), noise(300_000, 7)).expect("write");
    let hostile = tmp
        .path()
        .join("<script>document.title='owned'</script> & \"more\"");
    let world = World::new("");
    world.write_config(&format!(
        "schedule = \"0 0 1 1 *\"\n{}\n\
         [jobs.broken]\ntargets = [\"local\"]\n\
         [[jobs.broken.sources]]\nname = \"gone\"\ntype = \"directory\"\npath = {:?}\n",
        dir_source("data", &data, ""),
        // Debug quoting is a TOML basic string for these characters.
        hostile.display().to_string()
    ));
    let token = world.path("token");
    std::fs::write(&token, format!("{TOKEN}\n")).expect("token");
    let cfg = std::fs::read_to_string(&world.config).expect("config");
    std::fs::write(
        &world.config,
        cfg.replacen(
            "[agent]\n",
            &format!(
                "[agent]\nlisten = \"{listen}\"\napi_token_file = \"{}\"\n",
                token.display()
            ),
            1,
        ),
    )
    .expect("config");
    (world, tmp)
}

#[test]
fn chromium_shows_the_jobs_their_runs_and_charts() {
    let port = free_port();
    let (world, _tmp) = two_jobs(&format!("127.0.0.1:{port}"));
    // A run and a verify by hand, before the agent: the CLI's runs count too.
    world.ok(&["backup", "app"]);
    world.ok(&["verify", "--job", "app"]);
    assert_eq!(history_len(&world, "app"), 1, "the CLI's run is recorded");
    let agent = Agent::start(&world, port);
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    std::thread::sleep(std::time::Duration::from_millis(1100)); // one snapshot id a second
    assert_eq!(http(port, "POST", "/api/v1/jobs/app/run", &auth).0, 202);
    wait_until("the agent's run of app", 60, || {
        history_len(&world, "app") == 2
    });
    assert_eq!(http(port, "POST", "/api/v1/jobs/broken/run", &auth).0, 202);
    wait_until("the agent's run of broken", 60, || {
        history_len(&world, "broken") == 1
    });
    // The page is made from memory, refreshed when a run of the agent ends.
    wait_until("the page to show both runs", 30, || {
        let (code, body) = http(port, "GET", "/", "");
        code == 200
            && body.contains("id=\"job-broken\"")
            && bars(section(&body, "app"), "duration") == 2
            && bars(section(&body, "broken"), "duration") == 1
    });

    let url = format!("http://127.0.0.1:{port}/");
    let profile = world.path("chromium");
    let dom = chromium(&profile, &["--dump-dom"], &url);
    let dom = String::from_utf8(dom.stdout).expect("utf8 DOM");
    assert!(dom.contains("<title>coffer on "), "{dom}");
    assert!(!dom.contains("owned</title>"), "a script ran:\n{dom}");
    assert!(
        !dom.contains("<script"),
        "markup from an error became a script:\n{dom}"
    );
    let app = section(&dom, "app");
    assert!(app.contains("<span class=\"name\">app</span>"), "{app}");
    assert!(
        app.contains("badge outcome success\">success</span>"),
        "{app}"
    );
    assert_eq!(
        (bars(app, "duration"), bars(app, "stored")),
        (2, 2),
        "{app}"
    );
    assert_eq!(app.matches("class=\"bar success\"").count(), 4, "{app}");
    assert_eq!(app.matches("<tr><td>").count(), 2, "{app}");
    assert!(
        app.contains("<code>0 0 1 1 *</code>"),
        "the next run: {app}"
    );
    assert!(app.contains("(deep)"), "the last verify: {app}");
    let broken = section(&dom, "broken");
    assert!(
        broken.contains("badge outcome failed\">failed</span>"),
        "{broken}"
    );
    assert_eq!((bars(broken, "duration"), bars(broken, "stored")), (1, 1));
    assert_eq!(
        broken.matches("class=\"bar failed\"").count(),
        2,
        "{broken}"
    );
    assert!(broken.contains("not scheduled"), "{broken}");
    assert!(
        broken.contains("&lt;script&gt;document.title='owned'&lt;/script&gt; &amp; \"more\""),
        "the error's markup as text: {broken}"
    );
    // The failed run's row gives its error (issue 26 item 11), as text; the
    // failed bars are marked and the charts have a time axis.
    let row = broken
        .split("<td class=\"error-text\">")
        .nth(1)
        .expect("the failed run's error cell");
    assert!(
        row.contains("&lt;script&gt;document.title='owned'&lt;/script&gt; &amp; \"more\""),
        "the row's error as text: {row}"
    );
    assert_eq!(
        broken.matches("class=\"mark failed\"").count(),
        2,
        "{broken}"
    );
    assert!(!app.contains("class=\"mark failed\""), "{app}");
    for section in [app, broken] {
        assert_eq!(
            section.matches("class=\"label axis\"").count(),
            2,
            "the newest run's end under each chart: {section}"
        );
        assert!(section.contains(" UTC</text>"), "{section}");
    }

    let shot = world.path("status.png");
    chromium(
        &profile,
        &[
            &format!("--window-size={WIDTH},{HEIGHT}"),
            &format!("--screenshot={}", shot.display()),
        ],
        &url,
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&shot).expect("the screenshot"),
    ));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a size")];
    let frame = reader.next_frame(&mut buf).expect("its pixels");
    assert_eq!((frame.width, frame.height), (WIDTH, HEIGHT));
    let channels = match frame.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("an unexpected PNG colour type {other:?}"),
    };
    assert_eq!(frame.bit_depth, png::BitDepth::Eight);
    let pixels: Vec<[u8; 3]> = buf[..frame.buffer_size()]
        .chunks_exact(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    let colours: std::collections::BTreeSet<[u8; 3]> = pixels.iter().copied().collect();
    assert!(
        colours.len() > 50,
        "a blank screenshot: {} colour(s)",
        colours.len()
    );
    let count = |fill: [u8; 3]| pixels.iter().filter(|p| **p == fill).count();
    // Each bar is 8 px wide, the tallest 57 px: several hundred pixels each.
    assert!(
        count(SUCCESS_FILL) > 300,
        "success bars: {}",
        count(SUCCESS_FILL)
    );
    assert!(
        count(FAILED_FILL) > 300,
        "failed bars: {}",
        count(FAILED_FILL)
    );
    assert!(agent.stop().success());
}

/// The page follows the API's rule: beyond loopback it needs the token (401
/// without it, 403 while none is configured); it answers GET only, with a
/// Content-Security-Policy that allows no script.
#[test]
fn beyond_loopback_the_status_page_needs_the_token() {
    let port = free_port();
    let (world, _tmp) = two_jobs(&format!("0.0.0.0:{port}"));
    let agent = Agent::start(&world, port);
    assert_eq!(http(port, "GET", "/", "").0, 401);
    assert_eq!(
        http(port, "GET", "/", "Authorization: Bearer wrong\r\n").0,
        401
    );
    let raw = http_raw(
        port,
        "GET",
        "/",
        &format!("Authorization: Bearer {TOKEN}\r\n"),
    );
    let (head, body) = raw.split_once("\r\n\r\n").expect("headers and body");
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{raw}");
    assert!(body.contains("id=\"job-app\"") && body.contains("id=\"job-broken\""));
    // What a browser is told: HTML, and no script even if one slipped in.
    assert!(
        head.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(
        head.contains("content-security-policy: default-src 'none'; style-src 'unsafe-inline'"),
        "{head}"
    );
    let (code, _) = http(
        port,
        "POST",
        "/",
        &format!("Authorization: Bearer {TOKEN}\r\n"),
    );
    assert_eq!(code, 405, "read-only");
    assert!(agent.stop().success());

    let cfg = std::fs::read_to_string(&world.config).expect("config");
    let without: String = cfg
        .lines()
        .filter(|l| !l.starts_with("api_token_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&world.config, without).expect("config");
    let port2 = free_port();
    let cfg = std::fs::read_to_string(&world.config).expect("config");
    std::fs::write(
        &world.config,
        cfg.replace(&format!(":{port}\""), &format!(":{port2}\"")),
    )
    .expect("config");
    let agent = Agent::start(&world, port2);
    assert_eq!(http(port2, "GET", "/", "").0, 403);
    assert_eq!(
        http(
            port2,
            "GET",
            "/",
            &format!("Authorization: Bearer {TOKEN}\r\n")
        )
        .0,
        403
    );
    assert!(agent.stop().success());
}
