//! What the daemon remembers of its kills: per-adj counters (GETKILLCNT)
//! and the last few kill records. Owned by the core, allocated once;
//! the report side gets copies of the records and never touches these.

use crate::policy;
use crate::proto;
use crate::snapshot::{MemInfo, PsiAvg};

/// One kill, as kept in the history and handed to the report outputs (log
/// line, killinfo event). Copy and fixed-size: the core fills it without
/// formatting anything; the outputs format on their own thread.
#[derive(Clone, Copy, Debug)]
pub struct KillRecord {
    /// CLOCK_MONOTONIC of the signal, ms.
    pub time_ms: u64,
    pub pid: i32,
    pub uid: i32,
    pub adj: i32,
    /// Why, and from which adj up (the policy's decision).
    pub kill: policy::Kill,
    /// The figures the decision was made on (the reason text quotes them).
    pub figures: policy::Figures,
    /// The memory state the decision saw (killinfo carries it).
    pub mem: MemInfo,
    pub psi: PsiAvg,
    pub rss_kb: u64,
    pub swap_kb: u64,
    /// From the wakeup that read the pressure event to the return of
    /// `pidfd_send_signal`.
    pub event_to_signal_us: u64,
    /// From the signal to the pidfd becoming readable (the victim is
    /// gone); 0 until known.
    pub time_to_exit_ms: u64,
    /// Legacy minfree mode: the level's minfree, kB (0 otherwise).
    pub minfree_kb: u64,
    pub dry_run: bool,
    name: [u8; NAME_MAX],
    name_len: u8,
}

/// Longest name kept: as long as the stats packet carries (a full
/// process name from `cmdline`, not only the 15-byte comm); longer ones are
/// cut on a UTF-8 boundary.
const NAME_MAX: usize = proto::STAT_NAME_MAX;

impl KillRecord {
    /// A record with everything zero but what is given; the caller fills in
    /// the victim's figures.
    pub fn new(time_ms: u64, pid: i32, kill: policy::Kill, figures: policy::Figures) -> KillRecord {
        KillRecord {
            time_ms,
            pid,
            uid: 0,
            adj: 0,
            kill,
            figures,
            mem: MemInfo::default(),
            psi: PsiAvg::default(),
            rss_kb: 0,
            swap_kb: 0,
            event_to_signal_us: 0,
            time_to_exit_ms: 0,
            minfree_kb: 0,
            dry_run: false,
            name: [0; NAME_MAX],
            name_len: 0,
        }
    }

    pub fn set_name(&mut self, name: &[u8]) {
        let n = name.len().min(NAME_MAX);
        self.name[..n].copy_from_slice(&name[..n]);
        self.name_len = n as u8;
    }

    pub fn name(&self) -> &str {
        let b = &self.name[..self.name_len as usize];
        match std::str::from_utf8(b) {
            Ok(s) => s,
            Err(e) => std::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or(""),
        }
    }

    pub fn min_adj(&self) -> i32 {
        self.kill.min_adj
    }

    /// The statsd reason code.
    pub fn reason_code(&self) -> i32 {
        self.kill.reason.code()
    }
}

/// Kills per adj, for GETKILLCNT. Allocated once.
pub struct KillCounts {
    counts: Box<[u32; 2001]>,
}

impl Default for KillCounts {
    fn default() -> Self {
        KillCounts {
            counts: Box::new([0; 2001]),
        }
    }
}

impl KillCounts {
    pub fn add(&mut self, adj: i32) {
        if let Some(c) = self.counts.get_mut((adj - proto::OOM_ADJ_MIN) as usize) {
            *c = c.saturating_add(1);
        }
    }

    /// Kills with adj in [min, max]; 0 when min > max.
    pub fn count(&self, min: i32, max: i32) -> u32 {
        let lo = min.max(proto::OOM_ADJ_MIN);
        let hi = max.min(proto::OOM_ADJ_MAX);
        if lo > hi {
            return 0;
        }
        let range = (lo - proto::OOM_ADJ_MIN) as usize..=(hi - proto::OOM_ADJ_MIN) as usize;
        self.counts[range]
            .iter()
            .fold(0u32, |a, &c| a.saturating_add(c))
    }
}

/// The last kills, newest last. Fixed size; older ones are overwritten.
pub struct History {
    recs: Box<[Option<KillRecord>; KEPT]>,
    next: usize,
}

/// Kills `lmkctl history` can list (the control plane's ring).
pub const HISTORY: usize = 128;

/// Kills the core keeps itself: only the newest few are ever looked up
/// (a victim's exit time fills in its record); 512 bytes each, locked.
const KEPT: usize = 16;

impl Default for History {
    fn default() -> Self {
        History {
            recs: Box::new([None; KEPT]),
            next: 0,
        }
    }
}

impl History {
    pub fn push(&mut self, r: KillRecord) {
        self.recs[self.next % KEPT] = Some(r);
        self.next += 1;
    }

    /// Fills in the time to exit of the newest record for `pid`.
    pub fn set_exit(&mut self, pid: i32, ms: u64) {
        if let Some(r) = self.iter_mut_rev().find(|r| r.pid == pid) {
            r.time_to_exit_ms = ms;
        }
    }

    fn iter_mut_rev(&mut self) -> impl Iterator<Item = &mut KillRecord> {
        let n = self.next;
        let (a, b) = self.recs.split_at_mut(n % KEPT);
        a.iter_mut().rev().chain(b.iter_mut().rev()).flatten()
    }

    /// Oldest to newest.
    pub fn iter(&self) -> impl Iterator<Item = &KillRecord> {
        let (a, b) = self.recs.split_at(self.next % KEPT);
        b.iter().chain(a.iter()).flatten()
    }

    pub fn total(&self) -> usize {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_counts_ranges() {
        let mut k = KillCounts::default();
        k.add(900);
        k.add(900);
        k.add(0);
        k.add(-1000);
        k.add(1000);
        k.add(5000); // ignored
        assert_eq!(k.count(-1000, 1000), 5);
        assert_eq!(k.count(900, 900), 2);
        assert_eq!(k.count(1, 899), 0);
        assert_eq!(k.count(100, 0), 0);
        assert_eq!(k.count(i32::MIN, i32::MAX), 5);
    }

    #[test]
    fn history_wraps_and_updates() {
        let kill = policy::Kill {
            reason: policy::KillReason::LowMem,
            min_adj: 0,
        };
        let mut h = History::default();
        for pid in 0..(KEPT as i32 + 5) {
            h.push(KillRecord::new(
                pid as u64,
                pid,
                kill,
                policy::Figures::default(),
            ));
        }
        assert_eq!(h.iter().count(), KEPT);
        assert_eq!(h.iter().next().unwrap().pid, 5);
        h.set_exit(KEPT as i32 + 4, 42);
        assert_eq!(h.iter().last().unwrap().time_to_exit_ms, 42);
    }

    #[test]
    fn names_are_cut_on_a_char_boundary() {
        let kill = policy::Kill {
            reason: policy::KillReason::LowMem,
            min_adj: 0,
        };
        let mut r = KillRecord::new(0, 1, kill, policy::Figures::default());
        // 127 bytes hold 63 two-byte characters and half of the 64th.
        r.set_name("é".repeat(80).as_bytes());
        assert_eq!(r.name(), "é".repeat(63));
    }
}
