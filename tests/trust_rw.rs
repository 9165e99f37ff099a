//! Trust in the read-write view (issue 7), through real FUSE mounts of
//! generated legacy roots, always against the native file system: the same
//! thing is done natively and through the view and the outcomes compared
//! (nothing is expected from memory).
//!
//! 1. A differential tester (`trust_rw/ops.rs`, `trust_rw/differ.rs`): a
//!    seeded random sequence of file operations (open with O_CREAT, O_EXCL,
//!    O_TRUNC, O_APPEND, O_NOFOLLOW, O_DIRECTORY; reads and writes at
//!    offsets, lseek, truncate and ftruncate, fallocate, fsync; mkdir,
//!    rmdir, unlink; rename over entries and across directories, with
//!    RENAME_NOREPLACE, RENAME_EXCHANGE and RENAME_WHITEOUT; link, symlink,
//!    readlink; chmod, chown, utimensat and their f* forms; user.* and
//!    trusted.* xattrs; mknod of FIFOs, devices and sockets; stat, readdir,
//!    access) applied to a native copy of a layer and to the layer through
//!    the view: every return value and errno must match, and the trees at
//!    the end (contents, modes, owners, sizes, link counts and hard-link
//!    groups, xattrs, mtimes), through the view and on the disk. Run inside
//!    a legacy-backed layer (still at `graph/<id>/layer`), a migrated one, a
//!    synthesized init layer (the first change migrates it), a layer the
//!    background migration moves mid-sequence, a layer copied to another
//!    file system and switched to its copy mid-sequence, a migrated one
//!    with file data served by graph2aufs (`--no-passthrough`), and as an
//!    unprivileged user after root mixed owners and modes. Every run prints its seed;
//!    `TRUST_RW_SEED=N` replays it, `TRUST_RW_KEEP_GOING=1` prints every
//!    difference instead of stopping at the first, `TRUST_RW_VERBOSE=1`
//!    counts operations and errnos, `TRUST_RW_SERVER_LOG=debug` logs every
//!    request in a failing test's server log.
//! 2. POSIX behaviour Docker and its tools rely on (`trust_rw/posix.rs`):
//!    permissions with default_permissions for another user (supplementary
//!    groups included), sticky and setgid directories, setuid and setgid
//!    bits cleared by others' writes, time updates, link counts, rename
//!    atomicity, O_APPEND from threads, O_EXCL races, O_TMPFILE with linkat,
//!    fcntl (POSIX and OFD) and flock locks between processes, mmap
//!    coherence, names of 255 bytes and paths deeper than PATH_MAX, unicode
//!    and non-UTF-8 names, SEEK_DATA and SEEK_HOLE.
//! 3. stress-ng's file system, lock, mmap and seek stressors through the
//!    view, with --verify.
//!
//! Also, each alone, what the differential runs found in the view's own
//! machinery: a file replaced behind the view (graph2aufs's own status
//! file) taking over a new file's inode number, an init layer's directory
//! link counts before its first change, a file of an init layer held open
//! across its migration, the times of truncations to a file's own size and
//! of O_TRUNC opens on each kind of file system (truncate(2), ftruncate(2)
//! and open(O_TRUNC) differ there).

mod common;
use common::*;

#[path = "trust_rw/differ.rs"]
mod differ;
#[path = "trust_rw/ops.rs"]
mod ops;
#[path = "trust_rw/posix.rs"]
mod posix;
#[path = "trust_rw/scene.rs"]
mod scene;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use differ::{seed, Differ};
use ops::{Clock, Op, P};
use scene::{copy_tree, options, Scene};

/// Operations per differential run.
const OPS: usize = 3000;

/// Runs `n` operations of the sequence.
fn steps(d: &mut Differ, n: usize) {
    for _ in 0..n {
        d.step();
    }
}

fn report(test: &str, d: &Differ, extra: &str) {
    loud(&format!("[{test}] seed {}: {}{extra}", d.seed, d.tally.line()));
    if std::env::var_os("TRUST_RW_VERBOSE").is_some() {
        loud(&format!("  kinds {:?}\n  errnos {:?}", d.tally.kinds, d.tally.errnos));
    }
}

/// A native copy (`cp -a`, through the view) of the view's `layer`, and a
/// differential run over the two.
#[track_caller]
fn differ_over(test: &str, salt: u64, scene: &Scene, layer: &Path) -> Differ {
    let native = scene.dir.path().join("native");
    copy_tree(layer, &native);
    Differ::new(test, seed(test, salt), &native, layer, Clock::now())
}

#[test]
fn differential_in_a_legacy_backed_layer() {
    let test = &test_name();
    if !require_root_and_fuse() {
        return;
    }
    let scene = Scene::new(&options(21, 6, 2));
    let id = scene.showcase();
    // Slow enough that the background migration never reaches it.
    let view = scene.mount(&[("GRAPH2AUFS_ITEM_DELAY_MS", "600000")]);
    let layer = scene.mp.join("aufs/diff").join(&id);
    let mut d = differ_over(test, 1, &scene, &layer);
    d.compare_trees(&scene.dir.path().join("native"), &layer, "the native copy");
    steps(&mut d, OPS);
    d.release();
    let native = scene.dir.path().join("native");
    d.compare_trees(&native, &layer, "through the view");
    assert_eq!(scene.state(&id), "pending", "the layer stayed where it was");
    view.unmount();
    d.compare_trees(
        &native,
        &scene.root.join("graph").join(&id).join("layer"),
        "graph/<id>/layer on the disk after unmounting",
    );
    report(test, &d, "");
}

#[test]
fn differential_in_a_migrated_layer() {
    differential_in_a_migrated_layer_with("differential_in_a_migrated_layer", 2, &[]);
}

/// File data served by graph2aufs, not passed through by the kernel: opens
/// (O_TRUNC ones among them), reads and writes take the other path.
#[test]
fn differential_in_a_migrated_layer_without_passthrough() {
    differential_in_a_migrated_layer_with(
        "differential_in_a_migrated_layer_without_passthrough",
        6,
        &["--no-passthrough"],
    );
}

fn differential_in_a_migrated_layer_with(test: &str, salt: u64, args: &[&str]) {
    if !require_root_and_fuse() {
        return;
    }
    let scene = Scene::new(&options(22, 6, 2));
    let id = scene.showcase();
    let view = scene.mount_with(args, &[]);
    scene.wait_finished(&view);
    let layer = scene.mp.join("aufs/diff").join(&id);
    let mut d = differ_over(test, salt, &scene, &layer);
    d.compare_trees(&scene.dir.path().join("native"), &layer, "the native copy");
    steps(&mut d, OPS);
    d.release();
    let native = scene.dir.path().join("native");
    d.compare_trees(&native, &layer, "through the view");
    view.unmount();
    d.compare_trees(
        &native,
        &scene.root.join("aufs/diff").join(&id),
        "aufs/diff/<id> on the disk after unmounting",
    );
    report(test, &d, "");
}

