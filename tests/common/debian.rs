//! The Debian base tree (debootstrap minbase, made by `scripts/debian-base`)
//! that tests copy into generated roots as a real image layer. It takes
//! minutes to build, so it is built once, outside the tests: `.ci/run` builds
//! it and names it in `G2A_DEBIAN_BASE`.

use std::path::PathBuf;

use super::gate::skip_unless;

/// The environment variable naming a finished Debian base tree.
pub const DEBIAN_BASE_VAR: &str = "G2A_DEBIAN_BASE";

/// The Debian base tree named by `G2A_DEBIAN_BASE`, if it is a finished
/// one. Otherwise says so loudly and returns `None` (a test failure under
/// `CI=true`, where `.ci/run` always provides it). Use as
/// `let Some(base) = require_debian_base() else { return };`.
#[track_caller]
pub fn require_debian_base() -> Option<PathBuf> {
    let missing = match std::env::var_os(DEBIAN_BASE_VAR) {
        None => vec![format!(
            "{DEBIAN_BASE_VAR} is not set (build one with scripts/debian-base DIR)"
        )],
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.join("etc/debian_version").is_file() && !dir.join("debootstrap").exists() {
                return Some(dir);
            }
            vec![format!(
                "{} is not a finished Debian root made by scripts/debian-base",
                dir.display()
            )]
        }
    };
    skip_unless("a Debian base tree", &missing);
    None
}
