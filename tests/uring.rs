//! FUSE over io_uring (issue 16): the read-write view and a bare fuser
//! server (`g2a-bench nullfs`) served through the kernel's io_uring
//! transport answer a concurrent workload of creates, writes, fsyncs,
//! reads, renames and unlinks correctly, the requests really travel through
//! the rings, and unmounting ends the server; `--transport auto` falls back
//! to /dev/fuse where the kernel does not offer it, and `--transport uring`
//! is refused there.
//!
//! The kernel offers the transport only while
//! `/sys/module/fuse/parameters/enable_uring` is `Y`: each test sets it as
//! it needs and the value found is restored after the last of them.

mod common;
use common::*;

#[path = "live_view/mod.rs"]
mod live_view;
use live_view::*;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread;
use std::time::Duration;

use g2a_genroot::Options;

const PARAM: &str = "/sys/module/fuse/parameters/enable_uring";
const BOUND: Duration = Duration::from_secs(120);
const THREADS: usize = 8;
const FILES: usize = 40;

/// Tests that need the parameter at `Y` hold this for reading, the one
/// that needs `N` for writing.
static SETTING: RwLock<()> = RwLock::new(());
/// How many hold `Y`, and the value found before the first set it.
static HOLDERS: Mutex<(usize, Option<String>)> = Mutex::new((0, None));

fn write_param(v: &str) {
    fs::write(PARAM, v).unwrap_or_else(|e| panic!("writing {v} to {PARAM}: {e}"));
}

/// `enable_uring` at `Y` while held; the first holder saves the value
/// found, the last restores it.
struct UringOn {
    _lock: RwLockReadGuard<'static, ()>,
}

impl UringOn {
    fn new() -> UringOn {
        let lock = SETTING.read().unwrap_or_else(|e| e.into_inner());
        let mut h = HOLDERS.lock().unwrap_or_else(|e| e.into_inner());
        if h.0 == 0 {
            h.1 = Some(
                fs::read_to_string(PARAM)
                    .expect("reading enable_uring")
                    .trim()
                    .to_string(),
            );
            write_param("Y");
        }
        h.0 += 1;
        UringOn { _lock: lock }
    }
}

impl Drop for UringOn {
    fn drop(&mut self) {
        let mut h = HOLDERS.lock().unwrap_or_else(|e| e.into_inner());
        h.0 -= 1;
        if h.0 == 0 {
            if let Some(v) = h.1.take() {
                write_param(&v);
            }
        }
    }
}

/// `enable_uring` at `N` while held (no other test of this file runs
/// meanwhile); the value found is restored.
struct UringOff {
    _lock: RwLockWriteGuard<'static, ()>,
    found: String,
}

impl UringOff {
    fn new() -> UringOff {
        let lock = SETTING.write().unwrap_or_else(|e| e.into_inner());
        let found = fs::read_to_string(PARAM)
            .expect("reading enable_uring")
            .trim()
            .to_string();
        write_param("N");
        UringOff { _lock: lock, found }
    }
}

impl Drop for UringOff {
    fn drop(&mut self) {
        write_param(&self.found);
    }
}

/// Root, /dev/fuse, and a kernel with FUSE over io_uring (the parameter
/// exists where it is built in).
#[track_caller]
fn require_uring() -> bool {
    if !require_root_and_fuse() {
        return false;
    }
    let missing: Vec<String> = if Path::new(PARAM).exists() {
        Vec::new()
    } else {
        vec![format!(
            "no {PARAM}: a kernel without CONFIG_FUSE_IO_URING (Linux 6.14+)"
        )]
    };
    skip_unless("FUSE over io_uring", &missing)
}

