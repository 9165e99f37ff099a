//! The migration engine through the `graph2aufs` binary, on generated legacy
//! roots: what `migrate` makes of a root (FORMATS.md 2 and 4), broken items
//! and the quarantine, crash safety, idempotence, `rollback`, `verify`, the
//! per-ROOT lock, the `--json` reports, and `plan` writing nothing.
//!
//! Every expectation is built here, from a snapshot of the root taken before
//! the command and the generator's summary, never from the engine's code.
//! Roots live in temporary directories on the disk, or on a tmpfs where a
//! test runs `migrate` many times (syncs cost nothing there). The generator
//! needs root (device nodes, owners), so every test that generates a root
//! does.

mod common;
#[path = "view/merge.rs"]
mod merge;
#[path = "initlayer/setup.rs"]
mod setup;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use g2a_genroot::{generate, BrokenKind, Options, Summary, DEV_MODE, DEV_MTIME};
use serde_json::Value;

// ---------------------------------------------------------------------------
// Roots
// ---------------------------------------------------------------------------

/// A root with one broken item of each kind and Docker 1.8 leftovers, whose
/// containers (seed chosen for it) run images that bring their own
/// `/etc/hosts`, `/etc/resolv.conf`, `/etc/mtab` symlink and `/dev`, and
/// images that bring none of them.
fn broken_root() -> Options {
    Options {
        seed: 3,
        images: 10,
        max_chain: 4,
        containers: 6,
        entries_per_layer: 10,
        broken: true,
        docker18: true,
        debian_base: None,
    }
}

/// A legacy root as Docker 0.6 left it: nothing broken, nothing half-migrated
/// (seed chosen as for [`broken_root`]).
fn plain_root() -> Options {
    Options {
        seed: 2,
        broken: false,
        docker18: false,
        ..broken_root()
    }
}

/// A small root of tiny layers, with broken items and Docker 1.8 leftovers:
/// for tests that run `migrate` once per step of a migration (seed chosen
/// for the least data: every step takes snapshots).
fn small_root() -> Options {
    Options {
        seed: 2,
        images: 6,
        max_chain: 4,
        containers: 3,
        entries_per_layer: 0,
        broken: true,
        docker18: true,
        debian_base: None,
    }
}

/// [`small_root`] without broken items or Docker 1.8 leftovers.
fn small_plain_root() -> Options {
    Options {
        broken: false,
        docker18: false,
        ..small_root()
    }
}

/// Where a test's roots live.
enum Space {
    Disk(tempfile::TempDir),
    Tmpfs(TmpFs),
}

impl Space {
    fn disk() -> Space {
        let dir = tempfile::Builder::new()
            .prefix("g2a-engine.")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        Space::Disk(dir)
    }

    fn tmpfs() -> Space {
        Space::Tmpfs(TmpFs::new(1024))
    }

    fn path(&self) -> &Path {
        match self {
            Space::Disk(d) => d.path(),
            Space::Tmpfs(t) => t.path(),
        }
    }
}

/// A generated legacy root with the generator's summary and snapshots of the
/// root and of its `outside` sibling taken right after generating them.
struct Legacy {
    root: PathBuf,
    summary: Summary,
    before: Tree,
    outside_before: Option<Tree>,
    // Last: dropped (unmounted, removed) after everything else.
    space: Space,
}

impl Legacy {
    #[track_caller]
    fn generate(space: Space, opts: &Options) -> Legacy {
        // `root` gets its `outside` sibling (`root.outside`) in the same space.
        let root = space.path().join("root");
        let summary = generate(&root, opts).unwrap_or_else(|e| panic!("generating {}: {e}", root.display()));
        let root = root.canonicalize().expect("the generated root exists");
        let before = snapshot(&root);
        let outside_before = summary.outside.as_deref().map(snapshot);
        Legacy {
            root,
            summary,
            before,
            outside_before,
            space,
        }
    }

    /// A copy of the root as generated (`cp -a`: modes, owners, times, xattrs,
    /// hard links, devices), at `name` beside it. Symlinks are copied as they
    /// are: Docker 1.8's still point into the generated root, which no
    /// command follows.
    #[track_caller]
    fn copy(&self, name: &str) -> PathBuf {
        let dst = self.space.path().join(name);
        let mut cp = Command::new("cp");
        cp.arg("-a").arg(&self.root).arg(&dst);
        run_command(cp, RUN_TIMEOUT).expect_code(0);
        dst
    }

    /// Like [`Legacy::copy`], checking that the copy is exact.
    #[track_caller]
    fn exact_copy(&self, name: &str) -> PathBuf {
        let dst = self.copy(name);
        assert_same(
            &self.before,
            &snapshot(&dst),
            &format!("cp -a of the generated root to {name}"),
        );
        dst
    }

    #[track_caller]
    fn assert_outside_unchanged(&self) {
        if let (Some(dir), Some(before)) = (&self.summary.outside, &self.outside_before) {
            assert_same(before, &snapshot(dir), "the directory outside ROOT");
        }
    }
}

// ---------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------

/// `graph2aufs CMD ROOT EXTRA...`.
#[track_caller]
fn g2a_on(cmd: &str, root: &Path, extra: &[&str]) -> RunResult {
    let mut args: Vec<&OsStr> = vec![OsStr::new(cmd), root.as_os_str()];
    args.extend(extra.iter().map(OsStr::new));
    run(args)
}

/// `graph2aufs CMD ROOT --json`, its exit code and its output parsed.
#[track_caller]
fn g2a_json(cmd: &str, root: &Path) -> (i32, Value, RunResult) {
    let r = g2a_on(cmd, root, &["--json"]);
    (r.code, r.json(), r)
}

/// The exit code of a process that SIGKILLed itself.
const KILLED: i32 = 128 + libc::SIGKILL;

/// `graph2aufs migrate ROOT`, killing itself just before its `n+1`th change.
#[track_caller]
fn migrate_killed_after(root: &Path, n: usize) -> RunResult {
    let mut cmd = g2a([OsStr::new("migrate"), root.as_os_str()]);
    cmd.env("GRAPH2AUFS_KILL_AFTER", n.to_string());
    run_command(cmd, RUN_TIMEOUT)
}

