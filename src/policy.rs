//! The kill policy: a pure function from (snapshot, pressure event,
//! tunables, carried state) to a decision. No I/O, no allocation, so it can
//! be tested on data and replayed from recorded snapshots.
//!
//! It follows /work/shared/POLICY.md (lmkd's PSI strategy): the first
//! matching row of the reason table wins, then a critical PSI full stall
//! lowers the minimum adj to 0. With `use_minfree_levels` the legacy
//! minfree table from LMK_TARGET decides instead.
//!
//! Judgement calls where POLICY.md leaves room:
//! - The first call only records baselines (reclaim counters, refaults,
//!   file LRU) instead of comparing with zeros; it may still kill on the
//!   watermarks or a full stall.
//! - Direct reclaim duration runs from the first sample that saw
//!   `pgscan_direct` move and ends at the first sample where it did not.
//! - The file cache check is armed by a thrashing kill actually carried out
//!   (`State::on_kill`), not by a thrashing decision that found no victim.
//! - Polling is fast while swap is low, when a kill is decided, and on the
//!   cycle right after a kill.
//! - The decayed thrashing limit returns to `thrashing_limit` whenever a 1 s
//!   thrashing window closes (as lmkd does); kills restart the window.

use crate::config::Config;
use crate::proto::{reason, TargetTable};
use crate::snapshot::Snapshot;

/// lmkd's PERCEPTIBLE_APP_ADJ + 1: the floor that spares perceptible apps.
pub const ABOVE_PERCEPTIBLE_ADJ: i32 = 201;
/// Thrashing is measured over windows of this length.
pub const THRASHING_WINDOW_MS: u64 = 1000;

/// What woke the policy up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pressure {
    /// PSI `some` trigger fired.
    Partial,
    /// PSI `full` trigger fired.
    Complete,
    /// Timer re-check inside the polling window after an event.
    Poll,
}

/// Why a kill was decided (lmkd's statsd reasons plus the legacy mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillReason {
    PressureAfterKill,
    NotResponding,
    LowSwapAndThrashing,
    LowMemAndSwap,
    LowMemAndThrashing,
    DirectReclAndThrashing,
    LowMemAndSwapUtil,
    LowFilecacheAfterThrashing,
    LowMem,
    DirectReclStuck,
    /// Legacy minfree mode.
    Minfree,
    /// The watchdog killed while the core was stuck (no statsd reason).
    Watchdog,
}

impl KillReason {
    /// The statsd code carried in the kill stats packet. `Minfree` is -1:
    /// lmkd's legacy path reports no reason either, and -1 is "unknown" in
    /// that packet.
    pub fn code(self) -> i32 {
        match self {
            KillReason::PressureAfterKill => reason::PRESSURE_AFTER_KILL,
            KillReason::NotResponding => reason::NOT_RESPONDING,
            KillReason::LowSwapAndThrashing => reason::LOW_SWAP_AND_THRASHING,
            KillReason::LowMemAndSwap => reason::LOW_MEM_AND_SWAP,
            KillReason::LowMemAndThrashing => reason::LOW_MEM_AND_THRASHING,
            KillReason::DirectReclAndThrashing => reason::DIRECT_RECL_AND_THRASHING,
            KillReason::LowMemAndSwapUtil => reason::LOW_MEM_AND_SWAP_UTIL,
            KillReason::LowFilecacheAfterThrashing => reason::LOW_FILECACHE_AFTER_THRASHING,
            KillReason::LowMem => reason::LOW_MEM,
            KillReason::DirectReclStuck => reason::DIRECT_RECL_STUCK,
            KillReason::Minfree | KillReason::Watchdog => -1,
        }
    }

