/** The machine a benchmark ran on: recorded with every result. */
import type { Environment } from "./report.ts";

export function environment(): Environment {
  const cpuinfo = Deno.readTextFileSync("/proc/cpuinfo");
  const cpu = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? "unknown";
  const memKiB = Number(/^MemTotal:\s+(\d+)/m.exec(Deno.readTextFileSync("/proc/meminfo"))?.[1] ?? 0);
  let commit = "unknown";
  try {
    const out = new Deno.Command("git", {
      args: ["-C", new URL("../..", import.meta.url).pathname, "rev-parse", "--short", "HEAD"],
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    if (out.success) commit = new TextDecoder().decode(out.stdout).trim();
  } catch {
    // not a git checkout
  }
  return {
    date: new Date().toISOString(),
    kernel: `${Deno.osRelease()} (${Deno.build.arch})`,
    cpu,
    cores: navigator.hardwareConcurrency,
    memoryGiB: Math.round(memKiB / 2 ** 20),
    deno: Deno.version.deno,
    commit,
  };
}
