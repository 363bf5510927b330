//! `consensus check-history --html FILE` opened in a real browser: headless
//! Chromium loads the page (scripts run), and the test reads the rendered
//! DOM: one row per client, one bar per operation, the blocked operation and
//! the violation marker, the linearization order on a linearizable key.
//!
//! Chromium is the Debian package `chromium` (or the binary named by
//! `CHROMIUM`). When it is missing the test prints a skip line and passes,
//! except under `CI=true`, where it fails: CI must install it.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn chromium() -> Option<PathBuf> {
    let name = std::env::var_os("CHROMIUM").unwrap_or_else(|| "chromium".into());
    let path = PathBuf::from(&name);
    if path.is_absolute() {
        return path.exists().then_some(path);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(&name))
            .find(|p| p.is_file())
    })
}

/// A scratch directory of this test process, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("consensus-html-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Loads `page` in headless Chromium, lets its scripts run, returns the DOM.
fn rendered_dom(browser: &Path, page: &Path, scratch: &Path) -> String {
    let profile = scratch.join("profile");
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=2000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the DOM is UTF-8")
}

/// Runs `consensus check-history FILE --html OUT`; returns its exit code.
fn check_with_html(history: &str, scratch: &Path) -> (i32, PathBuf) {
    let file = scratch.join("history.json");
    std::fs::write(&file, history).unwrap();
    let html = scratch.join("history.html");
    let status = Command::new(env!("CARGO_BIN_EXE_consensus"))
        .arg("check-history")
        .arg(&file)
        .arg("--html")
        .arg(&html)
        .output()
        .expect("run consensus");
    (status.status.code().unwrap_or(-1), html)
}

fn op(id: u64, client: u64, command: &str, invoke: u64, outcome: &str) -> String {
    format!(
        r#"{{"id":{id},"client":{client},"command":{command},"invoke_us":{invoke},"outcome":{outcome}}}"#
    )
}

fn browser_or_skip(test: &str) -> Option<PathBuf> {
    match chromium() {
        Some(b) => Some(b),
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "{test}: chromium is not installed (CI must install the Debian package `chromium`)"
            )
        }
        None => {
            println!("SKIPPED {test}: chromium not found (install the Debian package `chromium` or set CHROMIUM)");
            None
        }
    }
}

#[test]
fn violation_is_drawn_and_marked_in_chromium() {
    let Some(browser) = browser_or_skip("violation_is_drawn_and_marked_in_chromium") else {
        return;
    };
    let scratch = Scratch::new("violation");
    // Client 1 writes 1; client 2 then reads nothing (stale); client 3's
    // write of 2 has an unknown outcome; client 4 reads 1 concurrently.
    let history = format!(
        r#"{{"operations":[{},{},{},{}]}}"#,
        op(
            0,
            1,
            r#"{"Put":{"key":"x","value":"1"}}"#,
            0,
            r#"{"status":"ok","output":"Ok","complete_us":10}"#
        ),
        op(
            1,
            2,
            r#"{"Get":{"key":"x"}}"#,
            20,
            r#"{"status":"ok","output":{"Value":null},"complete_us":30}"#
        ),
        op(
            2,
            3,
            r#"{"Put":{"key":"x","value":"2"}}"#,
            2,
            r#"{"status":"unknown"}"#
        ),
        op(
            3,
            4,
            r#"{"Get":{"key":"x"}}"#,
            5,
            r#"{"status":"ok","output":{"Value":"1"},"complete_us":25}"#
        ),
    );
    let (code, html) = check_with_html(&history, &scratch.0);
    assert_eq!(code, 1, "not linearizable exits 1");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no network"
    );
    let dom = rendered_dom(&browser, &html, &scratch.0);
    assert!(
        dom.contains(r#"data-rendered="yes""#),
        "the script ran: {dom}"
    );
    assert_eq!(
        dom.matches(r#"class="row""#).count(),
        4,
        "one row per client"
    );
    assert_eq!(
        dom.matches(r#"class="op"#).count(),
        4,
        "one bar per operation"
    );
    assert_eq!(dom.matches("op blocked").count(), 1, "the blocked op");
    assert!(dom.contains(r#"data-op="1""#) && dom.contains("could not be placed"));
    assert!(
        dom.contains(r#"class="op unknown"#),
        "the unknown outcome is open-ended"
    );
    assert!(
        dom.contains(r#"class="violation-marker" id="violation-0""#),
        "the marker"
    );
    assert!(dom.contains("not linearizable"));
}

#[test]
fn linearization_order_is_shown_in_chromium() {
    let Some(browser) = browser_or_skip("linearization_order_is_shown_in_chromium") else {
        return;
    };
    let scratch = Scratch::new("linearizable");
    let history = format!(
        r#"{{"operations":[{},{}]}}"#,
        op(
            0,
            1,
            r#"{"Put":{"key":"x","value":"1"}}"#,
            0,
            r#"{"status":"ok","output":"Ok","complete_us":10}"#
        ),
        op(
            1,
            2,
            r#"{"Get":{"key":"x"}}"#,
            5,
            r#"{"status":"ok","output":{"Value":"1"},"complete_us":30}"#
        ),
    );
    let (code, html) = check_with_html(&history, &scratch.0);
    assert_eq!(code, 0, "linearizable exits 0");
    let dom = rendered_dom(&browser, &html, &scratch.0);
    assert_eq!(dom.matches(r#"class="row""#).count(), 2);
    assert!(dom.contains("#1 of 2 in the linearization"), "{dom}");
    assert!(dom.contains("#2 of 2 in the linearization"));
    assert!(!dom.contains(r#"class="violation-marker""#));
}

/// `simulate --html FILE` writes the same page for the run's history.
#[test]
fn simulate_writes_the_page() {
    let scratch = Scratch::new("simulate");
    let html = scratch.0.join("run.html");
    let o = Command::new(env!("CARGO_BIN_EXE_consensus"))
        .args(["simulate", "--duration", "1", "--faults", "none", "--html"])
        .arg(&html)
        .output()
        .expect("run consensus");
    assert_eq!(o.status.code(), Some(0));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains(r#""verdict":"linearizable""#));
    assert!(page.contains("seed 1"));
    if let Some(browser) = chromium() {
        let dom = rendered_dom(&browser, &html, &scratch.0);
        assert!(dom.contains(r#"data-rendered="yes""#));
        assert!(dom.matches(r#"<div class="op"#).count() > 10);
    }
}
