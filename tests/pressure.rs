//! The daemon against the real kernel:
//!   1. real memory pressure in a small memory cgroup with zram swap: the
//!      real binary, watching that group's PSI, kills the hog before the
//!      kernel's OOM killer acts, and reports it (log line, stats packet then
//!      PROCKILL, GETKILLCNT) while the sleepers outside survive;
//!   2. a frozen victim (cgroup v1 freezer) has its memory released by the
//!      reaper's `process_mrelease` while it is still frozen; a frozen
//!      victim that only gets SIGKILL keeps its memory until thawed;
//!   3. pid reuse: a registered process dies without PROCREMOVE, a new
//!      process gets its pid, a kill is requested: the newcomer survives,
//!      the stale record is dropped and the kill goes to the next candidate.
//!
//! Root only; each test skips with a message when a facility is missing.
//! The tests run one at a time (they measure memory and pids machine-wide)
//! and undo everything they set up, on failure too (Drop guards): cgroups,
//! zram swap, child processes.
//!
//! Child processes (the hog, the memory toucher) are this test binary run
//! again with `LMKD_PRESSURE_CHILD` set: see `child_process_helper`.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::inproc::InProc;
use common::*;
use lmkd::client::Message;
use lmkd::proto::Command as Cmd;

const MIB: usize = 1 << 20;

// ---- shared plumbing -------------------------------------------------------

/// The tests read machine-wide figures (MemFree, pids, zram): one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn unique(tag: &str) -> String {
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("lmkd-test-{tag}-{}-{ns}", std::process::id())
}

fn read_trim(p: &Path) -> String {
    fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

fn write_file(p: &Path, v: &str) {
    fs::write(p, v).unwrap_or_else(|e| panic!("write {v:?} to {}: {e}", p.display()));
}

/// `key value` lines (vmstat, meminfo, memory.stat, oom_control).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()?.trim_end_matches(':') == key)
            .then(|| it.next()?.parse().ok())
            .flatten()
    })
}

fn vmstat(key: &str) -> u64 {
    keyed(&fs::read_to_string("/proc/vmstat").unwrap(), key).unwrap_or(0)
}

fn meminfo_kb(key: &str) -> u64 {
    keyed(&fs::read_to_string("/proc/meminfo").unwrap(), key).unwrap_or(0)
}

/// Resident set of `pid` in kB (statm), None once the process is gone.
fn rss_kb(pid: i32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    Some(pages * (unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64 / 1024))
}

