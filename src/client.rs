//! A blocking lmkd client: one `SOCK_SEQPACKET` connection that sends
//! commands and waits for replies with a timeout. Used by the one-shot
//! modes (`--reinit`, `--boot_completed`), the workload driver and tests.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
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

/// A one-shot request to a running daemon, as init sends them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OneShot {
    /// `lmkd --reinit`: re-read the configuration (UPDATE_PROPS).
    Reinit,
    /// `lmkd --boot_completed`: boot is over (BOOT_COMPLETED).
    BootCompleted,
}

/// What a daemon did with a one-shot request it accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Done {
    Applied,
    /// BOOT_COMPLETED a second time: nothing more to do.
    AlreadyHandled,
}

/// Why a one-shot request did not succeed.
#[derive(Debug)]
pub enum OneShotError {
    /// No daemon listens at the path (or the socket could not be reached).
    NotRunning { path: PathBuf, source: io::Error },
    /// The daemon did not answer in time, or closed the connection.
    NoReply(io::Error),
    /// Sending or receiving failed otherwise.
    Io(io::Error),
    /// UPDATE_PROPS: the daemon refused the new configuration and kept the old one.
    ConfigRejected,
    /// BOOT_COMPLETED: the daemon says boot is not complete.
    BootNotComplete,
    /// A reply the protocol does not define for this command.
    UnexpectedReply(i32),
}

impl OneShot {
    pub fn command(self) -> Command {
        match self {
            OneShot::Reinit => Command::UpdateProps,
            OneShot::BootCompleted => Command::BootCompleted,
        }
    }

    /// The command-line flag that asks for it.
    pub fn flag(self) -> &'static str {
        match self {
            OneShot::Reinit => "--reinit",
            OneShot::BootCompleted => "--boot_completed",
        }
    }

    /// The meaning of the daemon's reply (lmkd's values: 0 done, 1 boot
    /// already handled, -1 failed).
    pub fn outcome(self, reply: i32) -> Result<Done, OneShotError> {
        match (self, reply) {
            (_, 0) => Ok(Done::Applied),
            (OneShot::BootCompleted, 1) => Ok(Done::AlreadyHandled),
            (OneShot::Reinit, -1) => Err(OneShotError::ConfigRejected),
            (OneShot::BootCompleted, -1) => Err(OneShotError::BootNotComplete),
            (_, v) => Err(OneShotError::UnexpectedReply(v)),
        }
    }

    /// Connect to `path`, send the command and read its reply.
    pub fn send(self, path: &Path, timeout: Duration) -> Result<Done, OneShotError> {
        let conn = Client::connect(path).map_err(|source| OneShotError::NotRunning {
            path: path.to_path_buf(),
            source,
        })?;
        let reply = conn
            .request(&self.command(), timeout)
            .map_err(|e| match e.kind() {
                io::ErrorKind::TimedOut | io::ErrorKind::UnexpectedEof => OneShotError::NoReply(e),
                _ => OneShotError::Io(e),
            })?;
        self.outcome(reply)
    }
}

impl fmt::Display for OneShotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OneShotError::NotRunning { source, .. } => {
                write!(f, "is the daemon running? {source}")
            }
            OneShotError::NoReply(e) | OneShotError::Io(e) => write!(f, "{e}"),
            OneShotError::ConfigRejected => f.write_str(
                "the daemon rejected the new configuration and kept the old one (see its log)",
            ),
            OneShotError::BootNotComplete => {
                f.write_str("the daemon says boot is not complete yet")
            }
            OneShotError::UnexpectedReply(v) => write!(f, "unexpected reply {v}"),
        }
    }
}

impl std::error::Error for OneShotError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OneShotError::NotRunning { source: e, .. }
            | OneShotError::NoReply(e)
            | OneShotError::Io(e) => Some(e),
            _ => None,
        }
    }
}
