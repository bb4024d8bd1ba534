//! `strace -f` attached to a running daemon, for tests that check which
//! syscalls it makes and on which thread.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::eventually;

const ATTACH: Duration = Duration::from_secs(5);

/// A trace of `calls` on every thread of `pid`, written to a file.
pub struct Strace {
    child: Child,
    out: PathBuf,
}

impl Strace {
    pub fn attach(pid: u32, calls: &str, out: PathBuf) -> Strace {
        let child = Command::new("strace")
            .args(["-f", "-qq", "-e"])
            .arg(format!("trace={calls}"))
            .arg("-o")
            .arg(&out)
            .arg("-p")
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn strace");
        // strace writes nothing until a traced call; wait until every
        // thread is attached (they show as TracerPid in their status).
        let traced = || {
            fs::read_dir(format!("/proc/{pid}/task"))
                .map(|d| {
                    d.flatten().all(|t| {
                        fs::read_to_string(t.path().join("status")).is_ok_and(|s| {
                            s.lines().any(|l| {
                                l.starts_with("TracerPid:") && l.trim_end() != "TracerPid:\t0"
                            })
                        })
                    })
                })
                .unwrap_or(false)
        };
        assert!(eventually(ATTACH, traced), "strace did not attach to {pid}");
        Strace { child, out }
    }

    /// What is written so far (strace may still hold some back).
    pub fn text(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Detaches and returns the trace.
    pub fn finish(mut self) -> String {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        self.text()
    }
}

impl Drop for Strace {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `strace` runs here.
pub fn available() -> bool {
    Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
