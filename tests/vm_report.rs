//! `tests/vm/report.py compare` on two synthetic runs: the side-by-side
//! table carries the figures the runs imply, and the comparison picture is
//! drawn. Needs only python3, not the VM, so it runs everywhere.
mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

/// One run directory as `tests/vm/run.sh` leaves it, reduced to what the
/// report reads: the first death 500 ms into the run, PSI `some` at 300 ms
/// 100 ms before it and 400 ms 100 ms after, and the main thread's CPU
/// grown by `ticks` clock ticks.
fn fake_run(dir: &Path, killer: &str, ticks: u64) {
    fs::create_dir_all(dir).unwrap();
    let result = format!(
        r#"{{"scenario": "synthetic", "killer": "{killer}", "pass": true, "t0_mono_ms": 1000,
  "first_death_ms": 500, "deaths_total": 1, "daemon_kills": 1,
  "deaths": [{{"t_ms": 500, "app": "cached900", "pid": 42, "adj": 900, "cause": "lmkd"}}]}}"#
    );
    fs::write(dir.join("result.json"), result).unwrap();
    let mut csv = String::from(
        "t_ms,mem_free_kb,mem_avail_kb,cached_kb,swap_total_kb,swap_free_kb,some_total_us,\
         full_total_us,some_avg10,full_avg10,daemon_rss_kb,daemon_lck_kb,oom_kill\n",
    );
    for (t, some) in [(1000, 0), (1200, 100_000), (1400, 300_000), (1600, 400_000)] {
        csv += &format!("{t},50000,60000,1000,262140,200000,{some},0,0.00,0.00,900,900,0\n");
    }
    fs::write(dir.join("samples.csv"), csv).unwrap();
    let psi = |some: u64| {
        format!(
            "some avg10=0.00 avg60=0.00 avg300=0.00 total={some}\n\
             full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
        )
    };
    fs::write(dir.join("psi.before"), psi(0)).unwrap();
    fs::write(dir.join("psi.after"), psi(400_000)).unwrap();
    let stat = |utime: u64| format!("7 (lmkd) S 1 0 0 0 -1 0 5 0 0 0 {utime} 0 0 0\n");
    fs::write(dir.join("killer-threads.before"), stat(10)).unwrap();
    fs::write(dir.join("killer-threads.after"), stat(10 + ticks)).unwrap();
}

/// The cells of the table row labelled `label` (compared trimmed).
fn row<'a>(table: &'a str, label: &str) -> Vec<&'a str> {
    table
        .lines()
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.first() == Some(&label.trim()))
        .map(|cells| cells[1..].to_vec())
        .unwrap_or_else(|| panic!("no row {label:?} in:\n{table}"))
}

#[test]
fn compare_table_splits_the_stall_at_the_first_kill_and_draws_the_picture() {
    if Command::new("python3").arg("--version").output().is_err() {
        common::skip("vm_report", "python3 is not installed");
        return;
    }
    let tmp = common::TempDir::new("vm-report");
    let (ours, theirs) = (
        tmp.0.join("synthetic-lmkd-rs-r1"),
        tmp.0.join("synthetic-aosp-r1"),
    );
    fake_run(&ours, "lmkd-rs", 50);
    fake_run(&theirs, "aosp", 3);
    let svg = tmp.0.join("compare.svg");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/report.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg("compare")
        .arg("--svg")
        .arg(&svg)
        .arg(&ours)
        .arg(&theirs)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "report.py compare failed: {}\n{table}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(row(&table, "PSI some total (ms)"), ["400", "400"]);
    // The death at 1 500 ms falls halfway between 300 and 400 ms of stall.
    assert_eq!(row(&table, "  before the first kill"), ["350", "350"]);
    assert_eq!(row(&table, "  after it"), ["50", "50"]);
    // Clock ticks of 10 ms.
    assert_eq!(row(&table, "core thread CPU (ms)"), ["500", "30"]);
    let picture = fs::read_to_string(&svg).unwrap();
    assert!(
        picture.contains("<polyline") && picture.trim_end().ends_with("</svg>"),
        "comparison picture not drawn: {} bytes",
        picture.len()
    );
}
