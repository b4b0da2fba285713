#!/usr/bin/env bash
# Prepares a Debian 12 machine (as root) to build, run and test aegisbpf.
# Idempotent and quiet when there is nothing to do. Usage: scripts/setup.sh [--test] [--bench]
#   (no flag)  build and run dependencies: deno, clang, libbpf, bpftool
#   --bench    also what test needs, and the peers and tools of `deno task bench` (bench/run.ts): nftables,
#              iptables with ipset, xdp-tools, netsniff-ng, stress-ng, hyperfine, linux-perf
#   --test     also what the test suites need: qemu, busybox, cpio, iproute2, curl, promtool and
#              node_exporter (metrics), systemd (systemd-analyze, packaging), man-db and groff (the man
#              page), jq (the runbooks and the release one-liner), debootstrap and umoci (the image) and
#              the Debian kernels; and what --bench installs, since the test command runs the quick
#              benchmark (tests/bench/)
set -euo pipefail

want_test=0
want_bench=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 want_bench=1 ;;
    --bench) want_test=1 want_bench=1 ;;
    *) echo "setup: error: unknown flag $arg (flags: --test, --bench)" >&2; exit 2 ;;
  esac
done
cache="${AEGISBPF_CACHE:-/var/cache/aegisbpf-dev}"
deno_version="2.9.6"

say() { printf 'setup: %s\n' "$*"; }

packages=(clang llvm libbpf-dev libbpf1 bpftool libelf-dev zlib1g-dev iproute2 openssl)
command -v npm >/dev/null 2>&1 || packages+=(npm)
if [ "$want_test" = 1 ]; then
  # curl, prometheus (promtool), prometheus-node-exporter: metrics and API tests; systemd: systemd-analyze;
  # xz-utils, zstd, kmod: the VM's kernel modules; man-db, groff-base: the man page test; jq: the
  # runbooks' steps; e2fsprogs: the ext4 image of the file change tests
  packages+=(qemu-system-x86 busybox-static cpio gzip iputils-ping util-linux curl prometheus e2fsprogs)
  packages+=(prometheus-node-exporter systemd xz-utils zstd kmod man-db groff-base jq)
  # debootstrap, umoci: the container image (scripts/build-image.sh, tests/packaging/release_test.ts)
  packages+=(debootstrap umoci)
fi
if [ "$want_bench" = 1 ]; then
  # The peers the benchmark measures beside aegisbpf, and its load generators and profilers.
  packages+=(nftables iptables ipset xdp-tools netsniff-ng stress-ng hyperfine linux-perf)
fi

# fapolicyd, the exec-control peer of the file_exec benchmark, runs only inside the VM: its package and the
# libraries it needs are downloaded and unpacked into the cache, never installed here (it would judge every
# exec on this machine). bench/suites/file_exec.ts puts the tree into the VM's initramfs.
fapolicyd_packages=(fapolicyd liblmdb0 libmagic1 libmagic-mgc libcap-ng0 libseccomp2 libssl3 libudev1 libbz2-1.0 liblzma5)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v deno >/dev/null 2>&1 || ! deno --version 2>/dev/null | grep -q '^deno 2\.'; then
  say "installing deno ${deno_version} from npm"
  npm install -g --silent "deno@${deno_version}" >/dev/null 2>&1
  command -v deno >/dev/null 2>&1 || { echo "setup: error: deno did not install" >&2; exit 1; }
fi

# npm packages named in deno.json, cached so later runs (and the VM image) need no network.
here="$(cd "$(dirname "$0")/.." && pwd)"
(cd "$here" && deno install --quiet --frozen 2>/dev/null || deno install --quiet)

