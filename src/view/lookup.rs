//! Lookup and listing: the node a name leads to under the layout
//! transform (real entries, synthesized directories and files, merged
//! directories and init layers), and the entries of a directory.

use super::attr::{attr_of, errno, init_attr, kind_of, synth_attr, DirEntry};
use super::backing::{entry_stat, identity, open_path, stat_fd};
use super::fs::View;
use super::node::{Backing, Key, Node, Top, ROOT_ID};
use super::transform::{Role, Shown};
use crate::dirref::DirRef;
use crate::initlayer::InitLayer;
use crate::item::{ItemKind, Source};
use crate::layout::AufsDir;
use crate::sys;
use crate::union::{Entry, Leaf, Src, UnionDir};
use fuser::{Errno, FileAttr, FileType, INodeNo};
use rustix::fs as rfs;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

impl View {
    pub(super) fn attr(&self, node: &Node) -> io::Result<FileAttr> {
        Ok(match &*node.backing() {
            Backing::Real { dir, .. } => attr_of(&stat_fd(&*dir.fd()?)?, node.id),
            Backing::Entry { dir, name, ino } => {
                let st = entry_stat(&*dir.fd()?, name)?;
                if st.st_ino != *ino {
                    return Err(io::Error::from_raw_os_error(libc::ESTALE));
                }
                attr_of(&st, node.id)
            }
            Backing::Fd { fd } => attr_of(&stat_fd(fd)?, node.id),
            Backing::Dir { role } => synth_attr(node.id, FileType::Directory, role.synth_mode(), 4096, self.synth_time),
            Backing::Empty => synth_attr(node.id, FileType::Directory, 0o755, 4096, self.synth_time),
            Backing::File(bytes) => synth_attr(
                node.id,
                FileType::RegularFile,
                0o644,
                bytes.len() as u64,
                self.synth_time,
            ),
            Backing::Init { layer, index } => init_attr(layer, *index, node.id),
            Backing::Merged { top, .. } => match &**top {
                Top::Real(st) | Top::Leaf(Leaf::Real { stat: st, .. }) => attr_of(st, node.id),
                Top::Leaf(Leaf::Init { layer, index }) => init_attr(layer, Some(*index), node.id),
                Top::InitRoot(layer) => init_attr(layer, None, node.id),
            },
        })
    }

    pub(super) fn real_node(&self, dir: &Arc<DirRef>, name: &OsStr, role: Role) -> io::Result<Arc<Node>> {
        self.real_node_in(dir, name, role, None)
    }

    /// [`View::real_node`] of an entry inside item `layer`'s data.
    pub(super) fn real_node_in(
        &self,
        dir: &Arc<DirRef>,
        name: &OsStr,
        role: Role,
        layer: Option<usize>,
    ) -> io::Result<Arc<Node>> {
        let layer = layer.filter(|_| self.writable);
        let dir_fd = dir.fd()?;
        let (ft, key) = identity(dir_fd.as_ref(), name)?;
        if ft != rfs::FileType::Directory {
            let (dir, name) = (dir.clone(), name.to_os_string());
            let Key::Real(_, ino, _) = key else {
                unreachable!("identity gives real keys")
            };
            return Ok(self.table.lookup_tagged(key, None, layer, || Backing::Entry {
                dir,
                name: name.into(),
                ino,
            }));
        }
        if let Some(n) = self.table.existing(&key) {
            return Ok(n);
        }
        let fd = open_path(dir_fd.as_ref(), name)?;
        let (_, key) = identity(&fd, OsStr::new(""))?;
        Ok(self.table.lookup_tagged(key, None, layer, || Backing::Real {
            dir: DirRef::new(fd),
            role,
        }))
    }

    /// Whether graph2aufs itself makes files in directory `node` behind the
    /// kernel: ROOT and `.graph2aufs`.
    pub(super) fn own_files_in(&self, node: &Node) -> bool {
        match &*node.backing() {
            Backing::Real { role, .. } | Backing::Dir { role } => matches!(role, Role::Root | Role::Own),
            _ => false,
        }
    }

    /// The `--aufs-dir`, if `name` in `parent` is the symlink `ROOT/aufs`
    /// to it (the view shows the directory: Docker must find the view's
    /// `aufs/`, not the disk's, while items migrate).
    pub(super) fn linked_aufs(
        &self,
        parent: Role,
        name: &OsStr,
        dir: &Arc<DirRef>,
    ) -> io::Result<Option<&Arc<DirRef>>> {
        let Some(a) = &self.aufs_dir else { return Ok(None) };
        if parent != Role::Root || name != "aufs" {
            return Ok(None);
        }
        let st = sys::lstat(&*dir.fd()?, name)?;
        Ok(st
            .filter(|st| rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Symlink)
            .map(|_| a))
    }

