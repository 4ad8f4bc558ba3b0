#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# make test-kernels: the e2e suites (dist/test/e2e/run.test.js, l7data.test.js, accept.test.js: attach to a
# server) on Debian's stock kernels, once per socket I/O backend, each kernel booted under QEMU (TCG) from an initramfs
# packed from this machine (scripts/kernels/mkinitramfs.sh): no modules, no disk, serial console only.
# Prints one line per kernel x backend and exits non-zero if any fails. Full guest logs: build/kernels/logs/.
#
# Environment:
#   KERNELS         Debian kernel packages (default: the one linux-image-cloud-amd64 depends on)
#   BACKENDS        backends, in order (default: "kprobe fentry auto"); each is PROCTAP_TEST_BACKEND
#   KMATRIX_TESTS   a --test-name-pattern to run a subset of the suites (default: every test)
#   KMATRIX_EXEC    a shell command the guest runs (in /proctap) before the tests; KMATRIX_RUN_TESTS=0: no tests
#   KMATRIX_ACCEL   tcg (default) or kvm
#   KMATRIX_MEM, KMATRIX_SMP, KMATRIX_TIMEOUT   guest memory (3G), CPUs (2), seconds per boot (1200)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
CACHE=$ROOT/build/kernels
BACKENDS=${BACKENDS:-kprobe fentry auto}
MEM=${KMATRIX_MEM:-3G}
SMP=${KMATRIX_SMP:-2}
TIMEOUT=${KMATRIX_TIMEOUT:-1200}
# TCG by default: it works everywhere, nested or not (KVM inside a VM may be present but unusable).
KMATRIX_ACCEL=${KMATRIX_ACCEL:-tcg}
if [ "$KMATRIX_ACCEL" = kvm ]; then CPU=host; else CPU=max; fi

if [ "$(id -u)" -ne 0 ]; then
  echo "test-kernels: run as root (apt-get download/install)" >&2
  exit 1
fi

# --- host tools ---------------------------------------------------------------------------------------
need=()
for p in qemu-system-x86 cpio zstd; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
apt_updated=0
apt_update() { [ $apt_updated = 1 ] || { apt-get update -q >/dev/null; apt_updated=1; }; }
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt_update
  apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

