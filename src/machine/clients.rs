//! The machine's client side: connections, commands and their effects on
//! the rest of the daemon (reload, monitors, boot), and signals.

use super::{Edges, Machine};
use crate::commands::Effect;
use crate::config::Config;
use crate::policy::Tunables;
use crate::proto;
use crate::psi::Source;
use crate::report::{ConnEvent, Note};
use crate::server::{self, Accepted, Incoming};
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
        match self.reg.apply(&cmd, peer, now_ns / 1_000_000, &self.report) {
            Effect::None => {}
            Effect::Reply(id, v) => self.reply(slot, id, v),
            Effect::Reload => {
                let r = if self.reload(io) { 0 } else { -1 };
                self.reply(slot, proto::id::UPDATE_PROPS, r);
            }
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
            Effect::TargetsChanged => self.publish_targets(),
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
            .settings
            .props
            .set("sys.lmk.minfree_levels", &levels.join(","))
        {
            log::warn!("setting sys.lmk.minfree_levels: {e}");
        }
    }

    /// UPDATE_PROPS / SIGHUP: re-read everything; apply all or nothing.
    fn reload(&mut self, io: &mut dyn Edges) -> bool {
        let loaded = Config::load(
            self.settings.config_path.as_deref(),
            self.settings.props.as_ref(),
        );
        let new = match loaded {
            Ok((c, _warnings)) => c,
            Err(e) => {
                log::error!("reload failed, keeping the running configuration: {e}");
                return false;
            }
        };
        let (new, kept) = self.config.reloaded(new);
        for key in kept {
            log::warn!("reload: {key} changes only at restart; keeping the running value");
        }
        let triggers_changed = new.psi_partial_stall_ms != self.config.psi_partial_stall_ms
            || new.psi_complete_stall_ms != self.config.psi_complete_stall_ms;
        self.server.set_allowed_uids(&new.allowed_uids);
        crate::logging::set_debug(new.debug);
        self.tunables = Tunables::from_config(&new);
        self.config = new;
        if triggers_changed && matches!(self.source, Some(Source::Psi { .. })) {
            self.stop_monitors(io);
            if let Err(e) = self.start_monitors(None, io) {
                log::error!("re-arming PSI triggers after reload: {e}");
            }
        }
        log::info!("configuration reloaded");
        // Only visible when the new level really is in force.
        log::debug!("debug logging is on");
        true
    }

    pub(super) fn on_signal(&mut self, signo: i32, io: &mut dyn Edges) {
        match signo {
            libc::SIGHUP => {
                self.reload(io);
            }
            _ => self.exit = true,
        }
    }
}
