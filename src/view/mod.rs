//! The view: ROOT as it will look after migration, served over FUSE.
//! `mount` validates its arguments, plans, mounts, reports when the view is
//! usable, and unmounts cleanly on SIGINT/SIGTERM or an external umount. A
//! read-write `mount` of a ROOT with nothing left to migrate does not mount
//! (the view has retired). `--daemon` and logs: [`daemon`].

mod attr;
mod backing;
mod creds;
pub mod daemon;
mod files;
pub mod fs;
pub mod live;
mod lookup;
pub mod node;
mod restrictions;
pub mod transform;
mod write;

use crate::error::{Error, Result, Step};
use crate::item;
use crate::legacy::{self, Dirs};
use crate::migrate::Engine;
use crate::plan;
use crate::record::Record;
use crate::root::{Root, View};
use fuser::{Config, MountOption, Session, SessionACL};
use rustix::fs::{self as rfs, Mode, OFlags};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

pub struct MountOptions {
    pub root: PathBuf,
    pub mountpoint: Option<PathBuf>,
    pub read_only: bool,
    pub daemon: bool,
    pub allow_other: bool,
    pub threads: Option<usize>,
    /// Internal: descriptor on which a `--daemon` parent waits for "ready".
    pub ready_fd: Option<i32>,
    /// Serve file data through graph2aufs even where kernel passthrough works.
    pub no_passthrough: bool,
    /// Bytes per second at most for copies to another file system (0: no limit).
    pub copy_rate: u64,
    /// The native `aufs/` on another file system (`ROOT/aufs` links to it).
    pub aufs_dir: Option<PathBuf>,
    /// Print a JSON document once the view is usable ([`crate::report::MountReport`]).
    pub json: bool,
    /// Where the server's logs go (appended to).
    pub log_file: Option<PathBuf>,
    /// How FUSE requests reach the view (`--transport`).
    pub transport: crate::cli::Transport,
}

fn check_fuse() -> Result<()> {
    match rfs::open("/dev/fuse", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()) {
        Ok(_) => Ok(()),
        Err(rustix::io::Errno::NOENT) => Err(Error::Env("no /dev/fuse on this machine (load the fuse module)".into())),
        Err(rustix::io::Errno::ACCESS) | Err(rustix::io::Errno::PERM) => Err(Error::Env(
            "/dev/fuse: permission denied (run graph2aufs as root)".into(),
        )),
        Err(e) => Err(Error::Env(format!("/dev/fuse cannot be opened: {e}"))),
    }
}

fn check_mountpoint(root: &Root, mp: &Path) -> Result<PathBuf> {
    let canon = std::fs::canonicalize(mp).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::Usage(format!("MOUNTPOINT {} does not exist", mp.display())),
        _ => Error::io(format!("MOUNTPOINT {}", mp.display()), e),
    })?;
    if canon != root.path() && canon.starts_with(root.path()) {
        return Err(Error::Usage(format!(
            "MOUNTPOINT {} is inside ROOT {}: the view would contain itself (mount it outside ROOT, or over ROOT itself)",
            mp.display(),
            root.path().display()
        )));
    }
    if View::all().iter().any(|v| v.mountpoint == canon) {
        return Err(Error::Env(format!(
            "MOUNTPOINT {} already has a graph2aufs view mounted (umount {} first)",
            mp.display(),
            canon.display()
        )));
    }
    if canon != root.path() {
        if !canon.is_dir() {
            return Err(Error::Usage(format!("MOUNTPOINT {} is not a directory", mp.display())));
        }
        let mut entries = std::fs::read_dir(&canon).step(|| format!("reading MOUNTPOINT {}", mp.display()))?;
        if entries.next().is_some() {
            return Err(Error::Usage(format!(
                "MOUNTPOINT {} is not empty (only ROOT itself may be covered by the view)",
                mp.display()
            )));
        }
    }
    Ok(canon)
}

