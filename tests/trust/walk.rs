//! Tools of tests/trust_ro.rs: a bounded walker that reads everything a view
//! shows without ever following a symlink, a canary outside ROOT that the
//! walker recognizes if the view ever shows it, and inode stamps (atime,
//! mtime, ctime, size, links) taken without reading anything, so that a
//! read-only guarantee can be checked down to access times.

// Each test uses part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, Stat, CWD};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------
// Descriptor-relative helpers (never following a symlink)
// ---------------------------------------------------------------------------

fn lstat_at(dir: impl AsFd, name: &OsStr) -> io::Result<Stat> {
    Ok(rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?)
}

/// Opens a directory for listing; `noatime` asks for `O_NOATIME` (root may
/// use it on anything), so that stamping a tree does not change it.
fn open_dir_at(dir: impl AsFd, name: &OsStr, noatime: bool) -> io::Result<OwnedFd> {
    let mut flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    if noatime {
        flags |= OFlags::NOATIME;
    }
    Ok(rustix::fs::openat(dir, name, flags, Mode::empty())?)
}

fn names_of(fd: OwnedFd) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for e in Dir::new(fd)? {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    Ok(names)
}

fn ns(sec: i64, nsec: i64) -> i128 {
    i128::from(sec) * 1_000_000_000 + i128::from(nsec)
}

// ---------------------------------------------------------------------------
// Stamps: what every inode of a tree looks like, nothing read
// ---------------------------------------------------------------------------

/// An inode as `lstat` shows it, ctime included: any write, chmod, chown,
/// xattr change or link count change moves the ctime, and any read moves
/// the atime where the mount lets it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub ino: u64,
    pub mode: u32,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub atime_ns: i128,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

/// Stamps of every entry under a root (the root itself is the empty path).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stamps(pub BTreeMap<PathBuf, Stamp>);

fn stamp_of(st: &Stat) -> Stamp {
    Stamp {
        ino: st.st_ino,
        mode: st.st_mode,
        nlink: st.st_nlink,
        uid: st.st_uid,
        gid: st.st_gid,
        size: st.st_size as u64,
        atime_ns: ns(st.st_atime, st.st_atime_nsec as i64),
        mtime_ns: ns(st.st_mtime, st.st_mtime_nsec as i64),
        ctime_ns: ns(st.st_ctime, st.st_ctime_nsec as i64),
    }
}

/// Stamps every entry under `root` with `lstat` only: directories are
/// listed with `O_NOATIME`, files and symlinks are never opened or read.
#[track_caller]
pub fn stamps(root: &Path) -> Stamps {
    let mut out = BTreeMap::new();
    let st = rustix::fs::lstat(root).unwrap_or_else(|e| panic!("lstat {}: {e}", root.display()));
    out.insert(PathBuf::new(), stamp_of(&st));
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        let fd = open_dir_at(CWD, root.as_os_str(), true).unwrap_or_else(|e| panic!("open {}: {e}", root.display()));
        stamp_dir(root, &fd, PathBuf::new(), &mut out);
    }
    Stamps(out)
}

fn stamp_dir(root: &Path, dir: &OwnedFd, rel: PathBuf, out: &mut BTreeMap<PathBuf, Stamp>) {
    let listing = open_dir_at(dir, OsStr::new("."), true)
        .and_then(names_of)
        .unwrap_or_else(|e| panic!("listing {}: {e}", root.join(&rel).display()));
    for name in listing {
        let child = rel.join(&name);
        let st = lstat_at(dir, &name).unwrap_or_else(|e| panic!("lstat {}: {e}", root.join(&child).display()));
        out.insert(child.clone(), stamp_of(&st));
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            let sub =
                open_dir_at(dir, &name, true).unwrap_or_else(|e| panic!("open {}: {e}", root.join(&child).display()));
            stamp_dir(root, &sub, child, out);
        }
    }
}

