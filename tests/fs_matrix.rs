//! Every backing file system (issue 13): ROOT on ext4, XFS, btrfs and tmpfs;
//! `aufs/` on the same file system, on another one mounted at `ROOT/aufs`,
//! or named with `--aufs-dir`; offline `migrate`, the read-write view (with
//! writers busy in a layer while it moves) and the read-only view; roots
//! with Docker-1.8 symlinks, ACLs, xattrs, hard links (also to a file in
//! another layer, as a dedup tool leaves them, and outside ROOT), sparse
//! files and a Debian base. Every cell ends equal to the reference (an
//! offline migrate on ext4 of the same root), entry by entry, but for what
//! differs by nature (directory sizes, XFS's second listing of ACLs, and a
//! file's links outside its layer where the layer is copied), and
//! `rollback` gives back the original exactly wherever it does not refuse.
//!
//! Then each file system's quirk on its own: btrfs reports no inodes at
//! all, XFS lists ACLs twice and stamps a directory an exchange moves, and
//! a file hard-linked outside its layer cannot keep that link in a copy.

mod common;
use common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use g2a_genroot::{generate, Options, Summary};
use serde_json::Value;

/// The longest a view stays mounted here.
const BOUND: Duration = Duration::from_secs(180);
/// How long a view's background migration may take.
const FINISH: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------
// Roots

/// A generated root with what the tests add to it, kept as the original
/// every cell copies; and what the reference (an offline migrate on ext4)
/// made of it.
struct Fixture {
    _dir: tempfile::TempDir,
    pristine: PathBuf,
    summary: Summary,
    extras: Extras,
    /// The reference's `aufs/` and the rest of its ROOT, as compared.
    reference: (Tree, Tree),
    /// Layers whose data was a legacy directory (their mtimes are the
    /// data's: kept exactly).
    legacy: BTreeSet<String>,
    kinds: Kinds,
}

/// What the tests add to a generated root (paths below ROOT).
struct Extras {
    /// A file and a directory with ACLs (access; default too on the directory).
    acl_file: PathBuf,
    acl_dir: PathBuf,
    /// A file with two names in one layer and one in another layer.
    shared: PathBuf,
    shared_in_other_layer: PathBuf,
    /// A sparse file: 24 MiB with 256 KiB of data.
    sparse: PathBuf,
    /// A directory writers work in under the read-write view.
    writers: PathBuf,
}

/// The name, beside ROOT, of one more link to [`Extras::shared`] (outside
/// ROOT: each copy of a root gets its own).
const OUTSIDE_LINK: &str = "outside-link";

/// What a root holds besides what every root here has (ACLs, xattrs,
/// hard links inside layers, a sparse file).
#[derive(Clone, Copy)]
struct Kinds {
    /// Layers left as symlinks by Docker 1.8.
    docker18: bool,
    /// A file hard-linked into another layer and outside ROOT.
    dedup: bool,
}

/// Everything at once (the matrix).
const ALL: Kinds = Kinds {
    docker18: true,
    dedup: true,
};

/// Only what every root has (one quirk on its own).
const PLAIN: Kinds = Kinds {
    docker18: false,
    dedup: false,
};

fn cp_a(src: &Path, dst: &Path) {
    let mut cp = Command::new("cp");
    cp.arg("-a").arg(src).arg(dst);
    run_command(cp, RUN_TIMEOUT).expect_code(0);
}

#[track_caller]
fn tool(args: &[&str], path: &Path) {
    let mut c = Command::new(args[0]);
    c.args(&args[1..]).arg(path);
    run_command(c, RUN_TIMEOUT).expect_code(0);
}

fn stamp(secs: i64) -> rustix::fs::Timestamps {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 123_456_789,
    };
    rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Sets `path`'s (never followed) access and modification times.
fn set_times(path: &Path, t: rustix::fs::Timestamps) {
    rustix::fs::utimensat(rustix::fs::CWD, path, &t, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
        .unwrap_or_else(|e| panic!("setting the times of {}: {e}", path.display()));
}

fn times_of(path: &Path) -> rustix::fs::Timestamps {
    let m = fs::symlink_metadata(path).unwrap();
    rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: m.atime(),
            tv_nsec: m.atime_nsec() as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: m.mtime(),
            tv_nsec: m.mtime_nsec() as _,
        },
    }
}

/// Runs `f`, then gives the directories `dirs` back their times.
fn keeping_times<R>(dirs: &[&Path], f: impl FnOnce() -> R) -> R {
    let kept: Vec<_> = dirs.iter().map(|d| (d.to_path_buf(), times_of(d))).collect();
    let r = f();
    for (d, t) in kept {
        set_times(&d, t);
    }
    r
}

fn layer(root: &Path, id: &str) -> PathBuf {
    root.join("graph").join(id).join("layer")
}

