//! Event-to-signal latency of kills (issue 3, "Bench").
//!
//! An in-process daemon (the tests' `InProc` harness: injected pressure
//! source, recorded snapshot files of `tests/fixtures/proc/small`, a
//! `<pid>` -> `/proc/<pid>` symlink per child) tracks 1000 real `sleep`
//! children registered over its socket. Each kill: bump the recorded
//! reclaim counter and PSI `full total` (so the policy sees new pressure
//! since the last kill), inject a `full` (complete) event, wait for the
//! PROCKILL notification, reap the victim, let the daemon see the exit,
//! replace the victim with a new registered child (1000 tracked at every
//! kill), repeat.
//!
//! The latency is the daemon's own figure, `KillRecord.event_to_signal_us`
//! (CLOCK_MONOTONIC from the epoll wakeup that read the event to the return
//! of pidfd_send_signal), captured from the "kill of <pid> took <N> us"
//! lines through the tests' log capture. The bench also prints its own
//! wall-clock time from the eventfd write to the client's receipt of
//! PROCKILL, for context.
//!
//! Meminfo deviation from the fixture: MemFree and SwapFree are raised
//! (free memory above the high watermark, swap full free) so that the 10 ms
//! re-check polls after each kill never decide a kill of their own; only the
//! injected complete event (NOT_RESPONDING) kills.
//!
//! Run: `cargo bench --bench kill_latency` (root; skips otherwise).

#[path = "../common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::fs;
use std::process::Child;
use std::time::{Duration, Instant};

use common::inproc::InProc;
use common::logcap;
use lmkd::client::Message;
use lmkd::proto::Command as Cmd;

const TRACKED: usize = 1000;
const KILLS: usize = 250;

/// What the daemon's log said about the kills.
#[derive(Default)]
struct Captured {
    /// pid -> event_to_signal_us.
    took: HashMap<i32, u64>,
    /// pid -> reason text of its kill line.
    reasons: HashMap<i32, String>,
    warnings: Vec<String>,
}

/// Reads the captured log: `kill of <pid> took <N> us ...` lines, kill lines
/// (`Kill '<name>' (<pid>), ...; reason: <text>`) and warnings.
fn captured() -> Captured {
    let mut c = Captured::default();
    for line in logcap::text().lines() {
        let (head, msg) = line.split_once(": ").unwrap_or(("", line));
        if let Some(rest) = msg.strip_prefix("kill of ") {
            let mut w = rest.split_whitespace();
            let pid = w.next().and_then(|v| v.parse().ok());
            let us = w.nth(1).and_then(|v| v.parse().ok());
            if let (Some(pid), Some(us)) = (pid, us) {
                c.took.insert(pid, us);
            }
        } else if head.ends_with(lmkd::report::KILL_TARGET) {
            let pid = msg
                .split_once("' (")
                .and_then(|(_, r)| r.split_once(')'))
                .and_then(|(p, _)| p.parse().ok());
            let reason = msg.rsplit_once("reason: ").map(|(_, r)| r.to_string());
            if let (Some(pid), Some(reason)) = (pid, reason) {
                c.reasons.insert(pid, reason);
            }
        } else if head.starts_with("WARN") || head.starts_with("ERROR") {
            c.warnings.push(msg.to_string());
        }
    }
    c
}

/// Tracked children by pid; killed and reaped on drop.
struct Kids(HashMap<i32, Child>);

impl Drop for Kids {
    fn drop(&mut self) {
        for c in self.0.values_mut() {
            let _ = c.kill();
        }
        for c in self.0.values_mut() {
            let _ = c.wait();
        }
    }
}

