//! Victim selection: walk the table from adj 1000 down to the policy's
//! minimum and pick one process worth killing. Reads a few `/proc/<pid>`
//! files into stack buffers; never allocates.

use crate::commands;
use crate::memcg::AppMemcg;
use crate::proto::{self, KillStat};
use crate::sys::{self, ProcFs};
use crate::table::{Proc, ProcTable};

/// Above this adj the list tail is taken as is; at or below it (important
/// processes) the heaviest one is taken, since killing it frees the most.
pub const HEAVIEST_AT_OR_BELOW: i32 = 200;

/// Room for a `/proc/<pid>/status` text (about 1.5 kB on current kernels).
const STATUS_BUF: usize = 2048;

/// Most stale records one selection reports for removal.
pub const MAX_STALE: usize = 16;

/// The process to kill and what we know about it.
#[derive(Clone, Copy, Debug)]
pub struct Victim {
    pub pid: i32,
    pub uid: i32,
    pub adj: i32,
    pub rss_kb: u64,
    pub swap_kb: u64,
    /// pgfault, start time, name... for the stats packet and the kill line.
    pub stat: KillStat,
}

/// Records found dead (their pidfd is readable: the process exited, so the
/// pid may already belong to someone else) during a selection.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stale {
    pids: [i32; MAX_STALE],
    len: usize,
}

impl Stale {
    fn push(&mut self, pid: i32) {
        if self.len < MAX_STALE {
            self.pids[self.len] = pid;
            self.len += 1;
        }
    }

    pub fn as_slice(&self) -> &[i32] {
        &self.pids[..self.len]
    }
}

/// What may not be killed, and how to choose.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    pub min_adj: i32,
    pub kill_heaviest_task: bool,
    pub self_pid: i32,
}

/// Picks a victim with adj >= `rules.min_adj`, most expendable first.
pub fn select(
    table: &ProcTable,
    procfs: &ProcFs,
    memcg: Option<&AppMemcg>,
    rules: Rules,
    stale: &mut Stale,
) -> Option<Victim> {
    let lo = rules.min_adj.clamp(proto::OOM_ADJ_MIN, proto::OOM_ADJ_MAX);
    for adj in (lo..=proto::OOM_ADJ_MAX).rev() {
        let heaviest = rules.kill_heaviest_task || adj <= HEAVIEST_AT_OR_BELOW;
        let mut best: Option<(Proc, u64)> = None;
        for p in table.iter_adj(adj as i16) {
            if p.pid <= 1 || p.pid == rules.self_pid {
                continue;
            }
            if exited(table, procfs, p.pid) {
                stale.push(p.pid);
                continue;
            }
            if !heaviest {
                // The tail is taken as is: one `status` read gives both
                // its size and the figures for the kill report.
                let mut buf = [0u8; STATUS_BUF];
                let Ok(n) = procfs.read(Some(p.pid), "status", &mut buf) else {
                    continue;
                };
                let text = &buf[..n];
                // A zombie or kernel-freed process has no resident pages
                // left (its status has no VmRSS line).
                let rss_kb = match sys::status_field(text, b"VmRSS:") {
                    Some(kb) if kb > 0 => kb,
                    _ => continue,
                };
                let v = describe_status(text, memcg, p, rss_kb);
                // Gone meanwhile: try the next level down.
                if let Some(v) = confirmed(table, procfs, stale, v) {
                    return Some(v);
                }
                break;
            }
            let Some(rss_kb) = rss_kb(procfs, p.pid) else {
                continue;
            };
            if rss_kb == 0 {
                continue;
            }
            match best {
                Some((_, b)) if b >= rss_kb => {}
                _ => best = Some((*p, rss_kb)),
            }
        }
        if let Some((p, rss_kb)) = best {
            if let Some(v) = confirmed(table, procfs, stale, describe(procfs, memcg, &p, rss_kb)) {
                return Some(v);
            }
        }
    }
    None
}

