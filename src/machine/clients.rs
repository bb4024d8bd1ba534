//! The machine's client side: connections, commands and their effects on
//! the rest of the daemon (reload, monitors, boot), and signals.

use std::io;

use super::{Edges, Machine};
use crate::commands::Effect;
use crate::loader::{Leftovers, Outcome, Request};
use crate::policy::{self, Pressure, Tunables};
use crate::proto;
use crate::psi::Source;
use crate::report::{ConnEvent, Note};
use crate::server::{self, Accepted, Incoming};
use crate::snapshot::Snapshot;
use crate::sys;
use crate::token::Token;

/// Packets read from one client per wakeup (lmkd reads one).
const PACKETS_PER_WAKEUP: usize = 16;

impl Machine {
    pub(super) fn on_listen(&mut self, now_ns: u64, io: &mut dyn Edges) {
        loop {
            // A client that sent and hung up still holds its slot until we
            // read it; do that first so a newcomer is not refused for
            // nothing and the hung-up client's commands still apply.
            if self.server.connections() == server::MAX_CONNECTIONS {
                for slot in 0..server::MAX_CONNECTIONS {
                    if self.server.hung_up(slot) {
                        // A hung-up client sends no more: drain it whole.
                        while self.server.conn(slot).is_some() {
                            self.on_client(slot, true, now_ns, io);
                        }
                    }
                }
            }
            match self.server.accept(&self.report) {
                Accepted::Slot(slot) => {
                    if let Some(fd) = self.server.conn_fd(slot) {
                        if io.watch(fd, Token::Conn(slot), false).is_err() {
                            self.server.close(slot);
                        }
                    }
                }
                Accepted::Refused => {}
                Accepted::None => break,
            }
        }
    }

