//! Descriptor-relative file system calls used by the engine and the view.
//!
//! Nothing here takes a path under ROOT from the process's root: every call
//! is relative to a directory descriptor, and names are single components
//! unless a function says otherwise. When the view is mounted over ROOT, a
//! path lookup would enter the view itself; descriptors opened before the
//! mount do not.

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, RenameFlags, ResolveFlags, Stat, Timespec, Timestamps};
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

/// Flags for resolving a path strictly inside a directory: no symlinks at
/// all, no `..` above it, no magic links.
pub const INSIDE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

/// What an entry is, without following it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Missing,
    Dir,
    Symlink(Vec<u8>),
    /// Anything else, named ("regular file", "fifo", ...).
    Other(&'static str),
}

impl Kind {
    pub fn is_dir(&self) -> bool {
        matches!(self, Kind::Dir)
    }
    pub fn exists(&self) -> bool {
        !matches!(self, Kind::Missing)
    }
    pub fn describe(&self) -> String {
        match self {
            Kind::Missing => "missing".into(),
            Kind::Dir => "a directory".into(),
            Kind::Symlink(t) if t.is_empty() => "a symlink".into(),
            Kind::Symlink(t) => format!("a symlink to {}", crate::names::escape(t)),
            Kind::Other(what) => format!("a {what}"),
        }
    }
}

pub fn type_name(ft: FileType) -> &'static str {
    match ft {
        FileType::RegularFile => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symlink",
        FileType::Fifo => "fifo",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Unknown => "file of unknown type",
    }
}

/// `lstat` relative to `dir`; `None` when the entry does not exist.
pub fn lstat(dir: impl AsFd, name: impl AsRef<OsStr>) -> io::Result<Option<Stat>> {
    match rfs::statat(dir, name.as_ref(), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// What `name` in `dir` is, not following a symlink (whose target is read).
pub fn kind(dir: impl AsFd, name: impl AsRef<OsStr>) -> io::Result<Kind> {
    let name = name.as_ref();
    let Some(st) = lstat(dir.as_fd(), name)? else {
        return Ok(Kind::Missing);
    };
    Ok(match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => Kind::Dir,
        FileType::Symlink => Kind::Symlink(readlink(dir, name)?),
        ft => Kind::Other(type_name(ft)),
    })
}

/// Like [`kind`], but a symlink's target is not read (reading it updates
/// the symlink's atime, which `plan` and the read-only view must not).
pub fn kind_unread(dir: impl AsFd, name: impl AsRef<OsStr>) -> io::Result<Kind> {
    let Some(st) = lstat(dir.as_fd(), name.as_ref())? else {
        return Ok(Kind::Missing);
    };
    Ok(match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => Kind::Dir,
        FileType::Symlink => Kind::Symlink(Vec::new()),
        ft => Kind::Other(type_name(ft)),
    })
}

pub fn readlink(dir: impl AsFd, name: impl AsRef<OsStr>) -> io::Result<Vec<u8>> {
    Ok(rfs::readlinkat(dir, name.as_ref(), Vec::new())?.into_bytes())
}

/// Opens the directory `rel` (one or more components) inside `dir` as an
/// `O_PATH` descriptor, refusing symlinks anywhere on the way and anything
/// that would leave `dir`. `None` when it does not exist.
pub fn open_dir(dir: impl AsFd, rel: impl AsRef<OsStr>) -> io::Result<Option<OwnedFd>> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rfs::openat2(dir, rel.as_ref(), flags, Mode::empty(), INSIDE) {
        Ok(fd) => Ok(Some(fd)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Like [`open_dir`], but a missing directory is an error naming it.
pub fn open_dir_required(dir: impl AsFd, rel: impl AsRef<OsStr>) -> io::Result<OwnedFd> {
    let rel = rel.as_ref();
    open_dir(dir, rel)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} does not exist", crate::names::escape_os(rel)),
        )
    })
}

