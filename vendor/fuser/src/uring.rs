//! FUSE over io_uring (added by graph2aufs to the vendored fuser).
//!
//! Linux 6.14 and later (built with `CONFIG_FUSE_IO_URING`, and enabled at run
//! time by `echo Y > /sys/module/fuse/parameters/enable_uring`) can pass FUSE
//! requests through io_uring instead of `read(2)`/`write(2)` on `/dev/fuse`.
//! The kernel keeps one queue per possible CPU and puts each request on the
//! queue of the CPU its caller runs on; a server thread pinned to that CPU
//! gets it as the completion of a `FUSE_IO_URING_CMD_REGISTER` (first time) or
//! `FUSE_IO_URING_CMD_COMMIT_AND_FETCH` (then) command it submitted, and
//! answers with the next `COMMIT_AND_FETCH`: one system call per request,
//! and no wakeup of a thread on another CPU.
//!
//! The protocol (`include/uapi/linux/fuse.h`, `fs/fuse/dev_uring.c`):
//! - the server asks for it with `FUSE_OVER_IO_URING` in its `FUSE_INIT` reply,
//!   which the kernel only offers when `enable_uring` is set;
//! - every ring entry is registered with an `IORING_OP_URING_CMD` in a
//!   128-byte SQE, whose 80-byte command area holds a `fuse_uring_cmd_req`
//!   (flags, commit id, queue id), whose `addr` points at two iovecs (the
//!   288-byte `fuse_uring_req_header` and the payload buffer, at least as
//!   large as the kernel's largest request) and whose `len` is 2;
//! - a request arrives as the completion of the entry's command: its
//!   `fuse_in_header` in `in_out`, the opcode's fixed argument in `op_in`, the
//!   rest (names, write data) in the payload, `payload_sz` and `commit_id` in
//!   `ring_ent_in_out`;
//! - the reply is a `fuse_out_header` in `in_out`, the reply's body in the
//!   payload with its size in `payload_sz`, committed by a `COMMIT_AND_FETCH`
//!   naming the request's `commit_id`, which also re-arms the entry;
//! - the kernel uses the rings once every queue has an entry registered;
//!   until then, and for `FORGET` and `INTERRUPT` always, requests still come
//!   through `/dev/fuse`, so one classic reader keeps running;
//! - at unmount (or abort), each armed entry completes with `-ENOTCONN`, and a
//!   commit of an entry held by the server fails: a ring thread ends when all
//!   of its entries have.
//!
//! Each ring thread owns one io_uring with one entry per ring thread (the
//! thread serves one request at a time; more threads per queue serve more at
//! once), and runs the requests it gets on itself. A reply sent from another
//! thread (a filesystem that answers later) is written to the entry and
//! queued under the ring's lock, and the ring thread is woken through an
//! eventfd to submit it: every command of a ring is submitted by its own
//! thread, which therefore receives every request of its entries.

use std::io;
use std::io::IoSlice;
use std::os::fd::AsFd;
use std::os::fd::AsRawFd;
use std::os::fd::FromRawFd;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;

use io_uring::IoUring;
use io_uring::cqueue;
use io_uring::opcode;
use io_uring::squeue;
use io_uring::types;
use log::debug;
use log::error;
use log::warn;
use parking_lot::Mutex;
use zerocopy::FromBytes;
use zerocopy::IntoBytes;

use crate::Filesystem;
use crate::channel::ChannelSender;
use crate::dev_fuse::DevFuse;
use crate::ll;
use crate::ll::fuse_abi as abi;
use crate::read_buf::FuseReadBuf;
use crate::request::RequestWithSender;
use crate::session::SessionEventLoop;

