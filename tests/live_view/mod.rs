//! Generated legacy roots under a read-write view, and the native layout
//! they end as: shared by the tests that act through the view while the
//! background migration runs (`live_daemon.rs`, `docker_driver.rs`).
//!
//! A [`Fixture`] is a generated root and its reference, a copy taken before
//! mounting and migrated offline by `graph2aufs migrate`; a [`View`] is the
//! read-write view mounted over the root with a pause before each item of
//! the background migration; [`finish`] waits for it to end, unmounts, and
//! checks that the root is left as the reference after the same operations.

// Each test crate uses only part of this module.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use g2a_genroot::{generate, Options, Summary};
use serde_json::Value;

use crate::common::*;

/// A generated legacy root and its reference: a copy taken before
/// mounting and migrated offline.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub reference: PathBuf,
    pub summary: Summary,
}

impl Fixture {
    /// A root generated with `opts`, with `prepare` run on it before the
    /// reference is copied from it.
    #[track_caller]
    pub fn prepared(opts: &Options, prepare: impl FnOnce(&Path, &Summary)) -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("g2a-live.")
            .tempdir()
            .expect("a scratch directory in $TMPDIR");
        let root = dir.path().join("root");
        let summary = generate(&root, opts).unwrap_or_else(|e| panic!("generating {}: {e}", root.display()));
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

    /// Images that are nobody's parent and run no container, in `ids` order.
    pub fn leaves<'a>(&self, ids: &'a [String]) -> Vec<&'a str> {
        let parents: BTreeSet<&str> = self.summary.parents.values().flatten().map(String::as_str).collect();
        let used: BTreeSet<&str> = self.summary.containers.iter().map(|c| c.1.as_str()).collect();
        ids.iter()
            .map(String::as_str)
            .filter(|id| self.summary.parents.contains_key(*id) && !parents.contains(id) && !used.contains(id))
            .collect()
    }

    pub fn is_container(&self, id: &str) -> bool {
        self.summary.containers.iter().any(|c| c.0 == id)
    }

    pub fn started(&self, container: &str) -> bool {
        self.summary.containers.iter().any(|c| c.0 == container && c.2)
    }

    /// The parent of every layer of the generated items (an image's parent,
    /// a container's init layer, the init layer's image), plus `extra`.
    pub fn chains(&self, extra: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
        let mut chains = self.summary.parents.clone();
        for (id, image, _) in &self.summary.containers {
            let init = format!("{id}-init");
            chains.insert(id.clone(), Some(init.clone()));
            chains.insert(init, Some(image.clone()));
        }
        for (id, parent) in extra {
            chains.insert(id.to_string(), parent.map(str::to_string));
        }
        chains
    }
}

/// A read-write view over ROOT, under the harness's guard.
pub struct View {
    pub root: PathBuf,
    pub mount: Mount,
}

impl View {
    /// Mounts the view over `f.root`, pausing `item_delay_ms` before each
    /// item of the background migration; the mount lives at most `bound`.
    #[track_caller]
    pub fn start(f: &Fixture, item_delay_ms: u64, bound: Duration) -> View {
        View::start_with(f, item_delay_ms, bound, &[])
    }

    /// Like [`View::start`], with `extra` arguments to `mount`.
    #[track_caller]
    pub fn start_with(f: &Fixture, item_delay_ms: u64, bound: Duration, extra: &[&str]) -> View {
        let mut cmd = Command::new(bin());
        cmd.arg("mount")
            .arg(&f.root)
            .arg(&f.root)
            .arg("--foreground")
            .args(extra);
        cmd.env("GRAPH2AUFS_ITEM_DELAY_MS", item_delay_ms.to_string())
            .env("RUST_LOG", "info");
        View {
            root: f.root.clone(),
            mount: Mount::start_command(cmd, &f.root, bound),
        }
    }

    /// `graph2aufs status ROOT --json` of the live view.
    #[track_caller]
    pub fn status(&self) -> Value {
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
    pub fn states(&self) -> Vec<(String, String)> {
        items(&self.status())
    }

    #[track_caller]
    pub fn state(&self, id: &str) -> String {
        let states = self.states();
        states
            .into_iter()
            .find(|(i, _)| i == id)
            .unwrap_or_else(|| panic!("no item {id} in the live status"))
            .1
    }

    /// Polls the status until `done` holds, for at most `within`.
    #[track_caller]
    pub fn wait_until(&self, what: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let status = self.status();
            if done(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {within:?}; status: {status}\nlog:\n{}",
                self.mount.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (at most `within`) until `id` is registered.
    #[track_caller]
    pub fn wait_registered(&self, id: &str, within: Duration) {
        self.wait_until(&format!("{id} migrates"), within, |s| {
            items(s).iter().any(|(i, st)| i == id && st == "registered")
        });
    }
}

/// (id, state) of every item of a status document, in its order.
pub fn items(status: &Value) -> Vec<(String, String)> {
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
pub fn pending(states: &[(String, String)]) -> Vec<&str> {
    states
        .iter()
        .filter(|(_, s)| s != "registered")
        .map(|(i, _)| i.as_str())
        .collect()
}

/// True if `item` is registered in `states`.
pub fn registered(states: &[(String, String)], item: &str) -> bool {
    states.iter().any(|(i, s)| i == item && s == "registered")
}

/// A tree without what honestly depends on when things ran (directory
/// mtimes, the `layers/` files', the mtimes of what is at or under a
/// `written` path) and graph2aufs's own bookkeeping.
pub fn comparable(t: &Tree, written: &[PathBuf]) -> Tree {
    t.without([".graph2aufs/record.json", ".graph2aufs/status.json", ".graph2aufs/lock"])
        .normalized(|p, e| {
            if e.kind == Kind::Dir || p.starts_with("aufs/layers") || written.iter().any(|w| p.starts_with(w)) {
                e.mtime_ns = 0;
            }
        })
}

/// Waits (at most `within`) for the background migration to finish,
/// unmounts, and checks the native layout left in ROOT: `status` lists the
/// reference's items, every one registered; `verify` says of ROOT what it
/// says of the reference; the whole tree equals the reference's (after the
/// same operations), up to [`comparable`]; and the finished view showed
/// every entry with the attributes it has on the disk.
#[track_caller]
pub fn finish(f: &Fixture, view: View, within: Duration, written: &[PathBuf]) {
    view.wait_until("the background migration finishes", within, |s| {
        s["live"]["finished"] == true
    });
    let reference = snapshot(&f.reference);
    // Every entry the native layout will have (the reference's), but
    // graph2aufs's own files.
    let paths: Vec<PathBuf> = reference
        .keys()
        .filter(|p| !p.to_string_lossy().starts_with(".graph2aufs"))
        .cloned()
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
        &comparable(&reference, written),
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
pub struct Attrs {
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
pub fn attributes(root: &Path, paths: &[PathBuf]) -> BTreeMap<PathBuf, Result<Attrs, String>> {
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

/// Asserts `path` does not exist (lstat fails with ENOENT).
#[track_caller]
pub fn assert_absent(path: &Path, what: &str) {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => panic!("{what}: lstat {}: {e} (expected ENOENT)", path.display()),
        Ok(m) => panic!("{what}: {} still exists ({:?})", path.display(), m.file_type()),
    }
}

/// Asserts `path` is an empty directory with permissions `mode`.
#[track_caller]
pub fn assert_empty_dir(path: &Path, mode: u32) {
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

/// A 64-hex id derived from `seed`, the same on every run (Docker draws
/// random ones; the reference must get the same names).
pub fn hex_id(seed: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(seed.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
