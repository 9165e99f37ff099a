//! Tests of the integration-test harness itself (`tests/common/`): snapshots
//! and diffs, skip gates, the command runner, the FUSE mount guard and its
//! watchdog, and scratch filesystems.
//!
//! The mount guard is exercised against a stand-in FUSE server: this test
//! binary re-executed as a helper process (see [`helper_process`]) serving a
//! tiny filesystem in which reading `hang` blocks the server forever.

mod common;

use std::any::Any;
use std::env;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, CWD};

// ---------------------------------------------------------------------------
// Helper processes
// ---------------------------------------------------------------------------

const HELPER_ROLE: &str = "G2A_HARNESS_HELPER";
const HELPER_MOUNTPOINT: &str = "G2A_HARNESS_MOUNTPOINT";

/// Not a test of its own: the entry point of the helper processes. Run
/// normally it does nothing; re-executed by [`helper`] with
/// `G2A_HARNESS_HELPER=<role>` it plays that role.
#[test]
fn helper_process() {
    let Ok(role) = env::var(HELPER_ROLE) else { return };
    let mountpoint =
        || PathBuf::from(env::var_os(HELPER_MOUNTPOINT).expect("G2A_HARNESS_MOUNTPOINT is set by helper()"));
    match role.as_str() {
        "server" => stand_in::serve(&mountpoint()),
        // A test that mounts with a 1 s bound and then hangs on regardless.
        "hung-test" => {
            let mp = mountpoint();
            let mount = Mount::start_command(helper("server", &mp), &mp, Duration::from_secs(1));
            loud(&format!("server pid {}", mount.pid()));
            thread::sleep(Duration::from_secs(120));
            drop(mount);
        }
        "skip" => {
            let ran = skip_unless("a unicorn", &["no unicorn here".to_string()]);
            loud(&format!("gate returned {ran}"));
        }
        "skip-fuse" => {
            let ran = require_root_and_fuse();
            loud(&format!("gate returned {ran}"));
        }
        other => panic!("unknown helper role {other:?}"),
    }
}

/// This test binary, re-executed to play `role` (see [`helper_process`]).
/// Only the server's output is left uncaptured: the other roles show that
/// the harness's loud messages get past libtest's capture.
fn helper(role: &str, mountpoint: &Path) -> Command {
    let exe = env::current_exe().expect("the running test binary has a path");
    let mut cmd = Command::new(exe);
    cmd.args(["helper_process", "--exact", "--test-threads=1", "--quiet"]);
    if role == "server" {
        cmd.arg("--nocapture");
    }
    cmd.env(HELPER_ROLE, role).env(HELPER_MOUNTPOINT, mountpoint);
    cmd
}

/// The stand-in FUSE server: `/hello.txt` holds [`stand_in::HELLO`];
/// reading `/hang` blocks the (single-threaded) server forever.
mod stand_in {
    use std::ffi::OsStr;
    use std::path::Path;
    use std::time::{Duration, UNIX_EPOCH};

    use fuser::{
        Config, Errno, FileAttr, FileHandle, FileType, Filesystem, Generation, INodeNo, LockOwner, MountOption,
        OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, Request,
    };

    pub const HELLO: &[u8] = b"hello from the stand-in server\n";
    const TTL: Duration = Duration::from_secs(1);
    const HELLO_INO: u64 = 2;
    const HANG_INO: u64 = 3;

    fn attr(ino: u64) -> FileAttr {
        let (kind, perm, size, nlink) = match ino {
            1 => (FileType::Directory, 0o755, 0, 2),
            HELLO_INO => (FileType::RegularFile, 0o644, HELLO.len() as u64, 1),
            _ => (FileType::RegularFile, 0o644, 4096, 1),
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind,
            perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            flags: 0,
            blksize: 4096,
        }
    }

    struct HelloFs;

    impl Filesystem for HelloFs {
        fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
            match (u64::from(parent), name.to_str()) {
                (1, Some("hello.txt")) => reply.entry(&TTL, &attr(HELLO_INO), Generation(0)),
                (1, Some("hang")) => reply.entry(&TTL, &attr(HANG_INO), Generation(0)),
                _ => reply.error(Errno::ENOENT),
            }
        }

        fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
            match u64::from(ino) {
                ino @ (1 | HELLO_INO | HANG_INO) => reply.attr(&TTL, &attr(ino)),
                _ => reply.error(Errno::ENOENT),
            }
        }

        fn read(
            &self,
            _req: &Request,
            ino: INodeNo,
            _fh: FileHandle,
            offset: u64,
            size: u32,
            _flags: OpenFlags,
            _lock_owner: Option<LockOwner>,
            reply: ReplyData,
        ) {
            match u64::from(ino) {
                HELLO_INO => {
                    let start = (offset as usize).min(HELLO.len());
                    let end = (start + size as usize).min(HELLO.len());
                    reply.data(&HELLO[start..end]);
                }
                HANG_INO => {
                    eprintln!("stand-in: read of /hang, blocking forever");
                    loop {
                        std::thread::park();
                    }
                }
                _ => reply.error(Errno::ENOENT),
            }
        }

        fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
            if u64::from(ino) != 1 {
                reply.error(Errno::ENOTDIR);
                return;
            }
            let entries = [
                (1, FileType::Directory, "."),
                (1, FileType::Directory, ".."),
                (HELLO_INO, FileType::RegularFile, "hello.txt"),
                (HANG_INO, FileType::RegularFile, "hang"),
            ];
            for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
                if reply.add(INodeNo(ino), (i + 1) as u64, kind, name) {
                    break;
                }
            }
            reply.ok();
        }
    }

    /// Mounts the stand-in at `mountpoint` and serves it until unmounted.
    pub fn serve(mountpoint: &Path) {
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("g2a-stand-in".into()),
            MountOption::Subtype("standin".into()),
        ];
        eprintln!("stand-in: mounting at {}", mountpoint.display());
        if let Err(e) = fuser::mount(HelloFs, mountpoint, &config) {
            panic!("stand-in: serving {} failed: {e}", mountpoint.display());
        }
        eprintln!("stand-in: unmounted, exiting");
    }
}