/// The item of a `plan`/`migrate`/`status` report with this kind and id.
#[track_caller]
fn item<'a>(doc: &'a Value, kind: &str, id: &str) -> &'a Value {
    doc["items"]
        .as_array()
        .expect("items is an array")
        .iter()
        .find(|i| i["kind"] == kind && i["id"] == id)
        .unwrap_or_else(|| panic!("no {kind} {id} in the report:\n{doc:#}"))
}

fn state<'a>(doc: &'a Value, kind: &str, id: &str) -> &'a str {
    item(doc, kind, id)["state"].as_str().expect("state is a string")
}

fn reason<'a>(doc: &'a Value, kind: &str, id: &str) -> &'a str {
    item(doc, kind, id)["reason"].as_str().unwrap_or("")
}

// ---------------------------------------------------------------------------
// What the generator made, in the terms of the migration
// ---------------------------------------------------------------------------

/// The ancestors of a good image, nearest first.
fn ancestors(s: &Summary, id: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = s.parents[id].clone();
    while let Some(p) = at {
        at = s.parents[&p].clone();
        out.push(p);
    }
    out
}

/// The bytes of a `layers/` file naming `ids`: one per line, each ending in `\n`.
fn layers_file(ids: &[String]) -> Vec<u8> {
    ids.iter().flat_map(|id| format!("{id}\n").into_bytes()).collect()
}

/// Every layer a migration registers, with the exact bytes of its
/// `aufs/layers/` file: good images, good containers and their init layers.
fn registered_layers(s: &Summary) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for id in &s.images {
        out.insert(id.clone(), layers_file(&ancestors(s, id)));
    }
    for (cid, image, _) in &s.containers {
        let mut chain = vec![image.clone()];
        chain.extend(ancestors(s, image));
        out.insert(format!("{cid}-init"), layers_file(&chain));
        chain.insert(0, format!("{cid}-init"));
        out.insert(cid.clone(), layers_file(&chain));
    }
    out
}

fn is_container_kind(kind: BrokenKind) -> bool {
    matches!(
        kind,
        BrokenKind::ContainerUnknownImage
            | BrokenKind::ContainerBadConfig
            | BrokenKind::ContainerRwSymlinkOutside
            | BrokenKind::ContainerIdMismatch
    )
}

/// The legacy place of a broken item's data (`graph/<id>/layer` or
/// `containers/<id>/rw`), relative to ROOT.
fn broken_legacy_place(name: &str, kind: BrokenKind) -> PathBuf {
    if is_container_kind(kind) {
        PathBuf::from(format!("containers/{name}/rw"))
    } else {
        PathBuf::from(format!("graph/{name}/layer"))
    }
}

/// Every broken item, and every container blocked by one: (kind as the
/// reports say it, directory name, legacy place of its data).
fn broken_items(s: &Summary) -> Vec<(&'static str, String, PathBuf)> {
    let mut out: Vec<_> = s
        .broken
        .iter()
        .map(|(name, kind)| {
            let k = if is_container_kind(*kind) { "container" } else { "image" };
            (k, name.clone(), broken_legacy_place(name, *kind))
        })
        .collect();
    for (cid, _) in &s.blocked_containers {
        out.push(("container", cid.clone(), PathBuf::from(format!("containers/{cid}/rw"))));
    }
    out
}

/// Where each layer's data is before a migration and where it must be
/// after: good layers go to `aufs/diff/<id>`, broken ones to the quarantine.
/// Only places that hold data before.
fn moves(s: &Summary, before: &Tree) -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    for id in &s.images {
        out.push((format!("graph/{id}/layer").into(), format!("aufs/diff/{id}").into()));
    }
    for (cid, _, started) in &s.containers {
        if *started {
            out.push((format!("containers/{cid}/rw").into(), format!("aufs/diff/{cid}").into()));
        }
    }
    for (_, _, legacy) in broken_items(s) {
        if before.contains_key(&legacy) {
            let q = Path::new(".graph2aufs/quarantine").join(&legacy);
            out.push((legacy, q));
        }
    }
    out
}

/// The names directly inside `dir` in a snapshot.
fn children(t: &Tree, dir: impl AsRef<Path>) -> BTreeSet<OsString> {
    let dir = dir.as_ref();
    t.keys()
        .filter(|p| p.parent() == Some(dir) && p.as_os_str() != dir.as_os_str())
        .filter_map(|p| p.file_name().map(OsStr::to_os_string))
        .collect()
}

fn names<I: IntoIterator<Item = S>, S: AsRef<str>>(it: I) -> BTreeSet<OsString> {
    it.into_iter().map(|s| OsString::from(s.as_ref())).collect()
}

// ---------------------------------------------------------------------------
// The init layer, worked out from the image's layers (docs/FORMATS.md)
// ---------------------------------------------------------------------------

/// The init layer of a container on `image` created at `created_ns`: what
/// Docker's setupInitLayer leaves (the test's replay of it over its own
/// aufs model, tests/initlayer/setup.rs).
fn expected_init_layer(before: &Tree, s: &Summary, image: &str, created_ns: i128) -> Tree {
    let chain: Vec<String> = std::iter::once(image.to_string()).chain(ancestors(s, image)).collect();
    let layers: Vec<Tree> = chain
        .iter()
        .map(|id| before.subtree(format!("graph/{id}/layer")))
        .collect();
    setup::init_layer(&layers.iter().collect::<Vec<_>>(), created_ns)
}

// ---------------------------------------------------------------------------
// The migrated layout, checked against the legacy root it came from
// ---------------------------------------------------------------------------