/// `FUSE_URING_IN_OUT_HEADER_SZ`: room for the in/out header.
const IN_OUT_SZ: usize = 128;
/// `FUSE_URING_OP_IN_OUT_SZ`: room for the opcode's fixed argument.
const OP_IN_SZ: usize = 128;
/// `struct fuse_uring_ent_in_out`: flags, commit_id, payload_sz, padding, reserved.
const ENT_IN_OUT_SZ: usize = 32;
/// `struct fuse_uring_req_header`.
const HEADER_SZ: usize = IN_OUT_SZ + OP_IN_SZ + ENT_IN_OUT_SZ;
/// Offsets in the header of `ring_ent_in_out.commit_id` and `.payload_sz`.
const COMMIT_ID_AT: usize = IN_OUT_SZ + OP_IN_SZ + 8;
const PAYLOAD_SZ_AT: usize = IN_OUT_SZ + OP_IN_SZ + 16;
/// `enum fuse_uring_cmd`.
const FUSE_IO_URING_CMD_REGISTER: u32 = 1;
const FUSE_IO_URING_CMD_COMMIT_AND_FETCH: u32 = 2;
/// `FUSE_MIN_READ_BUFFER` of the kernel: the payload is never smaller.
const MIN_PAYLOAD: usize = 8192;
/// The CQE user data of the eventfd poll (entries use their index).
const WAKE: u64 = u64::MAX;
/// Offset of `len` in a submission queue entry (`struct io_uring_sqe`).
const SQE_LEN_AT: usize = 24;

/// How requests travel between the kernel and the server.
#[derive(Debug, Clone, Copy, Default, Eq, PartialEq)]
pub enum Transport {
    /// `read(2)` and `write(2)` on `/dev/fuse`.
    #[default]
    Classic,
    /// FUSE over io_uring; the mount fails where the kernel does not offer it.
    Uring,
    /// FUSE over io_uring where the kernel offers it, `/dev/fuse` otherwise.
    Auto,
}

/// Whether this kernel offers FUSE over io_uring to new mounts:
/// `/sys/module/fuse/parameters/enable_uring` is `Y` (it exists on kernels
/// built with `CONFIG_FUSE_IO_URING`).
pub fn uring_enabled() -> bool {
    std::fs::read_to_string("/sys/module/fuse/parameters/enable_uring")
        .map(|s| s.trim() == "Y")
        .unwrap_or(false)
}

/// Possible CPUs (the kernel has one queue for each): `0-3` or `0,2-5`.
fn possible_cpus() -> io::Result<usize> {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    let bad = || io::Error::new(io::ErrorKind::InvalidData, format!("cpu/possible: {s:?}"));
    let mut n = 0;
    for range in s.trim().split(',') {
        let (a, b) = range.split_once('-').unwrap_or((range, range));
        let (a, b): (usize, usize) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
        if b < a {
            return Err(bad());
        }
        n += b - a + 1;
    }
    if n == 0 || n > usize::from(u16::MAX) {
        return Err(bad());
    }
    Ok(n)
}

/// An anonymous private mapping, touched lazily (the payload buffers are as
/// large as the largest request, but rarely filled).
#[derive(Debug)]
struct Region {
    ptr: *mut u8,
    len: usize,
}

impl Region {
    fn new(len: usize) -> io::Result<Region> {
        // SAFETY: a new anonymous mapping, no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Region {
            ptr: ptr.cast(),
            len,
        })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; nothing points
        // into it any more (its ring is gone).
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// One ring entry: a header and a payload buffer the kernel writes requests
/// to and reads replies from, while the entry is armed in the kernel.
#[derive(Debug)]
struct Ent {
    header: *mut u8,
    payload: *mut u8,
    /// The two iovecs of the REGISTER command (read by the kernel when it is
    /// submitted; kept, and at a fixed address, for a resubmission).
    iov: Box<[libc::iovec; 2]>,
    /// The request the entry holds, to name in its commit.
    commit_id: AtomicU64,
}

/// The ring of one ring thread, shared with the replies of its requests.
pub(crate) struct Ring {
    qid: u16,
    ring: IoUring<squeue::Entry128, cqueue::Entry>,
    /// Held while an SQE is written (by the ring thread or a late reply).
    sq: Mutex<()>,
    ents: Box<[Ent]>,
    payload_len: usize,
    /// `/dev/fuse`, the file the commands are for.
    dev: Arc<DevFuse>,
    /// Written by a reply from another thread to wake the ring thread.
    wake: OwnedFd,
    /// The ring thread, once it runs.
    thread: std::sync::OnceLock<std::thread::ThreadId>,
    _headers: Region,
    _payloads: Region,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("qid", &self.qid)
            .field("entries", &self.ents.len())
            .finish_non_exhaustive()
    }
}

