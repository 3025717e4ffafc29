#!/usr/bin/env bash
# Installs what the end-to-end tests run for real, from Debian's packages, when it is missing:
# sshd and ssh (openssh-server, openssh-client), autossh, Prometheus and promtool (prometheus), Alertmanager
# (prometheus-alertmanager), VictoriaMetrics (victoria-metrics; remote-write receiver of the outage test),
# setpriv (util-linux), ip (iproute2), headless Chromium for the status page test (chromium), for the
# TLS/basic-auth test: openssl, curl, htpasswd (apache2-utils), and stunnel (stunnel4): the TLS front of the
# routes test, a CA-signed wss:// in front of the gateway's loopback as Tailscale Serve is; nft (nftables): the
# DNAT-only publish of the gateway-in-Docker test (tests/install-docker-proxy.sh adds docker-proxy). Pass --bench to add the
# benchmark peers and load tools for bench/: blackbox_exporter (prometheus-blackbox-exporter), HAProxy (haproxy), wrk.
# Pass --cross for what tests/install-cross.sh needs from Debian: wine, file, xmllint, ruby.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have sshd || need+=(openssh-server)
have ssh || need+=(openssh-client)
have ssh-keygen || need+=(openssh-client)
have autossh || need+=(autossh)
have prometheus || need+=(prometheus)
have promtool || need+=(prometheus)
have prometheus-alertmanager || need+=(prometheus-alertmanager)
have amtool || need+=(prometheus-alertmanager)
have victoria-metrics || need+=(victoria-metrics)
have systemd-analyze || need+=(systemd)
have systemd-socket-activate || need+=(systemd)
have python3 || need+=(python3)
have setpriv || need+=(util-linux)
have ip || need+=(iproute2)
have chromium || need+=(chromium)
have openssl || need+=(openssl)
have curl || need+=(curl)
have htpasswd || need+=(apache2-utils)
have stunnel4 || need+=(stunnel4)
# nft: the DNAT-only publish of tests/tests/gateway_in_docker.rs (a NAT rule in a test network namespace).
have nft || need+=(nftables)
if [ "${1:-}" = "--bench" ]; then
  have prometheus-blackbox-exporter || need+=(prometheus-blackbox-exporter)
  have haproxy || need+=(haproxy)
  have wrk || need+=(wrk)
fi
if [ "${1:-}" = "--cross" ]; then
  # tests/install-cross.sh: wine runs the Windows binary, `file` tells binary formats apart, xmllint reads the
  # Task Scheduler files, ruby runs the Homebrew formula's test block.
  have wine || need+=(wine wine64)
  [ -x /usr/lib/wine/wine64 ] || need+=(wine64)
  have file || need+=(file)
  have xmllint || need+=(libxml2-utils)
  have ruby || need+=(ruby)
fi
[ ${#need[@]} -eq 0 ] && exit 0

mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
echo "install-deps: installing ${need[*]}" >&2
sudo=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${need[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# Packages that ship services must not try to start them here (no init system in CI containers).
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
