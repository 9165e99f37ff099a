//! `g2a-genroot`, the generator's command line: a run that fails half-way
//! (here: its file system fills up) exits 2, says why, and leaves nothing
//! behind. (The generator's own promises: `genroot/src/tests.rs`.)

mod common;
use common::*;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

fn genroot(root: &Path, args: &[&str]) -> RunResult {
    let mut cmd = Command::new(genroot_bin());
    cmd.arg(root).args(args);
    run_command(cmd, RUN_TIMEOUT)
}

/// Default images and containers, with broken items (so ROOT.outside too):
/// far more than the 4 MiB file systems below hold.
const TOO_BIG: &[&str] = &["--images", "40", "--containers", "20", "--broken"];

#[track_caller]
fn assert_failed_on_enospc(r: &RunResult) {
    r.expect_code(2);
    assert!(r.stderr.contains("No space left on device"), "says why:\n{r}");
    assert!(
        r.stderr.contains("nothing is left of the partial root"),
        "says it cleaned up:\n{r}"
    );
}

#[test]
fn a_run_that_fills_its_file_system_removes_what_it_created() {
    if !require_root() {
        return;
    }
    let fs_ = TmpFs::new(4);
    let root = fs_.path().join("parents/root");
    let r = genroot(&root, TOO_BIG);
    let left: Vec<_> = fs::read_dir(fs_.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "left behind: {left:?}\n{r}");
    assert_failed_on_enospc(&r);
}

#[test]
fn a_run_that_fills_its_file_system_leaves_an_empty_root_as_it_was() {
    if !require_root() {
        return;
    }
    let fs_ = TmpFs::new(4);
    // ROOT is the file system's root directory, as when a user mounts a
    // scratch disk to generate onto.
    let root = fs_.path();
    fs::set_permissions(root, fs::Permissions::from_mode(0o750)).unwrap();
    let before = fs::metadata(root).unwrap();
    let r = genroot(root, TOO_BIG);
    let after = fs::metadata(root).unwrap();
    let left: Vec<_> = fs::read_dir(root).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "ROOT is empty again; left behind: {left:?}\n{r}");
    assert_eq!(
        (
            after.mode(),
            after.uid(),
            after.gid(),
            after.mtime(),
            after.mtime_nsec()
        ),
        (
            before.mode(),
            before.uid(),
            before.gid(),
            before.mtime(),
            before.mtime_nsec()
        ),
        "ROOT's mode, owner and mtime are back"
    );
    // ROOT.outside, beside the mount point: created by the run, removed again.
    assert!(!root.with_extension("outside").exists());
    assert_failed_on_enospc(&r);
}

#[test]
fn a_run_that_succeeds_keeps_its_root() {
    // Roots hold device nodes and files of many owners.
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().expect("a scratch directory");
    let root = dir.path().join("root");
    let r = genroot(
        &root,
        &["--images", "3", "--containers", "2", "--entries-per-layer", "0"],
    );
    r.expect_code(0);
    for sub in ["graph", "containers", "repositories"] {
        assert!(root.join(sub).exists(), "{sub}:\n{r}");
    }
}

#[test]
fn an_interrupted_run_leaves_nothing_behind() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().expect("a scratch directory");
    let root = dir.path().join("root");
    // Far more than it writes before the signal: tens of seconds of work.
    let mut cmd = Command::new(genroot_bin());
    cmd.arg(&root)
        .args(["--images", "50000", "--entries-per-layer", "0"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("g2a-genroot starts");
    // Once it has written its first images.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while fs::read_dir(root.join("graph")).map_or(0, |d| d.count()) < 3 {
        assert!(std::time::Instant::now() < deadline, "no image written within 60 s");
        assert!(child.try_wait().unwrap().is_none(), "it ended before the signal");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a pid");
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("SIGINT");
    let out = child.wait_with_output().expect("it exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("interrupted") && stderr.contains("nothing is left of the partial root"),
        "{stderr}"
    );
    let left: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
