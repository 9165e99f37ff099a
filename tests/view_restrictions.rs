//! The view takes the restrictions of the mounts it serves from: a ROOT (or
//! an `--aufs-dir`, or a mount at `ROOT/aufs`) on a `nodev`, `nosuid` or
//! `noexec` mount gives a view
//! mounted so too, so that through it no device node opens, no setuid bit
//! takes effect and no file executes where natively it would not. A ROOT on
//! a mount without them still gives a read-write view with device nodes and
//! setuid binaries (containers need them), as natively.
//!
//! Each test mounts a tmpfs with the options it needs in a mount namespace
//! of its own (the server it starts is in it too), generates a legacy root
//! on it, puts a device node (/dev/null's numbers) and a setuid-root copy
//! of `id` in a layer, and compares what they do natively (in
//! `graph/<id>/layer`) with what they do through the view
//! (`aufs/diff/<id>`): the device opened by root, `id -u` run as another
//! user. The view's own mount options are read from
//! `/proc/thread-self/mountinfo`.

mod common;
use common::*;

use std::ffi::CStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use g2a_genroot::{generate, Options};
use rustix::mount::{MountFlags, UnmountFlags};

/// The longest a view of these tests stays mounted.
const BOUND: Duration = Duration::from_secs(60);
/// Who runs the setuid binary.
const USER: u32 = 4242;

/// A tmpfs mounted with `flags` on a new directory in `$TMPDIR` (searchable
/// by everyone), in the test's own mount namespace; detached on drop.
struct Tmpfs(Option<tempfile::TempDir>);

impl Tmpfs {
    #[track_caller]
    fn new(flags: MountFlags) -> Tmpfs {
        private_mounts();
        let dir = tempfile::Builder::new()
            .prefix("g2a-restrictions.")
            .tempdir()
            .expect("a scratch directory");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod 755");
        let data: &CStr = c"mode=0755,size=256m";
        rustix::mount::mount("g2a-restrictions", dir.path(), "tmpfs", flags, data)
            .unwrap_or_else(|e| panic!("mount -t tmpfs -o {flags:?} on {}: {e}", dir.path().display()));
        Tmpfs(Some(dir))
    }

    fn path(&self) -> &Path {
        self.0.as_ref().expect("present until drop").path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let dir = self.0.take().expect("dropped once");
        if let Err(e) = rustix::mount::unmount(dir.path(), UnmountFlags::DETACH) {
            eprintln!("harness: umount -l {}: {e}", dir.path().display());
        }
    }
}