    /// Short text for the kill line's `reason:` part.
    pub fn text(self) -> &'static str {
        match self {
            KillReason::PressureAfterKill => "free memory still below min watermark after a kill",
            KillReason::NotResponding => "memory stall, device not responding",
            KillReason::LowSwapAndThrashing => "swap low and file cache thrashing",
            KillReason::LowMemAndSwap => "free memory below low watermark and swap low",
            KillReason::LowMemAndThrashing => {
                "free memory below low watermark and file cache thrashing"
            }
            KillReason::DirectReclAndThrashing => "direct reclaim and file cache thrashing",
            KillReason::LowMemAndSwapUtil => {
                "free memory below low watermark and swap utilization high"
            }
            KillReason::LowFilecacheAfterThrashing => "file cache low after thrashing",
            KillReason::LowMem => "free memory below low watermark",
            KillReason::DirectReclStuck => "stuck in direct reclaim",
            KillReason::Minfree => "free memory and file cache below minfree level",
            KillReason::Watchdog => "lmkd watchdog timed out, main loop stuck",
        }
    }

    /// Kills made because of thrashing: they arm the file cache check.
    fn is_thrashing(self) -> bool {
        matches!(
            self,
            KillReason::LowSwapAndThrashing
                | KillReason::LowMemAndThrashing
                | KillReason::DirectReclAndThrashing
        )
    }

    /// Kills after which the thrashing limit decays (lmkd does not decay it
    /// for LOW_SWAP_AND_THRASHING, which compares against the fixed limit).
    fn cuts_thrashing_limit(self) -> bool {
        matches!(
            self,
            KillReason::LowMemAndThrashing | KillReason::DirectReclAndThrashing
        )
    }
}

/// The configuration values the policy reads, as plain integers, so the hot
/// path never touches the `Config` (which owns heap data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tunables {
    pub use_minfree_levels: bool,
    pub swap_free_low_percentage: u32,
    pub swap_compression_ratio: u32,
    /// 100 = off.
    pub swap_util_max: u32,
    pub thrashing_limit: u32,
    pub thrashing_limit_decay: u32,
    pub thrashing_limit_critical: u32,
    pub filecache_min_kb: u64,
    /// Percent of PSI full avg10; 100 = off (avg10 never exceeds 100).
    pub stall_limit_critical: u32,
    pub pressure_after_kill_min_score: i32,
    /// Already floored at [`ABOVE_PERCEPTIBLE_ADJ`].
    pub lowmem_min_oom_score: i32,
    /// 0 = off.
    pub direct_reclaim_threshold_ms: u32,
    /// psi_complete_stall_ms in us: the full stall a critical event stands for.
    pub complete_stall_us: u64,
    /// kB per page for LMK_TARGET's minfree values (the system page size).
    pub page_kb: u64,
    /// LOW_MEM waits while the inactive file cache alone covers the high
    /// watermark (ours; lmkd does not wait).
    pub wait_for_inactive_file: bool,
}

impl Tunables {
    pub fn from_config(c: &Config) -> Tunables {
        Tunables {
            use_minfree_levels: c.use_minfree_levels,
            swap_free_low_percentage: c.swap_free_low_percentage,
            swap_compression_ratio: c.swap_compression_ratio,
            swap_util_max: c.swap_util_max,
            thrashing_limit: c.thrashing_limit,
            thrashing_limit_decay: c.thrashing_limit_decay,
            thrashing_limit_critical: c.thrashing_limit_critical(),
            filecache_min_kb: c.filecache_min_kb,
            stall_limit_critical: c.stall_limit_critical,
            pressure_after_kill_min_score: c.pressure_after_kill_min_score,
            // lmkd never lets LOW_MEM reach perceptible apps.
            lowmem_min_oom_score: c.lowmem_min_oom_score.max(ABOVE_PERCEPTIBLE_ADJ),
            direct_reclaim_threshold_ms: c.direct_reclaim_threshold_ms,
            complete_stall_us: u64::from(c.psi_complete_stall_ms) * 1000,
            page_kb: (crate::snapshot::page_size() / 1024).max(1),
            wait_for_inactive_file: c.wait_for_inactive_file,
        }
    }
}

/// Which zone watermark free memory (MemFree - CmaFree) is below. Ordered
/// from worst to best, so `level <= BelowLow` means "below low".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum WmarkLevel {
    BelowMin,
    BelowLow,
    BelowHigh,
    #[default]
    AboveHigh,
}

/// What reclaim did since the previous call, from the vmstat counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reclaim {
    #[default]
    None,
    Kswapd,
    Direct,
}

