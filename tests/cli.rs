//! The command line as a user meets it: `--json` output (one document,
//! errors included), counts and words in the text output, input checks,
//! help, man pages, shell completions, the install step, and the progress
//! display.
//!
//! What each command must offer is written down here (the README's table),
//! not read from graph2aufs's own definitions; counts are taken from the
//! tree before the command.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use g2a_genroot::{generate, Options};
use serde_json::Value;

/// Subcommands of `graph2aufs`, with their arguments and options (the
/// README's table of commands).
const COMMANDS: &[(&str, &[&str])] = &[
    ("plan", &["<ROOT>", "--aufs-dir", "--json", "--all"]),
    (
        "migrate",
        &["<ROOT>", "--aufs-dir", "--json", "--all", "--batch", "--copy-rate"],
    ),
    (
        "mount",
        &[
            "<ROOT>",
            "[MOUNTPOINT]",
            "--aufs-dir",
            "--read-only",
            "--foreground",
            "--daemon",
            "--allow-other",
            "--threads",
            "--no-passthrough",
            "--transport",
            "--copy-rate",
            "--json",
        ],
    ),
    ("status", &["<ROOT>", "--aufs-dir", "--json", "--all"]),
    ("verify", &["<ROOT>", "--aufs-dir", "--json"]),
    ("rollback", &["<ROOT>", "--aufs-dir", "--json"]),
];

/// `g2a-genroot`'s arguments and options.
const GENROOT: &[&str] = &[
    "<ROOT>",
    "--seed",
    "--images",
    "--max-chain",
    "--containers",
    "--entries-per-layer",
    "--broken",
    "--docker18",
    "--debian-base",
    "--json",
];

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("g2a-cli-")
        .tempdir()
        .expect("a scratch directory")
}

/// A generated legacy root at `dir/root`.
fn legacy_root(dir: &Path, opts: Options) -> PathBuf {
    let root = dir.join("root");
    generate(&root, &opts).expect("the generator makes the root");
    root
}

/// A few tiny images and containers, nothing broken.
fn plain() -> Options {
    Options {
        seed: 2,
        images: 6,
        max_chain: 3,
        containers: 3,
        entries_per_layer: 0,
        broken: false,
        docker18: false,
        debian_base: None,
    }
}

/// One image, no container.
fn single() -> Options {
    Options {
        images: 1,
        max_chain: 1,
        containers: 0,
        ..plain()
    }
}

/// The items of a legacy root: the directories of `graph/` and
/// `containers/` (but Docker's `graph/_tmp`).
fn items_in(root: &Path) -> usize {
    ["graph", "containers"]
        .iter()
        .map(|d| match fs::read_dir(root.join(d)) {
            Ok(rd) => rd
                .map(|e| e.unwrap())
                .filter(|e| e.file_type().unwrap().is_dir() && e.file_name() != "_tmp")
                .count(),
            Err(_) => 0,
        })
        .sum()
}

fn args<'a>(words: &[&'a str], root: &'a Path) -> Vec<&'a OsStr> {
    words
        .iter()
        .map(|w| if *w == "ROOT" { root.as_os_str() } else { OsStr::new(*w) })
        .collect()
}

/// `graph2aufs WORDS` (the word `ROOT` replaced by `root`) with `env` set.
fn g2a_env(words: &[&str], root: &Path, env: &[(&str, &str)]) -> RunResult {
    let mut cmd = g2a(args(words, root));
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_command(cmd, RUN_TIMEOUT)
}

fn g2a_run(words: &[&str], root: &Path) -> RunResult {
    g2a_env(words, root, &[])
}

/// Standard output holds exactly one JSON document; returns it.
#[track_caller]
fn one_document(r: &RunResult) -> Value {
    let mut docs = serde_json::Deserializer::from_str(&r.stdout).into_iter::<Value>();
    let first = match docs.next() {
        Some(Ok(v)) => v,
        Some(Err(e)) => panic!("stdout is not JSON ({e}):\n{r}"),
        None => panic!("no JSON document on stdout:\n{r}"),
    };
    match docs.next() {
        None => first,
        Some(_) => panic!("more than one JSON document on stdout:\n{r}"),
    }
}

