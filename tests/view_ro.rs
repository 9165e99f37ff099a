//! The read-only view, `graph2aufs mount ROOT [MOUNTPOINT] --read-only`, through
//! real FUSE mounts of generated legacy roots (broken items, Docker 1.8
//! leftovers, started and never-started containers): ROOT as `migrate` will
//! leave it, every layer's merged root filesystem, and not one byte written.
//! How mounts start, end and are refused: tests/view_mount.rs.

mod common;
use common::*;

#[path = "view/fixture.rs"]
mod fixture;
#[path = "view/merge.rs"]
mod merge;
use fixture::*;
use merge::*;

use std::collections::{BTreeSet, HashSet};
use std::ffi::{CString, OsStr, OsString};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use g2a_genroot::BrokenKind;
use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, CWD};

// ---------------------------------------------------------------------------
// 1. The view is the migrated tree
// ---------------------------------------------------------------------------

/// Snapshots the view (less `aufs/mnt`) and the migrated copy (less `aufs/mnt`
/// and graph2aufs's record and lock), blanks the mtimes that honestly differ
/// (directories migration changes or creates, `aufs/layers/*` files written
/// at migration time), and requires everything else to match.
#[track_caller]
fn assert_view_is_migrated_tree(view: &Path, migrated: &Path, touched: &HashSet<PathBuf>) {
    let opts = |exclude: &[&str]| SnapOpts {
        exclude: exclude.iter().map(PathBuf::from).collect(),
        ..SnapOpts::default()
    };
    let blank = |path: &Path, e: &mut Entry| {
        let in_own_dirs = path.starts_with(".graph2aufs") && path.iter().count() <= 4;
        let changed_dir = e.kind == Kind::Dir && (touched.contains(path) || in_own_dirs);
        let layers_file = path.parent() == Some(Path::new("aufs/layers"));
        if changed_dir || layers_file {
            e.mtime_ns = 0;
        }
    };
    let shown = snapshot_with(view, &opts(&["aufs/mnt"])).normalized(blank);
    let done = snapshot_with(
        migrated,
        &opts(&["aufs/mnt", ".graph2aufs/record.json", ".graph2aufs/lock"]),
    )
    .normalized(blank);
    assert!(
        shown.keys().any(|p| p.starts_with(".graph2aufs/quarantine/graph")),
        "the view shows the quarantine"
    );
    assert_same(&shown, &done, "the view (a) and the tree migrate produced (b)");
    let mnt_shown = names_in(&view.join("aufs/mnt")).expect("listing aufs/mnt through the view");
    let mnt_done = names_in(&migrated.join("aufs/mnt")).expect("listing the migrated aufs/mnt");
    assert_eq!(
        mnt_shown, mnt_done,
        "aufs/mnt: the view's names and the migrated copy's"
    );
}

#[test]
fn view_at_a_separate_mountpoint_equals_the_migrated_tree_entry_by_entry() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(11);
    let migrated = fx.migrated_copy();
    let touched = fx.dirs_migration_touches();
    let mp = fx.scratch("mp");
    let mount = Mount::start(&fx.root, &mp, &["--read-only"], BOUND);
    assert_view_is_migrated_tree(&mp, &migrated, &touched);
    unmount_cleanly(mount);
}

#[test]
fn view_mounted_over_root_equals_the_migrated_tree_entry_by_entry() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(12);
    let migrated = fx.migrated_copy();
    let touched = fx.dirs_migration_touches();
    let mount = mount_over_root(&fx.root, &["--read-only"]);
    assert_view_is_migrated_tree(&fx.root, &migrated, &touched);
    unmount_cleanly(mount);
}

