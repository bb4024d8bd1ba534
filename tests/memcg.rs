//! Per-app memcg (`per_app_memcg`): soft limits by adj band written through
//! the real daemon, the launcher ranked as adj 200 when choosing victims,
//! and kill stats taken from the victim's memcg. The groups are real memcg
//! v1 groups made under this test process's own memory group, with real
//! children moved into them; a guard removes them even when a test fails.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::counting::{watch_thread, watched_allocs, Counting};
use common::inproc::InProc;
use common::*;
use lmkd::client::{Client, Message};
use lmkd::config::Config;
use lmkd::props::MapProperties;
use lmkd::proto::{self, Command as Cmd, KillStat, Prio};

#[global_allocator]
static GLOBAL: Counting = Counting;

const T: Duration = Duration::from_secs(5);
const MIB: i64 = 1 << 20;
const APP_UID: i32 = 10_123;

// ---------------------------------------------------------------------------
// memcg v1 groups of our own

/// This process's memory cgroup v1 directory.
fn own_memcg() -> Result<PathBuf, String> {
    let text =
        fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
    let rel = text
        .lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once(':')?;
            rest.split_once(':')
        })
        .find(|(ctrls, _)| ctrls.split(',').any(|c| c == "memory"))
        .map(|(_, path)| path.trim_start_matches('/').to_string())
        .ok_or("no memory controller line in /proc/self/cgroup (no memcg v1)")?;
    let dir = Path::new("/sys/fs/cgroup/memory").join(rel);
    if !dir.join("memory.soft_limit_in_bytes").exists() {
        return Err(format!(
            "{} has no memory.soft_limit_in_bytes",
            dir.display()
        ));
    }
    Ok(dir)
}

/// `<own group>/lmkd-<tag>-<pid>-<n>/apps/` with per-app groups below
/// it. Drop moves any process left in them back to our own group and
/// removes every directory, deepest first.
struct Groups {
    own: PathBuf,
    top: PathBuf,
    apps: PathBuf,
}

impl Groups {
    fn new(tag: &str) -> Result<Groups, String> {
        static N: AtomicU32 = AtomicU32::new(0);
        let own = own_memcg()?;
        let top = own.join(format!(
            "lmkd-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let apps = top.join("apps");
        fs::create_dir_all(&apps).map_err(|e| format!("mkdir {}: {e}", apps.display()))?;
        Ok(Groups { own, top, apps })
    }

    fn dir(&self, uid: i32, pid: i32) -> PathBuf {
        self.apps.join(format!("uid_{uid}/pid_{pid}"))
    }

    /// Makes the app's group and moves `pid` into it.
    fn adopt(&self, uid: i32, pid: i32) -> PathBuf {
        let d = self.dir(uid, pid);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("cgroup.procs"), pid.to_string()).unwrap();
        d
    }

    fn remove(&self, dir: &Path) {
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    self.remove(&e.path());
                }
            }
        }
        if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in procs.split_whitespace() {
                let _ = fs::write(self.own.join("cgroup.procs"), pid);
            }
        }
        // rmdir can race the last task's exit; retry briefly.
        let end = Instant::now() + Duration::from_secs(2);
        while fs::remove_dir(dir).is_err() && dir.exists() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        if dir.exists() {
            let _ = writeln!(std::io::stderr(), "could not remove {}", dir.display());
        }
    }
}

impl Drop for Groups {
    fn drop(&mut self) {
        self.remove(&self.top);
    }
}

/// Groups for `test`, or None after a visible skip.
fn groups(test: &str, tag: &str) -> Option<Groups> {
    if !need_root(test) {
        return None;
    }
    match Groups::new(tag) {
        Ok(g) => Some(g),
        Err(why) => {
            skip(test, &format!("needs memcg v1 groups: {why}"));
            None
        }
    }
}

