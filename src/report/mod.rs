//! Reporting: the core pushes fixed-size [`Note`]s into a bounded ring and
//! a logging thread hands each one to the outputs: text lines
//! ([`logline`]), and for kills lmkd's `killinfo` event ([`killinfo`]).
//! The core never formats and never waits: when the ring is full notes are
//! dropped and counted. Floods of one kind of warning are cut down on the
//! logging thread ([`limit`]). The atrace slice around the signal is the
//! one output that must run on the kill path itself ([`trace`]).
//!
//! A new output is a new module here and a line in [`Outputs::note`]; the
//! core and the kill history (`crate::history`) stay as they are.

use std::cell::Cell;
use std::io;
use std::sync::Arc;
use std::thread;

use crate::history::KillRecord;
use crate::props::PropertySource;
use crate::proto::{DecodeError, TargetTable};
use crate::psi;
use crate::ring;
use crate::sys;

pub mod killinfo;
pub mod limit;
pub mod logline;
pub mod publish;
pub mod trace;

/// Log target of kill lines (and on Android the tag of every line): Android
/// tools parse lines under this tag.
pub const KILL_TARGET: &str = "lowmemorykiller";

/// Why a command was not applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    AdjOutOfRange(i32),
    TypeOutOfRange(i32),
    BadPid,
    /// `Tgid != pid`: a thread, not a process.
    Thread(i32),
    /// The process could not be opened: it is gone.
    Dead(i32),
    /// The record belongs to another connection (its peer pid).
    NotOwner(i32),
    TableFull(usize),
    UnknownPid,
    BadEvent(i32),
    /// TARGET within 1 s of the previous one.
    RateLimited,
    BadTarget,
}

/// Why a connection was closed or refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnEvent {
    Accepted,
    TooMany,
    UidNotAllowed,
    NoCredentials,
    Closed,
    Error(i32),
}

/// Everything the core wants said. Copy and fixed-size by design: a kill
/// note is large (about 400 bytes), but boxing it would allocate on the core.
#[derive(Clone, Copy, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Note {
    Kill(KillRecord),
    /// Time to exit became known for an earlier kill.
    Exited {
        pid: i32,
        time_to_exit_ms: u64,
    },
    /// The victim did not exit within kill_timeout_ms.
    ExitTimeout {
        pid: i32,
        waited_ms: u64,
    },
    KillFailed {
        pid: i32,
        errno: i32,
    },
    /// `process_mrelease` returned: the victim's memory is back.
    Reaped {
        pid: i32,
        ms: u64,
    },
    /// The reaper still held a kill's job kill_timeout_ms after its signal
    /// (a release stuck on the victim's mmap lock); nothing waits for it.
    ReaperStuck {
        pid: i32,
        waited_ms: u64,
    },
    /// The reaper's memory release failed (ESRCH included: the victim was
    /// already tearing itself down) or is unsupported (ENOSYS).
    ReleaseFailed {
        pid: i32,
        errno: i32,
    },
    /// The policy decided to kill but found nobody at or above its min adj.
    NoVictim {
        kill: crate::policy::Kill,
        figures: crate::policy::Figures,
    },
    /// A registered process exited without PROCREMOVE and its record was dropped.
    Stale {
        pid: i32,
    },
    Refused {
        cmd: i32,
        pid: i32,
        peer: i32,
        why: Refusal,
    },
    OomAdjWriteFailed {
        pid: i32,
        errno: i32,
    },
    /// An app's per-app memcg soft limit could not be set.
    MemcgWriteFailed {
        pid: i32,
        uid: i32,
        errno: i32,
    },
    Malformed {
        peer: i32,
        err: DecodeError,
    },
    Connection {
        peer: i32,
        uid: u32,
        what: ConnEvent,
    },
    SubscriberDropped {
        peer: i32,
    },
    /// A memory snapshot could not be read; the event was skipped.
    SnapshotFailed(crate::snapshot::ReadError),
    /// The snapshot reader carried on past trouble (told once per kind).
    SnapshotDegraded(crate::snapshot::Degradation),
    /// A pressure monitor is armed (at start-up, START_MONITORING, boot
    /// completion, a reload that changed the triggers, or a re-created source).
    Monitor(psi::Kind),
    /// TARGET changed the minfree levels: publish `sys.lmk.minfree_levels`.
    Targets(TargetTable),
    Info(&'static str),
}

