//! Benchmark helpers of `scripts/bench` (not installed; not part of the
//! product):
//!
//! - `g2a-bench nullfs MOUNTPOINT [--threads N] [--clone-fd] [--transport T]`: a minimal
//!   fuser server that keeps its whole tree in memory and answers every
//!   request at once. The change path's per-operation latency through it is
//!   the bare FUSE round trip on this machine (kernel transport plus fuser's
//!   dispatch), the baseline of graph2aufs's own cost per request. It asks
//!   the kernel for the same INIT capabilities as graph2aufs's read-write
//!   view and answers `getxattr` with ENODATA (not ENOSYS), so the kernel
//!   sends it the same requests (`security.capability` before a chown).
//!   `--transport classic|uring|auto` as graph2aufs's `mount` (default
//!   classic, the bare fuser baseline). Runs until unmounted.
//! - `g2a-bench ops DIR [--count N] [--ops LIST]`: per-operation latency of
//!   the change path in a new directory under DIR: each system call timed
//!   alone, N entries per operation. Prints one JSON document.

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, Session, SessionACL, TimeOrNow,
    WriteFlags,
};
use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

fn usage() -> ! {
    eprintln!(
        "usage: g2a-bench nullfs MOUNTPOINT [--threads N] [--clone-fd] [--transport classic|uring|auto]\n       \
         g2a-bench ops DIR [--count N] [--ops create,lookup,open,write,chmod,chown,utimes,rename,unlink,mkdir,rmdir]\n       (open also times an fsync of each opened file; write a 4 KiB pwrite + fsync)"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = args.split_first().unwrap_or_else(|| usage());
    let mut pos = Vec::new();
    let mut opts: HashMap<String, String> = HashMap::new();
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--clone-fd" => {
                opts.insert("clone-fd".into(), "1".into());
            }
            "--threads" | "--count" | "--ops" | "--transport" => {
                let v = it.next().unwrap_or_else(|| usage());
                opts.insert(a[2..].to_string(), v.clone());
            }
            s if s.starts_with("--") => usage(),
            _ => pos.push(a.clone()),
        }
    }
    let [path] = pos.as_slice() else { usage() };
    let r = match cmd.as_str() {
        "nullfs" => nullfs(
            path,
            opts.get("threads").map(|t| t.parse().unwrap_or_else(|_| usage())),
            opts.contains_key("clone-fd"),
            match opts.get("transport").map(String::as_str) {
                None | Some("classic") => fuser::Transport::Classic,
                Some("uring") => fuser::Transport::Uring,
                Some("auto") => fuser::Transport::Auto,
                Some(_) => usage(),
            },
        ),
        "ops" => ops(
            path,
            opts.get("count")
                .map_or(10_000, |c| c.parse().unwrap_or_else(|_| usage())),
            opts.get("ops").map_or(DEFAULT_OPS, |s| s.as_str()),
        ),
        _ => usage(),
    };
    if let Err(e) = r {
        eprintln!("g2a-bench {cmd}: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------- nullfs

struct Inode {
    attr: FileAttr,
    /// Directories: name -> inode.
    children: HashMap<OsString, u64>,
    /// Symlinks: the target.
    target: Vec<u8>,
}

struct Tree {
    inodes: HashMap<u64, Inode>,
    next: u64,
}

/// The in-memory file system: one lock, no I/O, no allocation beyond the
/// entries themselves.
struct NullFs {
    tree: Mutex<Tree>,
    ttl: Duration,
}

fn new_attr(ino: u64, kind: FileType, perm: u16, uid: u32, gid: u32) -> FileAttr {
    let now = SystemTime::now();
    FileAttr {
        ino: INodeNo(ino),
        size: 0,
        blocks: 0,
        atime: now,
        mtime: now,
        ctime: now,
        crtime: now,
        kind,
        perm,
        nlink: if kind == FileType::Directory { 2 } else { 1 },
        uid,
        gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

impl NullFs {
    fn new() -> NullFs {
        let root = new_attr(1, FileType::Directory, 0o755, 0, 0);
        let mut inodes = HashMap::new();
        inodes.insert(
            1,
            Inode {
                attr: root,
                children: HashMap::new(),
                target: Vec::new(),
            },
        );
        NullFs {
            tree: Mutex::new(Tree { inodes, next: 2 }),
            ttl: Duration::from_secs(3600),
        }
    }

    fn make(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        kind: FileType,
        mode: u32,
        target: &[u8],
    ) -> Result<FileAttr, Errno> {
        let mut t = self.tree.lock().expect("never poisoned");
        let ino = t.next;
        let p = t.inodes.get_mut(&parent.0).ok_or(Errno::ENOENT)?;
        if p.attr.kind != FileType::Directory {
            return Err(Errno::ENOTDIR);
        }
        if p.children.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        p.children.insert(name.to_os_string(), ino);
        t.next += 1;
        let mut attr = new_attr(ino, kind, (mode & 0o7777) as u16, req.uid(), req.gid());
        attr.size = target.len() as u64;
        t.inodes.insert(
            ino,
            Inode {
                attr,
                children: HashMap::new(),
                target: target.to_vec(),
            },
        );
        Ok(attr)
    }

    fn remove(&self, parent: INodeNo, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let mut t = self.tree.lock().expect("never poisoned");
        let ino = *t
            .inodes
            .get(&parent.0)
            .and_then(|p| p.children.get(name))
            .ok_or(Errno::ENOENT)?;
        let child = &t.inodes[&ino];
        match (dir, child.attr.kind == FileType::Directory) {
            (true, false) => return Err(Errno::ENOTDIR),
            (false, true) => return Err(Errno::EISDIR),
            (true, true) if !child.children.is_empty() => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        t.inodes
            .get_mut(&parent.0)
            .expect("looked up above")
            .children
            .remove(name);
        // The inode itself stays until forgotten: nothing to reclaim in a
        // benchmark's lifetime.
        Ok(())
    }
}

impl Filesystem for NullFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // graph2aufs's read-write view's set, but passthrough (no backing
        // files) and readdirplus (listings are not on the change path).
        for flag in [
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_CACHE_SYMLINKS,
            InitFlags::FUSE_NO_OPENDIR_SUPPORT,
            InitFlags::FUSE_POSIX_ACL,
            InitFlags::FUSE_BIG_WRITES,
            InitFlags::FUSE_DONT_MASK,
        ] {
            let _ = config.add_capabilities(flag);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let t = self.tree.lock().expect("never poisoned");
        match t.inodes.get(&parent.0).and_then(|p| p.children.get(name)) {
            Some(ino) => reply.entry(&self.ttl, &t.inodes[ino].attr, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.tree.lock().expect("never poisoned").inodes.get(&ino.0) {
            Some(i) => reply.attr(&self.ttl, &i.attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut t = self.tree.lock().expect("never poisoned");
        let Some(i) = t.inodes.get_mut(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let a = &mut i.attr;
        let time = |t: TimeOrNow| match t {
            TimeOrNow::Now => SystemTime::now(),
            TimeOrNow::SpecificTime(t) => t,
        };
        if let Some(m) = mode {
            a.perm = (m & 0o7777) as u16;
        }
        if let Some(u) = uid {
            a.uid = u;
        }
        if let Some(g) = gid {
            a.gid = g;
        }
        if let Some(s) = size {
            a.size = s;
        }
        if let Some(t) = atime {
            a.atime = time(t);
        }
        if let Some(t) = mtime {
            a.mtime = time(t);
        }
        a.ctime = SystemTime::now();
        reply.attr(&self.ttl, a);
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let kind = match mode & libc::S_IFMT {
            libc::S_IFCHR => FileType::CharDevice,
            libc::S_IFBLK => FileType::BlockDevice,
            libc::S_IFIFO => FileType::NamedPipe,
            libc::S_IFSOCK => FileType::Socket,
            _ => FileType::RegularFile,
        };
        match self.make(req, parent, name, kind, mode, b"") {
            Ok(a) => reply.entry(&self.ttl, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, _umask: u32, reply: ReplyEntry) {
        match self.make(req, parent, name, FileType::Directory, mode, b"") {
            Ok(a) => reply.entry(&self.ttl, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &std::path::Path, reply: ReplyEntry) {
        use std::os::unix::ffi::OsStrExt;
        match self.make(
            req,
            parent,
            link_name,
            FileType::Symlink,
            0o777,
            target.as_os_str().as_bytes(),
        ) {
            Ok(a) => reply.entry(&self.ttl, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.tree.lock().expect("never poisoned").inodes.get(&ino.0) {
            Some(i) => reply.data(&i.target),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let mut t = self.tree.lock().expect("never poisoned");
        let Some(p) = t.inodes.get_mut(&newparent.0) else {
            return reply.error(Errno::ENOENT);
        };
        if p.children.contains_key(newname) {
            return reply.error(Errno::EEXIST);
        }
        p.children.insert(newname.to_os_string(), ino.0);
        match t.inodes.get_mut(&ino.0) {
            Some(i) => {
                i.attr.nlink += 1;
                reply.entry(&self.ttl, &i.attr, Generation(0))
            }
            None => reply.error(Errno::ENOENT),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.remove(parent, name, false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.remove(parent, name, true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut t = self.tree.lock().expect("never poisoned");
        let Some(ino) = t.inodes.get_mut(&parent.0).and_then(|p| p.children.remove(name)) else {
            return reply.error(Errno::ENOENT);
        };
        match t.inodes.get_mut(&newparent.0) {
            Some(p) => {
                p.children.insert(newname.to_os_string(), ino);
                reply.ok()
            }
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), FopenFlags::empty());
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        reply.data(&[]);
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        if let Some(i) = self.tree.lock().expect("never poisoned").inodes.get_mut(&ino.0) {
            i.attr.size = i.attr.size.max(offset + data.len() as u64);
        }
        reply.written(data.len() as u32);
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // As graph2aufs: the kernel stops sending FLUSH.
        reply.error(Errno::ENOSYS);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply.ok();
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.error(Errno::ENOSYS);
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let t = self.tree.lock().expect("never poisoned");
        let Some(d) = t.inodes.get(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let mut names: Vec<(&OsString, &u64)> = d.children.iter().collect();
        names.sort();
        for (i, (name, child)) in names.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*child), (i + 1) as u64, t.inodes[child].attr.kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 20, 4096, 255, 4096);
    }

    fn getxattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::ENODATA);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        reply.size(0);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        match self.make(req, parent, name, FileType::RegularFile, mode, b"") {
            Ok(a) => reply.created(&self.ttl, &a, Generation(0), FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }
}

fn nullfs(mp: &str, threads: Option<usize>, clone_fd: bool, transport: fuser::Transport) -> io::Result<()> {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("g2a-nullfs".into()),
        MountOption::Subtype("g2a-nullfs".into()),
        MountOption::DefaultPermissions,
        MountOption::Dev,
        MountOption::Suid,
    ];
    config.acl = SessionACL::All;
    // graph2aufs's default: two threads per CPU.
    config.n_threads = Some(threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get() * 2)));
    config.clone_fd = clone_fd;
    config.transport = transport;
    let session = Session::new(NullFs::new(), mp, &config)?;
    eprintln!("g2a-bench nullfs: transport {:?}", session.transport());
    session.run()
}

// ---------------------------------------------------------------- ops

const DEFAULT_OPS: &str = "create,lookup,open,write,chmod,chown,utimes,rename,unlink,mkdir,rmdir";

fn cstr(s: &str) -> CString {
    CString::new(s).expect("no NUL in generated names")
}

fn check(r: libc::c_int, what: &str, name: &CString) -> io::Result<libc::c_int> {
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("{what} {}: {e}", name.to_string_lossy()),
        ));
    }
    Ok(r)
}

/// Latencies of one operation, in nanoseconds.
struct Lat(Vec<u64>);

impl Lat {
    fn json(mut self) -> serde_json::Value {
        self.0.sort_unstable();
        let n = self.0.len();
        let us = |ns: u64| (ns as f64 / 1000.0 * 100.0).round() / 100.0;
        let pct = |p: f64| us(self.0[((n as f64 * p) as usize).min(n - 1)]);
        let total: u64 = self.0.iter().sum();
        serde_json::json!({
            "count": n,
            "mean_us": us(total / n as u64),
            "p50_us": pct(0.5),
            "p90_us": pct(0.9),
            "p99_us": pct(0.99),
            "max_us": us(self.0[n - 1]),
            "total_s": total as f64 / 1e9,
        })
    }
}

/// Times `f` for each of `n` names.
fn each(names: &[CString], mut f: impl FnMut(&CString) -> io::Result<()>) -> io::Result<Lat> {
    let mut v = Vec::with_capacity(names.len());
    for name in names {
        let t = Instant::now();
        f(name)?;
        v.push(t.elapsed().as_nanos() as u64);
    }
    Ok(Lat(v))
}

/// Writes everything out and drops the kernel's caches: `2` dentries and
/// inodes, `3` the page cache too.
fn drop_caches(what: &str) -> io::Result<()> {
    // SAFETY: sync(2) takes no arguments.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", what)
}

fn ops(dir: &str, n: usize, list: &str) -> io::Result<()> {
    let base = format!("{dir}/g2a-ops-{}", std::process::id());
    std::fs::create_dir(&base)?;
    let c = cstr(&base);
    // SAFETY: a valid NUL-terminated path.
    let d = check(
        unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) },
        "open",
        &c,
    )?;
    let dirs: Vec<CString> = (0..n).map(|i| cstr(&format!("d{i:06}"))).collect();
    let files: Vec<CString> = (0..n).map(|i| cstr(&format!("f{i:06}"))).collect();
    let moved: Vec<CString> = (0..n).map(|i| cstr(&format!("g{i:06}"))).collect();
    let mut out = serde_json::Map::new();
    let mut state_files = false; // files exist under `files`
    let mut state_moved = false; // ... or under `moved`
    let mut deleted = false; // entries were removed since the caches were last dropped
    let ts = [
        libc::timespec {
            tv_sec: 1_000_000_000,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: 1_000_000_000,
            tv_nsec: 0,
        },
    ];
    // SAFETY (all calls below): `d` is a directory descriptor, names are
    // NUL-terminated, descriptors are our own.
    for op in list.split(',').filter(|s| !s.is_empty()) {
        let need_files = matches!(
            op,
            "lookup" | "open" | "write" | "chmod" | "chown" | "utimes" | "rename"
        );
        if need_files && !state_files {
            return Err(io::Error::other(format!(
                "{op} needs the files of `create` (in that order)"
            )));
        }
        if matches!(op, "create" | "mkdir") && deleted {
            // ext4 skips the inodes deleted in the last 30 s one by one
            // while their inode tables are cached: written out and dropped
            // first, so that creates cost what they do on a settled disk.
            drop_caches("3\n")?;
            deleted = false;
        }
        deleted |= matches!(op, "rmdir" | "unlink");
        let lat = match op {
            "mkdir" => each(&dirs, |x| {
                check(unsafe { libc::mkdirat(d, x.as_ptr(), 0o755) }, "mkdir", x).map(drop)
            })?,
            "rmdir" => each(&dirs, |x| {
                check(unsafe { libc::unlinkat(d, x.as_ptr(), libc::AT_REMOVEDIR) }, "rmdir", x).map(drop)
            })?,
            "create" => {
                // open(O_CREAT|O_EXCL) and close, as tar does; the close's
                // RELEASE is asynchronous (not waited for).
                state_files = true;
                each(&files, |x| {
                    let fd = check(
                        unsafe {
                            libc::openat(
                                d,
                                x.as_ptr(),
                                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                                0o644,
                            )
                        },
                        "create",
                        x,
                    )?;
                    unsafe { libc::close(fd) };
                    Ok(())
                })?
            }
            "lookup" => {
                // Dentries and inodes dropped first: each stat is a LOOKUP
                // through FUSE, an inode read from the buffer cache natively.
                drop_caches("2\n")?;
                each(&files, |x| {
                    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
                    check(
                        unsafe { libc::fstatat(d, x.as_ptr(), st.as_mut_ptr(), libc::AT_SYMLINK_NOFOLLOW) },
                        "stat",
                        x,
                    )
                    .map(drop)
                })?
            }
            "open" => {
                // open(O_WRONLY), then fsync of the clean file, each timed;
                // the close is not (its RELEASE is asynchronous).
                let (mut o, mut f) = (Vec::with_capacity(n), Vec::with_capacity(n));
                for x in &files {
                    let t = Instant::now();
                    let fd = check(
                        unsafe { libc::openat(d, x.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) },
                        "open",
                        x,
                    )?;
                    let t1 = Instant::now();
                    let r = check(unsafe { libc::fsync(fd) }, "fsync", x);
                    let t2 = Instant::now();
                    unsafe { libc::close(fd) };
                    r?;
                    o.push((t1 - t).as_nanos() as u64);
                    f.push((t2 - t1).as_nanos() as u64);
                }
                out.insert("fsync".into(), Lat(f).json());
                Lat(o)
            }
            "write" => {
                // open(O_WRONLY) and close untimed; a 4 KiB pwrite at 0 and
                // the fsync that makes it durable, timed together.
                let page = [0x5au8; 4096];
                let mut v = Vec::with_capacity(n);
                for x in &files {
                    let fd = check(
                        unsafe { libc::openat(d, x.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) },
                        "open",
                        x,
                    )?;
                    let t = Instant::now();
                    let w = unsafe { libc::pwrite(fd, page.as_ptr().cast(), page.len(), 0) };
                    let r = match w {
                        w if w == page.len() as isize => check(unsafe { libc::fsync(fd) }, "fsync", x),
                        w if w < 0 => check(-1, "pwrite", x),
                        w => Err(io::Error::other(format!(
                            "pwrite {}: {w} bytes written",
                            x.to_string_lossy()
                        ))),
                    };
                    v.push(t.elapsed().as_nanos() as u64);
                    unsafe { libc::close(fd) };
                    r?;
                }
                Lat(v)
            }
            "chmod" => each(&files, |x| {
                check(unsafe { libc::fchmodat(d, x.as_ptr(), 0o600, 0) }, "chmod", x).map(drop)
            })?,
            "chown" => each(&files, |x| {
                check(
                    unsafe { libc::fchownat(d, x.as_ptr(), 1, 1, libc::AT_SYMLINK_NOFOLLOW) },
                    "chown",
                    x,
                )
                .map(drop)
            })?,
            "utimes" => each(&files, |x| {
                check(
                    unsafe { libc::utimensat(d, x.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) },
                    "utimes",
                    x,
                )
                .map(drop)
            })?,
            "rename" => {
                state_files = false;
                state_moved = true;
                let mut v = Vec::with_capacity(n);
                for (x, y) in files.iter().zip(&moved) {
                    let t = Instant::now();
                    check(unsafe { libc::renameat(d, x.as_ptr(), d, y.as_ptr()) }, "rename", x)?;
                    v.push(t.elapsed().as_nanos() as u64);
                }
                Lat(v)
            }
            "unlink" => {
                let names = if state_moved { &moved } else { &files };
                if !state_moved && !state_files {
                    return Err(io::Error::other("unlink needs the files of `create`"));
                }
                state_files = false;
                state_moved = false;
                each(names, |x| {
                    check(unsafe { libc::unlinkat(d, x.as_ptr(), 0) }, "unlink", x).map(drop)
                })?
            }
            _ => return Err(io::Error::other(format!("unknown operation {op}"))),
        };
        out.insert(op.to_string(), lat.json());
    }
    unsafe { libc::close(d) };
    // Whatever the list left behind goes (untimed).
    std::fs::remove_dir_all(&base)?;
    let doc = serde_json::json!({ "dir": dir, "count": n, "ops": out });
    println!("{doc}");
    Ok(())
}
