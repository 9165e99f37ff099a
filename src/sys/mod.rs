//! The system calls of graph2aufs: every `unsafe` block of the product is
//! here, each wrapped once in a small safe function that checks the call's
//! result (and says why it is sound in a `SAFETY:` note). The rest of the
//! crate calls these, rustix or std.
//!
//! - [`fs`]: descriptor-relative file calls (re-exported here: `sys::lstat`).
//! - [`proc`]: the `/proc/self/fd/N` path of a descriptor, built here only.
//! - [`handle`]: file handles (`name_to_handle_at`, `open_by_handle_at`).
//! - [`mount`]: mount ids and detached read-only clones.
//! - [`creds`]: a thread's file system ids and groups, every change checked.
//! - [`clock`]: the clocks change detection compares against.
//! - [`process`]: signals, a thread's own umask, daemon start-up, inherited
//!   descriptors and sockets.

pub mod clock;
pub mod creds;
pub mod fs;
pub mod handle;
pub mod mount;
pub mod proc;
pub mod process;

pub use fs::*;
