#!/bin/sh
# Install the exporter on the gateway Mac as a root LaunchDaemon, from root-owned paths only.
#
#   sudo sh deploy/launchd/gateway-mac/install.sh PATH/TO/openclaw-tunnel-exporter
#
# A root daemon must never run a binary or read a config that another user can replace: on an Intel Mac
# Homebrew makes /usr/local/bin (and etc, var) the installing user's, so anything there is that user's to swap.
# Everything goes under /opt/openclaw-tunnel-exporter (bin/, etc/, var/), created root-owned, and before
# launchd is asked to run it every path it runs or reads, and each directory above it up to /, is checked:
# owned by root, and not writable by group or others (a root-owned sticky directory like /tmp is allowed: no one
# else can replace what root put there). Any other finding refuses, naming the path, its owner and its mode.
#
# OCE_PREFIX and OCE_DAEMONS move the install (for tests); OCE_NO_LAUNCHCTL=1 skips launchctl.
set -eu

prefix="${OCE_PREFIX:-/opt/openclaw-tunnel-exporter}"
daemons="${OCE_DAEMONS:-/Library/LaunchDaemons}"
label="ai.openclaw.tunnel-exporter.gateway"
binary="${1:-}"
here=$(cd "$(dirname "$0")" && pwd)

die() { echo "install.sh: $*" >&2; exit 1; }
[ -n "$binary" ] && [ -f "$binary" ] || die "usage: install.sh PATH/TO/openclaw-tunnel-exporter"
[ "$(id -u)" = 0 ] || die "run as root (sudo): the daemon runs as root"

# owner uid and octal mode of a path, on macOS (BSD stat) and Linux (GNU stat).
owner_and_mode() {
  if [ "$(uname)" = Darwin ]; then stat -f '%u %Lp' "$1"; else stat -c '%u %a' "$1"; fi
}

# The path and every directory above it: root-owned, not group/other-writable (root's sticky dirs allowed).
check_root_owned() {
  path="$1"
  while :; do
    set -- $(owner_and_mode "$path")
    uid="$1"; mode="$2"
    writable=$(( 0$mode & 022 ))
    sticky=$(( 0$mode & 01000 ))
    if [ "$uid" != 0 ]; then
      die "$path is owned by uid $uid (mode $mode): a root daemon must not run or read what another user can replace; refusing"
    fi
    if [ "$writable" != 0 ] && ! { [ -d "$path" ] && [ "$sticky" != 0 ]; }; then
      die "$path is writable by group or others (mode $mode): a root daemon must not run or read what another user can replace; refusing"
    fi
    [ "$path" = / ] && break
    path=$(dirname "$path")
  done
}

# Before anything is written: what already exists (or the nearest existing directory above it) must be root's,
# so a prefix another user made beforehand is refused rather than taken over (install -d would chown it, and
# whatever that user put inside would stay).
for path in "$prefix" "$prefix/bin" "$prefix/etc" "$prefix/var" "$daemons"; do
  while [ ! -e "$path" ] && [ ! -L "$path" ]; do path=$(dirname "$path"); done
  [ -L "$path" ] && die "$path is a symbolic link: refusing to install through it"
  check_root_owned "$path"
done

install -d -o 0 -g 0 -m 0755 "$prefix" "$prefix/bin" "$prefix/etc" "$prefix/var"
install -o 0 -g 0 -m 0755 "$binary" "$prefix/bin/openclaw-tunnel-exporter"
# An existing config is the operator's: kept.
[ -f "$prefix/etc/gateway.toml" ] || install -o 0 -g 0 -m 0644 "$here/config.toml" "$prefix/etc/gateway.toml"
install -d -o 0 -g 0 -m 0755 "$daemons"
install -o 0 -g 0 -m 0644 "$here/$label.plist" "$daemons/$label.plist"

for path in "$prefix/bin/openclaw-tunnel-exporter" "$prefix/etc/gateway.toml" "$prefix/var" "$daemons/$label.plist"; do
  check_root_owned "$path"
done
echo "install.sh: $prefix/bin/openclaw-tunnel-exporter, $prefix/etc/gateway.toml and $daemons/$label.plist are root-owned"

if [ "${OCE_NO_LAUNCHCTL:-}" != 1 ]; then
  launchctl bootout "system/$label" 2>/dev/null || true
  launchctl bootstrap system "$daemons/$label.plist"
fi