// ---------------------------------------------------------------------------
// Small helpers of these tests
// ---------------------------------------------------------------------------

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("g2a-selftest.")
        .tempdir()
        .expect("a temporary directory in $TMPDIR")
}

/// The message of a caught panic.
fn panic_message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .unwrap_or_else(|| "(non-string panic)".into()),
    }
}

/// Runs `f`, which must panic, and returns its panic message.
#[track_caller]
fn expect_panic<R>(f: impl FnOnce() -> R) -> String {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(_) => panic!("expected a panic, but it returned"),
        Err(payload) => panic_message(payload),
    }
}

fn set_times(path: &Path, atime_s: i64, mtime_s: i64) {
    let ts = |s| Timespec {
        tv_sec: s,
        tv_nsec: 123,
    };
    let times = Timestamps {
        last_access: ts(atime_s),
        last_modification: ts(mtime_s),
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)
        .unwrap_or_else(|e| panic!("utimensat {}: {e}", path.display()));
}

/// A small tree with one entry of each kind that needs no privilege, a hard
/// link pair, and fixed times, so that two builds snapshot the same.
fn build_sample(root: &Path) {
    fs::create_dir_all(root.join("dir/sub")).unwrap();
    fs::write(root.join("dir/file"), b"content").unwrap();
    fs::set_permissions(root.join("dir/file"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::hard_link(root.join("dir/file"), root.join("hard")).unwrap();
    fs::write(root.join("dir/sub/empty"), b"").unwrap();
    fs::set_permissions(root.join("dir/sub/empty"), fs::Permissions::from_mode(0o644)).unwrap();
    symlink("../dir/file", root.join("dir/link")).unwrap();
    symlink("/nonexistent/target", root.join("dangling")).unwrap();
    rustix::fs::mkfifoat(CWD, root.join("fifo"), Mode::from_raw_mode(0o600)).unwrap();
    drop(UnixListener::bind(root.join("sock")).unwrap());
    // Children before parents: creating an entry changes its parent's mtime.
    for p in [
        "dir/file",
        "dir/sub/empty",
        "dir/link",
        "dangling",
        "fifo",
        "sock",
        "dir/sub",
        "dir",
        "",
    ] {
        set_times(&root.join(p), 1_000_000_000, 1_100_000_000);
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

// ---------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------

#[test]
fn snapshot_records_each_kind_with_its_own_fields() {
    let dir = tempdir();
    let root = dir.path();
    build_sample(root);
    let tree = snapshot(root);

    let paths: Vec<String> = tree.keys().map(|p| show(p)).collect();
    assert_eq!(
        paths,
        [
            ".",
            "dangling",
            "dir",
            "dir/file",
            "dir/link",
            "dir/sub",
            "dir/sub/empty",
            "fifo",
            "hard",
            "sock"
        ]
    );
    let root_entry = tree.at("");
    assert_eq!(root_entry.kind, Kind::Dir);
    assert_eq!(
        (root_entry.nlink, root_entry.size, root_entry.content),
        (0, 0, None),
        "directories carry no nlink, size or content"
    );

    let file = tree.at("dir/file");
    assert_eq!(file.kind, Kind::File);
    assert_eq!(file.mode, 0o640);
    assert_eq!(file.size, 7);
    assert_eq!(file.content, Some(sha256(b"content")));
    assert_eq!(file.mtime_ns, 1_100_000_000_000_000_123);
    assert_eq!(file.atime_ns, None, "atimes are recorded only on request");
    let meta = fs::metadata(root.join("dir/file")).unwrap();
    assert_eq!((file.uid, file.gid), (meta.uid(), meta.gid()));

    let link = tree.at("dir/link");
    assert_eq!(link.kind, Kind::Symlink);
    assert_eq!(link.target.as_deref(), Some(Path::new("../dir/file")));
    assert_eq!((link.size, link.content), (0, None));
    assert_eq!(
        tree.at("dangling").target.as_deref(),
        Some(Path::new("/nonexistent/target"))
    );
    assert_eq!(tree.at("fifo").kind, Kind::Fifo);
    assert_eq!(tree.at("fifo").mode, 0o600);
    assert_eq!(tree.at("sock").kind, Kind::Socket);
    assert_eq!(tree.at("dir/sub/empty").content, Some(sha256(b"")));
}

#[test]
fn snapshot_records_device_numbers_of_device_nodes() {
    if !require_root() {
        return;
    }
    let dir = tempdir();
    let root = dir.path();
    let mode = Mode::from_raw_mode(0o660);
    rustix::fs::mknodat(
        CWD,
        root.join("null"),
        FileType::CharacterDevice,
        mode,
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    rustix::fs::mknodat(
        CWD,
        root.join("loop"),
        FileType::BlockDevice,
        mode,
        rustix::fs::makedev(7, 200),
    )
    .unwrap();
    fs::set_permissions(root.join("loop"), fs::Permissions::from_mode(0o660)).unwrap(); // past the umask
    let tree = snapshot(root);
    assert_eq!(tree.at("null").kind, Kind::Char);
    assert_eq!(tree.at("null").rdev, libc::makedev(1, 3));
    assert_eq!(tree.at("loop").kind, Kind::Block);
    assert_eq!(tree.at("loop").rdev, libc::makedev(7, 200));
    assert_eq!(tree.at("loop").mode, 0o660);
}

#[test]
fn snapshot_never_follows_symlinks() {
    let dir = tempdir();
    let outside = dir.path().join("outside");
    let root = dir.path().join("root");
    fs::create_dir_all(outside.join("deep")).unwrap();
    fs::write(outside.join("secret"), b"must not be read").unwrap();
    fs::create_dir(&root).unwrap();
    symlink(&outside, root.join("to-dir")).unwrap();
    symlink(outside.join("secret"), root.join("to-file")).unwrap();

    let tree = snapshot(&root);
    assert_eq!(
        tree.len(),
        3,
        "the root and two symlinks, nothing behind them: {:?}",
        tree.keys().collect::<Vec<_>>()
    );
    assert_eq!(tree.at("to-dir").kind, Kind::Symlink);
    assert_eq!(tree.at("to-file").content, None);
}

#[test]
fn a_root_symlink_is_followed_only_when_asked() {
    let dir = tempdir();
    let real = dir.path().join("real");
    build_sample(&real);
    let link = dir.path().join("link");
    symlink(&real, &link).unwrap();

    let as_link = snapshot(&link);
    assert_eq!(as_link.len(), 1);
    assert_eq!(as_link.at("").kind, Kind::Symlink);

    let followed = snapshot_with(
        &link,
        &SnapOpts {
            follow_root_symlink: true,
            ..SnapOpts::default()
        },
    );
    assert_same(&followed, &snapshot(&real), "a followed root symlink vs its target");
}

#[test]
fn snapshots_of_equal_trees_are_the_same_despite_different_inodes() {
    let dir = tempdir();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    build_sample(&a);
    build_sample(&b);
    assert_ne!(
        fs::metadata(a.join("hard")).unwrap().ino(),
        fs::metadata(b.join("hard")).unwrap().ino()
    );
    let (ta, tb) = (snapshot(&a), snapshot(&b));
    assert_eq!(diff(&ta, &tb), Vec::<String>::new());
    assert_same(&ta, &tb, "two builds of the sample tree");
}

#[test]
fn diff_names_the_path_and_each_differing_field() {
    let dir = tempdir();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    build_sample(&a);
    build_sample(&b);
    fs::set_permissions(b.join("dir/sub/empty"), fs::Permissions::from_mode(0o4711)).unwrap();
    fs::write(b.join("dir/file"), b"CONTENT").unwrap(); // same size, other bytes
    fs::remove_file(b.join("dir/link")).unwrap();
    symlink("elsewhere", b.join("dir/link")).unwrap();
    fs::remove_file(b.join("fifo")).unwrap();
    fs::write(b.join("new"), b"").unwrap();
    for p in ["dir/file", "dir/sub/empty", "dir/link", "new", ""] {
        set_times(&b.join(p), 1_000_000_000, 1_100_000_000);
    }
    set_times(&b.join("dir"), 1_000_000_000, 1_200_000_000);

    let short = |bytes: &[u8]| {
        sha256(bytes)[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            + ".."
    };
    let content = format!("content {} != {}", short(b"content"), short(b"CONTENT"));
    assert_eq!(
        diff(&snapshot(&a), &snapshot(&b)),
        [
            "dir: mtime_ns 1100000000000000123 != 1200000000000000123".to_string(),
            format!("dir/file: {content}"),
            "dir/link: target \"../dir/file\" != \"elsewhere\"".to_string(),
            "dir/sub/empty: mode 0644 != 4711".to_string(),
            "fifo: only in a (Fifo)".to_string(),
            // The hard link shares the file's inode, so it changed with it.
            format!("hard: {content}"),
            "new: only in b (File)".to_string(),
        ]
    );
}

#[test]
fn hard_links_compare_by_structure_not_inode_numbers() {
    let dir = tempdir();
    let make = |name: &str, linked: bool| {
        let root = dir.path().join(name);
        fs::create_dir_all(root.join("x")).unwrap();
        fs::write(root.join("x/one"), b"same").unwrap();
        if linked {
            fs::hard_link(root.join("x/one"), root.join("two")).unwrap();
        } else {
            fs::write(root.join("two"), b"same").unwrap();
        }
        for p in ["x/one", "two", "x", ""] {
            set_times(&root.join(p), 1, 2);
        }
        snapshot(&root)
    };
    let (linked, also_linked, copied) = (make("a", true), make("b", true), make("c", false));

    assert_eq!(
        linked.at("two").link_group.as_deref(),
        Some(Path::new("two")),
        "\"two\" sorts before \"x/one\""
    );
    assert_eq!(linked.at("x/one").link_group.as_deref(), Some(Path::new("two")));
    assert_eq!(linked.at("x/one").nlink, 2);
    assert_same(&linked, &also_linked, "two trees with the same hard-link structure");
    let lines = diff(&linked, &copied);
    assert_eq!(
        lines,
        [
            "two: nlink 2 != 1; link_group \"two\" != (none)",
            "x/one: nlink 2 != 1; link_group \"two\" != (none)",
        ]
    );
}

#[test]
fn xattrs_are_recorded_without_following_symlinks() {
    let dir = tempdir();
    let root = dir.path();
    fs::write(root.join("file"), b"").unwrap();
    symlink("file", root.join("link")).unwrap();
    let odd_name = OsStr::from_bytes(b"user.not-utf8-\xff");
    if let Err(e) = xattr::set(root.join("file"), "user.plain", b"value") {
        let ok = skip_unless("user xattrs on $TMPDIR", &[e.to_string()]);
        assert!(!ok);
        return;
    }
    xattr::set(root.join("file"), odd_name, b"\x00\x01binary").unwrap();

    let tree = snapshot(root);
    let file = tree.at("file");
    assert_eq!(
        file.xattrs.get(OsStr::new("user.plain")).map(Vec::as_slice),
        Some(&b"value"[..])
    );
    assert_eq!(
        file.xattrs.get(odd_name).map(Vec::as_slice),
        Some(&b"\x00\x01binary"[..])
    );
    assert!(
        tree.at("link").xattrs.is_empty(),
        "the symlink's own xattrs, not its target's"
    );
}

#[test]
fn trusted_and_symlink_xattrs_are_recorded_as_root() {
    if !require_root() {
        return;
    }
    let dir = tempdir();
    let root = dir.path();
    fs::write(root.join("file"), b"").unwrap();
    symlink("file", root.join("link")).unwrap();
    xattr::set(root.join("file"), "trusted.overlay.opaque", b"y").unwrap();
    xattr::set(root.join("link"), "trusted.on-the-link", b"1").unwrap();
    let tree = snapshot(root);
    assert_eq!(
        tree.at("file").xattrs.get(OsStr::new("trusted.overlay.opaque")),
        Some(&b"y".to_vec())
    );
    assert_eq!(
        tree.at("link").xattrs.keys().collect::<Vec<_>>(),
        [OsStr::new("trusted.on-the-link")],
        "the link's own xattr and not the file's"
    );
    let mut other = tree.clone();
    other
        .get_mut(Path::new("file"))
        .unwrap()
        .xattrs
        .insert("trusted.overlay.opaque".into(), b"n".to_vec());
    assert_eq!(
        diff(&tree, &other),
        ["file: xattr \"trusted.overlay.opaque\" \"y\" != \"n\""]
    );
}

#[test]
fn atime_snapshots_do_not_change_atimes() {
    let dir = tempdir();
    let root = dir.path().join("root");
    build_sample(&root);
    // Atimes older than mtimes: relatime would update them on any read.
    for p in ["dir/file", "dir/sub/empty", "dir/sub", "dir", ""] {
        set_times(&root.join(p), 1_000, 1_100_000_000);
    }
    let opts = SnapOpts {
        atime: true,
        ..SnapOpts::default()
    };
    let first = snapshot_with(&root, &opts);
    assert_eq!(first.at("dir/file").atime_ns, Some(1_000_000_000_123));
    assert_eq!(first.at("dir").atime_ns, Some(1_000_000_000_123));
    assert_eq!(first.at("dir/link").atime_ns, None, "symlink atimes are not recorded");
    let second = snapshot_with(&root, &opts);
    assert_same(&first, &second, "two atime snapshots in a row");
}

#[test]
fn excluded_paths_are_skipped_with_their_subtrees() {
    let dir = tempdir();
    build_sample(dir.path());
    let opts = SnapOpts {
        exclude: vec!["dir/sub".into(), "fifo".into()],
        ..SnapOpts::default()
    };
    let tree = snapshot_with(dir.path(), &opts);
    assert!(!tree.contains_key(Path::new("dir/sub")) && !tree.contains_key(Path::new("dir/sub/empty")));
    assert!(!tree.contains_key(Path::new("fifo")));
    assert!(tree.contains_key(Path::new("dir/file")));
    assert_same(
        &tree,
        &snapshot(dir.path()).without(["dir/sub", "fifo"]),
        "exclude vs without",
    );
}

#[test]
fn subtree_equals_a_snapshot_taken_there() {
    let dir = tempdir();
    let root = dir.path();
    build_sample(root);
    // A hard-link group inside `dir` whose first member overall ("hard") lies outside it.
    fs::hard_link(root.join("dir/file"), root.join("dir/sub/file-again")).unwrap();
    set_times(&root.join("dir/sub"), 1, 2);
    let whole = snapshot(root);
    assert_eq!(
        whole.at("dir/sub/file-again").link_group.as_deref(),
        Some(Path::new("dir/file"))
    );
    assert_same(
        &whole.subtree("dir"),
        &snapshot(&root.join("dir")),
        "subtree(dir) vs a snapshot of dir",
    );
    assert_eq!(
        whole.subtree("dir").at("sub/file-again").link_group.as_deref(),
        Some(Path::new("file"))
    );
    assert!(whole.subtree("nowhere").is_empty());
}

#[test]
fn without_recomputes_hard_link_groups() {
    let dir = tempdir();
    let root = dir.path();
    build_sample(root);
    let whole = snapshot(root);
    assert_eq!(whole.at("hard").link_group.as_deref(), Some(Path::new("dir/file")));
    let rest = whole.without(["dir"]);
    assert_eq!(
        rest.at("hard").link_group.as_deref(),
        Some(Path::new("hard")),
        "its own group once dir/file is gone"
    );
    assert_same(
        &rest,
        &snapshot_with(
            root,
            &SnapOpts {
                exclude: vec!["dir".into()],
                ..Default::default()
            },
        ),
        "without vs exclude",
    );
}

#[test]
fn setuid_setgid_and_sticky_bits_are_part_of_the_mode() {
    let dir = tempdir();
    fs::create_dir(dir.path().join("sticky")).unwrap();
    fs::write(dir.path().join("suid"), b"").unwrap();
    fs::set_permissions(dir.path().join("sticky"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::set_permissions(dir.path().join("suid"), fs::Permissions::from_mode(0o6755)).unwrap();
    let tree = snapshot(dir.path());
    assert_eq!(tree.at("sticky").mode, 0o1777);
    assert_eq!(tree.at("suid").mode, 0o6755);
}

#[test]
fn names_that_are_not_utf8_are_kept_and_shown_escaped() {
    let dir = tempdir();
    let name = OsStr::from_bytes(b"caf\xe9");
    fs::write(dir.path().join(name), b"x").unwrap();
    let tree = snapshot(dir.path());
    assert!(tree.contains_key(Path::new(name)));
    let lines = diff(&tree, &tree.without([Path::new(name)]));
    assert_eq!(lines, ["\"caf\\xE9\": only in a (File)"]);
}

#[test]
fn assert_same_lists_at_most_50_differences_and_the_count() {
    let dir = tempdir();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    fs::create_dir(&a).unwrap();
    fs::create_dir(&b).unwrap();
    for i in 0..60 {
        fs::write(a.join(format!("f{i:02}")), b"").unwrap();
    }
    set_times(&a, 1, 2);
    set_times(&b, 1, 2);
    let msg = expect_panic(|| assert_same(&snapshot(&a), &snapshot(&b), "sixty files vs none"));
    assert!(
        msg.starts_with("sixty files vs none: trees differ (60 differences"),
        "{msg}"
    );
    assert_eq!(msg.lines().filter(|l| l.contains(": only in a")).count(), 50, "{msg}");
    assert!(
        msg.contains("f00: only in a (File)") && msg.contains("... and 10 more"),
        "{msg}"
    );
}

// ---------------------------------------------------------------------------
// Gates
// ---------------------------------------------------------------------------

#[test]
fn the_test_name_is_the_running_tests_own() {
    assert_eq!(test_name(), "the_test_name_is_the_running_tests_own");
    // Not on a thread the test starts: there is no test name to give.
    let elsewhere = thread::spawn(test_name).join();
    assert!(elsewhere.is_err(), "a thread of the test's own has no test name");
}

#[test]
fn skip_unless_is_true_when_nothing_is_missing() {
    assert!(skip_unless("nothing", &[]));
}

#[test]
fn a_skip_is_loud_outside_ci_and_a_failure_under_ci() {
    let dir = tempdir();
    let mut outside_ci = helper("skip", dir.path());
    outside_ci.env_remove("CI");
    let skipped = run_command(outside_ci, Duration::from_secs(60));
    skipped.expect_code(0);
    assert!(skipped.stderr.contains("gate returned false"), "{skipped}");
    assert!(
        skipped
            .stderr
            .contains("SKIPPED helper_process: needs a unicorn (no unicorn here)"),
        "{skipped}"
    );

    let mut under_ci = helper("skip", dir.path());
    under_ci.env("CI", "true");
    let failed = run_command(under_ci, Duration::from_secs(60));
    assert_eq!(failed.code, 101, "a test that panics exits 101:\n{failed}");
    // libtest reports a failing test's panic on stdout.
    assert!(
        failed
            .stdout
            .contains("SKIPPED helper_process: needs a unicorn (no unicorn here); CI=true"),
        "{failed}"
    );
    assert!(!failed.stderr.contains("gate returned"), "{failed}");
}

#[test]
fn require_root_and_fuse_skips_for_other_users() {
    if !require_root_and_fuse() {
        return;
    }
    let dir = tempdir();
    let mut as_nobody = helper("skip-fuse", dir.path());
    as_nobody.env_remove("CI").current_dir("/").uid(65534).gid(65534);
    let result = run_command(as_nobody, Duration::from_secs(60));
    result.expect_code(0);
    assert!(result.stderr.contains("gate returned false"), "{result}");
    assert!(
        result
            .stderr
            .contains("SKIPPED helper_process: needs root and /dev/fuse (euid is 65534; cannot open /dev/fuse"),
        "{result}"
    );
}

// ---------------------------------------------------------------------------
// Running commands
// ---------------------------------------------------------------------------

fn sh(script: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script]);
    cmd
}

#[test]
fn bin_is_the_built_graph2aufs_binary() {
    let meta = fs::metadata(bin()).unwrap_or_else(|e| panic!("{}: {e}", bin().display()));
    assert!(meta.is_file() && meta.mode() & 0o111 != 0);
    assert_eq!(bin().file_name(), Some(OsStr::new("graph2aufs")));
    assert_eq!(g2a(["plan", "/x"]).get_args().collect::<Vec<_>>(), ["plan", "/x"]);
}

#[test]
fn run_command_captures_the_exit_code_and_both_streams() {
    let result = run_command(sh("echo out; echo err >&2; exit 3"), RUN_TIMEOUT);
    assert_eq!(
        (result.code, result.stdout.as_str(), result.stderr.as_str()),
        (3, "out\n", "err\n")
    );
    assert_eq!(result.command, "sh -c \"echo out; echo err >&2; exit 3\"");
}

#[test]
fn a_signal_shows_as_128_plus_its_number() {
    assert_eq!(run_command(sh("kill -9 $$"), RUN_TIMEOUT).code, 128 + 9);
}

#[test]
fn run_command_kills_the_process_group_after_the_timeout_and_shows_the_output() {
    let dir = tempdir();
    let pidfile = dir.path().join("grandchild.pid");
    let script = format!(
        "sleep 60 & echo $! > '{}'; echo started; echo oops >&2; wait",
        pidfile.display()
    );
    let started = Instant::now();
    let msg = expect_panic(|| run_command(sh(&script), Duration::from_secs(1)));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(msg.contains("timed out after 1s"), "{msg}");
    assert!(
        msg.contains("--- stdout ---\nstarted") && msg.contains("--- stderr ---\noops"),
        "{msg}"
    );
    let grandchild: i32 = fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert!(
        ends_within(grandchild, Duration::from_secs(5)),
        "the grandchild {grandchild} survived the timeout"
    );
}

#[test]
fn a_daemon_holding_stdout_does_not_block_run_command() {
    let started = Instant::now();
    let result = run_command(sh("sleep 5 & echo parent done"), RUN_TIMEOUT);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "waited for the daemon: {:?}",
        started.elapsed()
    );
    assert_eq!(result.stdout, "parent done\n");
}

#[test]
fn json_output_is_parsed_and_non_json_fails_clearly() {
    let result = run_command(sh(r#"echo '{"items": [1, 2]}'"#), RUN_TIMEOUT);
    assert_eq!(result.json()["items"][1], 2);
    let result = run_command(sh("echo not json; echo why >&2; exit 1"), RUN_TIMEOUT);
    let msg = expect_panic(|| result.json());
    assert!(
        msg.starts_with("stdout is not JSON") && msg.contains("not json") && msg.contains("why"),
        "{msg}"
    );
}

#[test]
fn expect_code_shows_the_whole_result() {
    let result = run_command(sh("echo hi; exit 2"), RUN_TIMEOUT);
    result.expect_code(2);
    let msg = expect_panic(|| result.expect_code(0));
    assert!(
        msg.contains("expected exit code 0") && msg.contains("exit code 2") && msg.contains("hi"),
        "{msg}"
    );
}

// ---------------------------------------------------------------------------
// The mount guard and its watchdog
// ---------------------------------------------------------------------------

/// Reads `path` on another thread; the result arrives on the returned channel.
fn read_in_background(path: PathBuf) -> mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(fs::read(path));
    });
    rx
}

#[test]
fn mount_guard_waits_for_the_mount_and_drop_unmounts_it() {
    if !require_root_and_fuse() {
        return;
    }
    let dir = tempdir();
    let mp = dir.path().join("mnt");
    fs::create_dir(&mp).unwrap();
    let mount = Mount::start_command(helper("server", &mp), &mp, Duration::from_secs(60));
    assert!(is_mounted(&mp));
    // fuser's own mount (no fusermount) ignores the subtype: plain "fuse".
    assert_eq!(
        (mount.info().fstype.as_str(), mount.info().source.to_str()),
        ("fuse", Some("g2a-stand-in"))
    );
    let fusectl = fusectl();
    assert!(
        mount.connection_dir().join("abort").exists(),
        "fusectl shows {}",
        mount.connection_dir().display()
    );
    drop(fusectl);
    assert_eq!(fs::read(mp.join("hello.txt")).unwrap(), stand_in::HELLO);
    let mut names: Vec<_> = fs::read_dir(&mp).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["hang", "hello.txt"]);
    assert!(mount.log().contains("stand-in: mounting at"), "{}", mount.log());
    let pid = mount.pid() as i32;
    drop(mount);
    assert!(!is_mounted(&mp), "still mounted after drop: {:?}", mounts_at(&mp));
    assert!(ends_within(pid, Duration::ZERO), "the server {pid} survived the drop");
}

#[test]
fn unmount_returns_the_server_exit_status() {
    if !require_root_and_fuse() {
        return;
    }
    let dir = tempdir();
    let mp = dir.path().join("mnt");
    fs::create_dir(&mp).unwrap();
    let mount = Mount::start_command(helper("server", &mp), &mp, Duration::from_secs(60));
    let status = mount.unmount();
    assert!(status.success(), "the stand-in exits 0 once unmounted: {status}");
    assert!(!is_mounted(&mp));
}

#[test]
fn start_fails_with_the_server_log_when_the_server_exits_before_mounting() {
    let dir = tempdir();
    let msg = expect_panic(|| {
        Mount::start_command(
            sh("echo cannot mount: boom >&2; exit 7"),
            dir.path(),
            Duration::from_secs(60),
        )
    });
    assert!(msg.contains("exited (exit status: 7) before"), "{msg}");
    assert!(msg.contains("cannot mount: boom"), "{msg}");
}

#[test]
fn start_fails_and_kills_the_server_when_nothing_is_mounted_in_time() {
    let dir = tempdir();
    let pidfile = dir.path().join("server.pid");
    let cmd = sh(&format!(
        "echo $$ > '{}'; echo waiting; exec sleep 60",
        pidfile.display()
    ));
    let msg =
        expect_panic(|| Mount::start_command_within(cmd, dir.path(), Duration::from_secs(60), Duration::from_secs(1)));
    assert!(
        msg.contains("did not mount") && msg.contains("within 1s") && msg.contains("waiting"),
        "{msg}"
    );
    let pid: i32 = fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert!(
        ends_within(pid, Duration::from_secs(1)),
        "the server {pid} was left running"
    );
}

/// A private namespace made while another test's view is mounted holds no
/// copy of it: where `/` is not shared, such a copy would keep the FUSE
/// connection alive after the other test unmounts, and its server would
/// never exit.
#[test]
fn a_private_namespace_made_while_a_view_is_mounted_lets_its_server_exit_on_unmount() {
    if !require_root_and_fuse() {
        return;
    }
    let dir = tempdir();
    let mp = dir.path().join("mnt");
    fs::create_dir(&mp).unwrap();
    let mount = Mount::start_command(helper("server", &mp), &mp, Duration::from_secs(60));
    let (made, made_rx) = mpsc::channel();
    let (done, done_rx) = mpsc::channel::<()>();
    thread::scope(|s| {
        s.spawn(move || {
            private_mounts();
            made.send(()).unwrap();
            // The namespace lives as long as this thread.
            let _ = done_rx.recv_timeout(Duration::from_secs(60));
        });
        made_rx.recv().expect("the private namespace is made");
        let status = mount.unmount();
        done.send(()).unwrap();
        assert!(status.success(), "the server exited with {status}");
    });
}

#[test]
fn drop_unblocks_a_reader_hung_in_the_server() {
    if !require_root_and_fuse() {
        return;
    }
    let dir = tempdir();
    let mp = dir.path().join("mnt");
    fs::create_dir(&mp).unwrap();
    let mount = Mount::start_command(helper("server", &mp), &mp, Duration::from_secs(60));
    let reader = read_in_background(mp.join("hang"));
    assert!(
        reader.recv_timeout(Duration::from_millis(500)).is_err(),
        "the read of /hang should block"
    );
    let started = Instant::now();
    drop(mount);
    assert!(
        started.elapsed() < EXIT_GRACE + Duration::from_secs(3),
        "drop took {:?}",
        started.elapsed()
    );
    assert!(!is_mounted(&mp), "still mounted after drop: {:?}", mounts_at(&mp));
    let result = reader
        .recv_timeout(Duration::from_secs(10))
        .expect("the reader is released once the server is gone");
    assert!(result.is_err(), "the hung read must fail, got {result:?}");
}

#[test]
fn watchdog_aborts_a_hung_read_and_leaves_nothing_mounted() {
    if !require_root_and_fuse() {
        return;
    }
    let dir = tempdir();
    let mp = dir.path().join("mnt");
    fs::create_dir(&mp).unwrap();
    let bound = Duration::from_secs(2);
    let mount = Mount::start_command(helper("server", &mp), &mp, bound);
    let started = Instant::now();
    let result = read_in_background(mp.join("hang"))
        .recv_timeout(bound + Duration::from_secs(5))
        .expect("the watchdog must release the hung read");
    assert!(result.is_err(), "the aborted read must fail, got {result:?}");
    assert!(
        started.elapsed() >= bound - Duration::from_millis(500),
        "released too early: {:?}",
        started.elapsed()
    );
    assert!(mount.watchdog_fired());
    assert!(
        mount.wait_for_watchdog(Duration::from_secs(5)),
        "the watchdog finishes its abort"
    );
    assert!(
        !is_mounted(&mp),
        "the watchdog detaches the mount: {:?}",
        mounts_at(&mp)
    );
    assert!(
        mount.wait_exit(Duration::from_secs(2)).is_some(),
        "the watchdog kills the server"
    );
    drop(mount);
    assert!(!is_mounted(&mp));
}

#[test]
fn watchdog_aborts_the_test_process_when_the_test_hangs_on() {
    if !require_root_and_fuse() {
        return;
    }
    let dir = tempdir();
    let mp = dir.path().join("mnt");
    fs::create_dir(&mp).unwrap();
    // The aborted test's $TMPDIR: its destructors never run.
    let its_tmp = dir.path().join("tmp");
    fs::create_dir(&its_tmp).unwrap();
    let mut hung = helper("hung-test", &mp);
    hung.env("TMPDIR", &its_tmp);
    let started = Instant::now();
    let result = run_command(hung, Duration::from_secs(60));
    let took = started.elapsed();
    assert_eq!(result.code, 128 + libc::SIGABRT, "the hung test is aborted:\n{result}");
    assert!(
        took >= WATCHDOG_GRACE && took < WATCHDOG_GRACE + Duration::from_secs(10),
        "took {took:?}"
    );
    assert!(
        result
            .stderr
            .contains(&format!("WATCHDOG: mount of {} exceeded 1s, aborted", mp.display())),
        "{result}"
    );
    assert!(result.stderr.contains("aborting the test process"), "{result}");
    assert!(!is_mounted(&mp), "left mounted: {:?}", mounts_at(&mp));
    let server: i32 = result
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("server pid "))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("the hung test reports its server's pid:\n{result}"));
    assert!(
        ends_within(server, Duration::from_secs(2)),
        "the server {server} outlived the watchdog"
    );
    let left: Vec<_> = fs::read_dir(&its_tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "the aborted test left files in its $TMPDIR: {left:?}");
}

#[test]
fn kill_leaves_a_dead_mount_that_lazy_umount_removes() {
    if !require_root_and_fuse() {
        return;
    }
    let dir = tempdir();
    let mp = dir.path().join("mnt");
    fs::create_dir(&mp).unwrap();
    let mount = Mount::start_command(helper("server", &mp), &mp, Duration::from_secs(60));
    mount.kill();
    assert!(is_mounted(&mp), "a crashed server leaves its mount behind");
    let err = fs::read(mp.join("hello.txt")).expect_err("a dead mount cannot be read");
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
    assert!(lazy_umount(&mp));
    assert!(!is_mounted(&mp));
    assert!(!lazy_umount(&mp), "nothing left to unmount");
    drop(mount);
}

#[test]
fn mount_points_with_spaces_and_tabs_are_found() {
    if !require_root() {
        return;
    }
    let dir = tempdir();
    let mp = dir.path().join("with space\tand tab\\");
    fs::create_dir(&mp).unwrap();
    rustix::mount::mount("g2a-test", &mp, "tmpfs", rustix::mount::MountFlags::empty(), None).unwrap();
    let found = mounts_at(&mp);
    let cleaned = lazy_umount(&mp);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].fstype, "tmpfs");
    assert_eq!(found[0].source, "g2a-test");
    assert!(cleaned && !is_mounted(&mp));
}

