//! The plan: a pure function from a scan of ROOT to the items to migrate,
//! in order (parents before children), each with its state and, where it
//! cannot be migrated, the reason. `migrate`, `status`, `verify` and the
//! view all derive what they do from this one function.

use crate::id::LayerId;
use crate::item::{Copied, Item, ItemKind, Source, State};
use crate::layout;
use crate::legacy::{ContainerScan, ImageScan, Places, Scan};
use crate::names::escape_os;
use crate::record::Record;
use crate::sys::Kind;
use serde::Serialize;
use std::collections::HashMap;
use std::ffi::OsString;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase", tag = "action", content = "reason")]
pub enum Repositories {
    /// Neither file exists.
    Absent,
    /// `repositories` is to become `repositories-aufs`.
    Rename,
    /// Only `repositories-aufs` exists.
    Done,
    /// Both exist: `repositories` is set aside in the quarantine, where
    /// Docker's own Migrate cannot rename it over `repositories-aufs` at
    /// its next start; reported.
    #[serde(rename = "set-aside")]
    SetAside(String),
    /// `repositories` is unreadable or not a file: left alone, reported.
    Conflict(String),
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Note {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Plan {
    /// Images first, parents before children; then containers.
    pub items: Vec<Item>,
    pub repositories: Repositories,
    /// Anomalies that block nothing (ignored entries, dangling tags).
    pub notes: Vec<Note>,
    /// Findings that are no problem at all (severity `info`): files of
    /// migrated layers hard-linked outside their layer too, whose copy
    /// keeps the links inside.
    pub info: Vec<Note>,
    index: HashMap<LayerId, usize>,
}

impl Plan {
    /// The item with this image or container id.
    pub fn find(&self, id: &LayerId) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// The ancestors of an image, nearest first (its `layers/` lines); for a
    /// container, its image followed by the image's ancestors (the lines of
    /// `layers/<id>-init`). Empty for a blocked item.
    pub fn chain(&self, item: usize) -> Vec<LayerId> {
        let mut out = Vec::new();
        let mut cur = self.items[item].parent;
        while let Some(p) = cur {
            if let Some(id) = &self.items[p].id {
                out.push(id.clone());
            }
            cur = self.items[p].parent;
            if out.len() > self.items.len() {
                break; // cannot happen: cycles are blocked, and blocked items have no chain
            }
        }
        out
    }

    /// The exact bytes of `aufs/layers/<id>` for an item (for a container:
    /// its own file, whose first line is its init layer).
    pub fn layers_bytes(&self, item: usize) -> Vec<u8> {
        let chain = self.chain(item);
        match self.items[item].kind {
            ItemKind::Image => layout::layers_bytes(&chain),
            ItemKind::Container => {
                let id = self.items[item].id.as_ref().map(LayerId::init_layer);
                layout::layers_bytes(id.iter().chain(chain.iter()))
            }
        }
    }

    pub fn init_layers_bytes(&self, item: usize) -> Vec<u8> {
        layout::layers_bytes(&self.chain(item))
    }

    pub fn counts(&self) -> HashMap<State, usize> {
        let mut m = HashMap::new();
        for it in &self.items {
            *m.entry(it.state).or_default() += 1;
        }
        m
    }
}

/// True for the symlink a Docker 1.8 migration left at `aufs/diff/<id>`,
/// once `migrate` has swapped it with the data (`RENAME_EXCHANGE`) and was
/// interrupted before removing it: it now stands at the legacy place and
/// points at that same legacy place (by an absolute path, maybe of ROOT's
/// former location). It holds no data.
fn swapped_docker18_symlink(target: &[u8], legacy_parent: &str, name: &OsString, leaf: &str) -> bool {
    let mut own = format!("/{legacy_parent}/").into_bytes();
    own.extend_from_slice(name.as_encoded_bytes());
    own.extend_from_slice(format!("/{leaf}").as_bytes());
    target.starts_with(b"/") && target.ends_with(&own)
}

/// Why a layer's data cannot be placed, or where it is.
fn placement(p: &Places, legacy_rel: &str, native_rel: &str, swapped: bool, copied: bool) -> Result<Source, String> {
    match (&p.legacy, &p.native) {
        // Copied across file systems, stopped before the source was removed.
        (Kind::Dir, Kind::Dir) if copied => Ok(Source::Legacy),
        // Interrupted between the swap and the removal of the symlink.
        (Kind::Symlink(_), Kind::Dir) if swapped => Ok(Source::Native),
        (Kind::Symlink(t), _) => Err(format!(
            "{legacy_rel} is {} (not a directory; never followed)",
            Kind::Symlink(t.clone()).describe()
        )),
        (Kind::Other(w), _) => Err(format!("{legacy_rel} is a {w}, not a directory")),
        (Kind::Dir, _) if p.quarantine.exists() => Err(format!(
            "both {legacy_rel} and .graph2aufs/quarantine/{legacy_rel} exist"
        )),
        (Kind::Dir, Kind::Missing) => Ok(Source::Legacy),
        (Kind::Dir, Kind::Symlink(_)) => Ok(Source::Fallback),
        (Kind::Dir, Kind::Dir) if p.native_empty == Some(true) => Ok(Source::Legacy),
        (Kind::Dir, Kind::Dir) => Err(format!("both {legacy_rel} and {native_rel} hold data")),
        (_, Kind::Other(w)) => Err(format!("{native_rel} is a {w}, not a directory")),
        (Kind::Missing, Kind::Dir) => Ok(Source::Native),
        (Kind::Missing, Kind::Symlink(t)) => Err(format!(
            "{native_rel} is {} and {legacy_rel} does not exist",
            Kind::Symlink(t.clone()).describe()
        )),
        (Kind::Missing, Kind::Missing) if p.quarantine == Kind::Dir => Ok(Source::Quarantine),
        (Kind::Missing, Kind::Missing) if p.quarantine.exists() => Err(format!(
            "{}/{legacy_rel} is {}",
            crate::root::QUARANTINE,
            p.quarantine.describe()
        )),
        (Kind::Missing, Kind::Missing) => Ok(Source::None),
    }
}

/// The reason of a [`State::Removed`] item: one graph2aufs's record says it
/// registered (or moved there), whose data is nowhere now. graph2aufs never
/// deletes data that is not also somewhere else: the daemon removed it
/// (Docker's Remove renames `aufs/diff/<id>` away and deletes it, and
/// `aufs/layers/<id>`; an interrupted `docker rm` or `docker rmi` leaves
/// `containers/<id>` or `graph/<id>`).
fn removed(record: &Record, kind: ItemKind, name: &OsString, p: &Places) -> Option<String> {
    let e = record.items.get(&crate::record::key(kind, name))?;
    let ours = !e.quarantined && (e.registered || e.moved_legacy || e.copied);
    let gone = p.legacy == Kind::Missing && p.native == Kind::Missing && !p.quarantine.exists();
    (ours && gone).then(|| {
        format!(
            "registered by graph2aufs, then removed by the daemon (aufs/diff/{} is gone)",
            escape_os(name)
        )
    })
}

/// Where a blocked item's data is, as far as it can be told.
fn blocked_source(p: &Places) -> Source {
    if p.legacy.exists() {
        Source::Legacy
    } else if p.quarantine.exists() {
        Source::Quarantine
    } else if p.native.exists() {
        Source::Native
    } else {
        Source::None
    }
}

/// Whether a layer is fully registered; `expected` (its `layers/` bytes) is
/// computed only when there is a file to compare with.
fn registered(p: &Places, expected: impl FnOnce() -> Vec<u8>) -> bool {
    p.native == Kind::Dir && p.mnt == Kind::Dir && matches!(&p.layers, Some(Ok(b)) if *b == expected())
}

/// An image's own problems, before looking at its ancestors.
fn image_own(img: &ImageScan, copied: bool) -> Result<(Option<LayerId>, Source), String> {
    let name = escape_os(&img.name);
    let id = img
        .id
        .as_ref()
        .map_err(|e| format!("the directory name is not a safe id: {e}"))?;
    if let Kind::Symlink(t) = &img.dir {
        return Err(format!(
            "graph/{name} is {} (never followed)",
            Kind::Symlink(t.clone()).describe()
        ));
    }
    let json = img.json.as_ref().map_err(|e| e.clone())?;
    match &json.id {
        None => return Err("json has no id".into()),
        Some(j) if j.as_bytes() != id.as_bytes() => {
            return Err(format!("json id {j:?} does not match the directory name"))
        }
        Some(_) => {}
    }
    let parent = match &json.parent {
        None => None,
        Some(p) => Some(LayerId::parse(p.as_bytes()).map_err(|e| format!("parent {:?} is not a safe id: {e}", p))?),
    };
    let swapped =
        matches!(&img.places.legacy, Kind::Symlink(t) if swapped_docker18_symlink(t, "graph", &img.name, "layer"));
    let source = placement(
        &img.places,
        &format!("graph/{name}/layer"),
        &format!("aufs/diff/{name}"),
        swapped,
        copied,
    )?;
    if source == Source::None {
        return Err(format!(
            "no layer data: graph/{name}/layer and aufs/diff/{name} are both missing"
        ));
    }
    Ok((parent, source))
}

fn container_own(
    c: &ContainerScan,
    index: &HashMap<LayerId, usize>,
    copied: bool,
) -> Result<(LayerId, Source), String> {
    let name = escape_os(&c.name);
    let id =
        c.id.as_ref()
            .map_err(|e| format!("the directory name is not a safe id: {e}"))?;
    if let Kind::Symlink(t) = &c.dir {
        return Err(format!(
            "containers/{name} is {} (never followed)",
            Kind::Symlink(t.clone()).describe()
        ));
    }
    let config = c.config.as_ref().map_err(|e| e.clone())?;
    match &config.id {
        None => return Err("config.json has no ID".into()),
        Some(j) if j.as_bytes() != id.as_bytes() => {
            return Err(format!("config.json ID {j:?} does not match the directory name"))
        }
        Some(_) => {}
    }
    if index.contains_key(id) {
        return Err("the container id is also an image id".into());
    }
    let image = config.image.as_ref().ok_or("config.json has no Image")?;
    let image = LayerId::parse(image.as_bytes()).map_err(|e| format!("Image {image:?} is not a safe id: {e}"))?;
    let swapped =
        matches!(&c.places.legacy, Kind::Symlink(t) if swapped_docker18_symlink(t, "containers", &c.name, "rw"));
    let source = placement(
        &c.places,
        &format!("containers/{name}/rw"),
        &format!("aufs/diff/{name}"),
        swapped,
        copied,
    )?;
    let source = if source == Source::None { Source::Empty } else { source };
    match &c.init.native {
        Kind::Missing | Kind::Dir => {}
        other => return Err(format!("aufs/diff/{name}-init is {}", other.describe())),
    }
    Ok((image, source))
}

enum Res {
    Unknown,
    Ok,
    Blocked(String),
    /// See [`removed`].
    Removed(String),
}

/// The files of migrated layers that were hard-linked outside their layer
/// too and whose copy to another file system kept only the links inside.
pub fn outside_link_notes(record: &Record) -> Vec<Note> {
    record
        .items
        .iter()
        .flat_map(|(key, e)| item_outside_link_notes(key, e))
        .collect()
}

/// [`outside_link_notes`] of the item recorded under `key`.
pub fn item_outside_link_notes(key: &str, e: &crate::record::RecordItem) -> Vec<Note> {
    // (Keys are `<kind>/<escaped name>`.)
    let name = key.split_once('/').map_or(key, |(_, n)| n);
    e.outside_links
        .iter()
        .map(|o| Note {
            path: format!("aufs/diff/{name}/{}", o.path),
            reason: format!(
                "hard-linked outside its layer too ({} links, {} of them in the layer): its copy to aufs/diff's file \
                 system keeps the {} inside; the names outside keep the original file, no longer linked to the \
                 layer's",
                o.links, o.inside, o.inside
            ),
        })
        .collect()
}

/// Decides everything about ROOT from its scan and graph2aufs's record.
pub fn plan(scan: &Scan, record: &Record) -> Plan {
    let mut notes: Vec<Note> = scan
        .ignored
        .iter()
        .map(|(p, r)| Note {
            path: p.clone(),
            reason: r.clone(),
        })
        .collect();
    let images = resolve_images(scan, record);
    let order = parents_first(&images);
    let mut plan = items(scan, record, &images, &order);
    derive_states(&mut plan, scan, record, &order);
    notes.extend(tag_notes(scan, &plan));
    plan.repositories = repositories(scan);
    if let Repositories::Conflict(why) | Repositories::SetAside(why) = &plan.repositories {
        notes.push(Note {
            path: "repositories".into(),
            reason: why.clone(),
        });
    }
    plan.notes = notes;
    plan
}

/// Whether the record says the item's data was copied to another file
/// system.
fn copied(record: &Record, kind: ItemKind, name: &OsString) -> bool {
    record
        .items
        .get(&crate::record::key(kind, name))
        .is_some_and(|e| e.copied)
}

/// The scanned images, each resolved: its own checks, then its ancestors.
struct Images {
    /// By scanned image: its id index.
    index: HashMap<LayerId, usize>,
    /// Its own checks: its parent's id (if any) and where its data is.
    own: Vec<Result<(Option<LayerId>, Source), String>>,
    /// Whether it and every ancestor can be migrated.
    res: Vec<Res>,
    /// Its parent (by scanned image).
    parent_of: Vec<Option<usize>>,
}

/// Checks each image, then its ancestors, iteratively (chains may be
/// deep): a missing parent, a parent cycle, a blocked or removed ancestor
/// blocks it.
fn resolve_images(scan: &Scan, record: &Record) -> Images {
    let mut index: HashMap<LayerId, usize> = HashMap::new();
    for (i, img) in scan.images.iter().enumerate() {
        if let Ok(id) = &img.id {
            index.insert(id.clone(), i);
        }
    }
    let own: Vec<Result<(Option<LayerId>, Source), String>> = scan
        .images
        .iter()
        .map(|img| image_own(img, copied(record, ItemKind::Image, &img.name)))
        .collect();
    let n = scan.images.len();
    let mut res: Vec<Res> = scan
        .images
        .iter()
        .map(|img| match removed(record, ItemKind::Image, &img.name, &img.places) {
            Some(why) => Res::Removed(why),
            None => Res::Unknown,
        })
        .collect();
    let mut parent_of: Vec<Option<usize>> = vec![None; n];
    let mut on_path = vec![false; n];
    for start in 0..n {
        let mut stack: Vec<usize> = Vec::new();
        let mut cur = start;
        loop {
            if !matches!(res[cur], Res::Unknown) {
                break;
            }
            if on_path[cur] {
                let pos = stack.iter().position(|&x| x == cur).unwrap_or(0);
                let cycle: Vec<String> = stack[pos..]
                    .iter()
                    .chain(std::iter::once(&cur))
                    .map(|&i| escape_os(&scan.images[i].name))
                    .collect();
                let why = if cycle.len() == 2 {
                    "the image is its own parent".to_string()
                } else {
                    format!("parent cycle: {}", cycle.join(" -> "))
                };
                for &i in &stack[pos..] {
                    res[i] = Res::Blocked(why.clone());
                    on_path[i] = false;
                }
                stack.truncate(pos);
                break;
            }
            match &own[cur] {
                Err(e) => {
                    res[cur] = Res::Blocked(e.clone());
                    break;
                }
                Ok((None, _)) => {
                    res[cur] = Res::Ok;
                    break;
                }
                Ok((Some(p), _)) => match index.get(p) {
                    None => {
                        res[cur] = Res::Blocked(format!("its parent {p} does not exist"));
                        break;
                    }
                    Some(&pi) => {
                        parent_of[cur] = Some(pi);
                        on_path[cur] = true;
                        stack.push(cur);
                        cur = pi;
                    }
                },
            }
        }
        while let Some(node) = stack.pop() {
            on_path[node] = false;
            let p = parent_of[node].expect("nodes on the stack have a parent");
            res[node] = match &res[p] {
                Res::Ok => Res::Ok,
                Res::Blocked(_) => Res::Blocked(format!("its parent {} is blocked", escape_os(&scan.images[p].name))),
                Res::Removed(_) => Res::Blocked(format!(
                    "its parent {} was removed by the daemon",
                    escape_os(&scan.images[p].name)
                )),
                Res::Unknown => unreachable!("parents are resolved before their children"),
            };
        }
    }
    Images {
        index,
        own,
        res,
        parent_of,
    }
}

/// The order of the images in the plan (by scanned image): parents before
/// children, by depth through parent pointers (memoized; a blocked image
/// counts as a base layer), then in scan order.
fn parents_first(images: &Images) -> Vec<usize> {
    let Images { res, parent_of, .. } = images;
    let n = res.len();
    let mut depth = vec![usize::MAX; n];
    for i in 0..n {
        let mut path = Vec::new();
        let mut cur = Some(i);
        while let Some(c) = cur {
            if depth[c] != usize::MAX || !matches!(res[c], Res::Ok) {
                break;
            }
            path.push(c);
            cur = parent_of[c];
        }
        let base = match cur {
            Some(c) if depth[c] != usize::MAX => depth[c] + 1,
            _ => 0,
        };
        for (k, &c) in path.iter().rev().enumerate() {
            depth[c] = base + k;
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (if depth[i] == usize::MAX { 0 } else { depth[i] }, i));
    order
}

/// The plan's items: images in `order`, then containers, each with its
/// state as its checks and its parents' decide.
fn items(scan: &Scan, record: &Record, images: &Images, order: &[usize]) -> Plan {
    let Images {
        index,
        own,
        res,
        parent_of,
    } = images;
    let n = scan.images.len();
    let ours = |k: ItemKind, n: &OsString| record.has(k, n);
    let mut new_pos = vec![0; n];
    for (pos, &i) in order.iter().enumerate() {
        new_pos[i] = pos;
    }
    let mut items: Vec<Item> = Vec::with_capacity(n + scan.containers.len());
    let mut plan_index: HashMap<LayerId, usize> = HashMap::new();
    for &i in order {
        let img = &scan.images[i];
        let (state, reason, source, parent) = match (&res[i], &own[i]) {
            (Res::Ok, Ok((_, source))) => (State::Pending, None, *source, parent_of[i].map(|p| new_pos[p])),
            (Res::Removed(why), _) => (State::Removed, Some(why.clone()), Source::None, None),
            (Res::Blocked(r), own) => (
                State::Quarantined,
                Some(r.clone()),
                own.as_ref()
                    .map(|o| o.1)
                    .unwrap_or_else(|_| blocked_source(&img.places)),
                None,
            ),
            _ => unreachable!("every image is resolved"),
        };
        let id = img.id.clone().ok();
        if let Some(id) = &id {
            plan_index.insert(id.clone(), items.len());
        }
        items.push(Item {
            kind: ItemKind::Image,
            name: img.name.clone(),
            id,
            parent,
            state,
            reason,
            source,
            legacy_present: img.places.legacy.exists(),
            ours: ours(ItemKind::Image, &img.name),
            copied: Copied::new(copied(record, ItemKind::Image, &img.name)),
            created: rustix::fs::Timespec { tv_sec: 0, tv_nsec: 0 },
        });
    }
    for c in &scan.containers {
        let own = match removed(record, ItemKind::Container, &c.name, &c.places) {
            Some(why) => Err(Res::Removed(why)),
            None => container_own(c, index, copied(record, ItemKind::Container, &c.name)).map_err(Res::Blocked),
        };
        let (state, reason, source, parent) = match own {
            Err(Res::Removed(why)) => (State::Removed, Some(why), Source::None, None),
            Err(Res::Blocked(r)) => (State::Quarantined, Some(r), blocked_source(&c.places), None),
            Err(_) => unreachable!("made above"),
            Ok((image, source)) => match plan_index.get(&image).filter(|&&pi| items[pi].kind == ItemKind::Image) {
                None => (
                    State::Quarantined,
                    Some(format!("its image {image} does not exist")),
                    source,
                    None,
                ),
                Some(&pi) if items[pi].blocked() => (
                    State::Quarantined,
                    Some(format!("its image {image} is blocked")),
                    source,
                    None,
                ),
                Some(&pi) if items[pi].removed() => (
                    State::Quarantined,
                    Some(format!("its image {image} was removed by the daemon")),
                    source,
                    None,
                ),
                Some(&pi) => (State::Pending, None, source, Some(pi)),
            },
        };
        let id = c.id.clone().ok();
        if let (Some(id), false) = (&id, matches!(state, State::Quarantined | State::Removed)) {
            plan_index.insert(id.clone(), items.len());
        }
        items.push(Item {
            kind: ItemKind::Container,
            name: c.name.clone(),
            id,
            parent,
            state,
            reason,
            source,
            legacy_present: c.places.legacy.exists(),
            ours: ours(ItemKind::Container, &c.name),
            copied: Copied::new(copied(record, ItemKind::Container, &c.name)),
            created: c.created,
        });
    }
    Plan {
        items,
        repositories: Repositories::Absent,
        notes: Vec::new(),
        info: outside_link_notes(record),
        index: plan_index,
    }
}

/// The states of unblocked items, derived from the disk (registered,
/// fallback) and from the record (failed in the last run).
fn derive_states(plan: &mut Plan, scan: &Scan, record: &Record, order: &[usize]) {
    let n_images = scan.images.len();
    for pos in 0..plan.items.len() {
        if plan.items[pos].blocked() || plan.items[pos].removed() {
            continue;
        }
        // Images come first in the plan, in `order`; containers after them.
        let done = if let Some(&scanned) = order.get(pos) {
            let img = &scan.images[scanned];
            registered(&img.places, || plan.layers_bytes(pos))
        } else {
            let c = &scan.containers[pos - n_images];
            registered(&c.places, || plan.layers_bytes(pos)) && registered(&c.init, || plan.init_layers_bytes(pos))
        };
        let item = &mut plan.items[pos];
        if item.source == Source::Fallback {
            item.state = State::Fallback;
            item.reason = Some(format!(
                "aufs/diff/{} is a symlink (as Docker 1.8's migration left them; never followed) \
                 while the legacy directory holds the data: migrate replaces it with the data",
                escape_os(&item.name)
            ));
        } else if done && item.source == Source::Native && !item.legacy_present {
            // (A swapped Docker 1.8 symlink left at the legacy place is
            // still to be removed: the item stays pending.)
            item.state = State::Registered;
        }
        // An item the last run could not migrate, still not done.
        if item.state != State::Registered {
            let key = crate::record::key(item.kind, &item.name);
            if let Some(why) = record.items.get(&key).and_then(|e| e.failed.clone()) {
                item.state = State::Failed;
                item.reason = Some(why);
            }
        }
    }
}

/// Notes on the tags that name no usable image.
fn tag_notes(scan: &Scan, plan: &Plan) -> Vec<Note> {
    let mut notes = Vec::new();
    if let Ok(tags) = &scan.repositories.tags {
        for (tag, id) in tags {
            let usable = LayerId::parse(id.as_bytes())
                .ok()
                .and_then(|id| plan.find(&id))
                .is_some_and(|i| plan.items[i].kind == ItemKind::Image && !plan.items[i].blocked());
            if !usable {
                notes.push(Note {
                    path: "repositories".into(),
                    reason: format!("tag {tag} names {id:?}, which is not a usable image"),
                });
            }
        }
    }
    notes
}

/// What becomes of `repositories` (and `repositories-aufs`).
fn repositories(scan: &Scan) -> Repositories {
    let r = &scan.repositories;
    match (&r.legacy, &r.aufs) {
        (Kind::Missing, Kind::Missing) => Repositories::Absent,
        (Kind::Missing, _) => Repositories::Done,
        (Kind::Other("regular file"), Kind::Missing) => match &r.tags {
            Ok(_) => Repositories::Rename,
            Err(e) => Repositories::Conflict(e.clone()),
        },
        (Kind::Other("regular file"), _) => Repositories::SetAside(
            "both repositories and repositories-aufs exist: repositories-aufs is kept, repositories is set aside \
             in .graph2aufs/quarantine/ (its tags are not merged)"
                .into(),
        ),
        (other, _) => Repositories::Conflict(format!("repositories is {}, not a file", other.describe())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::legacy::json::ImageJson;
    use crate::legacy::{ImageScan, RepositoriesScan};

    fn image(id: &str, parent: Option<&str>) -> ImageScan {
        let mut places = Places::missing();
        places.legacy = Kind::Dir;
        ImageScan {
            name: id.into(),
            id: LayerId::parse(id.as_bytes()),
            dir: Kind::Dir,
            json: Ok(ImageJson {
                id: Some(id.into()),
                parent: parent.map(Into::into),
            }),
            places,
        }
    }

    fn scan(images: Vec<ImageScan>) -> Scan {
        Scan {
            images,
            containers: Vec::new(),
            repositories: RepositoriesScan {
                legacy: Kind::Missing,
                aufs: Kind::Missing,
                tags: Ok(Vec::new()),
            },
            aufs_dirs: [Kind::Missing, Kind::Missing, Kind::Missing, Kind::Missing],
            ignored: Vec::new(),
        }
    }

    fn by_name<'a>(p: &'a Plan, name: &str) -> (usize, &'a Item) {
        p.items
            .iter()
            .enumerate()
            .find(|(_, i)| i.name == name)
            .expect("the item is planned")
    }

    #[test]
    fn parents_come_before_children_whatever_the_scan_order() {
        let p = plan(
            &scan(vec![image("c", Some("b")), image("b", Some("a")), image("a", None)]),
            &Record::default(),
        );
        let pos = |n| by_name(&p, n).0;
        assert!(pos("a") < pos("b") && pos("b") < pos("c"));
        assert_eq!(p.layers_bytes(pos("c")), b"b\na\n");
        assert!(p.items.iter().all(|i| i.state == State::Pending));
    }

    #[test]
    fn a_cycle_blocks_its_members_and_their_descendants_only() {
        let p = plan(
            &scan(vec![
                image("x", Some("y")),
                image("y", Some("x")),
                image("kid", Some("x")),
                image("ok", None),
            ]),
            &Record::default(),
        );
        for n in ["x", "y"] {
            assert!(by_name(&p, n).1.reason.as_deref().unwrap().contains("cycle"), "{n}");
        }
        assert!(by_name(&p, "kid").1.reason.as_deref().unwrap().contains("is blocked"));
        assert_eq!(by_name(&p, "ok").1.state, State::Pending);
    }

    #[test]
    fn a_missing_parent_blocks_the_child_and_names_the_parent() {
        let p = plan(&scan(vec![image("kid", Some("gone"))]), &Record::default());
        let it = by_name(&p, "kid").1;
        assert_eq!(it.state, State::Quarantined);
        assert_eq!(it.reason.as_deref(), Some("its parent gone does not exist"));
        assert_eq!(it.source, Source::Legacy, "its data is still where it was");
    }
}
