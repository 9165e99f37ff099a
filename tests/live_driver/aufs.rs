//! Docker's aufs driver, its file operations only (FORMATS.md 2), as moby
//! v1.8.1 writes them: `daemon/graphdriver/aufs/aufs.go` and `dirs.go`, with
//! `pkg/archive` (Diff, ApplyDiff, Changes) and `pkg/directory` (DiffSize).
//! Everything works on a Docker root given by its path, so the same calls
//! run through the view and on the native layout.
//!
//! `Get` (an aufs mount of the chain) is left out: aufs is not in mainline
//! Linux. Tar archives are made and read by GNU tar (see `tarball.rs`).

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, DirBuilder, File, Metadata};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::tarball;

/// The driver of one Docker root (`R/aufs`).
pub struct Aufs {
    dir: PathBuf,
}

/// One entry of `Changes`, as `archive.Change` (its `Kind` printed as
/// `docker diff` does: A, C, D).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub path: PathBuf,
    pub kind: char,
}

impl Aufs {
    pub fn new(docker_root: &Path) -> Aufs {
        Aufs {
            dir: docker_root.join("aufs"),
        }
    }

    pub fn diff_dir(&self, id: &str) -> PathBuf {
        self.dir.join("diff").join(id)
    }

    pub fn mnt_dir(&self, id: &str) -> PathBuf {
        self.dir.join("mnt").join(id)
    }

    pub fn layers_file(&self, id: &str) -> PathBuf {
        self.dir.join("layers").join(id)
    }

    /// `Init`: `mkdir -p R/aufs/{mnt,diff,layers}` (Go's `MkdirAll`, 0755).
    pub fn init(&self) -> io::Result<()> {
        for d in ["mnt", "diff", "layers"] {
            DirBuilder::new().recursive(true).mode(0o755).create(self.dir.join(d))?;
        }
        Ok(())
    }

    /// `Exists`: `lstat(layers/<id>)` succeeds.
    pub fn exists(&self, id: &str) -> bool {
        fs::symlink_metadata(self.layers_file(id)).is_ok()
    }

    /// `Create`: `mkdir -p mnt/<id> diff/<id>` (0755), create or truncate
    /// `layers/<id>`, then write the parent and every line of
    /// `layers/<parent>`, one `Fprintln` (one write) per line.
    pub fn create(&self, id: &str, parent: Option<&str>) -> io::Result<()> {
        for d in [self.mnt_dir(id), self.diff_dir(id)] {
            DirBuilder::new().recursive(true).mode(0o755).create(d)?;
        }
        let mut f = File::create(self.layers_file(id))?;
        if let Some(parent) = parent {
            let ids = self.parent_ids(parent)?;
            writeln!(f, "{parent}")?;
            for i in ids {
                writeln!(f, "{i}")?;
            }
        }
        Ok(())
    }

    /// `getParentIds`: the lines of `layers/<id>`, blank ones skipped.
    pub fn parent_ids(&self, id: &str) -> io::Result<Vec<String>> {
        let text = fs::read_to_string(self.layers_file(id))?;
        Ok(text.lines().filter(|l| !l.is_empty()).map(str::to_string).collect())
    }

    /// `Remove`: rename `mnt/<id>` and `diff/<id>` to `<id>-removing` (a
    /// missing one is fine), unlink `layers/<id>` (missing is fine), then
    /// remove the `-removing` trees (Go defers `os.RemoveAll`; its errors are
    /// returned here, since through the view they would be the view's).
    pub fn remove(&self, id: &str) -> io::Result<()> {
        let mut trash = Vec::new();
        for sub in ["mnt", "diff"] {
            let real = self.dir.join(sub).join(id);
            let tmp = self.dir.join(sub).join(format!("{id}-removing"));
            match fs::rename(&real, &tmp) {
                Ok(()) => trash.push(tmp),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(with_path(e, "rename", &real)),
            }
        }
        match fs::remove_file(self.layers_file(id)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(with_path(e, "unlink", &self.layers_file(id))),
        }
        for tmp in trash {
            fs::remove_dir_all(&tmp).map_err(|e| with_path(e, "remove -r", &tmp))?;
        }
        Ok(())
    }

    /// `ApplyDiff`: a plain untar into `diff/<id>` (whiteouts written as
    /// they are).
    pub fn apply_diff(&self, id: &str, archive: &Path) -> Result<(), String> {
        tarball::extract(archive, &self.diff_dir(id))
    }

    /// `Diff`: a tar of `diff/<id>` without the top-level `.wh..wh.*`
    /// (aufs's own metadata), written to `out`.
    pub fn diff(&self, id: &str, out: &Path) -> Result<(), String> {
        tarball::create_diff(&self.diff_dir(id), out)
    }

    /// `DiffSize` (`directory.Size`): the sizes of the non-empty
    /// non-directories under `diff/<id>` (walked with `lstat`), each inode
    /// counted once by `st_ino`.
    pub fn diff_size(&self, id: &str) -> io::Result<u64> {
        let mut seen = HashSet::new();
        let mut size = 0;
        for (_, meta) in walk(&self.diff_dir(id))? {
            if meta.is_dir() || meta.len() == 0 {
                continue;
            }
            if seen.insert(meta.ino()) {
                size += meta.len();
            }
        }
        Ok(size)
    }

