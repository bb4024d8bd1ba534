#!/usr/bin/env bash
# Cross-builds lmkd, lmkctl and lmkd-workload for a device or emulator.
#
#   cross/build.sh TARGET
#
# TARGET:
#   aarch64-linux-android     phones and arm64 emulators (needs the NDK)
#   x86_64-linux-android      the x86_64 emulator (needs the NDK)
#   armv7-linux-androideabi   32-bit arm devices (needs the NDK)
#   musl-aarch64              static aarch64 binary, no NDK (logs to stderr)
#   musl-x86_64               static x86_64 binary, no NDK (logs to stderr)
#
# Environment:
#   ANDROID_NDK_HOME   NDK root (r23 or newer: it has the llvm toolchain layout)
#   ANDROID_API        minimum API level of the clang wrapper, default 30
#   CARGO_TARGET_DIR   as for cargo; binaries land in $CARGO_TARGET_DIR/<triple>/release
#   CARGO_FLAGS        extra flags for cargo build (e.g. "--locked")
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")

die() {
    echo "cross/build.sh: $*" >&2
    exit 1
}

usage() {
    # The header comment is the help text.
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2
    exit 2
}

[[ $# -eq 1 ]] || usage
target=$1
api=${ANDROID_API:-30}
[[ $api =~ ^[0-9]+$ ]] || die "ANDROID_API must be a number, got '$api'"

# clang_prefix: the NDK wrapper's name differs from the Rust triple on armv7.
case $target in
    aarch64-linux-android) triple=$target clang_prefix=aarch64-linux-android ;;
    x86_64-linux-android) triple=$target clang_prefix=x86_64-linux-android ;;
    armv7-linux-androideabi) triple=$target clang_prefix=armv7a-linux-androideabi ;;
    musl-aarch64) triple=aarch64-unknown-linux-musl clang_prefix= ;;
    musl-x86_64) triple=x86_64-unknown-linux-musl clang_prefix= ;;
    -h | --help) usage ;;
    *) die "unknown target '$target' (one of: aarch64-linux-android x86_64-linux-android armv7-linux-androideabi musl-aarch64 musl-x86_64)" ;;
esac

command -v cargo >/dev/null || die "cargo not found in PATH; install Rust from https://rustup.rs"

missing=()
if command -v rustup >/dev/null; then
    if ! rustup target list --installed | grep -qx "$triple"; then
        missing+=("Rust target $triple: run 'rustup target add $triple'")
    fi
else
    echo "cross/build.sh: rustup not found; assuming the toolchain already has $triple" >&2
fi

# Cargo's own config cannot expand environment variables inside a linker
# path, so a checked-in .cargo/config.toml could only hold one machine's NDK
# location. The linker is passed through cargo's environment overrides
# instead (CARGO_TARGET_<TRIPLE>_LINKER); cross/cargo-config.toml shows the
# same settings as a file for those who prefer to fill in their own path.
triple_env=$(echo "$triple" | tr 'a-z-' 'A-Z_')

if [[ -n $clang_prefix ]]; then
    if [[ -z ${ANDROID_NDK_HOME:-} ]]; then
        missing+=("ANDROID_NDK_HOME is not set: install the NDK (Android Studio SDK Manager, or https://developer.android.com/ndk/downloads) and export ANDROID_NDK_HOME=/path/to/android-ndk-rXX")
    elif [[ ! -d $ANDROID_NDK_HOME ]]; then
        missing+=("ANDROID_NDK_HOME=$ANDROID_NDK_HOME is not a directory")
    else
        bin=$ANDROID_NDK_HOME/toolchains/llvm/prebuilt/linux-x86_64/bin
        linker=$bin/${clang_prefix}${api}-clang
        if [[ ! -d $bin ]]; then
            missing+=("$bin does not exist: ANDROID_NDK_HOME must point at an NDK r23+ root (the folder holding toolchains/)")
        elif [[ ! -x $linker ]]; then
            have=$(find "$bin" -maxdepth 1 -name "${clang_prefix}[0-9]*-clang" -printf '%f\n' 2>/dev/null |
                sed "s/^${clang_prefix}//; s/-clang\$//" | sort -n | tr '\n' ' ')
            missing+=("NDK linker $linker not found; API levels this NDK has for $clang_prefix: ${have:-none}(set ANDROID_API)")
        fi
    fi
fi

if [[ ${#missing[@]} -gt 0 ]]; then
    echo "cross/build.sh: cannot build for $target; missing:" >&2
    printf '  - %s\n' "${missing[@]}" >&2
    exit 1
fi

cd "$repo"
# shellcheck disable=SC2206 # CARGO_FLAGS is a list of words on purpose
extra=(${CARGO_FLAGS:-})
if [[ -n $clang_prefix ]]; then
    export "CARGO_TARGET_${triple_env}_LINKER=$linker"
    # Build scripts that compile C (cc-rs) need the same compiler and archiver.
    export "CC_${triple//-/_}=$linker"
    export "AR_${triple//-/_}=$bin/llvm-ar"
    echo "cross/build.sh: $triple with $linker"
else
    # Rust's musl targets ship their own libc and start files; rust-lld
    # links them without any cross toolchain, and crt-static makes a
    # binary that runs on any kernel of that architecture, Android included.
    export RUSTFLAGS="${RUSTFLAGS:-} -C linker=rust-lld -C target-feature=+crt-static"
    echo "cross/build.sh: $triple, static, linked by rust-lld"
fi

cargo build --release --target "$triple" --bin lmkd --bin lmkctl --bin lmkd-workload "${extra[@]}"

out=${CARGO_TARGET_DIR:-$repo/target}/$triple/release
echo "cross/build.sh: built"
ls -l "$out/lmkd" "$out/lmkd-workload"
echo "cross/build.sh: next: cross/deploy.sh $target"
