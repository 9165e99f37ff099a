//! A container's init layer (docs/FORMATS.md 4.3): what
//! Docker's `setupInitLayer` leaves in `diff/<cid>-init` when it runs
//! through the aufs union of the new, empty layer over the image. Every
//! non-directory on each of its eleven paths is unlinked (a whiteout), then
//! each path is made again: so its files and `etc/mtab` are always fresh,
//! real image directories on the way are copied up, and a directory made
//! where the image had a non-directory is opaque. The image is looked at
//! once ([`ImageAt`]); the layer is a pure function of that
//! ([`InitLayer::of_image`]), so `migrate`, both views and `rollback` agree.

use crate::sys;
use crate::union::{Entry, Leaf, UnionDir, Virtual, OPAQUE};
use rustix::fs::{self as rfs, Mode, OFlags, Timespec};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitKind {
    Dir,
    File,
    Symlink(Vec<u8>),
}

/// One entry of an init layer, with every attribute it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitEntry {
    /// Components below the layer's root.
    pub path: Vec<OsString>,
    pub kind: InitKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: Timespec,
    pub mtime: Timespec,
}

impl InitEntry {
    pub fn file_type(&self) -> rustix::fs::FileType {
        match self.kind {
            InitKind::Dir => rustix::fs::FileType::Directory,
            InitKind::File => rustix::fs::FileType::RegularFile,
            InitKind::Symlink(_) => rustix::fs::FileType::Symlink,
        }
    }
}

/// The entries of an init layer, parents before children, and the times of
/// its root directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitLayer {
    pub entries: Vec<InitEntry>,
    pub time: Timespec,
}

/// What Docker's setupInitLayer makes (v1.8.1 `daemon/daemon_unix.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Make {
    Dir,
    File,
    Symlink(&'static str),
}

/// Its eleven paths. (Docker iterates a Go map, in no fixed order; the
/// result does not depend on it.)
const SETUP: &[(&str, Make)] = &[
    ("dev/pts", Make::Dir),
    ("dev/shm", Make::Dir),
    ("proc", Make::Dir),
    ("sys", Make::Dir),
    (".dockerinit", Make::File),
    (".dockerenv", Make::File),
    ("etc/resolv.conf", Make::File),
    ("etc/hosts", Make::File),
    ("etc/hostname", Make::File),
    ("dev/console", Make::File),
    ("etc/mtab", Make::Symlink("/proc/mounts")),
];

/// Mode of the opaque marker aufs writes (its whiteouts are `S_IRUGO`).
const OPAQUE_MODE: u32 = 0o444;

/// What an image's merged tree has at one path, taken literally (a symlink
/// on the way is not followed: setupInitLayer unlinks it first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InImage {
    /// A real directory, with the attributes aufs copies up.
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
        atime: Timespec,
        mtime: Timespec,
    },
    /// A file, device, fifo, socket or symlink (to anything).
    Other,
    Absent,
}

/// What the image has at every path setupInitLayer looks at: each of the
/// eleven paths and each of their parents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageAt(BTreeMap<&'static str, InImage>);

impl ImageAt {
    /// Looks at the merged tree of `root` (the image's layers).
    pub fn look<V: Virtual + Clone>(root: &UnionDir<V>) -> io::Result<ImageAt> {
        let mut at = BTreeMap::new();
        for (path, _) in SETUP {
            let mut dir = Some(root.clone());
            for (comp, end) in path.split('/').zip(prefix_ends(path)) {
                let here = &path[..end];
                let seen = match dir.take() {
                    None => InImage::Absent,
                    Some(d) => match d.lookup(OsStr::new(comp))? {
                        None => InImage::Absent,
                        Some(Entry::Leaf(_)) => InImage::Other,
                        Some(Entry::Dir(sub, leaf)) => {
                            dir = Some(sub);
                            match leaf {
                                Leaf::Real { stat, .. } => InImage::Dir {
                                    mode: stat.st_mode & 0o7777,
                                    uid: stat.st_uid,
                                    gid: stat.st_gid,
                                    atime: sys::atime(&stat),
                                    mtime: sys::mtime(&stat),
                                },
                                // (An image's layers are all on the disk.)
                                Leaf::Init { .. } => InImage::Other,
                            }
                        }
                    },
                };
                at.insert(here, seen);
            }
        }
        Ok(ImageAt(at))
    }

