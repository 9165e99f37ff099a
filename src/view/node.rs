//! The inode table: every inode the kernel knows, with what backs it. Real
//! inodes hold an `O_PATH` descriptor (never a path), so they survive
//! renames of anything above them. The FUSE node id is the number `stat`
//! shows: a real inode's own `st_ino` on ROOT's device, its `st_ino` with
//! its device's slot in the top bits on another device (an `--aufs-dir`, a
//! layer copied there), a number from a separate range for everything else.
//! A real inode keeps its number when the kernel forgets it and finds it
//! again (memory pressure), and when its layer is copied to another file
//! system, as natively: hard links stay one inode to `tar`, `du` and
//! `find -samefile` however long they walk.

use super::transform::Role;
use crate::dirref::DirRef;
use crate::initlayer::InitLayer;
use crate::union::UnionDir;
use rustix::fs::Stat;
use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

/// Node ids graph2aufs allocates start here, far above any real `st_ino`.
const SYNTHETIC_BASE: u64 = 1 << 62;
/// Real inode numbers below this are shown as they are (ROOT's device), or
/// with their device's slot above them (other devices).
const INO_BITS: u32 = 56;
/// Devices other than ROOT's that get a slot of their own.
const DEVICE_SLOTS: usize = (SYNTHETIC_BASE >> INO_BITS) as usize - 1;
pub const ROOT_ID: u64 = 1;

#[derive(Debug)]
pub enum Backing {
    /// A real directory of ROOT (or of a file system mounted below it).
    Real { dir: Arc<DirRef>, role: Role },
    /// A real non-directory, held as its name in its directory: no
    /// descriptor per file, so a walk of millions of files stays within the
    /// descriptor limit. (The read-only view never changes, so the name
    /// stays right.)
    Entry {
        dir: Arc<DirRef>,
        name: Box<std::ffi::OsStr>,
        /// The inode the name led to: if it leads elsewhere now (replaced
        /// behind the view), the node is stale.
        ino: u64,
    },
    /// A real non-directory held by its own `O_PATH` descriptor (read-write
    /// view): one whose name was removed or renamed while the kernel kept it.
    Fd { fd: Arc<OwnedFd> },
    /// A directory graph2aufs adds (its children come from the transform).
    Dir { role: Role },
    /// An empty directory (a mount point, a never-started container's rw).
    Empty,
    /// A `layers/` file's bytes.
    File(Arc<[u8]>),
    /// An entry of an init layer (`None`: its root).
    Init {
        layer: Arc<InitLayer>,
        index: Option<usize>,
    },
    /// A merged directory (read-only mode), with where its attributes come
    /// from.
    Merged { dir: UnionDir<InitLayer>, top: Box<Top> },
}

/// The entry giving a merged directory its attributes.
#[derive(Debug, Clone)]
pub enum Top {
    Leaf(crate::union::Leaf<InitLayer>),
    /// The root of an init layer.
    InitRoot(Arc<InitLayer>),
    Real(Stat),
}

#[derive(Debug)]
pub struct Node {
    pub id: u64,
    backing: RwLock<Backing>,
    /// See [`Node::origin`].
    origin: Tag,
    /// See [`Node::layer`].
    layer: Tag,
    lookups: AtomicU64,
}

/// An optional item index in 4 bytes (a node is kept per inode the kernel
/// knows: millions).
#[derive(Debug, Clone, Copy)]
struct Tag(u32);

impl Tag {
    fn of(i: Option<usize>) -> Tag {
        Tag(i
            .and_then(|i| u32::try_from(i).ok())
            .filter(|&i| i != u32::MAX)
            .unwrap_or(u32::MAX))
    }
    fn get(self) -> Option<usize> {
        (self.0 != u32::MAX).then_some(self.0 as usize)
    }
}

impl Node {
    /// The pending item whose transform made this node (read-write view):
    /// a change to it migrates that item first.
    pub fn origin(&self) -> Option<usize> {
        self.origin.get()
    }

    /// The item whose layer data this node is in (read-write view): when
    /// that layer switches to its copy on another file system, the node is
    /// rebound to the copy, and requests on it hold the switch off while
    /// they are served (see `View::hold`).
    pub fn layer(&self) -> Option<usize> {
        self.layer.get()
    }

    pub fn backing(&self) -> RwLockReadGuard<'_, Backing> {
        self.backing.read().expect("a backing lock is never poisoned")
    }

    /// Serves this node from elsewhere from now on (same id: the kernel
    /// sees no change).
    pub fn rebind(&self, backing: Backing) {
        *self.backing.write().expect("a backing lock is never poisoned") = backing;
    }
}

