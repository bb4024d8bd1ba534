//! `lmkd-workload sample`: records memory, swap, PSI and the killer's own
//! footprint every interval into a CSV file, until SIGTERM/SIGINT.
//!
//! It is part of the instrument, so it must keep sampling while the machine
//! drowns: memory is locked, files are opened once and re-read with pread.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub const HEADER: &str = "t_ms,mem_free_kb,mem_avail_kb,cached_kb,swap_total_kb,swap_free_kb,\
some_total_us,full_total_us,some_avg10,full_avg10,daemon_rss_kb,daemon_lck_kb,oom_kill,refault_file";

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

pub struct SampleArgs {
    pub out: String,
    pub interval_ms: u64,
    pub watch_pid: Option<i32>,
}

/// Milliseconds of CLOCK_MONOTONIC; the driver uses the same clock so
/// samples and kill times line up.
pub fn mono_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Locks memory and lowers our own OOM score: best effort, a measuring
/// process that stalls or dies would ruin the run.
pub fn protect_self() {
    // SAFETY: plain syscalls with constant arguments.
    unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) };
    let _ = std::fs::write("/proc/self/oom_score_adj", "-1000");
}

struct Reader {
    file: Option<File>,
    buf: Vec<u8>,
}

impl Reader {
    fn open(path: &str) -> Reader {
        Reader {
            file: File::open(path).ok(),
            buf: vec![0; 16384],
        }
    }

    fn read(&mut self) -> &str {
        let Some(f) = &self.file else { return "" };
        let n = f.read_at(&mut self.buf, 0).unwrap_or(0);
        std::str::from_utf8(&self.buf[..n]).unwrap_or("")
    }
}

/// Value of `key` in a "Key:   value kB" or "key value" style file.
pub fn field(text: &str, key: &str) -> Option<i64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?;
        let rest = rest.strip_prefix(':').unwrap_or(rest);
        if !rest.starts_with([' ', '\t']) {
            return None;
        }
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// (avg10, total) of the "some" or "full" line of a PSI file.
pub fn psi(text: &str, kind: &str) -> (f64, i64) {
    let Some(line) = text.lines().find(|l| l.starts_with(kind)) else {
        return (-1.0, -1);
    };
    let mut avg = -1.0;
    let mut total = -1;
    for kv in line.split_whitespace().skip(1) {
        if let Some(v) = kv.strip_prefix("avg10=") {
            avg = v.parse().unwrap_or(-1.0);
        } else if let Some(v) = kv.strip_prefix("total=") {
            total = v.parse().unwrap_or(-1);
        }
    }
    (avg, total)
}

pub fn run(a: &SampleArgs) -> Result<(), String> {
    protect_self();
    let handler = on_stop as extern "C" fn(libc::c_int);
    // SAFETY: installing an async-signal-safe handler that stores an atomic.
    unsafe {
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
    }
    let mut out = File::create(&a.out).map_err(|e| format!("create {}: {e}", a.out))?;
    writeln!(out, "{HEADER}").map_err(|e| e.to_string())?;
    let mut meminfo = Reader::open("/proc/meminfo");
    let mut pressure = Reader::open("/proc/pressure/memory");
    let mut vmstat = Reader::open("/proc/vmstat");
    let mut status = a
        .watch_pid
        .map(|p| Reader::open(&format!("/proc/{p}/status")));
    let interval = Duration::from_millis(a.interval_ms);
    let mut line = String::with_capacity(256);
    while !STOP.load(Ordering::Relaxed) {
        let t = mono_ms();
        let m = meminfo.read();
        let g = |k| field(m, k).unwrap_or(-1);
        // Block-device pages (the thrash scenario maps /dev/vda) count as
        // Buffers, not Cached: report both as the page cache.
        let ca = g("Cached") + g("Buffers").max(0);
        let (mf, ma, st, sf) = (
            g("MemFree"),
            g("MemAvailable"),
            g("SwapTotal"),
            g("SwapFree"),
        );
        let p = pressure.read();
        let (some_avg, some_total) = psi(p, "some");
        let (full_avg, full_total) = psi(p, "full");
        let vm = vmstat.read();
        let oom = field(vm, "oom_kill").unwrap_or(-1);
        // File refaults show whether the page cache is thrashing; kernels
        // before 5.9 count only the combined `workingset_refault`.
        let refault = field(vm, "workingset_refault_file")
            .or_else(|| field(vm, "workingset_refault"))
            .unwrap_or(-1);
        let (rss, lck) = match status.as_mut() {
            Some(r) => {
                let s = r.read();
                (
                    field(s, "VmRSS").unwrap_or(-1),
                    field(s, "VmLck").unwrap_or(-1),
                )
            }
            None => (-1, -1),
        };
        line.clear();
        use std::fmt::Write as _;
        let _ = writeln!(
            line,
            "{t},{mf},{ma},{ca},{st},{sf},{some_total},{full_total},{some_avg:.2},{full_avg:.2},{rss},{lck},{oom},{refault}"
        );
        // A failed write (disk full) must not stop sampling of later rows.
        let _ = out.write_all(line.as_bytes());
        std::thread::sleep(interval);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_fields() {
        let m = "MemTotal:  100 kB\nMemFree:     42 kB\nSwapFree: 7 kB\n";
        assert_eq!(field(m, "MemFree"), Some(42));
        assert_eq!(field(m, "Mem"), None);
        assert_eq!(field("oom_kill 3\noom_kill_x 9\n", "oom_kill"), Some(3));
        let p = "some avg10=1.50 avg60=0.00 avg300=0.00 total=1234\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=5\n";
        assert_eq!(psi(p, "some"), (1.5, 1234));
        assert_eq!(psi(p, "full"), (0.0, 5));
    }
}
