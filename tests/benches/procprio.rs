//! PROCPRIO throughput of the real `lmkd` binary with 1000 registered
//! processes (issue 2, "Bench").
//!
//! Four modes, measured side by side in alternating rounds so machine noise
//! hits them alike:
//!   prio       PROCPRIO, the daemon writes /proc/<pid>/oom_score_adj
//!   prio-only  PROCPRIO with for_lmkd_only = 1 (table update, no write)
//!   batch      PROCS_PRIO, 3 records per packet, writes included
//!   batch-only PROCS_PRIO, 3 records per packet, for_lmkd_only = 1
//! Every command moves its process to a new adj. One pass sends one command
//! per process and ends with a GETKILLCNT round trip, so the time counts
//! applied commands, not queued ones.
//!
//! Also prints the daemon's VmRSS / VmLck / VmHWM right after start-up with
//! the default table (max_procs 4096) and after the 1000 registrations.
//!
//! Run: `cargo bench --bench procprio` (root; skips otherwise).

#[path = "../common/mod.rs"]
mod common;

use std::fs;
use std::process::Child;
use std::time::{Duration, Instant};

use lmkd::client::Client;
use lmkd::proto::{Command as Cmd, PrioBatch};

const PROCS: usize = 1000;
const ROUNDS: usize = 15;
const PASSES: usize = 10;

/// 1000 `sleep` children that die with us (PR_SET_PDEATHSIG) and are
/// killed and reaped on drop.
struct Kids(Vec<Child>);

impl Kids {
    fn pids(&self) -> Vec<i32> {
        self.0.iter().map(|c| c.id() as i32).collect()
    }
}

impl Drop for Kids {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

fn status_kb(pid: u32, key: &str) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim_start_matches(':').split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn print_mem(what: &str, pid: u32) {
    println!(
        "daemon memory {what:<32} VmRSS {:>6} kB  VmLck {:>6} kB  VmHWM {:>6} kB",
        status_kb(pid, "VmRSS"),
        status_kb(pid, "VmLck"),
        status_kb(pid, "VmHWM")
    );
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, utime 14, stime 15 (1-based in proc(5)).
    let get = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(14) + get(15)
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Prio,
    PrioOnly,
    Batch,
    BatchOnly,
}

impl Mode {
    const ALL: [Mode; 4] = [Mode::Prio, Mode::PrioOnly, Mode::Batch, Mode::BatchOnly];
    fn name(self) -> &'static str {
        match self {
            Mode::Prio => "PROCPRIO (writes oom_score_adj)",
            Mode::PrioOnly => "PROCPRIO for_lmkd_only=1",
            Mode::Batch => "PROCS_PRIO x3 (writes)",
            Mode::BatchOnly => "PROCS_PRIO x3 for_lmkd_only=1",
        }
    }
    fn lmkd_only(self) -> bool {
        matches!(self, Mode::PrioOnly | Mode::BatchOnly)
    }
}

fn adj_for(i: usize, pass: usize) -> i32 {
    // Distinct from the previous pass's adj for every process.
    100 + ((i * 7 + pass) % 900) as i32
}

fn sync(c: &Client) {
    common::Daemon::sync(c);
}