if [ "$want_bench" = 1 ] && [ "$(cat "$cache/fapolicyd/ready" 2>/dev/null)" != "${fapolicyd_packages[*]}" ]; then
  say "downloading ${fapolicyd_packages[*]} for the VM (not installed on this machine)"
  rm -rf "$cache/fapolicyd"
  mkdir -p "$cache/fapolicyd/debs"
  (cd "$cache/fapolicyd/debs" && apt-get download -qq -o APT::Sandbox::User=root "${fapolicyd_packages[@]}" >/dev/null)
  for deb in "$cache"/fapolicyd/debs/*.deb; do dpkg-deb -x "$deb" "$cache/fapolicyd/root"; done
  echo "${fapolicyd_packages[*]}" >"$cache/fapolicyd/ready"
fi

if [ "$want_test" = 1 ]; then
  # Debian cloud kernels for the VM suite: the newest 6.1 and 6.12 builds the archive has, each with the
  # modules tests/vm/modules names (and what they depend on, from modules.dep), decompressed for busybox
  # insmod, in load order. The package is kept, so a changed module list needs no download.
  modules_list="$here/tests/vm/modules"
  wanted="$( (grep -v '^#' "$modules_list" 2>/dev/null || true) | awk NF | sort -u | tr '\n' ' ')"
  mkdir -p "$cache/kernels"
  for series in 6.1 6.12; do
    dir="$cache/kernels/$series"
    # The cache is shared (other checkouts may want other modules): keep what it has, add what is missing.
    cached="$(cat "$dir/modules/list" 2>/dev/null || true)"
    missing_modules=""
    for name in $wanted; do
      case " $cached " in *" $name "*) ;; *) missing_modules="$missing_modules $name" ;; esac
    done
    if [ -f "$dir/vmlinuz" ] && [ -f "$dir/modules/list" ] && [ -z "$missing_modules" ]; then
      continue
    fi
    unpack="$(printf '%s\n' $wanted $cached | awk NF | sort -u | tr '\n' ' ')"
    if [ ! -f "$dir/kernel.deb" ]; then
      case "$series" in
        6.1) pattern='^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$' ;;
        6.12) pattern='^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64-unsigned$' ;;
      esac
      pkg="$(apt-cache pkgnames linux-image-6 | grep -E "$pattern" | sort -V | tail -n 1 || true)"
      if [ -z "$pkg" ]; then
        apt-get update -qq
        pkg="$(apt-cache pkgnames linux-image-6 | grep -E "$pattern" | sort -V | tail -n 1 || true)"
      fi
      [ -n "$pkg" ] || { echo "setup: error: no Debian kernel package for $series found by apt" >&2; exit 1; }
      say "downloading $pkg"
      mkdir -p "$dir"
      tmp="$(mktemp -d)"
      (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "$pkg" >/dev/null)
      mv "$tmp"/*.deb "$dir/kernel.deb"
      rmdir "$tmp"
      echo "$pkg" >"$dir/package"
    fi
    say "unpacking the $series kernel and its modules: ${unpack:-none}"
    tmp="$(mktemp -d)"
    dpkg-deb -x "$dir/kernel.deb" "$tmp/root"
    # Replaced in one rename: a VM suite running meanwhile boots the old image or the new, never half of one.
    cp "$tmp"/root/boot/vmlinuz-* "$dir/vmlinuz.tmp"
    mv "$dir/vmlinuz.tmp" "$dir/vmlinuz"
    release="$(ls "$tmp/root/lib/modules")"
    moddir="$tmp/root/lib/modules/$release"
    # The package has no modules.dep (its postinst runs depmod): make one for the unpacked tree.
    depmod -b "$tmp/root" "$release"
    rm -rf "$dir/modules"
    mkdir -p "$dir/modules"
    order=()
    add_module() { # PATH relative to $moddir, after its dependencies
      local path="$1" line dep seen
      for seen in "${order[@]}"; do [ "$seen" = "$path" ] && return 0; done
      line="$(grep -m 1 -E "^${path//./\\.}:" "$moddir/modules.dep" || true)"
      for dep in ${line#*:}; do add_module "$dep"; done
      order+=("$path")
    }
    for name in $unpack; do
      pattern="(^|/)${name//[-_]/[-_]}\.ko(\.(xz|zst|gz))?:"
      path="$(grep -m 1 -E "$pattern" "$moddir/modules.dep" | cut -d: -f1 || true)"
      if [ -z "$path" ]; then
        if grep -qE "/${name//[-_]/[-_]}\.ko" "$moddir/modules.builtin" 2>/dev/null; then continue; fi
        echo "setup: error: module $name is neither in modules.dep nor built into the $series kernel" >&2
        exit 1
      fi
      add_module "$path"
    done
    for path in "${order[@]}"; do
      base="$(basename "$path")"
      case "$base" in
        *.ko.xz) xz -dc "$moddir/$path" >"$dir/modules/${base%.xz}" ;;
        *.ko.zst) zstd -qdc "$moddir/$path" >"$dir/modules/${base%.zst}" ;;
        *.ko.gz) gzip -dc "$moddir/$path" >"$dir/modules/${base%.gz}" ;;
        *) cp "$moddir/$path" "$dir/modules/$base" ;;
      esac
      echo "${base%.ko*}.ko" >>"$dir/modules/load"
    done
    touch "$dir/modules/load"
    echo "$release" >"$dir/modules/release"
    echo "$unpack" >"$dir/modules/list"
    rm -rf "$tmp"
  done
fi
