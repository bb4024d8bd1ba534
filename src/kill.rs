//! The lifecycle of one kill, from the core's signal to the victim's exit
//! and the kill's announcement: what the signal did, whether the victim is
//! gone, and whether the kill has been announced yet. Pure state: the core
//! feeds it the reaper's reports and the victim's exit with the wakeup's
//! clock, and asks it whether the next kill may go. The reaper's progress
//! holds nothing back: it owns its own pidfd copy, so a release that never
//! finishes is simply abandoned.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::policy::{self, Figures};
use crate::snapshot::Snapshot;
use crate::victim::Victim;

/// What became of the SIGKILL, which the core sends itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// `pidfd_send_signal` returned at this CLOCK_MONOTONIC time (a dry run
    /// records the time it would have).
    Sent { at_ns: u64 },
    /// The signal failed: the victim will not die by our hand.
    Failed { errno: i32 },
}

/// What the core knows of the victim itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Life {
    Alive,
    /// Its pidfd became readable at this CLOCK_MONOTONIC time.
    Exited {
        at_ns: u64,
    },
    /// kill_timeout_ms passed since the signal without an exit.
    TimedOut,
}

/// A signalled kill not yet forgotten.
#[derive(Debug)]
pub struct InFlight {
    pub victim: Victim,
    /// The policy's decision behind this kill.
    pub decision: policy::Kill,
    pub figures: Figures,
    /// The snapshot the policy decided on.
    pub snap: Snapshot,
    /// CLOCK_MONOTONIC of the wakeup that read the pressure event.
    pub event_ns: u64,
    /// None in a dry run: no record left the table.
    pidfd: Option<OwnedFd>,
    signal: Signal,
    life: Life,
    /// The kill was announced (stats packet, PROCKILL, kill line): once the
    /// namer's name report came back, or with comm when it did not.
    announced: bool,
}

impl InFlight {
    pub fn new(
        victim: Victim,
        decision: policy::Kill,
        figures: Figures,
        snap: Snapshot,
        event_ns: u64,
        pidfd: Option<OwnedFd>,
        signal: Signal,
    ) -> InFlight {
        InFlight {
            victim,
            decision,
            figures,
            snap,
            event_ns,
            pidfd,
            signal,
            life: Life::Alive,
            // A failed signal is no kill: nothing to announce.
            announced: matches!(signal, Signal::Failed { .. }),
        }
    }

    pub fn signal(&self) -> Signal {
        self.signal
    }

    pub fn life(&self) -> Life {
        self.life
    }

    /// The victim's pidfd, held for the exit watch.
    pub fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(|fd| fd.as_fd())
    }

    pub fn announced(&self) -> bool {
        self.announced
    }

    /// Marks the kill announced; true the first time only (the name report
    /// and the fallback must not both announce it).
    pub fn announce(&mut self) -> bool {
        !std::mem::replace(&mut self.announced, true)
    }

    /// The announcement is overdue: the namer's name report has not come
    /// back within kill_timeout_ms of the signal.
    pub fn announcement_overdue(&self, now_ns: u64, timeout_ms: u64) -> bool {
        !self.announced && self.waited_ms(now_ns) >= timeout_ms
    }

    /// The victim's pidfd became readable. Returns the time to exit in ms,
    /// counted from the signal.
    pub fn on_exit(&mut self, now_ns: u64) -> u64 {
        self.life = Life::Exited { at_ns: now_ns };
        self.waited_ms(now_ns)
    }

    /// Ms since the signal went out (0 for a failed one).
    fn waited_ms(&self, now_ns: u64) -> u64 {
        match self.signal {
            Signal::Sent { at_ns } => ms(now_ns).saturating_sub(ms(at_ns)),
            Signal::Failed { .. } => 0,
        }
    }

    /// One kill at a time: the next may not go while this victim is alive,
    /// was signalled, and kill_timeout_ms have not passed since the signal.
    /// A failed signal holds nothing back; neither does a dead victim, nor
    /// whatever the reaper is still doing.
    pub fn blocks_next_kill(&self, now_ns: u64, timeout_ms: u64) -> bool {
        self.life == Life::Alive
            && !matches!(self.signal, Signal::Failed { .. })
            && self.waited_ms(now_ns) < timeout_ms
    }

    /// Marks a victim still alive after kill_timeout_ms as timed out and
    /// returns how long it was waited for; None if it is not (or already
    /// was) timed out.
    pub fn time_out(&mut self, now_ns: u64, timeout_ms: u64) -> Option<u64> {
        let waited = self.waited_ms(now_ns);
        let failed = matches!(self.signal, Signal::Failed { .. });
        if self.life != Life::Alive || failed || waited < timeout_ms {
            return None;
        }
        self.life = Life::TimedOut;
        Some(waited)
    }

    /// Nothing is left to wait for: the kill is announced and the victim is
    /// gone (or was never signalled). A timed-out victim stays, so its late
    /// exit is still reported, until the next kill replaces it.
    pub fn is_over(&self) -> bool {
        self.announced
            && (matches!(self.life, Life::Exited { .. })
                || matches!(self.signal, Signal::Failed { .. }))
    }
}

/// The kills handed to the reaper and not yet finished there, so that one
/// it never finishes (a `process_mrelease` stuck on the victim's mmap lock)
/// is noticed and logged once. Nothing waits on them.
#[derive(Debug, Default)]
pub struct ReaperJobs {
    slots: [Option<Job>; REAPER_JOBS],
}

