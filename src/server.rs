//! The control socket: the listener, at most three data connections, peer
//! credentials on every packet, replies and subscriber notifications.
//! Knows nothing of what commands mean (see `commands`).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use crate::proto;
use crate::report::{ConnEvent, Note, Reporter};
use crate::sys::{self, Recv};

/// Data connections at once (AMS, init, one tool). lmkd uses the same.
pub const MAX_CONNECTIONS: usize = 3;

/// One connected client.
pub struct Conn {
    fd: OwnedFd,
    /// Peer pid from SO_PEERCRED: the owner id of its records.
    pub peer: i32,
    pub uid: u32,
    pub subscribed_kills: bool,
    pub subscribed_stats: bool,
}

pub struct Server {
    listener: OwnedFd,
    /// The socket file we bound (removed on exit); None when init gave us
    /// the socket.
    bound: Option<PathBuf>,
    conns: [Option<Conn>; MAX_CONNECTIONS],
    allowed_uids: Vec<u32>,
}

/// What one `accept` produced.
pub enum Accepted {
    Slot(usize),
    /// Accepted and closed at once: too many clients, or uid not allowed.
    Refused,
    /// Nothing was waiting.
    None,
}

/// What one read from a connection produced.
pub enum Incoming {
    /// A datagram (`buf[..len]`) with its sender's credentials.
    Packet {
        len: usize,
        truncated: bool,
        creds: sys::Creds,
    },
    /// A datagram without credentials: the connection must be closed.
    NoCredentials,
    /// Hang-up or error: close the connection.
    Gone(ConnEvent),
    /// Nothing more queued.
    Empty,
}

fn peer_cred(fd: RawFd) -> Option<libc::ucred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred/len describe a writable ucred.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    (r == 0).then_some(cred)
}

impl Server {
    /// Uses the socket init created (`ANDROID_SOCKET_lmkd`) when present,
    /// otherwise binds `path` with mode 0660.
    pub fn open(path: &Path, allowed_uids: &[u32]) -> io::Result<Server> {
        let (listener, bound) = match android_socket()? {
            Some(fd) => (fd, None),
            None => (bind(path)?, Some(path.to_path_buf())),
        };
        // SAFETY: listen on a socket we own; backlog as lmkd.
        if unsafe { libc::listen(listener.as_raw_fd(), MAX_CONNECTIONS as i32) } < 0 {
            return Err(io::Error::from(sys::SysError::last(
                "listen on lmkd socket",
            )));
        }
        set_nonblocking(listener.as_raw_fd())?;
        Ok(Server {
            listener,
            bound,
            conns: [None, None, None],
            allowed_uids: allowed_uids.to_vec(),
        })
    }

    /// Puts a list built off the core (a reload) in force and leaves the
    /// one it replaces in `uids`, for the loader to free: nothing is
    /// allocated or freed here.
    pub fn swap_allowed_uids(&mut self, uids: &mut Vec<u32>) {
        std::mem::swap(&mut self.allowed_uids, uids);
    }

    pub fn listener(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    pub fn conn(&self, slot: usize) -> Option<&Conn> {
        self.conns.get(slot)?.as_ref()
    }

    pub fn conn_mut(&mut self, slot: usize) -> Option<&mut Conn> {
        self.conns.get_mut(slot)?.as_mut()
    }

    pub fn conn_fd(&self, slot: usize) -> Option<BorrowedFd<'_>> {
        self.conn(slot).map(|c| c.fd.as_fd())
    }

