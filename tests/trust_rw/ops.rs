//! The file operations of the differential tester: a seeded generator of
//! operations ([`Gen`]), and a world that applies them to one directory
//! tree ([`World`]) and says what each did ([`Out`]).
//!
//! The generator never looks at outcomes: the sequence is a pure function of
//! the seed and the tree's initial paths, so it is the same for the native
//! tree and for the view, and a failure is reproduced from its seed alone.
//!
//! Operations never leave the tree: every path is resolved first with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` (the generated layers
//! hold symlinks such as `etc/mtab -> /proc/mounts`), and device nodes other
//! than a few harmless ones are never opened.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustix::fs::{
    self as rfs, Access, AtFlags, FallocateFlags, FileType, Gid, Mode, OFlags, RenameFlags, ResolveFlags, SeekFrom,
    Timespec, Timestamps, Uid, XattrFlags,
};
use rustix::io::Errno;

/// A path relative to the tree's root, as bytes (names need not be UTF-8).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct P(pub Vec<u8>);

impl P {
    pub fn os(&self) -> &OsStr {
        OsStr::from_bytes(&self.0)
    }

    fn depth(&self) -> usize {
        self.0.split(|&b| b == b'/').count()
    }

    fn join(&self, name: &[u8]) -> P {
        if self.0 == b"." {
            return P(name.to_vec());
        }
        let mut v = self.0.clone();
        v.push(b'/');
        v.extend_from_slice(name);
        P(v)
    }

    /// The directory part (`.` for a name at the top).
    fn parent(&self) -> Option<&[u8]> {
        self.0.iter().rposition(|&b| b == b'/').map(|i| &self.0[..i])
    }
}

impl fmt::Debug for P {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = self
            .0
            .iter()
            .flat_map(|b| std::ascii::escape_default(*b))
            .map(char::from)
            .collect();
        if shown.len() > 70 {
            write!(f, "\"{}..({} bytes)\"", &shown[..40], self.0.len())
        } else {
            write!(f, "\"{shown}\"")
        }
    }
}

/// A time for `utimensat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum T {
    Omit,
    Now,
    At(i64, i64),
}

/// What `mknod` makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    Fifo,
    Char(u32, u32),
    Block(u32, u32),
    Socket,
    Regular,
}

/// One operation. Paths are relative to the tree's root; `slot` names one
/// of [`SLOTS`] open file descriptors the world keeps.
#[derive(Clone, Debug)]
pub enum Op {
    Open {
        path: P,
        flags: u32,
        mode: u32,
        slot: usize,
    },
    Close {
        slot: usize,
    },
    Write {
        slot: usize,
        len: usize,
        fill: u8,
    },
    Pwrite {
        slot: usize,
        offset: u64,
        len: usize,
        fill: u8,
    },
    Read {
        slot: usize,
        len: usize,
    },
    Pread {
        slot: usize,
        offset: u64,
        len: usize,
    },
    Seek {
        slot: usize,
        whence: u8,
        offset: i64,
    },
    Ftruncate {
        slot: usize,
        len: u64,
    },
    Fsync {
        slot: usize,
        data_only: bool,
    },
    Fallocate {
        slot: usize,
        mode: u32,
        offset: u64,
        len: u64,
    },
    Fstat {
        slot: usize,
    },
    Fchmod {
        slot: usize,
        mode: u32,
    },
    Fchown {
        slot: usize,
        uid: Option<u32>,
        gid: Option<u32>,
    },
    Futimens {
        slot: usize,
        atime: T,
        mtime: T,
    },
    Truncate {
        path: P,
        len: u64,
    },
    Mkdir {
        path: P,
        mode: u32,
    },
    Rmdir {
        path: P,
    },
    Unlink {
        path: P,
    },
    Rename {
        from: P,
        to: P,
        flags: u32,
    },
    Link {
        from: P,
        to: P,
        follow: bool,
    },
    Symlink {
        target: P,
        path: P,
    },
    Readlink {
        path: P,
    },
    Chmod {
        path: P,
        mode: u32,
    },
    Chown {
        path: P,
        uid: Option<u32>,
        gid: Option<u32>,
        follow: bool,
    },
    Utimens {
        path: P,
        atime: T,
        mtime: T,
        follow: bool,
    },
    Setxattr {
        path: P,
        name: &'static str,
        value: Digest,
        flags: u32,
        follow: bool,
    },
    Removexattr {
        path: P,
        name: &'static str,
        follow: bool,
    },
    Getxattr {
        path: P,
        name: &'static str,
        follow: bool,
    },
    Listxattr {
        path: P,
        follow: bool,
    },
    Mknod {
        path: P,
        node: Node,
        mode: u32,
    },
    Stat {
        path: P,
        follow: bool,
    },
    Readdir {
        path: P,
    },
    Access {
        path: P,
        mode: u32,
    },
    FsyncDir {
        path: P,
    },
}

/// What an operation did: compared between the native tree and the view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Out {
    Done,
    /// A count or an offset.
    Num(u64),
    /// Bytes read, a link's target, an attribute's value.
    Data(Digest),
    /// A directory's entries (name and type) or attribute names, sorted.
    Names(Vec<(P, u8)>),
    Stat(St),
    Err(E),
    /// Not run, and why: the path leads out of the tree, a device node
    /// that could touch the host, nothing open in that slot, ...
    NotRun(&'static str),
}

