//! What the Docker daemon (v1.8.1) itself does with the files under its
//! root, beside the driver: its aufs `Migrate` at start (FORMATS.md 4),
//! `graph.Register` and `graph.Delete` of an image, `createRootfs` and `rm`
//! of a container, JSON written atomically (`ioutils.AtomicWriteFile`),
//! the json-file log, and the link graph (`pkg/graphdb`, SQLite).

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::aufs::{with_path, Aufs};
use crate::common::{run_command, RunResult};

pub struct Daemon {
    root: PathBuf,
    pub aufs: Aufs,
}

/// A 64-hex id derived from `seed`, the same on every run (Docker draws
/// random ones; the reference must get the same names).
pub fn hex_id(seed: &str) -> String {
    Sha256::digest(seed.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Daemon {
    pub fn new(root: &Path) -> Daemon {
        Daemon {
            root: root.to_path_buf(),
            aufs: Aufs::new(root),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
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
                if id != "_tmp" && !self.aufs.exists(&id) {
                    work.push(format!("would register {id}: Exists({id}) is false"));
                }
            }
        }
        Ok(work)
    }

    /// `graph.mktemp`: `graph/_tmp/<id>` (0700), the name derived from `seed`.
    fn mktemp(&self, seed: &str) -> io::Result<PathBuf> {
        let tmp = self.root.join("graph/_tmp").join(hex_id(seed));
        DirBuilder::new().recursive(true).mode(0o700).create(&tmp)?;
        Ok(tmp)
    }

    /// `graph.Register` of a pulled image: clear any `graph/<id>` and driver
    /// layer, `Create`, `ApplyDiff` of `archive` and `DiffSize`, then
    /// `layersize` and `json` (0600) in a temporary directory renamed to
    /// `graph/<id>`. Returns the layer's size.
    pub fn register_image(&self, id: &str, parent: Option<&str>, archive: &Path) -> Result<u64, String> {
        let image_root = self.root.join("graph").join(id);
        match fs::remove_dir_all(&image_root) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(format!("remove -r {}: {e}", image_root.display()))
            }
            _ => {}
        }
        let _ = self.aufs.remove(id);
        let tmp = self
            .mktemp(&format!("register {id}"))
            .map_err(|e| format!("mktemp: {e}"))?;
        self.aufs.create(id, parent).map_err(|e| format!("Create({id}): {e}"))?;
        self.aufs.apply_diff(id, archive)?;
        let size = self.aufs.diff_size(id).map_err(|e| format!("DiffSize({id}): {e}"))?;
        let write = |name: &str, bytes: &[u8]| -> io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(tmp.join(name))?;
            f.write_all(bytes)
        };
        let json = match parent {
            Some(p) => {
                format!("{{\"id\":\"{id}\",\"parent\":\"{p}\",\"created\":\"2015-08-12T00:00:00Z\",\"Size\":{size}}}\n")
            }
            None => format!("{{\"id\":\"{id}\",\"created\":\"2015-08-12T00:00:00Z\",\"Size\":{size}}}\n"),
        };
        write("layersize", size.to_string().as_bytes()).map_err(|e| format!("layersize: {e}"))?;
        write("json", json.as_bytes()).map_err(|e| format!("json: {e}"))?;
        fs::rename(&tmp, &image_root).map_err(|e| format!("rename {} {}: {e}", tmp.display(), image_root.display()))?;
        Ok(size)
    }

    /// `graph.Delete`: `graph/<id>` renamed into a fresh `graph/_tmp/<x>`,
    /// the driver's `Remove(id)`, then the trashed directory removed.
    pub fn delete_image(&self, id: &str) -> io::Result<()> {
        let tmp = self.mktemp(&format!("delete {id}"))?;
        let image_root = self.root.join("graph").join(id);
        fs::rename(&image_root, &tmp).map_err(|e| with_path(e, "rename", &image_root))?;
        self.aufs.remove(id)?;
        fs::remove_dir_all(&tmp).map_err(|e| with_path(e, "remove -r", &tmp))
    }

    /// `createRootfs` then `ToDisk`: `containers/<id>` (0700), `Create(<id>-init,
    /// image)`, the init layer written (through the union in Docker: into the
    /// init layer's own diff here, which is its top branch), `Create(<id>,
    /// <id>-init)`, then `config.json` and `hostconfig.json` written
    /// atomically and the log created as the json-file logger opens it.
    pub fn create_container(&self, id: &str, image: &str, config: &[u8]) -> io::Result<()> {
        let root = self.root.join("containers").join(id);
        DirBuilder::new()
            .mode(0o700)
            .create(&root)
            .map_err(|e| with_path(e, "mkdir", &root))?;
        let init = format!("{id}-init");
        self.aufs.create(&init, Some(image))?;
        setup_init_layer(&self.aufs.diff_dir(&init))?;
        self.aufs.create(id, Some(&init))?;
        write_json_atomic(&root.join("config.json"), config, 0o600)?;
        write_json_atomic(&root.join("hostconfig.json"), b"{\"Privileged\":false}", 0o600)?;
        open_log(&root.join(format!("{id}-json.log")))?;
        Ok(())
    }

    /// `daemon.rm`: the driver's `Remove(id)` and `Remove(<id>-init)`, then
    /// `containers/<id>` removed.
    pub fn remove_container(&self, id: &str) -> io::Result<()> {
        self.aufs.remove(id)?;
        self.aufs.remove(&format!("{id}-init"))?;
        let root = self.root.join("containers").join(id);
        fs::remove_dir_all(&root).map_err(|e| with_path(e, "remove -r", &root))
    }
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
