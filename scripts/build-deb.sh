#!/usr/bin/env bash
# Builds dist/aegisbpf_<version>_<arch>.deb with dpkg-deb (no root needed, no debhelper).
# Usage: scripts/build-deb.sh [--out DIR] [--binary FILE | --source]
#   --binary FILE  ship FILE (the single binary of `deno task compile`) as /usr/bin/aegisbpf
#   --source       ship the source tree and a launcher that runs it with the system's Deno 2
#   (default: --binary dist/aegisbpf when that exists, else --source)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
die() { echo "build-deb: error: $*" >&2; exit 1; }

out="$here/dist"
form=""
binary=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) [ $# -ge 2 ] || die "--out needs a directory"; out="$2"; shift 2 ;;
    --binary) [ $# -ge 2 ] || die "--binary needs a file"; form=binary; binary="$2"; shift 2 ;;
    --source) form=source; shift ;;
    -h | --help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
if [ -z "$form" ]; then
  if [ -x "$here/dist/aegisbpf" ]; then form=binary binary="$here/dist/aegisbpf"; else form=source; fi
fi
if [ "$form" = binary ]; then
  [ -f "$binary" ] && [ -x "$binary" ] || die "$binary: not an executable file"
fi

version="$(sed -n 's/^export const VERSION = "\([^"]*\)";$/\1/p' "$here/lib/version.ts")"
[[ "$version" =~ ^[0-9][0-9A-Za-z.+~-]*$ ]] || die "lib/version.ts: no valid VERSION found"
arch="$(dpkg --print-architecture)"
# The BPF object is compiled for x86 (-D__TARGET_ARCH_x86 in bpf/build.sh).
[ "$arch" = amd64 ] || die "this machine is $arch: the BPF object is built for amd64 only"

umask 022
stage="$(mktemp -d "${TMPDIR:-/tmp}/aegisbpf-deb.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
root="$stage/root"
pkg="$here/packaging"
mkdir -p "$root/DEBIAN" "$root/usr/bin" "$root/usr/lib/systemd/system" "$root/etc/default" \
  "$root/usr/share/doc/aegisbpf/runbooks" "$root/usr/share/doc/aegisbpf/examples"
install -d -m 0700 "$root/etc/aegisbpf"

if [ "$form" = binary ]; then
  install -m 0755 "$binary" "$root/usr/bin/aegisbpf"
  depends="libbpf1, libc6"
  form_text=" This build is the single binary of \`deno task compile\`: the TypeScript sources, the
 Deno runtime and the BPF object in /usr/bin/aegisbpf."
else
  (cd "$here" && deno task --quiet build:bpf)
  app="$root/usr/lib/aegisbpf"
  mkdir -p "$app/bpf/build"
  (cd "$here" && find main.ts deno.json deno.lock lib ffi policies -type f ! -name '*_test.ts' -print0 |
    xargs -0 cp --parents -t "$app")
  install -m 0644 "$here/bpf/build/aegis.bpf.o" "$app/bpf/build/aegis.bpf.o"
  # npm dependencies into node_modules beside the sources, so the launcher runs with no network and a
  # read-only /usr (from Deno's cache when it has them, else from the npm registry).
  (cd "$app" && deno install --quiet --frozen --node-modules-dir=auto --entrypoint main.ts) ||
    die "deno install of the npm dependencies failed"
  install -m 0755 "$pkg/deb/launcher.sh" "$root/usr/bin/aegisbpf"
  depends="libbpf1, libc6"
  form_text=" This build ships the TypeScript source tree in /usr/lib/aegisbpf (with its npm
 dependencies) and /usr/bin/aegisbpf is a launcher that runs it with the system's
 Deno 2, which no Debian package provides: install it first (npm install -g deno)
 or point AEGISBPF_DENO at it. It is not the single binary of \`deno task compile\`,
 which needs Deno's runtime download (DENORT_BIN) that this build machine lacks."
fi

install -m 0644 "$pkg/systemd/aegisbpf.service" "$pkg/systemd/aegisbpf-metrics.service" \
  "$pkg/systemd/aegisbpf-metrics.timer" "$root/usr/lib/systemd/system/"
install -m 0644 "$pkg/systemd/aegisbpf.default" "$root/etc/default/aegisbpf"
install -m 0644 "$here/README.md" "$root/usr/share/doc/aegisbpf/README.md"
install -m 0644 "$here"/docs/runbooks/*.md "$root/usr/share/doc/aegisbpf/runbooks/"
install -m 0644 "$here"/docs/*.md "$root/usr/share/doc/aegisbpf/"
install -D -m 0644 -t "$root/usr/share/doc/aegisbpf/schema" "$here"/docs/schema/*.json
# The manual page as committed (tests/packaging/man_test.ts holds it equal to `deno task man`'s output).
install -d "$root/usr/share/man/man1"
gzip -9n <"$here/docs/aegisbpf.1" >"$root/usr/share/man/man1/aegisbpf.1.gz"
chmod 0644 "$root/usr/share/man/man1/aegisbpf.1.gz"
cp -r "$pkg/kubernetes" "$root/usr/share/doc/aegisbpf/examples/kubernetes"
chmod -R u=rwX,go=rX "$root/usr/share/doc/aegisbpf/examples"
printf 'aegisbpf\n\nCopyright the aegisbpf authors.\n' >"$root/usr/share/doc/aegisbpf/copyright"
# The SBOM (CycloneDX JSON, scripts/release.ts): inside the package and, below, beside it.
(cd "$here" && deno task --quiet build:bpf)
sbom="$root/usr/share/doc/aegisbpf/aegisbpf.cdx.json"
deno run --quiet --allow-read --allow-write="$sbom" --allow-run=dpkg-query "$here/scripts/release.ts" sbom \
  --kind deb --name "aegisbpf_${version}_${arch}.deb" --out "$sbom" || die "the SBOM could not be written"
chmod 0644 "$sbom"

# Shell completions, from the command itself.
completion() { # SHELL DEST
  mkdir -p "$(dirname "$root/$2")"
  "$root/usr/bin/aegisbpf" completions "$1" >"$root/$2"
  chmod 0644 "$root/$2"
}
completion bash usr/share/bash-completion/completions/aegisbpf
completion zsh usr/share/zsh/vendor-completions/_aegisbpf
completion fish usr/share/fish/vendor_completions.d/aegisbpf.fish

for script in postinst prerm postrm; do install -m 0755 "$pkg/deb/$script" "$root/DEBIAN/$script"; done
# The dpkg hook: the file trigger (DEBIAN/triggers) runs it through postinst after every dpkg run.
install -D -m 0755 "$pkg/deb/dpkg-hook" "$root/usr/libexec/aegisbpf/dpkg-hook"
install -m 0644 "$pkg/deb/triggers" "$root/DEBIAN/triggers"
echo /etc/default/aegisbpf >"$root/DEBIAN/conffiles"
size="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
cat >"$root/DEBIAN/control" <<CONTROL
Package: aegisbpf
Version: $version
Architecture: $arch
Maintainer: aegisbpf maintainers <maintainers@aegisbpf.io>
Installed-Size: $size
Depends: $depends
Section: admin
Priority: optional
Description: host security agent enforcing a policy in the kernel with eBPF
 aegisbpf loads eBPF programs through libbpf and enforces a host policy in
 the kernel: BPF-LSM file-open and exec deny, cgroup socket hooks for egress
 and bind deny, XDP ingress filtering, tracepoint auditing where BPF-LSM
 cannot load.
 .
$form_text
 .
 The systemd units are installed but neither enabled nor started: run
 aegisbpf doctor, then systemctl enable --now aegisbpf. Runbooks are in
 /usr/share/doc/aegisbpf/runbooks/.
CONTROL
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) \
  >"$root/DEBIAN/md5sums"

mkdir -p "$out"
deb="$out/aegisbpf_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb.tmp" >/dev/null
mv "$deb.tmp" "$deb"
cp "$sbom" "$out/aegisbpf_${version}_${arch}.cdx.json"
echo "$deb"
