//! The driver proper: plays ActivityManager against the daemon, launches the
//! scenario's apps, moves their adj over time, records every kill
//! notification and every death, then judges the run.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lmkd::client::{Client, Message};
use lmkd::proto::{self, Command, Prio, TargetTable};

use crate::app::{self, AppParams};
use crate::json;
use crate::sample::{field, mono_ms, protect_self};
use crate::scenario::{AppSpec, Scenario};

/// Longest the loop sleeps, so deaths and timeline steps are seen promptly.
const POLL_MS: u64 = 20;

pub struct RunArgs {
    pub socket: Option<String>,
    pub scenario: String,
    pub out: Option<String>,
    pub label: String,
    pub data_file: Option<String>,
    /// Hard limit for the whole run; defaults to duration + grace + 30 s.
    pub deadline_ms: Option<u64>,
    /// Overrides the scenario's cycle count (`end_after_deaths`).
    pub cycles: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    Signal(i32),
    Code(i32),
}

#[derive(Debug, Clone)]
struct Proc {
    spec: AppSpec,
    pid: Option<i32>,
    launched_ms: u64,
    next_step: usize,
    adj: i32,
    /// (time, exit, adj at that time); `ended` marks the driver's own
    /// clean-up kill at the end of the run, which is not a death.
    death: Option<(u64, Exit, i32)>,
    ended: bool,
}

#[derive(Debug, Clone)]
struct StatNote {
    t_ms: u64,
    uid: i32,
    adj: i32,
    min_adj: i32,
    reason: i32,
    free_mem_kb: i32,
    free_swap_kb: i32,
    thrashing: i32,
    name: String,
}

#[derive(Debug, Clone)]
struct KillNote {
    t_ms: u64,
    pid: i32,
    uid: i32,
    rss_kb: i32,
    /// The adj the driver had given the pid when the notice came.
    adj: Option<i32>,
    stat: Option<StatNote>,
}

pub fn reason_name(r: i32) -> &'static str {
    match r {
        0 => "PRESSURE_AFTER_KILL",
        1 => "NOT_RESPONDING",
        2 => "LOW_SWAP_AND_THRASHING",
        3 => "LOW_MEM_AND_SWAP",
        4 => "LOW_MEM_AND_THRASHING",
        5 => "DIRECT_RECL_AND_THRASHING",
        6 => "LOW_MEM_AND_SWAP_UTIL",
        7 => "LOW_FILECACHE_AFTER_THRASHING",
        8 => "LOW_MEM",
        9 => "DIRECT_RECL_STUCK",
        _ => "UNKNOWN",
    }
}

fn is_thrashing_reason(r: i32) -> bool {
    matches!(
        r,
        proto::reason::LOW_SWAP_AND_THRASHING
            | proto::reason::LOW_MEM_AND_THRASHING
            | proto::reason::DIRECT_RECL_AND_THRASHING
            | proto::reason::LOW_FILECACHE_AFTER_THRASHING
    )
}

fn oom_kill_count() -> i64 {
    std::fs::read_to_string("/proc/vmstat")
        .ok()
        .and_then(|s| field(&s, "oom_kill"))
        .unwrap_or(-1)
}

/// Size of a file or block device, via lseek so devices work too.
fn file_size(path: &str) -> io::Result<u64> {
    use std::io::Seek;
    let mut f = std::fs::File::open(path)?;
    f.seek(io::SeekFrom::End(0))
}

struct Daemon {
    client: Client,
}

