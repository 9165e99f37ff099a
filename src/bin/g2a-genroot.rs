//! g2a-genroot: generates a realistic legacy (pre-0.7) Docker root, the same for
//! the same options, for tests and benchmarks of graph2aufs. A run that fails
//! or is interrupted (SIGINT, SIGTERM, SIGHUP) exits 2 and leaves nothing
//! behind.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use graph2aufs::generate::{generate_until, Options};

#[derive(Parser)]
#[command(version, about = "Generate a deterministic legacy (pre-0.7) Docker root")]
struct Args {
    /// Where to create the root (created if missing; must be empty)
    root: PathBuf,
    #[arg(long, default_value_t = Options::default().seed)]
    seed: u64,
    /// Good images, in several chains
    #[arg(long, default_value_t = Options::default().images)]
    images: usize,
    /// Deepest chain of good images
    #[arg(long, default_value_t = Options::default().max_chain)]
    max_chain: usize,
    /// Good containers (about a third never started)
    #[arg(long, default_value_t = Options::default().containers)]
    containers: usize,
    /// Approximate entries per layer (0: tiny layers of a few files)
    #[arg(long, default_value_t = Options::default().entries_per_layer)]
    entries_per_layer: usize,
    /// Add one broken item of each kind (and ROOT.outside next to ROOT)
    #[arg(long)]
    broken: bool,
    /// Leave some images half-migrated by Docker 1.8 (aufs/diff symlinks)
    #[arg(long)]
    docker18: bool,
    /// A Debian tree made by scripts/debian-base, copied as a base image's layer
    #[arg(long, value_name = "DIR")]
    debian_base: Option<PathBuf>,
    /// Print the summary as JSON
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    let opts = Options {
        seed: args.seed,
        images: args.images,
        max_chain: args.max_chain,
        containers: args.containers,
        entries_per_layer: args.entries_per_layer,
        broken: args.broken,
        docker18: args.docker18,
        debian_base: args.debian_base,
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
        Err(e) => {
            eprintln!("g2a-genroot: {e}");
            return ExitCode::from(2);
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&summary).expect("the summary is plain data")
        );
    } else {
        let started = summary.containers.iter().filter(|c| c.2).count();
        println!(
            "{}: {} images ({} half-migrated by Docker 1.8), {} containers ({} started), {} broken items, in {:.2}s",
            args.root.display(),
            summary.images.len(),
            summary.docker18.len(),
            summary.containers.len(),
            started,
            summary.broken.len(),
            start.elapsed().as_secs_f64()
        );
    }
    ExitCode::SUCCESS
}
