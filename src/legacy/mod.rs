//! Reading a legacy Docker root (FORMATS.md 1) and whatever of the aufs
//! layout (FORMATS.md 2) is already there, into plain data. Nothing is
//! decided here: `plan` decides, from this scan alone.

pub mod json;

use crate::id::{BadId, LayerId, OWN_PREFIX};
use crate::item::ItemKind;
use crate::layout::AufsDir;
use crate::root::Root;
use crate::root::QUARANTINE;
use crate::sys::{self, Kind};
use json::{ContainerConfig, ImageJson, JSON_CAP};
use rustix::fs::{FileType, Timespec};
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

/// Largest `aufs/layers/<id>` file read (a chain of 1,000 hex ids is 65 KB).
pub const LAYERS_CAP: u64 = 4 << 20;

/// Where one layer's data may be, each place seen without following links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Places {
    /// `graph/<id>/layer` or `containers/<id>/rw`.
    pub legacy: Kind,
    /// `aufs/diff/<id>`.
    pub native: Kind,
    /// Whether `aufs/diff/<id>` is an empty directory (checked only when
    /// both `legacy` and `native` are directories).
    pub native_empty: Option<bool>,
    /// `.graph2aufs/quarantine/<legacy path>`.
    pub quarantine: Kind,
    /// `aufs/layers/<id>`: its bytes, or why they could not be read.
    pub layers: Option<Result<Vec<u8>, String>>,
    /// `aufs/mnt/<id>`.
    pub mnt: Kind,
}

