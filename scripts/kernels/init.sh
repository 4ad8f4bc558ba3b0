#!/bin/sh
# SPDX-License-Identifier: MIT
# /init of the kernel-matrix guest (initramfs only, no modules, serial console). Mounts what proctap
# needs, runs the e2e accuracy suite once per backend listed in /kmatrix.conf and reports on the console
# between "@@kmatrix" markers that scripts/kernels/test-kernels.sh parses; then powers off.
export PATH=/usr/bin:/usr/sbin HOME=/root LANG=C.UTF-8 TERM=dumb
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf
mount -t debugfs debugfs /sys/kernel/debug
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
ip link set lo up

BACKENDS="kprobe fentry auto"
TEST_PATTERN=""
TEST_TIMEOUT=600000
RUN_TESTS=1
EXEC=""
DIAG_LINES=120
# The suites the matrix runs: exact byte accounting, the L7 view's copied heads, attach to a server whose
# listener predates the attach.
TEST_FILES="dist/test/e2e/run.test.js dist/test/e2e/l7data.test.js dist/test/e2e/accept.test.js"
[ -f /kmatrix.conf ] && . /kmatrix.conf

uptime() { cut -d' ' -f1 /proc/uptime; }
echo "@@kmatrix kernel $(uname -r) up $(uptime)"
cd /proctap
echo "@@kmatrix doctor-begin"
./bin/proctap doctor --json
echo "@@kmatrix doctor-end"
# A forced backend that cannot even trace `true`: show the tail of libbpf's log (the verifier's verdict).
for b in $BACKENDS; do
  [ "$b" = auto ] && continue
  ./bin/proctap run -q --backend "$b" -- true >/dev/null 2>&1 && continue
  echo "@@kmatrix diag-begin $b"
  PROCTAP_LIBBPF_DEBUG=1 ./bin/proctap run -q --backend "$b" -- true 2>&1 | tail -n "$DIAG_LINES"
  echo "@@kmatrix diag-end $b"
done
# KMATRIX_EXEC (from the host's environment): a shell command to run here first, for investigations.
if [ -n "$EXEC" ]; then
  echo "@@kmatrix exec-begin"
  sh -c "$EXEC"
  echo "@@kmatrix exec-end rc=$?"
fi
[ "$RUN_TESTS" = 1 ] || BACKENDS=""
for b in $BACKENDS; do
  echo "@@kmatrix begin $b up $(uptime)"
  if [ -n "$TEST_PATTERN" ]; then
    PROCTAP_TEST_BACKEND=$b node --test --test-concurrency=1 --test-timeout="$TEST_TIMEOUT" --test-reporter=tap \
      --test-name-pattern="$TEST_PATTERN" $TEST_FILES
  else
    PROCTAP_TEST_BACKEND=$b node --test --test-concurrency=1 --test-timeout="$TEST_TIMEOUT" --test-reporter=tap \
      $TEST_FILES
  fi
  echo "@@kmatrix end $b rc=$? up $(uptime)"
done
echo "@@kmatrix done up $(uptime)"
echo o > /proc/sysrq-trigger
sleep 30