impl Daemon {
    fn connect(path: &str) -> Result<Daemon, String> {
        // The daemon may still be binding its socket: retry for a while.
        let mut last = String::new();
        for _ in 0..50 {
            match Client::connect(Path::new(path)) {
                Ok(client) => return Daemon::handshake(client),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("cannot reach lmkd: {last}"))
    }

    /// What ActivityManager sends on every (re)connect, in its order.
    fn handshake(client: Client) -> Result<Daemon, String> {
        let table =
            TargetTable::from_slice(&proto::AMS_PHONE_TARGETS).ok_or("target table too long")?;
        for cmd in [
            Command::ProcPurge,
            Command::Target(table),
            Command::Subscribe {
                event: proto::event::KILL,
            },
            Command::Subscribe {
                event: proto::event::STAT,
            },
        ] {
            client.send(&cmd).map_err(|e| format!("handshake: {e}"))?;
        }
        Ok(Daemon { client })
    }

    fn prio(&self, pid: i32, uid: u32, adj: i32) -> io::Result<()> {
        send_prio(&self.client, pid, uid, adj)
    }
}

/// PROCPRIO as ActivityManager sends it: four arguments (pid, uid, adj,
/// ptype). The trailing for_lmkd_only word is only sent when set; AOSP lmkd
/// builds that predate it refuse a five-argument packet.
fn send_prio(client: &Client, pid: i32, uid: u32, adj: i32) -> io::Result<()> {
    let mut buf = [0u8; proto::MAX_PACKET];
    let n = proto::encode(
        &Command::ProcPrio(Prio {
            pid,
            uid: uid as i32,
            adj,
            ptype: proto::ptype::APP,
            for_lmkd_only: false,
        }),
        &mut buf,
    );
    // Drop the last word, for_lmkd_only = 0.
    client.send_raw(&buf[..n - 4])
}

/// (pid, uid, adj) of every live app, shared with the storm thread.
type Live = Arc<Mutex<Vec<(i32, u32, i32)>>>;

/// What the storm connection did.
struct StormCount {
    packets: u64,
    error: Option<String>,
}

/// The protocol storm: a second connection that repeats PROCPRIO for every
/// live app (its current adj) back to back, as a misbehaving client would,
/// until stopped. Blocking sends: a daemon that reads slowly slows it.
struct Storm {
    live: Live,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<StormCount>,
}

impl Storm {
    fn start(path: &str) -> Result<Storm, String> {
        let client = Client::connect(Path::new(path)).map_err(|e| format!("storm: {e}"))?;
        let live: Live = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (l, st) = (live.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut next = 0usize;
            let mut packets = 0u64;
            while !st.load(Ordering::Relaxed) {
                let pick = {
                    let l = l.lock().unwrap_or_else(|e| e.into_inner());
                    next = if next >= l.len() { 0 } else { next };
                    l.get(next).copied()
                };
                next += 1;
                let Some((pid, uid, adj)) = pick else {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                };
                if let Err(e) = send_prio(&client, pid, uid, adj) {
                    return StormCount {
                        packets,
                        error: Some(format!("after {packets} packets: {e}")),
                    };
                }
                packets += 1;
            }
            StormCount {
                packets,
                error: None,
            }
        });
        Ok(Storm { live, stop, thread })
    }

    fn finish(self) -> StormCount {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(StormCount {
            packets: 0,
            error: Some("the storm thread panicked".into()),
        })
    }
}

/// Socket errors that mean the daemon is gone rather than busy.
fn daemon_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
    )
}

struct Run {
    sc: Scenario,
    args: RunArgs,
    procs: Vec<Proc>,
    /// Ended lives of restarting apps (one per pressure cycle).
    past: Vec<Proc>,
    /// The run reached `end_after_deaths` (rather than `duration_ms`).
    reached_end: bool,
    storm: Option<Storm>,
    daemon: Option<Daemon>,
    daemon_lost: Option<(u64, String)>,
    kills: Vec<KillNote>,
    pending_stats: Vec<StatNote>,
    other_msgs: u32,
    t0: u64,
    errors: Vec<String>,
}

impl Run {
    fn now(&self) -> u64 {
        mono_ms() - self.t0
    }