/// Reads the regular file `rel` inside `dir`, refusing symlinks and files
/// larger than `cap` bytes (hostile roots hold JSON of any size).
pub fn read_file(dir: impl AsFd, rel: impl AsRef<OsStr>, cap: u64) -> io::Result<Vec<u8>> {
    read_file_stat(dir, rel, cap).map(|(b, _)| b)
}

/// [`read_file`], also returning the file's stat.
pub fn read_file_stat(dir: impl AsFd, rel: impl AsRef<OsStr>, cap: u64) -> io::Result<(Vec<u8>, Stat)> {
    let dir = dir.as_fd();
    let rel = rel.as_ref();
    // Reading never updates the file's atime (O_NOATIME needs ownership or
    // CAP_FOWNER; without them, a plain open).
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let fd = match rfs::openat2(dir, rel, flags | OFlags::NOATIME, Mode::empty(), INSIDE) {
        Err(rustix::io::Errno::PERM) => rfs::openat2(dir, rel, flags, Mode::empty(), INSIDE)?,
        r => r?,
    };
    let st = rfs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "is a {}, not a regular file",
                type_name(FileType::from_raw_mode(st.st_mode))
            ),
        ));
    }
    if st.st_size as u64 > cap {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("is {} bytes, larger than the {cap} bytes accepted", st.st_size),
        ));
    }
    let mut buf = Vec::with_capacity(st.st_size as usize);
    std::fs::File::from(fd).take(cap + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > cap {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "grew past the accepted size while read",
        ));
    }
    Ok((buf, st))
}

/// The beginning of every temporary name graph2aufs gives an entry.
pub const TEMP_PREFIX: &str = ".graph2aufs-tmp-";

/// Name used for a temporary sibling of `name`: it begins with `.graph2aufs`
/// so a crash leaves only names graph2aufs owns and cleans up.
pub fn temp_name(name: &OsStr) -> OsString {
    let mut t = OsString::from(TEMP_PREFIX);
    t.push(name);
    t
}

/// Writes `bytes` to `name` in `dir` atomically: a temporary name, written
/// and (if `durable`) fsynced, then renamed into place. Without `durable`
/// the caller syncs the file system once for a whole batch.
pub fn write_atomic(dir: impl AsFd, name: impl AsRef<OsStr>, bytes: &[u8], mode: u32, durable: bool) -> io::Result<()> {
    let dir = dir.as_fd();
    let name = name.as_ref();
    let tmp = temp_name(name);
    let fd = rfs::openat(
        dir,
        &tmp,
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )?;
    rfs::fchmod(&fd, Mode::from_raw_mode(mode))?;
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes)?;
    if durable {
        f.sync_all()?;
    }
    drop(f);
    rfs::renameat(dir, &tmp, dir, name)?;
    if durable {
        fsync_dir(dir)?;
    }
    Ok(())
}

