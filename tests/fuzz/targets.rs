//! The bodies of the fuzz targets, one `pub fn` per target taking raw
//! bytes. `cargo fuzz` runs them from `fuzz_targets/` under libFuzzer
//! (nightly); `tests/fuzz_stable.rs` runs the same bodies on a seeded PRNG
//! in every `cargo test`. Each one panics only when an invariant breaks.
#![allow(dead_code)]

use lmkd::config::Config;
use lmkd::policy::{
    self, Decision, KillReason, Pressure, State, Tunables, VmPressureLevel, WmarkLevel,
    ABOVE_PERCEPTIBLE_ADJ,
};
use lmkd::props::MapProperties;
use lmkd::proto::{self, Target, TargetTable};
use lmkd::snapshot::{self, Known, Snapshot};

/// The wire codec: decoding never panics, and what decodes re-encodes to a
/// packet that decodes to the same command.
pub fn proto_decode(data: &[u8]) {
    if let Ok(cmd) = proto::decode(data) {
        let mut out = [0u8; proto::MAX_PACKET];
        let n = proto::encode(&cmd, &mut out);
        let again = proto::decode(out.get(..n).unwrap_or(&[]));
        assert_eq!(again, Ok(cmd), "re-encoded {cmd:?} does not decode back");
    }
    let _ = proto::peek_id(data);
    if let Some(id) = proto::peek_id(data) {
        let _ = proto::decode_reply(id, data);
    }
    let _ = proto::decode_prockill(data);
    let _ = proto::decode_kill_stat(data);
}

/// The TOML config: parsing never panics, and an accepted config written
/// back as TOML parses to the same config.
pub fn config_toml(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(mut cfg) = Config::from_toml_str(&text) {
        cfg.validate().expect("an accepted config validates");
        let shown = cfg.to_toml();
        let back = Config::from_toml_str(&shown)
            .unwrap_or_else(|e| panic!("own output rejected: {e}\n{shown}"));
        // The output states derived defaults explicitly.
        cfg.thrashing_limit_critical = Some(cfg.thrashing_limit_critical());
        cfg.startup.use_new_strategy = Some(cfg.use_new_strategy());
        assert_eq!(back, cfg, "round trip changed the config:\n{shown}");
    }
}

/// Property values: a `name=value` file parses or fails cleanly, and any
/// values on lmkd's property names load into a valid config (bad values are
/// skipped with a warning, never fatal).
pub fn props(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = MapProperties::parse(&text, "fuzz");
    let names: Vec<&str> = Config::property_key_names().collect();
    let mut pairs = Vec::new();
    for line in data.split(|&b| b == b'\n') {
        let Some((&sel, value)) = line.split_first() else {
            continue;
        };
        let value = String::from_utf8_lossy(value).into_owned();
        let name = if sel == 0xff {
            "ro.config.low_ram".to_string()
        } else {
            let prefix = if sel & 0x80 != 0 {
                "persist.device_config.lmkd_native."
            } else {
                "ro.lmk."
            };
            let key = names.get(usize::from(sel & 0x7f) % names.len().max(1));
            format!("{prefix}{}", key.copied().unwrap_or("debug"))
        };
        pairs.push((name, value));
    }
    let props = MapProperties::from_pairs(pairs);
    let (cfg, _warnings) = Config::load(None, &props).expect("properties alone never fail a load");
    cfg.validate().expect("a loaded config validates");
}

pub fn proc_meminfo(data: &[u8]) {
    let mut m = snapshot::MemInfo::default();
    let _ = snapshot::parse_meminfo(data, &mut m);
}

pub fn proc_vmstat(data: &[u8]) {
    let mut v = snapshot::VmStat::default();
    if let Ok(known) = snapshot::parse_vmstat(data, &mut v) {
        assert!(known.contains(Known::PGSCAN_KSWAPD) || v.pgscan_kswapd == 0);
        assert!(known.contains(Known::PGSCAN_DIRECT) || v.pgscan_direct == 0);
    }
}

pub fn proc_zoneinfo(data: &[u8]) {
    for page in [4096, 16384] {
        let mut w = snapshot::Watermarks::default();
        let before = w;
        if snapshot::parse_zoneinfo_with_page_size(data, page, &mut w).is_err() {
            assert_eq!(w, before, "zoneinfo wrote its output on error");
        }
    }
}