/// An error document (`{"error": {"message", "exit_code": 2}}`) with exit
/// code 2; returns its message.
#[track_caller]
fn error_document(r: &RunResult) -> String {
    r.expect_code(2);
    let doc = one_document(r);
    assert_eq!(doc["error"]["exit_code"], 2, "the exit code in the document:\n{r}");
    let message = doc["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in the document:\n{r}"));
    assert!(!message.trim().is_empty(), "an empty message:\n{r}");
    message.to_string()
}

// ---------------------------------------------------------------------------
// 6. JSON means JSON
// ---------------------------------------------------------------------------

#[test]
fn every_command_prints_one_json_document_in_success_and_with_problems() {
    if !require_root() {
        return;
    }
    let dir = scratch();
    let clean = legacy_root(&dir.path().join("clean"), plain());
    let broken = legacy_root(
        &dir.path().join("broken"),
        Options {
            broken: true,
            docker18: true,
            ..plain()
        },
    );
    // (command, root, exit code, a key the document must have)
    let steps: &[(&[&str], &Path, i32, &str)] = &[
        (&["plan", "ROOT", "--json"], &clean, 0, "items"),
        (&["plan", "ROOT", "--json"], &broken, 1, "items"),
        (&["status", "ROOT", "--json"], &clean, 1, "totals"),
        (&["verify", "ROOT", "--json"], &clean, 1, "problems"),
        (&["rollback", "ROOT", "--json"], &clean, 0, "restored"),
        (&["migrate", "ROOT", "--json"], &clean, 0, "items"),
        (&["migrate", "ROOT", "--json"], &broken, 1, "items"),
        (&["status", "ROOT", "--json"], &clean, 0, "totals"),
        (&["status", "ROOT", "--json", "--all"], &broken, 1, "totals"),
        (&["verify", "ROOT", "--json"], &clean, 0, "problems"),
        (&["verify", "ROOT", "--json"], &broken, 1, "problems"),
        (&["rollback", "ROOT", "--json"], &clean, 0, "restored"),
        (&["rollback", "ROOT", "--json"], &broken, 0, "restored"),
    ];
    for (words, root, code, key) in steps {
        let r = g2a_run(words, root);
        r.expect_code(*code);
        let doc = one_document(&r);
        assert!(doc.get(key).is_some(), "no {key:?} in the document:\n{r}");
    }
}

#[test]
fn rollback_with_nothing_to_roll_back_prints_a_json_document() {
    let dir = scratch();
    fs::create_dir_all(dir.path().join("graph")).unwrap();
    let r = g2a_run(&["rollback", "ROOT", "--json"], dir.path());
    r.expect_code(0);
    let doc = one_document(&r);
    assert_eq!(doc["restored"], Value::Array(vec![]), "{r}");
    assert_eq!(doc["refused"], Value::Array(vec![]), "{r}");
}

#[test]
fn errors_under_json_are_one_json_document_with_exit_code_2() {
    let dir = scratch();
    let missing = dir.path().join("missing");
    let empty = dir.path().join("empty");
    fs::create_dir_all(empty.join("graph")).unwrap();
    // Environment errors: no ROOT.
    for cmd in ["plan", "migrate", "status", "verify", "rollback", "mount"] {
        let r = g2a_run(&[cmd, "ROOT", "--json"], &missing);
        let message = error_document(&r);
        assert!(message.contains("missing"), "the message names ROOT:\n{r}");
    }
    // Usage errors found by the argument parser, --json anywhere before `--`.
    for words in [
        &["plan", "ROOT", "--json", "--bogus"][..],
        &["--json", "plan", "ROOT"],
        &["migrate", "--json", "ROOT", "--batch", "0"],
        &["mount", "ROOT", "--json", "--threads", "0"],
        &["status", "--json"],
    ] {
        error_document(&g2a_run(words, &empty));
    }
    // A RUST_LOG that does not parse.
    let r = g2a_env(&["plan", "ROOT", "--json"], &empty, &[("RUST_LOG", "graph2aufs=loud")]);
    assert!(error_document(&r).contains("loud"), "{r}");
    // Without --json the same errors are text on stderr, nothing on stdout.
    let r = g2a_run(&["plan", "ROOT"], &missing);
    r.expect_code(2);
    assert!(r.stdout.is_empty() && r.stderr.contains("missing"), "{r}");
}

