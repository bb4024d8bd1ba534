//! Configuration loading: layering, low-RAM defaults, property leniency,
//! file strictness with errors that name the key.

use std::path::{Path, PathBuf};

use lmkd::config::{check_config_file, Config, ConfigError, Startup};
use lmkd::props::{MapProperties, NoProperties, PropertySource};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(name)
}

fn load(file: Option<&Path>, props: &[(&str, &str)]) -> (Config, Vec<String>) {
    let props = MapProperties::from_pairs(props.iter().copied());
    Config::load(file, &props).expect("load")
}

#[test]
fn shipped_default_file_is_the_default() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("init/lmkd.toml");
    assert_eq!(Config::from_file(&path).unwrap(), Config::default());
}

#[test]
fn shipped_default_file_documents_every_key() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("init/lmkd.toml");
    let text = std::fs::read_to_string(path).unwrap();
    for key in Config::key_names() {
        let documented = text.lines().any(|l| {
            let l = l.trim_start_matches(['#', ' ']);
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        });
        assert!(documented, "init/lmkd.toml does not mention {key}");
    }
}

#[test]
fn no_sources_gives_defaults() {
    let (cfg, warnings) = Config::load(None, &NoProperties).unwrap();
    assert_eq!(cfg, Config::default());
    assert!(warnings.is_empty());
}

#[test]
fn lookup_order_persist_over_ro_over_file_over_default() {
    let file = fixture("tuned.toml");
    let ro = "ro.lmk.kill_timeout_ms";
    let persist = "persist.device_config.lmkd_native.kill_timeout_ms";

    // Default only.
    assert_eq!(load(None, &[]).0.kill_timeout_ms, 100);
    // File over default.
    assert_eq!(load(Some(&file), &[]).0.kill_timeout_ms, 250);
    // ro over file.
    assert_eq!(load(Some(&file), &[(ro, "300")]).0.kill_timeout_ms, 300);
    // persist over ro over file.
    let (cfg, warnings) = load(Some(&file), &[(ro, "300"), (persist, "400")]);
    assert_eq!(cfg.kill_timeout_ms, 400);
    assert!(warnings.is_empty(), "{warnings:?}");
    // persist alone over the file.
    assert_eq!(
        load(Some(&file), &[(persist, "400")]).0.kill_timeout_ms,
        400
    );
    // Keys nobody set keep their defaults; the file's other keys apply.
    let (cfg, _) = load(Some(&file), &[(persist, "400")]);
    assert_eq!(cfg.thrashing_limit, 80);
    assert_eq!(cfg.allowed_uids, vec![0, 1000, 2000]);
    assert_eq!(
        cfg.psi_partial_stall_ms,
        Config::default().psi_partial_stall_ms
    );
}

#[test]
fn boolean_properties_use_android_spellings() {
    let (cfg, w) = load(
        None,
        &[("ro.lmk.debug", "true"), ("ro.lmk.kill_heaviest_task", "1")],
    );
    assert!(cfg.debug && cfg.kill_heaviest_task, "{w:?}");
    let (cfg, _) = load(
        None,
        &[
            ("ro.lmk.debug", "1"),
            ("persist.device_config.lmkd_native.debug", "false"),
        ],
    );
    assert!(!cfg.debug);
}

#[test]
fn low_ram_defaults() {
    let low = Config::low_ram();
    assert_eq!(low.psi_partial_stall_ms, 200);
    assert_eq!(low.thrashing_limit, 30);
    assert_eq!(low.thrashing_limit_decay, 50);
    assert_eq!(low.thrashing_limit_critical(), 90);
    assert!(low.startup.per_app_memcg);
    // Everything else is the normal default.
    let mut normalised = Config {
        low_ram: false,
        psi_partial_stall_ms: 70,
        thrashing_limit: 100,
        thrashing_limit_decay: 10,
        ..low
    };
    normalised.startup.per_app_memcg = false;
    assert_eq!(normalised, Config::default());

    for flag in ["true", "1"] {
        let (cfg, _) = load(None, &[("ro.config.low_ram", flag)]);
        assert_eq!(cfg, Config::low_ram(), "ro.config.low_ram={flag}");
    }
    assert_eq!(
        load(None, &[("ro.config.low_ram", "false")]).0,
        Config::default()
    );
}

