//! The `ladder` scenario in a qemu VM under lmkd-rs: eleven apps at adj
//! 1000..0 allocate until killed; lmkd must take them from the top of the
//! ladder, name a reason for each kill, and never leave work to the kernel
//! OOM killer. Slow (a TCG VM, about a minute), so it only runs when asked:
//! `LMKD_VM_TESTS=1 cargo test --test vm_ladder -- --nocapture`
//! (or `.ci/vm.sh`, which also installs what it needs).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Why the VM test cannot run here, if it cannot.
fn missing_prerequisite() -> Option<String> {
    if std::env::var("LMKD_VM_TESTS").as_deref() != Ok("1") {
        return Some("LMKD_VM_TESTS=1 is not set".into());
    }
    let on_path = |p: &str| {
        std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(p).is_file()))
    };
    for (prog, pkg) in [("qemu-system-x86_64", "qemu-system-x86"), ("cpio", "cpio")] {
        if !on_path(prog) {
            return Some(format!("{prog} not found (apt-get install -y {pkg})"));
        }
    }
    if !Path::new("/bin/busybox").exists() {
        return Some("/bin/busybox not found (apt-get install -y busybox-static)".into());
    }
    let kernel = std::fs::read_dir("/boot").ok().and_then(|rd| {
        rd.flatten().map(|e| e.path()).find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
                && std::fs::File::open(p).is_ok()
        })
    });
    if kernel.is_none() {
        return Some("no readable /boot/vmlinuz-* (apt-get install -y linux-image-amd64)".into());
    }
    None
}

#[test]
fn ladder_in_vm_under_lmkd_rs() {
    if let Some(why) = missing_prerequisite() {
        eprintln!(
            "SKIP vm_ladder: {why}.\n  To run it: install qemu-system-x86, linux-image-amd64, busybox-static, \
             cpio (and the x86_64-unknown-linux-musl target), then\n  \
             LMKD_VM_TESTS=1 cargo test --test vm_ladder -- --nocapture   (or .ci/vm.sh)"
        );
        return;
    }
    let root = root();
    let status = Command::new(root.join("tests/vm/run.sh"))
        .args(["ladder", "lmkd-rs"])
        .env("CARGO_TARGET_DIR", root.join("target-vm"))
        .status()
        .expect("run tests/vm/run.sh");
    let out = root.join("tests/vm/out/ladder-lmkd-rs");
    let result = std::fs::read_to_string(out.join("result.json")).unwrap_or_default();
    let daemon_log = std::fs::read_to_string(out.join("daemon.log")).unwrap_or_default();
    eprintln!("result: {result}");
    assert!(
        !result.is_empty(),
        "the VM produced no result; see {}/console.log",
        out.display()
    );
    // The driver's verdict covers descending order, zero kernel OOM kills and
    // a stats packet with a reason for every kill; check the headline facts
    // again here so a failure message says which one broke.
    assert!(
        result.contains("\"kernel_oom_kills\": 0,"),
        "the kernel OOM killer fired"
    );
    assert!(
        !result.contains("\"daemon_kills\": 0,"),
        "lmkd killed nothing"
    );
    assert!(result.contains("\"pass\": true"), "ladder failed: {result}");
    assert_eq!(status.code(), Some(0), "run.sh exit status");
    // Every kill line in lmkd's log names a reason (PROTOCOL.md wording).
    let kill_lines: Vec<&str> = daemon_log
        .lines()
        .filter(|l| l.contains("Kill '"))
        .collect();
    assert!(!kill_lines.is_empty(), "no kill lines in lmkd's log");
    for l in &kill_lines {
        assert!(l.contains("; reason: "), "kill line without a reason: {l}");
    }
}
