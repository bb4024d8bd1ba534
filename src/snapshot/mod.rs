//! Memory snapshot: `/proc/meminfo`, `/proc/vmstat`, `/proc/zoneinfo` and the
//! PSI memory averages, parsed in place.
//!
//! The parsers are pure functions over `&[u8]`: no allocation, no panics on
//! any input, unknown lines ignored (kernels add fields all the time), a
//! missing required field or an unreadable value of a field we use is an
//! error naming it. [`Reader`] is the thin I/O edge: files opened once,
//! buffers sized at start-up, re-read with `pread` on the hot path.
//!
//! Like lmkd, the reader carries on where the kernel gives less than it
//! hoped: a vmstat without `pgscan_kswapd`/`pgscan_direct` (older kernels),
//! a PSI file that does not parse, a file grown past its start-up buffer
//! (parsed up to its last whole line), a zoneinfo refresh that fails (the
//! last watermarks stay). What is missing is marked in [`Known`]; each kind
//! of trouble is handed out once as a [`Degradation`] for the daemon to log
//! (the reader itself neither logs nor formats).
//!
//! Longer than our other modules on purpose: the four parsers share one set
//! of byte helpers and one error type, and each is short; the reader lives
//! in `reader.rs`.

use std::fmt;

mod reader;

pub use reader::{page_size, Degradation, ReadError, ReadErrorKind, Reader};

/// Which file a parse or read error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    MemInfo,
    VmStat,
    ZoneInfo,
    Psi,
}

impl FileKind {
    pub fn name(self) -> &'static str {
        match self {
            FileKind::MemInfo => "meminfo",
            FileKind::VmStat => "vmstat",
            FileKind::ZoneInfo => "zoneinfo",
            FileKind::Psi => "memory pressure",
        }
    }
}

/// What was wrong with a file's contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// A required field never appeared.
    Missing(&'static str),
    /// A field we use has a value that is not a number (1-based line).
    BadValue { field: &'static str, line: u32 },
    /// A line that does not have the file's shape at all (1-based line).
    BadLine { line: u32 },
}

/// A parse failure; `Copy` so the hot path can return it without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub file: FileKind,
    pub kind: ParseErrorKind,
}

impl ParseError {
    pub fn missing(file: FileKind, field: &'static str) -> Self {
        ParseError {
            file,
            kind: ParseErrorKind::Missing(field),
        }
    }
    pub fn bad_value(file: FileKind, field: &'static str, line: u32) -> Self {
        ParseError {
            file,
            kind: ParseErrorKind::BadValue { field, line },
        }
    }
    pub fn bad_line(file: FileKind, line: u32) -> Self {
        ParseError {
            file,
            kind: ParseErrorKind::BadLine { line },
        }
    }
    /// The field named by the error, if any.
    pub fn field(&self) -> Option<&'static str> {
        match self.kind {
            ParseErrorKind::Missing(f) | ParseErrorKind::BadValue { field: f, .. } => Some(f),
            ParseErrorKind::BadLine { .. } => None,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.name();
        match self.kind {
            ParseErrorKind::Missing(field) => write!(f, "{file}: required field {field} missing"),
            ParseErrorKind::BadValue { field, line } => {
                write!(f, "{file} line {line}: value of {field} is not a number")
            }
            ParseErrorKind::BadLine { line } => write!(f, "{file} line {line}: malformed line"),
        }
    }
}

impl std::error::Error for ParseError {}

/// `/proc/meminfo`, in kB as the file states them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemInfo {
    pub mem_total_kb: u64,
    pub free_kb: u64,
    pub cached_kb: u64,
    pub swap_cached_kb: u64,
    pub buffers_kb: u64,
    pub shmem_kb: u64,
    pub unevictable_kb: u64,
    pub swap_total_kb: u64,
    pub swap_free_kb: u64,
    pub active_anon_kb: u64,
    pub inactive_anon_kb: u64,
    pub active_file_kb: u64,
    pub inactive_file_kb: u64,
    pub sreclaimable_kb: u64,
    pub sunreclaim_kb: u64,
    pub kernel_stack_kb: u64,
    pub page_tables_kb: u64,
    pub cma_free_kb: u64,
}

