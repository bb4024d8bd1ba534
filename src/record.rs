//! Recordings of the policy's inputs and decisions, and their replay.
//!
//! Every evaluation the core makes (the policy called on a snapshot) is one
//! [`Eval`]: the event, the snapshot figures, the tunables and LMK_TARGET
//! table in force, a census of the process table by adj band, the decision,
//! and whether a kill was carried out just before it (the points where the
//! core called `policy::State::on_kill`). The core writes it as
//! [`EVAL_WORDS`] words into a seqlock ring (`control::shared`); `lmkctl
//! record` copies the ring into a file; [`replay`] runs the same pure
//! policy on the file's snapshots under the recorded or other tunables.
//!
//! # File format (version 1)
//!
//! All integers little-endian.
//!
//! ```text
//! offset  size  field
//! 0       8     magic "LMKDREC\0"
//! 8       4     version (1)
//! 12      4     page size of the recording system, bytes
//! 16      4     words per record (60 in version 2; version 1 had 57)
//! 20      4     length N of the configuration text
//! 24      N     the daemon's configuration when recording began, as TOML
//!               (informational: each record carries the tunables in force)
//! 24+N    ...   records, each `words per record` u64s
//! ```
//!
//! A record's words (`u32` pairs are low half first, signed values as two's
//! complement):
//!
//! ```text
//! 0       serial: 1 for the daemon's first evaluation
//! 1       bits 0-7 event (0 partial, 1 complete, 2 timer re-check, 3
//!         early trigger; until the early trigger had its own code, code 0
//!         was the early trigger's whenever word 59 shows it in effect);
//!         bits 8-15 decision: 0 no kill, else 1 + reason slot (statsd
//!         code 0-9, 10 = minfree); bit 16 fast polling; bit 17 extend the
//!         polling window; bit 18 use_minfree_levels; bit 19
//!         wait_for_inactive_file; bits 20-22 which optional snapshot parts
//!         are known (`snapshot::Known`); bit 23 low-RAM device; bit 28
//!         critical_upgrade; bits 24-27 LMK_TARGET levels; bit 29
//!         direct_reclaim_below_min; bit 30 lazy polling (500 ms; never
//!         set with bit 16); bit 31 kill_ahead_ms above 0 (word 59);
//!         bits 32-63 the decision's min adj
//! 2       0, or 1 + the snapshot time (ms) of the evaluation whose kill
//!         was carried out after the previous record and before this one
//! 3       bits 0-47 configuration generation (bumped by each reload or
//!         live change); bits 48-62 direct_reclaim_exit_wait_ms; bit 63
//!         the last victim exited after the previous record and before
//!         this one (both 0 in older recordings: no wait)
//! 4-38    snapshot: time_ms; meminfo (18 fields in `MemInfo` order);
//!         vmstat (8, `VmStat` order); watermarks min, low, high;
//!         PSI (some avg10, avg60), (some avg300, full avg10),
//!         (full avg60, avg300), some total, full total
//! 39-46   tunables: (swap_free_low_percentage, swap_compression_ratio),
//!         (swap_util_max, thrashing_limit), (thrashing_limit_decay,
//!         thrashing_limit_critical), (stall_limit_critical,
//!         direct_reclaim_threshold_ms), (pressure_after_kill_min_score,
//!         lowmem_min_oom_score), filecache_min_kb, complete_stall_us, page_kb
//!         in bits 0-31 with psi_partial_stall_ms in bits 32-63 when
//!         anticipate_partial_trigger is on, else 0 (as in older recordings)
//! 47-52   LMK_TARGET levels (minfree pages, adj)
//! 53-56   census: processes per adj band (7 bands, `control::shared::BANDS`),
//!         then the highest adj in the table (i32::MIN: empty)
//! 57-59   vmpressure tunables: (low, medium) min adj, (critical min adj,
//!         upgrade_pressure in bits 0-15 with fast_after_kill_ms in bits
//!         16-31, 0 in older recordings), (downgrade_pressure,
//!         psi_early_stall_ms in effect in bits 0-15; 0 in older
//!         recordings: the early trigger off; bits 16-31 kill_ahead_ms
//!         when flag bit 31 is set, else ignored)
//! ```
//!
//! # What a replay can and cannot say
//!
//! The snapshots are what the recorded daemon saw, including the effect of
//! the kills it made. A replay under other settings cannot know how memory
//! would have recovered after a kill it makes that the recording did not
//! (or the reverse): it reports where decisions diverge, not outcomes.
//! Kills are applied to the policy's state where the recording carried one
//! out (if the replay also decided one there), and where the replay decides
//! a kill the recording did not decide while the census shows a process at
//! or above its min adj (just before the next evaluation).

