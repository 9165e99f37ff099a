//! Copying a layer to another file system, through descriptors, keeping
//! everything a layer holds: regular files (sparse regions kept sparse,
//! data through `copy_file_range`, which reflinks where the file system
//! can), hard links as hard links, symlinks, fifos, sockets and device
//! nodes, owners, modes (setuid, setgid, sticky), extended attributes (user,
//! security, trusted; ACLs as ACLs, see [`crate::xattr`]), and access and
//! modification times in nanoseconds. Then [`compare`] checks a copy
//! against its source, entry by entry, content included.
//!
//! A file hard-linked outside the layer too (a dedup tool run over the
//! Docker root links equal files of several layers) cannot keep that link
//! on another file system: its copy has the links inside the layer, the
//! comparison accepts exactly that, and says which files it was
//! ([`OutsideLink`]).

use crate::sys::{self, at};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, SeekFrom, Stat, Timespec, Timestamps};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a copy goes: its pace and its progress, shared with whoever watches.
#[derive(Default)]
pub struct Pace {
    /// Bytes per second at most (0: unthrottled).
    pub rate: u64,
    /// Bytes of file data copied so far.
    pub done: AtomicU64,
    /// Stop as soon as possible (the copy then fails with `Interrupted`).
    pub stop: AtomicBool,
    /// When the copy under way began (its first byte).
    started: std::sync::Mutex<Option<Instant>>,
}

impl Pace {
    pub fn new(rate: u64) -> Pace {
        Pace {
            rate,
            ..Pace::default()
        }
    }

    /// A new copy begins: nothing done yet (its rate counts from its own
    /// first byte).
    pub fn restart(&self) {
        self.done.store(0, Ordering::Relaxed);
        *self.started.lock().expect("never poisoned") = None;
    }

    /// `Interrupted` once the copy is to stop (see [`Pace::stop`]).
    pub fn check(&self) -> io::Result<()> {
        match self.stop.load(Ordering::Relaxed) {
            true => Err(io::Error::new(io::ErrorKind::Interrupted, "the copy was stopped")),
            false => Ok(()),
        }
    }

    fn account(&self, n: u64) -> io::Result<()> {
        self.check()?;
        let start = *self
            .started
            .lock()
            .expect("never poisoned")
            .get_or_insert_with(Instant::now);
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        if self.rate > 0 {
            let due = Duration::from_secs_f64(done as f64 / self.rate as f64);
            // (In slices: a stop is heard within one.)
            while let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait.min(STOP_SLICE));
                self.check()?;
            }
        }
        Ok(())
    }
}

/// How long a paced copy sleeps at most before it checks whether it is to
/// stop.
const STOP_SLICE: Duration = Duration::from_millis(50);

/// What a tree needs on the destination: bytes of blocks, and inodes.
#[derive(Debug, Default, Clone, Copy)]
pub struct Size {
    pub bytes: u64,
    pub data: u64,
    pub inodes: u64,
}

pub(crate) fn proc_entry(dir: &impl AsFd, name: &OsStr) -> PathBuf {
    sys::proc::entry_path(dir, name)
}

pub(crate) fn entries(dir: &OwnedFd) -> io::Result<Vec<(OsString, Stat)>> {
    let mut v = Vec::new();
    for (name, _) in sys::list_dir(dir)? {
        if let Some(st) = sys::lstat(dir, &name)? {
            v.push((name, st));
        }
    }
    v.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(v)
}

