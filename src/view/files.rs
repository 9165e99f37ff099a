//! The view's open files: one table of handles, the page cache and
//! passthrough opens per inode with their shared backing id, and the switch
//! of open handles to a layer's copy.

use super::creds::Caller;
use fuser::{FopenFlags, Request};
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// An open file of the view.
struct Handle {
    file: Arc<File>,
    _backing: Option<Arc<fuser::BackingId>>,
    /// The node, when its data passes through graph2aufs: through the page
    /// cache, or with direct I/O beside passthrough opens (see
    /// [`Files::add`]).
    served: Option<u64>,
    /// Counted among the node's page cache opens.
    cached: bool,
    /// The flags it was opened with (to open it again elsewhere).
    flags: i32,
    /// Who opened it, when not root: what the kernel writes back of its
    /// pages (a request of no process) is written as them.
    opener: Option<Arc<Caller>>,
}

/// A file opened for the kernel: its handle, its inode's backing id where
/// the kernel passes its data through, and whether its data passes through
/// graph2aufs all the same (FOPEN_DIRECT_IO).
pub(super) struct Opened {
    pub fh: u64,
    pub backing: Option<Arc<fuser::BackingId>>,
    pub direct: bool,
}

/// The view's open files, shared with the migrator (a layer copied to
/// another file system switches its open files to the copy).
pub(super) struct Files {
    next_fh: AtomicU64,
    handles: Mutex<HashMap<u64, Handle>>,
    /// Open handles per inode served through the page cache.
    cached_opens: Mutex<HashMap<u64, usize>>,
    /// One backing id per inode, shared by all its opens.
    backing: Mutex<HashMap<u64, std::sync::Weak<fuser::BackingId>>>,
}

impl Default for Files {
    fn default() -> Files {
        Files {
            // (Handle 0 is no handle: a synthesized file opened for reading.)
            next_fh: AtomicU64::new(1),
            handles: Mutex::default(),
            cached_opens: Mutex::default(),
            backing: Mutex::default(),
        }
    }
}

impl Files {
    /// How many of the nodes `ids` are open with kernel passthrough (their
    /// data never reaches graph2aufs: no open of theirs can be switched).
    pub(super) fn passthrough_opens(&self, ids: impl Iterator<Item = u64>) -> usize {
        let backing = self.backing.lock().expect("never poisoned");
        ids.filter(|id| backing.get(id).is_some_and(|w| w.strong_count() > 0))
            .count()
    }

    /// The handles open through the page cache, opened again with `open`
    /// (node id, the handle's flags; `None`: not this node's), for
    /// [`Files::switch`].
    pub(super) fn reopen(&self, open: impl Fn(u64, i32) -> Option<io::Result<File>>) -> io::Result<Reopened> {
        let handles = self.handles.lock().expect("never poisoned");
        let mut new = Vec::new();
        for (fh, h) in handles.iter() {
            let Some(id) = h.served else { continue };
            let flags = h.flags & !(libc::O_TRUNC | libc::O_CREAT | libc::O_EXCL);
            if let Some(file) = open(id, flags) {
                new.push((*fh, Arc::new(file?)));
            }
        }
        Ok(new)
    }

    /// The backing file of an open handle.
    pub(super) fn handle_file(&self, fh: u64) -> Option<Arc<File>> {
        let handles = self.handles.lock().expect("never poisoned");
        handles.get(&fh).map(|h| h.file.clone())
    }

    /// The backing file of an open handle, and whom `req` changes it for:
    /// its caller, or for a request of no process (the kernel writing back
    /// pages of a file served through the page cache) whoever opened it.
    pub(super) fn handle_for(&self, fh: u64, req: &Request) -> Option<(Arc<File>, Option<Caller>)> {
        let handles = self.handles.lock().expect("never poisoned");
        let h = handles.get(&fh)?;
        let caller = match req.pid() {
            0 if req.uid() == 0 => h.opener.as_deref().cloned(),
            _ => Caller::of(req),
        };
        Some((h.file.clone(), caller))
    }

