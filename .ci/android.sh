#!/usr/bin/env bash
# CI step for the Android side of lmkd-rs (run from .ci/run, or alone):
#   - cargo check (all targets) and clippy -D warnings for aarch64-linux-android
#     and x86_64-linux-android; no NDK needed, nothing is linked;
#   - the AIDL files compile with the aidl compiler (Debian package "aidl");
#   - a static aarch64-unknown-linux-musl build whose lib unit tests and
#     `lmkd --version` run under qemu-aarch64-static.
# Every step prints PASS:, SKIP: or FAIL:. A missing Rust target or tool is a
# SKIP (this machine cannot judge); a failing build, lint or test is a FAIL
# and makes the script exit 1.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# A target dir of its own: cross targets and RUSTFLAGS changes must not
# invalidate the host build other CI steps use.
export CARGO_TARGET_DIR=${ANDROID_CI_TARGET_DIR:-$repo/target-android}
logs=$CARGO_TARGET_DIR/ci-logs
mkdir -p "$logs"

android_targets=(aarch64-linux-android x86_64-linux-android)
musl=aarch64-unknown-linux-musl
musl_flags="-C linker=rust-lld -C target-feature=+crt-static"

results=()
failed=0
pass() { results+=("PASS: $*"); echo "PASS: $*"; }
skip() { results+=("SKIP: $*"); echo "SKIP: $*"; }
fail() { results+=("FAIL: $*"); echo "FAIL: $*"; failed=1; }

# Runs a command with its output in a log file; on failure shows the tail.
# Usage: step NAME LOGFILE CMD...
step() {
    local name=$1 log=$logs/$2
    shift 2
    echo "--- $name: $*"
    if "$@" >"$log" 2>&1; then
        pass "$name"
    else
        tail -n 40 "$log"
        fail "$name (full log: $log)"
    fi
}

# --- Rust targets -------------------------------------------------------
have_target() {
    rustup target list --installed 2>/dev/null | grep -qx "$1"
}
declare -A available=()
for t in "${android_targets[@]}" "$musl"; do
    if ! command -v rustup >/dev/null; then
        skip "rust target $t: rustup is not installed, cannot add targets"
        continue
    fi
    if have_target "$t" || timeout 600 rustup target add "$t" >"$logs/rustup-$t.log" 2>&1; then
        available[$t]=1
    else
        skip "rust target $t could not be fetched ($(tail -n 1 "$logs/rustup-$t.log")); its steps are skipped"
    fi
done

# --- cargo check / clippy for Android -------------------------------------
have_clippy=0
cargo clippy --version >/dev/null 2>&1 && have_clippy=1
for t in "${android_targets[@]}"; do
    [[ -n ${available[$t]:-} ]] || continue
    step "cargo check --target $t --all-targets" "check-$t.log" \
        cargo check --target "$t" --all-targets
    if [[ $have_clippy -eq 1 ]]; then
        step "cargo clippy --target $t -D warnings" "clippy-$t.log" \
            cargo clippy --target "$t" -- -D warnings
    else
        skip "cargo clippy --target $t: clippy is not installed (rustup component add clippy)"
    fi
done

# --- AIDL ---------------------------------------------------------------
if ! command -v aidl >/dev/null && [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "--- installing the aidl compiler (apt-get install aidl)"
    apt-get install -y aidl >"$logs/apt-aidl.log" 2>&1 || true
fi
if command -v aidl >/dev/null; then
    aidl_tmp=$(mktemp -d)
    trap 'rm -rf "$aidl_tmp"' EXIT
    mapfile -t aidl_files < <(find aidl -name '*.aidl' | sort)
    # shellcheck disable=SC2317 # called through step
    validate_aidl() {
        # --structured: the interface is meant to be defined only in AIDL,
        # which also makes the compiler refuse unstructured parcelables.
        aidl --lang=java --structured -I aidl -o "$aidl_tmp/java" "${aidl_files[@]}" &&
            aidl --lang=cpp --structured -I aidl -o "$aidl_tmp/cpp" -h "$aidl_tmp/h" "${aidl_files[@]}" || return 1
        local java
        java=$(find "$aidl_tmp/java" -name '*.java' | wc -l)
        if [[ $java -ne ${#aidl_files[@]} ]]; then
            echo "expected ${#aidl_files[@]} generated Java files, found $java"
            return 1
        fi
        # Make sure a PASS means something: this compiler must reject a
        # broken file, or it is not checking anything.
        mkdir -p "$aidl_tmp/bad/android/lmkd"
        printf 'package android.lmkd;\ninterface IBad { const int X = ; }\n' >"$aidl_tmp/bad/android/lmkd/IBad.aidl"
        if aidl --lang=java -I "$aidl_tmp/bad" -o "$aidl_tmp/bad-out" "$aidl_tmp/bad/android/lmkd/IBad.aidl" 2>/dev/null; then
            echo "aidl accepted a syntax error; it cannot validate anything"
            return 1
        fi
    }
    if [[ ${#aidl_files[@]} -eq 0 ]]; then
        fail "aidl validation: no .aidl files under aidl/"
    else
        step "aidl validation of ${#aidl_files[@]} files (java and cpp)" aidl.log validate_aidl
    fi
else
    skip "aidl validation: the aidl compiler is not installed (Debian: apt-get install aidl)"
fi

# --- static aarch64 musl build under qemu -----------------------------------
if [[ -n ${available[$musl]:-} ]]; then
    musl_bin=$CARGO_TARGET_DIR/$musl/release/lmkd
    step "static $musl build" "build-$musl.log" \
        env RUSTFLAGS="$musl_flags" cargo build --release --target "$musl" --bin lmkd
    if ! command -v qemu-aarch64-static >/dev/null && [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "--- installing qemu-user-static"
        apt-get install -y qemu-user-static >"$logs/apt-qemu.log" 2>&1 || true
    fi
    if command -v qemu-aarch64-static >/dev/null; then
        step "lib unit tests on $musl under qemu-aarch64-static" "test-$musl.log" \
            env RUSTFLAGS="$musl_flags" \
            CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER=qemu-aarch64-static \
            cargo test --lib --target "$musl"
        # shellcheck disable=SC2317 # called through step
        check_version() {
            [[ -x $musl_bin ]] || { echo "$musl_bin was not built"; return 1; }
            local out
            out=$(qemu-aarch64-static "$musl_bin" --version) || return 1
            echo "$out"
            # The version line must name the program, not be empty.
            [[ $out == *lmkd* ]] || { echo "lmkd --version printed no version line"; return 1; }
        }
        step "lmkd --version on $musl under qemu-aarch64-static" "version-$musl.log" check_version
        [[ -f $logs/version-$musl.log ]] && sed 's/^/    /' "$logs/version-$musl.log"
    else
        skip "running $musl binaries: qemu-aarch64-static is not installed (Debian: apt-get install qemu-user-static)"
    fi
fi

echo "=== .ci/android.sh summary"
printf '%s\n' "${results[@]}"
exit "$failed"
