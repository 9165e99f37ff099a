//! The life cycle of `graph2aufs mount` and of ROOT: `--daemon` detaches
//! as daemons do (streams, logs, failures before the view is usable are
//! its exit status); after `umount` returns the next command simply works;
//! dead views are called dead; which views block which commands; ROOTs
//! that are not Docker roots, unreadable ROOTs and an `--aufs-dir` inside
//! ROOT are refused with nothing changed; the read-write view retires once
//! nothing is left to migrate, and the shipped systemd unit allows it.

mod common;
use common::*;

#[path = "systemd/unit.rs"]
mod unit;
use unit::{shipped_unit, unit_command};

#[path = "view/fixture.rs"]
mod fixture;
use fixture::*;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// How long a command that must return at once may take (far more than
/// it needs: the bound only turns a hang into a failure).
const PROMPT: Duration = Duration::from_secs(60);

/// Slows the background migration so that a read-write view still has
/// work whenever a test unmounts it.
const SLOW: (&str, &str) = ("GRAPH2AUFS_ITEM_DELAY_MS", "1000");

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// `graph2aufs ARGS` with `env`, run to completion within [`PROMPT`].
#[track_caller]
fn g2a_env(args: &[&OsStr], env: &[(&str, &str)]) -> RunResult {
    let mut cmd = g2a(args);
    cmd.envs(env.iter().copied());
    run_command(cmd, PROMPT)
}

/// Whether a graph2aufs (FUSE) view is mounted at `p`.
fn viewed(p: &Path) -> bool {
    mounts_at(p).iter().any(|m| m.fstype.starts_with("fuse"))
}

/// Waits (bounded) for process `pid` to end.
#[track_caller]
fn wait_gone(pid: i32) {
    let deadline = Instant::now() + PROMPT;
    while !has_ended(pid) {
        assert!(Instant::now() < deadline, "process {pid} did not end");
        thread::sleep(Duration::from_millis(20));
    }
}

#[track_caller]
fn umount(p: &Path) -> RunResult {
    let mut c = Command::new("umount");
    c.arg(p);
    run_command(c, PROMPT)
}

/// A `--daemon` server started by a test: when dropped (or past its
/// bound) its view is detached and the server killed, unless it was
/// [`Daemon::disown`]ed after an unmount.
struct Daemon {
    mp: PathBuf,
    pid: i32,
    done: Arc<AtomicBool>,
}

impl Daemon {
    /// Runs `graph2aufs ARGS` (a `mount ... --daemon` whose view appears at
    /// `mp`), which must print the server's pid and exit 0.
    #[track_caller]
    fn start(args: &[&OsStr], mp: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut guard = Daemon::watch(mp, 0);
        let r = g2a_env(args, env);
        assert_eq!(r.code, 0, "the daemon did not start:\n{r}");
        guard.pid = r
            .stdout
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no pid printed:\n{r}"));
        assert!(viewed(mp), "no view at {} once --daemon returned:\n{r}", mp.display());
        guard
    }

    /// A guard for whatever view appears at `mp` (server `pid`, if known).
    fn watch(mp: &Path, pid: i32) -> Daemon {
        let done = Arc::new(AtomicBool::new(false));
        let (d, mp2) = (done.clone(), mp.to_path_buf());
        thread::spawn(move || {
            let deadline = Instant::now() + BOUND * 2;
            while Instant::now() < deadline {
                if d.load(Ordering::SeqCst) {
                    return;
                }
                thread::sleep(Duration::from_millis(100));
            }
            loud(&format!(
                "WATCHDOG: a daemon's view at {} outlived its bound",
                mp2.display()
            ));
            if viewed(&mp2) {
                lazy_umount(&mp2);
            }
        });
        Daemon {
            mp: mp.to_path_buf(),
            pid,
            done,
        }
    }

