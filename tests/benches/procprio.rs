//! Update rate of the real `lmkd` binary with 999 registered processes
//! (issue 2, "Bench"; issue 10), beside a reference lmkd when one is given.
//!
//! Modes, measured in alternating rounds (order rotated each round, the
//! daemons taking turns) so machine noise hits them alike:
//!   batch      PROCS_PRIO, 3 four-field records per packet (the headline)
//!   prio       PROCPRIO with 4 arguments
//!   batch-only PROCS_PRIO, 3 five-field records, for_lmkd_only = 1
//!   prio-only  PROCPRIO with 5 arguments, for_lmkd_only = 1
//! The first two are the forms every lmkd accepts (the reference refuses
//! 5-argument PROCPRIO) and make it write `oom_score_adj`; each record
//! moves its process to an adj it did not have, so no daemon can skip the
//! write. The `-only` modes (no write) run on lmkd-rs alone. One pass sends
//! one record per process and ends with a GETKILLCNT round trip, so the
//! rate counts applied records, not queued ones. Each daemon has its own
//! 999 `sleep` children.
//!
//! Both watch an empty group's pressure where cgroup2 is there, so other
//! tenants' pressure cannot make them kill the bench's children.
//!
//! Also prints each daemon's VmRSS / VmLck / VmHWM after start-up and after
//! the registrations, and its CPU time per record.
//!
//! Run: `cargo bench --bench procprio` (root; skips otherwise).
//! Reference: `-- --reference PATH` or env `LMKD_REFERENCE=PATH` (see
//! `common::reference`).

#[path = "../common/mod.rs"]
mod common;

use std::fs;
use std::process::Child;
use std::time::{Duration, Instant};

use common::reference::{self, status_kb, Running};
use lmkd::client::Client;
use lmkd::proto::{self, Command as Cmd, PrioBatch};

const PROCS: usize = 999;
const ROUNDS: usize = 11;
const PASSES: usize = 5;

/// `sleep` children that die with us (PR_SET_PDEATHSIG), killed and
/// reaped on drop.
struct Kids(Vec<Child>);