use crate::control::shared::{band_of, reason_slot, BANDS};
use crate::policy::{self, Kill, KillReason, PollInterval, Pressure, Tunables};
use crate::proto::{Target, TargetTable, MAX_TARGETS};
use crate::snapshot::{Known, MemInfo, PsiAvg, Snapshot, VmStat, Watermarks};

pub const MAGIC: [u8; 8] = *b"LMKDREC\0";
pub const VERSION: u32 = 2;
/// Words in one record.
pub const EVAL_WORDS: usize = 60;
const HEADER_LEN: usize = 24;
/// Word 3 keeps the configuration generation in its low 48 bits.
pub const CONFIG_GEN_MASK: u64 = (1 << 48) - 1;

/// One evaluation as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Eval {
    pub serial: u64,
    pub event: Pressure,
    pub kill: Option<Kill>,
    pub poll: PollInterval,
    pub extend_poll: bool,
    /// The snapshot time of the evaluation whose kill was carried out
    /// between the previous evaluation and this one.
    pub killed_before: Option<u64>,
    /// The last kill's victim exited between the previous evaluation and
    /// this one (the core called `policy::State::on_exit`).
    pub exited_before: bool,
    pub config_gen: u64,
    pub snap: Snapshot,
    pub tunables: Tunables,
    pub targets: TargetTable,
    /// Processes per adj band (`control::shared::BANDS`).
    pub census: [u32; BANDS.len()],
    /// The highest adj in the table.
    pub max_adj: Option<i32>,
}

/// Every kill reason, for decoding statsd codes.
const REASONS: [KillReason; 11] = [
    KillReason::PressureAfterKill,
    KillReason::NotResponding,
    KillReason::LowSwapAndThrashing,
    KillReason::LowMemAndSwap,
    KillReason::LowMemAndThrashing,
    KillReason::DirectReclAndThrashing,
    KillReason::LowMemAndSwapUtil,
    KillReason::LowFilecacheAfterThrashing,
    KillReason::LowMem,
    KillReason::DirectReclStuck,
    KillReason::Minfree,
];

fn pair(a: u32, b: u32) -> u64 {
    u64::from(a) | (u64::from(b) << 32)
}

fn lo(w: u64) -> u32 {
    w as u32
}

fn hi(w: u64) -> u32 {
    (w >> 32) as u32
}

/// The meminfo fields in record order.
fn mem_fields(m: &mut MemInfo) -> [&mut u64; 18] {
    [
        &mut m.mem_total_kb,
        &mut m.free_kb,
        &mut m.cached_kb,
        &mut m.swap_cached_kb,
        &mut m.buffers_kb,
        &mut m.shmem_kb,
        &mut m.unevictable_kb,
        &mut m.swap_total_kb,
        &mut m.swap_free_kb,
        &mut m.active_anon_kb,
        &mut m.inactive_anon_kb,
        &mut m.active_file_kb,
        &mut m.inactive_file_kb,
        &mut m.sreclaimable_kb,
        &mut m.sunreclaim_kb,
        &mut m.kernel_stack_kb,
        &mut m.page_tables_kb,
        &mut m.cma_free_kb,
    ]
}

/// The vmstat counters in record order.
fn vm_fields(vm: &mut VmStat) -> [&mut u64; 8] {
    [
        &mut vm.nr_free_pages,
        &mut vm.nr_inactive_file,
        &mut vm.nr_active_file,
        &mut vm.pgscan_kswapd,
        &mut vm.pgscan_direct,
        &mut vm.pgscan_direct_throttle,
        &mut vm.pgrefill,
        &mut vm.workingset_refault_file,
    ]
}

/// Appends words to a fixed array (no allocation: the core uses it).
struct Put<'a> {
    w: &'a mut [u64; EVAL_WORDS],
    i: usize,
}

impl Put<'_> {
    fn word(&mut self, v: u64) {
        if let Some(slot) = self.w.get_mut(self.i) {
            *slot = v;
        }
        self.i += 1;
    }
    fn pair(&mut self, a: u32, b: u32) {
        self.word(pair(a, b));
    }
}

/// Takes words in order.
struct Take<'a> {
    w: &'a [u64; EVAL_WORDS],
    i: usize,
}

impl Take<'_> {
    fn word(&mut self) -> u64 {
        let v = self.w.get(self.i).copied().unwrap_or(0);
        self.i += 1;
        v
    }
    fn pair(&mut self) -> (u32, u32) {
        let w = self.word();
        (lo(w), hi(w))
    }
}

