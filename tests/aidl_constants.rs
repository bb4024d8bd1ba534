//! The AIDL files under `aidl/` are the single source of the wire numbers.
//! This test reads them with a small line parser and checks that every
//! `const int` there equals the Rust constant of the same name in
//! `lmkd::proto`, and that neither side has a constant the other lacks.
//!
//! Three lists meet here: the AIDL files, the explicit table below (which
//! is what makes the comparison type-checked), and the `pub const` lines of
//! `src/proto.rs` (so a constant added to Rust but forgotten here fails).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use lmkd::proto::{event, id, ptype, reason};

/// Which AIDL interface mirrors which Rust module.
const INTERFACES: &[(&str, &str)] = &[
    ("ICommandId", "id"),
    ("IProcType", "ptype"),
    ("ISubscribeEvent", "event"),
    ("IKillReason", "reason"),
];

/// Every Rust wire constant, listed by hand so the compiler checks the names.
const RUST: &[(&str, &str, i32)] = &[
    ("id", "TARGET", id::TARGET),
    ("id", "PROCPRIO", id::PROCPRIO),
    ("id", "PROCREMOVE", id::PROCREMOVE),
    ("id", "PROCPURGE", id::PROCPURGE),
    ("id", "GETKILLCNT", id::GETKILLCNT),
    ("id", "SUBSCRIBE", id::SUBSCRIBE),
    ("id", "PROCKILL", id::PROCKILL),
    ("id", "UPDATE_PROPS", id::UPDATE_PROPS),
    ("id", "STAT_KILL_OCCURRED", id::STAT_KILL_OCCURRED),
    ("id", "START_MONITORING", id::START_MONITORING),
    ("id", "BOOT_COMPLETED", id::BOOT_COMPLETED),
    ("id", "PROCS_PRIO", id::PROCS_PRIO),
    ("ptype", "APP", ptype::APP),
    ("ptype", "SERVICE", ptype::SERVICE),
    ("event", "KILL", event::KILL),
    ("event", "STAT", event::STAT),
    ("reason", "PRESSURE_AFTER_KILL", reason::PRESSURE_AFTER_KILL),
    ("reason", "NOT_RESPONDING", reason::NOT_RESPONDING),
    (
        "reason",
        "LOW_SWAP_AND_THRASHING",
        reason::LOW_SWAP_AND_THRASHING,
    ),
    ("reason", "LOW_MEM_AND_SWAP", reason::LOW_MEM_AND_SWAP),
    (
        "reason",
        "LOW_MEM_AND_THRASHING",
        reason::LOW_MEM_AND_THRASHING,
    ),
    (
        "reason",
        "DIRECT_RECL_AND_THRASHING",
        reason::DIRECT_RECL_AND_THRASHING,
    ),
    (
        "reason",
        "LOW_MEM_AND_SWAP_UTIL",
        reason::LOW_MEM_AND_SWAP_UTIL,
    ),
    (
        "reason",
        "LOW_FILECACHE_AFTER_THRASHING",
        reason::LOW_FILECACHE_AFTER_THRASHING,
    ),
    ("reason", "LOW_MEM", reason::LOW_MEM),
    ("reason", "DIRECT_RECL_STUCK", reason::DIRECT_RECL_STUCK),
];

/// (module, name) -> value.
type Consts = BTreeMap<(String, String), i32>;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn aidl_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            aidl_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "aidl") {
            out.push(path);
        }
    }
}

/// Removes `//` and `/* */` comments, keeping line breaks so error
/// messages can still name a line.
fn strip_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut chars = src.chars().peekable();
    let mut in_block = false;
    while let Some(c) = chars.next() {
        if in_block {
            if c == '*' && chars.peek() == Some(&'/') {
                chars.next();
                in_block = false;
            } else if c == '\n' {
                out.push('\n');
            }
        } else if c == '/' && chars.peek() == Some(&'*') {
            chars.next();
            in_block = true;
        } else if c == '/' && chars.peek() == Some(&'/') {
            for c in chars.by_ref() {
                if c == '\n' {
                    out.push('\n');
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    assert!(!in_block, "unterminated /* comment");
    out
}

/// Parses an AIDL integer literal: decimal or 0x hex, optionally negative.
fn parse_int(s: &str) -> Option<i32> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest.trim()),
        None => (false, s),
    };
    let v = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => i64::from_str_radix(hex, 16).ok()?,
        None => digits.parse::<i64>().ok()?,
    };
    i32::try_from(if neg { -v } else { v }).ok()
}

/// The `const int` declarations of one AIDL file, with the interface
/// that holds them. Any other `const` type is refused: the wire only has
/// 32-bit ints.
fn parse_aidl(path: &Path) -> Vec<(String, String, i32)> {
    let text = fs::read_to_string(path).unwrap();
    let text = strip_comments(&text);
    let mut iface: Option<String> = None;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let where_ = || format!("{}:{}", path.display(), n + 1);
        let line = line.trim();
        let mut words = line.split_whitespace();
        if let Some(pos) = line.split_whitespace().position(|w| w == "interface") {
            let name = line.split_whitespace().nth(pos + 1).unwrap_or_else(|| {
                panic!("{}: interface without a name", where_());
            });
            iface = Some(name.trim_end_matches('{').to_string());
            continue;
        }
        if words.next() != Some("const") {
            continue;
        }
        let ty = words.next().unwrap_or("");
        assert_eq!(
            ty,
            "int",
            "{}: only `const int` belongs on the wire",
            where_()
        );
        let rest: String = words.collect::<Vec<_>>().join(" ");
        let decl = rest
            .strip_suffix(';')
            .unwrap_or_else(|| panic!("{}: const must end with ';' on its line", where_()));
        let (name, value) = decl
            .split_once('=')
            .unwrap_or_else(|| panic!("{}: const without '='", where_()));
        let value =
            parse_int(value.trim()).unwrap_or_else(|| panic!("{}: bad value {value:?}", where_()));
        let iface = iface
            .clone()
            .unwrap_or_else(|| panic!("{}: const outside an interface", where_()));
        out.push((iface, name.trim().to_string(), value));
    }
    out
}

