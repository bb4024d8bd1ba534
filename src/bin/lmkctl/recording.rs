//! `lmkctl record` and `lmkctl replay`: copy a daemon's evaluations into a
//! file (format in `lmkd::record`), and run the policy on one offline.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lmkd::config::Config;
use lmkd::control::wire::{Request, Response};
use lmkd::policy::{Pressure, Tunables};
use lmkd::record::{self, Eval, Recording, Step, EVAL_WORDS};
use serde::Serialize;

use crate::{render, Conn, Failure, REPLY_TIMEOUT};

/// How often `record` asks for new evaluations.
const POLL: Duration = Duration::from_millis(200);

/// Differences `replay --vs` lists.
const SHOWN_DIFFERENCES: usize = 10;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn io_fail(what: &str, path: &Path, e: std::io::Error) -> Failure {
    Failure::Io(format!("{what} {}: {e}", path.display()))
}

/// Copies what the daemon's ring holds, then follows new evaluations for
/// `seconds` (or until interrupted), into `file`.
pub fn record(
    socket: &PathBuf,
    file: &Path,
    seconds: Option<u64>,
    json: bool,
) -> Result<(), Failure> {
    let mut c = Conn::open(socket)?;
    // SAFETY: the handler only stores to an atomic (async-signal-safe).
    unsafe {
        let h = on_interrupt as extern "C" fn(libc::c_int) as *const () as libc::sighandler_t;
        libc::signal(libc::SIGINT, h);
        libc::signal(libc::SIGTERM, h);
    }
    let end = seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let mut out: Option<File> = None;
    let (mut after, mut written, mut lost, mut first) = (0u64, 0u64, 0u64, None);
    let mut gens = std::collections::BTreeSet::new();
    loop {
        c.send(&Request::Evals { after })?;
        let batch = match c.recv(Some(REPLY_TIMEOUT))? {
            Response::Evals(b) => b,
            other => return Err(crate::unexpected(&other)),
        };
        let f = match &mut out {
            Some(f) => f,
            None => {
                let mut f = File::create(file).map_err(|e| io_fail("create", file, e))?;
                f.write_all(&record::header(batch.page_size as u32, &batch.config_toml))
                    .map_err(|e| io_fail("write", file, e))?;
                out.insert(f)
            }
        };
        if after > 0 && batch.lost > 0 {
            eprintln!(
                "lmkctl: {} evaluations left the daemon's ring before they were copied",
                batch.lost
            );
        }
        // (What had left the ring before the first copy is not lost: the
        // recording starts later, and says so.)
        if after > 0 {
            lost += batch.lost;
        }
        let mut bytes = Vec::with_capacity(batch.records.len() * EVAL_WORDS * 8);
        for r in &batch.records {
            let w: [u64; EVAL_WORDS] = r.as_slice().try_into().map_err(|_| {
                Failure::Protocol(format!(
                    "a record of {} words (this lmkctl reads {EVAL_WORDS})",
                    r.len()
                ))
            })?;
            first.get_or_insert(w[0]);
            after = after.max(w[0]);
            gens.insert(w[3] & record::CONFIG_GEN_MASK);
            bytes.extend(record::record_bytes(&w));
            written += 1;
        }
        f.write_all(&bytes).map_err(|e| io_fail("write", file, e))?;
        after = after.max(batch.total);
        if STOP.load(Ordering::Relaxed) || end.is_some_and(|e| Instant::now() >= e) {
            break;
        }
        std::thread::sleep(POLL);
    }
    if let Some(f) = out {
        f.sync_all().map_err(|e| io_fail("sync", file, e))?;
    }
    let summary = RecordSummary {
        file: file.display().to_string(),
        evaluations: written,
        first_serial: first,
        lost,
        config_generations: gens.len(),
    };
    crate::emit(&mut std::io::stdout().lock(), json, &summary, || {
        let mut s = format!("recorded {written} evaluations into {}", summary.file);
        if let Some(f) = first {
            s += &format!(" (serials {f}-{after})");
        }
        if first.is_some_and(|f| f > 1) {
            s += "; the daemon's first evaluations had left its ring, so a replay starts \
                  from a fresh policy state and may differ for the first second";
        }
        if lost > 0 {
            s += &format!("; {lost} evaluations were lost");
        }
        s + "\n"
    })
}

#[derive(Serialize)]
struct RecordSummary {
    file: String,
    evaluations: u64,
    first_serial: Option<u64>,
    lost: u64,
    config_generations: usize,
}

/// One setting a recording is replayed under.
struct Setting {
    name: String,
    /// None: each record's own tunables.
    tunables: Option<Tunables>,
}

