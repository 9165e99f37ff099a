//! Running the `graph2aufs` binary (or any command) with a hard timeout and
//! its output captured.

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long [`run`] lets one command take before killing it and failing.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The `graph2aufs` binary built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_graph2aufs"))
}

/// A `graph2aufs` command with `args` and no standard input, for callers that
/// need to add environment or change the timeout (see [`run_command`]).
pub fn g2a<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(bin());
    cmd.args(args).stdin(Stdio::null());
    cmd
}

/// What a finished command did.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// The command line, for messages.
    pub command: String,
    /// The exit code, or 128 + the signal number if a signal ended it.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl RunResult {
    /// Panics, showing the whole result, unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "expected exit code {code}, got:\n{self}");
        self
    }

    /// Standard output parsed as JSON; panics showing the output if it is not.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self}"))
    }
}

impl fmt::Display for RunResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "$ {}\nexit code {}", self.command, self.code)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout.trim_end())?;
        write!(f, "--- stderr ---\n{}", self.stderr.trim_end())
    }
}

/// Runs `graph2aufs ARGS` to completion (at most [`RUN_TIMEOUT`]).
#[track_caller]
pub fn run<I, S>(args: I) -> RunResult
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_command(g2a(args), RUN_TIMEOUT)
}

/// Runs `graph2aufs ARGS` and parses its standard output as JSON; panics
/// showing the output if it is not JSON.
#[track_caller]
pub fn run_json<I, S>(args: I) -> (i32, serde_json::Value)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let result = run(args);
    let value = result.json();
    (result.code, value)
}

/// Runs `cmd` to completion, capturing its output. After `timeout`, kills
/// its whole process group and panics with what it had printed.
///
/// Output goes to files, not pipes, and only the command itself is waited
/// for, so a daemon it leaves behind holding stdout open does not block this.
#[track_caller]
pub fn run_command(mut cmd: Command, timeout: Duration) -> RunResult {
    let command = describe(&cmd);
    let capture = || tempfile::tempfile().unwrap_or_else(|e| panic!("cannot create a capture file for {command}: {e}"));
    let (mut out, mut err) = (capture(), capture());
    let stdio = |f: &File| {
        Stdio::from(
            f.try_clone()
                .unwrap_or_else(|e| panic!("cannot dup a capture file for {command}: {e}")),
        )
    };
    // Its own process group, so that a timeout kills its children too.
    cmd.stdout(stdio(&out)).stderr(stdio(&err)).process_group(0);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    let status: ExitStatus = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => panic!("cannot wait for {command}: {e}"),
        }
        if started.elapsed() >= timeout {
            if let Some(pgid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
            }
            let _ = child.kill();
            let status = child.wait();
            panic!(
                "{command} timed out after {timeout:?} and was killed ({status:?})\n--- stdout ---\n{}\n--- stderr ---\n{}",
                read_all(&mut out).trim_end(),
                read_all(&mut err).trim_end()
            );
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    };
    let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    RunResult {
        command,
        code,
        stdout: read_all(&mut out),
        stderr: read_all(&mut err),
    }
}

/// A command line for messages: program and arguments, quoted where needed.
pub fn describe(cmd: &Command) -> String {
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    words.extend(cmd.get_args().map(|a| {
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
            format!("{a:?}")
        } else {
            a.into_owned()
        }
    }));
    words.join(" ")
}

fn read_all(f: &mut File) -> String {
    let mut bytes = Vec::new();
    if let Err(e) = f.seek(SeekFrom::Start(0)).and_then(|_| f.read_to_end(&mut bytes)) {
        return format!("(cannot read captured output: {e})");
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
