//! The loader thread: the slow work a command or a failure asks of the
//! daemon, done off the core. It re-reads the configuration (UPDATE_PROPS,
//! SIGHUP) and re-opens a pressure source that reported an error; both read
//! files, format text and allocate, which the core must not.
//!
//! The core pushes a [`Request`] (Copy) into a ring and carries on; the
//! loader answers with an [`Outcome`] in a queue and rings a doorbell the
//! core's epoll watches. The core then only swaps in what was built here.
//! The loader keeps its own copy of the configuration in force (it made
//! every one after the first), so it can log what a reload changes. What a
//! swap replaced comes back here to be freed: `free` may trim the heap, a
//! syscall the core does not make. So does a pressure source the core
//! stops watching: closing a PSI trigger waits in the kernel.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;

use crate::config::Config;
use crate::control::shared::Published;
use crate::props::PropertySource;
use crate::protect;
use crate::psi::{Source, Thresholds};
use crate::ring;
use crate::sys;

/// What the core asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Re-read the file and the properties. `psi`: the core's monitor is
    /// PSI, so changed thresholds need new triggers.
    Reload { psi: bool },
    /// Put in force the configuration handed over with [`Loader::apply`]
    /// (the control socket's `config set`), as a reload would.
    Apply { psi: bool },
    /// The pressure source reported an error and was dropped. `psi`: try
    /// the configured PSI triggers first (the first failure); otherwise go
    /// to vmpressure.
    Reopen { psi: bool },
    /// Free what [`Loader::free`] handed over (no outcome).
    Free,
}

/// What the loader built.
pub enum Outcome {
    /// The new configuration (start-up keys kept), a copy of it for the
    /// control socket, the allowed uids for the server, and new PSI
    /// triggers when their thresholds changed. `applied`: it answers
    /// [`Request::Apply`], not a reload.
    Reloaded {
        config: Box<Config>,
        published: Box<Published>,
        uids: Vec<u32>,
        triggers: Option<Source>,
        applied: bool,
    },
    /// The reload was refused (logged): the running configuration stays.
    Rejected { applied: bool },
    /// A fresh pressure source to arm.
    Reopened(Source),
    /// No pressure source could be opened (logged).
    NoSource,
}

/// What the core let go of, for the loader to free or close.
pub enum Leftovers {
    /// What a reload replaced.
    Config {
        config: Box<Config>,
        uids: Vec<u32>,
        /// The control socket's copy; None while the control thread held
        /// it out (it frees it then).
        published: Option<Box<Published>>,
    },
    /// A pressure source out of the epoll set (replaced, failed, or not
    /// wanted). Closing a PSI trigger waits for an RCU grace period in
    /// the kernel (`psi_trigger_destroy`): 8-16 ms a trigger on the
    /// development machine, three triggers to a source.
    Source(Source),
}

struct Shared {
    done: Mutex<VecDeque<Outcome>>,
    /// Leftovers to free, at most QUEUE (capacity reserved at start).
    bin: Mutex<Vec<Leftovers>>,
    /// The configuration an [`Request::Apply`] puts in force.
    apply: Mutex<Option<Box<Config>>>,
    bell: OwnedFd,
}

impl Shared {
    /// Answers every request queued, in order.
    fn serve(&self, rx: &ring::Receiver<Request>, work: &mut Work, freeing: &mut Vec<Leftovers>) {
        while let Some(req) = rx.pop() {
            let o = match req {
                // Emptied here, not on waking: the core fills the bin
                // before it asks, so what it asked for is in.
                Request::Free => {
                    std::mem::swap(&mut *lock(&self.bin), freeing);
                    freeing.clear();
                    continue;
                }
                Request::Reload { psi } => work.reload(psi),
                Request::Apply { psi } => {
                    // Taken in its own statement: a guard in the match
                    // scrutinee would live through `install` (file opens,
                    // log writes that can block on logd), and the core's
                    // next `apply` would wait for it.
                    let next = lock(&self.apply).take();
                    match next {
                        Some(c) => work.install(*c, psi, true),
                        None => Outcome::Rejected { applied: true },
                    }
                }
                Request::Reopen { psi } => work.reopen(psi),
            };
            lock(&self.done).push_back(o);
            let one: u64 = 1;
            // SAFETY: 8-byte write to our eventfd.
            unsafe {
                libc::write(
                    self.bell.as_raw_fd(),
                    &one as *const u64 as *const libc::c_void,
                    8,
                )
            };
        }
    }
}