    /// Builds one by hand: `(path, what)`; paths not named are absent.
    pub fn of(entries: impl IntoIterator<Item = (&'static str, InImage)>) -> ImageAt {
        ImageAt(entries.into_iter().collect())
    }

    fn at(&self, path: &str) -> &InImage {
        self.0.get(path).unwrap_or(&InImage::Absent)
    }
}

impl InitLayer {
    /// Computes the init layer of a container whose image's layers are
    /// `image_chain` (layer roots, the image first), created at `time`.
    pub fn compute(image_chain: &[Arc<crate::dirref::DirRef>], time: Timespec) -> io::Result<InitLayer> {
        Ok(InitLayer::of_image(
            &ImageAt::look(&UnionDir::<InitLayer>::of_layers(image_chain))?,
            time,
        ))
    }

    /// What setupInitLayer leaves over an image that has `image` at its
    /// paths. Created entries are root's, mode 0755 (files too: Docker
    /// creates them so), with the time `time`; copied-up directories keep
    /// the image's mode, owner and times.
    pub fn of_image(image: &ImageAt, time: Timespec) -> InitLayer {
        let mut entries: Vec<InitEntry> = Vec::new();
        let mut add = |e: InitEntry| {
            if !entries.iter().any(|x| x.path == e.path) {
                entries.push(e);
            }
        };
        for (path, make) in SETUP {
            // A real directory stays as the image has it, even where a file
            // was to be (its unlink fails; stat finds it).
            if matches!(image.at(path), InImage::Dir { .. }) {
                continue;
            }
            let comps: Vec<&str> = path.split('/').collect();
            for (i, end) in prefix_ends(path).enumerate() {
                let here: Vec<OsString> = comps[..=i].iter().map(OsString::from).collect();
                let seen = image.at(&path[..end]);
                let kind = match (i + 1 == comps.len(), make) {
                    (false, _) | (true, Make::Dir) => InitKind::Dir,
                    (true, Make::File) => InitKind::File,
                    (true, Make::Symlink(t)) => InitKind::Symlink(t.as_bytes().to_vec()),
                };
                match seen {
                    InImage::Dir {
                        mode,
                        uid,
                        gid,
                        atime,
                        mtime,
                    } => add(InitEntry {
                        path: here,
                        kind: InitKind::Dir,
                        mode: *mode,
                        uid: *uid,
                        gid: *gid,
                        atime: *atime,
                        mtime: *mtime,
                    }),
                    // Unlinked (a whiteout), then made again: a file or
                    // symlink replaces the whiteout; a directory made over
                    // it is opaque.
                    InImage::Other => {
                        let dir = kind == InitKind::Dir;
                        add(created(here.clone(), kind, time));
                        if dir {
                            let mut marker = here;
                            marker.push(OsString::from(OPAQUE));
                            add(InitEntry {
                                mode: OPAQUE_MODE,
                                ..created(marker, InitKind::File, time)
                            });
                        }
                    }
                    InImage::Absent => add(created(here, kind, time)),
                }
            }
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        InitLayer { entries, time }
    }

    /// The entry at `path`, if the layer has one.
    pub fn find(&self, path: &[OsString]) -> Option<usize> {
        self.entries.iter().position(|e| e.path == path)
    }

    /// The entries directly below the directory `dir` (empty for the root).
    pub fn children<'a>(&'a self, dir: &'a [OsString]) -> impl Iterator<Item = usize> + 'a {
        self.entries
            .iter()
            .enumerate()
            .filter(move |(_, e)| e.path.len() == dir.len() + 1 && e.path.starts_with(dir))
            .map(|(i, _)| i)
    }

    /// Writes the layer into the empty directory `dir`, with every mode,
    /// owner and time, then gives `dir` itself mode 0755 and the layer time.
    pub fn materialize(&self, dir: impl AsFd) -> io::Result<()> {
        let dir = dir.as_fd();
        for e in &self.entries {
            let rel = join(&e.path);
            match &e.kind {
                InitKind::Dir => rfs::mkdirat(dir, &rel, Mode::from_raw_mode(e.mode))?,
                InitKind::File => {
                    let fd = rfs::openat(
                        dir,
                        &rel,
                        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::from_raw_mode(e.mode),
                    )?;
                    drop(fd);
                }
                InitKind::Symlink(t) => rfs::symlinkat(std::ffi::OsStr::from_bytes(t), dir, &rel)?,
            }
            sys::chown(dir, &rel, e.uid, e.gid)?;
            if !matches!(e.kind, InitKind::Symlink(_)) {
                rfs::chmodat(dir, &rel, Mode::from_raw_mode(e.mode), rfs::AtFlags::empty())?;
            }
        }
        // Times last, children before parents, as creating children changes
        // their parents' mtimes.
        for e in self.entries.iter().rev() {
            sys::set_times(dir, join(&e.path), e.atime, e.mtime)?;
        }
        rfs::chmodat(dir, ".", Mode::from_raw_mode(0o755), rfs::AtFlags::empty())?;
        sys::chown(dir, ".", 0, 0)?;
        sys::set_times(dir, ".", self.time, self.time)?;
        Ok(())
    }
}

/// Where each component of `path` ends: `etc/hosts` gives 3, 9.
fn prefix_ends(path: &str) -> impl Iterator<Item = usize> + '_ {
    path.match_indices('/')
        .map(|(i, _)| i)
        .chain(std::iter::once(path.len()))
}

fn join(path: &[OsString]) -> OsString {
    let mut out = OsString::new();
    for (i, c) in path.iter().enumerate() {
        if i > 0 {
            out.push("/");
        }
        out.push(c);
    }
    out
}

fn created(path: Vec<OsString>, kind: InitKind, time: Timespec) -> InitEntry {
    let mode = match kind {
        InitKind::Symlink(_) => 0o777,
        _ => 0o755,
    };
    InitEntry {
        path,
        kind,
        mode,
        uid: 0,
        gid: 0,
        atime: time,
        mtime: time,
    }
}

/// An init layer not yet on the disk takes part in merged views as a
/// branch held in memory.
impl Virtual for InitLayer {
    fn find(&self, path: &[OsString]) -> Option<usize> {
        InitLayer::find(self, path)
    }

