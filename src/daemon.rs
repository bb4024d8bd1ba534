//! The core thread's event loop: one epoll set over the socket, the
//! pressure triggers, the poll timer, the reaper's completions, the
//! victim's pidfd and the signalfd. A wakeup reads the clock once, decodes
//! each ready descriptor into [`Input`]s and hands them to the
//! [`Machine`], which decides everything; this file only does the I/O.
//!
//! After `Daemon::new` returns, nothing here allocates: buffers, rings,
//! the table and the epoll event array all exist already.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::sync::Arc;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use crate::config::Config;
use crate::control;
use crate::history::History;
use crate::machine::{Edges, Input, Machine, Settings};
use crate::props::PropertySource;
use crate::psi::Source;
use crate::reaper::{self, Reaper};
use crate::report::trace::Marker;
use crate::snapshot::{self, ReadError, Snapshot};
use crate::sys;
use crate::token::Token;
use crate::watchdog::{self, Heartbeat, Kills};

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
    /// Control socket path; None: init's `lmkd_ctl`, else beside the data socket.
    pub control: Option<PathBuf>,
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
            control: None,
        }
    }
}

/// The machine's edges as the daemon has them.
struct Live {
    epoll: Epoll,
    timer: TimerFd,
    reader: snapshot::Reader,
    reaper: Reaper,
    /// tracefs `trace_marker`, opened once (inert without tracefs).
    trace: Marker,
}

impl Edges for Live {
    fn watch(&mut self, fd: BorrowedFd<'_>, token: Token, urgent: bool) -> io::Result<()> {
        let flags = if urgent {
            EpollFlags::EPOLLPRI
        } else {
            EpollFlags::EPOLLIN
        };
        self.epoll
            .add(fd, EpollEvent::new(flags, token.encode()))
            .map_err(io::Error::from)
    }

    fn unwatch(&mut self, fd: BorrowedFd<'_>) {
        let _ = self.epoll.delete(fd);
    }

    fn set_timer(&mut self, after_ms: Option<u64>) {
        let _ = match after_ms {
            Some(ms) => self.timer.set(
                Expiration::OneShot(TimeSpec::from_duration(std::time::Duration::from_millis(
                    ms,
                ))),
                TimerSetTimeFlags::empty(),
            ),
            None => self.timer.unset(),
        };
    }

    fn snapshot(&mut self, now_ms: u64) -> Result<Snapshot, ReadError> {
        self.reader.read(now_ms).copied()
    }

    fn refresh_watermarks(&mut self, now_ms: u64, hold_ms: u64) {
        self.reader.refresh_watermarks(now_ms, hold_ms);
    }

    fn degradation(&mut self) -> Option<crate::snapshot::Degradation> {
        self.reader.take_degradation()
    }

    fn signal(&mut self, pid: i32, pidfd: Option<BorrowedFd<'_>>) -> Result<u64, i32> {
        let sent = match pidfd {
            Some(fd) => sys::pidfd_send_signal(fd, libc::SIGKILL),
            None => sys::kill_pid(pid, libc::SIGKILL),
        };
        sent.map(|()| sys::monotonic_ns()).map_err(|e| e.errno)
    }

    fn trace_kill(&mut self, pid: i32, reason: i32, adj: i32, min_adj: i32, thr: i64) {
        self.trace.begin_kill(pid, reason, adj, min_adj, thr);
    }

    fn trace_end(&mut self) {
        self.trace.end();
    }

    fn submit(&mut self, job: reaper::Job) -> bool {
        self.reaper.submit(job)
    }
}

