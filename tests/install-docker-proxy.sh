#!/usr/bin/env bash
# The real docker-proxy for tests/tests/gateway_in_docker.rs, from Debian's docker.io package: downloaded with
# apt-get and unpacked (only /usr/sbin/docker-proxy is kept; no dockerd is installed or run). docker-proxy
# publishes one port to a container address and reports on fd 3, which is all the tests need of Docker.
# Cached in $OCE_DOCKER_PROXY_DIR (default ~/.cache/openclaw-tunnel-exporter/docker-proxy); prints the path.
set -euo pipefail
dir="${OCE_DOCKER_PROXY_DIR:-$HOME/.cache/openclaw-tunnel-exporter/docker-proxy}"
if [ -x "$dir/docker-proxy" ]; then
  echo "$dir/docker-proxy"
  exit 0
fi
mkdir -p "$dir"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
chmod 0777 "$work" # apt-get download runs as _apt where it can, and writes here
(cd "$work" && apt-get download docker.io >/dev/null 2>&1) || {
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  (cd "$work" && apt-get download docker.io >/dev/null)
}
deb="$(ls "$work"/docker.io_*.deb)"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work" ./usr/sbin/docker-proxy
install -m 0755 "$work/usr/sbin/docker-proxy" "$dir/docker-proxy"
echo "install-docker-proxy: $(basename "$deb") -> $dir/docker-proxy" >&2
echo "$dir/docker-proxy"