/// Adds to a generated root what the generator has not: ACLs, an xattr on
/// a directory, a file hard-linked within its layer and into another layer,
/// a sparse file, a dense file (so a throttled copy takes a while), and a
/// directory for writers. Every time is fixed, directories' included.
fn enrich(root: &Path, s: &Summary, kinds: Kinds) -> Extras {
    let n = s.images.len();
    assert!(n >= 3, "three images at least");
    let (a, b, c) = (&s.images[0], &s.images[1], &s.images[n - 1]);
    let rel = |id: &str, p: &str| Path::new("graph").join(id).join("layer").join(p);
    let extras = Extras {
        acl_file: rel(a, "matrix-acl/file"),
        acl_dir: rel(a, "matrix-acl"),
        shared: rel(b, "matrix-shared"),
        shared_in_other_layer: rel(c, "matrix-dedup"),
        sparse: rel(c, "matrix-sparse"),
        writers: rel(a, "matrix-writers"),
    };
    let (la, lb, lc) = (layer(root, a), layer(root, b), layer(root, c));
    keeping_times(&[&la, &lb, &lc], || {
        let dir = root.join(&extras.acl_dir);
        fs::create_dir(&dir).unwrap();
        let file = root.join(&extras.acl_file);
        fs::write(&file, "an ACL on me\n").unwrap();
        tool(&["setfacl", "-m", "u:1234:rw,g:4321:r"], &file);
        tool(&["setfacl", "-m", "u:55:rwx"], &dir);
        tool(&["setfacl", "-d", "-m", "u:1234:rx"], &dir);
        tool(&["setfattr", "-n", "user.matrix", "-v", "on a directory"], &dir);
        tool(&["setfattr", "-n", "trusted.matrix", "-v", "trusted"], &file);
        set_times(&file, stamp(1_400_000_001));
        set_times(&dir, stamp(1_400_000_002));

        let shared = root.join(&extras.shared);
        fs::write(&shared, "the same bytes in two layers\n").unwrap();
        set_times(&shared, stamp(1_400_000_003));
        fs::hard_link(&shared, lb.join("matrix-shared.2")).unwrap();
        if kinds.dedup {
            fs::hard_link(&shared, root.join(&extras.shared_in_other_layer)).unwrap();
        }

        let sparse = fs::File::create(root.join(&extras.sparse)).unwrap();
        sparse.set_len(24 << 20).unwrap();
        let data: Vec<u8> = (0..256 << 10).map(|i: u32| (i * 13 % 251) as u8).collect();
        std::os::unix::fs::FileExt::write_all_at(&sparse, &data, 8 << 20).unwrap();
        drop(sparse);
        set_times(&root.join(&extras.sparse), stamp(1_400_000_004));
        let dense: Vec<u8> = (0..4 << 20).map(|i: u32| (i * 7 % 253) as u8).collect();
        fs::write(la.join("matrix-dense"), dense).unwrap();
        set_times(&la.join("matrix-dense"), stamp(1_400_000_005));

        fs::create_dir(root.join(&extras.writers)).unwrap();
        set_times(&root.join(&extras.writers), stamp(1_400_000_006));
    });
    extras
}

/// After a root was copied to `root`: Docker 1.8's symlinks point into it
/// (as Docker made them: ROOT's absolute path), with their times, and one
/// more link to the shared file is made beside ROOT.
fn settle(root: &Path, s: &Summary, extras: &Extras, kinds: Kinds) {
    let diff = root.join("aufs/diff");
    if !s.docker18.is_empty() {
        keeping_times(&[&diff], || {
            for id in &s.docker18 {
                let link = diff.join(id);
                let t = times_of(&link);
                fs::remove_file(&link).unwrap();
                std::os::unix::fs::symlink(layer(root, id), &link).unwrap();
                set_times(&link, t);
            }
        });
    }
    if kinds.dedup {
        let outside = root.parent().unwrap().join(OUTSIDE_LINK);
        fs::hard_link(root.join(&extras.shared), outside).unwrap();
    }
}

impl Fixture {
    /// A small root (or one with the Debian base as its first layer),
    /// enriched, and its reference.
    fn new(seed: u64, debian: Option<PathBuf>, kinds: Kinds) -> Fixture {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let pristine = dir.path().join("root");
        let opts = Options {
            seed,
            images: 6,
            max_chain: 3,
            containers: 2,
            entries_per_layer: 12,
            docker18: kinds.docker18,
            debian_base: debian,
            ..Options::default()
        };
        let summary = generate(&pristine, &opts).unwrap_or_else(|e| panic!("generating: {e}"));
        let extras = enrich(&pristine, &summary, kinds);
        let legacy = summary
            .images
            .iter()
            .cloned()
            .chain(summary.containers.iter().filter(|c| c.2).map(|c| c.0.clone()))
            .collect();
        let mut f = Fixture {
            _dir: dir,
            pristine,
            summary,
            extras,
            reference: (Tree::default(), Tree::default()),
            legacy,
            kinds,
        };
        let ext4 = AnyFs::new(FsType::Ext4, f.size_mb());
        let root = f.place(ext4.path());
        run_command(g2a(["migrate".as_ref(), root.as_os_str()]), RUN_TIMEOUT).expect_code(0);
        f.reference = (f.aufs(&root, FsType::Ext4), rest(&root, FsType::Ext4));
        f
    }

    /// Space a file system needs for one copy of the root.
    fn size_mb(&self) -> u64 {
        match self.summary.landmarks.debian {
            Some(_) => 512,
            None => 256,
        }
    }

    /// A copy of the root at `at`/root (see [`settle`]).
    fn place(&self, at: &Path) -> PathBuf {
        let root = at.join("root");
        cp_a(&self.pristine, &root);
        settle(&root, &self.summary, &self.extras, self.kinds);
        root
    }

    /// ROOT's `aufs/` as compared (see [`aufs_tree`]).
    fn aufs(&self, root: &Path, on: FsType) -> Tree {
        aufs_tree(
            &root.join("aufs"),
            on,
            &self.legacy,
            &self.extras,
            &self.summary.images[0],
        )
    }
}

/// XFS lists an ACL a second time, as these (its on-disk form).
const XFS_ACL_ALIASES: [&str; 2] = ["trusted.SGI_ACL_FILE", "trusted.SGI_ACL_DEFAULT"];

