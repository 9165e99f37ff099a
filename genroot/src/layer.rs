//! The contents of image layers and container `rw/` directories.
//!
//! A base layer is a small Unix tree; a child layer changes what its parent chain
//! shows (replaces files, adds to directories, deletes with aufs whiteouts, makes
//! directories opaque, puts a file over a directory and a directory over a file).
//! One layer, the showcase, holds every kind of entry a layer can hold.

use std::collections::BTreeSet;

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::clock::{Stamp, DAY};
use super::merged::{join, split, whiteout_of, Merged, Node, OPAQUE, WH_META_PREFIX};
use super::tree::{content_seed, Clock, Content, Kind, Tree};

/// The modification time of the `dev/` directory in the one image that has one
/// (2012-12-21T12:34:56.789Z), distinct from every other time in a root.
pub const DEV_MTIME: (i64, u32) = (1_356_093_296, 789_000_000);
/// The mode of that `dev/` directory.
pub const DEV_MODE: u32 = 0o751;
/// The user xattr on showcase entries (and on some replaced files).
pub const TEST_XATTR: &str = "user.graph2aufs.test";

/// The special things a layer must hold, beyond its ordinary files.
#[derive(Debug, Clone, Default)]
pub(crate) struct Role {
    /// Every kind of entry: devices, fifos, hard links, symlinks of each sort,
    /// setuid/setgid files, unusual modes and owners, xattrs, odd names, big and
    /// sparse files.
    pub showcase: bool,
    /// Every kind of change to the layers below (child layers only).
    pub all_changes: bool,
    pub big_file: bool,
    pub etc_hosts: bool,
    pub etc_resolv: bool,
    pub mtab_symlink: bool,
    /// A `dev/` directory, mode DEV_MODE, mtime DEV_MTIME.
    pub dev_dir: bool,
    /// aufs's branch bookkeeping at the root (`.wh..wh.aufs`, `.wh..wh.plnk/`,
    /// `.wh..wh.orph/`), whiteouts hard-linked to `.wh..wh.aufs` as aufs makes them.
    pub aufs_meta: bool,
}

pub(crate) struct Spec<'a> {
    pub seed: u64,
    /// Unique among layers: part of every new name, so layers never collide.
    pub tag: &'a str,
    /// About how many entries the layer gets; 0 for tiny layers.
    pub entries: usize,
    /// Nothing in the layer is newer than this.
    pub newest: Stamp,
    pub role: Role,
}

/// A base layer (no parent).
pub(crate) fn base(spec: &Spec) -> Tree {
    let empty = Merged::default();
    let mut b = Builder::new(spec, &empty);
    b.meta();
    if spec.entries == 0 && !spec.role.showcase {
        b.tiny_skeleton();
    } else {
        b.skeleton();
    }
    b.roles();
    b.filler();
    b.tree
}

/// A layer on top of `lower`, the merged view of its parent chain.
pub(crate) fn child(spec: &Spec, lower: &Merged) -> Tree {
    let mut b = Builder::new(spec, lower);
    b.meta();
    b.roles();
    b.etc_change();
    b.changes(if spec.role.all_changes {
        0
    } else {
        1 + spec.entries / 10
    });
    b.filler();
    b.finish()
}

/// A started container's `rw/`: aufs bookkeeping, a few changed and new files,
/// whiteouts of image files.
pub(crate) fn container_rw(spec: &Spec, image: &Merged) -> Tree {
    let mut b = Builder::new(spec, image);
    b.tree.dir("", 0o755);
    b.aufs_meta(false);
    let history: String = (0..b.rng.random_range(2..12))
        .map(|_| format!("{}\n", b.command()))
        .collect();
    b.tree.text("root/.bash_history", 0o600, history);
    for _ in 0..b.rng.random_range(1..3) {
        b.change(Change::Replace);
        b.change(Change::Whiteout);
    }
    b.change(Change::Add);
    let log = b.prose(1, 40);
    let name = b.fresh("app");
    // The image, or this layer's changes above, may have put a file over
    // var/log (or var) or deleted it: the log goes where it still can.
    let dir = ["var/log", "tmp"].into_iter().find(|d| b.can_hold(d)).unwrap_or("");
    b.tree.text(&join(dir, &format!("{name}.log")), 0o640, log).owner(0, 4);
    b.finish()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Replace,
    Add,
    Whiteout,
    WhiteoutDir,
    Opaque,
    FileOverDir,
    DirOverFile,
}

