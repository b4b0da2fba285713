/**
 * Objects named after the process that made them (PREFIX + pid + "-" + anything): a cgroup, a bpffs
 * directory, a namespace. One whose process is gone is a leftover of a killed run, for the next run to
 * remove; one of a process still running, this one included, never is.
 */

/** Whether `name` is a leftover: it starts with `prefix`, and the pid after it (in base `radix`) is gone. */
export function isLeftover(name: string, prefix: string, radix = 10): boolean {
  if (!name.startsWith(prefix)) return false;
  const pid = parseInt(name.slice(prefix.length).split("-")[0] ?? "", radix);
  if (!Number.isInteger(pid) || pid <= 0) return true;
  try {
    Deno.statSync(`/proc/${pid}`);
    return false;
  } catch (error) {
    // Anything but "no such process" (a runtime not allowed to read /proc) is no proof it is gone.
    if (error instanceof Deno.errors.NotFound) return true;
    throw error;
  }
}
