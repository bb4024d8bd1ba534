//! Real memory pressure for tests and benches: a memory cgroup (v1) under
//! our own group with a limit, its cgroup2 twin for `memory.pressure`, zram
//! swap, a hog that grows until someone kills it, and the daemon watching
//! that group's PSI. One piece of code serves `tests/pressure.rs` and the
//! storm bench.
//!
//! Child processes (the hog, the memory toucher) are the current binary run
//! again with `LMKD_PRESSURE_CHILD` set: a test binary calls [`child_main`]
//! from a test named `child_process_helper`, a bench from its `main`.
//!
//! zram swap is machine-wide: every user holds [`serial`] (a file lock, so
//! it holds across test binaries and benches) and drops [`ZramSwap`], which
//! swaps off and resets.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lmkd::client::{Client, Message};
use lmkd::proto::{Command as Cmd, KillStat, ProcKill};

use super::{eventually, prio, subscribe_all, Daemon, TempDir};

pub const MIB: usize = 1 << 20;

/// Held while a test or bench uses machine-wide resources (zram, MemFree,
/// pids): an exclusive `flock` on a file in /tmp, so it holds between
/// threads of one binary (each call opens its own file description) and
/// between binaries. Released on drop.
pub struct Serial(fs::File);

pub fn serial() -> Serial {
    let f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open("/tmp/lmkd-tests-machine-wide.lock")
        .expect("open /tmp/lmkd-tests-machine-wide.lock");
    // SAFETY: flock on a descriptor we own; blocks until the lock is ours.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(r, 0, "flock: {}", std::io::Error::last_os_error());
    Serial(f)
}

pub fn unique(tag: &str) -> String {
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("lmkd-test-{tag}-{}-{ns}", std::process::id())
}

pub fn read_trim(p: &Path) -> String {
    fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

pub fn write_file(p: &Path, v: &str) {
    fs::write(p, v).unwrap_or_else(|e| panic!("write {v:?} to {}: {e}", p.display()));
}

/// `key value` lines (vmstat, meminfo, memory.stat, oom_control).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()?.trim_end_matches(':') == key)
            .then(|| it.next()?.parse().ok())
            .flatten()
    })
}

pub fn vmstat(key: &str) -> u64 {
    keyed(&fs::read_to_string("/proc/vmstat").unwrap(), key).unwrap_or(0)
}

pub fn meminfo_kb(key: &str) -> u64 {
    keyed(&fs::read_to_string("/proc/meminfo").unwrap(), key).unwrap_or(0)
}

/// Resident set of `pid` in kB (statm), None once the process is gone.
pub fn rss_kb(pid: i32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    Some(pages * (unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64 / 1024))
}

