//! Human-readable tables for lmkctl's replies.

use std::fmt::Write;

use lmkd::control::wire::{ConfigItem, Count, Histogram, Kill, ProcRow, Stats, Status};

/// Left-aligned columns, two spaces apart.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, c) in cells.enumerate() {
            if i + 1 == w.len() {
                s.push_str(c);
            } else {
                let _ = write!(s, "{c:<0$}  ", w[i]);
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(&mut headers.iter().copied());
    for r in rows {
        out += &line(&mut r.iter().map(String::as_str));
    }
    out
}

pub fn procs(rows: &[ProcRow]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|p| {
            vec![
                p.pid.to_string(),
                p.uid.to_string(),
                p.adj.to_string(),
                p.ptype.clone(),
                p.owner.to_string(),
                p.rss_kb.map_or("-".into(), |r| r.to_string()),
                p.name.clone(),
            ]
        })
        .collect();
    table(
        &["PID", "UID", "ADJ", "TYPE", "OWNER", "RSS_KB", "NAME"],
        &cells,
    ) + &format!("{} processes\n", rows.len())
}

const KILL_HEADERS: [&str; 12] = [
    "TIME_MS",
    "PID",
    "UID",
    "ADJ",
    "MIN_ADJ",
    "RSS_KB",
    "SWAP_KB",
    "EV>SIG_US",
    "SIG>EXIT_MS",
    "REAP_MS",
    "NAME",
    "REASON",
];

fn kill_cells(k: &Kill) -> Vec<String> {
    let ms = |us: Option<u64>| us.map_or("-".into(), |u| format!("{:.1}", u as f64 / 1000.0));
    vec![
        k.time_ms.to_string(),
        k.pid.to_string(),
        k.uid.to_string(),
        k.adj.to_string(),
        k.min_adj.to_string(),
        k.rss_kb.to_string(),
        k.swap_kb.to_string(),
        k.event_to_signal_us.to_string(),
        ms(k.signal_to_exit_us),
        ms(k.reap_us),
        k.name.clone(),
        format!(
            "{}{} (free {} kB, free swap {} kB, thrashing {}%)",
            if k.dry_run { "dry-run " } else { "" },
            k.reason,
            k.free_kb,
            k.free_swap_kb,
            k.thrashing_pct
        ),
    ]
}

pub fn kills(ks: &[Kill]) -> String {
    let rows: Vec<Vec<String>> = ks.iter().map(kill_cells).collect();
    table(&KILL_HEADERS, &rows) + &format!("{} kills\n", ks.len())
}

/// Following prints rows as they come: fixed, tab-separated columns.
pub fn kills_header() -> String {
    KILL_HEADERS.join("\t") + "\n"
}

pub fn kill_row(k: &Kill) -> String {
    kill_cells(k).join("\t") + "\n"
}

fn counts(title: &str, cs: &[Count]) -> String {
    let mut s = format!("{title}:");
    let nonzero: Vec<&Count> = cs.iter().filter(|c| c.count > 0).collect();
    if nonzero.is_empty() {
        s += " none";
    }
    for c in nonzero {
        let _ = write!(s, "\n  {:<36} {}", c.name, c.count);
    }
    s + "\n"
}

pub fn status(s: &Status) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "lmkd-rs {} (pid {}, up {:.1} s, protocol {})",
        s.version,
        s.pid,
        s.uptime_ms as f64 / 1000.0,
        s.protocol
    );
    let _ = writeln!(
        o,
        "config file: {}",
        s.config_file.as_deref().unwrap_or("(none)")
    );
    let p = &s.pressure;
    let early = match p.early_stall_ms {
        0 => String::new(),
        ms => format!(", early trigger at {ms} ms"),
    };
    let _ = writeln!(
        o,
        "pressure: PSI {} (partial stall {} ms{early}, complete stall {} ms)",
        p.psi_path, p.partial_stall_ms, p.complete_stall_ms
    );
    match &p.now {
        Some(n) => {
            let _ = writeln!(
                o,
                "PSI now: some {:.2}/{:.2}/{:.2}  full {:.2}/{:.2}/{:.2} (avg10/60/300 %)",
                n.some_avg10,
                n.some_avg60,
                n.some_avg300,
                n.full_avg10,
                n.full_avg60,
                n.full_avg300
            );
        }
        None => o += "PSI now: unreadable\n",
    }
    let _ = writeln!(o, "table: {} of {} entries", s.table_used, s.table_capacity);
    let _ = writeln!(
        o,
        "kills: {} so far; dropped log notes: {}",
        s.kills_total, s.dropped_notes
    );
    o += &counts("kills by reason", &s.kills_by_reason);
    o += &counts("kills by adj band", &s.kills_by_band);
    o += "configuration:\n";
    o += &config(&s.config);
    o
}

pub fn config(items: &[ConfigItem]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| vec![i.key.clone(), i.value.to_string(), i.source.clone()])
        .collect();
    table(&["KEY", "VALUE", "SOURCE"], &rows)
}

fn hist(title: &str, h: &Histogram) -> String {
    let mut s = format!("{title}: {} samples", h.count);
    if h.count > 0 {
        let _ = write!(s, ", mean {} us", h.mean_us);
    }
    s += "\n";
    let max = h.buckets.iter().map(|b| b.count).max().unwrap_or(0).max(1);
    for b in &h.buckets {
        let bar = "#".repeat(((b.count * 40).div_ceil(max)) as usize);
        let _ = writeln!(s, "  < {:>10} us  {:>6}  {bar}", b.below_us, b.count);
    }
    s
}

pub fn stats(s: &Stats) -> String {
    let mut o = format!("uptime {:.1} s\n", s.uptime_ms as f64 / 1000.0);
    o += &hist("event to signal", &s.event_to_signal);
    o += &hist("signal to exit", &s.signal_to_exit);
    o += &hist("reap (signal to memory released)", &s.reap);
    o += &counts("pressure evaluations by level", &s.pressure_events);
    o += &counts("commands by type", &s.commands);
    let _ = writeln!(
        o,
        "refused: {} commands, {} connections; dropped log notes: {}",
        s.refused_commands, s.refused_connections, s.dropped_notes
    );
    o
}
