//! The core: one thread, one epoll set. Every wakeup is one of: a client
//! command, a pressure event, the polling timer, a reaper completion, a
//! victim's exit, or a signal. Pressure flows one way:
//! event -> snapshot -> policy -> victim -> reaper -> report.
//!
//! After `Daemon::new` returns, nothing here allocates: buffers, rings,
//! the table and the epoll event array all exist already.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use crate::commands::{Effect, Registry};
use crate::config::Config;
use crate::policy::{self, Pressure, Tunables};
use crate::props::PropertySource;
use crate::proto;
use crate::psi::Source;
use crate::reaper::{self, Reaper, Release};
use crate::report::{History, KillRecord, Note, Reporter};
use crate::server::{self, Accepted, Incoming, Server};
use crate::snapshot::{self, Snapshot};
use crate::sys::{self, ProcFs};
use crate::table::ProcTable;
use crate::victim::{self, Rules, Stale, Victim};
use crate::watchdog::{self, Heartbeat};

// epoll tokens.
const T_LISTEN: u64 = 0;
const T_SIGNAL: u64 = 1;
const T_PARTIAL: u64 = 2;
const T_COMPLETE: u64 = 3;
const T_TIMER: u64 = 4;
const T_REAPER: u64 = 5;
const T_VICTIM: u64 = 6;
const T_CONN: u64 = 16;

/// After a pressure event, keep re-checking for this long (as lmkd).
const POLL_WINDOW_MS: u64 = 1000;

/// How the daemon is run; everything else comes from the config.
pub struct Options {
    pub config_path: Option<PathBuf>,
    pub dry_run: bool,
    /// Handle SIGTERM/SIGINT/SIGHUP through a signalfd (the binary does;
    /// in-process tests do not).
    pub signals: bool,
    /// A pressure source made by the caller (tests inject events); None
    /// opens PSI (or vmpressure) from the config.
    pub source: Option<Source>,
    /// Runs first on every thread the daemon starts, and on the core
    /// thread when `run` begins (tests watch allocations with it).
    pub on_thread_start: fn(&'static str),
    pub props: Box<dyn PropertySource>,
}

fn no_hook(_: &'static str) {}

impl Options {
    pub fn new(config_path: Option<PathBuf>, props: Box<dyn PropertySource>) -> Options {
        Options {
            config_path,
            dry_run: false,
            signals: true,
            source: None,
            on_thread_start: no_hook,
            props,
        }
    }
}

/// A kill that has been handed to the reaper and not yet finished.
struct InFlight {
    victim: Victim,
    pidfd: Option<OwnedFd>,
    kill: policy::Kill,
    figures: policy::Figures,
    snap: Snapshot,
    /// CLOCK_MONOTONIC of the wakeup that read the pressure event.
    event_ns: u64,
    /// The reaper reported the signal.
    signalled: bool,
    /// CLOCK_MONOTONIC when the signal went out; 0 until reported.
    signal_ns: u64,
    /// The reaper is done with the pidfd.
    reaped: bool,
    exited: bool,
    timed_out: bool,
}

/// Re-check timer state after a pressure event.
struct Polling {
    timer: TimerFd,
    until_ms: u64,
    level: Option<Pressure>,
    interval_ms: u64,
}

pub struct Daemon {
    config: Config,
    tunables: Tunables,
    opts: Options,
    epoll: Epoll,
    server: Server,
    reg: Registry,
    source: Option<Source>,
    reader: snapshot::Reader,
    policy: policy::State,
    reaper: Reaper,
    report: Reporter,
    history: History,
    inflight: Option<InFlight>,
    polling: Polling,
    signals: Option<SignalFd>,
    heartbeat: Arc<Heartbeat>,
    candidate_dirty: bool,
    boot_completed: bool,
    self_pid: i32,
    exit: bool,
    /// A NoVictim note was sent for the current pressure window.
    told_no_victim: bool,
    watermarks_fresh: bool,
}

fn ctx<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> io::Error {
    move |e| io::Error::other(format!("{what}: {e}"))
}

impl Daemon {
    /// Sets everything up: socket, table, pressure source, readers, threads.
    /// All allocation happens here.
    pub fn new(config: Config, mut opts: Options) -> io::Result<Daemon> {
        // Block the handled signals before any thread exists, so they all
        // inherit the mask and the signals reach only the signalfd.
        let signals = if opts.signals {
            Some(signal_fd()?)
        } else {
            None
        };
        let hook = opts.on_thread_start;
        let report = Reporter::start(hook)?;
        let table = ProcTable::new(config.max_procs as usize).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("process table of {} entries: {e}", config.max_procs),
            )
        })?;
        if !table.locked() {
            log::warn!("could not lock the process table in memory; continuing unlocked");
        }
        let procfs = ProcFs::new(&config.proc_root)?;
        let server = Server::open(&config.socket_path, &config.allowed_uids)?;
        let reader = snapshot::Reader::open(&config.proc_root, &config.psi_path)?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(ctx("epoll_create1"))?;
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .map_err(ctx("timerfd_create"))?;
        let reaper = Reaper::start(hook)?;
        let heartbeat = Arc::new(Heartbeat::default());
        watchdog::start(heartbeat.clone(), config.watchdog_timeout_ms as u64, hook)?;

