//! aufs union semantics over layer directories (docs/FORMATS.md 3): whiteouts
//! `.wh.<name>`, opaque directories `.wh..wh..opq`, and aufs's own
//! `.wh..wh.*` entries, which are never visible. Used to build init layers
//! (which depend on the image's merged tree) and by the views'
//! merged root filesystems, where a container's init layer, not yet on
//! disk, takes part as a virtual branch.

use crate::dirref::DirRef;
use crate::sys;
use rustix::fs::{FileType, Stat};
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

pub const WHITEOUT: &[u8] = b".wh.";
pub const META: &[u8] = b".wh..wh.";
pub const OPAQUE: &str = ".wh..wh..opq";

/// A branch held in memory, not on the disk (a container's init layer
/// before it is written, see `initlayer`): its entries, each found by its
/// path below the branch's root.
pub trait Virtual: std::fmt::Debug {
    /// The index of the entry at `path`, if there is one.
    fn find(&self, path: &[OsString]) -> Option<usize>;
    /// The type of the entry at `index`.
    fn file_type(&self, index: usize) -> FileType;
    /// The name and type of each entry directly below the directory `dir`.
    fn list(&self, dir: &[OsString]) -> Vec<(OsString, FileType)>;
}

/// A branch's directory at some path: a real directory, or a directory of
/// a branch `V` held in memory.
#[derive(Debug, Clone)]
pub enum Src<V> {
    Real(Arc<DirRef>),
    Init(Arc<V>, Vec<OsString>),
}

/// What a branch has under a name.
#[derive(Debug, Clone)]
pub enum Leaf<V> {
    Real { parent: Arc<DirRef>, stat: Stat },
    Init { layer: Arc<V>, index: usize },
}

impl<V: Virtual> Leaf<V> {
    pub fn file_type(&self) -> FileType {
        match self {
            Leaf::Real { stat, .. } => FileType::from_raw_mode(stat.st_mode),
            Leaf::Init { layer, index } => layer.file_type(*index),
        }
    }
}

impl<V: Virtual> Src<V> {
    fn lookup(&self, name: &OsStr) -> io::Result<Option<Leaf<V>>> {
        match self {
            Src::Real(d) => Ok(sys::lstat(&*d.fd()?, name)?.map(|stat| Leaf::Real {
                parent: d.clone(),
                stat,
            })),
            Src::Init(layer, dir) => {
                let mut p = dir.clone();
                p.push(name.to_os_string());
                Ok(layer.find(&p).map(|index| Leaf::Init {
                    layer: layer.clone(),
                    index,
                }))
            }
        }
    }

    fn has(&self, name: &OsStr) -> io::Result<bool> {
        match self {
            // (A whiteout of a name near the length limit cannot exist.)
            Src::Real(_) if name.len() > 255 => Ok(false),
            Src::Real(d) => Ok(sys::lstat(&*d.fd()?, name)?.is_some()),
            // (An init layer's opaque markers; it keeps no whiteouts.)
            Src::Init(layer, dir) => {
                let mut p = dir.clone();
                p.push(name.to_os_string());
                Ok(layer.find(&p).is_some())
            }
        }
    }

    fn child(&self, name: &OsStr) -> io::Result<Src<V>> {
        match self {
            Src::Real(d) => Ok(Src::Real(DirRef::new(sys::open_dir_required(&*d.fd()?, name)?))),
            Src::Init(layer, dir) => {
                let mut p = dir.clone();
                p.push(name.to_os_string());
                Ok(Src::Init(layer.clone(), p))
            }
        }
    }

    fn list(&self) -> io::Result<Vec<(OsString, FileType)>> {
        match self {
            Src::Real(d) => sys::list_dir(&*d.fd()?),
            Src::Init(layer, dir) => Ok(layer.list(dir)),
        }
    }
}

/// One branch's directory contributing to a merged directory.
#[derive(Debug, Clone)]
pub struct Part<V> {
    /// Index of the branch (0 = top).
    pub branch: usize,
    pub src: Src<V>,
}

