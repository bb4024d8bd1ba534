//! The watchdog: if the core has been inside one handler for too long
//! (stuck in reclaim, a slow /proc read, a bug), a separate thread kills
//! the least important registered process by itself.
//!
//! The core keeps a *duplicate* pidfd of its current fallback victim in an
//! atomic slot, so the watchdog never touches the table (which only the
//! core may read) and can never hit a recycled pid.

use std::io;
use std::os::fd::{AsFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use crate::sys;

/// Shared between the core and the watchdog thread.
pub struct Heartbeat {
    /// CLOCK_MONOTONIC ms when the current handler started; 0 when idle.
    busy_since_ms: AtomicU64,
    /// Owned duplicate pidfd of the fallback victim, or -1: an `OwnedFd`
    /// kept as its number so that the core and the watchdog can swap it
    /// without a lock. Only [`Heartbeat::swap_fd`] touches it.
    candidate_fd: AtomicI32,
    candidate_pid: AtomicI32,
    candidate_adj: AtomicI32,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat {
            busy_since_ms: AtomicU64::new(0),
            candidate_fd: AtomicI32::new(-1),
            candidate_pid: AtomicI32::new(0),
            candidate_adj: AtomicI32::new(0),
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        drop(self.swap_fd(None));
    }
}

impl Heartbeat {
    pub fn enter(&self, now_ms: u64) {
        self.busy_since_ms.store(now_ms.max(1), Ordering::Release);
    }

    pub fn leave(&self) {
        self.busy_since_ms.store(0, Ordering::Release);
    }

    /// Publishes the process the watchdog would kill (None: nothing).
    /// Takes ownership of `pidfd`; the previous one is closed.
    pub fn set_candidate(&self, c: Option<(i32, i32, OwnedFd)>) {
        let (pid, adj, fd) = match c {
            Some((pid, adj, fd)) => (pid, adj, Some(fd)),
            None => (0, 0, None),
        };
        self.candidate_pid.store(pid, Ordering::Relaxed);
        self.candidate_adj.store(adj, Ordering::Relaxed);
        // Dropping the previous one closes it.
        drop(self.swap_fd(fd));
    }

    /// Puts `fd` in the candidate slot and takes out what was there.
    fn swap_fd(&self, fd: Option<OwnedFd>) -> Option<OwnedFd> {
        let raw: RawFd = fd.map_or(-1, IntoRawFd::into_raw_fd);
        let old = self.candidate_fd.swap(raw, Ordering::AcqRel);
        // SAFETY: the slot only ever holds -1 or a number taken from an
        // `OwnedFd` above; the atomic swap hands it to exactly one caller.
        (old >= 0).then(|| unsafe { OwnedFd::from_raw_fd(old) })
    }

    pub fn candidate_pid(&self) -> i32 {
        self.candidate_pid.load(Ordering::Relaxed)
    }

    /// How long the core has been in its current handler.
    pub fn stuck_ms(&self, now_ms: u64) -> u64 {
        match self.busy_since_ms.load(Ordering::Acquire) {
            0 => 0,
            t => now_ms.saturating_sub(t),
        }
    }

    /// Kills the published candidate once; returns its pid and adj.
    pub fn kill_candidate(&self) -> Option<(i32, i32)> {
        let fd = self.swap_fd(None)?;
        let (pid, adj) = (
            self.candidate_pid.load(Ordering::Relaxed),
            self.candidate_adj.load(Ordering::Relaxed),
        );
        let ok = sys::pidfd_send_signal(fd.as_fd(), libc::SIGKILL).is_ok();
        if ok {
            let _ = sys::process_mrelease(fd.as_fd());
        }
        ok.then_some((pid, adj))
    }
}

/// Starts the watchdog thread: checks the heartbeat four times per
/// `timeout_ms` and kills once per stuck episode.
pub fn start(hb: Arc<Heartbeat>, timeout_ms: u64, on_start: fn(&'static str)) -> io::Result<()> {
    thread::Builder::new()
        .name("lmkd-watchdog".into())
        .stack_size(128 * 1024)
        .spawn(move || {
            // It must get the CPU exactly when the machine is drowning.
            crate::protect::raise_thread_priority();
            on_start("watchdog");
            let mut fired_for = 0;
            loop {
                thread::sleep(std::time::Duration::from_millis((timeout_ms / 4).max(10)));
                let now = sys::monotonic_ms();
                let stuck = hb.stuck_ms(now);
                let since = now - stuck;
                if stuck >= timeout_ms && fired_for != since {
                    fired_for = since;
                    // Kill first; this thread may format text afterwards, the
                    // core is the one that must not.
                    if let Some((pid, adj)) = hb.kill_candidate() {
                        log::warn!(
                            target: crate::report::KILL_TARGET,
                            "watchdog: main loop stuck for {stuck} ms; killed pid {pid} (oom_score_adj {adj})"
                        );
                    } else {
                        log::error!("watchdog: main loop stuck for {stuck} ms and no process to kill");
                    }
                }
            }
        })
        .map(drop)
        .map_err(|e| io::Error::new(e.kind(), format!("spawn watchdog thread: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::{Duration, Instant};

    #[test]
    fn kills_the_candidate_when_the_core_is_stuck() {
        let mut child = Command::new("sleep").arg("100").spawn().unwrap();
        let pid = child.id() as i32;
        let hb = Arc::new(Heartbeat::default());
        let fd = sys::pidfd_open(pid).unwrap();
        hb.set_candidate(Some((pid, 900, fd)));
        // Idle core: no kill.
        start(hb.clone(), 500, |_| {}).unwrap();
        std::thread::sleep(Duration::from_millis(800));
        assert!(
            child.try_wait().unwrap().is_none(),
            "killed while the core was idle"
        );
        // A handler that started long ago and never returned.
        hb.enter(sys::monotonic_ms().saturating_sub(10_000));
        let end = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < end, "watchdog did not kill the candidate");
            std::thread::sleep(Duration::from_millis(20));
        };
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        // The candidate is used up: nothing left to kill twice.
        assert!(hb.kill_candidate().is_none());
    }
}
