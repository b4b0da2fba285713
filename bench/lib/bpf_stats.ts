/**
 * The kernel's own accounting of BPF programs' run time (sysctl kernel.bpf_stats_enabled): run counts and
 * nanoseconds per program, which the wall-clock noise of a shared machine cannot blur. Enabling it costs
 * every program two clock reads per run, so measure wall clocks with it off and read it in a phase apart.
 */

const SYSCTL = "/proc/sys/kernel/bpf_stats_enabled";

type Totals = Map<string, { runs: number; ns: number }>;

/** Every loaded program's run count and run time by name (programs of one name summed). */
export async function programTotals(): Promise<Totals> {
  const out = await new Deno.Command("bpftool", { args: ["--json", "prog", "show"], stdout: "piped" })
    .output();
  if (!out.success) throw new Error("bpftool prog show failed");
  const totals: Totals = new Map();
  for (const prog of JSON.parse(new TextDecoder().decode(out.stdout)) as Record<string, unknown>[]) {
    const name = String(prog.name ?? "");
    const entry = totals.get(name) ?? { runs: 0, ns: 0 };
    entry.runs += Number(prog.run_cnt ?? 0);
    entry.ns += Number(prog.run_time_ns ?? 0);
    totals.set(name, entry);
  }
  return totals;
}

/**
 * Runs `phase` with bpf_stats on and returns the runs and ns per run it added to each program named in
 * `programs` (matched whole, or cut to the kernel's 15 characters). Restores the sysctl.
 */
export async function withProgramStats(
  programs: readonly string[],
  phase: () => Promise<void>,
): Promise<{ program: string; runs: number; nsPerRun: number }[]> {
  const before = Deno.readTextFileSync(SYSCTL).trim();
  Deno.writeTextFileSync(SYSCTL, "1");
  try {
    const start = await programTotals();
    await phase();
    const end = await programTotals();
    return programs.map((program) => {
      // Older bpftool cuts names to the kernel's 15 characters; newer prints the whole name from BTF.
      const key = start.has(program) || end.has(program) ? program : program.slice(0, 15);
      const a = start.get(key) ?? { runs: 0, ns: 0 };
      const b = end.get(key) ?? { runs: 0, ns: 0 };
      const runs = b.runs - a.runs;
      return { program, runs, nsPerRun: runs > 0 ? (b.ns - a.ns) / runs : 0 };
    });
  } finally {
    Deno.writeTextFileSync(SYSCTL, before);
  }
}
