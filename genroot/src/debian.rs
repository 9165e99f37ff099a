//! A prepared Debian tree (scripts/debian-base) as the layer of a base image.

use std::io;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, CWD};

use super::copy::list;
use super::merged::{Merged, Node, Seen};
use super::tree::with_path;

/// Every `SAMPLE`-th non-directory is modelled; all directories are.
const SAMPLE: usize = 8;

/// What child layers may change in the tree at `dir`: all its directories and a
/// sample of the rest (modelling all of a big tree for every descendant image
/// would cost more than it adds). Names that are not UTF-8 are left out.
pub(crate) fn scan(dir: &Path) -> io::Result<Merged> {
    let mut merged = Merged::default();
    let mut count = 0usize;
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, rel)) = stack.pop() {
        for name in list(&path).map_err(|e| with_path(e.into(), &path))? {
            let abs = path.join(&name);
            let Ok(name) = name.into_string() else { continue };
            let child = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            let st = rustix::fs::statat(CWD, &abs, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| with_path(e.into(), &abs))?;
            let node = match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => Node::Dir,
                FileType::RegularFile => Node::File,
                FileType::Unknown => continue,
                _ => Node::Other,
            };
            let seen = Seen {
                node,
                mode: st.st_mode & 0o7777,
                uid: st.st_uid,
                gid: st.st_gid,
            };
            if node == Node::Dir {
                merged.insert(&child, seen);
                stack.push((abs, child));
            } else {
                count += 1;
                if count % SAMPLE == 0 {
                    merged.insert(&child, seen);
                }
            }
        }
    }
    Ok(merged)
}
