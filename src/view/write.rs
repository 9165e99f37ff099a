//! The read-write view's changes: each passes through to the backing tree,
//! relative to the descriptors of the inodes involved. Before a change that
//! touches a pending item's transformed entries, that item migrates (see
//! `live`), so the change lands on the disk as it will stay.

use super::backing::open_path;
use super::creds::{kill_privileges, AsCaller, Caller};
use super::fs::View;
use super::node::{Backing, Key, Node};
use super::transform::{Role, Touch};
use fuser::{FileAttr, INodeNo, RenameFlags, Request, TimeOrNow};
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, Timespec, Timestamps};
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

fn err(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// The identity of `req`'s caller on this thread (see [`super::creds`]),
/// for the system calls made for it.
fn as_caller(req: &Request) -> io::Result<AsCaller> {
    AsCaller::enter(Caller::of(req).as_ref())
}

fn timespec(t: Option<TimeOrNow>) -> Timespec {
    match t {
        None => Timespec {
            tv_sec: 0,
            tv_nsec: rfs::UTIME_OMIT,
        },
        Some(TimeOrNow::Now) => Timespec {
            tv_sec: 0,
            tv_nsec: rfs::UTIME_NOW,
        },
        Some(TimeOrNow::SpecificTime(t)) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timespec {
                tv_sec: d.as_secs() as i64,
                tv_nsec: d.subsec_nanos() as _,
            },
            Err(e) => {
                let d = e.duration();
                let (mut s, mut ns) = (-(d.as_secs() as i64), -(d.subsec_nanos() as i64));
                if ns < 0 {
                    s -= 1;
                    ns += 1_000_000_000;
                }
                Timespec {
                    tv_sec: s,
                    tv_nsec: ns as _,
                }
            }
        },
    }
}

/// A real inode for a system call: its own descriptor, or a name in its
/// directory.
enum Obj {
    Fd(Arc<OwnedFd>),
    At(Arc<OwnedFd>, std::ffi::OsString),
}

/// A directory about to change, held open for the change.
struct WDir {
    dir: Arc<crate::dirref::DirRef>,
    fd: Arc<OwnedFd>,
}

impl std::ops::Deref for WDir {
    type Target = OwnedFd;
    fn deref(&self) -> &OwnedFd {
        &self.fd
    }
}

impl std::os::fd::AsFd for WDir {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Obj {
    fn of(node: &Node) -> io::Result<Obj> {
        match &*node.backing() {
            Backing::Real { dir, .. } => Ok(Obj::Fd(dir.fd()?)),
            Backing::Fd { fd } => Ok(Obj::Fd(fd.clone())),
            Backing::Entry { dir, name, .. } => Ok(Obj::At(dir.fd()?, name.to_os_string())),
            _ => Err(err(libc::EPERM)),
        }
    }

    /// `(directory, name, flags)` for the `*at` calls that take
    /// `AT_EMPTY_PATH`.
    fn at(&self) -> (&OwnedFd, &OsStr, AtFlags) {
        match self {
            Obj::Fd(fd) => (fd, OsStr::new(""), AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW),
            Obj::At(dir, name) => (dir, name, AtFlags::SYMLINK_NOFOLLOW),
        }
    }

    /// A path that leads to the inode itself (through /proc/self/fd).
    fn proc_path(&self) -> std::path::PathBuf {
        match self {
            Obj::Fd(fd) => crate::sys::proc::fd_path(fd.as_ref()),
            Obj::At(dir, name) => crate::sys::proc::entry_path(dir.as_ref(), name),
        }
    }
}

impl View {
    /// Migrates whatever a change of `name` in `node` (or of `node` itself)
    /// would touch of a pending item, first.
    fn touch(&self, node: &Node, name: Option<&OsStr>) -> io::Result<()> {
        let Some(m) = &self.live else { return Ok(()) };
        if let Some(i) = node.origin() {
            m.migrate(i)?;
        }
        if let (Some(name), Backing::Real { role, .. }) = (name, &*node.backing()) {
            if let Some((of, what)) = self.strands(*role, name) {
                m.before_stranding(of, &what)?;
            }
            match self.transform.touched(*role, name) {
                Some(Touch::Item(i)) => m.migrate(i)?,
                Some(Touch::Repositories) => m.repositories()?,
                None => {}
            }
        }
        Ok(())
    }