/// `mount --json`: one document once the view is usable, with the server's
/// pid and the mount point (foreground and `--daemon`).
#[test]
fn mount_json_prints_one_document_once_the_view_is_usable() {
    if !require_root_and_fuse() {
        return;
    }
    let dir = scratch();
    let root = legacy_root(dir.path(), single());
    let mp = dir.path().join("mp");
    fs::create_dir(&mp).unwrap();
    let mp = fs::canonicalize(&mp).unwrap();
    let out = dir.path().join("stdout");
    // Foreground: the server's own stdout.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"exec "$0" mount "$1" "$2" --read-only --json > "$3""#)
        .arg(bin())
        .arg(&root)
        .arg(&mp)
        .arg(&out);
    let mount = Mount::start_command(cmd, &mp, Duration::from_secs(60));
    let doc = wait_for(Duration::from_secs(10), || {
        serde_json::from_slice::<Value>(&fs::read(&out).ok()?).ok()
    })
    .unwrap_or_else(|| panic!("no document from the foreground mount; its log:\n{}", mount.log()));
    assert_eq!(doc["pid"], mount.pid(), "{doc}");
    assert_eq!(doc["mountpoint"], mp.to_str().unwrap(), "{doc}");
    assert_eq!(doc["read_only"], true, "{doc}");
    let status = mount.unmount();
    assert!(status.success(), "{status:?}");
    let r = RunResult {
        command: "mount --json".into(),
        code: 0,
        stdout: fs::read_to_string(&out).unwrap(),
        stderr: String::new(),
    };
    one_document(&r);
    // --daemon: the caller prints the document and returns.
    let script = r#""$0" mount "$1" "$2" --read-only --daemon --json > "$3"; echo "daemon exit $?";
        while grep -q " $2 " /proc/self/mounts; do sleep 0.05; done"#;
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script).arg(bin()).arg(&root).arg(&mp).arg(&out);
    let mount = Mount::start_command(cmd, &mp, Duration::from_secs(60));
    let code = wait_for(Duration::from_secs(10), || {
        let log = mount.log();
        Some(
            log.lines()
                .find_map(|l| l.strip_prefix("daemon exit "))?
                .trim()
                .to_string(),
        )
    })
    .unwrap_or_else(|| panic!("`mount --daemon --json` did not return; the log:\n{}", mount.log()));
    let r = RunResult {
        command: "mount --daemon --json".into(),
        code: code.parse().unwrap(),
        stdout: fs::read_to_string(&out).unwrap(),
        stderr: mount.log(),
    };
    r.expect_code(0);
    let doc = one_document(&r);
    let pid = doc["pid"].as_u64().unwrap_or_else(|| panic!("no pid:\n{r}"));
    assert!(
        fs::read_to_string(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.contains("mount")),
        "the pid {pid} is the server's:\n{r}"
    );
    assert_eq!(doc["mountpoint"], mp.to_str().unwrap(), "{r}");
    let umount = run_command(
        {
            let mut c = Command::new("umount");
            c.arg(&mp);
            c
        },
        RUN_TIMEOUT,
    );
    assert_eq!(umount.code, 0, "{umount}");
    drop(mount);
}

// ---------------------------------------------------------------------------
// 7. Counts and words
// ---------------------------------------------------------------------------