/// Raises the descriptor limit as far as allowed, and sizes the pool of
/// directory descriptors from it (see [`crate::dirref`]).
fn raise_nofile_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let max = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1 << 20);
    let cur = getrlimit(Resource::Nofile);
    let want = Rlimit {
        current: Some(max),
        maximum: Some(max),
    };
    if setrlimit(Resource::Nofile, want).is_err() {
        // Without privilege: up to the hard limit.
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: cur.maximum,
                maximum: cur.maximum,
            },
        );
    }
    let limit = getrlimit(Resource::Nofile).current.unwrap_or(1024);
    // Half for directories the kernel keeps (more are reopened from their
    // file handles), half for open files and everything else.
    crate::dirref::set_budget((limit / 2).min(1 << 16) as usize);
    log::debug!("descriptor limit: {limit}");
}

/// `graph2aufs mount`.
pub fn mount(opts: MountOptions) -> Result<u8> {
    if opts.threads == Some(0) {
        return Err(Error::Usage("--threads 0: the view needs at least one thread".into()));
    }
    check_fuse()?;
    if opts.transport == crate::cli::Transport::Uring && !fuser::uring_enabled() {
        return Err(Error::Env(
            "--transport uring: this kernel does not offer FUSE over io_uring (it needs Linux 6.14 or later \
             built with CONFIG_FUSE_IO_URING, enabled by `echo Y > /sys/module/fuse/parameters/enable_uring`)"
                .into(),
        ));
    }
    if opts.daemon && opts.ready_fd.is_none() {
        return daemon::run_detached(&opts);
    }
    if let Some(p) = &opts.log_file {
        daemon::log_to_file(p)?;
    }
    // A daemon's server tells its parent whether the view became usable.
    let ready = std::sync::Arc::new(daemon::Ready::new(opts.ready_fd));
    let r = serve(opts, ready.clone());
    if let Err(e) = &r {
        ready.failed(e);
    }
    r
}

/// Mounts and serves the view until it is unmounted; `ready` is told once
/// it is usable.
fn serve(opts: MountOptions, ready: std::sync::Arc<daemon::Ready>) -> Result<u8> {
    raise_nofile_limit();
    for p in [Some(&opts.root), opts.mountpoint.as_ref()].into_iter().flatten() {
        recover_dead_view(p)?;
    }
    let root = open_root(&opts)?;
    let mountpoint = check_mountpoint(&root, opts.mountpoint.as_deref().unwrap_or(root.path()))?;
    let mounted = crate::report::MountReport::new(root.path(), &mountpoint, std::process::id(), opts.read_only);
    let t0 = std::time::Instant::now();
    let prepared = if opts.read_only {
        prepare_read_only(&root, &opts)?
    } else {
        match prepare_read_write(root, &opts, &mountpoint, &ready)? {
            Some(p) => p,
            None => return Ok(0),
        }
    };
    let Prepared {
        view,
        counts,
        migrator,
        lock: _lock,
    } = prepared;
    let (migrator, first_status) = match migrator {
        Some((m, s)) => (Some(m), Some(s)),
        None => (None, None),
    };
    log::debug!("view prepared in {:?}", t0.elapsed());
    let restricted = restrictions::Restrictions::of(
        &opts.root,
        opts.aufs_dir.as_deref(),
        view.served_dirs().step(|| "the view's directories".into())?,
    )?;
    let config = session_config(&opts, &restricted);
    let session = Session::new(view, &mountpoint, &config).map_err(|e| match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => Error::Env(format!(
            "mounting on {}: permission denied (run as root)",
            mountpoint.display()
        )),
        _ => Error::io(format!("mounting on {}", mountpoint.display()), e),
    })?;
    let transport = match session.transport() {
        fuser::Transport::Uring => "uring",
        _ => "classic",
    };
    log::info!(
        "FUSE transport: {transport}{}",
        if transport == "uring" {
            " (FUSE over io_uring)"
        } else {
            " (/dev/fuse)"
        }
    );
    if let Some(m) = &migrator {
        m.set_notifier(session.notifier());
        let _ = m.transport.set(transport);
    }
    let handle = unmount_on_signals(&mountpoint)?;
    let desc = format!(
        "{} ({} quarantined)",
        crate::units::count(counts.values().sum::<usize>(), "item"),
        counts.get(&item::State::Quarantined).copied().unwrap_or(0)
    );
    let usable = Usable {
        mountpoint: mountpoint.clone(),
        desc,
        read_only: opts.read_only,
        json: opts.json,
        mounted,
        ready,
        background: migrator.clone().zip(first_status),
    };
    std::thread::spawn(move || usable.announce());
    let result = session.run();
    handle.close();
    if let Some(m) = &migrator {
        m.stop();
        m.unmounted();
    }
    result.step(|| format!("serving the view at {}", mountpoint.display()))?;
    log::info!("unmounted {}", mountpoint.display());
    Ok(0)
}

