//! Reading what an `lmkctl` run printed.

use std::process::Output;

/// Its stdout, after checking it succeeded (the failure shows both streams).
pub fn ok_text(o: &Output) -> String {
    assert!(
        o.status.success(),
        "lmkctl failed ({:?}): {}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// Its `--json` output.
pub fn ok_json(o: &Output) -> serde_json::Value {
    serde_json::from_str(&ok_text(o)).expect("lmkctl --json printed JSON")
}
