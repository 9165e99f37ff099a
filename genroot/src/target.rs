//! The directories a run writes into (ROOT, and ROOT.outside with broken
//! items): each missing or empty when the run starts, and left that way again
//! by a run that does not finish, whether it fails or panics. Nothing that was
//! there before is ever removed: a missing directory is created (with its
//! missing parents) and removed again; an empty one is emptied again, and gets
//! its mode, owner and times back.

use std::fs;
use std::io;
use std::os::unix::fs::{lchown, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Timespec, Timestamps, CWD};

use super::tree::with_path;

/// What a run has written into, undone when dropped unless [`Targets::keep`]
/// was called.
#[derive(Default)]
pub(crate) struct Targets {
    made: Vec<Made>,
    kept: bool,
}

enum Made {
    /// The topmost directory this run created: all of it is the run's.
    Created(PathBuf),
    /// A directory that was there, empty: what is in it is the run's.
    Filled(PathBuf, fs::Metadata),
}

impl Targets {
    /// Makes `dir` a place to write into: created (and its missing parents)
    /// if missing; refused unless empty.
    pub fn prepare(&mut self, dir: &Path) -> io::Result<()> {
        if let Some(top) = create_missing(dir)? {
            self.made.push(Made::Created(top));
            return Ok(());
        }
        // Before listing it, which moves its access time.
        let before = fs::metadata(dir).map_err(|e| with_path(e, dir))?;
        let mut entries = fs::read_dir(dir).map_err(|e| with_path(e, dir))?;
        if entries.next().is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: not empty, refusing to generate a root there", dir.display()),
            ));
        }
        self.made.push(Made::Filled(dir.to_path_buf(), before));
        Ok(())
    }

    /// The run finished: everything it wrote stays.
    pub fn keep(mut self) {
        self.kept = true;
    }

    /// The run failed with `err`: removes what it wrote, and says so in the
    /// error (or why it could not).
    pub fn abandon(mut self, err: io::Error) -> io::Error {
        let note = match self.undo() {
            Ok(()) => "nothing is left of the partial root".to_string(),
            Err(e) => format!("removing the partial root failed too: {e}"),
        };
        io::Error::new(err.kind(), format!("{err} ({note})"))
    }

    /// Removes what the run wrote, latest first; goes on past errors and
    /// returns the first.
    fn undo(&mut self) -> io::Result<()> {
        let mut first = Ok(());
        for made in self.made.drain(..).rev() {
            let r = match &made {
                Made::Created(top) => fs::remove_dir_all(top).map_err(|e| with_path(e, top)),
                Made::Filled(dir, before) => empty(dir).and_then(|()| restore(dir, before)),
            };
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

impl Drop for Targets {
    fn drop(&mut self) {
        if !self.kept {
            // A panic on the way: nothing can be returned, only logged.
            if let Err(e) = self.undo() {
                log::error!("removing the partial root: {e}");
            }
        }
    }
}

/// Creates `dir` and its missing parents; returns the topmost directory
/// created, or `None` if `dir` was there already. A parent some other process
/// creates meanwhile is not taken for one of ours.
fn create_missing(dir: &Path) -> io::Result<Option<PathBuf>> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|p| !p.as_os_str().is_empty() && fs::symlink_metadata(p).is_err())
        .collect();
    let mut top: Option<PathBuf> = None;
    for p in missing.iter().rev() {
        match fs::create_dir(p) {
            Ok(()) => {
                top.get_or_insert_with(|| p.to_path_buf());
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && top.is_none() => {}
            Err(e) => {
                if let Some(t) = &top {
                    // Best effort: the error that matters is the one returned.
                    let _ = fs::remove_dir_all(t);
                }
                return Err(with_path(e, p));
            }
        }
    }
    Ok(top)
}

/// Removes everything in `dir` (symlinks as links, never what they point to).
fn empty(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir).map_err(|e| with_path(e, dir))? {
        let path = entry.map_err(|e| with_path(e, dir))?.path();
        let is_dir = fs::symlink_metadata(&path).map_err(|e| with_path(e, &path))?.is_dir();
        if is_dir {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        }
        .map_err(|e| with_path(e, &path))?;
    }
    Ok(())
}

/// Gives `dir` back the owner, mode and times it had before the run.
fn restore(dir: &Path, before: &fs::Metadata) -> io::Result<()> {
    let at = |e: io::Error| with_path(e, dir);
    lchown(dir, Some(before.uid()), Some(before.gid())).map_err(at)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(before.mode() & 0o7777)).map_err(at)?;
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: before.atime(),
            tv_nsec: before.atime_nsec() as _,
        },
        last_modification: Timespec {
            tv_sec: before.mtime(),
            tv_nsec: before.mtime_nsec() as _,
        },
    };
    rustix::fs::utimensat(CWD, dir, &times, AtFlags::empty()).map_err(|e| at(e.into()))
}
