//! The core's decisions driven on data: synthetic inputs and a recorded
//! snapshot go into `Machine::step` with a made-up clock; fake edges record
//! what it asked of the reaper, the timer and the event loop. No root, no
//! epoll, no real kill: the victims are `sleep` children that the fake
//! edges never signal.

mod common;

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::path::Path;

use common::{prio, Sleeper, TempDir};
use lmkd::client::Client;
use lmkd::config::Config;
use lmkd::kill::{Life, Signal};
use lmkd::machine::{Edges, Input, Machine, Settings};
use lmkd::policy::{KillReason, Pressure};
use lmkd::proto::Command as Cmd;
use lmkd::reaper::{Counters, Done, Finished, Job, Name, Named, Release};
use lmkd::snapshot::{parse_meminfo, parse_psi, parse_vmstat, parse_zoneinfo, ReadError, Snapshot};
use lmkd::token::Token;

const MS: u64 = 1_000_000;
const TIMEOUT_MS: u64 = 100;

/// Edges that remember instead of acting.
#[derive(Default)]
struct Fake {
    snap: Snapshot,
    jobs: Vec<Job>,
    watched: Vec<(RawFd, Token)>,
    unwatched: Vec<RawFd>,
    timer: Option<Option<u64>>,
    snapshots: usize,
    /// Pids signalled, in order.
    signals: Vec<i32>,
    /// The clock the signal "returns" at (the step's own time).
    now_ns: u64,
    /// Make the next signals fail with this errno.
    fail_signal: Option<i32>,
    /// Free memory below the min watermark, reclaim running.
    below_min: bool,
    /// kswapd scanning: `pgscan_kswapd` moves with the clock, so that no
    /// re-check reads as quiet.
    kswapd: bool,
    /// Direct reclaim: `pgscan_direct` moves with the clock, free memory
    /// stays as the fixture has it.
    direct_reclaim: bool,
    /// Trace slice events, signals and watermark refreshes, in order:
    /// "B pid,reason,adj,min", "signal pid", "E", "refresh watermarks".
    trace: Vec<String>,
}

impl Edges for Fake {
    fn watch(&mut self, fd: BorrowedFd<'_>, token: Token, _urgent: bool) -> std::io::Result<()> {
        self.watched.push((fd.as_raw_fd(), token));
        Ok(())
    }
    fn unwatch(&mut self, fd: BorrowedFd<'_>) {
        self.unwatched.push(fd.as_raw_fd());
    }
    fn set_timer(&mut self, after_ms: Option<u64>) {
        self.timer = Some(after_ms);
    }
    fn snapshot(&mut self, now_ms: u64) -> Result<Snapshot, ReadError> {
        self.snapshots += 1;
        let mut s = self.snap;
        s.time_ms = now_ms;
        // The full stall keeps growing (faster than the clock, so that even
        // 100 ms after a kill a complete event is reason to kill again).
        s.psi.full_total_us += now_ms * 10_000;
        if self.kswapd {
            s.vm.pgscan_kswapd += now_ms;
        }
        if self.direct_reclaim {
            s.vm.pgscan_direct += now_ms;
        }
        if self.below_min {
            s.mem.free_kb = s.wm.min_kb / 2;
            s.mem.cma_free_kb = 0;
            s.vm.pgscan_direct += now_ms;
        }
        Ok(s)
    }
    fn trace_kill(&mut self, pid: i32, reason: i32, adj: i32, min_adj: i32, _thr: i64) {
        self.trace.push(format!("B {pid},{reason},{adj},{min_adj}"));
    }
    fn trace_end(&mut self) {
        self.trace.push("E".into());
    }
    fn refresh_watermarks(&mut self, _now_ms: u64, _hold_ms: u64) {
        self.trace.push("refresh watermarks".into());
    }
    fn signal(&mut self, pid: i32, _pidfd: Option<BorrowedFd<'_>>) -> Result<u64, i32> {
        self.trace.push(format!("signal {pid}"));
        self.signals.push(pid);
        match self.fail_signal {
            Some(errno) => Err(errno),
            None => Ok(self.now_ns),
        }
    }
    fn submit(&mut self, job: Job) -> bool {
        self.jobs.push(job);
        true
    }
}