# --- kernels: Debian packages, unpacked (not installed) into build/kernels/<package>/ ------------------
if [ -z "${KERNELS:-}" ]; then
  dep() { apt-cache depends "$1" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'; }
  KERNELS=$(dep linux-image-cloud-amd64)
  if [ -z "$KERNELS" ]; then apt_update; KERNELS=$(dep linux-image-cloud-amd64); fi
  [ -n "$KERNELS" ] || { echo "test-kernels: cannot resolve linux-image-cloud-amd64 (apt sources?)" >&2; exit 1; }
fi
mkdir -p "$CACHE/logs"
vmlinuz_of() { ls "$CACHE/$1"/boot/vmlinuz-* 2>/dev/null | head -n1; }
for pkg in $KERNELS; do
  [ -n "$(vmlinuz_of "$pkg")" ] && continue
  echo "downloading $pkg"
  dl=$(mktemp -d)
  chmod 755 "$dl" # apt's _apt user writes there
  if ! (cd "$dl" && apt-get download -q "$pkg" >/dev/null 2>&1); then
    apt_update
    (cd "$dl" && apt-get download -q "$pkg" >/dev/null)
  fi
  rm -rf "$CACHE/$pkg.tmp" && mkdir -p "$CACHE/$pkg.tmp"
  dpkg-deb -x "$dl"/*.deb "$CACHE/$pkg.tmp"
  rm -rf "$dl" "$CACHE/$pkg.tmp/lib/modules" "$CACHE/$pkg.tmp/usr"  # modules are not used
  mv "$CACHE/$pkg.tmp" "$CACHE/$pkg"
done

# --- initramfs: the project and its runtime, plus a per-run /kmatrix.conf ----------------------------
t0=$(date +%s%N)
bash scripts/kernels/mkinitramfs.sh "$CACHE/initramfs.cpio.zst"
conf=$(mktemp -d)
trap 'rm -rf "$conf"' EXIT
{
  printf 'BACKENDS=%q\n' "$BACKENDS"
  printf 'TEST_PATTERN=%q\n' "${KMATRIX_TESTS:-}"
  printf 'EXEC=%q\n' "${KMATRIX_EXEC:-}"
  [ "${KMATRIX_RUN_TESTS:-1}" = 1 ] || echo RUN_TESTS=0
} > "$conf/kmatrix.conf"
# The uncompressed cpio goes first: the kernel unpacks concatenated archives in order.
(cd "$conf" && echo kmatrix.conf | cpio -o -H newc --quiet -R 0:0) > "$conf/conf.cpio"
cat "$conf/conf.cpio" "$CACHE/initramfs.cpio.zst" > "$CACHE/run.img"
echo "initramfs packed in $(( ($(date +%s%N) - t0) / 1000000 )) ms"

# --- boot each kernel; the guest prints "@@kmatrix" markers and TAP on ttyS0 --------------------------
results=()
failed=0
for pkg in $KERNELS; do
  kernel=$(vmlinuz_of "$pkg")
  kver=${kernel##*/vmlinuz-}
  log=$CACHE/logs/$kver.log
  echo "booting $kver ($KMATRIX_ACCEL, $SMP CPUs, $MEM): backends $BACKENDS${KMATRIX_TESTS:+, tests matching /$KMATRIX_TESTS/}"
  start=$(date +%s)
  set +e
  timeout --foreground "$TIMEOUT" qemu-system-x86_64 -accel "$KMATRIX_ACCEL" -cpu "$CPU" -smp "$SMP" -m "$MEM" \
    -kernel "$kernel" -initrd "$CACHE/run.img" -append "console=ttyS0 quiet panic=-1" \
    -display none -monitor none -serial stdio -no-reboot </dev/null 2>&1 \
    | tr -d '\r' | tee "$log" | grep --line-buffered -E '^(@@kmatrix (kernel|begin|end|done)|(not )?ok [0-9]+ )' \
    | sed -u 's/^/  | /'
  qrc=${PIPESTATUS[0]}
  set -e
  wall=$(( $(date +%s) - start ))
  [ "$qrc" = 124 ] && echo "  $kver: timed out after ${TIMEOUT}s"
  selected=$(awk '/@@kmatrix doctor-begin/,/@@kmatrix doctor-end/' "$log" | sed -n 's/.*"selectedBackend": *"\{0,1\}\([a-z]*\)"\{0,1\}.*/\1/p' | head -n1)
  boot=$(sed -n 's/^@@kmatrix kernel .* up \([0-9.]*\)$/\1/p' "$log")
  echo "  $kver: guest reached /init at ${boot:-?} s (guest clock), whole run ${wall} s wall"
  for b in $BACKENDS; do
    # Top-level TAP results of this backend's block (subtests are indented).
    read -r pass fail rc t_begin t_end < <(awk -v b="$b" '
      $0 ~ "^@@kmatrix begin " b " " { on = 1; tb = $NF; next }
      on && $0 ~ "^@@kmatrix end " b " " { split($4, a, "="); rc = a[2]; te = $NF; on = 0 }
      on && /^ok [0-9]+ / && !/# SKIP/ { p++ }
      on && /^not ok [0-9]+ / { f++ }
      END { printf "%d %d %s %s %s\n", p, f, rc == "" ? "none" : rc, tb == "" ? "-" : tb, te == "" ? "-" : te }' "$log")
    n=$((pass + fail))
    label=$b
    [ "$b" = auto ] && label="auto=${selected:-none}"
    secs=""
    [ "$t_begin" != - ] && [ "$t_end" != - ] && secs=$(awk -v a="$t_begin" -v z="$t_end" 'BEGIN { printf "%.0f s", z - a }')
    if [ "$rc" = 0 ] && [ "$fail" = 0 ] && [ "$pass" -gt 0 ]; then
      verdict="PASS ($pass/$n)"
    else
      failed=1
      if [ "$rc" = none ]; then verdict="FAIL (no result: guest died or timed out; $pass/$n passed)"; else verdict="FAIL ($pass/$n)"; fi
    fi
    results+=("$(printf '%-24s %-16s %-22s %s' "$kver" "$label" "$verdict" "${secs:+[$secs]}")")
    # Names of failed tests, and the first line of each failure.
    awk -v b="$b" '
      $0 ~ "^@@kmatrix begin " b " " { on = 1; next }
      on && $0 ~ "^@@kmatrix end " b " " { on = 0 }
      on && /^not ok [0-9]+ / { sub(/^not ok [0-9]+ - /, ""); name = $0; want = 1; next }
      on && want && /^  error: / { sub(/^  error: /, ""); msg = $0; block = (msg == "|-"); if (block) msg = ""; if (!block) { out() } next }
      on && want && block && /^  [a-zA-Z]+:/ { out(); next }
      on && want && block { sub(/^ +/, ""); if ($0 != "" && length(msg) < 160) msg = msg (msg == "" ? "" : " ... ") $0; next }
      function out() { printf "    %s: %s: %s\n", b, name, substr(msg, 1, 200); want = 0; block = 0 }
    ' "$log" >> "$CACHE/logs/failures.$$"
  done
done

echo
echo "kernel x backend (e2e suites test/e2e/run.test.ts, l7data.test.ts, accept.test.ts${KMATRIX_TESTS:+, tests matching /$KMATRIX_TESTS/}):"
printf '%s\n' "${results[@]}"
if [ -s "$CACHE/logs/failures.$$" ]; then
  echo "failures (full logs in build/kernels/logs/):"
  cat "$CACHE/logs/failures.$$"
fi
rm -f "$CACHE/logs/failures.$$"
exit $failed