/// ROOT as the view serves it: with the `--aufs-dir`, checked for the mode
/// asked; a read-only view reads through a private read-only, `noatime`
/// copy of ROOT's mount where it can.
fn open_root(opts: &MountOptions) -> Result<Root> {
    let mut root = Root::open(&opts.root)?;
    if let Some(dir) = &opts.aufs_dir {
        root = root.with_aufs_dir(dir)?;
    }
    Ok(if opts.read_only {
        root.refuse_for_read_only_view()?;
        // Serve the read-only view from a private read-only, noatime copy
        // of ROOT's mount: nothing can be written through it, no access
        // time changes (symlinks included), and kernel passthrough is safe.
        let aufs = root
            .aufs_dir()
            .map(|(_, fd)| crate::sys::mount::read_only_noatime_clone(fd));
        match (crate::sys::mount::read_only_noatime_clone(root.fd()), aufs.transpose()) {
            (Ok(fd), Ok(aufs)) => root.through(fd, aufs),
            (Err(e), _) | (_, Err(e)) => {
                log::info!(
                    "no private read-only copy of ROOT's mount ({e}): reads use O_NOATIME, \
                     symlink targets read through the view update their access times"
                );
                root
            }
        }
    } else {
        root.refuse_if_viewed("a read-write mount", true)?;
        root
    })
}

/// A view ready to mount: the view, the items by state, the migrator of a
/// read-write view (with the thread writing its first status), and ROOT's
/// lock, held while it serves.
struct Prepared {
    view: fs::View,
    counts: std::collections::HashMap<item::State, usize>,
    migrator: Option<(std::sync::Arc<live::Migrator>, std::thread::JoinHandle<()>)>,
    lock: Option<crate::root::Lock>,
}

/// The read-only view: ROOT scanned and planned, nothing changed.
fn prepare_read_only(root: &Root, opts: &MountOptions) -> Result<Prepared> {
    let record = Record::load(root)?;
    let scan = legacy::scan(root).step(|| format!("reading {}", root.path().display()))?;
    let plan = plan::plan(&scan, &record);
    let counts = plan.counts();
    let transform = transform::Transform::new(&scan, plan, true);
    let dirs = Dirs::open(root).step(|| format!("opening the directories of {}", root.path().display()))?;
    let root_fd = root_fd(root)?;
    let passthrough = !opts.no_passthrough && fs::atime_safe(&root_fd);
    let mut view = fs::View::new(root_fd, dirs, std::sync::Arc::new(transform), passthrough)
        .step(|| format!("preparing the view of {}", root.path().display()))?;
    view.aufs_dir = linked_aufs(root)?;
    Ok(Prepared {
        view,
        counts,
        migrator: None,
        lock: None,
    })
}

