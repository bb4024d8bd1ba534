//! Idle means asleep: with no pressure and no client traffic the daemon's
//! threads make no wakeups at all (no flood-control tick, no watchdog
//! poll, no timer). Counted from each thread's context switches in
//! `/proc/<pid>/task/*/status`, which reading does not disturb.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;

use common::*;

/// Voluntary + involuntary context switches of every thread, by tid
/// (with its name).
pub fn switches(pid: u32) -> BTreeMap<u32, (String, u64)> {
    let mut out = BTreeMap::new();
    for e in fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
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

#[test]
fn an_idle_daemon_makes_no_wakeups() {
    if !need_root("an_idle_daemon_makes_no_wakeups") {
        return;
    }
    // Pressure monitors wait for boot completion: on this shared machine a
    // real memory stall would be a legitimate wakeup, not a timer.
    let d = Daemon::start("idle", "delay_monitors_until_boot = true");
    let sleepers: Vec<Sleeper> = (0..10).map(|_| Sleeper::new()).collect();
    let c = d.connect();
    for (i, s) in sleepers.iter().enumerate() {
        c.send(&lmkd::proto::Command::ProcPrio(prio(
            s.pid(),
            900 + i as i32,
        )))
        .unwrap();
    }
    Daemon::sync(&c);
    // Let start-up and the traffic above settle (the log lines of the
    // registrations, the first flood-control window).
    std::thread::sleep(Duration::from_millis(1500));
    let pid = d.child.id();
    let before = switches(pid);
    std::thread::sleep(Duration::from_secs(3));
    let after = switches(pid);
    assert!(before.len() >= 4, "expected the daemon's threads: {before:?}");
    let woke: Vec<_> = after
        .iter()
        .filter_map(|(tid, (name, n))| {
            let was = before.get(tid).map_or(0, |b| b.1);
            (*n != was).then(|| format!("{name} ({tid}): {} wakeups", n - was))
        })
        .collect();
    assert!(woke.is_empty(), "idle daemon threads woke up: {woke:?}");
    drop(c);
}