pub(crate) fn ftype(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// The space a tree takes: what a copy of it needs.
pub fn size(dir: &OwnedFd) -> io::Result<Size> {
    let mut s = Size {
        inodes: 1,
        bytes: 4096,
        data: 0,
    };
    let mut seen = std::collections::HashSet::new();
    for (name, st) in entries(dir)? {
        if ftype(&st) == FileType::Directory {
            let sub = match sys::open_dir_required(dir, &name).and_then(|d| size(&d)) {
                Ok(sub) => sub,
                // Moved or removed meanwhile (a live source): its copy's
                // size is counted where it is now, or not at all.
                Err(_) if changed_since_listed(dir, &name, &st)? => continue,
                Err(e) => return Err(at(&name, e)),
            };
            s.bytes += sub.bytes;
            s.data += sub.data;
            s.inodes += sub.inodes;
        } else if st.st_nlink <= 1 || seen.insert((st.st_dev, st.st_ino)) {
            s.bytes += st.st_blocks as u64 * 512;
            if ftype(&st) == FileType::RegularFile {
                s.data += st.st_size as u64;
            }
            s.inodes += 1;
        }
    }
    Ok(s)
}

fn times(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

/// An entry's extended attributes, sorted, as a copy keeps them (see
/// [`crate::xattr`]: ACLs as ACLs, a file system's aliases of them left out).
pub fn xattrs(dir: &OwnedFd, name: &OsStr) -> io::Result<Vec<(OsString, Vec<u8>)>> {
    crate::xattr::read(dir, &proc_entry(dir, name))
}

/// Owner, xattrs, mode and times of `name` in `dst` as `st` says (in that
/// order: a chown clears setuid bits, times last).
pub(crate) fn finish(dst: &OwnedFd, name: &OsStr, st: &Stat, attrs: &[(OsString, Vec<u8>)]) -> io::Result<()> {
    rfs::chownat(
        dst,
        name,
        Some(rfs::Uid::from_raw(st.st_uid)),
        Some(rfs::Gid::from_raw(st.st_gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    let path = proc_entry(dst, name);
    for (x, v) in attrs {
        rfs::lsetxattr(&path, x, v, rfs::XattrFlags::empty())?;
    }
    if ftype(st) != FileType::Symlink {
        rfs::chmodat(dst, name, Mode::from_raw_mode(st.st_mode & 0o7777), AtFlags::empty())?;
    }
    rfs::utimensat(dst, name, &times(st), AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

/// Copies a regular file's data, holes kept as holes.
fn copy_data(src: &File, dst: &File, size: u64, pace: &Pace) -> io::Result<()> {
    let mut pos = 0u64;
    let mut in_kernel = true;
    while pos < size {
        let Some((data, hole)) = next_data(src, pos, size)? else {
            break; // only a hole is left
        };
        let mut at = data;
        while at < hole {
            let want = (hole - at).min(8 << 20) as usize;
            let (mut off_in, mut off_out) = (at, at);
            let r = match in_kernel {
                true => rfs::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), want),
                false => Err(rustix::io::Errno::XDEV),
            };
            let n = match r {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the file shrank while copied",
                    ))
                }
                Ok(n) => n,
                // Across file systems (Linux 5.19 and later refuse most):
                // sendfile still copies inside the kernel.
                Err(rustix::io::Errno::XDEV | rustix::io::Errno::NOSYS | rustix::io::Errno::OPNOTSUPP) => {
                    in_kernel = false;
                    send_chunk(src, dst, at, want)?
                }
                Err(e) => return Err(e.into()),
            };
            at += n as u64;
            pace.account(n as u64)?;
        }
        pos = hole;
    }
    dst.set_len(size)
}

/// The next region of data in `src` at or after `pos`, below `size`, by
/// SEEK_DATA and SEEK_HOLE; `None` if only a hole is left. The two may
/// disagree while a file with unwritten extents (fallocate) has pages in
/// the cache over blocks of both kinds (seen on ext4, Linux 6.18): SEEK_DATA
/// may answer the end of the file where only a hole is left (SEEK_HOLE then
/// fails with ENXIO), or an offset where SEEK_HOLE finds a hole at once,
/// which taken as they are would fail the copy or loop for ever on one
/// offset. Taken here as they mean: nothing left, or data up to `size`
/// (copied whole; what reads as zeros is copied as zeros).
fn next_data(src: &File, pos: u64, size: u64) -> io::Result<Option<(u64, u64)>> {
    data_region(|whence| rfs::seek(src, whence), pos, size)
}

/// [`next_data`] with the file's answers to `seek`.
fn data_region(
    mut seek: impl FnMut(SeekFrom) -> rustix::io::Result<u64>,
    pos: u64,
    size: u64,
) -> io::Result<Option<(u64, u64)>> {
    use rustix::io::Errno;
    let data = match seek(SeekFrom::Data(pos)) {
        Ok(d) if d < size => d,
        Ok(_) | Err(Errno::NXIO) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let hole = match seek(SeekFrom::Hole(data)) {
        Ok(h) if h > data => h.min(size),
        Ok(_) | Err(Errno::NXIO) => size,
        Err(e) => return Err(e.into()),
    };
    Ok(Some((data, hole)))
}

/// Copies up to `want` bytes at offset `at` with sendfile(2) (page cache to
/// page cache), or through a buffer where sendfile cannot.
fn send_chunk(src: &File, dst: &File, at: u64, want: usize) -> io::Result<usize> {
    rfs::seek(dst, SeekFrom::Start(at))?;
    let mut off = at;
    match rfs::sendfile(dst, src, Some(&mut off), want) {
        Ok(0) => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file shrank while copied",
        )),
        Ok(n) => Ok(n),
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => copy_chunk(src, dst, at, want),
        Err(e) => Err(e.into()),
    }
}

fn copy_chunk(src: &File, dst: &File, at: u64, want: usize) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; want.min(1 << 20)];
    let n = src.read_at(&mut buf, at)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file shrank while copied",
        ));
    }
    dst.write_all_at(&buf[..n], at)?;
    Ok(n)
}

/// A hard-linked source inode met in a copy: where its first copy is, and
/// how many of its names the copy met.
pub(crate) struct LinkCopy {
    pub dir: Arc<OwnedFd>,
    pub name: OsString,
    /// Its first name's path below the top of the copy.
    pub path: PathBuf,
    pub names: u64,
    /// Its link count in the source.
    pub nlink: u64,
}

/// Hard links already copied, by source inode.
pub(crate) type Links = HashMap<(u64, u64), LinkCopy>;

/// Which source directory each directory of a copy was copied from: the
/// source's (device, inode number) by the copy's. A directory renamed (or
/// exchanged with another) in the source moves with its entries, whose
/// status change times stay as they were: only this tells that the copy at
/// a path is of another directory than the source's now there (see
/// [`crate::resync`]).
pub type Origins = HashMap<(u64, u64), (u64, u64)>;

/// A file of a layer that is hard-linked outside the layer too (a dedup
/// tool run over the Docker root does that): a copy to another file system
/// keeps the links inside the layer; the names outside keep the original
/// file, no longer linked to the layer's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutsideLink {
    /// Its first name below the top of the layer.
    pub path: PathBuf,
    /// Its link count in the source.
    pub links: u64,
    /// How many of those names are in the layer.
    pub inside: u64,
}

/// Copies the entries of directory `src` into the (empty) directory `dst`.
/// `dst`'s own owner, mode, xattrs and times are the caller's. The answer:
/// the source directory of each directory copied.
pub fn copy_tree(src: &OwnedFd, dst: &Arc<OwnedFd>, pace: &Pace) -> io::Result<Origins> {
    let mut walk = Walk {
        pace,
        links: Links::new(),
        origins: Origins::new(),
        path: PathBuf::new(),
    };
    copy_dir(src, dst, &mut walk)?;
    Ok(walk.origins)
}

/// What a copy of a tree keeps as it walks: its pace, the hard links it
/// copied (by source inode), the source directory of each directory it
/// made, and where it is below the top of the copy.
pub(crate) struct Walk<'p> {
    pub pace: &'p Pace,
    pub links: Links,
    pub origins: Origins,
    pub path: PathBuf,
}

