//! FUSE mounts under test, guarded so that a bug in the server cannot hang a
//! test (or CI) forever: [`Mount`] unmounts and reaps its server when dropped,
//! and a watchdog aborts the FUSE connection if the mount outlives its bound.
//!
//! Nothing here touches the mount point below its own path component (no
//! `stat` of the mount root, no `canonicalize` of it), since that could block
//! on the very server that is misbehaving.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::{self, File};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::mount::UnmountFlags;

use super::gate::loud;
use super::run::{bin, describe};

/// How long [`Mount::start`] waits for the mount to appear.
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Mount`]'s drop waits for the server to exit before killing it.
pub const EXIT_GRACE: Duration = Duration::from_secs(5);
/// How long [`Mount::unmount`] lets the server take to exit after a clean
/// unmount before failing the test. A read-write graph2aufs syncs ROOT's
/// file system as it exits, which on a disk shared with other busy jobs can
/// take seconds: this bounds a hang, it is not a speed target (graph2aufs's
/// own commands wait up to 30 s for a server that is ending).
pub const CLEAN_EXIT_GRACE: Duration = Duration::from_secs(30);
/// How long the watchdog lets a test run on after aborting its mount before
/// aborting the whole test process.
pub const WATCHDOG_GRACE: Duration = Duration::from_secs(10);

const FUSECTL: &str = "/sys/fs/fuse/connections";

/// Whether the kernel has FUSE passthrough (it arrived in Linux 6.9).
pub fn kernel_has_passthrough() -> bool {
    let release = rustix::system::uname().release().to_string_lossy().into_owned();
    let mut v = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    (v.next().unwrap_or(0), v.next().unwrap_or(0)) >= (6, 9)
}

/// One line of `/proc/thread-self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountInfo {
    pub id: u32,
    pub parent: u32,
    pub major: u32,
    pub minor: u32,
    /// The path inside the mounted filesystem that is mounted here.
    pub root: PathBuf,
    pub mount_point: PathBuf,
    /// E.g. `ext4`, `fuse`, `fuse.graph2aufs`.
    pub fstype: String,
    pub source: OsString,
}

impl MountInfo {
    /// The kernel's device number of the mounted filesystem, which names its
    /// FUSE connection under `/sys/fs/fuse/connections/`.
    pub fn kernel_dev(&self) -> u64 {
        (u64::from(self.major) << 20) | u64::from(self.minor)
    }
}

/// The mounts of this thread's mount namespace, in mount order (a test in a
/// [`PrivateDir`](super::PrivateDir) has one of its own).
#[track_caller]
pub fn mountinfo() -> Vec<MountInfo> {
    let text = fs::read("/proc/thread-self/mountinfo")
        .unwrap_or_else(|e| panic!("cannot read /proc/thread-self/mountinfo: {e}"));
    text.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(parse_mountinfo_line)
        .collect()
}

fn parse_mountinfo_line(line: &[u8]) -> Option<MountInfo> {
    let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    // id parent maj:min root mount-point options [optional fields...] - fstype source super-options
    let dash = fields.iter().skip(6).position(|f| *f == b"-")? + 6;
    let text = |f: &[u8]| String::from_utf8_lossy(f).into_owned();
    let (major, minor) = text(fields[2])
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))?;
    Some(MountInfo {
        id: text(fields[0]).parse().ok()?,
        parent: text(fields[1]).parse().ok()?,
        major,
        minor,
        root: PathBuf::from(unescape(fields[3])),
        mount_point: PathBuf::from(unescape(fields[4])),
        fstype: text(fields.get(dash + 1)?),
        source: unescape(fields.get(dash + 2)?),
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space, etc.).
fn unescape(field: &[u8]) -> OsString {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    OsString::from_vec(out)
}

/// The absolute path the kernel would show for a mount at `p`: the parent is
/// canonicalized, the last component is taken as it is so that a hung mount
/// at `p` is never touched.
#[track_caller]
pub fn mount_point_path(p: &Path) -> PathBuf {
    resolve_mount_point(p).unwrap_or_else(|e| panic!("cannot resolve the mount point {}: {e}", p.display()))
}

fn resolve_mount_point(p: &Path) -> std::io::Result<PathBuf> {
    match (p.parent(), p.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            Ok(fs::canonicalize(parent)?.join(name))
        }
        // "/" or a path ending in "..": nothing to protect, resolve it all.
        _ => fs::canonicalize(p),
    }
}

