//! The core's decisions driven on data: synthetic inputs and a recorded
//! snapshot go into `Machine::step` with a made-up clock; fake edges record
//! what it asked of the reaper, the timer and the event loop. No root, no
//! epoll, no real kill: the victims are `sleep` children that the fake
//! reaper never signals.

mod common;

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::path::Path;

use common::{prio, Sleeper, TempDir};
use lmkd::client::Client;
use lmkd::config::Config;
use lmkd::kill::{Life, Signal};
use lmkd::machine::{Edges, Input, Machine, Settings};
use lmkd::policy::Pressure;
use lmkd::proto::Command as Cmd;
use lmkd::reaper::{Done, Finished, Job, Release};
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
    fn refresh_watermarks(&mut self) {}
    fn snapshot(&mut self, now_ms: u64) -> Result<Snapshot, ReadError> {
        self.snapshots += 1;
        let mut s = self.snap;
        s.time_ms = now_ms;
        // The full stall keeps growing (faster than the clock, so that even
        // 100 ms after a kill a complete event is reason to kill again).
        s.psi.full_total_us += now_ms * 10_000;
        Ok(s)
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
        self.m.step(input, at_ms * MS, &mut self.io);
    }

    /// Pids handed to the reaper so far.
    fn killed(&self) -> Vec<i32> {
        self.io.jobs.iter().map(|j| j.pid).collect()
    }

    /// A report from the reaper at `now_ms`; `release` for its last one.
    fn report(
        &mut self,
        pid: i32,
        signal: Result<u64, i32>,
        release: Option<Release>,
        now_ms: u64,
    ) {
        let finished = release.map(|release| Finished {
            release,
            at_ns: now_ms * MS,
        });
        let done = Done {
            pid,
            signal,
            finished,
        };
        self.step(Input::Reaped(done), now_ms);
    }

    fn signalled(&mut self, pid: i32, at_ms: u64, now_ms: u64) {
        self.report(pid, Ok(at_ms * MS), None, now_ms);
    }

    fn released(&mut self, pid: i32, signal_ms: u64, now_ms: u64) {
        self.report(pid, Ok(signal_ms * MS), Some(Release::Released), now_ms);
    }

    fn kills_counted(&self) -> u32 {
        self.m.registry().kills.count(-1000, 1000)
    }
}

#[test]
fn pressure_hands_one_kill_to_the_reaper_and_counts_it_on_the_signal() {
    let (mut r, a, _b) = Rig::killing("step-one");
    assert_eq!(r.killed(), [a.pid()], "the most expendable goes first");
    // The record left the table; the core watches the victim's pidfd.
    assert!(!r.m.registry().table.contains(a.pid()));
    assert!(r.io.watched.iter().any(|&(_, t)| t == Token::Victim));
    assert_eq!(
        r.io.timer,
        Some(Some(10)),
        "fast polling while a kill is out"
    );
    // Not counted until the reaper says the signal went out.
    assert_eq!(r.m.history().total(), 0);
    assert_eq!(r.kills_counted(), 0);
    r.signalled(a.pid(), 1003, 1004);
    assert_eq!(r.kills_counted(), 1);
    let rec = r.m.history().iter().next().copied().expect("kill record");
    assert_eq!(rec.pid, a.pid());
    assert_eq!(rec.event_to_signal_us, 3000);
    assert_eq!(
        r.m.inflight().map(|k| k.signal()),
        Some(Signal::Sent { at_ns: 1003 * MS })
    );
}

