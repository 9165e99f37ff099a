//! The shared harness of graph2aufs's integration tests: `mod common;` in a
//! test file, then `use common::*;`.
//!
//! - [`snapshot`] / [`snapshot_with`] / [`diff`] / [`assert_same`]: whole-tree
//!   comparisons, entry by entry.
//! - [`require_root_and_fuse`] / [`require_root`]: loud skips (failures under CI);
//!   [`require_fs`]: the same for what a file system must support.
//! - [`run`] / [`run_json`] / [`run_command`]: the binary, with a hard timeout.
//! - [`Mount`]: a FUSE server under a guard with a watchdog; [`is_mounted`],
//!   [`lazy_umount`], [`mountinfo`].
//! - [`LoopFs`] / [`TmpFs`] / [`AnyFs`] ([`FsType`]): scratch filesystems (ext4,
//!   XFS, btrfs, tmpfs) for a second device or a given file system.
//! - [`PrivateDir`] / [`private_mounts`]: scratch space and mounts no other
//!   process sees (for canaries and access times); [`PlainMount`]: scratch
//!   space without `nodev`, `nosuid`, `noexec`.
//! - [`require_debian_base`]: the Debian base tree (`G2A_DEBIAN_BASE`).
//! - [`write_until`] / [`read_back`]: a writer busy in a directory, and what
//!   it left there.
//! - [`wait_for`] / [`has_ended`] / [`ends_within`]: bounded waits.
//! - [`STATES`]: the item states; [`leaf_images`]: what a generated root
//!   holds.

// Each test crate uses only part of the harness.
#![allow(dead_code, unused_imports)]

pub mod debian;
pub mod features;
pub mod gate;
pub mod mount;
pub mod private;
pub mod roots;
pub mod run;
pub mod scratch;
pub mod snapshot;
pub mod states;
pub mod wait;
pub mod writer;

pub use debian::{require_debian_base, DEBIAN_BASE_VAR};
pub use features::{fs_lacks, require_fs, FsFeature};
pub use gate::{in_ci, loud, require_root, require_root_and_fuse, skip_unless, test_name};
pub use mount::{
    fusectl, is_mounted, kernel_has_passthrough, lazy_umount, mount_point_path, mountinfo, mounts_at, mounts_under,
    Mount, MountInfo, EXIT_GRACE, MOUNT_TIMEOUT, WATCHDOG_GRACE,
};
pub use private::{private_mounts, PlainMount, PrivateDir};
pub use roots::leaf_images;
pub use run::{bin, describe, g2a, genroot_bin, run, run_command, run_json, RunResult, RUN_TIMEOUT};
pub use scratch::{AnyFs, BindAt, FsType, LoopFs, TmpFs};
pub use snapshot::{assert_same, diff, show, snapshot, snapshot_with, Entry, Kind, SnapOpts, Tree};
pub use states::{REMOVED, STATES};
pub use wait::{ends_within, has_ended, wait_for};
pub use writer::{read_back, write_until, Written};
