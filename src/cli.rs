//! The command line of `graph2aufs`: its clap definition with every word of
//! its help, and the checks of its input (ranges, rates, `RUST_LOG`). The
//! binary parses with it; the man pages and shell completions are generated
//! from it ([`crate::docs`]). `g2a-genroot` (the generator, a crate of its
//! own) uses the helpers: [`parse`], [`check_logging`], [`table`].

use clap::builder::RangedU64ValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::path::PathBuf;

/// Item states, one vocabulary everywhere (`status`, `--json`, logs).
pub const STATES: [(&str, &str); 8] = [
    ("pending", "not migrated yet"),
    ("moving", "its data is being moved into aufs/diff (under a live view)"),
    (
        "copying",
        "its data is being copied to aufs/ on another file system (under a live view; with bytes, rate and ETA)",
    ),
    (
        "registered",
        "migrated: aufs/diff/<id> holds its data, aufs/layers/<id> names its chain",
    ),
    (
        "fallback",
        "registered through a symlink at aufs/diff/<id> while its data is busy (with the reason); moved once free",
    ),
    (
        "quarantined",
        "broken (with the reason): its data moved, untouched, to ROOT/.graph2aufs/quarantine/",
    ),
    (
        "failed",
        "not migrated this time (with the reason); the next run tries again",
    ),
    (
        "removed",
        "migrated by graph2aufs, then removed by the daemon (an interrupted docker rm or rmi left its graph/ or \
         containers/ directory): reported, never made again",
    ),
];

/// Exit codes, for all commands.
pub const EXIT_CODES: [(&str, &str); 3] = [
    ("0", "everything done"),
    (
        "1",
        "done what could be done, and problems were found and reported: quarantined or failed items, \
         a repositories conflict, verify problems, refused rollbacks; status also while items are \
         not migrated yet",
    ),
    (
        "2",
        "usage or environment error: bad arguments or RUST_LOG, no ROOT, no permission, no /dev/fuse, \
         ROOT locked by another graph2aufs or covered by a live view. Under --json the error is a JSON \
         document too: {\"error\": {\"message\": ..., \"kind\": ..., \"exit_code\": 2}}",
    ),
];

const EXIT_2: &str = "usage or environment error (see graph2aufs --help)";

/// What each command's exit codes mean for it.
pub fn exit_codes(command: &str) -> Vec<(&'static str, &'static str)> {
    let (zero, one) = match command {
        "plan" => (
            "nothing to report: every item can be migrated as it is",
            Some("problems found and reported: items to quarantine, failed items, notes, a repositories conflict"),
        ),
        "migrate" => (
            "every item is registered",
            Some(
                "done what could be done; problems reported: quarantined or failed items, a repositories \
                 conflict, notes",
            ),
        ),
        "status" => (
            "every item is registered (under a live view: the view has migrated everything)",
            Some(
                "an item is not migrated yet (pending, as on a root not migrated yet; moving, copying or \
                 fallback under a live view), or is quarantined or failed; notes; a live view still migrating",
            ),
        ),
        "verify" => (
            "ROOT is a complete, consistent aufs layout",
            Some("problems found, each listed"),
        ),
        "rollback" => (
            "everything graph2aufs migrated is back in the legacy layout (or it had migrated nothing)",
            Some("some items refused, each listed with the reason; the rest is back"),
        ),
        "mount" => (
            "the view was usable: with --daemon, it is served in the background; in the foreground, it \
             was served, then unmounted cleanly",
            None,
        ),
        _ => return EXIT_CODES.to_vec(),
    };
    let mut v = vec![("0", zero)];
    v.extend(one.map(|o| ("1", o)));
    v.push(("2", EXIT_2));
    v
}

