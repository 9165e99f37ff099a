//! The `graph2aufs` command line.

use clap::{Parser, Subcommand};
use graph2aufs::error::{Error, Result};
use graph2aufs::plan::State;
use graph2aufs::record::Record;
use graph2aufs::report::Document;
use graph2aufs::root::Root;
use graph2aufs::{legacy, migrate, plan, rollback, verify};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "graph2aufs",
    version,
    about = "Migrate a legacy (pre-0.7) Docker root to the aufs driver layout"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print what migration will do and every anomaly found; writes nothing.
    Plan {
        root: PathBuf,
        /// The native aufs/ on another file system: ROOT/aufs is (or becomes) a symlink to exactly this directory.
        #[arg(long, value_name = "DIR")]
        aufs_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        /// List every item, not only those with problems.
        #[arg(long)]
        all: bool,
    },
    /// Migrate offline (the daemon stopped); resumable and idempotent.
    Migrate {
        root: PathBuf,
        /// The native aufs/ on another file system: ROOT/aufs is (or becomes) a symlink to exactly this directory.
        #[arg(long, value_name = "DIR")]
        aufs_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        #[arg(long)]
        all: bool,
        /// Items per batch (one record write and one sync per batch).
        #[arg(long, default_value_t = migrate::BATCH)]
        batch: usize,
        /// Bytes per second at most for copies to another file system
        /// (suffixes K, M, G; default unthrottled).
        #[arg(long, value_parser = parse_rate, default_value = "0")]
        copy_rate: u64,
    },
    /// Mount the view: ROOT as it will look after migration.
    Mount {
        root: PathBuf,
        /// Where to mount (default: ROOT itself).
        mountpoint: Option<PathBuf>,
        /// The native aufs/ on another file system: ROOT/aufs is (or becomes) a symlink to exactly this directory.
        #[arg(long, value_name = "DIR")]
        aufs_dir: Option<PathBuf>,
        /// Never write to ROOT; aufs/mnt/<id> shows each layer's merged root filesystem.
        #[arg(long)]
        read_only: bool,
        /// Serve in the foreground until unmounted (the default).
        #[arg(long, conflicts_with = "daemon")]
        foreground: bool,
        /// Return once the view is usable, serving from a background process (its pid is printed).
        #[arg(long)]
        daemon: bool,
        /// Append the server's logs to this file (default with --daemon: the journal under systemd, else the system log).
        #[arg(long, value_name = "PATH")]
        log_file: Option<std::path::PathBuf>,
        /// Let other users use the view (with default_permissions).
        #[arg(long)]
        allow_other: bool,
        /// Worker threads (default: twice the number of CPUs).
        #[arg(long)]
        threads: Option<usize>,
        /// Serve file data through graph2aufs instead of kernel passthrough.
        #[arg(long)]
        no_passthrough: bool,
        #[arg(long, hide = true)]
        ready_fd: Option<i32>,
        /// Bytes per second at most for copies to another file system
        /// (suffixes K, M, G; default unthrottled).
        #[arg(long, value_parser = parse_rate, default_value = "0")]
        copy_rate: u64,
    },
    /// Per item: pending, registered, fallback, quarantined, failed; totals.
    Status {
        root: PathBuf,
        /// The native aufs/ on another file system: ROOT/aufs is (or becomes) a symlink to exactly this directory.
        #[arg(long, value_name = "DIR")]
        aufs_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        #[arg(long)]
        all: bool,
    },
    /// Check that ROOT is a complete, consistent aufs layout.
    Verify {
        root: PathBuf,
        /// The native aufs/ on another file system: ROOT/aufs is (or becomes) a symlink to exactly this directory.
        #[arg(long, value_name = "DIR")]
        aufs_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Put migrated items back in the legacy layout.
    Rollback {
        root: PathBuf,
        /// The native aufs/ on another file system: ROOT/aufs is (or becomes) a symlink to exactly this directory.
        #[arg(long, value_name = "DIR")]
        aufs_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    graph2aufs::view::daemon::init_logging();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Mount { .. }) {
        // Reports piped into `head` end quietly, as other tools do. (The
        // mount server keeps Rust's default: a closed pipe must not kill it.)
        // SAFETY: setting a signal's disposition to the default has no
        // preconditions; no other thread runs yet.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match run(cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("graph2aufs: {e}");
            ExitCode::from(2)
        }
    }
}

/// ROOT, with the `--aufs-dir` the operator named.
fn open_root(root: &std::path::Path, aufs_dir: Option<&std::path::Path>) -> Result<Root> {
    let root = Root::open(root)?;
    match aufs_dir {
        Some(d) => root.with_aufs_dir(d),
        None => Ok(root),
    }
}

fn scan_plan(root: &Root) -> Result<plan::Plan> {
    let record = Record::load(root)?;
    let scan = legacy::scan(root).map_err(|e| Error::io(format!("reading {}", root.path().display()), e))?;
    Ok(plan::plan(&scan, &record))
}

