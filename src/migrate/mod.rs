//! Moving and registering items (FORMATS.md 4, without the bugs of 5).
//!
//! Every step is relative to descriptors opened from ROOT's, and every step
//! can be interrupted: the next run derives from the disk where each item
//! is and finishes it. Files are written to a temporary name and renamed
//! into place; the file system is synced once per batch, and the record of
//! what graph2aufs changed is written durably before each batch.

mod fault;
mod quarantine;
mod run;

pub use run::{prepare, run, Options, Outcome};

use crate::error::{Error, Result, Step};
use crate::item::{self, ItemKind, Source};
use crate::layout::AufsDir;
use crate::legacy::{Dirs, LAYERS_CAP};
use crate::names::escape_os;
use crate::plan::{self, Plan, Repositories};
use crate::record::{self, Prior, Record, RecordItem, Saved};
use crate::root::{Root, OWN_DIR, QUARANTINE_AUFS};
use crate::sys::{self, Context, Kind};
pub use fault::Faults;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};

/// Items per batch: one record write and one sync per batch.
pub const BATCH: usize = 1024;

/// The migration engine over one ROOT: opens the aufs directories and
/// migrates items of a plan one at a time.
pub struct Engine<'r> {
    root: &'r Root,
    dirs: Dirs,
    pub record: Record,
    faults: std::sync::Arc<Faults>,
    failures_changed: bool,
    /// `.graph2aufs/quarantine/aufs` as an earlier run left it (registrations
    /// of items it quarantined), opened once.
    quarantined_aufs: Option<OwnedFd>,
    /// Pace and progress of a copy to another file system.
    pub pace: std::sync::Arc<crate::copy::Pace>,
    /// Bytes of file data the copy under way copies in all.
    pub copy_total: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Where copied sources go to be removed in the background (the
    /// offline run); `None`: removed at once.
    pub removals: Option<crate::copy::Removals>,
}

pub(crate) fn ts(t: rustix::fs::Timespec) -> (i64, i64) {
    (t.tv_sec, t.tv_nsec)
}

