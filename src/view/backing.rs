//! The real inodes behind nodes, reached through descriptors (never a path
//! under ROOT): their identity, `O_PATH` and real opens of them, and the
//! path through which their extended attributes are read and changed.

use super::creds::{AsCaller, Caller};
use super::node::{Backing, Key, Node};
use crate::sys;
use crate::union::Src;
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, Stat};
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

pub(super) fn entry_stat(dir: &OwnedFd, name: &OsStr) -> io::Result<Stat> {
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

pub(super) fn stat_fd(fd: impl AsFd) -> io::Result<Stat> {
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

/// Opens the file `backing` is, for a handle opened with `flags`.
pub(super) fn open_backing(backing: &Backing, flags: i32) -> io::Result<File> {
    match backing {
        Backing::Entry { dir, name, ino } => open_named(&*dir.fd()?, name, *ino, flags),
        Backing::Fd { fd } => open_entry(fd, OsStr::new(""), flags),
        _ => Err(io::Error::from_raw_os_error(libc::EISDIR)),
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

/// [`open_entry`] of a node's name, which must still lead to an inode of
/// the node's number: a name replaced behind the view (a file renamed over it on the
/// disk) gives ESTALE, and the kernel looks the name up again, instead of
/// the new file's bytes read under the old file's cached size and pages.
pub(super) fn open_named(dir: &OwnedFd, name: &OsStr, ino: u64, flags: i32) -> io::Result<File> {
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
pub(super) fn open_entry(dir: &OwnedFd, name: &OsStr, flags: i32) -> io::Result<File> {
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
pub(super) fn truncate_on_open(file: &File, caller: Option<&Caller>) -> io::Result<()> {
    let _as = AsCaller::enter(caller)?;
    rfs::open(
        sys::proc::fd_path(file),
        OFlags::WRONLY | OFlags::TRUNC | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(())
}
