//! What commands print: `--json` documents (stable, documented in the
//! README) and plain text for people.

use crate::migrate::ItemResult;
use crate::names::escape_os;
use crate::plan::{Item, ItemKind, Note, Plan, Repositories, Source, State};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
}

#[derive(Serialize, Deserialize)]
pub struct Document {
    pub root: String,
    pub items: Vec<ItemReport>,
    pub totals: BTreeMap<String, usize>,
    pub repositories: Repositories,
    pub notes: Vec<Note>,
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
            elapsed_s: None,
            live: None,
        }
    }

    /// Problems found: quarantined or failed items, or notes.
    pub fn has_problems(&self) -> bool {
        self.totals["quarantined"] + self.totals["failed"] > 0
            || matches!(self.repositories, Repositories::Conflict(_) | Repositories::SetAside(_))
            || !self.notes.is_empty()
    }

    pub fn print_json(&self) {
        println!(
            "{}",
            serde_json::to_string_pretty(self).expect("reports always serialize")
        );
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
                let kind = match it.kind {
                    ItemKind::Image => "image",
                    ItemKind::Container => "container",
                };
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
                            "  {state:<11} {kind:<9} {}  ({} of {} MiB, {} MiB/s, eta {} s)",
                            it.id,
                            c.done_bytes >> 20,
                            c.total_bytes >> 20,
                            c.bytes_per_s >> 20,
                            c.eta_s.map_or("?".into(), |s| s.to_string())
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
        // (A repositories conflict is among the notes above.)
        if self.repositories == Repositories::Rename {
            println!("  repositories -> repositories-aufs");
        }
        let totals: Vec<String> = self
            .totals
            .iter()
            .filter(|(_, &n)| n > 0)
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        println!(
            "  {} items: {}",
            self.items.len(),
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