impl Note {
    /// The flood this note belongs to, for rate limiting; None for notes
    /// that are always written (kills and their outcome: one per kill).
    pub fn kind(&self) -> Option<&'static str> {
        Some(match self {
            Note::Kill(_)
            | Note::Exited { .. }
            | Note::Reaped { .. }
            | Note::Monitor(_)
            | Note::Targets(_)
            | Note::Info(_) => return None,
            Note::ExitTimeout { .. } => "exit timeout",
            Note::KillFailed { .. } => "failed kill",
            Note::ReleaseFailed { .. } => "failed release",
            Note::ReaperStuck { .. } => "stuck reaper",
            Note::NoVictim { .. } => "no victim",
            Note::Stale { .. } => "stale record",
            Note::Refused { why, .. } => match why {
                Refusal::AdjOutOfRange(_) => "refused command (adj)",
                Refusal::TypeOutOfRange(_) => "refused command (type)",
                Refusal::BadPid => "refused command (pid)",
                Refusal::Thread(_) => "refused command (thread)",
                Refusal::Dead(_) => "refused command (dead)",
                Refusal::NotOwner(_) => "refused command (owner)",
                Refusal::TableFull(_) => "refused command (table full)",
                Refusal::UnknownPid => "refused command (unknown pid)",
                Refusal::BadEvent(_) => "refused command (event)",
                Refusal::RateLimited => "refused command (rate)",
                Refusal::BadTarget => "refused command (target)",
            },
            Note::OomAdjWriteFailed { .. } => "oom_score_adj write",
            Note::MemcgWriteFailed { .. } => "memcg soft limit write",
            Note::Malformed { err, .. } => match err {
                DecodeError::Short { .. } => "malformed packet (short)",
                DecodeError::TooLong { .. } => "malformed packet (long)",
                DecodeError::Unaligned { .. } => "malformed packet (unaligned)",
                DecodeError::BadArgCount { .. } => "malformed packet (arguments)",
                DecodeError::UnknownCommand { .. } => "malformed packet (command)",
            },
            Note::Connection { what, .. } => match what {
                ConnEvent::Accepted => "client connected",
                ConnEvent::Closed => "client disconnected",
                ConnEvent::TooMany => "refused connection (too many)",
                ConnEvent::UidNotAllowed => "refused connection (uid)",
                ConnEvent::NoCredentials => "refused connection (credentials)",
                ConnEvent::Error(_) => "connection error",
            },
            Note::SubscriberDropped { .. } => "dropped notification",
            // Each file fails on its own: one file's flood must not hide
            // another's first failure.
            Note::SnapshotFailed(e) => match e.file {
                crate::snapshot::FileKind::MemInfo => "snapshot failure (meminfo)",
                crate::snapshot::FileKind::VmStat => "snapshot failure (vmstat)",
                crate::snapshot::FileKind::ZoneInfo => "snapshot failure (zoneinfo)",
                crate::snapshot::FileKind::Psi => "snapshot failure (pressure)",
            },
            // Told once per kind by the reader already.
            Note::SnapshotDegraded(_) => return None,
        })
    }
}

/// The core's end of the report ring.
pub struct Reporter {
    tx: ring::Sender<Note>,
    /// Refused commands and connections so far (the control socket's
    /// stats); counted here because every refusal passes through `note`.
    refused: Cell<(u64, u64)>,
}

/// Notes buffered between the core and the logging thread: 512 bytes
/// each (the size of a kill record), locked. A kill makes three or four
/// notes and the thread drains the ring each time it wakes, so 64 ride out
/// a stall of that thread across about 16 kills; past that notes are
/// counted as dropped, never waited for.
const RING: usize = 64;

