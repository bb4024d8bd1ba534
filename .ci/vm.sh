#!/usr/bin/env bash
# CI entry for the VM bench: installs what the qemu ladder test needs (best
# effort), then runs it. Prints SKIP and exits 0 when the machine cannot run
# it (no root/apt to install packages, no kernel image, no musl target).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

skip() {
    echo "SKIP vm: $*"
    exit 0
}

pkgs=(qemu-system-x86 linux-image-amd64 busybox-static cpio earlyoom strace)
missing=()
for p in "${pkgs[@]}"; do
    dpkg -s "$p" > /dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
        echo "vm: installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq || echo "vm: apt-get update failed, trying the install anyway"
        apt-get install -y -qq "${missing[@]}" || skip "could not install ${missing[*]}"
    else
        skip "packages missing (${missing[*]}) and no root/apt-get to install them"
    fi
fi
if ! rustup target list --installed 2> /dev/null | grep -qx x86_64-unknown-linux-musl; then
    rustup target add x86_64-unknown-linux-musl || skip "cannot add the x86_64-unknown-linux-musl target"
fi
ls /boot/vmlinuz-* > /dev/null 2>&1 || skip "no kernel image in /boot"

LMKD_VM_TESTS=1 cargo test --test vm_ladder -- --nocapture
