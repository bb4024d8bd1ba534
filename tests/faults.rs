//! Fault injection: the daemon meets broken files, misbehaving clients, a
//! signal that cannot be sent, a config file swapped under it and a full
//! process table, and after each fault it still kills the right process
//! (a real registered child, killed by a real SIGKILL).
//!
//! In-process daemons (the `InProc` harness: injected pressure events over
//! a copied fixture proc root, `<pid>` symlinks to the real /proc). Root
//! only; each test skips visibly otherwise.

mod common;

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::inproc::InProc;
use common::*;
use lmkd::client::Client;
use lmkd::proto::{self, Command as Cmd};

const T: Duration = Duration::from_secs(5);

/// Raises fresh pressure until a kill comes; asserts it is `want` and that
/// `want` really died of SIGKILL.
///
/// A kill is announced once the reaper has named the victim, up to
/// `kill_timeout_ms` (500 ms here) after the signal: pressure is raised
/// again only while `want` is still running, or a late announcement would
/// meet a second kill (seen in CI). (A wrong victim keeps it raising, and
/// the first kill seen says so.)
fn expect_kill(d: &InProc, c: &Client, want: &mut Sleeper, what: &str) {
    let mut got = vec![];
    for _ in 0..20 {
        if matches!(want.0.try_wait(), Ok(None)) {
            d.bump_pressure();
            d.raise_complete();
        }
        got = kills(c, Duration::from_millis(300));
        if !got.is_empty() {
            break;
        }
    }
    assert_eq!(
        got.first(),
        Some(&want.pid()),
        "{what}: the kill did not go to pid {} (adj {}); log:\n{}",
        want.pid(),
        want.oom_adj(),
        logcap::text()
    );
    assert_eq!(got.len(), 1, "{what}: more than one kill: {got:?}");
    let st = wait_exit(want).unwrap_or_else(|| panic!("{what}: pid {} still alive", want.pid()));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(libc::SIGKILL), "{what}: ended by {st}");
}

fn wait_exit(s: &mut Sleeper) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + T;
    while Instant::now() < end {
        if let Ok(Some(st)) = s.0.try_wait() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

fn running(s: &mut Sleeper) -> bool {
    s.0.try_wait().unwrap().is_none()
}

/// Registers each sleeper at `base - 10 * i` over `c`.
fn register(c: &Client, sleepers: &[Sleeper], base: i32) {
    for (i, s) in sleepers.iter().enumerate() {
        c.send(&Cmd::ProcPrio(prio(s.pid(), base - 10 * i as i32)))
            .unwrap();
    }
    Daemon::sync(c);
}

// ---- /proc files that break mid-run -------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Damage {
    /// Cut in the middle of a line.
    Truncated,
    /// Every digit in the second half replaced by a letter.
    Garbled,
    Empty,
    /// Unlinked, then linked back.
    Vanished,
}

fn damaged(good: &str, how: Damage) -> String {
    match how {
        Damage::Truncated => {
            let cut = good.len() / 2;
            // Inside a line, not at a line break.
            let cut = if good.as_bytes()[cut - 1] == b'\n' {
                cut + 1
            } else {
                cut
            };
            good[..cut].to_string()
        }
        Damage::Garbled => {
            let half = good.len() / 2;
            let tail: String = good[half..]
                .chars()
                .map(|ch| if ch.is_ascii_digit() { 'q' } else { ch })
                .collect();
            format!("{}{tail}", &good[..half])
        }
        Damage::Empty | Damage::Vanished => String::new(),
    }
}

