//! The report outputs on data, without a daemon: the log lines Android's
//! tools parse (matched with the patterns of AOSP's `lmkd_tests`), the
//! killinfo record's field order, the atrace slice, and flood control.

mod common;

use std::fmt;
use std::fs;

use common::counting::{allocations, Counting};
use lmkd::history::KillRecord;
use lmkd::policy::{Figures, Kill, KillReason};
use lmkd::proto::DecodeError;
use lmkd::report::killinfo::{self, Value};
use lmkd::report::logline::Sink;
use lmkd::report::trace::Marker;
use lmkd::report::{limit, ConnEvent, Note, Outputs, Refusal, KILL_TARGET};
use log::Level;

#[global_allocator]
static A: Counting = Counting;

/// Lines as `LEVEL target: message`.
#[derive(Default)]
struct Capture(Vec<(Level, String, String)>);

impl Sink for Capture {
    fn line(&mut self, level: Level, target: &str, args: fmt::Arguments<'_>) {
        self.0.push((level, target.to_string(), args.to_string()));
    }
}

impl Capture {
    fn texts(&self) -> Vec<&str> {
        self.0.iter().map(|(_, _, m)| m.as_str()).collect()
    }
}

/// Unanchored match of an `lmkd_tests` pattern: `%d` and `%ld` are
/// integers, `[^']*` any run without a quote, `\(` and `\)` parentheses,
/// anything else literal.
fn matches(line: &str, pattern: &str) -> bool {
    #[derive(Debug)]
    enum Tok {
        Lit(u8),
        Int,
        NoQuote,
    }
    let mut toks = Vec::new();
    let p = pattern.as_bytes();
    let mut i = 0;
    while i < p.len() {
        let rest = &pattern[i..];
        if rest.starts_with("%ld") {
            toks.push(Tok::Int);
            i += 3;
        } else if rest.starts_with("%d") {
            toks.push(Tok::Int);
            i += 2;
        } else if rest.starts_with("[^']*") {
            toks.push(Tok::NoQuote);
            i += 5;
        } else if rest.starts_with('\\') {
            toks.push(Tok::Lit(p[i + 1]));
            i += 2;
        } else {
            toks.push(Tok::Lit(p[i]));
            i += 1;
        }
    }
    fn at(s: &[u8], t: &[Tok]) -> bool {
        match t.split_first() {
            None => true,
            Some((Tok::Lit(c), rest)) => s.first() == Some(c) && at(&s[1..], rest),
            Some((Tok::Int, rest)) => {
                let sign = usize::from(s.first() == Some(&b'-'));
                let n = s[sign..].iter().take_while(|b| b.is_ascii_digit()).count();
                (1..=n).rev().any(|k| at(&s[sign + k..], rest))
            }
            Some((Tok::NoQuote, rest)) => {
                let n = s.iter().take_while(|&&b| b != b'\'').count();
                (0..=n).rev().any(|k| at(&s[k..], rest))
            }
        }
    }
    let s = line.as_bytes();
    (0..=s.len()).any(|start| at(&s[start..], &toks))
}

#[test]
fn the_pattern_matcher_rejects_what_it_should() {
    assert!(matches("x Kill 'a b' (12) y", r"Kill '[^']*' \(%d\)"));
    assert!(!matches("Kill 'a' (x)", r"Kill '[^']*' \(%d\)"));
    assert!(!matches("Kill 'a' 12", r"Kill '[^']*' \(%d\)"));
    assert!(!matches(
        "to free 5kb rss, 6kB swap",
        "to free %ldkB rss, %ldkB swap"
    ));
}

fn record(reason: KillReason) -> KillRecord {
    let figures = Figures {
        free_kb: 5000,
        free_swap_kb: 1234,
        thrashing_pct: 35,
        max_thrashing_pct: 40,
        other_free_kb: 1000,
        other_file_kb: 7000,
        ..Figures::default()
    };
    let kill = Kill {
        reason,
        min_adj: 201,
    };
    let mut k = KillRecord::new(77, 4242, kill, figures);
    k.uid = 10_057;
    k.adj = 905;
    k.rss_kb = 65_536;
    k.swap_kb = 128;
    k.set_name(b"com.google.android.apps.photos");
    k
}

fn kill_lines(k: KillRecord) -> Capture {
    let mut out = Outputs::new(Capture::default());
    out.note(&Note::Kill(k), 0);
    std::mem::take(out.sink())
}