impl<'r> Engine<'r> {
    /// Prepares ROOT for migration: the aufs directories exist afterwards
    /// and leftovers of an interrupted run are cleaned.
    pub fn open(root: &'r Root, mut record: Record, faults: Faults) -> Result<Engine<'r>> {
        let r = root.path().display().to_string();
        // Remember directory mtimes the migration changes, for rollback.
        if record.mtimes.is_empty() {
            record.mtimes.insert(String::new(), ts(root.original_mtime()));
            for rel in ["graph", "containers", "aufs", "aufs/diff", "aufs/layers", "aufs/mnt"] {
                let (dir, name) = root.resolve(rel);
                let st = sys::lstat(dir, name);
                if let Ok(Some(st)) = st {
                    record.mtimes.insert(rel.to_string(), ts(sys::mtime(&st)));
                }
            }
        }
        let mut to_create = Vec::new();
        for rel in ["aufs", "aufs/diff", "aufs/layers", "aufs/mnt"] {
            // (With an --aufs-dir, `aufs` is the symlink to it.)
            let missing = match rel {
                "aufs" => sys::kind_unread(root.fd(), rel),
                _ => {
                    let (dir, name) = root.resolve(rel);
                    sys::kind(dir, name)
                }
            };
            if missing.step(|| format!("{r}/{rel}"))? == Kind::Missing && !record.created_dirs.iter().any(|d| d == rel)
            {
                to_create.push(rel.to_string());
            }
        }
        if !to_create.is_empty() {
            record.created_dirs.extend(to_create);
            faults.step().step(|| "fault injection".into())?;
            record.save(root)?;
            faults.step().step(|| "fault injection".into())?;
        }
        let aufs = match root.aufs_dir() {
            Some((_, fd)) => {
                root.link_aufs()?;
                fd.try_clone_to_owned().step(|| "--aufs-dir".into())?
            }
            None => {
                sys::ensure_dir(root.fd(), "aufs", 0o755).step(|| format!("creating {r}/aufs"))?;
                sys::open_dir(root.fd(), "aufs")
                    .step(|| format!("opening {r}/aufs"))?
                    .ok_or_else(|| Error::Env(format!("{r}/aufs vanished")))?
            }
        };
        for sub in AufsDir::ALL.map(AufsDir::name) {
            sys::ensure_dir(&aufs, sub, 0o755).step(|| format!("creating {r}/aufs/{sub}"))?;
        }
        let dirs = Dirs::open(root).step(|| format!("opening the directories of {r}"))?;
        let quarantined_aufs =
            sys::open_dir(root.fd(), QUARANTINE_AUFS).step(|| format!("opening {r}/{QUARANTINE_AUFS}"))?;
        let engine = Engine {
            root,
            dirs,
            record,
            faults: std::sync::Arc::new(faults),
            failures_changed: false,
            quarantined_aufs,
            pace: Default::default(),
            copy_total: Default::default(),
            removals: None,
        };
        engine.clean_temporaries()?;
        Ok(engine)
    }

    /// The directories a migration of `it` changes: `aufs/diff`,
    /// `aufs/layers`, `aufs/mnt`, and its legacy directory's parent, with
    /// the names in them that changed.
    pub fn changed_dirs(&self, it: &item::Item) -> Vec<(&OwnedFd, Option<OsString>)> {
        let mut v = vec![
            (self.diff(), Some(it.name.clone())),
            (self.layers(), None),
            (self.mnt(), None),
        ];
        if let Some(l) = self.dirs.legacy(it.kind) {
            v.push((l, Some(it.name.clone())));
        }
        v
    }

    /// A descriptor of `aufs/diff`.
    pub fn diff_fd(&self) -> io::Result<OwnedFd> {
        self.diff().try_clone()
    }

    /// `aufs/diff`, `aufs/layers` or `aufs/mnt`.
    fn aufs(&self, d: AufsDir) -> &OwnedFd {
        self.dirs.aufs(d).expect("created by Engine::open")
    }
    fn diff(&self) -> &OwnedFd {
        self.aufs(AufsDir::Diff)
    }
    fn layers(&self) -> &OwnedFd {
        self.aufs(AufsDir::Layers)
    }
    fn mnt(&self) -> &OwnedFd {
        self.aufs(AufsDir::Mnt)
    }

    /// Removes what an interrupted run left under temporary names: init
    /// layers being built and `layers/` files being written. Both are
    /// derived data, rebuilt from the legacy root.
    fn clean_temporaries(&self) -> Result<()> {
        remove_temporaries(&self.dirs)
    }

    /// Records the intent to change these items, durably, before changing
    /// any of them.
    pub fn claim(&mut self, plan: &Plan, items: &[usize]) -> Result<()> {
        let mut changed = false;
        for &i in items {
            let it = &plan.items[i];
            let key = record::key(it.kind, &it.name);
            if let Some(e) = self.record.items.get_mut(&key) {
                // Quarantined by an earlier run, migrated now: rollback must
                // put it back in its legacy place, not the quarantine.
                if e.quarantined && !it.blocked() {
                    e.quarantined = false;
                    changed = true;
                }
                continue;
            }
            let entry = self.prior_of(it).step(|| format!("reading the aufs places of {key}"))?;
            self.record.items.insert(key, entry);
            changed = true;
        }
        if changed {
            self.save_record()?;
        }
        Ok(())
    }

    fn prior_of(&self, it: &item::Item) -> io::Result<RecordItem> {
        let name = &it.name;
        let layers = |n: &OsStr| -> io::Result<Option<Saved>> {
            Ok(match sys::lstat(self.layers(), n)? {
                Some(st) => Some(Saved {
                    text: crate::names::escape(&sys::read_file(self.layers(), n, LAYERS_CAP)?),
                    mtime: ts(sys::mtime(&st)),
                }),
                None => None,
            })
        };
        let symlink = match (sys::kind(self.diff(), name)?, sys::lstat(self.diff(), name)?) {
            (Kind::Symlink(t), Some(st)) => Some(Saved {
                text: crate::names::escape(&t),
                mtime: ts(sys::mtime(&st)),
            }),
            _ => None,
        };
        let mut prior = Prior {
            symlink,
            layers: layers(name).unwrap_or(None),
            mnt: sys::kind(self.mnt(), name)? == Kind::Dir,
            ..Default::default()
        };
        if it.kind == ItemKind::Container {
            if let Some(id) = &it.id {
                let init = id.init_layer();
                prior.init_layers = layers(init.as_os_str()).unwrap_or(None);
                prior.init_mnt = sys::kind(self.mnt(), init.as_os_str())? == Kind::Dir;
            }
        }
        let dir_mtime = match self.dirs.legacy(it.kind) {
            Some(p) => sys::lstat(p, name)?.map(|st| ts(sys::mtime(&st))),
            None => None,
        };
        let native = sys::kind(self.diff(), name)?;
        let data_mtime = match (&native, self.data_stat(it)?) {
            (Kind::Symlink(_), Some(st)) => Some(ts(sys::mtime(&st))),
            _ => None,
        };
        Ok(RecordItem {
            quarantined: it.blocked(),
            empty_rw: it.source == Source::Empty && native == Kind::Missing,
            empty_native: match (it.source, &native, sys::lstat(self.diff(), name)?) {
                (Source::Legacy, Kind::Dir, Some(st)) => Some(record::SavedDir {
                    mode: st.st_mode & 0o7777,
                    uid: st.st_uid,
                    gid: st.st_gid,
                    mtime: ts(sys::mtime(&st)),
                }),
                _ => None,
            },
            moved_legacy: it.legacy_present,
            copied: false,
            prior,
            dir_mtime,
            failed: None,
            registered: false,
            data_mtime,
            outside_links: Vec::new(),
        })
    }

    /// The status of an item's data directory in its legacy place, if it
    /// is a directory there.
    fn data_stat(&self, it: &item::Item) -> io::Result<Option<rustix::fs::Stat>> {
        let Some(p) = self.dirs.legacy(it.kind) else {
            return Ok(None);
        };
        let Some(parent) = sys::open_dir(p, &it.name)? else {
            return Ok(None);
        };
        Ok(sys::lstat(&parent, it.legacy_leaf())?
            .filter(|st| crate::copy::ftype(st) == rustix::fs::FileType::Directory))
    }

    fn legacy_dir(&self, kind: ItemKind) -> io::Result<&OwnedFd> {
        self.dirs
            .legacy(kind)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the legacy directory vanished"))
    }

    /// Puts an item's data at `aufs/diff/<name>`, from wherever it is.
    fn place_data(&mut self, it: &item::Item) -> io::Result<()> {
        let name = &it.name;
        let diff = self.diff().try_clone()?;
        let native = sys::kind(&diff, name)?;
        let src_parent = match it.source {
            Source::Quarantine => {
                let q = self
                    .dirs
                    .quarantine(it.kind)
                    .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the quarantine vanished"))?;
                sys::open_dir(q, name)?
            }
            _ => sys::open_dir(self.legacy_dir(it.kind)?, name)?,
        };
        let leaf = it.legacy_leaf();
        let legacy = match &src_parent {
            Some(p) => sys::kind(p, leaf)?,
            None => Kind::Missing,
        };
        let what = || format!("moving {} to aufs/diff/{}", it.legacy_path(), escape_os(name));
        match (legacy, native) {
            // Already in place (a previous run, or never legacy).
            (Kind::Missing, Kind::Dir) => Ok(()),
            (Kind::Missing, Kind::Missing) if it.source == Source::Empty => {
                self.faults.step()?;
                sys::ensure_dir(&diff, name, 0o755).map(|_| ())
            }
            (Kind::Dir, Kind::Missing) => {
                self.faults.step()?;
                let p = src_parent.expect("the legacy directory exists");
                match sys::rename_noreplace(&p, leaf, &diff, name) {
                    // aufs/diff is on another file system: copy.
                    Err(e) if e.raw_os_error() == Some(libc::EXDEV) => self.copy_across(it, &p),
                    r => r.context(what),
                }
            }
            (Kind::Dir, Kind::Dir) if self.copied(it) => {
                let p = src_parent.expect("the legacy directory exists");
                self.drop_copied_source(it, &p)
            }
            (Kind::Dir, Kind::Dir) => {
                // Only an empty directory (e.g. made by Docker's Create) is
                // replaced; the kernel does it atomically.
                let d = sys::open_dir_required(&diff, name)?;
                if !sys::dir_is_empty(&d)? {
                    return Err(io::Error::other(format!(
                        "both {} and aufs/diff/{} hold data",
                        it.legacy_path(),
                        escape_os(name)
                    )));
                }
                self.faults.step()?;
                let p = src_parent.expect("the legacy directory exists");
                sys::rename_over(&p, leaf, &diff, name).context(what)
            }
            (Kind::Dir, Kind::Symlink(_)) => {
                // A Docker 1.8 symlink: swap atomically, then drop the
                // symlink, which now stands where the data was.
                let p = src_parent.expect("the legacy directory exists");
                self.keep_data_mtime(it, &p)?;
                self.faults.step()?;
                match sys::rename_exchange(&p, leaf, &diff, name) {
                    // aufs/diff is on another file system: copied next to
                    // the symlink, then exchanged with it there.
                    Err(e) if e.raw_os_error() == Some(libc::EXDEV) => return self.copy_across(it, &p),
                    r => r.context(what)?,
                }
                self.restore_data_mtime(it)?;
                self.drop_swapped_symlink(&p, leaf)
            }
            (Kind::Symlink(_), Kind::Dir) => {
                // Interrupted between the exchange and the unlink.
                let p = src_parent.expect("the legacy directory exists");
                self.restore_data_mtime(it)?;
                self.drop_swapped_symlink(&p, leaf)
            }
            (l, n) => Err(io::Error::other(format!(
                "{} is {} and aufs/diff/{} is {}",
                it.legacy_path(),
                l.describe(),
                escape_os(name),
                n.describe()
            ))),
        }
    }

    /// Records (durably, if the record does not have it yet) the mtime of
    /// an item's data directory, about to be exchanged with a symlink.
    fn keep_data_mtime(&mut self, it: &item::Item, parent: &OwnedFd) -> io::Result<()> {
        let st = sys::lstat(parent, it.legacy_leaf())?.ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
        let now = Some(ts(sys::mtime(&st)));
        match self.record.items.get_mut(&record::key(it.kind, &it.name)) {
            Some(e) if e.data_mtime != now => {
                e.data_mtime = now;
                self.save_record().map_err(io::Error::from)
            }
            _ => Ok(()),
        }
    }

    /// Gives `aufs/diff/<name>`, just exchanged with a symlink, the mtime
    /// its data directory had before (see [`RecordItem::data_mtime`]).
    fn restore_data_mtime(&mut self, it: &item::Item) -> io::Result<()> {
        let key = record::key(it.kind, &it.name);
        let Some(t) = self.record.items.get(&key).and_then(|e| e.data_mtime) else {
            return Ok(());
        };
        let st = sys::lstat(self.diff(), &it.name)?.ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
        if ts(sys::mtime(&st)) != t {
            self.faults.step()?;
            let t = rustix::fs::Timespec {
                tv_sec: t.0,
                tv_nsec: t.1 as _,
            };
            sys::set_times(self.diff(), &it.name, sys::atime(&st), t)
                .context(|| format!("giving aufs/diff/{} back its mtime", escape_os(&it.name)))?;
        }
        Ok(())
    }

    fn copied(&self, it: &item::Item) -> bool {
        self.record
            .items
            .get(&record::key(it.kind, &it.name))
            .is_some_and(|e| e.copied)
    }

    /// Copies an item's data to `aufs/diff/<name>` on another file system
    /// (the rename said EXDEV): see [`CopyJob`].
    pub fn copy_across(&mut self, it: &item::Item, parent: &OwnedFd) -> io::Result<()> {
        let job = self.copy_job_from(it, parent.try_clone()?)?;
        job.run()?;
        // A copy not in place (it differs, or checking it failed) is
        // removed; one in place is never touched by `discard`.
        match self.finish_copy(it, &job) {
            Ok(None) => Ok(()),
            Ok(Some(d)) => {
                job.discard();
                Err(io::Error::other(format!(
                    "the copy of {} differs from its source ({d}); the copy is removed, the source kept",
                    it.legacy_path()
                )))
            }
            Err(e) => {
                job.discard();
                Err(e)
            }
        }
    }

    /// Whether items of `kind` are copied to `aufs/diff` (their legacy
    /// directory is another mount).
    pub fn copies_across(&self, kind: ItemKind) -> bool {
        let (Ok(legacy), Some(diff)) = (self.legacy_dir(kind), &self.dirs.diff) else {
            return false;
        };
        matches!((sys::mount::mount_id(legacy), sys::mount::mount_id(diff)), (Ok(a), Ok(b)) if a != b)
    }

    /// A copy job for an item whose data is still in its legacy place, on
    /// another file system (mount) than `aufs/diff`; `None` if a rename
    /// moves it. Fails, changing nothing, when the destination lacks the
    /// space or the inodes.
    pub fn copy_job(&mut self, it: &item::Item) -> io::Result<Option<CopyJob>> {
        // (A symlink there is the fallback of a layer registered while copied.)
        if it.blocked() || !matches!(sys::kind(self.diff(), &it.name)?, Kind::Missing | Kind::Symlink(_)) {
            return Ok(None);
        }
        let Some(parent) = sys::open_dir(self.legacy_dir(it.kind)?, &it.name)? else {
            return Ok(None);
        };
        if sys::kind(&parent, it.legacy_leaf())? != Kind::Dir {
            return Ok(None);
        }
        let src = sys::open_dir_required(&parent, it.legacy_leaf())?;
        let here = sys::mount::mount_id(&parent)?;
        // A layer directory that is itself a mount point is busy, not on
        // another file system: the rename says so (EBUSY) and falls back.
        if here == sys::mount::mount_id(self.diff())? || sys::mount::mount_id(&src)? != here {
            return Ok(None);
        }
        self.copy_job_from(it, parent).map(Some)
    }

    fn copy_job_from(&mut self, it: &item::Item, parent: OwnedFd) -> io::Result<CopyJob> {
        let diff = self.diff().try_clone()?;
        let src = sys::open_dir_required(&parent, it.legacy_leaf())?;
        let need = crate::copy::size(&src).context(|| format!("reading {} to size its copy", it.legacy_path()))?;
        let (bytes, inodes) = crate::copy::free(&diff)?;
        if need.bytes > bytes || inodes.is_some_and(|n| need.inodes > n) {
            let free = match inodes {
                Some(n) => format!(
                    "{} and {} are free",
                    crate::units::bytes(bytes),
                    crate::units::count(n as usize, "inode")
                ),
                None => format!("{} are free", crate::units::bytes(bytes)),
            };
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!(
                    "no space for the copy of {} on aufs/diff's file system: it needs {} and {}, {free}",
                    it.legacy_path(),
                    crate::units::bytes(need.bytes),
                    crate::units::count(need.inodes as usize, "inode"),
                ),
            ));
        }
        self.copy_total.store(need.data, std::sync::atomic::Ordering::Relaxed);
        self.pace.restart();
        Ok(CopyJob {
            parent,
            leaf: it.legacy_leaf(),
            tmp: sys::temp_name(&it.name),
            diff,
            what: format!("{} to aufs/diff/{}", it.legacy_path(), escape_os(&it.name)),
            pace: self.pace.clone(),
            faults: self.faults.clone(),
            outside: Default::default(),
            origins: Default::default(),
        })
    }

    /// Puts a finished copy in place, if its source has not changed since:
    /// recorded as copied (durably), renamed into place, synced, and only
    /// then the source removed. `Some(difference)`: the copy differs from
    /// the source (changed since), nothing done.
    pub fn finish_copy(&mut self, it: &item::Item, job: &CopyJob) -> io::Result<Option<String>> {
        let src = sys::open_dir_required(&job.parent, job.leaf)?;
        let dst = sys::open_dir_required(&job.diff, &job.tmp)?;
        let checked = crate::copy::compare_copy(&src, &dst)
            .context(|| format!("checking the copy of {} against its source", it.legacy_path()))?;
        if let Some(d) = checked.differs {
            return Ok(Some(d));
        }
        *job.outside.lock().expect("never poisoned") = checked.outside;
        self.put_copy_in_place(it, job)?;
        self.faults.step()?;
        self.remove_copied_source(it, &job.parent)?;
        Ok(None)
    }

    /// A checked copy, durable, goes in place: recorded as copied
    /// (durably), renamed into place (over the symlink of an item
    /// registered while copied, or a Docker 1.8 symlink, atomically), and
    /// that made durable. The answer: notes on the files of the layer
    /// hard-linked outside it, whose copy has only the links inside.
    pub fn put_copy_in_place(&mut self, it: &item::Item, job: &CopyJob) -> io::Result<Vec<plan::Note>> {
        let key = record::key(it.kind, &it.name);
        let mut notes = Vec::new();
        if let Some(e) = self.record.items.get_mut(&key) {
            e.copied = true;
            e.outside_links = job.outside_links();
            notes = plan::item_outside_link_notes(&key, e);
        }
        self.save_record().map_err(io::Error::from)?;
        it.copied.set();
        self.faults.step()?;
        if let Kind::Symlink(_) = sys::kind(&job.diff, &it.name)? {
            // Registered through a symlink while copied: swapped atomically.
            sys::rename_exchange(&job.diff, &job.tmp, &job.diff, &it.name)
                .context(|| format!("swapping the copy of {} into place", it.legacy_path()))?;
            self.faults.step()?;
            sys::unlink(&job.diff, &job.tmp)?;
        } else {
            sys::rename_noreplace(&job.diff, &job.tmp, &job.diff, &it.name)
                .context(|| format!("renaming the copy of {} into place", it.legacy_path()))?;
        }
        sys::syncfs(&job.diff)?;
        Ok(notes)
    }

    /// Sources a run set aside after their copies switched (see
    /// [`CopyJob::set_aside`]) and did not get to remove: removed, where
    /// the record says the item was copied and its copy is in place.
    pub fn drop_set_aside_sources(&mut self, plan: &Plan) {
        if !self.record.items.values().any(|e| e.copied) {
            return;
        }
        for it in plan.items.iter().filter(|it| self.copied(it)) {
            let Ok(dir) = self.legacy_dir(it.kind) else { continue };
            let Ok(Some(parent)) = sys::open_dir(dir, &it.name) else {
                continue;
            };
            let aside = sys::temp_name(OsStr::new(it.legacy_leaf()));
            if !matches!(sys::kind(&parent, &aside), Ok(Kind::Dir)) {
                continue;
            }
            let at = format!(
                "{}/{}/{}",
                it.legacy_parent_dir(),
                escape_os(&it.name),
                escape_os(&aside)
            );
            if !matches!(sys::kind(self.diff(), &it.name), Ok(Kind::Dir)) {
                log::warn!("{at} is not graph2aufs's to remove (no copy of it is recorded in place): kept");
                continue;
            }
            log::info!("removing {at}, set aside after its copy");
            if let Err(e) = sys::remove_tree(&parent, &aside) {
                log::warn!("removing {at}: {e}");
            }
        }
    }

    /// Both the source and its copy are there (a run stopped between the
    /// rename of the copy and the removal of the source): the copy is
    /// checked again, then the source goes.
    ///
    /// The removal of the source may have begun and stopped (an error, a
    /// crash): what is left of it is then part of the copy, entry for
    /// entry, and goes too. Anything else in it (an entry the copy has not,
    /// or one that differs) is kept, and reported.
    fn drop_copied_source(&mut self, it: &item::Item, parent: &OwnedFd) -> io::Result<()> {
        let src = sys::open_dir_required(parent, it.legacy_leaf())?;
        let dst = sys::open_dir_required(self.diff(), &it.name)?;
        let checked = crate::copy::compare_remains(&src, &dst).context(|| {
            format!(
                "checking {} against its copy aufs/diff/{}",
                it.legacy_path(),
                escape_os(&it.name)
            )
        })?;
        if let Some(d) = checked {
            return Err(io::Error::other(format!(
                "both {} and its copy aufs/diff/{} exist and differ ({d}); nothing removed",
                it.legacy_path(),
                escape_os(&it.name)
            )));
        }
        self.faults.step()?;
        self.remove_copied_source(it, parent)
    }

    /// Removes an item's legacy data once its copy is in place; an error
    /// says where the removal stopped (the next run removes the rest).
    fn remove_copied_source(&mut self, it: &item::Item, parent: &OwnedFd) -> io::Result<()> {
        let (path, copy) = (it.legacy_path(), escape_os(&it.name));
        let explain = move |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!(
                    "removing {path} after its copy: {e}; the copy aufs/diff/{copy} is complete and in place, \
                     the next run removes what is left of the source"
                ),
            )
        };
        // (The offline run removes sources in the background: see `run`.)
        if let Some(r) = &self.removals {
            let key = record::key(it.kind, &it.name);
            return r.remove(parent, OsStr::new(it.legacy_leaf()), key, Box::new(explain));
        }
        sys::remove_tree(parent, it.legacy_leaf()).map_err(explain)
    }

    fn drop_swapped_symlink(&mut self, dir: &OwnedFd, leaf: &str) -> io::Result<()> {
        if let Kind::Symlink(_) = sys::kind(dir, leaf)? {
            self.faults.step()?;
            sys::unlink(dir, leaf)?;
        }
        Ok(())
    }

    /// `mnt/<id>` and `layers/<id>` (written last: it is what Docker's
    /// `Exists` checks).
    fn register(&mut self, name: &OsStr, expected: &[u8]) -> io::Result<()> {
        if sys::kind(self.mnt(), name)? != Kind::Dir {
            self.faults.step()?;
            sys::ensure_dir(self.mnt(), name, 0o755).context(|| format!("creating aufs/mnt/{}", escape_os(name)))?;
        }
        let current = sys::lstat(self.layers(), name)?.map(|_| sys::read_file(self.layers(), name, LAYERS_CAP));
        if !matches!(&current, Some(Ok(b)) if b == expected) {
            if let Some(Err(_)) = current {
                // Too large (or not a file) to be kept in the record: set it
                // aside, untouched, where rollback finds it.
                self.set_aside_layers(name)?;
            }
            self.faults.step()?;
            sys::write_atomic(self.layers(), name, expected, 0o644, false)
                .context(|| format!("writing aufs/layers/{}", escape_os(name)))?;
        }
        Ok(())
    }

    fn build_init(&mut self, plan: &Plan, i: usize) -> io::Result<()> {
        let it = &plan.items[i];
        let id = it.id.as_ref().expect("unblocked items have ids");
        let init = id.init_layer();
        if sys::kind(self.diff(), init.as_os_str())? == Kind::Dir {
            return Ok(()); // renamed into place only when complete
        }
        let layer = crate::place::init_layer(&self.dirs, plan, i).map_err(|e| {
            // Which layers it was computed from (all of them, or the first
            // few and the base of a deep chain).
            let chain: Vec<String> = plan.chain(i).iter().map(|id| id.to_string()).collect();
            let shown = if chain.len() <= 5 {
                chain.join(", ")
            } else {
                format!(
                    "{}, ... {} more ..., {}",
                    chain[..3].join(", "),
                    chain.len() - 4,
                    chain[chain.len() - 1]
                )
            };
            io::Error::new(
                e.kind(),
                format!("computing aufs/diff/{init} from its image's layers ({shown}): {e}"),
            )
        })?;
        let diff = self.diff().try_clone()?;
        let tmp = sys::temp_name(init.as_os_str());
        sys::remove_tree(&diff, &tmp)?;
        self.faults.step()?;
        sys::ensure_dir(&diff, &tmp, 0o755)?;
        let dir = sys::open_dir_required(&diff, &tmp)?;
        layer
            .materialize(&dir)
            .context(|| format!("building aufs/diff/{init}"))?;
        self.faults.step()?;
        sys::rename_noreplace(&diff, &tmp, &diff, init.as_os_str())
            .context(|| format!("renaming aufs/diff/{init} into place"))
    }

    /// Migrates one unblocked item (its parents are done).
    pub fn migrate_item(&mut self, plan: &Plan, i: usize) -> io::Result<()> {
        let it = plan.items[i].clone();
        self.unquarantine_registrations(&it)?;
        self.place_data(&it)?;
        self.register_item(plan, i)
    }

    /// Migrates one unblocked item under a live view (its parents are
    /// registered). Where its data cannot move because the directory is
    /// busy (a mount point: EBUSY), it is registered with a symlink at
    /// `aufs/diff/<id>` pointing back to it, to be moved later; the answer
    /// is then why. Any other error is the item's.
    pub fn migrate_item_live(&mut self, plan: &Plan, i: usize) -> io::Result<Option<String>> {
        let it = plan.items[i].clone();
        self.unquarantine_registrations(&it)?;
        let busy = match self.place_data(&it) {
            Ok(()) => None,
            // (The error names the move: its kind, not its number, says busy.)
            Err(e) if e.kind() == io::ErrorKind::ResourceBusy => {
                self.link_back(&it)?;
                Some(format!(
                    "{} is busy ({e}); registered through a symlink, retried later",
                    it.legacy_path()
                ))
            }
            Err(e) => return Err(e),
        };
        self.register_item(plan, i)?;
        Ok(busy)
    }

    /// Registers an item whose data is being copied to another file system
    /// (a child needs it registered now): a symlink at `aufs/diff/<id>` to
    /// its data until the copy switches.
    pub fn register_while_copying(&mut self, plan: &Plan, i: usize) -> io::Result<()> {
        let it = plan.items[i].clone();
        self.link_back(&it)?;
        self.register_item(plan, i)
    }

    /// A symlink at `aufs/diff/<name>` to the item's legacy directory (by
    /// ROOT's absolute path, as Docker 1.8 made them), unless one is there.
    fn link_back(&mut self, it: &item::Item) -> io::Result<()> {
        let name = &it.name;
        if let Kind::Symlink(_) = sys::kind(self.diff(), name)? {
            return Ok(());
        }
        let mut target = self.root.path().as_os_str().to_os_string();
        target.push("/");
        target.push(it.legacy_parent_dir());
        target.push("/");
        target.push(name);
        target.push("/");
        target.push(it.legacy_leaf());
        // (Not the temporary name of a copy of the same layer.)
        let mut tmp = sys::temp_name(name);
        tmp.push(".link");
        let _ = sys::unlink(self.diff(), &tmp);
        self.faults.step()?;
        rustix::fs::symlinkat(target.as_os_str(), self.diff(), &tmp)?;
        self.faults.step()?;
        sys::rename_noreplace(self.diff(), &tmp, self.diff(), name)
            .context(|| format!("placing the symlink aufs/diff/{}", escape_os(name)))
    }

    fn register_item(&mut self, plan: &Plan, i: usize) -> io::Result<()> {
        let it = &plan.items[i];
        if it.kind == ItemKind::Container {
            self.build_init(plan, i)?;
            let init = it.id.as_ref().expect("unblocked items have ids").init_layer();
            self.register(init.as_os_str(), &plan.init_layers_bytes(i))?;
        }
        self.register(&it.name, &plan.layers_bytes(i))?;
        // (Written with the batch's record: lost in a crash before, the
        // mark only makes a later removal by the daemon look like a
        // pending item, as before it existed.)
        if let Some(e) = self.record.items.get_mut(&record::key(it.kind, &it.name)) {
            if !e.registered {
                e.registered = true;
                self.failures_changed = true;
            }
        }
        Ok(())
    }

    /// Remembers why an item failed (or that it no longer does), for
    /// `status`; written with [`Engine::save_failures`].
    pub fn note_failure(&mut self, it: &item::Item, why: Option<String>) {
        if let Some(e) = self.record.items.get_mut(&record::key(it.kind, &it.name)) {
            if e.failed != why {
                e.failed = why;
                self.failures_changed = true;
            }
        }
    }

    pub fn save_failures(&mut self) -> Result<()> {
        if std::mem::take(&mut self.failures_changed) {
            self.save_record()?;
        }
        Ok(())
    }

    /// Writes the record durably: a change to ROOT like any other, so a
    /// crash test can stop just before it.
    fn save_record(&mut self) -> Result<()> {
        self.faults.step().step(|| "fault injection".into())?;
        self.record.save(self.root)
    }

    pub fn sync(&self) -> Result<()> {
        sys::syncfs(self.root.fd()).step(|| format!("syncing {}", self.root.path().display()))
    }

    /// `repositories` becomes `repositories-aufs`, never over an existing one.
    pub fn rename_repositories(&mut self, plan: &Plan) -> Result<()> {
        if let Repositories::SetAside(_) = plan.repositories {
            if !self.record.repositories_set_aside {
                self.record.repositories_set_aside = true;
                self.save_record()?;
            }
            let own = sys::open_dir_required(self.root.fd(), OWN_DIR).step(|| format!("opening {OWN_DIR}"))?;
            sys::ensure_dir(&own, "quarantine", 0o700).step(|| "creating the quarantine".into())?;
            let q = sys::open_dir_required(&own, "quarantine").step(|| "opening the quarantine".into())?;
            self.faults.step().step(|| "fault injection".into())?;
            return sys::rename_noreplace(self.root.fd(), "repositories", &q, "repositories")
                .step(|| "setting repositories aside in the quarantine".into());
        }
        if plan.repositories != Repositories::Rename {
            return Ok(());
        }
        if !self.record.repositories_renamed {
            self.record.repositories_renamed = true;
            self.save_record()?;
        }
        self.faults.step().step(|| "fault injection".into())?;
        sys::rename_noreplace(self.root.fd(), "repositories", self.root.fd(), "repositories-aufs")
            .step(|| "renaming repositories to repositories-aufs".into())
    }
}