/// One snapshot file (`meminfo`, `vmstat`, `zoneinfo` under the proc root,
/// or the PSI file) goes bad in each way in turn while pressure events
/// arrive. During the fault the event is either skipped (and the failure
/// logged, naming the file) or decided on good data (the right victim);
/// once the file is good again the next event kills the next victim. The
/// first fault is in place before the first event, so zoneinfo (read at
/// start-up, then after every evaluation) is read while broken from the
/// first evaluation on too.
fn snapshot_file_fault(file: &str) {
    let test = format!("snapshot_file_{file}_breaks_mid_run");
    if !need_root(&test) {
        return;
    }
    logcap::install();
    let mut victims: Vec<Sleeper> = (0..8).map(|_| Sleeper::new()).collect();
    let bystander = Sleeper::new();
    let mut pids: Vec<i32> = victims.iter().map(Sleeper::pid).collect();
    pids.push(bystander.pid());
    let d = InProc::start(&format!("fault-{file}"), "small", &pids, |cfg, _| {
        cfg.kill_timeout_ms = 500
    });
    let path = if file == "pressure" {
        d.dir.path("pressure")
    } else {
        d.dir.path("proc").join(file)
    };
    let c = d.connect();
    subscribe_all(&c);
    register(&c, &victims, 950);
    c.send(&Cmd::ProcPrio(prio(bystander.pid(), 0))).unwrap();
    Daemon::sync(&c);

    let label = match file {
        "pressure" => "memory pressure",
        f => f,
    };
    let mut next = 0;
    let mut skipped = 0;
    for how in [
        Damage::Truncated,
        Damage::Garbled,
        Damage::Empty,
        Damage::Vanished,
    ] {
        // The previous round's failures may have used up this second's
        // log budget for snapshot failures (flood control): start a new one.
        std::thread::sleep(Duration::from_millis(1100));
        // Fresh pressure first: a kill is due unless the event is skipped.
        d.bump_pressure();
        let good = fs::read_to_string(&path).unwrap();
        let failures_before = snapshot_failures();
        let keep = path.with_extension("kept");
        if matches!(how, Damage::Vanished) {
            fs::hard_link(&path, &keep).unwrap();
            fs::remove_file(&path).unwrap();
        } else {
            // In place (O_TRUNC, same inode): the daemon keeps it open.
            fs::write(&path, damaged(&good, how)).unwrap();
        }
        // One event: without PSI figures every complete event may kill
        // (the stall since the last kill cannot be measured), so three
        // events killed three times whenever a loaded machine delivered
        // them apart instead of as one eventfd count.
        d.raise_complete();
        let during = kills(&c, Duration::from_millis(400));
        assert!(
            during.len() <= 1,
            "{file} {how:?}: several kills on one broken file: {during:?}"
        );
        if let Some(&pid) = during.first() {
            assert_eq!(
                pid,
                victims[next].pid(),
                "{file} {how:?}: a kill on a broken file went to the wrong process; log:\n{}",
                logcap::text()
            );
            next += 1;
        } else if !matches!(how, Damage::Vanished) {
            // Nothing killed: the event must have been skipped, and said so.
            assert!(
                eventually(T, || snapshot_failures() > failures_before),
                "{file} {how:?}: no kill and no snapshot failure logged; log:\n{}",
                logcap::text()
            );
            let text = logcap::text();
            let named = text
                .lines()
                .filter(|l| l.contains(FAILED))
                .skip(failures_before)
                .any(|l| l.contains(label));
            assert!(
                named,
                "{file} {how:?}: the failure does not name {label}:\n{text}"
            );
            skipped += 1;
        }
        // Good again. The vanished file comes back as itself (the daemon
        // reads through the descriptor it opened at start-up, which the
        // unlink never touched).
        if matches!(how, Damage::Vanished) {
            fs::rename(&keep, &path).unwrap();
        } else {
            fs::write(&path, &good).unwrap();
        }
        expect_kill(&d, &c, &mut victims[next], &format!("{file} after {how:?}"));
        next += 1;
    }
    eprintln!("{file}: {skipped} of 4 broken reads skipped their event, {next} kills");
    let mut b = bystander;
    assert!(running(&mut b), "the adj 0 bystander was killed");
    assert_eq!(kill_count(&c, -1000, 1000), next as i32);
}

const FAILED: &str = "memory snapshot failed";

/// Snapshot failures logged so far (by every in-process daemon of this
/// binary: the log capture is shared).
fn snapshot_failures() -> usize {
    logcap::text().matches(FAILED).count()
}

#[test]
fn snapshot_file_meminfo_breaks_mid_run() {
    snapshot_file_fault("meminfo");
}

