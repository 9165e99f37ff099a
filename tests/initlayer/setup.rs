//! Docker's `setupInitLayer` (v1.8.1 `daemon/daemon_unix.go`) replayed call
//! by call over a model of the aufs union it runs through, written for the
//! tests and independent of graph2aufs's own rule (src/initlayer.rs): what
//! a container's `aufs/diff/<cid>-init` must hold.
//!
//! The model of aufs: the init layer (`upper`) over the image's merged tree.
//! Unlinking an image entry copies its parent directories up and leaves a
//! whiteout `.wh.<name>`; creating over a whiteout removes it, and `mkdir`
//! over one marks the new directory opaque (`.wh..wh..opq`, mode 0444).
//! Copied-up directories keep the image's mode, owner and mtime; what is
//! created is root's, 0755 (files too), at the container's creation time
//! (graph2aufs's choice of time, docs/FORMATS.md).

// Each test crate uses part of it.
#![allow(dead_code)]

use super::common::*;
use super::merge::aufs_merge;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

const OPAQUE: &str = ".wh..wh..opq";

/// What setupInitLayer makes at a path.
#[derive(Clone, Copy, Debug)]
pub enum Make {
    Dir,
    File,
    Symlink(&'static str),
}

/// setupInitLayer's map, in the order Go happened to iterate it (any order
/// gives the same layer; [`init_layer_in_order`] checks that).
pub const SETUP: &[(&str, Make)] = &[
    ("/dev/pts", Make::Dir),
    ("/dev/shm", Make::Dir),
    ("/proc", Make::Dir),
    ("/sys", Make::Dir),
    ("/.dockerinit", Make::File),
    ("/.dockerenv", Make::File),
    ("/etc/resolv.conf", Make::File),
    ("/etc/hosts", Make::File),
    ("/etc/hostname", Make::File),
    ("/dev/console", Make::File),
    ("/etc/mtab", Make::Symlink("/proc/mounts")),
];

/// An entry the init layer creates: root's, at `mtime_ns`.
pub fn made(kind: Kind, mode: u32, mtime_ns: i128) -> Entry {
    let file = kind == Kind::File;
    Entry {
        kind,
        mode,
        uid: 0,
        gid: 0,
        size: 0,
        content: file.then(|| Sha256::digest(b"").into()),
        target: None,
        rdev: 0,
        xattrs: BTreeMap::new(),
        mtime_ns,
        atime_ns: None,
        nlink: if kind == Kind::Dir { 0 } else { 1 },
        link_group: None,
    }
}

/// The aufs union of the init layer being written over the image.
struct Union {
    image: Tree,
    upper: Tree,
    created_ns: i128,
}

impl Union {
    /// What the union shows at `path` (`None`: nothing, or a non-directory
    /// on the way), and whether it comes from the upper layer.
    fn visible(&self, path: &Path) -> Option<(&Entry, bool)> {
        let comps: Vec<_> = path.iter().collect();
        let mut image_shows = true;
        let mut here = PathBuf::new();
        for (k, c) in comps.iter().enumerate() {
            let mut whiteout = std::ffi::OsString::from(".wh.");
            whiteout.push(c);
            if self.upper.contains_key(&here.join(&whiteout)) {
                image_shows = false;
            }
            here.push(c);
            let up = self.upper.get(&here);
            let low = self.image.get(&here).filter(|_| image_shows);
            let (e, in_upper) = match (up, low) {
                (Some(u), _) => (u, true),
                (None, Some(l)) => (l, false),
                (None, None) => return None,
            };
            if k + 1 == comps.len() {
                return Some((e, in_upper));
            }
            if e.kind != Kind::Dir {
                return None;
            }
            if in_upper && (self.upper.contains_key(&here.join(OPAQUE)) || low.is_none_or(|l| l.kind != Kind::Dir)) {
                image_shows = false;
            }
        }
        unreachable!("paths here are never empty")
    }

    /// aufs copies `dir` and its parents up from the image, as they are.
    fn copy_up(&mut self, dir: &Path) {
        let mut here = PathBuf::new();
        for c in dir.iter() {
            here.push(c);
            if !self.upper.contains_key(&here) {
                let image = self.image.get(&here).expect("only what the image shows is copied up");
                assert_eq!(image.kind, Kind::Dir, "{} copied up", here.display());
                let e = Entry {
                    mode: image.mode,
                    uid: image.uid,
                    gid: image.gid,
                    ..made(Kind::Dir, 0, image.mtime_ns)
                };
                self.upper.insert(here.clone(), e);
            }
        }
    }