    /// The node of a real directory held by `dir`.
    pub(super) fn real_dir_node(&self, dir: &Arc<DirRef>, role: Role) -> io::Result<Arc<Node>> {
        let (_, key) = identity(&*dir.fd()?, OsStr::new(""))?;
        let dir = dir.clone();
        Ok(self
            .table
            .lookup_tagged(key, None, None, || Backing::Real { dir, role }))
    }

    pub(super) fn aufs_fd(&self, d: AufsDir) -> io::Result<&OwnedFd> {
        let dir = match d {
            AufsDir::Diff => &self.dirs.diff,
            AufsDir::Layers => &self.dirs.layers,
            AufsDir::Mnt => &self.dirs.mnt,
        };
        dir.as_ref().ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
    }

    pub(super) fn data_place(&self, i: usize) -> io::Result<(OwnedFd, OsString)> {
        crate::place::data_place(&self.dirs, &self.transform.plan.items[i])
    }

    /// The directory of item `i`'s data. The read-only view opens it once:
    /// every merged root of a chain shares its layers' descriptors.
    pub(super) fn data_dir(&self, i: usize) -> io::Result<Arc<DirRef>> {
        if self.writable {
            return crate::place::data_dir(&self.dirs, &self.transform.plan.items[i]);
        }
        let mut dirs = self.data_dirs.lock().expect("never poisoned");
        if let Some(d) = dirs.get(&i) {
            return Ok(d.clone());
        }
        let d = crate::place::data_dir(&self.dirs, &self.transform.plan.items[i])?;
        dirs.insert(i, d.clone());
        Ok(d)
    }

    pub(super) fn init_layer(&self, i: usize) -> io::Result<Arc<InitLayer>> {
        if let Some(l) = self.inits.lock().expect("never poisoned").get(&i) {
            return Ok(l.clone());
        }
        let layer = Arc::new(crate::place::init_layer(&self.dirs, &self.transform.plan, i)?);
        self.inits.lock().expect("never poisoned").insert(i, layer.clone());
        Ok(layer)
    }

    /// The branches of item `i`'s merged root filesystem, top first.
    pub(super) fn merged(&self, i: usize, init_only: bool) -> io::Result<(UnionDir<InitLayer>, Top)> {
        let plan = &self.transform.plan;
        let it = &plan.items[i];
        let mut branches = Vec::new();
        let mut top = None;
        if it.kind == ItemKind::Container {
            let layer = self.init_layer(i)?;
            if !init_only && it.source != Source::Empty {
                let d = self.data_dir(i)?;
                top = Some(Top::Real(stat_fd(&*d.fd()?)?));
                branches.push(Src::Real(d));
            }
            top.get_or_insert(Top::InitRoot(layer.clone()));
            branches.push(Src::Init(layer, Vec::new()));
        } else {
            let d = self.data_dir(i)?;
            top = Some(Top::Real(stat_fd(&*d.fd()?)?));
            branches.push(Src::Real(d));
        }
        for id in plan.chain(i) {
            let j = plan
                .find(&id)
                .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
            branches.push(Src::Real(self.data_dir(j)?));
        }
        Ok((UnionDir::root(branches), top.expect("set above")))
    }