/// The core's end.
pub struct Loader {
    tx: ring::Sender<Request>,
    shared: Arc<Shared>,
}

/// Requests queued at most (one reload and one reopen are ever in flight).
const QUEUE: usize = 8;

impl Loader {
    /// Starts the thread with the configuration in force.
    pub fn start(
        config: Config,
        path: Option<PathBuf>,
        props: Arc<dyn PropertySource>,
        on_start: fn(&'static str),
    ) -> io::Result<Loader> {
        let (loader, rx) = Loader::unstarted()?;
        let mut work = Work {
            current: config,
            path,
            props,
        };
        let out = loader.shared.clone();
        let b = thread::Builder::new()
            .name("lmkd-loader".into())
            .stack_size(256 * 1024);
        protect::spawn_demand_paged(b, move || {
            on_start("loader");
            // Swapped with the shared bin, so the core always finds one
            // with room and the lock is not held while freeing.
            let mut freeing: Vec<Leftovers> = Vec::with_capacity(QUEUE);
            loop {
                rx.wait(-1);
                rx.ack();
                out.serve(&rx, &mut work, &mut freeing);
            }
        })
        .map_err(|e| io::Error::new(e.kind(), format!("spawn loader thread: {e}")))?;
        Ok(loader)
    }

    /// The core's end and the request ring's other end, with no thread
    /// reading it yet.
    fn unstarted() -> io::Result<(Loader, ring::Receiver<Request>)> {
        let (tx, rx) = ring::channel::<Request>(QUEUE)?;
        // SAFETY: eventfd(2) with valid flags; checked below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(sys::SysError::last("eventfd for the loader").into());
        }
        let shared = Arc::new(Shared {
            done: Mutex::new(VecDeque::with_capacity(QUEUE)),
            bin: Mutex::new(Vec::with_capacity(QUEUE)),
            apply: Mutex::new(None),
            // SAFETY: fresh descriptor we own.
            bell: unsafe { OwnedFd::from_raw_fd(fd) },
        });
        Ok((Loader { tx, shared }, rx))
    }

    /// Queues a request; false if the queue is full (never blocks).
    pub fn ask(&self, r: Request) -> bool {
        self.tx.push(r)
    }

    /// Hands over what the core let go of, to be freed or closed on the
    /// loader thread. Without room (QUEUE hand-overs the loader has not yet
    /// woken for) it is dropped here: never in practice.
    pub fn free(&self, old: Leftovers) {
        let mut bin = lock(&self.shared.bin);
        if bin.len() < bin.capacity() {
            bin.push(old);
            drop(bin);
            // A full request ring drops this request (and counts it): what
            // it asked for stays in the bin until the next one empties it.
            let _ = self.tx.push(Request::Free);
        } else {
            drop(bin);
            drop(old);
        }
    }

    /// Hands over a configuration to put in force (a later one replaces
    /// one not yet taken); false if the request queue is full, and then it
    /// is not put in force later either: the slot is left as it was, so a
    /// request already queued cannot install what the caller was told was
    /// refused.
    pub fn apply(&self, c: Box<Config>, psi: bool) -> bool {
        if !self.tx.has_room() {
            self.free_config(c);
            return false;
        }
        let superseded = lock(&self.shared.apply).replace(c);
        // Queued before the superseded one is handed over: that hand-over
        // asks for a Free, which must not take the last slot from this.
        let queued = self.tx.push(Request::Apply { psi });
        if let Some(config) = superseded {
            self.free_config(config);
        }
        queued
    }