impl Eval {
    /// The record's words. Allocation-free: the core calls it.
    pub fn to_words(&self) -> [u64; EVAL_WORDS] {
        let mut w = [0u64; EVAL_WORDS];
        let mut p = Put { w: &mut w, i: 0 };
        let t = &self.tunables;
        let decision = self
            .kill
            .map_or(0, |k| 1 + reason_slot(k.reason.code()) as u64);
        let min_adj = self.kill.map_or(0, |k| k.min_adj);
        let flags = (self.event as u64)
            | (decision << 8)
            | (u64::from(self.poll == PollInterval::Fast) << 16)
            | (u64::from(self.extend_poll) << 17)
            | (u64::from(t.use_minfree_levels) << 18)
            | (u64::from(t.wait_for_inactive_file) << 19)
            | (u64::from(self.snap.known.bits()) << 20)
            | (u64::from(t.low_ram_device) << 23)
            | ((self.targets.as_slice().len() as u64) << 24)
            | (u64::from(t.critical_upgrade) << 28)
            | (u64::from(t.direct_reclaim_below_min) << 29)
            | (u64::from(self.poll == PollInterval::Lazy) << 30)
            | (u64::from(t.kill_ahead_ms > 0) << 31)
            | (u64::from(min_adj as u32) << 32);
        p.word(self.serial);
        p.word(flags);
        p.word(self.killed_before.map_or(0, |t| t.saturating_add(1)));
        p.word(
            (self.config_gen & CONFIG_GEN_MASK)
                | (u64::from(t.direct_reclaim_exit_wait_ms.min(0x7fff)) << 48)
                | (u64::from(self.exited_before) << 63),
        );
        let s = &self.snap;
        p.word(s.time_ms);
        let (mut m, mut vm) = (s.mem, s.vm);
        for f in mem_fields(&mut m).into_iter().chain(vm_fields(&mut vm)) {
            p.word(*f);
        }
        p.word(s.wm.min_kb);
        p.word(s.wm.low_kb);
        p.word(s.wm.high_kb);
        let psi = &s.psi;
        p.pair(psi.some_avg10, psi.some_avg60);
        p.pair(psi.some_avg300, psi.full_avg10);
        p.pair(psi.full_avg60, psi.full_avg300);
        p.word(psi.some_total_us);
        p.word(psi.full_total_us);
        p.pair(t.swap_free_low_percentage, t.swap_compression_ratio);
        p.pair(t.swap_util_max, t.thrashing_limit);
        p.pair(t.thrashing_limit_decay, t.thrashing_limit_critical);
        p.pair(t.stall_limit_critical, t.direct_reclaim_threshold_ms);
        p.pair(
            t.pressure_after_kill_min_score as u32,
            t.lowmem_min_oom_score as u32,
        );
        p.word(t.filecache_min_kb);
        p.word(t.complete_stall_us);
        p.word(t.page_kb | (u64::from(t.anticipate_partial_ms) << 32));
        for i in 0..MAX_TARGETS {
            let l = self.targets.as_slice().get(i).copied();
            p.pair(
                l.map_or(0, |l| l.minfree as u32),
                l.map_or(0, |l| l.adj as u32),
            );
        }
        let c = &self.census;
        p.pair(c[0], c[1]);
        p.pair(c[2], c[3]);
        p.pair(c[4], c[5]);
        p.pair(c[6], self.max_adj.unwrap_or(i32::MIN) as u32);
        let v = &t.vmpressure_adj;
        p.pair(v[0] as u32, v[1] as u32);
        p.pair(
            v[2] as u32,
            (t.upgrade_pressure & 0xffff) | (t.fast_after_kill_ms.min(0xffff) << 16),
        );
        p.pair(
            t.downgrade_pressure,
            (t.early_stall_ms & 0xffff) | (t.kill_ahead_ms.min(0xffff) << 16),
        );
        debug_assert_eq!(p.i, EVAL_WORDS);
        w
    }