/// As many as the reaper's queue holds.
const REAPER_JOBS: usize = 8;

#[derive(Clone, Copy, Debug)]
struct Job {
    pid: i32,
    sent_ns: u64,
    logged: bool,
}

impl ReaperJobs {
    /// A job for `pid`, signalled at `sent_ns`, went to the reaper.
    pub fn add(&mut self, pid: i32, sent_ns: u64) {
        if let Some(s) = self.slots.iter_mut().find(|s| s.is_none()) {
            *s = Some(Job {
                pid,
                sent_ns,
                logged: false,
            });
        }
    }

    /// The reaper finished the job for `pid`.
    pub fn finished(&mut self, pid: i32) {
        if let Some(s) = self
            .slots
            .iter_mut()
            .find(|s| s.is_some_and(|j| j.pid == pid))
        {
            *s = None;
        }
    }

    /// A job the reaper has held for timeout_ms since its signal and that
    /// was not reported yet: its pid and how long; reported once.
    pub fn newly_stuck(&mut self, now_ns: u64, timeout_ms: u64) -> Option<(i32, u64)> {
        self.slots.iter_mut().flatten().find_map(|j| {
            let waited = ms(now_ns).saturating_sub(ms(j.sent_ns));
            if j.logged || waited < timeout_ms {
                return None;
            }
            j.logged = true;
            Some((j.pid, waited))
        })
    }
}

fn ms(ns: u64) -> u64 {
    ns / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::KillReason;
    use crate::proto::KillStat;

    const MS: u64 = 1_000_000;
    const TIMEOUT: u64 = 100;

    fn inflight(signal: Signal) -> InFlight {
        let victim = Victim {
            pid: 42,
            uid: 10_000,
            adj: 900,
            rss_kb: 1000,
            swap_kb: 0,
            stat: KillStat::default(),
        };
        let decision = policy::Kill {
            reason: KillReason::LowMem,
            min_adj: 0,
        };
        InFlight::new(
            victim,
            decision,
            Figures::default(),
            Snapshot::default(),
            1000 * MS,
            None,
            signal,
        )
    }

    fn sent(at_ms: u64) -> InFlight {
        inflight(Signal::Sent { at_ns: at_ms * MS })
    }

    #[test]
    fn timeout_counts_from_the_signal_not_the_event() {
        let mut k = sent(1500);
        assert!(k.blocks_next_kill(1599 * MS, TIMEOUT));
        assert_eq!(k.time_out(1599 * MS, TIMEOUT), None);
        assert!(!k.blocks_next_kill(1600 * MS, TIMEOUT));
        assert_eq!(k.time_out(1600 * MS, TIMEOUT), Some(100));
        assert_eq!(k.life(), Life::TimedOut);
        // Once only.
        assert_eq!(k.time_out(1700 * MS, TIMEOUT), None);
    }

    #[test]
    fn announced_once_and_overdue_after_kill_timeout() {
        let mut k = sent(1000);
        assert!(!k.announcement_overdue(1099 * MS, TIMEOUT));
        assert!(k.announcement_overdue(1100 * MS, TIMEOUT));
        assert!(k.announce());
        assert!(!k.announce());
        assert!(!k.announcement_overdue(2000 * MS, TIMEOUT));
    }

    #[test]
    fn failed_signal_blocks_nothing_and_is_over_at_once() {
        let mut k = inflight(Signal::Failed { errno: libc::ESRCH });
        assert!(!k.blocks_next_kill(1000 * MS, TIMEOUT));
        assert_eq!(k.time_out(5000 * MS, TIMEOUT), None);
        assert!(!k.announce(), "a failed kill is announced");
        assert!(k.is_over());
    }

    #[test]
    fn exit_ends_the_wait_and_the_kill_once_announced() {
        let mut k = sent(1000);
        assert_eq!(k.on_exit(1030 * MS), 30);
        assert!(!k.blocks_next_kill(1030 * MS, TIMEOUT));
        assert!(!k.is_over(), "over before it was announced");
        k.announce();
        assert!(k.is_over());
        assert_eq!(k.life(), Life::Exited { at_ns: 1030 * MS });
    }

    #[test]
    fn a_stuck_reaper_job_is_reported_once() {
        let mut j = ReaperJobs::default();
        j.add(7, 1000 * MS);
        j.add(8, 1050 * MS);
        assert_eq!(j.newly_stuck(1099 * MS, TIMEOUT), None);
        assert_eq!(j.newly_stuck(1100 * MS, TIMEOUT), Some((7, 100)));
        assert_eq!(j.newly_stuck(1120 * MS, TIMEOUT), None);
        j.finished(8);
        assert_eq!(j.newly_stuck(2000 * MS, TIMEOUT), None);
        j.finished(7);
        j.add(9, 3000 * MS);
        assert_eq!(j.newly_stuck(3100 * MS, TIMEOUT), Some((9, 100)));
    }

    #[test]
    fn timed_out_victim_stays_until_replaced() {
        let mut k = sent(1000);
        k.announce();
        assert_eq!(k.time_out(1200 * MS, TIMEOUT), Some(200));
        // Kept so that a late exit is still reported.
        assert!(!k.is_over());
        assert_eq!(k.on_exit(1300 * MS), 300);
        assert!(k.is_over());
    }
}