/// Checks, file by file, that `after` is the aufs layout FORMATS.md describes
/// for the legacy root `l` (as generated).
#[track_caller]
fn assert_migrated_layout(l: &Legacy, after: &Tree) {
    let (s, before) = (&l.summary, &l.before);
    let moves = moves(s, before);

    // Every layer's data, moved whole: types, modes, owners, sizes, contents,
    // link targets, devices, xattrs, mtimes, hard-link groups.
    for (from, to) in &moves {
        assert_same(
            &before.subtree(from),
            &after.subtree(to),
            &format!("{} moved to {}", from.display(), to.display()),
        );
        assert!(
            !after.contains_key(from),
            "{} is still there after migrate",
            from.display()
        );
    }

    // aufs/{diff,layers,mnt} hold exactly the registered layers.
    let layers = registered_layers(s);
    for d in ["aufs", "aufs/diff", "aufs/layers", "aufs/mnt"] {
        let e = after.at(d);
        assert_eq!((e.kind, e.mode), (Kind::Dir, 0o755), "{d}");
    }
    for d in ["aufs/diff", "aufs/layers", "aufs/mnt"] {
        assert_eq!(children(after, d), names(layers.keys()), "the names in {d}");
    }
    for (id, bytes) in &layers {
        let path = format!("aufs/layers/{id}");
        let on_disk = fs::read(l.root.join(&path)).unwrap_or_else(|e| panic!("reading {path}: {e}"));
        assert_eq!(
            String::from_utf8_lossy(&on_disk),
            String::from_utf8_lossy(bytes),
            "{path}: the ancestors, nearest first, one per line"
        );
        let e = after.at(&path);
        assert_eq!(
            (e.kind, e.mode, e.uid, e.gid, e.nlink),
            (Kind::File, 0o644, 0, 0, 1),
            "{path}"
        );
        let mnt = format!("aufs/mnt/{id}");
        let e = after.at(&mnt);
        assert_eq!((e.kind, e.mode, e.uid, e.gid), (Kind::Dir, 0o755, 0, 0), "{mnt}");
        assert!(children(after, &mnt).is_empty(), "{mnt} is not empty");
        // Docker 1.8 registered some already: left as they were.
        for p in [&path, &mnt] {
            if let Some(old) = before.get(Path::new(p)) {
                assert_eq!(after.at(p), old, "{p}, registered by Docker 1.8, was changed");
            }
        }
    }

    // Containers: an empty rw layer for those that never ran, and the init layer.
    for (cid, image, started) in &s.containers {
        if !*started {
            let rw = after.subtree(format!("aufs/diff/{cid}"));
            assert_eq!(
                rw.len(),
                1,
                "aufs/diff/{cid} of a container that never ran is not empty"
            );
            let e = rw.at("");
            assert_eq!(
                (e.kind, e.mode, e.uid, e.gid),
                (Kind::Dir, 0o755, 0, 0),
                "aufs/diff/{cid}"
            );
        }
        let created_ns = before.at(format!("containers/{cid}/config.json")).mtime_ns;
        assert_same(
            &expected_init_layer(before, s, image, created_ns),
            &after.subtree(format!("aufs/diff/{cid}-init")),
            &format!("the init layer of container {cid} (image {image})"),
        );
    }

    // Tags: the same bytes (and mode, times) under the new name.
    assert!(
        !after.contains_key(Path::new("repositories")),
        "repositories is still there"
    );
    assert_eq!(
        after.at("repositories-aufs"),
        before.at("repositories"),
        "repositories-aufs"
    );

    // graph2aufs's own directory: the record, the lock and the quarantine.
    assert!(!before.contains_key(Path::new(".graph2aufs")));
    let quarantined: Vec<&PathBuf> = moves
        .iter()
        .map(|(_, to)| to)
        .filter(|to| to.starts_with(".graph2aufs"))
        .collect();
    let mut own: BTreeSet<PathBuf> = [".graph2aufs", ".graph2aufs/record.json", ".graph2aufs/lock"]
        .iter()
        .map(PathBuf::from)
        .collect();
    for q in &quarantined {
        own.extend(
            q.ancestors()
                .skip(1)
                .filter(|a| a.starts_with(".graph2aufs"))
                .map(Path::to_path_buf),
        );
    }
    let found: BTreeSet<PathBuf> = after
        .without(&quarantined)
        .keys()
        .filter(|p| p.starts_with(".graph2aufs"))
        .cloned()
        .collect();
    assert_eq!(found, own, "what graph2aufs keeps under .graph2aufs");

    // Everything else, untouched: image json and layersize, container
    // metadata, volumes/, graph/_tmp; only the directories whose entries
    // moved have new mtimes.
    let changed_dirs: BTreeSet<PathBuf> = ["", "graph", "containers"]
        .iter()
        .map(PathBuf::from)
        .chain(
            moves
                .iter()
                .filter_map(|(from, _)| from.parent().map(Path::to_path_buf)),
        )
        .collect();
    let blank = |p: &Path, e: &mut Entry| {
        if changed_dirs.contains(p) {
            e.mtime_ns = 0;
        }
    };
    let mut old_places: Vec<PathBuf> = moves.iter().map(|(from, _)| from.clone()).collect();
    old_places.extend(["aufs", "repositories"].map(PathBuf::from));
    let mut new_places: Vec<PathBuf> = moves.iter().map(|(_, to)| to.clone()).collect();
    new_places.extend(["aufs", ".graph2aufs", "repositories-aufs"].map(PathBuf::from));
    assert_same(
        &before.without(&old_places).normalized(blank),
        &after.without(&new_places).normalized(blank),
        "the rest of ROOT",
    );
    l.assert_outside_unchanged();
}

#[test]
fn migrate_gives_the_aufs_layout_of_a_root_with_broken_items_and_docker18_symlinks() {
    if !require_root() {
        return;
    }
    let l = Legacy::generate(Space::disk(), &broken_root());
    assert_init_layer_cases_are_covered(&l.summary);
    assert!(!l.summary.docker18.is_empty() && !l.summary.broken.is_empty());
    g2a_on("migrate", &l.root, &[]).expect_code(1);
    let after = snapshot(&l.root);
    assert_migrated_layout(&l, &after);
    let seen = assert_init_layers_replace_images_own_entries(&l.summary, &after);
    assert_eq!(
        seen.len(),
        4,
        "containers run directly on images with each entry of their own ({seen:?})"
    );
}

#[test]
fn migrate_gives_the_aufs_layout_of_a_plain_legacy_root() {
    if !require_root() {
        return;
    }
    let l = Legacy::generate(Space::disk(), &plain_root());
    assert_init_layer_cases_are_covered(&l.summary);
    g2a_on("migrate", &l.root, &[]).expect_code(0);
    assert_migrated_layout(&l, &snapshot(&l.root));
}

