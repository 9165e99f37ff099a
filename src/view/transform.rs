//! The layout transform: ROOT as it will look after migration. For each
//! directory of the view (known by its role), which names are hidden,
//! replaced, or added. Everything is derived from the plan, the same one
//! `migrate` executes.

use crate::item::{ItemKind, Source};
use crate::layout::AufsDir;
use crate::legacy::Scan;
use crate::plan::{Plan, Repositories};
use crate::root::OWN_DIR;
use crate::sys::Kind;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// What a directory of the view is, for the transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Passed through unchanged, with everything below it.
    Plain,
    Root,
    Graph,
    Image(usize),
    Containers,
    Container(usize),
    Aufs,
    Diff,
    Layers,
    Mnt,
    Own,
    Quarantine,
    QuarantineKind(ItemKind),
    QuarantineItem(usize),
    /// `.graph2aufs/quarantine/aufs`, and its `diff`, `layers`, `mnt`.
    QuarantineAufs,
    QuarantineAufsDir(AufsDir),
}

impl Role {
    /// The role of `aufs/diff`, `aufs/layers` or `aufs/mnt`.
    pub fn of_aufs(d: AufsDir) -> Role {
        match d {
            AufsDir::Diff => Role::Diff,
            AufsDir::Layers => Role::Layers,
            AufsDir::Mnt => Role::Mnt,
        }
    }

    /// The mode of a directory of this role that graph2aufs synthesizes: what
    /// `migrate` creates there (its own directory and the quarantine 0700,
    /// the aufs directories 0755).
    pub fn synth_mode(self) -> u16 {
        match self {
            Role::Own
            | Role::Quarantine
            | Role::QuarantineKind(_)
            | Role::QuarantineItem(_)
            | Role::QuarantineAufs
            | Role::QuarantineAufsDir(_) => 0o700,
            _ => 0o755,
        }
    }
}

/// Pending work a change through the view must wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Touch {
    Item(usize),
    Repositories,
}

/// What the view shows under a name instead of (or besides) the disk.
#[derive(Debug, Clone)]
pub enum Shown {
    Hidden,
    /// The legacy data of item `usize` (`graph/<id>/layer`, `containers/<id>/rw`,
    /// or its quarantined copy), wherever it is now.
    Data(usize),
    /// `repositories`, shown as `repositories-aufs`.
    Repositories,
    /// A blocked item's entry in an aufs directory (left by Docker 1.8),
    /// shown where `migrate` quarantines it.
    Registration(AufsDir),
    /// A directory graph2aufs synthesizes, shown only where the disk has none.
    Dir(Role),
    /// An empty directory (a never-started container's rw layer; a mount
    /// point) of item `usize`.
    Empty(usize),
    /// The exact bytes of a `layers/` file: of item `usize`, or of its init
    /// layer.
    Layers(usize, bool),
    /// The init layer of container `usize`.
    Init(usize),
    /// Read-only mode: the merged root filesystem of a layer: the item, and
    /// whether it is the container's init layer.
    Merged(usize, bool),
}

impl Shown {
    /// True when the disk's entry of the same name, if any, wins.
    pub fn only_if_absent(&self) -> bool {
        matches!(self, Shown::Dir(_))
    }
}

/// How far a pending item of a read-write view has come (the view shows
/// the same at every step; what changes is where it reads from).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Progress {
    Pending = 0,
    /// Registered, its data still in its legacy place (a symlink fallback
    /// at `aufs/diff/<id>`).
    Registered = 1,
    /// Data in `aufs/diff/<id>` and registered: the disk is the view.
    Done = 2,
}

pub struct Transform {
    pub plan: Plan,
    pub read_only: bool,
    progress: Vec<AtomicU8>,
    repositories_done: AtomicBool,
    items: HashMap<(ItemKind, OsString), usize>,
    diff: HashMap<OsString, Shown>,
    layers: HashMap<OsString, Shown>,
    mnt: HashMap<OsString, Shown>,
    root: Vec<(OsString, Shown)>,
    quarantined: bool,
    /// Whether `migrate` quarantines legacy data of images, of containers
    /// (it makes `quarantine/graph`, `quarantine/containers` only then).
    quarantined_kinds: [bool; 2],
    /// Blocked items' aufs entries, per aufs directory.
    registrations: HashMap<AufsDir, Vec<OsString>>,
}