    /// `Changes` (`archive.Changes(layers, diff/<id>)`, v1.8.1), Docker's
    /// quirks included: the walk descends into top-level `.wh..wh.*`
    /// directories (only their own entry is skipped), `.wh..wh..opq` reads as
    /// the deletion of `.wh..opq`, lower layers are probed with `stat`
    /// (following symlinks, on the host), and any error but ENOENT from that
    /// probe fails the whole call (Go's `os.IsNotExist`).
    pub fn changes(&self, id: &str) -> Result<Vec<Change>, String> {
        let layers: Vec<PathBuf> = self
            .parent_ids(id)
            .map_err(|e| format!("reading layers/{id}: {e}"))?
            .iter()
            .map(|p| self.diff_dir(p))
            .collect();
        let rw = self.diff_dir(id);
        let entries = walk(&rw).map_err(|e| format!("walking {}: {e}", rw.display()))?;
        let mut changes = Vec::new();
        let mut changed_dirs: HashSet<PathBuf> = HashSet::new();
        for (rel, f) in entries {
            if rel.as_os_str().is_empty() {
                continue;
            }
            let path = Path::new("/").join(&rel);
            if rel.parent() == Some(Path::new("")) && rel.as_os_str().as_bytes().starts_with(b".wh..wh.") {
                continue;
            }
            let name = rel.file_name().expect("a walked entry has a name").as_bytes();
            let mut change = Change {
                path: path.clone(),
                kind: 'A',
            };
            if let Some(original) = name.strip_prefix(b".wh.") {
                change.path = path
                    .parent()
                    .expect("below the root")
                    .join(std::ffi::OsStr::from_bytes(original));
                change.kind = 'D';
            } else {
                let mut same_dir = false;
                for layer in &layers {
                    let lower = layer.join(&rel);
                    match fs::metadata(&lower) {
                        Ok(stat) => {
                            if stat.is_dir()
                                && f.is_dir()
                                && f.len() == stat.len()
                                && f.mode() == stat.mode()
                                && same_fs_time(&f, &stat)
                            {
                                same_dir = true;
                            } else {
                                change.kind = 'C';
                            }
                            break;
                        }
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(format!("stat {}: {e}", lower.display())),
                    }
                }
                if same_dir {
                    continue;
                }
            }
            if f.is_dir() {
                changed_dirs.insert(path.clone());
            }
            if change.kind == 'A' || change.kind == 'D' {
                let parent = path.parent().expect("below the root").to_path_buf();
                if parent != Path::new("/") && changed_dirs.insert(parent.clone()) {
                    changes.push(Change {
                        path: parent,
                        kind: 'C',
                    });
                }
            }
            changes.push(change);
        }
        Ok(changes)
    }
}

/// Go's `sameFsTime`: equal, or the same second with one side lacking
/// nanoseconds.
fn same_fs_time(a: &Metadata, b: &Metadata) -> bool {
    (a.mtime(), a.mtime_nsec()) == (b.mtime(), b.mtime_nsec())
        || (a.mtime() == b.mtime() && (a.mtime_nsec() == 0 || b.mtime_nsec() == 0))
}

/// `filepath.Walk` order: the root, then each entry in byte order of its
/// name, a directory followed by its contents; `lstat` metadata. Paths are
/// relative to `root` (the root itself is the empty path).
pub fn walk(root: &Path) -> io::Result<Vec<(PathBuf, Metadata)>> {
    fn visit(root: &Path, rel: PathBuf, meta: Metadata, out: &mut Vec<(PathBuf, Metadata)>) -> io::Result<()> {
        let is_dir = meta.is_dir();
        out.push((rel.clone(), meta));
        if !is_dir {
            return Ok(());
        }
        let dir = root.join(&rel);
        let mut names = fs::read_dir(&dir)
            .and_then(|rd| rd.map(|e| e.map(|e| e.file_name())).collect::<io::Result<Vec<_>>>())
            .map_err(|e| with_path(e, "readdir", &dir))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let child = dir.join(&name);
            let meta = fs::symlink_metadata(&child).map_err(|e| with_path(e, "lstat", &child))?;
            visit(root, rel.join(&name), meta, out)?;
        }
        Ok(())
    }
    let meta = fs::symlink_metadata(root).map_err(|e| with_path(e, "lstat", root))?;
    let mut out = Vec::new();
    visit(root, PathBuf::new(), meta, &mut out)?;
    Ok(out)
}

/// An error that says which call on which path failed.
pub fn with_path(e: io::Error, call: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{call} {}: {e}", path.display()))
}

/// Every line of a `layers/` file a chain gives: `parent`, then the
/// parent's own ancestors, nearest first (what `Create` writes).
pub fn expected_layers(parent: Option<&str>, parents: &BTreeMap<String, Option<String>>) -> String {
    let mut out = String::new();
    let mut next = parent.map(str::to_string);
    while let Some(id) = next {
        out.push_str(&id);
        out.push('\n');
        next = parents.get(&id).cloned().flatten();
    }
    out
}
