#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Packs the initramfs the kernel matrix boots: this machine's node, python3, bpftool, ip, a shell and
# the few tools the tests run, every shared library they load (from ldd), and the built project
# (build/, addon/build, dist/, bin/, test/workloads/, node_modules/, package.json) under /proctap.
# /init is scripts/kernels/init.sh. Nothing is downloaded.
#
# usage: mkinitramfs.sh OUT.cpio[.gz|.zst]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:?usage: mkinitramfs.sh OUT.cpio[.gz|.zst]}
out=$(realpath -m "$out")

for f in build/bpf/proctap.bpf.o build/proctap-launch addon/build/Release/proctap.node dist/src/cli/main.js \
         dist/test/e2e/run.test.js dist/test/e2e/accept.test.js; do
  [ -e "$f" ] || { echo "mkinitramfs: $f is missing: run 'make build' first" >&2; exit 1; }
done

root=$(mktemp -d /tmp/proctap-initramfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
# Debian 12 is merged-/usr: keep that layout, so ldd's /lib/... paths resolve in the guest too.
mkdir -p "$root"/{usr/bin,usr/sbin,usr/lib,usr/lib64,proc,sys,dev,tmp,run,root,etc,proctap}
ln -s usr/bin "$root/bin"; ln -s usr/sbin "$root/sbin"; ln -s usr/lib "$root/lib"; ln -s usr/lib64 "$root/lib64"
chmod 1777 "$root/tmp"

# Installs one host file at the same (merged-/usr) path, dereferenced.
put() {
  local src=$1 dst=${2:-$1}
  case $dst in /bin/*|/sbin/*|/lib/*|/lib64/*) dst=/usr$dst ;; esac
  [ -e "$root$dst" ] && return 0
  mkdir -p "$root$(dirname "$dst")"
  cp -L "$src" "$root$dst"
}

# Every shared library a binary or a loadable object needs, by ldd.
libs_of() {
  ldd "$1" 2>/dev/null | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }' || true
}

binaries=(
  /usr/bin/node /usr/bin/python3.11 /usr/sbin/bpftool /usr/sbin/ip
  /usr/bin/dash /usr/bin/mount /usr/bin/true /usr/bin/cat /usr/bin/sleep /usr/bin/env /usr/bin/uname /usr/bin/cut /usr/bin/tail /usr/bin/head /usr/bin/grep /usr/bin/sed
  /usr/bin/mkdir /usr/bin/rm /usr/bin/ls /usr/bin/date /usr/bin/readlink
)
for b in "${binaries[@]}"; do
  [ -x "$b" ] || { echo "mkinitramfs: $b is missing on this machine" >&2; exit 1; }
  put "$b"
done
ln -s dash "$root/usr/bin/sh"
ln -s python3.11 "$root/usr/bin/python3"

# Python's standard library without what no test imports (GUI, tests, packaging, site-packages).
py=/usr/lib/python3.11
tar -C / -cf - \
  --exclude="${py#/}/ensurepip" --exclude="${py#/}/idlelib" --exclude="${py#/}/tkinter" \
  --exclude="${py#/}/lib2to3" --exclude="${py#/}/pydoc_data" --exclude="${py#/}/test" \
  --exclude="${py#/}/turtledemo" --exclude="${py#/}/distutils" --exclude="${py#/}/site-packages" \
  --exclude="${py#/}/dist-packages" --exclude="${py#/}/config-3.11-x86_64-linux-gnu" \
  "${py#/}" | tar -C "$root" -xf -

# The project, as built.
for d in build/bpf build/proctap-launch addon/build/Release/proctap.node dist bin test/workloads package.json; do
  mkdir -p "$root/proctap/$(dirname "$d")"
  cp -a "$d" "$root/proctap/$d"
done
# node_modules: the production dependency tree only (no typescript, no @types), else all of it.
# npm prints real paths: in a git worktree whose node_modules is a symbolic link, they lie under its target.
modules=$(readlink -f node_modules)
if deps=$(npm ls --omit=dev --all --parseable 2>/dev/null) && [ -n "$deps" ]; then
  while IFS= read -r d; do
    case $d in
      "$modules"/*) rel=node_modules/${d#"$modules"/} ;;
      "$PWD"/node_modules/*) rel=${d#"$PWD"/} ;;
      *) continue ;;
    esac
    [ -e "$root/proctap/$rel" ] && continue
    mkdir -p "$root/proctap/$(dirname "$rel")"
    cp -a "$d" "$root/proctap/$rel"
  done <<< "$deps"
else
  cp -a "$modules" "$root/proctap/node_modules"
fi

# Shared libraries of everything above, including python's extension modules and node addons.
objects=("${binaries[@]}")
while IFS= read -r -d '' f; do objects+=("$f"); done < <(find "$root/usr/lib/python3.11" "$root/proctap" \
  \( -name '*.so' -o -name '*.node' -o -name proctap-launch \) -type f -print0)
for o in "${objects[@]}"; do
  for l in $(libs_of "$o"); do put "$l"; done
done
# glibc loads these by name at run time (user and host lookups).
for l in /lib/x86_64-linux-gnu/libnss_files.so.2 /lib/x86_64-linux-gnu/libnss_dns.so.2; do
  [ -e "$l" ] && put "$l"
done

cat > "$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/sh
EOF
cat > "$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost\n' > "$root/etc/hosts"
printf 'passwd: files\ngroup: files\nhosts: files\n' > "$root/etc/nsswitch.conf"
install -m 0755 scripts/kernels/init.sh "$root/init"

mkdir -p "$(dirname "$out")"
case $out in
  *.zst) compress=(zstd -q -T0 -3 -c) ;;
  *.gz)  compress=(gzip -1 -c) ;;
  *)     compress=(cat) ;;
esac
(cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet -R 0:0) | "${compress[@]}" > "$out.tmp"
mv "$out.tmp" "$out"
echo "initramfs: $out ($(du -sh "$root" | cut -f1) unpacked, $(du -h "$out" | cut -f1) packed)"
