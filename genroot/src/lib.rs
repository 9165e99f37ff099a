//! g2a-genroot: a deterministic generator of realistic legacy (pre-0.7) Docker
//! roots, for graph2aufs's tests and benchmarks (FORMATS.md 1 describes the
//! layout). A crate of its own: graph2aufs never depends on it (its tests do),
//! and the `g2a-genroot` program (`main.rs`, `cli.rs`) is its command line.
//!
//! The same [`Options`] give the same root, byte for byte, mode for mode and time
//! for time (all but ctimes and inode numbers, and the absolute paths of the
//! symlinks that point out of the root or, with `docker18`, back into it).
//!
//! What a root holds, beyond FORMATS.md's keys and files:
//! - good images in chains; the first chain is a straight line of `max_chain`
//!   images whose layers hold every kind of entry and change ([`Landmarks`] says
//!   which image has what);
//! - image `json` variations: `"ID"` instead of `"id"`, `comment`, `author`, the
//!   unknown key `checksum`, zones other than UTC; some images have no
//!   `layersize` (it is optional);
//! - `graph/_tmp/` with `_dockerinit` and a stale temporary of a pull;
//! - `volumes/<id>/{json,layer/}` (Docker 0.6 kept volumes as a graph), mounted by
//!   the first container;
//! - containers: never-started ones (every third, from the second on) have the
//!   configuration files, an empty log and `rootfs/`, but no `rw/` nor `config.lxc`.
//!
//! A run that fails (a full disk, say) leaves nothing behind: ROOT is missing
//! or empty again, as before the run (see target.rs).
//!
//! [`snapshot`] records a tree without changing it (not even access times), for
//! tests that compare trees or check that one was left alone.

mod broken;
mod clock;
mod container;
mod copy;
mod debian;
mod image;
mod json;
mod layer;
mod merged;
mod names;
mod snapshot;
mod target;
#[cfg(test)]
mod tests;
mod tree;

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rand::Rng;
use serde::Serialize;

use clock::{Stamp, DAY, EPOCH};
use container::{container_dir, ContainerSpec, Rw};
use image::{image_dir, volume_dir, ImageJson, LayerData};
use layer::{Role, Spec};
use merged::Merged;
use names::{container_name, hex_id, seed_for, stream, Stream};
use target::Targets;
use tree::{tree_size, Clock, Content, Tree};

pub use layer::{DEV_MODE, DEV_MTIME, TEST_XATTR};
pub use snapshot::{snapshot, Node, Snapshot};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Options {
    pub seed: u64,
    /// Good images, arranged in several chains (parents before children).
    pub images: usize,
    /// The deepest chain of good images (at least 1).
    pub max_chain: usize,
    /// Good containers; about a third never started (no `rw/`). None without images.
    pub containers: usize,
    /// About how many entries each layer gets; 0 for tiny layers (a few files).
    pub entries_per_layer: usize,
    /// Adds one item of each [`BrokenKind`].
    pub broken: bool,
    /// Leaves the first third of the good images (a set closed under parents)
    /// half-migrated by Docker 1.8: `aufs/diff/<id>` a symlink to the absolute
    /// path of `graph/<id>/layer`, and `aufs/layers/<id>`, `aufs/mnt/<id>`.
    pub docker18: bool,
    /// A prepared Debian tree (scripts/debian-base) copied, `cp -a`, as the layer
    /// of the first image.
    pub debian_base: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            seed: 1,
            images: 12,
            max_chain: 4,
            containers: 5,
            entries_per_layer: 40,
            broken: false,
            docker18: false,
            debian_base: None,
        }
    }
}

/// A broken item: what blocks it (and only it, and what depends on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BrokenKind {
    /// `graph/<id>/json` is not JSON (cut short).
    InvalidJson,
    /// The json's id is not the directory name.
    IdMismatch,
    /// The image is its own parent.
    OwnParent,
    /// Two images, each the parent of the other.
    Cycle,
    /// The parent does not exist.
    MissingParent,
    /// `layer` is a regular file.
    LayerNotDir,
    /// `layer` is a symlink to an absolute path outside ROOT.
    LayerSymlinkOutside,
    /// A good-looking image whose parent is the InvalidJson one; a container
    /// runs it (`Summary::blocked_containers`).
    ChildOfBroken,
    /// `Image` names an image that does not exist.
    ContainerUnknownImage,
    /// `config.json` is cut short.
    ContainerBadConfig,
    /// `rw` is a symlink to an absolute path outside ROOT.
    ContainerRwSymlinkOutside,
    /// `config.json`'s `ID` is not the directory name.
    ContainerIdMismatch,
    /// An image directory named `<hex>-init` (it would collide with a container's
    /// init layer), with a valid json whose id matches.
    UnsafeId,
}