    /// Decodes a record; the error says which field is impossible.
    pub fn from_words(w: &[u64; EVAL_WORDS]) -> Result<Eval, String> {
        let mut r = Take { w, i: 0 };
        let serial = r.word();
        let flags = r.word();
        let event = match flags & 0xff {
            0 => Pressure::Partial,
            1 => Pressure::Complete,
            2 => Pressure::Poll,
            3 => Pressure::Early,
            e => return Err(format!("event code {e} is not 0, 1, 2 or 3")),
        };
        let decision = (flags >> 8) & 0xff;
        let min_adj = hi(flags) as i32;
        let kill = match decision {
            0 => None,
            d => Some(Kill {
                reason: *REASONS
                    .get(d as usize - 1)
                    .ok_or_else(|| format!("decision code {d} names no kill reason"))?,
                min_adj,
            }),
        };
        let poll = match (flags & (1 << 16) != 0, flags & (1 << 30) != 0) {
            (false, false) => PollInterval::Slow,
            (true, false) => PollInterval::Fast,
            (false, true) => PollInterval::Lazy,
            (true, true) => return Err("polling both fast and lazy".to_string()),
        };
        let extend_poll = flags & (1 << 17) != 0;
        let ntargets = ((flags >> 24) & 0xf) as usize;
        if ntargets > MAX_TARGETS {
            return Err(format!(
                "{ntargets} LMK_TARGET levels (at most {MAX_TARGETS})"
            ));
        }
        let killed_before = r.word().checked_sub(1);
        let gen_word = r.word();
        let config_gen = gen_word & CONFIG_GEN_MASK;
        let exited_before = gen_word >> 63 != 0;
        let time_ms = r.word();
        let (mut m, mut vm) = (MemInfo::default(), VmStat::default());
        for f in mem_fields(&mut m).into_iter().chain(vm_fields(&mut vm)) {
            *f = r.word();
        }
        let wm = Watermarks {
            min_kb: r.word(),
            low_kb: r.word(),
            high_kb: r.word(),
        };
        let (some_avg10, some_avg60) = r.pair();
        let (some_avg300, full_avg10) = r.pair();
        let (full_avg60, full_avg300) = r.pair();
        let psi = PsiAvg {
            some_avg10,
            some_avg60,
            some_avg300,
            some_total_us: r.word(),
            full_avg10,
            full_avg60,
            full_avg300,
            full_total_us: r.word(),
        };
        let (swap_free_low_percentage, swap_compression_ratio) = r.pair();
        let (swap_util_max, thrashing_limit) = r.pair();
        let (thrashing_limit_decay, thrashing_limit_critical) = r.pair();
        let (stall_limit_critical, direct_reclaim_threshold_ms) = r.pair();
        let (pak, lowmem) = r.pair();
        let (filecache_min_kb, complete_stall_us, page_word) = (r.word(), r.word(), r.word());
        let tunables = Tunables {
            use_minfree_levels: flags & (1 << 18) != 0,
            swap_free_low_percentage,
            swap_compression_ratio,
            swap_util_max,
            thrashing_limit,
            thrashing_limit_decay,
            thrashing_limit_critical,
            filecache_min_kb,
            stall_limit_critical,
            pressure_after_kill_min_score: pak as i32,
            lowmem_min_oom_score: lowmem as i32,
            direct_reclaim_threshold_ms,
            complete_stall_us,
            page_kb: page_word & 0xffff_ffff,
            anticipate_partial_ms: (page_word >> 32) as u32,
            wait_for_inactive_file: flags & (1 << 19) != 0,
            low_ram_device: flags & (1 << 23) != 0,
            critical_upgrade: flags & (1 << 28) != 0,
            direct_reclaim_below_min: flags & (1 << 29) != 0,
            direct_reclaim_exit_wait_ms: ((gen_word >> 48) & 0x7fff) as u32,
            kill_ahead_ms: 0,
            fast_after_kill_ms: 0,
            // Read below, after the census.
            vmpressure_adj: [0; 3],
            upgrade_pressure: 0,
            downgrade_pressure: 0,
            early_stall_ms: 0,
        };
        let mut levels = [Target::default(); MAX_TARGETS];
        for l in levels.iter_mut() {
            let (minfree, adj) = r.pair();
            *l = Target {
                minfree: minfree as i32,
                adj: adj as i32,
            };
        }
        let targets = TargetTable::from_slice(&levels[..ntargets]).unwrap_or_default();
        let mut census = [0u32; BANDS.len()];
        for i in 0..3 {
            (census[2 * i], census[2 * i + 1]) = r.pair();
        }
        let (last, max_adj) = r.pair();
        census[6] = last;
        let max_adj = max_adj as i32;
        let mut tunables = tunables;
        let (low, medium) = r.pair();
        let (critical, upgrade) = r.pair();
        let (downgrade, stalls) = r.pair();
        tunables.vmpressure_adj = [low as i32, medium as i32, critical as i32];
        // Older recordings kept upgrade_pressure (0-100) alone: no fast
        // re-checks after a kill.
        tunables.upgrade_pressure = upgrade & 0xffff;
        tunables.fast_after_kill_ms = upgrade >> 16;
        tunables.downgrade_pressure = downgrade;
        // Builds that estimated the gate kept psi_partial_stall_ms in bits
        // 16-31; only flag bit 31 says they hold kill_ahead_ms.
        tunables.early_stall_ms = stalls & 0xffff;
        if flags & (1 << 31) != 0 {
            tunables.kill_ahead_ms = stalls >> 16;
        }
        Ok(Eval {
            serial,
            event,
            kill,
            poll,
            extend_poll,
            killed_before,
            exited_before,
            config_gen,
            snap: Snapshot {
                mem: m,
                vm,
                wm,
                psi,
                time_ms,
                known: Known::from_bits(((flags >> 20) & 0x7) as u8),
            },
            tunables,
            targets,
            census,
            max_adj: (max_adj != i32::MIN).then_some(max_adj),
        })
    }