/// Environment variables a user may set.
pub const ENVIRONMENT: [(&str, &str); 2] = [
    (
        "RUST_LOG",
        "which log lines go to standard error (default: info): a level (off, error, warn, info, debug, \
         trace), TARGET=LEVEL directives separated by commas (e.g. info,graph2aufs::view=debug), or a \
         target alone; a directive that does not parse is an error",
    ),
    (
        "GRAPH2AUFS_DIR_FDS",
        "directories the view keeps open at most (default: half the descriptor limit); others are \
         reopened from their file handles",
    ),
];

/// graph2aufs's own files under ROOT.
pub const FILES: [(&str, &str); 4] = [
    ("ROOT/.graph2aufs/lock", "one graph2aufs at a time per ROOT"),
    (
        "ROOT/.graph2aufs/record.json",
        "what graph2aufs migrated and what was there before (for status and rollback)",
    ),
    (
        "ROOT/.graph2aufs/status.json",
        "a read-write view's live progress (for status)",
    ),
    ("ROOT/.graph2aufs/quarantine/", "broken items' data, untouched"),
];

/// `rows` as an indented two-column table under `title`, wrapped for an
/// 80-column terminal.
pub fn table(title: &str, rows: &[(&str, &str)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0).min(12);
    let mut out = format!("{title}:\n");
    for (key, text) in rows {
        let indent = 2 + width + 2;
        let mut line = format!("  {key:<width$}  ");
        if key.len() > width {
            line = format!("  {key}\n{}", " ".repeat(indent));
        }
        let mut col = indent;
        for (i, word) in text.split_whitespace().enumerate() {
            if i > 0 && col + 1 + word.len() > 79 {
                line.push('\n');
                line.push_str(&" ".repeat(indent));
                col = indent;
            } else if i > 0 {
                line.push(' ');
                col += 1;
            }
            line.push_str(word);
            col += word.len();
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn top_after_help() -> String {
    format!(
        "{}\n{}\n{}",
        table("Item states", &STATES),
        table("Exit status", &EXIT_CODES),
        table("Environment", &ENVIRONMENT)
    )
}

fn after_help(command: &str) -> String {
    let exit = table("Exit status", &exit_codes(command));
    match command {
        "plan" | "migrate" | "status" => format!("{}\n{exit}", table("Item states", &STATES)),
        _ => exit,
    }
}

#[derive(Parser)]
#[command(
    name = "graph2aufs",
    version,
    about = "Migrate a legacy (pre-0.7) Docker root to the aufs driver layout",
    long_about = "Migrate a legacy (pre-0.7) Docker root (graph/<id>/layer, containers/<id>/rw) to the \
                  layout of Docker's aufs storage driver (aufs/diff, aufs/layers, aufs/mnt): offline with \
                  `migrate`, or live with `mount`, whose FUSE view shows ROOT as it will look after \
                  migration at once while graph2aufs migrates in the background. Every step is crash safe \
                  (run it again after a kill: same result), broken items are quarantined, and `rollback` \
                  puts migrated items back.",
    after_help = top_after_help(),
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// ROOT, and where its `aufs/` is.
#[derive(Args)]
pub struct Target {
    /// The Docker root (e.g. /var/lib/docker): it holds graph/ and containers/, and aufs/ once migrated
    pub root: PathBuf,
    /// The native aufs/ on another file system: ROOT/aufs is (or becomes) a symlink to exactly this
    /// directory; name it every time once used
    #[arg(long, value_name = "DIR")]
    pub aufs_dir: Option<PathBuf>,
}

/// How a report is printed.
#[derive(Args)]
pub struct Output {
    /// Print one JSON document on standard output instead of text (errors too, as {"error": {...}})
    #[arg(long)]
    pub json: bool,
}

/// A report's list of items.
#[derive(Args)]
pub struct Listing {
    /// List every item in the text output, not only those with problems (JSON always lists every item)
    #[arg(long)]
    pub all: bool,
}

/// What `plan` and `status` take, and `migrate` with more.
#[derive(Args)]
pub struct Report {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub output: Output,
    #[command(flatten)]
    pub listing: Listing,
}

/// Copies to another file system.
#[derive(Args)]
pub struct Copying {
    /// At most RATE bytes per second for copies to another file system, with an optional K, M or G
    /// suffix (powers of 1024), e.g. 50M; 0 or none: unthrottled (the default)
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub copy_rate: Option<u64>,
}

/// How FUSE requests reach a view (`mount --transport`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// FUSE over io_uring where the kernel offers it, /dev/fuse otherwise
    Auto,
    /// FUSE over io_uring; the mount fails where the kernel does not offer it
    Uring,
    /// read(2) and write(2) on /dev/fuse
    Classic,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Auto => "auto",
            Transport::Uring => "uring",
            Transport::Classic => "classic",
        }
    }
}