    /// Accepts one pending connection.
    pub fn accept(&mut self, report: &Reporter) -> Accepted {
        // SAFETY: accept4 on our listener; null address is allowed.
        let fd = unsafe {
            libc::accept4(
                self.listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        };
        if fd < 0 {
            return Accepted::None;
        }
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // Credentials come from SO_PASSCRED inherited from the listener;
        // we deliberately do not force it here, so a misconfigured init
        // socket shows up as refused packets rather than silently working.
        let cred = peer_cred(fd.as_raw_fd()).unwrap_or(libc::ucred {
            pid: -1,
            uid: u32::MAX,
            gid: 0,
        });
        let (peer, uid) = (cred.pid, cred.uid);
        if !self.uid_allowed(uid) {
            report.note(Note::Connection {
                peer,
                uid,
                what: ConnEvent::UidNotAllowed,
            });
            return Accepted::Refused;
        }
        // Beyond lmkd: refuse the newcomer rather than dropping everyone,
        // so a stray tool cannot disconnect ActivityManager.
        let Some(slot) = self.conns.iter().position(Option::is_none) else {
            report.note(Note::Connection {
                peer,
                uid,
                what: ConnEvent::TooMany,
            });
            return Accepted::Refused;
        };
        self.conns[slot] = Some(Conn {
            fd,
            peer,
            uid,
            subscribed_kills: false,
            subscribed_stats: false,
        });
        report.note(Note::Connection {
            peer,
            uid,
            what: ConnEvent::Accepted,
        });
        Accepted::Slot(slot)
    }

    /// Reads the next datagram of a connection into `buf`.
    pub fn recv(&self, slot: usize, buf: &mut [u8]) -> Incoming {
        let Some(c) = self.conn(slot) else {
            return Incoming::Empty;
        };
        match sys::recv_with_creds(c.fd.as_raw_fd(), buf) {
            Ok(Recv::Packet {
                len,
                truncated,
                creds: Some(creds),
            }) => Incoming::Packet {
                len,
                truncated,
                creds,
            },
            Ok(Recv::Packet { creds: None, .. }) => Incoming::NoCredentials,
            Ok(Recv::Closed) => Incoming::Gone(ConnEvent::Closed),
            Ok(Recv::WouldBlock) => Incoming::Empty,
            Err(e) => Incoming::Gone(ConnEvent::Error(e.errno)),
        }
    }

    /// Sends a reply; a client that does not read loses it, we never wait.
    pub fn send(&self, slot: usize, buf: &[u8]) -> bool {
        self.conn(slot)
            .is_some_and(|c| sys::send_nonblocking(c.fd.as_raw_fd(), buf).is_ok())
    }

    /// Closes a connection and returns its peer pid.
    pub fn close(&mut self, slot: usize) -> Option<i32> {
        self.conns.get_mut(slot)?.take().map(|c| c.peer)
    }

    /// Sends a kill notification to every subscriber of that kind.
    pub fn broadcast(&self, stats: bool, buf: &[u8], report: &Reporter) {
        for c in self.conns.iter().flatten() {
            let wants = if stats {
                c.subscribed_stats
            } else {
                c.subscribed_kills
            };
            if wants && sys::send_nonblocking(c.fd.as_raw_fd(), buf).is_err() {
                report.note(Note::SubscriberDropped { peer: c.peer });
            }
        }
    }

    pub fn uid_allowed(&self, uid: u32) -> bool {
        self.allowed_uids.contains(&uid)
    }

    /// Whether the client of `slot` has closed its end (data may remain).
    pub fn hung_up(&self, slot: usize) -> bool {
        let Some(c) = self.conn(slot) else {
            return false;
        };
        let mut pfd = libc::pollfd {
            fd: c.fd.as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        let r = unsafe { libc::poll(&mut pfd, 1, 0) };
        r > 0 && pfd.revents & (libc::POLLRDHUP | libc::POLLHUP) != 0
    }

    /// Whether a connection from this peer pid is still open.
    pub fn has_peer(&self, peer: i32) -> bool {
        self.conns.iter().flatten().any(|c| c.peer == peer)
    }

    pub fn connections(&self) -> usize {
        self.conns.iter().flatten().count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(p) = &self.bound {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The listening socket init created for an rc `socket` line and passed in
/// the environment variable `env` (`ANDROID_SOCKET_<name>`), if any.
pub fn init_socket(env: &str) -> io::Result<Option<OwnedFd>> {
    let Ok(v) = std::env::var(env) else {
        return Ok(None);
    };
    let fd: RawFd = v.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{env}={v:?} is not a descriptor number"),
        )
    })?;
    // SAFETY: fcntl F_GETFD only checks the descriptor exists.
    if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{env}={fd} is not an open descriptor"),
        ));
    }
    // SAFETY: init handed this descriptor to us; nobody else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: setting close-on-exec on our own descriptor.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok(Some(fd))
}

/// The listening socket init passed in `ANDROID_SOCKET_lmkd`, if any.
fn android_socket() -> io::Result<Option<OwnedFd>> {
    let Some(fd) = init_socket("ANDROID_SOCKET_lmkd")? else {
        return Ok(None);
    };
    if !passcred(fd.as_raw_fd()) {
        log::warn!(
            "the lmkd socket from init lacks SO_PASSCRED (rc line without +passcred?): \
             packets from clients that do not set it themselves will be refused"
        );
    }
    Ok(Some(fd))
}

fn passcred(fd: RawFd) -> bool {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v/len describe a writable c_int.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PASSCRED,
            &mut v as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    r == 0 && v != 0
}

fn bind(path: &Path) -> io::Result<OwnedFd> {
    let ctx = |e: sys::SysError| {
        io::Error::new(
            io::Error::from_raw_os_error(e.errno).kind(),
            format!(
                "{} {}: {}",
                e.what,
                path.display(),
                io::Error::from_raw_os_error(e.errno)
            ),
        )
    };
    let (fd, addr) = sys::seqpacket_socket(path)?;
    let bytes = path.as_os_str().as_encoded_bytes();
    // A socket file left by a previous run that nobody listens on.
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if meta.file_type().is_socket() && crate::client::Client::connect(path).is_err() {
            let _ = std::fs::remove_file(path);
        }
    }
    // SAFETY: addr is a fully initialised sockaddr_un.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &addr as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(ctx(sys::SysError::last("bind")));
    }
    let c = CString::new(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "socket path has a NUL byte"))?;
    // SAFETY: chmod on the NUL-terminated path we just bound.
    if unsafe { libc::chmod(c.as_ptr(), 0o660) } < 0 {
        return Err(ctx(sys::SysError::last("chmod 0660")));
    }
    sys::setsockopt_int(
        fd.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_PASSCRED,
        1,
        "SO_PASSCRED",
    )
    .map_err(ctx)?;
    Ok(fd)
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on our own descriptor.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl < 0 || libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) < 0 {
            return Err(sys::SysError::last("set lmkd socket non-blocking").into());
        }
    }
    Ok(())
}

/// Largest datagram we read: one more than we accept, so an over-long one
/// is seen as such instead of silently truncated.
pub const RECV_BUF: usize = proto::MAX_PACKET + 4;
