//! A container's init layer (FORMATS.md 4, Docker's `setupInitLayer`): a
//! few entries the daemon needs, written only where the image does not
//! already provide them. Computed as data, so that `migrate` writes exactly
//! what the view shows.

use crate::sys;
use crate::union::{self, Resolved, UnionDir};
use rustix::fs::{self as rfs, Mode, OFlags, Stat, Timespec};
use std::ffi::OsString;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitKind {
    Dir,
    File,
    Symlink(Vec<u8>),
}

/// One entry of an init layer, with every attribute it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitEntry {
    /// Components below the layer's root.
    pub path: Vec<OsString>,
    pub kind: InitKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: Timespec,
    pub mtime: Timespec,
}

impl InitEntry {
    pub fn file_type(&self) -> rustix::fs::FileType {
        match self.kind {
            InitKind::Dir => rustix::fs::FileType::Directory,
            InitKind::File => rustix::fs::FileType::RegularFile,
            InitKind::Symlink(_) => rustix::fs::FileType::Symlink,
        }
    }
}

/// The entries of an init layer, parents before children, and the times of
/// its root directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitLayer {
    pub entries: Vec<InitEntry>,
    pub time: Timespec,
}

/// What Docker's setupInitLayer creates (v1.8.1 daemon_unix.go).
const SPEC: &[(&str, Option<&str>, bool)] = &[
    // (path, symlink target, is a directory)
    ("/dev/pts", None, true),
    ("/dev/shm", None, true),
    ("/proc", None, true),
    ("/sys", None, true),
    ("/.dockerinit", None, false),
    ("/.dockerenv", None, false),
    ("/etc/resolv.conf", None, false),
    ("/etc/hosts", None, false),
    ("/etc/hostname", None, false),
    ("/dev/console", None, false),
    ("/etc/mtab", Some("/proc/mounts"), false),
];

impl InitLayer {
    /// Computes the init layer of a container whose image's layers are
    /// `image_chain` (layer roots, the image first). `time` is given to the
    /// entries it creates (the container's creation time).
    pub fn compute(image_chain: &[Arc<crate::dirref::DirRef>], time: Timespec) -> io::Result<InitLayer> {
        let root = UnionDir::of_layers(image_chain)?;
        let mut entries: Vec<InitEntry> = Vec::new();
        for (path, target, is_dir) in SPEC {
            let canon = match union::resolve(&root, path.as_bytes())? {
                Resolved::Exists | Resolved::NotDir => continue,
                Resolved::Missing(canon) => canon,
            };
            let n = canon.len();
            for (i, _) in canon.iter().enumerate() {
                let p: Vec<OsString> = canon[..=i].iter().map(|(c, _)| c.clone()).collect();
                if entries.iter().any(|e| e.path == p) {
                    continue;
                }
                let last = i + 1 == n;
                let entry = match (&canon[i].1, last) {
                    (Some(st), false) => copy_up(p, st),
                    (None, false) => created(p, InitKind::Dir, time),
                    (_, true) => {
                        let kind = match (target, is_dir) {
                            (Some(t), _) => InitKind::Symlink(t.as_bytes().to_vec()),
                            (None, true) => InitKind::Dir,
                            (None, false) => InitKind::File,
                        };
                        created(p, kind, time)
                    }
                };
                entries.push(entry);
            }
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(InitLayer { entries, time })
    }

    /// The entry at `path`, if the layer has one.
    pub fn find(&self, path: &[OsString]) -> Option<usize> {
        self.entries.iter().position(|e| e.path == path)
    }

    /// The entries directly below the directory `dir` (empty for the root).
    pub fn children<'a>(&'a self, dir: &'a [OsString]) -> impl Iterator<Item = usize> + 'a {
        self.entries
            .iter()
            .enumerate()
            .filter(move |(_, e)| e.path.len() == dir.len() + 1 && e.path.starts_with(dir))
            .map(|(i, _)| i)
    }

    /// Writes the layer into the empty directory `dir`, with every mode,
    /// owner and time, then gives `dir` itself mode 0755 and the layer time.
    pub fn materialize(&self, dir: impl AsFd) -> io::Result<()> {
        let dir = dir.as_fd();
        for e in &self.entries {
            let rel = join(&e.path);
            match &e.kind {
                InitKind::Dir => rfs::mkdirat(dir, &rel, Mode::from_raw_mode(e.mode))?,
                InitKind::File => {
                    let fd = rfs::openat(
                        dir,
                        &rel,
                        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::from_raw_mode(e.mode),
                    )?;
                    drop(fd);
                }
                InitKind::Symlink(t) => rfs::symlinkat(std::ffi::OsStr::from_bytes(t), dir, &rel)?,
            }
            sys::chown(dir, &rel, e.uid, e.gid)?;
            if !matches!(e.kind, InitKind::Symlink(_)) {
                rfs::chmodat(dir, &rel, Mode::from_raw_mode(e.mode), rfs::AtFlags::empty())?;
            }
        }
        // Times last, children before parents, as creating children changes
        // their parents' mtimes.
        for e in self.entries.iter().rev() {
            sys::set_times(dir, join(&e.path), e.atime, e.mtime)?;
        }
        rfs::chmodat(dir, ".", Mode::from_raw_mode(0o755), rfs::AtFlags::empty())?;
        sys::chown(dir, ".", 0, 0)?;
        sys::set_times(dir, ".", self.time, self.time)?;
        Ok(())
    }
}

fn join(path: &[OsString]) -> OsString {
    let mut out = OsString::new();
    for (i, c) in path.iter().enumerate() {
        if i > 0 {
            out.push("/");
        }
        out.push(c);
    }
    out
}

fn created(path: Vec<OsString>, kind: InitKind, time: Timespec) -> InitEntry {
    let mode = match kind {
        InitKind::Symlink(_) => 0o777,
        _ => 0o755,
    };
    InitEntry {
        path,
        kind,
        mode,
        uid: 0,
        gid: 0,
        atime: time,
        mtime: time,
    }
}

fn copy_up(path: Vec<OsString>, st: &Stat) -> InitEntry {
    InitEntry {
        path,
        kind: InitKind::Dir,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        atime: sys::atime(st),
        mtime: sys::mtime(st),
    }
}
