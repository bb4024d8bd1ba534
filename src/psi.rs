//! Pressure sources: PSI triggers (one fd per trigger, EPOLLPRI on event),
//! or memcg v1 vmpressure when the kernel has no PSI. Opened at start-up;
//! afterwards an event costs one epoll wakeup and no reads.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::policy::Pressure;
use crate::sys;

/// The window lmkd asks for.
pub const WINDOW_US: u32 = 1_000_000;
/// Without CAP_SYS_RESOURCE, Linux 6.4+ only accepts windows that are
/// multiples of 2 s.
pub const FALLBACK_WINDOW_US: u32 = 2_000_000;

/// One armed trigger.
pub struct Trigger {
    fd: OwnedFd,
    pub pressure: Pressure,
    pub threshold_us: u32,
    pub window_us: u32,
}

impl AsFd for Trigger {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// What the monitor is listening to.
pub enum Source {
    /// `some` (partial) and `full` (complete) PSI triggers, and ours: a
    /// second `some` trigger below lmkd's threshold (`psi_early_stall_ms`).
    Psi {
        early: Option<Trigger>,
        partial: Trigger,
        complete: Trigger,
    },
    /// Counter fds that become readable on pressure: memcg v1
    /// `memory.pressure_level` eventfds (medium -> Partial, critical ->
    /// Complete), or eventfds a test writes to inject events.
    Counters {
        medium: OwnedFd,
        critical: OwnedFd,
        _level: Option<OwnedFd>,
    },
}

/// The trigger thresholds (ms; 0 = no trigger) the configuration asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// Ours, below `partial`: see `Config::early_stall_ms`.
    pub early: u32,
    pub partial: u32,
    pub complete: u32,
}

impl Thresholds {
    pub fn of(c: &Config) -> Thresholds {
        Thresholds {
            early: c.early_stall_ms(),
            partial: c.psi_partial_stall_ms,
            complete: c.psi_complete_stall_ms,
        }
    }
}

/// Writes one trigger spec to its own fd: a second trigger on the same
/// fd gives EBUSY, so each needs a fresh open.
fn arm(
    path: &Path,
    kind: &str,
    threshold_us: u32,
    window_us: u32,
) -> Result<OwnedFd, sys::SysError> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| sys::SysError {
        what: "PSI path has a NUL byte",
        errno: libc::EINVAL,
    })?;
    let fd = sys::open(&c, libc::O_RDWR | libc::O_NONBLOCK, "open PSI file")?;
    let spec = format!("{kind} {threshold_us} {window_us}\0");
    // SAFETY: writing a NUL-terminated spec from a live buffer.
    let r = unsafe {
        libc::write(
            fd.as_raw_fd(),
            spec.as_ptr() as *const libc::c_void,
            spec.len(),
        )
    };
    if r < 0 {
        return Err(sys::SysError::last("write PSI trigger"));
    }
    Ok(fd)
}

/// Arms `kind` with lmkd's 1 s window, falling back to 2 s with the
/// threshold scaled to the same stall ratio when the kernel says EINVAL.
fn trigger(path: &Path, kind: &str, stall_ms: u32, pressure: Pressure) -> io::Result<Trigger> {
    if stall_ms == 0 {
        // lmkd registers no trigger for a threshold of 0. An eventfd nobody
        // writes stands in, so the source keeps its shape and this never fires.
        log::info!("PSI '{kind}' trigger off (threshold 0)");
        // SAFETY: eventfd with valid flags; checked below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(sys::SysError::last("eventfd for a PSI trigger that is off").into());
        }
        return Ok(Trigger {
            // SAFETY: fresh descriptor we own.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            pressure,
            threshold_us: 0,
            window_us: WINDOW_US,
        });
    }
    let threshold_us = stall_ms.saturating_mul(1000).min(WINDOW_US - 1);
    match arm(path, kind, threshold_us, WINDOW_US) {
        Ok(fd) => Ok(Trigger {
            fd,
            pressure,
            threshold_us,
            window_us: WINDOW_US,
        }),
        Err(e) if e.errno == libc::EINVAL => {
            let scaled = threshold_us * (FALLBACK_WINDOW_US / WINDOW_US);
            let fd = arm(path, kind, scaled, FALLBACK_WINDOW_US).map_err(|e2| {
                io::Error::other(format!(
                    "PSI trigger '{kind}' on {}: 1 s window refused ({e}), 2 s window too ({e2})",
                    path.display()
                ))
            })?;
            Ok(Trigger {
                fd,
                pressure,
                threshold_us: scaled,
                window_us: FALLBACK_WINDOW_US,
            })
        }
        Err(e) => Err(io::Error::other(format!(
            "PSI trigger '{kind}' on {}: {e}",
            path.display()
        ))),
    }
}

