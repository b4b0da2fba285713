#!/usr/bin/env bash
# Builds and signs a release into DIR (default dist/): the .deb and its SBOM, the image and its SBOM, the
# BPF object, and aegisbpf-<version>.intoto.jsonl, the in-toto statement naming each of them (and the image
# aegisbpf:<version> by its manifest digest) by sha256, in a DSSE envelope signed with KEY (an Ed25519
# PKCS#8 PEM: aegisbpf keys gen --out release). Needs root (the image's debootstrap).
# Usage: scripts/release.sh --key KEY [--out DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
die() { echo "release: error: $*" >&2; exit 1; }
out="$here/dist"
key=""
while [ $# -gt 0 ]; do
  case "$1" in
    --key) [ $# -ge 2 ] || die "--key needs a file"; key="$2"; shift 2 ;;
    --out) [ $# -ge 2 ] || die "--out needs a directory"; out="$2"; shift 2 ;;
    -h | --help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[ -f "$key" ] || die "--key: no such file ${key:-(none given)}"
version="$(sed -n 's/^export const VERSION = "\([^"]*\)";$/\1/p' "$here/lib/version.ts")"
mkdir -p "$out"
deb="$("$here/scripts/build-deb.sh" --out "$out")"
image="$("$here/scripts/build-image.sh" --out "$out" --deb "$deb")"
install -m 0644 "$here/bpf/build/aegis.bpf.o" "$out/aegis.bpf.o"
envelope="$out/aegisbpf-$version.intoto.jsonl"
deno run --quiet --allow-read --allow-write="$envelope" --allow-run=tar "$here/scripts/release.ts" sign \
  --key "$key" --out "$envelope" "$deb" "${deb%.deb}.cdx.json" "$image" "${image%.tar}.cdx.json" \
  "$out/aegis.bpf.o"
echo "$envelope"
