//! The core's state machine: everything that happens to the daemon arrives
//! as one [`Input`] with the wakeup's clock, and [`Machine::step`] decides
//! what to do about it. Pressure flows one way:
//! event -> snapshot -> policy -> victim -> reaper -> report.
//!
//! The I/O it cannot do without (snapshots, the reaper, the event loop's
//! registrations, the poll timer) goes through [`Edges`], which the daemon
//! implements for real and tests fake, so the decisions can be driven on
//! data without root or epoll. The same seam is where a recording of the
//! input stream and the snapshots would be taken and replayed.
//!
//! After `Machine::new` returns, nothing here allocates.

mod clients;
mod kills;

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::sync::Arc;

use crate::commands::Registry;
use crate::config::Config;
use crate::control;
use crate::history::History;
use crate::kill::{InFlight, ReaperJobs, Signal};
use crate::loader::{Leftovers, Loader};
use crate::memcg::AppMemcg;
use crate::policy::{self, Pressure, Tunables};
use crate::props::PropertySource;
use crate::psi::Source;
use crate::reaper::{self, Counters, Name};
use crate::report::{Note, Reporter};
use crate::server::Server;
use crate::snapshot::{ReadError, Snapshot};
use crate::sys::ProcFs;
use crate::table::{Handles, ProcTable};
use crate::token::Token;
use crate::victim::{self, Rules, Stale};
use crate::watchdog::Heartbeat;

use crate::policy::POLL_WINDOW_MS;

/// Which pressure events outrank which: one inside the polling window of a
/// stronger one adds nothing.
fn strength(p: Pressure) -> u8 {
    match p {
        Pressure::Poll => 0,
        Pressure::Early => 1,
        Pressure::Partial => 2,
        Pressure::Complete => 3,
    }
}

/// One thing that happened, as the event loop decoded it.
#[derive(Clone, Copy, Debug)]
pub enum Input {
    /// A pressure trigger fired (already acknowledged).
    Pressure(Pressure),
    /// A pressure trigger reported an error: the source is gone.
    PressureLost,
    /// The loader thread finished a reload or a re-opened source.
    Loaded,
    /// The polling timer expired.
    Timer,
    /// The listening socket has connections waiting.
    Listen,
    /// A client connection is readable, or hung up. The machine reads its
    /// packets itself (the one input that is readiness, not data).
    Client { slot: usize, hup: bool },
    /// A report from the reaper.
    Reaped(reaper::Done),
    /// The in-flight victim's pidfd became readable: it exited. The
    /// machine re-evaluates at once (lmkd's PRESSURE_AFTER_KILL check).
    VictimExited,
    /// A signal arrived (signal number).
    Signal(i32),
    /// The control socket rang: a table copy, a reload or a new
    /// configuration is waiting.
    Control,
}