const ESCAPES: Out = Out::NotRun("the path leads out of the tree");
const UNSAFE: Out = Out::NotRun("a device node that could touch the host");
const NO_SLOT: Out = Out::NotRun("nothing open in that slot");
const DIR_SEEK: Out = Out::NotRun("lseek on a directory (FUSE's own semantics)");

/// An errno, shown by name and text.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct E(pub i32);

impl fmt::Debug for E {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0, std::io::Error::from_raw_os_error(self.0))
    }
}

impl From<Errno> for Out {
    fn from(e: Errno) -> Out {
        Out::Err(E(e.raw_os_error()))
    }
}

/// Bytes, shown short: the length and the first bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Digest(pub Vec<u8>);

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head: String = self
            .0
            .iter()
            .take(24)
            .flat_map(|b| std::ascii::escape_default(*b))
            .map(char::from)
            .collect();
        write!(f, "{} bytes \"{head}\"", self.0.len())
    }
}

/// A time as compared: one set during the run is only known to be recent
/// (the two trees do the same thing at slightly different instants); any
/// other is exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Time {
    Recent,
    At(i64, i64),
}

/// The attributes compared (not st_dev, st_ino, atime, blocks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct St {
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u64,
    /// Not for directories (their sizes depend on their history).
    pub size: u64,
    pub rdev: (u32, u32),
    /// Not for FIFOs: FUSE marks its inodes S_NOCMTIME, so data written
    /// into a FIFO through any FUSE mount never updates the FIFO's times
    /// (the server never sees pipe I/O).
    pub mtime: Time,
    /// Only whether it changed during the run.
    pub ctime_recent: bool,
}

fn kind_char(ft: FileType) -> char {
    match ft {
        FileType::Directory => 'd',
        FileType::RegularFile => 'f',
        FileType::Symlink => 'l',
        FileType::Fifo => 'p',
        FileType::CharacterDevice => 'c',
        FileType::BlockDevice => 'b',
        FileType::Socket => 's',
        _ => '?',
    }
}

/// When the run began, in nanoseconds since the epoch: times at or after it
/// (and not in the future) are [`Time::Recent`].
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pub start_ns: i128,
    /// The same for status change times (later once a layer was copied to
    /// another file system: a copy cannot keep them).
    pub ctime_start_ns: i128,
}

impl Clock {
    /// A run starting now. File times come from the kernel's coarse clock,
    /// up to a jiffy (at most 10 ms) behind the precise one: whatever
    /// happened before this call is older than the start (it waits 30 ms),
    /// whatever happens after is not (15 ms of margin).
    pub fn now() -> Clock {
        std::thread::sleep(std::time::Duration::from_millis(30));
        let start_ns = now_ns() - 15_000_000;
        Clock {
            start_ns,
            ctime_start_ns: start_ns,
        }
    }

    pub fn is_recent(&self, sec: i64, nsec: i64) -> bool {
        let t = i128::from(sec) * 1_000_000_000 + i128::from(nsec);
        t >= self.start_ns && t <= now_ns() + 2_000_000_000
    }

    pub fn time(&self, sec: i64, nsec: i64) -> Time {
        if self.is_recent(sec, nsec) {
            Time::Recent
        } else {
            Time::At(sec, nsec)
        }
    }

    pub fn st(&self, s: &rfs::Stat) -> St {
        let ft = FileType::from_raw_mode(s.st_mode as _);
        let dev = s.st_rdev;
        St {
            kind: kind_char(ft),
            mode: s.st_mode & 0o7777,
            uid: s.st_uid,
            gid: s.st_gid,
            nlink: s.st_nlink,
            size: if ft == FileType::Directory { 0 } else { s.st_size as u64 },
            rdev: if matches!(ft, FileType::CharacterDevice | FileType::BlockDevice) {
                (rfs::major(dev), rfs::minor(dev))
            } else {
                (0, 0)
            },
            mtime: if ft == FileType::Fifo {
                Time::Recent
            } else {
                self.time(s.st_mtime, s.st_mtime_nsec as i64)
            },
            ctime_recent: ft == FileType::Fifo || {
                let t = i128::from(s.st_ctime) * 1_000_000_000 + i128::from(s.st_ctime_nsec as i64);
                self.is_recent(s.st_ctime, s.st_ctime_nsec as i64) && t >= self.ctime_start_ns
            },
        }
    }
}

pub fn now_ns() -> i128 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    d.as_nanos() as i128
}

/// Open descriptors a world keeps between operations.
pub const SLOTS: usize = 4;

/// Names the generator builds paths from: short ones that collide often,
/// names that are not UTF-8, an aufs whiteout name, and rarely the longest
/// name a directory entry takes (and one byte more).
const NAMES: &[&[u8]] = &[
    b"a",
    b"b",
    b"c",
    b"d",
    b"e",
    b"f",
    b"dir",
    b"sub",
    b"x.txt",
    "\u{fc}n\u{ef}c\u{f6}d\u{e9}".as_bytes(),
    b"with space",
    b"\xff\xfe-not-utf8",
    b".wh.a",
];

const XATTRS: &[&str] = &[
    "user.a",
    "user.b",
    "user.graph2aufs.test",
    "user.long.name.for.an.attribute",
];

/// Modes the generator sets: common ones, and every special bit.
const MODES: &[u32] = &[
    0o644, 0o755, 0o600, 0o700, 0o444, 0o000, 0o777, 0o4755, 0o2755, 0o1777, 0o2775, 0o6711, 0o640, 0o1700,
];

