//! Docker's own aufs driver as a test client: builds `g2a-docker-driver`
//! (`main.go` beside this file) against Docker 20.10's sources as Debian
//! ships them (`golang-github-docker-docker-dev`, with `golang-go` and
//! `golang-github-vbatts-tar-split-dev`), and runs its commands on a Docker
//! root, each with a timeout.
//!
//! The build is GOPATH mode (`GO111MODULE=off`): a GOPATH of our own before
//! `/usr/share/gocode`, holding the harness with, under its `vendor/`, a
//! byte-for-byte copy of the driver's package (`daemon/graphdriver/aufs`:
//! `aufs.go`, `dirs.go`, `mount.go`, checked against the hashes of Debian's
//! 20.10.24 files) plus our `aufs/without_module_check.go` (the `Driver` as
//! `Init` builds it, without the aufs module check); and our stand-in for
//! `plugin/v2`, which Debian does not ship and `graphdriver` imports.

// Each test crate uses only part of this module.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::common::{describe, run_command, skip_unless};

/// Where Debian's Go packages keep their sources.
const GOCODE: &str = "/usr/share/gocode";
/// Docker's sources, from golang-github-docker-docker-dev.
const DOCKER: &str = "/usr/share/gocode/src/github.com/docker/docker";
/// tar-split's sources, which the driver imports.
const TAR_SPLIT: &str = "/usr/share/gocode/src/github.com/vbatts/tar-split";
/// The driver's files, with their SHA-256 in Debian's 20.10.24+dfsg1.
const DRIVER_FILES: [(&str, &str); 3] = [
    (
        "aufs.go",
        "d8178c1f1e266195d3f320bc254df21acc41f07f0206de0a521c632bf8ad6164",
    ),
    (
        "dirs.go",
        "51ac01a11afc2bb1e96ebcca7914e715506c531794d66d4ca4809213e0603ff5",
    ),
    (
        "mount.go",
        "ae2ac5b3921bd89665a5934463feec64882af59d6aa0077b579571b897ea7661",
    ),
];
/// The harness's import path in its GOPATH.
const HARNESS: &str = "g2a-docker-driver";
/// How long `go build` may take (a cold cache compiles every dependency).
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);
/// How long one driver command may take (Diff of a Debian layer through
/// the view included).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(180);

/// The built harness.
pub struct DockerDriver {
    bin: PathBuf,
}

/// The harness, built once per test process; `None` after a loud skip
/// where Go or Debian's Docker sources are missing (a failure under CI,
/// where `.ci/run` installs them). Panics if the build fails.
#[track_caller]
pub fn require_docker_driver() -> Option<DockerDriver> {
    let mut missing = Vec::new();
    if let Err(e) = which("go") {
        missing.push(format!("no `go` on PATH (golang-go): {e}"));
    }
    for (dir, package) in [
        (DOCKER, "golang-github-docker-docker-dev"),
        (TAR_SPLIT, "golang-github-vbatts-tar-split-dev"),
    ] {
        if !Path::new(dir).is_dir() {
            missing.push(format!("no {dir} ({package})"));
        }
    }
    if !skip_unless("Go and Docker's sources from Debian", &missing) {
        return None;
    }
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BUILT.get_or_init(build) {
        Ok(bin) => Some(DockerDriver { bin: bin.clone() }),
        Err(e) => panic!("building Docker's aufs driver harness: {e}"),
    }
}

