#!/bin/sh
# /usr/bin/aegisbpf of the source-form package: runs the TypeScript source tree shipped in
# /usr/lib/aegisbpf (with its npm dependencies in node_modules, so no network) with the system's Deno 2.
# The single binary of `deno task compile` replaces this launcher where Deno's runtime can be downloaded.
# AEGISBPF_DENO names another deno executable.
app="$(dirname "$(readlink -f "$0")")/../lib/aegisbpf"
if [ -n "${AEGISBPF_DENO:-}" ]; then
  deno="$AEGISBPF_DENO"
  [ -x "$deno" ] || { echo "aegisbpf: error: AEGISBPF_DENO=$deno is not an executable file" >&2; exit 1; }
else
  deno="$(command -v deno)" || {
    echo "aegisbpf: error: this package runs aegisbpf with Deno 2 and no deno is in PATH: install it (npm install -g deno) or set AEGISBPF_DENO" >&2
    exit 1
  }
fi
DENO_NO_UPDATE_CHECK=1 DENO_NO_PROMPT=1 exec "$deno" run --allow-all --quiet --cached-only --frozen \
  --node-modules-dir=auto --config "$app/deno.json" "$app/main.ts" "$@"
