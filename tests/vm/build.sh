#!/usr/bin/env bash
# Builds the static x86_64 binaries the VM bench copies into the guest and
# puts them in $CARGO_TARGET_DIR/vm-bin/ (default CARGO_TARGET_DIR:
# <repo>/target-vm).
#   tests/vm/build.sh [lmkd-workload] [lmkd]     (default: both)
# The target is x86_64-unknown-linux-musl (VM_TARGET overrides). If the musl
# build fails and VM_FALLBACK_GNU is not 0, a static glibc build
# (x86_64-unknown-linux-gnu, crt-static) is used instead, with a warning, so
# a musl-only compile error does not block the bench.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TARGET=${VM_TARGET:-x86_64-unknown-linux-musl}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target-vm}
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(lmkd-workload lmkd)
bins=()
for n in "${names[@]}"; do bins+=(--bin "$n"); done
cd "$ROOT"

build() {
    local target=$1 var
    var=$(echo "$target" | tr 'a-z-' 'A-Z_')
    if ! rustup target list --installed 2> /dev/null | grep -qx "$target"; then
        echo "build.sh: rust target $target missing (rustup target add $target)" >&2
        return 1
    fi
    echo "build.sh: building static $target ${names[*]}" >&2
    # rust-lld links musl without a C toolchain for that target.
    if [[ $target == *musl ]]; then export "CARGO_TARGET_${var}_LINKER=rust-lld"; fi
    env "CARGO_TARGET_${var}_RUSTFLAGS=-C target-feature=+crt-static" \
        cargo build --quiet --release --target "$target" "${bins[@]}"
}

used=$TARGET
if ! build "$TARGET"; then
    [ "${VM_FALLBACK_GNU:-1}" != 0 ] && [ "$TARGET" != x86_64-unknown-linux-gnu ] || exit 4
    echo "build.sh: WARNING: $TARGET build failed; falling back to a static glibc build" >&2
    used=x86_64-unknown-linux-gnu
    build "$used" || exit 4
fi
mkdir -p "$CARGO_TARGET_DIR/vm-bin"
for n in "${names[@]}"; do
    cp "$CARGO_TARGET_DIR/$used/release/$n" "$CARGO_TARGET_DIR/vm-bin/$n"
done
echo "$used" > "$CARGO_TARGET_DIR/vm-bin/TARGET"
