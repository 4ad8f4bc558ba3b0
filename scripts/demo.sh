#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# make demo: traces a shipped workload (a few processes, TCP and UDP, IPv4 and IPv6) against loopback
# servers that the demo starts itself, untraced, and prints proctap's report.
set -euo pipefail
cd "$(dirname "$0")/.."
exec node dist/test/workloads/demo.js
