//! The aftermath of a kill: the reaper's reports (the victim's name, then
//! its release), the victim's exit, the announcement to subscribers and the
//! log, the watchdog's own kills, and the candidates the watchdog may take.
//! Split from `machine.rs` so the event-to-signal path reads on its own.

use super::{Edges, Machine};
use crate::history::KillRecord;
use crate::kill::{InFlight, Life, Signal};
use crate::policy::{self, Pressure};
use crate::proto;
use crate::reaper::{self, Counters, Name, Release};
use crate::report::Note;
use crate::snapshot::Snapshot;
use crate::victim::Victim;
use crate::watchdog;

impl Machine {
    /// A report from the reaper or the namer: the name is read (announce
    /// the kill), and/or the release is over (log it). Reports for a kill already
    /// forgotten are still logged.
    pub(super) fn on_reaped(&mut self, done: reaper::Done, io: &mut dyn Edges) {
        if let Some(n) = done.named {
            if self
                .inflight
                .as_ref()
                .is_some_and(|k| k.victim.pid == done.pid && !k.announced())
            {
                self.announce(n.name, n.counters);
            }
        }
        if let Some(f) = done.finished {
            self.reaper_jobs.finished(done.pid);
            self.reap_done(done.pid, done.signal.unwrap_or(f.at_ns), f);
        }
        if self.inflight.as_ref().is_some_and(InFlight::is_over) {
            self.finish_inflight(io);
        }
    }

    /// Announces the in-flight kill (stats packet, PROCKILL, kill line)
    /// with the full name and counters the namer read after the signal,
    /// or comm when it read no name.
    pub(super) fn announce(&mut self, name: Name, counters: Counters) {
        let Some(k) = self.inflight.as_mut() else {
            return;
        };
        if !k.announce() {
            return;
        }
        let Signal::Sent { at_ns } = k.signal() else {
            return;
        };
        let exit_ns = match k.life() {
            Life::Exited { at_ns: exit_ns } => Some(exit_ns.saturating_sub(at_ns)),
            _ => None,
        };
        let (mut v, kill, figures, snap, event_ns) =
            (k.victim, k.decision, k.figures, k.snap, k.event_ns);
        if !name.as_bytes().is_empty() {
            v.stat.set_name(name.as_bytes());
        }
        // Per-app memcg figures, read before the signal, take precedence.
        if v.stat.pgfault < 0 {
            v.stat.pgfault = counters.pgfault;
        }
        if v.stat.pgmajfault < 0 {
            v.stat.pgmajfault = counters.pgmajfault;
        }
        v.stat.start_time_ns = counters.start_time_ns;
        self.report_kill(&v, &kill, &figures, &snap, at_ns, event_ns);
        // The victim may have exited before its name came back: the exit
        // was seen before there was a record to put it on.
        if let Some(ns) = exit_ns {
            self.history.set_exit(v.pid, ns / 1_000_000);
            self.control.exited(v.pid, ns / 1000);
        }
    }

    /// The reaper is done with a victim's pidfd (signalled at `signal_ns`).
    pub(super) fn reap_done(&mut self, pid: i32, signal_ns: u64, f: reaper::Finished) {
        let errno = match f.release {
            Release::Released => {
                let ms = f.at_ns.saturating_sub(signal_ns) / 1_000_000;
                self.control.reaped(pid, signal_ns, f.at_ns);
                self.report.note(Note::Reaped { pid, ms });
                return;
            }
            // lmkd reports a victim already on its way out as a failure.
            Release::AlreadyExiting => libc::ESRCH,
            Release::Unsupported => libc::ENOSYS,
            Release::Failed(e) => e,
            Release::Skipped => return,
        };
        self.report.note(Note::ReleaseFailed { pid, errno });
    }

    pub(super) fn on_victim_exit(&mut self, now_ns: u64, io: &mut dyn Edges) {
        let Some(k) = &mut self.inflight else {
            return;
        };
        if let Some(fd) = k.pidfd() {
            io.unwatch(fd);
        }
        let ms = k.on_exit(now_ns);
        if !self.settings.dry_run {
            self.policy.on_exit();
            self.control.policy_saw_exit();
        }
        self.history.set_exit(k.victim.pid, ms);
        if let Signal::Sent { at_ns } = k.signal() {
            self.control
                .exited(k.victim.pid, now_ns.saturating_sub(at_ns) / 1000);
        }
        self.report.note(Note::Exited {
            pid: k.victim.pid,
            time_to_exit_ms: ms,
        });
        if self.inflight.as_ref().is_some_and(InFlight::is_over) {
            self.finish_inflight(io);
        }
        // Memory may still be short with the victim gone (lmkd's
        // PRESSURE_AFTER_KILL): look again now, not at the next tick.
        if self.polling.level.is_some() {
            self.evaluate(Pressure::Poll, now_ns, io);
            io.set_timer(Some(self.polling.interval_ms.max(1)));
        }
    }

