//! The POSIX conformance checks: acting as another user (per-thread
//! credentials), and checks that run the same steps in one tree and say
//! what they saw, line by line, so that the native tree and the view can
//! be compared: time updates, rename and O_APPEND and O_EXCL races,
//! O_TMPFILE, locks held by a child process, mmap coherence, long names
//! and deep paths.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The unprivileged user the checks act as, and a group it belongs to
/// besides its own.
pub const USER: u32 = 4242;
pub const OTHER: u32 = 4243;

/// Runs `f` on a new thread with the credentials `uid`, `gid` and
/// supplementary `groups`, and no capabilities: Linux keeps credentials per
/// thread (the raw system calls change only the calling thread; glibc's
/// wrappers would change every thread), and a thread that ends takes them
/// along. Requests to the view carry the thread's fsuid and fsgid.
#[track_caller]
pub fn as_user<R: Send>(uid: u32, gid: u32, groups: &[u32], f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| {
        s.spawn(move || {
            let groups: Vec<libc::gid_t> = groups.to_vec();
            // SAFETY: plain system calls on this thread's credentials, with
            // a valid array for setgroups.
            unsafe {
                assert_eq!(
                    libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()),
                    0,
                    "setgroups: {}",
                    std::io::Error::last_os_error()
                );
                assert_eq!(
                    libc::syscall(libc::SYS_setresgid, gid, gid, gid),
                    0,
                    "setresgid: {}",
                    std::io::Error::last_os_error()
                );
                assert_eq!(
                    libc::syscall(libc::SYS_setresuid, uid, uid, uid),
                    0,
                    "setresuid: {}",
                    std::io::Error::last_os_error()
                );
            }
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// A C string of a path, made before a fork (the child must not allocate).
pub fn c_path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("a path without NUL")
}

/// The errno of the last failed libc call, as a number.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// What one check saw in one tree, line by line: compared between the
/// native tree and the view.
pub type Lines = Vec<String>;

/// An outcome for the lines: the value, or the errno's name.
pub fn res<T: std::fmt::Debug>(r: std::io::Result<T>) -> String {
    match r {
        Ok(v) => format!("ok {v:?}"),
        Err(e) => format!("err {}", e.raw_os_error().map_or_else(|| e.to_string(), errno_name)),
    }
}

pub fn errno_name(e: i32) -> String {
    let name = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::EACCES => "EACCES",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ELOOP => "ELOOP",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ENXIO => "ENXIO",
        libc::ESTALE => "ESTALE",
        _ => return format!("errno {e}"),
    };
    name.to_string()
}

fn rustix_res<T: std::fmt::Debug>(r: rustix::io::Result<T>) -> String {
    res(r.map_err(std::io::Error::from))
}

// ---------------------------------------------------------------------------
// Time updates
// ---------------------------------------------------------------------------

/// Which of an entry's times an action changed: `a+m=c+` (changed, same).
fn changed(before: &std::fs::Metadata, after: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    let mark = |b: bool| if b { '+' } else { '=' };
    format!(
        "a{}m{}c{}",
        mark((before.atime(), before.atime_nsec()) != (after.atime(), after.atime_nsec())),
        mark((before.mtime(), before.mtime_nsec()) != (after.mtime(), after.mtime_nsec())),
        mark((before.ctime(), before.ctime_nsec()) != (after.ctime(), after.ctime_nsec())),
    )
}

/// The entries an action is watched on: before it, their access times are
/// set decades back (so that `relatime` would update them) and the clock
/// moves on; after it, which of their times changed.
struct Watch {
    entries: Vec<(&'static str, PathBuf)>,
    before: Vec<std::io::Result<std::fs::Metadata>>,
}

impl Watch {
    fn on(entries: &[(&'static str, &Path)]) -> Watch {
        let old = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 1_000_000_000,
                tv_nsec: 0,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_OMIT,
            },
        };
        for (_, p) in entries {
            rustix::fs::utimensat(rustix::fs::CWD, *p, &old, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                .unwrap_or_else(|e| panic!("setting the atime of {}: {e}", p.display()));
        }
        // Past the kernel's timestamp granularity (a jiffy, at most 10 ms).
        std::thread::sleep(std::time::Duration::from_millis(25));
        Watch {
            entries: entries.iter().map(|(l, p)| (*l, p.to_path_buf())).collect(),
            before: entries.iter().map(|(_, p)| std::fs::symlink_metadata(p)).collect(),
        }
    }

    /// The line for `action`, which gave `r`; `now` are the entries' paths
    /// after it (renames move them), in the same order.
    fn line(self, action: &str, r: String, now: &[&Path]) -> String {
        let mut parts = vec![format!("{action}: {r}")];
        for (((label, _), before), p) in self.entries.iter().zip(&self.before).zip(now) {
            let after = std::fs::symlink_metadata(p);
            parts.push(match (before, after) {
                (Ok(b), Ok(a)) => format!("{label} {}", changed(b, &a)),
                (b, a) => format!("{label} before {:?} after {:?}", b.as_ref().err(), a.err()),
            });
        }
        parts.join("; ")
    }
}

/// Which times each of a series of actions changes (writes, reads, chmod,
/// chown, renames within and across directories, links, truncations,
/// xattrs, utimensat, mkdir, readdir, mmap writes, O_TRUNC, fallocate,
/// O_APPEND), on the file and the directories involved.
pub fn time_updates(dir: &Path) -> Lines {
    use std::io::{Read, Write};
    use std::os::unix::fs::FileExt;
    let (d1, d2) = (dir.join("d1"), dir.join("d2"));
    std::fs::create_dir(&d1).expect("mkdir d1");
    std::fs::create_dir(&d2).expect("mkdir d2");
    let f = d1.join("f");
    std::fs::write(&f, b"hello, world\n").expect("a file");
    let mut out = Vec::new();

    let w = Watch::on(&[("f", &f), ("d1", &d1)]);
    let r = std::fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .and_then(|h| h.write_at(b"HELLO", 0));
    out.push(w.line("pwrite", res(r), &[&f, &d1]));

    let w = Watch::on(&[("f", &f), ("d1", &d1)]);
    let r = std::fs::File::open(&f).and_then(|mut h| {
        let mut s = String::new();
        h.read_to_string(&mut s).map(|_| s)
    });
    out.push(w.line("read", res(r), &[&f, &d1]));

    let w = Watch::on(&[("f", &f)]);
    let r = rustix::fs::chmod(&f, rustix::fs::Mode::from_raw_mode(0o640));
    out.push(w.line("chmod", rustix_res(r), &[&f]));

    let w = Watch::on(&[("f", &f)]);
    let r = rustix::fs::chown(&f, Some(rustix::fs::Uid::from_raw(0)), None);
    out.push(w.line("chown to the same owner", rustix_res(r), &[&f]));

    let w = Watch::on(&[("f", &f)]);
    let r = rustix::fs::chown(&f, None, None);
    out.push(w.line("chown to -1, -1", rustix_res(r), &[&f]));

    let g = d1.join("g");
    let w = Watch::on(&[("f", &f), ("d1", &d1)]);
    let r = std::fs::rename(&f, &g);
    out.push(w.line("rename within a directory", res(r), &[&g, &d1]));

    let g2 = d2.join("g");
    let w = Watch::on(&[("g", &g), ("d1", &d1), ("d2", &d2)]);
    let r = std::fs::rename(&g, &g2);
    out.push(w.line("rename across directories", res(r), &[&g2, &d1, &d2]));

    let over = d2.join("over");
    std::fs::write(&over, b"replaced").expect("a file to rename over");
    let w = Watch::on(&[("g", &g2), ("d2", &d2)]);
    let r = std::fs::rename(&g2, &over);
    out.push(w.line("rename over a file", res(r), &[&over, &d2]));
    let g2 = over;

    let h = d1.join("h");
    let w = Watch::on(&[("g", &g2), ("d1", &d1)]);
    let r = std::fs::hard_link(&g2, &h);
    out.push(w.line("link", res(r), &[&g2, &d1]));

    let w = Watch::on(&[("g", &g2), ("d1", &d1)]);
    let r = std::fs::remove_file(&h);
    out.push(w.line("unlink the other link", res(r), &[&g2, &d1]));

    let w = Watch::on(&[("g", &g2)]);
    let r = std::fs::OpenOptions::new()
        .write(true)
        .open(&g2)
        .and_then(|h| h.set_len(4));
    out.push(w.line("truncate shorter", res(r), &[&g2]));

    let w = Watch::on(&[("g", &g2)]);
    let r = std::fs::OpenOptions::new()
        .write(true)
        .open(&g2)
        .and_then(|h| h.set_len(4));
    out.push(w.line("truncate to the same size", res(r), &[&g2]));

    let w = Watch::on(&[("g", &g2)]);
    let r = rustix::fs::setxattr(&g2, "user.t", b"v", rustix::fs::XattrFlags::empty());
    out.push(w.line("setxattr", rustix_res(r), &[&g2]));

    let w = Watch::on(&[("g", &g2)]);
    let now = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        },
    };
    let r = rustix::fs::utimensat(rustix::fs::CWD, &g2, &now, rustix::fs::AtFlags::empty());
    out.push(w.line("utimensat now", rustix_res(r), &[&g2]));

    let sub = d1.join("sub");
    let w = Watch::on(&[("d1", &d1)]);
    let r = std::fs::create_dir(&sub);
    out.push(w.line("mkdir", res(r), &[&d1]));

    let w = Watch::on(&[("d1", &d1)]);
    let r = std::fs::read_dir(&d1).map(|it| it.count());
    out.push(w.line("readdir", res(r), &[&d1]));

    let w = Watch::on(&[("d1", &d1), ("sub", &sub)]);
    let r = std::fs::remove_dir(&sub);
    out.push(w.line("rmdir", res(r), &[&d1, &d1]));

    let m = d1.join("m");
    std::fs::write(&m, vec![0u8; 8192]).expect("a file to map");
    let w = Watch::on(&[("m", &m)]);
    let r = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&m)
        .and_then(|h| mmap_write(&h, 100, b"mapped"));
    out.push(w.line("write through mmap, msync", res(r), &[&m]));

    let w = Watch::on(&[("m", &m)]);
    let r = std::fs::OpenOptions::new().write(true).truncate(true).open(&m);
    out.push(w.line("open O_TRUNC", res(r.map(|_| ())), &[&m]));

    let w = Watch::on(&[("m", &m)]);
    let r = std::fs::OpenOptions::new().write(true).open(&m).and_then(|h| {
        rustix::fs::fallocate(&h, rustix::fs::FallocateFlags::empty(), 0, 65536).map_err(std::io::Error::from)
    });
    out.push(w.line("fallocate", res(r), &[&m]));

    let w = Watch::on(&[("m", &m)]);
    let r = std::fs::OpenOptions::new()
        .append(true)
        .open(&m)
        .and_then(|mut h| h.write_all(b"appended"));
    out.push(w.line("O_APPEND write", res(r), &[&m]));

    let s = d1.join("s");
    let w = Watch::on(&[("d1", &d1)]);
    let r = std::os::unix::fs::symlink("m", &s);
    out.push(w.line("symlink", res(r), &[&d1]));
    out
}