/// Most items in one batch: its record, held in memory, grows with it.
pub const MAX_BATCH: u64 = 1_000_000;
/// Most threads serving the view.
pub const MAX_THREADS: u64 = 1024;

#[derive(Subcommand)]
pub enum Command {
    /// Print what migrate will do and every anomaly found; writes nothing
    #[command(
        long_about = "Read ROOT and print what `migrate` will do with every item (its state and action) and \
                      every anomaly found (broken items, tags naming no usable image, a repositories \
                      conflict). Writes nothing, not even access times.",
        after_help = after_help("plan")
    )]
    Plan {
        #[command(flatten)]
        report: Report,
    },
    /// Migrate offline (the daemon stopped); crash safe, resumable and idempotent
    #[command(
        long_about = "Migrate ROOT offline, with the Docker daemon stopped: move each layer's data to \
                      aufs/diff (by rename, or by a checked copy when aufs/ is another file system), \
                      register it (aufs/layers, aufs/mnt), build each container's init layer, rename \
                      repositories to repositories-aufs, and move broken items to \
                      ROOT/.graph2aufs/quarantine/. Killed anywhere, a second run finishes with the same \
                      result. A progress bar on a terminal, log lines otherwise.",
        after_help = after_help("migrate")
    )]
    Migrate {
        #[command(flatten)]
        report: Report,
        /// Items per batch, each with one durable record write and one sync (1 to 1,000,000)
        #[arg(
            long,
            value_name = "N",
            default_value_t = crate::migrate::BATCH as u64,
            value_parser = RangedU64ValueParser::<u64>::new().range(1..=MAX_BATCH)
        )]
        batch: u64,
        #[command(flatten)]
        copying: Copying,
    },
    /// Mount the view: ROOT as it will look after migration
    #[command(
        long_about = "Mount a FUSE view of ROOT as it will look after migration, at MOUNTPOINT. Read-write \
                      (the default, for a live upgrade): the Docker daemon runs on the view at once while \
                      graph2aufs migrates every item in the background; once everything is migrated the \
                      view is pure passthrough, and unmounting it leaves the native layout. --read-only \
                      writes nothing to ROOT, and aufs/mnt/<id> shows each layer's merged root file \
                      system. Serves in the foreground until SIGINT, SIGTERM or umount; --daemon returns \
                      once the view is usable. Prints, on standard output: with --daemon, the server's \
                      pid; with --json, one document once the view is usable: {\"root\": ..., \
                      \"mountpoint\": ..., \"pid\": ..., \"read_only\": ..., \"mounted\": true}; where a \
                      read-write mount finds nothing left to migrate it mounts nothing and exits 0 (the view \
                      has retired): {..., \"mounted\": false, \"reason\": ...}, no pid. Logs go to standard \
                      error (or --log-file; with --daemon, the system log).",
        after_help = after_help("mount")
    )]
    Mount {
        #[command(flatten)]
        target: Target,
        /// Where to mount: ROOT itself (the default: the live upgrade), or an empty directory outside ROOT
        mountpoint: Option<PathBuf>,
        /// Never write to ROOT; aufs/mnt/<id> shows each layer's merged root file system
        #[arg(long)]
        read_only: bool,
        /// Serve in the foreground until unmounted (the default)
        #[arg(long, conflicts_with = "daemon")]
        foreground: bool,
        /// Return once the view is usable, leaving its server in the background (its pid is printed)
        #[arg(long)]
        daemon: bool,
        /// Append the server's logs to this file [default: standard error; with --daemon, the journal
        /// under systemd, else the system log]
        #[arg(long, value_name = "PATH")]
        log_file: Option<PathBuf>,
        /// Let users other than the caller use a read-only view (a read-write view always lets them;
        /// permissions are checked as natively)
        #[arg(long)]
        allow_other: bool,
        /// Threads serving the view, 1 to 1024 [default: twice the number of CPUs]; over io_uring, N/CPUs
        /// (at least one) for each CPU's queue
        #[arg(long, value_name = "N", value_parser = RangedU64ValueParser::<u64>::new().range(1..=MAX_THREADS))]
        threads: Option<u64>,
        /// Serve file data through graph2aufs instead of kernel FUSE passthrough
        #[arg(long)]
        no_passthrough: bool,
        /// How FUSE requests reach the view: uring (FUSE over io_uring, Linux 6.14+, enabled by writing Y
        /// to /sys/module/fuse/parameters/enable_uring), classic (/dev/fuse), or auto: uring where the
        /// kernel offers it
        #[arg(long, value_name = "T", value_enum, default_value_t = Transport::Auto)]
        transport: Transport,
        /// Internal: the descriptor on which a --daemon parent waits for "ready".
        #[arg(long, hide = true)]
        ready_fd: Option<i32>,
        #[command(flatten)]
        copying: Copying,
        #[command(flatten)]
        output: Output,
    },
    /// Per item: pending, moving, copying, registered, fallback, quarantined, failed, removed (with reasons); totals
    #[command(
        long_about = "Print each item's state, read from the disk (or, while a read-write view serves ROOT, \
                      the view's live progress), with the reason where there is one, and the totals. The \
                      text lists the items with problems (every item with --all).",
        after_help = after_help("status")
    )]
    Status {
        #[command(flatten)]
        report: Report,
    },
    /// Check that ROOT is a complete, consistent aufs layout; list every problem
    #[command(after_help = after_help("verify"))]
    Verify {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        output: Output,
    },
    /// Put what graph2aufs migrated back in the legacy layout
    #[command(
        long_about = "Put every item graph2aufs migrated back in the legacy layout, remove only what it \
                      created, and refuse, with the reason, what cannot be put back losslessly (a layer a \
                      newer one builds on, a layer copied to another file system).",
        after_help = after_help("rollback")
    )]
    Rollback {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        output: Output,
    },
    /// Write the man pages and shell completions (bash, zsh, fish) of graph2aufs into DIR
    #[command(hide = true)]
    GenerateDocs {
        /// Where to write man/*.1 and completions/{bash,zsh,fish}/
        dir: PathBuf,
    },
}

