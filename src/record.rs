//! graph2aufs's record of what it changed, kept under `.graph2aufs/` so
//! that `status` and `rollback` can tell items it migrated from ones a newer
//! daemon created, and put everything back. The record is written before
//! each batch of changes (an intent), atomically and durably; where data
//! actually is, is always read from the disk.

use crate::error::{Result, Step};
use crate::item::ItemKind;
use crate::root::{Root, OWN_DIR, RECORD, RECORD_FILE};
use crate::sys;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::OsStr;

const VERSION: u32 = 1;

/// An entry graph2aufs replaced: its content (escaped) and mtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub text: String,
    pub mtime: (i64, i64),
}

/// A directory graph2aufs replaced: its mode, owner and mtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedDir {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, i64),
}

/// What was at an item's aufs places before graph2aufs touched them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prior {
    /// A Docker 1.8 symlink at `aufs/diff/<id>` (its target).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub symlink: Option<Saved>,
    /// An existing `aufs/layers/<id>` (its bytes).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub layers: Option<Saved>,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub mnt: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub init_layers: Option<Saved>,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub init_mnt: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordItem {
    /// Its legacy data was moved to `.graph2aufs/quarantine/`.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub quarantined: bool,
    /// A container that never ran: graph2aufs created its empty rw layer.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub empty_rw: bool,
    #[serde(default)]
    pub prior: Prior,
    /// Its legacy data existed when claimed (and is moved by graph2aufs).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub moved_legacy: bool,
    /// Why the last run could not migrate it (cleared when a run does).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub failed: Option<String>,
    /// The empty directory `aufs/diff/<id>` was before graph2aufs put the
    /// data there (Docker's Create makes them).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub empty_native: Option<SavedDir>,
    /// Its data was copied to another file system and the copy checked and
    /// renamed into place; the source goes next (a run that finds both
    /// checks the copy again and then removes the source).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub copied: bool,
    /// graph2aufs registered it (`aufs/layers/<id>` written): should its
    /// data be gone later, the daemon removed it (see `plan`).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub registered: bool,
    /// mtime of `graph/<id>` or `containers/<id>` before the move, which
    /// changes it (seconds, nanoseconds).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dir_mtime: Option<(i64, i64)>,
    /// mtime of its data directory (`graph/<id>/layer`) before it was
    /// exchanged with a Docker 1.8 symlink: XFS stamps a directory an
    /// exchange moves to another parent with the time of the exchange; it
    /// is put back after it (also by a run that finds the exchange done).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub data_mtime: Option<(i64, i64)>,
    /// Files of its layer hard-linked outside the layer too: its copy to
    /// another file system has only the links inside (reported as info).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub outside_links: Vec<OutsideLink>,
}

/// A file of a layer hard-linked outside it (see
/// [`crate::copy::OutsideLink`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutsideLink {
    /// Below the top of the layer, escaped.
    pub path: String,
    pub links: u64,
    pub inside: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub version: u32,
    /// Keys: `image/<escaped name>` or `container/<escaped name>`.
    pub items: BTreeMap<String, RecordItem>,
    /// `aufs` directories graph2aufs created (relative paths).
    #[serde(default)]
    pub created_dirs: Vec<String>,
    #[serde(default)]
    pub repositories_renamed: bool,
    /// `repositories` was set aside in the quarantine (both files existed).
    #[serde(default)]
    pub repositories_set_aside: bool,
    /// mtimes of directories graph2aufs changes (ROOT as "", `graph`, ...)
    /// before it first changed them.
    #[serde(default)]
    pub mtimes: BTreeMap<String, (i64, i64)>,
}

pub fn key(kind: ItemKind, name: &OsStr) -> String {
    format!("{kind}/{}", crate::names::escape_os(name))
}

impl Record {
    /// Reads the record; an absent one is empty. Reading never writes.
    pub fn load(root: &Root) -> Result<Record> {
        let bytes = match sys::read_file(root.fd(), RECORD, 256 << 20) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Record {
                    version: VERSION,
                    ..Default::default()
                })
            }
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) || e.raw_os_error() == Some(libc::ENOTDIR) => {
                return Err(crate::error::Error::Env(format!(
                    "{}/{RECORD}: .graph2aufs or its record is a symlink (refused: nothing is followed out of ROOT)",
                    root.path().display()
                )))
            }
            Err(e) => return Err(e).step(|| format!("reading {}/{RECORD}", root.path().display())),
        };
        serde_json::from_slice(&bytes).map_err(|e| {
            crate::error::Error::Env(format!(
                "{}/{RECORD} is damaged ({e}); move it aside to start a new record",
                root.path().display()
            ))
        })
    }

    /// Writes the record atomically and durably.
    pub fn save(&self, root: &Root) -> Result<()> {
        let dir = sys::open_dir_required(root.fd(), OWN_DIR).step(|| format!("opening {OWN_DIR}"))?;
        let bytes = serde_json::to_vec(self).expect("a record always serializes");
        sys::write_atomic(&dir, RECORD_FILE, &bytes, 0o600, true)
            .step(|| format!("writing {}/{RECORD}", root.path().display()))
    }

    pub fn has(&self, kind: ItemKind, name: &OsStr) -> bool {
        self.items.contains_key(&key(kind, name))
    }

    pub fn exists(root: &Root) -> bool {
        matches!(sys::lstat(root.fd(), RECORD), Ok(Some(_)))
    }
}
