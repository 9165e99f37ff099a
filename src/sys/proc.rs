//! `/proc/self/fd/N`: how a descriptor (`O_PATH` included) is reopened, or
//! given to calls that take only paths, without a path under ROOT. Built
//! here only.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;

/// The magic link of `fd`: the inode it refers to.
pub fn fd_path(fd: &impl AsFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))
}

/// `name` in the directory `dir` refers to, through `dir`'s magic link (the
/// last component is not followed by calls that do not follow).
pub fn entry_path(dir: &impl AsFd, name: &OsStr) -> PathBuf {
    fd_path(dir).join(name)
}
