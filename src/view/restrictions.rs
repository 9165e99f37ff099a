//! What the mounts the view serves from forbid their files (nodev, nosuid,
//! noexec), which the view's mount then forbids too: through the view no
//! device node opens, no setuid bit or file capability takes effect and no
//! file executes where natively it would not.

use crate::error::{Error, Result};
use crate::root::Root;
use rustix::fs::{self as rfs, Mode, OFlags, StatVfsMountFlags as F};

/// Per restriction, the mounts of ROOT that have it (named by a path).
#[derive(Debug, Default)]
pub(super) struct Restrictions {
    pub nodev: Vec<String>,
    pub nosuid: Vec<String>,
    pub noexec: Vec<String>,
}

impl Restrictions {
    /// Those of ROOT's mount and of `graph`, `containers`, `aufs` and
    /// `aufs/diff` where they are mounts of their own (an `--aufs-dir`
    /// included), from statvfs's f_flag. The view has one set of mount
    /// options: a restriction any of them has applies to all of it (the
    /// strict side: a layer on a mount without it loses what it allows).
    pub fn of(root: &Root) -> Result<Restrictions> {
        let mut r = Restrictions::default();
        let mut seen = Vec::new();
        for rel in [".", "graph", "containers", "aufs", "aufs/diff"] {
            let (dir, name) = root.resolve(rel);
            let shown = match (rel, root.aufs_dir()) {
                (".", _) => root.path().display().to_string(),
                ("aufs", Some((p, _))) => format!("--aufs-dir {}", p.display()),
                (_, Some((p, _))) if name != rel => format!("--aufs-dir {}/{name}", p.display()),
                _ => format!("{}/{rel}", root.path().display()),
            };
            let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let fd = match rfs::openat(dir, name, flags, Mode::empty()) {
                Ok(fd) => fd,
                // Not there (yet), or not a directory the view shows.
                Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => continue,
                Err(e) => return Err(Error::io(format!("opening {shown}"), e.into())),
            };
            let mount = crate::sys::mount_id(&fd).map_err(|e| Error::io(format!("the mount of {shown}"), e))?;
            if seen.contains(&mount) {
                continue;
            }
            seen.push(mount);
            let f = rfs::fstatvfs(&fd)
                .map_err(|e| Error::io(format!("statvfs of {shown}"), e.into()))?
                .f_flag;
            for (flag, list) in [
                (F::NODEV, &mut r.nodev),
                (F::NOSUID, &mut r.nosuid),
                (F::NOEXEC, &mut r.noexec),
            ] {
                if f.contains(flag) {
                    list.push(shown.clone());
                }
            }
        }
        Ok(r)
    }

    /// Says which the view inherits, and from where.
    pub fn log(&self) {
        for (what, from) in [
            ("nodev", &self.nodev),
            ("nosuid", &self.nosuid),
            ("noexec", &self.noexec),
        ] {
            if !from.is_empty() {
                log::info!("the view is mounted {what}, as {} is", from.join(" and "));
            }
        }
    }
}
