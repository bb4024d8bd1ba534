//! Thin syscall wrappers that nix does not cover, or covers with an
//! allocation we cannot afford after start-up. Everything here works on
//! caller-provided buffers; errors keep the errno and say what failed.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// An `io::Error` from errno with a static description of the attempt.
/// Static so that building it on the hot path does not allocate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysError {
    pub what: &'static str,
    pub errno: i32,
}

impl SysError {
    pub fn last(what: &'static str) -> SysError {
        SysError {
            what,
            errno: io::Error::last_os_error().raw_os_error().unwrap_or(0),
        }
    }
}

impl std::fmt::Display for SysError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}",
            self.what,
            io::Error::from_raw_os_error(self.errno)
        )
    }
}

impl std::error::Error for SysError {}

impl From<SysError> for io::Error {
    fn from(e: SysError) -> io::Error {
        io::Error::new(io::Error::from_raw_os_error(e.errno).kind(), e.to_string())
    }
}

pub type SysResult<T> = Result<T, SysError>;

/// Retries a libc call while it fails with EINTR.
fn retry<T: PartialOrd + Default>(what: &'static str, mut f: impl FnMut() -> T) -> SysResult<T> {
    loop {
        let r = f();
        if r >= T::default() {
            return Ok(r);
        }
        let e = SysError::last(what);
        if e.errno != libc::EINTR {
            return Err(e);
        }
    }
}

/// Environment variable that makes [`pidfd_open`] fail with ENOSYS, as on
/// kernels older than 5.3, so tests can drive the daemon's fallback (kill
/// by pid behind a start-time check) on this kernel. Read once, by
/// [`apply_test_faults`] at start-up.
pub const NO_PIDFD_ENV: &str = "LMKD_TEST_NO_PIDFD";

static NO_PIDFD: AtomicBool = AtomicBool::new(false);

/// Reads the fault switches from the environment (start-up only: it
/// allocates). Returns whether `pidfd_open` now pretends to be missing.
pub fn apply_test_faults() -> bool {
    let on = std::env::var_os(NO_PIDFD_ENV).is_some_and(|v| v == "1");
    NO_PIDFD.store(on, Ordering::Relaxed);
    on
}

/// `pidfd_open(2)` without `PIDFD_THREAD`: refuses a thread id (EINVAL on
/// older kernels, ENOENT on newer ones) and a dead pid (ESRCH), so success
/// also proves the pid is a live thread-group leader.
pub fn pidfd_open(pid: i32) -> SysResult<OwnedFd> {
    if NO_PIDFD.load(Ordering::Relaxed) {
        return Err(SysError {
            what: "pidfd_open",
            errno: libc::ENOSYS,
        });
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = retry("pidfd_open", || unsafe {
        libc::syscall(libc::SYS_pidfd_open, pid, 0)
    })?;
    // SAFETY: the kernel just gave us this descriptor; we are its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> SysResult<()> {
    // SAFETY: valid pidfd, no siginfo, no flags.
    retry("pidfd_send_signal", || unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })
    .map(drop)
}

/// `kill(2)`: for kernels without pidfds only; the caller checks the
/// process's identity (its start time) just before.
pub fn kill_pid(pid: i32, sig: i32) -> SysResult<()> {
    // SAFETY: kill takes plain integers; a positive pid names one process.
    retry("kill", || unsafe { libc::kill(pid, sig) }).map(drop)
}

/// Writes an `oom_score_adj` value through a descriptor opened at
/// registration: one `pwrite`, no path walk. Fails with ESRCH once the
/// process is gone, so it can never reach a process that reused the pid.
pub fn write_oom_adj_fd(fd: BorrowedFd<'_>, adj: i32) -> SysResult<()> {
    let mut digits = [0u8; 12];
    let s = fmt_i64(adj as i64, &mut digits);
    // SAFETY: s is a valid byte slice for the call.
    retry("write oom_score_adj", || unsafe {
        libc::pwrite(
            fd.as_raw_fd(),
            s.as_ptr() as *const libc::c_void,
            s.len(),
            0,
        )
    })
    .map(drop)
}

