//! Containers' init layers (issue 14, item 1): `aufs/diff/<cid>-init` as
//! Docker's setupInitLayer leaves it through aufs, for images whose `/etc`
//! is a file, a character device, a fifo, a symlink to a directory or to
//! nowhere, whose `/dev/console` is a device and `/proc` a file, and for a
//! Debian base. `migrate`, the read-only view (the layer and the merged
//! roots `aufs/mnt/<cid>-init`, `aufs/mnt/<cid>`), the read-write view
//! before it migrates the container, and `rollback` must all agree with
//! the test's own replay of setupInitLayer (tests/initlayer/setup.rs).

mod common;
use common::*;

#[path = "view/merge.rs"]
mod merge;
#[path = "initlayer/setup.rs"]
mod setup;
use merge::aufs_merge;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use g2a_genroot::{generate, Options};
use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, CWD};
use sha2::{Digest, Sha256};

/// How long one mount of these tests may live before its watchdog fires.
const BOUND: Duration = Duration::from_secs(120);

/// When the hand-made containers were created (their config.json's mtime).
const CREATED: Timespec = Timespec {
    tv_sec: 1_400_000_000,
    tv_nsec: 123_456_789,
};
/// When the hand-made base image's `/etc` and `/dev` last changed.
const IMAGE_DIRS: Timespec = Timespec {
    tv_sec: 1_300_000_000,
    tv_nsec: 987_654_321,
};

// ---------------------------------------------------------------------------
// Legacy roots
// ---------------------------------------------------------------------------

/// A legacy root and, per container, its id and its image's chain (image
/// first), with snapshots taken before any command ran.
struct Scene {
    dir: tempfile::TempDir,
    root: PathBuf,
    containers: Vec<Container>,
    before: Tree,
}

struct Container {
    /// What the image is like (for messages).
    what: String,
    id: String,
    chain: Vec<String>,
    created_ns: i128,
}