/// The recorded "small" machine, on which a complete-pressure event kills
/// (the in-process kill tests use the same).
fn small_snapshot() -> Snapshot {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proc/small");
    let read = |f: &str| std::fs::read(d.join(f)).unwrap();
    let mut s = Snapshot::default();
    parse_meminfo(&read("meminfo"), &mut s.mem).unwrap();
    parse_vmstat(&read("vmstat"), &mut s.vm).unwrap();
    parse_zoneinfo(&read("zoneinfo"), &mut s.wm).unwrap();
    parse_psi(&read("pressure_memory"), &mut s.psi).unwrap();
    s
}

fn no_hook(_: &'static str) {}

/// A machine over the real /proc with `victims` (pid, adj) registered
/// through its own socket, the way ActivityManager does it.
struct Rig {
    m: Machine,
    io: Fake,
    _dir: TempDir,
    _client: Client,
}

impl Rig {
    fn new(tag: &str, victims: &[(i32, i32)], dry_run: bool) -> Rig {
        let dir = TempDir::new(tag);
        let mut cfg = Config {
            kill_timeout_ms: TIMEOUT_MS as u32,
            // SAFETY: getuid has no failure mode.
            allowed_uids: vec![unsafe { libc::getuid() }],
            ..Config::default()
        };
        cfg.startup.socket_path = dir.path("lmkd.sock");
        cfg.startup.max_procs = 64;
        let settings = Settings {
            config_path: None,
            dry_run,
            props: std::sync::Arc::new(lmkd::props::NoProperties),
            on_thread_start: no_hook,
        };
        let m = Machine::new(cfg, settings).expect("machine");
        let client = Client::connect(&dir.path("lmkd.sock"));
        let mut r = Rig {
            m,
            io: Fake {
                snap: small_snapshot(),
                ..Fake::default()
            },
            _client: client.unwrap(),
            _dir: dir,
        };
        for &(pid, adj) in victims {
            r._client.send(&Cmd::ProcPrio(prio(pid, adj))).unwrap();
        }
        r.step(Input::Listen, 0);
        r.step(
            Input::Client {
                slot: 0,
                hup: false,
            },
            0,
        );
        for &(pid, _) in victims {
            assert!(r.m.registry().table.contains(pid), "{pid} not registered");
        }
        r
    }

    /// Two victims (adj 950 and 900) and a complete event at 1000 ms.
    fn killing(tag: &str) -> (Rig, Sleeper, Sleeper) {
        let (a, b) = (Sleeper::new(), Sleeper::new());
        let mut r = Rig::new(tag, &[(a.pid(), 950), (b.pid(), 900)], false);
        r.step(Input::Pressure(Pressure::Complete), 1000);
        (r, a, b)
    }

    fn step(&mut self, input: Input, at_ms: u64) {
        self.io.now_ns = at_ms * MS;
        self.m.step(input, at_ms * MS, &mut self.io);
    }

    /// Pids handed to the reaper so far (every kill that went out, dry
    /// runs included).
    fn killed(&self) -> Vec<i32> {
        self.io.jobs.iter().map(|j| j.pid).collect()
    }

    /// A report from the reaper at `now_ms`; `release` for its last one.
    fn report(&mut self, pid: i32, name: &str, release: Option<Release>, now_ms: u64) {
        let finished = release.map(|release| Finished {
            release,
            at_ns: now_ms * MS,
        });
        let sent_ns = self
            .io
            .jobs
            .iter()
            .rfind(|j| j.pid == pid)
            .map_or(0, |j| j.sent_ns);
        // The namer's report carries the name (and the release, for a job
        // with none); the reaper's, without a name, the release.
        let named = (finished.is_none() || !name.is_empty()).then(|| Named {
            name: Name::from_cmdline(name.as_bytes()),
            counters: Counters::UNKNOWN,
        });
        let done = Done {
            pid,
            signal: Ok(sent_ns),
            named,
            finished,
        };
        self.step(Input::Reaped(done), now_ms);
    }

    /// The namer's report: the name it read.
    fn named(&mut self, pid: i32, name: &str, now_ms: u64) {
        self.report(pid, name, None, now_ms);
    }

    fn released(&mut self, pid: i32, now_ms: u64) {
        self.report(pid, "", Some(Release::Released), now_ms);
    }

    /// Names in the kill history, oldest first.
    fn history_names(&self) -> Vec<String> {
        self.m
            .history()
            .iter()
            .map(|r| r.name().to_string())
            .collect()
    }

    fn kills_counted(&self) -> u32 {
        self.m.registry().kills.count(-1000, 1000)
    }
}

#[test]
fn pressure_signals_from_the_core_and_announces_with_the_name() {
    let (mut r, a, _b) = Rig::killing("step-one");
    assert_eq!(r.io.signals, [a.pid()], "the most expendable goes first");
    assert_eq!(r.killed(), [a.pid()]);
    // The atrace slice surrounds the signal (Perfetto's mem.lmk track):
    // reason 1 is NOT_RESPONDING, the complete event's.
    assert_eq!(
        r.io.trace,
        [
            format!("B {},1,950,0", a.pid()),
            format!("signal {}", a.pid()),
            "E".to_string(),
            "refresh watermarks".to_string()
        ],
        "no trace slice around the signal, or zoneinfo read before it"
    );
    assert_eq!(
        r.io.jobs[0].sent_ns,
        1000 * MS,
        "the job carries the signal time"
    );
    // The record left the table; the core watches the victim's pidfd.
    assert!(!r.m.registry().table.contains(a.pid()));
    assert!(r.io.watched.iter().any(|&(_, t)| t == Token::Victim));
    assert_eq!(
        r.io.timer,
        Some(Some(10)),
        "fast polling while a kill is out"
    );
    // Counted at the signal; announced when the reaper has read the name.
    assert_eq!(r.kills_counted(), 1);
    assert_eq!(r.m.history().total(), 0);
    let long = "com.example.a.forty.character.app.name.x";
    r.named(a.pid(), &format!("{long}\0--arg\0"), 1003);
    assert_eq!(r.history_names(), [long]);
    let rec = r.m.history().iter().next().copied().expect("kill record");
    assert_eq!(rec.pid, a.pid());
    assert_eq!(rec.event_to_signal_us, 0);
    assert_eq!(
        r.m.inflight().map(|k| k.signal()),
        Some(Signal::Sent { at_ns: 1000 * MS })
    );
    // The release report changes nothing more.
    r.released(a.pid(), 1010);
    assert_eq!(r.m.history().total(), 1);
}

#[test]
fn no_command_line_means_comm() {
    let (mut r, a, _b) = Rig::killing("step-comm");
    r.named(a.pid(), "", 1001);
    assert_eq!(r.history_names(), ["sleep"]);
}

#[test]
fn one_kill_at_a_time_until_kill_timeout_from_the_signal() {
    let (mut r, a, b) = Rig::killing("step-timeout");
    r.named(a.pid(), "a", 1010);
    r.released(a.pid(), 1020);
    let reads = r.io.snapshots;
    for t in [1060, 1099] {
        r.step(Input::Pressure(Pressure::Complete), t);
        r.step(Input::Timer, t);
    }
    assert_eq!(
        r.killed(),
        [a.pid()],
        "a second kill went before kill_timeout_ms"
    );
    assert_eq!(
        r.io.snapshots, reads,
        "a blocked evaluation read a snapshot"
    );
    assert_eq!(r.m.inflight().map(|k| k.life()), Some(Life::Alive));
    r.step(Input::Pressure(Pressure::Complete), 1100);
    assert_eq!(r.killed(), [a.pid(), b.pid()]);
    assert_eq!(r.m.inflight().map(|k| k.victim.pid), Some(b.pid()));
}

#[test]
fn a_stuck_reaper_holds_back_no_kill() {
    let (mut r, a, b) = Rig::killing("step-stuck");
    // The reaper never reports on the first victim (its release hangs).
    // kill_timeout_ms after the signal, the next kill may go.
    r.step(Input::Pressure(Pressure::Complete), 1099);
    assert_eq!(r.killed(), [a.pid()]);
    r.step(Input::Pressure(Pressure::Complete), 1100);
    assert_eq!(
        r.killed(),
        [a.pid(), b.pid()],
        "a stuck reaper held the next kill"
    );
    assert_eq!(r.io.signals, [a.pid(), b.pid()]);
    // The first kill was announced without its name report, with comm.
    assert_eq!(r.history_names(), ["sleep"]);
    assert_eq!(r.kills_counted(), 2);
    // Its late reports change nothing: no second announcement.
    r.named(a.pid(), "late.name", 1200);
    r.released(a.pid(), 1201);
    assert_eq!(r.history_names(), ["sleep"]);
    assert_eq!(r.m.inflight().map(|k| k.victim.pid), Some(b.pid()));
}

#[test]
fn the_release_report_waits_for_the_name() {
    // The namer and the reaper report on their own: a release that comes
    // back first carries no name and must not announce the kill with comm.
    let (mut r, a, _b) = Rig::killing("step-release-first");
    r.released(a.pid(), 1001);
    assert!(r.m.inflight().is_some_and(|k| !k.announced()));
    r.named(a.pid(), "a.full.name", 1002);
    assert_eq!(r.history_names(), ["a.full.name"]);
}

#[test]
fn victim_exit_evaluates_at_once() {
    let (mut r, a, b) = Rig::killing("step-exit");
    r.io.below_min = true;
    let fd =
        r.io.watched
            .iter()
            .find(|w| w.1 == Token::Victim)
            .unwrap()
            .0;
    r.named(a.pid(), "a", 1002);
    r.released(a.pid(), 1003);
    let reads = r.io.snapshots;
    // The victim is gone 40 ms after the signal; memory is still short
    // (the same snapshot): the next kill goes now, not at the next poll.
    r.step(Input::VictimExited, 1040);
    assert!(r.io.unwatched.contains(&fd), "exited victim still watched");
    assert_eq!(r.io.snapshots, reads + 1, "no evaluation on the exit");
    assert_eq!(r.killed(), [a.pid(), b.pid()], "no kill on the exit");
    assert_eq!(
        r.m.inflight().map(|k| k.decision.reason),
        Some(KillReason::PressureAfterKill)
    );
    assert_eq!(
        r.m.history().iter().next().map(|k| k.time_to_exit_ms),
        Some(40)
    );
}

/// Ours (`direct_reclaim_exit_wait_ms`, 500 ms): with swap low (the
/// "small" fixture), direct reclaim kills again once the victim has exited,
/// not while it is still exiting, unless it takes longer than the wait.
#[test]
fn direct_reclaim_kills_again_after_the_exit_not_during_it() {
    for exits in [true, false] {
        let (mut r, a, b) = Rig::killing("step-exit-wait");
        r.io.direct_reclaim = true;
        r.named(a.pid(), "a", 1002);
        for t in [1100, 1110, 1200, 1300, 1490] {
            r.step(Input::Timer, t);
        }
        assert_eq!(r.killed(), [a.pid()], "killed while the victim exited");
        if exits {
            r.step(Input::VictimExited, 1495);
        } else {
            r.step(Input::Timer, 1500);
        }
        assert_eq!(r.killed(), [a.pid(), b.pid()], "exited: {exits}");
        assert_eq!(
            r.m.inflight().map(|k| k.decision.reason),
            Some(KillReason::LowMemAndSwap)
        );
    }
}

#[test]
fn exit_before_the_name_report() {
    let (mut r, a, b) = Rig::killing("step-exit-first");
    r.io.below_min = true;
    r.step(Input::VictimExited, 1020);
    // The next kill went on the exit; the first was announced with comm.
    assert_eq!(r.killed(), [a.pid(), b.pid()]);
    assert_eq!(r.history_names(), ["sleep"]);
    let rec = r.m.history().iter().next().copied().unwrap();
    assert_eq!(rec.time_to_exit_ms, 20);
}

#[test]
fn failed_signal_is_not_counted_and_holds_nothing_back() {
    let a = Sleeper::new();
    let b = Sleeper::new();
    let mut r = Rig::new("step-failed", &[(a.pid(), 950), (b.pid(), 900)], false);
    r.io.fail_signal = Some(libc::EPERM);
    r.step(Input::Pressure(Pressure::Complete), 1000);
    assert_eq!(r.io.signals, [a.pid()]);
    assert!(r.killed().is_empty(), "a failed kill went to the reaper");
    assert_eq!(r.kills_counted(), 0);
    assert_eq!(r.m.history().total(), 0);
    assert!(r.m.inflight().is_none());
    r.io.fail_signal = None;
    r.step(Input::Pressure(Pressure::Complete), 1002);
    assert_eq!(r.io.signals, [a.pid(), b.pid()]);
}

#[test]
fn a_report_for_another_pid_changes_nothing() {
    let (mut r, _a, b) = Rig::killing("step-other");
    r.named(b.pid(), "b", 1001);
    assert_eq!(r.m.history().total(), 0);
    assert!(r.m.inflight().is_some_and(|k| !k.announced()));
}

#[test]
fn dry_run_keeps_the_record_and_waits_out_kill_timeout() {
    let a = Sleeper::new();
    let mut r = Rig::new("step-dry", &[(a.pid(), 950)], true);
    r.step(Input::Pressure(Pressure::Complete), 1000);
    assert!(r.io.signals.is_empty(), "a dry run signalled");
    assert_eq!(r.killed(), [a.pid()]);
    assert!(r.io.jobs[0].dry_run);
    assert!(r.m.registry().table.contains(a.pid()));
    r.report(a.pid(), "a", Some(Release::Skipped), 1001);
    assert_eq!(r.kills_counted(), 0, "a dry run counted a kill");
    assert_eq!(r.m.history().total(), 1, "a dry run is still recorded");
    r.step(Input::Pressure(Pressure::Complete), 1099);
    assert_eq!(r.killed().len(), 1);
    r.step(Input::Pressure(Pressure::Complete), 1100);
    assert_eq!(r.killed(), [a.pid(), a.pid()]);
}

#[test]
fn polling_stops_after_the_window_only_without_a_kill_in_flight() {
    let a = Sleeper::new();
    let mut r = Rig::new("step-poll", &[(a.pid(), 950)], false);
    r.step(Input::Pressure(Pressure::Complete), 1000);
    r.named(a.pid(), "a", 1001);
    // Past the 1 s window, but the victim has not exited: keep polling.
    r.step(Input::Timer, 2500);
    assert!(matches!(r.io.timer, Some(Some(_))));
    r.step(Input::VictimExited, 2501);
    assert!(r.m.inflight().is_none());
    r.step(Input::Timer, 2503);
    // The kill and its poll extended the window; once past it, stop.
    r.step(Input::Timer, 4000);
    assert_eq!(r.io.timer, Some(None));
}

#[test]
fn partial_event_inside_a_complete_window_adds_nothing() {
    let mut r = Rig::new("step-partial", &[], false);
    r.step(Input::Pressure(Pressure::Complete), 1000);
    assert_eq!(r.io.snapshots, 1);
    r.step(Input::Pressure(Pressure::Partial), 1500);
    assert_eq!(
        r.io.snapshots, 1,
        "a partial event inside the window was evaluated"
    );
    r.step(Input::Pressure(Pressure::Complete), 1600);
    assert_eq!(r.io.snapshots, 2, "a complete event is always evaluated");
    r.step(Input::Pressure(Pressure::Partial), 2700);
    assert_eq!(
        r.io.snapshots, 3,
        "a partial event after the window was not"
    );
}

/// The early trigger (ours) opens a polling second that only swap running
/// low extends, and adds nothing inside the window of lmkd's own triggers.
#[test]
fn early_event_polls_on_only_while_swap_is_low() {
    let mut r = Rig::new("step-early", &[], false);
    r.io.snap.mem.swap_total_kb = 1_000_000;
    r.io.snap.mem.swap_free_kb = 900_000;
    // Room to swap into (zram's free swap is capped by what RAM can hold).
    r.io.snap.mem.inactive_file_kb = 500_000;
    r.io.kswapd = true;
    r.step(Input::Pressure(Pressure::Early), 1000);
    assert_eq!(
        r.io.timer,
        Some(Some(100)),
        "no slow polling after an early event"
    );
    r.step(Input::Timer, 1500);
    assert_eq!(r.io.snapshots, 2);
    r.step(Input::Timer, 2001);
    assert_eq!(
        r.io.timer,
        Some(None),
        "a re-check with swap to spare extended an early window"
    );
    r.io.snap.mem.swap_free_kb = 10;
    r.step(Input::Pressure(Pressure::Early), 3000);
    r.step(Input::Timer, 3900);
    r.step(Input::Timer, 4500);
    assert!(
        matches!(r.io.timer, Some(Some(_))),
        "swap low did not keep an early window polling"
    );
    let n = r.io.snapshots;
    r.step(Input::Pressure(Pressure::Partial), 4600);
    assert_eq!(r.io.snapshots, n + 1);
    r.step(Input::Pressure(Pressure::Early), 4700);
    assert_eq!(
        r.io.snapshots,
        n + 1,
        "an early event inside lmkd's window was evaluated"
    );
}

#[test]
fn a_client_that_never_stops_sending_is_read_in_turns() {
    let a = Sleeper::new();
    let mut r = Rig::new("step-fair", &[(a.pid(), 100)], false);
    for i in 0..40 {
        r._client
            .send(&Cmd::ProcPrio(prio(a.pid(), 101 + i)))
            .unwrap();
    }
    let adj = |r: &Rig| r.m.registry().table.entry(a.pid()).map(|e| e.proc().adj);
    // One wakeup reads a bounded share of the queue, so a pressure event
    // that came in meanwhile is handled before the rest.
    r.step(
        Input::Client {
            slot: 0,
            hup: false,
        },
        1,
    );
    assert_eq!(adj(&r), Some(116), "one wakeup read more than 16 packets");
    r.step(
        Input::Client {
            slot: 0,
            hup: false,
        },
        2,
    );
    r.step(
        Input::Client {
            slot: 0,
            hup: false,
        },
        3,
    );
    assert_eq!(adj(&r), Some(140), "the rest of the queue was not read");
}

/// A kill that finds no victim is no kill (lmkd's rule): the re-checks
/// stay at the 100 ms of pressure without one, not the 10 ms around a kill.
/// (In the VM camera the LOW_MEM row found only apps below its min adj and
/// re-checked every 16 ms for seconds.)
#[test]
fn a_kill_with_no_victim_neither_polls_fast_nor_polls_on() {
    let a = Sleeper::new();
    // Only a persistent process: no row kills below adj 0.
    let mut r = Rig::new("step-novictim", &[(a.pid(), -800)], false);
    // Swap to spare, and room to swap into (lmkd's rule polls fast while
    // swap is low).
    r.io.snap.mem.swap_free_kb = r.io.snap.mem.swap_total_kb;
    r.io.snap.mem.inactive_file_kb = 500_000;
    r.step(Input::Pressure(Pressure::Complete), 1000);
    assert!(r.killed().is_empty(), "a persistent process was killed");
    assert_eq!(
        r.io.timer,
        Some(Some(100)),
        "a kill decided with nobody to kill polled fast"
    );
    r.step(Input::Timer, 1100);
    assert_eq!(r.io.timer, Some(Some(100)));
    // Nor does it keep the re-checks going: with free memory below low
    // and kswapd at work, LOW_MEM decides a kill at every re-check and
    // finds nobody; the window still closes a second after the event.
    r.io.kswapd = true;
    r.io.snap.mem.free_kb = r.io.snap.wm.low_kb - 1;
    r.io.snap.mem.cma_free_kb = 0;
    for at in (1200..=1900).step_by(100) {
        r.step(Input::Timer, at);
    }
    assert!(r.killed().is_empty());
    r.step(Input::Timer, 2001);
    assert_eq!(
        r.io.timer,
        Some(None),
        "a kill decided with nobody to kill extended the polling window"
    );
}
