/** Break-glass from the kernel command line: light, for `run`'s declaration and its start. */

/** Where the kernel command line is read; tests point it elsewhere. */
export const CMDLINE_ENV = "AEGISBPF_PROC_CMDLINE";
/** On the kernel command line: break-glass on from boot, with no marker (for a host that cannot boot). */
export const CMDLINE_FLAG = "aegisbpf.break_glass=1";

export function cmdlineBreakGlass(path = Deno.env.get(CMDLINE_ENV) || "/proc/cmdline"): boolean {
  try {
    return Deno.readTextFileSync(path).trim().split(/\s+/).includes(CMDLINE_FLAG);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}