    /// Its view was unmounted: the server ends by itself (not waited for).
    fn disown(self) {
        self.done.store(true, Ordering::SeqCst);
        std::mem::forget(self);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if viewed(&self.mp) {
            lazy_umount(&self.mp);
        }
        if let Some(p) = rustix::process::Pid::from_raw(self.pid) {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        }
    }
}

/// `cp -a src dst`.
#[track_caller]
fn copy_tree(src: &Path, dst: &Path) {
    let mut cp = Command::new("cp");
    cp.arg("-a").arg(src).arg(dst);
    run_command(cp, RUN_TIMEOUT).expect_code(0);
}

// ---------------------------------------------------------------------------
// Issue 13.8: after `umount ROOT` returns, the next command simply works.
// ---------------------------------------------------------------------------

#[test]
fn mount_and_migrate_right_after_umount_are_never_refused_for_the_lock() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(131);
    let pristine = fx.dir.path().join("pristine");
    copy_tree(&fx.root, &pristine);
    let root = fx.root.as_os_str();
    let mount = [os("mount"), root, os("--daemon")];
    // The README's recovery sequence, again and again.
    let mut view = Daemon::start(&mount, &fx.root, &[SLOW]);
    for i in 0..20 {
        umount(&fx.root).expect_code(0);
        view.disown();
        let r = g2a_env(&mount, &[SLOW]);
        assert_eq!(r.code, 0, "round {i}: `mount --daemon` right after umount:\n{r}");
        view = Daemon::watch(&fx.root, r.stdout.trim().parse().expect("a pid"));
        assert!(viewed(&fx.root), "round {i}: no view:\n{r}");
    }
    umount(&fx.root).expect_code(0);
    view.disown();
    // The hand-over to an offline migrate, on a fresh copy each time.
    for i in 0..20 {
        let copy = fx.dir.path().join(format!("copy-{i}"));
        copy_tree(&pristine, &copy);
        let view = Daemon::start(&[os("mount"), copy.as_os_str(), os("--daemon")], &copy, &[SLOW]);
        umount(&copy).expect_code(0);
        view.disown();
        let r = run([os("migrate"), copy.as_os_str()]);
        // 1: the fixture's broken items are quarantined and reported.
        assert_eq!(r.code, 1, "round {i}: `migrate` right after umount:\n{r}");
        fs::remove_dir_all(&copy).expect("removing the copy");
    }
}

#[test]
fn a_live_holder_of_the_lock_is_refused_at_once_naming_it() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new(132);
    // This test process holds ROOT's lock, as a running graph2aufs would.
    fs::create_dir(fx.root.join(".graph2aufs")).unwrap();
    let lock = fs::File::create(fx.root.join(".graph2aufs/lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).expect("the lock");
    let t = Instant::now();
    let r = run([os("migrate"), fx.root.as_os_str()]);
    r.expect_code(2);
    assert!(
        r.stderr.contains("locked by") && r.stderr.contains(&format!("(pid {})", std::process::id())),
        "names the holder:\n{r}"
    );
    // (Far below the wait for a mount server that is ending.)
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "refused only after {:?}",
        t.elapsed()
    );
}

// ---------------------------------------------------------------------------
// Issue 13.9: `--daemon` detaches from the caller's streams; logs.
// ---------------------------------------------------------------------------

/// Runs `sh -c SCRIPT bin ARGS...` within [`PROMPT`] (the caller guards
/// the view it mounts).
#[track_caller]
fn shell(script: &str, args: &[&OsStr], env: &[(&str, &str)]) -> RunResult {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .arg(bin())
        .args(args)
        .envs(env.iter().copied());
    run_command(cmd, PROMPT)
}