const TMP_PREFIX: &[u8] = crate::sys::TEMP_PREFIX.as_bytes();

fn kind_index(kind: ItemKind) -> usize {
    match kind {
        ItemKind::Image => 0,
        ItemKind::Container => 1,
    }
}

impl Transform {
    pub fn new(scan: &Scan, plan: Plan, read_only: bool) -> Transform {
        let mut items = HashMap::new();
        let mut diff = HashMap::new();
        let mut layers = HashMap::new();
        let mut mnt = HashMap::new();
        let mut quarantined = false;
        let mut quarantined_kinds = [false; 2];
        let mut registrations: HashMap<AufsDir, Vec<OsString>> = HashMap::new();
        let n_images = scan.images.len();
        // Plan order differs from scan order for images: index the scan.
        let image_places: HashMap<&OsStr, &crate::legacy::Places> =
            scan.images.iter().map(|i| (i.name.as_os_str(), &i.places)).collect();
        for (i, it) in plan.items.iter().enumerate() {
            items.insert((it.kind, it.name.clone()), i);
            if it.removed() {
                // Removed by the daemon: the disk as it is.
                continue;
            }
            if it.blocked() {
                quarantined |= it.legacy_present;
                quarantined_kinds[kind_index(it.kind)] |= it.legacy_present;
                // Its aufs registrations (Docker 1.8 made them) go to the
                // quarantine too: out of the daemon's way.
                if let Some(id) = &it.id {
                    let mut names = vec![(id.to_os_string(), image_places.get(it.name.as_os_str()).copied())];
                    if it.kind == ItemKind::Container {
                        let c = &scan.containers[i - n_images];
                        names = vec![
                            (id.to_os_string(), Some(&c.places)),
                            (id.init_layer().to_os_string(), Some(&c.init)),
                        ];
                    }
                    for (name, p) in names {
                        let Some(p) = p else { continue };
                        for (dir, there) in [
                            (AufsDir::Diff, p.native.exists()),
                            (AufsDir::Layers, p.layers.is_some()),
                            (AufsDir::Mnt, p.mnt.exists()),
                        ] {
                            if there {
                                registrations.entry(dir).or_default().push(name.clone());
                                match dir {
                                    AufsDir::Diff => diff.insert(name.clone(), Shown::Hidden),
                                    AufsDir::Layers => layers.insert(name.clone(), Shown::Hidden),
                                    AufsDir::Mnt => mnt.insert(name.clone(), Shown::Hidden),
                                };
                            }
                        }
                    }
                }
                continue;
            }
            let (places, init_places) = match it.kind {
                ItemKind::Image => (image_places[it.name.as_os_str()], None),
                ItemKind::Container => {
                    let c = &scan.containers[i - n_images];
                    (&c.places, Some(&c.init))
                }
            };
            match it.source {
                Source::Legacy | Source::Fallback | Source::Quarantine => {
                    diff.insert(it.name.clone(), Shown::Data(i));
                }
                Source::Empty if places.native == Kind::Missing => {
                    diff.insert(it.name.clone(), Shown::Empty(i));
                }
                _ => {}
            }
            let mut register = |name: OsString, p: &crate::legacy::Places, init: bool| {
                let expected = || {
                    if init {
                        plan.init_layers_bytes(i)
                    } else {
                        plan.layers_bytes(i)
                    }
                };
                if !matches!(&p.layers, Some(Ok(b)) if *b == expected()) {
                    layers.insert(name.clone(), Shown::Layers(i, init));
                }
                // One `migrate` cannot keep in its record (unreadable, too
                // large, not a file) it sets aside in the quarantine.
                if read_only && matches!(p.layers, Some(Err(_))) {
                    registrations.entry(AufsDir::Layers).or_default().push(name.clone());
                }
                if read_only {
                    mnt.insert(name, Shown::Merged(i, init));
                } else if p.mnt != Kind::Dir {
                    mnt.insert(name, Shown::Empty(i));
                }
            };
            register(it.name.clone(), places, false);
            if let (Some(init), Some(id)) = (init_places, &it.id) {
                let name = id.init_layer().to_os_string();
                if init.native != Kind::Dir {
                    diff.insert(name.clone(), Shown::Init(i));
                }
                register(name, init, true);
            }
        }
        let mut root = Vec::new();
        if plan.repositories == Repositories::Rename {
            root.push((OsString::from("repositories"), Shown::Hidden));
            root.push((OsString::from("repositories-aufs"), Shown::Repositories));
        }
        root.push((OsString::from("aufs"), Shown::Dir(Role::Aufs)));
        let repositories_aside = matches!(plan.repositories, Repositories::SetAside(_));
        if repositories_aside {
            root.push((OsString::from("repositories"), Shown::Hidden));
        }
        quarantined |= !registrations.is_empty() || repositories_aside;
        if quarantined {
            root.push((OsString::from(OWN_DIR), Shown::Dir(Role::Own)));
        }
        Transform {
            progress: plan
                .items
                .iter()
                .map(|it| {
                    // (Nothing to do for an item the daemon removed.)
                    let p = if it.removed() {
                        Progress::Done
                    } else {
                        Progress::Pending
                    };
                    AtomicU8::new(p as u8)
                })
                .collect(),
            repositories_done: AtomicBool::new(false),
            plan,
            read_only,
            items,
            diff,
            layers,
            mnt,
            root,
            quarantined,
            quarantined_kinds,
            registrations,
        }
    }

