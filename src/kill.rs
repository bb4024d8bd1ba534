//! The lifecycle of one kill, from the policy's decision to the victim's
//! exit: what the signal did, whether the victim is gone, and whether the
//! reaper is done with its pidfd. Pure state: the core feeds it the
//! reaper's reports and the victim's exit with the wakeup's clock, and asks
//! it whether the next kill may go.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::policy::{self, Figures};
use crate::snapshot::Snapshot;
use crate::victim::Victim;

/// What became of the SIGKILL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Handed to the reaper; no report yet.
    Pending,
    /// `pidfd_send_signal` returned at this CLOCK_MONOTONIC time (a dry run
    /// reports the time it would have).
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

/// Whether the reaper still uses the victim's pidfd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reap {
    /// The reaper holds the pidfd (signal, then `process_mrelease`).
    Running,
    /// The reaper reported its last step; the pidfd is the core's again.
    Done,
}

/// A kill handed to the reaper and not yet forgotten.
#[derive(Debug)]
pub struct InFlight {
    pub victim: Victim,
    /// The policy's decision behind this kill.
    pub decision: policy::Kill,
    pub figures: Figures,
    /// The snapshot the policy decided on (the policy learns from it once
    /// the signal is out).
    pub snap: Snapshot,
    /// CLOCK_MONOTONIC of the wakeup that read the pressure event.
    pub event_ns: u64,
    /// None in a dry run: no record left the table.
    pidfd: Option<OwnedFd>,
    signal: Signal,
    life: Life,
    reap: Reap,
}

impl InFlight {
    pub fn new(
        victim: Victim,
        decision: policy::Kill,
        figures: Figures,
        snap: Snapshot,
        event_ns: u64,
        pidfd: Option<OwnedFd>,
    ) -> InFlight {
        InFlight {
            victim,
            decision,
            figures,
            snap,
            event_ns,
            pidfd,
            signal: Signal::Pending,
            life: Life::Alive,
            reap: Reap::Running,
        }
    }

    pub fn signal(&self) -> Signal {
        self.signal
    }

    pub fn life(&self) -> Life {
        self.life
    }

    pub fn reap(&self) -> Reap {
        self.reap
    }

    /// The victim's pidfd, held for the reaper and the exit watch.
    pub fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(|fd| fd.as_fd())
    }

    /// The reaper's report of the signal. True the first time only: that
    /// is when the kill is counted and announced (later reports repeat it).
    pub fn on_signal_done(&mut self, result: Result<u64, i32>) -> bool {
        if self.signal != Signal::Pending {
            return false;
        }
        self.signal = match result {
            Ok(at_ns) => Signal::Sent { at_ns },
            Err(errno) => Signal::Failed { errno },
        };
        true
    }

    /// The reaper is done with the pidfd.
    pub fn on_reaped(&mut self) {
        self.reap = Reap::Done;
    }

    /// The victim's pidfd became readable. Returns the time to exit in ms,
    /// counted from the signal, or from the event if the signal's report
    /// is still on its way.
    pub fn on_exit(&mut self, now_ns: u64) -> u64 {
        self.life = Life::Exited { at_ns: now_ns };
        let from = match self.signal {
            Signal::Sent { at_ns } => at_ns,
            _ => self.event_ns,
        };
        ms(now_ns).saturating_sub(ms(from))
    }

    /// Ms since the signal went out; 0 while it has not (the clock starts
    /// at the signal: under load the signal itself can take a while).
    fn waited_ms(&self, now_ns: u64) -> u64 {
        match self.signal {
            Signal::Sent { at_ns } => ms(now_ns).saturating_sub(ms(at_ns)),
            _ => 0,
        }
    }

    /// One kill at a time: the next may not go while this victim is alive,
    /// was signalled, and kill_timeout_ms have not passed since the signal.
    /// A failed signal holds nothing back; neither does a dead victim.
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

    /// The reaper still holds the pidfd, so a new kill cannot replace this
    /// one yet.
    pub fn holds_reaper(&self) -> bool {
        self.reap == Reap::Running
    }

    /// Nothing is left to wait for: the reaper is done and the victim is
    /// gone (or was never signalled). A timed-out victim stays, so its
    /// late exit is still reported, until the next kill replaces it.
    pub fn is_over(&self) -> bool {
        self.reap == Reap::Done
            && (matches!(self.life, Life::Exited { .. })
                || matches!(self.signal, Signal::Failed { .. }))
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

    fn inflight() -> InFlight {
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
        )
    }

    #[test]
    fn pending_signal_blocks_without_a_clock() {
        let k = inflight();
        // Not signalled yet: however late, the wait has not started.
        assert!(k.blocks_next_kill(1_000_000 * MS, TIMEOUT));
    }

    #[test]
    fn timeout_counts_from_the_signal_not_the_event() {
        let mut k = inflight();
        assert!(k.on_signal_done(Ok(1500 * MS)));
        assert!(k.blocks_next_kill(1599 * MS, TIMEOUT));
        assert_eq!(k.time_out(1599 * MS, TIMEOUT), None);
        assert!(!k.blocks_next_kill(1600 * MS, TIMEOUT));
        assert_eq!(k.time_out(1600 * MS, TIMEOUT), Some(100));
        assert_eq!(k.life(), Life::TimedOut);
        // Once only.
        assert_eq!(k.time_out(1700 * MS, TIMEOUT), None);
    }

    #[test]
    fn only_the_first_signal_report_counts() {
        let mut k = inflight();
        assert!(k.on_signal_done(Ok(1200 * MS)));
        assert!(!k.on_signal_done(Ok(1300 * MS)));
        assert_eq!(k.signal(), Signal::Sent { at_ns: 1200 * MS });
    }

    #[test]
    fn failed_signal_blocks_nothing_and_ends_with_the_reaper() {
        let mut k = inflight();
        assert!(k.on_signal_done(Err(libc::ESRCH)));
        assert_eq!(k.signal(), Signal::Failed { errno: libc::ESRCH });
        assert!(!k.blocks_next_kill(1000 * MS, TIMEOUT));
        assert_eq!(k.time_out(5000 * MS, TIMEOUT), None);
        assert!(!k.is_over());
        k.on_reaped();
        assert!(k.is_over());
    }

    #[test]
    fn exit_before_the_signal_report_counts_from_the_event() {
        let mut k = inflight();
        assert_eq!(k.on_exit(1030 * MS), 30);
        assert!(!k.blocks_next_kill(1030 * MS, TIMEOUT));
        // The reaper still holds the pidfd: not over yet.
        assert!(k.holds_reaper());
        assert!(!k.is_over());
        assert!(k.on_signal_done(Ok(1010 * MS)));
        k.on_reaped();
        assert!(k.is_over());
    }

    #[test]
    fn exit_time_counts_from_the_signal() {
        let mut k = inflight();
        k.on_signal_done(Ok(1200 * MS));
        assert_eq!(k.on_exit(1250 * MS), 50);
        assert_eq!(k.life(), Life::Exited { at_ns: 1250 * MS });
    }

    #[test]
    fn timed_out_victim_stays_until_replaced() {
        let mut k = inflight();
        k.on_signal_done(Ok(1000 * MS));
        k.on_reaped();
        assert_eq!(k.time_out(1200 * MS, TIMEOUT), Some(200));
        assert!(!k.holds_reaper());
        // Kept so that a late exit is still reported.
        assert!(!k.is_over());
        assert_eq!(k.on_exit(1300 * MS), 300);
        assert!(k.is_over());
    }
}
