//! Scratch space that only the test sees, for the tests whose detectors
//! another process could trip: a canary outside ROOT (inotify on every open
//! and listing) and snapshots with access times. A `find`, `du` or `grep -r`
//! over `$TMPDIR` by anything else on the machine would open, list or read
//! them and fail the test for nothing.
//!
//! [`PrivateDir`] moves the test's thread into a mount namespace of its own
//! ([`private_mounts`]) and mounts a tmpfs on a new directory in `$TMPDIR`:
//! the test, the threads it starts and the processes it runs (the
//! `graph2aufs` server among them) see the tmpfs; every other process sees an
//! empty directory. Mounts the test makes afterwards (FUSE views, loop
//! devices) are private too.
//!
//! [`PlainMount`] lifts `nodev`, `nosuid` and `noexec` from a scratch
//! directory (in the same private namespace), for tests that compare the
//! view with the native file system.
//!
//! What the file system under a `PrivateDir` supports is tmpfs's: access
//! times (`relatime`) and `O_NOATIME`, device nodes, owners, modes, `user.*`
//! (Linux 6.6 and later), `trusted.*` and `security.*` xattrs. A test that
//! needs more (ACLs, reflinks, `O_DIRECT`) uses a [`LoopFs`](super::LoopFs)
//! after [`private_mounts`].

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Once;

use rustix::io::Errno;
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};

use super::gate::loud;
use super::mount::{fusectl, is_mounted, FusectlHold};

static NOT_PRIVATE: Once = Once::new();

thread_local! {
    static PRIVATE: Cell<bool> = const { Cell::new(false) };
}

/// Moves the calling thread into a mount namespace of its own, once per
/// thread: from now on its mounts (and those of the threads and processes it
/// starts) are seen by no other process, and it holds no copy of another
/// test's FUSE view (see [`drop_copies_of_fuse_mounts`]). Needs root
/// (CAP_SYS_ADMIN); panics otherwise.
#[track_caller]
pub fn private_mounts() {
    if PRIVATE.get() {
        return;
    }
    // Only the mount namespace (and, with it, the thread's root and working
    // directory): no descriptor table is unshared.
    // SAFETY: UnshareFlags::NEWNS does not unshare file descriptors, the one
    // case `unshare_unsafe` warns about.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }
        .unwrap_or_else(|e| panic!("unshare(CLONE_NEWNS): {e} (a private mount namespace needs root)"));
    // The copy of every mount is a peer of the original: make ours receive
    // from the host, never send to it.
    rustix::mount::mount_change("/", MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC)
        .unwrap_or_else(|e| panic!("mount --make-rslave /: {e}"));
    drop_copies_of_fuse_mounts();
    PRIVATE.set(true);
}

/// Detaches, in this thread's new namespace, its copies of the FUSE mounts
/// other tests (and other processes) have mounted. Where `/` is not a
/// shared mount (this machine's, and CI's), an unmount in the namespace that
/// made a mount never reaches its copies, and a copy keeps the FUSE
/// connection alive: the other test's server would never see its unmount
/// and never exit. So a private namespace must not keep them. (Call
/// [`private_mounts`] before mounting any view of one's own.)
fn drop_copies_of_fuse_mounts() {
    let mut fuse: Vec<_> = super::mount::mountinfo()
        .into_iter()
        .filter(|m| m.fstype == "fuse" || m.fstype.starts_with("fuse."))
        .collect();
    // Deepest first: a mount over a copy is detached before it.
    fuse.sort_by_key(|m| std::cmp::Reverse(m.mount_point.components().count()));
    for m in fuse {
        match rustix::mount::unmount(&m.mount_point, UnmountFlags::DETACH) {
            Ok(()) | Err(Errno::INVAL) | Err(Errno::NOENT) => {}
            Err(e) => eprintln!(
                "harness: cannot detach the copy of {} in a private namespace: {e}",
                m.mount_point.display()
            ),
        }
    }
}

/// A new directory in `$TMPDIR` with a tmpfs on it that only this test sees
/// (see the module's documentation); unmounted and removed on drop.
pub struct PrivateDir {
    dir: Option<tempfile::TempDir>,
    /// fusectl stays mounted where every namespace sees it (none without root).
    _fusectl: Option<FusectlHold>,
}

impl PrivateDir {
    /// Without root (no namespace, no mount) it is an ordinary directory in
    /// `$TMPDIR`, and says so loudly: the test runs, exposed to other
    /// processes as before.
    #[track_caller]
    pub fn new(prefix: &str) -> PrivateDir {
        let dir = || {
            tempfile::Builder::new()
                .prefix(prefix)
                .tempdir()
                .unwrap_or_else(|e| panic!("cannot create a scratch directory in $TMPDIR: {e}"))
        };
        if !rustix::process::geteuid().is_root() {
            NOT_PRIVATE.call_once(|| {
                loud("NOTE: not root: scratch directories of canary and access-time tests are not private; another process reading $TMPDIR can fail them")
            });
            return PrivateDir {
                dir: Some(dir()),
                _fusectl: None,
            };
        }
        // Taken in the host's namespace, before leaving it: a fusectl the
        // harness mounts must be one the other tests see.
        let hold = fusectl();
        private_mounts();
        let dir = dir();
        rustix::mount::mount("g2a-private", dir.path(), "tmpfs", MountFlags::empty(), c"mode=0700")
            .unwrap_or_else(|e| panic!("mount -t tmpfs on {}: {e}", dir.path().display()));
        PrivateDir {
            dir: Some(dir),
            _fusectl: Some(hold),
        }
    }

    pub fn path(&self) -> &Path {
        // Invariant: `dir` is only taken in drop.
        self.dir.as_ref().expect("present until drop").path()
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        // Whatever the test left mounted inside is detached with it.
        while is_mounted(dir.path()) {
            if let Err(e) = rustix::mount::unmount(dir.path(), UnmountFlags::DETACH) {
                if e != Errno::INVAL {
                    eprintln!("harness: umount -l {}: {e}", dir.path().display());
                }
                break;
            }
        }
        // Removes the directory, now empty, from $TMPDIR.
        drop(dir);
    }
}

/// `dir` mounted on itself in the test's private namespace, without the
/// mount options that take away what a test compares the view with: nodev,
/// nosuid, noexec. (A `$TMPDIR` on a systemd tmpfs is `nosuid,nodev`: there
/// the device nodes of a layer do not open natively, while through the view,
/// mounted `dev`, they do.) The file system stays the one `$TMPDIR` is on.
/// Needs root; detached on drop.
pub struct PlainMount(PathBuf);

impl PlainMount {
    #[track_caller]
    pub fn new(dir: &Path) -> PlainMount {
        private_mounts();
        rustix::mount::mount_bind(dir, dir).unwrap_or_else(|e| panic!("mount --bind {0} {0}: {e}", dir.display()));
        let plain = PlainMount(dir.to_path_buf());
        // Without NODEV, NOSUID, NOEXEC (and RDONLY): each is cleared.
        rustix::mount::mount_remount(dir, MountFlags::BIND, c"")
            .unwrap_or_else(|e| panic!("mount -o remount,bind,dev,suid,exec {}: {e}", dir.display()));
        plain
    }
}

impl Drop for PlainMount {
    fn drop(&mut self) {
        if let Err(e) = rustix::mount::unmount(&self.0, UnmountFlags::DETACH) {
            eprintln!("harness: umount -l {}: {e}", self.0.display());
        }
    }
}
