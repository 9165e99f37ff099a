//! The FUSE file system: a passthrough core (operations on descriptors held
//! per inode) under the layout transform. This is the read-only view; every
//! operation that would write answers EROFS.

use super::creds::{AsCaller, Caller};
use super::node::{Backing, Key, Node, Table, Top, ROOT_ID};
use super::transform::{Role, Shown, Transform};
use crate::dirref::DirRef;
use crate::initlayer::{InitKind, InitLayer};
use crate::item::{ItemKind, Source};
use crate::layout::AufsDir;
use crate::legacy::Dirs;
use crate::sys;
use crate::union::{Entry, Leaf, Src, UnionDir};
use fuser::{
    BsdFileFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow,
    WriteFlags,
};
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, Stat};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An open file of the view.
struct Handle {
    file: Arc<File>,
    _backing: Option<Arc<fuser::BackingId>>,
    /// The node, when its data passes through graph2aufs: through the page
    /// cache, or with direct I/O beside passthrough opens (see
    /// [`View::add_file`]).
    served: Option<u64>,
    /// Counted among the node's page cache opens.
    cached: bool,
    /// The flags it was opened with (to open it again elsewhere).
    flags: i32,
    /// Who opened it, when not root: what the kernel writes back of its
    /// pages (a request of no process) is written as them.
    opener: Option<Arc<Caller>>,
}

/// A file opened for the kernel: its handle, its inode's backing id where
/// the kernel passes its data through, and whether its data passes through
/// graph2aufs all the same (FOPEN_DIRECT_IO).
pub(super) struct Opened {
    pub fh: u64,
    pub backing: Option<Arc<fuser::BackingId>>,
    pub direct: bool,
}

/// The view's open files, shared with the migrator (a layer copied to
/// another file system switches its open files to the copy).
#[derive(Default)]
pub(super) struct Files {
    handles: Mutex<HashMap<u64, Handle>>,
    /// Open handles per inode served through the page cache.
    cached_opens: Mutex<HashMap<u64, usize>>,
    /// One backing id per inode, shared by all its opens.
    backing: Mutex<HashMap<u64, std::sync::Weak<fuser::BackingId>>>,
}

impl Files {
    /// How many of the nodes `ids` are open with kernel passthrough (their
    /// data never reaches graph2aufs: no open of theirs can be switched).
    pub(super) fn passthrough_opens(&self, ids: impl Iterator<Item = u64>) -> usize {
        let backing = self.backing.lock().expect("never poisoned");
        ids.filter(|id| backing.get(id).is_some_and(|w| w.strong_count() > 0))
            .count()
    }

    /// The handles open through the page cache, opened again with `open`
    /// (node id, the handle's flags; `None`: not this node's), for
    /// [`Files::switch`].
    pub(super) fn reopen(&self, open: impl Fn(u64, i32) -> Option<io::Result<File>>) -> io::Result<Reopened> {
        let handles = self.handles.lock().expect("never poisoned");
        let mut new = Vec::new();
        for (fh, h) in handles.iter() {
            let Some(id) = h.served else { continue };
            let flags = h.flags & !(libc::O_TRUNC | libc::O_CREAT | libc::O_EXCL);
            if let Some(file) = open(id, flags) {
                new.push((*fh, Arc::new(file?)));
            }
        }
        Ok(new)
    }

    /// Handles serve the files [`Files::reopen`] opened from now on.
    pub(super) fn switch(&self, new: Reopened) {
        let mut handles = self.handles.lock().expect("never poisoned");
        for (fh, file) in new {
            if let Some(h) = handles.get_mut(&fh) {
                h.file = file;
            }
        }
    }
}

impl Opened {
    /// The open flags of a passthrough open.
    pub(super) fn fopen_flags(&self) -> FopenFlags {
        if self.direct {
            FopenFlags::FOPEN_DIRECT_IO
        } else {
            FopenFlags::empty()
        }
    }
}

/// Handles and the files they are to serve.
pub(super) type Reopened = Vec<(u64, Arc<File>)>;

/// Opens the file `backing` is, for a handle opened with `flags`.
pub(super) fn open_backing(backing: &Backing, flags: i32) -> io::Result<File> {
    match backing {
        Backing::Entry { dir, name, ino } => open_named(&*dir.fd()?, name, *ino, flags),
        Backing::Fd { fd } => open_entry(fd, OsStr::new(""), flags),
        _ => Err(io::Error::from_raw_os_error(libc::EISDIR)),
    }
}

struct DirEntry {
    name: OsString,
    kind: FileType,
    ino: u64,
}