        let add = |fd: BorrowedFd<'_>, flags: EpollFlags, token: u64, what: &'static str| {
            epoll
                .add(fd, EpollEvent::new(flags, token))
                .map_err(ctx(what))
        };
        add(
            server.listener(),
            EpollFlags::EPOLLIN,
            T_LISTEN,
            "epoll add listener",
        )?;
        add(
            timer.as_fd(),
            EpollFlags::EPOLLIN,
            T_TIMER,
            "epoll add timer",
        )?;
        add(
            reaper.as_fd(),
            EpollFlags::EPOLLIN,
            T_REAPER,
            "epoll add reaper",
        )?;
        if let Some(s) = &signals {
            add(
                s.as_fd(),
                EpollFlags::EPOLLIN,
                T_SIGNAL,
                "epoll add signalfd",
            )?;
        }

        let tunables = Tunables::from_config(&config);
        let source = opts.source.take();
        let mut d = Daemon {
            tunables,
            opts,
            epoll,
            server,
            reg: Registry::new(table, procfs),
            source: None,
            reader,
            policy: policy::State::new(),
            reaper,
            report,
            history: History::default(),
            inflight: None,
            polling: Polling {
                timer,
                until_ms: 0,
                level: None,
                interval_ms: 100,
            },
            signals,
            heartbeat,
            candidate_dirty: false,
            boot_completed: false,
            self_pid: std::process::id() as i32,
            exit: false,
            told_no_victim: false,
            watermarks_fresh: false,
            config,
        };
        if let Some(src) = source {
            d.start_monitors(Some(src))?;
        } else if !d.config.delay_monitors_until_boot {
            d.start_monitors(None)?;
        } else {
            log::info!("pressure monitors delayed until START_MONITORING or boot completion");
        }
        // First read sizes nothing new but fails early on unreadable files.
        d.reader.refresh_watermarks();
        if let Err(e) = d.reader.read(sys::monotonic_ms()) {
            return Err(io::Error::other(format!("first memory snapshot: {e}")));
        }
        let _ = d.opts.props.set("sys.lmk.reportkills", "1");
        Ok(d)
    }

    fn start_monitors(&mut self, given: Option<Source>) -> io::Result<()> {
        if self.source.is_some() {
            return Ok(());
        }
        let src = match given {
            Some(s) => s,
            None => Source::open(
                &self.config.psi_path,
                self.config.psi_partial_stall_ms,
                self.config.psi_complete_stall_ms,
                &self.config.vmpressure_memcg,
            )?,
        };
        for (i, (fd, _, pri)) in src.fds().into_iter().enumerate() {
            let flags = if pri {
                EpollFlags::EPOLLPRI
            } else {
                EpollFlags::EPOLLIN
            };
            self.epoll
                .add(fd, EpollEvent::new(flags, T_PARTIAL + i as u64))
                .map_err(ctx("epoll add pressure source"))?;
        }
        log::info!("pressure monitor: {}", src.describe());
        self.source = Some(src);
        Ok(())
    }

    /// The heartbeat the watchdog reads (tests use it).
    pub fn heartbeat(&self) -> Arc<Heartbeat> {
        self.heartbeat.clone()
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// Runs until SIGTERM/SIGINT.
    pub fn run(&mut self) -> io::Result<()> {
        (self.opts.on_thread_start)("core");
        let mut events = [EpollEvent::empty(); 16];
        while !self.exit {
            let n = match self.epoll.wait(&mut events, EpollTimeout::NONE) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(io::Error::other(format!("epoll_wait: {e}"))),
            };
            let wake_ns = sys::monotonic_ns();
            self.heartbeat.enter(wake_ns / 1_000_000);
            for ev in &events[..n] {
                self.dispatch(ev.data(), ev.events(), wake_ns);
            }
            if self.candidate_dirty {
                self.publish_candidate();
            }
            self.heartbeat.leave();
        }
        log::info!("exiting on signal");
        Ok(())
    }

    fn dispatch(&mut self, token: u64, flags: EpollFlags, wake_ns: u64) {
        match token {
            T_LISTEN => loop {
                // A client that sent and hung up still holds its slot until
                // we read it; do that first so a newcomer is not refused
                // for nothing and the hung-up client's commands still apply.
                if self.server.connections() == server::MAX_CONNECTIONS {
                    for slot in 0..server::MAX_CONNECTIONS {
                        if self.server.hung_up(slot) {
                            self.on_client(slot, EpollFlags::EPOLLHUP);
                        }
                    }
                }
                match self.server.accept(&self.report) {
                    Accepted::Slot(slot) => {
                        if let Some(fd) = self.server.conn_fd(slot) {
                            let ev = EpollEvent::new(EpollFlags::EPOLLIN, T_CONN + slot as u64);
                            if self.epoll.add(fd, ev).is_err() {
                                self.server.close(slot);
                            }
                        }
                    }
                    Accepted::Refused => {}
                    Accepted::None => break,
                }
            },
            T_SIGNAL => self.on_signal(),
            T_PARTIAL | T_COMPLETE => {
                let p = if token == T_PARTIAL {
                    Pressure::Partial
                } else {
                    Pressure::Complete
                };
                if flags.contains(EpollFlags::EPOLLERR) {
                    self.report
                        .note(Note::Info("pressure source reported an error (gone?)"));
                    self.stop_monitors();
                    return;
                }
                if let Some(s) = &self.source {
                    s.ack(p);
                }
                self.on_pressure(p, wake_ns);
            }
            T_TIMER => {
                let _ = self.polling.timer.wait();
                self.on_timer(wake_ns);
            }
            T_REAPER => self.on_reaped(),
            T_VICTIM => self.on_victim_exit(),
            t if t >= T_CONN && t < T_CONN + server::MAX_CONNECTIONS as u64 => {
                self.on_client((t - T_CONN) as usize, flags);
            }
            _ => {}
        }
    }

    fn stop_monitors(&mut self) {
        if let Some(src) = self.source.take() {
            for (fd, _, _) in src.fds() {
                let _ = self.epoll.delete(fd);
            }
        }
    }

    // ---- clients -------------------------------------------------------

    /// Reads every queued packet before acting on a hang-up, so a client
    /// that sends and closes at once still gets its command applied.
    fn on_client(&mut self, slot: usize, flags: EpollFlags) {
        let mut buf = [0u8; server::RECV_BUF];
        let gone = loop {
            match self.server.recv(slot, &mut buf) {
                Incoming::Packet { len, creds, .. } => {
                    if !self.on_packet(slot, &buf[..len.min(buf.len())], len, creds) {
                        break Some(None);
                    }
                }
                Incoming::NoCredentials => {
                    let peer = self.server.conn(slot).map_or(-1, |c| c.peer);
                    let uid = self.server.conn(slot).map_or(0, |c| c.uid);
                    self.report.note(Note::Connection {
                        peer,
                        uid,
                        what: crate::report::ConnEvent::NoCredentials,
                    });
                    break Some(None);
                }
                Incoming::Gone(what) => break Some(Some(what)),
                Incoming::Empty => break None,
            }
        };
        let hup =
            flags.intersects(EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR | EpollFlags::EPOLLRDHUP);
        if gone.is_some() || hup {
            if let Some(fd) = self.server.conn_fd(slot) {
                let _ = self.epoll.delete(fd);
            }
            let uid = self.server.conn(slot).map_or(0, |c| c.uid);
            if let Some(peer) = self.server.close(slot) {
                // Ownership is per client process: another connection of
                // the same process keeps its records.
                if !self.server.has_peer(peer) {
                    self.reg.disown(peer);
                }
                if let Some(Some(what)) = gone {
                    self.report.note(Note::Connection { peer, uid, what });
                }
            }
        }
    }

    /// Returns false when the connection must be closed.
    fn on_packet(&mut self, slot: usize, buf: &[u8], len: usize, creds: sys::Creds) -> bool {
        let Some(conn) = self.server.conn(slot) else {
            return false;
        };
        let peer = conn.peer;
        // The connection may have been handed to another process (fds can
        // be passed): the sender of this very packet must be allowed too.
        if !self.server.uid_allowed(creds.uid) {
            self.report.note(Note::Connection {
                peer: creds.pid,
                uid: creds.uid,
                what: crate::report::ConnEvent::UidNotAllowed,
            });
            return false;
        }
        let decoded = if len > proto::MAX_PACKET {
            Err(proto::DecodeError::TooLong { len })
        } else {
            proto::decode(buf)
        };
        let cmd = match decoded {
            Ok(cmd) => cmd,
            Err(err) => {
                self.report.note(Note::Malformed { peer, err });
                // Beyond lmkd: a command that has a reply gets one, so the
                // client does not hang waiting.
                if let Some(id) = proto::peek_id(buf).filter(|&id| proto::has_reply(id)) {
                    self.reply(slot, id, -1);
                }
                return true;
            }
        };
        self.candidate_dirty = true;
        let now_ms = sys::monotonic_ms();
        match self.reg.apply(&cmd, peer, now_ms, &self.report) {
            Effect::None => {}
            Effect::Reply(id, v) => self.reply(slot, id, v),
            Effect::Reload => {
                let r = if self.reload() { 0 } else { -1 };
                self.reply(slot, proto::id::UPDATE_PROPS, r);
            }
            Effect::StartMonitoring => {
                if let Err(e) = self.start_monitors(None) {
                    log::error!("START_MONITORING: {e}");
                }
            }
            Effect::BootCompleted => {
                let r = self.boot_completed_reply();
                self.reply(slot, proto::id::BOOT_COMPLETED, r);
            }
            Effect::Subscribe { stats } => {
                if let Some(c) = self.server.conn_mut(slot) {
                    if stats {
                        c.subscribed_stats = true;
                    } else {
                        c.subscribed_kills = true;
                    }
                }
            }
            Effect::TargetsChanged => self.publish_targets(),
        }
        true
    }

    fn reply(&self, slot: usize, id: i32, value: i32) {
        let mut out = [0u8; 8];
        self.server
            .send(slot, proto::encode_reply(id, value, &mut out));
    }

    fn boot_completed_reply(&mut self) -> i32 {
        // On Android, lmkd answers -1 until init says boot is complete.
        if cfg!(target_os = "android")
            && self.opts.props.get("sys.boot_completed").as_deref() != Some("1")
        {
            return -1;
        }
        if self.boot_completed {
            return 1;
        }
        self.boot_completed = true;
        if self.config.delay_monitors_until_boot {
            if let Err(e) = self.start_monitors(None) {
                log::error!("starting monitors at boot completion: {e}");
            }
        }
        0
    }

    /// `sys.lmk.minfree_levels` = "minfree:adj,..." as lmkd publishes it.
    fn publish_targets(&self) {
        let levels: Vec<String> = self
            .reg
            .targets
            .as_slice()
            .iter()
            .map(|t| format!("{}:{}", t.minfree, t.adj))
            .collect();
        if let Err(e) = self
            .opts
            .props
            .set("sys.lmk.minfree_levels", &levels.join(","))
        {
            log::warn!("setting sys.lmk.minfree_levels: {e}");
        }
    }

    /// UPDATE_PROPS / SIGHUP: re-read everything; apply all or nothing.
    fn reload(&mut self) -> bool {
        let new = match Config::load(self.opts.config_path.as_deref(), self.opts.props.as_ref()) {
            Ok((c, _warnings)) => c,
            Err(e) => {
                log::error!("reload failed, keeping the running configuration: {e}");
                return false;
            }
        };
        let mut new = new;
        for key in self.config.restart_only_changes(&new) {
            log::warn!("reload: {key} changes only at restart; keeping the running value");
        }
        new.max_procs = self.config.max_procs;
        new.socket_path = self.config.socket_path.clone();
        new.psi_path = self.config.psi_path.clone();
        new.proc_root = self.config.proc_root.clone();
        new.vmpressure_memcg = self.config.vmpressure_memcg.clone();
        let triggers_changed = new.psi_partial_stall_ms != self.config.psi_partial_stall_ms
            || new.psi_complete_stall_ms != self.config.psi_complete_stall_ms;
        self.server.set_allowed_uids(&new.allowed_uids);
        crate::logging::set_debug(new.debug);
        self.tunables = Tunables::from_config(&new);
        self.config = new;
        if triggers_changed && matches!(self.source, Some(Source::Psi { .. })) {
            self.stop_monitors();
            if let Err(e) = self.start_monitors(None) {
                log::error!("re-arming PSI triggers after reload: {e}");
            }
        }
        log::info!("configuration reloaded");
        // Only visible when the new level really is in force.
        log::debug!("debug logging is on");
        true
    }

    fn on_signal(&mut self) {
        loop {
            let Some(Ok(Some(info))) = self.signals.as_ref().map(|s| s.read_signal()) else {
                return;
            };
            match info.ssi_signo as i32 {
                libc::SIGHUP => {
                    self.reload();
                }
                _ => self.exit = true,
            }
        }
    }

    // ---- pressure ------------------------------------------------------

    fn on_pressure(&mut self, p: Pressure, wake_ns: u64) {
        let now_ms = wake_ns / 1_000_000;
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
        self.evaluate(p, wake_ns);
        self.arm_timer();
    }

    fn on_timer(&mut self, wake_ns: u64) {
        if wake_ns / 1_000_000 >= self.polling.until_ms && self.inflight.is_none() {
            self.polling.level = None;
            let _ = self.polling.timer.unset();
            return;
        }
        self.evaluate(Pressure::Poll, wake_ns);
        self.arm_timer();
    }

    fn arm_timer(&mut self) {
        let ms = self.polling.interval_ms.max(1);
        let t = TimeSpec::from_duration(std::time::Duration::from_millis(ms));
        let _ = self
            .polling
            .timer
            .set(Expiration::OneShot(t), TimerSetTimeFlags::empty());
    }

    /// Snapshot -> policy -> (maybe) victim -> reaper.
    fn evaluate(&mut self, p: Pressure, wake_ns: u64) {
        let now_ms = wake_ns / 1_000_000;
        if let Some(k) = &mut self.inflight {
            // One kill at a time, until the victim exits or kill_timeout_ms
            // have passed since the signal (not since the event: under
            // load the signal itself can take a while to go out).
            let waited = match k.signal_ns {
                0 => 0,
                ns => now_ms.saturating_sub(ns / 1_000_000),
            };
            if !k.exited && !k.timed_out && waited < self.config.kill_timeout_ms as u64 {
                self.polling.interval_ms = policy::PollInterval::Fast.ms();
                return;
            }
            if !k.exited && !k.timed_out {
                k.timed_out = true;
                // (A dry-run victim was never signalled: nothing to say.)
                if k.pidfd.is_some() {
                    self.report.note(Note::ExitTimeout {
                        pid: k.victim.pid,
                        waited_ms: waited,
                    });
                }
            }
        }
        if !self.watermarks_fresh {
            // Zone watermarks are re-read once a minute; the first pressure
            // event (and so the first kill) gets current ones.
            self.watermarks_fresh = true;
            self.reader.refresh_watermarks();
        }
        let snap = match self.reader.read(now_ms) {
            Ok(s) => *s,
            Err(e) => {
                self.report.note(Note::SnapshotFailed(e));
                return;
            }
        };
        while let Some(d) = self.reader.take_degradation() {
            self.report.note(Note::SnapshotDegraded(d));
        }
        let d = policy::decide(
            &snap,
            p,
            &self.tunables,
            &self.reg.targets,
            &mut self.policy,
        );
        self.polling.interval_ms = d.poll.ms();
        if d.extend_poll {
            self.polling.until_ms = self.polling.until_ms.max(now_ms + POLL_WINDOW_MS);
        }
        let Some(kill) = d.kill else { return };
        if self.inflight.as_ref().is_some_and(|k| !k.reaped) {
            // The reaper still holds the previous victim's pidfd.
            return;
        }
        self.finish_inflight();
        let rules = Rules {
            min_adj: kill.min_adj,
            kill_heaviest_task: self.config.kill_heaviest_task,
            self_pid: self.self_pid,
        };
        let mut stale = Stale::default();
        let chosen = victim::select(&self.reg.table, &self.reg.procfs, rules, &mut stale);
        for &pid in stale.as_slice() {
            self.reg.forget(pid);
            self.report.note(Note::Stale { pid });
            self.candidate_dirty = true;
        }
        let Some(victim) = chosen else {
            if !self.told_no_victim {
                self.told_no_victim = true;
                self.report.note(Note::NoVictim {
                    min_adj: kill.min_adj,
                    reason_text: kill.reason.text(),
                });
            }
            return;
        };
        self.kill(victim, kill, d.figures, snap, wake_ns);
    }

    fn kill(
        &mut self,
        victim: Victim,
        kill: policy::Kill,
        figures: policy::Figures,
        snap: Snapshot,
        wake_ns: u64,
    ) {
        let dry_run = self.opts.dry_run;
        let (pidfd, raw) = if dry_run {
            let raw = self.reg.table.get(victim.pid).map_or(-1, |p| p.pidfd);
            (None, raw)
        } else {
            // The record leaves the table now: it must not be chosen twice.
            let Some(rec) = self.reg.table.remove(victim.pid) else {
                return;
            };
            self.candidate_dirty = true;
            // SAFETY: the record owned this pidfd; ownership moves here.
            let fd = unsafe { OwnedFd::from_raw_fd(rec.pidfd) };
            (Some(fd), rec.pidfd)
        };
        if let Some(fd) = &pidfd {
            let _ = self
                .epoll
                .add(fd.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, T_VICTIM));
        }
        self.inflight = Some(InFlight {
            victim,
            pidfd,
            kill,
            figures,
            snap,
            event_ns: wake_ns,
            signalled: false,
            signal_ns: 0,
            reaped: false,
            exited: false,
            timed_out: false,
        });
        self.polling.interval_ms = policy::PollInterval::Fast.ms();
        self.polling.until_ms = self
            .polling
            .until_ms
            .max(wake_ns / 1_000_000 + POLL_WINDOW_MS);
        if !self.reaper.submit(reaper::Job {
            pid: victim.pid,
            pidfd: raw,
            dry_run,
        }) {
            self.report.note(Note::KillFailed {
                pid: victim.pid,
                errno: libc::EAGAIN,
            });
        }
    }

    /// The reaper signalled (and released) a victim: count, notify, log.
    fn on_reaped(&mut self) {
        self.reaper.ack();
        while let Some(done) = self.reaper.next_done() {
            let Some(k) = self.inflight.as_mut().filter(|k| k.victim.pid == done.pid) else {
                continue;
            };
            if !k.signalled {
                // The first report of a job: the signal went out (or not).
                // Count and announce the kill now, not after the release.
                k.signalled = true;
                k.signal_ns = done.signal_ns;
                // A dry-run "victim" never exits: it holds the next kill back
                // for kill_timeout_ms, as a real one that is slow to die would.
                if done.signal_errno != 0 {
                    k.exited = true;
                }
                let (v, kill, figures, snap, event_ns) =
                    (k.victim, k.kill, k.figures, k.snap, k.event_ns);
                if done.signal_errno != 0 {
                    self.report.note(Note::KillFailed {
                        pid: done.pid,
                        errno: done.signal_errno,
                    });
                } else {
                    self.report_kill(&v, &kill, &figures, done.signal_ns, event_ns);
                    if !self.opts.dry_run {
                        self.policy.on_kill(&snap, &kill);
                    }
                }
            }
            if done.finished {
                if let Some(k) = self.inflight.as_mut() {
                    k.reaped = true;
                }
                match done.release {
                    Release::Unsupported => self.report.note(Note::ReleaseFailed {
                        pid: done.pid,
                        errno: libc::ENOSYS,
                    }),
                    Release::Failed(e) => self.report.note(Note::ReleaseFailed {
                        pid: done.pid,
                        errno: e,
                    }),
                    _ => {}
                }
            }
        }
        if self.inflight.as_ref().is_some_and(|k| k.exited) {
            self.finish_inflight();
        }
    }

    fn on_victim_exit(&mut self) {
        let now = sys::monotonic_ms();
        if let Some(k) = &mut self.inflight {
            if let Some(fd) = &k.pidfd {
                let _ = self.epoll.delete(fd.as_fd());
            }
            k.exited = true;
            // From the signal; from the event if its report is still queued.
            let from = if k.signal_ns > 0 {
                k.signal_ns
            } else {
                k.event_ns
            };
            let ms = now.saturating_sub(from / 1_000_000);
            self.history.set_exit(k.victim.pid, ms);
            self.report.note(Note::Exited {
                pid: k.victim.pid,
                time_to_exit_ms: ms,
            });
        }
        if self.inflight.as_ref().is_some_and(|k| k.reaped) {
            self.finish_inflight();
        }
    }

    /// Forgets the in-flight kill once the reaper is done with its pidfd.
    fn finish_inflight(&mut self) {
        if let Some(k) = &self.inflight {
            if !k.reaped {
                return;
            }
            if let Some(fd) = &k.pidfd {
                let _ = self.epoll.delete(fd.as_fd());
            }
        }
        self.inflight = None;
    }

    fn report_kill(
        &mut self,
        v: &Victim,
        kill: &policy::Kill,
        f: &policy::Figures,
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
        let dry_run = self.opts.dry_run;
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
        let mut rec = KillRecord::new(signal_ns / 1_000_000, &stat);
        rec.pid = v.pid;
        rec.reason_text = kill.reason.text();
        rec.rss_kb = v.rss_kb;
        rec.swap_kb = v.swap_kb;
        rec.event_to_signal_us = signal_ns.saturating_sub(event_ns) / 1000;
        rec.dry_run = dry_run;
        self.history.push(rec);
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
            Some(p) => self
                .heartbeat
                .set_candidate(watchdog::dup(p.pidfd).map(|fd| (p.pid, p.adj as i32, fd))),
            None => self.heartbeat.set_candidate(None),
        }
    }
}

/// Blocks the signals we handle and returns a signalfd for them.
fn signal_fd() -> io::Result<SignalFd> {
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        mask.add(s);
    }
    mask.thread_block().map_err(ctx("block signals"))?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(ctx("signalfd"))
}
