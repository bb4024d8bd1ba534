//! `tests/vm/report.py compare` on two synthetic runs: the side-by-side
//! table carries the figures the runs imply, and the comparison picture is
//! drawn. Needs only python3, not the VM, so it runs everywhere.
mod common;

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One run directory as `tests/vm/run.sh` leaves it, reduced to what the
/// report reads: the first death 500 ms into the run (lmkd's with a
/// thrashing reason at 50%, ours for low memory at 0%), PSI `some` at 300 ms
/// 100 ms before it and 400 ms 100 ms after, file refaults growing from 100
/// to 300 pages, and the main thread's CPU grown by `ticks` clock ticks.
fn fake_run(dir: &Path, killer: &str, ticks: u64) {
    fs::create_dir_all(dir).unwrap();
    let (reason, thrashing) = if killer == "aosp" { (5, 50) } else { (8, 0) };
    let result = format!(
        r#"{{"scenario": "synthetic", "killer": "{killer}", "pass": true, "t0_mono_ms": 1000,
  "daemon_connected": true, "first_death_ms": 500, "deaths_total": 1, "daemon_kills": 1,
  "deaths": [{{"t_ms": 500, "app": "cached900", "pid": 42, "adj": 900, "cause": "lmkd",
    "reason": {reason}, "thrashing": {thrashing}}}]}}"#
    );
    fs::write(dir.join("result.json"), result).unwrap();
    let mut csv = String::from(
        "t_ms,mem_free_kb,mem_avail_kb,cached_kb,swap_total_kb,swap_free_kb,some_total_us,\
         full_total_us,some_avg10,full_avg10,daemon_rss_kb,daemon_lck_kb,oom_kill,refault_file\n",
    );
    for (t, some, refault) in [
        (1000, 0, 100),
        (1200, 100_000, 150),
        (1400, 300_000, 250),
        (1600, 400_000, 300),
    ] {
        csv +=
            &format!("{t},50000,60000,1000,262140,200000,{some},0,0.00,0.00,900,900,0,{refault}\n");
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

/// Whether python3 runs here; says so where CI shows it when it does not.
fn python3() -> bool {
    let ok = Command::new("python3").arg("--version").output().is_ok();
    if !ok {
        common::skip("vm_report", "python3 is not installed");
    }
    ok
}

/// `tests/vm/report.py ARGS...`, which must succeed; its standard output.
fn report(args: &[&dyn AsRef<OsStr>]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/report.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "report.py {:?} failed: {}\n{stdout}",
        args.first().map(|a| a.as_ref()),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A synthetic run of lmkd-rs and one of lmkd in a new temporary
/// directory, their core threads having run `ours` and `theirs` ticks.
fn two_runs(name: &str, ours: u64, theirs: u64) -> (common::TempDir, PathBuf, PathBuf) {
    let tmp = common::TempDir::new(name);
    let (a, b) = (
        tmp.0.join("synthetic-lmkd-rs-r1"),
        tmp.0.join("synthetic-aosp-r1"),
    );
    fake_run(&a, "lmkd-rs", ours);
    fake_run(&b, "aosp", theirs);
    (tmp, a, b)
}

#[test]
fn compare_table_splits_the_stall_at_the_first_kill_and_draws_the_picture() {
    if !python3() {
        return;
    }
    let (tmp, ours, theirs) = two_runs("vm-report", 50, 3);
    let svg = tmp.0.join("compare.svg");
    let table = report(&[&"compare", &"--svg", &svg, &ours, &theirs]);
    assert_eq!(row(&table, "PSI some total (ms)"), ["400", "400"]);
    // The death at 1 500 ms falls halfway between 300 and 400 ms of stall.
    assert_eq!(row(&table, "  before the first kill"), ["350", "350"]);
    assert_eq!(row(&table, "  after it"), ["50", "50"]);
    // 100 ms of stall in the 200 ms up to 1 200: it began by 1 100, 400 ms
    // before the death (not at the sample that saw it).
    assert_eq!(row(&table, "onset -> first kill (ms)"), ["400", "400"]);
    // Whether the cache thrashed, beside what each killer said it saw.
    assert_eq!(row(&table, "  giving a thrashing reason"), ["0", "1"]);
    assert_eq!(
        row(&table, "thrashing % reported at the first kill"),
        ["0", "50"]
    );
    assert_eq!(
        row(&table, "guest file refaults before it (pages)"),
        ["175", "175"]
    );
    // Clock ticks of 10 ms.
    assert_eq!(row(&table, "core thread CPU (ms)"), ["500", "30"]);
    let picture = fs::read_to_string(&svg).unwrap();
    assert!(
        picture.contains("<polyline") && picture.trim_end().ends_with("</svg>"),
        "comparison picture not drawn: {} bytes",
        picture.len()
    );
}

/// `report.py summarize` names where the killer's threads faulted, from
/// the tracefs dump and the daemon's mappings, and keeps each stack with
/// its own event: the frames after a fault are not a direct reclaim's.
#[test]
fn summarize_names_each_fault_and_keeps_stacks_apart() {
    if !python3() {
        return;
    }
    let tmp = common::TempDir::new("vm-report-faults");
    let run = tmp.0.join("synthetic-lmkd-rs-r1");
    fake_run(&run, "lmkd-rs", 5);
    fs::write(
        run.join("killer-reclaim.trace"),
        "# tracer: nop\n\
         \x20           lmkd-7       [000] .....    10.000000: mm_vmscan_direct_reclaim_begin: order=0\n\
         \x20           lmkd-7       [000] .....    10.000001: <stack trace>\n\
         \x20=> __alloc_pages_slowpath+0x10/0x20\n\
         \x20=> kmalloc_reserve+0x1/0x2\n\
         \x20=> do_something+0x3/0x4\n\
         \x20           lmkd-7       [000] d....    10.500000: page_fault_user: address=0x7f0000001010 ip=0x555500002345 error_code=0x4\n\
         \x20           lmkd-7       [000] d....    10.500001: <stack trace>\n\
         \x20=> exc_page_fault+0x5/0x6\n\
         \x20=> asm_exc_page_fault+0x7/0x8\n\
         \x20           lmkd-7       [000] d....    10.600000: page_fault_kernel: address=0x7f0000000008 ip=__put_user_8 error_code=0x3\n",
    )
    .unwrap();
    fs::write(
        run.join("daemon.smaps"),
        "555500000000-555500010000 r-xp 00001000 00:02 14                         /usr/bin/lmkd\n\
         Rss:                  64 kB\n\
         7f0000000000-7f0000014000 rw-p 00000000 00:00 0 \n",
    )
    .unwrap();
    report(&[&"summarize", &run]);
    let tsv = fs::read_to_string(run.join("killer-threads.tsv")).unwrap();
    let core: Vec<&str> = tsv
        .lines()
        .find(|l| l.starts_with("core\t"))
        .unwrap_or_else(|| panic!("no core line in {tsv}"))
        .split('\t')
        .collect();
    assert_eq!(
        core[6],
        "user read, page absent: anon+0x1010 (rw-p) from lmkd+0x3345 (r-xp); \
         kernel write, page present: anon+0x8 (rw-p) from kernel __put_user_8",
        "{tsv}"
    );
    let metrics = fs::read_to_string(run.join("metrics.json")).unwrap();
    assert!(
        metrics.contains(r#""frames": "kmalloc_reserve < do_something""#),
        "the reclaim's stack took frames that were not its own:\n{metrics}"
    );
}

/// With `STALL_TRACE=1` the run holds the function tracer's memstall
/// entries and exits: the table sums each task's stall by source (nested
/// entries count once; a stall still open at the end, or an exit with no
/// entry, not at all). Runs without the trace leave the rows out.
#[test]
fn compare_sums_memory_stall_by_source() {
    if !python3() {
        return;
    }
    let (_tmp, ours, theirs) = two_runs("vm-report-stall", 5, 5);
    // Task, time, enter or leave, caller.
    const SLOW: &str = "__alloc_pages_slowpath.constprop.0";
    let trace: String = [
        ("kswapd0-44", "1.000000", "enter", "balance_pgdat"),
        ("my app-90", "1.010000", "enter", SLOW),
        ("kswapd0-44", "1.020000", "enter", "balance_pgdat"),
        ("kswapd0-44", "1.030000", "leave", "balance_pgdat"),
        ("my app-90", "1.040000", "leave", SLOW),
        ("kswapd0-44", "1.100000", "leave", "balance_pgdat"),
        ("kcompactd0-32", "1.200000", "enter", "kcompactd"),
        ("kcompactd0-32", "1.250000", "leave", "kcompactd"),
        ("lmkd-7", "1.300000", "enter", SLOW),
        ("lmkd-7", "1.305000", "leave", SLOW),
        ("app-91", "1.400000", "leave", SLOW),
        ("app-92", "1.500000", "enter", SLOW),
    ]
    .iter()
    .map(|(task, t, f, from)| format!("{task:>16} [000] .....  {t}: psi_memstall_{f} <-{from}\n"))
    .collect();
    fs::write(
        ours.join("stall.trace"),
        format!("# tracer: function\n{trace}"),
    )
    .unwrap();
    let table = report(&[&"compare", &ours, &theirs]);
    assert_eq!(row(&table, "memstall task-ms: kswapd"), ["100", "-"]);
    assert_eq!(row(&table, "  kcompactd"), ["50", "-"]);
    assert_eq!(row(&table, "  the killer"), ["5", "-"]);
    assert_eq!(row(&table, "  the rest (apps)"), ["30", "-"]);
    let table = report(&[&"compare", &theirs]);
    assert!(!table.contains("memstall"), "{table}");
}
