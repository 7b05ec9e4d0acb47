//! Child processes that never outlive the test that started them.

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A child process stopped when dropped, however the test ends: a signal (SIGTERM
/// unless told otherwise), a grace period for it to exit, then SIGKILL, and always
/// a wait, so no zombie is left. It derefs to the [`Child`] for `id`, `try_wait`,
/// its pipes and an explicit `kill`.
pub struct ChildGuard {
    what: String,
    child: Child,
    signal: &'static str,
    grace: Duration,
}

impl ChildGuard {
    /// Guards a started child; `what` names it in messages.
    pub fn new(what: impl Into<String>, child: Child) -> ChildGuard {
        ChildGuard {
            what: what.into(),
            child,
            signal: "TERM",
            grace: Duration::from_secs(10),
        }
    }

    /// Starts `cmd`; fails the test, naming `what`, if it cannot be started.
    pub fn spawn(what: impl Into<String>, cmd: &mut Command) -> ChildGuard {
        let what = what.into();
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        ChildGuard::new(what, child)
    }

    /// The signal sent on drop (`"INT"`, `"TERM"`; `"KILL"` kills at once).
    pub fn stop_signal(mut self, signal: &'static str) -> ChildGuard {
        self.signal = signal;
        self
    }

    /// How long the child may take to exit after the signal before SIGKILL.
    pub fn grace(mut self, grace: Duration) -> ChildGuard {
        self.grace = grace;
        self
    }

    /// Waits for a short-lived process and fails the test, with its output, if it failed.
    pub fn wait_success(mut self, within: Duration, log: &Path) {
        let deadline = Instant::now() + within;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    assert!(
                        status.success(),
                        "{} failed ({status}):\n{}",
                        self.what,
                        std::fs::read_to_string(log).unwrap_or_default()
                    );
                    return;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => panic!("{} did not finish within {within:?}", self.what),
            }
        }
    }
}

impl Deref for ChildGuard {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.child
    }
}

impl DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if self.signal != "KILL" {
            let _ = Command::new("kill")
                .args([&format!("-{}", self.signal), &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + self.grace;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            eprintln!(
                "{} (pid {}) ignored SIG{}: killing",
                self.what,
                self.child.id(),
                self.signal
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
