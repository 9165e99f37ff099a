//! `mount --daemon` and where graph2aufs's logs go.
//!
//! The server runs as a child in a session of its own, its standard streams
//! away from the caller's (standard input and output on `/dev/null`,
//! standard error on the log), and tells the waiting parent through a pipe
//! that the view is usable, or that it did not mount and why: everything
//! that can fail before the view is usable is the parent's exit status.
//!
//! Logs: to `--log-file PATH` where one is named; otherwise a daemon keeps
//! the systemd journal when its standard error is one (`JOURNAL_STREAM`),
//! or writes to the system log (`/dev/log`). A process whose standard error
//! is a datagram socket writes syslog messages there.

use super::MountOptions;
use crate::error::{Error, Result, Step};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Mutex, OnceLock, RwLock};

/// The default log filter (`RUST_LOG` overrides it).
pub const FILTER: &str = "info,fuser=error";

/// The system log's socket; `GRAPH2AUFS_SYSLOG_SOCKET` names another.
const SYSLOG: &str = "/dev/log";

/// Where the descriptor of the ready pipe lands in the child.
const CHILD_READY_FD: i32 = 3;

/// `--daemon`: starts the server as a detached child and returns once it
/// says the view is usable (printing its pid), or with its reason for not
/// mounting.
pub(super) fn run_detached(opts: &MountOptions) -> Result<u8> {
    let logs = Logs::choose(opts.log_file.as_deref())?;
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(std::io::Error::from)
        .step(|| "creating a pipe".into())?;
    let exe = std::env::current_exe().step(|| "finding graph2aufs's own executable".into())?;
    // The child works from `/` (it must not keep the caller's directory
    // busy), so it gets absolute paths.
    let abs = |p: &Path| std::path::absolute(p).step(|| format!("{}", p.display()));
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("mount").arg(abs(&opts.root)?);
    if let Some(mp) = &opts.mountpoint {
        cmd.arg(abs(mp)?);
    }
    for (set, flag) in [
        (opts.read_only, "--read-only"),
        (opts.allow_other, "--allow-other"),
        (opts.no_passthrough, "--no-passthrough"),
    ] {
        if set {
            cmd.arg(flag);
        }
    }
    if let Some(t) = opts.threads {
        cmd.arg("--threads").arg(t.to_string());
    }
    cmd.arg("--transport").arg(opts.transport.name());
    if opts.copy_rate > 0 {
        cmd.arg("--copy-rate").arg(opts.copy_rate.to_string());
    }
    if let Some(d) = &opts.aufs_dir {
        cmd.arg("--aufs-dir").arg(abs(d)?);
    }
    cmd.arg("--ready-fd").arg(CHILD_READY_FD.to_string());
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(logs.stderr()?);
    let w_raw = w.as_raw_fd();
    crate::sys::process::detach_child(&mut cmd, w_raw, CHILD_READY_FD);
    let mut child = cmd.spawn().step(|| "starting the mount server".into())?;
    drop(cmd);
    drop(w);
    let mut said = String::new();
    let _ = std::fs::File::from(r).read_to_string(&mut said);
    let said = said.trim_end();
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (root, mp) = (
        canonical(&opts.root),
        canonical(opts.mountpoint.as_deref().unwrap_or(&opts.root)),
    );
    if said == "ready" {
        crate::report::MountReport::new(&root, &mp, child.id(), opts.read_only).print(opts.json, true);
        if let Logs::Nowhere(why) = &logs {
            log::warn!("the server's logs are discarded: {why}");
        }
        return Ok(0);
    }
    // It ends without a view: wait for it, so that ROOT's lock is free
    // when this command returns.
    let status = child.wait().step(|| "waiting for the mount server".into())?;
    match said.split_once(' ') {
        Some(("done", msg)) if status.success() => {
            crate::report::MountReport::retired(&root, &mp, msg).print(opts.json, false);
            Ok(0)
        }
        Some(("error", msg)) => Err(Error::Env(msg.to_string())),
        _ => Err(Error::Env(format!(
            "the mount server exited ({status}) before the view was usable{}",
            logs.hint()
        ))),
    }
}

/// Where a daemon's logs go.
enum Logs {
    File(std::fs::File, std::path::PathBuf),
    /// Its standard error is the systemd journal: kept.
    Journal,
    Syslog(UnixDatagram),
    /// Why not: no `--log-file`, no journal and no system log.
    Nowhere(String),
}

impl Logs {
    fn choose(log_file: Option<&Path>) -> Result<Logs> {
        if let Some(p) = log_file {
            return Ok(Logs::File(open_log_file(p)?, p.to_path_buf()));
        }
        if stderr_is_journal() {
            return Ok(Logs::Journal);
        }
        let path = std::env::var_os("GRAPH2AUFS_SYSLOG_SOCKET").unwrap_or_else(|| SYSLOG.into());
        let sock = UnixDatagram::unbound().and_then(|s| s.connect(&path).map(|()| s));
        match sock {
            Ok(s) => Ok(Logs::Syslog(s)),
            Err(e) => Ok(Logs::Nowhere(format!(
                "no --log-file, and no system log at {} ({e})",
                Path::new(&path).display()
            ))),
        }
    }