/// With quarantined images but no quarantined container, `migrate` makes
/// `.graph2aufs/quarantine/graph` and no `quarantine/containers`: the view
/// shows the same.
#[test]
fn the_quarantine_shows_only_what_migrate_quarantines() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(13);
    // No container is quarantined: neither a broken one nor one on a broken image.
    let broken_containers = fx.summary.broken.iter().filter(|(_, k)| {
        matches!(
            k,
            BrokenKind::ContainerUnknownImage
                | BrokenKind::ContainerBadConfig
                | BrokenKind::ContainerRwSymlinkOutside
                | BrokenKind::ContainerIdMismatch
        )
    });
    let blocked = fx.summary.blocked_containers.iter().map(|(c, _)| c);
    for c in broken_containers.map(|(c, _)| c).chain(blocked) {
        let dir = fx.root.join("containers").join(c);
        fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("removing {}: {e}", dir.display()));
    }
    let migrated = fx.migrated_copy();
    let quarantine = Path::new(".graph2aufs/quarantine");
    assert!(
        migrated.join(quarantine).join("graph").is_dir() && !migrated.join(quarantine).join("containers").exists(),
        "migrate quarantined images and no container: {:?}",
        names_in(&migrated.join(quarantine))
    );
    let touched = fx.dirs_migration_touches();
    let mp = fx.scratch("mp");
    let mount = Mount::start(&fx.root, &mp, &["--read-only"], BOUND);
    assert_eq!(
        names_in(&mp.join(quarantine)).expect("listing the view's quarantine"),
        names_in(&migrated.join(quarantine)).expect("listing the migrated quarantine"),
        "{}: the view's names and the migrated copy's",
        quarantine.display()
    );
    assert_view_is_migrated_tree(&mp, &migrated, &touched);
    unmount_cleanly(mount);
}

/// A Docker 1.8 `aufs/layers/<id>` that `migrate` cannot keep in its record
/// (here a directory, not a file) is set aside, untouched, in
/// `.graph2aufs/quarantine/aufs/layers/`: the view shows it there.
#[test]
fn a_layers_entry_migrate_sets_aside_shows_in_the_quarantine() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(14);
    let id = fx
        .summary
        .docker18
        .first()
        .expect("the fixture has Docker 1.8 leftovers")
        .clone();
    let layers = fx.root.join("aufs/layers").join(&id);
    fs::remove_file(&layers).unwrap_or_else(|e| panic!("removing {}: {e}", layers.display()));
    fs::create_dir(&layers).expect("a directory in its place");
    fs::write(layers.join("left-over"), b"not a layers file\n").expect("a file in it");
    let migrated = fx.migrated_copy();
    let aside = Path::new(".graph2aufs/quarantine/aufs/layers").join(&id);
    assert!(migrated.join(&aside).is_dir(), "migrate set {} aside", layers.display());
    let touched = fx.dirs_migration_touches();
    let mp = fx.scratch("mp");
    let mount = Mount::start(&fx.root, &mp, &["--read-only"], BOUND);
    assert!(
        mp.join(&aside).join("left-over").is_file(),
        "the view shows {} with its content",
        aside.display()
    );
    assert_view_is_migrated_tree(&mp, &migrated, &touched);
    unmount_cleanly(mount);
}

// ---------------------------------------------------------------------------
// 2. Merged views
// ---------------------------------------------------------------------------

/// Checks the merged view `aufs/mnt/<id>` of each of `ids` against the
/// test's own aufs merge of the migrated copy's layers. Returns how many
/// hard links they showed and how many init layers' views had `.dockerenv`.
#[track_caller]
fn assert_merged_views(fx: &Fixture, migrated: &Path, mp: &Path, ids: &BTreeSet<OsString>) -> (usize, usize) {
    let mut layers = LayerCache::new();
    let mut hard_links = 0;
    let mut from_init = 0;
    for id in ids {
        let mut dirs = vec![migrated.join("aufs/diff").join(id)];
        for a in ancestors(&migrated.join("aufs/layers").join(id)) {
            dirs.push(migrated.join("aufs/diff").join(a));
        }
        let mut expected = layers.merge(&dirs);
        let mut shown = snapshot(&mp.join("aufs/mnt").join(id));
        if fx.never_started().iter().any(|c| OsStr::new(c) == id) {
            // Its rw layer is created empty by migrate, at migration time;
            // until then the view shows the init layer's root on top.
            expected.get_mut(Path::new("")).expect("a root").mtime_ns = 0;
            shown.get_mut(Path::new("")).expect("a root").mtime_ns = 0;
        }
        assert_same(
            &shown,
            &expected,
            &format!("aufs/mnt/{id:?}: the view (a) and the test's aufs merge (b)"),
        );
        hard_links += shown.values().filter(|e| e.link_group.is_some()).count();
        if id.as_bytes().ends_with(b"-init") {
            from_init += shown.contains_key(Path::new(".dockerenv")) as usize;
        }
    }
    (hard_links, from_init)
}