/// Which good image holds what: the first image in the root with it (each `None`
/// when the root is too small for it). Images outside the first chain may also
/// have their own `etc/hosts` or `etc/resolv.conf`, now and then.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Landmarks {
    /// The Debian base image (with `debian_base`).
    pub debian: Option<String>,
    /// Its layer has every kind of entry: devices, fifos, hard links, symlinks
    /// (relative, absolute, dangling, looping, escaping), setuid/setgid files,
    /// unusual modes and owners, xattrs (TEST_XATTR), odd names, a big and a
    /// sparse file.
    pub showcase: Option<String>,
    /// Its layer makes every kind of change to its parent chain (replace, add,
    /// whiteout of a file and of a directory, opaque directory, file over a
    /// directory, directory over a file) and has aufs metadata, a pseudo-link
    /// in `.wh..wh.plnk/` and an aufs temporary `.wh..wh.*` name.
    pub all_changes: Option<String>,
    pub etc_hosts: Option<String>,
    pub etc_resolv: Option<String>,
    /// `etc/mtab` is a symlink to `/proc/mounts`.
    pub mtab_symlink: Option<String>,
    /// Has `dev/` with mode DEV_MODE and mtime DEV_MTIME.
    pub dev_dir: Option<String>,
    /// Good images whose ids are pre-0.7 style: safe, but not 64 hex.
    pub non_hex_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Good images, parents before children.
    pub images: Vec<String>,
    /// Good image -> its parent.
    pub parents: BTreeMap<String, Option<String>>,
    /// Good containers: (id, image id, started = has `rw/`).
    pub containers: Vec<(String, String, bool)>,
    /// Directory names of broken items (under `graph/` or `containers/`, as the
    /// kind says), in kind order; a Cycle gives two entries.
    pub broken: Vec<(String, BrokenKind)>,
    /// The directory next to ROOT (`root.with_extension("outside")`, absolute)
    /// that escaping symlinks point into; with `broken` only.
    pub outside: Option<PathBuf>,
    /// Containers that are fine but run a broken image: (id, image id).
    pub blocked_containers: Vec<(String, String)>,
    /// Good images left half-migrated by Docker 1.8 (with `docker18`).
    pub docker18: Vec<String>,
    /// Ids under `volumes/`.
    pub volumes: Vec<String>,
    pub landmarks: Landmarks,
}

/// Creates a legacy Docker root at `root` (created if missing; refused unless
/// empty). A run that fails leaves nothing behind: `root` (and `ROOT.outside`)
/// are as they were before it.
pub fn generate(root: &Path, opts: &Options) -> io::Result<Summary> {
    generate_until(root, opts, &AtomicBool::new(false))
}

/// [`generate`], stopping with an `Interrupted` error (and nothing left
/// behind) once `stop` is set, e.g. by a signal handler.
pub fn generate_until(root: &Path, opts: &Options, stop: &AtomicBool) -> io::Result<Summary> {
    let mut targets = Targets::default();
    match write_root(root, opts, stop, &mut targets) {
        Ok(summary) => {
            targets.keep();
            Ok(summary)
        }
        Err(e) => Err(targets.abandon(e)),
    }
}

