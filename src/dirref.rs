//! Directories held without holding a descriptor each.
//!
//! The view keeps every directory the kernel knows, and merged directories
//! keep one per branch: a walk of a large tree would need more descriptors
//! than a process may have. A [`DirRef`] keeps the directory's file handle
//! (`name_to_handle_at(2)`) and an `O_PATH` descriptor only while it is in
//! use; a process-wide pool closes the least recently used descriptors past
//! its budget, and `open_by_handle_at(2)` reopens them on the next use. A
//! handle names the inode itself (with its generation), so a reopened
//! directory is the same one even if it was renamed meanwhile; one removed
//! meanwhile gives `ESTALE`, as it would through the descriptor.
//!
//! Where handles cannot be used (no CAP_DAC_READ_SEARCH, a file system
//! without them), the descriptor is simply kept.

use crate::sys;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};

/// A directory, by descriptor while in use and by file handle otherwise.
pub struct DirRef {
    fd: Mutex<Option<Arc<OwnedFd>>>,
    handle: Option<Handle>,
    /// Used since the pool last looked (second chance before closing).
    used: AtomicBool,
}

struct Handle {
    mount: Arc<MountFd>,
    kind: i32,
    bytes: Box<[u8]>,
}

/// A descriptor (not `O_PATH`: `open_by_handle_at` needs a real one) on the
/// mount handles are decoded on; shared by the directories of that mount
/// and closed with the last of them, so it keeps no mount busy for longer.
struct MountFd {
    id: i32,
    fd: OwnedFd,
}

impl Drop for MountFd {
    fn drop(&mut self) {
        let mut mounts = POOL.mounts.lock().expect("never poisoned");
        if mounts
            .get(&self.id)
            .is_some_and(|w| w.as_ref().is_some_and(|w| w.strong_count() == 0))
        {
            mounts.remove(&self.id);
        }
    }
}

impl std::fmt::Debug for DirRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirRef")
            .field("open", &self.fd.lock().map(|g| g.is_some()).unwrap_or(false))
            .field("handle", &self.handle.is_some())
            .finish()
    }
}

impl DirRef {
    /// Takes over `fd`, an `O_PATH` descriptor of a directory.
    pub fn new(fd: OwnedFd) -> Arc<DirRef> {
        let handle = if POOL.enabled { handle_of(&fd) } else { None };
        let tracked = handle.is_some();
        let d = Arc::new(DirRef {
            fd: Mutex::new(Some(Arc::new(fd))),
            handle,
            used: AtomicBool::new(true),
        });
        if tracked {
            POOL.opened(Arc::downgrade(&d));
        }
        d
    }

    /// The directory's descriptor, reopened from its handle if the pool
    /// closed it.
    pub fn fd(self: &Arc<Self>) -> io::Result<Arc<OwnedFd>> {
        let mut g = self.fd.lock().expect("never poisoned");
        self.used.store(true, Ordering::Relaxed);
        if let Some(fd) = &*g {
            return Ok(fd.clone());
        }
        let h = self.handle.as_ref().expect("only a directory with a handle is closed");
        let fd = Arc::new(open_by_handle(h)?);
        *g = Some(fd.clone());
        drop(g);
        POOL.opened(Arc::downgrade(self));
        Ok(fd)
    }

    /// Closes the descriptor if a handle can reopen it and no caller holds it.
    fn release(&self) -> bool {
        if self.handle.is_none() {
            return false;
        }
        let mut g = self.fd.lock().expect("never poisoned");
        g.take().is_some()
    }
}

struct Pool {
    /// Directories with an open descriptor, oldest first.
    open: Mutex<VecDeque<Weak<DirRef>>>,
    budget: AtomicUsize,
    /// Each mount's shared descriptor; `None` where handles cannot be used.
    mounts: Mutex<HashMap<i32, Option<Weak<MountFd>>>>,
    enabled: bool,
}

