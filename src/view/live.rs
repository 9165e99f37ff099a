//! Background migration under a read-write view: the engine's rules, item by
//! item, parents first, while the view keeps showing the same tree. A change
//! through the view that touches a pending item's transformed entries
//! migrates that item first ([`Migrator::migrate`]). After each item the
//! view's synthesized nodes of it are rebound to what is now on the disk
//! (same node ids: the kernel notices nothing).

use super::node::{Backing, Key, Table};
use super::transform::{Progress, Transform};
use crate::item::{ItemKind, ItemResult, Source, State};
use crate::migrate::{Engine, BATCH};
use crate::names::escape_os;
use crate::report::{Document, LiveState};
use crate::root::Root;
use crate::root::{RECORD_FILE, STATUS_FILE};
use crate::sys;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant, SystemTime};

/// What the kernel is asked to drop, from a thread of its own (never from
/// a request being served, which may hold a lock the kernel needs).
enum Inval {
    /// A node's cached attributes (offset -1), or also its data (0).
    Inode(u64, i64),
    /// A name in a directory (never a mount point).
    Entry(u64, std::ffi::OsString),
}

/// A copy under way: item, pace, bytes in all, when it started.
type Copying = (usize, Arc<crate::copy::Pace>, u64, Instant);

pub struct Migrator {
    root: &'static Root,
    engine: Mutex<Engine<'static>>,
    transform: Arc<Transform>,
    table: Arc<Table>,
    results: Mutex<Vec<ItemResult>>,
    /// Nodes whose cached attributes the kernel must drop (sent from a
    /// thread of its own: never from a request being served).
    invalidate: Mutex<Option<mpsc::Sender<Inval>>>,
    stop: AtomicBool,
    mountpoint: String,
    started: SystemTime,
    /// Test hook (`GRAPH2AUFS_ITEM_DELAY_MS`): a pause before each item of
    /// the background migration, so tests can act while it runs.
    item_delay: Duration,
    /// Test hook (`GRAPH2AUFS_SWITCH_DELAY_MS`): a pause between a copy's
    /// last catch-up (and its check) and its switch, so tests can change
    /// the layer then.
    switch_delay: Duration,
    /// A progress bar on the terminal (a foreground mount).
    pub progress_bar: bool,
    /// Held (written) while a copied layer switches to its copy: lookups
    /// into layers data wait (see `View::shown_node`).
    switch: std::sync::RwLock<()>,
    /// The copy under way: item, pace, bytes in all, when it started.
    copying: Mutex<Option<Copying>>,
    /// The layers to be copied to another file system, until they switch:
    /// their files open without kernel passthrough (from the start, so that
    /// no open made before its copy began holds up the switch), so that
    /// their opens can switch to the copy.
    transit: Vec<AtomicBool>,
    /// How many of `transit` are still set (none: requests skip the pauses).
    transit_left: AtomicUsize,
    /// Changes (and lookups) inside layer `i`'s data hold
    /// `pauses[i % PAUSES]` for reading; its copy switches holding it for
    /// writing: a brief pause of that layer's changes only.
    pauses: [RwLock<()>; PAUSES],
    /// The view's open files.
    files: Arc<super::files::Files>,
    /// What `status` notes besides the plan's: sources of copied layers
    /// that could not be removed.
    notes: Mutex<Vec<crate::plan::Note>>,
    /// How FUSE requests reach the view (`uring` or `classic`), once mounted.
    pub transport: std::sync::OnceLock<&'static str>,
    /// What `status` says besides the plan's as info (no problem): files of
    /// layers copied by this view hard-linked outside their layer.
    info: Mutex<Vec<crate::plan::Note>>,
    /// Whether the background migration runs (see [`Migrator::unmounted`]).
    running: Mutex<bool>,
    ended: std::sync::Condvar,
}

/// How long an unmounted view waits for its background migration to stop
/// (an interrupted copy removes what it copied) before it exits anyway.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Write pauses, each shared by the layers whose index it is modulo this.
const PAUSES: usize = 16;

/// A test hook's pause: milliseconds in environment variable `name`.
fn env_ms(name: &str) -> Duration {
    Duration::from_millis(std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(0))
}

fn other(msg: String) -> io::Error {
    io::Error::other(msg)
}

impl Migrator {
    /// Whether item `i`'s layer is being copied to another file system now.
    fn is_copying(&self, i: usize) -> bool {
        matches!(&*self.copying.lock().expect("never poisoned"), Some((c, ..)) if *c == i)
    }

    /// Lookups into layers' data hold this while they resolve: a layer's
    /// switch to its copy waits for them.
    pub fn switching(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.switch.read().expect("never poisoned")
    }

    /// Whether layer `i` is to be copied to another file system (and has
    /// not switched yet).
    pub fn in_transit(&self, i: usize) -> bool {
        self.transit.get(i).is_some_and(|t| t.load(Ordering::SeqCst))
    }

    /// Whether any layer is still to be copied to another file system.
    pub fn copies_left(&self) -> bool {
        self.transit_left.load(Ordering::SeqCst) > 0
    }

