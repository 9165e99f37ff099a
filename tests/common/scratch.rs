//! Small scratch filesystems (a loop-mounted ext4, XFS or btrfs image, a
//! tmpfs) for tests that need a second device or a given file system:
//! cross-device copies, ENOSPC, read-only media, each file system's quirks.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rustix::io::Errno;
use rustix::mount::UnmountFlags;

use super::mount::{is_mounted, mounts_at, MountInfo};
use super::run::{describe, run_command};

const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs a system command (mkfs, mount) to success or panics with its output.
#[track_caller]
fn must(mut cmd: Command) {
    cmd.stdin(std::process::Stdio::null());
    let what = describe(&cmd);
    let result = run_command(cmd, COMMAND_TIMEOUT);
    assert!(result.code == 0, "`{what}` failed:\n{result}");
}

/// A scratch directory with a filesystem mounted on it; unmounted (lazily if
/// busy) and removed on drop. If it cannot be unmounted, the directory is
/// left in place rather than deleting through the mount.
struct Scratch {
    dir: Option<tempfile::TempDir>,
    mnt: PathBuf,
}

impl Scratch {
    #[track_caller]
    fn new(prefix: &str) -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a scratch directory: {e}"));
        let mnt = dir.path().join("mnt");
        fs::create_dir(&mnt).unwrap_or_else(|e| panic!("cannot create {}: {e}", mnt.display()));
        Scratch { dir: Some(dir), mnt }
    }

    fn dir(&self) -> &Path {
        // Invariant: `dir` is only taken in drop.
        self.dir.as_ref().expect("scratch directory present until drop").path()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        while is_mounted(&self.mnt) {
            match rustix::mount::unmount(&self.mnt, UnmountFlags::empty()) {
                Ok(()) => {}
                Err(Errno::BUSY) => {
                    if let Err(e) = rustix::mount::unmount(&self.mnt, UnmountFlags::DETACH) {
                        eprintln!("harness: umount -l {}: {e}", self.mnt.display());
                        break;
                    }
                }
                Err(e) => {
                    eprintln!("harness: umount {}: {e}", self.mnt.display());
                    break;
                }
            }
        }
        if is_mounted(&self.mnt) {
            if let Some(dir) = self.dir.take() {
                eprintln!(
                    "harness: {} is still mounted; leaving {} in place",
                    self.mnt.display(),
                    dir.keep().display()
                );
            }
        }
    }
}

/// A filesystem image on a loop device, mounted on a temporary directory.
pub struct LoopFs {
    scratch: Scratch,
    image: PathBuf,
}

impl LoopFs {
    /// Makes a `size_mb` MiB image (sparse), formats it with `mkfs.<fstype>`
    /// and mounts it with `mount -o loop`. Needs root (see `require_root`).
    #[track_caller]
    pub fn new(size_mb: u64, fstype: &str) -> LoopFs {
        LoopFs::with_mkfs_args(size_mb, fstype, &[])
    }

    /// [`LoopFs::new`] with more arguments for `mkfs.<fstype>` (e.g. a block
    /// size).
    #[track_caller]
    pub fn with_mkfs_args(size_mb: u64, fstype: &str, args: &[&str]) -> LoopFs {
        let scratch = Scratch::new("g2a-loopfs.");
        let image = scratch.dir().join("fs.img");
        File::create(&image)
            .and_then(|f| f.set_len(size_mb << 20))
            .unwrap_or_else(|e| panic!("cannot create the {size_mb} MiB image {}: {e}", image.display()));
        let mut mkfs = Command::new(format!("mkfs.{fstype}"));
        match fstype {
            t if t.starts_with("ext") => {
                mkfs.args(["-q", "-F"]);
            }
            "xfs" | "btrfs" => {
                mkfs.args(["-q", "-f"]);
            }
            _ => {}
        }
        mkfs.args(args).arg(&image);
        must(mkfs);
        let mut mount = Command::new("mount");
        mount.args(["-t", fstype, "-o", "loop"]).arg(&image).arg(&scratch.mnt);
        must(mount);
        LoopFs { scratch, image }
    }

    /// Where the filesystem is mounted.
    pub fn path(&self) -> &Path {
        &self.scratch.mnt
    }

    /// The image file backing the loop device.
    pub fn image(&self) -> &Path {
        &self.image
    }

    /// The mount's line of /proc/self/mountinfo (its `source` is the loop device).
    #[track_caller]
    pub fn info(&self) -> MountInfo {
        mounts_at(self.path())
            .pop()
            .unwrap_or_else(|| panic!("{} is no longer mounted", self.path().display()))
    }
}

/// The file systems a ROOT (or its `aufs/`) may be on, as the tests make
/// them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FsType {
    Ext4,
    Xfs,
    Btrfs,
    Tmpfs,
}

impl FsType {
    pub const ALL: [FsType; 4] = [FsType::Ext4, FsType::Xfs, FsType::Btrfs, FsType::Tmpfs];

    /// Its name for `mount -t` and `mkfs.`.
    pub fn name(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
            FsType::Btrfs => "btrfs",
            FsType::Tmpfs => "tmpfs",
        }
    }
}

/// A scratch file system of a given type: a loop image or a tmpfs.
pub enum AnyFs {
    Loop(LoopFs),
    Tmp(TmpFs),
}

impl AnyFs {
    /// Makes and mounts one of about `size_mb` MiB (XFS needs 300 at
    /// least: smaller sizes are raised). Needs root.
    #[track_caller]
    pub fn new(kind: FsType, size_mb: u64) -> AnyFs {
        match kind {
            FsType::Tmpfs => AnyFs::Tmp(TmpFs::new(size_mb)),
            FsType::Xfs => AnyFs::Loop(LoopFs::new(size_mb.max(300), "xfs")),
            FsType::Btrfs => AnyFs::Loop(LoopFs::new(size_mb.max(128), "btrfs")),
            FsType::Ext4 => AnyFs::Loop(LoopFs::new(size_mb, "ext4")),
        }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        match self {
            AnyFs::Loop(l) => l.path(),
            AnyFs::Tmp(t) => t.path(),
        }
    }
}

/// A size-limited tmpfs mounted on a temporary directory.
pub struct TmpFs {
    scratch: Scratch,
}

impl TmpFs {
    /// Mounts a tmpfs of `size_mb` MiB (`mount -t tmpfs -o size=..`). Needs root.
    #[track_caller]
    pub fn new(size_mb: u64) -> TmpFs {
        let scratch = Scratch::new("g2a-tmpfs.");
        let mut mount = Command::new("mount");
        mount
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "g2a-tmpfs"])
            .arg(&scratch.mnt);
        must(mount);
        TmpFs { scratch }
    }

    /// Where the filesystem is mounted.
    pub fn path(&self) -> &Path {
        &self.scratch.mnt
    }
}

/// A bind mount of `src` at `dst` (made if missing), undone (lazily if busy)
/// when dropped.
pub struct BindAt(PathBuf);

impl BindAt {
    #[track_caller]
    pub fn new(src: &Path, dst: &Path) -> BindAt {
        fs::create_dir_all(dst).unwrap();
        let mut cmd = Command::new("mount");
        cmd.arg("--bind").arg(src).arg(dst);
        must(cmd);
        BindAt(dst.to_path_buf())
    }
}

impl Drop for BindAt {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = rustix::mount::unmount(&self.0, UnmountFlags::empty());
            if is_mounted(&self.0) {
                super::mount::lazy_umount(&self.0);
            }
        }
    }
}
