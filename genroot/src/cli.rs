//! `g2a-genroot`'s command line (the program's, `main.rs`; not part of the
//! library): its clap definition, its man page and shell completions
//! (`g2a-genroot --generate-docs DIR`, run by `scripts/install`).

use std::io;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser};
use g2a_genroot::Options;
use graph2aufs::cli::table;
use graph2aufs::docs::{program, rows, see_also, write_docs};

/// What the exit codes mean.
const EXIT_CODES: [(&str, &str); 2] = [
    ("0", "the root is generated"),
    ("2", "it could not be (the reason on standard error)"),
];

/// `g2a-genroot`'s command line.
#[derive(Parser)]
#[command(
    name = "g2a-genroot",
    version,
    about = "Generate a deterministic legacy (pre-0.7) Docker root",
    long_about = "Generate a realistic legacy (pre-0.7) Docker root, the same for the same options: images \
                  in chains, containers (started or not), optionally one broken item of each kind and \
                  Docker 1.8's half-migrated layers. For graph2aufs's tests, demo and benchmarks.",
    after_help = table("Exit status", &EXIT_CODES),
)]
pub struct Genroot {
    /// Where to create the root (created if missing; must be empty)
    // (An Option only for --generate-docs, which needs no ROOT.)
    #[arg(required = true)]
    pub root: Option<PathBuf>,
    /// Seed of every random choice: the same seed and options give the same root
    #[arg(long, value_name = "N", default_value_t = Options::default().seed)]
    pub seed: u64,
    /// Good images, in several chains
    #[arg(long, value_name = "N", default_value_t = Options::default().images)]
    pub images: usize,
    /// Deepest chain of good images
    #[arg(long, value_name = "N", default_value_t = Options::default().max_chain)]
    pub max_chain: usize,
    /// Good containers (about a third never started)
    #[arg(long, value_name = "N", default_value_t = Options::default().containers)]
    pub containers: usize,
    /// Approximate entries per layer (0: tiny layers of a few files)
    #[arg(long, value_name = "N", default_value_t = Options::default().entries_per_layer)]
    pub entries_per_layer: usize,
    /// Add one broken item of each kind (and ROOT.outside next to ROOT)
    #[arg(long)]
    pub broken: bool,
    /// Leave some images half-migrated by Docker 1.8 (aufs/diff symlinks)
    #[arg(long)]
    pub docker18: bool,
    /// A Debian tree made by scripts/debian-base, copied as a base image's layer
    #[arg(long, value_name = "DIR")]
    pub debian_base: Option<PathBuf>,
    /// Print the summary as one JSON document
    #[arg(long)]
    pub json: bool,
    /// Write g2a-genroot's man page and shell completions (bash, zsh, fish) into DIR
    #[arg(long, value_name = "DIR", hide = true, exclusive = true)]
    pub generate_docs: Option<PathBuf>,
}

impl Genroot {
    /// The generator's options.
    pub fn options(&self) -> Options {
        Options {
            seed: self.seed,
            images: self.images,
            max_chain: self.max_chain,
            containers: self.containers,
            entries_per_layer: self.entries_per_layer,
            broken: self.broken,
            docker18: self.docker18,
            debian_base: self.debian_base.clone(),
        }
    }
}

/// Writes g2a-genroot's man page (`dir/man/g2a-genroot.1`) and completions
/// (`dir/completions/{bash,zsh,fish}/`); returns their paths.
pub fn generate_docs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let genroot = program(Genroot::command());
    let sections = vec![
        ("EXIT STATUS", rows(&EXIT_CODES)),
        see_also(&["graph2aufs".to_string()]),
    ];
    write_docs(dir, &genroot, vec![(genroot.clone(), sections)])
}