fn write_root(root: &Path, opts: &Options, stop: &AtomicBool, targets: &mut Targets) -> io::Result<Summary> {
    targets.prepare(root)?;
    let root = root.canonicalize().map_err(|e| tree::with_path(e, root))?;
    let outside = opts.broken.then(|| root.with_extension("outside"));
    if let Some(o) = &outside {
        targets.prepare(o)?;
    }
    let plan = plan_images(opts);
    let seed = opts.seed;

    let mut rng = stream(seed, Stream::Root, 0);
    let volume = hex_id(&mut rng);
    let top = top_tree(&mut rng, &volume);
    top.create(&root)?;

    let models = write_images(&root, opts, &plan, stop)?;
    let last_created = plan.last().map_or(Stamp::new(EPOCH, 0), |p| p.created);
    let tags = tags(&plan, seed);
    let containers = write_containers(&root, opts, &plan, &models, &tags, &volume, stop)?;

    let (broken, blocked_containers) = match &outside {
        Some(o) => {
            let good = plan.first().map(|p| p.id.as_str());
            let b = broken::write(&root, o, seed, good, last_created.after_secs(DAY))?;
            (b.items, b.blocked_containers)
        }
        None => (Vec::new(), Vec::new()),
    };

    let mut late = Tree::new(Clock::new(
        seed_for(seed, Stream::Root, 1),
        last_created.after_secs(30 * DAY),
        DAY,
    ));
    late.text("repositories", 0o600, repositories_json(&tags, &plan));
    late.write(&root)?;
    let docker18 = if opts.docker18 { docker18_prefix(&plan) } else { 0 };
    if docker18 > 0 {
        half_migrated(seed, &root, &plan, docker18).write(&root)?;
    }
    top.set_times(&root)?;

    Ok(Summary {
        images: plan.iter().map(|p| p.id.clone()).collect(),
        parents: plan
            .iter()
            .map(|p| (p.id.clone(), p.parent.map(|q| plan[q].id.clone())))
            .collect(),
        containers,
        broken,
        outside,
        blocked_containers,
        docker18: plan[..docker18].iter().map(|p| p.id.clone()).collect(),
        volumes: vec![volume],
        landmarks: landmarks(&plan),
    })
}

/// Writes `graph/<id>/` for every planned image; returns what each image shows.
fn write_images(root: &Path, opts: &Options, plan: &[PlannedImage], stop: &AtomicBool) -> io::Result<Vec<Merged>> {
    let mut models: Vec<Merged> = Vec::with_capacity(plan.len());
    for i in 0..plan.len() {
        go_on(stop)?;
        let lower = plan[i].parent.map(|p| &models[p]);
        let (data, model, size) = image_layer(opts, plan, i, lower)?;
        models.push(model);
        image_tree(opts.seed, plan, i, data, size).write(&root.join("graph").join(&plan[i].id))?;
    }
    Ok(models)
}

/// Image `i`'s layer on top of `lower` (what its parent shows): the layer,
/// what the image shows, and the layer's size.
fn image_layer(
    opts: &Options,
    plan: &[PlannedImage],
    i: usize,
    lower: Option<&Merged>,
) -> io::Result<(LayerData, Merged, u64)> {
    let img = &plan[i];
    if let Some(src) = &img.debian {
        return Ok((LayerData::CopyOf(src.clone()), debian::scan(src)?, tree_size(src)?));
    }
    let tag = format!("i{i}");
    let spec = Spec {
        seed: seed_for(opts.seed, Stream::Layer, i as u64),
        tag: &tag,
        entries: opts.entries_per_layer,
        newest: img.created,
        role: img.role.clone(),
    };
    let tree = match lower {
        None => layer::base(&spec),
        Some(l) => layer::child(&spec, l),
    };
    let model = lower.cloned().unwrap_or_default().with_layer(&tree);
    let size = tree.size()?;
    Ok((LayerData::Tree(Box::new(tree)), model, size))
}

/// `graph/<id>/` of image `i`, holding `data` of `size` bytes.
fn image_tree(seed: u64, plan: &[PlannedImage], i: usize, data: LayerData, size: u64) -> Tree {
    let img = &plan[i];
    let mut rng = stream(seed, Stream::Image, i as u64);
    let json = ImageJson {
        id: &img.id,
        parent: img.parent.map(|p| plan[p].id.as_str()),
        created: img.created,
        size,
        variant: i,
    }
    .render(&mut rng);
    // Some images have no layersize: it is optional.
    let layersize = (i % 11 != 7).then_some(size);
    image_dir(rng.random(), img.created, json.into_bytes(), layersize, data)
}