#[test]
fn kill_line_is_lmkds_and_matches_lmkd_tests_patterns() {
    let c = kill_lines(record(KillReason::LowMem));
    let (level, target, line) =
        c.0.iter()
            .find(|(_, _, m)| m.starts_with("Kill '"))
            .expect("no kill line");
    assert_eq!(*level, Level::Info);
    assert_eq!(target, KILL_TARGET);
    assert!(matches(line, r"Kill '[^']*' \(%d\)"), "{line}");
    assert!(matches(line, "to free %ldkB rss, %ldkB swap"), "{line}");
    assert!(
        line.starts_with(
            "Kill 'com.google.android.apps.photos' (4242), uid 10057, oom_score_adj 905 \
             to free 65536kB rss, 128kB swap; reason: "
        ),
        "{line}"
    );
    let reason = line.split("; reason: ").nth(1).unwrap();
    assert!(!reason.is_empty());
    // No minfree line outside the minfree mode.
    assert!(!c.texts().iter().any(|l| l.starts_with("Reclaimed")));
}

#[test]
fn minfree_mode_writes_lmkds_minfree_line() {
    let mut k = record(KillReason::Minfree);
    k.minfree_kb = 73_728;
    let c = kill_lines(k);
    let texts = c.texts();
    assert!(texts.iter().any(|l| matches(l, r"Kill '[^']*' \(%d\)")));
    let line = texts
        .iter()
        .find(|l| l.starts_with("Reclaimed"))
        .expect("no minfree line");
    // free 5000 - other_free 1000 = 4000 reserved.
    assert_eq!(
        *line,
        "Reclaimed 65536kB, cache(7000kB) and free(5000kB)-reserved(4000kB) \
         below min(73728kB) for oom_score_adj 201"
    );
}

#[test]
fn reap_lines_are_lmkds() {
    let mut out = Outputs::new(Capture::default());
    out.note(&Note::Reaped { pid: 31, ms: 84 }, 0);
    out.note(
        &Note::ReleaseFailed {
            pid: 32,
            errno: libc::ESRCH,
        },
        0,
    );
    let c = out.sink();
    let (level, _, line) = &c.0[0];
    assert_eq!(*level, Level::Debug, "lmkd logs the reap at debug level");
    assert!(matches(line, "Process %d was reaped in %ldms"), "{line}");
    assert_eq!(line, "Process 31 was reaped in 84ms");
    let (_, _, line) = &c.0[1];
    assert_eq!(line, "process_mrelease 32 failed: No such process");
}