/// A merged directory: the directories of that path in each branch, top
/// first, already cut below an opaque one or a whiteout.
#[derive(Debug, Clone)]
pub struct UnionDir<V> {
    pub parts: Vec<Part<V>>,
}

/// What a name resolves to in a merged directory; a directory carries its
/// topmost branch's entry for its attributes.
#[derive(Debug, Clone)]
pub enum Entry<V> {
    Dir(UnionDir<V>, Leaf<V>),
    Leaf(Leaf<V>),
}

fn whiteout_of(name: &OsStr) -> OsString {
    let mut w = OsString::from(".wh.");
    w.push(name);
    w
}

impl<V: Virtual> UnionDir<V> {
    /// The merged root of `branches` (top first). Every branch takes part:
    /// an opaque marker at a branch's root hides nothing (aufs tests
    /// opaqueness only on directories it looks up, never on the roots it was
    /// given, and Docker's aufs `Changes` skips the marker as aufs metadata;
    /// docs/FORMATS.md 3.1).
    pub fn root(branches: Vec<Src<V>>) -> UnionDir<V> {
        let parts = branches
            .into_iter()
            .enumerate()
            .map(|(branch, src)| Part { branch, src })
            .collect();
        UnionDir { parts }
    }

    /// The merged root of real layer directories.
    pub fn of_layers(layers: &[Arc<DirRef>]) -> UnionDir<V> {
        UnionDir::root(layers.iter().map(|d| Src::Real(d.clone())).collect())
    }

    /// Looks `name` up, aufs-style. Never follows a symlink.
    pub fn lookup(&self, name: &OsStr) -> io::Result<Option<Entry<V>>> {
        if name.as_bytes().starts_with(WHITEOUT) || name == "." || name == ".." {
            return Ok(None);
        }
        let wh = whiteout_of(name);
        let mut found: Option<(Leaf<V>, Vec<Part<V>>)> = None;
        for part in &self.parts {
            if part.src.has(&wh)? {
                break;
            }
            let Some(leaf) = part.src.lookup(name)? else { continue };
            let is_dir = leaf.file_type() == FileType::Directory;
            match &mut found {
                None if !is_dir => return Ok(Some(Entry::Leaf(leaf))),
                None => found = Some((leaf, Vec::new())),
                // A lower non-directory ends the merge of a directory.
                Some(_) if !is_dir => break,
                Some(_) => {}
            }
            let sub = part.src.child(name)?;
            let opaque = sub.has(OsStr::new(OPAQUE))?;
            found.as_mut().expect("set above").1.push(Part {
                branch: part.branch,
                src: sub,
            });
            if opaque {
                break;
            }
        }
        Ok(found.map(|(leaf, parts)| Entry::Dir(UnionDir { parts }, leaf)))
    }

    /// The merged directory's visible names, each with its type, in a stable
    /// order (upper branches first, then each directory's own order).
    pub fn list(&self) -> io::Result<Vec<(OsString, FileType)>> {
        let mut seen: HashSet<OsString> = HashSet::new();
        let mut hidden: HashSet<OsString> = HashSet::new();
        let mut out = Vec::new();
        for part in &self.parts {
            let mut own_whiteouts = Vec::new();
            for (name, ft) in part.src.list()? {
                let b = name.as_bytes();
                if b.starts_with(META) {
                    continue;
                }
                if let Some(rest) = b.strip_prefix(WHITEOUT) {
                    own_whiteouts.push(OsStr::from_bytes(rest).to_os_string());
                    continue;
                }
                if hidden.contains(&name) || seen.contains(&name) {
                    continue;
                }
                let ft = match ft {
                    FileType::Unknown => match part.src.lookup(&name)? {
                        Some(leaf) => leaf.file_type(),
                        None => continue,
                    },
                    ft => ft,
                };
                seen.insert(name.clone());
                out.push((name, ft));
            }
            hidden.extend(own_whiteouts);
        }
        Ok(out)
    }
}
