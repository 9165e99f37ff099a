//! Reading a legacy Docker root (FORMATS.md 1) and whatever of the aufs
//! layout (FORMATS.md 2) is already there, into plain data. Nothing is
//! decided here: `plan` decides, from this scan alone.

pub mod json;

use crate::id::{BadId, LayerId, OWN_PREFIX};
use crate::root::Root;
use crate::sys::{self, Kind};
use json::{ContainerConfig, ImageJson, JSON_CAP};
use rustix::fs::{FileType, Timespec};
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
    fn missing() -> Places {
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
    pub fn open(root: &Root) -> io::Result<Dirs> {
        let d = |rel: &str| sys::open_dir(root.fd(), rel).map_err(|e| annotate(root, rel, e));
        Ok(Dirs {
            graph: d("graph")?,
            containers: d("containers")?,
            diff: d("aufs/diff")?,
            layers: d("aufs/layers")?,
            mnt: d("aufs/mnt")?,
            quarantine_graph: d(".graph2aufs/quarantine/graph")?,
            quarantine_containers: d(".graph2aufs/quarantine/containers")?,
        })
    }
}

fn annotate(root: &Root, rel: &str, e: io::Error) -> io::Error {
    let why = match e.raw_os_error() {
        Some(libc::ELOOP) => "a symlink on the way (refused: nothing is followed out of ROOT)".to_string(),
        Some(libc::ENOTDIR) => "not a directory".to_string(),
        _ => e.to_string(),
    };
    io::Error::new(e.kind(), format!("{}/{rel}: {why}", root.path().display()))
}

fn kind_in(dir: &Option<OwnedFd>, name: &OsStr) -> io::Result<Kind> {
    match dir {
        Some(d) => sys::kind(d, name),
        None => Ok(Kind::Missing),
    }
}

/// `<dir>/<name>/<leaf>` where `<name>` must itself be a real directory.
fn kind_below(dir: &Option<OwnedFd>, name: &OsStr, leaf: &str) -> io::Result<Kind> {
    let Some(d) = dir else { return Ok(Kind::Missing) };
    if sys::kind(d, name)? != Kind::Dir {
        return Ok(Kind::Missing);
    }
    match sys::open_dir(d, name)? {
        Some(sub) => sys::kind(&sub, leaf),
        None => Ok(Kind::Missing),
    }
}

fn layers_file(dirs: &Dirs, name: &OsStr) -> Option<Result<Vec<u8>, String>> {
    let layers = dirs.layers.as_ref()?;
    match sys::lstat(layers, name) {
        Ok(None) => None,
        Ok(Some(_)) => Some(sys::read_file(layers, name, LAYERS_CAP).map_err(|e| e.to_string())),
        Err(e) => Some(Err(e.to_string())),
    }
}

fn places(dirs: &Dirs, name: &OsStr, legacy: Kind, quarantine: Kind) -> io::Result<Places> {
    let native = kind_in(&dirs.diff, name)?;
    let native_empty = match (&legacy, &native, &dirs.diff) {
        (Kind::Dir, Kind::Dir, Some(diff)) => match sys::open_dir(diff, name)? {
            Some(d) => Some(sys::dir_is_empty(&d)?),
            None => None,
        },
        _ => None,
    };
    Ok(Places {
        legacy,
        native,
        native_empty,
        quarantine,
        layers: layers_file(dirs, name),
        mnt: kind_in(&dirs.mnt, name)?,
    })
}

fn entry_kind(dir: impl AsFd, name: &OsStr, ft: FileType) -> io::Result<Kind> {
    match ft {
        FileType::Directory => Ok(Kind::Dir),
        FileType::Unknown | FileType::Symlink => sys::kind(dir, name),
        other => Ok(Kind::Other(sys::type_name(other))),
    }
}

fn read_json<T>(
    dir: &Kind,
    parent: &Option<OwnedFd>,
    name: &OsStr,
    file: &str,
    parse: fn(&[u8]) -> Result<T, String>,
) -> Result<T, String> {
    if *dir != Kind::Dir {
        return Err(format!("the item's directory is {}", dir.describe()));
    }
    let parent = parent.as_ref().ok_or("its parent directory vanished")?;
    let d = sys::open_dir(parent, name)
        .map_err(|e| e.to_string())?
        .ok_or("its directory vanished")?;
    let bytes = sys::read_file(&d, file, JSON_CAP).map_err(|e| format!("{file} cannot be read: {e}"))?;
    parse(&bytes).map_err(|e| format!("{file} {e}"))
}

