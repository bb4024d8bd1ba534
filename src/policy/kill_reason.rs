//! Why a kill was decided: the reasons lmkd reports to statsd, plus our
//! legacy strategies' own.

use crate::proto::reason;

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
    /// vmpressure level strategy (kernels without PSI).
    VmPressure,
    /// The watchdog killed while the core was stuck (no statsd reason).
    Watchdog,
}

impl KillReason {
    /// The statsd code carried in the kill stats packet. `Minfree` and
    /// `VmPressure` are -1: lmkd's legacy paths report no reason either, and
    /// -1 is "unknown" in that packet.
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
            KillReason::Minfree | KillReason::VmPressure | KillReason::Watchdog => -1,
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
            KillReason::VmPressure => "memory pressure level reached its min adj",
            KillReason::Watchdog => "lmkd watchdog timed out, main loop stuck",
        }
    }

    /// Kills made because of thrashing: they arm the file cache check.
    pub(super) fn is_thrashing(self) -> bool {
        matches!(
            self,
            KillReason::LowSwapAndThrashing
                | KillReason::LowMemAndThrashing
                | KillReason::DirectReclAndThrashing
        )
    }

    /// Kills after which the thrashing limit decays (lmkd does not decay it
    /// for LOW_SWAP_AND_THRASHING, which compares against the fixed limit).
    pub(super) fn cuts_thrashing_limit(self) -> bool {
        matches!(
            self,
            KillReason::LowMemAndThrashing | KillReason::DirectReclAndThrashing
        )
    }
}