    /// Whether `quarantine/graph` (`containers`) is shown: where `migrate`
    /// moves legacy data of that kind.
    fn quarantines(&self, kind: ItemKind) -> bool {
        self.quarantined_kinds[kind_index(kind)]
    }

    fn item(&self, kind: ItemKind, name: &OsStr) -> Option<usize> {
        self.items.get(&(kind, name.to_os_string())).copied()
    }

    pub fn progress(&self, i: usize) -> Progress {
        match self.progress[i].load(Ordering::Acquire) {
            0 => Progress::Pending,
            1 => Progress::Registered,
            _ => Progress::Done,
        }
    }

    /// Item `i` has come this far on the disk: the view stops synthesizing
    /// what the disk now has.
    pub fn set_progress(&self, i: usize, p: Progress) {
        self.progress[i].store(p as u8, Ordering::Release);
    }

    pub fn repositories_done(&self) -> bool {
        self.repositories_done.load(Ordering::Acquire)
    }

    pub fn set_repositories_done(&self) {
        self.repositories_done.store(true, Ordering::Release);
    }

    /// Whether a transformed entry still differs from the disk.
    fn live(&self, s: &Shown) -> bool {
        let at_least = |i: usize, p: Progress| self.progress(i) >= p;
        match s {
            Shown::Data(i) => !at_least(*i, Progress::Done),
            Shown::Empty(i) | Shown::Layers(i, _) | Shown::Init(i) => !at_least(*i, Progress::Registered),
            Shown::Repositories => !self.repositories_done(),
            _ => true,
        }
    }

    /// The pending work a change of `name` in a directory of role `parent`
    /// must wait for: the item (or `repositories`) whose transformed entry
    /// it touches. Reads never call this.
    pub fn touched(&self, parent: Role, name: &OsStr) -> Option<Touch> {
        let b = name.as_encoded_bytes();
        let item = match parent {
            Role::Root if (b == b"repositories" || b == b"repositories-aufs") => {
                return (self.plan.repositories == Repositories::Rename && !self.repositories_done())
                    .then_some(Touch::Repositories)
            }
            Role::Graph => self.item(ItemKind::Image, name),
            Role::Containers => self.item(ItemKind::Container, name),
            Role::Image(i) | Role::Container(i) => Some(i).filter(|_| b == self.plan.items[i].legacy_leaf().as_bytes()),
            Role::Diff | Role::Layers | Role::Mnt => {
                let base = b.strip_suffix(b"-init").unwrap_or(b);
                let base = OsStr::from_bytes(base);
                self.item(ItemKind::Image, base)
                    .or_else(|| self.item(ItemKind::Container, base))
            }
            _ => None,
        }?;
        let it = &self.plan.items[item];
        (!it.blocked() && self.progress(item) < Progress::Done).then_some(Touch::Item(item))
    }

