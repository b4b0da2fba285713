/**
 * Gives back what a policy install left behind. Loading the programs and applying a policy allocate tens of
 * megabytes that are garbage a moment later: libbpf's parsed BTF and the rules' copies in the C heap, the
 * plan's objects and the encoded entries in V8's heap. V8 collects its young garbage soon enough, but the
 * old generation grown by the start-up burst is only compacted by a full collection, which an idle agent
 * never triggers: its resident memory stayed about 10 MiB above what it holds (measured: RssAnon 41 MiB
 * idle after a first start, 31 MiB after one full collection and a heap trim).
 */
import { releaseFreedMemory } from "../../ffi/mod.ts";

let collector: (() => void) | null | undefined;

/**
 * V8's full garbage collection, or null where the runtime gives none. `--expose-gc` is set from here
 * (node:v8), not on the command line, so that every way of starting aegisbpf has it (the package's
 * launcher, `deno task`, the compiled binary); the `gc` function is read from a new context, where V8
 * installs it once the flag is set.
 */
export async function fullCollector(): Promise<(() => void) | null> {
  if (collector !== undefined) return collector;
  try {
    const exposed = (globalThis as { gc?: unknown }).gc;
    if (typeof exposed === "function") return collector = exposed as () => void;
    const [v8, vm] = await Promise.all([import("node:v8"), import("node:vm")]);
    v8.setFlagsFromString("--expose-gc");
    const gc: unknown = vm.runInNewContext("gc");
    collector = typeof gc === "function" ? gc as () => void : null;
  } catch {
    collector = null;
  }
  return collector;
}

let scheduled = false;

/**
 * After the current task (off the path of the event that says a policy is applied): one full collection,
 * then the C heap's free pages back to the system. Calls while one is pending share it.
 */
export function releaseMemorySoon(): void {
  if (scheduled) return;
  scheduled = true;
  setTimeout(async () => {
    try {
      (await fullCollector())?.();
    } finally {
      scheduled = false;
      releaseFreedMemory();
    }
  }, 0);
}