const IDS: &[u32] = &[0, 4242, 4243, 65534];

/// The generator: a seeded stream of operations over the tree's initial
/// paths and the paths the operations themselves name.
pub struct Gen {
    rng: ChaCha8Rng,
    paths: Vec<P>,
    known: HashSet<P>,
    dirs: Vec<P>,
    /// Slots the sequence opened and has not closed since.
    open: [bool; SLOTS],
    /// Directories most paths are under (see [`Gen::prefer`]).
    prefer: Vec<P>,
    /// Root-only operations (device nodes, chown to others, trusted.*) are
    /// generated too: the run is root's.
    pub as_root: bool,
    /// No setuid or setgid bit in the modes set: through FUSE, writes,
    /// truncations and O_TRUNC by another user do not always clear them
    /// (writes_by_another_user_clear_setuid_and_setgid_bits_as_natively),
    /// and a random run as another user would keep finding that again.
    pub no_setid_modes: bool,
    /// Root sets trusted.* attributes too (not in a run where another user
    /// lists them afterwards: see
    /// extended_attributes_for_another_user_as_natively).
    pub trusted_xattrs: bool,
}

impl Gen {
    /// A generator for a tree whose initial entries are `initial` (sorted,
    /// relative paths; `dirs` those that are directories).
    pub fn new(seed: u64, initial: &[(P, bool)]) -> Gen {
        let mut g = Gen {
            rng: ChaCha8Rng::seed_from_u64(seed),
            paths: Vec::new(),
            known: HashSet::new(),
            dirs: vec![P(b".".to_vec())],
            open: [false; SLOTS],
            prefer: Vec::new(),
            as_root: true,
            no_setid_modes: false,
            trusted_xattrs: true,
        };
        for (p, is_dir) in initial {
            g.note(p.clone());
            if *is_dir {
                g.dirs.push(p.clone());
            }
        }
        g
    }

    fn note(&mut self, p: P) {
        if self.known.insert(p.clone()) {
            self.paths.push(p);
        }
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.rng.random_range(0..from.len())]
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    /// From now on, most paths are at or under one of `dirs` (which the
    /// generator then knows as directories).
    pub fn prefer(&mut self, dirs: &[&str]) {
        self.prefer = dirs.iter().map(|d| P(d.as_bytes().to_vec())).collect();
        for d in self.prefer.clone() {
            self.note(d.clone());
            self.dirs.push(d);
        }
    }

    fn preferred(&self, p: &P) -> bool {
        self.prefer
            .iter()
            .any(|d| p.0 == d.0 || (p.0.starts_with(&d.0) && p.0.get(d.0.len()) == Some(&b'/')))
    }

    /// A path that may exist (most of the time one named before).
    fn existing(&mut self) -> P {
        if self.paths.is_empty() || self.chance(0.08) {
            return self.fresh();
        }
        if !self.prefer.is_empty() && self.chance(0.8) {
            let under: Vec<usize> = (0..self.paths.len())
                .filter(|&i| self.preferred(&self.paths[i]) && !self.prefer.contains(&self.paths[i]))
                .collect();
            if !under.is_empty() {
                let i = self.pick(&under);
                return self.paths[i].clone();
            }
        }
        // Recent paths are likelier to exist still.
        let n = self.paths.len();
        let i = if self.chance(0.5) {
            n - 1 - self.rng.random_range(0..n.min(24))
        } else {
            self.rng.random_range(0..n)
        };
        self.paths[i].clone()
    }

    /// A path in a directory that may exist, with a generated name.
    fn fresh(&mut self) -> P {
        let preferred: Vec<usize> = if !self.prefer.is_empty() && self.chance(0.8) {
            (0..self.dirs.len())
                .filter(|&i| self.preferred(&self.dirs[i]))
                .collect()
        } else {
            Vec::new()
        };
        let parent = loop {
            let d = if !preferred.is_empty() {
                let i = self.pick(&preferred);
                self.dirs[i].clone()
            } else if self.chance(0.96) {
                let i = self.rng.random_range(0..self.dirs.len());
                self.dirs[i].clone()
            } else if !self.paths.is_empty() {
                let i = self.rng.random_range(0..self.paths.len());
                self.paths[i].clone()
            } else {
                P(b".".to_vec())
            };
            if d.0 == b"." || d.depth() < 5 {
                break d;
            }
        };
        let name: Vec<u8> = if self.chance(0.01) {
            vec![b'L'; 255]
        } else if self.chance(0.003) {
            vec![b'M'; 256]
        } else {
            self.pick(NAMES).to_vec()
        };
        parent.join(&name)
    }

    fn target(&mut self) -> P {
        if self.chance(0.5) {
            self.existing()
        } else {
            self.fresh()
        }
    }

    /// A slot, most of the time one the sequence opened last (the open
    /// may have failed: the generator does not know).
    fn slot(&mut self) -> usize {
        let open: Vec<usize> = (0..SLOTS).filter(|&i| self.open[i]).collect();
        if !open.is_empty() && self.chance(0.9) {
            self.pick(&open)
        } else {
            self.rng.random_range(0..SLOTS)
        }
    }

