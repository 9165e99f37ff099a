//! Docker's own aufs driver as a client of the views (issue 13): Docker
//! 20.10's `daemon/graphdriver/aufs`, with `pkg/archive`,
//! `pkg/chrootarchive` and `pkg/directory`, built from Debian's sources
//! (see `docker_driver/harness.rs` and `docker_driver/main.go`), runs on
//! generated roots (one with the Debian base tree, one left half-migrated
//! by Docker 1.8) and on their reference (a copy migrated offline by
//! `graph2aufs migrate`):
//!
//! - for every layer, `Exists`, `Diff` (every tar header and a hash of
//!   each file's contents), `DiffSize`, `Changes`, `GetMetadata`, and the
//!   driver's `Status`, say the same on the reference, through the
//!   read-only view, through the read-write view right after mounting
//!   (items pending) and once its background migration is done;
//! - through the read-write view, on pending layers: `Create`, `ApplyDiff`
//!   of a tar with every kind of entry, whiteouts and an opaque directory,
//!   `Remove`, `docker rmi` and `docker rm` (as Docker 1.8 did them on disk,
//!   with the driver's `Remove`) each leave the tree the same calls leave on
//!   the reference.
//!
//! Each call runs the driver's own code unmodified, on the driver Init
//! builds (less its aufs module check; without Init's directory set-up on
//! the read-only view, which cannot be written). Nothing mounts aufs:
//! given the layer's own parent, `Diff`, `DiffSize`, `ApplyDiff` and
//! `Changes` work on `diff/<id>` directly (only `Get` mounts); `Status`
//! probes for aufs's `dirperm1` with an aufs mount that fails without
//! aufs; `ApplyDiff` untars in a re-executed child chrooted (`pivot_root`)
//! into the layer in a mount namespace of its own, gone with it. What
//! honestly differs: `Status`'s "Backing Filesystem" is `fuse` through a
//! view. Known limitation of Docker, on the reference too: `Changes` fails
//! (ENOTDIR) where a parent layer has a file and the child a directory
//! below the same name; such results compare as errors.

mod common;
use common::*;

#[path = "docker_driver/harness.rs"]
mod harness;
#[path = "docker_driver/layer.rs"]
mod layer;
#[path = "live_view/mod.rs"]
mod live_view;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use g2a_genroot::Options;
use serde_json::Value;

use harness::{require_docker_driver, DockerDriver, Layer};
use live_view::*;

/// The longest a test keeps a view mounted.
const BOUND: Duration = Duration::from_secs(240);
/// How long the background migration may take in all.
const FINISH: Duration = Duration::from_secs(120);
/// A layer no root has.
const MISSING: &str = "no-such-layer";

fn debian_root(seed: u64, base: PathBuf) -> Options {
    Options {
        seed,
        images: 4,
        max_chain: 3,
        containers: 2,
        entries_per_layer: 16,
        broken: false,
        docker18: false,
        debian_base: Some(base),
    }
}

fn docker18_root(seed: u64) -> Options {
    Options {
        seed,
        images: 18,
        max_chain: 4,
        containers: 6,
        entries_per_layer: 16,
        broken: false,
        docker18: true,
        debian_base: None,
    }
}

/// The layers of `items` (an image's own; a container's and its init
/// layer's), each with its parent by the generator (the layer store passes
/// a layer's own parent), then [`MISSING`].
fn layers_of(f: &Fixture, items: &[String]) -> Vec<Layer> {
    let chains = f.chains(&[]);
    let mut out = Vec::new();
    for item in items {
        let mut ids = vec![item.clone()];
        if f.is_container(item) {
            ids.push(format!("{item}-init"));
        }
        for id in ids {
            let parent = chains[&id].clone();
            out.push((id, parent));
        }
    }
    out.push((MISSING.to_string(), None));
    out
}

/// Every item of the generated root: images, parents first, then containers.
fn all_items(f: &Fixture) -> Vec<String> {
    let mut items = f.summary.images.clone();
    items.extend(f.summary.containers.iter().map(|c| c.0.clone()));
    items
}

