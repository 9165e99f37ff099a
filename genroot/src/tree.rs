//! A file tree described in memory, then written to disk in one pass.
//!
//! Entries are written in the order they were added (parents first); then the
//! times of directories are set in the reverse order, so that every directory
//! gets its time after everything inside it was written, and the result does
//! not depend on how long the writing took.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::{lchown, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustix::fs::{AtFlags, FileType, Gid, Mode, Timespec, Timestamps, Uid, XattrFlags, CWD};

use super::clock::Stamp;

/// What a regular file holds.
#[derive(Debug, Clone)]
pub(crate) enum Content {
    Bytes(Vec<u8>),
    /// `len` pseudo-random bytes from `seed`, produced while writing.
    Random {
        seed: u64,
        len: u64,
    },
    /// `head` random bytes, a hole of `hole` bytes, then `tail` random bytes.
    Sparse {
        seed: u64,
        head: u64,
        hole: u64,
        tail: u64,
    },
}

impl Content {
    pub fn len(&self) -> u64 {
        match self {
            Content::Bytes(b) => b.len() as u64,
            Content::Random { len, .. } => *len,
            Content::Sparse { head, hole, tail, .. } => head + hole + tail,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Dir,
    File(Content),
    /// Another name for an entry added earlier to the same tree.
    HardLink(String),
    Symlink(String),
    Fifo,
    CharDev(u32, u32),
    BlockDev(u32, u32),
    /// A copy of an existing tree (`cp -a`, see copy.rs): it keeps its own
    /// modes, owners, times, hard links and xattrs.
    CopyOf(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Times {
    pub atime: Stamp,
    pub mtime: Stamp,
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Relative to the tree's base, `/`-separated; "" is the base itself.
    pub path: String,
    pub kind: Kind,
    /// Permission bits, setuid, setgid and sticky included.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub times: Times,
    pub xattrs: Vec<(String, Vec<u8>)>,
    /// Added only as the parent of another entry.
    pub implicit: bool,
}

impl Entry {
    pub fn owner(&mut self, uid: u32, gid: u32) -> &mut Entry {
        self.uid = uid;
        self.gid = gid;
        self
    }

    pub fn xattr(&mut self, name: &str, value: impl Into<Vec<u8>>) -> &mut Entry {
        self.xattrs.push((name.to_string(), value.into()));
        self
    }

    pub fn mtime(&mut self, mtime: Stamp) -> &mut Entry {
        self.times = Times {
            atime: mtime.max(self.times.atime),
            mtime,
        };
        self
    }

    pub fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir | Kind::CopyOf(_))
    }
}

/// Hands out entry times: modification times in the `span` seconds before
/// `newest`, access times a little after them.
#[derive(Debug, Clone)]
pub(crate) struct Clock {
    rng: ChaCha8Rng,
    newest: Stamp,
    span: i64,
}

impl Clock {
    pub fn new(seed: u64, newest: Stamp, span: i64) -> Clock {
        Clock {
            rng: ChaCha8Rng::seed_from_u64(seed),
            newest,
            span,
        }
    }

    pub fn next(&mut self) -> Times {
        let mtime = self.newest.before(&mut self.rng, self.span);
        let atime = mtime.after(&mut self.rng, self.span / 4 + 1);
        Times { atime, mtime }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Tree {
    entries: Vec<Entry>,
    index: BTreeMap<String, usize>,
    clock: Clock,
}

impl Tree {
    /// An empty tree whose entry times come from `clock`; add the base itself
    /// with `dir("", mode)` if its mode and times should be set.
    pub fn new(clock: Clock) -> Tree {
        Tree {
            entries: Vec::new(),
            index: BTreeMap::new(),
            clock,
        }
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.index.get(path).map(|&i| &self.entries[i])
    }

    pub fn contains(&self, path: &str) -> bool {
        self.index.contains_key(path)
    }

    /// Whether the tree has `path` or anything below it.
    pub fn touches(&self, path: &str) -> bool {
        let below = format!("{path}/");
        self.contains(path)
            || self
                .index
                .range(below.clone()..)
                .next()
                .is_some_and(|(p, _)| p.starts_with(&below))
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Entry {
        self.add(path, Kind::Dir, mode)
    }

    pub fn file(&mut self, path: &str, mode: u32, content: Content) -> &mut Entry {
        self.add(path, Kind::File(content), mode)
    }

    pub fn text(&mut self, path: &str, mode: u32, text: impl Into<Vec<u8>>) -> &mut Entry {
        self.add(path, Kind::File(Content::Bytes(text.into())), mode)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Entry {
        self.add(path, Kind::Symlink(target.to_string()), 0o777)
    }

    pub fn hard_link(&mut self, path: &str, target: &str) -> &mut Entry {
        let t = self
            .get(target)
            .unwrap_or_else(|| panic!("hard link {path} to {target}, not in the tree"));
        assert!(!t.is_dir(), "hard link {path} to directory {target}");
        let (mode, uid, gid) = (t.mode, t.uid, t.gid);
        self.add(path, Kind::HardLink(target.to_string()), mode).owner(uid, gid)
    }

    /// Adds `path`, and its missing parents as plain directories (0755, root).
    /// Panics if `path` is already there: the generator decides every name.
    pub fn add(&mut self, path: &str, kind: Kind, mode: u32) -> &mut Entry {
        assert!(!self.index.contains_key(path), "{path} added twice");
        if let Some((parent, _)) = path.rsplit_once('/') {
            if !self.contains(parent) {
                self.dir(parent, 0o755).implicit = true;
            }
            // Cheap, and a tree that breaks it fails half-way through writing.
            assert!(
                self.get(parent).is_some_and(Entry::is_dir),
                "{path}: parent is not a directory"
            );
        }
        let times = self.clock.next();
        self.index.insert(path.to_string(), self.entries.len());
        let entry = Entry {
            path: path.to_string(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            times,
            xattrs: Vec::new(),
            implicit: false,
        };
        self.entries.push(entry);
        self.entries.last_mut().expect("just pushed")
    }

    /// Gives the directories added only as parents the mode and owner that
    /// `lower(path)` says a lower layer has for them, as an aufs copy-up would.
    pub fn copy_up_dirs(&mut self, lower: impl Fn(&str) -> Option<(u32, u32, u32)>) {
        for e in self.entries.iter_mut().filter(|e| e.implicit) {
            if let Some((mode, uid, gid)) = lower(&e.path) {
                (e.mode, e.uid, e.gid) = (mode, uid, gid);
            }
        }
    }

    /// Takes in `other` with every path under `prefix`.
    pub fn graft(&mut self, prefix: &str, other: Tree) {
        let join = |p: &str| {
            if p.is_empty() {
                prefix.to_string()
            } else {
                format!("{prefix}/{p}")
            }
        };
        for mut e in other.entries {
            e.path = join(&e.path);
            if let Kind::HardLink(t) = &mut e.kind {
                *t = join(t);
            }
            assert!(!self.index.contains_key(&e.path), "{} grafted twice", e.path);
            self.index.insert(e.path.clone(), self.entries.len());
            self.entries.push(e);
        }
    }

    /// Docker 0.6's `utils.TreeSize`: sizes of all non-directories, each inode
    /// once (a `CopyOf` counts what it copies).
    pub fn size(&self) -> io::Result<u64> {
        let mut size = 0;
        for e in &self.entries {
            size += match &e.kind {
                Kind::File(c) => c.len(),
                Kind::Symlink(t) => t.len() as u64,
                Kind::CopyOf(src) => tree_size(src)?,
                _ => 0,
            };
        }
        Ok(size)
    }

    /// Creates every entry under `base`; `base` itself must exist unless the
    /// tree has an entry "" for it.
    pub fn create(&self, base: &Path) -> io::Result<()> {
        for e in &self.entries {
            let path = full(base, &e.path);
            create(base, e, &path).map_err(|err| with_path(err, &path))?;
        }
        Ok(())
    }

    /// Sets the access and modification times of directories, deepest first
    /// (everything else got its times when it was created: nothing changes it
    /// later, while a directory changes with every entry made in it).
    pub fn set_times(&self, base: &Path) -> io::Result<()> {
        for e in self.entries.iter().rev().filter(|e| matches!(e.kind, Kind::Dir)) {
            let path = full(base, &e.path);
            set_times(&path, e.times).map_err(|err| with_path(err, &path))?;
        }
        Ok(())
    }

    pub fn write(&self, base: &Path) -> io::Result<()> {
        self.create(base)?;
        self.set_times(base)
    }
}

fn full(base: &Path, rel: &str) -> PathBuf {
    if rel.is_empty() {
        base.to_path_buf()
    } else {
        base.join(rel)
    }
}

pub(crate) fn with_path(err: io::Error, path: &Path) -> io::Error {
    io::Error::new(err.kind(), format!("{}: {err}", path.display()))
}

fn create(base: &Path, e: &Entry, path: &Path) -> io::Result<()> {
    match &e.kind {
        Kind::File(content) => {
            // Through the descriptor: no more path lookups, and the file is done
            // (nothing later changes its times).
            let f = write_content(path, content)?;
            // chown clears setuid and setgid, so the mode comes after it.
            rustix::fs::fchown(&f, Some(Uid::from_raw(e.uid)), Some(Gid::from_raw(e.gid)))?;
            rustix::fs::fchmod(&f, Mode::from_raw_mode(e.mode))?;
            for (name, value) in &e.xattrs {
                warn_unsupported(rustix::fs::fsetxattr(&f, name, value, XattrFlags::empty()), path, name)?;
            }
            rustix::fs::futimens(&f, &timestamps(e.times))?;
            return Ok(());
        }
        Kind::HardLink(target) => return fs::hard_link(full(base, target), path),
        Kind::CopyOf(src) => return super::copy::copy_tree(src, path),
        Kind::Dir => match fs::create_dir(path) {
            // The base may exist already (an empty ROOT).
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists && e.path.is_empty() => Ok(()),
            r => r,
        }?,
        Kind::Symlink(target) => std::os::unix::fs::symlink(target, path)?,
        Kind::Fifo => mknod(path, FileType::Fifo, 0, 0)?,
        Kind::CharDev(major, minor) => mknod(path, FileType::CharacterDevice, *major, *minor)?,
        Kind::BlockDev(major, minor) => mknod(path, FileType::BlockDevice, *major, *minor)?,
    }
    lchown(path, Some(e.uid), Some(e.gid))?;
    if !matches!(e.kind, Kind::Symlink(_)) {
        fs::set_permissions(path, fs::Permissions::from_mode(e.mode))?;
    }
    for (name, value) in &e.xattrs {
        warn_unsupported(
            rustix::fs::lsetxattr(path, name, value, XattrFlags::empty()),
            path,
            name,
        )?;
    }
    if !e.is_dir() {
        set_times(path, e.times)?;
    }
    Ok(())
}

fn write_content(path: &Path, content: &Content) -> io::Result<File> {
    let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    match content {
        Content::Bytes(b) => f.write_all(b)?,
        Content::Random { seed, len } => write_random(&mut f, *seed, *len)?,
        Content::Sparse { seed, head, hole, tail } => {
            write_random(&mut f, *seed, *head)?;
            f.seek(SeekFrom::Current(*hole as i64))?;
            write_random(&mut f, seed.wrapping_add(1), *tail)?;
        }
    }
    Ok(f)
}

fn write_random(f: &mut File, seed: u64, len: u64) -> io::Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill_bytes(&mut buf[..n]);
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

fn mknod(path: &Path, kind: FileType, major: u32, minor: u32) -> io::Result<()> {
    let dev = rustix::fs::makedev(major, minor);
    rustix::fs::mknodat(CWD, path, kind, Mode::from_raw_mode(0o600), dev)?;
    Ok(())
}

fn timestamps(t: Times) -> Timestamps {
    let ts = |s: Stamp| Timespec {
        tv_sec: s.secs,
        tv_nsec: s.nanos.into(),
    };
    Timestamps {
        last_access: ts(t.atime),
        last_modification: ts(t.mtime),
    }
}

fn set_times(path: &Path, t: Times) -> io::Result<()> {
    rustix::fs::utimensat(CWD, path, &timestamps(t), AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

static XATTR_WARNED: AtomicBool = AtomicBool::new(false);

/// A filesystem without extended attributes (or refusing the namespace) costs
/// a warning, once, and not the whole root.
fn warn_unsupported(r: rustix::io::Result<()>, path: &Path, name: &str) -> io::Result<()> {
    match r {
        Err(e) if e == rustix::io::Errno::NOTSUP || e == rustix::io::Errno::PERM => {
            if !XATTR_WARNED.swap(true, Ordering::Relaxed) {
                log::warn!(
                    "{}: cannot set xattr {name} ({e}); generating without xattrs",
                    path.display()
                );
            }
            Ok(())
        }
        r => Ok(r?),
    }
}

/// Docker 0.6's `utils.TreeSize` of an existing tree (read without touching
/// its access times).
pub(crate) fn tree_size(dir: &Path) -> io::Result<u64> {
    let mut seen = std::collections::HashSet::new();
    let mut size = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for name in super::copy::list(&d).map_err(|e| with_path(e.into(), &d))? {
            let path = d.join(name);
            let st =
                rustix::fs::statat(CWD, &path, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| with_path(e.into(), &path))?;
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                stack.push(path);
            } else if st.st_size > 0 && seen.insert((st.st_dev, st.st_ino)) {
                size += st.st_size as u64;
            }
        }
    }
    Ok(size)
}

/// A seed for an entry's content, drawn from a generator's stream.
pub(crate) fn content_seed(rng: &mut ChaCha8Rng) -> u64 {
    rng.random()
}