/// Identity of a node for reuse across lookups: a real inode by device and
/// inode number, anything else by its parent and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// Device, inode number, and birth time (inode numbers are reused).
    Real(u64, u64, u64),
    Child(u64, OsString),
}

pub struct Table {
    nodes: RwLock<HashMap<u64, (Arc<Node>, Key)>>,
    /// Node ids by key, for the nodes whose id is not their key's stable
    /// number (see [`Table::stable_id`]; those are found in `nodes`
    /// directly: most nodes, kept once instead of twice).
    keys: Mutex<HashMap<Key, u64>>,
    next: AtomicU64,
    /// ROOT's device: its inodes keep their own numbers.
    main_dev: u64,
    /// Nodes made by each pending item's transform, to rebind when it
    /// migrates.
    made_by: Mutex<HashMap<usize, Vec<u64>>>,
    /// Devices other than ROOT's, in the order met: slots 1, 2, ...
    devices: Mutex<Vec<u64>>,
    /// The numbers inodes copied to another file system keep (those the
    /// kernel knew when their layer switched to its copy).
    kept: Mutex<HashMap<Key, u64>>,
}

impl Table {
    pub fn new(root: Backing, main_dev: u64) -> Table {
        let node = Arc::new(Node {
            id: ROOT_ID,
            backing: RwLock::new(root),
            origin: Tag::of(None),
            layer: Tag::of(None),
            lookups: AtomicU64::new(1),
        });
        let mut nodes = HashMap::new();
        nodes.insert(ROOT_ID, (node, Key::Child(0, OsString::new())));
        Table {
            nodes: RwLock::new(nodes),
            keys: Mutex::new(HashMap::new()),
            next: AtomicU64::new(SYNTHETIC_BASE),
            main_dev,
            made_by: Mutex::new(HashMap::new()),
            devices: Mutex::new(Vec::new()),
            kept: Mutex::new(HashMap::new()),
        }
    }

    /// The number a real inode is shown with whenever the kernel looks it
    /// up, if it has one (see the module doc); `None`: a number from the
    /// separate range, new each time.
    fn stable_id(&self, key: &Key) -> Option<u64> {
        let Key::Real(dev, ino, _) = key else { return None };
        if let Some(&id) = self.kept.lock().expect("never poisoned").get(key) {
            return Some(id);
        }
        if *ino >= 1 << INO_BITS {
            return None;
        }
        if *dev == self.main_dev {
            return (*ino > ROOT_ID).then_some(*ino);
        }
        let mut devices = self.devices.lock().expect("never poisoned");
        let slot = match devices.iter().position(|d| d == dev) {
            Some(i) => i + 1,
            None if devices.len() < DEVICE_SLOTS => {
                devices.push(*dev);
                devices.len()
            }
            None => return None,
        };
        Some((slot as u64) << INO_BITS | ino)
    }

    pub fn get(&self, id: u64) -> Option<Arc<Node>> {
        self.nodes
            .read()
            .expect("the table lock is never poisoned")
            .get(&id)
            .map(|(n, _)| n.clone())
    }

    /// Finds or adds the node for `key`, counting one lookup; `make` builds
    /// the backing only when the node is new.
    pub fn lookup(&self, key: Key, make: impl FnOnce() -> Backing) -> Arc<Node> {
        self.lookup_from(key, None, make)
    }

    /// [`Table::lookup`] of a node made by item `origin`'s transform.
    pub fn lookup_from(&self, key: Key, origin: Option<usize>, make: impl FnOnce() -> Backing) -> Arc<Node> {
        self.lookup_tagged(key, origin, None, make)
    }

    /// [`Table::lookup_from`] of a node inside item `layer`'s data.
    pub fn lookup_tagged(
        &self,
        key: Key,
        origin: Option<usize>,
        layer: Option<usize>,
        make: impl FnOnce() -> Backing,
    ) -> Arc<Node> {
        let mut keys = self.keys.lock().expect("the key lock is never poisoned");
        let stable = self.stable_id(&key);
        if let Some(n) = self.known(&keys, &key, stable) {
            return n;
        }
        let id = match stable {
            // (Unless a node of an earlier inode of that number lives on.)
            Some(id) if self.get(id).is_none() => id,
            _ => self.next.fetch_add(1, Ordering::SeqCst),
        };
        let node = Arc::new(Node {
            id,
            backing: RwLock::new(make()),
            origin: Tag::of(origin),
            layer: Tag::of(layer),
            lookups: AtomicU64::new(1),
        });
        if let Some(i) = origin {
            self.made_by
                .lock()
                .expect("never poisoned")
                .entry(i)
                .or_default()
                .push(id);
        }
        if stable != Some(id) {
            keys.insert(key.clone(), id);
        }
        self.nodes
            .write()
            .expect("the table lock is never poisoned")
            .insert(id, (node.clone(), key));
        node
    }

