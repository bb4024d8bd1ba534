//! A kill reason with its figures, in the words and numbers lmkd logs, so
//! log readers (AOSP's device tests, people used to lmkd's lines) see the
//! same text. Pure formatting into any `fmt::Write`: the logger calls it off
//! the core thread, with a fixed buffer if it wants no allocation.

use core::fmt::{self, Write};

use super::{Figures, Kill, KillReason, Reclaim, WmarkLevel};

/// Write `kill`'s reason with the figures it was decided on, as lmkd words
/// it: e.g. "device is low on swap (12345kB < 67890kB) and thrashing (35%)"
/// or "min watermark is breached and swap is low (100kB < 200kB)". The
/// watermark is named as it really stands: "min" when free memory is below
/// the min watermark, else "low"; a low-memory-and-swap kill above both
/// says "direct reclaim" when that decided it, else when the low watermark
/// would be breached (`kill_ahead_ms`).
///
/// `Minfree` and `VmPressure` kills write nothing: lmkd's legacy paths log
/// their kill line without a reason.
pub fn describe_reason(w: &mut dyn Write, kill: &Kill, f: &Figures) -> fmt::Result {
    let wmark = if f.wmark == WmarkLevel::BelowMin {
        "min"
    } else {
        "low"
    };
    match kill.reason {
        KillReason::PressureAfterKill => w.write_str("min watermark is breached even after kill"),
        KillReason::NotResponding => w.write_str("device is not responding"),
        KillReason::LowSwapAndThrashing => write!(
            w,
            "device is low on swap ({}kB < {}kB) and thrashing ({}%)",
            f.free_swap_kb, f.swap_low_kb, f.thrashing_pct
        ),
        // Free memory above "low" and falling to it faster than the last
        // victim took to exit (`kill_ahead_ms`), direct reclaim aside.
        KillReason::LowMemAndSwap
            if f.wmark > WmarkLevel::BelowLow
                && f.low_ahead_ms > 0
                && f.reclaim != Reclaim::Direct =>
        {
            write!(
                w,
                "low watermark is breached within {}ms and swap is low ({}kB < {}kB)",
                f.low_ahead_ms, f.free_swap_kb, f.swap_low_kb
            )
        }
        // Free memory above "low": the kernel's direct reclaim decided it
        // (`direct_reclaim_below_min`); say so rather than name a
        // watermark that was not breached.
        KillReason::LowMemAndSwap if f.wmark > WmarkLevel::BelowLow => write!(
            w,
            "direct reclaim and swap is low ({}kB < {}kB)",
            f.free_swap_kb, f.swap_low_kb
        ),
        KillReason::LowMemAndSwap => write!(
            w,
            "{wmark} watermark is breached and swap is low ({}kB < {}kB)",
            f.free_swap_kb, f.swap_low_kb
        ),
        KillReason::LowMemAndSwapUtil => write!(
            w,
            "{wmark} watermark is breached and swap utilization is high ({}% > {}%)",
            f.swap_util_pct, f.swap_util_max
        ),
        KillReason::LowMemAndThrashing => write!(
            w,
            "{wmark} watermark is breached and thrashing ({}%)",
            f.thrashing_pct
        ),
        KillReason::DirectReclAndThrashing => write!(
            w,
            "device is in direct reclaim and thrashing ({}%)",
            f.thrashing_pct
        ),
        KillReason::DirectReclStuck => write!(
            w,
            "device is stuck in direct reclaim ({}ms > {}ms)",
            f.direct_reclaim_ms, f.direct_reclaim_threshold_ms
        ),
        KillReason::LowFilecacheAfterThrashing => write!(
            w,
            "filecache is low ({}kB < {}kB) after thrashing",
            f.file_lru_kb, f.filecache_min_kb
        ),
        KillReason::LowMem => write!(w, "{wmark} watermark is breached"),
        KillReason::Minfree | KillReason::VmPressure => Ok(()),
        KillReason::Watchdog => w.write_str(kill.reason.text()),
    }
}
