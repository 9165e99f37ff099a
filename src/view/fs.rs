//! The FUSE file system: the [`View`] (its state: the node table, the open
//! files, the layout transform, the live migrator of a read-write view)
//! and its `Filesystem` impl, which answers each request through the rooms
//! that hold the concept: lookup and listing (`lookup`), attributes
//! (`attr`), open files (`files`), changes (`write`). A read-only view
//! answers EROFS to every change.

use super::attr::{errno, synth_attr, to_time, DirEntry};
use super::backing::{open_entry, open_named, stat_fd, truncate_on_open, xattr_path, XattrPath};
use super::creds::{kill_privileges, AsCaller, Caller, CallerUmask};
use super::files::{Files, Opened, Passthrough, WRITE_FLAGS};
use super::node::{Backing, Node, Table};
use super::transform::{Role, Transform};
use crate::dirref::DirRef;
use crate::initlayer::{InitKind, InitLayer};
use crate::legacy::Dirs;
use crate::sys;
use fuser::{
    BsdFileFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow,
    WriteFlags,
};
use rustix::fs as rfs;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub struct View {
    pub(super) dirs: Dirs,
    pub(super) root_fd: Arc<OwnedFd>,
    /// ROOT as the root node's backing has it.
    pub(super) root_dir: Arc<DirRef>,
    /// The `--aufs-dir` that `ROOT/aufs` links to: shown as that directory.
    pub aufs_dir: Option<Arc<DirRef>>,
    pub(super) transform: Arc<Transform>,
    pub(super) table: Arc<Table>,
    /// Read-write view: changes pass through to ROOT, and the migrator
    /// moves items behind it.
    pub(super) writable: bool,
    pub(super) live: Option<Arc<super::live::Migrator>>,
    pub(super) files: Arc<Files>,
    /// Listings being read by the kernel, chunk by chunk (by directory node
    /// id): there is no open directory handle (see `opendir`).
    pub(super) listings: Mutex<HashMap<u64, Arc<Vec<DirEntry>>>>,
    pub(super) inits: Mutex<HashMap<usize, Arc<InitLayer>>>,
    pub(super) data_dirs: Mutex<HashMap<usize, Arc<DirRef>>>,
    pub(super) ttl: Duration,
    pub(super) passthrough: bool,
    /// The kernel sends open(O_TRUNC) as an open with O_TRUNC
    /// (FUSE_ATOMIC_O_TRUNC), never as a size change without a handle:
    /// such a change is then truncate(2)'s (see `View::do_setattr`).
    pub(super) atomic_o_trunc: bool,
    /// Times of the directories graph2aufs synthesizes.
    pub(super) synth_time: SystemTime,
}

impl View {
    pub fn new(root_fd: OwnedFd, dirs: Dirs, transform: Arc<Transform>, passthrough: bool) -> io::Result<View> {
        let st = stat_fd(&root_fd)?;
        let main_dev = st.st_dev;
        let synth_time = to_time(st.st_mtime, st.st_mtime_nsec as i64);
        let root_dir = DirRef::new(root_fd.try_clone()?);
        let table = Arc::new(Table::new(
            Backing::Real {
                dir: root_dir.clone(),
                role: Role::Root,
            },
            main_dev,
        ));
        Ok(View {
            dirs,
            root_fd: Arc::new(root_fd),
            root_dir,
            aufs_dir: None,
            writable: !transform.read_only,
            live: None,
            transform,
            table,
            files: Arc::default(),
            listings: Mutex::new(HashMap::new()),
            inits: Mutex::new(HashMap::new()),
            data_dirs: Mutex::new(HashMap::new()),
            ttl: Duration::from_secs(3600),
            passthrough,
            atomic_o_trunc: false,
            synth_time,
        })
    }