    /// What the sequence made likely to exist: paths that later operations
    /// pick, slots that are likely open.
    fn after(&mut self, op: &Op) {
        match op {
            Op::Open { path, flags, slot, .. } => {
                if flags & libc::O_CREAT as u32 != 0 {
                    self.note(path.clone());
                    self.not_a_dir(path);
                }
                self.open[*slot] = true;
            }
            Op::Close { slot } => self.open[*slot] = false,
            Op::Mkdir { path, .. } => self.note(path.clone()),
            Op::Mknod { path, .. } | Op::Symlink { path, .. } | Op::Link { to: path, .. } => {
                self.note(path.clone());
                self.not_a_dir(path);
            }
            Op::Rename { from, to, .. } => {
                self.note(to.clone());
                if self.dirs.contains(from) {
                    if !self.dirs.contains(to) {
                        self.dirs.push(to.clone());
                    }
                } else {
                    self.not_a_dir(to);
                }
            }
            _ => {}
        }
    }

    /// `p` is probably not a directory now: no new names under it.
    fn not_a_dir(&mut self, p: &P) {
        if !self.prefer.contains(p) {
            self.dirs.retain(|d| d != p);
        }
    }

    fn mode(&mut self) -> u32 {
        let m = if self.chance(0.15) {
            self.rng.random_range(0..0o10000)
        } else {
            self.pick(MODES)
        };
        if self.no_setid_modes {
            m & !0o6000
        } else {
            m
        }
    }

    fn id(&mut self) -> Option<u32> {
        if self.chance(0.2) {
            None
        } else if self.as_root {
            Some(self.pick(IDS))
        } else {
            // An unprivileged caller may only give away to itself or its groups.
            Some(self.pick(&[4242, 4243, 0]))
        }
    }

    /// An owner and a group for chown, at least one of them set: chown
    /// to (-1, -1), which natively changes only the ctime, is checked by
    /// time_updates_after_writes_chmod_renames_and_more_as_natively.
    fn owner(&mut self) -> (Option<u32>, Option<u32>) {
        loop {
            let (uid, gid) = (self.id(), self.id());
            if uid.is_some() || gid.is_some() {
                return (uid, gid);
            }
        }
    }

    fn time(&mut self) -> T {
        match self.rng.random_range(0..20) {
            0..3 => T::Omit,
            3..8 => T::Now,
            // 2001 to 2015, nanoseconds included.
            _ => T::At(
                self.rng.random_range(978_307_200..1_420_070_400),
                self.rng.random_range(0..1_000_000_000),
            ),
        }
    }

    fn len(&mut self) -> usize {
        match self.rng.random_range(0..20) {
            0 => 0,
            1 => self.rng.random_range(4096..70_000),
            _ => self.rng.random_range(1..3000),
        }
    }

    fn offset(&mut self) -> u64 {
        match self.rng.random_range(0..20) {
            0 => self.rng.random_range(0..2 << 20),
            1..4 => 0,
            _ => self.rng.random_range(0..40_000),
        }
    }

    /// The next operation.
    pub fn next_op(&mut self) -> Op {
        let op = self.choose();
        self.after(&op);
        op
    }