impl Command {
    /// Whether the command prints JSON.
    pub fn json(&self) -> bool {
        match self {
            Command::Plan { report } | Command::Migrate { report, .. } | Command::Status { report } => {
                report.output.json
            }
            Command::Mount { output, .. } | Command::Verify { output, .. } | Command::Rollback { output, .. } => {
                output.json
            }
            Command::GenerateDocs { .. } => false,
        }
    }
}

/// A rate in bytes per second: a number with an optional K, M or G suffix
/// (powers of 1024).
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_uppercase();
    let (num, shift) = match t.as_bytes().last() {
        Some(b'K') => (&t[..t.len() - 1], 10),
        Some(b'M') => (&t[..t.len() - 1], 20),
        Some(b'G') => (&t[..t.len() - 1], 30),
        _ => (&t[..], 0),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a rate in bytes per second (e.g. 50M)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is more bytes per second than graph2aufs counts"))
}

/// The command line parsed, or the program ended: with its help or version
/// (exit code 0), or with what is wrong (exit code 2), under `--json` as a
/// JSON document on standard output too.
pub fn parse<P: Parser>() -> P {
    let args: Vec<OsString> = std::env::args_os().collect();
    match P::try_parse_from(&args) {
        Ok(p) => p,
        Err(e) if !json_requested(&args) || !e.use_stderr() => e.exit(),
        Err(e) => {
            let rendered = e.render().to_string();
            // Its first line says what is wrong; the usage follows.
            let message = rendered.lines().next().unwrap_or("").trim_start_matches("error: ");
            eprint!("{rendered}");
            crate::report::print_error_json(message, "usage");
            std::process::exit(2)
        }
    }
}

