#!/usr/bin/env bash
# Every test suite (`deno task test`): the VM suite beside all the others, then one summary line for both.
#
# The VM suite is qemu emulating two kernels for a quarter of an hour, and waits for nothing on the host;
# the host suites spend much of their time in spawned commands and kernel round trips. Run one after the
# other they took 35 minutes; side by side the longer of the two sets the time. Their resources are apart:
# the guests hold their own kernels, the host tests make their own cgroups, namespaces and bpffs mounts.
#
# The VM suite's output is printed whole after the others' (not interleaved with it). The last line is the
# runner's summary format, `ok | N passed | N failed[ | N ignored] (TIME)`, summed over both runs
# (.ci/run reads it). Arguments are passed to both `deno test` runs.
set -uo pipefail
cd "$(dirname "$0")/.."

SUITES=(ffi/ lib/ tests/cli/ tests/host/ tests/packaging/ tests/bench/)
VM_SUITE=tests/vm/vm_test.ts

vm_log="$(mktemp)"
rest_log="$(mktemp)"
vm_pid=""
cleanup() {
  # Its own process group (setsid below): deno and the qemu guests it started stop together.
  if [ -n "$vm_pid" ] && kill -0 "$vm_pid" 2>/dev/null; then kill -TERM -- "-$vm_pid" 2>/dev/null || true; fi
  rm -f "$vm_log" "$rest_log"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

started=$SECONDS
# One guest at a time (tests/vm/vm_test.ts): beside the host suites, two guests at once slow each other's
# timed checks past their bounds.
AEGIS_VM_ONE_AT_A_TIME=1 setsid deno test --allow-all "$@" "$VM_SUITE" >"$vm_log" 2>&1 &
vm_pid=$!

deno test --allow-all "$@" "${SUITES[@]}" 2>&1 | tee "$rest_log"
rest_status=${PIPESTATUS[0]}
rest_seconds=$((SECONDS - started))

vm_status=0
wait "$vm_pid" || vm_status=$?
vm_pid=""
vm_seconds=$((SECONDS - started))
echo
echo "--- the VM suite (${VM_SUITE}), run beside the others: ---"
cat "$vm_log"

# The numbers of a run's last summary line; 0 for what it does not print.
count() { # LOG WORD
  sed -E 's/\x1b\[[0-9;]*m//g' "$1" | grep -E '^(ok|FAILED) \| [0-9]+ passed' | tail -n 1 |
    grep -oE "[0-9]+ $2" | grep -oE '^[0-9]+' || echo 0
}
passed=$(($(count "$rest_log" passed) + $(count "$vm_log" passed)))
failed=$(($(count "$rest_log" failed) + $(count "$vm_log" failed)))
ignored=$(($(count "$rest_log" ignored) + $(count "$vm_log" ignored)))
status=0
if [ "$rest_status" -ne 0 ] || [ "$vm_status" -ne 0 ]; then status=1; fi
word=ok
if [ "$status" -ne 0 ]; then word=FAILED; fi
elapsed=$((SECONDS - started))
echo
echo "other suites ${rest_seconds} s (exit ${rest_status}), VM suite ${vm_seconds} s (exit ${vm_status}), both ${elapsed} s"
echo "${word} | ${passed} passed | ${failed} failed$([ "$ignored" -gt 0 ] && echo " | ${ignored} ignored") ($((elapsed / 60))m$((elapsed % 60))s)"
exit "$status"