/// Every "1 <noun>s" in `text`, for the nouns graph2aufs counts.
fn singular_mistakes(text: &str) -> Vec<String> {
    let words: Vec<&str> = text.split(|c: char| c.is_whitespace() || ",;:()".contains(c)).collect();
    words
        .windows(2)
        .filter(|w| {
            w[0] == "1"
                && [
                    "items",
                    "images",
                    "containers",
                    "layers",
                    "problems",
                    "notes",
                    "entries",
                    "inodes",
                ]
                .contains(&w[1])
        })
        .map(|w| w.join(" "))
        .collect()
}

#[test]
fn rollback_counts_items_and_repositories_apart() {
    if !require_root() {
        return;
    }
    for opts in [single(), plain()] {
        let dir = scratch();
        let root = legacy_root(dir.path(), opts);
        let items = items_in(&root);
        assert!(root.join("repositories").is_file(), "the generator writes repositories");
        g2a_run(&["migrate", "ROOT"], &root).expect_code(0);
        let r = g2a_run(&["rollback", "ROOT"], &root);
        r.expect_code(0);
        let noun = if items == 1 { "item" } else { "items" };
        assert!(
            r.stdout
                .contains(&format!("rolled back {items} {noun} and repositories")),
            "{items} {noun}, and repositories apart:\n{r}"
        );
        assert!(singular_mistakes(&r.stdout).is_empty(), "{r}");
    }
}

#[test]
fn text_reports_say_one_item_not_one_items() {
    if !require_root() {
        return;
    }
    let dir = scratch();
    let root = dir.path().join("root");
    let mut cmd = Command::new(genroot_bin());
    cmd.arg(&root).args([
        "--images",
        "1",
        "--max-chain",
        "1",
        "--containers",
        "0",
        "--entries-per-layer",
        "0",
    ]);
    let r = run_command(cmd, RUN_TIMEOUT);
    r.expect_code(0);
    assert!(singular_mistakes(&r.stdout).is_empty(), "{r}");
    assert_eq!(items_in(&root), 1);
    let mut seen = String::new();
    for (words, code) in [
        (&["plan", "ROOT", "--all"][..], 0),
        (&["status", "ROOT"], 1),
        (&["migrate", "ROOT"], 0),
        (&["status", "ROOT", "--all"], 0),
        (&["verify", "ROOT"], 0),
    ] {
        let r = g2a_run(words, &root);
        r.expect_code(code);
        assert!(singular_mistakes(&r.stdout).is_empty(), "{r}");
        assert!(singular_mistakes(&r.stderr).is_empty(), "{r}");
        seen.push_str(&r.stdout);
    }
    assert!(seen.contains("1 item:"), "the totals count 1 item:\n{seen}");
    assert!(seen.contains("1 image, 0 containers, 1 layer, 0 problems"), "{seen}");
}

#[test]
fn verify_on_a_legacy_root_says_it_is_not_migrated() {
    if !require_root() {
        return;
    }
    let dir = scratch();
    let root = legacy_root(dir.path(), single());
    let r = g2a_run(&["verify", "ROOT"], &root);
    r.expect_code(1);
    assert!(!r.stdout.contains("missing, not a directory"), "{r}");
    let line = r
        .stdout
        .lines()
        .find(|l| l.starts_with("aufs"))
        .unwrap_or_else(|| panic!("no line about aufs/:\n{r}"));
    assert!(
        line.contains("does not exist") && line.contains("not migrated") && line.contains("graph2aufs migrate"),
        "{line}"
    );
    // aufs/diff, aufs/layers and aufs/mnt are not reported on their own.
    assert!(
        !r.stdout.contains("aufs/diff:") && !r.stdout.contains("aufs/mnt:"),
        "{r}"
    );
}

// ---------------------------------------------------------------------------
// 8. Input checks
// ---------------------------------------------------------------------------