/// A copy of a layer to another file system: into `aufs/diff` under a
/// temporary name (hidden from the view, removed by the next run if this one
/// stops), checked against its source and made durable; then
/// [`Engine::finish_copy`] puts it in place. A failed copy is removed and
/// the source stays as it was.
pub struct CopyJob {
    parent: OwnedFd,
    leaf: &'static str,
    tmp: OsString,
    diff: OwnedFd,
    what: String,
    pub pace: std::sync::Arc<crate::copy::Pace>,
    faults: std::sync::Arc<Faults>,
    /// What the last check of the copy found about files hard-linked out
    /// of the layer (recorded when the copy goes in place).
    outside: std::sync::Mutex<Vec<crate::copy::OutsideLink>>,
    /// The source directory of each directory of the copy (see
    /// [`crate::copy::Origins`]).
    origins: std::sync::Mutex<crate::copy::Origins>,
}

impl CopyJob {
    /// Copies (again: an earlier copy is replaced). Needs no engine: a view
    /// keeps serving and migrating other items meanwhile.
    pub fn run(&self) -> io::Result<()> {
        sys::remove_tree(&self.diff, &self.tmp)?;
        self.faults.step()?;
        sys::ensure_dir(&self.diff, &self.tmp, 0o700)?;
        let copied = (|| -> io::Result<()> {
            let src = sys::open_dir_required(&self.parent, self.leaf)?;
            let dst = std::sync::Arc::new(sys::open_dir_required(&self.diff, &self.tmp)?);
            let t = std::time::Instant::now();
            *self.origins.lock().expect("never poisoned") = crate::copy::copy_tree(&src, &dst, &self.pace)?;
            crate::copy::copy_dir_attrs(&self.parent, OsStr::new(self.leaf), &self.diff, &self.tmp)?;
            let copied = t.elapsed();
            sys::syncfs(&self.diff)?;
            log::debug!(
                "copied {} in {:.3} s, synced in {:.3} s",
                self.what,
                copied.as_secs_f64(),
                (t.elapsed() - copied).as_secs_f64()
            );
            Ok(())
        })();
        if let Err(e) = copied {
            self.discard();
            return Err(io::Error::new(e.kind(), format!("copying {}: {e}", self.what)));
        }
        Ok(())
    }

