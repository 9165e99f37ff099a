//! ROOT: the Docker root being migrated, held as a directory descriptor
//! opened once, before any mount, with graph2aufs's lock and own directory;
//! and the graph2aufs views in the mount table (live or dead), which decide
//! what a command on ROOT refuses.

use crate::error::{Error, Result, Step};
use crate::sys;
use rustix::fs::{self as rfs, FlockOperation, Mode, OFlags};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A path under graph2aufs's own directory, relative to ROOT:
/// `own!("lock")` is `.graph2aufs/lock`.
macro_rules! own {
    ($rel:literal) => {
        concat!(".graph2aufs/", $rel)
    };
}

/// graph2aufs's own directory under ROOT (its name begins with
/// [`crate::id::OWN_PREFIX`], which no layer id may).
pub const OWN_DIR: &str = ".graph2aufs";
/// The files in it: the per-ROOT lock (with ROOT's mtime from before
/// graph2aufs first changed it), the record, and the live view's status.
pub const LOCK_FILE: &str = "lock";
pub const RECORD_FILE: &str = "record.json";
pub const STATUS_FILE: &str = "status.json";
/// The same, relative to ROOT.
pub const LOCK: &str = own!("lock");
pub const RECORD: &str = own!("record.json");
/// Where blocked items, their aufs registrations and a set-aside
/// `repositories` go, relative to ROOT; `quarantine/aufs/` holds `diff`,
/// `layers` and `mnt` entries.
pub const QUARANTINE: &str = own!("quarantine");
pub const QUARANTINE_AUFS: &str = own!("quarantine/aufs");

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
    /// word); nothing beneath it is ever reached through one. Refuses,
    /// naming the cause, a ROOT under a dead view, one the caller may not
    /// read, and a directory that is not a Docker root (neither `graph/`
    /// nor `containers/`): nothing is written to any of them.
    pub fn open(path: &Path) -> Result<Root> {
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Usage(format!("ROOT {} does not exist", path.display())),
            std::io::ErrorKind::PermissionDenied => Error::Env(format!(
                "ROOT {}: permission denied (graph2aufs needs root, or the owner's rights on ROOT)",
                path.display()
            )),
            _ if e.raw_os_error() == Some(libc::ENOTCONN) => dead_view_error(path),
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
        let path = std::fs::canonicalize(path)
            .or_else(|_| std::path::absolute(path))
            .unwrap_or_else(|_| path.to_path_buf());
        // (A stat of a view's root may be answered from the kernel's cache
        // after its server died; statfs always asks the server.)
        if let Err(rustix::io::Errno::NOTCONN) = rfs::fstatfs(&fd) {
            return Err(dead_view_error(&path));
        }
        // Without search and read permission every later step would fail
        // on whatever file it tried first, which may not even exist.
        if rfs::accessat(
            &fd,
            ".",
            rfs::Access::READ_OK | rfs::Access::EXEC_OK,
            rfs::AtFlags::EACCESS,
        )
        .is_err()
        {
            return Err(Error::Env(format!(
                "ROOT {}: permission denied (it cannot be listed and searched as uid {}: run graph2aufs as root)",
                path.display(),
                rustix::process::geteuid().as_raw()
            )));
        }
        let r = path.display();
        let graph = sys::kind_unread(&fd, "graph").step(|| format!("{r}/graph"))?;
        let containers = sys::kind_unread(&fd, "containers").step(|| format!("{r}/containers"))?;
        if !graph.exists() && !containers.exists() {
            return Err(Error::Usage(format!(
                "ROOT {r} is not a Docker root: it has neither graph/ nor containers/ (nothing changed)"
            )));
        }
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
        if path.starts_with(&self.path) {
            // (A layer's own directories among them: aufs/ would be made
            // inside the data it is to receive.)
            return Err(Error::Usage(format!(
                "--aufs-dir {shown} is inside ROOT {}: name a directory outside ROOT (nothing changed)",
                self.path.display()
            )));
        }
        let r = self.path.display();
        // Under a live view, ROOT/aufs is the view's directory, not the
        // disk's link: the command refuses the view, or reads its status.
        let under_view = View::all().iter().any(|v| v.covers(&self.path));
        let found = if under_view {
            sys::Kind::Missing
        } else {
            sys::kind(self.fd(), "aufs").step(|| format!("{r}/aufs"))?
        };
        match found {
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
    /// read-only copy of its mount, see `sys::mount::read_only_noatime_clone`),
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

    /// Refuses a ROOT a view is in the way of. A view covering ROOT (mounted
    /// over it or above it) is refused by every command: through it a
    /// command would see the view, not the disk. A live view showing ROOT
    /// from elsewhere is refused by the commands that change ROOT
    /// (`changes`: the view's picture of ROOT would go stale, or its own
    /// migration would run alongside). A dead view (its server gone) is
    /// named as such, with the command that detaches it.
    pub fn refuse_if_viewed(&self, command: &str, changes: bool) -> Result<()> {
        for v in View::all() {
            let covered = v.covers(&self.path);
            if !covered && !v.shows(&self.path) {
                continue;
            }
            let mp = v.mountpoint.display();
            if v.is_dead() {
                if covered {
                    return Err(dead_view_error(&self.path));
                }
                // Elsewhere it serves nothing and changes nothing.
                continue;
            }
            if covered {
                return Err(Error::Env(format!(
                    "{} is covered by a live graph2aufs mount (at {mp}); {command} works on the disk, not \
                     through a view: unmount it first (umount {mp})",
                    self.path.display()
                )));
            }
            if changes {
                return Err(Error::Env(format!(
                    "{} is shown by a live graph2aufs mount (at {mp}, {}); {command} would change ROOT under it: \
                     unmount it first (umount {mp})",
                    self.path.display(),
                    if v.read_only {
                        "read-only"
                    } else {
                        "read-write, migrating"
                    }
                )));
            }
        }
        Ok(())
    }

    /// What a new `--read-only` view of ROOT refuses: a view covering ROOT
    /// (it would show that view's synthesized contents, not the disk), and
    /// a live read-write view (its migration moves items under the new
    /// view's picture of them). Other read-only views are no obstacle.
    pub fn refuse_for_read_only_view(&self) -> Result<()> {
        self.refuse_if_viewed("a read-only view", false)?;
        if let Some(v) = View::all()
            .into_iter()
            .find(|v| v.shows(&self.path) && !v.read_only && !v.is_dead())
        {
            let mp = v.mountpoint.display();
            return Err(Error::Env(format!(
                "{} is being migrated by a live read-write graph2aufs mount (at {mp}); a read-only view \
                 would show items moving under it: use that view, or unmount it first (umount {mp})",
                self.path.display()
            )));
        }
        Ok(())
    }

    /// The live read-write view serving ROOT (mounted over it or elsewhere),
    /// whose progress `status` reads.
    pub fn served_by(&self) -> Option<View> {
        View::all()
            .into_iter()
            .find(|v| v.shows(&self.path) && !v.read_only && !v.is_dead())
    }

    /// Removes `.graph2aufs` when it holds nothing but the lock (a run
    /// stopped before it wrote its record: it changed nothing else), and
    /// gives ROOT back the mtime the lock file kept. Takes the lock first.
    pub fn remove_bare_lock(&self) -> Result<()> {
        let Some(own) = sys::open_dir(self.fd(), OWN_DIR).step(|| format!("opening {OWN_DIR}"))? else {
            return Ok(());
        };
        let names = sys::list_dir(&own).step(|| format!("listing {OWN_DIR}"))?;
        if names.len() != 1 || names[0].0 != LOCK_FILE {
            return Ok(());
        }
        let _lock = self.lock()?;
        let saved = self.saved_mtime();
        sys::unlink(&own, LOCK_FILE).step(|| format!("removing {LOCK}"))?;
        sys::rmdir(self.fd(), OWN_DIR).step(|| format!("removing {OWN_DIR}"))?;
        if let (Some(t), Ok(Some(st))) = (saved, sys::lstat(self.fd(), ".")) {
            sys::set_times(self.fd(), ".", sys::atime(&st), t).step(|| "restoring ROOT's mtime".into())?;
        }
        Ok(())
    }

    /// ROOT's mtime from before graph2aufs first created `.graph2aufs` (kept
    /// in the lock file), if it is there.
    fn saved_mtime(&self) -> Option<rustix::fs::Timespec> {
        let b = sys::read_file(self.fd(), LOCK, 64).ok()?;
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
            LOCK,
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(std::io::Error::from)
        .step(|| format!("opening {}/{LOCK}", self.path.display()))?;
        let asked = std::time::Instant::now();
        let mut said = false;
        loop {
            match rfs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(rustix::io::Errno::WOULDBLOCK) => {}
                Err(e) => return Err(Error::io(format!("locking {}", self.path.display()), e.into())),
            }
            // A mount server whose view is gone (or not there yet) holds the
            // lock only until it exits (or mounts): `umount` of a FUSE mount
            // returns before its server has finished. Wait for it; refuse
            // any other holder at once.
            let holder = lock_holder(&fd);
            // (No holder found: the lock was let go just now, or /proc
            // cannot tell; try again, briefly.)
            let unknown = holder.is_none() && asked.elapsed() < std::time::Duration::from_secs(2);
            let passing = unknown
                || holder
                    .as_ref()
                    .is_some_and(|h| h.exiting || (h.mount && self.served_by().is_none()));
            let who = holder.map_or_else(|| "another graph2aufs".to_string(), |h| h.describe());
            if !passing {
                return Err(Error::Env(format!(
                    "{} is locked by {who} (one graph2aufs at a time per ROOT)",
                    self.path.display()
                )));
            }
            if asked.elapsed() >= LOCK_WAIT {
                return Err(Error::Env(format!(
                    "{} is locked by {who}, which has no view mounted and did not end within {} s",
                    self.path.display(),
                    LOCK_WAIT.as_secs()
                )));
            }
            if !said && asked.elapsed() >= std::time::Duration::from_secs(1) {
                log::info!(
                    "{}: waiting for {who} to end (its view is unmounted) and release the lock",
                    self.path.display()
                );
                said = true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        if created {
            // ROOT's mtime before .graph2aufs existed: what rollback
            // restores if a run stops before writing its record.
            let t = self.initial_mtime;
            let _ = rustix::io::write(&fd, format!("{} {}\n", t.tv_sec, t.tv_nsec).as_bytes());
        }
        Ok(Lock { _fd: fd })
    }
}

/// How long a command waits for a graph2aufs mount server holding ROOT's
/// lock with no view mounted (exiting after `umount`, or about to mount)
/// before refusing.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The process holding a lock, as `/proc/locks` and `/proc/<pid>` tell.
struct Holder {
    pid: u32,
    /// Its command line, for messages.
    command: String,
    /// A `graph2aufs mount` server.
    mount: bool,
    /// It is exiting: its memory (and command line) is gone, its files
    /// are being closed.
    exiting: bool,
}

impl Holder {
    fn describe(&self) -> String {
        format!("{} (pid {})", self.command, self.pid)
    }
}

/// Who holds the flock on `lock` (an open descriptor of the lock file).
fn lock_holder(lock: &OwnedFd) -> Option<Holder> {
    let st = rfs::fstat(lock).ok()?;
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    // "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF"; waiters have "->".
    let pid = locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.get(1) != Some(&"FLOCK") {
            return None;
        }
        let ino: u64 = f.get(5)?.rsplit(':').next()?.parse().ok()?;
        let pid: u32 = f.get(4)?.parse().ok()?;
        (ino == st.st_ino as u64 && holds(pid, &st)).then_some(pid)
    })?;
    let argv: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let ours = argv
        .first()
        .and_then(|a| Path::new(a).file_name())
        .is_some_and(|n| n.as_bytes().starts_with(b"graph2aufs"));
    let command = match (ours, argv.get(1)) {
        (true, Some(verb)) => format!("graph2aufs {verb}"),
        _ => argv.first().cloned().unwrap_or_else(|| "an exiting process".into()),
    };
    Some(Holder {
        pid,
        mount: ours && argv.get(1).is_some_and(|v| v == "mount"),
        exiting: argv.is_empty(),
        command,
    })
}

