//! Reads init/lmkd.rc the way AOSP init would and checks it against the
//! stock lmkd service definition, then runs its property triggers through a
//! small model of init to check when the one-shot clients run.
//!
//! The parser below follows init's rc language as far as this file needs:
//! a line is split into whitespace-separated tokens (double quotes group,
//! backslash escapes), `#` starts a comment at the beginning of a token,
//! a trailing `\` joins the next line, and the keywords `service`, `on` and
//! `import` open a section; every other line belongs to the open section.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;

use lmkd::config::Config;

/// Service options AOSP init knows (system/core/init service parser).
const SERVICE_OPTIONS: &[&str] = &[
    "capabilities",
    "class",
    "console",
    "critical",
    "disabled",
    "enter_namespace",
    "file",
    "gentle_kill",
    "group",
    "interface",
    "ioprio",
    "keycodes",
    "memcg.limit_in_bytes",
    "memcg.limit_percent",
    "memcg.limit_property",
    "memcg.soft_limit_in_bytes",
    "memcg.swappiness",
    "namespace",
    "oneshot",
    "onrestart",
    "oom_score_adjust",
    "override",
    "priority",
    "reboot_on_failure",
    "restart_period",
    "rlimit",
    "seclabel",
    "setenv",
    "shutdown",
    "sigstop",
    "socket",
    "stdio_to_kmsg",
    "task_profiles",
    "timeout_period",
    "updatable",
    "user",
    "writepid",
];

/// Commands AOSP init knows in `on` sections (its builtin function map).
const COMMANDS: &[&str] = &[
    "bootchart",
    "chmod",
    "chown",
    "class_reset",
    "class_restart",
    "class_start",
    "class_stop",
    "copy",
    "copy_per_line",
    "domainname",
    "enable",
    "enter_default_mount_ns",
    "exec",
    "exec_background",
    "exec_start",
    "export",
    "hostname",
    "ifup",
    "init_user0",
    "insmod",
    "installkey",
    "interface_restart",
    "interface_start",
    "interface_stop",
    "load_exports",
    "load_persist_props",
    "load_system_props",
    "loglevel",
    "mark_post_data",
    "mkdir",
    "mount",
    "mount_all",
    "perform_apex_config",
    "readahead",
    "restart",
    "restorecon",
    "restorecon_recursive",
    "rm",
    "rmdir",
    "setprop",
    "setrlimit",
    "start",
    "stop",
    "swapoff",
    "swapon_all",
    "symlink",
    "sysclktz",
    "trigger",
    "umount",
    "umount_all",
    "update_linker_config",
    "verity_update_state",
    "wait",
    "wait_for_prop",
    "write",
];

/// Capability names init accepts (the kernel's CAP_* without the prefix).
const CAPABILITIES: &[&str] = &[
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYSLOG",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "WAKE_ALARM",
];

/// Service options that may appear more than once.
const REPEATABLE: &[&str] = &[
    "socket",
    "file",
    "onrestart",
    "setenv",
    "writepid",
    "rlimit",
];

/// The names lmkd reads from `persist.device_config.lmkd_native.<name>`
/// (written out here, apart from the config table, so each guards the
/// other); each needs its own trigger.
const LMKD_PROPERTY_NAMES: &[&str] = &[
    "psi_partial_stall_ms",
    "psi_complete_stall_ms",
    "thrashing_limit",
    "thrashing_limit_decay",
    "thrashing_limit_critical",
    "swap_free_low_percentage",
    "swap_util_max",
    "filecache_min_kb",
    "stall_limit_critical",
    "kill_heaviest_task",
    "kill_timeout_ms",
    "pressure_after_kill_min_score",
    "lowmem_min_oom_score",
    "direct_reclaim_threshold_ms",
    "swap_compression_ratio",
    "use_minfree_levels",
    "delay_monitors_until_boot",
    "debug",
    "low",
    "medium",
    "critical",
    "critical_upgrade",
    "upgrade_pressure",
    "downgrade_pressure",
    "use_psi",
    "use_new_strategy",
];