const ALL_CHANGES: [Change; 7] = [
    Change::Replace,
    Change::Add,
    Change::Whiteout,
    Change::WhiteoutDir,
    Change::Opaque,
    Change::FileOverDir,
    Change::DirOverFile,
];

struct Builder<'a> {
    spec: &'a Spec<'a>,
    lower: &'a Merged,
    tree: Tree,
    rng: ChaCha8Rng,
    /// Paths of lower entries this layer replaced or deleted.
    touched: BTreeSet<String>,
    counter: usize,
    /// Whiteouts are hard links to `.wh..wh.aufs`.
    wh_base: bool,
}

impl<'a> Builder<'a> {
    fn new(spec: &'a Spec<'a>, lower: &'a Merged) -> Builder<'a> {
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        let clock = Clock::new(rng.random(), spec.newest, 30 * DAY);
        Builder {
            spec,
            lower,
            tree: Tree::new(clock),
            rng,
            touched: BTreeSet::new(),
            counter: 0,
            wh_base: false,
        }
    }

    fn finish(mut self) -> Tree {
        let lower = self.lower;
        self.tree.copy_up_dirs(|p| {
            lower
                .seen(p)
                .filter(|s| s.node == Node::Dir)
                .map(|s| (s.mode, s.uid, s.gid))
        });
        self.tree
    }

    fn fresh(&mut self, stem: &str) -> String {
        self.counter += 1;
        format!("{stem}-{}-{}", self.spec.tag, self.counter)
    }

    fn chance(&mut self, numerator: u32, denominator: u32) -> bool {
        self.rng.random_ratio(numerator, denominator)
    }

    fn pick<'s>(&mut self, items: &[&'s str]) -> &'s str {
        items[self.rng.random_range(0..items.len() as u64) as usize]
    }

    /// The layer root, and aufs's bookkeeping in some layers.
    fn meta(&mut self) {
        self.tree.dir("", 0o755);
        if self.spec.role.aufs_meta || self.chance(1, 4) {
            self.aufs_meta(self.spec.role.all_changes);
        }
    }

    fn aufs_meta(&mut self, leftovers: bool) {
        self.tree.text(".wh..wh.aufs", 0o444, "");
        self.tree.dir(".wh..wh.plnk", 0o700);
        self.tree.dir(".wh..wh.orph", 0o700);
        self.wh_base = true;
        if leftovers {
            // A pseudo-link aufs kept for a hard-linked file, and a temporary name
            // left by an interrupted copy-up: both invisible in a merged view.
            let data = self.prose(2, 6);
            self.tree.text("var/lib/plinked", 0o644, data);
            self.tree.hard_link(".wh..wh.plnk/131074.2847", "var/lib/plinked");
            let tmp = format!("tmp/{WH_META_PREFIX}passwd.1a2b");
            self.tree.text(&tmp, 0o600, "root:x:0:0:root:/root:/bin/bash\n");
        }
    }

    // ---- content helpers ----

    fn prose(&mut self, min_lines: u32, max_lines: u32) -> Vec<u8> {
        let lines = self.rng.random_range(min_lines..=max_lines);
        let mut out = String::new();
        for _ in 0..lines {
            let words = self.rng.random_range(1..12);
            let line: Vec<&str> = (0..words).map(|_| self.pick(WORDS)).collect();
            out.push_str(&line.join(" "));
            out.push('\n');
        }
        out.into_bytes()
    }

    /// Something that looks like an executable.
    fn binary(&mut self, min: usize, max: usize) -> Vec<u8> {
        let mut out = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0".to_vec();
        let len = self.rng.random_range(min..=max);
        let start = out.len();
        out.resize(start + len, 0);
        self.rng.fill_bytes(&mut out[start..]);
        out
    }

    fn command(&mut self) -> String {
        let verb = self.pick(&[
            "apt-get install -y",
            "ls -la",
            "cat",
            "vi",
            "rm -f",
            "make",
            "./configure --prefix=",
        ]);
        let arg = self.pick(WORDS);
        format!("{verb} {arg}")
    }

    /// An ordinary file: mostly small text, sometimes empty, binary or executable.
    fn ordinary_file(&mut self, path: &str) {
        match self.rng.random_range(0..20) {
            0 => {
                self.tree.text(path, 0o644, "");
            }
            1..=3 => {
                let b = self.binary(200, 16 * 1024);
                self.tree.text(path, 0o755, b);
            }
            4 => {
                let p = self.prose(1, 8);
                self.tree.text(path, 0o600, p);
            }
            5 => {
                let p = self.prose(1, 8);
                let (uid, gid) = *self.pick_owner();
                self.tree.text(path, 0o640, p).owner(uid, gid);
            }
            _ => {
                let p = self.prose(1, 60);
                self.tree.text(path, 0o644, p);
            }
        }
    }

    fn pick_owner(&mut self) -> &'static (u32, u32) {
        &OWNERS[self.rng.random_range(0..OWNERS.len() as u64) as usize]
    }

    /// A whiteout named `wh`, made the way the layer's writer made them.
    fn whiteout_entry(&mut self, wh: &str) {
        if self.wh_base {
            self.tree.hard_link(wh, ".wh..wh.aufs");
        } else {
            // Docker's ExportChanges wrote whiteouts with mode 0; others 0644.
            let mode = if self.chance(1, 2) { 0 } else { 0o644 };
            self.tree.text(wh, mode, "");
        }
    }

    // ---- base layers ----

    fn tiny_skeleton(&mut self) {
        let t = &mut self.tree;
        t.text("bin/sh", 0o755, b"\x7fELF tiny shell\n".to_vec());
        t.text("etc/passwd", 0o644, PASSWD);
        t.text("etc/group", 0o644, GROUP);
        t.dir("tmp", 0o1777);
        t.dir("root", 0o700);
    }

    fn skeleton(&mut self) {
        for d in [
            "bin",
            "sbin",
            "etc",
            "lib",
            "usr/bin",
            "usr/sbin",
            "usr/lib",
            "usr/share/doc",
            "var/lib",
            "var/cache",
        ] {
            self.tree.dir(d, 0o755);
        }
        for exe in [
            "bin/sh",
            "bin/bash",
            "bin/ls",
            "bin/cat",
            "sbin/init",
            "usr/bin/env",
            "usr/bin/perl",
        ] {
            let b = self.binary(1024, 24 * 1024);
            self.tree.text(exe, 0o755, b);
        }
        let libc = self.binary(16 * 1024, 48 * 1024);
        self.tree.text("lib/x86_64-linux-gnu/libc-2.15.so", 0o755, libc);
        self.tree.symlink("lib/x86_64-linux-gnu/libc.so.6", "libc-2.15.so");
        self.tree.symlink("lib64", "lib");

        let t = &mut self.tree;
        t.text("etc/passwd", 0o644, PASSWD);
        t.text("etc/group", 0o644, GROUP);
        t.text("etc/shadow", 0o640, "root:*:15800:0:99999:7:::\n").owner(0, 42);
        t.text("etc/fstab", 0o644, "# UNCONFIGURED FSTAB FOR BASE SYSTEM\n");
        t.text("etc/ld.so.conf", 0o644, "include /etc/ld.so.conf.d/*.conf\n");
        t.text("etc/ld.so.conf.d/libc.conf", 0o644, "/usr/local/lib\n");
        t.text(
            "etc/lsb-release",
            0o644,
            "DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=12.04\nDISTRIB_CODENAME=precise\n",
        );
        t.text(
            "etc/apt/sources.list",
            0o644,
            "deb file:/var/cache/local-archive precise main universe\n",
        );
        t.text("etc/init.d/rc", 0o755, "#!/bin/sh\nexec /sbin/init\n");
        let motd = self.prose(2, 6);
        self.tree.text("etc/motd", 0o644, motd);
        let profile = self.prose(3, 20);
        self.tree.text("etc/profile", 0o644, profile);

        let t = &mut self.tree;
        t.dir("tmp", 0o1777);
        t.dir("var/tmp", 0o1777);
        t.dir("root", 0o700);
        t.text("root/.profile", 0o644, "if [ -f ~/.bashrc ]; then . ~/.bashrc; fi\n");
        t.dir("home/user", 0o755).owner(1000, 1000);
        t.text("home/user/.bashrc", 0o644, "export PS1='\\u@\\h:\\w\\$ '\n")
            .owner(1000, 1000);
        t.dir("srv/shared", 0o2755).owner(0, 50);
        t.dir("opt/ro", 0o555);
        t.text("opt/ro/README", 0o444, "read-only directory\n");
        t.dir("var/log", 0o755);
        t.text("var/log/dmesg", 0o640, "").owner(0, 4);
        t.dir("var/mail", 0o2775).owner(0, 8);
        t.dir("mnt", 0o755);
        t.dir("proc", 0o555);
        t.dir("sys", 0o555);
        let status = self.prose(20, 80);
        self.tree.text("var/lib/dpkg/status", 0o644, status);
    }

    // ---- roles ----

    fn roles(&mut self) {
        let role = self.spec.role.clone();
        if role.showcase {
            self.showcase();
        }
        if role.big_file {
            let len = self.rng.random_range(64 * 1024..=2 * 1024 * 1024);
            let seed = content_seed(&mut self.rng);
            let name = self.fresh("blob");
            self.tree.file(
                &format!("usr/share/{name}/data.bin"),
                0o644,
                Content::Random { seed, len },
            );
        }
        if role.etc_hosts && self.replaceable("etc/hosts") {
            self.tree.text(
                "etc/hosts",
                0o644,
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n10.0.0.5\tdb\n",
            );
            self.touched.insert("etc/hosts".into());
        }
        if role.etc_resolv && self.replaceable("etc/resolv.conf") {
            self.tree
                .text("etc/resolv.conf", 0o644, "nameserver 10.0.0.2\nsearch example\n");
            self.touched.insert("etc/resolv.conf".into());
        }
        if role.mtab_symlink && self.replaceable("etc/mtab") {
            self.tree.symlink("etc/mtab", "/proc/mounts");
            self.touched.insert("etc/mtab".into());
        }
        if role.dev_dir && self.lower.get("dev").is_none_or(|n| n == Node::Dir) {
            self.tree
                .dir("dev", DEV_MODE)
                .mtime(Stamp::new(DEV_MTIME.0, DEV_MTIME.1));
            self.tree.add("dev/null", Kind::CharDev(1, 3), 0o666);
            self.tree.symlink("dev/stdin", "/proc/self/fd/0");
            self.tree.dir("dev/net", 0o755);
        }
    }

    /// Whether this layer may put a non-directory at `path`.
    fn replaceable(&self, path: &str) -> bool {
        let (dir, _) = split(path);
        self.lower.get(path) != Some(Node::Dir) && self.free(path) && self.can_hold(dir)
    }

    fn showcase(&mut self) {
        let tag = self.spec.tag.to_string();
        // Devices and fifos, as old Ubuntu kept them for udev.
        let devs = "usr/lib/udev/devices";
        let t = &mut self.tree;
        t.add(&format!("{devs}/null"), Kind::CharDev(1, 3), 0o666);
        t.add(&format!("{devs}/zero"), Kind::CharDev(1, 5), 0o666);
        t.add(&format!("{devs}/console"), Kind::CharDev(5, 1), 0o600);
        t.add(&format!("{devs}/tty"), Kind::CharDev(5, 0), 0o666).owner(0, 5);
        t.add(&format!("{devs}/loop0"), Kind::BlockDev(7, 0), 0o660).owner(0, 6);
        t.add(&format!("{devs}/sda"), Kind::BlockDev(8, 0), 0o660).owner(0, 6);
        t.add(&format!("{devs}/initctl"), Kind::Fifo, 0o600);
        t.add("var/spool/postfix/public/pickup", Kind::Fifo, 0o622)
            .owner(108, 115);

        // setuid and setgid executables.
        for (path, mode, uid, gid) in [
            ("usr/bin/sudo", 0o4755, 0, 0),
            ("usr/bin/passwd", 0o4755, 0, 0),
            ("usr/bin/wall", 0o2755, 0, 5),
            ("usr/bin/crontab", 0o2755, 0, 102),
            ("usr/bin/at", 0o6755, 1, 1),
        ] {
            let b = self.binary(2048, 32 * 1024);
            self.tree.text(path, mode, b).owner(uid, gid);
        }
        let ping = self.binary(2048, 8 * 1024);
        // cap_net_raw+ep, as `setcap` writes it (VFS_CAP_REVISION_2).
        let cap = [1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        self.tree
            .text("usr/bin/ping6", 0o755, ping)
            .xattr("security.capability", cap.to_vec());

        // Directories with unusual modes and owners.
        let t = &mut self.tree;
        t.dir("var/spool/cron/crontabs", 0o1730).owner(0, 102);
        t.text("var/spool/cron/crontabs/user", 0o600, "0 * * * * /usr/bin/env true\n")
            .owner(1000, 102);
        t.dir("srv/www", 0o2770).owner(33, 33);
        t.text("srv/www/index.html", 0o640, "<html>hello</html>\n")
            .owner(33, 33);
        t.dir("var/lib/sealed", 0o700).owner(65534, 65534);
        t.text("var/lib/sealed/key", 0o400, "secret\n").owner(65534, 65534);
        t.dir("opt/frozen", 0o555);
        t.text("opt/frozen/VERSION", 0o444, "1.0\n");
        t.text("var/mail/user", 0o660, "From root\n").owner(1000, 8);
        t.text("var/lib/userns/owned", 0o644, "mapped\n")
            .owner(100_000, 100_000);
        t.text("etc/shadow-", 0o000, "root:*:15800:0:99999:7:::\n");
        t.text("etc/.pwd.lock", 0o600, "");
        t.text("var/log/wtmp", 0o664, "").owner(0, 43);

        // Hard links: three names for one file across two directories, and a pair.
        let vim = self.binary(64 * 1024, 200 * 1024);
        self.tree.text("usr/bin/vim.basic", 0o755, vim);
        self.tree.hard_link("usr/bin/vi", "usr/bin/vim.basic");
        self.tree.hard_link("usr/share/vim/vim73/vi-alias", "usr/bin/vim.basic");
        let perl = self.binary(4096, 16 * 1024);
        self.tree.text("usr/bin/perl5.14.2", 0o755, perl);
        self.tree.hard_link("usr/bin/perl5", "usr/bin/perl5.14.2");

        // Symlinks: relative, absolute, chained, to a directory, dangling, looping,
        // escaping the root.
        let t = &mut self.tree;
        t.symlink("etc/alternatives/editor", "/usr/bin/vim.basic");
        t.symlink("usr/bin/editor", "/etc/alternatives/editor");
        t.symlink("usr/bin/vim", "vim.basic");
        t.symlink("usr/share/vim/vimrc", "../../../etc/vim/vimrc");
        t.text("etc/vim/vimrc", 0o644, "syntax on\n");
        t.symlink("usr/lib/vim-dir", "../share/vim");
        t.symlink("usr/lib/dangling", "../nowhere/missing");
        t.symlink("etc/dangling-absolute", "/nonexistent/target");
        t.symlink("tmp/loop-a", "loop-b");
        t.symlink("tmp/loop-b", "loop-a");
        t.symlink("usr/share/escape", "../../../../../../etc/shadow");

        // Sizes: empty, small, a big file, a sparse file with a hole in the middle.
        let seed = content_seed(&mut self.rng);
        let len = self.rng.random_range(64 * 1024..=2 * 1024 * 1024);
        self.tree
            .file("usr/share/showcase/big.bin", 0o644, Content::Random { seed, len });
        let seed = content_seed(&mut self.rng);
        let sparse = Content::Sparse {
            seed,
            head: 4096,
            hole: 1024 * 1024,
            tail: 4096,
        };
        self.tree.file("var/lib/showcase/sparse.img", 0o600, sparse);
        self.tree.text("usr/share/showcase/empty", 0o644, "");
        self.tree.text("usr/share/showcase/one-byte", 0o644, "x");

        // Extended attributes on a file and on a directory.
        self.tree
            .text("etc/showcase.conf", 0o644, "key = value\n")
            .xattr(TEST_XATTR, format!("layer {tag}"))
            .xattr("user.mime_type", "text/plain");
        self.tree
            .dir("usr/share/showcase/tagged", 0o755)
            .xattr(TEST_XATTR, "directory")
            .xattr("user.graph2aufs.binary", vec![0u8, 1, 2, 0xff, b'\n']);

        // Odd names.
        let odd = "usr/share/doc/odd names";
        let long = format!("long-{}", "abcdefghij".repeat(21));
        for name in [
            "file with spaces.txt",
            "ünïcödé ファイル.txt",
            "back\\slash%41percent.txt",
            "-dash-first",
            ".hidden",
            ".wh",
            "tab\there",
            "colon:and*star?",
            long.as_str(),
        ] {
            let p = self.prose(0, 2);
            self.tree.text(&format!("{odd}/{name}"), 0o644, p);
        }
        self.tree
            .text(&format!("{odd}/dir with spaces/inner file"), 0o644, "inner\n");
    }

    // ---- child layers ----

    /// Every layer touches `etc/`: a new configuration file, sometimes a replaced one.
    fn etc_change(&mut self) {
        if !self.can_hold("etc") {
            return;
        }
        let name = self.fresh("conf");
        let conf = self.prose(1, 10);
        self.tree.text(&format!("etc/{name}.conf"), 0o644, conf);
        if self.chance(1, 3) && self.lower.get("etc/passwd") == Some(Node::File) && self.free("etc/passwd") {
            let user = self.fresh("user");
            self.tree.text(
                "etc/passwd",
                0o644,
                format!("{PASSWD}{user}:x:1001:1001::/home/{user}:/bin/sh\n"),
            );
            self.touched.insert("etc/passwd".into());
        }
    }

    fn changes(&mut self, random: usize) {
        if self.spec.role.all_changes {
            for c in ALL_CHANGES {
                self.change(c);
            }
        }
        for _ in 0..random {
            let c = match self.rng.random_range(0..100) {
                0..30 => Change::Replace,
                30..55 => Change::Add,
                55..80 => Change::Whiteout,
                80..85 => Change::WhiteoutDir,
                85..90 => Change::Opaque,
                90..95 => Change::FileOverDir,
                _ => Change::DirOverFile,
            };
            self.change(c);
        }
    }

    /// Applies one change to something of the lower layers; false if nothing fits.
    fn change(&mut self, change: Change) -> bool {
        let roll = self.rng.next_u64();
        let node = match change {
            Change::Replace | Change::DirOverFile => Node::File,
            Change::Whiteout if self.chance(1, 4) => Node::Other,
            Change::Whiteout => Node::File,
            Change::Add | Change::WhiteoutDir | Change::Opaque | Change::FileOverDir => Node::Dir,
        };
        // Kernel filesystems are mounted over these in a container: changes
        // there would only ever be hidden.
        let special = |p: &str| ["dev", "proc", "sys"].contains(&p.split('/').next().unwrap_or(p));
        let target = self.lower.pick(roll, node, |p| {
            !special(p)
                && match change {
                    Change::Add => self.can_hold(p) && !self.touched.contains(p),
                    // Top-level entries stay: an image without a /etc or /tmp directory
                    // would only be noise.
                    Change::Replace => self.free(p) && self.can_hold(split(p).0),
                    _ => p.contains('/') && self.free(p) && self.can_hold(split(p).0),
                }
        });
        let Some(target) = target else { return false };
        match change {
            Change::Replace => {
                let (mode, body) = (*self.pick_mode(), self.prose(1, 30));
                let e = self.tree.text(&target, mode, body);
                if self.rng.random_ratio(1, 4) {
                    e.xattr(TEST_XATTR, "replaced");
                }
            }
            Change::Add => {
                let name = self.fresh("added");
                self.ordinary_file(&join(&target, &name));
                return true;
            }
            Change::Whiteout | Change::WhiteoutDir => self.whiteout_entry(&whiteout_of(&target)),
            Change::Opaque => {
                self.tree.dir(&target, 0o755);
                self.whiteout_entry(&join(&target, OPAQUE));
                let name = self.fresh("after-opaque");
                self.ordinary_file(&join(&target, &name));
            }
            Change::FileOverDir => {
                let body = self.prose(1, 5);
                self.tree.text(&target, 0o644, body);
            }
            Change::DirOverFile => {
                self.tree.dir(&target, 0o755);
                let name = self.fresh("inside");
                self.ordinary_file(&join(&target, &name));
            }
        }
        self.touched.insert(target);
        true
    }

    fn pick_mode(&mut self) -> &'static u32 {
        &[0o644, 0o644, 0o755, 0o600, 0o664][self.rng.random_range(0..5u64) as usize]
    }

    /// Whether a lower entry at `path` is still untouched by this layer.
    fn free(&self, path: &str) -> bool {
        !self.tree.touches(path) && !ancestors_and_self(path).any(|a| self.touched.contains(a))
    }

    /// Whether this layer can put new entries in directory `dir`: it and its
    /// ancestors are directories (or absent) in the merged result so far.
    fn can_hold(&self, dir: &str) -> bool {
        if dir.is_empty() {
            return true;
        }
        ancestors_and_self(dir).all(|a| {
            let here = self.tree.get(a);
            let lower_ok = self.lower.get(a).is_none_or(|n| n == Node::Dir) || here.is_some_and(|e| e.is_dir());
            let here_ok = here.is_none_or(|e| e.is_dir());
            let deleted = self.tree.contains(&whiteout_of(a)) || (self.touched.contains(a) && here.is_none());
            lower_ok && here_ok && !deleted
        })
    }

    // ---- filler ----

    /// Ordinary packages until the layer has about `spec.entries` entries; tiny
    /// layers get one more file.
    fn filler(&mut self) {
        if self.spec.entries == 0 {
            // One more file, in a directory the layer has anyway: directories
            // are what makes a root of 10,000 tiny layers slow to write.
            let dir = if self.can_hold("etc") { "etc" } else { "" };
            let name = self.fresh("tiny");
            self.ordinary_file(&join(dir, &name));
            return;
        }
        let target = self.spec.entries.max(self.tree.entries().len() + 2);
        while self.tree.entries().len() < target {
            self.package();
        }
    }

    fn package(&mut self) {
        let parents = ["usr/share/doc", "usr/lib", "opt", "usr/share", "var/lib"];
        let first = self.rng.random_range(0..parents.len() as u64) as usize;
        let parent = match parents[first..]
            .iter()
            .chain(&parents[..first])
            .find(|p| self.can_hold(p))
        {
            Some(p) => p.to_string(),
            None => self.fresh("pkgroot"),
        };
        let name = self.fresh("pkg");
        let dir = format!("{parent}/{name}");
        self.tree.dir(&dir, 0o755);
        let files = self.rng.random_range(1..10);
        for i in 0..files {
            let sub = if i > 2 && self.chance(1, 3) {
                format!("{dir}/sub{}", i / 3)
            } else {
                dir.clone()
            };
            let f = format!("{sub}/{}", self.pick(WORDS));
            if self.tree.contains(&f) {
                continue;
            }
            self.ordinary_file(&f);
            if self.chance(1, 12) {
                let link = format!("{f}.link");
                self.tree.hard_link(&link, &f);
            }
        }
        let (link, target) = match self.rng.random_range(0..6) {
            0 => ("latest", ".".to_string()),
            1 => ("etc-config", format!("/etc/{name}.conf")),
            2 => ("gone", "removed-long-ago".to_string()),
            _ => return,
        };
        self.tree.symlink(&format!("{dir}/{link}"), &target);
    }
}

