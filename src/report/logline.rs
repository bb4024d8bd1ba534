//! Notes as text lines, in lmkd's words where Android tools read them: the
//! kill line (`Kill '<name>' (<pid>), uid .., oom_score_adj .. to free
//! ..kB rss, ..kB swap; reason: ..`), the legacy minfree line, and the
//! reap lines (`Process <pid> was reaped in <N>ms`, `process_mrelease <pid>
//! failed: <error>`). Runs on the logging thread.

use std::fmt;
use std::io;

use log::Level;

use super::{ConnEvent, Note, Refusal, KILL_TARGET};
use crate::history::KillRecord;
use crate::policy::{self, KillReason};

/// Where lines go: the `log` facade in the daemon, a buffer in tests.
pub trait Sink {
    fn line(&mut self, level: Level, target: &str, args: fmt::Arguments<'_>);
}

/// The `log` facade (stderr, or logcat on Android).
pub struct Log;

impl Sink for Log {
    fn line(&mut self, level: Level, target: &str, args: fmt::Arguments<'_>) {
        log::log!(target: target, level, "{args}");
    }
}

/// Target of daemon lines that are not kill lines.
const TARGET: &str = "lmkd";

/// Formats a kill's reason where it is written, on the logging thread:
/// `; reason: <words and figures>` as lmkd writes it, or nothing for the
/// minfree and vmpressure modes, whose kill lines carry no reason in lmkd.
struct Reason<'a>(&'a policy::Kill, &'a policy::Figures);

impl<'a> Reason<'a> {
    fn of(k: &'a KillRecord) -> Self {
        Reason(&k.kill, &k.figures)
    }
}

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if matches!(self.0.reason, KillReason::Minfree | KillReason::VmPressure) {
            return Ok(());
        }
        f.write_str("; reason: ")?;
        policy::describe_reason(f, self.0, self.1)
    }
}

fn errno_text(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

/// strerror's text alone, as lmkd prints it (no "(os error N)").
struct Strerror(i32);

impl fmt::Display for Strerror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let full = errno_text(self.0).to_string();
        let suffix = format!(" (os error {})", self.0);
        f.write_str(full.strip_suffix(&suffix).unwrap_or(&full))
    }
}

/// The summary of a flood: `kind` lines suppressed in the last window.
pub fn suppressed(out: &mut dyn Sink, kind: &str, n: u64) {
    out.line(
        Level::Warn,
        TARGET,
        format_args!(
            "{n} more {kind} messages suppressed (at most {} per {} ms are written)",
            super::limit::BURST,
            super::limit::WINDOW_MS
        ),
    );
}

/// Notes were lost because the logging thread fell behind.
pub fn ring_full(out: &mut dyn Sink, total: u64) {
    out.line(
        Level::Warn,
        TARGET,
        format_args!("report ring full: {total} notes dropped so far"),
    );
}

/// The kill line as lmkd writes it (and `lmkd_tests` parses it).
fn kill_line(out: &mut dyn Sink, k: &KillRecord) {
    out.line(
        Level::Info,
        KILL_TARGET,
        format_args!(
            "Kill '{}' ({}), uid {}, oom_score_adj {} to free {}kB rss, {}kB swap{}",
            k.name(),
            k.pid,
            k.uid,
            k.adj,
            k.rss_kb,
            k.swap_kb,
            Reason::of(k)
        ),
    );
}

/// lmkd's line for a kill in the legacy minfree mode: what was freed, and
/// the figures against the level that set the min adj.
fn minfree_line(out: &mut dyn Sink, k: &KillRecord) {
    let f = &k.figures;
    let reserved = (f.free_kb as i64).saturating_sub(f.other_free_kb);
    out.line(
        Level::Info,
        KILL_TARGET,
        format_args!(
            "Reclaimed {}kB, cache({}kB) and free({}kB)-reserved({}kB) below min({}kB) for oom_score_adj {}",
            k.rss_kb, f.other_file_kb, f.free_kb, reserved, k.minfree_kb, k.kill.min_adj
        ),
    );
}

