//! Bringing a copy of a layer up to date with its source, which the view
//! kept changing while it was copied: every entry whose status change time
//! is at or after the time the last pass started (any write, truncation,
//! chmod, chown, xattr change, link or rename moves it) is copied again
//! (to a temporary name, then renamed over the old copy: a hard link it
//! shared in the copy is not changed with it), entries the source no longer
//! has are removed from the copy, and everything else is checked by its
//! metadata. A directory renamed (or exchanged with another) keeps its
//! entries' status change times: a directory whose copy was made from
//! another source directory than the one now at its name (see
//! [`crate::copy::Origins`]) is copied anew, whole. A copy whose links
//! are not its source's (two files made one, or one made two) is copied
//! again too. A pass costs a walk of the layer and the changed data.
//!
//! The last pass runs with writes into the layer paused, checking every
//! entry it copies, content included: the entries it leaves alone were
//! checked by [`crate::copy::compare_unchanged`] before it (unchanged since,
//! their status change times say). That pass also finds, for the inodes the
//! view holds, their copies: the view switches to them; and it counts each
//! hard-linked file's names in the layer, which its copy must have exactly
//! (a link outside the layer is not copied: see [`crate::copy::OutsideLink`]).

use crate::copy::{self, ctime, ftype, Links, Pace};
use crate::sys::{self, at, clock, clock::Clock};
use rustix::fs::{self as rfs, AtFlags, FileType, Stat};
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

/// Where the copy of a source inode is: its directory and its name there;
/// and the source's birth time, as the view keys inodes (an inode number
/// reused is another file: see [`born`]).
pub type Found = HashMap<(u64, u64), (Arc<OwnedFd>, OsString, u64)>;

/// The birth time of entry `name` of `dir` as the view keys inodes with it
/// (0 where the file system keeps none).
pub fn born(dir: &OwnedFd, name: &OsStr) -> io::Result<u64> {
    let x = rfs::statx(dir, name, AtFlags::SYMLINK_NOFOLLOW, rfs::StatxFlags::BTIME)?;
    Ok(match x.stx_mask & rfs::StatxFlags::BTIME.bits() != 0 {
        true => (x.stx_btime.tv_sec as u64) << 30 ^ x.stx_btime.tv_nsec as u64,
        false => 0,
    })
}

/// A pass over a copy.
pub struct Pass<'a> {
    /// Entries changed at or after this time are copied again.
    since: (i64, i64),
    /// Check each entry copied again against its source (the last pass,
    /// when nothing changes the source).
    verify: bool,
    /// Source inodes (device, inode number) whose copies to report.
    want: &'a HashSet<(u64, u64)>,
    pub found: Found,
    /// Entries copied again, or removed.
    pub changed: u64,
    pace: &'a Pace,
    /// Hard links met in this pass, by source inode.
    links: HashMap<(u64, u64), Met>,
    /// Directories copied anew, to check once the pass has linked every
    /// hard link (a name met later may link into them).
    to_check: Vec<(OwnedFd, OwnedFd, OsString)>,
    /// Where the entry at hand is, below the top of the layer.
    at: PathBuf,
    /// The source directory of each directory of the copy (see
    /// [`copy::Origins`]), kept up to date by the pass.
    origins: copy::Origins,
    /// The copies (inode numbers) of the hard-linked files met.
    claimed: HashSet<u64>,
}

/// A hard-linked source inode met in a pass.
struct Met {
    /// Its copy's first name, and the copy's inode number.
    dir: Arc<OwnedFd>,
    name: OsString,
    ino: u64,
    /// Its first name below the top of the layer.
    path: PathBuf,
    /// Its names met in the pass (all of them in the layer).
    names: u64,
    /// Its link count in the source.
    nlink: u64,
}