pub fn alive(pid: i32) -> bool {
    // A zombie still has /proc/<pid>; "Z" in stat means it is gone for us.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// A child process that is SIGKILLed and reaped on drop.
pub struct Kid(pub Child);

impl Kid {
    pub fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    /// Waits for the exit; None on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
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
pub struct Cgroup {
    pub path: PathBuf,
}

impl Cgroup {
    pub fn create(path: PathBuf) -> Cgroup {
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Cgroup { path }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn add(&self, pid: i32) {
        write_file(&self.file("cgroup.procs"), &pid.to_string());
    }

    pub fn pids(&self) -> Vec<i32> {
        fs::read_to_string(self.file("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// cgroup v1 freezer: FROZEN / THAWED, waiting until the state settles.
    pub fn freeze(&self, frozen: bool) {
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
pub fn own_memcg() -> Option<PathBuf> {
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

pub const ZRAM: &str = "/sys/block/zram0";

/// zram0 as swap for the duration of a test; swapoff and reset on drop.
pub struct ZramSwap;

impl ZramSwap {
    /// Why not, when zram is missing or in use.
    pub fn setup(size_mib: usize) -> Result<ZramSwap, String> {
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

pub const CHILD_ENV: &str = "LMKD_PRESSURE_CHILD";

pub fn spawn_child(name: &str, mode: &str) -> Kid {
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
pub fn wait_ready(kid: &mut Kid) {
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

/// Writes a file of `mib` MiB and evicts it from the page cache.
pub fn make_cold_file(path: &Path, mib: usize) {
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

/// In a child started by [`spawn_child`] (`LMKD_PRESSURE_CHILD` set): runs
/// the child's body and never returns. Otherwise returns at once.
///   touch:<MiB>  map and touch that much anonymous memory, print "ready",
///                then sleep until killed;
///   hog:<max MiB>:<ms per 4 MiB>[:<file>]  wait for a byte on stdin, then
///                grow anonymous memory by 4 MiB per period up to the max,
///                re-touching old memory and re-reading the file (an app
///                reading its code and resources) all the time.
pub fn child_main() {
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
    std::process::exit(0);
}

// ---- the real-pressure rig -----------------------------------------------------

/// The memory cgroup limit, the zram size and the hog's ceiling: the hog
/// would fill the group and all of zram (256 MiB + 1 GiB < 2 GiB) and then
/// meet the kernel's OOM killer, unless the daemon kills it first.
pub const LIMIT_MIB: usize = 256;
pub const ZRAM_MIB: usize = 1024;
pub const HOG_MAX_MIB: usize = 2048;
/// 4 MiB per 40 ms: about 100 MiB/s, so the group fills in under 3 s and
/// zram (at the rate reclaim manages) some seconds later.
pub const HOG_MS_PER_CHUNK: u64 = 40;
/// The file the hog keeps re-reading (its page cache competes for the limit).
pub const HOG_FILE_MIB: usize = 96;

/// Why the real-pressure rig cannot run here (root is checked by the
/// caller); otherwise our own memory cgroup, under which the rig's group goes.
pub fn rig_prerequisites() -> Result<PathBuf, String> {
    let memcg_root = own_memcg().ok_or("no cgroup v1 memory controller for this process")?;
    if !Path::new(UNIFIED).join("memory.pressure").exists() {
        return Err(format!("no cgroup2 memory.pressure under {UNIFIED}"));
    }
    if !Path::new("/proc/pressure/memory").exists() {
        return Err("kernel without PSI".into());
    }
    Ok(memcg_root)
}

pub const UNIFIED: &str = "/sys/fs/cgroup/unified";

/// The rig's ground without a daemon: a memory cgroup (v1) of
/// `LIMIT_MIB` under `memcg_root`, its cgroup2 twin (for `memory.pressure`)
/// and a cold file for the hog to re-read. Lets a bench put another daemon
/// on the same ground.
pub struct Groups {
    pub memcg: Cgroup,
    pub v2: Cgroup,
    pub pressure_file: PathBuf,
    pub file: PathBuf,
    pub scratch: TempDir,
}

impl Groups {
    pub fn create(memcg_root: &Path, tag: &str) -> Groups {
        let name = unique(tag);
        let memcg = Cgroup::create(memcg_root.join(&name));
        write_file(
            &memcg.file("memory.limit_in_bytes"),
            &(LIMIT_MIB * MIB).to_string(),
        );
        // Anonymous memory is as reclaimable as file cache (zram is cheap).
        let _ = fs::write(memcg.file("memory.swappiness"), "100");
        let v2 = Cgroup::create(Path::new(UNIFIED).join(&name));
        let pressure_file = v2.file("memory.pressure");
        assert!(
            pressure_file.exists(),
            "no memory.pressure in a new cgroup2 group"
        );
        // A file on disk, out of the page cache, so the hog's reads are
        // charged to its group and refault once its own anonymous memory
        // pushes them out.
        let scratch = TempDir::new(&format!("{tag}-file"));
        let file = scratch.path("resources.bin");
        make_cold_file(&file, HOG_FILE_MIB);
        Groups {
            memcg,
            v2,
            pressure_file,
            file,
            scratch,
        }
    }
}

/// The hog in `memcg` and `v2`, waiting for [`Rig::go`]'s byte on stdin.
pub fn spawn_hog(memcg: &Cgroup, v2: &Cgroup, file: &Path) -> Kid {
    let hog = spawn_child(
        "lmkd-test-hog",
        &format!("hog:{HOG_MAX_MIB}:{HOG_MS_PER_CHUNK}:{}", file.display()),
    );
    memcg.add(hog.pid());
    v2.add(hog.pid());
    hog
}

/// A hog at adj 950 in a memory cgroup of `LIMIT_MIB` (plus its cgroup2
/// twin), and the real daemon watching that group's PSI with a subscribed
/// client. Fields drop in order: hog, daemon, client, groups, file; the
/// caller's [`ZramSwap`] must outlive it.
pub struct Rig {
    pub hog: Kid,
    pub d: Daemon,
    pub c: Arc<Client>,
    pub memcg: Cgroup,
    pub v2: Cgroup,
    pub pressure_file: PathBuf,
    _scratch: TempDir,
}

/// What the subscriber saw of the first kill.
pub struct KillSeen {
    pub kill: ProcKill,
    /// From `go` to the PROCKILL notification.
    pub kill_at: Duration,
    /// The stats packet before it, with its time.
    pub stat: Option<(KillStat, Duration)>,
}

impl Rig {
    pub fn start(memcg_root: &Path, tag: &str) -> Rig {
        Self::start_with(memcg_root, tag, "", |_| {})
    }

    /// Like [`Rig::start`], with `extra` config lines and `setup` applied to
    /// the daemon's command (environment).
    pub fn start_with(
        memcg_root: &Path,
        tag: &str,
        extra: &str,
        setup: impl FnOnce(&mut Command),
    ) -> Rig {
        let Groups {
            memcg,
            v2,
            pressure_file,
            file,
            scratch,
        } = Groups::create(memcg_root, tag);
        let d = Daemon::start_with(
            tag,
            &format!(
                "psi_path = {:?}\npsi_partial_stall_ms = 70\npsi_complete_stall_ms = 150\n{extra}",
                pressure_file
            ),
            &[],
            setup,
        );
        d.wait_log("pressure monitor: PSI", Duration::from_secs(5));
        let c = Arc::new(d.connect());
        subscribe_all(&c);
        let hog = spawn_hog(&memcg, &v2, &file);
        c.send(&Cmd::ProcPrio(prio(hog.pid(), 950))).unwrap();
        Daemon::sync(&c);
        Rig {
            hog,
            d,
            c,
            memcg,
            v2,
            pressure_file,
            _scratch: scratch,
        }
    }

    /// Lets the hog grow; returns the start time.
    pub fn go(&mut self) -> Instant {
        let go = Instant::now();
        self.hog.0.stdin.as_mut().unwrap().write_all(b"g").unwrap();
        go
    }

    /// Waits up to `timeout` for the first PROCKILL. Err (with the group's
    /// state and the daemon log) when none came, or when the hog died and
    /// no notification followed within 3 s.
    pub fn wait_kill(&mut self, go: Instant, timeout: Duration) -> Result<KillSeen, String> {
        let mut stat = None;
        let mut hog_gone = None;
        let end = go + timeout;
        while Instant::now() < end {
            match self.c.recv(Some(Duration::from_millis(100))) {
                Ok(Some(Message::Stat(s))) => {
                    if stat.is_some() {
                        return Err("two stats packets before a PROCKILL".into());
                    }
                    stat = Some((s, go.elapsed()));
                }
                Ok(Some(Message::Kill(kill))) => {
                    return Ok(KillSeen {
                        kill,
                        kill_at: go.elapsed(),
                        stat,
                    })
                }
                Ok(_) => {}
                Err(e) => return Err(format!("subscriber connection: {e}")),
            }
            // The victim may exit before the notifications arrive (they
            // are sent once the reaper reports back); allow a grace period.
            if hog_gone.is_none() {
                if let Ok(Some(st)) = self.hog.0.try_wait() {
                    hog_gone = Some((st, Instant::now()));
                }
            }
            if let Some((st, at)) = hog_gone {
                if at.elapsed() > Duration::from_secs(3) {
                    return Err(format!(
                        "the hog died ({st}) and no kill notification followed; \
                         memcg oom_control:\n{}\ndaemon log:\n{}",
                        read_trim(&self.memcg.file("memory.oom_control")),
                        self.d.log_text()
                    ));
                }
            }
        }
        Err(format!(
            "no kill within {timeout:?}; memcg usage {} MiB, oom_kill {:?}, pressure:\n{}\n\
             daemon log:\n{}",
            read_trim(&self.memcg.file("memory.usage_in_bytes"))
                .parse::<u64>()
                .unwrap_or(0)
                >> 20,
            self.memcg_oom_kills(),
            read_trim(&self.pressure_file),
            self.d.log_text()
        ))
    }

    /// The kernel OOM killer's kills in the group.
    pub fn memcg_oom_kills(&self) -> Option<u64> {
        keyed(
            &read_trim(&self.memcg.file("memory.oom_control")),
            "oom_kill",
        )
    }
}

/// Clients sending PROCPRIO as fast as they can, each from its own thread,
/// for `pids` in turn with adj cycling over 100..=800 (an AMS re-ranking
/// its processes); until [`Storm::stop`].
pub struct Storm {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl Storm {
    pub fn start(clients: Vec<Arc<Client>>, pids: Vec<i32>) -> Storm {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let pids = Arc::new(pids);
        let threads = clients
            .into_iter()
            .enumerate()
            .map(|(k, c)| {
                let (stop, sent, pids) = (stop.clone(), sent.clone(), pids.clone());
                std::thread::spawn(move || {
                    let mut i = k;
                    while !stop.load(Ordering::Relaxed) {
                        let pid = pids[i % pids.len()];
                        let adj = 100 + (i * 7 % 701) as i32;
                        if c.send(&Cmd::ProcPrio(prio(pid, adj))).is_err() {
                            break;
                        }
                        sent.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                })
            })
            .collect();
        Storm {
            stop,
            sent,
            threads,
        }
    }

    /// Packets sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops the senders; returns the packets sent.
    pub fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        self.sent.load(Ordering::Relaxed)
    }
}
