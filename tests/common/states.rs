//! The item states, one vocabulary everywhere (DESIGN.md): written down
//! here, not read from graph2aufs's own definitions.

/// Every state an item can be in, as `--help`, the man page and the
/// reports name them.
pub const STATES: [&str; 7] = [
    "pending",
    "moving",
    "copying",
    "registered",
    "fallback",
    "quarantined",
    "failed",
];

/// The state of an item Docker removed under a live view: JSON reports
/// count it too.
pub const REMOVED: &str = "removed";