#[test]
fn differential_in_an_init_layer_that_the_first_change_migrates() {
    let test = &test_name();
    if !require_root_and_fuse() {
        return;
    }
    let scene = Scene::new(&options(23, 6, 3));
    let (cid, _) = scene.started_container();
    let init = format!("{cid}-init");
    let view = scene.mount(&[("GRAPH2AUFS_ITEM_DELAY_MS", "600000")]);
    let layer = scene.mp.join("aufs/diff").join(&init);
    let mut d = differ_over(test, 3, &scene, &layer);
    assert_eq!(scene.state(&cid), "pending", "reading the init layer migrates nothing");
    // The first change: a file created in the synthesized layer.
    // The first change: a file created in the synthesized layer (its
    // times, and the layer root's, then set: they compare exactly).
    let at = ops::T::At(1_300_000_000, 123);
    for op in [
        open("trust-rw-first", libc::O_CREAT | libc::O_WRONLY, 0o644, 0),
        Op::Futimens {
            slot: 0,
            atime: at,
            mtime: at,
        },
        Op::Close { slot: 0 },
        Op::Utimens {
            path: p("."),
            atime: at,
            mtime: at,
            follow: false,
        },
    ] {
        d.apply(op);
    }
    assert_eq!(
        scene.state(&cid),
        "registered",
        "the first change migrated the container"
    );
    // Every entry was just made by the migration (ctimes of now, which no
    // copy can keep): from here on, "changed during the run" means since.
    d.restart_clock();
    // What the view showed before the change (copied natively) is what it
    // shows now, with the new file. (Directory link counts before the
    // change: an_init_layer_shows_before_its_first_change_what_it_holds_after.)
    d.compare_trees(&scene.dir.path().join("native"), &layer, "after the first change");
    steps(&mut d, OPS);
    d.release();
    let native = scene.dir.path().join("native");
    d.compare_trees(&native, &layer, "through the view");
    view.unmount();
    d.compare_trees(
        &native,
        &scene.root.join("aufs/diff").join(&init),
        "aufs/diff/<cid>-init on the disk after unmounting",
    );
    report(test, &d, "");
}

#[test]
fn differential_in_a_layer_that_the_background_migration_moves_meanwhile() {
    let test = &test_name();
    if !require_root_and_fuse() {
        return;
    }
    let scene = Scene::new(&options(24, 14, 2));
    // Images migrate parents first, in the summary's order, one every
    // ITEM_DELAY: this one moves a moment after the operations begin.
    let id = scene.summary.images[9].clone();
    let legacy = scene.root.join("graph").join(&id).join("layer");
    let view = scene.mount(&[("GRAPH2AUFS_ITEM_DELAY_MS", "40")]);
    let layer = scene.mp.join("aufs/diff").join(&id);
    let mut d = differ_over(test, 4, &scene, &layer);
    d.compare_trees(&scene.dir.path().join("native"), &layer, "the native copy");
    assert!(
        fs::symlink_metadata(&legacy).is_ok(),
        "the layer moved before the first operation: start it later in the order"
    );
    let mut moved_at = None;
    while moved_at.is_none_or(|m| d.tally.ops < m + OPS) {
        d.step();
        if moved_at.is_none() && d.tally.ops % 8 == 0 && fs::symlink_metadata(&legacy).is_err() {
            moved_at = Some(d.tally.ops);
        }
        assert!(
            d.tally.ops < 20 * OPS,
            "the layer never moved during {} operations",
            d.tally.ops
        );
    }
    let moved_at = moved_at.expect("set above");
    d.release();
    let native = scene.dir.path().join("native");
    d.compare_trees(&native, &layer, "through the view");
    scene.wait_finished(&view);
    d.compare_trees(&native, &layer, "through the view once every item migrated");
    view.unmount();
    d.compare_trees(
        &native,
        &scene.root.join("aufs/diff").join(&id),
        "aufs/diff/<id> on the disk after unmounting",
    );
    report(test, &d, &format!("; the layer moved after operation {moved_at}"));
    assert!(moved_at >= 50, "too few operations before the move ({moved_at})");
}

#[test]
fn differential_in_a_layer_copied_to_another_file_system_and_switched_meanwhile() {
    let test = &test_name();
    if !require_root_and_fuse() {
        return;
    }
    // One kind of file system throughout, whatever $TMPDIR is on: ROOT and
    // the native side on one ext4, `aufs/` on another (layers are copied
    // there, and switched). A differential needs the same kind on both sides:
    // truncating an empty file to 0 moves its mtime on ext4, not on tmpfs,
    // and fallocate's modes differ between kinds. (Declared before the view:
    // unmounted after it.)
    let disk = LoopFs::new(2048, "ext4");
    let scene = Scene::new_in(disk.path(), &options(25, 14, 2));
    let space = LoopFs::new(2048, "ext4");
    let aufs = BindAt::new(space.path(), &scene.root.join("aufs"));
    let id = scene.summary.images[9].clone();
    let legacy = scene.root.join("graph").join(&id).join("layer");
    // A copy that takes a while (2 MiB at 1 MiB/s): operations run while
    // the layer is in transit, and after it switched.
    fs::write(legacy.join("ballast"), vec![7u8; 2 << 20]).unwrap();
    let view = scene.mount_with(&["--copy-rate", "1M"], &[("GRAPH2AUFS_ITEM_DELAY_MS", "40")]);
    let layer = scene.mp.join("aufs/diff").join(&id);
    let mut d = differ_over(test, 5, &scene, &layer);
    d.compare_trees(&scene.dir.path().join("native"), &layer, "the native copy");
    assert!(
        fs::symlink_metadata(&legacy).is_ok(),
        "the layer switched before the first operation: start it later in the order"
    );
    let (mut copying_at, mut switched_at) = (None, None);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    // (Diagnosis: `TRUST_RW_CHECK_EVERY=N` compares the trees every N
    // operations, to find the first that made them drift apart.)
    let check_every: Option<usize> = std::env::var("TRUST_RW_CHECK_EVERY").ok().and_then(|v| v.parse().ok());
    while switched_at.is_none_or(|m| d.tally.ops < m + OPS) {
        d.step();
        if let Some(n) = check_every.filter(|&n| d.tally.ops % n == 0) {
            let what = format!("checked every {n} operations (copying at {copying_at:?}, switched at {switched_at:?})");
            let on_disk = scene.root.join("aufs/diff").join(&id);
            if switched_at.is_some() && on_disk.is_dir() {
                // (Also on the disk, past the view, where the layer is.)
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    d.compare_trees(
                        &scene.dir.path().join("native"),
                        &on_disk,
                        &format!("{what}, on the disk"),
                    )
                }));
                if r.is_err() {
                    loud("(the copy on the disk differs: see above)");
                }
            }
            d.compare_trees(&scene.dir.path().join("native"), &layer, &what);
        }
        if switched_at.is_none() && d.tally.ops % 8 == 0 {
            if copying_at.is_none() && scene.state(&id) == "copying" {
                copying_at = Some(d.tally.ops);
            }
            if fs::symlink_metadata(&legacy).is_err() {
                switched_at = Some(d.tally.ops);
                // The copy made every entry anew (its ctimes are the
                // copy's): from here on, a ctime is recent if changed since.
                d.restart_ctime_clock();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the layer never switched during {} operations ({}):\n{}",
            d.tally.ops,
            scene.state(&id),
            view.log()
        );
    }
    let (copying_at, switched_at) = (copying_at.expect("seen copying"), switched_at.expect("set above"));
    d.release();
    let native = scene.dir.path().join("native");
    d.compare_trees(&native, &layer, "through the view");
    scene.wait_finished(&view);
    d.compare_trees(&native, &layer, "through the view once every item migrated");
    let log = view.log();
    view.unmount();
    let on_disk = scene.root.join("aufs/diff").join(&id);
    d.compare_trees(&native, &on_disk, "aufs/diff/<id> on the disk after unmounting");
    assert_ne!(
        fs::metadata(&on_disk).unwrap().dev(),
        fs::metadata(scene.root.join("graph")).unwrap().dev(),
        "the layer is on the other file system"
    );
    let switch = log
        .lines()
        .find(|l| l.contains("switched to its copy") && l.contains(&format!("graph/{id}/")))
        .unwrap_or_else(|| panic!("no switch of {id} in the log:\n{log}"));
    report(
        test,
        &d,
        &format!("; in transit from operation {copying_at}, switched by {switched_at}: {switch}"),
    );
    assert!(switched_at >= copying_at + 16, "too few operations while in transit");
    drop(aufs);
}

// ---------------------------------------------------------------------------
// Explicit sequences: the same operations, natively and through the view
// ---------------------------------------------------------------------------