#[test]
fn batch_and_threads_are_refused_out_of_range() {
    let dir = scratch();
    fs::create_dir_all(dir.path().join("graph")).unwrap();
    for (words, option) in [
        (&["migrate", "ROOT", "--batch", "0"][..], "--batch"),
        (&["mount", "ROOT", "--threads", "0"], "--threads"),
        (&["mount", "ROOT", "--threads", "100000"], "--threads"),
        (&["migrate", "ROOT", "--copy-rate", "99999999999G"], "--copy-rate"),
    ] {
        let r = g2a_run(words, dir.path());
        r.expect_code(2);
        assert!(r.stderr.contains(option), "the error names {option}:\n{r}");
    }
    assert!(
        !dir.path().join(".graph2aufs").exists() && !dir.path().join("aufs").exists(),
        "nothing written"
    );
}

#[test]
fn a_rust_log_that_does_not_parse_is_an_error() {
    let dir = scratch();
    fs::create_dir_all(dir.path().join("graph")).unwrap();
    for bad in ["verbose", "graph2aufs=loud", "info,graph2aufs=debug=trace", "debug/("] {
        let r = g2a_env(&["plan", "ROOT"], dir.path(), &[("RUST_LOG", bad)]);
        r.expect_code(2);
        assert!(r.stderr.contains("RUST_LOG"), "{r}");
    }
    let r = g2a_env(&["plan", "ROOT"], dir.path(), &[("RUST_LOG", "graph2aufs=loud")]);
    assert!(r.stderr.contains("loud"), "the error names the directive:\n{r}");
    for good in [
        "",
        "info",
        "WARN",
        "graph2aufs=debug,fuser=error",
        "graph2aufs::view",
        "off",
    ] {
        let r = g2a_env(&["plan", "ROOT"], dir.path(), &[("RUST_LOG", good)]);
        assert_ne!(r.code, 2, "RUST_LOG={good:?} is fine:\n{r}");
    }
}

// ---------------------------------------------------------------------------
// 12. Help that answers
// ---------------------------------------------------------------------------

/// The entries of the `Arguments:` and `Options:` sections of a `--help`:
/// (name as written, e.g. `--batch` or `<ROOT>`, its description).
fn help_entries(help: &str) -> Vec<(String, String)> {
    let mut entries: Vec<(String, String)> = Vec::new();
    let mut in_section = false;
    for line in help.lines() {
        if line == "Arguments:" || line == "Options:" {
            in_section = true;
            continue;
        }
        if line.is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            in_section = false;
            continue;
        }
        if !in_section {
            continue;
        }
        let text = line.trim_start();
        let indent = line.len() - text.len();
        let head = text.split("  ").next().unwrap_or("");
        if indent <= 6 && (text.starts_with('-') || text.starts_with('<') || text.starts_with('[')) {
            let name = head
                .split([',', ' ', '='])
                .map(str::trim)
                .find(|w| w.starts_with("--") || w.starts_with('<') || w.starts_with('['))
                .unwrap_or(head)
                .to_string();
            let desc = text[head.len()..].trim().to_string();
            entries.push((name, desc));
        } else if let Some(last) = entries.last_mut() {
            last.1.push(' ');
            last.1.push_str(text);
        }
    }
    entries
}

#[test]
fn help_describes_every_argument_and_option() {
    let check = |bin: &Path, sub: Option<&str>, expected: &[&str]| {
        let mut cmd = Command::new(bin);
        cmd.args(sub).arg("--help").stdin(Stdio::null());
        let r = run_command(cmd, RUN_TIMEOUT);
        r.expect_code(0);
        let entries = help_entries(&r.stdout);
        for (name, desc) in &entries {
            assert!(!desc.is_empty(), "{name} has no description:\n{r}");
        }
        let names: BTreeSet<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        for want in expected.iter().chain(&["--help"]) {
            assert!(names.contains(want), "{want} is not in the help:\n{r}");
        }
    };
    for (sub, expected) in COMMANDS {
        check(&bin(), Some(sub), expected);
    }
    check(&genroot_bin(), None, GENROOT);
}

