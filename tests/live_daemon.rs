//! The daemon's own file operations through the read-write view (issue 4),
//! beside its storage driver's (which `docker_driver.rs` runs, Docker's own
//! aufs driver): performed through the view mounted over ROOT while the
//! background migration runs, each checked against the same operation on
//! the native layout: a copy of ROOT taken before mounting and migrated
//! offline by `graph2aufs migrate` (the reference).
//!
//! Every test generates a root of 60 images (a third left half-migrated by
//! Docker 1.8) and 20 containers, mounts the view with a pause before each
//! item of the background migration (`GRAPH2AUFS_ITEM_DELAY_MS`, several
//! seconds in all), acts while items are pending (each test checks that
//! some still were), then waits for the migration to finish, unmounts, and
//! checks the native layout ROOT is left with (see `live_view/mod.rs`):
//! every item registered, and the whole tree equal to the reference's after
//! the same operations; last, that the finished view showed every entry
//! with its attributes on the disk (it is pure passthrough by then).
//!
//! - Docker 1.8's own Migrate finding nothing to do, and the daemon
//!   reading what it reads at start;
//! - a new container: its layers created by Docker's aufs driver, its init
//!   layer written (`setupInitLayer`), its configuration and log;
//! - json-file logs appended from threads, config.json rewritten
//!   atomically, with readers;
//! - the SQLite link graph with concurrent readers;
//! - exec of binaries and mmap of files in layers, also while they move.

mod common;
use common::*;

#[path = "live_daemon/daemon.rs"]
mod daemon;
#[path = "docker_driver/harness.rs"]
mod harness;
#[path = "live_view/mod.rs"]
mod live_view;

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use g2a_genroot::{Options, Summary};
use serde_json::Value;

use daemon::{log_line, open_log, sqlite3, write_json_atomic, Daemon, LINKGRAPH_SCHEMA};
use harness::{require_docker_driver, DockerDriver};
use live_view::*;

/// The pause before each item of the background migration: 80 items take
/// about 6.4 s, time for the driver to act while items are pending.
const ITEM_DELAY_MS: u64 = 80;
/// The longest a test keeps its view mounted.
const BOUND: Duration = Duration::from_secs(90);
/// How long the background migration may take in all.
const FINISH: Duration = Duration::from_secs(60);

/// The generated root every test starts from.
fn root(seed: u64) -> Options {
    Options {
        seed,
        images: 60,
        max_chain: 5,
        containers: 20,
        entries_per_layer: 16,
        broken: false,
        docker18: true,
        debian_base: None,
    }
}

/// The view's daemon (first) and the reference's.
fn daemons(f: &Fixture) -> [Daemon; 2] {
    [Daemon::new(&f.root), Daemon::new(&f.reference)]
}

/// Runs `op` through the view, then on the reference; panics naming the
/// operation and the error (an errno in its text) if either fails.
#[track_caller]
fn on_both<T>(daemons: &[Daemon; 2], what: &str, op: impl Fn(&Daemon) -> io::Result<T>) -> T {
    let got = op(&daemons[0]).unwrap_or_else(|e| panic!("{what} through the view: {e}"));
    op(&daemons[1]).unwrap_or_else(|e| panic!("{what} on the native reference: {e}"));
    got
}

