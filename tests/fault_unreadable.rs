//! Fault injection: a source directory unreadable mid-way (the "trust"
//! issue). graph2aufs runs without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH
//! (`setpriv --bounding-set=-dac_override,-dac_read_search`), so that a
//! directory of mode 000 is really unreadable for it, as root. Then:
//!
//! - offline `migrate` with a legacy layer directory, a container's `rw`, a
//!   directory deep inside a layer, or a base layer's `etc` unreadable:
//!   each item that cannot be done is reported by id with the reason, only
//!   it and what depends on it wait, every layer is whole in exactly one
//!   place, and once the mode is restored a second run ends exactly as a
//!   clean `migrate` of a copy of the original root;
//! - the read-write view: a pending layer made unreadable while the
//!   background migration runs is reported `failed` by `status --json`,
//!   the view keeps serving everything else, and a remount after the mode
//!   is restored finishes the job;
//! - `aufs/` on another file system (a tmpfs): a directory of a layer made
//!   unreadable before, and in the middle of, its copy (offline and under
//!   the view): the partial copy is discarded, the source stays whole and
//!   authoritative, and a rerun finishes; a source that cannot be emptied
//!   after its copy is finished by the next run, and meanwhile the view
//!   shows the whole layer;
//! - without CAP_DAC_READ_SEARCH alone (nothing unreadable), graph2aufs
//!   does not hang (directory file handles cannot be decoded then).
//!
//! The cases met both offline and under the view are one body each, run in
//! both ([`Mode`]); their failure messages name the mode.

mod common;
use common::*;

use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use g2a_genroot::{generate, Options, Summary};
use serde_json::Value;
use sha2::Digest;

/// The longest any test here keeps a view mounted.
const BOUND: Duration = Duration::from_secs(90);
/// How long a migration (background or offline) may take to settle.
const SETTLE: Duration = Duration::from_secs(45);
/// What takes away root's power to read and search any directory.
const DROP_DAC: &str = "--bounding-set=-dac_override,-dac_read_search";

// ---------------------------------------------------------------- gating

/// Root, (with `fuse`) /dev/fuse, and a `setpriv` under which a mode 000
/// directory really is unreadable for root: otherwise a loud skip, or a
/// failure under CI.
#[track_caller]
fn require_restricted(fuse: bool) -> bool {
    let base = if fuse { require_root_and_fuse() } else { require_root() };
    base && skip_unless(
        "setpriv (util-linux) dropping CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH",
        &setpriv_problems(),
    )
}

/// Why `setpriv` cannot give a root process without DAC override here.
fn setpriv_problems() -> Vec<String> {
    if let Err(e) = Command::new("setpriv").arg("--version").stdin(Stdio::null()).output() {
        return vec![format!("cannot run setpriv: {e}")];
    }
    let dir = tempfile::tempdir().expect("a scratch directory");
    let (open, locked) = (dir.path().join("open"), dir.path().join("locked"));
    for d in [&open, &locked] {
        fs::create_dir(d).unwrap();
        fs::write(d.join("f"), "x").unwrap();
    }
    set_mode(&locked, 0);
    let ls = |d: &Path| {
        let mut cmd = Command::new("setpriv");
        cmd.arg(DROP_DAC).arg("--").arg("ls").arg(d).stdin(Stdio::null());
        run_command(cmd, RUN_TIMEOUT)
    };
    let mut problems = Vec::new();
    let r = ls(&open);
    if r.code != 0 {
        problems.push(format!("setpriv {DROP_DAC} cannot run a command:\n{r}"));
    }
    let r = ls(&locked);
    if r.code == 0 || !r.stderr.contains("Permission denied") {
        problems.push(format!(
            "a mode 000 directory is not unreadable under setpriv {DROP_DAC}:\n{r}"
        ));
    }
    set_mode(&locked, 0o755);
    problems
}

// ---------------------------------------------------------------- running graph2aufs

/// `graph2aufs ARGS` without DAC override.
///
/// With `GRAPH2AUFS_NO_HANDLES`: without CAP_DAC_READ_SEARCH file handles
/// cannot be decoded, so graph2aufs keeps directory descriptors anyway;
/// the variable only spares these tests the deadlock of the probe for
/// handles that [`graph2aufs_without_cap_dac_read_search_does_not_hang`]
/// checks on its own.
fn restricted<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = restricted_as_is(args);
    cmd.env("GRAPH2AUFS_NO_HANDLES", "1");
    cmd
}

/// `graph2aufs ARGS` without DAC override, nothing else changed.
fn restricted_as_is<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new("setpriv");
    cmd.arg(DROP_DAC).arg("--").arg(bin()).args(args).stdin(Stdio::null());
    cmd.env_remove("GRAPH2AUFS_NO_HANDLES");
    cmd
}

/// `graph2aufs migrate ROOT --json EXTRA` without DAC override: exit code
/// and report.
#[track_caller]
fn migrate(root: &Path, extra: &[&str]) -> (RunResult, Value) {
    let mut args = vec!["migrate".as_ref(), root.as_os_str(), "--json".as_ref()];
    args.extend(extra.iter().map(OsStr::new));
    let r = run_command(restricted(args), RUN_TIMEOUT);
    let doc = r.json();
    (r, doc)
}

/// `graph2aufs status ROOT --json`.
#[track_caller]
fn status(root: &Path) -> Value {
    run_command(
        g2a(["status".as_ref(), root.as_os_str(), "--json".as_ref()]),
        RUN_TIMEOUT,
    )
    .json()
}