    /// The role of a real or synthesized directory `name` inside `parent`.
    pub fn child_role(&self, parent: Role, name: &OsStr) -> Role {
        match (parent, name.as_encoded_bytes()) {
            (Role::Root, b"graph") => Role::Graph,
            (Role::Root, b"containers") => Role::Containers,
            (Role::Root, b"aufs") => Role::Aufs,
            (Role::Root, b) if b == OWN_DIR.as_bytes() => Role::Own,
            (Role::Graph, _) => self.item(ItemKind::Image, name).map_or(Role::Plain, Role::Image),
            (Role::Containers, _) => self
                .item(ItemKind::Container, name)
                .map_or(Role::Plain, Role::Container),
            (Role::Aufs, b) if AufsDir::of_name(b).is_some() => Role::of_aufs(AufsDir::of_name(b).expect("checked")),
            (Role::Own, b"quarantine") => Role::Quarantine,
            (Role::Quarantine, b"graph") => Role::QuarantineKind(ItemKind::Image),
            (Role::Quarantine, b"containers") => Role::QuarantineKind(ItemKind::Container),
            (Role::Quarantine, b"aufs") => Role::QuarantineAufs,
            (Role::QuarantineAufs, b) if AufsDir::of_name(b).is_some() => {
                Role::QuarantineAufsDir(AufsDir::of_name(b).expect("checked"))
            }
            (Role::QuarantineKind(k), _) => self.item(k, name).map_or(Role::Plain, Role::QuarantineItem),
            _ => Role::Plain,
        }
    }

    fn to_quarantine(&self, i: usize) -> bool {
        let it = &self.plan.items[i];
        it.blocked() && it.legacy_present
    }

    /// What the view shows for `name` in a directory of role `parent`
    /// (`None`: whatever the disk has).
    pub fn shown(&self, parent: Role, name: &OsStr) -> Option<Shown> {
        self.shown_now(parent, name).filter(|s| self.live(s))
    }

    fn shown_now(&self, parent: Role, name: &OsStr) -> Option<Shown> {
        let b = name.as_encoded_bytes();
        match parent {
            Role::Plain => None,
            // graph2aufs's own files while it writes them (the record, the
            // live status, the symlink to an --aufs-dir) never show.
            // (Nor a layer's source set aside after its copy switched.)
            Role::Own | Role::Root | Role::Image(_) | Role::Container(_) if b.starts_with(TMP_PREFIX) => {
                Some(Shown::Hidden)
            }
            Role::Root if self.repositories_done() && b.starts_with(b"repositories") => None,
            Role::Root => self.root.iter().find(|(n, _)| n == name).map(|(_, s)| s.clone()),
            Role::Image(i) | Role::Container(i) => {
                let leaf = self.plan.items[i].legacy_leaf();
                (b == leaf.as_bytes() && self.plan.items[i].legacy_present && self.progress(i) < Progress::Done)
                    .then_some(Shown::Hidden)
            }
            Role::Diff | Role::Layers if b.starts_with(TMP_PREFIX) => Some(Shown::Hidden),
            Role::Diff => self.diff.get(name).cloned(),
            Role::Layers => self.layers.get(name).cloned(),
            Role::Mnt => self.mnt.get(name).cloned(),
            Role::Aufs => AufsDir::of_name(b).map(|d| Shown::Dir(Role::of_aufs(d))),
            Role::Own if self.quarantined && b == b"quarantine" => Some(Shown::Dir(Role::Quarantine)),
            Role::Quarantine if self.quarantined => match b {
                b"repositories" if matches!(self.plan.repositories, Repositories::SetAside(_)) => {
                    Some(Shown::Repositories)
                }
                b"graph" if self.quarantines(ItemKind::Image) => {
                    Some(Shown::Dir(Role::QuarantineKind(ItemKind::Image)))
                }
                b"containers" if self.quarantines(ItemKind::Container) => {
                    Some(Shown::Dir(Role::QuarantineKind(ItemKind::Container)))
                }
                b"aufs" if !self.registrations.is_empty() => Some(Shown::Dir(Role::QuarantineAufs)),
                _ => None,
            },
            Role::QuarantineAufs => AufsDir::ALL
                .into_iter()
                .find(|d| d.name().as_bytes() == b && self.registrations.contains_key(d))
                .map(|d| Shown::Dir(Role::QuarantineAufsDir(d))),
            Role::QuarantineAufsDir(d) => self
                .registrations
                .get(&d)
                .is_some_and(|names| names.iter().any(|n| n == name))
                .then_some(Shown::Registration(d)),
            Role::QuarantineKind(k) => self
                .item(k, name)
                .filter(|&i| self.to_quarantine(i))
                .map(|i| Shown::Dir(Role::QuarantineItem(i))),
            Role::QuarantineItem(i) => {
                (b == self.plan.items[i].legacy_leaf().as_bytes() && self.to_quarantine(i)).then_some(Shown::Data(i))
            }
            Role::Graph | Role::Containers | Role::Own | Role::Quarantine => None,
        }
    }