/// Makes `p` searchable by everyone.
#[track_caller]
fn searchable(p: &Path) {
    let mode = fs::metadata(p)
        .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
        .permissions()
        .mode();
    fs::set_permissions(p, fs::Permissions::from_mode(mode | 0o111))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

/// A legacy root generated in `base`, and one image whose layer is at
/// `graph/<id>/layer`, with a device node `trust-null` (1, 3) and a
/// setuid-root copy of `id`, `trust-id`, in it; every directory on the way
/// is searchable by [`USER`].
struct Place {
    root: PathBuf,
    id: String,
}

impl Place {
    #[track_caller]
    fn new(base: &Path) -> Place {
        let root = base.join("root");
        let opts = Options {
            seed: 7,
            images: 3,
            max_chain: 2,
            containers: 1,
            entries_per_layer: 8,
            ..Options::default()
        };
        let summary = generate(&root, &opts).unwrap_or_else(|e| panic!("generating {}: {e}", root.display()));
        let id = summary
            .images
            .iter()
            .find(|id| root.join("graph").join(id).join("layer").is_dir())
            .expect("an image with a legacy layer")
            .clone();
        let layer = root.join("graph").join(&id).join("layer");
        for p in [&root, &root.join("graph"), &root.join("graph").join(&id), &layer] {
            searchable(p);
        }
        let null = layer.join("trust-null");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &null,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .unwrap_or_else(|e| panic!("mknod {}: {e}", null.display()));
        let id_bin = layer.join("trust-id");
        fs::copy("/usr/bin/id", &id_bin).unwrap_or_else(|e| panic!("copying /usr/bin/id: {e}"));
        std::os::unix::fs::chown(&id_bin, Some(0), Some(0)).expect("chown 0:0");
        fs::set_permissions(&id_bin, fs::Permissions::from_mode(0o4755)).expect("chmod 4755");
        Place { root, id }
    }

    /// The layer on the disk.
    fn layer(&self) -> PathBuf {
        self.root.join("graph").join(&self.id).join("layer")
    }
}

/// What opening the device node in `dir` for reading does: "opened" or
/// the error.
fn open_device(dir: &Path) -> String {
    match fs::File::open(dir.join("trust-null")) {
        Ok(_) => "opened".into(),
        Err(e) => format!("{:?} ({e})", e.kind()),
    }
}

/// What `trust-id -u` in `dir` says run by `uid`: the effective user id
/// (0 where the setuid bit takes effect), or why it did not run.
fn run_id(dir: &Path, uid: u32) -> String {
    let mut cmd = Command::new(dir.join("trust-id"));
    cmd.arg("-u").uid(uid).gid(uid).stdin(Stdio::null());
    match cmd.output() {
        Ok(o) if o.status.success() => format!("euid {}", String::from_utf8_lossy(&o.stdout).trim()),
        Ok(o) => format!("{} ({})", o.status, String::from_utf8_lossy(&o.stderr).trim()),
        Err(e) => format!("{:?} ({e})", e.kind()),
    }
}

/// [`run_id`] by [`USER`].
fn setuid_id(dir: &Path) -> String {
    run_id(dir, USER)
}

/// The per-mount options of the mount at `mp` (its line of
/// /proc/thread-self/mountinfo), e.g. `rw`, `nosuid`, `nodev`.
#[track_caller]
fn mount_options(mp: &Path) -> Vec<String> {
    let m = mounts_at(mp)
        .pop()
        .unwrap_or_else(|| panic!("nothing mounted at {}", mp.display()));
    let text = fs::read_to_string("/proc/thread-self/mountinfo").expect("mountinfo");
    let line = text
        .lines()
        .find(|l| l.split(' ').next() == Some(&m.id.to_string()))
        .unwrap_or_else(|| panic!("mount {} gone from mountinfo", m.id));
    line.split(' ')
        .nth(5)
        .expect("an options field")
        .split(',')
        .map(String::from)
        .collect()
}

/// Mounts a view of `place` at `mp` (`graph2aufs mount ROOT MP
/// --foreground ARGS`, nothing migrating meanwhile), runs `f` on the layer
/// through it (`aufs/diff/<id>`) and unmounts it: what `f` gave, the view's
/// mount options and its log.
#[track_caller]
fn through_view<T>(place: &Place, mp: &Path, args: &[&str], f: impl FnOnce(&Path) -> T) -> (T, Vec<String>, String) {
    fs::create_dir_all(mp).expect("a mount point");
    searchable(mp);
    let mut cmd = Command::new(bin());
    cmd.arg("mount").arg(&place.root).arg(mp).arg("--foreground").args(args);
    cmd.env("RUST_LOG", "info").env("GRAPH2AUFS_ITEM_DELAY_MS", "600000");
    let view = Mount::start_command(cmd, mp, BOUND);
    let r = f(&mp.join("aufs/diff").join(&place.id));
    let options = mount_options(mp);
    let log = view.log();
    view.unmount();
    (r, options, log)
}

/// What the restricted things do in a directory: opening the device node,
/// running the setuid binary.
#[derive(Debug, PartialEq)]
struct Outcome {
    device: String,
    setuid: String,
}

fn outcome(dir: &Path) -> Outcome {
    Outcome {
        device: open_device(dir),
        setuid: setuid_id(dir),
    }
}

#[track_caller]
fn assert_options(what: &str, options: &[String], on: &[&str], off: &[&str]) {
    for o in on {
        assert!(
            options.iter().any(|x| x == o),
            "{what}: mounted without {o}: {options:?}"
        );
    }
    for o in off {
        assert!(!options.iter().any(|x| x == o), "{what}: mounted {o}: {options:?}");
    }
}

#[test]
fn a_root_on_a_nodev_nosuid_mount_gives_views_that_open_no_device_and_honour_no_setuid_as_natively() {
    if !require_root_and_fuse() {
        return;
    }
    let fs_ = Tmpfs::new(MountFlags::NODEV | MountFlags::NOSUID);
    let place = Place::new(fs_.path());
    let native = outcome(&place.layer());
    assert!(native.device.starts_with("PermissionDenied"), "natively: {native:?}");
    assert_eq!(native.setuid, format!("euid {USER}"), "natively: {native:?}");
    let mp = fs_.path().join("mp");
    let (through, options, log) = through_view(&place, &mp, &[], outcome);
    assert_eq!(
        through, native,
        "through the read-write view as natively (view log:\n{log})"
    );
    assert_options("the read-write view", &options, &["nodev", "nosuid"], &["noexec"]);
    assert!(
        log.contains("the view is mounted nodev") && log.contains("the view is mounted nosuid"),
        "the log says what the view inherited:\n{log}"
    );
    let (device, options, _) = through_view(&place, &mp, &["--read-only"], open_device);
    assert_eq!(device, native.device, "through the read-only view as natively");
    assert_options("the read-only view", &options, &["nodev", "nosuid", "ro"], &["noexec"]);
}

#[test]
fn a_root_on_a_noexec_mount_gives_views_that_execute_nothing_as_natively() {
    if !require_root_and_fuse() {
        return;
    }
    let fs_ = Tmpfs::new(MountFlags::NOEXEC);
    let place = Place::new(fs_.path());
    // Run by root: the read-only view lets no other user in.
    let by_root = |dir: &Path| run_id(dir, 0);
    let native = by_root(&place.layer());
    assert!(native.starts_with("PermissionDenied"), "natively: {native}");
    let mp = fs_.path().join("mp");
    for args in [&[][..], &["--read-only"][..]] {
        let (through, options, log) = through_view(&place, &mp, args, by_root);
        assert_eq!(
            through, native,
            "through the view ({args:?}) as natively (view log:\n{log})"
        );
        assert_options(&format!("the view ({args:?})"), &options, &["noexec"], &[]);
        assert!(log.contains("the view is mounted noexec"), "the log says so:\n{log}");
    }
}

#[test]
fn a_root_on_a_plain_mount_gives_a_read_write_view_with_devices_and_setuid_as_natively() {
    if !require_root_and_fuse() {
        return;
    }
    let fs_ = Tmpfs::new(MountFlags::empty());
    let place = Place::new(fs_.path());
    let native = outcome(&place.layer());
    let expected = Outcome {
        device: "opened".into(),
        setuid: "euid 0".into(),
    };
    assert_eq!(native, expected, "natively");
    let (through, options, log) = through_view(&place, &fs_.path().join("mp"), &[], outcome);
    assert_eq!(
        through, native,
        "through the read-write view as natively (view log:\n{log})"
    );
    assert_options("the read-write view", &options, &[], &["nodev", "nosuid", "noexec"]);
    assert!(!log.contains("the view is mounted no"), "nothing inherited:\n{log}");
}

#[test]
fn an_aufs_dir_or_root_aufs_on_a_nodev_nosuid_mount_makes_the_whole_view_nodev_nosuid() {
    if !require_root_and_fuse() {
        return;
    }
    let plain = Tmpfs::new(MountFlags::empty());
    let restricted = Tmpfs::new(MountFlags::NODEV | MountFlags::NOSUID);
    let place = Place::new(plain.path());
    let aufs_dir = restricted.path().join("aufs-dir");
    let aufs = place.root.join("aufs");
    if aufs.exists() {
        let mut cp = Command::new("cp");
        cp.arg("-a").arg(&aufs).arg(&aufs_dir);
        run_command(cp, RUN_TIMEOUT).expect_code(0);
        fs::remove_dir_all(&aufs).expect("ROOT/aufs moved to the --aufs-dir");
    } else {
        fs::create_dir(&aufs_dir).expect("an --aufs-dir");
    }
    // A layer still in graph/, on the plain mount: the view has one set of
    // options, the strictest of the mounts it serves from.
    let args = ["--aufs-dir", aufs_dir.to_str().expect("UTF-8")];
    let (through, options, log) = through_view(&place, &plain.path().join("mp"), &args, outcome);
    assert_options("the read-write view", &options, &["nodev", "nosuid"], &["noexec"]);
    assert!(
        through.device.starts_with("PermissionDenied"),
        "through the view: {through:?}"
    );
    assert_eq!(through.setuid, format!("euid {USER}"), "through the view: {through:?}");
    assert!(
        log.contains(&format!(
            "the view is mounted nodev, as the mount of --aufs-dir {} is",
            aufs_dir.display()
        )),
        "the log names the --aufs-dir:\n{log}"
    );
    // The same directory mounted at ROOT/aufs (a bind mount keeps its
    // mount's options), no --aufs-dir.
    if aufs.is_symlink() {
        fs::remove_file(&aufs).expect("the link to the --aufs-dir");
    }
    fs::create_dir_all(&aufs).expect("ROOT/aufs");
    let bind = BindAt::new(&aufs_dir, &aufs);
    let (through, options, log) = through_view(&place, &plain.path().join("mp"), &[], outcome);
    drop(bind);
    assert_options("the read-write view", &options, &["nodev", "nosuid"], &["noexec"]);
    assert!(
        through.device.starts_with("PermissionDenied"),
        "through the view: {through:?}"
    );
    assert!(
        log.contains(&format!(
            "the view is mounted nosuid, as the mount of {}/aufs/",
            place.root.display()
        )),
        "the log names ROOT/aufs's mount:\n{log}"
    );
}
