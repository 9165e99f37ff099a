//! Layer tarballs: the layer an `ApplyDiff` test untars (every kind of entry
//! an image tar carries), GNU tar to make and extract archives the way
//! Docker's `pkg/archive` does, and a reader that lists an archive's
//! entries so that two `Diff`s compare entry by entry.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, DirBuilder, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, CWD};
use sha2::{Digest, Sha256};

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

/// Options every archive here shares: xattrs of every namespace, numeric
/// owners, the POSIX (pax) format that keeps nanosecond mtimes.
const COMMON: [&str; 4] = ["--format=posix", "--xattrs", "--xattrs-include=*", "--numeric-owner"];

/// Runs `tar ARGS`; any exit code but 0, or anything on stderr, is an error
/// (GNU tar reports an xattr or a time it could not set as a warning),
/// except, with `changes_allowed`, exit code 1 with only "file changed as
/// we read it" warnings: GNU tar compares ctimes before and after reading,
/// Docker's `archive.Tar` (Go) does not, and a layer that moves while it is
/// read honestly gets a new ctime from the rename. (That the view shows
/// every entry's current ctime is checked apart, see `finish`.)
fn tar(args: &[&OsStr], changes_allowed: bool) -> Result<(), String> {
    let mut cmd = Command::new("tar");
    cmd.args(args).stdin(std::process::Stdio::null());
    let what = describe(&cmd);
    let r = run_command(cmd, TAR_TIMEOUT);
    let only_changes = r.code == 1
        && r.stderr
            .lines()
            .all(|l| l.starts_with("tar: ") && l.ends_with(": file changed as we read it"));
    if (r.code != 0 || !r.stderr.trim().is_empty()) && !(changes_allowed && only_changes) {
        return Err(format!("`{what}` exited {}: {}", r.code, r.stderr.trim()));
    }
    Ok(())
}

/// An archive of everything under `src` (the layer tarball a test applies).
pub fn create(src: &Path, out: &Path) -> Result<(), String> {
    let mut args: Vec<&OsStr> = COMMON.iter().map(OsStr::new).collect();
    args.extend([
        OsStr::new("-C"),
        src.as_os_str(),
        "-cf".as_ref(),
        out.as_os_str(),
        ".".as_ref(),
    ]);
    tar(&args, false)
}

/// Untars `archive` into `dest` keeping owners, permissions, xattrs and
/// times, as root does (Docker's `archive.Untar`).
pub fn extract(archive: &Path, dest: &Path) -> Result<(), String> {
    let mut args: Vec<&OsStr> = COMMON.iter().map(OsStr::new).collect();
    args.extend([
        "--same-owner".as_ref(),
        "--same-permissions".as_ref(),
        "-C".as_ref(),
        dest.as_os_str(),
        "-xf".as_ref(),
        archive.as_os_str(),
    ]);
    tar(&args, false)
}

/// `Diff`: an archive of `dir` without its top-level `.wh..wh.*` (the
/// anchored pattern leaves nested `.wh..wh..opq` in), made reproducible
/// (sorted names, no atime or ctime, fixed extended-header names) so that
/// two archives of equal trees have equal entries.
pub fn create_diff(dir: &Path, out: &Path) -> Result<(), String> {
    let mut args: Vec<&OsStr> = COMMON.iter().map(OsStr::new).collect();
    args.extend([
        "--sort=name".as_ref(),
        "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime".as_ref(),
        "--anchored".as_ref(),
        "--exclude=./.wh..wh.*".as_ref(),
        "-C".as_ref(),
        dir.as_os_str(),
        "-cf".as_ref(),
        out.as_os_str(),
        ".".as_ref(),
    ]);
    tar(&args, true)
}

/// One member of an archive, pax extended headers applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub path: Vec<u8>,
    /// The ustar type flag: `0` file, `1` hard link, `2` symlink, `3` char,
    /// `4` block, `5` directory, `6` fifo.
    pub kind: u8,
    pub mode: u64,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    /// As written: seconds, with a fraction when there is one.
    pub mtime: String,
    pub link: Vec<u8>,
    pub dev: (u64, u64),
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    pub content: [u8; 32],
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} type {} mode {:o} {}:{} size {} mtime {} link {:?} dev {:?} xattrs {:?} sha256 {}",
            String::from_utf8_lossy(&self.path),
            self.kind as char,
            self.mode,
            self.uid,
            self.gid,
            self.size,
            self.mtime,
            String::from_utf8_lossy(&self.link),
            self.dev,
            self.xattrs
                .iter()
                .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
            self.content[..6].iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    }
}

/// The members of a ustar/pax archive, in archive order.
pub fn members(archive: &Path) -> Result<Vec<Member>, String> {
    let mut bytes = Vec::new();
    File::open(archive)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| format!("reading {}: {e}", archive.display()))?;
    parse(&bytes).map_err(|e| format!("{}: {e}", archive.display()))
}

