//! The "app" child: a process that grows its anonymous memory and reads a
//! file-backed working set at a fixed rate until it is killed.
//!
//! The driver re-executes itself with `argv[0]` set to the app's name (so
//! `/proc/<pid>/cmdline` and `comm`, which lmkd reports, show the app) and
//! passes the parameters in the environment variable [`ENV`].

use std::ffi::CString;
use std::time::{Duration, Instant};

pub const ENV: &str = "LMKD_WORKLOAD_APP";

/// What one app process does; serialised into [`ENV`] as space-separated
/// fields so no parsing library is needed in the child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppParams {
    pub tick_ms: u64,
    pub anon_kb_per_tick: u64,
    pub anon_max_mb: u64,
    pub file_mb: u64,
    pub file_offset_mb: u64,
    pub file_pages_per_tick: u64,
    pub fill_percent: u32,
    pub initial_adj: i32,
    /// Empty when the app has no file working set.
    pub data_file: String,
}

impl AppParams {
    pub fn encode(&self) -> String {
        format!(
            "{} {} {} {} {} {} {} {} {}",
            self.tick_ms,
            self.anon_kb_per_tick,
            self.anon_max_mb,
            self.file_mb,
            self.file_offset_mb,
            self.file_pages_per_tick,
            self.fill_percent,
            self.initial_adj,
            self.data_file
        )
    }

    pub fn decode(s: &str) -> Option<AppParams> {
        let mut it = s.splitn(9, ' ');
        let mut n = || it.next()?.parse::<i64>().ok();
        let p = AppParams {
            tick_ms: n()?.try_into().ok()?,
            anon_kb_per_tick: n()?.try_into().ok()?,
            anon_max_mb: n()?.try_into().ok()?,
            file_mb: n()?.try_into().ok()?,
            file_offset_mb: n()?.try_into().ok()?,
            file_pages_per_tick: n()?.try_into().ok()?,
            fill_percent: n()?.try_into().ok()?,
            initial_adj: n()?.try_into().ok()?,
            data_file: String::new(),
        };
        let data_file = it.next().unwrap_or("").to_string();
        Some(AppParams { data_file, ..p })
    }
}

const PAGE: usize = 4096;
/// Address space reserved when the app grows without a cap. Nothing is
/// committed until touched (MAP_NORESERVE; the VM runs overcommit 1).
const UNCAPPED_RESERVE: usize = 16 << 30;
/// If the app falls behind (it was stalled), it catches up at most this many
/// ticks at once, so a long stall does not turn into one huge burst.
const MAX_CATCH_UP: u64 = 50;

/// Runs the app until killed. Only returns on a set-up error.
pub fn run(p: &AppParams) -> Result<(), String> {
    // Die with the driver: an orphaned hog would distort the next run.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } == 1 {
        return Err("driver already gone".into());
    }
    // The first adj is set before any memory is touched, so a killer never
    // sees the app with the driver's protected adj (it is inherited).
    let _ = std::fs::write("/proc/self/oom_score_adj", p.initial_adj.to_string());

    let anon_len = if p.anon_max_mb > 0 {
        (p.anon_max_mb as usize) << 20
    } else {
        UNCAPPED_RESERVE
    };
    let anon = if p.anon_kb_per_tick > 0 {
        map_anon(anon_len)?
    } else {
        std::ptr::null_mut()
    };
    let file = if p.file_mb > 0 {
        map_file(&p.data_file, p.file_offset_mb, p.file_mb)?
    } else {
        std::ptr::null_mut()
    };
    let file_pages = ((p.file_mb as usize) << 20) / PAGE;

    let fill_words = PAGE / 8 * p.fill_percent as usize / 100;
    let per_tick = (p.anon_kb_per_tick as usize * 1024).div_ceil(PAGE);
    let anon_pages = anon_len / PAGE;
    let mut touched = 0usize;
    let mut file_pos = 0usize;
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15 ^ (std::process::id() as u64) << 17;
    let mut sum = 0u64;

    let tick = Duration::from_millis(p.tick_ms);
    let start = Instant::now();
    let mut done_ticks = 0u64;
    loop {
        let due = start.elapsed().as_millis() as u64 / p.tick_ms + 1;
        let todo = (due - done_ticks).min(MAX_CATCH_UP);
        done_ticks = due;
        for _ in 0..todo {
            // Grow: dirty `per_tick` new pages with a partly random pattern.
            let end = (touched + per_tick).min(anon_pages);
            while touched < end {
                // SAFETY: `touched < anon_pages`, inside the mapping.
                let page = unsafe { (anon as *mut u64).add(touched * PAGE / 8) };
                for w in 0..fill_words.max(1) {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let v = if w < fill_words { rng } else { 1 };
                    // SAFETY: w < PAGE / 8, inside this page.
                    unsafe { page.add(w).write_volatile(v) };
                }
                touched += 1;
            }
            // Read the file working set in a cycle: with a set larger than
            // the page cache, every pass refaults what the last pass read.
            for _ in 0..p.file_pages_per_tick {
                // SAFETY: file_pos < file_pages, inside the mapping.
                sum = sum.wrapping_add(unsafe {
                    (file as *const u8).add(file_pos * PAGE).read_volatile()
                } as u64);
                file_pos = (file_pos + 1) % file_pages.max(1);
            }
        }
        std::hint::black_box(sum);
        let next = start + tick * (done_ticks as u32);
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
    }
}

fn map_anon(len: usize) -> Result<*mut libc::c_void, String> {
    // SAFETY: anonymous private mapping, no address hint.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(format!(
            "mmap of {} MiB anonymous memory: {}",
            len >> 20,
            std::io::Error::last_os_error()
        ));
    }
    Ok(p)
}

fn map_file(path: &str, offset_mb: u64, len_mb: u64) -> Result<*mut libc::c_void, String> {
    let c = CString::new(path).map_err(|_| format!("data file {path:?} has a NUL byte"))?;
    // SAFETY: valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(format!("open {path}: {}", std::io::Error::last_os_error()));
    }
    let len = (len_mb as usize) << 20;
    // SAFETY: read-only shared mapping of an fd we own; the fd may be closed
    // afterwards, the mapping keeps the file.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            (offset_mb << 20) as libc::off_t,
        )
    };
    let err = std::io::Error::last_os_error();
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    if p == libc::MAP_FAILED {
        return Err(format!(
            "mmap {len_mb} MiB of {path} at {offset_mb} MiB: {err}"
        ));
    }
    // Sequential cycling defeats readahead heuristics otherwise tuned for
    // streaming; ask for plain behaviour so refaults are what we measure.
    // SAFETY: advice on our own mapping.
    unsafe { libc::madvise(p, len, libc::MADV_NORMAL) };
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_round_trip() {
        let p = AppParams {
            tick_ms: 1,
            anon_kb_per_tick: 1024,
            anon_max_mb: 64,
            file_mb: 10,
            file_offset_mb: 3,
            file_pages_per_tick: 7,
            fill_percent: 50,
            initial_adj: -100,
            data_file: "/dev/my disk".into(),
        };
        assert_eq!(AppParams::decode(&p.encode()), Some(p));
        assert_eq!(AppParams::decode("1 2 x"), None);
    }
}
