//! An in-process daemon fed by injected pressure events and recorded /proc
//! snapshots, with per-process files taken from the real /proc.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use lmkd::client::Client;
use lmkd::config::Config;
use lmkd::daemon::{Daemon, Options};

use super::TempDir;

pub struct InProc {
    pub dir: TempDir,
    pub partial: OwnedFd,
    pub complete: OwnedFd,
}

/// A proc root of recorded system files (fixture `name`) plus symlinks to
/// the real `/proc/<pid>` of `pids`.
pub fn proc_root(dir: &TempDir, fixture: &str, pids: &[i32]) -> std::path::PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/proc")
        .join(fixture);
    let root = dir.path("proc");
    fs::create_dir_all(&root).unwrap();
    for f in ["meminfo", "vmstat", "zoneinfo"] {
        fs::copy(src.join(f), root.join(f)).unwrap();
    }
    fs::copy(src.join("pressure_memory"), dir.path("pressure")).unwrap();
    for pid in pids {
        std::os::unix::fs::symlink(format!("/proc/{pid}"), root.join(pid.to_string())).unwrap();
    }
    root
}

impl InProc {
    /// Starts a daemon on its own thread over fixture `fixture`; `tweak`
    /// adjusts the config and options. Returns once it is running.
    pub fn start(
        tag: &str,
        fixture: &str,
        pids: &[i32],
        tweak: impl FnOnce(&mut Config, &mut Options) + Send + 'static,
    ) -> InProc {
        let dir = TempDir::new(tag);
        let mut cfg = Config::default();
        cfg.startup.proc_root = proc_root(&dir, fixture, pids);
        cfg.startup.psi_path = dir.path("pressure");
        Self::spawn(dir, cfg, tweak)
    }

    /// Like [`InProc::start`], but over the real /proc (only the pressure
    /// events are injected).
    pub fn real(
        tag: &str,
        tweak: impl FnOnce(&mut Config, &mut Options) + Send + 'static,
    ) -> InProc {
        Self::spawn(TempDir::new(tag), Config::default(), tweak)
    }

    fn spawn(
        dir: TempDir,
        mut cfg: Config,
        tweak: impl FnOnce(&mut Config, &mut Options) + Send + 'static,
    ) -> InProc {
        cfg.startup.socket_path = dir.path("lmkd.sock");
        cfg.startup.max_procs = 2048;
        let (source, partial, complete) = lmkd::psi::injected().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut opts = Options::new(None, Box::new(lmkd::props::NoProperties));
            opts.signals = false;
            opts.source = Some(source);
            tweak(&mut cfg, &mut opts);
            let mut d = Daemon::new(cfg, opts).expect("daemon start-up");
            tx.send(()).unwrap();
            let _ = d.run();
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("daemon did not start");
        InProc {
            dir,
            partial,
            complete,
        }
    }

    /// Makes `<proc root>/<pid>` point at the real `/proc/<pid>` (for
    /// processes started after the daemon).
    pub fn link(&self, pid: i32) {
        let p = self.dir.path("proc").join(pid.to_string());
        std::os::unix::fs::symlink(format!("/proc/{pid}"), p).unwrap();
    }

    pub fn unlink(&self, pid: i32) {
        let _ = fs::remove_file(self.dir.path("proc").join(pid.to_string()));
    }

    pub fn connect(&self) -> Client {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(c) = Client::connect(&self.dir.path("lmkd.sock")) {
                return c;
            }
            assert!(Instant::now() < end, "daemon socket never appeared");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Raises a complete (PSI `full`) pressure event.
    pub fn raise_complete(&self) {
        raise(&self.complete);
    }

    pub fn raise_partial(&self) {
        raise(&self.partial);
    }
}

fn raise(fd: &OwnedFd) {
    let one = 1u64;
    // SAFETY: an 8-byte write to an eventfd we own.
    let n = unsafe { libc::write(fd.as_raw_fd(), &one as *const u64 as *const libc::c_void, 8) };
    assert_eq!(n, 8);
}

impl InProc {
    /// Makes the recorded files show fresh pressure between two events, as
    /// a machine under pressure would: direct reclaim (pgscan_direct grows)
    /// and a second of complete stall (PSI `full total`). Files are
    /// rewritten in place: the daemon keeps them open.
    pub fn bump_pressure(&self) {
        bump(&self.dir.path("proc").join("vmstat"), |l| {
            let v = l
                .strip_prefix("pgscan_direct ")?
                .trim()
                .parse::<u64>()
                .ok()?;
            Some(format!("pgscan_direct {}", v + 1000))
        });
        bump_full_stall(&self.dir.path("pressure"));
    }
}

impl InProc {
    /// Like [`InProc::bump_pressure`], plus file refaults worth `pct`% of
    /// the file LRU of the fixtures (11250 pages in `small`): the policy
    /// sees cache thrashing of that size.
    pub fn bump_thrashing(&self, pct: u64) {
        self.bump_pressure();
        bump(&self.dir.path("proc").join("vmstat"), |l| {
            let v = l
                .strip_prefix("workingset_refault_file ")?
                .trim()
                .parse::<u64>()
                .ok()?;
            Some(format!(
                "workingset_refault_file {}",
                v + 11_250 * pct / 100
            ))
        });
    }
}

/// Adds a second of complete stall to a recorded PSI file's `full total`.
pub fn bump_full_stall(path: &Path) {
    bump(path, |l| {
        let (head, total) = l.strip_prefix("full ")?.rsplit_once(" total=")?;
        let v = total.trim().parse::<u64>().ok()?;
        Some(format!("full {head} total={}", v + 1_000_000))
    });
}

/// Rewrites the lines of `path` that `f` maps, keeping the others. The
/// counters only grow, so writing over the old text without truncating
/// never shows the daemon's concurrent `pread` an empty or cut file.
fn bump(path: &Path, f: impl Fn(&str) -> Option<String>) {
    use std::os::unix::fs::FileExt;
    let text = fs::read_to_string(path).unwrap();
    let out: String = text
        .lines()
        .map(|l| f(l).unwrap_or_else(|| l.to_string()) + "\n")
        .collect();
    assert!(out.len() >= text.len());
    let file = fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(out.as_bytes(), 0).unwrap();
}
