/** Order statistics of benchmark samples, and same-run ratios between variants. */

/** A figure's centre and spread over rounds: median, min and max (all samples kept beside them). */
export type Summary = { median: number; min: number; max: number; n: number };

export function median(values: readonly number[]): number {
  if (values.length === 0) throw new Error("median of no samples");
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function summarize(values: readonly number[]): Summary {
  if (values.length === 0) throw new Error("summary of no samples");
  return { median: median(values), min: Math.min(...values), max: Math.max(...values), n: values.length };
}

/**
 * Per-round ratios of `variant` to `baseline` (round i to round i: both ran back to back, so slow phases of
 * the machine cancel), summarized.
 */
export function ratios(variant: readonly number[], baseline: readonly number[]): Summary {
  if (variant.length !== baseline.length || variant.length === 0) {
    throw new Error(`ratio of ${variant.length} samples to ${baseline.length}`);
  }
  return summarize(variant.map((value, i) => value / baseline[i]!));
}

/**
 * Runs every variant once per round, `rounds` times, in an order that rotates each round (so no variant
 * always runs first, warm or cold), after one unrecorded warm-up of each. Returns the samples by name.
 */
export async function interleave<K extends string>(
  rounds: number,
  variants: Readonly<Record<K, () => Promise<number>>>,
  options: { warmup?: boolean } = {},
): Promise<Record<K, number[]>> {
  const names = Object.keys(variants) as K[];
  const samples = Object.fromEntries(names.map((name) => [name, [] as number[]])) as Record<K, number[]>;
  if (options.warmup ?? true) { for (const name of names) await variants[name](); }
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < names.length; i++) {
      const name = names[(round + i) % names.length]!;
      samples[name].push(await variants[name]());
    }
  }
  return samples;
}
