//! Gating tests on what the machine offers. A test that cannot run here says
//! so loudly and is skipped, except under CI (`CI=true`), where a skip would
//! be counted as a pass and therefore fails the test instead. The gates name
//! the test themselves ([`test_name`]).

use std::fs::OpenOptions;

/// True when the test runs under CI (`CI=true`), where skipping is failing.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// The name of the running test, as libtest reports it (`module::test` for a
/// test inside a module): libtest runs each test on a thread it names so.
/// Call it on the test's own thread (not on one the test starts).
#[track_caller]
pub fn test_name() -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_string(),
        other => {
            panic!("test_name() on the thread {other:?}, not a test's own (libtest names each test's thread after it)")
        }
    }
}

/// True if the process runs as root (euid 0) and `/dev/fuse` opens. Otherwise
/// prints `SKIPPED <test>: needs root and /dev/fuse (...)` and returns false,
/// or panics with that message under CI. Use as
/// `if !require_root_and_fuse() { return; }`.
#[track_caller]
pub fn require_root_and_fuse() -> bool {
    let mut missing = missing_root();
    if let Err(e) = OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        missing.push(format!("cannot open /dev/fuse: {e}"));
    }
    skip_unless("root and /dev/fuse", &missing)
}

/// Like [`require_root_and_fuse`], for tests that need root only (mounts of
/// loop devices and tmpfs, device nodes, ownership, trusted.* xattrs).
#[track_caller]
pub fn require_root() -> bool {
    skip_unless("root", &missing_root())
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
/// `missing`; otherwise a loud skip naming the running test (false), or a
/// panic under CI.
#[track_caller]
pub fn skip_unless(needs: &str, missing: &[String]) -> bool {
    if missing.is_empty() {
        return true;
    }
    let msg = format!("SKIPPED {}: needs {needs} ({})", test_name(), missing.join("; "));
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
