//! The aufs driver's layout (FORMATS.md 2): its three directories, and
//! chains as `layers/` files.

use crate::id::LayerId;

/// One of the aufs driver's directories under `aufs/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AufsDir {
    /// `diff/<id>`: a layer's data.
    Diff,
    /// `layers/<id>`: its chain of ancestors.
    Layers,
    /// `mnt/<id>`: where the driver mounts it.
    Mnt,
}

impl AufsDir {
    pub const ALL: [AufsDir; 3] = [AufsDir::Diff, AufsDir::Layers, AufsDir::Mnt];

    pub fn name(self) -> &'static str {
        match self {
            AufsDir::Diff => "diff",
            AufsDir::Layers => "layers",
            AufsDir::Mnt => "mnt",
        }
    }

    /// The directory named `name`, if it is one of the three.
    pub fn of_name(name: &[u8]) -> Option<AufsDir> {
        AufsDir::ALL.into_iter().find(|d| d.name().as_bytes() == name)
    }
}

/// The bytes of a `layers/<id>` file: the ancestors, nearest first, one per
/// line, every line ending in a newline; a base layer's file is empty.
pub fn layers_bytes<'a>(chain: impl IntoIterator<Item = &'a LayerId>) -> Vec<u8> {
    let mut out = Vec::new();
    for id in chain {
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
    }
    out
}

/// Parses a `layers/` file as Docker reads it: blank lines skipped, a
/// missing final newline tolerated.
pub fn parse_layers(bytes: &[u8]) -> Vec<&[u8]> {
    bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_layer_file_is_empty_and_lines_end_in_newline() {
        assert!(layers_bytes(&[]).is_empty());
        let a = LayerId::parse(b"a").unwrap();
        let b = LayerId::parse(b"b").unwrap();
        assert_eq!(layers_bytes(&[a, b]), b"a\nb\n");
        assert_eq!(parse_layers(b"a\n\nb"), vec![&b"a"[..], b"b"]);
    }
}