// ---------------------------------------------------------------------------
// Scratch filesystems
// ---------------------------------------------------------------------------

#[test]
fn loopfs_is_a_mounted_ext4_of_its_own_and_drop_removes_it() {
    if !require_root() {
        return;
    }
    let fs_ = LoopFs::new(16, "ext4");
    let (mnt, image) = (fs_.path().to_path_buf(), fs_.image().to_path_buf());
    let info = fs_.info();
    assert_eq!(info.fstype, "ext4");
    assert!(info.source.as_bytes().starts_with(b"/dev/loop"), "{info:?}");
    assert_ne!(
        fs::metadata(&mnt).unwrap().dev(),
        fs::metadata(&image).unwrap().dev(),
        "a device of its own"
    );
    fs::write(mnt.join("file"), b"on the loop device").unwrap();
    drop(fs_);
    assert!(!is_mounted(&mnt));
    assert!(!image.exists() && !mnt.exists(), "the scratch directory is removed");
}

#[test]
fn loopfs_drop_detaches_a_busy_mount() {
    if !require_root() {
        return;
    }
    let fs_ = LoopFs::new(8, "ext4");
    let mnt = fs_.path().to_path_buf();
    let mut busy = File::create(mnt.join("open")).unwrap();
    drop(fs_);
    assert!(!is_mounted(&mnt), "detached although a file is open on it");
    busy.write_all(b"still writable through the open descriptor").unwrap();
}

