#!/usr/bin/env bash
# Builds bpf/build/aegis.bpf.o: vmlinux.h from this machine's BTF, then one CO-RE object.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/build"
mkdir -p "$out"
btf="${AEGISBPF_BTF:-/sys/kernel/btf/vmlinux}"
[ -r "$btf" ] || { echo "build:bpf: error: no kernel BTF at $btf (set AEGISBPF_BTF)" >&2; exit 1; }
if [ ! -s "$out/vmlinux.h" ] || [ "$btf" -nt "$out/vmlinux.h" ]; then
  bpftool btf dump file "$btf" format c >"$out/vmlinux.h.tmp"
  mv "$out/vmlinux.h.tmp" "$out/vmlinux.h"
fi
compile() { # SOURCE OBJECT: skipped when OBJECT is newer than SOURCE, the headers and this script
  if [ -f "$2" ] && [ -z "$(find "$1" "$here"/*.h "$here"/*.bpf.c "$out/vmlinux.h" "$0" -newer "$2" 2>/dev/null)" ]; then
    return
  fi
  clang -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_x86 -Wall -Werror -I"$out" -I"$here" -c "$1" -o "$2.tmp"
  # Strip DWARF but keep BTF: smaller object, same CO-RE relocations.
  llvm-strip -g "$2.tmp"
  mv "$2.tmp" "$2"
}
compile "$here/aegis.bpf.c" "$out/aegis.bpf.o"
# Test fixtures: objects the kernel suites load to see failures surface as they should.
mkdir -p "$out/fixtures"
for source in "$here"/../tests/fixtures/*.bpf.c; do
  compile "$source" "$out/fixtures/$(basename "$source" .c).o"
done
# The bench's own programs (bench/native/*.bpf.c): baselines measured beside ours in the same run.
mkdir -p "$out/bench"
for source in "$here"/../bench/native/*.bpf.c; do
  compile "$source" "$out/bench/$(basename "$source" .c).o"
done
# Programs of the file guard tests (dynamically linked: the loader and dlopen tests need ld.so).
build_native() { # OBJECT SOURCE CC-ARGS...
  local object="$1" source="$2"
  shift 2
  if [ -f "$object" ] && [ "$object" -nt "$source" ] && [ "$object" -nt "$0" ]; then return; fi
  clang -O2 -Wall -Werror "$@" -o "$object.tmp" "$source"
  mv "$object.tmp" "$object"
}
build_native "$out/fixtures/file_guard_probe" "$here/../tests/fixtures/file_guard_probe.c"
build_native "$out/fixtures/libprobe.so" "$here/../tests/fixtures/probe_lib.c" -shared -fPIC
build_native "$out/fixtures/file_change_probe" "$here/../tests/fixtures/file_change_probe.c"
# An empty ext4 filesystem the VM tests loop-mount (the guest has no disk and no mkfs.ext4).
if [ ! -s "$out/fixtures/ext4.img" ] && command -v mkfs.ext4 >/dev/null 2>&1; then
  rm -f "$out/fixtures/ext4.img.tmp"
  truncate -s 16M "$out/fixtures/ext4.img.tmp"
  mkfs.ext4 -q -F -b 1024 -N 256 "$out/fixtures/ext4.img.tmp"
  mv "$out/fixtures/ext4.img.tmp" "$out/fixtures/ext4.img"
fi
