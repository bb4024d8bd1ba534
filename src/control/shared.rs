//! What the core publishes for the control thread: counters, histograms
//! and a kill ring in memory allocated at start-up, written by the core
//! with plain atomic stores and never waited on.
//!
//! Every record the control thread reads whole (a kill, a table chunk) sits
//! behind a sequence number: the core makes it odd, writes, makes it even;
//! a reader that sees it change (or odd) reads again. The core never
//! learns whether anyone reads at all.
//!
//! The policy's evaluations (inputs and decisions, for `lmkctl record`)
//! go into a ring of the same cells: [`RECORD_RING`] records of
//! [`crate::record::EVAL_WORDS`] words, one written per evaluation.
//!
//! Long because both sides of each shared record live here (the core's
//! writer on [`Publisher`], the control thread's reader on [`Shared`]),
//! so a layout change is made in one place.

use std::cell::Cell;
use std::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU64, Ordering};

use crate::config::Config;
use crate::history::{KillRecord, HISTORY};
use crate::policy::{Decision, KillReason, Pressure, Tunables};
use crate::proto::TargetTable;
use crate::record::{Eval, EVAL_WORDS};
use crate::snapshot::Snapshot;
use crate::table::{Proc, ProcTable};

/// One record made of `W` words, written by one thread and read by any,
/// without locks (a seqlock).
pub struct SeqCell<const W: usize> {
    seq: AtomicU64,
    words: [AtomicU64; W],
}

