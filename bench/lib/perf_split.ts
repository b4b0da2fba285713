/**
 * Where a BPF program's time goes, by the kernel's own profiler: `perf record -a -g` (linux-perf, installed by
 * `scripts/setup.sh --bench`) around a phase, then the samples whose call chain passes through the program,
 * each put in the first part (`PARTS`, in order) that names a function of its chain.
 */

/** A part of a program's time: a label, and the kernel functions (exact names) whose samples are its. */
export type Part = { label: string; functions: readonly string[] };

export type Split = {
  /** Samples whose call chain passes through the program. */
  samples: number;
  /** Per part, in `parts` order then "the rest": the share of those samples (0..1). */
  shares: { label: string; share: number }[];
};

/** The JIT names a program `bpf_prog_TAG_NAME` (net.core.bpf_jit_kallsyms); older kernels cut NAME to 15. */
function programFrame(symbol: string, program: string): boolean {
  const match = /^bpf_prog_[0-9a-f]+_(.+)$/.exec(symbol);
  return match !== null && (match[1] === program || match[1] === program.slice(0, 15));
}

/** Splits `perf script -F sym` output (one call chain per block, leaf first) for the program `program`. */
export function splitSamples(script: string, program: string, parts: readonly Part[]): Split {
  const counts = new Array<number>(parts.length + 1).fill(0);
  let samples = 0;
  for (const block of script.split(/\n\s*\n/)) {
    const frames = block.split("\n").map((line) =>
      line.trim().split(/\s+/).pop()?.replace(/\+0x[0-9a-f]+$/, "")
    )
      .filter((name): name is string => name !== undefined && name !== "");
    if (!frames.some((frame) => programFrame(frame, program))) continue;
    samples++;
    const part = parts.findIndex((p) => frames.some((frame) => p.functions.includes(frame)));
    counts[part < 0 ? parts.length : part]!++;
  }
  const labels = [
    ...parts.map((p) => p.label),
    "the rest: the programs' own instructions and other kernel work",
  ];
  return {
    samples,
    shares: labels.map((label, i) => ({ label, share: samples > 0 ? counts[i]! / samples : 0 })),
  };
}

/**
 * Runs `phase` under `perf record -a -g -F frequency` (every CPU: the program runs in softirq on whichever)
 * and splits the samples of `program`. `dir`: where perf writes its data (removed after).
 */
export async function profileProgram(
  program: string,
  parts: readonly Part[],
  dir: string,
  phase: () => Promise<void>,
  frequency = 4999,
): Promise<Split> {
  const data = `${dir}/perf.data`;
  const record = new Deno.Command("perf", {
    args: ["record", "-a", "-g", "-F", String(frequency), "-o", data],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = record.stderr.pipeThrough(new TextDecoderStream());
  const said: string[] = [];
  const reading = (async () => {
    for await (const chunk of stderr) said.push(chunk);
  })();
  try {
    // perf says nothing until it stops; give it a moment to open its events on every CPU.
    await new Promise((resolve) => setTimeout(resolve, 500));
    await phase();
  } finally {
    try {
      record.kill("SIGINT");
    } catch { /* gone already: its status says how */ }
    await record.status;
    await reading;
  }
  try {
    const out = await new Deno.Command("perf", {
      args: ["script", "-i", data, "-F", "ip,sym"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(
        `perf script failed: ${new TextDecoder().decode(out.stderr).trim()} (perf record: ${
          said.join("").trim()
        })`,
      );
    }
    return splitSamples(new TextDecoder().decode(out.stdout), program, parts);
  } finally {
    await Deno.remove(data).catch(() => {});
  }
}
