//! Whole-tree snapshots: every entry under a root with everything a migration
//! must preserve (kind, permissions, owner, content, link target, device
//! number, xattrs, times, hard-link structure), so two trees compare entry by
//! entry and a difference reads as one line naming the path and the field.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs::{self, Metadata};
use std::io::{self, Read};
use std::ops::{Deref, DerefMut};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{Dir, Mode, OFlags};
use sha2::{Digest, Sha256};

/// The type of a directory entry, as `lstat` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Fifo,
    Char,
    Block,
    Socket,
}

/// One entry of a [`Tree`]. Fields that do not apply to a kind hold their
/// neutral value (`size` 0 and `content` `None` for non-files, `rdev` 0 for
/// non-devices, `nlink` 0 for directories) so they never produce noise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    /// Permission bits including setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Regular files only.
    pub size: u64,
    /// SHA-256 of a regular file's content.
    pub content: Option<[u8; 32]>,
    /// A symlink's target, byte for byte, never followed.
    pub target: Option<PathBuf>,
    /// Character and block devices only.
    pub rdev: u64,
    /// Every attribute `llistxattr` lists (user., trusted., security., ...).
    pub xattrs: BTreeMap<OsString, Vec<u8>>,
    pub mtime_ns: i128,
    /// Only with [`SnapOpts::atime`], and never for symlinks: `readlink(2)`
    /// itself updates a symlink's atime, so it cannot be observed stably.
    pub atime_ns: Option<i128>,
    /// Non-directories only (directory link counts differ between filesystems).
    pub nlink: u64,
    /// For a non-directory with `nlink > 1`: the first path (in this tree's
    /// order) of the entries sharing its inode, so hard-link groups compare by
    /// structure rather than by inode numbers. The other links may lie
    /// outside the tree, in which case the entry is its own group.
    pub link_group: Option<PathBuf>,
}

/// What [`snapshot_with`] records and where it looks.
#[derive(Clone, Debug, Default)]
pub struct SnapOpts {
    /// Record atimes, and read files and directories with `O_NOATIME` so that
    /// taking the snapshot does not itself change them.
    pub atime: bool,
    /// If the root is a symlink, snapshot what it points to instead of the
    /// symlink itself.
    pub follow_root_symlink: bool,
    /// Paths relative to the root whose entries and whole subtrees are left out.
    pub exclude: Vec<PathBuf>,
}

/// Every entry under a root, keyed by its path relative to the root (the root
/// itself is the empty path).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree(pub BTreeMap<PathBuf, Entry>);