/// What a source is, for the log line that says what is armed (Copy, so
/// the core can hand it to the logging thread without formatting).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Psi {
        /// 0: no early trigger.
        early_us: u32,
        some_us: u32,
        full_us: u32,
        window_ms: u32,
    },
    Vmpressure,
    Injected,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Kind::Psi {
                early_us,
                some_us,
                full_us,
                window_ms,
            } => {
                f.write_str("PSI some ")?;
                if early_us > 0 {
                    write!(f, "{early_us} us (early) + ")?;
                }
                write!(
                    f,
                    "{some_us} us / full {full_us} us per {window_ms} ms window"
                )
            }
            Kind::Vmpressure => f.write_str("memcg v1 vmpressure (medium, critical)"),
            Kind::Injected => f.write_str("injected events"),
        }
    }
}

impl Source {
    /// The source the configuration asks for: PSI triggers on `psi_path`
    /// (unless `use_psi` is false); without PSI, vmpressure on
    /// `vmpressure_memcg`; else a clear error.
    pub fn from_config(c: &Config) -> io::Result<Source> {
        let s = &c.startup;
        if !s.use_psi {
            log::info!("use_psi is false: using memcg v1 vmpressure");
            return vmpressure(&s.vmpressure_memcg).map_err(|e| {
                io::Error::other(format!(
                    "no pressure source: use_psi is false and vmpressure failed: {e}"
                ))
            });
        }
        Self::open(&s.psi_path, Thresholds::of(c), &s.vmpressure_memcg)
    }

    /// PSI triggers on `psi_path`; if PSI is missing, vmpressure on the
    /// root memory cgroup under `memcg_root`; else a clear error.
    pub fn open(psi_path: &Path, ms: Thresholds, memcg_root: &Path) -> io::Result<Source> {
        if psi_path.exists() {
            return Self::psi(psi_path, ms);
        }
        log::warn!(
            "no PSI at {}: falling back to memcg v1 vmpressure",
            psi_path.display()
        );
        Self::vmpressure(memcg_root).map_err(|e| {
            io::Error::other(format!(
                "no pressure source: {} is missing (kernel without PSI?) and vmpressure failed: {e}",
                psi_path.display()
            ))
        })
    }

    /// PSI `some` and `full` triggers on `psi_path`, nothing else.
    pub fn psi(psi_path: &Path, ms: Thresholds) -> io::Result<Source> {
        let early = match ms.early {
            0 => None,
            early => Some(trigger(psi_path, "some", early, Pressure::Early)?),
        };
        let partial = trigger(psi_path, "some", ms.partial, Pressure::Partial)?;
        let complete = trigger(psi_path, "full", ms.complete, Pressure::Complete)?;
        if partial.window_us != WINDOW_US || complete.window_us != WINDOW_US {
            log::warn!(
                "PSI on {}: the kernel refused 1 s trigger windows (no CAP_SYS_RESOURCE?); \
                 using 2 s windows with thresholds scaled to match (some {} ms{}, full {} ms)",
                psi_path.display(),
                partial.threshold_us / 1000,
                early.as_ref().map_or(String::new(), |e| format!(
                    ", early some {} ms",
                    e.threshold_us / 1000
                )),
                complete.threshold_us / 1000
            );
        }
        Ok(Source::Psi {
            early,
            partial,
            complete,
        })
    }

    /// memcg v1 vmpressure events (medium, critical) on `memcg`.
    pub fn vmpressure(memcg: &Path) -> io::Result<Source> {
        vmpressure(memcg)
    }

    pub fn is_psi(&self) -> bool {
        matches!(self, Source::Psi { .. })
    }

    /// vmpressure levels rather than PSI stalls: the level decides the min
    /// adj directly.
    pub fn is_vmpressure(&self) -> bool {
        matches!(
            self,
            Source::Counters {
                _level: Some(_),
                ..
            }
        )
    }

    /// The fds to watch and what each means; `EPOLLPRI` for PSI,
    /// `EPOLLIN` for eventfds.
    pub fn fds(&self) -> impl Iterator<Item = (BorrowedFd<'_>, Pressure, bool)> {
        let all = match self {
            Source::Psi {
                early,
                partial,
                complete,
            } => [
                Some((partial.as_fd(), Pressure::Partial, true)),
                Some((complete.as_fd(), Pressure::Complete, true)),
                early.as_ref().map(|e| (e.as_fd(), Pressure::Early, true)),
            ],
            Source::Counters {
                medium, critical, ..
            } => [
                Some((medium.as_fd(), Pressure::Partial, false)),
                Some((critical.as_fd(), Pressure::Complete, false)),
                None,
            ],
        };
        all.into_iter().flatten()
    }

