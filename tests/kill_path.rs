//! The kill path end to end, in-process: injected pressure events over
//! recorded snapshots, real child processes as victims.

mod common;

use std::time::{Duration, Instant};

use common::inproc::InProc;
use common::*;
use lmkd::client::Client;
use lmkd::proto::Command as Cmd;

const T: Duration = Duration::from_secs(5);

#[test]
fn dry_run_kills_nobody() {
    if !need_root("dry_run_kills_nobody") {
        return;
    }
    common::logcap::install();
    let s = Sleeper::new();
    let d = InProc::start("dryrun", "small", &[s.pid()], |_, o| o.dry_run = true);
    let c = d.connect();
    subscribe_all(&c);
    c.send(&Cmd::ProcPrio(prio(s.pid(), 950))).unwrap();
    Daemon::sync(&c);
    d.raise_complete();
    assert!(
        kills(&c, Duration::from_millis(800)).is_empty(),
        "dry run sent a kill notification"
    );
    let mut s = s;
    assert!(
        s.0.try_wait().unwrap().is_none(),
        "dry run killed the process"
    );
    assert_eq!(kill_count(&c, -1000, 1000), 0);
    // Positive check: the daemon did choose this process, it only held back.
    let needle = format!("({})", s.pid());
    assert!(
        common::eventually(T, || common::logcap::text()
            .lines()
            .any(|l| l.contains("would kill") && l.contains(&needle))),
        "no 'would kill' line for {}:\n{}",
        s.pid(),
        common::logcap::text()
    );
}

#[test]
fn kills_from_the_top_in_adj_order_and_only_registered_processes() {
    if !need_root("kills_from_the_top_in_adj_order_and_only_registered_processes") {
        return;
    }
    let high = Sleeper::new();
    let mid = Sleeper::new();
    let fg = Sleeper::new();
    let unregistered = Sleeper::new();
    let pids = [high.pid(), mid.pid(), fg.pid(), unregistered.pid()];
    let d = InProc::start("order", "small", &pids, |cfg, _| cfg.kill_timeout_ms = 2000);
    let c = d.connect();
    subscribe_all(&c);
    c.send(&Cmd::ProcPrio(prio(high.pid(), 950))).unwrap();
    c.send(&Cmd::ProcPrio(prio(mid.pid(), 600))).unwrap();
    c.send(&Cmd::ProcPrio(prio(fg.pid(), 0))).unwrap();
    Daemon::sync(&c);
    // Several events in a row: the most expendable process goes first.
    // (One kill at a time is pinned by the frozen-victim test below.)
    for _ in 0..5 {
        d.raise_complete();
    }
    let first = kills(&c, Duration::from_millis(1500));
    assert_eq!(
        first.first(),
        Some(&high.pid()),
        "the adj 950 process was not killed first"
    );
    assert!(!first.contains(&unregistered.pid()));
    // Keep the pressure up: the next kills walk down the adj ladder.
    let mut seen = first.clone();
    for _ in 0..20 {
        if seen.len() >= 3 {
            break;
        }
        d.bump_pressure();
        d.raise_complete();
        seen.extend(kills(&c, Duration::from_millis(300)));
    }
    assert_eq!(
        seen,
        vec![high.pid(), mid.pid(), fg.pid()],
        "kills out of adj order or repeated"
    );
    let mut u = unregistered;
    assert!(
        u.0.try_wait().unwrap().is_none(),
        "a process outside the table was killed"
    );
    assert_eq!(kill_count(&c, 900, 1000), 1);
    assert_eq!(kill_count(&c, -1000, 1000), 3);
}