/// One line per difference between two stampings of the same tree.
pub fn stamp_diff(a: &Stamps, b: &Stamps) -> Vec<String> {
    let mut lines = Vec::new();
    let mut paths: Vec<&PathBuf> = a.0.keys().chain(b.0.keys()).collect();
    paths.sort();
    paths.dedup();
    for p in paths {
        match (a.0.get(p), b.0.get(p)) {
            (Some(_), None) => lines.push(format!("{}: gone", shown(p))),
            (None, Some(_)) => lines.push(format!("{}: appeared", shown(p))),
            (Some(x), Some(y)) if x != y => {
                let mut what = Vec::new();
                let mut f = |name: &str, d: bool, a: String, b: String| {
                    if d {
                        what.push(format!("{name} {a} -> {b}"));
                    }
                };
                f("ino", x.ino != y.ino, x.ino.to_string(), y.ino.to_string());
                f(
                    "mode",
                    x.mode != y.mode,
                    format!("{:o}", x.mode),
                    format!("{:o}", y.mode),
                );
                f("nlink", x.nlink != y.nlink, x.nlink.to_string(), y.nlink.to_string());
                f("uid", x.uid != y.uid, x.uid.to_string(), y.uid.to_string());
                f("gid", x.gid != y.gid, x.gid.to_string(), y.gid.to_string());
                f("size", x.size != y.size, x.size.to_string(), y.size.to_string());
                f(
                    "atime_ns",
                    x.atime_ns != y.atime_ns,
                    x.atime_ns.to_string(),
                    y.atime_ns.to_string(),
                );
                f(
                    "mtime_ns",
                    x.mtime_ns != y.mtime_ns,
                    x.mtime_ns.to_string(),
                    y.mtime_ns.to_string(),
                );
                f(
                    "ctime_ns",
                    x.ctime_ns != y.ctime_ns,
                    x.ctime_ns.to_string(),
                    y.ctime_ns.to_string(),
                );
                lines.push(format!("{}: {}", shown(p), what.join("; ")));
            }
            _ => {}
        }
    }
    lines
}

/// Panics listing the differences (the first 40) if the stampings differ.
#[track_caller]
pub fn assert_same_stamps(before: &Stamps, after: &Stamps, what: &str) {
    let lines = stamp_diff(before, after);
    if lines.is_empty() {
        return;
    }
    let mut msg = format!(
        "{what}: {} of {} inodes changed (before -> after):\n",
        lines.len(),
        before.0.len()
    );
    for l in lines.iter().take(40) {
        let _ = writeln!(msg, "  {l}");
    }
    if lines.len() > 40 {
        let _ = writeln!(msg, "  ... and {} more", lines.len() - 40);
    }
    panic!("{msg}");
}

/// The access time given by [`set_old_atimes`]: decades old, so that a
/// `relatime` mount updates it on any read that does not avoid it.
pub const OLD_ATIME: (i64, i64) = (1_000_000, 123_456_789);

/// Gives every entry under `root` (symlinks included, never followed) the
/// access time [`OLD_ATIME`], keeping mtimes; returns how many.
#[track_caller]
pub fn set_old_atimes(root: &Path) -> usize {
    let mut n = 0;
    for rel in stamps(root).0.into_keys() {
        let p = if rel.as_os_str().is_empty() {
            root.to_path_buf()
        } else {
            root.join(&rel)
        };
        set_atime(&p, OLD_ATIME);
        n += 1;
    }
    n
}

/// Gives every symlink under `root` (never followed) the access time
/// [`OLD_ATIME`] again, e.g. after something read their targets.
#[track_caller]
pub fn set_old_atimes_of_symlinks(root: &Path) -> usize {
    let mut n = 0;
    for (rel, st) in stamps(root).0 {
        if FileType::from_raw_mode(st.mode) == FileType::Symlink && !rel.as_os_str().is_empty() {
            set_atime(&root.join(&rel), OLD_ATIME);
            n += 1;
        }
    }
    n
}