/// Raises `RLIMIT_NOFILE` (soft, and hard when permitted) to at least
/// `want`. Returns the soft limit in force afterwards, and the error of a
/// refused raise.
pub fn raise_nofile(want: u64) -> (u64, Option<SysError>) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: r is a valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } < 0 {
        return (0, Some(SysError::last("getrlimit RLIMIT_NOFILE")));
    }
    if r.rlim_cur >= want {
        return (r.rlim_cur, None);
    }
    let set = |cur: u64, max: u64| {
        let n = libc::rlimit {
            rlim_cur: cur,
            rlim_max: max,
        };
        // SAFETY: n is a valid rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &n) } < 0 {
            Err(SysError::last("setrlimit RLIMIT_NOFILE"))
        } else {
            Ok(())
        }
    };
    // Above the hard limit only with CAP_SYS_RESOURCE; up to it, always.
    match set(want, r.rlim_max.max(want)) {
        Ok(()) => (want, None),
        Err(e) => {
            let cur = want.min(r.rlim_max);
            match set(cur, r.rlim_max) {
                Ok(()) => (cur, Some(e)),
                Err(_) => (r.rlim_cur, Some(e)),
            }
        }
    }
}

/// `process_mrelease(2)`: reap a SIGKILLed process's memory now, from our
/// context, instead of waiting for it to be scheduled to exit.
pub fn process_mrelease(pidfd: BorrowedFd<'_>) -> SysResult<()> {
    const SYS_PROCESS_MRELEASE: libc::c_long = 448;
    // SAFETY: valid pidfd, flags 0.
    retry("process_mrelease", || unsafe {
        libc::syscall(SYS_PROCESS_MRELEASE, pidfd.as_raw_fd(), 0)
    })
    .map(drop)
}

/// Whether a pidfd reports the process as exited (readable), without waiting.
pub fn pidfd_exited(pidfd: BorrowedFd<'_>) -> bool {
    let mut pfd = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let r = unsafe { libc::poll(&mut pfd, 1, 0) };
    r > 0 && pfd.revents & libc::POLLIN != 0
}

/// CLOCK_MONOTONIC in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer; CLOCK_MONOTONIC cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub fn monotonic_ms() -> u64 {
    monotonic_ns() / 1_000_000
}

/// Builds `/proc/<pid>/<file>` paths into a fixed buffer, so the hot path
/// can open per-process files without allocating. The root is fixed at
/// start-up (tests point it elsewhere).
#[derive(Clone, Copy)]
pub struct ProcFs {
    root: [u8; 128],
    len: usize,
}

/// Room for a proc path: root + "/" + pid + "/" + file name + NUL.
pub type PathBuf = [u8; 192];

impl ProcFs {
    pub fn new(root: &Path) -> io::Result<ProcFs> {
        let b = root.as_os_str().as_encoded_bytes();
        let b = b.strip_suffix(b"/").unwrap_or(b);
        if b.len() >= 128 || b.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("proc root {} is too long or has a NUL", root.display()),
            ));
        }
        let mut r = ProcFs {
            root: [0; 128],
            len: b.len(),
        };
        r.root[..b.len()].copy_from_slice(b);
        Ok(r)
    }

    /// `<root>/<pid>/<file>` (or `<root>/<file>` when pid is None) as a C string.
    pub fn path<'a>(&self, pid: Option<i32>, file: &str, buf: &'a mut PathBuf) -> &'a CStr {
        let mut n = 0;
        let mut put = |s: &[u8], n: &mut usize| {
            let k = s.len().min(buf.len() - 1 - *n);
            buf[*n..*n + k].copy_from_slice(&s[..k]);
            *n += k;
        };
        put(&self.root[..self.len], &mut n);
        if let Some(pid) = pid {
            put(b"/", &mut n);
            let mut digits = [0u8; 12];
            put(fmt_i64(pid as i64, &mut digits), &mut n);
        }
        put(b"/", &mut n);
        put(file.as_bytes(), &mut n);
        buf[n] = 0;
        CStr::from_bytes_with_nul(&buf[..=n]).unwrap_or(c"")
    }

    /// Reads up to `buf.len()` bytes of a per-process file.
    pub fn read(&self, pid: Option<i32>, file: &str, buf: &mut [u8]) -> SysResult<usize> {
        let mut p = [0; 192];
        let fd = open(
            self.path(pid, file, &mut p),
            libc::O_RDONLY,
            "open proc file",
        )?;
        read_fd(fd.as_raw_fd(), buf, "read proc file")
    }

    /// Opens `oom_score_adj` of a process for writing, to keep.
    pub fn open_oom_score_adj(&self, pid: i32) -> SysResult<OwnedFd> {
        let mut p = [0; 192];
        open(
            self.path(Some(pid), "oom_score_adj", &mut p),
            libc::O_WRONLY,
            "open oom_score_adj",
        )
    }

    /// Writes `oom_score_adj` of a process once (open, write, close).
    pub fn write_oom_score_adj(&self, pid: i32, adj: i32) -> SysResult<()> {
        let fd = self.open_oom_score_adj(pid)?;
        write_oom_adj_fd(std::os::fd::AsFd::as_fd(&fd), adj)
    }

    /// Start time of a process in clock ticks since boot (field 22 of
    /// `/proc/<pid>/stat`): with the pid, it names one process for good.
    pub fn start_ticks(&self, pid: i32) -> SysResult<u64> {
        let mut buf = [0u8; 1024];
        let n = self.read(Some(pid), "stat", &mut buf)?;
        stat_field(&buf[..n], 22).ok_or(SysError {
            what: "parse start time in stat",
            errno: libc::EINVAL,
        })
    }

    /// The `Tgid` of a process (a thread id has Tgid != pid).
    pub fn tgid(&self, pid: i32) -> SysResult<i32> {
        let mut buf = [0u8; 1024];
        let n = self.read(Some(pid), "status", &mut buf)?;
        status_field(&buf[..n], b"Tgid:")
            .map(|v| v as i32)
            .ok_or(SysError {
                what: "parse Tgid",
                errno: libc::EINVAL,
            })
    }
}