#[test]
fn snapshot_file_vmstat_breaks_mid_run() {
    snapshot_file_fault("vmstat");
}

#[test]
fn snapshot_file_zoneinfo_breaks_mid_run() {
    snapshot_file_fault("zoneinfo");
}

#[test]
fn snapshot_file_pressure_breaks_mid_run() {
    snapshot_file_fault("pressure");
}

/// A victim's own /proc entry disappears between registration and the
/// kill (the link in the fixture root goes): it cannot be described, so
/// it is passed over and the next one is killed.
#[test]
fn victim_without_proc_entry_is_passed_over() {
    let test = "victim_without_proc_entry_is_passed_over";
    if !need_root(test) {
        return;
    }
    logcap::install();
    let mut ghost = Sleeper::new();
    let mut next = Sleeper::new();
    let d = InProc::start(
        "fault-noproc",
        "small",
        &[ghost.pid(), next.pid()],
        |_, _| {},
    );
    let c = d.connect();
    subscribe_all(&c);
    c.send(&Cmd::ProcPrio(prio(ghost.pid(), 950))).unwrap();
    c.send(&Cmd::ProcPrio(prio(next.pid(), 900))).unwrap();
    Daemon::sync(&c);
    d.unlink(ghost.pid());
    expect_kill(&d, &c, &mut next, "no /proc entry");
    assert!(running(&mut ghost), "the process without /proc entry died");
}

// ---- clients ------------------------------------------------------------------

/// A subscriber that never reads: its queue fills, every later send to it
/// fails at once (never blocks), the drop is logged, and the daemon keeps
/// answering the others and killing.
#[test]
fn subscriber_that_never_reads_does_not_stop_kills() {
    let test = "subscriber_that_never_reads_does_not_stop_kills";
    if !need_root(test) {
        return;
    }
    logcap::install();
    let mut victims: Vec<Sleeper> = (0..3).map(|_| Sleeper::new()).collect();
    let pids: Vec<i32> = victims.iter().map(Sleeper::pid).collect();
    let d = InProc::start("fault-lazy", "small", &pids, |cfg, _| {
        cfg.kill_timeout_ms = 500
    });
    // The lazy one: subscribes, then fills its own receive queue with
    // replies it never reads (a connected socket queues only a few).
    let lazy = Remote::connect(&d.dir.path("lmkd.sock"));
    lazy.send(&Cmd::Subscribe {
        event: proto::event::KILL,
    });
    lazy.send(&Cmd::Subscribe {
        event: proto::event::STAT,
    });
    let get = Cmd::GetKillCnt {
        min_adj: -1000,
        max_adj: 1000,
    };
    for _ in 0..600 {
        lazy.send(&get);
    }
    let c = d.connect();
    subscribe_all(&c);
    register(&c, &victims, 950);
    let t0 = Instant::now();
    for v in &mut victims {
        expect_kill(&d, &c, v, "with a subscriber that never reads");
    }
    let took = t0.elapsed();
    logcap::wait_for(&format!("subscriber pid {} is not reading", lazy.pid), T);
    // Still answering, on a new connection too.
    Daemon::sync(&c);
    let c2 = d.connect();
    Daemon::sync(&c2);
    assert_eq!(kill_count(&c, -1000, 1000), 3);
    eprintln!(
        "lazy subscriber: 3 kills in {:.0} ms; {} drop lines",
        took.as_secs_f64() * 1e3,
        logcap::text().matches("is not reading").count()
    );
}

