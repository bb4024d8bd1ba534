//! lmkd-workload: an ActivityManager stand-in that runs app workloads
//! against lmkd and judges who died, when and why.
//!
//! Modes:
//! - `lmkd-workload [--socket PATH] --scenario FILE [--out FILE] [--label NAME]
//!   [--data-file PATH] [--deadline-ms N] [--cycles N]`: run a scenario
//!   (`--cycles` sets how many pressure cycles a soak runs). Without
//!   `--socket` no daemon is used (earlyoom / kernel OOM killer runs) and the
//!   driver writes `oom_score_adj` itself.
//! - `lmkd-workload sample --out FILE [--interval-ms N] [--watch-pid PID]`:
//!   record memory, PSI and a daemon's footprint until SIGTERM.
//! - app mode (internal): entered when the `LMKD_WORKLOAD_APP` variable is
//!   set; the driver re-executes itself that way for every app.
//!
//! Exit status: 0 pass, 1 the scenario's criteria failed, 2 error or the
//! daemon went away mid-run, 3 the run exceeded its deadline.

mod app;
mod json;
mod run;
mod sample;
mod scenario;

const USAGE: &str = "usage: lmkd-workload [--socket PATH] --scenario FILE [--out FILE] [--label NAME] \
[--data-file PATH] [--deadline-ms N] [--cycles N]\n       lmkd-workload sample --out FILE [--interval-ms N] [--watch-pid PID]";

fn die(msg: &str) -> ! {
    eprintln!("lmkd-workload: {msg}\n{USAGE}");
    std::process::exit(2);
}

fn num<T: std::str::FromStr>(flag: &str, v: Option<String>) -> T {
    let v = v.unwrap_or_else(|| die(&format!("{flag} needs a value")));
    v.parse()
        .unwrap_or_else(|_| die(&format!("{flag} {v}: not a valid number")))
}

fn main() {
    if let Ok(spec) = std::env::var(app::ENV) {
        let name = std::env::args().next().unwrap_or_default();
        set_comm(&name);
        let err = match app::AppParams::decode(&spec) {
            Some(p) => app::run(&p).unwrap_err(),
            None => format!("bad {} value {spec:?}", app::ENV),
        };
        eprintln!("lmkd-workload app {name}: {err}");
        std::process::exit(1);
    }
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("sample") {
        args.next();
        let mut a = sample::SampleArgs {
            out: String::new(),
            interval_ms: 200,
            watch_pid: None,
        };
        while let Some(f) = args.next() {
            match f.as_str() {
                "--out" => a.out = args.next().unwrap_or_else(|| die("--out needs a value")),
                "--interval-ms" => a.interval_ms = num(&f, args.next()),
                "--watch-pid" => a.watch_pid = Some(num(&f, args.next())),
                _ => die(&format!("unknown argument {f:?}")),
            }
        }
        if a.out.is_empty() {
            die("sample needs --out");
        }
        if let Err(e) = sample::run(&a) {
            die(&e);
        }
        return;
    }
    let mut a = run::RunArgs {
        socket: None,
        scenario: String::new(),
        out: None,
        label: "lmkd-rs".into(),
        data_file: None,
        deadline_ms: None,
        cycles: None,
    };
    while let Some(f) = args.next() {
        let mut val = || {
            args.next()
                .unwrap_or_else(|| die(&format!("{f} needs a value")))
        };
        match f.as_str() {
            "--socket" => a.socket = Some(val()),
            "--scenario" => a.scenario = val(),
            "--out" => a.out = Some(val()),
            "--label" => a.label = val(),
            "--data-file" => a.data_file = Some(val()),
            "--deadline-ms" => a.deadline_ms = Some(num(&f, args.next())),
            "--cycles" => a.cycles = Some(num(&f, args.next())),
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            _ => die(&format!("unknown argument {f:?}")),
        }
    }
    if a.scenario.is_empty() {
        die("--scenario is required");
    }
    std::process::exit(run::run(a));
}

/// Sets `comm` to the app name: lmkd and the kernel report that name.
fn set_comm(name: &str) {
    let mut buf = [0u8; 16];
    let n = name.len().min(15);
    buf[..n].copy_from_slice(&name.as_bytes()[..n]);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, buf.as_ptr() as libc::c_ulong) };
}