/// A read-write view of `root` at `mountpoint`, served without DAC override.
#[track_caller]
fn start_view(root: &Path, mountpoint: &Path, args: &[&str], env: &[(&str, &str)]) -> Mount {
    let mut cmd = restricted(["mount".as_ref(), root.as_os_str(), mountpoint.as_os_str()]);
    cmd.arg("--foreground").args(args).env("RUST_LOG", "info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Mount::start_command(cmd, mountpoint, BOUND)
}

/// Polls the live status until `until` holds.
#[track_caller]
fn wait_live(root: &Path, view: &Mount, what: &str, until: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + SETTLE;
    loop {
        let v = status(root);
        if v["live"].is_object() && until(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "never {what}; status: {v}\n--- view log ---\n{}",
            view.log()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the view's background migration has been through every
/// item once (its log says so) and the live status written after it shows
/// nothing under way; returns that status.
#[track_caller]
fn wait_pass(root: &Path, view: &Mount) -> Value {
    let deadline = Instant::now() + SETTLE;
    while !view.log().contains("background migration finished") {
        assert!(
            Instant::now() < deadline,
            "the background migration never finished its pass; status: {}\n--- view log ---\n{}",
            status(root),
            view.log()
        );
        thread::sleep(Duration::from_millis(50));
    }
    wait_live(root, view, "a status with nothing under way", |v| {
        items(v)
            .iter()
            .all(|i| !matches!(i["state"].as_str(), Some("moving" | "copying")))
    })
}

/// After the view's pass over every item, each is done or reported failed
/// (an item whose parent failed is reported failed too, not left pending).
#[track_caller]
fn assert_at_rest(v: &Value, view: &Mount) {
    let restless: Vec<String> = items(v)
        .iter()
        .filter(|i| !matches!(i["state"].as_str(), Some("registered" | "failed" | "quarantined")))
        .map(|i| format!("{} is {}", i["id"], i["state"]))
        .collect();
    assert!(
        restless.is_empty(),
        "after the view's pass over every item, items neither done nor reported failed: {restless:?}\n\
         status: {v}\n--- view log ---\n{}",
        view.log()
    );
}

fn items(doc: &Value) -> &Vec<Value> {
    doc["items"].as_array().expect("a report lists its items")
}

#[track_caller]
fn item<'a>(doc: &'a Value, id: &str) -> &'a Value {
    items(doc)
        .iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("no item {id} in {doc}"))
}

fn reason(doc: &Value, id: &str) -> String {
    item(doc, id)["reason"].as_str().unwrap_or("").to_string()
}

/// The items of a report that failed, sorted.
fn failed_ids(doc: &Value) -> Vec<String> {
    let mut v: Vec<String> = items(doc)
        .iter()
        .filter(|i| i["state"] == "failed")
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// A child process killed (with its process group) if the test fails
/// before it ends.
struct Running(Option<Child>);

impl Running {
    fn spawn(mut cmd: Command, out: &Path) -> Running {
        let f = fs::File::create(out).unwrap();
        let log = fs::File::create(out.with_extension("log")).unwrap();
        cmd.stdout(f).stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        Running(Some(cmd.spawn().expect("starting graph2aufs")))
    }

    /// The exit code and the log (stderr), or `None` if it did not end
    /// within `timeout` (it is then killed).
    fn try_wait(mut self, timeout: Duration, out: &Path) -> Option<(i32, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.0.as_mut().unwrap();
            if let Some(st) = child.try_wait().unwrap() {
                self.0 = None;
                let err = fs::read_to_string(out.with_extension("log")).unwrap_or_default();
                return Some((st.code().unwrap_or(-1), err));
            }
            if Instant::now() > deadline {
                return None; // (killed by the drop)
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    #[track_caller]
    fn wait(self, timeout: Duration, out: &Path) -> (i32, String) {
        self.try_wait(timeout, out)
            .unwrap_or_else(|| panic!("graph2aufs did not finish within {timeout:?}"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            if let Some(pid) = rustix::process::Pid::from_raw(c.id() as i32) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------- fixtures

/// A generated legacy root, a snapshot of it, and a copy of it migrated
/// offline, cleanly, with every capability: what every run must end as.
struct Fixture {
    dir: tempfile::TempDir,
    root: PathBuf,
    summary: Summary,
    before: Tree,
    reference: PathBuf,
}

fn opts(seed: u64, images: usize, containers: usize, entries: usize) -> Options {
    Options {
        seed,
        images,
        max_chain: 3,
        containers,
        entries_per_layer: entries,
        ..Options::default()
    }
}

impl Fixture {
    /// `prepare` changes the generated root before the snapshot and the
    /// reference are taken.
    #[track_caller]
    fn new(opts: &Options, prepare: impl FnOnce(&Path, &Summary)) -> Fixture {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let root = dir.path().join("root");
        let summary = generate(&root, opts).unwrap_or_else(|e| panic!("generating {}: {e}", root.display()));
        prepare(&root, &summary);
        let before = snapshot(&root);
        let reference = dir.path().join("reference");
        cp_a(&root, &reference);
        run(["migrate".as_ref(), reference.as_os_str()]).expect_code(0);
        Fixture {
            dir,
            root,
            summary,
            before,
            reference,
        }
    }

    /// Every started container's id.
    fn started(&self) -> Vec<String> {
        self.summary
            .containers
            .iter()
            .filter(|c| c.2)
            .map(|c| c.0.clone())
            .collect()
    }

    /// The layer's place in the legacy root (relative to ROOT).
    fn legacy(&self, id: &str) -> PathBuf {
        if self.summary.images.iter().any(|i| i == id) {
            PathBuf::from("graph").join(id).join("layer")
        } else {
            PathBuf::from("containers").join(id).join("rw")
        }
    }

    /// `item`'s image chain (for a container: its image and the image's
    /// ancestors; for an image: itself and its ancestors).
    fn chain(&self, item: &str) -> Vec<String> {
        let mut at = self
            .summary
            .containers
            .iter()
            .find(|c| c.0 == item)
            .map_or(Some(item.to_string()), |c| Some(c.1.clone()));
        let mut out = Vec::new();
        while let Some(i) = at {
            at = self.summary.parents.get(&i).cloned().flatten();
            out.push(i);
        }
        out
    }

    /// Every item id (images, then containers).
    fn all_items(&self) -> Vec<String> {
        let s = &self.summary;
        s.images
            .iter()
            .cloned()
            .chain(s.containers.iter().map(|c| c.0.clone()))
            .collect()
    }

    /// The items that cannot be done while `blocked` are not: those and
    /// every item built on one of them.
    fn waiting_on(&self, blocked: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = self
            .all_items()
            .into_iter()
            .filter(|i| blocked.contains(&i.as_str()) || self.chain(i).iter().any(|c| blocked.contains(&c.as_str())))
            .collect();
        v.sort();
        v
    }

    /// Checks that every image layer and started container's rw of the
    /// original root is whole in exactly one place of `root`: its legacy
    /// place or `aufs/diff/<id>`. `expected` is the original snapshot with
    /// whatever the test changed on purpose (modes it took away).
    #[track_caller]
    fn assert_nothing_lost(&self, expected: &Tree, root: &Path, what: &str) {
        self.assert_nothing_lost_but(expected, root, &[], what)
    }

    /// Like [`Fixture::assert_nothing_lost`], without the entries at `added`
    /// (paths in ROOT that the test wrote).
    #[track_caller]
    fn assert_nothing_lost_but(&self, expected: &Tree, root: &Path, added: &[PathBuf], what: &str) {
        let now = snapshot(root).without(added);
        let mut checked = 0;
        for id in self.summary.images.iter().chain(self.started().iter()) {
            let legacy = self.legacy(id);
            let want = layer_tree(&expected.subtree(&legacy));
            let old = now.subtree(&legacy);
            let new = now.subtree(Path::new("aufs/diff").join(id));
            let got = match (old.is_empty(), new.is_empty()) {
                (false, true) => old,
                (true, false) => new,
                (true, true) => panic!("{what}: the layer {id} is nowhere"),
                (false, false) => panic!(
                    "{what}: the layer {id} is both at {} and in aufs/diff",
                    legacy.display()
                ),
            };
            assert_same(&want, &layer_tree(&got), &format!("{what}: the layer {id}"));
            checked += 1;
        }
        assert!(checked > 0);
    }
}

#[track_caller]
fn cp_a(src: &Path, dst: &Path) {
    let mut cp = Command::new("cp");
    cp.arg("-a").arg(src).arg(dst);
    run_command(cp, RUN_TIMEOUT).expect_code(0);
}

#[track_caller]
fn set_mode(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", p.display()));
}

/// `t` with the mode of the entry at `rel` set to `mode`.
fn with_mode(t: &Tree, rel: impl AsRef<Path>, mode: u32) -> Tree {
    let rel = rel.as_ref();
    t.normalized(|p, e| {
        if p == rel {
            e.mode = mode;
        }
    })
}

/// A layer's tree without what depends on where it lies: its top
/// directory's mtime (a rename into another directory may change it) and
/// directory sizes (another file system).
fn layer_tree(t: &Tree) -> Tree {
    t.normalized(|p, e| {
        if e.kind == Kind::Dir {
            e.size = 0;
            if p.as_os_str().is_empty() {
                e.mtime_ns = 0;
            }
        }
    })
}

/// A tree without what honestly depends on when things ran (directory
/// mtimes, registration files' times, graph2aufs's own bookkeeping) or on
/// which file system `aufs/` is (the mount point's own attributes).
fn comparable(root: &Path) -> Tree {
    snapshot(root)
        .without([".graph2aufs/record.json", ".graph2aufs/status.json", ".graph2aufs/lock"])
        .normalized(|p, e| {
            if e.kind == Kind::Dir {
                e.mtime_ns = 0;
                e.size = 0;
            }
            if p.starts_with("aufs/layers") {
                e.mtime_ns = 0;
            }
            if p == Path::new("aufs") {
                (e.mode, e.uid, e.gid) = (0, 0, 0);
            }
        })
}

#[track_caller]
fn assert_ends_as_reference(f: &Fixture, what: &str) {
    assert_same(&comparable(&f.reference), &comparable(&f.root), what);
}

/// Whether root without DAC override may read `rel` (a file) or search it
/// (a directory), by its mode and owner as `t` has them.
fn allowed(t: &Tree, rel: &Path, bits: u32) -> bool {
    let Some(e) = t.get(rel) else { return false };
    let class = if e.uid == 0 {
        6
    } else if e.gid == 0 {
        3
    } else {
        0
    };
    e.mode & (bits << class) != 0
}

/// Reads, through the view at `mp`, every file of the layer `id` that a
/// root without DAC override may read, and compares it with `want` (the
/// layer's tree). Returns how many files were read.
#[track_caller]
fn read_layer_through(mp: &Path, id: &str, want: &Tree) -> usize {
    let mut n = 0;
    for (p, e) in want.iter() {
        let Some(hash) = e.content else { continue };
        let reachable = p.ancestors().skip(1).all(|a| allowed(want, a, 0o1));
        if !reachable || !allowed(want, p, 0o4) {
            continue;
        }
        let at = mp.join("aufs/diff").join(id).join(p);
        let bytes = fs::read(&at).unwrap_or_else(|e| panic!("reading {} through the view: {e}", at.display()));
        let got: [u8; 32] = sha2::Sha256::digest(&bytes).into();
        assert_eq!(got, hash, "{} through the view", at.display());
        n += 1;
    }
    n
}

// ---------------------------------------------------------------- offline, one file system

#[test]
fn graph2aufs_without_cap_dac_read_search_does_not_hang() {
    if !require_restricted(false) {
        return;
    }
    // Nothing unreadable: only the capabilities are fewer (as under a
    // systemd CapabilityBoundingSet, or in a user namespace). Directory
    // file handles cannot be decoded then; graph2aufs must do without.
    let f = Fixture::new(&opts(30, 4, 2, 4), |_, _| {});
    let out = f.dir.path().join("migrate.json");
    let run = Running::spawn(
        restricted_as_is(["migrate".as_ref(), f.root.as_os_str(), "--json".as_ref()]),
        &out,
    );
    let Some((code, log)) = run.try_wait(Duration::from_secs(20), &out) else {
        panic!(
            "`graph2aufs migrate` without CAP_DAC_READ_SEARCH hung (killed after 20 s): the probe \
             for directory file handles (open_by_handle_at fails with EPERM without that capability) \
             must fall back to descriptors, not block"
        );
    };
    assert_eq!(code, 0, "{log}");
    assert_ends_as_reference(&f, "ROOT after a migrate without CAP_DAC_READ_SEARCH");
}

#[test]
fn migrate_moves_a_layer_with_an_unreadable_directory_whole_and_names_the_init_layers_it_cannot_build() {
    if !require_restricted(false) {
        return;
    }
    let f = Fixture::new(&opts(32, 12, 6, 12), |_, _| {});
    // The deepest directory of a leaf image's layer: a rename moves the
    // layer whole, the unreadable directory with it, untouched.
    let leaf = leaf_images(&f.summary).pop().expect("a leaf image");
    let layer = f.legacy(&leaf);
    let deep = f
        .before
        .subtree(&layer)
        .iter()
        .filter(|(p, e)| e.kind == Kind::Dir && !p.as_os_str().is_empty())
        .max_by_key(|(p, _)| p.components().count())
        .map(|(p, _)| p.clone())
        .expect("a directory in the layer");
    assert!(deep.components().count() >= 2, "not deep: {}", deep.display());
    // `etc` of the base layer of a started container's image: its init
    // layer (and that of every container on that base) cannot be computed.
    let (container, base) = f
        .started()
        .into_iter()
        .map(|c| (c.clone(), f.chain(&c).pop().unwrap()))
        .find(|(_, base)| {
            *base != leaf
                && f.before
                    .get(&f.legacy(base).join("etc"))
                    .is_some_and(|e| e.kind == Kind::Dir)
        })
        .expect("a started container whose base layer has etc/");
    let etc = f.legacy(&base).join("etc");
    let mut expected = f.before.clone();
    for p in [layer.join(&deep), etc.clone()] {
        set_mode(&f.root.join(&p), 0);
        expected = with_mode(&expected, &p, 0);
    }

    let (r, doc) = migrate(&f.root, &[]);
    assert_eq!(r.code, 1, "{r}");
    // The leaf moved, unreadable directory and all.
    assert_eq!(item(&doc, &leaf)["state"], "registered", "{}", item(&doc, &leaf));
    let moved = f.root.join("aufs/diff").join(&leaf).join(&deep);
    assert_eq!(fs::symlink_metadata(&moved).unwrap().permissions().mode() & 0o7777, 0);
    // Every image moved (the base too: a rename reads nothing); the
    // containers on that base failed, each saying which init layer it could
    // not build, from what, and why.
    assert!(
        f.summary.images.iter().all(|i| item(&doc, i)["state"] == "registered"),
        "{r}"
    );
    let failed = failed_ids(&doc);
    assert!(
        failed.contains(&container),
        "{container} is built on an unreadable etc/:\n{r}"
    );
    for c in &failed {
        assert!(
            f.chain(c).contains(&base),
            "{c} failed but is not built on {base}:\n{r}"
        );
        let why = reason(&doc, c);
        assert!(
            why.contains(&format!("{c}-init")) && why.contains(&base) && why.contains("Permission denied"),
            "the reason for {c} names its init layer, the layers read and the cause: {why}"
        );
    }
    f.assert_nothing_lost(&expected, &f.root, "after a run with unreadable directories in layers");

    // Readable again (where the layers now are): the second run finishes.
    set_mode(&moved, f.before.at(layer.join(&deep)).mode);
    set_mode(
        &f.root.join("aufs/diff").join(&base).join("etc"),
        f.before.at(&etc).mode,
    );
    let (r, doc) = migrate(&f.root, &[]);
    assert_eq!(r.code, 0, "{r}");
    assert!(failed_ids(&doc).is_empty(), "{doc}");
    assert_ends_as_reference(&f, "ROOT after the modes were restored and a second run");
}

// ---------------------------------------------------------------- offline and under the view

/// Where graph2aufs meets what it cannot read: an offline `migrate`, or the
/// background migration of a read-write view. Each twin case below is one
/// body run in both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Offline,
    UnderTheView,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Offline => "offline migrate",
            Mode::UnderTheView => "under the view",
        })
    }
}

impl Mode {
    /// Root, and /dev/fuse under the view (see [`require_restricted`]).
    #[track_caller]
    fn require(self) -> bool {
        require_restricted(self == Mode::UnderTheView)
    }

    /// Starts a run of graph2aufs without DAC override over `f`'s ROOT:
    /// `migrate ROOT --json ARGS`, or a read-write view at `f.dir/mp`
    /// mounted with `ARGS`; `env` for either.
    #[track_caller]
    fn start(self, f: &Fixture, args: &[&str], env: &[(&str, &str)]) -> Run {
        match self {
            Mode::Offline => {
                let out = f.dir.path().join("migrate.json");
                let mut cmd = restricted(["migrate".as_ref(), f.root.as_os_str(), "--json".as_ref()]);
                cmd.args(args).envs(env.iter().copied());
                Run::Offline {
                    running: Running::spawn(cmd, &out),
                    out,
                }
            }
            Mode::UnderTheView => {
                let mp = f.dir.path().join("mp");
                fs::create_dir_all(&mp).unwrap();
                Run::View {
                    view: Box::new(start_view(&f.root, &mp, args, env)),
                    root: f.root.clone(),
                    mp,
                }
            }
        }
    }

    /// The obstacle gone, the next run without DAC override finishes the
    /// job: a `migrate` that exits 0, or a view remounted until its
    /// migration has finished; nothing failed either way.
    #[track_caller]
    fn finish(self, f: &Fixture) {
        match self {
            Mode::Offline => {
                let (r, doc) = migrate(&f.root, &[]);
                assert_eq!(r.code, 0, "{self}: the next run\n{r}");
                assert!(failed_ids(&doc).is_empty(), "{self}: the next run: {doc}");
            }
            Mode::UnderTheView => {
                let mp = f.dir.path().join("mp");
                fs::create_dir_all(&mp).unwrap();
                let view = start_view(&f.root, &mp, &[], &[]);
                let st = wait_live(&f.root, &view, "finished", |v| v["live"]["finished"] == true);
                assert!(failed_ids(&st).is_empty(), "{self}: the remount: {st}");
                view.unmount();
            }
        }
    }
}

/// A run of graph2aufs without DAC override (see [`Mode::start`]).
enum Run {
    /// `migrate`, its report going to `out`.
    Offline { running: Running, out: PathBuf },
    /// A read-write view of `root` at `mp` (boxed: a mount guard is large).
    View {
        view: Box<Mount>,
        root: PathBuf,
        mp: PathBuf,
    },
}

impl Run {
    /// Waits until the copy of the layer `id` to another file system has
    /// written its first bytes: offline, into the partial copy; under the
    /// view, as the live status shows it (copying, some bytes done).
    #[track_caller]
    fn wait_copying(&self, f: &Fixture, id: &str) {
        match self {
            Run::Offline { .. } => {
                let partial = f
                    .root
                    .join("aufs/diff")
                    .join(format!(".graph2aufs-tmp-{id}"))
                    .join("big.bin");
                let deadline = Instant::now() + SETTLE;
                while !fs::metadata(&partial).is_ok_and(|m| m.len() > 0) {
                    assert!(
                        Instant::now() < deadline,
                        "offline migrate: the copy of {id} never started"
                    );
                    thread::sleep(Duration::from_millis(5));
                }
            }
            Run::View { view, root, .. } => {
                wait_live(root, view, &format!("copying {id}"), |v| {
                    let it = item(v, id);
                    it["state"] == "copying" && it["copy"]["done_bytes"].as_u64().unwrap_or(0) > 0
                });
            }
        }
    }

    /// Waits until the run is done with every item: until `migrate` ends
    /// (with exit code 1: problems reported), or until the view's pass over
    /// every item is over and each item is at rest.
    #[track_caller]
    fn settle(self) -> Settled {
        match self {
            Run::Offline { running, out } => {
                let (code, stderr) = running.wait(RUN_TIMEOUT, &out);
                let doc: Value = serde_json::from_slice(&fs::read(&out).unwrap())
                    .unwrap_or_else(|e| panic!("offline migrate: its report is not JSON ({e}): {stderr}"));
                assert_eq!(
                    code, 1,
                    "offline migrate: problems are reported with exit code 1: {doc}\n{stderr}"
                );
                Settled { doc, view: None }
            }
            Run::View { view, root, mp } => {
                let doc = wait_pass(&root, &view);
                assert_at_rest(&doc, &view);
                Settled {
                    doc,
                    view: Some((*view, mp)),
                }
            }
        }
    }
}

/// A run done with every item: its report (offline) or its live status
/// (under the view), and the view, still mounted, with its mount point.
struct Settled {
    doc: Value,
    view: Option<(Mount, PathBuf)>,
}

impl Settled {
    /// Unmounts the view, if there is one.
    fn end(self) {
        if let Some((view, _)) = self.view {
            view.unmount();
        }
    }
}

/// Layers made unreadable (offline: a leaf image, an image others are
/// built on and a started container's `rw`, before the run; under the
/// view: the last image it comes to, while it is pending) are reported
/// failed by id with the reason, only what is built on them waits, saying
/// on what, everything else is done, nothing is lost, and `status` says the
/// same after the run; under the view, the view keeps serving meanwhile.
/// Readable again, the next run ends as a clean `migrate` of a copy.
fn unreadable_layers(mode: Mode, opts: &Options) {
    if !mode.require() {
        return;
    }
    let f = Fixture::new(opts, |_, _| {});
    let locked: Vec<String> = match mode {
        Mode::Offline => {
            // A leaf image, an image others are built on, and a started
            // container on neither.
            let leaf = leaf_images(&f.summary).pop().expect("a leaf image");
            let inner = f
                .summary
                .images
                .iter()
                .find(|id| **id != leaf && f.summary.parents.values().any(|p| p.as_deref() == Some(id.as_str())))
                .expect("an image with children")
                .clone();
            let rw = f
                .started()
                .into_iter()
                .find(|c| !f.chain(c).iter().any(|i| *i == inner || *i == leaf))
                .expect("a started container on other images");
            vec![leaf, inner, rw]
        }
        Mode::UnderTheView => {
            // The last image the background migration comes to.
            let plan = run(["plan".as_ref(), f.root.as_os_str(), "--json".as_ref()]).json();
            let last = items(&plan)
                .iter()
                .rev()
                .find(|i| i["kind"] == "image")
                .map(|i| i["id"].as_str().unwrap().to_string())
                .unwrap();
            vec![last]
        }
    };
    let locked: Vec<&str> = locked.iter().map(String::as_str).collect();
    let lock = || {
        for id in &locked {
            set_mode(&f.root.join(f.legacy(id)), 0);
        }
    };
    let mut expected = f.before.clone();
    for id in &locked {
        expected = with_mode(&expected, f.legacy(id), 0);
    }
    let run = match mode {
        Mode::Offline => {
            lock();
            mode.start(&f, &[], &[])
        }
        Mode::UnderTheView => {
            let run = mode.start(&f, &[], &[("GRAPH2AUFS_ITEM_DELAY_MS", "150")]);
            for id in &locked {
                assert_eq!(item(&status(&f.root), id)["state"], "pending", "{mode}: {id} before");
            }
            lock();
            let early = status(&f.root);
            for id in &locked {
                assert_eq!(
                    item(&early, id)["state"],
                    "pending",
                    "{mode}: the layer {id} must be made unreadable while it is pending: {early}"
                );
            }
            run
        }
    };

    let settled = run.settle();
    let doc = &settled.doc;
    // Each unreadable item by id, with the reason: its path, and why.
    for id in &locked {
        assert_eq!(item(doc, id)["state"], "failed", "{mode}: {id}: {}", item(doc, id));
        let why = reason(doc, id);
        let path = f.legacy(id).display().to_string();
        assert!(
            why.contains(&path) && why.contains("Permission denied"),
            "{mode}: the reason for {id} names {path} and the cause: {why}"
        );
    }
    // What is built on them waits, saying on what; everything else is done.
    let waiting = f.waiting_on(&locked);
    assert_eq!(failed_ids(doc), waiting, "{mode}: the failed items: {doc}");
    for id in &waiting {
        if !locked.contains(&id.as_str()) {
            // (Each names its image or parent, which waits too.)
            let why = reason(doc, id);
            assert!(
                why.contains("is not registered") && waiting.iter().any(|w| w != id && why.contains(w.as_str())),
                "{mode}: {id}: {why}"
            );
        }
    }
    let registered = items(doc).iter().filter(|i| i["state"] == "registered").count();
    assert_eq!(registered + waiting.len(), f.all_items().len(), "{mode}: {doc}");

    // Under the view, it keeps working: the other layers read right, the
    // failed ones are still shown where they will be, with their
    // registration, and writes go through.
    let mut written = Vec::new();
    if let Some((_, mp)) = &settled.view {
        assert_eq!(doc["live"]["finished"], false, "{mode}: {doc}");
        let mut read = 0;
        for id in f
            .summary
            .images
            .iter()
            .filter(|i| !locked.contains(&i.as_str()))
            .take(4)
        {
            read += read_layer_through(mp, id, &f.before.subtree(f.legacy(id)));
        }
        assert!(read > 0);
        for id in &locked {
            let shown = fs::symlink_metadata(mp.join("aufs/diff").join(id)).unwrap();
            assert!(shown.is_dir(), "{mode}: aufs/diff/{id} through the view");
            assert_eq!(
                fs::read(mp.join("aufs/layers").join(id)).unwrap(),
                fs::read(f.reference.join("aufs/layers").join(id)).unwrap(),
                "{mode}: aufs/layers/{id} through the view"
            );
            let listing: Result<Vec<_>, _> =
                fs::read_dir(mp.join("aufs/diff").join(id)).and_then(|d| d.map(|e| e.map(|e| e.file_name())).collect());
            loud(&format!(
                "listing the unreadable layer aufs/diff/{id} through the view: {listing:?}"
            ));
        }
        let writer = f
            .started()
            .into_iter()
            .find(|c| !f.chain(c).iter().any(|i| locked.contains(&i.as_str())))
            .expect("a container not built on a failed layer");
        let file = PathBuf::from("aufs/diff")
            .join(&writer)
            .join("written-after-the-failure");
        fs::write(mp.join(&file), b"kept").unwrap();
        written.push(file);
    }
    let doc = settled.doc.clone();
    settled.end();

    // Nothing lost; `status` after the run (without a view) still names
    // the failures, with the same reasons.
    f.assert_nothing_lost_but(
        &expected,
        &f.root,
        &written,
        &format!("{mode}: after the run with unreadable layers"),
    );
    let st = status(&f.root);
    assert!(st["live"].is_null(), "{mode}: {st}");
    assert_eq!(failed_ids(&st), failed_ids(&doc), "{mode}: status after the run: {st}");
    for id in &locked {
        assert_eq!(reason(&st, id), reason(&doc, id), "{mode}: status after the run: {id}");
    }

    // Readable again: the next run finishes the job, as a clean migrate.
    for id in &locked {
        set_mode(&f.root.join(f.legacy(id)), f.before.at(f.legacy(id)).mode);
    }
    mode.finish(&f);
    for file in &written {
        assert_eq!(
            fs::read(f.root.join(file)).unwrap(),
            b"kept",
            "{mode}: {}",
            file.display()
        );
    }
    assert_same(
        &comparable(&f.reference),
        &comparable(&f.root).without(&written),
        &format!("{mode}: ROOT after the modes were restored and the next run"),
    );
    let st = status(&f.root);
    assert!(failed_ids(&st).is_empty(), "{mode}: status after the next run: {st}");
}

#[test]
fn unreadable_layers_fail_by_id_and_the_next_run_finishes_offline() {
    unreadable_layers(Mode::Offline, &opts(31, 12, 6, 12));
}

#[test]
fn unreadable_layers_fail_by_id_and_the_next_run_finishes_under_the_view() {
    unreadable_layers(Mode::UnderTheView, &opts(33, 14, 5, 12));
}

// ---------------------------------------------------------------- another file system

const BIG_MB: u64 = 4;
/// Sorted after `big.bin`: copied once the big file is.
const LATE: &str = "zz-late";

/// A fixture for copies: every entry owned by root and readable, writable
/// (directories) and searchable by its owner, so that a root without DAC
/// override can copy and remove every layer, and the only obstacle is the
/// one a test makes; the first image's layer gets a 4 MiB file `big.bin`
/// and `zz-late/inner/file`, which a copy reaches after the big file.
fn copy_fixture(seed: u64) -> (Fixture, String) {
    let f = Fixture::new(&opts(seed, 5, 2, 10), |root, s| {
        for args in [&["-hR", "0:0"][..], &["-R", "u+rwX"][..]] {
            let mut cmd = Command::new(if args[1] == "0:0" { "chown" } else { "chmod" });
            cmd.args(args).arg(root);
            run_command(cmd, RUN_TIMEOUT).expect_code(0);
        }
        let layer = root.join("graph").join(&s.images[0]).join("layer");
        let chunk: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
        let mut big = fs::File::create(layer.join("big.bin")).unwrap();
        for _ in 0..BIG_MB {
            big.write_all(&chunk).unwrap();
        }
        fs::create_dir_all(layer.join(LATE).join("inner")).unwrap();
        fs::write(layer.join(LATE).join("inner/file"), b"late data\n").unwrap();
    });
    let first = f.summary.images[0].clone();
    (f, first)
}

/// No partial copy in `aufs/diff`.
#[track_caller]
fn assert_no_partial_copy(root: &Path, what: &str) {
    let left: Vec<_> = fs::read_dir(root.join("aufs/diff"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".graph2aufs"))
        .collect();
    assert!(left.is_empty(), "{what}: a partial copy is left: {left:?}");
}

#[test]
fn a_directory_unreadable_before_its_copy_fails_the_item_at_once_and_the_rest_is_copied() {
    if !require_restricted(false) {
        return;
    }
    let (f, big) = copy_fixture(34);
    let space = TmpFs::new(128);
    let _aufs = BindAt::new(space.path(), &f.root.join("aufs"));
    let late = f.legacy(&big).join(LATE);
    // The item fails at once, saying which directory; everything else is
    // copied.
    set_mode(&f.root.join(&late), 0);
    let (r, doc) = migrate(&f.root, &[]);
    assert_eq!(r.code, 1, "{r}");
    let why = reason(&doc, &big);
    assert!(
        why.contains(&f.legacy(&big).display().to_string()) && why.contains(LATE) && why.contains("Permission denied"),
        "the reason names the layer, the directory and the cause: {why}"
    );
    assert_eq!(failed_ids(&doc), f.waiting_on(&[big.as_str()]), "{r}");
    assert_no_partial_copy(&f.root, "unreadable before the copy");
    f.assert_nothing_lost(&with_mode(&f.before, &late, 0), &f.root, "unreadable before the copy");
    // Readable again: the next run copies it.
    set_mode(&f.root.join(&late), f.before.at(&late).mode);
    Mode::Offline.finish(&f);
    assert_ends_as_reference(&f, "ROOT after the copy was done again");
}

/// A directory of a layer made unreadable in the middle of the layer's
/// copy to `aufs/` on another file system (while the big file before it
/// is copied, throttled): the item fails naming the directory, only what
/// is built on it waits, the partial copy is removed, and the source stays
/// whole where it was (under the view, which serves the layer from it
/// meanwhile). Readable again, the next run copies it.
fn unreadable_mid_copy(mode: Mode, seed: u64) {
    if !mode.require() {
        return;
    }
    let (f, big) = copy_fixture(seed);
    let space = TmpFs::new(128);
    let _aufs = BindAt::new(space.path(), &f.root.join("aufs"));
    let inner = f.legacy(&big).join(LATE).join("inner");
    let partial = f.root.join("aufs/diff").join(format!(".graph2aufs-tmp-{big}"));

    let run = mode.start(&f, &["--copy-rate", "2M"], &[]);
    run.wait_copying(&f, &big);
    set_mode(&f.root.join(&inner), 0);
    assert!(
        !partial.join(LATE).join("inner").exists(),
        "{mode}: the directory was made unreadable too late: already copied"
    );
    let settled = run.settle();
    let doc = &settled.doc;
    assert_eq!(item(doc, &big)["state"], "failed", "{mode}: {doc}");
    let why = reason(doc, &big);
    assert!(
        why.contains(LATE) && why.contains("inner") && why.contains("Permission denied"),
        "{mode}: the reason names the unreadable directory and the cause: {why}"
    );
    assert_eq!(failed_ids(doc), f.waiting_on(&[big.as_str()]), "{mode}: {doc}");
    // The view serves the layer from its source, the big file whole.
    if let Some((_, mp)) = &settled.view {
        let got = fs::read(mp.join("aufs/diff").join(&big).join("big.bin")).unwrap();
        let want = f.before.at(f.legacy(&big).join("big.bin")).content.unwrap();
        assert_eq!(
            <[u8; 32]>::from(sha2::Sha256::digest(&got)),
            want,
            "{mode}: big.bin through the view"
        );
        for id in f.summary.images.iter().filter(|i| **i != big) {
            read_layer_through(mp, id, &f.before.subtree(f.legacy(id)));
        }
    }
    settled.end();
    assert_no_partial_copy(&f.root, &format!("{mode}: unreadable mid-copy"));
    assert!(
        !f.root.join("aufs/diff").join(&big).exists(),
        "{mode}: the failed copy is in place"
    );
    f.assert_nothing_lost(
        &with_mode(&f.before, &inner, 0),
        &f.root,
        &format!("{mode}: unreadable mid-copy"),
    );

    // Readable again: the next run finishes the job.
    set_mode(&f.root.join(&inner), f.before.at(&inner).mode);
    mode.finish(&f);
    assert!(
        !f.root.join(f.legacy(&big)).exists(),
        "{mode}: the source is removed after its copy"
    );
    assert_ends_as_reference(&f, &format!("{mode}: ROOT after the copy was done again"));
}

#[test]
fn a_copy_stopped_by_an_unreadable_directory_keeps_the_source_and_the_next_run_finishes_offline() {
    unreadable_mid_copy(Mode::Offline, 34);
}

#[test]
fn a_copy_stopped_by_an_unreadable_directory_keeps_the_source_and_the_next_run_finishes_under_the_view() {
    unreadable_mid_copy(Mode::UnderTheView, 36);
}

/// A source the restricted graph2aufs may read (so it copies and checks
/// it) but not write (so it cannot empty it): its removal after its copy
/// to another file system stops half-way, as it would on an immutable
/// file, an I/O error or a crash. The copy is whole in place; offline the
/// item is reported failed, saying why; under the view it is registered,
/// the view shows the whole layer (the copy, not what is left of the
/// source), and a note names the source, set aside, and why. The obstacle
/// gone, the next run (with every capability: the mode of what is left
/// must stay the copy's) removes what is left of the source.
fn a_source_not_emptied(mode: Mode, seed: u64) {
    if !mode.require() {
        return;
    }
    let (f, big) = copy_fixture(seed);
    let late = f.legacy(&big).join(LATE);
    set_mode(&f.root.join(&late), 0o555);
    let layer = layer_tree(&with_mode(&f.before, &late, 0o555).subtree(f.legacy(&big)));
    let space = TmpFs::new(128);
    let _aufs = BindAt::new(space.path(), &f.root.join("aufs"));
    // By one rename, beside the layer's place.
    let aside = f.legacy(&big).with_file_name(".graph2aufs-tmp-layer");

    let settled = mode.start(&f, &[], &[]).settle();
    let doc = &settled.doc;
    match &settled.view {
        None => {
            let why = reason(doc, &big);
            assert!(
                why.contains(&f.legacy(&big).display().to_string()) && why.contains("Permission denied"),
                "{mode}: the reason names the source and the cause: {why}"
            );
        }
        Some((_, mp)) => {
            assert_eq!(item(doc, &big)["state"], "registered", "{mode}: {doc}");
            let note = doc["notes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["path"] == aside.to_str().unwrap())
                .unwrap_or_else(|| panic!("{mode}: no note of {}: {doc}", aside.display()));
            assert!(
                note["reason"].as_str().unwrap().contains("Permission denied"),
                "{mode}: the note says why: {note}"
            );
            assert!(
                f.root.join(&aside).join(LATE).exists(),
                "{mode}: what could not be removed is kept"
            );
            assert!(!f.root.join(f.legacy(&big)).exists(), "{mode}");
            assert_same(
                &layer,
                &layer_tree(&snapshot(&mp.join("aufs/diff").join(&big))),
                &format!("{mode}: the layer through the view after its source's removal stopped half-way"),
            );
        }
    }
    // The copy is whole in place.
    assert_same(
        &layer,
        &layer_tree(&snapshot(&f.root.join("aufs/diff").join(&big))),
        &format!("{mode}: the copy of the layer whose source could not be emptied"),
    );
    settled.end();
    assert_no_partial_copy(&f.root, &format!("{mode}: a source not emptied"));

    // The obstacle gone: the next run checks what is left of the source
    // against the copy and removes it (under the view, with nothing else
    // left to migrate, the view retires: it does not mount).
    match mode {
        Mode::Offline => {
            let r = run(["migrate".as_ref(), f.root.as_os_str(), "--json".as_ref()]);
            assert_eq!(r.code, 0, "{mode}: the next run\n{r}");
            assert!(failed_ids(&r.json()).is_empty(), "{mode}: the next run\n{r}");
        }
        Mode::UnderTheView => {
            let mp = f.dir.path().join("mp");
            let mut cmd = g2a([
                "mount".as_ref(),
                f.root.as_os_str(),
                mp.as_os_str(),
                "--foreground".as_ref(),
            ]);
            cmd.env("RUST_LOG", "info");
            let r = run_command(cmd, RUN_TIMEOUT);
            r.expect_code(0);
            assert!(
                r.stdout.contains("nothing left to migrate") && !is_mounted(&mp),
                "{mode}: the next mount\n{r}"
            );
        }
    }
    assert!(!f.root.join(f.legacy(&big)).exists(), "{mode}: the source is removed");
    assert!(!f.root.join(&aside).exists(), "{mode}: the source set aside is removed");
    let (_, st) = run_json(["status".as_ref(), f.root.as_os_str(), "--json".as_ref()]);
    assert!(failed_ids(&st).is_empty(), "{mode}: status after the next run: {st}");
    assert_same(
        &with_mode(
            &comparable(&f.reference),
            Path::new("aufs/diff").join(&big).join(LATE),
            0o555,
        ),
        &comparable(&f.root),
        &format!("{mode}: ROOT after the next run"),
    );
}

#[test]
fn a_source_not_emptied_after_its_copy_leaves_the_copy_whole_and_the_next_run_removes_it_offline() {
    a_source_not_emptied(Mode::Offline, 35);
}

#[test]
fn a_source_not_emptied_after_its_copy_leaves_the_copy_whole_and_the_next_run_removes_it_under_the_view() {
    a_source_not_emptied(Mode::UnderTheView, 37);
}
