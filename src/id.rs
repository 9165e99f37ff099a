//! Layer ids: the directory name is the id, and every id is validated before
//! it is used to build a path (FORMATS.md 5.4: Docker trusted ids from JSON).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// Suffixes the aufs driver appends to ids of its own; an id ending in one
/// would collide with the name of another layer.
pub const INIT_SUFFIX: &str = "-init";
const REMOVING_SUFFIX: &str = "-removing";
/// Prefix reserved for graph2aufs's own names under ROOT.
pub const OWN_PREFIX: &str = ".graph2aufs";
/// Longest id: names derived from it (`.graph2aufs-tmp-<id>-init`, Docker's
/// `<id>-init-removing`) must still fit in a directory name (255 bytes).
const ID_MAX: usize = 230;

/// A validated layer id (an image, a container, or a container's init layer).
///
/// Pre-0.7 Docker accepted any non-empty id without ':'; ids are therefore
/// bytes, not necessarily UTF-8 or hex.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LayerId(Box<[u8]>);

/// Why a name is not a safe id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadId {
    Empty,
    TooLong(usize),
    Contains(&'static str),
    Reserved(&'static str),
    Suffix(&'static str),
}

impl fmt::Display for BadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadId::Empty => write!(f, "the id is empty"),
            BadId::TooLong(n) => write!(
                f,
                "the id is {n} bytes long (at most {ID_MAX}, so that the names derived from it fit in 255)"
            ),
            BadId::Contains(what) => write!(f, "the id contains {what}"),
            BadId::Reserved(what) => write!(f, "the id is reserved ({what})"),
            BadId::Suffix(s) => write!(f, "the id ends in {s:?}, which collides with aufs layer names"),
        }
    }
}

impl std::error::Error for BadId {}

impl LayerId {
    /// Validates `bytes` as an id that is safe to use as a name under ROOT.
    pub fn parse(bytes: &[u8]) -> Result<LayerId, BadId> {
        Self::check(bytes)?;
        Ok(LayerId(bytes.into()))
    }

    pub fn from_os(name: &OsStr) -> Result<LayerId, BadId> {
        Self::parse(name.as_bytes())
    }

    fn check(b: &[u8]) -> Result<(), BadId> {
        if b.is_empty() {
            return Err(BadId::Empty);
        }
        if b.len() > ID_MAX {
            return Err(BadId::TooLong(b.len()));
        }
        for (byte, what) in [(b'/', "'/'"), (0, "a NUL byte"), (b'\n', "a newline"), (b':', "':'")] {
            if b.contains(&byte) {
                return Err(BadId::Contains(what));
            }
        }
        if b == b"." || b == b".." {
            return Err(BadId::Reserved("a dot entry"));
        }
        if b == b"_tmp" {
            return Err(BadId::Reserved("Docker's scratch directory _tmp"));
        }
        if b.starts_with(OWN_PREFIX.as_bytes()) {
            return Err(BadId::Reserved("names beginning with .graph2aufs are graph2aufs's own"));
        }
        for suffix in [INIT_SUFFIX, REMOVING_SUFFIX] {
            if b.ends_with(suffix.as_bytes()) {
                return Err(BadId::Suffix(suffix));
            }
        }
        Ok(())
    }

    /// The id of a container's init layer, `<id>-init`.
    pub fn init_layer(&self) -> LayerId {
        let mut v = self.0.to_vec();
        v.extend_from_slice(INIT_SUFFIX.as_bytes());
        LayerId(v.into())
    }

    /// True for the 64-lowercase-hex ids that Docker 1.3+ requires.
    pub fn is_docker_hex(&self) -> bool {
        self.0.len() == 64 && self.0.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_os_str(&self) -> &OsStr {
        OsStr::from_bytes(&self.0)
    }

    pub fn to_os_string(&self) -> OsString {
        OsString::from_vec(self.0.to_vec())
    }
}

impl fmt::Display for LayerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::names::escape(&self.0))
    }
}

impl fmt::Debug for LayerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LayerId({self})")
    }
}

impl serde::Serialize for LayerId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::names::escape(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_docker_and_pre_07_ids() {
        let hex = "a".repeat(64);
        assert!(LayerId::parse(hex.as_bytes()).unwrap().is_docker_hex());
        let old = LayerId::parse("base-ubuntu".as_bytes()).unwrap();
        assert!(!old.is_docker_hex());
        assert!(LayerId::parse("ümage".as_bytes()).is_ok());
        assert!(LayerId::parse(b"\xff\xfe").is_ok());
    }

    #[test]
    fn rejects_everything_that_could_escape_or_collide() {
        for bad in [
            &b""[..],
            b".",
            b"..",
            b"../x",
            b"a/b",
            b"a\0b",
            b"a\nb",
            b"a:b",
            b"_tmp",
            b".graph2aufs",
            b".graph2aufs-tmp",
            b"abc-init",
            b"abc-removing",
        ] {
            assert!(
                LayerId::parse(bad).is_err(),
                "{:?} accepted",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(LayerId::parse(&[b'a'; 4000]), Err(BadId::TooLong(4000)));
    }

    #[test]
    fn init_layer_appends_suffix() {
        let id = LayerId::parse(b"abc").unwrap();
        assert_eq!(id.init_layer().as_bytes(), b"abc-init");
    }
}