    /// The node for `key` if the table has it, counting one lookup: lets a
    /// caller skip building a backing (opening descriptors, merging
    /// branches) that an existing node already has.
    pub fn existing(&self, key: &Key) -> Option<Arc<Node>> {
        let keys = self.keys.lock().expect("the key lock is never poisoned");
        self.known(&keys, key, self.stable_id(key))
    }

    fn known(&self, keys: &HashMap<Key, u64>, key: &Key, stable: Option<u64>) -> Option<Arc<Node>> {
        let n = self.find(keys, key, stable)?;
        n.lookups.fetch_add(1, Ordering::SeqCst);
        Some(n)
    }

    /// The node of `key`: under its stable number `stable` (see
    /// [`Table::stable_id`]), or else by `keys`.
    fn find(&self, keys: &HashMap<Key, u64>, key: &Key, stable: Option<u64>) -> Option<Arc<Node>> {
        if let Some(id) = stable {
            let nodes = self.nodes.read().expect("the table lock is never poisoned");
            if let Some((n, k)) = nodes.get(&id) {
                if k == key {
                    return Some(n.clone());
                }
            }
        }
        self.get(*keys.get(key)?)
    }

    /// The node for `key`, without counting a lookup.
    pub fn peek(&self, key: &Key) -> Option<Arc<Node>> {
        let keys = self.keys.lock().expect("the key lock is never poisoned");
        self.find(&keys, key, self.stable_id(key))
    }

    /// The key a node was made under.
    pub fn key_of(&self, id: u64) -> Option<Key> {
        self.nodes
            .read()
            .expect("the table lock is never poisoned")
            .get(&id)
            .map(|(_, k)| k.clone())
    }

    /// The name `key` (a parent and a name) no longer leads to its node
    /// (removed or renamed away); the node lives on while the kernel holds
    /// it.
    pub fn unkey(&self, key: &Key) {
        debug_assert!(matches!(key, Key::Child(..)), "only names are unkeyed");
        self.keys.lock().expect("the key lock is never poisoned").remove(key);
    }

    /// The nodes item `i`'s transform made, with their keys, oldest (so
    /// parents) first; forgets the list.
    pub fn take_made_by(&self, i: usize) -> Vec<(Arc<Node>, Key)> {
        let mut ids = self
            .made_by
            .lock()
            .expect("never poisoned")
            .remove(&i)
            .unwrap_or_default();
        ids.sort_unstable();
        let nodes = self.nodes.read().expect("the table lock is never poisoned");
        ids.iter().filter_map(|id| nodes.get(id).cloned()).collect()
    }

    /// The kernel forgets `n` lookups of `id`; the node goes at zero.
    pub fn forget(&self, id: u64, n: u64) {
        if id == ROOT_ID {
            return;
        }
        let mut keys = self.keys.lock().expect("the key lock is never poisoned");
        let mut nodes = self.nodes.write().expect("the table lock is never poisoned");
        let gone = match nodes.get(&id) {
            Some((node, _)) => {
                let prev = node
                    .lookups
                    .fetch_sub(n.min(node.lookups.load(Ordering::SeqCst)), Ordering::SeqCst);
                prev <= n
            }
            None => false,
        };
        if gone {
            if let Some((_, key)) = nodes.remove(&id) {
                if keys.get(&key) == Some(&id) {
                    keys.remove(&key);
                }
            }
        }
    }

    /// The nodes inside item `layer`'s data, with their keys.
    pub fn layer_nodes(&self, layer: usize) -> Vec<(Arc<Node>, Key)> {
        let nodes = self.nodes.read().expect("the table lock is never poisoned");
        nodes
            .values()
            .filter(|(n, _)| n.layer() == Some(layer))
            .cloned()
            .collect()
    }

    /// Node `id` is found by `key` from now on (its inode was copied to
    /// another file system: same id, so the kernel sees no change).
    pub fn rekey(&self, id: u64, key: Key) {
        let mut keys = self.keys.lock().expect("the key lock is never poisoned");
        let mut nodes = self.nodes.write().expect("the table lock is never poisoned");
        let Some((_, old)) = nodes.get_mut(&id) else { return };
        if keys.get(old) == Some(&id) {
            keys.remove(old);
        }
        // (Its stable number from now on: found by it, and found again
        // under it once the kernel forgets it.)
        self.kept.lock().expect("never poisoned").insert(key.clone(), id);
        *old = key;
    }
}