// SAFETY: the raw pointers are into the ring's own mappings, which live as
// long as the ring. An entry's buffers are written by the user side only
// while the kernel does not own the entry (between the completion that
// delivered a request and the commit of its reply), by the one reply of
// that request; SQEs are written under `sq`; the CQ is read by the ring
// thread alone.
unsafe impl Send for Ring {}
// SAFETY: as for Send.
unsafe impl Sync for Ring {}

/// The rings of a session, made before the `FUSE_INIT` reply asks for them.
#[derive(Debug)]
pub(crate) struct UringPool {
    pub(crate) rings: Vec<Arc<Ring>>,
    pub(crate) queues: usize,
}

impl UringPool {
    /// A ring thread per `threads / queues` (at least one) on every queue,
    /// with payload buffers of `payload` bytes.
    pub(crate) fn new(dev: &Arc<DevFuse>, threads: usize, payload: usize) -> io::Result<UringPool> {
        let queues = possible_cpus()?;
        let per_queue = threads.div_ceil(queues).max(1);
        let payload = payload.max(MIN_PAYLOAD).next_multiple_of(page_size::get());
        let mut rings = Vec::with_capacity(queues * per_queue);
        for qid in 0..queues {
            for _ in 0..per_queue {
                rings.push(Arc::new(Ring::new(dev.clone(), qid as u16, 1, payload)?));
            }
        }
        Ok(UringPool { rings, queues })
    }

    pub(crate) fn per_queue(&self) -> usize {
        self.rings.len() / self.queues.max(1)
    }
}

impl Ring {
    fn new(dev: Arc<DevFuse>, qid: u16, depth: usize, payload_len: usize) -> io::Result<Ring> {
        let ring = IoUring::<squeue::Entry128, cqueue::Entry>::builder()
            .setup_cqsize(4 * (depth as u32 + 1))
            .build(2 * (depth as u32 + 1))?;
        let headers = Region::new((HEADER_SZ * depth).next_multiple_of(page_size::get()))?;
        let payloads = Region::new(payload_len * depth)?;
        let ents = (0..depth)
            .map(|i| {
                // SAFETY: within the regions just mapped (depth slots each).
                let (header, payload) = unsafe {
                    (
                        headers.ptr.add(i * HEADER_SZ),
                        payloads.ptr.add(i * payload_len),
                    )
                };
                Ent {
                    header,
                    payload,
                    iov: Box::new([
                        libc::iovec {
                            iov_base: header.cast(),
                            iov_len: HEADER_SZ,
                        },
                        libc::iovec {
                            iov_base: payload.cast(),
                            iov_len: payload_len,
                        },
                    ]),
                    commit_id: AtomicU64::new(0),
                }
            })
            .collect();
        // SAFETY: eventfd(2) returns a new descriptor or -1.
        let wake = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if wake < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the descriptor was just made and is owned by nothing else.
        let wake = unsafe { OwnedFd::from_raw_fd(wake) };
        Ok(Ring {
            qid,
            ring,
            sq: Mutex::new(()),
            ents,
            payload_len,
            dev,
            wake,
            thread: std::sync::OnceLock::new(),
            _headers: headers,
            _payloads: payloads,
        })
    }

    /// The SQE of a command of entry `i`.
    fn command(&self, i: usize, cmd_op: u32) -> squeue::Entry128 {
        let ent = &self.ents[i];
        // struct fuse_uring_cmd_req { u64 flags; u64 commit_id; u16 qid; u8 padding[6]; }
        let mut cmd = [0u8; 80];
        if cmd_op == FUSE_IO_URING_CMD_COMMIT_AND_FETCH {
            cmd[8..16].copy_from_slice(&ent.commit_id.load(Ordering::Relaxed).to_ne_bytes());
        }
        cmd[16..18].copy_from_slice(&self.qid.to_ne_bytes());
        let mut op = opcode::UringCmd80::new(types::Fd(self.dev.as_raw_fd()), cmd_op).cmd(cmd);
        if cmd_op == FUSE_IO_URING_CMD_REGISTER {
            op = op.addr(Some(ent.iov.as_ptr() as u64));
        }
        let sqe = op.build().user_data(i as u64);
        if cmd_op == FUSE_IO_URING_CMD_REGISTER {
            with_sqe_len(sqe, 2)
        } else {
            sqe
        }
    }

