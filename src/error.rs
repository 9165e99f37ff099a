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

/// An [`Error`] met where an I/O error is expected (an item's step that
/// saves the record, claims an item): the same message, and the kind of
/// the I/O error under it (`Other` for usage and environment errors), so
/// that a caller deciding on the kind still can.
impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match &e {
            Error::Io { source, .. } => source.kind(),
            Error::Usage(_) | Error::Env(_) => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_made_an_io_error_keeps_its_message_and_the_kind_under_it() {
        let e = Error::io("saving the record", io::Error::from_raw_os_error(libc::ENOSPC));
        let message = e.to_string();
        let io = io::Error::from(e);
        assert_eq!(io.kind(), io::ErrorKind::StorageFull);
        assert_eq!(io.to_string(), message);
        assert_eq!(
            io::Error::from(Error::Env("locked".into())).kind(),
            io::ErrorKind::Other
        );
    }
}
