//! Mounting the read-only view: what `graph2aufs mount` refuses, `--daemon`,
//! ending a mount by signal or umount, and the commands that refuse a ROOT
//! covered by a view. What the view shows: tests/view_ro.rs.

mod common;
use common::*;

#[path = "view/fixture.rs"]
mod fixture;
use fixture::*;

use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

/// How long a `graph2aufs mount` that must be refused may take.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs a `graph2aufs` command that must not mount anything at `mountpoint`;
/// if it does, detaches it and fails.
#[track_caller]
fn run_refused(args: &[&OsStr], mountpoint: &Path) -> RunResult {
    struct Detach<'a>(&'a Path);
    impl Drop for Detach<'_> {
        fn drop(&mut self) {
            if is_mounted(self.0) {
                lazy_umount(self.0);
            }
        }
    }
    let guard = Detach(mountpoint);
    let result = run_command(g2a(args), REFUSAL_TIMEOUT);
    let mounted = is_mounted(mountpoint);
    drop(guard);
    assert!(
        !mounted,
        "{} mounted something at {}:\n{result}",
        result.command,
        mountpoint.display()
    );
    result
}

#[test]
fn mount_refuses_a_missing_root_naming_it() {
    if !require_root_and_fuse() {
        return;
    }
    let dir = tempfile::tempdir().expect("a scratch directory");
    let root = dir.path().join("no-such-root");
    let mp = dir.path().join("mp");
    fs::create_dir(&mp).expect("a mount point");
    let r = run_refused(
        &[
            OsStr::new("mount"),
            root.as_os_str(),
            mp.as_os_str(),
            "--read-only".as_ref(),
        ],
        &mp,
    );
    r.expect_code(2);
    assert!(
        r.stderr.contains(&root.display().to_string()),
        "the message names ROOT:\n{r}"
    );
}

#[test]
fn mount_refuses_a_missing_mountpoint() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(71);
    let mp = fx.dir.path().join("no-such-mountpoint");
    let r = run_refused(
        &[
            "mount".as_ref(),
            fx.root.as_os_str(),
            mp.as_os_str(),
            "--read-only".as_ref(),
        ],
        &mp,
    );
    r.expect_code(2);
    assert!(
        r.stderr.contains(&mp.display().to_string()),
        "the message names MOUNTPOINT:\n{r}"
    );
}

#[test]
fn mount_refuses_a_non_empty_mountpoint_other_than_root() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(72);
    let mp = fx.scratch("mp");
    fs::write(mp.join("something"), b"in the way\n").expect("a file in the mount point");
    let r = run_refused(
        &[
            "mount".as_ref(),
            fx.root.as_os_str(),
            mp.as_os_str(),
            "--read-only".as_ref(),
        ],
        &mp,
    );
    r.expect_code(2);
    assert!(r.stderr.contains("not empty"), "the message says why:\n{r}");
}

/// Polls `f` every 20 ms until it returns `Some`, for at most `timeout`.
fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Whether process `pid` has ended (gone, or a zombie nobody reaped yet).
fn has_ended(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn daemon_returns_once_the_view_is_usable_and_umount_ends_the_server() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(73);
    let mp = fs::canonicalize(fx.scratch("mp")).expect("a canonical mount point");
    // `--daemon` returns while its server keeps the mount: the guard watches a
    // shell that runs it, reports its exit code and its output, then stays
    // while the view is mounted.
    let script = r#""$0" mount "$1" "$2" --read-only --daemon; echo "daemon exit $?";
        while grep -q " $2 " /proc/self/mounts; do sleep 0.05; done"#;
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script).arg(bin()).arg(&fx.root).arg(&mp);
    let mount = Mount::start_command(cmd, &mp, BOUND);
    let code = wait_for(Duration::from_secs(10), || {
        let log = mount.log();
        let line = log.lines().find_map(|l| l.strip_prefix("daemon exit "))?;
        Some(line.trim().to_string())
    })
    .unwrap_or_else(|| panic!("`mount --daemon` did not return; the log:\n{}", mount.log()));
    assert_eq!(code, "0", "`mount --daemon` exits 0; the log:\n{}", mount.log());
    let names = names_in(&mp).expect("the view answers once --daemon has returned");
    assert!(
        names.contains(OsStr::new("aufs")) && names.contains(OsStr::new("repositories-aufs")),
        "{names:?}"
    );
    let log = mount.log();
    let pid: u32 = log
        .lines()
        .find_map(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("`mount --daemon` prints the server's pid; the log:\n{log}"));
    assert!(!has_ended(pid), "the server {pid} runs while the view is mounted");
    let r = run_command(
        {
            let mut c = Command::new("umount");
            c.arg(&mp);
            c
        },
        REFUSAL_TIMEOUT,
    );
    assert_eq!(r.code, 0, "umount:\n{r}");
    assert!(
        wait_for(Duration::from_secs(10), || has_ended(pid).then_some(())).is_some(),
        "the server {pid} ends once unmounted"
    );
    assert!(!is_mounted(&mp));
    drop(mount);
}