#[test]
fn a_daemon_piped_into_cat_returns_at_once_and_logs_to_the_named_file() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(133);
    let mp = fx.scratch("mp");
    let log = fx.dir.path().join("g2a.log");
    let script = r#""$0" mount "$1" "$2" --read-only --daemon --log-file "$3" 2>&1 | cat; echo "exit $?""#;
    let args = [fx.root.as_os_str(), mp.as_os_str(), log.as_os_str()];
    let guard = Daemon::watch(&mp, 0);
    let r = shell(script, &args, &[]);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "the pid line and the exit line only:\n{r}");
    assert_eq!(lines[1], "exit 0", "{r}");
    let pid: i32 = lines[0].parse().unwrap_or_else(|_| panic!("the pid line:\n{r}"));
    assert!(
        viewed(&mp) && names_in(&mp).is_ok_and(|n| n.contains(os("aufs"))),
        "{r}"
    );
    let logged = fs::read_to_string(&log).expect("the log file");
    assert!(
        logged.contains(&format!("mounted at {}", mp.display())),
        "the server logs to the file:\n{logged}"
    );
    umount(&mp).expect_code(0);
    wait_gone(pid);
    let logged = fs::read_to_string(&log).expect("the log file");
    assert!(logged.contains("unmounted"), "{logged}");
    drop(guard);
}

#[test]
fn without_a_log_file_a_daemon_logs_to_the_system_log_and_leaves_the_pipe() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(134);
    let mp = fx.scratch("mp");
    let sock_path = fx.dir.path().join("log.sock");
    let syslog = UnixDatagram::bind(&sock_path).expect("a syslog socket");
    syslog.set_read_timeout(Some(PROMPT)).expect("a read timeout");
    let script = r#""$0" mount "$1" "$2" --read-only --daemon 2>&1 | cat; echo "exit $?""#;
    let guard = Daemon::watch(&mp, 0);
    let r = shell(
        script,
        &[fx.root.as_os_str(), mp.as_os_str()],
        &[("GRAPH2AUFS_SYSLOG_SOCKET", sock_path.to_str().unwrap())],
    );
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "the pid line and the exit line only:\n{r}");
    assert_eq!(lines[1], "exit 0", "{r}");
    let pid: i32 = lines[0].parse().unwrap_or_else(|_| panic!("the pid line:\n{r}"));
    let mut messages = Vec::new();
    let mut next = |want: &str| -> String {
        let mut buf = [0u8; 4096];
        loop {
            let n = syslog
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("no syslog message with {want:?} ({e}); got {messages:#?}"));
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            messages.push(m.clone());
            if m.contains(want) {
                return m;
            }
        }
    };
    let m = next("mounted at");
    // syslog(3)'s form: facility daemon, severity info, tag and pid.
    assert!(m.starts_with(&format!("<30>graph2aufs[{pid}]: ")), "{m}");
    umount(&mp).expect_code(0);
    next("unmounted");
    wait_gone(pid);
    drop(guard);
}

#[test]
fn a_foreground_mount_with_a_log_file_logs_there() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(147);
    let mp = fx.scratch("mp");
    let log = fx.dir.path().join("g2a.log");
    let view = Mount::start(
        &fx.root,
        &mp,
        &["--read-only", "--log-file", log.to_str().unwrap()],
        BOUND,
    );
    names_in(&mp).expect("the view answers");
    let stderr = view.log();
    unmount_cleanly(view);
    let logged = fs::read_to_string(&log).expect("the log file");
    assert!(
        logged.contains(&format!("mounted at {}", mp.display())) && logged.contains("unmounted"),
        "{logged}"
    );
    assert!(!stderr.contains("mounted at"), "not on stderr too:\n{stderr}");
}

#[test]
fn an_unwritable_log_file_is_the_daemons_error_and_nothing_mounts() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(135);
    let mp = fx.scratch("mp");
    let log = fx.dir.path().join("no-such-dir").join("g2a.log");
    let _guard = Daemon::watch(&mp, 0);
    let r = run([
        os("mount"),
        fx.root.as_os_str(),
        mp.as_os_str(),
        os("--read-only"),
        os("--daemon"),
        os("--log-file"),
        log.as_os_str(),
    ]);
    r.expect_code(2);
    assert!(r.stderr.contains(&log.display().to_string()), "{r}");
    assert!(!viewed(&mp), "{r}");
}

