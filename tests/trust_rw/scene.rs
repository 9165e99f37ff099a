//! Generated legacy roots with a read-write view of them mounted beside
//! them (not over ROOT, so that the test can also look at the disk), and
//! the view's live status.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use g2a_genroot::{generate, Options, Summary};
use serde_json::Value;

use crate::common::*;

/// The longest any test here keeps a view mounted.
pub const BOUND: Duration = Duration::from_secs(150);
/// How long a background migration of a test root may take.
pub const FINISH: Duration = Duration::from_secs(60);

/// A scratch directory (readable by every user, for the tests that act as
/// another user), a legacy root generated in it, and a mount point beside it.
pub struct Scene {
    /// Dropped first: the scratch directory without nodev and nosuid.
    _plain: PlainMount,
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub mp: PathBuf,
    pub summary: Summary,
}

pub fn options(seed: u64, images: usize, containers: usize) -> Options {
    Options {
        seed,
        images,
        max_chain: 4,
        containers,
        entries_per_layer: 12,
        ..Options::default()
    }
}

impl Scene {
    #[track_caller]
    pub fn new(opts: &Options) -> Scene {
        Scene::new_in(&std::env::temp_dir(), opts)
    }

    /// A scene in a scratch directory under `base` (e.g. a file system of
    /// its own, where nothing else allocates inodes).
    #[track_caller]
    pub fn new_in(base: &Path, opts: &Options) -> Scene {
        let dir = tempfile::Builder::new()
            .prefix("g2a-trust-rw.")
            .tempdir_in(base)
            .expect("a scratch directory");
        // Device nodes and setuid bits count natively as through the view,
        // whatever the mount options of $TMPDIR.
        let plain = PlainMount::new(dir.path());
        open_to_all(dir.path());
        let root = dir.path().join("root");
        let summary = generate(&root, opts).unwrap_or_else(|e| panic!("generating {}: {e}", root.display()));
        open_to_all(&root);
        let mp = dir.path().join("mp");
        fs::create_dir(&mp).expect("a mount point");
        Scene {
            _plain: plain,
            dir,
            root,
            mp,
            summary,
        }
    }

    /// A directory for the native side of a comparison, beside ROOT.
    #[track_caller]
    pub fn native_dir(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        fs::create_dir(&p).unwrap_or_else(|e| panic!("creating {}: {e}", p.display()));
        open_to_all(&p);
        p
    }

    /// Starts the read-write view of ROOT at the scene's mount point, with
    /// `env` set for the server.
    #[track_caller]
    pub fn mount(&self, env: &[(&str, &str)]) -> Mount {
        self.mount_with(&[], env)
    }

    /// [`Scene::mount`] with more arguments for `graph2aufs mount`.
    #[track_caller]
    pub fn mount_with(&self, args: &[&str], env: &[(&str, &str)]) -> Mount {
        let mut cmd = Command::new(bin());
        cmd.arg("mount")
            .arg(&self.root)
            .arg(&self.mp)
            .arg("--foreground")
            .args(args);
        // TRUST_RW_SERVER_LOG=debug shows every request in a failing test's log.
        cmd.env(
            "RUST_LOG",
            std::env::var("TRUST_RW_SERVER_LOG").unwrap_or_else(|_| "info".into()),
        );
        for (k, v) in env {
            cmd.env(k, v);
        }
        Mount::start_command(cmd, &self.mp, BOUND)
    }

    /// The live status the view keeps, read from the disk (ROOT is not
    /// covered: the view is mounted beside it). `graph2aufs status` reads
    /// it through the view, which leaves the view a node for the file; the
    /// tests that are not about that use the disk
    /// (a_file_replaced_behind_the_view_never_takes_over_a_new_file_through_it
    /// is about it).
    #[track_caller]
    pub fn status(&self) -> Value {
        let path = self.root.join(".graph2aufs/status.json");
        let bytes = fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let v: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{} is not JSON ({e}): {:?}",
                path.display(),
                String::from_utf8_lossy(&bytes)
            )
        });
        assert!(v["live"].is_object(), "the live status has no live part: {v}");
        v
    }

    /// `graph2aufs status ROOT --json`, which reads the live status
    /// through the view.
    #[track_caller]
    pub fn status_command(&self) -> RunResult {
        run_command(
            g2a(["status".as_ref(), self.root.as_os_str(), "--json".as_ref()]),
            RUN_TIMEOUT,
        )
    }

    /// Waits until the view's status says every item is migrated.
    #[track_caller]
    pub fn wait_finished(&self, view: &Mount) {
        let deadline = Instant::now() + FINISH;
        let file = self.root.join(".graph2aufs/status.json");
        loop {
            // (Written a moment after the view is usable.)
            if !file.exists() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(50));
                continue;
            }
            let v = self.status();
            if v["live"]["finished"] == true {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the background migration did not finish within {FINISH:?}; status: {v}\nlog:\n{}",
                view.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The state of item `id` in the live status.
    #[track_caller]
    pub fn state(&self, id: &str) -> String {
        let v = self.status();
        v["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|i| i["id"] == id)
            .unwrap_or_else(|| panic!("no item {id} in {v}"))["state"]
            .as_str()
            .expect("a state")
            .to_string()
    }

    /// An image with a layer holding every kind of entry.
    pub fn showcase(&self) -> String {
        self.summary.landmarks.showcase.clone().expect("a showcase image")
    }

    /// A started container and its image.
    pub fn started_container(&self) -> (String, String) {
        let c = self
            .summary
            .containers
            .iter()
            .find(|c| c.2)
            .expect("a started container");
        (c.0.clone(), c.1.clone())
    }
}

/// Makes `p` readable and searchable by everyone (a temporary directory is
/// 0700), so that another user can reach what is below it.
#[track_caller]
pub fn open_to_all(p: &Path) {
    let mut perm = fs::metadata(p)
        .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
        .permissions();
    perm.set_mode(perm.mode() | 0o755);
    fs::set_permissions(p, perm).unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

/// `cp -a SRC DST`: a copy with modes, owners, times, xattrs, hard links
/// and device nodes.
#[track_caller]
pub fn copy_tree(src: &Path, dst: &Path) {
    let mut cp = Command::new("cp");
    cp.arg("-a").arg(src).arg(dst);
    run_command(cp, RUN_TIMEOUT).expect_code(0);
}