/// What differs by nature between two trees on two file systems: directory
/// sizes, and on XFS the second listing of each ACL (only where the ACL is
/// there under its own name too).
fn across_file_systems(t: Tree, on: FsType) -> Tree {
    t.normalized(|p, e| {
        if e.kind == Kind::Dir {
            e.size = 0;
        }
        if on == FsType::Xfs {
            for (alias, name) in XFS_ACL_ALIASES
                .iter()
                .zip(["system.posix_acl_access", "system.posix_acl_default"])
            {
                if e.xattrs.remove(std::ffi::OsStr::new(alias)).is_some() {
                    assert!(
                        e.xattrs.contains_key(std::ffi::OsStr::new(name)),
                        "{}: {alias} without {name}",
                        show(p)
                    );
                }
            }
        }
    })
}

/// `aufs/` (followed if a symlink) as compared: the layers entry by entry,
/// their own mtimes included where they were legacy data; the times of
/// what the migration made now (`layers/` files, `mnt/` and init layer
/// directories, the empty layers of containers that never ran, the aufs
/// directories themselves) left out; and what writers did in their
/// directory (checked on its own).
fn aufs_tree(aufs: &Path, on: FsType, legacy: &BTreeSet<String>, extras: &Extras, writers_layer: &str) -> Tree {
    let opts = SnapOpts {
        follow_root_symlink: true,
        ..SnapOpts::default()
    };
    let writers = Path::new("diff")
        .join(writers_layer)
        .join(extras.writers.file_name().unwrap());
    let t = snapshot_with(aufs, &opts);
    let t = Tree(
        t.0.into_iter()
            .filter(|(p, _)| !p.starts_with(&writers) || p == &writers)
            .collect(),
    );
    across_file_systems(t, on).normalized(|p, e| {
        let parts: Vec<_> = p.iter().map(|c| c.to_string_lossy().into_owned()).collect();
        let made_now = match parts.as_slice() {
            [] | [_] => true,
            [d, _] if d == "layers" || d == "mnt" => true,
            [d, id] if d == "diff" => !legacy.contains(id),
            _ => p == writers,
        };
        if made_now {
            e.mtime_ns = 0;
        }
    })
}

/// The rest of ROOT (without `aufs` and graph2aufs's own files), directory
/// times left out (the migration changes them).
fn rest(root: &Path, on: FsType) -> Tree {
    let t = snapshot(root).without([
        "aufs",
        ".graph2aufs/record.json",
        ".graph2aufs/status.json",
        ".graph2aufs/lock",
    ]);
    across_file_systems(t, on).normalized(|_, e| {
        if e.kind == Kind::Dir {
            e.mtime_ns = 0;
        }
    })
}

/// The reference's `aufs/` as a copy to another file system must make it:
/// a file with links in several layers has, in each layer's copy, the
/// links of that layer only (its first one there names the group).
fn as_copied(reference: &Tree) -> Tree {
    let layer_of = |p: &Path| p.iter().take(2).collect::<PathBuf>();
    let mut members: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();
    for (p, e) in reference {
        if let Some(g) = &e.link_group {
            members.entry(g.clone()).or_default().push(p.clone());
        }
    }
    reference.normalized(|p, e| {
        if let Some(g) = e.link_group.clone() {
            let own: Vec<&PathBuf> = members[&g].iter().filter(|m| layer_of(m) == layer_of(p)).collect();
            e.nlink = own.len() as u64;
            e.link_group = (own.len() > 1).then(|| own[0].clone());
        }
    })
}

/// Where a cell keeps `aufs/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Aufs {
    /// ROOT's own `aufs/` directory.
    Same,
    /// Another file system mounted at `ROOT/aufs`.
    Mounted(FsType),
    /// Another file system's directory, named with `--aufs-dir`.
    Named(FsType),
}

/// How a cell migrates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Offline,
    /// The read-write view, with writers in a layer all along.
    Live,
    ReadOnly,
}

/// ROOT on a file system of its own, and `aufs/` where the cell says.
/// (Fields drop in order: the bind mount before the file systems.)
struct Place {
    root: PathBuf,
    aufs_dir: Option<PathBuf>,
    _bind: Option<BindAt>,
    _aufs_fs: Option<AnyFs>,
    _root_fs: AnyFs,
}