    /// Queues `sqe` (submitted by the ring thread's next `io_uring_enter`).
    fn push(&self, sqe: &squeue::Entry128) -> io::Result<()> {
        let _g = self.sq.lock();
        // SAFETY: the SQ is only written under `sq`; the entry's buffers
        // (for a REGISTER, its iovecs) outlive the command (they are the
        // ring's own).
        unsafe { self.ring.submission_shared().push(sqe) }
            .map_err(|_| io::Error::other("io_uring submission queue full"))
    }

    /// Commits the reply in `data` (a `fuse_out_header` and the body) for
    /// the request entry `i` holds, and re-arms the entry.
    pub(crate) fn reply(&self, i: usize, data: &[IoSlice<'_>]) -> io::Result<()> {
        let ent = &self.ents[i];
        let total: usize = data.iter().map(|s| s.len()).sum();
        let head = size_of::<abi::fuse_out_header>();
        if total < head {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "reply without header",
            ));
        }
        let body = total - head;
        let mut out = [0u8; 16];
        let (mut at, mut payload_at) = (0usize, 0usize);
        for s in data {
            let mut s: &[u8] = s;
            if at < head {
                let n = (head - at).min(s.len());
                out[at..at + n].copy_from_slice(&s[..n]);
                at += n;
                s = &s[n..];
            }
            if s.is_empty() {
                continue;
            }
            if payload_at + s.len() > self.payload_len {
                break;
            }
            // SAFETY: within the entry's payload buffer, which the kernel
            // does not touch until the commit below.
            unsafe {
                std::ptr::copy_nonoverlapping(s.as_ptr(), ent.payload.add(payload_at), s.len())
            };
            payload_at += s.len();
            at += s.len();
        }
        // struct fuse_out_header { u32 len; i32 error; u64 unique; }
        let mut error = i32::from_ne_bytes(out[4..8].try_into().unwrap());
        let mut payload_sz = body as u32;
        if body > self.payload_len {
            error!(
                "reply of {body} bytes exceeds the ring's payload of {}",
                self.payload_len
            );
            error = -libc::EIO;
            payload_sz = 0;
        }
        out[..4].copy_from_slice(&(head as u32).saturating_add(payload_sz).to_ne_bytes());
        out[4..8].copy_from_slice(&error.to_ne_bytes());
        // SAFETY: the entry's header, not the kernel's until the commit.
        unsafe {
            std::ptr::copy_nonoverlapping(out.as_ptr(), ent.header, head);
            std::ptr::copy_nonoverlapping(
                payload_sz.to_ne_bytes().as_ptr(),
                ent.header.add(PAYLOAD_SZ_AT),
                4,
            );
        }
        self.push(&self.command(i, FUSE_IO_URING_CMD_COMMIT_AND_FETCH))?;
        if self.thread.get() != Some(&std::thread::current().id()) {
            // Not the ring thread (which submits when it waits next): wake it.
            let one = 1u64.to_ne_bytes();
            // SAFETY: writes 8 bytes from a live buffer to our eventfd.
            let r = unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), 8) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EAGAIN) {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// The eventfd poll that wakes the ring thread for late replies.
    fn arm_wake(&self) -> io::Result<()> {
        let poll = opcode::PollAdd::new(
            types::Fd(self.wake.as_fd().as_raw_fd()),
            libc::POLLIN as u32,
        )
        .multi(true)
        .build()
        .user_data(WAKE);
        self.push(&squeue::Entry128::from(poll))
    }

    /// The request entry `i` holds, copied to `buf` as `/dev/fuse` would
    /// deliver it (header, fixed argument, payload): the reply may then be
    /// written to the entry while the request is read. Its length.
    fn request(&self, i: usize, buf: &mut [u8]) -> io::Result<usize> {
        let ent = &self.ents[i];
        let mut header = [0u8; HEADER_SZ];
        // SAFETY: the entry's header, which the kernel finished writing
        // before the completion that handed the entry to us.
        unsafe { std::ptr::copy_nonoverlapping(ent.header, header.as_mut_ptr(), HEADER_SZ) };
        let in_sz = size_of::<abi::fuse_in_header>();
        let (inh, _) = abi::fuse_in_header::read_from_prefix(&header[..])
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "request header"))?;
        let commit_id =
            u64::from_ne_bytes(header[COMMIT_ID_AT..COMMIT_ID_AT + 8].try_into().unwrap());
        let payload_sz =
            u32::from_ne_bytes(header[PAYLOAD_SZ_AT..PAYLOAD_SZ_AT + 4].try_into().unwrap())
                as usize;
        ent.commit_id.store(commit_id, Ordering::Relaxed);
        let len = inh.len as usize;
        // The kernel's `len` counts the header and every argument: the
        // fixed one (in `op_in`) is what the payload does not hold.
        let op_sz = len.checked_sub(in_sz + payload_sz);
        let Some(op_sz) =
            op_sz.filter(|&n| n <= OP_IN_SZ && payload_sz <= self.payload_len && len <= buf.len())
        else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "ring request of {len} bytes with a payload of {payload_sz} (opcode {})",
                    inh.opcode
                ),
            ));
        };
        buf[..in_sz].copy_from_slice(&header[..in_sz]);
        buf[in_sz..in_sz + op_sz].copy_from_slice(&header[IN_OUT_SZ..IN_OUT_SZ + op_sz]);
        // SAFETY: `payload_sz` bytes of the entry's payload (checked against
        // its size above), written by the kernel before the completion.
        unsafe {
            std::ptr::copy_nonoverlapping(
                ent.payload,
                buf[in_sz + op_sz..].as_mut_ptr(),
                payload_sz,
            )
        };
        Ok(len)
    }
}