/// A descriptor that reads the directory `dir` holds (which may be an
/// `O_PATH` one): for what needs a real descriptor (fsync, syncfs,
/// getdents).
pub fn reopen_dir(dir: impl AsFd) -> io::Result<OwnedFd> {
    Ok(rfs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

pub fn fsync_dir(dir: BorrowedFd<'_>) -> io::Result<()> {
    rfs::fsync(reopen_dir(dir)?)?;
    Ok(())
}

/// `syncfs` of the file system holding `dir`.
pub fn syncfs(dir: impl AsFd) -> io::Result<()> {
    Ok(rfs::syncfs(reopen_dir(dir)?)?)
}

/// `rename` that never replaces an existing entry.
pub fn rename_noreplace(
    from_dir: impl AsFd,
    from: impl AsRef<OsStr>,
    to_dir: impl AsFd,
    to: impl AsRef<OsStr>,
) -> io::Result<()> {
    Ok(rfs::renameat_with(
        from_dir,
        from.as_ref(),
        to_dir,
        to.as_ref(),
        RenameFlags::NOREPLACE,
    )?)
}

/// Plain `rename`: used only where the destination is known to be an empty
/// directory, which the kernel then replaces atomically.
pub fn rename_over(
    from_dir: impl AsFd,
    from: impl AsRef<OsStr>,
    to_dir: impl AsFd,
    to: impl AsRef<OsStr>,
) -> io::Result<()> {
    Ok(rfs::renameat(from_dir, from.as_ref(), to_dir, to.as_ref())?)
}

/// Swaps two entries atomically (`RENAME_EXCHANGE`).
pub fn rename_exchange(
    a_dir: impl AsFd,
    a: impl AsRef<OsStr>,
    b_dir: impl AsFd,
    b: impl AsRef<OsStr>,
) -> io::Result<()> {
    Ok(rfs::renameat_with(
        a_dir,
        a.as_ref(),
        b_dir,
        b.as_ref(),
        RenameFlags::EXCHANGE,
    )?)
}

/// `mkdir` with exactly `mode` (umask does not apply); an existing directory
/// is fine, an existing non-directory is an error.
pub fn ensure_dir(dir: impl AsFd, name: impl AsRef<OsStr>, mode: u32) -> io::Result<bool> {
    let dir = dir.as_fd();
    let name = name.as_ref();
    match rfs::mkdirat(dir, name, Mode::from_raw_mode(mode)) {
        Ok(()) => {
            rfs::chmodat(dir, name, Mode::from_raw_mode(mode), AtFlags::empty())?;
            Ok(true)
        }
        Err(rustix::io::Errno::EXIST) => match kind(dir, name)? {
            Kind::Dir => Ok(false),
            other => Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is {}", crate::names::escape_os(name), other.describe()),
            )),
        },
        Err(e) => Err(e.into()),
    }
}

/// Opens for reading without updating the access time (`O_NOATIME`, which
/// needs ownership or CAP_FOWNER; without them, a plain open).
pub fn open_noatime(dir: impl AsFd, name: impl AsRef<OsStr>, flags: OFlags) -> io::Result<OwnedFd> {
    let dir = dir.as_fd();
    let name = name.as_ref();
    match rfs::openat(dir, name, flags | OFlags::NOATIME | OFlags::CLOEXEC, Mode::empty()) {
        Err(rustix::io::Errno::PERM) => Ok(rfs::openat(dir, name, flags | OFlags::CLOEXEC, Mode::empty())?),
        r => Ok(r?),
    }
}

/// A directory opened for listing; listing does not update its atime.
fn open_listing(dir: impl AsFd) -> io::Result<OwnedFd> {
    open_noatime(dir, ".", OFlags::RDONLY | OFlags::DIRECTORY)
}

/// The names in a directory (without `.` and `..`), in the order the file
/// system returns them.
pub fn list_dir(dir: impl AsFd) -> io::Result<Vec<(OsString, FileType)>> {
    Ok(list_dir_inos(dir)?
        .into_iter()
        .map(|(name, ft, _)| (name, ft))
        .collect())
}

/// [`list_dir`] with each entry's inode number (`d_ino`).
pub fn list_dir_inos(dir: impl AsFd) -> io::Result<Vec<(OsString, FileType, u64)>> {
    entries_of(open_listing(dir)?)
}

/// [`list_dir_inos`] as a reader would list: the directory's access time
/// moves as the file system's atime rules say.
pub fn list_dir_inos_reading(dir: impl AsFd) -> io::Result<Vec<(OsString, FileType, u64)>> {
    entries_of(reopen_dir(dir)?)
}

fn entries_of(fd: OwnedFd) -> io::Result<Vec<(OsString, FileType, u64)>> {
    let mut out = Vec::new();
    let mut d = rfs::Dir::new(fd)?;
    while let Some(entry) = d.read() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        out.push((OsStr::from_bytes(name).to_os_string(), entry.file_type(), entry.ino()));
    }
    Ok(out)
}

/// True when the directory has no entries.
pub fn dir_is_empty(dir: impl AsFd) -> io::Result<bool> {
    let fd = open_listing(dir)?;
    let mut d = rfs::Dir::new(fd)?;
    while let Some(entry) = d.read() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            return Ok(false);
        }
    }
    Ok(true)
}