    /// What a change of `name` in a directory of role `parent` would strand
    /// of the items still to migrate (see
    /// [`super::live::Migrator::before_stranding`]), and what it is: every
    /// item, for a root of the legacy or the aufs layout (`graph`,
    /// `containers`, `aufs` and its `diff`, `layers`, `mnt`); an image or
    /// container and all that builds on it, for its own directory or an
    /// entry of it other than its layer (the plan finds the item, its
    /// parent and its image there).
    fn strands(&self, parent: Role, name: &OsStr) -> Option<(Option<usize>, String)> {
        let b = name.as_encoded_bytes();
        let plan = &self.transform.plan;
        match (parent, b) {
            (Role::Root, b"graph" | b"containers" | b"aufs") => Some((None, crate::names::escape_os(name))),
            (Role::Aufs, b) if crate::layout::AufsDir::of_name(b).is_some() => {
                Some((None, format!("aufs/{}", crate::names::escape_os(name))))
            }
            (Role::Graph | Role::Containers, _) => match self.transform.child_role(parent, name) {
                Role::Image(i) | Role::Container(i) => Some((
                    Some(i),
                    format!(
                        "{}/{}",
                        plan.items[i].legacy_parent_dir(),
                        crate::names::escape_os(name)
                    ),
                )),
                _ => None,
            },
            (Role::Image(i) | Role::Container(i), _) if b != plan.items[i].legacy_leaf().as_bytes() => {
                let it = &plan.items[i];
                Some((
                    Some(i),
                    format!(
                        "{}/{}/{}",
                        it.legacy_parent_dir(),
                        crate::names::escape_os(&it.name),
                        crate::names::escape_os(name)
                    ),
                ))
            }
            _ => None,
        }
    }

    /// Node `ino`, ready to be changed: on the disk, not synthesized.
    pub(super) fn writable_node(&self, ino: INodeNo) -> io::Result<Arc<Node>> {
        if !self.writable {
            return Err(err(libc::EROFS));
        }
        let node = self.node_io(ino)?;
        self.touch(&node, None)?;
        self.settle(&node)?;
        Ok(node)
    }

    /// A node its item's migration made real but that a lookup raced:
    /// rebound now.
    fn settle(&self, node: &Node) -> io::Result<()> {
        let synthesized = matches!(
            &*node.backing(),
            Backing::Empty | Backing::File(_) | Backing::Init { .. }
        );
        if synthesized && node.origin().is_some() {
            if let (Some(m), Some(key)) = (&self.live, self.table.key_of(node.id)) {
                m.rebind_node(node, &key);
            }
            if matches!(
                &*node.backing(),
                Backing::Empty | Backing::File(_) | Backing::Init { .. }
            ) {
                return Err(err(libc::EIO));
            }
        }
        Ok(())
    }

    /// The directory `parent` on the disk, ready for a change of `name` in it.
    fn writable_dir(&self, parent: INodeNo, name: &OsStr) -> io::Result<(Arc<Node>, WDir)> {
        if !self.writable {
            return Err(err(libc::EROFS));
        }
        let node = self.node_io(parent)?;
        self.touch(&node, Some(name))?;
        self.settle(&node)?;
        let dir = match &*node.backing() {
            Backing::Real { dir, .. } => dir.clone(),
            Backing::Entry { .. } | Backing::Fd { .. } | Backing::File(_) => return Err(err(libc::ENOTDIR)),
            // graph2aufs's own synthesized directories.
            _ => return Err(err(libc::EPERM)),
        };
        let fd = dir.fd()?;
        Ok((node, WDir { dir, fd }))
    }