/// Writes `containers/<id>/` for the good containers: (id, image id, started).
fn write_containers(
    root: &Path,
    opts: &Options,
    plan: &[PlannedImage],
    models: &[Merged],
    tags: &Tags,
    volume: &str,
    stop: &AtomicBool,
) -> io::Result<Vec<(String, String, bool)>> {
    let mut containers = Vec::new();
    if plan.is_empty() {
        return Ok(containers);
    }
    let mut names = HashSet::new();
    for c in 0..opts.containers {
        go_on(stop)?;
        let planned = PlannedContainer::new(opts.seed, c, plan.len());
        let (id, img, started) = (planned.id.clone(), planned.image, planned.started());
        let tree = planned.tree(plan, &models[img], tags, volume, &mut names);
        tree.write(&root.join("containers").join(&id))?;
        containers.push((id, plan[img].id.clone(), started));
    }
    Ok(containers)
}

/// An error once `stop` is set: checked before each image and container.
fn go_on(stop: &AtomicBool) -> io::Result<()> {
    if stop.load(Ordering::Relaxed) {
        return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
    }
    Ok(())
}

/// A good container, as far as its stream has drawn it: its id and image.
struct PlannedContainer {
    index: usize,
    id: String,
    /// Index into the planned images.
    image: usize,
    /// The rest of its stream.
    rng: rand_chacha::ChaCha8Rng,
}

impl PlannedContainer {
    fn new(seed: u64, index: usize, images: usize) -> PlannedContainer {
        let mut rng = stream(seed, Stream::Container, index as u64);
        let id = hex_id(&mut rng);
        let image = rng.random_range(0..images as u64) as usize;
        PlannedContainer { index, id, image, rng }
    }

    /// Every third, from the second on, never started.
    fn started(&self) -> bool {
        self.index % 3 != 1
    }

    /// `containers/<id>/`, run from an image that shows `model`; `names`
    /// holds the container names taken so far.
    fn tree(
        mut self,
        plan: &[PlannedImage],
        model: &Merged,
        tags: &Tags,
        volume: &str,
        names: &mut HashSet<String>,
    ) -> Tree {
        let (c, img, started) = (self.index, self.image, self.started());
        let rng = &mut self.rng;
        let mut name = container_name(rng);
        if !names.insert(name.clone()) {
            name = format!("{name}{c}");
            names.insert(name.clone());
        }
        let created = plan[img].created.after_secs(3600).after(rng, 10 * DAY);
        let rw = if started {
            let tag = format!("c{c}");
            let newest = created.after_secs(20 * DAY);
            let spec = Spec {
                seed: rng.random(),
                tag: &tag,
                entries: 0,
                newest,
                role: Role::default(),
            };
            Rw::Tree(Box::new(layer::container_rw(&spec, model)))
        } else {
            Rw::Absent
        };
        let image_name = image_name(tags, img, &plan[img].id);
        let spec = ContainerSpec {
            dir: &self.id,
            id: &self.id,
            image: &plan[img].id,
            image_name: &image_name,
            name: &name,
            created,
            rw,
            truncated_config: false,
            volume: (c == 0).then_some(volume),
        };
        container_dir(rng, spec)
    }
}

/// ROOT itself and what is not images, containers or tags.
fn top_tree(rng: &mut rand_chacha::ChaCha8Rng, volume: &str) -> Tree {
    let newest = Stamp::new(EPOCH + 240 * DAY, 0);
    let mut t = Tree::new(Clock::new(rng.random(), newest, 7 * DAY));
    t.dir("", 0o700);
    t.dir("graph", 0o700);
    t.dir("graph/_tmp", 0o700);
    t.file(
        "graph/_tmp/_dockerinit",
        0o755,
        Content::Random {
            seed: rng.random(),
            len: 8192,
        },
    );
    // What an interrupted pull leaves: a temporary that looks like an image.
    let stale = format!("graph/_tmp/{}", hex_id(rng));
    t.dir(&stale, 0o700);
    t.text(&format!("{stale}/layer/usr/partial"), 0o644, "half a layer\n");
    t.dir("containers", 0o700);
    t.dir("volumes", 0o700);
    let created = Stamp::new(EPOCH + 100 * DAY, 0);
    t.graft(&format!("volumes/{volume}"), volume_dir(rng, volume, created));
    t
}

struct PlannedImage {
    id: String,
    parent: Option<usize>,
    depth: usize,
    created: Stamp,
    role: Role,
    debian: Option<PathBuf>,
}