    /// A configuration the core never put in force, freed on the loader
    /// like any replaced one.
    fn free_config(&self, config: Box<Config>) {
        self.free(Leftovers::Config {
            config,
            uids: Vec::new(),
            published: None,
        });
    }

    /// Clears the doorbell; call before draining with `take`.
    pub fn ack(&self) {
        let mut v: u64 = 0;
        // SAFETY: 8-byte read from our non-blocking eventfd.
        unsafe {
            libc::read(
                self.shared.bell.as_raw_fd(),
                &mut v as *mut u64 as *mut libc::c_void,
                8,
            )
        };
    }

    /// The next finished outcome. The lock is only ever held for a push or
    /// a pop, and the queue has its capacity already: no allocation here.
    pub fn take(&self) -> Option<Outcome> {
        lock(&self.shared.done).pop_front()
    }
}

impl AsFd for Loader {
    /// The doorbell, for the core's epoll set.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.shared.bell.as_fd()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The loader thread's state.
struct Work {
    current: Config,
    path: Option<PathBuf>,
    props: Arc<dyn PropertySource>,
}

impl Work {
    /// All or nothing: a bad file or value keeps the running configuration.
    fn reload(&mut self, psi: bool) -> Outcome {
        match Config::load(self.path.as_deref(), self.props.as_ref()) {
            Ok((c, _warnings)) => self.install(c, psi, false),
            Err(e) => {
                log::error!("reload failed, keeping the running configuration: {e}");
                Outcome::Rejected { applied: false }
            }
        }
    }

    /// A loaded (validated) configuration goes in force, start-up keys
    /// kept: log what changes, open new triggers if their thresholds did.
    fn install(&mut self, new: Config, psi: bool, applied: bool) -> Outcome {
        let (new, kept) = self.current.reloaded(new);
        for key in kept {
            log::warn!("reload: {key} changes only at restart; keeping the running value");
        }
        for (key, from, to) in self.current.changes(&new) {
            log::info!("reload: {key} {from} -> {to}");
        }
        let changed = Thresholds::of(&new) != Thresholds::of(&self.current);
        let triggers = if psi && changed {
            match Source::psi(&new.startup.psi_path, Thresholds::of(&new)) {
                Ok(s) => Some(s),
                Err(e) => {
                    log::error!("re-arming PSI triggers after reload (keeping the old ones): {e}");
                    None
                }
            }
        } else {
            None
        };
        crate::logging::set_debug(new.debug);
        self.current = new.clone();
        log::info!("configuration reloaded");
        // Only visible when the new level really is in force.
        log::debug!("debug logging is on");
        Outcome::Reloaded {
            uids: new.allowed_uids.clone(),
            published: Published::new(new.clone()),
            config: Box::new(new),
            triggers,
            applied,
        }
    }