impl Deref for Tree {
    type Target = BTreeMap<PathBuf, Entry>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Tree {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl FromIterator<(PathBuf, Entry)> for Tree {
    fn from_iter<I: IntoIterator<Item = (PathBuf, Entry)>>(iter: I) -> Self {
        Tree(iter.into_iter().collect())
    }
}

impl IntoIterator for Tree {
    type Item = (PathBuf, Entry);
    type IntoIter = std::collections::btree_map::IntoIter<PathBuf, Entry>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Tree {
    type Item = (&'a PathBuf, &'a Entry);
    type IntoIter = std::collections::btree_map::Iter<'a, PathBuf, Entry>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl Tree {
    /// The entry at `path` (relative to the root); panics naming the path and
    /// its nearest recorded neighbours if there is none.
    #[track_caller]
    pub fn at(&self, path: impl AsRef<Path>) -> &Entry {
        let path = path.as_ref();
        self.0.get(path).unwrap_or_else(|| {
            let parent = path.parent().unwrap_or(Path::new(""));
            let siblings: Vec<String> = self
                .0
                .keys()
                .filter(|p| p.parent() == Some(parent))
                .take(20)
                .map(|p| show(p))
                .collect();
            panic!(
                "no entry {} in the snapshot ({} entries; entries beside it: {:?})",
                show(path),
                self.0.len(),
                siblings
            )
        })
    }

    /// The entries at and under `prefix`, re-rooted there (`prefix` itself
    /// becomes the empty path), with hard-link groups recomputed as if the
    /// snapshot had been taken at `prefix`. Empty if `prefix` is absent.
    pub fn subtree(&self, prefix: impl AsRef<Path>) -> Tree {
        let prefix = prefix.as_ref();
        let entries = self.0.iter().filter_map(|(path, entry)| {
            let rel = path.strip_prefix(prefix).ok()?;
            Some((rel.to_path_buf(), entry.clone()))
        });
        regroup(entries.collect())
    }

    /// This tree without the entries at and under each of `prefixes`, with
    /// hard-link groups recomputed as if those subtrees had been excluded
    /// from the snapshot.
    pub fn without<I>(&self, prefixes: I) -> Tree
    where
        I: IntoIterator,
        I::Item: AsRef<Path>,
    {
        let prefixes: Vec<PathBuf> = prefixes.into_iter().map(|p| p.as_ref().to_path_buf()).collect();
        let entries = self
            .0
            .iter()
            .filter(|(path, _)| !prefixes.iter().any(|p| path.starts_with(p)))
            .map(|(path, entry)| (path.clone(), entry.clone()));
        regroup(entries.collect())
    }

    /// A copy with `f` applied to every entry, e.g. to blank a field that a
    /// comparison must ignore (`|_, e| e.mtime_ns = 0`).
    pub fn normalized(&self, mut f: impl FnMut(&Path, &mut Entry)) -> Tree {
        let mut out = self.clone();
        for (path, entry) in out.0.iter_mut() {
            f(path, entry);
        }
        out
    }
}

/// Snapshot of `root` with default options (no atimes, root symlink not followed).
#[track_caller]
pub fn snapshot(root: &Path) -> Tree {
    snapshot_with(root, &SnapOpts::default())
}

/// Snapshot of everything under `root`. Never follows symlinks (except the
/// root itself with [`SnapOpts::follow_root_symlink`]); panics naming the
/// path on any error, since a test tree that cannot be read is a failure.
#[track_caller]
pub fn snapshot_with(root: &Path, opts: &SnapOpts) -> Tree {
    let root = if opts.follow_root_symlink {
        fs::canonicalize(root).unwrap_or_else(|e| panic!("snapshot: cannot resolve root {}: {e}", root.display()))
    } else {
        root.to_path_buf()
    };
    let meta =
        fs::symlink_metadata(&root).unwrap_or_else(|e| panic!("snapshot: cannot lstat root {}: {e}", root.display()));
    let mut walk = Walk {
        root: &root,
        opts,
        found: BTreeMap::new(),
    };
    walk.visit(PathBuf::new(), meta);
    link_groups(walk.found)
}

/// Walks a tree, recording each entry with its `(st_dev, st_ino)`.
struct Walk<'a> {
    root: &'a Path,
    opts: &'a SnapOpts,
    found: BTreeMap<PathBuf, (Entry, (u64, u64))>,
}

impl Walk<'_> {
    fn visit(&mut self, rel: PathBuf, meta: Metadata) {
        if self.opts.exclude.iter().any(|x| rel.starts_with(x)) {
            return;
        }
        // `root.join("")` would append a slash, which makes the kernel follow
        // a symlink root; use the root path itself instead.
        let full = if rel.as_os_str().is_empty() {
            self.root.to_path_buf()
        } else {
            self.root.join(&rel)
        };
        let entry = read_entry(&full, &meta, self.opts.atime);
        let is_dir = entry.kind == Kind::Dir;
        self.found.insert(rel.clone(), (entry, (meta.dev(), meta.ino())));
        if !is_dir {
            return;
        }
        for name in list_dir(&full, self.opts.atime) {
            let child = full.join(&name);
            let meta = fs::symlink_metadata(&child)
                .unwrap_or_else(|e| panic!("snapshot: cannot lstat {}: {e}", child.display()));
            self.visit(rel.join(&name), meta);
        }
    }
}

fn read_entry(full: &Path, meta: &Metadata, atime: bool) -> Entry {
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_fifo() {
        Kind::Fifo
    } else if ft.is_char_device() {
        Kind::Char
    } else if ft.is_block_device() {
        Kind::Block
    } else if ft.is_socket() {
        Kind::Socket
    } else {
        panic!(
            "snapshot: {} has an unknown file type (mode {:o})",
            full.display(),
            meta.mode()
        )
    };
    let is_file = kind == Kind::File;
    let target = (kind == Kind::Symlink)
        .then(|| fs::read_link(full).unwrap_or_else(|e| panic!("snapshot: cannot readlink {}: {e}", full.display())));
    Entry {
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        size: if is_file { meta.size() } else { 0 },
        content: is_file.then(|| hash_file(full, atime)),
        target,
        rdev: if matches!(kind, Kind::Char | Kind::Block) {
            meta.rdev()
        } else {
            0
        },
        xattrs: read_xattrs(full),
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        atime_ns: (atime && kind != Kind::Symlink)
            .then(|| i128::from(meta.atime()) * 1_000_000_000 + i128::from(meta.atime_nsec())),
        nlink: if kind == Kind::Dir { 0 } else { meta.nlink() },
        link_group: None,
    }
}

fn hash_file(path: &Path, noatime: bool) -> [u8; 32] {
    let open = |extra: i32| {
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | extra)
            .open(path)
    };
    let file = if noatime {
        // O_NOATIME needs ownership or CAP_FOWNER; without them, read anyway.
        match open(libc::O_NOATIME) {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(0),
            other => other,
        }
    } else {
        open(0)
    };
    let mut file = file.unwrap_or_else(|e| panic!("snapshot: cannot open {}: {e}", path.display()));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("snapshot: cannot read {}: {e}", path.display()),
        }
    }
    hasher.finalize().into()
}

