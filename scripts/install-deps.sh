#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs what proctap needs to build, run and test on Debian 12 (as root): Debian packages that are
# missing, then the npm dependencies. Safe to run again: does nothing when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  clang llvm bpftool libbpf-dev libelf-dev zlib1g-dev libpcap-dev   # BPF programs and the addon
  make gcc g++ python3 pkg-config                                   # build tools, test workloads
  iproute2 nftables iptables tshark tcpdump nsntrace                # tests: namespaces, NAT, pcap checks, nsntrace parity
  redis-server python3-setproctitle apache2-utils                   # tests: real servers to attach to (servers.test.ts, with nginx); ab for the L7 e2e
  libcairo2-dev libpango1.0-dev libjpeg-dev libgif-dev librsvg2-dev # canvas (charts), built from source
  fonts-dejavu-core                                                 # chart text
  nginx                                                             # tests: TLS server (issue 16)
  openssl                                                           # tests: certificates for the TLS servers
  curl                                                              # tests: TLS client (OpenSSL)
  wget                                                              # tests: TLS client (GnuTLS)
  libssl-dev                                                        # tests: a statically linked OpenSSL client
  prometheus podman runc busybox-static                             # tests: --metrics scraped by Prometheus, containers (podman --rootfs, runc); ~30 s
  postgresql-15 postgresql-client-15 dnsmasq-base bind9-dnsutils    # tests: L7 against PostgreSQL (pgbench, pg_stat_statements), dnsmasq, dig
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "proctap: missing Debian packages (${missing[*]}); run 'make deps' as root" >&2
    exit 1
  fi
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ -L node_modules ]; then
  # A developer worktree sharing another checkout's dependencies: npm ci would empty the target.
  echo "node_modules is a symbolic link: npm dependencies left as they are"
elif [ -f package-lock.json ]; then
  npm ci --ignore-scripts --no-audit --no-fund
else
  npm install --ignore-scripts --no-audit --no-fund
fi

# canvas (under chartjs-node-canvas, for the PNG charts) is native. Scripts are off above, so build it
# here, from source against the system cairo/pango and Node's own headers (never downloaded):
# --build-from-source makes its prebuild-install step skip the binary download, which cannot work
# offline, and go straight to node-gyp. Takes about 25 s on 2 cores.
if [ -d node_modules/canvas ] && ! node -e "require('canvas')" 2>/dev/null; then
  echo "building canvas from source"
  npm_config_nodedir="$(node -p "require('path').resolve(process.execPath, '../..')")" \
    npm rebuild canvas --build-from-source --no-audit --no-fund
  node -e "require('canvas')"
fi