#[test]
fn low_ram_file_overrides_only_its_keys() {
    // tuned.toml sets thrashing_limit but not psi_partial_stall_ms.
    let (cfg, _) = load(
        Some(&fixture("tuned.toml")),
        &[("ro.config.low_ram", "true")],
    );
    assert_eq!(cfg.thrashing_limit, 80);
    assert_eq!(cfg.psi_partial_stall_ms, 200);
    assert_eq!(cfg.thrashing_limit_decay, 50);
}

#[test]
fn invalid_property_value_is_ignored_with_a_warning_naming_it() {
    let (cfg, warnings) = load(
        Some(&fixture("tuned.toml")),
        &[
            ("ro.lmk.kill_timeout_ms", "300"),
            // Unparsable: the ro value stays.
            ("persist.device_config.lmkd_native.kill_timeout_ms", "soon"),
            // Out of range (a key lmkd does not clamp): the default stays.
            ("ro.lmk.psi_partial_stall_ms", "5000"),
            // Not a boolean.
            ("ro.lmk.debug", "maybe"),
        ],
    );
    assert_eq!(cfg.kill_timeout_ms, 300);
    assert_eq!(cfg.psi_partial_stall_ms, 70);
    assert!(!cfg.debug);
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    let find = |prop: &str| {
        warnings
            .iter()
            .find(|w| w.contains(prop))
            .unwrap_or_else(|| panic!("no warning names {prop}: {warnings:?}"))
    };
    let w = find("persist.device_config.lmkd_native.kill_timeout_ms");
    assert!(w.contains("soon") && w.contains("integer"), "{w}");
    let w = find("ro.lmk.psi_partial_stall_ms");
    assert!(
        w.contains("5000") && w.contains("between 0 and 1000"),
        "{w}"
    );
    let w = find("ro.lmk.debug");
    assert!(w.contains("maybe") && w.contains("boolean"), "{w}");
}

#[test]
fn property_breaking_a_cross_key_rule_is_ignored() {
    let (cfg, warnings) = load(
        None,
        &[
            ("ro.lmk.thrashing_limit", "200"),
            ("ro.lmk.thrashing_limit_critical", "150"),
        ],
    );
    assert_eq!(cfg.thrashing_limit, 200);
    assert_eq!(cfg.thrashing_limit_critical, None);
    assert_eq!(cfg.thrashing_limit_critical(), 600);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("ro.lmk.thrashing_limit_critical"),
        "{warnings:?}"
    );
}

#[test]
fn our_keys_are_file_only() {
    let (cfg, warnings) = load(
        None,
        &[
            ("ro.lmk.max_procs", "100"),
            ("persist.device_config.lmkd_native.socket_path", "/x"),
        ],
    );
    assert_eq!(cfg, Config::default());
    assert!(warnings.is_empty());
    assert!(Config::property_key_names().all(|k| k != "max_procs" && k != "socket_path"));
}

#[test]
fn empty_property_is_unset() {
    let (cfg, warnings) = load(None, &[("ro.lmk.kill_timeout_ms", "")]);
    assert_eq!(cfg.kill_timeout_ms, 100);
    assert!(warnings.is_empty());
}

#[test]
fn lowmem_min_oom_score_is_raised_to_201() {
    let cfg = Config::from_toml_str("lowmem_min_oom_score = 100").unwrap();
    assert_eq!(cfg.lowmem_min_oom_score, 201);
    let (cfg, w) = load(None, &[("ro.lmk.lowmem_min_oom_score", "-1000")]);
    assert_eq!(cfg.lowmem_min_oom_score, 201);
    assert!(w.is_empty());
    // A hand-built config below the floor does not validate.
    let bad = Config {
        lowmem_min_oom_score: 0,
        ..Config::default()
    };
    let e = bad.validate().unwrap_err();
    assert_eq!(e.key(), Some("lowmem_min_oom_score"));
}

// --- file errors name the key -------------------------------------------

fn file_error(name: &str) -> (ConfigError, String) {
    let e = Config::from_file(&fixture(name)).unwrap_err();
    let msg = e.to_string();
    (e, msg)
}