pub struct View {
    dirs: Dirs,
    root_fd: Arc<OwnedFd>,
    /// ROOT as the root node's backing has it.
    root_dir: Arc<DirRef>,
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
    listings: Mutex<HashMap<u64, Arc<Vec<DirEntry>>>>,
    next_fh: AtomicU64,
    inits: Mutex<HashMap<usize, Arc<InitLayer>>>,
    data_dirs: Mutex<HashMap<usize, Arc<DirRef>>>,
    ttl: Duration,
    passthrough: bool,
    /// The kernel sends open(O_TRUNC) as an open with O_TRUNC
    /// (FUSE_ATOMIC_O_TRUNC), never as a size change without a handle:
    /// such a change is then truncate(2)'s (see `View::do_setattr`).
    pub(super) atomic_o_trunc: bool,
    /// Times of the directories graph2aufs synthesizes.
    synth_time: SystemTime,
}

fn errno(e: io::Error) -> Errno {
    Errno::from(e)
}

fn to_time(sec: i64, nsec: i64) -> SystemTime {
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec as u32)
    } else {
        UNIX_EPOCH - Duration::new(sec.unsigned_abs(), 0) + Duration::from_nanos(nsec as u64)
    }
}

fn kind_of(ft: rfs::FileType) -> FileType {
    match ft {
        rfs::FileType::Directory => FileType::Directory,
        rfs::FileType::Symlink => FileType::Symlink,
        rfs::FileType::Fifo => FileType::NamedPipe,
        rfs::FileType::Socket => FileType::Socket,
        rfs::FileType::CharacterDevice => FileType::CharDevice,
        rfs::FileType::BlockDevice => FileType::BlockDevice,
        _ => FileType::RegularFile,
    }
}

fn attr_of(st: &Stat, ino: u64) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        atime: to_time(st.st_atime, st.st_atime_nsec as i64),
        mtime: to_time(st.st_mtime, st.st_mtime_nsec as i64),
        ctime: to_time(st.st_ctime, st.st_ctime_nsec as i64),
        crtime: UNIX_EPOCH,
        kind: kind_of(rfs::FileType::from_raw_mode(st.st_mode)),
        perm: (st.st_mode & 0o7777) as u16,
        nlink: st.st_nlink as u32,
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev as u32,
        blksize: st.st_blksize as u32,
        flags: 0,
    }
}

fn synth_attr(ino: u64, kind: FileType, perm: u16, size: u64, time: SystemTime) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: time,
        mtime: time,
        ctime: time,
        crtime: UNIX_EPOCH,
        kind,
        perm,
        nlink: if kind == FileType::Directory { 2 } else { 1 },
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn init_attr(layer: &InitLayer, index: Option<usize>, ino: u64) -> FileAttr {
    // A directory's links: itself, its entry, and each subdirectory's "..".
    let links = |path: &[OsString]| {
        2 + layer
            .children(path)
            .filter(|&c| matches!(layer.entries[c].kind, InitKind::Dir))
            .count() as u32
    };
    let Some(i) = index else {
        let t = to_time(layer.time.tv_sec, layer.time.tv_nsec);
        let mut a = synth_attr(ino, FileType::Directory, 0o755, 4096, t);
        a.nlink = links(&[]);
        return a;
    };
    let e = &layer.entries[i];
    let (kind, size) = match &e.kind {
        InitKind::Dir => (FileType::Directory, 4096),
        InitKind::File => (FileType::RegularFile, 0),
        InitKind::Symlink(t) => (FileType::Symlink, t.len() as u64),
    };
    let mut a = synth_attr(ino, kind, e.mode as u16, size, to_time(e.mtime.tv_sec, e.mtime.tv_nsec));
    a.atime = to_time(e.atime.tv_sec, e.atime.tv_nsec);
    if kind == FileType::Directory {
        a.nlink = links(&e.path);
    }
    a.uid = e.uid;
    a.gid = e.gid;
    if kind != FileType::Directory {
        a.blocks = 0;
    }
    a
}

fn entry_stat(dir: &OwnedFd, name: &OsStr) -> io::Result<Stat> {
    sys::lstat(dir, name)?.ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
}

/// The type and identity of `name` in `dir` (with an empty name, of `dir`
/// itself): device, inode number and birth time, so that a reused inode
/// number is another inode.
pub(super) fn identity(dir: &OwnedFd, name: &OsStr) -> io::Result<(rfs::FileType, Key)> {
    let mut flags = AtFlags::SYMLINK_NOFOLLOW;
    if name.is_empty() {
        flags |= AtFlags::EMPTY_PATH;
    }
    let x = rfs::statx(
        dir,
        name,
        flags,
        rfs::StatxFlags::TYPE | rfs::StatxFlags::INO | rfs::StatxFlags::BTIME,
    )?;
    let dev = rustix::fs::makedev(x.stx_dev_major, x.stx_dev_minor);
    let born = if x.stx_mask & rfs::StatxFlags::BTIME.bits() != 0 {
        (x.stx_btime.tv_sec as u64) << 30 ^ x.stx_btime.tv_nsec as u64
    } else {
        0
    };
    Ok((
        rfs::FileType::from_raw_mode(x.stx_mode as u32),
        Key::Real(dev, x.stx_ino, born),
    ))
}