/// The figures behind a decision, for the kill line and the stats packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    /// MemFree.
    pub free_kb: u64,
    /// MemFree - CmaFree: what the watermarks are compared with.
    pub free_wmark_kb: u64,
    /// min(SwapFree, easy_available x swap_compression_ratio).
    pub free_swap_kb: u64,
    /// SwapTotal x swap_free_low_percentage / 100.
    pub swap_low_kb: u64,
    pub swap_low: bool,
    pub swap_util_pct: u32,
    pub thrashing_pct: u64,
    pub max_thrashing_pct: u64,
    /// The current (possibly decayed) thrashing limit.
    pub thrashing_limit_pct: u32,
    pub wmark: WmarkLevel,
    pub reclaim: Reclaim,
    pub file_lru_kb: u64,
    /// How long direct reclaim has been seen without a break.
    pub direct_reclaim_ms: u64,
    /// PSI full avg10 above stall_limit_critical.
    pub critical_stall: bool,
    /// Legacy mode: MemFree - totalreserve (may be negative).
    pub other_free_kb: i64,
    /// Legacy mode: file pages - Shmem - Unevictable - SwapCached.
    pub other_file_kb: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kill {
    pub reason: KillReason,
    /// Only processes with oom_score_adj >= this may be killed.
    pub min_adj: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollInterval {
    Fast,
    Slow,
}

impl PollInterval {
    pub fn ms(self) -> u64 {
        match self {
            PollInterval::Fast => 10,
            PollInterval::Slow => 100,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Decision {
    pub kill: Option<Kill>,
    /// Interval for the next re-check while polling.
    pub poll: PollInterval,
    /// Start or extend the polling window: on a PSI event, a kill, or direct
    /// reclaim (not kswapd, which can run for long without real pressure).
    pub extend_poll: bool,
    pub figures: Figures,
}

/// What the policy carries from one call to the next.
#[derive(Clone, Copy, Debug, Default)]
pub struct State {
    /// The first call only records baselines.
    primed: bool,
    prev_pgscan_direct: u64,
    prev_pgscan_kswapd: u64,
    prev_pgrefill: u64,
    prev_refault: u64,
    /// Refault count and file LRU size (pages) at the start of the window.
    refault_base: u64,
    file_lru_base: u64,
    window_start_ms: u64,
    /// Thrashing carried over from earlier windows.
    carried_thrashing: u64,
    thrashing_limit: u32,
    max_thrashing: u64,
    /// A kill was carried out since the last call.
    killed: bool,
    last_kill_ms: Option<u64>,
    /// PSI `full total` when the last kill was decided.
    full_total_at_kill: Option<u64>,
    last_kill_reason: Option<KillReason>,
    check_filecache: bool,
    direct_reclaim_start_ms: Option<u64>,
    /// `thrashing_limit_decay` as of the last `decide` (`on_kill` gets no
    /// tunables).
    decay_pct: u32,
}

impl State {
    pub fn new() -> State {
        State::default()
    }

    /// Called when a kill was actually carried out: next call may report
    /// PRESSURE_AFTER_KILL and resets the thrashing base; a thrashing kill
    /// decays the limit and arms the file cache check.
    pub fn on_kill(&mut self, snap: &Snapshot, kill: &Kill) {
        self.killed = true;
        self.last_kill_ms = Some(snap.time_ms);
        self.full_total_at_kill = Some(snap.psi.full_total_us);
        self.last_kill_reason = Some(kill.reason);
        self.max_thrashing = 0;
        if kill.reason.cuts_thrashing_limit() {
            // Decay is applied to the current limit, so repeated thrashing
            // kills inside one window lower the bar step by step.
            let keep = 100u64.saturating_sub(u64::from(self.decay_pct));
            self.thrashing_limit = (u64::from(self.thrashing_limit) * keep / 100) as u32;
        }
        if kill.reason.is_thrashing() {
            self.check_filecache = true;
        }
    }

    /// The current thrashing limit (percent).
    pub fn thrashing_limit(&self) -> u32 {
        self.thrashing_limit
    }
    /// Thrashing carried over from previous windows (percent).
    pub fn carried_thrashing(&self) -> u64 {
        self.carried_thrashing
    }
    pub fn max_thrashing(&self) -> u64 {
        self.max_thrashing
    }
    pub fn checking_filecache(&self) -> bool {
        self.check_filecache
    }
    pub fn last_kill_ms(&self) -> Option<u64> {
        self.last_kill_ms
    }
    pub fn last_kill_reason(&self) -> Option<KillReason> {
        self.last_kill_reason
    }
}

/// Decide whether to kill, and from which adj up. See the module docs.
pub fn decide(
    snap: &Snapshot,
    event: Pressure,
    t: &Tunables,
    targets: &TargetTable,
    st: &mut State,
) -> Decision {
    st.decay_pct = t.thrashing_limit_decay.min(100);
    let m = &snap.mem;
    let vm = &snap.vm;
    let now = snap.time_ms;
    let page_kb = t.page_kb.max(1);
    let refault = vm.workingset_refault_file;
    let file_lru = vm.file_lru_pages();
    let cycle_after_kill = std::mem::take(&mut st.killed);

    let mut fig = Figures {
        free_kb: m.free_kb,
        free_wmark_kb: m.free_kb.saturating_sub(m.cma_free_kb),
        file_lru_kb: file_lru.saturating_mul(page_kb),
        ..Figures::default()
    };

    // Swap. Compressed swap (zram) can only take what RAM can still hold,
    // hence the cap by easy_available x ratio.
    fig.free_swap_kb = if t.swap_compression_ratio > 0 {
        m.swap_free_kb.min(
            m.easy_available_kb()
                .saturating_mul(u64::from(t.swap_compression_ratio)),
        )
    } else {
        m.swap_free_kb
    };
    fig.swap_low_kb = m
        .swap_total_kb
        .saturating_mul(u64::from(t.swap_free_low_percentage))
        / 100;
    fig.swap_low = t.swap_free_low_percentage > 0 && fig.free_swap_kb < fig.swap_low_kb;
    let swap_used = m.swap_total_kb.saturating_sub(fig.free_swap_kb);
    let swappable = m
        .anon_kb()
        .saturating_add(m.shmem_kb)
        .saturating_add(swap_used);
    // swap_used <= swappable, so the share is at most 100.
    fig.swap_util_pct = swap_used
        .saturating_mul(100)
        .checked_div(swappable)
        .map_or(0, |p| p.min(100) as u32);

    fig.wmark = if fig.free_wmark_kb < snap.wm.min_kb {
        WmarkLevel::BelowMin
    } else if fig.free_wmark_kb < snap.wm.low_kb {
        WmarkLevel::BelowLow
    } else if fig.free_wmark_kb < snap.wm.high_kb {
        WmarkLevel::BelowHigh
    } else {
        WmarkLevel::AboveHigh
    };

    if t.use_minfree_levels {
        return decide_minfree(snap, t, targets, st, fig, cycle_after_kill);
    }

    let first = !st.primed;
    if first {
        // No history yet: take this snapshot as the baseline for every
        // counter instead of comparing with zeros (which would look like a
        // burst of reclaim and refaults since boot).
        st.primed = true;
        st.prev_pgscan_direct = vm.pgscan_direct;
        st.prev_pgscan_kswapd = vm.pgscan_kswapd;
        st.prev_pgrefill = vm.pgrefill;
        st.prev_refault = refault;
        st.thrashing_limit = t.thrashing_limit;
    }
    if first || cycle_after_kill {
        st.file_lru_base = file_lru;
        st.refault_base = refault;
        st.window_start_ms = now;
        st.carried_thrashing = 0;
    }

    // Reclaim state, from which counters moved since the last call.
    fig.reclaim = if vm.pgscan_direct != st.prev_pgscan_direct {
        st.prev_pgscan_direct = vm.pgscan_direct;
        st.prev_pgscan_kswapd = vm.pgscan_kswapd;
        st.prev_pgrefill = vm.pgrefill;
        Reclaim::Direct
    } else if vm.pgscan_kswapd != st.prev_pgscan_kswapd {
        st.prev_pgscan_kswapd = vm.pgscan_kswapd;
        st.prev_pgrefill = vm.pgrefill;
        Reclaim::Kswapd
    } else if refault == st.prev_refault && vm.pgrefill != st.prev_pgrefill {
        st.prev_pgrefill = vm.pgrefill;
        Reclaim::Kswapd
    } else {
        Reclaim::None
    };
    if fig.reclaim == Reclaim::Direct {
        // Judgement call: the stall is timed from the first sample that saw
        // it, so one sample alone never counts as "stuck".
        let start = *st.direct_reclaim_start_ms.get_or_insert(now);
        fig.direct_reclaim_ms = now.saturating_sub(start);
    } else {
        st.direct_reclaim_start_ms = None;
    }
    let quiet = fig.reclaim == Reclaim::None && refault == st.prev_refault;
    st.prev_refault = refault;
    fig.thrashing_limit_pct = st.thrashing_limit;
    if quiet && !first && event != Pressure::Complete {
        // Nothing reclaims and nothing refaults: no memory pressure to act
        // on until these counters move (lmkd bails out the same way).
        fig.max_thrashing_pct = st.max_thrashing;
        return no_kill(fig, event, cycle_after_kill);
    }

    // Thrashing: refaults as a share of the file LRU at the window start,
    // plus what earlier windows carried over.
    let since = now.saturating_sub(st.window_start_ms);
    let mut thrashing = 0u64;
    if since > THRASHING_WINDOW_MS {
        let mut growth = refault.saturating_sub(st.refault_base).saturating_mul(100)
            / st.file_lru_base.saturating_add(1);
        let windows = since / THRASHING_WINDOW_MS;
        // Halve per elapsed window; but keep an over-limit value from the
        // single window just closed: it means nothing could be killed then,
        // and a newly eligible process should still be killed.
        if windows > 1 || growth < u64::from(st.thrashing_limit) {
            growth = growth.checked_shr(windows.min(64) as u32).unwrap_or(0);
        }
        st.carried_thrashing = growth;
        st.file_lru_base = file_lru;
        st.refault_base = refault;
        st.window_start_ms = now;
        st.thrashing_limit = t.thrashing_limit;
    } else {
        thrashing = refault.saturating_sub(st.refault_base).saturating_mul(100)
            / st.file_lru_base.saturating_add(1);
    }
    thrashing = thrashing.saturating_add(st.carried_thrashing);
    st.max_thrashing = st.max_thrashing.max(thrashing);
    fig.thrashing_pct = thrashing;
    fig.max_thrashing_pct = st.max_thrashing;
    fig.thrashing_limit_pct = st.thrashing_limit;

    fig.critical_stall =
        u64::from(snap.psi.full_avg10) > u64::from(t.stall_limit_critical).saturating_mul(100);

    let below_min = fig.wmark == WmarkLevel::BelowMin;
    let below_low = fig.wmark <= WmarkLevel::BelowLow;
    let critical_thrashing = thrashing >= u64::from(t.thrashing_limit_critical);
    let limit = u64::from(st.thrashing_limit);
    // "P": spare perceptible apps unless below min or thrashing critically.
    let p_adj = if below_min || critical_thrashing {
        0
    } else {
        ABOVE_PERCEPTIBLE_ADJ
    };
    // "T": spare perceptible apps unless thrashing critically.
    let t_adj = if critical_thrashing {
        0
    } else {
        ABOVE_PERCEPTIBLE_ADJ
    };

    let mut kill = if cycle_after_kill && below_min {
        Some((
            KillReason::PressureAfterKill,
            t.pressure_after_kill_min_score,
        ))
    } else if event == Pressure::Complete
        && st.full_total_at_kill.map_or(true, |at| {
            // The kernel delivers a trigger breach that happened during its
            // rate-limit window one window later; stall from before the
            // last kill is not a reason to kill again.
            snap.psi.full_total_us.saturating_sub(at) >= t.complete_stall_us
        })
    {
        Some((KillReason::NotResponding, 0))
    } else if fig.swap_low && thrashing > u64::from(t.thrashing_limit) {
        // The configured limit, not the decayed one: swap low is handled
        // on its own terms.
        Some((KillReason::LowSwapAndThrashing, p_adj))
    } else if fig.swap_low && below_low {
        Some((KillReason::LowMemAndSwap, p_adj))
    } else if below_low && t.swap_util_max < 100 && fig.swap_util_pct > t.swap_util_max {
        Some((KillReason::LowMemAndSwapUtil, 0))
    } else if below_low && thrashing > limit {
        Some((KillReason::LowMemAndThrashing, t_adj))
    } else if fig.reclaim == Reclaim::Direct && thrashing > limit {
        Some((KillReason::DirectReclAndThrashing, t_adj))
    } else if fig.reclaim == Reclaim::Direct
        && t.direct_reclaim_threshold_ms > 0
        && fig.direct_reclaim_ms > u64::from(t.direct_reclaim_threshold_ms)
    {
        Some((KillReason::DirectReclStuck, 0))
    } else {
        None
    };
    if kill.is_none() && st.check_filecache {
        if fig.file_lru_kb < t.filecache_min_kb {
            kill = Some((
                KillReason::LowFilecacheAfterThrashing,
                ABOVE_PERCEPTIBLE_ADJ,
            ));
        } else {
            // The cache has recovered: stop watching it.
            st.check_filecache = false;
        }
    }
    // Beyond lmkd: while the inactive file LRU alone exceeds the high
    // watermark, kswapd can bring free memory back cheaply and a kill frees
    // little (a reader's memory is page cache that refills at once, so
    // killing one after another over-kills). Real cache thrashing is caught
    // by the thrashing rows above instead.
    let cache_refills = vm.nr_inactive_file.saturating_mul(page_kb) > snap.wm.high_kb;
    if kill.is_none() && below_low && !cache_refills {
        kill = Some((KillReason::LowMem, t.lowmem_min_oom_score));
    }

    let kill = kill.map(|(reason, min_adj)| Kill {
        reason,
        // A stalled system may lose perceptible apps too.
        min_adj: if fig.critical_stall { 0 } else { min_adj },
    });
    Decision {
        kill,
        poll: poll_interval(fig.swap_low, kill.is_some() || cycle_after_kill),
        extend_poll: event != Pressure::Poll || kill.is_some() || fig.reclaim == Reclaim::Direct,
        figures: fig,
    }
}

/// 10 ms while swap is low or around a kill, else 100 ms.
fn poll_interval(swap_low: bool, killing: bool) -> PollInterval {
    if swap_low || killing {
        PollInterval::Fast
    } else {
        PollInterval::Slow
    }
}

fn no_kill(fig: Figures, event: Pressure, cycle_after_kill: bool) -> Decision {
    Decision {
        kill: None,
        poll: poll_interval(fig.swap_low, cycle_after_kill),
        extend_poll: event != Pressure::Poll,
        figures: fig,
    }
}

/// Legacy minfree mode. totalreserve is taken as the high watermark sum
/// (each populated zone's high + its largest protection), which is what lmkd
/// derives from zoneinfo for it.
fn decide_minfree(
    snap: &Snapshot,
    t: &Tunables,
    targets: &TargetTable,
    st: &mut State,
    mut fig: Figures,
    cycle_after_kill: bool,
) -> Decision {
    let m = &snap.mem;
    let reserve = i64::try_from(snap.wm.high_kb).unwrap_or(i64::MAX);
    fig.other_free_kb = i64::try_from(m.free_kb)
        .unwrap_or(i64::MAX)
        .saturating_sub(reserve);
    fig.other_file_kb = m
        .file_pages_kb()
        .saturating_sub(m.shmem_kb)
        .saturating_sub(m.unevictable_kb)
        .saturating_sub(m.swap_cached_kb);
    fig.max_thrashing_pct = st.max_thrashing;
    let other_file = i64::try_from(fig.other_file_kb).unwrap_or(i64::MAX);
    let page_kb = i64::try_from(t.page_kb.max(1)).unwrap_or(4);
    // Levels come in the client's order (ascending minfree from AMS); the
    // first level both figures are below sets the cut-off.
    let kill = targets
        .as_slice()
        .iter()
        .find(|l| {
            let minfree_kb = i64::from(l.minfree).saturating_mul(page_kb);
            fig.other_free_kb < minfree_kb && other_file < minfree_kb
        })
        .map(|l| Kill {
            reason: KillReason::Minfree,
            min_adj: l.adj,
        });
    Decision {
        kill,
        poll: poll_interval(fig.swap_low, kill.is_some() || cycle_after_kill),
        extend_poll: kill.is_some(),
        figures: fig,
    }
}
