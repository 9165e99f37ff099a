//! What the Docker daemon (v1.8.1) itself does with the files under its
//! root, beside the driver (which `docker_driver.rs` runs): its aufs
//! `Migrate` at start (FORMATS.md 4), the files of a new container
//! (`setupInitLayer`, its configuration), JSON written atomically
//! (`ioutils.AtomicWriteFile`), the json-file log, and the link graph
//! (`pkg/graphdb`, SQLite).

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::common::{run_command, RunResult};

/// A Docker root, by its path.
pub struct Daemon {
    root: PathBuf,
}

impl Daemon {
    pub fn new(root: &Path) -> Daemon {
        Daemon {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `aufs/diff/<id>`: a layer's files.
    pub fn diff_dir(&self, id: &str) -> PathBuf {
        self.root.join("aufs/diff").join(id)
    }

    /// `aufs/mnt/<id>`: the mount point of a layer's union.
    pub fn mnt_dir(&self, id: &str) -> PathBuf {
        self.root.join("aufs/mnt").join(id)
    }

    /// `aufs/layers/<id>`: a layer's ancestors.
    pub fn layers_file(&self, id: &str) -> PathBuf {
        self.root.join("aufs/layers").join(id)
    }

    /// Docker 1.8.1's aufs `Migrate`, which runs at every start when
    /// `graph/` exists. It renames `repositories` to `repositories-aufs`
    /// (done here as Docker does it: ENOENT is success), then relocates and
    /// registers every `graph/<id>/layer` and `containers/<id>/rw` it finds,
    /// each registration skipped where `Exists(id)`. Returns what it would
    /// relocate or register (nothing, on a migrated root), without doing it;
    /// every image and container is checked for `Exists`, not only those
    /// Docker would look at.
    pub fn migrate_work(&self) -> io::Result<Vec<String>> {
        let mut work = Vec::new();
        let repositories = self.root.join("repositories");
        match fs::rename(&repositories, self.root.join("repositories-aufs")) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(with_path(e, "rename", &repositories)),
            Ok(()) => work.push("renamed repositories over repositories-aufs".to_string()),
        }
        for (dir, data) in [("graph", "layer"), ("containers", "rw")] {
            for entry in fs::read_dir(self.root.join(dir))? {
                let entry = entry?;
                let id = entry.file_name().to_string_lossy().into_owned();
                if !entry.file_type()?.is_dir() {
                    continue;
                }
                let legacy = entry.path().join(data);
                if fs::symlink_metadata(&legacy).is_ok() {
                    work.push(format!("would relocate {dir}/{id}/{data}"));
                }
                // The driver's Exists: lstat of layers/<id>.
                if id != "_tmp" && fs::symlink_metadata(self.layers_file(&id)).is_err() {
                    work.push(format!("would register {id}: Exists({id}) is false"));
                }
            }
        }
        Ok(work)
    }

    /// `createRootfs` then `ToDisk`, around the driver's work: makes
    /// `containers/<id>` (0700); `create` is the driver's Create of the
    /// init layer on `image`, which `setup_init_layer` then fills (through
    /// the union in Docker: into the init layer's own diff here, its top
    /// branch), and of the container's layer on it; then `config.json` and
    /// `hostconfig.json` written atomically and the log created as the
    /// json-file logger opens it.
    pub fn create_container(
        &self,
        id: &str,
        image: &str,
        config: &[u8],
        create: impl Fn(&str, &str) -> io::Result<()>,
    ) -> io::Result<()> {
        let root = self.root.join("containers").join(id);
        DirBuilder::new()
            .mode(0o700)
            .create(&root)
            .map_err(|e| with_path(e, "mkdir", &root))?;
        let init = format!("{id}-init");
        create(&init, image)?;
        setup_init_layer(&self.diff_dir(&init))?;
        create(id, &init)?;
        write_json_atomic(&root.join("config.json"), config, 0o600)?;
        write_json_atomic(&root.join("hostconfig.json"), b"{\"Privileged\":false}", 0o600)?;
        open_log(&root.join(format!("{id}-json.log")))?;
        Ok(())
    }
}

/// An error that says which call on which path failed.
fn with_path(e: io::Error, call: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{call} {}: {e}", path.display()))
}

/// v1.8.1 `setupInitLayer`, in a fixed order: each path's prefixes unlinked
/// (errors ignored), then what is missing created (directories 0755, empty
/// files 0755, `etc/mtab` a symlink to `/proc/mounts`).
fn setup_init_layer(layer: &Path) -> io::Result<()> {
    const ENTRIES: [(&str, &str); 11] = [
        ("/dev/pts", "dir"),
        ("/dev/shm", "dir"),
        ("/proc", "dir"),
        ("/sys", "dir"),
        ("/.dockerinit", "file"),
        ("/.dockerenv", "file"),
        ("/etc/resolv.conf", "file"),
        ("/etc/hosts", "file"),
        ("/etc/hostname", "file"),
        ("/dev/console", "file"),
        ("/etc/mtab", "/proc/mounts"),
    ];
    for (path, kind) in ENTRIES {
        let rel = path.trim_start_matches('/');
        let mut prefix = PathBuf::new();
        for part in Path::new(rel).components() {
            prefix.push(part);
            let _ = fs::remove_file(layer.join(&prefix));
        }
        let full = layer.join(rel);
        match fs::metadata(&full) {
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(with_path(e, "stat", &full)),
        }
        let parent = full.parent().expect("below the layer");
        DirBuilder::new().recursive(true).mode(0o755).create(parent)?;
        match kind {
            "dir" => DirBuilder::new().recursive(true).mode(0o755).create(&full)?,
            "file" => drop(
                OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(0o755)
                    .open(&full)?,
            ),
            target => std::os::unix::fs::symlink(target, &full)?,
        }
    }
    Ok(())
}

/// `ioutils.AtomicWriteFile`: a `.tmp-<name><n>` file beside `path`
/// (O_EXCL), chmod, write, fsync, close, rename over `path`.
pub fn write_json_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().expect("a file name").to_string_lossy();
    let tmp = path.with_file_name(format!(
        ".tmp-{name}{}{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.map_err(|e| with_path(e, "atomic write", path))
}

/// The json-file logger's open: `O_RDWR|O_APPEND|O_CREAT`, 0600.
pub fn open_log(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| with_path(e, "open O_APPEND", path))
}

/// One json-file log line, as Docker writes it for each line of output.
pub fn log_line(msg: &str, n: usize) -> String {
    format!(
        "{{\"log\":\"{msg}\\n\",\"stream\":\"stdout\",\"time\":\"2015-08-12T10:{:02}:{:02}.{:09}Z\"}}\n",
        n / 60 % 60,
        n % 60,
        n
    )
}

/// `pkg/graphdb`'s schema and its root entity.
pub const LINKGRAPH_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS entity (
    id text NOT NULL PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS edge (
    "entity_id" text NOT NULL,
    "parent_id" text NULL,
    "name" text NOT NULL,
    CONSTRAINT "parent_fk" FOREIGN KEY ("parent_id") REFERENCES "entity" ("id"),
    CONSTRAINT "entity_fk" FOREIGN KEY ("entity_id") REFERENCES "entity" ("id")
);
CREATE UNIQUE INDEX IF NOT EXISTS "name_parent_ix" ON "edge" (parent_id, name);
BEGIN;
INSERT INTO entity (id) VALUES ('0');
INSERT INTO edge (entity_id, name) VALUES ('0', '/');
COMMIT;
"#;

/// `sqlite3 DB SQL...` with a busy timeout, each SQL its own argument.
pub fn sqlite3(db: &Path, sql: &[&str]) -> RunResult {
    let mut cmd = Command::new("sqlite3");
    cmd.args(["-bail", "-cmd", ".timeout 20000"]).arg(db).args(sql);
    cmd.stdin(std::process::Stdio::null());
    run_command(cmd, Duration::from_secs(60))
}