#[test]
fn merged_views_equal_an_independent_aufs_merge_of_the_migrated_layers() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(21);
    let migrated = fx.migrated_copy();
    let mp = fx.scratch("mp");
    let mount = Mount::start(&fx.root, &mp, &["--read-only"], BOUND);
    let ids = names_in(&migrated.join("aufs/mnt")).expect("listing the migrated aufs/mnt");
    let expected_ids = fx.summary.images.len() + 2 * fx.summary.containers.len();
    assert_eq!(
        ids.len(),
        expected_ids,
        "every image, container and init layer is registered: {ids:?}"
    );
    let (hard_links, from_init) = assert_merged_views(&fx, &migrated, &mp, &ids);
    assert!(hard_links > 0, "some merged view has hard links");
    assert_eq!(
        from_init,
        fx.summary.containers.len(),
        "each init layer's merged view has its .dockerenv"
    );
    unmount_cleanly(mount);
}

/// `.wh..wh..opq` directly in a layer (`graph/<id>/layer/.wh..wh..opq`):
/// aufs never tests a branch's root for it, and Docker's aufs `Changes`
/// skips it as aufs metadata, so the merged views of the layer and of every
/// layer above it still show the lower layers. (Docker's `Diff` keeps the
/// marker, and `migrate` moves it with the rest of the layer.)
#[test]
fn an_opaque_marker_at_a_layer_root_hides_nothing_in_merged_views() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(31);
    let (child, parent) = fx
        .summary
        .images
        .iter()
        .find_map(|id| Some((id.clone(), fx.summary.parents[id].clone()?)))
        .expect("the fixture has an image with a parent");
    let marker = fx.root.join("graph").join(&child).join("layer/.wh..wh..opq");
    fs::write(&marker, b"").expect("writing the marker");
    fs::set_permissions(&marker, fs::Permissions::from_mode(0o444)).expect("chmod");
    let migrated = fx.migrated_copy();
    assert!(
        migrated.join("aufs/diff").join(&child).join(".wh..wh..opq").is_file(),
        "migrate moved the marker with the layer"
    );
    let mp = fx.scratch("mp");
    let mount = Mount::start(&fx.root, &mp, &["--read-only"], BOUND);
    // The child's merged root shows names only its parent's layers have.
    let own = names_in(&fx.root.join("graph").join(&child).join("layer")).expect("listing the child's layer");
    let from_below: Vec<OsString> = names_in(&mp.join("aufs/mnt").join(&parent))
        .expect("listing the parent's merged root")
        .into_iter()
        .filter(|n| {
            let mut whiteout = OsString::from(".wh.");
            whiteout.push(n);
            !own.contains(n) && !own.contains(&whiteout)
        })
        .collect();
    assert!(!from_below.is_empty(), "the parent has names of its own");
    let shown = names_in(&mp.join("aufs/mnt").join(&child)).expect("listing the child's merged root");
    let hidden: Vec<&OsString> = from_below.iter().filter(|n| !shown.contains(*n)).collect();
    assert!(
        hidden.is_empty(),
        "aufs/mnt/{child}: the marker at the layer's root hid its parent's {hidden:?}"
    );
    let ids = names_in(&migrated.join("aufs/mnt")).expect("listing the migrated aufs/mnt");
    assert_merged_views(&fx, &migrated, &mp, &ids);
    unmount_cleanly(mount);
}

// ---------------------------------------------------------------------------
// 3. Nothing is ever written
// ---------------------------------------------------------------------------

