//! The read-write view and its background migration (issue 4), through the
//! `graph2aufs` binary on generated legacy roots: the tree it leaves equals
//! what an offline `migrate` makes of a copy; the view shows that tree from
//! the first instant and does not change while items move; SIGKILL at any
//! point and a remount finish the job; a busy legacy directory falls back to
//! a symlink and moves once free; a change to a pending item migrates it
//! first; readers and writers on many threads see no error meanwhile; the
//! live `status`; the recovery sequence of the shipped systemd unit.

mod common;
use common::*;

#[path = "systemd/unit.rs"]
mod unit;
use unit::{shipped_unit, unit_command};

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use g2a_genroot::{generate, Options, Summary};
use serde_json::Value;
use sha2::Digest;

/// The longest any test here keeps a view mounted.
const BOUND: Duration = Duration::from_secs(120);
/// How long the background migration of a test root may take.
const FINISH: Duration = Duration::from_secs(60);

/// A generated legacy root in a scratch directory, and a copy of it migrated
/// offline: what the live migration must end as.
struct Fixture {
    dir: tempfile::TempDir,
    root: PathBuf,
    summary: Summary,
    reference: PathBuf,
}

impl Fixture {
    #[track_caller]
    fn new(opts: &Options) -> Fixture {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let root = dir.path().join("root");
        let summary = generate(&root, opts).unwrap_or_else(|e| panic!("generating {}: {e}", root.display()));
        let reference = dir.path().join("reference");
        copy_tree(&root, &reference);
        run(["migrate".as_ref(), reference.as_os_str()]);
        Fixture {
            dir,
            root,
            summary,
            reference,
        }
    }

    /// Another copy of the generated root (before any migration).
    #[track_caller]
    fn copy_of(&self, src: &Path, name: &str) -> PathBuf {
        let dst = self.dir.path().join(name);
        copy_tree(src, &dst);
        dst
    }
}

#[track_caller]
fn copy_tree(src: &Path, dst: &Path) {
    let mut cp = Command::new("cp");
    cp.arg("-a").arg(src).arg(dst);
    run_command(cp, RUN_TIMEOUT).expect_code(0);
}

fn opts(seed: u64, images: usize, containers: usize, broken: bool) -> Options {
    Options {
        seed,
        images,
        max_chain: 5,
        containers,
        entries_per_layer: 12,
        broken,
        docker18: broken,
        ..Options::default()
    }
}

/// A tree without what honestly depends on when things ran: directory
/// mtimes, the registration files' and mount points' times, and
/// graph2aufs's own bookkeeping.
fn comparable(t: &Tree) -> Tree {
    t.without([".graph2aufs/record.json", ".graph2aufs/status.json", ".graph2aufs/lock"])
        .normalized(|p, e| {
            if e.kind == Kind::Dir || p.starts_with("aufs/layers") {
                e.mtime_ns = 0;
            }
        })
}

