//! Links every binary of the package with `src/hot_text.ld`, which gathers
//! the kill path's code into `.text.kill_path` (see `src/residency.rs`).

use std::env;
use std::path::Path;

fn main() {
    println!("cargo::rerun-if-changed=src/hot_text.ld");
    println!("cargo::rerun-if-env-changed=RUSTC_LINKER");
    println!("cargo::rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os != "linux" && os != "android" {
        return;
    }
    let script = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap()).join("src/hot_text.ld");
    // A linker called directly (rust-lld, ld.lld) takes the option as is;
    // a compiler driver (cc, clang: the default, and the NDK's) needs it
    // passed through.
    let linker = env::var("RUSTC_LINKER")
        .ok()
        .or_else(|| linker_in_rustflags(&env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default()))
        .unwrap_or_default();
    let name = Path::new(&linker)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("");
    let direct = name.ends_with("lld") || name == "ld" || name.starts_with("ld.");
    if direct {
        println!("cargo::rustc-link-arg=-T{}", script.display());
    } else {
        println!("cargo::rustc-link-arg=-Wl,-T,{}", script.display());
    }
}

/// The linker a `-C linker=PATH` in RUSTFLAGS names (cargo passes them to
/// build scripts separated by 0x1f), when no target linker is configured.
fn linker_in_rustflags(flags: &str) -> Option<String> {
    let mut it = flags.split('\x1f');
    while let Some(f) = it.next() {
        let opt = match f {
            "-C" | "--codegen" => it.next().unwrap_or(""),
            _ => f.strip_prefix("-C").unwrap_or(""),
        };
        if let Some(l) = opt.strip_prefix("linker=") {
            return Some(l.to_string());
        }
    }
    None
}
