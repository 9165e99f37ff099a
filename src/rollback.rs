//! `rollback`: puts what graph2aufs migrated back into the legacy layout,
//! removes only what it created, and refuses, with reasons, what it cannot
//! put back losslessly.

use crate::error::{Result, Step};
use crate::initlayer::InitKind;
use crate::item::{self, ItemKind};
use crate::layout;
use crate::layout::AufsDir;
use crate::legacy::{self, Dirs, LAYERS_CAP};
use crate::names::{escape_os, unescape};
use crate::plan::{self, Note, Plan};
use crate::record::{self, Record, RecordItem, Saved};
use crate::root::{Root, LOCK_FILE, OWN_DIR, QUARANTINE, QUARANTINE_AUFS, RECORD_FILE, STATUS_FILE};
use crate::sys::{self, Context, Kind};
use rustix::fs::{FileType, Timespec};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;

#[derive(Serialize, Default)]
pub struct RollbackReport {
    pub root: String,
    pub restored: Vec<String>,
    pub refused: Vec<Note>,
}

fn time((s, ns): (i64, i64)) -> Timespec {
    Timespec {
        tv_sec: s,
        tv_nsec: ns as _,
    }
}

struct Rollback<'a> {
    root: &'a Root,
    dirs: Dirs,
    plan: Plan,
    record: Record,
    /// For each layer, the layers whose chains name it.
    users: HashMap<OsString, Vec<OsString>>,
}

pub fn rollback(root: &Root) -> Result<RollbackReport> {
    let r = root.path().display().to_string();
    let mut report = RollbackReport {
        root: crate::names::escape_os(root.path().as_os_str()),
        ..Default::default()
    };
    if !Record::exists(root) {
        return Ok(report);
    }
    let record = Record::load(root)?;
    let scan = legacy::scan(root).step(|| format!("reading {r}"))?;
    let plan = plan::plan(&scan, &record);
    let dirs = Dirs::open(root).step(|| format!("opening the directories of {r}"))?;
    // An interrupted migrate's half-built init layers and layers/ files.
    crate::migrate::remove_temporaries(&dirs)?;
    let mut users: HashMap<OsString, Vec<OsString>> = HashMap::new();
    if let Some(layers) = &dirs.layers {
        for (name, _) in sys::list_dir(layers).step(|| "listing aufs/layers".into())? {
            if let Ok(bytes) = sys::read_file(layers, &name, LAYERS_CAP) {
                for line in layout::parse_layers(&bytes) {
                    users
                        .entry(OsStr::from_bytes(line).to_os_string())
                        .or_default()
                        .push(name.clone());
                }
            }
        }
    }
    let mut rb = Rollback {
        root,
        dirs,
        plan,
        record,
        users,
    };
    // Containers, then images children first, then quarantined items.
    let mut order: Vec<usize> = (0..rb.plan.items.len()).collect();
    order.sort_by_key(|&i| (rb.plan.items[i].kind == ItemKind::Image, std::cmp::Reverse(i)));
    let ours: HashSet<OsString> = rb
        .plan
        .items
        .iter()
        .filter(|it| it.ours && !rb.record.items[&record::key(it.kind, &it.name)].quarantined)
        .flat_map(crate::migrate::aufs_names)
        .collect();
    for i in order {
        let it = rb.plan.items[i].clone();
        let key = record::key(it.kind, &it.name);
        let Some(entry) = rb.record.items.get(&key).cloned() else {
            continue;
        };
        let result = if entry.quarantined {
            rb.unquarantine(&it)
        } else {
            rb.item(i, &entry, &ours)
        };
        match result {
            Ok(()) => {
                rb.record.items.remove(&key);
                report.restored.push(key);
            }
            Err(e) => report.refused.push(Note {
                path: key,
                reason: e.to_string(),
            }),
        }
    }
    // Items in the record that the scan no longer finds.
    let leftover: Vec<String> = rb
        .record
        .items
        .keys()
        .filter(|k| !report.refused.iter().any(|n| &n.path == *k))
        .cloned()
        .collect();
    for k in leftover {
        report.refused.push(Note {
            path: k,
            reason: "its directory under graph/ or containers/ no longer exists".into(),
        });
    }
    if rb.record.repositories_renamed {
        // The intent is recorded before the rename: an interrupted migrate
        // may not have done it.
        let not_done = sys::kind(root.fd(), "repositories-aufs").step(|| "reading repositories-aufs".into())?
            == Kind::Missing
            && sys::kind(root.fd(), "repositories")
                .step(|| "reading repositories".into())?
                .exists();
        let result = if not_done {
            Ok(())
        } else {
            sys::rename_noreplace(root.fd(), "repositories-aufs", root.fd(), "repositories")
        };
        match result {
            Ok(()) => {
                rb.record.repositories_renamed = false;
                report.restored.push("repositories".into());
            }
            Err(e) => report.refused.push(Note {
                path: "repositories-aufs".into(),
                reason: format!("cannot become repositories again: {e}"),
            }),
        }
    }
    if rb.record.repositories_set_aside {
        let q = sys::open_dir(root.fd(), QUARANTINE).step(|| "opening the quarantine".into())?;
        let result = match q {
            Some(q) if sys::lstat(&q, "repositories").ok().flatten().is_some() => {
                sys::rename_noreplace(&q, "repositories", root.fd(), "repositories")
            }
            _ => Ok(()), // never set aside: the intent is recorded first
        };
        match result {
            Ok(()) => {
                rb.record.repositories_set_aside = false;
                report.restored.push("repositories".into());
            }
            Err(e) => report.refused.push(Note {
                path: format!("{QUARANTINE}/repositories"),
                reason: format!("cannot become repositories again: {e}"),
            }),
        }
    }
    sys::syncfs(root.fd()).step(|| format!("syncing {r}"))?;
    if report.refused.is_empty() {
        rb.finish()?;
    } else {
        rb.record.save(root)?;
    }
    Ok(report)
}