impl<const W: usize> Default for SeqCell<W> {
    fn default() -> Self {
        SeqCell {
            seq: AtomicU64::new(0),
            words: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl<const W: usize> SeqCell<W> {
    /// Single writer only (the core).
    pub fn write(&self, v: &[u64; W]) {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        // Readers that see any new word also see the odd sequence.
        fence(Ordering::Release);
        for (w, &x) in self.words.iter().zip(v) {
            w.store(x, Ordering::Relaxed);
        }
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }

    /// A consistent copy, or None after a few torn attempts (the writer is
    /// busy on this very record; the caller tries later).
    pub fn read(&self) -> Option<[u64; W]> {
        for _ in 0..64 {
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let v: [u64; W] = std::array::from_fn(|i| self.words[i].load(Ordering::Relaxed));
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == s1 {
                return Some(v);
            }
        }
        None
    }
}

/// A kill as the control thread sees it. Plain integers and bytes only, so
/// any bit pattern is a valid value (it travels as words).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KillEntry {
    /// 1 for the first kill since start, and so on.
    pub serial: u64,
    /// CLOCK_MONOTONIC of the signal, ms.
    pub time_ms: u64,
    pub pid: i32,
    pub uid: i32,
    pub adj: i32,
    pub min_adj: i32,
    /// The reason's slot ([`kill_slot`]): its statsd code, or 10-12 for
    /// minfree, vmpressure and the watchdog.
    pub reason: i32,
    pub thrashing: i32,
    pub rss_kb: u64,
    pub swap_kb: u64,
    pub free_kb: i64,
    pub free_swap_kb: i64,
    pub event_to_signal_us: u64,
    /// 0 until the victim's exit is seen.
    pub signal_to_exit_us: u64,
    /// Signal to end of `process_mrelease`; 0 until known or when skipped.
    pub reap_us: u64,
    pub dry_run: u32,
    pub name_len: u32,
    pub name: [u8; 64],
}

/// Words in a [`KillEntry`].
pub const KILL_WORDS: usize = std::mem::size_of::<KillEntry>() / 8;
const _: () = assert!(std::mem::size_of::<KillEntry>() % 8 == 0);

impl Default for KillEntry {
    fn default() -> Self {
        KillEntry::from_words([0; KILL_WORDS])
    }
}

impl KillEntry {
    fn to_words(self) -> [u64; KILL_WORDS] {
        // SAFETY: KillEntry is repr(C), its size is KILL_WORDS * 8 (checked
        // by transmute) and it has no padding (all fields are laid out in
        // 8-byte groups); every bit pattern is valid for both types.
        unsafe { std::mem::transmute::<KillEntry, [u64; KILL_WORDS]>(self) }
    }

    fn from_words(w: [u64; KILL_WORDS]) -> KillEntry {
        // SAFETY: as in to_words: integers and bytes only, same size.
        unsafe { std::mem::transmute::<[u64; KILL_WORDS], KillEntry>(w) }
    }

    pub fn name(&self) -> String {
        let n = (self.name_len as usize).min(self.name.len());
        String::from_utf8_lossy(&self.name[..n]).into_owned()
    }

    /// The reason's slot; words that say none read as minfree.
    pub fn reason_slot(&self) -> usize {
        usize::try_from(self.reason)
            .ok()
            .filter(|&s| s < REASON_SLOTS)
            .unwrap_or_else(|| reason_slot(-1))
    }

    fn from_record(serial: u64, r: &KillRecord) -> KillEntry {
        let mut e = KillEntry {
            serial,
            time_ms: r.time_ms,
            pid: r.pid,
            uid: r.uid,
            adj: r.adj,
            min_adj: r.min_adj(),
            reason: kill_slot(r.kill.reason) as i32,
            thrashing: r.figures.thrashing_pct.min(i32::MAX as u64) as i32,
            rss_kb: r.rss_kb,
            swap_kb: r.swap_kb,
            free_kb: r.figures.free_kb.min(i64::MAX as u64) as i64,
            free_swap_kb: r.figures.free_swap_kb.min(i64::MAX as u64) as i64,
            event_to_signal_us: r.event_to_signal_us,
            dry_run: r.dry_run as u32,
            ..KillEntry::default()
        };
        let name = r.name().as_bytes();
        let n = name.len().min(e.name.len());
        e.name[..n].copy_from_slice(&name[..n]);
        e.name_len = n as u32;
        e
    }
}

/// Power-of-two buckets of microseconds: bucket 0 is 0 us, bucket i holds
/// [2^(i-1), 2^i) us; the last one everything above ~1 h.
pub const HIST_BUCKETS: usize = 33;

pub struct Histogram {
    pub buckets: [AtomicU64; HIST_BUCKETS],
    pub sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: zeros(),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn bucket_of(us: u64) -> usize {
        ((64 - us.leading_zeros()) as usize).min(HIST_BUCKETS - 1)
    }

    fn add(&self, us: u64) {
        self.buckets[Self::bucket_of(us)].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn counts(&self) -> [u64; HIST_BUCKETS] {
        std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed))
    }
}

/// adj bands kills are counted in (upper bounds, inclusive), named as
/// Android names the levels.
pub const BANDS: [(i32, &str); 7] = [
    (-1, "native/persistent (<0)"),
    (99, "foreground (0-99)"),
    (199, "visible (100-199)"),
    (299, "perceptible (200-299)"),
    (599, "service/backup/heavy (300-599)"),
    (899, "home/previous/service-b (600-899)"),
    (1000, "cached (900-1000)"),
];

pub fn band_of(adj: i32) -> usize {
    BANDS
        .iter()
        .position(|&(hi, _)| adj <= hi)
        .unwrap_or(BANDS.len() - 1)
}

/// statsd reason codes 0..=9, then the three reasons statsd reports as
/// -1: minfree, vmpressure and the watchdog.
pub const REASON_SLOTS: usize = 13;

/// The slot of a statsd code (-1 and anything unknown: minfree).
pub fn reason_slot(code: i32) -> usize {
    if (0..10).contains(&code) {
        code as usize
    } else {
        10
    }
}

/// The slot of a kill's reason, which tells apart the reasons that share
/// statsd's -1.
pub fn kill_slot(reason: KillReason) -> usize {
    match reason {
        KillReason::VmPressure => 11,
        KillReason::Watchdog => 12,
        r => reason_slot(r.code()),
    }
}

/// The statsd code of a slot.
pub fn slot_code(slot: usize) -> i32 {
    if slot < 10 {
        slot as i32
    } else {
        -1
    }
}

/// Pressure levels counted, in `Pressure`'s order: partial, complete,
/// re-checks by the timer, and the early trigger.
pub const LEVELS: [&str; 4] = ["partial", "complete", "poll", "early"];

/// Command ids counted (lmkd's 0..=11).
pub const COMMANDS: usize = 12;

/// Evaluations the daemon keeps for `lmkctl record` ("the recent past").
/// 64 records of 488 bytes (30 kB, locked with the rest): about 6 s of
/// slow (100 ms) re-checks, or 640 ms of fast (10 ms) ones, which only run
/// while swap is low or right after a kill; `lmkctl record` follows live
/// beyond that, polling every 200 ms, so a follower loses nothing. 256
/// cost 92 kB more resident memory, a tenth of the daemon's budget.
pub const RECORD_RING: usize = 64;

/// A table row as it travels: two words.
pub const TABLE_WORDS: usize = 2;

/// Records the core copies per wakeup while serving a table read
/// (16 bytes each: 4 KiB).
pub const TABLE_CHUNK: usize = 256;

fn pack(p: &Proc) -> [u64; TABLE_WORDS] {
    [
        (p.pid as u32 as u64) | ((p.uid as u32 as u64) << 32),
        (p.adj as u16 as u64) | ((p.ptype as u64) << 16) | ((p.owner as u32 as u64) << 32),
    ]
}

/// A table row read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    pub pid: i32,
    pub uid: i32,
    pub adj: i16,
    pub ptype: u8,
    pub owner: i32,
}

