#!/usr/bin/env bash
# An arm64 Debian bookworm userland under qemu-user, for running the agent as a real aarch64
# process on an x86 host (`make test-arm`). Needs root. Its traps: binfmt_misc may need
# mounting; onnxruntime segfaults on the host's x86 /proc/cpuinfo (a fake arm64 one is bound
# over it); QEMU_CPU=max makes onnxruntime ~10x slower (cortex-a72 is used); the host's PIP_*
# variables break pip in the chroot (a clean environment is used); and a rootfs must never be
# deleted while /dev is bind-mounted into it (everything is unmounted in a trap).
#
#   rootfs.sh build CACHE        host tools, binfmt_misc, CACHE/rootfs (reused once complete)
#   rootfs.sh with CACHE CMD...  mount, run CMD on the host, unmount (also on failure or Ctrl-C)
#   rootfs.sh run CACHE CMD...   run CMD inside the chroot, in a clean environment
#   rootfs.sh mount|unmount CACHE
set -euo pipefail

SUITE=bookworm
INCLUDE=python3,python3-venv,python3-pip,ca-certificates
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
# Inside the chroot, not the rootfs's own bundle: the host's may carry a proxy's CA.
CHROOT_CA=/etc/ssl/host-ca-certificates.crt

die() { echo "rootfs.sh: $*" >&2; exit 1; }
step() { echo "== arm64: $*"; }

[ $# -ge 2 ] || die "usage: rootfs.sh build|with|run|mount|unmount CACHE [CMD...]"
action=$1
cache=$(realpath -m "$2")
shift 2
rootfs=$cache/rootfs
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, mount, chroot)"

# Mount points in mount order; unmounted in reverse.
MOUNTS=(proc sys dev dev/pts proc/cpuinfo)

is_mounted() { findmnt --mountpoint "$1" >/dev/null 2>&1; }

leftovers() { findmnt -rn -o TARGET | grep -F "$rootfs/" || true; }

host_tools() {
    local missing=()
    command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
    command -v update-binfmts >/dev/null || missing+=(binfmt-support)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    if [ ${#missing[@]} -gt 0 ]; then
        step "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

binfmt() {
    local fs=/proc/sys/fs/binfmt_misc
    [ -e $fs/register ] || mount -t binfmt_misc binfmt_misc $fs ||
        die "cannot mount binfmt_misc (a container without it cannot run aarch64 binaries)"
    [ -e $fs/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
    grep -q '^enabled' $fs/qemu-aarch64 || die "binfmt qemu-aarch64 is registered but disabled"
    # F (fix binary): the kernel keeps the interpreter open, so the rootfs needs no qemu.
    grep -q '^flags:.*F' $fs/qemu-aarch64 || die "binfmt qemu-aarch64 lacks the F flag"
}

# On a Debian host, the mirror its apt already uses (known to be reachable from here);
# elsewhere (Ubuntu's archive has no bookworm) Debian's own.
mirror() {
    local uri=""
    grep -q '^ID=debian' /etc/os-release 2>/dev/null && uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
              /etc/apt/sources.list.d/*.list 2>/dev/null |
          awk '/^URIs:/ {print $2} /^deb / {print ($2 ~ /^\[/ ? $4 : $3)}' |
          grep -v -- '-security' | head -n 1)
    echo "${uri:-http://deb.debian.org/debian}"
}

build() {
    host_tools
    binfmt
    if [ -e "$cache/rootfs.done" ]; then
        step "reusing $rootfs"
        return
    fi
    [ -z "$(leftovers)" ] || die "$rootfs is incomplete and still has mounts: run 'rootfs.sh unmount $cache'"
    rm -rf "$rootfs"  # an interrupted debootstrap: start again
    mkdir -p "$cache"
    step "debootstrap arm64 $SUITE into $rootfs (about 5 minutes)"
    debootstrap --arch=arm64 --variant=minbase --include=$INCLUDE $SUITE "$rootfs" "$(mirror)" \
        > "$cache/debootstrap.log" 2>&1 || { tail -n 20 "$cache/debootstrap.log"; die "debootstrap failed (log: $cache/debootstrap.log)"; }
    echo "$SUITE $INCLUDE" > "$cache/rootfs.done"
}

# qemu 7.2 shows the host's x86 /proc/cpuinfo, and onnxruntime segfaults reading it.
fake_cpuinfo() {
    local core
    for core in 0 1; do
        printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' $core
        printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n'
        printf 'CPU part\t: 0xd08\nCPU revision\t: 3\n\n'
    done
    printf 'Model\t\t: Cortex-A72 under qemu-user (fake cpuinfo)\n'
}

do_mount() {
    [ -e "$cache/rootfs.done" ] || die "no complete rootfs in $cache: run 'rootfs.sh build $cache'"
    fake_cpuinfo > "$cache/cpuinfo"
    cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
    cp "$CA_BUNDLE" "$rootfs$CHROOT_CA"
    is_mounted "$rootfs/proc" || mount -t proc proc "$rootfs/proc"
    is_mounted "$rootfs/sys" || mount -t sysfs sysfs "$rootfs/sys"
    is_mounted "$rootfs/dev" || mount --bind /dev "$rootfs/dev"
    is_mounted "$rootfs/dev/pts" || mount --bind /dev/pts "$rootfs/dev/pts"
    is_mounted "$rootfs/proc/cpuinfo" || mount --bind "$cache/cpuinfo" "$rootfs/proc/cpuinfo"
}

do_unmount() {
    local i target
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        target=$rootfs/${MOUNTS[i]}
        while is_mounted "$target"; do  # a path may carry stacked mounts
            umount "$target" 2>/dev/null || umount --lazy "$target"
        done
    done
    local left
    left=$(leftovers)
    [ -z "$left" ] || die "mounts left under $rootfs: $left"
}

run() {
    exec chroot "$rootfs" /usr/bin/env -i HOME=/root LANG=C.UTF-8 QEMU_CPU=cortex-a72 \
        PATH=/opt/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin PIP_CERT=$CHROOT_CA \
        PIP_DISABLE_PIP_VERSION_CHECK=1 "$@"
}

with() {
    exec 9>"$cache/lock"
    flock -n 9 || die "$cache is in use by another 'rootfs.sh with'"
    # On any exit (CMD failed, Ctrl-C, SIGTERM) the mounts go; the exit status stays CMD's.
    trap 'do_unmount && step "unmounted; nothing left under $rootfs"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    do_mount
    step "mounted proc, sys, dev, dev/pts and a fake cpuinfo in $rootfs"
    "$@"
}

case $action in
    build) build ;;
    with) with "$@" ;;
    run) run "$@" ;;
    mount) do_mount ;;
    unmount) do_unmount ;;
    *) die "unknown action $action (build|with|run|mount|unmount)" ;;
esac