/// `len` of a 128-byte SQE, which `UringCmd80` leaves at 0 (the kernel
/// wants 2, the number of iovecs, in a REGISTER).
fn with_sqe_len(sqe: squeue::Entry128, len: u32) -> squeue::Entry128 {
    const _: () = assert!(size_of::<squeue::Entry128>() == 128);
    // SAFETY: `Entry128` is `#[repr(C)]`: a `struct io_uring_sqe` (itself
    // `#[repr(C)]`, 64 bytes, `len` a u32 at offset 24 in the kernel ABI)
    // and 64 bytes of command, 128 bytes in all with no padding; every byte
    // pattern is a valid value of it.
    unsafe {
        let mut bytes: [u8; 128] = std::mem::transmute(sqe);
        bytes[SQE_LEN_AT..SQE_LEN_AT + 4].copy_from_slice(&len.to_ne_bytes());
        std::mem::transmute::<[u8; 128], squeue::Entry128>(bytes)
    }
}

/// Pins the calling thread to `cpu` (the queue's CPU: requests of callers on
/// it then wake a server thread on the same CPU). Best effort: a CPU that
/// is offline, or outside the process's set, leaves the thread unpinned.
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET and
    // sched_setaffinity only touch it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            debug!(
                "ring thread of CPU {cpu} not pinned: {}",
                io::Error::last_os_error()
            );
        }
    }
}

/// What ended a ring thread.
pub(crate) enum RingEnd {
    /// Every entry was released (unmount, abort).
    Done,
    /// The kernel refused the entries: the thread should serve `/dev/fuse`.
    Refused,
}

/// A reply's way back: the ring and the entry of its request.
#[derive(Debug, Clone)]
pub(crate) struct UringSender {
    pub(crate) ring: Arc<Ring>,
    pub(crate) ent: usize,
    pub(crate) ch: ChannelSender,
}

