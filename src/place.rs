//! Where an item's data is now, read from the disk at the moment of asking:
//! its legacy place, its quarantined copy, or `aufs/diff/<id>`. The data of
//! a layer is in exactly one of them at every instant of a migration, so
//! `migrate`, `rollback` and the view all find it here.

use crate::dirref::DirRef;
use crate::initlayer::InitLayer;
use crate::item::Item;
use crate::legacy::Dirs;
use crate::plan::Plan;
use crate::sys::{self, Kind};
use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

fn not_found(it: &Item) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("the data of {} is nowhere", crate::names::escape_os(&it.name)),
    )
}

/// The directory holding an item's data and the data's name in it. For a
/// blocked item, its legacy entry whatever it is (what the quarantine takes).
pub fn data_place(dirs: &Dirs, it: &Item) -> io::Result<(OwnedFd, OsString)> {
    // A recorded copy is complete, even while its source is being removed
    // (or its removal stopped half-way).
    if let (true, Some(diff)) = (it.copied.get(), &dirs.diff) {
        if sys::kind_unread(diff, &it.name)? == Kind::Dir {
            return Ok((diff.try_clone()?, it.name.clone()));
        }
    }
    let (legacy, quarantine) = (dirs.legacy(it.kind), dirs.quarantine(it.kind));
    let leaf = it.legacy_leaf();
    for parent in [legacy, quarantine].into_iter().flatten() {
        // A symlinked item directory is never followed: no data there.
        let d = match sys::open_dir(parent, &it.name) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => None,
            r => r?,
        };
        if let Some(d) = d {
            match sys::kind_unread(&d, leaf)? {
                Kind::Dir => return Ok((d, leaf.into())),
                Kind::Missing => {}
                _ if it.blocked() => return Ok((d, leaf.into())),
                _ => {}
            }
        }
    }
    if let Some(diff) = &dirs.diff {
        if sys::kind_unread(diff, &it.name)? == Kind::Dir {
            return Ok((diff.try_clone()?, it.name.clone()));
        }
    }
    Err(not_found(it))
}

/// The data directory of an unblocked item.
pub fn data_dir(dirs: &Dirs, it: &Item) -> io::Result<Arc<DirRef>> {
    let (dir, name) = data_place(dirs, it)?;
    Ok(DirRef::new(sys::open_dir_required(&dir, &name)?))
}

/// The init layer of container `i`, computed from its image's layers
/// wherever they are: what the view shows and what `migrate` writes.
pub fn init_layer(dirs: &Dirs, plan: &Plan, i: usize) -> io::Result<InitLayer> {
    let chain = plan
        .chain(i)
        .iter()
        .map(|id| {
            let j = plan
                .find(id)
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("layer {id} is not in the plan")))?;
            data_dir(dirs, &plan.items[j])
        })
        .collect::<io::Result<Vec<_>>>()?;
    InitLayer::compute(&chain, plan.items[i].created)
}
