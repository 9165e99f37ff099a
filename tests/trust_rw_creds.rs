//! Through the read-write view a caller never gets more than natively
//! (issue 13, items 6 and 7): what the view does for a caller other than
//! root runs with the caller's ids and without the capabilities the caller
//! lacks, and a request whose caller's identity cannot be taken fails
//! instead of running as the server.
//!
//! - An unprivileged user filling an ext4 file system stops where it stops
//!   natively, short of the blocks reserved for root (`mkfs.ext4` keeps
//!   5%), whether its data goes through kernel passthrough, through
//!   graph2aufs (`--no-passthrough`), into a file root holds open
//!   (passthrough with direct I/O beside root's open), or by fallocate.
//!   Expectations come from the same user doing the same natively on the
//!   same file system.
//! - A server without CAP_SETUID (or CAP_SETGID) refuses an unprivileged
//!   user's creations, and nothing owned by root appears.

mod common;
use common::*;

#[path = "trust_rw/scene.rs"]
#[allow(dead_code)]
mod scene;

use scene::{options, Scene, BOUND};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

/// The unprivileged user of these tests (no capabilities, no groups).
const USER: &str = "4242";

/// `args` run as [`USER`] in directory `dir` (entered while still root:
/// the user needs no search permission on the scratch directories above).
fn as_user(dir: &Path, args: &[&str]) -> RunResult {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        &format!("--reuid={USER}"),
        &format!("--regid={USER}"),
        "--clear-groups",
        "--",
    ])
    .args(args)
    .current_dir(dir);
    run_command(cmd, RUN_TIMEOUT)
}

/// Bytes free for root and for others on the file system of `p`.
fn space(p: &Path) -> (u64, u64) {
    let s = rustix::fs::statvfs(p).unwrap_or_else(|e| panic!("statvfs {}: {e}", p.display()));
    (s.f_bfree * s.f_frsize, s.f_bavail * s.f_frsize)
}

fn sync() {
    rustix::fs::sync();
}

/// A directory every user may write in.
#[track_caller]
fn open_dir(p: &Path) {
    fs::create_dir(p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
    fs::set_permissions(p, fs::Permissions::from_mode(0o777)).unwrap();
}

/// How a fill reaches the disk.
#[derive(Clone, Copy, Debug)]
enum Fill {
    /// A new file written until the disk is full.
    New,
    /// A file root holds open for writing, appended to by the user.
    HeldByRoot,
    /// fallocate of more than is free for anyone.
    Fallocate,
}

/// What a fill did: the bytes the file got, the bytes left free for root
/// when it stopped, and what the user's command said.
struct Filled {
    bytes: u64,
    free: u64,
    said: String,
}

/// The user fills the file system `disk` through `dir` as `how` says. The
/// file goes after (synced: its blocks are free again).
#[track_caller]
fn fill(disk: &Path, dir: &Path, how: Fill) -> Filled {
    let f = dir.join("fill");
    let (before, _) = space(disk);
    let held = match how {
        Fill::HeldByRoot => {
            let h = fs::OpenOptions::new()
                .create_new(true)
                .read(true)
                .write(true)
                .open(&f)
                .unwrap_or_else(|e| panic!("creating {}: {e}", f.display()));
            fs::set_permissions(&f, fs::Permissions::from_mode(0o666)).unwrap();
            Some(h)
        }
        _ => None,
    };
    let r = match how {
        Fill::New => as_user(dir, &["dd", "if=/dev/zero", "of=fill", "bs=256k"]),
        Fill::HeldByRoot => as_user(
            dir,
            &[
                "dd",
                "if=/dev/zero",
                "of=fill",
                "bs=256k",
                "oflag=append",
                "conv=notrunc",
            ],
        ),
        Fill::Fallocate => {
            let (free, _) = space(disk);
            as_user(dir, &["fallocate", "-l", &(free + (8 << 20)).to_string(), "fill"])
        }
    };
    assert_ne!(r.code, 0, "the user's {how:?} fill never ran out of space:\n{r}");
    sync();
    let (free, _) = space(disk);
    let bytes = fs::metadata(&f)
        .map(|m| match how {
            Fill::Fallocate => m.blocks() * 512,
            _ => m.len(),
        })
        .unwrap_or(0);
    drop(held);
    let _ = fs::remove_file(&f);
    // The blocks are free again once the file's last reference goes: at
    // once natively, when the kernel forgets the inode through the view (a
    // moment after the unlink).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        sync();
        let (now, _) = space(disk);
        if now + (1 << 20) >= before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} free after removing {}, {before} before it was written",
            now,
            f.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Filled {
        bytes,
        free,
        said: r.stderr.clone(),
    }
}