fn hex_id(name: &str) -> String {
    Sha256::digest(name.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[track_caller]
fn set_time(path: &Path, t: Timespec) {
    let ts = Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(CWD, path, &ts, AtFlags::SYMLINK_NOFOLLOW)
        .unwrap_or_else(|e| panic!("setting the times of {}: {e}", path.display()));
}

#[track_caller]
fn write(path: &Path, bytes: &[u8], mode: u32) {
    fs::write(path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

#[track_caller]
fn mkdir(path: &Path, mode: u32) {
    fs::create_dir_all(path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

#[track_caller]
fn mknod(path: &Path, kind: FileType, dev: (u32, u32)) {
    rustix::fs::mknodat(
        CWD,
        path,
        kind,
        Mode::from_raw_mode(0o644),
        rustix::fs::makedev(dev.0, dev.1),
    )
    .unwrap_or_else(|e| panic!("mknod {}: {e}", path.display()));
}

#[track_caller]
fn ln_s(target: &str, path: &Path) {
    symlink(target, path).unwrap_or_else(|e| panic!("symlink {}: {e}", path.display()));
}

/// The base image: a real `/etc` (0750, uid 7) with its own `hosts`,
/// `resolv.conf` and an `mtab` symlink, and an `etc/hostname` that is a
/// directory; a `/dev` (0751) with `console` a character device, `pts` a
/// directory and `shm` a symlink; `/proc` a directory; `/.dockerinit` a
/// fifo; no `/sys`, no `/.dockerenv`.
fn base_layer(l: &Path) {
    mkdir(&l.join("bin"), 0o755);
    write(&l.join("bin/sh"), b"#!sh\n", 0o755);
    mkdir(&l.join("etc/hostname"), 0o700);
    write(&l.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n", 0o644);
    write(&l.join("etc/hosts"), b"127.0.0.1 base\n", 0o644);
    write(&l.join("etc/resolv.conf"), b"nameserver 192.0.2.1\n", 0o644);
    ln_s("/proc/self/mounts", &l.join("etc/mtab"));
    fs::set_permissions(l.join("etc"), fs::Permissions::from_mode(0o750)).expect("chmod");
    rustix::fs::chownat(
        CWD,
        l.join("etc"),
        Some(rustix::fs::Uid::from_raw(7)),
        Some(rustix::fs::Gid::from_raw(8)),
        AtFlags::empty(),
    )
    .expect("chown etc");
    mkdir(&l.join("dev/pts"), 0o755);
    mknod(&l.join("dev/console"), FileType::CharacterDevice, (5, 1));
    ln_s("/run/shm", &l.join("dev/shm"));
    fs::set_permissions(l.join("dev"), fs::Permissions::from_mode(0o751)).expect("chmod");
    mkdir(&l.join("proc"), 0o555);
    mknod(&l.join(".dockerinit"), FileType::Fifo, (0, 0));
    set_time(&l.join("etc"), IMAGE_DIRS);
    set_time(&l.join("dev"), IMAGE_DIRS);
}

/// Writes the top layer of an image.
type Build = fn(&Path);

/// The images, each a child of the base (but the base itself), by what
/// their top layer does.
const IMAGES: &[(&str, Build)] = &[
    ("the base: dev/console a device, etc/hosts a file", |_| {}),
    ("/etc a regular file", |l| {
        write(&l.join("etc"), b"not a directory\n", 0o644)
    }),
    ("/etc a character device", |l| {
        mknod(&l.join("etc"), FileType::CharacterDevice, (1, 3))
    }),
    ("/etc a fifo", |l| mknod(&l.join("etc"), FileType::Fifo, (0, 0))),
    ("/etc a symlink to a directory", |l| {
        mkdir(&l.join("usr/etc"), 0o755);
        write(&l.join("usr/etc/hosts"), b"127.0.0.1 usr\n", 0o644);
        ln_s("usr/etc", &l.join("etc"));
    }),
    ("/etc a symlink to nowhere", |l| ln_s("/nowhere", &l.join("etc"))),
    ("no /dev, /proc a file, /etc opaque", |l| {
        write(&l.join(".wh.dev"), b"", 0o444);
        write(&l.join("proc"), b"not a directory\n", 0o644);
        mkdir(&l.join("etc"), 0o711);
        write(&l.join("etc/.wh..wh..opq"), b"", 0o444);
        write(&l.join("etc/group"), b"root:x:0:\n", 0o644);
    }),
];

#[track_caller]
fn image(root: &Path, id: &str, parent: Option<&str>, build: impl FnOnce(&Path)) {
    let dir = root.join("graph").join(id);
    mkdir(&dir.join("layer"), 0o755);
    let json = match parent {
        Some(p) => format!(r#"{{"id":"{id}","parent":"{p}","created":"2014-05-13T00:00:00Z"}}"#),
        None => format!(r#"{{"id":"{id}","created":"2014-05-13T00:00:00Z"}}"#),
    };
    write(&dir.join("json"), json.as_bytes(), 0o600);
    build(&dir.join("layer"));
}

/// A started container (it has an `rw/`, with a file of its own).
#[track_caller]
fn container(root: &Path, id: &str, image: &str) {
    let dir = root.join("containers").join(id);
    mkdir(&dir.join("rw/root"), 0o700);
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).expect("chmod");
    write(&dir.join("rw/root/.bash_history"), b"ls /etc\n", 0o600);
    let config = format!(r#"{{"ID":"{id}","Image":"{image}","Path":"/bin/sh"}}"#);
    write(&dir.join("config.json"), config.as_bytes(), 0o600);
    set_time(&dir.join("config.json"), CREATED);
}

fn ns(t: Timespec) -> i128 {
    i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec)
}

fn scratch(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a scratch directory: {e}"))
}

impl Scene {
    /// A root with the base image, one child image per case of [`IMAGES`],
    /// and one started container on each image.
    fn hand_made() -> Scene {
        let dir = scratch("g2a-init-layer.");
        let root = dir.path().join("root");
        for d in ["graph", "containers"] {
            mkdir(&root.join(d), 0o700);
        }
        let base = hex_id("base");
        image(&root, &base, None, base_layer);
        let mut containers = Vec::new();
        for (n, (what, build)) in IMAGES.iter().enumerate() {
            let chain = if n == 0 {
                vec![base.clone()]
            } else {
                let id = hex_id(what);
                image(&root, &id, Some(&base), build);
                vec![id, base.clone()]
            };
            let id = hex_id(&format!("container on {what}"));
            container(&root, &id, &chain[0]);
            containers.push(Container {
                what: what.to_string(),
                id,
                chain,
                created_ns: ns(CREATED),
            });
        }
        let before = snapshot(&root);
        Scene {
            dir,
            root,
            containers,
            before,
        }
    }

    /// A generated root whose first image is the Debian base, with the
    /// containers that run it (directly or through a child image).
    fn debian(base: &Path) -> Scene {
        let dir = scratch("g2a-init-layer-debian.");
        let root = dir.path().join("root");
        let opts = Options {
            seed: 14,
            images: 3,
            max_chain: 2,
            containers: 6,
            entries_per_layer: 0,
            broken: false,
            docker18: false,
            debian_base: Some(base.to_path_buf()),
        };
        let s = generate(&root, &opts).unwrap_or_else(|e| panic!("generating {}: {e}", root.display()));
        let debian = s.landmarks.debian.clone().expect("the root has the Debian image");
        let chain_of = |image: &str| {
            let mut chain = vec![image.to_string()];
            while let Some(Some(p)) = s.parents.get(chain.last().expect("never empty")) {
                chain.push(p.clone());
            }
            chain
        };
        let before = snapshot(&root);
        let containers: Vec<Container> = s
            .containers
            .iter()
            .filter(|(_, _, started)| *started)
            .map(|(id, image, _)| (id, chain_of(image)))
            .filter(|(_, chain)| chain.contains(&debian))
            .map(|(id, chain)| Container {
                what: format!("image {} over the Debian base", chain[0]),
                id: id.clone(),
                created_ns: before.at(format!("containers/{id}/config.json")).mtime_ns,
                chain,
            })
            .collect();
        assert!(
            !containers.is_empty(),
            "no started container runs the Debian image: {s:?}"
        );
        Scene {
            dir,
            root,
            containers,
            before,
        }
    }

    /// The snapshots of `c`'s image layers, top first, as generated.
    fn image_layers(&self, c: &Container) -> Vec<Tree> {
        c.chain
            .iter()
            .map(|id| self.before.subtree(format!("graph/{id}/layer")))
            .collect()
    }

    /// What `aufs/diff/<cid>-init` must hold.
    fn expected_init(&self, c: &Container) -> Tree {
        let layers = self.image_layers(c);
        let refs: Vec<&Tree> = layers.iter().collect();
        setup::init_layer(&refs, c.created_ns)
    }

    /// What `aufs/mnt/<cid>-init` (`with_rw` false) or `aufs/mnt/<cid>` shows.
    fn expected_merged(&self, c: &Container, with_rw: bool) -> Tree {
        let init = self.expected_init(c);
        let rw = self.before.subtree(format!("containers/{}/rw", c.id));
        let image = self.image_layers(c);
        let mut layers: Vec<&Tree> = Vec::new();
        if with_rw {
            layers.push(&rw);
        }
        layers.push(&init);
        layers.extend(image.iter());
        aufs_merge(&layers)
    }

    /// A `cp -a` of the root as it was made.
    #[track_caller]
    fn copy(&self, name: &str) -> PathBuf {
        let dst = self.dir.path().join(name);
        let mut cp = Command::new("cp");
        cp.arg("-a").arg(&self.root).arg(&dst);
        run_command(cp, RUN_TIMEOUT).expect_code(0);
        dst
    }

    fn mountpoint(&self, name: &str) -> PathBuf {
        let mp = self.dir.path().join(name);
        fs::create_dir(&mp).unwrap_or_else(|e| panic!("creating {}: {e}", mp.display()));
        mp
    }
}

// ---------------------------------------------------------------------------
// The checks, one per command or view
// ---------------------------------------------------------------------------

#[track_caller]
fn check_migrate(scene: &Scene, root: &Path) {
    run([OsStr::new("migrate"), root.as_os_str()]).expect_code(0);
    for c in &scene.containers {
        assert_same(
            &snapshot(&root.join(format!("aufs/diff/{}-init", c.id))),
            &scene.expected_init(c),
            &format!(
                "aufs/diff/{}-init after migrate (a) and Docker's setupInitLayer (b), {}",
                c.id, c.what
            ),
        );
    }
}

#[track_caller]
fn check_read_only_view(scene: &Scene) {
    let mp = scene.mountpoint("ro");
    let mount = Mount::start(&scene.root, &mp, &["--read-only"], BOUND);
    for c in &scene.containers {
        let cases = [
            (format!("aufs/diff/{}-init", c.id), scene.expected_init(c)),
            (format!("aufs/mnt/{}-init", c.id), scene.expected_merged(c, false)),
            (format!("aufs/mnt/{}", c.id), scene.expected_merged(c, true)),
        ];
        for (path, expected) in cases {
            assert_same(
                &snapshot(&mp.join(&path)),
                &expected,
                &format!("{path} in the read-only view (a) and the test's model (b), {}", c.what),
            );
        }
    }
    let status = mount.unmount();
    assert!(status.success(), "the read-only view exited with {status}");
}

#[track_caller]
fn check_live_view(scene: &Scene, root: &Path) {
    let mp = scene.mountpoint("rw");
    let mut cmd = Command::new(bin());
    cmd.arg("mount").arg(root).arg(&mp).arg("--foreground");
    // Slow enough that the background migration never reaches a container.
    cmd.env("GRAPH2AUFS_ITEM_DELAY_MS", "600000");
    let mount = Mount::start_command(cmd, &mp, BOUND);
    for c in &scene.containers {
        let path = format!("aufs/diff/{}-init", c.id);
        assert_same(
            &snapshot(&mp.join(&path)),
            &scene.expected_init(c),
            &format!("{path} in the read-write view (a) and the test's model (b), {}", c.what),
        );
        assert!(
            fs::symlink_metadata(root.join(&path)).is_err(),
            "{path} is not on the disk yet: the view synthesizes it"
        );
    }
    let status = mount.unmount();
    assert!(status.success(), "the read-write view exited with {status}");
}

#[track_caller]
fn check_rollback(scene: &Scene) {
    run([OsStr::new("rollback"), scene.root.as_os_str()]).expect_code(0);
    assert_same(&scene.before, &snapshot(&scene.root), "ROOT after migrate and rollback");
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn the_model_gives_the_same_layer_whatever_order_docker_takes_the_paths_in() {
    if !require_root() {
        return;
    }
    let scene = Scene::hand_made();
    for c in &scene.containers {
        let layers = scene.image_layers(c);
        let refs: Vec<&Tree> = layers.iter().collect();
        let mut order = setup::SETUP.to_vec();
        order.reverse();
        assert_same(
            &setup::init_layer_in_order(&refs, c.created_ns, &order),
            &scene.expected_init(c),
            &format!("setupInitLayer's paths reversed (a) and in order (b), {}", c.what),
        );
    }
}

#[test]
fn migrate_writes_each_init_layer_as_dockers_setup_leaves_it() {
    if !require_root() {
        return;
    }
    let scene = Scene::hand_made();
    check_migrate(&scene, &scene.root);
}

#[test]
fn the_read_only_view_shows_each_init_layer_and_merged_root_as_migrate_leaves_them() {
    if !require_root_and_fuse() {
        return;
    }
    let scene = Scene::hand_made();
    check_read_only_view(&scene);
}

#[test]
fn the_read_write_view_shows_each_init_layer_before_migrating_it() {
    if !require_root_and_fuse() {
        return;
    }
    let scene = Scene::hand_made();
    check_live_view(&scene, &scene.root);
}

#[test]
fn rollback_gives_back_every_image_exactly() {
    if !require_root() {
        return;
    }
    let scene = Scene::hand_made();
    check_migrate(&scene, &scene.root);
    check_rollback(&scene);
}

/// The Debian base (a real `/dev` with `console` a device, `pts` and `shm`
/// directories; a real `/etc` without `hosts`, `hostname`, `resolv.conf`,
/// `mtab`): the same through every command and view. One root for all (it
/// is large): the read-only view first, the read-write view on a copy,
/// then migrate and rollback.
#[test]
fn a_debian_base_gets_the_same_init_layer_from_migrate_both_views_and_rollback() {
    if !require_root_and_fuse() {
        return;
    }
    let Some(base) = require_debian_base() else { return };
    let scene = Scene::debian(&base);
    for c in &scene.containers {
        let init = scene.expected_init(c);
        for p in ["dev", "dev/console", "etc", "etc/hosts", "etc/mtab"] {
            assert!(init.contains_key(Path::new(p)), "the model's init layer has {p}");
        }
    }
    check_read_only_view(&scene);
    let copy = scene.copy("live");
    check_live_view(&scene, &copy);
    fs::remove_dir_all(&copy).expect("removing the copy");
    check_migrate(&scene, &scene.root);
    check_rollback(&scene);
}