#[test]
fn killinfo_has_lmkds_fields_in_lmkds_order() {
    let mut k = record(KillReason::LowSwapAndThrashing);
    // A distinct value per meminfo field, so any swap shows.
    let m = &mut k.mem;
    for (i, f) in [
        &mut m.free_kb,
        &mut m.cached_kb,
        &mut m.swap_cached_kb,
        &mut m.buffers_kb,
        &mut m.shmem_kb,
        &mut m.unevictable_kb,
        &mut m.swap_total_kb,
        &mut m.swap_free_kb,
        &mut m.active_anon_kb,
        &mut m.inactive_anon_kb,
        &mut m.active_file_kb,
        &mut m.inactive_file_kb,
        &mut m.sreclaimable_kb,
        &mut m.sunreclaim_kb,
        &mut m.kernel_stack_kb,
        &mut m.page_tables_kb,
    ]
    .into_iter()
    .enumerate()
    {
        *f = 1000 + i as u64;
    }
    m.cma_free_kb = 2000;
    k.event_to_signal_us = 3_900;
    k.psi.some_avg10 = 1234;
    k.psi.full_avg10 = 567;
    let v = killinfo::fields(&k);
    let by_name = |n: &str| v[killinfo::NAMES.iter().position(|x| *x == n).unwrap()];
    assert_eq!(killinfo::TAG, 10_195_355);
    assert_eq!(
        &killinfo::NAMES[..6],
        [
            "Pid",
            "Uid",
            "OomAdj",
            "MinOomAdj",
            "TaskSize",
            "KillReason"
        ]
    );
    assert_eq!(
        &v[..6],
        [
            Value::Int(4242),
            Value::Int(10_057),
            Value::Int(905),
            Value::Int(201),
            Value::Int(65_536),
            Value::Int(2), // LOW_SWAP_AND_THRASHING
        ]
    );
    // MemFree .. PageTables in meminfo order, then ION (0, 0), CmaFree.
    let mem: Vec<Value> = (0..16).map(|i| Value::Int(1000 + i)).collect();
    assert_eq!(&v[6..22], &mem[..]);
    assert_eq!(killinfo::NAMES[6], "MemFree");
    assert_eq!(killinfo::NAMES[21], "PageTables");
    assert_eq!(&v[22..25], [Value::Int(0), Value::Int(0), Value::Int(2000)]);
    assert_eq!(by_name("MsSinceEvent"), Value::Int(3));
    assert_eq!(killinfo::NAMES[25], "MsSinceEvent");
    assert_eq!(by_name("TaskSwapSize"), Value::Int(128));
    assert_eq!(killinfo::NAMES[29], "TaskSwapSize");
    assert_eq!(&v[31..33], [Value::Int(35), Value::Int(40)]);
    assert_eq!(&killinfo::NAMES[31..33], ["Thrashing", "MaxThrashing"]);
    assert_eq!(&v[33..35], [Value::Float(12.34), Value::Float(5.67)]);
    assert_eq!(
        &killinfo::NAMES[33..],
        [
            "PsiMemSome",
            "PsiMemFull",
            "PsiIoSome",
            "PsiIoFull",
            "PsiCpuSome"
        ]
    );

    // The binary event: a list of 38, each value typed (int 0, float 4).
    let mut ev = [0u8; killinfo::EVENT_LEN];
    killinfo::encode(&v, &mut ev);
    assert_eq!(&ev[..2], [3, 38]);
    assert_eq!(&ev[2..7], [0, 0x92, 0x10, 0, 0]); // pid 4242 LE
    let psi_some = 2 + 33 * 5;
    assert_eq!(ev[psi_some], 4);
    assert_eq!(&ev[psi_some + 1..psi_some + 5], 12.34f32.to_le_bytes());

    // Off Android: one text line with the same values.
    let c = kill_lines(k);
    let line = c
        .texts()
        .into_iter()
        .find(|l| l.starts_with("killinfo: ["))
        .expect("no killinfo line");
    assert!(
        line.starts_with("killinfo: [4242,10057,905,201,65536,2,1000,1001,"),
        "{line}"
    );
    assert!(
        line.ends_with(",35,40,12.34,5.67,0.00,0.00,0.00]"),
        "{line}"
    );
    assert_eq!(line.matches(',').count(), killinfo::FIELDS - 1);
}

#[test]
fn dry_runs_write_no_killinfo() {
    let mut k = record(KillReason::LowMem);
    k.dry_run = true;
    let c = kill_lines(k);
    assert!(!c.texts().iter().any(|l| l.starts_with("killinfo")));
    assert!(!c.texts().iter().any(|l| matches(l, r"Kill '[^']*' \(%d\)")));
}

fn tracefs(on: &str) -> common::TempDir {
    let dir = common::TempDir::new("trace");
    fs::write(dir.path("trace_marker"), "").unwrap();
    fs::write(dir.path("tracing_on"), on).unwrap();
    dir
}

#[test]
fn trace_marker_slice_around_a_kill() {
    let dir = tracefs("1\n");
    let mut m = Marker::open_in(&dir.0).unwrap();
    let me = std::process::id();
    let (allocs, ()) = allocations(|| {
        m.begin_kill(4242, 2, 905, 201, 40);
        m.end();
    });
    assert_eq!(allocs, 0, "the kill path's trace writes allocate");
    assert_eq!(
        fs::read_to_string(dir.path("trace_marker")).unwrap(),
        format!("B|{me}|lmk,4242,2,905,201,40E|{me}")
    );
    // Negative figures (an unknown reason) print as such.
    m.begin_kill(1, -1, -800, 0, 0);
    m.end();
    assert!(fs::read_to_string(dir.path("trace_marker"))
        .unwrap()
        .ends_with(&format!("B|{me}|lmk,1,-1,-800,0,0E|{me}")));
}

