//! g2a-genroot: generates a realistic legacy (pre-0.7) Docker root, the same for
//! the same options, for tests and benchmarks of graph2aufs. A run that fails
//! or is interrupted (SIGINT, SIGTERM, SIGHUP) exits 2 and leaves nothing
//! behind.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use graph2aufs::cli::Genroot;
use graph2aufs::generate::{generate_until, Options};
use graph2aufs::report::{count, print_error_json};

fn main() -> ExitCode {
    let args: Genroot = graph2aufs::cli::parse();
    let fail = |message: String, kind: &str| {
        eprintln!("g2a-genroot: {message}");
        if args.json {
            print_error_json(&message, kind);
        }
        ExitCode::from(2)
    };
    if let Err(message) = graph2aufs::cli::init_logging("warn") {
        return fail(message, "environment");
    }
    let opts = Options {
        seed: args.seed,
        images: args.images,
        max_chain: args.max_chain,
        containers: args.containers,
        entries_per_layer: args.entries_per_layer,
        broken: args.broken,
        docker18: args.docker18,
        debian_base: args.debian_base.clone(),
    };
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
    let summary = match generate_until(&args.root, &opts, &stop) {
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
            args.root.display(),
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
