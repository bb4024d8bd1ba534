//! Configuration loading: layering, low-RAM defaults, property leniency,
//! file strictness with errors that name the key.

use std::path::{Path, PathBuf};

use lmkd::config::{check_config_file, Config, ConfigError};
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
    assert!(low.per_app_memcg);
    // Everything else is the normal default.
    let normalised = Config {
        psi_partial_stall_ms: 70,
        thrashing_limit: 100,
        thrashing_limit_decay: 10,
        per_app_memcg: false,
        ..low
    };
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
            // Out of range: the default stays.
            ("ro.lmk.swap_util_max", "150"),
            // Not a boolean.
            ("ro.lmk.debug", "maybe"),
        ],
    );
    assert_eq!(cfg.kill_timeout_ms, 300);
    assert_eq!(cfg.swap_util_max, 100);
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
    let w = find("ro.lmk.swap_util_max");
    assert!(w.contains("150") && w.contains("between 0 and 100"), "{w}");
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
        msg.ends_with("kill_timeout_ms = 0: must be between 1 and 60000"),
        "{msg}"
    );

    for (text, key, needle) in [
        ("swap_util_max = 101", "swap_util_max", "between 0 and 100"),
        (
            "psi_partial_stall_ms = 1001",
            "psi_partial_stall_ms",
            "between 1 and 1000",
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
            "between 1",
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
        socket_path: PathBuf::from("/tmp/a \"quoted\" path.sock"),
        allowed_uids: vec![0, 1000, 1066],
        ..Config::low_ram()
    };
    assert_eq!(Config::from_toml_str(&cfg.to_toml()).unwrap(), cfg);

    // An implicit critical limit comes back explicit, resolved.
    cfg.thrashing_limit_critical = None;
    let text = cfg.to_toml();
    assert!(text.contains("thrashing_limit_critical = 90\n"), "{text}");
    let back = Config::from_toml_str(&text).unwrap();
    assert_eq!(
        Config {
            thrashing_limit_critical: None,
            ..back
        },
        cfg
    );

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
        max_procs: 100,
        socket_path: "/tmp/x".into(),
        psi_path: "/sys/fs/cgroup/a/memory.pressure".into(),
        proc_root: "/tmp/proc".into(),
        ..tuned
    };
    assert_eq!(
        old.restart_only_changes(&moved),
        vec!["max_procs", "socket_path", "psi_path", "proc_root"]
    );
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