fn unpack(w: [u64; TABLE_WORDS]) -> Row {
    Row {
        pid: w[0] as u32 as i32,
        uid: (w[0] >> 32) as u32 as i32,
        adj: w[1] as u16 as i16,
        ptype: (w[1] >> 16) as u8,
        owner: (w[1] >> 32) as u32 as i32,
    }
}

/// Everything both sides share. Created once before the core runs.
pub struct Shared {
    pub start_ns: u64,
    pub pressure: [AtomicU64; 4],
    pub commands: [AtomicU64; COMMANDS],
    pub refused_commands: AtomicU64,
    pub refused_connections: AtomicU64,
    pub dropped_notes: AtomicU64,
    pub kills_by_reason: [AtomicU64; REASON_SLOTS],
    pub kills_by_band: [AtomicU64; BANDS.len()],
    pub event_to_signal: Histogram,
    pub signal_to_exit: Histogram,
    pub reap: Histogram,
    pub table_len: AtomicU64,
    pub table_cap: AtomicU64,
    /// Kills published so far; kill n lives in `kills[(n - 1) % HISTORY]`.
    pub kill_count: AtomicU64,
    kills: Box<[SeqCell<KILL_WORDS>]>,

    // --- requests from the control thread ---------------------------------
    /// Table reads asked for / finished (equal: idle).
    pub table_asked: AtomicU64,
    pub table_done: AtomicU64,
    /// Rows in `table` for the last finished read.
    pub table_rows: AtomicU64,
    table: Box<[SeqCell<TABLE_WORDS>]>,
    /// A validated configuration for the core to apply (single slot).
    mailbox: AtomicPtr<Config>,
    pub reload_asked: AtomicBool,
    /// Configuration changes asked for / finished, and the last outcome.
    pub change_asked: AtomicU64,
    pub change_done: AtomicU64,
    pub change_ok: AtomicBool,
    /// The configuration in force, published by the core after each change
    /// (the core hands the old one to the loader thread to free).
    current: AtomicPtr<Published>,
    /// Bumped each time the configuration in force changes.
    pub config_gen: AtomicU64,
    /// Evaluations published so far; evaluation n lives in
    /// `evals[(n - 1) % evals.len()]`.
    pub eval_count: AtomicU64,
    evals: Box<[SeqCell<EVAL_WORDS>]>,
}

// SAFETY: the raw pointers in the two slots are owned boxes (a Config, a
// Published) handed over with atomic swaps: exactly one side holds each at
// any time.
unsafe impl Sync for Shared {}
// SAFETY: as above.
unsafe impl Send for Shared {}

fn zeros<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

impl Shared {
    pub fn new(table_capacity: usize, config: &Config) -> Shared {
        Shared {
            start_ns: crate::sys::monotonic_ns(),
            pressure: zeros(),
            commands: zeros(),
            refused_commands: AtomicU64::new(0),
            refused_connections: AtomicU64::new(0),
            dropped_notes: AtomicU64::new(0),
            kills_by_reason: zeros(),
            kills_by_band: zeros(),
            event_to_signal: Histogram::default(),
            signal_to_exit: Histogram::default(),
            reap: Histogram::default(),
            table_len: AtomicU64::new(0),
            table_cap: AtomicU64::new(table_capacity as u64),
            kill_count: AtomicU64::new(0),
            kills: (0..HISTORY).map(|_| SeqCell::default()).collect(),
            table_asked: AtomicU64::new(0),
            table_done: AtomicU64::new(0),
            table_rows: AtomicU64::new(0),
            table: (0..table_capacity).map(|_| SeqCell::default()).collect(),
            mailbox: AtomicPtr::new(std::ptr::null_mut()),
            reload_asked: AtomicBool::new(false),
            change_asked: AtomicU64::new(0),
            change_done: AtomicU64::new(0),
            change_ok: AtomicBool::new(false),
            current: AtomicPtr::new(Box::into_raw(Published::new(config.clone()))),
            config_gen: AtomicU64::new(0),
            eval_count: AtomicU64::new(0),
            evals: Box::new([]),
        }
    }