const LMKD: &str = "/system/bin/lmkd";

/// One line of a section: keyword and arguments, with its source line.
#[derive(Debug, Clone, PartialEq)]
struct Line {
    line: usize,
    words: Vec<String>,
}

impl Line {
    fn keyword(&self) -> &str {
        &self.words[0]
    }
    fn args(&self) -> Vec<&str> {
        self.words[1..].iter().map(String::as_str).collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Section {
    Service {
        name: String,
        argv: Vec<String>,
        options: Vec<Line>,
    },
    On {
        triggers: Vec<String>,
        commands: Vec<Line>,
    },
    Import {
        path: String,
    },
}

/// Splits one logical line into tokens like init's tokenizer: whitespace
/// separates, `"..."` groups, `\x` escapes x, `#` at the start of a token
/// ends the line.
fn tokenize(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            '\\' => {
                let next = chars.next().ok_or("dangling backslash")?;
                cur.push(match next {
                    'n' => '\n',
                    't' => '\t',
                    other => other,
                });
                in_word = true;
            }
            '#' if !quoted && !in_word => break,
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Parses rc text into sections. Errors name the line, as init's log would.
fn parse_rc(text: &str) -> Result<Vec<Section>, String> {
    // Join `\`-continued lines first, remembering where each logical line began.
    let mut logical: Vec<(usize, String)> = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let (start, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
        match raw.strip_suffix('\\') {
            Some(head) => {
                acc.push_str(head);
                acc.push(' ');
                pending = Some((start, acc));
            }
            None => {
                acc.push_str(raw);
                logical.push((start, acc));
            }
        }
    }
    if let Some((start, _)) = pending {
        return Err(format!("line {start}: file ends inside a continued line"));
    }

    let mut sections = Vec::new();
    for (n, text) in logical {
        let words = tokenize(&text).map_err(|e| format!("line {n}: {e}"))?;
        if words.is_empty() {
            continue;
        }
        match words[0].as_str() {
            "service" => {
                if words.len() < 3 {
                    return Err(format!("line {n}: service needs a name and a path"));
                }
                sections.push(Section::Service {
                    name: words[1].clone(),
                    argv: words[2..].to_vec(),
                    options: Vec::new(),
                });
            }
            "on" => {
                // Triggers are joined by `&&`; at most one may be an event.
                let mut triggers = Vec::new();
                for (i, w) in words[1..].iter().enumerate() {
                    if i % 2 == 1 {
                        if w != "&&" {
                            return Err(format!("line {n}: expected && between triggers"));
                        }
                    } else {
                        triggers.push(w.clone());
                    }
                }
                if triggers.is_empty() || words.len() % 2 != 0 {
                    return Err(format!("line {n}: on without a complete trigger"));
                }
                sections.push(Section::On {
                    triggers,
                    commands: Vec::new(),
                });
            }
            "import" => {
                if words.len() != 2 {
                    return Err(format!("line {n}: import takes one path"));
                }
                sections.push(Section::Import {
                    path: words[1].clone(),
                });
            }
            _ => {
                let line = Line { line: n, words };
                match sections.last_mut() {
                    Some(Section::Service { options, .. }) => options.push(line),
                    Some(Section::On { commands, .. }) => commands.push(line),
                    Some(Section::Import { .. }) | None => {
                        return Err(format!("line {n}: {:?} outside a section", line.words))
                    }
                }
            }
        }
    }
    Ok(sections)
}

fn rc() -> Vec<Section> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("init/lmkd.rc");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_rc(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn lmkd_service(sections: &[Section]) -> (Vec<String>, Vec<Line>) {
    let found: Vec<_> = sections
        .iter()
        .filter_map(|s| match s {
            Section::Service {
                name,
                argv,
                options,
            } if name == "lmkd" => Some((argv.clone(), options.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(found.len(), 1, "exactly one `service lmkd` section");
    found.into_iter().next().unwrap()
}

/// The single occurrence of a service option, as its arguments.
fn option<'a>(options: &'a [Line], key: &str) -> Vec<&'a str> {
    let all: Vec<_> = options.iter().filter(|l| l.keyword() == key).collect();
    assert_eq!(
        all.len(),
        1,
        "option {key} must appear exactly once, found {}",
        all.len()
    );
    all[0].args()
}

/// The one `socket` line of the service that creates socket `name`.
fn socket<'a>(options: &'a [Line], name: &str) -> Vec<&'a str> {
    let all: Vec<_> = options
        .iter()
        .filter(|l| l.keyword() == "socket" && l.args().first() == Some(&name))
        .collect();
    assert_eq!(all.len(), 1, "socket {name} must be declared exactly once");
    all[0].args()
}

/// Whether a section runs on properties alone (not on an init event such
/// as `init`, which may be joined with properties).
fn is_property_section(triggers: &[String]) -> bool {
    triggers.iter().all(|t| t.starts_with("property:"))
}

/// The commands of the sections that run on init event `event` alone.
fn event_commands(sections: &[Section], event: &str) -> Vec<Vec<String>> {
    sections
        .iter()
        .filter_map(|s| match s {
            Section::On { triggers, commands } if !is_property_section(triggers) => {
                assert_eq!(triggers.len(), 1, "event section joined with {triggers:?}");
                (triggers[0] == event).then(|| commands.iter().map(|l| l.words.clone()))
            }
            _ => None,
        })
        .flatten()
        .collect()
}

/// Property triggers (`property:<name>=<value>`, joined by ` && ` when a
/// section has several) mapped to their commands; event sections are left
/// to [`event_commands`].
fn property_triggers(sections: &[Section]) -> BTreeMap<String, Vec<Vec<String>>> {
    let mut map = BTreeMap::new();
    for s in sections {
        if let Section::On { triggers, commands } = s {
            if !is_property_section(triggers) {
                continue;
            }
            let conds: Vec<&str> = triggers
                .iter()
                .map(|t| {
                    t.strip_prefix("property:")
                        .unwrap_or_else(|| panic!("unexpected trigger {t}"))
                })
                .collect();
            let t = conds.join(" && ");
            let cmds = commands.iter().map(|l| l.words.clone()).collect();
            assert!(
                map.insert(t.clone(), cmds).is_none(),
                "trigger {t} appears twice"
            );
        }
    }
    map
}

#[test]
fn service_matches_the_reference() {
    let sections = rc();
    let (argv, options) = lmkd_service(&sections);
    assert_eq!(argv, [LMKD], "daemon mode takes no arguments");
    assert_eq!(option(&options, "class"), ["core"]);
    assert_eq!(option(&options, "user"), ["lmkd"]);
    let groups = option(&options, "group");
    // The first group is the primary gid; the rest are supplementary.
    assert_eq!(groups.first(), Some(&"lmkd"), "primary group");
    assert_eq!(
        groups.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from(["lmkd", "system", "readproc"])
    );
    assert_eq!(groups.len(), 3, "no duplicated group");
    let caps = option(&options, "capabilities");
    assert_eq!(
        caps.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([
            "DAC_OVERRIDE",
            "KILL",
            "IPC_LOCK",
            "SYS_NICE",
            "SYS_RESOURCE"
        ])
    );
    assert_eq!(caps.len(), 5, "no duplicated capability");
    assert!(
        option(&options, "critical").is_empty(),
        "critical takes no arguments"
    );
    assert_eq!(option(&options, "task_profiles"), ["ServiceCapacityLow"]);
    // Options that would change how the daemon runs and are not in the reference.
    for absent in [
        "disabled",
        "oneshot",
        "oom_score_adjust",
        "seclabel",
        "rlimit",
    ] {
        assert!(
            !options.iter().any(|l| l.keyword() == absent),
            "{absent} is not in the reference service"
        );
    }
}

/// Compaction must leave the daemon's locked pages in place, set once
/// before any service starts; nothing else runs on an init event.
#[test]
fn init_keeps_locked_pages_from_compaction() {
    let sections = rc();
    assert_eq!(
        event_commands(&sections, "init"),
        [["write", "/proc/sys/vm/compact_unevictable_allowed", "0"]]
    );
    for s in &sections {
        if let Section::On { triggers, .. } = s {
            assert!(
                is_property_section(triggers) || triggers == &["init"],
                "unexpected event section {triggers:?}"
            );
        }
    }
}

/// lmkctl's socket: a stream (one JSON line per request), apart from the
/// data socket; system owns it and the shell group may connect (the daemon
/// then decides by uid what each peer may do).
#[test]
fn control_socket_line() {
    let (_, options) = lmkd_service(&rc());
    assert_eq!(
        socket(&options, "lmkd_ctl"),
        ["lmkd_ctl", "stream", "0660", "system", "shell"]
    );
    assert_eq!(
        lmkd::control::ANDROID_SOCKET_ENV,
        "ANDROID_SOCKET_lmkd_ctl",
        "init passes socket <name> in ANDROID_SOCKET_<name>"
    );
}

#[test]
fn socket_line_matches_the_reference() {
    let (_, options) = lmkd_service(&rc());
    let socket = socket(&options, "lmkd");
    // socket <name> <type> <perm> [<user> [<group> [<seclabel>]]]
    assert_eq!(
        socket.len(),
        5,
        "socket name type perm user group: {socket:?}"
    );
    assert_eq!(socket[0], "lmkd", "init publishes it as /dev/socket/lmkd");
    assert_eq!(socket[1], "seqpacket+passcred");
    let (kind, flag) = socket[1].split_once('+').unwrap();
    assert!(["stream", "dgram", "seqpacket"].contains(&kind));
    assert_eq!(flag, "passcred");
    assert_eq!(
        u32::from_str_radix(socket[2], 8),
        Ok(0o660),
        "perm is octal 0660"
    );
    assert!(
        socket[2].starts_with('0'),
        "init reads perm as octal; write the leading 0"
    );
    assert_eq!(socket[3], "system");
    assert_eq!(socket[4], "system");
}

#[test]
fn every_keyword_is_known_to_init() {
    for s in rc() {
        match s {
            Section::Service { options, .. } => {
                let mut seen = BTreeSet::new();
                for l in &options {
                    assert!(
                        SERVICE_OPTIONS.contains(&l.keyword()),
                        "line {}: init has no service option {:?}",
                        l.line,
                        l.keyword()
                    );
                    assert!(
                        seen.insert(l.keyword().to_string()) || REPEATABLE.contains(&l.keyword()),
                        "line {}: option {} repeated",
                        l.line,
                        l.keyword()
                    );
                    if l.keyword() == "capabilities" {
                        for cap in l.args() {
                            assert!(
                                CAPABILITIES.contains(&cap),
                                "line {}: no capability {cap}",
                                l.line
                            );
                        }
                    }
                }
            }
            Section::On { commands, .. } => {
                for l in &commands {
                    assert!(
                        COMMANDS.contains(&l.keyword()),
                        "line {}: init has no command {:?}",
                        l.line,
                        l.keyword()
                    );
                }
            }
            Section::Import { path } => panic!("lmkd.rc needs no import (found {path})"),
        }
    }
}

#[test]
fn triggers_run_the_one_shot_clients() {
    let triggers = property_triggers(&rc());
    let reinit = vec![vec![
        "exec_background".to_string(),
        LMKD.into(),
        "--reinit".into(),
    ]];
    let boot = vec![vec![
        "exec_background".to_string(),
        LMKD.into(),
        "--boot_completed".into(),
    ]];

    let ask_reinit = |value: &str| {
        vec![vec![
            "setprop".to_string(),
            "lmkd.reinit".into(),
            value.to_string(),
        ]]
    };

    let mut expected = BTreeMap::new();
    expected.insert("lmkd.reinit=1".to_string(), reinit);
    expected.insert("sys.boot_completed=1".to_string(), boot);
    // A reinit asked for during boot waits for its end, as lmkd's rc does.
    expected.insert(
        "sys.boot_completed=1 && lmkd.reinit=0".to_string(),
        ask_reinit("1"),
    );
    for name in LMKD_PROPERTY_NAMES {
        expected.insert(
            format!("persist.device_config.lmkd_native.{name}=*"),
            ask_reinit("${sys.boot_completed:-0}"),
        );
    }
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| !triggers.contains_key(*k))
        .collect();
    let extra: Vec<_> = triggers
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    assert!(missing.is_empty(), "lmkd.rc lacks triggers: {missing:?}");
    assert!(
        extra.is_empty(),
        "lmkd.rc has unexpected triggers: {extra:?}"
    );
    for (trigger, cmds) in &expected {
        assert_eq!(
            &triggers[trigger], cmds,
            "commands of on property:{trigger}"
        );
    }
}

#[test]
fn property_names_match_the_config() {
    // The daemon and the rc file must agree on which names are tunable, or
    // a setprop would be read but never trigger a reinit (or vice versa).
    let ours: BTreeSet<_> = LMKD_PROPERTY_NAMES.iter().copied().collect();
    let config: BTreeSet<_> = Config::property_key_names().collect();
    assert_eq!(
        ours.len(),
        LMKD_PROPERTY_NAMES.len(),
        "duplicate in LMKD_PROPERTY_NAMES"
    );
    assert_eq!(ours, config, "lmkd's names vs Config::property_key_names()");
}

#[test]
fn parser_follows_init_syntax() {
    let text = "# comment\n\
                service s /bin/s --a \\\n    --b\n\
                \x20   # indented comment\n\
                \x20   socket s stream 0600 root root # trailing\n\
                \x20   setenv X \"two words\"\n\
                on property:a=1 && property:b=*\n\
                \x20   write /x \\#\n";
    let s = parse_rc(text).unwrap();
    assert_eq!(s.len(), 2);
    match &s[0] {
        Section::Service {
            name,
            argv,
            options,
        } => {
            assert_eq!(name, "s");
            assert_eq!(argv, &["/bin/s", "--a", "--b"]);
            assert_eq!(options.len(), 2);
            assert_eq!(
                options[0].words,
                ["socket", "s", "stream", "0600", "root", "root"]
            );
            assert_eq!(options[1].words, ["setenv", "X", "two words"]);
            assert_eq!(options[0].line, 5, "line numbers count continued lines");
        }
        other => panic!("{other:?}"),
    }
    match &s[1] {
        Section::On { triggers, commands } => {
            assert_eq!(triggers, &["property:a=1", "property:b=*"]);
            assert_eq!(commands[0].words, ["write", "/x", "#"]);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        parse_rc("    class core\n").is_err(),
        "option outside a section"
    );
    assert!(parse_rc("on a &&\n").is_err(), "dangling &&");
    assert!(parse_rc("service x /x \\").is_err(), "continuation at EOF");
    assert!(parse_rc("service x\n").is_err(), "service without path");
}

/// Enough of init to run lmkd.rc's property triggers: `setprop` (with
/// `${name:-default}` expansion) and `exec_background`, recorded. Like
/// init, a property change queues the matching actions in file order and
/// actions run one after another, so a `setprop` inside an action fires its
/// triggers after the actions already queued.
struct Init {
    sections: Vec<(Vec<String>, Vec<Vec<String>>)>,
    props: BTreeMap<String, String>,
    queue: std::collections::VecDeque<Vec<Vec<String>>>,
    execs: Vec<String>,
}

impl Init {
    fn new() -> Init {
        let sections = rc()
            .into_iter()
            .filter_map(|s| match s {
                Section::On { triggers, commands } => {
                    Some((triggers, commands.into_iter().map(|l| l.words).collect()))
                }
                _ => None,
            })
            .collect();
        Init {
            sections,
            props: BTreeMap::new(),
            queue: Default::default(),
            execs: Vec::new(),
        }
    }

    fn holds(&self, cond: &str) -> bool {
        let (name, want) = cond
            .strip_prefix("property:")
            .unwrap()
            .split_once('=')
            .unwrap();
        match self.props.get(name) {
            Some(v) => want == "*" || v == want,
            None => false,
        }
    }

    fn expand(&self, word: &str) -> String {
        let Some(inner) = word.strip_prefix("${").and_then(|w| w.strip_suffix('}')) else {
            return word.to_string();
        };
        let (name, default) = inner.split_once(":-").unwrap_or((inner, ""));
        self.props
            .get(name)
            .filter(|v| !v.is_empty())
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }

    /// `setprop` from outside, then run what it set off.
    fn setprop(&mut self, name: &str, value: &str) {
        self.set(name, value);
        while let Some(cmds) = self.queue.pop_front() {
            self.run(cmds);
        }
    }

    /// Sets a property and queues every action whose trigger names it and
    /// whose conditions all hold (init fires on each set, changed or not).
    fn set(&mut self, name: &str, value: &str) {
        self.props.insert(name.to_string(), value.to_string());
        let fired: Vec<Vec<Vec<String>>> = self
            .sections
            .iter()
            .filter(|(t, _)| {
                t.iter()
                    .any(|c| c.starts_with(&format!("property:{name}=")))
                    && t.iter().all(|c| self.holds(c))
            })
            .map(|(_, cmds)| cmds.clone())
            .collect();
        self.queue.extend(fired);
    }

    fn run(&mut self, cmds: Vec<Vec<String>>) {
        for cmd in cmds {
            match cmd[0].as_str() {
                "setprop" => {
                    let v = self.expand(&cmd[2]);
                    self.set(&cmd[1], &v);
                }
                "exec_background" => {
                    self.execs.push(cmd[2..].join(" "));
                    // What `lmkd --reinit` does first on Android.
                    if cmd[2] == "--reinit" {
                        self.props.insert("lmkd.reinit".into(), String::new());
                    }
                }
                other => panic!("the model does not know {other}"),
            }
        }
    }
}

#[test]
fn reinit_asked_during_boot_waits_for_boot_completed() {
    let mut init = Init::new();
    // An experiment flag pushed during boot: no reinit yet.
    init.setprop("persist.device_config.lmkd_native.debug", "true");
    assert!(init.execs.is_empty(), "{:?}", init.execs);
    assert_eq!(init.props["lmkd.reinit"], "0");
    init.setprop("persist.device_config.lmkd_native.kill_timeout_ms", "50");
    assert!(init.execs.is_empty(), "{:?}", init.execs);
    // Boot completes: the deferred reinit runs, once.
    init.setprop("sys.boot_completed", "1");
    assert_eq!(init.execs, ["--boot_completed", "--reinit"]);
    assert_eq!(init.props["lmkd.reinit"], "", "--reinit clears lmkd.reinit");
    // After boot each new value reinits at once.
    init.setprop("persist.device_config.lmkd_native.swap_util_max", "90");
    init.setprop("persist.device_config.lmkd_native.swap_util_max", "80");
    assert_eq!(
        init.execs,
        ["--boot_completed", "--reinit", "--reinit", "--reinit"]
    );
}

#[test]
fn boot_without_pushed_flags_does_not_reinit() {
    let mut init = Init::new();
    init.setprop("sys.boot_completed", "1");
    assert_eq!(init.execs, ["--boot_completed"]);
    // `setprop lmkd.reinit 1` by hand still reinits.
    init.setprop("lmkd.reinit", "1");
    assert_eq!(init.execs, ["--boot_completed", "--reinit"]);
}