    /// Forgets the in-flight kill, announcing it first if the name report
    /// has not come back (the reaper keeps its own pidfd copy and may
    /// finish whenever it likes).
    pub(super) fn finish_inflight(&mut self, io: &mut dyn Edges) {
        self.announce(Name::EMPTY, Counters::UNKNOWN);
        if let Some(k) = &self.inflight {
            if let Some(fd) = k.pidfd() {
                io.unwatch(fd);
            }
        }
        self.inflight = None;
    }

    pub(super) fn report_kill(
        &mut self,
        v: &Victim,
        kill: &policy::Kill,
        f: &policy::Figures,
        snap: &Snapshot,
        signal_ns: u64,
        event_ns: u64,
    ) {
        let mut stat = v.stat;
        stat.min_oom_score = kill.min_adj;
        stat.reason = kill.reason.code();
        stat.free_mem_kb = f.free_kb.min(i32::MAX as u64) as i32;
        stat.free_swap_kb = f.free_swap_kb.min(i32::MAX as u64) as i32;
        stat.thrashing = f.thrashing_pct as i32;
        stat.max_thrashing = f.max_thrashing_pct as i32;
        let dry_run = self.settings.dry_run;
        if !dry_run {
            self.announce_kill(v, &stat);
        }
        let mut rec = KillRecord::new(signal_ns / 1_000_000, v.pid, *kill, *f);
        rec.uid = v.uid;
        rec.adj = v.adj;
        rec.set_name(stat.name());
        rec.mem = snap.mem;
        rec.psi = snap.psi;
        rec.minfree_kb = self
            .reg
            .targets
            .as_slice()
            .iter()
            .find(|l| l.adj == kill.min_adj)
            .map_or(0, |l| {
                (l.minfree.max(0) as u64).saturating_mul(self.tunables.page_kb)
            });
        rec.rss_kb = v.rss_kb;
        rec.swap_kb = v.swap_kb;
        rec.event_to_signal_us = signal_ns.saturating_sub(event_ns) / 1000;
        rec.dry_run = dry_run;
        self.history.push(rec);
        self.control.kill(&rec);
        self.report.note(Note::Kill(rec));
    }

    /// Counts a kill and tells subscribers: stats first, then the kill
    /// notification, as AMS expects.
    /// Stats packet then PROCKILL to subscribers. (The kill was counted
    /// for GETKILLCNT when its signal went out.)
    pub(super) fn announce_kill(&mut self, v: &Victim, stat: &proto::KillStat) {
        // Stats first, then the kill notification, as AMS expects.
        if self.config.startup.log_stats {
            let mut buf = [0u8; proto::STAT_MAX_LEN];
            let n = proto::encode_kill_stat(stat, &mut buf);
            self.server.broadcast(true, &buf[..n], &self.report);
        }
        let mut pk = [0u8; proto::PROCKILL_LEN];
        let rss = v.rss_kb.min(i32::MAX as u64) as i32;
        self.server.broadcast(
            false,
            proto::encode_prockill(v.pid, v.uid, rss, &mut pk),
            &self.report,
        );
    }

    /// A kill the watchdog made while this thread was stuck: drop the
    /// record, count and announce it, keep it in the history and publish
    /// it to `lmkctl`. The watchdog has logged it already.
    pub fn watchdog_killed(&mut self, k: &watchdog::Killed) {
        let mut v = k.victim;
        let mut rec = k.record;
        // The registered uid is the one AMS knows the process by.
        if let Some((p, _)) = self.reg.table.remove(v.pid) {
            (v.uid, v.stat.uid, rec.uid) = (p.uid, p.uid, p.uid);
        }
        self.candidate_dirty = true;
        self.reg.kills.add(v.adj);
        self.announce_kill(&v, &v.stat);
        self.history.push(rec);
        self.control.kill(&rec);
    }

    /// Gives the watchdog pidfds of the least important apps (adj 1000
    /// down to 0, each list from its tail, as the victim choice walks it).
    pub(super) fn publish_candidate(&mut self) {
        self.candidate_dirty = false;
        let (table, self_pid) = (&self.reg.table, self.self_pid);
        let found = (0..=proto::OOM_ADJ_MAX)
            .rev()
            .flat_map(|adj| table.iter_adj(adj as i16))
            .filter(|p| p.pid > 1 && p.pid != self_pid)
            .filter_map(|p| Some((p.pid, p.adj as i32, table.pidfd(p.pid)?)))
            .take(watchdog::SLOTS);
        self.heartbeat.publish(found);
    }
}
