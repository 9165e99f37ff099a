//! The shipped systemd unit (`scripts/systemd/graph2aufs.service`), read
//! by the tests that run its command lines.

use super::common::bin;
use std::path::Path;

/// The shipped unit's text.
pub fn shipped_unit() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/systemd/graph2aufs.service");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A command line of the unit, split as systemd does (words, and single
/// quoted strings), with the unit's paths swapped for the test's.
pub fn unit_command(unit: &str, key: &str, root: &Path) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("the unit has no {key}"));
    let mut words = Vec::new();
    let mut rest = line.trim();
    while !rest.is_empty() {
        let (word, tail) = match rest.strip_prefix('\'') {
            Some(q) => q.split_once('\'').expect("a closed quote"),
            None => rest.split_once(' ').unwrap_or((rest, "")),
        };
        words.push(
            word.replace("/usr/local/bin/graph2aufs", &bin().display().to_string())
                .replace("/var/lib/docker", &root.display().to_string()),
        );
        rest = tail.trim_start();
    }
    words
}