pub fn proc_psi(data: &[u8]) {
    let mut p = snapshot::PsiAvg::default();
    if snapshot::parse_psi(data, &mut p).is_err() {
        assert_eq!(
            p,
            snapshot::PsiAvg::default(),
            "psi wrote its output on error"
        );
    }
}

pub fn proc_stat(data: &[u8]) {
    let mut s = proto::KillStat::default();
    lmkd::victim::parse_stat(data, &mut s);
    assert!(s.name().len() <= proto::STAT_NAME_MAX);
}

// --- policy ---------------------------------------------------------------

/// Little-endian integers off the front of the input; zeros when it runs out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }
    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |v, i| v | u64::from(self.u8()) << (8 * i))
    }
    /// Mostly plausible sizes, sometimes extremes: the branches of the
    /// policy sit at ordinary magnitudes.
    fn size(&mut self) -> u64 {
        match self.u8() % 8 {
            0 => 0,
            1 => u64::MAX - u64::from(self.u8()),
            2 => self.u64(),
            _ => self.u64() % 4_000_000,
        }
    }
    fn u32(&mut self) -> u32 {
        (0..4).fold(0, |v, i| v | u32::from(self.u8()) << (8 * i))
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        let span = (hi - lo + 1) as u64;
        lo + (u64::from(self.u32()) % span) as i64
    }
    fn done(&self) -> bool {
        self.0.is_empty()
    }
}

fn tunables(b: &mut Bytes) -> Tunables {
    let mut t = Tunables::from_config(&Config::default());
    t.use_minfree_levels = b.u8() % 4 == 0;
    t.swap_free_low_percentage = b.range(0, 100) as u32;
    t.swap_compression_ratio = b.range(0, 100) as u32;
    t.swap_util_max = b.range(0, 100) as u32;
    t.thrashing_limit = b.range(0, 1000) as u32;
    t.thrashing_limit_decay = b.range(0, 100) as u32;
    t.thrashing_limit_critical = b.range(i64::from(t.thrashing_limit), 3000) as u32;
    t.filecache_min_kb = b.range(0, 1 << 30) as u64;
    t.stall_limit_critical = b.range(0, 100) as u32;
    t.pressure_after_kill_min_score = b.range(-1000, 1001) as i32;
    t.lowmem_min_oom_score = b.range(i64::from(ABOVE_PERCEPTIBLE_ADJ), 1001) as i32;
    t.direct_reclaim_threshold_ms = b.range(0, 60_000) as u32;
    t.complete_stall_us = b.range(1, 1000) as u64 * 1000;
    t.page_kb = [4, 16, 64][usize::from(b.u8() % 3)];
    t.wait_for_inactive_file = b.u8() % 2 == 0;
    for a in &mut t.vmpressure_adj {
        *a = b.range(-1000, 1001) as i32;
    }
    t.critical_upgrade = b.u8() % 2 == 0;
    t.upgrade_pressure = b.range(0, 100) as u32;
    t.downgrade_pressure = b.range(0, 100) as u32;
    t.low_ram_device = b.u8() % 2 == 0;
    t.kill_ahead_ms = b.range(0, 1001) as u32;
    t.fast_after_kill_ms = b.range(0, 1001) as u32;
    t.direct_reclaim_exit_wait_ms = b.range(0, 10_001) as u32;
    t.anticipate_partial_ms = b.range(0, 1001) as u32;
    t
}

fn targets(b: &mut Bytes) -> TargetTable {
    let n = usize::from(b.u8()) % (proto::MAX_TARGETS + 1);
    let levels: Vec<Target> = (0..n)
        .map(|_| Target {
            minfree: b.range(0, 1 << 20) as i32,
            adj: b.range(-1000, 1000) as i32,
        })
        .collect();
    TargetTable::from_slice(&levels).unwrap_or_default()
}