/// A candidate setting: the keys in `path` on top of the configuration the
/// recording began with (so a candidate names only what it changes).
fn setting(path: Option<&PathBuf>, recorded: &str) -> Result<Setting, Failure> {
    let Some(p) = path else {
        return Ok(Setting {
            name: "as recorded".into(),
            tunables: None,
        });
    };
    let bad = |m: String| Failure::Usage(format!("{}: {m}", p.display()));
    let text = std::fs::read_to_string(p).map_err(|e| io_fail("read", p, e))?;
    let over: toml::Table = text.parse().map_err(|e| bad(format!("{e}")))?;
    let mut base: toml::Table = recorded.parse().unwrap_or_else(|e| {
        eprintln!(
            "lmkctl: the recording's configuration does not parse ({e}); \
             {} goes on top of the defaults",
            p.display()
        );
        toml::Table::new()
    });
    base.extend(over);
    let cfg = Config::from_toml_str(&base.to_string()).map_err(|e| bad(format!("{e}")))?;
    Ok(Setting {
        name: p.display().to_string(),
        tunables: Some(Tunables::from_config(&cfg)),
    })
}

#[derive(Serialize, Clone)]
struct DecisionView {
    time_ms: u64,
    serial: u64,
    event: &'static str,
    reason: &'static str,
    min_adj: i32,
    /// The adj band the victim would come from (None: nobody at or above
    /// min adj in the recorded table).
    band: Option<&'static str>,
    carried_out: bool,
    /// The recording decided this same kill here.
    recorded: bool,
}

#[derive(Serialize)]
struct Count {
    name: &'static str,
    count: u64,
}

#[derive(Serialize)]
struct SettingView {
    name: String,
    /// Evaluations whose recorded decision the replay reproduced (replays
    /// with the recorded tunables only).
    reproduced: Option<usize>,
    kill_decisions: usize,
    kills: usize,
    kills_by_reason: Vec<Count>,
    earliest_kill_ms: Option<u64>,
    decisions: Vec<DecisionView>,
}

#[derive(Serialize)]
struct Difference {
    time_ms: u64,
    serial: u64,
    event: &'static str,
    a: Option<DecisionView>,
    b: Option<DecisionView>,
}

#[derive(Serialize)]
struct ReplayView {
    file: String,
    evaluations: usize,
    first_serial: Option<u64>,
    last_serial: Option<u64>,
    duration_ms: u64,
    page_size: u32,
    limit: &'static str,
    settings: Vec<SettingView>,
    differences_total: Option<usize>,
    differences: Vec<Difference>,
}

fn event_name(p: Pressure) -> &'static str {
    lmkd::control::shared::LEVELS[p as usize]
}

fn view(e: &Eval, s: &Step, t0: u64) -> Option<DecisionView> {
    let k = s.kill?;
    Some(DecisionView {
        time_ms: e.snap.time_ms.saturating_sub(t0),
        serial: e.serial,
        event: event_name(e.event),
        reason: lmkd::control::kill_reason_name(k.reason),
        min_adj: k.min_adj,
        band: e.band_hit(k.min_adj),
        carried_out: s.carried_out,
        recorded: e.kill == Some(k),
    })
}

fn summarize(rec: &Recording, set: &Setting, steps: &[Step], t0: u64) -> SettingView {
    let decisions: Vec<DecisionView> = rec
        .evals
        .iter()
        .zip(steps)
        .filter_map(|(e, s)| view(e, s, t0))
        .collect();
    let kills: Vec<&DecisionView> = decisions.iter().filter(|d| d.carried_out).collect();
    let mut by_reason: Vec<Count> = Vec::new();
    for k in &kills {
        match by_reason.iter_mut().find(|c| c.name == k.reason) {
            Some(c) => c.count += 1,
            None => by_reason.push(Count {
                name: k.reason,
                count: 1,
            }),
        }
    }
    SettingView {
        name: set.name.clone(),
        reproduced: set.tunables.is_none().then(|| {
            rec.evals
                .iter()
                .zip(steps)
                .filter(|(e, s)| s.same_as(e))
                .count()
        }),
        kill_decisions: decisions.len(),
        kills: kills.len(),
        kills_by_reason: by_reason,
        earliest_kill_ms: kills.first().map(|k| k.time_ms),
        decisions,
    }
}