#[test]
fn partial_pressure_respects_the_minimum_adj() {
    if !need_root("partial_pressure_respects_the_minimum_adj") {
        return;
    }
    // The "small" fixture is short of swap but above the min watermark, so
    // the thrashing rows below may not reach below the perceptible level
    // (201): with only a foreground (adj 0) and a perceptible (adj 200)
    // process registered, neither may die. (Direct reclaim without
    // thrashing is the next test's case.)
    let fg = Sleeper::new();
    let perceptible = Sleeper::new();
    let d = InProc::start("minadj", "small", &[fg.pid(), perceptible.pid()], |_, _| {});
    let c = d.connect();
    subscribe_all(&c);
    c.send(&Cmd::ProcPrio(prio(fg.pid(), 0))).unwrap();
    c.send(&Cmd::ProcPrio(prio(perceptible.pid(), 200)))
        .unwrap();
    Daemon::sync(&c);
    // Swap is low and file pages refault past the thrashing limit (100%)
    // but short of the critical one (300%), so each partial event reaches a
    // kill decision (low swap and thrashing, min adj 201); only the minimum
    // adj holds it back.
    // The first evaluation only takes the counters' baseline.
    d.raise_partial();
    std::thread::sleep(Duration::from_millis(200));
    d.bump_thrashing(180);
    for _ in 0..3 {
        d.bump_pressure();
        d.raise_partial();
        std::thread::sleep(Duration::from_millis(100));
    }
    let k = kills(&c, Duration::from_millis(500));
    assert!(
        k.is_empty(),
        "a partial event killed an important process: {k:?}"
    );
    // Positive control: the same pressure does kill once something at or
    // above the minimum adj is registered, so the silence above was the
    // minimum adj at work and not an event that decided nothing.
    let cached = Sleeper::new();
    d.link(cached.pid());
    c.send(&Cmd::ProcPrio(prio(cached.pid(), 900))).unwrap();
    Daemon::sync(&c);
    let k = first_kills(&d, &c, 10, |d| d.bump_thrashing(180));
    assert_eq!(
        k,
        vec![cached.pid()],
        "the same partial pressure killed nothing at adj 900"
    );
}

/// Partial events, each after `bump`, until one leads to kills (at most
/// `rounds` events); those kills.
fn first_kills(d: &InProc, c: &Client, rounds: usize, bump: impl Fn(&InProc)) -> Vec<i32> {
    for _ in 0..rounds {
        bump(d);
        d.raise_partial();
        let k = kills(c, Duration::from_millis(150));
        if !k.is_empty() {
            return k;
        }
    }
    Vec::new()
}

/// Ours (`direct_reclaim_below_min`): the "small" fixture is short of
/// swap with free memory above every summed mark, and the kernel reclaims
/// directly between re-checks: that is the kernel's own "below min", so
/// the daemon kills down to adj 0 and its kill line says so. With the key
/// off (lmkd's rows) the same pressure kills nobody.
#[test]
fn direct_reclaim_with_swap_low_kills_down_to_adj_zero() {
    if !need_root("direct_reclaim_with_swap_low_kills_down_to_adj_zero") {
        return;
    }
    common::logcap::install();
    for ours in [false, true] {
        let fg = Sleeper::new();
        let tag = if ours { "direct-ours" } else { "direct-lmkd" };
        let d = InProc::start(tag, "small", &[fg.pid()], move |cfg, _| {
            cfg.direct_reclaim_below_min = ours;
        });
        let c = d.connect();
        subscribe_all(&c);
        c.send(&Cmd::ProcPrio(prio(fg.pid(), 0))).unwrap();
        Daemon::sync(&c);
        // The first evaluation only takes the counters' baseline.
        d.raise_partial();
        std::thread::sleep(Duration::from_millis(200));
        let k = first_kills(&d, &c, 5, InProc::bump_pressure);
        if ours {
            assert_eq!(
                k,
                vec![fg.pid()],
                "direct reclaim with swap low killed nothing"
            );
            let line = format!("({}), uid", fg.pid());
            let log = common::logcap::wait_for(&line, Duration::from_secs(2));
            let kill = log.lines().find(|l| l.contains(&line)).unwrap();
            assert!(
                kill.contains("oom_score_adj 0 ")
                    && kill.contains("reason: direct reclaim and swap is low ("),
                "{kill}"
            );
        } else {
            assert!(k.is_empty(), "lmkd's rows killed adj 0 above min: {k:?}");
        }
    }
}

/// A cgroup v1 freezer group of our own, thawed and removed on drop.
struct Freezer(std::path::PathBuf);