#[test]
fn help_lists_every_state_and_the_exit_codes() {
    let top = run(["--help"]);
    top.expect_code(0);
    let status = run(["status", "--help"]);
    status.expect_code(0);
    for r in [&top, &status] {
        for state in STATES {
            assert!(r.stdout.contains(state), "{state} is not in the help:\n{r}");
        }
    }
    for r in [&top, &status, &run(["migrate", "--help"]), &run(["rollback", "--help"])] {
        let codes: Vec<&str> = r
            .stdout
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| ["0", "1", "2"].contains(w))
            .collect();
        assert_eq!(codes, ["0", "1", "2"], "the exit codes, one line each:\n{r}");
    }
    // `status` says why it exits 1 on a root not migrated yet.
    assert!(status.stdout.contains("not migrated yet"), "{status}");
}

#[test]
fn copy_rate_states_its_default_once() {
    for sub in ["migrate", "mount"] {
        let r = run([sub, "--help"]);
        let entries = help_entries(&r.stdout);
        let (_, desc) = entries
            .iter()
            .find(|(n, _)| n == "--copy-rate")
            .unwrap_or_else(|| panic!("no --copy-rate:\n{r}"));
        assert_eq!(desc.matches("default").count(), 1, "{desc}");
    }
}

#[test]
fn g2a_genroot_version_names_g2a_genroot() {
    let mut cmd = Command::new(genroot_bin());
    cmd.arg("--version");
    let r = run_command(cmd, RUN_TIMEOUT);
    r.expect_code(0);
    assert_eq!(
        r.stdout.trim(),
        format!("g2a-genroot {}", env!("CARGO_PKG_VERSION")),
        "{r}"
    );
}

/// `graph2aufs generate-docs DIR` and `g2a-genroot --generate-docs DIR` (as
/// `scripts/install` runs them), and what they wrote.
fn generated_docs() -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = scratch();
    let r = run([OsStr::new("generate-docs"), dir.path().as_os_str()]);
    r.expect_code(0);
    let mut cmd = Command::new(genroot_bin());
    cmd.arg("--generate-docs").arg(dir.path());
    run_command(cmd, RUN_TIMEOUT).expect_code(0);
    let mut files = Vec::new();
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    (dir, files)
}

