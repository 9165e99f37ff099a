//! The shared fixture of the view's tests: a generated legacy root with
//! broken items, Docker 1.8 leftovers and containers, and small helpers.

// Each test crate uses part of it.
#![allow(dead_code)]

use super::common::*;

use std::collections::{BTreeSet, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use g2a_genroot::{generate, BrokenKind, Options, Summary};
use sha2::{Digest, Sha256};

/// How long one mount of these tests may live before its watchdog fires.
pub const BOUND: Duration = Duration::from_secs(60);

/// A generated legacy root in a scratch directory of its own, private to the
/// test (its access times are checked: no other process may read it).
pub struct Fixture {
    pub dir: PrivateDir,
    pub root: PathBuf,
    pub summary: Summary,
}

impl Fixture {
    /// A small root with one broken item of each kind, images half-migrated by
    /// Docker 1.8, and four containers, one of which never ran.
    #[track_caller]
    pub fn new(seed: u64) -> Fixture {
        let dir = PrivateDir::new("g2a-view-ro.");
        let root = dir.path().join("root");
        let opts = Options {
            seed,
            images: 6,
            max_chain: 4,
            containers: 4,
            entries_per_layer: 10,
            broken: true,
            docker18: true,
            debian_base: None,
        };
        let summary = generate(&root, &opts).unwrap_or_else(|e| panic!("generating {}: {e}", root.display()));
        assert!(!summary.docker18.is_empty(), "the fixture has Docker 1.8 leftovers");
        assert!(
            summary.containers.iter().any(|c| c.2) && summary.containers.iter().any(|c| !c.2),
            "the fixture has started and never-started containers: {:?}",
            summary.containers
        );
        Fixture { dir, root, summary }
    }

    /// A new empty directory beside ROOT.
    #[track_caller]
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        fs::create_dir(&p).unwrap_or_else(|e| panic!("cannot create {}: {e}", p.display()));
        p
    }

    pub fn showcase(&self) -> &str {
        self.summary
            .landmarks
            .showcase
            .as_deref()
            .expect("the fixture has a showcase image")
    }

    pub fn is_good_image(&self, id: &OsStr) -> bool {
        self.summary.images.iter().any(|i| OsStr::new(i) == id)
    }

    pub fn is_started_container(&self, id: &OsStr) -> bool {
        self.summary
            .containers
            .iter()
            .any(|(c, _, started)| *started && OsStr::new(c) == id)
    }

    pub fn never_started(&self) -> Vec<&str> {
        self.summary
            .containers
            .iter()
            .filter(|c| !c.2)
            .map(|c| c.0.as_str())
            .collect()
    }

    pub fn broken(&self, kind: BrokenKind) -> &str {
        let (id, _) = self
            .summary
            .broken
            .iter()
            .find(|(_, k)| *k == kind)
            .expect("one item of each kind");
        id
    }

    /// A copy of ROOT (`cp -a`, checked entry by entry), migrated offline.
    #[track_caller]
    pub fn migrated_copy(&self) -> PathBuf {
        let copy = self.dir.path().join("migrated");
        let mut cp = Command::new("cp");
        cp.arg("-a").arg(&self.root).arg(&copy);
        let r = run_command(cp, RUN_TIMEOUT);
        assert_eq!(r.code, 0, "copying ROOT:\n{r}");
        assert_same(&snapshot(&self.root), &snapshot(&copy), "ROOT and its cp -a copy");
        // 1: the broken items are quarantined and reported.
        run([OsStr::new("migrate"), copy.as_os_str()]).expect_code(1);
        copy
    }

    /// The directories whose mtime `migrate` changes or sets: ROOT (the tags
    /// renamed), the aufs folders, each item's legacy directory (its data moved
    /// out), the empty rw layer of a container that never ran, and graph2aufs's
    /// own directories. Read from the disk, so call it before covering ROOT.
    pub fn dirs_migration_touches(&self) -> HashSet<PathBuf> {
        let mut out: HashSet<PathBuf> = ["", "aufs/diff", "aufs/layers", "aufs/mnt"].map(PathBuf::from).into();
        if !self.root.join("aufs").exists() {
            out.insert("aufs".into());
        }
        for (parent, leaf) in [("graph", "layer"), ("containers", "rw")] {
            for e in fs::read_dir(self.root.join(parent)).expect("the fixture's legacy folders") {
                let name = e.expect("a readable directory entry").file_name();
                if fs::symlink_metadata(self.root.join(parent).join(&name).join(leaf)).is_ok() {
                    out.insert(Path::new(parent).join(name));
                }
            }
        }
        for c in self.never_started() {
            out.insert(Path::new("aufs/diff").join(c));
        }
        out
    }

    /// Where the view shows an entry of the legacy ROOT, relative to both
    /// (`None` where the view shows something else: the Docker 1.8 leftovers
    /// under `aufs/` give way to the migrated layout).
    pub fn in_view(&self, rel: &Path) -> Option<PathBuf> {
        let c: Vec<&OsStr> = rel.iter().collect();
        let moved = |kind: &str, id: &OsStr, leaf: &str, rest: &[&OsStr], migrated: bool| {
            let mut p = if migrated {
                Path::new("aufs/diff").join(id)
            } else {
                Path::new(".graph2aufs/quarantine").join(kind).join(id).join(leaf)
            };
            p.extend(rest);
            Some(p)
        };
        match c.as_slice() {
            [g, id, l, rest @ ..] if *g == "graph" && *l == "layer" => {
                moved("graph", id, "layer", rest, self.is_good_image(id))
            }
            [g, id, l, rest @ ..] if *g == "containers" && *l == "rw" => {
                moved("containers", id, "rw", rest, self.is_started_container(id))
            }
            [a, ..] if *a == "aufs" => None,
            [r] if *r == "repositories" => Some("repositories-aufs".into()),
            _ => Some(rel.to_path_buf()),
        }
    }
}

/// Mounts the view of `root` over ROOT itself, MOUNTPOINT omitted.
#[track_caller]
pub fn mount_over_root(root: &Path, extra: &[&str]) -> Mount {
    let mut cmd = g2a([OsStr::new("mount"), root.as_os_str(), OsStr::new("--foreground")]);
    cmd.args(extra);
    Mount::start_command(cmd, root, BOUND)
}

#[track_caller]
pub fn unmount_cleanly(mount: Mount) {
    let log = mount.log();
    let status = mount.unmount();
    assert!(
        status.success(),
        "the view server exited with {status}; its log:\n{log}"
    );
}

/// Every entry under `dir` (not `dir` itself), relative to it, with its
/// `lstat`; symlinks are never followed.
#[track_caller]
pub fn walk(dir: &Path) -> Vec<(PathBuf, fs::Metadata)> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let full = dir.join(&rel);
        for e in fs::read_dir(&full).unwrap_or_else(|e| panic!("listing {}: {e}", full.display())) {
            let e = e.unwrap_or_else(|e| panic!("listing {}: {e}", full.display()));
            let rel = rel.join(e.file_name());
            let path = dir.join(&rel);
            let meta = fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
            if meta.is_dir() {
                stack.push(rel.clone());
            }
            out.push((rel, meta));
        }
    }
    out
}

pub fn names_in(dir: &Path) -> io::Result<BTreeSet<OsString>> {
    fs::read_dir(dir)?.map(|e| e.map(|e| e.file_name())).collect()
}

pub fn sha256_of(path: &Path) -> io::Result<[u8; 32]> {
    let mut f = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match f.read(&mut buf)? {
            0 => return Ok(hasher.finalize().into()),
            n => hasher.update(&buf[..n]),
        }
    }
}
