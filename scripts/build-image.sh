#!/usr/bin/env bash
# Builds the container image aegisbpf:<version> from Debian packages alone, as an OCI archive:
# dist/aegisbpf-<version>.oci.tar (an OCI image layout, tag <version>, two layers: the Debian root, then
# aegisbpf) and its SBOM dist/aegisbpf-<version>.oci.cdx.json. Needs root, debootstrap and umoci
# (scripts/setup.sh --test installs them); no container engine.
# Usage: scripts/build-image.sh [--out DIR] [--deb FILE]
#   --out DIR   where the archive goes (default dist/)
#   --deb FILE  the aegisbpf .deb whose files the image carries (default: built with scripts/build-deb.sh)
# The Debian root (debootstrap --variant=minbase of the machine's own Debian release, plus the runtime
# packages below) is cached under $AEGISBPF_CACHE/image (default /var/cache/aegisbpf-dev), keyed by the
# suite and the package list; Deno's binary comes from npm (@deno/linux-x64-glibc, the version of
# scripts/setup.sh), cached beside it. The mirror is the first one of the machine's apt sources.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
die() { echo "build-image: error: $*" >&2; exit 1; }
say() { echo "build-image: $*" >&2; }

out="$here/dist"
deb=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) [ $# -ge 2 ] || die "--out needs a directory"; out="$2"; shift 2 ;;
    --deb) [ $# -ge 2 ] || die "--deb needs a file"; deb="$2"; shift 2 ;;
    -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[ "$(id -u)" = 0 ] || die "debootstrap needs root"
for tool in debootstrap umoci npm dpkg-deb; do
  command -v "$tool" >/dev/null || die "$tool is not installed (scripts/setup.sh --test installs it)"
done

version="$(sed -n 's/^export const VERSION = "\([^"]*\)";$/\1/p' "$here/lib/version.ts")"
deno_version="$(sed -n 's/^deno_version="\([^"]*\)"$/\1/p' "$here/scripts/setup.sh")"
[ -n "$version" ] && [ -n "$deno_version" ] || die "no version in lib/version.ts or scripts/setup.sh"
. /etc/os-release
suite="${VERSION_CODENAME:?}"
# The runtime: libbpf.so.1 for the agent, a shell for the DaemonSet's command, CA roots for nothing yet
# but a policy URL a later release may fetch; tzdata for event times in the node's zone.
packages="libbpf1,ca-certificates,tzdata"
mirror="$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security |
  head -n 1)"
[ -n "$mirror" ] || mirror="$(awk '$1 == "deb" && $2 !~ /\[/ && $3 !~ /security/ { print $2; exit }' \
  /etc/apt/sources.list 2>/dev/null)"
[ -n "$mirror" ] || die "no Debian mirror in the apt sources of this machine"

cache="${AEGISBPF_CACHE:-/var/cache/aegisbpf-dev}/image"
key="$(printf '%s %s %s' "$suite" "$packages" "$(debootstrap --version)" | sha256sum | cut -c1-16)"
base="$cache/rootfs-$suite-$key.tar"
mkdir -p "$cache"
# What an interrupted build left behind (a build in progress is younger than this).
find "$cache" -maxdepth 1 \( -name 'rootfs.*' -o -name 'deno.*' \) -mmin +120 -exec rm -rf {} +
if [ ! -f "$base" ]; then
  say "debootstrap $suite ($packages) from the machine's mirror into the cache"
  tmp="$(mktemp -d "$cache/rootfs.XXXXXX")"
  debootstrap --variant=minbase --include="$packages" "$suite" "$tmp/root" "$mirror" >"$tmp/log" 2>&1 ||
    { tail -n 20 "$tmp/log" >&2; rm -rf "$tmp"; die "debootstrap failed"; }
  # What a running image never needs: apt's lists and downloads, logs, the man pages and docs.
  rm -rf "$tmp"/root/var/lib/apt/lists/* "$tmp"/root/var/cache/apt/* "$tmp"/root/var/log/* \
    "$tmp"/root/usr/share/man/* "$tmp"/root/usr/share/doc/* "$tmp"/root/usr/share/info/*
  dpkg-query --admindir="$tmp/root/var/lib/dpkg" -W -f='${Package}\t${Version}\t${Architecture}\n' \
    >"$tmp/packages.tsv"
  tar -C "$tmp/root" --numeric-owner -cf "$tmp/rootfs.tar" .
  mv "$tmp/packages.tsv" "${base%.tar}.packages.tsv"
  mv "$tmp/rootfs.tar" "$base"
  rm -rf "$tmp"
fi

deno_bin="$cache/deno-$deno_version/deno"
if [ ! -x "$deno_bin" ]; then
  say "fetching deno $deno_version from npm (@deno/linux-x64-glibc)"
  tmp="$(mktemp -d "$cache/deno.XXXXXX")"
  (cd "$tmp" && npm pack --silent "@deno/linux-x64-glibc@$deno_version" >/dev/null) || die "npm pack failed"
  tar -C "$tmp" -xzf "$tmp"/*.tgz package/deno
  mkdir -p "$(dirname "$deno_bin")"
  # Renamed into place from a private name: two builds at once each install a whole file.
  install -m 0755 "$tmp/package/deno" "$tmp/deno"
  mv "$tmp/deno" "$deno_bin"
  rm -rf "$tmp"
fi

stage="$(mktemp -d "${TMPDIR:-/tmp}/aegisbpf-image.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
if [ -z "$deb" ]; then deb="$("$here/scripts/build-deb.sh" --source --out "$stage/deb")"; fi
[ -f "$deb" ] || die "$deb: no such .deb"

layout="$stage/oci"
umoci init --layout "$layout"
umoci new --image "$layout:$version"
umoci unpack --image "$layout:$version" "$stage/bundle" >/dev/null
tar -C "$stage/bundle/rootfs" --numeric-owner -xf "$base"
umoci repack --history.created_by "debootstrap --variant=minbase --include=$packages $suite" \
  --image "$layout:$version" "$stage/bundle"
rm -rf "$stage/bundle"

# Layer 2: the .deb's files (the source tree with its npm dependencies, the launcher, the docs) and Deno.
umoci unpack --image "$layout:$version" "$stage/bundle" >/dev/null
rootfs="$stage/bundle/rootfs"
dpkg-deb -x "$deb" "$rootfs"
install -m 0755 "$deno_bin" "$rootfs/usr/bin/deno"
# The image's SBOM (CycloneDX JSON, scripts/release.ts): every Debian package of its root, Deno, the npm
# packages and the BPF object; inside the image and, below, beside the archive.
(cd "$here" && deno task --quiet build:bpf)
sbom="$rootfs/usr/share/doc/aegisbpf/aegisbpf-image.cdx.json"
deno run --quiet --allow-read --allow-write="$sbom" --allow-run="$deno_bin" "$here/scripts/release.ts" sbom \
  --kind image --name "aegisbpf-$version.oci.tar" --packages "${base%.tar}.packages.tsv" --deno "$deno_bin" \
  --out "$sbom" || die "the SBOM could not be written"
chmod 0644 "$sbom"
cp "$sbom" "$stage/sbom.json"
umoci repack --history.created_by "aegisbpf $version ($(basename "$deb")) and deno $deno_version" \
  --image "$layout:$version" "$stage/bundle"
umoci config --image "$layout:$version" \
  --config.entrypoint /usr/bin/aegisbpf --config.cmd doctor \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.env DENO_DIR=/tmp/deno --config.env DENO_NO_UPDATE_CHECK=1 \
  --config.workingdir / --config.user 0:0 \
  --config.label "org.opencontainers.image.title=aegisbpf" \
  --config.label "org.opencontainers.image.version=$version" \
  --author "aegisbpf maintainers" --history.created_by "aegisbpf image config"
umoci gc --layout "$layout"
# The name the DaemonSet pulls: containerd's import reads this annotation, podman load reads ref.name.
index="$layout/index.json"
sed "s|\"org.opencontainers.image.ref.name\":\"$version\"|&,\"io.containerd.image.name\":\"docker.io/library/aegisbpf:$version\"|" \
  "$index" >"$index.tmp"
grep -q io.containerd.image.name "$index.tmp" || die "index.json has no ref.name $version"
mv "$index.tmp" "$index"

mkdir -p "$out"
archive="$out/aegisbpf-$version.oci.tar"
tar -C "$layout" --numeric-owner --owner=0 --group=0 --sort=name -cf "$archive.tmp" .
mv "$archive.tmp" "$archive"
cp "$stage/sbom.json" "$out/aegisbpf-$version.oci.cdx.json"
echo "$archive"