fn stat_fd(fd: impl AsFd) -> io::Result<Stat> {
    Ok(rfs::statat(fd, "", AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW)?)
}

pub(super) fn open_path(dir: impl AsFd, name: &OsStr) -> io::Result<OwnedFd> {
    Ok(rfs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
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
            next_fh: AtomicU64::new(1),
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

    pub(super) fn attr(&self, node: &Node) -> io::Result<FileAttr> {
        Ok(match &*node.backing() {
            Backing::Real { dir, .. } => attr_of(&stat_fd(&*dir.fd()?)?, node.id),
            Backing::Entry { dir, name, ino } => {
                let st = entry_stat(&*dir.fd()?, name)?;
                if st.st_ino != *ino {
                    return Err(io::Error::from_raw_os_error(libc::ESTALE));
                }
                attr_of(&st, node.id)
            }
            Backing::Fd { fd } => attr_of(&stat_fd(fd)?, node.id),
            Backing::Dir { role } => synth_attr(node.id, FileType::Directory, role.synth_mode(), 4096, self.synth_time),
            Backing::Empty => synth_attr(node.id, FileType::Directory, 0o755, 4096, self.synth_time),
            Backing::File(bytes) => synth_attr(
                node.id,
                FileType::RegularFile,
                0o644,
                bytes.len() as u64,
                self.synth_time,
            ),
            Backing::Init { layer, index } => init_attr(layer, *index, node.id),
            Backing::Merged { top, .. } => match &**top {
                Top::Real(st) | Top::Leaf(Leaf::Real { stat: st, .. }) => attr_of(st, node.id),
                Top::Leaf(Leaf::Init { layer, index }) => init_attr(layer, Some(*index), node.id),
                Top::InitRoot(layer) => init_attr(layer, None, node.id),
            },
        })
    }

    pub(super) fn real_node(&self, dir: &Arc<DirRef>, name: &OsStr, role: Role) -> io::Result<Arc<Node>> {
        self.real_node_in(dir, name, role, None)
    }

    /// [`View::real_node`] of an entry inside item `layer`'s data.
    pub(super) fn real_node_in(
        &self,
        dir: &Arc<DirRef>,
        name: &OsStr,
        role: Role,
        layer: Option<usize>,
    ) -> io::Result<Arc<Node>> {
        let layer = layer.filter(|_| self.writable);
        let dir_fd = dir.fd()?;
        let (ft, key) = identity(dir_fd.as_ref(), name)?;
        if ft != rfs::FileType::Directory {
            let (dir, name) = (dir.clone(), name.to_os_string());
            let Key::Real(_, ino, _) = key else {
                unreachable!("identity gives real keys")
            };
            return Ok(self.table.lookup_tagged(key, None, layer, || Backing::Entry {
                dir,
                name: name.into(),
                ino,
            }));
        }
        if let Some(n) = self.table.existing(&key) {
            return Ok(n);
        }
        let fd = open_path(dir_fd.as_ref(), name)?;
        let (_, key) = identity(&fd, OsStr::new(""))?;
        Ok(self.table.lookup_tagged(key, None, layer, || Backing::Real {
            dir: DirRef::new(fd),
            role,
        }))
    }

    /// Whether graph2aufs itself makes files in directory `node` behind the
    /// kernel: ROOT and `.graph2aufs`.
    fn own_files_in(&self, node: &Node) -> bool {
        match &*node.backing() {
            Backing::Real { role, .. } | Backing::Dir { role } => matches!(role, Role::Root | Role::Own),
            _ => false,
        }
    }

    /// The `--aufs-dir`, if `name` in `parent` is the symlink `ROOT/aufs`
    /// to it (the view shows the directory: Docker must find the view's
    /// `aufs/`, not the disk's, while items migrate).
    fn linked_aufs(&self, parent: Role, name: &OsStr, dir: &Arc<DirRef>) -> io::Result<Option<&Arc<DirRef>>> {
        let Some(a) = &self.aufs_dir else { return Ok(None) };
        if parent != Role::Root || name != "aufs" {
            return Ok(None);
        }
        let st = sys::lstat(&*dir.fd()?, name)?;
        Ok(st
            .filter(|st| rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Symlink)
            .map(|_| a))
    }

    /// The node of a real directory held by `dir`.
    fn real_dir_node(&self, dir: &Arc<DirRef>, role: Role) -> io::Result<Arc<Node>> {
        let (_, key) = identity(&*dir.fd()?, OsStr::new(""))?;
        let dir = dir.clone();
        Ok(self
            .table
            .lookup_tagged(key, None, None, || Backing::Real { dir, role }))
    }

    fn aufs_dir(&self, d: AufsDir) -> io::Result<&OwnedFd> {
        let dir = match d {
            AufsDir::Diff => &self.dirs.diff,
            AufsDir::Layers => &self.dirs.layers,
            AufsDir::Mnt => &self.dirs.mnt,
        };
        dir.as_ref().ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
    }

    fn data_place(&self, i: usize) -> io::Result<(OwnedFd, OsString)> {
        crate::place::data_place(&self.dirs, &self.transform.plan.items[i])
    }

    /// The directory of item `i`'s data. The read-only view opens it once:
    /// every merged root of a chain shares its layers' descriptors.
    fn data_dir(&self, i: usize) -> io::Result<Arc<DirRef>> {
        if self.writable {
            return crate::place::data_dir(&self.dirs, &self.transform.plan.items[i]);
        }
        let mut dirs = self.data_dirs.lock().expect("never poisoned");
        if let Some(d) = dirs.get(&i) {
            return Ok(d.clone());
        }
        let d = crate::place::data_dir(&self.dirs, &self.transform.plan.items[i])?;
        dirs.insert(i, d.clone());
        Ok(d)
    }

    fn init_layer(&self, i: usize) -> io::Result<Arc<InitLayer>> {
        if let Some(l) = self.inits.lock().expect("never poisoned").get(&i) {
            return Ok(l.clone());
        }
        let layer = Arc::new(crate::place::init_layer(&self.dirs, &self.transform.plan, i)?);
        self.inits.lock().expect("never poisoned").insert(i, layer.clone());
        Ok(layer)
    }

    /// The branches of item `i`'s merged root filesystem, top first.
    fn merged(&self, i: usize, init_only: bool) -> io::Result<(UnionDir<InitLayer>, Top)> {
        let plan = &self.transform.plan;
        let it = &plan.items[i];
        let mut branches = Vec::new();
        let mut top = None;
        if it.kind == ItemKind::Container {
            let layer = self.init_layer(i)?;
            if !init_only && it.source != Source::Empty {
                let d = self.data_dir(i)?;
                top = Some(Top::Real(stat_fd(&*d.fd()?)?));
                branches.push(Src::Real(d));
            }
            top.get_or_insert(Top::InitRoot(layer.clone()));
            branches.push(Src::Init(layer, Vec::new()));
        } else {
            let d = self.data_dir(i)?;
            top = Some(Top::Real(stat_fd(&*d.fd()?)?));
            branches.push(Src::Real(d));
        }
        for id in plan.chain(i) {
            let j = plan
                .find(&id)
                .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
            branches.push(Src::Real(self.data_dir(j)?));
        }
        Ok((UnionDir::root(branches), top.expect("set above")))
    }

    fn shown_node(&self, parent: &Node, name: &OsStr, shown: Shown) -> io::Result<Arc<Node>> {
        let key = || Key::Child(parent.id, name.to_os_string());
        // In a read-write view, what a pending item's transform makes is
        // rebound to the disk once the item migrates.
        let origin = |i: usize| Some(i).filter(|_| self.writable);
        // A synthesized node the kernel already knows: no need to build its
        // backing again (a merged directory opens every branch).
        if matches!(shown, Shown::Layers(..) | Shown::Init(_) | Shown::Merged(..)) {
            if let Some(n) = self.table.existing(&key()) {
                return Ok(n);
            }
        }
        Ok(match shown {
            Shown::Hidden => return Err(io::Error::from_raw_os_error(libc::ENOENT)),
            Shown::Data(i) => {
                // (Not while a copy of it to another file system switches.)
                let _switch = self.live.as_ref().map(|m| m.switching());
                let (dir, leaf) = self.data_place(i)?;
                self.real_node_in(&DirRef::new(dir), &leaf, Role::Plain, Some(i))?
            }
            Shown::Repositories => self.real_node(&self.root_dir, OsStr::new("repositories"), Role::Plain)?,
            Shown::Registration(d) => {
                self.real_node(&DirRef::new(self.aufs_dir(d)?.try_clone()?), name, Role::Plain)?
            }
            Shown::Dir(role) => self.table.lookup(key(), || Backing::Dir { role }),
            Shown::Empty(i) => self.table.lookup_from(key(), origin(i), || Backing::Empty),
            Shown::Layers(i, init) => {
                let plan = &self.transform.plan;
                let bytes = if init {
                    plan.init_layers_bytes(i)
                } else {
                    plan.layers_bytes(i)
                };
                self.table.lookup_from(key(), origin(i), || Backing::File(bytes.into()))
            }
            Shown::Init(i) => {
                let layer = self.init_layer(i)?;
                self.table
                    .lookup_from(key(), origin(i), || Backing::Init { layer, index: None })
            }
            Shown::Merged(i, init) => {
                let (dir, top) = self.merged(i, init)?;
                self.table.lookup(key(), || Backing::Merged {
                    dir,
                    top: Box::new(top),
                })
            }
        })
    }

    /// Resolves `name` in `parent`, counting a lookup of the result.
    fn child(&self, parent: &Node, name: &OsStr) -> io::Result<Arc<Node>> {
        let enoent = || io::Error::from_raw_os_error(libc::ENOENT);
        // A merged directory the kernel already knows below this one: not
        // merged again (that opens a directory in every branch).
        if let Backing::Merged { .. } = *parent.backing() {
            if let Some(n) = self.table.existing(&Key::Child(parent.id, name.to_os_string())) {
                return Ok(n);
            }
        }
        // A node a pending item's transform made, now maybe rebound to the
        // disk: the same node id for as long as the kernel keeps it (an
        // `aufs/mnt/<id>` may be a mount point).
        if self.writable && parent.origin().is_none() {
            if let Some(n) = self.table.existing(&Key::Child(parent.id, name.to_os_string())) {
                return Ok(n);
            }
        }
        match &*parent.backing() {
            Backing::Real { dir, role } => {
                let role = *role;
                if let Some(a) = self.linked_aufs(role, name, dir)? {
                    return self.real_dir_node(a, Role::Aufs);
                }
                match self.transform.shown(role, name) {
                    Some(s) if s.only_if_absent() => match sys::lstat(&*dir.fd()?, name)? {
                        Some(_) => self.real_node_in(dir, name, self.transform.child_role(role, name), parent.layer()),
                        None => self.shown_node(parent, name, s),
                    },
                    Some(s) => self.shown_node(parent, name, s),
                    None => self.real_node_in(dir, name, self.transform.child_role(role, name), parent.layer()),
                }
            }
            Backing::Dir { role } => match self.transform.shown(*role, name) {
                Some(s) => self.shown_node(parent, name, s),
                None => Err(enoent()),
            },
            Backing::Empty | Backing::File(_) => Err(enoent()),
            Backing::Entry { .. } | Backing::Fd { .. } => Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
            Backing::Init { layer, index } => {
                let mut path = index.map(|i| layer.entries[i].path.clone()).unwrap_or_default();
                path.push(name.to_os_string());
                let i = layer.find(&path).ok_or_else(enoent)?;
                let layer = layer.clone();
                Ok(self
                    .table
                    .lookup_from(Key::Child(parent.id, name.to_os_string()), parent.origin(), || {
                        Backing::Init { layer, index: Some(i) }
                    }))
            }
            Backing::Merged { dir, .. } => match dir.lookup(name)?.ok_or_else(enoent)? {
                Entry::Dir(dir, leaf) => {
                    Ok(self
                        .table
                        .lookup(Key::Child(parent.id, name.to_os_string()), || Backing::Merged {
                            dir,
                            top: Box::new(Top::Leaf(leaf)),
                        }))
                }
                Entry::Leaf(Leaf::Real { parent: p, .. }) => self.real_node(&p, name, Role::Plain),
                Entry::Leaf(Leaf::Init { layer, index }) => {
                    Ok(self
                        .table
                        .lookup(Key::Child(parent.id, name.to_os_string()), || Backing::Init {
                            layer,
                            index: Some(index),
                        }))
                }
            },
        }
    }

    fn list(&self, node: &Node) -> io::Result<Vec<DirEntry>> {
        let mut out = vec![
            DirEntry {
                name: ".".into(),
                kind: FileType::Directory,
                ino: node.id,
            },
            DirEntry {
                name: "..".into(),
                kind: FileType::Directory,
                ino: ROOT_ID,
            },
        ];
        let synth_ino = u64::MAX;
        let shown_kind = |s: &Shown| -> FileType {
            match s {
                Shown::Layers(..) | Shown::Repositories => FileType::RegularFile,
                // What Docker 1.8 left: a symlink, a file or a directory.
                Shown::Registration(_) => FileType::RegularFile,
                _ => FileType::Directory,
            }
        };
        match &*node.backing() {
            Backing::Real { dir, role } => {
                let fd = dir.fd()?;
                let mut names = std::collections::HashSet::new();
                let listing = if self.writable {
                    sys::list_dir_inos_reading(fd.as_ref())?
                } else {
                    sys::list_dir_inos(fd.as_ref())?
                };
                for (name, ft, ino) in listing {
                    if ft == rfs::FileType::Symlink && self.linked_aufs(*role, &name, dir)?.is_some() {
                        names.insert(name.clone());
                        out.push(DirEntry {
                            name,
                            kind: FileType::Directory,
                            ino: synth_ino,
                        });
                        continue;
                    }
                    // A replaced entry's inode is known only once looked up.
                    let (kind, ino) = match self.transform.shown(*role, &name) {
                        Some(Shown::Hidden) => continue,
                        Some(s) if !s.only_if_absent() => (shown_kind(&s), synth_ino),
                        _ if ft == rfs::FileType::Unknown => match sys::lstat(&*fd, &name)? {
                            Some(st) => (kind_of(rfs::FileType::from_raw_mode(st.st_mode)), ino),
                            None => continue,
                        },
                        _ => (kind_of(ft), ino),
                    };
                    names.insert(name.clone());
                    out.push(DirEntry { name, kind, ino });
                }
                for (name, s) in self.transform.added(*role) {
                    if !names.contains(&name) {
                        out.push(DirEntry {
                            kind: shown_kind(&s),
                            name,
                            ino: synth_ino,
                        });
                    }
                }
            }
            Backing::Dir { role } => {
                for (name, s) in self.transform.added(*role) {
                    let kind = match &s {
                        Shown::Registration(d) => match sys::lstat(self.aufs_dir(*d)?, &name)? {
                            Some(st) => kind_of(rfs::FileType::from_raw_mode(st.st_mode)),
                            None => continue,
                        },
                        s => shown_kind(s),
                    };
                    out.push(DirEntry {
                        kind,
                        name,
                        ino: synth_ino,
                    });
                }
            }
            Backing::Empty | Backing::File(_) | Backing::Entry { .. } | Backing::Fd { .. } => {}
            Backing::Init { layer, index } => {
                let path = index.map(|i| layer.entries[i].path.clone()).unwrap_or_default();
                for i in layer.children(&path) {
                    let e = &layer.entries[i];
                    out.push(DirEntry {
                        name: e.path.last().cloned().unwrap_or_default(),
                        kind: kind_of(e.file_type()),
                        ino: synth_ino,
                    });
                }
            }
            Backing::Merged { dir, .. } => {
                for (name, ft) in dir.list()? {
                    out.push(DirEntry {
                        name,
                        kind: kind_of(ft),
                        ino: synth_ino,
                    });
                }
            }
        }
        Ok(out)
    }

    /// A lookup the kernel will hold: the child's attributes, with its
    /// lookup count taken (and given back if its attributes cannot be had).
    fn looked_up(&self, parent: &Node, name: &OsStr) -> io::Result<FileAttr> {
        let node = self.child(parent, name)?;
        self.attr(&node).inspect_err(|_| self.table.forget(node.id, 1))
    }

    /// The entries of an open directory, listed once per open.
    /// A directory's entries for a read from `offset`: listed afresh at
    /// offset 0, kept while the kernel reads the following chunks.
    fn dir_entries(&self, ino: INodeNo, offset: u64) -> Result<Arc<Vec<DirEntry>>, Errno> {
        if offset > 0 {
            if let Some(e) = self.listings.lock().expect("never poisoned").get(&ino.0) {
                return Ok(e.clone());
            }
        }
        let entries = Arc::new(self.list(&*self.node(ino)?).map_err(errno)?);
        self.listings
            .lock()
            .expect("never poisoned")
            .insert(ino.0, entries.clone());
        Ok(entries)
    }

    /// The kernel has read a listing to its end.
    fn listing_done(&self, ino: INodeNo) {
        self.listings.lock().expect("never poisoned").remove(&ino.0);
    }

    /// The backing file of an open handle.
    pub(super) fn handle_file(&self, fh: u64) -> Option<Arc<File>> {
        let handles = self.files.handles.lock().expect("never poisoned");
        handles.get(&fh).map(|h| h.file.clone())
    }

    /// The backing file of an open handle, and whom `req` changes it for:
    /// its caller, or for a request of no process (the kernel writing back
    /// pages of a file served through the page cache) whoever opened it.
    fn handle_for(&self, fh: u64, req: &Request) -> Option<(Arc<File>, Option<Caller>)> {
        let handles = self.files.handles.lock().expect("never poisoned");
        let h = handles.get(&fh)?;
        let caller = match req.pid() {
            0 if req.uid() == 0 => h.opener.as_deref().cloned(),
            _ => Caller::of(req),
        };
        Some((h.file.clone(), caller))
    }

    fn add_handle(&self, h: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::SeqCst);
        self.files.handles.lock().expect("never poisoned").insert(fh, h);
        fh
    }

    /// Page cache flags of a file served by graph2aufs (no passthrough):
    /// the read-only view never changes, so its pages stay valid.
    fn cache_flags(&self) -> FopenFlags {
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

    /// A handle for an open file (by `caller`, `None` for root), with its
    /// inode's backing id.
    ///
    /// The kernel serves all opens of an inode one way at a time: through
    /// the page cache while any such open lasts, else passthrough while a
    /// passthrough open lasts, all with one backing file, whatever this open
    /// would rather have. A backing file reads and writes with the
    /// credentials of the server, which registered it (the kernel requires
    /// CAP_SYS_ADMIN for that): a write open by another than root never
    /// gets one of its own, and where its inode's backing file is in use,
    /// it shares it with direct I/O (FOPEN_DIRECT_IO comes before
    /// passthrough in the kernel), so that its writes reach graph2aufs,
    /// which makes them as the caller (see [`super::creds`]).
    pub(super) fn add_file(
        &self,
        ino: u64,
        file: File,
        flags: i32,
        passthrough: bool,
        caller: Option<Caller>,
        open_backing: impl FnOnce(&File) -> io::Result<fuser::BackingId>,
    ) -> io::Result<Opened> {
        let mut cached = self.files.cached_opens.lock().expect("never poisoned");
        let cache_mode = cached.get(&ino).is_some_and(|&n| n > 0);
        let as_server = flags & libc::O_ACCMODE == libc::O_RDONLY || caller.as_ref().is_none_or(|c| c.uid == 0);
        let backing = if self.passthrough && !cache_mode {
            self.backing_id(ino, (passthrough && as_server).then_some(open_backing), &file)
        } else {
            None
        };
        let direct = backing.is_some() && !as_server;
        if backing.is_none() {
            *cached.entry(ino).or_default() += 1;
        }
        let fh = self.add_handle(Handle {
            file: Arc::new(file),
            _backing: backing.clone(),
            served: (backing.is_none() || direct).then_some(ino),
            cached: backing.is_none(),
            flags,
            opener: caller.map(Arc::new),
        });
        Ok(Opened { fh, backing, direct })
    }

    /// The backing id of inode `ino`: the one its passthrough opens use, or
    /// a new one from `open_backing` (if given) where none is in use.
    fn backing_id(
        &self,
        ino: u64,
        open_backing: Option<impl FnOnce(&File) -> io::Result<fuser::BackingId>>,
        file: &File,
    ) -> Option<Arc<fuser::BackingId>> {
        let mut map = self.files.backing.lock().expect("never poisoned");
        if let Some(id) = map.get(&ino).and_then(|w| w.upgrade()) {
            return Some(id);
        }
        match open_backing?(file) {
            Ok(id) => {
                let id = Arc::new(id);
                map.insert(ino, Arc::downgrade(&id));
                Some(id)
            }
            Err(e) => {
                log::debug!("no passthrough for inode {ino}: {e}");
                None
            }
        }
    }
}

/// The path (through /proc/self/fd, never under ROOT) of the real inode
/// whose extended attributes a node shows: its own, or for a merged
/// directory its topmost branch's directory (as aufs shows them); and
/// whether the path's last component must be followed (a magic link to a
/// directory) or not (a name in a directory, maybe a symlink).
/// The descriptor the path goes through comes along: the path is valid
/// while it lives.
pub(super) fn xattr_path(node: &Node) -> io::Result<Option<XattrPath>> {
    let whole = |fd: Arc<OwnedFd>| XattrPath {
        path: sys::proc::fd_path(fd.as_ref()),
        _fd: fd,
        follow: true,
    };
    Ok(match &*node.backing() {
        Backing::Real { dir, .. } => Some(whole(dir.fd()?)),
        Backing::Fd { fd } => Some(whole(fd.clone())),
        Backing::Entry { dir, name, .. } => {
            let fd = dir.fd()?;
            Some(XattrPath {
                path: sys::proc::entry_path(fd.as_ref(), name),
                _fd: fd,
                follow: false,
            })
        }
        Backing::Merged { dir, .. } => match dir.parts.first().map(|p| &p.src) {
            Some(Src::Real(d)) => Some(whole(d.fd()?)),
            _ => None,
        },
        _ => None,
    })
}

/// See [`xattr_path`].
pub(super) struct XattrPath {
    pub path: std::path::PathBuf,
    /// Whether the last component is to be followed (a magic link to the
    /// inode) or not (a name in a directory, maybe a symlink).
    pub follow: bool,
    _fd: Arc<OwnedFd>,
}

/// [`open_entry`] of a node's name, which must still lead to the node's
/// inode: a name replaced behind the view (a file renamed over it on the
/// disk) gives ESTALE, and the kernel looks the name up again, instead of
/// the new file's bytes read under the old file's cached size and pages.
fn open_named(dir: &OwnedFd, name: &OsStr, ino: u64, flags: i32) -> io::Result<File> {
    let f = open_entry(dir, name, flags)?;
    if rfs::fstat(&f)?.st_ino != ino {
        return Err(io::Error::from_raw_os_error(libc::ESTALE));
    }
    Ok(f)
}

/// Opens a real file (`name` in `dir`, or with an empty name the
/// descriptor's own file) with the access mode and I/O flags of `flags`,
/// for reading without updating its atime. Never truncates: O_TRUNC is
/// [`truncate_on_open`]'s, once the file is known to be the node's.
fn open_entry(dir: &OwnedFd, name: &OsStr, flags: i32) -> io::Result<File> {
    let keep = libc::O_ACCMODE | libc::O_APPEND | libc::O_DIRECT | libc::O_NONBLOCK | libc::O_SYNC | libc::O_DSYNC;
    let flags = OFlags::from_bits_retain((flags & keep) as u32) | OFlags::CLOEXEC;
    if name.is_empty() {
        // The descriptor's own file, through its magic link.
        let fd = rfs::open(sys::proc::fd_path(dir), flags, Mode::empty())?;
        return Ok(File::from(fd));
    }
    Ok(File::from(sys::open_noatime(dir, name, flags | OFlags::NOFOLLOW)?))
}

/// The truncation of an open(O_TRUNC) of `file`, whatever its access mode
/// (Linux truncates on O_RDONLY|O_TRUNC too), made as open(2) makes it
/// and as `caller` (`None`: root): `file` opened again through its magic
/// link with O_TRUNC. The backing file system then moves its times, and
/// clears setuid and setgid bits for a caller without CAP_FSETID, as
/// natively (the kernel leaves an open's truncation to the server with
/// FUSE_ATOMIC_O_TRUNC, its setuid clearing included).
fn truncate_on_open(file: &File, caller: Option<&Caller>) -> io::Result<()> {
    let _as = AsCaller::enter(caller)?;
    rfs::open(
        sys::proc::fd_path(file),
        OFlags::WRONLY | OFlags::TRUNC | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(())
}

const WRITE_FLAGS: i32 = libc::O_WRONLY | libc::O_RDWR | libc::O_TRUNC | libc::O_CREAT | libc::O_APPEND;

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
        if let Some(file) = self.handle_file(fh.0) {
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
        let gone = self.files.handles.lock().expect("never poisoned").remove(&fh.0);
        if let Some(Handle {
            cached: true,
            served: Some(ino),
            ..
        }) = gone
        {
            let mut cached = self.files.cached_opens.lock().expect("never poisoned");
            if let Some(n) = cached.get_mut(&ino) {
                *n -= 1;
                if *n == 0 {
                    cached.remove(&ino);
                }
            }
        }
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
        let st = rfs::openat(
            &self.root_fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .and_then(rfs::fstatvfs);
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
        let _umask = super::write::CallerUmask::set(umask);
        self.entry_reply(self.do_mknod(req, parent, name, mode, rdev), reply)
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let _hold = self.hold(&[parent.0]);
        let _umask = super::write::CallerUmask::set(umask);
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
        let _umask = super::write::CallerUmask::set(umask);
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
        let Some((file, caller)) = self.handle_for(fh.0, req) else {
            return reply.error(Errno::EBADF);
        };
        // As the writer: the backing file system allocates for them.
        let written = AsCaller::enter(caller.as_ref()).and_then(|_as| file.write_all_at(data, offset));
        match written {
            Ok(()) => {
                if let Some(c) = caller.filter(|c| c.uid != 0) {
                    super::write::kill_privileges(&file, &c);
                }
                reply.written(data.len() as u32)
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        let r = match self.handle_file(fh.0) {
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
        let Some((file, caller)) = self.handle_for(fh.0, req) else {
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
        let Some(file) = self.handle_file(fh.0) else {
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
    let Ok(fd) = rfs::openat(
        root,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    match rfs::fstatvfs(fd) {
        Ok(s) => s
            .f_flag
            .intersects(rfs::StatVfsMountFlags::RDONLY | rfs::StatVfsMountFlags::NOATIME),
        Err(_) => false,
    }
}