/// The good images, parents before children: first a straight chain of
/// `max_chain` images that carries the landmarks, then a random forest.
fn plan_images(opts: &Options) -> Vec<PlannedImage> {
    let max_chain = opts.max_chain.max(1);
    let n = opts.images;
    let chain0 = max_chain.min(n);
    let mut rng = stream(opts.seed, Stream::Forest, 0);
    let step = (200 * DAY / n.max(1) as i64).max(2);
    let mut plan: Vec<PlannedImage> = Vec::with_capacity(n);
    let mut ids = HashSet::new();
    let mut eligible: Vec<usize> = Vec::new();
    for i in 0..n {
        let parent = if i == 0 {
            None
        } else if i < chain0 {
            Some(i - 1)
        } else if eligible.is_empty() || rng.random_ratio(1, max_chain as u32) {
            None
        } else {
            Some(eligible[rng.random_range(0..eligible.len() as u64) as usize])
        };
        let depth = parent.map_or(1, |p| plan[p].depth + 1);
        let debian = if i == 0 { opts.debian_base.clone() } else { None };
        let id = match i {
            0 if debian.is_some() => "base-debian".to_string(),
            0 => "base-ubuntu".to_string(),
            _ if i + 1 == chain0 && chain0 >= 2 => "ümage".to_string(),
            _ => loop {
                let id = hex_id(&mut names::stream(
                    opts.seed,
                    Stream::ImageIds,
                    (i + ids.len() * n) as u64,
                ));
                if !ids.contains(&id) {
                    break id;
                }
            },
        };
        ids.insert(id.clone());
        let created = Stamp::new(EPOCH + i as i64 * step, 0).after(&mut rng, step - 1);
        if depth < max_chain {
            eligible.push(i);
        }
        plan.push(PlannedImage {
            id,
            parent,
            depth,
            created,
            role: Role::default(),
            debian,
        });
    }
    assign_roles(&mut plan, chain0, &mut rng);
    plan
}

/// Where the landmarks go: all in the first chain, at fixed places.
fn assign_roles(plan: &mut [PlannedImage], chain0: usize, rng: &mut rand_chacha::ChaCha8Rng) {
    if chain0 == 0 {
        return;
    }
    let generated = |p: &PlannedImage| p.debian.is_none();
    let last = chain0 - 1;
    if let Some(s) = (0..chain0).find(|&i| generated(&plan[i])) {
        plan[s].role.showcase = true;
    }
    if chain0 >= 2 {
        let r = &mut plan[1].role;
        (r.all_changes, r.aufs_meta, r.etc_hosts, r.big_file) = (true, true, true, true);
    }
    for (i, p) in plan.iter_mut().enumerate().skip(2).take(2) {
        p.role.big_file = i < 4;
    }
    let at = |k: usize| k.min(last);
    plan[at(2)].role.etc_resolv = true;
    plan[at(2)].role.mtab_symlink = true;
    plan[at(3)].role.dev_dir = true;
    // The rest: now and then a hosts or resolv.conf of their own.
    for p in plan.iter_mut().skip(chain0) {
        p.role.etc_hosts = rng.random_ratio(1, 10);
        p.role.etc_resolv = rng.random_ratio(1, 10);
    }
    // A Debian copy takes no roles: they move to the next image.
    if plan[0].debian.is_some() {
        let r = std::mem::take(&mut plan[0].role);
        if chain0 >= 2 {
            let next = &mut plan[1].role;
            next.etc_resolv |= r.etc_resolv;
            next.mtab_symlink |= r.mtab_symlink;
            next.dev_dir |= r.dev_dir;
        }
    }
}

/// The first chain: image 0 and each next image whose parent is the one before.
fn first_chain_len(plan: &[PlannedImage]) -> usize {
    (1..plan.len())
        .find(|&i| plan[i].parent != Some(i - 1))
        .unwrap_or(plan.len())
}