    /// Clears a vmpressure eventfd after it fired (PSI needs nothing).
    pub fn ack(&self, pressure: Pressure) {
        if let Source::Counters {
            medium, critical, ..
        } = self
        {
            let fd = if pressure == Pressure::Complete {
                critical
            } else {
                medium
            };
            let mut v = 0u64;
            // SAFETY: 8-byte read into a u64 from a non-blocking eventfd.
            unsafe { libc::read(fd.as_raw_fd(), &mut v as *mut u64 as *mut libc::c_void, 8) };
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Source::Psi {
                early,
                partial,
                complete,
            } => Kind::Psi {
                early_us: early.as_ref().map_or(0, |e| e.threshold_us),
                some_us: partial.threshold_us,
                full_us: complete.threshold_us,
                window_ms: partial.window_us / 1000,
            },
            Source::Counters {
                _level: Some(_), ..
            } => Kind::Vmpressure,
            Source::Counters { _level: None, .. } => Kind::Injected,
        }
    }

    pub fn describe(&self) -> String {
        self.kind().to_string()
    }
}

fn vmpressure(memcg_root: &Path) -> io::Result<Source> {
    let level_path: PathBuf = memcg_root.join("memory.pressure_level");
    let control = memcg_root.join("cgroup.event_control");
    let level = std::fs::File::open(&level_path)
        .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", level_path.display())))?;
    let level: OwnedFd = level.into();
    let listen = |name: &str| -> io::Result<OwnedFd> {
        // SAFETY: eventfd with valid flags; checked below.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if efd < 0 {
            return Err(sys::SysError::last("eventfd for vmpressure").into());
        }
        // SAFETY: fresh descriptor we own.
        let efd = unsafe { OwnedFd::from_raw_fd(efd) };
        let line = format!("{} {} {name}", efd.as_raw_fd(), level.as_raw_fd());
        std::fs::write(&control, line)
            .map_err(|e| io::Error::new(e.kind(), format!("write {}: {e}", control.display())))?;
        Ok(efd)
    };
    let medium = listen("medium")?;
    let critical = listen("critical")?;
    Ok(Source::Counters {
        medium,
        critical,
        _level: Some(level),
    })
}

/// A source fed by hand, for tests: write 1 (as a u64) to the returned
/// eventfds to raise a partial or complete pressure event.
pub fn injected() -> io::Result<(Source, OwnedFd, OwnedFd)> {
    let make = || -> io::Result<OwnedFd> {
        // SAFETY: eventfd with valid flags; checked below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(sys::SysError::last("eventfd for injected pressure").into());
        }
        // SAFETY: fresh descriptor we own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    };
    let (medium, critical) = (make()?, make()?);
    let (m2, c2) = (medium.try_clone()?, critical.try_clone()?);
    Ok((
        Source::Counters {
            medium,
            critical,
            _level: None,
        },
        m2,
        c2,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On this kind of machine (no CAP_SYS_RESOURCE) the kernel refuses
    /// 1 s windows; elsewhere it accepts them. Either way the triggers are
    /// armed and the threshold keeps the configured stall ratio.
    #[test]
    fn triggers_arm_with_1s_or_scaled_2s_window() {
        let psi = Path::new("/proc/pressure/memory");
        if !psi.exists() {
            eprintln!("SKIP: no PSI on this kernel");
            return;
        }
        let ms = Thresholds {
            early: 50,
            partial: 70,
            complete: 700,
        };
        let src = Source::open(psi, ms, Path::new("/nonexistent")).unwrap();
        let Source::Psi {
            early: Some(early),
            partial,
            complete,
        } = &src
        else {
            panic!("PSI present but not used, or the early trigger missing")
        };
        for (t, ms) in [(early, 50), (partial, 70), (complete, 700)] {
            match t.window_us {
                WINDOW_US => assert_eq!(t.threshold_us, ms * 1000),
                FALLBACK_WINDOW_US => assert_eq!(t.threshold_us, ms * 2000),
                w => panic!("unexpected window {w}"),
            }
        }
        assert_eq!(partial.window_us, complete.window_us);
        assert_eq!(early.window_us, partial.window_us);
        assert_eq!(src.fds().count(), 3);
    }
}