    /// Keeps the last `n` evaluations for recording (none by default: a
    /// detached publisher has no reader).
    pub fn recording(mut self, n: usize) -> Shared {
        self.evals = (0..n).map(|_| SeqCell::default()).collect();
        self
    }

    /// How many evaluations the ring holds.
    pub fn eval_capacity(&self) -> usize {
        self.evals.len()
    }

    /// Evaluation `serial` (1-based) as words, if it is still in the ring.
    pub fn eval(&self, serial: u64) -> Option<[u64; EVAL_WORDS]> {
        let n = self.evals.len() as u64;
        if serial == 0 || n == 0 {
            return None;
        }
        let cell = &self.evals[((serial - 1) % n) as usize];
        for _ in 0..16 {
            let w = cell.read()?;
            match w[0].cmp(&serial) {
                std::cmp::Ordering::Equal => return Some(w),
                // Overwritten by a newer one: lost.
                std::cmp::Ordering::Greater => return None,
                // The core is publishing it right now.
                std::cmp::Ordering::Less => std::thread::yield_now(),
            }
        }
        None
    }

    /// Kill `serial` (1-based), if it is still in the ring.
    pub fn kill(&self, serial: u64) -> Option<KillEntry> {
        if serial == 0 {
            return None;
        }
        let cell = &self.kills[((serial - 1) % HISTORY as u64) as usize];
        for _ in 0..16 {
            let e = KillEntry::from_words(cell.read()?);
            if e.serial == serial {
                return Some(e);
            }
            if e.serial > serial {
                return None;
            }
            // The core is publishing it right now.
            std::thread::yield_now();
        }
        None
    }

    /// Row `i` of the last finished table read.
    pub fn row(&self, i: usize) -> Option<Row> {
        self.table.get(i)?.read().map(unpack)
    }

    /// Control side: leaves a configuration for the core. Fails (giving it
    /// back) while an earlier one is still waiting.
    pub fn post_config(&self, c: Box<Config>) -> Result<(), Box<Config>> {
        let p = Box::into_raw(c);
        match self.mailbox.compare_exchange(
            std::ptr::null_mut(),
            p,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Ok(()),
            // SAFETY: p came from Box::into_raw above and was not published.
            Err(_) => Err(unsafe { Box::from_raw(p) }),
        }
    }

    fn take_config(&self) -> Option<Box<Config>> {
        replace(&self.mailbox, None)
    }

    /// Control side: a copy of the configuration in force.
    pub fn current_config(&self) -> Config {
        self.with_current(|p| p.config.clone())
    }

    /// Control side: the configuration in force as TOML, formatted when it
    /// was published, copied into `buf` (`lmkctl record` asks for it with
    /// every batch; the buffer is the connection's, reused).
    pub fn copy_toml(&self, buf: &mut String) {
        self.with_current(|p| {
            buf.clear();
            buf.push_str(&p.toml);
        })
    }

