//! The caller's identity on a serving thread. Work done for a caller other
//! than root (creating, writing, allocating, changing attributes, renaming)
//! runs with the caller's file system ids and supplementary groups and with
//! no capability the caller lacks, as virtiofsd does: the backing file
//! system then applies its rules to the caller as natively (root-reserved
//! blocks and quotas need CAP_SYS_RESOURCE; setuid bits cleared by writes,
//! setgid directories, permission checks). Root callers keep the server's
//! capabilities.
//!
//! Linux keeps credentials per thread, and the raw system calls used here
//! change only the calling thread (glibc's `setgroups` would change every
//! thread). Every switch is checked: a request whose caller's identity
//! cannot be taken fails, it never runs as the server; a thread that cannot
//! take the server's identity back stops serving (it panics: its request
//! fails with EIO, the other threads go on), after saying why in the log.

use crate::sys::creds::{fsid, set_fsid, set_groups, FsId};
use fuser::Request;
use rustix::fs::{self as rfs, Mode};
use rustix::process::Gid;
use rustix::thread::{self as rthread, CapabilitySet, CapabilitySets};
use std::fs::File;
use std::io;

/// Whom a request is served for, when not root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// The caller's effective capabilities; `None`: the server's (a root
    /// caller).
    pub caps: Option<CapabilitySet>,
}

/// The parts of `/proc/<pid>/status` a caller's identity needs.
struct ProcStatus {
    groups: Vec<u32>,
    caps: CapabilitySet,
}

/// The supplementary groups and effective capabilities of thread `pid`;
/// `None` if it is gone (its request then runs with neither).
fn proc_status(pid: u32) -> Option<ProcStatus> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mut groups = None;
    let mut caps = None;
    for line in status.lines() {
        if let Some(g) = line.strip_prefix("Groups:") {
            groups = g.split_whitespace().map(|g| g.parse().ok()).collect();
        } else if let Some(c) = line.strip_prefix("CapEff:") {
            caps = u64::from_str_radix(c.trim(), 16)
                .ok()
                .map(CapabilitySet::from_bits_retain);
        }
    }
    Some(ProcStatus {
        groups: groups?,
        caps: caps?,
    })
}

impl Caller {
    /// The caller of `req`; `None` for root with root's group (it keeps the
    /// server's identity).
    pub fn of(req: &Request) -> Option<Caller> {
        Caller::from_ids(req.uid(), req.gid(), req.pid())
    }

    pub fn from_ids(uid: u32, gid: u32, pid: u32) -> Option<Caller> {
        if uid == 0 && gid == 0 {
            return None;
        }
        // (pid 0: a request the kernel makes itself, e.g. a writeback.)
        let status = Some(pid).filter(|&p| p != 0).and_then(proc_status);
        let (groups, caps) = match status {
            Some(s) => (s.groups, s.caps),
            None => (Vec::new(), CapabilitySet::empty()),
        };
        Some(Caller {
            uid,
            gid,
            groups,
            caps: (uid != 0).then_some(caps),
        })
    }

    /// Whether the caller is in group `gid`.
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

/// What the thread was before it took a caller's identity.
struct Server {
    fsuid: u32,
    fsgid: u32,
    caps: CapabilitySets,
    groups: Vec<u32>,
    /// The groups were changed (setting them, even to the same ones,
    /// needs CAP_SETGID: a refused change is not undone).
    groups_changed: bool,
}

/// The caller's identity on this thread while it lives; the server's again
/// after. See the module doc.
#[must_use]
pub struct AsCaller {
    server: Option<Server>,
}

impl AsCaller {
    /// Takes `caller`'s identity on this thread (nothing for `None`). An
    /// error (EPERM, with why in the log) if any part of it cannot be
    /// taken; the thread is then the server again.
    pub fn enter(caller: Option<&Caller>) -> io::Result<AsCaller> {
        let Some(c) = caller else {
            return Ok(AsCaller { server: None });
        };
        let server = Server {
            fsuid: fsid(FsId::User),
            fsgid: fsid(FsId::Group),
            caps: rthread::capabilities(None)?,
            groups: rustix::process::getgroups()?.into_iter().map(Gid::as_raw).collect(),
            groups_changed: false,
        };
        let effective = c.caps.map(|caps| server.caps.effective & caps);
        // From here on, dropping the guard restores whatever was changed.
        let mut guard = AsCaller { server: Some(server) };
        let mut switch = || {
            set_groups(&c.groups)?;
            if let Some(s) = &mut guard.server {
                s.groups_changed = true;
            }
            set_fsid(FsId::Group, c.gid)?;
            set_fsid(FsId::User, c.uid)?;
            if let Some(effective) = effective {
                let mut sets = rthread::capabilities(None)?;
                sets.effective = effective;
                rthread::set_capabilities(None, sets).map_err(|e| io::Error::new(e.kind(), format!("capset: {e}")))?;
            }
            Ok::<_, io::Error>(())
        };
        match switch() {
            Ok(()) => Ok(guard),
            Err(e) => {
                log::warn!(
                    "a request of uid {} gid {} is refused: its identity cannot be taken ({e})",
                    c.uid,
                    c.gid
                );
                drop(guard);
                Err(io::Error::from_raw_os_error(libc::EPERM))
            }
        }
    }