fn alive(pid: i32) -> bool {
    // A zombie still has /proc/<pid>; "Z" in stat means it is gone for us.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// A child process that is SIGKILLed and reaped on drop.
struct Kid(Child);

impl Kid {
    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    /// Waits for the exit; None on timeout.
    fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = self.0.try_wait() {
                return Some(st);
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A cgroup directory we created: on drop its tasks are thawed (freezer),
/// SIGKILLed and waited for, then the directory is removed.
struct Cgroup {
    path: PathBuf,
}

impl Cgroup {
    fn create(path: PathBuf) -> Cgroup {
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Cgroup { path }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    fn add(&self, pid: i32) {
        write_file(&self.file("cgroup.procs"), &pid.to_string());
    }

    fn pids(&self) -> Vec<i32> {
        fs::read_to_string(self.file("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// cgroup v1 freezer: FROZEN / THAWED, waiting until the state settles.
    fn freeze(&self, frozen: bool) {
        let want = if frozen { "FROZEN" } else { "THAWED" };
        write_file(&self.file("freezer.state"), want);
        assert!(
            eventually(Duration::from_secs(10), || read_trim(
                &self.file("freezer.state")
            ) == want),
            "freezer group {} never reached {want}",
            self.path.display()
        );
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if self.file("freezer.state").exists() {
            let _ = fs::write(self.file("freezer.state"), "THAWED");
        }
        for pid in self.pids() {
            // SAFETY: only processes we put in our own group.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let end = Instant::now() + Duration::from_secs(10);
        while fs::remove_dir(&self.path).is_err() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.path.exists() {
            eprintln!("WARNING: could not remove cgroup {}", self.path.display());
        }
    }
}

/// Our own cgroup v1 memory group (the `memory:` line of /proc/self/cgroup).
fn own_memcg() -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrl, path) = (parts.next()?, parts.next()?, parts.next()?);
        ctrl.split(',').any(|c| c == "memory").then_some(path)
    })?;
    let p = Path::new("/sys/fs/cgroup/memory").join(rel.trim_start_matches('/'));
    p.join("memory.limit_in_bytes").exists().then_some(p)
}

// ---- zram swap -------------------------------------------------------------

const ZRAM: &str = "/sys/block/zram0";

/// zram0 as swap for the duration of a test; swapoff and reset on drop.
struct ZramSwap;

impl ZramSwap {
    /// Why not, when zram is missing or in use.
    fn setup(size_mib: usize) -> Result<ZramSwap, String> {
        let z = Path::new(ZRAM);
        if !z.exists() {
            return Err(format!("no {ZRAM} (modprobe zram)"));
        }
        let swaps = fs::read_to_string("/proc/swaps").unwrap_or_default();
        if swaps.contains("/dev/zram0") {
            return Err("/dev/zram0 is already swap (another user?); not touching it".into());
        }
        for tool in ["mkswap", "swapon", "swapoff"] {
            if !["/sbin", "/usr/sbin", "/usr/bin", "/bin"]
                .iter()
                .any(|d| Path::new(d).join(tool).exists())
            {
                return Err(format!("{tool} not installed"));
            }
        }
        if read_trim(&z.join("disksize")) != "0" && fs::write(z.join("reset"), "1").is_err() {
            return Err(format!("{ZRAM} is set up and busy (reset refused)"));
        }
        let guard = ZramSwap;
        let algos = read_trim(&z.join("comp_algorithm"));
        for a in ["lz4", "lzo-rle", "lzo"] {
            if algos
                .split_whitespace()
                .any(|x| x.trim_matches(['[', ']']) == a)
            {
                write_file(&z.join("comp_algorithm"), a);
                break;
            }
        }
        write_file(&z.join("disksize"), &format!("{}", size_mib * MIB));
        let run = |cmd: &str, args: &[&str]| {
            let st = Command::new(cmd)
                .args(args)
                .stdout(Stdio::null())
                .status()
                .unwrap_or_else(|e| panic!("{cmd}: {e}"));
            assert!(st.success(), "{cmd} {args:?} failed: {st}");
        };
        run("mkswap", &["/dev/zram0"]);
        run("swapon", &["/dev/zram0"]);
        Ok(guard)
    }
}

impl Drop for ZramSwap {
    fn drop(&mut self) {
        if fs::read_to_string("/proc/swaps")
            .unwrap_or_default()
            .contains("/dev/zram0")
        {
            let st = Command::new("swapoff").arg("/dev/zram0").status();
            if !st.as_ref().is_ok_and(|s| s.success()) {
                eprintln!("WARNING: swapoff /dev/zram0 failed: {st:?}");
            }
        }
        if fs::write(Path::new(ZRAM).join("reset"), "1").is_err() {
            eprintln!("WARNING: could not reset {ZRAM}");
        }
    }
}

// ---- child processes (this binary, run again) ------------------------------

const CHILD_ENV: &str = "LMKD_PRESSURE_CHILD";

/// Not a test: the body of the child processes. With `LMKD_PRESSURE_CHILD`
/// unset (a normal test run) it does nothing.
///   touch:<MiB>  map and touch that much anonymous memory, print "ready",
///                then sleep until killed;
///   hog:<max MiB>:<ms per 4 MiB>[:<file>]  wait for a byte on stdin, then
///                grow anonymous memory by 4 MiB per period up to the max,
///                re-touching old memory and re-reading the file (an app
///                reading its code and resources) all the time.
#[test]
fn child_process_helper() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = mode.split(':').collect();
    match parts[0] {
        "touch" => touch_child(parts[1].parse().unwrap()),
        "hog" => hog_child(
            parts[1].parse().unwrap(),
            parts[2].parse().unwrap(),
            parts.get(3).copied(),
        ),
        other => panic!("unknown child mode {other}"),
    }
}

fn spawn_child(name: &str, mode: &str) -> Kid {
    let exe = std::env::current_exe().unwrap();
    Kid(Command::new(exe)
        .arg0(name)
        .args([
            "--exact",
            "child_process_helper",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(CHILD_ENV, mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child"))
}

/// Waits for the child's "ready" line.
fn wait_ready(kid: &mut Kid) {
    let out = kid.0.stdout.take().expect("child stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if line.trim() == "ready" {
                let _ = tx.send(());
                // Keep draining so the child never blocks on a full pipe.
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("child never printed ready");
}

fn map_anon(bytes: usize) -> *mut u8 {
    // SAFETY: a fresh private anonymous mapping; checked below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED, "mmap of {bytes} bytes failed");
    p as *mut u8
}

/// Writes `words` pseudo-random u64s at the start of every page: pages are
/// distinct (no zero page, no same-filled zram pages) and compress ~4:1.
fn fill(p: *mut u8, bytes: usize, words: usize, seed: &mut u64) {
    for page in (0..bytes).step_by(4096) {
        for w in 0..words {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            // SAFETY: inside the mapping; page + w*8 < page + 4096.
            unsafe { (p.add(page + w * 8) as *mut u64).write_volatile(*seed) };
        }
    }
}

fn touch_child(mib: usize) {
    let bytes = mib * MIB;
    let p = map_anon(bytes);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    fill(p, bytes, 1, &mut seed);
    println!("ready");
    std::io::stdout().flush().unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1000));
    }
}

fn hog_child(max_mib: usize, ms_per_chunk: u64, file: Option<&str>) {
    const CHUNK: usize = 4 * MIB;
    let mut go = [0u8; 1];
    std::io::stdin().read_exact(&mut go).unwrap();
    let file = file.map(|f| fs::File::open(f).unwrap());
    let file_len = file.as_ref().map_or(0, |f| f.metadata().unwrap().len());
    let mut buf = vec![0u8; MIB];
    let mut chunks: Vec<*mut u8> = Vec::with_capacity(max_mib * MIB / CHUNK + 1);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let (mut cursor, mut off) = (0usize, 0u64);
    let mut next = Instant::now();
    loop {
        // One step per period: a new chunk, one old chunk touched again
        // (what was swapped out comes back in), some file reading.
        if chunks.len() * CHUNK < max_mib * MIB {
            let p = map_anon(CHUNK);
            fill(p, CHUNK, 64, &mut seed);
            chunks.push(p);
        }
        if let Some(&p) = chunks.get(cursor % chunks.len().max(1)) {
            fill(p, CHUNK, 1, &mut seed);
        }
        cursor += 1;
        if let Some(f) = &file {
            use std::os::unix::fs::FileExt;
            for _ in 0..4 {
                let _ = f.read_at(&mut buf, off);
                off = (off + MIB as u64) % file_len.max(1);
            }
        }
        next += Duration::from_millis(ms_per_chunk);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

// ---- 1. real memory pressure -------------------------------------------------

/// The memory cgroup limit, the zram size and the hog's ceiling: the hog
/// would fill the group and all of zram (256 MiB + 1 GiB < 2 GiB) and then
/// meet the kernel's OOM killer, unless the daemon kills it first.
const LIMIT_MIB: usize = 256;
const ZRAM_MIB: usize = 1024;
const HOG_MAX_MIB: usize = 2048;
/// 4 MiB per 40 ms: about 100 MiB/s, so the group fills in under 3 s and
/// zram (at the rate reclaim manages) some seconds later.
const HOG_MS_PER_CHUNK: u64 = 40;
/// The file the hog keeps re-reading (its page cache competes for the limit).
const HOG_FILE_MIB: usize = 96;

#[test]
fn real_pressure_kills_the_hog_before_the_kernel_oom_killer() {
    let _serial = serial();
    let test = "real_pressure_kills_the_hog_before_the_kernel_oom_killer";
    if !need_root(test) {
        return;
    }
    let Some(memcg_root) = own_memcg() else {
        skip(test, "no cgroup v1 memory controller for this process");
        return;
    };
    let unified = Path::new("/sys/fs/cgroup/unified");
    if !unified.join("memory.pressure").exists() {
        skip(
            test,
            &format!("no cgroup2 memory.pressure under {}", unified.display()),
        );
        return;
    }
    if !Path::new("/proc/pressure/memory").exists() {
        skip(test, "kernel without PSI");
        return;
    }
    let oom_before = vmstat("oom_kill");
    // Drop order (reverse of declaration): hog, daemon, cgroups, then swap,
    // so swapoff never has to bring the hog's pages back.
    let _zram = match ZramSwap::setup(ZRAM_MIB) {
        Ok(z) => z,
        Err(why) => {
            skip(test, &format!("zram swap unavailable: {why}"));
            return;
        }
    };
    let name = unique("press");
    let memcg = Cgroup::create(memcg_root.join(&name));
    write_file(
        &memcg.file("memory.limit_in_bytes"),
        &(LIMIT_MIB * MIB).to_string(),
    );
    // Anonymous memory is as reclaimable as file cache (zram is cheap).
    let _ = fs::write(memcg.file("memory.swappiness"), "100");
    let v2 = Cgroup::create(unified.join(&name));
    let pressure_file = v2.file("memory.pressure");
    assert!(
        pressure_file.exists(),
        "no memory.pressure in a new cgroup2 group"
    );

    // A file on disk, out of the page cache, so the hog's reads are charged
    // to its group and refault once its own anonymous memory pushes them out.
    let scratch = TempDir::new("press-file");
    let file = scratch.path("resources.bin");
    make_cold_file(&file, HOG_FILE_MIB);

    let d = Daemon::start(
        "pressure",
        &format!(
            "psi_path = {:?}\npsi_partial_stall_ms = 70\npsi_complete_stall_ms = 150\n",
            pressure_file
        ),
    );
    d.wait_log("pressure monitor: PSI", Duration::from_secs(5));
    let c = d.connect();
    subscribe_all(&c);

    let s900 = Sleeper::new();
    let s0 = Sleeper::new();
    let mut hog = spawn_child(
        "lmkd-test-hog",
        &format!("hog:{HOG_MAX_MIB}:{HOG_MS_PER_CHUNK}:{}", file.display()),
    );
    let hog_pid = hog.pid();
    memcg.add(hog_pid);
    v2.add(hog_pid);
    for (pid, adj) in [(hog_pid, 950), (s900.pid(), 900), (s0.pid(), 0)] {
        c.send(&Cmd::ProcPrio(prio(pid, adj))).unwrap();
    }
    Daemon::sync(&c);
    assert_eq!(oom_adj(hog_pid), 950);

    let go = Instant::now();
    hog.0.stdin.as_mut().unwrap().write_all(b"g").unwrap();

    // Stats packet first, then PROCKILL, both naming the hog.
    let mut stat = None;
    let mut kill = None;
    let mut hog_gone = None;
    let end = go + Duration::from_secs(45);
    while kill.is_none() && Instant::now() < end {
        match c.recv(Some(Duration::from_millis(100))).unwrap() {
            Some(Message::Stat(s)) => {
                assert!(stat.is_none(), "two stats packets before a PROCKILL");
                stat = Some((s, go.elapsed()));
            }
            Some(Message::Kill(k)) => kill = Some((k, go.elapsed())),
            _ => {}
        }
        // The victim may exit before the notifications arrive (they are
        // sent once the reaper reports back); allow a grace period.
        if kill.is_none() && hog_gone.is_none() {
            if let Ok(Some(st)) = hog.0.try_wait() {
                hog_gone = Some((st, Instant::now()));
            }
        }
        if let Some((st, at)) = hog_gone.filter(|_| kill.is_none()) {
            if at.elapsed() > Duration::from_secs(3) {
                panic!(
                    "the hog died ({st}) and no kill notification followed; memcg oom_control:\n{}\n\
                     daemon log:\n{}",
                    read_trim(&memcg.file("memory.oom_control")),
                    d.log_text()
                );
            }
        }
    }
    let memcg_oom = keyed(&read_trim(&memcg.file("memory.oom_control")), "oom_kill");
    let Some((k, kill_at)) = kill else {
        panic!(
            "no kill within 45 s; memcg usage {} MiB, oom_kill {memcg_oom:?}, pressure:\n{}\n\
             daemon log:\n{}",
            read_trim(&memcg.file("memory.usage_in_bytes"))
                .parse::<u64>()
                .unwrap_or(0)
                >> 20,
            read_trim(&pressure_file),
            d.log_text()
        )
    };
    let (s, stat_at) = stat.expect("PROCKILL came without a stats packet before it");
    assert_eq!(
        k.pid,
        hog_pid,
        "the first kill was not the hog; daemon log:\n{}",
        d.log_text()
    );
    assert_eq!(k.uid, 10_000);
    assert_eq!(s.oom_score_adj, 950);
    assert_eq!(s.uid, 10_000);
    assert!(s.reason >= 0, "stats packet without a reason: {}", s.reason);
    assert!(stat_at <= kill_at);
    let status = hog
        .wait_exit(Duration::from_secs(10))
        .expect("hog still alive");
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "hog ended by {status}"
    );

    // The kill line, with its reason.
    let needle = format!("({hog_pid}), uid 10000, oom_score_adj 950 to free ");
    let log = d.wait_log(&needle, Duration::from_secs(5));
    let line = log
        .lines()
        .find(|l| l.contains(&needle))
        .unwrap()
        .to_string();
    assert!(line.contains("Kill '"), "kill line: {line}");
    let reason = line.split("; reason: ").nth(1).unwrap_or("").trim();
    assert!(!reason.is_empty(), "kill line without a reason: {line}");

    // No second kill: the sleepers outlive the next PSI window.
    let settle = Instant::now() + Duration::from_millis(3000);
    while Instant::now() < settle {
        if let Some(Message::Kill(k2)) = c.recv(Some(Duration::from_millis(100))).unwrap() {
            panic!(
                "a second kill after the hog: pid {} ({})",
                k2.pid,
                d.log_text()
            );
        }
    }
    assert!(alive(s900.pid()), "the adj 900 sleeper was killed");
    assert!(alive(s0.pid()), "the adj 0 sleeper was killed");
    let all = |lo, hi| kill_count(&c, lo, hi);
    assert_eq!(all(-1000, 1000), 1, "GETKILLCNT over all adj");
    assert_eq!(all(950, 950), 1, "GETKILLCNT at adj 950");

    // The kernel's OOM killer never acted in the group, nor anywhere.
    let oc = read_trim(&memcg.file("memory.oom_control"));
    assert_eq!(keyed(&oc, "oom_kill"), Some(0), "memcg oom_control:\n{oc}");
    let oom_after = vmstat("oom_kill");
    assert_eq!(
        oom_after, oom_before,
        "/proc/vmstat oom_kill grew during the test (memcg shows 0, so someone else's?)"
    );

    let max_usage = read_trim(&memcg.file("memory.max_usage_in_bytes"))
        .parse::<u64>()
        .unwrap_or(0);
    let memsw = read_trim(&memcg.file("memory.memsw.max_usage_in_bytes"))
        .parse::<u64>()
        .unwrap_or(0);
    eprintln!(
        "real pressure: hog killed {:.2} s after it started (stats packet at {:.2} s); \
         reason code {}, min adj {}, rss {} kB, swap {} MiB; group peak {} MiB, \
         with swap {} MiB; free memory {} MiB, free swap {} MiB\n  {line}\n  pressure: {}",
        kill_at.as_secs_f64(),
        stat_at.as_secs_f64(),
        s.reason,
        s.min_oom_score,
        k.rss_kb,
        s.swap_bytes >> 20,
        max_usage >> 20,
        memsw >> 20,
        s.free_mem_kb / 1024,
        s.free_swap_kb / 1024,
        read_trim(&pressure_file).replace('\n', " | "),
    );
    drop(hog);
}

/// Writes a file of `mib` MiB and evicts it from the page cache.
fn make_cold_file(path: &Path, mib: usize) {
    let mut f = fs::File::create(path).unwrap();
    let mut block = vec![0u8; MIB];
    let mut seed = 0x1234_5678_9abc_def1u64;
    for _ in 0..mib {
        fill(block.as_mut_ptr(), MIB, 64, &mut seed);
        f.write_all(&block).unwrap();
    }
    f.sync_all().unwrap();
    // SAFETY: advisory call on an open fd.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

// ---- 2. frozen victim --------------------------------------------------------

const FROZEN_MIB: usize = 512;

#[test]
fn frozen_victim_memory_is_released_by_process_mrelease() {
    let _serial = serial();
    let test = "frozen_victim_memory_is_released_by_process_mrelease";
    if !need_root(test) {
        return;
    }
    let freezer = Path::new("/sys/fs/cgroup/freezer");
    if !freezer.join("cgroup.procs").exists() {
        skip(
            test,
            &format!("no cgroup v1 freezer at {}", freezer.display()),
        );
        return;
    }

    // The daemon's way: pidfd from registration, reaper::run = SIGKILL then
    // process_mrelease, on a victim that is frozen the whole time.
    let fz = Cgroup::create(freezer.join(unique("frozen")));
    if !fz.file("freezer.state").exists() {
        skip(test, "freezer groups have no freezer.state");
        return;
    }
    let mut kid = spawn_child("lmkd-test-frozen", &format!("touch:{FROZEN_MIB}"));
    wait_ready(&mut kid);
    let pid = kid.pid();
    fz.add(pid);
    fz.freeze(true);
    let rss_before = rss_kb(pid).unwrap();
    assert!(
        rss_before >= (FROZEN_MIB as u64 * 1024) * 9 / 10,
        "child touched only {rss_before} kB"
    );
    let free_before = meminfo_kb("MemFree");
    let pidfd = lmkd::sys::pidfd_open(pid).expect("pidfd_open");
    let t0 = Instant::now();
    let done = lmkd::reaper::run(
        lmkd::reaper::Job::new(pid, Some(pidfd.as_fd()), false),
        &AtomicBool::new(true),
    );
    let took = t0.elapsed();
    let free_after = meminfo_kb("MemFree");
    let rss_after = rss_kb(pid);
    let state = read_trim(&fz.file("freezer.state"));
    assert!(
        done.signal.is_ok(),
        "pidfd_send_signal failed: {:?}",
        done.signal
    );
    assert_eq!(
        done.finished.map(|f| f.release),
        Some(lmkd::reaper::Release::Released),
        "process_mrelease did not release"
    );
    assert_eq!(state, "FROZEN", "the victim was thawed");
    assert!(
        fz.pids().contains(&pid) && kid.0.try_wait().unwrap().is_none(),
        "the frozen victim exited: the test proves nothing"
    );
    let rss_after = rss_after.expect("no statm for the frozen victim");
    assert!(
        rss_after * 10 <= rss_before,
        "frozen victim kept {rss_after} of {rss_before} kB after process_mrelease"
    );
    let freed_kb = free_after.saturating_sub(free_before);
    eprintln!(
        "frozen + process_mrelease: rss {rss_before} -> {rss_after} kB within {:.1} ms \
         (signal to release {:.1} ms), MemFree +{} MiB, still {state}",
        took.as_secs_f64() * 1e3,
        (done
            .finished
            .map_or(0, |f| f.at_ns)
            .saturating_sub(done.signal.unwrap_or(0))) as f64
            / 1e6,
        freed_kb / 1024,
    );

    // Contrast: SIGKILL alone does nothing to a frozen process's memory
    // until it is thawed.
    let fz2 = Cgroup::create(freezer.join(unique("frozen-sigkill")));
    let mut kid2 = spawn_child("lmkd-test-frozen2", &format!("touch:{FROZEN_MIB}"));
    wait_ready(&mut kid2);
    let pid2 = kid2.pid();
    fz2.add(pid2);
    fz2.freeze(true);
    let rss2_before = rss_kb(pid2).unwrap();
    let pidfd2 = lmkd::sys::pidfd_open(pid2).unwrap();
    lmkd::sys::pidfd_send_signal(pidfd2.as_fd(), libc::SIGKILL).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let rss2_after = rss_kb(pid2).unwrap_or(0);
    assert!(
        rss2_after * 10 >= rss2_before * 9,
        "a frozen victim released memory without process_mrelease ({rss2_before} -> {rss2_after} kB)"
    );
    let thaw = Instant::now();
    fz2.freeze(false);
    let st = kid2
        .wait_exit(Duration::from_secs(10))
        .expect("the SIGKILLed victim did not exit after thawing");
    assert_eq!(st.signal(), Some(libc::SIGKILL));
    eprintln!(
        "frozen + SIGKILL only: rss {rss2_before} -> {rss2_after} kB after 1000 ms frozen; \
         exited {:.1} ms after thawing",
        thaw.elapsed().as_secs_f64() * 1e3
    );

    // Thaw the first one too: it exits by the pending SIGKILL.
    fz.freeze(false);
    let st = kid
        .wait_exit(Duration::from_secs(10))
        .expect("victim did not exit");
    assert_eq!(st.signal(), Some(libc::SIGKILL));
}

// ---- 3. pid reuse ------------------------------------------------------------

/// Spawns `sleep` with exactly `pid`, via ns_last_pid; None if another
/// process kept taking it.
fn spawn_at_pid(pid: i32) -> Option<Kid> {
    for _ in 0..50 {
        if fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).is_err() {
            return None;
        }
        let k = Kid(spawn_sleep());
        if k.pid() == pid {
            return Some(k);
        }
    }
    None
}

#[test]
fn reused_pid_survives_and_the_stale_record_is_dropped() {
    let _serial = serial();
    let test = "reused_pid_survives_and_the_stale_record_is_dropped";
    if !need_root(test) {
        return;
    }
    let ns_last_pid = Path::new("/proc/sys/kernel/ns_last_pid");
    if fs::OpenOptions::new()
        .write(true)
        .open(ns_last_pid)
        .is_err()
    {
        skip(test, &format!("{} is not writable", ns_last_pid.display()));
        return;
    }
    logcap::install();
    let d = InProc::real("pidreuse", |cfg, _| cfg.startup.max_procs = 256);
    let c = d.connect();
    subscribe_all(&c);

    // The next candidate after the stale record, and a bystander.
    let next = Kid(spawn_sleep());
    let bystander = Kid(spawn_sleep());
    c.send(&Cmd::ProcPrio(prio(next.pid(), 900))).unwrap();
    c.send(&Cmd::ProcPrio(prio(bystander.pid(), 0))).unwrap();

    // Register, die unannounced (reaped by us, its parent), reuse the pid.
    let mut newcomer = None;
    let mut old_pid = 0;
    for _ in 0..5 {
        let mut old = Kid(spawn_sleep());
        old_pid = old.pid();
        c.send(&Cmd::ProcPrio(prio(old_pid, 950))).unwrap();
        Daemon::sync(&c);
        assert_eq!(oom_adj(old_pid), 950);
        old.0.kill().unwrap();
        old.0.wait().unwrap();
        drop(old);
        newcomer = spawn_at_pid(old_pid);
        if newcomer.is_some() {
            break;
        }
    }
    let newcomer = newcomer.expect("could not get a new process onto a freed pid");
    assert_eq!(newcomer.pid(), old_pid);
    let newcomer_adj = oom_adj(old_pid);
    assert_ne!(
        newcomer_adj, 950,
        "the newcomer inherited nothing from the record"
    );
    let stale_line = format!("process {old_pid} exited without PROCREMOVE; its record was dropped");
    assert!(
        !logcap::text().contains(&stale_line),
        "the record was dropped before the kill request"
    );

    // Request a kill: a critical event (NOT_RESPONDING, min adj 0).
    d.raise_complete();
    let mut got_stat = None;
    let mut got_kill = None;
    let end = Instant::now() + Duration::from_secs(10);
    while got_kill.is_none() && Instant::now() < end {
        match c.recv(Some(Duration::from_millis(100))).unwrap() {
            Some(Message::Stat(s)) => got_stat = Some(s),
            Some(Message::Kill(k)) => got_kill = Some(k),
            _ => {}
        }
    }
    let k = got_kill.unwrap_or_else(|| panic!("no kill after the event; log:\n{}", logcap::text()));
    let s = got_stat.expect("no stats packet before PROCKILL");
    assert_ne!(
        k.pid, old_pid,
        "the kill hit the process that reused the pid"
    );
    assert_eq!(
        k.pid,
        next.pid(),
        "the kill did not go to the next candidate"
    );
    assert_eq!(s.oom_score_adj, 900);
    logcap::wait_for(&stale_line, Duration::from_secs(5));

    // The newcomer lives, untouched.
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(old_pid), "the process that reused the pid died");
    assert_eq!(oom_adj(old_pid), newcomer_adj);
    assert!(alive(bystander.pid()));
    assert_eq!(kill_count(&c, 950, 950), 0);
    assert_eq!(kill_count(&c, 900, 900), 1);

    // The record is really gone: another client can register the newcomer
    // (a live record of the first client would be refused), and no second
    // "dropped" line appears for it.
    let other = Remote::connect(&d.dir.path("lmkd.sock"));
    other.send(&Cmd::ProcPrio(prio(old_pid, 800)));
    other.sync();
    assert_eq!(
        oom_adj(old_pid),
        800,
        "registering the newcomer was refused"
    );
    let text = logcap::text();
    assert_eq!(text.matches(&stale_line).count(), 1, "log:\n{text}");
    assert!(
        !text.contains(&format!("for pid {old_pid} refused")),
        "log:\n{text}"
    );
    eprintln!(
        "pid reuse: pid {old_pid} reused by a new process; kill went to {} (adj 900); \
         stale record dropped at the kill",
        k.pid
    );
    drop(newcomer);
}