/// Sets the atime of `path` itself (a symlink's own), mtime untouched.
#[track_caller]
pub fn set_atime(path: &Path, (sec, nsec): (i64, i64)) {
    let times = [
        libc::timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        },
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
    ];
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("no NUL in a path");
    // SAFETY: a valid NUL-terminated path and an array of two timespecs,
    // both alive for the call.
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    assert_eq!(r, 0, "utimensat {}: {}", path.display(), io::Error::last_os_error());
}

// ---------------------------------------------------------------------------
// The canary: a tree outside ROOT the view must never show
// ---------------------------------------------------------------------------

/// A directory outside ROOT, shaped like what hostile symlinks in ROOT point
/// at (an image directory, a layer, a container, an aufs tree, loose files).
/// Every regular file in it has the marker in its name and content. The
/// walker flags any entry of the view that has a canary file's name or
/// content, or (on ROOT's device, where the view keeps real inode numbers)
/// a canary inode's number.
pub struct Canary {
    pub dir: PathBuf,
    pub marker: String,
    hashes: HashSet<[u8; 32]>,
    inodes: HashSet<u64>,
    /// The canary and ROOT share a device, so inode numbers identify.
    same_dev: bool,
}

impl Canary {
    /// Creates the canary tree at `dir` (which must not exist). `image_id`
    /// is what its image directory's `json` claims (the id a symlink in
    /// ROOT's `graph/` gives it).
    #[track_caller]
    pub fn create(dir: &Path, image_id: &str) -> Canary {
        // Unique per canary: no legitimate name or content holds it.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let marker = format!("CANARY{:08x}{nanos:08x}", std::process::id());
        let file = |rel: &str, n: usize| {
            let p = dir.join(rel).join(format!("{marker}-{n}"));
            std::fs::create_dir_all(p.parent().expect("a parent"))
                .unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
            std::fs::write(&p, format!("{marker} file {n}: outside ROOT, never to be shown\n"))
                .unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        };
        std::fs::create_dir(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        // Target of a symlink at graph/<id>: an image directory.
        file("image/layer", 1);
        file("image/layer/etc", 2);
        std::fs::write(
            dir.join("image/json"),
            format!(r#"{{"id":"{image_id}","comment":"{marker}"}}"#),
        )
        .expect("the canary image's json");
        // Of graph/<id>/layer, containers/<id>/rw, aufs/diff/<id>, aufs/mnt/<id>.
        file("layer", 3);
        file("layer/deeper", 4);
        file("rw", 5);
        file("diff", 6);
        file("mnt", 7);
        // Of a symlink at containers/<id>.
        file("container/rw", 8);
        // Of a symlink at aufs (and its diff/layers/mnt).
        file("aufs/diff/x", 9);
        file("aufs/layers", 10);
        file("aufs/mnt/x", 11);
        // Loose files: json, config.json, layers/ files, repositories.
        file("", 12);
        file("", 13);
        let mut canary = Canary {
            dir: dir.to_path_buf(),
            marker,
            hashes: HashSet::new(),
            inodes: HashSet::new(),
            same_dev: false,
        };
        canary.fingerprint();
        canary
    }

    fn fingerprint(&mut self) {
        let mut stack = vec![self.dir.clone()];
        while let Some(d) = stack.pop() {
            self.inodes.insert(std::fs::symlink_metadata(&d).expect("lstat").ino());
            for e in std::fs::read_dir(&d).expect("listing the canary") {
                let p = e.expect("an entry").path();
                let m = std::fs::symlink_metadata(&p).expect("lstat");
                self.inodes.insert(m.ino());
                if m.is_dir() {
                    stack.push(p);
                } else if m.is_file() {
                    self.hashes
                        .insert(Sha256::digest(std::fs::read(&p).expect("read")).into());
                }
            }
        }
    }

    /// Says which device ROOT is on: inode numbers are compared only when
    /// the canary shares it.
    pub fn on_device_of(mut self, root: &Path) -> Canary {
        let dev = |p: &Path| std::fs::symlink_metadata(p).expect("lstat").dev();
        self.same_dev = dev(&self.dir) == dev(root);
        self
    }

    /// A canary file: `n` as given to `create`.
    pub fn file(&self, rel: &str, n: usize) -> PathBuf {
        self.dir.join(rel).join(format!("{}-{n}", self.marker))
    }

    /// Arms an inotify watch on every entry of the canary (not following
    /// symlinks): any open, read, listing, attribute change or write of a
    /// canary inode, by any path and by any process, from now on is
    /// reported by [`Tripwire::sprung`]. (Atimes alone would miss what
    /// happens on a `noatime` path, and a listing.)
    #[track_caller]
    pub fn arm(&self) -> Tripwire {
        use rustix::fs::inotify;
        let fd = inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC)
            .unwrap_or_else(|e| panic!("inotify_init1: {e}"));
        let mut watched = BTreeMap::new();
        // Enumerated without moving an atime (directories read O_NOATIME).
        for rel in stamps(&self.dir).0.into_keys() {
            let p = if rel.as_os_str().is_empty() {
                self.dir.clone()
            } else {
                self.dir.join(rel)
            };
            let wd = inotify::add_watch(
                &fd,
                &p,
                inotify::WatchFlags::ALL_EVENTS | inotify::WatchFlags::DONT_FOLLOW,
            )
            .unwrap_or_else(|e| panic!("inotify_add_watch {}: {e}", p.display()));
            watched.insert(wd, p);
        }
        // Arming opened the canary's directories: forget those events.
        let mut wire = Tripwire { fd, watched };
        wire.sprung();
        wire
    }

    fn name_leaks(&self, name: &OsStr) -> bool {
        let m = self.marker.as_bytes();
        name.as_bytes().windows(m.len()).any(|w| w == m)
    }
}

/// Inotify watches on every inode of a [`Canary`].
pub struct Tripwire {
    fd: OwnedFd,
    watched: BTreeMap<i32, PathBuf>,
}

impl Tripwire {
    /// The events since arming (or the last call), one line each.
    pub fn sprung(&mut self) -> Vec<String> {
        use rustix::fs::inotify;
        let mut out = Vec::new();
        let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 1 << 16];
        let mut reader = inotify::Reader::new(&self.fd, &mut buf);
        loop {
            match reader.next() {
                Ok(ev) => {
                    let on = self
                        .watched
                        .get(&ev.wd())
                        .map_or_else(|| "?".into(), |p| p.display().to_string());
                    let name = ev
                        .file_name()
                        .map(|n| format!("/{}", n.to_string_lossy()))
                        .unwrap_or_default();
                    // IN_IGNORED comes when a watch is removed.
                    if !ev.events().contains(inotify::ReadFlags::IGNORED) {
                        out.push(format!("{on}{name}: {:?}", ev.events()));
                    }
                }
                Err(rustix::io::Errno::AGAIN) => break,
                Err(e) => {
                    out.push(format!("reading inotify events: {e}"));
                    break;
                }
            }
        }
        out
    }