fn parse(bytes: &[u8]) -> Result<Vec<Member>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut pax: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    while pos + 512 <= bytes.len() {
        let h = &bytes[pos..pos + 512];
        if h.iter().all(|&b| b == 0) {
            break;
        }
        let size = number(&h[124..136])?;
        let data_start = pos + 512;
        let data_end = data_start + size as usize;
        let data = bytes
            .get(data_start..data_end)
            .ok_or_else(|| format!("member at {pos} runs past the end"))?;
        pos = data_start + (size as usize).div_ceil(512) * 512;
        match h[156] {
            b'x' => {
                pax = records(data)?;
                continue;
            }
            b'g' => continue,
            _ => {}
        }
        let field = |r: std::ops::Range<usize>| {
            let f = &h[r];
            f[..f.iter().position(|&b| b == 0).unwrap_or(f.len())].to_vec()
        };
        let mut path = field(345..500);
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend(field(0..100));
        let take = |pax: &mut BTreeMap<Vec<u8>, Vec<u8>>, key: &str| pax.remove(key.as_bytes());
        let num = |pax: &mut BTreeMap<Vec<u8>, Vec<u8>>, key: &str, raw: &[u8]| -> Result<u64, String> {
            match take(pax, key) {
                Some(v) => String::from_utf8_lossy(&v)
                    .parse()
                    .map_err(|e| format!("pax {key}: {e}")),
                None => number(raw),
            }
        };
        let member = Member {
            path: take(&mut pax, "path").unwrap_or(path),
            kind: h[156],
            mode: number(&h[100..108])?,
            uid: num(&mut pax, "uid", &h[108..116])?,
            gid: num(&mut pax, "gid", &h[116..124])?,
            size: num(&mut pax, "size", &h[124..136])?,
            mtime: match take(&mut pax, "mtime") {
                Some(v) => String::from_utf8_lossy(&v).into_owned(),
                None => number(&h[136..148])?.to_string(),
            },
            link: take(&mut pax, "linkpath").unwrap_or_else(|| field(157..257)),
            dev: (number(&h[329..337])?, number(&h[337..345])?),
            xattrs: std::mem::take(&mut pax)
                .into_iter()
                .filter_map(|(k, v)| Some((k.strip_prefix(b"SCHILY.xattr.")?.to_vec(), v)))
                .collect(),
            content: Sha256::digest(data).into(),
        };
        out.push(member);
    }
    Ok(out)
}

/// A numeric header field: octal text, or GNU's base-256 (high bit set).
fn number(field: &[u8]) -> Result<u64, String> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        return Ok(field[1..]
            .iter()
            .fold(u64::from(field[0] & 0x7f), |n, &b| (n << 8) | u64::from(b)));
    }
    let text = String::from_utf8_lossy(field);
    let digits = text.trim_matches(|c: char| c == '\0' || c == ' ');
    if digits.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(digits, 8).map_err(|e| format!("numeric field {text:?}: {e}"))
}

/// Pax records: `<length> <key>=<value>\n`, values raw bytes.
fn records(mut data: &[u8]) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, String> {
    let mut out = BTreeMap::new();
    while !data.is_empty() && data[0] != 0 {
        let space = data
            .iter()
            .position(|&b| b == b' ')
            .ok_or("pax record without a length")?;
        let len: usize = String::from_utf8_lossy(&data[..space])
            .parse()
            .map_err(|e| format!("pax record length: {e}"))?;
        let record = data.get(space + 1..len.saturating_sub(1)).ok_or("short pax record")?;
        let eq = record.iter().position(|&b| b == b'=').ok_or("pax record without =")?;
        out.insert(record[..eq].to_vec(), record[eq + 1..].to_vec());
        data = &data[len..];
    }
    Ok(out)
}

/// One line per difference between two member lists (matched by path),
/// with `ignore_root_mtime` for a layer whose directory was created by the
/// migration (a never-started container's empty rw): its time honestly
/// depends on when that ran.
pub fn differences(a: &[Member], b: &[Member], ignore_root_mtime: bool) -> Vec<String> {
    let index = |m: &[Member]| -> BTreeMap<Vec<u8>, Member> {
        m.iter()
            .map(|x| {
                let mut x = x.clone();
                if ignore_root_mtime && x.path == b"./" {
                    x.mtime.clear();
                }
                (x.path.clone(), x)
            })
            .collect()
    };
    let (a, b) = (index(a), index(b));
    let mut lines = Vec::new();
    for (path, x) in &a {
        match b.get(path) {
            None => lines.push(format!("only in a: {x}")),
            Some(y) if x != y => lines.push(format!("differs:\n      a: {x}\n      b: {y}")),
            _ => {}
        }
    }
    for (path, y) in &b {
        if !a.contains_key(path) {
            lines.push(format!("only in b: {y}"));
        }
    }
    lines
}