/// Spelled out for the containers that run the landmark images themselves:
/// what an image provides (`etc/hosts`, `etc/resolv.conf`, an `etc/mtab`
/// symlink) is replaced in the init layer by a fresh entry (an empty file
/// 0755, the symlink to `/proc/mounts`), hiding the image's; the image's
/// own `/dev` is copied up with its mode and mtime, with `dev/pts`,
/// `dev/shm` and `dev/console` inside. Returns which of them were seen.
#[track_caller]
fn assert_init_layers_replace_images_own_entries(s: &Summary, after: &Tree) -> BTreeSet<&'static str> {
    let lm = &s.landmarks;
    let mut seen = BTreeSet::new();
    for (cid, image, _) in &s.containers {
        let init = |p: &str| PathBuf::from(format!("aufs/diff/{cid}-init/{p}"));
        for (path, landmark) in [
            ("etc/hosts", &lm.etc_hosts),
            ("etc/resolv.conf", &lm.etc_resolv),
            ("etc/mtab", &lm.mtab_symlink),
        ] {
            if landmark.as_ref() == Some(image) {
                let e = after.at(init(path));
                let fresh = match path {
                    "etc/mtab" => e.kind == Kind::Symlink && e.target.as_deref() == Some(Path::new("/proc/mounts")),
                    _ => e.kind == Kind::File && e.size == 0 && e.mode == 0o755,
                };
                assert!(fresh && e.uid == 0, "{}: not fresh: {e:?}", init(path).display());
                assert!(
                    after.contains_key(&init("etc/hostname")),
                    "container {cid}: no etc/hostname"
                );
                seen.insert(path);
            }
        }
        if lm.dev_dir.as_ref() == Some(image) {
            let dev = after.at(init("dev"));
            let mtime = i128::from(DEV_MTIME.0) * 1_000_000_000 + i128::from(DEV_MTIME.1);
            assert_eq!(
                (dev.kind, dev.mode, dev.mtime_ns),
                (Kind::Dir, DEV_MODE, mtime),
                "{}",
                init("dev").display()
            );
            for p in ["dev/pts", "dev/shm", "dev/console"] {
                assert!(after.contains_key(&init(p)), "{} is missing", init(p).display());
            }
            seen.insert("dev");
        }
    }
    seen
}

/// The chosen roots have containers on images that provide each entry the
/// init layer may find (so it must not write it), and on images that
/// provide none of them, and containers that never ran.
#[track_caller]
fn assert_init_layer_cases_are_covered(s: &Summary) {
    let lm = &s.landmarks;
    let chains: Vec<Vec<String>> = s
        .containers
        .iter()
        .map(|(_, image, _)| std::iter::once(image.clone()).chain(ancestors(s, image)).collect())
        .collect();
    for (what, landmark) in [
        ("etc/hosts", &lm.etc_hosts),
        ("etc/resolv.conf", &lm.etc_resolv),
        ("an etc/mtab symlink", &lm.mtab_symlink),
        ("a dev/ of mode 0751", &lm.dev_dir),
    ] {
        let id = landmark.as_ref().unwrap_or_else(|| panic!("no image has {what}"));
        assert!(
            chains.iter().any(|c| c.contains(id)),
            "no container runs an image with {what}"
        );
    }
    let own: Vec<&String> = [&lm.etc_hosts, &lm.etc_resolv, &lm.mtab_symlink, &lm.dev_dir]
        .into_iter()
        .flatten()
        .collect();
    assert!(
        chains.iter().any(|c| !c.iter().any(|id| own.contains(&id))),
        "no container runs an image without any of them"
    );
    assert!(s.containers.iter().any(|c| !c.2), "no container that never ran");
}

// ---------------------------------------------------------------------------
// Broken items
// ---------------------------------------------------------------------------

/// What the reason given for a broken item must say.
fn reason_names_problem(kind: Option<BrokenKind>, reason: &str, s: &Summary) -> bool {
    let named = |kind: BrokenKind| {
        s.broken
            .iter()
            .find(|b| b.1 == kind)
            .map(|b| b.0.clone())
            .unwrap_or_default()
    };
    match kind {
        Some(BrokenKind::InvalidJson) => reason.contains("json is not valid JSON"),
        Some(BrokenKind::IdMismatch) => reason.contains("json id") && reason.contains("does not match"),
        Some(BrokenKind::OwnParent) => reason.contains("its own parent"),
        Some(BrokenKind::Cycle) => {
            let ids: Vec<&String> = s
                .broken
                .iter()
                .filter(|b| b.1 == BrokenKind::Cycle)
                .map(|b| &b.0)
                .collect();
            reason.contains("cycle") && ids.iter().all(|id| reason.contains(id.as_str()))
        }
        Some(BrokenKind::MissingParent) => reason.contains("parent") && reason.contains("does not exist"),
        Some(BrokenKind::LayerNotDir) => reason.contains("/layer is a regular file, not a directory"),
        // The target is not read: reading a symlink updates its atime, and
        // plan changes nothing.
        Some(BrokenKind::LayerSymlinkOutside) => {
            reason.contains("/layer is a symlink (not a directory; never followed)")
        }
        Some(BrokenKind::ChildOfBroken) => {
            reason.contains(&format!("its parent {} is blocked", named(BrokenKind::InvalidJson)))
        }
        Some(BrokenKind::ContainerUnknownImage) => reason.contains("its image") && reason.contains("does not exist"),
        Some(BrokenKind::ContainerBadConfig) => reason.contains("config.json is not valid JSON"),
        Some(BrokenKind::ContainerRwSymlinkOutside) => {
            reason.contains("/rw is a symlink (not a directory; never followed)")
        }
        Some(BrokenKind::ContainerIdMismatch) => reason.contains("config.json ID") && reason.contains("does not match"),
        Some(BrokenKind::UnsafeId) => reason.contains("not a safe id") && reason.contains("-init"),
        // A container on the ChildOfBroken image.
        None => reason.contains(&format!("its image {} is blocked", named(BrokenKind::ChildOfBroken))),
    }
}

fn kind_of(s: &Summary, name: &str) -> Option<BrokenKind> {
    s.broken.iter().find(|b| b.0 == name).map(|b| b.1)
}