/// Opens a file with O_CLOEXEC added.
pub fn open(path: &CStr, flags: i32, what: &'static str) -> SysResult<OwnedFd> {
    // SAFETY: path is NUL-terminated.
    let fd = retry(what, || unsafe {
        libc::open(path.as_ptr(), flags | libc::O_CLOEXEC)
    })?;
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads until `buf` is full or EOF.
pub fn read_fd(fd: RawFd, buf: &mut [u8], what: &'static str) -> SysResult<usize> {
    let mut n = 0;
    while n < buf.len() {
        // SAFETY: the pointer/len pair is inside buf.
        let r = retry(what, || unsafe {
            libc::read(
                fd,
                buf[n..].as_mut_ptr() as *mut libc::c_void,
                buf.len() - n,
            )
        })?;
        if r == 0 {
            break;
        }
        n += r as usize;
    }
    Ok(n)
}

/// Field `n` (1-based, as in proc(5)) of a `/proc/<pid>/stat` line, for
/// fields after the command name. The name may hold spaces and
/// parentheses, so counting starts after its last ')'.
pub fn stat_field(text: &[u8], n: usize) -> Option<u64> {
    let close = text.iter().rposition(|&b| b == b')')?;
    let tok = text[close + 1..]
        .split(|&b| b == b' ' || b == b'\n')
        .filter(|t| !t.is_empty())
        .nth(n.checked_sub(3)?)?;
    parse_u64(tok)
}

/// Finds `key` at the start of a line in a `/proc/<pid>/status`-like text
/// and parses the first number after it.
pub fn status_field(text: &[u8], key: &[u8]) -> Option<u64> {
    let mut rest = text;
    loop {
        if rest.starts_with(key) {
            return parse_u64(&rest[key.len()..]);
        }
        let nl = rest.iter().position(|&b| b == b'\n')?;
        rest = &rest[nl + 1..];
    }
}

/// Parses the first run of decimal digits after optional blanks.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    let s = &s[s.iter().position(|b| !matches!(b, b' ' | b'\t'))?..];
    let end = s
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    if end == 0 {
        return None;
    }
    s[..end].iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add((d - b'0') as u64)
    })
}