/// Starts a read-write view of `root` at `mountpoint` with `env` set for
/// the server.
#[track_caller]
fn start_view(root: &Path, mountpoint: &Path, env: &[(&str, &str)]) -> Mount {
    let mut cmd = Command::new(bin());
    cmd.arg("mount").arg(root).arg(mountpoint).arg("--foreground");
    cmd.env("RUST_LOG", "info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Mount::start_command(cmd, mountpoint, BOUND)
}

/// `graph2aufs status ROOT --json` of a live view.
#[track_caller]
fn live_status(root: &Path) -> Value {
    let r = run_command(
        g2a(["status".as_ref(), root.as_os_str(), "--json".as_ref()]),
        RUN_TIMEOUT,
    );
    let v = r.json();
    assert!(v["live"].is_object(), "status of a live view has no live part:\n{r}");
    v
}

/// Waits until the view's status says every item is migrated.
#[track_caller]
fn wait_finished(root: &Path, view: &Mount) -> Value {
    let deadline = Instant::now() + FINISH;
    loop {
        let v = live_status(root);
        if v["live"]["finished"] == true {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "the background migration did not finish within {FINISH:?}; status: {v}\nlog:\n{}",
            view.log()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

fn item_state<'a>(status: &'a Value, id: &str) -> &'a str {
    status["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("no item {id} in {status}"))["state"]
        .as_str()
        .expect("a state")
}

#[track_caller]
fn assert_ends_as_reference(f: &Fixture, root: &Path, what: &str) {
    assert_same(&comparable(&snapshot(&f.reference)), &comparable(&snapshot(root)), what);
}

#[test]
fn background_migration_under_the_view_ends_as_an_offline_migrate() {
    if !require_root_and_fuse() {
        return;
    }
    let f = Fixture::new(&opts(7, 24, 8, true));
    let view = start_view(&f.root, &f.root, &[]);
    let status = wait_finished(&f.root, &view);
    assert!(
        status["totals"]["quarantined"].as_u64().unwrap() > 0 && status["totals"]["pending"] == 0,
        "{status}"
    );
    view.unmount();
    assert_ends_as_reference(&f, &f.root, "ROOT after the live migration and unmount");
    // `verify` finds in it what it finds in the offline result (the
    // quarantined items).
    let verify = |r: &Path| run_command(g2a(["verify".as_ref(), r.as_os_str()]), RUN_TIMEOUT);
    let (got, want) = (verify(&f.root), verify(&f.reference));
    assert_eq!(
        (got.code, &got.stdout.replace(f.root.to_str().unwrap(), "ROOT")),
        (want.code, &want.stdout.replace(f.reference.to_str().unwrap(), "ROOT")),
        "verify"
    );
}

#[test]
fn the_view_shows_the_migrated_tree_from_the_start_and_moved_data_keeps_its_inode() {
    if !require_root_and_fuse() {
        return;
    }
    let f = Fixture::new(&opts(11, 40, 10, true));
    let view = start_view(&f.root, &f.root, &[("GRAPH2AUFS_ITEM_DELAY_MS", "40")]);
    // Taken while items move (40 ms each: several seconds in all).
    let during = snapshot(&f.root);
    let inos: BTreeMap<String, u64> = f
        .summary
        .images
        .iter()
        .map(|id| {
            (
                id.clone(),
                fs::metadata(f.root.join("aufs/diff").join(id)).unwrap().ino(),
            )
        })
        .collect();
    let early = live_status(&f.root);
    assert!(
        early["totals"]["pending"].as_u64().unwrap() > 0,
        "the snapshot must be taken while items are pending: {}",
        early["totals"]
    );
    wait_finished(&f.root, &view);
    // The kernel forgets its dentries and inodes: the view finds them anew.
    fs::write("/proc/sys/vm/drop_caches", "2").expect("dropping the kernel's caches");
    for (id, ino) in &inos {
        let now = fs::metadata(f.root.join("aufs/diff").join(id)).unwrap().ino();
        assert_eq!(
            now, *ino,
            "the inode number of aufs/diff/{id} changed when its data moved"
        );
    }
    view.unmount();
    assert_same(
        &comparable(&snapshot(&f.root)),
        &comparable(&during),
        "ROOT after migration against the view while items moved",
    );
    assert_ends_as_reference(&f, &f.root, "ROOT after the live migration");
}

#[test]
fn a_server_killed_at_any_point_and_a_remount_finish_with_the_offline_result() {
    if !require_root_and_fuse() {
        return;
    }
    let f = Fixture::new(&opts(3, 10, 4, true));
    let pristine = f.copy_of(&f.root, "pristine");
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut points: Vec<u64> = vec![0, 1, 2];
    for _ in 0..9 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        points.push(3 + rng % 110);
    }
    let (mut finished_without_kill, mut before_mount, mut while_serving) = (0, 0, 0);
    for n in points {
        let root = f.copy_of(&pristine, &format!("killed-{n}"));
        let mut cmd = Command::new(bin());
        cmd.arg("mount").arg(&root).arg(&root).arg("--foreground");
        cmd.env("GRAPH2AUFS_KILL_AFTER", n.to_string());
        let view = match Mount::try_start_command(cmd, &root, BOUND) {
            Ok(v) => v,
            Err((status, log)) => {
                // Killed while preparing, before mounting.
                assert_eq!(
                    status.signal(),
                    Some(libc::SIGKILL),
                    "killed after {n}: {status}\n{log}"
                );
                before_mount += 1;
                let again = start_view(&root, &root, &[]);
                wait_finished(&root, &again);
                again.unmount();
                assert_ends_as_reference(&f, &root, "ROOT after a kill before mounting and a remount");
                fs::remove_dir_all(&root).expect("removing a finished copy");
                continue;
            }
        };
        // Either the server kills itself before change n+1, or the run has
        // fewer changes and finishes.
        let deadline = Instant::now() + FINISH;
        let killed = loop {
            if view.wait_exit(Duration::from_millis(50)).is_some() {
                break true;
            }
            let st = run_command(
                g2a(["status".as_ref(), root.as_os_str(), "--json".as_ref()]),
                RUN_TIMEOUT,
            );
            if (st.code == 0 || st.code == 1) && st.json()["live"]["finished"] == true {
                break false;
            }
            assert!(
                Instant::now() < deadline,
                "killed after {n}: neither killed nor finished:\n{}",
                view.log()
            );
        };
        if killed {
            // A dead view: every access fails until it is detached. The
            // next mount detaches it by itself and resumes.
            assert!(
                rustix::fs::statfs(&root).is_err(),
                "killed after {n}: the dead view still answers"
            );
            while_serving += 1;
            let again = start_view(&root, &root, &[]);
            wait_finished(&root, &again);
            again.unmount();
            drop(view);
            assert_ends_as_reference(
                &f,
                &root,
                &format!("ROOT after a kill before change {} and a remount", n + 1),
            );
        } else {
            finished_without_kill += 1;
            view.unmount();
            assert_ends_as_reference(&f, &root, &format!("ROOT of a run with fewer than {n} changes"));
        }
        fs::remove_dir_all(&root).expect("removing a finished copy");
    }
    loud(&format!(
        "live crash test: {before_mount} kills while preparing, {while_serving} while serving, \
         {finished_without_kill} runs with fewer changes than the kill point"
    ));
    assert!(
        before_mount > 0 && while_serving > 2,
        "the kill points missed a phase: {before_mount} before mounting, {while_serving} while serving"
    );
}

/// Undoes a bind mount when dropped (lazily: the view may still hold it).
struct Bind(PathBuf);

impl Bind {
    #[track_caller]
    fn onto_itself(dir: &Path) -> Bind {
        let mut cmd = Command::new("mount");
        cmd.arg("--bind").arg(dir).arg(dir);
        run_command(cmd, RUN_TIMEOUT).expect_code(0);
        Bind(dir.to_path_buf())
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            lazy_umount(&self.0);
        }
    }
}

/// Polls the live status until `until` holds for it.
#[track_caller]
fn wait_status(root: &Path, view: &Mount, what: &str, until: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + FINISH;
    loop {
        let v = live_status(root);
        if until(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "never {what}; status: {v}\nlog:\n{}",
            view.log()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_busy_legacy_layer_is_registered_through_a_symlink_and_moved_once_free() {
    if !require_root_and_fuse() {
        return;
    }
    let f = Fixture::new(&opts(5, 8, 2, false));
    let id = f.summary.images[0].clone();
    let layer = f.root.join("graph").join(&id).join("layer");
    let bind = Bind::onto_itself(&layer);
    // Elsewhere than over ROOT, so that the bind mount stays reachable.
    let mp = f.dir.path().join("mp");
    fs::create_dir(&mp).unwrap();
    let view = start_view(&f.root, &mp, &[]);
    let status = wait_status(&f.root, &view, "a fallback", |v| item_state(v, &id) == "fallback");
    let why = status["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id.as_str())
        .unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(why.contains("busy"), "the fallback's reason names the cause: {why}");
    // The view shows a real directory with the layer's data; the disk has
    // the symlink underneath, and the layer registered.
    let shown = mp.join("aufs/diff").join(&id);
    assert!(
        fs::symlink_metadata(&shown).unwrap().is_dir(),
        "the view shows a symlink at aufs/diff/{id}"
    );
    assert_same(
        &snapshot(&f.reference.join("aufs/diff").join(&id)),
        &snapshot(&shown),
        "the busy layer through the view",
    );
    let under = fs::read_link(f.root.join("aufs/diff").join(&id)).expect("a symlink at aufs/diff/<id> on the disk");
    assert!(under.ends_with(format!("graph/{id}/layer")), "{}", under.display());
    assert!(f.root.join("aufs/layers").join(&id).is_file());
    drop(bind);
    // Retried with a growing pause (1 s, 2 s, ...): it moves now.
    wait_finished(&f.root, &view);
    view.unmount();
    assert_ends_as_reference(&f, &f.root, "ROOT after the busy layer moved");
}

/// The reads a daemon does, through the view, of everything of a layer.
fn read_all(dir: &Path) -> usize {
    let mut n = 0;
    for e in fs::read_dir(dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display())) {
        let e = e.unwrap();
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            n += read_all(&e.path());
        } else if ft.is_file() {
            fs::read(e.path()).unwrap_or_else(|err| panic!("reading {}: {err}", e.path().display()));
        } else if ft.is_symlink() {
            fs::read_link(e.path()).unwrap();
        }
        n += 1;
    }
    n
}

#[test]
fn a_change_to_a_pending_item_migrates_it_first_and_reads_never_do() {
    if !require_root_and_fuse() {
        return;
    }
    let f = Fixture::new(&opts(9, 24, 8, false));
    let root = &f.root;
    // Slow enough that everything below happens while the background
    // migration is at its first items.
    let view = start_view(root, root, &[("GRAPH2AUFS_ITEM_DELAY_MS", "400")]);
    let started = f
        .summary
        .containers
        .iter()
        .rev()
        .find(|c| c.2)
        .expect("a started container")
        .0
        .clone();
    let fresh = f
        .summary
        .containers
        .iter()
        .rev()
        .find(|c| !c.2)
        .expect("a never-started container")
        .0
        .clone();
    let leaf = leaf_images(&f.summary).pop().expect("an image nothing builds on");
    // Reads of everything of theirs migrate nothing.
    let init = format!("{started}-init");
    for name in [&started, &init, &fresh, &leaf] {
        read_all(&root.join("aufs/diff").join(name));
        fs::read(root.join("aufs/layers").join(name)).unwrap();
    }
    let s = live_status(root);
    for id in [&started, &fresh, &leaf] {
        assert_eq!(item_state(&s, id), "pending", "{id} after reads");
    }
    // A write into the synthesized init layer migrates the container (and
    // its image chain) first.
    fs::write(root.join("aufs/diff").join(&init).join("etc/g2a-touched"), b"x").unwrap();
    let s = live_status(root);
    assert_eq!(item_state(&s, &started), "registered", "a write into its init layer");
    let image = &f.summary.containers.iter().find(|c| c.0 == started).unwrap().1;
    assert_eq!(item_state(&s, image), "registered", "its image, before it");
    // So does a file created in the synthesized empty rw layer of a
    // container that never ran.
    fs::write(root.join("aufs/diff").join(&fresh).join("new-file"), b"y").unwrap();
    assert_eq!(item_state(&live_status(root), &fresh), "registered");
    // Docker's Remove of a pending layer: mnt and diff renamed aside, then
    // removed, and its layers file.
    assert_eq!(item_state(&live_status(root), &leaf), "pending");
    for d in ["mnt", "diff"] {
        let from = root.join("aufs").join(d).join(&leaf);
        let to = root.join("aufs").join(d).join(format!("{leaf}-removing"));
        fs::rename(&from, &to).unwrap_or_else(|e| panic!("renaming aufs/{d}/{leaf}: {e}"));
        fs::remove_dir_all(&to).unwrap();
    }
    fs::remove_file(root.join("aufs/layers").join(&leaf)).unwrap();
    assert!(!root.join("aufs/diff").join(&leaf).exists());
    wait_finished(root, &view);
    view.unmount();
    // On the disk: the offline result, with these changes and nothing else.
    let got = comparable(&snapshot(root)).without([
        format!("aufs/diff/{init}/etc/g2a-touched"),
        format!("aufs/diff/{fresh}/new-file"),
    ]);
    let want = comparable(&snapshot(&f.reference)).without([
        format!("aufs/diff/{leaf}"),
        format!("aufs/mnt/{leaf}"),
        format!("aufs/layers/{leaf}"),
    ]);
    assert_same(&want, &got, "ROOT after the changes and the migration");
    assert_eq!(
        fs::read(root.join("aufs/diff").join(&init).join("etc/g2a-touched")).unwrap(),
        b"x"
    );
    assert_eq!(
        fs::read(root.join("aufs/diff").join(&fresh).join("new-file")).unwrap(),
        b"y"
    );
}

#[test]
fn readers_and_writers_on_many_threads_see_no_error_while_items_move() {
    if !require_root_and_fuse() {
        return;
    }
    let f = Fixture::new(&opts(13, 40, 10, false));
    let reference = Arc::new(snapshot(&f.reference));
    let root = f.root.clone();
    let view = start_view(&root, &root, &[("GRAPH2AUFS_ITEM_DELAY_MS", "30")]);
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for t in 0..4 {
        let (root, reference, stop, ids) = (root.clone(), reference.clone(), stop.clone(), f.summary.images.clone());
        threads.push(thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                for id in ids.iter().skip(t) {
                    let rel = PathBuf::from("aufs/diff").join(id);
                    for (p, e) in reference.subtree(&rel).0.iter() {
                        if let Some(want) = e.content {
                            let bytes = fs::read(root.join(&rel).join(p))
                                .unwrap_or_else(|err| panic!("reading {}/{}: {err}", rel.display(), p.display()));
                            let got: [u8; 32] = sha2::Sha256::digest(&bytes).into();
                            assert_eq!(got, want, "{}/{} read while items move", rel.display(), p.display());
                            reads += 1;
                        }
                    }
                }
            }
            reads
        }));
    }
    let containers: Vec<String> = f.summary.containers.iter().map(|c| c.0.clone()).collect();
    for t in 0..2 {
        let (root, stop, containers) = (root.clone(), stop.clone(), containers.clone());
        threads.push(thread::spawn(move || {
            let mut writes = 0;
            while !stop.load(Ordering::Relaxed) && writes < 400 {
                let c = &containers[writes % containers.len()];
                let p = root.join("aufs/diff").join(c).join(format!("w-{t}-{writes}"));
                let body = format!("{t} {writes} {c}");
                fs::write(&p, &body).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
                assert_eq!(fs::read_to_string(&p).unwrap(), body, "{} read back", p.display());
                let log = root.join("containers").join(c).join(format!("{c}-json.log"));
                let mut f = fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
                std::io::Write::write_all(&mut f, format!("{body}\n").as_bytes()).unwrap();
                writes += 1;
            }
            writes
        }));
    }
    wait_finished(&root, &view);
    stop.store(true, Ordering::Relaxed);
    let counts: Vec<usize> = threads
        .into_iter()
        .map(|t| t.join().expect("a thread failed"))
        .collect();
    view.unmount();
    loud(&format!("while items moved: reads and writes per thread {counts:?}"));
    assert!(
        counts.iter().all(|&n| n > 0),
        "every thread worked during the migration: {counts:?}"
    );
    for (t, &n) in counts[4..].iter().enumerate() {
        for w in 0..n {
            let c = &containers[w % containers.len()];
            let p = root.join("aufs/diff").join(c).join(format!("w-{t}-{w}"));
            assert_eq!(
                fs::read_to_string(&p).unwrap(),
                format!("{t} {w} {c}"),
                "{} on the disk",
                p.display()
            );
        }
    }
}

