//! Table-driven tests of the kill policy: one or more rows per kill reason,
//! per legacy minfree level, both sides of every threshold, multi-call
//! sequences for carried state, and rows built from the recorded fixtures.

mod common;

use lmkd::config::Config;
use lmkd::policy::{
    decide, decide_vmpressure, describe_reason, mem_pressure_pct, Decision, Figures, Kill,
    KillReason, PollInterval, Pressure, Reclaim, State, Tunables, VmPressureLevel, WmarkLevel,
    QUIET_AHEAD_MS,
};
use lmkd::proto::{reason, TargetTable};
use lmkd::snapshot::{
    parse_meminfo, parse_psi, parse_vmstat, parse_zoneinfo, Known, Snapshot, Watermarks,
};
use std::path::Path;

// Watermarks of the synthetic machine, kB.
const MIN: u64 = 10_000;
const LOW: u64 = 20_000;
const HIGH: u64 = 30_000;
const REFAULT0: u64 = 1_000_000;
const KSWAPD0: u64 = 50_000;
const DIRECT0: u64 = 7_000;
const REFILL0: u64 = 80_000;
/// File LRU pages; +1 makes the thrashing divisor 20 000, so 200 refaults
/// are exactly 1 %.
const FILE_LRU: u64 = 19_999;

/// Snapshot builder: a healthy 2 GB machine with 1 GB swap half used.
#[derive(Clone, Copy)]
struct B(Snapshot);

impl B {
    fn new() -> B {
        let mut s = Snapshot {
            wm: Watermarks {
                min_kb: MIN,
                low_kb: LOW,
                high_kb: HIGH,
            },
            ..Snapshot::default()
        };
        s.mem.mem_total_kb = 2_000_000;
        s.mem.free_kb = 100_000;
        // Large enough that the swap compression cap never bites by accident.
        s.mem.inactive_file_kb = 2_000_000;
        s.mem.swap_total_kb = 1_000_000;
        s.mem.swap_free_kb = 500_000;
        s.mem.active_anon_kb = 300_000;
        s.mem.inactive_anon_kb = 200_000;
        s.mem.shmem_kb = 10_000;
        // 20 MB inactive file: below the high watermark, so LOW_MEM is not
        // held back by a refillable cache unless a row asks for one.
        s.vm.nr_inactive_file = 5_000;
        s.vm.nr_active_file = FILE_LRU - 5_000;
        s.vm.workingset_refault_file = REFAULT0;
        s.vm.pgscan_kswapd = KSWAPD0;
        s.vm.pgscan_direct = DIRECT0;
        s.vm.pgrefill = REFILL0;
        B(s)
    }
    fn at(mut self, ms: u64) -> B {
        self.0.time_ms = ms;
        self
    }
    /// PSI `some` total: `ms` of stall counted on top of a fixed 5 s base.
    fn some_stall(mut self, ms: u64) -> B {
        self.0.psi.some_total_us = 5_000_000 + ms * 1000;
        self
    }
    fn free(mut self, kb: u64) -> B {
        self.0.mem.free_kb = kb;
        self
    }
    fn cma(mut self, kb: u64) -> B {
        self.0.mem.cma_free_kb = kb;
        self
    }
    fn swap(mut self, total: u64, free: u64) -> B {
        self.0.mem.swap_total_kb = total;
        self.0.mem.swap_free_kb = free;
        self
    }
    fn anon(mut self, kb: u64) -> B {
        self.0.mem.active_anon_kb = kb;
        self.0.mem.inactive_anon_kb = 0;
        self
    }
    fn easy(mut self, inactive_file_kb: u64) -> B {
        self.0.mem.inactive_file_kb = inactive_file_kb;
        self
    }
    /// Refaults since the baseline worth `pct` % of the file LRU.
    fn thrash(mut self, pct: u64) -> B {
        self.0.vm.workingset_refault_file = REFAULT0 + pct * 200;
        self
    }
    fn refault(mut self, n: u64) -> B {
        self.0.vm.workingset_refault_file = n;
        self
    }
    fn kswapd(mut self) -> B {
        self.0.vm.pgscan_kswapd += 1;
        self
    }
    fn direct(mut self, n: u64) -> B {
        self.0.vm.pgscan_direct = DIRECT0 + n;
        self
    }
    fn file_lru(mut self, pages: u64) -> B {
        self.0.vm.nr_inactive_file = pages;
        self.0.vm.nr_active_file = 0;
        self
    }
    fn full10(mut self, hundredths: u32) -> B {
        self.0.psi.full_avg10 = hundredths;
        self
    }
    fn file(mut self, cached: u64, buffers: u64, shmem: u64, unevictable: u64) -> B {
        self.0.mem.cached_kb = cached;
        self.0.mem.buffers_kb = buffers;
        self.0.mem.shmem_kb = shmem;
        self.0.mem.unevictable_kb = unevictable;
        self
    }
}

/// The defaults with the early gate off: the rows as lmkd has them (the
/// gate has its own tests, `early_gate_*`).
fn tun() -> Tunables {
    let mut t = Tunables::from_config(&Config::default());
    t.page_kb = 4;
    t.early_stall_ms = 0;
    t
}

fn no_targets() -> TargetTable {
    TargetTable::default()
}

/// A state that has seen the baseline snapshot at t = 0.
fn primed(t: &Tunables) -> State {
    primed_by(Pressure::Partial, t)
}

/// The same, woken by `event`.
fn primed_by(event: Pressure, t: &Tunables) -> State {
    let mut st = State::new();
    let d = decide(&B::new().0, event, t, &no_targets(), &mut st);
    assert_eq!(d.kill, None, "baseline must not kill");
    st
}

fn kill(reason: KillReason, min_adj: i32) -> Option<Kill> {
    Some(Kill { reason, min_adj })
}

struct Row {
    name: &'static str,
    t: Tunables,
    /// A kill carried out (State::on_kill) between priming and this call.
    after_kill: Option<KillReason>,
    snap: B,
    event: Pressure,
    want: Option<Kill>,
}

fn row(name: &'static str, snap: B, want: Option<Kill>) -> Row {
    Row {
        name,
        t: tun(),
        after_kill: None,
        snap,
        event: Pressure::Partial,
        want,
    }
}

impl Row {
    fn t(mut self, f: impl FnOnce(&mut Tunables)) -> Row {
        f(&mut self.t);
        self
    }
    fn after(mut self, r: KillReason) -> Row {
        self.after_kill = Some(r);
        self
    }
    fn event(mut self, e: Pressure) -> Row {
        self.event = e;
        self
    }
    fn run(&self) -> Decision {
        let mut st = primed(&self.t);
        if let Some(r) = self.after_kill {
            st.on_kill(
                &B::new().at(400).0,
                &Kill {
                    reason: r,
                    min_adj: 0,
                },
            );
        }
        decide(&self.snap.0, self.event, &self.t, &no_targets(), &mut st)
    }
}

