//! Per-app memory cgroups (`ro.config.per_app_memcg`, on by default on
//! low-RAM devices). Android gives every app process its own memcg v1 group,
//! `<root>/uid_<uid>/pid_<pid>/`. With the feature on we use those groups as
//! lmkd does:
//! - each PROCPRIO of an app sets its group's soft limit by adj band, so
//!   reclaim squeezes background apps before the ones the user sees;
//! - the launcher (adj 600..=699) is kept as adj 200 in the process table, so
//!   it dies with the perceptible apps rather than with the cached ones (the
//!   `oom_score_adj` written to the kernel stays what the client sent);
//! - the kill stats packet takes its memory figures from the group's
//!   `memory.stat`, which counts what the app charged, shared pages excluded.
//!
//! The band table and the `memory.stat` parser are pure; [`AppMemcg`] is
//! the thin I/O edge. Both run on the core thread: paths and file contents
//! live in fixed stack buffers, nothing allocates.

use std::io;
use std::ops::RangeInclusive;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::config::Config;
use crate::proto::{self, KillStat, Prio};
use crate::report::{Note, Reporter};
use crate::sys::{self, ProcFs, SysError, SysResult};

/// Soft limits are written as multiples of this.
pub const SOFT_LIMIT_UNIT: i64 = 8 << 20;

/// The launcher ("home") band of oom_score_adj.
pub const HOME_BAND: RangeInclusive<i32> = 600..=699;

/// Where the launcher sits in our table: among the perceptible apps.
pub const HOME_TABLE_ADJ: i32 = 200;

/// system_server's adj and uid. It is registered as an app but has no
/// group of its own, so a failed write for it is expected and not logged.
pub const SYSTEM_ADJ: i32 = -900;
pub const AID_SYSTEM: i32 = 1000;

/// Soft limit multiplier (of [`SOFT_LIMIT_UNIT`]) for an app at `adj`:
/// 0 (no protection) for cached, previous, service and heavy-weight apps,
/// a little for the launcher and backup, more the closer to the user.
pub fn soft_limit_mult(adj: i32) -> i64 {
    match adj {
        // Persistent processes: 512 MiB.
        i32::MIN..=-1 => 64,
        0..=99 => 20,
        100..=199 => 10,
        200..=299 => 8,
        300..=399 => 1,
        400..=599 => 0,
        600..=699 => 1,
        _ => 0,
    }
}

/// The soft limit in bytes for an app at `adj`.
pub fn soft_limit_bytes(adj: i32) -> i64 {
    soft_limit_mult(adj) * SOFT_LIMIT_UNIT
}

/// The adj our table keeps for an app the client put at `adj`.
pub fn table_adj(adj: i32) -> i32 {
    if HOME_BAND.contains(&adj) {
        HOME_TABLE_ADJ
    } else {
        adj
    }
}

/// Whether a registration is system_server's (see [`SYSTEM_ADJ`]).
pub fn is_system_server(uid: i32, adj: i32) -> bool {
    adj == SYSTEM_ADJ && uid == AID_SYSTEM
}

/// Overwrites the kill stats' memory fields with those a memcg v1
/// `memory.stat` holds. Like lmkd, only the hierarchical `total_*` lines
/// count (for a per-process leaf group they equal the local ones). Fields
/// the text lacks keep their value. Returns whether any field was found.
pub fn fill_from_memory_stat(text: &[u8], stat: &mut KillStat) -> bool {
    let mut found = false;
    for line in text.split(|&b| b == b'\n') {
        let Some(sp) = line.iter().position(|&b| b == b' ') else {
            continue;
        };
        let field = match &line[..sp] {
            b"total_pgfault" => &mut stat.pgfault,
            b"total_pgmajfault" => &mut stat.pgmajfault,
            b"total_rss" => &mut stat.rss_bytes,
            b"total_cache" => &mut stat.cache_bytes,
            b"total_swap" => &mut stat.swap_bytes,
            _ => continue,
        };
        if let Some(v) = sys::parse_u64(&line[sp + 1..]).and_then(|v| i64::try_from(v).ok()) {
            *field = v;
            found = true;
        }
    }
    found
}