fn p(s: &str) -> P {
    P(s.as_bytes().to_vec())
}

fn open(path: &str, flags: i32, mode: u32, slot: usize) -> Op {
    Op::Open {
        path: p(path),
        flags: flags as u32,
        mode,
        slot,
    }
}

fn stat(path: &str) -> Op {
    Op::Stat {
        path: p(path),
        follow: false,
    }
}

/// A file made by root with `mode`, owner and some content.
fn file_ops(path: &str, uid: u32, gid: u32, mode: u32) -> Vec<Op> {
    vec![
        open(path, libc::O_CREAT | libc::O_WRONLY | libc::O_EXCL, 0o600, 3),
        Op::Write {
            slot: 3,
            len: 300,
            fill: path.len() as u8,
        },
        Op::Close { slot: 3 },
        Op::Chown {
            path: p(path),
            uid: Some(uid),
            gid: Some(gid),
            follow: false,
        },
        Op::Chmod { path: p(path), mode },
        stat(path),
    ]
}

fn dir_ops(path: &str, uid: u32, gid: u32, mode: u32) -> Vec<Op> {
    vec![
        Op::Mkdir {
            path: p(path),
            mode: 0o700,
        },
        Op::Chown {
            path: p(path),
            uid: Some(uid),
            gid: Some(gid),
            follow: false,
        },
        Op::Chmod { path: p(path), mode },
        stat(path),
    ]
}

/// A scene with a view mounted (nothing migrates: every layer stays where
/// it is, legacy-backed) and, for a test named `name`, an empty directory
/// in a layer through the view and a native one beside ROOT, both 0755
/// root:root.
struct Pair {
    name: String,
    // Dropped before the scene: the scene's directory is removed on drop,
    // and must not be walked through a view still mounted in it.
    view: Mount,
    scene: Scene,
    native: std::path::PathBuf,
    viewed: std::path::PathBuf,
}

impl Pair {
    #[track_caller]
    fn new(name: &str) -> Pair {
        Pair::new_in(name, &std::env::temp_dir())
    }

    /// [`Pair::new`] with the scene under `base` (a file system of a given
    /// kind: the native side and ROOT are on it).
    #[track_caller]
    fn new_in(name: &str, base: &Path) -> Pair {
        Pair::new_with(name, base, &[])
    }

    /// [`Pair::new_in`] with more arguments for `graph2aufs mount`.
    #[track_caller]
    fn new_with(name: &str, base: &Path, args: &[&str]) -> Pair {
        let scene = Scene::new_in(base, &options(31, 3, 1));
        let view = scene.mount_with(args, &[("GRAPH2AUFS_ITEM_DELAY_MS", "600000")]);
        let viewed = scene.mp.join("aufs/diff").join(scene.showcase()).join(name);
        fs::create_dir(&viewed).unwrap_or_else(|e| panic!("mkdir {} through the view: {e}", viewed.display()));
        scene::open_to_all(&viewed);
        let native = scene.native_dir(name);
        Pair {
            name: name.to_string(),
            view,
            scene,
            native,
            viewed,
        }
    }

    fn differ(&self, test: &str) -> Differ {
        Differ::new(test, 0, &self.native, &self.viewed, Clock::now())
    }

    /// Both trees compared, the view unmounted, and the disk compared.
    #[track_caller]
    fn finish(self, mut d: Differ) {
        d.release();
        d.compare_trees(&self.native, &self.viewed, "through the view");
        let Pair {
            name,
            scene,
            view,
            native,
            ..
        } = self;
        view.unmount();
        let disk = scene.root.join("graph").join(scene.showcase()).join("layer").join(name);
        d.compare_trees(&native, &disk, "on the disk after unmounting");
    }
}

#[test]
fn differential_as_an_unprivileged_user_after_root_mixed_owners_and_modes() {
    let test = &test_name();
    if !require_root_and_fuse() {
        return;
    }
    use posix::{OTHER, USER};
    let scene = Scene::new(&options(25, 4, 2));
    // A container's rw layer, still at containers/<id>/rw.
    let (cid, _) = scene.started_container();
    let view = scene.mount(&[("GRAPH2AUFS_ITEM_DELAY_MS", "600000")]);
    let layer = scene.mp.join("aufs/diff").join(&cid);
    let mut d = differ_over(test, 5, &scene, &layer);
    d.compare_trees(&scene.dir.path().join("native"), &layer, "the native copy");
    // Root makes the user a home, a setgid directory of its group and a
    // sticky one, then gives the whole tree mixed owners and modes (chown
    // to the user and others, sticky bits, 0 modes; setuid and setgid bits
    // and trusted.* attributes are the subject of
    // writes_by_another_user_clear_setuid_and_setgid_bits_as_natively and
    // extended_attributes_for_another_user_as_natively)...
    d.gen.no_setid_modes = true;
    d.gen.trusted_xattrs = false;
    let mut setup = dir_ops("home", USER, OTHER, 0o755);
    setup.extend(dir_ops("team", 0, OTHER, 0o2775));
    setup.extend(dir_ops("tmp", 0, 0, 0o1777));
    setup.extend(file_ops("tmp/roots", 0, 0, 0o666));
    for op in setup {
        d.apply(op);
    }
    steps(&mut d, OPS / 5);
    // ... then the user works in it: EACCES and EPERM galore, files it
    // creates are its own, setgid directories give their group. (Its
    // group is its primary one here: access through a supplementary group
    // is checked by permissions_sticky_and_setgid_directories_for_another_user_as_natively.)
    d.gen.as_root = false;
    d.gen.prefer(&["home", "team", "tmp"]);
    let user_ops = OPS;
    posix::as_user(USER, OTHER, &[OTHER], || steps(&mut d, user_ops));
    d.release();
    let native = scene.dir.path().join("native");
    d.compare_trees(&native, &layer, "through the view");
    view.unmount();
    d.compare_trees(
        &native,
        &scene.root.join("containers").join(&cid).join("rw"),
        "containers/<id>/rw on the disk after unmounting",
    );
    report(test, &d, &format!(" (the last {user_ops} as uid {USER})"));
}

