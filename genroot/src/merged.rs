//! What a chain of layers shows, merged with aufs semantics: enough of it for
//! child layers and containers to modify, replace and delete what is below.

use std::collections::BTreeMap;

use super::tree::{Entry, Kind, Tree};

pub(crate) const WH_PREFIX: &str = ".wh.";
/// aufs's own names at a branch root and inside directories: `.wh..wh.*`.
pub(crate) const WH_META_PREFIX: &str = ".wh..wh.";
pub(crate) const OPAQUE: &str = ".wh..wh..opq";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Node {
    Dir,
    File,
    /// Symlinks, fifos, device nodes: nothing to descend into or rewrite.
    Other,
}

/// A visible entry: its kind, and the attributes a copy-up would keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seen {
    pub node: Node,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Seen {
    pub fn new(node: Node) -> Seen {
        Seen {
            node,
            mode: if node == Node::Dir { 0o755 } else { 0o644 },
            uid: 0,
            gid: 0,
        }
    }
}

/// The visible paths of a merged tree (relative, `/`-separated, the root left out).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Merged {
    nodes: BTreeMap<String, Seen>,
}

impl Merged {
    pub fn get(&self, path: &str) -> Option<Node> {
        self.nodes.get(path).map(|s| s.node)
    }

    pub fn seen(&self, path: &str) -> Option<Seen> {
        self.nodes.get(path).copied()
    }

    /// Adds `path`, and its missing ancestors as plain directories.
    pub fn insert(&mut self, path: &str, seen: Seen) {
        let mut at = 0;
        while let Some(i) = path[at..].find('/') {
            if !self.nodes.contains_key(&path[..at + i]) {
                self.nodes.insert(path[..at + i].to_string(), Seen::new(Node::Dir));
            }
            at += i + 1;
        }
        self.nodes.insert(path.to_string(), seen);
    }

    /// Removes what is below `path`, keeping `path` itself.
    pub fn clear_below(&mut self, path: &str) {
        let below = format!("{path}/");
        let doomed: Vec<String> = self
            .nodes
            .range(below.clone()..)
            .take_while(|(p, _)| p.starts_with(&below))
            .map(|(p, _)| p.clone())
            .collect();
        for p in doomed {
            self.nodes.remove(&p);
        }
    }

    pub fn remove(&mut self, path: &str) {
        self.clear_below(path);
        self.nodes.remove(path);
    }

    /// This merged tree with `layer` on top, as aufs shows it: whiteouts delete,
    /// opaque directories hide what is below them, a non-directory hides a lower
    /// directory and a directory a lower non-directory, aufs's own `.wh..wh.*`
    /// entries are invisible.
    pub fn with_layer(&self, layer: &Tree) -> Merged {
        let mut merged = self.clone();
        let visible = |e: &&Entry| !e.path.split('/').any(|n| n.starts_with(WH_META_PREFIX));
        for e in layer.entries() {
            let (dir, name) = split(&e.path);
            if name == OPAQUE {
                merged.clear_below(dir);
            } else if let Some(hidden) = name.strip_prefix(WH_PREFIX).filter(|n| !n.starts_with(WH_PREFIX)) {
                merged.remove(&join(dir, hidden));
            }
        }
        for e in layer.entries().iter().filter(visible) {
            let (_, name) = split(&e.path);
            if e.path.is_empty() || name.starts_with(WH_PREFIX) {
                continue;
            }
            let node = match e.kind {
                Kind::Dir | Kind::CopyOf(_) => Node::Dir,
                Kind::File(_) => Node::File,
                Kind::HardLink(ref t) => match layer.get(t).map(|t| &t.kind) {
                    Some(Kind::File(_)) => Node::File,
                    _ => Node::Other,
                },
                Kind::Symlink(_) | Kind::Fifo | Kind::CharDev(..) | Kind::BlockDev(..) => Node::Other,
            };
            if merged.get(&e.path) == Some(Node::Dir) && node != Node::Dir {
                merged.remove(&e.path);
            }
            let (mode, uid, gid) = match &e.kind {
                Kind::HardLink(t) => layer.get(t).map_or((e.mode, e.uid, e.gid), |t| (t.mode, t.uid, t.gid)),
                _ => (e.mode, e.uid, e.gid),
            };
            merged.insert(&e.path, Seen { node, mode, uid, gid });
        }
        merged
    }

    /// A visible path of kind `node` accepted by `ok`: the first accepted one
    /// from a place chosen by `roll` (a random number) among all of that kind.
    pub fn pick(&self, roll: u64, node: Node, ok: impl Fn(&str) -> bool) -> Option<String> {
        let candidates: Vec<&String> = self
            .nodes
            .iter()
            .filter(|(_, s)| s.node == node)
            .map(|(p, _)| p)
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let start = (roll % candidates.len() as u64) as usize;
        let (before, after) = candidates.split_at(start);
        after.iter().chain(before).find(|p| ok(p)).map(|p| p.to_string())
    }

    #[cfg(test)]
    pub fn paths(&self) -> impl Iterator<Item = (&str, Node)> {
        self.nodes.iter().map(|(p, s)| (p.as_str(), s.node))
    }
}

/// ("a/b", "c") for "a/b/c"; ("", "c") for "c".
pub(crate) fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

pub(crate) fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// The whiteout that deletes `path` from lower layers.
pub(crate) fn whiteout_of(path: &str) -> String {
    let (dir, name) = split(path);
    join(dir, &format!("{WH_PREFIX}{name}"))
}

#[cfg(test)]
mod tests {
    use super::super::clock::{Stamp, EPOCH};
    use super::super::tree::{Clock, Tree};
    use super::*;

    fn tree() -> Tree {
        Tree::new(Clock::new(0, Stamp::new(EPOCH, 0), 100))
    }

    #[test]
    fn layer_on_top_follows_aufs_rules() {
        let mut lower = Merged::default();
        for (p, n) in [
            ("a/x", Node::File),
            ("a/y", Node::File),
            ("b/c/d", Node::File),
            ("e", Node::File),
            ("f/g", Node::Other),
        ] {
            lower.insert(p, Seen::new(n));
        }
        let mut upper = tree();
        upper.text(".wh.e", 0o444, "");
        upper.text("a/.wh..wh..opq", 0o444, "");
        upper.text("a/z", 0o644, "");
        upper.text("b/c", 0o644, "file over dir");
        upper.text("f/g/h", 0o644, "dir over other");
        upper.text(".wh..wh.aufs", 0o444, "");
        upper.dir(".wh..wh.plnk", 0o700);
        let merged = lower.with_layer(&upper);
        let got: Vec<(&str, Node)> = merged.paths().collect();
        assert_eq!(
            got,
            vec![
                ("a", Node::Dir),
                ("a/z", Node::File),
                ("b", Node::Dir),
                ("b/c", Node::File),
                ("f", Node::Dir),
                ("f/g", Node::Dir),
                ("f/g/h", Node::File),
            ]
        );
    }
}
