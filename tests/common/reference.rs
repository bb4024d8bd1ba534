//! lmkd-rs beside a reference lmkd in one bench run. The reference is an
//! AOSP lmkd built for a Linux host, named by `--reference PATH` on the
//! bench's command line or by env `LMKD_REFERENCE`. It needs an init
//! stand-in that binds its control socket and execs it
//! (`lmkd_launch SOCK PROG`, looked for beside PATH or named by
//! `LMKD_REFERENCE_LAUNCH`), and reads its properties from the file named
//! by `LMKD_PROPS` (default: a scratch file with `sys.boot_completed=1`).
//! Without a reference a bench measures lmkd-rs alone and says so.
//! One piece of code serves every comparing bench.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use lmkd::client::Client;

use super::pressure::{unique, Cgroup, UNIFIED};
use super::{die_with_us, TempDir};

/// A daemon under measurement, killed on drop.
pub struct Running {
    pub name: &'static str,
    pub child: Child,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Connects, waiting up to 5 s for the daemon to listen.
    pub fn connect(&self) -> Result<Client, String> {
        let mut last = String::new();
        for _ in 0..100 {
            match Client::connect(&self.socket) {
                Ok(c) => return Ok(c),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("{}: cannot connect: {last}", self.name))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        std::thread::sleep(Duration::from_millis(200));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The reference binary given to this run, if any.
pub fn path() -> Option<PathBuf> {
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--reference" {
            return args.next().map(PathBuf::from);
        }
    }
    std::env::var_os("LMKD_REFERENCE").map(PathBuf::from)
}

/// Starts lmkd-rs with its socket, config and log in `dir` and `extra`
/// TOML lines in its config.
pub fn ours(dir: &TempDir, extra: &str) -> Running {
    let socket = dir.path("rs.sock");
    let config = dir.path("rs.toml");
    let log = dir.path("rs.log");
    fs::write(&config, format!("socket_path = {socket:?}\n{extra}\n")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lmkd"));
    cmd.arg("--config")
        .arg(&config)
        .env_remove("ANDROID_SOCKET_lmkd")
        .env_remove("LMKD_PROPS_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap());
    let child = die_with_us(&mut cmd).spawn().expect("spawn lmkd-rs");
    Running {
        name: "lmkd-rs",
        child,
        socket,
        log,
    }
}

/// Starts the reference lmkd at `lmkd` through its init stand-in.
pub fn reference(dir: &TempDir, lmkd: &Path) -> Result<Running, String> {
    reference_on(dir, lmkd, None, "")
}

/// Like [`reference`], with `props` lines added to its properties and,
/// given `psi`, that pressure file (a cgroup's `memory.pressure`) in place
/// of the system's: lmkd reads only `/proc/pressure/memory`, so it runs in
/// a mount namespace of its own with `psi` bound over that path.
pub fn reference_on(
    dir: &TempDir,
    lmkd: &Path,
    psi: Option<&Path>,
    props: &str,
) -> Result<Running, String> {
    if !lmkd.exists() {
        return Err(format!("no reference lmkd at {}", lmkd.display()));
    }
    let launch = std::env::var_os("LMKD_REFERENCE_LAUNCH")
        .map(PathBuf::from)
        .unwrap_or_else(|| lmkd.with_file_name("lmkd_launch"));
    if !launch.exists() {
        return Err(format!(
            "no launcher at {} (set LMKD_REFERENCE_LAUNCH)",
            launch.display()
        ));
    }
    let base = match std::env::var_os("LMKD_PROPS") {
        Some(p) => fs::read_to_string(&p)
            .map_err(|e| format!("LMKD_PROPS {}: {e}", Path::new(&p).display()))?,
        None => "sys.boot_completed=1\n".to_string(),
    };
    let props_file = dir.path("lmkd.props");
    fs::write(&props_file, format!("{base}\n{props}")).unwrap();
    let socket = dir.path("ref.sock");
    let log = dir.path("ref.log");
    let mut cmd = match psi {
        None => Command::new(&launch),
        Some(psi) => {
            // unshare(1) execs in place, so the child's pid is lmkd's.
            let mut c = Command::new("unshare");
            c.args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                r#"mount --bind "$0" /proc/pressure/memory && exec "$@""#,
            ])
            .arg(psi)
            .arg(&launch);
            c
        }
    };
    cmd.arg(&socket)
        .arg(lmkd)
        .env("LMKD_PROPS", &props_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap());
    let child = die_with_us(&mut cmd)
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", launch.display()))?;
    Ok(Running {
        name: "AOSP lmkd",
        child,
        socket,
        log,
    })
}

/// lmkd-rs (with `extra` config lines), then the reference when one was
/// given and starts; prints which ran. Given `psi` (a cgroup's
/// `memory.pressure`), both watch it instead of the system's.
pub fn daemons(dir: &TempDir, extra: &str, psi: Option<&Path>) -> Vec<Running> {
    let extra = match psi {
        Some(p) => format!("psi_path = {p:?}\n{extra}"),
        None => extra.to_string(),
    };
    let mut out = vec![ours(dir, &extra)];
    match path() {
        Some(p) => match reference_on(dir, &p, psi, "") {
            Ok(r) => out.push(r),
            Err(e) => println!("reference not run: {e}: lmkd-rs alone"),
        },
        None => {
            println!("no reference lmkd (pass --reference PATH or LMKD_REFERENCE): lmkd-rs alone")
        }
    }
    out
}

/// An empty cgroup2 group whose `memory.pressure` both daemons can watch
/// (see [`daemons`]) so that other tenants' pressure on a shared machine
/// cannot wake them or make them kill a bench's processes; None (said on
/// stdout) without cgroup2. Removed on drop.
pub fn quiet_group(tag: &str) -> Option<Cgroup> {
    if !Path::new(UNIFIED).join("memory.pressure").exists() {
        println!("no cgroup2 at {UNIFIED}: the daemons watch the system's pressure");
        return None;
    }
    let g = Cgroup::create(Path::new(UNIFIED).join(unique(tag)));
    println!(
        "the daemons watch {} (an empty group)",
        g.file("memory.pressure").display()
    );
    Some(g)
}

/// `rs / aosp` for printing, with the zero cases spelled out.
pub fn ratio(rs: f64, aosp: f64) -> String {
    if aosp == 0.0 {
        if rs == 0.0 {
            "1.00 (both zero)".to_string()
        } else {
            "inf (reference zero)".to_string()
        }
    } else {
        format!("{:.2}", rs / aosp)
    }
}

/// A `name:` line of `/proc/<pid>/status` (or any keyed kB file), in kB.
pub fn status_kb(pid: u32, key: &str) -> u64 {
    keyed_kb(&format!("/proc/{pid}/status"), key)
}

pub fn keyed_kb(file: &str, key: &str) -> u64 {
    fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim_start_matches(':').split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