/// The core's I/O, real in the daemon and fake in tests.
pub trait Edges {
    /// Adds `fd` to the event loop; its readiness comes back as `token`.
    /// `urgent`: wait for EPOLLPRI (PSI triggers) rather than EPOLLIN.
    fn watch(&mut self, fd: BorrowedFd<'_>, token: Token, urgent: bool) -> io::Result<()>;
    fn unwatch(&mut self, fd: BorrowedFd<'_>);
    /// Arms the one-shot poll timer `after_ms` from now, or stops it.
    fn set_timer(&mut self, after_ms: Option<u64>);
    fn snapshot(&mut self, now_ms: u64) -> Result<Snapshot, ReadError>;
    /// Re-reads what the next snapshot may take from an earlier reading
    /// (the zone watermarks, a higher reading held for `hold_ms`), after an
    /// evaluation is done.
    fn refresh_watermarks(&mut self, _now_ms: u64, _hold_ms: u64) {}
    /// Trouble the snapshot reader carried on past, each kind once.
    fn degradation(&mut self) -> Option<crate::snapshot::Degradation> {
        None
    }
    /// Sends SIGKILL through `pidfd` (by pid without one): one syscall,
    /// no allocation. Returns CLOCK_MONOTONIC ns after it, or the errno.
    fn signal(&mut self, pid: i32, pidfd: Option<BorrowedFd<'_>>) -> Result<u64, i32>;
    /// Opens the kill's atrace slice (`lmk,<pid>,<reason>,<adj>,<min_adj>,
    /// <max_thrashing>`) right before the signal; Perfetto shows it on its
    /// `mem.lmk` track. Nothing when tracing is off.
    fn trace_kill(&mut self, _pid: i32, _reason: i32, _adj: i32, _min_adj: i32, _thr: i64) {}
    /// Closes the slice [`Edges::trace_kill`] opened.
    fn trace_end(&mut self) {}
    /// Hands a signalled kill to the reaper (name, release); false if it
    /// cannot take it.
    fn submit(&mut self, job: reaper::Job) -> bool;
}

/// What the machine needs beyond the config.
pub struct Settings {
    /// The file a reload re-reads.
    pub config_path: Option<PathBuf>,
    pub dry_run: bool,
    /// Shared with the logging thread (which publishes `sys.lmk.*`) and
    /// the loader thread (which reads them on a reload).
    pub props: Arc<dyn PropertySource>,
    /// Runs first on the logging and loader threads.
    pub on_thread_start: fn(&'static str),
}

/// Re-check timer state after a pressure event.
struct Polling {
    until_ms: u64,
    level: Option<Pressure>,
    interval_ms: u64,
}

pub struct Machine {
    config: Config,
    tunables: Tunables,
    settings: Settings,
    server: Server,
    reg: Registry,
    source: Option<Source>,
    /// Opened at start-up but not yet watched (monitors delayed until
    /// START_MONITORING or boot completion), so arming it allocates nothing.
    parked: Option<Source>,
    /// Pressure sources that failed so far (bounds the re-open attempts).
    source_failures: u8,
    loader: Loader,
    reload: clients::Reloads,
    policy: policy::State,
    report: Reporter,
    history: History,
    inflight: Option<InFlight>,
    reaper_jobs: ReaperJobs,
    polling: Polling,
    heartbeat: Arc<Heartbeat>,
    candidate_dirty: bool,
    boot_completed: bool,
    self_pid: i32,
    exit: bool,
    /// A NoVictim note was sent for the current pressure window.
    told_no_victim: bool,
    /// What the control socket reads (detached until one is attached).
    control: control::Publisher,
}

impl Machine {
    /// Opens the socket and the table and starts the logging thread; all
    /// allocation happens here. Pressure monitors start separately.
    pub fn new(config: Config, settings: Settings) -> io::Result<Machine> {
        let report = Reporter::start(settings.on_thread_start, settings.props.clone())?;
        let loader = Loader::start(
            config.clone(),
            settings.config_path.clone(),
            settings.props.clone(),
            settings.on_thread_start,
        )?;
        let table = ProcTable::new(config.startup.max_procs as usize).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("process table of {} entries: {e}", config.startup.max_procs),
            )
        })?;
        if !table.locked() {
            log::warn!("could not lock the process table in memory; continuing unlocked");
        }
        let procfs = ProcFs::new(&config.startup.proc_root)?;
        let server = Server::open(&config.startup.socket_path, &config.allowed_uids)?;
        let heartbeat = Arc::new(Heartbeat::new(config.startup.watchdog_timeout_ms as u64)?);
        Ok(Machine {
            tunables: Tunables::from_config(&config),
            settings,
            server,
            reg: Registry::new(table, procfs, AppMemcg::from_config(&config)?),
            source: None,
            parked: None,
            source_failures: 0,
            loader,
            reload: clients::Reloads::default(),
            policy: policy::State::new(),
            report,
            history: History::default(),
            inflight: None,
            reaper_jobs: ReaperJobs::default(),
            polling: Polling {
                until_ms: 0,
                level: None,
                interval_ms: 100,
            },
            heartbeat,
            candidate_dirty: false,
            boot_completed: false,
            self_pid: std::process::id() as i32,
            exit: false,
            told_no_victim: false,
            control: control::Publisher::detached(&config)?,
            config,
        })
    }

    /// Handles one input at `now_ns` (CLOCK_MONOTONIC, read once per wakeup).
    pub fn step(&mut self, input: Input, now_ns: u64, io: &mut dyn Edges) {
        match input {
            Input::Pressure(p) => self.on_pressure(p, now_ns, io),
            Input::PressureLost => self.on_pressure_lost(io),
            Input::Loaded => self.on_loaded(io),
            Input::Timer => self.on_timer(now_ns, io),
            Input::Listen => self.on_listen(now_ns, io),
            Input::Client { slot, hup } => self.on_client(slot, hup, now_ns, io),
            Input::Reaped(done) => self.on_reaped(done, io),
            Input::VictimExited => self.on_victim_exit(now_ns, io),
            Input::Signal(signo) => self.on_signal(signo),
            Input::Control => match self.control.serve(&self.reg.table) {
                control::Ask::Reload => self.request_reload(None),
                control::Ask::Apply(new) => self.request_apply(new),
                control::Ask::Nothing => {}
            },
        }
    }

    /// Once per wakeup, after its inputs: work worth batching.
    pub fn settle(&mut self) {
        if self.candidate_dirty {
            self.publish_candidate();
        }
        self.control.tick(&self.reg.table, &self.report);
    }

    /// A signal asked the daemon to stop.
    pub fn exiting(&self) -> bool {
        self.exit
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The heartbeat the watchdog reads.
    pub fn heartbeat(&self) -> Arc<Heartbeat> {
        self.heartbeat.clone()
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// The kill in flight, if any.
    pub fn inflight(&self) -> Option<&InFlight> {
        self.inflight.as_ref()
    }

    pub fn props(&self) -> &dyn PropertySource {
        self.settings.props.as_ref()
    }

    pub fn registry(&self) -> &Registry {
        &self.reg
    }

    pub fn source(&self) -> Option<&Source> {
        self.source.as_ref()
    }

    pub fn listener(&self) -> BorrowedFd<'_> {
        self.server.listener()
    }

    /// The loader thread's doorbell (watched as `Token::Loader`).
    pub fn loader_fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.loader.as_fd()
    }

    /// Publishes to a control socket from now on (see `control::start`).
    pub fn attach_control(&mut self, p: control::Publisher) {
        self.control = p;
    }

    /// The control socket's doorbell, for the event loop.
    pub fn control_doorbell(&self) -> BorrowedFd<'_> {
        self.control.doorbell()
    }

