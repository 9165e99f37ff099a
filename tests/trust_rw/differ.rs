//! The differential tester: the same seeded sequence of operations applied
//! to a native directory tree and, through the read-write view, to a copy
//! of it; every outcome must be the same, and so must the trees at the end.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::ops::{initial_paths, Clock, Gen, Op, Out, World};

/// The seed of a run: `TRUST_RW_SEED` if set, otherwise a new one (printed,
/// so that any failure can be replayed).
pub fn seed(test: &str, salt: u64) -> u64 {
    let seed = match std::env::var("TRUST_RW_SEED") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("TRUST_RW_SEED must be a number, not {s:?}")),
        Err(_) => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_nanos() as u64;
            (t ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15)) % 1_000_000_000
        }
    };
    loud(&format!("[{test}] seed {seed} (replay with TRUST_RW_SEED={seed})"));
    seed
}

/// How a run went.
#[derive(Debug, Default)]
pub struct Tally {
    pub ops: usize,
    /// Operations that succeeded, failed with an errno, or were not run
    /// (a path out of the tree, a device node, an empty slot).
    pub ok: usize,
    pub errno: usize,
    pub skipped: usize,
    /// Per operation name: how many.
    pub kinds: BTreeMap<String, usize>,
    /// Per errno: how many operations failed with it (alike in both trees).
    pub errnos: BTreeMap<(String, i32), usize>,
    pub elapsed: Duration,
}

impl Tally {
    pub fn line(&self) -> String {
        format!(
            "{} operations in {:.2?} ({} succeeded, {} failed alike with an errno, {} not run)",
            self.ops, self.elapsed, self.ok, self.errno, self.skipped
        )
    }
}

fn op_name(op: &Op) -> String {
    let s = format!("{op:?}");
    s.split([' ', '{']).next().unwrap_or("?").to_string()
}

/// The two worlds and the generator of one differential run.
pub struct Differ {
    pub test: String,
    pub seed: u64,
    pub native: World,
    pub view: World,
    pub gen: Gen,
    history: VecDeque<(usize, Op, Out)>,
    pub tally: Tally,
    /// `TRUST_RW_KEEP_GOING` set: differences are printed and counted, not
    /// fatal (to see every difference of a run at once; the trees drift
    /// apart after the first).
    keep_going: bool,
    pub mismatches: usize,
}

impl Differ {
    /// A run over `native` and `view`, which must hold the same tree; the
    /// generator starts from the native tree's paths.
    pub fn new(test: &str, seed: u64, native: &Path, view: &Path, clock: Clock) -> Differ {
        let initial = initial_paths(native);
        Differ {
            test: test.to_string(),
            seed,
            native: World::open("native", native, clock),
            view: World::open("view", view, clock),
            gen: Gen::new(seed, &initial),
            history: VecDeque::new(),
            tally: Tally::default(),
            keep_going: std::env::var_os("TRUST_RW_KEEP_GOING").is_some(),
            mismatches: 0,
        }
    }

    /// Applies the next operation of the sequence to both trees; panics,
    /// with the seed and the operations before, if the outcomes differ.
    #[track_caller]
    pub fn step(&mut self) {
        let op = self.gen.next_op();
        self.apply(op);
    }

    /// Applies `op` (not from the sequence) to both trees and compares.
    #[track_caller]
    pub fn apply(&mut self, op: Op) {
        let i = self.tally.ops;
        let t0 = Instant::now();
        let a = self.native.apply(&op);
        let b = self.view.apply(&op);
        self.tally.elapsed += t0.elapsed();
        if a != b {
            let what = format!("operation #{i} differs:\n    {op:?}\n  native: {a:?}\n  view:   {b:?}");
            if !self.keep_going {
                panic!("{}", self.report(&what));
            }
            // Exploring (TRUST_RW_KEEP_GOING): noted, and on.
            loud(&format!("[{}] seed {}: {what}", self.test, self.seed));
            self.mismatches += 1;
        }
        self.tally.ops += 1;
        match &a {
            Out::Err(e) => {
                self.tally.errno += 1;
                *self.tally.errnos.entry((op_name(&op), e.0)).or_default() += 1;
            }
            Out::NotRun(_) => {
                self.tally.skipped += 1;
                *self.tally.errnos.entry((format!("{a:?}"), 0)).or_default() += 1;
            }
            _ => self.tally.ok += 1,
        }
        *self.tally.kinds.entry(op_name(&op)).or_default() += 1;
        self.history.push_back((i, op, a));
        if self.history.len()
            > std::env::var("TRUST_RW_HISTORY")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(30)
        {
            self.history.pop_front();
        }
    }