fn created_time(dir: &Kind, parent: &Option<OwnedFd>, name: &OsStr) -> Timespec {
    let zero = Timespec { tv_sec: 0, tv_nsec: 0 };
    if *dir != Kind::Dir {
        return zero;
    }
    let Some(parent) = parent else { return zero };
    match sys::open_dir(parent, name) {
        Ok(Some(d)) => match sys::lstat(&d, "config.json") {
            Ok(Some(st)) => sys::mtime(&st),
            _ => zero,
        },
        _ => zero,
    }
}

/// Reads ROOT. Fails only when ROOT itself cannot be read; problems with
/// single items are carried in the scan for `plan` to judge.
pub fn scan(root: &Root) -> io::Result<Scan> {
    let dirs = Dirs::open(root)?;
    let mut ignored = Vec::new();
    let mut images = Vec::new();
    if let Some(graph) = &dirs.graph {
        let mut entries = sys::list_dir(graph)?;
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, ft) in entries {
            if name == "_tmp" {
                continue;
            }
            if name.as_bytes().starts_with(OWN_PREFIX.as_bytes()) {
                ignored.push((
                    format!("graph/{}", crate::names::escape_os(&name)),
                    "a name reserved for graph2aufs".into(),
                ));
                continue;
            }
            let dir = entry_kind(graph, &name, ft)?;
            if let Kind::Other(what) = dir {
                ignored.push((
                    format!("graph/{}", crate::names::escape_os(&name)),
                    format!("a {what}, not an image directory"),
                ));
                continue;
            }
            let legacy = kind_below(&dirs.graph, &name, "layer")?;
            let quarantine = kind_below(&dirs.quarantine_graph, &name, "layer")?;
            images.push(ImageScan {
                id: LayerId::from_os(&name),
                json: read_json(&dir, &dirs.graph, &name, "json", json::parse_image),
                places: places(&dirs, &name, legacy, quarantine)?,
                dir,
                name,
            });
        }
    }
    let mut containers = Vec::new();
    if let Some(cdir) = &dirs.containers {
        let mut entries = sys::list_dir(cdir)?;
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, ft) in entries {
            let dir = entry_kind(cdir, &name, ft)?;
            if let Kind::Other(what) = dir {
                ignored.push((
                    format!("containers/{}", crate::names::escape_os(&name)),
                    format!("a {what}, not a container directory"),
                ));
                continue;
            }
            let legacy = kind_below(&dirs.containers, &name, "rw")?;
            let quarantine = kind_below(&dirs.quarantine_containers, &name, "rw")?;
            let id = LayerId::from_os(&name);
            let init = match &id {
                Ok(id) => {
                    let init = id.init_layer();
                    places(&dirs, init.as_os_str(), Kind::Missing, Kind::Missing)?
                }
                Err(_) => Places::missing(),
            };
            containers.push(ContainerScan {
                config: read_json(&dir, &dirs.containers, &name, "config.json", json::parse_container),
                created: created_time(&dir, &dirs.containers, &name),
                places: places(&dirs, &name, legacy, quarantine)?,
                init,
                id,
                dir,
                name,
            });
        }
    }
    let legacy = sys::kind(root.fd(), "repositories")?;
    let aufs = sys::kind(root.fd(), "repositories-aufs")?;
    let tags = if legacy == Kind::Dir || !legacy.exists() {
        Ok(Vec::new())
    } else {
        sys::read_file(root.fd(), "repositories", JSON_CAP)
            .map_err(|e| format!("repositories cannot be read: {e}"))
            .and_then(|b| json::parse_repositories(&b).map_err(|e| format!("repositories {e}")))
    };
    let aufs_dirs = [
        sys::kind(root.fd(), "aufs")?,
        kind_in(&sys::open_dir(root.fd(), "aufs").ok().flatten(), OsStr::new("diff"))?,
        kind_in(&sys::open_dir(root.fd(), "aufs").ok().flatten(), OsStr::new("layers"))?,
        kind_in(&sys::open_dir(root.fd(), "aufs").ok().flatten(), OsStr::new("mnt"))?,
    ];
    Ok(Scan {
        images,
        containers,
        repositories: RepositoriesScan { legacy, aufs, tags },
        aufs_dirs,
        ignored,
    })
}
