/**
 * Signal dispositions, which are process-wide: one set here holds for every thread, whatever handler the
 * runtime registered before.
 */

import { sysFailure } from "./error.ts";
import { libc } from "./libbpf.ts";

const SIG_IGN = 1n;
const SIG_ERR = 0xffff_ffff_ffff_ffffn;

/** Makes the kernel discard `signo` for this process: no handler runs, the default action does not apply. */
export function ignoreSignal(signo: number): void {
  const previous = libc().signal(signo, Deno.UnsafePointer.create(SIG_IGN));
  if (Deno.UnsafePointer.value(previous) === SIG_ERR) throw sysFailure("signal", `signal ${signo}`);
}