/// The driver's `Status` without what honestly differs: "Backing
/// Filesystem" is `fuse` through a view and the disk's own natively.
#[track_caller]
fn without_backing_fs(mut v: Value, through_a_view: bool, what: &str) -> Value {
    let status = v["status"].as_array_mut().expect("a status");
    let fs = status
        .iter_mut()
        .find(|kv| kv[0] == "Backing Filesystem")
        .unwrap_or_else(|| panic!("{what}: no Backing Filesystem in the driver's Status"));
    assert_eq!(
        fs[1] == "fuse",
        through_a_view,
        "{what}: the driver's Backing Filesystem is {} (fuse through a view only)",
        fs[1]
    );
    fs[1] = Value::from("(the backing file system)");
    v
}

/// One line per difference between two `inspect` results (layers matched
/// by id, Diff entries by name).
fn differences(a: &Value, b: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    for key in ["status", "log"] {
        if a[key] != b[key] {
            lines.push(format!("{key}:\n    a: {}\n    b: {}", a[key], b[key]));
        }
    }
    let index = |v: &Value| -> BTreeMap<String, Value> {
        v["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| (l["id"].as_str().expect("an id").to_string(), l.clone()))
            .collect()
    };
    let (la, lb) = (index(a), index(b));
    if la.keys().ne(lb.keys()) {
        lines.push(format!(
            "other layers:\n    a: {:?}\n    b: {:?}",
            la.keys().collect::<Vec<_>>(),
            lb.keys().collect::<Vec<_>>()
        ));
    }
    for (id, x) in &la {
        let Some(y) = lb.get(id) else { continue };
        for key in ["parent", "exists", "diff_size", "changes", "metadata", "log"] {
            if x[key] != y[key] {
                lines.push(format!("{id} {key}:\n    a: {}\n    b: {}", x[key], y[key]));
            }
        }
        let (dx, dy) = (&x["diff"], &y["diff"]);
        if dx["error"] != dy["error"] {
            lines.push(format!(
                "{id} Diff error:\n    a: {}\n    b: {}",
                dx["error"], dy["error"]
            ));
        }
        let entries = |d: &Value| -> Vec<Value> { d["entries"].as_array().expect("entries").clone() };
        let (ex, ey) = (entries(dx), entries(dy));
        let names = |e: &[Value]| -> Vec<String> { e.iter().map(|e| e["name"].to_string()).collect() };
        if names(&ex) != names(&ey) {
            let (nx, ny) = (names(&ex), names(&ey));
            let (sx, sy): (BTreeSet<_>, BTreeSet<_>) = (nx.iter().collect(), ny.iter().collect());
            lines.push(format!(
                "{id} Diff entries: only in a {:?}; only in b {:?}; or another order",
                sx.difference(&sy).take(20).collect::<Vec<_>>(),
                sy.difference(&sx).take(20).collect::<Vec<_>>()
            ));
        }
        let by_name =
            |e: &[Value]| -> BTreeMap<String, Value> { e.iter().map(|e| (e["name"].to_string(), e.clone())).collect() };
        let by_y = by_name(&ey);
        for (name, e) in by_name(&ex) {
            match by_y.get(&name) {
                Some(other) if *other != e => {
                    lines.push(format!("{id} Diff entry {name}:\n    a: {e}\n    b: {other}"))
                }
                _ => {}
            }
        }
    }
    lines
}

/// Asserts that two `inspect` results say the same, listing what differs.
#[track_caller]
fn assert_same_results(a: &Value, b: &Value, what: &str) {
    let lines = differences(a, b);
    assert!(
        lines.is_empty(),
        "{what}: {} differences (first 40):\n{}",
        lines.len(),
        lines[..lines.len().min(40)].join("\n")
    );
}

/// The layers' results say something: the Diffs hold every kind of tar
/// entry, the Changes every kind of change and Docker's ENOTDIR, and the
/// missing layer does not exist.
#[track_caller]
fn assert_not_vacuous(v: &Value, what: &str) {
    let layers = v["layers"].as_array().expect("layers");
    let types: BTreeSet<&str> = layers
        .iter()
        .flat_map(|l| l["diff"]["entries"].as_array().expect("entries"))
        .map(|e| e["type"].as_str().expect("a type"))
        .collect();
    assert_eq!(
        types,
        BTreeSet::from(["0", "1", "2", "3", "4", "5", "6"]),
        "{what}: the tar entry types of every Diff"
    );
    let kinds: BTreeSet<char> = layers
        .iter()
        .filter_map(|l| l["changes"]["changes"].as_array())
        .flatten()
        .map(|c| c.as_str().expect("a change").chars().next().expect("a kind"))
        .collect();
    assert_eq!(kinds, BTreeSet::from(['A', 'C', 'D']), "{what}: the kinds of change");
    let errors: Vec<&str> = layers.iter().filter_map(|l| l["changes"]["error"].as_str()).collect();
    assert!(
        errors.iter().any(|e| e.contains("not a directory")),
        "{what}: Docker's Changes fails with ENOTDIR on a directory over a file: {errors:?}"
    );
    let missing = layers.iter().find(|l| l["id"] == MISSING).expect("the missing layer");
    assert_eq!(missing["exists"], false, "{what}: Exists({MISSING})");
    assert!(
        layers
            .iter()
            .filter(|l| l["id"] != MISSING)
            .all(|l| l["exists"] == true),
        "{what}: every generated layer Exists"
    );
}

/// `inspect` through the live view of each of `layers` in turn (a harness
/// run each, between two looks at the items' states): the results in one
/// document, and per layer whether its item was pending when its run
/// began, and when it ended.
fn inspect_live(driver: &DockerDriver, view: &View, layers: &[Layer]) -> (Value, Vec<(String, bool, bool)>) {
    let mut all = serde_json::json!({"layers": [], "log": []});
    let mut states = Vec::new();
    for layer in layers {
        let item = layer.0.strip_suffix("-init").unwrap_or(&layer.0);
        let before = !registered(&view.states(), item);
        let mut one = driver.inspect(&view.root, false, std::slice::from_ref(layer));
        let after = !registered(&view.states(), item);
        states.push((layer.0.clone(), before, after));
        let list = |v: &mut Value, key: &str| std::mem::take(v[key].as_array_mut().expect("a list"));
        for key in ["layers", "log"] {
            let mut more = list(&mut one, key);
            all[key].as_array_mut().expect("a list").append(&mut more);
        }
        if all.get("status").is_some_and(|s| *s != one["status"]) {
            panic!("the driver's Status changed: {} then {}", all["status"], one["status"]);
        }
        all["status"] = one["status"].take();
    }
    (all, states)
}

/// The read test of one root: the reference; the read-only view; the
/// read-write view right after mounting, then once migrated.
fn reads_agree(opts: impl FnOnce() -> Option<Options>, item_delay_ms: u64) {
    if !require_root_and_fuse() {
        return;
    }
    let Some(driver) = require_docker_driver() else {
        return;
    };
    let Some(opts) = opts() else { return };
    let f = Fixture::prepared(&opts, |_, _| {});
    let every = layers_of(&f, &all_items(&f));
    let inspect = |root: &Path, read_only: bool, layers: &[Layer], what: &str| {
        without_backing_fs(driver.inspect(root, read_only, layers), root != f.reference, what)
    };
    let reference = inspect(&f.reference, false, &every, "the reference");
    assert_not_vacuous(&reference, "the reference");

    let mp = f.dir.path().join("ro");
    fs::create_dir(&mp).expect("a mount point");
    let ro = Mount::start(&f.root, &mp, &["--read-only"], BOUND);
    let read_only = inspect(&mp, true, &every, "the read-only view");
    let status = ro.unmount();
    assert!(status.success(), "the read-only server exited with {status}");

    let view = View::start(&f, item_delay_ms, BOUND);
    // In the plan's order, each as early as it can be (pending), the
    // Debian layer, the longest to read, first.
    let mut order: Vec<String> = view.states().into_iter().map(|(id, _)| id).collect();
    if let Some(debian) = &f.summary.landmarks.debian {
        order.retain(|id| id != debian);
        order.insert(0, debian.clone());
    }
    let (fresh, states) = inspect_live(&driver, &view, &layers_of(&f, &order));
    let fresh = without_backing_fs(fresh, true, "the live view");
    let throughout: Vec<&str> = states.iter().filter(|s| s.1 && s.2).map(|s| s.0.as_str()).collect();
    eprintln!(
        "the live view right after mounting: {} layers, {} pending while inspected, {} pending when their inspection began",
        states.len(),
        throughout.len(),
        states.iter().filter(|s| s.1).count()
    );
    assert!(
        !throughout.is_empty(),
        "some layers were inspected through the live view while pending: {states:?}"
    );
    if let Some(debian) = &f.summary.landmarks.debian {
        assert!(
            states.iter().any(|s| s.0 == *debian && s.1),
            "the Debian layer was pending when its inspection through the live view began: {states:?}"
        );
    }
    view.wait_until("the background migration finishes", FINISH, |s| {
        s["live"]["finished"] == true
    });
    let migrated = inspect(&f.root, false, &every, "the migrated live view");

    assert_same_results(&reference, &read_only, "the reference (a) and the read-only view (b)");
    assert_same_results(
        &reference,
        &fresh,
        "the reference (a) and the live view right after mounting (b)",
    );
    assert_same_results(
        &reference,
        &migrated,
        "the reference (a) and the live view once migrated (b)",
    );
    finish(&f, view, FINISH, &[]);
}

#[test]
fn dockers_driver_reads_a_debian_root_alike_offline_through_the_live_view_and_the_read_only_view() {
    reads_agree(|| require_debian_base().map(|b| debian_root(1301, b)), 3000);
}

#[test]
fn dockers_driver_reads_a_docker18_root_alike_offline_through_the_live_view_and_the_read_only_view() {
    reads_agree(|| Some(docker18_root(1302)), 150);
}

/// Every line of a `layers/` file a chain gives: `parent`, then the
/// parent's own ancestors, nearest first (what `Create` writes).
fn expected_layers(parent: Option<&str>, chains: &BTreeMap<String, Option<String>>) -> String {
    let mut out = String::new();
    let mut next = parent.map(str::to_string);
    while let Some(id) = next {
        out.push_str(&id);
        out.push('\n');
        next = chains.get(&id).cloned().flatten();
    }
    out
}

/// Asserts that nothing of layer `id` is left under `root`: no `layers/`
/// file (so not `Exists`), no `diff`/`mnt` directory, no `-removing`
/// leftover.
#[track_caller]
fn assert_layer_gone(root: &Path, id: &str, what: &str) {
    let aufs = root.join("aufs");
    for p in [
        aufs.join("layers").join(id),
        aufs.join("diff").join(id),
        aufs.join("mnt").join(id),
        aufs.join("diff").join(format!("{id}-removing")),
        aufs.join("mnt").join(format!("{id}-removing")),
    ] {
        assert_absent(&p, what);
    }
}

/// The driver's calls through the live view, then the same on the
/// reference: both succeed and say the same, and leave the same tree.
struct Both<'a> {
    driver: &'a DockerDriver,
    f: &'a Fixture,
}