#[test]
fn plan_reports_each_broken_kind_quarantined_with_a_reason_naming_the_problem() {
    if !require_root() {
        return;
    }
    let l = Legacy::generate(Space::tmpfs(), &small_root());
    let s = &l.summary;
    let kinds: BTreeSet<BrokenKind> = s.broken.iter().map(|b| b.1).collect();
    assert_eq!(kinds.len(), 13, "the generator makes one item of each broken kind");
    let (code, doc, r) = g2a_json("plan", &l.root);
    assert_eq!(code, 1, "quarantined items are problems:\n{r}");
    for (k, name, _) in broken_items(s) {
        let kind = kind_of(s, &name);
        assert_eq!(state(&doc, k, &name), "quarantined", "{k} {name} ({kind:?})");
        let why = reason(&doc, k, &name);
        assert!(
            reason_names_problem(kind, why, s),
            "{k} {name} ({kind:?}): the reason {why:?} does not name the problem"
        );
        assert_eq!(item(&doc, k, &name)["action"], "quarantine", "{k} {name} ({kind:?})");
    }
}

#[test]
fn migrate_moves_the_data_of_broken_items_untouched_to_the_quarantine() {
    if !require_root() {
        return;
    }
    let l = Legacy::generate(Space::tmpfs(), &small_root());
    g2a_on("migrate", &l.root, &[]).expect_code(1);
    let after = snapshot(&l.root);
    let mut moved = 0;
    for (k, name, legacy) in broken_items(&l.summary) {
        let q = Path::new(".graph2aufs/quarantine").join(&legacy);
        if l.before.contains_key(&legacy) {
            assert_same(
                &l.before.subtree(&legacy),
                &after.subtree(&q),
                &format!("{k} {name}: its quarantined data"),
            );
            assert!(
                !after.contains_key(&legacy),
                "{k} {name}: {} is still there",
                legacy.display()
            );
            moved += 1;
        } else {
            assert!(
                !after.contains_key(&q),
                "{k} {name} had no data, yet {} exists",
                q.display()
            );
        }
    }
    assert!(moved >= 13, "most broken items have data ({moved} had)");
    l.assert_outside_unchanged();
}

