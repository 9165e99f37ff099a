//! Running the `graph2aufs` binary (or `g2a-genroot`, or any command) with a
//! hard timeout and its output captured.

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long [`run`] lets one command take before killing it and failing.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The `graph2aufs` binary built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_graph2aufs"))
}

/// The `g2a-genroot` binary, beside [`bin`], built for these tests.
///
/// It belongs to another package of the workspace (genroot/), which cargo
/// builds for a `cargo test` of the whole workspace but not for one of this
/// package's test files alone (`cargo test --test cli`): so it is built
/// here, once per test process, with the profile of these tests (a no-op
/// when it is up to date), and never run stale.
pub fn genroot_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let bin = bin();
            let mut cmd = Command::new(env!("CARGO"));
            cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
                "build",
                "--quiet",
                "--package",
                "g2a-genroot",
                "--bin",
                "g2a-genroot",
            ]);
            // target/<profile>/: "debug" is the dev profile's directory.
            match bin.parent().and_then(|d| d.file_name()).and_then(|n| n.to_str()) {
                Some("debug") | None => {}
                Some(profile) => {
                    cmd.args(["--profile", profile]);
                }
            }
            // A build, not a behaviour: as long as a cold build takes.
            run_command(cmd, Duration::from_secs(1800)).expect_code(0);
            let genroot = bin.with_file_name("g2a-genroot");
            assert!(
                genroot.is_file(),
                "cargo built g2a-genroot, but not at {}",
                genroot.display()
            );
            genroot
        })
        .clone()
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