/// The read-write view: ROOT locked, prepared as `migrate` prepares it, and
/// its migrator; `None` where ROOT is retired (said, nothing to serve).
fn prepare_read_write(
    root: Root,
    opts: &MountOptions,
    mountpoint: &Path,
    ready: &daemon::Ready,
) -> Result<Option<Prepared>> {
    let root: &'static Root = Box::leak(Box::new(root));
    let lock = root.lock()?;
    let (mut engine, scan, plan) = prepare_live(root)?;
    if let Some(msg) = retired(root, &engine, &plan) {
        log::info!("{msg}");
        if !ready.done(&msg) {
            crate::report::MountReport::retired(root.path(), mountpoint, &msg).print(opts.json, false);
        }
        return Ok(None);
    }
    engine.pace = std::sync::Arc::new(crate::copy::Pace::new(opts.copy_rate));
    let counts = plan.counts();
    let transform = std::sync::Arc::new(transform::Transform::new(&scan, plan, false));
    let dirs = Dirs::open(root).step(|| format!("opening the directories of {}", root.path().display()))?;
    let mut view = fs::View::new(root_fd(root)?, dirs, transform.clone(), !opts.no_passthrough)
        .step(|| format!("preparing the view of {}", root.path().display()))?;
    view.aufs_dir = linked_aufs(root)?;
    let mut m = live::Migrator::new(
        root,
        engine,
        transform,
        view.table.clone(),
        view.files.clone(),
        mountpoint,
    );
    m.progress_bar = !opts.daemon && opts.ready_fd.is_none();
    let m = std::sync::Arc::new(m);
    view.live = Some(m.clone());
    // Written while the view mounts (`status` waits for it).
    let first_status = {
        let m = m.clone();
        std::thread::spawn(move || m.write_status())
    };
    // Modes arrive with the caller's umask applied by the kernel.
    rustix::process::umask(Mode::empty());
    Ok(Some(Prepared {
        view,
        counts,
        migrator: Some((m, first_status)),
        lock: Some(lock),
    }))
}

/// The mount's options, its access and its threads.
fn session_config(opts: &MountOptions, restricted: &restrictions::Restrictions) -> Config {
    let root_path = opts.root.clone();
    let mut config = Config::default();
    config.mount_options = vec![
        // The source names ROOT, so that commands on ROOT find the view
        // wherever it is mounted (see `root::View`).
        MountOption::FSName(format!(
            "graph2aufs:{}",
            std::fs::canonicalize(&root_path).unwrap_or(root_path).display()
        )),
        MountOption::Subtype("graph2aufs".into()),
        MountOption::DefaultPermissions,
    ];
    if opts.read_only {
        config.mount_options.extend([MountOption::RO, MountOption::NoAtime]);
    }
    // Containers need device nodes and setuid binaries from their layers,
    // where ROOT's mounts allow them (see `restrictions`); the read-only
    // view needs neither.
    let (dev, suid) = (
        !opts.read_only && restricted.nodev.is_empty(),
        !opts.read_only && restricted.nosuid.is_empty(),
    );
    config.mount_options.extend([
        if dev { MountOption::Dev } else { MountOption::NoDev },
        if suid { MountOption::Suid } else { MountOption::NoSuid },
    ]);
    if !restricted.noexec.is_empty() {
        config.mount_options.push(MountOption::NoExec);
    }
    restricted.log();
    config.acl = if opts.allow_other || !opts.read_only {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    // Two per CPU (over io_uring: two per CPU's queue). Measured on 2 CPUs
    // (1, 2, 4 threads, both transports): one request at a time is as fast
    // with any of them, concurrent writes with fsyncs (8 writers) are
    // fastest with 4; see scripts/bench THREAD_VARIANTS.
    config.n_threads = Some(
        opts.threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get() * 2)),
    );
    config.transport = match opts.transport {
        crate::cli::Transport::Auto => fuser::Transport::Auto,
        crate::cli::Transport::Uring => fuser::Transport::Uring,
        crate::cli::Transport::Classic => fuser::Transport::Classic,
    };
    config
}

/// SIGINT and SIGTERM unmount the view; the handle stops listening.
/// `statfs`'s `f_type` of a FUSE mount.
const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;

/// How long a signal's unmount tries again while the view is busy.
const SIGNAL_UNMOUNT_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