    /// Layer `i` is no longer in transit (switched, or moved by a rename).
    fn arrived(&self, i: usize) {
        if self.transit[i].swap(false, Ordering::SeqCst) {
            self.transit_left.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Holds off the switch of the layers `layers` to their copies while a
    /// change (or lookup) in them lasts. Only layers in transit are held: a
    /// layer leaves transit inside its switch's pause, so a request that
    /// finds it out of transit comes after the switch. (Taken once per
    /// request, never twice by one thread: a waiting switch would block the
    /// second.)
    pub fn hold(&self, layers: impl Iterator<Item = usize>) -> Vec<RwLockReadGuard<'_, ()>> {
        let mut at: Vec<usize> = layers.filter(|&l| self.in_transit(l)).map(|l| l % PAUSES).collect();
        at.sort_unstable();
        at.dedup();
        at.into_iter()
            .map(|k| self.pauses[k].read().expect("never poisoned"))
            .collect()
    }

    pub(super) fn new(
        root: &'static Root,
        engine: Engine<'static>,
        transform: Arc<Transform>,
        table: Arc<Table>,
        files: Arc<super::files::Files>,
        mountpoint: &std::path::Path,
    ) -> Migrator {
        let results = ItemResult::of_items(&transform.plan.items);
        let across = [ItemKind::Image, ItemKind::Container].map(|k| engine.copies_across(k));
        let transit: Vec<AtomicBool> = (transform.plan.items.iter().enumerate())
            .map(|(i, it)| {
                let across = across[(it.kind == ItemKind::Container) as usize];
                AtomicBool::new(across && !it.blocked() && transform.progress(i) < Progress::Done)
            })
            .collect();
        let transit_left = AtomicUsize::new(transit.iter().filter(|t| t.load(Ordering::Relaxed)).count());
        Migrator {
            root,
            engine: Mutex::new(engine),
            transform,
            table,
            results: Mutex::new(results),
            invalidate: Mutex::new(None),
            stop: AtomicBool::new(false),
            mountpoint: mountpoint.display().to_string(),
            started: SystemTime::now(),
            item_delay: env_ms("GRAPH2AUFS_ITEM_DELAY_MS"),
            switch_delay: env_ms("GRAPH2AUFS_SWITCH_DELAY_MS"),
            progress_bar: false,
            switch: std::sync::RwLock::new(()),
            copying: Mutex::new(None),
            transit,
            transit_left,
            pauses: Default::default(),
            files,
            notes: Mutex::default(),
            transport: std::sync::OnceLock::new(),
            info: Mutex::default(),
            running: Mutex::new(false),
            ended: std::sync::Condvar::new(),
        }
    }

    /// Starts the thread that asks the kernel to drop cached attributes of
    /// rebound nodes.
    pub fn set_notifier(&self, notifier: fuser::Notifier) {
        let (tx, rx) = mpsc::channel::<Inval>();
        std::thread::spawn(move || {
            for inval in rx {
                let r = match &inval {
                    Inval::Inode(ino, offset) => notifier.inval_inode(fuser::INodeNo(*ino), *offset, 0),
                    Inval::Entry(parent, name) => notifier.inval_entry(fuser::INodeNo(*parent), name),
                };
                if let Err(e) = r {
                    log::debug!("invalidating a kernel cache entry: {e}");
                }
            }
        });
        *self.invalidate.lock().expect("never poisoned") = Some(tx);
    }

    /// The view is going: the background migration stops, a copy under
    /// way at once (see [`Migrator::unmounted`]).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some((_, pace, ..)) = &*self.copying.lock().expect("never poisoned") {
            pace.stop.store(true, Ordering::SeqCst);
        }
    }

    fn set_result(&self, i: usize, state: State, reason: Option<String>) {
        let mut r = self.results.lock().expect("never poisoned");
        r[i].state = state;
        r[i].reason = reason;
    }

    /// Migrates item `i` now, unless it is done (or blocked: quarantined
    /// before the view was mounted). An item registered with a symlink
    /// fallback is tried again; if it is still busy, the answer is EBUSY.
    pub fn migrate(&self, i: usize) -> io::Result<()> {
        let it = &self.transform.plan.items[i];
        if it.blocked() || self.transform.progress(i) == Progress::Done {
            return Ok(());
        }
        let mut engine = self.engine.lock().expect("the engine lock is never poisoned");
        let r = self.migrate_locked(&mut engine, i, &mut Vec::new());
        drop(engine);
        // Someone waits on this item: `status` shows it at once.
        self.write_status();
        r?;
        if self.transform.progress(i) < Progress::Done {
            return Err(io::Error::from_raw_os_error(libc::EBUSY));
        }
        Ok(())
    }

    /// Before a change to `what` that would strand items still to be
    /// migrated (their data, or what the plan finds them by:
    /// `graph/<id>/json`, `containers/<id>/config.json`): for a root of
    /// the legacy or the aufs layout (`of` is `None`), the change is
    /// refused (EBUSY) while any item is still to be migrated (graph2aufs
    /// migrates from and into there, and Docker reads its images,
    /// containers and layers there); for an image's or container's own
    /// directory, item `of` and every item that builds on it (its child
    /// images, their containers) are migrated first, and the change is
    /// refused only if any of them cannot be now. Why, in the log.
    pub fn before_stranding(&self, of: Option<usize>, what: &str) -> io::Result<()> {
        let plan = &self.transform.plan;
        let builds_on = |j: usize| {
            let Some(i) = of else { return true };
            let mut cur = Some(j);
            while let Some(c) = cur {
                if c == i {
                    return true;
                }
                cur = plan.items[c].parent;
            }
            false
        };
        let todo: Vec<usize> = (0..plan.items.len())
            .filter(|&j| !plan.items[j].blocked() && self.transform.progress(j) < Progress::Done)
            .filter(|&j| builds_on(j))
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        let name = |j: usize| format!("{} {}", plan.items[j].kind, escape_os(&plan.items[j].name));
        if of.is_none() {
            const SHOWN: usize = 3;
            let mut some: Vec<String> = todo.iter().take(SHOWN).map(|&j| name(j)).collect();
            if todo.len() > SHOWN {
                some.push("...".into());
            }
            log::warn!(
                "renaming or removing {what} is refused (EBUSY) while {} item(s) are still to be migrated ({}): \
                 graph2aufs migrates them from and into there, and Docker finds its images, containers and layers \
                 there",
                todo.len(),
                some.join(", ")
            );
            return Err(io::Error::from_raw_os_error(libc::EBUSY));
        }
        log::info!(
            "a change of {what}: migrating first the {} item(s) it would strand",
            todo.len()
        );
        let left: Vec<String> = todo
            .into_iter()
            .filter_map(|j| self.migrate(j).err().map(|e| format!("{} ({e})", name(j))))
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        log::warn!(
            "a change of {what} is refused (EBUSY): it would strand {} item(s) that cannot be migrated now: {}",
            left.len(),
            left.join("; ")
        );
        Err(io::Error::from_raw_os_error(libc::EBUSY))
    }

    fn migrate_locked(&self, engine: &mut Engine<'static>, i: usize, failed: &mut Vec<usize>) -> io::Result<()> {
        let plan = &self.transform.plan;
        let it = &plan.items[i];
        if self.transform.progress(i) == Progress::Done {
            return Ok(());
        }
        if self.is_copying(i) {
            // Its children need it registered now: through a symlink until
            // its copy switches.
            if self.transform.progress(i) == Progress::Pending {
                engine.register_while_copying(plan, i)?;
                self.transform.set_progress(i, Progress::Registered);
                self.rebind(i);
                self.refresh(engine, i);
            }
            return Ok(());
        }
        if let Some(p) = it.parent {
            if failed.contains(&p) {
                let why = format!("its parent {} is not registered", escape_os(&plan.items[p].name));
                failed.push(i);
                self.fail(engine, i, why.clone());
                return Err(other(why));
            }
            if self.transform.progress(p) == Progress::Pending {
                if let Err(e) = self.migrate_locked(engine, p, failed) {
                    failed.push(p);
                    failed.push(i);
                    let why = format!("its parent {} is not registered ({e})", escape_os(&plan.items[p].name));
                    self.fail(engine, i, why.clone());
                    return Err(other(why));
                }
            }
        }
        engine.claim(plan, &[i]).map_err(io::Error::from)?;
        self.set_result(i, State::Moving, None);
        match engine.migrate_item_live(plan, i) {
            Ok(None) => {
                self.transform.set_progress(i, Progress::Done);
                self.set_result(i, State::Registered, None);
                engine.note_failure(it, None);
                log::debug!("{} {} migrated", it.kind, escape_os(&it.name));
            }
            Ok(Some(why)) => {
                self.transform.set_progress(i, Progress::Registered);
                log::warn!("{} {}: {why}", it.kind, escape_os(&it.name));
                self.set_result(i, State::Fallback, Some(why));
                engine.note_failure(it, None);
            }
            Err(e) => {
                failed.push(i);
                let why = e.to_string();
                self.fail(engine, i, why);
                return Err(e);
            }
        }
        self.rebind(i);
        self.refresh(engine, i);
        Ok(())
    }

    fn fail(&self, engine: &mut Engine<'static>, i: usize, why: String) {
        let it = &self.transform.plan.items[i];
        log::error!("{} {}: {why}", it.kind, escape_os(&it.name));
        engine.note_failure(it, Some(why.clone()));
        self.set_result(i, State::Failed, Some(why));
    }

    /// The nodes item `i`'s transform made are served from the disk from now
    /// on (parents before children: a child's parent is rebound first).
    fn rebind(&self, i: usize) {
        loop {
            let made = self.table.take_made_by(i);
            if made.is_empty() {
                return;
            }
            for (node, key) in made {
                self.rebind_node(&node, &key);
            }
        }
    }

    /// Serves one synthesized node from the disk entry now at its name.
    pub fn rebind_node(&self, node: &super::node::Node, key: &Key) {
        let Key::Child(parent, name) = key else { return };
        let Some(parent) = self.table.get(*parent) else { return };
        let dir = match &*parent.backing() {
            Backing::Real { dir, .. } => dir.clone(),
            _ => return,
        };
        let Ok(fd) = dir.fd() else { return };
        let backing = match sys::lstat(&*fd, name) {
            Ok(Some(st)) if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory => {
                match super::backing::open_path(&*fd, name) {
                    Ok(fd) => Backing::Real {
                        dir: crate::dirref::DirRef::new(fd),
                        role: super::transform::Role::Plain,
                    },
                    Err(e) => return log::warn!("rebinding {}: {e}", escape_os(name)),
                }
            }
            Ok(Some(st)) => Backing::Entry {
                dir,
                name: name.as_os_str().into(),
                ino: st.st_ino,
            },
            _ => return,
        };
        node.rebind(backing);
        self.invalidate(node.id, 0);
    }

    /// Asks the kernel to drop its cached attributes of node `id` (and with
    /// `offset` 0 its cached data too; -1: attributes only). Never an entry:
    /// mount points stay.
    fn invalidate(&self, id: u64, offset: i64) {
        if let Some(tx) = &*self.invalidate.lock().expect("never poisoned") {
            let _ = tx.send(Inval::Inode(id, offset));
        }
    }

    /// The attributes of what a migration changed on the disk (directory
    /// times and link counts, a moved layer's ctime) are read afresh.
    fn refresh(&self, engine: &Engine<'static>, i: usize) {
        for (dir, name) in engine.changed_dirs(&self.transform.plan.items[i]) {
            let mut ids = Vec::new();
            if let Ok((_, k)) = super::backing::identity(dir, std::ffi::OsStr::new("")) {
                ids.extend(self.table.peek(&k).map(|n| n.id));
            }
            if let Some(name) = name {
                if let Ok((_, k)) = super::backing::identity(dir, &name) {
                    ids.extend(self.table.peek(&k).map(|n| n.id));
                }
            }
            for id in ids {
                self.invalidate(id, -1);
            }
        }
    }

    /// Copies item `i`'s data to `aufs/diff/<id>` when that is on another
    /// file system, without holding the engine (the view goes on serving
    /// the source, and migrating other items), then switches the view to
    /// the copy (see [`Migrator::copy_and_switch`]). Nothing to do
    /// (`false`) for an item a rename moves.
    fn copy_live(&self, i: usize) -> io::Result<bool> {
        let plan = &self.transform.plan;
        let it = &plan.items[i];
        // Parents first: an item whose parent is not registered is not copied.
        if it
            .parent
            .is_some_and(|p| self.transform.progress(p) == Progress::Pending)
        {
            return Ok(false);
        }
        let job = {
            let mut engine = self.engine.lock().expect("never poisoned");
            if self.transform.progress(i) == Progress::Done {
                return Ok(false);
            }
            engine.claim(plan, &[i]).map_err(io::Error::from)?;
            match engine.copy_job(it)? {
                Some(job) => {
                    let total = engine.copy_total.load(Ordering::Relaxed);
                    *self.copying.lock().expect("never poisoned") = Some((i, job.pace.clone(), total, Instant::now()));
                    // (An unmount just before: stopped at once.)
                    if self.stop.load(Ordering::SeqCst) {
                        job.pace.stop.store(true, Ordering::SeqCst);
                    }
                    job
                }
                None => {
                    // Moved by a rename instead (a busy layer, retried later).
                    self.arrived(i);
                    return Ok(false);
                }
            }
        };
        self.set_result(i, State::Copying, None);
        self.write_status();
        let result = self.copy_and_switch(i, &job);
        *self.copying.lock().expect("never poisoned") = None;
        match result {
            Ok(aside) => {
                // The view serves the copy: the source, set aside, goes.
                let left = match aside {
                    true => job.drop_set_aside().err().map(|e| {
                        let path = format!(
                            "{}/{}/{}",
                            it.legacy_parent_dir(),
                            escape_os(&it.name),
                            escape_os(&sys::temp_name(std::ffi::OsStr::new(it.legacy_leaf())))
                        );
                        (path, format!("{e}; the next run removes it"))
                    }),
                    false => Some((
                        it.legacy_path(),
                        "left in place after its copy switched (it could not be set aside); the next run checks \
                         it against the copy and removes it"
                            .into(),
                    )),
                };
                if let Some((path, reason)) = left {
                    log::warn!("{path}: {reason}");
                    let mut notes = self.notes.lock().expect("never poisoned");
                    notes.push(crate::plan::Note { path, reason });
                }
                Ok(true)
            }
            Err(e) => {
                job.discard();
                Err(e)
            }
        }
    }

    /// The copy of layer `i` to another file system, while the view keeps
    /// serving (and changing) the source: the full copy; passes that copy
    /// again what changed meanwhile ([`crate::resync`]); a check of every
    /// entry not changed since against its source; then, with changes to
    /// the layer (and lookups into it) paused, a last pass that copies and
    /// checks what changed since, the copy made durable and put in place,
    /// every node and open file of the layer switched to its copy (same
    /// node ids: the kernel sees no change), and the source set aside
    /// (`true`; `false`: it could not be, and stays where it was).
    fn copy_and_switch(&self, i: usize, job: &crate::migrate::CopyJob) -> io::Result<bool> {
        use crate::resync::{self, Pass};
        let it = &self.transform.plan.items[i];
        let none = std::collections::HashSet::new();
        let mut stamp = resync::stamp();
        job.run()?;
        // Catch up with the changes made meanwhile, outside any pause.
        for n in 1..=3 {
            let next = resync::stamp();
            let t = Instant::now();
            let pass = job.resync(Pass::new(stamp.since(), false, &none, &job.pace))?;
            log::debug!(
                "{}: pass {n} copied {} again in {:.3} s",
                it.legacy_path(),
                crate::units::count(pass.changed as usize, "entry"),
                t.elapsed().as_secs_f64()
            );
            stamp = next;
            if pass.changed == 0 {
                break;
            }
        }
        let t = Instant::now();
        let checked = job
            .compare_unchanged(stamp.since())
            .map_err(|e| other(format!("checking the copy of {}: {e}", it.legacy_path())))?;
        log::debug!(
            "{}: the copy's unchanged entries checked in {:.3} s",
            it.legacy_path(),
            t.elapsed().as_secs_f64()
        );
        if let Some(d) = checked {
            return Err(other(format!(
                "the copy of {} differs from its source ({d}); the copy is removed, the source kept",
                it.legacy_path()
            )));
        }
        if !self.switch_delay.is_zero() {
            log::info!(
                "{} caught up with its copy: switching in {} ms (GRAPH2AUFS_SWITCH_DELAY_MS)",
                it.legacy_path(),
                self.switch_delay.as_millis()
            );
            std::thread::sleep(self.switch_delay);
        }
        if self.stop.load(Ordering::SeqCst) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "the view is going"));
        }
        let _changes = self.pauses[i % PAUSES].write().expect("never poisoned");
        let _lookups = self.switch.write().expect("never poisoned");
        let mut engine = self.engine.lock().expect("never poisoned");
        let t = Instant::now();
        let nodes = self.table.layer_nodes(i);
        // (Every file of a layer to be copied opens without passthrough: an
        // open with it would write where the switch cannot follow.)
        let passing = self.files.passthrough_opens(nodes.iter().map(|(n, _)| n.id));
        if passing > 0 {
            return Err(other(format!(
                "{passing} file(s) of {} are open with kernel passthrough: the copy is removed, the source kept",
                it.legacy_path()
            )));
        }
        let want = nodes
            .iter()
            .filter_map(|(_, k)| match k {
                Key::Real(dev, ino, _) => Some((*dev, *ino)),
                Key::Child(..) => None,
            })
            .collect();
        // (Never throttled: changes to the layer wait for it.)
        let unthrottled = crate::copy::Pace::default();
        let pass = job.resync(Pass::new(stamp.since(), true, &want, &unthrottled))?;
        let top = sys::lstat(job.parent(), it.legacy_leaf())?
            .map(|st| (st.st_dev, st.st_ino))
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
        // Everything the view switches to is ready before the copy goes in
        // place; nothing fails after.
        let (nodes, files) = self.prepare_switch(&engine, &nodes, &pass.found, (top, job.tmp_name()))?;
        let noted = engine.put_copy_in_place(it, job)?;
        self.info.lock().expect("never poisoned").extend(noted);
        self.arrived(i);
        let (rebound, reopened) = (nodes.len(), files.len());
        for (node, backing, key) in nodes {
            node.rebind(backing);
            self.table.rekey(node.id, key);
            self.invalidate(node.id, -1);
        }
        self.files.switch(files);
        // (Failing, the source stays where it was: the next run checks it
        // against its copy before removing it.)
        let aside = job.set_aside().inspect_err(|e| log::warn!("{e}")).is_ok();
        log::info!(
            "{} switched to its copy in {:.1} ms ({} copied again, {} and {} switched)",
            it.legacy_path(),
            t.elapsed().as_secs_f64() * 1e3,
            crate::units::count(pass.changed as usize, "entry"),
            crate::units::count(rebound, "node"),
            crate::units::count(reopened, "open file")
        );
        Ok(aside)
    }

    /// What the nodes of a layer are served from once it switches to its
    /// copy (`found`: the copies, by source inode; `top`: the source inode
    /// of the layer's directory, to be at `aufs/diff/<id>`), with the keys
    /// of the copies' inodes; and every file open on them, opened again in
    /// the copy. A node without a copy (an entry removed while the kernel
    /// kept it: an open, unlinked file) keeps its source inode, which lives
    /// on while it is open (and whose changes are not the layer's).
    #[allow(clippy::type_complexity)]
    fn prepare_switch(
        &self,
        engine: &Engine<'static>,
        nodes: &[(Arc<super::node::Node>, Key)],
        found: &crate::resync::Found,
        (top, top_name): ((u64, u64), &std::ffi::OsStr),
    ) -> io::Result<(Vec<(Arc<super::node::Node>, Backing, Key)>, super::files::Reopened)> {
        use crate::dirref::DirRef;
        let diff = Arc::new(engine.diff_fd()?);
        let mut dirs: std::collections::HashMap<*const OwnedFd, Arc<DirRef>> = Default::default();
        let mut out = Vec::new();
        for (node, key) in nodes {
            // (A node held by a descriptor of its own, its name gone, whose
            // inode has another name in the layer switches to that.)
            // (A node of a file gone whose inode number a new file of the
            // layer took is not that file's: it keeps its source inode.)
            let Key::Real(dev, ino, born) = key else { continue };
            let (dir, name) = if (*dev, *ino) == top {
                (diff.clone(), top_name.to_os_string())
            } else {
                match found.get(&(*dev, *ino)) {
                    Some((dir, name, b)) if b == born => (dir.clone(), name.clone()),
                    other => {
                        log::debug!(
                            "switch: node {} keeps its source inode {ino} (born {born:?}): {}",
                            node.id,
                            match other {
                                Some((_, name, b)) => format!("its copy {name:?} is of an inode born {b:?}"),
                                None => "no name of it in the layer".into(),
                            }
                        );
                        continue;
                    }
                }
            };
            let (ft, new_key) = super::backing::identity(&dir, &name)?;
            let backing = if ft == rustix::fs::FileType::Directory {
                let role = match &*node.backing() {
                    Backing::Real { role, .. } => *role,
                    _ => super::transform::Role::Plain,
                };
                Backing::Real {
                    dir: DirRef::new(super::backing::open_path(&dir, &name)?),
                    role,
                }
            } else {
                let Key::Real(_, new_ino, _) = new_key else {
                    unreachable!("identity gives real keys")
                };
                let parent = match dirs.get(&Arc::as_ptr(&dir)) {
                    Some(d) => d.clone(),
                    None => {
                        let d = DirRef::new(dir.try_clone()?);
                        dirs.insert(Arc::as_ptr(&dir), d.clone());
                        d
                    }
                };
                Backing::Entry {
                    dir: parent,
                    name: name.into_boxed_os_str(),
                    ino: new_ino,
                }
            };
            out.push((node.clone(), backing, new_key));
        }
        let by_id: std::collections::HashMap<u64, &Backing> = out.iter().map(|(n, b, _)| (n.id, b)).collect();
        let files = self
            .files
            .reopen(|id, flags| by_id.get(&id).map(|b| super::backing::open_backing(b, flags)))?;
        Ok((out, files))
    }

    /// `repositories` becomes `repositories-aufs` now.
    pub fn repositories(&self) -> io::Result<()> {
        let mut engine = self.engine.lock().expect("the engine lock is never poisoned");
        if self.transform.repositories_done() {
            return Ok(());
        }
        engine
            .rename_repositories(&self.transform.plan)
            .map_err(io::Error::from)?;
        self.transform.set_repositories_done();
        // The node of `repositories` now lives under its new name.
        if let Ok(root) = self.root.fd().try_clone_to_owned() {
            let name = std::ffi::OsStr::new("repositories-aufs");
            if let Ok((_, key)) = super::backing::identity(&root, name) {
                if let Some(node) = self.table.peek(&key) {
                    let ino = match &*node.backing() {
                        Backing::Entry { ino, .. } => Some(*ino),
                        _ => None,
                    };
                    if let Some(ino) = ino {
                        node.rebind(Backing::Entry {
                            dir: crate::dirref::DirRef::new(root),
                            name: name.into(),
                            ino,
                        });
                        self.invalidate(node.id, -1);
                    }
                }
            }
        }
        self.invalidate(super::node::ROOT_ID, -1);
        Ok(())
    }

    /// The background migration: every pending item, in batches (one
    /// record write and one sync each), then `repositories`, then the busy
    /// items again and again with a growing pause until they move or the
    /// view is unmounted.
    pub fn run(self: Arc<Self>) {
        *self.running.lock().expect("never poisoned") = true;
        // (Also when it panics: the view does not wait for it then.)
        struct Ended<'a>(&'a Migrator);
        impl Drop for Ended<'_> {
            fn drop(&mut self) {
                *self.0.running.lock().expect("never poisoned") = false;
                self.0.ended.notify_all();
            }
        }
        let _ended = Ended(&self);
        if self.stop.load(Ordering::SeqCst) {
            return;
        }
        let t0 = Instant::now();
        let plan = &self.transform.plan;
        let todo: Vec<usize> = (0..plan.items.len())
            .filter(|&i| !plan.items[i].blocked() && self.transform.progress(i) < Progress::Done)
            .collect();
        log::info!(
            "background migration of {} started",
            crate::units::count(todo.len(), "item")
        );
        // While a layer is copied, `status` shows its progress every second.
        let ticker = Arc::clone(&self);
        std::thread::spawn(move || {
            while !ticker.stop.load(Ordering::SeqCst) && Arc::strong_count(&ticker) > 1 {
                std::thread::sleep(Duration::from_secs(1));
                if ticker.copying.lock().expect("never poisoned").is_some() {
                    ticker.write_status();
                }
            }
        });
        let bar = crate::progress::bar(self.progress_bar, todo.len() as u64);
        let mut failed = Vec::new();
        let mut last_status = Instant::now();
        for batch in todo.chunks(BATCH) {
            {
                let mut engine = self.engine.lock().expect("never poisoned");
                if let Err(e) = engine.claim(plan, batch) {
                    log::error!("background migration stopped: {e}");
                    return self.write_status();
                }
            }
            for &i in batch {
                if self.stop.load(Ordering::SeqCst) {
                    return self.finish_batch();
                }
                if self.transform.progress(i) != Progress::Pending {
                    continue;
                }
                if !self.item_delay.is_zero() {
                    std::thread::sleep(self.item_delay);
                }
                match self.copy_live(i) {
                    Ok(_) => {}
                    // Stopped by the unmount: the copy is removed, the item
                    // left pending (the next mount copies it again).
                    Err(e) if self.stop.load(Ordering::SeqCst) => {
                        log::info!(
                            "the copy of {} stopped ({e}): the view is going; the item stays pending",
                            plan.items[i].legacy_path()
                        );
                        self.set_result(i, State::Pending, None);
                        return self.finish_batch();
                    }
                    Err(e) => {
                        failed.push(i);
                        let mut engine = self.engine.lock().expect("never poisoned");
                        self.fail(&mut engine, i, e.to_string());
                        continue;
                    }
                }
                let mut engine = self.engine.lock().expect("never poisoned");
                let _ = self.migrate_locked(&mut engine, i, &mut failed);
                drop(engine);
                bar.inc(1);
                if last_status.elapsed() > Duration::from_millis(500) {
                    self.write_status();
                    last_status = Instant::now();
                }
            }
            self.finish_batch();
        }
        bar.finish_and_clear();
        if let Err(e) = self.repositories() {
            log::error!("renaming repositories: {e}");
        }
        self.finish_batch();
        let counts = self.counts();
        log::info!(
            "background migration finished in {:.3} s: {}",
            t0.elapsed().as_secs_f64(),
            counts
        );
        self.retry_busy();
    }

    fn counts(&self) -> String {
        let r = self.results.lock().expect("never poisoned");
        let mut by: std::collections::BTreeMap<&str, usize> = Default::default();
        for x in r.iter() {
            *by.entry(x.state.as_str()).or_default() += 1;
        }
        by.iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn finish_batch(&self) {
        {
            let mut engine = self.engine.lock().expect("never poisoned");
            if let Err(e) = engine.save_failures().and_then(|_| engine.sync()) {
                log::error!("{e}");
            }
        }
        self.write_status();
    }

    /// Items left registered with a symlink fallback (busy): tried again
    /// with a growing pause, until they move or the view goes.
    fn retry_busy(&self) {
        let mut pause = Duration::from_secs(1);
        loop {
            let busy: Vec<usize> = (0..self.transform.plan.items.len())
                .filter(|&i| self.transform.progress(i) == Progress::Registered)
                .collect();
            if busy.is_empty() {
                return self.log_end();
            }
            let until = Instant::now() + pause;
            while Instant::now() < until {
                if self.stop.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            for i in busy {
                let mut engine = self.engine.lock().expect("never poisoned");
                let _ = self.migrate_locked(&mut engine, i, &mut Vec::new());
            }
            self.finish_batch();
            pause = (pause * 2).min(Duration::from_secs(60));
        }
    }

    /// Says how the background migration ended: every item migrated (the
    /// view is pure passthrough), or which are not and why.
    fn log_end(&self) {
        let plan = &self.transform.plan;
        let results = self.results.lock().expect("never poisoned").clone();
        let left: Vec<usize> = (0..plan.items.len())
            .filter(|&i| !plan.items[i].blocked() && self.transform.progress(i) < Progress::Done)
            .filter(|&i| results[i].state != State::Removed)
            .collect();
        let repositories =
            plan.repositories == crate::plan::Repositories::Rename && !self.transform.repositories_done();
        if left.is_empty() && !repositories {
            return log::info!(
                "every item is migrated: the view is now pure passthrough (unmounting leaves the native layout)"
            );
        }
        let mut by: std::collections::BTreeMap<&str, usize> = Default::default();
        for &i in &left {
            *by.entry(results[i].state.as_str()).or_default() += 1;
        }
        let counts: Vec<String> = by.iter().map(|(s, n)| format!("{n} {s}")).collect();
        const SHOWN: usize = 5;
        let mut which: Vec<String> = left
            .iter()
            .take(SHOWN)
            .map(|&i| {
                let it = &plan.items[i];
                let why = results[i].reason.as_deref().unwrap_or("not migrated yet");
                format!("{} {}: {why}", it.kind, escape_os(&it.name))
            })
            .collect();
        if left.len() > SHOWN {
            which.push(format!("and {} more", left.len() - SHOWN));
        }
        if repositories {
            which.push("repositories is not renamed to repositories-aufs".into());
        }
        log::warn!(
            "the background migration is over, but not every item is migrated ({}): {}; the view goes on serving \
             them from where they are (`graph2aufs status` says why; after unmounting, `graph2aufs migrate` tries \
             them again)",
            if counts.is_empty() {
                "repositories".to_string()
            } else {
                counts.join(", ")
            },
            which.join("; ")
        );
    }

    /// The daemon removed item `i` through the view (its `aufs/diff/<id>`
    /// is gone): `status` says so from now on.
    pub fn removed_by_daemon(&self, i: usize) {
        let it = &self.transform.plan.items[i];
        log::info!("{} {} was removed by the daemon", it.kind, escape_os(&it.name));
        self.set_result(
            i,
            State::Removed,
            Some(format!(
                "migrated, then removed by the daemon (aufs/diff/{} is gone)",
                escape_os(&it.name)
            )),
        );
        self.write_status();
    }

    /// The live view's part of the status document: where it is mounted,
    /// by which process, since when, and whether its migration finished.
    fn live_state(&self, finished: bool) -> LiveState {
        LiveState {
            mountpoint: self.mountpoint.clone(),
            pid: std::process::id(),
            started: self
                .started
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            updated: SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            finished,
            transport: self.transport.get().map_or_else(String::new, |t| t.to_string()),
        }
    }

    /// Writes the live progress where `status` reads it
    /// (`.graph2aufs/status.json`).
    pub fn write_status(&self) {
        let results = self.results.lock().expect("never poisoned").clone();
        let mut doc = Document::new(self.root.path(), &self.transform.plan, Some(&results));
        // Where each item's data is now (the plan says where it was).
        for (i, item) in doc.items.iter_mut().enumerate() {
            let (source, action) = match (results[i].state, self.transform.progress(i)) {
                (State::Removed, _) => (Source::None, "none"),
                (_, Progress::Done) => (Source::Native, "none"),
                // Registered through a symlink to its data (busy, or being
                // copied to another file system).
                (_, Progress::Registered) => (Source::Fallback, "replace-symlink"),
                (_, Progress::Pending) => continue,
            };
            item.source = source;
            item.action = action.into();
            // Migrated by this view: graph2aufs's record says so now.
            item.ours |= results[i].state != State::Removed;
        }
        if self.transform.repositories_done() {
            doc.repositories = crate::plan::Repositories::Done;
        }
        let done = results
            .iter()
            .all(|r| r.state.settled() || r.state == State::Quarantined);
        doc.live = Some(self.live_state(
            done && (self.transform.repositories_done()
                || self.transform.plan.repositories != crate::plan::Repositories::Rename),
        ));
        if let Some((i, pace, total, t0)) = &*self.copying.lock().expect("never poisoned") {
            let done = pace.done.load(Ordering::Relaxed);
            let rate = (done as f64 / t0.elapsed().as_secs_f64().max(0.001)) as u64;
            // (Data copied again, changed meanwhile, adds to the total.)
            let total = &(*total).max(done);
            doc.items[*i].copy = Some(crate::report::CopyProgress {
                done_bytes: done,
                total_bytes: *total,
                bytes_per_s: rate,
                eta_s: crate::progress::eta(t0.elapsed(), done, *total).map(|d| d.as_secs()),
            });
        }
        doc.notes
            .extend(self.notes.lock().expect("never poisoned").iter().cloned());
        for n in self.info.lock().expect("never poisoned").iter() {
            if !doc.info.iter().any(|m| (&m.path, &m.reason) == (&n.path, &n.reason)) {
                doc.info.push(n.clone());
            }
        }
        self.store(&doc);
    }

    fn store(&self, doc: &Document) {
        let bytes = serde_json::to_vec(doc).expect("reports always serialize");
        let own: io::Result<OwnedFd> = sys::open_dir_required(self.root.fd(), crate::root::OWN_DIR);
        match own.and_then(|d| sys::write_atomic(&d, STATUS_FILE, &bytes, 0o644, false).map(|()| d)) {
            // The status (and the record) were replaced behind the kernel:
            // it drops its entries of them (never mount points).
            Ok(d) => self.forget_replaced(&d, &[STATUS_FILE, RECORD_FILE]),
            Err(e) => log::warn!("writing the live status: {e}"),
        }
    }

    fn forget_replaced(&self, dir: &OwnedFd, names: &[&str]) {
        let Ok((_, k)) = super::backing::identity(dir, std::ffi::OsStr::new("")) else {
            return;
        };
        let (Some(parent), Some(tx)) = (self.table.peek(&k), &*self.invalidate.lock().expect("never poisoned")) else {
            return;
        };
        for name in names {
            let _ = tx.send(Inval::Entry(parent.id, (*name).into()));
        }
    }

    /// The view is going: once the background migration has stopped (a
    /// copy under way removed; [`STOP_GRACE`] at most), the status says so.
    pub fn unmounted(&self) {
        let running = self.running.lock().expect("never poisoned");
        let (running, waited) = self
            .ended
            .wait_timeout_while(running, STOP_GRACE, |r| *r)
            .expect("never poisoned");
        if waited.timed_out() {
            log::warn!(
                "the background migration did not stop within {} s of the unmount",
                STOP_GRACE.as_secs()
            );
        }
        drop(running);
        let own = sys::open_dir_required(self.root.fd(), crate::root::OWN_DIR);
        if let Err(e) = own.and_then(|d| sys::unlink(&d, STATUS_FILE)) {
            log::debug!("removing the live status: {e}");
        }
        let mut engine = self.engine.lock().expect("never poisoned");
        if let Err(e) = engine.save_failures() {
            log::error!("{e}");
        }
        let _ = engine.sync();
    }
}