impl MemInfo {
    /// lmkd's `nr_file_pages`: Cached + SwapCached + Buffers.
    pub fn file_pages_kb(&self) -> u64 {
        self.cached_kb
            .saturating_add(self.swap_cached_kb)
            .saturating_add(self.buffers_kb)
    }

    /// Memory obtainable without I/O: MemFree + Inactive(file).
    pub fn easy_available_kb(&self) -> u64 {
        self.free_kb.saturating_add(self.inactive_file_kb)
    }

    /// Anonymous memory on the LRUs.
    pub fn anon_kb(&self) -> u64 {
        self.active_anon_kb.saturating_add(self.inactive_anon_kb)
    }
}

/// The `/proc/vmstat` counters the policy uses (pages or event counts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmStat {
    pub nr_free_pages: u64,
    pub nr_inactive_file: u64,
    pub nr_active_file: u64,
    pub pgscan_kswapd: u64,
    pub pgscan_direct: u64,
    pub pgscan_direct_throttle: u64,
    pub pgrefill: u64,
    /// `workingset_refault_file` (5.9+), or `workingset_refault` before.
    pub workingset_refault_file: u64,
}

impl VmStat {
    /// Pages on the file LRUs.
    pub fn file_lru_pages(&self) -> u64 {
        self.nr_inactive_file.saturating_add(self.nr_active_file)
    }
}

/// Zone watermark sums over populated zones, each zone counted as
/// (largest `protection:` entry + its own watermark), in kB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Watermarks {
    pub min_kb: u64,
    pub low_kb: u64,
    pub high_kb: u64,
}

/// The zone watermarks the policy uses: the highest reading of the last
/// `watermark_hold_ms` (config; lmkd's refresh period for its one reading
/// by default). The kernel adds `watermark_boost` to every
/// zone's marks under fragmentation and drops it again within a second or
/// so, while memory is still short. Taking each reading as it comes let a
/// boost-free reading pass free memory sitting just above "low" while the
/// guest stalled for a second (VM ladder and camera); lmkd, which keeps one
/// reading for a minute, kills there whenever that reading was boosted.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeldWatermarks {
    held: Watermarks,
    since_ms: Option<u64>,
}

impl HeldWatermarks {
    /// Whether any reading has been taken.
    pub fn any(&self) -> bool {
        self.since_ms.is_some()
    }

    /// The marks in force.
    pub fn held(&self) -> Watermarks {
        self.held
    }

    /// Takes a fresh reading at `now_ms`; a held higher one lapses after
    /// `hold_ms`.
    pub fn update(&mut self, read: Watermarks, now_ms: u64, hold_ms: u64) {
        let expired = match self.since_ms {
            None => true,
            Some(t) => now_ms < t || now_ms - t > hold_ms,
        };
        if expired || read.min_kb >= self.held.min_kb {
            self.held = read;
            self.since_ms = Some(now_ms);
        }
    }
}

/// PSI averages. Averages are hundredths of a percent (`12.34` -> 1234), so
/// the snapshot stays integer-only and `Eq`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PsiAvg {
    pub some_avg10: u32,
    pub some_avg60: u32,
    pub some_avg300: u32,
    pub some_total_us: u64,
    pub full_avg10: u32,
    pub full_avg60: u32,
    pub full_avg300: u32,
    pub full_total_us: u64,
}

/// Which optional parts of a snapshot the kernel gave. A part not known
/// reads as zero: a counter that never moves, averages of 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Known(u8);

impl Known {
    pub const NONE: Known = Known(0);
    pub const PGSCAN_KSWAPD: Known = Known(1);
    pub const PGSCAN_DIRECT: Known = Known(2);
    /// The PSI averages and totals.
    pub const PSI: Known = Known(4);
    pub const ALL: Known = Known(7);