#[test]
fn permissions_sticky_and_setgid_directories_for_another_user_as_natively() {
    let test = &test_name();
    if !require_root_and_fuse() {
        return;
    }
    use posix::{OTHER, USER};
    let pair = Pair::new("perm");
    let mut d = pair.differ(test);
    let dirs: &[(&str, u32, u32, u32)] = &[
        ("pub", 0, 0, 0o777),
        ("sticky", 0, 0, 0o1777),
        ("mine", USER, USER, 0o700),
        ("group", 0, OTHER, 0o770),
        ("groupro", 0, OTHER, 0o750),
        ("closed", 0, 0, 0o700),
        ("setgid", 0, OTHER, 0o2775),
        ("searchonly", 0, 0, 0o711),
    ];
    let files: &[(&str, u32, u32, u32)] = &[
        ("root644", 0, 0, 0o644),
        ("root600", 0, 0, 0o600),
        ("root666", 0, 0, 0o666),
        ("user600", USER, USER, 0o600),
        ("other660", OTHER, OTHER, 0o660),
        ("grp640", 0, OTHER, 0o640),
        ("suid", 0, OTHER, 0o6775),
        ("usersuid", USER, OTHER, 0o6775),
    ];
    for (dir, uid, gid, mode) in dirs {
        let mut ops = dir_ops(dir, 0, 0, 0o755);
        for (f, fu, fg, fm) in files {
            ops.extend(file_ops(&format!("{dir}/{f}"), *fu, *fg, *fm));
        }
        ops.extend(dir_ops(&format!("{dir}/sub"), *uid, *gid, 0o755));
        ops.push(Op::Chown {
            path: p(dir),
            uid: Some(*uid),
            gid: Some(*gid),
            follow: false,
        });
        ops.push(Op::Chmod {
            path: p(dir),
            mode: *mode,
        });
        for op in ops {
            d.apply(op);
        }
    }
    let mut user = Vec::new();
    for (dir, ..) in dirs {
        let at = |n: &str| format!("{dir}/{n}");
        user.push(Op::Readdir { path: p(dir) });
        user.push(open(&at("new"), libc::O_CREAT | libc::O_WRONLY, 0o664, 0));
        user.push(Op::Write {
            slot: 0,
            len: 100,
            fill: 7,
        });
        user.push(Op::Close { slot: 0 });
        user.push(stat(&at("new")));
        user.push(Op::Mkdir {
            path: p(&at("newdir")),
            mode: 0o2775,
        });
        user.push(stat(&at("newdir")));
        user.push(Op::Mknod {
            path: p(&at("fifo")),
            node: ops::Node::Fifo,
            mode: 0o2664,
        });
        user.push(stat(&at("fifo")));
        user.push(Op::Symlink {
            target: p("new"),
            path: p(&at("link")),
        });
        user.push(stat(&at("link")));
        for (f, ..) in files {
            let f = at(f);
            for flags in [
                libc::O_RDONLY,
                libc::O_WRONLY,
                libc::O_RDWR | libc::O_APPEND,
                libc::O_WRONLY | libc::O_TRUNC,
            ] {
                user.push(open(&f, flags, 0, 1));
                user.push(Op::Read { slot: 1, len: 50 });
                user.push(Op::Write {
                    slot: 1,
                    len: 20,
                    fill: 1,
                });
                user.push(Op::Close { slot: 1 });
                user.push(stat(&f));
            }
            for mode in [0, 2, 4, 1, 6] {
                user.push(Op::Access { path: p(&f), mode });
            }
            user.push(Op::Truncate { path: p(&f), len: 10 });
            user.push(stat(&f));
            user.push(Op::Utimens {
                path: p(&f),
                atime: ops::T::Now,
                mtime: ops::T::Now,
                follow: false,
            });
            user.push(Op::Utimens {
                path: p(&f),
                atime: ops::T::At(1_000_000_000, 5),
                mtime: ops::T::At(1_100_000_000, 7),
                follow: false,
            });
            user.push(stat(&f));
            user.push(Op::Setxattr {
                path: p(&f),
                name: "user.a",
                value: ops::Digest(b"v".to_vec()),
                flags: 0,
                follow: false,
            });
            user.push(Op::Getxattr {
                path: p(&f),
                name: "user.a",
                follow: false,
            });
            user.push(Op::Link {
                from: p(&f),
                to: p(&format!("{f}-link")),
                follow: false,
            });
            user.push(stat(&f));
            user.push(Op::Rename {
                from: p(&f),
                to: p(&format!("{f}-renamed")),
                flags: 0,
            });
            user.push(Op::Rename {
                from: p(&format!("{f}-renamed")),
                to: p(&f),
                flags: 0,
            });
            user.push(Op::Unlink {
                path: p(&format!("{f}-link")),
            });
            for (uid, gid) in [
                (None, Some(OTHER)),
                (None, Some(USER)),
                (Some(USER), None),
                (None, Some(0)),
            ] {
                user.push(Op::Chown {
                    path: p(&f),
                    uid,
                    gid,
                    follow: false,
                });
                user.push(stat(&f));
            }
            for mode in [0o2755, 0o4755, 0o600] {
                user.push(Op::Chmod { path: p(&f), mode });
                user.push(stat(&f));
            }
        }
        user.push(Op::Rename {
            from: p(&at("new")),
            to: p(&format!("pub/from-{dir}")),
            flags: 0,
        });
        user.push(Op::Rename {
            from: p(&at("sub")),
            to: p(&format!("pub/sub-from-{dir}")),
            flags: 0,
        });
        user.push(Op::Rmdir { path: p(&at("newdir")) });
        user.push(Op::Unlink { path: p(&at("fifo")) });
        user.push(Op::Readdir { path: p(dir) });
    }
    let n = user.len();
    posix::as_user(USER, USER, &[USER, OTHER], || {
        for op in user {
            d.apply(op);
        }
    });
    report(test, &d, &format!(" ({n} of them as uid {USER})"));
    assert!(
        d.tally.ok > 100 && d.tally.errno > 100,
        "the user's operations should both succeed and fail: {}",
        d.tally.line()
    );
    pair.finish(d);
}

/// Panics unless the native tree and the view gave the same lines.
#[track_caller]
fn same_lines(test: &str, what: &str, native: &[String], view: &[String]) {
    if native == view {
        return;
    }
    let mut msg = format!("[{test}] {what}: the view differs from the native file system\n");
    for i in 0..native.len().max(view.len()) {
        let (a, b) = (native.get(i), view.get(i));
        let mark = if a == b { "  " } else { "!!" };
        msg.push_str(&format!(
            "{mark} native: {}\n{mark} view:   {}\n",
            a.map_or("(nothing)", |s| s.as_str()),
            b.map_or("(nothing)", |s| s.as_str())
        ));
    }
    panic!("{msg}");
}

/// Runs `check` in the native directory and in the view's, compares what
/// each saw, then the trees; returns what the native run saw.
#[track_caller]
fn natively_and_through_the_view(test: &str, check: impl Fn(&Path) -> posix::Lines) -> posix::Lines {
    let pair = Pair::new(test);
    let d = pair.differ(test);
    let native = check(&pair.native);
    let view = check(&pair.viewed);
    same_lines(test, "outcomes", &native, &view);
    pair.finish(d);
    native
}

#[test]
fn time_updates_after_writes_chmod_renames_and_more_as_natively() {
    let test = &test_name();
    if !require_root_and_fuse() {
        return;
    }
    let lines = natively_and_through_the_view(test, posix::time_updates);
    assert!(
        lines.iter().any(|l| l.contains("m+")) && lines.iter().any(|l| l.contains("a+")),
        "the steps should change times: {lines:#?}"
    );
}

/// Truncations of a file to the size it has and to others, each way the
/// kernel tells the view of one (truncate(2): a size change without a
/// handle; ftruncate(2): with the caller's handle; open(O_TRUNC), for
/// writing, for reading and with O_CREAT: the open itself), in the
/// sequence's files on `base`, through a view mounted with `args`. Before
/// each, the file's times are set far in the past: whether its mtime moved
/// (and for the first, its ctime) compares as natively. File systems
/// differ there: truncate(2) to the same size moves neither time on XFS
/// and btrfs, nor on tmpfs for an empty file, but does on ext4;
/// ftruncate(2) and O_TRUNC move both everywhere.
fn truncations_time_as_natively(test: &str, base: &Path, args: &[&str]) {
    let pair = Pair::new_with(test, base, args);
    let mut d = pair.differ(test);
    let old = ops::T::At(1_300_000_000, 123);
    let aged = |path: &str| Op::Utimens {
        path: p(path),
        atime: old,
        mtime: old,
        follow: false,
    };
    let truncate = |len| Op::Truncate { path: p("f"), len };
    let fill = |len| {
        [
            open("f", libc::O_WRONLY, 0, 1),
            Op::Write { slot: 1, len, fill: 7 },
            Op::Close { slot: 1 },
        ]
    };
    for op in file_ops("f", 0, 0, 0o644) {
        d.apply(op);
    }
    d.apply(truncate(0));
    d.apply(aged("f"));
    // The first step's ctime compares too (every later one follows a
    // utimensat, which moves it).
    d.restart_clock();
    let steps: Vec<Vec<Op>> = vec![
        vec![truncate(0)],
        vec![open("f", libc::O_WRONLY, 0, 0), Op::Ftruncate { slot: 0, len: 0 }],
        vec![Op::Close { slot: 0 }, open("f", libc::O_WRONLY | libc::O_TRUNC, 0, 0)],
        vec![Op::Close { slot: 0 }, open("f", libc::O_RDONLY | libc::O_TRUNC, 0, 0)],
        vec![
            Op::Close { slot: 0 },
            open("f", libc::O_CREAT | libc::O_RDWR | libc::O_TRUNC, 0o600, 0),
        ],
        vec![Op::Close { slot: 0 }, truncate(10)],
        vec![truncate(10)],
        vec![open("f", libc::O_RDWR, 0, 0), Op::Ftruncate { slot: 0, len: 10 }],
        vec![Op::Ftruncate { slot: 0, len: 4 }],
        vec![Op::Close { slot: 0 }, truncate(2)],
    ];
    for step in steps {
        for op in step {
            d.apply(op);
        }
        d.apply(stat("f"));
        d.apply(aged("f"));
    }
    // Opened with O_TRUNC while the file has data, for reading and for
    // writing: it is empty, and reads so through the descriptor.
    for flags in [libc::O_RDONLY, libc::O_WRONLY, libc::O_RDWR | libc::O_CREAT] {
        for op in fill(300) {
            d.apply(op);
        }
        d.apply(aged("f"));
        for op in [
            open("f", flags | libc::O_TRUNC, 0o600, 2),
            Op::Fstat { slot: 2 },
            Op::Pread {
                slot: 2,
                offset: 0,
                len: 100,
            },
            Op::Close { slot: 2 },
            stat("f"),
        ] {
            d.apply(op);
        }
    }
    d.apply(aged("."));
    pair.finish(d);
}

