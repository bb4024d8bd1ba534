//! Event-to-signal latency of kills (issue 3, "Bench").
//!
//! An in-process daemon (`Daemon::new` + `run` on a thread, injected
//! pressure source) tracks 1000 real `sleep` children registered over its
//! socket. Its proc root is a temp dir holding the recorded snapshot files of
//! `tests/fixtures/proc/small` plus a `<pid>` -> `/proc/<pid>` symlink per
//! child. Each kill: bump one vmstat reclaim counter and PSI `full total`
//! (so the policy sees new pressure since the last kill), inject a `full` (complete) pressure event, wait for
//! the PROCKILL notification, reap the victim, let the daemon see the exit,
//! replace the victim with a new registered child (1000 tracked at every
//! kill), repeat.
//!
//! The latency is the daemon's own figure, `KillRecord.event_to_signal_us`
//! (CLOCK_MONOTONIC from the epoll wakeup that read the event to the return
//! of pidfd_send_signal), captured from the "kill of <pid> took <N> us"
//! lines by a `log::Log` installed here. The bench also prints its own
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
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Child;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lmkd::client::{Client, Message};
use lmkd::config::Config;
use lmkd::daemon::{Daemon, Options};
use lmkd::proto::Command as Cmd;

const TRACKED: usize = 1000;
const KILLS: usize = 250;

// ---- log capture -----------------------------------------------------------

#[derive(Default)]
struct Captured {
    /// (pid, event_to_signal_us) in log order.
    took: Vec<(i32, u64)>,
    /// pid -> reason text of its kill line.
    reasons: HashMap<i32, String>,
    warnings: Vec<String>,
}

static CAPTURED: Mutex<Option<Captured>> = Mutex::new(None);

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let msg = r.args().to_string();
        let mut g = CAPTURED.lock().unwrap();
        let c = g.get_or_insert_with(Captured::default);
        if let Some(rest) = msg.strip_prefix("kill of ") {
            // "kill of <pid> took <N> us from event to signal; ..."
            let mut w = rest.split_whitespace();
            let pid = w.next().and_then(|v| v.parse().ok());
            let us = w.nth(1).and_then(|v| v.parse().ok());
            if let (Some(pid), Some(us)) = (pid, us) {
                c.took.push((pid, us));
            }
        } else if r.target() == lmkd::report::KILL_TARGET {
            // "Kill '<name>' (<pid>), uid ...; reason: <text>"
            let pid = msg
                .split_once("' (")
                .and_then(|(_, r)| r.split_once(')'))
                .and_then(|(p, _)| p.parse().ok());
            let reason = msg.rsplit_once("reason: ").map(|(_, r)| r.to_string());
            if let (Some(pid), Some(reason)) = (pid, reason) {
                c.reasons.insert(pid, reason);
            }
        } else if r.level() <= log::Level::Warn {
            c.warnings.push(msg);
        }
    }
    fn flush(&self) {}
}

fn captured<T>(f: impl FnOnce(&Captured) -> T) -> T {
    let mut g = CAPTURED.lock().unwrap();
    f(g.get_or_insert_with(Captured::default))
}

// ---- children ----------------------------------------------------------------

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

// ---- helpers -----------------------------------------------------------------

fn raise(fd: &OwnedFd) {
    let one = 1u64;
    // SAFETY: an 8-byte write to an eventfd we own.
    let n = unsafe { libc::write(fd.as_raw_fd(), &one as *const u64 as *const libc::c_void, 8) };
    assert_eq!(n, 8);
}