/// The user fills the disk natively and through a view mounted with
/// `args`, each way of [`Fill`]: the view stops where the native file
/// system does, and the blocks reserved for root stay free.
fn fills_as_natively(args: &[&str]) {
    let test = test_name();
    if !require_root_and_fuse() {
        return;
    }
    let disk = LoopFs::new(64, "ext4");
    let scene = Scene::new_in(disk.path(), &options(61, 3, 2));
    let native = scene.dir.path().join("native");
    open_dir(&native);
    sync();
    let (free, avail) = space(disk.path());
    let reserved = free - avail;
    assert!(reserved > 1 << 20, "mkfs.ext4 reserved only {reserved} bytes for root");
    // Block granularity, metadata, graph2aufs's own status file.
    let slack = reserved / 4;
    let ways = [Fill::New, Fill::HeldByRoot, Fill::Fallocate];
    let natively: Vec<Filled> = ways.iter().map(|&how| fill(disk.path(), &native, how)).collect();
    for (how, n) in ways.iter().zip(&natively) {
        assert!(
            n.free + slack >= reserved,
            "natively ({how:?}) the user left {} bytes free, less than root's reserve of {reserved}: {}",
            n.free,
            n.said
        );
    }
    let view = scene.mount_with(args, &[]);
    scene.wait_finished(&view);
    let dir = scene.mp.join("fill-here");
    open_dir(&dir);
    let mut wrong = Vec::new();
    for (how, n) in ways.into_iter().zip(natively) {
        let v = fill(disk.path(), &dir, how);
        if v.bytes > n.bytes + slack || v.free + slack < reserved {
            wrong.push(format!(
                "{how:?}: through the view the user wrote {} bytes and left {} free for root; natively {} bytes, {} \
                 left ({})",
                v.bytes,
                v.free,
                n.bytes,
                n.free,
                v.said.trim()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "[{test}] root's reserve: {reserved} bytes\n{}\nlog:\n{}",
        wrong.join("\n"),
        view.log()
    );
    drop(view);
}

#[test]
fn an_unprivileged_user_stops_at_root_s_reserved_blocks_through_passthrough_as_natively() {
    fills_as_natively(&["--allow-other"]);
}

#[test]
fn an_unprivileged_user_stops_at_root_s_reserved_blocks_without_passthrough_as_natively() {
    fills_as_natively(&["--allow-other", "--no-passthrough"]);
}

/// A view whose server lacks the capabilities in `dropped` (from its
/// bounding set): an unprivileged user's file and directory are refused,
/// and nothing of theirs appears on the disk, least of all owned by root.
fn refused_without(dropped: &str) {
    let test = test_name();
    if !require_root_and_fuse() {
        return;
    }
    let scene = Scene::new(&options(67, 2, 1));
    let mut cmd = Command::new("setpriv");
    cmd.args(["--bounding-set", dropped, "--"])
        .arg(bin())
        .arg("mount")
        .arg(&scene.root)
        .arg(&scene.mp)
        .args(["--foreground", "--allow-other"])
        .env("RUST_LOG", "info");
    let view = Mount::start_command(cmd, &scene.mp, BOUND);
    let dir = scene.mp.join("shared");
    open_dir(&dir);
    for args in [&["touch", "file"][..], &["mkdir", "dir"], &["ln", "-s", "x", "link"]] {
        let r = as_user(&dir, args);
        let name = args[args.len() - 1];
        let on_disk = scene.root.join("shared").join(name);
        let owner = fs::symlink_metadata(&on_disk).map(|m| (m.uid(), m.gid()));
        assert!(
            r.code != 0 && owner.is_err(),
            "[{test}] `{}` as uid {USER} through a server without {dropped}: exit {}, {} on the disk is {owner:?} \
             (expected: refused, nothing made)\n{r}\nlog:\n{}",
            args.join(" "),
            r.code,
            on_disk.display(),
            view.log()
        );
    }
    // Root's own requests need no switch, and still work.
    fs::write(dir.join("root-file"), b"x").expect("root writes through the view");
    // Every serving thread took the server's identity back.
    let log = view.log();
    assert!(
        !log.contains("panicked") && !log.contains("cannot take the server's identity back"),
        "[{test}] a serving thread was lost:\n{log}"
    );
    drop(view);
}

#[test]
fn a_server_without_cap_setuid_and_setgid_refuses_an_unprivileged_user_s_creations() {
    refused_without("-setuid,-setgid");
}

#[test]
fn a_server_without_cap_setuid_refuses_an_unprivileged_user_s_creations() {
    refused_without("-setuid");
}