    /// Fails listing the events if anything touched the canary.
    #[track_caller]
    pub fn assert_untouched(&mut self, what: &str) {
        let events = self.sprung();
        assert!(
            events.is_empty(),
            "{what}: the canary outside ROOT was reached ({} events):\n{}",
            events.len(),
            events.iter().take(30).cloned().collect::<Vec<_>>().join("\n")
        );
    }
}

// ---------------------------------------------------------------------------
// The bounded walker
// ---------------------------------------------------------------------------

/// How far a walk may go before it is a failure in itself (a view that is
/// unbounded, loops, or hangs).
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_entries: usize,
    pub max_depth: usize,
    pub within: Duration,
    /// In a directory, the entries past this many are all listed, looked at
    /// and checked against the canary, but only one in `sample_every` is read
    /// (content, target, xattrs).
    pub sample_above: usize,
    pub sample_every: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_entries: 1_000_000,
            max_depth: 128,
            // Below the mount guard's bound (60 s): a walk that hangs or runs
            // away fails here, naming where it was.
            within: Duration::from_secs(45),
            sample_above: usize::MAX,
            sample_every: 1,
        }
    }
}

/// What a walk saw.
#[derive(Debug, Default)]
pub struct Walked {
    pub entries: usize,
    pub dirs: usize,
    pub files: usize,
    pub symlinks: usize,
    pub special: usize,
    /// Bytes read from files (by `read`; mapped reads are checked against them).
    pub bytes: u64,
    pub mapped: usize,
    pub xattrs: usize,
    /// Files whose content was read (all of them unless sampled).
    pub files_read: usize,
    /// Entries per area: `aufs/diff`, `aufs/layers`, `aufs/mnt`,
    /// `quarantine`, `graph`, `containers`, `other`.
    pub areas: BTreeMap<&'static str, usize>,
    /// The directories walked directly under `aufs/mnt` (merged views).
    pub merged_roots: usize,
    /// The entries that came from the canary, and why they are suspected.
    pub leaks: Vec<String>,
    /// Calls that failed (they should not, on a read-only view).
    pub errors: Vec<String>,
    pub elapsed: Duration,
}