#[test]
fn trace_marker_is_silent_when_tracing_is_off() {
    let dir = tracefs("0\n");
    let mut m = Marker::open_in(&dir.0).unwrap();
    m.begin_kill(4242, 2, 905, 201, 40);
    m.end();
    assert_eq!(fs::read_to_string(dir.path("trace_marker")).unwrap(), "");
    // Turned on between begin and end: no lone end.
    m.begin_kill(1, 1, 1, 1, 1);
    fs::write(dir.path("tracing_on"), "1\n").unwrap();
    m.end();
    assert_eq!(fs::read_to_string(dir.path("trace_marker")).unwrap(), "");
    assert!(!Marker::inert().enabled());
}

#[test]
fn a_flood_of_malformed_packets_becomes_a_handful_of_lines() {
    let mut out = Outputs::new(Capture::default());
    let bad = Note::Malformed {
        peer: 99,
        err: DecodeError::UnknownCommand { cmd: 77 },
    };
    for i in 0..50_000u64 {
        // All within one window.
        out.note(&bad, 1_000 + i / 100);
    }
    assert_eq!(out.sink().0.len(), limit::BURST as usize);
    out.tick(1_000 + limit::WINDOW_MS - 1);
    assert_eq!(out.sink().0.len(), limit::BURST as usize, "summed up early");
    out.tick(1_000 + limit::WINDOW_MS);
    let c = out.sink();
    assert_eq!(c.0.len(), limit::BURST as usize + 1);
    let (level, _, last) = c.0.last().unwrap();
    assert_eq!(*level, Level::Warn);
    assert!(
        last.starts_with(&format!(
            "{} more malformed packet (command) messages suppressed",
            50_000 - limit::BURST
        )),
        "{last}"
    );
    // A new window lets lines through again.
    out.note(&bad, 5_000);
    assert_eq!(out.sink().0.len(), limit::BURST as usize + 2);
}

#[test]
fn refused_connections_and_commands_are_limited_kills_are_not() {
    let mut out = Outputs::new(Capture::default());
    for i in 0..1000 {
        out.note(
            &Note::Connection {
                peer: i,
                uid: 0,
                what: ConnEvent::TooMany,
            },
            0,
        );
        out.note(
            &Note::Refused {
                cmd: 1,
                pid: i,
                peer: 1,
                why: Refusal::AdjOutOfRange(2000),
            },
            0,
        );
        // Another kind of refusal keeps its own budget.
        if i < 3 {
            out.note(
                &Note::Refused {
                    cmd: 1,
                    pid: i,
                    peer: 1,
                    why: Refusal::BadPid,
                },
                0,
            );
        }
    }
    let texts = out.sink().texts();
    let count = |s: &str| texts.iter().filter(|l| l.contains(s)).count();
    assert_eq!(count("already 3 clients connected"), limit::BURST as usize);
    assert_eq!(count("outside [-1000, 1000]"), limit::BURST as usize);
    assert_eq!(count("pid must be positive"), 3);

    // The logging thread's own overflow warning floods the same way.
    let mut out = Outputs::new(Capture::default());
    for total in 1..=1000 {
        out.ring_full(total, 0);
    }
    assert_eq!(out.sink().0.len(), limit::BURST as usize);

    let mut out = Outputs::new(Capture::default());
    for pid in 0..100 {
        let mut k = record(KillReason::LowMem);
        k.pid = pid;
        out.note(&Note::Kill(k), 0);
    }
    let texts = out.sink().texts();
    assert_eq!(
        texts
            .iter()
            .filter(|l| matches(l, r"Kill '[^']*' \(%d\)"))
            .count(),
        100
    );
}