/// The pid is ours only while the pidfd says it is alive; checked again
/// after reading per-pid files so the figures match the victim. Without a
/// pidfd this start-time check is the last one before the kill(2).
fn confirmed(table: &ProcTable, procfs: &ProcFs, stale: &mut Stale, v: Victim) -> Option<Victim> {
    if exited(table, procfs, v.pid) {
        stale.push(v.pid);
        return None;
    }
    Some(v)
}

/// See [`commands::gone`]; a pid missing from the table counts as exited.
fn exited(table: &ProcTable, procfs: &ProcFs, pid: i32) -> bool {
    table
        .entry(pid)
        .map_or(true, |e| commands::gone(procfs, &e))
}

/// Resident set size from `/proc/<pid>/statm` (second field, pages).
pub fn rss_kb(procfs: &ProcFs, pid: i32) -> Option<u64> {
    let mut buf = [0u8; 128];
    let n = procfs.read(Some(pid), "statm", &mut buf).ok()?;
    let text = &buf[..n];
    let sp = text.iter().position(|&b| b == b' ')?;
    sys::parse_u64(&text[sp + 1..]).map(|pages| pages * page_kb())
}

fn page_kb() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let sz = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if sz > 0 {
        sz as u64 / 1024
    } else {
        4
    }
}

/// Gathers the kill line and stats packet figures the signal may not
/// wait long for: the memory ones, which are gone once the victim has torn
/// down its address space, and the comm (the name when `cmdline` cannot be
/// read after the signal), all from one `status` read. The fault counts
/// and start time survive the signal and are read after it, off the core
/// ([`parse_stat`], by the reaper). Missing files leave -1.
pub fn describe(procfs: &ProcFs, memcg: Option<&AppMemcg>, p: &Proc, rss_kb: u64) -> Victim {
    let mut buf = [0u8; STATUS_BUF];
    let n = procfs.read(Some(p.pid), "status", &mut buf).unwrap_or(0);
    describe_status(&buf[..n], memcg, p, rss_kb)
}

/// [`describe`] from a `status` text already read (empty if it could not be).
fn describe_status(text: &[u8], memcg: Option<&AppMemcg>, p: &Proc, rss_kb: u64) -> Victim {
    let mut stat = KillStat::default();
    let mut swap_kb = 0;
    if let Some(name) = status_name(text) {
        stat.set_name(name);
    }
    if let Some(s) = sys::status_field(text, b"VmSwap:") {
        swap_kb = s;
        stat.swap_bytes = (s * 1024) as i64;
    }
    if let Some(f) = sys::status_field(text, b"RssFile:") {
        stat.cache_bytes = (f * 1024) as i64;
    }
    stat.rss_bytes = (rss_kb * 1024) as i64;
    // With per-app memcgs an app's stats are what its group charged.
    if let Some(m) = memcg.filter(|_| p.ptype == proto::ptype::APP as u8) {
        m.read_stat(p.uid, p.pid, &mut stat);
    }
    stat.uid = p.uid;
    stat.oom_score_adj = p.adj as i32;
    Victim {
        pid: p.pid,
        uid: p.uid,
        adj: p.adj as i32,
        rss_kb,
        swap_kb,
        stat,
    }
}

/// The comm from `status`' first line, `Name:\t<comm>`.
fn status_name(text: &[u8]) -> Option<&[u8]> {
    let rest = text.strip_prefix(b"Name:")?;
    let start = rest.iter().position(|&b| b != b'\t' && b != b' ')?;
    let rest = &rest[start..];
    Some(&rest[..rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len())])
}