/// A view started the way the shipped systemd unit starts it (its
/// `ExecStart`, with `--daemon`: the command returns once the view is
/// usable and prints the server's pid); detached and the server killed
/// when dropped, or when its bound passes.
struct UnitView {
    root: PathBuf,
    pid: i32,
    done: Arc<AtomicBool>,
}

impl UnitView {
    #[track_caller]
    fn start(unit: &str, root: &Path, env: &[(&str, &str)]) -> UnitView {
        let line = unit_command(unit, "ExecStart", root);
        let mut cmd = Command::new(&line[0]);
        cmd.args(&line[1..]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let r = run_command(cmd, RUN_TIMEOUT);
        r.expect_code(0);
        let pid: i32 = r
            .stdout
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no pid from ExecStart:\n{r}"));
        let done = Arc::new(AtomicBool::new(false));
        let (d, mp) = (done.clone(), root.to_path_buf());
        thread::spawn(move || {
            let deadline = Instant::now() + BOUND;
            while Instant::now() < deadline {
                if d.load(Ordering::SeqCst) {
                    return;
                }
                thread::sleep(Duration::from_millis(100));
            }
            loud(&format!(
                "WATCHDOG: the unit's view of {} outlived {BOUND:?}",
                mp.display()
            ));
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid).unwrap(),
                rustix::process::Signal::KILL,
            );
            lazy_umount(&mp);
        });
        UnitView {
            root: root.to_path_buf(),
            pid,
            done,
        }
    }

    fn kill(&self) {
        let pid = rustix::process::Pid::from_raw(self.pid).expect("a pid");
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        // Not our child: wait for it to be gone.
        while rustix::process::test_kill_process(pid).is_ok() {
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for UnitView {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if is_mounted(&self.root) && viewed(&self.root) {
            lazy_umount(&self.root);
        }
        self.kill();
    }
}

fn viewed(p: &Path) -> bool {
    mounts_at(p).iter().any(|m| m.fstype.starts_with("fuse"))
}

#[test]
fn the_systemd_unit_starts_the_view_stops_it_and_a_restart_recovers_a_dead_one() {
    if !require_root_and_fuse() {
        return;
    }
    let unit = shipped_unit();
    assert!(
        unit.contains("Before=docker.service") && unit.contains("Type=forking"),
        "{unit}"
    );
    let dropin = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/systemd/docker.service.d/graph2aufs.conf"),
    )
    .expect("the docker drop-in");
    assert!(dropin.contains("After=graph2aufs.service") && dropin.contains("Requires=graph2aufs.service"));
    let f = Fixture::new(&opts(17, 20, 6, true));
    let stop = |root: &Path| {
        let line = unit_command(&unit, "ExecStop", root);
        let mut cmd = Command::new(&line[0]);
        cmd.args(&line[1..]);
        run_command(cmd, RUN_TIMEOUT)
    };
    // Started, then the server dies mid-migration.
    let first = UnitView::start(&unit, &f.root, &[("GRAPH2AUFS_ITEM_DELAY_MS", "100")]);
    read_all(&f.root.join("aufs/diff"));
    first.kill();
    assert!(rustix::fs::statfs(&f.root).is_err(), "the killed view still answers");
    // The documented recovery: stop docker (none here), restart the unit
    // (its stop unmounts the dead view; its start mounts afresh), start docker.
    stop(&f.root).expect_code(0);
    drop(first);
    let second = UnitView::start(&unit, &f.root, &[]);
    let deadline = Instant::now() + FINISH;
    while live_status(&f.root)["live"]["finished"] != true {
        assert!(Instant::now() < deadline, "the restarted view never finished");
        thread::sleep(Duration::from_millis(100));
    }
    stop(&f.root).expect_code(0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while rustix::process::test_kill_process(rustix::process::Pid::from_raw(second.pid).unwrap()).is_ok() {
        assert!(Instant::now() < deadline, "the server outlived the unit's stop");
        thread::sleep(Duration::from_millis(20));
    }
    drop(second);
    assert_ends_as_reference(&f, &f.root, "ROOT after a crash, the unit's recovery and its stop");
}

#[test]
fn a_server_killed_while_readers_and_writers_run_loses_nothing_and_a_remount_finishes() {
    if !require_root_and_fuse() {
        return;
    }
    let f = Fixture::new(&opts(19, 30, 8, false));
    let reference = Arc::new(snapshot(&f.reference));
    let root = f.root.clone();
    // Killed before its 40th change: in the middle of the background migration.
    let view = start_view(
        &root,
        &root,
        &[("GRAPH2AUFS_ITEM_DELAY_MS", "20"), ("GRAPH2AUFS_KILL_AFTER", "40")],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for t in 0..3 {
        let (root, reference, stop, ids) = (root.clone(), reference.clone(), stop.clone(), f.summary.images.clone());
        threads.push(thread::spawn(move || {
            // Reads until the view dies: every byte read before is right.
            let mut reads = 0u64;
            'outer: while !stop.load(Ordering::Relaxed) {
                for id in ids.iter().skip(t) {
                    let rel = PathBuf::from("aufs/diff").join(id);
                    for (p, e) in reference.subtree(&rel).0.iter() {
                        let Some(want) = e.content else { continue };
                        match fs::read(root.join(&rel).join(p)) {
                            Ok(bytes) => {
                                let got: [u8; 32] = sha2::Sha256::digest(&bytes).into();
                                assert_eq!(got, want, "{}/{} read before the kill", rel.display(), p.display());
                                reads += 1;
                            }
                            Err(_) => break 'outer,
                        }
                    }
                }
            }
            reads
        }));
    }
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let (root, stop, cs) = (root.clone(), stop.clone(), f.summary.containers.clone());
            thread::spawn(move || {
                // Files whose write and fsync succeeded: they must survive.
                let mut done = Vec::new();
                for k in 0..10_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let c = &cs[k % cs.len()].0;
                    let p = root.join("aufs/diff").join(c).join(format!("k-{t}-{k}"));
                    let ok = fs::File::create(&p)
                        .and_then(|mut f| std::io::Write::write_all(&mut f, p.to_string_lossy().as_bytes()).map(|_| f))
                        .and_then(|f| f.sync_all());
                    if ok.is_err() {
                        break;
                    }
                    done.push(p);
                }
                done
            })
        })
        .collect();
    assert!(
        view.wait_exit(FINISH).is_some(),
        "the server did not kill itself:\n{}",
        view.log()
    );
    stop.store(true, Ordering::Relaxed);
    let reads: u64 = threads.into_iter().map(|t| t.join().expect("a reader failed")).sum();
    let written: Vec<PathBuf> = writers
        .into_iter()
        .flat_map(|t| t.join().expect("a writer failed"))
        .collect();
    // The documented recovery: a new mount detaches the dead view, resumes.
    let again = start_view(&root, &root, &[]);
    wait_finished(&root, &again);
    for p in &written {
        assert_eq!(
            fs::read_to_string(p).unwrap_or_else(|e| panic!("{} was written before the kill: {e}", p.display())),
            p.to_string_lossy(),
        );
    }
    again.unmount();
    drop(view);
    loud(&format!(
        "killed mid-migration under load: {reads} reads checked, {} files written and fsynced before the kill, all kept",
        written.len()
    ));
    let got = comparable(&snapshot(&root));
    let got = Tree(
        got.0
            .into_iter()
            .filter(|(p, _)| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("k-")))
            .collect(),
    );
    assert_same(
        &comparable(&snapshot(&f.reference)),
        &got,
        "ROOT after a kill under load and a remount, without the files written",
    );
}