impl Freezer {
    fn new(tag: &str) -> Option<Freezer> {
        let base = std::path::Path::new("/sys/fs/cgroup/freezer");
        if !base.join("cgroup.procs").exists() {
            return None;
        }
        let p = base.join(format!("lmkd-test-{tag}-{}", std::process::id()));
        std::fs::create_dir(&p).ok()?;
        Some(Freezer(p))
    }
    /// A group holding `pids`, frozen: they cannot run, so cannot exit.
    fn frozen(tag: &str, pids: &[i32]) -> Option<Freezer> {
        let f = Freezer::new(tag)?;
        for &pid in pids {
            f.add(pid);
        }
        f.set("FROZEN");
        Some(f)
    }
    fn add(&self, pid: i32) {
        std::fs::write(self.0.join("cgroup.procs"), pid.to_string()).unwrap();
    }
    fn set(&self, state: &str) {
        std::fs::write(self.0.join("freezer.state"), state).unwrap();
    }
}

impl Drop for Freezer {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("freezer.state"), "THAWED");
        let end = Instant::now() + T;
        while std::fs::remove_dir(&self.0).is_err() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn no_second_kill_until_the_victim_exits_or_kill_timeout() {
    if !need_root("no_second_kill_until_the_victim_exits_or_kill_timeout") {
        return;
    }
    // A frozen victim cannot exit until thawed, so its pidfd stays quiet.
    // (The freezer is declared last so it thaws first when dropped.)
    let stuck = Sleeper::new();
    let next = Sleeper::new();
    let Some(_freezer) = Freezer::frozen("onekill", &[stuck.pid()]) else {
        skip(
            "no_second_kill_until_the_victim_exits_or_kill_timeout",
            "no cgroup v1 freezer",
        );
        return;
    };
    let d = InProc::start("onekill", "small", &[stuck.pid(), next.pid()], |cfg, _| {
        cfg.kill_timeout_ms = 1500
    });
    let c = d.connect();
    subscribe_all(&c);
    c.send(&Cmd::ProcPrio(prio(stuck.pid(), 950))).unwrap();
    c.send(&Cmd::ProcPrio(prio(next.pid(), 900))).unwrap();
    Daemon::sync(&c);
    let t0 = Instant::now();
    d.raise_complete();
    let mut seen = kills(&c, Duration::from_millis(200));
    assert_eq!(seen, vec![stuck.pid()]);
    // Pressure keeps coming while the victim has not exited: no new kill.
    while t0.elapsed() < Duration::from_millis(1000) {
        d.bump_pressure();
        d.raise_complete();
        seen.extend(kills(&c, Duration::from_millis(100)));
    }
    assert_eq!(
        seen,
        vec![stuck.pid()],
        "a second kill before kill_timeout_ms"
    );
    // After kill_timeout_ms the next process may go.
    while t0.elapsed() < Duration::from_millis(4000) && seen.len() < 2 {
        d.bump_pressure();
        d.raise_complete();
        seen.extend(kills(&c, Duration::from_millis(100)));
    }
    assert_eq!(
        seen,
        vec![stuck.pid(), next.pid()],
        "no kill after kill_timeout_ms"
    );
    assert!(t0.elapsed() >= Duration::from_millis(1500));
}

/// Registers a light process, then a heavy one, both at `adj`, raises a
/// complete event and returns which of the two died first.
fn first_of_light_and_heavy(tag: &str, adj: i32, heaviest_task: bool) -> (i32, i32, i32) {
    let light = Sleeper::new();
    let heavy = Sleeper::heavy(24);
    let pids = [light.pid(), heavy.pid()];
    let d = InProc::start(tag, "small", &pids, move |cfg, _| {
        cfg.kill_heaviest_task = heaviest_task;
        cfg.kill_timeout_ms = 5000;
    });
    let c = d.connect();
    subscribe_all(&c);
    // The light one is registered first: it is the tail of its adj list,
    // the one the list order alone would pick.
    c.send(&Cmd::ProcPrio(prio(light.pid(), adj))).unwrap();
    c.send(&Cmd::ProcPrio(prio(heavy.pid(), adj))).unwrap();
    Daemon::sync(&c);
    d.raise_complete();
    let k = kills(&c, Duration::from_millis(1500));
    assert!(!k.is_empty(), "{tag}: nothing was killed");
    (k[0], light.pid(), heavy.pid())
}

