#!/usr/bin/env bash
# Builds the static x86_64 musl binaries the VM bench copies into the guest.
#   tests/vm/build.sh [lmkd-workload] [lmkd]     (default: both)
# Output: $CARGO_TARGET_DIR/x86_64-unknown-linux-musl/release/ (default
# CARGO_TARGET_DIR: <repo>/target-vm).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TARGET=x86_64-unknown-linux-musl
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target-vm}
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(lmkd-workload lmkd)
bins=()
for n in "${names[@]}"; do bins+=(--bin "$n"); done
if ! rustup target list --installed 2> /dev/null | grep -qx "$TARGET"; then
    echo "build.sh: rust target $TARGET missing (rustup target add $TARGET)" >&2
    exit 4
fi
echo "build.sh: building static $TARGET ${names[*]}" >&2
cd "$ROOT"
CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld \
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --quiet --release --target "$TARGET" "${bins[@]}"