/// Clients that go away mid-command: half a PROCPRIO in one packet then
/// close; a request whose reply is still pending when the client closes;
/// a close straight after connecting. Repeated well past the three
/// connection slots: a leaked slot would lock the next client out.
#[test]
fn clients_that_disconnect_mid_command_leave_nothing_behind() {
    let test = "clients_that_disconnect_mid_command_leave_nothing_behind";
    if !need_root(test) {
        return;
    }
    logcap::install();
    let mut victim = Sleeper::new();
    let d = InProc::start("fault-hangup", "small", &[victim.pid()], |_, _| {});
    let sock = d.dir.path("lmkd.sock");
    let full = procprio3(victim.pid(), 10_000, 950);
    let mut pending = [0u8; proto::MAX_PACKET];
    let n = proto::encode(
        &Cmd::GetKillCnt {
            min_adj: -1000,
            max_adj: 1000,
        },
        &mut pending,
    );
    for round in 0..30 {
        let k = connect_retry(&sock);
        match round % 3 {
            // Half the bytes of a PROCPRIO, as one packet.
            0 => k.send_raw(&full[..full.len() / 2]).unwrap(),
            // A request, closed before the reply is read.
            1 => k.send_raw(&pending[..n]).unwrap(),
            // Nothing at all.
            _ => {}
        }
        drop(k);
    }
    // Half a PROCPRIO registered nothing.
    assert_ne!(victim.oom_adj(), 950, "half a PROCPRIO was applied");
    let c = connect_retry(&sock);
    Daemon::sync(&c);
    subscribe_all(&c);
    c.send(&Cmd::ProcPrio(prio(victim.pid(), 950))).unwrap();
    Daemon::sync(&c);
    assert_eq!(victim.oom_adj(), 950);
    expect_kill(&d, &c, &mut victim, "after hang-ups");
    assert!(
        logcap::text().contains("malformed packet"),
        "half a PROCPRIO was not reported as malformed"
    );
}

