//! The `graph2aufs` command line: parses it (definitions in
//! [`graph2aufs::cli`]), runs the command, prints its report, and maps the
//! outcome to the exit code (0 done, 1 problems reported, 2 errors; under
//! `--json` every outcome, errors included, is one JSON document).

use graph2aufs::cli::{Cli, Command, Copying, Report, Target};
use graph2aufs::error::{Error, Result};
use graph2aufs::record::Record;
use graph2aufs::report::{self, Document};
use graph2aufs::root::Root;
use graph2aufs::{legacy, migrate, plan, rollback, verify};
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let cli: Cli = graph2aufs::cli::parse();
    let json = cli.command.json();
    if let Err(message) = graph2aufs::cli::check_logging(graph2aufs::view::daemon::FILTER) {
        report::print_error(&Error::Env(message), json);
        return ExitCode::from(2);
    }
    graph2aufs::view::daemon::init_logging();
    if !matches!(cli.command, Command::Mount { .. }) {
        // Reports piped into `head` end quietly, as other tools do. (The
        // mount server keeps Rust's default: a closed pipe must not kill it.)
        graph2aufs::sys::process::default_sigpipe();
    }
    match run(cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            report::print_error(&e, json);
            ExitCode::from(2)
        }
    }
}

/// ROOT, with the `--aufs-dir` the operator named.
fn open_root(target: &Target) -> Result<Root> {
    let root = Root::open(&target.root)?;
    match &target.aufs_dir {
        Some(d) => root.with_aufs_dir(d),
        None => Ok(root),
    }
}

fn scan_plan(root: &Root) -> Result<plan::Plan> {
    let record = Record::load(root)?;
    let scan = legacy::scan(root).map_err(|e| Error::io(format!("reading {}", root.path().display()), e))?;
    Ok(plan::plan(&scan, &record))
}

fn emit(doc: &Document, report: &Report, title: &str) {
    if report.output.json {
        doc.print_json();
    } else {
        doc.print_text(title, report.listing.all);
    }
}

fn run(command: Command) -> Result<u8> {
    match command {
        Command::Plan { report } => {
            let root = open_root(&report.target)?;
            root.refuse_if_viewed("plan", false)?;
            let plan = scan_plan(&root)?;
            let doc = Document::new(root.path(), &plan, None);
            emit(&doc, &report, "plan for");
            Ok(u8::from(doc.has_problems()))
        }
        Command::Migrate {
            report,
            batch,
            copying: Copying { copy_rate },
        } => {
            let root = open_root(&report.target)?;
            root.refuse_if_viewed("migrate", true)?;
            // Refuse a hostile layout (a symlinked graph, containers or aufs)
            // before writing anything, even the lock.
            legacy::Dirs::open(&root).map_err(|e| Error::Env(e.to_string()))?;
            let _lock = root.lock()?;
            let start = Instant::now();
            let out = migrate::run(
                &root,
                &migrate::Options {
                    progress: !report.output.json,
                    batch: usize::try_from(batch).expect("--batch is at most MAX_BATCH"),
                    copy_rate: copy_rate.unwrap_or(0),
                },
            )?;
            let mut doc = Document::new(root.path(), &out.plan, Some(&out.results));
            doc.elapsed_s = Some(start.elapsed().as_secs_f64());
            emit(&doc, &report, "migrated");
            Ok(u8::from(doc.has_problems()))
        }
        Command::Mount {
            target: Target { root, aufs_dir },
            mountpoint,
            read_only,
            foreground: _,
            daemon,
            allow_other,
            threads,
            no_passthrough,
            transport,
            ready_fd,
            log_file,
            copying: Copying { copy_rate },
            output,
        } => graph2aufs::view::mount(graph2aufs::view::MountOptions {
            copy_rate: copy_rate.unwrap_or(0),
            aufs_dir,
            log_file,
            root,
            mountpoint,
            read_only,
            daemon,
            allow_other,
            threads: threads.map(|t| usize::try_from(t).expect("--threads is at most MAX_THREADS")),
            ready_fd,
            no_passthrough,
            transport,
            json: output.json,
        }),
        Command::Status { report } => {
            let root = open_root(&report.target)?;
            if let Some(doc) = graph2aufs::view::live_status(&root)? {
                emit(&doc, &report, "live status of");
                let finished = doc.live.as_ref().is_some_and(|l| l.finished);
                return Ok(u8::from(doc.has_problems() || !finished));
            }
            root.refuse_if_viewed("status", false)?;
            let plan = scan_plan(&root)?;
            let doc = Document::new(root.path(), &plan, None);
            emit(&doc, &report, "status of");
            Ok(u8::from(
                doc.has_problems() || doc.items.iter().any(|i| !i.state.settled()),
            ))
        }
        Command::Verify { target, output } => {
            let root = open_root(&target)?;
            root.refuse_if_viewed("verify", false)?;
            let v = verify::verify(&root)?;
            report::print_verdict(&v, output.json);
            Ok(u8::from(!v.ok))
        }
        Command::Rollback { target, output } => {
            let root = open_root(&target)?;
            root.refuse_if_viewed("rollback", true)?;
            if !Record::exists(&root) {
                root.remove_bare_lock()?;
                if output.json {
                    let nothing = rollback::RollbackReport {
                        root: graph2aufs::names::escape_os(root.path().as_os_str()),
                        ..Default::default()
                    };
                    report::print_rollback(&nothing, true);
                } else {
                    println!(
                        "graph2aufs has migrated nothing in {}: nothing to roll back",
                        root.path().display()
                    );
                }
                return Ok(0);
            }
            let lock = root.lock()?;
            let rep = rollback::rollback(&root)?;
            drop(lock);
            report::print_rollback(&rep, output.json);
            Ok(u8::from(!rep.refused.is_empty()))
        }
        Command::GenerateDocs { dir } => {
            let written =
                graph2aufs::docs::generate(&dir).map_err(|e| Error::io(format!("writing {}", dir.display()), e))?;
            for path in written {
                println!("{}", path.display());
            }
            Ok(0)
        }
    }
}