impl Reporter {
    /// Starts the logging thread; it also publishes the properties notes
    /// ask for (see [`publish`]) through `props`.
    pub fn start(
        on_start: fn(&'static str),
        props: Arc<dyn PropertySource>,
    ) -> io::Result<Reporter> {
        let (tx, rx) = ring::channel::<Note>(RING)?;
        let b = thread::Builder::new()
            .name("lmkd-report".into())
            // Formatting is its deepest use: 12 kB measured (release). Paged
            // in as touched: a fault here delays a log line, never a kill.
            .stack_size(64 * 1024);
        crate::protect::spawn_demand_paged(b, move || {
            on_start("report");
            let mut out = Outputs::new(logline::Log);
            let mut seen_drops = 0;
            loop {
                // Asleep until a note arrives, or a flood's summary is due.
                let timeout = out.next_tick_ms().map_or(-1, |at| {
                    at.saturating_sub(sys::monotonic_ms()).min(i32::MAX as u64) as i32
                });
                rx.wait(timeout);
                rx.ack();
                while let Some(n) = rx.pop() {
                    if let Note::Targets(t) = &n {
                        publish::targets(props.as_ref(), t);
                    }
                    out.note(&n, sys::monotonic_ms());
                }
                out.tick(sys::monotonic_ms());
                let drops = rx.dropped();
                if drops != seen_drops {
                    out.ring_full(drops, sys::monotonic_ms());
                    seen_drops = drops;
                }
            }
        })
        .map_err(|e| io::Error::new(e.kind(), format!("spawn report thread: {e}")))?;
        Ok(Reporter {
            tx,
            refused: Cell::new((0, 0)),
        })
    }

    pub fn note(&self, n: Note) {
        let (cmds, conns) = self.refused.get();
        match n {
            Note::Refused { .. } => self.refused.set((cmds + 1, conns)),
            Note::Connection {
                what: ConnEvent::TooMany | ConnEvent::UidNotAllowed,
                ..
            } => self.refused.set((cmds, conns + 1)),
            _ => {}
        }
        self.tx.push(n);
    }

    /// (refused commands, refused connections) so far.
    pub fn refusals(&self) -> (u64, u64) {
        self.refused.get()
    }

    pub fn dropped(&self) -> u64 {
        self.tx.dropped()
    }
}

/// Every output a note goes to, on the logging thread. Public so tests can
/// drive it with a capturing sink and a fake clock.
pub struct Outputs<S: logline::Sink> {
    sink: S,
    limiter: limit::Limiter,
}

impl<S: logline::Sink> Outputs<S> {
    pub fn new(sink: S) -> Self {
        Outputs {
            sink,
            limiter: limit::Limiter::new(limit::BURST, limit::WINDOW_MS),
        }
    }

    /// Writes one note, unless its kind is flooding.
    pub fn note(&mut self, n: &Note, now_ms: u64) {
        if let Some(kind) = n.kind() {
            let sink = &mut self.sink;
            if !self
                .limiter
                .allow(kind, now_ms, &mut |k, n| logline::suppressed(sink, k, n))
            {
                return;
            }
        }
        logline::write(n, &mut self.sink);
        if let Note::Kill(k) = n {
            if !k.dry_run {
                killinfo::write(k, &mut self.sink);
            }
        }
    }

    /// The ring overflowed: `total` notes lost so far. Limited like any
    /// warning: under a flood the ring overflows on every wakeup.
    pub fn ring_full(&mut self, total: u64, now_ms: u64) {
        let sink = &mut self.sink;
        if self.limiter.allow("report ring full", now_ms, &mut |k, n| {
            logline::suppressed(sink, k, n)
        }) {
            logline::ring_full(&mut self.sink, total);
        }
    }

    /// Says how many of each kind were suppressed in windows now closed.
    pub fn tick(&mut self, now_ms: u64) {
        let sink = &mut self.sink;
        self.limiter
            .flush(now_ms, &mut |k, n| logline::suppressed(sink, k, n));
    }

    /// When [`Outputs::tick`] has something to say; None: nothing pending.
    pub fn next_tick_ms(&self) -> Option<u64> {
        self.limiter.next_flush_ms()
    }

    pub fn sink(&mut self) -> &mut S {
        &mut self.sink
    }
}