pub fn replay(
    file: &Path,
    a: Option<&PathBuf>,
    b: Option<&PathBuf>,
    json: bool,
) -> Result<(), Failure> {
    let bytes = std::fs::read(file).map_err(|e| io_fail("read", file, e))?;
    let rec =
        record::decode(&bytes).map_err(|e| Failure::Usage(format!("{}: {e}", file.display())))?;
    if rec.trailing > 0 {
        eprintln!(
            "lmkctl: {}: the last {} bytes are not a whole record (recording cut short); \
             replaying the {} whole ones",
            file.display(),
            rec.trailing,
            rec.evals.len()
        );
    }
    let sa = setting(a, &rec.config_toml)?;
    let sb = b.map(|p| setting(Some(p), &rec.config_toml)).transpose()?;
    let t0 = rec.evals.first().map_or(0, |e| e.snap.time_ms);
    let steps_a = record::replay(&rec.evals, sa.tunables.as_ref());
    let mut settings = vec![summarize(&rec, &sa, &steps_a, t0)];
    let (mut differences, mut total) = (Vec::new(), None);
    if let Some(sb) = &sb {
        let steps_b = record::replay(&rec.evals, sb.tunables.as_ref());
        let diff: Vec<usize> = (0..rec.evals.len())
            .filter(|&i| steps_a[i].kill != steps_b[i].kill)
            .collect();
        total = Some(diff.len());
        differences = diff
            .iter()
            .take(SHOWN_DIFFERENCES)
            .map(|&i| {
                let e = &rec.evals[i];
                Difference {
                    time_ms: e.snap.time_ms.saturating_sub(t0),
                    serial: e.serial,
                    event: event_name(e.event),
                    a: view(e, &steps_a[i], t0),
                    b: view(e, &steps_b[i], t0),
                }
            })
            .collect();
        settings.push(summarize(&rec, sb, &steps_b, t0));
    }
    let v = ReplayView {
        file: file.display().to_string(),
        evaluations: rec.evals.len(),
        first_serial: rec.evals.first().map(|e| e.serial),
        last_serial: rec.evals.last().map(|e| e.serial),
        duration_ms: rec.evals.last().map_or(0, |e| e.snap.time_ms - t0),
        page_size: rec.page_size,
        limit: record::LIMIT,
        settings,
        differences_total: total,
        differences,
    };
    crate::emit(&mut std::io::stdout().lock(), json, &v, || human(&v))
}

fn secs(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

fn short(d: &Option<DecisionView>) -> String {
    match d {
        None => "no kill".into(),
        Some(d) => format!(
            "{} (min adj {}, {})",
            d.reason,
            d.min_adj,
            d.band.unwrap_or("no victim in the table")
        ),
    }
}

fn human(v: &ReplayView) -> String {
    let mut s = format!(
        "recording {}: {} evaluations over {} s (serials {}-{}), page size {}\n",
        v.file,
        v.evaluations,
        secs(v.duration_ms),
        v.first_serial.unwrap_or(0),
        v.last_serial.unwrap_or(0),
        v.page_size
    );
    if v.first_serial.is_some_and(|f| f > 1) {
        s += "note: the recording starts after the daemon's first evaluation: the replay \
              starts from a fresh policy state, so its first decisions may differ\n";
    }
    s += &format!("limit: {}\n\n", v.limit);
    let letters = ["A", "B"];
    for (l, set) in letters.iter().zip(&v.settings) {
        s += &format!("{l}: {}", set.name);
        if let Some(n) = set.reproduced {
            s += &format!(" (reproduced {n} of {} recorded decisions)", v.evaluations);
        }
        s += "\n";
    }
    if let Some(total) = v.differences_total {
        s += &format!("\nfirst points where A and B decide differently ({total} in all):\n");
        let rows: Vec<Vec<String>> = v
            .differences
            .iter()
            .map(|d| {
                vec![
                    secs(d.time_ms),
                    d.serial.to_string(),
                    d.event.into(),
                    short(&d.a),
                    short(&d.b),
                ]
            })
            .collect();
        s += &render::table(&["TIME_S", "SERIAL", "EVENT", "A", "B"], &rows);
    } else if let Some(set) = v.settings.first() {
        s += "\nkill decisions:\n";
        let rows: Vec<Vec<String>> = set
            .decisions
            .iter()
            .map(|d| {
                vec![
                    secs(d.time_ms),
                    d.serial.to_string(),
                    d.event.into(),
                    d.reason.into(),
                    d.min_adj.to_string(),
                    d.band.unwrap_or("-").into(),
                    if d.carried_out { "yes" } else { "no" }.into(),
                ]
            })
            .collect();
        s += &render::table(
            &[
                "TIME_S", "SERIAL", "EVENT", "REASON", "MIN_ADJ", "BAND", "KILLED",
            ],
            &rows,
        );
    }
    s += "\nsummary:\n";
    let rows: Vec<Vec<String>> = letters
        .iter()
        .zip(&v.settings)
        .map(|(l, set)| {
            vec![
                l.to_string(),
                set.kill_decisions.to_string(),
                set.kills.to_string(),
                set.earliest_kill_ms.map_or("-".into(), secs),
                set.kills_by_reason
                    .iter()
                    .map(|c| format!("{} {}", c.name, c.count))
                    .collect::<Vec<_>>()
                    .join(", "),
            ]
        })
        .collect();
    s += &render::table(
        &[
            "SETTING",
            "KILL_DECISIONS",
            "KILLS",
            "EARLIEST_KILL_S",
            "KILLS_BY_REASON",
        ],
        &rows,
    );
    s
}