impl Both<'_> {
    /// `args` through the view, then on the reference; its output.
    #[track_caller]
    fn call(&self, what: &str, args: &[&str]) -> Value {
        let got = self
            .driver
            .call(&self.f.root, false, args)
            .unwrap_or_else(|e| panic!("{what} through the live view: {e}"));
        let want = self
            .driver
            .call(&self.f.reference, false, args)
            .unwrap_or_else(|e| panic!("{what} on the reference: {e}"));
        assert_eq!(
            got, want,
            "{what}: what the driver said through the view and on the reference"
        );
        self.same_tree(what);
        got
    }

    /// The whole root through the view equals the reference, up to
    /// [`comparable`].
    #[track_caller]
    fn same_tree(&self, what: &str) {
        assert_same(
            &comparable(&snapshot(&self.f.reference), &[]),
            &comparable(&snapshot(&self.f.root), &[]),
            &format!("after {what}: the reference (a) and ROOT through the live view (b)"),
        );
    }
}

#[test]
fn dockers_driver_writes_on_pending_layers_through_the_live_view_as_on_the_offline_migrated_root() {
    if !require_root_and_fuse() {
        return;
    }
    let Some(driver) = require_docker_driver() else {
        return;
    };
    let f = Fixture::prepared(&docker18_root(1303), |_, _| {});
    let source = f.dir.path().join("layer");
    layer::build_layer(&source);
    let tarball = f.dir.path().join("layer.tar");
    layer::archive(&source, &tarball);
    let tarball = tarball.to_str().expect("a UTF-8 path");
    let view = View::start(&f, 800, BOUND);
    let both = Both { driver: &driver, f: &f };
    let order: Vec<String> = view.states().into_iter().map(|(id, _)| id).collect();
    let leaves = f.leaves(&order);
    let docker18_leaf = leaves
        .iter()
        .copied()
        .rev()
        .find(|id| f.summary.docker18.iter().any(|d| d == id))
        .expect("a Docker 1.8 leaf image");
    let not_docker18: Vec<&str> = leaves
        .iter()
        .copied()
        .filter(|id| !f.summary.docker18.iter().any(|d| d == id))
        .collect();
    let late_leaf = *not_docker18.last().expect("a leaf image");
    let early_leaf = *not_docker18
        .first()
        .filter(|id| **id != late_leaf)
        .expect("a second leaf image");
    let parent = order
        .iter()
        .rev()
        .find(|id| f.summary.parents.contains_key(*id) && !leaves.contains(&id.as_str()))
        .expect("a late image with children");
    let containers: Vec<&str> = order
        .iter()
        .map(String::as_str)
        .filter(|id| f.is_container(id))
        .collect();
    let started = *containers
        .iter()
        .rev()
        .find(|c| f.started(c))
        .expect("a started container");
    let never_started = *containers
        .iter()
        .rev()
        .find(|c| !f.started(c))
        .expect("a never-started container");
    let mut removed: Vec<(&str, String)> = Vec::new();

    // docker rmi of a Docker 1.8 image first: those migrate first.
    let state = view.state(docker18_leaf);
    assert!(
        state != "registered",
        "the Docker 1.8 image {docker18_leaf} is pending before its removal"
    );
    removed.push((docker18_leaf, state));
    both.call(
        &format!("docker rmi {docker18_leaf} of a Docker 1.8 image"),
        &["rmi", docker18_leaf],
    );
    assert_layer_gone(&f.root, docker18_leaf, "docker rmi of a Docker 1.8 image");

    // New layers on a pending image: Create, then Create and ApplyDiff of
    // a layer with every kind of entry.
    assert!(
        view.state(parent) != "registered",
        "the new layers' parent {parent} is pending when they are created"
    );
    let (base, child, grandchild, pulled) = (hex_id("base"), hex_id("child"), hex_id("grandchild"), hex_id("pulled"));
    let new_layers = [
        (base.as_str(), None),
        (child.as_str(), Some(parent.as_str())),
        (grandchild.as_str(), Some(child.as_str())),
        (pulled.as_str(), Some(parent.as_str())),
    ];
    let chains = f.chains(&new_layers);
    for (id, p) in new_layers {
        both.call(&format!("Create({id}, {p:?})"), &["create", id, p.unwrap_or("")]);
        let layers = fs::read_to_string(f.root.join("aufs/layers").join(id))
            .unwrap_or_else(|e| panic!("layers/{id} after Create: {e}"));
        assert_eq!(
            layers,
            expected_layers(p, &chains),
            "layers/{id} after Create({id}, {p:?})"
        );
        assert_empty_dir(&f.root.join("aufs/diff").join(id), 0o755);
        assert_empty_dir(&f.root.join("aufs/mnt").join(id), 0o755);
    }
    let applied = both.call(
        &format!("ApplyDiff({pulled}, {parent})"),
        &["apply-diff", &pulled, parent, tarball],
    );
    let untarred = snapshot(&f.root.join("aufs/diff").join(&pulled));
    // Docker's untar leaves the layer's own directory as Create made it.
    assert_same(
        &snapshot(&source).without([""]),
        &untarred.without([""]),
        "the layer's source (a) and what ApplyDiff untarred through the live view (b)",
    );
    let sizes: u64 = untarred.values().filter(|e| e.kind == Kind::File).map(|e| e.size).sum();
    assert!(
        applied["size"].as_u64().is_some_and(|s| s > 0 && s <= sizes),
        "ApplyDiff's size {} counts the files once each (at most {sizes} in all)",
        applied["size"]
    );

    // docker rmi and docker rm of the last items of the plan, pending
    // (each migrates, on the spot, its item and the items it depends on).
    for (id, kind) in [
        (late_leaf, "image"),
        (started, "container"),
        (never_started, "never-started container"),
    ] {
        let state = view.state(id);
        assert!(state != "registered", "the {kind} {id} is pending before its removal");
        removed.push((id, state));
        let cmd = if kind == "image" { "rmi" } else { "rm" };
        both.call(&format!("docker {cmd} {id} of a pending {kind}"), &[cmd, id]);
        assert_layer_gone(&f.root, id, &format!("docker {cmd} of a pending {kind}"));
        assert_layer_gone(
            &f.root,
            &format!("{id}-init"),
            &format!("docker {cmd} of a pending {kind}"),
        );
        let dir = if kind == "image" { "graph" } else { "containers" };
        assert_absent(&f.root.join(dir).join(id), &format!("docker {cmd} of a pending {kind}"));
    }

    // A new layer filled and removed, on a new layer.
    let gone = hex_id("gone");
    both.call(&format!("Create({gone}, {child})"), &["create", &gone, &child]);
    both.call(
        &format!("ApplyDiff({gone}, {child})"),
        &["apply-diff", &gone, &child, tarball],
    );
    both.call(&format!("Remove({gone})"), &["remove", &gone]);
    assert_layer_gone(&f.root, &gone, "a new layer removed");

    // What the driver says of the new layers, and of the removed ones.
    let mut inspected: Vec<Layer> = new_layers
        .iter()
        .map(|(id, p)| (id.to_string(), p.map(str::to_string)))
        .collect();
    inspected.extend(removed.iter().map(|(id, _)| (id.to_string(), None)));
    inspected.push((gone.clone(), Some(child.clone())));
    let through_view = without_backing_fs(driver.inspect(&f.root, false, &inspected), true, "the live view");
    let reference = without_backing_fs(driver.inspect(&f.reference, false, &inspected), false, "the reference");
    assert_same_results(
        &reference,
        &through_view,
        "the new and removed layers on the reference (a) and through the live view (b)",
    );
    // Not vacuous: the applied layer's Diff has every kind of entry, its
    // whiteouts and opaque marker; its Changes its deletions.
    let applied = through_view["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .find(|l| l["id"] == pulled.as_str())
        .expect("the applied layer");
    let entries = applied["diff"]["entries"].as_array().expect("entries");
    let types: BTreeSet<&str> = entries.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(
        types,
        BTreeSet::from(["0", "1", "2", "3", "4", "5", "6"]),
        "the tar entry types of the applied layer's Diff"
    );
    for name in ["etc/.wh.shadow", "usr/.wh.games", "var/cache/apt/.wh..wh..opq"] {
        assert!(
            entries.iter().any(|e| e["name"] == name),
            "the applied layer's Diff has {name}"
        );
    }
    let changes = applied["changes"]["changes"]
        .as_array()
        .expect("Changes of the applied layer");
    for change in ["D /etc/shadow", "D /usr/games"] {
        assert!(
            changes.iter().any(|c| c == change),
            "the applied layer's Changes has {change}: {changes:?}"
        );
    }
    let states = view.states();
    assert!(
        !pending(&states).is_empty(),
        "the calls ran while items were pending: {states:?}"
    );

    // docker rmi of a migrated image.
    view.wait_registered(early_leaf, FINISH);
    removed.push((early_leaf, "registered".to_string()));
    both.call(
        &format!("docker rmi {early_leaf} of a migrated image"),
        &["rmi", early_leaf],
    );
    assert_layer_gone(&f.root, early_leaf, "docker rmi of a migrated image");
    eprintln!("removed (id, state before): {removed:?}");

    finish(&f, view, FINISH, &[]);
    // The native layout: nothing of the removed items anywhere, not even
    // in graph2aufs's quarantine; the new layers as created.
    let everything = snapshot(&f.root);
    for (id, _) in &removed {
        let left: Vec<_> = everything.keys().filter(|p| p.to_string_lossy().contains(id)).collect();
        assert!(
            left.is_empty(),
            "after unmount, entries of the removed {id} are left: {left:?}"
        );
    }
    for (id, p) in new_layers {
        assert_eq!(
            fs::read_to_string(f.root.join("aufs/layers").join(id)).expect("a new layer's layers file"),
            expected_layers(p, &chains),
            "layers/{id} after unmount"
        );
    }
}