/// Whether `--json` is on the command line (before any `--`), for errors
/// found before the arguments are parsed.
pub fn json_requested(args: &[OsString]) -> bool {
    args.iter().skip(1).take_while(|a| *a != "--").any(|a| a == "--json")
}

/// Log targets of this program, and of g2a-genroot (which checks its
/// `RUST_LOG` here): the crates that log.
const LOG_CRATES: [&str; 3] = ["graph2aufs", "g2a_genroot", "fuser"];

/// Checks a `RUST_LOG` value: every directive must parse, and a word alone
/// must be a level or a target of this program (a word env_logger would
/// take for an unknown target silently turns every log line off).
pub fn check_log_spec(spec: &str) -> Result<(), String> {
    let bad = |what: String| Err(format!("RUST_LOG={spec:?}: {what}"));
    if let Err(e) = env_filter::Builder::new().try_parse(spec) {
        return bad(e.to_string());
    }
    let directives = spec.split('/').next().unwrap_or("");
    for d in directives.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if d.contains('=') || d.parse::<log::LevelFilter>().is_ok() {
            continue;
        }
        let krate = d.split("::").next().unwrap_or(d);
        if !LOG_CRATES.contains(&krate) {
            return bad(format!(
                "{d:?} is neither a level (off, error, warn, info, debug, trace) nor a log target of \
                 graph2aufs ({}), nor TARGET=LEVEL",
                LOG_CRATES.join(", ")
            ));
        }
    }
    Ok(())
}

/// The log filter in force: `RUST_LOG`, or `default` where it is not set;
/// an error naming what does not parse.
pub fn check_logging(default: &str) -> Result<String, String> {
    let spec = match std::env::var("RUST_LOG") {
        Ok(s) => s,
        Err(std::env::VarError::NotPresent) => default.to_string(),
        Err(std::env::VarError::NotUnicode(s)) => return Err(format!("RUST_LOG={s:?} is not UTF-8")),
    };
    check_log_spec(&spec)?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_take_suffixes_and_refuse_overflow() {
        assert_eq!(parse_rate("0"), Ok(0));
        assert_eq!(parse_rate("50M"), Ok(50 << 20));
        assert_eq!(parse_rate("2k"), Ok(2048));
        assert_eq!(parse_rate(" 1G"), Ok(1 << 30));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("-1").is_err());
        assert!(parse_rate("99999999999G").is_err());
    }

    #[test]
    fn log_specs_that_do_not_parse_are_refused() {
        for good in [
            "",
            "info",
            "WARN",
            "off",
            "graph2aufs=debug,fuser=error",
            "graph2aufs::view",
            "x=info",
        ] {
            assert_eq!(check_log_spec(good), Ok(()), "{good}");
        }
        for bad in ["verbose", "graph2aufs=loud", "a=b=c", "info/(", "a/b/c", "graph2auf"] {
            let e = check_log_spec(bad).expect_err(bad);
            assert!(e.contains("RUST_LOG"), "{e}");
        }
    }

    #[test]
    fn json_is_seen_before_a_double_dash_only() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(json_requested(&args(&["g", "plan", "r", "--json"])));
        assert!(!json_requested(&args(&["g", "plan", "--", "--json"])));
        assert!(!json_requested(&args(&["--json"])));
    }

    #[test]
    fn help_tables_fit_80_columns() {
        for line in top_after_help().lines().chain(after_help("status").lines()) {
            assert!(line.len() <= 80, "{line:?}");
        }
    }
}