fn snapshot(b: &mut Bytes, prev: &Snapshot) -> Snapshot {
    let mut s = *prev;
    let m = &mut s.mem;
    for f in [
        &mut m.free_kb,
        &mut m.cma_free_kb,
        &mut m.swap_total_kb,
        &mut m.swap_free_kb,
        &mut m.inactive_file_kb,
        &mut m.active_anon_kb,
        &mut m.inactive_anon_kb,
        &mut m.shmem_kb,
        &mut m.cached_kb,
        &mut m.unevictable_kb,
        &mut m.swap_cached_kb,
    ] {
        if b.u8() % 2 == 0 {
            *f = b.size();
        }
    }
    if b.u8() % 2 == 0 {
        // Around the watermarks, where the rules are.
        s.mem.free_kb = u64::from(b.u32()) % s.wm.high_kb.saturating_mul(2).saturating_add(1);
    }
    let v = &mut s.vm;
    // Counters mostly grow a little, sometimes jump or go back.
    for f in [
        &mut v.pgscan_kswapd,
        &mut v.pgscan_direct,
        &mut v.pgrefill,
        &mut v.workingset_refault_file,
    ] {
        *f = match b.u8() % 4 {
            0 => *f,
            1 => b.size(),
            _ => f.saturating_add(u64::from(b.u8()) * 37),
        };
    }
    match b.u8() % 4 {
        0 => {
            v.nr_inactive_file = b.size();
            v.nr_active_file = b.size();
        }
        // Small file LRUs make refaults count as real thrashing.
        1 => {
            v.nr_inactive_file = b.u64() % 5_000;
            v.nr_active_file = b.u64() % 5_000;
        }
        _ => {}
    }
    if b.u8() % 4 == 0 {
        let min = b.size() % 200_000;
        s.wm.min_kb = min;
        s.wm.low_kb = min + min / 4;
        s.wm.high_kb = min + min / 2;
    }
    // Mostly no full stall, so the reasons' own min adj show.
    s.psi.full_avg10 = match b.u8() % 4 {
        0 => b.range(0, 10_000) as u32,
        _ => 0,
    };
    s.psi.full_total_us = s.psi.full_total_us.saturating_add(b.size() % 3_000_000);
    s.time_ms = match b.u8() % 8 {
        0 => b.u64(),
        _ => s.time_ms.saturating_add(b.size() % 3000),
    };
    s.known = Known::ALL;
    if b.u8() % 8 == 0 {
        s.known = s.known.without(Known::PSI);
    }
    s
}

/// The min adj the reason table gives `reason` on the figures it was
/// decided with, before the critical-stall override.
fn table_min_adj(reason: KillReason, d: &Decision, t: &Tunables) -> Option<i32> {
    let f = &d.figures;
    let critical_thrashing = f.thrashing_pct >= u64::from(t.thrashing_limit_critical);
    let p = if f.wmark == WmarkLevel::BelowMin || critical_thrashing {
        0
    } else {
        ABOVE_PERCEPTIBLE_ADJ
    };
    let tt = if critical_thrashing {
        0
    } else {
        ABOVE_PERCEPTIBLE_ADJ
    };
    Some(match reason {
        KillReason::PressureAfterKill => t.pressure_after_kill_min_score,
        KillReason::NotResponding | KillReason::LowMemAndSwapUtil | KillReason::DirectReclStuck => {
            0
        }
        KillReason::LowSwapAndThrashing | KillReason::LowMemAndSwap => p,
        KillReason::LowMemAndThrashing | KillReason::DirectReclAndThrashing => tt,
        KillReason::LowFilecacheAfterThrashing => ABOVE_PERCEPTIBLE_ADJ,
        KillReason::LowMem => t.lowmem_min_oom_score,
        KillReason::Minfree | KillReason::VmPressure | KillReason::Watchdog => return None,
    })
}