fn landmarks(plan: &[PlannedImage]) -> Landmarks {
    let find = |f: fn(&Role) -> bool| {
        plan.iter()
            .find(|p| p.debian.is_none() && f(&p.role))
            .map(|p| p.id.clone())
    };
    Landmarks {
        debian: plan.iter().find(|p| p.debian.is_some()).map(|p| p.id.clone()),
        showcase: find(|r| r.showcase),
        all_changes: find(|r| r.all_changes),
        etc_hosts: find(|r| r.etc_hosts),
        etc_resolv: find(|r| r.etc_resolv),
        mtab_symlink: find(|r| r.mtab_symlink),
        dev_dir: find(|r| r.dev_dir),
        non_hex_ids: plan
            .iter()
            .filter(|p| !names::is_hex_id(&p.id))
            .map(|p| p.id.clone())
            .collect(),
    }
}

/// repository -> tag -> image index.
type Tags = BTreeMap<String, BTreeMap<String, usize>>;

fn tags(plan: &[PlannedImage], seed: u64) -> Tags {
    let mut tags = Tags::new();
    if plan.is_empty() {
        return tags;
    }
    let mut tag = |repo: &str, tag: &str, image: usize| {
        tags.entry(repo.to_string()).or_default().insert(tag.to_string(), image);
    };
    let base = if plan[0].debian.is_some() { "debian" } else { "ubuntu" };
    for t in ["12.04", "precise", "latest"] {
        tag(base, t, 0);
    }
    if let Some(other) = plan.iter().skip(1).position(|p| p.parent.is_none()) {
        tag("busybox", "latest", other + 1);
    }
    tag("example/app", "v1", first_chain_len(plan) - 1);
    tag("example/app", "latest", plan.len() - 1);
    let mut rng = stream(seed, Stream::Root, 2);
    for k in 0..3 {
        tag(
            &format!("user{k}/svc"),
            "latest",
            rng.random_range(0..plan.len() as u64) as usize,
        );
    }
    tags
}

/// What a user typed to run image `index`: a tag of it, or a short id.
fn image_name(tags: &Tags, index: usize, id: &str) -> String {
    tags.iter()
        .flat_map(|(repo, t)| t.iter().map(move |(tag, &i)| (repo, tag, i)))
        .find(|&(_, _, i)| i == index)
        .map_or_else(
            || id.get(..12).unwrap_or(id).to_string(),
            |(repo, tag, _)| format!("{repo}:{tag}"),
        )
}

/// `{"Repositories":{...}}` as Docker 0.6's TagStore saved it (Go sorts map keys).
fn repositories_json(tags: &Tags, plan: &[PlannedImage]) -> String {
    let repos: BTreeMap<&str, BTreeMap<&str, &str>> = tags
        .iter()
        .map(|(repo, t)| {
            (
                repo.as_str(),
                t.iter().map(|(tag, &i)| (tag.as_str(), plan[i].id.as_str())).collect(),
            )
        })
        .collect();
    json::to_json(&BTreeMap::from([("Repositories", repos)]))
}

/// How many images, from the first, Docker 1.8 got through: a prefix of a
/// parents-first order is closed under parents.
fn docker18_prefix(plan: &[PlannedImage]) -> usize {
    if plan.is_empty() {
        0
    } else {
        (plan.len() / 3).max(1)
    }
}

/// What Docker 1.8's migration leaves for the first `done` images when its
/// rename fell back to a symlink: `aufs/diff/<id>` -> `ROOT/graph/<id>/layer`,
/// then `Create`: `aufs/mnt/<id>/`, and `aufs/layers/<id>` with the ancestors,
/// nearest first.
fn half_migrated(seed: u64, root: &Path, plan: &[PlannedImage], done: usize) -> Tree {
    // 2015-08-20: Docker 1.8.1's days.
    let mut t = Tree::new(Clock::new(
        seed_for(seed, Stream::Root, 3),
        Stamp::new(1_440_028_800, 0),
        DAY,
    ));
    for d in ["aufs", "aufs/mnt", "aufs/diff", "aufs/layers"] {
        t.dir(d, 0o755);
    }
    for img in &plan[..done] {
        let layer = root.join("graph").join(&img.id).join("layer");
        t.symlink(&format!("aufs/diff/{}", img.id), &layer.to_string_lossy());
        t.dir(&format!("aufs/mnt/{}", img.id), 0o755);
        let mut chain = String::new();
        let mut at = img.parent;
        while let Some(p) = at {
            chain.push_str(&plan[p].id);
            chain.push('\n');
            at = plan[p].parent;
        }
        t.text(&format!("aufs/layers/{}", img.id), 0o644, chain);
    }
    t
}