#[test]
fn one_kill_at_a_time_until_kill_timeout_from_the_signal() {
    let (mut r, a, b) = Rig::killing("step-timeout");
    // Signal reported late: the wait starts there, not at the event.
    r.signalled(a.pid(), 1050, 1050);
    r.released(a.pid(), 1050, 1060);
    let reads = r.io.snapshots;
    for t in [1060, 1100, 1149] {
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
    r.step(Input::Pressure(Pressure::Complete), 1150);
    assert_eq!(r.killed(), [a.pid(), b.pid()]);
    assert_eq!(r.m.inflight().map(|k| k.victim.pid), Some(b.pid()));
}

#[test]
fn reaper_holding_the_pidfd_holds_the_next_kill() {
    let (mut r, a, b) = Rig::killing("step-reaper");
    r.signalled(a.pid(), 1001, 1001);
    // Timed out, but process_mrelease has not returned: no new kill yet.
    r.step(Input::Pressure(Pressure::Complete), 1500);
    assert_eq!(r.m.inflight().map(|k| k.life()), Some(Life::TimedOut));
    assert_eq!(r.killed(), [a.pid()]);
    r.released(a.pid(), 1001, 1600);
    r.step(Input::Pressure(Pressure::Complete), 1601);
    assert_eq!(r.killed(), [a.pid(), b.pid()]);
}

#[test]
fn victim_exit_before_the_reaper_reports() {
    let (mut r, a, b) = Rig::killing("step-exit");
    let fd =
        r.io.watched
            .iter()
            .find(|w| w.1 == Token::Victim)
            .unwrap()
            .0;
    r.step(Input::VictimExited, 1040);
    assert!(r.io.unwatched.contains(&fd), "exited victim still watched");
    assert_eq!(
        r.m.inflight().map(|k| k.life()),
        Some(Life::Exited { at_ns: 1040 * MS })
    );
    // The victim is gone, but the reaper still holds its pidfd.
    r.step(Input::Pressure(Pressure::Complete), 1041);
    assert_eq!(r.killed(), [a.pid()]);
    // The late reports still count the kill, then the kill is over.
    r.signalled(a.pid(), 1002, 1042);
    assert_eq!(r.kills_counted(), 1);
    assert!(r.m.inflight().is_some());
    r.released(a.pid(), 1002, 1043);
    assert!(r.m.inflight().is_none(), "finished kill not forgotten");
    // No kill_timeout_ms wait after an exit (88 ms since the signal).
    r.step(Input::Pressure(Pressure::Complete), 1090);
    assert_eq!(r.killed(), [a.pid(), b.pid()]);
}

#[test]
fn failed_signal_is_not_counted_and_holds_nothing_back() {
    let (mut r, a, b) = Rig::killing("step-failed");
    r.report(a.pid(), Err(libc::EPERM), Some(Release::Skipped), 1001);
    assert_eq!(r.kills_counted(), 0);
    assert_eq!(r.m.history().total(), 0);
    assert!(r.m.inflight().is_none());
    r.step(Input::Pressure(Pressure::Complete), 1002);
    assert_eq!(r.killed(), [a.pid(), b.pid()]);
}

#[test]
fn a_report_for_another_pid_changes_nothing() {
    let (mut r, _a, b) = Rig::killing("step-other");
    r.released(b.pid(), 1001, 1001);
    assert_eq!(r.m.inflight().map(|k| k.signal()), Some(Signal::Pending));
    assert_eq!(r.kills_counted(), 0);
}

#[test]
fn dry_run_keeps_the_record_and_waits_out_kill_timeout() {
    let a = Sleeper::new();
    let mut r = Rig::new("step-dry", &[(a.pid(), 950)], true);
    r.step(Input::Pressure(Pressure::Complete), 1000);
    assert_eq!(r.killed(), [a.pid()]);
    assert!(r.io.jobs[0].dry_run);
    assert!(r.m.registry().table.contains(a.pid()));
    r.report(a.pid(), Ok(1001 * MS), Some(Release::Skipped), 1001);
    assert_eq!(r.kills_counted(), 0, "a dry run counted a kill");
    assert_eq!(r.m.history().total(), 1, "a dry run is still recorded");
    r.step(Input::Pressure(Pressure::Complete), 1100);
    assert_eq!(r.killed().len(), 1);
    r.step(Input::Pressure(Pressure::Complete), 1101);
    assert_eq!(r.killed(), [a.pid(), a.pid()]);
}

#[test]
fn polling_stops_after_the_window_only_without_a_kill_in_flight() {
    let a = Sleeper::new();
    let mut r = Rig::new("step-poll", &[(a.pid(), 950)], false);
    r.step(Input::Pressure(Pressure::Complete), 1000);
    r.signalled(a.pid(), 1001, 1001);
    // Past the 1 s window, but the victim has not exited: keep polling.
    r.step(Input::Timer, 2500);
    assert!(matches!(r.io.timer, Some(Some(_))));
    r.step(Input::VictimExited, 2501);
    r.released(a.pid(), 1001, 2502);
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