    /// The directories the view serves from, named (for
    /// [`super::restrictions`]): ROOT (`.`), the `--aufs-dir`, and ROOT's
    /// `graph`, `containers` and aufs directories.
    pub(super) fn served_dirs(&self) -> io::Result<Vec<(&'static str, OwnedFd)>> {
        let d = &self.dirs;
        let mut out = vec![(".", self.root_fd.try_clone()?)];
        if let Some(a) = &self.aufs_dir {
            out.push(("--aufs-dir", a.fd()?.try_clone()?));
        }
        for (name, fd) in [
            ("graph", &d.graph),
            ("containers", &d.containers),
            ("aufs/diff", &d.diff),
            ("aufs/layers", &d.layers),
            ("aufs/mnt", &d.mnt),
        ] {
            if let Some(fd) = fd {
                out.push((name, fd.try_clone()?));
            }
        }
        Ok(out)
    }

    /// Whether `node` is in a layer to be copied to another file system (and
    /// not switched to its copy yet).
    pub(super) fn in_transit(&self, node: &Node) -> bool {
        let (Some(m), Some(l)) = (&self.live, node.layer()) else {
            return false;
        };
        m.in_transit(l)
    }

    /// Holds off the switch of the layers of nodes `ids` to copies while a
    /// request on them is served (see [`super::live::Migrator::hold`]).
    /// Nothing to do (no node looked up) once no layer is left to copy.
    pub(super) fn hold(&self, ids: &[u64]) -> Vec<std::sync::RwLockReadGuard<'_, ()>> {
        match &self.live {
            Some(m) if m.copies_left() => m.hold(ids.iter().filter_map(|&id| self.table.get(id)?.layer())),
            _ => Vec::new(),
        }
    }

    pub(super) fn node_io(&self, ino: INodeNo) -> io::Result<Arc<Node>> {
        self.table
            .get(ino.0)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
    }

    pub(super) fn node(&self, ino: INodeNo) -> Result<Arc<Node>, Errno> {
        self.table.get(ino.0).ok_or(Errno::ENOENT)
    }

    /// Page cache flags of a file served by graph2aufs (no passthrough):
    /// the read-only view never changes, so its pages stay valid.
    pub(super) fn cache_flags(&self) -> FopenFlags {
        if self.writable {
            FopenFlags::empty()
        } else {
            FopenFlags::FOPEN_KEEP_CACHE
        }
    }

    /// Opens node `ino`'s file for the kernel: a handle, and the backing id
    /// to pass its data through the kernel (one per inode, shared by all
    /// its opens) where passthrough is on. A synthesized file opened for
    /// reading has no handle (its bytes are the node's); opened for writing,
    /// its item migrates first.
    pub(super) fn open_file(
        &self,
        ino: INodeNo,
        flags: i32,
        caller: Option<Caller>,
        open_backing: impl FnOnce(&File) -> io::Result<fuser::BackingId>,
    ) -> io::Result<Opened> {
        let node = if flags & WRITE_FLAGS != 0 {
            if !self.writable {
                return Err(io::Error::from_raw_os_error(libc::EROFS));
            }
            self.writable_node(ino)?
        } else {
            self.node_io(ino)?
        };
        let file = match &*node.backing() {
            Backing::Entry { dir, name, ino } => open_named(&*dir.fd()?, name, *ino, flags)?,
            Backing::Fd { fd } => open_entry(fd, OsStr::new(""), flags)?,
            Backing::File(_) | Backing::Init { .. } => {
                return Ok(Opened {
                    fh: 0,
                    backing: None,
                    direct: false,
                })
            }
            _ => return Err(io::Error::from_raw_os_error(libc::EISDIR)),
        };
        // A file once synthesized was opened through the page cache: the
        // kernel refuses passthrough opens of a file open that way. Nor is a
        // file of a layer to be copied to another file system opened so (its
        // opens switch to the copy).
        let passthrough = node.origin().is_none() && !self.in_transit(&node);
        if flags & libc::O_TRUNC != 0 {
            truncate_on_open(&file, caller.as_ref())?;
        }
        self.add_file(node.id, file, flags, passthrough, caller, open_backing)
    }

    /// A handle for an open file: [`Files::add`] with this view's
    /// passthrough.
    pub(super) fn add_file(
        &self,
        ino: u64,
        file: File,
        flags: i32,
        passthrough: bool,
        caller: Option<Caller>,
        open_backing: impl FnOnce(&File) -> io::Result<fuser::BackingId>,
    ) -> io::Result<Opened> {
        let passthrough = Passthrough {
            kernel: self.passthrough,
            this_open: passthrough,
        };
        self.files.add(ino, file, flags, passthrough, caller, open_backing)
    }
}

