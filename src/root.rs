//! ROOT: the Docker root being migrated, held as a directory descriptor
//! opened once, before any mount, with graph2aufs's lock and own directory.

use crate::error::{Error, Result, Step};
use crate::sys;
use rustix::fs::{self as rfs, FlockOperation, Mode, OFlags};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// graph2aufs's own directory under ROOT.
pub const OWN_DIR: &str = ".graph2aufs";
pub const QUARANTINE: &str = ".graph2aufs/quarantine";

pub struct Root {
    path: PathBuf,
    fd: OwnedFd,
    /// ROOT's mtime when opened, before graph2aufs changed anything.
    initial_mtime: rustix::fs::Timespec,
    /// The native `aufs/` the operator named elsewhere (`--aufs-dir`).
    aufs: Option<AufsDir>,
}

/// A native `aufs/` outside ROOT, which `ROOT/aufs` links to.
struct AufsDir {
    /// Canonical: exactly what the symlink `ROOT/aufs` holds.
    path: PathBuf,
    fd: OwnedFd,
}

/// Held while a command that writes to ROOT runs; released on drop.
pub struct Lock {
    _fd: OwnedFd,
}

impl Root {
    /// Opens ROOT. Its own path may contain symlinks (it is the operator's
    /// word); nothing beneath it is ever reached through one.
    pub fn open(path: &Path) -> Result<Root> {
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Usage(format!("ROOT {} does not exist", path.display())),
            std::io::ErrorKind::PermissionDenied => Error::Env(format!("ROOT {}: permission denied", path.display())),
            _ => Error::io(format!("ROOT {}", path.display()), e),
        })?;
        if !meta.is_dir() {
            return Err(Error::Usage(format!("ROOT {} is not a directory", path.display())));
        }
        let fd = rfs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(std::io::Error::from)
            .step(|| format!("opening ROOT {}", path.display()))?;
        let st = rfs::fstat(&fd)
            .map_err(std::io::Error::from)
            .step(|| format!("ROOT {}", path.display()))?;
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        Ok(Root {
            path,
            fd,
            initial_mtime: sys::mtime(&st),
            aufs: None,
        })
    }

    /// Takes `dir` (`--aufs-dir`) as ROOT's native `aufs/`: `ROOT/aufs` is
    /// a symlink to exactly it, or absent (made by [`Root::link_aufs`]).
    /// Anything else at `ROOT/aufs` is refused, naming it.
    pub fn with_aufs_dir(mut self, dir: &Path) -> Result<Root> {
        let shown = dir.display();
        let path = std::fs::canonicalize(dir).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Usage(format!("--aufs-dir {shown} does not exist")),
            _ => Error::io(format!("--aufs-dir {shown}"), e),
        })?;
        if !path.is_dir() {
            return Err(Error::Usage(format!("--aufs-dir {shown} is not a directory")));
        }
        if path == self.path || self.path.starts_with(&path) {
            return Err(Error::Usage(format!(
                "--aufs-dir {shown} is ROOT or holds it: name a directory of its own for aufs/"
            )));
        }
        let r = self.path.display();
        match sys::kind(self.fd(), "aufs").step(|| format!("{r}/aufs"))? {
            sys::Kind::Missing => {}
            sys::Kind::Symlink(t) if t == path.as_os_str().as_encoded_bytes() => {}
            sys::Kind::Symlink(t) => {
                return Err(Error::Env(format!(
                    "{r}/aufs is a symlink to {}, not to --aufs-dir {}: refused, nothing changed",
                    crate::names::escape_os(std::ffi::OsStr::from_bytes(&t)),
                    path.display()
                )))
            }
            k => {
                return Err(Error::Env(format!(
                    "{r}/aufs is {}, and --aufs-dir {} names another aufs directory: move one of them away \
                     (nothing changed)",
                    k.describe(),
                    path.display()
                )))
            }
        }
        let fd = rfs::open(&path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(std::io::Error::from)
            .step(|| format!("opening --aufs-dir {}", path.display()))?;
        self.aufs = Some(AufsDir { path, fd });
        Ok(self)
    }

    /// The same ROOT reached through another descriptor of it (a private,
    /// read-only copy of its mount, see `sys::read_only_noatime_clone`),
    /// and of its `--aufs-dir` if `aufs` is given.
    pub fn through(self, fd: OwnedFd, aufs: Option<OwnedFd>) -> Root {
        let aufs = match (self.aufs, aufs) {
            (Some(a), Some(fd)) => Some(AufsDir { fd, ..a }),
            (a, _) => a,
        };
        Root { fd, aufs, ..self }
    }

    /// The `--aufs-dir` in use.
    pub fn aufs_dir(&self) -> Option<(&Path, BorrowedFd<'_>)> {
        self.aufs.as_ref().map(|a| (a.path.as_path(), a.fd.as_fd()))
    }

    /// Where a path of ROOT's resolves: paths in `aufs/` go to the
    /// `--aufs-dir` when there is one (`aufs` itself is then `.` in it).
    pub fn resolve<'a>(&'a self, rel: &'a str) -> (BorrowedFd<'a>, &'a str) {
        match &self.aufs {
            Some(a) if rel == "aufs" => (a.fd.as_fd(), "."),
            Some(a) => match rel.strip_prefix("aufs/") {
                Some(rest) => (a.fd.as_fd(), rest),
                None => (self.fd(), rel),
            },
            None => (self.fd(), rel),
        }
    }

    /// With an `--aufs-dir`, makes `ROOT/aufs` the symlink to it (made under
    /// a temporary name, then renamed into place) unless it is there.
    /// `true` if it made it.
    pub fn link_aufs(&self) -> Result<bool> {
        let Some(a) = &self.aufs else { return Ok(false) };
        let r = self.path.display();
        if sys::kind_unread(self.fd(), "aufs").step(|| format!("{r}/aufs"))? != sys::Kind::Missing {
            return Ok(false);
        }
        let tmp = sys::temp_name(std::ffi::OsStr::new("aufs"));
        // (A leftover of a run stopped here.)
        if let Ok(sys::Kind::Symlink(_)) = sys::kind_unread(self.fd(), &tmp) {
            sys::unlink(self.fd(), &tmp).step(|| format!("removing {r}/{}", tmp.to_string_lossy()))?;
        }
        rfs::symlinkat(&a.path, self.fd(), &tmp)
            .map_err(std::io::Error::from)
            .step(|| format!("linking {r}/aufs to {}", a.path.display()))?;
        sys::rename_noreplace(self.fd(), &tmp, self.fd(), "aufs").step(|| format!("linking {r}/aufs"))?;
        sys::fsync_dir(self.fd()).step(|| format!("syncing {r}"))?;
        Ok(true)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn initial_mtime(&self) -> rustix::fs::Timespec {
        self.initial_mtime
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Refuses a ROOT covered by a live graph2aufs view (through it a
    /// command would see the view, not the disk) and, for commands that
    /// change ROOT (`changes`), a ROOT a view shows from elsewhere.
    pub fn refuse_if_viewed(&self, command: &str, changes: bool) -> Result<()> {
        if let Some(mp) = viewed_by_graph2aufs(&self.path) {
            let covered = self.path.starts_with(&mp);
            if covered || changes {
                let how = if covered { "covered by" } else { "shown by" };
                return Err(Error::Env(format!(
                    "{} is {how} a live graph2aufs mount (at {}); {command} works on the disk, not under a view: \
                     unmount it first (umount {})",
                    self.path.display(),
                    mp.display(),
                    mp.display()
                )));
            }
        }
        Ok(())
    }

    /// Removes `.graph2aufs` when it holds nothing but the lock (a run
    /// stopped before it wrote its record: it changed nothing else), and
    /// gives ROOT back the mtime the lock file kept. Takes the lock first.
    pub fn remove_bare_lock(&self) -> Result<()> {
        let Some(own) = sys::open_dir(self.fd(), OWN_DIR).step(|| format!("opening {OWN_DIR}"))? else {
            return Ok(());
        };
        let names = sys::list_dir(&own).step(|| format!("listing {OWN_DIR}"))?;
        if names.len() != 1 || names[0].0 != "lock" {
            return Ok(());
        }
        let _lock = self.lock()?;
        let saved = self.saved_mtime();
        sys::unlink(&own, "lock").step(|| format!("removing {OWN_DIR}/lock"))?;
        sys::rmdir(self.fd(), OWN_DIR).step(|| format!("removing {OWN_DIR}"))?;
        if let (Some(t), Ok(Some(st))) = (saved, sys::lstat(self.fd(), ".")) {
            sys::set_times(self.fd(), ".", sys::atime(&st), t).step(|| "restoring ROOT's mtime".into())?;
        }
        Ok(())
    }

    /// ROOT's mtime from before graph2aufs first created `.graph2aufs` (kept
    /// in the lock file), if it is there.
    fn saved_mtime(&self) -> Option<rustix::fs::Timespec> {
        let b = sys::read_file(self.fd(), ".graph2aufs/lock", 64).ok()?;
        let s = String::from_utf8(b).ok()?;
        let mut it = s.split_whitespace().map(|x| x.parse::<i64>());
        Some(rustix::fs::Timespec {
            tv_sec: it.next()?.ok()?,
            tv_nsec: it.next()?.ok()? as _,
        })
    }

    /// ROOT's mtime before graph2aufs changed anything, even in an earlier
    /// run stopped before it wrote its record.
    pub fn original_mtime(&self) -> rustix::fs::Timespec {
        self.saved_mtime().unwrap_or(self.initial_mtime)
    }

    /// Takes the per-ROOT lock: one graph2aufs at a time.
    pub fn lock(&self) -> Result<Lock> {
        let created = sys::ensure_dir(self.fd(), OWN_DIR, 0o700)
            .step(|| format!("creating {}/{OWN_DIR}", self.path.display()))?;
        let fd = rfs::openat(
            self.fd(),
            ".graph2aufs/lock",
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(std::io::Error::from)
        .step(|| format!("opening {}/.graph2aufs/lock", self.path.display()))?;
        match rfs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {
                if created {
                    // ROOT's mtime before .graph2aufs existed: what rollback
                    // restores if a run stops before writing its record.
                    let t = self.initial_mtime;
                    let _ = rustix::io::write(&fd, format!("{} {}\n", t.tv_sec, t.tv_nsec).as_bytes());
                }
                Ok(Lock { _fd: fd })
            }
            Err(rustix::io::Errno::WOULDBLOCK) => Err(Error::Env(format!(
                "{} is locked by another graph2aufs (a running migrate, rollback or mount)",
                self.path.display()
            ))),
            Err(e) => Err(Error::io(format!("locking {}", self.path.display()), e.into())),
        }
    }
}

/// The mount point of a graph2aufs FUSE mount that covers `path`, if any.
pub fn viewed_by_graph2aufs(path: &Path) -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    for line in info.lines() {
        let mut halves = line.splitn(2, " - ");
        let (Some(left), Some(right)) = (halves.next(), halves.next()) else {
            continue;
        };
        let mp = left.split(' ').nth(4).map(unescape_mountinfo)?;
        let mut fields = right.split(' ');
        let fstype = fields.next().unwrap_or("");
        let source = fields.next().unwrap_or("");
        // fuser mounts as plain "fuse" with the FSName as the source:
        // "graph2aufs:<ROOT>". A view covers `path` when mounted over it,
        // or views it from elsewhere.
        let viewed = source.strip_prefix("graph2aufs:").map(unescape_mountinfo);
        let ours = fstype.contains("graph2aufs") || source == "graph2aufs" || viewed.is_some();
        if fstype.starts_with("fuse") && ours && (path.starts_with(&mp) || viewed.as_deref() == Some(path)) {
            return Some(mp);
        }
    }
    None
}

fn unescape_mountinfo(s: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}