#[test]
fn unknown_key_is_named_with_file_and_line() {
    let (e, msg) = file_error("unknown_key.toml");
    assert_eq!(e.key(), Some("kill_timout_ms"));
    assert!(msg.contains("unknown key \"kill_timout_ms\""), "{msg}");
    assert!(msg.contains("unknown_key.toml:2:"), "{msg}");
    // A table is an unknown key too.
    let msg = Config::from_toml_str("[psi]\nwindow = 2")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("unknown key \"psi\""), "{msg}");
}

#[test]
fn wrong_type_is_named() {
    let (e, msg) = file_error("wrong_type.toml");
    assert_eq!(e.key(), Some("kill_timeout_ms"));
    assert!(
        msg.ends_with("key \"kill_timeout_ms\": expected an integer, found a string"),
        "{msg}"
    );
    assert!(msg.contains("wrong_type.toml:2:"), "{msg}");
    let msg = Config::from_toml_str("debug = 1").unwrap_err().to_string();
    assert!(
        msg.contains("key \"debug\": expected a boolean, found an integer"),
        "{msg}"
    );
    let msg = Config::from_toml_str("allowed_uids = [0, \"system\"]")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("key \"allowed_uids\""), "{msg}");
}

#[test]
fn out_of_range_is_named_with_value_and_range() {
    let (e, msg) = file_error("out_of_range.toml");
    assert_eq!(e.key(), Some("kill_timeout_ms"));
    assert!(
        msg.ends_with("kill_timeout_ms = 60001: must be between 0 and 60000"),
        "{msg}"
    );

    for (text, key, needle) in [
        ("swap_util_max = 101", "swap_util_max", "between 0 and 100"),
        (
            "psi_partial_stall_ms = 1001",
            "psi_partial_stall_ms",
            "between 0 and 1000",
        ),
        ("max_procs = 8", "max_procs", "between 16 and 65536"),
        (
            "watchdog_timeout_ms = 100",
            "watchdog_timeout_ms",
            "between 500 and 60000",
        ),
        ("low = 2000", "low", "between -1000 and 1001"),
        (
            "kill_timeout_ms = 99999999999999999999",
            "kill_timeout_ms",
            "between 0",
        ),
        ("allowed_uids = []", "allowed_uids", "at least one uid"),
        (
            "allowed_uids = [-1]",
            "allowed_uids",
            "between 0 and 4294967295",
        ),
        ("socket_path = \"lmkd.sock\"", "socket_path", "absolute"),
        ("proc_root = \"\"", "proc_root", "non-empty"),
        (
            "thrashing_limit_critical = 50",
            "thrashing_limit_critical",
            "at least thrashing_limit",
        ),
    ] {
        let e = Config::from_toml_str(text).unwrap_err();
        assert_eq!(e.key(), Some(key), "{text}: {e}");
        let msg = e.to_string();
        assert!(msg.contains(key) && msg.contains(needle), "{text}: {msg}");
    }
}

#[test]
fn syntax_and_io_errors_name_the_file() {
    let (e, msg) = file_error("syntax.toml");
    assert!(matches!(e, ConfigError::Syntax { .. }), "{msg}");
    assert!(msg.contains("syntax.toml:1:"), "{msg}");
    let (_, msg) = file_error("does-not-exist.toml");
    assert!(msg.contains("does-not-exist.toml"), "{msg}");
    // load() reports a bad file as an error, not a warning.
    assert!(Config::load(Some(&fixture("out_of_range.toml")), &NoProperties).is_err());
}

#[test]
fn to_toml_round_trips() {
    let mut cfg = Config {
        kill_timeout_ms: 250,
        debug: true,
        lowmem_min_oom_score: 250,
        thrashing_limit_critical: Some(400),
        filecache_min_kb: 65536,
        allowed_uids: vec![0, 1000, 1066],
        startup: Startup {
            socket_path: PathBuf::from("/tmp/a \"quoted\" path.sock"),
            use_new_strategy: Some(false),
            ..Startup::default()
        },
        ..Config::low_ram()
    };
    assert_eq!(Config::from_toml_str(&cfg.to_toml()).unwrap(), cfg);

    // Implicit derived keys come back explicit, resolved.
    cfg.thrashing_limit_critical = None;
    cfg.startup.use_new_strategy = None;
    let text = cfg.to_toml();
    assert!(text.contains("thrashing_limit_critical = 90\n"), "{text}");
    assert!(text.contains("use_new_strategy = true\n"), "{text}");
    let mut back = Config::from_toml_str(&text).unwrap();
    back.thrashing_limit_critical = None;
    back.startup.use_new_strategy = None;
    assert_eq!(back, cfg);

    // Every key is shown.
    for key in Config::key_names() {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{key} = "))),
            "{key}"
        );
    }
}