    /// Reads the queued packets, at most [`PACKETS_PER_WAKEUP`] of them, and
    /// acts on a hang-up only once none are left, so a client that sends
    /// and closes at once still gets its commands applied. The cap keeps a
    /// client that never stops sending from holding the core: epoll is
    /// level-triggered and reports the socket again on the next wakeup,
    /// after the pressure events and other clients that came in meanwhile.
    pub(super) fn on_client(&mut self, slot: usize, hup: bool, now_ns: u64, io: &mut dyn Edges) {
        let mut buf = [0u8; server::RECV_BUF];
        let mut handled = 0;
        let gone = loop {
            if handled == PACKETS_PER_WAKEUP {
                return;
            }
            handled += 1;
            match self.server.recv(slot, &mut buf) {
                Incoming::Packet { len, creds, .. } => {
                    let n = len.min(buf.len());
                    if !self.on_packet(slot, &buf[..n], len, creds, now_ns, io) {
                        break Some(None);
                    }
                }
                Incoming::NoCredentials => {
                    let peer = self.server.conn(slot).map_or(-1, |c| c.peer);
                    let uid = self.server.conn(slot).map_or(0, |c| c.uid);
                    self.report.note(Note::Connection {
                        peer,
                        uid,
                        what: ConnEvent::NoCredentials,
                    });
                    break Some(None);
                }
                Incoming::Gone(what) => break Some(Some(what)),
                Incoming::Empty => break None,
            }
        };
        if gone.is_some() || hup {
            if let Some(fd) = self.server.conn_fd(slot) {
                io.unwatch(fd);
            }
            // A reload still running must not answer whoever takes the slot next.
            self.reload.forget(slot);
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
    fn on_packet(
        &mut self,
        slot: usize,
        buf: &[u8],
        len: usize,
        creds: sys::Creds,
        now_ns: u64,
        io: &mut dyn Edges,
    ) -> bool {
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
                what: ConnEvent::UidNotAllowed,
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
        self.control.command(cmd.id());
        match self.reg.apply(&cmd, peer, now_ns / 1_000_000, &self.report) {
            Effect::None => {}
            Effect::Reply(id, v) => self.reply(slot, id, v),
            Effect::Reload => self.request_reload(Some(slot)),
            Effect::StartMonitoring => {
                if let Err(e) = self.start_monitors(None, io) {
                    log::error!("START_MONITORING: {e}");
                }
            }
            Effect::BootCompleted => {
                let r = self.boot_completed_reply(io);
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
            Effect::TargetsChanged => self.report.note(Note::Targets(self.reg.targets)),
        }
        true
    }

    fn reply(&self, slot: usize, id: i32, value: i32) {
        let mut out = [0u8; 8];
        self.server
            .send(slot, proto::encode_reply(id, value, &mut out));
    }

    fn boot_completed_reply(&mut self, io: &mut dyn Edges) -> i32 {
        // On Android, lmkd answers -1 until init says boot is complete.
        if cfg!(target_os = "android")
            && self.settings.props.get("sys.boot_completed").as_deref() != Some("1")
        {
            return -1;
        }
        if self.boot_completed {
            return 1;
        }
        self.boot_completed = true;
        if self.config.delay_monitors_until_boot {
            if let Err(e) = self.start_monitors(None, io) {
                log::error!("starting monitors at boot completion: {e}");
            }
        }
        0
    }

    /// UPDATE_PROPS (from `slot`) or SIGHUP (None): the loader thread
    /// re-reads everything; the answer comes back as [`Outcome`]. A request
    /// made while one is running waits for the next round, so it sees the
    /// files as they are after it asked.
    pub(super) fn request_reload(&mut self, slot: Option<usize>) {
        let bit = slot.map_or(Reloads::SIGNAL, |s| 1 << s);
        if self.reload.running {
            self.reload.queued |= bit;
            return;
        }
        self.reload.waiting |= bit;
        self.ask_reload();
    }

    /// Starts a round for the requests in `waiting`.
    fn ask_reload(&mut self) {
        self.reload.running = true;
        let psi = self.source.as_ref().is_some_and(Source::is_psi);
        if !self.loader.ask(Request::Reload { psi }) {
            self.finish_reload(false);
        }
    }

    /// The control socket's `config set`: a validated configuration the
    /// loader puts in force as a reload would (and logs what changed).
    pub(super) fn request_apply(&mut self, c: Box<crate::config::Config>) {
        let psi = self.source.as_ref().is_some_and(Source::is_psi);
        if !self.loader.apply(c, psi) {
            self.control.config_refused();
        }
    }

    /// Answers the clients of the round that finished and starts the next.
    fn finish_reload(&mut self, ok: bool) {
        let waiting = std::mem::take(&mut self.reload.waiting);
        self.reload.running = false;
        for slot in 0..server::MAX_CONNECTIONS {
            if waiting & (1 << slot) != 0 {
                self.reply(slot, proto::id::UPDATE_PROPS, if ok { 0 } else { -1 });
            }
        }
        let queued = std::mem::take(&mut self.reload.queued);
        if queued != 0 {
            self.reload.waiting = queued;
            self.ask_reload();
        }
    }

    /// The loader finished something: swap it in (nothing is built here).
    pub(super) fn on_loaded(&mut self, io: &mut dyn Edges) {
        self.loader.ack();
        while let Some(outcome) = self.loader.take() {
            match outcome {
                Outcome::Reloaded {
                    mut config,
                    published,
                    mut uids,
                    triggers,
                    applied,
                } => {
                    // Swapped, not assigned: the old values go back to the
                    // loader to be freed (below).
                    self.server.swap_allowed_uids(&mut uids);
                    std::mem::swap(&mut self.config, &mut *config);
                    self.tunables = Tunables::from_config(&self.config);
                    if let Some(t) = triggers {
                        if self.source.as_ref().is_some_and(Source::is_psi) {
                            self.stop_monitors(io);
                            if self.arm(t, io).is_err() {
                                self.report.note(Note::Info(
                                    "re-arming PSI triggers after reload failed: monitoring stopped",
                                ));
                            }
                        } else {
                            // The PSI source they replace failed meanwhile.
                            self.loader.free(Leftovers::Source(t));
                        }
                    }
                    let published = self.control.config_published(published);
                    self.loader.free(Leftovers::Config {
                        config,
                        uids,
                        published,
                    });
                    if !applied {
                        self.finish_reload(true);
                    }
                }
                Outcome::Rejected { applied } => {
                    self.control.config_refused();
                    if !applied {
                        self.finish_reload(false);
                    }
                }
                Outcome::Reopened(src) => {
                    if self.source.is_some() {
                        self.loader.free(Leftovers::Source(src));
                    } else if self.arm(src, io).is_err() {
                        self.report.note(Note::Info(
                            "watching the re-opened pressure source failed: monitoring stopped",
                        ));
                    }
                }
                Outcome::NoSource => {}
            }
        }
    }

    /// EPOLLERR on a pressure source: drop it (its error would wake the
    /// loop forever) and ask the loader for another: the configured PSI
    /// triggers re-created the first time (vmpressure if that fails),
    /// vmpressure the second, then nothing.
    pub(super) fn on_pressure_lost(&mut self, io: &mut dyn Edges) {
        if self.source.is_none() {
            // The source's other descriptor, in the same wakeup.
            return;
        }
        let psi = self.source_failures == 0;
        self.source_failures = self.source_failures.saturating_add(1);
        self.stop_monitors(io);
        if self.source_failures > 2 {
            self.report.note(Note::Info(
                "pressure source reported an error again: monitoring stopped",
            ));
            return;
        }
        self.report.note(Note::Info(
            "pressure source reported an error: re-opening it",
        ));
        let _ = self.loader.ask(Request::Reopen { psi });
    }

    /// With vmpressure as the source (no PSI), the event's level decides
    /// through lmkd's vmpressure strategy (`policy::decide_vmpressure`): a
    /// medium event from `medium` up, a critical one from `critical` up,
    /// no PSI stall gate. The memcg usage figures behind
    /// `upgrade_pressure`/`downgrade_pressure` are not read (None), so those
    /// two keys keep their "off" meaning. Poll ticks kill nothing here: the
    /// kernel's next event is the next verdict. None: the PSI policy decides.
    pub(super) fn level_decision(
        &mut self,
        p: Pressure,
        snap: &Snapshot,
    ) -> Option<policy::Decision> {
        if !self.source.as_ref().is_some_and(Source::is_vmpressure) {
            return None;
        }
        let level = match p {
            // vmpressure has no early level; an early event is a medium one.
            Pressure::Partial | Pressure::Early => policy::VmPressureLevel::Medium,
            Pressure::Complete => policy::VmPressureLevel::Critical,
            Pressure::Poll => {
                return Some(policy::Decision {
                    kill: None,
                    poll: policy::PollInterval::Slow,
                    extend_poll: false,
                    figures: policy::Figures::default(),
                })
            }
        };
        Some(policy::decide_vmpressure(
            level,
            None,
            snap,
            &self.tunables,
            &self.reg.targets,
            &mut self.policy,
        ))
    }

    /// At start-up, without an injected source: arm the monitors now, or
    /// park them until START_MONITORING / BOOT_COMPLETED when
    /// `delay_monitors_until_boot` asks for it, unless boot has already
    /// completed (a restart: ActivityManager will not ask again).
    pub fn start_or_park_monitors(
        &mut self,
        given: Option<Source>,
        io: &mut dyn Edges,
    ) -> io::Result<()> {
        if !self.config.delay_monitors_until_boot {
            return self.start_monitors(given, io);
        }
        if self.settings.props.get("sys.boot_completed").as_deref() == Some("1") {
            log::info!(
                "boot already completed (sys.boot_completed=1): arming pressure monitors now"
            );
            return self.start_monitors(given, io);
        }
        log::info!("pressure monitors delayed until START_MONITORING or boot completion");
        self.parked = match given {
            Some(s) => Some(s),
            None => match Source::from_config(&self.config) {
                Ok(s) => Some(s),
                Err(e) => {
                    // START_MONITORING tries again (and says so if it fails).
                    log::warn!("opening the pressure source now failed: {e}");
                    None
                }
            },
        };
        Ok(())
    }

    pub(super) fn on_signal(&mut self, signo: i32) {
        match signo {
            libc::SIGHUP => self.request_reload(None),
            _ => self.exit = true,
        }
    }
}

/// UPDATE_PROPS / SIGHUP requests: who waits for the running round, who
/// for the next (a bit per connection slot, one for SIGHUP).
#[derive(Default)]
pub(super) struct Reloads {
    running: bool,
    waiting: u8,
    queued: u8,
}

impl Reloads {
    const SIGNAL: u8 = 1 << 7;

    fn forget(&mut self, slot: usize) {
        self.waiting &= !(1 << slot);
        self.queued &= !(1 << slot);
    }
}

const _: () = assert!(server::MAX_CONNECTIONS < 7);
