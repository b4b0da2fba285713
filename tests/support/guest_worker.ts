import { must } from "./privileged.ts";

/** Where the VM harness puts the workers it compiled on the host (tests/vm/harness.ts GUEST_WORKER_DIR). */
const GUEST_WORKER_DIR = "/usr/lib/aegisbpf-tests";

/**
 * Compiles the C worker `tests/support/NAME.c` into `dir` and returns the binary's path; inside the VM
 * (which has no compiler) returns the one the harness built on the host (it lists NAME in its WORKERS).
 */
export async function buildGuestWorker(name: string, dir: string): Promise<string> {
  if (Deno.env.get("AEGIS_IN_VM") === "1") return `${GUEST_WORKER_DIR}/${name}`;
  const binary = `${dir}/${name}`;
  await must("clang", [
    "-O2",
    "-Wall",
    "-Werror",
    "-o",
    binary,
    new URL(`./${name}.c`, import.meta.url).pathname,
  ]);
  return binary;
}