fn soft_limit(dir: &Path) -> i64 {
    fs::read_to_string(dir.join("memory.soft_limit_in_bytes"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A value no band uses, so any write by the daemon shows (0 included).
const SENTINEL: i64 = 3 * 4096;

fn set_sentinel(dir: &Path) {
    fs::write(dir.join("memory.soft_limit_in_bytes"), SENTINEL.to_string()).unwrap();
    assert_eq!(soft_limit(dir), SENTINEL);
}

fn app(pid: i32, uid: i32, adj: i32) -> Prio {
    Prio {
        pid,
        uid,
        adj,
        ptype: proto::ptype::APP,
        for_lmkd_only: false,
    }
}

fn daemon_with_memcg(tag: &str, g: &Groups, on: bool) -> Daemon {
    Daemon::start(
        tag,
        &format!("per_app_memcg = {on}\nmemcg_apps_root = {:?}\n", g.apps),
    )
}

// ---------------------------------------------------------------------------
// Configuration

#[test]
fn per_app_memcg_follows_low_ram_unless_set() {
    let load = |props: &[(&str, &str)]| {
        let p = MapProperties::from_pairs(props.iter().copied());
        Config::load(None, &p).unwrap()
    };
    assert!(!load(&[]).0.startup.per_app_memcg);
    assert!(
        load(&[("ro.config.low_ram", "true")])
            .0
            .startup
            .per_app_memcg
    );
    assert!(
        !load(&[
            ("ro.config.low_ram", "true"),
            ("ro.config.per_app_memcg", "false")
        ])
        .0
        .startup
        .per_app_memcg
    );
    assert!(
        load(&[("ro.config.per_app_memcg", "1")])
            .0
            .startup
            .per_app_memcg
    );
    // lmkd reads it under ro.config only.
    assert!(
        !load(&[("ro.lmk.per_app_memcg", "true")])
            .0
            .startup
            .per_app_memcg
    );
    let (cfg, warnings) = load(&[("ro.config.per_app_memcg", "sometimes")]);
    assert!(!cfg.startup.per_app_memcg);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("ro.config.per_app_memcg") && w.contains("sometimes")),
        "{warnings:?}"
    );
    let cfg =
        Config::from_toml_str("per_app_memcg = true\nmemcg_apps_root = \"/tmp/apps\"\n").unwrap();
    assert!(cfg.startup.per_app_memcg);
    assert_eq!(cfg.startup.memcg_apps_root, Path::new("/tmp/apps"));
    let err = Config::from_toml_str("memcg_apps_root = \"\"\n").unwrap_err();
    assert!(err.to_string().contains("memcg_apps_root"), "{err}");
    assert_eq!(
        Config::default().restart_only_changes(&cfg),
        ["per_app_memcg", "memcg_apps_root"]
    );
}

// ---------------------------------------------------------------------------
// Soft limits through the real daemon

#[test]
fn procprio_sets_the_app_soft_limit_by_adj_band() {
    let test = "procprio_sets_the_app_soft_limit_by_adj_band";
    let Some(g) = groups(test, "bands") else {
        return;
    };
    let kid = Sleeper::new();
    let dir = g.adopt(APP_UID, kid.pid());
    let d = daemon_with_memcg("memcg-bands", &g, true);
    let c = d.connect();
    let bands = [
        (1000, 0),
        (900, 0),
        (800, 0),
        (700, 0),
        (650, 8 * MIB),
        (600, 8 * MIB),
        (500, 0),
        (400, 0),
        (300, 8 * MIB),
        (200, 64 * MIB),
        (100, 80 * MIB),
        (0, 160 * MIB),
        (-800, 512 * MIB),
    ];
    for (adj, want) in bands {
        set_sentinel(&dir);
        c.send(&Cmd::ProcPrio(app(kid.pid(), APP_UID, adj)))
            .unwrap();
        Daemon::sync(&c);
        assert_eq!(
            soft_limit(&dir),
            want,
            "soft limit after PROCPRIO adj {adj}"
        );
        // The kernel gets what the client sent, launcher included (below
        // 0 we may lack CAP_SYS_RESOURCE to lower it).
        if adj >= 0 {
            assert_eq!(kid.oom_adj(), adj);
        }
    }

    // A service's group is left alone.
    set_sentinel(&dir);
    let service = Prio {
        ptype: proto::ptype::SERVICE,
        ..app(kid.pid(), APP_UID, 0)
    };
    c.send(&Cmd::ProcPrio(service)).unwrap();
    Daemon::sync(&c);
    assert_eq!(
        soft_limit(&dir),
        SENTINEL,
        "a service's soft limit was written"
    );

    // An app without a group: logged, not fatal; system_server: silent.
    let lost = Sleeper::new();
    let system_server = Sleeper::new();
    c.send(&Cmd::ProcPrio(app(lost.pid(), APP_UID + 1, 900)))
        .unwrap();
    c.send(&Cmd::ProcPrio(app(system_server.pid(), 1000, -900)))
        .unwrap();
    Daemon::sync(&c);
    let log = d.wait_log(
        &format!(
            "memcg soft limit of pid {} (uid {})",
            lost.pid(),
            APP_UID + 1
        ),
        T,
    );
    assert!(
        !log.contains(&format!("memcg soft limit of pid {}", system_server.pid())),
        "a failed write for system_server was logged:\n{log}"
    );
    assert_eq!(lost.oom_adj(), 900, "the registration went through anyway");
    assert_eq!(kill_count(&c, -1000, 1000), 0);
}

#[test]
fn soft_limits_are_left_alone_when_per_app_memcg_is_off() {
    let test = "soft_limits_are_left_alone_when_per_app_memcg_is_off";
    let Some(g) = groups(test, "off") else { return };
    let kid = Sleeper::new();
    let dir = g.adopt(APP_UID, kid.pid());
    set_sentinel(&dir);
    let d = daemon_with_memcg("memcg-off", &g, false);
    let c = d.connect();
    c.send(&Cmd::ProcPrio(app(kid.pid(), APP_UID, 0))).unwrap();
    Daemon::sync(&c);
    assert_eq!(kid.oom_adj(), 0);
    assert_eq!(soft_limit(&dir), SENTINEL);
}

// ---------------------------------------------------------------------------
// Victim choice and kill stats (in-process daemon, injected pressure)

/// Kill notifications (pid) and stats packets seen on `c` within `wait`.
fn kills(c: &Client, wait: Duration) -> (Vec<i32>, Vec<KillStat>) {
    let end = Instant::now() + wait;
    let (mut pids, mut stats) = (vec![], vec![]);
    while Instant::now() < end {
        match c.recv(Some(Duration::from_millis(50))) {
            Ok(Some(Message::Kill(k))) => pids.push(k.pid),
            Ok(Some(Message::Stat(s))) => stats.push(s),
            _ => {}
        }
    }
    (pids, stats)
}

fn memcg_tweak(apps: PathBuf) -> impl FnOnce(&mut Config, &mut lmkd::daemon::Options) + Send {
    move |cfg, _| {
        cfg.startup.per_app_memcg = true;
        cfg.startup.memcg_apps_root = apps;
        cfg.kill_timeout_ms = 2000;
    }
}

#[test]
fn the_launcher_ranks_with_perceptible_apps() {
    let test = "the_launcher_ranks_with_perceptible_apps";
    let Some(g) = groups(test, "home") else {
        return;
    };
    // Legacy minfree mode with one level every snapshot is under: each
    // event kills down to adj 201. The launcher (600) would go first by
    // its own adj; kept as 200 it is spared while the adj 500 app dies,
    // and later events find nothing to kill.
    let launcher = Sleeper::new();
    let other = Sleeper::new();
    g.adopt(APP_UID, launcher.pid());
    g.adopt(APP_UID + 1, other.pid());
    let apps = g.apps.clone();
    let d = InProc::start(
        "memcg-home",
        "small",
        &[launcher.pid(), other.pid()],
        move |cfg, o| {
            memcg_tweak(apps)(cfg, o);
            cfg.use_minfree_levels = true;
        },
    );
    let c = d.connect();
    subscribe_all(&c);
    let level = proto::Target {
        minfree: 1 << 30,
        adj: 201,
    };
    c.send(&Cmd::Target(
        proto::TargetTable::from_slice(&[level]).unwrap(),
    ))
    .unwrap();
    c.send(&Cmd::ProcPrio(app(launcher.pid(), APP_UID, 600)))
        .unwrap();
    c.send(&Cmd::ProcPrio(app(other.pid(), APP_UID + 1, 500)))
        .unwrap();
    Daemon::sync(&c);
    let mut seen = vec![];
    for _ in 0..4 {
        d.bump_pressure();
        d.raise_complete();
        seen.extend(kills(&c, Duration::from_millis(400)).0);
    }
    assert_eq!(
        seen,
        vec![other.pid()],
        "kills down to adj 201 must take the adj 500 app and spare the launcher"
    );
    assert_eq!(launcher.oom_adj(), 600, "oom_score_adj stays as sent");
    assert_eq!(kill_count(&c, 500, 500), 1);
}

/// A forked child that, once told to, touches `mib` MiB of anonymous
/// memory and pauses. Killed and reaped on drop.
struct Fat {
    pid: i32,
    go: i32,
    ready: i32,
}

impl Fat {
    fn spawn(mib: usize) -> Fat {
        let mut go = [0i32; 2];
        let mut ready = [0i32; 2];
        // SAFETY: pipe2 into arrays of two ints.
        unsafe {
            assert_eq!(libc::pipe2(go.as_mut_ptr(), libc::O_CLOEXEC), 0);
            assert_eq!(libc::pipe2(ready.as_mut_ptr(), libc::O_CLOEXEC), 0);
        }
        // SAFETY: the child only makes async-signal-safe calls, then pauses.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: child side of fork; raw syscalls on our own pipes and memory.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                let mut b = 0u8;
                libc::read(go[0], (&mut b as *mut u8).cast(), 1);
                let len = mib << 20;
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                ) as *mut u8;
                if p as *mut libc::c_void != libc::MAP_FAILED {
                    for off in (0..len).step_by(4096) {
                        p.add(off).write_volatile(1);
                    }
                }
                libc::write(ready[1], (&b as *const u8).cast(), 1);
                loop {
                    libc::pause();
                }
            }
        }
        // SAFETY: closing the child's ends in the parent.
        unsafe {
            libc::close(go[0]);
            libc::close(ready[1]);
        }
        Fat {
            pid,
            go: go[1],
            ready: ready[0],
        }
    }

    /// Lets the child allocate; returns once its memory is touched.
    fn allocate(&self) {
        let b = 1u8;
        let mut r = 0u8;
        // SAFETY: one-byte reads and writes on our pipe ends.
        unsafe {
            assert_eq!(libc::write(self.go, (&b as *const u8).cast(), 1), 1);
            assert_eq!(libc::read(self.ready, (&mut r as *mut u8).cast(), 1), 1);
        }
    }
}

