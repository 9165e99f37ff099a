//! The offline run (`graph2aufs migrate`, the daemon stopped): blocked
//! items quarantined first, then every pending item migrated in batches,
//! parents before children; and the first steps it shares with the live
//! view.

use super::{Engine, Faults};
use crate::error::{Result, Step};
use crate::item::{ItemResult, State};
use crate::legacy;
use crate::names::escape_os;
use crate::plan::{self, Plan, Repositories};
use crate::record::{self, Record};
use crate::root::Root;

/// Options of an offline run.
pub struct Options {
    pub progress: bool,
    pub batch: usize,
    /// Bytes per second at most for copies across file systems (0: no limit).
    pub copy_rate: u64,
}

/// The outcome of an offline run.
pub struct Outcome {
    pub plan: Plan,
    pub results: Vec<ItemResult>,
    pub repositories: Repositories,
}

/// The first steps of every run over ROOT, offline or live: the record, a
/// scan, the plan, and the engine open (with the sources set aside by an
/// earlier copy dropped).
pub fn prepare(root: &Root) -> Result<(Engine<'_>, legacy::Scan, Plan)> {
    let t = std::time::Instant::now();
    let record = Record::load(root)?;
    let scan = legacy::scan(root).step(|| format!("reading {}", root.path().display()))?;
    let plan = plan::plan(&scan, &record);
    log::debug!("scan and plan in {:?}", t.elapsed());
    let mut engine = Engine::open(root, record, Faults::from_env())?;
    engine.drop_set_aside_sources(&plan);
    log::debug!("engine open at {:?}", t.elapsed());
    Ok((engine, scan, plan))
}

/// Offline migration of ROOT (the daemon stopped).
pub fn run(root: &Root, opts: &Options) -> Result<Outcome> {
    let (mut engine, _, plan) = prepare(root)?;
    engine.pace = std::sync::Arc::new(crate::copy::Pace::new(opts.copy_rate));
    let mut results = ItemResult::of_items(&plan.items);
    // Blocked items first: out of the daemon's way.
    let blocked = engine.to_quarantine(&plan);
    if !blocked.is_empty() {
        engine.claim(&plan, &blocked)?;
        for &i in &blocked {
            if let Err(e) = engine.quarantine(&plan, i) {
                results[i].state = State::Failed;
                results[i].reason = Some(format!("could not be quarantined: {e}"));
            }
        }
    }
    // Failed items are tried again: whatever stopped them may be gone.
    let todo: Vec<usize> = (0..plan.items.len())
        .filter(|&i| matches!(plan.items[i].state, State::Pending | State::Fallback | State::Failed))
        .collect();
    let bar = crate::progress::bar(opts.progress, todo.len() as u64);
    let mut failed = vec![false; plan.items.len()];
    // The sources of layers copied to another file system (each in place,
    // durable, compared and recorded first) are removed by a background
    // thread while the next layers are copied. A removal that fails fails
    // its item, with the same reason as before, at the end of the run
    // (meanwhile the item, its copy in place, was registered, and its
    // children went on: the next run removes the rest of the source).
    engine.removals = Some(crate::copy::Removals::start());
    for batch in todo.chunks(opts.batch.max(1)) {
        engine.claim(&plan, batch)?;
        for &i in batch {
            let it = &plan.items[i];
            // Never register a layer on a parent that is not (Docker's bug
            // 5.1: a chain naming a layer that does not exist).
            if let Some(p) = it
                .parent
                .filter(|&p| failed[p] || results[p].state != State::Registered)
            {
                failed[i] = true;
                results[i].state = State::Failed;
                results[i].reason = Some(format!(
                    "its parent {} is not registered",
                    escape_os(&plan.items[p].name)
                ));
                engine.note_failure(it, results[i].reason.clone());
                continue;
            }
            match engine.migrate_item(&plan, i) {
                Ok(()) => {
                    results[i].state = State::Registered;
                    results[i].reason = None;
                }
                Err(e) => {
                    log::error!("{} {}: {e}", it.kind, escape_os(&it.name));
                    failed[i] = true;
                    results[i].state = State::Failed;
                    results[i].reason = Some(e.to_string());
                }
            }
            engine.note_failure(it, results[i].reason.clone());
            bar.inc(1);
        }
        engine.save_failures()?;
        engine.sync()?;
        if bar.is_hidden() {
            log::info!("{}", crate::progress::summary(&bar));
        }
    }
    let removals = engine.removals.take().expect("set above");
    for (key, e) in removals.finish() {
        let Some(i) = plan.items.iter().position(|it| record::key(it.kind, &it.name) == key) else {
            continue;
        };
        let it = &plan.items[i];
        log::error!("{} {}: {e}", it.kind, escape_os(&it.name));
        results[i].state = State::Failed;
        results[i].reason = Some(e.to_string());
        engine.note_failure(it, results[i].reason.clone());
    }
    engine.save_failures()?;
    bar.finish_and_clear();
    engine.rename_repositories(&plan)?;
    engine.sync()?;
    // Info of this run's copies (the plan has that of earlier runs).
    let mut plan = plan;
    for n in plan::outside_link_notes(&engine.record) {
        if !plan.info.iter().any(|m| (&m.path, &m.reason) == (&n.path, &n.reason)) {
            plan.info.push(n);
        }
    }
    let repositories = plan.repositories.clone();
    Ok(Outcome {
        plan,
        results,
        repositories,
    })
}