/// Reads everything under `dir` as a curious user would: every directory
/// listed, every file read to its end, every symlink's target, every
/// extended attribute. Returns how many entries it saw.
#[track_caller]
fn read_everything(dir: &Path) -> usize {
    let xattrs = |path: &Path| {
        for name in xattr::list(path).unwrap_or_else(|e| panic!("listxattr {}: {e}", path.display())) {
            xattr::get(path, &name).unwrap_or_else(|e| panic!("getxattr {} {name:?}: {e}", path.display()));
        }
    };
    xattrs(dir);
    let mut seen = 0;
    for (rel, meta) in walk(dir) {
        let path = dir.join(rel);
        xattrs(&path);
        let ft = meta.file_type();
        if ft.is_file() {
            let mut bytes = Vec::new();
            fs::File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            assert_eq!(
                bytes.len() as u64,
                meta.len(),
                "{}: read as many bytes as stat says",
                path.display()
            );
        } else if ft.is_symlink() {
            fs::read_link(&path).unwrap_or_else(|e| panic!("readlink {}: {e}", path.display()));
        }
        seen += 1;
    }
    seen
}

fn with_atimes() -> SnapOpts {
    SnapOpts {
        atime: true,
        ..SnapOpts::default()
    }
}

#[test]
fn reading_everything_through_the_view_changes_nothing_in_root() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(31);
    // Snapshots record atimes (symlinks' excepted: readlink(2) updates them).
    let before = snapshot_with(&fx.root, &with_atimes());
    let mp = fx.scratch("mp");
    let mount = Mount::start(&fx.root, &mp, &["--read-only"], BOUND);
    let seen = read_everything(&mp);
    assert!(seen > before.len(), "the merged views add entries: saw {seen}");
    unmount_cleanly(mount);
    assert_same(
        &before,
        &snapshot_with(&fx.root, &with_atimes()),
        "ROOT before (a) and after (b) the reads",
    );
}

/// A read-only bind mount of a directory, detached on drop.
struct ReadOnlyBind(PathBuf);

impl ReadOnlyBind {
    #[track_caller]
    fn new(from: &Path, at: &Path) -> ReadOnlyBind {
        rustix::mount::mount_bind(from, at).unwrap_or_else(|e| panic!("mount --bind {}: {e}", from.display()));
        let bind = ReadOnlyBind(at.to_path_buf());
        let flags = rustix::mount::MountFlags::BIND | rustix::mount::MountFlags::RDONLY;
        rustix::mount::mount_remount(at, flags, "")
            .unwrap_or_else(|e| panic!("mount -o remount,bind,ro {}: {e}", at.display()));
        bind
    }
}

impl Drop for ReadOnlyBind {
    fn drop(&mut self) {
        lazy_umount(&self.0);
    }
}

#[test]
fn reading_everything_through_a_view_of_a_read_only_bind_mount_changes_nothing() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(32);
    let before = snapshot_with(&fx.root, &with_atimes());
    let ro = fx.scratch("ro");
    let bind = ReadOnlyBind::new(&fx.root, &ro);
    let err = fs::write(ro.join("probe"), b"x").expect_err("the bind mount is read-only");
    assert_eq!(
        err.raw_os_error(),
        Some(libc::EROFS),
        "writing into the bind mount: {err}"
    );
    let mp = fx.scratch("mp");
    let mut cmd = g2a([
        OsStr::new("mount"),
        ro.as_os_str(),
        mp.as_os_str(),
        OsStr::new("--foreground"),
    ]);
    cmd.arg("--read-only").env("RUST_LOG", "info");
    let mount = Mount::start_command(cmd, &mp, BOUND);
    let seen = read_everything(&mp);
    assert!(seen > before.len(), "the merged views add entries: saw {seen}");
    let log = mount.log();
    if kernel_has_passthrough() {
        assert!(
            log.contains("passthrough enabled"),
            "on a read-only ROOT with Linux >= 6.9, file data goes through kernel passthrough; the log:\n{log}"
        );
    }
    unmount_cleanly(mount);
    drop(bind);
    assert_same(
        &before,
        &snapshot_with(&fx.root, &with_atimes()),
        "ROOT before (a) and after (b) the reads",
    );
}