fn unmount_on_signals(mountpoint: &std::path::Path) -> Result<signal_hook::iterator::Handle> {
    let signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
        .step(|| "installing signal handlers".into())?;
    let handle = signals.handle();
    let mut signals = signals;
    let mountpoint = mountpoint.to_path_buf();
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            log::info!("signal {sig}: unmounting");
            // As `umount MOUNTPOINT` would (the session ends when the
            // kernel lets go). A lookup under way in the view (the first
            // stat that waits for the view to answer, a client's path
            // walk) holds the mount for a moment: EBUSY then is not the
            // caller's doing, so try again for a while; a view still busy
            // after that (files open in it) stays mounted, as `umount`
            // would leave it.
            let deadline = std::time::Instant::now() + SIGNAL_UNMOUNT_RETRY;
            loop {
                // Only the view: once it is gone (unmounted by someone
                // else meanwhile), the path shows what it covered.
                if !rfs::statfs(&mountpoint).is_ok_and(|st| st.f_type == FUSE_SUPER_MAGIC) {
                    break log::debug!("{} is no longer the view: nothing to unmount", mountpoint.display());
                }
                match rustix::mount::unmount(&mountpoint, rustix::mount::UnmountFlags::empty()) {
                    Err(rustix::io::Errno::BUSY) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(std::time::Duration::from_millis(20))
                    }
                    Err(e) => break log::error!("unmounting {}: {e}", mountpoint.display()),
                    Ok(()) => break,
                }
            }
        }
    });
    Ok(handle)
}

/// What is said once the view answers, and the background migration it
/// then starts.
struct Usable {
    mountpoint: PathBuf,
    /// The items served, for the log.
    desc: String,
    read_only: bool,
    json: bool,
    mounted: crate::report::MountReport,
    ready: std::sync::Arc<daemon::Ready>,
    background: Option<(std::sync::Arc<live::Migrator>, std::thread::JoinHandle<()>)>,
}

impl Usable {
    /// Waits for the view to answer, says so, then runs the migration.
    fn announce(self) {
        let mode = if self.read_only {
            "read-only"
        } else {
            "read-write, migrating in the background"
        };
        let mp = &self.mountpoint;
        // The first stat waits for the kernel's INIT to be answered: from
        // then on the view is usable (if it is the view that answers, not
        // the directory under a mount that already ended).
        let answered = std::fs::metadata(mp).and_then(|_| {
            let st = rfs::statfs(mp)?;
            if st.f_type as i64 == FUSE_SUPER_MAGIC {
                Ok(())
            } else {
                Err(std::io::Error::other("the view is no longer mounted"))
            }
        });
        match answered {
            Ok(()) => {
                log::info!("view of {} mounted at {} ({mode})", self.desc, mp.display());
                if !self.ready.ready() {
                    self.mounted.print(self.json, false);
                }
                if let Some((m, first_status)) = self.background {
                    let _ = first_status.join();
                    m.run();
                }
            }
            Err(e) => {
                log::error!("the view at {} does not answer: {e}", mp.display());
                self.ready
                    .failed(&Error::io(format!("the view at {} does not answer", mp.display()), e));
            }
        }
    }
}

/// Before a read-write view is mounted: the migration engine opened (the
/// aufs directories exist, leftovers of a crash are gone), and the blocked
/// items quarantined (out of the daemon's way at once; usually few), then
/// ROOT read again as it now is.
fn prepare_live(root: &'static Root) -> Result<(Engine<'static>, legacy::Scan, plan::Plan)> {
    let (mut engine, scan, plan) = crate::migrate::prepare(root)?;
    let blocked = engine.to_quarantine(&plan);
    let set_aside = matches!(plan.repositories, plan::Repositories::SetAside(_));
    if blocked.is_empty() && !set_aside {
        return Ok((engine, scan, plan));
    }
    engine.claim(&plan, &blocked)?;
    for &i in &blocked {
        if let Err(e) = engine.quarantine(&plan, i) {
            log::error!("{}: could not be quarantined: {e}", plan.items[i].legacy_path());
        }
    }
    if set_aside {
        engine.rename_repositories(&plan)?;
    }
    engine.sync()?;
    let scan = legacy::scan(root).step(|| format!("reading {}", root.path().display()))?;
    let plan = plan::plan(&scan, &engine.record);
    Ok((engine, scan, plan))
}