    fn set_adj(&mut self, i: usize, adj: i32) {
        let Some(pid) = self.procs[i].pid else { return };
        self.procs[i].adj = adj;
        let uid = self.procs[i].spec.uid;
        if let Some(s) = &self.storm {
            let mut l = s.live.lock().unwrap_or_else(|e| e.into_inner());
            match l.iter_mut().find(|e| e.0 == pid) {
                Some(e) => e.2 = adj,
                None => l.push((pid, uid, adj)),
            }
        }
        match &self.daemon {
            Some(d) => {
                if let Err(e) = d.prio(pid, uid, adj) {
                    self.lose_daemon(e);
                }
            }
            // No lmkd: write the adj ourselves, as lmkd would, so earlyoom
            // and the kernel OOM killer see the same priorities.
            None => {
                let _ = std::fs::write(format!("/proc/{pid}/oom_score_adj"), adj.to_string());
            }
        }
    }

    fn lose_daemon(&mut self, e: io::Error) {
        if self.daemon_lost.is_none() {
            let t = self.now();
            eprintln!("lmkd-workload: lmkd connection lost at {t} ms: {e}");
            self.daemon_lost = Some((t, e.to_string()));
        }
        self.daemon = None;
    }

    fn launch(&mut self, i: usize) {
        let spec = &self.procs[i].spec;
        let params = AppParams {
            tick_ms: spec.tick_ms,
            anon_kb_per_tick: spec.anon_kb_per_tick,
            anon_max_mb: spec.anon_max_mb,
            file_mb: spec.file_mb,
            file_offset_mb: spec.file_offset_mb,
            file_pages_per_tick: spec.file_pages_per_tick,
            fill_percent: self.sc.fill_percent,
            initial_adj: spec.timeline[0].1,
            data_file: self
                .args
                .data_file
                .clone()
                .or(self.sc.data_file.clone())
                .unwrap_or_default(),
        };
        let res = std::process::Command::new("/proc/self/exe")
            .arg0(&spec.name)
            .env(app::ENV, params.encode())
            .spawn();
        let t = self.now();
        match res {
            Ok(child) => {
                let pid = child.id() as i32;
                // We reap with waitpid(-1) ourselves; std's handle is not needed.
                drop(child);
                self.procs[i].pid = Some(pid);
                self.procs[i].launched_ms = t;
                self.procs[i].next_step = 1;
                let adj = self.procs[i].spec.timeline[0].1;
                self.set_adj(i, adj);
            }
            Err(e) => {
                self.errors.push(format!("launch {}: {e}", spec.name));
                self.procs[i].launched_ms = t;
                self.procs[i].ended = true;
            }
        }
    }