/// The names in a directory (without `.` and `..`), read through a descriptor
/// so that `O_NOATIME` can keep the directory's atime as it was.
fn list_dir(path: &Path, noatime: bool) -> Vec<OsString> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = if noatime {
        match rustix::fs::open(path, flags | OFlags::NOATIME, Mode::empty()) {
            Err(rustix::io::Errno::PERM) => rustix::fs::open(path, flags, Mode::empty()),
            other => other,
        }
    } else {
        rustix::fs::open(path, flags, Mode::empty())
    };
    let fd = fd.unwrap_or_else(|e| panic!("snapshot: cannot open directory {}: {e}", path.display()));
    let dir = Dir::new(fd).unwrap_or_else(|e| panic!("snapshot: cannot read directory {}: {e}", path.display()));
    let mut names = Vec::new();
    for dirent in dir {
        let dirent = dirent.unwrap_or_else(|e| panic!("snapshot: cannot read directory {}: {e}", path.display()));
        let name = dirent.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    names
}

fn read_xattrs(path: &Path) -> BTreeMap<OsString, Vec<u8>> {
    let unsupported = |e: &io::Error| matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::ENOSYS));
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if unsupported(&e) => return BTreeMap::new(),
        Err(e) => panic!("snapshot: cannot list xattrs of {}: {e}", path.display()),
    };
    let mut xattrs = BTreeMap::new();
    for name in names {
        match xattr::get(path, &name) {
            Ok(Some(value)) => {
                xattrs.insert(name, value);
            }
            // Removed between list and get: it is not there any more.
            Ok(None) => {}
            Err(e) => panic!("snapshot: cannot read xattr {name:?} of {}: {e}", path.display()),
        }
    }
    xattrs
}

/// Fills in `link_group` from the recorded `(st_dev, st_ino)` pairs.
fn link_groups(found: BTreeMap<PathBuf, (Entry, (u64, u64))>) -> Tree {
    let mut first: HashMap<(u64, u64), PathBuf> = HashMap::new();
    found
        .into_iter()
        .map(|(path, (mut entry, key))| {
            if entry.kind != Kind::Dir && entry.nlink > 1 {
                // BTreeMap order: the first path seen is the smallest.
                entry.link_group = Some(first.entry(key).or_insert_with(|| path.clone()).clone());
            }
            (path, entry)
        })
        .collect()
}

/// Recomputes `link_group` after entries were dropped or renamed: entries
/// that shared an old group share a new one, named by its first member.
fn regroup(entries: BTreeMap<PathBuf, Entry>) -> Tree {
    let mut first: HashMap<PathBuf, PathBuf> = HashMap::new();
    entries
        .into_iter()
        .map(|(path, mut entry)| {
            if let Some(old) = entry.link_group.take() {
                entry.link_group = Some(first.entry(old).or_insert_with(|| path.clone()).clone());
            }
            (path, entry)
        })
        .collect()
}

/// One line per difference between `a` and `b`, in path order: an entry
/// missing on one side, or the fields that differ with both values.
pub fn diff(a: &Tree, b: &Tree) -> Vec<String> {
    let mut lines = Vec::new();
    let mut paths: Vec<&PathBuf> = a.keys().chain(b.keys()).collect();
    paths.sort();
    paths.dedup();
    for path in paths {
        match (a.get(path), b.get(path)) {
            (Some(x), None) => lines.push(format!("{}: only in a ({:?})", show(path), x.kind)),
            (None, Some(y)) => lines.push(format!("{}: only in b ({:?})", show(path), y.kind)),
            (Some(x), Some(y)) if x != y => lines.push(format!("{}: {}", show(path), field_diffs(x, y).join("; "))),
            _ => {}
        }
    }
    lines
}