    /// A failure message: what happened, the seed, how to replay, and the
    /// operations just before.
    pub fn report(&self, what: &str) -> String {
        let mut msg = format!(
            "[{}] seed {}: {what}\n\nReplay: TRUST_RW_SEED={} cargo test --test trust_rw {} -- --exact\n\nThe operations before (with the outcome both had):\n",
            self.test, self.seed, self.seed, self.test
        );
        for (i, op, out) in &self.history {
            let _ = writeln!(msg, "  #{i} {op:?}\n      -> {out:?}");
        }
        msg
    }

    /// Times set from now on are the run's "recent" ones; older ones
    /// compare exactly.
    pub fn restart_clock(&mut self) {
        let clock = Clock::now();
        self.native.clock = clock;
        self.view.clock = clock;
    }

    /// Status change times from now on are the run's "recent" ones (those
    /// of a layer copied to another file system are its copy's, which no
    /// copy can keep as they were).
    pub fn restart_ctime_clock(&mut self) {
        let start = Clock::now().start_ns;
        self.native.clock.ctime_start_ns = start;
        self.view.clock.ctime_start_ns = start;
    }

    /// Closes every descriptor the run holds open, the trees' own
    /// included: the view can be unmounted, and only trees compared.
    pub fn release(&mut self) {
        self.native.release();
        self.view.release();
        assert_eq!(
            self.mismatches, 0,
            "[{}] seed {}: operations differed (printed above)",
            self.test, self.seed
        );
    }

    /// Compares the two whole trees now (contents, modes, owners, sizes,
    /// link counts and hard-link groups, xattrs, device numbers, symlink
    /// targets, mtimes set during the run only as "recent"), and the link
    /// counts of directories.
    #[track_caller]
    pub fn compare_trees(&self, native: &Path, view: &Path, what: &str) {
        let a = comparable(&snapshot(native), &self.native.clock);
        let b = comparable(&snapshot(view), &self.view.clock);
        let lines = diff(&a, &b);
        if !lines.is_empty() {
            let shown: Vec<String> = lines.iter().take(40).map(|l| format!("  {l}")).collect();
            panic!(
                "{}{}",
                self.report(&format!(
                    "{what}: the trees differ after {} operations (a = native, b = view; {} differences):\n{}",
                    self.tally.ops,
                    lines.len(),
                    shown.join("\n")
                )),
                split_links(&a, &b, native, view)
            );
        }
        for (path, e) in a.iter() {
            if e.kind == Kind::Dir {
                let n = |root: &Path| {
                    let p = if path.as_os_str().is_empty() {
                        root.to_path_buf()
                    } else {
                        root.join(path)
                    };
                    std::fs::symlink_metadata(&p).map(|m| std::os::unix::fs::MetadataExt::nlink(&m))
                };
                let (x, y) = (n(native).ok(), n(view).ok());
                if x != y {
                    panic!(
                        "{}",
                        self.report(&format!(
                            "{what}: directory {} has {x:?} links natively, {y:?} in the view",
                            show(path)
                        ))
                    );
                }
            }
        }
    }
}

/// A tree with the mtimes set during the run blanked (only "recent" is
/// compared for them: both trees did the same thing a moment apart), and
/// those of FIFOs (see `ops::St::mtime`).
/// For a hard-link group split or merged on one side: each name's inode
/// number and link count on both sides, as seen now (to tell a view that
/// shows one inode as two nodes from a tree that has two inodes).
fn split_links(a: &Tree, b: &Tree, native: &Path, view: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let mut out = String::new();
    let ino = |root: &Path, p: &Path| match std::fs::symlink_metadata(root.join(p)) {
        Ok(m) => format!("ino {} nlink {}", m.ino(), m.nlink()),
        Err(e) => format!("{e}"),
    };
    for (path, e) in a.iter() {
        let other = b.get(path).and_then(|f| f.link_group.clone());
        if e.link_group == other {
            continue;
        }
        let names: std::collections::BTreeSet<std::path::PathBuf> = [Some(path.clone()), e.link_group.clone(), other]
            .into_iter()
            .flatten()
            .collect();
        for p in names {
            out += &format!(
                "\n  {}: native {}, view {}",
                p.display(),
                ino(native, &p),
                ino(view, &p)
            );
        }
    }
    if out.is_empty() {
        out
    } else {
        format!("\nhard-link groups that differ, as they are now:{out}")
    }
}

pub fn comparable(t: &Tree, clock: &Clock) -> Tree {
    t.normalized(|_, e| {
        let (s, ns) = (
            e.mtime_ns.div_euclid(1_000_000_000),
            e.mtime_ns.rem_euclid(1_000_000_000),
        );
        if e.kind == Kind::Fifo || clock.is_recent(s as i64, ns as i64) {
            e.mtime_ns = 0;
        }
    })
}