pub fn set_times(dir: impl AsFd, name: impl AsRef<OsStr>, atime: Timespec, mtime: Timespec) -> io::Result<()> {
    let times = Timestamps {
        last_access: atime,
        last_modification: mtime,
    };
    Ok(rfs::utimensat(dir, name.as_ref(), &times, AtFlags::SYMLINK_NOFOLLOW)?)
}

pub fn chown(dir: impl AsFd, name: impl AsRef<OsStr>, uid: u32, gid: u32) -> io::Result<()> {
    let (u, g) = (rustix::process::Uid::from_raw(uid), rustix::process::Gid::from_raw(gid));
    Ok(rfs::chownat(
        dir,
        name.as_ref(),
        Some(u),
        Some(g),
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

pub fn mtime(st: &Stat) -> Timespec {
    Timespec {
        tv_sec: st.st_mtime,
        tv_nsec: st.st_mtime_nsec as _,
    }
}

pub fn atime(st: &Stat) -> Timespec {
    Timespec {
        tv_sec: st.st_atime,
        tv_nsec: st.st_atime_nsec as _,
    }
}

/// Adds context to an I/O error: what was being done, to what.
pub trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> io::Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> io::Result<T> {
        self.map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", what())))
    }
}

/// An error at an entry inside a tree (being measured, copied, compared or
/// removed): the entry's path below the tree's top, and the cause.
#[derive(Debug)]
struct AtPath {
    path: PathBuf,
    source: io::Error,
}

impl std::fmt::Display for AtPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", crate::names::escape_os(self.path.as_os_str()), self.source)
    }
}

impl std::error::Error for AtPath {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// `e`, which happened at or below the entry `name`, as an error that says
/// where: errors from deeper down get their path prefixed, so the message
/// reads `dir/sub/entry: cause`. The kind is kept.
pub fn at(name: &OsStr, e: io::Error) -> io::Error {
    let kind = e.kind();
    if e.get_ref().is_some_and(|r| r.is::<AtPath>()) {
        let inner = e
            .into_inner()
            .and_then(|r| r.downcast::<AtPath>().ok())
            .expect("checked: an AtPath");
        return io::Error::new(
            kind,
            AtPath {
                path: PathBuf::from(name).join(&inner.path),
                source: inner.source,
            },
        );
    }
    io::Error::new(
        kind,
        AtPath {
            path: PathBuf::from(name),
            source: e,
        },
    )
}

/// Removes `name` in `dir` and everything below it, through descriptors,
/// never following a symlink; an error says where below `name` it stopped.
pub fn remove_tree(dir: impl AsFd, name: impl AsRef<OsStr>) -> io::Result<()> {
    let dir = dir.as_fd();
    let name = name.as_ref();
    match lstat(dir, name)? {
        None => Ok(()),
        Some(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
            let sub = rfs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            for (child, _) in list_dir(&sub)? {
                remove_tree(&sub, &child).map_err(|e| at(&child, e))?;
            }
            Ok(rfs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
        }
        Some(_) => Ok(rfs::unlinkat(dir, name, AtFlags::empty())?),
    }
}

pub fn unlink(dir: impl AsFd, name: impl AsRef<OsStr>) -> io::Result<()> {
    Ok(rfs::unlinkat(dir, name.as_ref(), AtFlags::empty())?)
}

pub fn rmdir(dir: impl AsFd, name: impl AsRef<OsStr>) -> io::Result<()> {
    Ok(rfs::unlinkat(dir, name.as_ref(), AtFlags::REMOVEDIR)?)
}

/// truncate(2) of the inode `fd` refers to (any descriptor, O_PATH
/// included), through its magic link: a size change with the semantics of
/// one by path, which some file systems give differently from ftruncate(2)
/// (the times of a file truncated to its own size). A symlink's own
/// descriptor gives EINVAL, a directory's EISDIR: never followed.
pub fn truncate(fd: impl AsFd, len: u64) -> io::Result<()> {
    let path =
        std::ffi::CString::new(super::proc::fd_path(&fd).into_os_string().into_vec()).expect("no NUL in a /proc path");
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `path` is a valid C string that outlives the call; truncate(2)
    // reads nothing else from memory.
    if unsafe { libc::truncate(path.as_ptr(), len) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
