//! What commands print: `--json` documents (stable, documented in the
//! README; one per run, errors included) and plain text for people, with
//! its counts, sizes, rates and durations.

use crate::error::Error;
use crate::item::{Item, ItemKind, ItemResult, Source, State};
use crate::names::escape_os;
use crate::plan::{Note, Plan, Repositories};
use crate::rollback::RollbackReport;
use crate::units::{bytes, bytes_per_second, count, duration, thousands};
use crate::verify::Verdict;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Set once a JSON document is on standard output: a run prints one.
static PRINTED: AtomicBool = AtomicBool::new(false);

/// Prints `doc` as the run's JSON document, unless one was printed already
/// (then the run's outcome is on standard error and in its exit code).
pub fn print_json<T: Serialize + ?Sized>(doc: &T) {
    if !PRINTED.swap(true, Ordering::SeqCst) {
        println!(
            "{}",
            serde_json::to_string_pretty(doc).expect("reports always serialize")
        );
    }
}

/// The document of an error that stops a command.
#[derive(Serialize)]
struct ErrorDocument<'a> {
    error: ErrorReport<'a>,
}

#[derive(Serialize)]
struct ErrorReport<'a> {
    message: &'a str,
    /// `usage`, `environment` or `io`.
    kind: &'a str,
    exit_code: u8,
}

/// An error that stops a command (exit code 2): on standard error, and
/// under `--json` as the run's document.
pub fn print_error(e: &Error, json: bool) {
    eprintln!("graph2aufs: {e}");
    if json {
        let kind = match e {
            Error::Usage(_) => "usage",
            Error::Env(_) => "environment",
            Error::Io { .. } => "io",
        };
        print_error_json(&e.to_string(), kind);
    }
}

/// The document of a failure with exit code 2: `{"error": {"message",
/// "kind", "exit_code"}}`, `kind` being `usage`, `environment` or `io`.
pub fn print_error_json(message: &str, kind: &str) {
    print_json(&ErrorDocument {
        error: ErrorReport {
            message,
            kind,
            exit_code: 2,
        },
    });
}