impl UringSender {
    pub(crate) fn send(&self, data: &[IoSlice<'_>]) -> io::Result<()> {
        self.ring.reply(self.ent, data)
    }
}

/// The loop of a ring thread: registers the ring's entries, then serves
/// the requests they deliver until every entry is released.
pub(crate) fn ring_loop<FS: Filesystem>(
    ring: Arc<Ring>,
    se: &SessionEventLoop<FS>,
) -> io::Result<RingEnd> {
    let _ = ring.thread.set(std::thread::current().id());
    pin_to(usize::from(ring.qid));
    for i in 0..ring.ents.len() {
        ring.push(&ring.command(i, FUSE_IO_URING_CMD_REGISTER))?;
    }
    ring.arm_wake()?;
    let mut live = ring.ents.len();
    // Entries that delivered a request (their next command is a commit).
    let mut fetched = vec![false; ring.ents.len()];
    let mut refused = false;
    let mut buf = FuseReadBuf::new();
    let buf = buf.as_mut();
    loop {
        match ring.ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
                ) => {}
            Err(e) => return Err(e),
        }
        loop {
            // SAFETY: the CQ is read by this thread alone.
            let Some(cqe) = (unsafe { ring.ring.completion_shared() }).next() else {
                break;
            };
            let (ud, res) = (cqe.user_data(), cqe.result());
            if ud == WAKE {
                let mut n = [0u8; 8];
                // SAFETY: reads 8 bytes into a live buffer from our eventfd
                // (non-blocking: nothing to read is fine).
                let _ = unsafe { libc::read(ring.wake.as_raw_fd(), n.as_mut_ptr().cast(), 8) };
                if !cqueue::more(cqe.flags()) {
                    ring.arm_wake()?;
                }
                continue;
            }
            let i = ud as usize;
            if i >= ring.ents.len() {
                error!("ring {}: completion for unknown entry {ud}", ring.qid);
                continue;
            }
            if res < 0 {
                match -res {
                    libc::EINTR | libc::EAGAIN => {
                        // Try the command again: a commit keeps its reply.
                        let op = if fetched[i] {
                            FUSE_IO_URING_CMD_COMMIT_AND_FETCH
                        } else {
                            FUSE_IO_URING_CMD_REGISTER
                        };
                        ring.push(&ring.command(i, op))?;
                        continue;
                    }
                    libc::ENOTCONN | libc::ECONNABORTED | libc::ECANCELED | libc::ENODEV => {}
                    e if !fetched[i] => {
                        warn!(
                            "FUSE over io_uring: the kernel refused queue {}: {}",
                            ring.qid,
                            io::Error::from_raw_os_error(e)
                        );
                        refused = true;
                    }
                    e => error!(
                        "FUSE over io_uring: queue {}: {}",
                        ring.qid,
                        io::Error::from_raw_os_error(e)
                    ),
                }
                live -= 1;
                if live == 0 {
                    return Ok(if refused {
                        RingEnd::Refused
                    } else {
                        RingEnd::Done
                    });
                }
                continue;
            }
            fetched[i] = true;
            let len = match ring.request(i, buf) {
                Ok(len) => len,
                Err(e) => {
                    // Answer it, so that the entry comes back.
                    error!("{e}");
                    let oh = eio(ring.ents[i].commit_id.load(Ordering::Relaxed));
                    ring.reply(i, &[IoSlice::new(oh.as_bytes())])?;
                    continue;
                }
            };
            let sender = UringSender {
                ring: ring.clone(),
                ent: i,
                ch: se.ch.sender(),
            };
            match RequestWithSender::new_uring(sender, &buf[..len]) {
                Some(req) => {
                    if let Ok(ll::Operation::Destroy(_)) = req.request.operation() {
                        req.reply::<crate::ReplyEmpty>().ok();
                    } else {
                        req.dispatch(se);
                    }
                }
                // (Logged by the parser.) Answered, so that the entry comes back.
                None => ring.reply(
                    i,
                    &[IoSlice::new(
                        eio(ring.ents[i].commit_id.load(Ordering::Relaxed)).as_bytes(),
                    )],
                )?,
            }
        }
    }
}

/// The reply header of an EIO to request `unique`.
fn eio(unique: u64) -> abi::fuse_out_header {
    abi::fuse_out_header {
        len: size_of::<abi::fuse_out_header>() as u32,
        error: -libc::EIO,
        unique,
    }
}