// ---------------------------------------------------------------------------
// 4. Writes fail with EROFS
// ---------------------------------------------------------------------------

/// Collects the write attempts that did not fail with EROFS.
struct Refusals(Vec<String>);

impl Refusals {
    fn check<T>(&mut self, what: &str, path: &Path, r: io::Result<T>) {
        match r {
            Err(e) if e.raw_os_error() == Some(libc::EROFS) => {}
            Err(e) => self.0.push(format!("{what} {}: {e}, not EROFS", path.display())),
            Ok(_) => self.0.push(format!("{what} {}: succeeded", path.display())),
        }
    }

    /// Changes of an existing entry's metadata (no symlink followed).
    fn metadata(&mut self, path: &Path, is_symlink: bool) {
        if !is_symlink {
            self.check(
                "chmod",
                path,
                fs::set_permissions(path, fs::Permissions::from_mode(0o600)),
            );
        }
        self.check("chown", path, std::os::unix::fs::lchown(path, Some(1), Some(1)));
        let epoch = Timespec { tv_sec: 0, tv_nsec: 0 };
        let times = Timestamps {
            last_access: epoch,
            last_modification: epoch,
        };
        self.check(
            "utimens",
            path,
            rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(io::Error::from),
        );
        self.check("setxattr", path, xattr::set(path, "user.g2a-test", b"x"));
        self.check("removexattr", path, xattr::remove(path, "user.graph2aufs.test"));
    }

    /// Everything that adds to or removes from a directory, or changes it
    /// (removes it too, unless it is the mount's root: that rmdir is the
    /// parent file system's business).
    fn dir(&mut self, dir: &Path, some_file: &Path, mount_root: bool) {
        let new = |n: &str| dir.join(format!("g2a-new-{n}"));
        self.check(
            "create",
            &new("file"),
            fs::OpenOptions::new().write(true).create_new(true).open(new("file")),
        );
        self.check("mkdir", &new("dir"), fs::create_dir(new("dir")));
        self.check(
            "mknod",
            &new("fifo"),
            rustix::fs::mknodat(CWD, new("fifo"), FileType::Fifo, Mode::from_raw_mode(0o644), 0)
                .map_err(io::Error::from),
        );
        self.check("symlink", &new("symlink"), symlink("target", new("symlink")));
        self.check("link", &new("link"), fs::hard_link(some_file, new("link")));
        self.check("rename into", &new("renamed"), fs::rename(some_file, new("renamed")));
        if !mount_root {
            self.check("rmdir", dir, fs::remove_dir(dir));
        }
        self.metadata(dir, false);
    }

    /// Everything that changes a file or its name.
    fn file(&mut self, file: &Path) {
        let is_symlink = fs::symlink_metadata(file).is_ok_and(|m| m.file_type().is_symlink());
        self.check("unlink", file, fs::remove_file(file));
        self.check("rename", file, fs::rename(file, file.with_extension("g2a-renamed")));
        self.metadata(file, is_symlink);
        if is_symlink {
            return;
        }
        let c = CString::new(file.as_os_str().as_bytes()).expect("no NUL in a path");
        // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
        let truncated = unsafe { libc::truncate(c.as_ptr(), 0) };
        self.check(
            "truncate",
            file,
            if truncated == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            },
        );
        self.check("open O_WRONLY", file, fs::OpenOptions::new().write(true).open(file));
        self.check(
            "open O_RDWR",
            file,
            fs::OpenOptions::new().read(true).write(true).open(file),
        );
        self.check(
            "open O_WRONLY|O_TRUNC",
            file,
            fs::OpenOptions::new().write(true).truncate(true).open(file),
        );
        self.check(
            "open O_RDONLY|O_CREAT",
            file,
            fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_CREAT)
                .open(file.with_extension("g2a-created")),
        );
    }
}