impl Walked {
    /// Fails if the walk met the canary or had errors.
    #[track_caller]
    pub fn assert_clean(&self, what: &str) {
        assert!(
            self.leaks.is_empty(),
            "{what}: the view showed what is outside ROOT ({} entries):\n{}",
            self.leaks.len(),
            self.leaks.iter().take(30).cloned().collect::<Vec<_>>().join("\n")
        );
        assert!(
            self.errors.is_empty(),
            "{what}: {} calls failed through the view:\n{}",
            self.errors.len(),
            self.errors.iter().take(30).cloned().collect::<Vec<_>>().join("\n")
        );
    }

    pub fn summary(&self) -> String {
        format!(
            "{} entries ({} dirs, {} files ({} read), {} symlinks, {} other; {} merged roots), {} bytes read, {} mapped, {} xattrs, in {:.2?}; by area {:?}",
            self.entries,
            self.dirs,
            self.files,
            self.files_read,
            self.symlinks,
            self.special,
            self.merged_roots,
            self.bytes,
            self.mapped,
            self.xattrs,
            self.elapsed,
            self.areas
        )
    }
}

fn area_of(rel: &Path) -> &'static str {
    let c: Vec<&OsStr> = rel.iter().take(3).collect();
    match c.as_slice() {
        [a, d, ..] if *a == "aufs" && *d == "diff" => "aufs/diff",
        [a, d, ..] if *a == "aufs" && *d == "layers" => "aufs/layers",
        [a, d, ..] if *a == "aufs" && *d == "mnt" => "aufs/mnt",
        [o, q, ..] if *o == ".graph2aufs" && *q == "quarantine" => "quarantine",
        [g, ..] if *g == "graph" => "graph",
        [g, ..] if *g == "containers" => "containers",
        _ => "other",
    }
}

/// Largest file also read through `mmap`.
const MAP_MAX: u64 = 4 << 20;

struct Walker<'a> {
    top: &'a Path,
    limits: &'a Limits,
    canary: &'a Canary,
    skip: &'a dyn Fn(&Path) -> bool,
    started: Instant,
    out: Walked,
    /// (st_dev, st_ino) of the directories from the top down to the current one.
    ancestors: Vec<(u64, u64)>,
}

