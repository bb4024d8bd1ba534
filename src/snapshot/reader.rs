//! The I/O edge of the snapshot: files opened once, buffers sized at
//! start-up, re-read with `pread` on the hot path, parsed by the pure
//! parsers of the parent module. Carries on past lesser trouble (see
//! [`Degradation`]).

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{
    parse_meminfo, parse_psi, parse_vmstat, parse_zoneinfo_with_page_size, FileKind,
    HeldWatermarks, Known, ParseError, PsiAvg, Snapshot, Watermarks,
};

/// Why [`Reader::read`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadErrorKind {
    /// `pread` failed with this errno.
    Io(i32),
    /// The file filled the buffer sized at start-up, and what fit of it
    /// lacks a required field.
    TooBig {
        capacity: usize,
    },
    Parse(ParseError),
}

/// A failed snapshot read; `Copy`, no allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadError {
    pub file: FileKind,
    pub kind: ReadErrorKind,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.name();
        match self.kind {
            ReadErrorKind::Io(errno) => {
                write!(f, "reading {file}: {}", io::Error::from_raw_os_error(errno))
            }
            ReadErrorKind::TooBig { capacity } => write!(
                f,
                "reading {file}: file no longer fits the {capacity}-byte buffer sized at start-up"
            ),
            ReadErrorKind::Parse(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ReadError {}

/// Something the reader carried on through. Each kind is handed out once
/// per reader ([`Reader::take_degradation`]), for the daemon to log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Degradation {
    /// vmstat lacks `pgscan_kswapd` and/or `pgscan_direct` (older kernels):
    /// reclaim is judged from what is there.
    NoPgscan { kswapd: bool, direct: bool },
    /// The PSI file could not be read or parsed: PSI figures are unknown
    /// (the critical-stall override is off) until it parses again.
    Psi(ReadError),
    /// A file outgrew the buffer sized at start-up; its whole lines that fit
    /// were used (fields past them read as absent).
    Grew { file: FileKind, capacity: usize },
    /// A zoneinfo refresh failed: the last watermarks stay in use.
    StaleWatermarks(ReadError),
}

impl Degradation {
    /// One slot per kind (and per file for `Grew`): each is told once.
    fn slot(&self) -> usize {
        match self {
            Degradation::NoPgscan { .. } => 0,
            Degradation::Psi(_) => 1,
            Degradation::StaleWatermarks(_) => 2,
            Degradation::Grew { file, .. } => 3 + *file as usize,
        }
    }
}

const DEGRADATION_SLOTS: usize = 7;

impl fmt::Display for Degradation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Degradation::NoPgscan { kswapd, direct } => {
                let which = match (kswapd, direct) {
                    (true, true) => "pgscan_kswapd and pgscan_direct",
                    (true, false) => "pgscan_kswapd",
                    _ => "pgscan_direct",
                };
                write!(
                    f,
                    "vmstat has no {which} (older kernel?): reclaim is judged without it"
                )
            }
            Degradation::Psi(e) => write!(f, "{e}; carrying on without PSI figures"),
            Degradation::Grew { file, capacity } => write!(
                f,
                "{} outgrew the {capacity}-byte buffer sized at start-up; using the lines that fit",
                file.name()
            ),
            Degradation::StaleWatermarks(e) => {
                write!(f, "{e}; keeping the last zone watermarks")
            }
        }
    }
}

/// One kept-open file with its fixed buffer.
struct Source {
    kind: FileKind,
    file: File,
    buf: Box<[u8]>,
}

/// What [`Source::read`] got: the bytes, and whether the file outgrew the
/// buffer (then only its whole lines are kept).
struct Contents<'a> {
    bytes: &'a [u8],
    grew: Option<usize>,
}

