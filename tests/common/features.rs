//! What a test needs of the file system it writes on, probed there first: a
//! test that lacks a feature says which (a loud skip, a failure under CI)
//! instead of failing somewhere inside with a message about something else.
//!
//! The scratch space of the tests is `$TMPDIR` (or a [`PrivateDir`], a
//! tmpfs). Every test passes on ext4, and on tmpfs from Linux 6.6 on (user
//! xattrs), with any mount options (see [`PlainMount`]).
//!
//! [`PrivateDir`]: super::PrivateDir
//! [`PlainMount`]: super::PlainMount

use std::fs;
use std::path::Path;

use super::gate::skip_unless;

/// Something a file system may lack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsFeature {
    /// `user.*` extended attributes (tmpfs before Linux 6.6 has none).
    UserXattrs,
    /// `trusted.*` extended attributes (root only).
    TrustedXattrs,
    /// POSIX ACLs (`system.posix_acl_access`; tmpfs needs CONFIG_TMPFS_POSIX_ACL,
    /// ext4 the `acl` option, its default).
    PosixAcls,
}

impl FsFeature {
    fn name(self) -> &'static str {
        match self {
            FsFeature::UserXattrs => "user.* xattrs",
            FsFeature::TrustedXattrs => "trusted.* xattrs",
            FsFeature::PosixAcls => "POSIX ACLs",
        }
    }

    /// Why the file system at `dir` lacks it, if it does.
    fn missing_at(self, dir: &Path) -> Option<String> {
        let probe = tempfile::Builder::new()
            .prefix(".g2a-probe.")
            .tempdir_in(dir)
            .map_err(|e| format!("cannot create a probe in {}: {e}", dir.display()));
        let probe = match probe {
            Ok(p) => p,
            Err(e) => return Some(e),
        };
        let file = probe.path().join("f");
        if let Err(e) = fs::write(&file, b"") {
            return Some(format!("cannot write {}: {e}", file.display()));
        }
        let why = |what: &str, e: &dyn std::fmt::Display| Some(format!("{what} on {}: {e}", dir.display()));
        match self {
            FsFeature::UserXattrs => xattr::set(&file, "user.g2a-probe", b"1")
                .err()
                .and_then(|e| why("setxattr user.*", &e)),
            FsFeature::TrustedXattrs => xattr::set(&file, "trusted.g2a-probe", b"1")
                .err()
                .and_then(|e| why("setxattr trusted.*", &e)),
            FsFeature::PosixAcls => xattr::set(&file, "system.posix_acl_access", &access_acl())
                .err()
                .and_then(|e| why("setfacl", &e)),
        }
    }
}

/// `u::rw-,u:1000:r--,g::r--,m::r--,o::r--` as the kernel takes it
/// (`struct posix_acl_xattr_header` and entries, little-endian).
fn access_acl() -> Vec<u8> {
    const UNDEFINED: u32 = u32::MAX;
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (0x01u16, 6u16, UNDEFINED),
        (0x02, 4, 1000),
        (0x04, 4, UNDEFINED),
        (0x10, 4, UNDEFINED),
        (0x20, 4, UNDEFINED),
    ] {
        acl.extend(tag.to_le_bytes());
        acl.extend(perm.to_le_bytes());
        acl.extend(id.to_le_bytes());
    }
    acl
}

/// True if the file system at `dir` has every one of `needs`. Otherwise
/// prints `SKIPPED <test>: needs <features> on <dir> (...)` and returns
/// false, or panics with that message under CI.
#[track_caller]
pub fn require_fs(dir: &Path, needs: &[FsFeature]) -> bool {
    let names: Vec<&str> = needs.iter().map(|f| f.name()).collect();
    skip_unless(
        &format!("{} on {}", names.join(", "), dir.display()),
        &fs_lacks(dir, needs),
    )
}

/// What of `needs` the file system at `dir` lacks, and why: one line each.
pub fn fs_lacks(dir: &Path, needs: &[FsFeature]) -> Vec<String> {
    needs.iter().filter_map(|f| f.missing_at(dir)).collect()
}