#[test]
fn truncating_a_file_to_its_own_size_on_tmpfs_keeps_its_times_as_natively() {
    let test = &test_name();
    if !require_root_and_fuse() {
        return;
    }
    let tmpfs = TmpFs::new(64);
    truncations_time_as_natively(test, tmpfs.path(), &[]);
    truncations_time_as_natively(&format!("{test}-no-passthrough"), tmpfs.path(), &["--no-passthrough"]);
}

#[test]
fn truncations_and_o_trunc_opens_time_as_natively_on_ext4_xfs_and_btrfs() {
    let test = &test_name();
    if !require_root_and_fuse() {
        return;
    }
    for kind in [FsType::Ext4, FsType::Xfs, FsType::Btrfs] {
        let fs_ = AnyFs::new(kind, 128);
        truncations_time_as_natively(&format!("{test}-{}", kind.name()), fs_.path(), &[]);
        truncations_time_as_natively(
            &format!("{test}-{}-no-passthrough", kind.name()),
            fs_.path(),
            &["--no-passthrough"],
        );
    }
}

#[test]
fn hard_link_counts_after_link_unlink_rename_and_mkdir_as_natively() {
    let test = &test_name();
    if !require_root_and_fuse() {
        return;
    }
    let pair = Pair::new(test);
    let mut d = pair.differ(test);
    let link = |from: &str, to: &str| Op::Link {
        from: p(from),
        to: p(to),
        follow: false,
    };
    let rename = |from: &str, to: &str| Op::Rename {
        from: p(from),
        to: p(to),
        flags: 0,
    };
    // One file, watched through its names and an open descriptor.
    let mut ops = file_ops("f", 0, 0, 0o644);
    ops.push(open("f", libc::O_RDWR, 0, 0));
    let watch = [stat("f"), stat("g"), stat("h"), Op::Fstat { slot: 0 }];
    for change in [
        link("f", "g"),
        link("g", "h"),
        Op::Unlink { path: p("f") },
        // A rename between two names of one inode changes nothing.
        rename("g", "h"),
        link("h", "i"),
        rename("i", "g"),
        Op::Unlink { path: p("g") },
        Op::Unlink { path: p("h") },
    ] {
        ops.push(change);
        ops.extend(watch.iter().cloned());
    }
    ops.push(Op::Close { slot: 0 });
    // Directories: a subdirectory counts in its parent's links.
    let mkdir = |path: &str| Op::Mkdir {
        path: p(path),
        mode: 0o755,
    };
    ops.extend([
        stat("."),
        mkdir("d"),
        stat("."),
        mkdir("d/e"),
        stat("d"),
        mkdir("d/e/f"),
        stat("d/e"),
        rename("d/e/f", "f-up"),
        stat("d/e"),
        stat("."),
        rename("d/e", "d2"),
        stat("d"),
        stat("d2"),
        Op::Rmdir { path: p("d2") },
        stat("."),
        // Hard links to a symlink.
        Op::Symlink {
            target: p("d"),
            path: p("s"),
        },
        link("s", "s2"),
        stat("s"),
        Op::Unlink { path: p("s") },
        stat("s2"),
    ]);
    for op in ops {
        d.apply(op);
    }
    report(test, &d, "");
    pair.finish(d);
}

#[test]
fn a_reader_never_finds_a_file_missing_while_new_versions_are_renamed_over_it() {
    let test = &test_name();
    if !require_root_and_fuse() {
        return;
    }
    let lines = natively_and_through_the_view(test, |dir| {
        let (missing, torn, reads) = posix::rename_race(dir, 1500);
        assert!(
            reads > 100,
            "the readers barely ran in {}: {reads} reads",
            dir.display()
        );
        vec![format!("missing {missing}, torn {torn}")]
    });
    assert_eq!(lines, ["missing 0, torn 0"]);
}

#[test]
fn o_append_writes_from_several_threads_are_whole_and_none_lost() {
    let test = &test_name();
    if !require_root_and_fuse() {
        return;
    }
    natively_and_through_the_view(test, |dir| posix::append_race(dir, 4, 500));
}

#[test]
fn o_excl_lets_exactly_one_racing_creator_win_and_refuses_existing_names() {
    let test = &test_name();
    if !require_root_and_fuse() {
        return;
    }
    natively_and_through_the_view(test, |dir| posix::excl_race(dir, 4, 100));
    let pair = Pair::new(test);
    let mut d = pair.differ(test);
    let excl = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY;
    let mut ops = file_ops("file", 0, 0, 0o644);
    ops.extend(dir_ops("dir", 0, 0, 0o755));
    ops.extend([
        Op::Symlink {
            target: p("nowhere"),
            path: p("dangling"),
        },
        Op::Symlink {
            target: p("file"),
            path: p("to-file"),
        },
        Op::Mknod {
            path: p("fifo"),
            node: ops::Node::Fifo,
            mode: 0o644,
        },
    ]);
    for name in ["file", "dir", "dangling", "to-file", "fifo", "new"] {
        ops.push(open(name, excl, 0o600, 0));
        ops.push(open(name, excl | libc::O_NOFOLLOW, 0o600, 1));
        ops.push(stat(name));
    }
    ops.push(stat("nowhere"));
    for op in ops {
        d.apply(op);
    }
    pair.finish(d);
}

/// A known limitation, checked as such: fuser 0.18 has no FUSE_TMPFILE
/// operation, so the view refuses O_TMPFILE with EOPNOTSUPP, the answer
/// callers fall back on (a named temporary file), and nothing is created.
/// The native side shows what the view would have to do (and does it).
#[test]
fn o_tmpfile_is_refused_with_eopnotsupp_and_creates_nothing() {
    let test = &test_name();
    if !require_root_and_fuse() {
        return;
    }
    let pair = Pair::new(test);
    let d = pair.differ(test);
    let native = posix::tmpfile(&pair.native);
    assert!(
        native.iter().any(|l| l.contains("O_TMPFILE: open ok")),
        "natively O_TMPFILE works: {native:?}"
    );
    let view = posix::tmpfile(&pair.viewed);
    assert!(
        view.iter().any(|l| l.contains("O_TMPFILE: open err EOPNOTSUPP")),
        "the view refuses O_TMPFILE with EOPNOTSUPP: {view:?}"
    );
    // (The trees differ by the file linked natively: not compared; the
    // pair's guard unmounts.)
    drop(d);
    drop(pair);
}