/// The first entry under `dir` (depth first) for which `pick` holds.
#[track_caller]
fn first_under(dir: &Path, pick: impl Fn(&fs::Metadata) -> bool) -> PathBuf {
    let mut all = walk(dir);
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let (rel, _) = all
        .into_iter()
        .find(|(_, m)| pick(m))
        .unwrap_or_else(|| panic!("nothing suitable under {}", dir.display()));
    dir.join(rel)
}

#[test]
fn every_kind_of_write_through_the_view_fails_with_erofs() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(41);
    let before = snapshot(&fx.root);
    let mp = fx.scratch("mp");
    let mount = Mount::start(&fx.root, &mp, &["--read-only"], BOUND);
    let image = fx.summary.images.last().expect("images");
    let container = &fx.summary.containers[0].0;
    let showcase = mp.join("aufs/diff").join(fx.showcase());
    let init = mp.join("aufs/diff").join(format!("{container}-init"));
    let merged = mp.join("aufs/mnt").join(container);
    let quarantined = mp
        .join(".graph2aufs/quarantine/graph")
        .join(fx.broken(BrokenKind::InvalidJson));
    let is_file = |m: &fs::Metadata| m.is_file();
    let is_dir = |m: &fs::Metadata| m.is_dir();
    let mut r = Refusals(Vec::new());
    // Directories: real, synthesized, the data of a layer, an init layer, a
    // merged view, the quarantine, and the mount's root.
    let json = mp.join("graph").join(image).join("json");
    for dir in [
        mp.clone(),
        mp.join("graph").join(image),
        mp.join("aufs/layers"),
        mp.join("aufs/diff").join(image),
        first_under(&showcase, is_dir),
        init.clone(),
        first_under(&init, is_dir),
        merged.clone(),
        first_under(&merged, is_dir),
        quarantined.clone(),
    ] {
        r.dir(&dir, &json, dir == mp);
    }
    // Files: real, renamed, synthesized (layers, init layer), layer data, a
    // file with xattrs, a symlink, merged, quarantined.
    for file in [
        json.clone(),
        mp.join("repositories-aufs"),
        mp.join("aufs/layers").join(image),
        first_under(&init, is_file),
        first_under(&showcase, is_file),
        showcase.join("etc/showcase.conf"),
        first_under(&showcase, |m| m.file_type().is_symlink()),
        first_under(&merged, is_file),
        first_under(&quarantined, is_file),
    ] {
        r.file(&file);
    }
    assert!(
        r.0.is_empty(),
        "writes through the view that did not fail with EROFS:\n{}",
        r.0.join("\n")
    );
    unmount_cleanly(mount);
    assert_same(
        &before,
        &snapshot(&fx.root),
        "ROOT before (a) and after (b) the attempts",
    );
}

// ---------------------------------------------------------------------------
// 5. Inodes, link counts and symlinks pass through
// ---------------------------------------------------------------------------

