//! A thread's file system ids and supplementary groups (the caller's
//! identity the view takes while it serves a request, see
//! `view::creds`). Linux keeps credentials per thread, and the raw system
//! calls used here change only the calling thread (glibc's `setgroups` and
//! `setfsuid` wrappers may change every thread). Every change is checked.

use rustix::process::Gid;
use rustix::thread as rthread;
use std::io;

/// Which file system id of this thread.
#[derive(Clone, Copy)]
pub enum FsId {
    User,
    Group,
}

/// `setfsuid(id)` or `setfsgid(id)` on this thread: the id before.
fn setfsid(which: FsId, id: u32) -> u32 {
    let nr = match which {
        FsId::User => libc::SYS_setfsuid,
        FsId::Group => libc::SYS_setfsgid,
    };
    // SAFETY: setfsuid and setfsgid take one integer, change at most this
    // thread's file system id, and touch no memory.
    let before = unsafe { libc::syscall(nr, libc::c_long::from(id)) };
    before as u32
}

/// This thread's file system user or group id (an invalid id, -1, changes
/// nothing and answers the current one).
pub fn fsid(which: FsId) -> u32 {
    setfsid(which, u32::MAX)
}

/// Sets this thread's file system id, checked: the calls report no error
/// (a refused change answers the id before too), so the id is read back.
pub fn set_fsid(which: FsId, id: u32) -> io::Result<()> {
    setfsid(which, id);
    let now = fsid(which);
    if now == id {
        Ok(())
    } else {
        let what = match which {
            FsId::User => "fsuid",
            FsId::Group => "fsgid",
        };
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("setting the {what} to {id} was refused (it is {now})"),
        ))
    }
}

/// Sets this thread's supplementary groups (this thread only, unlike
/// glibc's `setgroups`).
pub fn set_groups(groups: &[u32]) -> io::Result<()> {
    let gids: Vec<Gid> = groups.iter().map(|&g| Gid::from_raw(g)).collect();
    rthread::set_thread_groups(&gids).map_err(|e| io::Error::new(e.kind(), format!("setgroups: {e}")))
}