/// A rate in bytes per second: a number with an optional K, M or G suffix
/// (powers of 1024).
fn parse_rate(s: &str) -> std::result::Result<u64, String> {
    let (num, mul) = match s.trim().to_ascii_uppercase() {
        t if t.ends_with('K') => (t[..t.len() - 1].to_string(), 1u64 << 10),
        t if t.ends_with('M') => (t[..t.len() - 1].to_string(), 1 << 20),
        t if t.ends_with('G') => (t[..t.len() - 1].to_string(), 1 << 30),
        t => (t, 1),
    };
    num.parse::<u64>()
        .map(|n| n * mul)
        .map_err(|_| format!("{s:?} is not a rate in bytes per second (e.g. 50M)"))
}

fn emit(doc: &Document, json: bool, title: &str, all: bool) {
    if json {
        doc.print_json();
    } else {
        doc.print_text(title, all);
    }
}

fn run(command: Command) -> Result<u8> {
    match command {
        Command::Plan {
            root,
            json,
            all,
            aufs_dir,
        } => {
            let root = open_root(&root, aufs_dir.as_deref())?;
            root.refuse_if_viewed("plan", false)?;
            let plan = scan_plan(&root)?;
            let doc = Document::new(root.path(), &plan, None);
            emit(&doc, json, "plan for", all);
            Ok(u8::from(doc.has_problems()))
        }
        Command::Migrate {
            root,
            json,
            all,
            batch,
            copy_rate,
            aufs_dir,
        } => {
            let root = open_root(&root, aufs_dir.as_deref())?;
            root.refuse_if_viewed("migrate", true)?;
            // Refuse a hostile layout (a symlinked graph, containers or aufs)
            // before writing anything, even the lock.
            legacy::Dirs::open(&root).map_err(|e| Error::Env(e.to_string()))?;
            let _lock = root.lock()?;
            let start = Instant::now();
            let out = migrate::run(
                &root,
                &migrate::Options {
                    progress: !json,
                    batch,
                    copy_rate,
                },
            )?;
            let mut doc = Document::new(root.path(), &out.plan, Some(&out.results));
            doc.elapsed_s = Some(start.elapsed().as_secs_f64());
            emit(&doc, json, "migrated", all);
            Ok(u8::from(doc.has_problems()))
        }
        Command::Mount {
            root,
            mountpoint,
            read_only,
            foreground: _,
            daemon,
            allow_other,
            threads,
            no_passthrough,
            ready_fd,
            copy_rate,
            aufs_dir,
            log_file,
        } => graph2aufs::view::mount(graph2aufs::view::MountOptions {
            copy_rate,
            aufs_dir,
            log_file,
            root,
            mountpoint,
            read_only,
            daemon,
            allow_other,
            threads,
            ready_fd,
            no_passthrough,
        }),
        Command::Status {
            root,
            json,
            all,
            aufs_dir,
        } => {
            let root = open_root(&root, aufs_dir.as_deref())?;
            if let Some(doc) = graph2aufs::view::live_status(&root)? {
                emit(&doc, json, "live status of", all);
                let finished = doc.live.as_ref().is_some_and(|l| l.finished);
                return Ok(u8::from(doc.has_problems() || !finished));
            }
            root.refuse_if_viewed("status", false)?;
            let plan = scan_plan(&root)?;
            let doc = Document::new(root.path(), &plan, None);
            emit(&doc, json, "status of", all);
            Ok(u8::from(
                doc.has_problems() || doc.items.iter().any(|i| i.state != State::Registered),
            ))
        }
        Command::Verify { root, json, aufs_dir } => {
            let root = open_root(&root, aufs_dir.as_deref())?;
            root.refuse_if_viewed("verify", false)?;
            let v = verify::verify(&root)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v).expect("verdicts serialize"));
            } else {
                for p in &v.problems {
                    println!("{}: {}", p.path, p.reason);
                }
                println!(
                    "{} {}: {} images, {} containers, {} layers, {} problems",
                    if v.ok { "OK" } else { "NOT OK" },
                    v.root,
                    v.images,
                    v.containers,
                    v.layers,
                    v.problems.len()
                );
            }
            Ok(u8::from(!v.ok))
        }
        Command::Rollback { root, json, aufs_dir } => {
            let root = open_root(&root, aufs_dir.as_deref())?;
            root.refuse_if_viewed("rollback", true)?;
            if !Record::exists(&root) {
                root.remove_bare_lock()?;
                println!(
                    "graph2aufs has migrated nothing in {}: nothing to roll back",
                    root.path().display()
                );
                return Ok(0);
            }
            let lock = root.lock()?;
            let rep = rollback::rollback(&root)?;
            drop(lock);
            if json {
                println!("{}", serde_json::to_string_pretty(&rep).expect("reports serialize"));
            } else {
                for r in &rep.refused {
                    println!("refused {}: {}", r.path, r.reason);
                }
                println!(
                    "rolled back {} items of {}, refused {}",
                    rep.restored.len(),
                    rep.root,
                    rep.refused.len()
                );
            }
            Ok(u8::from(!rep.refused.is_empty()))
        }
    }
}