#[test]
fn fcntl_and_flock_locks_between_two_processes_as_natively() {
    let test = &test_name();
    if !require_root_and_fuse() {
        return;
    }
    natively_and_through_the_view(test, posix::locks);
}

#[test]
fn mmap_and_read_write_see_each_other_as_natively() {
    let test = &test_name();
    if !require_root_and_fuse() {
        return;
    }
    natively_and_through_the_view(test, posix::mmap_coherence);
}

#[test]
fn names_of_255_bytes_and_paths_deeper_than_path_max_as_natively() {
    let test = &test_name();
    if !require_root_and_fuse() {
        return;
    }
    natively_and_through_the_view(test, posix::long_names_and_deep_paths);
}

#[test]
fn unicode_and_non_utf8_names_as_natively() {
    let test = &test_name();
    if !require_root_and_fuse() {
        return;
    }
    let pair = Pair::new(test);
    let mut d = pair.differ(test);
    let names: &[&[u8]] = &[
        "\u{fc}n\u{ef}c\u{f6}d\u{e9}".as_bytes(),
        "\u{65e5}\u{672c}\u{8a9e}\u{30d5}\u{30a1}\u{30a4}\u{30eb}".as_bytes(),
        "emoji-\u{1f600}\u{1f680}".as_bytes(),
        "e\u{301}-combining".as_bytes(),
        "\u{e9}-precomposed".as_bytes(),
        "\u{5e9}\u{5dc}\u{5d5}\u{5dd}-rtl".as_bytes(),
        "zero\u{200b}width".as_bytes(),
        b"\xff\xfe",
        b"bad\x80utf8",
        b"\xc3\x28-invalid-pair",
        b"new\nline",
        b"tab\tname",
        b"ctrl\x01\x7f",
        b"-leading-dash",
        b" leading space",
        b"trailing space ",
        b"*?[glob]",
        b"back\\slash",
        b"%41percent",
        b"..dots",
        b".wh..wh..opq",
    ];
    let at = |n: &[u8], suffix: &str| {
        let mut v = n.to_vec();
        v.extend_from_slice(suffix.as_bytes());
        P(v)
    };
    for (i, n) in names.iter().enumerate() {
        let ops = vec![
            Op::Open {
                path: P(n.to_vec()),
                flags: (libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY) as u32,
                mode: 0o644,
                slot: 0,
            },
            Op::Write {
                slot: 0,
                len: 10 + i,
                fill: i as u8,
            },
            Op::Close { slot: 0 },
            Op::Mkdir {
                path: at(n, ".d"),
                mode: 0o755,
            },
            Op::Open {
                path: P([at(n, ".d").0, b"/".to_vec(), n.to_vec()].concat()),
                flags: (libc::O_CREAT | libc::O_WRONLY) as u32,
                mode: 0o600,
                slot: 1,
            },
            Op::Close { slot: 1 },
            Op::Symlink {
                target: P(n.to_vec()),
                path: at(n, ".link"),
            },
            Op::Readlink { path: at(n, ".link") },
            Op::Stat {
                path: at(n, ".link"),
                follow: true,
            },
            Op::Setxattr {
                path: P(n.to_vec()),
                name: "user.a",
                value: ops::Digest(n.to_vec()),
                flags: 0,
                follow: false,
            },
            Op::Rename {
                from: P(n.to_vec()),
                to: at(n, "-renamed"),
                flags: 0,
            },
            Op::Link {
                from: at(n, "-renamed"),
                to: P(n.to_vec()),
                follow: false,
            },
            Op::Stat {
                path: P(n.to_vec()),
                follow: false,
            },
            Op::Readdir { path: at(n, ".d") },
        ];
        for op in ops {
            d.apply(op);
        }
    }
    d.apply(Op::Readdir { path: p(".") });
    report(test, &d, "");
    assert_eq!(d.tally.errno, 0, "every name should work natively and through the view");
    pair.finish(d);
}

// ---------------------------------------------------------------------------
// What the differential runs found, each alone
// ---------------------------------------------------------------------------

#[test]
fn a_file_replaced_behind_the_view_never_takes_over_a_new_file_through_it() {
    if !require_root_and_fuse() {
        return;
    }
    // `graph2aufs status` reads .graph2aufs/status.json through the view;
    // the view's migrator replaces that file on the disk (a new inode, the
    // old one freed) whenever an item migrates, e.g. on the first change
    // to a container's init layer; a file created through the view right
    // after may get the freed inode number. (On an ext4 of its own, where
    // no other test takes the freed numbers first.)
    let disk = LoopFs::new(64, "ext4");
    let scene = Scene::new_in(disk.path(), &options(26, 6, 12));
    let view = scene.mount(&[("GRAPH2AUFS_ITEM_DELAY_MS", "600000")]);
    let (first, _) = scene.started_container();
    // Each round: `status`, then a change that migrates one more item, and
    // a file created through the view. Images migrate when their layers
    // file changes (here its mode, to itself); containers on the first
    // change to their init layer, which is where their file goes.
    let mut rounds: Vec<(std::path::PathBuf, std::path::PathBuf)> = scene
        .summary
        .images
        .iter()
        .rev()
        .enumerate()
        .map(|(i, id)| {
            (
                scene.mp.join("aufs/layers").join(id),
                scene.mp.join("containers").join(&first).join(format!("created-{i}")),
            )
        })
        .collect();
    for c in &scene.summary.containers {
        let file = scene.mp.join("aufs/diff").join(format!("{}-init", c.0)).join("created");
        rounds.push((file.clone(), file));
    }
    for (i, (touch, file)) in rounds.iter().enumerate() {
        let status = scene.status_command();
        // 0, or 1 while items are pending.
        assert!(
            status.code <= 1 && serde_json::from_str::<serde_json::Value>(&status.stdout).is_ok(),
            "round {i}: `graph2aufs status` through the view:\n{status}"
        );
        if touch != file {
            let mode = fs::metadata(touch).expect("a layers file").permissions();
            fs::set_permissions(touch, mode).unwrap_or_else(|e| panic!("round {i}: chmod {}: {e}", touch.display()));
        }
        let body = format!("round {i}: {}\n", file.display());
        fs::write(file, &body).unwrap_or_else(|e| panic!("round {i}: writing {}: {e}", file.display()));
        let got = fs::read(file).unwrap_or_else(|e| panic!("round {i}: reading {}: {e}", file.display()));
        assert_eq!(
            String::from_utf8_lossy(&got),
            body,
            "round {i}: {} read back through the view",
            file.display()
        );
    }
    let status = scene.status_command();
    assert!(
        status.code <= 1 && serde_json::from_str::<serde_json::Value>(&status.stdout).is_ok(),
        "`graph2aufs status` at the end:\n{status}"
    );
    view.unmount();
}