/// Formats an integer into a small buffer without allocating.
pub fn fmt_i64(v: i64, buf: &mut [u8; 12]) -> &[u8] {
    if !(-99_999_999_999..=999_999_999_999).contains(&v) {
        return b"0";
    }
    let mut i = buf.len();
    let neg = v < 0;
    let mut u = v.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    if neg {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

/// Peer credentials of one received datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Creds {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// Outcome of [`recv_with_creds`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recv {
    /// A datagram of `len` bytes (its real length: `truncated` when that is
    /// more than the buffer held) and its credentials if any were attached.
    Packet {
        len: usize,
        truncated: bool,
        creds: Option<Creds>,
    },
    /// Orderly shutdown by the peer.
    Closed,
    /// Nothing queued.
    WouldBlock,
}

/// Receives one datagram with its `SCM_CREDENTIALS`, non-blocking, into a
/// caller buffer; the control buffer lives on the stack.
pub fn recv_with_creds(fd: RawFd, buf: &mut [u8]) -> SysResult<Recv> {
    // Room for one ucred control message, aligned for cmsghdr.
    #[repr(C, align(8))]
    struct Control([u8; 64]);
    let mut control = Control([0; 64]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; zeroed is a valid empty value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = control.0.len() as _;
    // SAFETY: msg points at live buffers for the duration of the call.
    let n = unsafe {
        libc::recvmsg(
            fd,
            &mut msg,
            libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC | libc::MSG_TRUNC,
        )
    };
    if n < 0 {
        let e = SysError::last("recvmsg");
        return match e.errno {
            libc::EAGAIN | libc::EINTR => Ok(Recv::WouldBlock),
            _ => Err(e),
        };
    }
    if n == 0 {
        // On SEQPACKET a zero-length read is the peer's hang-up.
        return Ok(Recv::Closed);
    }
    let mut creds = None;
    // SAFETY: walking the control buffer the kernel filled, with the libc
    // CMSG helpers that bound every step by msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_CREDENTIALS {
                let u = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::ucred);
                creds = Some(Creds {
                    pid: u.pid,
                    uid: u.uid,
                    gid: u.gid,
                });
            } else if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                // Never keep descriptors a client smuggles in.
                let data = libc::CMSG_DATA(c) as *const RawFd;
                let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
                for i in 0..count {
                    libc::close(std::ptr::read_unaligned(data.add(i)));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(Recv::Packet {
        len: n as usize,
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
        creds,
    })
}

/// Sends one datagram without ever blocking.
pub fn send_nonblocking(fd: RawFd, buf: &[u8]) -> SysResult<()> {
    // SAFETY: buf is valid for the call.
    retry("send", || unsafe {
        libc::send(
            fd,
            buf.as_ptr() as *const libc::c_void,
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    })
    .map(drop)
}

/// Sets an int socket option.
pub fn setsockopt_int(
    fd: RawFd,
    level: i32,
    name: i32,
    value: i32,
    what: &'static str,
) -> SysResult<()> {
    // SAFETY: value points to a c_int of the given size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(SysError::last(what));
    }
    Ok(())
}

/// A `SOCK_SEQPACKET` unix socket and the address of `path`, shared by the
/// server (bind) and the client (connect).
pub fn seqpacket_socket(path: &std::path::Path) -> io::Result<(OwnedFd, libc::sockaddr_un)> {
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid empty value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_encoded_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("socket path {} is too long", path.display()),
        ));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: plain socket(2); checked below.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("socket for {}: {e}", path.display()),
        ));
    }
    // SAFETY: a fresh descriptor we own.
    Ok((unsafe { OwnedFd::from_raw_fd(fd) }, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_field_counts_after_the_command_name() {
        let line =
            b"1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 777 0 3 0 10 5 0 0 20 0 1 0 4200 123 45\n";
        assert_eq!(stat_field(line, 3), None, "state is not a number");
        assert_eq!(stat_field(line, 4), Some(1));
        assert_eq!(stat_field(line, 10), Some(777));
        assert_eq!(stat_field(line, 22), Some(4200));
        assert_eq!(stat_field(line, 24), Some(45));
        assert_eq!(stat_field(line, 25), None);
        assert_eq!(stat_field(line, 2), None);
        assert_eq!(stat_field(b"no paren", 22), None);
    }

    #[test]
    fn start_ticks_of_self_is_stable() {
        let procfs = ProcFs::new(Path::new("/proc")).unwrap();
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        let t = procfs.start_ticks(me).unwrap();
        assert!(t > 0);
        assert_eq!(procfs.start_ticks(me), Ok(t));
        assert!(procfs.start_ticks(i32::MAX).is_err());
    }
}