    // ---- pressure monitors ----------------------------------------------

    /// Starts watching `given`, the parked source, or the source the
    /// config names (opening that one allocates: start-up and error paths).
    pub fn start_monitors(&mut self, given: Option<Source>, io: &mut dyn Edges) -> io::Result<()> {
        if self.source.is_some() {
            return Ok(());
        }
        let src = match given.or_else(|| self.parked.take()) {
            Some(s) => s,
            None => Source::from_config(&self.config)?,
        };
        self.arm(src, io)
    }

    /// Watches `src` and says what is armed (through the report thread).
    /// A source that cannot be watched goes to the loader to be closed.
    fn arm(&mut self, src: Source, io: &mut dyn Edges) -> io::Result<()> {
        let failed = src.fds().find_map(|(fd, pressure, urgent)| {
            io.watch(fd, Token::Pressure(pressure), urgent).err()
        });
        if let Some(e) = failed {
            self.retire(src, io);
            return Err(io::Error::other(format!("epoll add pressure source: {e}")));
        }
        self.report.note(Note::Monitor(src.kind()));
        self.source = Some(src);
        Ok(())
    }

    fn stop_monitors(&mut self, io: &mut dyn Edges) {
        if let Some(src) = self.source.take() {
            self.retire(src, io);
        }
    }