    fn choose(&mut self) -> Op {
        let slot = self.slot();
        let w = self.rng.random_range(0..118);
        match w {
            0..12 => {
                let creating = self.chance(0.55);
                let path = if creating { self.target() } else { self.existing() };
                let mut flags = match self.rng.random_range(0..10) {
                    0..4 => libc::O_RDWR,
                    4..7 => libc::O_WRONLY,
                    _ => libc::O_RDONLY,
                } as u32;
                let mut add = |on: bool, f: i32| {
                    if on {
                        flags |= f as u32;
                    }
                };
                add(creating, libc::O_CREAT);
                let excl = creating && self.chance(0.25);
                add(excl, libc::O_EXCL);
                let trunc = self.chance(0.15);
                add(trunc, libc::O_TRUNC);
                let append = self.chance(0.25);
                add(append, libc::O_APPEND);
                let nofollow = self.chance(0.15);
                add(nofollow, libc::O_NOFOLLOW);
                let directory = self.chance(0.05);
                add(directory, libc::O_DIRECTORY);
                let mode = self.mode();
                Op::Open {
                    path,
                    flags,
                    mode,
                    slot,
                }
            }
            12..17 => Op::Close { slot },
            17..23 => {
                let (len, fill) = (self.len(), self.rng.random());
                Op::Write { slot, len, fill }
            }
            23..29 => {
                let (offset, len, fill) = (self.offset(), self.len(), self.rng.random());
                Op::Pwrite {
                    slot,
                    offset,
                    len,
                    fill,
                }
            }
            29..32 => {
                let len = self.len();
                Op::Read { slot, len }
            }
            32..35 => {
                let (offset, len) = (self.offset(), self.len());
                Op::Pread { slot, offset, len }
            }
            35..37 => {
                let whence = self.rng.random_range(0..3);
                let offset = self.rng.random_range(-5000..50_000);
                Op::Seek { slot, whence, offset }
            }
            37..39 => {
                let len = self.offset();
                Op::Ftruncate { slot, len }
            }
            39..41 => Op::Fsync {
                slot,
                data_only: self.chance(0.5),
            },
            41..44 => {
                let mode = self.pick(&[
                    0,
                    libc::FALLOC_FL_KEEP_SIZE,
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    libc::FALLOC_FL_ZERO_RANGE,
                    libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
                ]) as u32;
                let (offset, len) = (self.offset(), self.rng.random_range(0..70_000));
                Op::Fallocate {
                    slot,
                    mode,
                    offset,
                    len,
                }
            }
            44..47 => Op::Fstat { slot },
            47 => {
                let mode = self.mode();
                Op::Fchmod { slot, mode }
            }
            48 => {
                let (uid, gid) = self.owner();
                Op::Fchown { slot, uid, gid }
            }
            49 => {
                let (atime, mtime) = (self.time(), self.time());
                Op::Futimens { slot, atime, mtime }
            }
            50..52 => {
                let (path, len) = (self.existing(), self.offset());
                Op::Truncate { path, len }
            }
            52..59 => {
                let (path, mode) = (self.target(), self.mode());
                if path.depth() < 5 {
                    self.dirs.push(path.clone());
                }
                Op::Mkdir { path, mode }
            }
            59..62 => Op::Rmdir { path: self.existing() },
            62..67 => Op::Unlink { path: self.existing() },
            67..76 => {
                let from = self.existing();
                let to = self.target();
                let flags = match self.rng.random_range(0..20) {
                    0..13 => 0,
                    13..15 => libc::RENAME_NOREPLACE,
                    15..19 => libc::RENAME_EXCHANGE,
                    _ if self.as_root => libc::RENAME_WHITEOUT,
                    _ => 0,
                };
                Op::Rename { from, to, flags }
            }
            76..80 => {
                let (from, to) = (self.existing(), self.target());
                Op::Link {
                    from,
                    to,
                    follow: self.chance(0.2),
                }
            }
            80..84 => {
                let target = match self.rng.random_range(0..6) {
                    0 => b"/nonexistent-trust-rw/x".to_vec(),
                    1 => b"../outside".to_vec(),
                    2 => {
                        let mut v = b"a/../".to_vec();
                        v.extend_from_slice(&self.existing().0);
                        v
                    }
                    _ => self.existing().0,
                };
                Op::Symlink {
                    target: P(target),
                    path: self.target(),
                }
            }
            84..86 => Op::Readlink { path: self.existing() },
            86..89 => {
                let (path, mode) = (self.existing(), self.mode());
                Op::Chmod { path, mode }
            }
            89..92 => {
                let path = self.existing();
                let (uid, gid) = self.owner();
                Op::Chown {
                    path,
                    uid,
                    gid,
                    follow: self.chance(0.6),
                }
            }
            92..95 => {
                let (path, atime, mtime) = (self.existing(), self.time(), self.time());
                Op::Utimens {
                    path,
                    atime,
                    mtime,
                    follow: self.chance(0.6),
                }
            }
            95..98 => {
                let path = self.existing();
                let name = if self.as_root && self.trusted_xattrs && self.chance(0.1) {
                    "trusted.trust-rw"
                } else {
                    self.pick(XATTRS)
                };
                let n = match self.rng.random_range(0..10) {
                    0 => 0,
                    1 => 3000,
                    _ => self.rng.random_range(1..100),
                };
                let fill: u8 = self.rng.random();
                let value = Digest((0..n).map(|i| fill.wrapping_add(i as u8)).collect());
                let flags = self.pick(&[0, 0, libc::XATTR_CREATE as u32, libc::XATTR_REPLACE as u32]);
                Op::Setxattr {
                    path,
                    name,
                    value,
                    flags,
                    follow: self.chance(0.3),
                }
            }
            98 => {
                let (path, name) = (self.existing(), self.pick(XATTRS));
                Op::Removexattr {
                    path,
                    name,
                    follow: self.chance(0.3),
                }
            }
            99 => {
                let (path, name) = (self.existing(), self.pick(XATTRS));
                Op::Getxattr {
                    path,
                    name,
                    follow: self.chance(0.3),
                }
            }
            100 => Op::Listxattr {
                path: self.existing(),
                follow: self.chance(0.3),
            },
            101..104 => {
                let node = match self.rng.random_range(0..10) {
                    0..4 => Node::Fifo,
                    4..7 => {
                        let (ma, mi) = self.pick(&[(1, 3), (1, 5), (1, 7), (240, 7)]);
                        Node::Char(ma, mi)
                    }
                    7 => Node::Block(240, 3),
                    8 => Node::Socket,
                    _ => Node::Regular,
                };
                let (path, mode) = (self.target(), self.mode());
                Op::Mknod { path, node, mode }
            }
            104..111 => Op::Stat {
                path: self.existing(),
                follow: self.chance(0.3),
            },
            111..115 => {
                let path = if self.chance(0.7) {
                    let i = self.rng.random_range(0..self.dirs.len());
                    self.dirs[i].clone()
                } else {
                    self.existing()
                };
                Op::Readdir { path }
            }
            115..117 => Op::Access {
                path: self.existing(),
                mode: self.rng.random_range(0..8),
            },
            _ => {
                let i = self.rng.random_range(0..self.dirs.len());
                Op::FsyncDir {
                    path: self.dirs[i].clone(),
                }
            }
        }
    }
}

/// Bytes for a write: a run that depends on `fill` and the position.
pub fn bytes(len: usize, fill: u8) -> Vec<u8> {
    (0..len).map(|i| fill.wrapping_add((i / 7) as u8)).collect()
}

/// Character devices it is harmless to open, read and write.
const SAFE_DEVICES: &[(u32, u32)] = &[(1, 3), (1, 5), (1, 7), (1, 8), (1, 9)];

