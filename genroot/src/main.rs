//! g2a-genroot: generates a realistic legacy (pre-0.7) Docker root, the same for
//! the same options, for tests and benchmarks of graph2aufs. A run that fails
//! or is interrupted (SIGINT, SIGTERM, SIGHUP) exits 2 and leaves nothing
//! behind.

mod cli;

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use cli::Genroot;
use g2a_genroot::generate_until;
use graph2aufs::report::print_error_json;
use graph2aufs::units::count;

fn main() -> ExitCode {
    let args: Genroot = graph2aufs::cli::parse();
    let fail = |message: String, kind: &str| {
        eprintln!("g2a-genroot: {message}");
        if args.json {
            print_error_json(&message, kind);
        }
        ExitCode::from(2)
    };
    match graph2aufs::cli::check_logging("warn") {
        Ok(spec) => env_logger::Builder::new().parse_filters(&spec).init(),
        Err(message) => return fail(message, "environment"),
    }
    if let Some(dir) = &args.generate_docs {
        return match cli::generate_docs(dir) {
            Ok(written) => {
                for path in written {
                    println!("{}", path.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(format!("writing {}: {e}", dir.display()), "io"),
        };
    }
    let root = args
        .root
        .as_deref()
        .expect("clap requires ROOT without --generate-docs");
    // Ctrl-C, a kill or a closed terminal stops the run cleanly: what it
    // wrote is removed.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(&stop)) {
            eprintln!("g2a-genroot: cannot handle signal {signal}: {e}");
            return ExitCode::from(2);
        }
    }
    let start = Instant::now();
    let summary = match generate_until(root, &args.options(), &stop) {
        Ok(s) => s,
        Err(e) => return fail(e.to_string(), "io"),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&summary).expect("the summary is plain data")
        );
    } else {
        let started = summary.containers.iter().filter(|c| c.2).count();
        println!(
            "{}: {} ({} half-migrated by Docker 1.8), {} ({} started), {}, in {:.2} s",
            root.display(),
            count(summary.images.len(), "image"),
            summary.docker18.len(),
            count(summary.containers.len(), "container"),
            started,
            count(summary.broken.len(), "broken item"),
            start.elapsed().as_secs_f64()
        );
    }
    ExitCode::SUCCESS
}