/// Copies a directory's own owner, mode, xattrs and times onto another.
pub fn copy_dir_attrs(
    src_parent: &OwnedFd,
    src_name: &OsStr,
    dst_parent: &OwnedFd,
    dst_name: &OsStr,
) -> io::Result<()> {
    let st = sys::lstat(src_parent, src_name)?.ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
    finish(dst_parent, dst_name, &st, &xattrs(src_parent, src_name)?)
}

/// Copies the entries of `src` into `dst` (`walk.path`: where `src` is
/// below the top of the copy).
fn copy_dir(src: &OwnedFd, dst: &Arc<OwnedFd>, walk: &mut Walk) -> io::Result<()> {
    for (name, st) in entries(src)? {
        walk.pace.check()?;
        walk.path.push(&name);
        let r = copy_dir_entry(src, &name, &st, dst, walk);
        walk.path.pop();
        r?;
    }
    Ok(())
}

fn copy_dir_entry(src: &OwnedFd, name: &OsStr, st: &Stat, dst: &Arc<OwnedFd>, walk: &mut Walk) -> io::Result<()> {
    let linked = ftype(st) != FileType::Directory && st.st_nlink > 1;
    if linked {
        if let Some(l) = walk.links.get_mut(&(st.st_dev, st.st_ino)) {
            rfs::linkat(l.dir.as_fd(), &l.name, dst.as_fd(), name, AtFlags::empty()).map_err(|e| at(name, e.into()))?;
            l.names += 1;
            return Ok(());
        }
        let first = LinkCopy {
            dir: dst.clone(),
            name: name.to_os_string(),
            path: walk.path.clone(),
            names: 1,
            nlink: st.st_nlink,
        };
        walk.links.insert((st.st_dev, st.st_ino), first);
    }
    match copy_entry(src, name, st, dst, name, walk) {
        // Removed or replaced in the source while copied (under a live
        // view): left out, as if listed a moment later (a later pass,
        // or the comparison, sees to the rest). A further name of the same
        // file met later is then copied as its first.
        Err(_) if changed_since_listed(src, name, st)? => {
            if linked {
                walk.links.remove(&(st.st_dev, st.st_ino));
            }
            sys::remove_tree(dst.as_fd(), name).map_err(|e| at(name, e))
        }
        r => r.map_err(|e| at(name, e)),
    }
}

/// Whether entry `name` of `dir`, listed with status `st`, is gone or
/// has changed since (another inode, a status change, another size or
/// modification time: two changes within one tick of the kernel's coarse
/// clock leave the status change time as it was).
pub(crate) fn changed_since_listed(dir: &OwnedFd, name: &OsStr, st: &Stat) -> io::Result<bool> {
    let what = |s: &Stat| (s.st_ino, s.st_mode, ctime(s), s.st_size, (s.st_mtime, s.st_mtime_nsec));
    Ok(match sys::lstat(dir, name)? {
        None => true,
        Some(now) => what(&now) != what(st),
    })
}

/// Copies entry `name` of `src` (`st`: its status) to `dst` as `dname`,
/// a directory with everything below it (hard links within it recorded in
/// `walk.links`, the source of each directory copied in `walk.origins`;
/// `walk.path`: the entry's path below the top of the copy), with its
/// owner, mode, xattrs and times.
pub(crate) fn copy_entry(
    src: &OwnedFd,
    name: &OsStr,
    st: &Stat,
    dst: &Arc<OwnedFd>,
    dname: &OsStr,
    walk: &mut Walk,
) -> io::Result<()> {
    let attrs = xattrs(src, name)?;
    let ft = ftype(st);
    match ft {
        FileType::Directory => {
            rfs::mkdirat(dst.as_fd(), dname, Mode::from_raw_mode(0o700))?;
            let sub_src = sys::open_dir_required(src, name)?;
            let sub_dst = Arc::new(sys::open_dir_required(dst.as_ref(), dname)?);
            let copy = rfs::fstat(sub_dst.as_fd())?;
            walk.origins.insert((copy.st_dev, copy.st_ino), (st.st_dev, st.st_ino));
            copy_dir(&sub_src, &sub_dst, walk)?;
        }
        FileType::RegularFile => {
            let from = File::from(sys::open_noatime(src, name, OFlags::RDONLY | OFlags::NOFOLLOW)?);
            let to = File::from(rfs::openat(
                dst.as_fd(),
                dname,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )?);
            copy_data(&from, &to, st.st_size as u64, walk.pace)?;
        }
        FileType::Symlink => {
            let target = sys::readlink(src, name)?;
            rfs::symlinkat(OsStr::from_encoded_bytes_checked(&target), dst.as_fd(), dname)?;
        }
        _ => rfs::mknodat(dst.as_fd(), dname, ft, Mode::from_raw_mode(0o600), st.st_rdev)?,
    }
    finish(dst, dname, st, &attrs)
}

trait FromBytes {
    fn from_encoded_bytes_checked(b: &[u8]) -> &OsStr;
}

impl FromBytes for OsStr {
    fn from_encoded_bytes_checked(b: &[u8]) -> &OsStr {
        use std::os::unix::ffi::OsStrExt;
        OsStr::from_bytes(b)
    }
}

/// The first difference between a tree and its copy, if any: kinds, modes,
/// owners, sizes, device numbers, symlink targets, xattrs, mtimes, hard
/// link structure and file contents (atimes excepted: reading the source
/// may move them).
pub fn compare(src: &OwnedFd, dst: &OwnedFd) -> io::Result<Option<String>> {
    compare_copy(src, dst).map(|c| c.differs)
}

/// What a comparison of a layer and its copy found.
#[derive(Debug, Default)]
pub struct Comparison {
    /// The first difference, if any.
    pub differs: Option<String>,
    /// Files of the layer hard-linked outside it too: the copy has exactly
    /// their links inside it (the one difference a copy to another file
    /// system cannot avoid, and not a difference of the copy).
    pub outside: Vec<OutsideLink>,
}

