//! Mounts: the mount a descriptor is on, and detached read-only clones.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

/// The id of the mount a descriptor's file is on: a rename works only
/// within one mount.
pub fn mount_id(fd: impl AsFd) -> io::Result<u64> {
    let st = rustix::fs::statx(
        fd,
        "",
        rustix::fs::AtFlags::EMPTY_PATH | rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        rustix::fs::StatxFlags::MNT_ID,
    )?;
    Ok(st.stx_mnt_id)
}

/// A private, detached copy of the mount tree at `dir` (with every mount
/// below it), read-only and `noatime`: reading through it can change
/// nothing, not even access times (not even `readlink`'s, which `O_NOATIME`
/// cannot prevent), and kernel passthrough of file data becomes safe.
/// Needs CAP_SYS_ADMIN and Linux 5.12.
pub fn read_only_noatime_clone(dir: impl AsFd) -> io::Result<OwnedFd> {
    use rustix::mount::{open_tree, OpenTreeFlags};
    use std::os::fd::AsRawFd;
    let fd = open_tree(
        dir,
        "",
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_EMPTY_PATH
            | OpenTreeFlags::AT_RECURSIVE,
    )?;
    /// `struct mount_attr` (linux/mount.h).
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    const MOUNT_ATTR_NOATIME: u64 = 0x10;
    const MOUNT_ATTR_ATIME_MASK: u64 = 0x70;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOATIME,
        attr_clr: MOUNT_ATTR_ATIME_MASK,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr(2) reads `size_of::<MountAttr>()` bytes of the
    // `struct mount_attr` we own and pass by pointer, and a NUL-terminated
    // empty path; `fd` is a valid descriptor we own.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}