/// What `mount` prints once the view is usable: under `--json` this
/// document; with `--daemon` otherwise the server's pid alone.
#[derive(Serialize)]
pub struct MountReport {
    pub root: String,
    pub mountpoint: String,
    /// The process serving the view; absent where nothing was mounted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    pub read_only: bool,
    /// False where a read-write mount found nothing left to migrate (the
    /// view has retired), with the reason.
    pub mounted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl MountReport {
    pub fn new(root: &std::path::Path, mountpoint: &std::path::Path, pid: u32, read_only: bool) -> MountReport {
        MountReport {
            root: escape_os(root.as_os_str()),
            mountpoint: escape_os(mountpoint.as_os_str()),
            pid: Some(pid),
            read_only,
            mounted: true,
            reason: None,
        }
    }

    /// A read-write mount that did not mount: nothing is left to migrate.
    pub fn retired(root: &std::path::Path, mountpoint: &std::path::Path, reason: &str) -> MountReport {
        MountReport {
            root: escape_os(root.as_os_str()),
            mountpoint: escape_os(mountpoint.as_os_str()),
            pid: None,
            read_only: false,
            mounted: false,
            reason: Some(reason.to_string()),
        }
    }

    /// `--json`: the document; otherwise, with `--daemon`, the server's pid,
    /// and where nothing was mounted, why.
    pub fn print(&self, json: bool, daemon: bool) {
        if json {
            print_json(self);
        } else if let Some(reason) = &self.reason {
            println!("{reason}");
        } else if let (true, Some(pid)) = (daemon, self.pid) {
            println!("{pid}");
        }
    }
}

/// `verify`'s verdict: its document, or the problems and a summary line.
pub fn print_verdict(v: &Verdict, json: bool) {
    if json {
        return print_json(v);
    }
    for p in &v.problems {
        println!("{}: {}", p.path, p.reason);
    }
    println!(
        "{} {}: {}, {}, {}, {}",
        if v.ok { "OK" } else { "NOT OK" },
        v.root,
        count(v.images, "image"),
        count(v.containers, "container"),
        count(v.layers, "layer"),
        count(v.problems.len(), "problem")
    );
}

/// Whether a path in a rollback report names an item (`image/<id>`,
/// `container/<id>`), not `repositories`.
fn is_item(path: &str) -> bool {
    path.starts_with("image/") || path.starts_with("container/")
}

/// Items, then anything else (`repositories`), in words.
fn items_and_others(paths: &[&str]) -> String {
    let items = paths.iter().filter(|p| is_item(p)).count();
    let others: Vec<&str> = paths.iter().filter(|p| !is_item(p)).copied().collect();
    if others.is_empty() {
        count(items, "item")
    } else {
        format!("{} and {}", count(items, "item"), others.join(", "))
    }
}

/// `rollback`'s report: its document, or what was refused and a summary.
pub fn print_rollback(rep: &RollbackReport, json: bool) {
    if json {
        return print_json(rep);
    }
    for r in &rep.refused {
        println!("refused {}: {}", r.path, r.reason);
    }
    let restored: Vec<&str> = rep.restored.iter().map(String::as_str).collect();
    let refused: Vec<&str> = rep.refused.iter().map(|n| n.path.as_str()).collect();
    println!(
        "rolled back {} in {}{}",
        items_and_others(&restored),
        rep.root,
        if refused.is_empty() {
            String::new()
        } else {
            format!("; refused {}", items_and_others(&refused))
        }
    );
}

#[derive(Serialize, Deserialize)]
pub struct ItemReport {
    pub kind: ItemKind,
    pub id: String,
    pub state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub source: Source,
    pub action: String,
    pub ours: bool,
    /// A copy to another file system under way (a live view's status).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub copy: Option<CopyProgress>,
}

/// How far a copy to another file system has come.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct CopyProgress {
    pub done_bytes: u64,
    pub total_bytes: u64,
    pub bytes_per_s: u64,
    /// Seconds left at the current rate.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub eta_s: Option<u64>,
}

/// What `migrate` does (or did) to an item in this state.
pub fn action(it: &Item) -> &'static str {
    match (it.state, it.source) {
        (State::Quarantined, _) if it.legacy_present => "quarantine",
        (State::Quarantined, _) => "none",
        (State::Registered | State::Removed, _) => "none",
        (State::Fallback, _) => "replace-symlink",
        (_, Source::Legacy) => "move",
        (_, Source::Quarantine) => "unquarantine",
        (_, Source::Empty) => "create-empty-rw",
        _ => "register",
    }
}

/// A read-write view's progress, in the status it keeps while mounted.
#[derive(Serialize, Deserialize, Clone)]
pub struct LiveState {
    pub mountpoint: String,
    pub pid: u32,
    /// Unix seconds.
    pub started: u64,
    pub updated: u64,
    /// Every item is migrated: the view is pure passthrough.
    pub finished: bool,
    /// How FUSE requests reach the view: `uring` (FUSE over io_uring) or
    /// `classic` (/dev/fuse); absent until the view is mounted.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub transport: String,
}

#[derive(Serialize, Deserialize)]
pub struct Document {
    pub root: String,
    pub items: Vec<ItemReport>,
    pub totals: BTreeMap<String, usize>,
    pub repositories: Repositories,
    pub notes: Vec<Note>,
    /// Findings that are no problem (never counted as one: see
    /// [`Plan::info`]).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub info: Vec<Note>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub elapsed_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub live: Option<LiveState>,
}