    /// The adj band a kill with `min_adj` would take its victim from: the
    /// band of the highest adj in the table, if that is at or above it.
    pub fn band_hit(&self, min_adj: i32) -> Option<&'static str> {
        let top = self.max_adj.filter(|&a| a >= min_adj)?;
        Some(BANDS[band_of(top)].1)
    }
}

/// A recording read back.
#[derive(Clone, Debug)]
pub struct Recording {
    pub page_size: u32,
    pub config_toml: String,
    pub evals: Vec<Eval>,
    /// Bytes after the last whole record (a recording cut short).
    pub trailing: usize,
}

/// The file header.
pub fn header(page_size: u32, config_toml: &str) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN + config_toml.len());
    h.extend_from_slice(&MAGIC);
    h.extend_from_slice(&VERSION.to_le_bytes());
    h.extend_from_slice(&page_size.to_le_bytes());
    h.extend_from_slice(&(EVAL_WORDS as u32).to_le_bytes());
    h.extend_from_slice(&(config_toml.len() as u32).to_le_bytes());
    h.extend_from_slice(config_toml.as_bytes());
    h
}

/// One record's bytes.
pub fn record_bytes(w: &[u64; EVAL_WORDS]) -> Vec<u8> {
    w.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parses a recording file; errors say what is wrong and where.
pub fn decode(b: &[u8]) -> Result<Recording, String> {
    if b.len() < HEADER_LEN {
        return Err(format!(
            "{} bytes: too short for a recording header ({HEADER_LEN} bytes)",
            b.len()
        ));
    }
    if b[..8] != MAGIC {
        return Err("not an lmkd-rs recording (bad magic)".into());
    }
    let field = |at| u32_at(b, at).unwrap_or(0);
    let version = field(8);
    if version != VERSION {
        return Err(format!(
            "recording format version {version}; this lmkctl reads version {VERSION}"
        ));
    }
    let page_size = field(12);
    let words = field(16) as usize;
    if words != EVAL_WORDS {
        return Err(format!(
            "records of {words} words; version {VERSION} has {EVAL_WORDS}"
        ));
    }
    let clen = field(20) as usize;
    let body = b
        .get(HEADER_LEN..HEADER_LEN + clen)
        .ok_or_else(|| format!("configuration text of {clen} bytes runs past the end"))?;
    let config_toml = String::from_utf8(body.to_vec())
        .map_err(|e| format!("configuration text is not UTF-8: {e}"))?;
    let recs = &b[HEADER_LEN + clen..];
    let size = EVAL_WORDS * 8;
    let mut evals = Vec::with_capacity(recs.len() / size);
    for (i, chunk) in recs.chunks_exact(size).enumerate() {
        let w: [u64; EVAL_WORDS] = std::array::from_fn(|j| {
            u64::from_le_bytes(chunk[j * 8..j * 8 + 8].try_into().unwrap_or_default())
        });
        evals.push(Eval::from_words(&w).map_err(|e| format!("record {}: {e}", i + 1))?);
    }
    Ok(Recording {
        page_size,
        config_toml,
        evals,
        trailing: recs.len() % size,
    })
}

/// What the replay decided at one recorded evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub kill: Option<Kill>,
    pub poll: PollInterval,
    pub extend_poll: bool,
    /// The kill was applied to the policy's state (carried out, in the
    /// replay's model).
    pub carried_out: bool,
}

impl Step {
    /// Whether it matches the recorded decision.
    pub fn same_as(&self, e: &Eval) -> bool {
        self.kill == e.kill && self.poll == e.poll && self.extend_poll == e.extend_poll
    }
}

