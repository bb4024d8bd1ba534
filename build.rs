//! Links every binary of the package with `src/hot_text.ld`, which gathers
//! the kill path's code into `.text.kill_path` (see `src/residency.rs`).

use std::env;
use std::path::Path;

fn main() {
    println!("cargo::rerun-if-changed=src/hot_text.ld");
    println!("cargo::rerun-if-env-changed=RUSTC_LINKER");
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os != "linux" && os != "android" {
        return;
    }
    let script = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap()).join("src/hot_text.ld");
    // A linker called directly (rust-lld, ld.lld) takes the option as is;
    // a compiler driver (cc, clang: the default, and the NDK's) needs it
    // passed through.
    let linker = env::var("RUSTC_LINKER").unwrap_or_default();
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
