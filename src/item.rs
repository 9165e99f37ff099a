//! An item to migrate (an image layer or a container's rw layer) and the
//! words that describe it: its kind, its state, where its data is. Below
//! everything that uses them: the scan, the plan, the record, the engine,
//! the view and the reports.

use crate::id::LayerId;
use crate::names::escape_os;
use serde::Serialize;
use std::ffi::OsString;

/// Item states: one vocabulary everywhere (DESIGN.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Moving,
    Copying,
    Registered,
    Fallback,
    Quarantined,
    Failed,
    /// Registered by graph2aufs, then removed by the daemon (its
    /// `aufs/diff/<id>` is gone): reported, never recreated.
    Removed,
}

impl State {
    /// Every state, in the order reports list them.
    pub const ALL: [State; 8] = [
        State::Pending,
        State::Moving,
        State::Copying,
        State::Registered,
        State::Fallback,
        State::Quarantined,
        State::Failed,
        State::Removed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Moving => "moving",
            State::Copying => "copying",
            State::Registered => "registered",
            State::Fallback => "fallback",
            State::Quarantined => "quarantined",
            State::Failed => "failed",
            State::Removed => "removed",
        }
    }

    /// Nothing is left to do for an item in this state: migrated, or
    /// removed by the daemon since.
    pub fn settled(self) -> bool {
        matches!(self, State::Registered | State::Removed)
    }
}

/// What an item is: an image layer (`graph/<id>/layer`) or a container's
/// read-write layer (`containers/<id>/rw`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    Image,
    Container,
}

impl ItemKind {
    /// The word reports, logs and the record use: `image`, `container`.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Image => "image",
            ItemKind::Container => "container",
        }
    }
}

impl ItemKind {
    /// The directory under ROOT (and under the quarantine) where items of
    /// this kind live: `graph`, `containers`.
    pub fn legacy_dir(self) -> &'static str {
        match self {
            ItemKind::Image => "graph",
            ItemKind::Container => "containers",
        }
    }
}

impl std::fmt::Display for ItemKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an item's data is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `graph/<id>/layer` or `containers/<id>/rw`, to be renamed.
    Legacy,
    /// The legacy directory, with a Docker 1.8 symlink at `aufs/diff/<id>`.
    Fallback,
    /// Already at `aufs/diff/<id>`.
    Native,
    /// Under `.graph2aufs/quarantine/`.
    Quarantine,
    /// A container that never ran: it gets an empty rw layer.
    Empty,
    /// Nowhere usable (only for blocked items).
    None,
}

#[derive(Debug, Clone)]
pub struct Item {
    pub kind: ItemKind,
    /// The directory name (`graph/<name>` or `containers/<name>`).
    pub name: OsString,
    /// The validated id (the name), unless the name is not a safe id.
    pub id: Option<LayerId>,
    /// Image: index of its parent image; container: index of its image.
    pub parent: Option<usize>,
    pub state: State,
    pub reason: Option<String>,
    pub source: Source,
    /// Whether the legacy place holds something to quarantine.
    pub legacy_present: bool,
    /// True when graph2aufs's record says it migrated this item.
    pub ours: bool,
    /// A container's creation time (mtime of its config.json): the time of
    /// the entries its init layer creates.
    pub created: rustix::fs::Timespec,
    /// Its data was copied to `aufs/diff` on another file system and the
    /// copy recorded (shared by the plan's clones: a run sets it).
    pub copied: Copied,
}

/// See [`Item::copied`]. Once set, `aufs/diff/<id>` holds the data, complete
/// and checked, even while what is left of the source is removed.
#[derive(Debug, Clone, Default)]
pub struct Copied(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Copied {
    pub fn new(v: bool) -> Copied {
        Copied(std::sync::Arc::new(std::sync::atomic::AtomicBool::new(v)))
    }
    pub fn get(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
    pub fn set(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst)
    }
}

impl Item {
    pub fn blocked(&self) -> bool {
        self.state == State::Quarantined
    }
    /// Removed by the daemon after graph2aufs registered it: nothing of it
    /// is shown, moved or made again.
    pub fn removed(&self) -> bool {
        self.state == State::Removed
    }
    /// `graph/<name>/layer` or `containers/<name>/rw`, relative to ROOT.
    pub fn legacy_path(&self) -> String {
        match self.kind {
            ItemKind::Image => format!("graph/{}/layer", escape_os(&self.name)),
            ItemKind::Container => format!("containers/{}/rw", escape_os(&self.name)),
        }
    }
    pub fn legacy_leaf(&self) -> &'static str {
        match self.kind {
            ItemKind::Image => "layer",
            ItemKind::Container => "rw",
        }
    }
    pub fn legacy_parent_dir(&self) -> &'static str {
        self.kind.legacy_dir()
    }
}

/// The result of a run for one item.
#[derive(Debug, Clone)]
pub struct ItemResult {
    pub index: usize,
    pub state: State,
    pub reason: Option<String>,
}

impl ItemResult {
    /// Every item as the plan found it, before a run.
    pub fn of_items(items: &[Item]) -> Vec<ItemResult> {
        items
            .iter()
            .enumerate()
            .map(|(index, it)| ItemResult {
                index,
                state: it.state,
                reason: it.reason.clone(),
            })
            .collect()
    }
}
