//! Errors that stop a whole command (exit code 2). Problems with single
//! items are not errors: they are reported per item and give exit code 1.

use std::io;

#[derive(thiserror::Error, Debug)]
pub enum Error {
    /// The command line or ROOT is not usable as given.
    #[error("{0}")]
    Usage(String),
    /// The environment refuses: permissions, locks, mounts, /dev/fuse.
    #[error("{0}")]
    Env(String),
    /// An I/O failure outside any single item, with what was being done.
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
}

impl Error {
    pub fn io(what: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds a description of the step to an I/O result, making it an [`Error`].
pub trait Step<T> {
    fn step(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Step<T> for io::Result<T> {
    fn step(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(what(), e))
    }
}