/// Fills the name, fault counts and start time from `/proc/<pid>/stat`.
/// The comm field may hold spaces and parentheses, so it runs from the
/// first '(' to the last ')' and the other fields are counted after it.
pub fn parse_stat(text: &[u8], stat: &mut KillStat) {
    let Some(close) = text.iter().rposition(|&b| b == b')') else {
        return;
    };
    if let Some(open) = text[..close].iter().position(|&b| b == b'(') {
        stat.set_name(&text[open + 1..close]);
    }
    // Fields after ")": 3=state, 4=ppid, ... 10=minflt, 12=majflt, 22=starttime.
    let mut field = 2;
    for tok in text[close + 1..]
        .split(|&b| b == b' ')
        .filter(|t| !t.is_empty())
    {
        field += 1;
        let v = || sys::parse_u64(tok).map(|v| v as i64);
        match field {
            10 => stat.pgfault = v().unwrap_or(-1),
            12 => stat.pgmajfault = v().unwrap_or(-1),
            22 => {
                // SAFETY: sysconf has no memory-safety preconditions.
                let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as i64;
                stat.start_time_ns = v().map_or(-1, |t| t.saturating_mul(1_000_000_000 / hz));
                return;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_odd_comm() {
        let line =
            b"1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 777 0 3 0 10 5 0 0 20 0 1 0 4200 123 45\n";
        let mut s = KillStat::default();
        parse_stat(line, &mut s);
        assert_eq!(s.name(), b"a) b (c)");
        assert_eq!(s.pgfault, 777);
        assert_eq!(s.pgmajfault, 3);
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as i64;
        assert_eq!(s.start_time_ns, 4200 * (1_000_000_000 / hz));
    }

    #[test]
    fn comm_from_status() {
        assert_eq!(
            status_name(b"Name:\tsleep\nUmask:\t0022\n"),
            Some(&b"sleep"[..])
        );
        assert_eq!(status_name(b"Umask:\t0022\n"), None);
    }

    /// A fake `/proc` with `stat` (start time 0, as a record without a
    /// pidfd expects), `status` and `statm` per pid.
    fn fake_proc(procs: &[(i32, Option<u64>, &str)]) -> (std::path::PathBuf, ProcFs) {
        let root = std::env::temp_dir().join(format!("lmkd-victim-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for &(pid, rss_kb, name) in procs {
            let d = root.join(pid.to_string());
            std::fs::create_dir_all(&d).unwrap();
            let fields = "S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 0 1 1";
            std::fs::write(d.join("stat"), format!("{pid} ({name}) {fields}\n")).unwrap();
            let rss = rss_kb.map_or(String::new(), |kb| format!("VmRSS:\t{kb} kB\n"));
            let status = format!("Name:\t{name}\nUmask:\t0022\n{rss}VmSwap:\t7 kB\n");
            std::fs::write(d.join("status"), status).unwrap();
            let pages = rss_kb.unwrap_or(0) / page_kb();
            std::fs::write(d.join("statm"), format!("100 {pages} 0 0 0 0 0\n")).unwrap();
        }
        let procfs = ProcFs::new(&root).unwrap();
        (root, procfs)
    }

    fn pick(table: &ProcTable, procfs: &ProcFs, heaviest: bool) -> Option<(i32, u64, u64)> {
        let rules = Rules {
            min_adj: 0,
            kill_heaviest_task: heaviest,
            self_pid: 1,
        };
        let v = select(table, procfs, None, rules, &mut Stale::default())?;
        assert_eq!(v.stat.name(), format!("app{}", v.pid).as_bytes());
        Some((v.pid, v.rss_kb, v.swap_kb))
    }

    #[test]
    fn tail_skips_a_process_with_no_resident_memory() {
        // 101 is the tail (registered first) but has no VmRSS (its memory
        // is gone); 102 is next; 103 is the largest.
        let (root, procfs) = fake_proc(&[
            (101, None, "app101"),
            (102, Some(400), "app102"),
            (103, Some(8000), "app103"),
        ]);
        let mut table = ProcTable::new(8).unwrap();
        for pid in [101, 102, 103] {
            let p = Proc {
                pid,
                uid: 10_000,
                adj: 900,
                ptype: proto::ptype::APP as u8,
                owner: crate::table::NO_OWNER,
            };
            table.insert(p).unwrap();
        }
        assert_eq!(pick(&table, &procfs, false), Some((102, 400, 7)));
        assert_eq!(pick(&table, &procfs, true), Some((103, 8000, 7)));
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn stat_garbage_leaves_unknowns() {
        let mut s = KillStat::default();
        parse_stat(b"no paren here", &mut s);
        assert_eq!(s.pgfault, -1);
        parse_stat(b"1 (x) S", &mut s);
        assert_eq!(s.start_time_ns, -1);
    }
}