    pub(super) fn shown_node(&self, parent: &Node, name: &OsStr, shown: Shown) -> io::Result<Arc<Node>> {
        let key = || Key::Child(parent.id, name.to_os_string());
        // In a read-write view, what a pending item's transform makes is
        // rebound to the disk once the item migrates.
        let origin = |i: usize| Some(i).filter(|_| self.writable);
        // A synthesized node the kernel already knows: no need to build its
        // backing again (a merged directory opens every branch).
        if matches!(shown, Shown::Layers(..) | Shown::Init(_) | Shown::Merged(..)) {
            if let Some(n) = self.table.existing(&key()) {
                return Ok(n);
            }
        }
        Ok(match shown {
            Shown::Hidden => return Err(io::Error::from_raw_os_error(libc::ENOENT)),
            Shown::Data(i) => {
                // (Not while a copy of it to another file system switches.)
                let _switch = self.live.as_ref().map(|m| m.switching());
                let (dir, leaf) = self.data_place(i)?;
                self.real_node_in(&DirRef::new(dir), &leaf, Role::Plain, Some(i))?
            }
            Shown::Repositories => self.real_node(&self.root_dir, OsStr::new("repositories"), Role::Plain)?,
            Shown::Registration(d) => self.real_node(&DirRef::new(self.aufs_fd(d)?.try_clone()?), name, Role::Plain)?,
            Shown::Dir(role) => self.table.lookup(key(), || Backing::Dir { role }),
            Shown::Empty(i) => self.table.lookup_from(key(), origin(i), || Backing::Empty),
            Shown::Layers(i, init) => {
                let plan = &self.transform.plan;
                let bytes = if init {
                    plan.init_layers_bytes(i)
                } else {
                    plan.layers_bytes(i)
                };
                self.table.lookup_from(key(), origin(i), || Backing::File(bytes.into()))
            }
            Shown::Init(i) => {
                let layer = self.init_layer(i)?;
                self.table
                    .lookup_from(key(), origin(i), || Backing::Init { layer, index: None })
            }
            Shown::Merged(i, init) => {
                let (dir, top) = self.merged(i, init)?;
                self.table.lookup(key(), || Backing::Merged {
                    dir,
                    top: Box::new(top),
                })
            }
        })
    }

    /// Resolves `name` in `parent`, counting a lookup of the result.
    pub(super) fn child(&self, parent: &Node, name: &OsStr) -> io::Result<Arc<Node>> {
        let enoent = || io::Error::from_raw_os_error(libc::ENOENT);
        // A merged directory the kernel already knows below this one: not
        // merged again (that opens a directory in every branch).
        if let Backing::Merged { .. } = *parent.backing() {
            if let Some(n) = self.table.existing(&Key::Child(parent.id, name.to_os_string())) {
                return Ok(n);
            }
        }
        // A node a pending item's transform made, now maybe rebound to the
        // disk: the same node id for as long as the kernel keeps it (an
        // `aufs/mnt/<id>` may be a mount point).
        if self.writable && parent.origin().is_none() {
            if let Some(n) = self.table.existing(&Key::Child(parent.id, name.to_os_string())) {
                return Ok(n);
            }
        }
        match &*parent.backing() {
            Backing::Real { dir, role } => {
                let role = *role;
                if let Some(a) = self.linked_aufs(role, name, dir)? {
                    return self.real_dir_node(a, Role::Aufs);
                }
                match self.transform.shown(role, name) {
                    Some(s) if s.only_if_absent() => match sys::lstat(&*dir.fd()?, name)? {
                        Some(_) => self.real_node_in(dir, name, self.transform.child_role(role, name), parent.layer()),
                        None => self.shown_node(parent, name, s),
                    },
                    Some(s) => self.shown_node(parent, name, s),
                    None => self.real_node_in(dir, name, self.transform.child_role(role, name), parent.layer()),
                }
            }
            Backing::Dir { role } => match self.transform.shown(*role, name) {
                Some(s) => self.shown_node(parent, name, s),
                None => Err(enoent()),
            },
            Backing::Empty | Backing::File(_) => Err(enoent()),
            Backing::Entry { .. } | Backing::Fd { .. } => Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
            Backing::Init { layer, index } => {
                let mut path = index.map(|i| layer.entries[i].path.clone()).unwrap_or_default();
                path.push(name.to_os_string());
                let i = layer.find(&path).ok_or_else(enoent)?;
                let layer = layer.clone();
                Ok(self
                    .table
                    .lookup_from(Key::Child(parent.id, name.to_os_string()), parent.origin(), || {
                        Backing::Init { layer, index: Some(i) }
                    }))
            }
            Backing::Merged { dir, .. } => match dir.lookup(name)?.ok_or_else(enoent)? {
                Entry::Dir(dir, leaf) => {
                    Ok(self
                        .table
                        .lookup(Key::Child(parent.id, name.to_os_string()), || Backing::Merged {
                            dir,
                            top: Box::new(Top::Leaf(leaf)),
                        }))
                }
                Entry::Leaf(Leaf::Real { parent: p, .. }) => self.real_node(&p, name, Role::Plain),
                Entry::Leaf(Leaf::Init { layer, index }) => {
                    Ok(self
                        .table
                        .lookup(Key::Child(parent.id, name.to_os_string()), || Backing::Init {
                            layer,
                            index: Some(index),
                        }))
                }
            },
        }
    }