/// The completions consumed on the io_uring instances of process `pid`
/// (the `CqHead` of each in its fdinfo): one per request served through a
/// ring.
fn ring_completions(pid: u32) -> u64 {
    let mut n = 0;
    for e in fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .expect("the server's fdinfo")
        .flatten()
    {
        let Ok(info) = fs::read_to_string(e.path()) else {
            continue;
        };
        for line in info.lines() {
            if let Some(v) = line.strip_prefix("CqHead:") {
                n += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    n
}

/// What thread `t` leaves in `dir`: file `i` with its body, unless it was
/// unlinked (every third).
fn body(t: usize, i: usize) -> Vec<u8> {
    // From one byte to past two pages, so that payloads of many sizes pass.
    let len = 1 + (t * 7919 + i * 1031) % 9000;
    (0..len).map(|k| (k * 31 + t * 7 + i) as u8).collect()
}

fn survives(i: usize) -> bool {
    i % 3 != 0
}

/// `THREADS` threads at once, each `FILES` times in `dir`: creates
/// `u-T-I.tmp`, writes its body, fsyncs it, reads it back (when `check`:
/// the file system keeps data), renames it to `u-T-I`, checks its size, and
/// unlinks every third. Returns how many operations were done.
fn workload(dir: &Path, check: bool) -> usize {
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let dir = dir.to_path_buf();
            thread::spawn(move || {
                let mut ops = 0;
                for i in 0..FILES {
                    let tmp = dir.join(format!("u-{t}-{i}.tmp"));
                    let dst = dir.join(format!("u-{t}-{i}"));
                    let want = body(t, i);
                    let mut f = fs::File::create(&tmp).unwrap_or_else(|e| panic!("creating {}: {e}", tmp.display()));
                    f.write_all(&want)
                        .unwrap_or_else(|e| panic!("writing {}: {e}", tmp.display()));
                    f.sync_all()
                        .unwrap_or_else(|e| panic!("fsync of {}: {e}", tmp.display()));
                    drop(f);
                    if check {
                        let mut got = Vec::new();
                        fs::File::open(&tmp)
                            .and_then(|mut f| f.read_to_end(&mut got))
                            .unwrap_or_else(|e| panic!("reading {}: {e}", tmp.display()));
                        assert!(got == want, "{} read back differs from what was written", tmp.display());
                    }
                    fs::rename(&tmp, &dst).unwrap_or_else(|e| panic!("renaming {}: {e}", tmp.display()));
                    let size = fs::metadata(&dst)
                        .unwrap_or_else(|e| panic!("stat {}: {e}", dst.display()))
                        .size();
                    assert_eq!(size, want.len() as u64, "size of {}", dst.display());
                    if !survives(i) {
                        fs::remove_file(&dst).unwrap_or_else(|e| panic!("unlinking {}: {e}", dst.display()));
                    }
                    ops += 7;
                }
                ops
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("a workload thread failed"))
        .sum()
}

/// [`workload`] in `dir` of the server `pid`, whose log says `transport`:
/// the names it leaves are there, and its requests came through the rings.
#[track_caller]
fn workload_over_rings(pid: u32, dir: &Path, check: bool, log: impl Fn() -> String, transport: &str) {
    let before = ring_completions(pid);
    let ops = workload(dir, check);
    let through_rings = ring_completions(pid) - before;
    assert_eq!(names(dir), left(), "the names left in {}", dir.display());
    assert!(log().contains(transport), "the server logs its transport:\n{}", log());
    // Creates, writes, fsyncs, renames, unlinks: each a request at least
    // (the opens and stats the kernel may answer from its caches).
    let requests = THREADS * FILES * 4;
    assert!(
        through_rings as usize >= requests,
        "{through_rings} completions on the server's rings for {ops} operations: not through io_uring\n{}",
        log()
    );
}

/// A generated root of `images` images and `containers` containers.
fn small_root(seed: u64, images: usize, containers: usize) -> Options {
    Options {
        seed,
        images,
        max_chain: 4,
        containers,
        entries_per_layer: 8,
        broken: false,
        docker18: true,
        debian_base: None,
    }
}

/// The names `workload` leaves.
fn left() -> Vec<String> {
    let mut v: Vec<String> = (0..THREADS)
        .flat_map(|t| (0..FILES).filter(|&i| survives(i)).map(move |i| format!("u-{t}-{i}")))
        .collect();
    v.sort();
    v
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| e.expect("an entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("u-"))
        .collect();
    v.sort();
    v
}

#[test]
fn a_bare_fuser_server_serves_a_concurrent_workload_over_io_uring_and_exits_at_unmount() {
    if !require_uring() {
        return;
    }
    let _on = UringOn::new();
    let dir = PrivateDir::new("g2a-uring-nullfs.");
    let mp = dir.path().join("mnt");
    fs::create_dir(&mp).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_g2a-bench"));
    cmd.arg("nullfs")
        .arg(&mp)
        .args(["--transport", "uring", "--threads", "4"]);
    let m = Mount::start_command(cmd, &mp, BOUND);
    workload_over_rings(m.pid(), &mp, false, || m.log(), "transport Uring");
    let status = m.unmount();
    assert!(status.success(), "the nullfs exited with {status}");
}

#[test]
fn the_read_write_view_serves_a_concurrent_workload_over_io_uring_and_exits_at_unmount() {
    if !require_uring() {
        return;
    }
    let _on = UringOn::new();
    let f = Fixture::prepared(&small_root(1601, 12, 4), |_, _| {});
    let c = f.summary.containers[0].0.clone();
    let rel = PathBuf::from("aufs/diff").join(&c);
    let view = View::start_with(&f, 20, BOUND, &["--transport", "uring"]);
    workload_over_rings(
        view.mount.pid(),
        &f.root.join(&rel),
        true,
        || view.mount.log(),
        "FUSE transport: uring",
    );
    view.wait_until("the live status names the transport", Duration::from_secs(10), |s| {
        s["live"]["transport"] == "uring"
    });
    // The same files in the reference: after the migration and the
    // unmount, ROOT is the reference with them.
    let mut written = Vec::new();
    for t in 0..THREADS {
        for i in (0..FILES).filter(|&i| survives(i)) {
            let p = rel.join(format!("u-{t}-{i}"));
            fs::write(f.reference.join(&p), body(t, i)).unwrap();
            written.push(p);
        }
    }
    finish(&f, view, Duration::from_secs(60), &written);
}

#[test]
fn without_the_kernels_offer_auto_serves_dev_fuse_and_uring_is_refused() {
    if !require_uring() {
        return;
    }
    let _off = UringOff::new();
    let f = Fixture::prepared(&small_root(1602, 4, 1), |_, _| {});
    let r = run([
        "mount".as_ref(),
        f.root.as_os_str(),
        "--transport".as_ref(),
        "uring".as_ref(),
    ]);
    assert_ne!(r.code, 0, "--transport uring without the kernel's offer:\n{r}");
    assert!(
        r.stderr.contains("enable_uring"),
        "the refusal says how to enable the transport:\n{r}"
    );
    assert!(!is_mounted(&f.root), "nothing mounted by a refused --transport uring");
    let view = View::start_with(&f, 0, BOUND, &["--transport", "auto"]);
    let c = &f.summary.containers[0].0;
    fs::write(f.root.join("aufs/diff").join(c).join("auto"), b"classic").unwrap();
    view.wait_until("the live status names the transport", Duration::from_secs(10), |s| {
        s["live"]["transport"] == "classic"
    });
    assert_eq!(ring_completions(view.mount.pid()), 0, "no io_uring in the classic view");
    let log = view.mount.log();
    assert!(
        log.contains("FUSE transport: classic"),
        "the view logs its transport:\n{log}"
    );
    let status = view.mount.unmount();
    assert!(status.success(), "the server exited with {status}");
}