/// Connects, waiting out the moment a closed client's slot is not yet
/// freed (the daemon frees it on the hang-up event).
fn connect_retry(sock: &Path) -> Client {
    let end = Instant::now() + T;
    loop {
        if let Ok(c) = Client::connect(sock) {
            // A refused connection is accepted then closed: prove it serves.
            if c.request(
                &Cmd::GetKillCnt {
                    min_adj: -1000,
                    max_adj: 1000,
                },
                Duration::from_millis(500),
            )
            .is_ok()
            {
                return c;
            }
        }
        assert!(
            Instant::now() < end,
            "no connection slot came free; log:\n{}",
            logcap::text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- the signal fails -----------------------------------------------------------

/// Removes CAP_KILL from the calling thread's effective and permitted sets
/// (capabilities are per thread; threads it starts later inherit them).
fn drop_cap_kill_on_this_thread() -> bool {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    const CAP_KILL: u32 = 5;
    let mut h = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut d = [Data::default(); 2];
    // SAFETY: header and two data structs, as capget/capset v3 expect.
    unsafe {
        if libc::syscall(libc::SYS_capget, &mut h as *mut Header, d.as_mut_ptr()) != 0 {
            return false;
        }
        d[0].effective &= !(1 << CAP_KILL);
        d[0].permitted &= !(1 << CAP_KILL);
        libc::syscall(libc::SYS_capset, &mut h as *mut Header, d.as_ptr()) == 0
    }
}

/// `pidfd_send_signal` fails for the chosen victim (here EPERM: the
/// daemon's threads lack CAP_KILL and the victim runs as another user; a
/// victim reaped between selection and signal gives ESRCH on the same
/// path). The failure is logged, the record is dropped (never retried) and
/// the next victim is killed.
#[test]
fn failed_signal_drops_the_record_and_kills_the_next_victim() {
    let test = "failed_signal_drops_the_record_and_kills_the_next_victim";
    if !need_root(test) {
        return;
    }
    logcap::install();
    let mut foreign = {
        let mut cmd = Command::new("sleep");
        cmd.arg("100000")
            .uid(65534)
            .gid(65534)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Sleeper(
            die_with_us(&mut cmd)
                .spawn()
                .expect("spawn sleep as uid 65534"),
        )
    };
    let mut next = Sleeper::new();
    let capped = std::sync::Arc::new(AtomicBool::new(false));
    let flag = capped.clone();
    let d = InProc::start(
        "fault-signal",
        "small",
        &[foreign.pid(), next.pid()],
        move |cfg, _| {
            // Long: the next kill must not wait for a victim that was
            // never signalled.
            cfg.kill_timeout_ms = 60_000;
            flag.store(drop_cap_kill_on_this_thread(), Ordering::SeqCst);
        },
    );
    if !capped.load(Ordering::SeqCst) {
        skip(test, "capset could not drop CAP_KILL on the daemon thread");
        return;
    }
    let c = d.connect();
    subscribe_all(&c);
    c.send(&Cmd::ProcPrio(prio(foreign.pid(), 950))).unwrap();
    c.send(&Cmd::ProcPrio(prio(next.pid(), 900))).unwrap();
    Daemon::sync(&c);
    assert_eq!(foreign.oom_adj(), 950);
    let failed = format!("kill of {} failed: pidfd_send_signal", foreign.pid());
    d.bump_pressure();
    d.raise_complete();
    logcap::wait_for(&failed, T);
    expect_kill(&d, &c, &mut next, "after a failed signal");
    // More pressure: the dropped record is never tried again.
    for _ in 0..3 {
        d.bump_pressure();
        d.raise_complete();
        assert!(kills(&c, Duration::from_millis(200)).is_empty());
    }
    assert_eq!(logcap::text().matches(&failed).count(), 1, "retried");
    assert!(running(&mut foreign));
    assert_eq!(kill_count(&c, 950, 950), 0, "a failed kill was counted");
    assert_eq!(kill_count(&c, 900, 900), 1);
}

// ---- the clock --------------------------------------------------------------

/// Wall-clock jumps (NTP, the user setting the time) cannot move the kill
/// path: nothing outside log timestamps reads CLOCK_REALTIME or
/// `SystemTime`, and the poll timer runs on CLOCK_MONOTONIC. (A test that
/// drives the core with a fake clock needs a `step(input, now)` entry
/// point, which the core does not have yet.)
#[test]
fn kill_path_never_reads_the_wall_clock() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = vec![];
    let mut files = vec![];
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    assert!(files.len() > 10, "found only {files:?}");
    // Log timestamps (logging.rs) and the command-line tools under bin/
    // may use wall time; nothing the daemon decides with may.
    let allowed = |p: &Path| p.ends_with("logging.rs") || p.starts_with(src.join("bin"));
    for p in &files {
        if allowed(p) {
            continue;
        }
        let text = fs::read_to_string(p).unwrap();
        for (no, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for bad in [
                "CLOCK_REALTIME",
                "SystemTime",
                "gettimeofday",
                "libc::time(",
                "CLOCK_TAI",
            ] {
                if code.contains(bad) {
                    offenders.push(format!("{}:{}: {}", p.display(), no + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "wall-clock reads outside logging:\n{}",
        offenders.join("\n")
    );
    let daemon = fs::read_to_string(src.join("daemon.rs")).unwrap();
    assert!(
        daemon.contains("ClockId::CLOCK_MONOTONIC"),
        "the poll timer is not on CLOCK_MONOTONIC"
    );
}

// ---- the config file swapped while being read ------------------------------------

/// A writer renames new config files into place as fast as it can,
/// alternating a good file and a bad one (which would also take root out
/// of allowed_uids and turn on kill_heaviest_task before failing), while
/// UPDATE_PROPS arrives again and again. Every reply is 0 or -1, the bad
/// file never lands even in part (root keeps being served on the same
/// connection, which checks credentials on every packet), and the last
/// good file is in force: its kill_heaviest_task picks the heavy process
/// of two at the same adj, where the default would take the older one.
#[test]
fn config_replaced_while_being_read_is_all_or_nothing() {
    let test = "config_replaced_while_being_read_is_all_or_nothing";
    if !need_root(test) {
        return;
    }
    logcap::install();
    let mut light = Sleeper::new();
    let mut heavy = Sleeper::heavy(48);
    let (tx, rx) = std::sync::mpsc::channel();
    let d = InProc::start(
        "fault-config",
        "small",
        &[light.pid(), heavy.pid()],
        move |cfg, opts| {
            let path = cfg.startup.socket_path.with_file_name("lmkd.toml");
            let head = format!(
                "socket_path = {:?}\nproc_root = {:?}\npsi_path = {:?}\nmax_procs = {}\n",
                cfg.startup.socket_path,
                cfg.startup.proc_root,
                cfg.startup.psi_path,
                cfg.startup.max_procs
            );
            fs::write(&path, format!("{head}kill_heaviest_task = false\n")).unwrap();
            opts.config_path = Some(path.clone());
            tx.send((path, head)).unwrap();
        },
    );
    let (path, head) = rx.recv().unwrap();
    let good = format!("{head}allowed_uids = [0, 1000]\nkill_heaviest_task = false\n");
    let bad = format!("{head}allowed_uids = [1000]\nkill_heaviest_task = true\nno_such_key = 1\n");
    let stop = AtomicBool::new(false);
    let c = d.connect();
    subscribe_all(&c);
    let (mut ok, mut refused) = (0, 0);
    let mut renames = 0u64;
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let tmp = path.with_extension("new");
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let text = if n % 2 == 0 { &good } else { &bad };
                fs::write(&tmp, text).unwrap();
                fs::rename(&tmp, &path).unwrap();
                n += 1;
            }
            n
        });
        // At least 300 reloads, and on until both files were seen (a busy
        // machine can leave the writer unscheduled for a while).
        let mut i = 0;
        while i < 300 || ((ok == 0 || refused == 0) && i < 20_000) {
            i += 1;
            if i % 50 == 0 {
                std::thread::yield_now();
            }
            match c.request(&Cmd::UpdateProps, T) {
                Ok(0) => ok += 1,
                Ok(-1) => refused += 1,
                other => {
                    stop.store(true, Ordering::Relaxed);
                    panic!(
                        "UPDATE_PROPS #{i} answered {other:?} (a half-applied config would \
                         refuse root); log:\n{}",
                        logcap::text()
                    )
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        renames = writer.join().unwrap();
    });
    eprintln!("config swap: {renames} renames, {ok} reloads applied, {refused} refused");
    assert!(
        ok > 0 && refused > 0,
        "{ok} good and {refused} refused reloads: the race was not exercised"
    );
    // The final file.
    let last = format!("{head}allowed_uids = [0, 1000]\nkill_heaviest_task = true\n");
    let tmp = path.with_extension("new");
    fs::write(&tmp, last).unwrap();
    fs::rename(&tmp, &path).unwrap();
    assert_eq!(c.request(&Cmd::UpdateProps, T).unwrap(), 0);
    // Root is still allowed on a new connection too.
    let c2 = d.connect();
    Daemon::sync(&c2);
    drop(c2);
    // Same adj; the light one is older (the default choice).
    c.send(&Cmd::ProcPrio(prio(light.pid(), 900))).unwrap();
    Daemon::sync(&c);
    c.send(&Cmd::ProcPrio(prio(heavy.pid(), 900))).unwrap();
    Daemon::sync(&c);
    expect_kill(&d, &c, &mut heavy, "final config (kill_heaviest_task)");
    assert!(running(&mut light));
}

// ---- the process table full ---------------------------------------------------

/// Children that only wait to be killed (forked, no exec: cheap by the
/// thousand). Killed and reaped on drop.
struct Pausers(Vec<i32>);

impl Pausers {
    fn spawn(n: usize) -> Pausers {
        let mut pids = Vec::with_capacity(n);
        for _ in 0..n {
            // SAFETY: the child calls only async-signal-safe functions.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                // SAFETY: child side of fork: prctl, pause and _exit only.
                unsafe {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    loop {
                        libc::pause();
                    }
                }
            }
            pids.push(pid);
        }
        Pausers(pids)
    }
}

impl Drop for Pausers {
    fn drop(&mut self) {
        for &pid in &self.0 {
            // SAFETY: our own children.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

/// A 64-slot table under a registration storm: three clients register
/// 1000 processes between them while a record registered before the storm
/// is updated. Refusals are logged with the reason; the earlier records
/// keep working (the update lands); removing the storm's records frees
/// exactly the slots they held (62 new ones fit, the next is refused); and
/// kills follow adj order over the records really in the table.
#[test]
fn full_process_table_under_a_registration_storm() {
    let test = "full_process_table_under_a_registration_storm";
    if !need_root(test) {
        return;
    }
    logcap::install();
    const CAP: usize = 64;
    let mut early_v = Sleeper::new();
    let mut early_w = Sleeper::new();
    let storm = Pausers::spawn(1000);
    let d = InProc::start(
        "fault-table",
        "small",
        &[early_v.pid(), early_w.pid()],
        |cfg, _| {
            cfg.startup.max_procs = CAP as u32;
            cfg.kill_timeout_ms = 500;
        },
    );
    for &pid in &storm.0 {
        d.link(pid);
    }
    let c = d.connect();
    subscribe_all(&c);
    c.send(&Cmd::ProcPrio(prio(early_v.pid(), 100))).unwrap();
    c.send(&Cmd::ProcPrio(prio(early_w.pid(), 900))).unwrap();
    Daemon::sync(&c);

    // Three clients: two in processes of their own, and `c`.
    let sock = d.dir.path("lmkd.sock");
    let clients: Vec<Remote> = (0..2).map(|_| Remote::connect(&sock)).collect();
    let adj_of = |i: usize| 300 + (i as i32 % 500);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for (k, r) in clients.iter().enumerate() {
            let pids = &storm.0;
            s.spawn(move || {
                for (i, &pid) in pids.iter().enumerate().skip(k).step_by(3) {
                    r.send(&Cmd::ProcPrio(prio(pid, adj_of(i))));
                }
                r.sync();
            });
        }
        for (n, (i, &pid)) in storm.0.iter().enumerate().skip(2).step_by(3).enumerate() {
            c.send(&Cmd::ProcPrio(prio(pid, adj_of(i)))).unwrap();
            if n == 100 {
                // The earlier record is updated in the middle of the storm.
                c.send(&Cmd::ProcPrio(prio(early_v.pid(), 1000))).unwrap();
            }
        }
        Daemon::sync(&c);
    });
    let storm_ms = t0.elapsed().as_millis();
    assert_eq!(
        early_v.oom_adj(),
        1000,
        "an existing record's update was lost"
    );
    let full = format!("process table is full ({CAP} entries)");
    logcap::wait_for(&full, T);

    // Every storm record goes (refused ones are simply unknown).
    for (k, r) in clients.iter().enumerate() {
        for &pid in storm.0.iter().skip(k).step_by(3) {
            r.send(&Cmd::ProcRemove { pid });
        }
        r.sync();
    }
    for &pid in storm.0.iter().skip(2).step_by(3) {
        c.send(&Cmd::ProcRemove { pid }).unwrap();
    }
    Daemon::sync(&c);
    // Exactly CAP - 2 new records fit beside the two early ones.
    let fillers = Pausers::spawn(CAP - 3);
    for &pid in &fillers.0 {
        d.link(pid);
        c.send(&Cmd::ProcPrio(prio(pid, 300))).unwrap();
    }
    let mut last = Sleeper::new();
    let mut refused = Sleeper::new();
    d.link(last.pid());
    d.link(refused.pid());
    c.send(&Cmd::ProcPrio(prio(last.pid(), 990))).unwrap();
    Daemon::sync(&c);
    // The storm's refusals used up this second's log budget for their kind
    // (flood control); a refusal after the window is written again.
    std::thread::sleep(Duration::from_millis(1200));
    let fulls = logcap::text().matches(&full).count();
    c.send(&Cmd::ProcPrio(prio(refused.pid(), 999))).unwrap();
    Daemon::sync(&c);
    logcap::wait_for(&format!("for pid {} refused: {full}", refused.pid()), T);
    assert!(logcap::text().matches(&full).count() > fulls);

    // Kills in adj order over what is really in the table.
    expect_kill(
        &d,
        &c,
        &mut early_v,
        "table: adj 1000 (updated in the storm)",
    );
    expect_kill(&d, &c, &mut last, "table: adj 990 (the last slot)");
    expect_kill(
        &d,
        &c,
        &mut early_w,
        "table: adj 900 (registered before the storm)",
    );
    assert!(running(&mut refused), "a refused registration was killed");
    eprintln!(
        "registration storm: 1000 PROCPRIO from 3 clients in {storm_ms} ms into {CAP} slots; {} refusal lines",
        logcap::text().matches(&full).count()
    );
}