/// One tree the operations apply to, with its open descriptors.
pub struct World {
    pub name: &'static str,
    /// None once released (so that the view can be unmounted).
    base: Option<OwnedFd>,
    base_path: PathBuf,
    slots: Vec<Option<OwnedFd>>,
    pub clock: Clock,
}

fn timespec(t: T) -> Timespec {
    match t {
        T::Omit => Timespec {
            tv_sec: 0,
            tv_nsec: rfs::UTIME_OMIT,
        },
        T::Now => Timespec {
            tv_sec: 0,
            tv_nsec: rfs::UTIME_NOW,
        },
        T::At(s, ns) => Timespec {
            tv_sec: s,
            tv_nsec: ns as _,
        },
    }
}

fn done(r: rustix::io::Result<()>) -> Out {
    match r {
        Ok(()) => Out::Done,
        Err(e) => e.into(),
    }
}

fn uid(u: Option<u32>) -> Option<Uid> {
    u.map(Uid::from_raw)
}

fn gid(g: Option<u32>) -> Option<Gid> {
    g.map(Gid::from_raw)
}

impl World {
    #[track_caller]
    pub fn open(name: &'static str, base_path: &Path, clock: Clock) -> World {
        let base = rfs::open(
            base_path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap_or_else(|e| panic!("opening the {name} tree {}: {e}", base_path.display()));
        World {
            name,
            base: Some(base),
            base_path: base_path.to_path_buf(),
            slots: (0..SLOTS).map(|_| None).collect(),
            clock,
        }
    }

    pub fn close_all(&mut self) {
        for s in &mut self.slots {
            *s = None;
        }
    }

    /// Closes everything this world holds open in its tree.
    pub fn release(&mut self) {
        self.close_all();
        self.base = None;
    }

    fn base(&self) -> std::os::fd::BorrowedFd<'_> {
        match &self.base {
            Some(fd) => fd.as_fd(),
            None => panic!("the {} world is used after its release", self.name),
        }
    }

    fn full(&self, p: &P) -> PathBuf {
        if p.0 == b"." {
            self.base_path.clone()
        } else {
            self.base_path.join(p.os())
        }
    }

    /// `Err(ESCAPES)` if resolving `p` (its directory, and with
    /// `follow_last` also its last component) would leave the tree. Other
    /// failures are left for the operation itself to report.
    fn beneath(&self, p: &P, follow_last: bool) -> Result<(), Out> {
        let how = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        let check = |q: &[u8]| match rfs::openat2(
            self.base(),
            OsStr::from_bytes(q),
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            how,
        ) {
            Err(Errno::XDEV) => Err(ESCAPES),
            _ => Ok(()),
        };
        if let Some(dir) = p.parent() {
            check(dir)?;
        }
        if follow_last {
            check(&p.0)?;
        }
        Ok(())
    }

    /// `Err(UNSAFE)` for a device node that is not harmless to open.
    fn safe_to_open(&self, p: &P, follow: bool) -> Result<(), Out> {
        let flags = if follow {
            AtFlags::empty()
        } else {
            AtFlags::SYMLINK_NOFOLLOW
        };
        if let Ok(st) = rfs::statat(self.base(), p.os(), flags) {
            let ft = FileType::from_raw_mode(st.st_mode as _);
            let dev = st.st_rdev;
            let safe = match ft {
                FileType::CharacterDevice => SAFE_DEVICES.contains(&(rfs::major(dev), rfs::minor(dev))),
                FileType::BlockDevice => false,
                _ => true,
            };
            if !safe {
                return Err(UNSAFE);
            }
        }
        Ok(())
    }

    fn slot(&self, slot: usize) -> Result<&OwnedFd, Out> {
        self.slots[slot].as_ref().ok_or(NO_SLOT)
    }

    /// Applies `op` and says what it did.
    pub fn apply(&mut self, op: &Op) -> Out {
        match self.apply_inner(op) {
            Ok(o) | Err(o) => o,
        }
    }

    fn stat_out(&self, r: rustix::io::Result<rfs::Stat>) -> Out {
        match r {
            Ok(s) => Out::Stat(self.clock.st(&s)),
            Err(e) => e.into(),
        }
    }

