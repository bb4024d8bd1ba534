//! The kill policy: a pure function from (snapshot, pressure event,
//! tunables, carried state) to a decision. No I/O, no allocation, so it can
//! be tested on data and replayed from recorded snapshots.
//!
//! It follows lmkd's PSI strategy: the first matching row of the reason
//! table wins ([`first_match`]), then a critical PSI full stall lowers the
//! minimum adj to 0. With `use_minfree_levels` the legacy minfree table from
//! LMK_TARGET decides instead; on kernels without PSI the vmpressure levels
//! decide ([`decide_vmpressure`]). [`describe_reason`] writes a reason with
//! its figures in lmkd's words.
//!
//! Judgement calls where lmkd's behaviour leaves room:
//! - The first call only records baselines (reclaim counters, refaults,
//!   file LRU) instead of comparing with zeros; it may still kill on the
//!   watermarks or a full stall.
//! - Ours: on a trigger event, the bail-out on quiet counters (nothing
//!   reclaimed or refaulted since the last call, as lmkd) needs the last
//!   call to be at least a fast re-check ago; counters read sooner had no
//!   time to move. Re-checks bail out as lmkd's do, but when free memory
//!   is about to reach low with swap low (the look ahead below).
//! - Direct reclaim duration runs from the first sample that saw
//!   `pgscan_direct` move and ends at the first sample where it did not.
//! - The file cache check is armed by a thrashing kill actually carried out
//!   (`State::on_kill`), not by a thrashing decision that found no victim.
//! - Polling is fast while swap is low and on the cycle right after a kill;
//!   ours: also while free swap, falling as it last fell, would turn low
//!   before a slow re-check.
//!   A kill starts or extends the polling window when it is made, not when
//!   it is decided: one that finds no victim is no kill (as in lmkd).
//! - The decayed thrashing limit returns to `thrashing_limit` whenever a 1 s
//!   thrashing window closes (as lmkd does); kills restart the window.
//! - Ours: with `psi_early_stall_ms` a second `some` trigger fires early
//!   ([`Pressure::Early`]). Until lmkd's own trigger (`psi_partial_stall_ms`)
//!   or the `full` one fires, only the rows that need swap to be low may
//!   kill (see [`State::lmkd_would_look`]); an early event's polling second
//!   is extended only while swap is low or around a kill, and re-checks
//!   only every 500 ms while free swap, falling as it last fell, would stay
//!   above its low mark for another second ([`PollInterval::Lazy`]).
//!   Ours, on by default (`anticipate_partial_trigger`): the gate also
//!   opens once the stall since an early event reaches lmkd's threshold by
//!   the daemon's own count, before the kernel's next trigger check
//!   delivers lmkd's event ([`State::lmkds_threshold_reached`]).
//! - Ours: with swap low, LOW_MEM_AND_SWAP may kill ahead of the low
//!   watermark by as long as the last victim took to exit
//!   (`kill_ahead_ms`; see [`State::low_ahead`]).
//! - Snapshot parts the kernel did not give (see `snapshot::Known`) read as
//!   zero counters that never move; without PSI figures the critical stall
//!   override and the stall-since-last-kill gate are off.

mod describe;
mod kill_reason;
mod minfree;
mod vmpressure;

pub use describe::describe_reason;
pub use kill_reason::KillReason;
use minfree::decide_minfree;
pub use vmpressure::{decide_vmpressure, mem_pressure_pct, VmPressureLevel};

use crate::config::Config;
use crate::proto::TargetTable;
use crate::snapshot::{MemInfo, Snapshot, Watermarks};

/// lmkd's PERCEPTIBLE_APP_ADJ + 1: the floor that spares perceptible apps.
pub const ABOVE_PERCEPTIBLE_ADJ: i32 = 201;
/// Thrashing is measured over windows of this length.
pub const THRASHING_WINDOW_MS: u64 = 1000;
/// How long re-checks go on after a pressure event (lmkd's PSI window).
pub const POLL_WINDOW_MS: u64 = 1000;
/// An early window re-checks lazily while swap could not run low within
/// this long at the rate free swap last fell (see [`PollInterval::Lazy`]).
pub const SWAP_HORIZON_MS: u64 = 1000;
/// With no reclaim counter moving, the look ahead (`kill_ahead_ms`) goes
/// only this far, and only when the interval before fell as fast: a burst
/// that stops looks like one that goes on. In the VM app-switch an app
/// took 1.9 MB in 11 ms, 18 MB above low, and stopped 1.2 MB later (with
/// the last exit's 112 ms as the horizon, a kill); in a launch storm,
/// after 150 ms of no change, 3 MB in 13 ms 4.6 MB above low was the last
/// of it (one interval alone made that a sixth kill where five do).
pub const QUIET_AHEAD_MS: u64 = 50;

/// What woke the policy up. The discriminants are the control socket's
/// counter slots (`control::shared::LEVELS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pressure {
    /// PSI `some` trigger at `psi_partial_stall_ms` fired (lmkd's).
    Partial,
    /// PSI `full` trigger fired.
    Complete,
    /// Timer re-check inside the polling window after an event.
    Poll,
    /// Ours: PSI `some` trigger at `psi_early_stall_ms` fired, below
    /// lmkd's threshold.
    Early,
}

