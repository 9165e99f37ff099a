//! File handles (`name_to_handle_at(2)`, `open_by_handle_at(2)`): a
//! directory named by its inode and generation, reopened without a path.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

/// Bytes of a handle graph2aufs accepts (the kernel's MAX_HANDLE_SZ).
const MAX_HANDLE: usize = 128;

/// The handle of the file `fd` refers to: the id of the mount it is
/// decoded on, its type and its bytes.
pub fn name_to_handle(fd: impl AsFd) -> io::Result<(i32, i32, Box<[u8]>)> {
    let mut buf = HandleBuf::new();
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `buf` holds a `struct file_handle` header whose
    // `handle_bytes` says how many bytes follow it; the path is an empty
    // NUL-terminated string and `fd` a valid descriptor.
    let r = unsafe {
        libc::name_to_handle_at(
            fd.as_fd().as_raw_fd(),
            c"".as_ptr(),
            buf.as_mut_ptr(),
            &mut mount_id,
            libc::AT_EMPTY_PATH,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((mount_id, buf.kind(), Box::from(buf.bytes())))
}

/// Opens the directory a handle made by [`name_to_handle`] names, as an
/// `O_PATH` descriptor; `mount` is a real (not `O_PATH`) descriptor on its
/// mount.
pub fn open_by_handle(mount: impl AsFd, kind: i32, bytes: &[u8]) -> io::Result<OwnedFd> {
    if bytes.len() > MAX_HANDLE {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut buf = HandleBuf::from(kind, bytes);
    // SAFETY: `buf` is a well-formed `struct file_handle` (its length checked
    // above); the mount descriptor is valid for the call.
    let fd = unsafe {
        libc::open_by_handle_at(
            mount.as_fd().as_raw_fd(),
            buf.as_mut_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A `struct file_handle` (linux/fcntl.h) with room for the largest handle.
#[repr(C)]
struct HandleBuf {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; MAX_HANDLE],
}

impl HandleBuf {
    fn new() -> HandleBuf {
        HandleBuf {
            handle_bytes: MAX_HANDLE as u32,
            handle_type: 0,
            f_handle: [0; MAX_HANDLE],
        }
    }

    fn from(kind: i32, bytes: &[u8]) -> HandleBuf {
        let mut b = HandleBuf::new();
        b.handle_bytes = bytes.len() as u32;
        b.handle_type = kind;
        b.f_handle[..bytes.len()].copy_from_slice(bytes);
        b
    }

    fn as_mut_ptr(&mut self) -> *mut libc::file_handle {
        (self as *mut HandleBuf).cast()
    }

    fn kind(&self) -> i32 {
        self.handle_type
    }

    fn bytes(&self) -> &[u8] {
        &self.f_handle[..(self.handle_bytes as usize).min(MAX_HANDLE)]
    }
}