impl Drop for Fat {
    fn drop(&mut self) {
        // SAFETY: our own child and pipe ends.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            libc::close(self.go);
            libc::close(self.ready);
        }
    }
}

/// `total_<name>` of a memory.stat.
fn total(stat: &str, name: &str) -> i64 {
    let key = format!("total_{name} ");
    stat.lines()
        .find_map(|l| l.strip_prefix(&key))
        .unwrap_or_else(|| panic!("no {key} in memory.stat:\n{stat}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn kill_stats_come_from_the_app_memcg_without_allocating() {
    let test = "kill_stats_come_from_the_app_memcg_without_allocating";
    let Some(g) = groups(test, "stats") else {
        return;
    };
    let fat = Fat::spawn(16);
    let bystander = Sleeper::new();
    let dir = g.adopt(APP_UID, fat.pid);
    // Charged to the group from here on: 16 MiB anon.
    fat.allocate();
    let bystander_dir = g.adopt(APP_UID, bystander.pid());
    let apps = g.apps.clone();
    let d = InProc::start(
        "memcg-stats",
        "small",
        &[fat.pid, bystander.pid()],
        move |cfg, o| {
            memcg_tweak(apps)(cfg, o);
            o.on_thread_start = |role| {
                if role == "core" || role == "reaper" {
                    watch_thread()
                }
            };
        },
    );
    let c = d.connect();
    subscribe_all(&c);
    let before = watched_allocs();
    c.send(&Cmd::ProcPrio(app(fat.pid, APP_UID, 950))).unwrap();
    c.send(&Cmd::ProcPrio(app(bystander.pid(), APP_UID, 100)))
        .unwrap();
    Daemon::sync(&c);
    assert_eq!(soft_limit(&dir), 0);
    assert_eq!(soft_limit(&bystander_dir), 80 * MIB);
    // memcg v1 statistics are flushed to memory.stat every 2 s; after that
    // the paused child's figures stay put.
    std::thread::sleep(Duration::from_millis(2200));
    let memstat = fs::read_to_string(dir.join("memory.stat")).unwrap();
    let proc_rss = fs::read_to_string(format!("/proc/{}/statm", fat.pid)).unwrap();
    let proc_rss: i64 = proc_rss.split(' ').nth(1).unwrap().parse::<i64>().unwrap() * 4096;

    d.raise_complete();
    let (pids, stats) = kills(&c, Duration::from_millis(1500));
    assert_eq!(pids, vec![fat.pid], "the adj 950 app was not killed");
    let s = stats.first().expect("no kill stats packet");
    let want = (
        total(&memstat, "pgfault"),
        total(&memstat, "pgmajfault"),
        total(&memstat, "rss"),
        total(&memstat, "cache"),
        total(&memstat, "swap"),
    );
    assert_eq!(
        (
            s.pgfault,
            s.pgmajfault,
            s.rss_bytes,
            s.cache_bytes,
            s.swap_bytes
        ),
        want,
        "stats packet (pgfault, pgmajfault, rss, cache, swap) vs memory.stat:\n{memstat}"
    );
    assert!(
        (16 * MIB..20 * MIB).contains(&s.rss_bytes),
        "memcg rss {} is not the child's 16 MiB",
        s.rss_bytes
    );
    // /proc's view (file-backed pages included) is another figure, so the
    // match above is the memcg's doing.
    assert_ne!(proc_rss, s.rss_bytes, "statm and memcg rss coincide");
    assert_eq!(s.oom_score_adj, 950);
    assert_eq!(s.uid, APP_UID);

    // Nothing above allocated on the core or the reaper: PROCPRIO's soft
    // limit writes and the kill's memory.stat read use stack buffers.
    let settle = Instant::now() + Duration::from_millis(300);
    while Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        watched_allocs() - before,
        0,
        "the core allocated on the per-app memcg paths"
    );
}