/// A graph2aufs view at `path` whose server is gone (killed: every access
/// fails with ENOTCONN) is detached, which uncovers ROOT: the recovery
/// after a crash is simply to mount again.
fn recover_dead_view(path: &Path) -> Result<()> {
    // (A stat may be answered from the kernel's cache; statfs always asks
    // the server.)
    let Err(e) = rfs::statfs(path) else { return Ok(()) };
    if e != rustix::io::Errno::NOTCONN {
        return Ok(());
    }
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    if !View::all().iter().any(|v| v.mountpoint == abs) {
        return Err(Error::Env(format!(
            "{}: {e} (a dead FUSE mount that is not graph2aufs's: unmount it first)",
            path.display()
        )));
    }
    log::warn!(
        "{} is a dead graph2aufs view (its server is gone): detaching it",
        abs.display()
    );
    rustix::mount::unmount(&abs, rustix::mount::UnmountFlags::DETACH)
        .map_err(std::io::Error::from)
        .step(|| format!("detaching the dead view at {}", abs.display()))
}

/// The message of a read-write `mount` that does not mount because the
/// view has nothing left to do, if so: every item is registered, or
/// quarantined with its data out of the daemon's way (the view could do
/// nothing for it either), or removed by the daemon since its migration,
/// and `repositories` needs no rename. A `failed` or `fallback` item, or
/// one still to move, keeps the view.
fn retired(root: &Root, engine: &Engine, plan: &plan::Plan) -> Option<String> {
    let settled = |it: &item::Item| match it.state {
        item::State::Registered | item::State::Removed => true,
        item::State::Quarantined => {
            !it.legacy_present && engine.registrations(it).map(|r| r.is_empty()).unwrap_or(false)
        }
        _ => false,
    };
    let pending_tags = matches!(
        plan.repositories,
        plan::Repositories::Rename | plan::Repositories::SetAside(_)
    );
    if pending_tags || !plan.items.iter().all(settled) {
        return None;
    }
    let count = |state: item::State| plan.items.iter().filter(|it| it.state == state).count();
    let mut settled = format!(
        "{} registered",
        crate::units::count(count(item::State::Registered), "item")
    );
    for (state, word) in [
        (item::State::Removed, "removed by the daemon"),
        (item::State::Quarantined, "quarantined"),
    ] {
        if count(state) > 0 {
            settled.push_str(&format!(", {} {word}", crate::units::thousands(count(state) as u64)));
        }
    }
    Some(format!(
        "nothing left to migrate in {}: {settled}; not mounted (the view has retired: Docker runs on ROOT itself)",
        root.path().display(),
    ))
}

/// `status` of a ROOT a read-write view serves: the progress the view keeps
/// under `.graph2aufs/` (read through the view, which passes it through).
/// `None` where no live view serves ROOT.
pub fn live_status(root: &Root) -> Result<Option<crate::report::Document>> {
    let Some(view) = root.served_by() else {
        return Ok(None);
    };
    let file = view
        .mountpoint
        .join(crate::root::OWN_DIR)
        .join(crate::root::STATUS_FILE);
    // A read-write view publishes its first status while it mounts.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let read = || loop {
        match std::fs::read(&file) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            r => return r,
        }
    };
    let bytes = read().step(|| format!("reading the live status {}", file.display()))?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::Env(format!("{} is not a graph2aufs status: {e}", file.display())))
}

/// The `--aufs-dir` the view shows at `ROOT/aufs`.
fn linked_aufs(root: &Root) -> Result<Option<std::sync::Arc<crate::dirref::DirRef>>> {
    root.aufs_dir()
        .map(|(_, fd)| fd.try_clone_to_owned().map(crate::dirref::DirRef::new))
        .transpose()
        .step(|| "opening the --aufs-dir".into())
}

fn root_fd(root: &Root) -> Result<OwnedFd> {
    rfs::openat(
        root.fd(),
        ".",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(std::io::Error::from)
    .step(|| format!("opening {}", root.path().display()))
}
