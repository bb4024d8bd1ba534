//! Idle means asleep: with no pressure and no client traffic the daemon's
//! threads make no wakeups at all (no flood-control tick, no watchdog
//! poll, no timer). Counted from each thread's context switches in
//! `/proc/<pid>/task/*/status`, which reading does not disturb.

mod common;

use std::time::Duration;

use common::wakeups::{between, switches};
use common::*;

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
    assert!(
        before.len() >= 4,
        "expected the daemon's threads: {before:?}"
    );
    let woke: Vec<_> = between(&before, &after)
        .into_iter()
        .filter(|w| w.2 > 0)
        .map(|(name, tid, n)| format!("{name} ({tid}): {n} wakeups"))
        .collect();
    assert!(woke.is_empty(), "idle daemon threads woke up: {woke:?}");
    drop(c);
}