/// Room for `uid_<uid>/pid_<pid>/<file>` with the longest file we use.
type RelPath = [u8; 64];

/// The per-app groups under one root (`/dev/memcg/apps` on Android).
#[derive(Clone, Copy)]
pub struct AppMemcg {
    root: ProcFs,
}

impl AppMemcg {
    pub fn new(root: &Path) -> io::Result<AppMemcg> {
        // Paths are built in fixed buffers: the root gets 127 bytes.
        let root = ProcFs::new(root).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "memcg_apps_root {}: must be shorter than 128 bytes, without NUL",
                    root.display()
                ),
            )
        })?;
        Ok(AppMemcg { root })
    }

    /// The groups to use, or `None` when `per_app_memcg` is off.
    pub fn from_config(cfg: &Config) -> io::Result<Option<AppMemcg>> {
        if !cfg.startup.per_app_memcg {
            return Ok(None);
        }
        let m = AppMemcg::new(&cfg.startup.memcg_apps_root)?;
        log::info!(
            "per-app memcg on: app soft limits and kill stats under {}",
            cfg.startup.memcg_apps_root.display()
        );
        Ok(Some(m))
    }

    /// `uid_<uid>/pid_<pid>/<file>`, as a `&str` over `buf`.
    fn rel<'a>(uid: i32, pid: i32, file: &str, buf: &'a mut RelPath) -> &'a str {
        let (mut u, mut p) = ([0u8; 12], [0u8; 12]);
        let parts = [
            b"uid_".as_slice(),
            sys::fmt_i64(uid as i64, &mut u),
            b"/pid_",
            sys::fmt_i64(pid as i64, &mut p),
            b"/",
            file.as_bytes(),
        ];
        let mut n = 0;
        for part in parts {
            let k = part.len().min(buf.len() - n);
            buf[n..n + k].copy_from_slice(&part[..k]);
            n += k;
        }
        // Only ASCII digits and our own ASCII names went in.
        std::str::from_utf8(&buf[..n]).unwrap_or("")
    }

    /// Writes `bytes` to the group's `memory.soft_limit_in_bytes`.
    pub fn set_soft_limit(&self, uid: i32, pid: i32, bytes: i64) -> SysResult<()> {
        let mut rel = [0; 64];
        let mut path = [0; 192];
        let rel = Self::rel(uid, pid, "memory.soft_limit_in_bytes", &mut rel);
        let fd = sys::open(
            self.root.path(None, rel, &mut path),
            libc::O_WRONLY,
            "open memory.soft_limit_in_bytes",
        )?;
        let mut digits = [0u8; 12];
        let s = sys::fmt_i64(bytes, &mut digits);
        loop {
            // SAFETY: s is a live byte slice for the duration of the call.
            let r = unsafe { libc::write(fd.as_raw_fd(), s.as_ptr().cast(), s.len()) };
            if r >= 0 {
                return Ok(());
            }
            let e = SysError::last("write memory.soft_limit_in_bytes");
            if e.errno != libc::EINTR {
                return Err(e);
            }
        }
    }

    /// Fills `stat`'s memory fields from the group's `memory.stat`; false
    /// (stat untouched) when the group cannot be read.
    pub fn read_stat(&self, uid: i32, pid: i32, stat: &mut KillStat) -> bool {
        let mut rel = [0; 64];
        let rel = Self::rel(uid, pid, "memory.stat", &mut rel);
        // The total_* lines come last; a v1 memory.stat is about 1.2 kB.
        let mut buf = [0u8; 4096];
        match self.root.read(None, rel, &mut buf) {
            Ok(n) => fill_from_memory_stat(&buf[..n], stat),
            Err(_) => false,
        }
    }

    /// PROCPRIO of `p`: for an app, sets its soft limit (a failure is
    /// reported, not fatal) and returns the adj the table keeps for it.
    pub fn on_prio(&self, p: &Prio, report: &Reporter) -> i32 {
        if p.ptype != proto::ptype::APP {
            return p.adj;
        }
        if let Err(e) = self.set_soft_limit(p.uid, p.pid, soft_limit_bytes(p.adj)) {
            if !is_system_server(p.uid, p.adj) {
                report.note(Note::MemcgWriteFailed {
                    pid: p.pid,
                    uid: p.uid,
                    errno: e.errno,
                });
            }
        }
        table_adj(p.adj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: i64 = 1 << 20;

    #[test]
    fn soft_limit_by_band() {
        let rows = [
            (1000, 0),
            (900, 0),
            (899, 0),
            (800, 0),
            (700, 0),
            (699, 8 * MIB),
            (600, 8 * MIB),
            (599, 0),
            (500, 0),
            (400, 0),
            (399, 8 * MIB),
            (300, 8 * MIB),
            (299, 64 * MIB),
            (200, 64 * MIB),
            (199, 80 * MIB),
            (100, 80 * MIB),
            (99, 160 * MIB),
            (0, 160 * MIB),
            (-1, 512 * MIB),
            (-900, 512 * MIB),
            (-1000, 512 * MIB),
        ];
        for (adj, bytes) in rows {
            assert_eq!(soft_limit_bytes(adj), bytes, "adj {adj}");
        }
    }

    #[test]
    fn only_the_launcher_band_moves_in_the_table() {
        for (adj, kept) in [
            (599, 599),
            (600, 200),
            (650, 200),
            (699, 200),
            (700, 700),
            (200, 200),
            (-900, -900),
        ] {
            assert_eq!(table_adj(adj), kept, "adj {adj}");
        }
    }

    #[test]
    fn system_server_is_uid_1000_at_minus_900() {
        assert!(is_system_server(1000, -900));
        assert!(!is_system_server(1000, -800));
        assert!(!is_system_server(10_000, -900));
    }

    #[test]
    fn memory_stat_totals_fill_the_kill_stats() {
        let text = b"cache 1\nrss 2\nswap 3\npgfault 4\npgmajfault 5\n\
            hierarchical_memory_limit 9223372036854771712\n\
            total_cache 40960\ntotal_rss 16777216\ntotal_rss_huge 0\n\
            total_swap 8192\ntotal_pgfault 4200\ntotal_pgmajfault 7\n";
        let mut s = KillStat::default();
        s.start_time_ns = 99;
        assert!(fill_from_memory_stat(text, &mut s));
        assert_eq!(s.pgfault, 4200);
        assert_eq!(s.pgmajfault, 7);
        assert_eq!(s.rss_bytes, 16_777_216);
        assert_eq!(s.cache_bytes, 40960);
        assert_eq!(s.swap_bytes, 8192);
        assert_eq!(s.start_time_ns, 99, "not a memory field");
    }

    #[test]
    fn memory_stat_without_totals_changes_nothing() {
        let mut s = KillStat::default();
        (s.pgfault, s.rss_bytes) = (11, 22);
        // Local names only (and cgroup v2 names): not what lmkd reads.
        assert!(!fill_from_memory_stat(
            b"rss 5\npgfault 6\nanon 7\nfile 8\n",
            &mut s
        ));
        assert!(!fill_from_memory_stat(b"total_rss x\ntotal_swap\n", &mut s));
        assert!(!fill_from_memory_stat(b"", &mut s));
        assert_eq!((s.pgfault, s.rss_bytes), (11, 22));
        // A cut last line still counts up to where it stops.
        assert!(fill_from_memory_stat(b"total_swap 4096\ntotal_rs", &mut s));
        assert_eq!(s.swap_bytes, 4096);
    }

    #[test]
    fn group_paths() {
        let mut buf = [0; 64];
        assert_eq!(
            AppMemcg::rel(10_123, 4567, "memory.stat", &mut buf),
            "uid_10123/pid_4567/memory.stat"
        );
        let mut buf = [0; 64];
        let long = AppMemcg::rel(i32::MAX, i32::MAX, "memory.soft_limit_in_bytes", &mut buf);
        assert_eq!(
            long,
            "uid_2147483647/pid_2147483647/memory.soft_limit_in_bytes"
        );
    }
}