    /// The attributes of a new entry, with the kernel's lookup counted.
    fn new_entry(&self, parent: &Node, dir: &WDir, name: &OsStr) -> io::Result<FileAttr> {
        let role = match &*parent.backing() {
            Backing::Real { role, .. } => self.transform.child_role(*role, name),
            _ => super::transform::Role::Plain,
        };
        let node = self.real_node_in(&dir.dir, name, role, parent.layer())?;
        self.attr(&node).inspect_err(|_| self.table.forget(node.id, 1))
    }

    /// A name about to go (unlink, rename away or over): a node the kernel
    /// keeps under it gets a descriptor of its own, so it stays reachable
    /// (an open, unlinked file; a hard link's other name).
    fn pin(&self, dir: &OwnedFd, name: &OsStr) {
        let Ok((_, key)) = super::backing::identity(dir, name) else {
            return;
        };
        let Some(node) = self.table.peek(&key) else {
            return;
        };
        if let Backing::Entry { .. } = &*node.backing() {
        } else {
            return;
        }
        match open_path(dir, name) {
            Ok(fd) => node.rebind(Backing::Fd { fd: Arc::new(fd) }),
            Err(e) => log::debug!("keeping node {}: {e}", node.id),
        }
    }

    /// The entry `name` of `parent` has gone: a later lookup finds whatever
    /// takes its place.
    fn gone(&self, parent: &Node, name: &OsStr) {
        self.table.unkey(&Key::Child(parent.id, name.to_os_string()));
    }

    /// A layer directory `name` gone from `aufs/diff` through the view
    /// (Docker's Remove renames it to `<id>-removing`, then deletes it):
    /// its item, if any, was removed by the daemon.
    fn layer_gone(&self, parent: &Node, name: &OsStr) {
        let Some(m) = &self.live else { return };
        if !matches!(&*parent.backing(), Backing::Real { role: Role::Diff, .. }) {
            return;
        }
        let plan = &self.transform.plan;
        let Some(i) = crate::id::LayerId::parse(name.as_encoded_bytes())
            .ok()
            .and_then(|id| plan.find(&id))
        else {
            return;
        };
        if plan.items[i].name == name && !plan.items[i].blocked() {
            m.removed_by_daemon(i);
        }
    }

    pub(super) fn do_mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32) -> io::Result<FileAttr> {
        let (node, dir) = self.writable_dir(parent, name)?;
        {
            let _as = as_caller(req)?;
            rfs::mkdirat(dir.as_fd(), name, Mode::from_raw_mode(mode & 0o7777))?;
        }
        self.new_entry(&node, &dir, name)
    }