    fn stderr(&self) -> Result<Stdio> {
        let dup = |fd: std::os::fd::BorrowedFd| fd.try_clone_to_owned().step(|| "duplicating the log".into());
        Ok(match self {
            Logs::File(f, _) => Stdio::from(dup(f.as_fd())?),
            Logs::Journal => Stdio::inherit(),
            Logs::Syslog(s) => Stdio::from(dup(s.as_fd())?),
            Logs::Nowhere(_) => Stdio::null(),
        })
    }

    /// Where to look for the server's reason, for messages.
    fn hint(&self) -> String {
        match self {
            Logs::File(_, p) => format!("; its log: {}", p.display()),
            Logs::Journal => "; its log is in the journal".into(),
            Logs::Syslog(_) => "; its log is in the system log".into(),
            Logs::Nowhere(_) => String::new(),
        }
    }
}

fn open_log_file(p: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(p)
        .map_err(|e| Error::Env(format!("--log-file {}: {e}", p.display())))
}

/// Whether standard error is the systemd journal: systemd says so in
/// `JOURNAL_STREAM` ("<dev>:<ino>" of that stream).
fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(st) = rustix::fs::fstat(std::io::stderr()) else {
        return false;
    };
    v.to_str() == Some(&format!("{}:{}", st.st_dev, st.st_ino))
}

/// The child's side of the ready pipe: one message, then it is closed.
pub(super) struct Ready(Mutex<Option<std::fs::File>>);

impl Ready {
    /// The pipe at `fd` (`--ready-fd`), if this process is a daemon's server.
    pub fn new(fd: Option<i32>) -> Ready {
        let adopted = fd.and_then(|fd| {
            crate::sys::process::adopt_inherited(fd)
                .map_err(|e| log::warn!("--ready-fd {fd}: {e}"))
                .ok()
        });
        Ready(Mutex::new(adopted.map(std::fs::File::from)))
    }

    /// Sends `line` once; false where there is no one to tell.
    fn send(&self, line: &str) -> bool {
        let Some(mut f) = self.0.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return false;
        };
        let _ = f.write_all(line.as_bytes());
        true
    }

    /// The view is usable; false where no one waits.
    pub fn ready(&self) -> bool {
        self.send("ready\n")
    }

    /// Nothing to mount (`msg` says why); false where no one waits.
    pub fn done(&self, msg: &str) -> bool {
        self.send(&format!("done {msg}\n"))
    }

    /// The view will not be usable, because of `e`.
    pub fn failed(&self, e: &Error) {
        self.send(&format!("error {e}\n"));
    }
}

/// The process's logger: `env_logger`'s filter (`RUST_LOG`) and format,
/// written to standard error, to a log file (`--log-file` of a foreground
/// mount), or as syslog messages.
struct Logger {
    stderr: env_logger::Logger,
    sink: RwLock<Sink>,
}

enum Sink {
    Stderr,
    File(env_logger::Logger),
    Syslog(UnixDatagram),
}

static LOGGER: OnceLock<&'static Logger> = OnceLock::new();

fn builder() -> env_logger::Builder {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(FILTER))
}

/// Installs the logger (once, before anything logs).
pub fn init_logging() {
    let sink = match stderr_datagram() {
        Some(s) => Sink::Syslog(s),
        None => Sink::Stderr,
    };
    let logger: &'static Logger = Box::leak(Box::new(Logger {
        stderr: builder().build(),
        sink: RwLock::new(sink),
    }));
    log::set_max_level(logger.stderr.filter());
    if log::set_logger(logger).is_ok() {
        let _ = LOGGER.set(logger);
    }
}

/// From now on, logs go to the file at `p` (appended to).
pub(super) fn log_to_file(p: &Path) -> Result<()> {
    let file = open_log_file(p)?;
    let to_file = builder()
        .target(env_logger::Target::Pipe(Box::new(file)))
        .write_style(env_logger::WriteStyle::Never)
        .build();
    if let Some(l) = LOGGER.get() {
        *l.sink.write().unwrap_or_else(|e| e.into_inner()) = Sink::File(to_file);
    }
    Ok(())
}

/// Standard error, if it is a datagram socket (the system log a daemon's
/// parent connected it to).
fn stderr_datagram() -> Option<UnixDatagram> {
    let ty = rustix::net::sockopt::socket_type(std::io::stderr()).ok()?;
    if ty != rustix::net::SocketType::DGRAM {
        return None;
    }
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    Some(UnixDatagram::from(fd))
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        self.stderr.enabled(metadata)
    }

    fn log(&self, record: &log::Record) {
        if !self.stderr.matches(record) {
            return;
        }
        match &*self.sink.read().unwrap_or_else(|e| e.into_inner()) {
            Sink::Stderr => self.stderr.log(record),
            Sink::File(l) => l.log(record),
            Sink::Syslog(s) => {
                // RFC 3164 as syslog(3) writes it to /dev/log: facility
                // daemon, the level's severity; the log adds the time.
                let severity = match record.level() {
                    log::Level::Error => 3,
                    log::Level::Warn => 4,
                    log::Level::Info => 6,
                    log::Level::Debug | log::Level::Trace => 7,
                };
                let target = record.target();
                let msg = if target.starts_with("graph2aufs") {
                    format!("{}", record.args())
                } else {
                    format!("{target}: {}", record.args())
                };
                let line = format!("<{}>graph2aufs[{}]: {msg}", 3 * 8 + severity, std::process::id());
                let _ = s.send(line.as_bytes());
            }
        }
    }

    fn flush(&self) {
        self.stderr.flush();
    }
}