impl Rollback<'_> {
    fn diff(&self) -> io::Result<&OwnedFd> {
        self.dirs
            .diff
            .as_ref()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "aufs/diff does not exist"))
    }

    fn legacy_parent(&self, it: &item::Item) -> io::Result<OwnedFd> {
        let d = self.dirs.legacy(it.kind).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}/ does not exist", it.legacy_parent_dir()),
            )
        })?;
        sys::open_dir(d, &it.name)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}/{} no longer exists", it.legacy_parent_dir(), escape_os(&it.name)),
            )
        })
    }

    fn unquarantine(&mut self, it: &item::Item) -> io::Result<()> {
        let q = self.dirs.quarantine(it.kind);
        let dst = self.legacy_parent(it)?;
        if let Some(qd) = q.and_then(|q| sys::open_dir(q, &it.name).ok().flatten()) {
            if sys::kind(&qd, it.legacy_leaf())?.exists() {
                sys::rename_noreplace(&qd, it.legacy_leaf(), &dst, it.legacy_leaf())
                    .context(|| format!("moving the quarantined {} back", it.legacy_path()))?;
            }
            let _ = sys::rmdir(q.expect("opened above"), &it.name);
        }
        // Its aufs registrations, if quarantine took them.
        if let Some(id) = &it.id {
            let mut names = vec![id.to_os_string()];
            if it.kind == ItemKind::Container {
                names.push(id.init_layer().to_os_string());
            }
            for sub in AufsDir::ALL {
                let (Some(dir), Some(q)) = (
                    self.dirs.aufs(sub),
                    sys::open_dir(self.root.fd(), format!("{QUARANTINE_AUFS}/{}", sub.name()))?,
                ) else {
                    continue;
                };
                for n in &names {
                    if sys::lstat(&q, n)?.is_some() {
                        sys::rename_noreplace(&q, n, dir, n).context(|| {
                            format!("moving aufs/{}/{} back from the quarantine", sub.name(), escape_os(n))
                        })?;
                    }
                }
            }
        }
        if !it.legacy_present && !sys::kind(&dst, it.legacy_leaf())?.exists() && self.had_legacy(it) {
            return Err(io::Error::other(format!(
                "{} is neither in the quarantine nor in its place",
                it.legacy_path()
            )));
        }
        self.restore_dir_mtime(it)
    }

    /// Whether the quarantine took legacy data of this item (recorded as the
    /// directory mtime it changed).
    fn had_legacy(&self, it: &item::Item) -> bool {
        self.record
            .items
            .get(&record::key(it.kind, &it.name))
            .is_some_and(|e| e.moved_legacy)
    }

    fn restore_dir_mtime(&self, it: &item::Item) -> io::Result<()> {
        let entry = self.record.items.get(&record::key(it.kind, &it.name));
        if let Some((s, ns)) = entry.and_then(|e| e.dir_mtime) {
            if let Some(p) = self.dirs.legacy(it.kind) {
                let st = sys::lstat(p, &it.name)?.ok_or_else(|| io::Error::other("vanished"))?;
                sys::set_times(p, &it.name, sys::atime(&st), time((s, ns)))?;
            }
        }
        Ok(())
    }

    /// Refuses when a layer graph2aufs would remove is in the chain of a
    /// layer that is not being rolled back (a newer daemon's).
    fn check_users(&self, name: &OsStr, ours: &HashSet<OsString>) -> io::Result<()> {
        if let Some(users) = self.users.get(name) {
            let foreign: Vec<String> = users
                .iter()
                .filter(|u| !ours.contains(*u))
                .map(|u| escape_os(u))
                .collect();
            if !foreign.is_empty() {
                return Err(io::Error::other(format!(
                    "layers created since the migration build on it ({}); remove them first",
                    foreign.join(", ")
                )));
            }
        }
        Ok(())
    }

    fn item(&mut self, i: usize, entry: &RecordItem, ours: &HashSet<OsString>) -> io::Result<()> {
        let it = self.plan.items[i].clone();
        let name = it.name.clone();
        self.check_users(&name, ours)?;
        let parent = self.legacy_parent(&it)?;
        let diff = self.diff()?.try_clone()?;
        let leaf = it.legacy_leaf();
        let init = it.id.as_ref().map(|id| id.init_layer().to_os_string());
        // Check everything before changing anything.
        for saved in [&entry.prior.symlink, &entry.prior.layers, &entry.prior.init_layers]
            .into_iter()
            .flatten()
        {
            if unescape(&saved.text).is_none() {
                return Err(damaged(&name));
            }
        }
        if it.kind == ItemKind::Container {
            if let Some(init) = &init {
                self.check_users(init, ours)?;
                if sys::kind(&diff, init)? == Kind::Dir {
                    self.check_init_untouched(i, init)?;
                }
            }
        }
        match (sys::kind(&parent, leaf)?, sys::kind(&diff, &name)?) {
            (Kind::Missing, Kind::Dir) => {
                let d = sys::open_dir_required(&diff, &name)?;
                if entry.empty_rw && sys::dir_is_empty(&d)? {
                    sys::rmdir(&diff, &name)?;
                } else {
                    sys::rename_noreplace(&diff, &name, &parent, leaf)
                        .context(|| format!("moving aufs/diff/{} back to {}", escape_os(&name), it.legacy_path()))?;
                }
            }
            (Kind::Dir, Kind::Missing | Kind::Symlink(_)) => {} // not moved yet
            // Migrate was interrupted between swapping the Docker 1.8 symlink
            // with the data and removing it: swap them back.
            (Kind::Symlink(_), Kind::Dir) if entry.prior.symlink.is_some() => {
                let st = sys::lstat(&diff, &name)?.ok_or_else(|| io::Error::other("vanished"))?;
                sys::rename_exchange(&parent, leaf, &diff, &name)
                    .context(|| format!("swapping {} back with aufs/diff/{}", it.legacy_path(), escape_os(&name)))?;
                // (XFS stamps a directory an exchange moves to another
                // parent with the time of the exchange.)
                let mtime = match entry.data_mtime {
                    Some(t) => time(t),
                    None => sys::mtime(&st),
                };
                sys::set_times(&parent, leaf, sys::atime(&st), mtime)?;
            }
            (Kind::Missing, Kind::Missing) if entry.empty_rw => {}
            (l, n) => {
                return Err(io::Error::other(format!(
                    "{} is {} and aufs/diff/{} is {}",
                    it.legacy_path(),
                    l.describe(),
                    escape_os(&name),
                    n.describe()
                )))
            }
        }
        if let (Some(d), Kind::Missing) = (&entry.empty_native, sys::kind(&diff, &name)?) {
            // The empty directory Docker's Create had made there.
            sys::ensure_dir(&diff, &name, d.mode)?;
            sys::chown(&diff, &name, d.uid, d.gid)?;
            rustix::fs::chmodat(
                &diff,
                &name,
                rustix::fs::Mode::from_raw_mode(d.mode),
                rustix::fs::AtFlags::empty(),
            )?;
            let t = time(d.mtime);
            sys::set_times(&diff, &name, t, t)?;
        }
        if let Some(saved) = &entry.prior.symlink {
            if sys::kind(&diff, &name)? == Kind::Missing {
                let target = unescape(&saved.text).ok_or_else(|| damaged(&name))?;
                rustix::fs::symlinkat(OsStr::from_bytes(&target), &diff, &name)?;
                let t = time(saved.mtime);
                sys::set_times(&diff, &name, t, t)?;
            }
        }
        if let (ItemKind::Container, Some(init)) = (it.kind, &init) {
            if sys::kind(&diff, init)? == Kind::Dir {
                sys::remove_tree(&diff, init)?;
            }
            self.unregister(init, entry.prior.init_layers.as_ref(), entry.prior.init_mnt)?;
        }
        self.unregister(&name, entry.prior.layers.as_ref(), entry.prior.mnt)?;
        self.restore_dir_mtime(&it)
    }

    /// An init layer is removed only if it holds exactly what graph2aufs
    /// wrote: nothing else is lost with it.
    fn check_init_untouched(&self, i: usize, init: &OsStr) -> io::Result<()> {
        let expected = crate::place::init_layer(&self.dirs, &self.plan, i)?;
        let dir = sys::open_dir_required(self.diff()?, init)?;
        let mut found = Vec::new();
        walk(&dir, &mut Vec::new(), &mut found)?;
        let want: Vec<(Vec<OsString>, FileType, u64)> = expected
            .entries
            .iter()
            .map(|e| {
                let ft = match e.kind {
                    InitKind::Dir => FileType::Directory,
                    InitKind::File => FileType::RegularFile,
                    InitKind::Symlink(_) => FileType::Symlink,
                };
                let size = match &e.kind {
                    InitKind::Symlink(t) => t.len() as u64,
                    _ => 0,
                };
                (e.path.clone(), ft, size)
            })
            .collect();
        let key = |(p, ft, size): (Vec<OsString>, FileType, u64)| {
            (p, ft.as_raw_mode(), if ft == FileType::Directory { 0 } else { size })
        };
        let mut want: Vec<_> = want.into_iter().map(key).collect();
        let mut found: Vec<_> = found.into_iter().map(key).collect();
        want.sort();
        found.sort();
        if found != want {
            return Err(io::Error::other(format!(
                "aufs/diff/{} holds changes made since the migration; it is not removed",
                escape_os(init)
            )));
        }
        Ok(())
    }

    fn unregister(&self, name: &OsStr, prior_layers: Option<&Saved>, prior_mnt: bool) -> io::Result<()> {
        if let Some(layers) = &self.dirs.layers {
            // A layers/ file migrate set aside (too large for the record).
            let aside = sys::open_dir(self.root.fd(), format!("{QUARANTINE_AUFS}/layers"))?
                .filter(|d| matches!(sys::lstat(d, name), Ok(Some(_))));
            match (aside, prior_layers) {
                (Some(aside), _) => sys::rename_over(&aside, name, layers, name)?,
                (None, Some(saved)) => {
                    let bytes = unescape(&saved.text).ok_or_else(|| damaged(name))?;
                    sys::write_atomic(layers, name, &bytes, 0o644, false)?;
                    let t = time(saved.mtime);
                    sys::set_times(layers, name, t, t)?;
                }
                (None, None) => {
                    if sys::lstat(layers, name)?.is_some() {
                        sys::unlink(layers, name)?;
                    }
                }
            }
        }
        if let (Some(mnt), false) = (&self.dirs.mnt, prior_mnt) {
            if sys::kind(mnt, name)? == Kind::Dir {
                sys::rmdir(mnt, name)
                    .context(|| format!("removing aufs/mnt/{} (still a mount point?)", escape_os(name)))?;
            }
        }
        Ok(())
    }

    /// Everything is back: remove what graph2aufs created, restore the
    /// directory times it changed.
    fn finish(self) -> Result<()> {
        let root = self.root;
        for rel in self.record.created_dirs.iter().rev() {
            let (at, name) = root.resolve(rel);
            if let Ok(Some(d)) = sys::open_dir(at, name) {
                if sys::dir_is_empty(&d).unwrap_or(false) {
                    if name == "." {
                        // The symlink to an --aufs-dir (the directory is the
                        // operator's: it stays).
                        if let Ok(Kind::Symlink(_)) = sys::kind_unread(root.fd(), "aufs") {
                            let _ = sys::unlink(root.fd(), "aufs");
                        }
                    } else {
                        let _ = rustix::fs::unlinkat(at, name, rustix::fs::AtFlags::REMOVEDIR);
                    }
                }
            }
        }
        // Items' directories the quarantine emptied (a later run migrated
        // them from there).
        for kind in [ItemKind::Image, ItemKind::Container] {
            let rel = format!("{QUARANTINE}/{}", kind.legacy_dir());
            if let Ok(Some(q)) = sys::open_dir(root.fd(), &rel) {
                for (name, _) in sys::list_dir(&q).unwrap_or_default() {
                    let _ = sys::rmdir(&q, &name);
                }
            }
        }
        let emptied = [ItemKind::Image, ItemKind::Container]
            .map(|kind| format!("{QUARANTINE}/{}", kind.legacy_dir()))
            .into_iter()
            .chain(AufsDir::ALL.map(|sub| format!("{QUARANTINE_AUFS}/{}", sub.name())))
            .chain([QUARANTINE_AUFS.to_string(), QUARANTINE.to_string()]);
        for rel in emptied {
            let _ = rustix::fs::unlinkat(root.fd(), &rel, rustix::fs::AtFlags::REMOVEDIR);
        }
        if let Some(own) = sys::open_dir(root.fd(), OWN_DIR).step(|| format!("opening {OWN_DIR}"))? {
            for f in [RECORD_FILE, STATUS_FILE, LOCK_FILE] {
                let _ = sys::unlink(&own, f);
            }
        }
        let _ = sys::rmdir(root.fd(), OWN_DIR);
        let mut mtimes: Vec<_> = self.record.mtimes.iter().collect();
        mtimes.sort_by_key(|(rel, _)| std::cmp::Reverse(rel.len()));
        for (rel, t) in mtimes {
            let (at, rel) = if rel.is_empty() {
                (root.fd(), ".")
            } else {
                root.resolve(rel)
            };
            if let Ok(Some(st)) = sys::lstat(at, rel) {
                let _ = sys::set_times(at, rel, sys::atime(&st), time(*t));
            }
        }
        sys::syncfs(root.fd()).step(|| "syncing".into())
    }
}

/// A record entry that cannot be decoded: refuse rather than write a wrong
/// (for a `layers/` file, possibly truncated) value back.
fn damaged(name: &OsStr) -> io::Error {
    io::Error::other(format!(
        "the record's saved copy for {} is damaged; it is not used",
        escape_os(name)
    ))
}

fn walk(dir: &OwnedFd, prefix: &mut Vec<OsString>, out: &mut Vec<(Vec<OsString>, FileType, u64)>) -> io::Result<()> {
    for (name, _) in sys::list_dir(dir)? {
        let st = sys::lstat(dir, &name)?.ok_or_else(|| io::Error::other("vanished"))?;
        let ft = FileType::from_raw_mode(st.st_mode);
        prefix.push(name.clone());
        out.push((prefix.clone(), ft, st.st_size as u64));
        if ft == FileType::Directory {
            let sub = sys::open_dir_required(dir, &name)?;
            walk(&sub, prefix, out)?;
        }
        prefix.pop();
    }
    Ok(())
}