    fn apply_inner(&mut self, op: &Op) -> Result<Out, Out> {
        let base = self.base();
        Ok(match op {
            Op::Open {
                path,
                flags,
                mode,
                slot,
            } => {
                let flags = OFlags::from_bits_retain(*flags);
                let follow = !(flags.contains(OFlags::NOFOLLOW)
                    || (flags.contains(OFlags::CREATE) && flags.contains(OFlags::EXCL)));
                self.beneath(path, follow)?;
                self.safe_to_open(path, follow)?;
                // Never block on a FIFO, never take a terminal.
                let flags = flags | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
                match rfs::openat(base, path.os(), flags, Mode::from_raw_mode(*mode)) {
                    Ok(fd) => {
                        self.slots[*slot] = Some(fd);
                        Out::Done
                    }
                    Err(e) => e.into(),
                }
            }
            Op::Close { slot } => {
                self.slot(*slot)?;
                self.slots[*slot] = None;
                Out::Done
            }
            Op::Write { slot, len, fill } => match rustix::io::write(self.slot(*slot)?, &bytes(*len, *fill)) {
                Ok(n) => Out::Num(n as u64),
                Err(e) => e.into(),
            },
            Op::Pwrite {
                slot,
                offset,
                len,
                fill,
            } => match rustix::io::pwrite(self.slot(*slot)?, &bytes(*len, *fill), *offset) {
                Ok(n) => Out::Num(n as u64),
                Err(e) => e.into(),
            },
            Op::Read { slot, len } => {
                let mut buf = vec![0u8; *len];
                match rustix::io::read(self.slot(*slot)?, &mut buf[..]) {
                    Ok(n) => Out::Data(Digest(buf[..n].to_vec())),
                    Err(e) => e.into(),
                }
            }
            Op::Pread { slot, offset, len } => {
                let mut buf = vec![0u8; *len];
                match rustix::io::pread(self.slot(*slot)?, &mut buf[..], *offset) {
                    Ok(n) => Out::Data(Digest(buf[..n].to_vec())),
                    Err(e) => e.into(),
                }
            }
            Op::Seek { slot, whence, offset } => {
                // A directory's offsets are the file system's own cookies
                // (ext4's hash positions, FUSE's entry indexes).
                if rfs::fstat(self.slot(*slot)?)
                    .is_ok_and(|s| FileType::from_raw_mode(s.st_mode as _) == FileType::Directory)
                {
                    return Err(DIR_SEEK);
                }
                let pos = match whence {
                    0 => SeekFrom::Start(offset.unsigned_abs()),
                    1 => SeekFrom::Current(*offset),
                    2 => SeekFrom::End(*offset),
                    // Only in explicit sequences (see
                    // seek_data_and_seek_hole_find_a_sparse_file_s_holes_as_natively).
                    3 => SeekFrom::Data(offset.unsigned_abs()),
                    _ => SeekFrom::Hole(offset.unsigned_abs()),
                };
                match rfs::seek(self.slot(*slot)?, pos) {
                    Ok(n) => Out::Num(n),
                    Err(e) => e.into(),
                }
            }
            Op::Ftruncate { slot, len } => done(rfs::ftruncate(self.slot(*slot)?, *len)),
            Op::Fsync { slot, data_only } => {
                let fd = self.slot(*slot)?;
                done(if *data_only { rfs::fdatasync(fd) } else { rfs::fsync(fd) })
            }
            Op::Fallocate {
                slot,
                mode,
                offset,
                len,
            } => done(rfs::fallocate(
                self.slot(*slot)?,
                FallocateFlags::from_bits_retain(*mode),
                *offset,
                *len,
            )),
            Op::Fstat { slot } => self.stat_out(rfs::fstat(self.slot(*slot)?)),
            Op::Fchmod { slot, mode } => done(rfs::fchmod(self.slot(*slot)?, Mode::from_raw_mode(*mode))),
            Op::Fchown { slot, uid: u, gid: g } => done(rfs::fchown(self.slot(*slot)?, uid(*u), gid(*g))),
            Op::Futimens { slot, atime, mtime } => done(rfs::futimens(
                self.slot(*slot)?,
                &Timestamps {
                    last_access: timespec(*atime),
                    last_modification: timespec(*mtime),
                },
            )),
            Op::Truncate { path, len } => {
                self.beneath(path, true)?;
                self.safe_to_open(path, true)?;
                // truncate(2) on the path, as coreutils' truncate does.
                let full = std::ffi::CString::new(self.full(path).into_os_string().into_vec()).expect("no NUL");
                // SAFETY: a valid C string; truncate(2) has no other argument in memory.
                if unsafe { libc::truncate(full.as_ptr(), *len as libc::off_t) } == 0 {
                    Out::Done
                } else {
                    Out::Err(E(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)))
                }
            }
            Op::Mkdir { path, mode } => {
                self.beneath(path, false)?;
                done(rfs::mkdirat(base, path.os(), Mode::from_raw_mode(*mode)))
            }
            Op::Rmdir { path } => {
                self.beneath(path, false)?;
                done(rfs::unlinkat(base, path.os(), AtFlags::REMOVEDIR))
            }
            Op::Unlink { path } => {
                self.beneath(path, false)?;
                done(rfs::unlinkat(base, path.os(), AtFlags::empty()))
            }
            Op::Rename { from, to, flags } => {
                self.beneath(from, false)?;
                self.beneath(to, false)?;
                done(rfs::renameat_with(
                    base,
                    from.os(),
                    base,
                    to.os(),
                    RenameFlags::from_bits_retain(*flags),
                ))
            }
            Op::Link { from, to, follow } => {
                self.beneath(from, *follow)?;
                self.beneath(to, false)?;
                let flags = if *follow {
                    AtFlags::SYMLINK_FOLLOW
                } else {
                    AtFlags::empty()
                };
                done(rfs::linkat(base, from.os(), base, to.os(), flags))
            }
            Op::Symlink { target, path } => {
                self.beneath(path, false)?;
                done(rfs::symlinkat(target.os(), base, path.os()))
            }
            Op::Readlink { path } => {
                self.beneath(path, false)?;
                match rfs::readlinkat(base, path.os(), Vec::new()) {
                    Ok(t) => Out::Data(Digest(t.into_bytes())),
                    Err(e) => e.into(),
                }
            }
            Op::Chmod { path, mode } => {
                self.beneath(path, true)?;
                done(rfs::chmodat(
                    base,
                    path.os(),
                    Mode::from_raw_mode(*mode),
                    AtFlags::empty(),
                ))
            }
            Op::Chown {
                path,
                uid: u,
                gid: g,
                follow,
            } => {
                self.beneath(path, *follow)?;
                let flags = if *follow {
                    AtFlags::empty()
                } else {
                    AtFlags::SYMLINK_NOFOLLOW
                };
                done(rfs::chownat(base, path.os(), uid(*u), gid(*g), flags))
            }
            Op::Utimens {
                path,
                atime,
                mtime,
                follow,
            } => {
                self.beneath(path, *follow)?;
                let flags = if *follow {
                    AtFlags::empty()
                } else {
                    AtFlags::SYMLINK_NOFOLLOW
                };
                let times = Timestamps {
                    last_access: timespec(*atime),
                    last_modification: timespec(*mtime),
                };
                done(rfs::utimensat(base, path.os(), &times, flags))
            }
            Op::Setxattr {
                path,
                name,
                value,
                flags,
                follow,
            } => {
                self.beneath(path, *follow)?;
                let full = self.full(path);
                let flags = XattrFlags::from_bits_retain(*flags);
                done(if *follow {
                    rfs::setxattr(&full, *name, &value.0, flags)
                } else {
                    rfs::lsetxattr(&full, *name, &value.0, flags)
                })
            }
            Op::Removexattr { path, name, follow } => {
                self.beneath(path, *follow)?;
                let full = self.full(path);
                done(if *follow {
                    rfs::removexattr(&full, *name)
                } else {
                    rfs::lremovexattr(&full, *name)
                })
            }
            Op::Getxattr { path, name, follow } => {
                self.beneath(path, *follow)?;
                let full = self.full(path);
                let mut buf = vec![0u8; 65536];
                let r = if *follow {
                    rfs::getxattr(&full, *name, &mut buf[..])
                } else {
                    rfs::lgetxattr(&full, *name, &mut buf[..])
                };
                match r {
                    Ok(n) => Out::Data(Digest(buf[..n].to_vec())),
                    Err(e) => e.into(),
                }
            }
            Op::Listxattr { path, follow } => {
                self.beneath(path, *follow)?;
                let full = self.full(path);
                let mut buf = vec![0u8; 65536];
                let r = if *follow {
                    rfs::listxattr(&full, &mut buf[..])
                } else {
                    rfs::llistxattr(&full, &mut buf[..])
                };
                match r {
                    Ok(n) => {
                        let mut names: Vec<(P, u8)> = buf[..n]
                            .split(|&b| b == 0)
                            .filter(|s| !s.is_empty())
                            .map(|s| (P(s.to_vec()), 0))
                            .collect();
                        names.sort();
                        Out::Names(names)
                    }
                    Err(e) => e.into(),
                }
            }
            Op::Mknod { path, node, mode } => {
                self.beneath(path, false)?;
                let (ft, dev) = match node {
                    Node::Fifo => (FileType::Fifo, 0),
                    Node::Char(ma, mi) => (FileType::CharacterDevice, rfs::makedev(*ma, *mi)),
                    Node::Block(ma, mi) => (FileType::BlockDevice, rfs::makedev(*ma, *mi)),
                    Node::Socket => (FileType::Socket, 0),
                    Node::Regular => (FileType::RegularFile, 0),
                };
                done(rfs::mknodat(base, path.os(), ft, Mode::from_raw_mode(*mode), dev))
            }
            Op::Stat { path, follow } => {
                self.beneath(path, *follow)?;
                let flags = if *follow {
                    AtFlags::empty()
                } else {
                    AtFlags::SYMLINK_NOFOLLOW
                };
                self.stat_out(rfs::statat(base, path.os(), flags))
            }
            Op::Readdir { path } => {
                self.beneath(path, true)?;
                match list(base, path) {
                    Ok(names) => Out::Names(names),
                    Err(e) => e.into(),
                }
            }
            Op::Access { path, mode } => {
                self.beneath(path, true)?;
                done(rfs::accessat(
                    base,
                    path.os(),
                    Access::from_bits_retain(*mode),
                    AtFlags::empty(),
                ))
            }
            Op::FsyncDir { path } => {
                self.beneath(path, true)?;
                match rfs::openat(
                    base,
                    path.os(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => done(rfs::fsync(&fd)),
                    Err(e) => e.into(),
                }
            }
        })
    }
}

/// The entries of a directory (without `.` and `..`), with their types, sorted.
pub fn list(base: impl AsFd, path: &P) -> rustix::io::Result<Vec<(P, u8)>> {
    let fd = rfs::openat(
        base,
        path.os(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut out = Vec::new();
    for e in rfs::Dir::new(fd)? {
        let e = e?;
        let name = e.file_name().to_bytes();
        if name != b"." && name != b".." {
            out.push((P(name.to_vec()), kind_char(e.file_type()) as u8));
        }
    }
    out.sort();
    Ok(out)
}

/// Every entry under `root` (not `root` itself), sorted, with whether it is
/// a directory; symlinks are not followed.
pub fn initial_paths(root: &Path) -> Vec<(P, bool)> {
    fn walk(root: &Path, rel: &P, out: &mut Vec<(P, bool)>) {
        let dir = if rel.0 == b"." {
            root.to_path_buf()
        } else {
            root.join(rel.os())
        };
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
            .map(|e| e.expect("a directory entry"))
            .collect();
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let p = rel.join(e.file_name().as_bytes());
            let is_dir = e.file_type().expect("a file type").is_dir();
            out.push((p.clone(), is_dir));
            if is_dir {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &P(b".".to_vec()), &mut out);
    out
}