impl Pressure {
    /// An event of lmkd's own triggers: what lmkd would wake up for.
    pub fn is_lmkds(self) -> bool {
        matches!(self, Pressure::Partial | Pressure::Complete)
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
    /// Beyond lmkd, off by default: LOW_MEM waits while the inactive file
    /// LRU alone covers the high watermark.
    pub wait_for_inactive_file: bool,
    /// Beyond lmkd, on by default: with swap low, direct reclaim counts as
    /// free memory below min (see [`first_match`]).
    pub direct_reclaim_below_min: bool,
    /// Beyond lmkd: how long after a kill, while its victim has not exited,
    /// direct reclaim does not count as below min (ms; see [`first_match`]).
    pub direct_reclaim_exit_wait_ms: u32,
    /// Beyond lmkd: how far ahead of the low watermark a swap-low kill may
    /// look (ms; 0 = off; see [`first_match`]).
    pub kill_ahead_ms: u32,
    /// Beyond lmkd: re-checks come fast for this long after a kill (ms;
    /// 0 = off; see [`State::in_kill_aftermath`]).
    pub fast_after_kill_ms: u32,
    /// vmpressure strategy: min adj per level (`low`, `medium`, `critical`;
    /// above 1000 = that level never kills).
    pub vmpressure_adj: [i32; 3],
    /// `critical_upgrade`: raise a level while memcg swapping is heavy.
    pub critical_upgrade: bool,
    /// `upgrade_pressure` (percent of memsw usage that is RAM).
    pub upgrade_pressure: u32,
    /// `downgrade_pressure` (percent): above it, with swap to spare, ignore.
    pub downgrade_pressure: u32,
    /// `ro.config.low_ram`: vmpressure kills without the low-level free
    /// memory check.
    pub low_ram_device: bool,
    /// Beyond lmkd: `psi_early_stall_ms` when in effect (0 = off; see
    /// [`State::lmkd_would_look`]).
    pub early_stall_ms: u32,
    /// Beyond lmkd, on by default (`anticipate_partial_trigger`): lmkd's
    /// `psi_partial_stall_ms` when on, else 0. The gate then opens once the
    /// stall since an early event covers the gap up to it (see
    /// [`State::lmkds_threshold_reached`]).
    pub anticipate_partial_ms: u32,
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
            direct_reclaim_below_min: c.direct_reclaim_below_min,
            direct_reclaim_exit_wait_ms: c.direct_reclaim_exit_wait_ms,
            kill_ahead_ms: c.kill_ahead_ms,
            fast_after_kill_ms: c.fast_after_kill_ms,
            vmpressure_adj: [c.low, c.medium, c.critical],
            critical_upgrade: c.critical_upgrade,
            upgrade_pressure: c.upgrade_pressure,
            downgrade_pressure: c.downgrade_pressure,
            low_ram_device: c.low_ram,
            early_stall_ms: c.early_stall_ms(),
            anticipate_partial_ms: if c.anticipate_partial_trigger {
                c.psi_partial_stall_ms
            } else {
                0
            },
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

impl WmarkLevel {
    /// Where `free_kb` stands against the watermark sums.
    pub fn of(free_kb: u64, wm: &Watermarks) -> WmarkLevel {
        if free_kb < wm.min_kb {
            WmarkLevel::BelowMin
        } else if free_kb < wm.low_kb {
            WmarkLevel::BelowLow
        } else if free_kb < wm.high_kb {
            WmarkLevel::BelowHigh
        } else {
            WmarkLevel::AboveHigh
        }
    }
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
    /// Ours (`kill_ahead_ms`): free memory is above the low watermark but,
    /// falling as it fell since the last call, would be below it within
    /// this many ms, the time the last victim took to exit; 0 = no.
    pub low_ahead_ms: u64,
    pub swap_util_pct: u32,
    /// `swap_util_max` the utilisation was compared with.
    pub swap_util_max: u32,
    pub thrashing_pct: u64,
    pub max_thrashing_pct: u64,
    /// The current (possibly decayed) thrashing limit.
    pub thrashing_limit_pct: u32,
    pub wmark: WmarkLevel,
    pub reclaim: Reclaim,
    pub file_lru_kb: u64,
    /// `filecache_min_kb` the file LRU was compared with.
    pub filecache_min_kb: u64,
    /// How long direct reclaim has been seen without a break.
    pub direct_reclaim_ms: u64,
    /// `direct_reclaim_threshold_ms` that duration was compared with.
    pub direct_reclaim_threshold_ms: u32,
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
    /// lmkd's short period: swap is low, or around a kill. Ours: also
    /// while free swap, falling at the rate it last fell, would turn low
    /// before a slow re-check. In the VM ladder the apps took the 30-50 MB
    /// a victim gave back in 100-200 ms: at lmkd's long period swap ran
    /// low, then free memory below the watermarks, up to 90 ms before a
    /// re-check saw it, with kswapd and every app in reclaim meanwhile.
    /// Also for `fast_after_kill_ms` after a kill (see
    /// [`State::in_kill_aftermath`]) and while lmkd's threshold is about
    /// to be reached (see [`State::gate_opens_within`]).
    Fast,
    /// lmkd's long period.
    Slow,
    /// Ours: in an early window (lmkd would not be looking) while free swap,
    /// falling at the rate it last fell, would stay above its low mark for
    /// [`SWAP_HORIZON_MS`]: only swap running low may kill there, so the
    /// re-checks in between would find nothing. Not while lmkd's threshold,
    /// counted since the early event, could be reached before the lazy
    /// re-check (see [`State::gate_opens_within`]): in the VM low-RAM
    /// thrash (threshold 200 ms) the first re-check after the early event
    /// saw free memory below min and the readers stalled wall to wall, and
    /// went lazily; lmkd's own event woke the daemon 230-340 ms later. In
    /// the VM camera burst the early trigger fires every second for 14 s
    /// of light refaulting: re-checking every 100 ms cost the core
    /// 0.80-1.05 s of CPU (TCG; lmkd 0.12-0.22 s), lazily 0.39-0.87 s (5
    /// runs each, alternating), with the same kills and no more stall.
    Lazy,
}

impl PollInterval {
    pub fn ms(self) -> u64 {
        match self {
            PollInterval::Fast => 10,
            PollInterval::Slow => 100,
            PollInterval::Lazy => 500,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Decision {
    pub kill: Option<Kill>,
    /// Interval for the next re-check while polling, unless a kill is sent:
    /// then the machine re-checks fast. A kill that found no victim is no
    /// kill (as in lmkd), so it must not poll fast for nothing: in the VM
    /// camera, with only apps under `lowmem_min_oom_score` left, the LOW_MEM
    /// row re-checked every 16 ms for seconds, tripling the core's CPU.
    pub poll: PollInterval,
    /// Start or extend the polling window: on a PSI event or direct reclaim
    /// (not kswapd, which can run for long without real pressure). A kill
    /// extends it when made: the machine does that when it signals.
    pub extend_poll: bool,
    pub figures: Figures,
}

/// The `some` stall since an early event (see [`State::stall_since_early`]).
#[derive(Clone, Copy, Debug)]
struct EarlyStall {
    gained_us: u64,
    since_ms: u64,
    /// What lmkd's threshold still needs (0: reached).
    to_go_us: u64,
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
    /// The last victim has not been seen to exit.
    victim_alive: bool,
    last_kill_ms: Option<u64>,
    /// PSI `full total` when the last kill was decided.
    full_total_at_kill: Option<u64>,
    last_kill_reason: Option<KillReason>,
    check_filecache: bool,
    direct_reclaim_start_ms: Option<u64>,
    /// `thrashing_limit_decay` as of the last `decide` (`on_kill` gets no
    /// tunables).
    decay_pct: u32,
    /// vmpressure: MemFree range seen at low-level events.
    vmp: vmpressure::LowLevelMemory,
    /// Until when lmkd would still be looking: its polling window after
    /// the last event of its own triggers (the early gate's state).
    lmkd_looks_until_ms: u64,
    /// The last early event while the gate was closed: its snapshot time
    /// and PSI `some` total (see [`State::lmkds_threshold_reached`]).
    early_event: Option<(u64, u64)>,
    /// Free swap (as lmkd counts it) and the snapshot time at the last
    /// call, for the rate it falls at.
    prev_free_swap: Option<(u64, u64)>,
    /// Free memory (as compared with the watermarks) and the snapshot time
    /// at the last call, for `kill_ahead_ms`.
    prev_free: Option<(u64, u64)>,
    /// How long the last victim took from its kill to the call after it
    /// (the machine makes that call when the victim has exited).
    victim_exit_ms: u64,
    /// Whether free memory, falling as it fell up to the last call, was
    /// within [`QUIET_AHEAD_MS`] of low then.
    fast_fall: bool,
}

impl State {
    pub fn new() -> State {
        State::default()
    }

    /// Starts a call of either strategy: takes the tunables `on_kill` needs
    /// and returns whether a kill was carried out since the last call.
    fn begin(&mut self, t: &Tunables) -> bool {
        self.decay_pct = t.thrashing_limit_decay.min(100);
        std::mem::take(&mut self.killed)
    }

    /// Called when a kill was actually carried out: next call may report
    /// PRESSURE_AFTER_KILL and resets the thrashing base; a thrashing kill
    /// decays the limit and arms the file cache check.
    pub fn on_kill(&mut self, snap: &Snapshot, kill: &Kill) {
        self.killed = true;
        self.victim_alive = true;
        // A kill made while lmkd would be looking keeps it looking for a
        // polling window, as its polling is extended by a kill.
        if snap.time_ms < self.lmkd_looks_until_ms {
            self.keep_looking(snap.time_ms);
        }
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

    /// Called when the last victim has exited.
    pub fn on_exit(&mut self) {
        self.victim_alive = false;
    }

    /// Ours (`direct_reclaim_exit_wait_ms`): the last victim has not
    /// exited, and its kill is less than that old.
    fn victim_exiting(&self, snap: &Snapshot, t: &Tunables) -> bool {
        self.victim_alive
            && self.last_kill_ms.is_some_and(|k| {
                snap.time_ms.saturating_sub(k) < u64::from(t.direct_reclaim_exit_wait_ms)
            })
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
///
/// Reads as the steps it takes: the figures of this snapshot, the reclaim
/// state, the thrashing state, then the one first-match chain of reasons
/// ([`first_match`]).
pub fn decide(
    snap: &Snapshot,
    event: Pressure,
    t: &Tunables,
    targets: &TargetTable,
    st: &mut State,
) -> Decision {
    let cycle_after_kill = st.begin(t);
    let mut fig = figures(snap, t);
    if t.use_minfree_levels {
        return decide_minfree(snap, t, targets, st, fig, cycle_after_kill);
    }

    let first = st.prime(snap, t, cycle_after_kill);
    let swap_fall = fall_since(&mut st.prev_free_swap, fig.free_swap_kb, snap.time_ms);
    let quiet = st.reclaim_state(snap, &mut fig);
    let looking = st.lmkd_would_look(snap, event, t);
    // Ours: swap about to run low, or lmkd's threshold about to be
    // reached while a held row could kill, is as urgent as swap low; the
    // re-checks after a kill while free memory is below "high" count as
    // around the kill (see [`PollInterval::Fast`]).
    let gate_soon = !looking && st.gate_opens_within(snap, t, &fig, PollInterval::Slow.ms());
    let urgent = fig.swap_low || swap_falls_low(&fig, swap_fall) || gate_soon;
    let around_kill = cycle_after_kill || st.in_kill_aftermath(snap, t, &fig);
    // Only swap running low could kill here before lmkd's trigger fires,
    // and it cannot within a second (see [`PollInterval::Lazy`]), unless
    // the gate could open before a lazy re-check. The second after a kill
    // is left out: the victim's memory coming back says nothing of how
    // fast it is taken again.
    let calm = !looking
        && !st.gate_opens_within(snap, t, &fig, PollInterval::Lazy.ms())
        && st
            .last_kill_ms
            .map_or(true, |k| snap.time_ms.saturating_sub(k) >= SWAP_HORIZON_MS)
        && swap_stays_up(&fig, swap_fall);
    let poll = psi_poll_interval(urgent, around_kill, calm);
    fig.low_ahead_ms = st.low_ahead(snap, t, &fig, cycle_after_kill, quiet);
    fig.thrashing_limit_pct = st.thrashing_limit;
    // Ours: a trigger event is the kernel's word that tasks stalled; the
    // counters, read less than a fast re-check after the last reading,
    // had no time to move, which does not gainsay it. In the VM low-RAM
    // thrash lmkd's event came 4 ms after a re-check that saw free memory
    // below min, and bailing out left the kill to the next re-check,
    // 100 ms later. Not for re-checks: with nothing moving, a timer alone
    // is no evidence (in a test with still counters and free memory below
    // min, the re-check a few ms after a kill killed again).
    let too_soon =
        event != Pressure::Poll && swap_fall.is_some_and(|(_, ms)| ms < PollInterval::Fast.ms());
    // Ours: with swap low, free memory about to reach low within the last
    // victim's exit (on still counters, within [`QUIET_AHEAD_MS`] after
    // two such intervals) is pressure before any reclaim counter moves. In the
    // VM launch storm the starting apps took 50 MB of free memory in 40 ms
    // straight from the free lists; bailing out until reclaim began put
    // every kill below min, with the apps in direct reclaim and swapping
    // for the exit that followed.
    let falling_to_low = fig.swap_low && fig.low_ahead_ms > 0;
    if quiet && !first && !too_soon && !falling_to_low && event != Pressure::Complete {
        // Nothing reclaims and nothing refaults: no memory pressure to act
        // on until these counters move (lmkd bails out the same way).
        fig.max_thrashing_pct = st.max_thrashing;
        return Decision {
            kill: None,
            poll,
            extend_poll: event != Pressure::Poll,
            figures: fig,
        };
    }
    st.thrashing_state(snap, t, &mut fig);
    fig.critical_stall = snap.known.psi()
        && u64::from(snap.psi.full_avg10) > u64::from(t.stall_limit_critical).saturating_mul(100);

    let kill = first_match(snap, event, t, &fig, st, cycle_after_kill, looking).map(
        |(reason, min_adj)| {
            Kill {
                reason,
                // A stalled system may lose perceptible apps too.
                min_adj: if fig.critical_stall { 0 } else { min_adj },
            }
        },
    );
    // A kill extends the window when it is made (`State::on_kill` and the
    // machine), not when it is decided: one that finds no victim is no
    // kill, as in lmkd, and must not keep the re-checks going.
    let extend_poll = if looking {
        event != Pressure::Poll || fig.reclaim == Reclaim::Direct
    } else {
        // An early event opens a polling second as lmkd's do, so that swap
        // running low is seen at once; its re-checks extend it only while
        // swap is low or around a kill, not for direct reclaim (which the
        // rows held back by the gate would need). Looking once per early
        // event left the VM bg-leak 1.3 s gaps in which swap ran low
        // unseen (stall 0.55x of lmkd's threshold, against 0.33x). Under a
        // long light stall the re-checks go lazily (`PollInterval::Lazy`).
        event != Pressure::Poll || fig.swap_low
    };
    if looking && extend_poll {
        st.keep_looking(snap.time_ms);
    }
    Decision {
        kill,
        poll,
        extend_poll,
        figures: fig,
    }
}

/// How far a figure fell (kB, 0 if it rose) and in how many ms since the
/// last call, which `prev` keeps; None on the first call.
fn fall_since(prev: &mut Option<(u64, u64)>, kb: u64, ms: u64) -> Option<(u64, u64)> {
    let (prev_kb, prev_ms) = prev.replace((kb, ms))?;
    Some((prev_kb.saturating_sub(kb), ms.saturating_sub(prev_ms)))
}

/// Whether a figure `margin_kb` above its mark, falling as it fell
/// (`fall`: kB in ms), would reach the mark within `horizon_ms`. A rise
/// never does, and two calls in one ms give no rate.
fn falls_to_mark(margin_kb: u64, (fallen_kb, ms): (u64, u64), horizon_ms: u64) -> bool {
    fallen_kb > 0 && ms > 0 && margin_kb.saturating_mul(ms) <= fallen_kb.saturating_mul(horizon_ms)
}

/// Free swap above its low mark (0 once it is low).
fn swap_margin_kb(fig: &Figures) -> u64 {
    fig.free_swap_kb.saturating_sub(fig.swap_low_kb)
}

/// Whether free swap, falling at `fall` (kB in ms since the last call),
/// would stay above its low mark for [`SWAP_HORIZON_MS`]. A rise counts as
/// no fall: free swap wanders by a few MB either way between re-checks
/// under a steady light stall. With swap already low, or after no time at
/// all (nothing is known), it does not.
fn swap_stays_up(fig: &Figures, fall: Option<(u64, u64)>) -> bool {
    let margin_kb = swap_margin_kb(fig);
    fall.is_some_and(|f| f.1 > 0 && margin_kb > 0 && !falls_to_mark(margin_kb, f, SWAP_HORIZON_MS))
}

/// Whether free swap, falling as it fell since the last call, would reach
/// its low mark before a slow re-check.
fn swap_falls_low(fig: &Figures, fall: Option<(u64, u64)>) -> bool {
    fall.is_some_and(|f| falls_to_mark(swap_margin_kb(fig), f, PollInterval::Slow.ms()))
}

/// Step 1: the figures that need no history: free memory against the
/// watermarks, swap, swap utilisation, the file LRU.
fn figures(snap: &Snapshot, t: &Tunables) -> Figures {
    let m = &snap.mem;
    let free_wmark_kb = m.free_kb.saturating_sub(m.cma_free_kb);
    let free_swap_kb = free_swap_kb(m, t);
    let swap_low_kb = m
        .swap_total_kb
        .saturating_mul(u64::from(t.swap_free_low_percentage))
        / 100;
    let swap_used = m.swap_total_kb.saturating_sub(free_swap_kb);
    let swappable = m
        .anon_kb()
        .saturating_add(m.shmem_kb)
        .saturating_add(swap_used);
    Figures {
        free_kb: m.free_kb,
        free_wmark_kb,
        free_swap_kb,
        swap_low_kb,
        swap_low: t.swap_free_low_percentage > 0 && free_swap_kb < swap_low_kb,
        // swap_used <= swappable, so the share is at most 100.
        swap_util_pct: swap_used
            .saturating_mul(100)
            .checked_div(swappable)
            .map_or(0, |p| p.min(100) as u32),
        swap_util_max: t.swap_util_max,
        wmark: WmarkLevel::of(free_wmark_kb, &snap.wm),
        file_lru_kb: snap.vm.file_lru_pages().saturating_mul(t.page_kb.max(1)),
        filecache_min_kb: t.filecache_min_kb,
        direct_reclaim_threshold_ms: t.direct_reclaim_threshold_ms,
        ..Figures::default()
    }
}

/// Free swap as lmkd counts it. Compressed swap (zram) can only take what
/// RAM can still hold, hence the cap by easy_available x ratio.
fn free_swap_kb(m: &MemInfo, t: &Tunables) -> u64 {
    if t.swap_compression_ratio > 0 {
        m.swap_free_kb.min(
            m.easy_available_kb()
                .saturating_mul(u64::from(t.swap_compression_ratio)),
        )
    } else {
        m.swap_free_kb
    }
}

impl State {
    /// Ours (`kill_ahead_ms`): the time the last victim took to exit, if
    /// free memory, falling as it fell since the last call, would reach
    /// the low watermark within it; else 0. The call after a kill measures
    /// that time (its victim's memory coming back is no rate); the first
    /// kill is never ahead, with no exit measured yet. On quiet counters
    /// at most [`QUIET_AHEAD_MS`] ahead, after two such intervals running.
    fn low_ahead(
        &mut self,
        snap: &Snapshot,
        t: &Tunables,
        fig: &Figures,
        after_kill: bool,
        quiet: bool,
    ) -> u64 {
        let fall = fall_since(&mut self.prev_free, fig.free_wmark_kb, snap.time_ms);
        let margin_kb = fig.free_wmark_kb.saturating_sub(snap.wm.low_kb);
        let within = |ms| margin_kb > 0 && fall.is_some_and(|f| falls_to_mark(margin_kb, f, ms));
        let was_fast = std::mem::replace(&mut self.fast_fall, within(QUIET_AHEAD_MS));
        if after_kill {
            if let Some(k) = self.last_kill_ms {
                self.victim_exit_ms = snap.time_ms.saturating_sub(k);
            }
            return 0;
        }
        let mut lead_ms = self.victim_exit_ms.min(u64::from(t.kill_ahead_ms));
        if quiet {
            lead_ms = if was_fast {
                lead_ms.min(QUIET_AHEAD_MS)
            } else {
                0
            };
        }
        if lead_ms > 0 && within(lead_ms) {
            lead_ms
        } else {
            0
        }
    }

    /// Baselines: the first call records every counter instead of comparing
    /// with zeros (which would look like a burst of reclaim and refaults
    /// since boot); the first call and the one after a kill open a new
    /// thrashing window. Returns whether this is the first call.
    fn prime(&mut self, snap: &Snapshot, t: &Tunables, cycle_after_kill: bool) -> bool {
        let vm = &snap.vm;
        let first = !self.primed;
        if first {
            self.primed = true;
            self.prev_pgscan_direct = vm.pgscan_direct;
            self.prev_pgscan_kswapd = vm.pgscan_kswapd;
            self.prev_pgrefill = vm.pgrefill;
            self.prev_refault = vm.workingset_refault_file;
            self.thrashing_limit = t.thrashing_limit;
        }
        if first || cycle_after_kill {
            self.file_lru_base = vm.file_lru_pages();
            self.refault_base = vm.workingset_refault_file;
            self.window_start_ms = snap.time_ms;
            self.carried_thrashing = 0;
        }
        first
    }

    /// Step 2: the reclaim state, from which counters moved since the last
    /// call, and how long direct reclaim has lasted. Returns whether the
    /// system is quiet (no reclaim, no refaults).
    fn reclaim_state(&mut self, snap: &Snapshot, fig: &mut Figures) -> bool {
        let vm = &snap.vm;
        let refault = vm.workingset_refault_file;
        fig.reclaim = if vm.pgscan_direct != self.prev_pgscan_direct {
            self.prev_pgscan_direct = vm.pgscan_direct;
            self.prev_pgscan_kswapd = vm.pgscan_kswapd;
            self.prev_pgrefill = vm.pgrefill;
            Reclaim::Direct
        } else if vm.pgscan_kswapd != self.prev_pgscan_kswapd {
            self.prev_pgscan_kswapd = vm.pgscan_kswapd;
            self.prev_pgrefill = vm.pgrefill;
            Reclaim::Kswapd
        } else if refault == self.prev_refault && vm.pgrefill != self.prev_pgrefill {
            self.prev_pgrefill = vm.pgrefill;
            Reclaim::Kswapd
        } else {
            Reclaim::None
        };
        if fig.reclaim == Reclaim::Direct {
            // Judgement call: the stall is timed from the first sample that
            // saw it, so one sample alone never counts as "stuck".
            let start = *self.direct_reclaim_start_ms.get_or_insert(snap.time_ms);
            fig.direct_reclaim_ms = snap.time_ms.saturating_sub(start);
        } else {
            self.direct_reclaim_start_ms = None;
        }
        let quiet = fig.reclaim == Reclaim::None && refault == self.prev_refault;
        self.prev_refault = refault;
        quiet
    }

    /// Whether lmkd would be evaluating now: on an event of its own
    /// triggers, and through its polling window after one (extended, as
    /// polling is, by kills and direct reclaim). Always, with the early
    /// trigger off. Rows that need swap to be low are not held back; the
    /// rest wait for this (see [`first_match`]). Taking lmkd's own trigger
    /// for the moment replaced an estimate of the last second's stall from
    /// the daemon's samples: in the VM camera burst it opened later than
    /// the kernel's trigger fired (first kill 2.7 s against 0.9 s), and a
    /// replay could not rebuild it from a recording that began mid-window.
    fn lmkd_would_look(&mut self, snap: &Snapshot, event: Pressure, t: &Tunables) -> bool {
        if t.early_stall_ms == 0 {
            return true;
        }
        if event.is_lmkds() || self.lmkds_threshold_reached(snap, t) {
            self.early_event = None;
            self.keep_looking(snap.time_ms);
        } else if event == Pressure::Early && snap.time_ms >= self.lmkd_looks_until_ms {
            self.early_event = snap
                .known
                .psi()
                .then_some((snap.time_ms, snap.psi.some_total_us));
        }
        snap.time_ms < self.lmkd_looks_until_ms
    }

    /// The `some` stall counted since the last early event, within that
    /// event's window, with `anticipate_partial_trigger` on.
    fn stall_since_early(&self, snap: &Snapshot, t: &Tunables) -> Option<EarlyStall> {
        if t.anticipate_partial_ms <= t.early_stall_ms {
            return None;
        }
        let (at_ms, some_us) = self.early_event?;
        let since_ms = snap.time_ms.checked_sub(at_ms)?;
        if since_ms >= POLL_WINDOW_MS {
            return None;
        }
        // The early event stands for early_stall_ms of the window already.
        let gap_us = u64::from(t.anticipate_partial_ms - t.early_stall_ms) * 1000;
        let gained_us = snap.psi.some_total_us.saturating_sub(some_us);
        Some(EarlyStall {
            gained_us,
            since_ms,
            to_go_us: gap_us.saturating_sub(gained_us),
        })
    }

    /// Ours (`anticipate_partial_trigger`): lmkd's `some` threshold is
    /// reached within the early event's window, by the early threshold that
    /// event crossed plus the stall counted since. The kernel checks
    /// triggers once per tenth of the window, so lmkd's event would come up
    /// to 100 ms later, with the stall going on meanwhile: in the VM 1 GiB
    /// thrash the readers stalled for all of the 100-110 ms between the
    /// early event and lmkd's.
    fn lmkds_threshold_reached(&self, snap: &Snapshot, t: &Tunables) -> bool {
        self.stall_since_early(snap, t)
            .is_some_and(|s| s.to_go_us == 0)
    }

    /// Whether lmkd's threshold could be reached before a re-check
    /// `horizon_ms` away: a row the gate holds back could kill (free memory
    /// below low, or direct reclaim), and the stall, going on as it went
    /// since the early event, would cover the rest by then. Always on the
    /// early event itself, which gives no rate yet. Within a slow re-check
    /// the re-checks come fast; within a lazy one they may not go lazily.
    fn gate_opens_within(
        &self,
        snap: &Snapshot,
        t: &Tunables,
        fig: &Figures,
        horizon_ms: u64,
    ) -> bool {
        let held_row = fig.wmark <= WmarkLevel::BelowLow || fig.reclaim == Reclaim::Direct;
        held_row
            && self.stall_since_early(snap, t).is_some_and(|s| {
                s.since_ms == 0 || falls_to_mark(s.to_go_us, (s.gained_us, s.since_ms), horizon_ms)
            })
    }

    /// Ours (`fast_after_kill_ms`): the last kill was made less than that
    /// long ago and free memory is below the high watermark. lmkd
    /// re-checks when its victim has died, then every 100 ms; below "high"
    /// kswapd is awake and free memory swings down to "low" and back as it
    /// and the survivors take turns. In the VM 1 GiB thrash lmkd's second
    /// kill came from such a dip at the moment its first victim died;
    /// lmkd-rs, first to kill, often found free memory 0.5-1.5 MB above
    /// "low" there, and the three readers left stalled for 2 s. Above
    /// "high" kswapd sleeps and a dip is the whole gap between the marks
    /// away: in the VM low-RAM thrash, where free memory stays above "high"
    /// after each kill, re-checking fast there too cost the core 450 ms of
    /// CPU against 280 (TCG), with the same four kills.
    fn in_kill_aftermath(&self, snap: &Snapshot, t: &Tunables, fig: &Figures) -> bool {
        t.fast_after_kill_ms > 0
            && fig.wmark <= WmarkLevel::BelowHigh
            && self
                .last_kill_ms
                .is_some_and(|k| snap.time_ms.saturating_sub(k) < u64::from(t.fast_after_kill_ms))
    }

    /// lmkd would poll (so look) for a polling window from `now_ms`: after
    /// an event of its triggers, a kill, or a re-check that extends it.
    fn keep_looking(&mut self, now_ms: u64) {
        self.lmkd_looks_until_ms = self
            .lmkd_looks_until_ms
            .max(now_ms.saturating_add(POLL_WINDOW_MS));
    }

    /// Step 3: the thrashing state: refaults as a share of the file LRU at
    /// the window start, plus what earlier windows carried over.
    fn thrashing_state(&mut self, snap: &Snapshot, t: &Tunables, fig: &mut Figures) {
        let refault = snap.vm.workingset_refault_file;
        let since = snap.time_ms.saturating_sub(self.window_start_ms);
        let growth = refault
            .saturating_sub(self.refault_base)
            .saturating_mul(100)
            / self.file_lru_base.saturating_add(1);
        let mut thrashing = 0u64;
        if since > THRASHING_WINDOW_MS {
            let windows = since / THRASHING_WINDOW_MS;
            // Halve per elapsed window; but keep an over-limit value from
            // the single window just closed: it means nothing could be
            // killed then, and a newly eligible process should still be.
            self.carried_thrashing = if windows > 1 || growth < u64::from(self.thrashing_limit) {
                growth.checked_shr(windows.min(64) as u32).unwrap_or(0)
            } else {
                growth
            };
            self.file_lru_base = snap.vm.file_lru_pages();
            self.refault_base = refault;
            self.window_start_ms = snap.time_ms;
            self.thrashing_limit = t.thrashing_limit;
        } else {
            thrashing = growth;
        }
        thrashing = thrashing.saturating_add(self.carried_thrashing);
        self.max_thrashing = self.max_thrashing.max(thrashing);
        fig.thrashing_pct = thrashing;
        fig.max_thrashing_pct = self.max_thrashing;
        fig.thrashing_limit_pct = self.thrashing_limit;
    }
}

/// Step 4: the reasons, in lmkd's order; the first that holds wins. Kept in
/// one piece so the order stays visible. Returns the reason and its min adj
/// before the critical-stall override. `looking`: lmkd would be evaluating
/// now (see [`State::lmkd_would_look`]).
fn first_match(
    snap: &Snapshot,
    event: Pressure,
    t: &Tunables,
    fig: &Figures,
    st: &mut State,
    cycle_after_kill: bool,
    looking: bool,
) -> Option<(KillReason, i32)> {
    let below_min = fig.wmark == WmarkLevel::BelowMin;
    let below_low = fig.wmark <= WmarkLevel::BelowLow;
    // Ours: pgscan_direct moves only when an allocation found every zone
    // below its min watermark (boost and per-zone reserves included), which
    // the summed /proc figures can miss: in the VM ladder free memory sat
    // 0.5-2 MB above the summed "high" for 2 s while the guest swapped
    // 100 MB/s and stalled, and only swap running out ended it. Not on the
    // first call after a kill: its counters span the wait for the victim.
    // Nor while the victim is still exiting (`direct_reclaim_exit_wait_ms`):
    // allocations racing its exit reclaim, but its memory is on its way. In
    // the VM app-switch such kills came 111-134 ms after a 96 MB victim's
    // signal, with free memory already 10-15 MB above where it was at the
    // kill, and took the next app out of adj order.
    let kernel_min = t.direct_reclaim_below_min
        && fig.reclaim == Reclaim::Direct
        && !cycle_after_kill
        && !st.victim_exiting(snap, t);
    let thrashing = fig.thrashing_pct;
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
    // Without PSI figures `full total` never moves: the stall since the last
    // kill cannot be measured, so it cannot hold a kill back either.
    let new_stall = !snap.known.psi()
        || st.full_total_at_kill.map_or(true, |at| {
            // The kernel delivers a trigger breach that happened during its
            // rate-limit window one window later; stall from before the
            // last kill is not a reason to kill again.
            snap.psi.full_total_us.saturating_sub(at) >= t.complete_stall_us
        });

    if cycle_after_kill && below_min {
        Some((
            KillReason::PressureAfterKill,
            t.pressure_after_kill_min_score,
        ))
    } else if event == Pressure::Complete && new_stall {
        Some((KillReason::NotResponding, 0))
    } else if fig.swap_low && thrashing > u64::from(t.thrashing_limit) {
        // The configured limit, not the decayed one: swap low is handled
        // on its own terms.
        Some((KillReason::LowSwapAndThrashing, p_adj))
    } else if fig.swap_low && (below_low || kernel_min || fig.low_ahead_ms > 0) {
        // Ours: ahead of the low watermark (`kill_ahead_ms`) when the
        // apps would take what is left before the victim could exit: in
        // the VM ladder each kill at the watermark left every app in
        // direct reclaim for the 60-115 ms its victim took.
        // The kernel's own "below min" spares no perceptible app either.
        Some((
            KillReason::LowMemAndSwap,
            if kernel_min { 0 } else { p_adj },
        ))
    } else if !looking {
        // Ours (the early gate): with swap to spare, reclaim may still
        // catch up; the rows below wait for lmkd's own trigger.
        None
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
    } else if st.check_filecache && fig.file_lru_kb < t.filecache_min_kb {
        Some((
            KillReason::LowFilecacheAfterThrashing,
            ABOVE_PERCEPTIBLE_ADJ,
        ))
    } else {
        // Past the file cache row: if it was armed, the cache has
        // recovered; stop watching it.
        st.check_filecache = false;
        if below_low && !(t.wait_for_inactive_file && cache_refills(snap, t)) {
            Some((KillReason::LowMem, t.lowmem_min_oom_score))
        } else {
            None
        }
    }
}

/// Whether the inactive file LRU alone exceeds the high watermark: kswapd
/// can then bring free memory back cheaply, and a kill frees little (a
/// reader's memory is page cache that refills at once, so killing one after
/// another over-kills). Only consulted with `wait_for_inactive_file`: lmkd
/// does not wait, and on phones waiting can hold back the commonest kill.
fn cache_refills(snap: &Snapshot, t: &Tunables) -> bool {
    snap.vm.nr_inactive_file.saturating_mul(t.page_kb.max(1)) > snap.wm.high_kb
}

/// 10 ms while swap is low (or, for the PSI strategy, about to be, or
/// lmkd's threshold about to be reached) or around a kill, else 100 ms.
fn poll_interval(urgent: bool, around_kill: bool) -> PollInterval {
    if urgent || around_kill {
        PollInterval::Fast
    } else {
        PollInterval::Slow
    }
}

/// The PSI strategy's interval: lmkd's (see [`poll_interval`]), or
/// [`PollInterval::Lazy`] in a calm early window, never around a kill.
fn psi_poll_interval(urgent: bool, around_kill: bool, calm: bool) -> PollInterval {
    if calm && !around_kill {
        PollInterval::Lazy
    } else {
        poll_interval(urgent, around_kill)
    }
}
