//! aufs union semantics over layer directories (FORMATS.md 3): whiteouts
//! `.wh.<name>`, opaque directories `.wh..wh..opq`, and aufs's own
//! `.wh..wh.*` entries, which are never visible. Used to build init layers
//! (which depend on the image's merged tree) and by the read-only view's
//! merged root filesystems.

use crate::sys;
use rustix::fs::{FileType, Stat};
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

pub const WHITEOUT: &[u8] = b".wh.";
pub const META: &[u8] = b".wh..wh.";
pub const OPAQUE: &str = ".wh..wh..opq";
const MAX_SYMLINK_HOPS: usize = 40;

/// One real directory contributing to a merged directory.
#[derive(Debug, Clone)]
pub struct Part {
    /// Index of the branch (0 = top).
    pub branch: usize,
    pub fd: Arc<OwnedFd>,
}

/// A merged directory: the real directories of that path in each branch, top
/// first, already cut below an opaque one or a whiteout.
#[derive(Debug, Clone)]
pub struct UnionDir {
    pub parts: Vec<Part>,
}

/// What a name resolves to in a merged directory.
#[derive(Debug, Clone)]
pub enum Entry {
    Dir(UnionDir, Stat),
    /// Not a directory: found in `parent` of branch `branch`.
    Leaf {
        branch: usize,
        parent: Arc<OwnedFd>,
        stat: Stat,
    },
}

fn is_hidden(name: &[u8]) -> bool {
    name.starts_with(WHITEOUT)
}

fn whiteout_of(name: &OsStr) -> OsString {
    let mut w = OsString::from(".wh.");
    w.push(name);
    w
}

fn is_opaque(dir: impl AsFd) -> io::Result<bool> {
    Ok(sys::lstat(dir, OPAQUE)?.is_some())
}

impl UnionDir {
    /// The merged root of `branches` (layer roots, top first).
    pub fn root(branches: &[Arc<OwnedFd>]) -> io::Result<UnionDir> {
        let mut parts = Vec::new();
        for (branch, fd) in branches.iter().enumerate() {
            parts.push(Part { branch, fd: fd.clone() });
            if is_opaque(fd.as_ref())? {
                break;
            }
        }
        Ok(UnionDir { parts })
    }

    /// Looks `name` up, aufs-style. Never follows a symlink.
    pub fn lookup(&self, name: &OsStr) -> io::Result<Option<Entry>> {
        if is_hidden(name.as_bytes()) || name == "." || name == ".." {
            return Ok(None);
        }
        let wh = whiteout_of(name);
        let mut found: Option<(Stat, Vec<Part>)> = None;
        for part in &self.parts {
            let dir = part.fd.as_ref();
            if let Some((_, parts)) = &mut found {
                // Collecting lower directories of a merged directory.
                if sys::lstat(dir, &wh)?.is_some() {
                    break;
                }
                match sys::lstat(dir, name)? {
                    Some(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                        let fd = sys::open_dir_required(dir, name)?;
                        let opaque = is_opaque(&fd)?;
                        parts.push(Part {
                            branch: part.branch,
                            fd: Arc::new(fd),
                        });
                        if opaque {
                            break;
                        }
                    }
                    Some(_) => break,
                    None => {}
                }
                continue;
            }
            if sys::lstat(dir, &wh)?.is_some() {
                return Ok(None);
            }
            let Some(st) = sys::lstat(dir, name)? else { continue };
            if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                return Ok(Some(Entry::Leaf {
                    branch: part.branch,
                    parent: part.fd.clone(),
                    stat: st,
                }));
            }
            let fd = sys::open_dir_required(dir, name)?;
            let opaque = is_opaque(&fd)?;
            found = Some((
                st,
                vec![Part {
                    branch: part.branch,
                    fd: Arc::new(fd),
                }],
            ));
            if opaque {
                break;
            }
        }
        Ok(found.map(|(st, parts)| Entry::Dir(UnionDir { parts }, st)))
    }

    /// The merged directory's visible names, each with its type, in a stable
    /// order (upper branches first, then each directory's own order).
    pub fn list(&self) -> io::Result<Vec<(OsString, FileType)>> {
        let mut seen: HashSet<OsString> = HashSet::new();
        let mut hidden: HashSet<OsString> = HashSet::new();
        let mut out = Vec::new();
        for part in &self.parts {
            let entries = sys::list_dir(part.fd.as_ref())?;
            let mut own_whiteouts = Vec::new();
            for (name, ft) in entries {
                let b = name.as_bytes();
                if b.starts_with(META) {
                    continue;
                }
                if let Some(rest) = b.strip_prefix(WHITEOUT) {
                    own_whiteouts.push(OsStr::from_bytes(rest).to_os_string());
                    continue;
                }
                if hidden.contains(&name) || !seen.insert(name.clone()) {
                    continue;
                }
                let ft = if ft == FileType::Unknown {
                    match sys::lstat(part.fd.as_ref(), &name)? {
                        Some(st) => FileType::from_raw_mode(st.st_mode),
                        None => continue,
                    }
                } else {
                    ft
                };
                out.push((name, ft));
            }
            hidden.extend(own_whiteouts);
        }
        Ok(out)
    }
}