impl Kids {
    fn spawn(n: usize) -> Kids {
        Kids((0..n).map(|_| common::spawn_sleep()).collect())
    }
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

fn print_mem(name: &str, what: &str, pid: u32) {
    println!(
        "  {name:<10} {what:<28} VmRSS {:>6} kB  VmLck {:>6} kB  VmHWM {:>6} kB",
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
    Batch,
    Prio,
    BatchOnly,
    PrioOnly,
}

impl Mode {
    const ALL: [Mode; 4] = [Mode::Batch, Mode::Prio, Mode::BatchOnly, Mode::PrioOnly];
    fn name(self) -> &'static str {
        match self {
            Mode::Batch => "PROCS_PRIO x3, 4 fields (writes)",
            Mode::Prio => "PROCPRIO, 4 args (writes)",
            Mode::BatchOnly => "PROCS_PRIO x3 for_lmkd_only=1",
            Mode::PrioOnly => "PROCPRIO for_lmkd_only=1",
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

/// One daemon with its own children and client.
struct Subject {
    d: Running,
    _kids: Kids,
    pids: Vec<i32>,
    c: Client,
    /// Passes sent so far (the adj of the last one is what the files hold).
    n: usize,
    /// Per mode: rates of each round, daemon CPU ticks, records.
    rates: Vec<Vec<f64>>,
    cpu: Vec<(u64, u64)>,
}

impl Subject {
    fn modes(&self) -> &'static [Mode] {
        if self.d.name == "lmkd-rs" {
            &Mode::ALL
        } else {
            &Mode::ALL[..2]
        }
    }

    /// Sends one pass (one record per process) and waits for the round trip.
    fn pass(&mut self, mode: Mode) {
        self.n += 1;
        let n = self.n;
        let pids = &self.pids;
        let c = &self.c;
        let rec = |i: usize| {
            let mut p = common::prio(pids[i], adj_for(i, n));
            p.for_lmkd_only = mode.lmkd_only();
            p
        };
        // The four-field forms every lmkd reads, built by hand: our encoder
        // always sends the fifth field.
        let four = |i: usize| {
            let p = rec(i);
            [p.pid, p.uid, p.adj, p.ptype]
        };
        match mode {
            Mode::Prio => {
                for i in 0..pids.len() {
                    let mut w = vec![proto::id::PROCPRIO];
                    w.extend_from_slice(&four(i));
                    c.send_raw(&common::words(&w)).expect("send PROCPRIO");
                }
            }
            Mode::Batch => {
                for chunk in (0..pids.len()).collect::<Vec<_>>().chunks(proto::MAX_BATCH) {
                    let mut w = vec![proto::id::PROCS_PRIO];
                    for &i in chunk {
                        w.extend_from_slice(&four(i));
                    }
                    c.send_raw(&common::words(&w)).expect("send PROCS_PRIO");
                }
            }
            Mode::PrioOnly => {
                for i in 0..pids.len() {
                    c.send(&Cmd::ProcPrio(rec(i))).expect("send PROCPRIO");
                }
            }
            Mode::BatchOnly => {
                for chunk in (0..pids.len()).collect::<Vec<_>>().chunks(proto::MAX_BATCH) {
                    let recs: Vec<_> = chunk.iter().map(|&i| rec(i)).collect();
                    let b = PrioBatch::from_slice(&recs).expect("batch of 3");
                    c.send(&Cmd::ProcsPrio(b)).expect("send PROCS_PRIO");
                }
            }
        }
        common::Daemon::sync(c);
    }

    /// A timed round of `PASSES` passes of `mode`.
    fn round(&mut self, mi: usize) {
        let mode = Mode::ALL[mi];
        let pid = self.d.pid();
        let ticks0 = cpu_ticks(pid);
        let t = Instant::now();
        for _ in 0..PASSES {
            self.pass(mode);
        }
        let dt = t.elapsed().as_secs_f64();
        self.rates[mi].push((PASSES * PROCS) as f64 / dt);
        self.cpu[mi].0 += cpu_ticks(pid) - ticks0;
        self.cpu[mi].1 += (PASSES * PROCS) as u64;
        if !mode.lmkd_only() {
            self.check_written(mode.name());
        }
    }

    /// The last pass really reached the processes (spot check).
    fn check_written(&self, what: &str) {
        for (i, &pid) in self.pids.iter().enumerate().step_by(97) {
            assert_eq!(
                common::oom_adj(pid),
                adj_for(i, self.n),
                "{}: {what}: oom_score_adj of {pid}",
                self.d.name
            );
        }
    }
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
    let dir = common::TempDir::new("bench-procprio");
    let quiet = reference::quiet_group("bench-procprio");
    let psi = quiet.as_ref().map(|g| g.file("memory.pressure"));
    let daemons = reference::daemons(&dir, "", psi.as_deref());
    // Let start-up settle (threads, first snapshot, mlockall).
    std::thread::sleep(Duration::from_millis(500));
    println!("{PROCS} registered processes per daemon, default configuration; memory:");
    let mut subjects: Vec<Subject> = vec![];
    for d in daemons {
        print_mem(d.name, "after start-up", d.pid());
        let t = Instant::now();
        let kids = Kids::spawn(PROCS);
        let pids = kids.pids();
        let spawn_ms = t.elapsed().as_secs_f64() * 1e3;
        let c = d.connect().unwrap_or_else(|e| panic!("{e}"));
        let mut s = Subject {
            d,
            _kids: kids,
            pids,
            c,
            n: 0,
            rates: vec![vec![]; Mode::ALL.len()],
            cpu: vec![(0, 0); Mode::ALL.len()],
        };
        let t = Instant::now();
        s.pass(Mode::Prio);
        println!(
            "  {:<10} spawned {PROCS} children in {spawn_ms:.0} ms, registered them in {:.1} ms",
            s.d.name,
            t.elapsed().as_secs_f64() * 1e3
        );
        s.check_written("registration");
        print_mem(s.d.name, "after the registrations", s.d.pid());
        // Warm-up pass of every mode.
        for &m in s.modes() {
            s.pass(m);
        }
        subjects.push(s);
    }

    // SAFETY: sysconf has no memory-safety preconditions.
    let tick_hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    for round in 0..ROUNDS {
        for k in 0..Mode::ALL.len() {
            let mi = (k + round) % Mode::ALL.len();
            // The daemons take turns going first.
            let count = subjects.len();
            for j in 0..count {
                let s = &mut subjects[(j + round) % count];
                if s.modes().contains(&Mode::ALL[mi]) {
                    s.round(mi);
                }
            }
        }
    }
    // for_lmkd_only really skipped the write: a record asking for 555
    // leaves the file as it was.
    {
        let s = &subjects[0];
        for &pid in &s.pids[..5] {
            let mut p = common::prio(pid, 555);
            p.for_lmkd_only = true;
            s.c.send(&Cmd::ProcPrio(p)).unwrap();
            common::Daemon::sync(&s.c);
            assert_ne!(common::oom_adj(pid), 555, "for_lmkd_only wrote {pid}");
        }
    }

    println!(
        "\nrecords applied per second ({ROUNDS} rounds x {PASSES} passes x {PROCS} records, round trip after each pass):"
    );
    println!(
        "{:<34} {:<10} {:>9} {:>9} {:>9} {:>13}",
        "mode", "daemon", "median/s", "min/s", "max/s", "CPU/record"
    );
    let mut medians = vec![vec![0f64; Mode::ALL.len()]; subjects.len()];
    for (mi, m) in Mode::ALL.iter().enumerate() {
        for (j, s) in subjects.iter().enumerate() {
            let mut r = s.rates[mi].clone();
            if r.is_empty() {
                continue;
            }
            medians[j][mi] = median(&mut r);
            let cpu = s.cpu[mi].0 as f64 / tick_hz * 1e6 / s.cpu[mi].1 as f64;
            println!(
                "{:<34} {:<10} {:>9.0} {:>9.0} {:>9.0} {:>10.2} us",
                m.name(),
                s.d.name,
                medians[j][mi],
                r[0],
                r[r.len() - 1],
                cpu
            );
        }
    }
    if let [rs, aosp] = &medians[..] {
        println!(
            "lmkd-rs / AOSP lmkd, medians: PROCS_PRIO {} (goal >= 2), PROCPRIO {}",
            reference::ratio(rs[0], aosp[0]),
            reference::ratio(rs[1], aosp[1])
        );
    }
    let rs = &medians[0];
    println!(
        "lmkd-rs for_lmkd_only / write: {:.2} (PROCS_PRIO), {:.2} (PROCPRIO)",
        rs[2] / rs[0],
        rs[3] / rs[1]
    );
    println!("memory after the runs:");
    for s in &subjects {
        print_mem(s.d.name, "", s.d.pid());
        let kills = common::kill_count(&s.c, -1000, 1000);
        if kills != 0 {
            let ours = s
                .pids
                .iter()
                .filter(|&&p| !common::exists(&std::path::PathBuf::from(format!("/proc/{p}"))))
                .count();
            println!(
                "  {:<10} killed {kills} processes during the bench (machine pressure), {ours} of them its bench children",
                s.d.name
            );
        }
    }
    drop(subjects);
    drop(quiet);
    println!("total bench time {:.1} s", t_all.elapsed().as_secs_f64());
}