/// The mounts stacked at `p`, bottom first (none if `p` cannot be resolved).
pub fn mounts_at(p: &Path) -> Vec<MountInfo> {
    let Ok(p) = resolve_mount_point(p) else {
        return Vec::new();
    };
    mountinfo().into_iter().filter(|m| m.mount_point == p).collect()
}

/// The mounts at or below `p` (none if `p` cannot be resolved).
pub fn mounts_under(p: &Path) -> Vec<MountInfo> {
    let Ok(p) = resolve_mount_point(p) else {
        return Vec::new();
    };
    mountinfo()
        .into_iter()
        .filter(|m| m.mount_point.starts_with(&p))
        .collect()
}

/// True if anything is mounted at `p`.
pub fn is_mounted(p: &Path) -> bool {
    !mounts_at(p).is_empty()
}

/// Detaches whatever is mounted at `p` (`umount -l`). Returns false if
/// nothing was mounted there; panics on any other error.
#[track_caller]
pub fn lazy_umount(p: &Path) -> bool {
    let Ok(resolved) = resolve_mount_point(p) else {
        return false;
    };
    match rustix::mount::unmount(&resolved, UnmountFlags::DETACH) {
        Ok(()) => true,
        Err(Errno::INVAL) => false,
        Err(e) => panic!("umount -l {}: {e}", p.display()),
    }
}

/// Holders of fusectl, and whether the harness mounted it (then the last
/// holder unmounts it: nothing the tests mount stays behind).
static FUSECTL_HOLDERS: Mutex<(usize, bool)> = Mutex::new((0, false));

/// fusectl on /sys/fs/fuse/connections while held, so that a connection
/// can be aborted; mounted if it is not there, and unmounted again by the
/// last holder if the harness mounted it. Best effort: without it the
/// watchdog still detaches the mount and kills the server.
pub struct FusectlHold;

pub fn fusectl() -> FusectlHold {
    let mut h = FUSECTL_HOLDERS.lock().unwrap_or_else(|e| e.into_inner());
    if h.0 == 0 && !mountinfo().iter().any(|m| m.fstype == "fusectl") {
        match rustix::mount::mount("fusectl", FUSECTL, "fusectl", rustix::mount::MountFlags::empty(), None) {
            Ok(()) => h.1 = true,
            Err(e) => eprintln!("harness: cannot mount fusectl on {FUSECTL} ({e}); FUSE connections cannot be aborted"),
        }
    }
    h.0 += 1;
    FusectlHold
}

impl Drop for FusectlHold {
    fn drop(&mut self) {
        let mut h = FUSECTL_HOLDERS.lock().unwrap_or_else(|e| e.into_inner());
        h.0 -= 1;
        if h.0 == 0 && h.1 {
            if let Err(e) = rustix::mount::unmount(FUSECTL, UnmountFlags::DETACH) {
                eprintln!("harness: cannot unmount fusectl from {FUSECTL}: {e}");
            }
            h.1 = false;
        }
    }
}

/// A FUSE server running as a child process with its filesystem mounted.
///
/// Dropping it unmounts (lazily if busy), waits [`EXIT_GRACE`] for the server
/// to exit and then kills it; afterwards nothing is mounted at the mount
/// point. If it is not dropped within its bound, a watchdog aborts the FUSE
/// connection (so blocked system calls fail), detaches the mount, kills the
/// server, prints `WATCHDOG: ...`, and aborts the test process if the test
/// still has not finished [`WATCHDOG_GRACE`] later.
pub struct Mount {
    mountpoint: PathBuf,
    command: String,
    /// Mount ids at the mount point before the server started: ours is the new one.
    before: HashSet<u32>,
    info: Option<MountInfo>,
    /// The server's stdout and stderr: a file without a name, so that
    /// nothing is left behind even when the test process is aborted.
    log: File,
    log_shown: bool,
    shared: Arc<Shared>,
    /// Set once `unmount` has done the teardown itself.
    finished: bool,
}

/// What the test thread and the watchdog share.
struct Shared {
    child: Mutex<Child>,
    pid: u32,
    state: Mutex<Watch>,
    changed: Condvar,
}

/// Where the test and its watchdog stand.
#[derive(Default)]
struct Watch {
    /// The guard was dropped (or unmounted): the watchdog stands down.
    test_done: bool,
    /// The bound passed and the watchdog started aborting the mount.
    fired: bool,
    /// The watchdog has aborted, detached and killed.
    aborted: bool,
}