    fn file_type(&self, index: usize) -> rustix::fs::FileType {
        self.entries[index].file_type()
    }

    fn list(&self, dir: &[OsString]) -> Vec<(OsString, rustix::fs::FileType)> {
        self.children(dir)
            .map(|i| {
                let e = &self.entries[i];
                (e.path.last().cloned().unwrap_or_default(), e.file_type())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timespec = Timespec {
        tv_sec: 1_400_000_000,
        tv_nsec: 5,
    };
    const IMAGE_T: Timespec = Timespec {
        tv_sec: 1_300_000_000,
        tv_nsec: 7,
    };

    fn dir(mode: u32, uid: u32) -> InImage {
        InImage::Dir {
            mode,
            uid,
            gid: uid + 1,
            atime: IMAGE_T,
            mtime: IMAGE_T,
        }
    }

    /// The layer as `path -> (kind, mode, uid, mtime is the container's)`.
    fn shape(image: &ImageAt) -> BTreeMap<String, (char, u32, u32, bool)> {
        let layer = InitLayer::of_image(image, T);
        layer
            .entries
            .iter()
            .map(|e| {
                let kind = match e.kind {
                    InitKind::Dir => 'd',
                    InitKind::File => 'f',
                    InitKind::Symlink(ref t) => {
                        assert_eq!(t, b"/proc/mounts");
                        'l'
                    }
                };
                let path = e.path.iter().map(|c| c.to_str().unwrap()).collect::<Vec<_>>().join("/");
                (path, (kind, e.mode, e.uid, e.mtime == T))
            })
            .collect()
    }

    fn fresh_all() -> BTreeMap<String, (char, u32, u32, bool)> {
        [
            (".dockerenv", 'f'),
            (".dockerinit", 'f'),
            ("dev", 'd'),
            ("dev/console", 'f'),
            ("dev/pts", 'd'),
            ("dev/shm", 'd'),
            ("etc", 'd'),
            ("etc/hostname", 'f'),
            ("etc/hosts", 'f'),
            ("etc/mtab", 'l'),
            ("etc/resolv.conf", 'f'),
            ("proc", 'd'),
            ("sys", 'd'),
        ]
        .into_iter()
        .map(|(p, k)| (p.to_string(), (k, if k == 'l' { 0o777 } else { 0o755 }, 0, true)))
        .collect()
    }

    #[test]
    fn an_empty_image_gets_every_entry_made_fresh() {
        assert_eq!(shape(&ImageAt::default()), fresh_all());
    }

    #[test]
    fn a_non_directory_where_a_directory_goes_becomes_an_opaque_directory() {
        for path in ["etc", "dev", "proc", "dev/shm"] {
            let mut image = vec![(path, InImage::Other)];
            if path == "dev/shm" {
                image.push(("dev", dir(0o751, 3)));
            }
            let mut want = fresh_all();
            want.insert(format!("{path}/{OPAQUE}"), ('f', 0o444, 0, true));
            if path == "dev/shm" {
                want.insert("dev".into(), ('d', 0o751, 3, false));
            }
            assert_eq!(
                shape(&ImageAt::of(image)),
                want,
                "the image's {path} is not a directory"
            );
        }
    }

    #[test]
    fn image_files_on_the_paths_are_replaced_and_real_directories_kept_or_copied_up() {
        let image = ImageAt::of([
            ("etc", dir(0o750, 7)),
            ("etc/hosts", InImage::Other),
            ("etc/mtab", InImage::Other),
            ("etc/hostname", dir(0o700, 0)),
            ("dev", dir(0o751, 3)),
            ("dev/console", InImage::Other),
            ("dev/pts", dir(0o755, 0)),
            ("proc", dir(0o555, 0)),
            (".dockerinit", InImage::Other),
        ]);
        let mut want = fresh_all();
        for kept in ["etc/hostname", "dev/pts", "proc"] {
            want.remove(kept);
        }
        want.insert("etc".into(), ('d', 0o750, 7, false));
        want.insert("dev".into(), ('d', 0o751, 3, false));
        assert_eq!(shape(&image), want);
        let layer = InitLayer::of_image(&image, T);
        let etc = &layer.entries[layer.find(&[OsString::from("etc")]).unwrap()];
        assert_eq!((etc.gid, etc.atime), (8, IMAGE_T), "copied up with its group and atime");
    }

    #[test]
    fn an_image_that_is_all_directories_gets_only_its_parents_copied_up_for_the_files() {
        let image = ImageAt::of(
            [
                "dev",
                "dev/pts",
                "dev/shm",
                "dev/console",
                "proc",
                "sys",
                "etc",
                "etc/hosts",
                "etc/hostname",
            ]
            .map(|p| (p, dir(0o755, 0)))
            .into_iter()
            .chain([(".dockerenv", dir(0o755, 0))]),
        );
        let got: Vec<String> = shape(&image).into_keys().collect();
        assert_eq!(got, [".dockerinit", "etc", "etc/mtab", "etc/resolv.conf"]);
    }
}
