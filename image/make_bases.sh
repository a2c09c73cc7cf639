#!/usr/bin/env bash
# The two base images the Dockerfile builds on, made from the registries this machine reaches
# (Debian, npm) instead of Docker Hub; prints their tags as the two build args, one a line:
#   PYTHON_BASE=coding-agent-ci/python:trixie-ARCH   (mmdebstrap trixie: python3 3.13, venv, pip)
#   NODE_BASE=coding-agent-ci/node:20-ARCH           (node-linux-ARCH@20 and npm@10 from npm)
#   image/make_bases.sh [amd64|arm64]
# A base already loaded with that tag and architecture is kept (delete it to remake it).
set -euo pipefail
arch=${1:-amd64}
case $arch in amd64 | arm64) ;; *) echo "unknown ARCH '$arch': use amd64 or arm64" >&2; exit 2 ;; esac
here=$(cd "$(dirname "$0")" && pwd)
python_tag=coding-agent-ci/python:trixie-$arch
node_tag=coding-agent-ci/node:20-$arch
work=$(mktemp -d /var/tmp/coding-agent-bases.XXXXXX)
trap 'rm -rf "$work"' EXIT

loaded() { [ "$(docker image inspect -f '{{.Architecture}}' "$1" 2>/dev/null)" = "$arch" ]; }
# PIP_IGNORE_INSTALLED: python:3.12-slim's site-packages holds pip alone, while Debian's python3-pip
# brings packaging and others that pip cannot uninstall (no RECORD file); the Dockerfile installs the
# whole lock with --no-deps, so pip must install over them (into /usr/local, first on sys.path), as on
# the real base. A Python base made before this setting is made again.
python_loaded() {
  loaded "$python_tag" && docker image inspect -f '{{join .Config.Env " "}}' "$python_tag" | grep -qw PIP_IGNORE_INSTALLED=1
}
elapsed() { echo "$(($(date +%s) - $1)) s"; }

if ! python_loaded; then
  start=$(date +%s)
  echo "making $python_tag with mmdebstrap (Debian trixie, $arch)" >&2
  # The machine's TLS may be intercepted by a local CA: the image must trust it too (pip, npm, git).
  mmdebstrap --quiet --variant=apt --architectures="$arch" \
    --include=ca-certificates,python3,python3-venv,python3-pip,python-is-python3 \
    --customize-hook='mkdir -p "$1/usr/local/share/ca-certificates"' \
    --customize-hook='cp /usr/local/share/ca-certificates/*.crt "$1/usr/local/share/ca-certificates/" 2>/dev/null || true' \
    --customize-hook='chroot "$1" update-ca-certificates >/dev/null 2>&1' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    trixie "$work/python.tar" >&2
  # Debian's pip refuses system-wide installs (PEP 668); python:3.12-slim's pip does not.
  python3 "$here/docker_archive.py" "$work/python.tar" "$python_tag" --arch "$arch" \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
    --env PIP_BREAK_SYSTEM_PACKAGES=1 --env PIP_IGNORE_INSTALLED=1 --cmd python3 -o "$work/python-image.tar" >/dev/null
  docker load -q -i "$work/python-image.tar" >&2
  echo "made $python_tag in $(elapsed "$start")" >&2
fi

if ! loaded "$node_tag"; then
  start=$(date +%s)
  node_pkg=node-linux-$([ "$arch" = amd64 ] && echo x64 || echo arm64)@20
  echo "making $node_tag from the npm registry ($node_pkg, npm@10)" >&2
  (cd "$work" && npm pack --silent "$node_pkg" npm@10 >/dev/null)
  root=$work/node-root
  mkdir -p "$root/usr/local/bin" "$root/usr/local/lib/node_modules/npm" "$work/node"
  tar -xzf "$work"/node-linux-*.tgz -C "$work/node"
  install -m 0755 "$work/node/package/bin/node" "$root/usr/local/bin/node"
  tar -xzf "$work"/npm-*.tgz -C "$root/usr/local/lib/node_modules/npm" --strip-components=1
  # Where node:20 has them; the Dockerfile copies exactly these two paths.
  tar --numeric-owner --owner=0 --group=0 -C "$root" -cf "$work/node.tar" .
  python3 "$here/docker_archive.py" "$work/node.tar" "$node_tag" --arch "$arch" \
    --env PATH=/usr/local/bin:/usr/bin:/bin --cmd /usr/local/bin/node -o "$work/node-image.tar" >/dev/null
  docker load -q -i "$work/node-image.tar" >&2
  echo "made $node_tag in $(elapsed "$start")" >&2
fi

echo "PYTHON_BASE=$python_tag"
echo "NODE_BASE=$node_tag"