/// Never a kill below the reason's min adj, and never a reason whose
/// condition does not hold.
fn check(d: &Decision, t: &Tunables, tg: &TargetTable, vmp: bool) {
    let Some(k) = d.kill else { return };
    let f = &d.figures;
    let below_low = f.wmark <= WmarkLevel::BelowLow;
    match k.reason {
        KillReason::Minfree => {
            assert!(t.use_minfree_levels, "{k:?} outside minfree mode");
            assert!(
                tg.as_slice().iter().any(|l| l.adj == k.min_adj),
                "{k:?} not a target level"
            );
        }
        KillReason::VmPressure => {
            assert!(vmp && !t.use_minfree_levels, "{k:?}");
            assert!(
                t.vmpressure_adj.contains(&k.min_adj),
                "{k:?} not a level's adj"
            );
            assert!(k.min_adj <= proto::OOM_ADJ_MAX, "{k:?}");
        }
        r => {
            assert!(
                !vmp && !t.use_minfree_levels,
                "{k:?} from the wrong strategy"
            );
            let want = table_min_adj(r, d, t).unwrap_or(i32::MIN);
            // Direct reclaim counts as below min for the swap-low row
            // (`direct_reclaim_below_min`), except on the first call
            // after a kill, which this check cannot see.
            let kernel_min = r == KillReason::LowMemAndSwap
                && t.direct_reclaim_below_min
                && f.reclaim == policy::Reclaim::Direct;
            let want = if f.critical_stall || (kernel_min && k.min_adj == 0) {
                0
            } else {
                want
            };
            assert_eq!(k.min_adj, want, "{k:?} with {f:?}");
            let holds = match r {
                KillReason::LowSwapAndThrashing => f.swap_low,
                KillReason::LowMemAndSwap => {
                    f.swap_low
                        && (below_low
                            || (t.direct_reclaim_below_min
                                && f.reclaim == policy::Reclaim::Direct
                                && k.min_adj == 0)
                            // Ahead of the low watermark (`kill_ahead_ms`).
                            || (f.low_ahead_ms > 0
                                && f.low_ahead_ms <= u64::from(t.kill_ahead_ms)))
                }
                KillReason::LowMemAndSwapUtil => below_low && f.swap_util_pct > t.swap_util_max,
                KillReason::LowMemAndThrashing => below_low,
                KillReason::DirectReclAndThrashing | KillReason::DirectReclStuck => {
                    f.reclaim == policy::Reclaim::Direct
                }
                KillReason::LowFilecacheAfterThrashing => f.file_lru_kb < t.filecache_min_kb,
                KillReason::PressureAfterKill => f.wmark == WmarkLevel::BelowMin,
                KillReason::LowMem => below_low,
                _ => true,
            };
            assert!(holds, "{k:?} without its condition: {f:?}");
        }
    }
    let mut text = String::new();
    policy::describe_reason(&mut text, &k, f).expect("describing into a String");
    assert_eq!(
        text.is_empty(),
        matches!(k.reason, KillReason::Minfree | KillReason::VmPressure),
        "{k:?}: {text:?}"
    );
}

/// Policy invariants over a sequence of snapshots read off the input: no
/// panic, and every kill passes [`check`].
pub fn policy(data: &[u8]) {
    let mut b = Bytes(data);
    let t = tunables(&mut b);
    let tg = targets(&mut b);
    let mut st = State::new();
    let mut snap = Snapshot::default();
    while !b.done() {
        snap = snapshot(&mut b, &snap);
        let sel = b.u8();
        let (d, vmp) = if sel % 5 == 4 {
            let level = VmPressureLevel::ALL[usize::from(sel / 5) % 3];
            let mp = (sel & 0x80 != 0).then(|| b.u64() % 120);
            (
                policy::decide_vmpressure(level, mp, &snap, &t, &tg, &mut st),
                true,
            )
        } else {
            let e = [Pressure::Partial, Pressure::Complete, Pressure::Poll][usize::from(sel % 3)];
            (policy::decide(&snap, e, &t, &tg, &mut st), false)
        };
        check(&d, &t, &tg, vmp);
        if let Some(k) = d.kill {
            if b.u8() % 4 != 0 {
                st.on_kill(&snap, &k);
            }
        }
        if b.u8() % 3 == 0 {
            st.on_exit();
        }
    }
}

/// A target's body.
pub type Body = fn(&[u8]);

/// Every target by name, for the stable test.
pub const ALL: [(&str, Body); 9] = [
    ("proto_decode", proto_decode),
    ("config_toml", config_toml),
    ("props", props),
    ("proc_meminfo", proc_meminfo),
    ("proc_vmstat", proc_vmstat),
    ("proc_zoneinfo", proc_zoneinfo),
    ("proc_psi", proc_psi),
    ("proc_stat", proc_stat),
    ("policy", policy),
];