/// A moment, to find the changes made since: the clock the kernel stamps
/// status changes with then, and how far the wall clock was from a clock
/// nobody sets (so that a wall clock set back since is noticed).
#[derive(Clone, Copy)]
pub struct Stamp {
    time: i128,
    offset: i128,
}

fn offset() -> i128 {
    clock::nanos(Clock::Realtime) - clock::nanos(Clock::Monotonic)
}

/// Now.
pub fn stamp() -> Stamp {
    Stamp {
        time: clock::nanos(Clock::RealtimeCoarse),
        offset: offset(),
    }
}

impl Stamp {
    /// The status change time at or after which an entry changed after
    /// this moment: its time, earlier by as much as the wall clock has been
    /// set back since (and by a few milliseconds for rounding).
    pub fn since(&self) -> (i64, i64) {
        let back = (self.offset - offset()).max(0);
        let t = self.time - back - 10_000_000;
        (
            (t.div_euclid(1_000_000_000)) as i64,
            (t.rem_euclid(1_000_000_000)) as i64,
        )
    }
}

impl<'a> Pass<'a> {
    pub fn new(since: (i64, i64), verify: bool, want: &'a HashSet<(u64, u64)>, pace: &'a Pace) -> Pass<'a> {
        Pass {
            since,
            verify,
            want,
            found: Found::new(),
            changed: 0,
            pace,
            links: HashMap::new(),
            to_check: Vec::new(),
            at: PathBuf::new(),
            origins: copy::Origins::new(),
            claimed: HashSet::new(),
        }
    }

    /// Whether the pass checks what it copies (the last one).
    pub fn verifies(&self) -> bool {
        self.verify
    }

    /// Brings the copy `dst` of directory `src` up to date (see
    /// [`Pass::dir`]; `origins`: the source of each directory of the copy,
    /// updated), checking what it copied again if the pass verifies, and
    /// then the hard links of the copy: each file's names in the layer are
    /// links of one file in the copy, which has no other (see
    /// [`Pass::outside`]).
    pub fn run(&mut self, src: &OwnedFd, dst: &Arc<OwnedFd>, origins: &mut copy::Origins) -> io::Result<bool> {
        self.origins = std::mem::take(origins);
        let r = self.run_here(src, dst);
        *origins = std::mem::take(&mut self.origins);
        r
    }

    fn run_here(&mut self, src: &OwnedFd, dst: &Arc<OwnedFd>) -> io::Result<bool> {
        let touched = self.dir(src, dst)?;
        if !self.verify {
            return Ok(touched);
        }
        for (x, y, name) in std::mem::take(&mut self.to_check) {
            if let Some(what) = copy::compare_subtree(&x, &y)? {
                return Err(at(
                    &name,
                    io::Error::other(format!("its copy differs from it right after copying: {what}")),
                ));
            }
        }
        for m in self.links.values() {
            let d = sys::lstat(m.dir.as_fd(), &m.name)?.ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
            if d.st_nlink != m.names || m.nlink < m.names {
                return Err(at(
                    m.path.as_os_str(),
                    io::Error::other(format!(
                        "its copy differs from it right after copying: the link counts differ ({} in the source, {} \
                         of them in the layer, {} in the copy)",
                        m.nlink, m.names, d.st_nlink
                    )),
                ));
            }
        }
        Ok(touched)
    }

    /// After the pass: the files of the layer hard-linked outside it too,
    /// whose copy has only the links inside (see [`copy::OutsideLink`]).
    pub fn outside(&self) -> Vec<copy::OutsideLink> {
        let mut v: Vec<copy::OutsideLink> = self
            .links
            .values()
            .filter(|m| m.nlink > m.names)
            .map(|m| copy::OutsideLink {
                path: m.path.clone(),
                links: m.nlink,
                inside: m.names,
            })
            .collect();
        v.sort_by(|a, b| a.path.cmp(&b.path));
        v
    }

    /// Brings directory `dst` up to date with `src` (their own attributes
    /// are the caller's). `true`: entries of `dst` were added, removed or
    /// replaced (its times must be set again).
    pub fn dir(&mut self, src: &OwnedFd, dst: &Arc<OwnedFd>) -> io::Result<bool> {
        let a = copy::entries(src)?;
        let b: HashMap<OsString, Stat> = copy::entries(dst)?.into_iter().collect();
        let mut touched = false;
        let names: HashSet<&OsString> = a.iter().map(|(n, _)| n).collect();
        for name in b.keys().filter(|n| !names.contains(n)) {
            sys::remove_tree(dst.as_fd(), name).map_err(|e| at(name, e))?;
            self.changed += 1;
            touched = true;
        }
        for (name, s) in &a {
            self.pace.check()?;
            self.at.push(name);
            let r = self.entry(src, name, s, dst, b.get(name));
            self.at.pop();
            match r {
                Ok(t) => touched |= t,
                // Removed or replaced meanwhile (changes are not paused):
                // the next pass sees to it.
                Err(_) if !self.verify && copy::changed_since_listed(src, name, s)? => {
                    self.changed += 1;
                }
                Err(e) => return Err(at(name, e)),
            }
        }
        Ok(touched)
    }

    /// One entry: `d` is its copy's status, if there is one.
    fn entry(
        &mut self,
        src: &OwnedFd,
        name: &OsStr,
        s: &Stat,
        dst: &Arc<OwnedFd>,
        d: Option<&Stat>,
    ) -> io::Result<bool> {
        let ft = ftype(s);
        let key = (s.st_dev, s.st_ino);
        let mut touched = false;
        // A further name of a hard-linked inode: a link to its first copy.
        if ft != FileType::Directory && s.st_nlink > 1 {
            if let Some(m) = self.links.get_mut(&key) {
                m.names += 1;
                let (ldir, lname) = (m.dir.clone(), m.name.clone());
                if d.map(|d| d.st_ino) != Some(m.ino) {
                    if d.is_some() {
                        sys::remove_tree(dst.as_fd(), name)?;
                    }
                    rfs::linkat(ldir.as_fd(), &lname, dst.as_fd(), name, AtFlags::empty())?;
                    self.changed += 1;
                    touched = true;
                }
                self.note(key, src, dst, name)?;
                return Ok(touched);
            }
        }
        let changed = ctime(s) >= self.since;
        let linked = ft != FileType::Directory && s.st_nlink > 1;
        let stale = match d {
            None => true,
            Some(d) if ftype(d) != ft => true,
            // (A directory moved here keeps its entries' times: only its
            // identity tells that the copy here is of another.)
            Some(d) if ft == FileType::Directory => self.origins.get(&(d.st_dev, d.st_ino)) != Some(&key),
            Some(d) => {
                changed
                    || !same_metadata(s, d)
                    // (A copy linked to names that are not this file's.)
                    || (!linked && d.st_nlink != 1)
                    || (linked && self.claimed.contains(&d.st_ino))
            }
        };
        if stale {
            self.replace(src, name, s, dst, d)?;
            touched = true;
        } else if ft == FileType::Directory {
            let sub_src = sys::open_dir_required(src, name)?;
            let sub_dst = Arc::new(sys::open_dir_required(dst.as_ref(), name)?);
            let inner = self.dir(&sub_src, &sub_dst)?;
            let d = d.expect("not stale: the copy is there");
            if inner || changed || !same_metadata(s, d) {
                set_attrs_exact(src, name, s, dst, name)?;
            }
        }
        if ft != FileType::Directory && s.st_nlink > 1 {
            let st = sys::lstat(dst.as_fd(), name)?.ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
            self.claimed.insert(st.st_ino);
            let first = Met {
                dir: dst.clone(),
                name: name.to_os_string(),
                ino: st.st_ino,
                path: self.at.clone(),
                names: 1,
                nlink: s.st_nlink,
            };
            self.links.insert(key, first);
        }
        self.note(key, src, dst, name)?;
        Ok(touched)
    }

    /// Copies entry `name` again: under a temporary name, then over the
    /// old copy `d` (a directory: removed first).
    fn replace(
        &mut self,
        src: &OwnedFd,
        name: &OsStr,
        s: &Stat,
        dst: &Arc<OwnedFd>,
        d: Option<&Stat>,
    ) -> io::Result<()> {
        let tmp = spare_name(dst)?;
        // (Hard links inside a directory copied anew to inodes met before.)
        let links: Links = self
            .links
            .iter()
            .map(|(k, m)| {
                let l = copy::LinkCopy {
                    dir: m.dir.clone(),
                    name: m.name.clone(),
                    path: m.path.clone(),
                    names: 0,
                    nlink: m.nlink,
                };
                (*k, l)
            })
            .collect();
        let mut walk = copy::Walk {
            pace: self.pace,
            links,
            origins: std::mem::take(&mut self.origins),
            path: self.at.clone(),
        };
        let copied = copy::copy_entry(src, name, s, dst, &tmp, &mut walk);
        self.origins = std::mem::take(&mut walk.origins);
        copied.inspect_err(|_| {
            let _ = sys::remove_tree(dst.as_fd(), &tmp);
        })?;
        // Hard links met below a directory copied anew: further names met
        // later in the pass link to those copies.
        for (k, l) in walk.links {
            match self.links.entry(k) {
                std::collections::hash_map::Entry::Occupied(mut o) => o.get_mut().names += l.names,
                std::collections::hash_map::Entry::Vacant(v) => {
                    if let Some(st) = sys::lstat(l.dir.as_fd(), &l.name)? {
                        self.claimed.insert(st.st_ino);
                        v.insert(Met {
                            dir: l.dir,
                            name: l.name,
                            ino: st.st_ino,
                            path: l.path,
                            names: l.names,
                            nlink: l.nlink,
                        });
                    }
                }
            }
        }
        if d.is_some_and(|d| ftype(d) == FileType::Directory) || (d.is_some() && ftype(s) == FileType::Directory) {
            sys::remove_tree(dst.as_fd(), name)?;
        }
        rfs::renameat(dst.as_fd(), &tmp, dst.as_fd(), name)?;
        self.changed += 1;
        if ftype(s) == FileType::Directory && !self.want.is_empty() {
            // The copies of the inodes below, for the view.
            let sub_src = sys::open_dir_required(src, name)?;
            let sub_dst = Arc::new(sys::open_dir_required(dst.as_ref(), name)?);
            self.note_tree(&sub_src, &sub_dst)?;
        }
        if self.verify {
            let d = sys::lstat(dst.as_fd(), name)?.ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
            // (Link counts: once the pass has met every name, in `run`.)
            if ftype(s) == FileType::Directory {
                // (What is below it, once the pass is over.)
                let sub_src = sys::open_dir_required(src, name)?;
                let sub_dst = sys::open_dir_required(dst.as_ref(), name)?;
                let shown = std::fs::read_link(sys::proc::fd_path(&sub_src))
                    .map(|p| p.into_os_string())
                    .unwrap_or(name.to_os_string());
                self.to_check.push((sub_src, sub_dst, shown));
            }
            if let Some(what) = copy::same_entry(src, name, s, dst, name, &d, false)? {
                return Err(io::Error::other(format!(
                    "its copy differs from it right after copying: {what}"
                )));
            }
        }
        Ok(())
    }

    /// [`Pass::note`] of everything below directory `src`, just copied
    /// whole to `dst`.
    fn note_tree(&mut self, src: &OwnedFd, dst: &Arc<OwnedFd>) -> io::Result<()> {
        for (name, s) in copy::entries(src)? {
            self.note((s.st_dev, s.st_ino), src, dst, &name)?;
            if ftype(&s) == FileType::Directory {
                let sub_src = sys::open_dir_required(src, &name)?;
                let sub_dst = Arc::new(sys::open_dir_required(dst.as_ref(), &name)?);
                self.note_tree(&sub_src, &sub_dst)?;
            }
        }
        Ok(())
    }

    fn note(&mut self, key: (u64, u64), src: &OwnedFd, dst: &Arc<OwnedFd>, name: &OsStr) -> io::Result<()> {
        if self.want.contains(&key) && sys::lstat(dst.as_fd(), name)?.is_some() {
            self.found
                .insert(key, (dst.clone(), name.to_os_string(), born(src, name)?));
        }
        Ok(())
    }
}