    /// Names the view adds to a directory of role `parent` (besides the
    /// disk's, which `shown` may hide or replace).
    pub fn added(&self, parent: Role) -> Vec<(OsString, Shown)> {
        let mut v = self.added_now(parent);
        v.retain(|(_, s)| self.live(s));
        v
    }

    fn added_now(&self, parent: Role) -> Vec<(OsString, Shown)> {
        let from = |m: &HashMap<OsString, Shown>| {
            let mut v: Vec<(OsString, Shown)> = m
                .iter()
                .filter(|(_, s)| !matches!(s, Shown::Hidden))
                .map(|(n, s)| (n.clone(), s.clone()))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        match parent {
            Role::Root => self
                .root
                .iter()
                .filter(|(_, s)| !matches!(s, Shown::Hidden))
                .cloned()
                .collect(),
            Role::Diff => from(&self.diff),
            Role::Layers => from(&self.layers),
            Role::Mnt => from(&self.mnt),
            Role::Aufs => AufsDir::ALL
                .map(AufsDir::name)
                .iter()
                .map(|n| {
                    (
                        OsString::from(n),
                        self.shown(Role::Aufs, OsStr::new(n)).expect("aufs children"),
                    )
                })
                .collect(),
            Role::Own if self.quarantined => vec![("quarantine".into(), Shown::Dir(Role::Quarantine))],
            Role::Quarantine if self.quarantined => {
                let mut v: Vec<(OsString, Shown)> = [(ItemKind::Image, "graph"), (ItemKind::Container, "containers")]
                    .into_iter()
                    .filter(|(k, _)| self.quarantines(*k))
                    .map(|(k, name)| (name.into(), Shown::Dir(Role::QuarantineKind(k))))
                    .collect();
                if !self.registrations.is_empty() {
                    v.push(("aufs".into(), Shown::Dir(Role::QuarantineAufs)));
                }
                if matches!(self.plan.repositories, Repositories::SetAside(_)) {
                    v.push(("repositories".into(), Shown::Repositories));
                }
                v
            }
            Role::QuarantineKind(k) => self
                .plan
                .items
                .iter()
                .enumerate()
                .filter(|(i, it)| it.kind == k && self.to_quarantine(*i))
                .map(|(i, it)| (it.name.clone(), Shown::Dir(Role::QuarantineItem(i))))
                .collect(),
            Role::QuarantineItem(i) => vec![(self.plan.items[i].legacy_leaf().into(), Shown::Data(i))],
            Role::QuarantineAufs => AufsDir::ALL
                .into_iter()
                .filter(|d| self.registrations.contains_key(d))
                .map(|d| (OsString::from(d.name()), Shown::Dir(Role::QuarantineAufsDir(d))))
                .collect(),
            Role::QuarantineAufsDir(d) => self
                .registrations
                .get(&d)
                .map(|names| names.iter().map(|n| (n.clone(), Shown::Registration(d))).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}