    /// The source.
    pub fn source(&self) -> io::Result<OwnedFd> {
        sys::open_dir_required(&self.parent, self.leaf)
    }

    /// The copy, under its temporary name.
    pub fn copy(&self) -> io::Result<OwnedFd> {
        sys::open_dir_required(&self.diff, &self.tmp)
    }

    /// Brings the copy up to date with its source (see [`crate::resync`]),
    /// its top directory's attributes included, and makes it durable.
    pub fn resync<'p>(&self, mut pass: crate::resync::Pass<'p>) -> io::Result<crate::resync::Pass<'p>> {
        let r = (|| {
            let dst = std::sync::Arc::new(self.copy()?);
            pass.run(&self.source()?, &dst, &mut self.origins.lock().expect("never poisoned"))?;
            if pass.verifies() {
                *self.outside.lock().expect("never poisoned") = pass.outside();
            }
            let st = sys::lstat(&self.parent, self.leaf)?.ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
            crate::resync::set_attrs_exact(&self.parent, OsStr::new(self.leaf), &st, &self.diff, &self.tmp)?;
            sys::syncfs(&self.diff)
        })();
        r.map_err(|e| io::Error::new(e.kind(), format!("bringing the copy of {} up to date: {e}", self.what)))?;
        Ok(pass)
    }

    /// [`crate::copy::compare_unchanged`] of the copy and its source.
    pub fn compare_unchanged(&self, since: (i64, i64)) -> io::Result<Option<String>> {
        let origins = self.origins.lock().expect("never poisoned");
        crate::copy::compare_unchanged(&self.source()?, &self.copy()?, since, &origins)
    }

    /// Files of the layer hard-linked outside it too, as its last check
    /// found them: their copy has only the links inside.
    pub fn outside_links(&self) -> Vec<record::OutsideLink> {
        let outside = self.outside.lock().expect("never poisoned");
        outside
            .iter()
            .map(|o| record::OutsideLink {
                path: escape_os(o.path.as_os_str()),
                links: o.links,
                inside: o.inside,
            })
            .collect()
    }

    /// The directory holding the source.
    pub fn parent(&self) -> &OwnedFd {
        &self.parent
    }

    /// The copy's temporary name in `aufs/diff`.
    pub fn tmp_name(&self) -> &OsStr {
        &self.tmp
    }

    /// Under a live view, once the copy is in place and the view serves
    /// it: the source, now older than its copy, is set aside under a
    /// temporary name beside it (one rename, made durable), to be removed
    /// by [`CopyJob::drop_set_aside`] (or by the next run:
    /// [`Engine::drop_set_aside_sources`]).
    pub fn set_aside(&self) -> io::Result<()> {
        self.faults.step()?;
        let aside = sys::temp_name(OsStr::new(self.leaf));
        sys::rename_noreplace(&self.parent, self.leaf, &self.parent, &aside)
            .and_then(|()| sys::fsync_dir(self.parent.as_fd()))
            .map_err(|e| io::Error::new(e.kind(), format!("setting the source of {} aside: {e}", self.what)))
    }

    /// Removes the source set aside by [`CopyJob::set_aside`].
    pub fn drop_set_aside(&self) -> io::Result<()> {
        self.faults.step()?;
        let aside = sys::temp_name(OsStr::new(self.leaf));
        sys::remove_tree(&self.parent, &aside).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("removing the source of {} after its copy switched: {e}", self.what),
            )
        })
    }

    /// Removes the copy (never the source).
    pub fn discard(&self) {
        if let Err(r) = sys::remove_tree(&self.diff, &self.tmp) {
            log::warn!("removing the copy aufs/diff/{}: {r}", escape_os(&self.tmp));
        }
    }
}

/// Removes what an interrupted run left under temporary names in
/// `aufs/diff` and `aufs/layers` (derived data, rebuilt from the legacy root).
pub fn remove_temporaries(dirs: &Dirs) -> Result<()> {
    for (dir, rel) in [(&dirs.diff, "aufs/diff"), (&dirs.layers, "aufs/layers")] {
        let Some(dir) = dir else { continue };
        for (name, _) in sys::list_dir(dir).step(|| format!("listing {rel}"))? {
            if name.as_encoded_bytes().starts_with(sys::TEMP_PREFIX.as_bytes()) {
                log::info!("removing the leftover {rel}/{}", escape_os(&name));
                sys::remove_tree(dir, &name).step(|| format!("removing {rel}/{}", escape_os(&name)))?;
            }
        }
    }
    Ok(())
}

/// Names of all the `aufs/diff` entries graph2aufs would create for an item.
pub fn aufs_names(it: &item::Item) -> Vec<OsString> {
    let mut v = vec![it.name.clone()];
    if it.kind == ItemKind::Container {
        if let Some(id) = &it.id {
            v.push(id.init_layer().to_os_string());
        }
    }
    v
}