/// Assembles the GOPATH and builds the harness into
/// `$CARGO_TARGET_TMPDIR/docker-driver/`, under a lock (test processes
/// build it in turn); the binary is renamed into place, so a copy another
/// process is running stays intact.
fn build() -> Result<PathBuf, String> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("docker-driver");
    fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let lock = fs::File::create(dir.join("lock")).map_err(|e| format!("the build lock: {e}"))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).map_err(|e| format!("flock: {e}"))?;
    let gopath = dir.join("gopath");
    match fs::remove_dir_all(&gopath) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(format!("rm -r {}: {e}", gopath.display())),
        _ => {}
    }
    let ours = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/docker_driver");
    let harness = gopath.join("src").join(HARNESS);
    let vendored = harness.join("vendor/github.com/docker/docker/daemon/graphdriver/aufs");
    let plugin = gopath.join("src/github.com/docker/docker/plugin/v2");
    for d in [&vendored, &plugin] {
        fs::create_dir_all(d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
    }
    let copy = |from: &Path, to: &Path| -> Result<Vec<u8>, String> {
        let bytes = fs::read(from).map_err(|e| format!("reading {}: {e}", from.display()))?;
        fs::write(to, &bytes).map_err(|e| format!("writing {}: {e}", to.display()))?;
        Ok(bytes)
    };
    let debian = Path::new(DOCKER).join("daemon/graphdriver/aufs");
    for (name, pinned) in DRIVER_FILES {
        let source = copy(&debian.join(name), &vendored.join(name))?;
        let copied = fs::read(vendored.join(name)).map_err(|e| format!("reading the copy of {name}: {e}"))?;
        let (want, got) = (sha256(&source), sha256(&copied));
        if got != want {
            return Err(format!(
                "the copy of {name} differs from Debian's (sha256 {got}, not {want})"
            ));
        }
        if want != pinned {
            return Err(format!(
                "{}/{name} has sha256 {want}, not {pinned} (Docker 20.10.24's): another version of \
                 golang-github-docker-docker-dev; review what changed in the driver, then update DRIVER_FILES",
                debian.display()
            ));
        }
    }
    copy(
        &ours.join("aufs/without_module_check.go"),
        &vendored.join("without_module_check.go"),
    )?;
    copy(&ours.join("plugin/v2/plugin.go"), &plugin.join("plugin.go"))?;
    copy(&ours.join("main.go"), &harness.join("main.go"))?;
    let bin = dir.join(HARNESS);
    let new = dir.join(format!("{HARNESS}.new"));
    let mut cmd = Command::new("go");
    cmd.args(["build", "-o"]).arg(&new).arg(".").current_dir(&harness);
    let gopath_env = std::env::join_paths([gopath.as_path(), Path::new(GOCODE)]).expect("GOPATH entries without ':'");
    cmd.env("GO111MODULE", "off")
        .env("GOPATH", gopath_env)
        .env("GOPROXY", "off")
        .env("CGO_ENABLED", "0")
        .env_remove("GOFLAGS");
    if std::env::var_os("GOCACHE").is_none() {
        cmd.env("GOCACHE", dir.join("gocache"));
    }
    let r = run_command(cmd, BUILD_TIMEOUT);
    if r.code != 0 {
        return Err(format!("go build failed:\n{r}"));
    }
    fs::rename(&new, &bin).map_err(|e| format!("rename {} {}: {e}", new.display(), bin.display()))?;
    Ok(bin)
}

/// The first `name` in a directory of `$PATH` (without running it).
fn which(name: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").ok_or("PATH is not set")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("not in {}", path.to_string_lossy()))
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// One layer to inspect and the parent the caller passes (`Diff(id,
/// parent)`: the layer store passes the layer's own parent).
pub type Layer = (String, Option<String>);

impl DockerDriver {
    /// `g2a-docker-driver [-read-only] ROOT ARGS...`; its JSON output, or
    /// its error message (exit code 1).
    #[track_caller]
    pub fn call(&self, root: &Path, read_only: bool, args: &[&str]) -> Result<Value, String> {
        let mut cmd = Command::new(&self.bin);
        if read_only {
            cmd.arg("-read-only");
        }
        cmd.arg(root).args(args).stdin(std::process::Stdio::null());
        let what = describe(&cmd);
        let r = run_command(cmd, CALL_TIMEOUT);
        match r.code {
            0 => serde_json::from_str(&r.stdout).map_err(|e| format!("{what}: output is not JSON ({e}):\n{r}")),
            1 if r.stdout.is_empty() => Err(r.stderr.trim().to_string()),
            _ => panic!("the harness failed:\n{r}"),
        }
    }

    /// `inspect`: per layer, Exists, Diff, DiffSize, Changes, GetMetadata;
    /// and Status. Panics if the harness cannot run at all.
    #[track_caller]
    pub fn inspect(&self, root: &Path, read_only: bool, layers: &[Layer]) -> Value {
        let mut args = vec!["inspect"];
        for (id, parent) in layers {
            args.push(id);
            args.push(parent.as_deref().unwrap_or(""));
        }
        self.call(root, read_only, &args)
            .unwrap_or_else(|e| panic!("inspect of {}: {e}", root.display()))
    }
}
