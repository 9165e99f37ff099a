//! The acceptance test of the read-write view (issue 4): a driver performs,
//! through the view mounted over ROOT and while the background migration
//! runs, the file operations of Docker's aufs driver and daemon (FORMATS.md
//! 2 and 4, as moby v1.8.1 writes them; see `live_driver/aufs.rs` and
//! `live_driver/daemon.rs`), and checks each result against the same
//! operation on the native layout: a copy of ROOT taken before mounting
//! and migrated offline by `graph2aufs migrate` (the reference).
//!
//! Every test generates a root of 60 images (a third left half-migrated by
//! Docker 1.8) and 20 containers, mounts the view with a pause before each
//! item of the background migration (`GRAPH2AUFS_ITEM_DELAY_MS`, several
//! seconds in all), acts while items are pending (each test checks that
//! some still were), then waits for the migration to finish, unmounts, and
//! checks the native layout ROOT is left with: every item registered, and
//! the whole tree equal to the reference's after the same operations; last,
//! that the finished view showed every entry with its attributes on the
//! disk (it is pure passthrough by then).
//!
//! - Init, and Docker's own Migrate finding nothing to do;
//! - Create, Exists, Remove of new layers; `graph.Delete` of a Docker 1.8
//!   image, a pending one and a migrated one; `rm` of pending containers;
//!   a new container;
//! - ApplyDiff (`graph.Register` of a pulled image) of a layer with every
//!   kind of entry;
//! - Diff, DiffSize and Changes of every layer, pending and migrated;
//! - json-file logs appended from threads, config.json rewritten
//!   atomically, with readers;
//! - the SQLite link graph with concurrent readers;
//! - exec of binaries and mmap of files in layers, also while they move.

mod common;
use common::*;

#[path = "live_driver/aufs.rs"]
mod aufs;
#[path = "live_driver/daemon.rs"]
mod daemon;
#[path = "live_driver/tarball.rs"]
mod tarball;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use graph2aufs::generate::{generate, Options, Summary};
use serde_json::Value;

use aufs::{expected_layers, Aufs};
use daemon::{hex_id, log_line, open_log, sqlite3, write_json_atomic, Daemon, LINKGRAPH_SCHEMA};

/// The pause before each item of the background migration: 80 items take
/// about 6.4 s, time for the driver to act while items are pending.
const ITEM_DELAY_MS: &str = "80";
/// The longest a test keeps its view mounted.
const BOUND: Duration = Duration::from_secs(90);
/// How long the background migration may take in all.
const FINISH: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Roots, views, and the native layout they end as
// ---------------------------------------------------------------------------

/// A generated legacy root and its reference: a copy taken before
/// mounting and migrated offline.
struct Fixture {
    dir: tempfile::TempDir,
    root: PathBuf,
    reference: PathBuf,
    summary: Summary,
}

impl Fixture {
    #[track_caller]
    fn new(seed: u64) -> Fixture {
        Fixture::prepared(seed, |_, _| {})
    }

    /// Like [`Fixture::new`], with `prepare` run on the legacy root before
    /// the reference is copied from it.
    #[track_caller]
    fn prepared(seed: u64, prepare: impl FnOnce(&Path, &Summary)) -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("g2a-driver.")
            .tempdir()
            .expect("a scratch directory in $TMPDIR");
        let root = dir.path().join("root");
        let opts = Options {
            seed,
            images: 60,
            max_chain: 5,
            containers: 20,
            entries_per_layer: 16,
            broken: false,
            docker18: true,
            debian_base: None,
        };
        let summary = generate(&root, &opts).unwrap_or_else(|e| panic!("generating {}: {e}", root.display()));
        prepare(&root, &summary);
        let reference = dir.path().join("reference");
        let mut cp = Command::new("cp");
        cp.arg("-a").arg(&root).arg(&reference);
        run_command(cp, RUN_TIMEOUT).expect_code(0);
        run(["migrate".as_ref(), reference.as_os_str()]).expect_code(0);
        Fixture {
            dir,
            root,
            reference,
            summary,
        }
    }

    /// The view's driver and daemon (first) and the reference's.
    fn daemons(&self) -> [Daemon; 2] {
        [Daemon::new(&self.root), Daemon::new(&self.reference)]
    }

    /// Images that are nobody's parent and run no container, in `ids` order.
    fn leaves<'a>(&self, ids: &'a [String]) -> Vec<&'a str> {
        let parents: BTreeSet<&str> = self.summary.parents.values().flatten().map(String::as_str).collect();
        let used: BTreeSet<&str> = self.summary.containers.iter().map(|c| c.1.as_str()).collect();
        ids.iter()
            .map(String::as_str)
            .filter(|id| self.summary.parents.contains_key(*id) && !parents.contains(id) && !used.contains(id))
            .collect()
    }

    fn started(&self, container: &str) -> bool {
        self.summary.containers.iter().any(|c| c.0 == container && c.2)
    }

    /// The chains of the generated images, plus `extra` (new layers).
    fn chains(&self, extra: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
        let mut chains = self.summary.parents.clone();
        for (id, parent) in extra {
            chains.insert(id.to_string(), parent.map(str::to_string));
        }
        chains
    }
}

/// A read-write view over ROOT, under the harness's guard.
struct View {
    root: PathBuf,
    mount: Mount,
}

impl View {
    #[track_caller]
    fn start(f: &Fixture) -> View {
        let mut cmd = Command::new(bin());
        cmd.arg("mount").arg(&f.root).arg(&f.root).arg("--foreground");
        cmd.env("GRAPH2AUFS_ITEM_DELAY_MS", ITEM_DELAY_MS)
            .env("RUST_LOG", "info");
        View {
            root: f.root.clone(),
            mount: Mount::start_command(cmd, &f.root, BOUND),
        }
    }

    /// `graph2aufs status ROOT --json` of the live view.
    #[track_caller]
    fn status(&self) -> Value {
        let r = run(["status".as_ref(), self.root.as_os_str(), "--json".as_ref()]);
        if serde_json::from_str::<Value>(&r.stdout).is_err() {
            // Show what the view serves as the status file: once it served
            // another file's content.
            let file = self.root.join(".graph2aufs/status.json");
            let ino = fs::symlink_metadata(&file).map(|m| m.ino());
            let head = fs::read(&file).map(|b| String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned());
            panic!("no status; .graph2aufs/status.json through the view: inode {ino:?}, begins {head:?}\n{r}");
        }
        let v = r.json();
        assert!(v["live"].is_object(), "the status of a live view has a live part:\n{r}");
        v
    }

    /// Every item's id and state, in the order of the plan (the order the
    /// background migration takes them in).
    #[track_caller]
    fn states(&self) -> Vec<(String, String)> {
        items(&self.status())
    }