fn aidl_consts() -> Consts {
    let mut files = Vec::new();
    aidl_files(&root().join("aidl"), &mut files);
    assert!(!files.is_empty(), "no .aidl files under aidl/");
    let mut map = Consts::new();
    for file in &files {
        for (iface, name, value) in parse_aidl(file) {
            let module = INTERFACES
                .iter()
                .find(|(i, _)| *i == iface)
                .map(|(_, m)| *m)
                .unwrap_or_else(|| {
                    panic!(
                        "{}: constants in interface {iface}, which maps to no Rust module \
                         (add it to INTERFACES)",
                        file.display()
                    )
                });
            let key = (module.to_string(), name.clone());
            let prev = map.insert(key, value);
            assert!(prev.is_none(), "{iface}.{name} declared twice");
        }
    }
    map
}

/// The `pub const` names inside `pub mod <m> {` blocks of src/proto.rs, for
/// the modules this test covers.
fn proto_rs_names() -> Vec<(String, String)> {
    let text = fs::read_to_string(root().join("src/proto.rs")).unwrap();
    let mut module: Option<String> = None;
    let mut out = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("pub mod ") {
            let name = rest.trim_end_matches('{').trim();
            module = INTERFACES
                .iter()
                .any(|(_, m)| *m == name)
                .then(|| name.to_string());
        } else if t == "}" && !line.starts_with(' ') {
            module = None;
        } else if let (Some(m), Some(rest)) = (&module, t.strip_prefix("pub const ")) {
            let name = rest.split(':').next().unwrap().trim();
            out.push((m.clone(), name.to_string()));
        }
    }
    out
}

#[test]
fn aidl_constants_equal_rust_constants() {
    let aidl = aidl_consts();
    let mut problems = Vec::new();
    for (module, name, value) in RUST {
        match aidl.get(&(module.to_string(), name.to_string())) {
            None => problems.push(format!("{module}::{name} = {value} is missing from aidl/")),
            Some(v) if v != value => problems.push(format!(
                "{module}::{name}: AIDL says {v}, Rust says {value}"
            )),
            Some(_) => {}
        }
    }
    for ((module, name), value) in &aidl {
        if !RUST.iter().any(|(m, n, _)| m == module && n == name) {
            problems.push(format!(
                "AIDL constant {module}/{name} = {value} has no Rust twin"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "AIDL and Rust disagree:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn rust_list_covers_proto_rs() {
    let names = proto_rs_names();
    assert!(
        names.len() >= RUST.len(),
        "parsed too few constants from src/proto.rs: {names:?}"
    );
    for (module, name) in &names {
        assert!(
            RUST.iter().any(|(m, n, _)| m == module && n == name),
            "src/proto.rs has {module}::{name}, which this test (and aidl/) does not list"
        );
    }
    for (module, name, _) in RUST {
        assert!(
            names.iter().any(|(m, n)| m == module && n == name),
            "this test lists {module}::{name}, which src/proto.rs does not define"
        );
    }
}

#[test]
fn values_in_each_group_are_distinct() {
    // Two commands (or two reasons) sharing a number would make the wire
    // ambiguous even if both sides agreed on it.
    let aidl = aidl_consts();
    for (_, module) in INTERFACES {
        let mut seen = BTreeMap::new();
        for ((m, name), value) in &aidl {
            if m == module {
                if let Some(other) = seen.insert(*value, name) {
                    panic!("{module}: {name} and {other} are both {value}");
                }
            }
        }
    }
}

#[test]
fn kill_event_has_the_reported_fields() {
    let text = fs::read_to_string(root().join("aidl/android/lmkd/KillEvent.aidl")).unwrap();
    let text = strip_comments(&text);
    let body = text
        .split_once("parcelable KillEvent")
        .map(|(_, b)| b)
        .expect("KillEvent.aidl declares parcelable KillEvent");
    let fields: Vec<&str> = body
        .lines()
        .filter_map(|l| l.trim().strip_suffix(';'))
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    for want in [
        "pid",
        "uid",
        "processName",
        "oomScoreAdj",
        "minOomScore",
        "reason",
        "rssKb",
        "swapKb",
        "eventToSignalUs",
        "timeToExitMs",
    ] {
        assert!(
            fields.contains(&want),
            "KillEvent lacks field {want}; has {fields:?}"
        );
    }
}

#[test]
fn parser_reads_what_aidl_allows() {
    assert_eq!(parse_int("0x10"), Some(16));
    assert_eq!(parse_int("-1"), Some(-1));
    assert_eq!(parse_int("- 7"), Some(-7));
    assert_eq!(parse_int("nope"), None);
    assert_eq!(strip_comments("a /* b\n c */ d // e\nf"), "a \n d \nf");
}