/// Asserts that the threads of a test found no problem.
#[track_caller]
fn assert_no_problems(problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Docker's aufs driver's `args` (see `docker_driver/main.go`) on `d`'s root.
fn driver_call(driver: &DockerDriver, d: &Daemon, args: &[&str]) -> io::Result<()> {
    driver.call(d.root(), false, args).map(drop).map_err(io::Error::other)
}

/// Sets a fixed mtime (and atime) on `path`, so the same file written at
/// different times on both sides compares equal.
#[track_caller]
fn set_mtime(path: &Path, secs: i64) {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let times = rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(rustix::fs::CWD, path, &times, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
        .unwrap_or_else(|e| panic!("utimensat {}: {e}", path.display()));
}

// ---------------------------------------------------------------------------
// A daemon starting: Init, its own Migrate, what it reads; a new container
// ---------------------------------------------------------------------------

#[test]
fn a_daemon_starting_on_the_view_finds_nothing_to_migrate_and_creates_a_container_while_items_migrate() {
    if !require_root_and_fuse() {
        return;
    }
    let Some(driver) = require_docker_driver() else {
        return;
    };
    let f = Fixture::prepared(&root(401), |_, _| {});
    let view = View::start(&f, ITEM_DELAY_MS, BOUND);
    let daemons = daemons(&f);
    let [v, r] = &daemons;
    on_both(&daemons, "Docker's aufs Init", |d| driver_call(&driver, d, &["init"]));
    let work = v
        .migrate_work()
        .unwrap_or_else(|e| panic!("Docker's Migrate through the view: {e}"));
    assert!(
        work.is_empty(),
        "Docker 1.8.1's Migrate would act on the view: {work:#?}"
    );
    let read = |d: &Daemon, rel: &str| fs::read(d.root().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"));
    assert_eq!(
        read(v, "repositories-aufs"),
        read(r, "repositories-aufs"),
        "repositories-aufs"
    );
    // What the daemon reads next: every image's metadata and chain, every
    // container's configuration and chains.
    for id in &f.summary.images {
        for rel in [format!("graph/{id}/json"), format!("aufs/layers/{id}")] {
            assert_eq!(read(v, &rel), read(r, &rel), "{rel} through the view and natively");
        }
        assert_empty_dir(&v.mnt_dir(id), 0o755);
        let diff = fs::symlink_metadata(v.diff_dir(id)).unwrap_or_else(|e| panic!("aufs/diff/{id}: {e}"));
        assert!(
            diff.is_dir(),
            "aufs/diff/{id} is a real directory, not {:?}",
            diff.file_type()
        );
    }
    for (id, _, _) in &f.summary.containers {
        for rel in [
            format!("containers/{id}/config.json"),
            format!("containers/{id}/hostconfig.json"),
            format!("aufs/layers/{id}"),
            format!("aufs/layers/{id}-init"),
        ] {
            assert_eq!(read(v, &rel), read(r, &rel), "{rel} through the view and natively");
        }
    }

    // A new container on the latest pending image.
    let states = view.states();
    let image = states
        .iter()
        .rev()
        .find(|(id, s)| f.summary.parents.contains_key(id) && s != "registered")
        .map(|(id, _)| id.clone())
        .expect("a pending image");
    let container = hex_id("new container");
    let config = format!("{{\"ID\":\"{container}\",\"Image\":\"{image}\",\"Path\":\"/bin/sh\"}}");
    on_both(&daemons, "createRootfs of a new container", |d| {
        d.create_container(&container, &image, config.as_bytes(), |id, parent| {
            driver_call(&driver, d, &["create", id, parent])
        })
    });
    let init = format!("{container}-init");
    assert!(
        v.diff_dir(&init).join("etc/hosts").is_file(),
        "the new init layer has etc/hosts"
    );
    assert!(
        view.state(&image) != "registered",
        "the new container's image {image} was pending all along"
    );
    let states = view.states();
    assert!(
        !pending(&states).is_empty(),
        "the checks ran while items were pending: {states:?}"
    );
    // The new container's files are written at different times on each side.
    let written = [format!("containers/{container}"), format!("aufs/diff/{init}")].map(PathBuf::from);
    finish(&f, view, FINISH, &written);
}

// ---------------------------------------------------------------------------
// Container logs and configuration
// ---------------------------------------------------------------------------

#[test]
fn container_logs_and_config_writes_through_the_view_while_items_migrate() {
    if !require_root_and_fuse() {
        return;
    }
    const WRITERS: usize = 4;
    const LINES: usize = 200;
    const ROUNDS: usize = 30;
    let f = Fixture::prepared(&root(405), |_, _| {});
    let view = View::start(&f, ITEM_DELAY_MS, BOUND);
    let states = view.states();
    // The last containers of the plan (pending), a never-started one among them.
    let mut chosen: Vec<String> = states
        .iter()
        .rev()
        .filter(|(id, s)| f.summary.containers.iter().any(|c| c.0 == *id) && s != "registered")
        .map(|(id, _)| id.clone())
        .take(3)
        .collect();
    if chosen.iter().all(|c| f.started(c)) {
        let never = f
            .summary
            .containers
            .iter()
            .rev()
            .find(|c| !c.2)
            .expect("a never-started container");
        chosen[2] = never.0.clone();
    }
    let log_of = |root: &Path, id: &str| root.join("containers").join(id).join(format!("{id}-json.log"));
    let config_of = |root: &Path, id: &str| root.join("containers").join(id).join("config.json");
    let original: BTreeMap<String, Vec<u8>> = chosen
        .iter()
        .map(|id| (id.clone(), fs::read(log_of(&f.reference, id)).expect("a log")))
        .collect();
    let problems = Mutex::new(Vec::<String>::new());
    let done = AtomicBool::new(false);
    let (problems, done) = (&problems, &done);
    // The daemon rewrites a container's whole configuration as its state
    // changes: here the original with the process id of each "start".
    let configs: BTreeMap<String, Value> = chosen
        .iter()
        .map(|id| {
            let bytes = fs::read(config_of(&f.reference, id)).expect("a config.json");
            (id.clone(), serde_json::from_slice(&bytes).expect("a JSON config"))
        })
        .collect();
    let config_json = |id: &str, round: usize| {
        let mut v = configs[id].clone();
        v["State"]["Running"] = Value::Bool(true);
        v["State"]["Pid"] = Value::from(round);
        serde_json::to_string(&v).expect("JSON")
    };
    thread::scope(|s| {
        let mut writers = Vec::new();
        for id in &chosen {
            for w in 0..WRITERS {
                let path = log_of(&f.root, id);
                writers.push(s.spawn(move || {
                    let mut log = match open_log(&path) {
                        Ok(l) => l,
                        Err(e) => return problems.lock().unwrap().push(format!("{e}")),
                    };
                    for n in 0..LINES {
                        let line = log_line(&format!("writer {w} line {n}"), n);
                        match log.write(line.as_bytes()) {
                            Ok(k) if k == line.len() => {}
                            got => problems
                                .lock()
                                .unwrap()
                                .push(format!("append to {}: {got:?}", path.display())),
                        }
                    }
                }));
            }
            let path = config_of(&f.root, id);
            writers.push(s.spawn(move || {
                for round in 1..=ROUNDS {
                    if let Err(e) = write_json_atomic(&path, config_json(id, round).as_bytes(), 0o600) {
                        problems.lock().unwrap().push(format!("round {round}: {e}"));
                    }
                }
            }));
            // A reader of each file, as `docker logs` and `docker inspect`.
            let (log, config) = (log_of(&f.root, id), config_of(&f.root, id));
            s.spawn(move || {
                let mut last_round = 0;
                while !done.load(Ordering::SeqCst) {
                    match fs::read(&log) {
                        Ok(bytes) => {
                            let complete = &bytes[..bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)];
                            for line in complete.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                                if serde_json::from_slice::<Value>(line).is_err() {
                                    problems
                                        .lock()
                                        .unwrap()
                                        .push(format!("a torn log line: {}", String::from_utf8_lossy(line)));
                                }
                            }
                        }
                        Err(e) => problems.lock().unwrap().push(format!("reading {}: {e}", log.display())),
                    }
                    match fs::read(&config).map(|b| serde_json::from_slice::<Value>(&b)) {
                        Ok(Ok(v)) => {
                            let round = v["State"]["Pid"].as_u64().unwrap_or(0);
                            if round < last_round {
                                problems
                                    .lock()
                                    .unwrap()
                                    .push(format!("config.json went back from round {last_round} to {round}"));
                            }
                            last_round = round;
                        }
                        got => problems
                            .lock()
                            .unwrap()
                            .push(format!("reading {}: {got:?}", config.display())),
                    }
                }
            });
        }
        // The container's runtime writes into its rw layer meanwhile: the
        // first change to a pending container's layer migrates it.
        let rw = Daemon::new(&f.root).diff_dir(&chosen[0]);
        if let Err(e) = fs::create_dir_all(rw.join("run")).and_then(|()| fs::write(rw.join("run/g2a.pid"), b"4242\n")) {
            problems
                .lock()
                .unwrap()
                .push(format!("writing into the rw layer of {}: {e}", chosen[0]));
        }
        for w in writers {
            w.join().expect("a writer");
        }
        done.store(true, Ordering::SeqCst);
    });
    let problems = problems.lock().unwrap().clone();
    assert_no_problems(&problems);
    let still_pending = pending(&view.states()).len();
    assert!(still_pending > 0, "the writes ran while items were pending");
    // Each log: what it had, then every writer's lines, whole and in order.
    let mut written = Vec::new();
    for id in &chosen {
        let bytes = fs::read(log_of(&f.root, id)).expect("the log through the view");
        let original = &original[id];
        assert!(bytes.starts_with(original), "the log of {id} keeps what it had");
        let text = std::str::from_utf8(&bytes[original.len()..]).expect("UTF-8 log lines");
        for w in 0..WRITERS {
            let mine: Vec<&str> = text
                .lines()
                .filter(|l| l.contains(&format!("\"writer {w} line ")))
                .collect();
            let want: Vec<String> = (0..LINES)
                .map(|n| log_line(&format!("writer {w} line {n}"), n).trim_end().to_string())
                .collect();
            assert_eq!(mine, want, "writer {w}'s lines in the log of {id}");
        }
        assert_eq!(
            text.lines().count(),
            WRITERS * LINES,
            "the log of {id} has only the lines written"
        );
        assert_eq!(
            fs::read_to_string(config_of(&f.root, id)).expect("config.json through the view"),
            config_json(id, ROUNDS),
            "config.json of {id} is the last one written"
        );
        let leftovers: Vec<_> = fs::read_dir(f.root.join("containers").join(id))
            .expect("the container's directory")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
            .map(|e| e.file_name())
            .collect();
        assert!(
            leftovers.is_empty(),
            "temporary files left in containers/{id}: {leftovers:?}"
        );
        // The reference gets the same contents.
        fs::write(log_of(&f.reference, id), &bytes).expect("the reference's log");
        write_json_atomic(&config_of(&f.reference, id), config_json(id, ROUNDS).as_bytes(), 0o600)
            .expect("the reference's config");
        for rel in [
            format!("containers/{id}/{id}-json.log"),
            format!("containers/{id}/config.json"),
        ] {
            written.push(PathBuf::from(rel));
        }
    }
    let rw = Daemon::new(&f.reference).diff_dir(&chosen[0]);
    fs::create_dir_all(rw.join("run"))
        .and_then(|()| fs::write(rw.join("run/g2a.pid"), b"4242\n"))
        .expect("the reference's rw");
    written.push(PathBuf::from(format!("aufs/diff/{}/run/g2a.pid", chosen[0])));
    let logs: Vec<Vec<u8>> = chosen.iter().map(|id| fs::read(log_of(&f.root, id)).unwrap()).collect();
    finish(&f, view, FINISH, &written);
    for (id, bytes) in chosen.iter().zip(logs) {
        assert_eq!(
            fs::read(log_of(&f.root, id)).expect("the native log"),
            bytes,
            "the log of {id} after unmount"
        );
        assert_eq!(
            fs::read_to_string(config_of(&f.root, id)).unwrap(),
            config_json(id, ROUNDS),
            "config.json after unmount"
        );
    }
}

// ---------------------------------------------------------------------------
// The link graph (SQLite)
// ---------------------------------------------------------------------------

#[test]
fn sqlite_link_graph_under_root_with_concurrent_readers_while_items_migrate() {
    if !require_root_and_fuse() {
        return;
    }
    const TRANSACTIONS: usize = 20;
    const PER: usize = 50;
    let f = Fixture::prepared(&root(406), |_, _| {});
    let view = View::start(&f, ITEM_DELAY_MS, BOUND);
    let db = f.root.join("linkgraph.db");
    let r = sqlite3(&db, &[LINKGRAPH_SCHEMA]);
    assert_eq!(r.code, 0, "creating the link graph through the view:\n{r}");
    let problems = Mutex::new(Vec::<String>::new());
    let done = AtomicBool::new(false);
    let reads = AtomicUsize::new(0);
    let (problems, done, reads) = (&problems, &done, &reads);
    thread::scope(|s| {
        for reader in 0..2 {
            let db = &db;
            s.spawn(move || {
                let mut last = 0;
                let mut n = 0;
                while !done.load(Ordering::SeqCst) {
                    n += 1;
                    let r = sqlite3(
                        db,
                        &["SELECT (SELECT count(*) FROM entity) || ' ' || (SELECT count(*) FROM edge);"],
                    );
                    let counts: Vec<usize> = r.stdout.split_whitespace().filter_map(|w| w.parse().ok()).collect();
                    match counts[..] {
                        [e, g] if r.code == 0 && e == g && (e - 1) % PER == 0 && e >= last => last = e,
                        _ => problems
                            .lock()
                            .unwrap()
                            .push(format!("reader {reader}: a partial transaction or an error:\n{r}")),
                    }
                    if n % 5 == 0 {
                        let r = sqlite3(db, &["PRAGMA integrity_check;"]);
                        if r.code != 0 || r.stdout.trim() != "ok" {
                            problems
                                .lock()
                                .unwrap()
                                .push(format!("reader {reader}: integrity_check:\n{r}"));
                        }
                    }
                    reads.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        for t in 0..TRANSACTIONS {
            let mut sql = String::from("BEGIN;\n");
            for k in 0..PER {
                let id = hex_id(&format!("entity {t} {k}"));
                sql.push_str(&format!(
                    "INSERT INTO entity (id) VALUES ('{id}');\nINSERT INTO edge (entity_id, parent_id, name) VALUES ('{id}', '0', '/c{t}-{k}');\n"
                ));
            }
            sql.push_str("COMMIT;\n");
            let r = sqlite3(&db, &[&sql]);
            if r.code != 0 {
                problems.lock().unwrap().push(format!("transaction {t}:\n{r}"));
            }
        }
        done.store(true, Ordering::SeqCst);
    });
    let problems = problems.lock().unwrap().clone();
    assert_no_problems(&problems);
    assert!(
        reads.load(Ordering::SeqCst) > 0,
        "the readers read while the writer wrote"
    );
    assert!(
        !pending(&view.states()).is_empty(),
        "the transactions ran while items were pending"
    );
    let check = |db: &Path, what: &str| -> String {
        let r = sqlite3(
            db,
            &[
                "PRAGMA integrity_check;",
                "PRAGMA foreign_key_check;",
                "SELECT count(*) FROM entity;",
            ],
        );
        assert_eq!(
            (r.code, r.stdout.trim()),
            (0, format!("ok\n{}", TRANSACTIONS * PER + 1).as_str()),
            "{what}:\n{r}"
        );
        let dump = sqlite3(db, &[".dump"]);
        assert_eq!(dump.code, 0, "{what}: .dump\n{dump}");
        dump.stdout
    };
    let dump = check(&db, "the link graph through the view");
    assert_absent(
        &f.root.join("linkgraph.db-journal"),
        "the rollback journal after the last commit",
    );
    fs::copy(&db, f.reference.join("linkgraph.db")).expect("the reference's link graph");
    finish(&f, view, FINISH, &[PathBuf::from("linkgraph.db")]);
    assert_eq!(
        check(&f.root.join("linkgraph.db"), "the link graph after unmount"),
        dump,
        "the dump after unmount"
    );
}

// ---------------------------------------------------------------------------
// exec and mmap
// ---------------------------------------------------------------------------

/// A file mapped whole (read-only, or shared read-write), unmapped on drop.
struct Mapping {
    addr: *mut libc::c_void,
    len: usize,
}

impl Mapping {
    fn new(file: &fs::File, len: usize, writable: bool) -> io::Result<Mapping> {
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a fresh mapping of an open file; nothing else aliases it.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(file),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { addr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` bytes long and lives as long as self.
        unsafe { std::slice::from_raw_parts(self.addr as *const u8, self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.addr as *mut u8, self.len) }
    }

    fn sync(&self) -> io::Result<()> {
        // SAFETY: the whole range of a live mapping.
        if unsafe { libc::msync(self.addr, self.len, libc::MS_SYNC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped.
        unsafe { libc::munmap(self.addr, self.len) };
    }
}

// SAFETY: the mapping is plain memory; readers only read it.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

/// Runs a binary and waits for it; retries ETXTBSY, which a binary just
/// written can give while another thread's fork still holds it open.
fn run_binary(path: &Path, args: &[&str]) -> io::Result<ExitStatus> {
    let mut tries = 0;
    loop {
        match Command::new(path).args(args).status() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 100 => {
                tries += 1;
                thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

const PLANTED: [(&str, &str); 2] = [
    ("usr/local/bin/g2a-true", "/bin/true"),
    ("usr/local/bin/g2a-sleep", "/bin/sleep"),
];
const MAPPED: &str = "usr/local/share/g2a-mapped.bin";

fn mapped_content() -> Vec<u8> {
    (0..(1usize << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// The deepest image: the background migration takes it among the last.
fn deepest(summary: &Summary) -> String {
    let depth = |id: &str| {
        let mut n = 0;
        let mut next = Some(id.to_string());
        while let Some(i) = next {
            n += 1;
            next = summary.parents.get(&i).cloned().flatten();
        }
        n
    };
    summary
        .images
        .iter()
        .max_by_key(|id| depth(id))
        .expect("an image")
        .clone()
}

#[test]
fn binaries_under_root_execute_and_files_map_through_the_view_while_their_layers_move() {
    if !require_root_and_fuse() {
        return;
    }
    let Some(driver) = require_docker_driver() else {
        return;
    };
    // Binaries and a file to map, in the legacy layer of an image that
    // migrates among the last.
    let f = Fixture::prepared(&root(407), |root, summary| {
        let layer = root.join("graph").join(deepest(summary)).join("layer");
        for (rel, from) in PLANTED {
            fs::create_dir_all(layer.join(rel).parent().unwrap()).expect("a directory in the layer");
            fs::copy(from, layer.join(rel)).expect("a binary in the layer");
        }
        fs::create_dir_all(layer.join(MAPPED).parent().unwrap()).expect("a directory in the layer");
        fs::write(layer.join(MAPPED), mapped_content()).expect("a file to map");
    });
    let moving = deepest(&f.summary);
    let view = View::start(&f, ITEM_DELAY_MS, BOUND);
    let daemons = daemons(&f);
    let v = &daemons[0];
    assert!(view.state(&moving) != "registered", "{moving} is pending at first");
    let layer = v.diff_dir(&moving);

    // A binary copied through the view into a pending container's rw layer
    // (which migrates it), made executable, run.
    let container = view
        .states()
        .into_iter()
        .rev()
        .find(|(id, s)| f.summary.containers.iter().any(|c| c.0 == *id) && s != "registered")
        .map(|(id, _)| id)
        .expect("a pending container");
    let copied = "usr/local/bin/g2a-copied-true";
    on_both(&daemons, "copying /bin/true into a container's rw layer", |d| {
        let to = d.diff_dir(&container).join(copied);
        fs::create_dir_all(to.parent().unwrap())?;
        fs::copy("/bin/true", &to)?;
        fs::set_permissions(&to, fs::Permissions::from_mode(0o755))?;
        set_mtime(&to, 1_400_000_000);
        Ok(())
    });
    let status = run_binary(&v.diff_dir(&container).join(copied), &[])
        .unwrap_or_else(|e| panic!("exec of a binary copied through the view: {e}"));
    assert!(status.success(), "a binary copied through the view runs: {status}");

    // Binaries of the pending image run, and its file stays mapped, while
    // the background migration moves the layer.
    let mut sleeper = Command::new(layer.join(PLANTED[1].0))
        .arg("2")
        .spawn()
        .unwrap_or_else(|e| panic!("exec of {} through the view: {e}", PLANTED[1].0));
    let want = mapped_content();
    let file = fs::File::open(layer.join(MAPPED)).unwrap_or_else(|e| panic!("opening {MAPPED} through the view: {e}"));
    let held =
        Mapping::new(&file, want.len(), false).unwrap_or_else(|e| panic!("mmap of {MAPPED} through the view: {e}"));
    assert!(held.bytes() == want, "{MAPPED} mapped through the view has its content");
    let (stop, runs, maps) = (AtomicBool::new(false), AtomicUsize::new(0), AtomicUsize::new(0));
    let problems = Mutex::new(Vec::<String>::new());
    let (runs_before_move, maps_before_move) = thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                match run_binary(&layer.join(PLANTED[0].0), &[]) {
                    Ok(st) if st.success() => {}
                    got => problems
                        .lock()
                        .unwrap()
                        .push(format!("exec of {} through the view: {got:?}", PLANTED[0].0)),
                }
                runs.fetch_add(1, Ordering::SeqCst);
            }
        });
        s.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                let mapped = fs::File::open(layer.join(MAPPED)).and_then(|f| Mapping::new(&f, want.len(), false));
                match mapped {
                    Ok(m) if m.bytes() == want && held.bytes() == want => {}
                    Ok(_) => problems
                        .lock()
                        .unwrap()
                        .push(format!("{MAPPED} mapped through the view has other bytes")),
                    Err(e) => problems
                        .lock()
                        .unwrap()
                        .push(format!("mmap of {MAPPED} through the view: {e}")),
                }
                maps.fetch_add(1, Ordering::SeqCst);
            }
        });
        view.wait_registered(&moving, FINISH);
        let before = (runs.load(Ordering::SeqCst), maps.load(Ordering::SeqCst));
        let target = (before.0 + 5, before.1 + 5);
        while runs.load(Ordering::SeqCst) < target.0 || maps.load(Ordering::SeqCst) < target.1 {
            thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::SeqCst);
        before
    });
    let problems = problems.into_inner().unwrap();
    assert_no_problems(&problems);
    assert!(
        runs_before_move > 0 && maps_before_move > 0,
        "binaries ran and the file was mapped before the move"
    );
    let status = sleeper.wait().expect("waiting for the sleeper");
    assert!(
        status.success(),
        "a binary running from the layer while it moved exits 0: {status}"
    );
    assert!(
        held.bytes() == want,
        "the mapping held across the move still has the file's content"
    );
    drop(held);
    drop(file);

    // A new layer: a binary copied in and run, a file written through a
    // shared writable mapping.
    let x = hex_id("exec layer");
    let data: Vec<u8> = (0..(256usize << 10)).map(|i| (i % 251) as u8).collect();
    on_both(&daemons, "Create, copy /bin/true, write a mapped file", |d| {
        driver_call(&driver, d, &["create", &x, &moving])?;
        let dir = d.diff_dir(&x);
        fs::create_dir(dir.join("bin"))?;
        fs::copy("/bin/true", dir.join("bin/true"))?;
        fs::set_permissions(dir.join("bin/true"), fs::Permissions::from_mode(0o755))?;
        set_mtime(&dir.join("bin/true"), 1_400_000_000);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.join("data.bin"))?;
        file.set_len(data.len() as u64)?;
        let mut m = Mapping::new(&file, data.len(), true)?;
        m.bytes_mut().copy_from_slice(&data);
        m.sync()?;
        drop(m);
        drop(file);
        set_mtime(&dir.join("data.bin"), 1_400_000_000);
        Ok(())
    });
    let dir = v.diff_dir(&x);
    let status =
        run_binary(&dir.join("bin/true"), &[]).unwrap_or_else(|e| panic!("exec of bin/true in a new layer: {e}"));
    assert!(
        status.success(),
        "bin/true copied into a new layer runs through the view: {status}"
    );
    let mut back = Vec::new();
    fs::File::open(dir.join("data.bin"))
        .and_then(|mut f| f.read_to_end(&mut back))
        .expect("reading the mapped file back");
    assert!(back == data, "a file written through a shared mapping reads back");
    finish(&f, view, FINISH, &[]);
}