#[test]
fn restart_only_changes_lists_startup_keys() {
    let old = Config::default();
    let tuned = Config {
        kill_timeout_ms: 500,
        debug: true,
        allowed_uids: vec![0],
        ..old.clone()
    };
    assert!(old.restart_only_changes(&tuned).is_empty());
    let moved = Config {
        startup: Startup {
            max_procs: 100,
            socket_path: "/tmp/x".into(),
            psi_path: "/sys/fs/cgroup/a/memory.pressure".into(),
            proc_root: "/tmp/proc".into(),
            watchdog_timeout_ms: 5000,
            ..old.startup.clone()
        },
        ..tuned
    };
    assert_eq!(
        old.restart_only_changes(&moved),
        vec![
            "max_procs",
            "socket_path",
            "psi_path",
            "proc_root",
            "watchdog_timeout_ms"
        ]
    );
}

#[test]
fn reload_keeps_the_startup_keys_whole_and_applies_the_rest() {
    let running = Config::default();
    let mut wanted = Config {
        kill_timeout_ms: 500,
        wait_for_inactive_file: true,
        ..Config::default()
    };
    wanted.startup.watchdog_timeout_ms = 5000;
    wanted.startup.use_psi = false;
    wanted.startup.max_procs = 64;
    let (now, kept) = running.reloaded(wanted);
    assert_eq!(kept, ["use_psi", "max_procs", "watchdog_timeout_ms"]);
    assert_eq!(now.startup, running.startup, "start-up keys are kept whole");
    assert_eq!(now.kill_timeout_ms, 500);
    assert!(now.wait_for_inactive_file);
    // A changed use_minfree_levels changes the strategy a restart would pick.
    let (_, kept) = running.reloaded(Config {
        use_minfree_levels: true,
        ..Config::default()
    });
    assert_eq!(kept, ["use_new_strategy"]);
}

#[test]
fn check_config_file_prints_effective_config_with_props_file() {
    // The only test that touches the environment.
    std::env::set_var(lmkd::props::PROPS_FILE_ENV, fixture("props.txt"));
    let text = check_config_file(&fixture("tuned.toml")).unwrap();
    std::env::remove_var(lmkd::props::PROPS_FILE_ENV);
    let cfg = Config::from_toml_str(&text).unwrap();
    assert_eq!(cfg.kill_timeout_ms, 400, "{text}");
    assert!(cfg.debug);
    assert_eq!(cfg.thrashing_limit, 80);
    assert!(check_config_file(&fixture("unknown_key.toml")).is_err());
}

#[test]
fn props_file_simulates_setprop() {
    let props = MapProperties::from_file(&fixture("props.txt")).unwrap();
    assert_eq!(props.get("ro.lmk.kill_timeout_ms").as_deref(), Some("300"));
    props
        .set("persist.device_config.lmkd_native.kill_timeout_ms", "500")
        .unwrap();
    assert_eq!(Config::load(None, &props).unwrap().0.kill_timeout_ms, 500);
}

#[test]
fn logging_init_twice_is_harmless() {
    lmkd::logging::init(false);
    lmkd::logging::init(true);
    lmkd::logging::set_debug(true);
    assert_eq!(log::max_level(), log::LevelFilter::Debug);
    lmkd::logging::set_debug(false);
    assert_eq!(log::max_level(), log::LevelFilter::Info);
    log::info!(target: lmkd::logging::KILL_TAG, "Kill 'test' (1), uid 0, oom_score_adj 900 to free 0kB rss, 0kB swap; reason: test");
}

// --- lmkd's property semantics --------------------------------------------