impl Source {
    /// Open and size the buffer from a first read (x2, at least 4 KiB).
    fn open(path: &Path, kind: FileKind) -> io::Result<Source> {
        let ctx = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        // std opens with O_CLOEXEC; read-only is the default.
        let mut file = File::open(path).map_err(ctx)?;
        let mut first = Vec::new();
        file.read_to_end(&mut first).map_err(ctx)?;
        let cap = first.len().saturating_mul(2).max(4096);
        Ok(Source {
            kind,
            file,
            buf: vec![0u8; cap].into_boxed_slice(),
        })
    }

    /// Re-read from offset 0.
    fn read(&mut self) -> Result<Contents<'_>, ReadError> {
        let cap = self.buf.len();
        let mut n = 0;
        while n < cap {
            let dst = self.buf.get_mut(n..).unwrap_or(&mut []);
            match self.file.read_at(dst, n as u64) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(ReadError {
                        file: self.kind,
                        kind: ReadErrorKind::Io(e.raw_os_error().unwrap_or(libc::EIO)),
                    })
                }
            }
        }
        let filled = self.buf.get(..n).unwrap_or(&[]);
        if n < cap {
            return Ok(Contents {
                bytes: filled,
                grew: None,
            });
        }
        // Grown past the buffer: a cut line could parse as a wrong number,
        // so keep only whole lines.
        let whole = filled
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        Ok(Contents {
            bytes: filled.get(..whole).unwrap_or(&[]),
            grew: Some(cap),
        })
    }
}

/// Reads snapshots from files opened once, into buffers sized once.
pub struct Reader {
    meminfo: Source,
    vmstat: Source,
    zoneinfo: Source,
    /// None on kernels without PSI (vmpressure drives the daemon there and
    /// the PSI figures are unknown).
    psi: Option<Source>,
    page_size: u64,
    snap: Snapshot,
    /// Zone watermarks, read after each evaluation
    /// ([`Reader::refresh_watermarks`]).
    wm: HeldWatermarks,
    degraded: Degradations,
}

/// Degradations seen, each kept until taken and then never again.
#[derive(Default)]
struct Degradations {
    told: u16,
    pending: [Option<Degradation>; DEGRADATION_SLOTS],
}

impl Degradations {
    fn note(&mut self, d: Degradation) {
        let slot = d.slot();
        if self.told & (1 << slot) == 0 {
            self.told |= 1 << slot;
            if let Some(p) = self.pending.get_mut(slot) {
                *p = Some(d);
            }
        }
    }

    fn take(&mut self) -> Option<Degradation> {
        self.pending.iter_mut().find_map(Option::take)
    }
}

/// The system page size in bytes (4096 if sysconf cannot tell).
pub fn page_size() -> u64 {
    // SAFETY: sysconf takes no pointers and has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 {
        v as u64
    } else {
        4096
    }
}

/// Parse `contents` with `parse`, noting growth; a grown file that lacks a
/// required field reports the growth, the likelier cause.
fn parse_grown<T>(
    contents: Contents<'_>,
    file: FileKind,
    degraded: &mut Degradations,
    parse: impl FnOnce(&[u8]) -> Result<T, ParseError>,
) -> Result<T, ReadError> {
    match (parse(contents.bytes), contents.grew) {
        (Ok(v), None) => Ok(v),
        (Ok(v), Some(capacity)) => {
            degraded.note(Degradation::Grew { file, capacity });
            Ok(v)
        }
        (Err(e), None) => Err(ReadError {
            file,
            kind: ReadErrorKind::Parse(e),
        }),
        (Err(_), Some(capacity)) => Err(ReadError {
            file,
            kind: ReadErrorKind::TooBig { capacity },
        }),
    }
}

impl Reader {
    /// Open `<proc_root>/{meminfo,vmstat,zoneinfo}` and `psi_path` (if it
    /// exists). Errors name the path. Does not parse: the first [`Reader::read`] does.
    pub fn open(proc_root: &Path, psi_path: &Path) -> io::Result<Reader> {
        Ok(Reader {
            meminfo: Source::open(&proc_root.join("meminfo"), FileKind::MemInfo)?,
            vmstat: Source::open(&proc_root.join("vmstat"), FileKind::VmStat)?,
            zoneinfo: Source::open(&proc_root.join("zoneinfo"), FileKind::ZoneInfo)?,
            psi: if psi_path.exists() {
                Some(Source::open(psi_path, FileKind::Psi)?)
            } else {
                None
            },
            page_size: page_size(),
            snap: Snapshot::default(),
            wm: HeldWatermarks::default(),
            degraded: Degradations::default(),
        })
    }

