//! An entry's extended attributes as a copy must keep them, the same on
//! every file system: POSIX ACLs (`system.posix_acl_access`,
//! `system.posix_acl_default`) taken as ACLs, not as bytes, and the names
//! under which a file system shows its ACLs a second time left out.
//!
//! XFS lists an ACL also as `trusted.SGI_ACL_FILE` / `trusted.SGI_ACL_DEFAULT`
//! (its on-disk form, to root). Copied as a plain attribute it would be a
//! stray attribute elsewhere, and on XFS a raw write of the ACL behind the
//! kernel's back (the mode is then not brought in line with its mask);
//! compared, it makes every copy to or from XFS differ. ext4, btrfs and
//! tmpfs list only the `system.` names.

use rustix::fs as rfs;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const ACL_ACCESS: &[u8] = b"system.posix_acl_access";
const ACL_DEFAULT: &[u8] = b"system.posix_acl_default";

/// XFS's magic number (statfs `f_type`).
const XFS_MAGIC: i64 = 0x5846_5342;

/// Names a file system (by its statfs magic) lists for what another name
/// holds, with that name: never copied, never compared, where that name is
/// listed too (a kernel without the file system's ACL support lists only
/// the alias, which is then all there is of the ACL, and kept).
fn aliases(magic: i64) -> &'static [(&'static [u8], &'static [u8])] {
    match magic {
        XFS_MAGIC => &[
            (b"trusted.SGI_ACL_FILE", ACL_ACCESS),
            (b"trusted.SGI_ACL_DEFAULT", ACL_DEFAULT),
        ],
        _ => &[],
    }
}

/// Whether some file system lists `name` as an alias.
fn may_be_alias(name: &[u8]) -> bool {
    aliases(XFS_MAGIC).iter().any(|(a, _)| *a == name)
}

fn names(path: &Path) -> io::Result<Vec<OsString>> {
    let n = match rfs::llistxattr_query(path) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut buf = vec![0u8; n];
    let n = rfs::llistxattr(path, &mut buf[..])?;
    Ok(buf[..n]
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| OsStr::from_bytes(s).to_os_string())
        .collect())
}

/// The extended attributes of the entry at `path` (a `/proc/self/fd/N/name`
/// path; `dir` is the directory it is in), sorted, aliases left out, ACLs
/// in their canonical form.
pub fn read(dir: impl AsFd, path: &Path) -> io::Result<Vec<(OsString, Vec<u8>)>> {
    let mut names = names(path)?;
    if names.iter().any(|n| may_be_alias(n.as_bytes())) {
        // (Only then: one more system call, on the few entries concerned.)
        let magic = rfs::fstatfs(dir)?.f_type as i64;
        let listed: Vec<Vec<u8>> = names.iter().map(|n| n.as_bytes().to_vec()).collect();
        let alias = |n: &OsString| {
            aliases(magic)
                .iter()
                .any(|(a, of)| *a == n.as_bytes() && listed.iter().any(|l| l == of))
        };
        names.retain(|n| !alias(n));
    }
    let mut out = Vec::new();
    for x in names {
        let v = match get(path, &x) {
            // Removed since listed: as if listed a moment later.
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => continue,
            r => r?,
        };
        if let Some(v) = canonical(x.as_bytes(), v) {
            out.push((x, v));
        }
    }
    out.sort();
    Ok(out)
}

fn get(path: &Path, name: &OsStr) -> io::Result<Vec<u8>> {
    loop {
        let n = rfs::lgetxattr_query(path, name)?;
        let mut v = vec![0u8; n];
        match rfs::lgetxattr(path, name, &mut v[..]) {
            // Grown since measured: again.
            Err(rustix::io::Errno::RANGE) => continue,
            r => {
                v.truncate(r?);
                return Ok(v);
            }
        }
    }
}

/// An attribute's value as compared and copied: an ACL with its entries in
/// order (tag, then id), ids only where the tag has one, permissions only;
/// an access ACL that says no more than the mode bits is none (file
/// systems store none then). Anything else, and an ACL that does not
/// parse, as it is.
fn canonical(name: &[u8], value: Vec<u8>) -> Option<Vec<u8>> {
    if name != ACL_ACCESS && name != ACL_DEFAULT {
        return Some(value);
    }
    let Some(entries) = parse_acl(&value) else {
        return Some(value);
    };
    let mut entries: Vec<(u16, u32, u16)> = entries
        .into_iter()
        .map(|(tag, id, perm)| {
            let id = if [ACL_USER, ACL_GROUP].contains(&tag) {
                id
            } else {
                u32::MAX
            };
            (tag, id, perm & 0o7)
        })
        .collect();
    entries.sort();
    if name == ACL_ACCESS
        && entries
            .iter()
            .all(|(tag, _, _)| [ACL_USER_OBJ, ACL_GROUP_OBJ, ACL_OTHER].contains(tag))
    {
        return None;
    }
    let mut out = ACL_VERSION.to_le_bytes().to_vec();
    for (tag, id, perm) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    Some(out)
}

const ACL_VERSION: u32 = 2;
const ACL_USER_OBJ: u16 = 0x01;
const ACL_USER: u16 = 0x02;
const ACL_GROUP_OBJ: u16 = 0x04;
const ACL_GROUP: u16 = 0x08;
const ACL_OTHER: u16 = 0x20;

/// The entries (tag, id, permissions) of an ACL in the kernel's xattr form:
/// a version, then 8 bytes per entry, little-endian.
fn parse_acl(v: &[u8]) -> Option<Vec<(u16, u32, u16)>> {
    let (head, body) = v.split_at_checked(4)?;
    if u32::from_le_bytes(head.try_into().ok()?) != ACL_VERSION || body.len() % 8 != 0 {
        return None;
    }
    Some(
        body.chunks_exact(8)
            .map(|e| {
                let tag = u16::from_le_bytes([e[0], e[1]]);
                let perm = u16::from_le_bytes([e[2], e[3]]);
                let id = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
                (tag, id, perm)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut v = ACL_VERSION.to_le_bytes().to_vec();
        for (tag, perm, id) in entries {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&perm.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        v
    }

    #[test]
    fn acls_are_compared_as_acls_and_one_that_says_only_the_mode_is_none() {
        let x = u32::MAX;
        let a = acl(&[(1, 6, x), (2, 6, 1234), (4, 4, x), (0x10, 6, x), (0x20, 4, x)]);
        // The same entries in another order, an unused id where none belongs.
        let b = acl(&[(0x20, 4, x), (2, 6, 1234), (1, 6, 0), (0x10, 6, x), (4, 4, x)]);
        assert_eq!(canonical(ACL_ACCESS, a.clone()), canonical(ACL_ACCESS, b));
        let c = acl(&[(1, 6, x), (2, 4, 1234), (4, 4, x), (0x10, 6, x), (0x20, 4, x)]);
        assert_ne!(canonical(ACL_ACCESS, a.clone()), canonical(ACL_ACCESS, c));
        let minimal = acl(&[(1, 6, x), (4, 4, x), (0x20, 4, x)]);
        assert_eq!(canonical(ACL_ACCESS, minimal.clone()), None);
        // A minimal default ACL still says something (what new entries get).
        assert!(canonical(ACL_DEFAULT, minimal).is_some());
        // Not an ACL: kept as it is.
        assert_eq!(canonical(ACL_ACCESS, b"junk".to_vec()), Some(b"junk".to_vec()));
        assert_eq!(canonical(b"user.x", a.clone()), Some(a));
    }
}