#[test]
fn integer_properties_are_read_in_base_0_as_lmkd_reads_them() {
    let ro = |v: &str| load(None, &[("ro.lmk.kill_timeout_ms", v)]);
    assert_eq!(ro("0x20").0.kill_timeout_ms, 32);
    assert_eq!(ro("010").0.kill_timeout_ms, 8, "a leading 0 is octal");
    assert_eq!(ro("  250").0.kill_timeout_ms, 250);
    // lmkd reads the number and ignores what follows; we say so.
    let (cfg, w) = ro("150ms");
    assert_eq!(cfg.kill_timeout_ms, 150);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("ro.lmk.kill_timeout_ms") && w[0].contains("\"ms\""),
        "{w:?}"
    );
    // No number at all, or an overflow: ignored, the default stays.
    for bad in ["ms", "0x", "99999999999999999999"] {
        let (cfg, w) = ro(bad);
        let expect = if bad == "0x" { 0 } else { 100 };
        assert_eq!(cfg.kill_timeout_ms, expect, "{bad:?}");
        assert_eq!(w.len(), 1, "{bad:?}: {w:?}");
    }
    let (cfg, _) = load(None, &[("ro.lmk.low", "-0x10")]);
    assert_eq!(cfg.low, -16);
}

#[test]
fn boolean_properties_take_only_libcutils_spellings() {
    for (v, want) in [("y", true), ("on", true), ("n", false), ("off", false)] {
        let (cfg, w) = load(
            None,
            &[
                ("ro.lmk.kill_heaviest_task", if want { "0" } else { "1" }),
                ("persist.device_config.lmkd_native.kill_heaviest_task", v),
            ],
        );
        assert_eq!(cfg.kill_heaviest_task, want, "{v}: {w:?}");
    }
    for v in ["TRUE", "True", " true", "2"] {
        let (cfg, w) = load(None, &[("ro.lmk.debug", v)]);
        assert!(!cfg.debug, "{v:?}");
        assert!(w[0].contains("ro.lmk.debug"), "{v:?}: {w:?}");
    }
}

#[test]
fn lmkd_clamps_where_lmkd_clamps() {
    let (cfg, w) = load(
        None,
        &[
            ("ro.lmk.swap_free_low_percentage", "150"),
            ("ro.lmk.swap_util_max", "-5"),
            ("ro.lmk.thrashing_limit", "-1"),
            ("ro.lmk.thrashing_limit_decay", "101"),
        ],
    );
    assert_eq!(cfg.swap_free_low_percentage, 100);
    assert_eq!(cfg.swap_util_max, 0);
    assert_eq!(cfg.thrashing_limit, 0);
    assert_eq!(cfg.thrashing_limit_decay, 100);
    assert_eq!(w.len(), 4, "each clamp is reported: {w:?}");
    assert!(
        w.iter()
            .any(|w| w.contains("ro.lmk.swap_free_low_percentage") && w.contains("using 100")),
        "{w:?}"
    );
    // lowmem_min_oom_score is raised to 201 (tested above); keys lmkd does
    // not clamp are refused instead (psi_partial_stall_ms, above).
    let (cfg, w) = load(None, &[("ro.lmk.kill_timeout_ms", "-1")]);
    assert_eq!(cfg.kill_timeout_ms, 100);
    assert_eq!(w.len(), 1, "{w:?}");
    // The file stays strict.
    let e = Config::from_toml_str("swap_free_low_percentage = 150").unwrap_err();
    assert_eq!(e.key(), Some("swap_free_low_percentage"));
}

#[test]
fn zero_turns_off_what_lmkd_turns_off() {
    let (cfg, w) = load(
        None,
        &[
            ("ro.lmk.psi_partial_stall_ms", "0"),
            ("ro.lmk.psi_complete_stall_ms", "0"),
            ("ro.lmk.kill_timeout_ms", "0"),
        ],
    );
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(
        (
            cfg.psi_partial_stall_ms,
            cfg.psi_complete_stall_ms,
            cfg.kill_timeout_ms
        ),
        (0, 0, 0)
    );
    let cfg = Config::from_toml_str(
        "psi_partial_stall_ms = 0\npsi_complete_stall_ms = 0\nkill_timeout_ms = 0",
    )
    .unwrap();
    assert_eq!(cfg.kill_timeout_ms, 0);
}

// --- strategy selection, as lmkd chooses -----------------------------------

