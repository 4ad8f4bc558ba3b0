#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# make test: unit tests (no privileges needed), then end-to-end tests on the real kernel (root).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "make test: the end-to-end tests load BPF programs and need root (run it with sudo)" >&2
  exit 1
fi
files=$(find dist/test/unit dist/test/e2e -name '*.test.js' | sort)
# The e2e tests need the machine's BPF state to themselves: serialize with any other proctap test or bench.
# --test-timeout times each test file as a whole: one that hangs fails after 20 minutes, far past the
# slowest file's run, and --test-force-exit ends a file whose tests are done even if a child it started
# still holds its event loop. Neither can hold CI to its 90-minute limit.
exec flock /tmp/proctap-e2e.lock node --test --test-concurrency=1 --test-timeout=1200000 --test-force-exit --test-reporter=spec $files