static POOL: LazyLock<Pool> = LazyLock::new(|| Pool {
    open: Mutex::new(VecDeque::new()),
    budget: AtomicUsize::new(
        std::env::var("GRAPH2AUFS_DIR_FDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(4096),
    ),
    mounts: Mutex::new(HashMap::new()),
    enabled: std::env::var_os("GRAPH2AUFS_NO_HANDLES").is_none(),
});

/// Sets how many directory descriptors may stay open (from the descriptor
/// limit); `GRAPH2AUFS_DIR_FDS` overrides it.
pub fn set_budget(n: usize) {
    if std::env::var_os("GRAPH2AUFS_DIR_FDS").is_none() {
        POOL.budget.store(n.max(16), Ordering::Relaxed);
    }
}

impl Pool {
    fn opened(&self, d: Weak<DirRef>) {
        let mut q = self.open.lock().expect("never poisoned");
        q.push_back(d);
        let budget = self.budget.load(Ordering::Relaxed);
        // Second chance: a directory used since the last pass goes round
        // once more; bounded so that a pool of busy directories still
        // shrinks.
        let mut turns = q.len();
        while q.len() > budget {
            let Some(w) = q.pop_front() else { break };
            let Some(d) = w.upgrade() else { continue };
            if turns > 0 && d.used.swap(false, Ordering::Relaxed) {
                turns -= 1;
                q.push_back(w);
                continue;
            }
            if !d.release() {
                // Reopened and queued again meanwhile, or never closable.
                continue;
            }
        }
    }
}

fn handle_of(fd: &OwnedFd) -> Option<Handle> {
    let (mount_id, kind, bytes) = match sys::handle::name_to_handle(fd) {
        Ok(h) => h,
        Err(e) => {
            log::debug!("no file handle: {e}");
            return None;
        }
    };
    let mut mounts = POOL.mounts.lock().expect("never poisoned");
    match mounts.get(&mount_id) {
        Some(None) => return None,
        Some(Some(w)) => {
            if let Some(mount) = w.upgrade() {
                return Some(Handle { mount, kind, bytes });
            }
        }
        None => {}
    }
    // A new mount: check once that this process may decode its handles.
    let h = sys::reopen_dir(fd).ok().map(|fd| Handle {
        mount: Arc::new(MountFd { id: mount_id, fd }),
        kind,
        bytes,
    });
    match h.as_ref().map(open_by_handle) {
        Some(Ok(_)) => {
            let h = h.expect("checked");
            mounts.insert(mount_id, Some(Arc::downgrade(&h.mount)));
            Some(h)
        }
        other => {
            if let Some(Err(e)) = other {
                log::debug!("file handles unusable on mount {mount_id}: {e}");
            }
            mounts.insert(mount_id, None);
            // (The probe's mount descriptor goes after the lock: its drop
            // takes it.)
            drop(mounts);
            drop(h);
            None
        }
    }
}

fn open_by_handle(h: &Handle) -> io::Result<OwnedFd> {
    sys::handle::open_by_handle(&h.mount.fd, h.kind, &h.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(p: &std::path::Path) -> OwnedFd {
        rustix::fs::open(
            p,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .unwrap()
    }

    #[test]
    fn reopens_the_same_directory_after_release_and_rename() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("a")).unwrap();
        let d = DirRef::new(open(&t.path().join("a")));
        let before = rustix::fs::fstat(&*d.fd().unwrap()).unwrap();
        if d.handle.is_none() {
            eprintln!("file handles unusable here (needs CAP_DAC_READ_SEARCH): descriptor kept");
            assert!(!d.release());
            return;
        }
        assert!(d.release());
        std::fs::rename(t.path().join("a"), t.path().join("b")).unwrap();
        let after = rustix::fs::fstat(&*d.fd().unwrap()).unwrap();
        assert_eq!((before.st_dev, before.st_ino), (after.st_dev, after.st_ino));
        assert!(d.release());
        std::fs::remove_dir(t.path().join("b")).unwrap();
        // Gone: as through a kept descriptor, nothing more is found in it
        // (or the handle is stale already).
        match d.fd() {
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ESTALE)),
            Ok(fd) => assert_eq!(rustix::fs::fstat(&*fd).unwrap().st_nlink, 0),
        }
    }
}