#[test]
fn use_new_strategy_defaults_to_low_ram_or_not_minfree_levels() {
    let strategy = |props: &[(&str, &str)]| load(None, props).0.use_new_strategy();
    assert!(strategy(&[]));
    assert!(!strategy(&[("ro.lmk.use_minfree_levels", "true")]));
    assert!(strategy(&[
        ("ro.lmk.use_minfree_levels", "true"),
        ("ro.config.low_ram", "true")
    ]));
    assert!(!strategy(&[("ro.lmk.use_new_strategy", "false")]));
    assert!(strategy(&[
        ("ro.lmk.use_minfree_levels", "true"),
        ("persist.device_config.lmkd_native.use_new_strategy", "true")
    ]));
    assert!(!Config::from_toml_str("use_minfree_levels = true")
        .unwrap()
        .use_new_strategy());
}

#[test]
fn strategy_and_vmpressure_keys_are_read_from_lmkds_properties() {
    let defaults = Config::default();
    assert!(defaults.startup.use_psi);
    assert!(!defaults.critical_upgrade);
    assert_eq!(
        (defaults.upgrade_pressure, defaults.downgrade_pressure),
        (100, 100)
    );
    assert!(defaults.startup.log_stats);
    let (cfg, w) = load(
        None,
        &[
            ("ro.lmk.use_psi", "false"),
            ("ro.lmk.critical_upgrade", "true"),
            ("ro.lmk.upgrade_pressure", "40"),
            ("persist.device_config.lmkd_native.downgrade_pressure", "60"),
            ("ro.lmk.low", "900"),
            ("ro.lmk.medium", "600"),
            ("ro.lmk.critical", "100"),
            ("ro.lmk.log_stats", "false"),
        ],
    );
    assert!(w.is_empty(), "{w:?}");
    assert!(!cfg.startup.use_psi && cfg.critical_upgrade);
    assert_eq!((cfg.upgrade_pressure, cfg.downgrade_pressure), (40, 60));
    assert_eq!((cfg.low, cfg.medium, cfg.critical), (900, 600, 100));
    assert!(!cfg.startup.log_stats);
    // lmkd reads log_stats from ro.lmk. only.
    let (cfg, _) = load(
        None,
        &[("persist.device_config.lmkd_native.log_stats", "false")],
    );
    assert!(cfg.startup.log_stats);
}

#[test]
fn the_properties_read_are_lmkds() {
    let names: Vec<String> = Config::property_names()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    for p in [
        "ro.config.low_ram",
        "ro.lmk.use_psi",
        "persist.device_config.lmkd_native.use_psi",
        "ro.lmk.use_new_strategy",
        "ro.lmk.use_minfree_levels",
        "ro.lmk.critical_upgrade",
        "ro.lmk.upgrade_pressure",
        "ro.lmk.downgrade_pressure",
        "ro.lmk.log_stats",
        "ro.lmk.kill_timeout_ms",
        "persist.device_config.lmkd_native.kill_timeout_ms",
    ] {
        assert!(names.iter().any(|n| n == p), "{p} is not read: {names:?}");
    }
    for p in [
        "persist.device_config.lmkd_native.log_stats",
        "ro.lmk.low_ram",
        "ro.lmk.max_procs",
        "ro.lmk.wait_for_inactive_file",
    ] {
        assert!(!names.iter().any(|n| n == p), "{p} is read");
    }
    // Build-time names come before device_config ones (which win).
    let ro = names.iter().position(|n| n == "ro.lmk.debug").unwrap();
    let persist = names
        .iter()
        .position(|n| n == "persist.device_config.lmkd_native.debug")
        .unwrap();
    assert!(ro < persist);
}

