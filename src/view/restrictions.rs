//! What the mounts the view serves from forbid their files (nodev, nosuid,
//! noexec), which the view's mount then forbids too: through the view no
//! device node opens, no setuid bit or file capability takes effect and no
//! file executes where natively it would not.

use crate::error::{Error, Result};
use rustix::fs::{self as rfs, StatVfsMountFlags as F};
use std::os::fd::OwnedFd;
use std::path::Path;

/// Per restriction, the mounts the view serves from that have it (each
/// named by one of its directories).
#[derive(Debug, Default)]
pub(super) struct Restrictions {
    pub nodev: Vec<String>,
    pub nosuid: Vec<String>,
    pub noexec: Vec<String>,
}

impl Restrictions {
    /// Those of the mounts of `dirs` (named relative to `root`, or
    /// `--aufs-dir` for `aufs_dir`), from statvfs's f_flag. The view has one set of
    /// mount options: a restriction any of them has applies to all of it
    /// (the strict side: a layer on a mount without it loses what that
    /// mount allows).
    pub fn of(root: &Path, aufs_dir: Option<&Path>, dirs: Vec<(&str, OwnedFd)>) -> Result<Restrictions> {
        let mut r = Restrictions::default();
        let mut seen = Vec::new();
        for (rel, fd) in dirs {
            let shown = match (rel, aufs_dir) {
                (".", _) => root.display().to_string(),
                ("--aufs-dir", Some(a)) => format!("--aufs-dir {}", a.display()),
                (rel, _) => format!("{}/{rel}", root.display()),
            };
            let mount = crate::sys::mount::mount_id(&fd).map_err(|e| Error::io(format!("the mount of {shown}"), e))?;
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
                log::info!(
                    "the view is mounted {what}, as the mount of {} is",
                    from.join(" and of ")
                );
            }
        }
    }
}