/// [`compare`] of a whole layer and its copy, with what it found about
/// hard links to files outside the layer.
pub fn compare_copy(src: &OwnedFd, dst: &OwnedFd) -> io::Result<Comparison> {
    let t = Instant::now();
    let r = compare_tree(src, dst, Check::default());
    log::debug!("compared a copy in {:.3} s", t.elapsed().as_secs_f64());
    r
}

/// Like [`compare`], for a directory inside a layer: a file hard-linked
/// out of it may be linked elsewhere in the layer (its copy's link count
/// is then between the names found here and the source's count).
pub fn compare_subtree(src: &OwnedFd, dst: &OwnedFd) -> io::Result<Option<String>> {
    let check = Check {
        subtree: true,
        ..Check::default()
    };
    compare_tree(src, dst, check).map(|c| c.differs)
}

/// Like [`compare`], for a source whose removal was begun after its copy
/// had been checked and put in place, and stopped (an error, a crash): the
/// source may lack entries, and its directories' mtimes and link counts
/// (and its files' link counts) may have changed with the removals; every
/// entry it still has must be the copy's, content included. `None`: what
/// is left of the source is all in the copy, and may go.
pub fn compare_remains(src: &OwnedFd, dst: &OwnedFd) -> io::Result<Option<String>> {
    let check = Check {
        remains: true,
        ..Check::default()
    };
    compare_tree(src, dst, check).map(|c| c.differs)
}

/// Like [`compare`], for a source still being changed: entries changed
/// (their status change time) at or after `since` are left out (a later
/// [`crate::resync`] copies and checks them again), and so are the listings
/// and attributes of directories changed then, link counts (names listed
/// at different moments do not add up: the last pass counts them), and
/// every directory whose copy is not of the source directory now at its
/// name (`origins`: one moved there, or exchanged with another, keeps its
/// entries' status change times; the last pass copies it anew).
pub fn compare_unchanged(
    src: &OwnedFd,
    dst: &OwnedFd,
    since: (i64, i64),
    origins: &Origins,
) -> io::Result<Option<String>> {
    let check = Check {
        since: Some(since),
        origins: Some(origins),
        ..Check::default()
    };
    compare_tree(src, dst, check).map(|c| c.differs)
}

/// What a comparison leaves out.
#[derive(Default, Clone, Copy)]
struct Check<'a> {
    /// The source is what a stopped removal left (see [`compare_remains`]).
    remains: bool,
    /// Entries changed since then are left out (see [`compare_unchanged`]).
    since: Option<(i64, i64)>,
    /// Directories whose copy is of another source directory are left out
    /// (see [`compare_unchanged`]).
    origins: Option<&'a Origins>,
    /// The trees are a directory inside a layer (see [`compare_subtree`]).
    subtree: bool,
}

/// An entry's status change time.
pub fn ctime(st: &Stat) -> (i64, i64) {
    (st.st_ctime, st.st_ctime_nsec as i64)
}

/// A path below a compared tree, for messages (`.` for its top).
fn shown(at: &std::path::Path) -> String {
    if at.as_os_str().is_empty() {
        ".".into()
    } else {
        crate::names::escape_os(at.as_os_str())
    }
}

/// The names of a source inode with more than one link (or whose copy has
/// more than one) met in a comparison.
struct Seen {
    /// The copy's inode (every name must be a link to it).
    copy: (u64, u64),
    names: u64,
    nlink: u64,
    copy_nlink: u64,
    first: PathBuf,
    /// Changed while compared (a live source): left out.
    skipped: bool,
}

fn compare_tree(src: &OwnedFd, dst: &OwnedFd, check: Check<'_>) -> io::Result<Comparison> {
    let mut links = HashMap::new();
    let differs = compare_dir(src, dst, &mut PathBuf::new(), &mut links, check)?;
    if differs.is_some() {
        return Ok(Comparison {
            differs,
            outside: Vec::new(),
        });
    }
    // Link counts, once every name is counted: the copy has the links the
    // tree has, no more (so no name of it is outside the copy); a source
    // file may have more (names outside the tree, which a copy to another
    // file system cannot keep).
    let mut seen: Vec<&Seen> = links.values().filter(|s| !s.skipped).collect();
    seen.sort_by(|a, b| a.first.cmp(&b.first));
    let mut outside = Vec::new();
    for s in seen {
        let right = if check.remains {
            s.copy_nlink >= s.names
        } else if check.subtree {
            (s.names..=s.nlink.max(s.names)).contains(&s.copy_nlink)
        } else {
            s.copy_nlink == s.names && s.nlink >= s.names
        };
        // (Of a source still changing, names met at different moments do
        // not add up: the last pass of a resync counts them, paused.)
        if !right && check.since.is_none() {
            let differs = Some(format!(
                "{}: the link counts differ ({} in the source, {} of them in the tree, {} in the copy)",
                shown(&s.first),
                s.nlink,
                s.names,
                s.copy_nlink
            ));
            return Ok(Comparison { differs, outside });
        }
        if s.nlink > s.names && !check.remains {
            outside.push(OutsideLink {
                path: s.first.clone(),
                links: s.nlink,
                inside: s.names,
            });
        }
    }
    Ok(Comparison { differs: None, outside })
}