    fn whiteout_of(path: &Path) -> PathBuf {
        let mut name = std::ffi::OsString::from(".wh.");
        name.push(path.file_name().expect("a name"));
        path.with_file_name(name)
    }

    /// `unlink(2)`: fails on a directory or nothing; otherwise the entry goes
    /// and, where the image still shows one, a whiteout hides it.
    fn unlink(&mut self, path: &Path) {
        let Some((e, in_upper)) = self.visible(path) else {
            return;
        };
        if e.kind == Kind::Dir {
            return; // EISDIR
        }
        let parent = path.parent().expect("a parent");
        self.copy_up(parent);
        if in_upper {
            self.upper.remove(path);
        }
        if self.visible(path).is_some() {
            let wh = made(Kind::File, 0o444, self.created_ns);
            self.upper.insert(Union::whiteout_of(path), wh);
        }
    }

    /// Creates `path` (its parent a directory the union shows).
    fn create(&mut self, path: &Path, entry: Entry) {
        assert!(self.visible(path).is_none(), "{} exists", path.display());
        let parent = path.parent().expect("a parent");
        self.copy_up(parent);
        let was_whiteout = self.upper.remove(&Union::whiteout_of(path)).is_some();
        if entry.kind == Kind::Dir && was_whiteout {
            self.upper
                .insert(path.join(OPAQUE), made(Kind::File, 0o444, self.created_ns));
        }
        self.upper.insert(path.to_path_buf(), entry);
    }

    /// Go's `os.MkdirAll(path, 0755)`.
    fn mkdir_all(&mut self, path: &Path) {
        let mut here = PathBuf::new();
        for c in path.iter() {
            here.push(c);
            match self.visible(&here) {
                Some((e, _)) if e.kind == Kind::Dir => {}
                Some(_) => panic!("MkdirAll: {} is not a directory (setupInitLayer fails)", here.display()),
                None => self.create(&here, made(Kind::Dir, 0o755, self.created_ns)),
            }
        }
    }

    /// One path of setupInitLayer.
    fn setup(&mut self, path: &str, make: Make) {
        let rel = Path::new(path.trim_start_matches('/'));
        let mut prefix = PathBuf::new();
        for c in rel.iter() {
            prefix.push(c);
            self.unlink(&prefix);
        }
        // os.Stat follows symlinks: none is left on the way after the unlinks.
        if self.visible(rel).is_some() {
            return;
        }
        self.mkdir_all(rel.parent().expect("a parent"));
        let t = self.created_ns;
        match make {
            Make::Dir => self.mkdir_all(rel),
            Make::File => self.create(rel, made(Kind::File, 0o755, t)),
            Make::Symlink(target) => self.create(
                rel,
                Entry {
                    target: Some(PathBuf::from(target)),
                    ..made(Kind::Symlink, 0o777, t)
                },
            ),
        }
    }
}

/// The init layer Docker leaves for a container created at `created_ns` on
/// the image whose layer directories are `image_layers` (top first).
pub fn init_layer(image_layers: &[&Tree], created_ns: i128) -> Tree {
    init_layer_in_order(image_layers, created_ns, SETUP)
}

/// [`init_layer`] with setupInitLayer's paths taken in the order `order`.
pub fn init_layer_in_order(image_layers: &[&Tree], created_ns: i128, order: &[(&str, Make)]) -> Tree {
    let mut u = Union {
        image: aufs_merge(image_layers),
        upper: Tree::default(),
        created_ns,
    };
    for &(path, make) in order {
        u.setup(path, make);
    }
    let mut layer = u.upper;
    layer.insert(PathBuf::new(), made(Kind::Dir, 0o755, created_ns));
    for (path, e) in layer.iter() {
        let name = path.file_name().map(|n| n.as_encoded_bytes()).unwrap_or_default();
        assert!(
            !name.starts_with(b".wh.") || name == OPAQUE.as_bytes(),
            "a whiteout stays in the init layer: {}",
            path.display()
        );
        assert!(e.kind != Kind::Dir || e.nlink == 0);
    }
    layer
}