// ---------------------------------------------------------------------------
// Issue 13.10 and 14.9: failures before the view is usable are the exit
// status of `--daemon`, in one line.
// ---------------------------------------------------------------------------

/// Processes whose command line names `needle`.
fn processes_naming(needle: &OsStr) -> Vec<i32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if cmd.split(|&b| b == 0).any(|a| a == needle.as_encoded_bytes()) && !has_ended(pid) {
            out.push(pid);
        }
    }
    out
}

#[test]
fn a_daemon_that_cannot_serve_fails_with_its_reason_and_leaves_no_server() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(136);
    let mp = fx.scratch("mp");
    let missing = fx.dir.path().join("no-such-mountpoint");
    let _guard = Daemon::watch(&mp, 0);
    let base = [os("mount"), fx.root.as_os_str()];
    let cases: Vec<(Vec<&OsStr>, &str)> = vec![
        (
            vec![mp.as_os_str(), os("--read-only"), os("--threads"), os("0")],
            "threads",
        ),
        (vec![mp.as_os_str(), os("--threads"), os("0")], "threads"),
        (vec![missing.as_os_str(), os("--read-only")], "does not exist"),
    ];
    for (extra, why) in cases {
        let mut args = base.to_vec();
        args.extend(extra);
        args.push(os("--daemon"));
        let r = run(&args);
        r.expect_code(2);
        assert!(r.stderr.contains(why), "the reason ({why}):\n{r}");
        assert!(r.stdout.trim().is_empty(), "no pid:\n{r}");
        assert!(!viewed(&mp), "{r}");
        thread::sleep(Duration::from_millis(200));
        assert!(
            processes_naming(fx.root.as_os_str()).is_empty(),
            "no server is left behind:\n{r}"
        );
        if why == "does not exist" {
            assert_eq!(r.stderr.trim().lines().count(), 1, "one line:\n{r}");
        }
    }
}

// ---------------------------------------------------------------------------
// Issue 13.13: `status --aufs-dir` of a ROOT a view serves.
// ---------------------------------------------------------------------------

#[test]
fn status_with_aufs_dir_reads_the_live_status_of_a_mounted_view() {
    if !require_root_and_fuse() {
        return;
    }
    // (A root without Docker 1.8's aufs/, which --aufs-dir would refuse.)
    let fx = Fixture::new(137);
    fs::remove_dir_all(fx.root.join("aufs")).unwrap();
    let aufs = fx.scratch("aufs-elsewhere");
    let aufs_arg = [os("--aufs-dir"), aufs.as_os_str()];
    let mut args = vec![os("mount"), fx.root.as_os_str(), os("--daemon")];
    args.extend(aufs_arg);
    let _view = Daemon::start(&args, &fx.root, &[SLOW]);
    let mut status = vec![os("status"), fx.root.as_os_str(), os("--json")];
    status.extend(aufs_arg);
    let r = run(&status);
    assert!(r.code == 0 || r.code == 1, "{r}");
    assert!(r.json()["live"].is_object(), "the live status:\n{r}");
}

// ---------------------------------------------------------------------------
// Issue 13.14 and 14.4: refused with nothing changed.
// ---------------------------------------------------------------------------

/// Every command, with `extra` arguments; mounts at `mp`.
fn every_command<'a>(root: &'a OsStr, mp: &'a OsStr, extra: &[&'a OsStr]) -> Vec<Vec<&'a OsStr>> {
    let mut out: Vec<Vec<&OsStr>> = vec![
        vec![os("plan"), root],
        vec![os("migrate"), root],
        vec![os("status"), root],
        vec![os("verify"), root],
        vec![os("rollback"), root],
        vec![os("mount"), root, mp, os("--read-only")],
        vec![os("mount"), root, os("--foreground")],
        vec![os("mount"), root, os("--daemon")],
    ];
    for c in &mut out {
        c.extend(extra);
    }
    out
}