#[test]
fn reason_table() {
    use KillReason::*;
    let now = || B::new().at(500);
    let rows = [
        // --- nothing wrong ------------------------------------------------
        row("quiet counters: no pressure to act on", now(), None),
        row(
            "quiet counters even below low: lmkd bails out too",
            now().free(LOW - 1),
            None,
        ),
        row(
            "quiet counters 4 ms after the last call: no time to move",
            B::new().at(4).free(LOW - 1),
            kill(LowMem, 701),
        ),
        row(
            "quiet counters 4 ms after the last call, on a re-check: quiet",
            B::new().at(4).free(LOW - 1),
            None,
        )
        .event(Pressure::Poll),
        row("kswapd busy, free above low", now().kswapd(), None),
        row("direct reclaim alone, no threshold", now().direct(5), None),
        row("refaults below the limit", now().thrash(50), None),
        // --- PRESSURE_AFTER_KILL ------------------------------------------
        row(
            "after kill, free < min",
            now().kswapd().free(MIN - 1),
            kill(PressureAfterKill, 100),
        )
        .t(|t| t.pressure_after_kill_min_score = 100)
        .after(LowMem),
        row(
            "after kill, free == min: plain LOW_MEM",
            now().kswapd().free(MIN),
            kill(LowMem, 701),
        )
        .after(LowMem),
        row(
            "free < min without a kill: LOW_MEM",
            now().kswapd().free(MIN - 1),
            kill(LowMem, 701),
        ),
        // --- NOT_RESPONDING -----------------------------------------------
        row("full stall event", now().kswapd(), kill(NotResponding, 0)).event(Pressure::Complete),
        row("poll is not a full stall event", now().kswapd(), None).event(Pressure::Poll),
        // --- LOW_SWAP_AND_THRASHING -----------------------------------------
        row(
            "swap low, thrashing 101",
            now().swap(1_000_000, 99_999).thrash(101),
            kill(LowSwapAndThrashing, 201),
        ),
        row(
            "swap low, thrashing == limit",
            now().swap(1_000_000, 99_999).thrash(100),
            None,
        ),
        row(
            "swap exactly at low pct, thrashing",
            now().swap(1_000_000, 100_000).thrash(101),
            None,
        ),
        row(
            "swap low, thrashing, below min: P = 0",
            now().swap(1_000_000, 0).thrash(101).free(MIN - 1),
            kill(LowSwapAndThrashing, 0),
        ),
        row(
            "swap low, thrashing 299 < critical",
            now().swap(1_000_000, 0).thrash(299),
            kill(LowSwapAndThrashing, 201),
        ),
        row(
            "swap low, thrashing == critical: P = 0",
            now().swap(1_000_000, 0).thrash(300),
            kill(LowSwapAndThrashing, 0),
        ),
        row(
            "swap pct 0 disables swap low",
            now().swap(1_000_000, 0).thrash(101),
            None,
        )
        .t(|t| t.swap_free_low_percentage = 0),
        row(
            "zram cap: easy_available x ratio makes swap low",
            now().easy(0).free(99_999).thrash(101),
            kill(LowSwapAndThrashing, 201),
        ),
        row(
            "ratio 0: SwapFree alone",
            now().easy(0).free(99_999).thrash(101),
            None,
        )
        .t(|t| t.swap_compression_ratio = 0),
        // --- LOW_MEM_AND_SWAP -----------------------------------------------
        row(
            "swap low, free < low",
            now().kswapd().swap(1_000_000, 0).free(LOW - 1),
            kill(LowMemAndSwap, 201),
        ),
        row(
            "swap low, free == low",
            now().kswapd().swap(1_000_000, 0).free(LOW),
            None,
        ),
        row(
            "swap low, free < min: P = 0",
            now().kswapd().swap(1_000_000, 0).free(MIN - 1),
            kill(LowMemAndSwap, 0),
        ),
        row(
            "no swap at all is never low",
            now().kswapd().swap(0, 0).free(LOW - 1),
            kill(LowMem, 701),
        ),
        // --- LOW_MEM_AND_SWAP_UTIL ----------------------------------------
        // used 600 000 of (anon + shmem 10 000 + used): 590 000 anon -> 50 %.
        row(
            "swap util 54 > 50",
            now()
                .kswapd()
                .swap(1_000_000, 400_000)
                .anon(500_000)
                .free(LOW - 1),
            kill(LowMemAndSwapUtil, 0),
        )
        .t(|t| t.swap_util_max = 50),
        row(
            "swap util == max",
            now()
                .kswapd()
                .swap(1_000_000, 400_000)
                .anon(590_000)
                .free(LOW - 1),
            kill(LowMem, 701),
        )
        .t(|t| t.swap_util_max = 50),
        row(
            "swap util high but free == low",
            now()
                .kswapd()
                .swap(1_000_000, 400_000)
                .anon(500_000)
                .free(LOW),
            None,
        )
        .t(|t| t.swap_util_max = 50),
        row(
            "swap_util_max 100 is off",
            now()
                .kswapd()
                .swap(1_000_000, 110_000)
                .anon(0)
                .free(LOW - 1),
            kill(LowMem, 701),
        ),
        // --- LOW_MEM_AND_THRASHING ----------------------------------------
        row(
            "free < low, thrashing 101",
            now().thrash(101).free(LOW - 1),
            kill(LowMemAndThrashing, 201),
        ),
        row(
            "free < low, thrashing == limit",
            now().thrash(100).free(LOW - 1),
            kill(LowMem, 701),
        ),
        row(
            "free == low, thrashing 101",
            now().thrash(101).free(LOW),
            None,
        ),
        row(
            "free < low, thrashing critical: T = 0",
            now().thrash(300).free(LOW - 1),
            kill(LowMemAndThrashing, 0),
        ),
        row(
            "free < min but thrashing < critical: T = 201",
            now().thrash(101).free(MIN - 1),
            kill(LowMemAndThrashing, 201),
        ),
        row(
            "CmaFree does not count as free",
            now().thrash(101).free(LOW + 5_000).cma(5_001),
            kill(LowMemAndThrashing, 201),
        ),
        // --- DIRECT_RECL_AND_THRASHING ------------------------------------
        row(
            "direct reclaim, thrashing 101",
            now().direct(1).thrash(101),
            kill(DirectReclAndThrashing, 201),
        ),
        row(
            "direct reclaim, thrashing == limit",
            now().direct(1).thrash(100),
            None,
        ),
        row(
            "kswapd only, thrashing 101",
            now().kswapd().thrash(101),
            None,
        ),
        row(
            "direct reclaim, critical thrashing",
            now().direct(1).thrash(300),
            kill(DirectReclAndThrashing, 0),
        ),
        // --- LOW_FILECACHE_AFTER_THRASHING --------------------------------
        row(
            "after thrashing kill, file LRU < filecache_min",
            now().thrash(1).file_lru(24_999),
            kill(LowFilecacheAfterThrashing, 201),
        )
        .t(|t| t.filecache_min_kb = 100_000)
        .after(LowMemAndThrashing),
        row(
            "after thrashing kill, file LRU == filecache_min",
            now().thrash(1).file_lru(25_000),
            None,
        )
        .t(|t| t.filecache_min_kb = 100_000)
        .after(LowMemAndThrashing),
        row(
            "after a LOW_MEM kill the file cache is not checked",
            now().thrash(1).file_lru(1),
            None,
        )
        .t(|t| t.filecache_min_kb = 100_000)
        .after(LowMem),
        // --- LOW_MEM ------------------------------------------------------
        row(
            "free < low",
            now().kswapd().free(LOW - 1),
            kill(LowMem, 701),
        ),
        row("free == low", now().kswapd().free(LOW), None),
        row(
            "free between low and high",
            now().kswapd().free(HIGH - 1),
            None,
        ),
        row(
            "lowmem_min_oom_score is floored at 201",
            now().kswapd().free(LOW - 1),
            kill(LowMem, 201),
        )
        .t(|t| {
            *t = Tunables::from_config(&Config {
                lowmem_min_oom_score: 0,
                psi_early_stall_ms: 0,
                ..Config::default()
            })
        }),
        // --- stall_limit_critical -----------------------------------------
        row(
            "full avg10 == limit",
            now().kswapd().free(LOW - 1).full10(2000),
            kill(LowMem, 701),
        )
        .t(|t| t.stall_limit_critical = 20),
        row(
            "full avg10 > limit: min adj 0",
            now().kswapd().free(LOW - 1).full10(2001),
            kill(LowMem, 0),
        )
        .t(|t| t.stall_limit_critical = 20),
        row(
            "limit 100 is off",
            now().kswapd().free(LOW - 1).full10(10_000),
            kill(LowMem, 701),
        ),
        row(
            "critical stall alone does not kill",
            now().kswapd().full10(9_000),
            None,
        )
        .t(|t| t.stall_limit_critical = 20),
    ];
    let mut failures = Vec::new();
    for r in &rows {
        let d = r.run();
        if d.kill != r.want {
            failures.push(format!(
                "{}: want {:?}, got {:?} ({:?})",
                r.name, r.want, d.kill, d.figures
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn direct_reclaim_stuck_at_threshold() {
    let mut t = tun();
    t.direct_reclaim_threshold_ms = 500;
    let mut st = primed(&t);
    let go = |st: &mut State, ms: u64, n: u64| {
        decide(
            &B::new().at(ms).direct(n).0,
            Pressure::Poll,
            &t,
            &no_targets(),
            st,
        )
    };
    assert_eq!(go(&mut st, 100, 1).kill, None);
    let d = go(&mut st, 600, 2);
    assert_eq!((d.kill, d.figures.direct_reclaim_ms), (None, 500));
    let d = go(&mut st, 601, 3);
    assert_eq!(d.kill, kill(KillReason::DirectReclStuck, 0));
    assert_eq!(d.figures.direct_reclaim_ms, 501);
    // A sample without direct reclaim ends the episode.
    assert_eq!(go(&mut st, 700, 3).kill, None);
    assert_eq!(go(&mut st, 1300, 4).kill, None);

    // Threshold 0 is off however long it lasts.
    let t0 = tun();
    let mut st = primed(&t0);
    for (i, ms) in [100, 5_000, 60_000].into_iter().enumerate() {
        let d = decide(
            &B::new().at(ms).direct(i as u64 + 1).0,
            Pressure::Poll,
            &t0,
            &no_targets(),
            &mut st,
        );
        assert_eq!(d.kill, None);
    }
}

#[test]
fn thrashing_carry_over_halves_per_window() {
    let t = tun();
    let mut st = primed(&t);
    let mut go = |ms: u64, refault: u64| {
        decide(
            &B::new().at(ms).refault(refault).0,
            Pressure::Poll,
            &t,
            &no_targets(),
            &mut st,
        )
        .figures
    };
    // Inside the first window: plain growth.
    assert_eq!(go(500, REFAULT0 + 50 * 200).thrashing_pct, 50);
    // Crossing the window (1001 ms > 1000): 60 % in that window, halved to
    // 30 and carried; the new window starts from zero.
    let f = go(1001, REFAULT0 + 60 * 200);
    assert_eq!(f.thrashing_pct, 30);
    assert_eq!(f.max_thrashing_pct, 50);
    // Exactly 1000 ms later is still inside the window: 10 % new + 30 carried.
    assert_eq!(go(2001, REFAULT0 + 70 * 200).thrashing_pct, 40);
    // 2 windows elapsed: the 10 % of the last one is quartered (>> 2 = 2).
    assert_eq!(go(4002, REFAULT0 + 70 * 200 + 10 * 200).thrashing_pct, 2);
    // A long quiet gap decays the carry-over to nothing.
    assert_eq!(go(100_000, REFAULT0 + 81 * 200).thrashing_pct, 0);
}

#[test]
fn over_limit_window_is_carried_whole() {
    // Over-limit thrashing that could not be acted upon in the window just
    // closed is kept, so a process that becomes eligible is still killed.
    let t = tun();
    let mut st = primed(&t);
    let d = decide(
        &B::new().at(1001).thrash(150).0,
        Pressure::Poll,
        &t,
        &no_targets(),
        &mut st,
    );
    assert_eq!(d.figures.thrashing_pct, 150);
    assert_eq!(st.carried_thrashing(), 150);
    let d = decide(
        &B::new().at(1100).thrash(151).free(LOW - 1).0,
        Pressure::Poll,
        &t,
        &no_targets(),
        &mut st,
    );
    assert_eq!(d.figures.thrashing_pct, 151);
    assert_eq!(d.kill, kill(KillReason::LowMemAndThrashing, 201));
}

#[test]
fn thrashing_limit_decays_after_thrashing_kills_and_resets() {
    let t = tun();
    let mut st = primed(&t);
    assert_eq!(st.thrashing_limit(), 100);
    // Kill 1 at 101 %: limit 100 -> 90; the base resets on the next call.
    let s = B::new().at(100).thrash(101).free(LOW - 1).0;
    let d = decide(&s, Pressure::Partial, &t, &no_targets(), &mut st);
    let k = d.kill.unwrap();
    assert_eq!(k.reason, KillReason::LowMemAndThrashing);
    st.on_kill(&s, &k);
    assert_eq!(st.thrashing_limit(), 90);
    assert_eq!(st.max_thrashing(), 0);
    // Next call: window restarts at the kill, so thrashing counts from 0.
    let d = decide(
        &B::new().at(110).thrash(101).free(LOW - 1).kswapd().0,
        Pressure::Poll,
        &t,
        &no_targets(),
        &mut st,
    );
    assert_eq!(d.figures.thrashing_pct, 0);
    assert_eq!(d.kill, kill(KillReason::LowMem, 701));
    assert_eq!(d.poll, PollInterval::Fast, "right after a kill");
    // 91 % more: above the decayed 90, so a second thrashing kill; 90 -> 81.
    let s = B::new().at(200).thrash(101 + 91).free(LOW - 1).0;
    let d = decide(&s, Pressure::Poll, &t, &no_targets(), &mut st);
    assert_eq!(d.figures.thrashing_limit_pct, 90);
    let k = d.kill.unwrap();
    assert_eq!(k.reason, KillReason::LowMemAndThrashing);
    st.on_kill(&s, &k);
    assert_eq!(st.thrashing_limit(), 81);
    assert!(st.checking_filecache());
    // A DIRECT_RECL_AND_THRASHING kill decays too; LOW_SWAP_AND_THRASHING not.
    st.on_kill(
        &s,
        &Kill {
            reason: KillReason::DirectReclAndThrashing,
            min_adj: 201,
        },
    );
    assert_eq!(st.thrashing_limit(), 72);
    st.on_kill(
        &s,
        &Kill {
            reason: KillReason::LowSwapAndThrashing,
            min_adj: 201,
        },
    );
    assert_eq!(st.thrashing_limit(), 72);
    // The limit returns to the configured value at the next window crossing.
    let _ = decide(
        &B::new().at(300).thrash(200).kswapd().0,
        Pressure::Poll,
        &t,
        &no_targets(),
        &mut st,
    );
    let d = decide(
        &B::new().at(1400).thrash(201).kswapd().kswapd().0,
        Pressure::Poll,
        &t,
        &no_targets(),
        &mut st,
    );
    assert_eq!(d.figures.thrashing_limit_pct, 100);
    assert_eq!(st.thrashing_limit(), 100);
}

#[test]
fn filecache_check_clears_once_cache_recovers() {
    let mut t = tun();
    t.filecache_min_kb = 100_000;
    let mut st = primed(&t);
    st.on_kill(
        &B::new().at(50).0,
        &Kill {
            reason: KillReason::DirectReclAndThrashing,
            min_adj: 201,
        },
    );
    let d = decide(
        &B::new().at(100).thrash(1).file_lru(1_000).0,
        Pressure::Poll,
        &t,
        &no_targets(),
        &mut st,
    );
    assert_eq!(d.kill, kill(KillReason::LowFilecacheAfterThrashing, 201));
    assert_eq!(d.figures.file_lru_kb, 4_000);
    let d = decide(
        &B::new().at(200).thrash(2).file_lru(30_000).0,
        Pressure::Poll,
        &t,
        &no_targets(),
        &mut st,
    );
    assert_eq!(d.kill, None);
    assert!(!st.checking_filecache());
    let d = decide(
        &B::new().at(300).thrash(3).file_lru(1_000).0,
        Pressure::Poll,
        &t,
        &no_targets(),
        &mut st,
    );
    assert_eq!(d.kill, None);
}

#[test]
fn pressure_after_kill_only_the_next_cycle() {
    let mut t = tun();
    t.pressure_after_kill_min_score = 300;
    let mut st = primed(&t);
    let s = B::new().at(100).kswapd().free(MIN - 1).0;
    let d = decide(&s, Pressure::Partial, &t, &no_targets(), &mut st);
    assert_eq!(d.kill, kill(KillReason::LowMem, 701));
    st.on_kill(&s, &d.kill.unwrap());
    assert_eq!(st.last_kill_ms(), Some(100));
    assert_eq!(st.last_kill_reason(), Some(KillReason::LowMem));
    let s = B::new().at(110).kswapd().kswapd().free(MIN - 1).0;
    assert_eq!(
        decide(&s, Pressure::Poll, &t, &no_targets(), &mut st).kill,
        kill(KillReason::PressureAfterKill, 300)
    );
    // No kill was carried out this time: back to LOW_MEM.
    let s = B::new().at(120).kswapd().kswapd().kswapd().free(MIN - 1).0;
    assert_eq!(
        decide(&s, Pressure::Poll, &t, &no_targets(), &mut st).kill,
        kill(KillReason::LowMem, 701)
    );
}

#[test]
fn poll_interval_rule() {
    let t = tun();
    let d = |b: B, e: Pressure| {
        let mut st = primed(&t);
        decide(&b.0, e, &t, &no_targets(), &mut st)
    };
    assert_eq!(PollInterval::Fast.ms(), 10);
    assert_eq!(PollInterval::Slow.ms(), 100);
    assert_eq!(PollInterval::Lazy.ms(), 500);
    let calm = d(B::new().at(100).kswapd(), Pressure::Partial);
    assert_eq!((calm.poll, calm.extend_poll), (PollInterval::Slow, true));
    let calm_poll = d(B::new().at(100).kswapd(), Pressure::Poll);
    assert_eq!(
        (calm_poll.poll, calm_poll.extend_poll),
        (PollInterval::Slow, false)
    );
    let swap_low = d(B::new().at(100).swap(1_000_000, 5), Pressure::Poll);
    assert_eq!((swap_low.kill, swap_low.poll), (None, PollInterval::Fast));
    assert!(swap_low.figures.swap_low);
    // A kill decided is not yet a kill made: the interval and the window
    // are those without it (the machine polls fast and extends the window
    // once the signal is sent; a kill that finds no victim is no kill).
    // The cycle after a kill polls fast.
    let mut st = primed(&t);
    let low = B::new().at(100).kswapd().free(LOW - 1).0;
    let killing = decide(&low, Pressure::Poll, &t, &no_targets(), &mut st);
    assert!(killing.kill.is_some());
    assert_eq!(
        (killing.poll, killing.extend_poll),
        (PollInterval::Slow, false)
    );
    st.on_kill(&low, &killing.kill.unwrap());
    let after = decide(
        &B::new().at(200).kswapd().free(LOW + 1).0,
        Pressure::Poll,
        &t,
        &no_targets(),
        &mut st,
    );
    assert_eq!((after.kill, after.poll), (None, PollInterval::Fast));
    let direct = d(B::new().at(100).direct(1), Pressure::Poll);
    assert_eq!(
        (direct.poll, direct.extend_poll),
        (PollInterval::Slow, true)
    );
    assert_eq!(direct.figures.reclaim, Reclaim::Direct);
}

/// Ours, `fast_after_kill_ms`: for that long after a kill is made, while
/// free memory is below "high", the re-checks come every 10 ms, so a dip
/// below "low" while kswapd and the survivors take turns is seen; a kill
/// made in that time starts it again. Above "high", and with it off
/// (lmkd), only the call after the kill comes fast.
#[test]
fn rechecks_come_fast_for_a_while_after_a_kill() {
    for window in [0, 300] {
        let mut t = tun();
        t.fast_after_kill_ms = window;
        let mut st = primed(&t);
        let mut check = |b: B, ms: u64| {
            let d = gate(&mut st, &t, b.at(ms), Pressure::Poll);
            if let Some(k) = d.kill {
                st.on_kill(&b.at(ms).0, &k);
            }
            (d.kill.map(|k| k.reason), d.poll)
        };
        let (low, above) = (B::new().free(LOW - 1), B::new().free(LOW + 500));
        let fast = if window > 0 {
            PollInterval::Fast
        } else {
            PollInterval::Slow
        };
        assert_eq!(
            check(low, 1_000),
            (Some(KillReason::LowMem), PollInterval::Slow)
        );
        // The call when the victim has died.
        assert_eq!(check(above, 1_080), (None, PollInterval::Fast));
        assert_eq!(check(above, 1_090), (None, fast), "window {window}");
        assert_eq!(check(low, 1_100), (Some(KillReason::LowMem), fast));
        assert_eq!(check(above, 1_180), (None, PollInterval::Fast));
        assert_eq!(check(above, 1_190), (None, fast), "window {window}");
        let recovered = B::new().free(HIGH);
        assert_eq!(check(recovered, 1_200), (None, PollInterval::Slow));
        assert_eq!(check(above, 1_399), (None, fast), "window {window}");
        assert_eq!(check(above, 1_400), (None, PollInterval::Slow));
    }
}

#[test]
fn figures_for_the_kill_line() {
    let t = tun();
    let mut st = primed(&t);
    let s = B::new()
        .at(500)
        .thrash(101)
        .free(LOW - 1)
        .cma(1_000)
        .swap(1_000_000, 400_000)
        .anon(500_000);
    let d = decide(&s.0, Pressure::Partial, &t, &no_targets(), &mut st);
    let f = d.figures;
    assert_eq!((f.free_kb, f.free_wmark_kb), (LOW - 1, LOW - 1_001));
    assert_eq!(
        (f.free_swap_kb, f.swap_low_kb, f.swap_low),
        (400_000, 100_000, false)
    );
    assert_eq!(f.swap_util_pct, 54);
    assert_eq!(
        (f.thrashing_pct, f.max_thrashing_pct, f.thrashing_limit_pct),
        (101, 101, 100)
    );
    assert_eq!(f.wmark, WmarkLevel::BelowLow);
    assert_eq!(f.reclaim, Reclaim::None);
    assert_eq!(f.file_lru_kb, FILE_LRU * 4);
    assert!(!f.critical_stall);
}

#[test]
fn reason_codes_and_texts() {
    use KillReason::*;
    let all = [
        (PressureAfterKill, reason::PRESSURE_AFTER_KILL),
        (NotResponding, reason::NOT_RESPONDING),
        (LowSwapAndThrashing, reason::LOW_SWAP_AND_THRASHING),
        (LowMemAndSwap, reason::LOW_MEM_AND_SWAP),
        (LowMemAndThrashing, reason::LOW_MEM_AND_THRASHING),
        (DirectReclAndThrashing, reason::DIRECT_RECL_AND_THRASHING),
        (LowMemAndSwapUtil, reason::LOW_MEM_AND_SWAP_UTIL),
        (
            LowFilecacheAfterThrashing,
            reason::LOW_FILECACHE_AFTER_THRASHING,
        ),
        (LowMem, reason::LOW_MEM),
        (DirectReclStuck, reason::DIRECT_RECL_STUCK),
        (Minfree, -1),
    ];
    for (i, (r, code)) in all.iter().enumerate() {
        assert_eq!(r.code(), *code, "{r:?}");
        assert!(!r.text().is_empty());
        for (other, _) in &all[i + 1..] {
            assert_ne!(r.text(), other.text());
        }
    }
}

// --- legacy minfree mode ----------------------------------------------------

/// AMS's usual table for a 64-bit phone, in pages.
fn ams_targets() -> TargetTable {
    TargetTable::from_slice(&lmkd::proto::AMS_PHONE_TARGETS).unwrap()
}

/// A snapshot with other_free = free - HIGH and other_file = cached.
fn minfree_snap(other_free: u64, other_file: u64) -> Snapshot {
    B::new()
        .free(other_free + HIGH)
        .file(other_file + 3_000, 1_000, 3_000, 1_000)
        .0
}

#[test]
fn minfree_levels() {
    let mut t = tun();
    t.use_minfree_levels = true;
    let targets = ams_targets();
    let run = |s: Snapshot| decide(&s, Pressure::Partial, &t, &targets, &mut State::new());
    for l in targets.as_slice() {
        let kb = l.minfree as u64 * 4;
        let d = run(minfree_snap(kb - 1, kb - 1));
        assert_eq!(d.kill, kill(KillReason::Minfree, l.adj), "level {l:?}");
        assert_eq!(
            (d.figures.other_free_kb, d.figures.other_file_kb),
            (kb as i64 - 1, kb - 1)
        );
        // At the level exactly: the next (higher) level applies, or none.
        let d = run(minfree_snap(kb, kb));
        assert_ne!(d.kill, kill(KillReason::Minfree, l.adj), "at level {l:?}");
    }
    assert_eq!(run(minfree_snap(80640 * 4, 80640 * 4)).kill, None);
    // Both must be below: plenty of file cache pushes the cut-off up.
    assert_eq!(
        run(minfree_snap(0, 60_000 * 4)).kill,
        kill(KillReason::Minfree, 950)
    );
    assert_eq!(run(minfree_snap(0, 90_000 * 4)).kill, None);
    // Free below the reserve is negative other_free, still "below".
    let d = run(B::new().free(HIGH - 5).file(0, 0, 0, 0).0);
    assert_eq!(d.figures.other_free_kb, -5);
    assert_eq!(d.kill, kill(KillReason::Minfree, 0));
    // No TARGET table yet: nothing to go by.
    let d = decide(
        &minfree_snap(0, 0),
        Pressure::Complete,
        &t,
        &no_targets(),
        &mut State::new(),
    );
    assert_eq!(d.kill, None);
    // 16 KiB pages scale the levels.
    let mut t16 = t;
    t16.page_kb = 16;
    let d = decide(
        &minfree_snap(18432 * 16 - 1, 0),
        Pressure::Partial,
        &t16,
        &targets,
        &mut State::new(),
    );
    assert_eq!(d.kill, kill(KillReason::Minfree, 0));
}

// --- rows from the recorded fixtures --------------------------------------

fn fixture_snap(dir: &str, time_ms: u64) -> Snapshot {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/proc")
        .join(dir);
    let read = |f: &str| std::fs::read(d.join(f)).unwrap();
    let mut s = Snapshot {
        time_ms,
        ..Snapshot::default()
    };
    parse_meminfo(&read("meminfo"), &mut s.mem).unwrap();
    parse_vmstat(&read("vmstat"), &mut s.vm).unwrap();
    parse_zoneinfo(&read("zoneinfo"), &mut s.wm).unwrap();
    parse_psi(&read("pressure_memory"), &mut s.psi).unwrap();
    s
}

/// A state primed on `s` at t = 0; then `s`'s reclaim and refault counters
/// are moved forward as if that much happened since.
fn primed_before(s: &mut Snapshot, t: &Tunables, direct: u64, kswapd: u64, refault: u64) -> State {
    let mut base = *s;
    base.time_ms = 0;
    let mut st = State::new();
    decide(&base, Pressure::Partial, t, &no_targets(), &mut st);
    s.vm.pgscan_direct += direct;
    s.vm.pgscan_kswapd += kswapd;
    s.vm.workingset_refault_file += refault;
    st
}

#[test]
fn fixture_rows() {
    let t = tun();
    let none = no_targets();

    // vm (recorded in the guest under the ladder): free memory is above the
    // high watermark, but zram swap counts as low: only 24 416 kB of RAM
    // (MemFree + Inactive(file)) is left to compress into, under 10% of
    // 262 140 kB, and the kernel is reclaiming directly. lmkd: without
    // thrashing that is no kill; a full stall is.
    let lmkd = Tunables {
        direct_reclaim_below_min: false,
        ..tun()
    };
    let mut s = fixture_snap("vm", 500);
    let mut st = primed_before(&mut s, &lmkd, 1000, 10, 0);
    let d = decide(&s, Pressure::Partial, &lmkd, &none, &mut st);
    assert_eq!(
        (
            d.kill,
            d.figures.wmark,
            d.figures.swap_low,
            d.figures.free_swap_kb
        ),
        (None, WmarkLevel::AboveHigh, true, 24_416)
    );
    let d = decide(&s, Pressure::Complete, &lmkd, &none, &mut st);
    assert_eq!(d.kill, kill(KillReason::NotResponding, 0));
    // Ours (the default): the direct reclaim is the kernel's own verdict
    // that memory is below its min marks, so swap low kills, down to adj 0
    // as below min.
    let mut st = primed_before(&mut s, &t, 1000, 10, 0);
    let d = decide(&s, Pressure::Partial, &t, &none, &mut st);
    assert_eq!(d.kill, kill(KillReason::LowMemAndSwap, 0));
    assert_eq!(
        described(KillReason::LowMemAndSwap, &d.figures),
        "direct reclaim and swap is low (24416kB < 26214kB)"
    );
    // Without direct reclaim (counters still) it is no kill either way.
    let mut st = primed_before(&mut s, &t, 0, 10, 0);
    assert_eq!(decide(&s, Pressure::Partial, &t, &none, &mut st).kill, None);
    // Nor on the first call after a kill: those counters moved while the
    // victim was dying. Nor while the victim has not exited, for at most
    // `direct_reclaim_exit_wait_ms` after its kill: its memory is on its
    // way back. Once it has exited (or the wait is over, or off), the
    // next interval's direct reclaim counts again.
    assert_eq!(t.direct_reclaim_exit_wait_ms, 500);
    let swap_kill = kill(KillReason::LowMemAndSwap, 0);
    // Calls after a kill at `s`'s time: (ms after it, exited before it).
    let after_kill = |t: &Tunables, calls: &[(u64, bool)]| {
        let mut s = s;
        let mut st = primed_before(&mut s, t, 0, 10, 0);
        let at = s.time_ms;
        st.on_kill(
            &s,
            &Kill {
                reason: KillReason::LowMemAndSwap,
                min_adj: 0,
            },
        );
        calls
            .iter()
            .map(|&(ms, exited)| {
                if exited {
                    st.on_exit();
                }
                s.vm.pgscan_direct += 100;
                s.time_ms = at + ms;
                decide(&s, Pressure::Poll, t, &none, &mut st).kill
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        after_kill(
            &t,
            &[(100, false), (110, false), (490, false), (500, false)]
        ),
        [None, None, None, swap_kill]
    );
    assert_eq!(
        after_kill(&t, &[(100, false), (110, false), (120, true)]),
        [None, None, swap_kill]
    );
    assert_eq!(
        after_kill(&t, &[(10, true), (20, false)]),
        [None, swap_kill]
    );
    let no_wait = Tunables {
        direct_reclaim_exit_wait_ms: 0,
        ..t
    };
    assert_eq!(
        after_kill(&no_wait, &[(100, false), (110, false)]),
        [None, swap_kill]
    );

    // small VM: swap nearly gone (zram cap: (12000 + 20000) x 1 < 52428),
    // free above high; for lmkd direct reclaim without thrashing is no
    // kill yet (ours: see the vm fixture above).
    let t = lmkd;
    let mut s = fixture_snap("small", 500);
    let mut st = primed_before(&mut s, &t, 100, 100, 0);
    let d = decide(&s, Pressure::Partial, &t, &none, &mut st);
    assert_eq!(d.kill, None);
    assert_eq!(
        (d.figures.free_swap_kb, d.figures.swap_low_kb),
        (32_000, 52_428)
    );
    assert_eq!(
        (d.figures.reclaim, d.poll),
        (Reclaim::Direct, PollInterval::Fast)
    );
    // ... the same with a full stall event.
    let mut st = primed_before(&mut s, &t, 100, 100, 0);
    assert_eq!(
        decide(&s, Pressure::Complete, &t, &none, &mut st).kill,
        kill(KillReason::NotResponding, 0)
    );
    // ... and with 12 000 refaults on 11 250 file pages (106 %).
    let mut st = primed_before(&mut s, &t, 100, 100, 12_000);
    let d = decide(&s, Pressure::Partial, &t, &none, &mut st);
    assert_eq!(d.figures.thrashing_pct, 106);
    assert_eq!(d.kill, kill(KillReason::LowSwapAndThrashing, 201));

    // host: 23 GB free, no swap: nothing to do, even in direct reclaim.
    let mut s = fixture_snap("host", 500);
    let mut st = primed_before(&mut s, &t, 10, 10, 10);
    let d = decide(&s, Pressure::Partial, &t, &none, &mut st);
    assert_eq!(
        (d.kill, d.figures.swap_low, d.figures.wmark),
        (None, false, WmarkLevel::AboveHigh)
    );

    // cma: MemFree 150 000 is above high (146 200) but 90 000 of it is CMA:
    // below min, LOW_MEM (lmkd's default: no waiting for the file cache).
    let mut s = fixture_snap("cma", 500);
    assert!(s.vm.nr_inactive_file * 4 > s.wm.high_kb);
    let mut st = primed_before(&mut s, &t, 0, 10, 0);
    let d = decide(&s, Pressure::Partial, &t, &none, &mut st);
    assert_eq!(d.figures.wmark, WmarkLevel::BelowMin);
    assert_eq!(d.kill, kill(KillReason::LowMem, 701));
    // With wait_for_inactive_file its inactive file cache alone covers the
    // high watermark, so LOW_MEM waits for kswapd; once the cache is small
    // it kills.
    let waits = Tunables {
        wait_for_inactive_file: true,
        ..t
    };
    let mut s = fixture_snap("cma", 500);
    let mut st = primed_before(&mut s, &waits, 0, 10, 0);
    let d = decide(&s, Pressure::Partial, &waits, &none, &mut st);
    assert_eq!(d.kill, None);
    let mut s = fixture_snap("cma", 500);
    s.vm.nr_inactive_file = s.wm.high_kb / 4;
    let mut st = primed_before(&mut s, &waits, 0, 10, 0);
    let d = decide(&s, Pressure::Partial, &waits, &none, &mut st);
    assert_eq!(d.kill, kill(KillReason::LowMem, 701));

    // noswap: 200 000 kB free is above high; swap never "low".
    let mut s = fixture_snap("noswap", 500);
    let mut st = primed_before(&mut s, &t, 5, 5, 5);
    let d = decide(&s, Pressure::Partial, &t, &none, &mut st);
    assert_eq!((d.kill, d.figures.swap_low), (None, false));

    // oldkernel: refaults from `workingset_refault` drive thrashing.
    let mut s = fixture_snap("oldkernel", 500);
    let lru = s.vm.file_lru_pages() + 1;
    let mut st = primed_before(&mut s, &t, 1, 0, 2 * lru);
    assert_eq!(s.vm.workingset_refault_file, 4242 + 2 * lru);
    let d = decide(&s, Pressure::Partial, &t, &none, &mut st);
    assert_eq!(d.figures.thrashing_pct, 200);
    assert_eq!(d.kill, kill(KillReason::DirectReclAndThrashing, 201));
}

#[test]
fn garbage_snapshots_do_not_panic() {
    let mut t = tun();
    let extremes = [0, 1, u64::MAX / 2, u64::MAX - 1, u64::MAX];
    let targets = ams_targets();
    let mut st = State::new();
    let mut n = 0u64;
    for &a in &extremes {
        for &b in &extremes {
            let mut s = B::new().0;
            s.mem.free_kb = a;
            s.mem.swap_total_kb = b;
            s.mem.swap_free_kb = a;
            s.mem.inactive_file_kb = b;
            s.mem.active_anon_kb = a;
            s.mem.cma_free_kb = b;
            s.vm.workingset_refault_file = a;
            s.vm.nr_inactive_file = b;
            s.vm.nr_active_file = a;
            s.vm.pgscan_direct = b;
            s.wm.high_kb = a;
            s.psi.full_avg10 = u32::MAX;
            s.time_ms = a;
            for e in [Pressure::Partial, Pressure::Complete, Pressure::Poll] {
                n += 1;
                t.use_minfree_levels = n % 2 == 0;
                t.swap_compression_ratio = u32::MAX;
                t.swap_free_low_percentage = u32::MAX;
                t.thrashing_limit_decay = u32::MAX;
                t.page_kb = u64::MAX;
                let d = decide(&s, e, &t, &targets, &mut st);
                if let Some(k) = d.kill {
                    st.on_kill(&s, &k);
                }
            }
        }
    }
}

// --- zero allocation ----------------------------------------------------

#[global_allocator]
static A: common::counting::Counting = common::counting::Counting;

#[test]
fn decide_never_allocates() {
    let mut t = tun();
    t.direct_reclaim_threshold_ms = 50;
    t.filecache_min_kb = 1_000_000;
    let targets = ams_targets();
    let snaps: Vec<Snapshot> = (0..400u64)
        .map(|i| {
            B::new()
                .at(i * 37)
                .thrash(i % 250)
                .direct(i / 3)
                .free(if i % 5 == 0 { MIN - 1 } else { LOW + i * 100 })
                .swap(1_000_000, (i * 5_000) % 1_000_000)
                .full10((i as u32 * 97) % 10_000)
                .0
        })
        .collect();
    let mut st = State::new();
    let (n, ()) = common::counting::allocations(|| {
        for (i, s) in snaps.iter().enumerate() {
            t.use_minfree_levels = i % 7 == 0;
            let e = [Pressure::Partial, Pressure::Complete, Pressure::Poll][i % 3];
            let d = decide(s, e, &t, &targets, &mut st);
            if let Some(k) = d.kill {
                st.on_kill(s, &k);
            }
            std::hint::black_box(d.kill.map(|k| (k.reason.code(), k.reason.text())));
        }
    });
    assert_eq!(n, 0, "decide/on_kill allocated");
}

/// A critical event is a kill even when the system-wide reclaim counters
/// are still (memcg reclaim does not move them), but a breach the kernel
/// held back from before the last kill is not: a new one needs a new
/// complete stall of psi_complete_stall_ms in PSI `full total`.
#[test]
fn complete_events_need_stall_since_the_last_kill() {
    let t = tun();
    let mut st = primed(&t);
    let with_full = |ms: u64, full_us: u64| {
        let mut b = B::new().at(ms);
        b.0.psi.full_total_us = full_us;
        b.0
    };
    // Quiet counters: still a kill for a complete event...
    let s = with_full(100, 5_000_000);
    let d = decide(&s, Pressure::Complete, &t, &no_targets(), &mut st);
    assert_eq!(d.kill, kill(KillReason::NotResponding, 0));
    // ...but not for a partial one.
    assert_eq!(
        decide(
            &with_full(150, 5_000_000),
            Pressure::Partial,
            &t,
            &no_targets(),
            &mut st
        )
        .kill,
        None
    );
    st.on_kill(&s, &d.kill.unwrap());
    // A late event carrying stall from before the kill: no second kill.
    let stale = with_full(2_100, 5_000_000 + t.complete_stall_us - 1);
    assert_eq!(
        decide(&stale, Pressure::Complete, &t, &no_targets(), &mut st).kill,
        None
    );
    // A full new stall since the kill: kill again.
    let fresh = with_full(4_100, 5_000_000 + t.complete_stall_us);
    assert_eq!(
        decide(&fresh, Pressure::Complete, &t, &no_targets(), &mut st).kill,
        kill(KillReason::NotResponding, 0)
    );
}

/// Beyond lmkd, only with `wait_for_inactive_file`: LOW_MEM waits while
/// the inactive file LRU alone exceeds the high watermark (kswapd refills
/// free memory from it; killing a reader of page cache frees little and
/// invites one kill after another). Off by default, as lmkd.
#[test]
fn low_mem_waits_for_a_refillable_file_cache() {
    let t = Tunables {
        wait_for_inactive_file: true,
        ..tun()
    };
    let with_inactive = |pages: u64| {
        let mut b = B::new().at(100).kswapd().free(LOW - 1);
        b.0.vm.nr_inactive_file = pages;
        b.0.vm.nr_active_file = FILE_LRU - pages;
        b.0
    };
    let d = |s: Snapshot| decide(&s, Pressure::Partial, &t, &no_targets(), &mut primed(&t)).kill;
    // 4 kB pages: HIGH / 4 pages is exactly the high watermark.
    assert_eq!(d(with_inactive(HIGH / 4)), kill(KillReason::LowMem, 701));
    assert_eq!(d(with_inactive(HIGH / 4 + 1)), None);
    // Thrashing rows still fire with a big cache.
    let mut s = with_inactive(HIGH / 2);
    s.vm.workingset_refault_file = REFAULT0 + 101 * 200;
    assert_eq!(
        decide(&s, Pressure::Partial, &t, &no_targets(), &mut primed(&t)).kill,
        kill(KillReason::LowMemAndThrashing, 201)
    );
}

/// lmkd's behaviour, the default: LOW_MEM does not wait for the file
/// cache, however big its inactive part.
#[test]
fn low_mem_does_not_wait_for_the_file_cache_by_default() {
    let t = tun();
    assert!(!Tunables::from_config(&Config::default()).wait_for_inactive_file);
    for pages in [0, HIGH / 4, HIGH / 4 + 1, FILE_LRU] {
        let mut b = B::new().at(100).kswapd().free(LOW - 1);
        b.0.vm.nr_inactive_file = pages;
        b.0.vm.nr_active_file = FILE_LRU - pages;
        assert_eq!(
            decide(&b.0, Pressure::Partial, &t, &no_targets(), &mut primed(&t)).kill,
            kill(KillReason::LowMem, 701),
            "inactive file {pages} pages"
        );
    }
}

// --- the early gate (ours) ----------------------------------------------

/// The defaults as shipped: an early `some` trigger at 50 ms beside lmkd's
/// at 70 ms, whose threshold the daemon also counts up to itself.
fn gated() -> Tunables {
    let mut t = Tunables::from_config(&Config::default());
    t.page_kb = 4;
    assert_eq!(
        (t.early_stall_ms, Config::default().psi_partial_stall_ms),
        (50, 70)
    );
    assert_eq!(t.anticipate_partial_ms, 70);
    t
}

/// The gate waiting for lmkd's events alone (`anticipate_partial_trigger`
/// off): the held rows' tests, whose snapshots carry no stall.
fn gated_on_events() -> Tunables {
    Tunables {
        anticipate_partial_ms: 0,
        ..gated()
    }
}

/// A state that has seen the baseline at t = 0 from the early trigger
/// (`primed` uses lmkd's, which would open the gate).
fn woken_early(t: &Tunables) -> State {
    primed_by(Pressure::Early, t)
}

/// One decision of the gated defaults on `b` (with kswapd moving since any
/// earlier call: the policy bails out early when nothing reclaims).
fn gate(st: &mut State, t: &Tunables, b: B, e: Pressure) -> Decision {
    let mut b = b;
    b.0.vm.pgscan_kswapd += b.0.time_ms;
    decide(&b.0, e, t, &no_targets(), st)
}

/// Woken by the early trigger with swap to spare, LOW_MEM and the
/// thrashing rows wait for lmkd's own trigger. The early event opens a
/// polling second; its re-checks do not extend it.
#[test]
fn early_gate_holds_rows_without_low_swap_until_lmkds_trigger() {
    let t = gated_on_events();
    let mut st = woken_early(&t);
    let low = B::new().kswapd().free(LOW - 1);
    let d = gate(&mut st, &t, low.at(2_100), Pressure::Early);
    assert_eq!(
        (d.kill, d.extend_poll, d.poll),
        (None, true, PollInterval::Lazy)
    );
    let d = gate(&mut st, &t, low.at(2_200), Pressure::Poll);
    assert_eq!((d.kill, d.extend_poll), (None, false));
    // Direct reclaim does not extend an early window either.
    let d = gate(&mut st, &t, low.direct(5).at(2_300), Pressure::Poll);
    assert_eq!((d.kill, d.extend_poll), (None, false));
    let d = gate(&mut st, &t, low.at(2_400), Pressure::Partial);
    assert_eq!(d.kill, kill(KillReason::LowMem, 701));
    assert!(d.extend_poll);
    let mut st = woken_early(&t);
    let thrash = B::new().kswapd().free(LOW - 1).thrash(101);
    // (Inside the thrashing window opened at priming.)
    let d = gate(&mut st, &t, thrash.at(500), Pressure::Early);
    assert_eq!(d.kill, None);
    let d = gate(&mut st, &t, thrash.at(600), Pressure::Partial);
    assert_eq!(d.kill, kill(KillReason::LowMemAndThrashing, 201));
}

/// lmkd's polling second is extended by a kill made in it, so the gate
/// stays open a second past the kill; a kill decided with no victim to
/// take is no kill and extends nothing.
#[test]
fn early_gate_stays_open_after_a_kill_made_not_one_decided() {
    let t = gated();
    let low = B::new().kswapd().free(LOW - 1);
    for made in [true, false] {
        let mut st = woken_early(&t);
        let d = gate(&mut st, &t, low.at(1_000), Pressure::Partial);
        assert_eq!(d.kill, kill(KillReason::LowMem, 701));
        let d = gate(&mut st, &t, low.at(1_900), Pressure::Poll);
        assert_eq!(d.kill, kill(KillReason::LowMem, 701));
        if made {
            st.on_kill(&low.at(1_900).0, &d.kill.unwrap());
        }
        // Past the event's second: open only if the kill was made.
        let d = gate(&mut st, &t, low.at(2_500), Pressure::Poll);
        assert_eq!(
            d.kill.is_some(),
            made,
            "kill made: {made}; decision at 2.5 s: {d:?}"
        );
    }
}

/// With swap low the gate does not hold, and the early window polls on:
/// anon memory has nowhere to go. A complete stall opens the gate too.
#[test]
fn early_gate_lets_swap_low_and_complete_stalls_through() {
    let t = gated();
    let swap_low = B::new().at(100).kswapd().free(LOW - 1).swap(1_000_000, 5);
    let d = gate(&mut woken_early(&t), &t, swap_low, Pressure::Early);
    assert_eq!(d.kill, kill(KillReason::LowMemAndSwap, 201));
    assert!(d.extend_poll);
    let d = gate(
        &mut woken_early(&t),
        &t,
        swap_low.free(HIGH),
        Pressure::Early,
    );
    assert_eq!((d.kill, d.extend_poll), (None, true));
    let thrashing = swap_low.thrash(101);
    let d = gate(&mut woken_early(&t), &t, thrashing, Pressure::Early);
    assert_eq!(d.kill, kill(KillReason::LowSwapAndThrashing, 201));
    let low = B::new().at(100).kswapd().free(LOW - 1);
    let d = gate(&mut woken_early(&t), &t, low, Pressure::Complete);
    assert_eq!(d.kill, kill(KillReason::NotResponding, 0));
    // A complete event that is no NOT_RESPONDING (its stall came before the
    // last kill) still opens the gate for the rows below.
    let mut st = woken_early(&t);
    let k = gate(&mut st, &t, low, Pressure::Complete);
    st.on_kill(&low.0, &k.kill.unwrap());
    let d = gate(&mut st, &t, low.at(3_000), Pressure::Complete);
    assert_eq!(d.kill, kill(KillReason::LowMem, 701));
}

/// The gate stays open through lmkd's polling window after its trigger:
/// 1 s, extended by a kill or by direct reclaim, as polling is.
#[test]
fn early_gate_stays_open_while_lmkd_would_poll() {
    let t = gated();
    let mut st = woken_early(&t);
    let calm = B::new().kswapd();
    let low = calm.free(LOW - 1);
    let at = |st: &mut State, b: B, ms: u64, e: Pressure| gate(st, &t, b.at(ms), e).kill;
    assert_eq!(at(&mut st, calm, 2_000, Pressure::Partial), None);
    let k = at(&mut st, low, 2_999, Pressure::Poll);
    assert_eq!(k, kill(KillReason::LowMem, 701));
    st.on_kill(&low.at(2_999).0, &k.unwrap());
    // The kill made at 2 999 ms kept the window open to 3 999 ms.
    assert_eq!(
        at(&mut st, low, 3_998, Pressure::Poll),
        kill(KillReason::LowMem, 701)
    );
    assert_eq!(at(&mut st, calm, 4_900, Pressure::Poll), None);
    // Closed now: an early event alone does not reopen it...
    assert_eq!(at(&mut st, low, 5_000, Pressure::Early), None);
    // ...but direct reclaim inside lmkd's window extends it.
    assert_eq!(at(&mut st, calm, 6_000, Pressure::Partial), None);
    assert_eq!(at(&mut st, calm.direct(3), 6_900, Pressure::Poll), None);
    assert_eq!(
        at(&mut st, low.direct(3), 7_800, Pressure::Poll),
        kill(KillReason::LowMem, 701)
    );
}

/// Ours, `anticipate_partial_trigger` (on by default): the early event crossed 50 ms
/// of stall; once 20 ms more are counted since, lmkd's 70 ms is reached and
/// the held rows may kill without waiting for the kernel to deliver lmkd's
/// event. Re-checks come fast while the stall, going on as it went, would
/// cover the rest before a slow one, and only while a held row could kill.
/// Not past the event's window, and not when off.
#[test]
fn early_gate_opens_at_lmkds_threshold_when_anticipating() {
    let low = B::new().kswapd().free(LOW - 1);
    let steps = |t: &Tunables, b: B, stalls: &[(u64, u64)]| {
        let mut st = woken_early(t);
        let mut e = Pressure::Early;
        let mut out = Vec::new();
        for &(ms, stall_ms) in stalls {
            let d = gate(&mut st, t, b.at(ms).some_stall(stall_ms), e);
            out.push((d.kill, d.poll));
            e = Pressure::Poll;
        }
        out
    };
    let t = gated();
    let fast = (None, PollInterval::Fast);
    // A wall-to-wall stall: fast re-checks, then LOW_MEM at 20 ms.
    assert_eq!(
        steps(&t, low, &[(2_000, 0), (2_010, 10), (2_020, 20)]),
        [
            fast,
            fast,
            (kill(KillReason::LowMem, 701), PollInterval::Slow)
        ]
    );
    // A light stall (5 ms in 100): no fast re-checks; reached only after
    // the event's window, which does not count.
    let light = steps(&t, low, &[(2_000, 0), (2_100, 5), (3_000, 20)]);
    assert_eq!(light[0], fast);
    assert!(
        light[1..]
            .iter()
            .all(|&(k, p)| k.is_none() && p != PollInterval::Fast),
        "{light:?}"
    );
    // Free memory above the watermarks: no held row could kill, no haste.
    let calm = steps(
        &t,
        B::new().kswapd(),
        &[(2_000, 0), (2_010, 10), (2_020, 20)],
    );
    assert!(
        calm.iter()
            .all(|&(k, p)| k.is_none() && p != PollInterval::Fast),
        "{calm:?}"
    );
    // Off: the rows wait for lmkd's own event.
    let t = gated_on_events();
    let off = steps(
        &t,
        low,
        &[(2_000, 0), (2_010, 10), (2_020, 20), (2_030, 100)],
    );
    assert!(
        off.iter()
            .all(|&(k, p)| k.is_none() && p != PollInterval::Fast),
        "{off:?}"
    );
}

/// Ours: an early window does not re-check lazily while lmkd's threshold,
/// counted since the early event, could be reached before the lazy
/// re-check and a held row could kill. With lmkd's low-RAM threshold
/// (200 ms: 150 to go after the early event) a wall-to-wall stall below
/// low re-checks at lmkd's long period: not fast (125 ms to go is not
/// covered within 100) and not lazily (it is within 500). A light stall,
/// or free memory above the marks, still goes lazily.
#[test]
fn early_window_is_not_lazy_while_lmkds_threshold_may_come_first() {
    let t = Tunables {
        anticipate_partial_ms: 200,
        ..gated()
    };
    let poll = |b: B, stall_ms: u64| {
        let mut st = woken_early(&t);
        let d = gate(&mut st, &t, b.at(2_000).some_stall(0), Pressure::Early);
        assert_eq!(d.kill, None);
        let d = gate(
            &mut st,
            &t,
            b.at(2_025).some_stall(stall_ms),
            Pressure::Poll,
        );
        assert_eq!(d.kill, None);
        d.poll
    };
    let swap = |b: B| b.swap(1_000_000, 500_000);
    let low = swap(B::new().kswapd().free(LOW - 1));
    assert_eq!(poll(low, 25), PollInterval::Slow);
    // 2 ms in 25: the 148 ms left would take 1.85 s.
    assert_eq!(poll(low, 2), PollInterval::Lazy);
    assert_eq!(poll(swap(B::new().kswapd()), 25), PollInterval::Lazy);
}

/// An early window re-checks every 500 ms while free swap, falling as it
/// last fell, would stay above its low mark (100 MB here) for a second:
/// only swap running low may kill there. Never while lmkd would be looking,
/// within a second of a kill, or with the early trigger off.
#[test]
fn early_window_rechecks_lazily_while_swap_cannot_run_low() {
    let t = gated();
    let poll = |st: &mut State, swap_free: u64, ms: u64, e: Pressure| {
        let d = gate(st, &t, B::new().swap(1_000_000, swap_free).at(ms), e);
        (d.kill, d.poll)
    };
    let lazy = (None, PollInterval::Lazy);
    let slow = (None, PollInterval::Slow);
    let mut st = woken_early(&t);
    // 400 MB above the mark and not falling; then falling 200 MB in 500 ms
    // with 200 MB left (low in 0.5 s); then 5 MB in 100 ms (3.9 s); a rise
    // reads as no fall.
    assert_eq!(poll(&mut st, 500_000, 1_000, Pressure::Early), lazy);
    // The same when nothing reclaims or refaults (the quiet bail-out).
    let mut quiet = B::new().swap(1_000_000, 500_000).at(1_100);
    quiet.0.vm.pgscan_kswapd += 1_000;
    let d = decide(&quiet.0, Pressure::Poll, &t, &no_targets(), &mut st);
    assert_eq!((d.kill, d.poll), lazy);
    assert_eq!(poll(&mut st, 300_000, 1_500, Pressure::Poll), slow);
    assert_eq!(poll(&mut st, 295_000, 1_600, Pressure::Poll), lazy);
    assert_eq!(poll(&mut st, 400_000, 2_100, Pressure::Poll), lazy);
    // Exactly a second from the mark is not more than a second.
    assert_eq!(poll(&mut st, 300_000, 2_600, Pressure::Poll), slow);
    // lmkd's trigger: its polling second is lmkd's, at lmkd's periods.
    assert_eq!(poll(&mut st, 200_000, 3_000, Pressure::Partial), slow);
    assert_eq!(poll(&mut st, 200_000, 3_900, Pressure::Poll), slow);
    assert_eq!(poll(&mut st, 200_000, 4_100, Pressure::Early), lazy);
    // Swap low: fast, and a kill.
    let d = gate(
        &mut st,
        &t,
        B::new().swap(1_000_000, 50_000).free(LOW - 1).at(4_600),
        Pressure::Poll,
    );
    assert_eq!(
        (d.kill, d.poll),
        (kill(KillReason::LowMemAndSwap, 201), PollInterval::Fast)
    );
    st.on_kill(&B::new().at(4_600).0, &d.kill.unwrap());
    // The victim's memory coming back is no sign of calm for a second.
    assert_eq!(
        poll(&mut st, 500_000, 4_700, Pressure::Poll),
        (None, PollInterval::Fast)
    );
    assert_eq!(poll(&mut st, 500_000, 5_000, Pressure::Early), slow);
    assert_eq!(poll(&mut st, 500_000, 5_599, Pressure::Poll), slow);
    assert_eq!(poll(&mut st, 500_000, 5_600, Pressure::Poll), lazy);
    // Two calls in one ms tell nothing of the fall: no lazy re-check.
    assert_eq!(poll(&mut st, 500_000, 5_600, Pressure::Poll), slow);
    // Swap low and rising again is no calm: fast, as swap is low.
    let fast = (None, PollInterval::Fast);
    assert_eq!(poll(&mut st, 60_000, 5_700, Pressure::Poll), fast);
    assert_eq!(poll(&mut st, 80_000, 5_800, Pressure::Poll), fast);
    // Early trigger off: lmkd's periods only.
    let t = tun();
    let mut st = primed(&t);
    let d = gate(&mut st, &t, B::new().at(5_000), Pressure::Poll);
    assert_eq!(d.poll, PollInterval::Slow);
}

/// Free swap 50 MB of 1 GB: low (its mark is 100 MB).
fn swap_low() -> B {
    B::new().swap(1_000_000, 50_000)
}

/// With `kill_ahead_ms = cap`, swap low: a kill at 1 000 ms whose victim
/// took 80 ms to exit (its memory back at 1 080, free memory 100 MB).
fn exited(cap: u32) -> (Tunables, State) {
    let t = Tunables {
        kill_ahead_ms: cap,
        ..gated()
    };
    let mut st = primed(&t);
    let low = swap_low().free(LOW - 1).at(1_000);
    let d = gate(&mut st, &t, low, Pressure::Partial);
    assert_eq!(d.kill, kill(KillReason::LowMemAndSwap, 201));
    st.on_kill(&low.0, &d.kill.unwrap());
    let back = swap_low().free(100_000).at(1_080);
    assert_eq!(gate(&mut st, &t, back, Pressure::Poll).kill, None);
    (t, st)
}

/// Ours (`kill_ahead_ms`): with swap low, the low-memory-and-swap kill
/// comes before free memory reaches the low watermark when, falling as it
/// fell since the last call, it would get there sooner than the last victim
/// took to exit (at most `kill_ahead_ms`). Never before a first kill has
/// measured an exit, with swap to spare, for a slow fall, or with 0.
#[test]
fn swap_low_kills_ahead_of_the_low_watermark_by_the_last_exit() {
    let swap_low = swap_low();
    // With `kill_ahead_ms = cap`: re-checks at `steps` after an exit; the
    // last one's decision.
    let after_an_exit = |cap: u32, steps: &[B]| {
        let (t, mut st) = exited(cap);
        let mut d = None;
        for b in steps {
            d = Some(gate(&mut st, &t, *b, Pressure::Poll));
        }
        d.unwrap()
    };
    let at = |free_kb: u64, ms: u64| swap_low.free(free_kb).at(ms);
    // 40 MB above low, falling 40 MB in 10 ms: there in 10 ms, within 80.
    let d = after_an_exit(200, &[at(LOW + 40_000, 1_090)]);
    assert_eq!(d.kill, kill(KillReason::LowMemAndSwap, 201));
    assert_eq!(d.figures.low_ahead_ms, 80);
    assert_eq!(
        described(KillReason::LowMemAndSwap, &d.figures),
        "low watermark is breached within 80ms and swap is low (50000kB < 100000kB)"
    );
    // Below low already: the breach itself, not a look ahead.
    let d = after_an_exit(200, &[at(LOW - 1, 1_090)]);
    assert_eq!(d.kill, kill(KillReason::LowMemAndSwap, 201));
    assert_eq!(d.figures.low_ahead_ms, 0);
    // A slow fall: 76 MB above low falling 4 MB in 10 ms is 190 ms away,
    // beyond the 80 ms exit whatever the cap.
    for cap in [50, 200] {
        let slow = [at(96_000, 1_090), at(92_000, 1_100)];
        assert_eq!(after_an_exit(cap, &slow[..1]).kill, None, "cap {cap}");
        assert_eq!(after_an_exit(cap, &slow).kill, None, "cap {cap}");
    }
    // 5 MB above low falling 1 MB in 10 ms is 50 ms away: within a 60 ms
    // cap (and the 80 ms exit), not within 40.
    for (cap, ahead) in [(60, 60), (40, 0)] {
        let d = after_an_exit(cap, &[at(LOW + 6_000, 1_090), at(LOW + 5_000, 1_100)]);
        assert_eq!(d.figures.low_ahead_ms, ahead, "cap {cap}");
        assert_eq!(d.kill.is_some(), ahead > 0, "cap {cap}");
    }
    // Off, or swap to spare: no kill above low.
    assert_eq!(after_an_exit(0, &[at(LOW + 40_000, 1_090)]).kill, None);
    let spare = B::new()
        .swap(1_000_000, 500_000)
        .free(LOW + 40_000)
        .at(1_090);
    assert_eq!(after_an_exit(200, &[spare]).kill, None);
    // Two calls in one ms give no rate (kswapd moving, so the call is no
    // quiet one).
    let same_ms = swap_low.kswapd().free(LOW + 40_000).at(1_080);
    assert_eq!(after_an_exit(200, &[same_ms]).kill, None);
    // No exit measured yet: the first kill waits for the breach.
    let t = gated();
    let mut st = primed(&t);
    gate(&mut st, &t, at(100_000, 1_000), Pressure::Partial);
    let d = gate(&mut st, &t, at(LOW + 1_000, 1_010), Pressure::Poll);
    assert_eq!(d.kill, None);
}

/// The look ahead does not wait for reclaim: in the VM launch storm the
/// starting apps took 50 MB of free memory in 40 ms straight from the free
/// lists, no reclaim counter moving, and bailing out as on quiet counters
/// left each kill to below min. With nothing moving, the fall is trusted
/// only [`QUIET_AHEAD_MS`] ahead, not the whole last exit, and only after
/// an interval that fell as fast; a slower fall, a burst after a still
/// interval, or swap to spare, still bail out.
#[test]
fn a_fall_to_low_kills_ahead_before_reclaim_begins() {
    // After the exit, re-checks at 1 090 and 1 100 with `before` free
    // (kB above low; kswapd moving, swap to spare so that they cannot
    // kill), then `then` at 1 110 with still counters.
    let quiet_after = |before: [u64; 2], then: B| {
        let (t, mut st) = exited(200);
        for (kb, ms) in before.into_iter().zip([1_090, 1_100]) {
            let spare = B::new().swap(1_000_000, 500_000).free(LOW + kb).at(ms);
            assert_eq!(gate(&mut st, &t, spare, Pressure::Poll).kill, None);
        }
        let mut b = then.at(1_110);
        b.0.vm.pgscan_kswapd += 1_100;
        decide(&b.0, Pressure::Poll, &t, &no_targets(), &mut st)
    };
    // 20 MB above low, falling 20 MB in 10 ms as in the 10 ms before: a
    // kill, 50 ms ahead.
    let d = quiet_after([60_000, 40_000], swap_low().free(LOW + 20_000));
    assert_eq!(d.kill, kill(KillReason::LowMemAndSwap, 201));
    assert_eq!(d.figures.low_ahead_ms, QUIET_AHEAD_MS);
    // The same fall after a still interval: a burst that may stop.
    let d = quiet_after([40_000, 40_000], swap_low().free(LOW + 20_000));
    assert_eq!((d.kill, d.figures.low_ahead_ms), (None, 0));
    // 7 MB above low, falling 1 MB in 10 ms twice: there in 70 ms, within
    // the 80 ms exit but not within 50. With kswapd moving it would kill.
    let slow = swap_low().free(LOW + 7_000);
    let d = quiet_after([9_000, 8_000], slow);
    assert_eq!((d.kill, d.figures.low_ahead_ms), (None, 0));
    let (t, mut st) = exited(200);
    gate(
        &mut st,
        &t,
        slow.free(LOW + 8_000).at(1_090),
        Pressure::Poll,
    );
    let d = gate(&mut st, &t, slow.at(1_100), Pressure::Poll);
    assert_eq!((d.kill.is_some(), d.figures.low_ahead_ms), (true, 80));
    // Swap to spare.
    let spare = B::new().swap(1_000_000, 500_000);
    let d = quiet_after([60_000, 40_000], spare.free(LOW + 20_000));
    assert_eq!(d.kill, None);
}

/// Ours: free swap that, falling as it last fell, would turn low before a
/// slow re-check polls fast; a slower fall, a rise, or no time between the
/// calls keeps lmkd's long period. In an early window too, where it would
/// otherwise re-check lazily. (Low mark: 100 MB of 1 GB here.)
#[test]
fn swap_about_to_run_low_polls_fast() {
    for t in [gated(), Tunables::from_config(&Config::default())] {
        let mut st = primed(&t);
        let mut poll = |swap_free: u64, ms: u64| {
            let b = B::new().swap(1_000_000, swap_free).at(ms);
            let d = gate(&mut st, &t, b, Pressure::Partial);
            assert_eq!(d.kill, None);
            d.poll
        };
        // From 500 MB at 0 s: 200 MB in a second with 200 MB left.
        assert_eq!(poll(300_000, 1_000), PollInterval::Slow);
        // 20 MB in 10 ms with 180 MB left: low in 90 ms.
        assert_eq!(poll(280_000, 1_010), PollInterval::Fast);
        // 25 MB in 20 ms with 155 MB left: low in 124 ms.
        assert_eq!(poll(255_000, 1_030), PollInterval::Slow);
        // No time since the last call: nothing to go by, fall or none.
        assert_eq!(poll(255_000, 1_030), PollInterval::Slow);
        assert_eq!(poll(200_000, 1_030), PollInterval::Slow);
        // A rise, then 290 MB in 100 ms with 10 MB left.
        assert_eq!(poll(400_000, 1_040), PollInterval::Slow);
        assert_eq!(poll(110_000, 1_140), PollInterval::Fast);
    }
    let t = gated();
    let mut st = woken_early(&t);
    let mut poll = |swap_free: u64, ms: u64| {
        let b = B::new().swap(1_000_000, swap_free).at(ms);
        gate(&mut st, &t, b, Pressure::Early).poll
    };
    assert_eq!(poll(480_000, 1_000), PollInterval::Lazy);
    assert_eq!(poll(280_000, 1_050), PollInterval::Fast);
}

/// Off (0, or not below the partial threshold, or under the legacy
/// minfree table) the rows are lmkd's and only lmkd's triggers are armed.
#[test]
fn early_gate_off_is_lmkds_single_threshold() {
    let low = B::new().at(100).kswapd().free(LOW - 1);
    let minfree = Config {
        use_minfree_levels: true,
        ..Config::default()
    };
    let no_partial = Config {
        psi_partial_stall_ms: 0,
        ..Config::default()
    };
    for early in [0, 70, 200] {
        let c = Config {
            psi_early_stall_ms: early,
            ..Config::default()
        };
        assert_eq!(c.early_stall_ms(), 0, "early {early}");
        let mut t = Tunables::from_config(&c);
        t.page_kb = 4;
        let d = gate(&mut primed(&t), &t, low, Pressure::Partial);
        assert_eq!(d.kill, kill(KillReason::LowMem, 701), "early {early}");
        let d = gate(&mut woken_early(&t), &t, low, Pressure::Poll);
        assert_eq!(d.kill, kill(KillReason::LowMem, 701), "early {early}");
    }
    assert_eq!(
        (minfree.early_stall_ms(), no_partial.early_stall_ms()),
        (0, 0)
    );
    // The shipped defaults arm it, low-RAM too.
    assert_eq!(Config::default().early_stall_ms(), 50);
    assert_eq!(Config::low_ram().early_stall_ms(), 50);
}

// --- reasons in lmkd's words ---------------------------------------------

fn described(reason: KillReason, f: &Figures) -> String {
    let mut s = String::new();
    describe_reason(&mut s, &Kill { reason, min_adj: 0 }, f).unwrap();
    s
}

/// Every reason's text, with its figures, as lmkd words it; "min" or
/// "low" as the watermark really stands.
#[test]
fn reasons_are_described_as_lmkd_does() {
    let f = Figures {
        free_swap_kb: 12_345,
        swap_low_kb: 67_890,
        thrashing_pct: 35,
        swap_util_pct: 93,
        swap_util_max: 90,
        file_lru_kb: 4_000,
        filecache_min_kb: 5_000,
        direct_reclaim_ms: 120,
        direct_reclaim_threshold_ms: 100,
        ..Figures::default()
    };
    let low = Figures {
        wmark: WmarkLevel::BelowLow,
        ..f
    };
    let min = Figures {
        wmark: WmarkLevel::BelowMin,
        ..f
    };
    let rows: [(KillReason, &Figures, &str); 16] = [
        (
            KillReason::PressureAfterKill,
            &min,
            "min watermark is breached even after kill",
        ),
        (KillReason::NotResponding, &f, "device is not responding"),
        (
            KillReason::LowSwapAndThrashing,
            &f,
            "device is low on swap (12345kB < 67890kB) and thrashing (35%)",
        ),
        (
            KillReason::LowMemAndSwap,
            &min,
            "min watermark is breached and swap is low (12345kB < 67890kB)",
        ),
        (
            KillReason::LowMemAndSwap,
            &low,
            "low watermark is breached and swap is low (12345kB < 67890kB)",
        ),
        (
            KillReason::LowMemAndSwapUtil,
            &low,
            "low watermark is breached and swap utilization is high (93% > 90%)",
        ),
        (
            KillReason::LowMemAndSwapUtil,
            &min,
            "min watermark is breached and swap utilization is high (93% > 90%)",
        ),
        (
            KillReason::LowMemAndThrashing,
            &low,
            "low watermark is breached and thrashing (35%)",
        ),
        (
            KillReason::LowMemAndThrashing,
            &min,
            "min watermark is breached and thrashing (35%)",
        ),
        (
            KillReason::DirectReclAndThrashing,
            &f,
            "device is in direct reclaim and thrashing (35%)",
        ),
        (
            KillReason::DirectReclStuck,
            &f,
            "device is stuck in direct reclaim (120ms > 100ms)",
        ),
        (
            KillReason::LowFilecacheAfterThrashing,
            &f,
            "filecache is low (4000kB < 5000kB) after thrashing",
        ),
        (KillReason::LowMem, &low, "low watermark is breached"),
        (KillReason::LowMem, &min, "min watermark is breached"),
        // lmkd's legacy paths log their kill line without a reason.
        (KillReason::Minfree, &f, ""),
        (KillReason::VmPressure, &f, ""),
    ];
    for (reason, fig, want) in rows {
        assert_eq!(
            described(reason, fig),
            want,
            "{reason:?} at {:?}",
            fig.wmark
        );
    }
}

/// The figures a decision carries are the ones its description shows.
#[test]
fn decisions_carry_the_figures_their_description_needs() {
    let mut t = tun();
    // Swap low and thrashing: free swap 40 000 < 1 000 000 x 10 % (swap
    // compression capped by nothing: ratio 0).
    t.swap_compression_ratio = 0;
    let mut st = primed(&t);
    let s = B::new()
        .at(100)
        .kswapd()
        .swap(1_000_000, 40_000)
        .thrash(135)
        .0;
    let d = decide(&s, Pressure::Partial, &t, &no_targets(), &mut st);
    let k = d.kill.unwrap();
    assert_eq!(k.reason, KillReason::LowSwapAndThrashing);
    let mut text = String::new();
    describe_reason(&mut text, &k, &d.figures).unwrap();
    assert_eq!(
        text,
        "device is low on swap (40000kB < 100000kB) and thrashing (135%)"
    );

    // Stuck in direct reclaim: duration and threshold.
    t.direct_reclaim_threshold_ms = 50;
    let mut st = primed(&t);
    decide(
        &B::new().at(100).direct(1).0,
        Pressure::Partial,
        &t,
        &no_targets(),
        &mut st,
    );
    let d = decide(
        &B::new().at(200).direct(2).0,
        Pressure::Partial,
        &t,
        &no_targets(),
        &mut st,
    );
    assert_eq!(d.kill.unwrap().reason, KillReason::DirectReclStuck);
    let mut text = String::new();
    describe_reason(&mut text, &d.kill.unwrap(), &d.figures).unwrap();
    assert_eq!(text, "device is stuck in direct reclaim (100ms > 50ms)");

    // Swap utilisation against its configured maximum.
    let mut t = tun();
    t.swap_util_max = 50;
    let mut st = primed(&t);
    let s = B::new().at(100).kswapd().free(LOW - 1).anon(100_000).0;
    let d = decide(&s, Pressure::Partial, &t, &no_targets(), &mut st);
    assert_eq!(d.kill.unwrap().reason, KillReason::LowMemAndSwapUtil);
    let mut text = String::new();
    describe_reason(&mut text, &d.kill.unwrap(), &d.figures).unwrap();
    assert_eq!(
        text,
        format!(
            "low watermark is breached and swap utilization is high ({}% > 50%)",
            d.figures.swap_util_pct
        )
    );
    assert!(d.figures.swap_util_pct > 50);
}

// --- vmpressure ------------------------------------------------------------

fn vmp(
    level: VmPressureLevel,
    mem_pressure: Option<u64>,
    s: &Snapshot,
    t: &Tunables,
    st: &mut State,
) -> Option<Kill> {
    decide_vmpressure(level, mem_pressure, s, t, &no_targets(), st).kill
}

fn vm_kill(min_adj: i32) -> Option<Kill> {
    kill(KillReason::VmPressure, min_adj)
}

/// Levels kill from their configured min adj (lmkd's defaults: low never,
/// medium 800, critical 0), once free memory is below what low-pressure
/// events saw.
#[test]
fn vmpressure_levels_map_to_their_min_adj() {
    let t = tun();
    assert_eq!(t.vmpressure_adj, [1001, 800, 0]);
    let mut st = State::new();
    let s = B::new().free(100_000).0;
    // No low event seen yet (the daemon watches medium and critical only):
    // nothing to compare with, so the level alone decides.
    assert_eq!(
        vmp(VmPressureLevel::Critical, None, &s, &t, &mut st),
        vm_kill(0)
    );
    // A low event at 100 000 kB free: never a kill itself (low = 1001).
    assert_eq!(vmp(VmPressureLevel::Low, None, &s, &t, &mut st), None);
    assert_eq!(st.low_pressure_max_free_kb(), Some(100_000));
    // Not below it: still nothing.
    assert_eq!(vmp(VmPressureLevel::Medium, None, &s, &t, &mut st), None);
    let less = B::new().free(99_999).0;
    assert_eq!(
        vmp(VmPressureLevel::Medium, None, &less, &t, &mut st),
        vm_kill(800)
    );
    assert_eq!(
        vmp(VmPressureLevel::Critical, None, &less, &t, &mut st),
        vm_kill(0)
    );
    assert_eq!(vmp(VmPressureLevel::Low, None, &less, &t, &mut st), None);

    // Configured levels.
    let t = Tunables {
        vmpressure_adj: [900, 500, 100],
        ..tun()
    };
    for (level, adj) in VmPressureLevel::ALL.into_iter().zip([900, 500, 100]) {
        let mut st = State::new();
        vmp(VmPressureLevel::Low, None, &s, &t, &mut st);
        assert_eq!(
            vmp(level, None, &less, &t, &mut st),
            vm_kill(adj),
            "{level:?}"
        );
    }
    // A level above 1000 is not monitored.
    let t = Tunables {
        vmpressure_adj: [1001, 1001, 1001],
        ..tun()
    };
    let mut st = State::new();
    vmp(VmPressureLevel::Low, None, &s, &t, &mut st);
    for level in VmPressureLevel::ALL {
        assert_eq!(vmp(level, None, &less, &t, &mut st), None);
    }
}

/// Low-RAM devices kill without the low-event free memory check.
#[test]
fn vmpressure_low_ram_kills_at_once() {
    let t = Tunables {
        low_ram_device: true,
        ..tun()
    };
    let mut st = State::new();
    let s = B::new().0;
    assert_eq!(
        vmp(VmPressureLevel::Medium, None, &s, &t, &mut st),
        vm_kill(800)
    );
}

/// The highest free memory at low events ignores jumps of 10 % or more.
#[test]
fn vmpressure_low_events_ignore_jumps() {
    let t = tun();
    let mut st = State::new();
    for (free, max) in [
        (100_000, 100_000),
        (109_999, 109_999),
        (200_000, 109_999),
        (50_000, 109_999),
        (120_000, 109_999 + 10_000),
    ] {
        let free = if free == 120_000 { 119_999 } else { free };
        vmp(
            VmPressureLevel::Low,
            None,
            &B::new().free(free).0,
            &t,
            &mut st,
        );
        assert_eq!(
            st.low_pressure_max_free_kb(),
            Some(max.min(119_999)),
            "free {free}"
        );
    }
}

/// Upgrade and downgrade by the root memcg's mem_pressure, as lmkd.
#[test]
fn vmpressure_upgrade_and_downgrade() {
    let base = Tunables {
        low_ram_device: true,
        upgrade_pressure: 60,
        downgrade_pressure: 90,
        ..tun()
    };
    let plenty_swap = B::new().swap(1_000_000, 900_000).0;
    let low_swap = B::new().swap(1_000_000, 10_000).0;
    let go = |t: &Tunables, l, mp, s: &Snapshot| vmp(l, mp, s, t, &mut State::new());
    use VmPressureLevel::{Critical, Medium};

    // Without critical_upgrade nothing goes up.
    assert_eq!(go(&base, Medium, Some(10), &plenty_swap), vm_kill(800));
    // With it, heavy swapping (below upgrade_pressure) takes medium to critical.
    let up = Tunables {
        critical_upgrade: true,
        ..base
    };
    assert_eq!(go(&up, Medium, Some(59), &plenty_swap), vm_kill(0));
    assert_eq!(go(&up, Medium, Some(60), &plenty_swap), vm_kill(800));
    // Swap to spare and mostly in RAM (above downgrade_pressure): ignored.
    assert_eq!(go(&base, Critical, Some(91), &plenty_swap), None);
    assert_eq!(go(&base, Medium, Some(91), &plenty_swap), None);
    // Critical above upgrade_pressure (but not downgrade): down to medium.
    assert_eq!(go(&base, Critical, Some(61), &plenty_swap), vm_kill(800));
    assert_eq!(go(&base, Critical, Some(60), &plenty_swap), vm_kill(0));
    // Swap low: no ignoring, no downgrade.
    assert_eq!(go(&base, Critical, Some(95), &low_swap), vm_kill(0));
    // No memcg figures: the level stands as reported.
    assert_eq!(go(&up, Medium, None, &plenty_swap), vm_kill(800));
    assert_eq!(mem_pressure_pct(50, 100), Some(50));
    assert_eq!(mem_pressure_pct(1, 0), None);
    assert_eq!(mem_pressure_pct(u64::MAX, 1), Some(u64::MAX));
}

/// The bug this replaces: vmpressure events went through the PSI
/// complete-stall gate, whose total never moves without PSI, so only the
/// first event ever killed. Now every critical event kills, and a complete
/// event with no PSI figures is not gated either.
#[test]
fn vmpressure_kills_again_and_again() {
    let t = tun();
    let mut st = State::new();
    vmp(
        VmPressureLevel::Low,
        None,
        &B::new().free(100_000).0,
        &t,
        &mut st,
    );
    for i in 1..=5u64 {
        let s = B::new().at(i * 1000).free(50_000).0;
        let k = vmp(VmPressureLevel::Critical, None, &s, &t, &mut st);
        assert_eq!(k, vm_kill(0), "kill {i}");
        st.on_kill(&s, &k.unwrap());
    }
    // The PSI strategy's complete event on a snapshot without PSI figures.
    let mut st = primed(&t);
    for i in 1..=5u64 {
        let mut s = B::new().at(i * 1000).0;
        s.known = s.known.without(Known::PSI);
        let d = decide(&s, Pressure::Complete, &t, &no_targets(), &mut st);
        assert_eq!(d.kill, kill(KillReason::NotResponding, 0), "kill {i}");
        st.on_kill(&s, &d.kill.unwrap());
    }
}

/// In minfree mode the table decides on vmpressure events too.
#[test]
fn vmpressure_in_minfree_mode_uses_the_table() {
    let t = Tunables {
        use_minfree_levels: true,
        ..tun()
    };
    let d = decide_vmpressure(
        VmPressureLevel::Low,
        None,
        &minfree_snap(0, 0),
        &t,
        &ams_targets(),
        &mut State::new(),
    );
    assert_eq!(d.kill.map(|k| k.reason), Some(KillReason::Minfree));
}

// --- snapshot parts unknown ----------------------------------------------

/// Without PSI figures the critical-stall override is off (its averages
/// read 0, but a stale nonzero must not count either).
#[test]
fn unknown_psi_never_counts_as_a_critical_stall() {
    let t = Tunables {
        stall_limit_critical: 50,
        ..tun()
    };
    let s = B::new().at(100).kswapd().free(LOW - 1).full10(6_000).0;
    let d = decide(&s, Pressure::Partial, &t, &no_targets(), &mut primed(&t));
    assert!(d.figures.critical_stall);
    assert_eq!(d.kill, kill(KillReason::LowMem, 0));
    let mut s = s;
    s.known = s.known.without(Known::PSI);
    let d = decide(&s, Pressure::Partial, &t, &no_targets(), &mut primed(&t));
    assert!(!d.figures.critical_stall);
    assert_eq!(d.kill, kill(KillReason::LowMem, 701));
}

/// A vmstat without pgscan counters (older kernel): reclaim is seen from
/// pgrefill, thrashing from refaults; the policy never takes the zeros for
/// reclaim.
#[test]
fn missing_pgscan_counters_read_as_still() {
    let t = tun();
    let mut st = State::new();
    let mut b = B::new();
    b.0.vm.pgscan_kswapd = 0;
    b.0.vm.pgscan_direct = 0;
    b.0.known = Known::ALL
        .without(Known::PGSCAN_KSWAPD)
        .without(Known::PGSCAN_DIRECT);
    decide(&b.0, Pressure::Partial, &t, &no_targets(), &mut st);
    let mut s = b.at(100).free(LOW - 1).0;
    s.vm.pgrefill += 10;
    let d = decide(&s, Pressure::Partial, &t, &no_targets(), &mut st);
    assert_eq!(d.figures.reclaim, Reclaim::Kswapd);
    assert_eq!(d.kill, kill(KillReason::LowMem, 701));
}

/// Refaults counted before the daemon first looked (since boot) are not
/// thrashing: the first evaluation sets the base. The lmkd peer's first
/// evaluation divides them by a base of 0 and shifts the result right once
/// per second since boot; in the VM thrash, 65 refaults 7-8 s after boot
/// read as 50 % and its first kill gave a thrashing reason while the page
/// cache had barely refaulted.
#[test]
fn refaults_from_before_the_first_evaluation_are_not_thrashing() {
    let t = tun();
    let mut st = State::new();
    // The first look, 8 s after boot, REFAULT0 pages refaulted since boot.
    let first = decide(
        &B::new().at(8_000).0,
        Pressure::Partial,
        &t,
        &no_targets(),
        &mut st,
    );
    assert_eq!(first.figures.thrashing_pct, 0);
    // 100 ms on: below low, kswapd running, 10 new refaults (0.05 %).
    let d = decide(
        &B::new()
            .at(8_100)
            .kswapd()
            .refault(REFAULT0 + 10)
            .free(LOW - 1)
            .0,
        Pressure::Partial,
        &t,
        &no_targets(),
        &mut st,
    );
    assert_eq!(d.figures.thrashing_pct, 0);
    assert_eq!(d.kill.map(|k| k.reason), Some(KillReason::LowMem));
}
