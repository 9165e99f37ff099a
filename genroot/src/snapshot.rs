//! A comparable record of a file tree, taken without changing it (not even
//! access times: files and directories are read with O_NOATIME, and a
//! symlink's access time, which `readlink` moves, is put back): for tests that
//! check two trees are the same, or that a tree was left alone.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, OFlags, CWD};

use super::copy::{list, open_noatime, read_link};

/// One entry of a tree, as `lstat`, `readlink`, `read` and `llistxattr` see it
/// (inode numbers and ctime left out: no copy can keep them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `d`, `f`, `l`, `p`, `c`, `b` or `s`.
    pub kind: char,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// 0 for directories (their size depends on the filesystem's history).
    pub size: u64,
    /// FNV-1a of the content of a regular file.
    pub content: u64,
    /// Bytes of the data (`st_blocks * 512`) of a regular file, to tell sparse
    /// files apart.
    pub allocated: u64,
    pub target: Option<PathBuf>,
    pub rdev: u64,
    pub xattrs: BTreeMap<OsString, Vec<u8>>,
    pub mtime: (i64, i64),
    pub atime: (i64, i64),
    /// For a non-directory with other names: the first of its names in the
    /// walk (sorted by name), so hard links compare across trees.
    pub link_of: Option<PathBuf>,
}

/// Every entry under a directory, by path relative to it ("" is the directory).
pub type Snapshot = BTreeMap<PathBuf, Node>;

/// Walks `dir` (not following symlinks) and records every entry.
pub fn snapshot(dir: &Path) -> io::Result<Snapshot> {
    let mut out = Snapshot::new();
    let mut inodes: HashMap<(u64, u64), PathBuf> = HashMap::new();
    walk(dir, PathBuf::new(), &mut out, &mut inodes)?;
    Ok(out)
}

fn walk(abs: &Path, rel: PathBuf, out: &mut Snapshot, inodes: &mut HashMap<(u64, u64), PathBuf>) -> io::Result<()> {
    let err = |e: rustix::io::Errno| io::Error::other(format!("{}: {e}", abs.display()));
    let st = rustix::fs::statat(CWD, abs, AtFlags::SYMLINK_NOFOLLOW).map_err(err)?;
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => 'd',
        FileType::RegularFile => 'f',
        FileType::Symlink => 'l',
        FileType::Fifo => 'p',
        FileType::CharacterDevice => 'c',
        FileType::BlockDevice => 'b',
        FileType::Socket => 's',
        FileType::Unknown => '?',
    };
    let mut node = Node {
        kind,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        size: if kind == 'd' { 0 } else { st.st_size as u64 },
        content: 0,
        allocated: 0,
        target: None,
        rdev: st.st_rdev,
        xattrs: xattrs(abs).map_err(err)?,
        mtime: (st.st_mtime, st.st_mtime_nsec as i64),
        atime: (st.st_atime, st.st_atime_nsec as i64),
        link_of: None,
    };
    if kind != 'd' && st.st_nlink > 1 {
        let first = inodes.entry((st.st_dev, st.st_ino)).or_insert_with(|| rel.clone());
        node.link_of = Some(first.clone());
    }
    match kind {
        'f' => {
            node.content = content_hash(abs).map_err(err)?;
            node.allocated = st.st_blocks as u64 * 512;
        }
        'l' => {
            let t = read_link(abs, &st).map_err(err)?;
            node.target = Some(PathBuf::from(OsString::from_vec(t.into_bytes())));
        }
        'd' => {
            let names = list(abs).map_err(err)?;
            out.insert(rel.clone(), node);
            for name in names {
                walk(&abs.join(&name), rel.join(&name), out, inodes)?;
            }
            return Ok(());
        }
        _ => {}
    }
    out.insert(rel, node);
    Ok(())
}

fn content_hash(path: &Path) -> rustix::io::Result<u64> {
    let fd = open_noatime(path, OFlags::empty())?;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = rustix::io::read(&fd, &mut buf)?;
        if n == 0 {
            return Ok(hash);
        }
        for &b in &buf[..n] {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn xattrs(path: &Path) -> rustix::io::Result<BTreeMap<OsString, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut names = vec![0u8; 64 * 1024];
    let n = match rustix::fs::llistxattr(path, &mut names[..]) {
        Ok(n) => n,
        Err(e) if e == rustix::io::Errno::NOTSUP => return Ok(out),
        Err(e) => return Err(e),
    };
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = std::ffi::OsStr::from_bytes(name);
        let mut value = vec![0u8; 64 * 1024];
        let len = rustix::fs::lgetxattr(path, name, &mut value[..])?;
        value.truncate(len);
        out.insert(name.to_os_string(), value);
    }
    Ok(out)
}