/// Every entry under `root` with its attributes, all times exact and
/// directory link counts included.
fn exact_stats(root: &Path) -> Vec<(P, ops::St)> {
    let clock = Clock {
        start_ns: i128::MAX,
        ctime_start_ns: i128::MAX,
    };
    let base = rustix::fs::open(
        root,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY,
        rustix::fs::Mode::empty(),
    )
    .expect("opening the tree");
    let mut out = vec![(
        p("."),
        clock.st(&rustix::fs::fstat(&base).expect("stat of the tree's root")),
    )];
    for (path, _) in ops::initial_paths(root) {
        let st = rustix::fs::statat(&base, path.os(), rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            .unwrap_or_else(|e| panic!("stat {path:?}: {e}"));
        out.push((path, clock.st(&st)));
    }
    out
}

#[track_caller]
fn same_stats(what: &str, a: &[(P, ops::St)], b: &[(P, ops::St)]) {
    let lines: Vec<String> = a
        .iter()
        .zip(b)
        .filter(|(x, y)| x != y)
        .map(|(x, y)| format!("  {:?}: {:?}\n     != {:?}: {:?}", x.0, x.1, y.0, y.1))
        .collect();
    assert!(
        lines.is_empty() && a.len() == b.len(),
        "{what} ({} and {} entries):\n{}",
        a.len(),
        b.len(),
        lines.join("\n")
    );
}

#[test]
fn an_init_layer_shows_before_its_first_change_what_it_holds_after() {
    if !require_root_and_fuse() {
        return;
    }
    let scene = Scene::new(&options(27, 4, 3));
    let (cid, _) = scene.started_container();
    let view = scene.mount(&[("GRAPH2AUFS_ITEM_DELAY_MS", "600000")]);
    let layer = scene.mp.join("aufs/diff").join(format!("{cid}-init"));
    let before = exact_stats(&layer);
    assert_eq!(scene.state(&cid), "pending");
    // A change that changes nothing shown but the ctime: the layer's root
    // given its own mode. It migrates the container.
    let mode = fs::symlink_metadata(&layer).expect("the init layer").permissions();
    fs::set_permissions(&layer, mode).expect("chmod of the init layer's root");
    assert_eq!(scene.state(&cid), "registered");
    let after = exact_stats(&layer);
    same_stats(
        "the synthesized init layer (left) against the migrated one (right), through the view",
        &before,
        &after,
    );
    view.unmount();
    let disk = exact_stats(&scene.root.join("aufs/diff").join(format!("{cid}-init")));
    same_stats("through the view before the change, and on the disk", &before, &disk);
}

#[test]
fn a_file_of_an_init_layer_held_open_across_its_migration_reads_as_natively() {
    let test = &test_name();
    if !require_root_and_fuse() {
        return;
    }
    let scene = Scene::new(&options(28, 4, 3));
    let (cid, _) = scene.started_container();
    let view = scene.mount(&[("GRAPH2AUFS_ITEM_DELAY_MS", "600000")]);
    let layer = scene.mp.join("aufs/diff").join(format!("{cid}-init"));
    let mut d = differ_over(test, 8, &scene, &layer);
    // A regular file of the init layer (which ones depends on the image).
    let file = ops::initial_paths(&scene.dir.path().join("native"))
        .into_iter()
        .map(|(p, _)| p)
        .find(|p| fs::symlink_metadata(scene.dir.path().join("native").join(p.os())).is_ok_and(|m| m.is_file()))
        .expect("a regular file in the init layer");
    let f = String::from_utf8(file.0.clone()).expect("an ASCII name");
    for op in [
        // Opened for reading while the layer is synthesized...
        open(&f, libc::O_RDONLY, 0, 0),
        Op::Fstat { slot: 0 },
        Op::Read { slot: 0, len: 100 },
        // ... then written through another descriptor: the first change,
        // which migrates the container.
        open(&f, libc::O_WRONLY | libc::O_TRUNC, 0, 1),
        Op::Write {
            slot: 1,
            len: 40,
            fill: b'x',
        },
        Op::Close { slot: 1 },
        // The first descriptor reads what is there now.
        Op::Pread {
            slot: 0,
            offset: 0,
            len: 100,
        },
        Op::Fstat { slot: 0 },
        open(&f, libc::O_RDONLY, 0, 2),
        Op::Read { slot: 2, len: 100 },
        Op::Close { slot: 0 },
        Op::Close { slot: 2 },
    ] {
        d.apply(op);
    }
    assert_eq!(scene.state(&cid), "registered");
    d.release();
    d.compare_trees(&scene.dir.path().join("native"), &layer, "through the view");
    view.unmount();
}

// ---------------------------------------------------------------------------
// stress-ng
// ---------------------------------------------------------------------------

/// The stressors this stress-ng offers.
fn stress_ng_stressors() -> Option<std::collections::BTreeSet<String>> {
    let out = std::process::Command::new("stress-ng")
        .arg("--stressors")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    })
}

/// Runs `stress-ng --temp-path DIR --S 1 ... --timeout Ns --verify
/// --metrics-brief` for the `wanted` stressors it has.
fn stress_ng(dir: &Path, wanted: &[&str], seconds: u64, have: &std::collections::BTreeSet<String>) -> RunResult {
    let mut cmd = std::process::Command::new("stress-ng");
    cmd.arg("--temp-path").arg(dir);
    for s in wanted.iter().filter(|s| have.contains(**s)) {
        cmd.args([format!("--{s}"), "1".to_string()]);
    }
    cmd.args(["--timeout", &format!("{seconds}s"), "--verify", "--metrics-brief"]);
    run_command(cmd, std::time::Duration::from_secs(seconds + 60))
}