#[test]
fn man_pages_and_completions_name_every_command_and_option() {
    let (dir, files) = generated_docs();
    let read = |rel: &str| {
        fs::read_to_string(dir.path().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}; generated: {files:#?}"))
    };
    // One man page per command; roff escapes each '-' of an option.
    let roff = |opt: &str| opt.replace('-', "\\-");
    let top = read("man/graph2aufs.1");
    for (sub, options) in COMMANDS {
        assert!(top.contains(sub), "graph2aufs.1 names {sub}");
        let page = read(&format!("man/graph2aufs-{sub}.1"));
        for opt in options.iter().filter(|o| o.starts_with("--")) {
            assert!(page.contains(&roff(opt)), "graph2aufs-{sub}.1 names {opt}");
        }
        assert!(page.contains("EXIT STATUS"), "graph2aufs-{sub}.1 has its exit codes");
    }
    for section in ["EXIT STATUS", "ENVIRONMENT", "RUST_LOG", "FILES"] {
        assert!(top.contains(section), "graph2aufs.1 has {section}");
    }
    for state in STATES {
        assert!(top.contains(state), "graph2aufs.1 names the state {state}");
    }
    let genroot = read("man/g2a-genroot.1");
    for opt in GENROOT.iter().filter(|o| o.starts_with("--")) {
        assert!(genroot.contains(&roff(opt)), "g2a-genroot.1 names {opt}");
    }
    // Completions for bash, zsh and fish, for both programs.
    for (bin, subs, options) in [
        (
            "graph2aufs",
            COMMANDS.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            COMMANDS.iter().flat_map(|(_, o)| o.iter().copied()).collect::<Vec<_>>(),
        ),
        ("g2a-genroot", vec![], GENROOT.to_vec()),
    ] {
        for rel in [
            format!("completions/bash/{bin}"),
            format!("completions/zsh/_{bin}"),
            format!("completions/fish/{bin}.fish"),
        ] {
            let text = read(&rel);
            for sub in &subs {
                assert!(text.contains(sub), "{rel} names {sub}");
            }
            for opt in options.iter().filter(|o| o.starts_with("--")) {
                // fish writes long options without their dashes (-l name).
                assert!(text.contains(&opt[2..]), "{rel} names {opt}");
            }
            assert!(
                !text.contains("generate-docs"),
                "{rel}: the hidden command stays hidden"
            );
        }
    }
}

/// Completes `line` (up to its end) with the generated bash completion.
fn bash_complete(completion: &Path, line: &str) -> Vec<String> {
    let script = format!(
        r#"source "$0"
line={line:?}
read -ra COMP_WORDS <<< "$line"
[[ "$line" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))
COMP_LINE="$line"; COMP_POINT=${{#line}}
_graph2aufs graph2aufs "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#
    );
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(script).arg(completion);
    let r = run_command(cmd, RUN_TIMEOUT);
    r.expect_code(0);
    r.stdout
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn bash_completion_completes_commands_and_options() {
    let (dir, _) = generated_docs();
    let completion = dir.path().join("completions/bash/graph2aufs");
    assert_eq!(bash_complete(&completion, "graph2aufs mi"), ["migrate"]);
    let got = bash_complete(&completion, "graph2aufs migrate --");
    for opt in ["--batch", "--copy-rate", "--json", "--all", "--aufs-dir"] {
        assert!(got.iter().any(|g| g == opt), "{opt} in {got:?}");
    }
    assert_eq!(bash_complete(&completion, "graph2aufs mount /r --thr"), ["--threads"]);
}

#[test]
fn install_puts_binaries_man_pages_completions_and_units_in_place() {
    let dest = scratch();
    let mut cmd = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install"));
    cmd.arg("/usr")
        .env("DESTDIR", dest.path())
        .env("BIN_DIR", bin().parent().unwrap());
    let r = run_command(cmd, RUN_TIMEOUT);
    r.expect_code(0);
    let d = dest.path();
    for bin in [
        "usr/bin/graph2aufs",
        "usr/bin/g2a-genroot",
        "usr/sbin/graph2aufs-recover",
    ] {
        let m = fs::metadata(d.join(bin)).unwrap_or_else(|e| panic!("{bin}: {e}\n{r}"));
        assert!(
            std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0,
            "{bin} runs"
        );
    }
    let mut pages = vec!["graph2aufs.1".to_string(), "g2a-genroot.1".to_string()];
    pages.extend(COMMANDS.iter().map(|(s, _)| format!("graph2aufs-{s}.1")));
    for page in pages {
        assert!(d.join("usr/share/man/man1").join(&page).is_file(), "{page}\n{r}");
    }
    for f in [
        "usr/share/bash-completion/completions/graph2aufs",
        "usr/share/zsh/vendor-completions/_graph2aufs",
        "usr/share/fish/vendor_completions.d/graph2aufs.fish",
        "usr/share/bash-completion/completions/g2a-genroot",
    ] {
        assert!(d.join(f).is_file(), "{f}\n{r}");
    }
    let unit = fs::read_to_string(d.join("etc/systemd/system/graph2aufs.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/graph2aufs mount /var/lib/docker --daemon"),
        "the unit runs the installed binary:\n{unit}"
    );
    assert!(d.join("etc/systemd/system/docker.service.d/graph2aufs.conf").is_file());
    // The installed binary is the one built (it runs).
    let mut cmd = Command::new(d.join("usr/bin/graph2aufs"));
    cmd.arg("--version");
    run_command(cmd, RUN_TIMEOUT).expect_code(0);
}

// ---------------------------------------------------------------------------
// 13. Progress
// ---------------------------------------------------------------------------

/// Runs `cmd` with its standard error on a pseudo-terminal (as a user at a
/// terminal sees it); returns what it wrote there and how long it ran.
fn on_a_terminal(mut cmd: Command) -> (String, Duration, i32) {
    let (mut master, mut slave) = (-1, -1);
    let size = libc::winsize {
        ws_row: 40,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two descriptors into the ints given; the name
    // and termios arguments may be null.
    let rc = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &size) };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned here only.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let reader = thread::spawn(move || {
        let mut f = fs::File::from(master);
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        // EIO once the last writer (the child) has gone.
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    });
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(slave))
        .env("TERM", "xterm");
    let t0 = Instant::now();
    let status = cmd.status().expect("the command starts");
    let elapsed = t0.elapsed();
    drop(cmd);
    (reader.join().unwrap(), elapsed, status.code().unwrap_or(-1))
}

/// Seconds in an ETA as the bar writes it: `45 s`, `3 min 20 s`, `7m`, `14s`.
fn eta_seconds(text: &str) -> Option<u64> {
    let mut total = 0;
    let mut any = false;
    let mut words = text.split_whitespace().peekable();
    while let Some(w) = words.next() {
        let (num, unit) = match w.find(|c: char| !c.is_ascii_digit()) {
            Some(0) => break,
            Some(i) => (&w[..i], w[i..].to_string()),
            None => (w, words.next().unwrap_or("").to_string()),
        };
        let n: u64 = num.parse().ok()?;
        let unit = unit.trim_end_matches([',', ')']);
        total += n * match unit {
            "s" => 1,
            "m" | "min" => 60,
            "h" => 3600,
            "d" => 86400,
            _ => return None,
        };
        any = true;
        if words
            .peek()
            .is_none_or(|w| !w.starts_with(|c: char| c.is_ascii_digit()))
        {
            break;
        }
    }
    any.then_some(total)
}

#[test]
fn a_quick_migrate_shows_whole_rates_and_no_absurd_eta() {
    if !require_root() {
        return;
    }
    let dir = scratch();
    let root = legacy_root(
        dir.path(),
        Options {
            images: 1500,
            max_chain: 12,
            containers: 100,
            ..plain()
        },
    );
    let mut cmd = Command::new(bin());
    cmd.arg("migrate").arg(&root).arg("--batch").arg("100");
    let (screen, took, code) = on_a_terminal(cmd);
    assert_eq!(code, 0, "{screen}");
    // The frames of the bar, as drawn.
    let frames: Vec<&str> = screen.split(['\r', '\n']).filter(|f| f.contains("migrating")).collect();
    assert!(!frames.is_empty(), "no progress bar on the terminal:\n{screen}");
    let mut rates = 0;
    for f in &frames {
        if let Some(i) = f.find("/s") {
            // The rate: whole numbers (thousands separated) and a unit.
            let before = &f[..i];
            let number = before.rsplit(' ').nth(1).unwrap_or("");
            let unit = before.rsplit(' ').next().unwrap_or("");
            assert!(
                !number.is_empty() && number.chars().all(|c| c.is_ascii_digit() || c == ','),
                "the rate is a whole number: {f:?}"
            );
            assert_eq!(unit, "items", "the rate has its unit: {f:?}");
            rates += 1;
        }
        if let Some(i) = f.find("eta ") {
            let eta = eta_seconds(&f[i + 4..]).unwrap_or_else(|| panic!("an ETA that does not read: {f:?}"));
            // An ETA is a guess; one far beyond the whole run is absurd.
            let bound = (took.as_secs_f64() * 3.0).max(took.as_secs_f64() + 5.0);
            assert!(
                (eta as f64) <= bound,
                "ETA {eta} s in a run of {took:?} (bound {bound:.1} s): {f:?}"
            );
        }
    }
    // (A run of a few seconds may end before a rate is worth showing.)
    assert!(
        rates > 0 || took < Duration::from_secs(3),
        "no rate shown in {took:?}:\n{frames:#?}"
    );
}