    fn reap(&mut self) {
        loop {
            let mut st = 0;
            // SAFETY: waitpid with a valid out pointer.
            let pid = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            let exit = if libc::WIFSIGNALED(st) {
                Exit::Signal(libc::WTERMSIG(st))
            } else {
                Exit::Code(libc::WEXITSTATUS(st))
            };
            let t = self.now();
            let Some(i) = self
                .procs
                .iter()
                .position(|p| p.pid == Some(pid) && p.death.is_none())
            else {
                continue;
            };
            let adj = self.procs[i].adj;
            self.procs[i].death = Some((t, exit, adj));
            if let Some(s) = &self.storm {
                // Before PROCREMOVE: the storm must not bring the pid back.
                s.live
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|e| e.0 != pid);
            }
            if let (Some(ms), false) = (self.procs[i].spec.restart_ms, self.procs[i].ended) {
                // Keep this life for the verdict; the next one launches later.
                self.past.push(self.procs[i].clone());
                let p = &mut self.procs[i];
                p.pid = None;
                p.death = None;
                p.next_step = 0;
                p.adj = p.spec.timeline[0].1;
                p.spec.start_ms = t + ms;
            }
            if let Some(d) = &self.daemon {
                // AMS removes a process from lmkd once it learns it died.
                if let Err(e) = d.client.send(&Command::ProcRemove { pid }) {
                    self.lose_daemon(e);
                }
            }
        }
    }

    fn on_message(&mut self, m: Message) {
        let t = self.now();
        match m {
            Message::Stat(s) => self.pending_stats.push(StatNote {
                t_ms: t,
                uid: s.uid,
                adj: s.oom_score_adj,
                min_adj: s.min_oom_score,
                reason: s.reason,
                free_mem_kb: s.free_mem_kb,
                free_swap_kb: s.free_swap_kb,
                thrashing: s.thrashing,
                name: String::from_utf8_lossy(s.name()).into_owned(),
            }),
            Message::Kill(k) => {
                // The stats packet precedes its PROCKILL; match it by uid
                // (every app has its own).
                let stat = self
                    .pending_stats
                    .iter()
                    .position(|s| s.uid == k.uid)
                    .map(|j| self.pending_stats.remove(j));
                let adj = self
                    .procs
                    .iter()
                    .chain(&self.past)
                    .find(|p| p.pid == Some(k.pid))
                    .map(|p| p.adj);
                self.kills.push(KillNote {
                    t_ms: t,
                    pid: k.pid,
                    uid: k.uid,
                    rss_kb: k.rss_kb,
                    adj,
                    stat,
                });
            }
            Message::Reply { .. } | Message::Other { .. } => self.other_msgs += 1,
        }
    }

    fn step(&mut self, now: u64) -> u64 {
        let mut next = now + POLL_MS;
        for i in 0..self.procs.len() {
            let p = &self.procs[i];
            if p.pid.is_none() && !p.ended {
                if p.spec.start_ms <= now {
                    self.launch(i);
                } else {
                    next = next.min(p.spec.start_ms);
                    continue;
                }
            }
            let p = &self.procs[i];
            if p.pid.is_none() || p.death.is_some() {
                continue;
            }
            if let Some(&(at, adj)) = p.spec.timeline.get(p.next_step) {
                if p.launched_ms + at <= now {
                    self.procs[i].next_step += 1;
                    self.set_adj(i, adj);
                } else {
                    next = next.min(p.launched_ms + at);
                }
            }
        }
        next
    }

    fn main_loop(&mut self) {
        let deaths_target = self
            .sc
            .end_after_deaths
            .map(|n| n as usize)
            .unwrap_or(self.procs.len());
        let mut end_at: Option<u64> = None;
        loop {
            let now = self.now();
            if now >= self.sc.duration_ms
                || end_at.is_some_and(|e| now >= e)
                || self.daemon_lost.is_some()
            {
                return;
            }
            let next = self.step(now);
            self.reap();
            let dead = self.past.len()
                + self
                    .procs
                    .iter()
                    .filter(|p| p.death.is_some() || p.ended)
                    .count();
            if end_at.is_none() && dead >= deaths_target {
                end_at = Some(now + self.sc.grace_ms);
                self.reached_end = true;
            }
            let wait = Duration::from_millis(next.saturating_sub(self.now()).clamp(1, POLL_MS));
            match &self.daemon {
                Some(d) => match d.client.recv(Some(wait)) {
                    Ok(Some(m)) => self.on_message(m),
                    Ok(None) => {}
                    Err(e) if daemon_gone(&e) => self.lose_daemon(e),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => self.lose_daemon(e),
                },
                None => std::thread::sleep(wait),
            }
        }
    }

    /// Ends every app still running and collects late notifications.
    fn finish(&mut self) {
        // Late kill notices for deaths already seen.
        let until = self.now() + 300;
        while self.daemon.is_some() && self.now() < until {
            let got = self
                .daemon
                .as_ref()
                .map(|d| d.client.recv(Some(Duration::from_millis(50))));
            match got {
                Some(Ok(Some(m))) => self.on_message(m),
                Some(Err(e)) => self.lose_daemon(e),
                _ => {}
            }
        }
        for p in &mut self.procs {
            if let (Some(pid), None) = (p.pid, p.death) {
                p.ended = true;
                // SAFETY: signalling our own child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let until = self.now() + 5000;
        while self
            .procs
            .iter()
            .any(|p| p.pid.is_some() && p.death.is_none())
            && self.now() < until
        {
            self.reap();
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// One row of the death table, after matching notices to deaths.
struct Row {
    t_ms: u64,
    name: String,
    pid: i32,
    adj: i32,
    cause: String,
    reason: Option<i32>,
    kill: Option<KillNote>,
    /// A life of a restarting app: one pressure cycle.
    cycle: bool,
}

pub fn run(args: RunArgs) -> i32 {
    let text = match std::fs::read_to_string(&args.scenario) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("lmkd-workload: read {}: {e}", args.scenario);
            return 2;
        }
    };
    let mut sc = match Scenario::parse(&text) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("lmkd-workload: {}: {e}", args.scenario);
            return 2;
        }
    };
    if let Some(n) = args.cycles {
        if let Err(e) = sc.set_cycles(n) {
            eprintln!("lmkd-workload: {}: {e}", args.scenario);
            return 2;
        }
    }
    let specs = sc.specs();
    let data_file = args.data_file.clone().or(sc.data_file.clone());
    if let Some(df) = &data_file {
        let need = specs
            .iter()
            .filter(|s| s.file_mb > 0)
            .map(|s| (s.file_offset_mb + s.file_mb) << 20)
            .max()
            .unwrap_or(0);
        if need > 0 {
            match file_size(df) {
                Ok(n) if n >= need => {}
                Ok(n) => {
                    eprintln!(
                        "lmkd-workload: data file {df} has {} MiB, the scenario maps up to {} MiB",
                        n >> 20,
                        need >> 20
                    );
                    return 2;
                }
                Err(e) => {
                    eprintln!("lmkd-workload: data file {df}: {e}");
                    return 2;
                }
            }
        }
    }
    protect_self();
    let daemon = match &args.socket {
        Some(path) => match Daemon::connect(path) {
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!("lmkd-workload: {e}");
                return 2;
            }
        },
        None => None,
    };
    let storm = match (&args.socket, sc.storm) {
        (Some(path), true) => match Storm::start(path) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("lmkd-workload: {e}");
                return 2;
            }
        },
        (None, true) => {
            eprintln!("lmkd-workload: storm = true needs lmkd (--socket); running without it");
            None
        }
        _ => None,
    };
    let hard = args
        .deadline_ms
        .unwrap_or(sc.duration_ms + sc.grace_ms + 30_000);
    let out_for_watchdog = args.out.clone();
    std::thread::spawn(move || {
        // Last resort if the driver itself gets stuck (e.g. in reclaim).
        std::thread::sleep(Duration::from_millis(hard));
        eprintln!("lmkd-workload: run exceeded its deadline of {hard} ms; giving up");
        if let Some(o) = out_for_watchdog {
            let _ = std::fs::write(
                o,
                "{\"pass\": false, \"error\": \"driver deadline exceeded\"}\n",
            );
        }
        std::process::exit(3);
    });

    let t0 = mono_ms();
    let oom0 = oom_kill_count();
    let procs = specs
        .into_iter()
        .map(|spec| Proc {
            adj: spec.timeline[0].1,
            spec,
            pid: None,
            launched_ms: 0,
            next_step: 0,
            death: None,
            ended: false,
        })
        .collect();
    let mut r = Run {
        sc,
        args,
        procs,
        past: Vec::new(),
        reached_end: false,
        storm,
        daemon,
        daemon_lost: None,
        kills: Vec::new(),
        pending_stats: Vec::new(),
        other_msgs: 0,
        t0,
        errors: Vec::new(),
    };
    eprintln!(
        "lmkd-workload: scenario {} ({}; {} processes), killer {}, {}",
        r.sc.name,
        r.sc.description,
        r.procs.len(),
        r.args.label,
        if r.daemon.is_some() {
            "connected to lmkd"
        } else {
            "no lmkd socket"
        }
    );
    r.main_loop();
    let end_ms = r.now();
    let storm = r.storm.take().map(Storm::finish);
    r.finish();
    let killcnt = r.daemon.as_ref().and_then(|d| {
        d.client
            .request(
                &Command::GetKillCnt {
                    min_adj: -1000,
                    max_adj: 1000,
                },
                Duration::from_secs(1),
            )
            .ok()
    });
    let oom_delta = (oom_kill_count() - oom0).max(0);
    judge_and_report(&r, end_ms, oom_delta, killcnt, storm)
}

