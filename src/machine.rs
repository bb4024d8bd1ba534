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

use std::io;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::sync::Arc;

use crate::commands::Registry;
use crate::config::Config;
use crate::control;
use crate::history::{History, KillRecord};
use crate::kill::{InFlight, Signal};
use crate::memcg::AppMemcg;
use crate::policy::{self, Pressure, Tunables};
use crate::props::PropertySource;
use crate::proto;
use crate::psi::Source;
use crate::reaper::{self, Release};
use crate::report::{Note, Reporter};
use crate::server::Server;
use crate::snapshot::{ReadError, Snapshot};
use crate::sys::ProcFs;
use crate::table::ProcTable;
use crate::token::Token;
use crate::victim::{self, Rules, Stale, Victim};
use crate::watchdog::Heartbeat;

/// After a pressure event, keep re-checking for this long (as lmkd).
pub const POLL_WINDOW_MS: u64 = 1000;

/// One thing that happened, as the event loop decoded it.
#[derive(Clone, Copy, Debug)]
pub enum Input {
    /// A pressure trigger fired (already acknowledged).
    Pressure(Pressure),
    /// A pressure trigger reported an error: the source is gone.
    PressureLost,
    /// The polling timer expired.
    Timer,
    /// The listening socket has connections waiting.
    Listen,
    /// A client connection is readable, or hung up. The machine reads its
    /// packets itself (the one input that is readiness, not data).
    Client { slot: usize, hup: bool },
    /// A report from the reaper.
    Reaped(reaper::Done),
    /// The in-flight victim's pidfd became readable: it exited.
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
    /// Re-reads the zone watermarks later snapshots carry.
    fn refresh_watermarks(&mut self);
    fn snapshot(&mut self, now_ms: u64) -> Result<Snapshot, ReadError>;
    /// Hands a kill to the reaper; false if it cannot take it.
    fn submit(&mut self, job: reaper::Job) -> bool;
}

/// What the machine needs beyond the config.
pub struct Settings {
    /// The file a reload re-reads.
    pub config_path: Option<PathBuf>,
    pub dry_run: bool,
    pub props: Box<dyn PropertySource>,
    /// Runs first on the logging thread.
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
    policy: policy::State,
    report: Reporter,
    history: History,
    inflight: Option<InFlight>,
    polling: Polling,
    heartbeat: Arc<Heartbeat>,
    candidate_dirty: bool,
    boot_completed: bool,
    self_pid: i32,
    exit: bool,
    /// A NoVictim note was sent for the current pressure window.
    told_no_victim: bool,
    watermarks_fresh: bool,
    /// What the control socket reads (detached until one is attached).
    control: control::Publisher,
}

impl Machine {
    /// Opens the socket and the table and starts the logging thread; all
    /// allocation happens here. Pressure monitors start separately.
    pub fn new(config: Config, settings: Settings) -> io::Result<Machine> {
        let report = Reporter::start(settings.on_thread_start)?;
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
        Ok(Machine {
            tunables: Tunables::from_config(&config),
            settings,
            server,
            reg: Registry::new(table, procfs, AppMemcg::from_config(&config)?),
            source: None,
            policy: policy::State::new(),
            report,
            history: History::default(),
            inflight: None,
            polling: Polling {
                until_ms: 0,
                level: None,
                interval_ms: 100,
            },
            heartbeat: Arc::new(Heartbeat::default()),
            candidate_dirty: false,
            boot_completed: false,
            self_pid: std::process::id() as i32,
            exit: false,
            told_no_victim: false,
            watermarks_fresh: false,
            control: control::Publisher::detached(&config)?,
            config,
        })
    }