    /// A handle for an open file (by `caller`, `None` for root), with its
    /// inode's backing id where `passthrough` allows one.
    ///
    /// The kernel serves all opens of an inode one way at a time: through
    /// the page cache while any such open lasts, else passthrough while a
    /// passthrough open lasts, all with one backing file, whatever this open
    /// would rather have. A backing file reads and writes with the
    /// credentials of the server, which registered it (the kernel requires
    /// CAP_SYS_ADMIN for that): a write open by another than root never
    /// gets one of its own, and where its inode's backing file is in use,
    /// it shares it with direct I/O (FOPEN_DIRECT_IO comes before
    /// passthrough in the kernel), so that its writes reach graph2aufs,
    /// which makes them as the caller (see [`super::creds`]).
    pub(super) fn add(
        &self,
        ino: u64,
        file: File,
        flags: i32,
        passthrough: Passthrough,
        caller: Option<Caller>,
        open_backing: impl FnOnce(&File) -> io::Result<fuser::BackingId>,
    ) -> io::Result<Opened> {
        let mut cached = self.cached_opens.lock().expect("never poisoned");
        let cache_mode = cached.get(&ino).is_some_and(|&n| n > 0);
        let as_server = flags & libc::O_ACCMODE == libc::O_RDONLY || caller.as_ref().is_none_or(|c| c.uid == 0);
        let backing = if passthrough.kernel && !cache_mode {
            self.backing_id(ino, (passthrough.this_open && as_server).then_some(open_backing), &file)
        } else {
            None
        };
        let direct = backing.is_some() && !as_server;
        if backing.is_none() {
            *cached.entry(ino).or_default() += 1;
        }
        let fh = self.add_handle(Handle {
            file: Arc::new(file),
            _backing: backing.clone(),
            served: (backing.is_none() || direct).then_some(ino),
            cached: backing.is_none(),
            flags,
            opener: caller.map(Arc::new),
        });
        Ok(Opened { fh, backing, direct })
    }

    /// The backing id of inode `ino`: the one its passthrough opens use, or
    /// a new one from `open_backing` (if given) where none is in use.
    fn backing_id(
        &self,
        ino: u64,
        open_backing: Option<impl FnOnce(&File) -> io::Result<fuser::BackingId>>,
        file: &File,
    ) -> Option<Arc<fuser::BackingId>> {
        let mut map = self.backing.lock().expect("never poisoned");
        if let Some(id) = map.get(&ino).and_then(|w| w.upgrade()) {
            return Some(id);
        }
        match open_backing?(file) {
            Ok(id) => {
                let id = Arc::new(id);
                map.insert(ino, Arc::downgrade(&id));
                Some(id)
            }
            Err(e) => {
                log::debug!("no passthrough for inode {ino}: {e}");
                None
            }
        }
    }
    fn add_handle(&self, h: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::SeqCst);
        self.handles.lock().expect("never poisoned").insert(fh, h);
        fh
    }

    /// The kernel closed handle `fh`.
    pub(super) fn release(&self, fh: u64) {
        let gone = self.handles.lock().expect("never poisoned").remove(&fh);
        if let Some(Handle {
            cached: true,
            served: Some(ino),
            ..
        }) = gone
        {
            let mut cached = self.cached_opens.lock().expect("never poisoned");
            if let Some(n) = cached.get_mut(&ino) {
                *n -= 1;
                if *n == 0 {
                    cached.remove(&ino);
                }
            }
        }
    }

    /// Handles serve the files [`Files::reopen`] opened from now on.
    pub(super) fn switch(&self, new: Reopened) {
        let mut handles = self.handles.lock().expect("never poisoned");
        for (fh, file) in new {
            if let Some(h) = handles.get_mut(&fh) {
                h.file = file;
            }
        }
    }
}

impl Opened {
    /// The open flags of a passthrough open.
    pub(super) fn fopen_flags(&self) -> FopenFlags {
        if self.direct {
            FopenFlags::FOPEN_DIRECT_IO
        } else {
            FopenFlags::empty()
        }
    }
}

/// Whether an open's data may pass through the kernel: the view's (the
/// kernel offers passthrough and it is on), and this open's own (not a file
/// once synthesized, nor one in a layer to be copied to another file
/// system, whose opens switch to the copy).
#[derive(Clone, Copy)]
pub(super) struct Passthrough {
    pub kernel: bool,
    pub this_open: bool,
}

/// Handles and the files they are to serve.
pub(super) type Reopened = Vec<(u64, Arc<File>)>;

/// The open flags that change a file: its item migrates first.
pub(super) const WRITE_FLAGS: i32 = libc::O_WRONLY | libc::O_RDWR | libc::O_TRUNC | libc::O_CREAT | libc::O_APPEND;