/// Sends one pass (one command per process) and waits for the round trip.
fn pass(c: &Client, pids: &[i32], mode: Mode, n: usize) {
    let rec = |i: usize| {
        let mut p = common::prio(pids[i], adj_for(i, n));
        p.for_lmkd_only = mode.lmkd_only();
        p
    };
    match mode {
        Mode::Prio | Mode::PrioOnly => {
            for i in 0..pids.len() {
                c.send(&Cmd::ProcPrio(rec(i))).expect("send PROCPRIO");
            }
        }
        Mode::Batch | Mode::BatchOnly => {
            let mut i = 0;
            while i < pids.len() {
                let end = (i + 3).min(pids.len());
                let recs: Vec<_> = (i..end).map(rec).collect();
                let b = PrioBatch::from_slice(&recs).expect("batch of 3");
                c.send(&Cmd::ProcsPrio(b)).expect("send PROCS_PRIO");
                i = end;
            }
        }
    }
    sync(c);
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    if !common::need_root("bench procprio") {
        return;
    }
    let t_all = Instant::now();
    let d = common::Daemon::start_with("bench-procprio", "", &[], |cmd| {
        common::die_with_us(cmd);
    });
    let dpid = d.child.id();
    // Let start-up settle (threads, first snapshot).
    std::thread::sleep(Duration::from_millis(200));
    println!("lmkd pid {dpid}, default config (max_procs 4096), {PROCS} registered processes");
    print_mem("after start-up:", dpid);

    let t = Instant::now();
    let kids = Kids((0..PROCS).map(|_| common::spawn_sleep()).collect());
    let pids = kids.pids();
    println!(
        "spawned {PROCS} sleep children in {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );

    let c = d.connect();
    let t = Instant::now();
    for (i, &pid) in pids.iter().enumerate() {
        c.send(&Cmd::ProcPrio(common::prio(pid, adj_for(i, 0))))
            .expect("register");
    }
    sync(&c);
    println!(
        "registered {PROCS} processes in {:.1} ms (first registration opens a pidfd)",
        t.elapsed().as_secs_f64() * 1e3
    );
    print_mem("after 1000 registrations:", dpid);
    // Registration really applied: the daemon wrote oom_score_adj.
    for (i, &pid) in pids.iter().enumerate().step_by(97) {
        assert_eq!(common::oom_adj(pid), adj_for(i, 0), "registration of {pid}");
    }

    // Warm-up pass of every mode.
    let mut n = 1;
    for m in Mode::ALL {
        pass(&c, &pids, m, n);
        n += 1;
    }

    // SAFETY: sysconf has no memory-safety preconditions.
    let tick_hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); 4];
    let mut cpu_us: Vec<(u64, u64)> = vec![(0, 0); 4]; // (ticks, commands)
    for round in 0..ROUNDS {
        // Rotate the order each round.
        for k in 0..4 {
            let mi = (k + round) % 4;
            let m = Mode::ALL[mi];
            let ticks0 = cpu_ticks(dpid);
            let t = Instant::now();
            for _ in 0..PASSES {
                pass(&c, &pids, m, n);
                n += 1;
            }
            let dt = t.elapsed().as_secs_f64();
            let ticks = cpu_ticks(dpid) - ticks0;
            rates[mi].push((PASSES * PROCS) as f64 / dt);
            cpu_us[mi].0 += ticks;
            cpu_us[mi].1 += (PASSES * PROCS) as u64;
            // Spot-check the last pass took effect (or did not write).
            let last = n - 1;
            for (i, &pid) in pids.iter().enumerate().step_by(131) {
                if !m.lmkd_only() {
                    assert_eq!(common::oom_adj(pid), adj_for(i, last), "{}", m.name());
                }
            }
        }
    }
    // for_lmkd_only really skipped the write: values stay at the last
    // written pass, whatever lmkd-only passes came after.
    let mut check = pids.clone();
    check.truncate(5);
    for (i, &pid) in check.iter().enumerate() {
        let mut p = common::prio(pid, 555);
        p.for_lmkd_only = true;
        c.send(&Cmd::ProcPrio(p)).unwrap();
        sync(&c);
        assert_ne!(common::oom_adj(pid), 555, "for_lmkd_only wrote ({i})");
    }

    println!(
        "\nthroughput, commands applied per second ({ROUNDS} rounds x {PASSES} passes x {PROCS} commands per mode, round trip after each pass):"
    );
    println!(
        "{:<32} {:>10} {:>10} {:>10} {:>14}",
        "mode", "median/s", "min/s", "max/s", "daemon CPU/cmd"
    );
    let mut med = [0f64; 4];
    for (mi, m) in Mode::ALL.iter().enumerate() {
        let mut r = rates[mi].clone();
        med[mi] = median(&mut r);
        let cpu = cpu_us[mi].0 as f64 / tick_hz * 1e6 / cpu_us[mi].1 as f64;
        println!(
            "{:<32} {:>10.0} {:>10.0} {:>10.0} {:>11.2} us",
            m.name(),
            med[mi],
            r[0],
            r[r.len() - 1],
            cpu
        );
    }
    println!(
        "ratios of medians: for_lmkd_only / write = {:.2} (PROCPRIO), {:.2} (PROCS_PRIO); PROCS_PRIO / PROCPRIO = {:.2} (write), {:.2} (for_lmkd_only)",
        med[1] / med[0],
        med[3] / med[2],
        med[2] / med[0],
        med[3] / med[1]
    );
    print_mem("after the throughput runs:", dpid);
    drop(c);
    drop(kids);
    drop(d);
    println!("total bench time {:.1} s", t_all.elapsed().as_secs_f64());
}