    /// Handles one input at `now_ns` (CLOCK_MONOTONIC, read once per wakeup).
    pub fn step(&mut self, input: Input, now_ns: u64, io: &mut dyn Edges) {
        match input {
            Input::Pressure(p) => self.on_pressure(p, now_ns, io),
            Input::PressureLost => {
                self.report
                    .note(Note::Info("pressure source reported an error (gone?)"));
                self.stop_monitors(io);
            }
            Input::Timer => self.on_timer(now_ns, io),
            Input::Listen => self.on_listen(now_ns, io),
            Input::Client { slot, hup } => self.on_client(slot, hup, now_ns, io),
            Input::Reaped(done) => self.on_reaped(done, io),
            Input::VictimExited => self.on_victim_exit(now_ns, io),
            Input::Signal(signo) => self.on_signal(signo, io),
            Input::Control => match self.control.serve(&self.reg.table) {
                control::Ask::Reload => _ = self.reload(io),
                control::Ask::Apply(new) => _ = self.apply_config(*new, io),
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

    /// Publishes to a control socket from now on (see `control::start`).
    pub fn attach_control(&mut self, p: control::Publisher) {
        self.control = p;
    }

    /// The control socket's doorbell, for the event loop.
    pub fn control_doorbell(&self) -> BorrowedFd<'_> {
        self.control.doorbell()
    }

    // ---- pressure monitors ----------------------------------------------

    /// Starts watching `given`, or the source the config names.
    pub fn start_monitors(&mut self, given: Option<Source>, io: &mut dyn Edges) -> io::Result<()> {
        if self.source.is_some() {
            return Ok(());
        }
        let src = match given {
            Some(s) => s,
            None => Source::open(
                &self.config.startup.psi_path,
                self.config.psi_partial_stall_ms,
                self.config.psi_complete_stall_ms,
                &self.config.startup.vmpressure_memcg,
            )?,
        };
        for (fd, pressure, urgent) in src.fds() {
            io.watch(fd, Token::Pressure(pressure), urgent)
                .map_err(|e| io::Error::other(format!("epoll add pressure source: {e}")))?;
        }
        log::info!("pressure monitor: {}", src.describe());
        self.source = Some(src);
        Ok(())
    }

    fn stop_monitors(&mut self, io: &mut dyn Edges) {
        if let Some(src) = self.source.take() {
            for (fd, _, _) in src.fds() {
                io.unwatch(fd);
            }
        }
    }

    // ---- pressure --------------------------------------------------------

    fn on_pressure(&mut self, p: Pressure, now_ns: u64, io: &mut dyn Edges) {
        let now_ms = now_ns / 1_000_000;
        // A partial event inside the window of a complete one adds nothing.
        if p == Pressure::Partial
            && self.polling.level == Some(Pressure::Complete)
            && now_ms < self.polling.until_ms
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

    /// Snapshot -> policy -> (maybe) victim -> reaper.
    fn evaluate(&mut self, p: Pressure, now_ns: u64, io: &mut dyn Edges) {
        let now_ms = now_ns / 1_000_000;
        let timeout_ms = self.config.kill_timeout_ms as u64;
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
        if !self.watermarks_fresh {
            // Zone watermarks are re-read once a minute; the first pressure
            // event (and so the first kill) gets current ones.
            self.watermarks_fresh = true;
            io.refresh_watermarks();
        }
        self.control.pressure(p as usize);
        let snap = match io.snapshot(now_ms) {
            Ok(s) => s,
            Err(e) => {
                self.report.note(Note::SnapshotFailed(e));
                return;
            }
        };
        let d = policy::decide(
            &snap,
            p,
            &self.tunables,
            &self.reg.targets,
            &mut self.policy,
        );
        self.control
            .evaluated(p, &snap, &d, &self.tunables, &self.reg);
        self.polling.interval_ms = d.poll.ms();
        if d.extend_poll {
            self.polling.until_ms = self.polling.until_ms.max(now_ms + POLL_WINDOW_MS);
        }
        let Some(kill) = d.kill else { return };
        if self.inflight.as_ref().is_some_and(InFlight::holds_reaper) {
            // The reaper still holds the previous victim's pidfd.
            return;
        }
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
        let pidfd = if self.settings.dry_run {
            None
        } else {
            // The record leaves the table now: it must not be chosen twice.
            let Some((_, handles)) = self.reg.table.remove(victim.pid) else {
                return;
            };
            self.candidate_dirty = true;
            handles.pidfd
        };
        let k = InFlight::new(victim, kill, d.figures, snap, now_ns, pidfd);
        self.kill(k, now_ns, io);
    }

    fn kill(&mut self, k: InFlight, now_ns: u64, io: &mut dyn Edges) {
        if let Some(fd) = k.pidfd() {
            let _ = io.watch(fd, Token::Victim, false);
        }
        // The reaper gets its own copy of the pidfd (or kills by pid when
        // the kernel gave none); a dry run signals nobody.
        let job = reaper::Job::new(k.victim.pid, k.pidfd(), self.settings.dry_run);
        let pid = k.victim.pid;
        self.inflight = Some(k);
        self.polling.interval_ms = policy::PollInterval::Fast.ms();
        self.polling.until_ms = self
            .polling
            .until_ms
            .max(now_ns / 1_000_000 + POLL_WINDOW_MS);
        if !io.submit(job) {
            self.report.note(Note::KillFailed {
                pid,
                errno: libc::EAGAIN,
            });
        }
    }

    /// A report from the reaper: the signal went out (count, notify, log),
    /// and/or the reaper is done with the pidfd.
    fn on_reaped(&mut self, done: reaper::Done, io: &mut dyn Edges) {
        if !self
            .inflight
            .as_ref()
            .is_some_and(|k| k.victim.pid == done.pid)
        {
            return;
        }
        self.signal_done(done.signal);
        if let Some(f) = done.finished {
            self.reap_done(f);
        }
        if self.inflight.as_ref().is_some_and(InFlight::is_over) {
            self.finish_inflight(io);
        }
    }

    /// The in-flight kill's signal went out at the given time, or failed
    /// with an errno. Only its first report counts: the kill is counted and
    /// announced now, not after the release. (A dry-run "victim" never
    /// exits: it holds the next kill back for kill_timeout_ms, as a real
    /// one slow to die would.)
    fn signal_done(&mut self, result: Result<u64, i32>) {
        let Some(k) = self.inflight.as_mut() else {
            return;
        };
        if !k.on_signal_done(result) {
            return;
        }
        let (v, kill, figures, snap, event_ns) =
            (k.victim, k.decision, k.figures, k.snap, k.event_ns);
        match result {
            Err(errno) => self.report.note(Note::KillFailed { pid: v.pid, errno }),
            Ok(signal_ns) => {
                self.report_kill(&v, &kill, &figures, &snap, signal_ns, event_ns);
                if !self.settings.dry_run {
                    self.policy.on_kill(&snap, &kill);
                    self.control.policy_killed(&snap);
                }
            }
        }
    }

    /// The reaper is done with the in-flight victim's pidfd.
    fn reap_done(&mut self, f: reaper::Finished) {
        let Some(k) = self.inflight.as_mut() else {
            return;
        };
        k.on_reaped();
        let pid = k.victim.pid;
        let errno = match f.release {
            Release::Released => {
                let from = match k.signal() {
                    Signal::Sent { at_ns } => at_ns,
                    _ => f.at_ns,
                };
                let ms = f.at_ns.saturating_sub(from) / 1_000_000;
                self.control.reaped(pid, from, f.at_ns);
                self.report.note(Note::Reaped { pid, ms });
                return;
            }
            // lmkd reports a victim already on its way out as a failure.
            Release::AlreadyExiting => libc::ESRCH,
            Release::Unsupported => libc::ENOSYS,
            Release::Failed(e) => e,
            Release::Skipped => return,
        };
        self.report.note(Note::ReleaseFailed { pid, errno });
    }

    fn on_victim_exit(&mut self, now_ns: u64, io: &mut dyn Edges) {
        if let Some(k) = &mut self.inflight {
            if let Some(fd) = k.pidfd() {
                io.unwatch(fd);
            }
            let ms = k.on_exit(now_ns);
            self.history.set_exit(k.victim.pid, ms);
            self.control.exited(k.victim.pid, ms);
            self.report.note(Note::Exited {
                pid: k.victim.pid,
                time_to_exit_ms: ms,
            });
        }
        if self.inflight.as_ref().is_some_and(InFlight::is_over) {
            self.finish_inflight(io);
        }
    }

    /// Forgets the in-flight kill once the reaper is done with its pidfd.
    fn finish_inflight(&mut self, io: &mut dyn Edges) {
        if let Some(k) = &self.inflight {
            if k.holds_reaper() {
                return;
            }
            if let Some(fd) = k.pidfd() {
                io.unwatch(fd);
            }
        }
        self.inflight = None;
    }

    fn report_kill(
        &mut self,
        v: &Victim,
        kill: &policy::Kill,
        f: &policy::Figures,
        snap: &Snapshot,
        signal_ns: u64,
        event_ns: u64,
    ) {
        let mut stat = v.stat;
        stat.min_oom_score = kill.min_adj;
        stat.reason = kill.reason.code();
        stat.free_mem_kb = f.free_kb.min(i32::MAX as u64) as i32;
        stat.free_swap_kb = f.free_swap_kb.min(i32::MAX as u64) as i32;
        stat.thrashing = f.thrashing_pct as i32;
        stat.max_thrashing = f.max_thrashing_pct as i32;
        let dry_run = self.settings.dry_run;
        if !dry_run {
            self.reg.kills.add(v.adj);
            // Stats first, then the kill notification, as AMS expects.
            let mut buf = [0u8; proto::STAT_MAX_LEN];
            let n = proto::encode_kill_stat(&stat, &mut buf);
            self.server.broadcast(true, &buf[..n], &self.report);
            let mut pk = [0u8; proto::PROCKILL_LEN];
            let rss = v.rss_kb.min(i32::MAX as u64) as i32;
            self.server.broadcast(
                false,
                proto::encode_prockill(v.pid, v.uid, rss, &mut pk),
                &self.report,
            );
        }
        let mut rec = KillRecord::new(signal_ns / 1_000_000, v.pid, *kill, *f);
        rec.uid = v.uid;
        rec.adj = v.adj;
        rec.set_name(stat.name());
        rec.mem = snap.mem;
        rec.psi = snap.psi;
        rec.minfree_kb = self
            .reg
            .targets
            .as_slice()
            .iter()
            .find(|l| l.adj == kill.min_adj)
            .map_or(0, |l| {
                (l.minfree.max(0) as u64).saturating_mul(self.tunables.page_kb)
            });
        rec.rss_kb = v.rss_kb;
        rec.swap_kb = v.swap_kb;
        rec.event_to_signal_us = signal_ns.saturating_sub(event_ns) / 1000;
        rec.dry_run = dry_run;
        self.history.push(rec);
        self.control.kill(&rec);
        self.report.note(Note::Kill(rec));
    }

    /// Gives the watchdog a pidfd of the least important process.
    fn publish_candidate(&mut self) {
        self.candidate_dirty = false;
        let found = (proto::OOM_ADJ_MIN..=proto::OOM_ADJ_MAX)
            .rev()
            .find_map(|adj| {
                self.reg
                    .table
                    .iter_adj(adj as i16)
                    .find(|p| p.pid > 1 && p.pid != self.self_pid)
                    .copied()
            });
        let current = self.heartbeat.candidate_pid();
        match found {
            Some(p) if p.pid == current => {}
            Some(p) => self.heartbeat.set_candidate(
                (self.reg.table.pidfd(p.pid))
                    .and_then(|fd| fd.try_clone_to_owned().ok())
                    .map(|fd| (p.pid, p.adj as i32, fd)),
            ),
            None => self.heartbeat.set_candidate(None),
        }
    }
}