/// Whether process `pid` has the file `st` open (where its descriptors can
/// be read; where they cannot, the inode number alone has to do).
fn holds(pid: u32, st: &rfs::Stat) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return true;
    };
    fds.flatten().any(|e| {
        std::fs::metadata(e.path()).is_ok_and(|m| {
            use std::os::unix::fs::MetadataExt;
            m.dev() == st.st_dev && m.ino() == st.st_ino
        })
    })
}

/// A graph2aufs view in this mount namespace's mount table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// Where it is mounted.
    pub mountpoint: PathBuf,
    /// The ROOT it shows (from its mount source, `graph2aufs:<ROOT>`).
    pub root: Option<PathBuf>,
    pub read_only: bool,
}

impl View {
    /// Every graph2aufs view mounted, in mount order.
    pub fn all() -> Vec<View> {
        let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
            return Vec::new();
        };
        info.lines().filter_map(View::parse).collect()
    }

    /// A line of /proc/self/mountinfo, if it is a graph2aufs view.
    fn parse(line: &str) -> Option<View> {
        let (left, right) = line.split_once(" - ")?;
        let mut left = left.split(' ');
        let mountpoint = unescape_mountinfo(left.nth(4)?);
        let read_only = left.next()?.split(',').any(|o| o == "ro");
        let mut fields = right.split(' ');
        let fstype = fields.next()?;
        let source = fields.next().unwrap_or("");
        // fuser mounts as plain "fuse" with the FSName as the source:
        // "graph2aufs:<ROOT>".
        let root = source.strip_prefix("graph2aufs:").map(unescape_mountinfo);
        let ours = fstype.contains("graph2aufs") || source == "graph2aufs" || root.is_some();
        (fstype.starts_with("fuse") && ours).then_some(View {
            mountpoint,
            root,
            read_only,
        })
    }

    /// Mounted over `path` or above it: a lookup of `path` enters the view.
    pub fn covers(&self, path: &Path) -> bool {
        path.starts_with(&self.mountpoint)
    }

    /// Shows the ROOT at `root` (wherever it is mounted).
    pub fn shows(&self, root: &Path) -> bool {
        self.root.as_deref() == Some(root)
    }

    /// Its server is gone: the kernel answers ENOTCONN. (statfs always asks
    /// the server; a stat may be answered from the kernel's cache.)
    pub fn is_dead(&self) -> bool {
        matches!(rfs::statfs(&self.mountpoint), Err(rustix::io::Errno::NOTCONN))
    }
}