/// Walks everything under `top` (a view's mount point) as a curious reader
/// would, never following a symlink: every directory listed, every regular
/// file read to its end (and, up to 4 MiB, read again through `mmap`), every
/// symlink's target read, every extended attribute listed and read. Other
/// kinds (devices, fifos, sockets) are only looked at. Directories for which
/// `skip(relative path)` holds are looked at but not entered.
///
/// Panics if the walk exceeds `limits` (an unbounded or looping view is a
/// failure); collects leaks of the canary and failed calls in the result.
#[track_caller]
pub fn walk_view(top: &Path, limits: &Limits, canary: &Canary, skip: &dyn Fn(&Path) -> bool) -> Walked {
    let mut w = Walker {
        top,
        limits,
        canary,
        skip,
        started: Instant::now(),
        out: Walked::default(),
        ancestors: Vec::new(),
    };
    let st = rustix::fs::lstat(top).unwrap_or_else(|e| panic!("lstat {}: {e}", top.display()));
    w.xattrs(Path::new(""));
    w.ancestors.push((st.st_dev, st.st_ino));
    let fd = open_dir_at(CWD, top.as_os_str(), false).unwrap_or_else(|e| panic!("open {}: {e}", top.display()));
    w.dir(&fd, PathBuf::new());
    w.out.elapsed = w.started.elapsed();
    w.out
}