#[test]
fn heaviest_goes_first_at_or_below_perceptible() {
    if !need_root("heaviest_goes_first_at_or_below_perceptible") {
        return;
    }
    let (first, _, heavy) = first_of_light_and_heavy("heavy200", 100, false);
    assert_eq!(
        first, heavy,
        "at adj 100 the heaviest process must go first"
    );
}

#[test]
fn kill_heaviest_task_chooses_by_rss_above_perceptible() {
    if !need_root("kill_heaviest_task_chooses_by_rss_above_perceptible") {
        return;
    }
    let (first, _, heavy) = first_of_light_and_heavy("heavy900", 900, true);
    assert_eq!(first, heavy, "kill_heaviest_task did not pick the heaviest");
    // Control: without it, adj 900 goes by list order (the light one).
    let (first, light, _) = first_of_light_and_heavy("tail900", 900, false);
    assert_eq!(
        first, light,
        "without kill_heaviest_task the list tail goes first"
    );
}

/// A `sleep` child whose argv[0] is `name` (as zygote names an app).
fn named_sleeper(name: &str) -> Sleeper {
    use std::os::unix::process::CommandExt;
    let mut c = std::process::Command::new("sleep");
    c.arg0(name)
        .arg("100000")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: prctl is async-signal-safe.
    unsafe {
        c.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    Sleeper(c.spawn().expect("spawn sleep"))
}

/// Waits until the child is dead; returns when that was seen.
fn death(s: &mut Sleeper, within: Duration) -> Option<Instant> {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if s.0.try_wait().unwrap().is_some() {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

/// A test hold on the reaper or the namer, cleared on drop so that a
/// failed assertion does not leave the thread held.
struct Hold(&'static std::sync::atomic::AtomicI32);

impl Hold {
    fn on(switch: &'static std::sync::atomic::AtomicI32, pid: i32) -> Hold {
        switch.store(pid, std::sync::atomic::Ordering::Relaxed);
        Hold(switch)
    }
    fn release_of(pid: i32) -> Hold {
        Hold::on(&lmkd::reaper::HOLD_RELEASE_OF, pid)
    }
    fn name_of(pid: i32) -> Hold {
        Hold::on(&lmkd::reaper::namer::HOLD_NAME_OF, pid)
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.0.store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

/// VmRSS of a live process, in kB.
fn rss_kb(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_name_read_stuck_in_reclaim_holds_back_no_release() {
    const TEST: &str = "a_name_read_stuck_in_reclaim_holds_back_no_release";
    if !need_root(TEST) {
        return;
    }
    // The victim is frozen, so only the reaper's release can take its
    // memory, and the namer holds the read of its name as a read stuck in
    // reclaim would. The memory must come back anyway, and the kill be
    // announced once the name is in.
    common::logcap::install();
    let v = Sleeper::new();
    let Some(_freezer) = Freezer::frozen("stuckname", &[v.pid()]) else {
        skip(TEST, "no cgroup v1 freezer");
        return;
    };
    let before = rss_kb(v.pid());
    assert!(before >= 200, "the victim holds only {before} kB");
    let hold = Hold::name_of(v.pid());
    let d = InProc::start("stuckname", "small", &[v.pid()], |_, _| {});
    let c = d.connect();
    subscribe_all(&c);
    c.send(&Cmd::ProcPrio(prio(v.pid(), 950))).unwrap();
    Daemon::sync(&c);
    d.raise_complete();
    assert!(
        common::eventually(T, || rss_kb(v.pid()) < before / 4),
        "the victim still holds {} kB of {before} while its name is held",
        rss_kb(v.pid())
    );
    drop(hold);
    assert_eq!(kills(&c, T), vec![v.pid()], "no announcement");
}

#[test]
fn a_release_that_never_finishes_holds_back_no_kill() {
    const TEST: &str = "a_release_that_never_finishes_holds_back_no_kill";
    if !need_root(TEST) {
        return;
    }
    // The first victim is frozen (it cannot exit) and the reaper holds its
    // job as a process_mrelease stuck on the victim's mmap lock would. The
    // next victim must still be signalled once kill_timeout_ms have passed,
    // within one poll of it.
    common::logcap::install();
    const TIMEOUT_MS: u64 = 500;
    let stuck = Sleeper::new();
    let mut next = Sleeper::new();
    let Some(_freezer) = Freezer::frozen("stuckreap", &[stuck.pid()]) else {
        skip(TEST, "no cgroup v1 freezer");
        return;
    };
    let _hold = Hold::release_of(stuck.pid());
    let d = InProc::start(
        "stuckreap",
        "small",
        &[stuck.pid(), next.pid()],
        |cfg, _| cfg.kill_timeout_ms = TIMEOUT_MS as u32,
    );
    let c = d.connect();
    subscribe_all(&c);
    c.send(&Cmd::ProcPrio(prio(stuck.pid(), 950))).unwrap();
    c.send(&Cmd::ProcPrio(prio(next.pid(), 900))).unwrap();
    Daemon::sync(&c);
    let t0 = Instant::now();
    d.raise_complete();
    assert_eq!(kills(&c, Duration::from_millis(300)), vec![stuck.pid()]);
    // Pressure keeps coming, every 10 ms (one fast poll).
    let mut died = None;
    while died.is_none() && t0.elapsed() < Duration::from_secs(3) {
        d.bump_pressure();
        d.raise_complete();
        died = death(&mut next, Duration::from_millis(10));
    }
    let Some(died) = died else {
        panic!("no kill while the reaper held the first victim");
    };
    let after = died - t0;
    assert!(
        after >= Duration::from_millis(TIMEOUT_MS),
        "the next kill went before kill_timeout_ms ({after:?})"
    );
    assert!(
        after <= Duration::from_millis(TIMEOUT_MS + 10 + 100),
        "the next kill came {after:?} after the first, kill_timeout_ms is {TIMEOUT_MS}"
    );
    // Its announcement did not wait for the held reaper past kill_timeout_ms.
    assert_eq!(
        kills(&c, Duration::from_millis(TIMEOUT_MS + 500)),
        vec![next.pid()]
    );
    // The stuck job was logged, once.
    let line = format!("reaper still busy with {} ", stuck.pid());
    assert!(
        common::eventually(T, || common::logcap::text().contains(&line)),
        "no stuck-reaper line for {}",
        stuck.pid()
    );
    assert_eq!(common::logcap::text().matches(&line).count(), 1);
}

#[test]
fn the_victim_is_named_by_its_full_command_line() {
    const TEST: &str = "the_victim_is_named_by_its_full_command_line";
    if !need_root(TEST) {
        return;
    }
    common::logcap::install();
    // 40 characters: far past comm's 15. The victim is frozen so that it
    // still has its command line when the reaper reads it after the signal
    // (a victim that has already torn down its memory is named by comm).
    const NAME: &str = "com.example.forty.characters.app.name.xy";
    assert_eq!(NAME.len(), 40);
    let v = named_sleeper(NAME);
    let Some(_freezer) = Freezer::frozen("fullname", &[v.pid()]) else {
        skip(TEST, "no cgroup v1 freezer");
        return;
    };
    let d = InProc::start("fullname", "small", &[v.pid()], |_, _| {});
    let c = d.connect();
    subscribe_all(&c);
    c.send(&Cmd::ProcPrio(prio(v.pid(), 950))).unwrap();
    Daemon::sync(&c);
    d.raise_complete();
    let mut stat_name = None;
    let mut start_time_ns = -1;
    let mut killed = false;
    let end = Instant::now() + T;
    while !killed && Instant::now() < end {
        match c.recv(Some(Duration::from_millis(100))).unwrap() {
            Some(lmkd::client::Message::Stat(s)) => {
                stat_name = Some(String::from_utf8_lossy(s.name()).into_owned());
                start_time_ns = s.start_time_ns;
            }
            Some(lmkd::client::Message::Kill(k)) => killed = k.pid == v.pid(),
            _ => {}
        }
    }
    assert!(killed, "no PROCKILL for the victim");
    assert_eq!(stat_name.as_deref(), Some(NAME), "stats packet name");
    // Read after the signal too: the start time the kernel keeps.
    assert!(start_time_ns > 0, "no start time in the stats packet");
    let line = format!("Kill '{NAME}' ({})", v.pid());
    assert!(
        common::eventually(T, || common::logcap::text().contains(&line)),
        "no kill line {line:?} in:\n{}",
        common::logcap::text()
    );
}
