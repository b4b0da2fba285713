import assert from "node:assert/strict";
import {
  guestOptionsFromCmdline,
  measureInGuest,
  RESULT_MARKER,
  type Samples,
  STAT_PROGRAMS,
} from "../../../bench/lib/file_exec_vm.ts";

// The guest side of the file_exec benchmark (bench/suites/file_exec.ts), in the VM suite's boots with few
// rounds: it proves every figure can be produced on both kernels (no timing threshold). The full benchmark
// boots its own VMs with `aegis.file_exec=full` on the kernel command line and reads the result line.
const inVm = Deno.env.get("AEGIS_IN_VM") === "1";

function assertSamples(name: string, samples: Samples, rounds: number): void {
  for (const [variant, values] of Object.entries(samples)) {
    assert.equal(values.length, rounds, `${name} ${variant}: one sample per round`);
    for (const value of values) {
      assert.ok(Number.isFinite(value) && value > 0, `${name} ${variant}: ${value}`);
    }
  }
}

Deno.test({
  name: "[vm] bench file_exec: open and exec loops produce every figure, LSM programs attached and detached",
  ignore: !inVm,
  fn: async () => {
    const options = guestOptionsFromCmdline(Deno.readTextFileSync("/proc/cmdline"));
    const started = performance.now();
    const result = await measureInGuest(options);
    console.log(`${RESULT_MARKER} ${JSON.stringify(result)}`);
    console.log(`file_exec guest side: ${((performance.now() - started) / 1000).toFixed(1)} s`);
    assertSamples("open", result.open, options.rounds);
    assertSamples("exec", result.exec, options.rounds);
    assertSamples("exec under the allowlist", result.execAllowlist, options.rounds);
    for (const [stressor, samples] of Object.entries(result.stress)) {
      assertSamples(stressor, samples, options.rounds);
    }
    for (const program of STAT_PROGRAMS) {
      const stat = result.programStats.find((s) => s.program === program);
      assert.ok(
        stat && stat.runs > 0 && stat.nsPerRun > 0,
        `bpf_stats of ${program}: ${JSON.stringify(stat)}`,
      );
    }
  },
});