/// The error for a ROOT whose lookup fails with ENOTCONN: a FUSE mount
/// over it (or above it) lost its server. Names the recovery.
fn dead_view_error(root: &Path) -> Error {
    let abs = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    let Some(v) = View::all().into_iter().rev().find(|v| v.covers(&abs)) else {
        return Error::Env(format!(
            "ROOT {}: a dead FUSE mount covers it (its server is gone) and it is not a graph2aufs view: \
             unmount it first",
            root.display()
        ));
    };
    let mp = v.mountpoint.display();
    let remount = if v.mountpoint == abs {
        format!(" (or `graph2aufs mount {mp}` again, which detaches it)")
    } else {
        String::new()
    };
    Error::Env(format!(
        "{} is covered by a dead graph2aufs view (its server is gone): run `umount -l {mp}`{remount}",
        abs.display()
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_are_read_from_mountinfo_with_their_root_and_mode() {
        let rw = "46 27 0:41 / /var/lib/docker rw,relatime - fuse graph2aufs:/var/lib/docker rw,user_id=0";
        let ro = "51 27 0:44 / /mnt/view\\040x ro,nosuid,nodev,noatime - fuse graph2aufs:/srv/old\\040root rw";
        let other = "52 27 0:45 / /mnt/sshfs rw,relatime - fuse.sshfs host:/ rw";
        assert_eq!(
            View::parse(rw),
            Some(View {
                mountpoint: "/var/lib/docker".into(),
                root: Some("/var/lib/docker".into()),
                read_only: false,
            })
        );
        assert_eq!(
            View::parse(ro),
            Some(View {
                mountpoint: "/mnt/view x".into(),
                root: Some("/srv/old root".into()),
                read_only: true,
            })
        );
        assert_eq!(View::parse(other), None);
        let v = View::parse(rw).unwrap();
        assert!(v.covers(Path::new("/var/lib/docker")) && v.covers(Path::new("/var/lib/docker/graph")));
        assert!(!v.covers(Path::new("/var/lib/docker2")) && v.shows(Path::new("/var/lib/docker")));
    }
}
