/**
 * bpf_stats (bench/lib/bpf_stats.ts) of programs named by their pin rather than their name: on a shared
 * host other planes load programs of the same names (tests, other suites, an agent attached to the cgroup
 * root), and their runs must not be counted as ours.
 */
import { cgroup2Root } from "../../lib/kernel/cgroup.ts";
import { must } from "../../tests/support/privileged.ts";
import type { SuiteContext } from "./suite.ts";

const SYSCTL = "/proc/sys/kernel/bpf_stats_enabled";

async function show(pin: string): Promise<{ runs: number; ns: number }> {
  const info = JSON.parse(await must("bpftool", ["--json", "prog", "show", "pinned", pin])) as {
    run_cnt?: number;
    run_time_ns?: number;
  };
  return { runs: info.run_cnt ?? 0, ns: info.run_time_ns ?? 0 };
}

/**
 * Runs `phase` with bpf_stats on and returns, for each `label: pin`, the runs and ns per run the phase added
 * to the program pinned there. Restores the sysctl.
 */
export async function withPinnedProgramStats(
  pins: Readonly<Record<string, string>>,
  phase: () => Promise<void>,
): Promise<{ program: string; runs: number; nsPerRun: number }[]> {
  const before = Deno.readTextFileSync(SYSCTL).trim();
  Deno.writeTextFileSync(SYSCTL, "1");
  try {
    const entries = Object.entries(pins);
    const start = await Promise.all(entries.map(([, pin]) => show(pin)));
    await phase();
    const end = await Promise.all(entries.map(([, pin]) => show(pin)));
    return entries.map(([program], i) => {
      const runs = end[i]!.runs - start[i]!.runs;
      return { program, runs, nsPerRun: runs > 0 ? (end[i]!.ns - start[i]!.ns) / runs : 0 };
    });
  } finally {
    Deno.writeTextFileSync(SYSCTL, before);
  }
}

/**
 * Notes the programs something else attached to the cgroup v2 root: every process on the host runs them,
 * the baseline included, so the ratios to the baseline understate every filter's own cost.
 */
export async function noteRootCgroupPrograms(ctx: SuiteContext): Promise<void> {
  const out = await must("bpftool", ["--json", "cgroup", "show", cgroup2Root()]);
  const programs = (JSON.parse(out.trim() || "[]") as { name?: string; attach_type?: string }[]).map((p) =>
    `${p.name ?? "?"} (${p.attach_type ?? "?"})`
  );
  if (programs.length === 0) return;
  ctx.note(
    `${programs.length} programs were attached to the cgroup v2 root by something else during this run ` +
      `(${[...new Set(programs)].join(", ")}): every process ran them, the baseline and the traffic ` +
      `generator included, so the ratios to the baseline understate every filter's own cost.`,
  );
}