    /// Takes `src` out of the epoll set and hands it to the loader: the
    /// core does not close PSI triggers (see [`Leftovers::Source`]).
    fn retire(&mut self, src: Source, io: &mut dyn Edges) {
        for (fd, _, _) in src.fds() {
            io.unwatch(fd);
        }
        self.loader.free(Leftovers::Source(src));
    }

    // ---- pressure --------------------------------------------------------

    fn on_pressure(&mut self, p: Pressure, now_ns: u64, io: &mut dyn Edges) {
        let now_ms = now_ns / 1_000_000;
        // A weaker event inside the window of a stronger one adds nothing.
        let polling = now_ms < self.polling.until_ms;
        if polling
            && self
                .polling
                .level
                .is_some_and(|l| strength(p) < strength(l))
        {
            return;
        }
        self.polling.level = Some(p);
        self.polling.until_ms = now_ms + POLL_WINDOW_MS;
        self.told_no_victim = false;
        self.evaluate(p, now_ns, io);
        io.set_timer(Some(self.polling.interval_ms.max(1)));
    }

    fn on_timer(&mut self, now_ns: u64, io: &mut dyn Edges) {
        if now_ns / 1_000_000 >= self.polling.until_ms && self.inflight.is_none() {
            self.polling.level = None;
            io.set_timer(None);
            return;
        }
        self.evaluate(Pressure::Poll, now_ns, io);
        io.set_timer(Some(self.polling.interval_ms.max(1)));
    }

    /// Snapshot -> policy -> (maybe) victim -> reaper; then, with any
    /// signal sent, the slower reads the next look will use.
    fn evaluate(&mut self, p: Pressure, now_ns: u64, io: &mut dyn Edges) {
        self.decide_and_kill(p, now_ns, io);
        let hold_ms = u64::from(self.config.watermark_hold_ms);
        io.refresh_watermarks(now_ns / 1_000_000, hold_ms);
    }