impl Shared {
    fn child(&self) -> MutexGuard<'_, Child> {
        // A panic while holding the lock leaves the Child itself intact.
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut Watch)) {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
        self.changed.notify_all();
    }

    fn read<R>(&self, f: impl FnOnce(&Watch) -> R) -> R {
        f(&self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Waits up to `timeout` for `until` to hold; returns whether it does.
    fn wait(&self, timeout: Duration, until: impl Fn(&Watch) -> bool) -> bool {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (state, _) = self
            .changed
            .wait_timeout_while(state, timeout, |w| !until(w))
            .unwrap_or_else(|e| e.into_inner());
        until(&state)
    }

    /// Waits for the drop until `deadline`; if it has not come, marks the
    /// watchdog fired and returns true. Decided under the lock, so that a drop
    /// racing the deadline either stands the watchdog down or sees it fired.
    fn fire_at(&self, deadline: Instant) -> bool {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let timeout = deadline.saturating_duration_since(Instant::now());
        let (mut state, _) = self
            .changed
            .wait_timeout_while(state, timeout, |w| !w.test_done)
            .unwrap_or_else(|e| e.into_inner());
        state.fired = !state.test_done;
        self.changed.notify_all();
        state.fired
    }

    fn finish(&self) {
        self.update(|w| w.test_done = true);
    }
}

impl Mount {
    /// Runs `graph2aufs mount ROOT MOUNTPOINT --foreground EXTRA_ARGS` and
    /// waits until MOUNTPOINT is a FUSE mount; the watchdog fires if the
    /// returned guard is not dropped within `bound`.
    #[track_caller]
    pub fn start(root: &Path, mountpoint: &Path, extra_args: &[&str], bound: Duration) -> Mount {
        let mut cmd = Command::new(bin());
        cmd.arg("mount")
            .arg(root)
            .arg(mountpoint)
            .arg("--foreground")
            .args(extra_args);
        Mount::start_command(cmd, mountpoint, bound)
    }

    /// Like [`Mount::start`] for any FUSE server command that mounts at
    /// `mountpoint` and keeps running while mounted.
    #[track_caller]
    pub fn start_command(cmd: Command, mountpoint: &Path, bound: Duration) -> Mount {
        Mount::start_command_within(cmd, mountpoint, bound, MOUNT_TIMEOUT)
    }

    /// Like [`Mount::start_command`], waiting `mount_timeout` instead of
    /// [`MOUNT_TIMEOUT`] for the mount to appear.
    #[track_caller]
    pub fn start_command_within(cmd: Command, mountpoint: &Path, bound: Duration, mount_timeout: Duration) -> Mount {
        match Mount::start_inner(cmd, mountpoint, bound, mount_timeout, false) {
            Ok(m) => m,
            Err(_) => unreachable!("start_inner fails instead of returning an exit"),
        }
    }

    /// Like [`Mount::start_command`], for a server that may exit before it
    /// mounts (e.g. killed by fault injection): then its exit status, and
    /// its log.
    #[track_caller]
    pub fn try_start_command(cmd: Command, mountpoint: &Path, bound: Duration) -> Result<Mount, (ExitStatus, String)> {
        Mount::start_inner(cmd, mountpoint, bound, MOUNT_TIMEOUT, true)
    }

    #[track_caller]
    fn start_inner(
        mut cmd: Command,
        mountpoint: &Path,
        bound: Duration,
        mount_timeout: Duration,
        may_exit: bool,
    ) -> Result<Mount, (ExitStatus, String)> {
        let started = Instant::now();
        let mountpoint = fs::canonicalize(mountpoint)
            .unwrap_or_else(|e| panic!("mount point {} must exist before mounting: {e}", mountpoint.display()));
        let command = describe(&cmd);
        let log = tempfile::tempfile().unwrap_or_else(|e| panic!("cannot create a log file for {command}: {e}"));
        let log_fd = || {
            Stdio::from(
                log.try_clone()
                    .unwrap_or_else(|e| panic!("cannot dup the log of {command}: {e}")),
            )
        };
        cmd.stdin(Stdio::null()).stdout(log_fd()).stderr(log_fd());
        // A dead FUSE mount on top (its server killed) is one the new
        // server may detach before mounting, and whose mount id the new
        // mount may then reuse: it does not count as there before, and the
        // new mount is known by answering.
        let dead_on_top = rustix::fs::statfs(&mountpoint).err() == Some(Errno::NOTCONN);
        let mut at = mounts_at(&mountpoint);
        if dead_on_top {
            at.pop();
        }
        let before = at.iter().map(|m| m.id).collect();
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
        let pid = child.id();
        // From here on, a panic drops `mount`, which cleans up.
        let mut mount = Mount {
            mountpoint,
            command,
            before,
            info: None,
            log,
            log_shown: false,
            shared: Arc::new(Shared {
                child: Mutex::new(child),
                pid,
                state: Mutex::new(Watch::default()),
                changed: Condvar::new(),
            }),
            finished: false,
        };
        loop {
            let answers = || !dead_on_top || rustix::fs::statfs(&mount.mountpoint).is_ok();
            if let Some(info) = mount.new_mount().filter(|_| answers()) {
                if info.fstype.starts_with("fuse") {
                    mount.info = Some(info);
                    break;
                }
                mount.fail(format!(
                    "a {} mount appeared at {} instead of a FUSE one",
                    info.fstype,
                    mount.mountpoint.display()
                ));
            }
            let exited = mount.shared.child().try_wait();
            match exited {
                Ok(Some(status)) if may_exit => {
                    mount.finished = true;
                    mount.shared.finish();
                    return Err((status, mount.log()));
                }
                Ok(Some(status)) => mount.fail(format!(
                    "exited ({status}) before {} became a FUSE mount",
                    mount.mountpoint.display()
                )),
                Ok(None) => {}
                Err(e) => mount.fail(format!("cannot be waited for: {e}")),
            }
            if started.elapsed() > mount_timeout {
                mount.fail(format!(
                    "did not mount {} within {mount_timeout:?}",
                    mount.mountpoint.display()
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
        mount.spawn_watchdog(started + bound, bound);
        Ok(mount)
    }

    #[track_caller]
    fn fail(&mut self, what: String) -> ! {
        self.log_shown = true;
        panic!("{} {what}; its log:\n{}", self.command, self.log())
    }

    /// Our mount, if it is still in the mount table: the one at the mount
    /// point that was not there before the server started.
    fn new_mount(&self) -> Option<MountInfo> {
        mounts_at(&self.mountpoint).into_iter().find(|m| match &self.info {
            Some(ours) => m.id == ours.id,
            None => !self.before.contains(&m.id),
        })
    }

    fn spawn_watchdog(&self, deadline: Instant, bound: Duration) {
        let shared = Arc::clone(&self.shared);
        let mountpoint = self.mountpoint.clone();
        let info = self.info.clone();
        let log_file = self.log.try_clone();
        let spawned = thread::Builder::new().name("mount-watchdog".into()).spawn(move || {
            if !shared.fire_at(deadline) {
                return;
            }
            if let Some(info) = &info {
                abort_connection(info);
                if mounts_at(&mountpoint).iter().any(|m| m.id == info.id) {
                    if let Err(e) = rustix::mount::unmount(&mountpoint, UnmountFlags::DETACH) {
                        loud(&format!("WATCHDOG: umount -l {}: {e}", mountpoint.display()));
                    }
                }
            }
            let _ = shared.child().kill();
            shared.update(|w| w.aborted = true);
            let log = log_file.as_ref().map_or_else(|e| format!("(cannot dup the log: {e})"), read_log);
            loud(&format!(
                "WATCHDOG: mount of {} exceeded {bound:?}, aborted\n--- server log (tail) ---\n{}",
                mountpoint.display(),
                tail(&log, 100)
            ));
            if !shared.wait(WATCHDOG_GRACE, |w| w.test_done) {
                loud(&format!(
                    "WATCHDOG: the test still holds the mount of {} {WATCHDOG_GRACE:?} after the abort; aborting the test process",
                    mountpoint.display()
                ));
                std::process::abort();
            }
        });
        if let Err(e) = spawned {
            eprintln!(
                "harness: cannot start the watchdog for {}: {e}",
                self.mountpoint.display()
            );
        }
    }

    /// The mount point, canonicalized.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.shared.pid
    }

    /// Everything the server has printed so far (stdout and stderr).
    pub fn log(&self) -> String {
        read_log(&self.log)
    }

    /// The mount's line of /proc/thread-self/mountinfo, as it was when it appeared.
    pub fn info(&self) -> &MountInfo {
        // Invariant: `start_command_within` only returns once `info` is set.
        self.info.as_ref().expect("a started Mount always knows its mount")
    }

    /// The FUSE connection's directory under /sys/fs/fuse/connections.
    pub fn connection_dir(&self) -> PathBuf {
        connection_dir(self.info())
    }

    /// Whether the watchdog has fired (the mount outlived its bound).
    pub fn watchdog_fired(&self) -> bool {
        self.shared.read(|w| w.fired)
    }

    /// Waits up to `timeout` for the watchdog to fire and finish aborting the
    /// mount (connection aborted, mount detached, server killed); returns
    /// whether it has.
    pub fn wait_for_watchdog(&self, timeout: Duration) -> bool {
        self.shared.wait(timeout, |w| w.aborted)
    }

    /// SIGKILLs the server, as a crash would, and reaps it. The mount stays
    /// (every access fails with ENOTCONN) until unmounted, e.g. with
    /// [`lazy_umount`] or by dropping this guard.
    pub fn kill(&self) {
        let mut child = self.shared.child();
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Aborts the FUSE connection through fusectl (`echo 1 > .../abort`):
    /// pending and later requests fail, the server sees its device go away.
    pub fn abort_connection(&self) {
        abort_connection(self.info());
    }

    /// Waits up to `timeout` for the server to exit by itself.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.shared.child().try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Unmounts cleanly (no lazy fallback) and returns the server's exit
    /// status; panics with the server's log if the unmount fails, the server
    /// does not exit within [`CLEAN_EXIT_GRACE`], or the watchdog had fired.
    #[track_caller]
    pub fn unmount(mut self) -> ExitStatus {
        if self.watchdog_fired() {
            self.fail(format!(
                "outlived its bound: the watchdog aborted {}",
                self.mountpoint.display()
            ));
        }
        if self.new_mount().is_some() {
            // Files closed by threads that have exited may still be
            // released by the kernel's deferred work (under load, for a
            // moment): a busy mount is tried again for up to 5 s.
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match rustix::mount::unmount(&self.mountpoint, UnmountFlags::empty()) {
                    Ok(()) => break,
                    Err(Errno::BUSY) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
                    Err(e) => self.fail(format!(
                        "could not be unmounted from {}: {e}",
                        self.mountpoint.display()
                    )),
                }
            }
        }
        let Some(status) = self.wait_exit(CLEAN_EXIT_GRACE) else {
            self.fail(format!(
                "did not exit within {CLEAN_EXIT_GRACE:?} of the unmount of {}",
                self.mountpoint.display()
            ));
        };
        self.finished = true;
        self.shared.finish();
        status
    }

    /// Unmounts (lazily if busy), stops the server, and checks that nothing
    /// of ours is left mounted. Logs instead of panicking: it runs in drop.
    fn teardown(&mut self) {
        if thread::panicking() && !self.log_shown {
            eprintln!(
                "harness: {} was running for a failing test; its log (tail):\n{}",
                self.command,
                // (G2A_LOG_TAIL=N shows more of it.)
                tail(
                    &self.log(),
                    std::env::var("G2A_LOG_TAIL")
                        .ok()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(100)
                )
            );
        }
        if self.new_mount().is_some() {
            match rustix::mount::unmount(&self.mountpoint, UnmountFlags::empty()) {
                Ok(()) | Err(Errno::INVAL) => {}
                Err(e) => {
                    if e != Errno::BUSY {
                        eprintln!(
                            "harness: umount {}: {e}; detaching it instead",
                            self.mountpoint.display()
                        );
                    }
                    if let Err(e) = rustix::mount::unmount(&self.mountpoint, UnmountFlags::DETACH) {
                        eprintln!("harness: umount -l {}: {e}", self.mountpoint.display());
                    }
                }
            }
        }
        if self.wait_exit(EXIT_GRACE).is_none() {
            eprintln!(
                "harness: {} did not exit within {EXIT_GRACE:?} of the unmount; killing it",
                self.command
            );
            self.kill();
        }
        if let Some(left) = self.new_mount() {
            eprintln!(
                "harness: {} is still mounted ({left:?}) after the server ended; detaching it",
                self.mountpoint.display()
            );
            let _ = rustix::mount::unmount(&self.mountpoint, UnmountFlags::DETACH);
        }
        if self.watchdog_fired() {
            eprintln!(
                "harness: the watchdog aborted the mount of {}: the test held it beyond its bound",
                self.mountpoint.display()
            );
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if !self.finished {
            self.teardown();
        }
        self.shared.finish();
    }
}

fn connection_dir(info: &MountInfo) -> PathBuf {
    Path::new(FUSECTL).join(info.kernel_dev().to_string())
}

fn abort_connection(info: &MountInfo) {
    let _fusectl = fusectl();
    let abort = connection_dir(info).join("abort");
    if let Err(e) = fs::write(&abort, "1") {
        eprintln!(
            "harness: cannot abort the FUSE connection of {} via {}: {e}",
            info.mount_point.display(),
            abort.display()
        );
    }
}

/// All of a log file, read from its start without moving the offset the
/// server writes at.
fn read_log(log: &File) -> String {
    let mut bytes = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        match log.read_at(&mut buf, bytes.len() as u64) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return format!("(cannot read the log: {e})"),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