    pub fn contains(self, part: Known) -> bool {
        self.0 & part.0 == part.0
    }
    pub fn with(self, part: Known) -> Known {
        Known(self.0 | part.0)
    }
    pub fn without(self, part: Known) -> Known {
        Known(self.0 & !part.0)
    }
    /// The parts as bits (a recording stores them).
    pub fn bits(self) -> u8 {
        self.0
    }
    pub fn from_bits(bits: u8) -> Known {
        Known(bits & Known::ALL.0)
    }
    /// Whether the PSI figures are real.
    pub fn psi(self) -> bool {
        self.contains(Known::PSI)
    }
}

/// Everything known: a hand-built snapshot means all of it.
impl Default for Known {
    fn default() -> Known {
        Known::ALL
    }
}

/// Everything the policy looks at, taken at `time_ms` (CLOCK_MONOTONIC).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub mem: MemInfo,
    pub vm: VmStat,
    pub wm: Watermarks,
    pub psi: PsiAvg,
    pub time_ms: u64,
    /// Which optional parts are real; the rest read as zero.
    pub known: Known,
}

// ---------------------------------------------------------------------------
// Byte helpers: no allocation, no indexing that can panic.

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if first.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if last.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// A decimal u64 with nothing else around it; `None` on empty, garbage or
/// overflow.
fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// `12.34` -> 1234 (hundredths); more fraction digits are truncated.
fn parse_hundredths(s: &[u8]) -> Option<u32> {
    let (int, frac) = match s.iter().position(|&b| b == b'.') {
        Some(dot) => (s.get(..dot)?, s.get(dot + 1..)?),
        None => (s, &b""[..]),
    };
    let int = parse_u64(int)?;
    if !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut f: u64 = 0;
    for i in 0..2 {
        f = f * 10 + frac.get(i).map_or(0, |&d| u64::from(d - b'0'));
    }
    let v = int.checked_mul(100)?.checked_add(f)?;
    u32::try_from(v).ok()
}

/// Split off the first whitespace-separated token.
fn next_token(s: &[u8]) -> (&[u8], &[u8]) {
    let s = trim(s);
    match s.iter().position(u8::is_ascii_whitespace) {
        Some(i) => (s.get(..i).unwrap_or(s), s.get(i..).unwrap_or(&[])),
        None => (s, &[]),
    }
}

/// Lines with their 1-based numbers, saturating (no overflow on huge input).
fn lines(buf: &[u8]) -> impl Iterator<Item = (u32, &[u8])> {
    buf.split(|&b| b == b'\n').scan(0u32, |n, l| {
        *n = n.saturating_add(1);
        Some((*n, l))
    })
}

// ---------------------------------------------------------------------------
// /proc/meminfo

