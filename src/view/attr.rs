//! Attributes as the kernel gets them: a real inode's stat, a directory
//! graph2aufs synthesizes, an entry of an init layer held in memory; a
//! directory's entries; and the errno of an I/O error.

use crate::initlayer::{InitKind, InitLayer};
use fuser::{Errno, FileAttr, FileType, INodeNo};
use rustix::fs::{self as rfs, Stat};
use std::ffi::OsString;
use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(super) fn errno(e: io::Error) -> Errno {
    Errno::from(e)
}

pub(super) fn to_time(sec: i64, nsec: i64) -> SystemTime {
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec as u32)
    } else {
        UNIX_EPOCH - Duration::new(sec.unsigned_abs(), 0) + Duration::from_nanos(nsec as u64)
    }
}

pub(super) fn kind_of(ft: rfs::FileType) -> FileType {
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

pub(super) fn attr_of(st: &Stat, ino: u64) -> FileAttr {
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

pub(super) fn synth_attr(ino: u64, kind: FileType, perm: u16, size: u64, time: SystemTime) -> FileAttr {
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

pub(super) fn init_attr(layer: &InitLayer, index: Option<usize>, ino: u64) -> FileAttr {
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

/// An entry of a directory listing, as the kernel reads it.
pub(super) struct DirEntry {
    pub(super) name: OsString,
    pub(super) kind: FileType,
    pub(super) ino: u64,
}
