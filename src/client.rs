//! A blocking lmkd client: one `SOCK_SEQPACKET` connection that sends
//! commands and waits for replies with a timeout. Used by the one-shot
//! modes (`--reinit`, `--boot_completed`), the workload driver and tests.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use crate::proto::{self, Command};

pub struct Client {
    fd: OwnedFd,
}

/// A datagram received from the daemon.
#[derive(Clone, Copy, Debug)]
pub enum Message {
    Reply { cmd: i32, value: i32 },
    Kill(proto::ProcKill),
    Stat(proto::KillStat),
    Other { len: usize, id: Option<i32> },
}

fn ctx(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

impl Client {
    /// Connects to the daemon's socket. Credentials are attached to every
    /// packet by the kernel once `SO_PASSCRED` is set on our side.
    pub fn connect(path: &Path) -> io::Result<Client> {
        let (fd, addr) = crate::sys::seqpacket_socket(path)?;
        let on: libc::c_int = 1;
        // SAFETY: valid fd, option value points to a c_int of the given size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PASSCRED,
                &on as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        // SAFETY: `addr` is a fully initialised sockaddr_un.
        let r = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                &addr as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(ctx(io::Error::last_os_error(), "connect to", path));
        }
        Ok(Client { fd })
    }

    /// Sends raw bytes as one datagram (tests use it for malformed input).
    pub fn send_raw(&self, buf: &[u8]) -> io::Result<()> {
        // SAFETY: buf is a valid slice for the duration of the call.
        let n = unsafe {
            libc::send(
                fd_of(self),
                buf.as_ptr() as *const libc::c_void,
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub fn send(&self, cmd: &Command) -> io::Result<()> {
        let mut buf = [0u8; proto::MAX_PACKET];
        let n = proto::encode(cmd, &mut buf);
        self.send_raw(&buf[..n])
    }

    /// Receives one datagram, waiting at most `timeout` (None: forever).
    /// Returns `Ok(None)` on timeout and an `UnexpectedEof` error when the
    /// daemon closed the connection.
    pub fn recv(&self, timeout: Option<Duration>) -> io::Result<Option<Message>> {
        let mut pfd = libc::pollfd {
            fd: fd_of(self),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32);
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        if r == 0 {
            return Ok(None);
        }
        let mut buf = [0u8; proto::STAT_MAX_LEN + 64];
        // SAFETY: buf is writable for its whole length.
        let n = unsafe {
            libc::recv(
                fd_of(self),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "lmkd closed the connection",
            ));
        }
        let buf = &buf[..n as usize];
        Ok(Some(parse_message(buf)))
    }

    /// Sends a command that has a reply and waits for it, skipping kill
    /// notifications that arrive in between.
    pub fn request(&self, cmd: &Command, timeout: Duration) -> io::Result<i32> {
        self.send(cmd)?;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.recv(Some(left))? {
                Some(Message::Reply { cmd: c, value }) if c == cmd.id() => return Ok(value),
                Some(_) => continue,
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no reply to command {} within {:?}", cmd.id(), timeout),
                    ))
                }
            }
        }
    }
}

impl AsFd for Client {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn fd_of(c: &Client) -> i32 {
    c.fd.as_raw_fd()
}

/// Classifies a daemon-to-client datagram.
pub fn parse_message(buf: &[u8]) -> Message {
    let id = proto::peek_id(buf);
    if let Some(k) = proto::decode_prockill(buf) {
        return Message::Kill(k);
    }
    if let Some(s) = proto::decode_kill_stat(buf) {
        return Message::Stat(s);
    }
    if buf.len() == 8 {
        if let Some(cmd) = id {
            if let Some(value) = proto::decode_reply(cmd, buf) {
                return Message::Reply { cmd, value };
            }
        }
    }
    Message::Other { len: buf.len(), id }
}