#[test]
fn inode_numbers_link_counts_and_symlink_targets_pass_through_unchanged() {
    if !require_root_and_fuse() {
        return;
    }
    let fx = Fixture::new(51);
    let disk = walk(&fx.root);
    let mp = fx.scratch("mp");
    let mount = Mount::start(&fx.root, &mp, &["--read-only"], BOUND);
    let mut wrong = Vec::new();
    let (mut linked, mut symlinks, mut outside) = (0, 0, 0);
    let outside_dir = fx.summary.outside.as_ref().expect("broken items point outside ROOT");
    for (rel, meta) in &disk {
        let Some(shown) = fx.in_view(rel) else { continue };
        let path = mp.join(&shown);
        let view = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                wrong.push(format!("{}: {e}", show(&shown)));
                continue;
            }
        };
        if view.file_type() != meta.file_type() || view.ino() != meta.ino() {
            wrong.push(format!(
                "{} ({}): {:?} ino {} on disk, {:?} ino {} in the view",
                show(&shown),
                show(rel),
                meta.file_type(),
                meta.ino(),
                view.file_type(),
                view.ino()
            ));
        }
        if !meta.is_dir() && view.nlink() != meta.nlink() {
            wrong.push(format!(
                "{}: nlink {} on disk, {} in the view",
                show(&shown),
                meta.nlink(),
                view.nlink()
            ));
        }
        linked += usize::from(meta.is_file() && meta.nlink() > 1);
        if meta.file_type().is_symlink() {
            symlinks += 1;
            let target = fs::read_link(fx.root.join(rel)).expect("readlink on the disk");
            outside += usize::from(target.starts_with(outside_dir) || target.starts_with("/nonexistent"));
            match fs::read_link(&path) {
                Ok(t) if t == target => {}
                other => wrong.push(format!(
                    "{}: readlink {other:?}, the disk says {target:?}",
                    show(&shown)
                )),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the view differs from the disk:\n{}",
        wrong.join("\n")
    );
    assert!(
        linked >= 2 && symlinks >= 5 && outside >= 3,
        "linked {linked}, symlinks {symlinks}, outside {outside}"
    );
    // A legacy layer that is a symlink out of ROOT stays that symlink, in the
    // quarantine: the view never follows it, nor lists what it points to.
    for (kind, leaf, id) in [
        ("graph", "layer", fx.broken(BrokenKind::LayerSymlinkOutside)),
        ("containers", "rw", fx.broken(BrokenKind::ContainerRwSymlinkOutside)),
    ] {
        let q = mp.join(".graph2aufs/quarantine").join(kind).join(id).join(leaf);
        let m = fs::symlink_metadata(&q).unwrap_or_else(|e| panic!("lstat {}: {e}", q.display()));
        assert!(
            m.file_type().is_symlink(),
            "{} is shown as the symlink it is",
            q.display()
        );
        let err = fs::symlink_metadata(mp.join("aufs/diff").join(id)).expect_err("no aufs/diff for a broken item");
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "aufs/diff/{id}: {err}");
    }
    unmount_cleanly(mount);
}

// ---------------------------------------------------------------------------
// 6. Concurrent readers
// ---------------------------------------------------------------------------

/// What the readers check, prepared from the disk before the mount.
struct Expected {
    /// (through the view, on the disk)
    files: Vec<(PathBuf, PathBuf)>,
    /// (through the view, inode number, size)
    stats: Vec<(PathBuf, u64, u64)>,
    /// (through the view, names)
    dirs: Vec<(PathBuf, BTreeSet<OsString>)>,
    merged_dirs: Vec<(PathBuf, BTreeSet<OsString>)>,
    /// (through the view, sha256)
    merged_files: Vec<(PathBuf, [u8; 32])>,
}

impl Expected {
    fn new(fx: &Fixture, mp: &Path) -> Expected {
        let mut e = Expected {
            files: Vec::new(),
            stats: Vec::new(),
            dirs: Vec::new(),
            merged_dirs: Vec::new(),
            merged_files: Vec::new(),
        };
        for (rel, meta) in walk(&fx.root) {
            let Some(shown) = fx.in_view(&rel) else { continue };
            let (disk, view) = (fx.root.join(&rel), mp.join(&shown));
            e.stats.push((view.clone(), meta.ino(), meta.len()));
            let in_layer = rel.iter().nth(2).is_some_and(|c| c == "layer" || c == "rw");
            if meta.is_file() {
                e.files.push((view, disk));
            } else if meta.is_dir() && in_layer {
                e.dirs.push((view, names_in(&disk).expect("listing the disk")));
            }
        }
        // Each good image's merged view, from its legacy layers on the disk.
        let mut layers = LayerCache::new();
        for id in &fx.summary.images {
            let mut dirs = Vec::new();
            let mut cur = Some(id.clone());
            while let Some(i) = cur {
                dirs.push(fx.root.join("graph").join(&i).join("layer"));
                cur = fx.summary.parents[&i].clone();
            }
            let merged = layers.merge(&dirs);
            let kids = children(&merged);
            let base = mp.join("aufs/mnt").join(id);
            for (path, entry) in merged.iter() {
                match entry.kind {
                    Kind::Dir => {
                        let names = kids.get(path).into_iter().flatten().cloned().collect();
                        e.merged_dirs.push((base.join(path), names));
                    }
                    Kind::File => e
                        .merged_files
                        .push((base.join(path), entry.content.expect("a file's hash"))),
                    _ => {}
                }
            }
        }
        e
    }
}