/// A generated legacy root in a scratch directory with a mount point
/// beside it (the view mounted elsewhere than over ROOT, so that the test
/// can also look at the disk).
fn root_beside(seed: u64, images: usize, containers: usize) -> (tempfile::TempDir, PathBuf, PathBuf, Summary) {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let root = dir.path().join("root");
    let summary = generate(&root, &opts(seed, images, containers, false)).unwrap_or_else(|e| panic!("generating: {e}"));
    let mp = dir.path().join("mp");
    fs::create_dir(&mp).unwrap();
    (dir, root, mp, summary)
}

/// Directories made immutable (`chattr +i`) while it lives: nothing in
/// them can be renamed away.
struct Immutable(Vec<PathBuf>);

impl Immutable {
    #[track_caller]
    fn new(dirs: Vec<PathBuf>) -> Immutable {
        for d in &dirs {
            let mut c = Command::new("chattr");
            c.arg("+i").arg(d);
            run_command(c, RUN_TIMEOUT).expect_code(0);
        }
        Immutable(dirs)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = Command::new("chattr").arg("-i").arg(d).status();
        }
    }
}

/// Waits until the view's log has a line containing one of `any`.
#[track_caller]
fn wait_log(view: &Mount, any: &[&str]) -> String {
    let deadline = Instant::now() + FINISH;
    loop {
        let log = view.log();
        if any.iter().any(|a| log.contains(a)) {
            return log;
        }
        assert!(Instant::now() < deadline, "the log never said any of {any:?}:\n{log}");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_end_of_the_background_migration_names_what_failed_and_claims_no_passthrough() {
    let test = &test_name();
    if !require_root_and_fuse() {
        return;
    }
    let (_dir, root, mp, s) = root_beside(121, 8, 2);
    let stuck: Vec<String> = leaf_images(&s).into_iter().take(2).collect();
    assert_eq!(stuck.len(), 2, "two images nothing builds on");
    // Their layers cannot be renamed out of graph/<id>: they fail.
    let _immutable = Immutable::new(stuck.iter().map(|id| root.join("graph").join(id)).collect());
    let view = start_view(&root, &mp, &[]);
    let passthrough = "every item is migrated: the view is now pure passthrough";
    let log = wait_log(&view, &[passthrough, "the background migration is over"]);
    assert!(
        !log.contains(passthrough),
        "[{test}] claimed with 2 items failed:\n{log}"
    );
    let end = log
        .lines()
        .find(|l| l.contains("the background migration is over"))
        .expect("found above");
    assert!(end.contains("2 failed"), "[{test}] the count of failed items: {end}");
    for id in &stuck {
        assert!(end.contains(id.as_str()), "[{test}] {id} is not named: {end}");
    }
    let status = live_status(&root);
    assert_eq!(status["live"]["finished"], false, "{status}");
    assert_eq!(status["totals"]["failed"], 2, "{status}");
    drop(view);
}

#[test]
fn live_status_says_where_data_is_once_migrated() {
    let test = &test_name();
    if !require_root_and_fuse() {
        return;
    }
    let (_dir, root, mp, _) = root_beside(123, 6, 2);
    let view = start_view(&root, &mp, &[]);
    let status = wait_finished(&root, &view);
    for it in status["items"].as_array().expect("items") {
        assert!(
            it["source"] == "native" && it["action"] == "none",
            "[{test}] after the migration finished: {it}"
        );
    }
    view.unmount();
    // As `status` says once the view is gone, field by field: where the
    // data is, what is left to do, that graph2aufs migrated it, and that
    // `repositories` was renamed (the live status used to keep the plan's
    // "rename" and `ours` as they were at mount).
    let (_, offline) = run_json(["status".as_ref(), root.as_os_str(), "--json".as_ref()]);
    assert_eq!(
        offline["repositories"], status["repositories"],
        "[{test}] live {status}\noffline {offline}"
    );
    assert_eq!(offline["repositories"]["action"], "done", "{offline}");
    let fields = |doc: &Value| -> Vec<String> {
        let items = doc["items"].as_array().expect("items").iter();
        items
            .map(|it| {
                format!(
                    "{} {} {} {} ours={}",
                    it["id"], it["state"], it["source"], it["action"], it["ours"]
                )
            })
            .collect()
    };
    assert_eq!(fields(&status), fields(&offline), "[{test}] live and offline status");
    for it in offline["items"].as_array().expect("items") {
        assert_eq!(it["source"], "native", "{it}");
        assert_eq!(it["ours"], true, "{it}");
    }
}

#[test]
fn live_status_follows_the_daemon_s_removals_and_migrate_never_makes_them_again() {
    let test = &test_name();
    if !require_root_and_fuse() {
        return;
    }
    let (_dir, root, mp, s) = root_beside(122, 8, 3);
    let view = start_view(&root, &mp, &[]);
    wait_finished(&root, &view);
    // Docker's aufs Remove, through the view, of a container's layers and
    // of an image nothing builds on.
    let (cid, _, _) = s.containers.iter().find(|c| c.2).expect("a started container").clone();
    let leaf = leaf_images(&s).pop().expect("an image nothing builds on");
    let aufs = mp.join("aufs");
    for id in [cid.clone(), format!("{cid}-init"), leaf.clone()] {
        for d in ["mnt", "diff"] {
            let removing = aufs.join(d).join(format!("{id}-removing"));
            fs::rename(aufs.join(d).join(&id), &removing).unwrap_or_else(|e| panic!("{d}/{id}: {e}"));
            fs::remove_dir_all(&removing).unwrap();
        }
        fs::remove_file(aufs.join("layers").join(&id)).unwrap();
    }
    let status = wait_status(&root, &view, "removed", |v| {
        item_state(v, &cid) == "removed" && item_state(v, &leaf) == "removed"
    });
    assert_eq!(status["totals"]["removed"], 2, "{status}");
    assert_eq!(status["live"]["finished"], true, "{status}");
    view.unmount();
    // After the view: the same, and `migrate` makes none of them again.
    let (_, status) = run_json(["status".as_ref(), root.as_os_str(), "--json".as_ref()]);
    assert_eq!(item_state(&status, &cid), "removed", "{status}");
    assert_eq!(item_state(&status, &leaf), "removed", "{status}");
    run(["migrate".as_ref(), root.as_os_str()]).expect_code(0);
    for id in [cid.clone(), format!("{cid}-init"), leaf.clone()] {
        let p = root.join("aufs/diff").join(&id);
        assert!(
            fs::symlink_metadata(&p).is_err(),
            "[{test}] migrate made {} again",
            p.display()
        );
    }
}

#[test]
fn renaming_a_root_of_the_layout_is_refused_while_items_are_pending() {
    let test = &test_name();
    if !require_root_and_fuse() {
        return;
    }
    let (_dir, root, mp, _) = root_beside(111, 8, 3);
    // Slow: the items are still pending below.
    let view = start_view(&root, &mp, &[("GRAPH2AUFS_ITEM_DELAY_MS", "1000")]);
    for rel in ["graph", "containers", "aufs/diff", "aufs/layers", "aufs/mnt", "aufs"] {
        let from = mp.join(rel);
        let to = mp.join(format!("{rel}.old"));
        let r = fs::rename(&from, &to);
        assert_eq!(
            r.as_ref().map_err(|e| e.raw_os_error()),
            Err(Some(libc::EBUSY)),
            "[{test}] mv {rel} {rel}.old with items pending: {r:?}\nlog:\n{}",
            view.log()
        );
        assert!(root.join(rel).is_dir(), "[{test}] {rel} is gone from the disk");
    }
    let log = view.log();
    assert!(
        log.contains("renaming or removing graph is refused (EBUSY) while"),
        "[{test}] the log says why:\n{log}"
    );
    // Once every item is migrated, the view passes it through.
    wait_finished(&root, &view);
    fs::rename(mp.join("aufs/mnt"), mp.join("aufs/mnt.old")).expect("renamed once nothing is pending");
    fs::rename(mp.join("aufs/mnt.old"), mp.join("aufs/mnt")).unwrap();
    drop(view);
}

#[test]
fn removing_graph_through_the_view_migrates_every_image_and_container_first() {
    let test = &test_name();
    if !require_root_and_fuse() {
        return;
    }
    let (_dir, root, mp, s) = root_beside(112, 8, 3);
    let view = start_view(&root, &mp, &[("GRAPH2AUFS_ITEM_DELAY_MS", "1000")]);
    let mut rm = Command::new("rm");
    rm.arg("-rf").arg(mp.join("graph"));
    let r = run_command(rm, RUN_TIMEOUT);
    assert_eq!(r.code, 0, "[{test}] rm -rf graph:\n{r}\nlog:\n{}", view.log());
    view.unmount();
    assert!(!root.join("graph").exists(), "[{test}] graph is still on the disk");
    let mut ids: Vec<&String> = s.images.iter().collect();
    ids.extend(s.containers.iter().map(|c| &c.0));
    for id in ids {
        let d = root.join("aufs/diff").join(id);
        assert!(
            d.is_dir() && root.join("aufs/layers").join(id).is_file(),
            "[{test}] {id} was not migrated before graph went: {} {}",
            show(&d),
            show(&root.join("containers").join(id))
        );
    }
}