    pub(super) fn list(&self, node: &Node) -> io::Result<Vec<DirEntry>> {
        let mut out = vec![
            DirEntry {
                name: ".".into(),
                kind: FileType::Directory,
                ino: node.id,
            },
            DirEntry {
                name: "..".into(),
                kind: FileType::Directory,
                ino: ROOT_ID,
            },
        ];
        let synth_ino = u64::MAX;
        let shown_kind = |s: &Shown| -> FileType {
            match s {
                Shown::Layers(..) | Shown::Repositories => FileType::RegularFile,
                // What Docker 1.8 left: a symlink, a file or a directory.
                Shown::Registration(_) => FileType::RegularFile,
                _ => FileType::Directory,
            }
        };
        match &*node.backing() {
            Backing::Real { dir, role } => {
                let fd = dir.fd()?;
                let mut names = std::collections::HashSet::new();
                let listing = if self.writable {
                    sys::list_dir_inos_reading(fd.as_ref())?
                } else {
                    sys::list_dir_inos(fd.as_ref())?
                };
                for (name, ft, ino) in listing {
                    if ft == rfs::FileType::Symlink && self.linked_aufs(*role, &name, dir)?.is_some() {
                        names.insert(name.clone());
                        out.push(DirEntry {
                            name,
                            kind: FileType::Directory,
                            ino: synth_ino,
                        });
                        continue;
                    }
                    // A replaced entry's inode is known only once looked up.
                    let (kind, ino) = match self.transform.shown(*role, &name) {
                        Some(Shown::Hidden) => continue,
                        Some(s) if !s.only_if_absent() => (shown_kind(&s), synth_ino),
                        _ if ft == rfs::FileType::Unknown => match sys::lstat(&*fd, &name)? {
                            Some(st) => (kind_of(rfs::FileType::from_raw_mode(st.st_mode)), ino),
                            None => continue,
                        },
                        _ => (kind_of(ft), ino),
                    };
                    names.insert(name.clone());
                    out.push(DirEntry { name, kind, ino });
                }
                for (name, s) in self.transform.added(*role) {
                    if !names.contains(&name) {
                        out.push(DirEntry {
                            kind: shown_kind(&s),
                            name,
                            ino: synth_ino,
                        });
                    }
                }
            }
            Backing::Dir { role } => {
                for (name, s) in self.transform.added(*role) {
                    let kind = match &s {
                        Shown::Registration(d) => match sys::lstat(self.aufs_fd(*d)?, &name)? {
                            Some(st) => kind_of(rfs::FileType::from_raw_mode(st.st_mode)),
                            None => continue,
                        },
                        s => shown_kind(s),
                    };
                    out.push(DirEntry {
                        kind,
                        name,
                        ino: synth_ino,
                    });
                }
            }
            Backing::Empty | Backing::File(_) | Backing::Entry { .. } | Backing::Fd { .. } => {}
            Backing::Init { layer, index } => {
                let path = index.map(|i| layer.entries[i].path.clone()).unwrap_or_default();
                for i in layer.children(&path) {
                    let e = &layer.entries[i];
                    out.push(DirEntry {
                        name: e.path.last().cloned().unwrap_or_default(),
                        kind: kind_of(e.file_type()),
                        ino: synth_ino,
                    });
                }
            }
            Backing::Merged { dir, .. } => {
                for (name, ft) in dir.list()? {
                    out.push(DirEntry {
                        name,
                        kind: kind_of(ft),
                        ino: synth_ino,
                    });
                }
            }
        }
        Ok(out)
    }

    /// A lookup the kernel will hold: the child's attributes, with its
    /// lookup count taken (and given back if its attributes cannot be had).
    pub(super) fn looked_up(&self, parent: &Node, name: &OsStr) -> io::Result<FileAttr> {
        let node = self.child(parent, name)?;
        self.attr(&node).inspect_err(|_| self.table.forget(node.id, 1))
    }

    /// A directory's entries for a read from `offset`: listed afresh at
    /// offset 0, kept while the kernel reads the following chunks.
    pub(super) fn dir_entries(&self, ino: INodeNo, offset: u64) -> Result<Arc<Vec<DirEntry>>, Errno> {
        if offset > 0 {
            if let Some(e) = self.listings.lock().expect("never poisoned").get(&ino.0) {
                return Ok(e.clone());
            }
        }
        let entries = Arc::new(self.list(&*self.node(ino)?).map_err(errno)?);
        self.listings
            .lock()
            .expect("never poisoned")
            .insert(ino.0, entries.clone());
        Ok(entries)
    }

    /// The kernel has read a listing to its end.
    pub(super) fn listing_done(&self, ino: INodeNo) {
        self.listings.lock().expect("never poisoned").remove(&ino.0);
    }
}
