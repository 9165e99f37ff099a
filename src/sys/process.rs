//! The process and its threads: signal dispositions, a thread's own umask,
//! the start of a daemon's server, descriptors inherited from a parent.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::process::Command;

/// A closed pipe ends the process quietly (SIGPIPE's default), as other
/// tools piped into `head` do. Call before any other thread starts.
pub fn default_sigpipe() {
    // SAFETY: setting a signal's disposition to the default has no
    // preconditions; the caller runs before other threads start.
    let r = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    if r == libc::SIG_ERR {
        log::warn!("SIGPIPE's default disposition: {}", io::Error::last_os_error());
    }
}

/// Gives the calling thread its own umask (and cwd and root), not the
/// process's: `CLONE_FS` unshared. False where the kernel refuses.
pub fn own_umask() -> bool {
    // SAFETY: CLONE_FS separates only the umask, cwd and root, which
    // graph2aufs never relies on being shared (descriptors stay shared:
    // that is CLONE_FILES).
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FS) }.is_ok()
}

/// Makes `cmd`'s child a daemon's server: `fd` becomes its descriptor
/// `to`, it leads a new session, and it runs in `/`.
pub fn detach_child(cmd: &mut Command, fd: RawFd, to: RawFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec only async-signal-safe calls (dup2,
    // setsid, chdir), on memory prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, to) < 0 || libc::setsid() < 0 || libc::chdir(c"/".as_ptr()) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Takes ownership of descriptor `fd`, which a parent passed to this
/// process for one use (`--ready-fd`). An error if it is not open.
pub fn adopt_inherited(fd: RawFd) -> io::Result<OwnedFd> {
    // (F_GETFD fails with EBADF on a descriptor that is not open.)
    // SAFETY: fcntl(F_GETFD) only reads the descriptor table.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open (checked above), and the parent passed it for this sole
    // use: nothing else in this process owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