    /// A source that failed: the configured PSI triggers again (on the
    /// first failure), else vmpressure, else monitoring stops.
    fn reopen(&self, psi: bool) -> Outcome {
        let c = &self.current;
        let s = &c.startup;
        if psi && s.use_psi {
            match Source::psi(&s.psi_path, Thresholds::of(c)) {
                Ok(src) => {
                    log::warn!("pressure source reported an error: re-created the PSI triggers");
                    return Outcome::Reopened(src);
                }
                Err(e) => log::error!(
                    "pressure source reported an error and re-creating the PSI triggers failed \
                     ({e}): falling back to memcg v1 vmpressure on {}",
                    s.vmpressure_memcg.display()
                ),
            }
        } else {
            log::error!(
                "pressure source reported an error again: falling back to memcg v1 vmpressure on {}",
                s.vmpressure_memcg.display()
            );
        }
        match Source::vmpressure(&s.vmpressure_memcg) {
            Ok(src) => Outcome::Reopened(src),
            Err(e) => {
                log::error!(
                    "no pressure source left ({e}): memory pressure is no longer monitored"
                );
                Outcome::NoSource
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A loader's state with the default configuration and no sources.
    fn idle_work() -> Work {
        Work {
            current: Config::default(),
            path: None,
            props: Arc::new(crate::props::NoProperties),
        }
    }

    fn config_with_timeout(ms: u32) -> Box<Config> {
        Box::new(Config {
            kill_timeout_ms: ms,
            ..Config::default()
        })
    }

    /// What the core hands back is freed by the loader, every time, even
    /// when handed over back to back.
    #[test]
    fn leftovers_are_freed_on_the_loader() {
        let props: Arc<dyn PropertySource> = Arc::new(crate::props::NoProperties);
        let l = Loader::start(Config::default(), None, props, |_| {}).unwrap();
        for round in 0..50 {
            for _ in 0..2 {
                l.free(Leftovers::Config {
                    config: Box::default(),
                    uids: vec![1000, 1001],
                    published: Some(Published::new(Config::default())),
                });
            }
            let end = Instant::now() + Duration::from_secs(5);
            while !lock(&l.shared.bin).is_empty() {
                assert!(Instant::now() < end, "round {round}: leftovers not freed");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// The Free request, not the wake-up, empties the bin: a hand-over
    /// queued after the loader woke is freed by the pass that reads its
    /// request, with nothing timed (7674e26 fixed a loader that emptied
    /// the bin on waking and then read that request with nothing to do).
    #[test]
    fn a_free_request_empties_the_bin_in_the_pass_that_reads_it() {
        let (l, rx) = Loader::unstarted().unwrap();
        let mut work = idle_work();
        let mut freeing = Vec::with_capacity(QUEUE);
        // The loader has woken; only now does the core hand over.
        l.free(Leftovers::Config {
            config: Box::default(),
            uids: vec![1000],
            published: None,
        });
        l.shared.serve(&rx, &mut work, &mut freeing);
        assert!(
            lock(&l.shared.bin).is_empty(),
            "the leftovers outlived the pass that read their request"
        );
        assert!(rx.pop().is_none(), "a request was left unread");
    }

    /// Holds every record logged from a thread named [`HELD_THREAD`] until
    /// the test lets it go; records from other threads are dropped.
    struct Gate {
        state: Mutex<(bool, bool)>, // (a record is held, let it go)
        cv: std::sync::Condvar,
    }

    const HELD_THREAD: &str = "loader-held-log";

    impl log::Log for Gate {
        fn enabled(&self, _: &log::Metadata) -> bool {
            true
        }
        fn log(&self, _: &log::Record) {
            if std::thread::current().name() != Some(HELD_THREAD) {
                return;
            }
            let mut st = lock(&self.state);
            st.0 = true;
            self.cv.notify_all();
            while !st.1 {
                st = self.cv.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        }
        fn flush(&self) {}
    }

    static GATE: Gate = Gate {
        state: Mutex::new((false, false)),
        cv: std::sync::Condvar::new(),
    };

    /// While the loader installs a `config set` (here: stuck writing its
    /// first log line, as on a slow logd), the slot the core hands the
    /// next one into stays free, so the core's `apply` never waits on it.
    #[test]
    fn the_apply_slot_is_free_while_a_configuration_is_installed() {
        log::set_logger(&GATE).expect("another logger is installed in the lib's unit tests");
        log::set_max_level(log::LevelFilter::Info);
        let (l, rx) = Loader::unstarted().unwrap();
        assert!(l.apply(config_with_timeout(1), false));
        let shared = l.shared.clone();
        let serving = std::thread::Builder::new()
            .name(HELD_THREAD.into())
            .spawn(move || {
                let mut work = idle_work();
                let mut freeing = Vec::with_capacity(QUEUE);
                shared.serve(&rx, &mut work, &mut freeing);
            })
            .unwrap();
        let held = {
            let st = lock(&GATE.state);
            let (st, _) = GATE
                .cv
                .wait_timeout_while(st, Duration::from_secs(5), |s| !s.0)
                .unwrap_or_else(|p| p.into_inner());
            st.0
        };
        let free = l.shared.apply.try_lock().is_ok();
        lock(&GATE.state).1 = true;
        GATE.cv.notify_all();
        serving.join().unwrap();
        assert!(held, "the loader logged nothing while installing");
        assert!(
            free,
            "the apply slot stayed locked while the loader installed"
        );
    }

    /// A `config set` that replaces one the loader has not taken yet
    /// leaves the older one in the bin for the loader to free, so the core
    /// never frees a configuration; the newer one is what gets applied.
    #[test]
    fn a_superseded_configuration_goes_to_the_bin() {
        let (l, _rx) = Loader::unstarted().unwrap();
        assert!(l.apply(config_with_timeout(1), true));
        assert!(lock(&l.shared.bin).is_empty());
        assert!(l.apply(config_with_timeout(2), true));
        match lock(&l.shared.bin).as_slice() {
            [Leftovers::Config { config, .. }] => assert_eq!(config.kill_timeout_ms, 1),
            other => panic!("{} leftovers in the bin, not the first config", other.len()),
        }
        let next = lock(&l.shared.apply).take().map(|c| c.kill_timeout_ms);
        assert_eq!(next, Some(2));
    }

    /// A `config set` refused for a full request queue is not left in the
    /// apply slot, where an Apply already queued would put it in force
    /// after the control client was told it was refused.
    #[test]
    fn a_refused_configuration_is_never_put_in_force() {
        let (l, rx) = Loader::unstarted().unwrap();
        assert!(l.apply(config_with_timeout(1), false));
        while l.ask(Request::Free) {}
        assert!(
            !l.apply(config_with_timeout(2), false),
            "a full queue took it"
        );
        let mut work = idle_work();
        let mut freeing = Vec::with_capacity(QUEUE);
        l.shared.serve(&rx, &mut work, &mut freeing);
        assert_eq!(
            work.current.kill_timeout_ms, 1,
            "the queued Apply installed the refused configuration"
        );
    }

    /// With one slot left, a `config set` that replaces one not yet taken
    /// gets it: the hand-over of the replaced one must not take it first
    /// and leave the new configuration in the slot, refused.
    #[test]
    fn the_last_queue_slot_goes_to_the_apply() {
        let (l, rx) = Loader::unstarted().unwrap();
        assert!(l.apply(config_with_timeout(1), false));
        for _ in 2..QUEUE {
            assert!(l.ask(Request::Free));
        }
        assert!(
            l.apply(config_with_timeout(2), false),
            "the last slot went elsewhere"
        );
        let mut work = idle_work();
        let mut freeing = Vec::with_capacity(QUEUE);
        l.shared.serve(&rx, &mut work, &mut freeing);
        assert_eq!(work.current.kill_timeout_ms, 2);
    }

    /// A pressure source handed over is closed, not kept in the bin: the
    /// read end of a pipe standing in for one of its descriptors hangs up.
    #[test]
    fn a_source_handed_over_is_closed() {
        let props: Arc<dyn PropertySource> = Arc::new(crate::props::NoProperties);
        let l = Loader::start(Config::default(), None, props, |_| {}).unwrap();
        let mut p = [0i32; 2];
        // SAFETY: pipe2 into an array of two ints; checked below.
        assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: eventfd with valid flags; checked below.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        assert!(efd >= 0);
        // SAFETY: fresh descriptors we own.
        let (read, write, other) = unsafe {
            (
                OwnedFd::from_raw_fd(p[0]),
                OwnedFd::from_raw_fd(p[1]),
                OwnedFd::from_raw_fd(efd),
            )
        };
        l.free(Leftovers::Source(Source::Counters {
            medium: write,
            critical: other,
            _level: None,
        }));
        let mut pfd = libc::pollfd {
            fd: read.as_raw_fd(),
            events: 0,
            revents: 0,
        };
        // SAFETY: one valid pollfd; POLLHUP comes when the write end closes.
        let n = unsafe { libc::poll(&mut pfd, 1, 5000) };
        assert!(
            n == 1 && pfd.revents & libc::POLLHUP != 0,
            "the handed-over source is still open after 5 s"
        );
    }
}