pub struct Daemon {
    machine: Machine,
    live: Live,
    /// Kills the watchdog made while the core was stuck.
    watchdog: Kills,
    signals: Option<SignalFd>,
    on_thread_start: fn(&'static str),
}

fn ctx<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> io::Error {
    move |e| io::Error::other(format!("{what}: {e}"))
}

impl Daemon {
    /// Sets everything up: socket, table, pressure source, readers, threads.
    /// All allocation happens here.
    pub fn new(config: Config, opts: Options) -> io::Result<Daemon> {
        // Block the handled signals before any thread exists, so they all
        // inherit the mask and the signals reach only the signalfd.
        let signals = if opts.signals {
            Some(signal_fd()?)
        } else {
            None
        };
        let hook = opts.on_thread_start;
        let control_path = opts.control;
        let settings = Settings {
            config_path: opts.config_path.clone(),
            dry_run: opts.dry_run,
            props: Arc::from(opts.props),
            on_thread_start: hook,
        };
        let mut machine = Machine::new(config, settings)?;
        let cfg = machine.config();
        let reader = snapshot::Reader::open(&cfg.startup.proc_root, &cfg.startup.psi_path)?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(ctx("epoll_create1"))?;
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .map_err(ctx("timerfd_create"))?;
        let reaper = Reaper::start(sys::ProcFs::new(&cfg.startup.proc_root)?, hook)?;
        let watchdog = watchdog::start(machine.heartbeat(), hook)?;
        let control = control::start(machine.config(), opts.config_path, control_path, hook)?;
        machine.attach_control(control);
        let mut live = Live {
            epoll,
            timer,
            reader,
            reaper,
            trace: Marker::open(),
        };
        let fixed = [
            (machine.listener(), Token::Listen, "epoll add listener"),
            (live.timer.as_fd(), Token::Timer, "epoll add timer"),
            (live.reaper.as_fd(), Token::Reaper, "epoll add reaper"),
            (
                machine.control_doorbell(),
                Token::Control,
                "epoll add control",
            ),
            (machine.loader_fd(), Token::Loader, "epoll add loader"),
            (watchdog.as_fd(), Token::Watchdog, "epoll add watchdog"),
        ];
        for (fd, token, what) in fixed {
            let ev = EpollEvent::new(EpollFlags::EPOLLIN, token.encode());
            live.epoll.add(fd, ev).map_err(ctx(what))?;
        }
        if let Some(s) = &signals {
            let ev = EpollEvent::new(EpollFlags::EPOLLIN, Token::Signal.encode());
            live.epoll.add(s, ev).map_err(ctx("epoll add signalfd"))?;
        }
        machine.start_or_park_monitors(opts.source, &mut live)?;
        // First read sizes nothing new but fails early on unreadable files.
        if let Err(e) = live.reader.read(sys::monotonic_ms()) {
            return Err(io::Error::other(format!("first memory snapshot: {e}")));
        }
        let _ = machine.props().set("sys.lmk.reportkills", "1");
        Ok(Daemon {
            machine,
            live,
            watchdog,
            signals,
            on_thread_start: hook,
        })
    }

    /// The heartbeat the watchdog reads (tests use it).
    pub fn heartbeat(&self) -> Arc<Heartbeat> {
        self.machine.heartbeat()
    }

    pub fn history(&self) -> &History {
        self.machine.history()
    }

    /// Runs until SIGTERM/SIGINT. Never inlined: the loop's code must stay
    /// a function of its own for the link to gather it with the kill path
    /// (`src/hot_text.ld`), apart from the start-up code of its caller.
    #[inline(never)]
    pub fn run(&mut self) -> io::Result<()> {
        (self.on_thread_start)("core");
        let mut events = [EpollEvent::empty(); 16];
        let heartbeat = self.machine.heartbeat();
        while !self.machine.exiting() {
            let n = match self.live.epoll.wait(&mut events, EpollTimeout::NONE) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(io::Error::other(format!("epoll_wait: {e}"))),
            };
            let now_ns = sys::monotonic_ns();
            heartbeat.enter(now_ns / 1_000_000);
            // Kills the watchdog made while the last wakeup was stuck come
            // first: their records must go before anything else reads them.
            self.take_watchdog_kills();
            for ev in &events[..n] {
                if let Some(token) = Token::decode(ev.data()) {
                    self.dispatch(token, ev.events(), now_ns);
                }
            }
            self.machine.settle();
            heartbeat.leave();
        }
        log::info!("exiting on signal");
        Ok(())
    }

    fn take_watchdog_kills(&mut self) {
        while let Some(k) = self.watchdog.next() {
            self.machine.watchdog_killed(&k);
        }
    }

    /// Turns one ready descriptor into inputs (reading what must be read
    /// to clear it) and steps the machine with each.
    fn dispatch(&mut self, token: Token, flags: EpollFlags, now_ns: u64) {
        let (m, live) = (&mut self.machine, &mut self.live);
        match token {
            Token::Listen => m.step(Input::Listen, now_ns, live),
            Token::Signal => {
                while let Some(Ok(Some(info))) = self.signals.as_ref().map(|s| s.read_signal()) {
                    m.step(Input::Signal(info.ssi_signo as i32), now_ns, live);
                }
            }
            Token::Pressure(p) => {
                if flags.contains(EpollFlags::EPOLLERR) {
                    m.step(Input::PressureLost, now_ns, live);
                    return;
                }
                if let Some(s) = m.source() {
                    s.ack(p);
                }
                m.step(Input::Pressure(p), now_ns, live);
            }
            Token::Timer => {
                let _ = live.timer.wait();
                m.step(Input::Timer, now_ns, live);
            }
            Token::Reaper => {
                live.reaper.ack();
                while let Some(done) = live.reaper.next_done() {
                    m.step(Input::Reaped(done), now_ns, live);
                }
            }
            Token::Victim => m.step(Input::VictimExited, now_ns, live),
            Token::Control => m.step(Input::Control, now_ns, live),
            Token::Loader => m.step(Input::Loaded, now_ns, live),
            Token::Watchdog => {
                self.watchdog.ack();
                self.take_watchdog_kills();
            }
            Token::Conn(slot) => {
                let hup = flags.intersects(
                    EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR | EpollFlags::EPOLLRDHUP,
                );
                m.step(Input::Client { slot, hup }, now_ns, live);
            }
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
