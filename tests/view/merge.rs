//! An aufs merge written for the tests, independent of graph2aufs's own
//! (src/union.rs): what a layer's root filesystem must look like.

// Each test crate uses part of it.
#![allow(dead_code)]

use super::common::*;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

const OPAQUE: &str = ".wh..wh..opq";

/// The names in each directory of a snapshot.
pub fn children(tree: &Tree) -> HashMap<PathBuf, Vec<OsString>> {
    let mut out: HashMap<PathBuf, Vec<OsString>> = HashMap::new();
    for path in tree.keys() {
        if let (Some(parent), Some(name)) = (path.parent(), path.file_name()) {
            out.entry(parent.to_path_buf()).or_default().push(name.to_os_string());
        }
    }
    out
}

/// The root filesystem aufs shows for `layers` (snapshots of layer
/// directories, top first): `.wh.<name>` hides `<name>` in lower layers,
/// `.wh..wh..opq` hides everything below its directory (but at a layer's
/// root it hides nothing), `.wh..wh.*` is never shown, an upper entry
/// replaces lower ones (a non-directory over a directory hides it). Each
/// entry is its topmost layer's; entries that share an inode in their layer
/// share a link group, named by its first path.
pub fn aufs_merge(layers: &[&Tree]) -> Tree {
    let kids: Vec<_> = layers.iter().map(|t| children(t)).collect();
    let mut found: BTreeMap<PathBuf, (usize, Entry)> = BTreeMap::new();
    found.insert(PathBuf::new(), (0, layers[0].at("").clone()));
    // Every layer's root takes part: an opaque marker at a layer's root
    // hides nothing (aufs never tests its branch roots for one).
    let parts: Vec<usize> = (0..layers.len()).collect();
    merge_dir(layers, &kids, Path::new(""), &parts, &mut found);
    let mut groups: HashMap<(usize, PathBuf), PathBuf> = HashMap::new();
    found
        .into_iter()
        .map(|(path, (layer, mut e))| {
            if let Some(g) = e.link_group.take() {
                e.link_group = Some(groups.entry((layer, g)).or_insert_with(|| path.clone()).clone());
            }
            (path, e)
        })
        .collect()
}

/// Merges directory `dir` of the layers in `parts` (top first, already cut
/// below an opaque directory, a whiteout or a non-directory).
fn merge_dir(
    layers: &[&Tree],
    kids: &[HashMap<PathBuf, Vec<OsString>>],
    dir: &Path,
    parts: &[usize],
    found: &mut BTreeMap<PathBuf, (usize, Entry)>,
) {
    let mut hidden: HashSet<OsString> = HashSet::new();
    for &b in parts {
        let mut whiteouts = Vec::new();
        for name in kids[b].get(dir).into_iter().flatten() {
            if let Some(rest) = name.as_bytes().strip_prefix(b".wh.") {
                if !rest.starts_with(b".wh.") {
                    whiteouts.push(OsStr::from_bytes(rest).to_os_string());
                }
                continue;
            }
            let path = dir.join(name);
            if hidden.contains(name) || found.contains_key(&path) {
                continue;
            }
            let entry = layers[b].at(&path).clone();
            let is_dir = entry.kind == Kind::Dir;
            found.insert(path.clone(), (b, entry));
            if !is_dir {
                continue;
            }
            let mut below = vec![b];
            if !layers[b].contains_key(&path.join(OPAQUE)) {
                let mut whiteout = OsString::from(".wh.");
                whiteout.push(name);
                for &c in parts.iter().filter(|&&c| c > b) {
                    if layers[c].contains_key(&dir.join(&whiteout)) {
                        break;
                    }
                    match layers[c].get(&path) {
                        None => {}
                        Some(e) if e.kind != Kind::Dir => break,
                        Some(_) => {
                            below.push(c);
                            if layers[c].contains_key(&path.join(OPAQUE)) {
                                break;
                            }
                        }
                    }
                }
            }
            merge_dir(layers, kids, &path, &below, found);
        }
        hidden.extend(whiteouts);
    }
}

/// Snapshots of layer directories, each taken once.
pub struct LayerCache {
    trees: HashMap<PathBuf, Tree>,
}

impl LayerCache {
    pub fn new() -> LayerCache {
        LayerCache { trees: HashMap::new() }
    }

    /// The merge of the layer directories `dirs`, top first.
    pub fn merge(&mut self, dirs: &[PathBuf]) -> Tree {
        for d in dirs {
            self.trees.entry(d.clone()).or_insert_with(|| snapshot(d));
        }
        let layers: Vec<&Tree> = dirs.iter().map(|d| &self.trees[d]).collect();
        aufs_merge(&layers)
    }
}

/// The lines of an `aufs/layers/<id>` file: the layer's ancestors, nearest first.
#[track_caller]
pub fn ancestors(layers_file: &Path) -> Vec<String> {
    let text = fs::read_to_string(layers_file).unwrap_or_else(|e| panic!("reading {}: {e}", layers_file.display()));
    text.lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
}