/// The result of resolving a path in a merged tree as if chrooted there.
#[derive(Debug)]
pub enum Resolved {
    /// The final component exists (as anything, even a dangling symlink).
    Exists,
    /// Some component is missing: the canonical path, each component with
    /// the stat of the directory the image has there, if it has one.
    Missing(Vec<(OsString, Option<Stat>)>),
    /// A component on the way is not a directory.
    NotDir,
}

/// Resolves `path` in the merged tree rooted at `root`, following symlinks
/// on the way (absolute ones from `root`, never from the host's root), but
/// not a final symlink.
pub fn resolve(root: &UnionDir, path: &[u8]) -> io::Result<Resolved> {
    let mut queue: std::collections::VecDeque<OsString> = split(path).collect();
    let mut canon: Vec<(OsString, Option<Stat>)> = Vec::new();
    let mut dirs: Vec<UnionDir> = vec![root.clone()];
    let mut missing = false;
    let mut hops = 0;
    while let Some(c) = queue.pop_front() {
        if c == "." {
            continue;
        }
        if c == ".." {
            if canon.pop().is_some() && !missing {
                dirs.pop();
            }
            if canon.iter().all(|(_, st)| st.is_some()) {
                missing = false;
            }
            continue;
        }
        if missing {
            canon.push((c, None));
            continue;
        }
        let cur = dirs.last().expect("the root is never popped");
        match cur.lookup(&c)? {
            None => {
                if queue.is_empty() {
                    canon.push((c, None));
                    return Ok(Resolved::Missing(canon));
                }
                canon.push((c, None));
                missing = true;
            }
            Some(Entry::Dir(u, st)) => {
                canon.push((c, Some(st)));
                dirs.push(u);
            }
            Some(Entry::Leaf { parent, stat, .. }) => {
                if queue.is_empty() {
                    return Ok(Resolved::Exists);
                }
                if FileType::from_raw_mode(stat.st_mode) != FileType::Symlink {
                    return Ok(Resolved::NotDir);
                }
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Ok(Resolved::NotDir);
                }
                let target = sys::readlink(parent.as_ref(), &c)?;
                if target.starts_with(b"/") {
                    canon.clear();
                    dirs.truncate(1);
                }
                for (i, t) in split(&target).enumerate() {
                    queue.insert(i, t);
                }
            }
        }
    }
    if missing {
        Ok(Resolved::Missing(canon))
    } else {
        Ok(Resolved::Exists)
    }
}

fn split(path: &[u8]) -> impl Iterator<Item = OsString> + '_ {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .map(|c| OsStr::from_bytes(c).to_os_string())
}
