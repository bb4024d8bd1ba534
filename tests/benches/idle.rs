//! Wakeups of an idle daemon: no pressure, no client traffic, ~50
//! registered processes. Counts every thread's context switches (voluntary
//! and involuntary, from `/proc/<pid>/task/*/status`) over LMKD_IDLE_SECS
//! (default 20) seconds, for lmkd-rs and, when a reference lmkd is given,
//! for it too, in the same window, with the ratio. Also prints each
//! daemon's resident and locked memory and each thread's touched stack.
//! Where cgroup2 is mounted both daemons watch an empty group's
//! `memory.pressure` (the reference through a bind mount, see
//! `common::reference`), so other tenants' pressure cannot wake them.
//!
//! Run: `cargo bench --bench idle` (root; skips otherwise).
//! Reference: `cargo bench --bench idle -- --reference PATH` or env
//! `LMKD_REFERENCE=PATH` (see `common::reference`).

#[path = "../common/mod.rs"]
mod common;

use std::fs;
use std::time::Duration;

use common::reference::{self, keyed_kb, status_kb, Running};
use common::wakeups::{between, switches};
use common::{Daemon, Sleeper, TempDir};
use lmkd::client::Client;
use lmkd::proto::Command as Cmd;

const SLEEPERS: usize = 50;

/// Connects (waiting for the socket) and registers every sleeper.
fn register(d: &Running, pids: &[i32]) -> Result<Client, String> {
    let c = d.connect()?;
    for (i, &pid) in pids.iter().enumerate() {
        c.send(&Cmd::ProcPrio(common::prio(pid, 900 + i as i32)))
            .map_err(|e| format!("{}: PROCPRIO: {e}", d.name))?;
    }
    Daemon::sync(&c);
    Ok(c)
}

/// Resident kB of the mapping holding each thread's stack pointer (the
/// thread's stack, locked whole). Only for
/// threads asleep in a syscall (the rest show "running").
fn stacks(pid: u32) -> Vec<(String, u64)> {
    let smaps = fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut maps: Vec<(u64, u64, u64)> = vec![];
    for l in smaps.lines() {
        let first = l.split_whitespace().next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                maps.push((a, b, 0));
                continue;
            }
        }
        if let (Some(rss), Some(m)) = (l.strip_prefix("Rss:"), maps.last_mut()) {
            m.2 = rss
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .unwrap_or(0);
        }
    }
    let mut out = vec![];
    for (name, tid, _) in between(&Default::default(), &switches(pid)) {
        let sc = fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).unwrap_or_default();
        let f: Vec<&str> = sc.split_whitespace().collect();
        let Some(sp) = f
            .len()
            .checked_sub(2)
            .filter(|_| f.len() > 3)
            .and_then(|i| u64::from_str_radix(f[i].trim_start_matches("0x"), 16).ok())
        else {
            continue;
        };
        if let Some(m) = maps.iter().find(|m| m.0 <= sp && sp < m.1) {
            out.push((name, m.2));
        }
    }
    out
}

fn print_memory(d: &Running) {
    let pid = d.child.id();
    let rollup = format!("/proc/{pid}/smaps_rollup");
    println!(
        "  {:<10} VmRSS {:>5} kB  VmLck {:>5} kB  smaps_rollup Rss {:>5} kB  Locked {:>5} kB",
        d.name,
        status_kb(pid, "VmRSS"),
        status_kb(pid, "VmLck"),
        keyed_kb(&rollup, "Rss"),
        keyed_kb(&rollup, "Locked"),
    );
    let st: Vec<String> = stacks(pid)
        .into_iter()
        .map(|(n, kb)| format!("{n} {kb} kB"))
        .collect();
    println!("  {:<10} touched stack per thread: {}", "", st.join(", "));
}

fn main() {
    if !common::need_root("bench idle") {
        return;
    }
    let secs: u64 = std::env::var("LMKD_IDLE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = TempDir::new("bench-idle");
    let sleepers: Vec<Sleeper> = (0..SLEEPERS).map(|_| Sleeper::new()).collect();
    let pids: Vec<i32> = sleepers.iter().map(Sleeper::pid).collect();
    let quiet = reference::quiet_group("bench-idle");
    let psi = quiet.as_ref().map(|g| g.file("memory.pressure"));
    let daemons = reference::daemons(&dir, "", psi.as_deref());
    // Each registers the same sleepers through its own socket; the
    // connections stay open (as ActivityManager's does) but silent.
    let clients: Vec<Client> = daemons
        .iter()
        .map(|d| register(d, &pids).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    // Let start-up and the registrations' logging settle.
    std::thread::sleep(Duration::from_secs(2));
    let before: Vec<_> = daemons.iter().map(|d| switches(d.child.id())).collect();
    std::thread::sleep(Duration::from_secs(secs));
    let after: Vec<_> = daemons.iter().map(|d| switches(d.child.id())).collect();
    println!(
        "idle wakeups in {secs} s, {SLEEPERS} registered processes, no pressure and no traffic:"
    );
    let mut totals = vec![];
    for (i, d) in daemons.iter().enumerate() {
        let per = between(&before[i], &after[i]);
        let total: u64 = per.iter().map(|w| w.2).sum();
        let list: Vec<String> = per.iter().map(|(n, _, c)| format!("{n} {c}")).collect();
        println!("  {:<10} {total:>6} wakeups  ({})", d.name, list.join(", "));
        totals.push(total);
    }
    if let [rs, aosp] = totals[..] {
        println!(
            "  ratio lmkd-rs / AOSP lmkd: {}",
            reference::ratio(rs as f64, aosp as f64)
        );
    }
    println!("memory after start-up and {SLEEPERS} registrations:");
    for d in &daemons {
        print_memory(d);
    }
    drop(clients);
    drop(daemons);
    drop(quiet);
}
