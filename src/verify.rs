//! `verify`: is ROOT a complete, consistent aufs layout? Reads only.

use crate::error::{Result, Step};
use crate::item::{self, State};
use crate::layout;
use crate::legacy::{self, Dirs, LAYERS_CAP};
use crate::names::{escape, escape_os};
use crate::plan::{self, Note, Repositories};
use crate::record::Record;
use crate::root::Root;
use crate::sys::{self, Kind};
use rustix::fs::FileType;
use serde::Serialize;
use std::collections::HashSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

#[derive(Serialize)]
pub struct Verdict {
    pub root: String,
    pub ok: bool,
    pub images: usize,
    pub containers: usize,
    pub layers: usize,
    pub problems: Vec<Note>,
}

pub fn verify(root: &Root) -> Result<Verdict> {
    let r = root.path().display().to_string();
    let record = Record::load(root)?;
    let scan = legacy::scan(root).step(|| format!("reading {r}"))?;
    let plan = plan::plan(&scan, &record);
    let mut problems = Vec::new();
    let mut problem = |path: String, reason: String| problems.push(Note { path, reason });
    for k in 0..4 {
        let rel = ["aufs", "aufs/diff", "aufs/layers", "aufs/mnt"][k];
        match &scan.aufs_dirs[k] {
            Kind::Dir => {}
            // (Nothing under a missing aufs/ is worth a line of its own.)
            Kind::Missing if k > 0 && scan.aufs_dirs[0] == Kind::Missing => {}
            Kind::Missing if k == 0 => problem(
                rel.into(),
                "does not exist: ROOT is not migrated (run graph2aufs migrate)".into(),
            ),
            Kind::Missing => problem(rel.into(), "does not exist".into()),
            other => problem(rel.into(), format!("is {}, not a directory", other.describe())),
        }
    }
    for it in &plan.items {
        let what = format!("{}/{}", it.legacy_parent_dir(), escape_os(&it.name));
        match it.state {
            // (Removed by the daemon: nothing of it is left to check.)
            State::Registered | State::Removed => {}
            State::Quarantined => problem(what, format!("quarantined: {}", it.reason.as_deref().unwrap_or(""))),
            s => problem(
                what,
                format!(
                    "not migrated ({}{})",
                    s.as_str(),
                    it.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
                ),
            ),
        }
    }
    match &plan.repositories {
        Repositories::Rename => problem("repositories".into(), "not renamed to repositories-aufs".into()),
        Repositories::Conflict(why) | Repositories::SetAside(why) => problem("repositories".into(), why.clone()),
        _ => {}
    }
    let dirs = Dirs::open(root).step(|| format!("opening the directories of {r}"))?;
    let mut layer_names = 0;
    if let (Some(diff), Some(layers)) = (&dirs.diff, &dirs.layers) {
        let mut diff_names: HashSet<OsString> = HashSet::new();
        for (name, ft) in sys::list_dir(diff).step(|| "listing aufs/diff".into())? {
            match ft {
                FileType::Directory => {
                    diff_names.insert(name);
                }
                FileType::Symlink => problem(
                    format!("aufs/diff/{}", escape_os(&name)),
                    match sys::kind(diff, &name) {
                        Ok(Kind::Symlink(t)) => format!(
                            "is a symlink to {} (Docker's diff, commit and save break on it)",
                            escape(&t)
                        ),
                        _ => "is a symlink".into(),
                    },
                ),
                other => problem(
                    format!("aufs/diff/{}", escape_os(&name)),
                    format!("is a {}, not a directory", sys::type_name(other)),
                ),
            }
        }
        let mut layer_files = sys::list_dir(layers).step(|| "listing aufs/layers".into())?;
        layer_files.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, _) in layer_files {
            layer_names += 1;
            let path = format!("aufs/layers/{}", escape_os(&name));
            if !diff_names.contains(&name) {
                problem(path.clone(), "has no aufs/diff directory".into());
            }
            match sys::read_file(layers, &name, LAYERS_CAP) {
                Err(e) => problem(path, format!("cannot be read: {e}")),
                Ok(bytes) => {
                    for line in layout::parse_layers(&bytes) {
                        if !diff_names.contains(std::ffi::OsStr::from_bytes(line)) {
                            problem(
                                path.clone(),
                                format!("names {}, which has no aufs/diff directory", escape(line)),
                            );
                        }
                    }
                }
            }
        }
        for name in &diff_names {
            if name.as_encoded_bytes().starts_with(crate::id::OWN_PREFIX.as_bytes()) {
                continue;
            }
            if let Some(mnt) = &dirs.mnt {
                if sys::kind(mnt, name).ok() != Some(Kind::Dir) {
                    problem(format!("aufs/mnt/{}", escape_os(name)), "is missing".into());
                }
            }
        }
    }
    let images = plan.items.iter().filter(|i| i.kind == item::ItemKind::Image).count();
    Ok(Verdict {
        root: crate::names::escape_os(root.path().as_os_str()),
        ok: problems.is_empty(),
        images,
        containers: plan.items.len() - images,
        layers: layer_names,
        problems,
    })
}