/// Writes one note as text.
pub fn write(n: &Note, out: &mut dyn Sink) {
    match *n {
        Note::Kill(ref k) if k.dry_run => out.line(
            Level::Info,
            KILL_TARGET,
            format_args!(
                "Dry run: would kill '{}' ({}), uid {}, oom_score_adj {} to free {}kB rss, {}kB swap{}",
                k.name(), k.pid, k.uid, k.adj, k.rss_kb, k.swap_kb, Reason::of(k)
            ),
        ),
        Note::Kill(ref k) => {
            kill_line(out, k);
            if k.kill.reason == KillReason::Minfree {
                minfree_line(out, k);
            }
            out.line(
                Level::Info,
                TARGET,
                format_args!(
                    "kill of {} took {} us from event to signal; min adj {}, free {} kB, free swap {} kB, thrashing {}%",
                    k.pid,
                    k.event_to_signal_us,
                    k.kill.min_adj,
                    k.figures.free_kb,
                    k.figures.free_swap_kb,
                    k.figures.thrashing_pct
                ),
            );
        }
        Note::Exited { pid, time_to_exit_ms } => out.line(
            Level::Debug,
            TARGET,
            format_args!("process {pid} exited {time_to_exit_ms} ms after the kill signal"),
        ),
        Note::ExitTimeout { pid, waited_ms } => out.line(
            Level::Warn,
            TARGET,
            format_args!(
                "process {pid} still alive {waited_ms} ms after SIGKILL; allowing another kill"
            ),
        ),
        Note::KillFailed { pid, errno } => out.line(
            Level::Warn,
            TARGET,
            format_args!("kill of {pid} failed: pidfd_send_signal: {}", errno_text(errno)),
        ),
        Note::ReaperStuck { pid, waited_ms } => out.line(
            Level::Warn,
            TARGET,
            format_args!(
                "reaper still busy with {pid} {waited_ms} ms after its SIGKILL (process_mrelease stuck?); not waiting for it"
            ),
        ),
        Note::Reaped { pid, ms } => out.line(
            Level::Debug,
            KILL_TARGET,
            format_args!("Process {pid} was reaped in {ms}ms"),
        ),
        Note::ReleaseFailed { pid, errno } => {
            out.line(
                Level::Warn,
                KILL_TARGET,
                format_args!("process_mrelease {pid} failed: {}", Strerror(errno)),
            );
            if errno == libc::ENOSYS {
                out.line(
                    Level::Warn,
                    TARGET,
                    format_args!(
                        "process_mrelease is not supported by this kernel; memory reaping turned off"
                    ),
                );
            }
        }
        Note::NoVictim { kill, figures } => out.line(
            Level::Warn,
            TARGET,
            // `Reason` writes "; reason: ..." as on a kill line.
            format_args!(
                "memory pressure but no killable process with adj >= {}{}",
                kill.min_adj,
                Reason(&kill, &figures)
            ),
        ),
        Note::Stale { pid } => out.line(
            Level::Info,
            TARGET,
            format_args!(
                "process {pid} exited without PROCREMOVE; its record was dropped (pid may be reused)"
            ),
        ),
        Note::Refused { cmd, pid, peer, why } => {
            // AMS removes processes we already killed; that is routine.
            let level = if why == Refusal::UnknownPid {
                Level::Debug
            } else {
                Level::Warn
            };
            out.line(
                level,
                TARGET,
                format_args!(
                    "command {cmd} from peer {peer} for pid {pid} refused: {}",
                    RefusalText(why)
                ),
            )
        }
        Note::OomAdjWriteFailed { pid, errno } => out.line(
            Level::Warn,
            TARGET,
            format_args!("writing oom_score_adj of {pid} failed: {}", errno_text(errno)),
        ),
        Note::MemcgWriteFailed { pid, uid, errno } => out.line(
            Level::Error,
            TARGET,
            format_args!(
                "setting the memcg soft limit of pid {pid} (uid {uid}) failed: {}",
                errno_text(errno)
            ),
        ),
        Note::Malformed { peer, err } => out.line(
            Level::Warn,
            TARGET,
            format_args!("malformed packet from peer {peer}: {err}"),
        ),
        Note::Connection { peer, uid, what } => match what {
            ConnEvent::Accepted => out.line(
                Level::Info,
                TARGET,
                format_args!("client connected: pid {peer} uid {uid}"),
            ),
            ConnEvent::TooMany => out.line(
                Level::Warn,
                TARGET,
                format_args!(
                    "refused connection from pid {peer} uid {uid}: already 3 clients connected"
                ),
            ),
            ConnEvent::UidNotAllowed => out.line(
                Level::Warn,
                TARGET,
                format_args!("refused client pid {peer}: uid {uid} is not allowed"),
            ),
            ConnEvent::NoCredentials => out.line(
                Level::Warn,
                TARGET,
                format_args!("closed connection of pid {peer}: packet without credentials"),
            ),
            ConnEvent::Closed => out.line(
                Level::Info,
                TARGET,
                format_args!("client pid {peer} disconnected"),
            ),
            ConnEvent::Error(e) => out.line(
                Level::Warn,
                TARGET,
                format_args!("closed connection of pid {peer}: {}", errno_text(e)),
            ),
        },
        Note::SubscriberDropped { peer } => out.line(
            Level::Warn,
            TARGET,
            format_args!("subscriber pid {peer} is not reading; a kill notification was dropped"),
        ),
        Note::SnapshotFailed(e) => out.line(
            Level::Warn,
            TARGET,
            format_args!("memory snapshot failed, event skipped: {e}"),
        ),
        Note::SnapshotDegraded(d) => out.line(
            Level::Warn,
            TARGET,
            format_args!("memory snapshot: {d}"),
        ),
        Note::Monitor(kind) => out.line(
            Level::Info,
            TARGET,
            format_args!("pressure monitor: {kind}"),
        ),
        Note::Targets(_) => {}
        Note::Info(s) => out.line(Level::Info, TARGET, format_args!("{s}")),
    }
}

struct RefusalText(Refusal);

impl fmt::Display for RefusalText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Refusal::AdjOutOfRange(a) => write!(f, "oom_score_adj {a} outside [-1000, 1000]"),
            Refusal::TypeOutOfRange(t) => {
                write!(f, "process type {t} is not 0 (app) or 1 (service)")
            }
            Refusal::BadPid => f.write_str("pid must be positive"),
            Refusal::Thread(tgid) => write!(f, "it is a thread of process {tgid}"),
            Refusal::Dead(e) => write!(f, "process is gone ({})", errno_text(e)),
            Refusal::NotOwner(o) => write!(f, "record belongs to client pid {o}"),
            Refusal::TableFull(cap) => write!(f, "process table is full ({cap} entries)"),
            Refusal::UnknownPid => f.write_str("pid is not registered"),
            Refusal::BadEvent(e) => write!(f, "unknown subscription event {e}"),
            Refusal::RateLimited => f.write_str("TARGET less than 1000 ms after the previous one"),
            Refusal::BadTarget => f.write_str("TARGET levels out of range"),
        }
    }
}