/// "a", "a/b", "a/b/c" for "a/b/c".
fn ancestors_and_self(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/')
        .map(move |(i, _)| &path[..i])
        .chain(std::iter::once(path))
}

const OWNERS: [(u32, u32); 6] = [(0, 0), (0, 4), (1000, 1000), (33, 33), (65534, 65534), (102, 105)];

const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
daemon:x:1:1:daemon:/usr/sbin:/bin/sh\n\
www-data:x:33:33:www-data:/var/www:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n\
user:x:1000:1000:user:/home/user:/bin/bash\n";

const GROUP: &str = "root:x:0:\ndaemon:x:1:\nadm:x:4:\ntty:x:5:\ndisk:x:6:\nmail:x:8:\n\
www-data:x:33:\nshadow:x:42:\nutmp:x:43:\nstaff:x:50:\ncrontab:x:102:\nnogroup:x:65534:\nuser:x:1000:\n";

const WORDS: &[&str] = &[
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
    "README",
    "COPYING",
    "changelog",
    "config",
    "index",
    "main",
    "util",
    "server",
    "client",
    "cache",
    "data",
    "module",
    "plugin",
    "locale",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestors_and_self_lists_prefixes() {
        assert_eq!(ancestors_and_self("a/b/c").collect::<Vec<_>>(), ["a", "a/b", "a/b/c"]);
        assert_eq!(ancestors_and_self("a").collect::<Vec<_>>(), ["a"]);
    }
}