impl Filesystem for View {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        for flag in [
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_CACHE_SYMLINKS,
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_NO_OPENDIR_SUPPORT,
            // The kernel caches ACLs (and their absence: `ls -l` asks for
            // them on every entry) and applies them in permission checks.
            InitFlags::FUSE_POSIX_ACL,
        ] {
            if config.add_capabilities(flag).is_err() {
                log::debug!("the kernel does not offer {flag:?}");
            }
        }
        if self.writable {
            // Modes of new entries unmasked, with the caller's umask apart
            // (see `CallerUmask`).
            for flag in [InitFlags::FUSE_BIG_WRITES, InitFlags::FUSE_DONT_MASK] {
                if config.add_capabilities(flag).is_err() {
                    log::debug!("the kernel does not offer {flag:?}");
                }
            }
            // open(O_TRUNC) as an open with O_TRUNC, not as the size change
            // truncate(2) sends: the two differ in times on XFS, btrfs and
            // tmpfs (see `View::do_setattr`), and so does ftruncate(2).
            self.atomic_o_trunc = config.add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC).is_ok();
            if !self.atomic_o_trunc {
                log::info!(
                    "the kernel does not offer FUSE_ATOMIC_O_TRUNC: truncate(2) to a file's own size moves its \
                     times through the view"
                );
            }
        }
        if self.passthrough {
            if config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok() && config.set_max_stack_depth(1).is_ok() {
                log::info!("kernel FUSE passthrough enabled for file data");
            } else {
                log::info!("kernel FUSE passthrough unavailable: file data is served by graph2aufs");
                self.passthrough = false;
            }
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let _hold = self.hold(&[parent.0]);
        let parent = match self.node(parent) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        match self.looked_up(&parent, name) {
            Ok(attr) => reply.entry(&self.ttl, &attr, Generation(0)),
            // A name that is not there: the kernel keeps that as well (node
            // id 0, a negative entry), so looking again costs no round
            // trip. Names the view shows change only through the kernel
            // (which replaces the entry) or never, but for graph2aufs's own
            // files in ROOT and `.graph2aufs` (the live status appears
            // while the view mounts): not cached there.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && !self.own_files_in(&parent) => reply.entry(
                &self.ttl,
                &synth_attr(0, FileType::RegularFile, 0, 0, UNIX_EPOCH),
                Generation(0),
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.table.forget(ino.0, nlookup);
        if self.table.get(ino.0).is_none() {
            self.listing_done(ino);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.node(ino).and_then(|n| self.attr(&n).map_err(errno)) {
            Ok(a) => reply.attr(&self.ttl, &a),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let node = match self.node(ino) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        match &*node.backing() {
            Backing::Entry { dir, name, .. } => match dir.fd().and_then(|d| sys::readlink(&*d, name)) {
                Ok(t) => reply.data(&t),
                Err(e) => reply.error(errno(e)),
            },
            Backing::Fd { fd } => match sys::readlink(fd.as_ref(), "") {
                Ok(t) => reply.data(&t),
                Err(e) => reply.error(errno(e)),
            },
            Backing::Init { layer, index: Some(i) } => match &layer.entries[*i].kind {
                InitKind::Symlink(t) => reply.data(t),
                _ => reply.error(Errno::EINVAL),
            },
            _ => reply.error(Errno::EINVAL),
        };
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let _hold = self.hold(&[ino.0]);
        // Writes by others than root come through graph2aufs, made as them
        // (see `add_file`).
        match self.open_file(ino, flags.0, Caller::of(req), |f| reply.open_backing(f)) {
            Ok(o) => match &o.backing {
                Some(id) => reply.opened_passthrough(FileHandle(o.fh), o.fopen_flags(), id),
                None => reply.opened(FileHandle(o.fh), self.cache_flags()),
            },
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        if let Some(file) = self.files.handle_file(fh.0) {
            let mut buf = vec![0u8; size as usize];
            let mut done = 0;
            while done < buf.len() {
                match file.read_at(&mut buf[done..], offset + done as u64) {
                    Ok(0) => break,
                    Ok(n) => done += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return reply.error(errno(e)),
                }
            }
            return reply.data(&buf[..done]);
        }
        // No handle: a file opened while synthesized. Since rebound to the
        // disk (its item migrated), it reads what the disk holds.
        let node = match self.node(ino) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let real = match &*node.backing() {
            Backing::File(bytes) => {
                let start = (offset as usize).min(bytes.len());
                let end = (start + size as usize).min(bytes.len());
                return reply.data(&bytes[start..end]);
            }
            Backing::Entry { dir, name, ino } => dir.fd().and_then(|d| open_named(&d, name, *ino, libc::O_RDONLY)),
            Backing::Fd { fd } => open_entry(fd, OsStr::new(""), libc::O_RDONLY),
            _ => return reply.data(&[]),
        };
        let mut buf = vec![0u8; size as usize];
        match real.and_then(|f| f.read_at(&mut buf, offset)) {
            Ok(n) => reply.data(&buf[..n]),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.files.release(fh.0);
        reply.ok();
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // Nothing to do at close (data goes to the backing file at once,
        // locks are the kernel's own): ENOSYS stops the kernel sending a
        // FLUSH, a round trip, at every close.
        reply.error(Errno::ENOSYS);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // The read-only view never changes: no open directory state is
        // needed, and ENOSYS tells the kernel to stop sending OPENDIR and
        // RELEASEDIR and to cache directory contents (its defaults then are
        // FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR): a warm walk costs no round
        // trip per directory.
        let _ = ino;
        reply.error(Errno::ENOSYS);
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let _hold = self.hold(&[ino.0]);
        let entries = match self.dir_entries(ino, offset) {
            Ok(e) => e,
            Err(e) => return reply.error(e),
        };
        let mut full = false;
        for (i, e) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(e.ino), (i + 1) as u64, e.kind, &e.name) {
                full = true;
                break;
            }
        }
        if !full {
            self.listing_done(ino);
        }
        reply.ok();
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let _hold = self.hold(&[ino.0]);
        let entries = match self.dir_entries(ino, offset) {
            Ok(e) => e,
            Err(e) => return reply.error(e),
        };
        let dir = match self.node(ino) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let mut full = false;
        for (i, e) in entries.iter().enumerate().skip(offset as usize) {
            let next = (i + 1) as u64;
            if e.name == "." || e.name == ".." {
                // The kernel takes no reference for these.
                let attr = synth_attr(e.ino, FileType::Directory, 0o755, 0, self.synth_time);
                if reply.add(INodeNo(e.ino), next, &e.name, &self.ttl, &attr, Generation(0)) {
                    full = true;
                    break;
                }
                continue;
            }
            // An entry that vanished since the listing is skipped, as
            // getdents would; any other failure (out of descriptors, an I/O
            // error) is the reader's, not a silently shorter listing.
            let attr = match self.looked_up(&dir, &e.name) {
                Ok(a) => a,
                Err(err) if err.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(err) => {
                    log::warn!("listing node {}: {}: {err}", ino.0, crate::names::escape_os(&e.name));
                    if i as u64 == offset {
                        return reply.error(errno(err));
                    }
                    break;
                }
            };
            if reply.add(attr.ino, next, &e.name, &self.ttl, &attr, Generation(0)) {
                // Not sent: the kernel holds no reference to it.
                self.table.forget(attr.ino.0, 1);
                full = true;
                break;
            }
        }
        if !full {
            self.listing_done(ino);
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // (fstatfs needs no readable descriptor: an O_PATH one does.)
        let st = rfs::fstatvfs(&self.root_fd);
        match st {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                s.f_namemax as u32,
                s.f_frsize as u32,
            ),
            Err(e) => reply.error(errno(e.into())),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let node = match self.node(ino) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let XattrPath { path, follow, .. } = match xattr_path(&node) {
            Ok(Some(p)) => p,
            Ok(None) => return reply.error(Errno::ENODATA),
            Err(e) => return reply.error(errno(e)),
        };
        let mut buf = vec![0u8; size.max(1) as usize];
        // A size query needs the `_query` call: rustix answers 0 for an
        // empty buffer.
        let r = match (size, follow) {
            (0, true) => rfs::getxattr_query(&path, name),
            (0, false) => rfs::lgetxattr_query(&path, name),
            (_, true) => rfs::getxattr(&path, name, &mut buf[..]),
            (_, false) => rfs::lgetxattr(&path, name, &mut buf[..]),
        };
        match r {
            Ok(n) if size == 0 => reply.size(n as u32),
            Ok(n) => reply.data(&buf[..n]),
            Err(e) => reply.error(errno(e.into())),
        }
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let node = match self.node(ino) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let XattrPath { path, follow, .. } = match xattr_path(&node) {
            Ok(Some(p)) => p,
            Ok(None) => return if size == 0 { reply.size(0) } else { reply.data(&[]) },
            Err(e) => return reply.error(errno(e)),
        };
        let list = || -> rustix::io::Result<Vec<u8>> {
            let n = if follow {
                rfs::listxattr_query(&path)?
            } else {
                rfs::llistxattr_query(&path)?
            };
            let mut buf = vec![0u8; n];
            let n = if follow {
                rfs::listxattr(&path, &mut buf[..])?
            } else {
                rfs::llistxattr(&path, &mut buf[..])?
            };
            buf.truncate(n);
            Ok(buf)
        };
        let mut names = match list() {
            Ok(b) => b,
            Err(e) => return reply.error(errno(e.into())),
        };
        // trusted.* names are for the privileged only, as natively.
        if req.uid() != 0 {
            names = names
                .split_inclusive(|&b| b == 0)
                .filter(|n| !n.starts_with(b"trusted."))
                .flatten()
                .copied()
                .collect();
        }
        if size == 0 {
            reply.size(names.len() as u32)
        } else if names.len() > size as usize {
            reply.error(Errno::ERANGE)
        } else {
            reply.data(&names)
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let _hold = self.hold(&[ino.0]);
        // Nothing but the change time (chown(-1, -1)): a no-op chown moves it.
        // (The kernel sends no change time: a setattr of nothing is it.)
        let _ = ctime;
        let touch =
            [mode, uid, gid].iter().all(Option::is_none) && size.is_none() && atime.is_none() && mtime.is_none();
        let r = if touch {
            self.do_touch_ctime(ino)
        } else {
            self.do_setattr(req, ino, mode, uid, gid, size, atime, mtime, fh.map(|f| f.0))
                .and_then(|a| match Caller::of(req) {
                    // A truncate by another than root clears setuid and
                    // setgid bits as a write does.
                    Some(c) if size.is_some() && c.uid != 0 && a.perm & 0o6000 != 0 => self.do_kill_privileges(ino, &c),
                    _ => Ok(a),
                })
        };
        match r {
            Ok(a) => reply.attr(&self.ttl, &a),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mknod(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, rdev: u32, reply: ReplyEntry) {
        let _hold = self.hold(&[parent.0]);
        let _umask = CallerUmask::set(umask);
        self.entry_reply(self.do_mknod(req, parent, name, mode, rdev), reply)
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let _hold = self.hold(&[parent.0]);
        let _umask = CallerUmask::set(umask);
        self.entry_reply(self.do_mkdir(req, parent, name, mode), reply)
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &std::path::Path, reply: ReplyEntry) {
        let _hold = self.hold(&[parent.0]);
        self.entry_reply(self.do_symlink(req, parent, link_name, target), reply)
    }

    fn link(&self, req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let _hold = self.hold(&[ino.0, newparent.0]);
        self.entry_reply(self.do_link(req, ino, newparent, newname), reply)
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _hold = self.hold(&[parent.0]);
        empty_reply(self.do_unlink(req, parent, name, false), reply)
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _hold = self.hold(&[parent.0]);
        empty_reply(self.do_unlink(req, parent, name, true), reply)
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let _hold = self.hold(&[parent.0, newparent.0]);
        empty_reply(self.do_rename(req, parent, name, newparent, newname, flags), reply)
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let _hold = self.hold(&[parent.0]);
        let _umask = CallerUmask::set(umask);
        match self.do_create(req, parent, name, mode, flags, |f| reply.open_backing(f)) {
            Ok((attr, o)) => match &o.backing {
                Some(id) => {
                    reply.created_passthrough(&self.ttl, &attr, Generation(0), FileHandle(o.fh), o.fopen_flags(), id)
                }
                None => reply.created(&self.ttl, &attr, Generation(0), FileHandle(o.fh), self.cache_flags()),
            },
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let _hold = self.hold(&[ino.0]);
        let Some((file, caller)) = self.files.handle_for(fh.0, req) else {
            return reply.error(Errno::EBADF);
        };
        // As the writer: the backing file system allocates for them.
        let written = AsCaller::enter(caller.as_ref()).and_then(|_as| file.write_all_at(data, offset));
        match written {
            Ok(()) => {
                if let Some(c) = caller.filter(|c| c.uid != 0) {
                    kill_privileges(&file, &c);
                }
                reply.written(data.len() as u32)
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        let r = match self.files.handle_file(fh.0) {
            Some(f) if datasync => f.sync_data(),
            Some(f) => f.sync_all(),
            None => Ok(()),
        };
        empty_reply(r, reply)
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        empty_reply(self.do_fsyncdir(ino, datasync), reply)
    }

    fn fallocate(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let _hold = self.hold(&[ino.0]);
        let Some((file, caller)) = self.files.handle_for(fh.0, req) else {
            return reply.error(Errno::EBADF);
        };
        let r = AsCaller::enter(caller.as_ref()).and_then(|_as| {
            rfs::fallocate(
                &*file,
                rfs::FallocateFlags::from_bits_retain(mode as u32),
                offset,
                length,
            )
            .map_err(io::Error::from)
        });
        empty_reply(r, reply)
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let _hold = self.hold(&[ino.0]);
        empty_reply(self.do_setxattr(req, ino, name, value, flags), reply)
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _hold = self.hold(&[ino.0]);
        empty_reply(self.do_removexattr(req, ino, name), reply)
    }

    fn lseek(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: i64, whence: i32, reply: fuser::ReplyLseek) {
        // SEEK_DATA and SEEK_HOLE on the backing file (the kernel answers
        // SEEK_SET, SEEK_CUR and SEEK_END itself).
        let Some(file) = self.files.handle_file(fh.0) else {
            return reply.error(Errno::EINVAL);
        };
        let pos = match whence {
            libc::SEEK_DATA => rfs::SeekFrom::Data(offset as u64),
            libc::SEEK_HOLE => rfs::SeekFrom::Hole(offset as u64),
            libc::SEEK_END => rfs::SeekFrom::End(offset),
            libc::SEEK_CUR | libc::SEEK_SET => rfs::SeekFrom::Start(offset as u64),
            _ => return reply.error(Errno::EINVAL),
        };
        match rfs::seek(&*file, pos) {
            Ok(o) => reply.offset(o as i64),
            Err(e) => reply.error(errno(e.into())),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, mask: fuser::AccessFlags, reply: ReplyEmpty) {
        if mask.bits() & libc::W_OK != 0 && !self.writable {
            reply.error(Errno::EROFS)
        } else {
            reply.ok()
        }
    }
}

fn empty_reply(r: io::Result<()>, reply: ReplyEmpty) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(e)),
    }
}

impl View {
    fn entry_reply(&self, r: io::Result<FileAttr>, reply: ReplyEntry) {
        match r {
            Ok(a) => reply.entry(&self.ttl, &a, Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }
}

/// Whether ROOT's file system itself keeps reads from changing access
/// times: then kernel passthrough (which opens the backing file with the
/// reader's flags) cannot change them either.
pub fn atime_safe(root: &OwnedFd) -> bool {
    match rfs::fstatvfs(root) {
        Ok(s) => s
            .f_flag
            .intersects(rfs::StatVfsMountFlags::RDONLY | rfs::StatVfsMountFlags::NOATIME),
        Err(_) => false,
    }
}