impl Place {
    fn new(f: &Fixture, on: FsType, aufs: Aufs) -> Place {
        let root_fs = AnyFs::new(on, f.size_mb());
        let root = f.place(root_fs.path());
        let (mut bind, mut aufs_fs, mut aufs_dir) = (None, None, None);
        match aufs {
            Aufs::Same => {}
            Aufs::Mounted(t) => {
                // What Docker 1.8 left in aufs/ moves to the other file
                // system, which is then mounted there.
                let other = AnyFs::new(t, f.size_mb());
                // (Not part of what is compared: a new ext4's own directory.)
                let _ = fs::remove_dir(other.path().join("lost+found"));
                // (A tmpfs's top directory is sticky and world-writable;
                // the operator makes it what ROOT/aufs is, or would be.)
                let mut mode = 0o755;
                if root.join("aufs").exists() {
                    cp_a(&root.join("aufs/."), other.path());
                    mode = fs::metadata(root.join("aufs")).unwrap().mode() & 0o7777;
                    for e in fs::read_dir(root.join("aufs")).unwrap() {
                        let p = e.unwrap().path();
                        match p.is_dir() && !p.is_symlink() {
                            true => fs::remove_dir_all(&p).unwrap(),
                            false => fs::remove_file(&p).unwrap(),
                        }
                    }
                }
                fs::set_permissions(other.path(), std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
                bind = Some(BindAt::new(other.path(), &root.join("aufs")));
                aufs_fs = Some(other);
            }
            Aufs::Named(t) => {
                let other = AnyFs::new(t, f.size_mb());
                let dir = other.path().join("aufs-dir");
                match root.join("aufs").exists() {
                    true => {
                        cp_a(&root.join("aufs"), &dir);
                        fs::remove_dir_all(root.join("aufs")).unwrap();
                    }
                    false => fs::create_dir(&dir).unwrap(),
                }
                aufs_dir = Some(dir);
                aufs_fs = Some(other);
            }
        }
        Place {
            root,
            aufs_dir,
            _bind: bind,
            _aufs_fs: aufs_fs,
            _root_fs: root_fs,
        }
    }

    /// `graph2aufs CMD ROOT [--aufs-dir DIR] ARGS`.
    fn g2a(&self, cmd: &str, args: &[&str]) -> Command {
        let mut c = g2a([cmd.as_ref(), self.root.as_os_str()]);
        if let Some(d) = &self.aufs_dir {
            c.arg("--aufs-dir").arg(d);
        }
        c.args(args);
        c
    }

    /// `graph2aufs mount ROOT MOUNTPOINT [--aufs-dir DIR] ARGS`.
    fn mount(&self, mountpoint: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("mount").arg(&self.root).arg(mountpoint);
        if let Some(d) = &self.aufs_dir {
            c.arg("--aufs-dir").arg(d);
        }
        c.args(args);
        c
    }

    /// Everything of ROOT, with its `aufs/` wherever it is.
    fn whole(&self) -> (Tree, Tree) {
        let opts = SnapOpts {
            follow_root_symlink: true,
            ..SnapOpts::default()
        };
        let aufs = self.aufs_dir.clone().unwrap_or_else(|| self.root.join("aufs"));
        (snapshot(&self.root).without(["aufs"]), snapshot_with(&aufs, &opts))
    }
}

/// One cell of the matrix: ROOT on `on`, `aufs/` as `aufs` says, migrated
/// as `mode` says; ends as the reference, and `rollback` gives back the
/// original (or refuses, changing nothing).
fn cell(f: &Fixture, on: FsType, aufs: Aufs, mode: Mode) {
    let what = format!("ROOT on {}, aufs {aufs:?}, {mode:?}", on.name());
    let t0 = Instant::now();
    let p = Place::new(f, on, aufs);
    let before = p.whole();
    let aufs_on = match aufs {
        Aufs::Same => on,
        Aufs::Mounted(t) | Aufs::Named(t) => t,
    };
    // (Layers are copied to another file system, renamed on the same one.)
    let copied = aufs != Aufs::Same;
    let reference_aufs = match copied {
        true => as_copied(&f.reference.0),
        false => f.reference.0.clone(),
    };
    match mode {
        Mode::ReadOnly => {
            read_only_cell(f, &p, on, &what, &before);
            loud(&format!("fs matrix: {what}: {:.1} s", t0.elapsed().as_secs_f64()));
            return;
        }
        Mode::Offline => {
            let r = run_command(p.g2a("migrate", &["--json"]), RUN_TIMEOUT);
            let doc = r.json();
            assert_eq!(doc["totals"]["failed"], 0, "{what}: {r}");
            assert_eq!(
                doc["totals"]["registered"].as_u64().unwrap() as usize,
                f.summary.images.len() + f.summary.containers.len(),
                "{what}: {r}"
            );
        }
        Mode::Live => live_with_writers(f, &p, &what, copied),
    }
    assert_same(&reference_aufs, &f.aufs(&p.root, aufs_on), &format!("{what}: aufs/"));
    assert_same(&f.reference.1, &rest(&p.root, on), &format!("{what}: the rest of ROOT"));
    sparse_kept(f, &p.root, &what);
    // Info (never notes): exactly the files linked out of a layer that was
    // copied.
    let status = run_command(p.g2a("status", &["--json"]), RUN_TIMEOUT).json();
    let outside = |field: &str| -> Vec<String> {
        (status[field].as_array().map_or(&[][..], Vec::as_slice).iter())
            .filter(|n| n["reason"].as_str().unwrap().contains("hard-linked outside its layer"))
            .map(|n| n["path"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(outside("notes"), Vec::<String>::new(), "{what}: notes");
    let notes = outside("info");
    let expected = match copied {
        true => 2, // the shared file in each of its two layers
        false => 0,
    };
    assert_eq!(notes.len(), expected, "{what}: info {notes:?}");
    // Rollback: the original exactly, or a refusal that changes nothing.
    let migrated = p.whole();
    let r = run_command(p.g2a("rollback", &["--json"]), RUN_TIMEOUT);
    match copied {
        false => {
            r.expect_code(0);
            // (What writers left in their directory stays in the layer.)
            let writers = f.extras.writers.clone();
            let unwritten = |t: &Tree| {
                Tree(
                    t.0.iter()
                        .filter(|(p, _)| !p.starts_with(&writers) || **p == writers)
                        .map(|(p, e)| (p.clone(), e.clone()))
                        .collect(),
                )
                .normalized(|p, e| {
                    if p == writers {
                        e.mtime_ns = 0;
                        e.size = 0;
                    }
                })
            };
            let after = match mode {
                Mode::Live => (unwritten(&before.0), unwritten(&p.whole().0)),
                _ => (before.0.clone(), p.whole().0),
            };
            assert_same(&after.0, &after.1, &format!("{what}: ROOT after rollback"));
            assert_same(&before.1, &p.whole().1, &format!("{what}: aufs/ after rollback"));
        }
        true => {
            // Layers copied to another file system cannot be renamed back:
            // those items refuse and stay as they are; the others (the
            // empty layers of containers that never ran) go back exactly,
            // and so does `repositories`.
            assert_eq!(r.code, 1, "{what}: rollback of copied layers: {r}");
            let report = r.json();
            for n in report["refused"].as_array().unwrap() {
                let why = n["reason"].as_str().unwrap();
                assert!(why.contains("cross-device"), "{what}: {} refused: {why}", n["path"]);
            }
            let restored: Vec<(String, String)> = report["restored"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|k| k.as_str().unwrap().split_once('/'))
                .map(|(kind, id)| (kind.to_string(), id.to_string()))
                .collect();
            assert!(
                restored.iter().all(|(kind, _)| kind == "container"),
                "{what}: {restored:?}"
            );
            let back = |p: &Path, ours: bool| {
                restored.iter().any(|(_, id)| {
                    let under = |d: &str| p.starts_with(Path::new(d).join(id));
                    match ours {
                        // (ROOT's part: the container's own directory.)
                        false => under("containers"),
                        true => ["diff", "layers", "mnt"]
                            .iter()
                            .any(|d| under(d) || p.starts_with(Path::new(d).join(format!("{id}-init")))),
                    }
                })
            };
            let own = [".graph2aufs/record.json", ".graph2aufs/status.json", ".graph2aufs/lock"];
            // What rollback must leave: the migrated tree, with the restored
            // items' entries as they were before (directory times that only
            // a complete rollback restores left out).
            let expect = |migrated: &Tree, before: &Tree, ours: bool| {
                let mut t: BTreeMap<PathBuf, Entry> = migrated
                    .0
                    .iter()
                    .filter(|(p, _)| !back(p, ours))
                    .map(|(p, e)| (p.clone(), e.clone()))
                    .collect();
                t.extend(
                    before
                        .0
                        .iter()
                        .filter(|(p, _)| back(p, ours))
                        .map(|(p, e)| (p.clone(), e.clone())),
                );
                if !ours {
                    if let Some(e) = t.remove(Path::new("repositories-aufs")) {
                        t.insert("repositories".into(), e);
                    }
                }
                comparable_after_rollback(Tree(t), &own)
            };
            let now = p.whole();
            assert_same(
                &expect(&migrated.0, &before.0, false),
                &comparable_after_rollback(now.0, &own),
                &format!("{what}: ROOT after a rollback that refused"),
            );
            assert_same(
                &expect(&migrated.1, &before.1, true),
                &comparable_after_rollback(now.1, &own),
                &format!("{what}: aufs/ after a rollback that refused"),
            );
        }
    }
    loud(&format!("fs matrix: {what}: {:.1} s", t0.elapsed().as_secs_f64()));
}

/// A tree after a rollback that refused some items: graph2aufs's own files
/// left out, and the times of directories (ROOT's own, `.graph2aufs`, the
/// aufs directories) that only a complete rollback gives back.
fn comparable_after_rollback(t: Tree, own: &[&str]) -> Tree {
    let t = t.without(own);
    t.normalized(|p, e| {
        let top = p.iter().count() <= 1 && e.kind == Kind::Dir;
        if top && !p.starts_with("graph") && !p.starts_with("containers") {
            e.mtime_ns = 0;
        }
    })
}

/// The sparse file stays sparse (wherever it is copied).
fn sparse_kept(f: &Fixture, root: &Path, what: &str) {
    let c = &f.summary.images[f.summary.images.len() - 1];
    let p = root
        .join("aufs/diff")
        .join(c)
        .join(f.extras.sparse.file_name().unwrap());
    let m = fs::metadata(&p).unwrap();
    assert!(
        m.blocks() * 512 < 4 << 20,
        "{what}: {} is not sparse any more ({} blocks)",
        p.display(),
        m.blocks()
    );
}

/// The read-only view shows the reference's `aufs/diff` and `aufs/layers`
/// and changes nothing, not even access times.
fn read_only_cell(f: &Fixture, p: &Place, on: FsType, what: &str, before: &(Tree, Tree)) {
    let atimes = SnapOpts {
        atime: true,
        ..SnapOpts::default()
    };
    let under = snapshot_with(&p.root, &atimes);
    let mnt = p.root.parent().unwrap().join("view");
    fs::create_dir(&mnt).unwrap();
    let view = Mount::start_command(p.mount(&mnt, &["--foreground", "--read-only"]), &mnt, BOUND);
    // (The layers shown are ROOT's legacy directories, on its file system.)
    let seen = aufs_tree(&mnt.join("aufs"), on, &f.legacy, &f.extras, &f.summary.images[0]);
    // (In read-only mode aufs/mnt/<id> shows the merged root: compared by name.)
    let strip = |t: &Tree| t.without(["mnt"]);
    let names = |t: &Tree, d: &str| -> Vec<PathBuf> {
        t.keys()
            .filter(|k| k.starts_with(d) && k.iter().count() == 2)
            .cloned()
            .collect()
    };
    assert_same(
        &strip(&f.reference.0),
        &strip(&seen),
        &format!("{what}: the view's aufs/"),
    );
    assert_eq!(
        names(&f.reference.0, "mnt"),
        names(&seen, "mnt"),
        "{what}: the view's aufs/mnt"
    );
    drop(view);
    assert_same(
        &under,
        &snapshot_with(&p.root, &atimes),
        &format!("{what}: ROOT under the view"),
    );
    assert_same(&before.1, &p.whole().1, &format!("{what}: aufs/ under the view"));
}

/// The read-write view migrates in the background while writers work in a
/// layer being moved (or copied, throttled); it ends when every item is
/// registered, and the writers lost nothing.
fn live_with_writers(f: &Fixture, p: &Place, what: &str, copied: bool) {
    let mut cmd = p.g2a("mount", &["--foreground", "--copy-rate", "4M"]);
    cmd.env("RUST_LOG", "info");
    let view = Mount::start_command(cmd, &p.root, BOUND);
    let dir = p
        .root
        .join("aufs/diff")
        .join(&f.summary.images[0])
        .join(f.extras.writers.file_name().unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|k| {
            let (dir, stop) = (dir.join(format!("w{k}")), stop.clone());
            thread::spawn(move || write_until(k, &dir, &stop, Duration::from_millis(10)).0)
        })
        .collect();
    let deadline = Instant::now() + FINISH;
    loop {
        // (Without --aufs-dir: the view shows ROOT/aufs as the directory
        // itself, which `status --aufs-dir` refuses as another one.)
        let status = g2a(["status".as_ref(), p.root.as_os_str(), "--json".as_ref()]);
        let s = run_command(status, RUN_TIMEOUT).json();
        if s["live"]["finished"] == true {
            break;
        }
        let failed = not_registered(&s);
        assert!(
            !failed.iter().any(|i| i.starts_with("\"failed\"")),
            "{what}: {failed:#?}\n{}",
            view.log()
        );
        assert!(
            writers.iter().all(|w| !w.is_finished()),
            "{what}: a writer stopped:\n{}",
            view.log()
        );
        assert!(
            Instant::now() < deadline,
            "{what}: not finished within {FINISH:?}: {s}\n{}",
            view.log()
        );
        thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    let models: Vec<_> = writers
        .into_iter()
        .map(|w| {
            w.join()
                .unwrap_or_else(|_| panic!("{what}: a writer failed:\n{}", view.log()))
        })
        .collect();
    let log = view.log();
    drop(view);
    // (The writers ran from the mount to the end: through the copy too.)
    let switched = format!("graph/{}/layer switched to its copy", f.summary.images[0]);
    assert_eq!(log.contains(&switched), copied, "{what}: {switched}?\n{log}");
    for (k, model) in models.into_iter().enumerate() {
        assert!(
            read_back(&dir.join(format!("w{k}"))) == model,
            "{what}: writer {k}: the disk differs from what it wrote\n{log}"
        );
    }
}

/// Runs cells side by side (each has its own file systems).
fn cells(f: &Fixture, list: &[(FsType, Aufs, Mode)]) {
    thread::scope(|s| {
        let running: Vec<_> = list
            .iter()
            .map(|&(on, aufs, mode)| s.spawn(move || cell(f, on, aufs, mode)))
            .collect();
        let mut failed = Vec::new();
        for (r, c) in running.into_iter().zip(list) {
            if let Err(e) = r.join() {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failed.push(format!("{c:?}: {msg}"));
            }
        }
        assert!(
            failed.is_empty(),
            "{} cell(s) failed:\n{}",
            failed.len(),
            failed.join("\n\n")
        );
    });
}

// ---------------------------------------------------------------------------
// The matrix: each ROOT file system with aufs/ on the same one, offline, live
// and read-only; the copies across file systems on pairs where each file
// system is once the source and once the destination.

fn same_fs_row(on: FsType, seed: u64) {
    let f = Fixture::new(seed, None, ALL);
    cells(
        &f,
        &[
            (on, Aufs::Same, Mode::Offline),
            (on, Aufs::Same, Mode::Live),
            (on, Aufs::Same, Mode::ReadOnly),
        ],
    );
}

#[test]
fn matrix_root_on_ext4() {
    if require_root_and_fuse() {
        same_fs_row(FsType::Ext4, 131);
    }
}

#[test]
fn matrix_root_on_xfs() {
    if require_root_and_fuse() {
        same_fs_row(FsType::Xfs, 132);
    }
}

#[test]
fn matrix_root_on_btrfs() {
    if require_root_and_fuse() {
        same_fs_row(FsType::Btrfs, 133);
    }
}

#[test]
fn matrix_root_on_tmpfs() {
    if require_root_and_fuse() {
        same_fs_row(FsType::Tmpfs, 134);
    }
}

#[test]
fn matrix_aufs_on_another_file_system_offline_with_a_debian_base() {
    if !require_root() {
        return;
    }
    let Some(debian) = require_debian_base() else {
        return;
    };
    let f = Fixture::new(135, Some(debian), ALL);
    use FsType::*;
    cells(
        &f,
        &[
            (Ext4, Aufs::Mounted(Xfs), Mode::Offline),
            (Xfs, Aufs::Named(Btrfs), Mode::Offline),
            (Btrfs, Aufs::Mounted(Tmpfs), Mode::Offline),
            (Tmpfs, Aufs::Named(Ext4), Mode::Offline),
        ],
    );
}

#[test]
fn matrix_aufs_on_another_file_system_live_and_read_only() {
    if !require_root_and_fuse() {
        return;
    }
    let f = Fixture::new(136, None, ALL);
    use FsType::*;
    cells(
        &f,
        &[
            (Ext4, Aufs::Mounted(Xfs), Mode::Live),
            (Xfs, Aufs::Named(Btrfs), Mode::Live),
            (Btrfs, Aufs::Mounted(Tmpfs), Mode::ReadOnly),
        ],
    );
}

// ---------------------------------------------------------------------------
// Each quirk on its own, on the file system where it was seen.

/// `migrate` of `f`'s root with `aufs/` on `aufs_on` (mounted at ROOT/aufs);
/// the place and the `--json` document.
fn migrate_to(f: &Fixture, on: FsType, aufs_on: FsType) -> (Place, Value) {
    let p = Place::new(f, on, Aufs::Mounted(aufs_on));
    let r = run_command(p.g2a("migrate", &["--json"]), RUN_TIMEOUT);
    let doc = r.json();
    (p, doc)
}

/// Items not registered, with their reasons.
fn not_registered(doc: &Value) -> Vec<String> {
    doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["state"] != "registered")
        .map(|i| format!("{} {}: {}", i["state"], i["id"], i["reason"]))
        .collect()
}

#[test]
fn btrfs_as_the_destination_takes_copies_though_it_reports_no_inodes() {
    if !require_root() {
        return;
    }
    let f = Fixture::new(141, None, PLAIN);
    let (p, doc) = migrate_to(&f, FsType::Ext4, FsType::Btrfs);
    // (What btrfs says: no inode count at all.)
    let st = rustix::fs::statvfs(p.root.join("aufs")).unwrap();
    assert_eq!((st.f_files, st.f_ffree), (0, 0), "btrfs reports inodes now");
    assert_eq!(not_registered(&doc), Vec::<String>::new());
    assert_same(
        &as_copied(&f.reference.0),
        &f.aufs(&p.root, FsType::Btrfs),
        "aufs/ on btrfs",
    );
}

/// `aufs/` on XFS is the reference's (ACLs included), and `getfacl`
/// shows the ACLs of the root's ACL directory there, default ACL included.
fn acls_kept(f: &Fixture, root: &Path) {
    assert_same(&as_copied(&f.reference.0), &f.aufs(root, FsType::Xfs), "aufs/ on XFS");
    let mut c = Command::new("getfacl");
    c.args(["-n", "--omit-header"])
        .arg(root.join("aufs/diff").join(&f.summary.images[0]).join("matrix-acl"));
    let got = run_command(c, RUN_TIMEOUT).stdout;
    assert!(
        got.contains("user:55:rwx") && got.contains("default:user:1234:r-x"),
        "{got}"
    );
}

#[test]
fn xfs_as_the_destination_keeps_acls_as_acls() {
    if !require_root() {
        return;
    }
    let f = Fixture::new(142, None, PLAIN);
    let (p, doc) = migrate_to(&f, FsType::Ext4, FsType::Xfs);
    assert_eq!(not_registered(&doc), Vec::<String>::new());
    acls_kept(&f, &p.root);
}

#[test]
fn xfs_as_the_destination_keeps_acls_as_acls_under_the_view() {
    if !require_root_and_fuse() {
        return;
    }
    let f = Fixture::new(146, None, PLAIN);
    let p = Place::new(&f, FsType::Ext4, Aufs::Mounted(FsType::Xfs));
    live_with_writers(&f, &p, "the view with aufs/ on XFS", true);
    let s = run_command(p.g2a("status", &["--json"]), RUN_TIMEOUT).json();
    assert_eq!(not_registered(&s), Vec::<String>::new());
    acls_kept(&f, &p.root);
}

#[test]
fn xfs_as_the_source_gives_no_stray_attribute_to_the_copy() {
    if !require_root() {
        return;
    }
    let f = Fixture::new(143, None, PLAIN);
    let (p, doc) = migrate_to(&f, FsType::Xfs, FsType::Ext4);
    assert_eq!(not_registered(&doc), Vec::<String>::new());
    // On ext4 an XFS alias would be a plain (stray) attribute: none is.
    for (path, e) in snapshot(&p.root.join("aufs")).iter() {
        for alias in XFS_ACL_ALIASES {
            assert!(
                !e.xattrs.contains_key(std::ffi::OsStr::new(alias)),
                "aufs/{}: {alias} copied as an attribute",
                show(path)
            );
        }
    }
    assert_same(
        &as_copied(&f.reference.0),
        &f.aufs(&p.root, FsType::Ext4),
        "aufs/ on ext4",
    );
}

#[test]
fn a_file_hard_linked_outside_its_layer_is_copied_with_the_links_inside_and_noted() {
    if require_root() {
        outside_links(144, false);
    }
}

#[test]
fn a_file_hard_linked_outside_its_layer_is_copied_with_the_links_inside_and_noted_under_the_view() {
    if require_root_and_fuse() {
        outside_links(147, true);
    }
}

/// A root with a file hard-linked into another layer and outside ROOT,
/// migrated to a tmpfs `aufs/` (by the view if `live`).
fn outside_links(seed: u64, live: bool) {
    let f = Fixture::new(
        seed,
        None,
        Kinds {
            docker18: false,
            dedup: true,
        },
    );
    let (b, c) = (&f.summary.images[1], &f.summary.images[f.summary.images.len() - 1]);
    // In the source: two names in one layer, one in another, one outside ROOT.
    let check = |p: &Place, doc: &Value, what: &str| {
        assert_eq!(not_registered(doc), Vec::<String>::new(), "{what}");
        let diff = p.root.join("aufs/diff");
        let nlink = |l: &str, n: &str| fs::metadata(diff.join(l).join(n)).unwrap().nlink();
        assert_eq!(nlink(b, "matrix-shared"), 2, "{what}");
        assert_eq!(nlink(c, "matrix-dedup"), 1, "{what}");
        // The name outside keeps the original file (and its bytes).
        let outside = p.root.parent().unwrap().join(OUTSIDE_LINK);
        assert_eq!(fs::metadata(&outside).unwrap().nlink(), 1, "{what}");
        assert_eq!(
            fs::read(&outside).unwrap(),
            fs::read(diff.join(b).join("matrix-shared")).unwrap()
        );
        // Info, not notes: no problem, exit code 0 (in `plan` and `status`;
        // `migrate`'s own report is `doc`, checked by the caller).
        let st = run_command(p.g2a("status", &["--json"]), RUN_TIMEOUT);
        let s = st.json();
        assert_eq!(st.code, 0, "{what}: status: {s}");
        assert_eq!(s["notes"], serde_json::json!([]), "{what}");
        let plan = run_command(p.g2a("plan", &["--json"]), RUN_TIMEOUT);
        assert_eq!(plan.code, 0, "{what}: plan: {}", plan.stdout);
        assert_eq!(plan.json()["info"], s["info"], "{what}");
        let text = run_command(p.g2a("status", &[]), RUN_TIMEOUT);
        assert_eq!(text.code, 0, "{what}");
        assert!(
            text.stdout.contains("\n  info (no problem):\n    aufs/diff/")
                && text
                    .stdout
                    .contains(&format!("\n    aufs/diff/{b}/matrix-shared: hard-linked outside")),
            "{what}: {}",
            text.stdout
        );
        assert!(!text.stdout.contains("  note "), "{what}: {}", text.stdout);
        let mut noted: Vec<(String, String)> = s["info"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| (n["path"].as_str().unwrap().into(), n["reason"].as_str().unwrap().into()))
            .collect();
        noted.sort();
        // (How many links the file still had when a layer was copied
        // depends on whether the other layer's source was removed by then.)
        let want = [
            (format!("aufs/diff/{b}/matrix-shared"), " links, 2 of them in the layer"),
            (format!("aufs/diff/{c}/matrix-dedup"), " links, 1 of them in the layer"),
        ];
        let mut want: Vec<_> = want.into_iter().collect();
        want.sort();
        assert_eq!(noted.len(), 2, "{what}: {noted:?}");
        for ((path, reason), (wpath, wreason)) in noted.iter().zip(&want) {
            assert_eq!(path, wpath, "{what}");
            assert!(
                reason.contains("hard-linked outside its layer") && reason.contains(wreason),
                "{what}: {path}: {reason}"
            );
        }
        assert_same(&as_copied(&f.reference.0), &f.aufs(&p.root, FsType::Tmpfs), what);
    };
    match live {
        false => {
            let p = Place::new(&f, FsType::Ext4, Aufs::Mounted(FsType::Tmpfs));
            let r = run_command(p.g2a("migrate", &["--json"]), RUN_TIMEOUT);
            let doc = r.json();
            assert_eq!(r.code, 0, "migrate: {doc}");
            assert_eq!(doc["notes"], serde_json::json!([]), "migrate: {doc}");
            assert_eq!(doc["info"].as_array().map(Vec::len), Some(2), "migrate: {doc}");
            check(&p, &doc, "offline");
            // Converged: a second run has nothing to do.
            let again = run_command(p.g2a("migrate", &["--json"]), RUN_TIMEOUT);
            assert_eq!(again.code, 0, "migrate again: {}", again.stdout);
            let again = again.json();
            assert_eq!(not_registered(&again), Vec::<String>::new());
        }
        true => {
            let p = Place::new(&f, FsType::Ext4, Aufs::Mounted(FsType::Tmpfs));
            live_with_writers(&f, &p, "the view", true);
            let s = run_command(p.g2a("status", &["--json"]), RUN_TIMEOUT).json();
            check(&p, &s, "under the view");
        }
    }
}

#[test]
fn xfs_keeps_the_mtime_of_a_docker18_layer_and_rollback_gives_back_the_original() {
    if !require_root() {
        return;
    }
    let f = Fixture::new(
        145,
        None,
        Kinds {
            docker18: true,
            dedup: false,
        },
    );
    let p = Place::new(&f, FsType::Xfs, Aufs::Same);
    let before = p.whole();
    let r = run_command(p.g2a("migrate", &["--json"]), RUN_TIMEOUT);
    assert_eq!(not_registered(&r.json()), Vec::<String>::new());
    for id in &f.summary.docker18 {
        let was = before.0.at(Path::new("graph").join(id).join("layer")).mtime_ns;
        let now = snapshot(&p.root.join("aufs/diff").join(id)).at("").mtime_ns;
        assert_eq!(now, was, "aufs/diff/{id}: the layer's mtime changed");
    }
    assert_same(&f.reference.0, &f.aufs(&p.root, FsType::Xfs), "aufs/ on XFS");
    run_command(p.g2a("rollback", &[]), RUN_TIMEOUT).expect_code(0);
    assert_same(&before.0, &p.whole().0, "ROOT after rollback");
    assert_same(&before.1, &p.whole().1, "aufs/ after rollback");
}

#[test]
fn xfs_rollback_after_a_kill_at_every_step_of_a_docker18_migrate_gives_back_the_original() {
    if !require_root() {
        return;
    }
    let disk = AnyFs::new(FsType::Xfs, 300);
    let pristine = disk.path().join("pristine");
    let o = Options {
        seed: 148,
        images: 3,
        max_chain: 2,
        containers: 0,
        entries_per_layer: 4,
        docker18: true,
        ..Options::default()
    };
    let summary = generate(&pristine, &o).unwrap_or_else(|e| panic!("generating: {e}"));
    assert!(!summary.docker18.is_empty());
    let mut n = 0;
    loop {
        let root = disk.path().join(format!("killed-{n}"));
        cp_a(&pristine, &root);
        let diff = root.join("aufs/diff");
        keeping_times(&[&diff], || {
            for id in &summary.docker18 {
                let link = diff.join(id);
                let t = times_of(&link);
                fs::remove_file(&link).unwrap();
                std::os::unix::fs::symlink(layer(&root, id), &link).unwrap();
                set_times(&link, t);
            }
        });
        let before = snapshot(&root);
        let mut cmd = g2a(["migrate".as_ref(), root.as_os_str()]);
        cmd.env("GRAPH2AUFS_KILL_AFTER", n.to_string());
        let killed = run_command(cmd, RUN_TIMEOUT).code != 0;
        run_command(g2a(["rollback".as_ref(), root.as_os_str()]), RUN_TIMEOUT).expect_code(0);
        assert_same(
            &before,
            &snapshot(&root),
            &format!("ROOT on XFS, migrate killed after {n} changes, then rolled back"),
        );
        fs::remove_dir_all(&root).unwrap();
        if !killed {
            break;
        }
        n += 1;
    }
    assert!(
        n >= 10,
        "a full run takes {n} changes: the kill switch seems not to work"
    );
}
