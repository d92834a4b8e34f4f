//! The chat page in real headless Chromium (issue 7): runs `tests/browser/run.sh` against the
//! binary cargo just built. The script installs Chromium, ffmpeg and playwright-core when they
//! are missing; a missing tool fails the test, it is never skipped.

use std::process::Command;

#[test]
fn the_chat_page_works_in_headless_chromium() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg(format!("{root}/tests/browser/run.sh"))
        .arg(env!("CARGO_BIN_EXE_hermes-edge"))
        .current_dir(root)
        .output()
        .expect("run tests/browser/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // node's test runner ends with "# pass N" / "# fail N".
    let count = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("# {name} ")))
            .and_then(|n| n.trim().parse::<u32>().ok())
    };
    let (pass, fail) = (count("pass"), count("fail"));
    assert!(
        out.status.success() && fail == Some(0) && pass.unwrap_or(0) >= 20,
        "browser tests failed (pass {pass:?}, fail {fail:?})\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    println!("browser tests: {} passed", pass.unwrap_or(0));
}