    /// Take a new snapshot at `now_ms`. Fails only when meminfo or vmstat
    /// cannot be used, or zoneinfo has never parsed; then the previous
    /// snapshot is kept unchanged. Lesser trouble is marked in
    /// `Snapshot::known` and queued for [`Reader::take_degradation`]. No
    /// allocation.
    pub fn read(&mut self, now_ms: u64) -> Result<&Snapshot, ReadError> {
        let mut s = self.snap;
        let deg = &mut self.degraded;
        parse_grown(self.meminfo.read()?, FileKind::MemInfo, deg, |b| {
            parse_meminfo(b, &mut s.mem)
        })?;
        let pgscan = parse_grown(self.vmstat.read()?, FileKind::VmStat, deg, |b| {
            parse_vmstat(b, &mut s.vm)
        })?;
        let (kswapd, direct) = (
            pgscan.contains(Known::PGSCAN_KSWAPD),
            pgscan.contains(Known::PGSCAN_DIRECT),
        );
        if !(kswapd && direct) {
            deg.note(Degradation::NoPgscan {
                kswapd: !kswapd,
                direct: !direct,
            });
        }
        let mut known = Known::NONE.with(pgscan);
        if let Some(psi) = &mut self.psi {
            let got = psi
                .read()
                .and_then(|c| parse_grown(c, FileKind::Psi, deg, |b| parse_psi(b, &mut s.psi)));
            match got {
                Ok(()) => known = known.with(Known::PSI),
                Err(e) => {
                    s.psi = PsiAvg::default();
                    deg.note(Degradation::Psi(e));
                }
            }
        } else {
            s.psi = PsiAvg::default();
        }
        if !self.wm.any() {
            // Without any watermarks every low-memory rule would be off:
            // the first reading is taken here, and its failure is an error.
            self.read_watermarks(now_ms, 0)?; // no hold: nothing is held yet
        }
        s.wm = self.wm.held();
        s.time_ms = now_ms;
        s.known = known;
        self.snap = s;
        Ok(&self.snap)
    }

    /// Re-reads the zone watermarks for the next [`Reader::read`]: called
    /// after an evaluation, so the ~40 us `/proc/zoneinfo` takes under
    /// pressure (the kernel walks every zone) stays off the path from the
    /// event to the signal. While pressure lasts evaluations come every
    /// 10-100 ms, so a boost is seen one re-check late at most, and then
    /// held for `hold_ms` (see [`HeldWatermarks`]). A failure keeps the
    /// marks in force.
    pub fn refresh_watermarks(&mut self, now_ms: u64, hold_ms: u64) {
        if let Err(e) = self.read_watermarks(now_ms, hold_ms) {
            self.degraded.note(Degradation::StaleWatermarks(e));
        }
    }

    fn read_watermarks(&mut self, now_ms: u64, hold_ms: u64) -> Result<(), ReadError> {
        let page_size = self.page_size;
        let mut read = Watermarks::default();
        let deg = &mut self.degraded;
        self.zoneinfo.read().and_then(|c| {
            parse_grown(c, FileKind::ZoneInfo, deg, |b| {
                parse_zoneinfo_with_page_size(b, page_size, &mut read)
            })
        })?;
        self.wm.update(read, now_ms, hold_ms);
        Ok(())
    }

    /// The next degradation not yet handed out, if any. Each kind comes
    /// out once per reader, so the daemon can log it as it gets it.
    pub fn take_degradation(&mut self) -> Option<Degradation> {
        self.degraded.take()
    }

    /// The last good snapshot (all zero before the first successful read).
    pub fn snapshot(&self) -> &Snapshot {
        &self.snap
    }
}