#[test]
fn an_aufs_dir_inside_root_is_refused_by_every_command_with_nothing_changed() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(138);
    let mp = fx.scratch("mp");
    // A directory of a layer's own data, as an operator might mistype it.
    let inside = fx.root.join("graph").join(&fx.summary.images[0]).join("layer/etc");
    fs::create_dir_all(&inside).expect("a directory in a layer");
    let before = snapshot(&fx.root);
    let _guards = (Daemon::watch(&mp, 0), Daemon::watch(&fx.root, 0));
    for args in every_command(
        fx.root.as_os_str(),
        mp.as_os_str(),
        &[os("--aufs-dir"), inside.as_os_str()],
    ) {
        let r = run(&args);
        r.expect_code(2);
        assert!(r.stderr.contains("inside ROOT"), "{r}");
        assert!(!viewed(&mp) && !viewed(&fx.root), "{r}");
        assert_same(
            &before,
            &snapshot(&fx.root),
            &format!("ROOT before and after {}", r.command),
        );
    }
}

#[test]
fn a_directory_that_is_not_a_docker_root_is_refused_by_every_command_with_nothing_written() {
    if !require_root_and_fuse() {
        return;
    }
    let dir = tempfile::tempdir().expect("a scratch directory");
    let root = dir.path().join("not-docker");
    fs::create_dir_all(root.join("data")).unwrap();
    fs::write(root.join("notes.txt"), b"not a Docker root\n").unwrap();
    let mp = dir.path().join("mp");
    fs::create_dir(&mp).unwrap();
    let before = snapshot(&root);
    let _guards = (Daemon::watch(&mp, 0), Daemon::watch(&root, 0));
    for args in every_command(root.as_os_str(), mp.as_os_str(), &[]) {
        let r = run(&args);
        r.expect_code(2);
        assert!(
            r.stderr.contains("not a Docker root") && r.stderr.contains("graph/") && r.stderr.contains("containers/"),
            "names what is missing:\n{r}"
        );
        assert!(!viewed(&mp) && !viewed(&root), "{r}");
        assert_same(
            &before,
            &snapshot(&root),
            &format!("the directory before and after {}", r.command),
        );
    }
}

// ---------------------------------------------------------------------------
// Issue 14.5: the view retires; the systemd unit allows it.
// ---------------------------------------------------------------------------

const RETIRED: &str = "nothing left to migrate";

#[test]
fn a_read_write_mount_of_a_migrated_root_does_not_mount_and_exits_0() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(139);
    let root = fx.migrated_copy();
    let before = snapshot(&root);
    let _guard = Daemon::watch(&root, 0);
    for extra in [&[os("--foreground")][..], &[os("--daemon")]] {
        let mut args = vec![os("mount"), root.as_os_str()];
        args.extend(extra);
        let r = run(&args);
        r.expect_code(0);
        assert!(r.stdout.contains(RETIRED), "it says so:\n{r}");
        assert!(!viewed(&root), "nothing mounted:\n{r}");
        assert_same(
            &before,
            &snapshot(&root),
            &format!("ROOT before and after {}", r.command),
        );
    }
    // Inspection stays useful: a read-only view of it still mounts.
    let mp = fx.scratch("mp");
    let view = Mount::start(&root, &mp, &["--read-only"], BOUND);
    assert!(names_in(&mp.join("aufs/diff")).is_ok_and(|n| !n.is_empty()));
    unmount_cleanly(view);
}