#[test]
fn a_broken_item_blocks_its_dependents_and_nothing_else() {
    if !require_root() {
        return;
    }
    let l = Legacy::generate(Space::tmpfs(), &small_root());
    let s = &l.summary;
    let (code, doc, r) = g2a_json("migrate", &l.root);
    assert_eq!(code, 1, "{r}");
    let quarantined: BTreeSet<(String, String)> = doc["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| i["state"] == "quarantined")
        .map(|i| {
            (
                i["kind"].as_str().unwrap().to_string(),
                i["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let broken: BTreeSet<(String, String)> = broken_items(s)
        .into_iter()
        .map(|(k, n, _)| (k.to_string(), n))
        .collect();
    assert_eq!(quarantined, broken, "quarantined items");
    for id in &s.images {
        assert_eq!(state(&doc, "image", id), "registered", "image {id}");
    }
    for (cid, _, _) in &s.containers {
        assert_eq!(state(&doc, "container", cid), "registered", "container {cid}");
    }
    let total = doc["items"].as_array().unwrap().len();
    assert_eq!(
        total,
        s.images.len() + s.containers.len() + broken.len(),
        "items in the report"
    );
}

// ---------------------------------------------------------------------------
// Crash safety
// ---------------------------------------------------------------------------

/// A snapshot without what honestly depends on the time of the run: the
/// mtimes of directories the migration changed or created, of `aufs/layers/*`
/// and `aufs/mnt/*`, of the lock file; and without the record (checked apart).
fn without_run_times(t: &Tree, s: &Summary, moves: &[(PathBuf, PathBuf)]) -> Tree {
    let fresh_rw: BTreeSet<PathBuf> = s
        .containers
        .iter()
        .filter(|c| !c.2)
        .map(|c| PathBuf::from(format!("aufs/diff/{}", c.0)))
        .collect();
    let changed: BTreeSet<PathBuf> = moves
        .iter()
        .flat_map(|(from, to)| [from.parent(), to.parent()])
        .flatten()
        .flat_map(Path::ancestors)
        .map(Path::to_path_buf)
        .chain(["aufs", "aufs/diff", "aufs/layers", "aufs/mnt", ".graph2aufs/lock"].map(PathBuf::from))
        .chain(fresh_rw)
        .collect();
    t.without([".graph2aufs/record.json"]).normalized(|p, e| {
        let registration = p.starts_with("aufs/layers") || p.starts_with("aufs/mnt");
        if changed.contains(p) || registration && p.components().count() == 3 {
            e.mtime_ns = 0;
        }
    })
}

/// The items a record names.
fn record_items(root: &Path) -> BTreeSet<String> {
    let path = root.join(".graph2aufs/record.json");
    let bytes = fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let v: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    v["items"]
        .as_object()
        .unwrap_or_else(|| panic!("{} has no items: {v}", path.display()))
        .keys()
        .cloned()
        .collect()
}

/// Every layer's data is whole in exactly one place, its old or its new one
/// (the other absent, or a Docker 1.8 symlink).
#[track_caller]
fn assert_nothing_lost(before: &Tree, now: &Tree, moves: &[(PathBuf, PathBuf)], when: &str) {
    for (from, to) in moves {
        let want = before.subtree(from);
        let (old, new) = (now.subtree(from), now.subtree(to));
        let whole = [&old, &new].iter().filter(|t| diff(&want, t).is_empty()).count();
        assert_eq!(
            whole,
            1,
            "{when}: the data of {} is whole in {whole} places (at {}: {} entries, at {}: {} entries)",
            from.display(),
            from.display(),
            old.len(),
            to.display(),
            new.len()
        );
        for other in [&old, &new] {
            let stub = other.is_empty() || other.len() == 1 && other.at("").kind == Kind::Symlink;
            assert!(
                diff(&want, other).is_empty() || stub,
                "{when}: a partial copy of {} ({} entries)",
                from.display(),
                other.len()
            );
        }
    }
}

#[test]
fn a_migrate_killed_at_any_step_loses_nothing_and_run_again_ends_as_an_uninterrupted_one() {
    if !require_root() {
        return;
    }
    let l = Legacy::generate(Space::tmpfs(), &small_root());
    let moves = moves(&l.summary, &l.before);
    let reference = l.exact_copy("uninterrupted");
    g2a_on("migrate", &reference, &[]).expect_code(1);
    let want = without_run_times(&snapshot(&reference), &l.summary, &moves);
    let want_record = record_items(&reference);
    let mut n = 0;
    loop {
        let root = l.copy(&format!("killed-{n}"));
        let killed = migrate_killed_after(&root, n);
        if killed.code != KILLED {
            // No n+1th change: this run went all the way.
            killed.expect_code(1);
        } else {
            let when = format!("killed before change {}", n + 1);
            assert_nothing_lost(&l.before, &snapshot(&root), &moves, &when);
            g2a_on("migrate", &root, &[]).expect_code(1);
        }
        let got = without_run_times(&snapshot(&root), &l.summary, &moves);
        assert_same(
            &want,
            &got,
            &format!("migrate killed after {n} changes, then run again"),
        );
        assert_eq!(
            record_items(&root),
            want_record,
            "the items recorded when killed after {n} changes"
        );
        fs::remove_dir_all(&root).expect("removing a finished copy");
        if killed.code != KILLED {
            break;
        }
        n += 1;
    }
    assert!(
        n >= 20,
        "a full run of this root takes {n} changes; the kill switch seems not to work"
    );
    loud(&format!(
        "crash test: a full migrate of the small root takes {n} changes"
    ));
}

// ---------------------------------------------------------------------------
// Idempotence
// ---------------------------------------------------------------------------

#[test]
fn a_second_migrate_changes_nothing_and_reports_every_good_item_registered() {
    if !require_root() {
        return;
    }
    let l = Legacy::generate(Space::tmpfs(), &small_root());
    g2a_on("migrate", &l.root, &[]).expect_code(1);
    let first = snapshot(&l.root);
    let (code, doc, r) = g2a_json("migrate", &l.root);
    assert_eq!(code, 1, "the quarantined items are still reported:\n{r}");
    assert_same(&first, &snapshot(&l.root), "ROOT after a second migrate");
    let s = &l.summary;
    let good = s
        .images
        .iter()
        .map(|id| ("image", id))
        .chain(s.containers.iter().map(|c| ("container", &c.0)));
    for (k, id) in good {
        assert_eq!(state(&doc, k, id), "registered", "{k} {id}");
        assert_eq!(item(&doc, k, id)["action"], "none", "{k} {id}");
    }
}

// ---------------------------------------------------------------------------
// Rollback
// ---------------------------------------------------------------------------

#[test]
fn rollback_after_migrate_gives_back_the_original_tree_exactly() {
    if !require_root() {
        return;
    }
    let l = Legacy::generate(Space::disk(), &broken_root());
    g2a_on("migrate", &l.root, &[]).expect_code(1);
    g2a_on("rollback", &l.root, &[]).expect_code(0);
    assert_same(&l.before, &snapshot(&l.root), "ROOT after migrate and rollback");
    l.assert_outside_unchanged();
}

#[test]
fn rollback_of_a_migrate_killed_at_any_step_gives_back_the_original_tree_exactly() {
    if !require_root() {
        return;
    }
    let l = Legacy::generate(Space::tmpfs(), &small_root());
    let mut n = 0;
    loop {
        let root = l.copy(&format!("killed-{n}"));
        let killed = migrate_killed_after(&root, n);
        let rollback = g2a_on("rollback", &root, &["--json"]);
        assert_eq!(
            rollback.code, 0,
            "rollback after migrate was killed after {n} changes:\n{rollback}"
        );
        assert_same(
            &l.before,
            &snapshot(&root),
            &format!("rollback of a migrate killed after {n} changes"),
        );
        fs::remove_dir_all(&root).expect("removing a finished copy");
        if killed.code != KILLED {
            killed.expect_code(1);
            break;
        }
        n += 1;
    }
    l.assert_outside_unchanged();
}

#[test]
fn rollback_refuses_layers_a_newer_daemon_built_on_and_rolls_back_the_rest() {
    if !require_root() {
        return;
    }
    let l = Legacy::generate(Space::tmpfs(), &small_plain_root());
    let s = &l.summary;
    g2a_on("migrate", &l.root, &[]).expect_code(0);
    // The deepest image: a newer daemon pulled an image on top of it.
    let top = s
        .images
        .iter()
        .max_by_key(|id| ancestors(s, id).len())
        .expect("images")
        .clone();
    let mut built_on = vec![top.clone()];
    built_on.extend(ancestors(s, &top));
    assert!(built_on.len() >= 3 && built_on.len() < s.images.len());
    let new = "f".repeat(64);
    let aufs = l.root.join("aufs");
    fs::create_dir(aufs.join("diff").join(&new)).unwrap();
    fs::write(aufs.join("diff").join(&new).join("pulled"), "a file of a newer image\n").unwrap();
    fs::create_dir(aufs.join("mnt").join(&new)).unwrap();
    fs::write(aufs.join("layers").join(&new), layers_file(&built_on)).unwrap();
    let after_new = snapshot(&l.root);

    let (code, doc, r) = g2a_json("rollback", &l.root);
    assert_eq!(code, 1, "refusals are problems:\n{r}");
    let refused: BTreeMap<String, String> = doc["refused"]
        .as_array()
        .expect("refused")
        .iter()
        .map(|n| {
            (
                n["path"].as_str().unwrap().to_string(),
                n["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: BTreeSet<String> = built_on.iter().map(|id| format!("image/{id}")).collect();
    assert_eq!(refused.keys().cloned().collect::<BTreeSet<_>>(), want, "refused:\n{r}");
    for (what, why) in &refused {
        assert!(
            why.contains(&new),
            "{what}: the reason {why:?} does not name the layer built on it"
        );
    }
    let now = snapshot(&l.root);
    for id in &s.images {
        let (legacy, native) = (format!("graph/{id}/layer"), format!("aufs/diff/{id}"));
        let (kept, gone) = if built_on.contains(id) {
            (&native, &legacy)
        } else {
            (&legacy, &native)
        };
        assert_same(
            &l.before.subtree(&legacy),
            &now.subtree(kept),
            &format!("image {id} at {kept}"),
        );
        assert!(!now.contains_key(Path::new(gone)), "image {id}: {gone} exists");
    }
    for (cid, _, started) in &s.containers {
        assert_same(
            &l.before.subtree(format!("containers/{cid}")),
            &now.subtree(format!("containers/{cid}")),
            &format!("container {cid}"),
        );
        for gone in [format!("aufs/diff/{cid}"), format!("aufs/diff/{cid}-init")] {
            assert!(
                !now.contains_key(Path::new(&gone)),
                "container {cid} (started: {started}): {gone} exists"
            );
        }
    }
    assert_eq!(now.at("repositories"), l.before.at("repositories"), "repositories");
    for p in [
        format!("aufs/diff/{new}"),
        format!("aufs/mnt/{new}"),
        format!("aufs/layers/{new}"),
    ] {
        assert_same(
            &after_new.subtree(&p),
            &now.subtree(&p),
            &format!("the newer daemon's {p}"),
        );
    }
}

// ---------------------------------------------------------------------------
// Verify
// ---------------------------------------------------------------------------

/// A small root without broken items, migrated.
fn migrated_plain() -> Legacy {
    let l = Legacy::generate(Space::tmpfs(), &small_plain_root());
    g2a_on("migrate", &l.root, &[]).expect_code(0);
    l
}

/// `verify --json`: it must fail, naming `path` with a reason containing `why`.
#[track_caller]
fn assert_verify_reports(root: &Path, path: &str, why: &str) {
    let (code, doc, r) = g2a_json("verify", root);
    assert_eq!(code, 1, "verify must fail:\n{r}");
    assert_eq!(doc["ok"], false, "{r}");
    let problems = doc["problems"].as_array().expect("problems");
    assert!(
        problems
            .iter()
            .any(|p| p["path"] == path && p["reason"].as_str().is_some_and(|r| r.contains(why))),
        "verify does not report {path} ({why}):\n{r}"
    );
}

#[test]
fn verify_accepts_a_fully_migrated_root_without_broken_items() {
    if !require_root() {
        return;
    }
    let l = migrated_plain();
    let (code, doc, r) = g2a_json("verify", &l.root);
    assert_eq!(code, 0, "{r}");
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["problems"], Value::Array(vec![]));
    assert_eq!(doc["layers"], registered_layers(&l.summary).len(), "{r}");
}

#[test]
fn verify_reports_quarantined_items() {
    if !require_root() {
        return;
    }
    let l = Legacy::generate(Space::tmpfs(), &small_root());
    g2a_on("migrate", &l.root, &[]).expect_code(1);
    for (k, name, _) in broken_items(&l.summary) {
        let dir = if k == "image" { "graph" } else { "containers" };
        assert_verify_reports(&l.root, &format!("{dir}/{name}"), "quarantined");
    }
}

#[test]
fn verify_reports_a_docker18_symlink_left_in_aufs_diff() {
    if !require_root() {
        return;
    }
    let l = migrated_plain();
    let id = &l.summary.images[0];
    let (diff, layer) = (
        l.root.join("aufs/diff").join(id),
        l.root.join("graph").join(id).join("layer"),
    );
    fs::rename(&diff, &layer).unwrap();
    std::os::unix::fs::symlink(&layer, &diff).unwrap();
    assert_verify_reports(&l.root, &format!("aufs/diff/{id}"), "symlink");
}

#[test]
fn verify_reports_a_layers_file_naming_a_missing_layer() {
    if !require_root() {
        return;
    }
    let l = migrated_plain();
    let id = &l.summary.images[0];
    fs::write(l.root.join("aufs/layers").join(id), "vanished-layer\n").unwrap();
    assert_verify_reports(&l.root, &format!("aufs/layers/{id}"), "vanished-layer");
}

#[test]
fn verify_reports_a_missing_mnt_dir() {
    if !require_root() {
        return;
    }
    let l = migrated_plain();
    let id = &l.summary.images[1];
    fs::remove_dir(l.root.join("aufs/mnt").join(id)).unwrap();
    assert_verify_reports(&l.root, &format!("aufs/mnt/{id}"), "missing");
}

#[test]
fn verify_reports_a_legacy_layer_left_behind() {
    if !require_root() {
        return;
    }
    let l = migrated_plain();
    let id = &l.summary.images[2];
    let layer = l.root.join("graph").join(id).join("layer");
    fs::create_dir(&layer).unwrap();
    fs::write(layer.join("stray"), "left behind\n").unwrap();
    assert_verify_reports(&l.root, &format!("graph/{id}"), &format!("graph/{id}/layer"));
}

// ---------------------------------------------------------------------------
// One graph2aufs per ROOT
// ---------------------------------------------------------------------------

/// Holds `ROOT/.graph2aufs/lock` as another graph2aufs would.
fn hold_lock(root: &Path) -> OwnedFd {
    fs::create_dir_all(root.join(".graph2aufs")).unwrap();
    let fd: OwnedFd = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join(".graph2aufs/lock"))
        .unwrap()
        .into();
    rustix::fs::flock(&fd, rustix::fs::FlockOperation::NonBlockingLockExclusive).expect("taking the lock");
    fd
}

#[test]
fn migrate_refuses_a_locked_root() {
    if !require_root() {
        return;
    }
    let l = Legacy::generate(Space::tmpfs(), &small_root());
    let lock = hold_lock(&l.root);
    let locked = snapshot(&l.root);
    let r = g2a_on("migrate", &l.root, &[]);
    r.expect_code(2);
    assert!(r.stderr.contains("locked"), "{r}");
    assert_same(&locked, &snapshot(&l.root), "a locked ROOT after migrate");
    drop(lock);
}

#[test]
fn rollback_refuses_a_locked_root() {
    if !require_root() {
        return;
    }
    let l = Legacy::generate(Space::tmpfs(), &small_root());
    g2a_on("migrate", &l.root, &[]).expect_code(1);
    let lock = hold_lock(&l.root);
    let locked = snapshot(&l.root);
    let r = g2a_on("rollback", &l.root, &[]);
    r.expect_code(2);
    assert!(r.stderr.contains("locked"), "{r}");
    assert_same(&locked, &snapshot(&l.root), "a locked ROOT after rollback");
    drop(lock);
}

#[test]
fn plan_of_a_missing_root_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let r = g2a_on("plan", &dir.path().join("no-such-root"), &[]);
    r.expect_code(2);
    assert!(r.stderr.contains("does not exist"), "{r}");
}

// ---------------------------------------------------------------------------
// JSON reports
// ---------------------------------------------------------------------------

/// The states of a JSON report: every item state, and `removed` (under a
/// live view).
fn report_states() -> BTreeSet<&'static str> {
    STATES.into_iter().chain([REMOVED]).collect()
}
const SOURCES: [&str; 6] = ["legacy", "fallback", "native", "quarantine", "empty", "none"];
const ACTIONS: [&str; 7] = [
    "move",
    "replace-symlink",
    "unquarantine",
    "create-empty-rw",
    "register",
    "quarantine",
    "none",
];

/// The documented shape of a `plan`, `migrate` or `status` report.
#[track_caller]
fn assert_report_shape(doc: &Value, root: &Path, what: &str) {
    let obj = doc.as_object().unwrap_or_else(|| panic!("{what}: not an object"));
    let keys: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
    let mut want = BTreeSet::from(["root", "items", "totals", "repositories", "notes"]);
    if what == "migrate" {
        want.insert("elapsed_s");
        assert!(doc["elapsed_s"].is_f64(), "{what}: elapsed_s");
    }
    assert_eq!(keys, want, "{what}: top-level keys");
    assert_eq!(doc["root"], root.display().to_string(), "{what}: root");
    let states = report_states();
    let items = doc["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: items is not an array"));
    for it in items {
        let o = it
            .as_object()
            .unwrap_or_else(|| panic!("{what}: an item is not an object: {it}"));
        for k in o.keys() {
            assert!(
                ["kind", "id", "state", "reason", "source", "action", "ours"].contains(&k.as_str()),
                "{what}: unknown key {k} in {it}"
            );
        }
        assert!(
            it["kind"] == "image" || it["kind"] == "container",
            "{what}: kind of {it}"
        );
        assert!(it["id"].is_string(), "{what}: id of {it}");
        let st = it["state"].as_str().unwrap_or_else(|| panic!("{what}: state of {it}"));
        assert!(states.contains(st), "{what}: state of {it}");
        match o.get("reason") {
            None => assert!(
                !["fallback", "quarantined", "failed"].contains(&st),
                "{what}: {st} without a reason: {it}"
            ),
            Some(r) => assert!(r.as_str().is_some_and(|r| !r.is_empty()), "{what}: reason of {it}"),
        }
        assert!(
            SOURCES.contains(&it["source"].as_str().unwrap_or("")),
            "{what}: source of {it}"
        );
        assert!(
            ACTIONS.contains(&it["action"].as_str().unwrap_or("")),
            "{what}: action of {it}"
        );
        assert!(it["ours"].is_boolean(), "{what}: ours of {it}");
    }
    let totals = doc["totals"].as_object().unwrap_or_else(|| panic!("{what}: totals"));
    assert_eq!(
        totals.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        states.clone(),
        "{what}: totals"
    );
    for st in states {
        let n = items.iter().filter(|i| i["state"] == st).count();
        assert_eq!(totals[st], n, "{what}: totals.{st}");
    }
    let action = doc["repositories"]["action"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: repositories.action"));
    assert!(
        ["absent", "rename", "done", "conflict"].contains(&action),
        "{what}: repositories {action}"
    );
    for n in doc["notes"].as_array().unwrap_or_else(|| panic!("{what}: notes")) {
        assert!(n["path"].is_string() && n["reason"].is_string(), "{what}: note {n}");
    }
}

#[test]
fn plan_migrate_and_status_json_have_the_documented_shape() {
    if !require_root() {
        return;
    }
    let l = Legacy::generate(Space::tmpfs(), &small_root());
    let total = l.summary.images.len() + l.summary.containers.len() + broken_items(&l.summary).len();
    let (_, plan, _) = g2a_json("plan", &l.root);
    assert_report_shape(&plan, &l.root, "plan");
    assert_eq!(plan["repositories"]["action"], "rename");
    let (_, migrate, _) = g2a_json("migrate", &l.root);
    assert_report_shape(&migrate, &l.root, "migrate");
    let (_, status, _) = g2a_json("status", &l.root);
    assert_report_shape(&status, &l.root, "status");
    assert_eq!(status["repositories"]["action"], "done");
    for (what, doc) in [("plan", &plan), ("migrate", &migrate), ("status", &status)] {
        assert_eq!(
            doc["items"].as_array().unwrap().len(),
            total,
            "{what}: one item per image and container"
        );
    }
}

#[test]
fn json_carries_names_that_are_not_utf8_percent_escaped() {
    if !require_root() {
        return;
    }
    let l = Legacy::generate(Space::tmpfs(), &small_plain_root());
    let name = OsStr::from_bytes(b"old\xffimage%");
    let dir = l.root.join("graph").join(name);
    fs::create_dir_all(dir.join("layer/etc")).unwrap();
    fs::write(dir.join("layer/etc/motd"), "hello\n").unwrap();
    fs::write(
        dir.join("json"),
        r#"{"id":"old image","created":"2013-06-01T00:00:00Z"}"#,
    )
    .unwrap();
    let layer_before = snapshot(&dir.join("layer"));
    let escaped = "old%FFimage%25";
    for cmd in ["plan", "migrate", "status"] {
        let (_, doc, r) = g2a_json(cmd, &l.root);
        let found = item(&doc, "image", escaped);
        assert_eq!(found["state"], "quarantined", "{cmd}:\n{r}");
        assert!(
            found["reason"].as_str().unwrap().contains("does not match"),
            "{cmd}:\n{r}"
        );
    }
    let q = l.root.join(".graph2aufs/quarantine/graph").join(name).join("layer");
    assert_same(
        &layer_before,
        &snapshot(&q),
        "the layer of the image with a non-UTF-8 name",
    );
}

// ---------------------------------------------------------------------------
// Plan writes nothing
// ---------------------------------------------------------------------------

#[test]
fn plan_writes_nothing_not_even_access_times() {
    if !require_root() {
        return;
    }
    let l = Legacy::generate(Space::tmpfs(), &small_root());
    let opts = SnapOpts {
        atime: true,
        ..Default::default()
    };
    let before = snapshot_with(&l.root, &opts);
    for extra in [&[][..], &["--json"], &["--all"]] {
        g2a_on("plan", &l.root, extra).expect_code(1);
        assert_same(
            &before,
            &snapshot_with(&l.root, &opts),
            &format!("ROOT after plan {extra:?}"),
        );
    }
}
