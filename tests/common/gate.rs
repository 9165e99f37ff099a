//! Gating tests on what the machine offers. A test that cannot run here says
//! so loudly and is skipped, except under CI (`CI=true`), where a skip would
//! be counted as a pass and therefore fails the test instead.

use std::fs::OpenOptions;

/// True when the test runs under CI (`CI=true`), where skipping is failing.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// True if the process runs as root (euid 0) and `/dev/fuse` opens. Otherwise
/// prints `SKIPPED <test>: needs root and /dev/fuse (...)` and returns false,
/// or panics with that message under CI. Use as
/// `if !require_root_and_fuse("name") { return; }`.
#[track_caller]
pub fn require_root_and_fuse(test: &str) -> bool {
    let mut missing = missing_root();
    if let Err(e) = OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        missing.push(format!("cannot open /dev/fuse: {e}"));
    }
    skip_unless(test, "root and /dev/fuse", &missing)
}

/// Like [`require_root_and_fuse`], for tests that need root only (mounts of
/// loop devices and tmpfs, device nodes, ownership, trusted.* xattrs).
#[track_caller]
pub fn require_root(test: &str) -> bool {
    skip_unless(test, "root", &missing_root())
}

fn missing_root() -> Vec<String> {
    let euid = rustix::process::geteuid();
    if euid.is_root() {
        Vec::new()
    } else {
        vec![format!("euid is {}", euid.as_raw())]
    }
}

/// The decision shared by the `require_*` gates: true when nothing is
/// `missing`; otherwise a loud skip (false), or a panic under CI.
#[track_caller]
pub fn skip_unless(test: &str, needs: &str, missing: &[String]) -> bool {
    if missing.is_empty() {
        return true;
    }
    let msg = format!("SKIPPED {test}: needs {needs} ({})", missing.join("; "));
    if in_ci() {
        panic!("{msg}; CI=true, and CI must not count a skip as a pass");
    }
    let bar = "!".repeat(msg.len().min(100));
    loud(&format!("\n{bar}\n{msg}\n{bar}\n"));
    false
}

/// Writes straight to the process's standard error, past libtest's output
/// capture (which only sees `print!`/`eprint!` and would hide the message of
/// a passing test, or lose it if the process aborts).
pub fn loud(msg: &str) {
    use std::io::Write;
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{msg}");
    let _ = stderr.flush();
}