/// Whether a copy's metadata are still its source's (for an entry not
/// changed since the last pass, a cheap check of what the copy kept).
fn same_metadata(s: &Stat, d: &Stat) -> bool {
    s.st_mode == d.st_mode
        && s.st_uid == d.st_uid
        && s.st_gid == d.st_gid
        && s.st_rdev == d.st_rdev
        && (ftype(s) == FileType::Directory || s.st_size == d.st_size)
        && (s.st_mtime, s.st_mtime_nsec) == (d.st_mtime, d.st_mtime_nsec)
}

/// Sets the owner, mode, times and exactly the xattrs of `name` in `src`
/// on its copy in `dst` (xattrs the source no longer has are removed).
pub fn set_attrs_exact(src: &OwnedFd, name: &OsStr, s: &Stat, dst: &OwnedFd, dname: &OsStr) -> io::Result<()> {
    let want = copy::xattrs(src, name)?;
    let path = copy::proc_entry(dst, dname);
    for (x, _) in copy::xattrs(dst, dname)? {
        if !want.iter().any(|(w, _)| *w == x) {
            rfs::lremovexattr(&path, &x)?;
        }
    }
    copy::finish(dst, dname, s, &want)
}

/// A name in `dst` for a copy about to replace an entry: free there (the
/// entry's own name may be as long as a name can be: not derived from it).
fn spare_name(dst: &OwnedFd) -> io::Result<OsString> {
    for n in 0u32.. {
        let t = OsString::from(format!("{}resync.{n}", sys::TEMP_PREFIX));
        if sys::lstat(dst, &t)?.is_none() {
            return Ok(t);
        }
    }
    unreachable!("some name is free")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::MetadataExt;
    use std::path::{Path, PathBuf};

    fn open(p: &Path) -> OwnedFd {
        use rustix::fs::{Mode, OFlags};
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        rfs::openat(rfs::CWD, p, flags, Mode::empty()).unwrap()
    }

    /// A source tree `fill` makes, and its copy (with the source of each
    /// directory of the copy, kept up to date by [`sync`]).
    struct Copied {
        t: tempfile::TempDir,
        src: PathBuf,
        dst: PathBuf,
        origins: std::cell::RefCell<copy::Origins>,
    }

    fn copied(fill: impl FnOnce(&Path)) -> Copied {
        let t = tempfile::tempdir().unwrap();
        let (src, dst) = (t.path().join("src"), t.path().join("dst"));
        fs::create_dir(&src).unwrap();
        fill(&src);
        fs::create_dir(&dst).unwrap();
        let origins = copy::copy_tree(&open(&src), &Arc::new(open(&dst)), &Pace::default()).unwrap();
        Copied {
            t,
            src,
            dst,
            origins: origins.into(),
        }
    }

    impl Copied {
        /// A pass (`want`: the source inodes whose copies to find).
        fn pass<'a>(
            &self,
            since: (i64, i64),
            verify: bool,
            want: &'a HashSet<(u64, u64)>,
            pace: &'a Pace,
        ) -> io::Result<Pass<'a>> {
            let mut pass = Pass::new(since, verify, want, pace);
            pass.run(
                &open(&self.src),
                &Arc::new(open(&self.dst)),
                &mut self.origins.borrow_mut(),
            )?;
            Ok(pass)
        }

        fn sync(&self, since: (i64, i64), verify: bool) -> u64 {
            let pace = Pace::default();
            self.pass(since, verify, &HashSet::new(), &pace).unwrap().changed
        }

        /// A last pass: what it says of links outside the layer.
        fn last_pass(&self, since: (i64, i64)) -> Vec<copy::OutsideLink> {
            let pace = Pace::default();
            self.pass(since, true, &HashSet::new(), &pace).unwrap().outside()
        }

        fn compare_unchanged(&self, since: (i64, i64)) -> Option<String> {
            copy::compare_unchanged(&open(&self.src), &open(&self.dst), since, &self.origins.borrow()).unwrap()
        }

        fn compare(&self) -> Option<String> {
            copy::compare(&open(&self.src), &open(&self.dst)).unwrap()
        }
    }

    #[test]
    fn a_pass_copies_what_changed_removes_what_went_and_keeps_hard_links_apart() {
        let c = copied(|src| {
            fs::create_dir_all(src.join("d/e")).unwrap();
            fs::write(src.join("d/e/f"), "deep").unwrap();
            fs::write(src.join("a"), "a").unwrap();
            fs::hard_link(src.join("a"), src.join("d/a-link")).unwrap();
            fs::write(src.join("gone"), "x").unwrap();
        });
        let (src, dst) = (&c.src, &c.dst);
        // Nothing changed since: a pass copies nothing.
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(c.sync(stamp().since(), true), 0);
        let since = stamp().since();
        // Changes: a file rewritten (through its hard link), a file
        // removed, a file replaced by a directory, a new file deep down.
        fs::write(src.join("d/a-link"), "A!").unwrap();
        fs::remove_file(src.join("gone")).unwrap();
        fs::create_dir(src.join("gone")).unwrap();
        fs::write(src.join("d/e/new"), "new").unwrap();
        fs::write(src.join("d/e/f"), "DEEP").unwrap();
        assert!(c.sync(since, true) >= 4);
        assert_eq!(c.compare(), None);
        assert_eq!(fs::read(dst.join("a")).unwrap(), b"A!");
        assert_eq!(
            fs::metadata(dst.join("a")).unwrap().ino(),
            fs::metadata(dst.join("d/a-link")).unwrap().ino()
        );
        // A hard link broken in the source is broken in the copy.
        let since = stamp().since();
        fs::remove_file(src.join("d/a-link")).unwrap();
        fs::write(src.join("d/a-link"), "apart").unwrap();
        c.sync(since, true);
        assert_eq!(c.compare(), None);
        assert_eq!(fs::read(dst.join("a")).unwrap(), b"A!");
        assert_eq!(fs::read(dst.join("d/a-link")).unwrap(), b"apart");
    }

    #[test]
    fn a_pass_finds_the_copies_of_inodes_wanted_also_below_a_directory_copied_anew() {
        let c = copied(|src| {
            fs::create_dir_all(src.join("a/b")).unwrap();
            fs::write(src.join("a/b/f"), "f").unwrap();
            fs::write(src.join("g"), "g").unwrap();
        });
        let src = &c.src;
        let since = stamp().since();
        // A directory renamed: its copy is made anew under the new name.
        fs::rename(src.join("a"), src.join("moved")).unwrap();
        let key = |p: &str| {
            let m = fs::symlink_metadata(src.join(p)).unwrap();
            (m.dev(), m.ino())
        };
        let want: HashSet<(u64, u64)> = ["moved", "moved/b", "moved/b/f", "g"].map(key).into();
        let pace = Pace::default();
        let pass = c.pass(since, true, &want, &pace).unwrap();
        let mut got: Vec<String> = pass
            .found
            .values()
            .map(|(_, name, _)| name.to_string_lossy().into_owned())
            .collect();
        got.sort();
        assert_eq!(got, ["b", "f", "g", "moved"]);
        assert_eq!(c.compare(), None);
        // Each is the copy of its source, by content.
        let (dir, name, _) = &pass.found[&key("moved/b/f")];
        assert_eq!(sys::read_file(dir.as_ref(), name, 16).unwrap(), b"f");
    }

    #[test]
    fn a_hard_link_in_a_directory_renamed_before_its_other_name_stays_one() {
        let c = copied(|src| {
            fs::create_dir(src.join("z")).unwrap();
            fs::write(src.join("b"), "x").unwrap();
            fs::hard_link(src.join("b"), src.join("z/p")).unwrap();
        });
        let (src, dst) = (&c.src, &c.dst);
        let since = stamp().since();
        // Renamed: `a` comes before `b`, whose inode did not change.
        fs::rename(src.join("z"), src.join("a")).unwrap();
        c.sync(since, true);
        assert_eq!(c.compare(), None);
        assert_eq!(
            fs::metadata(dst.join("a/p")).unwrap().ino(),
            fs::metadata(dst.join("b")).unwrap().ino()
        );
    }

    #[test]
    fn the_last_pass_counts_the_links_inside_the_layer_and_names_those_outside() {
        let c = copied(|src| {
            fs::create_dir(src.join("d")).unwrap();
            fs::write(src.join("f"), "shared").unwrap();
        });
        let (src, dst) = (&c.src, &c.dst);
        let outside = c.t.path().join("outside");
        fs::hard_link(src.join("f"), &outside).unwrap();
        let since = stamp().since();
        // Changed meanwhile: a second name in the layer, in a new directory.
        fs::create_dir(src.join("e")).unwrap();
        fs::hard_link(src.join("f"), src.join("e/f2")).unwrap();
        let want = HashSet::new();
        let pace = Pace::default();
        let pass = c.pass(since, true, &want, &pace).unwrap();
        let want = copy::OutsideLink {
            path: "e/f2".into(),
            links: 3,
            inside: 2,
        };
        assert_eq!(pass.outside(), [want]);
        assert_eq!(fs::metadata(dst.join("f")).unwrap().nlink(), 2);
        assert_eq!(c.compare(), None);
    }

    #[test]
    fn an_unchanged_entry_whose_copy_differs_is_found_by_the_comparison_of_what_did_not_change() {
        let c = copied(|src| {
            fs::write(src.join("f"), "one").unwrap();
            fs::write(src.join("g"), "two").unwrap();
        });
        let (src, dst) = (&c.src, &c.dst);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let since = stamp().since();
        // A change in the source is left out (a later pass copies it)...
        fs::write(src.join("g"), "TWO").unwrap();
        assert_eq!(c.compare_unchanged(since), None);
        // ...a copy gone bad behind an unchanged source is not (same size
        // and times: only the content tells).
        let m = fs::metadata(dst.join("f")).unwrap();
        fs::write(dst.join("f"), "ONE").unwrap();
        let times = fs::FileTimes::new().set_modified(m.modified().unwrap());
        fs::File::options()
            .write(true)
            .open(dst.join("f"))
            .unwrap()
            .set_times(times)
            .unwrap();
        let d = c.compare_unchanged(since);
        assert_eq!(d.as_deref(), Some("f: the contents differ"));
    }

    /// Sets the modification time of `p` to one fixed moment (files made
    /// alike then differ only in what a pass cannot see without reading).
    fn same_mtime(p: &Path) {
        let when = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_400_000_000);
        let f = fs::File::options().write(true).open(p).unwrap();
        f.set_times(fs::FileTimes::new().set_modified(when)).unwrap();
    }

    fn exchange(a: &Path, b: &Path) {
        rfs::renameat_with(rfs::CWD, a, rfs::CWD, b, rfs::RenameFlags::EXCHANGE).unwrap();
    }

    fn ino(p: &Path) -> u64 {
        fs::symlink_metadata(p).unwrap().ino()
    }

    #[test]
    fn a_directory_exchanged_with_another_is_copied_anew_though_its_entries_did_not_change() {
        let c = copied(|src| {
            for (d, body) in [("a", "xx"), ("c", "yy")] {
                fs::create_dir(src.join(d)).unwrap();
                fs::write(src.join(d).join("f"), body).unwrap();
                same_mtime(&src.join(d).join("f"));
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        let since = stamp().since();
        // Each directory now at the other's name, with its entries, whose
        // status change times stay as they were.
        exchange(&c.src.join("a"), &c.src.join("c"));
        assert_eq!(c.compare_unchanged(since), None);
        c.sync(since, true);
        assert_eq!(c.compare(), None);
        assert_eq!(fs::read(c.dst.join("a/f")).unwrap(), b"yy");
    }

    #[test]
    fn a_directory_renamed_over_an_empty_one_is_not_taken_for_it() {
        let c = copied(|src| {
            fs::create_dir_all(src.join("a/sub")).unwrap();
            fs::write(src.join("a/b"), "b").unwrap();
            fs::create_dir(src.join("c")).unwrap();
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        let since = stamp().since();
        fs::rename(c.src.join("a"), c.src.join("c")).unwrap();
        // (The comparison of what did not change leaves it to the last pass.)
        assert_eq!(c.compare_unchanged(since), None);
        c.sync(since, true);
        assert_eq!(c.compare(), None);
    }

    #[test]
    fn hard_links_in_directories_exchanged_stay_grouped_as_in_the_source() {
        // x: a/f and b/g; y: c/f. Empty, same times: alike but for links.
        let c = copied(|src| {
            for d in ["a", "b", "c"] {
                fs::create_dir(src.join(d)).unwrap();
            }
            for f in ["a/f", "c/f"] {
                fs::write(src.join(f), "").unwrap();
                same_mtime(&src.join(f));
            }
            fs::hard_link(src.join("a/f"), src.join("b/g")).unwrap();
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        let since = stamp().since();
        exchange(&c.src.join("a"), &c.src.join("c"));
        assert_eq!(c.last_pass(since), []);
        assert_eq!(c.compare(), None);
        assert_eq!(ino(&c.dst.join("c/f")), ino(&c.dst.join("b/g")));
        assert_ne!(ino(&c.dst.join("a/f")), ino(&c.dst.join("b/g")));
        assert_eq!(fs::symlink_metadata(c.dst.join("a/f")).unwrap().nlink(), 1);
    }

    #[test]
    fn the_last_pass_groups_names_into_files_as_the_source_does_whatever_the_copy_had() {
        let c = copied(|src| {
            for f in ["a", "b", "p", "q"] {
                fs::write(src.join(f), "same").unwrap();
                same_mtime(&src.join(f));
            }
            fs::remove_file(src.join("q")).unwrap();
            fs::hard_link(src.join("p"), src.join("q")).unwrap();
        });
        // A copy gone wrong behind unchanged sources: two files made one
        // (a, b), one file made two (p, q), times and sizes as they were.
        fs::remove_file(c.dst.join("b")).unwrap();
        fs::hard_link(c.dst.join("a"), c.dst.join("b")).unwrap();
        fs::remove_file(c.dst.join("q")).unwrap();
        fs::write(c.dst.join("q"), "same").unwrap();
        same_mtime(&c.dst.join("q"));
        std::thread::sleep(std::time::Duration::from_millis(50));
        let since = stamp().since();
        // (q, linked in the source, is no link outside the layer.)
        assert_eq!(c.last_pass(since), []);
        assert_eq!(c.compare(), None);
        assert_ne!(ino(&c.dst.join("a")), ino(&c.dst.join("b")));
        assert_eq!(ino(&c.dst.join("p")), ino(&c.dst.join("q")));
    }
}