/// Runs the policy over `evals` with each record's own tunables, or with
/// `over` throughout (its `page_kb` replaced by the recording's).
pub fn replay(evals: &[Eval], over: Option<&Tunables>) -> Vec<Step> {
    let mut st = policy::State::new();
    let mut out: Vec<Step> = Vec::with_capacity(evals.len());
    // A kill the replay decided that the recording did not, assumed carried
    // out before the next evaluation.
    let mut assumed: Option<usize> = None;
    for (i, e) in evals.iter().enumerate() {
        if let Some(t) = e.killed_before {
            // The recorded kill came from the latest evaluation at that
            // snapshot time that decided one.
            let from = (0..i)
                .rev()
                .find(|&j| evals[j].snap.time_ms == t && evals[j].kill.is_some());
            if let Some(j) = from {
                if let Some(k) = out[j].kill {
                    st.on_kill(&evals[j].snap, &k);
                    out[j].carried_out = true;
                }
            }
        }
        // The recorded victim's exit; a kill only the replay made has no
        // exit on record (its wait ends by time alone).
        if e.exited_before {
            st.on_exit();
        }
        if let Some(j) = assumed.take() {
            if let Some(k) = out[j].kill {
                st.on_kill(&evals[j].snap, &k);
                out[j].carried_out = true;
            }
        }
        let t = match over {
            Some(o) => Tunables {
                page_kb: e.tunables.page_kb,
                ..*o
            },
            None => e.tunables,
        };
        let d = policy::decide(&e.snap, e.event, &t, &e.targets, &mut st);
        if let Some(k) = d.kill {
            if e.kill.is_none() && e.band_hit(k.min_adj).is_some() {
                assumed = Some(i);
            }
        }
        out.push(Step {
            kill: d.kill,
            poll: d.poll,
            extend_poll: d.extend_poll,
            carried_out: false,
        });
    }
    // A kill decided at the last evaluation would have been carried out too.
    if let Some(j) = assumed {
        out[j].carried_out = true;
    }
    out
}