/// Writes `data` at `offset` through a shared mapping of `file`, then
/// msync and munmap.
pub fn mmap_write(file: &std::fs::File, offset: usize, data: &[u8]) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = offset + data.len();
    // SAFETY: a fresh shared mapping of `len` bytes of an open file that is
    // at least that long, written within bounds and unmapped before return.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        std::ptr::copy_nonoverlapping(data.as_ptr(), (p as *mut u8).add(offset), data.len());
        let r = libc::msync(p, len, libc::MS_SYNC);
        let e = std::io::Error::last_os_error();
        libc::munmap(p, len);
        if r != 0 {
            return Err(e);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Concurrency: rename atomicity, O_APPEND, O_EXCL
// ---------------------------------------------------------------------------

/// Renames `rounds` fresh files over `target` while two readers open and
/// read it in a loop: how often a reader found it missing, and how often
/// it read anything but one whole version.
pub fn rename_race(dir: &Path, rounds: usize) -> (usize, usize, usize) {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let target = dir.join("target");
    let version = |i: usize| vec![b'a' + (i % 26) as u8; 4096];
    std::fs::write(&target, version(0)).expect("the first version");
    let done = AtomicBool::new(false);
    let (missing, torn, reads) = (AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    match std::fs::read(&target) {
                        Ok(b) => {
                            reads.fetch_add(1, Ordering::Relaxed);
                            if b.len() != 4096 || b.iter().any(|&c| c != b[0]) {
                                torn.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(_) => {
                            missing.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
        for i in 1..=rounds {
            let tmp = dir.join(format!("tmp-{i}"));
            std::fs::write(&tmp, version(i)).expect("a new version");
            std::fs::rename(&tmp, &target).expect("renaming a new version over the target");
        }
        done.store(true, Ordering::Relaxed);
    });
    (
        missing.load(Ordering::Relaxed),
        torn.load(Ordering::Relaxed),
        reads.load(Ordering::Relaxed),
    )
}

/// `threads` threads append `records` records each to one file, every
/// thread through its own O_APPEND descriptor: what the file holds after.
pub fn append_race(dir: &Path, threads: usize, records: usize) -> Lines {
    use std::io::Write;
    const LEN: usize = 128;
    let file = dir.join("appended");
    std::fs::write(&file, b"").expect("an empty file");
    std::thread::scope(|s| {
        for t in 0..threads {
            let file = &file;
            s.spawn(move || {
                let mut h = std::fs::OpenOptions::new()
                    .append(true)
                    .open(file)
                    .expect("O_APPEND open");
                for n in 0..records {
                    let mut rec = format!("T{t}-{n}-").into_bytes();
                    rec.resize(LEN - 1, b'a' + t as u8);
                    rec.push(b'\n');
                    h.write_all(&rec).expect("an append");
                }
            });
        }
    });
    let bytes = std::fs::read(&file).expect("the appended file");
    // The order of the records is the scheduler's: not compared.
    std::fs::remove_file(&file).expect("removing the appended file");
    let mut seen = std::collections::BTreeSet::new();
    let mut bad = 0;
    for rec in bytes.chunks(LEN) {
        let ok = rec.len() == LEN && rec[0] == b'T' && rec[LEN - 1] == b'\n';
        let key = rec
            .split(|&c| c == b'-')
            .take(2)
            .map(|x| x.to_vec())
            .collect::<Vec<_>>();
        if !ok || !seen.insert(key) {
            bad += 1;
        }
    }
    vec![
        format!("size {} (expected {})", bytes.len(), threads * records * LEN),
        format!("distinct whole records {}", seen.len()),
        format!("torn or repeated records {bad}"),
    ]
}

/// `threads` threads race, `rounds` times, to create one name with
/// O_CREAT|O_EXCL: per round, how many won and how the others failed.
pub fn excl_race(dir: &Path, threads: usize, rounds: usize) -> Lines {
    let name = dir.join("exclusive");
    let mut out = Vec::new();
    for round in 0..rounds {
        let barrier = std::sync::Barrier::new(threads);
        let results: Vec<String> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        res(std::fs::OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .open(&name)
                            .map(|_| ()))
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("a racer")).collect()
        });
        let won = results.iter().filter(|r| r.starts_with("ok")).count();
        let mut lost: Vec<&String> = results.iter().filter(|r| !r.starts_with("ok")).collect();
        lost.dedup();
        out.push(format!("round {round}: {won} won, the others {lost:?}"));
        std::fs::remove_file(&name).expect("removing the winner's file");
    }
    out
}

// ---------------------------------------------------------------------------
// O_TMPFILE, locks, mmap
// ---------------------------------------------------------------------------

/// An O_TMPFILE file written, then linked into the directory through
/// /proc/self/fd (and with AT_EMPTY_PATH); one made with O_EXCL must stay
/// unlinkable.
pub fn tmpfile(dir: &Path) -> Lines {
    use rustix::fs::{AtFlags, Mode, OFlags};
    let mut out = Vec::new();
    let d = match rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()) {
        Ok(d) => d,
        Err(e) => return vec![format!("open the directory: {}", rustix_res::<()>(Err(e)))],
    };
    for (label, excl) in [("O_TMPFILE", false), ("O_TMPFILE|O_EXCL", true)] {
        let mut flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
        if excl {
            flags |= OFlags::EXCL;
        }
        let fd = match rustix::fs::openat(&d, ".", flags, Mode::from_raw_mode(0o640)) {
            Ok(fd) => fd,
            Err(e) => {
                out.push(format!("{label}: open {}", rustix_res::<()>(Err(e))));
                continue;
            }
        };
        out.push(format!("{label}: open ok"));
        out.push(format!(
            "{label}: write {}",
            rustix_res(rustix::io::write(&fd, b"temporary contents"))
        ));
        out.push(format!(
            "{label}: fstat nlink {}",
            rustix_res(rustix::fs::fstat(&fd).map(|s| s.st_nlink))
        ));
        let proc = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
        let name = format!("linked-{}", excl as u8);
        out.push(format!(
            "{label}: linkat /proc/self/fd {}",
            rustix_res(rustix::fs::linkat(
                rustix::fs::CWD,
                proc.as_str(),
                &d,
                name.as_str(),
                AtFlags::SYMLINK_FOLLOW
            ))
        ));
        out.push(format!(
            "{label}: linkat AT_EMPTY_PATH {}",
            rustix_res(rustix::fs::linkat(
                &fd,
                "",
                &d,
                format!("{name}-empty-path").as_str(),
                AtFlags::EMPTY_PATH
            ))
        ));
        out.push(format!(
            "{label}: read back through the name {}",
            res(std::fs::read(dir.join(&name)).map(|b| String::from_utf8_lossy(&b).into_owned()))
        ));
        out.push(format!(
            "{label}: stat the name {}",
            res(std::fs::symlink_metadata(dir.join(&name)).map(|m| {
                use std::os::unix::fs::MetadataExt;
                (m.mode() & 0o7777, m.nlink(), m.len())
            }))
        ));
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|it| {
            it.map(|e| e.expect("an entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    out.push(format!("entries {names:?}"));
    out
}

/// fcntl (POSIX and OFD) and flock locks held by a child process, seen and
/// contended from this one, then released when the child exits.
pub fn locks(dir: &Path) -> Lines {
    let lockfile = dir.join("lockfile");
    let flockfile = dir.join("flockfile");
    std::fs::write(&lockfile, vec![0u8; 100]).expect("a file to lock");
    std::fs::write(&flockfile, b"").expect("a file to flock");
    let (lp, fp) = (c_path(&lockfile), c_path(&flockfile));
    let mut to_child = [0i32; 2];
    let mut from_child = [0i32; 2];
    // SAFETY: pipe(2) into arrays of two descriptors.
    unsafe {
        assert_eq!(libc::pipe2(to_child.as_mut_ptr(), libc::O_CLOEXEC), 0);
        assert_eq!(libc::pipe2(from_child.as_mut_ptr(), libc::O_CLOEXEC), 0);
    }
    let lock = |kind: i32, start: i64, len: i64| {
        // SAFETY: flock is plain data; zero is a valid value.
        let mut l: libc::flock = unsafe { std::mem::zeroed() };
        l.l_type = kind as i16;
        l.l_whence = libc::SEEK_SET as i16;
        l.l_start = start;
        l.l_len = len;
        l
    };
    let (child_posix, child_ofd) = (lock(libc::F_WRLCK, 10, 20), lock(libc::F_WRLCK, 50, 10));
    // SAFETY: the child makes only async-signal-safe calls (open, fcntl,
    // flock, read, write, _exit) on data prepared before the fork.
    let child = unsafe { libc::fork() };
    if child == 0 {
        // SAFETY: as above.
        unsafe {
            // Only the parent writes to_child: its close is the signal.
            libc::close(to_child[1]);
            libc::close(from_child[0]);
            let fd = libc::open(lp.as_ptr(), libc::O_RDWR);
            let ofd = libc::open(lp.as_ptr(), libc::O_RDWR);
            let ffd = libc::open(fp.as_ptr(), libc::O_RDONLY);
            let ok = fd >= 0
                && ofd >= 0
                && ffd >= 0
                && libc::fcntl(fd, libc::F_SETLK, &child_posix) == 0
                && libc::fcntl(ofd, libc::F_OFD_SETLK, &child_ofd) == 0
                && libc::flock(ffd, libc::LOCK_EX) == 0;
            let byte: u8 = if ok { b'1' } else { b'0' };
            libc::write(from_child[1], &byte as *const u8 as *const libc::c_void, 1);
            let mut buf = 0u8;
            libc::read(to_child[0], &mut buf as *mut u8 as *mut libc::c_void, 1);
            libc::_exit(0);
        }
    }
    assert!(child > 0, "fork: {}", std::io::Error::last_os_error());
    let mut out = Vec::new();
    let mut byte = 0u8;
    // SAFETY: reading one byte from our end of the pipe.
    let n = unsafe { libc::read(from_child[0], &mut byte as *mut u8 as *mut libc::c_void, 1) };
    out.push(format!("child took its locks: {}", n == 1 && byte == b'1'));
    let fd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&lockfile)
        .expect("opening the locked file");
    let ffd = std::fs::File::open(&flockfile).expect("opening the flocked file");
    use std::os::fd::AsRawFd;
    let who = |pid: i32| {
        if pid == child {
            "the child".to_string()
        } else {
            format!("pid {pid}")
        }
    };
    for (what, cmd, start, len) in [
        ("F_GETLK over everything", libc::F_GETLK, 0, 100),
        ("F_GETLK beside the locks", libc::F_GETLK, 70, 10),
        ("F_OFD_GETLK over the OFD lock", libc::F_OFD_GETLK, 55, 1),
    ] {
        let mut l = lock(libc::F_WRLCK, start, len);
        // SAFETY: fcntl with a valid flock.
        let r = unsafe { libc::fcntl(fd.as_raw_fd(), cmd, &mut l) };
        out.push(if r == 0 {
            let pid = if l.l_type == libc::F_UNLCK as i16 {
                "-".into()
            } else {
                who(l.l_pid)
            };
            format!(
                "{what}: type {} start {} len {} held by {pid}",
                l.l_type, l.l_start, l.l_len
            )
        } else {
            format!("{what}: err {}", errno_name(errno()))
        });
    }
    let try_lock = |what: &str, cmd: i32, kind: i32, start: i64, len: i64, out: &mut Lines| {
        let l = lock(kind, start, len);
        // SAFETY: fcntl with a valid flock.
        let r = unsafe { libc::fcntl(fd.as_raw_fd(), cmd, &l) };
        out.push(format!(
            "{what}: {}",
            if r == 0 { "ok".to_string() } else { errno_name(errno()) }
        ));
    };
    let try_flock = |what: &str, op: i32, out: &mut Lines| {
        // SAFETY: flock on an open descriptor.
        let r = unsafe { libc::flock(ffd.as_raw_fd(), op) };
        out.push(format!(
            "{what}: {}",
            if r == 0 { "ok".to_string() } else { errno_name(errno()) }
        ));
    };
    try_lock(
        "F_SETLK write inside the child's",
        libc::F_SETLK,
        libc::F_WRLCK,
        15,
        1,
        &mut out,
    );
    try_lock(
        "F_SETLK read inside the child's",
        libc::F_SETLK,
        libc::F_RDLCK,
        25,
        2,
        &mut out,
    );
    try_lock("F_SETLK write beside", libc::F_SETLK, libc::F_WRLCK, 40, 5, &mut out);
    try_lock(
        "F_OFD_SETLK inside the child's OFD lock",
        libc::F_OFD_SETLK,
        libc::F_WRLCK,
        52,
        1,
        &mut out,
    );
    try_flock("flock LOCK_EX|LOCK_NB", libc::LOCK_EX | libc::LOCK_NB, &mut out);
    try_flock("flock LOCK_SH|LOCK_NB", libc::LOCK_SH | libc::LOCK_NB, &mut out);
    // The child goes, and its locks with it.
    // SAFETY: closing our pipe ends; waiting for our child.
    unsafe {
        libc::close(to_child[1]);
        let mut status = 0;
        libc::waitpid(child, &mut status, 0);
        out.push(format!("child exited: {}", libc::WIFEXITED(status)));
        libc::close(to_child[0]);
        libc::close(from_child[0]);
        libc::close(from_child[1]);
    }
    try_lock(
        "after: F_SETLK write inside",
        libc::F_SETLK,
        libc::F_WRLCK,
        15,
        1,
        &mut out,
    );
    try_lock("after: F_OFD_SETLK", libc::F_OFD_SETLK, libc::F_WRLCK, 52, 1, &mut out);
    try_flock("after: flock LOCK_EX|LOCK_NB", libc::LOCK_EX | libc::LOCK_NB, &mut out);
    out
}

/// Writes through a shared mapping seen by read(2) and the reverse, a
/// private mapping's writes seen by nobody, and the file after munmap.
pub fn mmap_coherence(dir: &Path) -> Lines {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    const LEN: usize = 65536;
    let path = dir.join("mapped");
    std::fs::write(&path, vec![b'.'; LEN]).expect("a file to map");
    let open = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("opening the mapped file")
    };
    let (f1, f2) = (open(), open());
    let mut out = Vec::new();
    let read_at = |off: u64, n: usize| {
        let mut b = vec![0u8; n];
        f2.read_exact_at(&mut b, off)
            .map(|_| String::from_utf8_lossy(&b).into_owned())
    };
    // SAFETY: shared and private mappings of LEN bytes of a file that long,
    // accessed within bounds, unmapped at the end.
    unsafe {
        let map = |flags: i32| {
            let p = libc::mmap(
                std::ptr::null_mut(),
                LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                f1.as_raw_fd(),
                0,
            );
            assert!(p != libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
            p as *mut u8
        };
        let shared = map(libc::MAP_SHARED);
        let private = map(libc::MAP_PRIVATE);
        let at = |p: *mut u8, off: usize, n: usize| {
            String::from_utf8_lossy(std::slice::from_raw_parts(p.add(off), n)).into_owned()
        };
        std::ptr::copy_nonoverlapping(b"via-mmap".as_ptr(), shared.add(4096), 8);
        out.push(format!(
            "read(2) after a write through the mapping: {}",
            res(read_at(4096, 8))
        ));
        out.push(format!("pwrite(2): {}", res(f2.write_at(b"via-pwrite", 8192))));
        out.push(format!("the shared mapping after pwrite(2): {}", at(shared, 8192, 10)));
        out.push(format!(
            "the private mapping after pwrite(2): {}",
            at(private, 8192, 10)
        ));
        std::ptr::copy_nonoverlapping(b"private!".as_ptr(), private.add(100), 8);
        out.push(format!(
            "read(2) after a write to the private mapping: {}",
            res(read_at(100, 8))
        ));
        out.push(format!("the shared mapping then: {}", at(shared, 100, 8)));
        out.push(format!(
            "msync: {}",
            if libc::msync(shared as *mut libc::c_void, LEN, libc::MS_SYNC) == 0 {
                "ok".to_string()
            } else {
                errno_name(errno())
            }
        ));
        libc::munmap(shared as *mut libc::c_void, LEN);
        libc::munmap(private as *mut libc::c_void, LEN);
    }
    drop((f1, f2));
    let bytes = std::fs::read(&path).expect("the file after munmap");
    out.push(format!(
        "after munmap, through a new open: {} bytes, at 4096 {:?}, at 8192 {:?}, at 100 {:?}",
        bytes.len(),
        String::from_utf8_lossy(&bytes[4096..4104]),
        String::from_utf8_lossy(&bytes[8192..8202]),
        String::from_utf8_lossy(&bytes[100..108])
    ));
    out
}

// ---------------------------------------------------------------------------
// Long names, deep paths
// ---------------------------------------------------------------------------

/// Names at and past NAME_MAX (ASCII and UTF-8), and a chain of
/// directories far deeper than PATH_MAX, made and used through `openat`
/// from level to level, then taken down.
pub fn long_names_and_deep_paths(dir: &Path) -> Lines {
    use rustix::fs::{AtFlags, Mode, OFlags};
    let mut out = Vec::new();
    let open_dir = |at: &rustix::fd::OwnedFd, name: &str| {
        rustix::fs::openat(
            at,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
    };
    let top = rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .expect("opening the directory");
    let ascii = |n: usize| "n".repeat(n);
    let utf8 = |n: usize| "\u{fc}".repeat(n / 2) + &"x".repeat(n % 2);
    for (label, name) in [
        ("255 ASCII bytes", ascii(255)),
        ("256 ASCII bytes", ascii(256)),
        ("255 bytes of UTF-8", utf8(255)),
        ("256 bytes of UTF-8", utf8(256)),
    ] {
        let created = rustix::fs::openat(
            &top,
            name.as_str(),
            OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .and_then(|fd| rustix::io::write(&fd, label.as_bytes()));
        out.push(format!("{label}: create {}", rustix_res(created)));
        // The same length, another last character.
        let sibling = |c: &str| {
            let mut s = name.clone();
            let last = s.pop().expect("a name");
            s.push_str(&c.repeat(last.len_utf8()));
            s
        };
        let (dname, renamed) = (sibling("D"), sibling("R"));
        out.push(format!(
            "{label}: mkdir {}",
            rustix_res(rustix::fs::mkdirat(&top, dname.as_str(), Mode::from_raw_mode(0o755)))
        ));
        out.push(format!(
            "{label}: stat {}",
            rustix_res(rustix::fs::statat(&top, name.as_str(), AtFlags::SYMLINK_NOFOLLOW).map(|s| s.st_size))
        ));
        out.push(format!(
            "{label}: rename {}",
            rustix_res(rustix::fs::renameat(&top, name.as_str(), &top, renamed.as_str()))
        ));
        out.push(format!(
            "{label}: read back {}",
            res(std::fs::read(dir.join(&renamed)).map(|b| String::from_utf8_lossy(&b).into_owned()))
        ));
    }
    let mut names: Vec<usize> = std::fs::read_dir(dir)
        .expect("listing")
        .map(|e| e.expect("an entry").file_name().len())
        .collect();
    names.sort();
    out.push(format!("name lengths listed: {names:?}"));

    const LEVELS: usize = 24;
    let level = |i: usize| format!("{i:03}{}", "d".repeat(197));
    let mut fds = vec![top];
    let mut full = dir.to_path_buf();
    for i in 0..LEVELS {
        let last = fds.last().expect("a level");
        if let Err(e) = rustix::fs::mkdirat(last, level(i).as_str(), Mode::from_raw_mode(0o755)) {
            out.push(format!("mkdirat level {i}: {}", rustix_res::<()>(Err(e))));
            return out;
        }
        match open_dir(last, &level(i)) {
            Ok(fd) => fds.push(fd),
            Err(e) => {
                out.push(format!("openat level {i}: {}", rustix_res::<()>(Err(e))));
                return out;
            }
        }
        full.push(level(i));
    }
    out.push(format!(
        "{LEVELS} levels of 200-byte names, {} bytes of path in all",
        full.as_os_str().len() > 4096
    ));
    let bottom = fds.last().expect("the bottom");
    let leaf = rustix::fs::openat(
        bottom,
        "leaf",
        OFlags::CREATE | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    );
    out.push(format!(
        "create at the bottom, write: {}",
        rustix_res(leaf.and_then(|fd| rustix::io::write(&fd, b"deep down")))
    ));
    out.push(format!(
        "stat at the bottom: {}",
        rustix_res(rustix::fs::statat(bottom, "leaf", AtFlags::empty()).map(|s| (s.st_size, s.st_nlink)))
    ));
    out.push(format!(
        "symlink, readlink: {} {}",
        rustix_res(rustix::fs::symlinkat("leaf", bottom, "link")),
        rustix_res(rustix::fs::readlinkat(bottom, "link", Vec::new()).map(|t| t.into_bytes()))
    ));
    out.push(format!(
        "read through the symlink: {}",
        rustix_res(
            rustix::fs::openat(bottom, "link", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).and_then(|fd| {
                let mut b = [0u8; 64];
                rustix::io::read(&fd, &mut b).map(|n| b[..n].to_vec())
            })
        )
    ));
    out.push(format!(
        "hard link to the top: {}",
        rustix_res(rustix::fs::linkat(
            bottom,
            "leaf",
            &fds[0],
            "linked-from-the-bottom",
            AtFlags::empty()
        ))
    ));
    out.push(format!(
        "rename to the top: {}",
        rustix_res(rustix::fs::renameat(bottom, "leaf", &fds[0], "moved-from-the-bottom"))
    ));
    out.push(format!(
        "nlink of the moved file: {}",
        rustix_res(rustix::fs::statat(&fds[0], "moved-from-the-bottom", AtFlags::empty()).map(|s| s.st_nlink))
    ));
    out.push(format!(
        "the whole path at once: {}",
        rustix_res(rustix::fs::stat(full.join("link")).map(|s| s.st_size))
    ));
    out.push(format!(
        "listing at the bottom: {}",
        res(
            std::fs::read_dir(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(bottom))).map(|it| {
                let mut v: Vec<String> = it
                    .map(|e| e.expect("an entry").file_name().to_string_lossy().into_owned())
                    .collect();
                v.sort();
                v
            })
        )
    ));
    out.push(format!(
        "unlink at the bottom: {}",
        rustix_res(rustix::fs::unlinkat(bottom, "link", AtFlags::empty()))
    ));
    while fds.len() > 1 {
        let i = fds.len() - 2;
        fds.pop();
        if let Err(e) = rustix::fs::unlinkat(&fds[i], level(i).as_str(), AtFlags::REMOVEDIR) {
            out.push(format!("rmdir level {i}: {}", rustix_res::<()>(Err(e))));
        }
    }
    out.push("taken down".into());
    out
}

/// A POSIX ACL as its extended attribute holds it: version 2, then
/// (tag, permissions, id) entries.
fn acl_xattr(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        v.extend(tag.to_le_bytes());
        v.extend(perm.to_le_bytes());
        v.extend(id.to_le_bytes());
    }
    v
}

/// Default ACLs inherited by new entries (where the umask does not apply),
/// the umask where there is none, and access granted by an ACL entry and
/// taken back by a chmod that narrows its mask.
pub fn acls(dir: &Path) -> Lines {
    const USER_OBJ: u16 = 0x01;
    const NAMED_USER: u16 = 0x02;
    const GROUP_OBJ: u16 = 0x04;
    const MASK: u16 = 0x10;
    const ANY_OTHER: u16 = 0x20;
    const NONE: u32 = u32::MAX;
    let mut out = Lines::new();
    let d = dir.join("acl-dir");
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    let default = acl_xattr(&[
        (USER_OBJ, 7, NONE),
        (NAMED_USER, 7, OTHER),
        (GROUP_OBJ, 5, NONE),
        (MASK, 7, NONE),
        (ANY_OTHER, 5, NONE),
    ]);
    out.push(format!(
        "set default ACL: {}",
        rustix_res(rustix::fs::setxattr(
            &d,
            "system.posix_acl_default",
            &default,
            rustix::fs::XattrFlags::empty()
        ))
    ));
    // New entries under the caller's umask 077, in a thread of its own
    // umask (the test process's is shared by every test).
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: CLONE_FS gives this thread its own umask only.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_FS) }, 0);
            rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
            let made = [
                ("acl-dir/f", std::fs::File::create(d.join("f")).map(|_| ())),
                ("acl-dir/sub", std::fs::create_dir(d.join("sub"))),
                ("plain", std::fs::File::create(dir.join("plain")).map(|_| ())),
                ("plain-dir", std::fs::create_dir(dir.join("plain-dir"))),
            ];
            for (name, r) in made {
                let p = dir.join(name);
                let mode = std::fs::symlink_metadata(&p).map(|m| format!("{:o}", m.mode() & 0o7777));
                let has_acl = rustix::fs::getxattr_query(&p, "system.posix_acl_access").is_ok();
                out.push(format!("{name}: {} mode {} access ACL {has_acl}", res(r), res(mode)));
            }
        });
    });
    // Access granted to a named user by an ACL entry.
    let g = d.join("g");
    std::fs::write(&g, b"granted").unwrap();
    std::fs::set_permissions(&g, std::fs::Permissions::from_mode(0o600)).unwrap();
    let read_as_user = || as_user(USER, USER, &[USER], || res(std::fs::read(&g).map(|b| b.len())));
    out.push(format!("read before the ACL: {}", read_as_user()));
    let access = acl_xattr(&[
        (USER_OBJ, 6, NONE),
        (NAMED_USER, 4, USER),
        (GROUP_OBJ, 0, NONE),
        (MASK, 4, NONE),
        (ANY_OTHER, 0, NONE),
    ]);
    out.push(format!(
        "set access ACL: {}",
        rustix_res(rustix::fs::setxattr(
            &g,
            "system.posix_acl_access",
            &access,
            rustix::fs::XattrFlags::empty()
        ))
    ));
    out.push(format!("read with the ACL: {}", read_as_user()));
    std::fs::set_permissions(&g, std::fs::Permissions::from_mode(0o600)).unwrap();
    out.push(format!("read after chmod 600 (mask ---): {}", read_as_user()));
    out
}