/// A container the daemon removed after its migration (an interrupted
/// `docker rm`: `containers/<id>` left, its driver layers gone) is settled
/// too: the view has nothing to do for it, so it retires (it used to mount
/// again at every boot).
#[test]
fn a_read_write_mount_of_a_migrated_root_with_a_removed_container_retires() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(141);
    let root = fx.migrated_copy();
    let (cid, _, _) = fx
        .summary
        .containers
        .iter()
        .find(|c| c.2)
        .expect("a started container")
        .clone();
    for name in [cid.clone(), format!("{cid}-init")] {
        for d in ["diff", "mnt"] {
            fs::remove_dir_all(root.join("aufs").join(d).join(&name)).unwrap();
        }
        fs::remove_file(root.join("aufs/layers").join(&name)).unwrap();
    }
    assert!(root.join("containers").join(&cid).is_dir());
    let before = snapshot(&root);
    let _guard = Daemon::watch(&root, 0);
    let r = run([os("mount"), root.as_os_str(), os("--daemon"), os("--json")]);
    if viewed(&root) {
        lazy_umount(&root);
    }
    r.expect_code(0);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}:\n{r}"));
    assert_eq!(doc["mounted"], false, "the view retires:\n{r}");
    let reason = doc["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(RETIRED) && reason.contains("1 removed by the daemon"),
        "it says why: {reason}"
    );
    assert_same(&before, &snapshot(&root), "ROOT before and after the retired mount");
}

#[test]
fn a_read_write_mount_with_items_left_to_migrate_mounts() {
    if !require_root_and_fuse() {
        return;
    }
    // One item put back in the legacy layout: the view has work again.
    let fx = Fixture::new(140);
    let root = fx.migrated_copy();
    let id = &fx.summary.images[fx.summary.images.len() - 1];
    fs::rename(
        root.join("aufs/diff").join(id),
        root.join("graph").join(id).join("layer"),
    )
    .unwrap();
    fs::remove_file(root.join("aufs/layers").join(id)).unwrap();
    let view = Daemon::start(&[os("mount"), root.as_os_str(), os("--daemon")], &root, &[]);
    assert!(root.join("aufs/diff").join(id).is_dir(), "the view shows the item");
    drop(view);
}

#[track_caller]
fn run_unit(unit: &str, key: &str, root: &Path, env: &[(&str, &str)]) -> RunResult {
    let line = unit_command(unit, key, root);
    let mut cmd = Command::new(&line[0]);
    cmd.args(&line[1..]).envs(env.iter().copied());
    run_command(cmd, PROMPT)
}

#[test]
fn the_systemd_unit_serves_a_root_on_its_own_file_system_then_accepts_the_retired_view() {
    if !require_root_and_fuse() {
        return;
    }
    let unit = shipped_unit();
    for line in ["Type=forking", "RemainAfterExit=yes"] {
        assert!(unit.lines().any(|l| l == line), "the unit has {line}:\n{unit}");
    }
    // systemd itself accepts the unit (with the test's binary).
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let copy = scratch.path().join("graph2aufs.service");
    fs::write(
        &copy,
        unit.replace("/usr/local/bin/graph2aufs", &bin().display().to_string()),
    )
    .unwrap();
    let mut verify = Command::new("systemd-analyze");
    verify.arg("verify").arg(&copy);
    let r = run_command(verify, PROMPT);
    assert!(
        r.code == 0 && r.stderr.trim().is_empty(),
        "systemd-analyze verify:\n{r}"
    );

    // /var/lib/docker as its own file system, as on many hosts.
    let tmpfs = TmpFs::new(64);
    let root = tmpfs.path().to_path_buf();
    let fx = Fixture::new(141);
    for e in fs::read_dir(&fx.root).unwrap().flatten() {
        copy_tree(&e.path(), &root.join(e.file_name()));
    }
    let on_tmpfs = |what: &str| {
        let m = mounts_at(&root);
        assert!(
            m.first().is_some_and(|m| m.fstype == "tmpfs"),
            "{what}: ROOT's own file system is still mounted: {m:?}"
        );
    };
    // Live: ExecStart returns once the view is usable; ExecStop unmounts it.
    let guard = Daemon::watch(&root, 0);
    let r = run_unit(&unit, "ExecStart", &root, &[SLOW]);
    r.expect_code(0);
    let pid: i32 = r.stdout.trim().parse().unwrap_or_else(|_| panic!("a pid:\n{r}"));
    assert!(viewed(&root));
    run_unit(&unit, "ExecStop", &root, &[]).expect_code(0);
    assert!(!viewed(&root));
    on_tmpfs("after the live view's stop");
    wait_gone(pid);
    drop(guard);
    // Every item migrated: ExecStart exits 0 with no server (the unit stays
    // active: RemainAfterExit), and ExecStop leaves ROOT's file system.
    run([os("migrate"), root.as_os_str()]).expect_code(1);
    let _guard = Daemon::watch(&root, 0);
    let r = run_unit(&unit, "ExecStart", &root, &[]);
    r.expect_code(0);
    assert!(r.stdout.contains(RETIRED) && !viewed(&root), "{r}");
    assert!(processes_naming(root.as_os_str()).is_empty(), "no server:\n{r}");
    run_unit(&unit, "ExecStop", &root, &[]).expect_code(0);
    on_tmpfs("after the retired view's stop");
}