/// The adj a kill is judged at: the one the driver gave, except where the
/// killer reports lmkd's low-RAM launcher rule (with per-app memcgs, adj
/// 600..=699 is kept perceptible and ranked at 200). Any other difference
/// keeps the driver's adj, so a killer that loses track of an adj still
/// fails the order check.
fn judged_adj(given: i32, reported: Option<i32>) -> i32 {
    const LAUNCHER_AS_PERCEPTIBLE: i32 = 200;
    match reported {
        Some(LAUNCHER_AS_PERCEPTIBLE) if (600..700).contains(&given) => LAUNCHER_AS_PERCEPTIBLE,
        _ => given,
    }
}

fn rows(r: &Run, oom_delta: i64) -> Vec<Row> {
    let mut oom_budget = oom_delta;
    let mut out = Vec::new();
    let mut deaths: Vec<&Proc> = r
        .procs
        .iter()
        .chain(&r.past)
        .filter(|p| p.death.is_some() && !p.ended)
        .collect();
    deaths.sort_by_key(|p| p.death.map(|d| d.0));
    for p in deaths {
        let (t, exit, adj) = p.death.expect("filtered");
        let pid = p.pid.unwrap_or(-1);
        let kill = r.kills.iter().find(|k| k.pid == pid).cloned();
        let (cause, t_ms, adj) = match (&kill, exit) {
            (Some(k), _) => (
                "lmkd".to_string(),
                k.t_ms.min(t),
                judged_adj(k.adj.unwrap_or(adj), k.stat.as_ref().map(|s| s.adj)),
            ),
            (None, Exit::Signal(libc::SIGKILL)) if oom_budget > 0 => {
                oom_budget -= 1;
                ("kernel-oom".to_string(), t, adj)
            }
            (None, Exit::Signal(s)) => (format!("signal-{s}"), t, adj),
            (None, Exit::Code(c)) => (format!("exit-{c}"), t, adj),
        };
        let reason = kill
            .as_ref()
            .and_then(|k| k.stat.as_ref())
            .map(|s| s.reason);
        out.push(Row {
            t_ms,
            name: p.spec.name.clone(),
            pid,
            adj,
            cause,
            reason,
            kill,
            cycle: p.spec.restart_ms.is_some(),
        });
    }
    out.sort_by_key(|r| r.t_ms);
    out
}

