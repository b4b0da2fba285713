/**
 * Boots each Debian kernel under qemu and runs tests/vm/inside/ in the guest (see harness.ts).
 *
 * Needs root, the BPF object bpf/build/aegis.bpf.o, the kernels downloaded by `scripts/setup.sh --test`
 * and the host tools that script installs. When something is missing the tests are skipped with a
 * message, except under CI (env CI set), where they fail.
 */

import {
  failureSection,
  findKernel,
  missingHostTools,
  modulesReady,
  repoRoot,
  runInVm,
  type VmKernel,
  type VmResult,
} from "./harness.ts";

const ALL_KERNELS: VmKernel[] = ["6.1", "6.12"];
const BPF_OBJECT = "bpf/build/aegis.bpf.o";
const inCi = (Deno.env.get("CI") ?? "") !== "";

/**
 * While working on one VM test: AEGIS_VM_ONLY=tests/vm/inside/x_test.ts[,...] runs only those files, and
 * AEGIS_VM_KERNELS=6.12 boots only that kernel. Neither is allowed under CI, where every suite runs.
 */
const only = (Deno.env.get("AEGIS_VM_ONLY") ?? "").split(",").map((s) => s.trim()).filter(Boolean);
const kernelFilter = (Deno.env.get("AEGIS_VM_KERNELS") ?? "").split(",").map((s) => s.trim()).filter(Boolean);
if (inCi && (only.length > 0 || kernelFilter.length > 0)) {
  throw new Error("AEGIS_VM_ONLY and AEGIS_VM_KERNELS narrow the VM suite: unset them under CI");
}
const KERNELS = kernelFilter.length > 0
  ? ALL_KERNELS.filter((kernel) => kernelFilter.includes(kernel))
  : ALL_KERNELS;
const TEST_PATHS = only.length > 0 ? only : ["tests/vm/inside/"];

function fileExists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

function missingPrerequisites(kernel: VmKernel): string[] {
  const missing: string[] = [];
  if (Deno.uid() !== 0) missing.push("root (run the VM suite as root)");
  if (!fileExists(`${repoRoot}/${BPF_OBJECT}`)) missing.push(`${BPF_OBJECT} (run deno task build:bpf)`);
  if (!findKernel(kernel)) {
    missing.push(`the Debian ${kernel} kernel (run scripts/setup.sh --test)`);
  } else if (!modulesReady(kernel)) {
    missing.push(`the ${kernel} kernel's modules that tests/vm/modules lists (run scripts/setup.sh --test)`);
  }
  for (const tool of missingHostTools()) missing.push(`${tool} (or run scripts/setup.sh --test)`);
  return missing;
}

/**
 * Both kernels boot at once (each qemu is one emulated CPU, and the machine has more than one): the first
 * test starts every VM whose prerequisites are there, each test waits for its own.
 */
const runs = new Map<VmKernel, Promise<VmResult>>();

/**
 * With AEGIS_VM_ONE_AT_A_TIME=1 (scripts/test.sh sets it: the host suites run beside) each kernel boots
 * once the one before has finished: two emulated guests and the host suites on the same cores slow each
 * guest's timed checks (a refresh "within a second") past their bounds.
 */
const oneAtATime = Deno.env.get("AEGIS_VM_ONE_AT_A_TIME") === "1";

function startAll(): void {
  let previous: Promise<unknown> = Promise.resolve();
  for (const kernel of KERNELS) {
    if (runs.has(kernel) || missingPrerequisites(kernel).length > 0) continue;
    const after = previous;
    const run = oneAtATime
      ? after.then(() => runInVm({ kernel, testPaths: TEST_PATHS }))
      : runInVm({ kernel, testPaths: TEST_PATHS });
    run.catch(() => {}); // awaited (and reported) by its own test
    runs.set(kernel, run);
    previous = run.catch(() => {});
  }
}

for (const kernel of KERNELS) {
  const name = `[vm] LSM suite passes inside Debian kernel ${kernel}`;
  const missing = missingPrerequisites(kernel);
  const skip = missing.length > 0 && !inCi;
  if (skip) console.warn(`Skipping "${name}": missing ${missing.join("; ")}`);

  Deno.test({
    name,
    ignore: skip,
    // The other kernel's VM runs on across this test's end, by design.
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      if (missing.length > 0) throw new Error(`Cannot run the VM suite: missing ${missing.join("; ")}`);
      startAll();
      const result = await runs.get(kernel)!;
      const where = `kernel ${kernel} (${result.package})`;
      console.log(`--- inside the VM with ${where} ---\n${result.output}\n--- end of VM output ---`);
      console.log(
        `${where}: ${result.passed} passed, ${result.failed} failed, ${result.ignored} ignored; ` +
          `boot and tests ${(result.durationMs / 1000).toFixed(1)} s` +
          (result.initramfsMs > 0 ? `, initramfs built in ${(result.initramfsMs / 1000).toFixed(1)} s` : ""),
      );
      if (result.failed !== 0) {
        throw new Error(
          `${result.failed} test(s) failed inside ${where}:\n${
            failureSection(result.output) || "(no ERRORS section)"
          }`,
        );
      }
      if (result.exitCode !== 0) {
        throw new Error(`deno test exited with status ${result.exitCode} inside ${where}`);
      }
      if (result.passed === 0) throw new Error(`No test passed inside ${where}: nothing ran`);
      if (result.ignored !== 0) {
        throw new Error(`${result.ignored} test(s) were ignored inside ${where}; every VM test must run`);
      }
    },
  });
}