    fn with_current<R>(&self, f: impl FnOnce(&Published) -> R) -> R {
        // Take it out so the core cannot free it while we read; put it back
        // unless the core published a newer one meanwhile.
        loop {
            let Some(b) = replace(&self.current, None) else {
                std::thread::yield_now();
                continue;
            };
            let out = f(&b);
            let back = Box::into_raw(b);
            if self
                .current
                .compare_exchange(
                    std::ptr::null_mut(),
                    back,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_err()
            {
                // SAFETY: `back` was not republished; we still own it.
                drop(unsafe { Box::from_raw(back) });
            }
            return out;
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        drop(replace(&self.mailbox, None));
        drop(replace(&self.current, None));
    }
}

/// Puts `new` (or nothing) in one of the two configuration slots and
/// returns what was there. Every pointer stored in them is a box given up
/// with `Box::into_raw` (`post_config`, `with_current`, publishing, here),
/// and the swap hands it to exactly one side.
fn replace<T>(slot: &AtomicPtr<T>, new: Option<Box<T>>) -> Option<Box<T>> {
    let p = slot.swap(
        new.map_or(std::ptr::null_mut(), Box::into_raw),
        Ordering::AcqRel,
    );
    // SAFETY: a non-null pointer in a slot is an owned box (above), and
    // the swap made this caller its only owner.
    (!p.is_null()).then(|| unsafe { Box::from_raw(p) })
}

/// The configuration in force with its TOML text, both made off the core
/// (at start-up, and by the loader for a change): readers copy the text
/// instead of formatting it, which keeps the formatting code out of a
/// recording daemon's memory.
pub struct Published {
    pub config: Config,
    pub toml: String,
}

impl Published {
    pub fn new(config: Config) -> Box<Published> {
        let toml = config.to_toml();
        Box::new(Published { config, toml })
    }
}

/// What the core must do for the control thread after a wakeup.
pub enum Ask {
    Nothing,
    /// Re-read the configuration sources (as UPDATE_PROPS).
    Reload,
    /// Apply this validated configuration.
    Apply(Box<Config>),
}

/// The core's handle: each publishing call is one line at its call site
/// and costs a few atomic operations.
pub struct Publisher {
    pub shared: std::sync::Arc<Shared>,
    /// The newest kill, kept here so exit and reap times can be added.
    last: Cell<KillEntry>,
    /// 1 + the snapshot time of the evaluation whose kill the policy was
    /// told about since the last evaluation (0: none).
    killed_before: Cell<u64>,
    /// The policy was told of its last victim's exit since the last
    /// evaluation.
    exited_before: Cell<bool>,
    /// Table read in progress: next slot to look at, rows copied.
    cursor: Cell<usize>,
    rows: Cell<usize>,
    bell: crate::control::Bell,
    reply: crate::control::Bell,
    /// The socket file to remove at exit (None: init's socket).
    pub(crate) bound: Option<std::path::PathBuf>,
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if let Some(p) = &self.bound {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Publisher {
    pub fn new(
        shared: std::sync::Arc<Shared>,
        bell: crate::control::Bell,
        reply: crate::control::Bell,
    ) -> Publisher {
        Publisher {
            shared,
            last: Cell::new(KillEntry::default()),
            killed_before: Cell::new(0),
            exited_before: Cell::new(false),
            cursor: Cell::new(0),
            rows: Cell::new(0),
            bell,
            reply,
            bound: None,
        }
    }

    /// A publisher nobody reads (no socket, no table copy): what the core
    /// holds until, or unless, a control socket is attached.
    pub fn detached(config: &Config) -> std::io::Result<Publisher> {
        let shared = std::sync::Arc::new(Shared::new(0, config));
        let bell = crate::control::Bell::new("eventfd for control requests")?;
        let reply = crate::control::Bell::new("eventfd for control replies")?;
        Ok(Publisher::new(shared, bell, reply))
    }

    /// The doorbell the control thread rings (for the core's epoll set).
    pub fn doorbell(&self) -> std::os::fd::BorrowedFd<'_> {
        self.bell.fd()
    }

    pub fn pressure(&self, level: usize) {
        if let Some(c) = self.shared.pressure.get(level) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn command(&self, id: i32) {
        if let Some(c) = self.shared.commands.get(id as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Once per wakeup: table use and the reporter's counters.
    pub fn tick(&self, table: &ProcTable, report: &crate::report::Reporter) {
        let s = &self.shared;
        s.table_len.store(table.len() as u64, Ordering::Relaxed);
        s.dropped_notes.store(report.dropped(), Ordering::Relaxed);
        let (cmds, conns) = report.refusals();
        s.refused_commands.store(cmds, Ordering::Relaxed);
        s.refused_connections.store(conns, Ordering::Relaxed);
    }

    pub fn kill(&self, r: &KillRecord) {
        let s = &self.shared;
        let serial = s.kill_count.load(Ordering::Relaxed) + 1;
        let e = KillEntry::from_record(serial, r);
        self.last.set(e);
        s.kills[((serial - 1) % HISTORY as u64) as usize].write(&e.to_words());
        s.kill_count.store(serial, Ordering::Release);
        s.kills_by_reason[kill_slot(r.kill.reason)].fetch_add(1, Ordering::Relaxed);
        s.kills_by_band[band_of(r.adj)].fetch_add(1, Ordering::Relaxed);
        s.event_to_signal.add(r.event_to_signal_us);
    }

    /// One policy evaluation, for recording: a census of the table and a
    /// few dozen atomic stores. No allocation.
    pub fn evaluated(
        &self,
        event: Pressure,
        snap: &Snapshot,
        d: &Decision,
        tunables: &Tunables,
        reg: &crate::commands::Registry,
    ) {
        self.record(event, snap, d, tunables, &reg.targets, &reg.table);
    }

    pub(super) fn record(
        &self,
        event: Pressure,
        snap: &Snapshot,
        d: &Decision,
        tunables: &Tunables,
        targets: &TargetTable,
        table: &ProcTable,
    ) {
        let s = &self.shared;
        let n = s.evals.len() as u64;
        if n == 0 {
            return;
        }
        let mut census = [0u32; BANDS.len()];
        let mut max_adj = None;
        for (adj, n) in table.adj_counts() {
            let adj = i32::from(adj);
            census[band_of(adj)] += n;
            max_adj = Some(max_adj.map_or(adj, |m: i32| m.max(adj)));
        }
        let serial = s.eval_count.load(Ordering::Relaxed) + 1;
        let e = Eval {
            serial,
            event,
            kill: d.kill,
            poll: d.poll,
            extend_poll: d.extend_poll,
            killed_before: self.killed_before.take().checked_sub(1),
            exited_before: self.exited_before.take(),
            config_gen: s.config_gen.load(Ordering::Relaxed),
            snap: *snap,
            tunables: *tunables,
            targets: *targets,
            census,
            max_adj,
        };
        s.evals[((serial - 1) % n) as usize].write(&e.to_words());
        s.eval_count.store(serial, Ordering::Release);
    }

    /// The policy was told of a kill decided on `snap` (`State::on_kill`):
    /// the next evaluation's record says so, for replays.
    pub fn policy_killed(&self, snap: &Snapshot) {
        self.killed_before.set(snap.time_ms.saturating_add(1));
    }

    /// The policy was told its last victim exited (`State::on_exit`): the
    /// next evaluation's record says so, for replays.
    pub fn policy_saw_exit(&self) {
        self.exited_before.set(true);
    }

    /// The newest kill's victim exited `us` after the signal (0 reads as
    /// "not yet", so a sub-microsecond exit counts as 1).
    pub fn exited(&self, pid: i32, us: u64) {
        let us = us.max(1);
        // Counted once, on the kill it belongs to: an exit seen before the
        // kill was announced comes again with the announcement.
        if self.amend(pid, |e| e.signal_to_exit_us = us) {
            self.shared.signal_to_exit.add(us);
        }
    }

    /// The reaper finished with the newest kill's victim.
    pub fn reaped(&self, pid: i32, signal_ns: u64, released_ns: u64) {
        if released_ns == 0 || signal_ns == 0 {
            return;
        }
        let us = released_ns.saturating_sub(signal_ns) / 1000;
        self.amend(pid, |e| e.reap_us = us);
        self.shared.reap.add(us);
    }

    /// Changes the newest kill if it is `pid`'s; false if it is not (yet).
    fn amend(&self, pid: i32, f: impl FnOnce(&mut KillEntry)) -> bool {
        let mut e = self.last.get();
        if e.serial == 0 || e.pid != pid {
            return false;
        }
        f(&mut e);
        self.last.set(e);
        self.shared.kills[((e.serial - 1) % HISTORY as u64) as usize].write(&e.to_words());
        true
    }

    /// On the doorbell: copies the next chunk of a table read, and returns
    /// a configuration change to make. With rows left, the core rings its
    /// own doorbell and comes back for the next chunk on its next epoll
    /// round, after whatever else is pending.
    pub fn serve(&self, table: &ProcTable) -> Ask {
        let s = &self.shared;
        // Clear before looking: a request posted after this is not lost.
        self.bell.clear();
        let asked = s.table_asked.load(Ordering::Acquire);
        if asked != s.table_done.load(Ordering::Relaxed) {
            let mut rows = self.rows.get();
            let mut next = self.cursor.get();
            let mut taken = 0;
            for (slot, p) in table.iter_from(next).take(TABLE_CHUNK) {
                if let Some(cell) = s.table.get(rows) {
                    cell.write(&pack(p));
                    rows += 1;
                }
                next = slot + 1;
                taken += 1;
            }
            if taken < TABLE_CHUNK || next >= table.capacity() {
                s.table_rows.store(rows as u64, Ordering::Relaxed);
                s.table_done.store(asked, Ordering::Release);
                self.cursor.set(0);
                self.rows.set(0);
                self.reply.ring();
            } else {
                self.cursor.set(next);
                self.rows.set(rows);
                self.bell.ring();
            }
        }
        if s.reload_asked.swap(false, Ordering::AcqRel) {
            return Ask::Reload;
        }
        match s.take_config() {
            Some(c) => Ask::Apply(c),
            None => Ask::Nothing,
        }
    }

    /// After a configuration change went in force (reload from any source,
    /// or a `config set`): publish it, with the copy made off the core (by
    /// the loader thread) so the core allocates nothing, and answer a
    /// waiting request. Returns the copy it replaced, for the caller to
    /// free off the core (None while the control thread holds it out: that
    /// thread frees it then).
    #[must_use = "the replaced copy is to be freed off the core"]
    pub fn config_published(&self, copy: Box<Published>) -> Option<Box<Published>> {
        let old = replace(&self.shared.current, Some(copy));
        self.shared.config_gen.fetch_add(1, Ordering::Release);
        self.change_answered(true);
        old
    }

    /// A configuration change was refused: the one in force stays.
    pub fn config_refused(&self) {
        self.change_answered(false);
    }

    fn change_answered(&self, ok: bool) {
        let s = &self.shared;
        s.change_ok.store(ok, Ordering::Relaxed);
        s.change_done
            .store(s.change_asked.load(Ordering::Acquire), Ordering::Release);
        self.reply.ring();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(pid: i32) -> KillRecord {
        let kill = crate::policy::Kill {
            reason: crate::policy::KillReason::LowMem,
            min_adj: 0,
        };
        KillRecord::new(5, pid, kill, crate::policy::Figures::default())
    }

    /// The core counts an event at `Pressure as usize`: each level's name
    /// must sit at its event's slot.
    #[test]
    fn pressure_counters_are_named_by_event() {
        for (p, name) in [
            (Pressure::Partial, "partial"),
            (Pressure::Complete, "complete"),
            (Pressure::Poll, "poll"),
            (Pressure::Early, "early"),
        ] {
            assert_eq!(LEVELS.get(p as usize), Some(&name), "{p:?}");
        }
    }

    #[test]
    fn kill_entry_round_trips_through_words() {
        let mut r = record(42);
        r.rss_kb = 1234;
        let e = KillEntry::from_record(7, &r);
        assert_eq!(KillEntry::from_words(e.to_words()), e);
    }

    #[test]
    fn rows_pack_and_unpack() {
        let p = Proc {
            pid: 123456,
            uid: 10_057,
            adj: -900,
            ptype: 1,
            owner: -1,
        };
        assert_eq!(
            unpack(pack(&p)),
            Row {
                pid: 123456,
                uid: 10_057,
                adj: -900,
                ptype: 1,
                owner: -1
            }
        );
    }

    #[test]
    fn histogram_buckets() {
        assert_eq!(Histogram::bucket_of(0), 0);
        assert_eq!(Histogram::bucket_of(1), 1);
        assert_eq!(Histogram::bucket_of(1023), 10);
        assert_eq!(Histogram::bucket_of(1024), 11);
        assert_eq!(Histogram::bucket_of(u64::MAX), HIST_BUCKETS - 1);
    }

    fn publisher(cap: usize) -> Publisher {
        let shared = std::sync::Arc::new(Shared::new(cap, &Config::default()));
        let bell = crate::control::Bell::new("test").unwrap();
        let reply = crate::control::Bell::new("test").unwrap();
        Publisher::new(shared, bell, reply)
    }

    #[test]
    fn published_configuration_carries_its_own_toml() {
        let p = publisher(4);
        let s = &p.shared;
        let toml = |s: &Shared| {
            let mut b = String::from("left over");
            s.copy_toml(&mut b);
            b
        };
        assert_eq!(toml(s), Config::default().to_toml());
        let changed = Config {
            thrashing_limit: 37,
            ..Config::default()
        };
        let old = p.config_published(Published::new(changed.clone()));
        assert_eq!(
            old.map(|o| o.config),
            Some(Config::default()),
            "the replaced copy comes back to be freed"
        );
        assert_eq!(s.config_gen.load(Ordering::Acquire), 1);
        assert_eq!(s.current_config(), changed);
        assert_eq!(toml(s), changed.to_toml());
        assert!(toml(s).contains("thrashing_limit = 37"));
        // A refused change publishes nothing.
        p.config_refused();
        assert_eq!(s.config_gen.load(Ordering::Acquire), 1);
        assert_eq!(toml(s), changed.to_toml());
    }

    #[test]
    fn table_is_copied_a_chunk_per_wakeup() {
        let cap = 1024;
        let mut t = ProcTable::new(cap).unwrap();
        let n = 2 * TABLE_CHUNK + 7;
        for pid in 1..=n as i32 {
            let p = Proc {
                pid,
                uid: 10_000 + pid,
                adj: (pid % 1000) as i16,
                ptype: 0,
                owner: 7,
            };
            t.insert(p).unwrap();
        }
        let p = publisher(cap);
        let s = p.shared.clone();
        s.table_asked.store(1, Ordering::Release);
        let mut wakeups = 0;
        while s.table_done.load(Ordering::Acquire) != 1 {
            assert!(matches!(p.serve(&t), Ask::Nothing));
            wakeups += 1;
            assert!(wakeups <= 4, "the copy does not finish");
        }
        assert_eq!(wakeups, 3, "{n} rows take three chunks of {TABLE_CHUNK}");
        assert_eq!(s.table_rows.load(Ordering::Relaxed), n as u64);
        let mut pids: Vec<i32> = (0..n).map(|i| s.row(i).unwrap().pid).collect();
        pids.sort_unstable();
        assert_eq!(pids, (1..=n as i32).collect::<Vec<_>>());
        let r = s.row(0).unwrap();
        assert_eq!(r.uid, 10_000 + r.pid);
        assert_eq!(r.owner, 7);
        // Idle afterwards: nothing is copied again.
        assert!(matches!(p.serve(&t), Ask::Nothing));
        assert_eq!(s.table_done.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn kills_are_amended_with_exit_and_reap_times() {
        let p = publisher(8);
        let mut r = record(42);
        r.event_to_signal_us = 300;
        p.kill(&r);
        p.exited(41, 9_000); // another pid: ignored
        p.exited(42, 3_000);
        p.reaped(42, 1_000_000, 3_500_000);
        let e = p.shared.kill(1).unwrap();
        assert_eq!(e.pid, 42);
        assert_eq!(e.signal_to_exit_us, 3000);
        assert_eq!(e.reap_us, 2500);
        assert_eq!(p.shared.kill(2), None);
        // Only the exit that found its kill was counted.
        assert_eq!(p.shared.signal_to_exit.counts().iter().sum::<u64>(), 1);
        assert_eq!(
            p.shared.event_to_signal.counts()[Histogram::bucket_of(300)],
            1
        );
    }

    #[test]
    fn evaluations_go_round_the_ring_with_a_census() {
        let shared = Shared::new(8, &Config::default()).recording(4);
        let bell = crate::control::Bell::new("test").unwrap();
        let p = Publisher::new(std::sync::Arc::new(shared), bell.clone(), bell);
        let mut t = ProcTable::new(8).unwrap();
        for (pid, adj) in [(10, -800), (11, 950), (12, 905), (13, 250)] {
            let p = Proc {
                pid,
                uid: 10_000,
                adj,
                ptype: 0,
                owner: 1,
            };
            t.insert(p).unwrap();
        }
        let d = crate::policy::Decision {
            kill: Some(crate::policy::Kill {
                reason: crate::policy::KillReason::LowMem,
                min_adj: 701,
            }),
            poll: crate::policy::PollInterval::Fast,
            extend_poll: true,
            figures: crate::policy::Figures::default(),
        };
        let tun = crate::policy::Tunables::from_config(&Config::default());
        let targets = TargetTable::default();
        for ms in 1..=6u64 {
            let snap = Snapshot {
                time_ms: ms,
                ..Snapshot::default()
            };
            if ms == 3 {
                p.policy_killed(&Snapshot { time_ms: 2, ..snap });
                p.policy_saw_exit();
            }
            p.record(Pressure::Poll, &snap, &d, &tun, &targets, &t);
        }
        let s = &p.shared;
        assert_eq!(s.eval_count.load(Ordering::Relaxed), 6);
        assert_eq!(s.eval(2), None, "overwritten by 6");
        let e = Eval::from_words(&s.eval(3).unwrap()).unwrap();
        assert_eq!(e.serial, 3);
        assert_eq!(e.snap.time_ms, 3);
        assert_eq!(e.killed_before, Some(2));
        assert!(e.exited_before);
        assert_eq!(e.kill, d.kill);
        assert_eq!(e.census, [1, 0, 0, 1, 0, 0, 2]);
        assert_eq!(e.max_adj, Some(950));
        let e = Eval::from_words(&s.eval(4).unwrap()).unwrap();
        assert_eq!(e.killed_before, None, "told once only");
        assert!(!e.exited_before, "told once only");
        assert_eq!(s.eval(7), None);
    }

    #[test]
    fn seqcell_reads_whole_records_under_writes() {
        let c = std::sync::Arc::new(SeqCell::<4>::default());
        let w = c.clone();
        let t = std::thread::spawn(move || {
            for i in 0..200_000u64 {
                w.write(&[i, i, i, i]);
            }
        });
        while !t.is_finished() {
            if let Some(v) = c.read() {
                assert!(v.iter().all(|&x| x == v[0]), "torn read {v:?}");
            }
        }
        t.join().unwrap();
    }
}