/// A small deterministic generator of indices (xorshift64*).
struct Dice(u64);

impl Dice {
    fn pick(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// One random read through the view; a description of what went wrong, if anything.
fn one_read(e: &Expected, dice: &mut Dice) -> Option<String> {
    match dice.pick(5) {
        0 => {
            let (view, disk) = &e.files[dice.pick(e.files.len())];
            match (fs::read(view), fs::read(disk)) {
                (Ok(a), Ok(b)) if a == b => None,
                (Ok(a), Ok(b)) => Some(format!(
                    "{}: {} bytes, the disk has {}",
                    view.display(),
                    a.len(),
                    b.len()
                )),
                (a, b) => Some(format!("{}: {:?} / disk {:?}", view.display(), a.err(), b.err())),
            }
        }
        1 => {
            let (view, ino, size) = &e.stats[dice.pick(e.stats.len())];
            match fs::symlink_metadata(view) {
                Ok(m) if m.ino() == *ino && m.len() == *size => None,
                Ok(m) => Some(format!(
                    "{}: ino {} size {}, want {ino} {size}",
                    view.display(),
                    m.ino(),
                    m.len()
                )),
                Err(err) => Some(format!("lstat {}: {err}", view.display())),
            }
        }
        2 | 3 => {
            let list = if e.merged_dirs.is_empty() || dice.pick(2) == 0 {
                &e.dirs
            } else {
                &e.merged_dirs
            };
            let (view, names) = &list[dice.pick(list.len())];
            match names_in(view) {
                Ok(n) if n == *names => None,
                Ok(n) => Some(format!("{}: lists {n:?}, want {names:?}", view.display())),
                Err(err) => Some(format!("listing {}: {err}", view.display())),
            }
        }
        _ => {
            let (view, hash) = &e.merged_files[dice.pick(e.merged_files.len())];
            match sha256_of(view) {
                Ok(h) if h == *hash => None,
                Ok(_) => Some(format!("{}: other contents than its layer's", view.display())),
                Err(err) => Some(format!("reading {}: {err}", view.display())),
            }
        }
    }
}

#[test]
fn concurrent_readers_see_the_disk_contents_without_errors() {
    if !require_root_and_fuse() {
        return;
    }
    const READERS: u64 = 8;
    const FOR: Duration = Duration::from_secs(3);
    let fx = Fixture::new(61);
    let mp = fx.scratch("mp");
    let expected = Expected::new(&fx, &mp);
    assert!(!expected.dirs.is_empty() && !expected.merged_files.is_empty());
    let mount = Mount::start(&fx.root, &mp, &["--read-only"], BOUND);
    let errors = Mutex::new(Vec::new());
    let deadline = Instant::now() + FOR;
    let reads: usize = thread::scope(|s| {
        let readers: Vec<_> = (0..READERS)
            .map(|t| {
                let (expected, errors) = (&expected, &errors);
                s.spawn(move || {
                    let mut dice = Dice(0x9e37_79b9_7f4a_7c15 ^ (t + 1));
                    let mut n = 0;
                    while Instant::now() < deadline {
                        if let Some(err) = one_read(expected, &mut dice) {
                            errors
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(format!("reader {t}: {err}"));
                        }
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        readers.into_iter().map(|r| r.join().expect("a reader panicked")).sum()
    });
    let errors = errors.into_inner().unwrap_or_else(|e| e.into_inner());
    assert!(
        errors.is_empty(),
        "{} of {reads} reads went wrong, the first:\n{}",
        errors.len(),
        errors[..errors.len().min(20)].join("\n")
    );
    assert!(reads >= 8 * READERS as usize, "only {reads} reads in {FOR:?}");
    unmount_cleanly(mount);
}
