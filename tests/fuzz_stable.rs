//! The fuzz targets of tests/fuzz/ run on seeded pseudo-random input in
//! every `cargo test`: fixed seeds, so a failure reproduces, and a few
//! seconds in all. Long runs go through `cargo fuzz` (nightly): see
//! tests/fuzz/Cargo.toml.

#[path = "fuzz/targets.rs"]
mod targets;

mod common;

use common::rng::Rng;

/// Text-ish seeds per target, mutated byte-wise: pure random bytes rarely
/// get past the first check of a parser.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let fixture = |d: &str, f: &str| {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/proc")
            .join(d)
            .join(f);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    let dirs = ["host", "vm", "small", "degraded", "oldkernel"];
    match target {
        "proc_meminfo" => dirs.iter().map(|d| fixture(d, "meminfo")).collect(),
        "proc_vmstat" => dirs.iter().map(|d| fixture(d, "vmstat")).collect(),
        "proc_zoneinfo" => dirs.iter().map(|d| fixture(d, "zoneinfo")).collect(),
        "proc_psi" => dirs.iter().map(|d| fixture(d, "pressure_memory")).collect(),
        "proc_stat" => vec![
            b"1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 777 0 3 0 10 5 0 0 20 0 1 0 4200 123 45\n"
                .to_vec(),
        ],
        "config_toml" => vec![
            b"low = 1001\nmedium = 800\ncritical = 0\nkill_timeout_ms = 100\n\
              thrashing_limit = 30\nswap_util_max = 90\nallowed_uids = [1000]\n"
                .to_vec(),
            lmkd::config::Config::default().to_toml().into_bytes(),
        ],
        "props" => vec![b"\x01true\n\x0550\n\xff1\n\x8a100\n".to_vec()],
        "proto_decode" => vec![
            [0, 0, 0, 1, 0, 0, 0, 42, 0, 0, 3, 232, 0, 0, 3, 132].to_vec(),
            [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0].to_vec(),
        ],
        _ => vec![Vec::new()],
    }
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..=rng.below(8) {
        let at = rng.below(v.len() as u64 + 1) as usize;
        match rng.below(5) {
            0 if at < v.len() => v[at] = rng.next() as u8,
            1 if at < v.len() => {
                v.remove(at);
            }
            2 => v.insert(at, rng.next() as u8),
            3 => v.truncate(at),
            _ => {
                let n = rng.below(16) as usize;
                v.extend((0..n).map(|_| rng.next() as u8));
            }
        }
    }
    v
}

fn run(name: &str, body: fn(&[u8]), cases: u32) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
    let seeds = seeds(name);
    for i in 0..cases {
        // The policy reads its tunables and a run of snapshots off the
        // input: it needs a few kB to get far.
        let len = if name == "policy" { 4096 } else { 256 };
        let input = if i % 4 == 0 || name == "policy" {
            (0..rng.below(len)).map(|_| rng.next() as u8).collect()
        } else {
            mutate(&mut rng, &seeds[i as usize % seeds.len()])
        };
        let got = std::panic::catch_unwind(|| body(&input));
        assert!(got.is_ok(), "{name}: case {i} failed on input {input:?}");
    }
}

macro_rules! stable {
    ($($name:ident: $cases:expr),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run(stringify!($name), targets::$name, $cases);
            }
        )*
        const COVERED: &[&str] = &[$(stringify!($name)),*];
    };
}

stable! {
    proto_decode: 200_000,
    config_toml: 3_000,
    props: 3_000,
    proc_meminfo: 3_000,
    proc_vmstat: 3_000,
    proc_zoneinfo: 3_000,
    proc_psi: 20_000,
    proc_stat: 50_000,
    policy: 5_000,
}

/// Inputs the fuzzers found; each once broke its target.
#[test]
fn found_by_fuzzing() {
    // A start time near i64::MAX overflowed its conversion to ns.
    targets::proc_stat(b"1 (x) S 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 9223372036854775807\n");
}

/// Every target in targets.rs has a stable run above.
#[test]
fn every_target_has_a_stable_run() {
    let all: Vec<&str> = targets::ALL.iter().map(|(name, _)| *name).collect();
    assert_eq!(all, COVERED);
    let listed = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/Cargo.toml"),
    )
    .unwrap();
    for name in all {
        assert!(
            listed.contains(&format!("name = \"{name}\"")),
            "{name} is not a cargo-fuzz target"
        );
    }
}
