//! `portent report` end to end: simulate, replay, report, then render the page in
//! headless Chromium: the script ran without an error and every alert has its section.

mod common;

use std::path::Path;
use std::process::Command;

fn chromium() -> &'static str {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return c;
        }
    }
    panic!("headless Chromium is needed for this test: `bash .ci/deps` installs Debian's chromium");
}

/// Runs headless Chromium on a local file with extra arguments; (stdout, stderr).
fn render(file: &Path, extra: &[&str]) -> (String, String) {
    let url = format!("file://{}", file.display());
    let home = tempfile::tempdir().unwrap();
    let o = Command::new(chromium())
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", home.path().display()))
        .args(extra)
        .arg(&url)
        .env("HOME", home.path())
        .output()
        .expect("running chromium");
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn report_renders_every_alert_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let st = Command::new(common::bin())
        .args([
            "simulate", "--quiet", "--seed", "31", "--hosts", "6", "--hours", "1", "--out",
        ])
        .arg(d)
        .status()
        .unwrap();
    assert!(st.success());
    let p = |n: &str| d.join(n);
    let o = Command::new(common::bin())
        .arg("replay")
        .arg(p("traffic.pcap"))
        .arg("--edr")
        .arg(p("edr.jsonl"))
        .args(["--alerts", p("alerts.jsonl").to_str().unwrap()])
        .args(["--flows", p("flows.jsonl").to_str().unwrap()])
        .args(["--dns", p("dns.jsonl").to_str().unwrap()])
        .args(["--report", p("shortcut.html").to_str().unwrap()])
        .arg("--quiet")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (_, alerts) = common::read_jsonl(&p("alerts.jsonl"));
    assert!(alerts.len() >= 5, "the simulated hour should raise alerts");

    let o = Command::new(common::bin())
        .arg("report")
        .args(["--alerts", p("alerts.jsonl").to_str().unwrap()])
        .args(["--flows", p("flows.jsonl").to_str().unwrap()])
        .args(["--dns", p("dns.jsonl").to_str().unwrap()])
        .args(["--out", p("report.html").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(p("report.html")).unwrap();
    let shortcut = std::fs::read_to_string(p("shortcut.html")).unwrap();
    // Self-contained: nothing is fetched from anywhere.
    for page in [&html, &shortcut] {
        for needle in ["http://", "https://", "<link", "src="] {
            let hits: Vec<&str> = page.matches(needle).collect();
            assert!(
                needle == "http://"
                    && page.matches("http://www.w3.org/2000/svg").count() == hits.len()
                    || hits.is_empty(),
                "external reference {needle} in the report"
            );
        }
        for i in 1..=alerts.len() {
            assert!(
                page.contains(&format!("id=\"alert-{i}\"")),
                "section {i} missing"
            );
        }
    }
    // Every periodic alert has its interval histogram, every fixed-size one its sizes.
    let periodic = alerts
        .iter()
        .filter(|a| a["analytic"] == "periodic_transfer")
        .count();
    let fixed = alerts
        .iter()
        .filter(|a| a["analytic"] == "fixed_size_transfer")
        .count();
    assert!(
        periodic > 0 && fixed > 0,
        "simulated day lacks cadence alerts"
    );
    assert_eq!(
        html.matches("aria-label=\"interval histogram\"").count(),
        periodic
    );
    assert_eq!(
        html.matches("aria-label=\"size distribution\"").count(),
        fixed
    );

    // The browser: the script finishes (it marks the body), no console error, and the
    // rendered DOM still holds every section.
    let (dom, log) = render(&p("report.html"), &["--dump-dom"]);
    assert!(
        dom.contains("data-ready=\"1\""),
        "script did not finish: {log}"
    );
    for line in log.lines() {
        assert!(
            !(line.contains("CONSOLE") || line.contains("Uncaught")),
            "console message: {line}"
        );
    }
    for i in 1..=alerts.len() {
        assert!(
            dom.contains(&format!("id=\"alert-{i}\"")),
            "section {i} not rendered"
        );
    }
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    render(
        &p("report.html"),
        &[
            "--window-size=1300,2600",
            &format!("--screenshot={}", shot.display()),
        ],
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "screenshot"
    );
    eprintln!(
        "report: {} bytes, screenshot {}",
        html.len(),
        shot.display()
    );
}

#[test]
fn hostile_strings_are_escaped_and_bad_lines_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("alerts.jsonl");
    std::fs::write(
        &a,
        concat!(
            r#"{"timestamp":"2026-11-20T10:00:03.221409Z","event_type":"alert","analytic":"dns_calculated_port","src_ip":"10.1.0.17","dest_ip":"71.63.201.9","dest_port":18239,"proto":"tcp","score":0.93,"reasons":["<script>alert(1)</script>"],"dns":{"query":"<img src=x onerror=alert(1)>.example","answers":["71.63.201.9"],"answered_at":"2026-11-20T10:00:01.102311Z","derivation":"o1*256+o2"}}"#,
            "\nnot json at all\n",
        ),
    )
    .unwrap();
    let out = dir.path().join("r.html");
    let o = Command::new(common::bin())
        .args([
            "report",
            "--alerts",
            a.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("1 line(s) skipped, first at line 2"), "{err}");
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(!html.contains("<script>alert(1)"));
    assert!(!html.contains("<img src=x"));
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;.example"));
    assert!(html.contains("2.119 s"), "answer to connection delay");
}