/// The limit every replay output states.
pub const LIMIT: &str = "a replay cannot know how memory would have recovered after a kill \
the recording did not make (or would not have made): it shows where the settings decide \
differently, not what would have happened after";

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(serial: u64) -> Eval {
        let mut snap = Snapshot {
            time_ms: 1000 + serial,
            ..Snapshot::default()
        };
        snap.mem.free_kb = 12_345;
        snap.mem.cma_free_kb = 7;
        snap.vm.workingset_refault_file = 99;
        snap.wm.high_kb = 5;
        snap.psi.full_avg300 = 4321;
        snap.psi.full_total_us = u64::MAX - 3;
        let c = crate::config::Config::default();
        Eval {
            serial,
            event: Pressure::Complete,
            kill: Some(Kill {
                reason: KillReason::Minfree,
                min_adj: -900,
            }),
            poll: PollInterval::Fast,
            extend_poll: true,
            killed_before: Some(0),
            exited_before: true,
            config_gen: 3,
            snap,
            tunables: Tunables::from_config(&c),
            targets: TargetTable::from_slice(&crate::proto::AMS_PHONE_TARGETS[..4]).unwrap(),
            census: [1, 2, 3, 4, 5, 6, 70_000],
            max_adj: Some(-1000),
        }
    }

    #[test]
    fn records_round_trip() {
        for e in [
            sample(1),
            Eval {
                kill: None,
                killed_before: None,
                exited_before: false,
                max_adj: None,
                event: Pressure::Poll,
                poll: PollInterval::Slow,
                extend_poll: false,
                ..sample(2)
            },
            Eval {
                event: Pressure::Early,
                poll: PollInterval::Lazy,
                ..sample(3)
            },
            Eval {
                tunables: Tunables {
                    anticipate_partial_ms: 70,
                    ..sample(4).tunables
                },
                ..sample(4)
            },
            Eval {
                tunables: Tunables {
                    fast_after_kill_ms: 1000,
                    upgrade_pressure: 100,
                    ..sample(5).tunables
                },
                ..sample(5)
            },
        ] {
            assert_eq!(Eval::from_words(&e.to_words()), Ok(e));
        }
    }

    /// Builds that estimated the early gate kept psi_partial_stall_ms in
    /// word 59's bits 16-31 with flag bit 31 clear: that is no kill_ahead_ms.
    #[test]
    fn older_records_replay_with_no_kill_ahead() {
        let e = sample(1);
        assert!(e.tunables.kill_ahead_ms > 0);
        let mut w = e.to_words();
        w[1] &= !(1 << 31);
        w[59] = (w[59] & !(0xffff << 48)) | (70 << 48);
        let old = Eval::from_words(&w).unwrap();
        assert_eq!(old.tunables.kill_ahead_ms, 0);
        assert_eq!(old.tunables.early_stall_ms, e.tunables.early_stall_ms);
    }

    /// Older builds kept upgrade_pressure alone in word 58's upper half:
    /// they made no fast re-checks after a kill.
    #[test]
    fn older_records_replay_with_no_fast_rechecks_after_a_kill() {
        let e = Eval {
            tunables: Tunables {
                fast_after_kill_ms: 300,
                ..sample(1).tunables
            },
            ..sample(1)
        };
        let mut w = e.to_words();
        w[58] = (w[58] & 0xffff_ffff) | (80 << 32);
        let old = Eval::from_words(&w).unwrap();
        assert_eq!(old.tunables.fast_after_kill_ms, 0);
        assert_eq!(old.tunables.upgrade_pressure, 80);
    }

    #[test]
    fn files_round_trip_and_bad_ones_say_why() {
        let mut f = header(16384, "thrashing_limit = 30\n");
        for s in 1..=3 {
            f.extend(record_bytes(&sample(s).to_words()));
        }
        let r = decode(&f).unwrap();
        assert_eq!(r.page_size, 16384);
        assert_eq!(r.config_toml, "thrashing_limit = 30\n");
        assert_eq!(r.evals.len(), 3);
        assert_eq!(r.evals[2], sample(3));
        assert_eq!(r.trailing, 0);

        let mut cut = f.clone();
        cut.truncate(f.len() - 5);
        let r = decode(&cut).unwrap();
        assert_eq!((r.evals.len(), r.trailing), (2, EVAL_WORDS * 8 - 5));

        assert!(decode(&f[..10]).unwrap_err().contains("too short"));
        let mut bad = f.clone();
        bad[0] = b'X';
        assert!(decode(&bad).unwrap_err().contains("magic"));
        let mut bad = f.clone();
        bad[8] = 9;
        assert!(decode(&bad).unwrap_err().contains("version 9"));
        let mut bad = f.clone();
        // Record 2's event code.
        let at = HEADER_LEN + 21 + EVAL_WORDS * 8 + 8;
        bad[at] = 7;
        assert_eq!(
            decode(&bad).unwrap_err(),
            "record 2: event code 7 is not 0, 1, 2 or 3"
        );
    }

    /// What the daemon does, on data: every kill decided is carried out
    /// (the policy told) before the next evaluation, and its victim exits
    /// `exit_after` evaluations later (None: never seen to). Moderate
    /// thrashing (60%) from the 5th evaluation, heavy (180% a window) from
    /// the 20th.
    fn thrash_scenario(t: &Tunables, exit_after: Option<u64>) -> Vec<Eval> {
        let mut snap = Snapshot::default();
        snap.mem.free_kb = 50_000;
        snap.mem.swap_total_kb = 1_000_000;
        snap.mem.swap_free_kb = 10_000;
        snap.mem.inactive_file_kb = 20_000;
        snap.wm = Watermarks {
            min_kb: 1000,
            low_kb: 2000,
            high_kb: 3000,
        };
        snap.vm.nr_inactive_file = 5000;
        snap.vm.nr_active_file = 5000;
        let targets = TargetTable::default();
        let mut st = policy::State::new();
        let mut pending: Option<(Snapshot, Kill)> = None;
        let mut exit_due = None;
        let mut out = Vec::new();
        for i in 0..40u64 {
            snap.time_ms = 1000 + 100 * i;
            snap.vm.pgscan_direct += 1000;
            if i == 5 {
                snap.vm.workingset_refault_file += 6000;
            }
            if i >= 20 && i % 10 == 0 {
                snap.vm.workingset_refault_file += 18_000;
            }
            let before = pending.take();
            if let Some((s, k)) = &before {
                st.on_kill(s, k);
                exit_due = exit_after.map(|n| i + n);
            }
            let exited = exit_due == Some(i);
            if exited {
                st.on_exit();
            }
            let d = policy::decide(&snap, Pressure::Partial, t, &targets, &mut st);
            pending = d.kill.map(|k| (snap, k));
            out.push(Eval {
                serial: i + 1,
                event: Pressure::Partial,
                kill: d.kill,
                poll: d.poll,
                extend_poll: d.extend_poll,
                killed_before: before.map(|(s, _)| s.time_ms),
                exited_before: exited,
                config_gen: 0,
                snap,
                tunables: *t,
                targets,
                census: [0, 0, 0, 0, 0, 0, 3],
                max_adj: Some(950),
            });
        }
        out
    }

    fn first_kill(steps: &[Step]) -> Option<usize> {
        steps.iter().position(|s| s.carried_out)
    }

    /// lmkd's rows: the scenario keeps swap low and reclaims directly,
    /// which with ours kills before any thrashing does.
    fn lmkd_rows() -> Tunables {
        Tunables {
            direct_reclaim_below_min: false,
            ..Tunables::from_config(&crate::config::Config::default())
        }
    }

    #[test]
    fn replay_reproduces_the_recorded_decisions_and_kills() {
        let t = lmkd_rows();
        let evals = thrash_scenario(&t, None);
        let kills = evals.iter().filter(|e| e.kill.is_some()).count();
        assert!(kills >= 2, "the scenario should kill a few times");
        let steps = replay(&evals, None);
        for (e, s) in evals.iter().zip(&steps) {
            assert!(s.same_as(e), "serial {}: {s:?} vs {e:?}", e.serial);
        }
        // Kills are applied where the daemon applied them (not the last,
        // which no later evaluation saw happen).
        let carried = steps.iter().filter(|s| s.carried_out).count();
        assert_eq!(carried, kills - usize::from(evals[39].kill.is_some()));
        // The same tunables given explicitly decide the same.
        let again = replay(&evals, Some(&t));
        assert_eq!(again, steps);
    }

    /// Ours (`direct_reclaim_exit_wait_ms`): the scenario reclaims
    /// directly with swap low throughout, so each kill is followed by one
    /// as soon as the victim's exit ends the wait. The replay takes the
    /// exits from the recording: without them it waits out the 500 ms.
    #[test]
    fn replay_follows_the_recorded_exits() {
        let t = Tunables::from_config(&crate::config::Config::default());
        assert_eq!(t.direct_reclaim_exit_wait_ms, 500);
        let evals = thrash_scenario(&t, Some(1));
        let kills: Vec<usize> = (0..evals.len())
            .filter(|&i| evals[i].kill.is_some())
            .collect();
        // A kill; the call after it leaves its counters out; the victim's
        // exit before the next ends the wait, and that call kills.
        assert_eq!(kills[..3], [1, 3, 5]);
        let steps = replay(&evals, None);
        for (e, s) in evals.iter().zip(&steps) {
            assert!(s.same_as(e), "serial {}: {s:?} vs {e:?}", e.serial);
        }
        let unseen: Vec<Eval> = evals
            .iter()
            .map(|e| Eval {
                exited_before: false,
                ..*e
            })
            .collect();
        let waited = replay(&unseen, None);
        let first_two: Vec<usize> = (0..waited.len())
            .filter(|&i| waited[i].kill.is_some())
            .take(2)
            .collect();
        assert_eq!(first_two, [1, 6], "500 ms after the kill at 1");
        // Words keep the exits and the wait.
        let back = Eval::from_words(&evals[3].to_words()).unwrap();
        assert_eq!(
            (
                back.exited_before,
                back.tunables.direct_reclaim_exit_wait_ms
            ),
            (true, 500)
        );
    }

    #[test]
    fn a_lower_thrashing_limit_kills_first_where_a_victim_exists() {
        let t = lmkd_rows();
        let evals = thrash_scenario(&t, None);
        let low = Tunables {
            thrashing_limit: 30,
            ..t
        };
        let a = first_kill(&replay(&evals, None)).unwrap();
        let b = first_kill(&replay(&evals, Some(&low))).unwrap();
        assert_eq!(b, 5, "60% thrashing is over a limit of 30");
        assert!(a >= 20, "the recorded limit waits for heavy thrashing: {a}");
        // Without anyone at or above its min adj, a kill the recording did
        // not make is not assumed to happen.
        let empty: Vec<Eval> = evals
            .iter()
            .map(|e| Eval {
                max_adj: Some(100),
                ..*e
            })
            .collect();
        let steps = replay(&empty, Some(&low));
        assert!(steps[5].kill.is_some() && !steps[5].carried_out);
    }

    #[test]
    fn band_hit_needs_a_process_at_or_above_min_adj() {
        let e = Eval {
            max_adj: Some(950),
            ..sample(1)
        };
        assert_eq!(e.band_hit(201), Some("cached (900-1000)"));
        assert_eq!(e.band_hit(951), None);
    }
}