impl Places {
    pub fn missing() -> Places {
        Places {
            legacy: Kind::Missing,
            native: Kind::Missing,
            native_empty: None,
            quarantine: Kind::Missing,
            layers: None,
            mnt: Kind::Missing,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ImageScan {
    pub name: OsString,
    pub id: Result<LayerId, BadId>,
    /// `graph/<name>` itself.
    pub dir: Kind,
    pub json: Result<ImageJson, String>,
    pub places: Places,
}

#[derive(Debug, Clone)]
pub struct ContainerScan {
    pub name: OsString,
    pub id: Result<LayerId, BadId>,
    pub dir: Kind,
    pub config: Result<ContainerConfig, String>,
    /// mtime of `config.json`: the time given to entries the init layer creates.
    pub created: Timespec,
    pub places: Places,
    /// The init layer's places (`legacy` and `quarantine` unused).
    pub init: Places,
}

#[derive(Debug, Clone)]
pub struct RepositoriesScan {
    /// `repositories`.
    pub legacy: Kind,
    /// `repositories-aufs`.
    pub aufs: Kind,
    pub tags: Result<Vec<(String, String)>, String>,
}

/// Everything `plan` needs to know about ROOT.
#[derive(Debug, Clone)]
pub struct Scan {
    pub images: Vec<ImageScan>,
    pub containers: Vec<ContainerScan>,
    pub repositories: RepositoriesScan,
    /// `aufs`, `aufs/diff`, `aufs/layers`, `aufs/mnt`.
    pub aufs_dirs: [Kind; 4],
    /// Entries that are not items, each with why it is ignored.
    pub ignored: Vec<(String, String)>,
}

/// Descriptors of the directories a scan and a migration work in; absent
/// ones are `None`.
pub struct Dirs {
    pub graph: Option<OwnedFd>,
    pub containers: Option<OwnedFd>,
    pub diff: Option<OwnedFd>,
    pub layers: Option<OwnedFd>,
    pub mnt: Option<OwnedFd>,
    pub quarantine_graph: Option<OwnedFd>,
    pub quarantine_containers: Option<OwnedFd>,
}

impl Dirs {
    /// `graph` or `containers`: where items of this kind live.
    pub fn legacy(&self, kind: ItemKind) -> Option<&OwnedFd> {
        match kind {
            ItemKind::Image => self.graph.as_ref(),
            ItemKind::Container => self.containers.as_ref(),
        }
    }

    /// `aufs/diff`, `aufs/layers` or `aufs/mnt`, if it is there.
    pub fn aufs(&self, d: AufsDir) -> Option<&OwnedFd> {
        match d {
            AufsDir::Diff => self.diff.as_ref(),
            AufsDir::Layers => self.layers.as_ref(),
            AufsDir::Mnt => self.mnt.as_ref(),
        }
    }

    /// Their quarantine: `.graph2aufs/quarantine/graph` or `.../containers`.
    pub fn quarantine(&self, kind: ItemKind) -> Option<&OwnedFd> {
        match kind {
            ItemKind::Image => self.quarantine_graph.as_ref(),
            ItemKind::Container => self.quarantine_containers.as_ref(),
        }
    }

    pub fn open(root: &Root) -> io::Result<Dirs> {
        let d = |rel: &str| {
            let (dir, name) = root.resolve(rel);
            sys::open_dir(dir, name).map_err(|e| annotate(root, rel, e))
        };
        Ok(Dirs {
            graph: d("graph")?,
            containers: d("containers")?,
            diff: d("aufs/diff")?,
            layers: d("aufs/layers")?,
            mnt: d("aufs/mnt")?,
            quarantine_graph: d(&format!("{QUARANTINE}/graph"))?,
            quarantine_containers: d(&format!("{QUARANTINE}/containers"))?,
        })
    }
}

fn annotate(root: &Root, rel: &str, e: io::Error) -> io::Error {
    // Which component is a symlink, if one is: say so, not "not a directory".
    let mut at = String::new();
    for c in rel.split('/') {
        if !at.is_empty() {
            at.push('/');
        }
        at.push_str(c);
        if let Ok(Some(st)) = sys::lstat(root.fd(), &at) {
            if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Symlink {
                let hint = if at == "aufs" {
                    "; if it links to the aufs directory you named with --aufs-dir, name it again"
                } else {
                    ""
                };
                return io::Error::new(
                    e.kind(),
                    format!(
                        "{}/{at} is a symlink (refused: nothing is followed out of ROOT{hint})",
                        root.path().display()
                    ),
                );
            }
        }
    }
    let why = match e.raw_os_error() {
        Some(libc::ELOOP) => "a symlink on the way (refused: nothing is followed out of ROOT)".to_string(),
        Some(libc::ENOTDIR) => "not a directory".to_string(),
        _ => e.to_string(),
    };
    io::Error::new(e.kind(), format!("{}/{rel}: {why}", root.path().display()))
}

/// The aufs directories' entries, listed once per scan rather than looked
/// up once per item (a root holds thousands of items).
struct Aufs {
    diff: HashMap<OsString, FileType>,
    layers: HashSet<OsString>,
    mnt: HashMap<OsString, FileType>,
}

impl Aufs {
    fn list(dirs: &Dirs) -> io::Result<Aufs> {
        let map = |d: &Option<OwnedFd>| -> io::Result<HashMap<OsString, FileType>> {
            let Some(d) = d else { return Ok(HashMap::new()) };
            let mut m = HashMap::new();
            for (name, ft) in sys::list_dir(d)? {
                let ft = match ft {
                    FileType::Unknown => match sys::lstat(d, &name)? {
                        Some(st) => FileType::from_raw_mode(st.st_mode),
                        None => continue,
                    },
                    ft => ft,
                };
                m.insert(name, ft);
            }
            Ok(m)
        };
        Ok(Aufs {
            diff: map(&dirs.diff)?,
            layers: map(&dirs.layers)?.into_keys().collect(),
            mnt: map(&dirs.mnt)?,
        })
    }
}

fn kind_listed(listing: &HashMap<OsString, FileType>, dir: &Option<OwnedFd>, name: &OsStr) -> io::Result<Kind> {
    Ok(match (listing.get(name), dir) {
        (None, _) | (_, None) => Kind::Missing,
        (Some(FileType::Directory), _) => Kind::Dir,
        (Some(FileType::Symlink), Some(d)) => sys::kind_unread(d, name)?,
        (Some(ft), _) => Kind::Other(sys::type_name(*ft)),
    })
}

fn places(
    dirs: &Dirs,
    aufs: &Aufs,
    name: &OsStr,
    legacy: Kind,
    quarantine: Kind,
    legacy_dir: Option<&OwnedFd>,
    leaf: &str,
) -> io::Result<Places> {
    let native = kind_listed(&aufs.diff, &dirs.diff, name)?;
    // A symlink at the legacy place with the data in aufs/diff may be the
    // Docker 1.8 symlink an interrupted migrate swapped there: its target
    // tells (the only symlink a scan reads).
    let legacy = match (&legacy, &native, legacy_dir) {
        (Kind::Symlink(_), Kind::Dir, Some(parent)) => match sys::open_dir(parent, name)? {
            Some(d) => Kind::Symlink(sys::readlink(&d, leaf)?),
            None => legacy,
        },
        _ => legacy,
    };
    let native_empty = match (&legacy, &native, &dirs.diff) {
        (Kind::Dir, Kind::Dir, Some(diff)) => match sys::open_dir(diff, name)? {
            Some(d) => Some(sys::dir_is_empty(&d)?),
            None => None,
        },
        _ => None,
    };
    let layers = match (&dirs.layers, aufs.layers.contains(name)) {
        (Some(l), true) => Some(sys::read_file(l, name, LAYERS_CAP).map_err(|e| e.to_string())),
        _ => None,
    };
    Ok(Places {
        legacy,
        native,
        native_empty,
        quarantine,
        layers,
        mnt: kind_listed(&aufs.mnt, &dirs.mnt, name)?,
    })
}

fn entry_kind(dir: impl AsFd, name: &OsStr, ft: FileType) -> io::Result<Kind> {
    match ft {
        FileType::Directory => Ok(Kind::Dir),
        FileType::Unknown | FileType::Symlink => sys::kind_unread(dir, name),
        other => Ok(Kind::Other(sys::type_name(other))),
    }
}

/// What an item's own directory holds: its data entry (`layer` or `rw`),
/// its JSON, and the JSON's mtime. The directory is opened once.
fn item_dir<T>(
    parent: &OwnedFd,
    name: &OsStr,
    dir: &Kind,
    leaf: &str,
    file: &str,
    parse: fn(&[u8]) -> Result<T, String>,
) -> io::Result<(Kind, Result<T, String>, Timespec)> {
    let zero = Timespec { tv_sec: 0, tv_nsec: 0 };
    if *dir != Kind::Dir {
        return Ok((
            Kind::Missing,
            Err(format!("the item's directory is {}", dir.describe())),
            zero,
        ));
    }
    let Some(d) = sys::open_dir(parent, name)? else {
        return Ok((Kind::Missing, Err("its directory vanished".into()), zero));
    };
    let legacy = sys::kind_unread(&d, leaf)?;
    let mut mtime = zero;
    let json = match sys::read_file_stat(&d, file, JSON_CAP) {
        Ok((bytes, st)) => {
            mtime = sys::mtime(&st);
            parse(&bytes).map_err(|e| format!("{file} {e}"))
        }
        Err(e) => Err(format!("{file} cannot be read: {e}")),
    };
    Ok((legacy, json, mtime))
}

/// `<dir>/<name>/<leaf>` where `<name>` must itself be a real directory.
fn kind_below(dir: &Option<OwnedFd>, name: &OsStr, leaf: &str) -> io::Result<Kind> {
    let Some(d) = dir else { return Ok(Kind::Missing) };
    match sys::open_dir(d, name) {
        Ok(Some(sub)) => sys::kind_unread(&sub, leaf),
        Ok(None) => Ok(Kind::Missing),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => Ok(Kind::Missing),
        Err(e) => Err(e),
    }
}

/// Runs `f` over `entries` on a few threads, keeping their order.
fn parallel<T: Send>(
    entries: &[(OsString, FileType)],
    f: impl Fn(&OsString, FileType) -> io::Result<Option<T>> + Sync,
) -> io::Result<Vec<T>> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8);
    let chunk = entries.len().div_ceil(threads).max(256);
    let results: Vec<io::Result<Vec<T>>> = std::thread::scope(|s| {
        let handles: Vec<_> = entries
            .chunks(chunk)
            .map(|part| {
                let f = &f;
                s.spawn(move || {
                    let mut out = Vec::with_capacity(part.len());
                    for (name, ft) in part {
                        if let Some(t) = f(name, *ft)? {
                            out.push(t);
                        }
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("scan threads do not panic"))
            .collect()
    });
    let mut out = Vec::with_capacity(entries.len());
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

/// Reads ROOT. Fails only when ROOT itself cannot be read; problems with
/// single items are carried in the scan for `plan` to judge.
pub fn scan(root: &Root) -> io::Result<Scan> {
    let dirs = Dirs::open(root)?;
    let aufs = Aufs::list(&dirs)?;
    let mut ignored = Vec::new();
    let mut not_items = |parent: &str, entries: &mut Vec<(OsString, FileType)>| {
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.retain(|(name, ft)| {
            let path = format!("{parent}/{}", crate::names::escape_os(name));
            if parent == "graph" && name == "_tmp" {
                false
            } else if parent == "graph" && name.as_bytes().starts_with(OWN_PREFIX.as_bytes()) {
                ignored.push((path, "a name reserved for graph2aufs".into()));
                false
            } else if !matches!(ft, FileType::Directory | FileType::Symlink | FileType::Unknown) {
                ignored.push((path, format!("a {}, not an item directory", sys::type_name(*ft))));
                false
            } else {
                true
            }
        });
    };
    let mut images = Vec::new();
    if let Some(graph) = &dirs.graph {
        let mut entries = sys::list_dir(graph)?;
        not_items("graph", &mut entries);
        images = parallel(&entries, |name, ft| {
            let dir = entry_kind(graph, name, ft)?;
            if let Kind::Other(_) = dir {
                return Ok(None);
            }
            let (legacy, json, _) = item_dir(graph, name, &dir, "layer", "json", json::parse_image)?;
            let quarantine = kind_below(&dirs.quarantine_graph, name, "layer")?;
            Ok(Some(ImageScan {
                id: LayerId::from_os(name),
                json,
                places: places(&dirs, &aufs, name, legacy, quarantine, Some(graph), "layer")?,
                dir,
                name: name.clone(),
            }))
        })?;
    }
    let mut containers = Vec::new();
    if let Some(cdir) = &dirs.containers {
        let mut entries = sys::list_dir(cdir)?;
        not_items("containers", &mut entries);
        containers = parallel(&entries, |name, ft| {
            let dir = entry_kind(cdir, name, ft)?;
            if let Kind::Other(_) = dir {
                return Ok(None);
            }
            let (legacy, config, created) = item_dir(cdir, name, &dir, "rw", "config.json", json::parse_container)?;
            let quarantine = kind_below(&dirs.quarantine_containers, name, "rw")?;
            let id = LayerId::from_os(name);
            let init = match &id {
                Ok(id) => places(
                    &dirs,
                    &aufs,
                    id.init_layer().as_os_str(),
                    Kind::Missing,
                    Kind::Missing,
                    None,
                    "",
                )?,
                Err(_) => Places::missing(),
            };
            Ok(Some(ContainerScan {
                config,
                created,
                places: places(&dirs, &aufs, name, legacy, quarantine, Some(cdir), "rw")?,
                init,
                id,
                dir,
                name: name.clone(),
            }))
        })?;
    }
    let legacy = sys::kind_unread(root.fd(), "repositories")?;
    let aufs = sys::kind_unread(root.fd(), "repositories-aufs")?;
    let tags = if legacy == Kind::Dir || !legacy.exists() {
        Ok(Vec::new())
    } else {
        sys::read_file(root.fd(), "repositories", JSON_CAP)
            .map_err(|e| format!("repositories cannot be read: {e}"))
            .and_then(|b| json::parse_repositories(&b).map_err(|e| format!("repositories {e}")))
    };
    let (at, name) = root.resolve("aufs");
    let aufs_dir = sys::open_dir(at, name).ok().flatten();
    let below = |name: &str| match &aufs_dir {
        Some(d) => sys::kind_unread(d, name),
        None => Ok(Kind::Missing),
    };
    let aufs_dirs = [
        match sys::kind_unread(root.fd(), "aufs")? {
            // The symlink to the --aufs-dir (checked when ROOT was opened).
            k if k.exists() && root.aufs_dir().is_some() => Kind::Dir,
            k => k,
        },
        below(AufsDir::Diff.name())?,
        below(AufsDir::Layers.name())?,
        below(AufsDir::Mnt.name())?,
    ];
    Ok(Scan {
        images,
        containers,
        repositories: RepositoriesScan { legacy, aufs, tags },
        aufs_dirs,
        ignored,
    })
}