    #[track_caller]
    fn state(&self, id: &str) -> String {
        let states = self.states();
        states
            .into_iter()
            .find(|(i, _)| i == id)
            .unwrap_or_else(|| panic!("no item {id} in the live status"))
            .1
    }

    /// Polls the status until `done` holds, for at most [`FINISH`].
    #[track_caller]
    fn wait_until(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + FINISH;
        loop {
            let status = self.status();
            if done(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {FINISH:?}; status: {status}\nlog:\n{}",
                self.mount.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// (id, state) of every item of a status document, in its order.
fn items(status: &Value) -> Vec<(String, String)> {
    status["items"]
        .as_array()
        .expect("a status lists items")
        .iter()
        .map(|i| {
            (
                i["id"].as_str().expect("an id").to_string(),
                i["state"].as_str().expect("a state").to_string(),
            )
        })
        .collect()
}

/// The ids of the items not migrated yet.
fn pending(states: &[(String, String)]) -> Vec<&str> {
    states
        .iter()
        .filter(|(_, s)| s != "registered")
        .map(|(i, _)| i.as_str())
        .collect()
}

/// A tree without what honestly depends on when things ran (directory
/// mtimes, the `layers/` files', the mtimes of what is at or under a
/// `written` path) and graph2aufs's own bookkeeping.
fn comparable(t: &Tree, written: &[PathBuf]) -> Tree {
    t.without([".graph2aufs/record.json", ".graph2aufs/status.json", ".graph2aufs/lock"])
        .normalized(|p, e| {
            if e.kind == Kind::Dir || p.starts_with("aufs/layers") || written.iter().any(|w| p.starts_with(w)) {
                e.mtime_ns = 0;
            }
        })
}

/// Waits for the background migration to finish, unmounts, and checks the
/// native layout left in ROOT: `status` lists the reference's items, every
/// one registered; `verify` says of ROOT what it says of the reference; the
/// whole tree equals the reference's (after the same operations), up to
/// [`comparable`]; and the finished view showed every entry with the
/// attributes it has on the disk.
#[track_caller]
fn finish(f: &Fixture, view: View, written: &[PathBuf]) {
    view.wait_until("the background migration finishes", |s| s["live"]["finished"] == true);
    // Every entry the native layout will have (the reference's), but
    // graph2aufs's own files.
    let paths: Vec<PathBuf> = aufs::walk(&f.reference)
        .expect("walking the reference")
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| !p.to_string_lossy().starts_with(".graph2aufs"))
        .collect();
    let seen = attributes(&f.root, &paths);
    let status = view.mount.unmount();
    assert!(status.success(), "the server exited with {status}");
    let native = attributes(&f.root, &paths);
    let offline = |root: &Path| items(&run(["status".as_ref(), root.as_os_str(), "--json".as_ref()]).json());
    let (got, want) = (offline(&f.root), offline(&f.reference));
    let not_registered: Vec<_> = got.iter().filter(|(_, s)| s != "registered").collect();
    assert!(
        not_registered.is_empty(),
        "items not registered after unmount: {not_registered:?}"
    );
    assert_eq!(got, want, "ROOT's items (a) and the reference's (b) after unmount");
    let verify = |root: &Path| {
        let r = run(["verify".as_ref(), root.as_os_str()]);
        (r.code, r.stdout.replace(root.to_str().expect("UTF-8 paths"), "ROOT"))
    };
    let verified = verify(&f.root);
    assert_eq!(
        verified,
        verify(&f.reference),
        "verify of ROOT (a) and of the reference (b)"
    );
    assert_eq!(verified.0, 0, "verify of ROOT: {}", verified.1);
    assert_same(
        &comparable(&snapshot(&f.reference), written),
        &comparable(&snapshot(&f.root), written),
        "the reference after the same operations (a) and ROOT after the live migration and unmount (b)",
    );
    // Last, once the rest is known to hold: when every item is migrated the
    // view is pure passthrough, it shows the disk's own attributes, also of
    // entries it showed while items were pending.
    let stale: Vec<String> = paths
        .iter()
        .filter(|p| seen[*p] != native[*p])
        .map(|p| {
            format!(
                "  {}: through the view {:?}\n  {:w$}  on the disk      {:?}",
                show(p),
                seen[p],
                "",
                native[p],
                w = show(p).len()
            )
        })
        .collect();
    assert!(
        stale.is_empty(),
        "{} entries' attributes through the finished view differ from the disk's (first 30):\n{}",
        stale.len(),
        stale[..stale.len().min(30)].join("\n")
    );
}

/// What `lstat` says of an entry, ctime included. Not the atime, which
/// reading changes, nor the inode number: a node the view made up for a
/// pending item keeps its number once the item is on the disk (the kernel
/// must see no change), and the view's root is node 1.
#[derive(Debug, PartialEq, Eq)]
struct Attrs {
    mode: u32,
    nlink: u64,
    owner: (u32, u32),
    rdev: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// [`Attrs`] of each of `paths` under `root`, by `lstat` of its path (no
/// directory is listed first: listing would refresh the kernel's cached
/// attributes of the entries, and hide what `stat` alone shows).
#[track_caller]
fn attributes(root: &Path, paths: &[PathBuf]) -> BTreeMap<PathBuf, Result<Attrs, String>> {
    paths
        .iter()
        .map(|p| {
            let full = if p.as_os_str().is_empty() {
                root.to_path_buf()
            } else {
                root.join(p)
            };
            let a = fs::symlink_metadata(&full).map_err(|e| e.to_string()).map(|m| Attrs {
                mode: m.mode(),
                nlink: m.nlink(),
                owner: (m.uid(), m.gid()),
                rdev: m.rdev(),
                size: m.size(),
                mtime: (m.mtime(), m.mtime_nsec()),
                ctime: (m.ctime(), m.ctime_nsec()),
            });
            (p.clone(), a)
        })
        .collect()
}

/// Runs `op` through the view, then on the reference; panics naming the
/// operation and the error (an errno in its text) if either fails.
#[track_caller]
fn on_both<T>(daemons: &[Daemon; 2], what: &str, op: impl Fn(&Daemon) -> io::Result<T>) -> T {
    let got = op(&daemons[0]).unwrap_or_else(|e| panic!("{what} through the view: {e}"));
    op(&daemons[1]).unwrap_or_else(|e| panic!("{what} on the native reference: {e}"));
    got
}

/// Asserts `path` does not exist (lstat fails with ENOENT).
#[track_caller]
fn assert_absent(path: &Path, what: &str) {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => panic!("{what}: lstat {}: {e} (expected ENOENT)", path.display()),
        Ok(m) => panic!("{what}: {} still exists ({:?})", path.display(), m.file_type()),
    }
}

/// Asserts `path` is an empty directory with permissions `mode`.
#[track_caller]
fn assert_empty_dir(path: &Path, mode: u32) {
    let meta = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
    assert!(
        meta.is_dir(),
        "{} is a directory ({:?})",
        path.display(),
        meta.file_type()
    );
    assert_eq!(meta.mode() & 0o7777, mode, "{}: mode", path.display());
    let names: Vec<_> = fs::read_dir(path)
        .unwrap_or_else(|e| panic!("readdir {}: {e}", path.display()))
        .map(|e| e.map(|e| e.file_name()))
        .collect();
    assert!(names.is_empty(), "{} is empty: {names:?}", path.display());
}

/// Sets a fixed mtime (and atime) on `path`, so the same file written at
/// different times on both sides compares equal.
#[track_caller]
fn set_mtime(path: &Path, secs: i64) {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let times = rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(rustix::fs::CWD, path, &times, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
        .unwrap_or_else(|e| panic!("utimensat {}: {e}", path.display()));
}

// ---------------------------------------------------------------------------
// Init, and the daemon's own Migrate
// ---------------------------------------------------------------------------

#[test]
fn init_finds_the_aufs_layout_and_dockers_own_migrate_has_nothing_to_do() {
    if !require_root_and_fuse("init_finds_the_aufs_layout_and_dockers_own_migrate_has_nothing_to_do") {
        return;
    }
    let f = Fixture::new(401);
    let view = View::start(&f);
    let [v, r] = &f.daemons();
    v.aufs
        .init()
        .unwrap_or_else(|e| panic!("Init (mkdir -p aufs/{{mnt,diff,layers}}) through the view: {e}"));
    for sub in ["mnt", "diff", "layers"] {
        assert!(f.root.join("aufs").join(sub).is_dir(), "aufs/{sub} is a directory");
    }
    let work = v
        .migrate_work()
        .unwrap_or_else(|e| panic!("Docker's Migrate through the view: {e}"));
    assert!(
        work.is_empty(),
        "Docker 1.8.1's Migrate would act on the view: {work:#?}"
    );
    let read = |d: &Daemon, rel: &str| fs::read(d.root().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"));
    assert_eq!(
        read(v, "repositories-aufs"),
        read(r, "repositories-aufs"),
        "repositories-aufs"
    );
    // What the daemon reads next: every image's metadata and chain, every
    // container's configuration and chains.
    for id in &f.summary.images {
        for rel in [format!("graph/{id}/json"), format!("aufs/layers/{id}")] {
            assert_eq!(read(v, &rel), read(r, &rel), "{rel} through the view and natively");
        }
        assert_empty_dir(&v.aufs.mnt_dir(id), 0o755);
        let diff = fs::symlink_metadata(v.aufs.diff_dir(id)).unwrap_or_else(|e| panic!("aufs/diff/{id}: {e}"));
        assert!(
            diff.is_dir(),
            "aufs/diff/{id} is a real directory, not {:?}",
            diff.file_type()
        );
    }
    for (id, _, _) in &f.summary.containers {
        for rel in [
            format!("containers/{id}/config.json"),
            format!("containers/{id}/hostconfig.json"),
            format!("aufs/layers/{id}"),
            format!("aufs/layers/{id}-init"),
        ] {
            assert_eq!(read(v, &rel), read(r, &rel), "{rel} through the view and natively");
        }
        for layer in [id.clone(), format!("{id}-init")] {
            assert!(v.aufs.exists(&layer), "Exists({layer})");
            assert!(v.aufs.diff_dir(&layer).is_dir(), "aufs/diff/{layer} is a directory");
        }
    }
    let states = view.states();
    assert!(
        !pending(&states).is_empty(),
        "the checks ran while items were pending: {states:?}"
    );
    finish(&f, view, &[]);
}

// ---------------------------------------------------------------------------
// Create, Exists, Remove
// ---------------------------------------------------------------------------

/// Asserts that nothing of layer `id` is left: not `Exists`, no
/// `diff`/`mnt` directory, no `-removing` leftover.
#[track_caller]
fn assert_layer_gone(d: &Daemon, id: &str, what: &str) {
    assert!(!d.aufs.exists(id), "{what}: Exists({id}) after Remove");
    for p in [d.aufs.diff_dir(id), d.aufs.mnt_dir(id)] {
        assert_absent(&p, what);
        assert_absent(&p.with_file_name(format!("{id}-removing")), what);
    }
}

#[test]
fn create_and_remove_layers_images_and_containers_while_items_migrate() {
    if !require_root_and_fuse("create_and_remove_layers_images_and_containers_while_items_migrate") {
        return;
    }
    let f = Fixture::new(402);
    let view = View::start(&f);
    let daemons = f.daemons();
    let v = &daemons[0];
    let order: Vec<String> = view.states().into_iter().map(|(id, _)| id).collect();
    let leaves = f.leaves(&order);
    let docker18_leaf = leaves
        .iter()
        .copied()
        .find(|id| f.summary.docker18.iter().any(|d| d == id));
    let late_leaf = *leaves.last().expect("a leaf image");
    let early_leaf = leaves
        .iter()
        .copied()
        .find(|id| Some(*id) != docker18_leaf && *id != late_leaf)
        .expect("a second leaf image");
    let parent = order
        .iter()
        .rev()
        .find(|id| f.summary.parents.contains_key(*id) && !leaves.contains(&id.as_str()))
        .expect("a late image with children");
    let containers: Vec<&str> = order
        .iter()
        .map(String::as_str)
        .filter(|id| f.summary.containers.iter().any(|c| c.0 == *id))
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

    // Docker 1.8's half-migrated leaf, first: those items migrate first.
    if let Some(id) = docker18_leaf {
        removed.push((id, view.state(id)));
        on_both(&daemons, &format!("graph.Delete({id}) of a Docker 1.8 image"), |d| {
            d.delete_image(id)
        });
        assert_layer_gone(v, id, "a deleted Docker 1.8 image");
        assert_absent(&f.root.join("graph").join(id), "a deleted Docker 1.8 image");
    }

    // New layers: a base, a child of a pending image, a grandchild.
    let (base, child, grandchild, gone) = (hex_id("base"), hex_id("child"), hex_id("grandchild"), hex_id("gone"));
    let new_layers = [
        (base.as_str(), None),
        (child.as_str(), Some(parent.as_str())),
        (grandchild.as_str(), Some(child.as_str())),
    ];
    let chains = f.chains(&new_layers);
    assert!(
        view.state(parent) != "registered",
        "the new layers' parent {parent} is pending when they are created"
    );
    for (id, p) in new_layers {
        assert!(!v.aufs.exists(id), "Exists({id}) before Create");
        on_both(&daemons, &format!("Create({id}, {p:?})"), |d| d.aufs.create(id, p));
        assert!(v.aufs.exists(id), "Exists({id}) after Create");
        let layers = fs::read_to_string(v.aufs.layers_file(id)).unwrap_or_else(|e| panic!("layers/{id}: {e}"));
        assert_eq!(
            layers,
            expected_layers(p, &chains),
            "layers/{id} after Create({id}, {p:?})"
        );
        assert_empty_dir(&v.aufs.diff_dir(id), 0o755);
        assert_empty_dir(&v.aufs.mnt_dir(id), 0o755);
    }

    // A new container on the pending image.
    let new_container = hex_id("new container");
    let config = format!("{{\"ID\":\"{new_container}\",\"Image\":\"{parent}\",\"Path\":\"/bin/sh\"}}");
    on_both(&daemons, "createRootfs of a new container", |d| {
        d.create_container(&new_container, parent, config.as_bytes())
    });
    let init = format!("{new_container}-init");
    let chains = f.chains(&[(&init, Some(parent.as_str())), (&new_container, Some(&init))]);
    for id in [&init, &new_container] {
        let layers = fs::read_to_string(v.aufs.layers_file(id)).unwrap_or_else(|e| panic!("layers/{id}: {e}"));
        let p = chains[id.as_str()].as_deref();
        assert_eq!(layers, expected_layers(p, &chains), "layers/{id} of a new container");
    }
    assert!(
        v.aufs.diff_dir(&init).join("etc/hosts").is_file(),
        "the new init layer has etc/hosts"
    );

    // A new layer with contents, then removed.
    on_both(&daemons, "Create, fill and Remove a new layer", |d| {
        d.aufs.create(&gone, Some(&child))?;
        let dir = d.aufs.diff_dir(&gone);
        fs::create_dir_all(dir.join("usr/bin"))?;
        fs::write(dir.join("usr/bin/tool"), b"a tool\n")?;
        fs::hard_link(dir.join("usr/bin/tool"), dir.join("usr/bin/tool2"))?;
        std::os::unix::fs::symlink("tool", dir.join("usr/bin/tool3"))?;
        fs::write(dir.join(".wh.removed"), b"")?;
        d.aufs.remove(&gone)
    });
    assert_layer_gone(v, &gone, "a new layer removed");

    // The late leaf image, still pending, and two pending containers.
    for (id, kind) in [
        (late_leaf, "image"),
        (started, "container"),
        (never_started, "never-started container"),
    ] {
        let state = view.state(id);
        assert!(state != "registered", "the {kind} {id} is pending before its removal");
        removed.push((id, state));
        if kind == "image" {
            on_both(&daemons, &format!("graph.Delete({id}) of a pending image"), |d| {
                d.delete_image(id)
            });
            assert_absent(&f.root.join("graph").join(id), "a deleted pending image");
            assert_layer_gone(v, id, "a deleted pending image");
        } else {
            on_both(&daemons, &format!("rm of the pending {kind} {id}"), |d| {
                d.remove_container(id)
            });
            assert_absent(&f.root.join("containers").join(id), "a removed container");
            assert_layer_gone(v, id, "a removed container");
            assert_layer_gone(v, &format!("{id}-init"), "a removed container's init layer");
        }
    }
    let states = view.states();
    assert!(
        !pending(&states).is_empty(),
        "the removals ran while items were pending"
    );

    // An early leaf, once migrated.
    view.wait_until(&format!("{early_leaf} migrates"), |s| {
        items(s).iter().any(|(i, st)| i == early_leaf && st == "registered")
    });
    removed.push((early_leaf, "registered".to_string()));
    on_both(
        &daemons,
        &format!("graph.Delete({early_leaf}) of a migrated image"),
        |d| d.delete_image(early_leaf),
    );
    assert_layer_gone(v, early_leaf, "a deleted migrated image");
    eprintln!("removed (id, state before): {removed:?}");

    // The new container's files are written at different times on each side.
    let written = [format!("containers/{new_container}"), format!("aufs/diff/{init}")].map(PathBuf::from);
    finish(&f, view, &written);
    // The native layout: nothing of the removed items anywhere, not even
    // in graph2aufs's quarantine; the new layers as created.
    let native = Daemon::new(&f.root);
    let everything = snapshot(&f.root);
    for (id, _) in &removed {
        assert_layer_gone(&native, id, "after unmount");
        assert_layer_gone(&native, &format!("{id}-init"), "after unmount");
        let left: Vec<_> = everything.keys().filter(|p| p.to_string_lossy().contains(id)).collect();
        assert!(
            left.is_empty(),
            "after unmount, entries of the removed {id} are left: {left:?}"
        );
    }
    for (id, p) in new_layers {
        assert_eq!(
            fs::read_to_string(native.aufs.layers_file(id)).expect("a new layer's layers file"),
            expected_layers(p, &f.chains(&new_layers)),
            "layers/{id} after unmount"
        );
        assert_empty_dir(&native.aufs.diff_dir(id), 0o755);
    }
}

// ---------------------------------------------------------------------------
// ApplyDiff
// ---------------------------------------------------------------------------

#[test]
fn apply_diff_through_the_view_extracts_every_kind_of_entry_as_natively() {
    if !require_root_and_fuse("apply_diff_through_the_view_extracts_every_kind_of_entry_as_natively") {
        return;
    }
    let f = Fixture::new(403);
    let source = f.dir.path().join("layer");
    tarball::build_layer(&source);
    let archive = f.dir.path().join("layer.tar");
    tarball::create(&source, &archive).unwrap_or_else(|e| panic!("making the layer tarball: {e}"));
    let view = View::start(&f);
    let states = view.states();
    let parent = states
        .iter()
        .rev()
        .find(|(id, s)| f.summary.parents.contains_key(id) && s != "registered")
        .map(|(id, _)| id.clone())
        .expect("a pending image");
    let [v, r] = &f.daemons();
    let id = hex_id("pulled image");
    // Docker pulls an image: graph.Register, whose ApplyDiff untars the
    // layer into aufs/diff/<id>.
    let size = v
        .register_image(&id, Some(&parent), &archive)
        .unwrap_or_else(|e| panic!("graph.Register (ApplyDiff) through the view: {e}"));
    let native_size = r
        .register_image(&id, Some(&parent), &archive)
        .unwrap_or_else(|e| panic!("graph.Register (ApplyDiff) natively: {e}"));
    let got = snapshot(&v.aufs.diff_dir(&id));
    assert_same(
        &snapshot(&r.aufs.diff_dir(&id)),
        &got,
        "the layer untarred natively (a) and through the view (b)",
    );
    assert_same(
        &snapshot(&source),
        &got,
        "the layer's source (a) and the layer untarred through the view (b)",
    );
    assert_eq!(
        size, native_size,
        "DiffSize after ApplyDiff through the view and natively"
    );
    let chains = f.chains(&[(&id, Some(&parent))]);
    assert_eq!(
        fs::read_to_string(v.aufs.layers_file(&id)).expect("layers/<id>"),
        expected_layers(Some(&parent), &chains),
        "layers/{id}"
    );
    // Diff and Changes of the new layer.
    let (vt, rt) = (f.dir.path().join("view.tar"), f.dir.path().join("native.tar"));
    v.aufs
        .diff(&id, &vt)
        .unwrap_or_else(|e| panic!("Diff through the view: {e}"));
    r.aufs.diff(&id, &rt).unwrap_or_else(|e| panic!("Diff natively: {e}"));
    let (vm, rm) = (tarball::members(&vt).unwrap(), tarball::members(&rt).unwrap());
    let differences = tarball::differences(&rm, &vm, false);
    assert!(
        differences.is_empty(),
        "Diff natively (a) and through the view (b):\n{}",
        differences.join("\n")
    );
    assert!(vm.iter().any(|m| m.path == b"./etc/.wh.shadow"), "Diff keeps whiteouts");
    assert!(
        vm.iter().any(|m| m.path == b"./var/cache/apt/.wh..wh..opq"),
        "Diff keeps nested opaque markers"
    );
    assert_eq!(
        v.aufs
            .changes(&id)
            .map_err(|e| e.replace(f.root.to_str().unwrap(), "ROOT")),
        r.aufs
            .changes(&id)
            .map_err(|e| e.replace(f.reference.to_str().unwrap(), "ROOT")),
        "Changes of the pulled image through the view and natively"
    );
    assert!(
        !pending(&view.states()).is_empty(),
        "the pull ran while items were pending"
    );
    let written = [
        PathBuf::from(format!("graph/{id}/json")),
        PathBuf::from(format!("graph/{id}/layersize")),
    ];
    finish(&f, view, &written);
    assert_same(
        &got,
        &snapshot(&Aufs::new(&f.root).diff_dir(&id)),
        "the layer through the view (a) and after unmount (b)",
    );
}

// ---------------------------------------------------------------------------
// Diff, DiffSize, Changes
// ---------------------------------------------------------------------------

#[test]
fn diff_diff_size_and_changes_through_the_view_equal_the_native_layout() {
    if !require_root_and_fuse("diff_diff_size_and_changes_through_the_view_equal_the_native_layout") {
        return;
    }
    let f = Fixture::new(404);
    let view = View::start(&f);
    // Some items migrated already, most still pending.
    let first = view.wait_until("20 items migrate", |s| {
        items(s).iter().filter(|(_, st)| st == "registered").count() >= 20
    });
    let [v, r] = &f.daemons();
    let (vt, rt) = (f.dir.path().join("view.tar"), f.dir.path().join("native.tar"));
    let hide = |e: String, root: &Path| e.replace(root.to_str().expect("UTF-8 paths"), "ROOT");
    // (layer, its item), latest in the plan first: those stay pending longest.
    let mut layers: Vec<(String, String)> = Vec::new();
    for (id, _) in items(&first).iter().rev() {
        layers.push((id.clone(), id.clone()));
        if f.summary.containers.iter().any(|c| c.0 == *id) {
            layers.push((format!("{id}-init"), id.clone()));
        }
    }
    let mut problems = Vec::new();
    let mut kinds = BTreeSet::new();
    let (mut pending_then, mut migrated_then) = (Vec::new(), Vec::new());
    let mut before = items(&first);
    // In groups, with the status before and after each: a layer whose item
    // is pending after its group was pending while it was compared.
    for group in layers.chunks(10) {
        for (layer, _) in group {
            let never_started = f.summary.containers.iter().any(|c| c.0 == *layer && !c.2);
            match (v.aufs.diff(layer, &vt), r.aufs.diff(layer, &rt)) {
                (Ok(()), Ok(())) => {
                    let (vm, rm) = (tarball::members(&vt).unwrap(), tarball::members(&rt).unwrap());
                    for d in tarball::differences(&rm, &vm, never_started) {
                        problems.push(format!("Diff({layer}): {d}"));
                    }
                }
                (got, want) => problems.push(format!("Diff({layer}): through the view {got:?}, natively {want:?}")),
            }
            match (v.aufs.diff_size(layer), r.aufs.diff_size(layer)) {
                (Ok(a), Ok(b)) if a == b => {}
                (got, want) => problems.push(format!(
                    "DiffSize({layer}): through the view {got:?}, natively {want:?}"
                )),
            }
            let got = v.aufs.changes(layer).map_err(|e| hide(e, &f.root));
            let want = r.aufs.changes(layer).map_err(|e| hide(e, &f.reference));
            if got != want {
                problems.push(format!(
                    "Changes({layer}):\n    through the view {got:?}\n    natively {want:?}"
                ));
            }
            kinds.extend(want.iter().flatten().map(|c| c.kind));
        }
        let after = view.states();
        let registered =
            |states: &[(String, String)], item: &str| states.iter().any(|(i, s)| i == item && s == "registered");
        for (layer, item) in group {
            if registered(&before, item) {
                migrated_then.push(layer.as_str());
            } else if !registered(&after, item) {
                pending_then.push(layer.as_str());
            }
        }
        before = after;
    }
    eprintln!(
        "{} layers compared: {} while pending, {} once migrated",
        layers.len(),
        pending_then.len(),
        migrated_then.len()
    );
    assert!(
        problems.is_empty(),
        "{} differences:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(!pending_then.is_empty(), "some layers were compared while pending");
    assert!(!migrated_then.is_empty(), "some layers were compared once migrated");
    // Not vacuous: the layers show every kind of change between them.
    assert_eq!(kinds, BTreeSet::from(['A', 'C', 'D']), "the kinds of change found");
    finish(&f, view, &[]);
}

// ---------------------------------------------------------------------------
// Container logs and configuration
// ---------------------------------------------------------------------------

#[test]
fn container_logs_and_config_writes_through_the_view_while_items_migrate() {
    if !require_root_and_fuse("container_logs_and_config_writes_through_the_view_while_items_migrate") {
        return;
    }
    const WRITERS: usize = 4;
    const LINES: usize = 200;
    const ROUNDS: usize = 30;
    let f = Fixture::new(405);
    let view = View::start(&f);
    let states = view.states();
    // The last containers of the plan (pending), a never-started one among them.
    let mut chosen: Vec<String> = states
        .iter()
        .rev()
        .filter(|(id, s)| f.summary.containers.iter().any(|c| c.0 == *id) && s != "registered")
        .map(|(id, _)| id.clone())
        .take(3)
        .collect();
    if chosen.iter().all(|c| f.started(c)) {
        let never = f
            .summary
            .containers
            .iter()
            .rev()
            .find(|c| !c.2)
            .expect("a never-started container");
        chosen[2] = never.0.clone();
    }
    let log_of = |root: &Path, id: &str| root.join("containers").join(id).join(format!("{id}-json.log"));
    let config_of = |root: &Path, id: &str| root.join("containers").join(id).join("config.json");
    let original: BTreeMap<String, Vec<u8>> = chosen
        .iter()
        .map(|id| (id.clone(), fs::read(log_of(&f.reference, id)).expect("a log")))
        .collect();
    let problems = Mutex::new(Vec::<String>::new());
    let done = AtomicBool::new(false);
    let (problems, done) = (&problems, &done);
    // The daemon rewrites a container's whole configuration as its state
    // changes: here the original with the process id of each "start".
    let configs: BTreeMap<String, Value> = chosen
        .iter()
        .map(|id| {
            let bytes = fs::read(config_of(&f.reference, id)).expect("a config.json");
            (id.clone(), serde_json::from_slice(&bytes).expect("a JSON config"))
        })
        .collect();
    let config_json = |id: &str, round: usize| {
        let mut v = configs[id].clone();
        v["State"]["Running"] = Value::Bool(true);
        v["State"]["Pid"] = Value::from(round);
        serde_json::to_string(&v).expect("JSON")
    };
    thread::scope(|s| {
        let mut writers = Vec::new();
        for id in &chosen {
            for w in 0..WRITERS {
                let path = log_of(&f.root, id);
                writers.push(s.spawn(move || {
                    let mut log = match open_log(&path) {
                        Ok(l) => l,
                        Err(e) => return problems.lock().unwrap().push(format!("{e}")),
                    };
                    for n in 0..LINES {
                        let line = log_line(&format!("writer {w} line {n}"), n);
                        match log.write(line.as_bytes()) {
                            Ok(k) if k == line.len() => {}
                            got => problems
                                .lock()
                                .unwrap()
                                .push(format!("append to {}: {got:?}", path.display())),
                        }
                    }
                }));
            }
            let path = config_of(&f.root, id);
            writers.push(s.spawn(move || {
                for round in 1..=ROUNDS {
                    if let Err(e) = write_json_atomic(&path, config_json(id, round).as_bytes(), 0o600) {
                        problems.lock().unwrap().push(format!("round {round}: {e}"));
                    }
                }
            }));
            // A reader of each file, as `docker logs` and `docker inspect`.
            let (log, config) = (log_of(&f.root, id), config_of(&f.root, id));
            s.spawn(move || {
                let mut last_round = 0;
                while !done.load(Ordering::SeqCst) {
                    match fs::read(&log) {
                        Ok(bytes) => {
                            let complete = &bytes[..bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)];
                            for line in complete.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                                if serde_json::from_slice::<Value>(line).is_err() {
                                    problems
                                        .lock()
                                        .unwrap()
                                        .push(format!("a torn log line: {}", String::from_utf8_lossy(line)));
                                }
                            }
                        }
                        Err(e) => problems.lock().unwrap().push(format!("reading {}: {e}", log.display())),
                    }
                    match fs::read(&config).map(|b| serde_json::from_slice::<Value>(&b)) {
                        Ok(Ok(v)) => {
                            let round = v["State"]["Pid"].as_u64().unwrap_or(0);
                            if round < last_round {
                                problems
                                    .lock()
                                    .unwrap()
                                    .push(format!("config.json went back from round {last_round} to {round}"));
                            }
                            last_round = round;
                        }
                        got => problems
                            .lock()
                            .unwrap()
                            .push(format!("reading {}: {got:?}", config.display())),
                    }
                }
            });
        }
        // The container's runtime writes into its rw layer meanwhile: the
        // first change to a pending container's layer migrates it.
        let rw = Aufs::new(&f.root).diff_dir(&chosen[0]);
        if let Err(e) = fs::create_dir_all(rw.join("run")).and_then(|()| fs::write(rw.join("run/g2a.pid"), b"4242\n")) {
            problems
                .lock()
                .unwrap()
                .push(format!("writing into the rw layer of {}: {e}", chosen[0]));
        }
        for w in writers {
            w.join().expect("a writer");
        }
        done.store(true, Ordering::SeqCst);
    });
    let problems = problems.lock().unwrap().clone();
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    let still_pending = pending(&view.states()).len();
    assert!(still_pending > 0, "the writes ran while items were pending");
    // Each log: what it had, then every writer's lines, whole and in order.
    let mut written = Vec::new();
    for id in &chosen {
        let bytes = fs::read(log_of(&f.root, id)).expect("the log through the view");
        let original = &original[id];
        assert!(bytes.starts_with(original), "the log of {id} keeps what it had");
        let text = std::str::from_utf8(&bytes[original.len()..]).expect("UTF-8 log lines");
        for w in 0..WRITERS {
            let mine: Vec<&str> = text
                .lines()
                .filter(|l| l.contains(&format!("\"writer {w} line ")))
                .collect();
            let want: Vec<String> = (0..LINES)
                .map(|n| log_line(&format!("writer {w} line {n}"), n).trim_end().to_string())
                .collect();
            assert_eq!(mine, want, "writer {w}'s lines in the log of {id}");
        }
        assert_eq!(
            text.lines().count(),
            WRITERS * LINES,
            "the log of {id} has only the lines written"
        );
        assert_eq!(
            fs::read_to_string(config_of(&f.root, id)).expect("config.json through the view"),
            config_json(id, ROUNDS),
            "config.json of {id} is the last one written"
        );
        let leftovers: Vec<_> = fs::read_dir(f.root.join("containers").join(id))
            .expect("the container's directory")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
            .map(|e| e.file_name())
            .collect();
        assert!(
            leftovers.is_empty(),
            "temporary files left in containers/{id}: {leftovers:?}"
        );
        // The reference gets the same contents.
        fs::write(log_of(&f.reference, id), &bytes).expect("the reference's log");
        write_json_atomic(&config_of(&f.reference, id), config_json(id, ROUNDS).as_bytes(), 0o600)
            .expect("the reference's config");
        for rel in [
            format!("containers/{id}/{id}-json.log"),
            format!("containers/{id}/config.json"),
        ] {
            written.push(PathBuf::from(rel));
        }
    }
    let rw = Aufs::new(&f.reference).diff_dir(&chosen[0]);
    fs::create_dir_all(rw.join("run"))
        .and_then(|()| fs::write(rw.join("run/g2a.pid"), b"4242\n"))
        .expect("the reference's rw");
    written.push(PathBuf::from(format!("aufs/diff/{}/run/g2a.pid", chosen[0])));
    let logs: Vec<Vec<u8>> = chosen.iter().map(|id| fs::read(log_of(&f.root, id)).unwrap()).collect();
    finish(&f, view, &written);
    for (id, bytes) in chosen.iter().zip(logs) {
        assert_eq!(
            fs::read(log_of(&f.root, id)).expect("the native log"),
            bytes,
            "the log of {id} after unmount"
        );
        assert_eq!(
            fs::read_to_string(config_of(&f.root, id)).unwrap(),
            config_json(id, ROUNDS),
            "config.json after unmount"
        );
    }
}

// ---------------------------------------------------------------------------
// The link graph (SQLite)
// ---------------------------------------------------------------------------

#[test]
fn sqlite_link_graph_under_root_with_concurrent_readers_while_items_migrate() {
    if !require_root_and_fuse("sqlite_link_graph_under_root_with_concurrent_readers_while_items_migrate") {
        return;
    }
    const TRANSACTIONS: usize = 20;
    const PER: usize = 50;
    let f = Fixture::new(406);
    let view = View::start(&f);
    let db = f.root.join("linkgraph.db");
    let r = sqlite3(&db, &[LINKGRAPH_SCHEMA]);
    assert_eq!(r.code, 0, "creating the link graph through the view:\n{r}");
    let problems = Mutex::new(Vec::<String>::new());
    let done = AtomicBool::new(false);
    let reads = AtomicUsize::new(0);
    let (problems, done, reads) = (&problems, &done, &reads);
    thread::scope(|s| {
        for reader in 0..2 {
            let db = &db;
            s.spawn(move || {
                let mut last = 0;
                let mut n = 0;
                while !done.load(Ordering::SeqCst) {
                    n += 1;
                    let r = sqlite3(
                        db,
                        &["SELECT (SELECT count(*) FROM entity) || ' ' || (SELECT count(*) FROM edge);"],
                    );
                    let counts: Vec<usize> = r.stdout.split_whitespace().filter_map(|w| w.parse().ok()).collect();
                    match counts[..] {
                        [e, g] if r.code == 0 && e == g && (e - 1) % PER == 0 && e >= last => last = e,
                        _ => problems
                            .lock()
                            .unwrap()
                            .push(format!("reader {reader}: a partial transaction or an error:\n{r}")),
                    }
                    if n % 5 == 0 {
                        let r = sqlite3(db, &["PRAGMA integrity_check;"]);
                        if r.code != 0 || r.stdout.trim() != "ok" {
                            problems
                                .lock()
                                .unwrap()
                                .push(format!("reader {reader}: integrity_check:\n{r}"));
                        }
                    }
                    reads.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        for t in 0..TRANSACTIONS {
            let mut sql = String::from("BEGIN;\n");
            for k in 0..PER {
                let id = hex_id(&format!("entity {t} {k}"));
                sql.push_str(&format!(
                    "INSERT INTO entity (id) VALUES ('{id}');\nINSERT INTO edge (entity_id, parent_id, name) VALUES ('{id}', '0', '/c{t}-{k}');\n"
                ));
            }
            sql.push_str("COMMIT;\n");
            let r = sqlite3(&db, &[&sql]);
            if r.code != 0 {
                problems.lock().unwrap().push(format!("transaction {t}:\n{r}"));
            }
        }
        done.store(true, Ordering::SeqCst);
    });
    let problems = problems.lock().unwrap().clone();
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(
        reads.load(Ordering::SeqCst) > 0,
        "the readers read while the writer wrote"
    );
    assert!(
        !pending(&view.states()).is_empty(),
        "the transactions ran while items were pending"
    );
    let check = |db: &Path, what: &str| -> String {
        let r = sqlite3(
            db,
            &[
                "PRAGMA integrity_check;",
                "PRAGMA foreign_key_check;",
                "SELECT count(*) FROM entity;",
            ],
        );
        assert_eq!(
            (r.code, r.stdout.trim()),
            (0, format!("ok\n{}", TRANSACTIONS * PER + 1).as_str()),
            "{what}:\n{r}"
        );
        let dump = sqlite3(db, &[".dump"]);
        assert_eq!(dump.code, 0, "{what}: .dump\n{dump}");
        dump.stdout
    };
    let dump = check(&db, "the link graph through the view");
    assert_absent(
        &f.root.join("linkgraph.db-journal"),
        "the rollback journal after the last commit",
    );
    fs::copy(&db, f.reference.join("linkgraph.db")).expect("the reference's link graph");
    finish(&f, view, &[PathBuf::from("linkgraph.db")]);
    assert_eq!(
        check(&f.root.join("linkgraph.db"), "the link graph after unmount"),
        dump,
        "the dump after unmount"
    );
}

// ---------------------------------------------------------------------------
// exec and mmap
// ---------------------------------------------------------------------------

/// A file mapped whole (read-only, or shared read-write), unmapped on drop.
struct Mapping {
    addr: *mut libc::c_void,
    len: usize,
}

impl Mapping {
    fn new(file: &fs::File, len: usize, writable: bool) -> io::Result<Mapping> {
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a fresh mapping of an open file; nothing else aliases it.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(file),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { addr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` bytes long and lives as long as self.
        unsafe { std::slice::from_raw_parts(self.addr as *const u8, self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.addr as *mut u8, self.len) }
    }

    fn sync(&self) -> io::Result<()> {
        // SAFETY: the whole range of a live mapping.
        if unsafe { libc::msync(self.addr, self.len, libc::MS_SYNC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped.
        unsafe { libc::munmap(self.addr, self.len) };
    }
}

// SAFETY: the mapping is plain memory; readers only read it.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

/// Runs a binary and waits for it; retries ETXTBSY, which a binary just
/// written can give while another thread's fork still holds it open.
fn run_binary(path: &Path, args: &[&str]) -> io::Result<ExitStatus> {
    let mut tries = 0;
    loop {
        match Command::new(path).args(args).status() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 100 => {
                tries += 1;
                thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

const PLANTED: [(&str, &str); 2] = [
    ("usr/local/bin/g2a-true", "/bin/true"),
    ("usr/local/bin/g2a-sleep", "/bin/sleep"),
];
const MAPPED: &str = "usr/local/share/g2a-mapped.bin";

fn mapped_content() -> Vec<u8> {
    (0..(1usize << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// The deepest image: the background migration takes it among the last.
fn deepest(summary: &Summary) -> String {
    let depth = |id: &str| {
        let mut n = 0;
        let mut next = Some(id.to_string());
        while let Some(i) = next {
            n += 1;
            next = summary.parents.get(&i).cloned().flatten();
        }
        n
    };
    summary
        .images
        .iter()
        .max_by_key(|id| depth(id))
        .expect("an image")
        .clone()
}

#[test]
fn binaries_under_root_execute_and_files_map_through_the_view_while_their_layers_move() {
    if !require_root_and_fuse("binaries_under_root_execute_and_files_map_through_the_view_while_their_layers_move") {
        return;
    }
    // Binaries and a file to map, in the legacy layer of an image that
    // migrates among the last.
    let f = Fixture::prepared(407, |root, summary| {
        let layer = root.join("graph").join(deepest(summary)).join("layer");
        for (rel, from) in PLANTED {
            fs::create_dir_all(layer.join(rel).parent().unwrap()).expect("a directory in the layer");
            fs::copy(from, layer.join(rel)).expect("a binary in the layer");
        }
        fs::create_dir_all(layer.join(MAPPED).parent().unwrap()).expect("a directory in the layer");
        fs::write(layer.join(MAPPED), mapped_content()).expect("a file to map");
    });
    let moving = deepest(&f.summary);
    let view = View::start(&f);
    let daemons = f.daemons();
    let v = &daemons[0];
    assert!(view.state(&moving) != "registered", "{moving} is pending at first");
    let layer = v.aufs.diff_dir(&moving);

    // A binary copied through the view into a pending container's rw layer
    // (which migrates it), made executable, run.
    let container = view
        .states()
        .into_iter()
        .rev()
        .find(|(id, s)| f.summary.containers.iter().any(|c| c.0 == *id) && s != "registered")
        .map(|(id, _)| id)
        .expect("a pending container");
    let copied = "usr/local/bin/g2a-copied-true";
    on_both(&daemons, "copying /bin/true into a container's rw layer", |d| {
        let to = d.aufs.diff_dir(&container).join(copied);
        fs::create_dir_all(to.parent().unwrap())?;
        fs::copy("/bin/true", &to)?;
        fs::set_permissions(&to, fs::Permissions::from_mode(0o755))?;
        set_mtime(&to, 1_400_000_000);
        Ok(())
    });
    let status = run_binary(&v.aufs.diff_dir(&container).join(copied), &[])
        .unwrap_or_else(|e| panic!("exec of a binary copied through the view: {e}"));
    assert!(status.success(), "a binary copied through the view runs: {status}");

    // Binaries of the pending image run, and its file stays mapped, while
    // the background migration moves the layer.
    let mut sleeper = Command::new(layer.join(PLANTED[1].0))
        .arg("2")
        .spawn()
        .unwrap_or_else(|e| panic!("exec of {} through the view: {e}", PLANTED[1].0));
    let want = mapped_content();
    let file = fs::File::open(layer.join(MAPPED)).unwrap_or_else(|e| panic!("opening {MAPPED} through the view: {e}"));
    let held =
        Mapping::new(&file, want.len(), false).unwrap_or_else(|e| panic!("mmap of {MAPPED} through the view: {e}"));
    assert!(held.bytes() == want, "{MAPPED} mapped through the view has its content");
    let (stop, runs, maps) = (AtomicBool::new(false), AtomicUsize::new(0), AtomicUsize::new(0));
    let problems = Mutex::new(Vec::<String>::new());
    let (runs_before_move, maps_before_move) = thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                match run_binary(&layer.join(PLANTED[0].0), &[]) {
                    Ok(st) if st.success() => {}
                    got => problems
                        .lock()
                        .unwrap()
                        .push(format!("exec of {} through the view: {got:?}", PLANTED[0].0)),
                }
                runs.fetch_add(1, Ordering::SeqCst);
            }
        });
        s.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                let mapped = fs::File::open(layer.join(MAPPED)).and_then(|f| Mapping::new(&f, want.len(), false));
                match mapped {
                    Ok(m) if m.bytes() == want && held.bytes() == want => {}
                    Ok(_) => problems
                        .lock()
                        .unwrap()
                        .push(format!("{MAPPED} mapped through the view has other bytes")),
                    Err(e) => problems
                        .lock()
                        .unwrap()
                        .push(format!("mmap of {MAPPED} through the view: {e}")),
                }
                maps.fetch_add(1, Ordering::SeqCst);
            }
        });
        view.wait_until(&format!("{moving} migrates"), |st| {
            items(st).iter().any(|(i, s)| *i == moving && s == "registered")
        });
        let before = (runs.load(Ordering::SeqCst), maps.load(Ordering::SeqCst));
        let target = (before.0 + 5, before.1 + 5);
        while runs.load(Ordering::SeqCst) < target.0 || maps.load(Ordering::SeqCst) < target.1 {
            thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::SeqCst);
        before
    });
    let problems = problems.into_inner().unwrap();
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(
        runs_before_move > 0 && maps_before_move > 0,
        "binaries ran and the file was mapped before the move"
    );
    let status = sleeper.wait().expect("waiting for the sleeper");
    assert!(
        status.success(),
        "a binary running from the layer while it moved exits 0: {status}"
    );
    assert!(
        held.bytes() == want,
        "the mapping held across the move still has the file's content"
    );
    drop(held);
    drop(file);

    // A new layer: a binary copied in and run, a file written through a
    // shared writable mapping.
    let x = hex_id("exec layer");
    let data: Vec<u8> = (0..(256usize << 10)).map(|i| (i % 251) as u8).collect();
    on_both(&daemons, "Create, copy /bin/true, write a mapped file", |d| {
        d.aufs.create(&x, Some(&moving))?;
        let dir = d.aufs.diff_dir(&x);
        fs::create_dir(dir.join("bin"))?;
        fs::copy("/bin/true", dir.join("bin/true"))?;
        fs::set_permissions(dir.join("bin/true"), fs::Permissions::from_mode(0o755))?;
        set_mtime(&dir.join("bin/true"), 1_400_000_000);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.join("data.bin"))?;
        file.set_len(data.len() as u64)?;
        let mut m = Mapping::new(&file, data.len(), true)?;
        m.bytes_mut().copy_from_slice(&data);
        m.sync()?;
        drop(m);
        drop(file);
        set_mtime(&dir.join("data.bin"), 1_400_000_000);
        Ok(())
    });
    let dir = v.aufs.diff_dir(&x);
    let status =
        run_binary(&dir.join("bin/true"), &[]).unwrap_or_else(|e| panic!("exec of bin/true in a new layer: {e}"));
    assert!(
        status.success(),
        "bin/true copied into a new layer runs through the view: {status}"
    );
    let mut back = Vec::new();
    fs::File::open(dir.join("data.bin"))
        .and_then(|mut f| f.read_to_end(&mut back))
        .expect("reading the mapped file back");
    assert!(back == data, "a file written through a shared mapping reads back");
    finish(&f, view, &[]);
}