/// Parse `/proc/meminfo` into `out`. On error `out` may be partly written.
///
/// Required: MemTotal, MemFree, Cached, Buffers, Shmem, Unevictable, the four
/// anon/file LRU lines, SReclaimable, SUnreclaim, KernelStack, PageTables.
/// Optional (0 when absent): SwapCached, SwapTotal, SwapFree (kernels without
/// swap), CmaFree (kernels without CMA).
pub fn parse_meminfo(buf: &[u8], out: &mut MemInfo) -> Result<(), ParseError> {
    const F: FileKind = FileKind::MemInfo;
    // (name, required) by slot; the slot index is the bit in `seen`.
    const FIELDS: [(&str, bool); 18] = [
        ("MemTotal", true),
        ("MemFree", true),
        ("Cached", true),
        ("SwapCached", false),
        ("Buffers", true),
        ("Shmem", true),
        ("Unevictable", true),
        ("SwapTotal", false),
        ("SwapFree", false),
        ("Active(anon)", true),
        ("Inactive(anon)", true),
        ("Active(file)", true),
        ("Inactive(file)", true),
        ("SReclaimable", true),
        ("SUnreclaim", true),
        ("KernelStack", true),
        ("PageTables", true),
        ("CmaFree", false),
    ];
    *out = MemInfo::default();
    let mut seen: u32 = 0;
    for (no, line) in lines(buf) {
        if trim(line).is_empty() {
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(ParseError::bad_line(F, no));
        };
        let key = line.get(..colon).unwrap_or(&[]);
        let Some(slot) = FIELDS.iter().position(|(n, _)| n.as_bytes() == key) else {
            continue;
        };
        let name = FIELDS.get(slot).map_or("", |f| f.0);
        let rest = trim(line.get(colon + 1..).unwrap_or(&[]));
        let (num, unit) = next_token(rest);
        let unit = trim(unit);
        if !(unit.is_empty() || unit == b"kB") {
            return Err(ParseError::bad_value(F, name, no));
        }
        let v = parse_u64(num).ok_or(ParseError::bad_value(F, name, no))?;
        let dst = match slot {
            0 => &mut out.mem_total_kb,
            1 => &mut out.free_kb,
            2 => &mut out.cached_kb,
            3 => &mut out.swap_cached_kb,
            4 => &mut out.buffers_kb,
            5 => &mut out.shmem_kb,
            6 => &mut out.unevictable_kb,
            7 => &mut out.swap_total_kb,
            8 => &mut out.swap_free_kb,
            9 => &mut out.active_anon_kb,
            10 => &mut out.inactive_anon_kb,
            11 => &mut out.active_file_kb,
            12 => &mut out.inactive_file_kb,
            13 => &mut out.sreclaimable_kb,
            14 => &mut out.sunreclaim_kb,
            15 => &mut out.kernel_stack_kb,
            16 => &mut out.page_tables_kb,
            _ => &mut out.cma_free_kb,
        };
        *dst = v;
        seen |= 1 << slot;
    }
    for (i, (name, required)) in FIELDS.iter().enumerate() {
        if *required && seen & (1 << i) == 0 {
            return Err(ParseError::missing(F, name));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// /proc/vmstat

/// Parse `/proc/vmstat` into `out`. On error `out` may be partly written.
///
/// Required: nr_free_pages, nr_inactive_file, nr_active_file, and
/// `workingset_refault_file` or (before 5.9) `workingset_refault`; the
/// former wins when both appear. Optional (0 when absent):
/// pgscan_direct_throttle, pgrefill (per-zone only on old kernels), and
/// pgscan_kswapd / pgscan_direct (older kernels split them per zone). Returns
/// which of the last two were there ([`Known::PGSCAN_KSWAPD`],
/// [`Known::PGSCAN_DIRECT`]).
pub fn parse_vmstat(buf: &[u8], out: &mut VmStat) -> Result<Known, ParseError> {
    const F: FileKind = FileKind::VmStat;
    const FIELDS: [(&str, bool); 9] = [
        ("nr_free_pages", true),
        ("nr_inactive_file", true),
        ("nr_active_file", true),
        ("pgscan_kswapd", false),
        ("pgscan_direct", false),
        ("pgscan_direct_throttle", false),
        ("pgrefill", false),
        ("workingset_refault_file", false),
        ("workingset_refault", false),
    ];
    const REFAULT_FILE: usize = 7;
    const REFAULT_OLD: usize = 8;
    *out = VmStat::default();
    let mut old_refault = 0;
    let mut seen: u32 = 0;
    for (no, line) in lines(buf) {
        let (key, rest) = next_token(line);
        if key.is_empty() {
            continue;
        }
        let Some(slot) = FIELDS.iter().position(|(n, _)| n.as_bytes() == key) else {
            // Unknown counters are skipped, but a line must still be "name value".
            if trim(rest).is_empty() {
                return Err(ParseError::bad_line(F, no));
            }
            continue;
        };
        let name = FIELDS.get(slot).map_or("", |f| f.0);
        let v = parse_u64(trim(rest)).ok_or(ParseError::bad_value(F, name, no))?;
        match slot {
            0 => out.nr_free_pages = v,
            1 => out.nr_inactive_file = v,
            2 => out.nr_active_file = v,
            3 => out.pgscan_kswapd = v,
            4 => out.pgscan_direct = v,
            5 => out.pgscan_direct_throttle = v,
            6 => out.pgrefill = v,
            REFAULT_FILE => out.workingset_refault_file = v,
            _ => old_refault = v,
        }
        seen |= 1 << slot;
    }
    for (i, (name, required)) in FIELDS.iter().enumerate() {
        if *required && seen & (1 << i) == 0 {
            return Err(ParseError::missing(F, name));
        }
    }
    if seen & (1 << REFAULT_FILE) == 0 {
        if seen & (1 << REFAULT_OLD) == 0 {
            return Err(ParseError::missing(F, "workingset_refault_file"));
        }
        out.workingset_refault_file = old_refault;
    }
    let mut known = Known::NONE;
    if seen & (1 << 3) != 0 {
        known = known.with(Known::PGSCAN_KSWAPD);
    }
    if seen & (1 << 4) != 0 {
        known = known.with(Known::PGSCAN_DIRECT);
    }
    Ok(known)
}

// ---------------------------------------------------------------------------
// /proc/zoneinfo

/// One zone being read; folded into the sums when the next zone starts.
#[derive(Clone, Copy, Default)]
struct Zone {
    active: bool,
    min: Option<u64>,
    low: Option<u64>,
    high: Option<u64>,
    present: Option<u64>,
    managed: Option<u64>,
    max_protection: u64,
}

/// Running sums in pages.
#[derive(Default)]
struct WmSums {
    min: u64,
    low: u64,
    high: u64,
    populated: u32,
}

impl Zone {
    fn fold(&self, sums: &mut WmSums) -> Result<(), ParseError> {
        const F: FileKind = FileKind::ZoneInfo;
        if !self.active {
            return Ok(());
        }
        let present = self.present.ok_or(ParseError::missing(F, "present"))?;
        // Unpopulated zones (Movable, Device, ...) still print watermarks;
        // they guard nothing. `managed` is absent on some old kernels.
        if present == 0 || self.managed == Some(0) {
            return Ok(());
        }
        let min = self.min.ok_or(ParseError::missing(F, "min"))?;
        let low = self.low.ok_or(ParseError::missing(F, "low"))?;
        let high = self.high.ok_or(ParseError::missing(F, "high"))?;
        sums.min = sums
            .min
            .saturating_add(min.saturating_add(self.max_protection));
        sums.low = sums
            .low
            .saturating_add(low.saturating_add(self.max_protection));
        sums.high = sums
            .high
            .saturating_add(high.saturating_add(self.max_protection));
        sums.populated = sums.populated.saturating_add(1);
        Ok(())
    }
}

/// [`parse_zoneinfo_with_page_size`] for 4 KiB pages.
pub fn parse_zoneinfo(buf: &[u8], out: &mut Watermarks) -> Result<(), ParseError> {
    parse_zoneinfo_with_page_size(buf, 4096, out)
}

/// Parse `/proc/zoneinfo` into watermark sums over all nodes' populated
/// zones, converting pages of `page_size` bytes to kB. `out` is only written
/// on success. Having no populated zone at all is an error: zero watermarks
/// would silently disable every low-memory rule.
pub fn parse_zoneinfo_with_page_size(
    buf: &[u8],
    page_size: u64,
    out: &mut Watermarks,
) -> Result<(), ParseError> {
    const F: FileKind = FileKind::ZoneInfo;
    let mut sums = WmSums::default();
    let mut zone = Zone::default();
    for (no, line) in lines(buf) {
        let (key, rest) = next_token(line);
        match key {
            b"Node" => {
                zone.fold(&mut sums)?;
                zone = Zone {
                    active: true,
                    ..Zone::default()
                };
                continue;
            }
            b"min" | b"low" | b"high" | b"present" | b"managed" if zone.active => {
                let (num, _) = next_token(rest);
                let name = match key {
                    b"min" => "min",
                    b"low" => "low",
                    b"high" => "high",
                    b"present" => "present",
                    _ => "managed",
                };
                let v = parse_u64(num).ok_or(ParseError::bad_value(F, name, no))?;
                let slot = match key {
                    b"min" => &mut zone.min,
                    b"low" => &mut zone.low,
                    b"high" => &mut zone.high,
                    b"present" => &mut zone.present,
                    _ => &mut zone.managed,
                };
                *slot = Some(v);
            }
            b"protection:" if zone.active => {
                zone.max_protection =
                    parse_protection(rest).ok_or(ParseError::bad_value(F, "protection", no))?;
            }
            _ => {}
        }
    }
    zone.fold(&mut sums)?;
    if sums.populated == 0 {
        return Err(ParseError::missing(F, "populated zone"));
    }
    let kb = page_size / 1024;
    *out = Watermarks {
        min_kb: sums.min.saturating_mul(kb),
        low_kb: sums.low.saturating_mul(kb),
        high_kb: sums.high.saturating_mul(kb),
    };
    Ok(())
}

/// `(0, 3019, 7115)` -> 7115.
fn parse_protection(s: &[u8]) -> Option<u64> {
    let s = trim(s);
    let inner = s.strip_prefix(b"(")?.strip_suffix(b")")?;
    let mut max = 0;
    for part in inner.split(|&b| b == b',') {
        max = max.max(parse_u64(trim(part))?);
    }
    Some(max)
}

// ---------------------------------------------------------------------------
// PSI

/// Parse a PSI file (`/proc/pressure/memory` or a cgroup's
/// `memory.pressure`): both `some` and `full` lines with avg10, avg60,
/// avg300 and total are required. `out` is only written on success.
pub fn parse_psi(buf: &[u8], out: &mut PsiAvg) -> Result<(), ParseError> {
    const F: FileKind = FileKind::Psi;
    let mut p = PsiAvg::default();
    let (mut some, mut full) = (false, false);
    for (no, line) in lines(buf) {
        let (kind, mut rest) = next_token(line);
        let is_some = match kind {
            b"some" => true,
            b"full" => false,
            b"" => continue,
            _ => return Err(ParseError::bad_line(F, no)),
        };
        let name = |f: &'static str, s: &'static str| if is_some { s } else { f };
        let (mut a10, mut a60, mut a300, mut total) = (None, None, None, None);
        loop {
            let (tok, r) = next_token(rest);
            rest = r;
            if tok.is_empty() {
                break;
            }
            let Some(eq) = tok.iter().position(|&b| b == b'=') else {
                return Err(ParseError::bad_line(F, no));
            };
            let (k, v) = (
                tok.get(..eq).unwrap_or(&[]),
                tok.get(eq + 1..).unwrap_or(&[]),
            );
            match k {
                b"avg10" => {
                    a10 = Some(parse_hundredths(v).ok_or(ParseError::bad_value(
                        F,
                        name("full avg10", "some avg10"),
                        no,
                    ))?)
                }
                b"avg60" => {
                    a60 = Some(parse_hundredths(v).ok_or(ParseError::bad_value(
                        F,
                        name("full avg60", "some avg60"),
                        no,
                    ))?)
                }
                b"avg300" => {
                    a300 = Some(parse_hundredths(v).ok_or(ParseError::bad_value(
                        F,
                        name("full avg300", "some avg300"),
                        no,
                    ))?)
                }
                b"total" => {
                    total = Some(parse_u64(v).ok_or(ParseError::bad_value(
                        F,
                        name("full total", "some total"),
                        no,
                    ))?)
                }
                _ => {}
            }
        }
        let a10 = a10.ok_or(ParseError::missing(F, name("full avg10", "some avg10")))?;
        let a60 = a60.ok_or(ParseError::missing(F, name("full avg60", "some avg60")))?;
        let a300 = a300.ok_or(ParseError::missing(F, name("full avg300", "some avg300")))?;
        let total = total.ok_or(ParseError::missing(F, name("full total", "some total")))?;
        if is_some {
            (p.some_avg10, p.some_avg60, p.some_avg300, p.some_total_us) = (a10, a60, a300, total);
            some = true;
        } else {
            (p.full_avg10, p.full_avg60, p.full_avg300, p.full_total_us) = (a10, a60, a300, total);
            full = true;
        }
    }
    if !some {
        return Err(ParseError::missing(F, "some"));
    }
    if !full {
        return Err(ParseError::missing(F, "full"));
    }
    *out = p;
    Ok(())
}
