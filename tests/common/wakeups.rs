//! Wakeups of a process's threads, from the context switch counters in
//! `/proc/<pid>/task/*/status` (reading them does not wake the process).
//! One piece serves the idle test and the idle bench.

use std::collections::BTreeMap;
use std::fs;

/// Context switches (voluntary + involuntary) of each thread, by tid,
/// with the thread's name.
pub fn switches(pid: u32) -> BTreeMap<u32, (String, u64)> {
    let mut out = BTreeMap::new();
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(tid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(s) = fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let field = |k: &str| {
            s.lines()
                .find_map(|l| l.strip_prefix(k))
                .map_or("", str::trim)
                .to_string()
        };
        let n = |k: &str| field(k).parse::<u64>().unwrap_or(0);
        let total = n("voluntary_ctxt_switches:") + n("nonvoluntary_ctxt_switches:");
        out.insert(tid, (field("Name:"), total));
    }
    out
}

/// Wakeups per thread between two samples, as (name, tid, count), every
/// thread of `after` listed (a thread born in between counts from 0).
pub fn between(
    before: &BTreeMap<u32, (String, u64)>,
    after: &BTreeMap<u32, (String, u64)>,
) -> Vec<(String, u32, u64)> {
    after
        .iter()
        .map(|(tid, (name, n))| {
            let was = before.get(tid).map_or(0, |b| b.1);
            (name.clone(), *tid, n.saturating_sub(was))
        })
        .collect()
}