/// Held by the stress-ng tests: on two cores, two at once would only slow
/// each other (and everything else) down.
static STRESS: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[track_caller]
fn stress_ng_through_the_view(wanted: &[&str]) {
    let test = &test_name();
    if !require_root_and_fuse() {
        return;
    }
    let Some(have) = stress_ng_stressors() else {
        skip_unless(
            "stress-ng (scripts/test installs it)",
            &["stress-ng is not installed".into()],
        );
        return;
    };
    let missing: Vec<&&str> = wanted.iter().filter(|s| !have.contains(**s)).collect();
    if !missing.is_empty() {
        loud(&format!(
            "[{test}] this stress-ng has no {missing:?} stressor: run without"
        ));
    }
    let _one_at_a_time = STRESS.lock().unwrap_or_else(|e| e.into_inner());
    let pair = Pair::new(test);
    let r = stress_ng(&pair.viewed, wanted, 8, &have);
    let failed = |r: &RunResult| {
        r.code != 0
            || format!("{}{}", r.stdout, r.stderr)
                .lines()
                .any(|l| l.contains("fail") || l.contains("unsuccessful"))
    };
    if failed(&r) {
        // For the report: the same run on the native file system.
        let native = stress_ng(&pair.native, wanted, 8, &have);
        panic!(
            "[{test}] stress-ng failed through the view:\n{r}\n\nThe same natively ({}):\n{native}",
            if failed(&native) { "failed too" } else { "passed" }
        );
    }
    loud(&format!(
        "[{test}] stress-ng through the view: {}",
        r.stderr
            .lines()
            .chain(r.stdout.lines())
            .take_while(|l| !l.contains("miscellaneous"))
            .filter(|l| l.contains("metrc") && !l.contains("(secs)") && !l.contains("stressor"))
            .map(|l| l.split_whitespace().skip(3).take(2).collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let Pair { view, .. } = pair;
    view.unmount();
}

#[test]
fn stress_ng_file_system_stressors_verify_through_the_view() {
    stress_ng_through_the_view(&["hdd", "dir", "link", "rename", "fallocate", "dentry", "metamix"]);
}

#[test]
fn stress_ng_lock_mmap_and_seek_stressors_verify_through_the_view() {
    stress_ng_through_the_view(&["flock", "lockf", "mmap", "seek"]);
}

#[test]
fn writes_by_another_user_clear_setuid_and_setgid_bits_as_natively() {
    let test = &test_name();
    if !require_root_and_fuse() {
        return;
    }
    use posix::{OTHER, USER};
    let pair = Pair::new(test);
    let mut d = pair.differ(test);
    d.apply(Op::Chmod {
        path: p("."),
        mode: 0o777,
    });
    // Files of root's group, which the user is not in: with and without
    // group execute, setuid, setgid or both; opened for writing by root
    // (the user writes through that descriptor) or by the user.
    let modes = [0o6777, 0o4777, 0o2777, 0o2767, 0o6767, 0o3767, 0o2757];
    let mut user = Vec::new();
    for (i, mode) in modes.iter().enumerate() {
        for (how, slot) in [("root", 1), ("user", 2)] {
            let f = format!("f{i}-{how}");
            for op in file_ops(&f, 0, 0, *mode) {
                d.apply(op);
            }
            if how == "root" {
                d.apply(open(&f, libc::O_WRONLY, 0, slot));
            } else {
                user.push(open(&f, libc::O_WRONLY, 0, slot));
            }
            user.extend([
                Op::Pwrite {
                    slot,
                    offset: 0,
                    len: 10,
                    fill: b'u',
                },
                Op::Close { slot },
                stat(&f),
            ]);
        }
        let f = format!("f{i}-truncated");
        for op in file_ops(&f, 0, 0, *mode) {
            d.apply(op);
        }
        user.extend([Op::Truncate { path: p(&f), len: 3 }, stat(&f)]);
        // Truncated by open(O_TRUNC), nothing written: for writing, and
        // for reading (which Linux truncates too).
        for (how, flags) in [("o-trunc", libc::O_WRONLY), ("o-rdonly-trunc", libc::O_RDONLY)] {
            let f = format!("f{i}-{how}");
            for op in file_ops(&f, 0, 0, *mode) {
                d.apply(op);
            }
            user.extend([open(&f, flags | libc::O_TRUNC, 0, 3), Op::Close { slot: 3 }, stat(&f)]);
        }
    }
    posix::as_user(USER, OTHER, &[OTHER], || {
        for op in user {
            d.apply(op);
        }
    });
    pair.finish(d);
}

#[test]
fn seek_data_and_seek_hole_find_a_sparse_file_s_holes_as_natively() {
    let test = &test_name();
    if !require_root_and_fuse() {
        return;
    }
    let pair = Pair::new(test);
    let mut d = pair.differ(test);
    // Data at 1 MiB and at 3 MiB, holes before and between.
    let mut ops = vec![open("sparse", libc::O_CREAT | libc::O_RDWR, 0o644, 0)];
    for offset in [1 << 20, 3 << 20] {
        ops.push(Op::Pwrite {
            slot: 0,
            offset,
            len: 4096,
            fill: 1,
        });
    }
    ops.push(Op::Fsync {
        slot: 0,
        data_only: false,
    });
    for whence in [3, 4] {
        for offset in [0, 1 << 20, (1 << 20) + 8192, 3 << 20] {
            ops.push(Op::Seek {
                slot: 0,
                whence,
                offset,
            });
        }
    }
    ops.push(Op::Close { slot: 0 });
    for op in ops {
        d.apply(op);
    }
    pair.finish(d);
}

#[test]
fn extended_attributes_for_another_user_as_natively() {
    let test = &test_name();
    if !require_root_and_fuse()
        || !require_fs(
            &std::env::temp_dir(),
            &[FsFeature::UserXattrs, FsFeature::TrustedXattrs],
        )
    {
        return;
    }
    use posix::{OTHER, USER};
    let pair = Pair::new(test);
    let mut d = pair.differ(test);
    let set = |path: &str, name: &'static str, value: &[u8]| Op::Setxattr {
        path: p(path),
        name,
        value: ops::Digest(value.to_vec()),
        flags: 0,
        follow: false,
    };
    let get = |path: &str, name: &'static str| Op::Getxattr {
        path: p(path),
        name,
        follow: false,
    };
    let list = |path: &str| Op::Listxattr {
        path: p(path),
        follow: false,
    };
    let mut ops = file_ops("roots", 0, 0, 0o644);
    ops.extend(file_ops("users", USER, USER, 0o644));
    for f in ["roots", "users"] {
        ops.extend([set(f, "user.a", b"a"), set(f, "trusted.t", b"t"), list(f)]);
    }
    for op in ops {
        d.apply(op);
    }
    posix::as_user(USER, OTHER, &[OTHER], || {
        for f in ["roots", "users"] {
            for op in [
                list(f),
                get(f, "user.a"),
                get(f, "trusted.t"),
                set(f, "user.b", b"b"),
                set(f, "trusted.u", b"u"),
                Op::Removexattr {
                    path: p(f),
                    name: "user.a",
                    follow: false,
                },
                list(f),
            ] {
                d.apply(op);
            }
        }
    });
    pair.finish(d);
}

/// Regression (found this session): ACLs were not applied through the view
/// (the kernel ignored them without FUSE_POSIX_ACL, so an ACL granting a
/// user access was refused) and new entries under a default ACL got the
/// caller's umask, which natively does not apply there.
#[test]
fn acls_grant_access_and_default_acls_replace_the_umask_as_natively() {
    let test = &test_name();
    if !require_root_and_fuse() || !require_fs(&std::env::temp_dir(), &[FsFeature::PosixAcls]) {
        return;
    }
    let lines = natively_and_through_the_view(test, posix::acls);
    assert!(
        lines.iter().any(|l| l == "read with the ACL: ok 7"),
        "the ACL should grant the read natively: {lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("acl-dir/f:") && l.contains("mode ok \"664\"")),
        "the default ACL should replace the umask natively: {lines:#?}"
    );
}

/// A node the kernel keeps for a file of a layer that went (removed behind
/// the view), whose inode number a new file of the layer then took, is not
/// the new file's: at the switch to the copy it must not become a second
/// node of the new file's copy (its names would then be split between two
/// node ids: a hard link made through the view showed as another file).
#[test]
fn a_node_of_a_file_gone_whose_inode_number_was_reused_is_not_switched_to_the_new_files_copy() {
    use std::os::unix::fs::MetadataExt;
    if !require_root_and_fuse() {
        return;
    }
    // (ext4 on both sides: a freed inode number is taken by the next file
    // made in the same directory.)
    let disk = LoopFs::new(1024, "ext4");
    let scene = Scene::new_in(disk.path(), &options(31, 6, 1));
    let space = LoopFs::new(1024, "ext4");
    let aufs = BindAt::new(space.path(), &scene.root.join("aufs"));
    let id = scene.summary.images[3].clone();
    let legacy = scene.root.join("graph").join(&id).join("layer");
    fs::write(legacy.join("ballast"), vec![7u8; 2 << 20]).unwrap();
    let view = scene.mount_with(
        &["--copy-rate", "1M"],
        &[("RUST_LOG", "info"), ("GRAPH2AUFS_SWITCH_DELAY_MS", "1500")],
    );
    let layer = scene.mp.join("aufs/diff").join(&id);
    let caught_up = format!("graph/{id}/layer caught up with its copy");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !view.log().contains(&caught_up) {
        assert!(std::time::Instant::now() < deadline, "never caught up:\n{}", view.log());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Between its last catch-up and its switch: a file the kernel knows
    // (held by an O_PATH descriptor: no open reaches the view, which holds
    // nothing of it), removed behind the view; a new file takes its inode
    // number.
    fs::write(layer.join("old"), "the old file").unwrap();
    let held = rustix::fs::open(
        layer.join("old"),
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    let old_ino = fs::metadata(legacy.join("old")).unwrap().ino();
    fs::remove_file(legacy.join("old")).unwrap();
    fs::write(layer.join("new"), "new").unwrap();
    let new_ino = fs::metadata(legacy.join("new")).unwrap().ino();
    if new_ino != old_ino {
        loud(&format!("inode {old_ino} was not reused ({new_ino}): nothing to check"));
        drop(held);
        view.unmount();
        drop(aufs);
        return;
    }
    scene.wait_finished(&view);
    // What the kernel holds of the old file is never the new file.
    if let Ok(st) = rustix::fs::fstat(&held) {
        assert_ne!(st.st_size, 3, "the old file's node shows the new file:\n{}", view.log());
    }
    drop(held);
    // A second name of the new file, through the view: the same file.
    fs::hard_link(layer.join("new"), layer.join("new-link")).unwrap();
    let m = |n: &str| fs::metadata(layer.join(n)).unwrap();
    assert_eq!((m("new").nlink(), m("new-link").nlink()), (2, 2));
    assert_eq!(
        m("new").ino(),
        m("new-link").ino(),
        "one file, two node ids:\n{}",
        view.log()
    );
    view.unmount();
    drop(aufs);
}
