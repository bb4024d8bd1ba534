//! Wakeups of an idle daemon: no pressure, no client traffic, ~50
//! registered processes. Counts every thread's context switches (voluntary
//! and involuntary, from `/proc/<pid>/task/*/status`) over LMKD_IDLE_SECS
//! (default 20) seconds, for lmkd-rs and, when a reference lmkd is given,
//! for it too, in the same window, with the ratio. Also prints each
//! daemon's resident and locked memory and each thread's touched stack.
//!
//! Run: `cargo bench --bench idle` (root; skips otherwise).
//! Reference: `cargo bench --bench idle -- --reference PATH` or env
//! `LMKD_REFERENCE=PATH`: an AOSP lmkd built for a Linux host, started
//! through an init stand-in that binds its socket (`lmkd_launch SOCK PROG`,
//! found beside PATH or named by `LMKD_REFERENCE_LAUNCH`), with its
//! properties from the file named by `LMKD_PROPS` (default: a file with
//! `sys.boot_completed=1`).

#[path = "../common/mod.rs"]
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::wakeups::{between, switches};
use common::{Daemon, Sleeper, TempDir};
use lmkd::client::Client;
use lmkd::proto::Command as Cmd;

const SLEEPERS: usize = 50;

/// A daemon under measurement; killed on drop.
struct Running {
    name: &'static str,
    child: Child,
    socket: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        std::thread::sleep(Duration::from_millis(200));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ours(dir: &TempDir) -> Running {
    let socket = dir.path("rs.sock");
    let config = dir.path("rs.toml");
    fs::write(&config, format!("socket_path = {socket:?}\n")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_lmkd"))
        .arg("--config")
        .arg(&config)
        .env_remove("ANDROID_SOCKET_lmkd")
        .env_remove("LMKD_PROPS_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.path("rs.log")).unwrap())
        .spawn()
        .expect("spawn lmkd-rs");
    Running {
        name: "lmkd-rs",
        child,
        socket,
    }
}

fn reference_path() -> Option<PathBuf> {
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--reference" {
            return args.next().map(PathBuf::from);
        }
    }
    std::env::var_os("LMKD_REFERENCE").map(PathBuf::from)
}

fn reference(dir: &TempDir, lmkd: &Path) -> Result<Running, String> {
    let launch = std::env::var_os("LMKD_REFERENCE_LAUNCH")
        .map(PathBuf::from)
        .unwrap_or_else(|| lmkd.with_file_name("lmkd_launch"));
    if !launch.exists() {
        return Err(format!(
            "no launcher at {} (set LMKD_REFERENCE_LAUNCH)",
            launch.display()
        ));
    }
    let props = match std::env::var_os("LMKD_PROPS") {
        Some(p) => PathBuf::from(p),
        None => {
            let p = dir.path("lmkd.props");
            fs::write(&p, "sys.boot_completed=1\n").unwrap();
            p
        }
    };
    let socket = dir.path("ref.sock");
    let child = Command::new(&launch)
        .arg(&socket)
        .arg(lmkd)
        .env("LMKD_PROPS", &props)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.path("ref.log")).unwrap())
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", launch.display()))?;
    Ok(Running {
        name: "AOSP lmkd",
        child,
        socket,
    })
}

/// Connects (waiting for the socket) and registers every sleeper.
fn register(d: &Running, pids: &[i32]) -> Result<Client, String> {
    let mut last = String::new();
    for _ in 0..100 {
        match Client::connect(&d.socket) {
            Ok(c) => {
                for (i, &pid) in pids.iter().enumerate() {
                    c.send(&Cmd::ProcPrio(common::prio(pid, 900 + i as i32)))
                        .map_err(|e| format!("{}: PROCPRIO: {e}", d.name))?;
                }
                Daemon::sync(&c);
                return Ok(c);
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("{}: cannot connect: {last}", d.name))
}

fn status_kb(pid: u32, key: &str) -> u64 {
    keyed_kb(&format!("/proc/{pid}/status"), key)
}

fn keyed_kb(file: &str, key: &str) -> u64 {
    fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim_start_matches(':').split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
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
    let mut daemons = vec![ours(&dir)];
    match reference_path() {
        Some(p) => match reference(&dir, &p) {
            Ok(r) => daemons.push(r),
            Err(e) => println!("reference not run: {e}"),
        },
        None => {
            println!("no reference lmkd (pass --reference PATH or LMKD_REFERENCE): lmkd-rs alone")
        }
    }
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
        let ratio = if aosp == 0 {
            if rs == 0 {
                "1.00 (both zero)".to_string()
            } else {
                "inf (reference zero)".to_string()
            }
        } else {
            format!("{:.2}", rs as f64 / aosp as f64)
        };
        println!("  ratio lmkd-rs / AOSP lmkd: {ratio}");
    }
    println!("memory after start-up and {SLEEPERS} registrations:");
    for d in &daemons {
        print_memory(d);
    }
    drop(clients);
}
