//! lmkd's vmpressure level strategy, for kernels without PSI: memcg v1
//! `memory.pressure_level` reports low, medium or critical, and each level
//! kills from its configured min adj (`low`, `medium`, `critical`; above
//! 1000 means the level never kills).
//!
//! As lmkd does it:
//! - Low events record the range of MemFree seen under low pressure. Except
//!   on low-RAM devices, a kill waits until free memory is below the highest
//!   MemFree seen at a low event (none seen yet: no kill).
//! - With the root memcg's usage at hand, `mem_pressure` = RAM usage x 100 /
//!   (RAM + swap) usage. With `critical_upgrade`, a level below critical
//!   goes up one while `mem_pressure < upgrade_pressure` (swapping heavily).
//!   While swap is not low, `mem_pressure > downgrade_pressure` ignores the
//!   event, and a critical event with `mem_pressure > upgrade_pressure` goes
//!   down to medium.
//! - With `use_minfree_levels` the minfree table decides, whatever the level.
//!
//! There is no stall gate here: vmpressure has no PSI totals to measure a
//! stall with, and the daemon's one-kill-at-a-time rule paces the kills.

use super::{decide_minfree, figures, poll_interval, Decision, Kill, KillReason, State, Tunables};
use crate::proto::TargetTable;
use crate::snapshot::Snapshot;

/// A memcg v1 vmpressure level, ordered from mild to severe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum VmPressureLevel {
    Low,
    Medium,
    Critical,
}

impl VmPressureLevel {
    pub const ALL: [VmPressureLevel; 3] = [
        VmPressureLevel::Low,
        VmPressureLevel::Medium,
        VmPressureLevel::Critical,
    ];

    /// The name memcg v1 and lmkd's logs use.
    pub fn name(self) -> &'static str {
        match self {
            VmPressureLevel::Low => "low",
            VmPressureLevel::Medium => "medium",
            VmPressureLevel::Critical => "critical",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn up(self) -> VmPressureLevel {
        match self {
            VmPressureLevel::Low => VmPressureLevel::Medium,
            _ => VmPressureLevel::Critical,
        }
    }

    fn down(self) -> VmPressureLevel {
        match self {
            VmPressureLevel::Critical => VmPressureLevel::Medium,
            _ => VmPressureLevel::Low,
        }
    }
}

/// `mem_pressure` from the root memcg's `memory.usage_in_bytes` and
/// `memory.memsw.usage_in_bytes`: the share of charged memory that is in
/// RAM, in percent. `None` when the swap-inclusive usage is 0.
pub fn mem_pressure_pct(mem_usage: u64, memsw_usage: u64) -> Option<u64> {
    (u128::from(mem_usage) * 100)
        .checked_div(u128::from(memsw_usage))
        .map(|p| u64::try_from(p).unwrap_or(u64::MAX))
}

/// MemFree seen at low-level events (kB).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct LowLevelMemory {
    min_free_kb: Option<u64>,
    max_free_kb: Option<u64>,
}

impl LowLevelMemory {
    fn record(&mut self, free_kb: u64) {
        if self.min_free_kb.map_or(true, |min| free_kb < min) {
            self.min_free_kb = Some(free_kb);
        }
        // Free memory at low events sometimes jumps (a stale event after
        // memory came back): growth of 10 % or more is not taken.
        let take = match self.max_free_kb {
            None => true,
            Some(max) => free_kb > max && (free_kb - max).saturating_mul(10) < max,
        };
        if take {
            self.max_free_kb = Some(free_kb);
        }
    }

    /// Whether `free_kb` is not below the highest MemFree seen at a low
    /// event. False while none was seen: lmkd starts from -1 pages and
    /// skips until its first low event, which it always watches; we watch
    /// only medium and critical, so without a low record the check stays
    /// out of the way instead of blocking every kill.
    fn not_below_max(&self, free_kb: u64) -> bool {
        self.max_free_kb.is_some_and(|max| free_kb >= max)
    }
}

impl State {
    /// The highest MemFree (kB) seen at a low-level vmpressure event.
    pub fn low_pressure_max_free_kb(&self) -> Option<u64> {
        self.vmp.max_free_kb
    }
}

/// Decide on one vmpressure event of `level`. `mem_pressure` is
/// [`mem_pressure_pct`] of the root memcg, `None` when its usage files
/// cannot be read (then the level stands as reported).
pub fn decide_vmpressure(
    level: VmPressureLevel,
    mem_pressure: Option<u64>,
    snap: &Snapshot,
    t: &Tunables,
    targets: &TargetTable,
    st: &mut State,
) -> Decision {
    let cycle_after_kill = st.begin(t);
    let fig = figures(snap, t);
    if t.use_minfree_levels {
        return decide_minfree(snap, t, targets, st, fig, cycle_after_kill);
    }
    if level == VmPressureLevel::Low {
        st.vmp.record(snap.mem.free_kb);
    }
    let kill =
        vmpressure_min_adj(level, mem_pressure, fig.swap_low, snap, t, st).map(|min_adj| Kill {
            reason: KillReason::VmPressure,
            min_adj,
        });
    Decision {
        kill,
        poll: poll_interval(fig.swap_low, cycle_after_kill),
        // vmpressure events come by themselves; lmkd does not poll for them.
        extend_poll: false,
        figures: fig,
    }
}

/// The min adj to kill from, or `None` when this event kills nobody.
fn vmpressure_min_adj(
    mut level: VmPressureLevel,
    mem_pressure: Option<u64>,
    swap_low: bool,
    snap: &Snapshot,
    t: &Tunables,
    st: &State,
) -> Option<i32> {
    const ADJ_MAX: i32 = 1000;
    let adj = |l: VmPressureLevel| t.vmpressure_adj.get(l.index()).copied();
    if adj(level)? > ADJ_MAX {
        // This level is not monitored.
        return None;
    }
    if let Some(mp) = mem_pressure {
        if t.critical_upgrade
            && level != VmPressureLevel::Critical
            && mp < u64::from(t.upgrade_pressure)
        {
            // Swapping too much: treat it as the next level.
            level = level.up();
        }
        if !swap_low {
            if mp > u64::from(t.downgrade_pressure) {
                // Enough memory in RAM and swap to spare.
                return None;
            }
            if level == VmPressureLevel::Critical && mp > u64::from(t.upgrade_pressure) {
                level = level.down();
            }
        }
    }
    if !t.low_ram_device && st.vmp.not_below_max(snap.mem.free_kb) {
        // More free memory than at low-pressure events: kill enough to get
        // back to low pressure, no more.
        return None;
    }
    adj(level).filter(|&a| a <= ADJ_MAX)
}
