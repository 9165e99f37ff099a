//! Fault injection for crash tests: with `GRAPH2AUFS_KILL_AFTER=N` in the
//! environment, the process kills itself with SIGKILL just before its N+1th
//! change to ROOT, so tests can check that every point of a run is
//! resumable. Without it, this costs one branch per step.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Faults {
    kill_after: Option<u64>,
    steps: AtomicU64,
}

impl Faults {
    pub fn from_env() -> Faults {
        let kill_after = std::env::var("GRAPH2AUFS_KILL_AFTER").ok().and_then(|v| v.parse().ok());
        Faults {
            kill_after,
            steps: AtomicU64::new(0),
        }
    }

    /// Called before every change to ROOT.
    pub fn step(&self) -> io::Result<()> {
        if let Some(n) = self.kill_after {
            if self.steps.fetch_add(1, Ordering::SeqCst) >= n {
                let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
            }
        }
        Ok(())
    }
}