#[test]
fn tmpfs_has_the_requested_size_and_drop_unmounts_it() {
    if !require_root() {
        return;
    }
    let tmp = TmpFs::new(4);
    let mnt = tmp.path().to_path_buf();
    assert_eq!(
        mounts_at(&mnt).last().map(|m| m.fstype.clone()).as_deref(),
        Some("tmpfs")
    );
    let stat = rustix::fs::statvfs(&mnt).unwrap();
    assert_eq!(stat.f_blocks * stat.f_frsize, 4 << 20);
    let full = fs::write(mnt.join("big"), vec![0u8; 5 << 20]).expect_err("5 MiB do not fit in 4");
    assert_eq!(full.raw_os_error(), Some(libc::ENOSPC));
    drop(tmp);
    assert!(!is_mounted(&mnt) && !mnt.exists());
}

// ---------------------------------------------------------------------------
// Private scratch space
// ---------------------------------------------------------------------------

/// The mount namespace of the calling thread, as a path another process can
/// enter while the thread lives.
fn namespace_of_this_thread() -> String {
    format!(
        "/proc/{}/task/{}/ns/mnt",
        std::process::id(),
        rustix::thread::gettid().as_raw_nonzero()
    )
}

#[test]
fn a_private_dir_is_out_of_reach_of_other_processes_walking_tmpdir() {
    if !require_root() {
        return;
    }
    // Where every other process is: the namespace this thread started in.
    let elsewhere = namespace_of_this_thread();
    thread::scope(|s| {
        s.spawn(|| {
            let dir = PrivateDir::new("g2a-selftest-private.");
            let secret = dir.path().join("canary");
            // Made at run time: a literal would be in the test's own binary,
            // which the walker reads where the build is under $TMPDIR (a
            // checkout in /tmp).
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos();
            let canary = format!("CANARY-{}-{nanos}", std::process::id());
            fs::write(&secret, &canary).unwrap();
            let inotify = rustix::fs::inotify::init(rustix::fs::inotify::CreateFlags::NONBLOCK).unwrap();
            for p in [dir.path(), secret.as_path()] {
                rustix::fs::inotify::add_watch(&inotify, p, rustix::fs::inotify::WatchFlags::ALL_EVENTS).unwrap();
            }
            // Another process walks $TMPDIR: it lists every entry and reads
            // every file named as the canary is (reading every file would
            // take as long as $TMPDIR is big: a build can be in it).
            let mut walker = Command::new("nsenter");
            walker
                .arg(format!("--mount={elsewhere}"))
                .args([
                    "--",
                    "sh",
                    "-c",
                    r#"find "$1" -type f -name canary -exec cat {} +; find "$1""#,
                    "walker",
                ])
                .arg(env::temp_dir());
            let walked = run_command(walker, Duration::from_secs(60));
            // (find says 1 when entries other tests make and remove go
            // while it walks: that it walked is its listing of $TMPDIR.)
            let tmp = env::temp_dir();
            assert!(
                walked.stdout.lines().any(|l| l == tmp.to_string_lossy()),
                "the walker ran:\n{walked}"
            );
            // (It sees the directory, empty: the tmpfs is mounted on it in
            // this thread's namespace only.)
            let name = dir.path().file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                !walked.stdout.contains(&canary) && !walked.stdout.contains(&format!("{name}/canary")),
                "the walker found it:\n{walked}"
            );
            let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 4096];
            let mut events = rustix::fs::inotify::Reader::new(&inotify, &mut buf);
            let touched = events.next().map(|e| format!("{:?} on watch {}", e.events(), e.wd()));
            assert_eq!(touched.err(), Some(rustix::io::Errno::AGAIN), "the walker touched it");
            // The test, and the processes it runs, see it.
            let mut cat = Command::new("cat");
            cat.arg(&secret);
            assert_eq!(run_command(cat, Duration::from_secs(60)).stdout, canary);
            let path = dir.path().to_path_buf();
            drop(dir);
            assert!(!path.exists(), "removed from $TMPDIR");
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
    });
}

#[test]
fn fs_lacks_names_what_a_file_system_does_not_support() {
    if !require_root() {
        return;
    }
    let all = [FsFeature::UserXattrs, FsFeature::TrustedXattrs, FsFeature::PosixAcls];
    // tmpfs (as a PrivateDir is) has them all.
    let dir = PrivateDir::new("g2a-selftest-features.");
    assert_eq!(fs_lacks(dir.path(), &all), Vec::<String>::new());
    // ramfs has none of them.
    let ramfs = dir.path().join("ramfs");
    fs::create_dir(&ramfs).unwrap();
    rustix::mount::mount(
        "g2a-selftest",
        &ramfs,
        "ramfs",
        rustix::mount::MountFlags::empty(),
        None,
    )
    .unwrap();
    let lacks = fs_lacks(&ramfs, &all);
    rustix::mount::unmount(&ramfs, rustix::mount::UnmountFlags::empty()).unwrap();
    assert_eq!(lacks.len(), 3, "{lacks:#?}");
    for (line, what) in lacks.iter().zip(["setxattr user.*", "setxattr trusted.*", "setfacl"]) {
        assert!(line.contains(what) && line.contains("not supported"), "{line}");
    }
}