// ---------------------------------------------------------------------------
// Issue 14.9: a dead view is called dead; a view's own mount point.
// ---------------------------------------------------------------------------

#[test]
fn every_command_calls_a_dead_view_dead_and_names_the_recovery() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(142);
    let view = Daemon::start(&[os("mount"), fx.root.as_os_str(), os("--daemon")], &fx.root, &[SLOW]);
    let pid = rustix::process::Pid::from_raw(view.pid).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    wait_gone(view.pid);
    // (The leader thread shows as ended while the other serving threads
    // may still answer a last request: the view is dead once the kernel
    // says so.)
    let dead = wait_for(PROMPT, || {
        matches!(rustix::fs::statfs(&fx.root), Err(rustix::io::Errno::NOTCONN)).then_some(())
    });
    assert!(dead.is_some(), "the killed view still answers statfs");
    let recovery = format!("umount -l {}", fx.root.display());
    for command in ["plan", "status", "verify", "migrate", "rollback"] {
        let r = run([os(command), fx.root.as_os_str()]);
        r.expect_code(2);
        assert!(
            r.stderr.contains("dead graph2aufs view") && r.stderr.contains(&recovery),
            "{command} calls it dead and names the recovery:\n{r}"
        );
        assert_eq!(r.stderr.trim().lines().count(), 1, "one line:\n{r}");
    }
    // The other recovery: mounting again detaches it.
    drop(view);
}

#[test]
fn mounting_again_on_a_views_mount_point_says_already_mounted() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(143);
    let mp = fx.scratch("mp");
    let view = Mount::start(&fx.root, &mp, &["--read-only"], BOUND);
    for daemon in [false, true] {
        let mut args = vec![os("mount"), fx.root.as_os_str(), mp.as_os_str(), os("--read-only")];
        if daemon {
            args.push(os("--daemon"));
        }
        let r = run(&args);
        r.expect_code(2);
        assert!(r.stderr.contains("already has a graph2aufs view mounted"), "{r}");
        assert_eq!(r.stderr.trim().lines().count(), 1, "one line:\n{r}");
    }
    unmount_cleanly(view);
}

// ---------------------------------------------------------------------------
// Issue 14.10: which views block which commands.
// ---------------------------------------------------------------------------

#[test]
fn a_read_only_view_elsewhere_blocks_neither_plan_nor_status_nor_verify_nor_another_read_only_view() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(144);
    let (mp1, mp2) = (fx.scratch("mp1"), fx.scratch("mp2"));
    let view = Mount::start(&fx.root, &mp1, &["--read-only"], BOUND);
    // 1: the fixture has broken items (and nothing is migrated yet).
    for command in ["plan", "status", "verify"] {
        let r = run([os(command), fx.root.as_os_str()]);
        assert_eq!(r.code, 1, "{command} reads the disk:\n{r}");
    }
    let second = Mount::start(&fx.root, &mp2, &["--read-only"], BOUND);
    unmount_cleanly(second);
    unmount_cleanly(view);
}