fn set_line(text: &str, key: &str, value: &str) -> String {
    text.lines()
        .map(|l| {
            if l.split_whitespace().next() == Some(key) {
                let unit = if l.trim_end().ends_with("kB") {
                    " kB"
                } else {
                    ""
                };
                format!("{key} {value}{unit}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(label: &str, v: &[u64]) {
    let mut s = v.to_vec();
    s.sort_unstable();
    if s.is_empty() {
        println!("{label}: no samples");
        return;
    }
    println!(
        "{label:<44} n={:<4} p50 {:>6}  p90 {:>6}  p99 {:>6}  max {:>6}  (min {})",
        s.len(),
        pct(&s, 0.50),
        pct(&s, 0.90),
        pct(&s, 0.99),
        s[s.len() - 1],
        s[0]
    );
}

fn main() {
    if !common::need_root("bench kill_latency") {
        return;
    }
    logcap::install();
    let t_all = Instant::now();

    let t = Instant::now();
    let mut kids = Kids(HashMap::new());
    for _ in 0..TRACKED {
        let c = common::spawn_sleep();
        kids.0.insert(c.id() as i32, c);
    }
    println!(
        "spawned {TRACKED} sleep children in {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let pids: Vec<i32> = kids.0.keys().copied().collect();
    let d = InProc::start("bench-kill-latency", "small", &pids, |_, _| {});
    // Free memory above the high watermark and swap all free, so the 10 ms
    // re-check polls after a kill never decide one of their own: only the
    // injected complete event (NOT_RESPONDING) kills. No event has been
    // raised yet, so the daemon is not reading the file now.
    let meminfo_path = d.dir.path("proc").join("meminfo");
    let meminfo = fs::read_to_string(&meminfo_path).unwrap();
    let swap_total = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("SwapTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .unwrap()
        .to_string();
    let meminfo = set_line(&meminfo, "MemFree:", "400000");
    let meminfo = set_line(&meminfo, "SwapFree:", &swap_total);
    fs::write(&meminfo_path, meminfo).unwrap();

    let kill_timeout_ms = lmkd::config::Config::default().kill_timeout_ms;
    let c = d.connect();
    c.send(&Cmd::Subscribe { event: 0 }).unwrap();
    let mut next_adj = 0usize;
    let mut adj = || {
        next_adj += 1;
        300 + (next_adj * 37 % 700) as i32
    };
    for &pid in &pids {
        c.send(&Cmd::ProcPrio(common::prio(pid, adj()))).unwrap();
    }
    common::Daemon::sync(&c);
    println!("registered {TRACKED} processes; kill_timeout_ms {kill_timeout_ms}; triggering {KILLS} kills one at a time");

    let mut wall_us = Vec::with_capacity(KILLS);
    let mut killed = Vec::with_capacity(KILLS);
    let mut retries = 0;
    let mut unknown_victims = 0;
    while killed.len() < KILLS {
        // New reclaim and a new second of complete stall, or the policy
        // takes the event for one the kernel held back from before the
        // last kill.
        d.bump_pressure();
        let t0 = Instant::now();
        d.raise_complete();
        let mut victim = None;
        let end = t0 + Duration::from_millis(1000);
        while victim.is_none() && Instant::now() < end {
            if let Some(Message::Kill(k)) = c.recv(Some(Duration::from_millis(100))).unwrap() {
                victim = Some((k.pid, t0.elapsed()));
            }
        }
        let Some((pid, dt)) = victim else {
            retries += 1;
            assert!(
                retries < 20,
                "no kill after {retries} injected events; warnings: {:?}",
                captured().warnings
            );
            continue;
        };
        wall_us.push(dt.as_micros() as u64);
        killed.push(pid);
        // Reap the victim (our child), then a round trip so the daemon has
        // handled its pidfd exit before the next event.
        match kids.0.remove(&pid) {
            Some(mut child) => {
                let _ = child.wait();
            }
            None => unknown_victims += 1,
        }
        d.unlink(pid);
        let nc = common::spawn_sleep();
        let npid = nc.id() as i32;
        d.link(npid);
        kids.0.insert(npid, nc);
        c.send(&Cmd::ProcPrio(common::prio(npid, adj()))).unwrap();
        common::Daemon::sync(&c);
    }
    let n_kills = common::kill_count(&c, -1000, 1000);

    // The logging thread runs behind the core; wait for every line.
    let end = Instant::now() + Duration::from_secs(5);
    while captured().took.len() < killed.len() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = captured();
    let samples: Vec<u64> = killed
        .iter()
        .filter_map(|p| log.took.get(p).copied())
        .collect();
    let mut by_reason: HashMap<String, usize> = HashMap::new();
    for p in &killed {
        *by_reason
            .entry(
                log.reasons
                    .get(p)
                    .cloned()
                    .unwrap_or_else(|| "(no kill line)".into()),
            )
            .or_default() += 1;
    }

    println!(
        "\n{} kills ({} by GETKILLCNT), {TRACKED} tracked processes at every kill, {} re-injections, {} victims not ours",
        killed.len(),
        n_kills,
        retries,
        unknown_victims
    );
    println!("kill reasons: {by_reason:?}");
    summary("event to signal, us (daemon's own figure)", &samples);
    summary("inject to PROCKILL received, us (bench wall)", &wall_us);
    if !log.warnings.is_empty() {
        println!("daemon warnings ({}):", log.warnings.len());
        for w in log.warnings.iter().take(10) {
            println!("  {w}");
        }
    }
    drop(c);
    drop(kids);
    println!("total bench time {:.1} s", t_all.elapsed().as_secs_f64());
}