    pub(super) fn do_mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        rdev: u32,
    ) -> io::Result<FileAttr> {
        let (node, dir) = self.writable_dir(parent, name)?;
        {
            let _as = as_caller(req)?;
            rfs::mknodat(
                dir.as_fd(),
                name,
                rfs::FileType::from_raw_mode(mode),
                Mode::from_raw_mode(mode & 0o7777),
                rdev as u64,
            )?;
        }
        self.new_entry(&node, &dir, name)
    }

    pub(super) fn do_symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        target: &Path,
    ) -> io::Result<FileAttr> {
        let (node, dir) = self.writable_dir(parent, name)?;
        {
            let _as = as_caller(req)?;
            rfs::symlinkat(target, dir.as_fd(), name)?;
        }
        self.new_entry(&node, &dir, name)
    }

    pub(super) fn do_link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
    ) -> io::Result<FileAttr> {
        let src = self.writable_node(ino)?;
        let (node, dir) = self.writable_dir(newparent, newname)?;
        let obj = Obj::of(&src)?;
        {
            let _as = as_caller(req)?;
            match &obj {
                // (AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; the magic link
                // needs nothing.)
                Obj::Fd(_) => rfs::linkat(rfs::CWD, obj.proc_path(), dir.as_fd(), newname, AtFlags::SYMLINK_FOLLOW)?,
                Obj::At(from, name) => rfs::linkat(from, name, dir.as_fd(), newname, AtFlags::empty())?,
            }
        }
        self.new_entry(&node, &dir, newname)
    }

    pub(super) fn do_unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, dir_flag: bool) -> io::Result<()> {
        let (node, dir) = self.writable_dir(parent, name)?;
        if !dir_flag {
            self.pin(&dir, name);
        }
        let flags = if dir_flag { AtFlags::REMOVEDIR } else { AtFlags::empty() };
        {
            let _as = as_caller(req)?;
            rfs::unlinkat(dir.as_fd(), name, flags)?;
        }
        self.gone(&node, name);
        if dir_flag {
            self.layer_gone(&node, name);
        }
        Ok(())
    }

    pub(super) fn do_rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> io::Result<()> {
        let (from, from_dir) = self.writable_dir(parent, name)?;
        let (to, to_dir) = self.writable_dir(newparent, newname)?;
        self.pin(&from_dir, name);
        self.pin(&to_dir, newname);
        {
            let _as = as_caller(req)?;
            rfs::renameat_with(
                from_dir.as_fd(),
                name,
                to_dir.as_fd(),
                newname,
                rfs::RenameFlags::from_bits_retain(flags.bits()),
            )?;
        }
        self.gone(&from, name);
        self.gone(&to, newname);
        if !flags.contains(RenameFlags::RENAME_EXCHANGE) {
            self.layer_gone(&from, name);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn do_setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        fh: Option<u64>,
    ) -> io::Result<FileAttr> {
        let node = self.writable_node(ino)?;
        let obj = Obj::of(&node)?;
        let chmod = |mode: u32| rfs::chmod(obj.proc_path(), Mode::from_raw_mode(mode & 0o7777));
        // Setuid and setgid bits cleared after another user's write or
        // truncate: the kernel sends that as a mode change of theirs, which
        // the owner alone could make; natively the kernel forces it. (A
        // chmod by one who may not is refused by the kernel before it
        // reaches graph2aufs: default_permissions.)
        let kill_only = match mode {
            Some(m) => {
                let (d, n, f) = obj.at();
                let (now, m) = (rfs::statat(d, n, f)?.st_mode & 0o7777, m & 0o7777);
                m != now && m & !now == 0 && (now & !m) & !(libc::S_ISUID | libc::S_ISGID) == 0
            }
            None => false,
        };
        if let Some(m) = mode.filter(|_| kill_only) {
            chmod(m)?;
        }
        let as_caller = as_caller(req)?;
        if uid.is_some() || gid.is_some() {
            let (d, n, f) = obj.at();
            rfs::chownat(d, n, uid.map(rfs::Uid::from_raw), gid.map(rfs::Gid::from_raw), f)?;
        }
        if let Some(m) = mode.filter(|_| !kill_only) {
            chmod(m)?;
        }
        if let Some(size) = size {
            match (fh, fh.and_then(|fh| self.files.handle_file(fh))) {
                // ftruncate(2): the caller's handle.
                (_, Some(f)) => f.set_len(size)?,
                // truncate(2) (open(O_TRUNC) comes as an open): by path, as
                // the backing file system does it. (When the size stays,
                // XFS and btrfs move no time, nor tmpfs for an empty file;
                // ftruncate(2) always moves them.)
                (None, None) if self.atomic_o_trunc => match &obj {
                    Obj::Fd(fd) => crate::sys::truncate(fd, size)?,
                    Obj::At(dir, name) => crate::sys::truncate(open_path(dir, name)?, size)?,
                },
                // A handle of no file, or a kernel that sends open(O_TRUNC)
                // as this too: ftruncate(2)'s semantics, as either needs.
                _ => {
                    let f = match &obj {
                        Obj::Fd(fd) => rfs::open(obj.proc_path(), OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())
                            .or_else(|_| {
                                rfs::openat(fd.as_fd(), "", OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())
                            })?,
                        Obj::At(dir, name) => rfs::openat(
                            dir.as_fd(),
                            name,
                            OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                            Mode::empty(),
                        )?,
                    };
                    File::from(f).set_len(size)?;
                }
            }
        }
        if atime.is_some() || mtime.is_some() {
            let times = Timestamps {
                last_access: timespec(atime),
                last_modification: timespec(mtime),
            };
            let (d, n, f) = obj.at();
            match &obj {
                // utimensat takes no AT_EMPTY_PATH: through the magic link.
                Obj::Fd(_) => rfs::utimensat(rfs::CWD, obj.proc_path(), &times, AtFlags::empty())?,
                Obj::At(..) => rfs::utimensat(d, n, &times, f)?,
            }
        }
        drop(as_caller);
        self.attr(&node)
    }

    /// [`kill_privileges`] of node `ino`'s file, for `caller`.
    pub(super) fn do_kill_privileges(&self, ino: INodeNo, caller: &Caller) -> io::Result<FileAttr> {
        let node = self.writable_node(ino)?;
        let f = File::from(rfs::open(
            Obj::of(&node)?.proc_path(),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?);
        kill_privileges(&f, caller);
        self.attr(&node)
    }

    /// A change of nothing (chown(-1, -1)): the change time moves.
    pub(super) fn do_touch_ctime(&self, ino: INodeNo) -> io::Result<FileAttr> {
        let node = self.writable_node(ino)?;
        let obj = Obj::of(&node)?;
        let (d, n, f) = obj.at();
        rfs::chownat(d, n, None, None, f)?;
        self.attr(&node)
    }

    pub(super) fn do_setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> io::Result<()> {
        let node = self.writable_node(ino)?;
        let super::backing::XattrPath { path, follow, .. } =
            super::backing::xattr_path(&node)?.ok_or_else(|| err(libc::EPERM))?;
        let flags = rfs::XattrFlags::from_bits_retain(flags as u32);
        let _as = as_caller(req)?;
        if follow {
            rfs::setxattr(&path, name, value, flags)?;
        } else {
            rfs::lsetxattr(&path, name, value, flags)?;
        }
        Ok(())
    }

    pub(super) fn do_removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr) -> io::Result<()> {
        let node = self.writable_node(ino)?;
        let super::backing::XattrPath { path, follow, .. } =
            super::backing::xattr_path(&node)?.ok_or_else(|| err(libc::EPERM))?;
        let _as = as_caller(req)?;
        if follow {
            rfs::removexattr(&path, name)?;
        } else {
            rfs::lremovexattr(&path, name)?;
        }
        Ok(())
    }

    /// Creates and opens a file: its attributes, handle and backing id.
    pub(super) fn do_create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        flags: i32,
        open_backing: impl FnOnce(&File) -> io::Result<fuser::BackingId>,
    ) -> io::Result<(FileAttr, super::files::Opened)> {
        let (node, dir) = self.writable_dir(parent, name)?;
        let keep = libc::O_ACCMODE
            | libc::O_APPEND
            | libc::O_DIRECT
            | libc::O_NONBLOCK
            | libc::O_SYNC
            | libc::O_DSYNC
            | libc::O_TRUNC
            | libc::O_EXCL;
        let oflags =
            OFlags::from_bits_retain((flags & keep) as u32) | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let caller = Caller::of(req);
        let fd = {
            let _as = AsCaller::enter(caller.as_ref())?;
            rfs::openat(dir.as_fd(), name, oflags, Mode::from_raw_mode(mode & 0o7777))?
        };
        let attr = self.new_entry(&node, &dir, name)?;
        let node = self.node_io(attr.ino)?;
        let passthrough = !self.in_transit(&node);
        let opened = self.add_file(attr.ino.0, File::from(fd), flags, passthrough, caller, open_backing)?;
        Ok((attr, opened))
    }

    pub(super) fn do_fsyncdir(&self, ino: INodeNo, datasync: bool) -> io::Result<()> {
        let node = self.node_io(ino)?;
        let obj = Obj::of(&node)?;
        let f = File::from(rfs::open(
            obj.proc_path(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?);
        if datasync {
            f.sync_data()
        } else {
            f.sync_all()
        }
    }
}