fn wait_socket(p: &Path) -> Client {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(c) = Client::connect(p) {
            return c;
        }
        assert!(Instant::now() < end, "daemon socket never appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Rewrites one key's value in a `key value` file, same width.
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

/// A counter in the vmstat copy bumped in place: same width, one pwrite,
/// so a concurrent pread by the daemon always sees a whole file.
struct Counter {
    file: fs::File,
    offset: u64,
    value: u64,
}

impl Counter {
    fn open(path: &Path, key: &str) -> Counter {
        let text = fs::read_to_string(path).unwrap();
        let pos = text
            .find(&format!("\n{key} "))
            .unwrap_or_else(|| panic!("{key} not in {}", path.display()));
        let start = pos + 1 + key.len() + 1;
        let digits: String = text[start..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        Counter {
            file: fs::OpenOptions::new().write(true).open(path).unwrap(),
            offset: start as u64,
            value: digits.parse().unwrap(),
        }
    }
    fn bump(&mut self) {
        let old = self.value.to_string();
        self.value += 1;
        let new = self.value.to_string();
        assert_eq!(old.len(), new.len(), "counter changed width");
        self.file.write_all_at(new.as_bytes(), self.offset).unwrap();
    }
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

// ---- bench -----------------------------------------------------------------------

fn main() {
    if !common::need_root("bench kill_latency") {
        return;
    }
    log::set_boxed_logger(Box::new(Capture)).expect("install logger");
    log::set_max_level(log::LevelFilter::Info);
    let t_all = Instant::now();

    let dir = common::TempDir::new("bench-kill-latency");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proc/small");
    let proc_dir = dir.path("proc");
    fs::create_dir_all(&proc_dir).unwrap();
    for f in ["vmstat", "zoneinfo"] {
        fs::copy(fixture.join(f), proc_dir.join(f)).unwrap();
    }
    let meminfo = fs::read_to_string(fixture.join("meminfo")).unwrap();
    let swap_total = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("SwapTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .unwrap()
        .to_string();
    let meminfo = set_line(&meminfo, "MemFree:", "400000");
    let meminfo = set_line(&meminfo, "SwapFree:", &swap_total);
    fs::write(proc_dir.join("meminfo"), meminfo).unwrap();
    fs::copy(fixture.join("pressure_memory"), dir.path("pressure")).unwrap();
    let mut counter = Counter::open(&proc_dir.join("vmstat"), "pgscan_kswapd");

    let link = |pid: i32| {
        std::os::unix::fs::symlink(format!("/proc/{pid}"), proc_dir.join(pid.to_string())).unwrap();
    };
    let unlink = |pid: i32| {
        let _ = fs::remove_file(proc_dir.join(pid.to_string()));
    };

    let t = Instant::now();
    let mut kids = Kids(HashMap::new());
    for _ in 0..TRACKED {
        let c = common::spawn_sleep();
        let pid = c.id() as i32;
        link(pid);
        kids.0.insert(pid, c);
    }
    println!(
        "spawned {TRACKED} sleep children in {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );

    let cfg = Config {
        socket_path: dir.path("lmkd.sock"),
        max_procs: 2048,
        proc_root: proc_dir.clone(),
        psi_path: dir.path("pressure"),
        ..Config::default()
    };
    let kill_timeout_ms = cfg.kill_timeout_ms;
    let (source, _partial, complete) = lmkd::psi::injected().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut opts = Options::new(None, Box::new(lmkd::props::NoProperties));
        opts.signals = false;
        opts.source = Some(source);
        let mut d = Daemon::new(cfg, opts).expect("daemon start-up");
        tx.send(()).unwrap();
        let _ = d.run();
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("daemon did not start");
    let c = wait_socket(&dir.path("lmkd.sock"));
    c.send(&Cmd::Subscribe { event: 0 }).unwrap();

    let mut next_adj = 0usize;
    let mut adj = || {
        next_adj += 1;
        300 + (next_adj * 37 % 700) as i32
    };
    for &pid in kids.0.keys() {
        c.send(&Cmd::ProcPrio(common::prio(pid, adj()))).unwrap();
    }
    common::Daemon::sync(&c);
    println!("registered {TRACKED} processes; kill_timeout_ms {kill_timeout_ms}; triggering {KILLS} kills one at a time");

    let mut wall_us = Vec::with_capacity(KILLS);
    let mut killed = Vec::with_capacity(KILLS);
    let mut retries = 0;
    let mut unknown_victims = 0;
    while killed.len() < KILLS {
        counter.bump();
        // A new second of complete stall, or the policy takes the event for
        // one the kernel held back from before the last kill.
        common::inproc::bump_full_stall(&dir.path("pressure"));
        let t0 = Instant::now();
        raise(&complete);
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
                captured(|c| c.warnings.clone())
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
        unlink(pid);
        let nc = common::spawn_sleep();
        let npid = nc.id() as i32;
        link(npid);
        kids.0.insert(npid, nc);
        c.send(&Cmd::ProcPrio(common::prio(npid, adj()))).unwrap();
        common::Daemon::sync(&c);
    }
    let n_kills = c
        .request(
            &Cmd::GetKillCnt {
                min_adj: -1000,
                max_adj: 1000,
            },
            Duration::from_secs(5),
        )
        .unwrap();

    // The logging thread runs behind the core; wait for every line.
    let end = Instant::now() + Duration::from_secs(5);
    while captured(|c| c.took.len()) < killed.len() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (took, reasons, warnings) =
        captured(|c| (c.took.clone(), c.reasons.clone(), c.warnings.clone()));
    let took_map: HashMap<i32, u64> = took.iter().copied().collect();
    let samples: Vec<u64> = killed
        .iter()
        .filter_map(|p| took_map.get(p).copied())
        .collect();
    let mut by_reason: HashMap<String, usize> = HashMap::new();
    for p in &killed {
        *by_reason
            .entry(
                reasons
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
    if !warnings.is_empty() {
        println!("daemon warnings ({}):", warnings.len());
        for w in warnings.iter().take(10) {
            println!("  {w}");
        }
    }
    drop(c);
    drop(kids);
    println!("total bench time {:.1} s", t_all.elapsed().as_secs_f64());
}