impl Walker<'_> {
    fn fail(&mut self, rel: &Path, what: &str, e: impl std::fmt::Display) {
        if self.out.errors.len() < 1000 {
            self.out.errors.push(format!("{what} {}: {e}", shown(rel)));
        }
    }

    fn check_bounds(&self, rel: &Path) {
        let elapsed = self.started.elapsed();
        if elapsed > self.limits.within {
            panic!(
                "the walk of {} exceeded {:?} (at {}, {} entries so far)",
                self.top.display(),
                self.limits.within,
                shown(rel),
                self.out.entries
            );
        }
        if self.out.entries > self.limits.max_entries {
            panic!(
                "the walk of {} exceeded {} entries (at {}): is the view unbounded?",
                self.top.display(),
                self.limits.max_entries,
                shown(rel)
            );
        }
    }

    fn dir(&mut self, fd: &OwnedFd, rel: PathBuf) {
        let depth = rel.iter().count();
        if depth > self.limits.max_depth {
            panic!(
                "the walk of {} went deeper than {} directories (at {})",
                self.top.display(),
                self.limits.max_depth,
                shown(&rel)
            );
        }
        // Entries are handled as they are read (as `find` does), so that the
        // kernel sees lookups between reads and asks for attributes with the
        // names (readdirplus).
        let listing = match open_dir_at(fd, OsStr::new("."), false).and_then(|d| Ok(Dir::new(d)?)) {
            Ok(d) => d,
            Err(e) => return self.fail(&rel, "listing", e),
        };
        let mut seen: HashSet<OsString> = HashSet::new();
        let mut i = 0usize;
        for dirent in listing {
            let name = match dirent {
                Ok(e) => OsStr::from_bytes(e.file_name().to_bytes()).to_os_string(),
                Err(e) => {
                    self.fail(&rel, "listing", e);
                    break;
                }
            };
            if name == "." || name == ".." {
                continue;
            }
            if !seen.insert(name.clone()) {
                self.fail(&rel.join(&name), "listing", "the same name is listed twice");
            }
            // Past `sample_above` entries, one in `sample_every` is read.
            let read = i < self.limits.sample_above || i % self.limits.sample_every.max(1) == 0;
            i += 1;
            let child = rel.join(&name);
            self.check_bounds(&child);
            self.out.entries += 1;
            *self.out.areas.entry(area_of(&child)).or_default() += 1;
            if self.canary.name_leaks(&name) {
                self.out.leaks.push(format!("{}: a canary file's name", shown(&child)));
            }
            let st = match lstat_at(fd, &name) {
                Ok(st) => st,
                Err(e) => {
                    self.fail(&child, "lstat", e);
                    continue;
                }
            };
            if self.canary.same_dev && self.canary.inodes.contains(&st.st_ino) {
                self.out.leaks.push(format!(
                    "{}: the inode number {} of a canary entry",
                    shown(&child),
                    st.st_ino
                ));
            }
            if read {
                self.xattrs(&child);
            }
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => {
                    self.out.dirs += 1;
                    let id = (st.st_dev, st.st_ino);
                    if self.ancestors.contains(&id) {
                        self.fail(&child, "walking", "a directory that contains itself (a loop)");
                        continue;
                    }
                    if child.parent() == Some(Path::new("aufs/mnt")) {
                        self.out.merged_roots += 1;
                    }
                    if (self.skip)(&child) {
                        continue;
                    }
                    let sub = match rustix::fs::openat(
                        fd,
                        &name,
                        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    ) {
                        Ok(sub) => sub,
                        Err(e) => {
                            self.fail(&child, "open", e);
                            continue;
                        }
                    };
                    self.ancestors.push(id);
                    self.dir(&sub, child);
                    self.ancestors.pop();
                }
                FileType::RegularFile => {
                    self.out.files += 1;
                    if read {
                        self.file(fd, &name, &child, st.st_size as u64);
                    }
                }
                FileType::Symlink if !read => self.out.symlinks += 1,
                FileType::Symlink => {
                    self.out.symlinks += 1;
                    match rustix::fs::readlinkat(fd, &name, Vec::new()) {
                        Ok(t) if t.as_bytes().len() as u64 == st.st_size as u64 => {}
                        Ok(t) => self.fail(
                            &child,
                            "readlink",
                            format!("{} bytes, lstat says {}", t.as_bytes().len(), st.st_size),
                        ),
                        Err(e) => self.fail(&child, "readlink", e),
                    }
                }
                _ => self.out.special += 1,
            }
        }
    }

    fn file(&mut self, dir: &OwnedFd, name: &OsStr, rel: &Path, size: u64) {
        // An ordinary reader's open: no O_NOATIME (the view must not need it).
        let fd = match rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(e) => return self.fail(rel, "open", e),
        };
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 17];
        let mut read = 0u64;
        loop {
            match rustix::io::read(&fd, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    read += n as u64;
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return self.fail(rel, "read", e),
            }
        }
        self.out.bytes += read;
        self.out.files_read += 1;
        if read != size {
            self.fail(rel, "read", format!("{read} bytes, lstat says {size}"));
        }
        let hash: [u8; 32] = hasher.finalize().into();
        if self.canary.hashes.contains(&hash) {
            self.out.leaks.push(format!("{}: a canary file's content", shown(rel)));
        }
        if size > 0 && size <= MAP_MAX {
            match mapped_hash(&fd, size as usize) {
                Ok(h) if h == hash => self.out.mapped += 1,
                Ok(_) => self.fail(rel, "mmap", "other bytes than read(2) gave"),
                Err(e) => self.fail(rel, "mmap", e),
            }
        }
    }

    fn xattrs(&mut self, rel: &Path) {
        let path = if rel.as_os_str().is_empty() {
            self.top.to_path_buf()
        } else {
            self.top.join(rel)
        };
        let names = match xattr::list(&path) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return,
            Err(e) => return self.fail(rel, "listxattr", e),
        };
        for n in names {
            match xattr::get(&path, &n) {
                Ok(Some(_)) => self.out.xattrs += 1,
                Ok(None) => self.fail(rel, "getxattr", format!("{n:?} listed but absent")),
                Err(e) => self.fail(rel, &format!("getxattr {n:?}"), e),
            }
        }
    }
}

/// SHA-256 of a file read through a private read-only mapping.
fn mapped_hash(fd: &OwnedFd, len: usize) -> io::Result<[u8; 32]> {
    use std::os::fd::AsRawFd;
    // SAFETY: a fresh private read-only mapping of `len` bytes of an open
    // file; it is read only within its length and unmapped before return.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            fd.as_raw_fd(),
            0,
        );
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let bytes = std::slice::from_raw_parts(p as *const u8, len);
        let h: [u8; 32] = Sha256::digest(bytes).into();
        libc::munmap(p, len);
        Ok(h)
    }
}

fn shown(p: &Path) -> String {
    if p.as_os_str().is_empty() {
        ".".into()
    } else {
        format!("{:?}", p.as_os_str())
    }
}