impl Document {
    pub fn new(root: &std::path::Path, plan: &Plan, results: Option<&[ItemResult]>) -> Document {
        let items: Vec<ItemReport> = plan
            .items
            .iter()
            .enumerate()
            .map(|(i, it)| {
                let (state, reason) = match results {
                    Some(r) => (r[i].state, r[i].reason.clone()),
                    None => (it.state, it.reason.clone()),
                };
                ItemReport {
                    kind: it.kind,
                    id: escape_os(&it.name),
                    state,
                    reason,
                    source: it.source,
                    action: action(it).to_string(),
                    ours: it.ours,
                    copy: None,
                }
            })
            .collect();
        let mut totals = BTreeMap::new();
        for s in State::ALL {
            totals.insert(s.as_str().to_string(), items.iter().filter(|r| r.state == s).count());
        }
        Document {
            root: crate::names::escape_os(root.as_os_str()),
            items,
            totals,
            repositories: plan.repositories.clone(),
            notes: plan.notes.clone(),
            info: plan.info.clone(),
            elapsed_s: None,
            live: None,
        }
    }

    /// Problems found: quarantined or failed items, or notes (`info` is
    /// none).
    pub fn has_problems(&self) -> bool {
        self.totals["quarantined"] + self.totals["failed"] > 0
            || matches!(self.repositories, Repositories::Conflict(_) | Repositories::SetAside(_))
            || !self.notes.is_empty()
    }

    pub fn print_json(&self) {
        print_json(self);
    }

    /// Plain text: totals, then every item with a problem (or every item).
    pub fn print_text(&self, title: &str, all: bool) {
        println!("{title} {}", self.root);
        for it in &self.items {
            let problem = matches!(
                it.state,
                State::Quarantined | State::Failed | State::Fallback | State::Copying | State::Removed
            );
            if all || problem {
                let kind = it.kind.as_str();
                let state = match &it.copy {
                    Some(c) if c.total_bytes > 0 => {
                        format!("{} {}%", it.state.as_str(), c.done_bytes * 100 / c.total_bytes)
                    }
                    _ => it.state.as_str().to_string(),
                };
                match &it.reason {
                    _ if it.copy.is_some() => {
                        let c = it.copy.as_ref().expect("checked");
                        println!(
                            "  {state:<11} {kind:<9} {}  ({} of {}, {}{})",
                            it.id,
                            bytes(c.done_bytes),
                            bytes(c.total_bytes),
                            bytes_per_second(c.bytes_per_s as f64),
                            c.eta_s
                                .map(|s| format!(", eta {}", duration(Duration::from_secs(s))))
                                .unwrap_or_default()
                        )
                    }
                    Some(r) => println!("  {:<11} {kind:<9} {}  ({}; {r})", it.state.as_str(), it.id, it.action),
                    None => println!("  {:<11} {kind:<9} {}  ({})", it.state.as_str(), it.id, it.action),
                }
            }
        }
        for n in &self.notes {
            println!("  note        {}: {}", n.path, n.reason);
        }
        if !self.info.is_empty() {
            println!("  info (no problem):");
            for n in &self.info {
                println!("    {}: {}", n.path, n.reason);
            }
        }
        // (A repositories conflict is among the notes above.)
        if self.repositories == Repositories::Rename {
            println!("  repositories -> repositories-aufs");
        }
        let totals: Vec<String> = self
            .totals
            .iter()
            .filter(|(_, &n)| n > 0)
            .map(|(s, &n)| format!("{} {s}", thousands(n as u64)))
            .collect();
        println!(
            "  {}: {}",
            count(self.items.len(), "item"),
            if totals.is_empty() {
                "none".into()
            } else {
                totals.join(", ")
            }
        );
        if let Some(t) = self.elapsed_s {
            println!("  in {t:.3} s");
        }
        if let Some(l) = &self.live {
            println!(
                "  served by graph2aufs (pid {}) at {}; {}",
                l.pid,
                l.mountpoint,
                if l.finished {
                    "every item is migrated: the view is pure passthrough"
                } else {
                    "migrating in the background"
                }
            );
        }
    }
}