/// The daemon end to end: a real victim killed on an injected event leaves
/// lmkd's kill line, its killinfo record and its reap line in the log.
#[test]
fn a_real_kill_logs_lmkds_lines() {
    use common::inproc::InProc;
    use common::{logcap, need_root, prio, subscribe_all, Daemon, Sleeper};
    use lmkd::client::Message;
    use lmkd::proto::Command as Cmd;
    use std::time::{Duration, Instant};

    if !need_root("a_real_kill_logs_lmkds_lines") {
        return;
    }
    logcap::install();
    // lmkd logs the reap at debug level.
    log::set_max_level(log::LevelFilter::Debug);
    let s = Sleeper::new();
    let pid = s.pid();
    let d = InProc::start("reportlines", "small", &[pid], |_, _| {});
    let c = d.connect();
    subscribe_all(&c);
    c.send(&Cmd::ProcPrio(prio(pid, 950))).unwrap();
    Daemon::sync(&c);
    d.raise_complete();
    let end = Instant::now() + Duration::from_secs(10);
    let mut killed = false;
    while !killed && Instant::now() < end {
        killed = matches!(
            c.recv(Some(Duration::from_millis(100))).unwrap(),
            Some(Message::Kill(k)) if k.pid == pid
        );
    }
    assert!(killed, "no kill; log:\n{}", logcap::text());
    let t = Duration::from_secs(5);
    logcap::wait_for(&format!("killinfo: [{pid},"), t);
    let done = format!("Process {pid} was reaped in ");
    let failed = format!("process_mrelease {pid} failed: ");
    assert!(
        common::eventually(t, || {
            let l = logcap::text();
            l.contains(&done) || l.contains(&failed)
        }),
        "no reap line; log:\n{}",
        logcap::text()
    );
    let text = logcap::text();
    let kill = text
        .lines()
        .find(|l| l.contains("Kill '") && l.contains(&format!("({pid})")))
        .expect("no kill line");
    assert!(
        kill.starts_with(&format!("INFO {KILL_TARGET}: Kill '")),
        "{kill}"
    );
    assert!(matches(kill, r"Kill '[^']*' \(%d\)"), "{kill}");
    assert!(matches(kill, "to free %ldkB rss, %ldkB swap"), "{kill}");
    assert!(kill.contains(", oom_score_adj 950 to free "), "{kill}");
    if let Some(reap) = text.lines().find(|l| l.contains(&done)) {
        assert!(reap.starts_with("DEBUG "), "{reap}");
        assert!(matches(reap, "Process %d was reaped in %ldms"), "{reap}");
    }
    let info = text
        .lines()
        .find(|l| l.contains(&format!("killinfo: [{pid},")))
        .unwrap();
    assert!(
        info.contains(&format!("killinfo: [{pid},{},950,0,", prio(pid, 950).uid)),
        "{info}"
    );
}

#[test]
fn no_victim_line_gives_the_reason_and_min_adj() {
    let k = record(KillReason::LowMem);
    let mut out = Outputs::new(Capture::default());
    out.note(
        &Note::NoVictim {
            kill: k.kill,
            figures: k.figures,
        },
        0,
    );
    let line = out.sink().texts()[0].to_string();
    // The reason follows as on a kill line; its wording is the policy's,
    // here only that it is there.
    let head = "memory pressure but no killable process with adj >= 201; reason: ";
    assert!(line.starts_with(head), "{line}");
    assert!(line.len() > head.len(), "no reason given: {line}");
}

/// The real daemon under a flood of malformed packets: a handful of lines
/// per second and a count of the rest, and it still answers.
#[test]
fn a_malformed_flood_leaves_a_handful_of_lines() {
    use common::{need_root, Daemon};
    use std::time::{Duration, Instant};

    if !need_root("a_malformed_flood_leaves_a_handful_of_lines") {
        return;
    }
    let mut d = Daemon::start("flood", "");
    let c = d.connect();
    let started = Instant::now();
    // Unknown command id 99: a malformed packet with no reply.
    let bad: Vec<u8> = [99i32, 1, 2].iter().flat_map(|w| w.to_be_bytes()).collect();
    for _ in 0..50_000 {
        c.send_raw(&bad).unwrap();
    }
    Daemon::sync(&c);
    // Let the last window close and be summed up.
    std::thread::sleep(Duration::from_millis(limit::WINDOW_MS + 500));
    let windows = started.elapsed().as_millis() as usize / limit::WINDOW_MS as usize + 1;
    let text = d.log_text();
    let lines = text
        .lines()
        .filter(|l| l.contains("unknown command id 99"))
        .count();
    assert!(lines >= 1, "log:\n{text}");
    assert!(
        lines <= limit::BURST as usize * windows,
        "{lines} lines in {windows} windows"
    );
    assert!(
        text.contains("more malformed packet (command) messages suppressed"),
        "no count of the suppressed lines; log:\n{text}"
    );
    assert!(
        text.lines().count() < 100,
        "{} lines for one flood",
        text.lines().count()
    );
    assert!(d.alive());
    eprintln!(
        "flood: 50000 malformed packets in {:.1} s -> {lines} lines about them, {} lines in all",
        started.elapsed().as_secs_f64(),
        text.lines().count()
    );
}