#[test]
fn a_read_only_view_of_a_root_a_read_write_view_serves_is_refused() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(145);
    let (elsewhere, mp) = (fx.scratch("elsewhere"), fx.scratch("mp"));
    let _guard = Daemon::watch(&mp, 0);
    let read_only = |extra: &[&OsStr]| {
        let mut args = vec![os("mount"), fx.root.as_os_str(), mp.as_os_str(), os("--read-only")];
        args.extend(extra);
        run(&args)
    };
    // Served from elsewhere, then covered.
    for over_root in [false, true] {
        let at = if over_root { &fx.root } else { &elsewhere };
        let mut args = vec![os("mount"), fx.root.as_os_str()];
        if !over_root {
            args.push(elsewhere.as_os_str());
        }
        args.push(os("--daemon"));
        let view = Daemon::start(&args, at, &[SLOW]);
        for extra in [&[][..], &[os("--daemon")]] {
            let r = read_only(extra);
            r.expect_code(2);
            let why = if over_root { "covered by" } else { "being migrated by" };
            assert!(r.stderr.contains(why), "{r}");
            assert!(!viewed(&mp), "{r}");
        }
        // status reads the live status; plan still reads the disk.
        let r = run([os("status"), fx.root.as_os_str(), os("--json")]);
        assert!(r.json()["live"].is_object(), "{r}");
        if !over_root {
            let r = run([os("plan"), fx.root.as_os_str()]);
            assert_eq!(r.code, 1, "{r}");
        }
        drop(view);
    }
}

// ---------------------------------------------------------------------------
// Issue 14.11: without root, errors name the real cause.
// ---------------------------------------------------------------------------

/// `graph2aufs ARGS` as user and group `nobody` (65534), no other groups,
/// from a copy of the binary anyone may run.
#[track_caller]
fn run_as_nobody(binary: &Path, args: &[&OsStr]) -> RunResult {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(binary)
        .args(args);
    cmd.current_dir("/");
    run_command(cmd, PROMPT)
}

#[test]
fn without_root_plan_and_mount_name_the_real_cause() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(146);
    fs::set_permissions(fx.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let binary = fx.dir.path().join("graph2aufs");
    fs::copy(bin(), &binary).expect("a copy of the binary");
    fs::set_permissions(&binary, fs::Permissions::from_mode(0o755)).unwrap();
    // ROOT of mode 0700, as Docker makes it.
    fs::set_permissions(&fx.root, fs::Permissions::from_mode(0o700)).unwrap();
    let r = run_as_nobody(&binary, &[os("plan"), fx.root.as_os_str()]);
    r.expect_code(2);
    assert!(
        r.stderr.contains(&fx.root.display().to_string()) && r.stderr.contains("permission denied"),
        "{r}"
    );
    assert!(!r.stderr.contains(".graph2aufs"), "no file that does not exist:\n{r}");
    // A ROOT it may read, and a mount point of its own.
    fs::set_permissions(&fx.root, fs::Permissions::from_mode(0o755)).unwrap();
    let mp = fx.scratch("mp");
    rustix::fs::chown(&mp, Some(rustix::process::Uid::from_raw(65534)), None).unwrap();
    // Whether `nobody` may open /dev/fuse at all, from its mode.
    let fuse_mode = fs::metadata("/dev/fuse").expect("/dev/fuse").permissions().mode();
    let why = if fuse_mode & 0o006 == 0o006 {
        "permission denied"
    } else {
        "/dev/fuse"
    };
    let _guard = Daemon::watch(&mp, 0);
    for daemon in [false, true] {
        let mut args = vec![os("mount"), fx.root.as_os_str(), mp.as_os_str(), os("--read-only")];
        if daemon {
            args.push(os("--daemon"));
        }
        let r = run_as_nobody(&binary, &args);
        r.expect_code(2);
        assert!(r.stderr.contains(why), "names the cause ({why}):\n{r}");
        assert_eq!(r.stderr.trim().lines().count(), 1, "one line:\n{r}");
        assert!(!viewed(&mp), "{r}");
    }
}