#[test]
fn sigterm_and_sigint_unmount_a_foreground_mount_cleanly() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(74);
    let mp = fx.scratch("mp");
    for signal in [Signal::TERM, Signal::INT] {
        let mount = Mount::start(&fx.root, &mp, &["--read-only"], BOUND);
        names_in(&mp).expect("the view answers");
        let pid = Pid::from_raw(mount.pid() as i32).expect("a server pid");
        rustix::process::kill_process(pid, signal).expect("signalling the server");
        let status = mount
            .wait_exit(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("the server did not exit on {signal:?}; its log:\n{}", mount.log()));
        assert!(
            status.success(),
            "{signal:?}: the server exited with {status}; its log:\n{}",
            mount.log()
        );
        assert!(
            !is_mounted(&mp),
            "{signal:?}: nothing is left mounted at {}",
            mp.display()
        );
        drop(mount);
    }
}

#[test]
fn migrate_verify_and_rollback_refuse_a_root_covered_by_a_view() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(75);
    let before = snapshot(&fx.root);
    // ROOT given as both ROOT and MOUNTPOINT.
    let mount = Mount::start(&fx.root, &fx.root, &["--read-only"], BOUND);
    for command in ["migrate", "verify", "rollback"] {
        let r = run([OsStr::new(command), fx.root.as_os_str()]);
        r.expect_code(2);
        assert!(
            r.stderr.contains("covered by a live graph2aufs mount"),
            "{command} says why:\n{r}"
        );
    }
    unmount_cleanly(mount);
    assert_same(
        &before,
        &snapshot(&fx.root),
        "ROOT before (a) and after (b) the refused commands",
    );
}

// ---------------------------------------------------------------------------
// 8. Read-write mounts
// ---------------------------------------------------------------------------

#[test]
fn a_read_write_mount_is_refused_while_another_view_shows_root() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(81);
    let before = snapshot(&fx.root);
    let (mp1, mp2) = (fx.scratch("mp1"), fx.scratch("mp2"));
    let view = Mount::start(&fx.root, &mp1, &["--read-only"], Duration::from_secs(60));
    let (root, mount) = (fx.root.as_os_str(), OsStr::new("mount"));
    for args in [
        vec![mount, root, mp2.as_os_str()],
        vec![mount, root, mp2.as_os_str(), OsStr::new("--daemon")],
    ] {
        let r = run_refused(&args, &mp2);
        r.expect_code(2);
        assert!(
            r.stderr.contains("live graph2aufs mount") && r.stderr.contains(mp1.to_str().unwrap()),
            "the refusal names the view that shows ROOT:\n{r}"
        );
    }
    view.unmount();
    assert_same(
        &before,
        &snapshot(&fx.root),
        "ROOT before (a) and after (b) the refused mounts",
    );
}

#[test]
fn mount_refuses_a_mountpoint_inside_root() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(76);
    let mp = fx.root.join("volumes").join("view");
    fs::create_dir_all(&mp).expect("a mount point inside ROOT");
    let r = run_refused(
        &[
            OsStr::new("mount"),
            fx.root.as_os_str(),
            mp.as_os_str(),
            OsStr::new("--read-only"),
        ],
        &mp,
    );
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("inside ROOT"), "{r}");
}

#[test]
fn migrate_and_rollback_refuse_a_root_a_view_shows_from_elsewhere_while_plan_reads_it() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(77);
    let mp = fx.scratch("mp");
    let before = snapshot(&fx.root);
    let mount = Mount::start(&fx.root, &mp, &["--read-only"], BOUND);
    for cmd in ["migrate", "rollback"] {
        let r = run([OsStr::new(cmd), fx.root.as_os_str()]);
        assert_eq!(r.code, 2, "{r}");
        assert!(r.stderr.contains("shown by a live graph2aufs mount"), "{r}");
    }
    let r = run([OsStr::new("plan"), fx.root.as_os_str()]);
    assert_eq!(
        r.code, 1,
        "plan reads a viewed ROOT (and reports its broken items):\n{r}"
    );
    mount.unmount();
    assert_same(&before, &snapshot(&fx.root), "ROOT");
}