    fn decide_and_kill(&mut self, p: Pressure, now_ns: u64, io: &mut dyn Edges) {
        let now_ms = now_ns / 1_000_000;
        let timeout_ms = self.config.kill_timeout_ms as u64;
        if let Some((pid, waited_ms)) = self.reaper_jobs.newly_stuck(now_ns, timeout_ms) {
            // Logged once; the reaper's own pidfd copy lets it finish (or
            // not) on its own: nothing here waits for it.
            self.report.note(Note::ReaperStuck { pid, waited_ms });
        }
        if self
            .inflight
            .as_ref()
            .is_some_and(|k| k.announcement_overdue(now_ns, timeout_ms))
        {
            // The reaper has not read the name in time (stuck on an
            // earlier victim, or on this one's mmap lock): announce with
            // comm.
            self.announce(Name::EMPTY, Counters::UNKNOWN);
        }
        if let Some(k) = &mut self.inflight {
            if k.blocks_next_kill(now_ns, timeout_ms) {
                self.polling.interval_ms = policy::PollInterval::Fast.ms();
                return;
            }
            // (A dry-run victim was never signalled: nothing to say.)
            if let Some(waited_ms) = k.time_out(now_ns, timeout_ms) {
                if k.pidfd().is_some() {
                    self.report.note(Note::ExitTimeout {
                        pid: k.victim.pid,
                        waited_ms,
                    });
                }
            }
        }
        self.control.pressure(p as usize);
        let snap = match io.snapshot(now_ms) {
            Ok(s) => s,
            Err(e) => {
                self.report.note(Note::SnapshotFailed(e));
                return;
            }
        };
        while let Some(d) = io.degradation() {
            self.report.note(Note::SnapshotDegraded(d));
        }
        let d = match self.level_decision(p, &snap) {
            Some(d) => d,
            None => policy::decide(
                &snap,
                p,
                &self.tunables,
                &self.reg.targets,
                &mut self.policy,
            ),
        };
        self.control
            .evaluated(p, &snap, &d, &self.tunables, &self.reg);
        self.polling.interval_ms = d.poll.ms();
        if d.extend_poll {
            self.polling.until_ms = self.polling.until_ms.max(now_ms + POLL_WINDOW_MS);
        }
        let Some(kill) = d.kill else { return };
        self.finish_inflight(io);
        let rules = Rules {
            min_adj: kill.min_adj,
            kill_heaviest_task: self.config.kill_heaviest_task,
            self_pid: self.self_pid,
        };
        let mut stale = Stale::default();
        let memcg = self.reg.memcg.as_ref();
        let chosen = victim::select(&self.reg.table, &self.reg.procfs, memcg, rules, &mut stale);
        for &pid in stale.as_slice() {
            self.reg.forget(pid);
            self.report.note(Note::Stale { pid });
            self.candidate_dirty = true;
        }
        let Some(victim) = chosen else {
            if !self.told_no_victim {
                self.told_no_victim = true;
                self.report.note(Note::NoVictim {
                    kill,
                    figures: d.figures,
                });
            }
            return;
        };
        let handles = if self.settings.dry_run {
            Handles::default()
        } else {
            // The record leaves the table now: it must not be chosen twice.
            let Some((_, handles)) = self.reg.table.remove(victim.pid) else {
                return;
            };
            self.heartbeat.withdraw(victim.pid);
            self.candidate_dirty = true;
            handles
        };
        // Its other descriptors close after the signal, not before.
        let Handles { pidfd, oom_adj, .. } = handles;
        // The signal first, from this thread: nothing queues before it.
        // A dry run signals nobody (its "victim" never exits: it holds the
        // next kill back for kill_timeout_ms, as one slow to die would).
        let signal = if self.settings.dry_run {
            Signal::Sent { at_ns: now_ns }
        } else {
            io.trace_kill(
                victim.pid,
                kill.reason.code(),
                victim.adj,
                kill.min_adj,
                d.figures.max_thrashing_pct.min(i64::MAX as u64) as i64,
            );
            let sent = io.signal(victim.pid, pidfd.as_ref().map(AsFd::as_fd));
            io.trace_end();
            match sent {
                Ok(at_ns) => Signal::Sent { at_ns },
                Err(errno) => Signal::Failed { errno },
            }
        };
        drop(oom_adj);
        let k = InFlight::new(victim, kill, d.figures, snap, now_ns, pidfd, signal);
        self.kill(k, now_ns, io);
    }

    /// After the signal: count it, watch for the exit, and give the reaper
    /// the name read and the release. The announcement waits for the name.
    fn kill(&mut self, k: InFlight, now_ns: u64, io: &mut dyn Edges) {
        self.polling.interval_ms = policy::PollInterval::Fast.ms();
        let at_ns = match k.signal() {
            Signal::Sent { at_ns } => at_ns,
            Signal::Failed { errno } => {
                // Nothing to wait for; the next poll may choose again.
                self.report.note(Note::KillFailed {
                    pid: k.victim.pid,
                    errno,
                });
                return;
            }
        };
        if !self.settings.dry_run {
            // Counted at the signal, so GETKILLCNT never lags a PROCKILL.
            self.reg.kills.add(k.victim.adj);
            self.policy.on_kill(&k.snap, &k.decision);
            self.control.policy_killed(&k.snap);
        }
        if let Some(fd) = k.pidfd() {
            let _ = io.watch(fd, Token::Victim, false);
        }
        // The reaper gets its own copy of the pidfd, so this kill can be
        // forgotten whatever the reaper is doing.
        let job = reaper::Job::new(k.victim.pid, k.pidfd(), self.settings.dry_run).signalled(at_ns);
        self.inflight = Some(k);
        self.polling.until_ms = self
            .polling
            .until_ms
            .max(now_ns / 1_000_000 + POLL_WINDOW_MS);
        let pid = self.inflight.as_ref().map_or(0, |k| k.victim.pid);
        if io.submit(job) {
            self.reaper_jobs.add(pid, at_ns);
        } else {
            // No name will come: announce with comm now.
            self.announce(Name::EMPTY, Counters::UNKNOWN);
        }
    }
}