fn judge_and_report(
    r: &Run,
    end_ms: u64,
    oom_delta: i64,
    killcnt: Option<i32>,
    storm: Option<StormCount>,
) -> i32 {
    let rows = rows(r, oom_delta);
    let c = &r.sc.criteria;
    let mut failures: Vec<String> = r.errors.clone();
    if let Some((t, e)) = &r.daemon_lost {
        failures.push(format!(
            "lmkd died or closed the connection at {t} ms ({e})"
        ));
    }
    for w in rows.windows(2) {
        if c.descending_adj && w[1].adj > w[0].adj {
            failures.push(format!(
                "order: {} (adj {}) died after {} (adj {})",
                w[1].name, w[1].adj, w[0].name, w[0].adj
            ));
        }
    }
    if c.no_kernel_oom && oom_delta > 0 {
        failures.push(format!("kernel OOM killer fired {oom_delta} time(s)"));
    }
    let daemon_kills = rows.iter().filter(|x| x.cause == "lmkd").count();
    if c.reason_on_every_kill {
        for x in rows.iter().filter(|x| x.cause == "lmkd") {
            if !x.reason.is_some_and(|r| (0..=9).contains(&r)) {
                failures.push(format!(
                    "kill of {} (pid {}) came without a kill reason",
                    x.name, x.pid
                ));
            }
        }
    }
    if c.foreground_survives {
        for x in rows.iter().filter(|x| x.adj <= 0) {
            failures.push(format!(
                "foreground app {} died at {} ms ({})",
                x.name, x.t_ms, x.cause
            ));
        }
    }
    if let Some(min) = c.min_victim_adj {
        for x in rows.iter().filter(|x| x.adj < min) {
            failures.push(format!(
                "{} died at adj {} < {min} ({})",
                x.name, x.adj, x.cause
            ));
        }
    }
    if daemon_kills < c.min_daemon_kills as usize {
        failures.push(format!(
            "lmkd killed {daemon_kills} app(s), the scenario needs at least {}",
            c.min_daemon_kills
        ));
    }
    if c.thrashing_reason
        && !rows
            .iter()
            .any(|x| x.reason.is_some_and(is_thrashing_reason))
    {
        failures.push("no kill gave a thrashing reason (2, 4, 5 or 7)".into());
    }
    let cycles = rows.iter().filter(|x| x.cycle).count();
    let relieved = rows.iter().filter(|x| x.cycle && x.cause == "lmkd").count();
    if c.every_cycle_relieved {
        for (n, x) in rows.iter().filter(|x| x.cycle).enumerate() {
            if x.cause != "lmkd" {
                failures.push(format!(
                    "cycle {} ({} pid {}) ended at {} ms by {}, not by lmkd",
                    n + 1,
                    x.name,
                    x.pid,
                    x.t_ms,
                    x.cause
                ));
            }
        }
        if !r.reached_end {
            let stuck: Vec<String> = r
                .procs
                .iter()
                .filter(|p| p.spec.restart_ms.is_some() && p.ended && p.pid.is_some())
                .map(|p| {
                    format!(
                        "{} pid {} since {} ms",
                        p.spec.name,
                        p.pid.unwrap_or(-1),
                        p.launched_ms
                    )
                })
                .collect();
            failures.push(format!(
                "run ended at {end_ms} ms after {cycles} of {} cycles; not relieved: {}",
                r.sc.end_after_deaths.unwrap_or(0),
                if stuck.is_empty() {
                    "none running".into()
                } else {
                    stuck.join(", ")
                }
            ));
        }
    }
    if let Some(e) = storm.as_ref().and_then(|s| s.error.as_ref()) {
        failures.push(format!("storm connection failed {e}"));
    }
    for x in rows.iter().filter(|x| x.cause.starts_with("exit-")) {
        failures.push(format!(
            "app {} exited by itself ({}); see its stderr",
            x.name, x.cause
        ));
    }
    let pass = failures.is_empty();

    // Human summary.
    println!(
        "== {} under {}: {} ==",
        r.sc.name,
        r.args.label,
        if pass { "PASS" } else { "FAIL" }
    );
    println!(
        "{:>8}  {:<15} {:>6} {:>5}  {:<11} reason",
        "t_ms", "app", "pid", "adj", "cause"
    );
    for x in &rows {
        let reason = x
            .reason
            .map_or("-".to_string(), |r| format!("{r} {}", reason_name(r)));
        println!(
            "{:>8}  {:<15} {:>6} {:>5}  {:<11} {reason}",
            x.t_ms, x.name, x.pid, x.adj, x.cause
        );
    }
    let survivors: Vec<String> = r
        .procs
        .iter()
        .filter(|p| p.ended && p.pid.is_some())
        .map(|p| format!("{}({})", p.spec.name, p.adj))
        .collect();
    println!(
        "survivors: {}",
        if survivors.is_empty() {
            "none".into()
        } else {
            survivors.join(" ")
        }
    );
    println!(
        "deaths {} (lmkd {daemon_kills}), kernel OOM kills {oom_delta}, lmkd GETKILLCNT {}, run {end_ms} ms",
        rows.len(),
        killcnt.map_or("n/a".into(), |k| k.to_string())
    );
    if cycles > 0 || storm.is_some() {
        println!(
            "cycles {cycles} (relieved by lmkd {relieved}), storm {}",
            storm
                .as_ref()
                .map_or("off".into(), |s| format!("{} PROCPRIO packets", s.packets))
        );
    }
    for f in &failures {
        println!("FAIL: {f}");
    }

    if let Some(out) = &r.args.out {
        let mut kills_per_adj = std::collections::BTreeMap::new();
        for x in rows.iter().filter(|x| x.cause != "exit-0") {
            *kills_per_adj.entry(x.adj.to_string()).or_insert(0u32) += 1;
        }
        let deaths = rows
            .iter()
            .map(|x| {
                let st = x.kill.as_ref().and_then(|k| k.stat.as_ref());
                json::Death {
                    t_ms: x.t_ms,
                    app: &x.name,
                    pid: x.pid,
                    adj: x.adj,
                    cause: &x.cause,
                    reason: x.reason,
                    reason_name: x.reason.map_or("", reason_name),
                    rss_kb: x.kill.as_ref().map(|k| k.rss_kb),
                    min_adj: st.map(|s| s.min_adj),
                    free_mem_kb: st.map(|s| s.free_mem_kb),
                    free_swap_kb: st.map(|s| s.free_swap_kb),
                    thrashing: st.map(|s| s.thrashing),
                }
            })
            .collect();
        let notices = r
            .kills
            .iter()
            .filter(|k| !rows.iter().any(|x| x.pid == k.pid))
            .map(|k| json::Notice {
                t_ms: k.t_ms,
                pid: k.pid,
                uid: k.uid,
                reason: k.stat.as_ref().map(|s| s.reason),
                name: k.stat.as_ref().map_or("", |s| &s.name),
                stat_t_ms: k.stat.as_ref().map(|s| s.t_ms),
                stat_adj: k.stat.as_ref().map(|s| s.adj),
            })
            .collect();
        let result = json::RunResult {
            scenario: &r.sc.name,
            killer: &r.args.label,
            pass,
            failures: &failures,
            t0_mono_ms: r.t0,
            end_ms,
            apps: r.procs.len(),
            daemon_connected: r.args.socket.is_some(),
            daemon_lost_ms: r.daemon_lost.as_ref().map(|d| d.0),
            deaths_total: rows.len(),
            daemon_kills,
            getkillcnt: killcnt,
            kernel_oom_kills: oom_delta,
            foreground_survived: !rows.iter().any(|x| x.adj <= 0),
            first_death_ms: rows.first().map(|x| x.t_ms),
            kills_per_adj,
            survivors: &survivors,
            deaths,
            unmatched_kill_notices: notices,
            unmatched_stats: r.pending_stats.len(),
            cycles,
            cycles_relieved: relieved,
            storm_packets: storm.as_ref().map(|s| s.packets),
            storm_error: storm.as_ref().and_then(|s| s.error.as_deref()),
            steady_daemon: c.steady_daemon,
        };
        let body = match serde_json::to_string_pretty(&result) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("lmkd-workload: encode the result: {e}");
                return 2;
            }
        };
        if let Err(e) = std::fs::write(out, body + "\n") {
            eprintln!("lmkd-workload: write {out}: {e}");
            return 2;
        }
    }
    if r.daemon_lost.is_some() {
        2
    } else if pass {
        0
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::judged_adj;

    #[test]
    fn launcher_rule_is_the_only_accepted_adj_change() {
        assert_eq!(judged_adj(600, Some(200)), 200);
        assert_eq!(judged_adj(650, Some(200)), 200);
        assert_eq!(judged_adj(600, Some(600)), 600);
        assert_eq!(judged_adj(600, None), 600);
        assert_eq!(judged_adj(700, Some(200)), 700);
        assert_eq!(judged_adj(900, Some(100)), 900);
    }
}
