//! `cp -a`, reading without touching the source's access times: a copy of the
//! same tree is then the same copy every time (coreutils' `cp` moves the
//! source's atimes as it reads, so a second copy would differ from the first).
//!
//! Kept: types, modes, owners, times (atime and mtime, nanoseconds), hard links
//! within the tree, symlink targets, device numbers, xattrs, holes of sparse files.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustix::fd::OwnedFd;
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, SeekFrom, Stat, Timestamps, XattrFlags, CWD};
use rustix::io::Errno;

/// Copies `src` to `dst`, which must not exist.
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    let mut links = HashMap::new();
    copy(src, dst, &mut links).map_err(|(path, e)| io::Error::other(format!("copying {}: {e}", path.display())))
}

type Failure = (PathBuf, Errno);

fn copy(src: &Path, dst: &Path, links: &mut HashMap<(u64, u64), PathBuf>) -> Result<(), Failure> {
    let at = |p: &Path| {
        let p = p.to_path_buf();
        move |e: Errno| (p, e)
    };
    let st = rustix::fs::statat(CWD, src, AtFlags::SYMLINK_NOFOLLOW).map_err(at(src))?;
    let kind = FileType::from_raw_mode(st.st_mode);
    if kind != FileType::Directory && st.st_nlink > 1 {
        if let Some(first) = links.get(&(st.st_dev, st.st_ino)) {
            return rustix::fs::linkat(CWD, first, CWD, dst, AtFlags::empty()).map_err(at(dst));
        }
        links.insert((st.st_dev, st.st_ino), dst.to_path_buf());
    }
    match kind {
        FileType::Directory => {
            rustix::fs::mkdirat(CWD, dst, Mode::from_raw_mode(0o700)).map_err(at(dst))?;
            for name in list(src).map_err(at(src))? {
                copy(&src.join(&name), &dst.join(&name), links)?;
            }
        }
        FileType::RegularFile => copy_data(src, dst, &st).map_err(at(src))?,
        FileType::Symlink => {
            let target = read_link(src, &st).map_err(at(src))?;
            rustix::fs::symlinkat(target.as_c_str(), CWD, dst).map_err(at(dst))?;
        }
        _ => {
            let dev = if matches!(kind, FileType::CharacterDevice | FileType::BlockDevice) {
                st.st_rdev
            } else {
                0
            };
            rustix::fs::mknodat(CWD, dst, kind, Mode::from_raw_mode(0o600), dev).map_err(at(dst))?;
        }
    }
    let (uid, gid) = (
        rustix::fs::Uid::from_raw(st.st_uid),
        rustix::fs::Gid::from_raw(st.st_gid),
    );
    rustix::fs::chownat(CWD, dst, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW).map_err(at(dst))?;
    if kind != FileType::Symlink {
        rustix::fs::chmodat(CWD, dst, Mode::from_raw_mode(st.st_mode & 0o7777), AtFlags::empty()).map_err(at(dst))?;
    }
    copy_xattrs(src, dst)?;
    let times = Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec as _,
        },
    };
    rustix::fs::utimensat(CWD, dst, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(at(dst))
}

/// Opens for reading without updating the access time (root may, for any
/// file; others only for their own files, so they fall back to a plain open).
pub(crate) fn open_noatime(path: &Path, flags: OFlags) -> rustix::io::Result<OwnedFd> {
    let base = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | flags;
    match rustix::fs::openat(CWD, path, base | OFlags::NOATIME, Mode::empty()) {
        Err(Errno::PERM) => rustix::fs::openat(CWD, path, base, Mode::empty()),
        r => r,
    }
}

/// A symlink's target. `readlink` moves the link's access time and nothing
/// like O_NOATIME prevents it, so the time read before is put back (best
/// effort: where that fails, on a read-only tree, nothing moved either).
pub(crate) fn read_link(path: &Path, st: &Stat) -> rustix::io::Result<std::ffi::CString> {
    let target = rustix::fs::readlinkat(CWD, path, Vec::new())?;
    let times = Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
    };
    let _ = rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW);
    Ok(target)
}

/// The names in `dir`, sorted, read without touching its access time.
pub(crate) fn list(dir: &Path) -> rustix::io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in Dir::new(open_noatime(dir, OFlags::DIRECTORY)?)? {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name));
        }
    }
    names.sort();
    Ok(names)
}

/// Copies the data regions of `src`, leaving its holes as holes.
fn copy_data(src: &Path, dst: &Path, st: &Stat) -> rustix::io::Result<()> {
    let from = open_noatime(src, OFlags::empty())?;
    let to = rustix::fs::openat(
        CWD,
        dst,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    let size = st.st_size as u64;
    let mut buf = vec![0u8; 256 * 1024];
    let mut pos = 0u64;
    while pos < size {
        // (SEEK_DATA and SEEK_HOLE may disagree while pages of unwritten
        // extents are cached, on ext4 at least: data at the end of the file
        // is nothing left; a hole where data begins, data to the end.)
        let start = match rustix::fs::seek(&from, SeekFrom::Data(pos)) {
            Ok(p) if p < size => p,
            Ok(_) | Err(Errno::NXIO) => break,
            Err(e) => return Err(e),
        };
        let end = match rustix::fs::seek(&from, SeekFrom::Hole(start)) {
            Ok(e) if e > start => e.min(size),
            Ok(_) | Err(Errno::NXIO) => size,
            Err(e) => return Err(e),
        };
        let mut at = start;
        while at < end {
            let want = buf.len().min((end - at) as usize);
            let n = rustix::io::pread(&from, &mut buf[..want], at)?;
            if n == 0 {
                break;
            }
            let mut written = 0;
            while written < n {
                written += rustix::io::pwrite(&to, &buf[written..n], at + written as u64)?;
            }
            at += n as u64;
        }
        pos = end;
    }
    rustix::fs::ftruncate(&to, size)
}

fn copy_xattrs(src: &Path, dst: &Path) -> Result<(), Failure> {
    let mut names = vec![0u8; 64 * 1024];
    let n = match rustix::fs::llistxattr(src, &mut names[..]) {
        Ok(n) => n,
        Err(Errno::NOTSUP) => return Ok(()),
        Err(e) => return Err((src.to_path_buf(), e)),
    };
    let mut value = vec![0u8; 64 * 1024];
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = OsStr::from_bytes(name);
        let len = rustix::fs::lgetxattr(src, name, &mut value[..]).map_err(|e| (src.to_path_buf(), e))?;
        rustix::fs::lsetxattr(dst, name, &value[..len], XattrFlags::empty()).map_err(|e| (dst.to_path_buf(), e))?;
    }
    Ok(())
}
