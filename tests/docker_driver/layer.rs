//! The layer an `ApplyDiff` test untars: every kind of entry an image tar
//! carries, aufs whiteouts and an opaque directory; and its tar archive.

use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, DirBuilder, File};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, CWD};

use crate::common::{describe, run_command};

const TAR_TIMEOUT: Duration = Duration::from_secs(60);

/// What one entry of the test layer is.
enum What {
    Dir,
    File(Vec<u8>),
    /// A file of `len` bytes with data only at both ends.
    Holey(u64),
    Symlink(Vec<u8>),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
    /// Another name for an entry listed before.
    HardLink(&'static str),
}

struct Spec {
    path: Vec<u8>,
    what: What,
    mode: u32,
    owner: (u32, u32),
    xattrs: Vec<(&'static str, &'static [u8])>,
}

fn spec(path: impl AsRef<[u8]>, what: What, mode: u32) -> Spec {
    Spec {
        path: path.as_ref().to_vec(),
        what,
        mode,
        owner: (0, 0),
        xattrs: Vec::new(),
    }
}

impl Spec {
    fn owner(mut self, uid: u32, gid: u32) -> Spec {
        self.owner = (uid, gid);
        self
    }

    fn xattr(mut self, name: &'static str, value: &'static [u8]) -> Spec {
        self.xattrs.push((name, value));
        self
    }
}

/// Deterministic bytes (xorshift), for contents nothing can compress away.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The entries of the test layer, parents before children: device nodes
/// (char and block), a fifo, hard links (three names of one file across
/// directories, and aufs-style whiteouts sharing one inode), symlinks
/// (relative, absolute, dangling, a target longer than a tar header holds),
/// `user.*` xattrs on files and directories, setuid/setgid/sticky bits,
/// owners other than root (one beyond the octal header field), nanosecond
/// mtimes, names with spaces, UTF-8, a byte that is not UTF-8 and one
/// longer than a tar header holds, a big and a holey file, and aufs
/// whiteouts (`.wh.<name>` of a file and of a directory, `.wh..wh..opq`).
fn layer_specs() -> Vec<Spec> {
    let long_name = format!("usr/share/doc/{}", "long-name-".repeat(15));
    let long_target = format!("/opt/{}", "deep/".repeat(45));
    vec![
        spec("", What::Dir, 0o755).xattr("user.layer", b"root of the layer"),
        spec("bin", What::Dir, 0o755),
        spec("bin/su", What::File(b"#!/bin/true setuid\n".to_vec()), 0o4755),
        spec("bin/wall", What::File(b"setgid tty\n".to_vec()), 0o2755).owner(0, 5),
        spec("bin/ping", What::File(noise(1, 4000)), 0o4711).xattr("user.caps", b"net_raw"),
        spec("dev", What::Dir, 0o755),
        spec("dev/null", What::Char(1, 3), 0o666),
        spec("dev/tty0", What::Char(4, 0), 0o620).owner(0, 5),
        spec("dev/sda1", What::Block(8, 1), 0o660).owner(0, 6),
        spec("dev/initctl", What::Fifo, 0o600),
        spec("etc", What::Dir, 0o755),
        spec(
            "etc/passwd",
            What::File(b"root:x:0:0:root:/root:/bin/sh\n".to_vec()),
            0o644,
        ),
        spec("etc/.wh.shadow", What::File(Vec::new()), 0o444),
        spec("etc/motd", What::Symlink(b"../usr/share/motd".to_vec()), 0o777).owner(1000, 1000),
        spec(
            "etc/localtime",
            What::Symlink(b"/usr/share/zoneinfo/UTC".to_vec()),
            0o777,
        ),
        spec("etc/dangling", What::Symlink(b"no/such/entry".to_vec()), 0o777),
        spec("home", What::Dir, 0o755),
        spec("home/user", What::Dir, 0o700).owner(1000, 1000),
        spec("home/user/.profile", What::File(b"export PS1='$ '\n".to_vec()), 0o640).owner(1000, 1000),
        spec("home/user/with space.txt", What::File(b"spaced\n".to_vec()), 0o600).owner(1000, 100),
        spec("home/user/ünïcödé", What::File(b"utf-8\n".to_vec()), 0o644).owner(1000, 100),
        spec(
            b"home/user/latin1-\xe9t\xe9".as_slice(),
            What::File(b"not utf-8\n".to_vec()),
            0o644,
        ),
        spec("srv", What::Dir, 0o755).xattr("user.dir", b"yes"),
        spec("srv/nobody", What::File(b"nobody's\n".to_vec()), 0o644).owner(65534, 65534),
        spec(
            "srv/big-uid",
            What::File(b"uid beyond 7 octal digits\n".to_vec()),
            0o644,
        )
        .owner(2_097_159, 3_000_000),
        spec("srv/secret", What::File(b"mode 0000\n".to_vec()), 0o000),
        spec("srv/xattrs", What::File(b"xattrs\n".to_vec()), 0o644)
            .xattr("user.a", b"1")
            .xattr("user.binary", b"\0\xff\x01")
            .xattr("user.empty", b""),
        spec("tmp", What::Dir, 0o1777),
        spec("usr", What::Dir, 0o755),
        spec("usr/.wh.games", What::File(Vec::new()), 0o444),
        spec("usr/bin", What::Dir, 0o755),
        spec("usr/bin/python3.11", What::File(noise(2, 20_000)), 0o755),
        spec("usr/bin/python3", What::HardLink("usr/bin/python3.11"), 0),
        spec("usr/lib", What::Dir, 0o755),
        spec("usr/lib/python", What::HardLink("usr/bin/python3.11"), 0),
        spec("usr/lib/big.bin", What::File(noise(3, 3 << 20)), 0o644),
        spec("usr/lib/holey.bin", What::Holey(1 << 20), 0o644),
        spec("usr/lib/empty", What::File(Vec::new()), 0o644),
        spec("usr/share", What::Dir, 0o755),
        spec("usr/share/motd", What::File(b"welcome\n".to_vec()), 0o644),
        spec("usr/share/doc", What::Dir, 0o755),
        spec(long_name, What::File(b"a name longer than 100 bytes\n".to_vec()), 0o644),
        spec("usr/share/longlink", What::Symlink(long_target.into_bytes()), 0o777),
        spec("var", What::Dir, 0o755),
        spec("var/cache", What::Dir, 0o755),
        spec("var/cache/apt", What::Dir, 0o755),
        spec("var/cache/apt/.wh..wh..opq", What::File(Vec::new()), 0o444),
        spec("var/cache/apt/pkgcache.bin", What::File(noise(4, 9000)), 0o644),
        spec("var/lib", What::Dir, 0o755),
        spec("var/lib/.wh.dpkg", What::HardLink("usr/.wh.games"), 0),
        spec(".wh.removed-at-top", What::HardLink("usr/.wh.games"), 0),
    ]
}

/// Writes the test layer under `dir` (created; must not exist).
#[track_caller]
pub fn build_layer(dir: &Path) {
    let specs = layer_specs();
    let at = |s: &Spec| dir.join(OsStr::from_bytes(&s.path));
    let fail = |what: &str, p: &Path, e: &dyn fmt::Display| -> ! {
        panic!("building the test layer: {what} {}: {e}", p.display())
    };
    for s in &specs {
        let p = at(s);
        let made = match &s.what {
            What::Dir => DirBuilder::new().mode(0o700).create(&p),
            What::File(bytes) => fs::write(&p, bytes),
            What::Holey(len) => File::create(&p).and_then(|mut f| {
                f.write_all(b"head")?;
                f.set_len(*len)?;
                f.seek(SeekFrom::End(-4))?;
                f.write_all(b"tail")
            }),
            What::Symlink(target) => std::os::unix::fs::symlink(OsStr::from_bytes(target), &p),
            What::Char(ma, mi) => mknod(&p, FileType::CharacterDevice, *ma, *mi),
            What::Block(ma, mi) => mknod(&p, FileType::BlockDevice, *ma, *mi),
            What::Fifo => mknod(&p, FileType::Fifo, 0, 0),
            What::HardLink(to) => fs::hard_link(dir.join(to), &p),
        };
        made.unwrap_or_else(|e| fail("creating", &p, &e));
    }
    for s in specs.iter().filter(|s| !matches!(s.what, What::HardLink(_))) {
        let p = at(s);
        rustix::fs::chownat(
            CWD,
            &p,
            Some(rustix::fs::Uid::from_raw(s.owner.0)),
            Some(rustix::fs::Gid::from_raw(s.owner.1)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap_or_else(|e| fail("chown", &p, &e));
        // After chown, which clears setuid and setgid.
        if !matches!(s.what, What::Symlink(_)) {
            fs::set_permissions(&p, fs::Permissions::from_mode(s.mode)).unwrap_or_else(|e| fail("chmod", &p, &e));
        }
        for (name, value) in &s.xattrs {
            xattr::set(&p, name, value).unwrap_or_else(|e| fail("setxattr", &p, &e));
        }
    }
    // Children before parents, so that no later change moves a directory's mtime.
    for (i, s) in specs.iter().enumerate().rev() {
        if matches!(s.what, What::HardLink(_)) {
            continue;
        }
        let p = at(s);
        let t = Timespec {
            tv_sec: 1_100_000_000 + 86_400 * i as i64,
            tv_nsec: (i as i64 * 7_654_321 + 123) % 1_000_000_000,
        };
        let times = Timestamps {
            last_access: t,
            last_modification: t,
        };
        rustix::fs::utimensat(CWD, &p, &times, AtFlags::SYMLINK_NOFOLLOW).unwrap_or_else(|e| fail("utimensat", &p, &e));
    }
}

fn mknod(p: &Path, kind: FileType, major: u32, minor: u32) -> io::Result<()> {
    let dev = rustix::fs::makedev(major, minor);
    Ok(rustix::fs::mknodat(CWD, p, kind, Mode::from_raw_mode(0o600), dev)?)
}

/// Makes `out`, a tar archive of everything under `src` (the layer an
/// `ApplyDiff` untars), with GNU tar: the POSIX (pax) format, which keeps
/// nanosecond mtimes, xattrs of every namespace, numeric owners.
#[track_caller]
pub fn archive(src: &Path, out: &Path) {
    let mut cmd = Command::new("tar");
    cmd.args([
        "--format=posix",
        "--xattrs",
        "--xattrs-include=*",
        "--numeric-owner",
        "-C",
    ])
    .arg(src)
    .arg("-cf")
    .arg(out)
    .arg(".")
    .stdin(std::process::Stdio::null());
    let what = describe(&cmd);
    let r = run_command(cmd, TAR_TIMEOUT);
    // GNU tar reports what it could not read as a warning.
    assert!(
        r.code == 0 && r.stderr.trim().is_empty(),
        "`{what}` exited {}: {}",
        r.code,
        r.stderr.trim()
    );
}