fn compare_dir(
    src: &OwnedFd,
    dst: &OwnedFd,
    at: &mut PathBuf,
    links: &mut HashMap<(u64, u64), Seen>,
    check: Check<'_>,
) -> io::Result<Option<String>> {
    let here_err = |at: &PathBuf, e: io::Error| {
        if at.as_os_str().is_empty() {
            e
        } else {
            sys::at(at.as_os_str(), e)
        }
    };
    let changed = |st: &Stat| check.since.is_some_and(|t| ctime(st) >= t);
    let a = entries(src).map_err(|e| here_err(at, e))?;
    let b = entries(dst).map_err(|e| here_err(at, e))?;
    let copies: HashMap<&OsString, &Stat> = b.iter().map(|(n, st)| (n, st)).collect();
    let missing = a.iter().find(|(n, st)| !copies.contains_key(n) && !changed(st));
    let listing_changed = check.since.is_some() && {
        let st = rfs::fstat(src).map_err(|e| here_err(at, e.into()))?;
        changed(&st)
    };
    if missing.is_some() || (!check.remains && !listing_changed && a.len() != b.len()) {
        let what = match missing {
            Some((n, _)) => format!("{} is not in the copy", crate::names::escape_os(n)),
            None => "the copy has entries the source has not".into(),
        };
        return Ok(Some(format!("{}: the entries differ ({what})", shown(at))));
    }
    for (name, s) in &a {
        let Some(&d) = copies.get(name) else { continue };
        let dir = ftype(s) == FileType::Directory;
        let linked = !dir && (s.st_nlink > 1 || d.st_nlink > 1);
        let mut seen = |at: &PathBuf, skipped: bool| {
            let seen = links.entry((s.st_dev, s.st_ino)).or_insert_with(|| Seen {
                copy: (d.st_dev, d.st_ino),
                names: 0,
                nlink: s.st_nlink,
                copy_nlink: d.st_nlink,
                first: at.clone(),
                skipped: false,
            });
            seen.names += 1;
            seen.skipped |= skipped;
            seen.copy == (d.st_dev, d.st_ino)
        };
        if changed(s) && !dir {
            if linked {
                seen(&at.join(name), true);
            }
            continue;
        }
        // A copy of another directory than the one now there (moved or
        // exchanged since): copied anew by the last pass, and checked then.
        if dir
            && check
                .origins
                .is_some_and(|o| o.get(&(d.st_dev, d.st_ino)) != Some(&(s.st_dev, s.st_ino)))
        {
            continue;
        }
        at.push(name);
        // (A change made while it was compared shows in its status change
        // time since: not a difference of the copy.)
        let changed_since =
            || check.since.is_some() && sys::lstat(src, name).is_ok_and(|st| st.as_ref().is_none_or(changed));
        let own = match changed(s) {
            true => Ok(None),
            false => same_entry(src, name, s, dst, name, d, check.remains),
        };
        let mut forgiven = false;
        let own = match own {
            Ok(Some(_)) | Err(_) if changed_since() => {
                forgiven = true;
                Ok(None)
            }
            r => r,
        };
        if let Some(what) = own.map_err(|e| here_err(at, e))? {
            if let Some(t) = check.since {
                log::debug!("{}: {what}; changed at {:?}, checked since {t:?}", shown(at), ctime(s));
            }
            return Ok(Some(format!("{}: {what}", shown(at))));
        }
        if dir {
            let subs = match sys::open_dir_required(src, name).and_then(|x| Ok((x, sys::open_dir_required(dst, name)?)))
            {
                Err(_) if changed_since() => {
                    at.pop();
                    continue;
                }
                r => r.map_err(|e| here_err(at, e))?,
            };
            let r = compare_dir(&subs.0, &subs.1, at, links, check)?;
            if r.is_some() {
                return Ok(r);
            }
        } else if linked && !seen(at, forgiven) && !changed_since() {
            return Ok(Some(format!("{}: a hard link is not one in the copy", shown(at))));
        }
        at.pop();
    }
    Ok(None)
}

/// How entry `name` of `src` (`s`) and its copy `dname` of `dst` (`d`)
/// differ, if they do: metadata (link counts are the caller's: they depend
/// on the rest of the tree), extended attributes, symlink target, content
/// (a directory's entries are the caller's). `remains`: see
/// [`compare_remains`].
pub(crate) fn same_entry(
    src: &OwnedFd,
    name: &OsStr,
    s: &Stat,
    dst: &OwnedFd,
    dname: &OsStr,
    d: &Stat,
    remains: bool,
) -> io::Result<Option<String>> {
    let dir = ftype(s) == FileType::Directory;
    // (After a removal stopped half-way, directories have lost entries:
    // only what a removal leaves alone is compared. Link counts are the
    // tree's: see `compare_tree`.)
    let fields =
        |what: &str, a: String, b: String| Some(format!("the {what} differ ({a} in the source, {b} in the copy)"));
    let differs = if ftype(s) != ftype(d) {
        Some("the kinds differ".to_string())
    } else if s.st_mode != d.st_mode {
        fields("modes", format!("{:o}", s.st_mode), format!("{:o}", d.st_mode))
    } else if (s.st_uid, s.st_gid) != (d.st_uid, d.st_gid) {
        fields(
            "owners",
            format!("{}:{}", s.st_uid, s.st_gid),
            format!("{}:{}", d.st_uid, d.st_gid),
        )
    } else if !dir && s.st_size != d.st_size {
        fields("sizes", s.st_size.to_string(), d.st_size.to_string())
    } else if s.st_rdev != d.st_rdev {
        Some("the device numbers differ".to_string())
    } else if !(remains && dir) && (s.st_mtime, s.st_mtime_nsec) != (d.st_mtime, d.st_mtime_nsec) {
        let t = |st: &Stat| format!("{}.{:09}", st.st_mtime, st.st_mtime_nsec);
        fields("modification times", t(s), t(d))
    } else if xattrs(src, name)? != xattrs(dst, dname)? {
        Some("the extended attributes differ".to_string())
    } else {
        None
    };
    if differs.is_some() {
        return Ok(differs);
    }
    match ftype(s) {
        FileType::Symlink if sys::readlink(src, name)? != sys::readlink(dst, dname)? => {
            Ok(Some("the symlink targets differ".into()))
        }
        FileType::RegularFile => {
            let mut x = File::from(sys::open_noatime(src, name, OFlags::RDONLY | OFlags::NOFOLLOW)?);
            let mut y = File::from(sys::open_noatime(dst, dname, OFlags::RDONLY | OFlags::NOFOLLOW)?);
            Ok((!same_content(&mut x, &mut y, s.st_size as u64)?).then(|| "the contents differ".into()))
        }
        _ => Ok(None),
    }
}

