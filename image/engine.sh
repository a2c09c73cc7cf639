#!/usr/bin/env bash
# Make a Docker engine answer on this machine for the image check (make test-image).
#   image/engine.sh [amd64|arm64]
# Installs from Debian what is missing (docker.io and its runtime, mmdebstrap and npm for the bases; for
# arm64 also qemu-user-static and binfmt-support, registered with the kernel), then starts dockerd
# in the background when no engine answers and waits for `docker info`.
# Exit 0: an engine answers. Exit 3: it cannot here; the last line of stderr says why, in one line.
set -euo pipefail
arch=${1:-amd64}
case $arch in amd64 | arm64) ;; *) echo "unknown ARCH '$arch': use amd64 or arm64" >&2; exit 2 ;; esac
cant() { echo "$*" >&2; exit 3; }

[ "$(id -u)" = 0 ] || cant "not root: the image check installs packages, starts dockerd and runs mmdebstrap (run make test-image as root)"

need=()
command -v dockerd >/dev/null || need+=(docker.io containerd runc)
command -v iptables >/dev/null || need+=(iptables)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v npm >/dev/null || need+=(npm)  # only to fetch node and npm for the Node base
if [ "$arch" = arm64 ]; then
  command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
  command -v update-binfmts >/dev/null || need+=(binfmt-support)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing from Debian: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${need[@]}" >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "${need[@]}" >/dev/null; } ||
    cant "apt-get could not install ${need[*]}: check the Debian mirror in /etc/apt/sources.list.d"
fi

if [ "$arch" = arm64 ]; then
  # The kernel runs arm64 binaries (debootstrap's, and every RUN of the build) through qemu.
  [ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc ||
    cant "cannot mount binfmt_misc: arm64 emulation needs a kernel that allows it (a privileged host)"
  update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true  # 'already enabled' is an error to it
  grep -q enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null ||
    cant "qemu-aarch64 is not registered with binfmt_misc: try update-binfmts --enable qemu-aarch64"
fi

docker info >/dev/null 2>&1 && exit 0
pgrep -x dockerd >/dev/null || {
  echo "starting dockerd in the background (log: /var/log/dockerd.log)" >&2
  setsid nohup dockerd >>/var/log/dockerd.log 2>&1 </dev/null &
}
for _ in $(seq 1 120); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 0.25
done
cant "dockerd did not answer within 30 s: see the end of /var/log/dockerd.log"
