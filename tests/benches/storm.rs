//! Time to kill under real memory pressure, with and without a PROCPRIO
//! storm (issue 9, item 11).
//!
//! Each round runs the tests' real-pressure rig (`common::pressure::Rig`:
//! the real `lmkd` binary watching the PSI of a 256 MiB memory cgroup, zram
//! swap, a hog at adj 950 that grows until killed) and measures from the
//! hog's start to the subscriber's PROCKILL. In storm rounds three clients
//! (the subscriber among them) send PROCPRIO as fast as they can for 30
//! sleepers the whole time. Rounds alternate calm / storm. Also printed:
//! the daemon's own event-to-signal figure (its "kill of <pid> took <N> us"
//! line), which leaves out the hog's own slowdown (it shares the two cores
//! with the storm).
//!
//! Run: `cargo bench --bench storm` (root, cgroup v1 memory, cgroup2
//! memory.pressure, PSI, zram0; skips with a message otherwise).
//! `LMKD_STORM_ROUNDS=<n>` sets the rounds per mode (default 4). Cargo
//! builds the `lmkd` binary for the bench itself.

#[path = "../common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::pressure::*;
use common::{prio, Daemon, Sleeper};
use lmkd::proto::Command as Cmd;

const TARGETS: usize = 30;

struct Round {
    storm: bool,
    kill_s: f64,
    event_to_signal_us: Option<u64>,
    sent: u64,
}

fn main() {
    child_main();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("storm bench SKIPPED: needs root");
        return;
    }
    let memcg_root = match rig_prerequisites() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("storm bench SKIPPED: {why}");
            return;
        }
    };
    let rounds: usize = std::env::var("LMKD_STORM_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let _serial = serial();
    let oom_before = vmstat("oom_kill");
    let zram = match ZramSwap::setup(ZRAM_MIB) {
        Ok(z) => z,
        Err(why) => {
            eprintln!("storm bench SKIPPED: zram swap unavailable: {why}");
            return;
        }
    };
    let mut results = vec![];
    for i in 0..rounds * 2 {
        let r = round(&memcg_root, i % 2 == 1);
        println!(
            "round {:2} {:5}: hog start -> PROCKILL {:6.2} s, event -> signal {} us{}",
            i + 1,
            if r.storm { "storm" } else { "calm" },
            r.kill_s,
            r.event_to_signal_us
                .map_or("?".to_string(), |v| v.to_string()),
            if r.storm {
                format!(", {} PROCPRIO sent", r.sent)
            } else {
                String::new()
            }
        );
        results.push(r);
    }
    drop(zram);
    let oom_after = vmstat("oom_kill");

    let med = |storm: bool, f: &dyn Fn(&Round) -> Option<f64>| {
        let mut v: Vec<f64> = results
            .iter()
            .filter(|r| r.storm == storm)
            .filter_map(f)
            .collect();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    };
    let kill = |r: &Round| Some(r.kill_s);
    let e2s = |r: &Round| r.event_to_signal_us.map(|v| v as f64);
    let (calm, storm) = (med(false, &kill), med(true, &kill));
    let (calm_us, storm_us) = (med(false, &e2s), med(true, &e2s));
    println!(
        "median time to kill: calm {calm:.2} s, storm {storm:.2} s, ratio {:.2} (goal <= 1.5)",
        storm / calm
    );
    println!(
        "median event -> signal: calm {calm_us:.0} us, storm {storm_us:.0} us, ratio {:.2}",
        storm_us / calm_us
    );
    println!(
        "kernel OOM kills during the bench: {}",
        oom_after - oom_before
    );
}

fn round(memcg_root: &std::path::Path, with_storm: bool) -> Round {
    let mut rig = Rig::start(memcg_root, "storm-bench");
    let hog = rig.hog.pid();
    let c = rig.c.clone();
    // The same table in both modes; only the storm differs.
    let targets: Vec<Sleeper> = (0..TARGETS).map(|_| Sleeper::new()).collect();
    for (i, t) in targets.iter().enumerate() {
        c.send(&Cmd::ProcPrio(prio(t.pid(), 100 + i as i32)))
            .unwrap();
    }
    Daemon::sync(&c);
    let storm = with_storm.then(|| {
        let mut clients = vec![c.clone()];
        clients.extend((0..2).map(|_| Arc::new(rig.d.connect())));
        Storm::start(clients, targets.iter().map(Sleeper::pid).collect())
    });
    // Let the storm reach full speed before the hog starts.
    std::thread::sleep(Duration::from_millis(200));
    let go = rig.go();
    let seen = rig.wait_kill(go, Duration::from_secs(60));
    let sent = storm.map_or(0, Storm::stop);
    let seen = seen.unwrap_or_else(|e| panic!("storm bench: {e}"));
    assert_eq!(seen.kill.pid, hog, "the kill was not the hog");
    assert_eq!(
        rig.memcg_oom_kills(),
        Some(0),
        "the kernel OOM killer acted"
    );
    let needle = format!("kill of {hog} took ");
    let log = rig.d.wait_log(&needle, Duration::from_secs(5));
    let event_to_signal_us = log
        .lines()
        .find_map(|l| l.split_once(&needle))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok());
    let _ = rig.hog.wait_exit(Duration::from_secs(10));
    Round {
        storm: with_storm,
        kill_s: seen.kill_at.as_secs_f64(),
        event_to_signal_us,
        sent,
    }
}