#[test]
fn low_ram_in_the_file_picks_low_ram_defaults_unless_the_property_says() {
    let dir = std::env::temp_dir().join(format!("lmkd-lowram-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("lmkd.toml");
    std::fs::write(&file, "low_ram = true\nthrashing_limit = 40\n").unwrap();
    let (cfg, _) = load(Some(&file), &[]);
    assert_eq!(
        cfg,
        Config {
            thrashing_limit: 40,
            ..Config::low_ram()
        }
    );
    let (cfg, _) = load(Some(&file), &[("ro.config.low_ram", "false")]);
    assert_eq!(
        cfg,
        Config {
            thrashing_limit: 40,
            ..Config::default()
        }
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn wait_for_inactive_file_is_off_by_default_and_reaches_the_policy() {
    use lmkd::policy::Tunables;
    assert!(!Config::default().wait_for_inactive_file);
    assert!(!Tunables::from_config(&Config::default()).wait_for_inactive_file);
    let cfg = Config::from_toml_str("wait_for_inactive_file = true").unwrap();
    assert!(Tunables::from_config(&cfg).wait_for_inactive_file);
    // Ours, so file only.
    let (cfg, _) = load(None, &[("ro.lmk.wait_for_inactive_file", "true")]);
    assert!(!cfg.wait_for_inactive_file);
}

#[test]
fn anticipate_partial_trigger_is_on_by_default_and_reaches_the_policy() {
    use lmkd::policy::Tunables;
    assert!(Config::default().anticipate_partial_trigger);
    assert_eq!(
        Tunables::from_config(&Config::default()).anticipate_partial_ms,
        70
    );
    assert_eq!(
        Tunables::from_config(&Config::low_ram()).anticipate_partial_ms,
        200
    );
    let cfg = Config::from_toml_str("anticipate_partial_trigger = false").unwrap();
    assert_eq!(Tunables::from_config(&cfg).anticipate_partial_ms, 0);
    let cfg = Config::from_toml_str("psi_partial_stall_ms = 90").unwrap();
    assert_eq!(Tunables::from_config(&cfg).anticipate_partial_ms, 90);
    // Ours, so file only.
    let (cfg, _) = load(None, &[("ro.lmk.anticipate_partial_trigger", "false")]);
    assert!(cfg.anticipate_partial_trigger);
}

/// An "ours" millisecond key: its default on every device reaches the
/// policy, 0 turns it off, one past `max` is refused by name, and no
/// property sets it (file only).
fn ours_ms_key(key: &str, default: u32, max: u32, get: fn(&lmkd::policy::Tunables) -> u32) {
    use lmkd::policy::Tunables;
    let of = |c: &Config| get(&Tunables::from_config(c));
    assert_eq!(of(&Config::default()), default, "{key}");
    assert_eq!(of(&Config::low_ram()), default, "{key} (low-RAM)");
    let off = Config::from_toml_str(&format!("{key} = 0")).unwrap();
    assert_eq!(of(&off), 0, "{key}");
    let e = Config::from_toml_str(&format!("{key} = {}", max + 1)).unwrap_err();
    assert!(e.to_string().contains(key), "{e}");
    let (cfg, _) = load(None, &[(&format!("ro.lmk.{key}"), "0")]);
    assert_eq!(of(&cfg), default, "{key} set by a property");
}

#[test]
fn fast_after_kill_ms_is_300_by_default_and_reaches_the_policy() {
    ours_ms_key("fast_after_kill_ms", 300, 1000, |t| t.fast_after_kill_ms);
}

#[test]
fn kill_ahead_ms_is_200_by_default_and_reaches_the_policy() {
    ours_ms_key("kill_ahead_ms", 200, 1000, |t| t.kill_ahead_ms);
}

#[test]
fn direct_reclaim_exit_wait_ms_is_500_by_default_and_reaches_the_policy() {
    ours_ms_key("direct_reclaim_exit_wait_ms", 500, 10_000, |t| {
        t.direct_reclaim_exit_wait_ms
    });
}

#[test]
fn syntax_error_carries_the_line_and_column() {
    let e = Config::from_toml_str("debug = true\nkill_timeout_ms = = 3\n").unwrap_err();
    let ConfigError::Syntax { excerpt, .. } = &e else {
        panic!("{e}");
    };
    let x = excerpt.as_ref().expect("an excerpt");
    assert_eq!(x.text, "kill_timeout_ms = = 3");
    assert_eq!(x.column, 19);
    let msg = e.to_string();
    assert!(msg.starts_with("line 2:19: invalid TOML"), "{msg}");
    assert!(
        msg.contains("\n    kill_timeout_ms = = 3\n                      ^"),
        "{msg}"
    );
    // The file fixture: path, line and the line itself.
    let (_, msg) = file_error("syntax.toml");
    assert!(
        msg.contains("syntax.toml:1:") && msg.contains("kill_timeout_ms = = 3"),
        "{msg}"
    );
}
