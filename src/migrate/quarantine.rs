//! Quarantine: a blocked item's legacy data and aufs registrations moved,
//! untouched, under `.graph2aufs/quarantine/`, out of the daemon's way;
//! and back, when a later run can migrate the item.

use super::Engine;
use crate::item::{self, ItemKind};
use crate::layout::AufsDir;
use crate::names::escape_os;
use crate::plan::Plan;
use crate::root::{OWN_DIR, QUARANTINE};
use crate::sys::{self, Context};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;

impl Engine<'_> {
    /// A blocked item's entries in the aufs directories (left by Docker
    /// 1.8's migration): they would make Docker's `Exists` true for it.
    /// Only for valid ids: an unsafe name may be another layer's.
    pub fn registrations(&self, it: &item::Item) -> io::Result<Vec<(AufsDir, OsString)>> {
        let Some(id) = &it.id else { return Ok(Vec::new()) };
        let mut names = vec![id.to_os_string()];
        if it.kind == ItemKind::Container {
            names.push(id.init_layer().to_os_string());
        }
        let mut out = Vec::new();
        for sub in AufsDir::ALL {
            for n in &names {
                if sys::lstat(self.aufs(sub), n)?.is_some() {
                    out.push((sub, n.clone()));
                }
            }
        }
        Ok(out)
    }

    /// An item an earlier run quarantined and this one migrates: what the
    /// quarantine took from `aufs/` goes back first, so that migrating it
    /// (and rolling it back) starts from what Docker 1.8 had left.
    pub(super) fn unquarantine_registrations(&mut self, it: &item::Item) -> io::Result<()> {
        let Some(id) = &it.id else { return Ok(()) };
        let Some(q) = &self.quarantined_aufs else { return Ok(()) };
        let mut names = vec![id.to_os_string()];
        if it.kind == ItemKind::Container {
            names.push(id.init_layer().to_os_string());
        }
        for sub in AufsDir::ALL {
            let Some(qsub) = sys::open_dir(q, sub.name())? else {
                continue;
            };
            let to = self.aufs(sub).try_clone()?;
            for n in &names {
                if sys::lstat(&qsub, n)?.is_some() {
                    self.faults.step()?;
                    sys::rename_noreplace(&qsub, n, &to, n)
                        .context(|| format!("moving aufs/{}/{} back from the quarantine", sub.name(), escape_os(n)))?;
                }
            }
        }
        Ok(())
    }

    /// `.graph2aufs/quarantine/aufs/<sub>`, made where missing.
    pub(super) fn quarantine_aufs(&self, sub: AufsDir) -> io::Result<OwnedFd> {
        let mut q = sys::open_dir_required(self.root.fd(), OWN_DIR)?;
        for c in ["quarantine", "aufs", sub.name()] {
            sys::ensure_dir(&q, c, 0o700)?;
            q = sys::open_dir_required(&q, c)?;
        }
        Ok(q)
    }

    /// The blocked items that hold something to quarantine: legacy data, or
    /// aufs registrations.
    pub fn to_quarantine(&self, plan: &Plan) -> Vec<usize> {
        let registered = |it: &item::Item| self.registrations(it).map(|r| !r.is_empty()).unwrap_or(false);
        (0..plan.items.len())
            .filter(|&i| {
                let it = &plan.items[i];
                it.blocked() && (it.legacy_present || registered(it))
            })
            .collect()
    }

    /// Moves a blocked item's legacy data, untouched, to the quarantine,
    /// and its aufs registrations, if any, to `.graph2aufs/quarantine/aufs/`.
    pub fn quarantine(&mut self, plan: &Plan, i: usize) -> io::Result<()> {
        let it = &plan.items[i];
        for (sub, name) in self.registrations(it)? {
            self.faults.step()?;
            let q = self.quarantine_aufs(sub)?;
            self.faults.step()?;
            sys::rename_noreplace(self.aufs(sub), &name, &q, &name)
                .context(|| format!("moving aufs/{}/{} to the quarantine", sub.name(), escape_os(&name)))?;
        }
        if !it.legacy_present {
            return Ok(());
        }
        let rel = format!("{QUARANTINE}/{}", it.legacy_parent_dir());
        self.faults.step()?;
        let mut dir = sys::open_dir_required(self.root.fd(), OWN_DIR)?;
        for c in ["quarantine", it.legacy_parent_dir()] {
            sys::ensure_dir(&dir, c, 0o700)?;
            dir = sys::open_dir_required(&dir, c)?;
        }
        sys::ensure_dir(&dir, &it.name, 0o700)?;
        let qdir = sys::open_dir_required(&dir, &it.name)?;
        let src = sys::open_dir_required(self.legacy_dir(it.kind)?, &it.name)?;
        self.faults.step()?;
        sys::rename_noreplace(&src, it.legacy_leaf(), &qdir, it.legacy_leaf())
            .context(|| format!("moving {} to {rel}/{}", it.legacy_path(), escape_os(&it.name)))?;
        log::info!(
            "quarantined {}: {}",
            it.legacy_path(),
            it.reason.as_deref().unwrap_or("")
        );
        Ok(())
    }

    /// Moves `aufs/layers/<name>` to `.graph2aufs/quarantine/aufs/layers/`.
    pub(super) fn set_aside_layers(&mut self, name: &OsStr) -> io::Result<()> {
        let dir = self.quarantine_aufs(AufsDir::Layers)?;
        self.faults.step()?;
        sys::rename_noreplace(self.layers(), name, &dir, name)
            .context(|| format!("setting aufs/layers/{} aside in the quarantine", escape_os(name)))
    }
}