    /// Back to the server's identity. (Its file system ids are its real
    /// ones, and its capabilities are within what it is permitted: taking
    /// them back needs no capability.)
    fn restore(server: &Server) -> io::Result<()> {
        set_fsid(FsId::User, server.fsuid)?;
        set_fsid(FsId::Group, server.fsgid)?;
        // (Setting the fsuid back to 0 raised the file system capabilities
        // the server held: all of them are set as they were.)
        rthread::set_capabilities(None, server.caps).map_err(|e| io::Error::new(e.kind(), format!("capset: {e}")))?;
        if server.groups_changed {
            set_groups(&server.groups)?;
        }
        Ok(())
    }
}

impl Drop for AsCaller {
    fn drop(&mut self) {
        let Some(server) = &self.server else { return };
        if let Err(e) = AsCaller::restore(server) {
            log::error!("a serving thread cannot take the server's identity back ({e}): it stops serving");
            if !std::thread::panicking() {
                panic!("a serving thread cannot take the server's identity back: {e}");
            }
        }
    }
}

/// The caller's umask on this serving thread while it creates an entry: the
/// backing file system then applies it as natively (not at all where the
/// parent has a default ACL). The view asks the kernel for modes unmasked
/// (FUSE_DONT_MASK); where the kernel does not offer it, modes arrive
/// masked already, and masking twice changes nothing. A thread takes its
/// own umask at its first use; where it cannot, the caller's umask is not
/// applied. Dropped, the umask is 0 again (the thread's own, or else the
/// process's).
pub(super) struct CallerUmask;

impl CallerUmask {
    pub(super) fn set(umask: u32) -> CallerUmask {
        thread_local! {
            static OWN_FS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        }
        if !OWN_FS.get() {
            // This thread's own umask (and cwd), not the process's.
            if crate::sys::process::own_umask() {
                OWN_FS.set(true);
            }
        }
        if OWN_FS.get() {
            rustix::process::umask(rustix::fs::Mode::from_raw_mode(umask & 0o777));
        }
        CallerUmask
    }
}

impl Drop for CallerUmask {
    fn drop(&mut self) {
        rustix::process::umask(rustix::fs::Mode::empty());
    }
}

/// After a write by `caller` (not root): setuid goes, and setgid where the
/// kernel drops it (the group may execute, or the caller is not in the
/// file's group), as on a native file system.
pub(super) fn kill_privileges(file: &File, caller: &Caller) {
    let Ok(st) = rfs::fstat(file) else { return };
    let mode = st.st_mode & 0o7777;
    if mode & (libc::S_ISUID | libc::S_ISGID) == 0 {
        return;
    }
    let mut new = mode & !libc::S_ISUID;
    if mode & libc::S_ISGID != 0 && (mode & libc::S_IXGRP != 0 || !caller.in_group(st.st_gid)) {
        new &= !libc::S_ISGID;
    }
    if new != mode {
        if let Err(e) = rfs::fchmod(file, Mode::from_raw_mode(new)) {
            log::warn!("clearing setuid/setgid bits after a write by uid {}: {e}", caller.uid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a thread of its own: the credentials it changes go with
    /// it.
    fn on_thread<R: Send>(f: impl FnOnce() -> R + Send) -> R {
        std::thread::scope(|s| s.spawn(f).join().expect("the thread ends"))
    }

    fn root() -> bool {
        rustix::process::geteuid().is_root()
    }

    #[test]
    fn a_caller_runs_with_its_ids_and_without_capabilities_and_the_server_is_back_after() {
        if !root() {
            eprintln!("SKIPPED: needs root");
            return;
        }
        on_thread(|| {
            let before = rthread::capabilities(None).unwrap();
            let caller = Caller {
                uid: 4242,
                gid: 4243,
                groups: vec![4244],
                caps: Some(CapabilitySet::empty()),
            };
            {
                let _as = AsCaller::enter(Some(&caller)).unwrap();
                assert_eq!((fsid(FsId::User), fsid(FsId::Group)), (4242, 4243));
                let now = rthread::capabilities(None).unwrap();
                assert!(now.effective.is_empty(), "{:?}", now.effective);
                let groups: Vec<u32> = rustix::process::getgroups()
                    .unwrap()
                    .into_iter()
                    .map(Gid::as_raw)
                    .collect();
                assert_eq!(groups, vec![4244]);
            }
            assert_eq!((fsid(FsId::User), fsid(FsId::Group)), (0, 0));
            assert_eq!(rthread::capabilities(None).unwrap(), before);
        });
    }

    #[test]
    fn a_caller_keeps_only_the_capabilities_it_has() {
        if !root() {
            eprintln!("SKIPPED: needs root");
            return;
        }
        on_thread(|| {
            let caller = Caller {
                uid: 4242,
                gid: 4242,
                groups: vec![],
                caps: Some(CapabilitySet::DAC_OVERRIDE | CapabilitySet::SYS_RESOURCE),
            };
            let server = rthread::capabilities(None).unwrap().effective;
            let _as = AsCaller::enter(Some(&caller)).unwrap();
            let now = rthread::capabilities(None).unwrap().effective;
            assert_eq!(
                now,
                server & (CapabilitySet::DAC_OVERRIDE | CapabilitySet::SYS_RESOURCE)
            );
        });
    }

    #[test]
    fn a_thread_without_cap_setuid_refuses_the_caller_and_stays_the_server() {
        if !root() {
            eprintln!("SKIPPED: needs root");
            return;
        }
        on_thread(|| {
            let mut sets = rthread::capabilities(None).unwrap();
            sets.effective.remove(CapabilitySet::SETUID);
            sets.permitted.remove(CapabilitySet::SETUID);
            rthread::set_capabilities(None, sets).unwrap();
            let caller = Caller {
                uid: 4242,
                gid: 4242,
                groups: vec![],
                caps: Some(CapabilitySet::empty()),
            };
            let e = AsCaller::enter(Some(&caller)).err().expect("refused");
            assert_eq!(e.raw_os_error(), Some(libc::EPERM));
            assert_eq!((fsid(FsId::User), fsid(FsId::Group)), (0, 0));
            assert_eq!(rthread::capabilities(None).unwrap(), sets);
        });
    }

    #[test]
    fn a_thread_without_cap_setgid_refuses_the_caller_and_stays_the_server() {
        if !root() {
            eprintln!("SKIPPED: needs root");
            return;
        }
        on_thread(|| {
            let groups = rustix::process::getgroups().unwrap();
            let mut sets = rthread::capabilities(None).unwrap();
            sets.effective.remove(CapabilitySet::SETGID);
            sets.permitted.remove(CapabilitySet::SETGID);
            rthread::set_capabilities(None, sets).unwrap();
            let caller = Caller {
                uid: 4242,
                gid: 4242,
                groups: vec![4242],
                caps: Some(CapabilitySet::empty()),
            };
            let e = AsCaller::enter(Some(&caller)).err().expect("refused");
            assert_eq!(e.raw_os_error(), Some(libc::EPERM));
            assert_eq!((fsid(FsId::User), fsid(FsId::Group)), (0, 0));
            assert_eq!(rthread::capabilities(None).unwrap(), sets);
            assert_eq!(rustix::process::getgroups().unwrap(), groups);
        });
    }

    #[test]
    fn a_root_caller_of_another_group_keeps_the_server_s_capabilities() {
        if !root() {
            eprintln!("SKIPPED: needs root");
            return;
        }
        on_thread(|| {
            let before = rthread::capabilities(None).unwrap();
            let c = Caller::from_ids(0, 4242, std::process::id()).expect("not the server's own group");
            let _as = AsCaller::enter(Some(&c)).unwrap();
            assert_eq!(fsid(FsId::Group), 4242);
            assert_eq!(rthread::capabilities(None).unwrap(), before);
        });
    }
}