/// Panics if `a` and `b` differ, listing the first 50 differences and how
/// many there are; `what` says what was compared.
#[track_caller]
pub fn assert_same(a: &Tree, b: &Tree, what: &str) {
    const SHOWN: usize = 50;
    let lines = diff(a, b);
    if lines.is_empty() {
        return;
    }
    let mut msg = format!(
        "{what}: trees differ ({} differences; a has {} entries, b has {}):\n",
        lines.len(),
        a.len(),
        b.len()
    );
    for line in lines.iter().take(SHOWN) {
        let _ = writeln!(msg, "  {line}");
    }
    if lines.len() > SHOWN {
        let _ = writeln!(msg, "  ... and {} more", lines.len() - SHOWN);
    }
    panic!("{msg}");
}

fn field_diffs(x: &Entry, y: &Entry) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = |name: &str, differs: bool, a: String, b: String| {
        if differs {
            out.push(format!("{name} {a} != {b}"));
        }
    };
    field(
        "kind",
        x.kind != y.kind,
        format!("{:?}", x.kind),
        format!("{:?}", y.kind),
    );
    field(
        "mode",
        x.mode != y.mode,
        format!("{:04o}", x.mode),
        format!("{:04o}", y.mode),
    );
    field("uid", x.uid != y.uid, x.uid.to_string(), y.uid.to_string());
    field("gid", x.gid != y.gid, x.gid.to_string(), y.gid.to_string());
    field("size", x.size != y.size, x.size.to_string(), y.size.to_string());
    field(
        "content",
        x.content != y.content,
        show_hash(&x.content),
        show_hash(&y.content),
    );
    field(
        "target",
        x.target != y.target,
        show_opt_path(&x.target),
        show_opt_path(&y.target),
    );
    field("rdev", x.rdev != y.rdev, show_dev(x.rdev), show_dev(y.rdev));
    field(
        "mtime_ns",
        x.mtime_ns != y.mtime_ns,
        x.mtime_ns.to_string(),
        y.mtime_ns.to_string(),
    );
    field(
        "atime_ns",
        x.atime_ns != y.atime_ns,
        format!("{:?}", x.atime_ns),
        format!("{:?}", y.atime_ns),
    );
    field("nlink", x.nlink != y.nlink, x.nlink.to_string(), y.nlink.to_string());
    field(
        "link_group",
        x.link_group != y.link_group,
        show_opt_path(&x.link_group),
        show_opt_path(&y.link_group),
    );
    let mut names: Vec<&OsString> = x.xattrs.keys().chain(y.xattrs.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let (a, b) = (x.xattrs.get(name), y.xattrs.get(name));
        let show_value = |v: Option<&Vec<u8>>| match v {
            Some(v) => show_bytes(v),
            None => "(absent)".to_string(),
        };
        field(&format!("xattr {name:?}"), a != b, show_value(a), show_value(b));
    }
    out
}

/// A path for humans: `.` for the root, the text itself when it is UTF-8,
/// escaped bytes otherwise.
pub fn show(path: &Path) -> String {
    if path.as_os_str().is_empty() {
        ".".to_string()
    } else {
        match path.to_str() {
            Some(s) => s.to_string(),
            None => format!("{:?}", path.as_os_str()),
        }
    }
}

fn show_opt_path(p: &Option<PathBuf>) -> String {
    match p {
        Some(p) => format!("{:?}", p.as_os_str()),
        None => "(none)".to_string(),
    }
}

fn show_hash(h: &Option<[u8; 32]>) -> String {
    match h {
        Some(h) => h[..8].iter().map(|b| format!("{b:02x}")).collect::<String>() + "..",
        None => "(none)".to_string(),
    }
}

fn show_dev(rdev: u64) -> String {
    format!("{}:{}", libc::major(rdev), libc::minor(rdev))
}

fn show_bytes(v: &[u8]) -> String {
    const MAX: usize = 64;
    let shown: String = v
        .iter()
        .take(MAX)
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect();
    if v.len() > MAX {
        format!("\"{shown}\"... ({} bytes)", v.len())
    } else {
        format!("\"{shown}\"")
    }
}