/// Whether two files (of `size` bytes when compared) hold the same bytes.
fn same_content(x: &mut File, y: &mut File, size: u64) -> io::Result<bool> {
    for f in [&*x, &*y] {
        // (Only a hint for the read-ahead: its failure changes nothing.)
        let _ = rfs::fadvise(f, 0, None, rfs::Advice::Sequential);
    }
    if size < PARALLEL_COMPARE {
        return same_content_here(x, y, size);
    }
    same_content_parallel(x, y)
}

/// Files from this size on are compared with the source read by a second
/// thread: reading both files (mostly page cache to user memory) is most
/// of a comparison's time, and the two reads are independent.
const PARALLEL_COMPARE: u64 = 8 << 20;

/// Chunks of a parallel comparison.
const COMPARE_CHUNK: usize = 4 << 20;

fn same_content_here(x: &mut File, y: &mut File, size: u64) -> io::Result<bool> {
    // Buffers of the file's size (one byte more shows growth), at most
    // 1 MiB: most files are small, and zeroing megabytes for each of them
    // cost more than the comparison.
    let len = (size.saturating_add(1)).min(1 << 20) as usize;
    let (mut a, mut b) = (vec![0u8; len], vec![0u8; len]);
    loop {
        let n = read_full(x, &mut a)?;
        let m = read_full(y, &mut b)?;
        if n != m || a[..n] != b[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// [`same_content_here`], with `x` read ahead by a second thread, chunk by
/// chunk (a few chunks at most in flight; buffers are reused).
fn same_content_parallel(x: &mut File, y: &mut File) -> io::Result<bool> {
    use std::sync::mpsc;
    std::thread::scope(|s| {
        let (chunks, chunks_rx) = mpsc::sync_channel::<io::Result<(Vec<u8>, usize)>>(1);
        let (spent, spent_rx) = mpsc::channel::<Vec<u8>>();
        s.spawn(move || loop {
            let mut a = spent_rx.try_recv().unwrap_or_else(|_| vec![0u8; COMPARE_CHUNK]);
            let r = read_full(x, &mut a);
            let end = !matches!(r, Ok(n) if n > 0);
            // (A send fails once the comparison has stopped: so does this.)
            if chunks.send(r.map(|n| (a, n))).is_err() || end {
                return;
            }
        });
        let mut b = vec![0u8; COMPARE_CHUNK];
        loop {
            let m = read_full(y, &mut b)?;
            let (a, n) = chunks_rx.recv().expect("the reader sends until it ends")?;
            if n != m || a[..n] != b[..m] {
                return Ok(false);
            }
            if n == 0 {
                return Ok(true);
            }
            let _ = spent.send(a);
        }
    })
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// A removal handed to [`Removals`]: `leaf` in `parent`, and what its
/// error says.
struct Removal {
    parent: OwnedFd,
    leaf: OsString,
    key: String,
    explain: Box<dyn FnOnce(io::Error) -> io::Error + Send>,
}

/// Removals of copied sources on a background thread, for a run that
/// copies layer after layer (the offline `migrate`): removing a layer's
/// source (mostly waiting for the source file system's metadata) then
/// overlaps the next layers' copies. Only what the caller would have
/// removed at once is handed over, so nothing goes earlier than before;
/// [`Removals::finish`] waits for every removal and says which failed.
pub struct Removals {
    queue: Option<std::sync::mpsc::SyncSender<Removal>>,
    worker: Option<std::thread::JoinHandle<Vec<(String, io::Error)>>>,
}

impl Removals {
    /// Starts the background thread.
    pub fn start() -> Removals {
        // (A few removals queued at most: each holds a descriptor.)
        let (queue, removals) = std::sync::mpsc::sync_channel::<Removal>(8);
        let worker = std::thread::spawn(move || {
            let mut failed = Vec::new();
            for r in removals {
                let t = Instant::now();
                let done = sys::remove_tree(&r.parent, &r.leaf);
                log::debug!("removed {} in {:.3} s", r.key, t.elapsed().as_secs_f64());
                if let Err(e) = done {
                    failed.push((r.key, (r.explain)(e)));
                }
            }
            failed
        });
        Removals {
            queue: Some(queue),
            worker: Some(worker),
        }
    }

    /// Hands over the removal of `leaf` in `parent`; `key` names it in
    /// [`Removals::finish`], with its error through `explain`.
    pub fn remove(
        &self,
        parent: &OwnedFd,
        leaf: &OsStr,
        key: String,
        explain: Box<dyn FnOnce(io::Error) -> io::Error + Send>,
    ) -> io::Result<()> {
        let r = Removal {
            parent: parent.try_clone()?,
            leaf: leaf.to_os_string(),
            key,
            explain,
        };
        let queue = self.queue.as_ref().expect("open until finished");
        // (The worker only stops when the queue is closed, in `stop`.)
        queue
            .send(r)
            .map_err(|_| io::Error::other("the background removal stopped"))
    }

    /// Waits for every removal handed over; the failed ones by their keys.
    pub fn finish(mut self) -> Vec<(String, io::Error)> {
        self.stop()
    }

    fn stop(&mut self) -> Vec<(String, io::Error)> {
        self.queue = None;
        match self.worker.take().map(|w| w.join()) {
            Some(Ok(failed)) => failed,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => Vec::new(),
        }
    }
}

impl Drop for Removals {
    fn drop(&mut self) {
        // (A run that stops early still waits for its removals.)
        if self.worker.is_some() {
            for (key, e) in self.stop() {
                log::error!("{key}: {e}");
            }
        }
    }
}

/// Free space where `dir` is: bytes and inodes available to root (`None`:
/// no limit of inodes; btrfs, which allocates them as it goes, says 0 in
/// all and 0 free).
pub fn free(dir: &OwnedFd) -> io::Result<(u64, Option<u64>)> {
    let s = rfs::fstatvfs(dir)?;
    Ok((s.f_bfree * s.f_frsize, (s.f_files > 0).then_some(s.f_ffree)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file's answers to SEEK_DATA and SEEK_HOLE, as a function.
    fn answers(data: u64, hole: Result<u64, rustix::io::Errno>) -> impl FnMut(SeekFrom) -> rustix::io::Result<u64> {
        move |whence| match whence {
            SeekFrom::Data(_) => Ok(data),
            SeekFrom::Hole(_) => hole,
            _ => unreachable!("only SEEK_DATA and SEEK_HOLE"),
        }
    }

    #[test]
    fn data_the_kernel_also_calls_a_hole_is_copied_to_the_end_not_looped_over() {
        // Seen on ext4 (Linux 6.18), in a live copy under load: SEEK_DATA
        // and SEEK_HOLE both answered 0 for a 1,490-byte file; the copy
        // went round offset 0 for ever.
        assert_eq!(data_region(answers(0, Ok(0)), 0, 1490).unwrap(), Some((0, 1490)));
        assert_eq!(data_region(answers(512, Ok(512)), 0, 1490).unwrap(), Some((512, 1490)));
    }

    #[test]
    fn data_found_at_the_end_of_the_file_is_nothing_left() {
        // Seen on ext4 with 1 KiB blocks: SEEK_DATA answered the file's size
        // (not ENXIO) where only unwritten blocks were left, and SEEK_HOLE
        // then failed with ENXIO, which failed the copy.
        let nxio = Err(rustix::io::Errno::NXIO);
        assert_eq!(data_region(answers(31440, nxio), 30720, 31440).unwrap(), None);
        assert_eq!(data_region(answers(1000, Ok(2000)), 0, 900).unwrap(), None);
        // A hole SEEK_HOLE cannot find: data to the end.
        assert_eq!(data_region(answers(100, nxio), 0, 900).unwrap(), Some((100, 900)));
        // Agreeing answers as they are.
        assert_eq!(data_region(answers(100, Ok(300)), 0, 900).unwrap(), Some((100, 300)));
        assert_eq!(data_region(answers(100, Ok(4096)), 0, 900).unwrap(), Some((100, 900)));
    }
    use std::fs;

    fn open(p: &std::path::Path) -> OwnedFd {
        rfs::openat(
            rfs::CWD,
            p,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    /// A source tree and its copy.
    fn pair() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let (src, dst) = (t.path().join("src"), t.path().join("dst"));
        fs::create_dir_all(src.join("a/b")).unwrap();
        fs::write(src.join("a/b/f"), "deep").unwrap();
        fs::write(src.join("a/g"), "mid").unwrap();
        fs::write(src.join("top"), "top").unwrap();
        fs::hard_link(src.join("top"), src.join("a/top-link")).unwrap();
        fs::create_dir(&dst).unwrap();
        copy_tree(&open(&src), &Arc::new(open(&dst)), &Pace::default()).unwrap();
        (t, src, dst)
    }

    #[test]
    fn what_is_left_of_a_source_whose_removal_stopped_is_part_of_its_copy() {
        let (_t, src, dst) = pair();
        assert_eq!(compare(&open(&src), &open(&dst)).unwrap(), None);
        // A removal stopped half-way: a file, a hard link and a directory gone.
        fs::remove_file(src.join("a/b/f")).unwrap();
        fs::remove_dir(src.join("a/b")).unwrap();
        fs::remove_file(src.join("top")).unwrap();
        let full = compare(&open(&src), &open(&dst)).unwrap();
        assert!(full.is_some_and(|d| d.contains("the entries differ")));
        assert_eq!(compare_remains(&open(&src), &open(&dst)).unwrap(), None);
        // What is left must still be the copy's, content included.
        fs::write(src.join("a/g"), "MID").unwrap();
        let d = compare_remains(&open(&src), &open(&dst)).unwrap();
        assert!(d.as_deref().is_some_and(|d| d.starts_with("a/g: ")), "{d:?}");
        // And nothing the copy has not.
        fs::write(src.join("new"), "x").unwrap();
        let d = compare_remains(&open(&src), &open(&dst)).unwrap().unwrap();
        assert!(d.starts_with(".: the entries differ (new is not in the copy"), "{d}");
    }

    #[test]
    fn a_file_linked_outside_the_tree_is_copied_with_its_links_inside_and_reported() {
        let t = tempfile::tempdir().unwrap();
        let (src, dst) = (t.path().join("src"), t.path().join("dst"));
        fs::create_dir_all(src.join("d")).unwrap();
        fs::write(src.join("f"), "shared").unwrap();
        fs::hard_link(src.join("f"), src.join("d/f2")).unwrap();
        // A third name, outside the tree (another layer, a dedup store).
        fs::hard_link(src.join("f"), t.path().join("outside")).unwrap();
        fs::create_dir(&dst).unwrap();
        copy_tree(&open(&src), &Arc::new(open(&dst)), &Pace::default()).unwrap();
        let c = compare_copy(&open(&src), &open(&dst)).unwrap();
        assert_eq!(c.differs, None);
        let want = OutsideLink {
            path: "d/f2".into(),
            links: 3,
            inside: 2,
        };
        assert_eq!(c.outside, [want]);
        // One more name in the copy than the tree has is a difference...
        fs::hard_link(dst.join("f"), t.path().join("stray")).unwrap();
        let c = compare_copy(&open(&src), &open(&dst)).unwrap();
        let d = c.differs.unwrap();
        assert_eq!(
            d,
            "d/f2: the link counts differ (3 in the source, 2 of them in the tree, 3 in the copy)"
        );
        // Its two names in the tree made two files in the copy (alike in
        // all but links): a difference, and no link outside.
        fs::remove_file(t.path().join("stray")).unwrap();
        let m = fs::metadata(dst.join("f")).unwrap();
        fs::remove_file(dst.join("d/f2")).unwrap();
        fs::copy(dst.join("f"), dst.join("d/f2")).unwrap();
        let f = File::options().write(true).open(dst.join("d/f2")).unwrap();
        f.set_times(fs::FileTimes::new().set_modified(m.modified().unwrap()))
            .unwrap();
        copy_dir_attrs(&open(&src), OsStr::new("d"), &open(&dst), OsStr::new("d")).unwrap();
        let c = compare_copy(&open(&src), &open(&dst)).unwrap();
        assert_eq!(c.differs.as_deref(), Some("f: a hard link is not one in the copy"));
        assert_eq!(c.outside, []);
    }

    #[test]
    fn two_files_made_one_in_the_copy_differ_from_their_source() {
        let t = tempfile::tempdir().unwrap();
        let (src, dst) = (t.path().join("src"), t.path().join("dst"));
        fs::create_dir(&src).unwrap();
        let when = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_400_000_000);
        for n in ["x", "y"] {
            fs::write(src.join(n), "same").unwrap();
            let f = File::options().write(true).open(src.join(n)).unwrap();
            f.set_times(fs::FileTimes::new().set_modified(when)).unwrap();
        }
        fs::create_dir(&dst).unwrap();
        copy_tree(&open(&src), &Arc::new(open(&dst)), &Pace::default()).unwrap();
        assert_eq!(compare(&open(&src), &open(&dst)).unwrap(), None);
        fs::remove_file(dst.join("y")).unwrap();
        fs::hard_link(dst.join("x"), dst.join("y")).unwrap();
        let d = compare(&open(&src), &open(&dst)).unwrap();
        assert_eq!(
            d.as_deref(),
            Some("x: the link counts differ (1 in the source, 1 of them in the tree, 2 in the copy)")
        );
    }

    #[test]
    fn a_hard_link_whose_first_name_went_while_copied_is_copied_from_its_next_name() {
        let t = tempfile::tempdir().unwrap();
        let (src, dst) = (t.path().join("src"), t.path().join("dst"));
        fs::create_dir_all(src.join("b")).unwrap();
        // Copied first, slowly (64 KiB at 64 KiB/s): the source changes
        // meanwhile, after it was listed.
        fs::write(src.join("0slow"), vec![1u8; 64 << 10]).unwrap();
        fs::write(src.join("a"), "linked").unwrap();
        fs::hard_link(src.join("a"), src.join("b/link")).unwrap();
        fs::create_dir(&dst).unwrap();
        let mover = {
            let src = src.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                // Its first name goes (its copy is left out) before the
                // directory of its other names is listed.
                fs::rename(src.join("a"), src.join("b/moved")).unwrap();
            })
        };
        let copied = copy_tree(&open(&src), &Arc::new(open(&dst)), &Pace::new(64 << 10));
        mover.join().unwrap();
        copied.unwrap();
        // (A copy of a source that changed: `b`'s times are as listed.)
        assert!(!dst.join("a").exists());
        use std::os::unix::fs::MetadataExt;
        let ino = |p: &str| fs::metadata(dst.join(p)).unwrap().ino();
        assert_eq!(ino("b/link"), ino("b/moved"));
    }

    #[test]
    fn a_file_truncated_within_the_tick_of_its_listing_has_changed_since() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("f"), "longer").unwrap();
        let dir = open(t.path());
        let st = sys::lstat(&dir, OsStr::new("f")).unwrap().unwrap();
        assert!(!changed_since_listed(&dir, OsStr::new("f"), &st).unwrap());
        // (As listed a moment before a truncation in the same tick of the
        // coarse clock: its status change time then stays as it was.)
        let mut listed = st;
        listed.st_size += 3;
        assert!(changed_since_listed(&dir, OsStr::new("f"), &listed).unwrap());
    }

    #[test]
    fn removals_handed_to_the_background_are_done_when_finished_and_their_failures_named() {
        let (_t, src, _) = pair();
        let dir = open(&src);
        let explain = || Box::new(|e: io::Error| io::Error::new(e.kind(), format!("explained: {e}")));
        let removals = Removals::start();
        removals.remove(&dir, OsStr::new("a"), "a".into(), explain()).unwrap();
        // A file where a directory should be: its removal fails, and says so.
        let f = src.join("top");
        let not_dir = rfs::openat(rfs::CWD, &f, OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).unwrap();
        removals
            .remove(&not_dir, OsStr::new("x"), "top/x".into(), explain())
            .unwrap();
        let failed = removals.finish();
        assert!(!src.join("a").exists() && src.join("top").exists());
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert_eq!(failed[0].0, "top/x");
        assert!(failed[0].1.to_string().starts_with("explained: "), "{}", failed[0].1);
    }

    #[test]
    fn a_large_file_is_compared_to_its_last_byte() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        let data: Vec<u8> = (0..(PARALLEL_COMPARE as usize * 2 + 12345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        fs::write(&a, &data).unwrap();
        fs::write(&b, &data).unwrap();
        let same = |x: &std::path::Path, y: &std::path::Path| {
            let size = fs::metadata(x).unwrap().len();
            same_content(&mut File::open(x).unwrap(), &mut File::open(y).unwrap(), size).unwrap()
        };
        assert!(same(&a, &b));
        let mut other = data.clone();
        *other.last_mut().unwrap() ^= 1;
        fs::write(&b, &other).unwrap();
        assert!(!same(&a, &b));
        fs::write(&b, &data[..data.len() - 1]).unwrap();
        assert!(!same(&a, &b) && !same(&b, &a));
    }

    #[test]
    fn errors_inside_a_tree_say_where() {
        let e = at(
            OsStr::new("a"),
            at(OsStr::new("b"), io::Error::from_raw_os_error(libc::EACCES)),
        );
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(e.to_string(), "a/b: Permission denied (os error 13)");
        let (_t, src, _) = pair();
        let dir = open(&src);
        sys::remove_tree(&dir, OsStr::new("a")).unwrap();
        assert!(!src.join("a").exists() && src.join("top").exists());
    }
}
